//! The lease that lets one runner at a time migrate a MongoDB database.
//!
//! One document in `_migrations_lock`, taken with a single atomic upsert whose filter matches
//! only an expired lease or our own: when another runner holds it, the filter matches nothing,
//! the upsert tries to insert the same `_id`, and the duplicate-key error says "taken". Expiry
//! times come from the server's clock (`hello.localTime`), so runners with skewed clocks agree.
//! (`$$NOW` inside `$expr` would save a round-trip, but the MongoDB-compatible servers this is
//! tested on do not implement it; `localTime` works everywhere.)
//!
//! A background task refreshes the lease every third of its duration; a failed refresh is
//! retried while the lease still holds (a server busy with the migration's own writes can be
//! slow). When another runner owns the document, or no refresh succeeds before the lease runs
//! out, the lease is lost: the step in progress is abandoned and the run stops, rather than
//! carry on while another runner may have taken over. Between batches the step also checks the
//! local deadline, so it never starts a batch on a lease that may have expired.
//!
//! The compare-and-set is only as atomic as the server's single-document update. MongoDB's is.
//! FerretDB 1.x applies an update by rewriting the document it read a moment before, so a late
//! refresh from a holder whose lease expired can overwrite the lease a new runner just took;
//! the new runner notices at its next refresh and stops, but both may run for up to a third of
//! the lease duration. Keep the lease well above the longest pause a runner can suffer.

use std::{
    future::Future,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use mongodb::{
    Collection, Database,
    bson::{DateTime, Document, doc},
    error::{ErrorKind, WriteFailure},
};
use tokio::{sync::watch, task::JoinHandle};

use crate::{Event, MigrateError, ledger::runner_id};

/// The lease collection.
pub const LOCK_COLLECTION: &str = "_migrations_lock";
const LOCK_ID: &str = "migrations";
const DUPLICATE_KEY: i32 = 11_000;

/// How the lease is taken and kept.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LeaseConfig {
    /// How long a lease lasts without a refresh.
    pub(crate) duration: Duration,
    /// How long to wait for another runner's lease.
    pub(crate) wait: Duration,
}

struct Shared {
    /// Set (with the reason) when the lease is lost.
    lost: watch::Sender<Option<String>>,
    /// Past this instant the lease may have expired on the server.
    valid_until: Mutex<Instant>,
}

/// A held lease. Dropping it without [`release`](Self::release) stops the refreshes; the
/// lease then expires on its own.
pub(crate) struct Lease {
    collection: Collection<Document>,
    owner: String,
    shared: Arc<Shared>,
    heartbeat: JoinHandle<()>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}

/// The server's current time.
pub(crate) async fn server_now(db: &Database) -> Result<DateTime, MigrateError> {
    let hello = db
        .run_command(doc! { "hello": 1 })
        .await
        .map_err(MigrateError::mongo("cannot read the server's clock (hello)"))?;
    hello.get_datetime("localTime").copied().map_err(|_| {
        MigrateError::Preflight("the server's `hello` answer has no `localTime`; cannot time the lease".to_owned())
    })
}

fn plus(time: DateTime, duration: Duration) -> DateTime {
    DateTime::from_millis(time.timestamp_millis() + i64::try_from(duration.as_millis()).unwrap_or(i64::MAX / 2))
}

fn is_duplicate_key(error: &mongodb::error::Error) -> bool {
    match error.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(write)) => write.code == DUPLICATE_KEY,
        ErrorKind::Command(command) => command.code == DUPLICATE_KEY,
        _ => false,
    }
}

