//! [`CachedGameQueries`]: leaderboards read from Redis sorted sets, the database staying the
//! source of truth.
//!
//! One sorted set per board and period, `lb:{<game>:<board>:<period>:<start>}` (member =
//! player id, score = best score), and a marker `lbok:{…}` that says the set is complete; the
//! braces are literal: both keys are one hash tag, so the rebuild's MULTI and every read
//! pipeline (marker + set) stay in one slot of a Redis Cluster.
//! A read without the marker (a cold cache, an expired marker) rebuilds the set from the
//! store (`leaderboard_scores`) in one MULTI (DEL, ZADD, marker) and answers from the store;
//! reads with the marker answer from Redis alone: a page is one ZRANGE … REV, ranks one
//! ZCOUNT per distinct score, a player's standing ZSCORE + ZREVRANK. Any cache failure
//! answers from the store.
//!
//! ## Staleness and erasure
//! The marker lives `recent_query_ttl` (default 5 s), so a new score shows within that
//! bound (the projections do not write to Redis). [`CachedGameQueries::invalidate_player`]
//! deletes every board of the player's game (`lb:{<game>:` and `lbok:{<game>:` prefixes), so
//! the next read rebuilds from the store, which no longer has the player; a rebuild that
//! read the store just before the erasure can put the player back for at most that TTL.
//!
//! Ties: ZRANGE … REV lists equal scores by member in descending byte order, which is the
//! stores' order too; ranks are competition ranks, so they do not depend on tie order.
//! Scores are within ±1e15, exact as Redis doubles.

use crate::cache::{CacheError, RedisCache};
use async_trait::async_trait;
use gm_ports::StoreError;
use gm_projections::leaderboard::{BoardPeriod, LeaderboardEntry, LeaderboardPage, PlayerStanding};
use gm_projections::model::DateRange;
use gm_projections::retention::{Monetisation, NewReturningDay, RetentionCohort};
use gm_projections::GameQueries;
use gm_schemas::{GameId, PlayerId};
use std::collections::BTreeMap;

/// Members per ZADD when a set is rebuilt.
const ZADD_CHUNK: usize = 1_000;

/// Key of a board's sorted set (relative to `key_prefix`): `lb:{<game>:<board>:<period>:<start>}`.
pub fn board_key(b: &BoardPeriod) -> String {
    format!("lb:{}", board_tag(b))
}

/// Key of the marker saying a board's set is complete: `lbok:` and the set's hash tag.
pub fn board_marker_key(b: &BoardPeriod) -> String {
    format!("lbok:{}", board_tag(b))
}

/// `{<game>:<board>:<period>:<start>}`: the hash tag of a board's set and marker (no id
/// contains a brace).
fn board_tag(b: &BoardPeriod) -> String {
    format!("{{{}:{}:{}:{}}}", b.game_id, b.board, b.period, b.start)
}

/// The start of every board key of `game`: `lb:{<game>:` (sets) and `lbok:{<game>:` (markers).
fn board_prefixes(game: &GameId) -> [String; 2] {
    [format!("lb:{{{game}:"), format!("lbok:{{{game}:")]
}

/// Key of a cached range query: `q:<kind>:<game>:<from>:<to>` (as [`crate::query_key`]).
pub fn range_key(kind: &str, game: &GameId, range: DateRange) -> String {
    format!("q:{kind}:{game}:{}:{}", range.from(), range.to())
}

/// Leaderboards from Redis sorted sets; retention, new vs returning and monetisation
/// read through JSON keys with the TTLs of the other range queries (see [`crate::queries`]).
pub struct CachedGameQueries<Q> {
    inner: Q,
    cache: RedisCache,
}

impl<Q: GameQueries> CachedGameQueries<Q> {
    pub fn new(inner: Q, cache: RedisCache) -> Self {
        Self { inner, cache }
    }

    pub fn inner(&self) -> &Q {
        &self.inner
    }

    /// Drops every cached board of `game` (erasure). `Err`: Redis did not confirm; retry.
    pub async fn invalidate_player(&self, game: &GameId, _player: &PlayerId) -> Result<u64, CacheError> {
        let [sets, markers] = board_prefixes(game);
        Ok(self.cache.delete_prefix(&sets).await? + self.cache.delete_prefix(&markers).await?)
    }

