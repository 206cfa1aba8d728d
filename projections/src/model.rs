//! What projections write (change sets) and what queries read (rows), independent of any
//! database. Each adapter applies a `ChangeSet` and its checkpoint in one transaction.

use chrono::{DateTime, NaiveDate, Utc};
use gm_schemas::{Currency, GameId, PlayerId};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use utoipa::ToSchema;

/// The read models, each with its own consumer group and checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProjectionName {
    PlayerProfiles,
    DailyActivity,
    Sessions,
    Revenue,
    Funnel,
    Leaderboards,
    Retention,
    Recommendations,
}

impl ProjectionName {
    pub const ALL: [ProjectionName; 8] = [
        Self::PlayerProfiles,
        Self::DailyActivity,
        Self::Sessions,
        Self::Revenue,
        Self::Funnel,
        Self::Leaderboards,
        Self::Retention,
        Self::Recommendations,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::PlayerProfiles => "player_profiles",
            Self::DailyActivity => "daily_activity",
            Self::Sessions => "sessions",
            Self::Revenue => "revenue",
            Self::Funnel => "funnel",
            Self::Leaderboards => "leaderboards",
            Self::Retention => "retention",
            Self::Recommendations => "recommendations",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == name)
    }

    /// The consumer group of this projection's live worker.
    pub fn group(&self) -> String {
        format!("projection.{}", self.as_str())
    }

    /// Whether this projection builds anything from processed records of `kind` (the
    /// `gm.kind` header: an event type, or `player_erased`, which every projection reads to
    /// forget the player and confirm the erasure). The worker skips the others without
    /// parsing them. A test checks that a skipped kind indeed changes nothing.
    pub fn reads(&self, kind: &str) -> bool {
        kind == gm_schemas::processed::ERASED_KIND
            || match self {
                // Every event counts: activity, sessions (derived on any event), profiles.
                Self::PlayerProfiles | Self::DailyActivity | Self::Sessions | Self::Retention => true,
                Self::Revenue => kind == "purchase",
                Self::Funnel => kind == "progression",
                Self::Leaderboards => kind == "score",
                // consent_update: personalisation withdrawn forgets the player's interactions.
                Self::Recommendations => matches!(kind, "purchase" | "item_use" | "resource" | "consent_update"),
            }
    }
}

impl fmt::Display for ProjectionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which set of tables a worker writes: the live ones, or fresh ones during a rebuild.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    Live,
    Rebuild,
}

/// Upper bounds (exclusive, seconds) of the session-length buckets; the last is open.
pub const SESSION_BUCKETS: [(&str, u64); 7] = [
    ("0-1m", 60),
    ("1-5m", 300),
    ("5-15m", 900),
    ("15-30m", 1800),
    ("30-60m", 3600),
    ("1-2h", 7200),
    ("2h+", u64::MAX),
];

pub fn session_bucket(length_seconds: u64) -> usize {
    SESSION_BUCKETS.iter().position(|(_, upper)| length_seconds < *upper).unwrap_or(SESSION_BUCKETS.len() - 1)
}

/// `num / den`, or 0 when `den` is 0 (a day without players has no ratios, not NaN).
pub fn ratio(num: f64, den: f64) -> f64 {
    if den == 0.0 {
        0.0
    } else {
        num / den
    }
}

/// A fresh, irreversible pseudonym for an erased player's id (`erased-<uuid v4>`).
pub fn erased_pseudonym() -> String {
    format!("erased-{}", uuid::Uuid::new_v4())
}

/// Increments to one player's profile (counters add; times take min/max; settings replace).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileDelta {
    pub game_id: GameId,
    pub player_id: PlayerId,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub events: u64,
    pub sessions: u64,
    pub playtime_seconds: u64,
    pub purchases: u64,
    pub levels_completed: u64,
    pub xp: i64,
    pub current_level: Option<String>,
    pub country: Option<String>,
    pub language: Option<String>,
    /// (analytics, personalisation)
    pub consent: Option<(bool, bool)>,
    pub revenue: Vec<(Currency, i64)>,
    pub last_seq: u64,
}

