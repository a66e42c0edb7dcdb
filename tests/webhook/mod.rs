//! The webhook served over TLS on a loopback port for black-box tests, and real HTTPS
//! clients that trust only the test CA. The bodies to send are in `admission_review`.

#![allow(dead_code)]

pub mod raw;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kserve_keda_webhook::core::settings::Settings;
use kserve_keda_webhook::scaling::Scaling;
use kserve_keda_webhook::server::listener::{self, CertFiles, ServeOptions};
use kserve_keda_webhook::server::{AppState, Readiness};
use kserve_keda_webhook::tls;
use serde_json::Value;
use tokio::sync::oneshot;

pub struct TestServer {
    pub url: String,
    pub ca_pem: String,
    pub dir: tempfile::TempDir,
    pub state: AppState,
    stop: Option<oneshot::Sender<()>>,
    pub task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    pub async fn start(settings: Settings) -> TestServer {
        Self::start_with(
            settings,
            Duration::from_millis(200),
            Duration::from_millis(0),
        )
        .await
    }

    pub async fn start_with(
        settings: Settings,
        reload_interval: Duration,
        shutdown_delay: Duration,
    ) -> TestServer {
        let scaling = std::sync::Arc::new(Scaling::from(settings));
        Self::start_with_scaling(scaling, reload_interval, shutdown_delay).await
    }

    /// A server planning through `scaling` (with a policy, say).
    pub async fn start_with_scaling(
        scaling: std::sync::Arc<Scaling>,
        reload_interval: Duration,
        shutdown_delay: Duration,
    ) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let issued = tls::self_signed(
            &["localhost".into(), "127.0.0.1".into()],
            Duration::from_secs(3600),
        )
        .unwrap();
        let (cert, key, _) = tls::write_dir(dir.path(), &issued).unwrap();
        let listener = listener::listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = AppState::with_scaling(scaling, Readiness::new(false));
        let (stop, stopped) = oneshot::channel::<()>();
        let opts = ServeOptions {
            listener,
            metrics_listener: None,
            certs: CertFiles {
                cert,
                key,
                reload_interval,
            },
            shutdown_delay,
            drain_timeout: Duration::from_secs(5),
        };
        let task_state = state.clone();
        let task = tokio::spawn(async move {
            listener::run(opts, task_state, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        let server = TestServer {
            url: format!("https://localhost:{port}"),
            ca_pem: issued.ca_pem,
            dir,
            state,
            stop: Some(stop),
            task,
        };
        server.wait_ready().await;
        server
    }

    async fn wait_ready(&self) {
        for _ in 0..100 {
            if self.state.readiness.is_ready() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("server did not become ready");
    }

    pub fn client(&self) -> reqwest::Client {
        client_trusting(&self.ca_pem)
    }

    pub async fn post(&self, body: &Value) -> (u16, Value) {
        let resp = self
            .client()
            .post(format!("{}/mutate", self.url))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Begins shutdown and returns at once.
    pub fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }

    pub fn cert_paths(&self) -> (std::path::PathBuf, std::path::PathBuf) {
        (
            self.dir.path().join("tls.crt"),
            self.dir.path().join("tls.key"),
        )
    }
}

/// A rustls client configuration (ring) that trusts only the CAs in `ca_pem`.
pub fn tls_config_trusting(ca_pem: &str) -> rustls::ClientConfig {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// A real HTTPS client (reqwest over rustls) that trusts only `ca_pem` and opens a new
/// connection, with a full handshake, for every request.
pub fn client_trusting(ca_pem: &str) -> reqwest::Client {
    client_with(ca_pem, false)
}

/// Like `client_trusting`, but `keep_alive` reuses connections across requests.
pub fn client_with(ca_pem: &str, keep_alive: bool) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .tls_backend_preconfigured(tls_config_trusting(ca_pem))
        .timeout(Duration::from_secs(10));
    if !keep_alive {
        builder = builder.pool_max_idle_per_host(0);
    }
    builder.build().unwrap()
}

pub fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
}

/// Whether `cert_pem` (leaf first) chains to a CA in `bundle_pem` and is valid for `dns_name`,
/// checked by rustls' own server-certificate verifier.
pub fn verifies(bundle_pem: &str, cert_pem: &[u8], dns_name: &str) -> bool {
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(bundle_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .unwrap();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .map(|c| c.unwrap())
        .collect();
    let name = ServerName::try_from(dns_name.to_string()).unwrap();
    verifier
        .verify_server_cert(&chain[0], &chain[1..], &name, &[], UnixTime::now())
        .is_ok()
}
