//! Player snapshots with per-partition watermarks ([`SnapshotStore`]).

use super::{store_err, SqliteStore, LOOKUP_CHUNK};
use crate::sql::{insert_rows, to_i64, to_u64, V};
use async_trait::async_trait;
use gm_ports::{SnapshotStore, StoreError};
use sqlx::Row;

#[async_trait]
impl SnapshotStore for SqliteStore {
    async fn watermark(&self, partition: u32) -> Result<Option<u64>, StoreError> {
        let v: Option<i64> = sqlx::query_scalar("SELECT next_offset FROM watermarks WHERE partition = ?")
            .bind(i64::from(partition))
            .fetch_optional(&self.inner.reads)
            .await
            .map_err(store_err)?;
        Ok(v.map(to_u64))
    }

    async fn load_many(&self, keys: &[String]) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        if keys.is_empty() {
            return Ok(out);
        }
        let mut conn = self.inner.reads.acquire().await.map_err(store_err)?;
        for chunk in keys.chunks(LOOKUP_CHUNK) {
            let marks = vec!["?"; chunk.len()].join(",");
            let sql = format!("SELECT key, state FROM snapshots WHERE key IN ({marks})");
            let mut q = sqlx::query(&sql);
            for k in chunk {
                q = q.bind(k);
            }
            for row in q.fetch_all(&mut *conn).await.map_err(store_err)? {
                out.push((row.try_get(0).map_err(store_err)?, row.try_get(1).map_err(store_err)?));
            }
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
        let mut w = self.begin().await?;
        let result = async {
            // Moving the watermark only from `expected` fences a writer whose view of the
            // store is stale (writes are serialised, so reading then writing is safe here).
            let found: Option<i64> = sqlx::query_scalar("SELECT next_offset FROM watermarks WHERE partition = ?")
                .bind(i64::from(partition))
                .fetch_optional(&mut w.conn)
                .await
                .map_err(store_err)?;
            let found = found.map(to_u64);
            if found != expected {
                return Err(StoreError::Conflict { expected, found });
            }
            let rows =
                players.into_iter().map(|(k, state)| vec![V::T(k), V::I(i64::from(partition)), V::B(state)]).collect();
            insert_rows(
                &mut w.conn,
                "INSERT INTO snapshots (key, partition, state) VALUES",
                "ON CONFLICT (key) DO UPDATE SET partition = excluded.partition, state = excluded.state",
                3,
                rows,
            )
            .await
            .map_err(store_err)?;
            sqlx::query(
                "INSERT INTO watermarks (partition, next_offset) VALUES (?, ?)
                 ON CONFLICT (partition) DO UPDATE SET next_offset = excluded.next_offset",
            )
            .bind(i64::from(partition))
            .bind(to_i64(next_offset))
            .execute(&mut w.conn)
            .await
            .map_err(store_err)?;
            Ok(())
        }
        .await;
        Self::finish(&mut w, result).await
    }

    async fn count(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM snapshots")
            .fetch_one(&self.inner.reads)
            .await
            .map_err(store_err)?;
        Ok(to_u64(n))
    }
}
