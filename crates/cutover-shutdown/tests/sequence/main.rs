//! The shutdown sequence under paused tokio time: every delay and timeout is exact and the
//! whole suite runs in milliseconds. Requests go through the drain layer in-process.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::{
    convert::Infallible,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, body::Body, extract::Path, routing::get};
use cutover_shutdown::{
    HookOutcome, Phase, ServerOutcome, Shutdown, ShutdownBuilder, ShutdownConfig, ShutdownReport, ShutdownToken,
    Trigger,
};
use http::{Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use tokio::{task::JoinHandle, time::Instant};
use tower::{Layer, ServiceExt};

const DRAIN: Duration = Duration::from_secs(2);
const TIMEOUT: Duration = Duration::from_secs(5);

fn app() -> Router {
    Router::new()
        .route("/", get(|| async { "ok" }))
        .route(
            "/slow/{ms}",
            get(|Path(ms): Path<u64>| async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                "done"
            }),
        )
        .route("/health/ready", get(|| async { "ready" }))
        .route(
            "/stream",
            get(|| async {
                // One chunk, then nothing, forever: an idle SSE stream.
                let chunks = futures_stream();
                Body::from_stream(chunks)
            }),
        )
        .route(
            "/until-stopping",
            get(|stop: ShutdownToken| async move {
                stop.cancelled().await;
                "wrapped up"
            }),
        )
}

fn futures_stream() -> impl futures_core::Stream<Item = Result<&'static str, Infallible>> + Send {
    struct Idle {
        sent: bool,
    }
    impl futures_core::Stream for Idle {
        type Item = Result<&'static str, Infallible>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            if self.sent {
                std::task::Poll::Pending
            } else {
                self.sent = true;
                std::task::Poll::Ready(Some(Ok("data: hello\n\n")))
            }
        }
    }
    Idle { sent: false }
}

fn config() -> ShutdownConfig {
    ShutdownConfig::default()
        .signals(false)
        .drain_delay(DRAIN)
        .shutdown_timeout(TIMEOUT)
        .grace_period(Duration::from_secs(30))
}

fn builder() -> ShutdownBuilder {
    Shutdown::builder().config(config())
}

struct Harness {
    app: cutover_shutdown::DrainService<Router>,
    handle: cutover_shutdown::ShutdownHandle,
    report: JoinHandle<ShutdownReport>,
}

fn start(shutdown: Shutdown) -> Harness {
    shutdown.lifecycle().mark_ready();
    let app = shutdown.drain_layer().layer(app());
    let handle = shutdown.handle();
    let report = tokio::spawn(shutdown.serve(|stop| async move {
        stop.await;
        Ok::<(), Infallible>(())
    }));
    Harness { app, handle, report }
}

impl Harness {
    /// The response with its body read to the end, as a server would: the request counts as
    /// in flight until then.
    async fn get(&self, path: &str) -> Response<String> {
        let response = self
            .app
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        Response::from_parts(parts, String::from_utf8_lossy(&bytes).into_owned())
    }

    fn spawn_get(&self, path: &str) -> JoinHandle<(StatusCode, Result<String, String>)> {
        let app = self.app.clone();
        let request = Request::get(path).body(Body::empty()).unwrap();
        tokio::spawn(async move {
            let response = app.oneshot(request).await.unwrap();
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
                .map_err(|e| e.to_string());
            (status, body)
        })
    }
}

