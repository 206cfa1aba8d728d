//! [`Memoised`]: the embedded default's query cache. Answers are kept in memory and reused
//! until the store's next committed write.
//!
//! Production puts Redis in front of PostgreSQL and accepts answers up to a TTL old. The
//! embedded default has no Redis, but it has something better: every write to its store goes
//! through one writer, which counts its commits ([`SqliteStore::changes`]). An answer is
//! remembered with the count read *before* it was loaded and served only while the count is
//! unchanged, so it is never older than the store: a write that commits during the load
//! leaves the answer tagged with the older count, and the next lookup misses. Under a steady
//! stream of events the projections commit every batch and most lookups miss; once the
//! pipeline is quiet (dashboards, the bench's query phases) repeated queries cost a hash
//! lookup instead of SQLite statements.
//!
//! Erasure needs nothing of its own: it changes the store through the same writer, so no
//! answer from before it is served again. Nor are such answers kept: the first lookup after
//! a write drops every remembered answer (none can be served any more), and an answer not
//! asked for in [`IDLE`] is dropped anyway, so an erased player's answers leave memory at the
//! next query or within a minute.
//! Recommendations decay with time, so a list is reused for at most [`LIST_MAX_AGE`] (what
//! production's Redis keeps one for) even while nothing is written.

use crate::store::SqliteStore;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use gm_ports::StoreError;
use gm_projections::leaderboard::{BoardPeriod, LeaderboardPage, PlayerStanding};
use gm_projections::model::{ActiveUsersDay, DateRange, FunnelStep, PlayerProfile, RevenueDay, SessionsDay};
use gm_projections::recommend::RecommendationList;
use gm_projections::retention::{Monetisation, NewReturningDay, RetentionCohort};
use gm_projections::{AnalyticsQueries, GameQueries, RecommendationQueries};
use gm_schemas::{GameId, PlayerId};
use std::any::Any;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a recommendation list is reused while the store does not change.
pub const LIST_MAX_AGE: Duration = Duration::from_secs(60);
/// Answers kept at most (least recently used go first).
const CAPACITY: u64 = 20_000;
/// An answer not asked for in this long is dropped even if still valid.
pub const IDLE: Duration = Duration::from_secs(60);

#[derive(Clone)]
struct Entry {
    changes: u64,
    at: Instant,
    value: Arc<dyn Any + Send + Sync>,
}

/// Hits and misses since start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoStats {
    pub hits: u64,
    pub misses: u64,
}

