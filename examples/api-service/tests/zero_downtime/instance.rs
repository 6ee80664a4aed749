//! One `api-service` process on a fixed loopback port.

use std::{
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

/// How an instance shuts down.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub(crate) drain: Duration,
    pub(crate) timeout: Duration,
}

pub(crate) struct Instance {
    pub(crate) version: String,
    pub(crate) port: u16,
    child: Child,
    log: PathBuf,
}

fn ms(duration: Duration) -> String {
    format!("{}ms", duration.as_millis())
}

impl Instance {
    /// Start `version` on `port`; `extra` adds or overrides environment variables.
    pub(crate) fn start(
        dir: &std::path::Path,
        port: u16,
        version: &str,
        timing: Timing,
        extra: &[(&str, &str)],
    ) -> Self {
        let name = format!("api-{version}-{port}-{}", fastrand::u32(..));
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("create the instance log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_api-service"));
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("SERVICE_VERSION", version)
            .env("SQLITE_PATH", dir.join(format!("{name}.db")))
            .env("SHUTDOWN_DRAIN_DELAY", ms(timing.drain))
            .env("SHUTDOWN_TIMEOUT", ms(timing.timeout))
            .env("HEALTH_CHECK_INTERVAL", "1s")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::from(file.try_clone().expect("log handle")))
            .stderr(Stdio::from(file));
        for (key, value) in extra {
            command.env(key, value);
        }
        let child = command.spawn().expect("start api-service");
        Self {
            version: version.to_owned(),
            port,
            child,
            log,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Poll `/health/ready` until it answers 200; false after `within`.
    pub(crate) async fn wait_ready(&mut self, within: Duration) -> bool {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return false;
            }
            let ready = client
                .get(format!("{}/health/ready", self.url()))
                .timeout(Duration::from_millis(500))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// Send SIGTERM, as an orchestrator does.
    pub(crate) fn terminate(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {} failed", self.child.id());
    }

    /// Wait for the process to exit: its status and how long it took, or `None` after `within`.
    pub(crate) async fn wait_exit(&mut self, within: Duration) -> Option<(ExitStatus, Duration)> {
        let started = Instant::now();
        while started.elapsed() < within {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return Some((status, started.elapsed()));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    }

    /// The instance's log, for failure messages.
    pub(crate) fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub(crate) use cutover_tests::free_port;
