//! AdmissionReview bodies as the API server sends them, the InferenceServices inside them,
//! and applying the JSON patch an answer carries.

#![allow(dead_code)]

use base64::Engine;
use serde_json::{Value, json};

pub fn isvc(name: &str, annotations: Option<Value>) -> Value {
    let mut meta = json!({"name": name, "namespace": "llm"});
    if let Some(a) = annotations {
        meta["annotations"] = a;
    }
    json!({
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": meta,
        "spec": {"predictor": {"model": {"modelFormat": {"name": "huggingface"}, "storageUri": "hf://Qwen/Qwen2.5-0.5B-Instruct"}}}
    })
}

pub fn review(operation: &str, object: &Value, old: Option<&Value>, dry_run: bool) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "serving.kserve.io", "version": "v1beta1", "kind": "InferenceService"},
            "resource": {"group": "serving.kserve.io", "version": "v1beta1", "resource": "inferenceservices"},
            "name": object["metadata"]["name"],
            "namespace": object["metadata"]["namespace"].as_str().unwrap_or("llm"),
            "operation": operation,
            "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
            "object": object,
            "oldObject": old.cloned().unwrap_or(Value::Null),
            "dryRun": dry_run
        }
    })
}

/// Applies the response's base64 JSONPatch to `object`; `None` when there is no patch.
pub fn apply_patch(response: &Value, object: &Value) -> Option<Value> {
    let b64 = response["response"]["patch"].as_str()?;
    assert_eq!(response["response"]["patchType"], "JSONPatch");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("patch is base64");
    let patch: json_patch::Patch = serde_json::from_slice(&bytes).expect("patch is JSON Patch");
    let mut doc = object.clone();
    json_patch::patch(&mut doc, &patch).expect("patch applies to the original object");
    Some(doc)
}
