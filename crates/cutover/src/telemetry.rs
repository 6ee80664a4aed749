//! Logs and traces for a service in one call (feature `telemetry`; OTLP export with `otel`).
//!
//! ```no_run
//! use cutover::telemetry::{LogFormat, Telemetry};
//!
//! # fn main() -> Result<(), cutover::telemetry::TelemetryError> {
//! let _telemetry = Telemetry::builder("api-service")
//!     .version("1.3.0")
//!     .format(LogFormat::Auto) // JSON lines when not on a terminal, text for people otherwise
//!     .init()?;
//! // ... serve; the guard flushes the last spans when dropped.
//! # Ok(()) }
//! ```
//!
//! - **Logs**: `RUST_LOG` filters them (default `info`); one line per event, JSON or text, on
//!   stdout or stderr. Every line a request logs is inside its request span, so it carries the
//!   request id, route and versions (see the middleware stack in the [crate docs](crate)).
//! - **Traces** (feature `otel`): when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (e.g.
//!   `http://collector:4318`), spans are exported over OTLP/HTTP with the service's name and
//!   version, an incoming W3C `traceparent` becomes the parent of the request span, and
//!   [`trace_context`] gives the headers to carry the trace on to whatever the service calls
//!   (HTTP requests, messages). Without the variable nothing is exported and nothing is sent.

use std::{fmt, io::IsTerminal, str::FromStr};

use tracing_subscriber::{EnvFilter, Layer as _, layer::SubscriberExt as _, util::SubscriberInitExt as _};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Text on a terminal, JSON otherwise (the default).
    #[default]
    Auto,
    /// One JSON object per line, for log collectors.
    Json,
    /// Human-readable text.
    Text,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "json" => Ok(Self::Json),
            "text" => Ok(Self::Text),
            other => Err(format!("`{other}` is not a log format; use auto, json or text")),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Json => "json",
            Self::Text => "text",
        })
    }
}

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogTarget {
    /// Standard output (the default).
    #[default]
    Stdout,
    /// Standard error: for programs whose standard output is their result.
    Stderr,
}

/// Telemetry that could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TelemetryError {
    /// `RUST_LOG` (or the default filter) does not parse.
    #[error("RUST_LOG is not a valid filter: {0}")]
    Filter(String),
    /// A global subscriber was already installed.
    #[error("a tracing subscriber is already installed: {0}")]
    AlreadyInstalled(String),
    /// The OTLP exporter could not be built.
    #[cfg(feature = "otel")]
    #[error("cannot export traces to {endpoint}: {reason}")]
    Exporter {
        /// The endpoint asked for.
        endpoint: String,
        /// Why.
        reason: String,
    },
}

/// Sets up logging (and tracing, with `otel`) for the process. See the [module docs](self).
#[derive(Debug, Clone)]
#[must_use]
pub struct Telemetry {
    #[cfg_attr(not(feature = "otel"), allow(dead_code))]
    service: String,
    #[cfg_attr(not(feature = "otel"), allow(dead_code))]
    version: Option<String>,
    format: LogFormat,
    target: LogTarget,
    default_filter: String,
    #[cfg_attr(not(feature = "otel"), allow(dead_code))]
    otlp_endpoint: Option<String>,
}

/// Keeps the exporter alive; dropping it flushes the spans still buffered.
#[must_use = "dropping the guard stops the trace export"]
pub struct TelemetryGuard {
    #[cfg(feature = "otel")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl fmt::Debug for TelemetryGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("TelemetryGuard");
        #[cfg(feature = "otel")]
        debug.field("exporting", &self.provider.is_some());
        debug.finish()
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        #[cfg(feature = "otel")]
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown()
        {
            eprintln!("cannot flush the last spans: {error}");
        }
    }
}

impl Telemetry {
    /// Telemetry for `service` (the `service.name` of its traces).
    pub fn builder(service: impl Into<String>) -> Self {
        Self {
            service: service.into(),
            version: None,
            format: LogFormat::Auto,
            target: LogTarget::Stdout,
            default_filter: "info".to_owned(),
            otlp_endpoint: None,
        }
    }

