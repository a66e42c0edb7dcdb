//! The pure planning core: (InferenceService, old object, settings) -> what to change and
//! what to generate. No I/O, no clock, no randomness: render, admission and the reconciler
//! all call this, so they cannot disagree.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use crate::core::alerts::{self, Alert};
use crate::core::isvc::{FieldError, Isvc};
use crate::core::names;
use crate::core::query_scope;
use crate::core::resources::{
    AuthenticationRef, Endpoint, Monitor, NamespaceSelector, PodMetricsEndpoint, PodMonitor,
    PodMonitorSpec, PrometheusRule, PrometheusRuleSpec, RelabelConfig, Rule, RuleGroup,
    ScaleTargetRef, ScaleTrigger, ScaledObject, ScaledObjectSpec, ServiceMonitor,
    ServiceMonitorSpec,
};
use crate::core::settings::{CredentialRefusal, Settings};
use crate::core::spec::{self, AnnotationError, MonitorKind, ScalingSpec, keys};
use crate::core::strategy::{self, MetricType, Scope, Strategy, Unsupported};
use crate::core::text;

pub use crate::core::isvc::{AUTOSCALER_CLASS, DEPLOYMENT_MODE};
pub const EXTERNAL: &str = "external";
pub use crate::core::isvc::ISVC_LABEL;
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "kserve-keda-webhook";
const RAW_MODES: [&str; 2] = ["RawDeployment", "Standard"];

/// Why a request is refused. Every message names the annotation or field, the value, and
/// what to do instead.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Annotation(#[from] AnnotationError),
    #[error(transparent)]
    Field(#[from] FieldError),
    #[error("annotation {key}={value} cannot be combined with {prefix}/strategy: {why}")]
    Conflict {
        key: &'static str,
        value: String,
        prefix: String,
        why: String,
    },
    /// The same conflict set on `spec.predictor.annotations`, which KServe merges over the
    /// InferenceService's annotations for the predictor.
    #[error(
        "spec.predictor.annotations {key}={value} cannot be combined with {prefix}/strategy: KServe merges the predictor's annotations over the InferenceService's, so this one decides for the predictor; {why}"
    )]
    PredictorConflict {
        key: &'static str,
        value: String,
        prefix: String,
        why: String,
    },
    #[error(
        "{prefix}/strategy cannot be added to InferenceService {name}: it was created in {mode} mode, KServe freezes the deployment mode at creation, and KEDA can only scale a raw (Standard) Deployment; delete and recreate it with {prefix}/strategy set (the webhook then creates it in raw mode)"
    )]
    FrozenMode {
        name: String,
        mode: String,
        prefix: String,
    },
    #[error(
        "min replicas {min} (from {min_from}) is greater than max replicas {max} (from {max_from}); KEDA rejects that, so set {prefix}/min-replicas <= {prefix}/max-replicas"
    )]
    MinAboveMax {
        min: u32,
        min_from: String,
        max: u32,
        max_from: String,
        prefix: String,
    },
    #[error(
        "strategy 'custom' needs {prefix}/query with a PromQL query that returns one series for this InferenceService"
    )]
    CustomWithoutQuery { prefix: String },
    #[error(
        "strategy 'custom' has no default target; set {prefix}/target-custom (or {prefix}/target when it is the only strategy) to the per-replica value"
    )]
    CustomWithoutTarget { prefix: String },
    /// The trigger would carry the platform's Prometheus credentials where the platform did
    /// not allow them.
    #[error("{key}: {problem}")]
    SharedCredential { key: String, problem: String },
    /// A platform policy refused the request; the message names the rule and the limit.
    #[error("denied by scaling policy: {0}")]
    Policy(String),
    #[error(
        "annotation {prefix}/strategy: {source}; set {prefix}/runtime if the predictor runs another server"
    )]
    Unsupported {
        prefix: String,
        #[source]
        source: Unsupported,
    },
}

