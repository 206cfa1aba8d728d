//! The privacy store (`gm_privacy::PrivacyStore`): players' data keys and pseudonyms, sealed
//! personal values, erasures with their timeline, confirmations and receipt, the audit trail.

use crate::data::*;
use crate::Fixture;
use chrono::{DateTime, Duration, DurationRound, Utc};
use gm_privacy::{
    steps, AuditEntry, Begun, ErasureStatus, NewErasure, NewPlayer, PlayerKeyState, PrivacyStore, Receipt, Step,
    StoredPersonal, Subject,
};
use gm_projections::model::{ChangeSet, ProjectionName, Target};
use gm_projections::ReadModelStore;
use gm_schemas::SealedPersonal;
use uuid::Uuid;

fn new_player(player: &str) -> NewPlayer {
    new_player_in(game(), pid(player))
}

/// Now, to the second (both stores keep at least milliseconds).
fn now() -> DateTime<Utc> {
    Utc::now().duration_trunc(Duration::seconds(1)).unwrap()
}

fn personal(p: &NewPlayer, n: u128, received_at: DateTime<Utc>) -> StoredPersonal {
    StoredPersonal {
        subject: p.subject,
        game_id: p.game_id.clone(),
        pseudonym: p.pseudonym.clone(),
        event_id: Uuid::from_u128(n),
        received_at,
        sealed: SealedPersonal { alg: "A256GCM".into(), nonce: format!("nonce-{n}"), sealed: format!("sealed-{n}") },
    }
}

fn erasure_request(p: &NewPlayer, id: u128, at: DateTime<Utc>) -> NewErasure {
    NewErasure {
        erasure_id: Uuid::from_u128(id),
        subject: p.subject,
        game_id: p.game_id.clone(),
        reason: "player asked".into(),
        requested_by: "analyst-1".into(),
        requested_at: at,
        suppressed_until: at + Duration::days(30),
    }
}

fn active(state: &PlayerKeyState) -> (String, Vec<u8>) {
    match state {
        PlayerKeyState::Active { pseudonym, wrapped_key } => (pseudonym.to_string(), wrapped_key.clone()),
        other => panic!("expected an active key, got {other:?}"),
    }
}

