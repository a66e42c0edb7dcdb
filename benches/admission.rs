//! End-to-end benchmark of the admission server: `cargo bench --bench admission`.
//!
//! It starts the real release binary (`serve --self-signed --no-controller`), drives it over
//! keep-alive HTTPS connections (rustls with ring, loopback only) with real AdmissionReview
//! bodies, and prints a Markdown table: requests/s, the server's CPU time per request (its
//! utime+stime over the run divided by the requests it answered, so the figure does not
//! depend on the load generator sharing the cores) and latency percentiles per body, each
//! against the bare TLS endpoint `/healthz`; a fixed-rate run at 1,000 requests/s, peak RSS
//! with 64 connections, RSS after a soak of bad requests, and the time from process start to
//! `/readyz` 200. Every closed-loop load runs in three rounds; the table shows medians.
//!
//! `BENCH_WRITE_README=1` (or `--write-readme`) also rewrites the table between
//! `<!-- bench:start -->` and `<!-- bench:end -->` in README.md. `BENCH_QUICK=1` shortens
//! every phase for a smoke run. The process exits 1 when a target is missed.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

#[path = "support/bodies.rs"]
mod bodies;
use bodies::{review, small};

const BIN: &str = env!("CARGO_BIN_EXE_kserve-keda-webhook");
/// Closed-loop connections per run: a handful, like several API servers and retries.
const CONNECTIONS: usize = 4;
/// Connections of the run that measures peak RSS.
const MANY_CONNECTIONS: usize = 64;
const FIXED_RATE: u64 = 1_000;
/// Rounds of every closed-loop load; the table shows the median.
const ROUNDS: usize = 3;

// Targets (README, Performance). CPU per request as a multiple of `/healthz`'s.
const TARGET_CPU_SMALL_ANNOTATED: f64 = 2.0;
const TARGET_CPU_SMALL_PLAIN: f64 = 1.5;
const TARGET_CPU_LARGE: f64 = 10.0;
const TARGET_P99_FIXED: Duration = Duration::from_millis(1);
const TARGET_RSS_KIB: u64 = 24 * 1024;
const TARGET_READY: Duration = Duration::from_millis(200);
const TARGET_SOAK_GROWTH_KIB: u64 = 8 * 1024;

struct Durations {
    warmup: Duration,
    measure: Duration,
    fixed: Duration,
    many: Duration,
    soak: usize,
    starts: usize,
}

fn main() {
    // `cargo test --all-targets` runs this binary without `--bench`: then it only checks that
    // the server starts and answers every load as expected, and measures nothing.
    if !std::env::args().any(|a| a == "--bench") {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        runtime.block_on(smoke());
        println!("bench smoke check: 1 passed, 0 failed");
        return;
    }
    let quick = std::env::var_os("BENCH_QUICK").is_some_and(|v| v != "0");
    let write_readme = std::env::args().any(|a| a == "--write-readme")
        || std::env::var_os("BENCH_WRITE_README").is_some_and(|v| v != "0");
    let d = if quick {
        Durations {
            warmup: Duration::from_millis(300),
            measure: Duration::from_secs(1),
            fixed: Duration::from_secs(2),
            many: Duration::from_secs(1),
            soak: 200,
            starts: 2,
        }
    } else {
        Durations {
            warmup: Duration::from_secs(1),
            measure: Duration::from_secs(3),
            fixed: Duration::from_secs(8),
            many: Duration::from_secs(3),
            soak: 2_000,
            starts: 7,
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let report = runtime.block_on(run(&d));
    let table = report.markdown();
    println!("{table}");
    if write_readme {
        let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
        match rewrite_readme(&readme, &table) {
            Ok(()) => eprintln!("README.md updated"),
            Err(e) => {
                eprintln!("cannot update README.md: {e}");
                std::process::exit(2);
            }
        }
    }
    if !report.all_met() {
        eprintln!("a target was missed (see the table)");
        std::process::exit(1);
    }
}

/// One request kind the load generator sends.
#[derive(Clone)]
struct Load {
    label: String,
    method: &'static str,
    path: &'static str,
    body: Bytes,
    /// The answer it must get, checked once before measuring.
    expect: Expect,
}

#[derive(Clone, Copy)]
enum Expect {
    Ok,
    Patched,
    AllowedUntouched,
}

#[derive(Default)]
struct Stats {
    requests: u64,
    elapsed: Duration,
    latencies_us: Vec<u32>,
    errors: u64,
    /// The server's CPU time (user + system) over the run.
    cpu: Duration,
}

impl Stats {
    fn cpu_per_request(&self) -> Duration {
        self.cpu / u32::try_from(self.requests.max(1)).unwrap_or(u32::MAX)
    }
    fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
    fn pct(&self, p: f64) -> Duration {
        if self.latencies_us.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.latencies_us.len() as f64 * p).ceil() as usize)
            .clamp(1, self.latencies_us.len())
            - 1;
        Duration::from_micros(u64::from(self.latencies_us[i]))
    }
}

