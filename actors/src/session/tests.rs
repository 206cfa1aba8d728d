use super::*;
use crate::test_support::*;

const POLICY: SessionPolicy = SessionPolicy { timeout: Duration::minutes(30), end_grace: Duration::seconds(60) };

/// Decides and applies `event` as the PlayerActor would, returning the decision.
fn step(actor: &mut SessionActor, event: &EventEnvelope) -> SessionDecision {
    let d = actor.decide(&key(), event);
    let derived = Derived {
        session_id: d.session_id.clone(),
        session_started: d.started,
        closed_session: d.closed.clone(),
        merged_session: d.merged.clone(),
        ..Derived::default()
    };
    actor.apply(&derived, &event.body, event.timestamp, event.received_at);
    d
}

/// The timer at log time `now`, decided and applied as the PlayerActor does.
fn tick(actor: &mut SessionActor, now: DateTime<Utc>) -> Vec<ClosedSession> {
    let closed = actor.expire(now, &POLICY);
    for c in &closed {
        let derived = Derived {
            session_id: Some(c.session_id.clone()),
            closed_session: Some(c.clone()),
            closed_by_timer: true,
            ..Derived::default()
        };
        actor.apply(&derived, &session_end(None), c.ended_at, now);
    }
    closed
}

fn open(id: &str, start: i64, last: i64) -> OpenSession {
    OpenSession { id: sid(id), started_at: at(start), last_event_at: at(last), last_received_at: at(last), ended: None }
}

/// An actor with an open session `id` started at `at(start)` whose last event was at `at(last)`.
fn open_at(id: &str, start: i64, last: i64) -> SessionActor {
    SessionActor { open: vec![open(id, start, last)], ..SessionActor::default() }
}

fn ids(actor: &SessionActor) -> Vec<&str> {
    actor.open.iter().map(|o| o.id.as_str()).collect()
}

fn closed(id: &str, start: i64, end: i64, length_seconds: u64) -> ClosedSession {
    ClosedSession { session_id: sid(id), started_at: at(start), ended_at: at(end), length_seconds }
}

#[test]
fn client_session_start_opens_session_with_client_id() {
    let mut actor = SessionActor::default();
    let d = step(&mut actor, &envelope(1, at(0), Some("c-1"), session_start()));
    assert_eq!(d, SessionDecision { session_id: Some(sid("c-1")), started: true, closed: None, merged: None });
    assert_eq!(actor.open, vec![open("c-1", 0, 0)]);
}

#[test]
fn event_without_session_id_within_30_minutes_continues_session() {
    let mut actor = open_at("c-1", 0, 0);
    let d = step(&mut actor, &envelope(1, at(29), None, score(5)));
    assert_eq!(d, SessionDecision { session_id: Some(sid("c-1")), ..SessionDecision::default() });
    assert_eq!(actor.open, vec![open("c-1", 0, 29)]);
}

#[test]
fn exactly_30_minutes_of_inactivity_continues_session() {
    let mut actor = open_at("c-1", 0, 10);
    let d = step(&mut actor, &envelope(1, at(40), None, score(5)));
    assert_eq!((d.session_id, d.started, d.closed), (Some(sid("c-1")), false, None));
    assert_eq!(actor.open[0].last_event_at, at(40));
}

#[test]
fn over_30_minutes_inactivity_starts_a_derived_session_and_the_timer_closes_the_previous_at_its_last_event() {
    let mut actor = open_at("c-1", 0, 10);
    let t = at(40) + Duration::seconds(1);
    let d = step(&mut actor, &envelope(1, t, None, score(5)));
    let derived = derived_session_id(&key(), t);
    assert!(derived.as_str().starts_with("d-"));
    assert_eq!(d, SessionDecision { session_id: Some(derived.clone()), started: true, closed: None, merged: None });
    assert_eq!(ids(&actor), vec!["c-1", derived.as_str()]);
    // Nothing of c-1 was received for 30 minutes once the log's time is 10:40.
    assert_eq!(tick(&mut actor, at(39)), vec![]);
    assert_eq!(tick(&mut actor, at(40)), vec![closed("c-1", 0, 10, 600)]);
    assert_eq!(ids(&actor), vec![derived.as_str()]);
}

#[test]
fn first_event_without_any_session_starts_derived_session() {
    let mut actor = SessionActor::default();
    let d = step(&mut actor, &envelope(1, at(0), None, score(1)));
    assert_eq!(d.session_id, Some(derived_session_id(&key(), at(0))));
    assert!(d.started);
    assert_eq!(actor.open.len(), 1);
}

#[test]
fn session_end_closes_with_client_length_when_given() {
    let mut actor = open_at("c-1", 0, 5);
    let d = step(&mut actor, &envelope(1, at(20), Some("c-1"), session_end(Some(777))));
    assert_eq!(
        d,
        SessionDecision {
            session_id: Some(sid("c-1")),
            closed: Some(closed("c-1", 0, 20, 777)),
            ..SessionDecision::default()
        }
    );
    assert!(actor.open.is_empty());
    assert_eq!(actor.recently_closed, [ClosedRef { id: sid("c-1"), started_at: at(0), ended_at: at(20) }]);
}

