//! The real `api-service` binary, started on a free port with a private SQLite file.
//! Shared by several test binaries, each using part of it.
#![allow(dead_code, clippy::unwrap_used)]

use std::{
    net::TcpListener,
    process::{Child, Command, ExitStatus, Stdio},
    time::Duration,
};

use cutover_tests::unique;
use serde_json::Value;

pub(crate) struct Service {
    pub(crate) child: Child,
    pub(crate) base: String,
}

impl Service {
    pub(crate) fn start(envs: &[(&str, String)]) -> Self {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let sqlite = std::env::temp_dir().join(format!("{}.db", unique("api_service")));
        let mut command = Command::new(env!("CARGO_BIN_EXE_api-service"));
        // Logs go to a file next to the database, for reading when a test fails.
        let log = std::fs::File::create(sqlite.with_extension("log")).unwrap();
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("SQLITE_PATH", &sqlite)
            .env("HEALTH_CHECK_INTERVAL", "1s")
            .env("HEALTH_CHECK_TIMEOUT", "1s")
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log));
        for (name, value) in envs {
            command.env(name, value);
        }
        Self {
            child: command.spawn().expect("start api-service"),
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    pub(crate) async fn get(&self, path: &str) -> Option<(u16, Value)> {
        let response = reqwest::get(format!("{}{path}", self.base)).await.ok()?;
        let status = response.status().as_u16();
        Some((status, response.json().await.ok()?))
    }

    pub(crate) async fn wait_until(&self, path: &str, status: u16, within: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let last = self.get(path).await;
            match last {
                Some((code, body)) if code == status => return body,
                _ if tokio::time::Instant::now() >= deadline => {
                    panic!("GET {path} did not answer {status} within {within:?}; last answer: {last:?}")
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}

impl Service {
    /// Send `signal` (e.g. `TERM`) to the process.
    pub(crate) fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Wait up to `within` for the process to exit.
    pub(crate) async fn exit_status(&mut self, within: Duration) -> ExitStatus {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "api-service did not exit within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