/// One load over its rounds.
struct Row {
    label: String,
    /// Latencies of every round together.
    stats: Stats,
    rate: f64,
    cpu: Duration,
    /// Of requests/s and of CPU per request, against `/healthz` (None for `/healthz`).
    ratio: Option<(f64, f64)>,
}

impl Row {
    fn new(label: String, rounds: Vec<Stats>, ceiling: Option<&Row>) -> Row {
        let rate = median(rounds.iter().map(Stats::rate).collect());
        let cpu = Duration::from_secs_f64(median(
            rounds
                .iter()
                .map(|r| r.cpu_per_request().as_secs_f64())
                .collect(),
        ));
        let mut stats = Stats::default();
        for r in rounds {
            stats.requests += r.requests;
            stats.errors += r.errors;
            stats.latencies_us.extend(r.latencies_us);
        }
        stats.latencies_us.sort_unstable();
        let ratio = ceiling.map(|h| (rate / h.rate, cpu.as_secs_f64() / h.cpu.as_secs_f64()));
        Row {
            label,
            stats,
            rate,
            cpu,
            ratio,
        }
    }
    fn cpu_ratio(&self) -> f64 {
        self.ratio.map_or(1.0, |r| r.1)
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

struct Report {
    rows: Vec<Row>,
    /// Small reviews at the fixed rate (the target), then all four in turn.
    fixed: Stats,
    fixed_all: Stats,
    peak_rss_kib: u64,
    soak: (usize, u64, u64),
    ready: Vec<Duration>,
}

impl Report {
    fn ready_median(&self) -> Duration {
        let mut v = self.ready.clone();
        v.sort();
        v[v.len() / 2]
    }
    fn ready_max(&self) -> Duration {
        self.ready.iter().copied().max().unwrap_or_default()
    }
    fn checks(&self) -> Vec<(String, String, bool)> {
        let p99 = self.fixed.pct(0.99);
        let growth = self.soak.2.saturating_sub(self.soak.1);
        let mut checks: Vec<(String, String, bool)> = self.rows[1..]
            .iter()
            .map(|r| {
                let target = if r.label.contains("large") {
                    TARGET_CPU_LARGE
                } else if r.label.contains("not annotated") {
                    TARGET_CPU_SMALL_PLAIN
                } else {
                    TARGET_CPU_SMALL_ANNOTATED
                };
                (
                    format!(
                        "server CPU per request, {} <= {target}x `/healthz`",
                        r.label
                    ),
                    format!("{:.2}x", r.cpu_ratio()),
                    r.cpu_ratio() <= target,
                )
            })
            .collect();
        checks.extend([
            (
                format!(
                    "p99 of small reviews at {FIXED_RATE} requests/s < {} ms",
                    TARGET_P99_FIXED.as_millis()
                ),
                ms(p99),
                p99 < TARGET_P99_FIXED && self.fixed.errors == 0,
            ),
            (
                format!(
                    "peak RSS (VmHWM), after {MANY_CONNECTIONS} connections, < {} MiB",
                    TARGET_RSS_KIB / 1024
                ),
                mib(self.peak_rss_kib),
                self.peak_rss_kib < TARGET_RSS_KIB,
            ),
            (
                format!(
                    "process start to `/readyz` 200 < {} ms (median of {}; max {})",
                    TARGET_READY.as_millis(),
                    self.ready.len(),
                    ms(self.ready_max())
                ),
                ms(self.ready_median()),
                self.ready_median() < TARGET_READY,
            ),
            (
                format!(
                    "RSS growth over {} bad requests < {} MiB",
                    self.soak.0,
                    TARGET_SOAK_GROWTH_KIB / 1024
                ),
                format!("{} → {}", mib(self.soak.1), mib(self.soak.2)),
                growth < TARGET_SOAK_GROWTH_KIB,
            ),
        ]);
        checks
    }
    fn all_met(&self) -> bool {
        self.rows.iter().all(|r| r.stats.errors == 0) && self.checks().iter().all(|c| c.2)
    }
    fn markdown(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!(
            "Machine: {} CPUs (`nproc`), {}. Command: `cargo bench --bench admission`. \
             {CONNECTIONS} keep-alive HTTPS connections, closed loop, median of {ROUNDS} rounds. \
             Server CPU is its utime+stime over a round divided by the requests it answered.\n\n",
            nproc(),
            cpu_model()
        ));
        s.push_str(
            "| Load | requests/s | server CPU per request | p50 | p99 | p99.9 | requests/s vs `/healthz` | CPU vs `/healthz` |\n",
        );
        s.push_str("|---|---:|---:|---:|---:|---:|---:|---:|\n");
        for r in &self.rows {
            let (rate, cpu) = r
                .ratio
                .map_or(("ceiling".into(), "1.00x".into()), |(a, b)| {
                    (format!("{a:.2}"), format!("{b:.2}x"))
                });
            s.push_str(&format!(
                "| {} | {:.0} | {} | {} | {} | {} | {rate} | {cpu} |\n",
                r.label,
                r.rate,
                us(r.cpu),
                ms(r.stats.pct(0.50)),
                ms(r.stats.pct(0.99)),
                ms(r.stats.pct(0.999)),
            ));
        }
        for (what, st) in [
            ("both small reviews", &self.fixed),
            ("all four reviews", &self.fixed_all),
        ] {
            s.push_str(&format!(
                "| {what} in turn, fixed {FIXED_RATE} requests/s | {:.0} | {} | {} | {} | {} | | |\n",
                st.rate(),
                us(st.cpu_per_request()),
                ms(st.pct(0.50)),
                ms(st.pct(0.99)),
                ms(st.pct(0.999)),
            ));
        }
        s.push_str("\n| Target | Measured | Met |\n|---|---:|---|\n");
        for (what, measured, met) in self.checks() {
            s.push_str(&format!(
                "| {what} | {measured} | {} |\n",
                if met { "yes" } else { "**no**" }
            ));
        }
        s
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn nproc() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

async fn smoke() {
    let (mut server, _) = Server::start().await;
    for load in &loads() {
        server.check(load).await;
    }
    server.stop();
}

async fn run(d: &Durations) -> Report {
    let mut ready = Vec::new();
    for _ in 0..d.starts {
        let (mut server, took) = Server::start().await;
        ready.push(took);
        server.stop();
    }

    let (mut server, took) = Server::start().await;
    ready.push(took);
    let loads = loads();
    let mut rounds: Vec<Vec<Stats>> = loads.iter().map(|_| Vec::new()).collect();
    for round in 0..ROUNDS {
        // Rounds interleave the loads, so a burst of other work on the machine does not land
        // on one load only.
        for (load, runs) in loads.iter().zip(&mut rounds) {
            if round == 0 {
                server.check(load).await;
                let _ = closed_loop(&server, load, d.warmup, CONNECTIONS).await;
            }
            let stats = closed_loop(&server, load, d.measure, CONNECTIONS).await;
            eprintln!(
                "{} (round {}): {:.0} requests/s, {} CPU per request, p99 {}",
                load.label,
                round + 1,
                stats.rate(),
                us(stats.cpu_per_request()),
                ms(stats.pct(0.99))
            );
            runs.push(stats);
        }
    }
    let mut rows: Vec<Row> = Vec::new();
    for (load, runs) in loads.iter().zip(rounds) {
        let row = Row::new(load.label.clone(), runs, rows.first());
        rows.push(row);
    }

    let fixed = fixed_rate(&server, &loads[1..3], d.fixed).await;
    let fixed_all = fixed_rate(&server, &loads[1..], d.fixed).await;
    for (what, st) in [("small", &fixed), ("all", &fixed_all)] {
        eprintln!(
            "fixed {FIXED_RATE}/s, {what}: achieved {:.0}/s, p99 {}",
            st.rate(),
            ms(st.pct(0.99))
        );
    }
    // Many connections at once, each with a body in flight: the most memory the server holds.
    for load in &loads[1..] {
        let _ = closed_loop(&server, load, d.many / 4, MANY_CONNECTIONS).await;
    }
    let peak_rss_kib = server.status_kib("VmHWM");

    let soak = soak(&server, d.soak).await;
    server.stop();
    Report {
        rows,
        fixed,
        fixed_all,
        peak_rss_kib,
        soak,
        ready,
    }
}

/// The real binary, started the way an operator tries it.
struct Server {
    child: Child,
    addr: SocketAddr,
    tls: TlsConnector,
    ca_dir: Option<PathBuf>,
}

impl Server {
    /// Starts the server and returns it with the time from spawn to the first `/readyz` 200.
    async fn start() -> (Server, Duration) {
        let started = Instant::now();
        let mut child = Command::new(BIN)
            .args(["serve", "--self-signed", "--no-controller"])
            .args(["--addr", "127.0.0.1:0", "--shutdown-delay", "0"])
            .args(["--log-format", "json"])
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the server binary");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        // The reader keeps draining for the life of the process, or a full pipe would stall
        // the server's logging and with it the requests.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let (mut addr, mut ca) = (None, None);
        while addr.is_none() || ca.is_none() {
            let Ok(line) = rx.recv_timeout(Duration::from_secs(10)) else {
                // Do not leave the process behind.
                let _ = child.kill();
                let _ = child.wait();
                panic!("the server did not log its address and CA path within 10 s");
            };
            if let Some(rest) = line.strip_prefix("self-signed CA written to ") {
                ca = rest.split_whitespace().next().map(PathBuf::from);
            }
            if let Ok(v) = serde_json::from_str::<Value>(&line)
                && v["message"] == "listening for admission reviews over TLS"
            {
                addr = v["addr"].as_str().and_then(|a| a.parse().ok());
            }
        }
        std::thread::spawn(move || for _ in rx {});
        let ca = ca.expect("CA path");
        let pem = std::fs::read(&ca).expect("read the CA");
        let server = Server {
            child,
            addr: addr.expect("address"),
            tls: connector(&pem),
            ca_dir: ca.parent().map(Path::to_path_buf),
        };
        loop {
            if let Ok(mut c) = server.connect().await
                && let Ok((200, _)) = send(&mut c, "GET", "/readyz", Bytes::new()).await
            {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "never ready");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let took = started.elapsed();
        (server, took)
    }

    async fn connect(&self) -> std::io::Result<SendRequest<Full<Bytes>>> {
        let tcp = TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from("localhost").expect("a DNS name");
        let tls = self.tls.connect(name, tcp).await?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(conn);
        Ok(sender)
    }

    /// Sends `load` once and checks the answer is the one it must get.
    async fn check(&self, load: &Load) {
        let mut c = self.connect().await.expect("connect");
        let (status, body) = send(&mut c, load.method, load.path, load.body.clone())
            .await
            .expect("an answer");
        assert_eq!(status, 200, "{}", load.label);
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        match load.expect {
            Expect::Ok => {}
            Expect::Patched => assert!(
                v["response"]["allowed"] == true && v["response"]["patch"].is_string(),
                "{}: {v}",
                load.label
            ),
            Expect::AllowedUntouched => assert!(
                v["response"]["allowed"] == true && v["response"].get("patch").is_none(),
                "{}: {v}",
                load.label
            ),
        }
    }

    fn status_kib(&self, field: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with(&format!("{field}:")))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|n| n.parse().ok())
            })
            .unwrap_or(0)
    }

