use super::*;
use std::collections::HashMap;

fn day(n: i64) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 1, 1).unwrap() + chrono::Duration::days(n)
}

fn game() -> GameId {
    GameId::parse("g").unwrap()
}

/// A deterministic pseudo-random sequence (no dependency for a test).
struct Lcg(u64);
impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// What a store holds: each player's days, and the counters kept from deltas.
#[derive(Default)]
struct Model {
    days: HashMap<String, BTreeSet<NaiveDate>>,
    gaps: HashMap<(NaiveDate, i32), i64>,
    retention: HashMap<NaiveDate, RetentionDelta>,
}

impl Model {
    /// Applies a batch as a store does: neighbourhood read before the days are inserted.
    fn apply(&mut self, batch: &[(String, NaiveDate)]) {
        let rows: Vec<PlayerDay> = batch
            .iter()
            .map(|(p, d)| PlayerDay { game_id: game(), day: *d, player_id: PlayerId::parse(p).unwrap() })
            .collect();
        let mut gaps = GapDeltas::default();
        let mut retention = RetentionDeltas::default();
        for ((g, p), new_days) in touched(&rows) {
            let all = self.days.get(p.as_str()).cloned().unwrap_or_default();
            let (lo, hi) = span(&new_days);
            // Exactly the neighbourhood the stores read, nothing more.
            let mut near: BTreeSet<NaiveDate> = all.range(lo..=hi).copied().collect();
            near.extend(all.range(..lo).next_back());
            near.extend(all.range(hi.succ_opt().unwrap()..).next());
            gaps.add(&g, gap_deltas(&near, &new_days));
            let first = all.first().copied();
            let probes = retention_probes(first, &new_days);
            let stored: BTreeSet<NaiveDate> =
                all.iter().filter(|d| new_days.contains(d) || probes.contains(d)).copied().collect();
            retention.add(&g, retention_deltas(first, &stored, &new_days));
        }
        for (_, d, g, n) in gaps.rows() {
            *self.gaps.entry((d, g)).or_default() += n;
        }
        for (_, d, r) in retention.rows() {
            self.retention.entry(d).or_default().add(r);
        }
        for (p, d) in batch {
            self.days.entry(p.clone()).or_default().insert(*d);
        }
    }

    /// The gap counts computed from scratch.
    fn brute_gaps(&self) -> HashMap<(NaiveDate, i32), i64> {
        let mut out = HashMap::new();
        for days in self.days.values() {
            let mut prev = None;
            for d in days {
                *out.entry((*d, gap(prev, *d))).or_default() += 1;
                prev = Some(*d);
            }
        }
        out
    }

    fn brute_retention(&self) -> HashMap<NaiveDate, RetentionDelta> {
        let mut out: HashMap<NaiveDate, RetentionDelta> = HashMap::new();
        for days in self.days.values() {
            for d in days {
                out.entry(*d).or_default().active += 1;
            }
            let first = *days.first().unwrap();
            let c = out.entry(first).or_default();
            c.cohort += 1;
            for (i, n) in RETENTION_DAYS.iter().enumerate() {
                c.returned[i] += i64::from(days.contains(&(first + chrono::Duration::days(*n))));
            }
        }
        out
    }

    fn check(&self) {
        let nonzero = |m: &HashMap<(NaiveDate, i32), i64>| -> BTreeMap<(NaiveDate, i32), i64> {
            m.iter().filter(|(_, n)| **n != 0).map(|(k, n)| (*k, *n)).collect()
        };
        assert_eq!(nonzero(&self.gaps), nonzero(&self.brute_gaps()));
        let nonzero = |m: &HashMap<NaiveDate, RetentionDelta>| -> BTreeMap<NaiveDate, RetentionDelta> {
            m.iter().filter(|(_, d)| !d.is_zero()).map(|(k, d)| (*k, *d)).collect()
        };
        assert_eq!(nonzero(&self.retention), nonzero(&self.brute_retention()));
        // Distinct players of windows, from the gap counts, against a direct count.
        let rows: Vec<(NaiveDate, i32, u64)> =
            self.gaps.iter().filter(|(_, n)| **n > 0).map(|((d, g), n)| (*d, *g, *n as u64)).collect();
        for (from, len) in [(0, 1), (3, 7), (10, 30), (0, 80), (25, 366), (40, 2)] {
            let (a, b) = (day(from), day(from + len - 1));
            let direct = self.days.values().filter(|ds| ds.range(a..=b).next().is_some()).count() as u64;
            assert_eq!(distinct_in(a, b, &rows), direct, "window {a}..{b}");
        }
    }
}

