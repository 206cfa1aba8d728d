//! `gamemetrics retention run` on PostgreSQL: whole daily partitions past the longest limit
//! are dropped; a game kept shorter loses its older rows; a dry run changes nothing; the run
//! is in the privacy audit trail.

mod common;

use chrono::{Duration, Utc};
use common::services::TestServices;

async fn insert(pool: &sqlx::PgPool, game: &str, days_ago: i64, n: usize) {
    let ts = Utc::now() - Duration::days(days_ago);
    let day = ts.date_naive();
    sqlx::query("SELECT gm_ensure_event_partitions($1, $1)").bind(day).execute(pool).await.unwrap();
    for i in 0..n {
        sqlx::query(
            "INSERT INTO events (ts, event_id, game_id, player_id, seq, type, received_at)
             VALUES ($1, $2, $3, $4, $5, 'score', $1)",
        )
        .bind(ts)
        .bind(uuid::Uuid::new_v4())
        .bind(game)
        .bind(format!("p{i}"))
        .bind(i as i64)
        .execute(pool)
        .await
        .unwrap();
    }
}

async fn count(pool: &sqlx::PgPool, game: &str, older_than_days: i64) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE game_id = $1 AND ts < now() - make_interval(days => $2)")
        .bind(game)
        .bind(older_than_days as i32)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[actix_rt::test]
async fn retention_drops_old_partitions_and_a_short_games_older_rows() {
    let services = TestServices::create().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = services.config(dir.path());
    config.retention.default_days = 60;
    config.retention.games = "short=10,long-lived=120".into();
    let store = gm_postgres::PgStore::connect(&services.postgres_url, 2).await.unwrap();
    let pool = store.pool();
    for game in ["short", "long-lived", "other"] {
        insert(pool, game, 200, 2).await; // past every limit: its partition goes
        insert(pool, game, 100, 3).await; // past the default, within long-lived's 120 days
        insert(pool, game, 30, 4).await; // past short's 10 days only
        insert(pool, game, 1, 5).await; // kept everywhere
    }

    let dry = gamemetrics::admin::retention_run(&config, true).await.unwrap();
    assert!(dry.dry_run && dry.partitions_dropped.is_empty());
    assert_eq!(count(pool, "short", 0).await, 14, "a dry run deletes nothing");

    let report = gamemetrics::admin::retention_run(&config, false).await.unwrap();
    // The longest limit (120 days) decides which partitions go as a whole.
    assert_eq!(report.cutoff_all_games, Utc::now().date_naive() - Duration::days(120));
    let day_200 = (Utc::now() - Duration::days(200)).date_naive().format("events_%Y%m%d").to_string();
    assert!(report.partitions_dropped.contains(&day_200), "{:?}", report.partitions_dropped);
    let exists: Option<String> =
        sqlx::query_scalar("SELECT to_regclass($1)::text").bind(&day_200).fetch_one(pool).await.unwrap();
    assert_eq!(exists, None, "the partition itself is gone");
    // long-lived keeps 120 days; "other" follows the 60-day default; short keeps 10.
    assert_eq!((count(pool, "long-lived", 150).await, count(pool, "long-lived", 0).await), (0, 12));
    assert_eq!((count(pool, "other", 60).await, count(pool, "other", 0).await), (0, 9));
    assert_eq!((count(pool, "short", 10).await, count(pool, "short", 0).await), (0, 5));
    assert_eq!(report.per_game.get("short").map(|(_, rows)| *rows), Some(7));
    assert_eq!(report.per_game.get("other").map(|(_, rows)| *rows), Some(3));

    let backends = gamemetrics::platform::Backends::open(&config).await.unwrap();
    let audit = backends.privacy.audit_trail(5, None).await.unwrap();
    assert_eq!(audit[0].action, "retention_run");
    assert!(audit[0].detail.as_deref().unwrap_or("").contains(&day_200));
    services.drop_database().await;
}

#[test]
fn retention_limits_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::test_config(dir.path());
    config.retention.games = "ok=5, fine=400".into();
    assert_eq!(config.retention_limits().unwrap().len(), 2);
    for bad in ["nodays", "g=0", "g=-3", "Bad Game=4"] {
        config.retention.games = bad.into();
        assert!(config.validate().is_err(), "{bad}");
    }
}
