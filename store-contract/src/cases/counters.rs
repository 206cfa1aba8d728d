//! The per-day counters behind active users, revenue's payers, retention, new vs returning
//! and monetisation (`gm_projections::counters`), against a count from scratch of what was
//! sent: late and out-of-order days, several days of one player in one batch and across
//! batches, first days moved earlier, erasures in between, and a rebuild.

use crate::data::*;
use crate::{ContractStore, Fixture};
use chrono::{Duration, NaiveDate};
use gm_projections::model::{ChangeSet, DateRange, PlayerDay, ProjectionName, RevenueDelta, Target};
use gm_projections::retention::RETENTION_DAYS;
use gm_projections::{AnalyticsQueries, GameQueries, ReadModelStore};
use std::collections::{BTreeMap, BTreeSet};

/// The projections whose tables hold the counters.
const COUNTED: [ProjectionName; 3] =
    [ProjectionName::DailyActivity, ProjectionName::Revenue, ProjectionName::Retention];

fn day(n: i64) -> NaiveDate {
    jan(1) + Duration::days(n)
}

/// A deterministic pseudo-random sequence (the contract has no dependency for it).
struct Lcg(u64);
impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// What was sent, as the stores must count it: each player's active and paying days, an
/// erased player's days kept under a name of their own (the store's pseudonym).
#[derive(Default, Clone)]
struct Sent {
    active: BTreeMap<String, BTreeSet<NaiveDate>>,
    paid: BTreeMap<String, BTreeSet<NaiveDate>>,
    erasures: usize,
}

impl Sent {
    fn erase(&mut self, player: &str) {
        self.erasures += 1;
        let renamed = format!("{player}#erased{}", self.erasures);
        for days in [&mut self.active, &mut self.paid] {
            if let Some(d) = days.remove(player) {
                days.insert(renamed.clone(), d);
            }
        }
    }

    fn distinct(days: &BTreeMap<String, BTreeSet<NaiveDate>>, from: NaiveDate, to: NaiveDate) -> u64 {
        days.values().filter(|d| d.range(from..=to).next().is_some()).count() as u64
    }

    fn first_days(&self) -> impl Iterator<Item = (NaiveDate, &BTreeSet<NaiveDate>)> {
        self.active.values().filter_map(|d| d.first().map(|f| (*f, d)))
    }
}

/// One batch: erasures first (as a change set applies them), then days.
struct Batch {
    erased: Vec<String>,
    days: Vec<(String, NaiveDate, bool)>,
}

fn batches(seed: u64, count: usize) -> Vec<Batch> {
    let mut rng = Lcg(seed);
    (0..count)
        .map(|i| {
            let erased = if i % 9 == 8 { vec![format!("p{}", rng.below(8))] } else { vec![] };
            let days = (0..1 + rng.below(8))
                .map(|_| {
                    let p = format!("p{}", rng.below(8));
                    let d = match rng.below(12) {
                        // Far back: a first day moved a year earlier, gaps over 366 days.
                        0 => -340 - rng.below(30) as i64,
                        1..=3 => rng.below(70) as i64,
                        _ => 50 + rng.below(20) as i64,
                    };
                    (p, day(d), rng.below(3) == 0)
                })
                .collect();
            Batch { erased, days }
        })
        .collect()
}

fn change_set(b: &Batch) -> ChangeSet {
    let list = |paid_only: bool| -> Vec<PlayerDay> {
        b.days
            .iter()
            .filter(|(_, _, paid)| *paid || !paid_only)
            .map(|(p, d, _)| PlayerDay { game_id: game(), day: *d, player_id: pid(p) })
            .collect()
    };
    let paid = list(true);
    ChangeSet {
        active_days: list(false),
        revenue: paid
            .iter()
            .map(|d| RevenueDelta { game_id: game(), day: d.day, currency: usd(), amount_minor: 100, purchases: 1 })
            .collect(),
        payer_days: paid,
        erased: b.erased.iter().map(|p| (game(), pid(p))).collect(),
        ..Default::default()
    }
}

/// Applies `batches` to the counted projections' `target` tables, from checkpoint `start`.
async fn apply_all<S: ContractStore>(store: &S, target: Target, start: u64, batches: &[Batch]) -> u64 {
    let mut offset = start;
    for b in batches {
        let c = change_set(b);
        for projection in COUNTED {
            let expected = (offset > 0).then_some(offset);
            store.apply(target, projection, 0, expected, offset + 1, &c).await.unwrap();
        }
        offset += 1;
    }
    offset
}

