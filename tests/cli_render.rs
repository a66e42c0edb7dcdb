//! `render` as a user runs it: the real binary, its stdout, stderr and exit code.

mod cli;
mod hostile_query;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use cli::{bin, docs};

fn render_file(path: &Path, extra: &[&str]) -> Output {
    bin()
        .arg("render")
        .arg("-f")
        .arg(path)
        .args(extra)
        .output()
        .unwrap()
}

fn render_stdin(input: &str, extra: &[&str]) -> Output {
    let mut child = bin()
        .args(["render", "-f", "-"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The child may exit on a bad flag before reading its input; a broken pipe is fine then.
    let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    child.wait_with_output().unwrap()
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

const MINIMAL: &str = "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata:\n  name: m\n  annotations:\n    scaling.io/strategy: queue\nspec:\n  predictor:\n    model:\n      modelFormat:\n        name: huggingface\n";

#[test]
fn example_renders_isvc_scaled_object_and_service_monitor() {
    let out = render_file(&examples().join("qwen25-05b.yaml"), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "no warnings expected: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d = docs(&out);
    let kinds: Vec<&str> = d.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "InferenceService",
            "ScaledObject",
            "ServiceMonitor",
            "PrometheusRule"
        ]
    );
    for doc in &d {
        assert!(doc["apiVersion"].is_string());
        assert!(doc["metadata"]["name"].is_string());
        assert_eq!(doc["metadata"]["namespace"], "llm");
    }
    assert_eq!(
        d[0]["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"],
        "external"
    );
    assert_eq!(
        d[1]["spec"]["scaleTargetRef"]["name"],
        "qwen25-05b-predictor"
    );
}

#[test]
fn every_example_renders() {
    for entry in std::fs::read_dir(examples()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.ends_with(".yaml") || name.contains("policy") {
            continue;
        }
        let out = render_file(&path, &[]);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(docs(&out).len() >= 2, "{name}");
    }
}

#[test]
fn namespace_comes_from_object_then_flag_then_default() {
    let d = docs(&render_stdin(MINIMAL, &[]));
    assert!(d.iter().all(|d| d["metadata"]["namespace"] == "default"));
    let d = docs(&render_stdin(MINIMAL, &["--namespace", "team-a"]));
    assert!(d.iter().all(|d| d["metadata"]["namespace"] == "team-a"));
    let with_ns = MINIMAL.replace("  name: m\n", "  name: m\n  namespace: own\n");
    let d = docs(&render_stdin(&with_ns, &["--namespace", "team-a"]));
    assert!(d.iter().all(|d| d["metadata"]["namespace"] == "own"));
}

#[test]
fn invalid_request_exits_1_with_nothing_on_stdout() {
    let bad = MINIMAL.replace("strategy: queue", "strategy: latency");
    let out = render_stdin(&bad, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("scaling.io/strategy") && err.contains("'latency'"),
        "{err}"
    );
}

#[test]
fn one_bad_document_fails_the_whole_render() {
    let two = format!(
        "{MINIMAL}---\n{}",
        MINIMAL.replace(
            "strategy: queue",
            "strategy: queue\n    scaling.io/min-replicas: \"-1\""
        )
    );
    let out = render_stdin(&two, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "no half result");
    assert!(String::from_utf8_lossy(&out.stderr).contains("scaling.io/min-replicas"));
}

#[test]
fn not_yaml_or_not_an_isvc_exits_2() {
    for (input, needle) in [
        ("key: [unclosed", "not valid YAML"),
        (
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x\n",
            "not an InferenceService",
        ),
        ("", "no document"),
        ("- just\n- a list\n", "not an InferenceService"),
    ] {
        let out = render_stdin(input, &[]);
        assert_eq!(out.status.code(), Some(2), "{input:?}");
        assert!(out.stdout.is_empty());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{input:?}: {err}");
    }
    let out = render_file(Path::new("/nonexistent/isvc.yaml"), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/isvc.yaml"));
}

#[test]
fn warnings_go_to_stderr_and_output_still_renders() {
    let input = MINIMAL.replace("    model:\n", "    minReplicas: 0\n    model:\n");
    let out = render_stdin(&input, &[]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("warning: default/m: "), "{err}");
    assert!(err.contains("from zero"), "{err}");
    assert_eq!(docs(&out).len(), 4);
}

#[test]
fn platform_flags_shape_the_output() {
    let out = render_stdin(
        MINIMAL,
        &[
            "--raw-mode",
            "Standard",
            "--prometheus-address",
            "http://prom.obs:9090",
            "--monitor-label",
            "release=kps",
            "--default-target",
            "queue=9",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d = docs(&out);
    assert_eq!(
        d[0]["metadata"]["annotations"]["serving.kserve.io/deploymentMode"],
        "Standard"
    );
    assert_eq!(
        d[1]["spec"]["triggers"][0]["metadata"]["serverAddress"],
        "http://prom.obs:9090"
    );
    assert_eq!(d[1]["spec"]["triggers"][0]["metadata"]["threshold"], "9");
    assert_eq!(d[2]["metadata"]["labels"]["release"], "kps");
    for bad in [
        vec!["--raw-mode", "Serverless"],
        vec!["--default-target", "queue=0"],
        vec!["--default-target", "latency=3"],
        vec!["--monitor-label", "novalue"],
    ] {
        let out = render_stdin(MINIMAL, &bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        assert!(out.stdout.is_empty());
    }
}

/// The upstream samples, when the shared folder is next to the repository: each gets a
/// strategy; those that ask KServe for its own KEDA scaling are refused with a message that
/// names the conflict, and render once that annotation is gone.
#[test]
fn upstream_samples_render_or_are_refused_clearly() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/samples/kserve");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!("skipped: {} is absent", dir.display());
        return;
    };
    let mut seen = 0;
    for entry in entries {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        seen += 1;
        let mut doc: serde_json::Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let ann = doc["metadata"]
            .as_object_mut()
            .unwrap()
            .entry("annotations")
            .or_insert_with(|| serde_json::json!({}));
        ann["scaling.io/strategy"] = "tokens".into();
        let keda = ann.get("serving.kserve.io/autoscalerClass").is_some();
        let out = render_stdin(&serde_yaml_ng::to_string(&doc).unwrap(), &[]);
        if keda {
            assert_eq!(out.status.code(), Some(1), "{}", path.display());
            assert!(
                String::from_utf8_lossy(&out.stderr)
                    .contains("serving.kserve.io/autoscalerClass=keda")
            );
            doc["metadata"]["annotations"]
                .as_object_mut()
                .unwrap()
                .remove("serving.kserve.io/autoscalerClass");
            let out = render_stdin(&serde_yaml_ng::to_string(&doc).unwrap(), &[]);
            assert!(
                out.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                String::from_utf8_lossy(&out.stderr)
                    .contains("spec.predictor.autoScaling is ignored")
            );
        } else {
            assert!(
                out.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let text = std::fs::read_to_string(&path).unwrap();
        if text.contains("--disable-log-stats") {
            assert!(String::from_utf8_lossy(&out.stderr).contains("--disable-log-stats"));
        }
    }
    assert!(seen > 0);
}

#[test]
fn flags_that_reach_object_names_and_labels_are_checked() {
    for (args, needle) in [
        (
            vec!["--monitor-label", "Bad Key=x"],
            "--monitor-label: 'Bad Key' is not a label key",
        ),
        (
            vec!["--monitor-label", "release=has space"],
            "--monitor-label release: 'has space' is not a label value",
        ),
        (
            vec!["--monitor-label", "Example.COM/a=b"],
            "--monitor-label: the prefix of key 'Example.COM/a'",
        ),
        (
            vec![
                "--trigger-auth-kind",
                "TriggerAuthentication",
                "--trigger-auth-name",
                "Bad Name",
            ],
            "--trigger-auth-name: 'Bad Name' is not a DNS-1123 subdomain",
        ),
        (
            vec!["-n", "te\"am"],
            "--namespace (-n): 'te\"am' is not a DNS-1123 label",
        ),
        (vec!["-n", &"n".repeat(64)], "is not a DNS-1123 label"),
        (
            vec!["--prometheus-address", "http://p:99999"],
            "--prometheus-address: 'http://p:99999' is not allowed: the port",
        ),
    ] {
        let out = render_stdin(MINIMAL, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    let out = render_stdin(
        MINIMAL,
        &[
            "--monitor-label",
            "app.kubernetes.io/part-of=llm",
            "--monitor-label",
            "empty=",
            "--trigger-auth-kind",
            "TriggerAuthentication",
            "--trigger-auth-name",
            "prom.auth-1",
            "-n",
            &"n".repeat(63),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn policy_annotation_prefixes_must_be_valid_annotation_key_prefixes() {
    let dir = tempfile::tempdir().unwrap();
    let long = vec!["a".repeat(63); 4].join(".");
    for prefix in ["Scaling.IO", "scaling_io", "a..b", "-a.io", &long] {
        let path = dir.path().join("policy.yaml");
        std::fs::write(
            &path,
            format!("defaults:\n  annotationPrefix: \"{prefix}\"\n"),
        )
        .unwrap();
        let out = bin()
            .args(["policy", "check", "--policy"])
            .arg(&path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{prefix}");
        assert!(
            err.contains("defaults.annotationPrefix")
                && err.contains("is not a DNS-1123 subdomain"),
            "{prefix}: {err}"
        );
    }
    let path = dir.path().join("ok.yaml");
    std::fs::write(
        &path,
        "defaults:\n  annotationPrefix: autoscaling.example-1.com\n",
    )
    .unwrap();
    let out = bin()
        .args(["policy", "check", "--policy"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn names_kserve_or_kubernetes_would_refuse_are_denied_with_the_field() {
    let with = |name: &str, predictor: &str| {
        format!(
            "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata:\n  name: '{name}'\n  annotations:\n    scaling.io/strategy: queue\nspec:\n  predictor:\n    name: '{predictor}'\n    model:\n      modelFormat:\n        name: huggingface\n"
        )
    };
    for (name, predictor, field) in [
        ("m", "x\"}) or vector(100) #", "spec.predictor.name"),
        ("m", "a|b", "spec.predictor.name"),
        ("m", "UPPER", "spec.predictor.name"),
        ("Model", "main", "metadata.name"),
        (
            "m",
            &"p".repeat(60),
            "metadata.name and spec.predictor.name",
        ),
    ] {
        let out = render_stdin(&with(name, predictor), &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}/{predictor}: {err}");
        assert!(err.contains(field), "{name}/{predictor}: {err}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn negative_zero_activation_renders_as_zero() {
    let input = MINIMAL.replace(
        "scaling.io/strategy: queue\n",
        "scaling.io/strategy: queue\n    scaling.io/activation-target: \"-0\"\n",
    );
    let out = render_stdin(&input, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d = docs(&out);
    let so = d.iter().find(|d| d["kind"] == "ScaledObject").unwrap();
    assert_eq!(
        so["spec"]["triggers"][0]["metadata"]["activationThreshold"],
        "0"
    );
}

/// Each nesting form of `scaling.io/query` is refused with the limit named: exit 1, not a
/// crash, for a `custom` and a built-in strategy alike.
#[test]
fn deeply_nested_queries_are_refused_with_the_limit_named() {
    for (form, query, needle) in hostile_query::forms() {
        for strategy in ["custom", "queue"] {
            // JSON is YAML, and it keeps the query's characters out of YAML's syntax.
            let isvc = serde_json::json!({
                "apiVersion": "serving.kserve.io/v1beta1",
                "kind": "InferenceService",
                "metadata": {"name": "m", "annotations": {
                    "scaling.io/strategy": strategy,
                    "scaling.io/target": "3",
                    "scaling.io/query": query,
                }},
                "spec": {"predictor": {"model": {"modelFormat": {"name": "huggingface"}}}},
            });
            let out = render_stdin(&isvc.to_string(), &[]);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{form}/{strategy}: {err}");
            assert!(out.stdout.is_empty(), "{form}/{strategy}");
            assert!(
                err.contains("scaling.io/query") && err.contains(needle),
                "{form}/{strategy}: {err}"
            );
            assert!(err.len() < 1024, "{form}/{strategy}: {} bytes", err.len());
        }
    }
}
