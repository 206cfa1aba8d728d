//! Privacy at the gateway: players the privacy store does not answer for, erasures, the
//! games claim on every route, receipts.

use super::*;

/// The embedded privacy store, except that `ensure_players` leaves out its answer for every
/// player while `forget` is set (as the PostgreSQL upsert did for a player a concurrent
/// request had just created; issue 14).
struct ForgetfulPrivacy {
    inner: gm_embedded::SqliteStore,
    forget: AtomicBool,
}

#[async_trait]
impl gm_privacy::PrivacyStore for ForgetfulPrivacy {
    async fn ensure_players(
        &self,
        players: Vec<gm_privacy::NewPlayer>,
    ) -> Result<Vec<gm_privacy::PlayerEntry>, StoreError> {
        let answer = self.inner.ensure_players(players).await?;
        Ok(if self.forget.load(Ordering::SeqCst) { Vec::new() } else { answer })
    }
    async fn keep_personal(&self, rows: Vec<gm_privacy::StoredPersonal>) -> Result<(), StoreError> {
        self.inner.keep_personal(rows).await
    }
    async fn player(&self, s: &gm_privacy::Subject) -> Result<Option<gm_privacy::PlayerRecord>, StoreError> {
        self.inner.player(s).await
    }
    async fn personal_of(&self, s: &gm_privacy::Subject) -> Result<Vec<gm_privacy::StoredPersonal>, StoreError> {
        self.inner.personal_of(s).await
    }
    async fn resolve_pseudonyms(&self, p: &[String]) -> Result<std::collections::HashMap<String, String>, StoreError> {
        self.inner.resolve_pseudonyms(p).await
    }
    async fn begin_erasure(&self, r: gm_privacy::NewErasure) -> Result<gm_privacy::Begun, StoreError> {
        self.inner.begin_erasure(r).await
    }
    async fn add_step(&self, id: uuid::Uuid, step: gm_privacy::Step) -> Result<(), StoreError> {
        self.inner.add_step(id, step).await
    }
    async fn erasure(&self, id: uuid::Uuid) -> Result<Option<gm_privacy::Erasure>, StoreError> {
        self.inner.erasure(id).await
    }
    async fn pending_erasures(&self) -> Result<Vec<gm_privacy::Erasure>, StoreError> {
        self.inner.pending_erasures().await
    }
    async fn confirmations(&self, id: uuid::Uuid) -> Result<Vec<(String, chrono::DateTime<Utc>)>, StoreError> {
        self.inner.confirmations(id).await
    }
    async fn complete_erasure(
        &self,
        id: uuid::Uuid,
        receipt: gm_privacy::Receipt,
        steps: Vec<gm_privacy::Step>,
    ) -> Result<(), StoreError> {
        self.inner.complete_erasure(id, receipt, steps).await
    }
    async fn audit(&self, entry: gm_privacy::AuditEntry) -> Result<(), StoreError> {
        self.inner.audit(entry).await
    }
    async fn audit_trail(
        &self,
        limit: u32,
        games: Option<&[String]>,
    ) -> Result<Vec<gm_privacy::AuditEntry>, StoreError> {
        self.inner.audit_trail(limit, games).await
    }
    async fn erasures(
        &self,
        filter: &gm_privacy::store::ErasureFilter,
    ) -> Result<Vec<gm_privacy::Erasure>, StoreError> {
        self.inner.erasures(filter).await
    }
}

fn metric(h: &Harness, name: &str) -> f64 {
    let text = h.metrics.encode();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{name} missing from:\n{text}"))
}

