//! The timing contract of every deployment file in `examples/deploy/`: the probes point at
//! paths the health router really serves, the orchestrator waits long enough for the drain and
//! the shutdown timeout before it kills (grace period >= preStop + drain + timeout + margin),
//! rolling updates start the new instance first, and production files pin image tags.
//!
//! The validators (`scripts/validate-deploy.sh`) check that the files are well-formed; this
//! checks that they say the right thing.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize as _;
use serde_yaml_ng::Value;
use tower::ServiceExt as _;

/// What a process needs after SIGTERM beyond drain + timeout: hooks, exit, slack.
const MARGIN: Duration = Duration::from_secs(5);

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/deploy")
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(deploy().join(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

fn documents(relative: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(&read(relative))
        .map(|document| {
            let mut value = Value::deserialize(document).unwrap();
            value.apply_merge().unwrap(); // `<<: *anchor`
            value
        })
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn duration(value: &Value) -> Duration {
    match value {
        Value::Number(n) => Duration::from_secs(n.as_u64().unwrap()),
        Value::String(s) => humantime::parse_duration(s).unwrap_or_else(|e| panic!("{s:?}: {e}")),
        other => panic!("not a duration: {other:?}"),
    }
}

/// The value of `name` in a Kubernetes container's `env` list.
fn k8s_env(container: &Value, name: &str) -> Option<Duration> {
    container["env"]
        .as_sequence()?
        .iter()
        .find(|e| e["name"].as_str() == Some(name))
        .map(|e| duration(&e["value"]))
}

/// The paths cutover's health router answers (anything but 404).
async fn served(path: &str) -> bool {
    let router = cutover_health::HealthRegistry::builder().build().unwrap().router();
    let request = axum::http::Request::get(path).body(axum::body::Body::empty()).unwrap();
    router.oneshot(request).await.unwrap().status() != axum::http::StatusCode::NOT_FOUND
}

fn image_is_pinned(image: &str) -> bool {
    let tag = image.rsplit_once(':').map(|(_, tag)| tag);
    matches!(tag, Some(tag) if tag != "latest" && !tag.contains('/'))
}

/// Every Deployment-like pod template in a Kubernetes file: (kind/name, pod spec).
fn pod_specs(documents: &[Value]) -> Vec<(String, Value)> {
    documents
        .iter()
        .filter(|d| matches!(d["kind"].as_str(), Some("Deployment" | "Rollout" | "Job")))
        .map(|d| {
            let name = format!(
                "{}/{}",
                d["kind"].as_str().unwrap(),
                d["metadata"]["name"].as_str().unwrap()
            );
            (name, d["spec"]["template"]["spec"].clone())
        })
        .collect()
}

#[tokio::test]
async fn kubernetes_probes_grace_periods_and_rollouts_fit_the_shutdown() {
    let files = [
        "kubernetes/api-service.yaml",
        "kubernetes/worker-service.yaml",
        "kubernetes/bot-service.yaml",
        "kubernetes/migrate-job.yaml",
        "kubernetes/argo/api-service-rollout.yaml",
    ];
    let mut checked = 0;
    for file in files {
        let documents = documents(file);
        for document in &documents {
            match document["kind"].as_str() {
                Some("Deployment") => {
                    let rolling = &document["spec"]["strategy"]["rollingUpdate"];
                    assert_eq!(rolling["maxUnavailable"].as_u64(), Some(0), "{file}: maxUnavailable 0");
                    assert!(rolling["maxSurge"].as_u64().unwrap_or(0) >= 1, "{file}: surge first");
                }
                Some("Rollout") => {
                    let canary = &document["spec"]["strategy"]["canary"];
                    assert_eq!(canary["maxUnavailable"].as_u64(), Some(0), "{file}");
                    assert!(
                        canary["steps"]
                            .as_sequence()
                            .unwrap()
                            .iter()
                            .any(|s| !s["analysis"].is_null()),
                        "{file}: the canary is analysed before it is promoted"
                    );
                }
                _ => {}
            }
        }
        for (name, pod) in pod_specs(&documents) {
            for container in pod["containers"].as_sequence().unwrap() {
                let image = container["image"].as_str().unwrap();
                assert!(image_is_pinned(image), "{file} {name}: image {image} has no fixed tag");
                if name.starts_with("Job/") {
                    continue;
                }
                for (probe, path) in [
                    ("readinessProbe", "/health/ready"),
                    ("livenessProbe", "/health/live"),
                    ("startupProbe", "/health/startup"),
                ] {
                    let configured = container[probe]["httpGet"]["path"].as_str();
                    assert_eq!(configured, Some(path), "{file} {name}: {probe}");
                    assert!(served(path).await, "{path} is served by the health router");
                }
                if image.contains("/api-service:")
                    && container["securityContext"]["readOnlyRootFilesystem"].as_bool() == Some(true)
                {
                    // api-service always opens its embedded SQLite file: it must be writable.
                    let sqlite = container["env"]
                        .as_sequence()
                        .unwrap()
                        .iter()
                        .find(|e| e["name"].as_str() == Some("SQLITE_PATH"))
                        .and_then(|e| e["value"].as_str())
                        .unwrap_or_else(|| panic!("{file} {name}: SQLITE_PATH on a read-only root"));
                    let mounted = container["volumeMounts"].as_sequence().is_some_and(|mounts| {
                        mounts
                            .iter()
                            .any(|m| m["mountPath"].as_str().is_some_and(|path| sqlite.starts_with(path)))
                    });
                    assert!(mounted, "{file} {name}: {sqlite} is not on a mounted volume");
                }
                let grace = Duration::from_secs(pod["terminationGracePeriodSeconds"].as_u64().unwrap());
                let pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
                    .as_u64()
                    .map_or(Duration::ZERO, Duration::from_secs);
                let drain = k8s_env(container, "SHUTDOWN_DRAIN_DELAY").expect("drain delay set explicitly");
                let timeout = k8s_env(container, "SHUTDOWN_TIMEOUT").expect("shutdown timeout set explicitly");
                assert!(
                    grace >= pre_stop + drain + timeout + MARGIN,
                    "{file} {name}: grace {grace:?} < preStop {pre_stop:?} + drain {drain:?} + timeout {timeout:?} + {MARGIN:?}"
                );
                if let Some(own) = k8s_env(container, "SHUTDOWN_GRACE_PERIOD") {
                    assert!(
                        own + pre_stop <= grace,
                        "{file} {name}: the process's own budget outlasts the pod's"
                    );
                }
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 4, "api, worker and bot Deployments, api Rollout");
}

/// `stop_grace_period` against the drain delay and timeout of each service in a compose file.
fn compose_services_fit(file: &str) -> usize {
    let compose = &documents(file)[0];
    let mut checked = 0;
    for (name, service) in compose["services"].as_mapping().unwrap() {
        let name = name.as_str().unwrap();
        let image = service["image"].as_str().unwrap_or_default();
        if !image.contains("cutover-rs") {
            continue;
        }
        assert!(!image.ends_with(":latest"), "{file} {name}: {image}");
        let environment = &service["environment"];
        let drain = duration(&environment["SHUTDOWN_DRAIN_DELAY"]);
        let timeout = duration(&environment["SHUTDOWN_TIMEOUT"]);
        let grace = duration(&service["stop_grace_period"]);
        assert!(
            grace >= drain + timeout + MARGIN,
            "{file} {name}: stop_grace_period {grace:?} < drain {drain:?} + timeout {timeout:?} + {MARGIN:?}"
        );
        assert_eq!(service["stop_signal"].as_str(), Some("SIGTERM"), "{file} {name}");
        let test = service["healthcheck"]["test"].as_sequence().unwrap();
        assert_eq!(
            test.last().and_then(Value::as_str),
            Some("healthcheck"),
            "{file} {name}"
        );
        checked += 1;
    }
    checked
}

#[test]
fn compose_and_swarm_files_stop_no_sooner_than_the_drain_allows() {
    assert_eq!(compose_services_fit("blue-green/compose.yml"), 2);
    assert_eq!(compose_services_fit("canary/compose.yml"), 2);
    assert_eq!(compose_services_fit("swarm/stack.yml"), 3);

    let stack = &documents("swarm/stack.yml")[0];
    for (name, service) in stack["services"].as_mapping().unwrap() {
        let deploy = &service["deploy"];
        assert_eq!(
            deploy["update_config"]["order"].as_str(),
            Some("start-first"),
            "{name:?}"
        );
        assert_eq!(
            deploy["update_config"]["failure_action"].as_str(),
            Some("rollback"),
            "{name:?}"
        );
        assert_eq!(
            deploy["rollback_config"]["order"].as_str(),
            Some("start-first"),
            "{name:?}"
        );
    }

    for file in ["blue-green/dynamic/api.yml", "canary/dynamic/api.yml"] {
        let dynamic = &documents(file)[0];
        for (name, service) in dynamic["http"]["services"].as_mapping().unwrap() {
            if let Some(check) = service["loadBalancer"]["healthCheck"].as_mapping() {
                let check = Value::Mapping(check.clone());
                assert_eq!(check["path"].as_str(), Some("/health/ready"), "{file} {name:?}");
                assert!(
                    duration(&check["interval"]) <= Duration::from_secs(2),
                    "{file} {name:?}: checks too slow for drains"
                );
            }
        }
    }
    let canary = &documents("canary/dynamic/api.yml")[0];
    let weights: Vec<u64> = canary["http"]["services"]["api"]["weighted"]["services"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|s| s["weight"].as_u64().unwrap())
        .collect();
    assert_eq!(weights, [90, 10]);
}

#[test]
fn dockerfiles_run_unprivileged_check_themselves_and_stop_on_sigterm() {
    for service in ["api-service", "worker-service", "bot-service"] {
        let file = read(&format!("docker/{service}.Dockerfile"));
        let has = |line: &str| file.lines().any(|l| l.trim() == line);
        assert!(has("STOPSIGNAL SIGTERM"), "{service}");
        assert!(has("USER 65532:65532"), "{service}");
        assert!(
            file.contains(&format!("CMD [\"/usr/local/bin/{service}\", \"healthcheck\"]")),
            "{service}"
        );
        for from in file.lines().filter(|l| l.starts_with("FROM ")) {
            let image = from.split_whitespace().nth(1).unwrap();
            assert!(image_is_pinned(image), "{service}: {from}");
            // The build stage's compiler is at least the declared minimum Rust version, or
            // `docker build` fails on a dependency that needs it.
            if let Some(tag) = image.strip_prefix("rust:") {
                let compiler = version_prefix(tag);
                assert!(
                    compiler >= minimum_rust_version(),
                    "{service}: {image} is older than the workspace's rust-version"
                );
            }
        }
    }
}

/// `1.95` from `1.95-bookworm` or `1.95.0-slim`, as (major, minor).
fn version_prefix(text: &str) -> (u32, u32) {
    let mut parts = text
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap());
    (parts.next().unwrap(), parts.next().unwrap())
}

/// The root `Cargo.toml`'s `rust-version`.
fn minimum_rust_version() -> (u32, u32) {
    let manifest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml")).unwrap();
    let line = manifest
        .lines()
        .find_map(|line| line.strip_prefix("rust-version = \""))
        .expect("the workspace declares rust-version");
    version_prefix(line)
}

#[tokio::test]
async fn proxies_check_readiness_and_never_retry_what_may_have_run() {
    let haproxy = read("haproxy/haproxy.cfg");
    assert!(haproxy.contains("option httpchk GET /health/ready"));
    assert!(served("/health/ready").await);
    assert!(
        haproxy.contains("retry-on conn-failure empty-response"),
        "retries only before a request ran"
    );
    let nginx = read("nginx/nginx.conf");
    assert!(!nginx.contains("non_idempotent"), "POST is never retried");
    assert!(nginx.contains("include upstream.conf;"));
}
