//! Both listeners of the real `serve` binary against clients that hold connections open:
//! hundreds of idle and half-sent connections are closed within the stated timeouts, the
//! probes keep answering while they are held, a connection beyond a port's cap is closed at
//! once, and memory stays within 10 MiB of its idle value however many waves come.

mod admission_review;
mod cli;
mod webhook;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use admission_review::{isvc, review};
use cli::serve::Served;
use kserve_keda_webhook::server::REQUEST_TIMEOUT;
use kserve_keda_webhook::server::limits::{
    HEADER_READ_TIMEOUT, MAX_METRICS_CONNECTIONS, MAX_TLS_CONNECTIONS, TLS_HANDSHAKE_TIMEOUT,
    WRITE_STALL_TIMEOUT,
};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use webhook::raw::{self, statuses};

/// Added to every server-side bound before a test calls a connection held too long: the
/// machine may be slow, and this must not flake. Still far below "held forever".
const SLACK: Duration = Duration::from_secs(15);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Hog {
    /// HTTPS: connects and sends nothing.
    TcpOnly,
    /// HTTPS: sends a ClientHello and stops.
    HalfHandshake,
    /// HTTPS: completes the handshake and sends nothing.
    TlsSilent,
    /// HTTPS: half a request head.
    TlsHalfHead,
    /// HTTPS: a whole head for /mutate and the first byte of its body.
    TlsSlowBody,
    /// HTTPS: one request, then idle on the kept-alive connection.
    TlsKeptAlive,
    /// Plain HTTP: connects and sends nothing.
    PlainTcpOnly,
    /// Plain HTTP: half a request head.
    PlainHalfHead,
    /// Plain HTTP: a whole head announcing a body, and one byte of it.
    PlainSlowBody,
    /// Plain HTTP: one request, then idle on the kept-alive connection.
    PlainKeptAlive,
}

impl Hog {
    /// How long the server lets it hold the connection (README, Limits).
    fn bound(self) -> Duration {
        match self {
            Hog::TcpOnly | Hog::HalfHandshake => TLS_HANDSHAKE_TIMEOUT,
            Hog::TlsSlowBody => REQUEST_TIMEOUT,
            // Answered at once; the unread rest of the body closes the connection.
            Hog::PlainSlowBody => Duration::ZERO,
            _ => HEADER_READ_TIMEOUT,
        }
    }

    fn tls(self) -> bool {
        !matches!(
            self,
            Hog::PlainTcpOnly | Hog::PlainHalfHead | Hog::PlainSlowBody | Hog::PlainKeptAlive
        )
    }
}

/// 200 on each port. In a debug build a connection costs the server up to 24 KiB on the
/// HTTPS port (12 KiB before the handshake) and 1-2 KiB on the plain one; these stay inside
/// the 10 MiB the memory check allows, with room for what the allocator keeps.
const HOGS: [(Hog, usize); 10] = [
    (Hog::TcpOnly, 80),
    (Hog::HalfHandshake, 40),
    (Hog::TlsSilent, 20),
    (Hog::TlsHalfHead, 20),
    (Hog::TlsSlowBody, 20),
    (Hog::TlsKeptAlive, 20),
    (Hog::PlainTcpOnly, 80),
    (Hog::PlainHalfHead, 60),
    (Hog::PlainSlowBody, 30),
    (Hog::PlainKeptAlive, 30),
];

