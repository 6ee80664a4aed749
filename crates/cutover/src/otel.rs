//! OpenTelemetry under [`telemetry`](crate::telemetry) (feature `otel`): the OTLP/HTTP
//! exporter, W3C trace-context propagation, and the parent of request spans.

use std::collections::HashMap;

use opentelemetry::{
    KeyValue, global,
    propagation::{Extractor, Injector, TextMapCompositePropagator},
    trace::{TraceContextExt as _, TracerProvider as _},
};
use opentelemetry_otlp::{SpanExporter, WithExportConfig as _};
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::telemetry::TelemetryError;

/// The variable naming the collector (`http://collector:4318`), as every OpenTelemetry SDK reads it.
pub(crate) const ENDPOINT_VARIABLE: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// `OTEL_EXPORTER_OTLP_ENDPOINT`, when set.
pub(crate) fn endpoint_from_env() -> Option<String> {
    std::env::var(ENDPOINT_VARIABLE).ok().filter(|e| !e.trim().is_empty())
}

/// The span layer and its provider, when there is an `endpoint`.
#[allow(clippy::type_complexity)]
pub(crate) fn exporter<S>(
    endpoint: Option<String>,
    service: &str,
    version: Option<&str>,
) -> Result<
    Option<(
        tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>,
        SdkTracerProvider,
    )>,
    TelemetryError,
>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    let Some(endpoint) = endpoint else {
        return Ok(None);
    };
    let traces = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    let exporter = SpanExporter::builder()
        .with_http()
        .with_endpoint(&traces)
        .build()
        .map_err(|error| TelemetryError::Exporter {
            endpoint: traces.clone(),
            reason: error.to_string(),
        })?;
    let mut attributes = vec![KeyValue::new("service.name", service.to_owned())];
    if let Some(version) = version {
        attributes.push(KeyValue::new("service.version", version.to_owned()));
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_attributes(attributes).build())
        .build();
    global::set_text_map_propagator(TextMapCompositePropagator::new(vec![Box::new(
        TraceContextPropagator::new(),
    )]));
    let tracer = provider.tracer("cutover");
    Ok(Some((tracing_opentelemetry::layer().with_tracer(tracer), provider)))
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct MapCarrier(HashMap<String, String>);

impl Extractor for MapCarrier {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

impl Injector for MapCarrier {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

/// Make a request span the child of the request's `traceparent`, when it names a valid one.
#[cfg_attr(not(feature = "serve"), allow(dead_code))]
pub(crate) fn link_parent(span: &tracing::Span, headers: &http::HeaderMap) {
    if !headers.contains_key("traceparent") {
        return;
    }
    let parent = global::get_text_map_propagator(|propagator| propagator.extract(&HeaderExtractor(headers)));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

pub(crate) fn set_parent<'a>(span: &tracing::Span, headers: impl IntoIterator<Item = (&'a str, &'a str)>) {
    let carrier = MapCarrier(
        headers
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
            .collect(),
    );
    let parent = global::get_text_map_propagator(|propagator| propagator.extract(&carrier));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

pub(crate) fn current_context() -> Vec<(String, String)> {
    let context = tracing::Span::current().context();
    let mut carrier = MapCarrier(HashMap::new());
    global::get_text_map_propagator(|propagator| propagator.inject_context(&context, &mut carrier));
    let mut headers: Vec<(String, String)> = carrier.0.into_iter().collect();
    headers.sort();
    headers
}

/// Name the OpenTelemetry span behind `span` (request spans learn their route late).
#[cfg_attr(not(feature = "serve"), allow(dead_code))]
pub(crate) fn rename(span: &tracing::Span, name: String) {
    span.context().span().update_name(name);
}
