//! A served app on a loopback port, raw TCP and HTTP/2 clients, and captured JSON logs.

use std::{
    io::Write,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::Router;
use cutover::{
    Limits, Service,
    shutdown::{ShutdownConfig, ShutdownHandle, ShutdownReport},
};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

pub(crate) struct Running {
    pub(crate) base: String,
    pub(crate) address: SocketAddr,
    pub(crate) handle: ShutdownHandle,
    pub(crate) served: JoinHandle<Result<ShutdownReport, cutover::ServeError>>,
}

impl Running {
    pub(crate) async fn stop(self) {
        self.handle.trigger();
        let report = self.served.await.unwrap().unwrap();
        assert!(report.is_clean(), "{report:?}");
    }
}

pub(crate) async fn serve(app: Router, limits: Limits) -> Running {
    serve_with(app, limits, ShutdownConfig::default().drain_delay(Duration::ZERO)).await
}

pub(crate) async fn serve_with(app: Router, limits: Limits, config: ShutdownConfig) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let service = Service::builder(app)
        .shutdown(config.signals(false))
        .limits(limits)
        .listener(listener)
        .build()
        .unwrap();
    let handle = service.handle();
    let served = tokio::spawn(service.serve());
    Running {
        base: format!("http://{address}"),
        address,
        handle,
        served,
    }
}

pub(crate) async fn json(response: axum::response::Response) -> Value {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

/// A TCP connection driven byte by byte.
pub(crate) struct RawConnection {
    stream: TcpStream,
}

impl RawConnection {
    pub(crate) async fn open(address: SocketAddr) -> Self {
        Self {
            stream: TcpStream::connect(address).await.unwrap(),
        }
    }

    pub(crate) async fn write(&mut self, text: &str) {
        self.stream.write_all(text.as_bytes()).await.unwrap();
    }

    /// Bytes read within `limit`, `None` if nothing came.
    pub(crate) async fn read_timeout(&mut self, limit: Duration) -> Option<Vec<u8>> {
        let mut buffer = vec![0; 16 * 1024];
        match tokio::time::timeout(limit, self.stream.read(&mut buffer)).await {
            Ok(Ok(n)) if n > 0 => Some(buffer[..n].to_vec()),
            _ => None,
        }
    }

    /// The status line and headers of the next response.
    pub(crate) async fn read_response_head(&mut self) -> String {
        let mut head = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(bytes) = self.read_timeout(left).await else {
                panic!("no response head within 5 s; got {:?}", String::from_utf8_lossy(&head));
            };
            head.extend_from_slice(&bytes);
        }
        String::from_utf8_lossy(&head).into_owned()
    }

    /// How long until the server closed the connection (reading to EOF), or `None` if it was
    /// still open after `limit`.
    pub(crate) async fn closed_within(&mut self, limit: Duration) -> Option<Duration> {
        let started = Instant::now();
        let mut buffer = [0; 4096];
        loop {
            let left = limit.checked_sub(started.elapsed())?;
            match tokio::time::timeout(left, self.stream.read(&mut buffer)).await {
                Err(_) => return None,
                Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
                Ok(Ok(_)) => {} // a response on the way out
            }
        }
    }
}

/// An HTTP/2 (prior knowledge) client on one connection.
pub(crate) struct Http2 {
    sender: hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    closed: tokio::sync::watch::Receiver<bool>,
}

impl Http2 {
    pub(crate) async fn connect(address: SocketAddr) -> Self {
        Self::connect_pinging(address, None).await
    }

    /// A connection that sends a PING every `interval` while idle, as gRPC clients and some
    /// proxies do to keep connections alive.
    pub(crate) async fn connect_pinging(address: SocketAddr, interval: Option<Duration>) -> Self {
        let stream = TcpStream::connect(address).await.unwrap();
        let mut builder = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
        builder.timer(hyper_util::rt::TokioTimer::new());
        if let Some(interval) = interval {
            builder
                .keep_alive_interval(interval)
                .keep_alive_timeout(Duration::from_secs(5))
                .keep_alive_while_idle(true);
        }
        let (sender, connection) = builder.handshake(TokioIo::new(stream)).await.unwrap();
        let (done, closed) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            let _ = connection.await;
            let _ = done.send(true);
        });
        Self { sender, closed }
    }

    /// The status of `GET path`, `None` when the connection refuses new streams.
    pub(crate) async fn get(&mut self, path: &str) -> Option<u16> {
        self.sender.ready().await.ok()?;
        let request = http::Request::get(format!("http://localhost{path}"))
            .body(http_body_util::Empty::new())
            .unwrap();
        let response = self.sender.send_request(request).await.ok()?;
        let status = response.status().as_u16();
        let _ = response.into_body().collect().await;
        Some(status)
    }

    pub(crate) fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    /// Whether the connection ended (the server sent GOAWAY and closed it) within `limit`.
    pub(crate) async fn closed_within(&mut self, limit: Duration) -> Option<()> {
        tokio::time::timeout(limit, self.closed.wait_for(|closed| *closed))
            .await
            .ok()?
            .ok()
            .map(|_| ())
    }
}

/// JSON log lines of everything logged on this thread (tests run on a current-thread
/// runtime, so the server's tasks log here too).
pub(crate) struct CapturedLogs {
    buffer: Arc<Mutex<Vec<u8>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

#[derive(Clone)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLogs {
    pub(crate) fn install() -> Self {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = Buffer(Arc::clone(&buffer));
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || writer.clone())
            .finish();
        Self {
            buffer,
            _guard: tracing::subscriber::set_default(subscriber),
        }
    }

    pub(crate) fn lines(&self) -> Vec<Value> {
        let text = String::from_utf8(self.buffer.lock().unwrap().clone()).unwrap();
        text.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
    }
}

/// A field of the innermost span a log line was written in.
pub(crate) fn span_field<'a>(line: &'a Value, name: &str) -> Option<&'a str> {
    line["span"][name].as_str()
}
