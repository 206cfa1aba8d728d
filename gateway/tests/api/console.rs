//! The web console's routes: the assets, who the token is, the development sign-in.

use super::*;

/// The web console: `/` and `/console/{file}` with the console's CSP (not the API's), their
/// media types, ETag revalidation and gzip; unknown files are a JSON 404.
#[actix_web::test]
async fn the_console_is_served_with_its_csp_types_etags_and_gzip() {
    let h = harness();
    let app = test::init_service(app(h.data.clone())).await;
    let (status, headers, _, text) = call!(&app, test::TestRequest::get().uri("/")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(hv(&headers, header::CONTENT_TYPE), "text/html; charset=utf-8");
    assert_eq!(hv(&headers, header::CONTENT_SECURITY_POLICY), gm_gateway::console::CSP);
    assert!(gm_gateway::console::CSP.contains("script-src 'self';") && !gm_gateway::console::CSP.contains("unsafe"));
    assert_eq!(hv(&headers, header::CACHE_CONTROL), "no-cache");
    assert_eq!(hv(&headers, header::X_FRAME_OPTIONS), "DENY");
    assert!(text.contains(r#"<script type="module" src="/console/app.js"></script>"#), "{text}");
    let etag = hv(&headers, header::ETAG).to_string();
    let (status, headers, _, text) =
        call!(&app, test::TestRequest::get().uri("/").insert_header((header::IF_NONE_MATCH, etag.as_str()))).await;
    assert_eq!((status, text.as_str()), (StatusCode::NOT_MODIFIED, ""));
    assert_eq!(hv(&headers, header::ETAG), etag.as_str());

    for asset in gm_gateway::console::ASSETS {
        let uri = format!("/console/{}", asset.path);
        let (status, headers, _, text) = call!(&app, test::TestRequest::get().uri(&uri)).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        assert_eq!(hv(&headers, header::CONTENT_TYPE), gm_gateway::console::content_type(asset.path), "{uri}");
        assert_eq!(hv(&headers, header::CONTENT_SECURITY_POLICY), gm_gateway::console::CSP, "{uri}");
        assert_eq!(text.as_bytes(), asset.body, "{uri}");
    }
    assert_eq!(gm_gateway::console::content_type("app.js"), "text/javascript; charset=utf-8");
    assert_eq!(gm_gateway::console::content_type("console.css"), "text/css; charset=utf-8");

    let req = test::TestRequest::get().uri("/console/app.js").insert_header((header::ACCEPT_ENCODING, "gzip"));
    let res = test::call_service(&app, req.to_request()).await;
    assert_eq!(hv(res.headers(), header::CONTENT_ENCODING), "gzip");
    let gz = test::read_body(res).await;
    let mut plain = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut plain).unwrap();
    assert_eq!(plain, gm_gateway::console::asset("app.js").unwrap().body);
    // The API's answers are not compressed (clients never asked for it before the console).
    let req = test::TestRequest::get().uri("/health/live").insert_header((header::ACCEPT_ENCODING, "gzip"));
    assert!(!call!(&app, req).await.1.contains_key(header::CONTENT_ENCODING));

    for uri in ["/console/nope.js", "/console/../Cargo.toml", "/console/"] {
        let (status, headers, json, _) = call!(&app, test::TestRequest::get().uri(uri)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(json["error"], "not_found", "{uri}");
        assert_eq!(
            hv(&headers, header::CONTENT_SECURITY_POLICY),
            "default-src 'none'; frame-ancestors 'none'",
            "{uri}"
        );
    }
}

/// `GET /v1/me` for each kind of credentials: the games are the token's among those the
/// gateway knows (here the keys' games, space-race and farm).
#[actix_web::test]
async fn me_says_who_each_kind_of_token_is_and_its_known_games() {
    let h = harness_configured(|c| c.dev_analyst_token = Some(Secret("dev-analyst-token-0001".into())));
    let app = test::init_service(app(h.data.clone())).await;
    let me = |auth: String| test::TestRequest::get().uri("/v1/me").insert_header((header::AUTHORIZATION, auth));
    let (status, _, json, text) = call!(&app, me(format!("Bearer {}", issuer().token("ana", &["analyst"])))).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(
        json,
        json!({"kind": "person", "subject": "ana", "roles": ["analyst"], "permissions": ["query", "read_api_docs", "read_status"],
               "games": ["farm", "space-race"], "all_games": true})
    );
    let scoped = issuer().token_for_games("cleo", &["compliance"], &["space-race", "not-configured"]);
    let (_, _, json, _) = call!(&app, me(format!("Bearer {scoped}"))).await;
    assert_eq!(json["games"], json!(["space-race"]), "unknown games are left out: {json}");
    assert_eq!(
        (json["all_games"].clone(), json["permissions"].clone()),
        (json!(false), json!(["privacy", "read_api_docs", "read_status"]))
    );
    let (_, _, json, _) = call!(&app, me(format!("Bearer {}", issuer().token("root", &["admin"])))).await;
    assert_eq!(json["permissions"], json!(["query", "privacy", "read_metrics", "read_api_docs", "read_status"]));
    let (_, _, json, _) = call!(&app, me(format!("Bearer {KEY}"))).await;
    assert_eq!(json["kind"], "game_key");
    assert_eq!(
        (json["games"].clone(), json["permissions"].clone()),
        (json!(["space-race"]), json!(["ingest", "read_api_docs"]))
    );
    assert_eq!(json["subject"], gm_gateway::auth::key_id(KEY), "a key is named by its id, never itself");
    let (_, _, json, _) = call!(&app, me(format!("Bearer {METRICS_TOKEN}"))).await;
    assert_eq!((json["kind"].clone(), json["games"].clone()), (json!("metrics_scraper"), json!([])));
    let (_, _, json, _) = call!(&app, me("Bearer dev-analyst-token-0001".into())).await;
    assert_eq!((json["subject"].clone(), json["roles"].clone()), (json!("dev-analyst-token"), json!(["analyst"])));
    assert_eq!(json["games"], json!(["farm", "space-race"]));
    for auth in ["Bearer wrong-token", "Bearer eyJhbGciOiJFZERTQSJ9.e30.x"] {
        assert_eq!(call!(&app, me(auth.into())).await.0, StatusCode::UNAUTHORIZED, "{auth}");
    }
    assert_eq!(call!(&app, test::TestRequest::get().uri("/v1/me")).await.0, StatusCode::UNAUTHORIZED);
}

/// The one-click development sign-in lists only the tokens the configuration hands it (the
/// embedded default's), and none otherwise; it needs no credentials.
#[actix_web::test]
async fn dev_sign_in_lists_only_the_configured_development_tokens() {
    let service = test::init_service(app(harness().data.clone())).await;
    let (status, _, json, _) = call!(&service, test::TestRequest::get().uri("/v1/dev-sign-in")).await;
    assert_eq!((status, json), (StatusCode::OK, json!({"tokens": []})));
    let mut config = harness_config(Limits::default(), Duration::from_secs(5));
    config.dev_analyst_token = Some(Secret("dev-analyst-token-0001".into()));
    config.dev_sign_ins = vec![gm_gateway::me::DevSignIn {
        role: gm_gateway::Role::Analyst,
        token: Secret("dev-analyst-token-0001".into()),
    }];
    let debug = format!("{config:?}");
    assert!(!debug.contains("dev-analyst-token-0001"), "{debug}");
    let service = test::init_service(app(harness_from(config).data.clone())).await;
    let (_, _, json, _) = call!(&service, test::TestRequest::get().uri("/v1/dev-sign-in")).await;
    assert_eq!(json, json!({"tokens": [{"role": "analyst", "token": "dev-analyst-token-0001"}]}));
    let (status, _, json, _) = call!(&service, me_request("Bearer dev-analyst-token-0001")).await;
    assert_eq!(
        (status, json["subject"].clone()),
        (StatusCode::OK, json!("dev-analyst-token")),
        "the token it gives signs in"
    );
}

/// A response header as text ("" when absent).
fn hv(headers: &header::HeaderMap, name: header::HeaderName) -> &str {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
}

fn me_request(auth: &str) -> test::TestRequest {
    test::TestRequest::get().uri("/v1/me").insert_header((header::AUTHORIZATION, auth.to_string()))
}