/// Everything the product decides for one InferenceService.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Plan {
    /// Annotation changes on the InferenceService: `Some` sets a value, `None` removes the key.
    /// Empty when the object already says everything we need.
    pub annotations: BTreeMap<String, Option<String>>,
    pub scaled_object: Option<ScaledObject>,
    pub monitor: Option<Monitor>,
    /// Alerts on why the model does not scale; beside the monitor, with its name and labels.
    pub rule: Option<PrometheusRule>,
    /// The Deployment the ScaledObject scales.
    pub scale_target: Option<String>,
    pub warnings: Vec<String>,
    /// Policy findings in `audit` mode: recorded (log, metric, Event), never shown to the user.
    pub audit: Vec<String>,
}

impl Plan {
    /// Whether the object carries a scaling request at all.
    pub fn is_managed(&self) -> bool {
        self.scaled_object.is_some()
    }
}

/// What the planner is asked about.
#[derive(Clone, Copy, Debug)]
pub struct Input<'a> {
    pub isvc: &'a Isvc,
    /// The stored object on UPDATE (None on CREATE and in `render`).
    pub old: Option<&'a Isvc>,
    /// The predictor Deployment found on the cluster; the naming convention otherwise.
    pub live_deployment: Option<&'a str>,
}

pub fn plan(input: Input<'_>, settings: &Settings) -> Result<Plan, PlanError> {
    let isvc = input.isvc;
    let prefix = settings.prefix.as_str();
    match spec::parse(&isvc.annotations, prefix)? {
        None => Ok(unmanaged(isvc, settings)),
        Some(spec) => managed(input, &spec, settings),
    }
}

/// No strategy: nothing to generate. If we configured this object before, undo what we set
/// so KServe's own autoscaling takes over again, and drop our records.
fn unmanaged(isvc: &Isvc, settings: &Settings) -> Plan {
    let prefix = &settings.prefix;
    let mut plan = Plan::default();
    let record = |k: &str| format!("{prefix}/{k}");
    let had_records = keys::RECORDS
        .iter()
        .any(|k| isvc.annotations.contains_key(&record(k)));
    if had_records {
        for k in keys::RECORDS {
            if isvc.annotations.contains_key(&record(k)) {
                plan.annotations.insert(record(k), None);
            }
        }
        let top_external =
            isvc.annotations.get(AUTOSCALER_CLASS).map(String::as_str) == Some(EXTERNAL);
        if top_external {
            plan.annotations.insert(AUTOSCALER_CLASS.to_string(), None);
        }
        // The predictor's own class is the user's: it stays, and it still wins in KServe.
        if isvc.predictor.autoscaler_class.as_deref() == Some(EXTERNAL) {
            plan.warnings.push(format!(
                "{prefix}/strategy was removed and the generated ScaledObject and monitor are deleted, but spec.predictor.annotations keeps {AUTOSCALER_CLASS}={EXTERNAL}: nothing scales the predictor until you remove it"
            ));
        } else if top_external {
            plan.warnings.push(format!(
                "{prefix}/strategy was removed: {AUTOSCALER_CLASS} is reset to KServe's default (hpa), the generated ScaledObject and monitor are deleted, and KServe's own HPA scales the predictor from now on"
            ));
        }
    }
    let leftovers: Vec<&str> = spec::input_keys(&isvc.annotations, prefix)
        .map(|(k, _)| k)
        .collect();
    if !leftovers.is_empty() {
        let keys: Vec<String> = leftovers.iter().map(|k| format!("{prefix}/{k}")).collect();
        plan.warnings.push(listing(
            "annotations ",
            &keys,
            &format!(" have no effect without {prefix}/strategy"),
        ));
    }
    plan
}

