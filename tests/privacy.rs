//! Erasure end to end, in production mode (the roles as processes on real Kafka, PostgreSQL
//! and Redis): after an erasure completes, nothing readable about the player is left in any
//! table, cache key, snapshot, topic (decrypting with every key that still exists) or log
//! line; aggregates are as they were; the request is idempotent, refused to the wrong
//! roles, survives an actors crash, and wins over events still in flight.

mod common;

use chrono::{Duration as ChronoDuration, Utc};
use common::services::{self, Role, TestServices};
use common::*;
use gamemetrics::platform::Backends;
use gm_schemas::{topics, PersonalData, RawRecord};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn compliance_token() -> String {
    test_issuer().token("e2e-compliance-officer", &["compliance"])
}

/// What one player sent that is personal, or names them.
struct Secrets {
    /// Random, so that the secrets are this test's alone; other names of the test use it too.
    tag: String,
    player: String,
    values: Vec<String>,
}

impl Secrets {
    fn new() -> Self {
        let tag = uuid::Uuid::new_v4().simple().to_string()[..10].to_string();
        Self {
            player: format!("victim-{tag}"),
            values: vec![
                format!("victim.{tag}@example.org"),
                format!("DEV-{tag}-C0FFEE"),
                format!("Display {tag} Name"),
                format!("call me on 555-{tag}"),
                // An IP address with the tag's digits would be ambiguous; this one is unique enough.
                "203.0.113.177".to_string(),
            ],
            tag,
        }
    }

    fn needles(&self) -> Vec<&str> {
        std::iter::once(self.player.as_str()).chain(self.values.iter().map(String::as_str)).collect()
    }

    /// Which secrets `haystack` contains.
    fn found_in(&self, haystack: &str) -> Vec<String> {
        self.needles().into_iter().filter(|n| haystack.contains(n)).map(str::to_string).collect()
    }
}

/// A rich history: a session with every kind of event, personal fields on three of them.
fn history(player: &str, s: Option<&Secrets>) -> Value {
    let now = Utc::now();
    let at = |secs: i64| (now - ChronoDuration::seconds(3600 - secs)).to_rfc3339();
    let personal = |i: usize| -> Value {
        match s {
            Some(s) => match i {
                0 => json!({"device_id": s.values[1], "ip": s.values[4]}),
                1 => json!({"email": s.values[0], "display_name": s.values[2]}),
                _ => json!({"free_text": s.values[3]}),
            },
            None => json!({"email": format!("{player}@example.net")}),
        }
    };
    let events = vec![
        json!({"player_id": player, "client_ts": at(0), "type": "session_start", "properties": {"platform": "ios", "app_version": "2.4.1"}, "personal": personal(0)}),
        json!({"player_id": player, "client_ts": at(2), "type": "profile_update", "properties": {"country": "FR", "language": "fr"}, "personal": personal(1)}),
        json!({"player_id": player, "client_ts": at(3), "type": "consent_update", "properties": {"analytics": true, "personalisation": true}}),
        json!({"player_id": player, "client_ts": at(10), "type": "progression", "properties": {"status": "start", "level_id": "world-1:level-3"}}),
        json!({"player_id": player, "client_ts": at(40), "type": "resource", "properties": {"flow": "source", "virtual_currency": "gems", "amount": 25, "item_id": "level-reward"}}),
        json!({"player_id": player, "client_ts": at(60), "type": "progression", "properties": {"status": "complete", "level_id": "world-1:level-3", "score": 18450}}),
        json!({"player_id": player, "client_ts": at(61), "type": "score", "properties": {"board": "weekly-high", "value": 18450}}),
        json!({"player_id": player, "client_ts": at(62), "type": "achievement", "properties": {"achievement_id": "first-three-stars"}}),
        json!({"player_id": player, "client_ts": at(90), "type": "purchase", "properties": {"amount_minor": 499, "currency": "EUR", "item_id": "gem-pack-small", "quantity": 1}}),
        json!({"player_id": player, "client_ts": at(95), "type": "item_use", "properties": {"item_id": "booster-magnet", "quantity": 2}}),
        json!({"player_id": player, "client_ts": at(120), "type": "design", "properties": {"event_id": "boss:forest:defeated", "value": 3.5}, "personal": personal(2)}),
        json!({"player_id": player, "client_ts": at(1800), "type": "session_end", "properties": {"length_seconds": 1800}}),
    ];
    json!({"sent_at": Utc::now().to_rfc3339(), "events": events})
}

