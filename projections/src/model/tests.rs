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
