//! Ingest: batches, limits, the log's failures, gzip, body signatures, rate limits, the
//! Segment and legacy routes and media types.

use super::*;

#[actix_web::test]
async fn accepted_batch_appends_one_record_per_event_keyed_game_player_in_one_call() {
    let h = harness();
    let app = test::init_service(app(h.data.clone())).await;
    let body = json!({"sent_at": Utc::now().to_rfc3339(), "events": [session_start("p1"), session_start("p2")]});
    let (status, _, json, text) = call!(&app, post_events(body.to_string())).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");
    assert_eq!(json["accepted"], 2);
    assert_eq!(json["rejected"], 0);
    assert_eq!(h.log.append_calls(), 1);
    assert_eq!(h.log.appends.lock().unwrap()[0].0, gm_schemas::topics::RAW);
    let records = h.log.records();
    assert_eq!(records.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(), ["space-race:p1", "space-race:p2"]);
    let RawRecord::Event(envelope) = serde_json::from_slice::<RawRecord>(&records[0].payload).unwrap() else {
        panic!("not an event record");
    };
    assert_eq!(envelope.game_id.as_str(), "space-race");
    assert_eq!(json["results"][0]["event_id"], envelope.event_id.to_string());
    assert_eq!(json["results"][0]["status"], "accepted");
    assert!(h.metrics.encode().contains("gamemetrics_events_accepted_total 2"));
}

#[actix_web::test]
async fn mixed_batch_is_202_with_reasons_and_appends_only_the_good_events() {
    let h = harness();
    let app = test::init_service(app(h.data.clone())).await;
    let body = json!({"events": [session_start("p1"), bad_purchase("p2"), {"type": "session_start"}]});
    let (status, _, json, text) = call!(&app, post_events(body.to_string())).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");
    assert_eq!((json["accepted"].as_u64(), json["rejected"].as_u64()), (Some(1), Some(2)));
    let bad = &json["results"][1];
    assert_eq!(bad["index"], 1);
    assert_eq!(bad["status"], "rejected");
    assert_eq!(bad["code"], "invalid_field");
    assert!(bad["field"].as_str().unwrap().starts_with("properties"), "{bad}");
    assert!(!bad["reason"].as_str().unwrap().is_empty());
    assert_eq!(json["results"][2]["code"], "missing_field");
    assert_eq!(json["results"][2]["field"], "player_id");
    let keys: Vec<String> = h.log.records().into_iter().map(|r| r.key).collect();
    assert_eq!(keys, ["space-race:p1"]);
    let metrics = h.metrics.encode();
    assert!(metrics.contains("gamemetrics_events_rejected_total{reason=\"invalid_field\"} 1"), "{metrics}");
}