fn one_score(player: &str) -> Value {
    json!({"events": [{"player_id": player, "client_ts": Utc::now().to_rfc3339(), "type": "score", "properties": {"board": "weekly-high", "value": 7}}]})
}

async fn ingest(base: &str, body: Value) -> Value {
    let (status, json) = post_events(base, Some(KEY), body.to_string().into_bytes()).await;
    assert!(status == 202 || status == 400, "ingest: {status} {json}");
    json
}

/// Every read model answer that aggregates players (what erasure must leave as it was).
async fn aggregates(base: &str) -> Value {
    let today = Utc::now().date_naive();
    let range = format!("from={}&to={}", today - ChronoDuration::days(1), today);
    let mut out = serde_json::Map::new();
    for q in ["active-users", "revenue", "sessions"] {
        let (status, v) = get_json(&format!("{base}/v1/analytics/{GAME}/{q}?{range}")).await;
        assert_eq!(status, 200, "{q}: {v}");
        out.insert(q.into(), v);
    }
    let (status, v) = get_json(&format!("{base}/v1/analytics/{GAME}/funnel")).await;
    assert_eq!(status, 200, "funnel: {v}");
    out.insert("funnel".into(), v);
    Value::Object(out)
}

struct Roles {
    gateway: Role,
    second_gateway: Role,
    actors: Role,
    /// Kept to be killed with the others when dropped.
    _projections: Role,
    logs: tempfile::TempDir,
}

/// Everything the platform logs, at debug for its own crates.
fn logged(logs: &Path, name: &str) -> impl FnOnce(&mut std::process::Command) {
    services::logged_with(logs, name, "info,gm_gateway=debug,gm_actors=debug,gm_projections=debug,gamemetrics=debug")
}

impl Roles {
    async fn start(services: &TestServices) -> Self {
        let logs = tempfile::tempdir().unwrap();
        let keys = format!("{GAME}={KEY}");
        let gateway = Role::start_with("gateway", services, &keys, logged(logs.path(), "gateway"));
        let second_gateway = Role::start_with("gateway", services, &keys, logged(logs.path(), "gateway-2"));
        let actors = Role::start_with("actors", services, &keys, logged(logs.path(), "actors"));
        let projections = Role::start_with("projections", services, &keys, logged(logs.path(), "projections"));
        for role in [&gateway, &second_gateway, &actors, &projections] {
            role.wait_ready().await;
        }
        Self { gateway, second_gateway, actors, _projections: projections, logs }
    }

    fn restart_actors(&mut self, services: &TestServices) {
        self.actors.kill();
        let keys = format!("{GAME}={KEY}");
        self.actors = Role::start_with("actors", services, &keys, logged(self.logs.path(), "actors"));
    }

    fn log_files(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.logs.path()).unwrap().map(|e| e.unwrap().path()).collect()
    }
}

impl Drop for Roles {
    fn drop(&mut self) {
        if std::thread::panicking() {
            show_logs(self.logs.path());
        }
    }
}

async fn wait_profile(base: &str, player: &str, present: bool) {
    let url = format!("{base}/v1/players/{GAME}/{player}");
    eventually(Duration::from_secs(90), || {
        let url = url.clone();
        async move {
            let (status, body) = get_json(&url).await;
            match (present, status) {
                (true, 200) if body["events"].as_u64() >= Some(12) => Ok(()),
                (false, 404) => Ok(()),
                _ => Err(format!("profile of {player}: {status} {body}")),
            }
        }
    })
    .await
    .unwrap();
}

