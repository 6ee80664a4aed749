//! The contract gate under load: two builds of one service behind nginx (the shipped
//! `nginx.conf.template` and `switch.sh`), clients reading through it throughout, on a
//! PostgreSQL database of each run's own.
//!
//! - `contract-blue` (1.1) reads `users.name` and embeds the migrations up to the backfill;
//!   `contract-green` (2.0) reads `users.display_name` and embeds the contract migration that
//!   drops `name` too. Both register themselves (heartbeat 1 s, TTL 3 s).
//!
//! Scenarios:
//! 1. Blue serves; green deployed; backfill; traffic switched to green; `contract` refused
//!    (exit 3, blue named) while blue is alive; blue drained (SIGTERM) and gone; `contract`
//!    applied. Zero non-2xx and zero socket errors. Three runs. Reports the time from blue's
//!    exit to the applied contract.
//! 2. Negative control: `--force-contract` while blue still takes the traffic: blue's requests
//!    that read the dropped column fail, and are counted. One run.
//! 3. Blue killed with SIGKILL (no deregistration): `contract` refused until its row expires,
//!    then applied; zero non-2xx through green. Three runs.
//!
//! Prints a table and `N passed, N failed`; exits non-zero on any failure or on a process
//! left running. `CONTRACT_ONLY=kill` runs the scenarios whose name contains that text.
#![allow(clippy::unwrap_used, clippy::print_stdout)] // a harness reports on stdout, fails loudly

