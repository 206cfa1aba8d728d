//! Pure projection logic: a batch of processed events in, a change set out. No I/O, so every
//! rule is unit tested in memory; adapters only apply the result.

use crate::events::{after_last_erasure, erased, player_events};
use crate::model::*;
use gm_schemas::events::{EventBody, ProgressionStatus};
use gm_schemas::{Currency, GameId, PlayerId, ProcessedBody, ProcessedEvent};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

/// What `projection` changes for `events` (already in per-partition offset order).
pub fn changes(projection: ProjectionName, events: &[ProcessedEvent]) -> ChangeSet {
    let mut changes = projection_changes(projection, events);
    // An erasure is confirmed only under the player's id: one still under its pseudonym
    // (replayed after its completion unlinked the id, e.g. after a restore of the data
    // database) removed nothing keyed by the id, and the gateway must see it as not applied.
    changes.confirmed_erasures = events
        .iter()
        .filter_map(|e| match e.body {
            ProcessedBody::PlayerErased { erasure_id, .. } if !gm_privacy::is_pseudonym(e.player_id.as_str()) => {
                Some(erasure_id)
            }
            ProcessedBody::PlayerErased { .. } | ProcessedBody::Event { .. } => None,
        })
        .collect();
    changes
}

fn projection_changes(projection: ProjectionName, events: &[ProcessedEvent]) -> ChangeSet {
    if projection == ProjectionName::Recommendations {
        // Recommendations follow the personalisation consent (see `recommendations`).
        return recommendations::changes(events);
    }
    let counted = counted_for_analytics(events);
    let events: &[ProcessedEvent] = &counted;
    match projection {
        ProjectionName::PlayerProfiles => profiles(events),
        ProjectionName::DailyActivity => activity(events),
        ProjectionName::Sessions => sessions(events),
        ProjectionName::Revenue => revenue(events),
        ProjectionName::Funnel => funnel(events),
        ProjectionName::Leaderboards => leaderboards::changes(events),
        // Retention keeps its own copy of the active days, next to the first-seen cohorts.
        ProjectionName::Retention => activity(events),
        ProjectionName::Recommendations => recommendations::changes(events),
    }
}

/// The batch without the events the player's actor withheld from analytics (consent to
/// analytics withdrawn, `Derived::analytics_withheld`): no analytics read model counts them.
/// Borrowed when the batch has none.
fn counted_for_analytics(events: &[ProcessedEvent]) -> Cow<'_, [ProcessedEvent]> {
    let withheld =
        |e: &ProcessedEvent| matches!(&e.body, ProcessedBody::Event { derived, .. } if derived.analytics_withheld);
    if events.iter().any(withheld) {
        Cow::Owned(events.iter().filter(|e| !withheld(e)).cloned().collect())
    } else {
        Cow::Borrowed(events)
    }
}

fn profiles(events: &[ProcessedEvent]) -> ChangeSet {
    let mut by_player: BTreeMap<(GameId, PlayerId), ProfileDelta> = BTreeMap::new();
    let kept = after_last_erasure(events);
    for (e, body, derived) in player_events(kept.iter().copied()) {
        let delta = by_player.entry((e.game_id.clone(), e.player_id.clone())).or_insert_with(|| ProfileDelta {
            game_id: e.game_id.clone(),
            player_id: e.player_id.clone(),
            first_seen: e.timestamp,
            last_seen: e.timestamp,
            events: 0,
            sessions: 0,
            playtime_seconds: 0,
            purchases: 0,
            levels_completed: 0,
            xp: 0,
            current_level: None,
            country: None,
            language: None,
            consent: None,
            revenue: Vec::new(),
            last_seq: e.seq,
        });
        delta.first_seen = delta.first_seen.min(e.timestamp);
        delta.last_seen = delta.last_seen.max(e.timestamp);
        // A session_end the session timer emitted is not an event of the player.
        if !derived.closed_by_timer {
            delta.events += 1;
        }
        delta.last_seq = delta.last_seq.max(e.seq);
        if derived.session_started {
            delta.sessions += 1;
        }
        if let Some(closed) = &derived.closed_session {
            delta.playtime_seconds += closed.length_seconds;
        }
        match body {
            EventBody::Purchase(p) => {
                delta.purchases += 1;
                add_revenue(&mut delta.revenue, p.currency, p.amount_minor.get());
            }
            EventBody::Progression(p) => {
                delta.current_level = Some(p.level_id.to_string());
                if p.status == ProgressionStatus::Complete {
                    delta.levels_completed += 1;
                    delta.xp += p.score.unwrap_or(0);
                }
            }
            EventBody::ProfileUpdate(u) => {
                if u.country.is_some() {
                    delta.country = u.country.clone();
                }
                if u.language.is_some() {
                    delta.language = u.language.clone();
                }
            }
            EventBody::ConsentUpdate(c) => delta.consent = Some((c.analytics, c.personalisation)),
            _ => {}
        }
    }
    ChangeSet { profiles: by_player.into_values().collect(), erased: erased(events), ..Default::default() }
}

fn add_revenue(revenue: &mut Vec<(Currency, i64)>, currency: Currency, amount: i64) {
    match revenue.iter_mut().find(|(c, _)| *c == currency) {
        Some((_, total)) => *total += amount,
        None => revenue.push((currency, amount)),
    }
}

