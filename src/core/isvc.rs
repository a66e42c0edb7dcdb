//! A read-only view of the parts of an InferenceService the planner looks at.
//!
//! The object arrives as loosely typed JSON (from the API server or a user's file), so every
//! field is read defensively and a wrong type is reported with its path, never unwrapped.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

use crate::core::names;
use crate::core::spec;
use crate::core::text;

mod typed;

pub use typed::{SpecFields, StatusFields};

/// The label KServe puts on the pods and Services of an InferenceService.
pub const ISVC_LABEL: &str = "serving.kserve.io/inferenceservice";

pub const GROUP: &str = "serving.kserve.io";
pub const VERSION: &str = "v1beta1";
pub const API_VERSION: &str = "serving.kserve.io/v1beta1";
pub const KIND: &str = "InferenceService";
/// The annotation that picks KServe's autoscaler; `external` leaves scaling to KEDA.
pub const AUTOSCALER_CLASS: &str = "serving.kserve.io/autoscalerClass";
/// The annotation that picks KServe's deployment mode (raw/Standard, Knative, ModelMesh).
pub const DEPLOYMENT_MODE: &str = "serving.kserve.io/deploymentMode";

/// A field of the InferenceService has a type or value the planner cannot use.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct FieldError {
    pub field: String,
    pub problem: String,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Isvc {
    pub name: String,
    pub namespace: String,
    pub annotations: BTreeMap<String, String>,
    pub predictor: Predictor,
    /// `status.deploymentMode`, which KServe fills in once it has reconciled the object.
    pub status_deployment_mode: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Predictor {
    /// `spec.predictor.name`, which KServe 0.20 puts into the Deployment name.
    pub name: Option<String>,
    pub min_replicas: Option<u32>,
    pub max_replicas: Option<u32>,
    /// Arguments of the model container (model spec and any `kserve-container`).
    pub args: Vec<String>,
    /// KServe-native autoscaling settings that `autoscalerClass: external` makes inert.
    pub ignored_scaling_fields: Vec<&'static str>,
    /// Annotation keys on `spec.predictor.annotations` (Knative reads some of them).
    pub annotation_keys: Vec<String>,
    /// [`AUTOSCALER_CLASS`] and [`DEPLOYMENT_MODE`] on `spec.predictor.annotations`, when
    /// strings. KServe merges the predictor's annotations over the InferenceService's and
    /// builds the predictor from the result, so these win over the top-level ones.
    pub autoscaler_class: Option<String>,
    pub deployment_mode: Option<String>,
    /// Whether the model container asks for an accelerator (`nvidia.com/gpu`, `amd.com/gpu`,
    /// `gpu.intel.com/...`): the resources platform policy may require autoscaling for.
    pub requests_gpu: bool,
}

impl Isvc {
    /// Builds the view. `fallback_namespace` is used when the object names none (a file
    /// without `metadata.namespace`, or a CREATE whose namespace is on the request only).
    pub fn from_parts(
        meta: &ObjectMeta,
        data: &Value,
        fallback_namespace: &str,
    ) -> Result<Isvc, FieldError> {
        Isvc::from_fields(
            meta,
            data.pointer("/spec/predictor"),
            data.pointer("/status/deploymentMode"),
            fallback_namespace,
        )
    }

    /// Builds the view from the only parts of the object it reads.
    pub fn from_fields(
        meta: &ObjectMeta,
        predictor: Option<&Value>,
        status_deployment_mode: Option<&Value>,
        fallback_namespace: &str,
    ) -> Result<Isvc, FieldError> {
        Isvc::assemble(
            meta.name.clone(),
            meta.namespace.clone(),
            meta.annotations.clone(),
            || Predictor::from_value(predictor),
            status_deployment_mode.and_then(Value::as_str),
            fallback_namespace,
        )
    }

    /// Builds the view from owned metadata and the JSON text of `spec` and `status`, as an
    /// admission request carries them. Reads only the predictor's fields the planner uses;
    /// the rest of the spec (env, volumes, other components) is skipped, not decoded. Takes the
    /// metadata rather than copying it.
    pub fn from_text(
        name: Option<String>,
        namespace: Option<String>,
        annotations: Option<BTreeMap<String, String>>,
        spec: Option<&str>,
        status: Option<&str>,
        fallback_namespace: &str,
    ) -> Result<Isvc, FieldError> {
        let mode = status.and_then(typed::deployment_mode);
        Isvc::assemble(
            name,
            namespace,
            annotations,
            || spec.map_or(Ok(Predictor::default()), Predictor::from_spec_text),
            mode.as_deref(),
            fallback_namespace,
        )
    }

    /// Builds the view from owned metadata and the spec and status already decoded in the
    /// request's own pass (every well-formed request; see [`SpecFields`]).
    pub fn from_decoded(
        name: Option<String>,
        namespace: Option<String>,
        annotations: Option<BTreeMap<String, String>>,
        spec: Option<SpecFields<'_>>,
        status: Option<StatusFields>,
        fallback_namespace: &str,
    ) -> Result<Isvc, FieldError> {
        let mode = status.and_then(|StatusFields(m)| m);
        Isvc::assemble(
            name,
            namespace,
            annotations,
            || Ok(spec.map(SpecFields::into_predictor).unwrap_or_default()),
            mode.as_deref(),
            fallback_namespace,
        )
    }

    fn assemble(
        name: Option<String>,
        namespace: Option<String>,
        annotations: Option<BTreeMap<String, String>>,
        predictor: impl FnOnce() -> Result<Predictor, FieldError>,
        status_deployment_mode: Option<&str>,
        fallback_namespace: &str,
    ) -> Result<Isvc, FieldError> {
        let name = name.unwrap_or_default();
        if name.is_empty() {
            return Err(FieldError {
                field: "metadata.name".into(),
                problem: "is empty; a fixed name is required because the generated ScaledObject and monitor are named after it (generateName is not supported)".into(),
            });
        }
        let namespace = namespace
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| fallback_namespace.to_string());
        Ok(Isvc {
            name,
            namespace,
            annotations: annotations.unwrap_or_default(),
            predictor: predictor()?,
            status_deployment_mode: status_deployment_mode
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        })
    }
}