pub async fn a_new_player_keeps_the_first_key_and_pseudonym_created<F: Fixture>(f: F) {
    let store = f.store();
    assert!(store.ensure_players(Vec::new()).await.unwrap().is_empty());
    let started = now();
    let alice = new_player("alice");
    let got = store.ensure_players(vec![alice.clone()]).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].subject, alice.subject);
    assert_eq!(active(&got[0].state), (alice.pseudonym.to_string(), alice.wrapped_key.clone()));
    // A later first sighting with a key of its own gets the stored one.
    let again = new_player("alice");
    assert_ne!(again.wrapped_key, alice.wrapped_key);
    let got = store.ensure_players(vec![again]).await.unwrap();
    assert_eq!(active(&got[0].state), (alice.pseudonym.to_string(), alice.wrapped_key.clone()));
    // One entry per distinct subject, every player answered, whichever key was offered first.
    let (bob, bob2, carol) = (new_player("bob"), new_player("bob"), new_player("carol"));
    let got = store.ensure_players(vec![bob.clone(), carol.clone(), bob2.clone(), new_player("alice")]).await.unwrap();
    assert_eq!(got.len(), 3, "{got:?}");
    let find = |s: &Subject| got.iter().find(|e| e.subject == *s).map(|e| active(&e.state)).unwrap();
    let (bob_pseudonym, bob_key) = find(&bob.subject);
    assert_eq!(bob_pseudonym, bob.pseudonym.to_string());
    assert!(bob_key == bob.wrapped_key || bob_key == bob2.wrapped_key);
    assert_eq!(find(&carol.subject), (carol.pseudonym.to_string(), carol.wrapped_key.clone()));
    assert_eq!(find(&alice.subject).1, alice.wrapped_key);

    let record = store.player(&bob.subject).await.unwrap().unwrap();
    assert_eq!(record.game_id, game());
    assert_eq!((record.player_id.as_ref(), record.pseudonym.as_ref()), (Some(&pid("bob")), Some(&bob.pseudonym)));
    assert_eq!(record.wrapped_key, Some(bob_key), "the key handed out is the one stored");
    assert_eq!((record.erased_at, record.suppressed_until), (None, None));
    assert!(record.created_at >= started && record.created_at <= Utc::now() + Duration::seconds(1), "{record:?}");
    let nobody = master().subject_hasher().subject(&game(), &pid("nobody"));
    assert_eq!(store.player(&nobody).await.unwrap(), None);

    // Pseudonyms resolve to ids; unknown ones are absent.
    let asked = [alice.pseudonym.to_string(), carol.pseudonym.to_string(), "pz_unknown".to_string()];
    let resolved = store.resolve_pseudonyms(&asked).await.unwrap();
    assert_eq!(resolved.len(), 2);
    assert_eq!((resolved[asked[0].as_str()].as_str(), resolved[asked[1].as_str()].as_str()), ("alice", "carol"));
    assert!(store.resolve_pseudonyms(&[]).await.unwrap().is_empty());

    // Sealed personal values: kept once per event, in the order received; none for a subject
    // without a key.
    let t = now();
    let rows = vec![personal(&alice, 2, t), personal(&alice, 1, t - Duration::minutes(1)), personal(&alice, 2, t)];
    store.keep_personal(rows).await.unwrap();
    store.keep_personal(Vec::new()).await.unwrap();
    let unknown = NewPlayer { subject: nobody, ..new_player("nobody") };
    store.keep_personal(vec![personal(&unknown, 3, t)]).await.unwrap();
    assert_eq!(
        store.personal_of(&alice.subject).await.unwrap(),
        vec![personal(&alice, 1, t - Duration::minutes(1)), personal(&alice, 2, t)]
    );
    assert!(store.personal_of(&nobody).await.unwrap().is_empty());
    assert!(store.personal_of(&bob.subject).await.unwrap().is_empty());
    // Within one millisecond, by event id (the millisecond is all a store keeps).
    let (early, late) = (t + Duration::microseconds(100), t + Duration::microseconds(900));
    store.keep_personal(vec![personal(&carol, 9, early), personal(&carol, 8, late)]).await.unwrap();
    assert_eq!(store.personal_of(&carol.subject).await.unwrap(), vec![personal(&carol, 8, t), personal(&carol, 9, t)]);
}