/// A player was active on a UTC day (insert-or-ignore).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PlayerDay {
    pub game_id: GameId,
    pub day: NaiveDate,
    pub player_id: PlayerId,
}

/// Session counts for the UTC day a session started on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionDayDelta {
    pub game_id: GameId,
    pub day: NaiveDate,
    pub started: u64,
    pub closed: u64,
    pub total_length_seconds: u64,
    pub buckets: [u64; 7],
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevenueDelta {
    pub game_id: GameId,
    pub day: NaiveDate,
    pub currency: Currency,
    pub amount_minor: i64,
    pub purchases: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunnelDelta {
    pub game_id: GameId,
    pub level_id: String,
    pub starts: u64,
    pub completes: u64,
    pub fails: u64,
}

/// One player's first start, completion and failure of a level (the store keeps the earliest
/// of each): one row per (game, level, player), whatever the player sent, so distinct players
/// and the median time from start to completion are counted from a bounded table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunnelPlayerDelta {
    pub game_id: GameId,
    pub level_id: String,
    pub player_id: PlayerId,
    pub first_start: Option<DateTime<Utc>>,
    pub first_complete: Option<DateTime<Utc>>,
    pub first_fail: Option<DateTime<Utc>>,
}

/// Everything one batch changes in one projection's tables.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ChangeSet {
    pub profiles: Vec<ProfileDelta>,
    pub active_days: Vec<PlayerDay>,
    pub session_days: Vec<SessionDayDelta>,
    pub revenue: Vec<RevenueDelta>,
    /// Players who paid on a day (insert-or-ignore), for payers and ARPPU.
    pub payer_days: Vec<PlayerDay>,
    pub funnel: Vec<FunnelDelta>,
    /// Players' first start / completion / failure per level (funnel).
    pub funnel_players: Vec<FunnelPlayerDelta>,
    /// Best scores per player, board and period (the store keeps the maximum).
    pub scores: Vec<crate::leaderboard::ScoreEntry>,
    /// Players' interactions with items (recommendations).
    pub interactions: Vec<crate::recommend::Interaction>,
    /// Players erased: their rows are deleted, or their id replaced by an irreversible
    /// pseudonym where counts of distinct players depend on them.
    pub erased: Vec<(GameId, PlayerId)>,
    /// Players who withdrew consent to personalisation (recommendations): their interactions
    /// are deleted and their list tombstoned, after this change set's interactions.
    pub forgotten: Vec<(GameId, PlayerId)>,
    /// Erasures this batch carried (`PlayerErased` events), set for every projection: the
    /// store records in the same transaction that this projection has done its part, which
    /// is what lets an erasure request complete.
    pub confirmed_erasures: Vec<uuid::Uuid>,
}

impl ChangeSet {
    pub fn is_empty(&self) -> bool {
        self.profiles.is_empty()
            && self.active_days.is_empty()
            && self.session_days.is_empty()
            && self.revenue.is_empty()
            && self.payer_days.is_empty()
            && self.funnel.is_empty()
            && self.funnel_players.is_empty()
            && self.scores.is_empty()
            && self.interactions.is_empty()
            && self.erased.is_empty()
            && self.forgotten.is_empty()
            && self.confirmed_erasures.is_empty()
    }
}

