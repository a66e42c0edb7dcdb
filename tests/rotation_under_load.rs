//! Certificate rotation while clients keep sending reviews: no request may fail.

mod admission_review;
mod webhook;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use admission_review::{isvc, review};
use kserve_keda_webhook::core::settings::Settings;
use kserve_keda_webhook::tls;
use serde_json::json;
use webhook::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_under_load_fails_no_request() {
    let server = TestServer::start_with(
        Settings::default(),
        Duration::from_millis(50),
        Duration::ZERO,
    )
    .await;
    let next = tls::self_signed(&["localhost".into()], Duration::from_secs(3600)).unwrap();
    // Clients trust the old and the new CA, as the published bundle does during a renewal.
    let bundle = format!("{}{}", server.ca_pem, next.ca_pem);
    let url = format!("{}/mutate", server.url);
    let body = review(
        "CREATE",
        &isvc("qwen", Some(json!({"scaling.io/strategy": "tokens"}))),
        None,
        false,
    );
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for i in 0..4 {
        // Half the clients reuse connections across the swap, half handshake every time.
        let client = webhook::client_with(&bundle, i % 2 == 1);
        let (url, body, ok, failed, stop) = (
            url.clone(),
            body.clone(),
            ok.clone(),
            failed.clone(),
            stop.clone(),
        );
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let good = match client.post(&url).json(&body).send().await {
                    Ok(r) if r.status() == 200 => r
                        .json::<serde_json::Value>()
                        .await
                        .is_ok_and(|v| v["response"]["allowed"] == true),
                    _ => false,
                };
                let counter = if good { &ok } else { &failed };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let before = ok.load(Ordering::Relaxed);
    let (cert, key) = server.cert_paths();
    // Write to temporary files and rename, as the kubelet's atomic Secret update does.
    for (path, bytes) in [(&key, &next.serving.key), (&cert, &next.serving.cert)] {
        let tmp = path.with_extension("new");
        std::fs::write(&tmp, bytes).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }
    // Wait until a client that trusts only the new CA gets through.
    let only_new = webhook::client_trusting(&next.ca_pem);
    let mut rotated = false;
    for _ in 0..100 {
        if only_new
            .get(format!("{}/healthz", server.url))
            .send()
            .await
            .is_ok()
        {
            rotated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    assert!(rotated, "the new certificate is served");
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert!(
        before > 0 && ok > before,
        "requests flowed before and after: {before} / {ok}"
    );
    assert_eq!(failed, 0, "{failed} of {} requests failed", ok + failed);
}
