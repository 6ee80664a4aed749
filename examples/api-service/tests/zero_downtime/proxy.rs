//! nginx and HAProxy from the distribution, run in the foreground on loopback ports with
//! retries turned off, so every failure of a backend reaches the load generator.

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

fn stop(child: &mut Child) {
    if child.try_wait().ok().flatten().is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// One backend in nginx's upstream.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Server {
    pub(crate) port: u16,
    pub(crate) weight: u32,
}

impl Server {
    /// `port` with weight 1.
    pub(crate) fn one(port: u16) -> Self {
        Self { port, weight: 1 }
    }
}

/// nginx with one upstream (`app`) whose servers can be replaced with a reload, and a
/// `canary` upstream chosen by `X-Canary: true`.
pub(crate) struct Nginx {
    pub(crate) port: u16,
    dir: PathBuf,
    child: Child,
}

impl Nginx {
    pub(crate) async fn start(dir: &Path, servers: &[Server], canary: Option<u16>) -> Self {
        let dir = dir.join(format!("nginx-{}", fastrand::u32(..)));
        std::fs::create_dir_all(dir.join("temp")).expect("nginx dir");
        let port = super::instance::free_port();
        let canary = canary.map_or(String::new(), |port| {
            format!("upstream canary {{ server 127.0.0.1:{port}; }}\n    map $http_x_canary $pool {{ default app; \"true\" canary; }}")
        });
        let pass = if canary.is_empty() { "app" } else { "$pool" };
        let d = dir.display();
        let config = format!(
            r#"worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
daemon off;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d}/temp;
    proxy_temp_path {d}/temp;
    upstream app {{ include {d}/upstream.conf; }}
    {canary}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://{pass};
            proxy_next_upstream off;
            proxy_connect_timeout 1s;
            proxy_read_timeout 60s;
        }}
    }}
}}
"#
        );
        std::fs::write(dir.join("nginx.conf"), config).expect("write nginx.conf");
        write_upstream(&dir, servers);
        let log = dir.join("stderr.log");
        let mut child = Command::new(binary("nginx"))
            .args(["-p", &format!("{d}/"), "-c", &format!("{d}/nginx.conf")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).expect("log")))
            .spawn()
            .expect("start nginx");
        wait_listening(port, &mut child, &log).await;
        Self { port, dir, child }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Replace the upstream's servers and reload (SIGHUP: new workers take new connections,
    /// old workers finish what they have).
    pub(crate) fn switch(&self, servers: &[Server]) {
        write_upstream(&self.dir, servers);
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .expect("kill -HUP");
        assert!(status.success(), "nginx reload failed");
    }
}

fn write_upstream(dir: &Path, servers: &[Server]) {
    let lines: String = servers
        .iter()
        .map(|s| format!("server 127.0.0.1:{} weight={};\n", s.port, s.weight))
        .collect();
    std::fs::write(dir.join("upstream.conf"), lines).expect("write upstream.conf");
}

impl Drop for Nginx {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// HAProxy balancing over fixed ports, each server's state driven only by its
/// `/health/ready` answers (checked every 100 ms; down after 2 failures, up after 2 passes).
pub(crate) struct Haproxy {
    pub(crate) port: u16,
    child: Child,
}

impl Haproxy {
    pub(crate) async fn start(dir: &Path, backends: &[u16]) -> Self {
        let port = super::instance::free_port();
        let servers: String = backends
            .iter()
            .enumerate()
            .map(|(i, p)| format!("    server s{i} 127.0.0.1:{p} check\n"))
            .collect();
        let config = format!(
            r"global
    maxconn 2048
defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    retries 0
frontend web
    bind 127.0.0.1:{port}
    default_backend app
backend app
    balance roundrobin
    option httpchk GET /health/ready
    http-check expect status 200
    default-server inter 100ms fall 2 rise 2
{servers}"
        );
        let file = dir.join(format!("haproxy-{}.cfg", fastrand::u32(..)));
        std::fs::write(&file, config).expect("write haproxy.cfg");
        let log = file.with_extension("log");
        let mut child = Command::new(binary("haproxy"))
            .args(["-db", "-f"])
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).expect("log")))
            .spawn()
            .expect("start haproxy");
        wait_listening(port, &mut child, &log).await;
        Self { port, child }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}