    /// Export traces to this OTLP/HTTP collector (`http://collector:4318`) instead of the one
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` names. Only with the `otel` feature.
    #[cfg(feature = "otel")]
    pub fn otlp_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.otlp_endpoint = Some(endpoint.into());
        self
    }

    /// The filter used when `RUST_LOG` is not set (default `info`).
    pub fn default_filter(mut self, directives: impl Into<String>) -> Self {
        self.default_filter = directives.into();
        self
    }

    /// The service's version (`service.version` of its traces).
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    /// How log lines are written (default [`LogFormat::Auto`]).
    pub fn format(mut self, format: LogFormat) -> Self {
        self.format = format;
        self
    }

    /// Where log lines go (default [`LogTarget::Stdout`]).
    pub fn target(mut self, target: LogTarget) -> Self {
        self.target = target;
        self
    }

    /// Install the global subscriber. Call once, early in `main`.
    pub fn init(self) -> Result<TelemetryGuard, TelemetryError> {
        let filter = match std::env::var("RUST_LOG") {
            Ok(directives) => EnvFilter::try_new(directives).map_err(|e| TelemetryError::Filter(e.to_string()))?,
            Err(_) => EnvFilter::try_new(&self.default_filter).map_err(|e| TelemetryError::Filter(e.to_string()))?,
        };
        let terminal = match self.target {
            LogTarget::Stdout => std::io::stdout().is_terminal(),
            LogTarget::Stderr => std::io::stderr().is_terminal(),
        };
        let json = match self.format {
            LogFormat::Json => true,
            LogFormat::Text => false,
            LogFormat::Auto => !terminal,
        };
        let writer = self.target;
        let make_writer = move || -> Box<dyn std::io::Write> {
            match writer {
                LogTarget::Stdout => Box::new(std::io::stdout()),
                LogTarget::Stderr => Box::new(std::io::stderr()),
            }
        };
        let lines = if json {
            tracing_subscriber::fmt::layer()
                .json()
                .with_current_span(true)
                .with_span_list(false)
                .with_writer(make_writer)
                .boxed()
        } else {
            tracing_subscriber::fmt::layer()
                .with_ansi(terminal)
                .with_writer(make_writer)
                .boxed()
        };
        #[cfg(feature = "otel")]
        let (traces, provider) = {
            let endpoint = self.otlp_endpoint.clone().or_else(crate::otel::endpoint_from_env);
            match crate::otel::exporter(endpoint, &self.service, self.version.as_deref())? {
                Some((layer, provider)) => {
                    crate::set_traces_exported();
                    (Some(layer), Some(provider))
                }
                None => (None, None),
            }
        };
        #[cfg(not(feature = "otel"))]
        let traces: Option<tracing_subscriber::layer::Identity> = None;
        tracing_subscriber::registry()
            .with(filter)
            .with(lines)
            .with(traces)
            .try_init()
            .map_err(|e| TelemetryError::AlreadyInstalled(e.to_string()))?;
        Ok(TelemetryGuard {
            #[cfg(feature = "otel")]
            provider,
        })
    }
}

/// The W3C trace context (`traceparent`, `tracestate`) of the current span, as headers to
/// send along with an HTTP request or a message, so the trace continues in the service that
/// receives it. Empty without the `otel` feature or when traces are not exported.
///
/// ```
/// let mut request = http::Request::get("http://api/users/1").body(()).unwrap();
/// for (name, value) in cutover::telemetry::trace_context() {
///     request.headers_mut().insert(
///         http::HeaderName::try_from(name).unwrap(),
///         http::HeaderValue::try_from(value).unwrap(),
///     );
/// }
/// ```
pub fn trace_context() -> Vec<(String, String)> {
    #[cfg(feature = "otel")]
    {
        crate::otel::current_context()
    }
    #[cfg(not(feature = "otel"))]
    {
        Vec::new()
    }
}

/// Make `span` continue the trace named by `headers` (`traceparent`, ...), for work that
/// arrives other than as an HTTP request to the service (a consumed message). Request spans
/// of a [`Service`](crate::Service) already do this. Does nothing without the `otel` feature.
pub fn continue_trace<'a>(span: &tracing::Span, headers: impl IntoIterator<Item = (&'a str, &'a str)>) {
    #[cfg(feature = "otel")]
    crate::otel::set_parent(span, headers);
    #[cfg(not(feature = "otel"))]
    {
        let _ = (span, headers.into_iter());
    }
}
