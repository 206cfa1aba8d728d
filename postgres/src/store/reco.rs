//! The recommendations projection on PostgreSQL (tables in
//! `migrations/0011_recommendations.sql`); the semantics of the embedded store's
//! `store/reco.rs`.

use super::{unique_erased, PgStore};
use crate::error::{store_err, to_i64, to_millis, to_u64};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use gm_ports::StoreError;
use gm_projections::model::ChangeSet;
use gm_projections::recommend::{RecommendationList, RecommendationStore, ScoringInput};
use gm_projections::RecommendationQueries;
use gm_schemas::{GameId, PlayerId};
use sqlx::postgres::PgConnection;
use std::collections::{BTreeMap, BTreeSet, HashMap};

pub(super) const TABLES: &[&str] = &["reco_affinity", "reco_items", "reco_pairs", "reco_outbox"];

/// `tables`: affinity, items, pairs, outbox (live or rebuild names). Erased players are
/// forgotten before the batch's interactions, players who withdrew consent to
/// personalisation after them (what they did before counts in the items, as it would have in
/// an earlier batch).
pub(super) async fn apply(conn: &mut PgConnection, tables: [&str; 4], c: &ChangeSet) -> Result<(), sqlx::Error> {
    let [affinity, _, _, outbox] = tables;
    forget(conn, affinity, outbox, &c.erased).await?;
    apply_interactions(conn, tables, c).await?;
    forget(conn, affinity, outbox, &c.forgotten).await
}

