//! The registry: which checks exist, how they are scheduled, and the verdict of each probe.

use std::{
    collections::HashSet,
    fmt,
    sync::{
        Arc, Weak,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use cutover_core::{Lifecycle, Phase};
use tokio::sync::{Mutex, watch};

use crate::{
    Check,
    check::DynCheck,
    probe::{Liveness, Readiness, StartupStatus},
    redact::Redactor,
    runner::run_round,
    snapshot::{Snapshot, Status},
};

/// Default time a check may take before it counts as failed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default time between two rounds in background mode.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// Default time between rounds while a check is failing, in background mode.
pub const DEFAULT_FAILING_INTERVAL: Duration = Duration::from_secs(2);
/// Default reuse window of a round in on-demand mode.
pub const DEFAULT_TTL: Duration = Duration::from_secs(1);

/// A probe a check can take part in. Liveness is deliberately absent: a dependency being down
/// is never a reason to restart this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Probe {
    /// `/health/ready`: should this instance receive traffic now?
    Readiness,
    /// `/health/startup`: has this instance finished starting? Latched once it has.
    Startup,
}

/// How and when checks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mode {
    /// Every check runs every `interval` (± jitter) in a background task; probes read the
    /// latest snapshot and never touch a dependency themselves. The default.
    Background {
        /// Time between the end of one round and the start of the next, before jitter.
        interval: Duration,
    },
    /// Checks run when a probe asks and the last round is older than `ttl`; concurrent probes
    /// share one round (single flight).
    OnDemand {
        /// How long a round's results are reused.
        ttl: Duration,
    },
}

/// Who may see details in health responses: error text, check messages and observed values
/// (memory figures, disk paths). Statuses are always visible.
///
/// The default is [`never`](Self::never): a public `/health` tells anyone whether each check
/// passes, and nothing about the machine. Give operators a token with
/// [`bearer_token`](Self::bearer_token), or serve
/// [`admin_router`](HealthRegistry::admin_router) on an address only they reach.
#[derive(Clone, Default)]
pub struct ErrorDetails {
    policy: DetailPolicy,
}

#[derive(Clone, Default)]
enum DetailPolicy {
    Always,
    #[default]
    Never,
    Token(Arc<str>),
}

impl ErrorDetails {
    /// Show details (redacted error text, messages, observed values) to everyone: only for
    /// registries whose routes no outsider can reach.
    pub fn always() -> Self {
        Self {
            policy: DetailPolicy::Always,
        }
    }

    /// Never show details; checks still report their status (the default).
    pub fn never() -> Self {
        Self::default()
    }

    /// Show error text only to requests carrying `Authorization: Bearer <token>`.
    pub fn bearer_token(token: impl Into<String>) -> Self {
        Self {
            policy: DetailPolicy::Token(token.into().into()),
        }
    }

    /// Whether a request with this `Authorization` header value may see error text.
    pub fn allows(&self, authorization: Option<&[u8]>) -> bool {
        match &self.policy {
            DetailPolicy::Always => true,
            DetailPolicy::Never => false,
            DetailPolicy::Token(token) => authorization
                .and_then(|value| value.strip_prefix(b"Bearer "))
                .is_some_and(|given| constant_time_eq(given, token.as_bytes())),
        }
    }
}

impl fmt::Debug for ErrorDetails {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let policy = match self.policy {
            DetailPolicy::Always => "always",
            DetailPolicy::Never => "never",
            DetailPolicy::Token(_) => "bearer token",
        };
        f.debug_tuple("ErrorDetails").field(&policy).finish()
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A registered check and its options.
pub(crate) struct Entry {
    pub(crate) name: Arc<str>,
    pub(crate) check: Arc<dyn DynCheck>,
    pub(crate) critical: bool,
    pub(crate) timeout: Duration,
    pub(crate) readiness: bool,
    pub(crate) startup: bool,
    pub(crate) tags: Vec<Arc<str>>,
}

impl Entry {
    pub(crate) fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| &**t == tag)
    }
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("name", &self.name)
            .field("critical", &self.critical)
            .field("timeout", &self.timeout)
            .field("readiness", &self.readiness)
            .field("startup", &self.startup)
            .field("tags", &self.tags)
            .finish_non_exhaustive()
    }
}

