//! The v1.3.0 analytics migration, run by the real `worker-service` binary against the MongoDB
//! of the services script (FerretDB 1.x there; any MongoDB works too:
//! `MONGODB_URL=mongodb://localhost:27017 cargo test -p worker-service --test migration`).
//!
//! How many events the kill test migrates: `CUTOVER_MONGO_EVENTS`, else 100,000 on MongoDB and
//! 1,000 on FerretDB, whose SQLite backend rewrites each updated document with a scan of the
//! whole collection (about 6 µs per stored document per update: marking 100,000 events would
//! take hours there, whatever the client does). Its PostgreSQL backend indexes those updates
//! but reads the whole collection for every `$in` filter: 100,000 events passed there in 55
//! minutes.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use cutover_migrate::mongo;
use cutover_tests::{KillOnDrop, assert_success, output_text, service_url, unique};
use futures_util::TryStreamExt;
use mongodb::{
    Database,
    bson::{DateTime, Document, doc},
};
use worker_service::{migrations::MARKER, sample};

struct Fixture {
    name: String,
    db: Database,
}

impl Fixture {
    async fn new() -> Self {
        let name = unique("analytics");
        let db = mongo::connect(&service_url("MONGODB_URL"), Some(&name)).await.unwrap();
        Self { name, db }
    }

    async fn seed(&self, count: u64) {
        sample::insert_events(&self.db, count).await.unwrap();
    }

    fn migrate(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_worker-service"));
        command
            .args([
                "--mongodb-url",
                &service_url("MONGODB_URL"),
                "--database",
                &self.name,
                "migrate",
            ])
            .args(args)
            .stdin(Stdio::null());
        command
    }

    async fn count(&self, collection: &str, filter: Document) -> u64 {
        self.db
            .collection::<Document>(collection)
            .count_documents(filter)
            .await
            .unwrap()
    }

    async fn ledger_state(&self, version: i64) -> Option<String> {
        self.db
            .collection::<Document>(mongo::LEDGER_COLLECTION)
            .find_one(doc! { "_id": version })
            .await
            .unwrap()
            .map(|entry| entry.get_str("state").unwrap().to_owned())
    }

    async fn is_ferretdb(&self) -> bool {
        let info = self.db.run_command(doc! { "buildInfo": 1 }).await.unwrap();
        info.contains_key("ferretdbVersion")
    }
}

