//! Helpers shared by the benchmarks: percentiles and a uniform report line.

pub mod throughput;
pub mod tower_http_stack;
pub mod users;

use std::time::Duration;

use http::{Request, Response};

/// Latency percentiles of a set of samples.
#[derive(Debug, Clone, Copy)]
pub struct Percentiles {
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Slowest sample.
    pub max: Duration,
}

impl Percentiles {
    /// Compute from unsorted samples.
    ///
    /// # Panics
    ///
    /// If `samples` is empty.
    pub fn of(mut samples: Vec<Duration>) -> Self {
        assert!(!samples.is_empty(), "no samples");
        samples.sort_unstable();
        let at = |q: f64| {
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss
            )]
            let index = ((samples.len() - 1) as f64 * q).round() as usize;
            samples[index]
        };
        Self {
            p50: at(0.50),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

/// `GET /` on `app` in-process (`oneshot`), reading the whole body, which must be `hello`:
/// the request the in-process overhead benchmarks time.
///
/// # Panics
///
/// If the answer is not `hello`.
pub async fn get_hello<S, B>(app: S)
where
    S: tower::Service<Request<axum::body::Body>, Response = Response<B>, Error = std::convert::Infallible>,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    let request = Request::get("/").body(axum::body::Body::empty()).expect("request");
    let response = app.oneshot(request).await.expect("infallible");
    let body = response.into_body().collect().await.expect("body");
    assert_eq!(body.to_bytes(), "hello");
}

/// The URL of a backing service, from the environment (see `scripts/services.sh`).
///
/// # Panics
///
/// When the variable is not set.
pub fn service_url(variable: &str) -> String {
    std::env::var(variable).unwrap_or_else(|_| {
        panic!("{variable} is not set: run `scripts/services.sh up && source target/services.env` first")
    })
}

/// A port nobody listens on right now.
///
/// # Panics
///
/// If the OS has no free port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("address")
        .port()
}

/// Wait until something accepts TCP connections on `port`.
///
/// # Panics
///
/// If nothing listens within `within`.
pub fn wait_for_listener(port: u16, within: Duration) {
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < within,
            "nothing listened on port {port} within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Send SIGTERM to `pid`.
///
/// # Panics
///
/// If `kill` fails.
pub fn sigterm(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -TERM {pid} failed");
}

/// Raise this process's soft limit of open files to its hard limit (benchmarks that hold
/// thousands of connections need more than the usual 1,024).
pub fn raise_file_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        let _ = setrlimit(Resource::Nofile, limit);
    }
}

/// Resident memory of `pid` now and at its peak (`VmRSS`, `VmHWM`), in KiB.
///
/// # Panics
///
/// If `/proc/<pid>/status` cannot be read (not Linux).
pub fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/<pid>/status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}