pub async fn erasure_destroys_the_key_suppresses_and_completes_once<F: Fixture>(f: F) {
    let store = f.store();
    let alice = new_player("alice");
    let bob = new_player("bob");
    store.ensure_players(vec![alice.clone(), bob.clone()]).await.unwrap();
    let t = now();
    store.keep_personal(vec![personal(&alice, 1, t), personal(&bob, 2, t)]).await.unwrap();

    let request = erasure_request(&alice, 1, t);
    let Begun::Started { erasure, pseudonym } = store.begin_erasure(request.clone()).await.unwrap() else {
        panic!("a first erasure starts")
    };
    assert_eq!(pseudonym, Some(alice.pseudonym.clone()));
    assert_eq!(
        (erasure.erasure_id, erasure.status, erasure.receipt.clone()),
        (Uuid::from_u128(1), ErasureStatus::Pending, None)
    );
    assert_eq!((erasure.game_id.as_str(), erasure.subject.clone()), (GAME, alice.subject.to_hex()));
    assert_eq!(
        (erasure.reason.as_str(), erasure.requested_by.as_str(), erasure.requested_at),
        ("player asked", "analyst-1", t)
    );
    let names: Vec<&str> = erasure.timeline.iter().map(|s| s.step.as_str()).collect();
    assert_eq!(names, vec![steps::REQUESTED, steps::DATA_KEY_DESTROYED]);
    assert_eq!(store.erasure(erasure.erasure_id).await.unwrap(), Some(erasure.clone()));
    assert_eq!(store.pending_erasures().await.unwrap(), vec![erasure.clone()]);

    // The key is gone, the player suppressed; the id and pseudonym stay until completion.
    let record = store.player(&alice.subject).await.unwrap().unwrap();
    assert_eq!(record.wrapped_key, None);
    assert_eq!((record.erased_at, record.suppressed_until), (Some(t), Some(t + Duration::days(30))));
    assert_eq!((record.player_id, record.pseudonym.clone()), (Some(pid("alice")), Some(alice.pseudonym.clone())));
    assert!(store.personal_of(&alice.subject).await.unwrap().is_empty());
    assert_eq!(store.personal_of(&bob.subject).await.unwrap(), vec![personal(&bob, 2, t)], "others keep theirs");
    let got = store.ensure_players(vec![new_player("alice"), bob.clone()]).await.unwrap();
    let state = got.iter().find(|e| e.subject == alice.subject).unwrap().state.clone();
    assert_eq!(state, PlayerKeyState::Suppressed { erased_at: t, until: t + Duration::days(30) });
    assert_eq!(active(&got.iter().find(|e| e.subject == bob.subject).unwrap().state).1, bob.wrapped_key);
    store.keep_personal(vec![personal(&alice, 3, t)]).await.unwrap();
    assert!(store.personal_of(&alice.subject).await.unwrap().is_empty(), "nothing kept without a key");
    let resolved = store.resolve_pseudonyms(&[alice.pseudonym.to_string()]).await.unwrap();
    assert_eq!(resolved.get(alice.pseudonym.as_str()).map(String::as_str), Some("alice"));

    // The same request again, or another for the player, gets the existing erasure.
    let Begun::Existing(existing) =
        store.begin_erasure(erasure_request(&alice, 2, t + Duration::seconds(5))).await.unwrap()
    else {
        panic!("an erasure exists")
    };
    assert_eq!(existing, erasure);
    assert_eq!(store.erasure(Uuid::from_u128(2)).await.unwrap(), None);

    // Steps, and the projections' confirmations (live ones only).
    let appended = Step::new(steps::ERASURE_EVENT_APPENDED, t + Duration::seconds(1), Some("offset 7".into()));
    store.add_step(erasure.erasure_id, appended.clone()).await.unwrap();
    let confirming = ChangeSet { confirmed_erasures: vec![erasure.erasure_id], ..Default::default() };
    store.apply(Target::Live, ProjectionName::Funnel, 0, None, 1, &confirming).await.unwrap();
    store.apply(Target::Live, ProjectionName::PlayerProfiles, 0, None, 1, &confirming).await.unwrap();
    store.apply(Target::Live, ProjectionName::Funnel, 0, Some(1), 2, &confirming).await.unwrap();
    store.begin_rebuild(ProjectionName::Sessions).await.unwrap();
    store.apply(Target::Rebuild, ProjectionName::Sessions, 0, None, 1, &confirming).await.unwrap();
    let mut confirmed: Vec<String> =
        store.confirmations(erasure.erasure_id).await.unwrap().into_iter().map(|(p, _)| p).collect();
    confirmed.sort();
    assert_eq!(confirmed, vec!["funnel".to_string(), "player_profiles".to_string()]);
    assert!(store.confirmations(Uuid::from_u128(99)).await.unwrap().is_empty());

    // Completion: receipt, last steps, pseudonym unlinked; once.
    let completed_at = t + Duration::seconds(2);
    let signer = master().receipt_signer();
    let stores = gm_privacy::receipt_stores(&store.confirmations(erasure.erasure_id).await.unwrap(), true, false);
    let receipt = Receipt::signed(&erasure, completed_at, stores, &signer);
    let last =
        vec![Step::new(steps::PSEUDONYM_UNLINKED, completed_at, None), Step::new(steps::COMPLETED, completed_at, None)];
    store.complete_erasure(erasure.erasure_id, receipt.clone(), last.clone()).await.unwrap();
    let done = store.erasure(erasure.erasure_id).await.unwrap().unwrap();
    assert_eq!(
        (done.status, done.completed_at, done.receipt.as_ref()),
        (ErasureStatus::Completed, Some(completed_at), Some(&receipt))
    );
    assert!(done.receipt.as_ref().unwrap().verify(&signer));
    let mut timeline = erasure.timeline.clone();
    timeline.push(appended);
    timeline.extend(last);
    assert_eq!(done.timeline, timeline);
    assert!(store.pending_erasures().await.unwrap().is_empty());
    let record = store.player(&alice.subject).await.unwrap().unwrap();
    assert_eq!((record.player_id, record.pseudonym, record.wrapped_key), (None, None, None));
    assert!(store.resolve_pseudonyms(&[alice.pseudonym.to_string()]).await.unwrap().is_empty());
    let other = Receipt::signed(&erasure, completed_at + Duration::seconds(9), vec![], &signer);
    store.complete_erasure(erasure.erasure_id, other, vec![Step::new("again", completed_at, None)]).await.unwrap();
    assert_eq!(
        store.erasure(erasure.erasure_id).await.unwrap(),
        Some(done.clone()),
        "completing twice changes nothing"
    );
    assert!(matches!(
        store.begin_erasure(erasure_request(&alice, 3, t + Duration::seconds(10))).await.unwrap(),
        Begun::Existing(e) if e == done
    ));
    // The audit trail, newest first.
    let trail = store.audit_trail(10, None).await.unwrap();
    let got: Vec<(&str, &str, Option<Uuid>, Option<&str>)> =
        trail.iter().map(|e| (e.action.as_str(), e.actor.as_str(), e.erasure_id, e.subject.as_deref())).collect();
    let subject = alice.subject.to_hex();
    assert_eq!(
        got,
        vec![
            ("erasure_completed", "system", Some(erasure.erasure_id), Some(subject.as_str())),
            ("erasure_requested", "analyst-1", Some(erasure.erasure_id), Some(subject.as_str())),
        ]
    );
    assert_eq!((trail[0].at, trail[1].at), (completed_at, t));
    assert_eq!(trail[1].game_id.as_deref(), Some(GAME));
}

