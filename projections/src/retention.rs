//! Retention and monetisation over a range of days: first-seen cohorts with D1/D7/D30
//! retention, new vs returning players per day, and revenue per active and paying player
//! over the whole range.
//!
//! A player's cohort is the UTC day of their earliest event (late events with an earlier
//! time move it back, so the figure does not depend on arrival order). A player is
//! retained on day N when they were active on exactly cohort day + N (classic N-day
//! retention). Days after the last event the store has seen count as not retained yet.

use crate::model::ratio;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The days after the cohort day that retention is reported for.
pub const RETENTION_DAYS: [i64; 3] = [1, 7, 30];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RetentionCohort {
    /// The cohort: players first seen on this UTC day.
    pub day: NaiveDate,
    pub players: u64,
    /// Of them, active on day + 1, + 7, + 30.
    pub d1: u64,
    pub d7: u64,
    pub d30: u64,
    pub d1_rate: f64,
    pub d7_rate: f64,
    pub d30_rate: f64,
}

impl RetentionCohort {
    pub fn new(day: NaiveDate, players: u64, d1: u64, d7: u64, d30: u64) -> Self {
        let rate = |n: u64| ratio(n as f64, players as f64);
        Self { day, players, d1, d7, d30, d1_rate: rate(d1), d7_rate: rate(d7), d30_rate: rate(d30) }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NewReturningDay {
    pub day: NaiveDate,
    /// Distinct players active that day.
    pub active: u64,
    /// Active players first seen that day.
    pub new_players: u64,
    /// Active players first seen on an earlier day.
    pub returning_players: u64,
}

/// Revenue in one currency over a range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CurrencyRevenue {
    pub currency: String,
    pub revenue_minor: i64,
    pub purchases: u64,
    /// revenue / the sum over the range's days of each day's active players.
    pub arpdau_minor: f64,
    /// revenue / distinct players who paid in the range (any currency).
    pub arppu_minor: f64,
}

/// Monetisation over a whole range of days.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Monetisation {
    /// Distinct players active in the range.
    pub active_players: u64,
    /// Sum over the days of each day's distinct active players.
    pub active_player_days: u64,
    /// Distinct players who paid in the range.
    pub payers: u64,
    /// payers / active_players.
    pub conversion: f64,
    /// One entry per currency with revenue, by currency code.
    pub currencies: Vec<CurrencyRevenue>,
}

impl Monetisation {
    /// `revenue`: (currency, revenue_minor, purchases), in currency order.
    pub fn new(active_players: u64, active_player_days: u64, payers: u64, revenue: Vec<(String, i64, u64)>) -> Self {
        Self {
            active_players,
            active_player_days,
            payers,
            conversion: ratio(payers as f64, active_players as f64),
            currencies: revenue
                .into_iter()
                .map(|(currency, revenue_minor, purchases)| CurrencyRevenue {
                    currency,
                    revenue_minor,
                    purchases,
                    arpdau_minor: ratio(revenue_minor as f64, active_player_days as f64),
                    arppu_minor: ratio(revenue_minor as f64, payers as f64),
                })
                .collect(),
        }
    }
}