fn managed(input: Input<'_>, spec: &ScalingSpec, settings: &Settings) -> Result<Plan, PlanError> {
    let isvc = input.isvc;
    isvc.check_names()?;
    let prefix = settings.prefix.as_str();
    let mut plan = Plan::default();

    let mode = deployment_mode(input, settings)?;
    if let Some(value) = mode {
        plan.annotations
            .insert(DEPLOYMENT_MODE.to_string(), Some(value));
    }
    check_predictor_mode(isvc, prefix)?;
    match (
        isvc.predictor.autoscaler_class.as_deref(),
        isvc.annotations.get(AUTOSCALER_CLASS).map(String::as_str),
    ) {
        // The predictor's own class decides for the predictor alone; the top-level one is
        // then left to the transformer and explainer, so it is neither checked nor written.
        (Some(EXTERNAL), _) => {}
        (Some(other), _) => {
            return Err(PlanError::PredictorConflict {
                key: AUTOSCALER_CLASS,
                value: text::clip(other),
                prefix: prefix.to_string(),
                why: format!(
                    "{}; remove it or set it to '{EXTERNAL}'",
                    class_conflict(other)
                ),
            });
        }
        (None, None) => {
            plan.annotations
                .insert(AUTOSCALER_CLASS.to_string(), Some(EXTERNAL.to_string()));
        }
        (None, Some(EXTERNAL)) => {}
        (None, Some(other)) => {
            return Err(PlanError::Conflict {
                key: AUTOSCALER_CLASS,
                value: text::clip(other),
                prefix: prefix.to_string(),
                why: format!(
                    "{}; remove the annotation or set it to '{EXTERNAL}' (the webhook sets '{EXTERNAL}' itself)",
                    class_conflict(other)
                ),
            });
        }
    }

    let deployment = input
        .live_deployment
        .map(str::to_string)
        .unwrap_or_else(|| names::predictor_deployment(&isvc.name, isvc.predictor.name.as_deref()));
    let (min, max) = replica_bounds(isvc, spec, settings)?;
    let strategies = expand(&spec.strategies);
    let scope = Scope {
        namespace: &isvc.namespace,
        isvc: &isvc.name,
        deployment: &deployment,
    };
    let window = spec.window.as_deref().unwrap_or(&settings.window);
    let address = spec
        .prometheus_address
        .as_deref()
        .unwrap_or(&settings.prometheus_address);

    let refusals = credential_refusals(isvc, spec, settings, &strategies, address);
    let mut withheld = Vec::new();
    if let Some((key, problem)) = refusals.address.iter().chain(&refusals.query).next() {
        match settings.credential_refusal {
            CredentialRefusal::Deny => {
                return Err(PlanError::SharedCredential {
                    key: key.clone(),
                    problem: problem.clone(),
                });
            }
            CredentialRefusal::Withhold => {
                for (key, problem) in refusals.address.iter().chain(&refusals.query) {
                    withheld.push(format!(
                        "{key}: {problem}; the policy admits it, so the trigger is generated without the platform's credentials"
                    ));
                }
            }
        }
    }

    let mut triggers = Vec::with_capacity(strategies.len());
    let mut alert_inputs = Vec::with_capacity(strategies.len());
    for s in &strategies {
        let with_auth =
            refusals.address.is_none() && !(*s == Strategy::Custom && refusals.query.is_some());
        let (t, a) = trigger(*s, spec, settings, scope, window, address, with_auth)?;
        triggers.push(t);
        alert_inputs.push(a);
    }

    let so_name = names::fit(&deployment, names::SCALED_OBJECT_MAX);
    let labels = generated_labels(&isvc.name);
    plan.scaled_object = Some(ScaledObject {
        metadata: meta(&so_name, &isvc.namespace, labels.clone()),
        spec: ScaledObjectSpec {
            scale_target_ref: ScaleTargetRef {
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                name: deployment.clone(),
            },
            polling_interval: spec.polling_interval.unwrap_or(settings.polling_interval),
            cooldown_period: spec.cooldown_period.unwrap_or(settings.cooldown_period),
            min_replica_count: min,
            max_replica_count: max,
            triggers,
        },
    });
    plan.monitor = monitor(isvc, spec, settings, &deployment, labels);
    if spec.alerts.unwrap_or(settings.alerts)
        && let Some(m) = &plan.monitor
    {
        let found = alerts::alerts(scope, spec.runtime, window, &alert_inputs, max);
        plan.rule = Some(rule(m, found));
    }

    let records = [
        (keys::SCALE_TARGET, Some(deployment.clone())),
        (keys::SCALED_OBJECT, Some(so_name)),
        (
            keys::MONITOR_NAME,
            plan.monitor.as_ref().map(|m| m.name().to_string()),
        ),
    ];
    for (k, v) in records {
        plan.annotations.insert([prefix, "/", k].concat(), v);
    }
    plan.annotations
        .retain(|k, v| isvc.annotations.get(k) != v.as_ref());
    plan.scale_target = Some(deployment);
    plan.warnings = warnings(
        isvc,
        spec,
        settings,
        &strategies,
        min,
        plan.monitor.is_some(),
    );
    plan.warnings.extend(withheld);
    Ok(plan)
}

