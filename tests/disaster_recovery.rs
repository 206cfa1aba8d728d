//! Disaster-recovery drill for PostgreSQL: the roles run in production mode on Kafka, Redis
//! and a PostgreSQL instance of the drill's own (WAL archived, base backup taken) while the
//! simulator sends traffic; mid-load the database is destroyed (server SIGKILLed, data
//! directory deleted) and restored from the base backup and the archived WAL. The actors and
//! projections then catch up from Kafka, and every read model must equal the figures computed
//! independently from the acknowledged events: nothing lost, nothing counted twice.
//!
//! It measures the RPO (how far behind the destruction the restored database is: the WAL
//! that had not been archived yet) and the RTO (destruction → database restored, roles ready,
//! read models complete). The short version runs with the test suite; `scripts/dr-drill`
//! runs a longer one (GM_DR_* variables below) and prints the same figures.

mod common;

use chrono::{DateTime, Utc};
use common::services::{free_port, Role, TestServices};
use common::*;
use gamemetrics::simulate;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// `scripts/dr-postgres ARGS`, failing the test with the script's output when it fails.
fn dr_postgres(args: &[&str]) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/dr-postgres");
    let out = Command::new(script).args(args).output().expect("run scripts/dr-postgres");
    assert!(
        out.status.success(),
        "scripts/dr-postgres {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The drill's PostgreSQL instance; stopped when dropped (its directory goes with `_dir`).
struct DrillPostgres {
    dir: PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

impl DrillPostgres {
    fn start() -> Self {
        // Under /var/tmp: the server runs as the `postgres` user, who cannot enter /root.
        let tmp = tempfile::Builder::new().prefix("gm-dr-").tempdir_in("/var/tmp").expect("a drill directory");
        let dir = tmp.path().to_path_buf();
        let port = free_port();
        dr_postgres(&["init", &path(&dir), &port.to_string()]);
        Self { dir, port, _dir: tmp }
    }

    fn admin_url(&self) -> String {
        format!("postgres://gamemetrics:gamemetrics@127.0.0.1:{}/gamemetrics", self.port)
    }
}

impl Drop for DrillPostgres {
    fn drop(&mut self) {
        let _ = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/dr-postgres"))
            .args(["stop", &path(&self.dir)])
            .status();
    }
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// Sum of the projections' checkpoints (events applied to read models, over all partitions).
async fn applied_offsets(url: &str) -> Result<i64, sqlx::Error> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await?;
    sqlx::query_scalar("SELECT COALESCE(SUM(next_offset), 0)::BIGINT FROM projection_checkpoints")
        .fetch_one(&mut conn)
        .await
}

async fn profile_count(url: &str) -> i64 {
    use sqlx::Connection;
    let Ok(mut conn) = sqlx::PgConnection::connect(url).await else { return -1 };
    sqlx::query_scalar("SELECT COUNT(*) FROM player_profiles").fetch_one(&mut conn).await.unwrap_or(-1)
}

#[actix_rt::test]
async fn destroying_postgres_mid_load_and_restoring_from_wal_loses_and_doubles_nothing() {
    let players: usize = env_or("GM_DR_PLAYERS", 400);
    let rate: f64 = env_or("GM_DR_RATE", 1000.0);
    let destroy_after = Duration::from_secs_f64(env_or("GM_DR_DESTROY_AFTER_S", 4.0));

    let pg = DrillPostgres::start();
    let services = TestServices::create_on(&pg.admin_url()).await;
    // The last full backup before the incident; everything after it comes from the WAL.
    dr_postgres(&["backup", &path(&pg.dir), &pg.port.to_string()]);

    let keys = format!("{GAME}={KEY}");
    // Each role's log in a file of the drill (shown when the drill fails).
    let logs = tempfile::Builder::new().prefix("gm-dr-logs-").tempdir_in("/var/tmp").unwrap();
    let logged = |role: &'static str| {
        let file =
            std::fs::File::options().create(true).append(true).open(logs.path().join(format!("{role}.log"))).unwrap();
        Role::start_with(role, &services, &keys, |c| {
            c.env("RUST_LOG", "info").stderr(file);
        })
    };
    let gateway = logged("gateway");
    let mut actors = logged("actors");
    let mut projections = logged("projections");
    let show_logs = ShowLogsOnPanic(logs.path().to_path_buf());
    for role in [&gateway, &actors, &projections] {
        role.wait_ready().await;
    }

    let mut options = sim_options(&gateway.url(), players);
    options.rate = rate;
    options.retry_for = Duration::from_secs(300);
    let plan = simulate::plan(&options, Utc::now());
    let planned = plan.len();
    let traffic = actix_rt::spawn(simulate::send(options, plan));
    actix_rt::time::sleep(destroy_after).await;

    // The consumers are frozen from here until they are replaced: otherwise, on a quick
    // restore, the running projections find the restored checkpoints behind them, replay from
    // Kafka and move past `before` before `after` is read (seen in a run: 32,694 ≥ 32,192).
    // The gateway keeps taking traffic; Kafka holds it for the new consumers.
    actors.pause();
    projections.pause();
    let before = applied_offsets(&services.postgres_url).await.expect("read checkpoints before the destruction");
    let destroyed_at = Utc::now();
    let destroyed = Instant::now();
    dr_postgres(&["destroy", &path(&pg.dir)]);
    // Blocking: the restore runs on its own thread so the traffic keeps flowing meanwhile.
    let (dir, port) = (path(&pg.dir), pg.port.to_string());
    let restored = actix_rt::task::spawn_blocking(move || dr_postgres(&["restore", &dir, &port])).await.unwrap();
    let db_restored = destroyed.elapsed();
    let replayed_until: DateTime<Utc> = restored
        .lines()
        .find_map(|l| l.strip_prefix("replayed_until="))
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("restore printed no replayed_until: {restored}"));
    let rpo = (destroyed_at - replayed_until).to_std().unwrap_or_default();
    let after = applied_offsets(&services.postgres_url).await.expect("read checkpoints after the restore");

    // The runbook's step after a restore: restart the consumers, so that they re-read the
    // restored checkpoints and snapshots (their memory is ahead of the restored database)
    // and replay the difference from Kafka. The gateway needs no restart.
    actors.kill();
    projections.kill();
    let (actors, projections) = (logged("actors"), logged("projections"));
    for role in [&gateway, &actors, &projections] {
        role.wait_ready().await;
    }
    let roles_ready = destroyed.elapsed();

    let report = traffic.await.unwrap();
    let traffic_done = destroyed.elapsed();
    assert_eq!(report.accepted.len(), planned, "{}", report.summary());
    let restore_figures = format!(
        "dr-drill postgres: players={players} rate={rate}/s acknowledged={} destroyed at +{:.1}s of load | \
         RPO {:.2}s (restored database ends at {replayed_until}, destroyed at {destroyed_at}; \
         {} projection offsets behind, refilled from Kafka) | database restored in {:.1}s, roles ready at {:.1}s, \
         traffic ended at {:.1}s",
        report.accepted.len(),
        destroy_after.as_secs_f64(),
        rpo.as_secs_f64(),
        before - after,
        db_restored.as_secs_f64(),
        roles_ready.as_secs_f64(),
        traffic_done.as_secs_f64(),
    );
    eprintln!("{restore_figures}");
    // The restore never goes ahead of the destroyed database. Usually it is behind (the
    // consumers' last commits were in a WAL segment not archived yet) and the consumers catch
    // up from Kafka; when archive_timeout switched the segment just before the destruction,
    // nothing was lost (RPO ~0) and there is nothing to catch up: both must end exact.
    assert!(after <= before, "the restored database is ahead of the destroyed one ({after} > {before} offsets)");
    if after == before {
        eprintln!("dr-drill postgres: the restore lost no checkpoint this run (RPO {rpo:?}); no catch-up to exercise");
    }
    // The readiness review's target: RPO < 5 min.
    assert!(rpo < Duration::from_secs(300), "RPO {rpo:?} over 5 minutes");

    let expected = Expected::from_events(&report.accepted);
    if let Err(e) = eventually(Duration::from_secs(300), || compare_read_models(gateway.url(), &expected, 60)).await {
        // Players known under more pseudonyms than there are players: a pseudonym created in
        // the restore's data-loss window was lost and the player got a second one.
        let profiles = profile_count(&services.postgres_url).await;
        panic!(
            "read models differ after the restore: {e}\n{} players were sent, the restored database has {profiles} \
             profiles",
            expected.profiles.len()
        );
    }
    let rto = destroyed.elapsed();

    let figures = format!("{restore_figures}, RTO (read models complete and exact) {:.1}s", rto.as_secs_f64());
    eprintln!("{figures}");
    if let Ok(file) = std::env::var("GM_DR_REPORT") {
        std::fs::write(file, format!("{figures}\n")).expect("write GM_DR_REPORT");
    }
    // The readiness review's target: RTO < 15 min.
    assert!(rto < Duration::from_secs(900), "RTO {rto:?} over 15 minutes");
    drop((gateway, actors, projections));
    std::mem::forget(show_logs);
    services.drop_database().await;
}
