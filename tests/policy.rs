//! Platform policy end to end: `policy check`, `render --policy` on the shipped examples,
//! live reload (good, broken, removed file), and deny / warn / audit over HTTPS.

mod admission_review;
mod cli;
mod wait;
mod webhook;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use admission_review::{isvc, review};
use kserve_keda_webhook::core::plan::Input;
use kserve_keda_webhook::core::settings::Settings;
use kserve_keda_webhook::metrics::Metrics;
use kserve_keda_webhook::policy;
use kserve_keda_webhook::scaling::{self, Scaling};
use serde_json::{Value, json};
use webhook::TestServer;

use cli::{bin, docs, stderr};
use wait::eventually;

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
}

fn render(policy: &Path, input: &str, extra: &[&str]) -> Output {
    let mut child = bin()
        .args(["render", "-f", "-", "--policy"])
        .arg(policy)
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    child.wait_with_output().unwrap()
}

/// The Qwen example moved to another namespace, with extra annotations and predictor fields.
fn qwen(ns: &str, annotations: &[(&str, &str)], max_replicas: u32) -> String {
    let mut doc: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(example("qwen25-05b.yaml")).unwrap())
            .unwrap();
    doc["metadata"]["namespace"] = json!(ns);
    for (k, v) in annotations {
        doc["metadata"]["annotations"][*k] = json!(v);
    }
    doc["spec"]["predictor"]["maxReplicas"] = json!(max_replicas);
    serde_yaml_ng::to_string(&doc).unwrap()
}

#[test]
fn every_shipped_policy_passes_check() {
    let mut seen = 0;
    for entry in std::fs::read_dir(example("")).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .contains("policy")
        {
            seen += 1;
            let out = bin()
                .args(["policy", "check", "--policy"])
                .arg(&path)
                .output()
                .unwrap();
            assert!(out.status.success(), "{}: {}", path.display(), stderr(&out));
            assert!(String::from_utf8_lossy(&out.stdout).ends_with(": ok\n"));
        }
    }
    assert_eq!(seen, 3);
}

#[test]
fn policy_check_points_at_the_line_or_field() {
    let dir = tempfile::tempdir().unwrap();
    for (text, needles) in [
        (
            "rules:\n  - name: cap\n    limits:\n      maxReplica: 4\n",
            vec!["unknown field `maxReplica`", "line 4"],
        ),
        (
            "rules:\n  - name: cap\n    enforcement: block\n",
            vec!["block", "line 3"],
        ),
        (
            "limits: {maxReplicas: 4}\ndefaults: {maxReplicas: 9}\n",
            vec!["limits.maxReplicas", "default 9 is above the limit 4"],
        ),
        // A rule's default that another rule's limit refuses where both apply: both named.
        (
            "rules:\n  - name: cap\n    limits: {maxReplicas: 4}\n  - name: team\n    namespaces: [search]\n    defaults: {maxReplicas: 9}\n",
            vec![
                "rules[1] (team).defaults.maxReplicas",
                "rules[0] (cap).limits.maxReplicas",
                "namespace search",
            ],
        ),
        // A typo in a selector used to select every namespace.
        (
            "rules:\n  - name: cap\n    namespaceSelector:\n      matchLabel: {tier: gold}\n",
            vec![
                "unknown field `matchLabel`",
                "line 4",
                "rules[0].namespaceSelector",
            ],
        ),
    ] {
        let path = dir.path().join("p.yaml");
        std::fs::write(&path, text).unwrap();
        let out = bin()
            .args(["policy", "check", "--policy"])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{text}");
        let err = stderr(&out);
        assert!(err.contains("p.yaml"), "{err}");
        for n in needles {
            assert!(err.contains(n), "{text}: {err}");
        }
    }
}

/// A file with no end, one past the cap, or not UTF-8: refused by what it is, without reading
/// more than the cap.
#[test]
fn policy_check_refuses_endless_oversized_and_binary_files() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.yaml");
    std::fs::write(&big, format!("# {}\n", "x".repeat(1024 * 1024))).unwrap();
    let binary = dir.path().join("binary.yaml");
    std::fs::write(&binary, b"limits: {maxReplicas: 4}\n\xff\xfe\n").unwrap();
    for (path, says) in [
        (Path::new("/dev/zero"), "at most 1048576 bytes (1 MiB)"),
        (big.as_path(), "at most 1048576 bytes (1 MiB)"),
        (binary.as_path(), "is not UTF-8 text (byte 25"),
    ] {
        for command in [
            vec!["policy", "check", "--policy"],
            vec!["render", "-f", "-", "--policy"],
        ] {
            let out = bin()
                .args(&command)
                .arg(path)
                .stdin(Stdio::null())
                .output()
                .unwrap();
            // `policy check` exits 1, `render` 2 (its code for a usage error).
            assert!(
                matches!(out.status.code(), Some(1 | 2)),
                "{command:?} {}",
                path.display()
            );
            let err = stderr(&out);
            assert!(err.contains(says), "{command:?} {}: {err}", path.display());
        }
    }
}

