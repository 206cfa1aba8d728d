//! Tables of the recommendations projection (see `gm_projections::recommend`):
//!
//! | table | what |
//! |---|---|
//! | `reco_affinity` | per player and item: summed weight, last interaction |
//! | `reco_items` | per item: players who interacted with it |
//! | `reco_pairs` | per ordered pair of distinct items: players who have both |
//! | `reco_outbox` | players whose list must be published (or tombstoned) |
//!
//! Erasure deletes the player's affinity rows and queues a tombstone; item and pair counts
//! hold no player id and stay.

use super::{store_err, SqliteStore, Table};
use crate::sql::{insert_rows, to_i64, to_u64, V};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use gm_ports::StoreError;
use gm_projections::model::ChangeSet;
use gm_projections::recommend::{RecommendationList, RecommendationStore, ScoringInput};
use gm_projections::RecommendationQueries;
use gm_schemas::{GameId, PlayerId};
use sqlx::{Row, SqliteConnection};
use std::collections::{BTreeMap, BTreeSet, HashMap};

pub(super) const RECO_AFFINITY: Table = Table {
    name: "reco_affinity",
    ddl: "CREATE TABLE IF NOT EXISTS {t} (
        game_id TEXT NOT NULL,
        player_id TEXT NOT NULL,
        item TEXT NOT NULL,
        weight REAL NOT NULL,
        last_ms INTEGER NOT NULL,
        PRIMARY KEY (game_id, player_id, item)
    ) WITHOUT ROWID",
    indexes: &[],
};
pub(super) const RECO_ITEMS: Table = Table {
    name: "reco_items",
    ddl: "CREATE TABLE IF NOT EXISTS {t} (
        game_id TEXT NOT NULL,
        item TEXT NOT NULL,
        players INTEGER NOT NULL,
        PRIMARY KEY (game_id, item)
    ) WITHOUT ROWID",
    indexes: &["CREATE INDEX IF NOT EXISTS {t}_by_players ON {t} (game_id, players)"],
};
pub(super) const RECO_PAIRS: Table = Table {
    name: "reco_pairs",
    ddl: "CREATE TABLE IF NOT EXISTS {t} (
        game_id TEXT NOT NULL,
        item_a TEXT NOT NULL,
        item_b TEXT NOT NULL,
        players INTEGER NOT NULL,
        PRIMARY KEY (game_id, item_a, item_b)
    ) WITHOUT ROWID",
    indexes: &[],
};
pub(super) const RECO_OUTBOX: Table = Table {
    name: "reco_outbox",
    ddl: "CREATE TABLE IF NOT EXISTS {t} (
        game_id TEXT NOT NULL,
        player_id TEXT NOT NULL,
        erased INTEGER NOT NULL,
        PRIMARY KEY (game_id, player_id)
    ) WITHOUT ROWID",
    indexes: &[],
};

/// `tables`: affinity, items, pairs, outbox (live or rebuild names). Erased players are
/// forgotten before the batch's interactions, players who withdrew consent to
/// personalisation after them (what they did before counts in the items, as it would have in
/// an earlier batch).
pub(super) async fn apply(conn: &mut SqliteConnection, tables: [&str; 4], c: &ChangeSet) -> Result<(), sqlx::Error> {
    let [affinity, _, _, outbox] = tables;
    forget(conn, affinity, outbox, &c.erased).await?;
    apply_interactions(conn, tables, c).await?;
    forget(conn, affinity, outbox, &c.forgotten).await
}

