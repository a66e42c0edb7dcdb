//! The fast path from JSON text: the predictor's fields the planner reads, decoded straight
//! into their types with everything else skipped. It only decodes well-formed input; a
//! failure sends the caller to the tree path, which gives the same answer for well-formed
//! input and names the field otherwise. Building a tree of the whole spec (every env entry,
//! volume and argument) was most of the cost of a review.
//!
//! [`SpecFields`] and [`StatusFields`] can be decoded as part of a larger document (an
//! AdmissionReview), so a well-formed request is read in one pass.

use std::borrow::Cow;
use std::collections::BTreeMap;

use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::{AUTOSCALER_CLASS, DEPLOYMENT_MODE, Predictor};
use crate::core::spec::MAX_INT32;

/// `T` read from a JSON object only. Serde would also fill a struct from an array, by
/// position, where the tree path sees no fields at all.
struct Obj<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Fields<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Fields<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(Fields(PhantomData)).map(Obj)
    }
}

/// The fields of `spec` the planner reads, when well formed.
pub struct SpecFields<'a>(Spec<'a>);

impl<'de: 'a, 'a> Deserialize<'de> for SpecFields<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Obj::deserialize(d).map(|Obj(s)| SpecFields(s))
    }
}

/// `status.deploymentMode`, when the status is an object and the mode a string or absent.
pub struct StatusFields(pub(super) Option<String>);

impl<'de> Deserialize<'de> for StatusFields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Status<'a> {
            #[serde(borrow, default)]
            deployment_mode: Option<Cow<'a, str>>,
        }
        Obj::<Status>::deserialize(d)
            .map(|Obj(s)| StatusFields(s.deployment_mode.map(Cow::into_owned)))
    }
}

#[derive(Deserialize)]
struct Spec<'a> {
    #[serde(borrow, default)]
    predictor: Option<Obj<PredictorText<'a>>>,
}

/// A replica count as the tree path accepts it: a whole number up to the int32 maximum.
struct Replicas(u32);

impl<'de> Deserialize<'de> for Replicas {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u32::deserialize(d)?;
        if n > MAX_INT32 {
            // The tree path words the message; this one only ends the fast path.
            return Err(serde::de::Error::custom("above int32"));
        }
        Ok(Replicas(n))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PredictorText<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(default)]
    min_replicas: Option<Replicas>,
    #[serde(default)]
    max_replicas: Option<Replicas>,
    #[serde(borrow, default)]
    model: Option<Obj<Container<'a>>>,
    #[serde(borrow, default)]
    containers: Option<Vec<Obj<Container<'a>>>>,
    #[serde(borrow, default)]
    annotations: Option<BTreeMap<Cow<'a, str>, AnnotationValue<'a>>>,
    #[serde(default)]
    auto_scaling: Option<IgnoredAny>,
    #[serde(default)]
    scale_metric: Option<IgnoredAny>,
    #[serde(default)]
    scale_target: Option<IgnoredAny>,
    #[serde(default)]
    container_concurrency: Option<IgnoredAny>,
}

/// An annotation's value: kept when it is a string (the tree path reads only those), skipped
/// otherwise, as the API server's schema refuses such an object anyway.
#[derive(Deserialize)]
#[serde(untagged)]
enum AnnotationValue<'a> {
    Text(#[serde(borrow)] Cow<'a, str>),
    Other(IgnoredAny),
}

/// The model spec or one container: the same fields are read from both.
#[derive(Deserialize)]
struct Container<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(default)]
    args: Option<Vec<String>>,
    #[serde(default)]
    command: Option<Vec<String>>,
    #[serde(borrow, default)]
    resources: Option<Obj<Resources<'a>>>,
}

#[derive(Deserialize)]
struct Resources<'a> {
    #[serde(borrow, default)]
    limits: Option<BTreeMap<Cow<'a, str>, IgnoredAny>>,
    #[serde(borrow, default)]
    requests: Option<BTreeMap<Cow<'a, str>, IgnoredAny>>,
}

impl Resources<'_> {
    fn ask_gpu(&self) -> bool {
        [&self.limits, &self.requests]
            .into_iter()
            .flatten()
            .any(|m| m.keys().any(|k| k.contains("gpu")))
    }
}

/// `spec.predictor` of the JSON text of a spec, when it is well formed.
pub(super) fn predictor(spec: &str) -> Option<Predictor> {
    serde_json::from_str::<SpecFields>(spec)
        .ok()
        .map(SpecFields::into_predictor)
}

