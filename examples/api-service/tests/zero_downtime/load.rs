//! A closed-loop load generator that counts every answer: 2xx, other statuses, socket errors,
//! and which version answered (`X-Service-Version`).

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::task::JoinHandle;

use crate::timeline;

/// What the requests are.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    /// `GET /` (optionally with `X-Canary: true`).
    Get { canary: bool },
    /// `POST /api/users` with a new user each time.
    Post,
}

#[derive(Debug, Default, Clone)]
pub(crate) struct Tally {
    pub(crate) ok: u64,
    pub(crate) statuses: BTreeMap<u16, u64>,
    pub(crate) errors: u64,
    pub(crate) versions: BTreeMap<String, u64>,
    pub(crate) samples: Vec<String>,
}

impl Tally {
    pub(crate) fn failures(&self) -> u64 {
        self.statuses.values().sum::<u64>() + self.errors
    }

    pub(crate) fn total(&self) -> u64 {
        self.ok + self.failures()
    }

    pub(crate) fn merge(&mut self, other: Self) {
        self.ok += other.ok;
        self.errors += other.errors;
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        for (version, n) in other.versions {
            *self.versions.entry(version).or_default() += n;
        }
        self.samples.extend(other.samples);
        self.samples.truncate(2);
    }

    /// The share of answers from `version`.
    pub(crate) fn share(&self, version: &str) -> f64 {
        let answered: u64 = self.versions.values().sum();
        #[allow(clippy::cast_precision_loss)]
        let share = self.versions.get(version).copied().unwrap_or(0) as f64 / answered.max(1) as f64;
        share
    }
}

pub(crate) struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<Tally>>,
}

static NEXT_USER: AtomicU64 = AtomicU64::new(0);

impl Load {
    /// `concurrency` clients sending to `base` until stopped: each with its own pool of
    /// keep-alive connections, or (`keep_alive: false`) a new connection per request.
    pub(crate) fn start(base: &str, concurrency: usize, kind: Kind, keep_alive: bool) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..concurrency)
            .map(|_| {
                let (stop, base) = (Arc::clone(&stop), base.to_owned());
                tokio::spawn(async move {
                    let mut client = reqwest::Client::builder().timeout(Duration::from_secs(10));
                    if !keep_alive {
                        client = client.pool_max_idle_per_host(0);
                    }
                    let client = client.build().expect("client");
                    let mut tally = Tally::default();
                    while !stop.load(Ordering::Relaxed) {
                        record(&mut tally, send(request(&client, &base, kind)).await);
                    }
                    tally
                })
            })
            .collect();
        Self { stop, tasks }
    }

    /// `clients` clients sending `kind` to `base` over pooled keep-alive connections, each
    /// waiting `gap` ± `jitter` (uniformly) after every answer: low-rate clients whose idle
    /// gaps straddle a timeout, as a proxy's pooled upstream connections see them.
    pub(crate) fn paced(base: &str, clients: usize, kind: Kind, gap: Duration, jitter: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..clients)
            .map(|_| {
                let (stop, base) = (Arc::clone(&stop), base.to_owned());
                tokio::spawn(async move {
                    let client = reqwest::Client::builder()
                        .timeout(Duration::from_secs(10))
                        .pool_idle_timeout(Duration::from_secs(90))
                        .build()
                        .expect("client");
                    let mut tally = Tally::default();
                    while !stop.load(Ordering::Relaxed) {
                        record(&mut tally, send(request(&client, &base, kind)).await);
                        let spread = jitter.as_secs_f64() * (2.0 * fastrand::f64() - 1.0);
                        tokio::time::sleep(Duration::from_secs_f64((gap.as_secs_f64() + spread).max(0.0))).await;
                    }
                    tally
                })
            })
            .collect();
        Self { stop, tasks }
    }

    pub(crate) async fn stop(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        let mut tally = Tally::default();
        for task in self.tasks {
            tally.merge(task.await.expect("load task"));
        }
        tally
    }
}

/// The next request of `kind`.
fn request(client: &reqwest::Client, base: &str, kind: Kind) -> reqwest::RequestBuilder {
    match kind {
        Kind::Get { canary } => {
            let request = client.get(format!("{base}/"));
            if canary {
                request.header("x-canary", "true")
            } else {
                request
            }
        }
        Kind::Post => {
            let n = NEXT_USER.fetch_add(1, Ordering::Relaxed);
            let user = format!("load{}-{n}", std::process::id());
            client
                .post(format!("{base}/api/users"))
                .header("content-type", "application/json")
                .body(format!(
                    r#"{{"username":"{user}","email":"{user}@example.com","preferences":{{}}}}"#
                ))
        }
    }
}

