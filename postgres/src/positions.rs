//! The log positions the platform keeps in PostgreSQL — the actors' snapshot watermarks
//! (offsets of `player.events.raw`) and the projections' checkpoints (offsets of
//! `player.events.processed`) — read and moved as one unit, for a failover to a mirrored
//! Kafka cluster (`gamemetrics kafka-failover`), where every offset changes.

use crate::error::store_err;
use crate::store::PgStore;
use gm_ports::StoreError;

/// Every stored position.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogPositions {
    /// (partition of the raw topic, next offset)
    pub watermarks: Vec<(u32, u64)>,
    /// (checkpoint name, partition of the processed topic, next offset)
    pub checkpoints: Vec<(String, u32, u64)>,
}

/// A position moved from `from` to `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    pub partition: u32,
    pub from: u64,
    pub to: u64,
}

/// Binds `m.to` then `m.from` as the last two parameters of `update` (an UPDATE … WHERE …
/// next_offset = <from>) and runs it: exactly one row must move, or the position was no
/// longer at `from`.
async fn compare_and_set(
    tx: &mut sqlx::PgConnection,
    update: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    m: &Moved,
) -> Result<(), StoreError> {
    let moved = update.bind(m.to as i64).bind(m.from as i64).execute(tx).await.map_err(store_err)?.rows_affected();
    if moved == 1 {
        Ok(())
    } else {
        Err(StoreError::Conflict { expected: Some(m.from), found: None })
    }
}

impl PgStore {
    pub async fn log_positions(&self) -> Result<LogPositions, StoreError> {
        let watermarks: Vec<(i32, i64)> =
            sqlx::query_as("SELECT partition, next_offset FROM watermarks ORDER BY partition")
                .fetch_all(self.pool())
                .await
                .map_err(store_err)?;
        let checkpoints: Vec<(String, i32, i64)> = sqlx::query_as(
            "SELECT projection, partition, next_offset FROM projection_checkpoints ORDER BY projection, partition",
        )
        .fetch_all(self.pool())
        .await
        .map_err(store_err)?;
        Ok(LogPositions {
            watermarks: watermarks.into_iter().map(|(p, o)| (p as u32, o.max(0) as u64)).collect(),
            checkpoints: checkpoints.into_iter().map(|(n, p, o)| (n, p as u32, o.max(0) as u64)).collect(),
        })
    }

    /// The Kafka cluster the positions were last moved to (`None`: never moved).
    pub async fn log_cluster(&self) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT cluster_id FROM log_cluster").fetch_optional(self.pool()).await.map_err(store_err)
    }

    /// Moves every given watermark and checkpoint from its `from` to its `to` and records
    /// `cluster_id` as the cluster they now refer to, in one transaction; fails with
    /// [`StoreError::Conflict`] (moving nothing) when any of them is no longer at `from` (a
    /// role still running and writing).
    pub async fn move_log_positions(
        &self,
        watermarks: &[Moved],
        checkpoints: &[(String, Moved)],
        cluster_id: &str,
        brokers: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await.map_err(store_err)?;
        sqlx::query(
            "INSERT INTO log_cluster (singleton, cluster_id, brokers) VALUES (TRUE, $1, $2)
             ON CONFLICT (singleton) DO UPDATE SET cluster_id = excluded.cluster_id, brokers = excluded.brokers, changed_at = now()",
        )
        .bind(cluster_id)
        .bind(brokers)
        .execute(&mut *tx)
        .await
        .map_err(store_err)?;
        for m in watermarks {
            let update =
                sqlx::query("UPDATE watermarks SET next_offset = $2 WHERE partition = $1 AND next_offset = $3")
                    .bind(m.partition as i32);
            compare_and_set(&mut tx, update, m).await?;
        }
        for (name, m) in checkpoints {
            let update = sqlx::query(
                "UPDATE projection_checkpoints SET next_offset = $3 WHERE projection = $1 AND partition = $2 AND next_offset = $4",
            )
            .bind(name)
            .bind(m.partition as i32);
            compare_and_set(&mut tx, update, m).await?;
        }
        tx.commit().await.map_err(store_err)
    }
}
