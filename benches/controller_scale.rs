//! The controller at cluster scale: `cargo bench --bench controller_scale`.
//!
//! Serves the in-memory API of `tests/fake_api` over plain HTTP on 127.0.0.1, starts the real
//! release binary against it (`serve --self-signed --leader-elect=false --kubeconfig ...`),
//! and for 100, 1,000 and 5,000 annotated InferenceServices spread over 50 to 500 namespaces
//! measures: the time from process start to every ScaledObject applied, API requests per
//! InferenceService, the controller's RSS once settled (and per InferenceService above an
//! empty cluster), reconcile p99 from its own histogram, and the writes made in a quiet
//! window once everything is applied (a steady state must make none). The binary runs in its
//! own process so its RSS is its own, not the fake API's.
//!
//! `BENCH_SIZES=100,1000` picks the sizes. Without `--bench` (as `cargo test --all-targets`
//! runs it) it checks that 20 InferenceServices converge and settle without writes.

#[path = "../tests/fake_api/mod.rs"]
mod fake_api;

#[path = "support/bodies.rs"]
#[allow(dead_code)]
mod bodies;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fake_api::{FakeApi, ISVC, SCALED_OBJECT, Verb};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_kserve-keda-webhook");

struct Measured {
    isvcs: usize,
    namespaces: usize,
    /// How many were applied when not every ScaledObject was within the deadline.
    converged: std::result::Result<Duration, usize>,
    requests: usize,
    rss_kib: u64,
    hwm_kib: u64,
    p99: String,
    quiet_writes: usize,
    quiet: Duration,
    /// CPU seconds from start to settled: the controller's process, and this one (the
    /// in-memory API and its HTTP front; the polling here is a small part of it).
    controller_cpu: f64,
    api_cpu: f64,
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let sizes: Vec<usize> = if bench {
        std::env::var("BENCH_SIZES")
            .ok()
            .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
            .unwrap_or_else(|| vec![100, 1_000, 5_000])
    } else {
        vec![20]
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let quiet = if bench {
        Duration::from_secs(10)
    } else {
        Duration::from_secs(2)
    };
    let empty = runtime.block_on(run(0, 1, quiet));
    let mut results = Vec::new();
    for n in sizes {
        let namespaces = (n / 10).clamp(50, 500).min(n.max(1));
        let r = runtime.block_on(run(n, namespaces, quiet));
        eprintln!(
            "{n} InferenceServices in {namespaces} namespaces: applied in {}, {:.1} requests each, RSS {} KiB, {} writes while quiet, CPU {:.1} s controller / {:.1} s API",
            converged(&r),
            r.requests as f64 / n as f64,
            r.rss_kib,
            r.quiet_writes,
            r.controller_cpu,
            r.api_cpu,
        );
        // A run that did not converge is still settling; only a settled one must be quiet.
        assert!(
            r.converged.is_err() || r.quiet_writes == 0,
            "a steady state wrote to the API"
        );
        assert!(bench || r.converged.is_ok(), "did not converge");
        results.push(r);
    }
    if !bench {
        println!("controller scale smoke check: 1 passed, 0 failed");
        return;
    }
    println!(
        "Command: `cargo bench --bench controller_scale`. Empty cluster: RSS {} KiB.\n",
        empty.rss_kib
    );
    println!(
        "| InferenceServices | namespaces | start to all ScaledObjects applied | API requests per InferenceService | RSS settled | RSS per InferenceService above empty | peak RSS | reconcile p99 | writes in {} s quiet | CPU s: controller / in-memory API |",
        quiet.as_secs()
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &results {
        println!(
            "| {} | {} | {} | {:.1} | {:.1} MiB | {:.1} KiB | {:.1} MiB | {} | {} | {:.1} / {:.1} |",
            r.isvcs,
            r.namespaces,
            converged(r),
            r.requests as f64 / r.isvcs as f64,
            r.rss_kib as f64 / 1024.0,
            r.rss_kib.saturating_sub(empty.rss_kib) as f64 / r.isvcs as f64,
            r.hwm_kib as f64 / 1024.0,
            r.p99,
            r.quiet_writes,
            r.controller_cpu,
            r.api_cpu,
        );
        let _ = r.quiet;
    }
}

fn converged(r: &Measured) -> String {
    match r.converged {
        Ok(d) => format!("{:.1} s", d.as_secs_f64()),
        Err(applied) => format!("not within 600 s ({applied} applied)"),
    }
}

/// An InferenceService as `kubectl apply` leaves it: the examples' model, the scaling
/// annotation, the last-applied copy kubectl keeps, and the raw mode KServe recorded.
fn isvc(name: &str, ns: &str) -> Value {
    let mut o = bodies::small(true);
    o["metadata"]["name"] = json!(name);
    o["metadata"]["namespace"] = json!(ns);
    let applied = serde_json::to_string(&o).expect("JSON");
    let a = &mut o["metadata"]["annotations"];
    a["kubectl.kubernetes.io/last-applied-configuration"] = json!(applied);
    a["serving.kserve.io/deploymentMode"] = json!("RawDeployment");
    o["status"] = json!({"deploymentMode": "RawDeployment"});
    o
}

async fn run(n: usize, namespaces: usize, quiet: Duration) -> Measured {
    let api = FakeApi::new();
    for i in 0..n {
        let ns = format!("team-{}", i % namespaces);
        api.create(ISVC, &ns, isvc(&format!("model-{i}"), &ns));
    }
    let addr = serve(api.clone()).await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{addr}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\n\
             current-context: fake\nusers:\n- name: fake\n  user:\n    token: bench\n"
        ),
    )
    .expect("write the kubeconfig");
    let metrics_addr = free_port();
    let started = Instant::now();
    let api_cpu_before = cpu_seconds(std::process::id());
    let mut child = Command::new(BIN)
        .args(["serve", "--self-signed", "--leader-elect=false"])
        .args(["--addr", "127.0.0.1:0", "--shutdown-delay", "0"])
        .args(["--metrics-addr", &metrics_addr.to_string()])
        .arg("--self-signed-dir")
        .arg(dir.path().join("certs"))
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the server binary");
    let stderr = child.stderr.take().expect("piped stderr");
    // Drained for the life of the process, or a full pipe would stall its logging.
    std::thread::spawn(move || for _ in BufReader::new(stderr).lines() {});
    let mut child = Guard(child);

