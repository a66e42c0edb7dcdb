//! `serve` as an operator runs it: the real binary, self-signed TLS, SIGTERM.

mod admission_review;
mod webhook;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use admission_review::{apply_patch, isvc, review};
use serde_json::json;
use webhook::client_trusting;

#[tokio::test]
async fn self_signed_serve_answers_reviews_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kserve-keda-webhook"))
        .args([
            "serve",
            "--self-signed",
            "--no-controller",
            "--addr",
            "127.0.0.1:0",
        ])
        .args(["--shutdown-delay", "0", "--log-format", "json"])
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
    let mut addr = None;
    let mut ca_path_printed = false;
    while addr.is_none() {
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("server starts");
        ca_path_printed |= line.contains("ca.crt");
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
            && v["message"] == "listening for admission reviews over TLS"
        {
            addr = v["addr"].as_str().map(str::to_string);
        }
    }
    assert!(ca_path_printed, "the CA path is printed for clients");
    let port = addr.unwrap().rsplit(':').next().unwrap().to_string();
    let ca = std::fs::read_to_string(dir.path().join("ca.crt")).unwrap();
    let client = client_trusting(&ca);
    let object = isvc("qwen", Some(json!({"scaling.io/strategy": "tokens"})));
    let body: serde_json::Value = client
        .post(format!("https://localhost:{port}/mutate"))
        .json(&review("CREATE", &object, None, false))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let patched = apply_patch(&body, &object).unwrap();
    assert_eq!(
        patched["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"],
        "external"
    );
    // The per-request record, at the default level, says which request and who sent it.
    let record = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("an admission record");
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
            && v["message"] == "admitted"
        {
            break v;
        }
    };
    assert_eq!(record["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
    assert_eq!(record["user"], "alice");
    assert_eq!(record["level"], "INFO");

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut exited = None;
    for _ in 0..100 {
        if let Some(s) = child.try_wait().unwrap() {
            exited = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let exited = exited.expect("exits within 5 s of SIGTERM");
    assert!(exited.success(), "clean exit on SIGTERM: {exited:?}");
    // Lines leave through a writer thread and a buffer; none is held back at the exit.
    let last = rx.iter().last().expect("lines after the admission record");
    let last: serde_json::Value = serde_json::from_str(&last).unwrap();
    assert_eq!(last["message"], "stopped");
}

#[test]
fn serve_without_certificates_explains_what_is_missing() {
    let out = Command::new(env!("CARGO_BIN_EXE_kserve-keda-webhook"))
        .args(["serve", "--no-controller"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--tls-cert-file"), "{err}");
}

#[test]
fn unreadable_certificate_is_a_clear_startup_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_kserve-keda-webhook"))
        .args(["serve", "--no-controller", "--addr", "127.0.0.1:0"])
        .args([
            "--tls-cert-file",
            "/nonexistent/tls.crt",
            "--tls-key-file",
            "/nonexistent/tls.key",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/tls.crt"), "{err}");
}

#[test]
fn controller_without_a_cluster_is_a_clear_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kserve-keda-webhook"))
        .args(["serve", "--self-signed", "--addr", "127.0.0.1:0"])
        .arg("--self-signed-dir")
        .arg(dir.path())
        .env("KUBECONFIG", dir.path().join("no-such-kubeconfig"))
        .env("HOME", dir.path())
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--no-controller"), "{err}");
}

#[test]
fn self_managed_mode_names_each_missing_flag() {
    let out = Command::new(env!("CARGO_BIN_EXE_kserve-keda-webhook"))
        .args(["serve", "--no-controller", "--addr", "127.0.0.1:0"])
        .args(["--cert-mode", "self-managed", "--service-namespace", "kkw"])
        .args(["--webhook-config", "kkw", "--service-name", "kkw"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--cert-mode self-managed needs --cert-secret"),
        "{err}"
    );
}
