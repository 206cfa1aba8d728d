//! `PrivacyStore` on PostgreSQL (tables in migrations/0003_privacy.sql). Batched: one
//! statement per ingest request for keys (two when a concurrent request created one of its
//! players meanwhile; see `ensure_players`), one for sealed personal values.

use crate::error::{store_err, to_millis};
use crate::PgStore;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use gm_ports::StoreError;
use gm_privacy::{
    AuditEntry, Begun, Erasure, ErasureStatus, HeldKey, NewErasure, NewPlayer, PlayerEntry, PlayerKeyState,
    PlayerRecord, PrivacyStore, Receipt, Step, StoredPersonal, Subject,
};
use gm_schemas::{GameId, PlayerId, SealedPersonal};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use std::collections::HashMap;
use uuid::Uuid;

fn corrupt(what: &str) -> StoreError {
    StoreError::Other(format!("privacy table holds an invalid {what}").into())
}

fn subject_of(bytes: &[u8]) -> Result<Subject, StoreError> {
    Subject::from_slice(bytes).ok_or_else(|| corrupt("subject"))
}

pub(crate) fn erasure_from_row(row: &PgRow) -> Result<Erasure, StoreError> {
    let subject: Vec<u8> = row.try_get("subject").map_err(store_err)?;
    let status: String = row.try_get("status").map_err(store_err)?;
    let timeline: serde_json::Value = row.try_get("timeline").map_err(store_err)?;
    let receipt: Option<serde_json::Value> = row.try_get("receipt").map_err(store_err)?;
    Ok(Erasure {
        erasure_id: row.try_get("erasure_id").map_err(store_err)?,
        game_id: row.try_get("game_id").map_err(store_err)?,
        subject: hex::encode(&subject),
        status: ErasureStatus::parse(&status).ok_or_else(|| corrupt("status"))?,
        reason: row.try_get("reason").map_err(store_err)?,
        requested_by: row.try_get("requested_by").map_err(store_err)?,
        requested_at: to_millis(row.try_get("requested_at").map_err(store_err)?),
        completed_at: row.try_get::<Option<DateTime<Utc>>, _>("completed_at").map_err(store_err)?.map(to_millis),
        timeline: serde_json::from_value(timeline).map_err(|_| corrupt("timeline"))?,
        receipt: receipt.map(serde_json::from_value).transpose().map_err(|_| corrupt("receipt"))?,
    })
}

pub(crate) const ERASURE_COLUMNS: &str =
    "erasure_id, subject, game_id, status, reason, requested_by, requested_at, completed_at, timeline, receipt";

async fn insert_audit(conn: &mut PgConnection, e: &AuditEntry, subject: Option<&Subject>) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO privacy_audit (at, actor, action, game_id, erasure_id, subject, detail)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(e.at)
    .bind(&e.actor)
    .bind(&e.action)
    .bind(&e.game_id)
    .bind(e.erasure_id)
    .bind(subject.map(|s| s.0.to_vec()))
    .bind(&e.detail)
    .execute(conn)
    .await
    .map_err(store_err)?;
    Ok(())
}

/// Attempts of `ensure_players` before it gives up with a retryable error.
const ENSURE_ATTEMPTS: u32 = 6;

/// What an entry of `ensure_players` is read from. `revivable`: an erased player whose
/// erasure completed and whose suppression expired, whom the next upsert gives a new key.
const ENTRY_COLUMNS: &str = "k.subject, k.pseudonym, k.wrapped_key, k.erased_at, k.suppressed_until,
     (k.wrapped_key IS NULL AND k.player_id IS NULL AND k.suppressed_until < now()) AS revivable";