impl Isvc {
    /// Checks the names that end up in generated object names, label values and PromQL the
    /// way KServe and the API server check them, so a name that would break one of those is
    /// refused with the field named instead of producing objects that silently do not work.
    pub fn check_names(&self) -> Result<(), FieldError> {
        let bad = |field: &str, problem: String| FieldError {
            field: field.into(),
            problem,
        };
        names::kserve_name(&self.name, names::LABEL_MAX).map_err(|e| {
            bad(
                "metadata.name",
                format!("{e} (KServe's rule; the name is also the value of the {ISVC_LABEL} label, which has at most 63 characters)"),
            )
        })?;
        names::dns1123_label(&self.namespace).map_err(|e| bad("metadata.namespace", e))?;
        if let Some(p) = &self.predictor.name {
            names::kserve_name(p, names::LABEL_MAX)
                .map_err(|e| bad("spec.predictor.name", format!("{e} (KServe's rule)")))?;
        }
        // KServe labels the predictor's pods, Deployment selector and Service selector
        // `app: isvc.<Deployment name>`: the longest name it derives, and one that a label
        // value's 63 characters must hold, or the Deployment is never created. The Service,
        // named like the Deployment, is shorter.
        let deployment = names::predictor_deployment(&self.name, self.predictor.name.as_deref());
        let app = names::app_label(&deployment);
        if app.len() > names::LABEL_MAX {
            let field = match self.predictor.name {
                Some(_) => "metadata.name and spec.predictor.name",
                None => "metadata.name",
            };
            return Err(bad(
                field,
                format!(
                    "together make the predictor Deployment '{}', and KServe labels its pods and selector 'app: {}' ({} characters), but a label value has at most {}; shorten the name by {} characters",
                    text::clip_to(&deployment, 80),
                    text::clip_to(&app, 80),
                    app.len(),
                    names::LABEL_MAX,
                    app.len() - names::LABEL_MAX
                ),
            ));
        }
        Ok(())
    }
}

