//! The `events` fact table: batched inserts of the non-personal fields of processed
//! events, erasure by pseudonym, and retention by whole partitions.

use crate::error::{store_err, to_i64};
use crate::store::PgStore;
use chrono::{NaiveDate, Utc};
use gm_ports::StoreError;
use gm_schemas::{ProcessedBody, ProcessedEvent};
use sqlx::PgPool;
use std::collections::{BTreeSet, HashMap};

/// Daily partitions are created for event days at most this many days before today;
/// older events land in the default partition (and go with the next retention run).
pub const PARTITION_WINDOW_PAST_DAYS: i64 = 400;
/// … and at most this many days after today (ingest clamps far-future times anyway).
pub const PARTITION_WINDOW_FUTURE_DAYS: i64 = 2;

pub(crate) async fn drop_partitions_before(pool: &PgPool, cutoff: NaiveDate) -> Result<Vec<String>, StoreError> {
    let mut tx = pool.begin().await.map_err(store_err)?;
    let dropped: Vec<String> = sqlx::query_scalar("SELECT * FROM gm_drop_event_partitions_before($1)")
        .bind(cutoff)
        .fetch_all(&mut *tx)
        .await
        .map_err(store_err)?;
    tx.commit().await.map_err(store_err)?;
    Ok(dropped)
}

/// `type` and `properties` of an event body, as in the public format.
fn type_and_properties(body: &ProcessedBody) -> (String, serde_json::Value) {
    match body {
        ProcessedBody::Event { event, .. } => {
            let properties = match serde_json::to_value(event) {
                Ok(serde_json::Value::Object(mut o)) => o.remove("properties").unwrap_or_default(),
                _ => serde_json::Value::Null,
            };
            let properties =
                if properties.is_null() { serde_json::Value::Object(Default::default()) } else { properties };
            (event.type_name().to_string(), properties)
        }
        ProcessedBody::PlayerErased { erasure_id, requested_at } => {
            ("player_erased".to_string(), serde_json::json!({ "erasure_id": erasure_id, "requested_at": requested_at }))
        }
    }
}

impl PgStore {
    /// Inserts the non-personal fields of `events` into the `events` fact table, in one
    /// transaction with one `INSERT … SELECT FROM UNNEST(…)` (duplicates by `(ts, event_id)`
    /// are ignored, so a replayed batch counts once). Missing daily partitions of the batch's
    /// days are created first (plain PostgreSQL; see [`PARTITION_WINDOW_PAST_DAYS`]).
    ///
    /// A `PlayerErased` event replaces the player's id, in rows already stored and in the
    /// rows of this batch before it, by one fresh pseudonym `erased-<uuid>`; the erasure row
    /// itself is stored under that pseudonym. Returns the number of rows inserted.
    pub async fn insert_events(&self, events: &[ProcessedEvent]) -> Result<u64, StoreError> {
        if events.is_empty() {
            return Ok(0);
        }
        // The last erasure of each player in the batch, and its pseudonym.
        let mut last_erasure: HashMap<(&str, &str), (usize, String)> = HashMap::new();
        for (i, e) in events.iter().enumerate() {
            if matches!(e.body, ProcessedBody::PlayerErased { .. }) {
                let key = (e.game_id.as_str(), e.player_id.as_str());
                let pseudonym = last_erasure
                    .remove(&key)
                    .map(|(_, p)| p)
                    .unwrap_or_else(|| format!("erased-{}", uuid::Uuid::new_v4()));
                last_erasure.insert(key, (i, pseudonym));
            }
        }

        let n = events.len();
        let mut ts = Vec::with_capacity(n);
        let mut ids = Vec::with_capacity(n);
        let mut games: Vec<&str> = Vec::with_capacity(n);
        let mut players: Vec<&str> = Vec::with_capacity(n);
        let mut seqs = Vec::with_capacity(n);
        let mut types = Vec::with_capacity(n);
        let mut received = Vec::with_capacity(n);
        let mut sessions: Vec<Option<&str>> = Vec::with_capacity(n);
        let mut props = Vec::with_capacity(n);
        let mut days = BTreeSet::new();
        for (i, e) in events.iter().enumerate() {
            let player = match last_erasure.get(&(e.game_id.as_str(), e.player_id.as_str())) {
                Some((at, pseudonym)) if i <= *at => pseudonym.as_str(),
                _ => e.player_id.as_str(),
            };
            let (ty, p) = type_and_properties(&e.body);
            ts.push(e.timestamp);
            ids.push(e.event_id);
            games.push(e.game_id.as_str());
            players.push(player);
            seqs.push(to_i64(e.seq));
            types.push(ty);
            received.push(e.received_at);
            sessions.push(match &e.body {
                ProcessedBody::Event { derived, .. } => derived.session_id.as_ref().map(|s| s.as_str()),
                ProcessedBody::PlayerErased { .. } => None,
            });
            props.push(p.to_string());
            days.insert(e.timestamp.date_naive());
        }
        let today = Utc::now().date_naive();
        let window = (today - chrono::Duration::days(PARTITION_WINDOW_PAST_DAYS))
            ..=(today + chrono::Duration::days(PARTITION_WINDOW_FUTURE_DAYS));
        let days: Vec<NaiveDate> = days.into_iter().filter(|d| window.contains(d)).collect();

        let mut tx = self.pool().begin().await.map_err(store_err)?;
        if !days.is_empty() {
            sqlx::query("SELECT gm_ensure_event_partitions(d, d) FROM UNNEST($1::date[]) AS d")
                .bind(&days)
                .execute(&mut *tx)
                .await
                .map_err(store_err)?;
        }
        if !last_erasure.is_empty() {
            let mut eg: Vec<&str> = Vec::new();
            let mut ep: Vec<&str> = Vec::new();
            let mut es: Vec<&str> = Vec::new();
            for ((g, p), (_, pseudonym)) in &last_erasure {
                eg.push(g);
                ep.push(p);
                es.push(pseudonym);
            }
            sqlx::query(
                "UPDATE events AS t SET player_id = e.pseudonym
                 FROM UNNEST($1::text[], $2::text[], $3::text[]) AS e(game_id, player_id, pseudonym)
                 WHERE t.game_id = e.game_id AND t.player_id = e.player_id",
            )
            .bind(&eg)
            .bind(&ep)
            .bind(&es)
            .execute(&mut *tx)
            .await
            .map_err(store_err)?;
        }
        let inserted = sqlx::query(
            "INSERT INTO events (ts, event_id, game_id, player_id, seq, type, received_at, session_id, properties)
             SELECT u.ts, u.event_id, u.game_id, u.player_id, u.seq, u.type, u.received_at, u.session_id,
                    u.properties::jsonb
             FROM UNNEST($1::timestamptz[], $2::uuid[], $3::text[], $4::text[], $5::int8[], $6::text[],
                         $7::timestamptz[], $8::text[], $9::text[])
                  AS u(ts, event_id, game_id, player_id, seq, type, received_at, session_id, properties)
             ON CONFLICT DO NOTHING",
        )
        .bind(&ts)
        .bind(&ids)
        .bind(&games)
        .bind(&players)
        .bind(&seqs)
        .bind(&types)
        .bind(&received)
        .bind(&sessions)
        .bind(&props)
        .execute(&mut *tx)
        .await
        .map_err(store_err)?
        .rows_affected();
        tx.commit().await.map_err(store_err)?;
        Ok(inserted)
    }
}