/// Why an autoscaler class other than `external` cannot scale with a ScaledObject.
fn class_conflict(class: &str) -> &'static str {
    match class {
        "hpa" => {
            "KServe would create its own HPA for the predictor, and KEDA refuses a ScaledObject for a Deployment an HPA already scales"
        }
        "keda" => {
            "KServe would create its own ScaledObject from spec.predictor.autoScaling, and KEDA allows only one per Deployment"
        }
        "none" => "KServe would pin the replicas to minReplicas and undo every scaling decision",
        _ => "KServe does not know this autoscaler class",
    }
}

/// A deployment mode on `spec.predictor.annotations`. The InferenceService's own annotation
/// (or status) picks raw or Knative; KServe's raw reconciler then reads the merged one, and
/// builds a Deployment only for a raw mode.
fn check_predictor_mode(isvc: &Isvc, prefix: &str) -> Result<(), PlanError> {
    match isvc.predictor.deployment_mode.as_deref() {
        Some(mode) if !RAW_MODES.contains(&mode) => Err(PlanError::PredictorConflict {
            key: DEPLOYMENT_MODE,
            value: text::clip(mode),
            prefix: prefix.to_string(),
            why: "KServe creates the predictor Deployment only in mode RawDeployment or Standard (it fails with 'unsupported deployment mode for workload' otherwise) and KEDA can only scale that Deployment; remove it or set RawDeployment or Standard".into(),
        }),
        _ => Ok(()),
    }
}

/// Why the platform's credential may not go with these triggers: `(annotation, problem)`
/// for the address (every trigger) and for the `custom` query (its trigger).
#[derive(Default)]
struct Refusals {
    address: Option<(String, String)>,
    query: Option<(String, String)>,
}

fn credential_refusals(
    isvc: &Isvc,
    spec: &ScalingSpec,
    settings: &Settings,
    strategies: &[Strategy],
    address: &str,
) -> Refusals {
    let Some(auth) = &settings.trigger_auth else {
        return Refusals::default();
    };
    let prefix = &settings.prefix;
    let credential = format!(
        "the platform's Prometheus credentials ({} {})",
        auth.kind, auth.name
    );
    let mut out = Refusals::default();
    if !settings.credential_may_go_to(address) {
        let also = if settings.credential_addresses.is_empty() {
            ""
        } else {
            " and the policy's allowedPrometheusAddresses"
        };
        out.address = Some((
            format!("annotation {prefix}/{}", keys::PROMETHEUS_ADDRESS),
            format!(
                "'{}' would receive {credential}, which go only to {}{also}; remove the annotation to query the platform's Prometheus, or ask the platform team to add the address to limits.allowedPrometheusAddresses",
                text::clip(address),
                text::clip(&settings.prometheus_address)
            ),
        ));
    }
    if settings.scoped_custom_queries
        && strategies.contains(&Strategy::Custom)
        && let Some(q) = &spec.query
    {
        // spec::parse accepted the query already, within its limits; a parse error here
        // would be a bug, and refusing is the safe answer to it.
        let scoped = match promql_parser::parser::parse(q) {
            Ok(expr) => query_scope::check(&expr, &isvc.namespace).map_err(|e| e.to_string()),
            Err(e) => Err(format!("is not valid PromQL: {}", text::clip(&e))),
        };
        if let Err(why) = scoped {
            out.query = Some((
                format!("annotation {prefix}/{}", keys::QUERY),
                format!(
                    "{why}; the trigger carries {credential}, so a custom query may read only its own namespace's series"
                ),
            ));
        }
    }
    out
}

