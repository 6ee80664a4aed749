//! The shipped Traefik scripts (`blue-green/switch.sh`, `canary/promote.sh`) run as they are;
//! only their pluggable "start / ready / stop an instance" step differs: plain `api-service`
//! processes on loopback ports instead of Docker Compose. The hooks file is the one thing the
//! harness writes, and every process it starts is killed when the [`Hooks`] are dropped.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use cutover_tests::proxy::shipped;

use crate::instance::Timing;

const HOOKS: &str = r#"# Plain-process hooks for the shipped deploy scripts (see examples/deploy/lib/compose-hooks.sh).
# Written by the zero-downtime harness: instance NAME listens on $PORT_NAME, logs and pid files
# live in $HOOK_DIR, ENV_NAME adds environment variables.
start_instance() {
  local port_var="PORT_$1" env_var="ENV_$1"
  # shellcheck disable=SC2086 # ENV_NAME is a list of NAME=value words
  env -i PATH="$PATH" HOST=127.0.0.1 PORT="${!port_var}" SERVICE_VERSION="$2" \
    SQLITE_PATH="$HOOK_DIR/$1-$2.db" SHUTDOWN_DRAIN_DELAY="$DRAIN" SHUTDOWN_TIMEOUT="$TIMEOUT" \
    HEALTH_CHECK_INTERVAL=1s RUST_LOG=warn ${!env_var:-} \
    "$API_SERVICE_BIN" >>"$HOOK_DIR/$1.log" 2>&1 </dev/null &
  echo $! >"$HOOK_DIR/$1.pid"
}
instance_ready() {
  local port_var="PORT_$1"
  curl -fsS --max-time 1 -o /dev/null "http://127.0.0.1:${!port_var}/health/ready" 2>/dev/null
}
# Not our child once the starting shell has exited: wait until it is gone (or a zombie).
stop_instance() {
  local pid
  pid=$(cat "$HOOK_DIR/$1.pid" 2>/dev/null) || return 0
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 30))
  while [[ -e /proc/$pid ]] && [[ $(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null) != Z ]]; do
    ((SECONDS < deadline)) || { echo "api-$1 (pid $pid) still running 30s after SIGTERM" >&2; return 1; }
    sleep 0.05
  done
  rm -f "$HOOK_DIR/$1.pid"
}
"#;

/// The hooks file and the instances started through it.
pub(crate) struct Hooks {
    pub(crate) dir: PathBuf,
    file: PathBuf,
    ports: BTreeMap<String, u16>,
    envs: BTreeMap<String, String>,
    timing: Timing,
}

/// What a shipped script printed, and how it exited.
pub(crate) struct Ran {
    pub(crate) code: Option<i32>,
    pub(crate) output: String,
}

impl Hooks {
    /// Hooks for instances `names` (each on a free port), shutting down with `timing`.
    pub(crate) fn new(dir: &Path, names: &[&str], timing: Timing) -> Self {
        let dir = dir.join(format!("hooks-{}", fastrand::u32(..)));
        std::fs::create_dir_all(&dir).expect("hooks dir");
        let file = dir.join("hooks.sh");
        std::fs::write(&file, HOOKS).expect("write hooks.sh");
        let ports = names
            .iter()
            .map(|name| ((*name).to_owned(), super::instance::free_port()))
            .collect();
        Self {
            dir,
            file,
            ports,
            envs: BTreeMap::new(),
            timing,
        }
    }

    /// Extra environment for instance `name` (`INJECT_ERROR_RATE=0.2`).
    pub(crate) fn env(&mut self, name: &str, words: &str) {
        self.envs.insert(name.to_owned(), words.to_owned());
    }

    pub(crate) fn port(&self, name: &str) -> u16 {
        self.ports[name]
    }

    pub(crate) fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}", self.port(name))
    }

    fn command(&self, program: &str) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(program);
        command
            .env("DEPLOY_HOOKS", &self.file)
            .env("HOOK_DIR", &self.dir)
            .env("API_SERVICE_BIN", env!("CARGO_BIN_EXE_api-service"))
            .env("DRAIN", format!("{}ms", self.timing.drain.as_millis()))
            .env("TIMEOUT", format!("{}ms", self.timing.timeout.as_millis()))
            .kill_on_drop(true);
        for (name, port) in &self.ports {
            command.env(format!("PORT_{name}"), port.to_string());
        }
        for (name, words) in &self.envs {
            command.env(format!("ENV_{name}"), words);
        }
        command
    }

    /// `start_instance name version`, then wait for readiness.
    pub(crate) async fn start(&self, name: &str, version: &str) -> Result<(), String> {
        let ran = self
            .run_script(
                "bash",
                &[
                    "-c",
                    r#"source "$DEPLOY_HOOKS" && start_instance "$0" "$1""#,
                    name,
                    version,
                ],
                &[],
            )
            .await;
        if ran.code != Some(0) {
            return Err(format!("start_instance {name}: {}", ran.output));
        }
        let client = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while tokio::time::Instant::now() < deadline {
            let ready = client
                .get(format!("{}/health/ready", self.url(name)))
                .timeout(Duration::from_millis(500))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!("api-{name} {version} never became ready: {}", self.log(name)))
    }

    /// Run a program (a shipped script) with the hooks' environment and `extra`.
    pub(crate) async fn run_script(&self, program: &str, args: &[&str], extra: &[(&str, String)]) -> Ran {
        let mut command = self.command(program);
        command.args(args);
        for (key, value) in extra {
            command.env(key, value);
        }
        let output = command.output().await.expect("run a shipped script");
        Ran {
            code: output.status.code(),
            output: cutover_tests::output_text(&output),
        }
    }

    /// A shipped script by its path under `examples/deploy/`.
    pub(crate) async fn script(&self, relative: &str, args: &[&str], extra: &[(&str, String)]) -> Ran {
        let path = shipped(relative);
        let mut all = vec![path.to_str().expect("utf-8 path")];
        all.extend_from_slice(args);
        let name = relative.rsplit('/').next().unwrap_or(relative);
        crate::timeline::mark(name);
        let ran = self.run_script("bash", &all, extra).await;
        crate::timeline::mark(format!(
            "{name} exit {}",
            ran.code.map_or_else(|| "?".to_owned(), |c| c.to_string())
        ));
        ran
    }

    /// SIGTERM instance `name`, as an orchestrator would (without waiting).
    pub(crate) fn terminate(&self, name: &str) {
        crate::timeline::mark(format!("SIGTERM {name}"));
        if let Some(pid) = self.pid(name) {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
    }

    fn pid(&self, name: &str) -> Option<u32> {
        std::fs::read_to_string(self.dir.join(format!("{name}.pid")))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Whether instance `name`'s process is still running.
    pub(crate) fn running(&self, name: &str) -> bool {
        self.pid(name).is_some_and(alive)
    }

    fn log(&self, name: &str) -> String {
        let log = std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }
}

/// A process that exists and is not a zombie.
pub(crate) fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit(')').next().map(|rest| rest.trim_start().starts_with('Z')))
        .is_some_and(|zombie| !zombie)
}

impl Drop for Hooks {
    fn drop(&mut self) {
        for name in self.ports.keys() {
            if let Some(pid) = self.pid(name).filter(|pid| alive(*pid)) {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
    }
}
