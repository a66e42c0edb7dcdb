//! Hostile and broken clients against the real TLS server: every case ends in a clear answer
//! or a closed connection, and the server answers a good review afterwards.

mod admission_review;
mod hostile_query;
mod webhook;

use std::sync::Arc;
use std::time::{Duration, Instant};

use admission_review::{isvc, review};
use kserve_keda_webhook::core::settings::Settings;
use rustls::pki_types::ServerName;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use webhook::TestServer;

/// What a bad body must get.
#[derive(Debug)]
enum Expect {
    /// HTTP 400 whose text says what was wrong.
    BadRequest(&'static str),
    /// A review answer denying the object, with a message that does not echo the input.
    Denied(&'static str),
    /// A review answer allowing it.
    Allowed,
    /// 413, or the connection closed before the body was taken.
    TooLarge,
}

fn body(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

async fn still_serves(server: &TestServer, after: &str) {
    let object = isvc("qwen", Some(json!({"scaling.io/strategy": "queue"})));
    let (status, body) = server.post(&review("CREATE", &object, None, false)).await;
    assert_eq!(status, 200, "after {after}");
    assert_eq!(body["response"]["allowed"], true, "after {after}: {body}");
    assert!(body["response"]["patch"].is_string(), "after {after}");
}

#[tokio::test]
async fn bad_bodies_get_clear_answers_and_the_server_keeps_serving() {
    let server = TestServer::start(Settings::default()).await;
    let good = review(
        "CREATE",
        &isvc("qwen", Some(json!({"scaling.io/strategy": "queue"}))),
        None,
        false,
    );
    let text = serde_json::to_string(&good).unwrap();
    let with = |f: &dyn Fn(&mut Value)| {
        let mut v = good.clone();
        f(&mut v);
        body(&v)
    };
    let mega = "x".repeat(1024 * 1024);
    let cases: Vec<(&str, Vec<u8>, Expect)> = vec![
        (
            "truncated JSON",
            text.as_bytes()[..text.len() / 2].to_vec(),
            Expect::BadRequest("EOF while parsing"),
        ),
        (
            "wrong apiVersion",
            with(&|v| v["apiVersion"] = json!("admission.k8s.io/v1beta1")),
            Expect::BadRequest("apiVersion 'admission.k8s.io/v1beta1'; only admission.k8s.io/v1"),
        ),
        (
            "wrong kind",
            with(&|v| v["kind"] = json!("ConfigMap")),
            Expect::BadRequest("the body has kind 'ConfigMap'; only AdmissionReview is served"),
        ),
        (
            "request of the wrong type",
            with(&|v| v["request"] = json!([1, 2, 3])),
            Expect::BadRequest("AdmissionReview"),
        ),
        (
            "non-UTF-8",
            [
                b"{\"apiVersion\":\"".as_slice(),
                &[0xff, 0xfe, 0xc3, 0x28],
                b"\"}",
            ]
            .concat(),
            Expect::BadRequest("unicode"),
        ),
        (
            "100k nested arrays",
            "[".repeat(100_000).into_bytes(),
            Expect::BadRequest("invalid type: sequence"),
        ),
        (
            // Unknown fields are skipped without recursion: a clear syntax error.
            "100k nested arrays beside the spec",
            text.replacen(
                "\"spec\":",
                &format!("\"deep\":{},\"spec\":", "[".repeat(100_000)),
                1,
            )
            .into_bytes(),
            Expect::BadRequest("line 1 column"),
        ),
        (
            "100k nested objects beside the spec",
            {
                let t = text.replacen(
                    "\"spec\":",
                    &format!("\"deep\":{}0,\"spec\":", "{\"a\":".repeat(100_000)),
                    1,
                );
                t.into_bytes()
            },
            Expect::BadRequest("line 1 column"),
        ),
        (
            // The spec is checked as JSON text and skipped, not built into a tree: the same
            // clear syntax error as beside it, with no recursion.
            "100k nested arrays inside the spec",
            text.replacen(
                "\"spec\":{",
                &format!("\"spec\":{{\"deep\":{}", "[".repeat(100_000)),
                1,
            )
            .into_bytes(),
            Expect::BadRequest("line 1 column"),
        ),
        (
            "1 MiB annotation value elsewhere",
            with(&|v| {
                v["request"]["object"]["metadata"]["annotations"]["example.com/blob"] =
                    json!(mega.clone())
            }),
            Expect::Allowed,
        ),
        (
            "1 MiB value in a scaling.io annotation",
            with(&|v| {
                v["request"]["object"]["metadata"]["annotations"]["scaling.io/window"] =
                    json!(mega.clone())
            }),
            Expect::Denied("scaling.io/window"),
        ),
        (
            "1 MiB annotation key",
            with(&|v| {
                v["request"]["object"]["metadata"]["annotations"][format!("scaling.io/{mega}")] =
                    json!("1")
            }),
            Expect::Denied("is not a known annotation"),
        ),
        (
            "10 MiB body",
            vec![b' '; 10 * 1024 * 1024],
            Expect::TooLarge,
        ),
    ];
    let client = server.client();
    for (name, bytes, expect) in cases {
        let sent = client
            .post(format!("{}/mutate", server.url))
            .header("content-type", "application/json")
            .body(bytes)
            .send()
            .await;
        match (&expect, sent) {
            (Expect::TooLarge, Err(e)) => {
                // The server answered early and closed while the body was still going out.
                assert!(e.is_request() || e.is_body(), "{name}: {e:?}");
            }
            (_, Err(e)) => panic!("{name}: {e:?}"),
            (_, Ok(resp)) => {
                let status = resp.status().as_u16();
                let text = resp.text().await.unwrap_or_default();
                assert!(
                    text.len() < 4096,
                    "{name}: the answer echoes the input ({} bytes)",
                    text.len()
                );
                match expect {
                    Expect::BadRequest(needle) => {
                        assert_eq!(status, 400, "{name}: {text}");
                        assert!(text.contains(needle), "{name}: {text}");
                    }
                    Expect::TooLarge => assert_eq!(status, 413, "{name}: {text}"),
                    Expect::Allowed | Expect::Denied(_) => {
                        assert_eq!(status, 200, "{name}: {text}");
                        let v: Value = serde_json::from_str(&text).unwrap();
                        let allowed = matches!(expect, Expect::Allowed);
                        assert_eq!(v["response"]["allowed"], allowed, "{name}: {text}");
                        if let Expect::Denied(needle) = expect {
                            let msg = v["response"]["status"]["message"].as_str().unwrap();
                            assert!(msg.contains(needle), "{name}: {msg}");
                        }
                    }
                }
            }
        }
        still_serves(&server, name).await;
    }
}

fn connector(ca_pem: &str) -> TlsConnector {
    TlsConnector::from(Arc::new(webhook::tls_config_trusting(ca_pem)))
}

fn port(server: &TestServer) -> u16 {
    server.url.rsplit(':').next().unwrap().parse().unwrap()
}

async fn tls(server: &TestServer) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(("127.0.0.1", port(server)))
        .await
        .unwrap();
    connector(&server.ca_pem)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

/// Reads until the server closes the connection; returns what came and when it closed, or
/// `None` if it was still open after `limit`.
async fn until_closed<S: AsyncReadExt + Unpin>(
    s: &mut S,
    limit: Duration,
) -> Option<(Vec<u8>, Duration)> {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.checked_sub(started.elapsed())?;
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some((got, started.elapsed())),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn a_slowloris_client_is_cut_off_by_the_header_timeout() {
    let server = TestServer::start(Settings::default()).await;
    let mut s = tls(&server).await;
    let head = b"POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\nx-padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    let started = Instant::now();
    let mut cut = false;
    // One byte every 200 ms: the whole head would take far longer than the 5 s allowed.
    for b in head {
        if s.write_all(&[*b]).await.is_err() || s.flush().await.is_err() {
            cut = true;
            break;
        }
        let mut probe = [0u8; 1024];
        match tokio::time::timeout(Duration::from_millis(200), s.read(&mut probe)).await {
            Err(_) => {}
            Ok(Ok(0)) | Ok(Err(_)) => {
                cut = true;
                break;
            }
            Ok(Ok(_)) => {} // an early 408 is fine; the close must follow
        }
        if started.elapsed() > Duration::from_secs(9) {
            break;
        }
    }
    let took = started.elapsed();
    assert!(cut, "still open after {took:?}");
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(8),
        "closed after {took:?}, expected the 5 s header timeout"
    );
    still_serves(&server, "slowloris").await;
}

#[tokio::test]
async fn bytes_that_are_not_tls_close_the_connection() {
    let server = TestServer::start(Settings::default()).await;
    for garbage in [
        b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n".to_vec(),
        vec![0u8; 64],
        vec![0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5],
        (0..=255u8).cycle().take(100_000).collect(),
    ] {
        let mut tcp = TcpStream::connect(("127.0.0.1", port(&server)))
            .await
            .unwrap();
        let _ = tcp.write_all(&garbage).await;
        let closed = until_closed(&mut tcp, Duration::from_secs(5)).await;
        let (reply, _) = closed.expect("the server closes a connection that is not TLS");
        // At most a TLS alert record comes back, never an HTTP answer.
        assert!(reply.len() < 64, "{} bytes back", reply.len());
        assert!(!reply.starts_with(b"HTTP"), "{reply:?}");
    }
    still_serves(&server, "TLS garbage").await;
}

#[tokio::test]
async fn a_silent_tls_client_does_not_block_others() {
    let server = TestServer::start(Settings::default()).await;
    let mut silent = Vec::new();
    for _ in 0..20 {
        silent.push(tls(&server).await);
    }
    still_serves(&server, "20 silent TLS clients").await;
    // The header timeout covers the wait for the first request too.
    let closed = until_closed(&mut silent[0], Duration::from_secs(8)).await;
    let (_, after) = closed.expect("an idle TLS connection is closed");
    assert!(after < Duration::from_secs(8), "{after:?}");
    still_serves(&server, "silent TLS clients").await;
}

#[tokio::test]
async fn a_slow_request_in_flight_completes_after_shutdown_is_requested() {
    let mut server =
        TestServer::start_with(Settings::default(), Duration::from_secs(60), Duration::ZERO).await;
    let mut object = isvc("qwen", Some(json!({"scaling.io/strategy": "queue"})));
    object["metadata"]["annotations"]["example.com/blob"] = json!("y".repeat(256 * 1024));
    let payload = body(&review("CREATE", &object, None, false));
    let mut s = tls(&server).await;
    let head = format!(
        "POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        payload.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let (first, rest) = payload.split_at(payload.len() / 4);
    s.write_all(first).await.unwrap();
    s.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    server.stop();
    // The rest arrives over ~1.5 s, inside the request timeout but well after the stop.
    for chunk in rest.chunks(rest.len() / 8 + 1) {
        tokio::time::sleep(Duration::from_millis(180)).await;
        s.write_all(chunk).await.unwrap();
        s.flush().await.unwrap();
    }
    let (reply, _) = until_closed(&mut s, Duration::from_secs(10))
        .await
        .expect("the answer comes and the connection closes");
    let text = String::from_utf8_lossy(&reply);
    assert!(
        text.starts_with("HTTP/1.1 200"),
        "{}",
        &text[..text.len().min(300)]
    );
    let json_at = text.find("\r\n\r\n").unwrap() + 4;
    let v: Value = serde_json::from_str(&text[json_at..]).unwrap();
    assert_eq!(v["response"]["allowed"], true);
    assert!(v["response"]["patch"].is_string());
    tokio::time::timeout(Duration::from_secs(10), &mut server.task)
        .await
        .expect("the server stops once the request is done")
        .unwrap();
    assert!(
        TcpStream::connect(("127.0.0.1", port(&server)))
            .await
            .is_err(),
        "the listener is closed"
    );
}

/// A review of almost `size` bytes (a large annotation outside the prefix).
fn large_review(size: usize) -> Vec<u8> {
    let mut object = isvc("qwen", Some(json!({"scaling.io/strategy": "queue"})));
    object["metadata"]["annotations"]["example.com/blob"] = json!("z".repeat(size - 4096));
    body(&review("CREATE", &object, None, false))
}

/// Opens a TLS connection that announces a `len`-byte review and sends only its start, so
/// the server holds room for the whole body while it waits for the rest.
async fn stalled_upload(server: &TestServer, len: usize) -> TlsStream<TcpStream> {
    let mut s = tls(server).await;
    let head = format!(
        "POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {len}\r\n\r\n{{\"apiVersion\":"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.flush().await.unwrap();
    s
}

#[tokio::test]
async fn large_bodies_wait_for_room_and_are_shed_while_small_ones_pass() {
    use kserve_keda_webhook::server::{MAX_BODIES_IN_FLIGHT, MAX_BODY};
    let server = TestServer::start(Settings::default()).await;
    let big = large_review(MAX_BODY - 1024);
    assert!(big.len() <= MAX_BODY);
    // Uploads that never finish take all the room for large bodies.
    let mut stalled = Vec::new();
    for _ in 0..MAX_BODIES_IN_FLIGHT / MAX_BODY {
        stalled.push(stalled_upload(&server, MAX_BODY).await);
    }
    // Give the server time to see the heads; an ordinary review passes meanwhile.
    still_serves(&server, "stalled large uploads").await;

    let client = server.client();
    let resp = client
        .post(format!("{}/mutate", server.url))
        .header("content-type", "application/json")
        .body(big.clone())
        .send()
        .await
        .expect("a shed review is answered, not reset");
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(resp.headers()["retry-after"], "1");
    let text = resp.text().await.unwrap();
    assert!(text.contains("too many large admission reviews"), "{text}");
    still_serves(&server, "a shed large review").await;

    drop(stalled);
    // With the room back, concurrent large reviews are all answered: at once or after
    // waiting their turn, or shed with 429; never an error, and never all shed.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (client, url, big) = (server.client(), server.url.clone(), big.clone());
        tasks.push(tokio::spawn(async move {
            let resp = client
                .post(format!("{url}/mutate"))
                .header("content-type", "application/json")
                .body(big)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let v: Option<Value> = resp.json().await.ok();
            (status, v)
        }));
    }
    let mut answered = 0;
    for t in tasks {
        let (status, v) = t.await.unwrap();
        match status {
            200 => {
                let v = v.expect("a review answer");
                assert_eq!(v["response"]["allowed"], true, "{v}");
                answered += 1;
            }
            429 => {}
            other => panic!("status {other}"),
        }
    }
    assert!(answered > 0, "every large review was shed");
    still_serves(&server, "concurrent large reviews").await;
}

/// `serve` as its own process (a stack overflow aborts a process, so the harness must not be
/// the one serving), killed when dropped.
struct ServeChild {
    child: std::process::Child,
    port: String,
    ca: String,
    _dir: tempfile::TempDir,
}

impl ServeChild {
    fn start() -> ServeChild {
        use std::io::{BufRead, BufReader};
        use std::process::{Command, Stdio};
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_kserve-keda-webhook"))
            .args(["serve", "--self-signed", "--no-controller"])
            .args(["--addr", "127.0.0.1:0", "--log-format", "json"])
            .arg("--self-signed-dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let addr = loop {
            let line = rx
                .recv_timeout(Duration::from_secs(20))
                .expect("serve starts listening");
            if let Ok(v) = serde_json::from_str::<Value>(&line)
                && v["message"] == "listening for admission reviews over TLS"
            {
                break v["addr"].as_str().unwrap().to_string();
            }
        };
        let port = addr.rsplit(':').next().unwrap().to_string();
        let ca = std::fs::read_to_string(dir.path().join("ca.crt")).unwrap();
        ServeChild {
            child,
            port,
            ca,
            _dir: dir,
        }
    }

    async fn post(&self, body: &Value) -> Result<(u16, Value), reqwest::Error> {
        let resp = webhook::client_trusting(&self.ca)
            .post(format!("https://localhost:{}/mutate", self.port))
            .json(body)
            .send()
            .await?;
        let status = resp.status().as_u16();
        Ok((status, resp.json().await?))
    }

    /// Fails the test when the process has exited (crashed).
    fn assert_running(&mut self, after: &str) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("serve exited after {after}: {status:?}");
        }
    }
}

impl Drop for ServeChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every nesting form of `scaling.io/query`, with the `custom` strategy and with a built-in
/// one (the query is checked for any strategy), is denied with the limit named, and the
/// process keeps serving.
#[tokio::test]
async fn deeply_nested_queries_are_denied_and_serve_stays_up() {
    let mut serve = ServeChild::start();
    for (form, query, needle) in hostile_query::forms() {
        for strategy in ["custom", "queue"] {
            let object = isvc(
                "qwen",
                Some(json!({
                    "scaling.io/strategy": strategy,
                    "scaling.io/target": "3",
                    "scaling.io/query": query,
                })),
            );
            let answer = serve.post(&review("CREATE", &object, None, false)).await;
            serve.assert_running(form);
            let (status, v) = answer.unwrap_or_else(|e| panic!("{form}: {e:?}"));
            assert_eq!(status, 200, "{form}: {v}");
            assert_eq!(v["response"]["allowed"], false, "{form}: {v}");
            let msg = v["response"]["status"]["message"].as_str().unwrap();
            assert!(msg.contains("scaling.io/query"), "{form}: {msg}");
            assert!(msg.contains(needle), "{form}: {msg}");
            assert!(msg.len() < 1024, "{form}: {} bytes", msg.len());
        }
    }
    let good = isvc("qwen", Some(json!({"scaling.io/strategy": "queue"})));
    let (status, v) = serve
        .post(&review("CREATE", &good, None, false))
        .await
        .unwrap();
    assert_eq!((status, &v["response"]["allowed"]), (200, &json!(true)));
    serve.assert_running("a good review");
}