impl Predictor {
    fn from_value(p: Option<&Value>) -> Result<Predictor, FieldError> {
        match p {
            None | Some(Value::Null) => Ok(Predictor::default()),
            Some(p) => Predictor::from_json(p),
        }
    }

    /// The predictor from the JSON text of `spec`. A well-formed predictor is decoded straight
    /// into the fields read; anything else (a wrong type anywhere in those fields, a duplicate
    /// key) goes the tree path, whose answer is the same for well-formed input and which names
    /// the bad field otherwise.
    fn from_spec_text(spec: &str) -> Result<Predictor, FieldError> {
        if let Some(p) = typed::predictor(spec) {
            return Ok(p);
        }
        let tree: Value = serde_json::from_str(spec).map_err(|e| FieldError {
            field: "spec".into(),
            problem: format!("cannot be read: {e}"),
        })?;
        Predictor::from_value(tree.get("predictor"))
    }

    fn from_json(p: &Value) -> Result<Predictor, FieldError> {
        let field = |f: &str| format!("spec.predictor.{f}");
        let mut args = Vec::new();
        for (path, at) in [
            ("model.args", "/model/args"),
            ("model.command", "/model/command"),
        ] {
            args.extend(strings(p.pointer(at), &field(path))?);
        }
        if let Some(containers) = p.get("containers").and_then(Value::as_array) {
            for (i, c) in containers.iter().enumerate() {
                if c.get("name").and_then(Value::as_str) == Some("kserve-container") {
                    args.extend(strings(
                        c.get("args"),
                        &field(&format!("containers[{i}].args")),
                    )?);
                    args.extend(strings(
                        c.get("command"),
                        &field(&format!("containers[{i}].command")),
                    )?);
                }
            }
        }
        let mut ignored = Vec::new();
        for key in [
            "autoScaling",
            "scaleMetric",
            "scaleTarget",
            "containerConcurrency",
        ] {
            if p.get(key).is_some_and(|v| !v.is_null()) {
                ignored.push(key);
            }
        }
        let annotations = p.get("annotations").and_then(Value::as_object);
        let annotation_keys = annotations
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        let annotation = |key: &str| {
            annotations
                .and_then(|m| m.get(key))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let mut resources: Vec<&Value> = p.pointer("/model/resources").into_iter().collect();
        if let Some(containers) = p.get("containers").and_then(Value::as_array) {
            resources.extend(containers.iter().filter_map(|c| c.get("resources")));
        }
        let requests_gpu = resources.iter().any(|r| {
            ["limits", "requests"].iter().any(|k| {
                r.get(*k)
                    .and_then(Value::as_object)
                    .is_some_and(|m| m.keys().any(|name| name.contains("gpu")))
            })
        });
        Ok(Predictor {
            requests_gpu,
            name: optional_str(p.get("name"), &field("name"))?,
            min_replicas: replicas(p.get("minReplicas"), &field("minReplicas"))?,
            max_replicas: replicas(p.get("maxReplicas"), &field("maxReplicas"))?,
            args,
            ignored_scaling_fields: ignored,
            annotation_keys,
            autoscaler_class: annotation(AUTOSCALER_CLASS),
            deployment_mode: annotation(DEPLOYMENT_MODE),
        })
    }
}

fn optional_str(v: Option<&Value>, field: &str) -> Result<Option<String>, FieldError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(FieldError {
            field: field.into(),
            problem: format!("expected a string, got {}", describe(other)),
        }),
    }
}

fn replicas(v: Option<&Value>, field: &str) -> Result<Option<u32>, FieldError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n <= spec::MAX_INT32)
        {
            Some(n) => Ok(Some(n)),
            None => Err(FieldError {
                field: field.into(),
                problem: format!(
                    "'{n}' is not allowed; use a whole number from 0 to {}",
                    spec::MAX_INT32
                ),
            }),
        },
        Some(other) => Err(FieldError {
            field: field.into(),
            problem: format!(
                "expected a whole number from 0 to {}, got {}",
                spec::MAX_INT32,
                describe(other)
            ),
        }),
    }
}