use std::{
    path::Path,
    process::{Command, ExitCode, Output, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use cutover_tests::{
    KillOnDrop, PgDatabase, free_port, output_text,
    proxy::{Nginx, Server},
    unique,
};

const HEARTBEAT_MS: u64 = 1_000;
/// Three heartbeats.
const TTL: Duration = Duration::from_secs(3);

/// A database of the run's own.
struct Database(PgDatabase);

impl std::ops::Deref for Database {
    type Target = PgDatabase;

    fn deref(&self) -> &PgDatabase {
        &self.0
    }
}

impl Database {
    async fn new() -> Self {
        Self(PgDatabase::create("contract").await)
    }

    async fn seed(&self, users: i64) {
        sqlx::query("INSERT INTO users (id, name) SELECT g, 'user ' || g FROM generate_series(1, $1) g")
            .bind(users)
            .execute(&self.pool)
            .await
            .unwrap();
    }

    async fn has_column(&self, column: &str) -> bool {
        sqlx::query_scalar(
            "SELECT count(*) > 0 FROM information_schema.columns WHERE table_name = 'users' AND column_name = $1",
        )
        .bind(column)
        .fetch_one(&self.pool)
        .await
        .unwrap()
    }

    async fn drop(self) {
        self.0.drop_database().await;
    }
}

#[derive(Clone, Copy)]
enum Build {
    Blue,
    Green,
}

impl Build {
    fn binary(self) -> &'static str {
        match self {
            Self::Blue => env!("CARGO_BIN_EXE_contract-blue"),
            Self::Green => env!("CARGO_BIN_EXE_contract-green"),
        }
    }
}

struct Instance {
    port: u16,
    child: KillOnDrop,
}

impl Instance {
    async fn start(build: Build, db: &Database, dir: &Path) -> Self {
        let port = free_port();
        let log = std::fs::File::create(dir.join(format!("{port}.log"))).unwrap();
        let child = Command::new(build.binary())
            .env("DATABASE_URL", &db.url)
            .env("PORT", port.to_string())
            .env("SHUTDOWN_DRAIN_DELAY", "1000")
            .env("INSTANCE_HEARTBEAT", HEARTBEAT_MS.to_string())
            .env("RUST_LOG", "warn")
            .env("CUTOVER_HARNESS_DIR", dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let mut instance = Self {
            port,
            child: KillOnDrop(child),
        };
        cutover_tests::wait_ready(port, Duration::from_secs(20))
            .await
            .unwrap_or_else(|e| panic!("{e}: {}", instance.log(dir)));
        assert!(instance.child.try_wait().unwrap().is_none());
        instance
    }

    fn log(&self, dir: &Path) -> String {
        std::fs::read_to_string(dir.join(format!("{}.log", self.port))).unwrap_or_default()
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Wait for the process to exit.
    async fn exited(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }
}

/// `contract-green migrate <args>`: the deployment's migration job.
async fn migrate(db: &Database, args: &[&str]) -> Output {
    tokio::process::Command::new(Build::Green.binary())
        .arg("migrate")
        .args(args)
        .env("DATABASE_URL", &db.url)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .output()
        .await
        .unwrap()
}

/// Clients reading users through the proxy until stopped.
#[derive(Default)]
struct Tally {
    requests: AtomicU64,
    non_2xx: AtomicU64,
    socket_errors: AtomicU64,
}

struct Load {
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(base: &str, clients: usize) -> Self {
        let tally = Arc::new(Tally::default());
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..clients)
            .map(|_| {
                let (tally, stop, base) = (Arc::clone(&tally), Arc::clone(&stop), base.to_owned());
                tokio::spawn(async move {
                    // A connection per request, as in api-service's harness: an nginx reload
                    // closes the old workers' idle keep-alive connections, and a client sending
                    // on one at that moment gets a reset from nginx itself.
                    let client = reqwest::Client::builder()
                        .timeout(Duration::from_secs(5))
                        .pool_max_idle_per_host(0)
                        .build()
                        .unwrap();
                    while !stop.load(Ordering::Relaxed) {
                        let id = fastrand::i64(1..=1_000);
                        tally.requests.fetch_add(1, Ordering::Relaxed);
                        match client.get(format!("{base}/users/{id}")).send().await {
                            Ok(response) if response.status().is_success() => {}
                            Ok(_) => {
                                tally.non_2xx.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(error) => {
                                tally.socket_errors.fetch_add(1, Ordering::Relaxed);
                                eprintln!("socket error: {error:?}");
                            }
                        }
                    }
                })
            })
            .collect();
        Self { tally, stop, tasks }
    }

    async fn finish(self) -> Counts {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.unwrap();
        }
        Counts {
            requests: self.tally.requests.load(Ordering::Relaxed),
            non_2xx: self.tally.non_2xx.load(Ordering::Relaxed),
            socket_errors: self.tally.socket_errors.load(Ordering::Relaxed),
        }
    }
}

/// What the clients saw.
struct Counts {
    requests: u64,
    non_2xx: u64,
    socket_errors: u64,
}

impl Counts {
    /// A passing row if every request succeeded.
    fn clean(self, note: String) -> Result<Row, String> {
        if self.non_2xx + self.socket_errors > 0 {
            return Err(format!(
                "{} non-2xx, {} socket errors of {}",
                self.non_2xx, self.socket_errors, self.requests
            ));
        }
        Ok(Row { counts: self, note })
    }
}

/// One row of the table.
struct Row {
    counts: Counts,
    note: String,
}

/// Blue serving, the users seeded, green started, backfilled: what every scenario starts from.
async fn blue_then_green(db: &Database, dir: &Path) -> (Instance, Instance, Nginx) {
    let blue = Instance::start(Build::Blue, db, dir).await;
    db.seed(1_000).await;
    let nginx = Nginx::start(dir, &[Server::one(blue.port)]).await;
    let green = Instance::start(Build::Green, db, dir).await;
    let backfill = migrate(db, &["backfill"]).await;
    assert!(backfill.status.success(), "{}", output_text(&backfill));
    (blue, green, nginx)
}

async fn switch_to(nginx: &Nginx, green: &Instance) {
    let switched = nginx.switch(&[Server::one(green.port)], Duration::from_secs(10)).await;
    assert!(switched.ok, "{}", switched.output);
}

/// Scenario 1.
async fn refused_until_blue_drains(db: &Database, dir: &Path) -> Result<Row, String> {
    let (mut blue, green, nginx) = blue_then_green(db, dir).await;
    let load = Load::start(&nginx.url(), 8);
    tokio::time::sleep(Duration::from_millis(500)).await;
    switch_to(&nginx, &green).await;

    let refused = migrate(db, &["contract"]).await;
    let message = output_text(&refused);
    if refused.status.code() != Some(3) || !message.contains("contract-demo 1.1.0 on") {
        return Err(format!("contract was not refused while blue is alive: {message}"));
    }
    if !db.has_column("name").await {
        return Err("the refused contract dropped the column".to_owned());
    }

    blue.signal("-TERM");
    if !blue.exited(Duration::from_secs(10)).await {
        return Err("blue did not exit after SIGTERM".to_owned());
    }
    let drained = Instant::now();
    let applied = migrate(db, &["contract"]).await;
    let after_drain = drained.elapsed();
    if !applied.status.success() || db.has_column("name").await {
        return Err(format!(
            "contract not applied after blue drained: {}",
            output_text(&applied)
        ));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let counts = load.finish().await;
    drop(green);
    counts.clean(format!(
        "refused while blue lived (exit 3); blue's exit to contract applied: {} ms",
        after_drain.as_millis()
    ))
}

/// Scenario 2: the gate overridden while blue serves.
async fn forced_while_blue_serves(db: &Database, dir: &Path) -> Result<Row, String> {
    let (blue, green, nginx) = blue_then_green(db, dir).await;
    let load = Load::start(&nginx.url(), 8);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let forced = migrate(db, &["contract", "--force-contract", "negative control"]).await;
    let text = output_text(&forced);
    if !forced.status.success() || !text.contains("FORCED past the contract gate") {
        return Err(format!("the forced contract did not run: {text}"));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let counts = load.finish().await;
    drop((blue, green));
    if counts.non_2xx == 0 {
        return Err(format!(
            "no request failed in {}: the control shows nothing",
            counts.requests
        ));
    }
    Ok(Row {
        counts,
        note: "blue's reads of the dropped column fail (500): the gate is what prevents it".to_owned(),
    })
}

/// Scenario 3: blue killed, its row left to expire.
async fn refused_until_a_killed_blue_expires(db: &Database, dir: &Path) -> Result<Row, String> {
    let (mut blue, green, nginx) = blue_then_green(db, dir).await;
    let load = Load::start(&nginx.url(), 8);
    switch_to(&nginx, &green).await;
    blue.signal("-KILL");
    if !blue.exited(Duration::from_secs(5)).await {
        return Err("blue survived SIGKILL".to_owned());
    }
    let killed = Instant::now();
    let mut refusals = 0;
    let applied_after = loop {
        let run = migrate(db, &["contract"]).await;
        match run.status.code() {
            Some(0) => break killed.elapsed(),
            Some(3) => refusals += 1,
            _ => return Err(format!("contract failed: {}", output_text(&run))),
        }
        if killed.elapsed() > TTL + Duration::from_secs(10) {
            return Err(format!("still refused {} s after the kill", killed.elapsed().as_secs()));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let counts = load.finish().await;
    drop(green);
    if refusals == 0 {
        return Err("never refused: the killed instance's row did not count".to_owned());
    }
    if db.has_column("name").await {
        return Err("the contract migration did not drop the column".to_owned());
    }
    counts.clean(format!(
        "refused {refusals} time(s), applied {} ms after the kill (TTL {} s)",
        applied_after.as_millis(),
        TTL.as_secs()
    ))
}

/// Processes started for the scenarios that are still running.
fn survivors(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let root = root.to_string_lossy();
        if String::from_utf8_lossy(&environ).contains(&*root) || String::from_utf8_lossy(&cmdline).contains(&*root) {
            found.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    found
}

#[tokio::main]
async fn main() -> ExitCode {
    let only = std::env::var("CONTRACT_ONLY").unwrap_or_default();
    let root = std::env::temp_dir().join(unique("contract-harness"));
    std::fs::create_dir_all(&root).unwrap();
    let scenarios: [(&str, usize); 3] = [
        ("1 contract waits for blue's drain (nginx)", 3),
        ("2 negative control: --force-contract", 1),
        ("3 blue killed: waits for its row to expire", 3),
    ];
    println!("| scenario | # | requests | non-2xx | socket errors | result | notes |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let (mut passed, mut failed) = (0, 0);
    for (index, (name, runs)) in scenarios.iter().enumerate() {
        if !name.contains(&only) {
            continue;
        }
        for run in 1..=*runs {
            let dir = root.join(format!("{index}-{run}"));
            std::fs::create_dir_all(&dir).unwrap();
            let db = Database::new().await;
            let outcome = tokio::time::timeout(Duration::from_secs(90), async {
                match index {
                    0 => refused_until_blue_drains(&db, &dir).await,
                    1 => forced_while_blue_serves(&db, &dir).await,
                    _ => refused_until_a_killed_blue_expires(&db, &dir).await,
                }
            })
            .await
            .unwrap_or_else(|_| Err("timed out after 90 s".to_owned()));
            db.drop().await;
            match outcome {
                Ok(row) => {
                    passed += 1;
                    println!(
                        "| {name} | {run} | {} | {} | {} | pass | {} |",
                        row.counts.requests, row.counts.non_2xx, row.counts.socket_errors, row.note
                    );
                }
                Err(why) => {
                    failed += 1;
                    println!("| {name} | {run} | | | | FAIL | {why} |");
                }
            }
        }
    }
    let left = survivors(&root);
    if !left.is_empty() {
        println!("still running after its scenario: {left:?}");
        failed += 1;
    }
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        let _ = std::fs::remove_dir_all(&root);
        ExitCode::SUCCESS
    } else {
        println!("logs: {}", root.display());
        ExitCode::FAILURE
    }
}
