//! `render`: the offline view of what the webhook and the controller would produce.

use serde::Deserialize;
use serde_json::Value;

use crate::core::isvc::{self, Isvc};
use crate::core::patch;
use crate::core::plan::{Input, PlanError};
use crate::scaling::Scaling;

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The input is not YAML or not an InferenceService (exit code 2).
    #[error("{0}")]
    Input(String),
    /// The InferenceService asks for something invalid (exit code 1).
    #[error("{name}: {source}")]
    Invalid {
        name: String,
        #[source]
        source: PlanError,
    },
}

impl RenderError {
    pub fn exit_code(&self) -> u8 {
        match self {
            RenderError::Input(_) => 2,
            RenderError::Invalid { .. } => 1,
        }
    }
}

#[derive(Debug, Default)]
pub struct Rendered {
    /// Multi-document YAML: each mutated InferenceService followed by what it generates.
    pub yaml: String,
    /// Warnings, each prefixed with the InferenceService it concerns.
    pub warnings: Vec<String>,
}

/// Renders every InferenceService in `text` (one or more YAML documents). Nothing is produced
/// unless every document is valid, so a failed render never prints half a result.
pub fn render(text: &str, namespace: &str, scaling: &Scaling) -> Result<Rendered, RenderError> {
    let mut docs = Vec::new();
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(doc)
            .map_err(|e| RenderError::Input(format!("document {}: not valid YAML: {e}", i + 1)))?;
        if !value.is_null() {
            docs.push((i + 1, value));
        }
    }
    if docs.is_empty() {
        return Err(RenderError::Input(
            "the input holds no document; expected an InferenceService (serving.kserve.io/v1beta1)"
                .into(),
        ));
    }
    let mut out = Rendered::default();
    for (n, value) in docs {
        render_one(n, value, namespace, scaling, &mut out)?;
    }
    Ok(out)
}

fn render_one(
    n: usize,
    mut value: Value,
    namespace: &str,
    scaling: &Scaling,
    out: &mut Rendered,
) -> Result<(), RenderError> {
    let api_version = value
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = value.get("kind").and_then(Value::as_str).unwrap_or("");
    if api_version != isvc::API_VERSION || kind != isvc::KIND {
        return Err(RenderError::Input(format!(
            "document {n}: apiVersion '{}' kind '{}' is not an InferenceService; expected apiVersion {} kind {}",
            crate::core::text::clip(api_version),
            crate::core::text::clip(kind),
            isvc::API_VERSION,
            isvc::KIND
        )));
    }
    let object: kube::core::DynamicObject = serde_json::from_value(value.clone())
        .map_err(|e| RenderError::Input(format!("document {n}: malformed object: {e}")))?;
    let view = Isvc::from_parts(&object.metadata, &object.data, namespace).map_err(|e| {
        RenderError::Invalid {
            name: format!("document {n}"),
            source: e.into(),
        }
    })?;
    // Names are checked only for objects with a strategy, and this one names errors too.
    let label = format!(
        "{}/{}",
        crate::core::text::clip(&view.namespace),
        crate::core::text::clip(&view.name)
    );
    let plan = scaling
        .plan(
            Input {
                isvc: &view,
                old: None,
                live_deployment: None,
            },
            None,
        )
        .map_err(|source| RenderError::Invalid {
            name: label.clone(),
            source,
        })?;

    let ops = patch::annotations(object.metadata.annotations.as_ref(), &plan.annotations);
    json_patch::patch(&mut value, &ops)
        .map_err(|e| RenderError::Input(format!("document {n}: cannot apply the patch: {e}")))?;
    // The API server would fill the namespace in; show it so the output is complete. An
    // empty or null one is no namespace (the view fell back to `namespace` for it), so it is
    // replaced too, and the object lands where its generated objects do.
    if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("namespace".into(), Value::String(view.namespace.clone()));
    }
    push_doc(&mut out.yaml, &value)?;
    if let Some(so) = &plan.scaled_object {
        push_doc(&mut out.yaml, &to_json(so)?)?;
    }
    if let Some(m) = &plan.monitor {
        push_doc(&mut out.yaml, &m.to_json().map_err(encode_error)?)?;
    }
    if let Some(r) = &plan.rule {
        push_doc(&mut out.yaml, &to_json(r)?)?;
    }
    out.warnings
        .extend(plan.warnings.iter().map(|w| format!("{label}: {w}")));
    // Audit findings are silent at admission; render is where a platform team previews them.
    out.warnings.extend(
        plan.audit
            .iter()
            .map(|a| format!("{label}: policy (audit): {a}")),
    );
    Ok(())
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<Value, RenderError> {
    serde_json::to_value(v).map_err(encode_error)
}

fn encode_error(e: serde_json::Error) -> RenderError {
    RenderError::Input(format!("cannot encode output: {e}"))
}

fn push_doc(yaml: &mut String, value: &Value) -> Result<(), RenderError> {
    let text = serde_yaml_ng::to_string(value)
        .map_err(|e| RenderError::Input(format!("cannot encode output as YAML: {e}")))?;
    yaml.push_str("---\n");
    yaml.push_str(&text);
    Ok(())
}
