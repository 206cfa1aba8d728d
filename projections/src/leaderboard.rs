//! Leaderboards: the best score of each player per game, board and UTC period (day, ISO
//! week starting Monday, all time). A period is chosen by the event's (skew-corrected)
//! time, so a board really starts empty at 00:00 UTC (daily) and Monday 00:00 UTC (weekly).
//!
//! Ranking is competition ranking ("1224"): a player's rank is 1 + the number of players
//! with a strictly higher score, so ties share a rank whatever store answers. Within a tie,
//! lists are ordered by player id descending — the order of a Redis sorted set read in
//! reverse — so the database and the cache list the same page.

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use gm_schemas::{GameId, PlayerId};
use serde::{Deserialize, Serialize};
use std::fmt;
use utoipa::ToSchema;

/// A leaderboard period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    Daily,
    Weekly,
    AllTime,
}

/// The start of the all-time period (a fixed day, so every period has a start day).
pub const ALL_TIME_START: NaiveDate = match NaiveDate::from_ymd_opt(1970, 1, 1) {
    Some(d) => d,
    None => panic!("valid date"),
};

impl Period {
    pub const ALL: [Period; 3] = [Self::Daily, Self::Weekly, Self::AllTime];

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Daily => "daily",
            Self::Weekly => "weekly",
            Self::AllTime => "all_time",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// The first UTC day of the period that contains `day`.
    pub fn start(&self, day: NaiveDate) -> NaiveDate {
        match self {
            Self::Daily => day,
            Self::Weekly => day - Duration::days(i64::from(day.weekday().num_days_from_monday())),
            Self::AllTime => ALL_TIME_START,
        }
    }

    /// The first UTC day of the period that contains the instant `t`.
    pub fn start_of(&self, t: DateTime<Utc>) -> NaiveDate {
        self.start(t.date_naive())
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One board of one period: what a sorted set in the cache holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BoardPeriod {
    pub game_id: GameId,
    pub board: String,
    pub period: Period,
    pub start: NaiveDate,
}

/// A player's best score of a batch in one board and period (the store keeps the maximum).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScoreEntry {
    pub game_id: GameId,
    pub board: String,
    pub period: Period,
    pub period_start: NaiveDate,
    pub player_id: PlayerId,
    pub score: i64,
}

impl ScoreEntry {
    pub fn board_period(&self) -> BoardPeriod {
        BoardPeriod {
            game_id: self.game_id.clone(),
            board: self.board.clone(),
            period: self.period,
            start: self.period_start,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LeaderboardEntry {
    /// 1 + the number of players with a strictly higher score (ties share a rank).
    pub rank: u64,
    pub player_id: String,
    pub score: i64,
}

/// A page of a board, best first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LeaderboardPage {
    /// Players on the board in this period.
    pub total: u64,
    pub entries: Vec<LeaderboardEntry>,
}

/// A player's place on a board, with the players just above and below.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PlayerStanding {
    pub total: u64,
    pub entry: LeaderboardEntry,
    /// Up to `neighbours` players above and below, best first, the player included.
    pub around: Vec<LeaderboardEntry>,
}

/// Ranks rows (any order); `higher(score)` counts the players strictly above a score.
pub fn rank_list(rows: Vec<(String, i64)>, higher: impl Fn(i64) -> u64) -> Vec<LeaderboardEntry> {
    rows.into_iter().map(|(player_id, score)| LeaderboardEntry { rank: higher(score) + 1, player_id, score }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn periods_start_at_utc_midnight_and_monday() {
        // 2024-03-10 is a Sunday, 2024-03-11 a Monday.
        assert_eq!(Period::Daily.start(d("2024-03-10")), d("2024-03-10"));
        assert_eq!(Period::Weekly.start(d("2024-03-10")), d("2024-03-04"));
        assert_eq!(Period::Weekly.start(d("2024-03-11")), d("2024-03-11"));
        assert_eq!(Period::Weekly.start(d("2024-03-17")), d("2024-03-11"));
        assert_eq!(Period::AllTime.start(d("2024-03-17")), ALL_TIME_START);
        let before = "2024-03-10T23:59:59.999Z".parse::<DateTime<Utc>>().unwrap();
        let after = "2024-03-11T00:00:00Z".parse::<DateTime<Utc>>().unwrap();
        assert_ne!(Period::Daily.start_of(before), Period::Daily.start_of(after));
        assert_ne!(Period::Weekly.start_of(before), Period::Weekly.start_of(after));
        assert_eq!(Period::AllTime.start_of(before), Period::AllTime.start_of(after));
        for p in Period::ALL {
            assert_eq!(Period::parse(p.as_str()), Some(p));
        }
        assert_eq!(Period::parse("monthly"), None);
    }

    #[test]
    fn ties_share_a_rank() {
        let rows: Vec<(String, i64)> =
            [("a", 50), ("c", 40), ("b", 40), ("d", 10)].iter().map(|(p, s)| (p.to_string(), *s)).collect();
        let ranks: Vec<u64> = rank_list(rows, |s| [50, 40, 40, 10].iter().filter(|x| **x > s).count() as u64)
            .iter()
            .map(|e| e.rank)
            .collect();
        assert_eq!(ranks, vec![1, 2, 2, 4]);
    }
}
