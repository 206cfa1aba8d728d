//! The store's schema: the base tables (snapshots, watermarks, checkpoints) and each
//! projection's read-model tables.
//!
//! # Read-model tables and their owners
//! | projection | tables |
//! |---|---|
//! | player_profiles | `player_profiles`, `profile_revenue` |
//! | daily_activity | `player_days`, `activity_gaps` (counters: `gm_projections::counters`) |
//! | sessions | `session_days` |
//! | revenue | `revenue_days`, `payer_days`, `payer_gaps` |
//! | funnel | `funnel`, `funnel_players` |
//! | leaderboards, retention | see `store/games.rs` |
//! | recommendations | see `store/reco.rs` |
//!
//! The DDL is a template over the table name, so a rebuild table (`<name>_rebuild`,
//! checkpoints under `<projection>#rebuild`) cannot drift from the live one.

use super::{games, reco};
use gm_projections::model::{ProjectionName, Target};
use sqlx::SqliteConnection;

pub(super) const BASE_SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS snapshots (
        key TEXT PRIMARY KEY,
        partition INTEGER NOT NULL,
        state BLOB NOT NULL
    ) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS watermarks (
        partition INTEGER PRIMARY KEY,
        next_offset INTEGER NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS projection_checkpoints (
        projection TEXT NOT NULL,
        partition INTEGER NOT NULL,
        next_offset INTEGER NOT NULL,
        PRIMARY KEY (projection, partition)
    ) WITHOUT ROWID",
];

/// A read-model table: its DDL and index DDL as templates over `{t}` (the table name).
pub(super) struct Table {
    pub name: &'static str,
    pub ddl: &'static str,
    pub indexes: &'static [&'static str],
}

pub(super) const PLAYER_PROFILES: Table = Table {
    name: "player_profiles",
    ddl: "CREATE TABLE IF NOT EXISTS {t} (
        game_id TEXT NOT NULL,
        player_id TEXT NOT NULL,
        first_seen_ms INTEGER NOT NULL,
        last_seen_ms INTEGER NOT NULL,
        events INTEGER NOT NULL,
        sessions INTEGER NOT NULL,
        playtime_seconds INTEGER NOT NULL,
        purchases INTEGER NOT NULL,
        levels_completed INTEGER NOT NULL,
        xp INTEGER NOT NULL,
        current_level TEXT,
        country TEXT,
        language TEXT,
        consent_analytics INTEGER,
        consent_personalisation INTEGER,
        last_seq INTEGER NOT NULL,
        PRIMARY KEY (game_id, player_id)
    ) WITHOUT ROWID",
    indexes: &[],
};
pub(super) const PROFILE_REVENUE: Table = Table {
    name: "profile_revenue",
    ddl: "CREATE TABLE IF NOT EXISTS {t} (
        game_id TEXT NOT NULL,
        player_id TEXT NOT NULL,
        currency TEXT NOT NULL,
        amount_minor INTEGER NOT NULL,
        PRIMARY KEY (game_id, player_id, currency)
    ) WITHOUT ROWID",
    indexes: &[],
};
pub(super) const PLAYER_DAYS: Table = Table {
    name: "player_days",
    ddl: "CREATE TABLE IF NOT EXISTS {t} (
        game_id TEXT NOT NULL,
        day TEXT NOT NULL,
        player_id TEXT NOT NULL,
        PRIMARY KEY (game_id, day, player_id)
    ) WITHOUT ROWID",
    indexes: &["CREATE INDEX IF NOT EXISTS {t}_by_player ON {t} (game_id, player_id)"],
};
pub(super) const SESSION_DAYS: Table = Table {
    name: "session_days",
    ddl: "CREATE TABLE IF NOT EXISTS {t} (
        game_id TEXT NOT NULL,
        day TEXT NOT NULL,
        started INTEGER NOT NULL,
        closed INTEGER NOT NULL,
        total_length_seconds INTEGER NOT NULL,
        b0 INTEGER NOT NULL, b1 INTEGER NOT NULL, b2 INTEGER NOT NULL, b3 INTEGER NOT NULL,
        b4 INTEGER NOT NULL, b5 INTEGER NOT NULL, b6 INTEGER NOT NULL,
        PRIMARY KEY (game_id, day)
    ) WITHOUT ROWID",
    indexes: &[],
};
pub(super) const REVENUE_DAYS: Table = Table {
    name: "revenue_days",
    ddl: "CREATE TABLE IF NOT EXISTS {t} (
        game_id TEXT NOT NULL,
        day TEXT NOT NULL,
        currency TEXT NOT NULL,
        amount_minor INTEGER NOT NULL,
        purchases INTEGER NOT NULL,
        PRIMARY KEY (game_id, day, currency)
    ) WITHOUT ROWID",
    indexes: &[],
};
pub(super) const PAYER_DAYS: Table = Table {
    name: "payer_days",
    ddl: "CREATE TABLE IF NOT EXISTS {t} (
        game_id TEXT NOT NULL,
        day TEXT NOT NULL,
        player_id TEXT NOT NULL,
        PRIMARY KEY (game_id, day, player_id)
    ) WITHOUT ROWID",
    indexes: &["CREATE INDEX IF NOT EXISTS {t}_by_player ON {t} (game_id, player_id)"],
};
pub(super) const FUNNEL: Table = Table {
    name: "funnel",
    ddl: "CREATE TABLE IF NOT EXISTS {t} (
        game_id TEXT NOT NULL,
        level_id TEXT NOT NULL,
        starts INTEGER NOT NULL,
        completes INTEGER NOT NULL,
        fails INTEGER NOT NULL,
        PRIMARY KEY (game_id, level_id)
    ) WITHOUT ROWID",
    indexes: &[],
};
/// One row per (game, level, player): the player's first start, completion and failure of the
/// level (ms since the epoch), for distinct players and the median time to complete.
pub(super) const FUNNEL_PLAYERS: Table = Table {
    name: "funnel_players",
    ddl: "CREATE TABLE IF NOT EXISTS {t} (
        game_id TEXT NOT NULL,
        level_id TEXT NOT NULL,
        player_id TEXT NOT NULL,
        first_start_ms INTEGER,
        first_complete_ms INTEGER,
        first_fail_ms INTEGER,
        PRIMARY KEY (game_id, level_id, player_id)
    ) WITHOUT ROWID",
    indexes: &["CREATE INDEX IF NOT EXISTS {t}_by_player ON {t} (game_id, player_id)"],
};