/// Reads one answer to a GET /healthz (body "ok") without waiting for the connection to end.
async fn one_healthz_answer(stream: &mut (impl tokio::io::AsyncRead + Unpin)) {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(b"\r\n\r\nok") {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before answering");
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(statuses(&got), [200]);
}

/// Opens one hog connection, counts it as established, and waits for the server to close
/// it: how long that took and what the server sent after the set-up.
async fn hold(
    hog: Hog,
    served: Arc<(u16, u16, String)>,
    established: Arc<AtomicUsize>,
) -> (Hog, Duration, Vec<u8>) {
    let (https, metrics, ca) = (served.0, served.1, served.2.as_str());
    const MUTATE_HEAD: &[u8] = b"POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{";
    const HALF_HEAD: &[u8] = b"GET /healthz HTTP/1.1\r\nhost: local";
    const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n";
    let what = format!("{hog:?}");
    if hog.tls() {
        if matches!(hog, Hog::TcpOnly | Hog::HalfHandshake) {
            let mut tcp = raw::tcp(https).await;
            if hog == Hog::HalfHandshake {
                tcp.write_all(&raw::client_hello(ca)).await.unwrap();
            }
            established.fetch_add(1, Ordering::SeqCst);
            let since = Instant::now();
            let got = raw::until_closed(&what, &mut tcp).await;
            // The server's half of the handshake may have arrived; no HTTP answer can.
            assert!(statuses(&got).is_empty(), "{what}");
            return (hog, since.elapsed(), Vec::new());
        }
        let mut tls = raw::tls(https, ca).await;
        match hog {
            Hog::TlsHalfHead => tls.write_all(HALF_HEAD).await.unwrap(),
            Hog::TlsSlowBody => tls.write_all(MUTATE_HEAD).await.unwrap(),
            Hog::TlsKeptAlive => {
                tls.write_all(HEALTHZ).await.unwrap();
                one_healthz_answer(&mut tls).await;
            }
            _ => {}
        }
        tls.flush().await.unwrap();
        established.fetch_add(1, Ordering::SeqCst);
        let since = Instant::now();
        let got = raw::until_closed(&what, &mut tls).await;
        (hog, since.elapsed(), got)
    } else {
        let mut tcp = raw::tcp(metrics).await;
        match hog {
            Hog::PlainHalfHead => tcp.write_all(HALF_HEAD).await.unwrap(),
            Hog::PlainSlowBody => tcp
                .write_all(
                    b"GET /metrics HTTP/1.1\r\nhost: localhost\r\ncontent-length: 1000\r\n\r\n{",
                )
                .await
                .unwrap(),
            Hog::PlainKeptAlive => {
                tcp.write_all(HEALTHZ).await.unwrap();
                one_healthz_answer(&mut tcp).await;
            }
            _ => {}
        }
        established.fetch_add(1, Ordering::SeqCst);
        let since = Instant::now();
        let got = raw::until_closed(&what, &mut tcp).await;
        (hog, since.elapsed(), got)
    }
}

async fn healthz(served: &Served) -> (u16, u16) {
    let tls = webhook::client_trusting(&served.ca_pem)
        .get(format!("https://localhost:{}/healthz", served.https))
        .send()
        .await
        .map_or(0, |r| r.status().as_u16());
    let plain = webhook::client_trusting(&served.ca_pem)
        .get(format!("http://127.0.0.1:{}/healthz", served.metrics))
        .send()
        .await
        .map_or(0, |r| r.status().as_u16());
    (tls, plain)
}

async fn good_review(served: &Served) -> u16 {
    let object = isvc("qwen", Some(json!({"scaling.io/strategy": "tokens"})));
    webhook::client_trusting(&served.ca_pem)
        .post(format!("https://localhost:{}/mutate", served.https))
        .json(&review("CREATE", &object, None, false))
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

/// The value of `name` with `labels` in a scrape of the plain port (or of the HTTPS port
/// when `over_tls`), if present.
async fn sample(served: &Served, over_tls: bool, series: &str) -> Option<f64> {
    let text = if over_tls {
        webhook::client_trusting(&served.ca_pem)
            .get(format!("https://localhost:{}/metrics", served.https))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?
    } else {
        webhook::client_trusting(&served.ca_pem)
            .get(format!("http://127.0.0.1:{}/metrics", served.metrics))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?
    };
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Opens every hog at once, checks the probes answer while they are held, and waits for
/// the server to close each within its bound. Returns VmRSS and RssAnon while held.
async fn wave(served: &Served) -> (u64, u64) {
    let shared = Arc::new((served.https, served.metrics, served.ca_pem.clone()));
    let established = Arc::new(AtomicUsize::new(0));
    let total: usize = HOGS.iter().map(|(_, n)| n).sum();
    let mut tasks = Vec::new();
    for (hog, n) in HOGS {
        for _ in 0..n {
            tasks.push(tokio::spawn(hold(hog, shared.clone(), established.clone())));
        }
    }
    let deadline = Instant::now() + SLACK;
    while established.load(Ordering::SeqCst) < total {
        assert!(Instant::now() < deadline, "hog connections not established");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let held = (served.rss_kib(), served.status_kib("RssAnon"));
    let open = |listener| format!("kserve_keda_webhook_connections{{listener=\"{listener}\"}}");
    let counted = (
        sample(served, false, &open("https")).await,
        sample(served, true, &open("metrics")).await,
    );
    // The caps leave room: the probes on both ports answer while the hogs are held.
    assert_eq!(healthz(served).await, (200, 200), "probes while held");
    eprintln!("{total} hogs held, counted open (https, metrics): {counted:?}");

    for task in tasks {
        let (hog, open_for, got) = task.await.unwrap();
        assert!(
            open_for <= hog.bound() + SLACK,
            "{hog:?} held for {open_for:?}, bound {:?}",
            hog.bound()
        );
        match hog {
            // The router's own answer to a body that never comes.
            Hog::TlsSlowBody => assert_eq!(statuses(&got), [408], "{hog:?}"),
            Hog::PlainSlowBody => assert_eq!(statuses(&got), [200], "{hog:?}"),
            _ => assert!(statuses(&got).is_empty(), "{hog:?}: {got:?}"),
        }
    }
    // Everything is usable again.
    assert_eq!(good_review(served).await, 200);
    assert_eq!(healthz(served).await, (200, 200));
    held
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_held_connections_are_closed_in_time_and_memory_stays_bounded() {
    let mut served = Served::start();
    // Warm up what a first request allocates once (TLS and HTTP state, the planner).
    for _ in 0..5 {
        assert_eq!(good_review(&served).await, 200);
        assert_eq!(healthz(&served).await, (200, 200));
    }
    let idle = (served.rss_kib(), served.status_kib("RssAnon"));
    // Two waves: the second reuses what the allocator kept from the first, so memory does
    // not climb with each wave of hogs.
    for round in 1..=2 {
        let held = wave(&served).await;
        let limit = idle.0 + 10 * 1024;
        let deadline = Instant::now() + SLACK;
        let mut after = served.rss_kib();
        while after > limit && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
            after = served.rss_kib();
        }
        eprintln!(
            "wave {round}: VmRSS idle {} KiB, held {} KiB, after {after} KiB; RssAnon idle {} KiB, held {} KiB, after {} KiB",
            idle.0,
            held.0,
            idle.1,
            held.1,
            served.status_kib("RssAnon")
        );
        assert!(
            after <= limit,
            "wave {round}: VmRSS {after} KiB after the hogs left, idle {} KiB",
            idle.0
        );
    }
    assert!(served.alive());
}

/// Fills one port with connections that send nothing, then opens one more.
async fn fill_and_exceed(served: &Served, port: u16, cap: usize, listener: &str) {
    // The scrape goes to the other port, which has room.
    let over_tls = listener == "metrics";
    let open = format!("kserve_keda_webhook_connections{{listener=\"{listener}\"}}");
    // Probes of a previous round may still be closing.
    let deadline = Instant::now() + SLACK;
    while sample(served, over_tls, &open).await != Some(0.0) {
        assert!(
            Instant::now() < deadline,
            "{listener}: connections left open"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut hogs = Vec::new();
    for _ in 0..cap {
        hogs.push(raw::tcp(port).await);
    }
    let counted = async |n: usize| {
        let deadline = Instant::now() + SLACK;
        while sample(served, over_tls, &open).await != Some(n as f64) {
            assert!(
                Instant::now() < deadline,
                "{listener}: the server never counted {n}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    counted(cap).await;
    // One more: accepted by the kernel, closed by the server straight away, while every
    // hog is still open (they are held for seconds; no clock is read here).
    let mut extra = raw::tcp(port).await;
    let got = raw::until_closed("the connection beyond the cap", &mut extra).await;
    assert!(got.is_empty(), "{listener}: {got:?}");
    // A hog ends and a newcomer takes its slot; the next one past the cap is refused again,
    // without a second warning: the port never had room to speak of.
    drop(hogs.pop());
    counted(cap - 1).await;
    hogs.push(raw::tcp(port).await);
    counted(cap).await;
    let mut extra = raw::tcp(port).await;
    let got = raw::until_closed("the second connection beyond the cap", &mut extra).await;
    assert!(got.is_empty(), "{listener}: {got:?}");
    let mut still_open = 0;
    for hog in &hogs {
        let mut buf = [0u8; 1];
        if matches!(hog.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock) {
            still_open += 1;
        }
    }
    assert_eq!(still_open, cap, "{listener}: the hogs are still held");
    assert_eq!(
        sample(
            served,
            over_tls,
            &format!("kserve_keda_webhook_connections_refused_total{{listener=\"{listener}\"}}")
        )
        .await,
        Some(2.0),
        "{listener}"
    );
    // The other port keeps answering; once the hogs go, this one does too.
    let (tls, plain) = healthz(served).await;
    assert_eq!(if over_tls { tls } else { plain }, 200, "{listener}");
    drop(hogs);
    let deadline = Instant::now() + SLACK;
    while healthz(served).await != (200, 200) {
        assert!(
            Instant::now() < deadline,
            "{listener}: not answering after the hogs left"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_beyond_the_cap_is_closed_at_once_and_the_other_port_keeps_answering() {
    let served = Served::start();
    fill_and_exceed(&served, served.https, MAX_TLS_CONNECTIONS, "https").await;
    fill_and_exceed(&served, served.metrics, MAX_METRICS_CONNECTIONS, "metrics").await;
    assert_eq!(good_review(&served).await, 200);
    let warned = served.records("connection limit reached; closing new connections until some end");
    let listeners: Vec<_> = warned.iter().map(|r| r["listener"].clone()).collect();
    assert_eq!(
        listeners,
        [json!("https"), json!("metrics")],
        "one warning per episode"
    );
}

/// A request, and the answers that count as handled: the status codes in order, where an
/// empty list means the connection was closed without one.
struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    answers: Vec<&'static [u16]>,
}

fn request(head: &str, body: &[u8]) -> Vec<u8> {
    [head.replace('\n', "\r\n").as_bytes(), b"\r\n", body].concat()
}

/// Hostile HTTP/1 requests. `with_body` is the method and path of the requests with a body:
/// `POST /mutate` on the HTTPS port, which reads it, and `GET /metrics` on the plain one,
/// which answers without reading it. `read` is whether the body is read.
fn http_cases(with_body: &str, read: bool) -> Vec<Case> {
    let p = with_body;
    let headers: String = (0..200).map(|i| format!("x-h{i}: v\n")).collect();
    // What a body the handler reads gets, and what one it does not read gets.
    let (bad_body, slow_body, not_a_review): (&[u16], &[u16], &[u16]) = if read {
        (&[400], &[408], &[400])
    } else {
        (&[200], &[200], &[200])
    };
    vec![
        Case {
            name: "HTTP/2 preface on an HTTP/1-only port",
            bytes: b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
            answers: vec![&[]],
        },
        Case {
            name: "h2c upgrade request",
            bytes: request(
                "GET /healthz HTTP/1.1\nhost: x\nconnection: upgrade, http2-settings, close\nupgrade: h2c\nhttp2-settings: AAMAAABkAAQCAAAAAAIAAAAA\n",
                b"",
            ),
            answers: vec![&[200]],
        },
        Case {
            name: "a 64 KiB header",
            bytes: request(
                &format!(
                    "GET /healthz HTTP/1.1\nhost: x\nx-big: {}\n",
                    "a".repeat(64 * 1024)
                ),
                b"",
            ),
            answers: vec![&[431], &[]],
        },
        Case {
            name: "200 headers",
            bytes: request(&format!("GET /healthz HTTP/1.1\nhost: x\n{headers}"), b""),
            answers: vec![&[431], &[]],
        },
        Case {
            name: "a 20 KiB path",
            bytes: request(
                &format!(
                    "GET /{} HTTP/1.1\nhost: x\nconnection: close\n",
                    "a".repeat(20 * 1024)
                ),
                b"",
            ),
            answers: vec![&[404]],
        },
        Case {
            name: "a 64 KiB path",
            bytes: request(
                &format!(
                    "GET /{} HTTP/1.1\nhost: x\nconnection: close\n",
                    "a".repeat(64 * 1024)
                ),
                b"",
            ),
            answers: vec![&[431], &[]],
        },
        Case {
            name: "binary request line",
            bytes: b"\x00\x01\x02\x03 \xff\xfe\r\n\r\n".to_vec(),
            answers: vec![&[400]],
        },
        Case {
            name: "space in a header name",
            bytes: request("GET /healthz HTTP/1.1\nhost: x\nbad header: v\n", b""),
            answers: vec![&[400]],
        },
        Case {
            name: "NUL in a header value",
            bytes: b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-a: a\x00b\r\n\r\n".to_vec(),
            answers: vec![&[400]],
        },
        Case {
            name: "HTTP/1.0 without host",
            bytes: b"GET /healthz HTTP/1.0\r\n\r\n".to_vec(),
            answers: vec![&[200]],
        },
        Case {
            name: "unknown method",
            bytes: request("BREW /healthz HTTP/1.1\nhost: x\nconnection: close\n", b""),
            answers: vec![&[405]],
        },
        Case {
            name: "three pipelined requests",
            bytes: [
                request("GET /healthz HTTP/1.1\nhost: x\n", b""),
                request("GET /readyz HTTP/1.1\nhost: x\n", b""),
                request("GET /healthz HTTP/1.1\nhost: x\nconnection: close\n", b""),
            ]
            .concat(),
            answers: vec![&[200, 200, 200]],
        },
        Case {
            name: "chunk size that is not hex",
            bytes: request(
                &format!("{p} HTTP/1.1\nhost: x\ntransfer-encoding: chunked\n"),
                b"zz\r\n{}\r\n0\r\n\r\n",
            ),
            answers: vec![bad_body],
        },
        Case {
            name: "chunk size past 64 bits",
            bytes: request(
                &format!("{p} HTTP/1.1\nhost: x\ntransfer-encoding: chunked\n"),
                b"fffffffffffffffffffff\r\n{}\r\n0\r\n\r\n",
            ),
            answers: vec![bad_body],
        },
        Case {
            name: "chunk announcing 256 MiB, then silence",
            bytes: request(
                &format!("{p} HTTP/1.1\nhost: x\ntransfer-encoding: chunked\n"),
                b"10000000\r\n{\"a\":",
            ),
            answers: vec![slow_body],
        },
        Case {
            name: "content-length shorter than the body",
            bytes: request(
                &format!("{p} HTTP/1.1\nhost: x\ncontent-length: 2\n"),
                b"{}GARBAGE / HTTP/1.1\r\nconnection: close\r\n\r\n",
            ),
            answers: vec![if read { &[400, 404] } else { &[200, 404] }],
        },
        Case {
            name: "content-length longer than the body, then silence",
            bytes: request(
                &format!("{p} HTTP/1.1\nhost: x\ncontent-length: 100\n"),
                b"{}",
            ),
            answers: vec![slow_body],
        },
        Case {
            name: "two different content-lengths",
            bytes: request(
                &format!("{p} HTTP/1.1\nhost: x\ncontent-length: 2\ncontent-length: 3\n"),
                b"{}",
            ),
            answers: vec![&[400]],
        },
        Case {
            // RFC 9112: chunked wins, and the connection is closed after the answer.
            name: "content-length and chunked together",
            bytes: request(
                &format!("{p} HTTP/1.1\nhost: x\ncontent-length: 2\ntransfer-encoding: chunked\n"),
                b"2\r\n{}\r\n0\r\n\r\n",
            ),
            answers: vec![not_a_review],
        },
        Case {
            name: "negative content-length",
            bytes: request(
                &format!("{p} HTTP/1.1\nhost: x\ncontent-length: -1\n"),
                b"{}",
            ),
            answers: vec![&[400]],
        },
        Case {
            name: "expect 100-continue and no body",
            bytes: request(
                &format!("{p} HTTP/1.1\nhost: x\ncontent-length: 10\nexpect: 100-continue\n"),
                b"",
            ),
            answers: vec![if read { &[100, 408] } else { &[200] }],
        },
    ]
}

async fn run_cases(
    port_name: &str,
    cases: Vec<Case>,
    mut connect: impl AsyncFnMut() -> Box<dyn AsyncStream>,
) -> Vec<String> {
    let mut failures = Vec::new();
    for case in cases {
        let mut stream = connect().await;
        let what = format!("{port_name}: {}", case.name);
        let started = Instant::now();
        let got = raw::exchange(&what, &mut stream, &case.bytes).await;
        let seen = statuses(&got);
        eprintln!("{what}: {seen:?} after {:?}", started.elapsed());
        if !case.answers.contains(&seen.as_slice()) {
            failures.push(format!(
                "{what}: got {seen:?}, wanted one of {:?}: {}",
                case.answers,
                String::from_utf8_lossy(&got[..got.len().min(300)])
            ));
        }
    }
    failures
}

trait AsyncStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> AsyncStream for T {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_http_requests_get_an_answer_or_a_closed_connection() {
    let mut served = Served::start();
    let (https, metrics, ca) = (served.https, served.metrics, served.ca_pem.clone());
    // The API server's deadline parameter keeps the cases that wait for a body short.
    let mut failures = run_cases(
        "https",
        http_cases("POST /mutate?timeout=1s", true),
        async || Box::new(raw::tls(https, &ca).await) as Box<dyn AsyncStream>,
    )
    .await;
    failures.extend(
        run_cases("metrics", http_cases("GET /metrics", false), async || {
            Box::new(raw::tcp(metrics).await) as Box<dyn AsyncStream>
        })
        .await,
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(good_review(&served).await, 200);
    assert_eq!(healthz(&served).await, (200, 200));
    assert!(served.alive());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_tls_clients_are_closed_and_the_port_keeps_serving() {
    let mut served = Served::start();
    let (port, ca) = (served.https, served.ca_pem.clone());
    let hello = raw::client_hello(&ca);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "bytes that are not TLS",
            (0..=255u8).cycle().take(4096).collect(),
        ),
        (
            "plain HTTP on the TLS port",
            b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n".to_vec(),
        ),
        // A handshake record announcing 64 KiB, past TLS's 16 KiB limit.
        (
            "an oversized record",
            [&[0x16, 0x03, 0x01, 0xff, 0xff][..], &[0u8; 64]].concat(),
        ),
        // A ClientHello whose length fields are cut short.
        ("a truncated ClientHello", hello[..hello.len() / 2].to_vec()),
        (
            "a ClientHello, then garbage",
            [&hello[..], &[0x17; 512][..]].concat(),
        ),
    ];
    for (name, bytes) in cases {
        let got = raw::exchange(name, &mut raw::tcp(port).await, &bytes).await;
        // A TLS alert at most: never an HTTP answer.
        assert!(statuses(&got).is_empty(), "{name}: {got:?}");
    }

    // A client that speaks only HTTP/2 (ALPN h2) is refused in the handshake.
    let mut h2_only = webhook::tls_config_trusting(&ca);
    h2_only.alpn_protocols = vec![b"h2".to_vec()];
    let Err(err) = raw::tls_with(port, h2_only).await else {
        panic!("a handshake without a common protocol succeeded");
    };
    assert!(err.to_string().contains("NoApplicationProtocol"), "{err}");

    // Garbage records after a completed handshake.
    let mut tls = raw::tls(port, &ca).await;
    tls.get_mut()
        .0
        .write_all(&[0x17, 0x03, 0x03, 0x00, 0x10])
        .await
        .unwrap();
    tls.get_mut().0.write_all(&[0xaa; 16]).await.unwrap();
    let got = raw::until_closed("a forged record after the handshake", &mut tls).await;
    assert!(statuses(&got).is_empty(), "{got:?}");

    assert_eq!(good_review(&served).await, 200);
    assert!(served.alive());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_off() {
    // About 45 MB of answers (4.6 KB each): more than the socket buffers of both ends hold.
    const REQUESTS: usize = 10_000;
    let served = Served::start();
    // A small receive window, so the server's writes stall after a few answers.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket
        .connect(([127, 0, 0, 1], served.metrics).into())
        .await
        .unwrap();
    let requests = b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n".repeat(REQUESTS);
    let (mut reader, mut writer) = stream.split();
    let write = async {
        // Stops when the server stops reading and goes away.
        let _ = writer.write_all(&requests).await;
    };
    let open = "kserve_keda_webhook_connections{listener=\"metrics\"}";
    let closed = async {
        // Counted open once, then closed by the server with answers still unread.
        let deadline = Instant::now() + WRITE_STALL_TIMEOUT + SLACK;
        let mut seen_open = false;
        loop {
            let now = sample(&served, true, open).await;
            seen_open |= now == Some(1.0);
            if seen_open && now == Some(0.0) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the stalled connection is still open"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::join!(write, closed);
    let got = raw::until_closed("after the stall", &mut reader).await;
    let answered = statuses(&got).len();
    assert!(answered > 0 && answered < REQUESTS, "{answered} answers");
    assert_eq!(healthz(&served).await, (200, 200));
}
