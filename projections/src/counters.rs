//! Per-(game, day) counters kept next to the player-day rows, so that the analytics queries
//! read O(days in range) rows whatever the number of players. Pure: the stores read a
//! touched player's stored days near the batch's days (the *neighbourhood*), call these
//! functions, and upsert the folded deltas in the batch's transaction.
//!
//! **Gaps** (`daily_activity`'s `player_days`, `revenue`'s `payer_days`): each stored
//! player-day is counted once, under its day and its *gap*, the days since the player's
//! previous day ([`GAP_FIRST`] when there is none, [`GAP_MAX`] for that many or more). A
//! player-day (d, g) is its player's first day in every window `[a, b]` with
//! `a <= d <= b` and `g == GAP_FIRST || g > d - a`, so the distinct players of any window of
//! at most [`GAP_MAX`] days is a sum over its days' gap counts ([`distinct_in`]): DAU, WAU,
//! MAU, and the distinct players and payers of a monetisation range, exactly. A new day moves
//! its successor's gap, so the neighbourhood is the stored days in the span of the player's
//! new days plus the nearest stored day on either side.
//!
//! **Retention** (`cohort_players` / `cohort_days`): per day, the active players, the players
//! whose first day it is (the cohort, also the day's new players), and how many of the cohort
//! were active on day +1, +7, +30. A late event can move a player's first day earlier: the
//! player leaves the old cohort (with its returns) and joins the new one. The neighbourhood is
//! the player's first day and their stored days among the new days and both cohorts' +1/+7/+30.

use crate::model::{ActiveUsersDay, DateRange, PlayerDay};
use crate::retention::RETENTION_DAYS;
use chrono::NaiveDate;
use gm_schemas::{GameId, PlayerId};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound::{Excluded, Unbounded};

/// The gap of a player's first day (no earlier day).
pub const GAP_FIRST: i32 = 0;
/// Gaps of this many days or more are stored as this: no window is longer.
pub const GAP_MAX: i32 = DateRange::MAX_DAYS as i32;

/// The gap code of `day` after `prev`.
pub fn gap(prev: Option<NaiveDate>, day: NaiveDate) -> i32 {
    match prev {
        None => GAP_FIRST,
        Some(p) => i32::try_from((day - p).num_days()).unwrap_or(GAP_MAX).clamp(1, GAP_MAX),
    }
}

/// Whether a player-day (`day`, `gap`) is its player's first day in a window starting on
/// `from` (and containing `day`).
pub fn first_in_window(day: NaiveDate, gap: i32, from: NaiveDate) -> bool {
    gap == GAP_FIRST || i64::from(gap) > (day - from).num_days()
}

/// Each touched player's new days of a batch, by (game, player).
pub fn touched(days: &[PlayerDay]) -> BTreeMap<(GameId, PlayerId), BTreeSet<NaiveDate>> {
    let mut out: BTreeMap<(GameId, PlayerId), BTreeSet<NaiveDate>> = BTreeMap::new();
    for d in days {
        out.entry((d.game_id.clone(), d.player_id.clone())).or_default().insert(d.day);
    }
    out
}

/// The span of days whose stored days a player's neighbourhood must hold in full
/// (`new_days` is never empty in [`touched`]'s output).
pub fn span(new_days: &BTreeSet<NaiveDate>) -> (NaiveDate, NaiveDate) {
    let lo = new_days.first().copied().unwrap_or_default();
    (lo, new_days.last().copied().unwrap_or(lo))
}

/// The (day, gap, ±players) changes of one player's new days. `stored`: the player's stored
/// days within [`span`] of `new_days`, and the nearest stored day before and after it (more
/// does no harm). Days already stored change nothing.
pub fn gap_deltas(stored: &BTreeSet<NaiveDate>, new_days: &BTreeSet<NaiveDate>) -> Vec<(NaiveDate, i32, i64)> {
    let mut known = stored.clone();
    let mut out = Vec::new();
    for &day in new_days {
        if !known.insert(day) {
            continue;
        }
        let prev = known.range(..day).next_back().copied();
        out.push((day, gap(prev, day), 1));
        if let Some(next) = known.range((Excluded(day), Unbounded)).next().copied() {
            out.push((next, gap(prev, next), -1));
            out.push((next, gap(Some(day), next), 1));
        }
    }
    out
}

/// The gap-count changes of a batch, folded to one per (game, day, gap) row, zeros dropped,
/// in key order (so concurrent writers lock rows in the same order).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GapDeltas(BTreeMap<(GameId, NaiveDate, i32), i64>);

impl GapDeltas {
    pub fn add(&mut self, game: &GameId, deltas: Vec<(NaiveDate, i32, i64)>) {
        for (day, gap, n) in deltas {
            *self.0.entry((game.clone(), day, gap)).or_default() += n;
        }
    }

    /// The non-zero changes, in key order.
    pub fn rows(&self) -> impl Iterator<Item = (&GameId, NaiveDate, i32, i64)> {
        self.0.iter().filter(|(_, n)| **n != 0).map(|((g, d, gap), n)| (g, *d, *gap, *n))
    }

    pub fn is_empty(&self) -> bool {
        self.rows().next().is_none()
    }
}

