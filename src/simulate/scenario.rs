//! From an InferenceService to a simulation: plan it with the product's own planner, then
//! read the generated ScaledObject and the plan's typed facts into the engine's terms.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use super::engine::Trigger;
use super::hpa::Behavior;
use super::profile::Profile;
use crate::core::isvc::{self, Isvc};
use crate::core::plan::{self, Input};
use crate::core::settings::Settings;
use crate::core::spec;
use crate::core::strategy::{MetricType, Strategy};
use crate::core::text;
use crate::policy::Policy;
use crate::scaling::Scaling;

/// What the planner generated, as the simulator needs it.
#[derive(Clone, Debug)]
pub struct Planned {
    /// `namespace/name` of the InferenceService.
    pub name: String,
    pub triggers: Vec<Trigger>,
    pub min_replicas: u32,
    pub max_replicas: u32,
    pub polling_interval: u32,
    pub cooldown_period: u32,
    pub window: f64,
    /// None when the ScaledObject names no HPA behavior (the HPA then has none either).
    pub behavior: Option<Behavior>,
    pub warnings: Vec<String>,
}

/// The first InferenceService in `text`, as a JSON value.
pub fn read_isvc(origin: &str, text: &str) -> Result<Value, String> {
    let mut found = Vec::new();
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(doc)
            .map_err(|e| format!("{origin} document {}: not valid YAML: {e}", i + 1))?;
        if value.get("kind").and_then(Value::as_str) == Some(isvc::KIND)
            && value.get("apiVersion").and_then(Value::as_str) == Some(isvc::API_VERSION)
        {
            found.push(value);
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(format!(
            "{origin} holds no InferenceService (apiVersion {} kind {})",
            isvc::API_VERSION,
            isvc::KIND
        )),
        n => Err(format!(
            "{origin} holds {n} InferenceServices; simulate takes one, so split the file"
        )),
    }
}

pub fn scaling(policy: Policy) -> Scaling {
    Scaling::new(
        Settings::default(),
        policy,
        Arc::new(|_: &str| BTreeMap::new()),
    )
}

/// Sets the strategy and its target on the object (for `--sweep`), dropping other targets.
pub fn with_target(value: &Value, prefix: &str, strategy: Strategy, target: f64) -> Value {
    let mut v = value.clone();
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        let ann = meta
            .entry("annotations")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(ann) = ann.as_object_mut() {
            let target_key = format!("{prefix}/{}", spec::keys::TARGET);
            let target_prefix = format!("{prefix}/{}", spec::keys::TARGET_PREFIX);
            ann.retain(|k, _| *k != target_key && !k.starts_with(&target_prefix));
            ann.insert(
                format!("{prefix}/{}", spec::keys::STRATEGY),
                Value::String(strategy.as_str().into()),
            );
            ann.insert(
                format!("{target_prefix}{}", strategy.as_str()),
                Value::String(format!("{target}")),
            );
        }
    }
    v
}

/// Plans the object and maps every trigger to the signal it reads.
pub fn plan(
    value: &Value,
    namespace: &str,
    scaling: &Scaling,
    profile: &Profile,
) -> Result<Planned, String> {
    let object: kube::core::DynamicObject = serde_json::from_value(value.clone())
        .map_err(|e| format!("malformed InferenceService: {e}"))?;
    let view =
        Isvc::from_parts(&object.metadata, &object.data, namespace).map_err(|e| e.to_string())?;
    // Names are checked only for objects with a strategy, and this one names errors too.
    let name = format!("{}/{}", text::clip(&view.namespace), text::clip(&view.name));
    let prefix = scaling.prefix();
    let plan = scaling
        .plan(
            Input {
                isvc: &view,
                old: None,
                live_deployment: None,
            },
            None,
        )
        .map_err(|e| format!("{name}: {e}"))?;
    let (Some(so), Ok(Some(request))) =
        (&plan.scaled_object, spec::parse(&view.annotations, &prefix))
    else {
        return Err(format!(
            "{name} has no {prefix}/strategy annotation, so nothing scales it; add one (e.g. {prefix}/strategy: tokens)"
        ));
    };
    let strategies = plan::expand(&request.strategies);
    if strategies.len() != so.spec.triggers.len() {
        return Err(format!(
            "{name}: the plan has {} triggers for {} strategies; cannot tell which signal each reads",
            so.spec.triggers.len(),
            strategies.len()
        ));
    }
    let mut triggers = Vec::new();
    for (s, t) in strategies.iter().zip(&so.spec.triggers) {
        let number = |key: &str| -> Result<Option<f64>, String> {
            t.metadata
                .get(key)
                .map(|v| {
                    v.parse::<f64>()
                        .map_err(|_| format!("{name}: trigger {} has {key} '{v}'", t.name))
                })
                .transpose()
        };
        let signal = if *s == Strategy::Custom {
            profile.custom_signal.ok_or_else(|| {
                format!(
                    "{name}: trigger 'custom' runs a query only its author knows, and the simulator does not evaluate PromQL; set customSignal in the profile ({}) to the built-in signal the query measures ({}), or simulate without the custom strategy",
                    profile.name,
                    Strategy::ALLOWED
                )
            })?
        } else {
            *s
        };
        triggers.push(Trigger {
            name: t.name.clone(),
            signal,
            metric_type: MetricType::parse(&t.metric_type).unwrap_or(MetricType::AverageValue),
            target: number("threshold")?.unwrap_or(0.0),
            activation: number("activationThreshold")?.unwrap_or(0.0),
        });
    }
    let window_text = request
        .window
        .clone()
        .unwrap_or_else(|| Settings::default().window);
    // The planner accepted the window by Prometheus' grammar (which has `w` and `y`), so it is
    // read back by the same parser, not by the command line's looser one.
    let window = spec::prometheus_duration(&window_text)
        .map_err(|e| format!("{prefix}/window: {e}"))? as f64
        / 1000.0;
    let so_json = serde_json::to_value(so).map_err(|e| e.to_string())?;
    let behavior = match so_json.pointer("/spec/advanced/horizontalPodAutoscalerConfig/behavior") {
        Some(b) => Some(
            Behavior::deserialize(b)
                .map_err(|e| format!("{name}: the ScaledObject's HPA behavior: {e}"))?,
        ),
        None => None,
    };
    Ok(Planned {
        name,
        triggers,
        min_replicas: so.spec.min_replica_count,
        max_replicas: so.spec.max_replica_count,
        polling_interval: so.spec.polling_interval,
        cooldown_period: so.spec.cooldown_period,
        window,
        behavior,
        warnings: plan.warnings.clone(),
    })
}