fn activity(events: &[ProcessedEvent]) -> ChangeSet {
    let kept = after_last_erasure(events);
    let days: BTreeSet<(GameId, chrono::NaiveDate, PlayerId)> = player_events(kept.iter().copied())
        .map(|(e, _, _)| (e.game_id.clone(), e.timestamp.date_naive(), e.player_id.clone()))
        .collect();
    ChangeSet {
        active_days: days.into_iter().map(|(game_id, day, player_id)| PlayerDay { game_id, day, player_id }).collect(),
        erased: erased(events),
        ..Default::default()
    }
}

fn session_day<'a>(
    by_day: &'a mut BTreeMap<(GameId, chrono::NaiveDate), SessionDayDelta>,
    game: &GameId,
    day: chrono::NaiveDate,
) -> &'a mut SessionDayDelta {
    by_day.entry((game.clone(), day)).or_insert_with(|| SessionDayDelta {
        game_id: game.clone(),
        day,
        started: 0,
        closed: 0,
        total_length_seconds: 0,
        buckets: [0; 7],
    })
}

fn sessions(events: &[ProcessedEvent]) -> ChangeSet {
    let mut by_day: BTreeMap<(GameId, chrono::NaiveDate), SessionDayDelta> = BTreeMap::new();
    // Session counts are aggregates without player ids: erasure leaves them as they are.
    for (e, _, derived) in player_events(events) {
        if derived.session_started {
            session_day(&mut by_day, &e.game_id, e.timestamp.date_naive()).started += 1;
        }
        if let Some(closed) = &derived.closed_session {
            let d = session_day(&mut by_day, &e.game_id, closed.started_at.date_naive());
            d.closed += 1;
            d.total_length_seconds += closed.length_seconds;
            d.buckets[session_bucket(closed.length_seconds)] += 1;
        }
    }
    ChangeSet { session_days: by_day.into_values().collect(), ..Default::default() }
}

fn revenue(events: &[ProcessedEvent]) -> ChangeSet {
    let mut by_day: BTreeMap<(GameId, chrono::NaiveDate, Currency), RevenueDelta> = BTreeMap::new();
    let mut payers: BTreeSet<(GameId, chrono::NaiveDate, PlayerId)> = BTreeSet::new();
    let kept = after_last_erasure(events);
    for (e, body, _) in player_events(events) {
        if let EventBody::Purchase(p) = body {
            let day = e.timestamp.date_naive();
            let d = by_day.entry((e.game_id.clone(), day, p.currency)).or_insert_with(|| RevenueDelta {
                game_id: e.game_id.clone(),
                day,
                currency: p.currency,
                amount_minor: 0,
                purchases: 0,
            });
            d.amount_minor += p.amount_minor.get();
            d.purchases += 1;
        }
    }
    for (e, body, _) in player_events(kept.iter().copied()) {
        if matches!(body, EventBody::Purchase(_)) {
            payers.insert((e.game_id.clone(), e.timestamp.date_naive(), e.player_id.clone()));
        }
    }
    ChangeSet {
        revenue: by_day.into_values().collect(),
        payer_days: payers.into_iter().map(|(game_id, day, player_id)| PlayerDay { game_id, day, player_id }).collect(),
        erased: erased(events),
        ..Default::default()
    }
}

fn funnel(events: &[ProcessedEvent]) -> ChangeSet {
    let mut by_level: BTreeMap<(GameId, String), FunnelDelta> = BTreeMap::new();
    // Event counts are aggregates without player ids: erasure leaves them as they are.
    for (e, body, _) in player_events(events) {
        if let EventBody::Progression(p) = body {
            let d = by_level.entry((e.game_id.clone(), p.level_id.to_string())).or_insert_with(|| FunnelDelta {
                game_id: e.game_id.clone(),
                level_id: p.level_id.to_string(),
                starts: 0,
                completes: 0,
                fails: 0,
            });
            match p.status {
                ProgressionStatus::Start => d.starts += 1,
                ProgressionStatus::Complete => d.completes += 1,
                ProgressionStatus::Fail => d.fails += 1,
            }
        }
    }
    // Per player and level, the earliest start / completion / failure; like the player-days,
    // only from events after the player's last erasure (the store re-keys the older rows).
    let mut by_player: BTreeMap<(GameId, String, PlayerId), FunnelPlayerDelta> = BTreeMap::new();
    let kept = after_last_erasure(events);
    for (e, body, _) in player_events(kept.iter().copied()) {
        if let EventBody::Progression(p) = body {
            let key = (e.game_id.clone(), p.level_id.to_string(), e.player_id.clone());
            let d = by_player.entry(key).or_insert_with(|| FunnelPlayerDelta {
                game_id: e.game_id.clone(),
                level_id: p.level_id.to_string(),
                player_id: e.player_id.clone(),
                first_start: None,
                first_complete: None,
                first_fail: None,
            });
            let slot = match p.status {
                ProgressionStatus::Start => &mut d.first_start,
                ProgressionStatus::Complete => &mut d.first_complete,
                ProgressionStatus::Fail => &mut d.first_fail,
            };
            *slot = Some(slot.map_or(e.timestamp, |t| t.min(e.timestamp)));
        }
    }
    ChangeSet {
        funnel: by_level.into_values().collect(),
        funnel_players: by_player.into_values().collect(),
        erased: erased(events),
        ..Default::default()
    }
}

pub(crate) mod leaderboards;
mod recommendations;

#[cfg(test)]
mod tests;
