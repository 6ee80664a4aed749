//! The MongoDB backend against the real server of the services script (FerretDB 1.x; any
//! MongoDB works too: `MONGODB_URL=mongodb://localhost:27017 cargo test -p cutover-migrate
//! --test mongodb`). Each test uses a database of its own.
//!
//! Files of commands go through the command-line tool (five runners at once, reruns, checksums,
//! down, malformed files); operations written in Rust through the library (indexes, fields,
//! copies, validators, the lease).
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::{
    future::IntoFuture,
    path::PathBuf,
    process::{Command, Output, Stdio},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use cutover_migrate::{
    LedgerState as State, MigrateError, Phase, UpOptions,
    mongo::{
        self, AddFields, Batching, CopyDocuments, CreateCollection, Index, LEDGER_COLLECTION, LOCK_COLLECTION,
        MongoMigration, MongoMigrationSet, MongoMigrator, Operation, SetValidation, ValidationAction, ValidationLevel,
    },
};
use cutover_tests::{assert_exit, assert_success, service_url, unique};
use futures_util::TryStreamExt;
use mongodb::{
    Database,
    bson::{DateTime, Document, doc},
};

/// A fresh database and a directory of command files for it.
struct Fixture {
    name: String,
    dir: PathBuf,
    db: Database,
}

impl Fixture {
    async fn new() -> Self {
        let name = unique("mig");
        let db = mongo::connect(&service_url("MONGODB_URL"), Some(&name)).await.unwrap();
        let dir = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        Self { name, dir, db }
    }

    fn write(&self, file: &str, json: &str) {
        std::fs::write(self.dir.join(file), json).unwrap();
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_cutover-migrate"));
        command
            .args(["--mongodb-url", &service_url("MONGODB_URL"), "--database", &self.name])
            .arg("--source")
            .arg(&self.dir)
            .args(args)
            .env_remove("DATABASE_URL")
            .stdin(Stdio::null());
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    async fn count(&self, collection: &str, filter: Document) -> u64 {
        self.db
            .collection::<Document>(collection)
            .count_documents(filter)
            .await
            .unwrap()
    }

    async fn ledger(&self, version: i64) -> Option<Document> {
        self.db
            .collection::<Document>(LEDGER_COLLECTION)
            .find_one(doc! { "_id": version })
            .await
            .unwrap()
    }

    async fn index_names(&self, collection: &str) -> Vec<String> {
        self.db
            .collection::<Document>(collection)
            .list_index_names()
            .await
            .unwrap()
    }

    async fn drop(self) {
        self.db.drop().await.unwrap();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Each migration records that it ran by inserting into `runs`: a second application would
/// show up as a second document.
fn write_counting_migrations(fixture: &Fixture) {
    fixture.write(
        "0001_events.up.json",
        r#"{ "phase": "expand", "commands": [
             { "create": "events" },
             { "insert": "runs", "documents": [{ "migration": 1 }] }
           ] }"#,
    );
    fixture.write(
        "0002_events_indexes.up.json",
        r#"[
             { "createIndexes": "events", "indexes": [{ "key": { "user_id": 1, "timestamp": -1 }, "name": "user_id_1_timestamp_-1" }] },
             { "insert": "runs", "documents": [{ "migration": 2 }] }
           ]"#,
    );
    fixture.write(
        "0002_events_indexes.down.json",
        r#"[{ "dropIndexes": "events", "index": "user_id_1_timestamp_-1" }, { "delete": "runs", "deletes": [{ "q": { "migration": 2 }, "limit": 0 }] }]"#,
    );
    fixture.write(
        "0003_sessions.up.json",
        r#"[{ "create": "sessions" }, { "insert": "runs", "documents": [{ "migration": 3 }] }]"#,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_runners_at_once_apply_each_migration_exactly_once() {
    let fixture = Fixture::new().await;
    write_counting_migrations(&fixture);

    let runners: Vec<_> = (0..5)
        .map(|_| {
            fixture
                .command(&["up", "--json"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<Output> = runners.into_iter().map(|r| r.wait_with_output().unwrap()).collect();

    let mut applied_by = [0; 4];
    for output in &outputs {
        assert_success(output);
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        for version in report["applied"].as_array().unwrap() {
            applied_by[usize::try_from(version.as_i64().unwrap()).unwrap()] += 1;
        }
    }
    assert_eq!(
        &applied_by[1..],
        &[1, 1, 1],
        "each migration applied by exactly one runner"
    );
    for migration in 1..=3 {
        assert_eq!(
            fixture.count("runs", doc! { "migration": migration }).await,
            1,
            "migration {migration} ran once"
        );
        assert_eq!(
            fixture
                .ledger(i64::from(migration))
                .await
                .unwrap()
                .get_str("state")
                .unwrap(),
            "applied"
        );
    }
    assert_eq!(
        fixture.count(LOCK_COLLECTION, doc! {}).await,
        0,
        "the lease is given back"
    );
    fixture.drop().await;
}

#[tokio::test]
async fn reruns_do_nothing_changed_checksums_are_refused_and_down_uses_the_stored_commands() {
    let fixture = Fixture::new().await;
    write_counting_migrations(&fixture);
    assert!(assert_success(&fixture.run(&["up"])).contains("applied 1, 2, 3"));
    assert!(assert_success(&fixture.run(&["up"])).contains("nothing to apply"));
    assert_eq!(fixture.count("runs", doc! {}).await, 3);

    // A changed applied file is refused before anything runs, naming the version.
    fixture.write(
        "0004_more.up.json",
        r#"[{ "insert": "runs", "documents": [{ "migration": 4 }] }]"#,
    );
    fixture.write(
        "0003_sessions.up.json",
        r#"[{ "create": "sessions_renamed" }, { "insert": "runs", "documents": [{ "migration": 3 }] }]"#,
    );
    let refused = assert_exit(1, &fixture.run(&["up"]));
    assert!(
        refused.contains("migration 3 (sessions) changed after it was applied"),
        "{refused}"
    );
    assert_eq!(fixture.count("runs", doc! { "migration": 4 }).await, 0, "nothing ran");

    // Repair accepts the edit on purpose; then 4 applies.
    assert!(assert_success(&fixture.run(&["repair", "--note", "renamed on purpose"])).contains("realigned"));
    assert_eq!(
        fixture.ledger(3).await.unwrap().get_str("repair_note").unwrap(),
        "renamed on purpose"
    );
    assert!(assert_success(&fixture.run(&["up"])).contains("applied 4"));

    // Down to 1: 4 and 3 have no down file and stop it; after removing them from the files
    // the ledger still refuses, since it holds no down for them.
    let irreversible = assert_exit(1, &fixture.run(&["down", "--to", "1"]));
    assert!(
        irreversible.contains("4") && irreversible.contains(".down.json"),
        "{irreversible}"
    );
    assert_eq!(
        fixture.count("runs", doc! {}).await,
        4,
        "a refused down changes nothing"
    );

    let status = assert_success(&fixture.run(&["status"]));
    assert!(status.contains("applied"), "{status}");
    fixture.drop().await;
}

#[tokio::test]
async fn down_reverts_with_the_commands_stored_when_it_was_applied() {
    let fixture = Fixture::new().await;
    write_counting_migrations(&fixture);
    assert_success(&fixture.run(&["up", "--to", "2"]));
    assert!(
        fixture
            .index_names("events")
            .await
            .contains(&"user_id_1_timestamp_-1".to_owned())
    );

    // The down file is deleted: the copy stored in the ledger still works (an older binary can
    // roll back what a newer one applied).
    std::fs::remove_file(fixture.dir.join("0002_events_indexes.down.json")).unwrap();
    assert!(assert_success(&fixture.run(&["down", "--to", "1"])).contains("reverted 2"));
    assert!(
        !fixture
            .index_names("events")
            .await
            .contains(&"user_id_1_timestamp_-1".to_owned())
    );
    assert_eq!(fixture.count("runs", doc! { "migration": 2 }).await, 0);
    assert!(fixture.ledger(2).await.is_none());
    assert!(fixture.ledger(1).await.is_some());
    fixture.drop().await;
}

#[tokio::test]
async fn malformed_files_and_missing_urls_are_refused_with_the_file_named() {
    let fixture = Fixture::new().await;
    fixture.write("0001_ok.up.json", r#"[{ "create": "a" }]"#);
    fixture.write("0002_broken.up.json", "[{ \"create\": \"b\" },\n  { \"insert\": }]");
    let output = assert_exit(1, &fixture.run(&["up"]));
    assert!(
        output.contains("0002_broken.up.json") && output.contains("line 2"),
        "{output}"
    );
    assert!(
        fixture.ledger(1).await.is_none(),
        "nothing applied before the files all parse"
    );
    assert!(assert_exit(1, &fixture.run(&["lint"])).contains("0002_broken.up.json"));

    std::fs::remove_file(fixture.dir.join("0002_broken.up.json")).unwrap();
    fixture.write("0002_not_a_command.up.json", r#"[{ "create": "b" }, 7]"#);
    assert!(assert_exit(1, &fixture.run(&["up"])).contains("command 2 must be an object"));

    std::fs::remove_file(fixture.dir.join("0002_not_a_command.up.json")).unwrap();
    assert!(assert_success(&fixture.run(&["lint"])).contains("1 MongoDB migrations parsed"));

    let no_url = Command::new(env!("CARGO_BIN_EXE_cutover-migrate"))
        .arg("--source")
        .arg(&fixture.dir)
        .arg("status")
        .env_remove("MONGODB_URL")
        .output()
        .unwrap();
    assert!(assert_exit(1, &no_url).contains("--mongodb-url"));
    let no_database = Command::new(env!("CARGO_BIN_EXE_cutover-migrate"))
        .args(["--mongodb-url", &service_url("MONGODB_URL"), "--source"])
        .arg(&fixture.dir)
        .arg("status")
        .output()
        .unwrap();
    assert!(assert_exit(1, &no_database).contains("--database"));
    assert!(assert_exit(1, &fixture.run(&["backup", "--dir", "/tmp"])).contains("PostgreSQL only"));

    fixture.write("0003_mixed.up.sql", "SELECT 1;");
    assert!(assert_exit(1, &fixture.run(&["status"])).contains("separate directories"));
    fixture.drop().await;
}

fn all_phases() -> UpOptions {
    UpOptions {
        phases: Some(vec![Phase::Expand, Phase::Backfill, Phase::Contract]),
        ..UpOptions::default()
    }
}

async fn up(fixture: &Fixture, migration: MongoMigration) -> Result<cutover_migrate::Report, MigrateError> {
    let set = MongoMigrationSet::new().with(migration).unwrap();
    MongoMigrator::new(set).up(&fixture.db, &all_phases()).await
}

#[tokio::test]
async fn an_index_with_the_same_spec_is_skipped_and_another_spec_under_the_name_is_an_error() {
    let fixture = Fixture::new().await;
    let events = fixture.db.collection::<Document>("events");
    events
        .insert_one(doc! { "user_id": 1, "timestamp": DateTime::now() })
        .await
        .unwrap();
    // Created by hand earlier, with the same definition: skipped, not an error.
    fixture
        .db
        .run_command(doc! { "createIndexes": "events", "indexes": [{ "key": { "user_id": 1 }, "name": "user_id_1" }] })
        .await
        .unwrap();
    // A conflicting definition under the name the migration wants.
    fixture
        .db
        .run_command(doc! { "createIndexes": "events", "indexes": [{ "key": { "timestamp": 1 }, "name": "by_time" }] })
        .await
        .unwrap();

    let same = MongoMigration::new(1, "user_index").then(Index::new("events", "user_id_1", doc! { "user_id": 1 }));
    assert_eq!(up(&fixture, same).await.unwrap().applied, vec![1]);

    let conflict = MongoMigration::new(2, "time_index").then(Index::new("events", "by_time", doc! { "timestamp": -1 }));
    let set = MongoMigrationSet::new()
        .with(MongoMigration::new(1, "user_index").then(Index::new("events", "user_id_1", doc! { "user_id": 1 })))
        .unwrap()
        .with(conflict)
        .unwrap();
    let error = MongoMigrator::new(set)
        .up(&fixture.db, &all_phases())
        .await
        .unwrap_err();
    match &error {
        MigrateError::IndexConflict {
            name, existing, wanted, ..
        } => {
            assert_eq!(name, "by_time");
            assert!(
                existing.contains("\"timestamp\":1") || existing.contains("\"timestamp\": 1"),
                "{existing}"
            );
            assert!(wanted.contains("-1"), "{wanted}");
        }
        other => panic!("expected an index conflict, got {other}"),
    }
    assert!(error.to_string().contains("another name"), "{error}");
    let entry = fixture.ledger(2).await.unwrap();
    assert_eq!(entry.get_str("state").unwrap(), "failed");
    fixture.drop().await;
}

#[tokio::test]
async fn fields_are_added_in_batches_only_where_missing() {
    let fixture = Fixture::new().await;
    let events = fixture.db.collection::<Document>("events");
    let documents: Vec<Document> = (0..250)
        .map(|i| {
            if i % 10 == 0 {
                doc! { "n": i, "processing_status": "done" }
            } else {
                doc! { "n": i }
            }
        })
        .collect();
    events.insert_many(documents).await.unwrap();

    let batches = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&batches);
    let migration = MongoMigration::new(1, "event_fields").phase(Phase::Backfill).then(
        AddFields::new("events", doc! { "version": "1.3.0", "processing_status": "pending" }).batching(Batching {
            size: 100,
            pause: Duration::ZERO,
        }),
    );
    let set = MongoMigrationSet::new().with(migration).unwrap();
    let migrator = MongoMigrator::new(set).on_event(move |event| {
        if matches!(event, cutover_migrate::Event::Batch { .. }) {
            seen.fetch_add(1, Ordering::SeqCst);
        }
    });
    migrator.up(&fixture.db, &all_phases()).await.unwrap();

    assert_eq!(batches.load(Ordering::SeqCst), 3, "250 documents in batches of 100");
    assert_eq!(fixture.count("events", doc! { "version": "1.3.0" }).await, 250);
    assert_eq!(
        fixture.count("events", doc! { "processing_status": "done" }).await,
        25,
        "kept"
    );
    assert_eq!(
        fixture.count("events", doc! { "processing_status": "pending" }).await,
        225
    );
    assert_eq!(
        migrator.up(&fixture.db, &all_phases()).await.unwrap().applied,
        Vec::<i64>::new()
    );
    fixture.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_written_while_fields_are_added_get_them_too() {
    let fixture = Fixture::new().await;
    let events = fixture.db.collection::<Document>("events");
    let documents: Vec<Document> = (0..200).map(|i| doc! { "n": i }).collect();
    events.insert_many(documents).await.unwrap();

    // An old version of the service keeps writing documents without the field: 50 of them
    // land after the first batch, behind the pass's cursor.
    let writer = events.clone();
    let written = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&written);
    let migration = MongoMigration::new(1, "event_version").phase(Phase::Backfill).then(
        AddFields::new("events", doc! { "version": "1.3.0" }).batching(Batching {
            size: 50,
            pause: Duration::ZERO,
        }),
    );
    let migrator = MongoMigrator::new(MongoMigrationSet::new().with(migration).unwrap()).on_event(move |event| {
        if matches!(event, cutover_migrate::Event::Batch { .. }) && seen.fetch_add(1, Ordering::SeqCst) == 0 {
            let late: Vec<Document> = (1_000..1_050).map(|i| doc! { "n": i }).collect();
            tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current()
                    .block_on(writer.insert_many(late).into_future())
                    .unwrap();
            });
        }
    });
    migrator.up(&fixture.db, &all_phases()).await.unwrap();

    assert!(written.load(Ordering::SeqCst) >= 4, "200 documents in batches of 50");
    assert_eq!(fixture.count("events", doc! {}).await, 250);
    assert_eq!(
        fixture.count("events", doc! { "version": "1.3.0" }).await,
        250,
        "the late documents got the field too"
    );
    fixture.drop().await;
}

fn copy_with_counter(calls: &Arc<AtomicUsize>, size: u32) -> CopyDocuments {
    let calls = Arc::clone(calls);
    CopyDocuments::new("events", "copies", "copied", "double-v1", move |event| {
        calls.fetch_add(1, Ordering::SeqCst);
        let n = event.get_i32("n")?;
        Ok(doc! { "double": n * 2 })
    })
    .batching(Batching {
        size,
        pause: Duration::ZERO,
    })
}

#[tokio::test]
async fn a_copy_resumes_after_an_interruption_without_writing_anything_twice() {
    let fixture = Fixture::new().await;
    let events = fixture.db.collection::<Document>("events");
    events
        .insert_many((0..300).map(|n| doc! { "n": n }).collect::<Vec<_>>())
        .await
        .unwrap();
    // What a killed run leaves behind: 100 copied and marked, 50 more copied but not marked.
    let all: Vec<Document> = events.find(doc! {}).await.unwrap().try_collect().await.unwrap();
    let copies: Vec<Document> = all[..150]
        .iter()
        .map(|e| doc! { "_id": e.get("_id").unwrap().clone(), "double": e.get_i32("n").unwrap() * 2, "copied": true })
        .collect();
    fixture
        .db
        .collection::<Document>("copies")
        .insert_many(copies)
        .await
        .unwrap();
    let marked: Vec<_> = all[..100].iter().map(|e| e.get("_id").unwrap().clone()).collect();
    events
        .update_many(doc! { "_id": { "$in": marked } }, doc! { "$set": { "copied": true } })
        .await
        .unwrap();

    let calls = Arc::new(AtomicUsize::new(0));
    let migration = MongoMigration::new(1, "copy").then(copy_with_counter(&calls, 64));
    up(&fixture, migration).await.unwrap();

    assert_eq!(
        calls.load(Ordering::SeqCst),
        200,
        "only the unmarked sources are read again"
    );
    assert_eq!(fixture.count("copies", doc! {}).await, 300, "one copy per source");
    assert_eq!(fixture.count("events", doc! { "copied": true }).await, 300);
    let wrong: Vec<Document> = fixture
        .db
        .collection::<Document>("copies")
        .find(doc! {})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let by_id: std::collections::HashMap<String, i32> = all
        .iter()
        .map(|e| (e.get_object_id("_id").unwrap().to_hex(), e.get_i32("n").unwrap()))
        .collect();
    for copy in wrong {
        let n = by_id[&copy.get_object_id("_id").unwrap().to_hex()];
        assert_eq!(copy.get_i32("double").unwrap(), n * 2);
    }

    // A transform that fails names the document and records the failure.
    events.insert_one(doc! { "n": "not a number" }).await.unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let set = MongoMigrationSet::new()
        .with(MongoMigration::new(1, "copy").then(copy_with_counter(&calls, 64)))
        .unwrap()
        .with(MongoMigration::new(2, "copy_again").then(copy_with_counter(&calls, 64)))
        .unwrap();
    let error = MongoMigrator::new(set)
        .up(&fixture.db, &all_phases())
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("the transform failed on the document with _id"),
        "{error}"
    );
    assert_eq!(fixture.ledger(2).await.unwrap().get_str("state").unwrap(), "failed");
    fixture.drop().await;
}

/// Whether the server implements `$jsonSchema` validators (MongoDB does, FerretDB 1.x does not).
async fn supports_validators(db: &Database) -> bool {
    let probe = db
        .run_command(doc! { "create": "validator_probe", "validator": { "$jsonSchema": { "bsonType": "object" } } })
        .await;
    let _ = db.collection::<Document>("validator_probe").drop().await;
    probe.is_ok()
}

#[tokio::test]
async fn validators_are_staged_warn_then_error_or_the_servers_refusal_is_reported() {
    let fixture = Fixture::new().await;
    let schema = doc! { "$jsonSchema": {
        "bsonType": "object",
        "required": ["user_id"],
        "properties": { "user_id": { "bsonType": ["int", "long"] } },
    } };
    let expand = MongoMigration::new(1, "user_behavior")
        .then(CreateCollection::new("user_behavior").validation(
            schema.clone(),
            ValidationLevel::Moderate,
            ValidationAction::Warn,
        ))
        .then(Index::new("user_behavior", "user_id_1", doc! { "user_id": 1 }));
    let contract = MongoMigration::new(2, "user_behavior_strict")
        .phase(Phase::Contract)
        .then(SetValidation::new(
            "user_behavior",
            schema,
            ValidationLevel::Strict,
            ValidationAction::Error,
        ));
    let set = MongoMigrationSet::new().with(expand).unwrap().with(contract).unwrap();
    let migrator = MongoMigrator::new(set);
    let result = migrator.up(&fixture.db, &all_phases()).await;

    if supports_validators(&fixture.db).await {
        assert_eq!(result.unwrap().applied, vec![1, 2]);
        let behavior = fixture.db.collection::<Document>("user_behavior");
        behavior.insert_one(doc! { "user_id": 7 }).await.unwrap();
        let rejected = behavior.insert_one(doc! { "user_id": "seven" }).await;
        assert!(rejected.is_err(), "the strict validator rejects a string user_id");
    } else {
        // FerretDB 1.x: the first step is refused; the run stops there, with the server's
        // answer, and nothing after it runs.
        let error = result.unwrap_err();
        match &error {
            MigrateError::Unsupported {
                version, step, message, ..
            } => {
                assert_eq!((*version, *step), (1, 1));
                assert!(
                    message.contains("NotImplemented") && message.contains("validator"),
                    "{message}"
                );
            }
            other => panic!("expected Unsupported, got {other}"),
        }
        assert!(error.to_string().contains("does not support"), "{error}");
        let entry = fixture.ledger(1).await.unwrap();
        assert_eq!(entry.get_str("state").unwrap(), "failed");
        assert_eq!(entry.get_i64("failed_step").unwrap(), 1);
        assert!(
            fixture.ledger(2).await.is_none(),
            "the contract migration never started"
        );
        let names = fixture.db.list_collection_names().await.unwrap();
        assert!(!names.contains(&"user_behavior".to_owned()), "{names:?}");
        let status = migrator.status(&fixture.db).await.unwrap();
        assert_eq!(status[0].ledger.as_ref().unwrap().state, State::Failed);
    }
    fixture.drop().await;
}

/// A copy slow enough to outlive a few lease refreshes: 20 batches of 10 with 100 ms pauses.
async fn slow_copy(fixture: &Fixture) -> MongoMigrator {
    fixture
        .db
        .collection::<Document>("events")
        .insert_many((0..200).map(|n| doc! { "n": n }).collect::<Vec<_>>())
        .await
        .unwrap();
    let copy = CopyDocuments::new("events", "copies", "copied", "v1", |event| {
        Ok(doc! { "n": event.get_i32("n")? })
    })
    .batching(Batching {
        size: 10,
        pause: Duration::from_millis(100),
    });
    let set = MongoMigrationSet::new()
        .with(MongoMigration::new(1, "slow_copy").then(copy))
        .unwrap();
    MongoMigrator::new(set).lease_duration(Duration::from_millis(600))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_lease_makes_others_wait_and_an_expired_one_is_taken_over() {
    let fixture = Fixture::new().await;
    let lock = fixture.db.collection::<Document>(LOCK_COLLECTION);
    let far = DateTime::from_millis(DateTime::now().timestamp_millis() + 3_600_000);
    lock.insert_one(doc! { "_id": "migrations", "owner": "someone-else", "expires_at": far })
        .await
        .unwrap();
    let set = MongoMigrationSet::new()
        .with(MongoMigration::new(1, "a").then(Operation::Command(doc! { "create": "a" })))
        .unwrap();
    let waiting = MongoMigrator::new(set.clone()).lock_wait(Duration::from_millis(700));
    let error = waiting.up(&fixture.db, &UpOptions::default()).await.unwrap_err();
    assert!(matches!(error, MigrateError::LockTimeout { .. }), "{error}");
    assert!(fixture.ledger(1).await.is_none());

    // The holder died an hour ago: its lease has run out and is taken over.
    let past = DateTime::from_millis(DateTime::now().timestamp_millis() - 3_600_000);
    lock.update_one(doc! { "_id": "migrations" }, doc! { "$set": { "expires_at": past } })
        .await
        .unwrap();
    assert_eq!(
        waiting.up(&fixture.db, &UpOptions::default()).await.unwrap().applied,
        vec![1]
    );
    assert_eq!(fixture.count(LOCK_COLLECTION, doc! {}).await, 0);
    fixture.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lease_stops_the_step_instead_of_running_unlocked() {
    let fixture = Fixture::new().await;
    let migrator = slow_copy(&fixture).await;
    let db = fixture.db.clone();
    let run = tokio::spawn(async move { migrator.up(&db, &UpOptions::default()).await });

    // Another runner takes the lease over while the copy is under way (what happens when a
    // paused process wakes up after its lease ran out).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let far = DateTime::from_millis(DateTime::now().timestamp_millis() + 3_600_000);
    let stolen = fixture
        .db
        .collection::<Document>(LOCK_COLLECTION)
        .update_one(
            doc! { "_id": "migrations" },
            doc! { "$set": { "owner": "thief", "expires_at": far } },
        )
        .await
        .unwrap();
    assert_eq!(stolen.matched_count, 1, "the copy holds the lease while it runs");

    let error = run.await.unwrap().unwrap_err();
    assert!(matches!(error, MigrateError::LeaseLost(_)), "{error}");
    let copied = fixture.count("events", doc! { "copied": true }).await;
    assert!(copied < 200, "the copy stopped early ({copied} of 200)");
    let entry = fixture.ledger(1).await.unwrap();
    assert_eq!(entry.get_str("state").unwrap(), "failed");
    assert!(entry.get_str("error").unwrap().contains("lease"), "{entry}");
    fixture.drop().await;
}