/// Inserts the new players, revives the revivable ones and returns what the statement's
/// snapshot holds of the others. A subject inserted by a concurrent transaction meanwhile is
/// absent from the answer (see `ensure_players`).
async fn upsert_players(pool: &sqlx::PgPool, players: &[NewPlayer]) -> Result<Vec<PgRow>, sqlx::Error> {
    let subjects: Vec<Vec<u8>> = players.iter().map(|p| p.subject.0.to_vec()).collect();
    let games: Vec<&str> = players.iter().map(|p| p.game_id.as_str()).collect();
    let ids: Vec<&str> = players.iter().map(|p| p.player_id.as_str()).collect();
    let pseudonyms: Vec<&str> = players.iter().map(|p| p.pseudonym.as_str()).collect();
    let keys: Vec<Vec<u8>> = players.iter().map(|p| p.wrapped_key.clone()).collect();
    // New players are inserted; a player erased whose erasure completed and whose
    // suppression expired comes back with a fresh key; everyone else keeps what they have.
    // `ins` returns the rows it wrote, the second branch the others (as of the snapshot).
    sqlx::query(&format!(
        "WITH input AS (
             SELECT * FROM UNNEST($1::bytea[], $2::text[], $3::text[], $4::text[], $5::bytea[])
                 AS i(subject, game_id, player_id, pseudonym, wrapped_key)
         ), ins AS (
             INSERT INTO player_keys AS k (subject, game_id, player_id, pseudonym, wrapped_key, created_at)
             SELECT subject, game_id, player_id, pseudonym, wrapped_key, now() FROM input ORDER BY subject
             ON CONFLICT (subject) DO UPDATE SET
                 player_id = excluded.player_id, pseudonym = excluded.pseudonym,
                 wrapped_key = excluded.wrapped_key, created_at = excluded.created_at,
                 erased_at = NULL, suppressed_until = NULL
             WHERE k.wrapped_key IS NULL AND k.player_id IS NULL AND k.suppressed_until < now()
             RETURNING {ENTRY_COLUMNS}
         )
         SELECT * FROM ins
         UNION ALL
         SELECT {ENTRY_COLUMNS}
         FROM player_keys k JOIN input i ON k.subject = i.subject
         WHERE NOT EXISTS (SELECT 1 FROM ins WHERE ins.subject = k.subject)"
    ))
    .bind(&subjects)
    .bind(&games)
    .bind(&ids)
    .bind(&pseudonyms)
    .bind(&keys)
    .fetch_all(pool)
    .await
}

/// A unique violation (the pseudonym index, met before the subject's arbiter) or a deadlock:
/// the statement wrote nothing, and the same statement again finds the other's row.
fn retry_upsert(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("23505" | "40P01")))
}

/// The entries `rows` settle, by subject. A revivable row is not settled: the next upsert
/// revives it (it was read from a snapshot older than a concurrent revival, or revived by
/// nobody yet), and refusing the player as erased would be wrong.
fn settled(rows: &[PgRow]) -> Result<HashMap<Subject, PlayerEntry>, StoreError> {
    let mut out = HashMap::with_capacity(rows.len());
    for row in rows {
        if row.try_get::<Option<bool>, _>("revivable").map_err(store_err)?.unwrap_or(false) {
            continue;
        }
        let subject = subject_of(&row.try_get::<Vec<u8>, _>("subject").map_err(store_err)?)?;
        let pseudonym: Option<String> = row.try_get("pseudonym").map_err(store_err)?;
        let wrapped: Option<Vec<u8>> = row.try_get("wrapped_key").map_err(store_err)?;
        let erased_at: Option<DateTime<Utc>> =
            row.try_get::<Option<_>, _>("erased_at").map_err(store_err)?.map(to_millis);
        let until: Option<DateTime<Utc>> =
            row.try_get::<Option<_>, _>("suppressed_until").map_err(store_err)?.map(to_millis);
        let state = match (pseudonym, wrapped) {
            (Some(p), Some(w)) => PlayerKeyState::Active {
                pseudonym: PlayerId::parse(p).map_err(|_| corrupt("pseudonym"))?,
                wrapped_key: w,
            },
            _ => {
                // Only a recorded erasure is answered as one.
                let erased_at = erased_at.ok_or_else(|| corrupt("key state"))?;
                PlayerKeyState::Suppressed { erased_at, until: until.unwrap_or(erased_at) }
            }
        };
        out.insert(subject, PlayerEntry { subject, state });
    }
    Ok(out)
}

/// The tables whose rows name a player (by id or pseudonym), that an erasure deletes from
/// or updates: vacuumed after erasures complete.
const ERASED_TABLES: &[&str] = &[
    "player_keys",
    "player_personal",
    "player_profiles",
    "profile_revenue",
    "player_days",
    "payer_days",
    "funnel_players",
    "cohort_players",
    "leaderboard_scores",
    "reco_affinity",
    "reco_outbox",
    "snapshots",
];

/// How long after an erasure completes the vacuum starts: erasures completing meanwhile
/// share it.
const VACUUM_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

