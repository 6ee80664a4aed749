//! The probe routes driven in-process with `tower::ServiceExt::oneshot`.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::time::Duration;

use axum::{Router, body::Body, routing::get};
use cutover_health::{
    ErrorDetails, HealthRegistry, Outcome, Phase, Registration, check_fn,
    testing::{Behavior, ScriptedCheck, StaticCheck, probe, send},
};
use http::{Method, Request, StatusCode, header};
use serde_json::json;

fn get_with(path: &str, name: header::HeaderName, value: &str) -> Request<Body> {
    Request::get(path).header(name, value).body(Body::empty()).unwrap()
}

async fn started(registry: &HealthRegistry) -> Router {
    registry.mark_started();
    registry.refresh().await;
    registry.router()
}

/// The routes for an address only operators reach: every detail shown.
async fn started_admin(registry: &HealthRegistry) -> Router {
    registry.mark_started();
    registry.refresh().await;
    registry.admin_router()
}

#[tokio::test]
async fn status_codes_follow_the_overall_status() {
    // healthy
    let healthy = HealthRegistry::builder()
        .check("db", StaticCheck::healthy())
        .build()
        .unwrap();
    let response = probe(&started(&healthy).await, "/health").await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.json["status"], "healthy");

    // degraded: only a non-critical check fails
    let degraded = HealthRegistry::builder()
        .check("db", StaticCheck::healthy())
        .register(Registration::new("upstream", StaticCheck::failing("502 Bad Gateway")).non_critical())
        .build()
        .unwrap();
    let app = started(&degraded).await;
    let response = probe(&app, "/health").await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.json["status"], "degraded");
    assert_eq!(response.json["checks"]["upstream"]["status"], "unhealthy");
    assert_eq!(response.json["checks"]["upstream"]["critical"], false);
    assert_eq!(probe(&app, "/health/ready").await.status, StatusCode::OK);

    // unhealthy: a critical check fails
    let unhealthy = HealthRegistry::builder()
        .check("db", StaticCheck::failing("connection refused"))
        .build()
        .unwrap();
    let app = started(&unhealthy).await;
    let response = probe(&app, "/health").await;
    assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.json["status"], "unhealthy");
    let ready = probe(&app, "/health/ready").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        ready.json,
        json!({
            "status": "not_ready",
            "phase": "ready",
            "reason": "critical checks failing",
            "failed_checks": ["db"],
        })
    );
    // liveness never looks at dependencies
    let live = probe(&app, "/health/live").await;
    assert_eq!(live.status, StatusCode::OK);
    assert_eq!(live.json["status"], "alive");
}

