//! Phases 4–5 (production): the references the platform is compared with — Kafka's
//! ProducerPerformance ([`super::kafka`]) and a PostgreSQL `COPY` into a table shaped like
//! `player_days`.

use super::run::Bench;
use super::send::{mean_record_bytes, mean_wire_bytes};
use super::GAME;
use crate::simulate::SentEvent;
use anyhow::Context as _;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use super::kafka::KafkaReport;

pub(super) struct CopyReport {
    pub rows: u64,
    pub elapsed: Duration,
}

impl CopyReport {
    pub fn rows_per_second(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl Bench<'_> {
    /// ProducerPerformance (random records, then the bench's own) and COPY, `full.len()`
    /// records each; nothing on the embedded default. A failure is printed, not fatal.
    pub async fn reference_phases(&self, full: &[SentEvent]) -> (Vec<KafkaReport>, Option<CopyReport>) {
        if !self.production() {
            return (Vec::new(), None);
        }
        let n = full.len();
        let record_bytes = mean_record_bytes(full).unwrap_or_else(|| mean_wire_bytes(full));
        let mut kafka = Vec::new();
        eprintln!("bench: Kafka ProducerPerformance, {n} records");
        for (payloads, flag) in [(None, "--record-size"), (Some(full), "--payload-file")] {
            match self.producer_performance(n, record_bytes, payloads).await {
                Ok(r) => kafka.push(r),
                Err(e) => eprintln!("bench: ProducerPerformance ({flag}) failed: {e:#}"),
            }
        }
        eprintln!("bench: PostgreSQL COPY, {n} rows");
        let copy = match self.copy_rows(n).await {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("bench: COPY failed: {e:#}");
                None
            }
        };
        (kafka, copy)
    }

    /// COPY of `rows` rows into a scratch table shaped like `player_days` (same key, same index).
    async fn copy_rows(&self, rows: usize) -> anyhow::Result<CopyReport> {
        use sqlx::Connection as _;
        let db = self.database.context("no bench database")?;
        let mut conn = sqlx::PgConnection::connect(&db.url).await?;
        sqlx::query("CREATE TABLE bench_copy (LIKE player_days INCLUDING ALL)").execute(&mut conn).await?;
        let mut csv = String::with_capacity(rows * 32);
        let day0 = chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap_or_default();
        for i in 0..rows {
            let day = day0 + chrono::Duration::days((i % 30) as i64);
            let _ = writeln!(csv, "{GAME},{day},player-{}", i / 30);
        }
        let started = Instant::now();
        let mut copy =
            conn.copy_in_raw("COPY bench_copy (game_id, day, player_id) FROM STDIN WITH (FORMAT csv)").await?;
        for chunk in csv.as_bytes().chunks(1 << 20) {
            copy.send(chunk).await?;
        }
        let copied = copy.finish().await?;
        let elapsed = started.elapsed();
        sqlx::query("DROP TABLE bench_copy").execute(&mut conn).await?;
        let _ = conn.close().await;
        Ok(CopyReport { rows: copied, elapsed })
    }
}
