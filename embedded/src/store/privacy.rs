//! `PrivacyStore` on the embedded SQLite store: the same tables and rules as PostgreSQL
//! (postgres/migrations/0003_privacy.sql), times as Unix milliseconds, JSON as text.

use super::{store_err, SqliteStore};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use gm_ports::StoreError;
use gm_privacy::{
    AuditEntry, Begun, Erasure, ErasureStatus, HeldKey, NewErasure, NewPlayer, PlayerEntry, PlayerKeyState,
    PlayerRecord, PrivacyStore, Receipt, Step, StoredPersonal, Subject,
};
use gm_schemas::{GameId, PlayerId};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};
use std::collections::HashMap;
use uuid::Uuid;

pub(super) const PRIVACY_SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS player_keys (
        subject BLOB PRIMARY KEY,
        game_id TEXT NOT NULL,
        player_id TEXT,
        pseudonym TEXT UNIQUE,
        wrapped_key BLOB,
        created_at INTEGER NOT NULL,
        erased_at INTEGER,
        suppressed_until INTEGER
    )",
    "CREATE TABLE IF NOT EXISTS player_personal (
        subject BLOB NOT NULL,
        event_id TEXT NOT NULL,
        game_id TEXT NOT NULL,
        pseudonym TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        sealed TEXT NOT NULL,
        PRIMARY KEY (subject, event_id)
    )",
    "CREATE TABLE IF NOT EXISTS privacy_erasures (
        erasure_id TEXT PRIMARY KEY,
        subject BLOB NOT NULL,
        game_id TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending', 'completed')),
        reason TEXT NOT NULL,
        requested_by TEXT NOT NULL,
        requested_at INTEGER NOT NULL,
        completed_at INTEGER,
        timeline TEXT NOT NULL,
        receipt TEXT
    )",
    "CREATE INDEX IF NOT EXISTS privacy_erasures_subject ON privacy_erasures (subject, requested_at)",
    "CREATE TABLE IF NOT EXISTS erasure_confirmations (
        erasure_id TEXT NOT NULL,
        projection TEXT NOT NULL,
        confirmed_at INTEGER NOT NULL,
        PRIMARY KEY (erasure_id, projection)
    )",
    "CREATE TABLE IF NOT EXISTS privacy_audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at INTEGER NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        game_id TEXT,
        erasure_id TEXT,
        subject BLOB,
        detail TEXT
    )",
    "CREATE TRIGGER IF NOT EXISTS privacy_audit_no_update BEFORE UPDATE ON privacy_audit
        BEGIN SELECT RAISE(ABORT, 'privacy_audit is append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS privacy_audit_no_delete BEFORE DELETE ON privacy_audit
        BEGIN SELECT RAISE(ABORT, 'privacy_audit is append-only'); END",
];

