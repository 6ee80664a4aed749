//! The limits every [`Service`](crate::Service) serves under, with safe defaults.
//!
//! | limit | default | environment | what happens at the limit |
//! | --- | --- | --- | --- |
//! | header read timeout | 10 s | `HTTP_HEADER_READ_TIMEOUT` | a request head that has not arrived whole in time (from accept for a connection's first request, from its first byte on a kept-alive connection; never during the idle wait between requests) closes the connection: slowloris |
//! | idle timeout | 75 s | `HTTP_IDLE_TIMEOUT` | a connection with no request in progress for this long is closed (HTTP/2: GOAWAY; PINGs do not keep it open); kept above the idle timeout of the proxy in front so the proxy always closes first (see below) |
//! | body read timeout | 10 s | `HTTP_BODY_READ_TIMEOUT` | a request body that sends nothing for this long ends the request with `408` problem+json and `Connection: close` |
//! | minimum body data rate | 240 B/s after 5 s | `HTTP_MIN_BODY_DATA_RATE`, `HTTP_MIN_BODY_DATA_RATE_GRACE` | a request body arriving slower on average (measured from its first read, once the grace period is over) ends the request with `408` problem+json and `Connection: close`, freeing its concurrency slot (Kestrel's `MinRequestBodyDataRate`). A body of up to 64 KiB (within the maximum body) is read whole before its request takes a concurrency slot, so slow uploads hold connections, never handlers' slots |
//! | request timeout | 30 s | `HTTP_REQUEST_TIMEOUT` | a handler that has not answered in time is answered for with `503` problem+json (the server is slow, not the client); the time a client spends sending its body is not counted: the clock restarts when the body has been read |
//! | maximum body | 1 MiB | `HTTP_MAX_BODY_SIZE` | a larger body is refused with `413` problem+json, from its `Content-Length` before it is read, or as soon as a streamed body passes the limit |
//! | maximum header size | 32 KiB | `HTTP_MAX_HEADER_SIZE` | a larger request head is refused with `431` (HTTP/1.1) or a stream reset (HTTP/2) |
//! | maximum concurrent requests | 512 | `HTTP_MAX_CONCURRENT_REQUESTS` | further requests are shed at once with `503` problem+json and `Retry-After: 1`; probes and `/metrics` are never shed |
//! | maximum connections | 1,024 | `HTTP_MAX_CONNECTIONS` | no further connection is accepted until one closes (they wait in the kernel's backlog) |
//!
//! # Idle timeouts behind a proxy
//!
//! A proxy that reuses a pooled connection at the moment the service closes it gets a reset,
//! and a POST it cannot retry becomes a 502: the keep-alive race. Order the idle timeouts
//! client < proxy < service, so the side that closes is never the side that was just sent
//! a request:
//!
//! | in front | how it closes idle upstream connections | service's `HTTP_IDLE_TIMEOUT` |
//! | --- | --- | --- |
//! | nginx (`upstream { keepalive 32; keepalive_timeout 60s; }`, the shipped config) | after 60 s | 75 s (default) |
//! | HAProxy (`http-reuse safe`, `pool-purge-delay 5s`, the shipped config) | unused ones purged after 5 s | 75 s (default) |
//! | Traefik (`serversTransport.forwardingTimeouts.idleConnTimeout`) | 90 s by default: the shipped config sets 60 s | 75 s (default) |
//! | AWS Application Load Balancer | 60 s by default (configurable) | 75 s, or above it if raised |
//! | Google Cloud external Application Load Balancer | 600 s | `620s` |
//!
//! Durations read from the environment accept `10s`, `500ms`, `1m 30s`, or a bare number of
//! seconds; sizes accept `1048576`, `64k`/`64KiB`, `1m`/`1MiB` (binary units). `0` switches a
//! timeout off, which only makes sense behind a proxy that enforces its own.
//!
//! ```
//! use std::time::Duration;
//! use cutover::Limits;
//!
//! let limits = Limits::default()
//!     .request_timeout(Duration::from_secs(60)) // reports take a while
//!     .max_body_size(8 * 1024 * 1024);
//! assert_eq!(limits.max_concurrent_requests_value(), 512);
//!
//! // The same, from the environment (here a map, in production `Limits::from_env()`):
//! let from_env = Limits::default()
//!     .with_vars(|name| (name == "HTTP_MAX_BODY_SIZE").then(|| "8MiB".to_owned()))
//!     .unwrap();
//! assert_eq!(from_env.max_body_size_value(), 8 * 1024 * 1024);
//! ```

