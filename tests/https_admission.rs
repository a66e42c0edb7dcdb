//! Drives the real admission server over TLS with a real HTTPS client.

mod admission_review;
mod webhook;

use std::time::Duration;

use admission_review::{apply_patch, isvc, review};
use kserve_keda_webhook::core::settings::Settings;
use kserve_keda_webhook::tls;
use serde_json::{Value, json};
use webhook::TestServer;

#[tokio::test]
async fn annotated_create_is_patched_to_raw_external_with_records() {
    let server = TestServer::start(Settings::default()).await;
    let object = isvc(
        "qwen",
        Some(json!({"scaling.io/strategy": "tokens", "team": "a"})),
    );
    let (status, body) = server.post(&review("CREATE", &object, None, false)).await;
    assert_eq!(status, 200);
    let resp = &body["response"];
    assert_eq!(body["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(body["kind"], "AdmissionReview");
    assert_eq!(resp["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
    assert_eq!(resp["allowed"], true);
    let patched = apply_patch(&body, &object).expect("a patch");
    let a = &patched["metadata"]["annotations"];
    assert_eq!(a["serving.kserve.io/deploymentMode"], "RawDeployment");
    assert_eq!(a["serving.kserve.io/autoscalerClass"], "external");
    assert_eq!(a["scaling.io/scaled-object"], "qwen-predictor");
    assert_eq!(a["scaling.io/scale-target"], "qwen-predictor");
    assert_eq!(a["team"], "a", "other annotations stay");
    assert_eq!(patched["spec"], object["spec"], "the spec is never touched");
}

#[tokio::test]
async fn empty_or_missing_annotation_maps_are_handled() {
    let server = TestServer::start(Settings::default()).await;
    let object = isvc("qwen", Some(json!({})));
    let (_, body) = server.post(&review("CREATE", &object, None, false)).await;
    assert_eq!(body["response"]["allowed"], true);
    assert!(body["response"].get("patch").is_none() || body["response"]["patch"].is_null());

    let mut managed = isvc("qwen", Some(json!({"scaling.io/strategy": "queue"})));
    let (_, body) = server.post(&review("CREATE", &managed, None, false)).await;
    let patched = apply_patch(&body, &managed).unwrap();
    managed["metadata"]["annotations"] = patched["metadata"]["annotations"].clone();
    // A replace with no annotations at all drops the request and our records with it:
    // allowed, and nothing to patch on a map that does not exist.
    let bare = isvc("qwen", None);
    let (_, body) = server
        .post(&review("UPDATE", &bare, Some(&managed), false))
        .await;
    assert_eq!(body["response"]["allowed"], true);
    assert!(apply_patch(&body, &bare).is_none());
}

#[tokio::test]
async fn unannotated_object_passes_untouched() {
    let server = TestServer::start(Settings::default()).await;
    let object = isvc("plain", None);
    let (status, body) = server.post(&review("CREATE", &object, None, false)).await;
    assert_eq!(status, 200);
    assert_eq!(body["response"]["allowed"], true);
    assert!(apply_patch(&body, &object).is_none());
    assert!(body["response"].get("warnings").is_none_or(Value::is_null));
}

#[tokio::test]
async fn invalid_annotation_is_denied_with_a_clear_message() {
    let server = TestServer::start(Settings::default()).await;
    let object = isvc(
        "qwen",
        Some(json!({"scaling.io/strategy": "tokens,latency"})),
    );
    let (status, body) = server.post(&review("CREATE", &object, None, false)).await;
    assert_eq!(status, 200, "a denial is a normal review response");
    let resp = &body["response"];
    assert_eq!(resp["allowed"], false);
    assert_eq!(resp["status"]["code"], 422);
    let msg = resp["status"]["message"].as_str().unwrap();
    assert!(
        msg.contains("scaling.io/strategy") && msg.contains("'latency'"),
        "{msg}"
    );
    assert!(msg.contains("allowed: tokens"), "{msg}");
    assert!(resp.get("patch").is_none_or(Value::is_null));
}

#[tokio::test]
async fn dry_run_gets_the_same_answer() {
    let server = TestServer::start(Settings::default()).await;
    let object = isvc("qwen", Some(json!({"scaling.io/strategy": "queue"})));
    let (_, wet) = server.post(&review("CREATE", &object, None, false)).await;
    let (_, dry) = server.post(&review("CREATE", &object, None, true)).await;
    assert_eq!(wet["response"]["patch"], dry["response"]["patch"]);
    assert_eq!(dry["response"]["allowed"], true);
}

#[tokio::test]
async fn update_adding_strategy_to_knative_object_is_denied() {
    let server = TestServer::start(Settings::default()).await;
    let mut old = isvc("qwen", None);
    old["status"] = json!({"deploymentMode": "Serverless"});
    let new = isvc("qwen", Some(json!({"scaling.io/strategy": "queue"})));
    let (_, body) = server
        .post(&review("UPDATE", &new, Some(&old), false))
        .await;
    assert_eq!(body["response"]["allowed"], false);
    let msg = body["response"]["status"]["message"].as_str().unwrap();
    assert!(
        msg.contains("Serverless") && msg.contains("recreate"),
        "{msg}"
    );
}

#[tokio::test]
async fn update_without_changes_has_no_patch_and_warnings_arrive() {
    let server = TestServer::start(Settings::default()).await;
    let object = isvc(
        "qwen",
        Some(json!({"scaling.io/strategy": "queue", "scaling.io/min-replicas": "0"})),
    );
    let (_, created) = server.post(&review("CREATE", &object, None, false)).await;
    let warnings = created["response"]["warnings"].as_array().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains("from zero")),
        "{warnings:?}"
    );
    let stored = apply_patch(&created, &object).unwrap();
    let (_, body) = server
        .post(&review("UPDATE", &stored, Some(&stored), false))
        .await;
    assert_eq!(body["response"]["allowed"], true);
    assert!(apply_patch(&body, &stored).is_none(), "{body}");
}

#[tokio::test]
async fn malformed_bodies_get_400_and_the_server_keeps_serving() {
    let server = TestServer::start(Settings::default()).await;
    let client = server.client();
    let url = format!("{}/mutate", server.url);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("not json", b"hello".to_vec()),
        (
            "truncated",
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionRe"#.to_vec(),
        ),
        (
            "no request",
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(),
        ),
        (
            "v1beta1",
            serde_json::to_vec(&{
                let mut r = review("CREATE", &isvc("a", None), None, false);
                r["apiVersion"] = json!("admission.k8s.io/v1beta1");
                r
            })
            .unwrap(),
        ),
        ("not utf-8", vec![0xff, 0xfe, 0x00, 0x7b]),
        ("empty", Vec::new()),
    ];
    for (name, body) in cases {
        let resp = client
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 400, "{name}");
        let text = resp.text().await.unwrap();
        assert!(text.contains("AdmissionReview"), "{name}: {text}");
    }
    // A huge body is refused before it is parsed.
    let huge = vec![b' '; 5 * 1024 * 1024];
    let resp = client.post(&url).body(huge).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 413);
    // And the server still answers a good review.
    let object = isvc("qwen", Some(json!({"scaling.io/strategy": "queue"})));
    let (status, body) = server.post(&review("CREATE", &object, None, false)).await;
    assert_eq!(
        (status, body["response"]["allowed"].clone()),
        (200, json!(true))
    );
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let server = TestServer::start(Settings::default()).await;
    let client = server.client();
    let get = |path: &str| client.get(format!("{}{path}", server.url)).send();
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    assert_eq!(get("/readyz").await.unwrap().status(), 200);
    let object = isvc("qwen", Some(json!({"scaling.io/strategy": "nope"})));
    server.post(&review("CREATE", &object, None, false)).await;
    let text = get("/metrics").await.unwrap().text().await.unwrap();
    assert!(
        text.contains(r#"kserve_keda_webhook_admission_requests_total{outcome="denied"} 1"#),
        "{text}"
    );
    assert!(text.contains("kserve_keda_webhook_admission_duration_seconds_bucket"));
}