/// Send and read the whole body: a body cut short is a failure too.
async fn send(request: reqwest::RequestBuilder) -> reqwest::Result<(reqwest::StatusCode, Option<String>)> {
    let response = request.send().await?;
    let status = response.status();
    let version = response
        .headers()
        .get("x-service-version")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    response.bytes().await?;
    Ok((status, version))
}

fn record(tally: &mut Tally, result: reqwest::Result<(reqwest::StatusCode, Option<String>)>) {
    match result {
        Ok((status, version)) => {
            let outcome = if status.is_success() {
                timeline::Outcome::Ok
            } else {
                timeline::Outcome::Status
            };
            timeline::record(version.as_deref(), outcome);
            if let Some(version) = version {
                *tally.versions.entry(version).or_default() += 1;
            }
            if status.is_success() {
                tally.ok += 1;
            } else {
                *tally.statuses.entry(status.as_u16()).or_default() += 1;
                if tally.samples.len() < 3 {
                    tally.samples.push(format!("HTTP {status}"));
                }
            }
        }
        Err(error) => {
            timeline::record(None, timeline::Outcome::Socket);
            tally.errors += 1;
            if tally.samples.len() < 3 {
                tally.samples.push(format!("{error:?}"));
            }
        }
    }
}

/// What [`sticky_users`] saw.
pub(crate) struct Sticky {
    pub(crate) tally: Tally,
    /// Users whose first answer came from `version`.
    pub(crate) landed: u64,
    pub(crate) users: u64,
    /// Answers from another version than the user's first one.
    pub(crate) flips: u64,
}

/// `users` browser-like clients, `concurrency` at a time, each sending `requests` GETs and
/// returning the cookies it was given (Traefik's sticky cookie): which version each user landed
/// on (counting those on `version`), and whether any later answer came from another one.
pub(crate) async fn sticky_users(base: &str, users: u64, requests: u64, concurrency: u64, version: &str) -> Sticky {
    let next = Arc::new(AtomicU64::new(0));
    let tasks: Vec<JoinHandle<(Tally, u64, u64)>> = (0..concurrency)
        .map(|_| {
            let (next, base, version) = (Arc::clone(&next), base.to_owned(), version.to_owned());
            tokio::spawn(async move {
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .expect("client");
                let (mut tally, mut landed, mut flips) = (Tally::default(), 0, 0);
                while next.fetch_add(1, Ordering::Relaxed) < users {
                    let (mut cookie, mut first) = (None::<String>, None::<String>);
                    for _ in 0..requests {
                        let mut request = client.get(format!("{base}/"));
                        if let Some(cookie) = &cookie {
                            request = request.header("cookie", cookie);
                        }
                        let answer = request.send().await;
                        if let Ok(response) = &answer {
                            for set in response.headers().get_all("set-cookie") {
                                if let Some(pair) = set.to_str().ok().and_then(|s| s.split(';').next()) {
                                    cookie = Some(pair.to_owned());
                                }
                            }
                        }
                        let answer = match answer {
                            Ok(response) => {
                                let status = response.status();
                                let answered = response
                                    .headers()
                                    .get("x-service-version")
                                    .and_then(|v| v.to_str().ok())
                                    .map(str::to_owned);
                                response.bytes().await.map(|_| (status, answered))
                            }
                            Err(error) => Err(error),
                        };
                        if let Ok((_, Some(answered))) = &answer {
                            match &first {
                                None => {
                                    landed += u64::from(*answered == version);
                                    first = Some(answered.clone());
                                }
                                Some(first) if first != answered => flips += 1,
                                Some(_) => {}
                            }
                        }
                        record(&mut tally, answer);
                    }
                }
                (tally, landed, flips)
            })
        })
        .collect();
    let mut sticky = Sticky {
        tally: Tally::default(),
        landed: 0,
        users,
        flips: 0,
    };
    for task in tasks {
        let (tally, landed, flips) = task.await.expect("sticky user task");
        sticky.tally.merge(tally);
        sticky.landed += landed;
        sticky.flips += flips;
    }
    sticky
}
