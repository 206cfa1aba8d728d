//! The event ids a player's actor remembers for deduplication: every id received in the last
//! `window` (7 days by default), at most `max_ids` of them.
//!
//! Ids are kept in buckets by the hour (UTC) of their `received_at`, the gateway's clock when
//! the event arrived, as stored in the log: deduplication is a function of the log alone, so
//! a replay (or a restart from a snapshot) decides exactly as the first run did. A bucket is
//! dropped once the newest hour seen is more than the window past it, so an id is
//! remembered for at least `window` (and less than `window` + 1 hour) after it was received,
//! whatever came between — unless the player sends more than `max_ids` events within the
//! window, when the oldest ids are forgotten first.
//!
//! Memory: 16 bytes per id (the UUID, nothing else), plus 32 bytes per hour bucket (at most
//! 169 for 7 days) and 32 for the deque: at most `16 × max_ids + 5.4 KiB` per player (133 KiB
//! at the default 8,192), about 11 KiB for a player with 100 events a day. In a snapshot the
//! ids of a bucket are one base64 string of the packed UUIDs (21.3 bytes per id).

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use uuid::Uuid;

/// How long and how many ids are remembered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DedupPolicy {
    pub window: Duration,
    pub max_ids: usize,
}

impl Default for DedupPolicy {
    /// `actors.dedup_window_hours` and `actors.dedup_max_ids` of config/default.toml.
    fn default() -> Self {
        crate::ActorsConfig::default().policy.dedup
    }
}

/// The ids received in one UTC hour (in arrival order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdBucket {
    /// Hours since the Unix epoch of the ids' `received_at`.
    pub hour: i64,
    #[serde(with = "packed")]
    pub ids: Vec<Uuid>,
}

/// Recently received event ids, oldest hour first.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RecentIds {
    buckets: VecDeque<IdBucket>,
}

fn hour_of(t: DateTime<Utc>) -> i64 {
    t.timestamp().div_euclid(3600)
}

impl RecentIds {
    /// Whether `id` was received (and remembered) before.
    pub fn contains(&self, id: &Uuid) -> bool {
        self.buckets.iter().any(|b| b.ids.contains(id))
    }

    /// How many ids are remembered.
    pub fn len(&self) -> usize {
        self.buckets.iter().map(|b| b.ids.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.iter().all(|b| b.ids.is_empty())
    }

    pub fn buckets(&self) -> impl Iterator<Item = &IdBucket> {
        self.buckets.iter()
    }

    /// Remembers `id`, received at `received_at`, and forgets what the policy lets go. A pure
    /// function of the ids and times remembered so far: no clock is read.
    pub fn remember(&mut self, id: Uuid, received_at: DateTime<Utc>, policy: &DedupPolicy) {
        self.insert(id, hour_of(received_at));
        self.prune(policy);
    }

    fn insert(&mut self, id: Uuid, hour: i64) {
        // Nearly always the newest bucket; a gateway with a slower clock may land an id an
        // hour back.
        match self.buckets.iter().rposition(|b| b.hour <= hour) {
            Some(i) if self.buckets[i].hour == hour => self.buckets[i].ids.push(id),
            Some(i) => self.buckets.insert(i + 1, IdBucket { hour, ids: vec![id] }),
            None => self.buckets.push_front(IdBucket { hour, ids: vec![id] }),
        }
    }

    fn prune(&mut self, policy: &DedupPolicy) {
        let Some(newest) = self.buckets.back().map(|b| b.hour) else { return };
        // Whole hours of the window, rounded up: an id is kept at least `window`.
        let window_hours = (policy.window.num_seconds() + 3599).div_euclid(3600);
        while self.buckets.front().is_some_and(|b| b.hour < newest - window_hours) {
            self.buckets.pop_front();
        }
        let mut excess = self.len().saturating_sub(policy.max_ids);
        while excess > 0 {
            let Some(oldest) = self.buckets.front_mut() else { break };
            if oldest.ids.len() <= excess {
                excess -= oldest.ids.len();
                self.buckets.pop_front();
            } else {
                oldest.ids.drain(..excess);
                excess = 0;
            }
        }
    }

    /// A set holding `ids` as received in `hour` (snapshot upcasting).
    pub fn from_hour(hour: i64, ids: Vec<Uuid>) -> Self {
        if ids.is_empty() {
            return Self::default();
        }
        Self { buckets: VecDeque::from([IdBucket { hour, ids }]) }
    }
}

/// `Vec<Uuid>` as one base64 string of the concatenated 16-byte ids.
mod packed {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};
    use uuid::Uuid;

