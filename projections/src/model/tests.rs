use super::*;

fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).unwrap()
}

#[test]
fn session_bucket_boundaries() {
    assert_eq!(session_bucket(0), 0);
    assert_eq!(session_bucket(59), 0);
    assert_eq!(session_bucket(60), 1);
    assert_eq!(session_bucket(299), 1);
    assert_eq!(session_bucket(300), 2);
    assert_eq!(session_bucket(3599), 4);
    assert_eq!(session_bucket(3600), 5);
    assert_eq!(session_bucket(7199), 5);
    assert_eq!(session_bucket(7200), 6);
    assert_eq!(session_bucket(u64::MAX), 6);
}

#[test]
fn date_range_rejects_reversed() {
    assert_eq!(
        DateRange::parse(d(2024, 3, 2), d(2024, 3, 1)),
        Err(RangeError::Reversed { from: d(2024, 3, 2), to: d(2024, 3, 1) })
    );
}

#[test]
fn date_range_allows_366_days_and_rejects_more() {
    // 2024 is a leap year: Jan 1 to Dec 31 is 366 days inclusive.
    assert!(DateRange::parse(d(2024, 1, 1), d(2024, 12, 31)).is_ok());
    assert_eq!(
        DateRange::parse(d(2024, 1, 1), d(2025, 1, 1)),
        Err(RangeError::TooWide { days: 367, max: DateRange::MAX_DAYS })
    );
}

#[test]
fn date_range_days_iterates_inclusively() {
    let r = DateRange::parse(d(2024, 2, 27), d(2024, 3, 1)).unwrap();
    assert_eq!((r.from(), r.to()), (d(2024, 2, 27), d(2024, 3, 1)));
    assert_eq!(r.days().collect::<Vec<_>>(), vec![d(2024, 2, 27), d(2024, 2, 28), d(2024, 2, 29), d(2024, 3, 1)]);
    let one = DateRange::parse(d(2024, 5, 5), d(2024, 5, 5)).unwrap();
    assert_eq!(one.days().collect::<Vec<_>>(), vec![d(2024, 5, 5)]);
    let year = DateRange::parse(d(2024, 1, 1), d(2024, 12, 31)).unwrap();
    assert_eq!(year.days().count(), 366);
}

#[test]
fn projection_names_round_trip_and_have_their_group() {
    for p in ProjectionName::ALL {
        assert_eq!(ProjectionName::parse(p.as_str()), Some(p));
    }
    assert_eq!(ProjectionName::parse("nope"), None);
    assert_eq!(ProjectionName::Revenue.group(), "projection.revenue");
}

#[test]
fn ratio_is_zero_when_dividing_by_zero() {
    assert_eq!(ratio(5.0, 0.0), 0.0);
    assert_eq!(ratio(0.0, 0.0), 0.0);
    assert_eq!(ratio(3.0, 4.0), 0.75);
}

#[test]
fn erased_pseudonyms_are_fresh_uuids() {
    let (a, b) = (erased_pseudonym(), erased_pseudonym());
    assert_ne!(a, b);
    let uuid = a.strip_prefix("erased-").expect("prefix");
    assert_eq!(uuid::Uuid::parse_str(uuid).unwrap().get_version_num(), 4);
}

#[test]
fn active_users_day_stickiness_is_dau_over_mau() {
    let a = ActiveUsersDay::new(d(2024, 1, 3), 2, 3, 8);
    assert_eq!((a.day, a.dau, a.wau, a.mau, a.stickiness), (d(2024, 1, 3), 2, 3, 8, 0.25));
    assert_eq!(ActiveUsersDay::new(d(2024, 1, 3), 0, 0, 0).stickiness, 0.0);
}

#[test]
fn sessions_day_averages_over_closed_sessions_and_labels_the_buckets() {
    let counts = SessionCounts { started: 4, closed: 2, total_length_seconds: 450, buckets: [0, 1, 1, 0, 0, 0, 0] };
    let s = SessionsDay::from_counts(d(2024, 1, 10), &counts);
    assert_eq!((s.day, s.sessions_started, s.sessions_closed), (d(2024, 1, 10), 4, 2));
    assert_eq!(s.average_length_seconds, 225.0);
    let labels: Vec<&str> = s.length_distribution.iter().map(|b| b.bucket.as_str()).collect();
    assert_eq!(labels, ["0-1m", "1-5m", "5-15m", "15-30m", "30-60m", "1-2h", "2h+"]);
    let sessions: Vec<u64> = s.length_distribution.iter().map(|b| b.sessions).collect();
    assert_eq!(sessions, counts.buckets);
    // Started but none closed yet: no average, not NaN.
    let open = SessionsDay::from_counts(d(2024, 1, 10), &SessionCounts { started: 3, ..Default::default() });
    assert_eq!((open.sessions_started, open.average_length_seconds), (3, 0.0));
}

