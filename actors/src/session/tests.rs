use super::*;
use crate::test_support::*;

/// Decides and applies `event` as the PlayerActor would, returning the decision.
fn step(actor: &mut SessionActor, event: &EventEnvelope) -> SessionDecision {
    let d = actor.decide(&key(), event);
    actor.apply(d.session_id.as_ref(), d.started, d.closed.as_ref(), event.timestamp);
    d
}

/// An actor with an open session `id` started at `at(start)` whose last event was at `at(last)`.
fn open_at(id: &str, start: i64, last: i64) -> SessionActor {
    SessionActor { open: Some(OpenSession { id: sid(id), started_at: at(start), last_event_at: at(last) }) }
}

#[test]
fn client_session_start_opens_session_with_client_id() {
    let mut actor = SessionActor::default();
    let d = step(&mut actor, &envelope(1, at(0), Some("c-1"), session_start()));
    assert_eq!(d, SessionDecision { session_id: Some(sid("c-1")), started: true, closed: None });
    assert_eq!(actor.open, Some(OpenSession { id: sid("c-1"), started_at: at(0), last_event_at: at(0) }));
}

#[test]
fn event_without_session_id_within_30_minutes_continues_session() {
    let mut actor = open_at("c-1", 0, 0);
    let d = step(&mut actor, &envelope(1, at(29), None, score(5)));
    assert_eq!(d, SessionDecision { session_id: Some(sid("c-1")), started: false, closed: None });
    let open = actor.open.unwrap();
    assert_eq!((open.id, open.started_at, open.last_event_at), (sid("c-1"), at(0), at(29)));
}

#[test]
fn exactly_30_minutes_of_inactivity_continues_session() {
    let mut actor = open_at("c-1", 0, 10);
    let d = step(&mut actor, &envelope(1, at(40), None, score(5)));
    assert_eq!(d.session_id, Some(sid("c-1")));
    assert!(!d.started);
    assert_eq!(d.closed, None);
    assert_eq!(actor.open.unwrap().last_event_at, at(40));
}

#[test]
fn over_30_minutes_inactivity_starts_derived_session_and_closes_previous_at_last_event() {
    let mut actor = open_at("c-1", 0, 10);
    let t = at(40) + Duration::seconds(1);
    let d = step(&mut actor, &envelope(1, t, None, score(5)));
    let derived = derived_session_id(&key(), t);
    assert!(derived.as_str().starts_with("d-"));
    assert_eq!(d.session_id, Some(derived.clone()));
    assert!(d.started);
    assert_eq!(
        d.closed,
        Some(ClosedSession { session_id: sid("c-1"), started_at: at(0), ended_at: at(10), length_seconds: 600 })
    );
    assert_eq!(actor.open, Some(OpenSession { id: derived, started_at: t, last_event_at: t }));
}

#[test]
fn first_event_without_any_session_starts_derived_session() {
    let mut actor = SessionActor::default();
    let d = step(&mut actor, &envelope(1, at(0), None, score(1)));
    assert_eq!(d, SessionDecision { session_id: Some(derived_session_id(&key(), at(0))), started: true, closed: None });
    assert!(actor.open.is_some());
}

#[test]
fn session_end_closes_with_client_length_when_given() {
    let mut actor = open_at("c-1", 0, 5);
    let d = step(&mut actor, &envelope(1, at(20), Some("c-1"), session_end(Some(777))));
    assert_eq!(d.session_id, Some(sid("c-1")));
    assert!(!d.started);
    assert_eq!(
        d.closed,
        Some(ClosedSession { session_id: sid("c-1"), started_at: at(0), ended_at: at(20), length_seconds: 777 })
    );
    assert_eq!(actor.open, None);
}

#[test]
fn session_end_without_client_length_closes_with_measured_length() {
    let mut actor = open_at("c-1", 0, 5);
    // No session id on the end event: it ends the open session.
    let d = step(&mut actor, &envelope(1, at(20), None, session_end(None)));
    let closed = d.closed.unwrap();
    assert_eq!((closed.session_id, closed.ended_at, closed.length_seconds), (sid("c-1"), at(20), 1200));
    assert_eq!(actor.open, None);
}

#[test]
fn session_end_with_no_open_session_closes_nothing() {
    let mut actor = SessionActor::default();
    let d = step(&mut actor, &envelope(1, at(0), Some("c-1"), session_end(Some(60))));
    assert_eq!(d.closed, None);
    assert!(!d.started);
    assert_eq!(actor.open, None);
}

#[test]
fn different_client_session_id_closes_previous_and_opens_new() {
    let mut actor = open_at("a", 0, 3);
    let d = step(&mut actor, &envelope(1, at(5), Some("b"), design("x")));
    assert_eq!(d.session_id, Some(sid("b")));
    assert!(d.started);
    assert_eq!(
        d.closed,
        Some(ClosedSession { session_id: sid("a"), started_at: at(0), ended_at: at(3), length_seconds: 180 })
    );
    assert_eq!(actor.open, Some(OpenSession { id: sid("b"), started_at: at(5), last_event_at: at(5) }));
}

#[test]
fn client_session_start_while_open_closes_previous_and_opens_new() {
    let mut actor = open_at("a", 0, 3);
    let d = step(&mut actor, &envelope(1, at(5), Some("b"), session_start()));
    assert_eq!(d.session_id, Some(sid("b")));
    assert!(d.started);
    assert_eq!(d.closed.map(|c| (c.session_id, c.length_seconds)), Some((sid("a"), 180)));
    assert_eq!(actor.open.map(|o| o.id), Some(sid("b")));
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
    assert_eq!(actor.open.unwrap().last_event_at, at(20));
}
