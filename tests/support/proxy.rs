//! nginx and HAProxy from the distribution, running the shipped files of `examples/deploy/`
//! on loopback ports: nothing here writes a proxy configuration of its own. Used by the
//! zero-downtime harnesses (api-service's, and the contract gate's in this crate).

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

fn binary(name: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/local/sbin", "/usr/bin"] {
        let path = Path::new(dir).join(name);
        if path.exists() {
            return path;
        }
    }
    panic!("`{name}` is not installed: run `scripts/services.sh up`, which installs nginx and haproxy")
}

async fn wait_listening(port: u16, child: &mut Child, log: &Path) {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return;
        }
        if let Some(status) = child.try_wait().expect("wait") {
            panic!(
                "proxy exited ({status}): {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("proxy not listening on {port}");
}

/// Kill a proxy that is still running, and reap it.
pub fn stop(child: &mut Child) {
    if child.try_wait().ok().flatten().is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// One backend in nginx's upstream.
#[derive(Debug, Clone, Copy)]
pub struct Server {
    /// Its loopback port.
    pub port: u16,
    /// Its share of the traffic.
    pub weight: u32,
}

impl Server {
    /// `port` with weight 1.
    pub fn one(port: u16) -> Self {
        Self { port, weight: 1 }
    }
}

/// The shipped deployment files: `examples/deploy/...`.
pub fn shipped(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/deploy")
        .join(relative)
}

/// What the shipped `nginx/switch.sh` said, and whether it succeeded.
#[derive(Debug)]
pub struct Switched {
    /// Whether the script exited with 0.
    pub ok: bool,
    /// What it printed.
    pub output: String,
}

/// nginx running the shipped `nginx/nginx.conf.template`, rendered with `envsubst` as its
/// comment says (only `NGINX_LISTEN` differs: a free loopback port), switched by the shipped
/// `nginx/switch.sh`.
#[derive(Debug)]
pub struct Nginx {
    /// Where it listens, on loopback.
    pub port: u16,
    /// Its configuration directory.
    pub dir: PathBuf,
    child: Child,
}

impl Nginx {
    /// Start it in a directory of its own under `dir`, sending to `servers`.
    pub async fn start(dir: &Path, servers: &[Server]) -> Self {
        let dir = dir.join(format!("nginx-{}", fastrand::u32(..)));
        std::fs::create_dir_all(&dir).expect("nginx dir");
        let port = crate::free_port();
        let template = std::fs::File::open(shipped("nginx/nginx.conf.template")).expect("the shipped template");
        let rendered = Command::new("envsubst")
            .arg("${NGINX_LISTEN}")
            .env("NGINX_LISTEN", format!("127.0.0.1:{port}"))
            .stdin(Stdio::from(template))
            .output()
            .expect("envsubst (gettext-base) is installed by scripts/services.sh");
        assert!(rendered.status.success(), "envsubst failed");
        std::fs::write(dir.join("nginx.conf"), rendered.stdout).expect("write nginx.conf");
        // The upstream the first switch would have written.
        let lines: String = servers
            .iter()
            .map(|s| format!("server 127.0.0.1:{} weight={};\n", s.port, s.weight))
            .collect();
        std::fs::write(dir.join("upstream.conf"), lines).expect("write upstream.conf");
        let log = dir.join("stderr.log");
        let d = dir.display();
        let mut child = Command::new(binary("nginx"))
            .args(["-p", &format!("{d}/"), "-c", &format!("{d}/nginx.conf")])
            .args(["-g", &format!("daemon off; pid {d}/nginx.pid;")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).expect("log")))
            .spawn()
            .expect("start nginx");
        wait_listening(port, &mut child, &log).await;
        Self { port, dir, child }
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Run the shipped `switch.sh` with these backends; `ready_within` is its READY_TIMEOUT.
    pub async fn switch(&self, servers: &[Server], ready_within: Duration) -> Switched {
        self.switch_with(servers, ready_within, &[]).await
    }

    /// [`switch`](Self::switch) with extra settings for the script (`PROXY_URL`, ...).
    pub async fn switch_with(&self, servers: &[Server], ready_within: Duration, extra: &[(&str, String)]) -> Switched {
        let mut command = tokio::process::Command::new("bash");
        command
            .arg(shipped("nginx/switch.sh"))
            .args(servers.iter().map(|s| format!("{}:{}", s.port, s.weight)))
            .env("NGINX_DIR", &self.dir)
            .env("NGINX_PID_FILE", self.dir.join("nginx.pid"))
            .env("NGINX", binary("nginx"))
            .env("PROXY_URL", self.url())
            .env("READY_TIMEOUT", ready_within.as_secs().max(1).to_string())
            .env("VERIFY_TIMEOUT", "10")
            .kill_on_drop(true);
        for (key, value) in extra {
            command.env(key, value);
        }
        let output = command.output().await.expect("run switch.sh");
        Switched {
            ok: output.status.success(),
            output: crate::output_text(&output),
        }
    }

    /// The upstream nginx was last told about.
    pub fn upstream(&self) -> String {
        std::fs::read_to_string(self.dir.join("upstream.conf")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// HAProxy running the shipped `haproxy/haproxy.cfg` as it is, its addresses given through the
/// environment variables the file reads (`HAPROXY_BIND`, `API1`..`API3`): each server's state
/// driven only by its `/health/ready` answers.
#[derive(Debug)]
pub struct Haproxy {
    /// Where it listens, on loopback.
    pub port: u16,
    child: Child,
}

impl Haproxy {
    /// `extra` sets more of the file's variables (`HAPROXY_RETRIES`).
    pub async fn start(dir: &Path, backends: &[u16; 3], extra: &[(&str, &str)]) -> Self {
        let port = crate::free_port();
        let log = dir.join(format!("haproxy-{}.log", fastrand::u32(..)));
        let mut command = Command::new(binary("haproxy"));
        command
            .args(["-db", "-f"])
            .arg(shipped("haproxy/haproxy.cfg"))
            .env("HAPROXY_BIND", format!("127.0.0.1:{port}"))
            // Names the scenario's directory, so the end-of-run check finds a survivor.
            .env("CUTOVER_HARNESS_DIR", dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).expect("log")));
        for (i, backend) in backends.iter().enumerate() {
            command.env(format!("API{}", i + 1), format!("127.0.0.1:{backend}"));
        }
        command.envs(extra.iter().copied());
        let mut child = command.spawn().expect("start haproxy");
        wait_listening(port, &mut child, &log).await;
        Self { port, child }
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}
