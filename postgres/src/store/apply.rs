//! Writes of the read models ([`ReadModelStore`]): each projection's change set applied to
//! its tables with a compare-and-set checkpoint in one transaction, and rebuilds into
//! `_rebuild` tables swapped in at the end.
//!
//! `apply` only touches the tables of the projection it is called for; parts of a change
//! set that belong to other projections are ignored. Rebuild tables are `<name>_rebuild`,
//! their checkpoints are stored under `<projection>#rebuild`.

use super::{games, reco, PgStore};
use crate::error::{store_err, to_i64, to_u64};
use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use gm_ports::StoreError;
use gm_projections::counters;
use gm_projections::model::{erased_pseudonym, ChangeSet, ProjectionName, Target};
use gm_projections::{CheckpointMove, ProjectionBatch, ReadModelStore};
use gm_schemas::{GameId, PlayerId};
use sqlx::postgres::PgConnection;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// How long a rebuild swap waits for the locks on the live tables before giving up
/// (as `Unavailable`, so the caller retries) instead of queueing every reader behind it.
const SWAP_LOCK_TIMEOUT: &str = "30s";

/// The tables a projection owns.
fn tables(projection: ProjectionName) -> &'static [&'static str] {
    match projection {
        ProjectionName::PlayerProfiles => &["player_profiles", "profile_revenue"],
        ProjectionName::DailyActivity => &["player_days", "activity_gaps"],
        ProjectionName::Sessions => &["session_days"],
        ProjectionName::Revenue => &["revenue_days", "payer_days", "payer_gaps"],
        ProjectionName::Funnel => &["funnel", "funnel_players"],
        ProjectionName::Leaderboards => games::LEADERBOARD_TABLES,
        ProjectionName::Retention => games::RETENTION_TABLES,
        ProjectionName::Recommendations => reco::TABLES,
    }
}

fn table_name(base: &str, target: Target) -> String {
    match target {
        Target::Live => base.to_string(),
        Target::Rebuild => format!("{base}_rebuild"),
    }
}

fn checkpoint_name(projection: ProjectionName, target: Target) -> String {
    match target {
        Target::Live => projection.as_str().to_string(),
        Target::Rebuild => format!("{}#rebuild", projection.as_str()),
    }
}

async fn read_checkpoint(conn: &mut PgConnection, name: &str, partition: u32) -> Result<Option<u64>, StoreError> {
    let v: Option<i64> =
        sqlx::query_scalar("SELECT next_offset FROM projection_checkpoints WHERE projection = $1 AND partition = $2")
            .bind(name)
            .bind(partition as i32)
            .fetch_optional(&mut *conn)
            .await
            .map_err(store_err)?;
    Ok(v.map(to_u64))
}

/// Erased players, each once, in first-seen order.
pub(super) fn unique_erased(erased: &[(GameId, PlayerId)]) -> (Vec<String>, Vec<String>) {
    let mut seen = HashSet::new();
    let mut games = Vec::new();
    let mut players = Vec::new();
    for (g, p) in erased {
        if seen.insert((g.as_str(), p.as_str())) {
            games.push(g.to_string());
            players.push(p.to_string());
        }
    }
    (games, players)
}