pub async fn erasing_a_player_never_seen_holds_nothing_and_suppresses<F: Fixture>(f: F) {
    let store = f.store();
    let ghost = new_player("ghost");
    let t = now();
    let Begun::Started { erasure, pseudonym } = store.begin_erasure(erasure_request(&ghost, 5, t)).await.unwrap()
    else {
        panic!("a first erasure starts")
    };
    assert_eq!(pseudonym, None);
    let names: Vec<(&str, bool)> = erasure.timeline.iter().map(|s| (s.step.as_str(), s.detail.is_some())).collect();
    assert_eq!(names, vec![(steps::REQUESTED, false), (steps::NOTHING_HELD, true)]);
    let record = store.player(&ghost.subject).await.unwrap().unwrap();
    assert_eq!((record.player_id, record.pseudonym, record.wrapped_key), (None, None, None));
    assert_eq!((record.erased_at, record.suppressed_until), (Some(t), Some(t + Duration::days(30))));
    let got = store.ensure_players(vec![ghost.clone()]).await.unwrap();
    assert_eq!(got[0].state, PlayerKeyState::Suppressed { erased_at: t, until: t + Duration::days(30) });
    assert!(store.resolve_pseudonyms(&[ghost.pseudonym.to_string()]).await.unwrap().is_empty());
    assert_eq!(store.pending_erasures().await.unwrap(), vec![erasure]);
}