async fn settle() {
    // Let spawned tasks run without advancing the clock.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn draining_serves_with_connection_close_then_stopping_refuses_but_answers_probes() {
    let harness = start(builder().build().unwrap());
    let response = harness.get("/").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers().get(header::CONNECTION).is_none(),
        "no Connection: close while ready"
    );

    let triggered = Instant::now();
    harness.handle.trigger();
    settle().await;
    assert_eq!(harness.handle.phase(), Phase::Draining);

    // Served normally for the whole drain delay, but asking clients to reconnect elsewhere.
    tokio::time::sleep(DRAIN - Duration::from_millis(1)).await;
    let response = harness.get("/").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONNECTION], "close");
    assert_eq!(harness.handle.phase(), Phase::Draining);

    let report = harness.report.await.unwrap();
    assert_eq!(harness.handle.phase(), Phase::Stopped);
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.exit_code(), 0);
    assert_eq!(report.trigger, Trigger::Programmatic);
    assert_eq!(report.phases[0].phase, Phase::Draining);
    assert_eq!(report.phases[0].duration, DRAIN);
    assert_eq!(
        triggered.elapsed(),
        DRAIN,
        "nothing in flight: straight through Stopping"
    );
}

#[tokio::test(start_paused = true)]
async fn stopping_answers_503_with_retry_after_while_in_flight_work_finishes() {
    let harness = start(builder().build().unwrap());
    let slow = harness.spawn_get("/slow/4000");
    settle().await;
    harness.handle.trigger();
    tokio::time::sleep(DRAIN + Duration::from_millis(1)).await;
    assert_eq!(harness.handle.phase(), Phase::Stopping);

    let refused = harness.get("/").await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()[header::RETRY_AFTER], "1");
    assert_eq!(refused.headers()[header::CONNECTION], "close");
    let probe = harness.get("/health/ready").await;
    assert_eq!(probe.status(), StatusCode::OK, "probe paths keep answering");

    let (status, body) = slow.await.unwrap();
    assert_eq!((status, body.unwrap().as_str()), (StatusCode::OK, "done"));
    let report = harness.report.await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.in_flight_at_stop, 1);
    assert_eq!(report.requests_rejected, 1);
    assert_eq!(report.server, ServerOutcome::Stopped);
    // The stop phase lasted as long as the slow request needed, not the whole timeout.
    assert_eq!(report.phases[1].duration, Duration::from_millis(2000));
}

#[tokio::test(start_paused = true)]
async fn a_request_longer_than_the_timeout_is_answered_503_at_the_deadline() {
    let harness = start(builder().build().unwrap());
    let stuck = harness.spawn_get("/slow/60000");
    settle().await;
    let started = Instant::now();
    harness.handle.trigger();
    let report = harness.report.await.unwrap();
    assert_eq!(started.elapsed(), DRAIN + TIMEOUT, "the deadline bounds the shutdown");
    assert_eq!(report.requests_cut, 1);
    assert!(!report.is_clean());
    assert_eq!(report.exit_code(), 1);
    let (status, _) = stuck.await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test(start_paused = true)]
async fn an_open_stream_is_cut_at_the_deadline_so_shutdown_ends_in_budget() {
    let harness = start(builder().build().unwrap());
    let stream = harness.spawn_get("/stream");
    settle().await;
    harness.handle.trigger();
    let started = Instant::now();
    let report = harness.report.await.unwrap();
    assert_eq!(started.elapsed(), DRAIN + TIMEOUT);
    assert_eq!(report.requests_cut, 1);
    let (status, body) = stream.await.unwrap();
    assert_eq!(status, StatusCode::OK, "headers went out before the cut");
    assert!(
        body.unwrap_err().contains("response cut"),
        "the body ends with the cut error"
    );
}

#[tokio::test(start_paused = true)]
async fn handlers_get_a_token_that_fires_when_stopping_begins() {
    let harness = start(builder().build().unwrap());
    let waiting = harness.spawn_get("/until-stopping");
    settle().await;
    harness.handle.trigger();
    let report = harness.report.await.unwrap();
    let (status, body) = waiting.await.unwrap();
    assert_eq!((status, body.unwrap().as_str()), (StatusCode::OK, "wrapped up"));
    assert!(
        report.is_clean(),
        "the handler wrapped up as soon as the token fired: {report:?}"
    );
    assert_eq!(report.phases[1].duration, Duration::ZERO);
}

#[tokio::test]
async fn the_token_extractor_explains_a_missing_layer() {
    let response = app()
        .oneshot(Request::get("/until-stopping").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("requires the DrainLayer"));
}

