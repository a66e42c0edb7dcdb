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

/// A name, the certificate and key files' bytes, and what the error must mention.
type BrokenPair = (&'static str, Vec<u8>, Vec<u8>, &'static str, &'static str);

/// `serve` refusing to start on a broken certificate or key file: the message names the file
/// and what is wrong with it, in terms an operator can act on.
#[test]
fn broken_certificate_files_are_named_with_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let issued = kserve_keda_webhook::tls::self_signed(
        &["localhost".into()],
        std::time::Duration::from_secs(3600),
    )
    .unwrap();
    let other = kserve_keda_webhook::tls::self_signed(
        &["localhost".into()],
        std::time::Duration::from_secs(3600),
    )
    .unwrap();
    let (cert, key) = (issued.serving.cert.clone(), issued.serving.key.clone());
    let cut = |b: &[u8]| b[..b.len() / 2].to_vec();
    let huge = [cert.clone(), vec![b'\n'; 2 * 1024 * 1024]].concat();
    let cases: Vec<BrokenPair> = vec![
        (
            "empty certificate",
            vec![],
            key.clone(),
            "tls.crt",
            "is empty",
        ),
        ("empty key", cert.clone(), vec![], "tls.key", "is empty"),
        (
            "truncated certificate",
            cut(&cert),
            key.clone(),
            "tls.crt",
            "cut short",
        ),
        (
            "truncated key",
            cert.clone(),
            cut(&key),
            "tls.key",
            "cut short",
        ),
        (
            "huge certificate",
            huge,
            key.clone(),
            "tls.crt",
            "larger than 1024 KiB",
        ),
        ("swapped", key.clone(), cert.clone(), "tls.crt", "swapped"),
        (
            "key where the key belongs, twice",
            key.clone(),
            key.clone(),
            "tls.crt",
            "holds PRIVATE KEY but no certificate",
        ),
        (
            "another certificate's key",
            cert.clone(),
            other.serving.key.clone(),
            "tls.key",
            "does not belong to the certificate",
        ),
    ];
    for (name, c, k, file, wanted) in cases {
        let (cert_path, key_path) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        std::fs::write(&cert_path, &c).unwrap();
        std::fs::write(&key_path, &k).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_kserve-keda-webhook"))
            .args(["serve", "--no-controller", "--addr", "127.0.0.1:0"])
            .arg("--tls-cert-file")
            .arg(&cert_path)
            .arg("--tls-key-file")
            .arg(&key_path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{name}");
        let err = String::from_utf8_lossy(&out.stderr);
        let named = dir.path().join(file).display().to_string();
        eprintln!("{name}: {}", err.trim());
        assert!(
            err.contains(&named) && err.contains(wanted),
            "{name}: {err}"
        );
    }
}

#[test]
fn a_port_in_use_is_named_once() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kserve-keda-webhook"))
        .args(["serve", "--self-signed", "--no-controller", "--addr", &addr])
        .arg("--self-signed-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
    assert_eq!(err.matches("in use").count(), 1, "{err}");
}