    let deadline = started + Duration::from_secs(600);
    let converged = loop {
        let applied = api.count(SCALED_OBJECT, "");
        if applied >= n && (n > 0 || ready(metrics_addr).await) {
            break Ok(started.elapsed());
        }
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!("the server exited early: {status}");
        }
        if Instant::now() > deadline {
            break Err(applied);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Settle: the controller's own writes come back as watch events and reconcile once more.
    let writes = |api: &FakeApi| {
        api.seen()
            .iter()
            .filter(|s| !matches!(s.verb, Verb::Get | Verb::List | Verb::Watch))
            .filter(|s| s.plural != "leases" && s.plural != "events")
            .count()
    };
    let mut last = writes(&api);
    let settle_deadline = Instant::now() + Duration::from_secs(120);
    loop {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let now = writes(&api);
        if now == last || Instant::now() > settle_deadline {
            break;
        }
        last = now;
    }
    let requests = api.seen().len();
    let controller_cpu = cpu_seconds(child.0.id());
    let api_cpu = cpu_seconds(std::process::id()) - api_cpu_before;
    let before = writes(&api);
    tokio::time::sleep(quiet).await;
    let quiet_writes = writes(&api) - before;
    let rss_kib = status_kib(child.0.id(), "VmRSS");
    let hwm_kib = status_kib(child.0.id(), "VmHWM");
    let p99 = reconcile_p99(metrics_addr).await;
    drop(child);
    Measured {
        isvcs: n,
        namespaces,
        converged,
        requests,
        rss_kib,
        hwm_kib,
        p99,
        quiet_writes,
        quiet,
        controller_cpu,
        api_cpu,
    }
}

/// User and system CPU time of a process (every thread), from `/proc/<pid>/stat` in clock
/// ticks of 1/100 s (USER_HZ, 100 on Linux).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may hold spaces; the fields after it are fixed.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// Stops the server by its pid when dropped, however the run ends.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Serves the fake API over HTTP/1.1 on 127.0.0.1, each request forwarded to its client.
async fn serve(api: FakeApi) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1");
    let addr = listener.local_addr().expect("local address");
    let client = api.client();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let client = client.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| forward(client.clone(), req));
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    addr
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn forward(
    client: kube::Client,
    req: http::Request<hyper::body::Incoming>,
) -> std::result::Result<http::Response<kube::client::Body>, BoxError> {
    let (parts, body) = req.into_parts();
    let bytes = body.collect().await?.to_bytes();
    let req = http::Request::from_parts(parts, kube::client::Body::from(bytes.to_vec()));
    Ok(client.send(req).await?)
}

fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    l.local_addr().expect("local address")
}

async fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .ok()?;
    tokio::spawn(conn);
    let req = http::Request::builder()
        .uri(path)
        .header("host", "localhost")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .ok()?;
    let resp = sender.send_request(req).await.ok()?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

async fn ready(addr: SocketAddr) -> bool {
    matches!(get(addr, "/readyz").await, Some((200, _)))
}

/// The upper bound of the histogram bucket that holds the 99th percentile.
async fn reconcile_p99(addr: SocketAddr) -> String {
    let Some((200, text)) = get(addr, "/metrics").await else {
        return "no metrics".into();
    };
    let buckets: Vec<(String, f64)> = text
        .lines()
        .filter_map(|l| {
            l.strip_prefix("kserve_keda_webhook_reconcile_duration_seconds_bucket{le=\"")
        })
        .filter_map(|l| {
            let (le, count) = l.split_once("\"} ")?;
            Some((le.to_string(), count.trim().parse().ok()?))
        })
        .collect();
    let total = buckets.last().map_or(0.0, |b| b.1);
    if total == 0.0 {
        return "no reconciles".into();
    }
    buckets
        .iter()
        .find(|(_, c)| *c >= total * 0.99)
        .map_or("?".into(), |(le, _)| match le.parse::<f64>() {
            Ok(s) => format!("≤ {:.0} ms", s * 1000.0),
            Err(_) => format!("above the last bucket ({le})"),
        })
}

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(&format!("{field}:")))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}
