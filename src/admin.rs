//! Operator commands that act on the stores directly (no gateway needed): privacy
//! (`gamemetrics privacy erase | status | export`) and retention (`gamemetrics retention run`).

use crate::config::{Config, Mode};
use crate::platform::Backends;
use anyhow::Context as _;
use chrono::{NaiveDate, Utc};
use gm_privacy::{AuditEntry, Erasure, ErasureStatus, PrivacyService};
use gm_schemas::{GameId, PlayerId};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The privacy service on the configured stores (its coordinator driven by the caller).
pub async fn privacy_service(config: &Config) -> anyhow::Result<(Backends, PrivacyService)> {
    let backends = Backends::open(config).await?;
    let service = backends.privacy_service(config, gm_telemetry::Metrics::new())?;
    Ok((backends, service))
}

fn actor() -> String {
    format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "operator".into()))
}

/// Starts (or finds) the erasure of a player; with `wait`, follows it until it completes
/// (the actors and projections must be running to confirm it).
pub async fn erase(
    config: &Config,
    game: &str,
    player: &str,
    reason: &str,
    wait: Option<Duration>,
) -> anyhow::Result<Erasure> {
    let game = GameId::parse(game).map_err(|e| anyhow::anyhow!("game: {e}"))?;
    let player = PlayerId::parse(player).map_err(|e| anyhow::anyhow!("player: {e}"))?;
    anyhow::ensure!(!reason.trim().is_empty() && reason.chars().count() <= 200, "--reason: 1 to 200 characters");
    let (backends, service) = privacy_service(config).await?;
    let (mut erasure, _) = service.request_erasure(&game, &player, reason.trim(), &actor()).await?;
    if let Some(limit) = wait {
        let deadline = Instant::now() + limit;
        while erasure.status != ErasureStatus::Completed {
            anyhow::ensure!(Instant::now() < deadline, "erasure {} still pending after {limit:?}", erasure.erasure_id);
            tokio::time::sleep(Duration::from_millis(500)).await;
            service.drive().await?;
            erasure = service.erasure(erasure.erasure_id).await?.context("the erasure disappeared")?;
        }
    }
    backends.close().await;
    Ok(erasure)
}

pub async fn status(config: &Config, erasure_id: uuid::Uuid) -> anyhow::Result<Option<Erasure>> {
    let (backends, service) = privacy_service(config).await?;
    let erasure = service.erasure(erasure_id).await?;
    backends.close().await;
    Ok(erasure)
}

/// Everything held about a player, as the export route returns it (audited).
pub async fn export(config: &Config, game: &str, player: &str) -> anyhow::Result<Option<serde_json::Value>> {
    let game = GameId::parse(game).map_err(|e| anyhow::anyhow!("game: {e}"))?;
    let player = PlayerId::parse(player).map_err(|e| anyhow::anyhow!("player: {e}"))?;
    let (backends, service) = privacy_service(config).await?;
    let profile =
        backends.queries.player_profile(&game, &player).await?.map(|p| serde_json::to_value(p).unwrap_or_default());
    let export = service.export(&game, &player, profile).await?;
    if export.is_some() {
        service
            .audit(AuditEntry {
                at: Utc::now(),
                actor: actor(),
                action: "export".into(),
                game_id: Some(game.to_string()),
                erasure_id: None,
                subject: Some(service.subject(&game, &player).to_hex()),
                detail: None,
            })
            .await?;
    }
    backends.close().await;
    Ok(export.map(|e| serde_json::to_value(e).unwrap_or_default()))
}

/// What a retention run did (or would do, dry).
#[derive(Debug, serde::Serialize)]
pub struct RetentionReport {
    /// Every event before this day is gone for every game (whole partitions or chunks).
    pub cutoff_all_games: NaiveDate,
    pub partitions_dropped: Vec<String>,
    /// Games kept shorter than the longest limit: their own cutoff and the rows deleted.
    pub per_game: BTreeMap<String, (NaiveDate, u64)>,
    pub dry_run: bool,
}

/// Applies the configured per-game retention to the `events` fact table: partitions (or
/// TimescaleDB chunks) wholly older than the longest limit are dropped; games with a shorter
/// limit lose their older rows in the partitions that remain.
pub async fn retention_run(config: &Config, dry_run: bool) -> anyhow::Result<RetentionReport> {
    anyhow::ensure!(
        config.mode == Mode::Production,
        "the embedded mode keeps no events fact table (read models only); retention applies to PostgreSQL"
    );
    let limits = config.retention_limits()?;
    let today = Utc::now().date_naive();
    let longest =
        limits.values().copied().chain([config.retention.default_days]).max().unwrap_or(config.retention.default_days);
    let cutoff_all = today - chrono::Duration::days(i64::from(longest));
    let store = gm_postgres::PgStore::connect(&config.postgres.url, 2).await.context("connecting to PostgreSQL")?;
    let pool = store.pool();
    let mut report = RetentionReport {
        cutoff_all_games: cutoff_all,
        partitions_dropped: Vec::new(),
        per_game: BTreeMap::new(),
        dry_run,
    };
    if !dry_run {
        report.partitions_dropped = gm_postgres::drop_event_partitions_before(pool, cutoff_all).await?;
    }
    let shorter: Vec<(String, u32)> = {
        let mut games: Vec<(String, u32)> = limits.iter().map(|(g, d)| (g.clone(), *d)).collect();
        if config.retention.default_days < longest {
            // Every other game follows the default: apply it to the games that have events.
            let known: Vec<String> =
                sqlx::query_scalar("SELECT DISTINCT game_id FROM events WHERE ts < now() - make_interval(days => $1)")
                    .bind(config.retention.default_days as i32)
                    .fetch_all(pool)
                    .await?;
            games.extend(
                known.into_iter().filter(|g| !limits.contains_key(g)).map(|g| (g, config.retention.default_days)),
            );
        }
        games.into_iter().filter(|(_, d)| *d < longest).collect()
    };
    for (game, days) in shorter {
        let cutoff = today - chrono::Duration::days(i64::from(days));
        let bound = cutoff.and_hms_opt(0, 0, 0).expect("midnight").and_utc();
        let rows = if dry_run {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM events WHERE game_id = $1 AND ts < $2")
                .bind(&game)
                .bind(bound)
                .fetch_one(pool)
                .await? as u64
        } else {
            sqlx::query("DELETE FROM events WHERE game_id = $1 AND ts < $2")
                .bind(&game)
                .bind(bound)
                .execute(pool)
                .await?
                .rows_affected()
        };
        report.per_game.insert(game, (cutoff, rows));
    }
    if !dry_run {
        let detail = serde_json::to_string(&report).unwrap_or_default();
        gm_privacy::PrivacyStore::audit(
            &store,
            AuditEntry {
                at: Utc::now(),
                actor: actor(),
                action: "retention_run".into(),
                game_id: None,
                erasure_id: None,
                subject: None,
                detail: Some(detail),
            },
        )
        .await?;
    }
    Ok(report)
}