    /// The server's CPU time so far, user + system, from `/proc/<pid>/stat`.
    fn cpu(&self) -> Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command name, which is in parentheses and may contain spaces;
        // utime and stime are the 14th and 15th fields of the line.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let ticks: u64 = rest
            .split_whitespace()
            .skip(11)
            .take(2)
            .filter_map(|f| f.parse::<u64>().ok())
            .sum();
        Duration::from_secs_f64(ticks as f64 / clock_ticks())
    }

    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = self.ca_dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn connector(ca_pem: &[u8]) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert.expect("CA PEM")).expect("CA cert");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

async fn send(
    c: &mut SendRequest<Full<Bytes>>,
    method: &str,
    path: &str,
    body: Bytes,
) -> Result<(u16, Bytes), hyper::Error> {
    c.ready().await?;
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(body))
        .expect("a request");
    let resp = c.send_request(req).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// `connections` connections send `load` back to back for `run`.
async fn closed_loop(server: &Server, load: &Load, run: Duration, connections: usize) -> Stats {
    let mut conns = Vec::new();
    for _ in 0..connections {
        conns.push(server.connect().await.expect("connect"));
    }
    let cpu = server.cpu();
    let start = Instant::now();
    let end = start + run;
    let mut tasks = Vec::new();
    for mut c in conns {
        let load = load.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(100_000);
            let mut errors = 0;
            while Instant::now() < end && lat.len() < 2_000_000 {
                let t = Instant::now();
                match send(&mut c, load.method, load.path, load.body.clone()).await {
                    Ok((200, _)) => lat.push(t.elapsed().as_micros() as u32),
                    _ => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut stats = collect(tasks, start).await;
    stats.cpu = server.cpu().saturating_sub(cpu);
    stats
}

/// Clock ticks per second of `/proc/<pid>/stat` (USER_HZ).
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

async fn collect(tasks: Vec<tokio::task::JoinHandle<(Vec<u32>, u64)>>, start: Instant) -> Stats {
    let mut stats = Stats::default();
    for t in tasks {
        let (lat, errors) = t.await.expect("load task");
        stats.latencies_us.extend(lat);
        stats.errors += errors;
    }
    stats.elapsed = start.elapsed();
    stats.requests = stats.latencies_us.len() as u64;
    stats.latencies_us.sort_unstable();
    stats
}

/// Open loop: request `i` is due at `start + i / rate`, whichever connection is free takes
/// it. Latency runs from the moment the request was due when it had to wait for a busy
/// connection (so a slow server cannot hide its queue), and from the actual send when the
/// client slept until the due time (so the timer's own lateness is not counted).
async fn fixed_rate(server: &Server, reviews: &[Load], run: Duration) -> Stats {
    let total = FIXED_RATE * run.as_secs();
    let cpu = server.cpu();
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now() + Duration::from_millis(50);
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let mut c = server.connect().await.expect("connect");
        let next = next.clone();
        let reviews = reviews.to_vec();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(total as usize);
            let mut errors = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let due = start + Duration::from_nanos(i * 1_000_000_000 / FIXED_RATE);
                let t = if Instant::now() < due {
                    tokio::time::sleep_until(due.into()).await;
                    Instant::now()
                } else {
                    due
                };
                let load = &reviews[(i as usize) % reviews.len()];
                match send(&mut c, load.method, load.path, load.body.clone()).await {
                    Ok((200, _)) => lat.push(t.elapsed().as_micros() as u32),
                    _ => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut stats = collect(tasks, start).await;
    stats.cpu = server.cpu().saturating_sub(cpu);
    // The rate is over the scheduled window, not the 50 ms lead-in.
    stats.elapsed = stats.elapsed.max(Duration::from_millis(1));
    stats
}

/// Sends `n` bad requests (after a warm-up of a quarter as many) and returns the RSS before
/// and after, in KiB.
async fn soak(server: &Server, n: usize) -> (usize, u64, u64) {
    let bad = bad_bodies();
    let run = |count: usize| {
        let bad = bad.clone();
        async move {
            let mut c = server.connect().await.expect("connect");
            for i in 0..count {
                let body = bad[i % bad.len()].clone();
                match send(&mut c, "POST", "/mutate", body).await {
                    Ok((s, _)) => assert!(s == 200 || s == 400, "status {s}"),
                    // The server may close a connection after an error; open another.
                    Err(_) => c = server.connect().await.expect("reconnect"),
                }
            }
        }
    };
    run(n / 4).await;
    let before = server.status_kib("VmRSS");
    run(n).await;
    let after = server.status_kib("VmRSS");
    // And the server still answers a good review.
    server.check(&loads()[1]).await;
    eprintln!("soak: RSS {} → {}", mib(before), mib(after));
    (n, before, after)
}

fn bad_bodies() -> Vec<Bytes> {
    let good = review(&small(true));
    let text = serde_json::to_string(&good).expect("JSON");
    let mut wrong_kind = good.clone();
    wrong_kind["kind"] = json!("ConfigMap");
    let mut huge = small(true);
    huge["metadata"]["annotations"]["example.com/blob"] = json!("x".repeat(1024 * 1024));
    vec![
        Bytes::from(text[..text.len() / 2].to_string()),
        Bytes::from(serde_json::to_vec(&wrong_kind).expect("JSON")),
        Bytes::from_static(&[0xff, 0xfe, 0x7b, 0x22, 0xc3, 0x28]),
        Bytes::from("[".repeat(100_000)),
        Bytes::from("{\"apiVersion\":".repeat(1000)),
        Bytes::from(serde_json::to_vec(&review(&huge)).expect("JSON")),
        Bytes::from_static(b"null"),
        Bytes::from_static(b"{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":{\"uid\":7}}"),
    ]
}

fn loads() -> Vec<Load> {
    let mut v = vec![Load {
        label: "`GET /healthz` (TLS ceiling)".into(),
        method: "GET",
        path: "/healthz",
        body: Bytes::new(),
        expect: Expect::Ok,
    }];
    for (label, body, annotated) in bodies::reviews() {
        v.push(Load {
            label,
            method: "POST",
            path: "/mutate",
            body: Bytes::from(body),
            expect: if annotated {
                Expect::Patched
            } else {
                Expect::AllowedUntouched
            },
        });
    }
    v
}

/// Rewrites the text between the bench markers in the README.
fn rewrite_readme(path: &Path, table: &str) -> Result<(), String> {
    const START: &str = "<!-- bench:start -->";
    const END: &str = "<!-- bench:end -->";
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let (Some(a), Some(b)) = (text.find(START), text.find(END)) else {
        return Err(format!("markers {START} / {END} not found"));
    };
    if b < a {
        return Err("markers out of order".into());
    }
    let out = format!("{}{START}\n{table}{}", &text[..a], &text[b..]);
    std::fs::write(path, out).map_err(|e| e.to_string())
}
