//! Test helpers shared by the stream service's and the Lambda handlers' tests (not an API): a
//! private Redis server, HTTP stand-ins on their own thread, readers of file-sink output. Built
//! with the `testing` feature.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Every line of the closed `*.jsonl` files under `dir` (recursively), as JSON.
pub fn jsonl(dir: &Path) -> Vec<serde_json::Value> {
    let mut files = Vec::new();
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "jsonl") {
                out.push(p);
            }
        }
    }
    walk(dir, &mut files);
    files.sort();
    files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .map(|l| {
                    serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: {e}: {l}", f.display()))
                })
                .collect::<Vec<serde_json::Value>>()
        })
        .collect()
}

/// How many times each `event_id` appears.
pub fn counts(rows: &[serde_json::Value]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for r in rows {
        *m.entry(r["event_id"].as_str().unwrap_or_default().to_string())
            .or_insert(0) += 1;
    }
    m
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A private `redis-server` on a free port, stopped (process and all) when dropped.
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// Serves TLS only (`rediss://`), with a certificate of a private CA ([`Redis::ca_file`]).
    tls: bool,
}

impl Redis {
    pub fn start() -> Redis {
        let port = free_port();
        let mut r = Redis {
            port,
            child: None,
            dir: tempfile::tempdir().unwrap(),
            tls: false,
        };
        r.spawn();
        r
    }

