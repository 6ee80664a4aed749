//! Peak memory of the example API while 8 clients list users, in every API version, page after
//! page (`?limit=100`): first with 300 users holding the largest preferences the API accepts
//! (16 KiB, 8 levels deep), then with 6 more users holding 2 MB each, written straight into the
//! database the way data from before the limit existed would be. The report is the process's
//! peak resident memory (`VmHWM`) against its idle size, in one run; the Kubernetes manifest
//! gives the container 256 MiB.
//!
//! Run with: `cargo bench -p cutover-benches --bench list_memory`

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use cutover_benches::{free_port, rss_kib, wait_for_listener};
use serde_json::{Value, json};

const CLIENTS: usize = 8;
const USERS: usize = 300;
const LEGACY_USERS: usize = 6;
const SECONDS: u64 = 10;
const VERSIONS: [&str; 4] = ["1.0", "1.1", "1.2", "1.3"];

struct Api(Child);

impl Drop for Api {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The largest preferences the API accepts: 8 levels deep, just under 16 KiB.
fn maximal_preferences() -> Value {
    let mut nested = json!({"leaf": "x".repeat(64)});
    for level in 0..6 {
        nested = json!({ format!("level{level}"): nested });
    }
    json!({"deep": nested, "blob": "p".repeat(15_500)})
}

/// Every page of the user list as `version`, as many times as fits in `SECONDS`.
async fn list_everything(client: reqwest::Client, base: String, deadline: Instant) -> usize {
    let mut pages = 0;
    while Instant::now() < deadline {
        for version in VERSIONS {
            let mut url = format!("{base}/api/users?limit=100");
            loop {
                let page: Value = client
                    .get(&url)
                    .header("accept-version", version)
                    .send()
                    .await
                    .expect("list")
                    .json()
                    .await
                    .expect("a page");
                pages += 1;
                match page["next_cursor"].as_str() {
                    Some(cursor) => url = format!("{base}/api/users?limit=100&cursor={cursor}"),
                    None => break,
                }
            }
        }
    }
    pages
}

async fn load(base: &str) -> usize {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(SECONDS);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| tokio::spawn(list_everything(client.clone(), base.to_owned(), deadline)))
        .collect();
    let mut pages = 0;
    for client in clients {
        pages += client.await.expect("client");
    }
    pages
}

fn main() {
    let port = free_port();
    let directory = std::env::temp_dir().join(format!("list_memory_{}", std::process::id()));
    std::fs::create_dir_all(&directory).expect("temp dir");
    let database = directory.join("api.db");
    // The example API in a process of its own, so its memory is all that is measured.
    let api = Api(Command::new(env!("CARGO_BIN_EXE_bench-server"))
        .args(["api-service", &port.to_string(), "2"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SQLITE_PATH", &database)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start api-service"));
    wait_for_listener(port, Duration::from_secs(20));
    let pid = api.0.id();
    let base = format!("http://127.0.0.1:{port}");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let client = reqwest::Client::new();
        while !client
            .get(format!("{base}/health/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let preferences = maximal_preferences();
        for i in 0..USERS {
            let response = client
                .post(format!("{base}/api/users"))
                .json(&json!({"username": format!("user{i}"), "email": format!("u{i}@example.com"), "preferences": preferences}))
                .send()
                .await
                .expect("create");
            assert_eq!(response.status(), 201, "{}", response.text().await.unwrap_or_default());
        }
    });
    let (idle, _) = rss_kib(pid);
    println!(
        "idle after seeding {USERS} users with maximal preferences: {} MiB",
        idle / 1024
    );
    let pages = runtime.block_on(load(&base));
    let (_, peak) = rss_kib(pid);
    println!(
        "{CLIENTS} clients listing every page in versions 1.0-1.3 for {SECONDS}s ({pages} pages): peak {} MiB ({:.2}x idle)",
        peak / 1024,
        peak as f64 / idle as f64
    );

    // Data from before the limits: 2 MB of preferences per user, written behind the API's back.
    runtime.block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", database.display()))
            .await
            .expect("open the database");
        let legacy = json!({"blob": "L".repeat(2_000_000)}).to_string();
        for i in 0..LEGACY_USERS {
            let id: i64 =
                sqlx::query_scalar("INSERT INTO users (username, email, is_active) VALUES ($1, $2, 1) RETURNING id")
                    .bind(format!("legacy{i}"))
                    .bind(format!("legacy{i}@example.com"))
                    .fetch_one(&pool)
                    .await
                    .expect("legacy user");
            sqlx::query("INSERT INTO user_preferences (user_id, preferences) VALUES ($1, $2)")
                .bind(id)
                .bind(&legacy)
                .execute(&pool)
                .await
                .expect("legacy preferences");
        }
        pool.close().await;
    });
    let pages = runtime.block_on(load(&base));
    let (_, legacy_peak) = rss_kib(pid);
    println!(
        "with {LEGACY_USERS} legacy users of 2 MB each ({pages} pages): peak {} MiB ({:.2}x idle); the Kubernetes limit is 256 MiB",
        legacy_peak / 1024,
        legacy_peak as f64 / idle as f64
    );
    drop(api);
    let _ = std::fs::remove_dir_all(&directory);
}