pub async fn audit_trail_is_newest_first_and_limited_to_the_games_asked<F: Fixture>(f: F) {
    let store = f.store();
    assert!(store.audit_trail(10, None).await.unwrap().is_empty());
    let t = now();
    let subject = new_player("alice").subject.to_hex();
    let entries: Vec<AuditEntry> = (0..5)
        .map(|i| AuditEntry {
            at: t + Duration::seconds(i),
            actor: format!("analyst-{i}"),
            action: if i % 2 == 0 { "export".into() } else { "retention_run".into() },
            game_id: (i % 2 == 0).then(|| GAME.to_string()),
            erasure_id: (i == 4).then(|| Uuid::from_u128(4)),
            subject: (i % 2 == 0).then(|| subject.clone()),
            detail: (i == 3).then(|| "dropped 2 partitions".to_string()),
        })
        .collect();
    for e in &entries {
        store.audit(e.clone()).await.unwrap();
    }
    let newest_first: Vec<AuditEntry> = entries.iter().rev().cloned().collect();
    assert_eq!(store.audit_trail(3, None).await.unwrap(), newest_first[..3].to_vec());
    assert_eq!(store.audit_trail(100, None).await.unwrap(), newest_first);
    // Only the entries of the games asked for (entries without a game are nobody's).
    let of_game: Vec<AuditEntry> = newest_first.iter().filter(|e| e.game_id.is_some()).cloned().collect();
    assert_eq!(of_game.len(), 3);
    assert_eq!(store.audit_trail(100, Some(&[GAME.to_string()])).await.unwrap(), of_game);
    assert_eq!(
        store.audit_trail(2, Some(&[GAME.to_string(), OTHER_GAME.to_string()])).await.unwrap(),
        of_game[..2].to_vec()
    );
    assert!(store.audit_trail(100, Some(&[OTHER_GAME.to_string()])).await.unwrap().is_empty());
    assert!(store.audit_trail(100, Some(&[])).await.unwrap().is_empty());
}

pub async fn erasures_list_the_latest_first_by_game_and_status<F: Fixture>(f: F) {
    use gm_privacy::store::ErasureFilter;
    let store = f.store();
    let all = |limit| ErasureFilter { games: None, status: None, limit };
    assert!(store.erasures(&all(10)).await.unwrap().is_empty());
    let t = now();
    let other = |player: &str| NewPlayer { game_id: other_game(), ..new_player(player) };
    // Four erasures: three of GAME (bob and carol at the same time), one of OTHER_GAME.
    let requests = [
        erasure_request(&new_player("alice"), 1, t),
        erasure_request(&new_player("bob"), 2, t + Duration::seconds(1)),
        erasure_request(&new_player("carol"), 3, t + Duration::seconds(1)),
        erasure_request(&other("dave"), 4, t + Duration::seconds(2)),
    ];
    for r in &requests {
        assert!(matches!(store.begin_erasure(r.clone()).await.unwrap(), Begun::Started { .. }));
    }
    let started = store.erasure(Uuid::from_u128(2)).await.unwrap().unwrap();
    let receipt = Receipt::signed(&started, t + Duration::seconds(5), vec![], &master().receipt_signer());
    store.complete_erasure(started.erasure_id, receipt, vec![]).await.unwrap();

    let ids = |list: Vec<gm_privacy::Erasure>| list.into_iter().map(|e| e.erasure_id.as_u128()).collect::<Vec<_>>();
    // Latest requested first; at the same time, the greater id first.
    assert_eq!(ids(store.erasures(&all(10)).await.unwrap()), vec![4, 3, 2, 1]);
    assert_eq!(ids(store.erasures(&all(2)).await.unwrap()), vec![4, 3]);
    let listed = store.erasures(&all(10)).await.unwrap();
    assert_eq!(listed[2], store.erasure(Uuid::from_u128(2)).await.unwrap().unwrap(), "whole erasures, receipt too");
    assert!(listed[2].receipt.is_some());
    let of = |games: Option<&[&str]>, status| ErasureFilter {
        games: games.map(|g| g.iter().map(|s| s.to_string()).collect()),
        status,
        limit: 10,
    };
    assert_eq!(ids(store.erasures(&of(Some(&[GAME]), None)).await.unwrap()), vec![3, 2, 1]);
    assert_eq!(ids(store.erasures(&of(Some(&[OTHER_GAME, GAME]), None)).await.unwrap()), vec![4, 3, 2, 1]);
    assert_eq!(ids(store.erasures(&of(None, Some(ErasureStatus::Completed))).await.unwrap()), vec![2]);
    assert_eq!(ids(store.erasures(&of(Some(&[GAME]), Some(ErasureStatus::Pending))).await.unwrap()), vec![3, 1]);
    assert!(store.erasures(&of(Some(&[OTHER_GAME]), Some(ErasureStatus::Completed))).await.unwrap().is_empty());
    assert!(store.erasures(&of(Some(&[]), None)).await.unwrap().is_empty());
    assert!(store.erasures(&of(Some(&["no-such-game"]), None)).await.unwrap().is_empty());
}
