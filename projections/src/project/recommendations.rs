//! The recommendations projection: a batch's interactions, merged per player and item.

use crate::events::{after_last_erasure, erased, player_events};
use crate::model::ChangeSet;
use crate::recommend::{Interaction, PURCHASE_WEIGHT, USE_WEIGHT};
use chrono::{DateTime, Utc};
use gm_schemas::events::{EventBody, ResourceFlow};
use gm_schemas::{GameId, PlayerId, ProcessedEvent};
use std::collections::BTreeMap;

/// Interactions of a batch (after each player's last erasure in it), merged per player and item.
///
/// Consent: a `consent_update` with `personalisation: false` forgets the player after the
/// batch's interactions (`forgotten`: their interactions deleted, their list tombstoned; the
/// counts they added to the items stay, whichever batch they came in), and events the actor
/// withheld from personalisation add nothing. Interactions count again from the batch after
/// a `consent_update` that gives it back (within the withdrawal's batch they would be
/// forgotten with it, so none after the withdrawal is used).
pub(crate) fn changes(events: &[ProcessedEvent]) -> ChangeSet {
    let kept = after_last_erasure(events);
    let mut last_withdrawal: BTreeMap<(&GameId, &PlayerId), usize> = BTreeMap::new();
    for (i, (e, body, _)) in player_events(kept.iter().copied()).enumerate() {
        if matches!(body, EventBody::ConsentUpdate(c) if !c.personalisation) {
            last_withdrawal.insert((&e.game_id, &e.player_id), i);
        }
    }
    let mut merged: BTreeMap<(GameId, PlayerId, String), (f64, DateTime<Utc>)> = BTreeMap::new();
    for (i, (e, body, derived)) in player_events(kept.iter().copied()).enumerate() {
        if derived.personalisation_withheld
            || last_withdrawal.get(&(&e.game_id, &e.player_id)).is_some_and(|cut| i > *cut)
        {
            continue;
        }
        let (item, weight) = match body {
            EventBody::Purchase(p) => (p.item_id.to_string(), PURCHASE_WEIGHT),
            EventBody::ItemUse(u) => (u.item_id.to_string(), USE_WEIGHT),
            EventBody::Resource(r) if r.flow == ResourceFlow::Sink => match &r.item_id {
                Some(item) => (item.to_string(), USE_WEIGHT),
                None => continue,
            },
            _ => continue,
        };
        let slot = merged.entry((e.game_id.clone(), e.player_id.clone(), item)).or_insert((0.0, e.timestamp));
        slot.0 += weight;
        slot.1 = slot.1.max(e.timestamp);
    }
    ChangeSet {
        interactions: merged
            .into_iter()
            .map(|((game_id, player_id, item), (weight, last_at))| Interaction {
                game_id,
                player_id,
                item,
                weight,
                last_at,
            })
            .collect(),
        erased: erased(events),
        forgotten: last_withdrawal.into_keys().map(|(g, p)| (g.clone(), p.clone())).collect(),
        ..Default::default()
    }
}