/// Gap counts of `player_days` (see `gm_projections::counters`): players per (game, day, gap).
pub(super) const ACTIVITY_GAPS: Table = Table {
    name: "activity_gaps",
    ddl: "CREATE TABLE IF NOT EXISTS {t} (
        game_id TEXT NOT NULL,
        day TEXT NOT NULL,
        gap INTEGER NOT NULL,
        players INTEGER NOT NULL,
        PRIMARY KEY (game_id, day, gap)
    ) WITHOUT ROWID",
    indexes: &[],
};
/// Gap counts of `payer_days`.
pub(super) const PAYER_GAPS: Table = Table { name: "payer_gaps", ..ACTIVITY_GAPS };

/// The counter tables of a store opened before they existed, and how each is filled from the
/// rows it counts (the same numbers the projections would have kept: gap 0 for a player's
/// first day, 366 for that many days or more).
const COUNTER_BACKFILLS: &[(&Table, &str)] = &[
    (
        &ACTIVITY_GAPS,
        "INSERT INTO activity_gaps (game_id, day, gap, players)
         SELECT game_id, day, gap, COUNT(*) FROM (
             SELECT game_id, day, coalesce(min(CAST(julianday(day) - julianday(
                 lag(day) OVER (PARTITION BY game_id, player_id ORDER BY day)) AS INTEGER), 366), 0) AS gap
             FROM player_days
         ) GROUP BY game_id, day, gap",
    ),
    (
        &PAYER_GAPS,
        "INSERT INTO payer_gaps (game_id, day, gap, players)
         SELECT game_id, day, gap, COUNT(*) FROM (
             SELECT game_id, day, coalesce(min(CAST(julianday(day) - julianday(
                 lag(day) OVER (PARTITION BY game_id, player_id ORDER BY day)) AS INTEGER), 366), 0) AS gap
             FROM payer_days
         ) GROUP BY game_id, day, gap",
    ),
    (
        &games::RETENTION_DAYS,
        "INSERT INTO retention_days (game_id, day, active, cohort, d1, d7, d30)
         SELECT game_id, day, SUM(active), SUM(cohort), SUM(d1), SUM(d7), SUM(d30) FROM (
             SELECT game_id, day, COUNT(*) AS active, 0 AS cohort, 0 AS d1, 0 AS d7, 0 AS d30
             FROM cohort_days GROUP BY game_id, day
             UNION ALL
             SELECT c.game_id, c.first_day, 0, COUNT(*),
                 SUM(EXISTS (SELECT 1 FROM cohort_days d WHERE d.game_id = c.game_id
                     AND d.day = date(c.first_day, '+1 day') AND d.player_id = c.player_id)),
                 SUM(EXISTS (SELECT 1 FROM cohort_days d WHERE d.game_id = c.game_id
                     AND d.day = date(c.first_day, '+7 day') AND d.player_id = c.player_id)),
                 SUM(EXISTS (SELECT 1 FROM cohort_days d WHERE d.game_id = c.game_id
                     AND d.day = date(c.first_day, '+30 day') AND d.player_id = c.player_id))
             FROM cohort_players c GROUP BY c.game_id, c.first_day
         ) GROUP BY game_id, day",
    ),
];