#[tokio::test]
async fn full_report_has_the_documented_shape() {
    let registry = HealthRegistry::builder()
        .version("1.3.0")
        .check("db", StaticCheck::healthy())
        .check("cache", StaticCheck::failing("timeout talking to cache"))
        .build()
        .unwrap();
    let app = started_admin(&registry).await;
    let body = probe(&app, "/health").await.json;
    for key in [
        "status",
        "timestamp",
        "uptime_seconds",
        "ready",
        "phase",
        "version",
        "checks",
    ] {
        assert!(body.get(key).is_some(), "missing {key} in {body}");
    }
    assert_eq!(body["version"], "1.3.0");
    assert_eq!(body["ready"], false);
    let db = &body["checks"]["db"];
    for key in [
        "status",
        "duration_ms",
        "critical",
        "consecutive_failures",
        "last_success",
        "last_error",
        "last_checked",
    ] {
        assert!(db.get(key).is_some(), "missing {key} in {db}");
    }
    assert_eq!(db["last_error"], serde_json::Value::Null);
    let cache = &body["checks"]["cache"];
    assert_eq!(cache["last_error"], "timeout talking to cache");
    assert_eq!(cache["failure"], "error");
    assert_eq!(cache["consecutive_failures"], 1);
    assert_eq!(cache["last_success"], serde_json::Value::Null);
    assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn before_the_first_round_checks_are_pending_and_probes_fail() {
    let registry = HealthRegistry::builder()
        .check("db", StaticCheck::new(Behavior::Hang))
        .background(Duration::from_secs(3600))
        .build()
        .unwrap();
    registry.mark_started();
    let app = registry.router();
    let response = probe(&app, "/health").await;
    assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.json["checks"]["db"]["status"], "pending");
    let ready = probe(&app, "/health/ready").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        ready.json["reason"],
        "health checks have not completed their first round"
    );
    assert_eq!(
        probe(&app, "/health/startup").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn startup_probe_latches_and_liveness_survives_draining() {
    let (db, script) = ScriptedCheck::healthy();
    let registry = HealthRegistry::builder().check("db", db).build().unwrap();
    let app = registry.router();
    registry.refresh().await;

    let startup = probe(&app, "/health/startup").await;
    assert_eq!(startup.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        startup.json,
        json!({"status": "starting", "reason": "startup work has not completed"})
    );
    assert_eq!(probe(&app, "/health/ready").await.json["phase"], "starting");

    registry.mark_started();
    let startup = probe(&app, "/health/startup").await;
    assert_eq!(startup.status, StatusCode::OK);
    assert_eq!(startup.json["status"], "started");

    script.fail("down");
    registry.refresh().await;
    assert_eq!(probe(&app, "/health/startup").await.status, StatusCode::OK, "latched");

    script.heal();
    registry.refresh().await;
    assert_eq!(probe(&app, "/health/ready").await.status, StatusCode::OK);
    registry.lifecycle().advance_to(Phase::Draining);
    let ready = probe(&app, "/health/ready").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.json["phase"], "draining");
    let live = probe(&app, "/health/live").await;
    assert_eq!(live.status, StatusCode::OK);
    assert_eq!(live.json["phase"], "draining");
}

#[tokio::test]
async fn head_requests_get_the_status_without_a_body() {
    // A startup check too, so that every probe but liveness fails.
    let registry = HealthRegistry::builder()
        .register(
            Registration::new("db", StaticCheck::failing("down"))
                .probes([cutover_health::Probe::Readiness, cutover_health::Probe::Startup]),
        )
        .build()
        .unwrap();
    let app = started(&registry).await;
    for (path, expected) in [
        ("/health", StatusCode::SERVICE_UNAVAILABLE),
        ("/health/ready", StatusCode::SERVICE_UNAVAILABLE),
        ("/health/live", StatusCode::OK),
        ("/health/startup", StatusCode::SERVICE_UNAVAILABLE),
    ] {
        let request = Request::builder()
            .method(Method::HEAD)
            .uri(path)
            .body(Body::empty())
            .unwrap();
        let response = send(&app, request).await;
        assert_eq!(response.status, expected, "HEAD {path}");
        assert_eq!(response.json, serde_json::Value::Null, "HEAD {path} has no body");
        assert_eq!(response.headers[header::CACHE_CONTROL], "no-store");
    }
}

#[tokio::test]
async fn every_response_is_uncacheable_json() {
    let registry = HealthRegistry::builder()
        .check("db", StaticCheck::healthy())
        .build()
        .unwrap();
    let app = started(&registry).await;
    for path in ["/health", "/health/ready", "/health/live", "/health/startup"] {
        let response = probe(&app, path).await;
        assert_eq!(response.headers[header::CACHE_CONTROL], "no-store", "{path}");
        assert_eq!(response.headers[header::CONTENT_TYPE], "application/json", "{path}");
    }
}

