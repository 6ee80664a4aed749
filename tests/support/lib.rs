//! Shared support for the integration tests: where the real services are, and ways to break
//! them on purpose (a TCP proxy that can be cut, a private Redis server that can be stopped).
//!
//! The services are started by `scripts/services.sh up` (run by `scripts/test.sh`), which
//! exports `DATABASE_URL`, `REDIS_URL`, `AMQP_URL`, `MONGODB_URL`, and Jaeger's
//! `JAEGER_OTLP_URL` and `JAEGER_QUERY_URL`. A test that needs a service fails when its URL is
//! missing; nothing is skipped silently.

pub mod proxy;

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
    task::{JoinHandle, JoinSet},
};
use url::Url;

/// A child process killed (SIGKILL) and reaped when dropped, so no process outlives its test,
/// even one that failed half-way. Derefs to the [`Child`].
#[derive(Debug)]
pub struct KillOnDrop(pub Child);

impl std::ops::Deref for KillOnDrop {
    type Target = Child;

    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // Already exited: both calls fail harmlessly.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A finished process's stdout followed by its stderr, for assertions and failure messages.
pub fn output_text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Assert that a process succeeded (its output in the failure message) and return its output.
///
/// # Panics
///
/// When the process exited unsuccessfully.
pub fn assert_success(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}:\n{}",
        output.status.code(),
        output_text(output)
    );
    output_text(output)
}

/// Assert that a process exited with `code` and return its output.
///
/// # Panics
///
/// When it exited with another code or was killed.
pub fn assert_exit(code: i32, output: &Output) -> String {
    assert_eq!(output.status.code(), Some(code), "{}", output_text(output));
    output_text(output)
}

/// The URL of a backing service, from the environment.
///
/// # Panics
///
/// When the variable is not set: the services are part of the test suite, not optional.
pub fn service_url(variable: &str) -> String {
    std::env::var(variable).unwrap_or_else(|_| {
        panic!(
            "{variable} is not set. Start the backing services with `scripts/services.sh up` and \
             `source target/services.env`, or run everything with `scripts/test.sh`."
        )
    })
}

/// A name no other test run uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}_{}", std::process::id(), fastrand::u32(..))
}

/// A PostgreSQL database of a test's own on the server of `DATABASE_URL`, dropped by
/// [`drop_database`](Self::drop_database).
#[derive(Debug)]
pub struct PgDatabase {
    /// Its URL.
    pub url: String,
    /// A pool on it.
    pub pool: sqlx::PgPool,
    name: String,
    admin: sqlx::PgPool,
}

impl PgDatabase {
    /// Create `<prefix>_<unique>`.
    pub async fn create(prefix: &str) -> Self {
        let admin_url = service_url("DATABASE_URL");
        let admin = sqlx::PgPool::connect(&admin_url)
            .await
            .expect("connect to DATABASE_URL");
        let name = unique(prefix);
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .expect("create a test database");
        let mut url = Url::parse(&admin_url).expect("DATABASE_URL is a URL");
        url.set_path(&name);
        let pool = sqlx::PgPool::connect(url.as_str())
            .await
            .expect("connect to the test database");
        Self {
            url: url.into(),
            pool,
            name,
            admin,
        }
    }

    /// Close the pool and drop the database, whoever is still connected.
    pub async fn drop_database(self) {
        self.pool.close().await;
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .execute(&self.admin)
        .await;
    }
}

/// `url` with its host and port replaced by `address`.
pub fn retarget(url: &str, address: SocketAddr) -> String {
    let mut parsed = Url::parse(url).unwrap_or_else(|error| panic!("cannot parse {url}: {error}"));
    parsed
        .set_host(Some(&address.ip().to_string()))
        .expect("URL has a host");
    parsed.set_port(Some(address.port())).expect("URL can carry a port");
    parsed.to_string()
}

/// `host:port` of `url`, with the scheme's default port when none is given.
pub fn host_port(url: &str, default_port: u16) -> String {
    let parsed = Url::parse(url).unwrap_or_else(|error| panic!("cannot parse {url}: {error}"));
    let host = parsed.host_str().expect("URL has a host");
    format!("{host}:{}", parsed.port().unwrap_or(default_port))
}