fn run_ok(command: &mut Command) -> String {
    assert_success(&command.output().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_copy_killed_half_way_resumes_and_writes_exactly_one_document_per_event() {
    let fixture = Fixture::new().await;
    let total: u64 = match std::env::var("CUTOVER_MONGO_EVENTS") {
        Ok(n) => n.parse().expect("CUTOVER_MONGO_EVENTS is a number"),
        Err(_) if fixture.is_ferretdb().await => 1_000,
        Err(_) => 100_000,
    };
    fixture.seed(total).await;
    let batch = (total / 40).clamp(50, 1_000).to_string();

    // A real process, killed with SIGKILL once about half the events are copied.
    let mut child = KillOnDrop(
        fixture
            .migrate(&["up", "--batch-size", &batch, "--pause", "0s", "--lease", "3s"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    loop {
        let marked = fixture.count("events", doc! { MARKER: true }).await;
        if marked >= total / 2 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the migration ended before it was killed"
        );
        assert!(
            started.elapsed() < Duration::from_secs(600).max(Duration::from_millis(total * 40)),
            "no progress: {marked} marked"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let marked = fixture.count("events", doc! { MARKER: true }).await;
    let copied = fixture.count("user_behavior", doc! {}).await;
    assert!(marked < total, "killed before the end ({marked} of {total} marked)");
    assert!(copied >= marked, "every marked event is copied ({copied} < {marked})");
    assert_eq!(fixture.ledger_state(13004).await.as_deref(), Some("running"));
    assert_eq!(fixture.ledger_state(13003).await.as_deref(), Some("applied"));

    // The rerun takes the dead runner's lease once it expires, then finishes the copy.
    let rerun = run_ok(
        fixture
            .migrate(&["up", "--batch-size", &batch, "--pause", "0s"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    assert!(
        rerun.contains("resuming at step 1") || rerun.contains("13004"),
        "{rerun}"
    );
    assert!(rerun.contains("applied 13004"), "{rerun}");
    assert_eq!(
        fixture.count("events", doc! { MARKER: true }).await,
        total,
        "every event marked"
    );
    assert_eq!(
        fixture.count("user_behavior", doc! {}).await,
        total,
        "one document per event"
    );
    let ids: Vec<Document> = fixture
        .db
        .collection::<Document>("user_behavior")
        .aggregate([
            doc! { "$group": { "_id": "$original_event_id" } },
            doc! { "$count": "n" },
        ])
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        u64::try_from(ids[0].get_i32("n").unwrap()).unwrap(),
        total,
        "no event copied twice"
    );

    // What the copies hold.
    let chrome = fixture
        .db
        .collection::<Document>("user_behavior")
        .find_one(doc! { "metadata.n": 0_i64 })
        .await
        .unwrap()
        .unwrap();
    let device = chrome.get_document("device_info").unwrap();
    assert_eq!(device.get_str("browser").unwrap(), "Chrome");
    assert_eq!(device.get_str("platform").unwrap(), "Windows 10");
    assert_eq!(device.get_str("ip_address").unwrap(), "198.51.100.0");
    assert_eq!(chrome.get_str("action").unwrap(), "view");
    assert_eq!(chrome.get_str("session_id").unwrap(), "s-0");
    let no_session = fixture
        .db
        .collection::<Document>("user_behavior")
        .find_one(doc! { "metadata.n": 1_i64 })
        .await
        .unwrap()
        .unwrap();
    assert!(!no_session.contains_key("session_id"), "absent, not null: {no_session}");

    // The fields, only where they were missing.
    assert_eq!(
        fixture.count("events", doc! { "processing_status": "pending" }).await,
        total
    );
    assert!(run_ok(&mut fixture.migrate(&["up"])).contains("nothing to apply"));
    fixture.db.drop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_validator_is_applied_in_contract_or_the_servers_refusal_is_reported() {
    let fixture = Fixture::new().await;
    fixture.seed(120).await;
    run_ok(&mut fixture.migrate(&["up", "--pause", "0s"]));
    let indexes = fixture
        .db
        .collection::<Document>("user_behavior")
        .list_index_names()
        .await
        .unwrap();
    for name in ["user_id_1_timestamp_-1", "action_1_timestamp_-1", "session_id_1"] {
        assert!(indexes.contains(&name.to_owned()), "{name} in {indexes:?}");
    }

    let contract = fixture.migrate(&["up", "--phase", "contract"]).output().unwrap();
    let behavior = fixture.db.collection::<Document>("user_behavior");
    let probe = fixture
        .db
        .run_command(doc! { "create": "validator_probe", "validator": { "$jsonSchema": { "bsonType": "object" } } })
        .await;
    if probe.is_ok() {
        assert!(contract.status.success(), "{}", output_text(&contract));
        let invalid = behavior
            .insert_one(doc! { "user_id": "not a number", "action": "x", "timestamp": DateTime::now() })
            .await;
        assert!(invalid.is_err(), "the strict validator rejects it");
    } else {
        // FerretDB 1.x: stopped at the validator, with the server's answer, recorded.
        assert_eq!(contract.status.code(), Some(1), "{}", output_text(&contract));
        let message = output_text(&contract);
        assert!(
            message.contains("13005") && message.contains("does not support") && message.contains("NotImplemented"),
            "{message}"
        );
        assert_eq!(fixture.ledger_state(13005).await.as_deref(), Some("failed"));
        let status = run_ok(&mut fixture.migrate(&["status"]));
        assert!(status.contains("failed"), "{status}");
    }

    // Down to before v1.3.0: the new collection, indexes, fields and markers are gone.
    run_ok(&mut fixture.migrate(&["down", "--to", "0"]));
    let names = fixture.db.list_collection_names().await.unwrap();
    assert!(!names.contains(&"user_behavior".to_owned()), "{names:?}");
    assert_eq!(fixture.count("events", doc! { MARKER: { "$exists": true } }).await, 0);
    assert_eq!(
        fixture
            .count("events", doc! { "processing_status": { "$exists": true } })
            .await,
        0
    );
    assert_eq!(
        fixture.count("events", doc! {}).await,
        120,
        "the events themselves stay"
    );
    let indexes = fixture
        .db
        .collection::<Document>("events")
        .list_index_names()
        .await
        .unwrap();
    assert_eq!(indexes, vec!["_id_".to_owned()]);
    fixture.db.drop().await.unwrap();
}

/// The contract step waits for workers built before it: a live one whose binary lacks 13005
/// makes `migrate up --phase contract` refuse (exit 3, nothing recorded) and `migrate status`
/// name it; once it deregisters, the step runs (FerretDB then answers with its refusal of the
/// validator, as above).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_contract_step_waits_for_workers_built_without_it() {
    use cutover_migrate::{
        instances::{InstancePhase, InstanceRegistry},
        mongo::Batching,
    };
    let fixture = Fixture::new().await;
    fixture.seed(10).await;
    run_ok(&mut fixture.migrate(&["up", "--pause", "0s"]));
    let all = worker_service::migrations::migrations(Batching::default()).unwrap();
    let before: Vec<(i64, String)> = all
        .migrations()
        .iter()
        .filter(|m| m.version < 13005)
        .map(|m| (m.version, m.checksum()))
        .collect();
    let old = InstanceRegistry::new(
        &fixture.db,
        "worker-service",
        cutover_migrate::instances::Embedded::new(before.iter().map(|(v, c)| (*v, c.as_str()))),
    )
    .version("1.2.0")
    .host("worker-old");
    old.beat(InstancePhase::Ready).await.unwrap();
    let current = InstanceRegistry::new(&fixture.db, "worker-service", &all).version("1.3.0");
    current.beat(InstancePhase::Ready).await.unwrap();

    let refused = fixture.migrate(&["up", "--phase", "contract"]).output().unwrap();
    assert_eq!(refused.status.code(), Some(3), "{}", output_text(&refused));
    let message = output_text(&refused);
    assert!(
        message.contains("contract migration 13005 (validate_user_behavior) is not embedded by 1 live instance(s)"),
        "{message}"
    );
    assert!(message.contains("worker-service 1.2.0 on worker-old"), "{message}");
    assert_eq!(fixture.ledger_state(13005).await, None, "nothing recorded");
    let status = run_ok(&mut fixture.migrate(&["status"]));
    assert!(
        status.contains("live: worker-service 1.2.0 on worker-old") && status.contains("blocks contract [13005]"),
        "{status}"
    );

    old.deregister().await.unwrap();
    let contract = fixture.migrate(&["up", "--phase", "contract"]).output().unwrap();
    assert_ne!(contract.status.code(), Some(3), "{}", output_text(&contract));
    assert!(fixture.ledger_state(13005).await.is_some(), "the step ran");
    current.deregister().await.unwrap();
    fixture.db.drop().await.unwrap();
}