use std::time::Duration;

/// Default for [`Limits::header_read_timeout`].
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default for [`Limits::idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(75);
/// Default for [`Limits::body_read_timeout`].
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default for [`Limits::min_body_data_rate`]: bytes per second.
pub const DEFAULT_MIN_BODY_DATA_RATE: u64 = 240;
/// Default for [`Limits::min_body_data_rate`]: the grace period before the rate applies.
pub const DEFAULT_MIN_BODY_DATA_RATE_GRACE: Duration = Duration::from_secs(5);
/// Default for [`Limits::request_timeout`].
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default for [`Limits::max_body_size`].
pub const DEFAULT_MAX_BODY_SIZE: usize = 1024 * 1024;
/// Default for [`Limits::max_header_size`].
pub const DEFAULT_MAX_HEADER_SIZE: usize = 32 * 1024;
/// Default for [`Limits::max_concurrent_requests`].
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 512;
/// Default for [`Limits::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// hyper refuses read buffers smaller than this.
const MIN_HEADER_SIZE: usize = 8 * 1024;

/// Timeouts and sizes a [`Service`](crate::Service) enforces; see the [module docs](self) for
/// the table of defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub(crate) header_read_timeout: Option<Duration>,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) body_read_timeout: Option<Duration>,
    pub(crate) min_body_data_rate: Option<MinDataRate>,
    pub(crate) request_timeout: Option<Duration>,
    pub(crate) max_body_size: usize,
    pub(crate) max_header_size: usize,
    pub(crate) max_concurrent_requests: usize,
    pub(crate) max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: Some(DEFAULT_HEADER_READ_TIMEOUT),
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            body_read_timeout: Some(DEFAULT_BODY_READ_TIMEOUT),
            min_body_data_rate: Some(MinDataRate {
                bytes_per_second: DEFAULT_MIN_BODY_DATA_RATE,
                grace_period: DEFAULT_MIN_BODY_DATA_RATE_GRACE,
            }),
            request_timeout: Some(DEFAULT_REQUEST_TIMEOUT),
            max_body_size: DEFAULT_MAX_BODY_SIZE,
            max_header_size: DEFAULT_MAX_HEADER_SIZE,
            max_concurrent_requests: DEFAULT_MAX_CONCURRENT_REQUESTS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// The slowest a request body may arrive, on average since its first read, once its grace
/// period is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinDataRate {
    bytes_per_second: u64,
    grace_period: Duration,
}

impl MinDataRate {
    /// The minimum rate, in bytes per second.
    pub fn bytes_per_second(&self) -> u64 {
        self.bytes_per_second
    }

    /// How long a body may arrive at any rate before the minimum applies.
    pub fn grace_period(&self) -> Duration {
        self.grace_period
    }
}

/// An environment variable that does not hold a usable value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}={value:?} is not {expected}")]
pub struct LimitsError {
    variable: &'static str,
    value: String,
    expected: &'static str,
}

impl LimitsError {
    /// The variable that was rejected.
    pub fn variable(&self) -> &'static str {
        self.variable
    }
}

fn some_unless_zero(duration: Duration) -> Option<Duration> {
    (!duration.is_zero()).then_some(duration)
}

impl Limits {
    /// The defaults, overridden by the `HTTP_*` variables that are set (see the
    /// [module docs](self)).
    pub fn from_env() -> Result<Self, LimitsError> {
        Self::default().with_env()
    }

    /// `self`, overridden by the `HTTP_*` variables that are set.
    pub fn with_env(self) -> Result<Self, LimitsError> {
        self.with_vars(|name| std::env::var(name).ok())
    }