    const ENGINE: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD_NO_PAD;

    pub fn serialize<S: Serializer>(ids: &[Uuid], s: S) -> Result<S::Ok, S::Error> {
        let mut bytes = Vec::with_capacity(ids.len() * 16);
        for id in ids {
            bytes.extend_from_slice(id.as_bytes());
        }
        s.serialize_str(&ENGINE.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Uuid>, D::Error> {
        use serde::de::Error;
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let bytes = ENGINE.decode(text.as_bytes()).map_err(D::Error::custom)?;
        if bytes.len() % 16 != 0 {
            return Err(D::Error::custom(format!("{} bytes of packed ids is not a multiple of 16", bytes.len())));
        }
        Ok(bytes
            .chunks_exact(16)
            .map(|c| Uuid::from_bytes(c.try_into().expect("chunks_exact(16) gives 16 bytes")))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(hours: i64, minutes: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 3, 10, 0, 0, 0).unwrap() + Duration::hours(hours) + Duration::minutes(minutes)
    }
    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }
    const POLICY: DedupPolicy = DedupPolicy { window: Duration::days(7), max_ids: 100_000 };

    #[test]
    fn an_id_is_remembered_for_the_whole_window_whatever_came_between() {
        let mut ids = RecentIds::default();
        ids.remember(id(0), t(0, 30), &POLICY);
        for n in 1..5_000 {
            // 5,000 newer events over 7 days minus a minute.
            ids.remember(id(n), t(0, 30) + Duration::seconds(n as i64 * 120), &POLICY);
        }
        ids.remember(id(9_999), t(0, 29) + Duration::days(7), &POLICY);
        assert!(ids.contains(&id(0)), "received less than 7 days before the newest id");
    }

    #[test]
    fn an_id_is_forgotten_less_than_an_hour_after_the_window() {
        let mut ids = RecentIds::default();
        let r = t(0, 30);
        ids.remember(id(0), r, &POLICY);
        ids.remember(id(1), r + Duration::days(7) - Duration::minutes(1), &POLICY);
        assert!(ids.contains(&id(0)), "within the window");
        ids.remember(id(2), r + Duration::days(7) + Duration::minutes(29), &POLICY);
        assert!(ids.contains(&id(0)), "past the window, still in a kept hour bucket");
        ids.remember(id(3), r + Duration::days(7) + Duration::minutes(61), &POLICY);
        assert!(!ids.contains(&id(0)), "more than window + 1 h after it");
        assert!((1..4).all(|n| ids.contains(&id(n))));
    }

    #[test]
    fn an_old_received_time_never_prunes_newer_ids() {
        let mut ids = RecentIds::default();
        ids.remember(id(1), t(200, 0), &POLICY);
        // A dead letter re-driven days later carries its original received_at.
        ids.remember(id(0), t(0, 0), &POLICY);
        assert!(ids.contains(&id(1)));
        assert!(!ids.contains(&id(0)), "older than the window behind the newest: not kept");
        ids.remember(id(2), t(199, 0), &POLICY);
        let hours: Vec<i64> = ids.buckets().map(|b| b.hour - hour_of(t(0, 0))).collect();
        assert_eq!(hours, vec![199, 200], "buckets stay in hour order");
    }

    #[test]
    fn the_cap_forgets_the_oldest_ids_first() {
        let policy = DedupPolicy { window: Duration::days(7), max_ids: 3 };
        let mut ids = RecentIds::default();
        for n in 0..5 {
            ids.remember(id(n), t(n as i64, 0), &policy);
        }
        assert_eq!(ids.len(), 3);
        assert!(!ids.contains(&id(0)) && !ids.contains(&id(1)));
        assert!((2..5).all(|n| ids.contains(&id(n))));
    }

    #[test]
    fn snapshots_pack_the_ids_and_read_back_the_same() {
        let mut ids = RecentIds::default();
        for n in 0..100 {
            ids.remember(Uuid::new_v4(), t(n / 50, n % 50), &POLICY);
        }
        let json = serde_json::to_string(&ids).unwrap();
        assert_eq!(ids.buckets().count(), 2);
        assert!(json.len() < 100 * 22 + 2 * 30, "packed, not one quoted UUID per id: {json}");
        assert_eq!(serde_json::from_str::<RecentIds>(&json).unwrap(), ids);
        assert!(serde_json::from_str::<RecentIds>(r#"[{"hour":1,"ids":"AAAA"}]"#).is_err());
    }
}