impl SpecFields<'_> {
    pub(super) fn into_predictor(self) -> Predictor {
        let Some(Obj(p)) = self.0.predictor else {
            return Predictor::default();
        };
        let mut args = Vec::new();
        let mut requests_gpu = false;
        if let Some(Obj(model)) = p.model {
            args.extend(model.args.into_iter().flatten());
            args.extend(model.command.into_iter().flatten());
            requests_gpu |= model.resources.is_some_and(|Obj(r)| r.ask_gpu());
        }
        for Obj(c) in p.containers.into_iter().flatten() {
            requests_gpu |= c.resources.as_ref().is_some_and(|Obj(r)| r.ask_gpu());
            if c.name.as_deref() == Some("kserve-container") {
                args.extend(c.args.into_iter().flatten());
                args.extend(c.command.into_iter().flatten());
            }
        }
        let ignored_scaling_fields = [
            ("autoScaling", p.auto_scaling.is_some()),
            ("scaleMetric", p.scale_metric.is_some()),
            ("scaleTarget", p.scale_target.is_some()),
            ("containerConcurrency", p.container_concurrency.is_some()),
        ]
        .into_iter()
        .filter_map(|(key, set)| set.then_some(key))
        .collect();
        let annotations = p.annotations.unwrap_or_default();
        let annotation = |key: &str| match annotations.get(key) {
            Some(AnnotationValue::Text(v)) => Some(v.to_string()),
            _ => None,
        };
        let autoscaler_class = annotation(AUTOSCALER_CLASS);
        let deployment_mode = annotation(DEPLOYMENT_MODE);
        Predictor {
            name: p.name.filter(|n| !n.is_empty()).map(Cow::into_owned),
            min_replicas: p.min_replicas.map(|Replicas(n)| n),
            max_replicas: p.max_replicas.map(|Replicas(n)| n),
            args,
            ignored_scaling_fields,
            annotation_keys: annotations.into_keys().map(Cow::into_owned).collect(),
            autoscaler_class,
            deployment_mode,
            requests_gpu,
        }
    }
}

/// `status.deploymentMode` of the JSON text of a status, when it is a string.
pub(super) fn deployment_mode(status: &str) -> Option<String> {
    match serde_json::from_str::<StatusFields>(status) {
        Ok(StatusFields(mode)) => mode,
        // Not an object, or a field of another type: read it the loose way, as the tree
        // path does.
        Err(_) => serde_json::from_str::<serde_json::Value>(status)
            .ok()?
            .get("deploymentMode")?
            .as_str()
            .map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Well-formed predictors take this path (or the speed-up is lost without any test
    /// noticing); anything the types do not fit leaves it to the tree path.
    #[test]
    fn answers_for_well_formed_predictors_only() {
        let model = json!({"predictor": {"name": "main", "minReplicas": 1, "maxReplicas": 4,
            "model": {"modelFormat": {"name": "huggingface"}, "args": ["--a"], "command": ["vllm"],
                      "env": [{"name": "X", "value": "1"}],
                      "resources": {"limits": {"nvidia.com/gpu": "1"}}},
            "containers": [{"name": "kserve-container", "args": ["--b"]},
                           {"name": "agent", "args": ["--c"], "resources": {"requests": {"cpu": 1}}}],
            "annotations": {"k": "v"}, "scaleMetric": "rps", "autoScaling": null}});
        let p = predictor(&model.to_string()).expect("the fast path");
        assert_eq!(p.name.as_deref(), Some("main"));
        assert_eq!((p.min_replicas, p.max_replicas), (Some(1), Some(4)));
        assert_eq!(p.args, ["--a", "vllm", "--b"]);
        assert_eq!(p.ignored_scaling_fields, ["scaleMetric"]);
        assert_eq!(p.annotation_keys, ["k"]);
        assert!(p.requests_gpu);
        assert_eq!(predictor("{}"), Some(Predictor::default()));
        for bad in [
            json!({"predictor": {"minReplicas": "1"}}),
            json!({"predictor": {"maxReplicas": 2147483648u64}}),
            json!({"predictor": {"model": {"args": [1]}}}),
            json!({"predictor": {"containers": {"name": "kserve-container"}}}),
            json!({"predictor": "model"}),
            json!({"predictor": ["main", 1, 2]}),
            json!({"predictor": {"containers": [["kserve-container", ["--x"]]]}}),
            json!({"predictor": {"model": [null, ["--x"]]}}),
            json!([{"name": "main"}]),
            json!([]),
        ] {
            assert_eq!(predictor(&bad.to_string()), None, "{bad}");
        }
        // The predictor's class and mode are read as the tree path reads them.
        for annotations in [
            json!({AUTOSCALER_CLASS: "hpa", DEPLOYMENT_MODE: "Serverless", "k": "v"}),
            json!({AUTOSCALER_CLASS: 3, DEPLOYMENT_MODE: {"a": [1]}, "k": null}),
            json!({}),
        ] {
            let spec = json!({"predictor": {"annotations": annotations}});
            let fast = predictor(&spec.to_string()).expect("the fast path");
            let tree = Predictor::from_value(spec.get("predictor")).unwrap();
            assert_eq!(fast, tree, "{spec}");
        }
        let spec = json!({"predictor": {"annotations": {AUTOSCALER_CLASS: "keda"}}});
        let p = predictor(&spec.to_string()).expect("the fast path");
        assert_eq!(p.autoscaler_class.as_deref(), Some("keda"));
        // A duplicate key is left to the tree path, which keeps the last one.
        assert_eq!(
            predictor(r#"{"predictor": {"minReplicas": 1, "minReplicas": 2}}"#),
            None
        );
    }

    #[test]
    fn deployment_mode_is_read_only_when_a_string() {
        assert_eq!(
            deployment_mode(r#"{"deploymentMode": "RawDeployment", "url": 1}"#).as_deref(),
            Some("RawDeployment")
        );
        assert_eq!(deployment_mode(r#"{"deploymentMode": 3}"#), None);
        assert_eq!(deployment_mode("[]"), None);
        assert_eq!(deployment_mode(r#"["Serverless"]"#), None);
    }
}