#[test]
fn team_defaults_example() {
    let policy = example("policy-team-defaults.yaml");
    let mut doc: Value = serde_yaml_ng::from_str(&qwen("search", &[], 4)).unwrap();
    doc["spec"]["predictor"]
        .as_object_mut()
        .unwrap()
        .remove("minReplicas");
    let out = render(&policy, &serde_yaml_ng::to_string(&doc).unwrap(), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let d = docs(&out);
    let so = &d[1]["spec"];
    assert_eq!(so["minReplicaCount"], 2, "rule default");
    assert_eq!(
        so["maxReplicaCount"], 4,
        "spec.predictor.maxReplicas beats the rule default"
    );
    assert_eq!(so["pollingInterval"], 15, "cluster default");
    assert_eq!(
        so["triggers"][0]["metadata"]["threshold"], "1500",
        "cluster target"
    );
    assert_eq!(
        so["triggers"][1]["metadata"]["threshold"], "4",
        "rule target beats cluster target"
    );
    assert_eq!(
        so["triggers"][0]["metadata"]["serverAddress"],
        "http://kube-prometheus-stack-prometheus.monitoring.svc:9090"
    );
    assert_eq!(
        d[2]["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    // Another namespace gets the cluster defaults only.
    let d = docs(&render(&policy, &qwen("web", &[], 4), &[]));
    assert_eq!(d[1]["spec"]["triggers"][1]["metadata"]["threshold"], "8");
}

#[test]
fn gpu_cap_example() {
    let policy = example("policy-gpu-cap.yaml");
    let research = ["--namespace-label", "team-type=research"];
    assert!(
        render(&policy, &qwen("lab", &[], 4), &research)
            .status
            .success()
    );
    let out = render(&policy, &qwen("lab", &[], 8), &research);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("rule 'research-gpu-cap': max replicas 8 is above the limit 4"),
        "{}",
        stderr(&out)
    );
    assert!(out.stdout.is_empty());
    // Without the label the cluster cap (16) applies.
    assert!(render(&policy, &qwen("lab", &[], 8), &[]).status.success());
    // An exempt namespace may go past every cap.
    let exempt = ["--namespace-label", "scaling.io/policy=exempt"];
    assert!(
        render(&policy, &qwen("lab", &[], 40), &exempt)
            .status
            .success()
    );
    // A GPU model without a strategy is given one.
    let mut doc: Value = serde_yaml_ng::from_str(&qwen("lab", &[], 4)).unwrap();
    doc["metadata"]["annotations"]
        .as_object_mut()
        .unwrap()
        .remove("scaling.io/strategy");
    let out = render(&policy, &serde_yaml_ng::to_string(&doc).unwrap(), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let d = docs(&out);
    assert_eq!(
        d[0]["metadata"]["annotations"]["scaling.io/strategy"],
        "tokens"
    );
    assert_eq!(d[1]["kind"], "ScaledObject");
}

#[test]
fn rollout_example_warns_then_enforces() {
    let policy = example("policy-rollout.yaml");
    let gpu_strategy = [("scaling.io/strategy", "gpu")];
    // Pilot namespace: enforced.
    let out = render(&policy, &qwen("search", &gpu_strategy, 4), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("rule 'approved-strategies-pilot': strategy gpu is not allowed here"),
        "{}",
        stderr(&out)
    );
    // Everywhere else: rendered, with a warning naming the rule.
    let out = render(&policy, &qwen("web", &gpu_strategy, 4), &[]);
    assert!(out.status.success());
    assert!(
        stderr(&out).contains(
            "policy (warn): rule 'approved-strategies': strategy gpu is not allowed here"
        ),
        "{}",
        stderr(&out)
    );
}

fn write_policy(path: &Path, text: &str) {
    // Replace atomically, as the kubelet does with a ConfigMap volume.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn max_of(scaling: &Scaling, max: &str) -> Result<u32, String> {
    let meta = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        name: Some("m".into()),
        namespace: Some("a".into()),
        annotations: Some(BTreeMap::from([
            ("scaling.io/strategy".to_string(), "queue".to_string()),
            ("scaling.io/max-replicas".to_string(), max.to_string()),
        ])),
        ..Default::default()
    };
    let view = kserve_keda_webhook::core::isvc::Isvc::from_parts(&meta, &json!({}), "a").unwrap();
    scaling
        .plan(
            Input {
                isvc: &view,
                old: None,
                live_deployment: None,
            },
            None,
        )
        .map(|p| p.scaled_object.unwrap().spec.max_replica_count)
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn policy_reloads_and_a_broken_or_removed_file_keeps_the_last_good_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.yaml");
    let first = "limits: {maxReplicas: 4}\n";
    write_policy(&path, first);
    let scaling = Arc::new(Scaling::new(
        Settings::default(),
        policy::parse(first).unwrap(),
        Arc::new(|_: &str| BTreeMap::new()),
    ));
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Metrics::new(&mut registry);
    let task = tokio::spawn(scaling::watch_policy(
        scaling.clone(),
        path.clone(),
        first.to_string(),
        Duration::from_millis(50),
        metrics,
    ));
    assert!(max_of(&scaling, "6").is_err());

    write_policy(&path, "limits: {maxReplicas: 8}\n");
    eventually("the policy reload", || max_of(&scaling, "6").is_ok()).await;
    assert!(max_of(&scaling, "9").is_err());

    write_policy(&path, "limits: {maxReplicas: lots}\n");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        max_of(&scaling, "6").is_ok() && max_of(&scaling, "9").is_err(),
        "broken file: last good policy stays"
    );
    let text = kserve_keda_webhook::metrics::encode(&registry);
    assert!(
        text.contains(r#"kserve_keda_webhook_policy_reloads_total{result="error"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"kserve_keda_webhook_policy_reloads_total{result="success"} 1"#),
        "{text}"
    );

    std::fs::remove_file(&path).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        max_of(&scaling, "6").is_ok() && max_of(&scaling, "9").is_err(),
        "removed file: last good policy stays"
    );

    write_policy(&path, "");
    eventually("the policy reload", || max_of(&scaling, "9").is_ok()).await;
    task.abort();
}

#[tokio::test]
async fn deny_warn_and_audit_over_https() {
    let text = r#"
rules:
  - {name: strict, namespaces: [strict], enforcement: enforce, limits: {maxReplicas: 2}}
  - {name: soft, namespaces: [soft], enforcement: warn, limits: {maxReplicas: 2}}
  - {name: quiet, namespaces: [quiet], enforcement: audit, limits: {maxReplicas: 2}}
"#;
    let scaling = Arc::new(Scaling::new(
        Settings::default(),
        policy::parse(text).unwrap(),
        Arc::new(|_: &str| BTreeMap::new()),
    ));
    let server =
        TestServer::start_with_scaling(scaling, Duration::from_secs(60), Duration::ZERO).await;
    let ask = |ns: &str| {
        let mut obj = isvc(
            "m",
            Some(json!({"scaling.io/strategy": "queue", "scaling.io/max-replicas": "5"})),
        );
        obj["metadata"]["namespace"] = json!(ns);
        let mut r = review("CREATE", &obj, None, false);
        r["request"]["namespace"] = json!(ns);
        r
    };
    let (_, body) = server.post(&ask("strict")).await;
    assert_eq!(body["response"]["allowed"], false);
    let msg = body["response"]["status"]["message"].as_str().unwrap();
    assert!(
        msg.contains("rule 'strict': max replicas 5 is above the limit 2"),
        "{msg}"
    );

    let (_, body) = server.post(&ask("soft")).await;
    assert_eq!(body["response"]["allowed"], true);
    let warnings = body["response"]["warnings"].to_string();
    assert!(
        warnings.contains("policy (warn): rule 'soft'"),
        "{warnings}"
    );

    let (_, body) = server.post(&ask("quiet")).await;
    assert_eq!(body["response"]["allowed"], true);
    assert!(
        body["response"].get("warnings").is_none(),
        "audit tells the user nothing: {body}"
    );

    let metrics = server
        .client()
        .get(format!("{}/metrics", server.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"kserve_keda_webhook_policy_findings_total{mode="warn"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"kserve_keda_webhook_policy_findings_total{mode="audit"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn exemption_annotation_is_guarded_by_group() {
    let text = "limits: {maxReplicas: 2}\nexemptions:\n  annotation: policy.scaling.io/exempt\n  allowedGroups: [platform-admins]\n";
    let scaling = Arc::new(Scaling::new(
        Settings::default(),
        policy::parse(text).unwrap(),
        Arc::new(|_: &str| BTreeMap::new()),
    ));
    let server =
        TestServer::start_with_scaling(scaling, Duration::from_secs(60), Duration::ZERO).await;
    let obj = isvc(
        "m",
        Some(
            json!({"scaling.io/strategy": "queue", "scaling.io/max-replicas": "5", "policy.scaling.io/exempt": "true"}),
        ),
    );
    let (_, body) = server.post(&review("CREATE", &obj, None, false)).await;
    assert_eq!(
        body["response"]["allowed"], false,
        "alice is not a platform admin"
    );
    assert!(
        body["response"]["status"]["message"]
            .as_str()
            .unwrap()
            .contains("platform-admins")
    );
    let mut admin = review("CREATE", &obj, None, false);
    admin["request"]["userInfo"] = json!({"username": "bob", "groups": ["platform-admins"]});
    let (_, body) = server.post(&admin).await;
    assert_eq!(body["response"]["allowed"], true);
}

#[tokio::test]
async fn exemption_annotation_on_update_is_guarded_and_its_removal_is_not() {
    let text = "limits: {maxReplicas: 2}\nexemptions:\n  annotation: policy.scaling.io/exempt\n  allowedGroups: [platform-admins]\n";
    let scaling = Arc::new(Scaling::new(
        Settings::default(),
        policy::parse(text).unwrap(),
        Arc::new(|_: &str| BTreeMap::new()),
    ));
    let server =
        TestServer::start_with_scaling(scaling, Duration::from_secs(60), Duration::ZERO).await;
    let with = |max: &str, exempt: Option<&str>| {
        // Stored in raw mode, as admission created it: only the exemption is in question.
        let mut a = json!({
            "scaling.io/strategy": "queue", "scaling.io/max-replicas": max,
            "serving.kserve.io/deploymentMode": "RawDeployment",
            "serving.kserve.io/autoscalerClass": "external",
        });
        if let Some(v) = exempt {
            a["policy.scaling.io/exempt"] = json!(v);
        }
        isvc("m", Some(a))
    };
    let update = |new: &Value, old: &Value, admin: bool| {
        let mut r = review("UPDATE", new, Some(old), false);
        if admin {
            r["request"]["userInfo"] = json!({"username": "bob", "groups": ["platform-admins"]});
        }
        r
    };
    let cases = [
        // (what, new, old, admin, allowed)
        (
            "user adds it (kubectl annotate)",
            with("5", Some("true")),
            with("2", None),
            false,
            false,
        ),
        (
            "user adds it without other changes",
            with("2", Some("true")),
            with("2", None),
            false,
            false,
        ),
        (
            "user flips false to true",
            with("5", Some("true")),
            with("5", Some("false")),
            false,
            false,
        ),
        (
            "user changes true to another value",
            with("2", Some("yes")),
            with("2", Some("true")),
            false,
            false,
        ),
        (
            "admin adds it",
            with("5", Some("true")),
            with("2", None),
            true,
            true,
        ),
        (
            "admin changes it",
            with("5", Some("true")),
            with("5", Some("false")),
            true,
            true,
        ),
        (
            "user edits something else on an exempt object",
            with("6", Some("true")),
            with("5", Some("true")),
            false,
            true,
        ),
        (
            "user removes it",
            with("2", None),
            with("5", Some("true")),
            false,
            true,
        ),
    ];
    for (what, new, old, admin, allowed) in cases {
        let (_, body) = server.post(&update(&new, &old, admin)).await;
        assert_eq!(body["response"]["allowed"], allowed, "{what}: {body}");
        if !allowed {
            let msg = body["response"]["status"]["message"].as_str().unwrap();
            assert!(msg.contains("policy.scaling.io/exempt"), "{what}: {msg}");
            assert!(msg.contains("platform-admins"), "{what}: {msg}");
        }
    }
    // Removing the exemption brings the limits back.
    let (_, body) = server
        .post(&update(&with("5", None), &with("5", Some("true")), false))
        .await;
    assert_eq!(body["response"]["allowed"], false, "{body}");
    let msg = body["response"]["status"]["message"].as_str().unwrap();
    assert!(msg.contains("above the limit 2"), "{msg}");
}