/// The deploymentMode value to write, if any, after checking the mode allows KEDA.
fn deployment_mode(input: Input<'_>, settings: &Settings) -> Result<Option<String>, PlanError> {
    let isvc = input.isvc;
    let prefix = settings.prefix.clone();
    let current = isvc.annotations.get(DEPLOYMENT_MODE);
    if let Some(value) = current
        && !RAW_MODES.contains(&value.as_str())
    {
        return Err(PlanError::Conflict {
            key: DEPLOYMENT_MODE,
            value: text::clip(value),
            prefix,
            why: "KEDA can only scale a raw (Standard) Deployment and this mode runs the model elsewhere (Knative revisions or ModelMesh); remove the annotation (the webhook sets raw mode) or set RawDeployment or Standard".into(),
        });
    }
    let Some(old) = input.old else {
        // CREATE: the mode can still be chosen.
        return Ok(match current {
            Some(_) => None,
            None => Some(settings.raw_mode.as_str().to_string()),
        });
    };
    // UPDATE: the mode was fixed when the object was created.
    match old.annotations.get(DEPLOYMENT_MODE) {
        Some(old_mode) if RAW_MODES.contains(&old_mode.as_str()) => {
            // Put it back if this update dropped it, or KServe sees a mode change.
            Ok(current.is_none().then(|| old_mode.clone()))
        }
        Some(old_mode) => Err(PlanError::FrozenMode {
            name: isvc.name.clone(),
            mode: text::clip(old_mode),
            prefix,
        }),
        None => match old.status_deployment_mode.as_deref() {
            // Created raw because that is the cluster default; adding the annotation now
            // would look like a mode change to KServe, so leave it out.
            Some(m) if RAW_MODES.contains(&m) => Ok(None),
            Some(m) => Err(PlanError::FrozenMode {
                name: isvc.name.clone(),
                mode: text::clip(m),
                prefix,
            }),
            None => Err(PlanError::FrozenMode {
                name: isvc.name.clone(),
                mode: "the cluster's default (Knative unless KServe is configured for Standard; it had no serving.kserve.io/deploymentMode annotation and no status.deploymentMode yet)".into(),
                prefix,
            }),
        },
    }
}

fn replica_bounds(
    isvc: &Isvc,
    spec: &ScalingSpec,
    settings: &Settings,
) -> Result<(u32, u32), PlanError> {
    let prefix = &settings.prefix;
    let (min, min_from) = match (spec.min_replicas, isvc.predictor.min_replicas) {
        (Some(n), _) => (n, format!("{prefix}/min-replicas")),
        (None, Some(n)) => (n, "spec.predictor.minReplicas".to_string()),
        (None, None) => (settings.min_replicas, "the default".to_string()),
    };
    // KServe treats maxReplicas 0 as unset.
    let (max, max_from) = match (
        spec.max_replicas,
        isvc.predictor.max_replicas.filter(|n| *n > 0),
    ) {
        (Some(n), _) => (n, format!("{prefix}/max-replicas")),
        (None, Some(n)) => (n, "spec.predictor.maxReplicas".to_string()),
        (None, None) => (settings.max_replicas.max(min), "the default".to_string()),
    };
    if min > max {
        return Err(PlanError::MinAboveMax {
            min,
            min_from,
            max,
            max_from,
            prefix: prefix.clone(),
        });
    }
    Ok((min, max))
}

/// The triggers a request turns into: `tokens` brings a running-requests trigger along,
/// because token throughput flattens once a replica saturates while the running count keeps
/// rising with demand.
pub fn expand(requested: &[Strategy]) -> Vec<Strategy> {
    let mut out = Vec::with_capacity(requested.len() + 1);
    for s in requested {
        if !out.contains(s) {
            out.push(*s);
        }
        if *s == Strategy::Tokens && !requested.contains(&Strategy::Concurrency) {
            out.push(Strategy::Concurrency);
        }
    }
    out
}

