//! The `healthcheck` subcommand of a service binary: probe the local probe endpoints and exit 0
//! or 1, so a container `HEALTHCHECK` works in an image without curl or wget.
//!
//! What the orchestrator does with the answer decides what to ask. Docker Swarm (and Compose's
//! `restart` policies with an autoheal helper) *restart* unhealthy containers, so the default,
//! [`Check::Live`], asks "started and live": a database outage makes the service unready, never
//! unhealthy, and never restarts every task at once. [`Check::Ready`] is for the places that
//! *route* on container health or wait for it before going on (a blue-green script, Compose's
//! `depends_on: condition: service_healthy`).
//!
//! ```no_run
//! # async fn run() -> std::process::ExitCode {
//! use cutover::healthcheck::{self, Check};
//!
//! // `my-service healthcheck` and `my-service healthcheck --ready`
//! let ready = std::env::args().any(|arg| arg == "--ready");
//! healthcheck::run(8000, Check::asked(ready)).await
//! # }
//! ```

use std::{net::SocketAddr, process::ExitCode, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// `GET path` on `address` with a plain HTTP/1.1 request: the status code, or why there is
/// none.
///
/// ```no_run
/// # async fn run() {
/// let status = cutover::healthcheck::probe("127.0.0.1:8000".parse().unwrap(), "/health/ready", std::time::Duration::from_secs(2)).await;
/// assert_eq!(status.ok(), Some(200));
/// # }
/// ```
pub async fn probe(address: SocketAddr, path: &str, timeout: Duration) -> Result<u16, String> {
    let request = async {
        let mut stream = TcpStream::connect(address)
            .await
            .map_err(|e| format!("cannot connect to {address}: {e}"))?;
        let head =
            format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nUser-Agent: healthcheck\r\n\r\n");
        stream
            .write_all(head.as_bytes())
            .await
            .map_err(|e| format!("cannot send the request: {e}"))?;
        // The status line is all that is needed: `HTTP/1.1 200 OK`.
        let mut answer = [0; 64];
        let mut read = 0;
        while read < 12 {
            let n = stream
                .read(&mut answer[read..])
                .await
                .map_err(|e| format!("cannot read the answer: {e}"))?;
            if n == 0 {
                break;
            }
            read += n;
        }
        let line = String::from_utf8_lossy(&answer[..read]).into_owned();
        line.split_whitespace()
            .nth(1)
            .and_then(|code| code.parse::<u16>().ok())
            .ok_or_else(|| format!("not an HTTP answer: {line:?}"))
    };
    tokio::time::timeout(timeout, request)
        .await
        .unwrap_or_else(|_| Err(format!("no answer from {address} within {timeout:?}")))
}

/// What a container health check asks the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Check {
    /// Healthy once start-up has finished (`/health/startup`) and while the process is live
    /// (`/health/live`). Dependencies are never consulted: the default, for orchestrators that
    /// restart unhealthy containers.
    #[default]
    Live,
    /// Healthy while ready to take traffic (`/health/ready`): for what routes on container health
    /// or waits for it.
    Ready,
}

impl Check {
    /// [`Ready`](Self::Ready) when `ready` (a `--ready` flag was given), [`Live`](Self::Live)
    /// otherwise.
    pub const fn asked(ready: bool) -> Self {
        if ready { Self::Ready } else { Self::Live }
    }

    /// The probe paths that must all answer 2xx, in order.
    pub fn paths(self) -> &'static [&'static str] {
        match self {
            Self::Live => &["/health/startup", "/health/live"],
            Self::Ready => &["/health/ready"],
        }
    }

    fn failure(self) -> &'static str {
        match self {
            Self::Live => "unhealthy",
            Self::Ready => "not ready",
        }
    }
}

/// Ask the service on `http://127.0.0.1:{port}` what `check` asks: exit 0 when every probe
/// answers 2xx, 1 otherwise, with the reason on stderr (`unhealthy: /health/startup answered
/// 503`, `not ready: cannot connect to 127.0.0.1:8000: Connection refused`).
pub async fn run(port: u16, check: Check) -> ExitCode {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    for path in check.paths() {
        let failed = match probe(address, path, Duration::from_secs(3)).await {
            Ok(status) if (200..300).contains(&status) => continue,
            Ok(status) => format!("{path} answered {status}"),
            Err(reason) => reason,
        };
        eprintln!("{}: {failed}", check.failure());
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_the_status_and_explains_a_refused_connection() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = [0; 256];
            let _ = socket.read(&mut buf).await.unwrap();
            socket
                .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")
                .await
                .unwrap();
        });
        assert_eq!(probe(address, "/health/ready", Duration::from_secs(2)).await, Ok(503));

        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let refused = probe(closed, "/health/ready", Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(refused.contains("cannot connect"), "{refused}");
    }
}