    /// A range query's answer from Redis, or from the store (then written back in the
    /// background); the TTL is short while the range can still change.
    async fn read_through<T, F>(&self, key: String, range: DateRange, load: F) -> Result<T, StoreError>
    where
        T: serde::Serialize + serde::de::DeserializeOwned,
        F: std::future::Future<Output = Result<T, StoreError>>,
    {
        let cfg = self.cache.config();
        let today = chrono::Utc::now().date_naive();
        let ttl = match today.pred_opt() {
            Some(yesterday) if range.to() < yesterday => cfg.query_ttl(),
            _ => cfg.recent_query_ttl(),
        };
        if ttl.is_zero() {
            return load.await;
        }
        if let Ok(Some(bytes)) = self.cache.get(&key).await {
            if let Ok(v) = serde_json::from_slice(&bytes) {
                return Ok(v);
            }
        }
        let value = load.await?;
        if let Ok(bytes) = serde_json::to_vec(&value) {
            let cache = self.cache.clone();
            tokio::spawn(async move {
                let _ = cache.set_many(&[(key, bytes)], ttl).await;
            });
        }
        Ok(value)
    }

    /// Loads the board from the store into its sorted set and sets the marker.
    async fn rebuild(&self, b: &BoardPeriod) -> Result<(), StoreError> {
        let rows = self.inner.leaderboard_scores(b).await?;
        let ttl = self.cache.config().recent_query_ttl().as_millis().max(1) as u64;
        let key = self.cache.full_key(&board_key(b));
        let mut pipe = redis::pipe();
        pipe.atomic();
        pipe.cmd("DEL").arg(&key).ignore();
        for chunk in rows.chunks(ZADD_CHUNK) {
            let mut zadd = redis::cmd("ZADD");
            zadd.arg(&key);
            for (player, score) in chunk {
                zadd.arg(*score as f64).arg(player);
            }
            pipe.add_command(zadd).ignore();
        }
        // The set outlives its marker a little, so a reader that saw the marker finds it.
        pipe.cmd("PEXPIRE").arg(&key).arg(ttl * 2 + 1_000).ignore();
        pipe.cmd("SET").arg(self.cache.full_key(&board_marker_key(b))).arg(1).arg("PX").arg(ttl).ignore();
        let _ = self.cache.query_pipe::<()>("leaderboard.rebuild", pipe).await;
        Ok(())
    }

    /// Ranks of `rows` (one ZCOUNT per distinct score).
    async fn ranked(&self, key: &str, rows: Vec<(String, f64)>) -> Result<Vec<LeaderboardEntry>, CacheError> {
        let distinct: Vec<i64> =
            rows.iter().map(|(_, s)| *s as i64).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
        let mut pipe = redis::pipe();
        for s in &distinct {
            pipe.cmd("ZCOUNT").arg(key).arg(format!("({s}")).arg("+inf");
        }
        let counts: Vec<u64> =
            if distinct.is_empty() { Vec::new() } else { self.cache.query_pipe("leaderboard.ranks", pipe).await? };
        let higher: BTreeMap<i64, u64> = distinct.into_iter().zip(counts).collect();
        Ok(rows
            .into_iter()
            .map(|(player_id, s)| {
                let score = s as i64;
                LeaderboardEntry { rank: higher.get(&score).copied().unwrap_or(0) + 1, player_id, score }
            })
            .collect())
    }

    async fn page_from_cache(
        &self,
        b: &BoardPeriod,
        offset: u64,
        limit: u64,
    ) -> Result<Option<LeaderboardPage>, CacheError> {
        let key = self.cache.full_key(&board_key(b));
        let mut pipe = redis::pipe();
        pipe.cmd("EXISTS").arg(self.cache.full_key(&board_marker_key(b)));
        pipe.cmd("ZCARD").arg(&key);
        pipe.cmd("ZRANGE").arg(&key).arg(offset).arg(offset + limit - 1).arg("REV").arg("WITHSCORES");
        let (warm, total, rows): (bool, u64, Vec<(String, f64)>) =
            self.cache.query_pipe("leaderboard.page", pipe).await?;
        if !warm {
            return Ok(None);
        }
        Ok(Some(LeaderboardPage { total, entries: self.ranked(&key, rows).await? }))
    }

