//! Credentials: API keys, people's tokens, which routes need what, the metrics token.

use super::*;

#[actix_web::test]
async fn missing_or_unknown_api_key_is_401_with_reason() {
    let h = harness();
    let app = test::init_service(app(h.data.clone())).await;
    let body = json!({"events": [session_start("p1")]}).to_string();
    let missing = test::TestRequest::post().uri("/v1/events").set_payload(body.clone());
    let (status, headers, json, _) = call!(&app, missing).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(json["error"], "unauthenticated");
    assert!(json["reason"].as_str().unwrap().contains("missing"));
    assert!(headers.contains_key(header::WWW_AUTHENTICATE));
    let unknown =
        test::TestRequest::post().uri("/v1/events").insert_header(("X-API-Key", "guess")).set_payload(body.clone());
    let (status, _, json, _) = call!(&app, unknown).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(json["reason"].as_str().unwrap().contains("unknown"));
    let via_header = test::TestRequest::post().uri("/v1/events").insert_header(("X-API-Key", KEY)).set_payload(body);
    assert_eq!(call!(&app, via_header).await.0, StatusCode::ACCEPTED);
    let analytics = test::TestRequest::get().uri("/v1/analytics/space-race/funnel");
    assert_eq!(call!(&app, analytics).await.0, StatusCode::UNAUTHORIZED);
    let revoked_body = json!({"events": [session_start("p1")]}).to_string();
    let h = harness_revoking(&[&gm_gateway::auth::key_id(KEY)[..8]]);
    let revoking = test::init_service(gm_gateway::app(h.data.clone())).await;
    let revoked =
        test::TestRequest::post().uri("/v1/events").insert_header(("X-API-Key", KEY)).set_payload(revoked_body);
    let (status, _, json, _) = call!(&revoking, revoked).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(json["reason"].as_str().unwrap().contains("revoked"), "{json}");
    let other = test::TestRequest::post()
        .uri("/v1/events")
        .insert_header(("X-API-Key", OTHER_KEY))
        .set_payload(json!({"events": [session_start("p1")]}).to_string());
    assert_eq!(call!(&revoking, other).await.0, StatusCode::ACCEPTED, "other keys stay valid");
}

#[actix_web::test]
async fn game_keys_only_ingest_and_queries_need_an_analyst_or_admin_token() {
    let h = harness();
    let app = test::init_service(app(h.data.clone())).await;
    let uris = [
        "/v1/players/space-race/p1",
        "/v1/analytics/space-race/funnel",
        "/v1/analytics/space-race/active-users?from=2025-01-01&to=2025-01-02",
    ];
    for uri in uris {
        // A game key, even of the game itself, does not read (game API keys only ingest).
        for key in [KEY, OTHER_KEY] {
            let req = test::TestRequest::get().uri(uri).insert_header(("X-API-Key", key));
            let (status, _, json, text) = call!(&app, req).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{uri}: {text}");
            assert_eq!(json["error"], "forbidden");
        }
        for roles in [&["compliance"][..], &[], &["superuser"]] {
            let req = test::TestRequest::get().uri(uri).insert_header(bearer(roles));
            assert_eq!(call!(&app, req).await.0, StatusCode::FORBIDDEN, "{uri} with {roles:?}");
        }
        let req = test::TestRequest::get().uri(uri).insert_header(("Authorization", format!("Bearer {METRICS_TOKEN}")));
        assert_eq!(call!(&app, req).await.0, StatusCode::FORBIDDEN, "{uri} with the metrics token");
        for roles in [&["analyst"][..], &["admin"]] {
            let req = test::TestRequest::get().uri(uri).insert_header(bearer(roles));
            let (status, _, _, text) = call!(&app, req).await;
            assert_eq!(status, StatusCode::OK, "{uri} with {roles:?}: {text}");
        }
    }
    // People do not ingest: the game is named by the key.
    let body = json!({"events": [session_start("p1")]}).to_string();
    for roles in [&["admin"][..], &["analyst"]] {
        let req = test::TestRequest::post().uri("/v1/events").insert_header(bearer(roles)).set_payload(body.clone());
        assert_eq!(call!(&app, req).await.0, StatusCode::FORBIDDEN);
    }
    assert_eq!(h.log.append_calls(), 0);
}

