//! Creating a player's data key and pseudonym under concurrency (issue 14): every concurrent
//! first sighting of a new player gets the same pseudonym and key, whichever request's insert
//! won; no request is left without an answer for a player it asked about (which the gateway
//! used to take for an erasure), and none fails on the pseudonym's unique index. An answer
//! `Suppressed` comes only for a player whose erasure exists.

mod common;

use chrono::{Duration, Utc};
use common::TestDb;
use gm_postgres::PgStore;
use gm_privacy::{NewErasure, NewPlayer, PlayerEntry, PlayerKeyState, PrivacyStore};
use gm_schemas::{GameId, PlayerId};
use gm_store_contract::data::{master, new_player_in};
use std::collections::HashMap;
use std::sync::Arc;

fn new_player(game: &str, player: &str) -> NewPlayer {
    new_player_in(GameId::parse(game).unwrap(), PlayerId::parse(player).unwrap())
}

/// A store with enough connections for every request of a test to be in flight at once.
async fn wide_store(db: &TestDb, connections: u32) -> Arc<PgStore> {
    let store = Arc::new(PgStore::connect(&db.url, connections).await.unwrap());
    // Open the connections beforehand, so that the requests reach the server together.
    let warm: Vec<_> = (0..connections)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                sqlx::query("SELECT pg_sleep(0.05)").execute(store.pool()).await.unwrap();
            })
        })
        .collect();
    for w in warm {
        w.await.unwrap();
    }
    store
}

