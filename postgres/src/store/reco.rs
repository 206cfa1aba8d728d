//! The recommendations projection on PostgreSQL (tables in
//! `migrations/0011_recommendations.sql`); the semantics of the embedded store's
//! `store/reco.rs`.

use super::{unique_erased, PgStore};
use crate::error::{store_err, to_i64, to_u64};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use gm_ports::StoreError;
use gm_projections::model::ChangeSet;
use gm_projections::recommend::{score, RecommendationList, RecommendationStore, ScoringInput};
use gm_projections::RecommendationQueries;
use gm_schemas::{GameId, PlayerId};
use sqlx::postgres::PgConnection;
use std::collections::{BTreeMap, BTreeSet, HashMap};

pub(super) const TABLES: &[&str] = &["reco_affinity", "reco_items", "reco_pairs", "reco_outbox"];

/// `tables`: affinity, items, pairs, outbox (live or rebuild names).
pub(super) async fn apply(conn: &mut PgConnection, tables: [&str; 4], c: &ChangeSet) -> Result<(), sqlx::Error> {
    let [affinity, items, pairs, outbox] = tables;
    if !c.erased.is_empty() {
        let (games, players) = unique_erased(&c.erased);
        sqlx::query(&format!(
            "DELETE FROM {affinity} AS t USING UNNEST($1::text[], $2::text[]) AS e(game_id, player_id)
             WHERE t.game_id = e.game_id AND t.player_id = e.player_id"
        ))
        .bind(&games)
        .bind(&players)
        .execute(&mut *conn)
        .await?;
        sqlx::query(&format!(
            "INSERT INTO {outbox} (game_id, player_id, erased)
             SELECT g, p, true FROM UNNEST($1::text[], $2::text[]) AS e(g, p)
             ON CONFLICT (game_id, player_id) DO UPDATE SET erased = true"
        ))
        .bind(&games)
        .bind(&players)
        .execute(&mut *conn)
        .await?;
    }
    if c.interactions.is_empty() {
        return Ok(());
    }
    let mut by_player: BTreeMap<(&str, &str), BTreeSet<&str>> = BTreeMap::new();
    for i in &c.interactions {
        by_player.entry((i.game_id.as_str(), i.player_id.as_str())).or_default().insert(i.item.as_str());
    }
    let games: Vec<&str> = by_player.keys().map(|k| k.0).collect();
    let players: Vec<&str> = by_player.keys().map(|k| k.1).collect();
    let existing_rows: Vec<(String, String, String)> = sqlx::query_as(&format!(
        "SELECT t.game_id, t.player_id, t.item FROM {affinity} AS t
         JOIN UNNEST($1::text[], $2::text[]) AS e(game_id, player_id)
           ON t.game_id = e.game_id AND t.player_id = e.player_id"
    ))
    .bind(&games)
    .bind(&players)
    .fetch_all(&mut *conn)
    .await?;
    let mut existing: HashMap<(String, String), BTreeSet<String>> = HashMap::new();
    for (g, p, i) in existing_rows {
        existing.entry((g, p)).or_default().insert(i);
    }
    let mut item_counts: BTreeMap<(String, String), i64> = BTreeMap::new();
    let mut pair_counts: BTreeMap<(String, String, String), i64> = BTreeMap::new();
    let none = BTreeSet::new();
    for ((game, player), batch_items) in &by_player {
        let had = existing.get(&(game.to_string(), player.to_string())).unwrap_or(&none);
        let new: Vec<&str> = batch_items.iter().copied().filter(|i| !had.contains(*i)).collect();
        for (k, n) in new.iter().enumerate() {
            *item_counts.entry((game.to_string(), n.to_string())).or_default() += 1;
            for o in had.iter().map(String::as_str).chain(new[..k].iter().copied()) {
                *pair_counts.entry((game.to_string(), n.to_string(), o.to_string())).or_default() += 1;
                *pair_counts.entry((game.to_string(), o.to_string(), n.to_string())).or_default() += 1;
            }
        }
    }
    if !item_counts.is_empty() {
        let g: Vec<&str> = item_counts.keys().map(|k| k.0.as_str()).collect();
        let i: Vec<&str> = item_counts.keys().map(|k| k.1.as_str()).collect();
        let n: Vec<i64> = item_counts.values().copied().collect();
        sqlx::query(&format!(
            "INSERT INTO {items} AS t (game_id, item, players)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[])
             ON CONFLICT (game_id, item) DO UPDATE SET players = t.players + excluded.players"
        ))
        .bind(g)
        .bind(i)
        .bind(n)
        .execute(&mut *conn)
        .await?;
    }
    if !pair_counts.is_empty() {
        let g: Vec<&str> = pair_counts.keys().map(|k| k.0.as_str()).collect();
        let a: Vec<&str> = pair_counts.keys().map(|k| k.1.as_str()).collect();
        let b: Vec<&str> = pair_counts.keys().map(|k| k.2.as_str()).collect();
        let n: Vec<i64> = pair_counts.values().copied().collect();
        sqlx::query(&format!(
            "INSERT INTO {pairs} AS t (game_id, item_a, item_b, players)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[])
             ON CONFLICT (game_id, item_a, item_b) DO UPDATE SET players = t.players + excluded.players"
        ))
        .bind(g)
        .bind(a)
        .bind(b)
        .bind(n)
        .execute(&mut *conn)
        .await?;
    }
    // One row per key (interactions are merged per player and item by the projection).
    let mut merged: BTreeMap<(&str, &str, &str), (f64, DateTime<Utc>)> = BTreeMap::new();
    for i in &c.interactions {
        let slot =
            merged.entry((i.game_id.as_str(), i.player_id.as_str(), i.item.as_str())).or_insert((0.0, i.last_at));
        slot.0 += i.weight;
        slot.1 = slot.1.max(i.last_at);
    }
    sqlx::query(&format!(
        "INSERT INTO {affinity} AS t (game_id, player_id, item, weight, last_at)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::float8[], $5::timestamptz[])
         ON CONFLICT (game_id, player_id, item) DO UPDATE SET
             weight = t.weight + excluded.weight, last_at = GREATEST(t.last_at, excluded.last_at)"
    ))
    .bind(merged.keys().map(|k| k.0).collect::<Vec<_>>())
    .bind(merged.keys().map(|k| k.1).collect::<Vec<_>>())
    .bind(merged.keys().map(|k| k.2).collect::<Vec<_>>())
    .bind(merged.values().map(|v| v.0).collect::<Vec<_>>())
    .bind(merged.values().map(|v| v.1).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;
    sqlx::query(&format!(
        "INSERT INTO {outbox} (game_id, player_id, erased)
         SELECT g, p, false FROM UNNEST($1::text[], $2::text[]) AS e(g, p)
         ON CONFLICT (game_id, player_id) DO UPDATE SET erased = false"
    ))
    .bind(games)
    .bind(players)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[async_trait]
impl RecommendationStore for PgStore {
    async fn pending(&self, limit: usize) -> Result<Vec<(GameId, PlayerId, bool)>, StoreError> {
        let rows: Vec<(String, String, bool)> =
            sqlx::query_as("SELECT game_id, player_id, erased FROM reco_outbox LIMIT $1")
                .bind(to_i64(limit as u64))
                .fetch_all(&self.pool)
                .await
                .map_err(store_err)?;
        Ok(rows
            .into_iter()
            .filter_map(|(g, p, e)| Some((GameId::parse(g).ok()?, PlayerId::parse(p).ok()?, e)))
            .collect())
    }

    async fn clear_pending(&self, done: &[(GameId, PlayerId)]) -> Result<(), StoreError> {
        let games: Vec<&str> = done.iter().map(|(g, _)| g.as_str()).collect();
        let players: Vec<&str> = done.iter().map(|(_, p)| p.as_str()).collect();
        sqlx::query(
            "DELETE FROM reco_outbox AS t USING UNNEST($1::text[], $2::text[]) AS e(game_id, player_id)
             WHERE t.game_id = e.game_id AND t.player_id = e.player_id",
        )
        .bind(games)
        .bind(players)
        .execute(&self.pool)
        .await
        .map_err(store_err)?;
        Ok(())
    }

    async fn scoring_input(&self, game: &GameId, player: &PlayerId, limit: usize) -> Result<ScoringInput, StoreError> {
        let owned: Vec<(String, f64, DateTime<Utc>)> =
            sqlx::query_as("SELECT item, weight, last_at FROM reco_affinity WHERE game_id = $1 AND player_id = $2")
                .bind(game.as_str())
                .bind(player.as_str())
                .fetch_all(&self.pool)
                .await
                .map_err(store_err)?;
        let items: Vec<&str> = owned.iter().map(|(i, _, _)| i.as_str()).collect();
        let pairs: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT item_a, item_b, players FROM reco_pairs WHERE game_id = $1 AND item_a = ANY($2::text[])",
        )
        .bind(game.as_str())
        .bind(&items)
        .fetch_all(&self.pool)
        .await
        .map_err(store_err)?;
        let mut needed: BTreeSet<&str> = items.iter().copied().collect();
        needed.extend(pairs.iter().map(|(_, b, _)| b.as_str()));
        let needed: Vec<&str> = needed.into_iter().collect();
        let counts: Vec<(String, i64)> =
            sqlx::query_as("SELECT item, players FROM reco_items WHERE game_id = $1 AND item = ANY($2::text[])")
                .bind(game.as_str())
                .bind(&needed)
                .fetch_all(&self.pool)
                .await
                .map_err(store_err)?;
        let popular: Vec<(String, i64)> = sqlx::query_as(
            "SELECT item, players FROM reco_items WHERE game_id = $1 ORDER BY players DESC, item COLLATE \"C\" LIMIT $2",
        )
        .bind(game.as_str())
        .bind(to_i64((limit + owned.len()) as u64))
        .fetch_all(&self.pool)
        .await
        .map_err(store_err)?;
        let mut item_players: HashMap<String, u64> = needed.iter().map(|i| (i.to_string(), 0)).collect();
        item_players.extend(counts.into_iter().map(|(i, n)| (i, to_u64(n))));
        Ok(ScoringInput {
            pairs: pairs.into_iter().map(|(a, b, n)| (a, b, to_u64(n))).collect(),
            owned,
            item_players,
            popular: popular.into_iter().map(|(i, n)| (i, to_u64(n))).collect(),
        })
    }
}

#[async_trait]
impl RecommendationQueries for PgStore {
    async fn recommendations(
        &self,
        game: &GameId,
        player: &PlayerId,
        limit: usize,
        half_life_days: f64,
        now: DateTime<Utc>,
    ) -> Result<RecommendationList, StoreError> {
        let input = self.scoring_input(game, player, limit).await?;
        Ok(RecommendationList {
            game_id: game.to_string(),
            player_id: player.to_string(),
            generated_at: now,
            items: score(&input, limit, half_life_days, now),
        })
    }
}
