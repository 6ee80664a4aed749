//! Migrating events into `user_behavior` (the v1.3.0 copy): cutover's `CopyDocuments` versus
//! the brief's loop (read a batch, `insert_many`, then `update_many` with `$in` to mark it),
//! same transform, same batch size (1,000 as in the brief, or a twentieth of the events when
//! that is smaller, so the interrupted run has batches to resume), same server, same run. Also the resume overhead: a copy
//! aborted half-way and run again, against one uninterrupted copy (the wait for the dead
//! runner's lease is left out: it is the lease duration, by design).
//!
//! Events: `CUTOVER_MONGO_EVENTS`, else 100,000 on MongoDB and 1,000 on FerretDB, whose SQLite
//! backend scans the whole collection for every document it updates (both sides pay it; the
//! numbers there measure FerretDB more than either loop).
//!
//! Run with: `scripts/services.sh up && source target/services.env && cargo bench -p cutover-benches --bench mongo_copy`

use std::time::{Duration, Instant};

use cutover_benches::service_url;
use cutover_migrate::{
    UpOptions,
    mongo::{self, Batching, CopyDocuments, LOCK_COLLECTION, MongoMigration, MongoMigrationSet, MongoMigrator},
};
use futures_util::TryStreamExt;
use mongodb::{
    Database,
    bson::{Bson, Document, doc},
};
use worker_service::{
    migrations::{MARKER, to_user_behavior},
    sample,
};

const ROUNDS: usize = 2;

async fn fresh(events: u64) -> Database {
    let name = format!("bench_copy_{}_{}", std::process::id(), fastrand::u32(..));
    let db = mongo::connect(&service_url("MONGODB_URL"), Some(&name))
        .await
        .expect("connect");
    sample::insert_events(&db, events).await.expect("seed");
    db
}

fn migrator(batch: u32) -> MongoMigrator {
    let copy = CopyDocuments::new("events", "user_behavior", MARKER, "user_behavior-v1", to_user_behavior).batching(
        Batching {
            size: batch,
            pause: Duration::ZERO,
        },
    );
    let set = MongoMigrationSet::new()
        .with(MongoMigration::new(1, "copy").then(copy))
        .expect("valid set");
    MongoMigrator::new(set).lease_duration(Duration::from_secs(5))
}

async fn ours(db: &Database, batch: u32) -> Duration {
    let started = Instant::now();
    migrator(batch).up(db, &UpOptions::default()).await.expect("copy");
    started.elapsed()
}

/// The brief's `_migrate_event_data`, in Rust.
async fn briefs_loop(db: &Database, batch_size: u32) -> Duration {
    let started = Instant::now();
    let events = db.collection::<Document>("events");
    let target = db.collection::<Document>("user_behavior");
    let mut cursor = events
        .find(doc! { MARKER: { "$ne": true } })
        .batch_size(batch_size)
        .await
        .expect("find");
    let mut batch = Vec::new();
    loop {
        let next = cursor.try_next().await.expect("read");
        let end = next.is_none();
        if let Some(event) = next {
            let id = event.get("_id").cloned().expect("_id");
            let mut behavior = to_user_behavior(event).expect("transform");
            behavior.insert("_id", id);
            behavior.insert(MARKER, true);
            batch.push(behavior);
        }
        if batch.len() >= batch_size as usize || (end && !batch.is_empty()) {
            let ids: Vec<Bson> = batch.iter().filter_map(|d| d.get("_id").cloned()).collect();
            target
                .insert_many(std::mem::take(&mut batch))
                .ordered(false)
                .await
                .expect("insert");
            events
                .update_many(doc! { "_id": { "$in": ids } }, doc! { "$set": { MARKER: true } })
                .await
                .expect("mark");
        }
        if end {
            break;
        }
    }
    started.elapsed()
}

/// Abort a copy once half the events are marked, then finish it: (first part, rerun).
async fn interrupted(db: &Database, events: u64, batch: u32) -> (Duration, Duration) {
    let started = Instant::now();
    let run = {
        let db = db.clone();
        tokio::spawn(async move { migrator(batch).up(&db, &UpOptions::default()).await })
    };
    let marked = db.collection::<Document>("events");
    while marked.count_documents(doc! { MARKER: true }).await.expect("count") < events / 2 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    run.abort();
    let _ = run.await;
    let first = started.elapsed();
    // The dead runner's lease would expire on its own; the wait is not part of the work. Its
    // last requests are let through first: FerretDB 1.x applies an update by rewriting the
    // document it read earlier, so a refresh still in flight would overwrite a new lease.
    tokio::time::sleep(Duration::from_secs(1)).await;
    db.collection::<Document>(LOCK_COLLECTION)
        .delete_many(doc! {})
        .await
        .expect("clear the lease");
    (first, ours(db, batch).await)
}

async fn check(db: &Database, events: u64) {
    let copied = db
        .collection::<Document>("user_behavior")
        .count_documents(doc! {})
        .await
        .expect("count");
    assert_eq!(copied, events, "one document per event");
    db.drop().await.expect("drop");
}

fn per_second(events: u64, took: Duration) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let events = events as f64;
    events / took.as_secs_f64()
}

#[tokio::main]
async fn main() {
    let probe = fresh(0).await;
    let ferretdb = probe
        .run_command(doc! { "buildInfo": 1 })
        .await
        .expect("buildInfo")
        .contains_key("ferretdbVersion");
    probe.drop().await.expect("drop");
    let events: u64 = std::env::var("CUTOVER_MONGO_EVENTS")
        .ok()
        .map(|n| n.parse().expect("CUTOVER_MONGO_EVENTS is a number"))
        .unwrap_or(if ferretdb { 1_000 } else { 100_000 });
    let batch = u32::try_from((events / 20).clamp(1, 1_000)).unwrap_or(1_000);
    println!(
        "copying {events} events, batches of {batch}, on {}",
        if ferretdb { "FerretDB" } else { "MongoDB" }
    );

    let (mut ours_rates, mut brief_rates, mut overheads) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=ROUNDS {
        let db = fresh(events).await;
        let took = ours(&db, batch).await;
        check(&db, events).await;
        ours_rates.push(per_second(events, took));

        let db = fresh(events).await;
        let brief = briefs_loop(&db, batch).await;
        check(&db, events).await;
        brief_rates.push(per_second(events, brief));

        let db = fresh(events).await;
        let (first, rerun) = interrupted(&db, events, batch).await;
        check(&db, events).await;
        let overhead = (first + rerun).as_secs_f64() / took.as_secs_f64() - 1.0;
        overheads.push(overhead);
        println!(
            "round {round}: cutover {took:.2?} ({:.0} docs/s), brief's loop {brief:.2?} ({:.0} docs/s), \
             interrupted {first:.2?} + resumed {rerun:.2?} (overhead {:+.1}%)",
            per_second(events, took),
            per_second(events, brief),
            overhead * 100.0
        );
    }
    let mean = |v: &[f64]| {
        #[allow(clippy::cast_precision_loss)]
        let n = v.len() as f64;
        v.iter().sum::<f64>() / n
    };
    println!(
        "mean: cutover {:.0} docs/s, brief's loop {:.0} docs/s, ratio {:.2}; resume overhead {:+.1}%",
        mean(&ours_rates),
        mean(&brief_rates),
        mean(&ours_rates) / mean(&brief_rates),
        mean(&overheads) * 100.0
    );
}
