//! Self-managed certificates against the in-memory API server: the shared Secret, the race
//! between replicas, renewal, and publishing the CA in the webhook configuration; then a real
//! TLS client that trusts only the published bundle.

mod fake_api;
mod webhook;

use std::time::Duration;

use base64::Engine;
use fake_api::{Effect, FakeApi, Fault, MUTATING_WEBHOOK, SECRET, Verb};
use kserve_keda_webhook::tls::self_managed::{self, NOT_AFTER_ANNOTATION, SelfManaged};
use serde_json::{Value, json};

const NS: &str = "kkw";
const DAY: i64 = 24 * 3600;

fn cfg() -> SelfManaged {
    SelfManaged {
        secret_namespace: NS.into(),
        secret_name: "kkw-tls".into(),
        webhook_config: "kkw".into(),
        service_name: "kkw".into(),
        service_namespace: NS.into(),
        url: None,
        validity: Duration::from_secs(365 * 24 * 3600),
        renew_before: Duration::from_secs(30 * 24 * 3600),
        check_interval: Duration::from_millis(100),
    }
}

fn webhook_config(api: &FakeApi) {
    let hook = |name: &str, service: &str| {
        json!({
            "name": name,
            "admissionReviewVersions": ["v1"],
            "sideEffects": "NoneOnDryRun",
            "clientConfig": {"service": {"name": service, "namespace": NS, "path": "/mutate"}}
        })
    };
    api.create(
        MUTATING_WEBHOOK,
        "",
        json!({"metadata": {"name": "kkw"}, "webhooks": [hook("other.example.io", "someone-else"), hook("isvc.scaling.io", "kkw")]}),
    );
}

fn published(api: &FakeApi, index: usize) -> Option<String> {
    let config = api.get(MUTATING_WEBHOOK, "", "kkw")?;
    let b64 = config["webhooks"][index]["clientConfig"]["caBundle"].as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    String::from_utf8(bytes).ok()
}

fn secret_rv(api: &FakeApi) -> String {
    let s = api.get(SECRET, NS, "kkw-tls").unwrap();
    s["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn first_replica_creates_the_secret_and_later_calls_reuse_it() {
    let api = FakeApi::new();
    let now = 1_800_000_000;
    let first = self_managed::ensure(api.client(), &cfg(), now)
        .await
        .unwrap();
    let secret = api.get(SECRET, NS, "kkw-tls").unwrap();
    assert_eq!(secret["type"], "kubernetes.io/tls");
    // The label is how `kubectl get -l` and the chart's uninstall notes find it.
    assert_eq!(
        secret["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "kserve-keda-webhook"
    );
    assert_eq!(
        secret["metadata"]["annotations"][NOT_AFTER_ANNOTATION],
        (now + 365 * DAY).to_string()
    );
    let rv = secret_rv(&api);
    let again = self_managed::ensure(api.client(), &cfg(), now + 100 * DAY)
        .await
        .unwrap();
    assert_eq!(first, again);
    assert_eq!(
        rv,
        secret_rv(&api),
        "no write while the certificate is fresh"
    );
}

#[tokio::test]
async fn two_replicas_starting_together_agree_on_one_certificate() {
    let api = FakeApi::new();
    let now = 1_800_000_000;
    let c = cfg();
    let (a, b) = tokio::join!(
        self_managed::ensure(api.client_as("a"), &c, now),
        self_managed::ensure(api.client_as("b"), &c, now)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a, b, "both serve the certificate stored in the Secret");
    let creates = api
        .seen()
        .iter()
        .filter(|s| s.verb == Verb::Create && s.plural == "secrets")
        .count();
    assert!(creates >= 1);
    let stored = api.get(SECRET, NS, "kkw-tls").unwrap();
    let stored_cert = base64::engine::general_purpose::STANDARD
        .decode(stored["data"]["tls.crt"].as_str().unwrap())
        .unwrap();
    assert_eq!(stored_cert, a.serving.cert);
}

#[tokio::test]
async fn a_losing_create_reads_the_winners_secret() {
    let api = FakeApi::new();
    let now = 1_800_000_000;
    let winner = self_managed::ensure(api.client_as("a"), &cfg(), now)
        .await
        .unwrap();
    // Replica b read "absent" just before a created it: its create answers 409.
    api.fail(Fault {
        tag: Some("b"),
        verb: Verb::Get,
        plural: "secrets",
        times: 1,
        effect: Effect::Status(404),
    });
    let loser = self_managed::ensure(api.client_as("b"), &cfg(), now)
        .await
        .unwrap();
    assert_eq!(winner, loser);
}

#[tokio::test]
async fn renewal_keeps_the_previous_ca_in_the_bundle_and_survives_a_conflict() {
    let api = FakeApi::new();
    let start = 1_800_000_000;
    let old = self_managed::ensure(api.client(), &cfg(), start)
        .await
        .unwrap();
    // 340 days later fewer than 30 remain: renew. The first update loses a race (409).
    api.fail(Fault {
        tag: None,
        verb: Verb::Update,
        plural: "secrets",
        times: 1,
        effect: Effect::Status(409),
    });
    let later = start + 340 * DAY;
    let new = self_managed::ensure(api.client(), &cfg(), later)
        .await
        .unwrap();
    assert_ne!(new.serving, old.serving);
    assert_eq!(new.not_after, later + 365 * DAY);
    assert!(
        new.ca_bundle.contains(old.ca_bundle.trim()),
        "previous CA still trusted"
    );
    assert_eq!(new.ca_bundle.matches("BEGIN CERTIFICATE").count(), 2);
}

#[tokio::test]
async fn an_unusable_secret_is_replaced() {
    let api = FakeApi::new();
    api.create(
        SECRET,
        NS,
        json!({"metadata": {"name": "kkw-tls"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "eA==", "ca.crt": "bm90IGEgY2VydA=="}}),
    );
    let shared = self_managed::ensure(api.client(), &cfg(), 1_800_000_000)
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&shared.serving.cert).contains("BEGIN CERTIFICATE"));
    // The unparsable old "CA" is not carried into the published bundle.
    assert_eq!(shared.ca_bundle.matches("BEGIN CERTIFICATE").count(), 1);
    assert!(!shared.ca_bundle.contains("not a cert"));
}