#[actix_web::test]
async fn expired_forged_and_foreign_tokens_are_401_on_queries() {
    let h = harness();
    let app = test::init_service(app(h.data.clone())).await;
    let now = Utc::now().timestamp();
    let claims =
        |iss: &str, aud: &str, exp: i64| json!({"sub": "x", "iss": iss, "aud": aud, "exp": exp, "roles": ["admin"]});
    let tokens = [
        ("expired", issuer().sign(&claims(ISSUER, AUDIENCE, now - 600))),
        ("issuer", issuer().sign(&claims("https://elsewhere", AUDIENCE, now + 600))),
        ("audience", issuer().sign(&claims(ISSUER, "another-api", now + 600))),
        ("signature", TestIssuer::generate("test-key").sign(&claims(ISSUER, AUDIENCE, now + 600))),
    ];
    for (expected, token) in tokens {
        let req = test::TestRequest::get()
            .uri("/v1/analytics/space-race/funnel")
            .insert_header(("Authorization", format!("Bearer {token}")));
        let (status, headers, json, text) = call!(&app, req).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{expected}: {text}");
        assert!(json["reason"].as_str().unwrap().contains(expected), "{expected}: {text}");
        assert!(headers.contains_key(header::WWW_AUTHENTICATE));
    }
}

#[actix_web::test]
async fn every_route_but_health_requires_credentials() {
    let h = harness();
    let app = test::init_service(app(h.data.clone())).await;
    for (path, method, _) in gm_gateway::routes() {
        let mut uri = path.replace("{game_id}", "space-race").replace("{player_id}", "p1");
        if path == "/remote_configs/v1/init" {
            // The GameAnalytics SDKs name their game key in the query (400 without it).
            uri.push_str("?game_key=0123456789abcdef0123456789abcdef");
        }
        let req = match method {
            "get" => test::TestRequest::get(),
            _ => test::TestRequest::post().set_payload("{}"),
        }
        .uri(&uri);
        let status = call!(&app, req).await.0;
        // The development sign-in is open: it lists only the embedded default's public tokens.
        if path.starts_with("/health/") || path == "/v1/dev-sign-in" {
            assert_ne!(status, StatusCode::UNAUTHORIZED, "{path}");
        } else {
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path} answered without credentials");
        }
    }
}

#[actix_web::test]
async fn metrics_need_the_metrics_token_or_an_admin_and_docs_any_credentials() {
    let h = harness();
    let app = test::init_service(app(h.data.clone())).await;
    let get = |uri: &str, auth: String| test::TestRequest::get().uri(uri).insert_header(("Authorization", auth));
    let admin = format!("Bearer {}", issuer().token("root", &["admin"]));
    let analyst_token = format!("Bearer {}", issuer().token("ana", &["analyst"]));
    let key = format!("Bearer {KEY}");
    let metrics_token = format!("Bearer {METRICS_TOKEN}");
    assert_eq!(call!(&app, get("/metrics", metrics_token.clone())).await.0, StatusCode::OK);
    assert_eq!(call!(&app, get("/metrics", admin.clone())).await.0, StatusCode::OK);
    assert_eq!(call!(&app, get("/metrics", analyst_token.clone())).await.0, StatusCode::FORBIDDEN);
    assert_eq!(call!(&app, get("/metrics", key.clone())).await.0, StatusCode::FORBIDDEN);
    for auth in [admin, analyst_token, key] {
        assert_eq!(call!(&app, get("/openapi.json", auth)).await.0, StatusCode::OK);
    }
    assert_eq!(call!(&app, get("/openapi.json", metrics_token)).await.0, StatusCode::FORBIDDEN);
}