#[test]
fn gap_codes() {
    assert_eq!(gap(None, day(5)), GAP_FIRST);
    assert_eq!(gap(Some(day(4)), day(5)), 1);
    assert_eq!(gap(Some(day(0)), day(400)), GAP_MAX);
    assert!(first_in_window(day(5), 6, day(0)));
    assert!(!first_in_window(day(5), 5, day(0)));
    assert!(first_in_window(day(5), GAP_FIRST, day(0)));
}

#[test]
fn a_late_day_between_two_stored_days_splits_the_gap() {
    let stored: BTreeSet<NaiveDate> = [day(0), day(10)].into();
    let new: BTreeSet<NaiveDate> = [day(4)].into();
    assert_eq!(gap_deltas(&stored, &new), vec![(day(4), 4, 1), (day(10), 10, -1), (day(10), 6, 1)]);
    // A day already stored changes nothing.
    assert!(gap_deltas(&stored, &[day(10)].into()).is_empty());
}

#[test]
fn an_earlier_first_day_moves_the_player_to_the_earlier_cohort() {
    // First seen on day 10 and active on day 11 (D1); a late event on day 3 makes day 3 the
    // cohort, and day 10 (= 3 + 7) its D7.
    let new: BTreeSet<NaiveDate> = [day(3)].into();
    let probes = retention_probes(Some(day(10)), &new);
    assert!(probes.contains(&day(11)) && probes.contains(&day(10)));
    let stored_near: BTreeSet<NaiveDate> = [day(10), day(11)].into();
    let deltas = retention_deltas(Some(day(10)), &stored_near, &new);
    assert_eq!(
        deltas,
        vec![
            (day(3), RetentionDelta { active: 1, ..Default::default() }),
            (day(10), RetentionDelta { cohort: -1, returned: [-1, 0, 0], ..Default::default() }),
            (day(3), RetentionDelta { cohort: 1, returned: [0, 1, 0], ..Default::default() }),
        ]
    );
}

#[test]
fn several_new_days_of_one_player_in_one_batch() {
    let mut m = Model::default();
    m.apply(&[("p".into(), day(5)), ("p".into(), day(1)), ("p".into(), day(2)), ("p".into(), day(31))]);
    m.check();
    m.apply(&[("p".into(), day(3)), ("p".into(), day(0)), ("p".into(), day(8)), ("p".into(), day(5))]);
    m.check();
    assert_eq!(m.retention[&day(0)].cohort, 1);
    assert_eq!(m.retention[&day(0)].returned, [1, 0, 0]);
    assert_eq!(m.retention[&day(1)].cohort, 0);
}

#[test]
fn random_batches_late_and_out_of_order_equal_a_count_from_scratch() {
    let mut rng = Lcg(7);
    let mut m = Model::default();
    for _ in 0..300 {
        let n = 1 + rng.below(12);
        let batch: Vec<(String, NaiveDate)> = (0..n)
            .map(|_| {
                let p = format!("p{}", rng.below(15));
                // Mostly recent days, some far back, some across the 30- and 366-day edges.
                let d = match rng.below(10) {
                    0 => rng.below(420) as i64,
                    1..=3 => 20 + rng.below(45) as i64,
                    _ => 55 + rng.below(12) as i64,
                };
                (p, day(d))
            })
            .collect();
        m.apply(&batch);
        m.check();
    }
}

#[test]
fn active_users_from_gap_counts_equal_distinct_players_per_window() {
    let mut rng = Lcg(11);
    let mut m = Model::default();
    for _ in 0..60 {
        let batch: Vec<(String, NaiveDate)> =
            (0..6).map(|_| (format!("p{}", rng.below(25)), day(rng.below(70) as i64))).collect();
        m.apply(&batch);
    }
    let range = DateRange::parse(day(35), day(69)).unwrap();
    let rows: Vec<(NaiveDate, i32, u64)> = m
        .gaps
        .iter()
        .filter(|((d, _), n)| **n > 0 && *d >= active_users_from(range))
        .map(|((d, g), n)| (*d, *g, *n as u64))
        .collect();
    let distinct = |to: NaiveDate, len: i64| {
        let from = to - chrono::Duration::days(len - 1);
        m.days.values().filter(|ds| ds.range(from..=to).next().is_some()).count() as u64
    };
    for a in active_users(range, &rows) {
        assert_eq!((a.dau, a.wau, a.mau), (distinct(a.day, 1), distinct(a.day, 7), distinct(a.day, 30)), "{}", a.day);
    }
}