#[tokio::test]
async fn a_secret_whose_pair_does_not_load_is_replaced() {
    let api = FakeApi::new();
    let now = 1_800_000_000;
    let first = self_managed::ensure(api.client(), &cfg(), now)
        .await
        .unwrap();
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    // Everything in place and far from expiry, but the pair itself is broken.
    let broken: [(&str, Vec<u8>, Vec<u8>); 3] = [
        (
            "swapped",
            first.serving.key.clone(),
            first.serving.cert.clone(),
        ),
        (
            "key cut short",
            first.serving.cert.clone(),
            first.serving.key[..40].to_vec(),
        ),
        ("empty certificate", Vec::new(), first.serving.key.clone()),
    ];
    for (what, cert, key) in broken {
        api.edit(SECRET, NS, "kkw-tls", |s| {
            s["data"]["tls.crt"] = json!(b64(&cert));
            s["data"]["tls.key"] = json!(b64(&key));
        });
        let next = self_managed::ensure(api.client(), &cfg(), now + DAY)
            .await
            .unwrap();
        assert!(
            kserve_keda_webhook::tls::server_config(
                &next.serving,
                std::path::Path::new("c"),
                std::path::Path::new("k")
            )
            .is_ok(),
            "{what}: a usable pair is served"
        );
        let stored = api.get(SECRET, NS, "kkw-tls").unwrap();
        assert_eq!(
            stored["data"]["tls.crt"],
            json!(b64(&next.serving.cert)),
            "{what}: and stored for the other replicas"
        );
    }
}

#[tokio::test]
async fn the_ca_is_published_only_on_our_webhook_and_only_when_it_changes() {
    let api = FakeApi::new();
    webhook_config(&api);
    let shared = self_managed::ensure(api.client(), &cfg(), 1_800_000_000)
        .await
        .unwrap();
    assert!(
        self_managed::publish_ca(api.client(), &cfg(), &shared.ca_bundle)
            .await
            .unwrap()
    );
    assert_eq!(
        published(&api, 1).as_deref(),
        Some(shared.ca_bundle.as_str())
    );
    assert_eq!(
        published(&api, 0),
        None,
        "another service's webhook is not touched"
    );
    assert!(
        !self_managed::publish_ca(api.client(), &cfg(), &shared.ca_bundle)
            .await
            .unwrap()
    );
    let patches = api
        .seen()
        .iter()
        .filter(|s| s.verb == Verb::Patch && s.plural == "mutatingwebhookconfigurations")
        .count();
    assert_eq!(patches, 1);

    let mut wrong = cfg();
    wrong.service_name = "nobody".into();
    let err = self_managed::publish_ca(api.client(), &wrong, "x")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("kkw/nobody"), "{err}");
}