fn trigger(
    s: Strategy,
    spec: &ScalingSpec,
    settings: &Settings,
    scope: Scope<'_>,
    window: &str,
    address: &str,
    with_auth: bool,
) -> Result<(ScaleTrigger, alerts::Trigger), PlanError> {
    // Copied only for an error: this runs for every trigger of every review.
    let prefix = || settings.prefix.clone();
    let (query, metric_type) = if s == Strategy::Custom {
        let q = spec
            .query
            .clone()
            .ok_or_else(|| PlanError::CustomWithoutQuery { prefix: prefix() })?;
        (q, spec.metric_type.unwrap_or(MetricType::AverageValue))
    } else {
        let q = strategy::query(s, spec.runtime, scope, window).map_err(|source| {
            PlanError::Unsupported {
                prefix: prefix(),
                source,
            }
        })?;
        (q, s.metric_type())
    };
    let threshold = spec
        .targets
        .get(&s)
        .copied()
        .or_else(|| settings.default_target(s))
        .ok_or_else(|| PlanError::CustomWithoutTarget { prefix: prefix() })?;

    let mut metadata = BTreeMap::from([
        ("serverAddress".to_string(), address.to_string()),
        ("query".to_string(), query.clone()),
        ("threshold".to_string(), number(threshold)),
    ]);
    if let Some(a) = spec.activations.get(&s) {
        metadata.insert("activationThreshold".into(), number(*a));
    }
    let authentication_ref = settings
        .trigger_auth
        .as_ref()
        .filter(|_| with_auth)
        .map(|auth| {
            metadata.insert("authModes".into(), auth.modes.clone());
            AuthenticationRef {
                kind: auth.kind.clone(),
                name: auth.name.clone(),
            }
        });
    let for_alerts = alerts::Trigger {
        strategy: s,
        metric_type,
        threshold,
        query,
    };
    let t = ScaleTrigger {
        type_: "prometheus".into(),
        name: s.as_str().into(),
        metric_type: metric_type.as_str().into(),
        metadata,
        authentication_ref,
    };
    Ok((t, for_alerts))
}

/// The PrometheusRule beside `monitor`: same name, namespace and labels, so it lives and dies
/// with it and the same Prometheus rule selector picks it up.
fn rule(monitor: &Monitor, found: Vec<Alert>) -> PrometheusRule {
    let meta = monitor.metadata().clone();
    let isvc = meta
        .labels
        .as_ref()
        .and_then(|l| l.get(ISVC_LABEL))
        .cloned()
        .unwrap_or_default();
    let rules = found
        .into_iter()
        .map(|a| {
            let mut labels = BTreeMap::from([
                ("severity".to_string(), "warning".to_string()),
                ("inferenceservice".to_string(), isvc.clone()),
            ]);
            if let Some(s) = a.strategy {
                labels.insert("strategy".into(), s.as_str().into());
            }
            Rule {
                alert: a.alert.to_string(),
                expr: a.expr,
                for_: a.for_.to_string(),
                labels,
                annotations: BTreeMap::from([
                    ("summary".to_string(), a.summary),
                    ("description".to_string(), a.description),
                ]),
            }
        })
        .collect();
    PrometheusRule {
        spec: PrometheusRuleSpec {
            groups: vec![RuleGroup {
                name: format!("{}.scaling", meta.name.as_deref().unwrap_or_default()),
                rules,
            }],
        },
        metadata: meta,
    }
}

/// KEDA parses thresholds as decimal strings; print integers without a fraction.
fn number(n: f64) -> String {
    format!("{n}")
}

fn generated_labels(isvc: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
        (ISVC_LABEL.to_string(), isvc.to_string()),
    ])
}

fn meta(name: &str, namespace: &str, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(namespace.to_string()),
        labels: Some(labels),
        ..ObjectMeta::default()
    }
}