/// Databases (host, port, name) with a vacuum scheduled by this process.
static VACUUM_SCHEDULED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Schedules one `VACUUM (INDEX_CLEANUP ON)` of [`ERASED_TABLES`] in a few seconds, unless
/// one is scheduled already. The rows an erasure deleted stay in the table and its indexes
/// as dead tuples until a vacuum removes them (autovacuum may wait for many more changes);
/// index cleanup is forced because, for a handful of dead rows, PostgreSQL would skip the
/// indexes, which hold the player ids too. What a vacuum cannot reach (the WAL, backups,
/// free space not yet reused) is in docs/adr/0004-privacy-pseudonyms-and-crypto-shredding.md.
fn schedule_vacuum(pool: &sqlx::PgPool) {
    let options = pool.connect_options();
    let database =
        format!("{}:{}/{}", options.get_host(), options.get_port(), options.get_database().unwrap_or_default());
    {
        let mut scheduled = VACUUM_SCHEDULED.lock().unwrap_or_else(|e| e.into_inner());
        if scheduled.contains(&database) {
            return;
        }
        scheduled.push(database.clone());
    }
    let pool = pool.clone();
    tokio::spawn(async move {
        tokio::time::sleep(VACUUM_AFTER).await;
        // Erasures completing from now on schedule the next one.
        VACUUM_SCHEDULED.lock().unwrap_or_else(|e| e.into_inner()).retain(|d| *d != database);
        let started = std::time::Instant::now();
        // VACUUM cannot run in a transaction block: its own statement on a pooled connection.
        let sql = format!("VACUUM (INDEX_CLEANUP ON) {}", ERASED_TABLES.join(", "));
        match sqlx::query(&sql).execute(&pool).await {
            Ok(_) => tracing::info!(ms = started.elapsed().as_millis() as u64, "vacuumed the tables erasures touched"),
            Err(e) => tracing::warn!(error = %e, "vacuum after erasures failed; autovacuum removes the rows later"),
        }
    });
}