/// One check with its options, ready to be added with [`HealthRegistryBuilder::register`].
///
/// ```
/// use std::time::Duration;
/// use cutover_health::{check_fn, Outcome, Probe, Registration};
///
/// let cache = Registration::new("cache", check_fn(|_| async { Ok(Outcome::healthy()) }))
///     .non_critical()
///     .timeout(Duration::from_millis(500))
///     .probes([Probe::Readiness])
///     .tag("storage");
/// # drop(cache);
/// ```
#[must_use = "a Registration does nothing until it is passed to HealthRegistryBuilder::register"]
pub struct Registration {
    entry: Entry,
}

impl Registration {
    /// Register `check` as `name`: critical unless the check says otherwise
    /// ([`Check::critical_by_default`]), 2 s timeout, part of the readiness probe.
    ///
    /// Not part of the startup probe unless [`probes`](Self::probes) says so: a dependency
    /// that is down when the process starts must not fail the startup probe, which would turn
    /// an outage into a crash loop that outlasts it by the restart back-off. The instance
    /// starts, answers 503 on readiness, and becomes ready when the dependency is back.
    pub fn new(name: impl Into<String>, check: impl Check) -> Self {
        let critical = check.critical_by_default();
        Self {
            entry: Entry {
                name: name.into().into(),
                check: Arc::new(check),
                critical,
                timeout: DEFAULT_TIMEOUT,
                readiness: true,
                startup: false,
                tags: Vec::new(),
            },
        }
    }

    /// Whether a failure fails readiness and makes the service unhealthy.
    pub fn critical(mut self, critical: bool) -> Self {
        self.entry.critical = critical;
        self
    }

    /// Shorthand for `critical(false)`: a failure only makes the service degraded.
    pub fn non_critical(self) -> Self {
        self.critical(false)
    }

    /// How long one run may take before it counts as failed.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.entry.timeout = timeout;
        self
    }

    /// The probes this check takes part in (default: readiness only). Add
    /// [`Probe::Startup`] for a check that must pass once before the instance counts as
    /// started (a warm cache, a local file it cannot run without), never for a dependency
    /// that can be down while the instance waits for it. An empty set keeps the check in
    /// `/health` and its tag groups only.
    pub fn probes(mut self, probes: impl IntoIterator<Item = Probe>) -> Self {
        let probes: Vec<Probe> = probes.into_iter().collect();
        self.entry.readiness = probes.contains(&Probe::Readiness);
        self.entry.startup = probes.contains(&Probe::Startup);
        self
    }

    /// Add the check to a custom group, served at `/health/group/<tag>`.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.entry.tags.push(tag.into().into());
        self
    }
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.entry.fmt(f)
    }
}

/// A registry that could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// Two checks were registered under the same name.
    #[error("health check `{0}` is registered twice; check names must be unique")]
    DuplicateName(String),
    /// A check was registered with an empty or blank name.
    #[error("a health check was registered with an empty name")]
    EmptyName,
    /// A check name contains characters that do not belong in a URL or a metric label.
    #[error("health check name `{0}` may only contain letters, digits, `_`, `-`, `.` and `:`")]
    InvalidName(String),
    /// A check was given a zero timeout.
    #[error("health check `{0}` has a zero timeout")]
    ZeroTimeout(String),
    /// A check was added to a registry that is already shared or running.
    #[error(
        "cannot add health check `{0}`: the registry was cloned or has started checking; add it before cloning or serving"
    )]
    InUse(String),
    /// A zero interval or TTL.
    #[error("the health-check {0} must be greater than zero")]
    ZeroSchedule(&'static str),
    /// Jitter outside `0.0..=0.5`.
    #[error("jitter must be between 0.0 and 0.5, got {0}")]
    InvalidJitter(f64),
}