#[actix_web::test]
async fn a_player_the_privacy_store_does_not_answer_for_is_a_503_to_retry_never_erased() {
    let dir = tempfile::tempdir().unwrap();
    let inner = gm_embedded::SqliteStore::open(&dir.path().join("store.db")).await.unwrap();
    let store = Arc::new(ForgetfulPrivacy { inner, forget: AtomicBool::new(true) });
    let h = harness_with_privacy_store(store.clone());
    let app = test::init_service(app(h.data.clone())).await;
    let now = Utc::now().to_rfc3339();
    let body = json!({"events": [
        {"type": "score", "player_id": "newcomer", "client_ts": now, "properties": {"board": "b", "value": 1}},
        {"type": "score", "player_id": "newcomer", "client_ts": now, "properties": {"board": "b", "value": 2}},
    ]})
    .to_string();
    // No answer for the player: the request fails whole, retryable; nothing refused as erased.
    let (status, headers, _, text) = call!(&app, post_events(body.clone())).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
    assert!(headers.contains_key(header::RETRY_AFTER), "{headers:?}");
    assert!(!text.contains("erased"), "{text}");
    assert!(h.log.records().is_empty(), "nothing appended");
    assert_eq!(metric(&h, "gamemetrics_privacy_keys_unanswered_total"), 1.0);
    assert_eq!(metric(&h, "gamemetrics_events_refused_erased_total"), 0.0);
    // The client's retry lands both events.
    store.forget.store(false, Ordering::SeqCst);
    let (status, _, json, text) = call!(&app, post_events(body)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");
    assert_eq!(json["accepted"], 2, "{text}");
    assert_eq!(h.log.records().len(), 2);
}

#[actix_web::test]
async fn only_a_player_whose_erasure_exists_is_refused_as_erased_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let inner = gm_embedded::SqliteStore::open(&dir.path().join("store.db")).await.unwrap();
    let store = Arc::new(ForgetfulPrivacy { inner, forget: AtomicBool::new(false) });
    let h = harness_with_privacy_store(store.clone());
    let app = test::init_service(app(h.data.clone())).await;
    let master = gm_privacy::MasterKey::from_bytes([5; 32]);
    let game = GameId::parse("space-race").unwrap();
    let now = Utc::now();
    store
        .begin_erasure(gm_privacy::NewErasure {
            erasure_id: uuid::Uuid::now_v7(),
            subject: master.subject_hasher().subject(&game, &PlayerId::parse("gone").unwrap()),
            game_id: game,
            reason: "test".into(),
            requested_by: "test".into(),
            requested_at: now,
            suppressed_until: now + chrono::Duration::days(30),
        })
        .await
        .unwrap();
    let ts = now.to_rfc3339();
    let body = json!({"events": [
        {"type": "score", "player_id": "gone", "client_ts": ts, "properties": {"board": "b", "value": 1}},
        {"type": "score", "player_id": "stays", "client_ts": ts, "properties": {"board": "b", "value": 2}},
        {"type": "score", "player_id": "gone", "client_ts": ts, "properties": {"board": "b", "value": 3}},
    ]})
    .to_string();
    let (status, _, json, text) = call!(&app, post_events(body)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");
    let codes: Vec<&str> =
        json["results"].as_array().unwrap().iter().map(|r| r["code"].as_str().unwrap_or("accepted")).collect();
    assert_eq!(codes, ["erased", "accepted", "erased"], "{text}");
    assert_eq!(metric(&h, "gamemetrics_events_refused_erased_total"), 2.0);
    assert_eq!(metric(&h, "gamemetrics_privacy_keys_unanswered_total"), 0.0);
}

/// The request path appends an erasure's request and the coordinator appends the request of
/// an erasure that has none: while the first is appending, the second must leave it alone
/// (a CI run saw `erasure_event_appended` twice in one timeline, from this race).
#[actix_web::test]
async fn an_erasure_request_is_appended_once_while_the_coordinator_runs() {
    let dir = tempfile::tempdir().unwrap();
    let h = harness_with_privacy(dir.path()).await;
    let app = test::init_service(app(h.data.clone())).await;
    let ts = Utc::now().to_rfc3339();
    let body = json!({"events": [
        {"type": "score", "player_id": "racer", "client_ts": ts, "properties": {"board": "b", "value": 1}},
    ]})
    .to_string();
    let (status, _, _, text) = call!(&app, post_events(body)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");
    let privacy = h.privacy.clone().unwrap();
    let appends_before = h.log.append_calls();
    // A slow broker: the request path's append takes 300 ms, during which the coordinator runs.
    *h.log.delay.lock().unwrap() = Some(Duration::from_millis(300));
    let (game, player) = (GameId::parse("space-race").unwrap(), PlayerId::parse("racer").unwrap());
    let coordinator = async {
        for _ in 0..8 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            privacy.drive().await.unwrap();
        }
    };
    let (requested, ()) = tokio::join!(privacy.request_erasure(&game, &player, "test", "test"), coordinator);
    let (erasure, new) = requested.unwrap();
    assert!(new);
    let erasure = privacy.erasure(erasure.erasure_id).await.unwrap().unwrap();
    let appended = erasure.timeline.iter().filter(|s| s.step == gm_privacy::steps::ERASURE_EVENT_APPENDED).count();
    assert_eq!(appended, 1, "{:?}", erasure.timeline);
    assert_eq!(h.log.append_calls() - appends_before, 1, "one append of the request");
}

/// A gateway on one embedded store for privacy, leaderboards, retention and recommendations
/// (every game-bound route answers from a real store).
fn harness_on_store(store: Arc<gm_embedded::SqliteStore>) -> Harness {
    harness_with_privacy_and(store.clone(), |state| state.with_game_queries(store.clone()).with_recommendations(store))
}

/// `Authorization` with a token of both the analyst and the compliance role on `games`.
fn scoped(games: &[&str]) -> (header::HeaderName, String) {
    (header::AUTHORIZATION, format!("Bearer {}", issuer().token_for_games("scoped", &["analyst", "compliance"], games)))
}

/// Item 1 of issue 17: a token reaches only the games of its `games` claim, on every route
/// about a game (in the path, in the body, or the game of the erasure or audit entry asked
/// for); `*` reaches every game; a token without the claim reaches none.
#[actix_web::test]
async fn tokens_reach_only_the_games_of_their_games_claim_on_every_route() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(gm_embedded::SqliteStore::open(&dir.path().join("store.db")).await.unwrap());
    let h = harness_on_store(store);
    let app = test::init_service(app(h.data.clone())).await;
    // Something held about a player of each game.
    for key in [KEY, OTHER_KEY] {
        let req = post_events(json!({"events": [session_start("p1")]}).to_string())
            .insert_header((header::AUTHORIZATION, format!("Bearer {key}")));
        assert_eq!(call!(&app, req).await.0, StatusCode::ACCEPTED);
    }
    let no_claim = {
        let now = Utc::now().timestamp();
        let claims = json!({"sub": "x", "iss": ISSUER, "aud": AUDIENCE, "exp": now + 600,
                            "roles": ["analyst", "compliance"]});
        (header::AUTHORIZATION, format!("Bearer {}", issuer().sign(&claims)))
    };
    let refused = |status: StatusCode, json: &Value, text: &str, game: &str, what: &str| {
        assert_eq!(status, StatusCode::FORBIDDEN, "{what}: {text}");
        assert_eq!(json["error"], "forbidden", "{what}: {text}");
        assert!(
            json["reason"].as_str().unwrap_or("").contains(&format!("may not access game '{game}'")),
            "{what}: {text}"
        );
    };
    // Past authorization: whatever the route answers then (the fake revenue store is a 503).
    let allowed = |status: StatusCode, text: &str, what: &str| {
        assert!(![StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN].contains(&status), "{what}: {status} {text}");
    };

    // Every route, classified: a route added later without a game check fails here.
    let ungamed = [
        "/v1/events",
        "/v1/batch",
        "/v1/track",
        "/v1/identify",
        "/api/v1/events",
        // GameAnalytics' ingest: the game key in the path names the game.
        "/v2/{game_key}/init",
        "/v2/{game_key}/events",
        "/remote_configs/v1/init",
        "/v1/privacy/erasures",
        "/v1/privacy/erasures/{erasure_id}",
        "/v1/privacy/audit",
        "/v1/privacy/receipts/verify",
        // Who the token is, and the development sign-in: no game named.
        "/v1/me",
        "/v1/dev-sign-in",
        // Operators' status: no game's data (gateway/src/status.rs).
        "/v1/status",
        "/health/live",
        "/health/ready",
        "/metrics",
        "/openapi.json",
    ];
    let mut game_routes = 0;
    for (path, method, _) in gm_gateway::routes() {
        if !path.contains("{game_id}") {
            assert!(ungamed.contains(&path), "{method} {path}: a new route; say how it checks the game");
            continue;
        }
        assert_eq!(method, "get", "{path}");
        game_routes += 1;
        let uri = |game: &str| {
            format!(
                "{}?from=2025-01-01&to=2025-01-02",
                path.replace("{game_id}", game).replace("{player_id}", "p1").replace("{board}", "b")
            )
        };
        for (game, other) in [("space-race", "farm"), ("farm", "space-race")] {
            let what = format!("{path} for {game} with a token of {other}");
            let (status, _, json, text) =
                call!(&app, test::TestRequest::get().uri(&uri(game)).insert_header(scoped(&[other]))).await;
            refused(status, &json, &text, game, &what);
            let (status, _, json, text) =
                call!(&app, test::TestRequest::get().uri(&uri(game)).insert_header(no_claim.clone())).await;
            refused(status, &json, &text, game, &format!("{path} with no games claim"));
            assert!(json["reason"].as_str().unwrap().contains("names no game"), "{text}");
            for games in [&[game][..], &[other, game], &["*"]] {
                let req = test::TestRequest::get().uri(&uri(game)).insert_header(scoped(games));
                let (status, _, _, text) = call!(&app, req).await;
                allowed(status, &text, &format!("{path} for {game} with a token of {games:?}"));
            }
        }
    }
    assert_eq!(game_routes, 12, "every route naming a game in its path was tried");

    // Erasure: the game is in the body.
    let erase = |game: &str, token: (header::HeaderName, String)| {
        test::TestRequest::post()
            .uri("/v1/privacy/erasures")
            .insert_header(token)
            .insert_header((header::CONTENT_TYPE, "application/json"))
            .set_payload(json!({"game_id": game, "player_id": "p1", "reason": "ticket 17"}).to_string())
    };
    let (status, _, json, text) = call!(&app, erase("space-race", scoped(&["farm"]))).await;
    refused(status, &json, &text, "space-race", "erasure of another game");
    let (status, _, json, text) = call!(&app, erase("space-race", no_claim.clone())).await;
    refused(status, &json, &text, "space-race", "erasure with no games claim");
    let (status, _, space_erasure, text) = call!(&app, erase("space-race", scoped(&["space-race"]))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");
    let (status, _, farm_erasure, text) = call!(&app, erase("farm", scoped(&["*"]))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");

    // An erasure by id: the game is the erasure's.
    for (erasure, game, other) in [(&space_erasure, "space-race", "farm"), (&farm_erasure, "farm", "space-race")] {
        let uri = format!("/v1/privacy/erasures/{}", erasure["erasure_id"].as_str().unwrap());
        let (status, _, json, text) =
            call!(&app, test::TestRequest::get().uri(&uri).insert_header(scoped(&[other]))).await;
        refused(status, &json, &text, game, "an erasure of another game");
        for token in [scoped(&[game]), scoped(&["*"])] {
            let (status, _, json, text) = call!(&app, test::TestRequest::get().uri(&uri).insert_header(token)).await;
            assert_eq!(status, StatusCode::OK, "{text}");
            assert_eq!(json["game_id"], game);
        }
    }

    // The audit trail: only the entries of the token's games; `*` sees them all.
    let audit =
        |query: &str, token| test::TestRequest::get().uri(&format!("/v1/privacy/audit{query}")).insert_header(token);
    let games_listed = |json: &Value| -> std::collections::BTreeSet<String> {
        json["entries"].as_array().unwrap().iter().map(|e| e["game_id"].as_str().unwrap_or("").to_string()).collect()
    };
    let (status, _, json, text) = call!(&app, audit("", scoped(&["farm"]))).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(games_listed(&json), ["farm".to_string()].into(), "{text}");
    let (status, _, json, text) = call!(&app, audit("", scoped(&["space-race"]))).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(games_listed(&json), ["space-race".to_string()].into(), "{text}");
    let (status, _, json, text) = call!(&app, audit("", scoped(&["*"]))).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(games_listed(&json), ["farm".to_string(), "space-race".to_string()].into(), "{text}");
    let (status, _, json, text) = call!(&app, audit("", no_claim.clone())).await;
    assert_eq!((status, json["entries"].as_array().map(Vec::len)), (StatusCode::OK, Some(0)), "{text}");
    let (status, _, json, text) = call!(&app, audit("?game_id=space-race", scoped(&["farm"]))).await;
    refused(status, &json, &text, "space-race", "the audit of another game");
    let (status, _, json, text) = call!(&app, audit("?game_id=farm", scoped(&["*"]))).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(games_listed(&json), ["farm".to_string()].into(), "{text}");

    // The list of erasures: only those of the token's games, the latest first.
    let list =
        |query: &str, token| test::TestRequest::get().uri(&format!("/v1/privacy/erasures{query}")).insert_header(token);
    let ids = |json: &Value| -> Vec<String> {
        json["erasures"].as_array().unwrap().iter().map(|e| e["erasure_id"].as_str().unwrap().to_string()).collect()
    };
    let (space_id, farm_id) =
        (space_erasure["erasure_id"].as_str().unwrap(), farm_erasure["erasure_id"].as_str().unwrap());
    let (status, _, json, text) = call!(&app, list("", scoped(&["*"]))).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(ids(&json), vec![farm_id, space_id], "{text}");
    assert_eq!(json["erasures"][0]["timeline"][0]["step"], "requested", "{text}");
    let (_, _, json, text) = call!(&app, list("", scoped(&["farm"]))).await;
    assert_eq!(ids(&json), vec![farm_id], "{text}");
    let (_, _, json, text) = call!(&app, list("?game_id=space-race&status=pending", scoped(&["*"]))).await;
    assert_eq!(ids(&json), vec![space_id], "{text}");
    let (_, _, json, text) = call!(&app, list("?status=completed", scoped(&["*"]))).await;
    assert_eq!(ids(&json), Vec::<String>::new(), "{text}");
    let (_, _, json, text) = call!(&app, list("", no_claim.clone())).await;
    assert_eq!(ids(&json), Vec::<String>::new(), "{text}");
    let (status, _, json, text) = call!(&app, list("?game_id=space-race", scoped(&["farm"]))).await;
    refused(status, &json, &text, "space-race", "the erasures of another game");
    for bad in ["?status=done", "?limit=0", "?limit=1001", "?game_id=no%20game"] {
        assert_eq!(call!(&app, list(bad, scoped(&["*"]))).await.0, StatusCode::BAD_REQUEST, "{bad}");
    }
    let (status, _, _, text) = call!(&app, list("", bearer(&["analyst"]))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "an analyst lists no erasure: {text}");
}

/// A receipt is valid only as this deployment signed it: altered, or signed under another
/// master key, it is `valid: false`; only compliance or admin tokens of its game may ask.
#[actix_web::test]
async fn receipts_verify_only_as_signed_by_this_deployment() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(gm_embedded::SqliteStore::open(&dir.path().join("store.db")).await.unwrap());
    let h = harness_on_store(store);
    let app = test::init_service(app(h.data.clone())).await;
    let erasure = gm_privacy::Erasure {
        erasure_id: uuid::Uuid::now_v7(),
        game_id: "space-race".into(),
        subject: "ab".repeat(32),
        status: gm_privacy::ErasureStatus::Pending,
        reason: "ticket 18".into(),
        requested_by: "someone".into(),
        requested_at: Utc::now(),
        completed_at: None,
        timeline: Vec::new(),
        receipt: None,
    };
    let stores = gm_privacy::receipt_stores(&[("funnel".into(), Utc::now())], true, false);
    // The harness's master key, and another deployment's.
    let ours = gm_privacy::MasterKey::from_bytes([5; 32]).receipt_signer();
    let theirs = gm_privacy::MasterKey::from_bytes([6; 32]).receipt_signer();
    let receipt = gm_privacy::Receipt::signed(&erasure, Utc::now(), stores, &ours);
    let verify = |body: String, token| {
        test::TestRequest::post()
            .uri("/v1/privacy/receipts/verify")
            .insert_header(token)
            .insert_header((header::CONTENT_TYPE, "application/json"))
            .set_payload(body)
    };
    // As downloaded: the JSON the erasure route serves.
    let (status, _, json, text) =
        call!(&app, verify(serde_json::to_string(&receipt).unwrap(), scoped(&["space-race"]))).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(
        (json["valid"].as_bool(), json["erasure_id"].as_str()),
        (Some(true), Some(erasure.erasure_id.to_string().as_str()))
    );
    assert!(json.get("reason").is_none(), "{text}");
    let mut altered = receipt.clone();
    altered.stores.pop();
    let foreign = gm_privacy::Receipt::signed(&erasure, receipt.completed_at, receipt.stores.clone(), &theirs);
    for (what, r) in [("altered", altered), ("signed by another deployment", foreign)] {
        let (status, _, json, text) =
            call!(&app, verify(serde_json::to_string(&r).unwrap(), bearer(&["compliance"]))).await;
        assert_eq!((status, json["valid"].as_bool()), (StatusCode::OK, Some(false)), "{what}: {text}");
        assert!(json["reason"].as_str().unwrap().contains("does not match"), "{text}");
    }
    let body = serde_json::to_string(&receipt).unwrap();
    let (status, _, json, text) = call!(&app, verify(body.clone(), scoped(&["farm"]))).await;
    assert_eq!((status, json["error"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")), "{text}");
    assert_eq!(call!(&app, verify(body.clone(), analyst())).await.0, StatusCode::FORBIDDEN);
    let req = test::TestRequest::post().uri("/v1/privacy/receipts/verify").set_payload(body);
    assert_eq!(call!(&app, req).await.0, StatusCode::UNAUTHORIZED);
    let (status, _, json, text) = call!(&app, verify(r#"{"erasure_id": 1}"#.into(), bearer(&["admin"]))).await;
    assert_eq!((status, json["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_input")), "{text}");
}