    async fn standing_from_cache(
        &self,
        b: &BoardPeriod,
        player: &PlayerId,
        neighbours: u64,
    ) -> Result<Option<Option<PlayerStanding>>, CacheError> {
        let key = self.cache.full_key(&board_key(b));
        let mut pipe = redis::pipe();
        pipe.cmd("EXISTS").arg(self.cache.full_key(&board_marker_key(b)));
        pipe.cmd("ZSCORE").arg(&key).arg(player.as_str());
        pipe.cmd("ZREVRANK").arg(&key).arg(player.as_str());
        pipe.cmd("ZCARD").arg(&key);
        let (warm, score, position, total): (bool, Option<f64>, Option<u64>, u64) =
            self.cache.query_pipe("leaderboard.standing", pipe).await?;
        if !warm {
            return Ok(None);
        }
        let (Some(score), Some(position)) = (score, position) else { return Ok(Some(None)) };
        let from = position.saturating_sub(neighbours);
        let mut pipe = redis::pipe();
        pipe.cmd("ZRANGE").arg(&key).arg(from).arg(position + neighbours).arg("REV").arg("WITHSCORES");
        let (rows,): (Vec<(String, f64)>,) = self.cache.query_pipe("leaderboard.around", pipe).await?;
        let around = self.ranked(&key, rows).await?;
        let entry = around.iter().find(|e| e.player_id == player.as_str()).cloned().unwrap_or(LeaderboardEntry {
            rank: 0,
            player_id: player.to_string(),
            score: score as i64,
        });
        Ok(Some(Some(PlayerStanding { total, entry, around })))
    }
}

#[async_trait]
impl<Q: GameQueries> GameQueries for CachedGameQueries<Q> {
    async fn leaderboard(&self, b: &BoardPeriod, offset: u64, limit: u64) -> Result<LeaderboardPage, StoreError> {
        if let Ok(Some(page)) = self.page_from_cache(b, offset, limit.max(1)).await {
            return Ok(page);
        }
        self.rebuild(b).await?;
        self.inner.leaderboard(b, offset, limit).await
    }

    async fn leaderboard_player(
        &self,
        b: &BoardPeriod,
        player: &PlayerId,
        neighbours: u64,
    ) -> Result<Option<PlayerStanding>, StoreError> {
        if let Ok(Some(standing)) = self.standing_from_cache(b, player, neighbours).await {
            return Ok(standing);
        }
        self.rebuild(b).await?;
        self.inner.leaderboard_player(b, player, neighbours).await
    }

    async fn leaderboard_scores(&self, b: &BoardPeriod) -> Result<Vec<(String, i64)>, StoreError> {
        self.inner.leaderboard_scores(b).await
    }

    async fn retention(&self, game: &GameId, range: DateRange) -> Result<Vec<RetentionCohort>, StoreError> {
        self.read_through(range_key("retention", game, range), range, self.inner.retention(game, range)).await
    }

    async fn new_returning(&self, game: &GameId, range: DateRange) -> Result<Vec<NewReturningDay>, StoreError> {
        self.read_through(range_key("new_returning", game, range), range, self.inner.new_returning(game, range)).await
    }

    async fn monetisation(&self, game: &GameId, range: DateRange) -> Result<Monetisation, StoreError> {
        self.read_through(range_key("monetisation", game, range), range, self.inner.monetisation(game, range)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gm_projections::leaderboard::Period;

    #[test]
    fn a_boards_set_and_marker_share_a_tag_and_the_games_prefixes() {
        let b = BoardPeriod {
            game_id: GameId::parse("space-race").unwrap(),
            board: "weekly:high".into(),
            period: Period::Daily,
            start: "2024-03-11".parse().unwrap(),
        };
        assert_eq!(board_key(&b), format!("lb:{{space-race:weekly:high:{}:2024-03-11}}", b.period));
        assert_eq!(board_marker_key(&b), format!("lbok:{{space-race:weekly:high:{}:2024-03-11}}", b.period));
        let slot = |k: &str| crate::cache::key_slot(format!("gm:{k}").as_bytes());
        assert_eq!(slot(&board_key(&b)), slot(&board_marker_key(&b)));
        let [sets, markers] = board_prefixes(&b.game_id);
        assert!(board_key(&b).starts_with(&sets) && board_marker_key(&b).starts_with(&markers));
        // Another game whose id starts like this one is not under its prefixes.
        let other = BoardPeriod { game_id: GameId::parse("space-race-2").unwrap(), ..b.clone() };
        assert!(!board_key(&other).starts_with(&sets) && !board_marker_key(&other).starts_with(&markers));
    }
}