impl Lease {
    /// Take the lease, waiting up to `config.wait` for another runner to finish.
    pub(crate) async fn acquire(
        db: &Database,
        config: LeaseConfig,
        emit: &(dyn Fn(Event) + Sync),
    ) -> Result<Self, MigrateError> {
        let collection = db.collection::<Document>(LOCK_COLLECTION);
        let owner = format!("{}:{:016x}", runner_id(), fastrand::u64(..));
        let started = Instant::now();
        let mut delay = Duration::from_millis(100);
        let mut last_report = Instant::now();
        loop {
            let attempt = Instant::now();
            if try_take(db, &collection, &owner, config.duration).await? {
                let shared = Arc::new(Shared {
                    lost: watch::channel(None).0,
                    valid_until: Mutex::new(attempt + config.duration),
                });
                let heartbeat = tokio::spawn(refresh_until_lost(
                    db.clone(),
                    owner.clone(),
                    config.duration,
                    Arc::clone(&shared),
                ));
                tracing::debug!(%owner, "migration lease taken");
                return Ok(Self {
                    collection,
                    owner,
                    shared,
                    heartbeat,
                });
            }
            let waited = started.elapsed();
            if waited >= config.wait {
                return Err(MigrateError::LockTimeout { waited });
            }
            if last_report.elapsed() >= Duration::from_secs(2) || waited < delay {
                emit(Event::WaitingForLock {
                    waited_ms: u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
                });
                last_report = Instant::now();
            }
            let jitter = delay.mul_f64(fastrand::f64() * 0.5);
            tokio::time::sleep((delay + jitter).min(config.wait.saturating_sub(waited))).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }

    /// An error if the lease is lost or may have run out.
    pub(crate) fn check(&self) -> Result<(), MigrateError> {
        if let Some(reason) = self.shared.lost.borrow().clone() {
            return Err(MigrateError::LeaseLost(reason));
        }
        let valid_until = *self.shared.valid_until.lock().unwrap_or_else(PoisonError::into_inner);
        if Instant::now() > valid_until {
            return Err(MigrateError::LeaseLost(
                "no successful refresh before it ran out".to_owned(),
            ));
        }
        Ok(())
    }

    /// Run `work` while the lease holds; abandon it the moment the lease is lost.
    pub(crate) async fn guard<T>(
        &self,
        work: impl Future<Output = Result<T, MigrateError>>,
    ) -> Result<T, MigrateError> {
        self.check()?;
        let mut lost = self.shared.lost.subscribe();
        tokio::select! {
            result = work => result,
            reason = lost.wait_for(Option::is_some) => {
                let reason = reason.map(|r| r.clone().unwrap_or_default()).unwrap_or_default();
                Err(MigrateError::LeaseLost(reason))
            }
        }
    }

    /// Give the lease back.
    pub(crate) async fn release(self) {
        self.heartbeat.abort();
        if let Err(error) = self
            .collection
            .delete_one(doc! { "_id": LOCK_ID, "owner": &self.owner })
            .await
        {
            tracing::warn!(%error, "could not release the migration lease; it expires on its own");
        }
    }
}

/// One atomic attempt: true when the lease is now ours.
async fn try_take(
    db: &Database,
    collection: &Collection<Document>,
    owner: &str,
    duration: Duration,
) -> Result<bool, MigrateError> {
    let now = server_now(db).await?;
    let result = collection
        .update_one(
            doc! {
                "_id": LOCK_ID,
                "$or": [{ "expires_at": { "$lte": now } }, { "owner": owner }],
            },
            doc! {
                "$set": { "owner": owner, "expires_at": plus(now, duration), "refreshed_at": now },
                "$setOnInsert": { "acquired_at": now },
            },
        )
        .upsert(true)
        .await;
    match result {
        Ok(_) => Ok(true),
        Err(error) if is_duplicate_key(&error) => Ok(false),
        Err(error) => Err(MigrateError::mongo("cannot take the migration lease")(error)),
    }
}

async fn refresh_until_lost(db: Database, owner: String, duration: Duration, shared: Arc<Shared>) {
    let collection = db.collection::<Document>(LOCK_COLLECTION);
    let mut wait = duration / 3;
    let reason = loop {
        tokio::time::sleep(wait).await;
        // A refresh may take until the lease runs out (a server busy with the migration's own
        // writes can be slow to answer); past that, the lease is gone.
        let valid_until = *shared.valid_until.lock().unwrap_or_else(PoisonError::into_inner);
        let left = valid_until.saturating_duration_since(Instant::now());
        let sent = Instant::now();
        let refreshed = async {
            let now = server_now(&db).await?;
            collection
                .update_one(
                    doc! { "_id": LOCK_ID, "owner": &owner },
                    doc! { "$set": { "expires_at": plus(now, duration), "refreshed_at": now } },
                )
                .await
                .map_err(MigrateError::mongo("cannot refresh the migration lease"))
        };
        // Failed attempts are retried quickly while the lease still holds.
        wait = duration / 10;
        match tokio::time::timeout(left, refreshed).await {
            Ok(Ok(result)) if result.matched_count == 1 => {
                *shared.valid_until.lock().unwrap_or_else(PoisonError::into_inner) = sent + duration;
                wait = duration / 3;
            }
            // Confirm before giving up: FerretDB 1.x can report no match under heavy
            // concurrent writes while the document is unchanged.
            Ok(Ok(_)) => match collection.find_one(doc! { "_id": LOCK_ID }).await {
                Ok(Some(lease)) if lease.get_str("owner").ok() == Some(owner.as_str()) => {
                    tracing::warn!("the lease refresh matched nothing, yet the lease is ours; retrying");
                }
                Ok(Some(lease)) => {
                    break format!(
                        "another runner took it over ({})",
                        lease.get_str("owner").unwrap_or("unknown")
                    );
                }
                Ok(None) => break "the lease document was deleted".to_owned(),
                Err(error) => tracing::warn!(%error, "cannot read the lease; retrying"),
            },
            Ok(Err(error)) => tracing::warn!(%error, "lease refresh failed; retrying while it holds"),
            Err(_) => {
                break format!(
                    "no refresh succeeded before it ran out ({} without one)",
                    humantime::format_duration(duration)
                );
            }
        }
    };
    tracing::error!(%reason, "migration lease lost; stopping");
    shared.lost.send_replace(Some(reason));
}