#[test]
fn session_end_without_client_length_closes_with_measured_length() {
    let mut actor = open_at("c-1", 0, 5);
    // No session id on the end event: it ends the open session.
    let d = step(&mut actor, &envelope(1, at(20), None, session_end(None)));
    assert_eq!(d.closed, Some(closed("c-1", 0, 20, 1200)));
    assert!(actor.open.is_empty());
}

#[test]
fn session_end_without_an_id_and_nothing_open_closes_nothing() {
    let mut actor = SessionActor::default();
    let d = step(&mut actor, &envelope(1, at(0), None, session_end(Some(60))));
    assert_eq!(d, SessionDecision::default());
    assert_eq!(actor, SessionActor::default());
}

#[test]
fn a_session_start_arriving_after_other_events_of_its_session_starts_nothing_again() {
    let mut actor = SessionActor::default();
    // The session's later events were appended first (a batch that overtook another).
    assert!(step(&mut actor, &envelope(2, at(3), Some("s"), score(1))).started);
    let late_start = step(&mut actor, &envelope(1, at(0), Some("s"), session_start()));
    assert_eq!(late_start, SessionDecision { session_id: Some(sid("s")), ..SessionDecision::default() });
    assert_eq!(actor.open, vec![open("s", 0, 3)], "one session, starting at its earliest event");
    let end = step(&mut actor, &envelope(3, at(10), Some("s"), session_end(None)));
    assert_eq!(end.closed, Some(closed("s", 0, 10, 600)));
}

#[test]
fn a_late_event_or_a_retry_of_a_closed_session_joins_it_without_starting_it_again() {
    let mut actor = open_at("s", 0, 5);
    step(&mut actor, &envelope(1, at(6), Some("s"), session_end(None)));
    for (n, body) in [(2, score(1)), (3, session_start()), (4, session_end(Some(9)))] {
        let d = step(&mut actor, &envelope(n, at(4), Some("s"), body));
        assert_eq!(d, SessionDecision { session_id: Some(sid("s")), ..SessionDecision::default() });
    }
    assert!(actor.open.is_empty());
}

#[test]
fn two_client_sessions_at_once_are_two_sessions_each_closed_on_its_own() {
    let mut actor = open_at("a", 0, 3);
    let d = step(&mut actor, &envelope(1, at(5), Some("b"), design("x")));
    assert_eq!(d, SessionDecision { session_id: Some(sid("b")), started: true, closed: None, merged: None });
    // A late event of "a" (another device, or a batch overtaken) still belongs to "a".
    assert!(!step(&mut actor, &envelope(2, at(4), Some("a"), score(1))).started);
    assert_eq!(ids(&actor), vec!["a", "b"]);
    let d = step(&mut actor, &envelope(3, at(8), Some("b"), session_end(None)));
    assert_eq!(d.closed, Some(closed("b", 5, 8, 180)));
    assert_eq!(tick(&mut actor, at(34)), vec![closed("a", 0, 4, 240)]);
}

#[test]
fn an_implicit_session_followed_by_a_client_session_start_becomes_that_session() {
    let mut actor = SessionActor::default();
    // Segment: `identify` (no session id), then `Session Started` with one.
    let first = step(&mut actor, &envelope(1, at(0), None, profile_update(Some("DE"), None)));
    let implicit = derived_session_id(&key(), at(0));
    assert_eq!(first.session_id, Some(implicit.clone()));
    assert!(first.started);
    let named = step(&mut actor, &envelope(2, at(1), Some("seg-1"), session_start()));
    assert_eq!(
        named,
        SessionDecision { session_id: Some(sid("seg-1")), started: false, closed: None, merged: Some(implicit) }
    );
    assert_eq!(actor.open, vec![open("seg-1", 0, 1)], "renamed, from the implicit session's start");
    assert!(!step(&mut actor, &envelope(3, at(2), None, score(1))).started);
    let end = step(&mut actor, &envelope(4, at(9), Some("seg-1"), session_end(None)));
    assert_eq!(end.closed, Some(closed("seg-1", 0, 9, 540)));
}

#[test]
fn a_client_session_after_the_inactivity_window_of_an_implicit_one_is_a_new_session() {
    let mut actor = SessionActor::default();
    step(&mut actor, &envelope(1, at(0), None, score(1)));
    let d = step(&mut actor, &envelope(2, at(31), Some("s"), session_start()));
    assert_eq!((d.started, d.merged), (true, None));
    assert_eq!(actor.open.len(), 2);
}

#[test]
fn a_client_session_never_takes_over_another_client_session() {
    let mut actor = open_at("a", 0, 1);
    let d = step(&mut actor, &envelope(1, at(2), Some("b"), session_start()));
    assert_eq!((d.started, d.merged), (true, None));
}