    /// Like [`with_env`](Self::with_env) with any source of variables (tests, config files).
    pub fn with_vars(mut self, lookup: impl Fn(&str) -> Option<String>) -> Result<Self, LimitsError> {
        let duration = |variable: &'static str| -> Result<Option<Duration>, LimitsError> {
            lookup(variable)
                .map(|value| {
                    cutover_shutdown::parse_duration(&value).map_err(|_| LimitsError {
                        variable,
                        value,
                        expected: "a duration (e.g. `10s`, `500ms`, `0` to switch it off)",
                    })
                })
                .transpose()
        };
        let size = |variable: &'static str, expected: &'static str| -> Result<Option<usize>, LimitsError> {
            lookup(variable)
                .map(|value| {
                    parse_size(&value).ok_or(LimitsError {
                        variable,
                        value,
                        expected,
                    })
                })
                .transpose()
        };
        if let Some(value) = duration("HTTP_HEADER_READ_TIMEOUT")? {
            self.header_read_timeout = some_unless_zero(value);
        }
        if let Some(value) = duration("HTTP_IDLE_TIMEOUT")? {
            self.idle_timeout = some_unless_zero(value);
        }
        if let Some(value) = duration("HTTP_BODY_READ_TIMEOUT")? {
            self.body_read_timeout = some_unless_zero(value);
        }
        let rate = size(
            "HTTP_MIN_BODY_DATA_RATE",
            "a rate in bytes per second (e.g. `240`, `1k`, `0` to switch it off)",
        )?;
        let grace = duration("HTTP_MIN_BODY_DATA_RATE_GRACE")?;
        if rate.is_some() || grace.is_some() {
            let current = self.min_body_data_rate;
            let bytes = rate.map_or_else(
                || current.map_or(DEFAULT_MIN_BODY_DATA_RATE, |rate| rate.bytes_per_second),
                |rate| rate as u64,
            );
            let grace =
                grace.unwrap_or_else(|| current.map_or(DEFAULT_MIN_BODY_DATA_RATE_GRACE, |rate| rate.grace_period));
            self = self.min_body_data_rate(bytes, grace);
        }
        if let Some(value) = duration("HTTP_REQUEST_TIMEOUT")? {
            self.request_timeout = some_unless_zero(value);
        }
        let bytes = "a size in bytes (e.g. `1048576`, `64KiB`, `1MiB`)";
        let count = "a positive number";
        if let Some(value) = size("HTTP_MAX_BODY_SIZE", bytes)? {
            self.max_body_size = value;
        }
        if let Some(value) = size("HTTP_MAX_HEADER_SIZE", bytes)? {
            self = self.max_header_size(value);
        }
        if let Some(value) = size("HTTP_MAX_CONCURRENT_REQUESTS", count)? {
            self = self.max_concurrent_requests(value);
        }
        if let Some(value) = size("HTTP_MAX_CONNECTIONS", count)? {
            self = self.max_connections(value);
        }
        Ok(self)
    }

    /// Time a client has to send a whole request head (default 10 s).
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = some_unless_zero(timeout);
        self
    }

    /// Time a connection may sit with no request in progress and no bytes moving (default
    /// 75 s).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = some_unless_zero(timeout);
        self
    }

    /// Time a request body may send nothing (default 10 s).
    pub fn body_read_timeout(mut self, timeout: Duration) -> Self {
        self.body_read_timeout = some_unless_zero(timeout);
        self
    }

    /// The slowest a request body may arrive, on average from its first read, once
    /// `grace_period` is over (default 240 bytes per second after 5 s, as Kestrel). A slower
    /// client gets `408` and its connection is closed. `0` bytes per second switches it off.
    pub fn min_body_data_rate(mut self, bytes_per_second: u64, grace_period: Duration) -> Self {
        self.min_body_data_rate = (bytes_per_second > 0).then_some(MinDataRate {
            bytes_per_second,
            grace_period,
        });
        self
    }

    /// Time a handler has to produce its response (default 30 s). Streaming bodies are not
    /// cut by it once their headers are sent.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = some_unless_zero(timeout);
        self
    }

    /// Largest request body, in bytes (default 1 MiB). Routes that need less should say so
    /// with their own `tower_http::limit::RequestBodyLimitLayer`.
    pub fn max_body_size(mut self, bytes: usize) -> Self {
        self.max_body_size = bytes;
        self
    }

    /// Largest request head (request line and headers), in bytes (default 32 KiB, at least
    /// 8 KiB).
    pub fn max_header_size(mut self, bytes: usize) -> Self {
        self.max_header_size = bytes.max(MIN_HEADER_SIZE);
        self
    }

    /// Requests handled at once before further ones are shed with 503 (default 512).
    pub fn max_concurrent_requests(mut self, count: usize) -> Self {
        self.max_concurrent_requests = count.max(1);
        self
    }

    /// Connections open at once (default 1,024).
    pub fn max_connections(mut self, count: usize) -> Self {
        self.max_connections = count.max(1);
        self
    }

    /// The header read timeout, `None` when off.
    pub fn header_read_timeout_value(&self) -> Option<Duration> {
        self.header_read_timeout
    }

    /// The idle timeout, `None` when off.
    pub fn idle_timeout_value(&self) -> Option<Duration> {
        self.idle_timeout
    }

    /// The body read timeout, `None` when off.
    pub fn body_read_timeout_value(&self) -> Option<Duration> {
        self.body_read_timeout
    }

    /// The minimum body data rate, `None` when off.
    pub fn min_body_data_rate_value(&self) -> Option<MinDataRate> {
        self.min_body_data_rate
    }

    /// The request timeout, `None` when off.
    pub fn request_timeout_value(&self) -> Option<Duration> {
        self.request_timeout
    }

    /// The largest request body.
    pub fn max_body_size_value(&self) -> usize {
        self.max_body_size
    }

    /// The largest request head.
    pub fn max_header_size_value(&self) -> usize {
        self.max_header_size
    }

    /// The concurrency limit.
    pub fn max_concurrent_requests_value(&self) -> usize {
        self.max_concurrent_requests
    }

    /// The connection limit.
    pub fn max_connections_value(&self) -> usize {
        self.max_connections
    }
}