    /// A server that speaks TLS only (as ElastiCache with in-transit encryption does), its
    /// certificate (for `127.0.0.1`) signed by a private CA made for it with `openssl`.
    pub fn start_tls() -> Redis {
        let mut r = Redis {
            port: free_port(),
            child: None,
            dir: tempfile::tempdir().unwrap(),
            tls: true,
        };
        let d = r.dir.path();
        std::fs::write(
            d.join("server.ext"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        // (arguments, subject): the CA, the server's key and request, the CA signing it.
        let days = ["-days", "2"];
        let steps: [(Vec<&str>, &str); 3] = [
            (
                [
                    &["req", "-x509"][..],
                    &ec,
                    &days,
                    &["-keyout", "ca.key", "-out", "ca.pem"],
                ]
                .concat(),
                "/CN=bitacora test CA",
            ),
            (
                [
                    &["req"][..],
                    &ec,
                    &["-keyout", "server.key", "-out", "server.csr"],
                ]
                .concat(),
                "/CN=127.0.0.1",
            ),
            (
                [
                    &[
                        "x509",
                        "-req",
                        "-in",
                        "server.csr",
                        "-CA",
                        "ca.pem",
                        "-CAkey",
                        "ca.key",
                    ][..],
                    &days,
                    &[
                        "-CAcreateserial",
                        "-out",
                        "server.pem",
                        "-extfile",
                        "server.ext",
                    ],
                ]
                .concat(),
                "",
            ),
        ];
        for (args, subject) in &steps {
            let mut c = Command::new("openssl");
            c.args(args).current_dir(d);
            if !subject.is_empty() {
                c.args(["-subj", subject]);
            }
            let out = c.output().expect("openssl must be installed");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        r.spawn();
        r
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}/0", self.port)
    }

    /// The PEM file of the CA that signed a TLS server's certificate.
    pub fn ca_file(&self) -> std::path::PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A stand-in holding no server (to move a running one into a thread).
    pub fn placeholder() -> Redis {
        Redis {
            port: 0,
            child: None,
            dir: tempfile::tempdir().unwrap(),
            tls: false,
        }
    }

    fn spawn(&mut self) {
        use std::os::unix::process::CommandExt;
        let port = self.port.to_string();
        let d = self.dir.path();
        let mut cmd = Command::new("redis-server");
        match self.tls {
            false => cmd.args(["--port", &port]),
            true => cmd
                .args([
                    "--port",
                    "0",
                    "--tls-port",
                    &port,
                    "--tls-auth-clients",
                    "no",
                ])
                .arg("--tls-cert-file")
                .arg(d.join("server.pem"))
                .arg("--tls-key-file")
                .arg(d.join("server.key"))
                .arg("--tls-ca-cert-file")
                .arg(d.join("ca.pem")),
        };
        let child = cmd
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(d)
            .stdout(
                std::fs::File::create(d.join("redis.log"))
                    .map_or_else(|_| Stdio::null(), Stdio::from),
            )
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("redis-server (Debian's redis-server package) must be installed");
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                let log =
                    std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default();
                panic!("redis-server exited at start ({status}): {log}");
            }
            // A TLS server is ready once it listens (a plain PING would not be understood).
            if self.tls {
                if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                    return;
                }
            } else if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                use std::io::{Read, Write};
                let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                let mut buf = [0u8; 16];
                if s.write_all(b"PING\r\n").is_ok()
                    && s.read(&mut buf)
                        .is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
                {
                    return;
                }
            }
            assert!(
                Instant::now() < until,
                "redis-server did not answer on port {} in 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port (empty: it keeps nothing on disk).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A scripted HTTP peer (a webhook receiver or an OpenSearch stand-in): `answer(body)` gives
/// (status, response body) for each request; every body it got is kept.
pub struct Peer {
    pub addr: SocketAddr,
    pub bodies: Arc<Mutex<Vec<(u16, String)>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

/// The answer of an HTTP stand-in.
pub type StandInResponse = hyper::Response<http_body_util::Full<bytes::Bytes>>;

/// Serves HTTP/1.1 on a free loopback port, on its own thread and runtime (so a handler may
/// block), until the returned sender is used or dropped.
pub fn serve_on_thread<H, Fut>(handler: H) -> (SocketAddr, tokio::sync::oneshot::Sender<()>)
where
    H: Fn(hyper::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = StandInResponse> + Send + 'static,
{
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let addr = std_listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            let serve = async {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    let handler = handler.clone();
                    tokio::spawn(async move {
                        let svc = hyper::service::service_fn(move |req| {
                            let answer = handler(req);
                            async move { Ok::<_, std::convert::Infallible>(answer.await) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                            .await;
                    });
                }
            };
            tokio::select! {
                _ = serve => {}
                _ = stop_rx => {}
            }
        });
    });
    (addr, stop_tx)
}

impl Peer {
    /// Runs on its own thread and runtime, so an answer may block (to hold a sender back).
    pub async fn start<F>(answer: F) -> Peer
    where
        F: Fn(&str) -> (u16, String) + Send + Sync + 'static,
    {
        let bodies: Arc<Mutex<Vec<(u16, String)>>> = Arc::default();
        let answer = Arc::new(answer);
        let kept = bodies.clone();
        let (addr, stop_tx) = serve_on_thread(move |req: hyper::Request<hyper::body::Incoming>| {
            let answer = answer.clone();
            let kept = kept.clone();
            async move {
                use http_body_util::BodyExt;
                let body = req
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let text = String::from_utf8_lossy(&body).into_owned();
                let (status, out) = answer(&text);
                kept.lock().unwrap().push((status, text));
                let mut r =
                    hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(out)));
                *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                r
            }
        });
        Peer {
            addr,
            bodies,
            stop: Some(stop_tx),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Waits until something accepts connections on loopback `port` (`what` names it if not).
pub fn wait_listening(port: u16, what: &str, budget: Duration) {
    let until = Instant::now() + budget;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < until,
            "{what} did not listen on {port} in {budget:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A realistic app message (the generator's shape).
pub fn message(i: usize, event_type: &str) -> String {
    serde_json::json!({
        "event_id": format!("ev-{i}"),
        "ts": "2026-11-18T10:00:00.000Z",
        "level": if event_type == "crash" { "ERROR" } else { "INFO" },
        "event_type": event_type,
        "user_id": format!("user-{}", i % 17),
        "session_id": format!("s-{}", i % 5),
        "app_version": "3.2.1",
        "platform": if i.is_multiple_of(2) { "ios" } else { "android" },
        "latency_ms": i % 300,
        "props": {"i": i},
    })
    .to_string()
}