async fn wait_completed(base: &str, erasure_id: &str) -> Value {
    let url = format!("{base}/v1/privacy/erasures/{erasure_id}");
    let token = compliance_token();
    let mut last = Value::Null;
    for _ in 0..240 {
        let (status, body) = call("GET", &url, Some(&token), None).await;
        assert_eq!(status, 200, "{body}");
        if body["status"] == "completed" {
            return body;
        }
        last = body;
        actix_rt::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("erasure {erasure_id} did not complete within 60 s: {last}");
}

async fn request_erasure(base: &str, token: &str, player: &str) -> (u16, Value) {
    call(
        "POST",
        &format!("{base}/v1/privacy/erasures"),
        Some(token),
        Some(json!({"game_id": GAME, "player_id": player, "reason": "player asked by e-mail (ticket 4711)"})),
    )
    .await
}

/// Waits until the actors have snapshotted past the end of every raw partition and every
/// projection has applied everything processed: nothing is in flight any more.
async fn wait_quiet(backends: &Backends) {
    use gm_projections::{ProjectionName, Target};
    // Transaction markers take offsets too: "caught up" is "no record left to read".
    let left = |topic: &'static str, partition: u32, from: u64| async move {
        backends.log.read(topic, partition, from, 1).await.map(|r| !r.is_empty()).map_err(|e| e.to_string())
    };
    eventually(Duration::from_secs(90), || async {
        let raw = backends.log.end_offsets(topics::RAW).await.map_err(|e| e.to_string())?;
        for p in 0..raw.len() as u32 {
            let mark = backends.snapshots.watermark(p).await.map_err(|e| e.to_string())?.unwrap_or(0);
            if left(topics::RAW, p, mark).await? {
                return Err(format!("actors: raw partition {p} snapshotted up to {mark} only"));
            }
        }
        let processed = backends.log.end_offsets(topics::PROCESSED).await.map_err(|e| e.to_string())?;
        for name in ProjectionName::ALL {
            for p in 0..processed.len() as u32 {
                let at = backends.read_models.checkpoint(Target::Live, name, p).await.map_err(|e| e.to_string())?;
                if left(topics::PROCESSED, p, at.unwrap_or(0)).await? {
                    return Err(format!("{name}: partition {p} applied up to {at:?} only"));
                }
            }
        }
        Ok(())
    })
    .await
    .unwrap();
}

/// Every row of every table of the test's database, as text.
async fn dump_database(url: &str) -> Vec<(String, String)> {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let mut out = Vec::new();
    for table in tables {
        let text: Option<String> = sqlx::query_scalar(&format!("SELECT string_agg(t::text, E'\\n') FROM {table} t"))
            .fetch_one(&mut conn)
            .await
            .unwrap();
        out.push((table, text.unwrap_or_default()));
    }
    out
}

/// Every key under the test's prefix with its value(s), as text.
async fn dump_redis(url: &str, prefix: &str) -> String {
    let client = redis::Client::open(url).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}*")).query_async(&mut con).await.unwrap();
    let mut out = String::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE").arg(&key).query_async(&mut con).await.unwrap();
        let value: Vec<Vec<u8>> = match kind.as_str() {
            "string" => vec![redis::cmd("GET").arg(&key).query_async(&mut con).await.unwrap()],
            "zset" => redis::cmd("ZRANGE").arg(&key).arg(0).arg(-1).query_async(&mut con).await.unwrap(),
            "hash" => redis::cmd("HGETALL").arg(&key).query_async(&mut con).await.unwrap(),
            "list" => redis::cmd("LRANGE").arg(&key).arg(0).arg(-1).query_async(&mut con).await.unwrap(),
            "set" => redis::cmd("SMEMBERS").arg(&key).query_async(&mut con).await.unwrap(),
            _ => vec![],
        };
        out.push_str(&key);
        out.push('\n');
        for v in value {
            out.push_str(&String::from_utf8_lossy(&v));
            out.push('\n');
        }
    }
    out
}

