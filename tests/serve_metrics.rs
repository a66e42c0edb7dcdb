//! `/metrics` of a running server: process metrics, the serving certificate's expiry (and
//! that it follows a rotation), reviews in flight and leadership, scraped as Prometheus would.

mod admission_review;
mod webhook;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use admission_review::{isvc, review};
use kserve_keda_webhook::core::settings::Settings;
use kserve_keda_webhook::tls;
use rustls::pki_types::ServerName;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use webhook::TestServer;

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The value of the unlabelled series `name`, if the scrape has it.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .map(|v| v.trim().parse().expect("a numeric sample"))
}

async fn scrape(client: &reqwest::Client, server: &TestServer) -> String {
    client
        .get(format!("{}/metrics", server.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn process_certificate_and_leader_series_are_exported() {
    let started = now();
    let server = TestServer::start(Settings::default()).await;
    let text = scrape(&server.client(), &server).await;

    // The test harness is this process: started before this test, within the last hour.
    let start = sample(&text, "process_start_time_seconds").expect(&text);
    assert!(
        start <= started + 1.0 && start > started - 3600.0,
        "{start}"
    );
    assert!(sample(&text, "process_cpu_seconds_total").is_some_and(|v| v >= 0.0));
    assert!(sample(&text, "process_resident_memory_bytes").is_some_and(|v| v > 1e6));
    // At least stdin/stdout/stderr and the listener.
    assert!(sample(&text, "process_open_fds").is_some_and(|v| v >= 4.0));
    assert!(sample(&text, "process_max_fds").is_some_and(|v| v >= 4.0));
    assert!(
        text.contains("# TYPE process_cpu_seconds counter"),
        "{text}"
    );

    // The test server's certificate is valid for an hour from its start.
    let expiry = sample(
        &text,
        "kserve_keda_webhook_certificate_expiry_timestamp_seconds",
    )
    .expect("certificate expiry");
    assert!(
        (expiry - (started + 3600.0)).abs() < 30.0,
        "{expiry} vs {started}"
    );
    // No controller in this server: not the leader.
    assert_eq!(sample(&text, "kserve_keda_webhook_leader"), Some(0.0));
    assert_eq!(
        sample(&text, "kserve_keda_webhook_admissions_in_flight"),
        Some(0.0)
    );
}

#[tokio::test]
async fn certificate_expiry_follows_a_rotation() {
    let server = TestServer::start_with(
        Settings::default(),
        Duration::from_millis(100),
        Duration::ZERO,
    )
    .await;
    let before = sample(
        &scrape(&server.client(), &server).await,
        "kserve_keda_webhook_certificate_expiry_timestamp_seconds",
    )
    .unwrap();
    let next = tls::self_signed(&["localhost".into()], Duration::from_secs(10 * 86400)).unwrap();
    let (cert, key) = server.cert_paths();
    webhook::write(&key, &next.serving.key);
    webhook::write(&cert, &next.serving.cert);
    let client = webhook::client_trusting(&next.ca_pem);
    let mut after = None;
    for _ in 0..50 {
        if let Ok(r) = client.get(format!("{}/metrics", server.url)).send().await {
            after = sample(
                &r.text().await.unwrap(),
                "kserve_keda_webhook_certificate_expiry_timestamp_seconds",
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = after.expect("the rotated certificate is served");
    let gained = after - before;
    assert!(
        (gained - (10.0 * 86400.0 - 3600.0)).abs() < 60.0,
        "{before} -> {after}"
    );
}

#[tokio::test]
async fn a_review_being_sent_counts_as_in_flight_until_it_ends() {
    let server = TestServer::start(Settings::default()).await;
    let client = server.client();
    let port: u16 = server.url.rsplit(':').next().unwrap().parse().unwrap();
    let body = serde_json::to_vec(&review(
        "CREATE",
        &isvc("qwen", Some(json!({"scaling.io/strategy": "tokens"}))),
        None,
        false,
    ))
    .unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let connector = TlsConnector::from(Arc::new(webhook::tls_config_trusting(&server.ca_pem)));
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let head = format!(
        "POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    // Half the body: the handler is running and waits for the rest.
    tls.write_all(&body[..body.len() / 2]).await.unwrap();
    tls.flush().await.unwrap();
    let mut seen = None;
    for _ in 0..50 {
        seen = sample(
            &scrape(&client, &server).await,
            "kserve_keda_webhook_admissions_in_flight",
        );
        if seen == Some(1.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen, Some(1.0), "the half-sent review is in flight");

    tls.write_all(&body[body.len() / 2..]).await.unwrap();
    let mut answer = Vec::new();
    tls.read_to_end(&mut answer).await.unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let text = scrape(&client, &server).await;
    assert_eq!(
        sample(&text, "kserve_keda_webhook_admissions_in_flight"),
        Some(0.0)
    );
    assert!(text.contains("kserve_keda_webhook_admission_requests_total{outcome=\"patched\"} 1"));

    // A client that gives up half-way leaves nothing counted.
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(&body[..10]).await.unwrap();
    tls.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(tls);
    let mut last = None;
    for _ in 0..50 {
        last = sample(
            &scrape(&client, &server).await,
            "kserve_keda_webhook_admissions_in_flight",
        );
        if last == Some(0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        last,
        Some(0.0),
        "an abandoned review is no longer in flight"
    );
}
