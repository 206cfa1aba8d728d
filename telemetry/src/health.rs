//! What a consumer loop (the actors' or the projections') reports for `/health/ready`, and the
//! verdict drawn from it: assigned, polling, and moving forward where it has work.
//!
//! The loop reports; a watcher outside it judges with its own clock, so a loop stuck inside
//! a batch (a store that does not answer) is seen as stuck. "No progress" alone cannot tell a
//! stalled partition from an idle one (and a read_committed position can sit below the end
//! offset for good: transaction markers take offsets), so the verdict names the partitions
//! to [`Verdict::Check`] against the log, and the watcher reports back what it found.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Shared by the consumer loop (which reports) and the readiness watcher (which judges).
/// Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct ConsumerHealth {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    /// When the current consumer was created (none yet: not joined).
    joined: Option<Instant>,
    last_poll: Option<Instant>,
    partitions: BTreeMap<u32, Partition>,
    /// Set when every partition was revoked: a rebalance, not yet an outage.
    unassigned_since: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
struct Partition {
    /// The highest next offset to process reported (none until the loop knows it).
    next: Option<u64>,
    /// When it last moved forward, was assigned, or was found to have nothing to process.
    since: Instant,
}

/// The watcher's judgement of a consumer at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Ready,
    NotReady(String),
    /// No progress on these partitions (partition, next offset) for the limit: ready only if
    /// the log holds nothing at those offsets ([`ConsumerHealth::idle`]), stalled otherwise.
    Check(Vec<(u32, u64)>),
}

impl ConsumerHealth {
    pub fn new() -> Self {
        Self::default()
    }

    /// A new consumer joins the group: nothing is assigned yet.
    pub fn joined(&self, now: Instant) {
        let mut s = self.lock();
        *s = State { joined: Some(now), ..State::default() };
    }

    pub fn assigned(&self, partitions: &[u32], now: Instant) {
        let mut s = self.lock();
        for &p in partitions {
            s.partitions.insert(p, Partition { next: None, since: now });
        }
        s.unassigned_since = None;
    }

    pub fn revoked(&self, partitions: &[u32], now: Instant) {
        let mut s = self.lock();
        for p in partitions {
            s.partitions.remove(p);
        }
        if s.partitions.is_empty() {
            s.unassigned_since = Some(now);
        }
    }

    /// A poll returned (records, a rebalance or nothing).
    pub fn polled(&self, now: Instant) {
        self.lock().last_poll = Some(now);
    }

    /// The next offset to process of an assigned partition: progress when it is beyond every
    /// offset reported before (records read again after a failed batch are not progress).
    pub fn at(&self, partition: u32, next: u64, now: Instant) {
        let mut s = self.lock();
        if let Some(p) = s.partitions.get_mut(&partition) {
            if p.next.is_none_or(|known| next > known) {
                *p = Partition { next: Some(next), since: now };
            }
        }
    }

    /// The log holds nothing at `next` of `partition`: idle, not stalled.
    pub fn idle(&self, partition: u32, next: u64, now: Instant) {
        let mut s = self.lock();
        if let Some(p) = s.partitions.get_mut(&partition) {
            if p.next == Some(next) {
                p.since = now;
            }
        }
    }

    /// Ready when a consumer joined, owns partitions (a rebalance may take them all for up
    /// to `limit`), polled within `limit`, and every partition moved, was found idle or was
    /// assigned within `limit`; otherwise the reason, or the partitions to check.
    pub fn verdict(&self, now: Instant, limit: Duration) -> Verdict {
        let s = self.lock();
        let Some(joined) = s.joined else {
            return Verdict::NotReady("no consumer yet".into());
        };
        let quiet = |since: Instant| now.saturating_duration_since(since);
        if s.partitions.is_empty() {
            return match s.unassigned_since {
                None => Verdict::NotReady(format!("no partition assigned {} s after joining", quiet(joined).as_secs())),
                Some(since) if quiet(since) >= limit => {
                    Verdict::NotReady(format!("no partition assigned for {} s", quiet(since).as_secs()))
                }
                Some(_) => Verdict::Ready,
            };
        }
        let last_poll = s.last_poll.unwrap_or(joined);
        if quiet(last_poll) >= limit {
            return Verdict::NotReady(format!("has not polled for {} s", quiet(last_poll).as_secs()));
        }
        let mut check = Vec::new();
        for (&partition, p) in &s.partitions {
            if quiet(p.since) < limit {
                continue;
            }
            match p.next {
                Some(next) => check.push((partition, next)),
                None => {
                    return Verdict::NotReady(format!(
                        "partition {partition}: position unknown {} s after its assignment",
                        quiet(p.since).as_secs()
                    ))
                }
            }
        }
        if check.is_empty() {
            Verdict::Ready
        } else {
            Verdict::Check(check)
        }
    }