#[tokio::test]
async fn health_json_accept_header_selects_the_ietf_shape() {
    let registry = HealthRegistry::builder()
        .version("2.1.0")
        .check("db", StaticCheck::healthy())
        .register(Registration::new("upstream", StaticCheck::failing("502")).non_critical())
        .check("memory", StaticCheck::new(Behavior::Degraded("85% used".into())))
        .error_details(ErrorDetails::always())
        .build()
        .unwrap();
    let app = started(&registry).await;
    let accept = "application/health+json, application/json;q=0.5";
    let response = send(&app, get_with("/health", header::ACCEPT, accept)).await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.headers[header::CONTENT_TYPE], "application/health+json");
    let body = response.json;
    assert_eq!(body["status"], "warn");
    assert_eq!(body["version"], "2.1.0");
    assert_eq!(body["checks"]["db"][0]["status"], "pass");
    assert_eq!(body["checks"]["db"][0]["observedUnit"], "ms");
    assert_eq!(body["checks"]["upstream"][0]["status"], "fail");
    assert_eq!(body["checks"]["upstream"][0]["output"], "502");
    assert_eq!(body["checks"]["memory"][0]["status"], "warn");
    assert_eq!(body["checks"]["memory"][0]["output"], "85% used");

    let ready = send(
        &app,
        get_with("/health/ready", header::ACCEPT, "application/health+json"),
    )
    .await;
    assert_eq!(ready.json, json!({"status": "pass"}));
    let live = send(
        &app,
        get_with("/health/live", header::ACCEPT, "application/health+json"),
    )
    .await;
    assert_eq!(live.json, json!({"status": "pass"}));
}

#[tokio::test]
async fn secrets_never_appear_in_any_response() {
    let registry = HealthRegistry::builder()
        .check(
            "db",
            check_fn(|_| async { Err("cannot connect to postgres://svc:Tr0ub4dor@db.internal:5432/app".into()) }),
        )
        .check(
            "bot",
            check_fn(|_| async { Err("telegram rejected token 98765:SECRET-bot-token".into()) }),
        )
        .redact("98765:SECRET-bot-token")
        .error_details(ErrorDetails::always())
        .build()
        .unwrap();
    let app = started(&registry).await;
    for accept in ["application/json", "application/health+json"] {
        for path in ["/health", "/health/ready", "/health/startup"] {
            let response = send(&app, get_with(path, header::ACCEPT, accept)).await;
            let text = response.json.to_string();
            assert!(
                !text.contains("Tr0ub4dor") && !text.contains("SECRET-bot-token"),
                "{path}: {text}"
            );
        }
    }
    let body = probe(&app, "/health").await.json;
    assert_eq!(
        body["checks"]["db"]["last_error"],
        "cannot connect to postgres://svc:***@db.internal:5432/app"
    );
    assert_eq!(body["checks"]["bot"]["last_error"], "telegram rejected token ***");
}

#[tokio::test]
async fn details_are_private_by_default_and_shown_on_the_admin_routes() {
    let registry = HealthRegistry::builder()
        .check("db", StaticCheck::failing("connection refused by db.internal:5432"))
        .check(
            "disk",
            check_fn(|_| async {
                Ok(Outcome::degraded("/var/lib/app has 9137 MiB left").with_observed(json!(9137), "MiB"))
            }),
        )
        .build()
        .unwrap();
    let public = started(&registry).await;
    for accept in ["application/json", "application/health+json"] {
        let text = send(&public, get_with("/health", header::ACCEPT, accept))
            .await
            .json
            .to_string();
        for secret in ["db.internal", "/var/lib/app", "9137"] {
            assert!(!text.contains(secret), "{accept} shows {secret}: {text}");
        }
    }
    let anonymous = probe(&public, "/health").await.json;
    assert_eq!(
        anonymous["checks"]["db"]["status"], "unhealthy",
        "statuses stay visible"
    );
    assert_eq!(anonymous["checks"]["disk"]["status"], "degraded");
    assert_eq!(anonymous["checks"]["db"]["last_error"], "hidden");
    assert!(anonymous["checks"]["disk"].get("message").is_none());
    assert!(anonymous["checks"]["disk"].get("observed_value").is_none());

    let admin = started_admin(&registry).await;
    let operator = probe(&admin, "/health").await.json;
    assert_eq!(
        operator["checks"]["db"]["last_error"],
        "connection refused by db.internal:5432"
    );
    assert_eq!(operator["checks"]["disk"]["message"], "/var/lib/app has 9137 MiB left");
    assert_eq!(operator["checks"]["disk"]["observed_value"], 9137);
    // The probes are the same on both.
    assert_eq!(probe(&admin, "/health/live").await.status, StatusCode::OK);
    assert_eq!(
        probe(&admin, "/health/ready").await.json,
        probe(&public, "/health/ready").await.json
    );
}