/// A loopback port nobody listens on right now.
///
/// # Panics
///
/// When no port can be bound.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Poll `http://127.0.0.1:{port}/health/ready` until it answers 200; the last answer (or why
/// there was none) when `within` passes first.
pub async fn wait_ready(port: u16, within: Duration) -> Result<(), String> {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let answer = cutover::healthcheck::probe(address, "/health/ready", Duration::from_secs(1)).await;
        if answer == Ok(200) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("not ready on port {port} within {within:?}: {answer:?}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Poll `condition` every 50 ms until it holds or `timeout` passes; returns whether it held.
pub async fn eventually<F, Fut>(timeout: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if condition().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A TCP proxy in front of a real server that can be cut (every connection closed, new ones
/// refused) and restored on the same port: a dependency that becomes unreachable and comes
/// back, without disturbing other tests that use the same server directly.
#[derive(Debug)]
pub struct FaultProxy {
    address: SocketAddr,
    up: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl FaultProxy {
    /// Start forwarding a local port to `target` (`host:port`).
    pub async fn start(target: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a local port");
        let address = listener.local_addr().expect("local address");
        let (up, control) = watch::channel(true);
        let task = tokio::spawn(run_proxy(listener, address, target.to_owned(), control));
        Self { address, up, task }
    }

    /// The address clients should use instead of the server's.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Close every open connection and refuse new ones.
    pub fn cut(&self) {
        self.up.send_replace(false);
    }

    /// Accept connections again, on the same port.
    pub fn restore(&self) {
        self.up.send_replace(true);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run_proxy(listener: TcpListener, address: SocketAddr, target: String, mut control: watch::Receiver<bool>) {
    let mut listener = Some(listener);
    loop {
        let Some(active) = listener.take() else {
            // Down: wait to be restored, then listen on the same port again.
            if control.wait_for(|up| *up).await.is_err() {
                return;
            }
            let mut attempts = 0;
            listener = loop {
                match TcpListener::bind(address).await {
                    Ok(listener) => break Some(listener),
                    Err(error) if attempts < 100 => {
                        attempts += 1;
                        let _ = error;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Err(error) => panic!("cannot rebind {address}: {error}"),
                }
            };
            continue;
        };
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                accepted = active.accept() => {
                    let Ok((client, _)) = accepted else { continue };
                    let target = target.clone();
                    connections.spawn(async move {
                        if let Ok(mut server) = TcpStream::connect(&target).await {
                            let mut client = client;
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                }
                changed = control.changed() => {
                    if changed.is_err() { return; }
                    if !*control.borrow() {
                        // Cut: dropping the listener refuses new connections, aborting the
                        // tasks closes the open ones.
                        connections.abort_all();
                        break;
                    }
                }
            }
        }
        drop(active);
    }
}

/// A private `redis-server` process this test owns, so it can stop and restart it.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl RedisServer {
    /// Start `redis-server` on a free port and wait until it answers `PING`.
    pub async fn start() -> Self {
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
            probe.local_addr().expect("local address").port()
        };
        let dir = std::env::temp_dir().join(unique("cutover-redis"));
        std::fs::create_dir_all(&dir).expect("create a directory for redis-server");
        let mut server = Self { port, dir, child: None };
        server.start_again().await;
        server
    }

    /// The URL of this server.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stop the server (SIGKILL: the harshest way a dependency disappears).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start the server again on the same port.
    pub async fn start_again(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot run redis-server ({error}). This test stops and restarts a Redis server of its \
                     own; install it with `apt-get install redis-server` (scripts/services.sh does)."
                )
            });
        self.child = Some(child);
        let address = format!("127.0.0.1:{}", self.port);
        let answered = eventually(Duration::from_secs(10), || async {
            let Ok(mut stream) = TcpStream::connect(&address).await else {
                return false;
            };
            if stream.write_all(b"PING\r\n").await.is_err() {
                return false;
            }
            let mut reply = [0u8; 7];
            stream.read_exact(&mut reply).await.is_ok() && &reply == b"+PONG\r\n"
        })
        .await;
        assert!(answered, "redis-server on port {} did not answer PING", self.port);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Run `rabbitmqctl` with `args`. `CUTOVER_RABBITMQCTL` replaces the command for brokers in
/// containers, e.g. `docker compose -f examples/deploy/compose.dev.yml exec -T rabbitmq rabbitmqctl`.
pub fn rabbitmqctl(args: &[&str]) -> String {
    let command = std::env::var("CUTOVER_RABBITMQCTL").unwrap_or_else(|_| "rabbitmqctl".to_owned());
    let mut parts = command.split_whitespace();
    let program = parts.next().expect("CUTOVER_RABBITMQCTL is not empty");
    let output = Command::new(program)
        .args(parts)
        .args(args)
        .output()
        .unwrap_or_else(|error| {
            panic!("cannot run {command}: {error}. Set CUTOVER_RABBITMQCTL for a broker in a container.")
        });
    assert!(
        output.status.success(),
        "{command} {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A fresh W3C trace: its trace id, the id of the (pretend) calling span, and the
/// `traceparent` header naming them.
pub fn new_trace() -> (String, String, String) {
    let trace = format!("{:016x}{:016x}", fastrand::u64(1..), fastrand::u64(..));
    let parent = format!("{:016x}", fastrand::u64(1..));
    let header = format!("00-{trace}-{parent}-01");
    (trace, parent, header)
}

/// A span as Jaeger's query API reports it.
#[derive(Debug, Clone)]
pub struct TracedSpan {
    /// The service that exported it.
    pub service: String,
    /// Its name.
    pub operation: String,
    /// Its id.
    pub span_id: String,
    /// The span it is a child of, if any.
    pub parent: Option<String>,
    /// Its tags, as `key=value` strings.
    pub tags: Vec<String>,
}

/// The spans of `trace` in Jaeger (`JAEGER_QUERY_URL`), once `ready` accepts them (exporters
/// batch, so they arrive in a while); panics with what arrived after `within`.
pub async fn jaeger_trace(trace: &str, within: Duration, ready: impl Fn(&[TracedSpan]) -> bool) -> Vec<TracedSpan> {
    let query = service_url("JAEGER_QUERY_URL");
    let url = format!("{}/api/traces/{trace}", query.trim_end_matches('/'));
    let deadline = tokio::time::Instant::now() + within;
    let mut last = Vec::new();
    loop {
        if let Ok(body) = http_get_json(&url).await {
            last = traced_spans(&body);
            if ready(&last) {
                return last;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "trace {trace} did not arrive in Jaeger within {within:?}; it has: {last:#?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn traced_spans(body: &serde_json::Value) -> Vec<TracedSpan> {
    let mut spans = Vec::new();
    for trace in body["data"].as_array().into_iter().flatten() {
        for span in trace["spans"].as_array().into_iter().flatten() {
            let process = span["processID"].as_str().unwrap_or_default();
            spans.push(TracedSpan {
                service: trace["processes"][process]["serviceName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                operation: span["operationName"].as_str().unwrap_or_default().to_owned(),
                span_id: span["spanID"].as_str().unwrap_or_default().to_owned(),
                parent: span["references"]
                    .as_array()
                    .and_then(|refs| refs.iter().find(|r| r["refType"] == "CHILD_OF"))
                    .and_then(|r| r["spanID"].as_str())
                    .map(ToOwned::to_owned),
                tags: span["tags"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|tag| {
                        let value = match &tag["value"] {
                            serde_json::Value::String(text) => text.clone(),
                            other => other.to_string(),
                        };
                        format!("{}={value}", tag["key"].as_str().unwrap_or_default())
                    })
                    .collect(),
            });
        }
    }
    spans
}

async fn http_get_json(url: &str) -> Result<serde_json::Value, reqwest::Error> {
    reqwest::get(url).await?.json().await
}