/// Builds a [`HealthRegistry`]. Created by [`HealthRegistry::builder`].
#[must_use]
pub struct HealthRegistryBuilder {
    entries: Vec<Entry>,
    mode: Mode,
    failing_interval: Duration,
    jitter: f64,
    stale_after: Option<Duration>,
    lifecycle: Option<Lifecycle>,
    version: Option<String>,
    details: ErrorDetails,
    redactor: Redactor,
    liveness_timeout: Duration,
}

impl HealthRegistryBuilder {
    /// Register `check` as `name` with default options. See [`Registration`] for the options.
    pub fn check(self, name: impl Into<String>, check: impl Check) -> Self {
        self.register(Registration::new(name, check))
    }

    /// Register a check with its options.
    pub fn register(mut self, registration: Registration) -> Self {
        self.entries.push(registration.entry);
        self
    }

    /// Run checks in the background every `interval` (default 10 s). Probes read the latest
    /// results.
    pub fn background(mut self, interval: Duration) -> Self {
        self.mode = Mode::Background { interval };
        self
    }

    /// Run checks when probed, reusing results for `ttl` (single flight).
    pub fn on_demand(mut self, ttl: Duration) -> Self {
        self.mode = Mode::OnDemand { ttl };
        self
    }

    /// Time between rounds in background mode while any check is failing (default 2 s, capped
    /// at the interval). Recovery is seen within seconds, not a whole interval later, and a
    /// dependency that is down only gets one cheap check every few seconds per replica.
    pub fn failing_interval(mut self, interval: Duration) -> Self {
        self.failing_interval = interval;
        self
    }

    /// Spread background rounds by ± this fraction of the interval (default 0.1), so replicas
    /// started together do not probe their database in lockstep.
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.jitter = fraction;
        self
    }

    /// Treat results older than this as failed (default: 3 intervals plus the longest check
    /// timeout). Protects against a scheduler that stopped without anyone noticing.
    pub fn stale_after(mut self, age: Duration) -> Self {
        self.stale_after = Some(age);
        self
    }

    /// Share a lifecycle with the shutdown manager, so readiness closes when draining starts.
    /// Without one, the registry creates its own.
    pub fn lifecycle(mut self, lifecycle: Lifecycle) -> Self {
        self.lifecycle = Some(lifecycle);
        self
    }

    /// The service version shown in reports.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    /// Who may see error text and system details (default: nobody; see [`ErrorDetails`]).
    pub fn error_details(mut self, details: ErrorDetails) -> Self {
        self.details = details;
        self
    }

    /// Mask this exact value wherever it appears in check errors, on top of the built-in
    /// patterns for URLs, `password=` and tokens.
    pub fn redact(mut self, secret: impl Into<String>) -> Self {
        self.redactor.add_secret(secret);
        self
    }

    /// How long `/health/live` waits for the runtime to run a trivial task before it reports
    /// the process as wedged (default 500 ms, half of Kubernetes' default probe timeout).
    pub fn liveness_timeout(mut self, timeout: Duration) -> Self {
        self.liveness_timeout = timeout;
        self
    }

    /// Validate the registrations and build the registry. Does not start anything: the
    /// background scheduler starts with [`HealthRegistry::spawn`] or on the first probe.
    pub fn build(self) -> Result<HealthRegistry, BuildError> {
        let mut names = HashSet::new();
        for entry in &self.entries {
            validate(entry, &mut names)?;
        }
        match self.mode {
            Mode::Background { interval } if interval.is_zero() => return Err(BuildError::ZeroSchedule("interval")),
            Mode::OnDemand { ttl } if ttl.is_zero() => return Err(BuildError::ZeroSchedule("TTL")),
            _ if self.failing_interval.is_zero() => return Err(BuildError::ZeroSchedule("failing interval")),
            _ => {}
        }
        if !(0.0..=0.5).contains(&self.jitter) {
            return Err(BuildError::InvalidJitter(self.jitter));
        }
        if let Some(Duration::ZERO) = self.stale_after {
            return Err(BuildError::ZeroSchedule("staleness limit"));
        }

        let longest_timeout = self.entries.iter().map(|e| e.timeout).max().unwrap_or(DEFAULT_TIMEOUT);
        let stale_after = self.stale_after.unwrap_or(match self.mode {
            Mode::Background { interval } => interval * 3 + longest_timeout,
            // On demand, a probe refreshes anything older than the TTL itself.
            Mode::OnDemand { .. } => Duration::MAX,
        });
        let (latest, _) = watch::channel(None);
        Ok(HealthRegistry {
            inner: Arc::new(Inner {
                entries: self.entries.into_iter().map(Arc::new).collect(),
                mode: self.mode,
                failing_interval: self.failing_interval,
                jitter: self.jitter,
                stale_after,
                lifecycle: self.lifecycle.unwrap_or_default(),
                version: self.version,
                details: self.details,
                redactor: self.redactor,
                liveness_timeout: self.liveness_timeout,
                latest,
                rounds: Mutex::new(0),
                startup_work_done: AtomicBool::new(false),
                startup_latched: AtomicBool::new(false),
                scheduler_started: AtomicBool::new(false),
            }),
        })
    }
}