#[tokio::test]
async fn error_text_can_be_restricted_to_a_bearer_token() {
    let registry = HealthRegistry::builder()
        .check("db", StaticCheck::failing("relation \"users\" does not exist"))
        .error_details(ErrorDetails::bearer_token("ops-token"))
        .build()
        .unwrap();
    let app = started(&registry).await;

    let anonymous = probe(&app, "/health").await.json;
    assert_eq!(
        anonymous["checks"]["db"]["status"], "unhealthy",
        "statuses stay visible"
    );
    assert_eq!(anonymous["checks"]["db"]["last_error"], "hidden");

    let wrong = send(&app, get_with("/health", header::AUTHORIZATION, "Bearer nope"))
        .await
        .json;
    assert_eq!(wrong["checks"]["db"]["last_error"], "hidden");

    let operator = send(&app, get_with("/health", header::AUTHORIZATION, "Bearer ops-token"))
        .await
        .json;
    assert_eq!(
        operator["checks"]["db"]["last_error"],
        "relation \"users\" does not exist"
    );
}

#[tokio::test]
async fn tag_groups_report_only_their_checks() {
    let registry = HealthRegistry::builder()
        .register(Registration::new("db", StaticCheck::healthy()).tag("storage"))
        .register(Registration::new("cache", StaticCheck::failing("down")).tag("storage"))
        .check("upstream", StaticCheck::healthy())
        .build()
        .unwrap();
    let app = started(&registry).await;
    let storage = probe(&app, "/health/group/storage").await;
    assert_eq!(storage.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(storage.json["group"], "storage");
    let mut names: Vec<_> = storage.json["checks"].as_object().unwrap().keys().cloned().collect();
    names.sort();
    assert_eq!(names, ["cache", "db"]);

    let unknown = probe(&app, "/health/group/nope").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.headers[header::CONTENT_TYPE], "application/problem+json");
    assert_eq!(unknown.json["detail"], "no health check carries the tag `nope`");
}

#[tokio::test]
async fn routes_merge_into_an_application_router_with_state_and_other_prefixes() {
    #[derive(Clone)]
    struct AppState {
        greeting: &'static str,
    }
    let registry = HealthRegistry::builder()
        .check("db", StaticCheck::healthy())
        .build()
        .unwrap();
    registry.mark_started();
    registry.refresh().await;
    let app: Router = Router::new()
        .route(
            "/",
            get(|axum::extract::State(state): axum::extract::State<AppState>| async move { state.greeting }),
        )
        .merge(registry.router())
        .merge(registry.router_at("/internal/healthz/"))
        .with_state(AppState { greeting: "hi" });
    assert_eq!(probe(&app, "/health/ready").await.status, StatusCode::OK);
    assert_eq!(probe(&app, "/internal/healthz/ready").await.status, StatusCode::OK);
    assert_eq!(probe(&app, "/internal/healthz").await.json["status"], "healthy");
}

#[tokio::test]
async fn a_probe_storm_in_background_mode_runs_no_checks() {
    let (db, script) = ScriptedCheck::healthy();
    let registry = HealthRegistry::builder().check("db", db).build().unwrap();
    let app = started(&registry).await;
    let runs_before = script.runs();
    let probes: Vec<_> = (0..1000)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { probe(&app, "/health/ready").await.status })
        })
        .collect();
    for probe in probes {
        assert_eq!(probe.await.unwrap(), StatusCode::OK);
    }
    // The scheduler's own first round may run once; probes add nothing.
    assert!(script.runs() <= runs_before + 1, "{} runs", script.runs());
}
