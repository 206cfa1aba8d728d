//! The recommendations' quality check (`gamemetrics reco-quality`): simulated players with
//! planted structure (each has a favourite kit of items, see [`crate::simulate`]); for each
//! player with at least two distinct items, the last item they took that was new to them is
//! held out and everything from that moment on is removed. The rest goes through the real
//! recommendations projection into an embedded store; then hit-rate@10 — how often the
//! held-out item is among the player's 10 recommendations — is compared with a popularity
//! baseline (the 10 most popular items the player does not have).

use crate::simulate::{self, SentEvent, SimulateOptions};
use anyhow::Context as _;
use chrono::{DateTime, Utc};
use gm_projections::model::{ProjectionName, Target};
use gm_projections::project::changes;
use gm_projections::recommend::{RecommendationStore, DEFAULT_HALF_LIFE_DAYS};
use gm_projections::{ReadModelStore, RecommendationQueries};
use gm_schemas::{Derived, EventBody, GameId, PlayerId, ProcessedBody, ProcessedEvent};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

pub const K: usize = 10;
const GAME: &str = "quality";

#[derive(Debug, Clone, PartialEq)]
pub struct QualityReport {
    pub players: usize,
    /// Players with a held-out item.
    pub tested: usize,
    pub hits: usize,
    pub popularity_hits: usize,
}

impl QualityReport {
    pub fn hit_rate(&self) -> f64 {
        self.hits as f64 / self.tested.max(1) as f64
    }
    pub fn popularity_hit_rate(&self) -> f64 {
        self.popularity_hits as f64 / self.tested.max(1) as f64
    }
    /// Hit rate over the popularity baseline's (infinite when the baseline never hits).
    pub fn lift(&self) -> f64 {
        self.hit_rate() / self.popularity_hit_rate()
    }
    pub fn summary(&self) -> String {
        format!(
            "{} players, {} with a held-out item: hit-rate@{K} recommendations {:.3} ({} hits), popularity baseline {:.3} ({} hits), ratio {:.2}",
            self.players,
            self.tested,
            self.hit_rate(),
            self.hits,
            self.popularity_hit_rate(),
            self.popularity_hits,
            self.lift()
        )
    }
}

fn item_of(e: &SentEvent) -> Option<String> {
    match e.kind() {
        "purchase" | "item_use" => e.prop("item_id").as_str().map(str::to_string),
        _ => None,
    }
}

/// Runs the check with a store under `dir`.
pub async fn run(players: usize, days: u32, seed: u64, dir: &Path) -> anyhow::Result<QualityReport> {
    let options = SimulateOptions {
        games: vec![(GAME.into(), String::new())],
        players_per_game: players,
        days,
        seed,
        ..Default::default()
    };
    let now: DateTime<Utc> = Utc::now();
    let events = simulate::plan(&options, now);
    let mut by_player: BTreeMap<&str, Vec<&SentEvent>> = BTreeMap::new();
    for e in &events {
        by_player.entry(e.player_id.as_str()).or_default().push(e);
    }
    let mut held_out: BTreeMap<String, String> = BTreeMap::new();
    let mut training: Vec<&SentEvent> = Vec::new();
    for (player, mut evs) in by_player {
        evs.sort_by_key(|e| e.timestamp);
        let mut seen = HashSet::new();
        let mut cut = None;
        for (i, e) in evs.iter().enumerate() {
            if let Some(item) = item_of(e) {
                if !seen.contains(&item) && !seen.is_empty() {
                    cut = Some((i, item.clone()));
                }
                seen.insert(item);
            }
        }
        match cut {
            Some((i, item)) => {
                held_out.insert(player.to_string(), item);
                training.extend(&evs[..i]);
            }
            None => training.extend(&evs),
        }
    }

    let store = gm_embedded::SqliteStore::open(&dir.join("quality.db")).await.context("opening the store")?;
    let processed: Vec<ProcessedEvent> = training
        .iter()
        .filter(|e| item_of(e).is_some())
        .enumerate()
        .filter_map(|(seq, e)| {
            let body: EventBody = serde_json::from_value(e.body.clone()).ok()?;
            Some(ProcessedEvent {
                game_id: GameId::parse(&e.game_id).ok()?,
                player_id: PlayerId::parse(&e.player_id).ok()?,
                seq: seq as u64 + 1,
                event_id: e.event_id,
                timestamp: e.timestamp,
                received_at: e.timestamp,
                body: ProcessedBody::Event { event: body, derived: Derived::default() },
            })
        })
        .collect();
    let mut checkpoint = None;
    for (i, batch) in processed.chunks(5_000).enumerate() {
        let next = (i as u64 + 1) * 5_000;
        let c = changes(ProjectionName::Recommendations, batch);
        store.apply(Target::Live, ProjectionName::Recommendations, 0, checkpoint, next, &c).await?;
        checkpoint = Some(next);
    }

    let game = GameId::parse(GAME)?;
    let mut report = QualityReport { players, tested: held_out.len(), hits: 0, popularity_hits: 0 };
    for (player, item) in &held_out {
        let player = PlayerId::parse(player.as_str())?;
        let recs = store.recommendations(&game, &player, K, DEFAULT_HALF_LIFE_DAYS, now).await?;
        if recs.items.iter().any(|r| &r.item == item) {
            report.hits += 1;
        }
        let input = store.scoring_input(&game, &player, K).await?;
        let owned: HashSet<&str> = input.owned.iter().map(|(i, _, _)| i.as_str()).collect();
        let popular: Vec<&str> =
            input.popular.iter().map(|(i, _)| i.as_str()).filter(|i| !owned.contains(i)).take(K).collect();
        if popular.contains(&item.as_str()) {
            report.popularity_hits += 1;
        }
    }
    store.close().await;
    Ok(report)
}