/// `1048576`, `64k`, `64KiB`, `1m`, `1MiB` (binary units, case-insensitive).
fn parse_size(text: &str) -> Option<usize> {
    let text = text.trim();
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let number: usize = number.parse().ok()?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        "g" | "gb" | "gib" => 1024 * 1024 * 1024,
        _ => return None,
    };
    number.checked_mul(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_the_usual_units() {
        assert_eq!(parse_size("1048576"), Some(1_048_576));
        assert_eq!(parse_size("64k"), Some(65_536));
        assert_eq!(parse_size("64 KiB"), Some(65_536));
        assert_eq!(parse_size("1MiB"), Some(1_048_576));
        assert_eq!(parse_size("2mb"), Some(2_097_152));
        for bad in ["", "k", "-1", "1.5MiB", "12 parsecs", "99999999999999999999g"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_environment_overrides_and_explains_mistakes() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| (*v).to_owned())
        };
        let limits = Limits::default()
            .with_vars(vars(&[
                ("HTTP_REQUEST_TIMEOUT", "45s"),
                ("HTTP_IDLE_TIMEOUT", "0"),
                ("HTTP_MAX_CONNECTIONS", "10"),
                ("HTTP_MAX_HEADER_SIZE", "1k"),
                ("HTTP_MIN_BODY_DATA_RATE_GRACE", "2s"),
            ]))
            .unwrap();
        let rate = limits.min_body_data_rate_value().unwrap();
        assert_eq!(
            (rate.bytes_per_second(), rate.grace_period()),
            (240, Duration::from_secs(2))
        );
        let off = Limits::default()
            .with_vars(vars(&[("HTTP_MIN_BODY_DATA_RATE", "0")]))
            .unwrap();
        assert_eq!(off.min_body_data_rate_value(), None);
        assert_eq!(limits.request_timeout_value(), Some(Duration::from_secs(45)));
        assert_eq!(limits.idle_timeout_value(), None);
        assert_eq!(limits.max_connections_value(), 10);
        assert_eq!(limits.max_header_size_value(), MIN_HEADER_SIZE, "hyper's floor");
        let error = Limits::default()
            .with_vars(vars(&[("HTTP_MAX_BODY_SIZE", "lots")]))
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "HTTP_MAX_BODY_SIZE=\"lots\" is not a size in bytes (e.g. `1048576`, `64KiB`, `1MiB`)"
        );
        assert_eq!(error.variable(), "HTTP_MAX_BODY_SIZE");
    }
}
