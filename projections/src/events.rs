//! How every projection reads a batch of processed events: the players erased in it, the
//! events that count (those after each player's last erasure in the batch) and the player
//! events with their derived facts. Below every projection (`project` and its modules), above
//! nothing of this crate.

use gm_schemas::events::EventBody;
use gm_schemas::{GameId, PlayerId, ProcessedBody, ProcessedEvent};
use std::collections::BTreeMap;

/// The players erased in the batch (`PlayerErased` events), in order.
pub(crate) fn erased(events: &[ProcessedEvent]) -> Vec<(GameId, PlayerId)> {
    events
        .iter()
        .filter(|e| matches!(e.body, ProcessedBody::PlayerErased { .. }))
        .map(|e| (e.game_id.clone(), e.player_id.clone()))
        .collect()
}

/// Events of the batch, cut at each erasure: rows of a player are only built from what came
/// after the player's last erasure in the batch (what came before is erased with it).
pub(crate) fn after_last_erasure(events: &[ProcessedEvent]) -> Vec<&ProcessedEvent> {
    let mut last_erasure: BTreeMap<(&GameId, &PlayerId), usize> = BTreeMap::new();
    for (i, e) in events.iter().enumerate() {
        if matches!(e.body, ProcessedBody::PlayerErased { .. }) {
            last_erasure.insert((&e.game_id, &e.player_id), i);
        }
    }
    events
        .iter()
        .enumerate()
        .filter(|(i, e)| last_erasure.get(&(&e.game_id, &e.player_id)).is_none_or(|cut| i > cut))
        .map(|(_, e)| e)
        .collect()
}

/// The batch's player events (not erasures), each with its typed body and derived facts.
pub(crate) fn player_events<'a>(
    events: impl IntoIterator<Item = &'a ProcessedEvent>,
) -> impl Iterator<Item = (&'a ProcessedEvent, &'a EventBody, &'a gm_schemas::Derived)> {
    events.into_iter().filter_map(|e| match &e.body {
        ProcessedBody::Event { event, derived } => Some((e, event, derived)),
        ProcessedBody::PlayerErased { .. } => None,
    })
}