/// A registration's name (non-empty, URL- and label-safe, not in `names`) and timeout.
fn validate<'a>(entry: &'a Entry, names: &mut HashSet<&'a str>) -> Result<(), BuildError> {
    let name = entry.name.trim();
    if name.is_empty() {
        return Err(BuildError::EmptyName);
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
    {
        return Err(BuildError::InvalidName(entry.name.to_string()));
    }
    if !names.insert(name) {
        return Err(BuildError::DuplicateName(name.to_owned()));
    }
    if entry.timeout.is_zero() {
        return Err(BuildError::ZeroTimeout(name.to_owned()));
    }
    Ok(())
}

impl fmt::Debug for HealthRegistryBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthRegistryBuilder")
            .field("entries", &self.entries)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// The health-check registry. Cheap to clone; clones share checks, results and lifecycle.
///
/// ```
/// use std::time::Duration;
/// use cutover_health::{check_fn, HealthRegistry, Outcome, Registration};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let registry = HealthRegistry::builder()
///     .check("database", check_fn(|_| async { Ok(Outcome::healthy()) }))
///     .register(Registration::new("cache", check_fn(|_| async { Err("cache down".into()) })).non_critical())
///     .background(Duration::from_secs(10))
///     .build()
///     .expect("valid registrations");
///
/// // Startup work (migrations, warm-up) done: readiness now follows the checks.
/// registry.mark_started();
/// registry.refresh().await;
///
/// let readiness = registry.readiness().await;
/// assert!(readiness.is_ready(), "a non-critical failure does not block traffic");
/// assert_eq!(registry.latest().await.unwrap().status(), cutover_health::Status::Degraded);
/// # }
/// ```
#[derive(Clone)]
pub struct HealthRegistry {
    inner: Arc<Inner>,
}

struct Inner {
    entries: Vec<Arc<Entry>>,
    mode: Mode,
    failing_interval: Duration,
    jitter: f64,
    stale_after: Duration,
    lifecycle: Lifecycle,
    version: Option<String>,
    details: ErrorDetails,
    redactor: Redactor,
    liveness_timeout: Duration,
    latest: watch::Sender<Option<Arc<Snapshot>>>,
    /// Held while a round runs, so rounds never overlap and history stays consistent; holds
    /// the number of rounds run.
    rounds: Mutex<u64>,
    startup_work_done: AtomicBool,
    startup_latched: AtomicBool,
    scheduler_started: AtomicBool,
}

impl HealthRegistry {
    /// Start building a registry.
    pub fn builder() -> HealthRegistryBuilder {
        HealthRegistryBuilder {
            entries: Vec::new(),
            mode: Mode::Background {
                interval: DEFAULT_INTERVAL,
            },
            failing_interval: DEFAULT_FAILING_INTERVAL,
            jitter: 0.1,
            stale_after: None,
            lifecycle: None,
            version: None,
            details: ErrorDetails::default(),
            redactor: Redactor::new(),
            liveness_timeout: Duration::from_millis(500),
        }
    }

