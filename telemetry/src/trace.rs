//! Tracing set-up: logs on stderr (text, or JSON lines that carry the trace and span ids of
//! the batch they belong to) and, when an OTLP endpoint is configured, OpenTelemetry spans
//! exported over OTLP/HTTP (protobuf) with a parent-based ratio sampler.
//!
//! One trace per ingested batch: the gateway's `ingest.batch` span is the root (or continues
//! a client's `traceparent`), its W3C trace context travels in the log records' headers, and
//! the actors' and projections' batch spans take it as their parent (the first record's
//! context is the parent, the other batches of a consumed batch are links). One span per
//! batch, never per event, and no personal value in any span: only game ids, counts and
//! partitions.

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// The W3C header that carries a span's context between processes.
pub const TRACEPARENT: &str = "traceparent";
/// At most this many other traces are linked from one batch span.
const MAX_LINKS: usize = 32;

/// What [`init`] needs (from `[telemetry]` and `json_logs` in the configuration).
#[derive(Clone, Debug)]
pub struct TracingSettings {
    pub json: bool,
    /// OTLP/HTTP base URL of a collector (`http://otel-collector:4318`); `None` = no export.
    pub otlp_endpoint: Option<String>,
    /// Share of new traces kept (0.0..=1.0); a continued trace follows its parent's choice.
    pub sampling_ratio: f64,
    pub service_name: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TracingError {
    #[error("OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// Keeps the span exporter running; flushes and stops it when dropped.
pub struct TracingGuard {
    provider: Option<SdkTracerProvider>,
}

impl TracingGuard {
    /// Exports every finished span now (tests, and before a process exits).
    pub fn flush(&self) {
        if let Some(provider) = &self.provider {
            let _ = provider.force_flush();
        }
    }
}

impl Drop for TracingGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown();
        }
    }
}

/// Installs the global subscriber once (a second call only returns a guard that exports
/// nothing). `RUST_LOG` filters (default `info`).
pub fn init(settings: &TracingSettings) -> Result<TracingGuard, TracingError> {
    let provider = match settings.otlp_endpoint.as_deref().map(str::trim).filter(|e| !e.is_empty()) {
        Some(endpoint) => {
            use opentelemetry_otlp::WithExportConfig;
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
                .build()?;
            let ratio = settings.sampling_ratio.clamp(0.0, 1.0);
            Some(
                SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio))))
                    .with_resource(Resource::builder().with_service_name(settings.service_name.clone()).build())
                    .build(),
            )
        }
        None => None,
    };
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());

    // RUST_LOG filters the log lines only: spans are exported whatever the log level, so a
    // process logging warnings alone still traces its batches (their spans are INFO).
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt: Box<dyn Layer<Registry> + Send + Sync> = if settings.json {
        // The current span's fields hold its trace_id/span_id (see `record_ids`).
        tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_filter(filter).boxed()
    };
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("gamemetrics"))
            .with_filter(filter_fn(|m| m.is_span() && *m.level() <= tracing::Level::INFO))
    });
    let installed = tracing_subscriber::registry().with(fmt).with(otel).try_init().is_ok();
    Ok(TracingGuard { provider: if installed { provider } else { None } })
}

/// Records the span's OpenTelemetry ids in its `trace_id` and `span_id` fields (declared
/// `Empty` at creation), so that the JSON log lines inside it carry them.
pub fn record_ids(span: &tracing::Span) {
    let cx = span.context();
    let span_ref = cx.span();
    let sc = span_ref.span_context();
    if sc.is_valid() {
        span.record("trace_id", sc.trace_id().to_string());
        span.record("span_id", sc.span_id().to_string());
    }
}

/// The headers that carry `span`'s context to the next process (none when not exported).
pub fn inject(span: &tracing::Span) -> Vec<(String, String)> {
    let cx = span.context();
    let mut headers = Vec::new();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut HeaderInjector(&mut headers)));
    headers
}

/// Makes the first record's trace the parent of `span` and links the other traces, at
/// most [`MAX_LINKS`]. `headers` is one header list per record of the batch.
pub fn continue_batch<'a>(span: &tracing::Span, headers: impl IntoIterator<Item = &'a [(String, String)]>) {
    let mut parent_set = false;
    let mut linked = std::collections::HashSet::new();
    for h in headers {
        let Some(traceparent) = h.iter().find(|(n, _)| n == TRACEPARENT).map(|(_, v)| v) else { continue };
        if !linked.insert(traceparent.clone()) {
            continue;
        }
        let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(h)));
        let remote = cx.span().span_context().clone();
        if !remote.is_valid() {
            continue;
        }
        if !parent_set {
            let _ = span.set_parent(cx);
            parent_set = true;
        } else if linked.len() <= MAX_LINKS {
            span.add_link(remote);
        } else {
            break;
        }
    }
    record_ids(span);
}

/// Continues a trace whose context came in one header list (an HTTP request's).
pub fn continue_from(span: &tracing::Span, headers: &[(String, String)]) {
    continue_batch(span, [headers]);
}

struct HeaderInjector<'a>(&'a mut Vec<(String, String)>);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.push((key.to_string(), value));
    }
}

struct HeaderExtractor<'a>(&'a [(String, String)]);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n.eq_ignore_ascii_case(key)).map(|(_, v)| v.as_str())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(n, _)| n.as_str()).collect()
    }
}
