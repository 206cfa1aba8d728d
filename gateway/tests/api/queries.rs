//! Queries and the service's own routes: date ranges, the funnel, answers and errors,
//! metric labels, unknown routes, readiness, the OpenAPI document.

use super::*;
use gm_gateway::ComponentState;

#[actix_web::test]
async fn reversed_wide_or_bad_date_ranges_are_400_with_reason() {
    let h = harness();
    let app = test::init_service(app(h.data.clone())).await;
    let cases = [
        ("from=2025-02-01&to=2025-01-01", "after"),
        ("from=2020-01-01&to=2025-01-01", "at most"),
        ("from=2025-13-01&to=2025-01-01", "not a date"),
        ("to=2025-01-01", "'from'"),
    ];
    for (query, expected) in cases {
        let req = test::TestRequest::get()
            .uri(&format!("/v1/analytics/space-race/sessions?{query}"))
            .insert_header(analyst());
        let (status, _, json, text) = call!(&app, req).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {text}");
        assert!(json["reason"].as_str().unwrap().contains(expected), "{query}: {text}");
    }
}

#[actix_web::test]
async fn the_funnel_follows_the_games_configured_order_with_conversions_and_null_rates() {
    let log = Arc::new(FakeLog::default());
    let config = harness_config(Limits::default(), Duration::from_secs(10));
    let orders = [("space-race".to_string(), vec!["tutorial".to_string(), "level-2".to_string()])].into();
    let state =
        AppState::new(config, log, Arc::new(FakeQueries), Metrics::new(), Readiness::new()).with_funnel_orders(orders);
    let app = test::init_service(app(web::Data::new(state))).await;
    let req = test::TestRequest::get().uri("/v1/analytics/space-race/funnel").insert_header(analyst());
    let (status, _, json, text) = call!(&app, req).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let steps = json["steps"].as_array().unwrap();
    let levels: Vec<&str> = steps.iter().map(|s| s["level_id"].as_str().unwrap()).collect();
    assert_eq!(levels, ["tutorial", "level-2", "level-10"], "configured, then the others");
    let conversions: Vec<&Value> = steps.iter().map(|s| &s["conversion_from_previous"]).collect();
    assert_eq!(conversions, [&Value::Null, &serde_json::json!(0.5), &serde_json::json!(0.5)]);
    // Nobody completed (the fake's counts): rate 0.0 where players started, never NaN.
    assert_eq!(steps[0]["completion_rate"], serde_json::json!(0.0));
    assert_eq!(steps[0]["median_seconds_to_complete"], Value::Null);
}

#[actix_web::test]
async fn queries_answer_rows_404_and_503() {
    let h = harness();
    let app = test::init_service(app(h.data.clone())).await;
    let get = |uri: &str| test::TestRequest::get().uri(uri).insert_header(analyst());
    let (status, _, json, text) =
        call!(&app, get("/v1/analytics/space-race/active-users?from=2025-01-01&to=2025-01-03")).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(json["game_id"], "space-race");
    assert_eq!(json["from"], "2025-01-01");
    assert_eq!(json["days"].as_array().unwrap().len(), 3);
    let (status, _, json, _) = call!(&app, get("/v1/players/space-race/p1")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json["player_id"], "p1");
    assert_eq!(call!(&app, get("/v1/players/space-race/nobody")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(call!(&app, get("/v1/players/space-race/bad%20id")).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(call!(&app, get("/v1/analytics/Space/funnel")).await.0, StatusCode::BAD_REQUEST);
    let (status, _, json, _) = call!(&app, get("/v1/analytics/space-race/funnel")).await;
    assert_eq!(status, StatusCode::OK);
    // Levels in natural order when the game has no configured order.
    let levels: Vec<&str> = json["steps"].as_array().unwrap().iter().map(|s| s["level_id"].as_str().unwrap()).collect();
    assert_eq!(levels, ["level-2", "level-10", "tutorial"]);
    let (status, headers, _, _) =
        call!(&app, get("/v1/analytics/space-race/revenue?from=2025-01-01&to=2025-01-03")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers.get(header::RETRY_AFTER).unwrap(), "1");
}

#[actix_web::test]
async fn metrics_label_routes_by_pattern_never_by_raw_ids() {
    let h = harness();
    let app = test::init_service(app(h.data.clone())).await;
    let req = test::TestRequest::get().uri("/v1/players/space-race/secret-player-42").insert_header(analyst());
    call!(&app, req).await;
    call!(&app, test::TestRequest::get().uri("/nowhere/secret-player-43")).await;
    let metrics = test::TestRequest::get().uri("/metrics").insert_header(("X-API-Key", METRICS_TOKEN));
    let (status, headers, _, text) = call!(&app, metrics).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers.get(header::CONTENT_TYPE).unwrap().to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    assert!(text.contains("route=\"/v1/players/{game_id}/{player_id}\""), "{text}");
    assert!(text.contains("status=\"404\""), "{text}");
    assert!(text.contains("route=\"unmatched\""), "{text}");
    assert!(text.contains("gamemetrics_http_request_duration_seconds"), "{text}");
    assert!(!text.contains("secret-player"), "{text}");
}

#[actix_web::test]
async fn unknown_routes_and_methods_answer_json() {
    let h = harness();
    let app = test::init_service(app(h.data.clone())).await;
    let (status, _, json, _) = call!(&app, test::TestRequest::get().uri("/v2/nothing")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(json["error"], "not_found");
    let (status, _, json, _) = call!(&app, test::TestRequest::get().uri("/v1/events")).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(json["error"], "method_not_allowed");
}

#[actix_web::test]
async fn ready_is_503_naming_components_until_all_are_ready() {
    let h = harness();
    h.readiness.register("log");
    h.readiness.register("store");
    let app = test::init_service(app(h.data.clone())).await;
    assert_eq!(call!(&app, test::TestRequest::get().uri("/health/live")).await.0, StatusCode::OK);
    h.readiness.set_ready("log", true);
    let (status, _, json, _) = call!(&app, test::TestRequest::get().uri("/health/ready")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json["not_ready"], json!(["store"]));
    h.readiness.set("store", ComponentState::NotReady("SELECT 1 timed out after 2 s".into()));
    let (status, _, json, _) = call!(&app, test::TestRequest::get().uri("/health/ready")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json["reasons"], json!({"store": "SELECT 1 timed out after 2 s"}));
    h.readiness.set_ready("store", true);
    let (status, _, json, _) = call!(&app, test::TestRequest::get().uri("/health/ready")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json["reasons"], json!({}));
    // Back to 503 when a component fails again, 200 after it recovers.
    h.readiness.set("log", ComponentState::NotReady("brokers unreachable".into()));
    assert_eq!(call!(&app, test::TestRequest::get().uri("/health/ready")).await.0, StatusCode::SERVICE_UNAVAILABLE);
    h.readiness.set("log", ComponentState::Ready);
    assert_eq!(call!(&app, test::TestRequest::get().uri("/health/ready")).await.0, StatusCode::OK);
}

#[actix_web::test]
async fn openapi_document_is_served() {
    let h = harness();
    let app = test::init_service(app(h.data.clone())).await;
    let (status, _, json, _) =
        call!(&app, test::TestRequest::get().uri("/openapi.json").insert_header(analyst())).await;
    assert_eq!(status, StatusCode::OK);
    assert!(json["paths"]["/v1/events"]["post"].is_object());
}