    /// Add a check to a registry built earlier, before it is cloned or started: how a
    /// framework adds the checks of what it wires in (`cutover::Service` adds its instance
    /// registration's). Fails with [`BuildError::InUse`] once the registry is shared or
    /// checking, and for the same reasons as [`HealthRegistryBuilder::build`].
    ///
    /// ```
    /// use cutover_health::{check_fn, HealthRegistry, Outcome, Registration};
    ///
    /// let mut registry = HealthRegistry::builder().build().unwrap();
    /// registry.add(Registration::new("queue", check_fn(|_| async { Ok(Outcome::healthy()) }))).unwrap();
    /// assert_eq!(registry.check_names().collect::<Vec<_>>(), ["queue"]);
    /// let _clone = registry.clone();
    /// assert!(registry.add(Registration::new("other", check_fn(|_| async { Ok(Outcome::healthy()) }))).is_err());
    /// ```
    pub fn add(&mut self, registration: Registration) -> Result<(), BuildError> {
        let name = registration.entry.name.to_string();
        let Some(inner) = Arc::get_mut(&mut self.inner) else {
            return Err(BuildError::InUse(name));
        };
        if inner.scheduler_started.load(Ordering::Acquire) {
            return Err(BuildError::InUse(name));
        }
        let mut names: HashSet<&str> = inner.entries.iter().map(|e| e.name.trim()).collect();
        validate(&registration.entry, &mut names)?;
        inner.entries.push(Arc::new(registration.entry));
        Ok(())
    }

    /// The lifecycle readiness follows.
    pub fn lifecycle(&self) -> &Lifecycle {
        &self.inner.lifecycle
    }

    /// The scheduling mode.
    pub fn mode(&self) -> Mode {
        self.inner.mode
    }

    /// The service version shown in reports, if set.
    pub fn version(&self) -> Option<&str> {
        self.inner.version.as_deref()
    }

    /// Who may see error text.
    pub fn error_details(&self) -> &ErrorDetails {
        &self.inner.details
    }

    /// Names of the registered checks, in registration order.
    pub fn check_names(&self) -> impl Iterator<Item = &str> {
        self.inner.entries.iter().map(|entry| &*entry.name)
    }

    /// Whether any check carries `tag`.
    pub fn has_tag(&self, tag: &str) -> bool {
        self.inner.entries.iter().any(|entry| entry.has_tag(tag))
    }

    /// Declare startup work (migrations, cache warm-up, ...) done. Moves the lifecycle from
    /// `Starting` to `Ready`; readiness then follows the critical checks, and the startup probe
    /// latches once the startup checks have passed.
    pub fn mark_started(&self) {
        self.inner.startup_work_done.store(true, Ordering::Release);
        self.inner.lifecycle.mark_ready();
        let latest = self.inner.latest.borrow().clone();
        self.inner.startup_pending(latest.as_deref());
    }

    /// Start the background scheduler if the registry is in background mode and it is not
    /// running yet. Idempotent. Must be called inside a tokio runtime; the probe routes call it
    /// on first use, so forgetting it delays the first round but never disables checks.
    ///
    /// The scheduler stops by itself when the last clone of the registry is dropped.
    pub fn spawn(&self) {
        let Mode::Background { interval } = self.inner.mode else {
            return;
        };
        if self.inner.scheduler_started.swap(true, Ordering::AcqRel) {
            return;
        }
        if self.inner.entries.is_empty() {
            // Nothing to check: publish the one (empty, healthy) round there will ever be,
            // and keep no timer running for nothing.
            let inner = Arc::clone(&self.inner);
            tokio::spawn(async move { inner.refresh_if_older_than(Duration::ZERO).await });
            return;
        }
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(schedule(weak, interval));
    }

    /// Run every check now, publish the results, and return them. Waits for a round already
    /// running to finish first; rounds never overlap.
    pub async fn refresh(&self) -> Arc<Snapshot> {
        self.inner.refresh_if_older_than(Duration::ZERO).await
    }

