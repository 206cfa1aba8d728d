//! The keys database (`privacy.keys_url`) and the restore check's two sides on PostgreSQL:
//! the ledger (completed erasures in the keys database, `gm_privacy::ErasureLedger`) and what
//! a restore of the data database rewinds (`gm_privacy::ErasureRecords`).

use crate::error::store_err;
use crate::privacy::{erasure_from_row, ERASURE_COLUMNS};
use crate::PgStore;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use gm_ports::StoreError;
use gm_privacy::{Erasure, ErasureLedger, ErasureRecords, Step};
use gm_schemas::{GameId, PlayerId};
use std::collections::HashMap;
use uuid::Uuid;

/// The privacy tables, the only ones a keys database holds. Idempotent (every statement is
/// `IF NOT EXISTS` or a replacement), so it is the data database's migration itself, run
/// under a lock: two processes starting at once do not race on the trigger.
const KEYS_SCHEMA: &str = include_str!("../migrations/0003_privacy.sql");

impl PgStore {
    /// Creates the keys database's tables (`gamemetrics migrate` runs it when
    /// `privacy.keys_url` is set).
    pub async fn migrate_keys(&self) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await.map_err(store_err)?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('gamemetrics keys schema'))")
            .execute(&mut *tx)
            .await
            .map_err(store_err)?;
        sqlx::raw_sql(KEYS_SCHEMA).execute(&mut *tx).await.map_err(store_err)?;
        tx.commit().await.map_err(store_err)
    }
}

#[async_trait]
impl ErasureLedger for PgStore {
    async fn completed_erasures(&self, after: Option<Uuid>, limit: u32) -> Result<Vec<Erasure>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ERASURE_COLUMNS} FROM privacy_erasures
             WHERE status = 'completed' AND ($1::uuid IS NULL OR erasure_id > $1)
             ORDER BY erasure_id LIMIT $2"
        ))
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .map_err(store_err)?;
        rows.iter().map(erasure_from_row).collect()
    }

    async fn reopen(
        &self,
        erasure_id: Uuid,
        player: &PlayerId,
        pseudonym: &PlayerId,
        step: Step,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await.map_err(store_err)?;
        // Only while the key row still shows the erasure (no key): a player who came back
        // since has a new key, and their new data is not the erasure's.
        let linked = sqlx::query(
            "UPDATE player_keys k SET player_id = $2, pseudonym = $3
             FROM privacy_erasures e
             WHERE e.erasure_id = $1 AND e.status = 'completed' AND k.subject = e.subject
               AND k.wrapped_key IS NULL",
        )
        .bind(erasure_id)
        .bind(player.as_str())
        .bind(pseudonym.as_str())
        .execute(&mut *tx)
        .await
        .map_err(store_err)?
        .rows_affected();
        if linked == 0 {
            tx.rollback().await.map_err(store_err)?;
            return Ok(false);
        }
        sqlx::query(
            "UPDATE privacy_erasures SET status = 'pending', completed_at = NULL, timeline = timeline || $2::jsonb
             WHERE erasure_id = $1",
        )
        .bind(erasure_id)
        .bind(serde_json::to_value(vec![&step]).expect("serialisable"))
        .execute(&mut *tx)
        .await
        .map_err(store_err)?;
        sqlx::query(
            "INSERT INTO privacy_audit (at, actor, action, game_id, erasure_id, subject, detail)
             SELECT $2, 'system', 'erasure_reapplied', game_id, erasure_id, subject, $3
             FROM privacy_erasures WHERE erasure_id = $1",
        )
        .bind(erasure_id)
        .bind(step.at)
        .bind(&step.detail)
        .execute(&mut *tx)
        .await
        .map_err(store_err)?;
        tx.commit().await.map_err(store_err)?;
        Ok(true)
    }
}

#[async_trait]
impl ErasureRecords for PgStore {
    async fn confirmed(&self, erasure_ids: &[Uuid]) -> Result<HashMap<Uuid, Vec<String>>, StoreError> {
        let rows: Vec<(Uuid, String)> =
            sqlx::query_as("SELECT erasure_id, projection FROM erasure_confirmations WHERE erasure_id = ANY($1)")
                .bind(erasure_ids)
                .fetch_all(self.pool())
                .await
                .map_err(store_err)?;
        let mut out: HashMap<Uuid, Vec<String>> = HashMap::new();
        for (id, projection) in rows {
            out.entry(id).or_default().push(projection);
        }
        Ok(out)
    }

    async fn forget_confirmations(&self, erasure_id: Uuid) -> Result<DateTime<Utc>, StoreError> {
        // Confirmations are dated by now() of the projections' transactions: a transaction
        // that began before this point is not counted, even if it commits later.
        sqlx::query_scalar(
            "WITH gone AS (DELETE FROM erasure_confirmations WHERE erasure_id = $1) SELECT clock_timestamp()",
        )
        .bind(erasure_id)
        .fetch_one(self.pool())
        .await
        .map(crate::error::to_millis)
        .map_err(store_err)
    }

    async fn players_of_game(
        &self,
        game: &GameId,
        after: Option<&PlayerId>,
        limit: u32,
    ) -> Result<Vec<PlayerId>, StoreError> {
        // Every player any projection wrote about has a profile (one transaction applies a
        // batch to every projection).
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT player_id FROM player_profiles WHERE game_id = $1 AND ($2::text IS NULL OR player_id > $2)
             ORDER BY player_id LIMIT $3",
        )
        .bind(game.as_str())
        .bind(after.map(PlayerId::as_str))
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .map_err(store_err)?;
        // An id that no longer parses (older rules) cannot be an erased player's: skipped.
        Ok(ids.into_iter().filter_map(|id| PlayerId::parse(id).ok()).collect())
    }
}