#[test]
fn a_session_end_arriving_first_opens_its_session_ended_and_the_timer_closes_it_after_the_grace() {
    let mut actor = SessionActor::default();
    let end = step(&mut actor, &envelope(3, at(10), Some("s"), session_end(Some(700))));
    assert_eq!((end.started, end.closed.clone()), (true, None));
    // The rest of the session arrives just after: the same session.
    assert!(!step(&mut actor, &envelope(1, at(0), Some("s"), session_start())).started);
    assert!(!step(&mut actor, &envelope(2, at(5), Some("s"), score(1))).started);
    let received = actor.open[0].last_received_at;
    assert_eq!(tick(&mut actor, received + Duration::seconds(59)), vec![]);
    assert_eq!(tick(&mut actor, received + Duration::seconds(60)), vec![closed("s", 0, 10, 700)]);
    assert!(actor.open.is_empty());
}

#[test]
fn the_timer_measures_from_log_time_and_decides_the_same_from_the_same_state() {
    let mut a = SessionActor::default();
    // Sent by a client that was offline: event time an hour before it was received.
    let mut e = envelope(1, at(0), Some("s"), session_start());
    e.received_at = at(60);
    step(&mut a, &e);
    let b = a.clone();
    assert_eq!(a.expire(at(89), &POLICY), vec![], "30 minutes of log time not over");
    assert_eq!(a.next_due(&POLICY), Some(at(90)));
    assert_eq!(tick(&mut a, at(90)), vec![closed("s", 0, 0, 0)]);
    assert_eq!(b.expire(at(90), &POLICY), vec![closed("s", 0, 0, 0)], "a replay decides the same");
    assert_eq!(a.next_due(&POLICY), None);
}

#[test]
fn more_than_max_open_sessions_close_the_one_idle_longest() {
    let mut actor = SessionActor::default();
    for n in 0..MAX_OPEN as i64 {
        step(&mut actor, &envelope(n as u128, at(n), Some(&format!("s{n}")), session_start()));
    }
    let d = step(&mut actor, &envelope(99, at(20), Some("new"), session_start()));
    assert!(d.started);
    assert_eq!(d.closed, Some(closed("s0", 0, 0, 0)));
    assert_eq!(actor.open.len(), MAX_OPEN);
}

#[test]
fn only_the_last_closed_ids_are_remembered() {
    let mut actor = SessionActor::default();
    for n in 0..(MAX_CLOSED_IDS as i64 + 2) {
        let id = format!("s{n}");
        step(&mut actor, &envelope(n as u128, at(n), Some(&id), session_start()));
        step(&mut actor, &envelope(1000 + n as u128, at(n), Some(&id), session_end(None)));
    }
    assert_eq!(actor.recently_closed.len(), MAX_CLOSED_IDS);
    assert_eq!(actor.recently_closed.front().map(|c| c.id.clone()), Some(sid("s2")));
}

#[test]
fn derived_ids_are_deterministic_and_differ_by_start_time_and_key() {
    assert_eq!(derived_session_id("g:p", at(0)), derived_session_id("g:p", at(0)));
    assert_ne!(derived_session_id("g:p", at(0)), derived_session_id("g:p", at(1)));
    assert_ne!(derived_session_id("g:p", at(0)), derived_session_id("g:p", at(0) + Duration::milliseconds(1)));
    assert_ne!(derived_session_id("g:p", at(0)), derived_session_id("g:q", at(0)));
}

#[test]
fn out_of_order_timestamp_does_not_move_last_event_back() {
    let mut actor = open_at("c-1", 0, 20);
    let d = step(&mut actor, &envelope(1, at(10), None, score(1)));
    assert_eq!(d.session_id, Some(sid("c-1")));
    assert!(!d.started);
    assert_eq!(actor.open[0].last_event_at, at(20));
}

#[test]
fn an_identify_arriving_after_the_rest_of_its_visit_closed_joins_it() {
    let mut actor = SessionActor::default();
    // The later half of the visit first: it opens and ends "s".
    step(&mut actor, &envelope(3, at(2), Some("s"), score(1)));
    step(&mut actor, &envelope(4, at(9), Some("s"), session_end(Some(600))));
    // Then the first half: the identify (no session id) and the session_start.
    let identify = step(&mut actor, &envelope(1, at(0), None, profile_update(Some("DE"), None)));
    assert_eq!(identify, SessionDecision { session_id: Some(sid("s")), ..SessionDecision::default() });
    assert!(!step(&mut actor, &envelope(2, at(1), Some("s"), session_start())).started);
    assert!(actor.open.is_empty());
    // An event without an id after the session ended is a new visit.
    assert!(step(&mut actor, &envelope(5, at(12), None, score(1))).started);
}

#[test]
fn without_session_ids_identify_then_session_start_within_30_minutes_is_one_session() {
    // Segment: no session id on any message.
    let mut actor = SessionActor::default();
    assert!(step(&mut actor, &envelope(1, at(0), None, profile_update(Some("DE"), None))).started);
    let start = step(&mut actor, &envelope(2, at(1), None, session_start()));
    assert_eq!((start.started, start.closed, start.merged), (false, None, None));
    step(&mut actor, &envelope(3, at(20), None, session_end(None)));
    assert!(actor.open.is_empty());
    // After its end, a session_start is a new visit.
    assert!(step(&mut actor, &envelope(4, at(25), None, session_start())).started);
}
