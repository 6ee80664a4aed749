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
            assert_eq!(
                pod["automountServiceAccountToken"].as_bool(),
                Some(false),
                "{file} {name}: no service needs the Kubernetes API"
            );
            assert_eq!(
                pod["securityContext"]["runAsNonRoot"].as_bool(),
                Some(true),
                "{file} {name}"
            );
            assert_eq!(
                pod["securityContext"]["seccompProfile"]["type"].as_str(),
                Some("RuntimeDefault"),
                "{file} {name}"
            );
            for container in pod["containers"].as_sequence().unwrap() {
                let image = container["image"].as_str().unwrap();
                assert!(image_is_pinned(image), "{file} {name}: image {image} has no fixed tag");
                let security = &container["securityContext"];
                assert_eq!(
                    security["readOnlyRootFilesystem"].as_bool(),
                    Some(true),
                    "{file} {name}"
                );
                assert_eq!(
                    security["allowPrivilegeEscalation"].as_bool(),
                    Some(false),
                    "{file} {name}"
                );
                assert_eq!(
                    security["capabilities"]["drop"].as_sequence().map(Vec::as_slice),
                    Some(&[Value::from("ALL")][..]),
                    "{file} {name}"
                );
                assert!(
                    !container["resources"]["limits"]["memory"].is_null(),
                    "{file} {name}: memory limit"
                );
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
                    // The default (1 s) turns one slow answer under load into a failed probe.
                    let timeout = container[probe]["timeoutSeconds"].as_u64();
                    assert!(
                        timeout.is_some_and(|t| (2..=5).contains(&t)),
                        "{file} {name}: {probe} timeoutSeconds {timeout:?}"
                    );
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
                // The version answered in X-Service-Version is the one the release labelled.
                let version = container["env"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .find(|e| e["name"].as_str() == Some("SERVICE_VERSION"))
                    .unwrap_or_else(|| panic!("{file} {name}: SERVICE_VERSION"));
                assert_eq!(
                    version["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
                    Some("metadata.labels['app.kubernetes.io/version']"),
                    "{file} {name}: SERVICE_VERSION follows the release's version label"
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

#[test]
fn the_rollout_stands_beside_the_deployment_and_judges_the_canary_by_its_errors() {
    let deployment = &documents("kubernetes/api-service.yaml")[0];
    let rollout = documents("kubernetes/argo/api-service-rollout.yaml");
    let (template, analysis) = (&rollout[0], &rollout[1]);
    assert_eq!(template["kind"].as_str(), Some("Rollout"));
    assert_ne!(
        template["metadata"]["name"], deployment["metadata"]["name"],
        "the Rollout has its own name"
    );
    let pod = |d: &Value| d["spec"]["template"]["spec"].clone();
    assert_eq!(pod(template)["securityContext"], pod(deployment)["securityContext"]);
    assert_eq!(
        pod(template)["containers"][0]["securityContext"],
        pod(deployment)["containers"][0]["securityContext"]
    );
    assert_eq!(analysis["kind"].as_str(), Some("AnalysisTemplate"));
    let queries: Vec<&str> = analysis["spec"]["metrics"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|m| m["provider"]["prometheus"]["query"].as_str().unwrap())
        .collect();
    assert!(
        queries
            .iter()
            .any(|q| q.contains("http_requests_total") && q.contains("status=~\"5..\""))
    );
    assert!(
        queries
            .iter()
            .any(|q| q.contains("http_request_duration_seconds_bucket"))
    );
    assert!(
        queries
            .iter()
            .all(|q| q.contains("service_version=\"{{args.canary-version}}\""))
    );
    // The kustomize base names the files that exist, and the migration Job is not in it.
    let base = &documents("kubernetes/kustomization.yaml")[0];
    let resources: Vec<&str> = base["resources"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(
        resources,
        ["api-service.yaml", "worker-service.yaml", "bot-service.yaml"]
    );
    assert!(!read("kubernetes/migrate-job.yaml").to_lowercase().contains("cronjob"));
}

/// The steps of a workflow job, by name, in order.
fn steps(workflow: &Value, job: &str) -> Vec<(String, String)> {
    workflow["jobs"][job]["steps"]
        .as_sequence()
        .unwrap_or_else(|| panic!("job {job}"))
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or_default().to_owned(),
                s["run"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[test]
fn the_release_migrates_around_one_apply_and_contracts_after_the_old_pods_and_an_approval() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../.github/workflows/release.yml")).unwrap();
    let workflow: Value = serde_yaml_ng::from_str(&text).unwrap();
    assert!(
        !text.contains("kubectl set image"),
        "the tag is rendered before the apply"
    );
    let deploy = steps(&workflow, "deploy");
    let position = |what: &str| {
        deploy
            .iter()
            .position(|(_, run)| run.contains(what))
            .unwrap_or_else(|| panic!("deploy runs {what}"))
    };
    let render = position("kubectl kustomize");
    let expand = position("migrate-phase.sh expand");
    let apply = position("kubectl apply -f release/manifests.yaml");
    let backfill = position("migrate-phase.sh backfill");
    assert!(render < expand && expand < apply && apply < backfill, "{deploy:#?}");
    let (_, rendered) = &deploy[render];
    assert!(rendered.contains("newTag: \\\"$VERSION\\\""), "{rendered}");
    assert!(
        rendered.contains("app.kubernetes.io/version: \\\"$VERSION\\\""),
        "{rendered}"
    );
    assert!(
        !deploy.iter().any(|(_, run)| run.contains("migrate-phase.sh contract")),
        "contract never runs in the job that deploys"
    );

    let contract = &workflow["jobs"]["contract"];
    let needs: Vec<&str> = contract["needs"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert!(needs.contains(&"deploy"));
    assert_eq!(
        contract["environment"].as_str(),
        Some("production-contract"),
        "a person approves"
    );
    let contract = steps(&workflow, "contract");
    let wait = contract
        .iter()
        .position(|(_, run)| run.contains("kubectl wait --for=delete pod") && run.contains("version!=$VERSION"))
        .expect("contract waits for the old pods");
    let migrate = contract
        .iter()
        .position(|(_, run)| run.contains("migrate-phase.sh contract"))
        .expect("contract runs the contract phase");
    assert!(wait < migrate);

    let release = steps(&workflow, "release");
    assert!(!release.is_empty());
    let publish = workflow["jobs"]["release"]["steps"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("softprops/action-gh-release"))
        })
        .unwrap();
    assert_eq!(publish["with"]["target_commitish"].as_str(), Some("${{ github.sha }}"));
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
        // "Started and live", never readiness: Swarm restarts unhealthy tasks.
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
    assert!(
        documents("swarm/stack.yml")[0]["services"]["nginx"]["ports"]
            .as_sequence()
            .is_some_and(|ports| !ports.is_empty()),
        "nginx is the stack's entry point"
    );

    let stack = &documents("swarm/stack.yml")[0];
    let declared = stack["secrets"].as_mapping().unwrap();
    for (name, service) in stack["services"].as_mapping().unwrap() {
        assert_eq!(service["read_only"].as_bool(), Some(true), "{name:?}: read-only root");
        assert_eq!(
            service["cap_drop"].as_sequence().map(Vec::as_slice),
            Some(&[Value::from("ALL")][..]),
            "{name:?}"
        );
        assert!(
            !service["deploy"]["resources"]["limits"]["memory"].is_null(),
            "{name:?}: memory limit"
        );
        if let Some(environment) = service["environment"].as_mapping() {
            for (key, value) in environment {
                let key = key.as_str().unwrap();
                assert!(
                    !["DATABASE_URL", "AMQP_URL", "MONGODB_URL", "REDIS_URL", "BOT_TOKEN"].contains(&key),
                    "{name:?}: {key} as plain environment; use {key}_FILE and a Docker secret"
                );
                if let Some(secret) = key.strip_suffix("_FILE") {
                    let file = value.as_str().unwrap();
                    let secret_name = file.strip_prefix("/run/secrets/").expect("a Docker secret");
                    assert!(
                        declared.contains_key(secret_name),
                        "{name:?}: {secret} from an undeclared secret"
                    );
                    let mounted = service["secrets"].as_sequence().unwrap();
                    assert!(
                        mounted.iter().any(|m| m.as_str() == Some(secret_name)),
                        "{name:?}: {secret_name} not mounted"
                    );
                }
            }
        }
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
    for (file, weighted) in [("blue-green/dynamic/api.yml", "api"), ("canary/dynamic/api.yml", "api")] {
        let dynamic = &documents(file)[0];
        let service = &dynamic["http"]["services"][weighted]["weighted"];
        assert!(
            service["healthCheck"].is_mapping(),
            "{file}: the weighted service propagates its children's health (healthCheck: {{}})"
        );
    }
    let canary = &documents("canary/dynamic/api.yml")[0];
    assert!(
        canary["http"]["services"]["api"]["weighted"]["sticky"]["cookie"]["name"].is_string(),
        "a canary user stays on the version they landed on"
    );
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
    let nginx = read("nginx/nginx.conf.template");
    assert!(!nginx.contains("non_idempotent"), "POST is never retried");
    assert!(nginx.contains("include upstream.conf;"));
    assert!(
        nginx.contains("listen ${NGINX_LISTEN};"),
        "the one variable envsubst fills"
    );
}

/// The text of a PromQL query with its whitespace collapsed.
fn promql(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn promote_sh_asks_prometheus_what_the_argo_analysis_asks() {
    let analysis = &documents("kubernetes/argo/api-service-rollout.yaml")[1];
    let script = read("canary/promote.sh");
    let queries: Vec<String> = analysis["spec"]["metrics"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|m| m["provider"]["prometheus"]["query"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(queries.len(), 2);
    // The script's queries as bash writes them: `\"` for quotes, $CANARY and $WINDOW for the
    // template's argument and window.
    let script = promql(&script.replace("\\\"", "\""));
    for query in queries {
        let expected = promql(
            &query
                .replace("{{args.canary-version}}", "$CANARY")
                .replace("[1m]", "[$WINDOW]"),
        );
        assert!(script.contains(&expected), "promote.sh does not ask:\n{expected}");
    }
}

/// Run the shipped `kubernetes/migrate-phase.sh` with `args`.
fn migrate_phase(envs: &[(&str, &str)], args: &[&str]) -> (Option<i32>, String, String) {
    let output = std::process::Command::new("bash")
        .arg(deploy().join("kubernetes/migrate-phase.sh"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn migrate_phase_renders_one_job_per_phase_and_refuses_what_it_cannot_name() {
    for phase in ["expand", "backfill", "contract"] {
        let (code, job, stderr) = migrate_phase(&[("VERSION", "1.4.0-rc.1"), ("DRY_RUN", "1")], &[phase]);
        assert_eq!(code, Some(0), "{stderr}");
        let job: Value = serde_yaml_ng::from_str(&job).unwrap();
        assert_eq!(
            job["metadata"]["name"].as_str(),
            Some(format!("api-service-migrate-1-4-0-rc-1-{phase}").as_str())
        );
        let container = &job["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(
            container["image"].as_str(),
            Some("ghcr.io/cutover-rs/api-service:1.4.0-rc.1")
        );
        let args: Vec<&str> = container["args"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(args, ["migrate", "--phase", phase]);
    }
    let (code, _, stderr) = migrate_phase(&[("VERSION", "1.4.0")], &["drop"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("unknown phase 'drop'"), "{stderr}");
    let (code, _, stderr) = migrate_phase(&[("VERSION", "1.4;rm -rf /")], &["expand"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("not a version"), "{stderr}");
    let (code, _, stderr) = migrate_phase(&[], &["expand"]);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("VERSION"), "{stderr}");
}
