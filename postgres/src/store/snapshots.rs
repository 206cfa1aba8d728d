//! Player snapshots with per-partition watermarks ([`SnapshotStore`]).

use super::PgStore;
use crate::error::{store_err, to_i64, to_u64};
use async_trait::async_trait;
use gm_ports::{SnapshotStore, StoreError};
use std::collections::HashMap;

/// Rows per statement for snapshot writes and key lookups (bounds one message's size).
const SNAPSHOT_CHUNK: usize = 50_000;

#[async_trait]
impl SnapshotStore for PgStore {
    async fn watermark(&self, partition: u32) -> Result<Option<u64>, StoreError> {
        let v: Option<i64> = sqlx::query_scalar("SELECT next_offset FROM watermarks WHERE partition = $1")
            .bind(partition as i32)
            .fetch_optional(&self.pool)
            .await
            .map_err(store_err)?;
        Ok(v.map(to_u64))
    }

    async fn load_many(&self, keys: &[String]) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(SNAPSHOT_CHUNK) {
            let rows: Vec<(String, Vec<u8>)> =
                sqlx::query_as("SELECT key, state FROM snapshots WHERE key = ANY($1::text[])")
                    .bind(chunk)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(store_err)?;
            out.extend(rows);
        }
        Ok(out)
    }

    async fn save(
        &self,
        partition: u32,
        expected: Option<u64>,
        next_offset: u64,
        players: Vec<(String, Vec<u8>)>,
    ) -> Result<(), StoreError> {
        // The last state of a key wins (one statement may not update a row twice).
        let mut index: HashMap<String, usize> = HashMap::with_capacity(players.len());
        let mut keys: Vec<String> = Vec::with_capacity(players.len());
        let mut states: Vec<Vec<u8>> = Vec::with_capacity(players.len());
        for (k, s) in players {
            match index.get(&k) {
                Some(&i) => states[i] = s,
                None => {
                    index.insert(k.clone(), keys.len());
                    keys.push(k);
                    states.push(s);
                }
            }
        }
        let mut tx = self.pool.begin().await.map_err(store_err)?;
        // The watermark first: moving it only from `expected` fences a writer whose view of
        // the store is stale, and the row lock serialises concurrent savers of a partition.
        let moved = match expected {
            Some(from) => {
                sqlx::query("UPDATE watermarks SET next_offset = $2 WHERE partition = $1 AND next_offset = $3")
                    .bind(partition as i32)
                    .bind(to_i64(next_offset))
                    .bind(to_i64(from))
            }
            None => sqlx::query(
                "INSERT INTO watermarks (partition, next_offset) VALUES ($1, $2) ON CONFLICT (partition) DO NOTHING",
            )
            .bind(partition as i32)
            .bind(to_i64(next_offset)),
        }
        .execute(&mut *tx)
        .await
        .map_err(store_err)?
        .rows_affected();
        if moved == 0 {
            let found: Option<i64> = sqlx::query_scalar("SELECT next_offset FROM watermarks WHERE partition = $1")
                .bind(partition as i32)
                .fetch_optional(&mut *tx)
                .await
                .map_err(store_err)?;
            let _ = tx.rollback().await;
            return Err(StoreError::Conflict { expected, found: found.map(to_u64) });
        }
        for (k, s) in keys.chunks(SNAPSHOT_CHUNK).zip(states.chunks(SNAPSHOT_CHUNK)) {
            sqlx::query(
                "INSERT INTO snapshots (key, partition, state)
                 SELECT u.key, $3, u.state FROM UNNEST($1::text[], $2::bytea[]) AS u(key, state)
                 ON CONFLICT (key) DO UPDATE SET partition = excluded.partition, state = excluded.state",
            )
            .bind(k)
            .bind(s)
            .bind(partition as i32)
            .execute(&mut *tx)
            .await
            .map_err(store_err)?;
        }
        tx.commit().await.map_err(store_err)
    }

    async fn count(&self) -> Result<u64, StoreError> {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM snapshots").fetch_one(&self.pool).await.map_err(store_err)?;
        Ok(to_u64(n))
    }
}