fn corrupt(what: &str) -> StoreError {
    StoreError::Other(format!("privacy table holds an invalid {what}").into())
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn time(v: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(v).unwrap_or_default()
}

const ERASURE_COLUMNS: &str =
    "erasure_id, subject, game_id, status, reason, requested_by, requested_at, completed_at, timeline, receipt";

fn erasure_from_row(row: &SqliteRow) -> Result<Erasure, StoreError> {
    let get_s = |c: &str| -> Result<String, StoreError> { row.try_get::<String, _>(c).map_err(store_err) };
    let subject: Vec<u8> = row.try_get("subject").map_err(store_err)?;
    let receipt: Option<String> = row.try_get("receipt").map_err(store_err)?;
    let completed: Option<i64> = row.try_get("completed_at").map_err(store_err)?;
    Ok(Erasure {
        erasure_id: Uuid::parse_str(&get_s("erasure_id")?).map_err(|_| corrupt("erasure id"))?,
        game_id: get_s("game_id")?,
        subject: hex::encode(&subject),
        status: ErasureStatus::parse(&get_s("status")?).ok_or_else(|| corrupt("status"))?,
        reason: get_s("reason")?,
        requested_by: get_s("requested_by")?,
        requested_at: time(row.try_get("requested_at").map_err(store_err)?),
        completed_at: completed.map(time),
        timeline: serde_json::from_str(&get_s("timeline")?).map_err(|_| corrupt("timeline"))?,
        receipt: receipt.map(|r| serde_json::from_str(&r)).transpose().map_err(|_| corrupt("receipt"))?,
    })
}

async fn insert_audit(conn: &mut SqliteConnection, e: &AuditEntry) -> Result<(), StoreError> {
    let subject = e.subject.as_deref().and_then(|h| hex::decode(h).ok());
    sqlx::query(
        "INSERT INTO privacy_audit (at, actor, action, game_id, erasure_id, subject, detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(ms(e.at))
    .bind(&e.actor)
    .bind(&e.action)
    .bind(&e.game_id)
    .bind(e.erasure_id.map(|u| u.to_string()))
    .bind(subject)
    .bind(&e.detail)
    .execute(conn)
    .await
    .map_err(store_err)?;
    Ok(())
}

async fn append_steps(conn: &mut SqliteConnection, erasure_id: Uuid, steps: &[Step]) -> Result<(), StoreError> {
    let timeline: Option<String> = sqlx::query_scalar("SELECT timeline FROM privacy_erasures WHERE erasure_id = ?")
        .bind(erasure_id.to_string())
        .fetch_optional(&mut *conn)
        .await
        .map_err(store_err)?;
    let Some(timeline) = timeline else { return Ok(()) };
    let mut all: Vec<Step> = serde_json::from_str(&timeline).map_err(|_| corrupt("timeline"))?;
    all.extend_from_slice(steps);
    sqlx::query("UPDATE privacy_erasures SET timeline = ? WHERE erasure_id = ?")
        .bind(serde_json::to_string(&all).expect("serialisable"))
        .bind(erasure_id.to_string())
        .execute(conn)
        .await
        .map_err(store_err)?;
    Ok(())
}

#[async_trait]
impl PrivacyStore for SqliteStore {
    async fn ensure_players(&self, players: Vec<NewPlayer>) -> Result<Vec<PlayerEntry>, StoreError> {
        if players.is_empty() {
            return Ok(Vec::new());
        }
        let now = ms(Utc::now());
        let mut w = self.begin().await?;
        let result = async {
            let mut out = Vec::with_capacity(players.len());
            let mut seen = std::collections::HashSet::new();
            for p in players.iter().filter(|p| seen.insert(p.subject)) {
                let subject = p.subject.0.to_vec();
                // Re-admit a player whose erasure completed and whose suppression expired.
                sqlx::query(
                    "DELETE FROM player_keys WHERE subject = ? AND wrapped_key IS NULL AND player_id IS NULL
                     AND suppressed_until < ?",
                )
                .bind(&subject)
                .bind(now)
                .execute(&mut w.conn)
                .await
                .map_err(store_err)?;
                sqlx::query(
                    "INSERT OR IGNORE INTO player_keys (subject, game_id, player_id, pseudonym, wrapped_key, created_at)
                     VALUES (?, ?, ?, ?, ?, ?)",
                )
                .bind(&subject)
                .bind(p.game_id.as_str())
                .bind(p.player_id.as_str())
                .bind(p.pseudonym.as_str())
                .bind(&p.wrapped_key)
                .bind(now)
                .execute(&mut w.conn)
                .await
                .map_err(store_err)?;
                let (pseudonym, wrapped, erased_at, until): (
                    Option<String>,
                    Option<Vec<u8>>,
                    Option<i64>,
                    Option<i64>,
                ) = sqlx::query_as(
                    "SELECT pseudonym, wrapped_key, erased_at, suppressed_until FROM player_keys WHERE subject = ?",
                )
                .bind(&subject)
                .fetch_one(&mut w.conn)
                .await
                .map_err(store_err)?;
                let state = match (pseudonym, wrapped) {
                    (Some(p), Some(w)) => PlayerKeyState::Active {
                        pseudonym: PlayerId::parse(p).map_err(|_| corrupt("pseudonym"))?,
                        wrapped_key: w,
                    },
                    _ => {
                        let erased_at = time(erased_at.ok_or_else(|| corrupt("key state"))?);
                        PlayerKeyState::Suppressed { erased_at, until: until.map(time).unwrap_or(erased_at) }
                    }
                };
                out.push(PlayerEntry { subject: p.subject, state });
            }
            Ok(out)
        }
        .await;
        Self::finish(&mut w, result).await
    }

    async fn keep_personal(&self, rows: Vec<StoredPersonal>) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut w = self.begin().await?;
        let result = async {
            for r in &rows {
                sqlx::query(
                    "INSERT OR IGNORE INTO player_personal (subject, event_id, game_id, pseudonym, received_at, sealed)
                     SELECT ?1, ?2, ?3, ?4, ?5, ?6 WHERE EXISTS (SELECT 1 FROM player_keys
                         WHERE subject = ?1 AND pseudonym = ?4 AND wrapped_key IS NOT NULL)",
                )
                .bind(r.subject.0.to_vec())
                .bind(r.event_id.to_string())
                .bind(r.game_id.as_str())
                .bind(r.pseudonym.as_str())
                .bind(ms(r.received_at))
                .bind(serde_json::to_string(&r.sealed).expect("serialisable"))
                .execute(&mut w.conn)
                .await
                .map_err(store_err)?;
            }
            Ok(())
        }
        .await;
        Self::finish(&mut w, result).await
    }

    async fn player(&self, subject: &Subject) -> Result<Option<PlayerRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT game_id, player_id, pseudonym, wrapped_key, created_at, erased_at, suppressed_until
             FROM player_keys WHERE subject = ?",
        )
        .bind(subject.0.to_vec())
        .fetch_optional(&self.inner.reads)
        .await
        .map_err(store_err)?;
        let Some(row) = row else { return Ok(None) };
        let id = |col: &str| -> Result<Option<PlayerId>, StoreError> {
            let v: Option<String> = row.try_get(col).map_err(store_err)?;
            v.map(|v| PlayerId::parse(v).map_err(|_| corrupt(col))).transpose()
        };
        let opt_time = |col: &str| -> Result<Option<DateTime<Utc>>, StoreError> {
            Ok(row.try_get::<Option<i64>, _>(col).map_err(store_err)?.map(time))
        };
        Ok(Some(PlayerRecord {
            game_id: GameId::parse(row.try_get::<String, _>("game_id").map_err(store_err)?)
                .map_err(|_| corrupt("game_id"))?,
            player_id: id("player_id")?,
            pseudonym: id("pseudonym")?,
            wrapped_key: row.try_get("wrapped_key").map_err(store_err)?,
            created_at: time(row.try_get("created_at").map_err(store_err)?),
            erased_at: opt_time("erased_at")?,
            suppressed_until: opt_time("suppressed_until")?,
        }))
    }

    async fn personal_of(&self, subject: &Subject) -> Result<Vec<StoredPersonal>, StoreError> {
        let rows: Vec<(String, String, String, i64, String)> = sqlx::query_as(
            "SELECT event_id, game_id, pseudonym, received_at, sealed FROM player_personal
             WHERE subject = ? ORDER BY received_at, event_id",
        )
        .bind(subject.0.to_vec())
        .fetch_all(&self.inner.reads)
        .await
        .map_err(store_err)?;
        rows.into_iter()
            .map(|(event_id, game, pseudonym, at, sealed)| {
                Ok(StoredPersonal {
                    subject: *subject,
                    game_id: GameId::parse(game).map_err(|_| corrupt("game_id"))?,
                    pseudonym: PlayerId::parse(pseudonym).map_err(|_| corrupt("pseudonym"))?,
                    event_id: Uuid::parse_str(&event_id).map_err(|_| corrupt("event id"))?,
                    received_at: time(at),
                    sealed: serde_json::from_str(&sealed).map_err(|_| corrupt("sealed value"))?,
                })
            })
            .collect()
    }

    async fn resolve_pseudonyms(&self, pseudonyms: &[String]) -> Result<HashMap<String, String>, StoreError> {
        let mut out = HashMap::new();
        for chunk in pseudonyms.chunks(super::LOOKUP_CHUNK) {
            let marks = vec!["?"; chunk.len()].join(",");
            let sql = format!(
                "SELECT pseudonym, player_id FROM player_keys WHERE pseudonym IN ({marks}) AND player_id IS NOT NULL"
            );
            let mut q = sqlx::query_as::<_, (String, String)>(&sql);
            for p in chunk {
                q = q.bind(p);
            }
            out.extend(q.fetch_all(&self.inner.reads).await.map_err(store_err)?);
        }
        Ok(out)
    }

    async fn begin_erasure(&self, r: NewErasure) -> Result<Begun, StoreError> {
        let mut w = self.begin().await?;
        let result = async {
            let subject = r.subject.0.to_vec();
            let key: Option<(Option<String>, bool, i64)> = sqlx::query_as(
                "SELECT pseudonym, wrapped_key IS NOT NULL, created_at FROM player_keys WHERE subject = ?",
            )
            .bind(&subject)
            .fetch_optional(&mut w.conn)
            .await
            .map_err(store_err)?;
            let latest = sqlx::query(&format!(
                "SELECT {ERASURE_COLUMNS} FROM privacy_erasures WHERE subject = ? ORDER BY requested_at DESC LIMIT 1"
            ))
            .bind(&subject)
            .fetch_optional(&mut w.conn)
            .await
            .map_err(store_err)?;
            let key =
                key.map(|(pseudonym, has_key, created)| HeldKey { pseudonym, has_key, created_at: time(created) });
            let begun = r.begin(key, latest.as_ref().map(erasure_from_row).transpose()?)?;
            let Begun::Started { erasure, .. } = &begun else { return Ok(begun) };
            sqlx::query(
                "INSERT INTO player_keys (subject, game_id, created_at, erased_at, suppressed_until) VALUES (?1, ?2, ?3, ?3, ?4)
                 ON CONFLICT (subject) DO UPDATE SET wrapped_key = NULL, erased_at = ?3, suppressed_until = ?4",
            )
            .bind(&subject)
            .bind(r.game_id.as_str())
            .bind(ms(r.requested_at))
            .bind(ms(r.suppressed_until))
            .execute(&mut w.conn)
            .await
            .map_err(store_err)?;
            sqlx::query("DELETE FROM player_personal WHERE subject = ?")
                .bind(&subject)
                .execute(&mut w.conn)
                .await
                .map_err(store_err)?;
            sqlx::query(
                "INSERT INTO privacy_erasures (erasure_id, subject, game_id, status, reason, requested_by, requested_at, timeline)
                 VALUES (?, ?, ?, 'pending', ?, ?, ?, ?)",
            )
            .bind(r.erasure_id.to_string())
            .bind(&subject)
            .bind(r.game_id.as_str())
            .bind(&r.reason)
            .bind(&r.requested_by)
            .bind(ms(r.requested_at))
            .bind(serde_json::to_string(&erasure.timeline).expect("serialisable"))
            .execute(&mut w.conn)
            .await
            .map_err(store_err)?;
            insert_audit(&mut w.conn, &r.audit()).await?;
            Ok(begun)
        }
        .await;
        Self::finish(&mut w, result).await
    }

    async fn add_step(&self, erasure_id: Uuid, step: Step) -> Result<(), StoreError> {
        let mut w = self.begin().await?;
        let result = append_steps(&mut w.conn, erasure_id, &[step]).await;
        Self::finish(&mut w, result).await
    }

    async fn erasure(&self, erasure_id: Uuid) -> Result<Option<Erasure>, StoreError> {
        let row = sqlx::query(&format!("SELECT {ERASURE_COLUMNS} FROM privacy_erasures WHERE erasure_id = ?"))
            .bind(erasure_id.to_string())
            .fetch_optional(&self.inner.reads)
            .await
            .map_err(store_err)?;
        row.as_ref().map(erasure_from_row).transpose()
    }

    async fn pending_erasures(&self) -> Result<Vec<Erasure>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ERASURE_COLUMNS} FROM privacy_erasures WHERE status = 'pending' ORDER BY requested_at LIMIT 1000"
        ))
        .fetch_all(&self.inner.reads)
        .await
        .map_err(store_err)?;
        rows.iter().map(erasure_from_row).collect()
    }

    async fn confirmations(&self, erasure_id: Uuid) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT projection, confirmed_at FROM erasure_confirmations WHERE erasure_id = ? ORDER BY confirmed_at",
        )
        .bind(erasure_id.to_string())
        .fetch_all(&self.inner.reads)
        .await
        .map_err(store_err)?;
        Ok(rows.into_iter().map(|(p, at)| (p, time(at))).collect())
    }

    async fn complete_erasure(&self, erasure_id: Uuid, receipt: Receipt, steps: Vec<Step>) -> Result<(), StoreError> {
        let mut w = self.begin().await?;
        let result = async {
            let subject: Option<Vec<u8>> =
                sqlx::query_scalar("SELECT subject FROM privacy_erasures WHERE erasure_id = ? AND status = 'pending'")
                    .bind(erasure_id.to_string())
                    .fetch_optional(&mut w.conn)
                    .await
                    .map_err(store_err)?;
            let Some(subject) = subject else { return Ok(()) };
            append_steps(&mut w.conn, erasure_id, &steps).await?;
            sqlx::query(
                "UPDATE privacy_erasures SET status = 'completed', completed_at = ?, receipt = ? WHERE erasure_id = ?",
            )
            .bind(ms(receipt.completed_at))
            .bind(serde_json::to_string(&receipt).expect("serialisable"))
            .bind(erasure_id.to_string())
            .execute(&mut w.conn)
            .await
            .map_err(store_err)?;
            sqlx::query(
                "UPDATE player_keys SET player_id = NULL, pseudonym = NULL WHERE subject = ? AND wrapped_key IS NULL",
            )
            .bind(&subject)
            .execute(&mut w.conn)
            .await
            .map_err(store_err)?;
            insert_audit(&mut w.conn, &AuditEntry::erasure_completed(&receipt)).await
        }
        .await;
        Self::finish(&mut w, result).await?;
        // The read models dropped the player before they confirmed; with secure_delete
        // their rows are zeros in the database file, and this empties the WAL, which still
        // held the pages as they were.
        match crate::sql::truncate_wal(&mut w.conn).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(%erasure_id, "WAL checkpoint held back by readers; the WAL is emptied at the next one")
            }
            Err(e) => tracing::warn!(%erasure_id, error = %e, "WAL checkpoint after an erasure failed"),
        }
        Ok(())
    }

    async fn audit(&self, entry: AuditEntry) -> Result<(), StoreError> {
        let mut w = self.begin().await?;
        let result = insert_audit(&mut w.conn, &entry).await;
        Self::finish(&mut w, result).await
    }

    async fn audit_trail(&self, limit: u32, games: Option<&[String]>) -> Result<Vec<AuditEntry>, StoreError> {
        let filter = match games {
            None => String::new(),
            Some([]) => return Ok(Vec::new()),
            Some(games) => format!("WHERE game_id IN ({})", vec!["?"; games.len()].join(",")),
        };
        let sql = format!(
            "SELECT at, actor, action, game_id, erasure_id, subject, detail FROM privacy_audit {filter} \
             ORDER BY id DESC LIMIT ?"
        );
        let mut query = sqlx::query(&sql);
        for game in games.unwrap_or_default() {
            query = query.bind(game);
        }
        let rows = query.bind(i64::from(limit)).fetch_all(&self.inner.reads).await.map_err(store_err)?;
        rows.iter()
            .map(|row| {
                let subject: Option<Vec<u8>> = row.try_get("subject").map_err(store_err)?;
                let erasure: Option<String> = row.try_get("erasure_id").map_err(store_err)?;
                Ok(AuditEntry {
                    at: time(row.try_get("at").map_err(store_err)?),
                    actor: row.try_get("actor").map_err(store_err)?,
                    action: row.try_get("action").map_err(store_err)?,
                    game_id: row.try_get("game_id").map_err(store_err)?,
                    erasure_id: erasure.map(|e| Uuid::parse_str(&e)).transpose().map_err(|_| corrupt("erasure id"))?,
                    subject: subject.map(hex::encode),
                    detail: row.try_get("detail").map_err(store_err)?,
                })
            })
            .collect()
    }

    async fn erasures(&self, filter: &gm_privacy::store::ErasureFilter) -> Result<Vec<Erasure>, StoreError> {
        let mut conditions = Vec::new();
        match filter.games.as_deref() {
            None => {}
            Some([]) => return Ok(Vec::new()),
            Some(games) => conditions.push(format!("game_id IN ({})", vec!["?"; games.len()].join(","))),
        }
        if filter.status.is_some() {
            conditions.push("status = ?".to_string());
        }
        let filter_sql =
            if conditions.is_empty() { String::new() } else { format!("WHERE {}", conditions.join(" AND ")) };
        let sql = format!(
            "SELECT {ERASURE_COLUMNS} FROM privacy_erasures {filter_sql} \
             ORDER BY requested_at DESC, erasure_id DESC LIMIT ?"
        );
        let mut query = sqlx::query(&sql);
        for game in filter.games.as_deref().unwrap_or_default() {
            query = query.bind(game);
        }
        if let Some(status) = filter.status {
            query = query.bind(status.as_str());
        }
        let rows = query.bind(i64::from(filter.limit)).fetch_all(&self.inner.reads).await.map_err(store_err)?;
        rows.iter().map(erasure_from_row).collect()
    }
}