#[tokio::test]
async fn started_server_is_trusted_through_the_published_bundle_and_the_bundle_heals() {
    let api = FakeApi::new();
    webhook_config(&api);
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_managed::start(api.client(), cfg(), dir.path().to_path_buf())
        .await
        .unwrap();
    assert!(cert.exists() && key.exists());
    let mut bundle = None;
    for _ in 0..50 {
        bundle = published(&api, 1);
        if bundle.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let bundle = bundle.expect("CA published");
    // The files load as a server configuration, and rustls' verifier accepts the certificate
    // for the name the API server dials, trusting only the published bundle.
    kserve_keda_webhook::tls::load(&cert, &key).unwrap();
    let pem = std::fs::read(&cert).unwrap();
    assert!(webhook::verifies(&bundle, &pem, "kkw.kkw.svc"));
    assert!(!webhook::verifies(&bundle, &pem, "elsewhere.kkw.svc"));

    // Someone wipes the caBundle (an upgrade, a hand edit): the next round puts it back.
    api.edit(MUTATING_WEBHOOK, "", "kkw", |o: &mut Value| {
        o["webhooks"][1]["clientConfig"]
            .as_object_mut()
            .unwrap()
            .remove("caBundle");
    });
    let mut healed = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if published(&api, 1).as_deref() == Some(bundle.as_str()) {
            healed = true;
            break;
        }
    }
    assert!(healed, "caBundle restored");
}

/// Every kind of call self-managed certificates make (create, reuse, renew, publish), for
/// the chart's RBAC.
#[tokio::test]
async fn the_certificate_calls_are_the_ones_the_chart_grants() {
    let api = FakeApi::new();
    webhook_config(&api);
    let now = 1_800_000_000;
    self_managed::ensure(api.client(), &cfg(), now)
        .await
        .unwrap();
    // Inside the renewal window: the Secret is replaced.
    let renewed = self_managed::ensure(api.client(), &cfg(), now + 340 * DAY)
        .await
        .unwrap();
    self_managed::publish_ca(api.client(), &cfg(), &renewed.ca_bundle)
        .await
        .unwrap();
    api.check_rbac_calls(
        "tests/chart/api-calls/self-managed-certs.txt",
        "# The calls of self-managed certificates (verb, API group, resource), recorded by\n# tests/certs.rs the_certificate_calls_are_the_ones_the_chart_grants.\n",
    );
}

#[test]
fn webhook_url_is_parsed_as_the_api_server_would() {
    let url: self_managed::WebhookUrl = "https://127.0.0.1:8443/mutate".parse().unwrap();
    assert_eq!(url.host, "127.0.0.1");
    let v6: self_managed::WebhookUrl = "https://[::1]:8443/mutate".parse().unwrap();
    assert_eq!(v6.host, "::1");
    for bad in [
        "http://127.0.0.1/mutate",
        "https://user@host/mutate",
        "https://host/mutate?x=1",
        "https://host/mutate#f",
        "/mutate",
    ] {
        let err = bad.parse::<self_managed::WebhookUrl>().unwrap_err();
        assert!(err.contains(bad), "{bad}: {err}");
    }
}

#[tokio::test]
async fn a_webhook_called_by_url_gets_the_ca_and_the_certificate_names_its_host() {
    let api = FakeApi::new();
    let url = "https://127.0.0.1:18443/mutate";
    api.create(
        MUTATING_WEBHOOK,
        "",
        json!({"metadata": {"name": "kkw"}, "webhooks": [{
            "name": "isvc.scaling.io",
            "admissionReviewVersions": ["v1"],
            "sideEffects": "NoneOnDryRun",
            "clientConfig": {"url": url}
        }]}),
    );
    let mut cfg = cfg();
    cfg.url = Some(url.parse().unwrap());
    assert!(cfg.dns_names().contains(&"127.0.0.1".to_string()));
    let shared = self_managed::ensure(api.client(), &cfg, 0).await.unwrap();
    assert!(
        self_managed::publish_ca(api.client(), &cfg, &shared.ca_bundle)
            .await
            .unwrap()
    );
    assert_eq!(
        published(&api, 0).as_deref(),
        Some(shared.ca_bundle.as_str())
    );
    // Without the URL setting the same configuration has no webhook of ours.
    let err = self_managed::publish_ca(api.client(), &self::cfg(), &shared.ca_bundle)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("has no webhook calling"), "{err}");
}