/// Replaces each erased player's id in `tables` by a fresh pseudonym (one per player, the
/// same in each table, so rows that belong together stay together).
pub(super) async fn pseudonymise(
    conn: &mut PgConnection,
    tables: &[&str],
    erased: &[(GameId, PlayerId)],
) -> Result<(), sqlx::Error> {
    if erased.is_empty() {
        return Ok(());
    }
    let (games, players) = unique_erased(erased);
    let pseudonyms: Vec<String> = games.iter().map(|_| erased_pseudonym()).collect();
    for table in tables {
        sqlx::query(&format!(
            "UPDATE {table} AS t SET player_id = e.pseudonym
             FROM UNNEST($1::text[], $2::text[], $3::text[]) AS e(game_id, player_id, pseudonym)
             WHERE t.game_id = e.game_id AND t.player_id = e.player_id"
        ))
        .bind(&games)
        .bind(&players)
        .bind(&pseudonyms)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Deletes each erased player's rows from `tables`.
pub(super) async fn delete_players(
    conn: &mut PgConnection,
    tables: &[&str],
    erased: &[(GameId, PlayerId)],
) -> Result<(), sqlx::Error> {
    if erased.is_empty() {
        return Ok(());
    }
    let (games, players) = unique_erased(erased);
    for table in tables {
        sqlx::query(&format!(
            "DELETE FROM {table} AS t USING UNNEST($1::text[], $2::text[]) AS e(game_id, player_id)
             WHERE t.game_id = e.game_id AND t.player_id = e.player_id"
        ))
        .bind(&games)
        .bind(&players)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Inserts player-days (insert-or-ignore).
pub(super) async fn insert_days(
    conn: &mut PgConnection,
    table: &str,
    days: &[gm_projections::model::PlayerDay],
) -> Result<(), sqlx::Error> {
    if days.is_empty() {
        return Ok(());
    }
    let games: Vec<&str> = days.iter().map(|d| d.game_id.as_str()).collect();
    let dates: Vec<NaiveDate> = days.iter().map(|d| d.day).collect();
    let players: Vec<&str> = days.iter().map(|d| d.player_id.as_str()).collect();
    sqlx::query(&format!(
        "INSERT INTO {table} (game_id, day, player_id)
         SELECT * FROM UNNEST($1::text[], $2::date[], $3::text[])
         ON CONFLICT DO NOTHING"
    ))
    .bind(&games)
    .bind(&dates)
    .bind(&players)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Inserts player-days (insert-or-ignore) and keeps their gap counts in `gaps` right
/// (`gm_projections::counters`): one statement reads every touched player's stored days in
/// the span of their new days and the nearest one on either side, before the insert.
pub(super) async fn insert_days_counted(
    conn: &mut PgConnection,
    table: &str,
    gaps: &str,
    days: &[gm_projections::model::PlayerDay],
) -> Result<(), sqlx::Error> {
    if days.is_empty() {
        return Ok(());
    }
    let touched = counters::touched(days);
    let keys: Vec<(&GameId, &PlayerId, &BTreeSet<NaiveDate>)> = touched.iter().map(|((g, p), d)| (g, p, d)).collect();
    let games: Vec<&str> = keys.iter().map(|k| k.0.as_str()).collect();
    let players: Vec<&str> = keys.iter().map(|k| k.1.as_str()).collect();
    let (los, his): (Vec<NaiveDate>, Vec<NaiveDate>) = keys.iter().map(|k| counters::span(k.2)).unzip();
    let near: Vec<(i64, NaiveDate)> = sqlx::query_as(&format!(
        "SELECT t.i, n.day FROM UNNEST($1::text[], $2::text[], $3::date[], $4::date[])
             WITH ORDINALITY AS t(g, p, lo, hi, i)
         CROSS JOIN LATERAL (
             (SELECT day FROM {table} WHERE game_id = t.g AND player_id = t.p AND day BETWEEN t.lo AND t.hi)
             UNION ALL
             (SELECT day FROM {table} WHERE game_id = t.g AND player_id = t.p AND day < t.lo
              ORDER BY day DESC LIMIT 1)
             UNION ALL
             (SELECT day FROM {table} WHERE game_id = t.g AND player_id = t.p AND day > t.hi
              ORDER BY day LIMIT 1)
         ) n"
    ))
    .bind(&games)
    .bind(&players)
    .bind(&los)
    .bind(&his)
    .fetch_all(&mut *conn)
    .await?;
    let mut stored: Vec<BTreeSet<NaiveDate>> = vec![BTreeSet::new(); keys.len()];
    for (i, day) in near {
        // WITH ORDINALITY counts from 1.
        if let Some(s) = usize::try_from(i - 1).ok().and_then(|i| stored.get_mut(i)) {
            s.insert(day);
        }
    }
    let mut deltas = counters::GapDeltas::default();
    for (k, s) in keys.iter().zip(&stored) {
        deltas.add(k.0, counters::gap_deltas(s, k.2));
    }
    insert_days(conn, table, days).await?;
    upsert_gaps(conn, gaps, &deltas).await
}

/// Adds folded gap-count changes to `table` (one multi-row upsert, rows in key order).
async fn upsert_gaps(conn: &mut PgConnection, table: &str, deltas: &counters::GapDeltas) -> Result<(), sqlx::Error> {
    if deltas.is_empty() {
        return Ok(());
    }
    let rows: Vec<_> = deltas.rows().collect();
    let games: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    let dates: Vec<NaiveDate> = rows.iter().map(|r| r.1).collect();
    let gaps: Vec<i32> = rows.iter().map(|r| r.2).collect();
    let players: Vec<i64> = rows.iter().map(|r| r.3).collect();
    sqlx::query(&format!(
        "INSERT INTO {table} AS t (game_id, day, gap, players)
         SELECT * FROM UNNEST($1::text[], $2::date[], $3::int4[], $4::int8[])
         ON CONFLICT (game_id, day, gap) DO UPDATE SET players = t.players + excluded.players"
    ))
    .bind(&games)
    .bind(&dates)
    .bind(&gaps)
    .bind(&players)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// One player's profile deltas of a batch, merged in order (counters add, times take
/// min/max, a later non-empty setting replaces an earlier one).
struct MergedProfile {
    game_id: String,
    player_id: String,
    first_seen: DateTime<Utc>,
    last_seen: DateTime<Utc>,
    counters: [u64; 5], // events, sessions, playtime_seconds, purchases, levels_completed
    xp: i64,
    current_level: Option<String>,
    country: Option<String>,
    language: Option<String>,
    consent: Option<(bool, bool)>,
    last_seq: u64,
    revenue: BTreeMap<String, i64>,
}

fn merge_profiles(deltas: &[gm_projections::model::ProfileDelta]) -> Vec<MergedProfile> {
    let mut index: HashMap<(&str, &str), usize> = HashMap::with_capacity(deltas.len());
    let mut out: Vec<MergedProfile> = Vec::with_capacity(deltas.len());
    for d in deltas {
        let counters = [d.events, d.sessions, d.playtime_seconds, d.purchases, d.levels_completed];
        match index.get(&(d.game_id.as_str(), d.player_id.as_str())) {
            Some(&i) => {
                let m = &mut out[i];
                m.first_seen = m.first_seen.min(d.first_seen);
                m.last_seen = m.last_seen.max(d.last_seen);
                for (a, b) in m.counters.iter_mut().zip(counters) {
                    *a = a.saturating_add(b);
                }
                m.xp = m.xp.saturating_add(d.xp);
                if d.current_level.is_some() {
                    m.current_level.clone_from(&d.current_level);
                }
                if d.country.is_some() {
                    m.country.clone_from(&d.country);
                }
                if d.language.is_some() {
                    m.language.clone_from(&d.language);
                }
                if d.consent.is_some() {
                    m.consent = d.consent;
                }
                m.last_seq = m.last_seq.max(d.last_seq);
                for (cur, amount) in &d.revenue {
                    *m.revenue.entry(cur.code().to_string()).or_default() += amount;
                }
            }
            None => {
                index.insert((d.game_id.as_str(), d.player_id.as_str()), out.len());
                let mut revenue = BTreeMap::new();
                for (cur, amount) in &d.revenue {
                    *revenue.entry(cur.code().to_string()).or_default() += amount;
                }
                out.push(MergedProfile {
                    game_id: d.game_id.to_string(),
                    player_id: d.player_id.to_string(),
                    first_seen: d.first_seen,
                    last_seen: d.last_seen,
                    counters,
                    xp: d.xp,
                    current_level: d.current_level.clone(),
                    country: d.country.clone(),
                    language: d.language.clone(),
                    consent: d.consent,
                    last_seq: d.last_seq,
                    revenue,
                });
            }
        }
    }
    out
}

/// Sums rows with the same key, keeping first-seen order.
fn sum_by_key<K: std::hash::Hash + Eq + Clone, const N: usize>(
    rows: impl Iterator<Item = (K, [i64; N])>,
) -> Vec<(K, [i64; N])> {
    let mut index: HashMap<K, usize> = HashMap::new();
    let mut out: Vec<(K, [i64; N])> = Vec::new();
    for (k, v) in rows {
        match index.get(&k) {
            Some(&i) => {
                for (a, b) in out[i].1.iter_mut().zip(v) {
                    *a = a.saturating_add(b);
                }
            }
            None => {
                index.insert(k.clone(), out.len());
                out.push((k, v));
            }
        }
    }
    out
}

fn column<K, const N: usize>(rows: &[(K, [i64; N])], i: usize) -> Vec<i64> {
    rows.iter().map(|(_, v)| v[i]).collect()
}

/// Writes one projection's change set to its tables (`target`'s), each table with
/// multi-row statements (UNNEST arrays): one statement per table and batch, not per row.
async fn apply_changes(
    conn: &mut PgConnection,
    target: Target,
    projection: ProjectionName,
    c: &ChangeSet,
) -> Result<(), sqlx::Error> {
    match projection {
        ProjectionName::PlayerProfiles => apply_profiles(conn, target, c).await,
        ProjectionName::DailyActivity => apply_daily_activity(conn, target, c).await,
        ProjectionName::Sessions => apply_sessions(conn, target, c).await,
        ProjectionName::Revenue => apply_revenue(conn, target, c).await,
        ProjectionName::Funnel => apply_funnel(conn, target, c).await,
        ProjectionName::Leaderboards => apply_leaderboards(conn, target, c).await,
        ProjectionName::Retention => apply_retention(conn, target, c).await,
        ProjectionName::Recommendations => apply_recommendations(conn, target, c).await,
    }
}

/// player_profiles: erased players' rows deleted, one upsert per touched profile and currency.
async fn apply_profiles(conn: &mut PgConnection, target: Target, c: &ChangeSet) -> Result<(), sqlx::Error> {
    let t = |base: &str| table_name(base, target);
    let profiles = t("player_profiles");
    let revenue = t("profile_revenue");
    delete_players(conn, &[&profiles, &revenue], &c.erased).await?;
    if !c.profiles.is_empty() {
        let merged = merge_profiles(&c.profiles);
        let games: Vec<&str> = merged.iter().map(|m| m.game_id.as_str()).collect();
        let players: Vec<&str> = merged.iter().map(|m| m.player_id.as_str()).collect();
        let first: Vec<DateTime<Utc>> = merged.iter().map(|m| m.first_seen).collect();
        let last: Vec<DateTime<Utc>> = merged.iter().map(|m| m.last_seen).collect();
        let counter = |i: usize| -> Vec<i64> { merged.iter().map(|m| to_i64(m.counters[i])).collect() };
        let xp: Vec<i64> = merged.iter().map(|m| m.xp).collect();
        let level: Vec<Option<&str>> = merged.iter().map(|m| m.current_level.as_deref()).collect();
        let country: Vec<Option<&str>> = merged.iter().map(|m| m.country.as_deref()).collect();
        let language: Vec<Option<&str>> = merged.iter().map(|m| m.language.as_deref()).collect();
        let ca: Vec<Option<bool>> = merged.iter().map(|m| m.consent.map(|(a, _)| a)).collect();
        let cp: Vec<Option<bool>> = merged.iter().map(|m| m.consent.map(|(_, b)| b)).collect();
        let seq: Vec<i64> = merged.iter().map(|m| to_i64(m.last_seq)).collect();
        sqlx::query(&format!(
            "INSERT INTO {profiles} AS t (game_id, player_id, first_seen, last_seen, events, sessions,
                 playtime_seconds, purchases, levels_completed, xp, current_level, country, language,
                 consent_analytics, consent_personalisation, last_seq)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[],
                 $5::int8[], $6::int8[], $7::int8[], $8::int8[], $9::int8[], $10::int8[],
                 $11::text[], $12::text[], $13::text[], $14::bool[], $15::bool[], $16::int8[])
             ON CONFLICT (game_id, player_id) DO UPDATE SET
                 first_seen = LEAST(t.first_seen, excluded.first_seen),
                 last_seen = GREATEST(t.last_seen, excluded.last_seen),
                 events = t.events + excluded.events,
                 sessions = t.sessions + excluded.sessions,
                 playtime_seconds = t.playtime_seconds + excluded.playtime_seconds,
                 purchases = t.purchases + excluded.purchases,
                 levels_completed = t.levels_completed + excluded.levels_completed,
                 xp = t.xp + excluded.xp,
                 current_level = coalesce(excluded.current_level, t.current_level),
                 country = coalesce(excluded.country, t.country),
                 language = coalesce(excluded.language, t.language),
                 consent_analytics = coalesce(excluded.consent_analytics, t.consent_analytics),
                 consent_personalisation = coalesce(excluded.consent_personalisation, t.consent_personalisation),
                 last_seq = GREATEST(t.last_seq, excluded.last_seq)"
        ))
        .bind(&games)
        .bind(&players)
        .bind(&first)
        .bind(&last)
        .bind(counter(0))
        .bind(counter(1))
        .bind(counter(2))
        .bind(counter(3))
        .bind(counter(4))
        .bind(&xp)
        .bind(&level)
        .bind(&country)
        .bind(&language)
        .bind(&ca)
        .bind(&cp)
        .bind(&seq)
        .execute(&mut *conn)
        .await?;
        let mut rg: Vec<&str> = Vec::new();
        let mut rp: Vec<&str> = Vec::new();
        let mut rc: Vec<&str> = Vec::new();
        let mut ra: Vec<i64> = Vec::new();
        for m in &merged {
            for (cur, amount) in &m.revenue {
                rg.push(&m.game_id);
                rp.push(&m.player_id);
                rc.push(cur);
                ra.push(*amount);
            }
        }
        if !rg.is_empty() {
            sqlx::query(&format!(
                "INSERT INTO {revenue} AS t (game_id, player_id, currency, amount_minor)
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[])
                 ON CONFLICT (game_id, player_id, currency) DO UPDATE SET
                     amount_minor = t.amount_minor + excluded.amount_minor"
            ))
            .bind(&rg)
            .bind(&rp)
            .bind(&rc)
            .bind(&ra)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

/// daily_activity: erased players pseudonymised, player-days inserted (insert-or-ignore) with their gap counts.
async fn apply_daily_activity(conn: &mut PgConnection, target: Target, c: &ChangeSet) -> Result<(), sqlx::Error> {
    let t = |base: &str| table_name(base, target);
    let days = t("player_days");
    pseudonymise(conn, &[&days], &c.erased).await?;
    insert_days_counted(conn, &days, &t("activity_gaps"), &c.active_days).await
}

/// sessions: one upsert per touched (game, day).
async fn apply_sessions(conn: &mut PgConnection, target: Target, c: &ChangeSet) -> Result<(), sqlx::Error> {
    let t = |base: &str| table_name(base, target);
    if !c.session_days.is_empty() {
        let table = t("session_days");
        let rows = sum_by_key(c.session_days.iter().map(|s| {
            let mut v = [0i64; 10];
            v[0] = to_i64(s.started);
            v[1] = to_i64(s.closed);
            v[2] = to_i64(s.total_length_seconds);
            for (slot, b) in v[3..].iter_mut().zip(s.buckets) {
                *slot = to_i64(b);
            }
            ((s.game_id.as_str(), s.day), v)
        }));
        let games: Vec<&str> = rows.iter().map(|((g, _), _)| *g).collect();
        let dates: Vec<NaiveDate> = rows.iter().map(|((_, d), _)| *d).collect();
        let sql = format!(
            "INSERT INTO {table} AS t (game_id, day, started, closed, total_length_seconds,
                 b0, b1, b2, b3, b4, b5, b6)
             SELECT * FROM UNNEST($1::text[], $2::date[], $3::int8[], $4::int8[], $5::int8[],
                 $6::int8[], $7::int8[], $8::int8[], $9::int8[], $10::int8[], $11::int8[], $12::int8[])
             ON CONFLICT (game_id, day) DO UPDATE SET
                 started = t.started + excluded.started,
                 closed = t.closed + excluded.closed,
                 total_length_seconds = t.total_length_seconds + excluded.total_length_seconds,
                 b0 = t.b0 + excluded.b0, b1 = t.b1 + excluded.b1, b2 = t.b2 + excluded.b2,
                 b3 = t.b3 + excluded.b3, b4 = t.b4 + excluded.b4, b5 = t.b5 + excluded.b5,
                 b6 = t.b6 + excluded.b6"
        );
        let mut q = sqlx::query(&sql).bind(games).bind(dates);
        for i in 0..10 {
            q = q.bind(column(&rows, i));
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// revenue: one upsert per touched (game, day, currency), payer-days inserted.
async fn apply_revenue(conn: &mut PgConnection, target: Target, c: &ChangeSet) -> Result<(), sqlx::Error> {
    let t = |base: &str| table_name(base, target);
    let payers = t("payer_days");
    pseudonymise(conn, &[&payers], &c.erased).await?;
    if !c.revenue.is_empty() {
        let table = t("revenue_days");
        let rows = sum_by_key(
            c.revenue
                .iter()
                .map(|r| ((r.game_id.as_str(), r.day, r.currency.code()), [r.amount_minor, to_i64(r.purchases)])),
        );
        let games: Vec<&str> = rows.iter().map(|((g, _, _), _)| *g).collect();
        let dates: Vec<NaiveDate> = rows.iter().map(|((_, d, _), _)| *d).collect();
        let currencies: Vec<&str> = rows.iter().map(|((_, _, c), _)| *c).collect();
        sqlx::query(&format!(
            "INSERT INTO {table} AS t (game_id, day, currency, amount_minor, purchases)
             SELECT * FROM UNNEST($1::text[], $2::date[], $3::text[], $4::int8[], $5::int8[])
             ON CONFLICT (game_id, day, currency) DO UPDATE SET
                 amount_minor = t.amount_minor + excluded.amount_minor,
                 purchases = t.purchases + excluded.purchases"
        ))
        .bind(games)
        .bind(dates)
        .bind(currencies)
        .bind(column(&rows, 0))
        .bind(column(&rows, 1))
        .execute(&mut *conn)
        .await?;
    }
    insert_days_counted(conn, &payers, &t("payer_gaps"), &c.payer_days).await
}

/// The earlier of two optional times (the known one when only one is).
fn earliest(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// funnel: erased players pseudonymised in `funnel_players`, one upsert per touched
/// (game, level) and per touched (game, level, player) (the earliest times kept).
async fn apply_funnel(conn: &mut PgConnection, target: Target, c: &ChangeSet) -> Result<(), sqlx::Error> {
    let t = |base: &str| table_name(base, target);
    let players = t("funnel_players");
    pseudonymise(conn, &[&players], &c.erased).await?;
    if !c.funnel_players.is_empty() {
        // One row per key (an upsert may not touch a row twice in one statement).
        type Times = [Option<DateTime<Utc>>; 3];
        let mut rows: BTreeMap<(&str, &str, &str), Times> = BTreeMap::new();
        for f in &c.funnel_players {
            let times = [f.first_start, f.first_complete, f.first_fail];
            let row = rows.entry((f.game_id.as_str(), f.level_id.as_str(), f.player_id.as_str())).or_default();
            for (kept, new) in row.iter_mut().zip(times) {
                *kept = earliest(*kept, new);
            }
        }
        let key = |i: usize| -> Vec<&str> {
            rows.keys()
                .map(|k| match i {
                    0 => k.0,
                    1 => k.1,
                    _ => k.2,
                })
                .collect()
        };
        let times = |i: usize| -> Vec<Option<DateTime<Utc>>> { rows.values().map(|v| v[i]).collect() };
        // LEAST ignores NULLs: the earliest known time stays.
        sqlx::query(&format!(
            "INSERT INTO {players} AS t (game_id, level_id, player_id, first_start, first_complete, first_fail)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[],
                 $6::timestamptz[])
             ON CONFLICT (game_id, level_id, player_id) DO UPDATE SET
                 first_start = LEAST(t.first_start, excluded.first_start),
                 first_complete = LEAST(t.first_complete, excluded.first_complete),
                 first_fail = LEAST(t.first_fail, excluded.first_fail)"
        ))
        .bind(key(0))
        .bind(key(1))
        .bind(key(2))
        .bind(times(0))
        .bind(times(1))
        .bind(times(2))
        .execute(&mut *conn)
        .await?;
    }
    if !c.funnel.is_empty() {
        let table = t("funnel");
        let rows = sum_by_key(c.funnel.iter().map(|f| {
            ((f.game_id.as_str(), f.level_id.as_str()), [to_i64(f.starts), to_i64(f.completes), to_i64(f.fails)])
        }));
        let games: Vec<&str> = rows.iter().map(|((g, _), _)| *g).collect();
        let levels: Vec<&str> = rows.iter().map(|((_, l), _)| *l).collect();
        sqlx::query(&format!(
            "INSERT INTO {table} AS t (game_id, level_id, starts, completes, fails)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::int8[], $5::int8[])
             ON CONFLICT (game_id, level_id) DO UPDATE SET
                 starts = t.starts + excluded.starts,
                 completes = t.completes + excluded.completes,
                 fails = t.fails + excluded.fails"
        ))
        .bind(games)
        .bind(levels)
        .bind(column(&rows, 0))
        .bind(column(&rows, 1))
        .bind(column(&rows, 2))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// leaderboards (see `store/games.rs`).
async fn apply_leaderboards(conn: &mut PgConnection, target: Target, c: &ChangeSet) -> Result<(), sqlx::Error> {
    let t = |base: &str| table_name(base, target);
    games::apply_leaderboards(conn, &t("leaderboard_scores"), c).await?;
    Ok(())
}

/// retention (see `store/games.rs`).
async fn apply_retention(conn: &mut PgConnection, target: Target, c: &ChangeSet) -> Result<(), sqlx::Error> {
    let t = |base: &str| table_name(base, target);
    games::apply_retention(conn, &t("cohort_players"), &t("cohort_days"), &t("retention_days"), c).await?;
    Ok(())
}

/// recommendations (see `store/reco.rs`).
async fn apply_recommendations(conn: &mut PgConnection, target: Target, c: &ChangeSet) -> Result<(), sqlx::Error> {
    let t = |base: &str| table_name(base, target);
    let names: Vec<String> = reco::TABLES.iter().map(|n| t(n)).collect();
    reco::apply(conn, [&names[0], &names[1], &names[2], &names[3]], c).await?;
    Ok(())
}

/// One projection's part of a transaction: its checkpoint moves and its changes.
type Part<'a> = (ProjectionName, &'a [CheckpointMove], &'a ChangeSet);

impl PgStore {
    /// Applies every part and moves every checkpoint in one transaction, compare-and-set
    /// on each checkpoint (checked first, with the rows locked; all in a few statements).
    async fn apply_parts(&self, target: Target, parts: &[Part<'_>]) -> Result<(), StoreError> {
        // Dropping `tx` without commit (an error below, or a cancelled future) rolls back.
        let mut tx = self.pool.begin().await.map_err(store_err)?;
        if let Err(e) = check_checkpoints(&mut tx, target, parts).await {
            let _ = tx.rollback().await;
            return Err(e);
        }
        for (projection, _, changes) in parts {
            apply_changes(&mut tx, target, *projection, changes).await.map_err(store_err)?;
        }
        if target == Target::Live {
            let mut ids = Vec::new();
            let mut names = Vec::new();
            for (projection, _, changes) in parts {
                for id in &changes.confirmed_erasures {
                    ids.push(*id);
                    names.push(projection.as_str());
                }
            }
            if !ids.is_empty() {
                sqlx::query(
                    "INSERT INTO erasure_confirmations (erasure_id, projection, confirmed_at)
                     SELECT e, p, now() FROM UNNEST($1::uuid[], $2::text[]) AS u(e, p) ON CONFLICT DO NOTHING",
                )
                .bind(&ids)
                .bind(&names)
                .execute(&mut *tx)
                .await
                .map_err(store_err)?;
            }
        }
        let (mut names, mut partitions, mut nexts) = (Vec::new(), Vec::new(), Vec::new());
        for (projection, moves, _) in parts {
            for m in moves.iter().filter(|m| m.expected.is_some()) {
                names.push(checkpoint_name(*projection, target));
                partitions.push(m.partition as i32);
                nexts.push(to_i64(m.next));
            }
        }
        if !names.is_empty() {
            sqlx::query(
                "UPDATE projection_checkpoints AS c SET next_offset = e.next_offset
                 FROM UNNEST($1::text[], $2::int4[], $3::int8[]) AS e(projection, partition, next_offset)
                 WHERE c.projection = e.projection AND c.partition = e.partition",
            )
            .bind(&names)
            .bind(&partitions)
            .bind(&nexts)
            .execute(&mut *tx)
            .await
            .map_err(store_err)?;
        }
        tx.commit().await.map_err(store_err)
    }
}

/// The compare-and-set of every checkpoint of `parts`: the checkpoints expected absent are
/// claimed (inserted at their next offset: a concurrent claimer blocks on the key until we
/// finish, then finds it taken), the others locked (in key order) and compared. `Conflict`
/// on the first that does not match.
async fn check_checkpoints(conn: &mut PgConnection, target: Target, parts: &[Part<'_>]) -> Result<(), StoreError> {
    let mut claims: Vec<(String, i32, i64)> = Vec::new();
    let mut expected: BTreeMap<(String, i32), u64> = BTreeMap::new();
    for (projection, moves, _) in parts {
        for m in moves.iter() {
            let name = checkpoint_name(*projection, target);
            match m.expected {
                None => claims.push((name, m.partition as i32, to_i64(m.next))),
                Some(e) => {
                    expected.insert((name, m.partition as i32), e);
                }
            }
        }
    }
    if !claims.is_empty() {
        let names: Vec<&str> = claims.iter().map(|c| c.0.as_str()).collect();
        let partitions: Vec<i32> = claims.iter().map(|c| c.1).collect();
        let nexts: Vec<i64> = claims.iter().map(|c| c.2).collect();
        let claimed: Vec<(String, i32)> = sqlx::query_as(
            "INSERT INTO projection_checkpoints (projection, partition, next_offset)
             SELECT * FROM UNNEST($1::text[], $2::int4[], $3::int8[])
             ON CONFLICT (projection, partition) DO NOTHING
             RETURNING projection, partition",
        )
        .bind(&names)
        .bind(&partitions)
        .bind(&nexts)
        .fetch_all(&mut *conn)
        .await
        .map_err(store_err)?;
        if claimed.len() != claims.len() {
            let claimed: HashSet<(String, i32)> = claimed.into_iter().collect();
            if let Some((name, partition, _)) = claims.iter().find(|c| !claimed.contains(&(c.0.clone(), c.1))) {
                let found = read_checkpoint(conn, name, *partition as u32).await?;
                return Err(StoreError::Conflict { expected: None, found });
            }
        }
    }
    if !expected.is_empty() {
        let names: Vec<&str> = expected.keys().map(|(n, _)| n.as_str()).collect();
        let partitions: Vec<i32> = expected.keys().map(|(_, p)| *p).collect();
        let rows: Vec<(String, i32, i64)> = sqlx::query_as(
            "SELECT c.projection, c.partition, c.next_offset FROM projection_checkpoints AS c
             JOIN UNNEST($1::text[], $2::int4[]) AS e(projection, partition)
               ON c.projection = e.projection AND c.partition = e.partition
             ORDER BY c.projection, c.partition
             FOR UPDATE OF c",
        )
        .bind(&names)
        .bind(&partitions)
        .fetch_all(&mut *conn)
        .await
        .map_err(store_err)?;
        let found: HashMap<(String, i32), u64> = rows.into_iter().map(|(n, p, o)| ((n, p), to_u64(o))).collect();
        for (key, want) in &expected {
            let got = found.get(key).copied();
            if got != Some(*want) {
                return Err(StoreError::Conflict { expected: Some(*want), found: got });
            }
        }
    }
    Ok(())
}

#[async_trait]
impl ReadModelStore for PgStore {
    async fn checkpoint(
        &self,
        target: Target,
        projection: ProjectionName,
        partition: u32,
    ) -> Result<Option<u64>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(store_err)?;
        read_checkpoint(&mut conn, &checkpoint_name(projection, target), partition).await
    }

    async fn apply_batch(&self, target: Target, batch: &[ProjectionBatch]) -> Result<(), StoreError> {
        let parts: Vec<Part<'_>> = batch.iter().map(|b| (b.name, b.checkpoints.as_slice(), &b.changes)).collect();
        self.apply_parts(target, &parts).await
    }

    async fn begin_rebuild(&self, projection: ProjectionName) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(store_err)?;
        for base in tables(projection) {
            let rebuild = table_name(base, Target::Rebuild);
            sqlx::query(&format!("DROP TABLE IF EXISTS {rebuild}")).execute(&mut *tx).await.map_err(store_err)?;
            sqlx::query(&format!("CREATE TABLE {rebuild} (LIKE {base} INCLUDING ALL)"))
                .execute(&mut *tx)
                .await
                .map_err(store_err)?;
        }
        sqlx::query("DELETE FROM projection_checkpoints WHERE projection = $1")
            .bind(checkpoint_name(projection, Target::Rebuild))
            .execute(&mut *tx)
            .await
            .map_err(store_err)?;
        tx.commit().await.map_err(store_err)
    }

    async fn finish_rebuild(&self, projection: ProjectionName) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(store_err)?;
        sqlx::query(&format!("SET LOCAL lock_timeout = '{SWAP_LOCK_TIMEOUT}'"))
            .execute(&mut *tx)
            .await
            .map_err(store_err)?;
        for base in tables(projection) {
            let rebuild = table_name(base, Target::Rebuild);
            let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
                .bind(&rebuild)
                .fetch_one(&mut *tx)
                .await
                .map_err(store_err)?;
            if !exists {
                let _ = tx.rollback().await;
                return Err(StoreError::Other(
                    format!("no rebuild of {projection} to finish (table {rebuild} missing)").into(),
                ));
            }
            sqlx::query(&format!("DROP TABLE IF EXISTS {base}")).execute(&mut *tx).await.map_err(store_err)?;
            sqlx::query(&format!("ALTER TABLE {rebuild} RENAME TO {base}"))
                .execute(&mut *tx)
                .await
                .map_err(store_err)?;
            // Indexes (and the constraints they back) keep their `<base>_rebuild…` names
            // across the rename: give them the live names again.
            let indexes: Vec<String> = sqlx::query_scalar(
                "SELECT c.relname::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                 WHERE i.indrelid = to_regclass($1)",
            )
            .bind(*base)
            .fetch_all(&mut *tx)
            .await
            .map_err(store_err)?;
            for index in indexes {
                if let Some(rest) = index.strip_prefix(&rebuild) {
                    sqlx::query(&format!("ALTER INDEX \"{index}\" RENAME TO \"{base}{rest}\""))
                        .execute(&mut *tx)
                        .await
                        .map_err(store_err)?;
                }
            }
        }
        sqlx::query("DELETE FROM projection_checkpoints WHERE projection = $1")
            .bind(checkpoint_name(projection, Target::Live))
            .execute(&mut *tx)
            .await
            .map_err(store_err)?;
        sqlx::query("UPDATE projection_checkpoints SET projection = $1 WHERE projection = $2")
            .bind(checkpoint_name(projection, Target::Live))
            .bind(checkpoint_name(projection, Target::Rebuild))
            .execute(&mut *tx)
            .await
            .map_err(store_err)?;
        tx.commit().await.map_err(store_err)
    }
}