    /// The latest results without running anything, or `None` before the first round ends.
    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.inner.latest.borrow().clone()
    }

    /// Results fit for answering a probe: in background mode, the latest snapshot (starting
    /// the scheduler if needed); in on-demand mode, a round no older than the TTL, shared with
    /// every probe that asks at the same time.
    pub async fn latest(&self) -> Option<Arc<Snapshot>> {
        match self.inner.mode {
            Mode::Background { .. } => {
                self.spawn();
                self.snapshot()
            }
            Mode::OnDemand { ttl } => {
                if let Some(snapshot) = self.snapshot().filter(|s| s.age() < ttl) {
                    return Some(snapshot);
                }
                // Run the round in its own task: if the probe that started it goes away, the
                // round still completes for the probes waiting on it.
                let inner = Arc::clone(&self.inner);
                match tokio::spawn(async move { inner.refresh_if_older_than(ttl).await }).await {
                    Ok(snapshot) => Some(snapshot),
                    Err(error) => {
                        tracing::error!(%error, "health-check round failed");
                        self.snapshot()
                    }
                }
            }
        }
    }

    /// A receiver that sees every published snapshot: the hook for status listeners.
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<Snapshot>>> {
        self.inner.latest.subscribe()
    }

    /// The readiness verdict: ready when the lifecycle is `Ready` and no critical readiness
    /// check fails in fresh results.
    pub async fn readiness(&self) -> Readiness {
        let snapshot = self.latest().await;
        self.readiness_of(snapshot.as_deref())
    }

    pub(crate) fn readiness_of(&self, snapshot: Option<&Snapshot>) -> Readiness {
        let phase = self.inner.lifecycle.phase();
        let critical = |probe_member: fn(&Entry) -> bool| {
            self.inner
                .entries
                .iter()
                .filter(move |entry| entry.critical && probe_member(entry))
        };
        let all_critical = || critical(|e| e.readiness).map(|e| e.name.to_string()).collect();
        let failed_checks: Vec<String> = match snapshot {
            None => all_critical(),
            Some(snapshot) if self.is_stale(snapshot) => all_critical(),
            Some(snapshot) => snapshot
                .checks
                .iter()
                .filter(|state| state.entry.critical && state.entry.readiness && state.status == Status::Unhealthy)
                .map(|state| state.name().to_owned())
                .collect(),
        };
        let reason = match (phase, snapshot) {
            (Phase::Starting, _) => Some("starting: startup work has not completed".to_owned()),
            (phase, _) if phase.is_shutting_down() => Some(format!("{phase}: the service is shutting down")),
            (_, None) => Some("health checks have not completed their first round".to_owned()),
            (_, Some(snapshot)) if self.is_stale(snapshot) => Some(format!(
                "health results are stale: last round finished {} ago",
                humantime::format_duration(round_to_millis(snapshot.age()))
            )),
            (_, Some(_)) if !failed_checks.is_empty() => Some("critical checks failing".to_owned()),
            _ => None,
        };
        Readiness {
            phase,
            reason,
            failed_checks,
        }
    }

    /// The startup verdict. Latched: once startup has completed it stays completed.
    pub async fn startup(&self) -> StartupStatus {
        if self.inner.startup_latched.load(Ordering::Acquire) {
            return StartupStatus {
                started: true,
                reason: None,
            };
        }
        let snapshot = self.latest().await;
        self.startup_of(snapshot.as_deref())
    }

    pub(crate) fn startup_of(&self, snapshot: Option<&Snapshot>) -> StartupStatus {
        let reason = self.inner.startup_pending(snapshot);
        StartupStatus {
            started: reason.is_none(),
            reason,
        }
    }

    /// The liveness verdict: alive unless the async runtime cannot run a trivial task within
    /// the liveness timeout. Never looks at dependencies.
    pub async fn liveness(&self) -> Liveness {
        let responsive = tokio::time::timeout(self.inner.liveness_timeout, tokio::spawn(async {}))
            .await
            .is_ok_and(|joined| joined.is_ok());
        Liveness {
            alive: responsive,
            phase: self.inner.lifecycle.phase(),
            uptime: self.inner.lifecycle.uptime(),
        }
    }

    /// Whether `snapshot` is too old to trust. Never, for a registry without checks.
    pub fn is_stale(&self, snapshot: &Snapshot) -> bool {
        !self.inner.entries.is_empty() && snapshot.age() > self.inner.stale_after
    }

    pub(crate) fn inner_entries(&self) -> &[Arc<Entry>] {
        &self.inner.entries
    }
}