fn explode() {
    panic!("exporter gone");
}

#[tokio::test(start_paused = true)]
async fn hooks_run_in_reverse_order_each_within_its_timeout_and_failures_do_not_stop_the_rest() {
    let order = Arc::new(Mutex::new(Vec::new()));
    let record = |name: &'static str| {
        let order = Arc::clone(&order);
        move || order.lock().unwrap().push(name)
    };
    let (first, second, third, fourth, fifth) = (
        record("database"),
        record("cache"),
        record("broker"),
        record("metrics"),
        record("tracer"),
    );
    let shutdown = builder()
        .hook("database", move || async move { first() })
        .hook("cache", move || async move {
            second();
            Err::<(), _>(std::io::Error::other("connection reset"))
        })
        .hook_with_timeout("broker", Duration::from_secs(1), move || async move {
            third();
            std::future::pending::<()>().await;
        })
        .hook("metrics", move || async move {
            fourth();
            explode();
        })
        .blocking_hook("tracer", fifth)
        .build()
        .unwrap();
    let harness = start(shutdown);
    harness.handle.trigger();
    let report = harness.report.await.unwrap();

    assert_eq!(
        *order.lock().unwrap(),
        ["tracer", "metrics", "broker", "cache", "database"]
    );
    let outcomes: Vec<_> = report
        .hooks
        .iter()
        .map(|h| (h.name.as_str(), h.outcome.clone()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("tracer", HookOutcome::Completed),
            ("metrics", HookOutcome::Failed("panicked: exporter gone".into())),
            ("broker", HookOutcome::TimedOut),
            ("cache", HookOutcome::Failed("connection reset".into())),
            ("database", HookOutcome::Completed),
        ]
    );
    assert_eq!(report.hooks[2].duration, Duration::from_secs(1));
    assert!(!report.is_clean());
    assert_eq!(report.exit_code(), 1);
}

#[tokio::test(start_paused = true)]
async fn hooks_only_get_what_is_left_of_the_grace_period() {
    let hang = || async { std::future::pending::<()>().await };
    let shutdown = Shutdown::builder()
        .config(config().grace_period(Duration::from_secs(10)))
        .hook("third", hang)
        .hook("second", hang)
        .hook("first", hang)
        .build()
        .unwrap();
    let harness = start(shutdown);
    let stuck = harness.spawn_get("/slow/60000");
    settle().await;
    harness.handle.trigger();
    let started = Instant::now();
    let report = harness.report.await.unwrap();

    // 2 s drain + 5 s timeout leave 3 s: the first hook gets 3 s of its 5, the rest nothing.
    assert_eq!(started.elapsed(), Duration::from_secs(10));
    let outcomes: Vec<_> = report
        .hooks
        .iter()
        .map(|h| (h.name.as_str(), h.outcome.clone(), h.duration))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("first", HookOutcome::TimedOut, Duration::from_secs(3)),
            ("second", HookOutcome::Skipped, Duration::ZERO),
            ("third", HookOutcome::Skipped, Duration::ZERO),
        ]
    );
    drop(stuck);
}

#[tokio::test(start_paused = true)]
async fn a_second_trigger_cuts_the_sequence_short() {
    let ran = Arc::new(Mutex::new(false));
    let flag = Arc::clone(&ran);
    let shutdown = builder()
        .hook("never", move || async move {
            *flag.lock().unwrap() = true;
        })
        .build()
        .unwrap();
    let harness = start(shutdown);
    let stuck = harness.spawn_get("/slow/60000");
    settle().await;
    harness.handle.trigger();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    harness.handle.trigger();
    let report = harness.report.await.unwrap();

    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "a second trigger does not wait for anything"
    );
    assert!(report.forced);
    assert_eq!(report.requests_cut, 1);
    assert_eq!(report.hooks[0].outcome, HookOutcome::Skipped);
    assert!(!*ran.lock().unwrap());
    assert_ne!(report.exit_code(), 0);
    assert_eq!(harness.handle.phase(), Phase::Stopped);
    let (status, _) = stuck.await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test(start_paused = true)]