    /// How long `partition` has not moved (for the reason of a stall).
    pub fn quiet_for(&self, partition: u32, now: Instant) -> Duration {
        self.lock().partitions.get(&partition).map_or(Duration::ZERO, |p| now.saturating_duration_since(p.since))
    }

    // Single-field updates: a poisoned lock still holds a consistent state.
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_secs(30);

    fn secs(start: Instant, s: u64) -> Instant {
        start + Duration::from_secs(s)
    }

    #[test]
    fn not_ready_before_joining_and_until_partitions_are_assigned() {
        let t = Instant::now();
        let h = ConsumerHealth::new();
        assert!(matches!(h.verdict(t, LIMIT), Verdict::NotReady(r) if r == "no consumer yet"));
        h.joined(t);
        assert!(matches!(h.verdict(secs(t, 3), LIMIT), Verdict::NotReady(r) if r.contains("no partition assigned")));
        h.assigned(&[0, 1], secs(t, 3));
        h.polled(secs(t, 3));
        assert_eq!(h.verdict(secs(t, 4), LIMIT), Verdict::Ready);
    }

    #[test]
    fn an_idle_consumer_that_keeps_polling_stays_ready_once_the_log_shows_nothing_to_do() {
        let t = Instant::now();
        let h = ConsumerHealth::new();
        h.joined(t);
        h.assigned(&[0], t);
        h.at(0, 42, t);
        for s in 1..=40 {
            h.polled(secs(t, s));
        }
        // No progress for the limit: the watcher must look at the log first.
        assert_eq!(h.verdict(secs(t, 40), LIMIT), Verdict::Check(vec![(0, 42)]));
        h.idle(0, 42, secs(t, 40));
        assert_eq!(h.verdict(secs(t, 41), LIMIT), Verdict::Ready);
    }

    #[test]
    fn a_consumer_behind_whose_position_does_not_advance_is_named_for_checking() {
        let t = Instant::now();
        let h = ConsumerHealth::new();
        h.joined(t);
        h.assigned(&[0, 1], t);
        h.at(0, 10, t);
        h.at(1, 5, t);
        // Partition 1 advances; 0 is read again and again (a batch that keeps failing).
        for s in 1..=35 {
            h.polled(secs(t, s));
            h.at(1, 5 + s, secs(t, s));
            h.at(0, 10, secs(t, s));
            h.at(0, 8, secs(t, s));
        }
        assert_eq!(h.verdict(secs(t, 35), LIMIT), Verdict::Check(vec![(0, 10)]));
        assert_eq!(h.quiet_for(0, secs(t, 35)), Duration::from_secs(35));
        // Found idle at another offset than the one reported: still to check.
        h.idle(0, 9, secs(t, 35));
        assert_eq!(h.verdict(secs(t, 35), LIMIT), Verdict::Check(vec![(0, 10)]));
    }

    #[test]
    fn a_loop_that_stopped_polling_is_not_ready_even_with_nothing_to_do() {
        let t = Instant::now();
        let h = ConsumerHealth::new();
        h.joined(t);
        h.assigned(&[0], t);
        h.at(0, 7, t);
        h.polled(t);
        h.idle(0, 7, secs(t, 29));
        assert_eq!(h.verdict(secs(t, 29), LIMIT), Verdict::Ready);
        assert!(matches!(h.verdict(secs(t, 31), LIMIT), Verdict::NotReady(r) if r == "has not polled for 31 s"));
    }

    #[test]
    fn a_partition_whose_position_stays_unknown_is_not_ready() {
        let t = Instant::now();
        let h = ConsumerHealth::new();
        h.joined(t);
        h.assigned(&[3], t);
        h.polled(secs(t, 31));
        assert!(
            matches!(h.verdict(secs(t, 31), LIMIT), Verdict::NotReady(r) if r.contains("partition 3: position unknown"))
        );
    }

    #[test]
    fn a_rebalance_that_takes_every_partition_is_tolerated_for_the_limit_only() {
        let t = Instant::now();
        let h = ConsumerHealth::new();
        h.joined(t);
        h.assigned(&[0], t);
        h.polled(t);
        h.at(0, 1, t);
        h.revoked(&[0], secs(t, 5));
        h.polled(secs(t, 20));
        assert_eq!(h.verdict(secs(t, 20), LIMIT), Verdict::Ready);
        assert!(matches!(h.verdict(secs(t, 36), LIMIT), Verdict::NotReady(r) if r == "no partition assigned for 31 s"));
        // A new consumer starts from nothing.
        h.assigned(&[0], secs(t, 36));
        h.joined(secs(t, 40));
        assert!(matches!(h.verdict(secs(t, 40), LIMIT), Verdict::NotReady(_)));
    }
}