/// Creates every live read-model table; a counter table that did not exist yet is created
/// and filled from the rows it counts in one transaction, so a store written before the
/// counters answers the same numbers.
pub(super) async fn create_tables(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    // Checked inside the write transaction: a second process opening the store at the same
    // time finds the tables there and filled.
    sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
    let result = async {
        let mut missing = Vec::new();
        for (table, fill_sql) in COUNTER_BACKFILLS {
            let exists: Option<String> =
                sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?")
                    .bind(table.name)
                    .fetch_optional(&mut *conn)
                    .await?;
            if exists.is_none() {
                missing.push((table, fill_sql));
            }
        }
        for projection in ProjectionName::ALL {
            for t in tables(projection) {
                for ddl in std::iter::once(t.ddl).chain(t.indexes.iter().copied()) {
                    sqlx::query(&fill(ddl, t.name)).execute(&mut *conn).await?;
                }
            }
        }
        for (_, fill_sql) in &missing {
            sqlx::query(fill_sql).execute(&mut *conn).await?;
        }
        Ok::<(), sqlx::Error>(())
    }
    .await;
    match result {
        Ok(()) => sqlx::query("COMMIT").execute(&mut *conn).await.map(|_| ()),
        Err(e) => {
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            Err(e)
        }
    }
}

/// The tables a projection owns.
pub(super) fn tables(projection: ProjectionName) -> &'static [Table] {
    match projection {
        ProjectionName::PlayerProfiles => &[PLAYER_PROFILES, PROFILE_REVENUE],
        ProjectionName::DailyActivity => &[PLAYER_DAYS, ACTIVITY_GAPS],
        ProjectionName::Sessions => &[SESSION_DAYS],
        ProjectionName::Revenue => &[REVENUE_DAYS, PAYER_DAYS, PAYER_GAPS],
        ProjectionName::Funnel => &[FUNNEL, FUNNEL_PLAYERS],
        ProjectionName::Leaderboards => &[games::LEADERBOARD_SCORES],
        ProjectionName::Retention => &[games::COHORT_PLAYERS, games::COHORT_DAYS, games::RETENTION_DAYS],
        ProjectionName::Recommendations => {
            &[reco::RECO_AFFINITY, reco::RECO_ITEMS, reco::RECO_PAIRS, reco::RECO_OUTBOX]
        }
    }
}

pub(super) fn table_name(base: &str, target: Target) -> String {
    match target {
        Target::Live => base.to_string(),
        Target::Rebuild => format!("{base}_rebuild"),
    }
}

pub(super) fn checkpoint_name(projection: ProjectionName, target: Target) -> String {
    match target {
        Target::Live => projection.as_str().to_string(),
        Target::Rebuild => format!("{}#rebuild", projection.as_str()),
    }
}

pub(super) fn fill(template: &str, table: &str) -> String {
    template.replace("{t}", table)
}

/// The name an index template gives for `table` (the word after `EXISTS`).
pub(super) fn index_name(template: &str, table: &str) -> String {
    fill(template, table).split_whitespace().skip_while(|w| *w != "EXISTS").nth(1).unwrap_or_default().to_string()
}