/// The query ports of a [`SqliteStore`], memoised until its next write. Cheap to share.
pub struct Memoised {
    store: SqliteStore,
    answers: moka::sync::Cache<String, Entry>,
    /// The store's commit count at the last lookup: when it moves, every answer is stale.
    seen: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl Memoised {
    pub fn new(store: SqliteStore) -> Self {
        let answers = moka::sync::Cache::builder().max_capacity(CAPACITY).time_to_idle(IDLE).build();
        let seen = AtomicU64::new(store.changes());
        Self { store, answers, seen, hits: AtomicU64::new(0), misses: AtomicU64::new(0) }
    }

    pub fn stats(&self) -> MemoStats {
        MemoStats { hits: self.hits.load(Ordering::Relaxed), misses: self.misses.load(Ordering::Relaxed) }
    }

    /// How many answers are held in memory (valid or not yet dropped).
    pub fn remembered(&self) -> usize {
        self.answers.iter().count()
    }

    /// The answer remembered under `key` if the store has not changed since (and it is at
    /// most `max_age` old); otherwise `load`'s, remembered. Errors are not remembered.
    async fn answer<T, F>(&self, key: String, max_age: Option<Duration>, load: F) -> Result<T, StoreError>
    where
        T: Clone + Send + Sync + 'static,
        F: Future<Output = Result<T, StoreError>>,
    {
        // Read before the load: a write committing during it makes this answer stale at once.
        let changes = self.store.changes();
        if self.seen.swap(changes, Ordering::Relaxed) != changes {
            self.answers.invalidate_all();
        }
        if let Some(entry) = self.answers.get(&key) {
            let fresh = entry.changes == changes && max_age.is_none_or(|age| entry.at.elapsed() <= age);
            if let (true, Some(value)) = (fresh, entry.value.downcast_ref::<T>()) {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(value.clone());
            }
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let value = load.await?;
        self.answers.insert(key, Entry { changes, at: Instant::now(), value: Arc::new(value.clone()) });
        Ok(value)
    }
}

/// A key naming the query and every argument (ids contain no `|`).
fn key(query: &str, game: &GameId, rest: std::fmt::Arguments<'_>) -> String {
    format!("{query}|{game}|{rest}")
}

fn board_key(query: &str, b: &BoardPeriod, rest: std::fmt::Arguments<'_>) -> String {
    key(query, &b.game_id, format_args!("{}|{:?}|{}|{rest}", b.board, b.period, b.start))
}

#[async_trait]
impl AnalyticsQueries for Memoised {
    async fn player_profile(&self, game: &GameId, player: &PlayerId) -> Result<Option<PlayerProfile>, StoreError> {
        let k = key("profile", game, format_args!("{player}"));
        self.answer(k, None, self.store.player_profile(game, player)).await
    }

    async fn active_users(&self, game: &GameId, range: DateRange) -> Result<Vec<ActiveUsersDay>, StoreError> {
        let k = key("active_users", game, format_args!("{}|{}", range.from(), range.to()));
        self.answer(k, None, self.store.active_users(game, range)).await
    }

    async fn sessions(&self, game: &GameId, range: DateRange) -> Result<Vec<SessionsDay>, StoreError> {
        let k = key("sessions", game, format_args!("{}|{}", range.from(), range.to()));
        self.answer(k, None, self.store.sessions(game, range)).await
    }

    async fn revenue(&self, game: &GameId, range: DateRange) -> Result<Vec<RevenueDay>, StoreError> {
        let k = key("revenue", game, format_args!("{}|{}", range.from(), range.to()));
        self.answer(k, None, self.store.revenue(game, range)).await
    }

    async fn funnel(&self, game: &GameId) -> Result<Vec<FunnelStep>, StoreError> {
        self.answer(key("funnel", game, format_args!("")), None, self.store.funnel(game)).await
    }
}

#[async_trait]
impl GameQueries for Memoised {
    async fn leaderboard(&self, board: &BoardPeriod, offset: u64, limit: u64) -> Result<LeaderboardPage, StoreError> {
        let k = board_key("leaderboard", board, format_args!("{offset}|{limit}"));
        self.answer(k, None, self.store.leaderboard(board, offset, limit)).await
    }

    async fn leaderboard_player(
        &self,
        board: &BoardPeriod,
        player: &PlayerId,
        neighbours: u64,
    ) -> Result<Option<PlayerStanding>, StoreError> {
        let k = board_key("standing", board, format_args!("{player}|{neighbours}"));
        self.answer(k, None, self.store.leaderboard_player(board, player, neighbours)).await
    }

    async fn leaderboard_scores(&self, board: &BoardPeriod) -> Result<Vec<(String, i64)>, StoreError> {
        // What a cold cache is rebuilt from: read once, never worth keeping.
        self.store.leaderboard_scores(board).await
    }

    async fn retention(&self, game: &GameId, range: DateRange) -> Result<Vec<RetentionCohort>, StoreError> {
        let k = key("retention", game, format_args!("{}|{}", range.from(), range.to()));
        self.answer(k, None, self.store.retention(game, range)).await
    }

    async fn new_returning(&self, game: &GameId, range: DateRange) -> Result<Vec<NewReturningDay>, StoreError> {
        let k = key("new_returning", game, format_args!("{}|{}", range.from(), range.to()));
        self.answer(k, None, self.store.new_returning(game, range)).await
    }

    async fn monetisation(&self, game: &GameId, range: DateRange) -> Result<Monetisation, StoreError> {
        let k = key("monetisation", game, format_args!("{}|{}", range.from(), range.to()));
        self.answer(k, None, self.store.monetisation(game, range)).await
    }
}

#[async_trait]
impl RecommendationQueries for Memoised {
    async fn recommendations(
        &self,
        game: &GameId,
        player: &PlayerId,
        limit: usize,
        half_life_days: f64,
        now: DateTime<Utc>,
    ) -> Result<RecommendationList, StoreError> {
        let k = key("recommendations", game, format_args!("{player}|{limit}|{}", half_life_days.to_bits()));
        self.answer(k, Some(LIST_MAX_AGE), self.store.recommendations(game, player, limit, half_life_days, now)).await
    }
}