fn strings(v: Option<&Value>, field: &str) -> Result<Vec<String>, FieldError> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(s) => Ok(s.clone()),
                other => Err(FieldError {
                    field: format!("{field}[{i}]"),
                    problem: format!("expected a string, got {}", describe(other)),
                }),
            })
            .collect(),
        Some(other) => Err(FieldError {
            field: field.into(),
            problem: format!("expected a list of strings, got {}", describe(other)),
        }),
    }
}

/// A short description of a JSON value for error messages, without echoing huge inputs.
pub fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string '{}'", text::clip(s)),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "an object".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meta(name: &str, ns: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: ns.map(Into::into),
            ..Default::default()
        }
    }

    #[test]
    fn reads_predictor_fields_and_args_from_model_and_container() {
        let data = json!({"spec": {"predictor": {
            "name": "main", "minReplicas": 0, "maxReplicas": 3,
            "model": {"modelFormat": {"name": "huggingface"}, "args": ["--disable-log-stats"]},
            "containers": [{"name": "kserve-container", "args": ["--x"]}, {"name": "side", "args": ["--y"]}],
            "logger": {"mode": "all"}, "scaleMetric": "concurrency",
            "annotations": {"autoscaling.knative.dev/target": "5"}
        }}, "status": {"deploymentMode": "Serverless"}});
        let v = Isvc::from_parts(&meta("m", None), &data, "team").unwrap();
        assert_eq!(v.namespace, "team");
        assert_eq!(v.predictor.name.as_deref(), Some("main"));
        assert_eq!(v.predictor.min_replicas, Some(0));
        assert_eq!(v.predictor.max_replicas, Some(3));
        assert_eq!(v.predictor.args, vec!["--disable-log-stats", "--x"]);
        assert_eq!(v.predictor.ignored_scaling_fields, vec!["scaleMetric"]);
        assert_eq!(
            v.predictor.annotation_keys,
            vec!["autoscaling.knative.dev/target"]
        );
        assert_eq!(v.status_deployment_mode.as_deref(), Some("Serverless"));
        assert!(!v.predictor.requests_gpu);
    }

    #[test]
    fn gpu_requests_are_seen_in_model_and_containers() {
        for data in [
            json!({"spec": {"predictor": {"model": {"resources": {"limits": {"nvidia.com/gpu": "1"}}}}}}),
            json!({"spec": {"predictor": {"containers": [{"name": "c", "resources": {"requests": {"amd.com/gpu": 1}}}]}}}),
        ] {
            let v = Isvc::from_parts(&meta("m", None), &data, "n").unwrap();
            assert!(v.predictor.requests_gpu, "{data}");
        }
        let cpu =
            json!({"spec": {"predictor": {"model": {"resources": {"limits": {"cpu": "4"}}}}}});
        assert!(
            !Isvc::from_parts(&meta("m", None), &cpu, "n")
                .unwrap()
                .predictor
                .requests_gpu
        );
    }

    #[test]
    fn wrong_types_name_the_field() {
        let cases = [
            (
                json!({"spec": {"predictor": {"minReplicas": "2"}}}),
                "spec.predictor.minReplicas",
            ),
            (
                json!({"spec": {"predictor": {"maxReplicas": -1}}}),
                "spec.predictor.maxReplicas",
            ),
            (
                json!({"spec": {"predictor": {"name": 7}}}),
                "spec.predictor.name",
            ),
            (
                json!({"spec": {"predictor": {"model": {"args": "--a"}}}}),
                "spec.predictor.model.args",
            ),
            (
                json!({"spec": {"predictor": {"model": {"args": [1]}}}}),
                "spec.predictor.model.args[0]",
            ),
        ];
        for (data, field) in cases {
            let err = Isvc::from_parts(&meta("m", Some("n")), &data, "default").unwrap_err();
            assert_eq!(err.field, field, "{err}");
        }
    }

    fn named(name: &str, ns: &str, predictor: Option<&str>) -> Result<(), FieldError> {
        let data = match predictor {
            Some(p) => json!({"spec": {"predictor": {"name": p}}}),
            None => json!({}),
        };
        Isvc::from_parts(&meta(name, Some(ns)), &data, "d")?.check_names()
    }

    #[test]
    fn names_are_checked_as_kserve_and_kubernetes_do() {
        assert_eq!(named("qwen", "llm", Some("main")), Ok(()));
        // `app: isvc.<name>-predictor` fills the 63 characters of a label value exactly.
        assert_eq!(named(&"q".repeat(48), "llm", None), Ok(()));
        assert_eq!(named(&"q".repeat(43), "llm", Some("main")), Ok(()));
        assert_eq!(named("q", "llm", Some(&"m".repeat(46))), Ok(()));
        // One longer: the label is named with its length. KServe would create the Service
        // (63 characters is still a Service name) but never the Deployment.
        let e = named(&"q".repeat(49), "llm", None).unwrap_err();
        assert_eq!(e.field, "metadata.name");
        let label = format!("isvc.{}-predictor", "q".repeat(49));
        assert!(
            e.problem
                .contains(&format!("'app: {label}' (64 characters)"))
                && e.problem.contains("by 1 "),
            "{e}"
        );
        for (name, p) in [(44, "main".to_string()), (1, "m".repeat(47))] {
            let e = named(&"q".repeat(name), "llm", Some(&p)).unwrap_err();
            assert_eq!(e.field, "metadata.name and spec.predictor.name");
            assert!(e.problem.contains("(64 characters)"), "{e}");
        }
        for (name, ns, p, field) in [
            ("Qwen", "llm", None, "metadata.name"),
            ("2qwen", "llm", None, "metadata.name"),
            ("a|b", "llm", None, "metadata.name"),
            ("qwen", "LLM", None, "metadata.namespace"),
            ("qwen", "l\"m", None, "metadata.namespace"),
            (
                "qwen",
                "llm",
                Some("x\"}) or vector(100) #"),
                "spec.predictor.name",
            ),
            ("qwen", "llm", Some("a+"), "spec.predictor.name"),
            ("qwen", "llm", Some("UPPER"), "spec.predictor.name"),
            ("qwen", "llm", Some("a\nb"), "spec.predictor.name"),
        ] {
            let e = named(name, ns, p).unwrap_err();
            assert_eq!(e.field, field, "{e}");
            assert!(!e.problem.contains('\n'), "{e}");
        }
    }

    #[test]
    fn the_predictors_class_and_mode_are_read_when_strings() {
        let data = json!({"spec": {"predictor": {"annotations": {
            AUTOSCALER_CLASS: "hpa", DEPLOYMENT_MODE: "Knative", "other": "x"}}}});
        let v = Isvc::from_parts(&meta("m", None), &data, "n").unwrap();
        assert_eq!(v.predictor.autoscaler_class.as_deref(), Some("hpa"));
        assert_eq!(v.predictor.deployment_mode.as_deref(), Some("Knative"));
        let data = json!({"spec": {"predictor": {"annotations": {AUTOSCALER_CLASS: 1}}}});
        let v = Isvc::from_parts(&meta("m", None), &data, "n").unwrap();
        assert_eq!(v.predictor.autoscaler_class, None);
        assert_eq!(v.predictor.annotation_keys, [AUTOSCALER_CLASS]);
    }

    #[test]
    fn replicas_stop_at_int32() {
        let data = json!({"spec": {"predictor": {"maxReplicas": 2147483648u64}}});
        let e = Isvc::from_parts(&meta("m", None), &data, "n").unwrap_err();
        assert!(e.problem.contains("from 0 to 2147483647"), "{e}");
        let data = json!({"spec": {"predictor": {"maxReplicas": 2147483647u64}}});
        assert!(Isvc::from_parts(&meta("m", None), &data, "n").is_ok());
    }

    #[test]
    fn a_name_is_required() {
        let err = Isvc::from_parts(&ObjectMeta::default(), &json!({}), "d").unwrap_err();
        assert_eq!(err.field, "metadata.name");
    }
}