// ---- rows served by queries ----

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PlayerProfile {
    pub game_id: String,
    pub player_id: String,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub events: u64,
    pub sessions: u64,
    pub playtime_seconds: u64,
    pub purchases: u64,
    /// Revenue per ISO 4217 currency, in minor units.
    pub revenue_minor: std::collections::BTreeMap<String, i64>,
    pub levels_completed: u64,
    pub xp: i64,
    pub current_level: Option<String>,
    pub country: Option<String>,
    pub language: Option<String>,
    pub consent_analytics: Option<bool>,
    pub consent_personalisation: Option<bool>,
    /// Sequence number of the last event applied.
    pub last_seq: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ActiveUsersDay {
    pub day: NaiveDate,
    /// Distinct players active that UTC day.
    pub dau: u64,
    /// Distinct players active in the 7 days ending that day.
    pub wau: u64,
    /// Distinct players active in the 30 days ending that day.
    pub mau: u64,
    /// dau / mau.
    pub stickiness: f64,
}

impl ActiveUsersDay {
    pub fn new(day: NaiveDate, dau: u64, wau: u64, mau: u64) -> Self {
        Self { day, dau, wau, mau, stickiness: ratio(dau as f64, mau as f64) }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LengthBucket {
    pub bucket: String,
    pub sessions: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SessionsDay {
    pub day: NaiveDate,
    pub sessions_started: u64,
    pub sessions_closed: u64,
    pub average_length_seconds: f64,
    pub length_distribution: Vec<LengthBucket>,
}

/// The stored totals of one day's sessions (a `session_days` row).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SessionCounts {
    pub started: u64,
    pub closed: u64,
    pub total_length_seconds: u64,
    /// Closed sessions per [`SESSION_BUCKETS`] entry.
    pub buckets: [u64; 7],
}

impl SessionsDay {
    pub fn from_counts(day: NaiveDate, counts: &SessionCounts) -> Self {
        Self {
            day,
            sessions_started: counts.started,
            sessions_closed: counts.closed,
            average_length_seconds: ratio(counts.total_length_seconds as f64, counts.closed as f64),
            length_distribution: SESSION_BUCKETS
                .iter()
                .zip(counts.buckets)
                .map(|((label, _), sessions)| LengthBucket { bucket: (*label).to_string(), sessions })
                .collect(),
        }
    }
}

/// One [`SessionsDay`] per day of `range`, in order; days without a row count zero.
pub fn sessions_over(range: DateRange, by_day: &HashMap<NaiveDate, SessionCounts>) -> Vec<SessionsDay> {
    range
        .days()
        .map(|day| SessionsDay::from_counts(day, by_day.get(&day).unwrap_or(&SessionCounts::default())))
        .collect()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RevenueDay {
    pub day: NaiveDate,
    pub currency: String,
    pub revenue_minor: i64,
    pub purchases: u64,
    /// Distinct players who paid that day (any currency).
    pub payers: u64,
    pub dau: u64,
    /// Average revenue per daily active user, minor units.
    pub arpdau_minor: f64,
    /// Average revenue per paying user, minor units.
    pub arppu_minor: f64,
    /// payers / dau.
    pub conversion: f64,
}

impl RevenueDay {
    pub fn new(day: NaiveDate, currency: String, revenue_minor: i64, purchases: u64, payers: u64, dau: u64) -> Self {
        Self {
            day,
            currency,
            revenue_minor,
            purchases,
            payers,
            dau,
            arpdau_minor: ratio(revenue_minor as f64, dau as f64),
            arppu_minor: ratio(revenue_minor as f64, payers as f64),
            conversion: ratio(payers as f64, dau as f64),
        }
    }
}

/// What a store counts for one level: events, and distinct players from the per-player table.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FunnelCounts {
    pub starts: u64,
    pub completes: u64,
    pub fails: u64,
    pub players_started: u64,
    pub players_completed: u64,
    pub players_failed: u64,
    /// Players who started the level and completed it.
    pub players_started_and_completed: u64,
    /// Median over players of (first completion − first start), those who completed after
    /// they started; `None` when there is none.
    pub median_seconds_to_complete: Option<f64>,
}

/// One level of the progression funnel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FunnelStep {
    pub level_id: String,
    /// Distinct players who started the level.
    pub players_started: u64,
    /// Distinct players who completed the level.
    pub players_completed: u64,
    /// Distinct players who failed the level at least once.
    pub players_failed: u64,
    /// Share of the players who started the level that completed it; null when nobody started.
    pub completion_rate: Option<f64>,
    /// players_started of this step / players_started of the step before it (step-to-step
    /// conversion); null for the first step and when nobody started the step before.
    pub conversion_from_previous: Option<f64>,
    /// Median seconds from a player's first start of the level to their first completion,
    /// over the players who completed it after starting it; null when none did.
    pub median_seconds_to_complete: Option<f64>,
    /// Start events (every attempt counts).
    pub starts: u64,
    /// Complete events.
    pub completes: u64,
    /// Fail events.
    pub fails: u64,
}

impl FunnelStep {
    /// A step from its counts; `conversion_from_previous` is set by [`order_funnel`].
    pub fn new(level_id: String, c: FunnelCounts) -> Self {
        Self {
            level_id,
            players_started: c.players_started,
            players_completed: c.players_completed,
            players_failed: c.players_failed,
            completion_rate: (c.players_started > 0)
                .then(|| c.players_started_and_completed as f64 / c.players_started as f64),
            conversion_from_previous: None,
            median_seconds_to_complete: c.median_seconds_to_complete,
            starts: c.starts,
            completes: c.completes,
            fails: c.fails,
        }
    }
}

/// Compares level ids in natural order: runs of digits by their value (`level-2` before
/// `level-10`), the rest by character; ties (`l01` and `l1`) bytewise.
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn chunks(s: &str) -> impl Iterator<Item = (bool, &str)> {
        let mut rest = s;
        std::iter::from_fn(move || {
            let first = rest.chars().next()?;
            let digits = first.is_ascii_digit();
            let end = rest.find(|c: char| c.is_ascii_digit() != digits).unwrap_or(rest.len());
            let (chunk, tail) = rest.split_at(end);
            rest = tail;
            Some((digits, chunk))
        })
    }
    let mut xs = chunks(a);
    let mut ys = chunks(b);
    loop {
        let ord = match (xs.next(), ys.next()) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => return std::cmp::Ordering::Less,
            (Some(_), None) => return std::cmp::Ordering::Greater,
            (Some((true, x)), Some((true, y))) => {
                let (x, y) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
                x.len().cmp(&y.len()).then_with(|| x.cmp(y))
            }
            (Some((_, x)), Some((_, y))) => x.cmp(y),
        };
        if ord != std::cmp::Ordering::Equal {
            return ord;
        }
    }
}