#[test]
fn sessions_over_fills_every_day_of_the_range_in_order() {
    let range = DateRange::parse(d(2024, 1, 9), d(2024, 1, 11)).unwrap();
    let counts = SessionCounts { started: 1, closed: 1, total_length_seconds: 30, buckets: [1, 0, 0, 0, 0, 0, 0] };
    // A row outside the range is ignored.
    let by_day = HashMap::from([(d(2024, 1, 10), counts), (d(2024, 1, 12), counts)]);
    let days = sessions_over(range, &by_day);
    assert_eq!(days.iter().map(|s| s.day).collect::<Vec<_>>(), vec![d(2024, 1, 9), d(2024, 1, 10), d(2024, 1, 11)]);
    assert_eq!(days[0], SessionsDay::from_counts(d(2024, 1, 9), &SessionCounts::default()));
    assert_eq!((days[0].sessions_started, days[0].length_distribution.len()), (0, 7));
    assert!(days[0].length_distribution.iter().all(|b| b.sessions == 0));
    assert_eq!(days[1], SessionsDay::from_counts(d(2024, 1, 10), &counts));
    assert_eq!(days[1].average_length_seconds, 30.0);
    assert_eq!(days[2].sessions_started, 0);
}

#[test]
fn revenue_day_ratios_per_active_user_and_payer() {
    let r = RevenueDay::new(d(2024, 1, 1), "USD".into(), 600, 3, 2, 8);
    assert_eq!((r.currency.as_str(), r.revenue_minor, r.purchases, r.payers, r.dau), ("USD", 600, 3, 2, 8));
    assert_eq!((r.arpdau_minor, r.arppu_minor, r.conversion), (75.0, 300.0, 0.25));
    // Revenue whose payers and players were erased or not yet projected: no division by zero.
    let z = RevenueDay::new(d(2024, 1, 1), "EUR".into(), -150, 1, 0, 0);
    assert_eq!((z.arpdau_minor, z.arppu_minor, z.conversion), (0.0, 0.0, 0.0));
    assert_eq!(RevenueDay::new(d(2024, 1, 1), "EUR".into(), -150, 1, 1, 2).arpdau_minor, -75.0);
}

#[test]
fn funnel_step_completion_rate_is_players_who_completed_over_players_who_started() {
    let counts = FunnelCounts {
        starts: 9,
        completes: 5,
        fails: 4,
        players_started: 4,
        players_completed: 4,
        players_failed: 2,
        players_started_and_completed: 3,
        median_seconds_to_complete: Some(90.0),
    };
    let f = FunnelStep::new("level-1".into(), counts);
    assert_eq!((f.level_id.as_str(), f.players_started, f.players_completed, f.players_failed), ("level-1", 4, 4, 2));
    assert_eq!((f.starts, f.completes, f.fails), (9, 5, 4));
    assert_eq!((f.completion_rate, f.median_seconds_to_complete), (Some(0.75), Some(90.0)));
    // Nothing started: no rate (not 0.0), even with completions seen without their start.
    let none =
        FunnelStep::new("level-2".into(), FunnelCounts { completes: 1, players_completed: 1, ..Default::default() });
    assert_eq!((none.completion_rate, none.median_seconds_to_complete), (None, None));
}

#[test]
fn level_ids_sort_in_natural_order() {
    let mut levels =
        vec!["level-10", "level-2", "level-1", "boss", "level-02", "level-1b", "w2-l10", "w2-l9", "w10-l1"];
    levels.sort_by(|a, b| natural_cmp(a, b));
    assert_eq!(
        levels,
        vec!["boss", "level-1", "level-1b", "level-02", "level-2", "level-10", "w2-l9", "w2-l10", "w10-l1"]
    );
    assert_eq!(natural_cmp("a", "a"), std::cmp::Ordering::Equal);
    assert_eq!(natural_cmp("99999999999999999999999", "100000000000000000000000"), std::cmp::Ordering::Less);
}

#[test]
fn funnel_follows_the_configured_order_then_natural_order_with_step_to_step_conversion() {
    let step = |level: &str, started: u64| {
        FunnelStep::new(level.into(), FunnelCounts { players_started: started, ..Default::default() })
    };
    let steps =
        vec![step("level-10", 2), step("level-2", 0), step("tutorial", 10), step("level-1", 8), step("bonus", 1)];
    let natural = order_funnel(steps.clone(), &[]);
    let levels: Vec<&str> = natural.iter().map(|s| s.level_id.as_str()).collect();
    assert_eq!(levels, vec!["bonus", "level-1", "level-2", "level-10", "tutorial"]);
    let conversions: Vec<Option<f64>> = natural.iter().map(|s| s.conversion_from_previous).collect();
    // After a step nobody started there is no conversion (not a division by zero).
    assert_eq!(conversions, vec![None, Some(8.0), Some(0.0), None, Some(5.0)]);

    let order: Vec<String> = ["tutorial", "level-1", "level-2"].map(String::from).to_vec();
    let configured = order_funnel(steps, &order);
    let levels: Vec<&str> = configured.iter().map(|s| s.level_id.as_str()).collect();
    assert_eq!(levels, vec!["tutorial", "level-1", "level-2", "bonus", "level-10"], "unlisted levels last");
    assert_eq!(configured[1].conversion_from_previous, Some(0.8));
    assert_eq!(configured[0].conversion_from_previous, None);
}
