//! AdmissionReview bodies shared by the benchmarks: a small InferenceService like the
//! examples and a large one, each with or without a scaling annotation.

use serde_json::{Value, json};

/// The four review bodies, as (label, body, annotated), small ones first.
pub fn reviews() -> Vec<(String, Vec<u8>, bool)> {
    let mut v = Vec::new();
    for (size, annotated) in [(false, true), (false, false), (true, true), (true, false)] {
        let object = if size {
            large(annotated)
        } else {
            small(annotated)
        };
        let body = serde_json::to_vec(&review(&object)).expect("JSON");
        let label = format!(
            "review, {} ({:.1} KiB), {}",
            if size { "large" } else { "small" },
            body.len() as f64 / 1024.0,
            if annotated {
                "annotated (patched)"
            } else {
                "not annotated"
            }
        );
        v.push((label, body, annotated));
    }
    v
}

pub fn review(object: &Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "serving.kserve.io", "version": "v1beta1", "kind": "InferenceService"},
            "resource": {"group": "serving.kserve.io", "version": "v1beta1", "resource": "inferenceservices"},
            "requestKind": {"group": "serving.kserve.io", "version": "v1beta1", "kind": "InferenceService"},
            "requestResource": {"group": "serving.kserve.io", "version": "v1beta1", "resource": "inferenceservices"},
            "name": object["metadata"]["name"],
            "namespace": "llm",
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:ci:deployer", "uid": "b0c1", "groups": ["system:serviceaccounts", "system:authenticated"]},
            "object": object,
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions", "fieldManager": "kubectl-client-side-apply"}
        }
    })
}

/// `examples/`-sized: a model, a few annotations.
pub fn small(annotated: bool) -> Value {
    let mut annotations = json!({"team": "search", "app.kubernetes.io/part-of": "chat"});
    if annotated {
        annotations["scaling.io/strategy"] = json!("tokens,queue");
        annotations["scaling.io/max-replicas"] = json!("8");
    }
    json!({
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "qwen25-05b", "namespace": "llm", "annotations": annotations,
                     "labels": {"app": "qwen"}},
        "spec": {"predictor": {
            "minReplicas": 1,
            "model": {
                "modelFormat": {"name": "huggingface"},
                "storageUri": "hf://Qwen/Qwen2.5-0.5B-Instruct",
                "args": ["--max-model-len=4096", "--gpu-memory-utilization=0.9"],
                "resources": {"limits": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"},
                              "requests": {"cpu": "2", "memory": "8Gi", "nvidia.com/gpu": "1"}}
            }
        }}
    })
}

/// ~85 KiB: hundreds of annotations, labels, args and env entries, as a heavily templated
/// object can carry.
pub fn large(annotated: bool) -> Value {
    let mut o = small(annotated);
    let filler = "abcdefghijklmnopqrstuvwxyz0123456789".repeat(4);
    for i in 0..200 {
        o["metadata"]["annotations"][format!("example.com/note-{i}")] =
            json!(format!("{i}-{filler}"));
    }
    for i in 0..100 {
        o["metadata"]["labels"][format!("example.com/l{i}")] = json!(format!("v{i}"));
    }
    let model = &mut o["spec"]["predictor"]["model"];
    let mut args: Vec<Value> = (0..150)
        .map(|i| json!(format!("--opt-{i}={filler}")))
        .collect();
    args.push(json!("--max-model-len=4096"));
    model["args"] = Value::Array(args);
    model["env"] = Value::Array(
        (0..150)
            .map(|i| json!({"name": format!("ENV_{i}"), "value": format!("{i}-{filler}")}))
            .collect(),
    );
    o
}
