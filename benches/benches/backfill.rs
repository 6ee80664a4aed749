//! Backfilling 1,000,000 rows while a load generator runs point reads and updates on the same
//! table: cutover's batched backfill versus one naive `UPDATE`, in the same run, against the
//! real PostgreSQL. Reports rows/s, reader and writer p99 (with a no-backfill baseline), and the
//! longest lock wait seen in `pg_stat_activity`.
//!
//! Batches of 250 rows with no pause by default; `BACKFILL_BATCH` and `BACKFILL_PAUSE` change
//! that. Batch size, not the pause, is what the writers feel: sampling `pg_stat_activity`
//! during 1,000-row batches shows them waiting on `WALWrite` / `WALSync` (their commits flush
//! the burst of WAL each batch wrote) and on row locks the batch holds.
//!
//! Run with: `scripts/services.sh up && source target/services.env && cargo bench -p cutover-benches --bench backfill`

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use cutover_benches::{Percentiles, service_url};
use cutover_migrate::{MigrationSet, Migrator, UpOptions};
use sqlx::{AssertSqlSafe, PgPool, postgres::PgPoolOptions};

const ROWS: i64 = 1_000_000;
const READERS: usize = 3;
const WRITERS: usize = 3;

struct Load {
    reads: Vec<Duration>,
    writes: Vec<Duration>,
    max_lock_wait: Duration,
}

/// Run point reads and updates (and a lock-wait sampler) until `work` finishes.
async fn under_load<F: Future<Output = ()>>(pool: &PgPool, work: F) -> (Load, Duration) {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for kind in std::iter::repeat_n(true, READERS).chain(std::iter::repeat_n(false, WRITERS)) {
        let (pool, stop) = (pool.clone(), Arc::clone(&stop));
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let id = fastrand::i64(1..=ROWS);
                let started = Instant::now();
                let sql = if kind {
                    "SELECT balance FROM accounts WHERE id = $1"
                } else {
                    "UPDATE accounts SET balance = balance + 1 WHERE id = $1"
                };
                sqlx::query(sql).bind(id).execute(&pool).await.expect("load query");
                samples.push(started.elapsed());
            }
            (kind, samples)
        }));
    }
    let sampler = {
        let (pool, stop) = (pool.clone(), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut worst = 0.0f64;
            while !stop.load(Ordering::Relaxed) {
                let wait: Option<f64> = sqlx::query_scalar(
                    "SELECT max(extract(epoch FROM now() - query_start))::float8 FROM pg_stat_activity
                     WHERE wait_event_type = 'Lock' AND datname = current_database()",
                )
                .fetch_one(&pool)
                .await
                .unwrap_or(None);
                worst = worst.max(wait.unwrap_or(0.0));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Duration::from_secs_f64(worst)
        })
    };
    let started = Instant::now();
    work.await;
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut load = Load {
        reads: Vec::new(),
        writes: Vec::new(),
        max_lock_wait: sampler.await.expect("sampler"),
    };
    for task in tasks {
        let (reader, samples) = task.await.expect("load task");
        if reader {
            load.reads.extend(samples);
        } else {
            load.writes.extend(samples);
        }
    }
    (load, elapsed)
}

/// Prints one line and returns the writers' p99.
fn report(name: &str, load: Load, elapsed: Duration, rows: Option<i64>) -> Duration {
    let reads = Percentiles::of(load.reads);
    let writes = Percentiles::of(load.writes);
    #[allow(clippy::cast_precision_loss)]
    let rate = rows.map_or_else(String::new, |rows| {
        format!("{:>9.0} rows/s", rows as f64 / elapsed.as_secs_f64())
    });
    println!(
        "{name:<26} {elapsed:>8.2?} {rate:>15}  reads p99 {:>9.2?}  writes p50/p99/max {:>8.2?} {:>9.2?} {:>9.2?}  max lock wait {:>9.2?}",
        reads.p99, writes.p50, writes.p99, writes.max, load.max_lock_wait
    );
    writes.p99
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let admin_url = service_url("DATABASE_URL");
        let admin = PgPool::connect(&admin_url).await.expect("connect");
        let name = format!("bench_backfill_{}", std::process::id());
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .expect("create db");
        let url = format!("{}/{name}", admin_url.rsplit_once('/').expect("url").0);
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .connect(&url)
            .await
            .expect("connect");
        sqlx::raw_sql(AssertSqlSafe(format!(
            "CREATE TABLE accounts (id bigint PRIMARY KEY, balance bigint NOT NULL DEFAULT 0, settings jsonb);
             INSERT INTO accounts (id) SELECT generate_series(1, {ROWS});"
        )))
        .execute(&pool)
        .await
        .expect("seed");
        // VACUUM cannot run inside the implicit transaction of a multi-statement string.
        sqlx::query("VACUUM ANALYZE accounts")
            .execute(&pool)
            .await
            .expect("vacuum");

        println!("{ROWS} rows, {READERS} readers + {WRITERS} writers doing point queries throughout");
        let (load, elapsed) = under_load(&pool, tokio::time::sleep(Duration::from_secs(8))).await;
        let baseline_p99 = report("baseline (no backfill)", load, elapsed, None);

        let batch = std::env::var("BACKFILL_BATCH").unwrap_or_else(|_| "250".to_owned());
        let pause = std::env::var("BACKFILL_PAUSE").unwrap_or_else(|_| "0ms".to_owned());
        println!("batches of {batch} rows, {pause} apart (BACKFILL_BATCH, BACKFILL_PAUSE)");
        let set = MigrationSet::from_files([(
            "bench/0001_fill_settings.up.sql".to_owned(),
            format!(
                "-- cutover:phase backfill\n-- cutover:backfill table=accounts key=id batch={batch} pause={pause}\n\
                 UPDATE accounts SET settings = '{{\"email\": true}}'::jsonb WHERE id > $1 AND id <= $2;"
            ),
        )])
        .expect("migration");
        let migrator = Migrator::new(set);
        let (load, elapsed) = under_load(&pool, async {
            migrator.up(&url, &UpOptions::default()).await.expect("backfill");
        })
        .await;
        let batched_p99 = report("cutover batched backfill", load, elapsed, Some(ROWS));
        let batched_elapsed = elapsed;

        sqlx::query("UPDATE accounts SET settings = NULL")
            .execute(&pool)
            .await
            .expect("reset");
        sqlx::query("VACUUM accounts").execute(&pool).await.expect("vacuum");
        let (load, elapsed) = under_load(&pool, async {
            sqlx::query("UPDATE accounts SET settings = '{\"email\": true}'::jsonb")
                .execute(&pool)
                .await
                .expect("naive");
        })
        .await;
        let naive_p99 = report("naive single UPDATE", load, elapsed, Some(ROWS));
        println!(
            "writers p99 vs baseline: batched {:.2}x, naive {:.0}x; batched throughput {:.0} % of the naive UPDATE's",
            batched_p99.as_secs_f64() / baseline_p99.as_secs_f64(),
            naive_p99.as_secs_f64() / baseline_p99.as_secs_f64(),
            100.0 * elapsed.as_secs_f64() / batched_elapsed.as_secs_f64(),
        );

        pool.close().await;
        let _ = sqlx::query(AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)")))
            .execute(&admin)
            .await;
    });
}