fn monitor(
    isvc: &Isvc,
    spec: &ScalingSpec,
    settings: &Settings,
    deployment: &str,
    mut labels: BTreeMap<String, String>,
) -> Option<Monitor> {
    let kind = spec.monitor.unwrap_or(settings.monitor);
    let port = spec.metrics_port.unwrap_or(settings.metrics_port);
    let path = spec
        .metrics_path
        .clone()
        .unwrap_or_else(|| settings.metrics_path.clone());
    // Platform labels first, so a platform label can never remove our ownership labels.
    let mut all = settings.monitor_labels.clone();
    all.append(&mut labels);
    let metadata = meta(
        &names::fit(deployment, names::MONITOR_MAX),
        &isvc.namespace,
        all,
    );
    // Predictor pods and Service carry both labels; transformer and explainer have another
    // component, so they are never scraped by this monitor.
    let selector = LabelSelector {
        match_labels: Some(BTreeMap::from([
            (ISVC_LABEL.to_string(), isvc.name.clone()),
            ("component".to_string(), "predictor".to_string()),
        ])),
        match_expressions: None,
    };
    let namespace_selector = NamespaceSelector {
        match_names: vec![isvc.namespace.clone()],
    };
    let pod_target_labels = strategy::POD_TARGET_LABELS.map(String::from).to_vec();
    match kind {
        MonitorKind::None => None,
        MonitorKind::ServiceMonitor => Some(Monitor::Service(ServiceMonitor {
            metadata,
            spec: ServiceMonitorSpec {
                selector,
                namespace_selector,
                endpoints: vec![Endpoint {
                    path,
                    relabelings: scrape_model_server(MonitorKind::ServiceMonitor, port),
                }],
                pod_target_labels,
            },
        })),
        MonitorKind::PodMonitor => Some(Monitor::Pod(PodMonitor {
            metadata,
            spec: PodMonitorSpec {
                selector,
                namespace_selector,
                pod_metrics_endpoints: vec![PodMetricsEndpoint {
                    path,
                    relabelings: scrape_model_server(MonitorKind::PodMonitor, port),
                }],
                pod_target_labels,
            },
        })),
    }
}

/// KServe's name for the model server container of every predictor.
pub const MODEL_CONTAINER: &str = "kserve-container";

/// Relabelings that turn whatever targets service discovery yields for a predictor pod into
/// exactly one: the model server at `<pod IP>:<port>`.
///
/// No port filter is used: prometheus-operator turns one into a keep on the ports a container
/// declares, and KServe's runtimes may declare none (the huggingface runtime does not), which
/// would drop every target. The predictor Service may also forward to the logger/batcher
/// agent rather than the model server, so its port is not the metrics port either.
///
/// A ServiceMonitor yields a target per Service port per pod plus one per declared container
/// port the Service does not cover; a PodMonitor yields one per port the model container
/// declares (one without a port if it declares none). All of one pod's targets end with the
/// same address and the same labels (`container` is set for the ServiceMonitor, whose
/// endpoint targets name a container only when it declares the Service's port), and
/// Prometheus scrapes identical targets of a job once.
fn scrape_model_server(kind: MonitorKind, port: u16) -> Vec<RelabelConfig> {
    let pod_ip = || vec!["__meta_kubernetes_pod_ip".to_string()];
    let mut rules = vec![RelabelConfig {
        action: Some("keep".into()),
        source_labels: pod_ip(),
        regex: Some(".+".into()),
        ..RelabelConfig::default()
    }];
    if kind == MonitorKind::PodMonitor {
        rules.push(RelabelConfig {
            action: Some("keep".into()),
            source_labels: vec!["__meta_kubernetes_pod_container_name".into()],
            regex: Some(MODEL_CONTAINER.into()),
            ..RelabelConfig::default()
        });
    } else {
        rules.push(RelabelConfig {
            target_label: Some("container".into()),
            replacement: Some(MODEL_CONTAINER.into()),
            ..RelabelConfig::default()
        });
    }
    // Relabel regexes are anchored: an IPv4 address has no colon, an IPv6 one needs brackets.
    for (regex, address) in [("([^:]+)", "${1}"), ("(.+:.+)", "[${1}]")] {
        rules.push(RelabelConfig {
            source_labels: pod_ip(),
            regex: Some(regex.into()),
            target_label: Some("__address__".into()),
            replacement: Some(format!("{address}:{port}")),
            ..RelabelConfig::default()
        });
    }
    rules
}