#[actix_rt::test]
async fn an_erased_player_leaves_nothing_readable_in_any_store_and_aggregates_stay() {
    let services = TestServices::create().await;
    let roles = Roles::start(&services).await;
    let base = roles.gateway.url();
    let s = Secrets::new();
    let bystander = format!("bystander-{}", s.tag);

    let r = ingest(&base, history(&s.player, Some(&s))).await;
    assert_eq!(r["accepted"], 12, "{r}");
    let r = ingest(&base, history(&bystander, None)).await;
    assert_eq!(r["accepted"], 12, "{r}");
    wait_profile(&base, &s.player, true).await;
    wait_profile(&base, &bystander, true).await;
    let backends = Backends::open(&services.config(tempfile::tempdir().unwrap().path())).await.unwrap();
    wait_quiet(&backends).await;

    // Right of access: everything held, personal values decrypted.
    let token = compliance_token();
    let export_url = format!("{base}/v1/privacy/exports/{GAME}/{}", s.player);
    let (status, export) = call("GET", &export_url, Some(&token), None).await;
    assert_eq!(status, 200, "{export}");
    let export_text = export.to_string();
    for v in &s.values {
        assert!(export_text.contains(v.as_str()), "export lacks {v}: {export_text}");
    }
    assert_eq!(export["profile"]["purchases"], 1, "{export}");
    assert!(export["actor_state"].is_object(), "{export}");

    // The second gateway caches the victim's key, so it can still append after the erasure.
    let r = ingest(&roles.second_gateway.url(), one_score(&s.player)).await;
    assert_eq!(r["accepted"], 1, "{r}");
    wait_quiet(&backends).await;
    let before = aggregates(&base).await;

    // Wrong roles: refused, and nothing is started.
    for (credential, expected) in [(Some(analyst_token()), 403), (Some(KEY.to_string()), 403), (None, 401)] {
        let body = json!({"game_id": GAME, "player_id": s.player, "reason": "x"});
        let (status, answer) =
            call("POST", &format!("{base}/v1/privacy/erasures"), credential.as_deref(), Some(body)).await;
        assert_eq!(status, expected, "{credential:?}: {answer}");
        let (status, answer) = call("GET", &export_url, credential.as_deref(), None).await;
        assert_eq!(status, expected, "{credential:?} export: {answer}");
    }

    let (status, erasure) = request_erasure(&base, &token, &s.player).await;
    assert_eq!(status, 202, "{erasure}");
    let erasure_id = erasure["erasure_id"].as_str().unwrap().to_string();
    // Events in flight: the gateway that knew the key still appends (behind the request);
    // the one that erased refuses with a reason.
    let r = ingest(&roles.second_gateway.url(), one_score(&s.player)).await;
    assert_eq!(r["accepted"], 1, "a cached key lets this one through to the log: {r}");
    let r = ingest(&base, one_score(&s.player)).await;
    assert_eq!(r["results"][0]["code"], "erased", "{r}");
    // Idempotent: the same request again answers the first erasure.
    let (status, again) = request_erasure(&base, &token, &s.player).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["erasure_id"], erasure["erasure_id"]);

    let done = wait_completed(&base, &erasure_id).await;
    let steps: Vec<&str> = done["timeline"].as_array().unwrap().iter().map(|s| s["step"].as_str().unwrap()).collect();
    for step in ["requested", "data_key_destroyed", "erasure_event_appended", "cache_purged", "completed"] {
        assert!(steps.contains(&step), "{step} missing: {steps:?}");
    }
    for p in gm_projections::ProjectionName::ALL {
        assert!(steps.contains(&format!("projection_confirmed:{p}").as_str()), "{p} did not confirm: {steps:?}");
    }
    let receipt: gm_privacy::Receipt = serde_json::from_value(done["receipt"].clone()).unwrap();
    let signer = gm_privacy::MasterKey::parse(TEST_MASTER_KEY).unwrap().receipt_signer();
    assert!(receipt.verify(&signer), "the receipt's signature verifies");
    assert!(receipt.stores.iter().any(|s| s.store == "cache"));

    // Let the events behind the request through actors and projections, then compare.
    wait_quiet(&backends).await;
    wait_profile(&base, &s.player, false).await;
    let (status, _) = call("GET", &export_url, Some(&token), None).await;
    assert_eq!(status, 200, "the suppression entry is what is left");
    let after = aggregates(&base).await;
    // DAU, revenue, sessions and the funnel still count the player (anonymously).
    assert_eq!(after, before, "aggregates changed");

    // Search every store.
    let mut found = Vec::new();
    for (table, text) in dump_database(&services.postgres_url).await {
        for hit in s.found_in(&text) {
            found.push(format!("table {table}: {hit}"));
        }
    }
    let redis_dump = dump_redis(&services.redis_url, &services.redis_prefix).await;
    for hit in s.found_in(&redis_dump) {
        found.push(format!("redis: {hit}"));
    }
    let master = gm_privacy::MasterKey::parse(TEST_MASTER_KEY).unwrap();
    let keys: Vec<gm_privacy::DataKey> = {
        use sqlx::Connection as _;
        let mut conn = sqlx::PgConnection::connect(&services.postgres_url).await.unwrap();
        let wrapped: Vec<Vec<u8>> =
            sqlx::query_scalar("SELECT wrapped_key FROM player_keys WHERE wrapped_key IS NOT NULL")
                .fetch_all(&mut conn)
                .await
                .unwrap();
        wrapped.iter().map(|w| master.unwrap(w).unwrap()).collect()
    };
    assert!(!keys.is_empty(), "the bystander's key still exists");
    let mut sealed_seen = 0;
    let mut opened = 0;
    for topic in [topics::RAW, topics::PROCESSED, topics::RECOMMENDATIONS, topics::DLQ] {
        let ends = backends.log.end_offsets(topic).await.unwrap();
        for (partition, end) in ends.iter().enumerate() {
            let mut next = 0;
            while next < *end {
                let records = backends.log.read(topic, partition as u32, next, 1000).await.unwrap();
                let Some(last) = records.last() else { break };
                next = last.offset + 1;
                for r in &records {
                    let text = format!("{} {} {:?}", r.key, String::from_utf8_lossy(&r.payload), r.headers);
                    for hit in s.found_in(&text) {
                        found.push(format!("topic {topic}: {hit}"));
                    }
                    // Decrypt every sealed value with every key that still exists.
                    if let Ok(RawRecord::Event(e)) = gm_schemas::upcast::decode_raw(&r.payload) {
                        if let Some(PersonalData::Sealed(sealed)) = &e.personal {
                            sealed_seen += 1;
                            for key in &keys {
                                if let Ok(fields) = key.open(&e.game_id, &e.player_id, &e.event_id, sealed) {
                                    opened += 1;
                                    let plain = serde_json::to_string(&fields).unwrap();
                                    for hit in s.found_in(&plain) {
                                        found.push(format!("topic {topic}, decrypted: {hit}"));
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    assert!(sealed_seen >= 6, "the victim's and the bystander's sealed values are on the raw topic ({sealed_seen})");
    assert!(opened >= 3, "the bystander's still open with their key ({opened})");
    for file in roles.log_files() {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for hit in s.found_in(&text) {
            found.push(format!("log {}: {hit}", file.display()));
        }
    }
    assert!(found.is_empty(), "readable traces of the erased player: {found:#?}");
    // The bystander is untouched.
    wait_profile(&base, &bystander, true).await;
    drop(roles);
    services.drop_database().await;
}

#[actix_rt::test]
async fn an_erasure_requested_while_the_actors_are_down_completes_after_their_restart() {
    let services = TestServices::create().await;
    let mut roles = Roles::start(&services).await;
    let base = roles.gateway.url();
    let s = Secrets::new();
    let r = ingest(&base, history(&s.player, Some(&s))).await;
    assert_eq!(r["accepted"], 12, "{r}");
    wait_profile(&base, &s.player, true).await;

    roles.actors.kill();
    let (status, erasure) = request_erasure(&base, &compliance_token(), &s.player).await;
    assert_eq!(status, 202, "{erasure}");
    let id = erasure["erasure_id"].as_str().unwrap().to_string();
    actix_rt::time::sleep(Duration::from_secs(3)).await;
    let (_, pending) = call("GET", &format!("{base}/v1/privacy/erasures/{id}"), Some(&compliance_token()), None).await;
    assert_eq!(pending["status"], "pending", "no actor has wiped the player yet: {pending}");

    roles.restart_actors(&services);
    roles.actors.wait_ready().await;
    wait_completed(&base, &id).await;
    wait_profile(&base, &s.player, false).await;
    drop(roles);
    services.drop_database().await;
}

#[actix_rt::test]
async fn erasing_a_player_never_seen_completes_at_once_and_suppresses_their_events() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let base = app.url();
    let token = compliance_token();
    let (status, erasure) = request_erasure(&base, &token, "never-seen-player").await;
    assert_eq!(status, 202, "{erasure}");
    let done = wait_completed(&base, erasure["erasure_id"].as_str().unwrap()).await;
    assert_eq!(done["receipt"]["stores"].as_array().unwrap().len(), 1, "{done}");
    let r = ingest(&base, one_score("never-seen-player")).await;
    assert_eq!(r["results"][0]["code"], "erased", "{r}");
    assert!(r["results"][0]["reason"].as_str().unwrap().contains("refused until"), "{r}");
    // The audit trail has the request and the completion, without the player's id.
    let (status, audit) = call("GET", &format!("{base}/v1/privacy/audit?limit=10"), Some(&token), None).await;
    assert_eq!(status, 200, "{audit}");
    let actions: Vec<&str> =
        audit["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert!(actions.contains(&"erasure_requested") && actions.contains(&"erasure_completed"), "{actions:?}");
    assert!(!audit.to_string().contains("never-seen-player"), "{audit}");
    let (status, _) = call("GET", &format!("{base}/v1/privacy/audit?limit=10"), Some(&analyst_token()), None).await;
    assert_eq!(status, 403);
    app.stop().await;
}

fn cli(services: &TestServices, args: &[&str]) -> (bool, Value, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_gamemetrics"))
        .args(args)
        .envs(services.env())
        .env("RUST_LOG", "warn")
        .output()
        .expect("run gamemetrics");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    (output.status.success(), serde_json::from_str(&stdout).unwrap_or(Value::Null), format!("{stdout}\n{stderr}"))
}

#[actix_rt::test]
async fn the_privacy_cli_exports_erases_and_reports_like_the_api() {
    let services = TestServices::create().await;
    let roles = Roles::start(&services).await;
    let base = roles.gateway.url();
    let s = Secrets::new();
    let r = ingest(&base, history(&s.player, Some(&s))).await;
    assert_eq!(r["accepted"], 12, "{r}");
    wait_profile(&base, &s.player, true).await;

    let (ok, export, out) = cli(&services, &["privacy", "export", GAME, &s.player]);
    assert!(ok, "{out}");
    assert_eq!(export["status"], "active", "{out}");
    assert!(export.to_string().contains(&s.values[0]), "the e-mail, decrypted: {out}");

    let (ok, erasure, out) =
        cli(&services, &["privacy", "erase", GAME, &s.player, "--reason", "ticket 99", "--wait", "90"]);
    assert!(ok, "{out}");
    assert_eq!(erasure["status"], "completed", "{out}");
    let id = erasure["erasure_id"].as_str().unwrap();
    let (ok, status, out) = cli(&services, &["privacy", "status", id]);
    assert!(ok, "{out}");
    assert_eq!(status["receipt"]["erasure_id"], id, "{out}");
    // The same request through the API answers this erasure.
    let (code, again) = request_erasure(&base, &compliance_token(), &s.player).await;
    assert_eq!((code, again["erasure_id"].as_str()), (200, Some(id)), "{again}");
    let (ok, export, out) = cli(&services, &["privacy", "export", GAME, &s.player]);
    assert!(ok, "{out}");
    assert_eq!(export["status"], "erased", "{out}");
    assert_eq!(export["personal"], json!([]), "{out}");
    assert!(export.get("profile").is_none() && export.get("actor_state").is_none(), "{out}");
    let (ok, _, out) = cli(&services, &["privacy", "status", &uuid::Uuid::new_v4().to_string()]);
    assert!(!ok && out.contains("no erasure"), "{out}");
    wait_profile(&base, &s.player, false).await;
    drop(roles);
    services.drop_database().await;
}

/// Every file under `dir` (recursively) in which `needle` occurs as bytes.
fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    let mut hits = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        if path.is_dir() {
            pending.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else if let Ok(bytes) = std::fs::read(&path) {
            if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                hits.push(path.display().to_string());
            }
        }
    }
    hits
}

#[actix_rt::test]
async fn on_the_embedded_default_an_erased_player_is_gone_from_the_files_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let base = app.url();
    let s = Secrets::new();
    let bystander = format!("bystander-{}", s.tag);
    assert_eq!(ingest(&base, history(&s.player, Some(&s))).await["accepted"], 12);
    assert_eq!(ingest(&base, history(&bystander, None)).await["accepted"], 12);
    wait_profile(&base, &s.player, true).await;
    wait_profile(&base, &bystander, true).await;
    // The scan can see a player: before the erasure, the victim's id is in the store's files.
    assert!(!files_containing(dir.path(), &s.player).is_empty(), "the scan finds the player before the erasure");

    let (status, erasure) = request_erasure(&base, &compliance_token(), &s.player).await;
    assert_eq!(status, 202, "{erasure}");
    wait_completed(&base, erasure["erasure_id"].as_str().unwrap()).await;
    wait_profile(&base, &s.player, false).await;

    let found: Vec<String> = s
        .needles()
        .into_iter()
        .flat_map(|needle| files_containing(dir.path(), needle).into_iter().map(move |f| format!("{needle} in {f}")))
        .collect();
    assert!(found.is_empty(), "the erased player is still readable on disk: {found:#?}");
    // The bystander, stored the same way, still is (the erasure did not wipe everything).
    assert!(!files_containing(dir.path(), &bystander).is_empty(), "the bystander's rows are on disk");
    app.stop().await;
}

/// Rows of `sql` (a count) in the database at `url`.
async fn count(url: &str, sql: &str) -> i64 {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
}

/// With the keys database apart (`privacy.keys_url`), a data database rewound by hand to
/// before a completed erasure (the player's profile back, the projections' confirmations
/// gone, as a restore from an older backup leaves it) is found by the next gateway at start,
/// which re-applies the erasure through the erasure path before it serves; once only.
#[actix_rt::test]
async fn with_the_keys_apart_a_gateway_reapplies_before_serving_an_erasure_the_data_database_lost() {
    let services = TestServices::create().await;
    let keys_db = services::KeysDatabase::create().await;
    let logs = tempfile::tempdir().unwrap();
    let api_keys = format!("{GAME}={KEY}");
    let start = |role: &'static str, name: &str| {
        let (var, url) = keys_db.env();
        let log = logged(logs.path(), name);
        Role::start_with(role, &services, &api_keys, move |c| {
            c.env(var, url);
            log(c);
        })
    };
    let mut gateway = start("gateway", "gateway");
    let _actors = start("actors", "actors");
    let _projections = start("projections", "projections");
    let show = ShowLogsOnPanic(logs.path().to_path_buf());
    for role in [&gateway, &_actors, &_projections] {
        role.wait_ready().await;
    }
    let base = gateway.url();
    let s = Secrets::new();
    let r = ingest(&base, history(&s.player, Some(&s))).await;
    assert_eq!(r["accepted"], 12, "{r}");
    wait_profile(&base, &s.player, true).await;
    // Keys and sealed values are in the keys database only.
    assert_eq!(count(&services.postgres_url, "SELECT COUNT(*) FROM player_keys").await, 0);
    assert_eq!(count(&services.postgres_url, "SELECT COUNT(*) FROM player_personal").await, 0);
    assert_eq!(count(&keys_db.url, "SELECT COUNT(*) FROM player_keys WHERE wrapped_key IS NOT NULL").await, 1);
    assert_eq!(count(&keys_db.url, "SELECT COUNT(*) FROM player_personal").await, 3);

    // What a restore from before the erasure brings back: the player's profile.
    let data = gm_postgres::PgStore::connect(&services.postgres_url, 2).await.unwrap();
    sqlx::query(&format!(
        "CREATE TABLE rewound_profiles AS SELECT * FROM player_profiles WHERE game_id = '{GAME}' AND player_id = '{}'",
        s.player
    ))
    .execute(data.pool())
    .await
    .unwrap();
    let token = compliance_token();
    let (status, erasure) = request_erasure(&base, &token, &s.player).await;
    assert_eq!(status, 202, "{erasure}");
    let id = erasure["erasure_id"].as_str().unwrap().to_string();
    let first = wait_completed(&base, &id).await;
    wait_profile(&base, &s.player, false).await;
    // The rewind: the profile back, the confirmations gone.
    sqlx::raw_sql(&format!(
        "INSERT INTO player_profiles SELECT * FROM rewound_profiles; DROP TABLE rewound_profiles;
         DELETE FROM erasure_confirmations WHERE erasure_id = '{id}'"
    ))
    .execute(data.pool())
    .await
    .unwrap();
    wait_profile(&base, &s.player, true).await;

    // The runbook's restart: the new gateway re-applies before it answers anything.
    gateway.kill();
    let mut gateway = start("gateway", "gateway-2");
    gateway.wait_ready().await;
    let base = gateway.url();
    let (status, profile) = get_json(&format!("{base}/v1/players/{GAME}/{}", s.player)).await;
    assert_eq!(status, 404, "the restored profile is erased before the gateway serves: {profile}");
    let url = format!("{base}/v1/privacy/erasures/{id}");
    let (status, again) = call("GET", &url, Some(&token), None).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["status"], "completed", "{again}");
    let steps: Vec<&str> = again["timeline"].as_array().unwrap().iter().map(|s| s["step"].as_str().unwrap()).collect();
    for step in ["reapplied_after_restore", "confirmations_reset"] {
        assert_eq!(steps.iter().filter(|s| **s == step).count(), 1, "{step} once: {steps:?}");
    }
    assert_eq!(steps.iter().filter(|s| **s == "erasure_event_appended").count(), 2, "{steps:?}");
    let receipt: gm_privacy::Receipt = serde_json::from_value(again["receipt"].clone()).unwrap();
    let signer = gm_privacy::MasterKey::parse(TEST_MASTER_KEY).unwrap().receipt_signer();
    let first_completed: chrono::DateTime<Utc> = first["completed_at"].as_str().unwrap().parse().unwrap();
    assert!(receipt.verify(&signer) && receipt.completed_at > first_completed, "a new receipt: {again}");
    let (status, export) =
        call("GET", &format!("{base}/v1/privacy/exports/{GAME}/{}", s.player), Some(&token), None).await;
    assert_eq!(status, 200, "{export}");
    assert_eq!(export["status"], "erased", "{export}");
    // The export names the player asked for; nothing else of theirs.
    assert!(s.values.iter().all(|v| !export.to_string().contains(v.as_str())), "{export}");
    assert!(export.get("profile").is_none() && export.get("actor_state").is_none(), "{export}");
    let (_, audit) = call("GET", &format!("{base}/v1/privacy/audit?limit=20"), Some(&token), None).await;
    assert!(audit.to_string().contains("erasure_reapplied"), "{audit}");
    // Unlinked again, and the data database holds the confirmations once more.
    assert_eq!(count(&keys_db.url, "SELECT COUNT(*) FROM player_keys WHERE player_id IS NOT NULL").await, 0);
    let confirmed = format!("SELECT COUNT(*) FROM erasure_confirmations WHERE erasure_id = '{id}'");
    assert_eq!(count(&services.postgres_url, &confirmed).await, gm_projections::ProjectionName::ALL.len() as i64);

    // Idempotent: the next start finds nothing to re-apply.
    gateway.kill();
    let gateway = start("gateway", "gateway-3");
    gateway.wait_ready().await;
    let (_, last) = call("GET", &format!("{}/v1/privacy/erasures/{id}", gateway.url()), Some(&token), None).await;
    assert_eq!(last["timeline"], again["timeline"], "nothing re-applied a second time");
    let log = std::fs::read_to_string(logs.path().join("gateway-3.log")).unwrap();
    assert!(log.contains("every erasure of the keys database's ledger is applied"), "{log}");
    std::mem::forget(show);
    drop(gateway);
    services.drop_database().await;
    keys_db.drop_database().await;
}