impl fmt::Debug for HealthRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthRegistry")
            .field("checks", &self.inner.entries)
            .field("mode", &self.inner.mode)
            .field("phase", &self.inner.lifecycle.phase())
            .finish_non_exhaustive()
    }
}

impl Inner {
    /// Why startup has not completed, or `None` (and the startup probe latches) when it has.
    /// Judged after every check round too, not only when the startup probe is asked: a
    /// container health check that first asks after a dependency went away must still find
    /// the startup that completed before.
    fn startup_pending(&self, snapshot: Option<&Snapshot>) -> Option<String> {
        if self.startup_latched.load(Ordering::Acquire) {
            return None;
        }
        let reason = if !self.startup_work_done.load(Ordering::Acquire) {
            Some("startup work has not completed".to_owned())
        } else {
            match snapshot {
                None => Some("health checks have not completed their first round".to_owned()),
                Some(snapshot) => {
                    let failing: Vec<&str> = snapshot
                        .checks
                        .iter()
                        .filter(|s| s.entry.critical && s.entry.startup && s.status == Status::Unhealthy)
                        .map(|s| s.name())
                        .collect();
                    (!failing.is_empty()).then(|| format!("startup checks failing: {}", failing.join(", ")))
                }
            }
        };
        if reason.is_none() {
            self.startup_latched.store(true, Ordering::Release);
        }
        reason
    }

    async fn refresh_if_older_than(&self, max_age: Duration) -> Arc<Snapshot> {
        let mut rounds = self.rounds.lock().await;
        let previous = self.latest.borrow().clone();
        if let Some(snapshot) = previous.as_ref().filter(|s| !max_age.is_zero() && s.age() < max_age) {
            return Arc::clone(snapshot);
        }
        *rounds += 1;
        let snapshot = Arc::new(run_round(&self.entries, previous.as_deref(), *rounds, &self.redactor).await);
        self.latest.send_replace(Some(Arc::clone(&snapshot)));
        self.startup_pending(Some(&snapshot));
        snapshot
    }
}

async fn schedule(registry: Weak<Inner>, interval: Duration) {
    loop {
        let Some(inner) = registry.upgrade() else {
            return;
        };
        let snapshot = inner.refresh_if_older_than(Duration::ZERO).await;
        let failing = snapshot.checks.iter().any(|state| state.status == Status::Unhealthy);
        let next = if failing {
            inner.failing_interval.min(interval)
        } else {
            interval
        };
        let pause = jittered(next, inner.jitter);
        // Do not keep the registry alive while sleeping.
        drop(inner);
        tokio::time::sleep(pause).await;
    }
}

fn jittered(interval: Duration, fraction: f64) -> Duration {
    if fraction == 0.0 {
        return interval;
    }
    let factor = 1.0 + fraction * (fastrand::f64() * 2.0 - 1.0);
    interval.mul_f64(factor)
}

fn round_to_millis(duration: Duration) -> Duration {
    Duration::from_millis(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_bounds() {
        for _ in 0..1000 {
            let pause = jittered(Duration::from_secs(10), 0.1);
            assert!(
                (Duration::from_secs(9)..=Duration::from_secs(11)).contains(&pause),
                "{pause:?}"
            );
        }
        assert_eq!(jittered(Duration::from_secs(10), 0.0), Duration::from_secs(10));
    }

    #[test]
    fn bearer_token_policy_compares_whole_token() {
        let details = ErrorDetails::bearer_token("s3cret");
        assert!(details.allows(Some(b"Bearer s3cret")));
        assert!(!details.allows(Some(b"Bearer s3cre")));
        assert!(!details.allows(Some(b"s3cret")));
        assert!(!details.allows(None));
        assert!(!format!("{details:?}").contains("s3cret"));
        assert!(ErrorDetails::always().allows(None));
        assert!(!ErrorDetails::never().allows(Some(b"Bearer s3cret")));
    }
}