#[tokio::test]
async fn readiness_drops_before_the_listener_closes() {
    let mut server = TestServer::start_with(
        Settings::default(),
        Duration::from_secs(60),
        Duration::from_millis(800),
    )
    .await;
    let client = server.client();
    server.stop();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Still listening during the shutdown delay, but no longer ready.
    let resp = client
        .get(format!("{}/readyz", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let object = isvc("qwen", Some(json!({"scaling.io/strategy": "queue"})));
    let (status, _) = server.post(&review("CREATE", &object, None, false)).await;
    assert_eq!(status, 200, "requests still succeed while draining");
    tokio::time::timeout(Duration::from_secs(10), &mut server.task)
        .await
        .expect("server stops after the delay")
        .unwrap();
}

#[tokio::test]
async fn rotated_certificate_is_served_without_restart() {
    let server = TestServer::start_with(
        Settings::default(),
        Duration::from_millis(100),
        Duration::ZERO,
    )
    .await;
    let old_client = server.client();
    assert_eq!(
        old_client
            .get(format!("{}/healthz", server.url))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let next = tls::self_signed(&["localhost".into()], Duration::from_secs(3600)).unwrap();
    let (cert, key) = server.cert_paths();
    // Key first, then certificate: a reload between the two writes sees a mismatched pair,
    // which must be rejected while the old certificate stays in service.
    webhook::write(&key, &next.serving.key);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        old_client
            .get(format!("{}/healthz", server.url))
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "a half-written rotation keeps the old certificate"
    );
    webhook::write(&cert, &next.serving.cert);
    let new_client = webhook::client_trusting(&next.ca_pem);
    let mut ok = false;
    for _ in 0..50 {
        if let Ok(r) = new_client
            .get(format!("{}/healthz", server.url))
            .send()
            .await
        {
            ok = r.status() == 200;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "the new certificate is served");
    assert!(
        old_client
            .get(format!("{}/healthz", server.url))
            .send()
            .await
            .is_err(),
        "the old CA no longer verifies the server"
    );
    let metrics = new_client
        .get(format!("{}/metrics", server.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"kserve_keda_webhook_certificate_reloads_total{result="success"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"kserve_keda_webhook_certificate_reloads_total{result="error"}"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_object_of_another_kind_is_refused_not_mutated() {
    let server = TestServer::start(Settings::default()).await;
    let mut pod = isvc("qwen", Some(json!({"scaling.io/strategy": "queue"})));
    pod["apiVersion"] = json!("v1");
    pod["kind"] = json!("Pod");
    let (status, body) = server.post(&review("CREATE", &pod, None, false)).await;
    assert_eq!(status, 200);
    assert_eq!(body["response"]["allowed"], false, "{body}");
    assert!(body["response"]["patch"].is_null(), "{body}");
    let msg = body["response"]["status"]["message"].as_str().unwrap();
    assert!(msg.contains("kind 'Pod'"), "{msg}");
}

#[tokio::test]
async fn an_update_without_the_stored_object_is_refused() {
    let server = TestServer::start(Settings::default()).await;
    let object = isvc("qwen", Some(json!({"scaling.io/strategy": "queue"})));
    let mut missing = review("UPDATE", &object, None, false);
    missing["request"]
        .as_object_mut()
        .unwrap()
        .remove("oldObject");
    for (what, r) in [
        ("null", review("UPDATE", &object, None, false)),
        ("missing", missing),
    ] {
        let (status, body) = server.post(&r).await;
        assert_eq!(status, 200, "{what}");
        assert_eq!(body["response"]["allowed"], false, "{what}: {body}");
        let msg = body["response"]["status"]["message"].as_str().unwrap();
        assert!(msg.contains("carries no oldObject"), "{what}: {msg}");
    }
}

fn assert_warnings_shown_whole(body: &serde_json::Value) -> usize {
    let warnings = body["response"]["warnings"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for w in &warnings {
        let w = w.as_str().unwrap();
        assert!(w.chars().count() <= 256, "{} chars: {w}", w.chars().count());
        assert!(!w.chars().any(char::is_control), "{w:?}");
    }
    warnings.len()
}

#[tokio::test]
async fn warnings_fit_in_256_characters_with_a_long_prefix() {
    let prefix = ["p".repeat(63), "q".repeat(63), "example".into()].join(".");
    let settings = Settings {
        prefix: prefix.clone(),
        ..Settings::default()
    };
    let server = TestServer::start(settings).await;
    let object = isvc(
        "qwen",
        Some(json!({
            format!("{prefix}/strategy"): "queue",
            format!("{prefix}/min-replicas"): "0",
            format!("{prefix}/target-ttft"): "2",
            "autoscaling.knative.dev/target": "5",
        })),
    );
    let (status, body) = server.post(&review("CREATE", &object, None, false)).await;
    assert_eq!(status, 200);
    assert_eq!(body["response"]["allowed"], true, "{body}");
    assert!(assert_warnings_shown_whole(&body) >= 2, "{body}");
}

#[tokio::test]
async fn policy_warnings_fit_in_256_characters_with_a_long_rule_name() {
    use kserve_keda_webhook::policy;
    use kserve_keda_webhook::scaling::Scaling;
    let yaml = format!(
        "rules:\n  - name: {}\n    enforcement: warn\n    limits:\n      maxReplicas: 2\n",
        "r".repeat(250)
    );
    let scaling = Scaling::new(
        Settings::default(),
        policy::parse(&yaml).unwrap(),
        std::sync::Arc::new(|_: &str| Default::default()),
    );
    let server = TestServer::start_with_scaling(
        std::sync::Arc::new(scaling),
        std::time::Duration::from_millis(200),
        std::time::Duration::ZERO,
    )
    .await;
    let object = isvc(
        "qwen",
        Some(json!({"scaling.io/strategy": "queue", "scaling.io/max-replicas": "5"})),
    );
    let (status, body) = server.post(&review("CREATE", &object, None, false)).await;
    assert_eq!(status, 200);
    assert_eq!(body["response"]["allowed"], true, "{body}");
    assert!(assert_warnings_shown_whole(&body) >= 1, "{body}");
}

#[tokio::test]
async fn values_with_control_characters_are_escaped_in_denials() {
    let server = TestServer::start(Settings::default()).await;
    let object = isvc(
        "qwen",
        Some(
            json!({"scaling.io/strategy": "queue", "scaling.io/runtime": "vllm\nWarning: injected\r\u{1b}[2J"}),
        ),
    );
    let (_, body) = server.post(&review("CREATE", &object, None, false)).await;
    assert_eq!(body["response"]["allowed"], false, "{body}");
    let msg = body["response"]["status"]["message"].as_str().unwrap();
    assert!(!msg.chars().any(char::is_control), "{msg:?}");
    assert!(
        msg.contains("vllm\\nWarning: injected\\r\\u{1b}[2J"),
        "{msg}"
    );
}

/// `certificate_reloads_total{result}` of the server at `url`.
async fn reloads(client: &reqwest::Client, url: &str, result: &str) -> u32 {
    let text = client
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = format!(r#"kserve_keda_webhook_certificate_reloads_total{{result="{result}"}} "#);
    text.lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn a_broken_rotation_keeps_the_current_certificate_in_service() {
    let server = TestServer::start_with(
        Settings::default(),
        Duration::from_millis(50),
        Duration::ZERO,
    )
    .await;
    let client = server.client();
    let (cert, key) = server.cert_paths();
    let good = std::fs::read(&cert).unwrap();
    let reloads = |result: &'static str| reloads(&client, &server.url, result);
    let broken: [(&str, Vec<u8>); 4] = [
        ("empty", Vec::new()),
        ("cut short", good[..good.len() / 2].to_vec()),
        ("a key", std::fs::read(&key).unwrap()),
        (
            "past the size limit",
            [good.clone(), vec![b'\n'; 2 << 20]].concat(),
        ),
    ];
    for (n, (what, bytes)) in broken.into_iter().enumerate() {
        webhook::write(&cert, &bytes);
        // Rejected versions are counted (except one too large to read, which is only
        // logged); either way the served certificate stays the one the client trusts.
        if what != "past the size limit" {
            let mut seen = 0;
            for _ in 0..100 {
                seen = reloads("error").await;
                if seen as usize > n {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert_eq!(seen as usize, n + 1, "{what}");
        } else {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let status = client
            .get(format!("{}/healthz", server.url))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200, "{what}");
        assert_eq!(reloads("success").await, 0, "{what} was not loaded");
    }
}