/// Every counted answer for the ranges that matter against [`Sent`].
async fn check<S: ContractStore>(store: &S, sent: &Sent, when: &str) {
    let ranges = [
        range(day(-370), day(-5)),
        range(day(-30), day(75)),
        range(day(50), day(56)),
        range(day(60), day(60)),
        range(day(-300), day(65)),
    ];
    for r in ranges {
        let at = |d: NaiveDate| format!("{when}: {d} in {}..{}", r.from(), r.to());
        for a in store.active_users(&game(), r).await.unwrap() {
            let d = a.day;
            let expected = [0, 6, 29].map(|back| Sent::distinct(&sent.active, d - Duration::days(back), d));
            assert_eq!([a.dau, a.wau, a.mau], expected, "active users {}", at(d));
        }
        let new_returning = store.new_returning(&game(), r).await.unwrap();
        for (n, c) in new_returning.iter().zip(store.retention(&game(), r).await.unwrap()) {
            let d = c.day;
            let cohort: Vec<&BTreeSet<NaiveDate>> =
                sent.first_days().filter(|(f, _)| *f == d).map(|(_, s)| s).collect();
            let back = |k: usize| {
                cohort.iter().filter(|s| s.contains(&(d + Duration::days(RETENTION_DAYS[k])))).count() as u64
            };
            assert_eq!(
                [c.players, c.d1, c.d7, c.d30],
                [cohort.len() as u64, back(0), back(1), back(2)],
                "retention {}",
                at(d)
            );
            let active = Sent::distinct(&sent.active, d, d);
            assert_eq!(
                (n.day, n.active, n.new_players),
                (d, active, cohort.len() as u64),
                "new vs returning {}",
                at(d)
            );
        }
        for row in store.revenue(&game(), r).await.unwrap() {
            let d = row.day;
            let expected = (Sent::distinct(&sent.paid, d, d), Sent::distinct(&sent.active, d, d));
            assert_eq!((row.payers, row.dau), expected, "revenue {}", at(d));
        }
        let m = store.monetisation(&game(), r).await.unwrap();
        let player_days: u64 = sent.active.values().map(|s| s.range(r.from()..=r.to()).count() as u64).sum();
        assert_eq!(
            (m.active_players, m.active_player_days, m.payers),
            (Sent::distinct(&sent.active, r.from(), r.to()), player_days, Sent::distinct(&sent.paid, r.from(), r.to())),
            "monetisation {when}: {}..{}",
            r.from(),
            r.to()
        );
    }
}

fn record(sent: &mut Sent, b: &Batch) {
    for p in &b.erased {
        sent.erase(p);
    }
    for (p, d, paid) in &b.days {
        sent.active.entry(p.clone()).or_default().insert(*d);
        if *paid {
            sent.paid.entry(p.clone()).or_default().insert(*d);
        }
    }
}

pub async fn counters_equal_a_count_from_scratch_over_late_days_and_erasures<F: Fixture>(f: F) {
    let store = f.store();
    // Hand-picked first: one player's several days in one batch, a day between two stored
    // ones, a first day moved earlier (leaving a cohort with its D1), an erasure in between
    // and the same id again afterwards (a new player).
    let hand = vec![
        Batch {
            erased: vec![],
            days: vec![("a".into(), day(10), false), ("a".into(), day(11), true), ("a".into(), day(17), false)],
        },
        Batch {
            erased: vec![],
            days: vec![("a".into(), day(14), false), ("a".into(), day(3), true), ("b".into(), day(11), false)],
        },
        Batch { erased: vec!["a".into()], days: vec![("a".into(), day(11), false), ("b".into(), day(4), true)] },
        Batch { erased: vec![], days: vec![("a".into(), day(41), false), ("b".into(), day(34), false)] },
    ];
    let mut sent = Sent::default();
    let mut offset = 0;
    for b in &hand {
        offset = apply_all(store, Target::Live, offset, std::slice::from_ref(b)).await;
        record(&mut sent, b);
        check(store, &sent, &format!("hand batch {offset}")).await;
    }
    let cohort = store.retention(&game(), range(day(3), day(10))).await.unwrap();
    assert_eq!((cohort[0].players, cohort[0].d7, cohort[7].players, cohort[7].d1), (1, 1, 0, 0));
    // Then random batches, checked every few.
    let random = batches(42, 36);
    for (i, chunk) in random.chunks(6).enumerate() {
        offset = apply_all(store, Target::Live, offset, chunk).await;
        chunk.iter().for_each(|b| record(&mut sent, b));
        check(store, &sent, &format!("random chunk {i}")).await;
    }
    // Another game's days are counted apart.
    let other = ChangeSet {
        active_days: vec![PlayerDay { game_id: other_game(), day: day(60), player_id: pid("p1") }],
        ..Default::default()
    };
    store.apply(Target::Live, ProjectionName::DailyActivity, 0, Some(offset), offset + 1, &other).await.unwrap();
    check(store, &sent, "after another game's day").await;
    let r: DateRange = range(day(60), day(60));
    assert_eq!(store.active_users(&other_game(), r).await.unwrap()[0].dau, 1);
}

pub async fn a_rebuild_of_the_counted_projections_gives_the_live_counters<F: Fixture>(f: F) {
    let store = f.store();
    let all = batches(7, 30);
    let mut sent = Sent::default();
    apply_all(store, Target::Live, 0, &all).await;
    all.iter().for_each(|b| record(&mut sent, b));
    check(store, &sent, "live").await;
    for projection in COUNTED {
        store.begin_rebuild(projection).await.unwrap();
    }
    // Replayed in other batch boundaries: one batch of everything up to the first erasure,
    // then the rest one by one (the counters do not depend on how days are batched).
    let cut = all.iter().position(|b| !b.erased.is_empty()).unwrap_or(all.len());
    let merged = Batch { erased: vec![], days: all[..cut].iter().flat_map(|b| b.days.clone()).collect() };
    let offset = apply_all(store, Target::Rebuild, 0, std::slice::from_ref(&merged)).await;
    apply_all(store, Target::Rebuild, offset, &all[cut..]).await;
    for projection in COUNTED {
        store.finish_rebuild(projection).await.unwrap();
    }
    check(store, &sent, "rebuilt").await;
}