#[async_trait]
impl PrivacyStore for PgStore {
    async fn ensure_players(&self, players: Vec<NewPlayer>) -> Result<Vec<PlayerEntry>, StoreError> {
        if players.is_empty() {
            return Ok(Vec::new());
        }
        let mut seen = std::collections::HashSet::new();
        let mut pending: Vec<NewPlayer> = players.into_iter().filter(|p| seen.insert(p.subject)).collect();
        // Every batch takes its rows' locks in the same order, so that two batches sharing
        // players wait for each other instead of deadlocking.
        pending.sort_by_key(|p| p.subject.0);
        let mut answered: Vec<PlayerEntry> = Vec::with_capacity(pending.len());
        let mut last_error = None;
        for attempt in 0..ENSURE_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(5 << attempt.min(6))).await;
            }
            let rows = match upsert_players(self.pool(), &pending).await {
                Ok(rows) => rows,
                Err(e) if retry_upsert(&e) => {
                    // Two first requests of one player inserted at once and met on the
                    // pseudonym index (ON CONFLICT only arbitrates the subject), or batches
                    // deadlocked: the other transaction's row exists now; ask again.
                    last_error = Some(e.to_string());
                    continue;
                }
                Err(e) => return Err(store_err(e)),
            };
            let mut got = settled(&rows)?;
            let unanswered: Vec<Vec<u8>> =
                pending.iter().filter(|p| !got.contains_key(&p.subject)).map(|p| p.subject.0.to_vec()).collect();
            if !unanswered.is_empty() {
                // The upsert's snapshot predates a concurrent insert it waited for (ON
                // CONFLICT DO UPDATE … WHERE wrote nothing, and the second branch could not
                // see the row): a new statement takes a new snapshot (READ COMMITTED) and
                // sees it, since the conflicting transaction has finished.
                let rows = sqlx::query(&format!(
                    "SELECT {ENTRY_COLUMNS} FROM player_keys k WHERE k.subject = ANY($1::bytea[])"
                ))
                .bind(&unanswered)
                .fetch_all(self.pool())
                .await
                .map_err(store_err)?;
                got.extend(settled(&rows)?);
            }
            let (done, rest): (Vec<NewPlayer>, Vec<NewPlayer>) =
                pending.into_iter().partition(|p| got.contains_key(&p.subject));
            answered.extend(done.iter().filter_map(|p| got.remove(&p.subject)));
            pending = rest;
            if pending.is_empty() {
                return Ok(answered);
            }
            last_error = Some(format!("{} player(s) neither created nor found", pending.len()));
        }
        Err(StoreError::Unavailable(
            format!(
                "player keys not settled after {ENSURE_ATTEMPTS} attempts ({}); retry",
                last_error.unwrap_or_default()
            )
            .into(),
        ))
    }

    async fn keep_personal(&self, rows: Vec<StoredPersonal>) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let subjects: Vec<Vec<u8>> = rows.iter().map(|r| r.subject.0.to_vec()).collect();
        let events: Vec<Uuid> = rows.iter().map(|r| r.event_id).collect();
        let games: Vec<&str> = rows.iter().map(|r| r.game_id.as_str()).collect();
        let pseudonyms: Vec<&str> = rows.iter().map(|r| r.pseudonym.as_str()).collect();
        let at: Vec<DateTime<Utc>> = rows.iter().map(|r| r.received_at).collect();
        let sealed: Vec<serde_json::Value> =
            rows.iter().map(|r| serde_json::to_value(&r.sealed).expect("serialisable")).collect();
        // Only for players whose key still exists: a value sealed with a destroyed key
        // (a request that raced an erasure) is not kept.
        sqlx::query(
            "INSERT INTO player_personal (subject, event_id, game_id, pseudonym, received_at, sealed)
             SELECT i.* FROM UNNEST($1::bytea[], $2::uuid[], $3::text[], $4::text[], $5::timestamptz[], $6::jsonb[])
                 AS i(subject, event_id, game_id, pseudonym, received_at, sealed)
             JOIN player_keys k ON k.subject = i.subject AND k.pseudonym = i.pseudonym AND k.wrapped_key IS NOT NULL
             ON CONFLICT DO NOTHING",
        )
        .bind(&subjects)
        .bind(&events)
        .bind(&games)
        .bind(&pseudonyms)
        .bind(&at)
        .bind(&sealed)
        .execute(self.pool())
        .await
        .map_err(store_err)?;
        Ok(())
    }

    async fn player(&self, subject: &Subject) -> Result<Option<PlayerRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT game_id, player_id, pseudonym, wrapped_key, created_at, erased_at, suppressed_until
             FROM player_keys WHERE subject = $1",
        )
        .bind(subject.0.to_vec())
        .fetch_optional(self.pool())
        .await
        .map_err(store_err)?;
        let Some(row) = row else { return Ok(None) };
        let id = |col: &str| -> Result<Option<PlayerId>, StoreError> {
            let v: Option<String> = row.try_get(col).map_err(store_err)?;
            v.map(|v| PlayerId::parse(v).map_err(|_| corrupt(col))).transpose()
        };
        Ok(Some(PlayerRecord {
            game_id: GameId::parse(row.try_get::<String, _>("game_id").map_err(store_err)?)
                .map_err(|_| corrupt("game_id"))?,
            player_id: id("player_id")?,
            pseudonym: id("pseudonym")?,
            wrapped_key: row.try_get("wrapped_key").map_err(store_err)?,
            created_at: to_millis(row.try_get("created_at").map_err(store_err)?),
            erased_at: row.try_get::<Option<_>, _>("erased_at").map_err(store_err)?.map(to_millis),
            suppressed_until: row.try_get::<Option<_>, _>("suppressed_until").map_err(store_err)?.map(to_millis),
        }))
    }

    async fn personal_of(&self, subject: &Subject) -> Result<Vec<StoredPersonal>, StoreError> {
        let rows = sqlx::query(
            "SELECT event_id, game_id, pseudonym, received_at, sealed FROM player_personal
             WHERE subject = $1 ORDER BY date_trunc('milliseconds', received_at), event_id",
        )
        .bind(subject.0.to_vec())
        .fetch_all(self.pool())
        .await
        .map_err(store_err)?;
        rows.iter()
            .map(|row| {
                let sealed: serde_json::Value = row.try_get("sealed").map_err(store_err)?;
                Ok(StoredPersonal {
                    subject: *subject,
                    game_id: GameId::parse(row.try_get::<String, _>("game_id").map_err(store_err)?)
                        .map_err(|_| corrupt("game_id"))?,
                    pseudonym: PlayerId::parse(row.try_get::<String, _>("pseudonym").map_err(store_err)?)
                        .map_err(|_| corrupt("pseudonym"))?,
                    event_id: row.try_get("event_id").map_err(store_err)?,
                    received_at: to_millis(row.try_get("received_at").map_err(store_err)?),
                    sealed: serde_json::from_value::<SealedPersonal>(sealed).map_err(|_| corrupt("sealed value"))?,
                })
            })
            .collect()
    }

    async fn resolve_pseudonyms(&self, pseudonyms: &[String]) -> Result<HashMap<String, String>, StoreError> {
        if pseudonyms.is_empty() {
            return Ok(HashMap::new());
        }
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT pseudonym, player_id FROM player_keys WHERE pseudonym = ANY($1) AND player_id IS NOT NULL",
        )
        .bind(pseudonyms)
        .fetch_all(self.pool())
        .await
        .map_err(store_err)?;
        Ok(rows.into_iter().collect())
    }

    async fn begin_erasure(&self, r: NewErasure) -> Result<Begun, StoreError> {
        let mut tx = self.pool().begin().await.map_err(store_err)?;
        let subject = r.subject.0.to_vec();
        // Serialise requests for the same player on its key row (or its absence).
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended(encode($1, 'hex'), 7))")
            .bind(&subject)
            .execute(&mut *tx)
            .await
            .map_err(store_err)?;
        let key: Option<(Option<String>, bool, DateTime<Utc>)> =
            sqlx::query_as("SELECT pseudonym, wrapped_key IS NOT NULL, created_at FROM player_keys WHERE subject = $1")
                .bind(&subject)
                .fetch_optional(&mut *tx)
                .await
                .map_err(store_err)?;
        let latest = sqlx::query(&format!(
            "SELECT {ERASURE_COLUMNS} FROM privacy_erasures WHERE subject = $1 ORDER BY requested_at DESC LIMIT 1"
        ))
        .bind(&subject)
        .fetch_optional(&mut *tx)
        .await
        .map_err(store_err)?;
        let key = key.map(|(pseudonym, has_key, created_at)| HeldKey { pseudonym, has_key, created_at });
        let begun = r.begin(key, latest.as_ref().map(erasure_from_row).transpose()?)?;
        let Begun::Started { erasure, .. } = &begun else {
            tx.rollback().await.map_err(store_err)?;
            return Ok(begun);
        };
        sqlx::query(
            "INSERT INTO player_keys (subject, game_id, created_at, erased_at, suppressed_until)
             VALUES ($1, $2, $3, $3, $4)
             ON CONFLICT (subject) DO UPDATE SET wrapped_key = NULL, erased_at = $3, suppressed_until = $4",
        )
        .bind(&subject)
        .bind(r.game_id.as_str())
        .bind(r.requested_at)
        .bind(r.suppressed_until)
        .execute(&mut *tx)
        .await
        .map_err(store_err)?;
        sqlx::query("DELETE FROM player_personal WHERE subject = $1")
            .bind(&subject)
            .execute(&mut *tx)
            .await
            .map_err(store_err)?;
        sqlx::query(
            "INSERT INTO privacy_erasures (erasure_id, subject, game_id, status, reason, requested_by, requested_at, timeline)
             VALUES ($1, $2, $3, 'pending', $4, $5, $6, $7)",
        )
        .bind(r.erasure_id)
        .bind(&subject)
        .bind(r.game_id.as_str())
        .bind(&r.reason)
        .bind(&r.requested_by)
        .bind(r.requested_at)
        .bind(serde_json::to_value(&erasure.timeline).expect("serialisable"))
        .execute(&mut *tx)
        .await
        .map_err(store_err)?;
        insert_audit(&mut tx, &r.audit(), Some(&r.subject)).await?;
        tx.commit().await.map_err(store_err)?;
        Ok(begun)
    }

    async fn add_step(&self, erasure_id: Uuid, step: Step) -> Result<(), StoreError> {
        sqlx::query("UPDATE privacy_erasures SET timeline = timeline || $2::jsonb WHERE erasure_id = $1")
            .bind(erasure_id)
            .bind(serde_json::to_value(vec![step]).expect("serialisable"))
            .execute(self.pool())
            .await
            .map_err(store_err)?;
        Ok(())
    }

    async fn erasure(&self, erasure_id: Uuid) -> Result<Option<Erasure>, StoreError> {
        let row = sqlx::query(&format!("SELECT {ERASURE_COLUMNS} FROM privacy_erasures WHERE erasure_id = $1"))
            .bind(erasure_id)
            .fetch_optional(self.pool())
            .await
            .map_err(store_err)?;
        row.as_ref().map(erasure_from_row).transpose()
    }

    async fn pending_erasures(&self) -> Result<Vec<Erasure>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ERASURE_COLUMNS} FROM privacy_erasures WHERE status = 'pending' ORDER BY requested_at LIMIT 1000"
        ))
        .fetch_all(self.pool())
        .await
        .map_err(store_err)?;
        rows.iter().map(erasure_from_row).collect()
    }

    async fn confirmations(&self, erasure_id: Uuid) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
        sqlx::query_as(
            "SELECT projection, confirmed_at FROM erasure_confirmations WHERE erasure_id = $1 ORDER BY confirmed_at",
        )
        .bind(erasure_id)
        .fetch_all(self.pool())
        .await
        .map(|rows: Vec<(String, DateTime<Utc>)>| rows.into_iter().map(|(p, at)| (p, to_millis(at))).collect())
        .map_err(store_err)
    }

    async fn complete_erasure(&self, erasure_id: Uuid, receipt: Receipt, steps: Vec<Step>) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await.map_err(store_err)?;
        let subject: Option<Vec<u8>> = sqlx::query_scalar(
            "UPDATE privacy_erasures SET status = 'completed', completed_at = $2, receipt = $3,
                 timeline = timeline || $4::jsonb
             WHERE erasure_id = $1 AND status = 'pending' RETURNING subject",
        )
        .bind(erasure_id)
        .bind(receipt.completed_at)
        .bind(serde_json::to_value(&receipt).expect("serialisable"))
        .bind(serde_json::to_value(&steps).expect("serialisable"))
        .fetch_optional(&mut *tx)
        .await
        .map_err(store_err)?;
        let Some(subject) = subject else {
            // Already completed (another replica got there first).
            tx.rollback().await.map_err(store_err)?;
            return Ok(());
        };
        sqlx::query(
            "UPDATE player_keys SET player_id = NULL, pseudonym = NULL
             WHERE subject = $1 AND wrapped_key IS NULL",
        )
        .bind(&subject)
        .execute(&mut *tx)
        .await
        .map_err(store_err)?;
        insert_audit(&mut tx, &AuditEntry::erasure_completed(&receipt), Subject::from_slice(&subject).as_ref()).await?;
        tx.commit().await.map_err(store_err)?;
        schedule_vacuum(self.pool());
        Ok(())
    }

    async fn audit(&self, entry: AuditEntry) -> Result<(), StoreError> {
        let subject = entry.subject.as_deref().and_then(|h| hex::decode(h).ok()).and_then(|b| Subject::from_slice(&b));
        let mut conn = self.pool().acquire().await.map_err(store_err)?;
        insert_audit(&mut conn, &entry, subject.as_ref()).await
    }

    async fn audit_trail(&self, limit: u32, games: Option<&[String]>) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT at, actor, action, game_id, erasure_id, subject, detail FROM privacy_audit
             WHERE $2::text[] IS NULL OR game_id = ANY($2)
             ORDER BY id DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .bind(games)
        .fetch_all(self.pool())
        .await
        .map_err(store_err)?;
        rows.iter()
            .map(|row| {
                let subject: Option<Vec<u8>> = row.try_get("subject").map_err(store_err)?;
                Ok(AuditEntry {
                    at: to_millis(row.try_get("at").map_err(store_err)?),
                    actor: row.try_get("actor").map_err(store_err)?,
                    action: row.try_get("action").map_err(store_err)?,
                    game_id: row.try_get("game_id").map_err(store_err)?,
                    erasure_id: row.try_get("erasure_id").map_err(store_err)?,
                    subject: subject.map(hex::encode),
                    detail: row.try_get("detail").map_err(store_err)?,
                })
            })
            .collect()
    }

    async fn erasures(&self, filter: &gm_privacy::store::ErasureFilter) -> Result<Vec<Erasure>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ERASURE_COLUMNS} FROM privacy_erasures
             WHERE ($2::text[] IS NULL OR game_id = ANY($2)) AND ($3::text IS NULL OR status = $3)
             ORDER BY requested_at DESC, erasure_id DESC LIMIT $1"
        ))
        .bind(i64::from(filter.limit))
        .bind(filter.games.as_deref())
        .bind(filter.status.map(|s| s.as_str()))
        .fetch_all(self.pool())
        .await
        .map_err(store_err)?;
        rows.iter().map(erasure_from_row).collect()
    }
}