/// The players' interactions deleted and their lists tombstoned (the outbox publishes none).
async fn forget(
    conn: &mut SqliteConnection,
    affinity: &str,
    outbox: &str,
    players: &[(gm_schemas::GameId, gm_schemas::PlayerId)],
) -> Result<(), sqlx::Error> {
    for (game, player) in players {
        sqlx::query(&format!("DELETE FROM {affinity} WHERE game_id = ? AND player_id = ?"))
            .bind(game.as_str())
            .bind(player.as_str())
            .execute(&mut *conn)
            .await?;
        sqlx::query(&format!(
            "INSERT INTO {outbox} (game_id, player_id, erased) VALUES (?, ?, 1)
             ON CONFLICT (game_id, player_id) DO UPDATE SET erased = 1"
        ))
        .bind(game.as_str())
        .bind(player.as_str())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn apply_interactions(conn: &mut SqliteConnection, tables: [&str; 4], c: &ChangeSet) -> Result<(), sqlx::Error> {
    let [affinity, items, pairs, outbox] = tables;
    if c.interactions.is_empty() {
        return Ok(());
    }
    let mut by_player: BTreeMap<(&str, &str), BTreeSet<&str>> = BTreeMap::new();
    for i in &c.interactions {
        by_player.entry((i.game_id.as_str(), i.player_id.as_str())).or_default().insert(i.item.as_str());
    }
    let mut item_counts: HashMap<(String, String), i64> = HashMap::new();
    let mut pair_counts: HashMap<(String, String, String), i64> = HashMap::new();
    for ((game, player), batch_items) in &by_player {
        let existing: BTreeSet<String> =
            sqlx::query_scalar(&format!("SELECT item FROM {affinity} WHERE game_id = ? AND player_id = ?"))
                .bind(*game)
                .bind(*player)
                .fetch_all(&mut *conn)
                .await?
                .into_iter()
                .collect();
        let new: Vec<&str> = batch_items.iter().copied().filter(|i| !existing.contains(*i)).collect();
        for (k, n) in new.iter().enumerate() {
            *item_counts.entry((game.to_string(), n.to_string())).or_default() += 1;
            let others = existing.iter().map(String::as_str).chain(new[..k].iter().copied());
            for o in others {
                *pair_counts.entry((game.to_string(), n.to_string(), o.to_string())).or_default() += 1;
                *pair_counts.entry((game.to_string(), o.to_string(), n.to_string())).or_default() += 1;
            }
        }
    }
    if !item_counts.is_empty() {
        let rows = item_counts.into_iter().map(|((g, i), n)| vec![V::T(g), V::T(i), V::I(n)]).collect();
        insert_rows(
            conn,
            &format!("INSERT INTO {items} (game_id, item, players) VALUES"),
            "ON CONFLICT (game_id, item) DO UPDATE SET players = players + excluded.players",
            3,
            rows,
        )
        .await?;
    }
    if !pair_counts.is_empty() {
        let rows = pair_counts.into_iter().map(|((g, a, b), n)| vec![V::T(g), V::T(a), V::T(b), V::I(n)]).collect();
        insert_rows(
            conn,
            &format!("INSERT INTO {pairs} (game_id, item_a, item_b, players) VALUES"),
            "ON CONFLICT (game_id, item_a, item_b) DO UPDATE SET players = players + excluded.players",
            4,
            rows,
        )
        .await?;
    }
    let rows = c
        .interactions
        .iter()
        .map(|i| {
            vec![
                V::T(i.game_id.to_string()),
                V::T(i.player_id.to_string()),
                V::T(i.item.clone()),
                V::F(i.weight),
                V::I(i.last_at.timestamp_millis()),
            ]
        })
        .collect();
    insert_rows(
        conn,
        &format!("INSERT INTO {affinity} (game_id, player_id, item, weight, last_ms) VALUES"),
        "ON CONFLICT (game_id, player_id, item) DO UPDATE SET
         weight = weight + excluded.weight, last_ms = max(last_ms, excluded.last_ms)",
        5,
        rows,
    )
    .await?;
    let rows = by_player.keys().map(|(g, p)| vec![V::T(g.to_string()), V::T(p.to_string()), V::I(0)]).collect();
    insert_rows(
        conn,
        &format!("INSERT INTO {outbox} (game_id, player_id, erased) VALUES"),
        "ON CONFLICT (game_id, player_id) DO UPDATE SET erased = 0",
        3,
        rows,
    )
    .await
    .map(|_| ())
}

/// A JSON array of the items, the one parameter that `json_each` turns into a set in SQL.
fn json_list<'a>(items: impl IntoIterator<Item = &'a String>) -> String {
    serde_json::Value::Array(items.into_iter().map(|i| serde_json::Value::String(i.clone())).collect()).to_string()
}

fn ms(v: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(v).unwrap_or_default()
}

#[async_trait]
impl RecommendationStore for SqliteStore {
    async fn pending(&self, limit: usize) -> Result<Vec<(GameId, PlayerId, bool)>, StoreError> {
        let rows = sqlx::query("SELECT game_id, player_id, erased FROM reco_outbox LIMIT ?")
            .bind(to_i64(limit as u64))
            .fetch_all(&self.inner.reads)
            .await
            .map_err(store_err)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let game: String = r.try_get(0).map_err(store_err)?;
            let player: String = r.try_get(1).map_err(store_err)?;
            let erased: i64 = r.try_get(2).map_err(store_err)?;
            let (Ok(game), Ok(player)) = (GameId::parse(game), PlayerId::parse(player)) else { continue };
            out.push((game, player, erased != 0));
        }
        Ok(out)
    }

    async fn clear_pending(&self, done: &[(GameId, PlayerId)]) -> Result<(), StoreError> {
        let mut w = self.begin().await?;
        let result = async {
            for (g, p) in done {
                sqlx::query("DELETE FROM reco_outbox WHERE game_id = ? AND player_id = ?")
                    .bind(g.as_str())
                    .bind(p.as_str())
                    .execute(&mut w.conn)
                    .await
                    .map_err(store_err)?;
            }
            Ok(())
        }
        .await;
        Self::finish(&mut w, result).await
    }

    async fn scoring_input(&self, game: &GameId, player: &PlayerId, limit: usize) -> Result<ScoringInput, StoreError> {
        let mut conn = self.inner.reads.acquire().await.map_err(store_err)?;
        let owned_rows =
            sqlx::query("SELECT item, weight, last_ms FROM reco_affinity WHERE game_id = ? AND player_id = ?")
                .bind(game.as_str())
                .bind(player.as_str())
                .fetch_all(&mut *conn)
                .await
                .map_err(store_err)?;
        let mut input = ScoringInput::default();
        for r in &owned_rows {
            input.owned.push((
                r.try_get(0).map_err(store_err)?,
                r.try_get(1).map_err(store_err)?,
                ms(r.try_get(2).map_err(store_err)?),
            ));
        }
        // Four statements whatever the number of items (as on PostgreSQL): each statement is
        // a round trip to SQLite's worker thread, which costs more than the lookup itself.
        let owned_items = json_list(input.owned.iter().map(|(i, _, _)| i));
        let pair_rows = sqlx::query(
            "SELECT item_a, item_b, players FROM reco_pairs
             WHERE game_id = ? AND item_a IN (SELECT value FROM json_each(?))
             ORDER BY item_a, item_b",
        )
        .bind(game.as_str())
        .bind(&owned_items)
        .fetch_all(&mut *conn)
        .await
        .map_err(store_err)?;
        let mut needed: BTreeSet<String> = input.owned.iter().map(|(i, _, _)| i.clone()).collect();
        for r in &pair_rows {
            let (a, b): (String, String) = (r.try_get(0).map_err(store_err)?, r.try_get(1).map_err(store_err)?);
            let n: i64 = r.try_get(2).map_err(store_err)?;
            needed.insert(b.clone());
            input.pairs.push((a, b, to_u64(n)));
        }
        let needed_items = json_list(&needed);
        let item_rows = sqlx::query(
            "SELECT item, players FROM reco_items WHERE game_id = ? AND item IN (SELECT value FROM json_each(?))",
        )
        .bind(game.as_str())
        .bind(&needed_items)
        .fetch_all(&mut *conn)
        .await
        .map_err(store_err)?;
        let mut counts: HashMap<String, u64> = HashMap::with_capacity(item_rows.len());
        for r in &item_rows {
            counts.insert(r.try_get(0).map_err(store_err)?, to_u64(r.try_get(1).map_err(store_err)?));
        }
        for item in needed {
            let n = counts.get(&item).copied().unwrap_or(0);
            input.item_players.insert(item, n);
        }
        let popular =
            sqlx::query("SELECT item, players FROM reco_items WHERE game_id = ? ORDER BY players DESC, item LIMIT ?")
                .bind(game.as_str())
                .bind(to_i64((limit + input.owned.len()) as u64))
                .fetch_all(&mut *conn)
                .await
                .map_err(store_err)?;
        for r in &popular {
            input.popular.push((r.try_get(0).map_err(store_err)?, to_u64(r.try_get(1).map_err(store_err)?)));
        }
        Ok(input)
    }
}

#[async_trait]
impl RecommendationQueries for SqliteStore {
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