#[actix_web::test]
async fn batch_with_no_valid_event_is_400_with_results_and_appends_nothing() {
    let h = harness();
    let app = test::init_service(app(h.data.clone())).await;
    let body = json!({"events": [bad_purchase("p1"), bad_purchase("p2")]});
    let (status, _, json, text) = call!(&app, post_events(body.to_string())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert_eq!(json["accepted"], 0);
    assert_eq!(json["rejected"], 2);
    assert_eq!(json["results"].as_array().unwrap().len(), 2);
    assert_eq!(h.log.append_calls(), 0);
}

#[actix_web::test]
async fn malformed_json_and_invalid_bodies_are_400_never_5xx() {
    let h = harness();
    let app = test::init_service(app(h.data.clone())).await;
    let bodies: [&[u8]; 7] =
        [b"{not json", b"", b"[]", b"{\"events\": 3}", b"\xff\xfe\x00", b"{\"events\": []}", b"null"];
    for body in bodies {
        let (status, _, json, text) = call!(&app, post_events(body.to_vec())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{:?}: {text}", String::from_utf8_lossy(body));
        assert!(json["error"].is_string() && json["reason"].is_string(), "{text}");
    }
    // A corrupt gzip body is the client's fault too.
    let req = post_events(b"definitely not gzip".to_vec()).insert_header((header::CONTENT_ENCODING, "gzip"));
    let (status, _, _, text) = call!(&app, req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert_eq!(h.log.append_calls(), 0);
}

#[actix_web::test]
async fn body_over_the_limit_is_413_with_json_reason() {
    let h = harness_with(Limits { max_body_bytes: 1000, ..Limits::default() }, Duration::from_secs(5));
    let app = test::init_service(app(h.data.clone())).await;
    let events: Vec<Value> = (0..40).map(|i| session_start(&format!("p{i}"))).collect();
    let (status, _, json, text) = call!(&app, post_events(json!({ "events": events }).to_string())).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{text}");
    assert_eq!(json["error"], "too_large");
    assert_eq!(h.log.append_calls(), 0);
}

#[actix_web::test]
async fn too_many_events_is_400() {
    let h = harness_with(Limits { max_events: 3, ..Limits::default() }, Duration::from_secs(5));
    let app = test::init_service(app(h.data.clone())).await;
    let events: Vec<Value> = (0..4).map(|i| session_start(&format!("p{i}"))).collect();
    let (status, _, json, text) = call!(&app, post_events(json!({ "events": events }).to_string())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert_eq!(json["error"], "too_many_events");
    assert_eq!(h.log.append_calls(), 0);
}

#[actix_web::test]
async fn log_failure_is_503_with_retry_after_and_claims_nothing() {
    let h = harness();
    h.log.fail.store(true, Ordering::SeqCst);
    let app = test::init_service(app(h.data.clone())).await;
    let body = json!({"events": [session_start("p1"), bad_purchase("p2")]});
    let (status, headers, json, text) = call!(&app, post_events(body.to_string())).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
    assert_eq!(headers.get(header::RETRY_AFTER).unwrap(), "1");
    assert_eq!(json["error"], "unavailable");
    assert!(json.get("accepted").is_none(), "{text}");
    assert!(h.log.records().is_empty());
    let metrics = h.metrics.encode();
    assert!(metrics.contains("gamemetrics_events_accepted_total 0"), "{metrics}");
}

#[actix_web::test]
async fn slow_log_times_out_with_503() {
    let h = harness_with(Limits::default(), Duration::from_millis(50));
    *h.log.delay.lock().unwrap() = Some(Duration::from_secs(2));
    let app = test::init_service(app(h.data.clone())).await;
    let (status, headers, json, _) =
        call!(&app, post_events(json!({"events": [session_start("p1")]}).to_string())).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json["error"], "timeout");
    assert_eq!(headers.get(header::RETRY_AFTER).unwrap(), "1");
}

#[actix_web::test]
async fn gzipped_batch_is_accepted() {
    let h = harness();
    let app = test::init_service(app(h.data.clone())).await;
    let body = json!({"events": [session_start("p1"), session_start("p2")]}).to_string();
    let req = post_events(gzip(body.as_bytes())).insert_header((header::CONTENT_ENCODING, "gzip"));
    let (status, _, json, text) = call!(&app, req).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");
    assert_eq!(json["accepted"], 2);
    assert_eq!(h.log.records().len(), 2);
}

#[actix_web::test]
async fn gzip_bomb_is_refused_with_413_after_inflating_at_most_the_limit() {
    let h = harness();
    let app = test::init_service(app(h.data.clone())).await;
    // 50 MB of zeros compress to ~50 KB: under the 1 MB limit on the wire, far over it inflated.
    let bomb = gzip(&vec![0u8; 50 * 1024 * 1024]);
    assert!(bomb.len() < Limits::default().max_body_bytes);
    let started = std::time::Instant::now();
    let req = post_events(bomb).insert_header((header::CONTENT_ENCODING, "gzip"));
    let (status, _, json, text) = call!(&app, req).await;
    let elapsed = started.elapsed();
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{text}");
    assert_eq!(json["error"], "too_large");
    // Inflating 50 MB takes far longer than the ~1 MB we allow ourselves to inflate.
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
    assert_eq!(h.log.append_calls(), 0);
}

#[actix_web::test]
async fn unsupported_content_encoding_is_415() {
    let h = harness();
    let app = test::init_service(app(h.data.clone())).await;
    let req = post_events(b"{}".to_vec()).insert_header((header::CONTENT_ENCODING, "br"));
    let (status, _, json, _) = call!(&app, req).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(json["error"], "unsupported_encoding");
}

const SECRET: &str = "space-signing-secret-0001";

fn signing_harness() -> Harness {
    harness_configured(|c| {
        c.signing_secrets = vec![gm_gateway::SigningSecret {
            game_id: GameId::parse("space-race").unwrap(),
            secret: Secret(SECRET.into()),
        }]
    })
}

#[actix_web::test]
async fn a_game_with_a_secret_needs_the_hmac_of_the_timestamp_and_raw_possibly_gzipped_body_once() {
    use gm_gateway::signature::sign_hex;
    let h = signing_harness();
    let app = test::init_service(app(h.data.clone())).await;
    let body = gzip(json!({"events": [session_start("p1")]}).to_string().as_bytes());
    let now = chrono::Utc::now().timestamp();
    let signed = |timestamp: i64, sig: String| {
        post_events(body.clone())
            .insert_header((header::CONTENT_ENCODING, "gzip"))
            .insert_header(("X-GM-Timestamp", timestamp.to_string()))
            .insert_header(("X-GM-Signature", sig))
    };
    let good = sign_hex(SECRET.as_bytes(), now, &body);
    let (status, _, _, text) = call!(&app, signed(now, good.clone())).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");
    // The same request again is a replay: 401, and nothing lands.
    let (status, _, json, text) = call!(&app, signed(now, good.clone())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{text}");
    assert!(json["reason"].as_str().unwrap().contains("replay"), "{text}");
    // Signed again a second later (a client's retry), in base64: accepted.
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD
        .encode(hex::decode(sign_hex(SECRET.as_bytes(), now - 1, &body)).unwrap());
    assert_eq!(call!(&app, signed(now - 1, b64)).await.0, StatusCode::ACCEPTED);
    // A signature of the inflated body, of another secret, or for another time: 401.
    let inflated = json!({"events": [session_start("p1")]}).to_string();
    for bad in [
        sign_hex(SECRET.as_bytes(), now, inflated.as_bytes()),
        sign_hex(b"another-secret", now, &body),
        sign_hex(SECRET.as_bytes(), now - 2, &body),
    ] {
        let (status, _, json, text) = call!(&app, signed(now, bad)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{text}");
        assert!(json["reason"].as_str().unwrap().contains("does not match"), "{text}");
    }
    // Signed ten minutes ago: refused, whatever the signature.
    let old = now - 600;
    let (status, _, json, text) = call!(&app, signed(old, sign_hex(SECRET.as_bytes(), old, &body))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{text}");
    assert!(json["reason"].as_str().unwrap().contains("from the gateway's clock"), "{text}");
    let unsigned = post_events(body.clone()).insert_header((header::CONTENT_ENCODING, "gzip"));
    let (status, _, json, _) = call!(&app, unsigned).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(json["reason"].as_str().unwrap().contains("requires signed requests"));
    assert_eq!(h.log.records().len(), 2, "only the two signed batches landed");
    // A game without a secret needs no signature.
    let farm = test::TestRequest::post()
        .uri("/v1/events")
        .insert_header(("X-API-Key", OTHER_KEY))
        .set_payload(json!({"events": [session_start("p1")]}).to_string());
    assert_eq!(call!(&app, farm).await.0, StatusCode::ACCEPTED);
}

#[actix_web::test]
async fn an_unsigned_gzip_bomb_is_refused_before_inflating() {
    let h = signing_harness();
    let app = test::init_service(app(h.data.clone())).await;
    let bomb = gzip(&vec![0u8; 50 * 1024 * 1024]);
    let started = std::time::Instant::now();
    let req = post_events(bomb).insert_header((header::CONTENT_ENCODING, "gzip"));
    assert_eq!(call!(&app, req).await.0, StatusCode::UNAUTHORIZED);
    assert!(started.elapsed() < Duration::from_millis(500), "{:?}", started.elapsed());
}

fn rate_limited_harness(config: gm_gateway::RateLimitConfig) -> Harness {
    harness_configured(|c| c.rate_limits = config)
}

#[actix_web::test]
async fn a_key_over_its_request_quota_gets_429_with_retry_after_and_recovers() {
    let h = rate_limited_harness(gm_gateway::RateLimitConfig {
        per_key_per_second: 5,
        per_key_burst: 2,
        ..Default::default()
    });
    let app = test::init_service(app(h.data.clone())).await;
    let batch = || post_events(json!({"events": [session_start("p1")]}).to_string());
    assert_eq!(call!(&app, batch()).await.0, StatusCode::ACCEPTED);
    assert_eq!(call!(&app, batch()).await.0, StatusCode::ACCEPTED);
    let (status, headers, json, text) = call!(&app, batch()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{text}");
    assert_eq!(json["error"], "rate_limited");
    assert_eq!(headers.get(header::RETRY_AFTER).unwrap(), "1");
    // Another key has its own quota.
    let farm = test::TestRequest::post()
        .uri("/v1/events")
        .insert_header(("X-API-Key", OTHER_KEY))
        .set_payload(json!({"events": [session_start("p1")]}).to_string());
    assert_eq!(call!(&app, farm).await.0, StatusCode::ACCEPTED);
    // 5 per second: a slot is free again after 200 ms.
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(call!(&app, batch()).await.0, StatusCode::ACCEPTED);
    assert_eq!(h.log.append_calls(), 4);
}

#[actix_web::test]
async fn events_of_a_player_over_its_quota_are_refused_one_by_one_and_the_others_land() {
    let h = rate_limited_harness(gm_gateway::RateLimitConfig {
        per_player_per_second: 10,
        per_player_burst: 2,
        ..Default::default()
    });
    let app = test::init_service(app(h.data.clone())).await;
    let events: Vec<Value> = ["hot", "hot", "hot", "cold", "hot"].iter().map(|p| session_start(p)).collect();
    let (status, _, json, text) = call!(&app, post_events(json!({ "events": events }).to_string())).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");
    let codes: Vec<&str> =
        json["results"].as_array().unwrap().iter().map(|r| r["code"].as_str().unwrap_or("ok")).collect();
    assert_eq!(codes, ["ok", "ok", "rate_limited", "ok", "rate_limited"]);
    assert_eq!(h.log.records().len(), 3);
    // Nothing accepted because of the limit: 429 with Retry-After and the per-event results.
    let (status, headers, json, _) =
        call!(&app, post_events(json!({"events": [session_start("hot")]}).to_string())).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(headers.contains_key(header::RETRY_AFTER));
    assert_eq!(json["results"][0]["code"], "rate_limited");
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (status, _, _, _) = call!(&app, post_events(json!({"events": [session_start("hot")]}).to_string())).await;
    assert_eq!(status, StatusCode::ACCEPTED, "the player's quota recovered");
    assert!(h.metrics.encode().contains("gamemetrics_events_rejected_total{reason=\"rate_limited\"} 3"));
}

fn basic(key: &str) -> (header::HeaderName, String) {
    use base64::Engine as _;
    (header::AUTHORIZATION, format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{key}:"))))
}

#[actix_web::test]
async fn a_segment_batch_with_the_write_key_as_basic_user_lands_with_a_result_per_message() {
    let dir = tempfile::tempdir().unwrap();
    let h = harness_with_privacy(dir.path()).await;
    let app = test::init_service(app(h.data.clone())).await;
    let now = Utc::now().to_rfc3339();
    let body = json!({"sentAt": now, "batch": [
        {"type": "track", "event": "Order Completed", "userId": "u1", "messageId": "m-1", "timestamp": now,
         "properties": {"revenue": 4.99, "currency": "USD", "product_id": "gems"}},
        {"type": "identify", "userId": "u1", "timestamp": now, "traits": {"email": "u1@example.com"}},
        {"type": "alias", "userId": "u1", "previousId": "x"},
    ]});
    let req = test::TestRequest::post().uri("/v1/batch").insert_header(basic(KEY)).set_payload(body.to_string());
    let (status, _, json, text) = call!(&app, req).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!((json["accepted"].as_u64(), json["rejected"].as_u64()), (Some(2), Some(1)), "{text}");
    assert_eq!(json["results"][2]["code"], "unknown_type");
    let records = h.log.records();
    // Both under the player's pseudonym; the e-mail sealed, nowhere in clear.
    assert_eq!(records[0].key, records[1].key);
    assert!(records[0].key.starts_with("space-race:pz_"), "{}", records[0].key);
    for r in &records {
        let text = String::from_utf8_lossy(&r.payload);
        assert!(!text.contains("u1@example.com") && !text.contains("\"u1\""), "{text}");
    }
    let RawRecord::Event(identify) = serde_json::from_slice::<RawRecord>(&records[1].payload).unwrap() else {
        panic!()
    };
    assert!(matches!(identify.personal, Some(gm_schemas::PersonalData::Sealed(_))), "{:?}", identify.personal);
    let RawRecord::Event(purchase) = serde_json::from_slice::<RawRecord>(&records[0].payload).unwrap() else {
        panic!()
    };
    assert_eq!(purchase.body.type_name(), "purchase");
    assert_eq!(purchase.event_id, gm_schemas::compat::event_id_for("space-race", "m-1"));
    // track and identify alone; a wrong write key is 401.
    let track = json!({"userId": "u2", "event": "Level Started", "properties": {"level": 1}});
    let req = test::TestRequest::post().uri("/v1/track").insert_header(basic(KEY)).set_payload(track.to_string());
    assert_eq!(call!(&app, req).await.0, StatusCode::OK);
    let identify = json!({"userId": "u2", "traits": {"name": "Bo"}});
    let req = test::TestRequest::post().uri("/v1/identify").insert_header(basic(KEY)).set_payload(identify.to_string());
    assert_eq!(call!(&app, req).await.0, StatusCode::OK);
    let req = test::TestRequest::post().uri("/v1/track").insert_header(basic("wrong")).set_payload(track.to_string());
    assert_eq!(call!(&app, req).await.0, StatusCode::UNAUTHORIZED);
    let bad = json!({"event": "Level Started"});
    let req = test::TestRequest::post().uri("/v1/track").insert_header(basic(KEY)).set_payload(bad.to_string());
    let (status, _, json, _) = call!(&app, req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(json["results"][0]["field"], "userId");
    assert_eq!(h.log.records().len(), 4);
}

#[actix_web::test]
async fn a_legacy_event_answers_status_and_event_id() {
    let h = harness();
    let app = test::init_service(app(h.data.clone())).await;
    let post = |body: Value| {
        test::TestRequest::post().uri("/api/v1/events").insert_header(("X-API-Key", KEY)).set_payload(body.to_string())
    };
    let (status, _, json, text) = call!(
        &app,
        post(json!({"event_type": "level_up", "player_id": "p1", "game_id": "space-race",
                    "timestamp": Utc::now().to_rfc3339(), "data": {"level": 5}}))
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(json["status"], "success");
    let RawRecord::Event(e) = serde_json::from_slice::<RawRecord>(&h.log.records()[0].payload).unwrap() else {
        panic!()
    };
    assert_eq!(json["event_id"], e.event_id.to_string());
    assert_eq!(e.body.type_name(), "progression");
    let (status, _, json, _) = call!(
        &app,
        post(
            json!({"event_type": "login", "player_id": "p1", "game_id": "farm", "timestamp": Utc::now().to_rfc3339()})
        )
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!((json["status"].as_str(), json["error"].as_str()), (Some("error"), Some("wrong_game")));
    let (status, _, json, _) = call!(&app, post(json!([1, 2]))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(json["error"], "malformed");
    assert_eq!(h.log.records().len(), 1);
}

/// Issue 17, item 7: a body declared as something other than JSON is 415
/// `unsupported_media_type` on every route that takes JSON, before anything is appended;
/// what Segment's SDKs send (analytics.js: `text/plain` with a JSON body) stays accepted, and
/// so does a body with no `Content-Type`.
#[actix_web::test]
async fn a_body_that_is_not_json_is_415_and_segments_text_plain_stays_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let h = harness_with_privacy(dir.path()).await;
    let app = test::init_service(app(h.data.clone())).await;
    let batch = json!({"events": [session_start("p1")]}).to_string();
    let post = |uri: &str, content_type: Option<&str>, body: String| {
        let mut req = test::TestRequest::post().uri(uri).insert_header(basic(KEY)).set_payload(body);
        if let Some(t) = content_type {
            req = req.insert_header((header::CONTENT_TYPE, t));
        }
        req
    };
    let refused = [
        ("/v1/events", "text/plain", batch.clone()),
        ("/v1/events", "application/x-www-form-urlencoded", format!("events={batch}")),
        ("/v1/events", "multipart/form-data; boundary=x", batch.clone()),
        ("/v1/events", "application/xml", "<events/>".to_string()),
        ("/v1/events", "application/json; charset=iso-8859-1", batch.clone()),
        ("/api/v1/events", "text/plain", json!({"event_type": "login", "player_id": "p1"}).to_string()),
        ("/v1/batch", "text/html", json!({"batch": []}).to_string()),
        ("/v1/track", "application/octet-stream", json!({"userId": "u1", "event": "x"}).to_string()),
    ];
    for (uri, content_type, body) in refused {
        let (status, _, json, text) = call!(&app, post(uri, Some(content_type), body)).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{uri} {content_type}: {text}");
        assert_eq!(json["error"], "unsupported_media_type", "{text}");
        let reason = json["reason"].as_str().unwrap();
        assert!(reason.contains("application/json") || reason.contains("UTF-8"), "{text}");
    }
    let erasure = test::TestRequest::post()
        .uri("/v1/privacy/erasures")
        .insert_header(bearer(&["compliance"]))
        .insert_header((header::CONTENT_TYPE, "text/plain"))
        .set_payload(json!({"game_id": "space-race", "player_id": "p1", "reason": "r"}).to_string());
    assert_eq!(call!(&app, erasure).await.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(h.log.append_calls(), 0, "nothing refused reached the log");

    // JSON in its forms, no Content-Type, and Segment's text/plain: accepted.
    for (uri, content_type, body) in [
        ("/v1/events", Some("application/json"), batch.clone()),
        ("/v1/events", Some("application/json; charset=UTF-8"), batch.clone()),
        ("/v1/events", Some("application/vnd.gamemetrics+json"), batch.clone()),
        ("/v1/events", None, batch.clone()),
        (
            "/v1/batch",
            Some("text/plain;charset=UTF-8"),
            json!({"batch": [{"type": "track", "userId": "u1", "event": "x"}]}).to_string(),
        ),
        ("/v1/track", Some("text/plain"), json!({"userId": "u1", "event": "Button Clicked"}).to_string()),
        ("/v1/identify", Some("text/plain"), json!({"userId": "u1", "traits": {"name": "Bo"}}).to_string()),
    ] {
        let (status, _, _, text) = call!(&app, post(uri, content_type, body)).await;
        assert!(status.is_success(), "{uri} {content_type:?}: {status} {text}");
    }
    // A GET is not checked; a wrong method still gets its 405.
    let get = test::TestRequest::get()
        .uri("/v1/analytics/space-race/funnel")
        .insert_header(analyst())
        .insert_header((header::CONTENT_TYPE, "text/xml"));
    assert_eq!(call!(&app, get).await.0, StatusCode::OK);
    let put = test::TestRequest::get().uri("/v1/events").insert_header((header::CONTENT_TYPE, "text/xml"));
    assert_eq!(call!(&app, put).await.0, StatusCode::METHOD_NOT_ALLOWED);
}
