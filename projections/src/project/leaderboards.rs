//! The leaderboards projection: a batch's best scores per player, board and period.

use crate::events::{after_last_erasure, erased, player_events};
use crate::leaderboard::{BoardPeriod, Period, ScoreEntry};
use crate::model::ChangeSet;
use gm_schemas::PlayerId;

/// The leaderboards' change set: each player's best score of the batch per board and
/// period. Scores from before a player's erasure in the batch are not used.
pub(crate) fn changes(events: &[gm_schemas::ProcessedEvent]) -> ChangeSet {
    use gm_schemas::events::EventBody;
    use std::collections::BTreeMap;
    let kept = after_last_erasure(events);
    let mut best: BTreeMap<(BoardPeriod, PlayerId), i64> = BTreeMap::new();
    for (e, body, _) in player_events(kept.iter().copied()) {
        let EventBody::Score(s) = body else { continue };
        for period in Period::ALL {
            let key = BoardPeriod {
                game_id: e.game_id.clone(),
                board: s.board.to_string(),
                period,
                start: period.start_of(e.timestamp),
            };
            let slot = best.entry((key, e.player_id.clone())).or_insert(s.value);
            *slot = (*slot).max(s.value);
        }
    }
    ChangeSet {
        scores: best
            .into_iter()
            .map(|((b, player_id), score)| ScoreEntry {
                game_id: b.game_id,
                board: b.board,
                period: b.period,
                period_start: b.start,
                player_id,
                score,
            })
            .collect(),
        erased: erased(events),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};
    use gm_schemas::GameId;

    fn score_event(player: &str, seq: u64, t: &str, value: i64) -> gm_schemas::ProcessedEvent {
        use gm_schemas::events::{EventBody, Score};
        let t: DateTime<Utc> = t.parse().unwrap();
        gm_schemas::ProcessedEvent {
            game_id: GameId::parse("g").unwrap(),
            player_id: PlayerId::parse(player).unwrap(),
            seq,
            event_id: uuid::Uuid::from_u128(u128::from(seq)),
            timestamp: t,
            received_at: t,
            body: gm_schemas::ProcessedBody::Event {
                event: EventBody::Score(Score { board: gm_schemas::Name::parse("main").unwrap(), value }),
                derived: Default::default(),
            },
        }
    }

    #[test]
    fn a_batch_keeps_each_players_best_per_period_and_drops_scores_before_an_erasure() {
        let mut events = vec![
            score_event("a", 1, "2024-03-10T23:59:59Z", 50),
            score_event("a", 2, "2024-03-11T00:00:00Z", 20),
            score_event("a", 3, "2024-03-11T10:00:00Z", 30),
            score_event("b", 1, "2024-03-11T10:00:00Z", 99),
        ];
        let mut erasure = score_event("b", 2, "2024-03-11T11:00:00Z", 0);
        erasure.body = gm_schemas::ProcessedBody::PlayerErased {
            erasure_id: uuid::Uuid::from_u128(7),
            requested_at: erasure.timestamp,
        };
        events.push(erasure);
        events.push(score_event("b", 3, "2024-03-11T12:00:00Z", 5));
        let c = changes(&events);
        let got: Vec<(&str, Period, String, i64)> =
            c.scores.iter().map(|s| (s.player_id.as_str(), s.period, s.period_start.to_string(), s.score)).collect();
        let want = vec![
            ("a", Period::Daily, "2024-03-10".to_string(), 50),
            ("a", Period::Daily, "2024-03-11".to_string(), 30),
            ("b", Period::Daily, "2024-03-11".to_string(), 5),
            ("a", Period::Weekly, "2024-03-04".to_string(), 50),
            ("a", Period::Weekly, "2024-03-11".to_string(), 30),
            ("b", Period::Weekly, "2024-03-11".to_string(), 5),
            ("a", Period::AllTime, "1970-01-01".to_string(), 50),
            ("b", Period::AllTime, "1970-01-01".to_string(), 5),
        ];
        let mut got_sorted = got.clone();
        got_sorted.sort_by(|x, y| (x.1, &x.2, x.0).cmp(&(y.1, &y.2, y.0)));
        assert_eq!(got_sorted, want, "b's 99 came before the erasure and is not used");
        assert_eq!(c.erased.len(), 1);
    }
}
