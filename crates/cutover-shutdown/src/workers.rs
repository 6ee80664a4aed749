//! Background work that must learn about the shutdown and finish its current unit.

use std::{
    collections::BTreeMap,
    future::Future,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
};

use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

use crate::token::ShutdownToken;

/// Tracks background workers (queue consumers, schedulers, WebSocket tasks) so the shutdown
/// waits for them, within its timeout, after telling them to stop.
///
/// ```
/// use cutover_shutdown::Shutdown;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let shutdown = Shutdown::builder().build().unwrap();
/// shutdown.workers().spawn("reindexer", |stop| async move {
///     while !stop.is_cancelled() {
///         // take one unit of work, finish it, loop
///         tokio::select! {
///             _ = stop.cancelled() => break,
///             _ = tokio::time::sleep(std::time::Duration::from_millis(100)) => {}
///         }
///     }
/// });
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Workers {
    tracker: TaskTracker,
    stopping: ShutdownToken,
    running: Arc<Mutex<BTreeMap<u64, String>>>,
    next_id: Arc<AtomicU64>,
}

impl Workers {
    pub(crate) fn new(stopping: ShutdownToken) -> Self {
        Self {
            tracker: TaskTracker::new(),
            stopping,
            running: Arc::default(),
            next_id: Arc::default(),
        }
    }

    /// Spawn a worker. It receives the token that fires when the service starts stopping;
    /// it should then finish the unit it is working on and return.
    pub fn spawn<F, Fut>(&self, name: impl Into<String>, worker: F) -> JoinHandle<Fut::Output>
    where
        F: FnOnce(ShutdownToken) -> Fut,
        Fut: Future + Send + 'static,
        Fut::Output: Send + 'static,
    {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, name.into());
        let registration = Registration {
            id,
            running: Arc::clone(&self.running),
        };
        let future = worker(self.token());
        self.tracker.spawn(async move {
            let _registration = registration;
            future.await
        })
    }

    /// The token workers receive; also usable by work not spawned here.
    pub fn token(&self) -> ShutdownToken {
        self.stopping.clone()
    }

    /// Workers still running.
    pub fn len(&self) -> usize {
        self.tracker.len()
    }

    /// Whether no worker is running.
    pub fn is_empty(&self) -> bool {
        self.tracker.is_empty()
    }

    /// Names of the workers still running.
    pub fn running(&self) -> Vec<String> {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    pub(crate) fn tracker(&self) -> &TaskTracker {
        &self.tracker
    }
}

/// Removes a worker's name when its task ends, however it ends.
struct Registration {
    id: u64,
    running: Arc<Mutex<BTreeMap<u64, String>>>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}
