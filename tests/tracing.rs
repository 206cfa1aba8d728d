//! One trace per ingested batch, from the HTTP request through Kafka into the actors and the
//! projections: the three roles run as production processes (Kafka, PostgreSQL, Redis) and
//! export their spans over OTLP/HTTP to a receiver inside this test, which decodes the
//! protobuf requests (opentelemetry-proto) and checks the parent/child chain.

mod common;

use actix_web::{web, App, HttpResponse, HttpServer};
use common::services::{Role, TestServices};
use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Debug)]
struct ReceivedSpan {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    /// Every attribute value, to check that nothing personal is in a span.
    values: Vec<String>,
}

type Received = Arc<Mutex<Vec<ReceivedSpan>>>;

/// POST /v1/traces: an OTLP/HTTP protobuf request, as a collector receives it.
async fn receive(body: web::Bytes, received: web::Data<Received>) -> HttpResponse {
    let Ok(request) = ExportTraceServiceRequest::decode(body.as_ref()) else {
        return HttpResponse::BadRequest().finish();
    };
    let mut spans = received.lock().unwrap();
    for resource in request.resource_spans {
        let service = resource
            .resource
            .iter()
            .flat_map(|r| r.attributes.iter())
            .find(|a| a.key == "service.name")
            .map(|a| value(&a.value))
            .unwrap_or_default();
        for scope in resource.scope_spans {
            for span in scope.spans {
                spans.push(ReceivedSpan {
                    service: service.clone(),
                    name: span.name.clone(),
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    values: span.attributes.iter().map(|a| value(&a.value)).collect(),
                });
            }
        }
    }
    HttpResponse::Ok().content_type("application/x-protobuf").body(Vec::<u8>::new())
}

fn value(v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[actix_rt::test]
async fn a_batch_is_one_trace_from_the_http_request_through_kafka_to_the_projections() {
    let received: Received = Arc::default();
    let data = web::Data::new(received.clone());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let server =
        HttpServer::new(move || App::new().app_data(data.clone()).route("/v1/traces", web::post().to(receive)))
            .workers(1)
            .listen(listener)
            .unwrap()
            .run();
    let server_handle = server.handle();
    actix_rt::spawn(server);

    let services = TestServices::create().await;
    let keys = format!("{GAME}={KEY}");
    let traced = |role: &'static str| {
        Role::start_with(role, &services, &keys, |c| {
            c.env("GM_TELEMETRY__OTLP_ENDPOINT", &endpoint).env("GM_TELEMETRY__SAMPLING_RATIO", "1.0");
        })
    };
    let gateway = traced("gateway");
    let actors = traced("actors");
    let projections = traced("projections");
    for role in [&gateway, &actors, &projections] {
        role.wait_ready().await;
    }

    // The client starts the trace: its traceparent names the trace to follow.
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let client_span = "00f067aa0ba902b7";
    let now = chrono::Utc::now().to_rfc3339();
    let players = ["trace-alice-7f3a", "trace-bob-91c2"];
    let events: Vec<serde_json::Value> = players
        .iter()
        .flat_map(|p| {
            [
                serde_json::json!({"type": "session_start", "player_id": p, "client_ts": now}),
                serde_json::json!({"type": "progression", "player_id": p, "client_ts": now,
                    "properties": {"status": "start", "level_id": "w1-l1"}}),
            ]
        })
        .collect();
    let client = awc::Client::builder().timeout(Duration::from_secs(30)).finish();
    let response = client
        .post(format!("{}/v1/events", gateway.url()))
        .insert_header(("Authorization", format!("Bearer {KEY}")))
        .insert_header(("traceparent", format!("00-{trace_id}-{client_span}-01")))
        .send_json(&serde_json::json!({ "events": events }))
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);

    let projections_expected: BTreeSet<&str> =
        ["player_profiles", "daily_activity", "sessions", "funnel"].into_iter().collect();
    let chain = eventually(Duration::from_secs(90), || {
        let spans: Vec<ReceivedSpan> =
            received.lock().unwrap().iter().filter(|s| s.trace_id == trace_id).cloned().collect();
        let projections_expected = projections_expected.clone();
        async move {
            let http = spans
                .iter()
                .find(|s| s.name == "POST /v1/events")
                .ok_or_else(|| format!("no HTTP span yet in {spans:?}"))?;
            if http.service != "gamemetrics-gateway" || http.parent_span_id != client_span {
                return Err(format!("HTTP span is not the child of the client's: {http:?}"));
            }
            let actor_ids: BTreeSet<&str> = spans
                .iter()
                .filter(|s| {
                    s.name == "actors.process_batch"
                        && s.service == "gamemetrics-actors"
                        && s.parent_span_id == http.span_id
                })
                .map(|s| s.span_id.as_str())
                .collect();
            if actor_ids.is_empty() {
                return Err("no actors span child of the HTTP span yet".into());
            }
            let applied: BTreeSet<&str> = spans
                .iter()
                .filter(|s| {
                    s.name == "projection.apply"
                        && s.service == "gamemetrics-projections"
                        && actor_ids.contains(s.parent_span_id.as_str())
                })
                .flat_map(|s| s.values.iter().map(String::as_str))
                .filter(|v| projections_expected.contains(v))
                .collect();
            if applied != projections_expected {
                return Err(format!("projection spans under the actors span so far: {applied:?}"));
            }
            Ok(())
        }
    })
    .await;
    let all = received.lock().unwrap().clone();
    chain.unwrap_or_else(|e| {
        panic!("{e}\nspans of the trace: {:#?}", all.iter().filter(|s| s.trace_id == trace_id).collect::<Vec<_>>())
    });

    // Nothing personal in any span: not a player id, anywhere.
    for span in &all {
        for v in &span.values {
            assert!(!players.iter().any(|p| v.contains(p)), "span {} carries a player id: {v}", span.name);
        }
    }
    // One span per batch: 4 events made one HTTP span, not one per event.
    let http_spans = all.iter().filter(|s| s.trace_id == trace_id && s.name == "POST /v1/events").count();
    assert_eq!(http_spans, 1);

    drop((gateway, actors, projections));
    server_handle.stop(false).await;
    services.drop_database().await;
}
