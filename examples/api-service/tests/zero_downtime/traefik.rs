//! Traefik v3 (built by `scripts/services.sh`) running the shipped file-provider setups of
//! `examples/deploy/blue-green` and `examples/deploy/canary`, and Prometheus (Debian's package)
//! scraping the instances' `/metrics` for the canary analysis.
//!
//! Traefik's static configuration is the `command` list of the shipped `compose.yml`, with the
//! two values that only make sense in a container replaced: the entry point's address (a free
//! loopback port) and the dynamic directory (the scenario's copy of the shipped `dynamic/`).
//! The dynamic file is copied as it is; its server addresses come from Traefik's environment
//! (`API_BLUE_URL`, ...), the variables the file itself reads.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use cutover_tests::proxy::{shipped, stop};

fn traefik_binary() -> PathBuf {
    let built = std::env::var_os("TRAEFIK_BIN").map(PathBuf::from).unwrap_or_else(|| {
        Path::new(&std::env::var("HOME").unwrap_or_default()).join(".cache/cutover/traefik-v3.6.12/traefik")
    });
    assert!(
        built.exists(),
        "Traefik is not built at {}: run `scripts/services.sh up`, which builds it",
        built.display()
    );
    built
}

async fn wait_answering(url: &str, child: &mut Child, log: &Path, what: &str) {
    let client = reqwest::Client::new();
    for _ in 0..300 {
        if client.get(url).send().await.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        if let Some(status) = child.try_wait().expect("wait") {
            panic!(
                "{what} exited ({status}): {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{what} never answered {url}: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// Which shipped setup.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Setup {
    BlueGreen,
    Canary,
}

impl Setup {
    fn dir(self) -> &'static str {
        match self {
            Self::BlueGreen => "blue-green",
            Self::Canary => "canary",
        }
    }
}

pub(crate) struct Traefik {
    pub(crate) port: u16,
    /// The watched dynamic file, for the scripts' `DYNAMIC_FILE`.
    pub(crate) dynamic: PathBuf,
    child: Child,
}

impl Traefik {
    /// Traefik with the shipped `setup`; `servers` are the environment variables its dynamic
    /// file reads (`API_BLUE_URL`, ...). `edit` may change the copied dynamic file (the
    /// negative controls remove what they test).
    pub(crate) async fn start(
        dir: &Path,
        setup: Setup,
        servers: &[(&str, String)],
        edit: impl FnOnce(String) -> String,
    ) -> Self {
        let dir = dir.join(format!("traefik-{}", fastrand::u32(..)));
        let dynamic_dir = dir.join("dynamic");
        std::fs::create_dir_all(&dynamic_dir).expect("traefik dir");
        let shipped_dynamic = std::fs::read_to_string(shipped(&format!("{}/dynamic/api.yml", setup.dir())))
            .expect("the shipped dynamic file");
        let dynamic = dynamic_dir.join("api.yml");
        std::fs::write(&dynamic, edit(shipped_dynamic)).expect("copy the dynamic file");

        let port = super::instance::free_port();
        let ping = super::instance::free_port();
        let compose: serde_yaml_ng::Value = serde_yaml_ng::from_str(
            &std::fs::read_to_string(shipped(&format!("{}/compose.yml", setup.dir())))
                .expect("the shipped compose.yml"),
        )
        .expect("compose.yml is YAML");
        let args: Vec<String> = compose["services"]["traefik"]["command"]
            .as_sequence()
            .expect("the traefik service's command list")
            .iter()
            .map(|arg| {
                let arg = arg.as_str().expect("a string argument");
                match arg.split_once('=') {
                    Some(("--entrypoints.web.address", _)) => format!("--entrypoints.web.address=127.0.0.1:{port}"),
                    Some(("--entrypoints.metrics.address", _)) => {
                        format!("--entrypoints.metrics.address=127.0.0.1:{ping}")
                    }
                    Some(("--providers.file.directory", _)) => {
                        format!("--providers.file.directory={}", dynamic_dir.display())
                    }
                    _ => arg.to_owned(),
                }
            })
            .collect();
        assert!(
            args.iter().any(|a| a.starts_with("--entrypoints.metrics.address=")),
            "the shipped Traefik serves ping and metrics on its own entry point"
        );
        let log = dir.join("traefik.log");
        let mut command = Command::new(traefik_binary());
        command
            .args(&args)
            .arg("--log.level=WARN")
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::from(std::fs::File::create(&log).expect("log")))
            .stderr(Stdio::from(
                std::fs::File::create(dir.join("traefik.err")).expect("log"),
            ));
        command.env("CUTOVER_HARNESS_DIR", &dir);
        for (key, value) in servers {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("start traefik");
        wait_answering(&format!("http://127.0.0.1:{ping}/ping"), &mut child, &log, "Traefik").await;
        Self { port, dynamic, child }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Traefik {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// Prometheus scraping `targets` (`host:port`, their `/metrics`) every second.
pub(crate) struct Prometheus {
    pub(crate) port: u16,
    child: Child,
}

impl Prometheus {
    pub(crate) async fn start(dir: &Path, targets: &[String]) -> Self {
        let dir = dir.join(format!("prometheus-{}", fastrand::u32(..)));
        std::fs::create_dir_all(dir.join("data")).expect("prometheus dir");
        let port = super::instance::free_port();
        let targets: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: api\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        std::fs::write(dir.join("prometheus.yml"), config).expect("write prometheus.yml");
        let log = dir.join("prometheus.log");
        let binary = ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("Prometheus is not installed: run `scripts/services.sh up`, which installs it");
        let mut child = Command::new(binary)
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).expect("log")))
            .spawn()
            .expect("start prometheus");
        wait_answering(
            &format!("http://127.0.0.1:{port}/-/ready"),
            &mut child,
            &log,
            "Prometheus",
        )
        .await;
        Self { port, child }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}