async fn workers_learn_about_the_stop_and_are_awaited_or_reported_abandoned() {
    let shutdown = builder().build().unwrap();
    let finished_unit = Arc::new(Mutex::new(0));
    let counter = Arc::clone(&finished_unit);
    shutdown.workers().spawn("consumer", move |stop| async move {
        while !stop.is_cancelled() {
            // A unit of work takes 300 ms and is always finished.
            tokio::time::sleep(Duration::from_millis(300)).await;
            *counter.lock().unwrap() += 1;
        }
    });
    shutdown.workers().spawn("stubborn", |_stop| async {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    });
    let harness = start(shutdown);
    harness.handle.trigger();
    let report = harness.report.await.unwrap();
    assert_eq!(report.workers_at_stop, 2);
    assert_eq!(report.workers_abandoned, ["stubborn"]);
    // Drain 2 s: units finished at 0.3, 0.6, ... 2.1 s (the one in progress at the stop).
    assert_eq!(*finished_unit.lock().unwrap(), 7);
    assert!(!report.is_clean());
}

#[tokio::test(start_paused = true)]
async fn a_worker_process_without_a_server_uses_run() {
    let shutdown = builder().config(config().drain_delay(Duration::ZERO)).build().unwrap();
    let stopped_at = Arc::new(Mutex::new(None));
    let at = Arc::clone(&stopped_at);
    shutdown.workers().spawn("job", move |stop| async move {
        stop.cancelled().await;
        *at.lock().unwrap() = Some(Instant::now());
    });
    let handle = shutdown.handle();
    let report = tokio::spawn(shutdown.run());
    settle().await;
    let triggered = Instant::now();
    handle.trigger();
    let report = report.await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(stopped_at.lock().unwrap().unwrap(), triggered);
}

#[tokio::test(start_paused = true)]
async fn a_server_that_fails_on_its_own_ends_the_service_with_hooks_run() {
    let ran = Arc::new(Mutex::new(false));
    let flag = Arc::clone(&ran);
    let shutdown = builder()
        .hook("close", move || async move {
            *flag.lock().unwrap() = true;
        })
        .build()
        .unwrap();
    let handle = shutdown.handle();
    let report = shutdown
        .serve(|_stop| async { Err::<(), _>(std::io::Error::other("address already in use")) })
        .await;
    assert_eq!(report.trigger, Trigger::ServerExited);
    assert_eq!(report.server, ServerOutcome::Failed("address already in use".into()));
    assert!(*ran.lock().unwrap(), "hooks still run");
    assert_eq!(report.exit_code(), 1);
    assert_eq!(
        report.phases[0].duration,
        Duration::ZERO,
        "no drain delay without a server"
    );
    assert!(handle.is_triggered());
}

#[tokio::test(start_paused = true)]
async fn the_report_serializes_for_logs_and_scripts() {
    let harness = start(builder().hook("flush", || async {}).build().unwrap());
    harness.handle.trigger();
    let report = harness.report.await.unwrap();
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["trigger"], "programmatic");
    assert_eq!(json["phases"][0]["phase"], "draining");
    assert_eq!(json["phases"][0]["duration_ms"], 2000.0);
    assert_eq!(json["hooks"][0]["name"], "flush");
    assert_eq!(json["hooks"][0]["outcome"], "completed");
    assert_eq!(json["server"]["outcome"], "stopped");
    assert!(json["total_ms"].as_f64().unwrap() >= 2000.0);
}

#[tokio::test]
async fn signals_need_a_runtime_and_budget_problems_are_reported() {
    let error = std::thread::spawn(|| Shutdown::builder().build().unwrap_err())
        .join()
        .unwrap();
    assert!(error.to_string().contains("inside a tokio runtime"), "{error}");
    let config = config().grace_period(Duration::from_secs(8));
    assert!(config.budget_warning(&[Duration::from_secs(5)]).is_some());
}