/// Orders the steps — the levels of `order` first, in its order, then the others in natural
/// order — and sets each step's conversion from the step before it.
pub fn order_funnel(mut steps: Vec<FunnelStep>, order: &[String]) -> Vec<FunnelStep> {
    let position = |level: &str| order.iter().position(|l| l == level).unwrap_or(usize::MAX);
    steps.sort_by(|a, b| {
        position(&a.level_id).cmp(&position(&b.level_id)).then_with(|| natural_cmp(&a.level_id, &b.level_id))
    });
    let mut previous: Option<u64> = None;
    for step in &mut steps {
        step.conversion_from_previous = previous.filter(|p| *p > 0).map(|p| step.players_started as f64 / p as f64);
        previous = Some(step.players_started);
    }
    steps
}

/// An inclusive range of UTC days, at most `MAX_DAYS` long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateRange {
    from: NaiveDate,
    to: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("from ({from}) is after to ({to})")]
    Reversed { from: NaiveDate, to: NaiveDate },
    #[error("range is {days} days; at most {max} allowed")]
    TooWide { days: i64, max: i64 },
}

impl DateRange {
    pub const MAX_DAYS: i64 = 366;

    pub fn parse(from: NaiveDate, to: NaiveDate) -> Result<Self, RangeError> {
        if from > to {
            return Err(RangeError::Reversed { from, to });
        }
        let days = (to - from).num_days() + 1;
        if days > Self::MAX_DAYS {
            return Err(RangeError::TooWide { days, max: Self::MAX_DAYS });
        }
        Ok(Self { from, to })
    }
    pub fn from(&self) -> NaiveDate {
        self.from
    }
    pub fn to(&self) -> NaiveDate {
        self.to
    }
    pub fn days(&self) -> impl Iterator<Item = NaiveDate> {
        let to = self.to;
        self.from.iter_days().take_while(move |d| *d <= to)
    }
}

#[cfg(test)]
mod tests;