/// Distinct players of the window `[from, to]` from its days' gap counts: `rows` are
/// (day, gap, players) with days in the window (others are ignored).
pub fn distinct_in(from: NaiveDate, to: NaiveDate, rows: &[(NaiveDate, i32, u64)]) -> u64 {
    rows.iter().filter(|(d, g, _)| *d >= from && *d <= to && first_in_window(*d, *g, from)).map(|(_, _, n)| n).sum()
}

/// The first day whose gap counts [`active_users`] reads for `range` (30-day windows).
pub fn active_users_from(range: DateRange) -> NaiveDate {
    range.from() - chrono::Duration::days(29)
}

/// DAU, WAU (7 days) and MAU (30 days ending on the day) of each day of `range`, from the gap
/// counts (day, gap, players) of the days from [`active_users_from`] to the range's end.
pub fn active_users(range: DateRange, rows: &[(NaiveDate, i32, u64)]) -> Vec<ActiveUsersDay> {
    let mut by_day: BTreeMap<NaiveDate, Vec<(i32, u64)>> = BTreeMap::new();
    for (d, g, n) in rows {
        by_day.entry(*d).or_default().push((*g, *n));
    }
    let window = |to: NaiveDate, days: i64| -> u64 {
        let from = to - chrono::Duration::days(days - 1);
        by_day
            .range(from..=to)
            .flat_map(|(d, gs)| gs.iter().filter(move |(g, _)| first_in_window(*d, *g, from)).map(|(_, n)| *n))
            .sum()
    };
    range.days().map(|d| ActiveUsersDay::new(d, window(d, 1), window(d, 7), window(d, 30))).collect()
}

/// Changes of one day's retention counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RetentionDelta {
    /// Distinct players active that day.
    pub active: i64,
    /// Players whose first day it is (the cohort; the day's new players).
    pub cohort: i64,
    /// Of the cohort, active on day + 1, + 7, + 30 ([`RETENTION_DAYS`]).
    pub returned: [i64; 3],
}

impl RetentionDelta {
    fn add(&mut self, other: &RetentionDelta) {
        self.active += other.active;
        self.cohort += other.cohort;
        for (a, b) in self.returned.iter_mut().zip(other.returned) {
            *a += b;
        }
    }

    fn is_zero(&self) -> bool {
        *self == RetentionDelta::default()
    }
}

/// The days whose stored state [`retention_deltas`] needs besides the span of the new days:
/// +1/+7/+30 of the stored first day and of the first day after the batch.
pub fn retention_probes(first: Option<NaiveDate>, new_days: &BTreeSet<NaiveDate>) -> Vec<NaiveDate> {
    let (lo, _) = span(new_days);
    let after = first.map_or(lo, |f| f.min(lo));
    first
        .into_iter()
        .chain([after])
        .flat_map(|f| RETENTION_DAYS.iter().map(move |n| f + chrono::Duration::days(*n)))
        .collect()
}

/// The per-day retention changes of one player's new days. `first`: the player's stored
/// first day; `stored`: their stored days among `new_days` and [`retention_probes`].
pub fn retention_deltas(
    first: Option<NaiveDate>,
    stored: &BTreeSet<NaiveDate>,
    new_days: &BTreeSet<NaiveDate>,
) -> Vec<(NaiveDate, RetentionDelta)> {
    let fresh: BTreeSet<NaiveDate> = new_days.difference(stored).copied().collect();
    let Some(&lo) = fresh.first() else { return Vec::new() };
    let mut out: Vec<(NaiveDate, RetentionDelta)> =
        fresh.iter().map(|d| (*d, RetentionDelta { active: 1, ..Default::default() })).collect();
    let plus = |f: NaiveDate, i: usize| f + chrono::Duration::days(RETENTION_DAYS[i]);
    let after = first.map_or(lo, |f| f.min(lo));
    if first == Some(after) {
        let mut d = RetentionDelta::default();
        for i in 0..RETENTION_DAYS.len() {
            d.returned[i] = i64::from(fresh.contains(&plus(after, i)));
        }
        out.push((after, d));
    } else {
        if let Some(old) = first {
            let mut d = RetentionDelta { cohort: -1, ..Default::default() };
            for i in 0..RETENTION_DAYS.len() {
                d.returned[i] = -i64::from(stored.contains(&plus(old, i)));
            }
            out.push((old, d));
        }
        let mut d = RetentionDelta { cohort: 1, ..Default::default() };
        for i in 0..RETENTION_DAYS.len() {
            let day = plus(after, i);
            d.returned[i] = i64::from(stored.contains(&day) || fresh.contains(&day));
        }
        out.push((after, d));
    }
    out
}

/// The retention changes of a batch, one per (game, day), zeros dropped, in key order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RetentionDeltas(BTreeMap<(GameId, NaiveDate), RetentionDelta>);

impl RetentionDeltas {
    pub fn add(&mut self, game: &GameId, deltas: Vec<(NaiveDate, RetentionDelta)>) {
        for (day, d) in deltas {
            self.0.entry((game.clone(), day)).or_default().add(&d);
        }
    }

    pub fn rows(&self) -> impl Iterator<Item = (&GameId, NaiveDate, &RetentionDelta)> {
        self.0.iter().filter(|(_, d)| !d.is_zero()).map(|((g, day), d)| (g, *day, d))
    }

    pub fn is_empty(&self) -> bool {
        self.rows().next().is_none()
    }
}

#[cfg(test)]
mod tests;