/// Runs every batch at once; each call's answer, in order.
async fn ensure_all(store: &Arc<PgStore>, batches: Vec<Vec<NewPlayer>>) -> Vec<Result<Vec<PlayerEntry>, String>> {
    let barrier = Arc::new(tokio::sync::Barrier::new(batches.len()));
    let tasks: Vec<_> = batches
        .into_iter()
        .map(|batch| {
            let (store, barrier) = (store.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                store.ensure_players(batch).await.map_err(|e| e.to_string())
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// A `player_keys` row: subject, pseudonym, wrapped key.
type KeyRow = (Vec<u8>, Option<String>, Option<Vec<u8>>);

/// Every call answered for every subject it asked about, all with one pseudonym and one
/// wrapped key per subject, the one stored.
async fn assert_one_key_each(store: &PgStore, asked: &[Vec<NewPlayer>], answers: &[Result<Vec<PlayerEntry>, String>]) {
    let mut agreed: HashMap<Vec<u8>, (PlayerId, Vec<u8>)> = HashMap::new();
    let failures: Vec<&String> = answers.iter().filter_map(|a| a.as_ref().err()).collect();
    assert!(failures.is_empty(), "{} of {} calls failed, e.g. {:?}", failures.len(), answers.len(), failures[0]);
    for (batch, answer) in asked.iter().zip(answers) {
        let answer = answer.as_ref().unwrap();
        let by_subject: HashMap<_, _> = answer.iter().map(|e| (e.subject, &e.state)).collect();
        assert_eq!(by_subject.len(), answer.len(), "one entry per subject");
        for p in batch {
            let state = by_subject.get(&p.subject).unwrap_or_else(|| {
                panic!(
                    "no entry for {} in an answer of {} entries to {} players",
                    p.player_id,
                    answer.len(),
                    batch.len()
                )
            });
            let PlayerKeyState::Active { pseudonym, wrapped_key } = state else {
                panic!("{} is under no suppression, yet answered {state:?}", p.player_id)
            };
            assert_eq!(pseudonym, &p.pseudonym, "the pseudonym is the player's");
            let first = agreed.entry(p.subject.0.to_vec()).or_insert((pseudonym.clone(), wrapped_key.clone()));
            assert_eq!(first, &(pseudonym.clone(), wrapped_key.clone()), "{}: two keys handed out", p.player_id);
        }
    }
    let subjects: Vec<Vec<u8>> = agreed.keys().cloned().collect();
    let rows: Vec<KeyRow> =
        sqlx::query_as("SELECT subject, pseudonym, wrapped_key FROM player_keys WHERE subject = ANY($1)")
            .bind(&subjects)
            .fetch_all(store.pool())
            .await
            .unwrap();
    assert_eq!(rows.len(), agreed.len(), "one row per player");
    for (subject, pseudonym, key) in rows {
        let (p, k) = &agreed[&subject];
        assert_eq!(
            (pseudonym.as_deref(), key.as_ref()),
            (Some(p.as_str()), Some(k)),
            "the stored key is the one handed out"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_concurrent_first_sightings_of_one_player_get_one_key() {
    let db = TestDb::new().await;
    let store = wide_store(&db, 32).await;
    // Several rounds, each with a new player: the race is on the first insert.
    for round in 0..8 {
        let player = format!("newcomer-{round}");
        let asked: Vec<Vec<NewPlayer>> = (0..64).map(|_| vec![new_player("space-race", &player)]).collect();
        let answers = ensure_all(&store, asked.clone()).await;
        assert_one_key_each(&store, &asked, &answers).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_batches_sharing_new_players_each_get_every_player_once() {
    let db = TestDb::new().await;
    let store = wide_store(&db, 24).await;
    for round in 0..6 {
        // 24 batches of 60 players out of 120 new ones, each batch in its own order, so that
        // every player is in about 12 batches at once and the batches overlap in every way.
        let players: Vec<String> = (0..120).map(|p| format!("r{round}-player-{p}")).collect();
        let asked: Vec<Vec<NewPlayer>> = (0..24usize)
            .map(|b| {
                let mut batch: Vec<NewPlayer> = (0..60)
                    .map(|i| &players[(b * 7 + i * (1 + b % 5)) % players.len()])
                    .map(|p| new_player("space-race", p))
                    .collect();
                if b % 2 == 1 {
                    batch.reverse();
                }
                batch
            })
            .collect();
        let answers = ensure_all(&store, asked.clone()).await;
        assert_one_key_each(&store, &asked, &answers).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_returns_of_an_erased_player_whose_suppression_ended_get_one_new_key() {
    let db = TestDb::new().await;
    let store = wide_store(&db, 32).await;
    for round in 0..4 {
        let player = format!("returning-{round}");
        let p = new_player("space-race", &player);
        // An erasure that completed long ago: key destroyed, pseudonym unlinked, suppression over.
        sqlx::query(
            "INSERT INTO player_keys (subject, game_id, created_at, erased_at, suppressed_until)
             VALUES ($1, 'space-race', now() - interval '40 days', now() - interval '40 days', now() - interval '10 days')",
        )
        .bind(p.subject.0.to_vec())
        .execute(store.pool())
        .await
        .unwrap();
        let asked: Vec<Vec<NewPlayer>> = (0..48).map(|_| vec![new_player("space-race", &player)]).collect();
        let answers = ensure_all(&store, asked.clone()).await;
        assert_one_key_each(&store, &asked, &answers).await;
    }
}

/// Starts the erasure of `player` (suppressed for 30 days).
async fn erase(store: &PgStore, player: &NewPlayer) -> gm_privacy::Begun {
    let now = Utc::now();
    store
        .begin_erasure(NewErasure {
            erasure_id: uuid::Uuid::now_v7(),
            subject: player.subject,
            game_id: player.game_id.clone(),
            reason: "test".into(),
            requested_by: "test".into(),
            requested_at: now,
            suppressed_until: now + Duration::days(30),
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn a_player_whose_erasure_exists_is_answered_suppressed_and_only_they_are() {
    let db = TestDb::new().await;
    let store = &db.store;
    let erased = new_player("space-race", "erased-one");
    let kept = new_player("space-race", "kept-one");
    store.ensure_players(vec![erased.clone(), kept.clone()]).await.unwrap();
    erase(store, &erased).await;
    let fresh = new_player("space-race", "fresh-one");
    let answer = store
        .ensure_players(vec![
            new_player("space-race", "erased-one"),
            new_player("space-race", "kept-one"),
            fresh.clone(),
        ])
        .await
        .unwrap();
    let states: HashMap<_, _> = answer.into_iter().map(|e| (e.subject, e.state)).collect();
    assert_eq!(states.len(), 3);
    assert!(matches!(states[&erased.subject], PlayerKeyState::Suppressed { .. }), "{:?}", states[&erased.subject]);
    assert!(
        matches!(&states[&kept.subject], PlayerKeyState::Active { wrapped_key, .. } if *wrapped_key == kept.wrapped_key),
        "the existing key is kept"
    );
    assert!(
        matches!(&states[&fresh.subject], PlayerKeyState::Active { wrapped_key, .. } if *wrapped_key == fresh.wrapped_key)
    );
}

#[tokio::test]
async fn completing_an_erasure_vacuums_the_tables_that_named_the_player() {
    let db = TestDb::new().await;
    let store = &db.store;
    let erased = new_player("space-race", "vacuumed-one");
    store.ensure_players(vec![erased.clone()]).await.unwrap();
    let begun = erase(store, &erased).await;
    let gm_privacy::Begun::Started { erasure, .. } = begun else { panic!("a new erasure starts: {begun:?}") };
    let vacuums = || async {
        // Statistics are read as of the transaction's first look: a fresh one each time.
        sqlx::query_scalar::<_, i64>("SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'player_keys'")
            .fetch_one(store.pool())
            .await
            .unwrap()
    };
    let before = vacuums().await;
    let signer = master().receipt_signer();
    let receipt = gm_privacy::Receipt::signed(&erasure, Utc::now(), Vec::new(), &signer);
    store.complete_erasure(erasure.erasure_id, receipt, Vec::new()).await.unwrap();
    // The vacuum starts a few seconds after the completion (erasures completing meanwhile
    // share it).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while vacuums().await == before {
        assert!(std::time::Instant::now() < deadline, "no vacuum of player_keys within 30 s of the erasure");
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}