fn warnings(
    isvc: &Isvc,
    spec: &ScalingSpec,
    settings: &Settings,
    strategies: &[Strategy],
    min: u32,
    has_monitor: bool,
) -> Vec<String> {
    let prefix = &settings.prefix;
    let p = &isvc.predictor;
    let mut out = Vec::new();
    let server_metrics: Vec<&str> = strategies
        .iter()
        .filter(|s| s.uses_server_metrics())
        .map(|s| s.as_str())
        .collect();

    if !server_metrics.is_empty()
        && spec.runtime == strategy::Runtime::Vllm
        && p.args.iter().any(|a| a == "--disable-log-stats")
    {
        out.push(format!(
            "the predictor starts vLLM with --disable-log-stats, which turns off the metrics that strategies {} read; remove that argument or the ScaledObject never sees load",
            server_metrics.join(", ")
        ));
    }
    if !server_metrics.is_empty()
        && spec.runtime == strategy::Runtime::Vllm
        && p.args.iter().any(|a| a == "--backend=huggingface")
    {
        out.push(format!(
            "the predictor uses --backend=huggingface, which serves without vLLM and exports no vllm: metrics; strategies {} will read nothing",
            server_metrics.join(", ")
        ));
    }
    if min == 0 && strategies.iter().all(|s| s.is_pod_level()) {
        out.push(format!(
            "min replicas is 0 but every trigger reads metrics the predictor pods export themselves; with no pod there is no metric, so the model can never scale up from zero: set {prefix}/min-replicas to 1 or add a 'custom' trigger on a signal from outside the pods"
        ));
    }
    let knative: Vec<String> = isvc
        .annotations
        .keys()
        .chain(p.annotation_keys.iter())
        .filter(|k| k.starts_with("autoscaling.knative.dev/"))
        .cloned()
        .collect();
    if !knative.is_empty() {
        out.push(listing(
            "annotations ",
            &knative,
            " only affect Knative mode and are ignored in raw mode; scaling follows the ScaledObject",
        ));
    }
    for field in &p.ignored_scaling_fields {
        out.push(format!(
            "spec.predictor.{field} is ignored: with {AUTOSCALER_CLASS}={EXTERNAL} KServe leaves scaling to the generated ScaledObject"
        ));
    }
    if !spec.unused.is_empty() {
        out.push(listing(
            "",
            &spec.unused,
            " name strategies that were not requested and have no effect",
        ));
    }
    if !strategies.contains(&Strategy::Custom) {
        for (key, set) in [
            (keys::QUERY, spec.query.is_some()),
            (keys::METRIC_TYPE, spec.metric_type.is_some()),
        ] {
            if set {
                out.push(format!(
                    "{prefix}/{key} is only used by the 'custom' strategy and has no effect here"
                ));
            }
        }
    }
    out.extend(spec.warnings.iter().cloned());
    // Only the default template can be checked here: a cluster may set another one.
    let host = names::default_host_label(
        &names::predictor_deployment(&isvc.name, p.name.as_deref()),
        &isvc.namespace,
    );
    if host.len() > names::LABEL_MAX {
        out.push(format!(
            "under KServe's default domainTemplate the predictor's host starts with '{}' ({} characters), over a DNS label's {}: KServe cannot create the predictor unless its config sets another template",
            text::clip(&host),
            host.len(),
            names::LABEL_MAX
        ));
    }
    if !has_monitor && !server_metrics.is_empty() {
        out.push(format!(
            "{prefix}/monitor is none: the triggers select series by 'namespace' and the pod labels serving.kserve.io/inferenceservice, component and app (podTargetLabels); your scrape must add them"
        ));
    }
    out
}

/// The API server shows at most this many characters of one warning.
pub const MAX_WARNING: usize = 256;

/// `{before}{items}{after}` within [`MAX_WARNING`] bytes: as many items as fit (each clipped),
/// then how many were left out, so an object with hundreds of keys cannot push a warning past
/// what the API server shows.
fn listing(before: &str, items: &[String], after: &str) -> String {
    // Room for ", and 99999 more" whatever happens.
    const TAIL: usize = 16;
    let budget = MAX_WARNING.saturating_sub(before.len() + after.len() + TAIL);
    let mut list = String::new();
    let mut shown = 0;
    for item in items {
        let item = text::clip(item);
        let sep = if shown == 0 { "" } else { ", " };
        if list.len() + sep.len() + item.len() > budget {
            break;
        }
        list.push_str(sep);
        list.push_str(&item);
        shown += 1;
    }
    let rest = items.len() - shown;
    match (shown, rest) {
        (_, 0) => {}
        (0, n) => list = format!("{n} keys"),
        (_, n) => list.push_str(&format!(", and {n} more")),
    }
    format!("{before}{list}{after}")
}

#[cfg(test)]
mod tests;