/// The players' interactions deleted and their lists tombstoned (the outbox publishes none).
async fn forget(
    conn: &mut PgConnection,
    affinity: &str,
    outbox: &str,
    forgotten: &[(gm_schemas::GameId, gm_schemas::PlayerId)],
) -> Result<(), sqlx::Error> {
    if !forgotten.is_empty() {
        let (games, players) = unique_erased(forgotten);
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
    Ok(())
}

async fn apply_interactions(conn: &mut PgConnection, tables: [&str; 4], c: &ChangeSet) -> Result<(), sqlx::Error> {
    let [affinity, items, pairs, outbox] = tables;
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
        let mut inputs = self.scoring_inputs(&[(game.clone(), player.clone())], limit).await?;
        Ok(inputs.pop().unwrap_or_default())
    }

    /// Four queries whatever the number of players: their items, the pairs of those items,
    /// the player counts of every item named, and each game's most popular items.
    async fn scoring_inputs(
        &self,
        players: &[(GameId, PlayerId)],
        limit: usize,
    ) -> Result<Vec<ScoringInput>, StoreError> {
        if players.is_empty() {
            return Ok(Vec::new());
        }
        let unique: BTreeSet<(&str, &str)> = players.iter().map(|(g, p)| (g.as_str(), p.as_str())).collect();
        let mut conn = self.pool.acquire().await.map_err(store_err)?;
        let rows: Vec<(String, String, String, f64, DateTime<Utc>)> = sqlx::query_as(
            "SELECT t.game_id, t.player_id, t.item, t.weight, t.last_at FROM reco_affinity AS t
             JOIN UNNEST($1::text[], $2::text[]) AS e(game_id, player_id)
               ON t.game_id = e.game_id AND t.player_id = e.player_id",
        )
        .bind(unique.iter().map(|k| k.0).collect::<Vec<_>>())
        .bind(unique.iter().map(|k| k.1).collect::<Vec<_>>())
        .fetch_all(&mut *conn)
        .await
        .map_err(store_err)?;
        let mut owned: HashMap<(String, String), Vec<(String, f64, DateTime<Utc>)>> = HashMap::new();
        for (game, player, item, weight, last_at) in rows {
            owned.entry((game, player)).or_default().push((item, weight, to_millis(last_at)));
        }
        for items in owned.values_mut() {
            items.sort_by(|a, b| a.0.cmp(&b.0));
        }

        let owned_items: BTreeSet<(&str, &str)> = owned
            .iter()
            .flat_map(|((g, _), items)| items.iter().map(move |(i, _, _)| (g.as_str(), i.as_str())))
            .collect();
        let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
            "SELECT t.game_id, t.item_a, t.item_b, t.players FROM reco_pairs AS t
             JOIN UNNEST($1::text[], $2::text[]) AS e(game_id, item)
               ON t.game_id = e.game_id AND t.item_a = e.item",
        )
        .bind(owned_items.iter().map(|k| k.0).collect::<Vec<_>>())
        .bind(owned_items.iter().map(|k| k.1).collect::<Vec<_>>())
        .fetch_all(&mut *conn)
        .await
        .map_err(store_err)?;
        let mut pairs: HashMap<(String, String), Vec<(String, String, u64)>> = HashMap::new();
        for (game, a, b, n) in rows {
            pairs.entry((game, a.clone())).or_default().push((a, b, to_u64(n)));
        }
        for list in pairs.values_mut() {
            list.sort_by(|x, y| x.1.cmp(&y.1));
        }

        let mut needed: BTreeSet<(&str, &str)> = owned_items.clone();
        needed
            .extend(pairs.iter().flat_map(|((g, _), list)| list.iter().map(move |(_, b, _)| (g.as_str(), b.as_str()))));
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT t.game_id, t.item, t.players FROM reco_items AS t
             JOIN UNNEST($1::text[], $2::text[]) AS e(game_id, item) ON t.game_id = e.game_id AND t.item = e.item",
        )
        .bind(needed.iter().map(|k| k.0).collect::<Vec<_>>())
        .bind(needed.iter().map(|k| k.1).collect::<Vec<_>>())
        .fetch_all(&mut *conn)
        .await
        .map_err(store_err)?;
        let counts: HashMap<(String, String), u64> = rows.into_iter().map(|(g, i, n)| ((g, i), to_u64(n))).collect();

        // Each game's top `limit + most items a player of it owns`; each player keeps
        // `limit + own items` of them, as a query for that player alone would return.
        let mut per_game: BTreeMap<&str, usize> = BTreeMap::new();
        for (game, player) in &unique {
            let n = owned.get(&(game.to_string(), player.to_string())).map_or(0, Vec::len);
            let slot = per_game.entry(game).or_default();
            *slot = (*slot).max(limit + n);
        }
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT e.game_id, t.item, t.players FROM UNNEST($1::text[], $2::int8[]) AS e(game_id, n)
             CROSS JOIN LATERAL (
                 SELECT item, players FROM reco_items WHERE game_id = e.game_id
                 ORDER BY players DESC, item COLLATE \"C\" LIMIT e.n
             ) AS t
             ORDER BY e.game_id, t.players DESC, t.item COLLATE \"C\"",
        )
        .bind(per_game.keys().copied().collect::<Vec<_>>())
        .bind(per_game.values().map(|&n| to_i64(n as u64)).collect::<Vec<_>>())
        .fetch_all(&mut *conn)
        .await
        .map_err(store_err)?;
        let mut popular: HashMap<String, Vec<(String, u64)>> = HashMap::new();
        for (game, item, n) in rows {
            popular.entry(game).or_default().push((item, to_u64(n)));
        }

        Ok(players
            .iter()
            .map(|(game, player)| {
                let game = game.as_str();
                let owned = owned.get(&(game.to_string(), player.to_string())).cloned().unwrap_or_default();
                let pairs: Vec<(String, String, u64)> = owned
                    .iter()
                    .flat_map(|(item, _, _)| pairs.get(&(game.to_string(), item.clone())).into_iter().flatten())
                    .cloned()
                    .collect();
                let item_players: HashMap<String, u64> = owned
                    .iter()
                    .map(|(i, _, _)| i)
                    .chain(pairs.iter().map(|(_, b, _)| b))
                    .map(|i| (i.clone(), counts.get(&(game.to_string(), i.clone())).copied().unwrap_or(0)))
                    .collect();
                let popular = popular
                    .get(game)
                    .map(|top| top.iter().take(limit + owned.len()).cloned().collect())
                    .unwrap_or_default();
                ScoringInput { owned, pairs, item_players, popular }
            })
            .collect())
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
        Ok(RecommendationList::scored(game, player, &input, limit, half_life_days, now))
    }
}
