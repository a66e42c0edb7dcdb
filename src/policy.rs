//! Platform policy: cluster defaults, limits, per-namespace rules with an enforcement mode,
//! required autoscaling, and exemptions. Parsing and checking are pure; `enforce` wraps the
//! planner so render, admission and the controller apply the same policy.
//!
//! Precedence, strongest first (README, "Platform policy"):
//! 1. limits (cluster and every matching rule; the tightest applies), enforced per their mode;
//! 2. the user's annotations;
//! 3. defaults of the matching rules (a later rule in the file overrides an earlier one);
//! 4. cluster defaults (`defaults`);
//! 5. built-in defaults.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde::Deserialize;

use crate::core::isvc::Isvc;
use crate::core::names;
use crate::core::plan::{self, Input, Plan, PlanError};
use crate::core::settings::{self, AuthRef, RawMode, Settings, TriggerAuthKind};
use crate::core::spec::{self, MonitorKind, keys};
use crate::core::strategy::Strategy;
use crate::core::text;

#[cfg(test)]
mod tests;

/// A policy file that cannot be used, with the place in the file when the parser knows it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("{0}")]
    Syntax(String),
    #[error("{path}: {problem}")]
    Invalid { path: String, problem: String },
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Enforcement {
    /// Deny, naming the rule and the limit.
    #[default]
    Enforce,
    /// Allow, with an admission warning.
    Warn,
    /// Allow silently; record a log line, a metric and an Event.
    Audit,
}

impl Enforcement {
    pub fn as_str(self) -> &'static str {
        match self {
            Enforcement::Enforce => "enforce",
            Enforcement::Warn => "warn",
            Enforcement::Audit => "audit",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Defaults {
    /// Cluster-wide only.
    pub annotation_prefix: Option<String>,
    pub raw_mode: Option<RawMode>,
    pub prometheus_address: Option<String>,
    pub trigger_authentication: Option<TriggerAuthentication>,
    pub monitor: Option<MonitorKind>,
    pub monitor_labels: Option<BTreeMap<String, String>>,
    /// Whether a PrometheusRule is generated beside each monitor.
    pub alerts: Option<bool>,
    pub targets: Option<BTreeMap<Strategy, f64>>,
    pub polling_interval: Option<u32>,
    pub cooldown_period: Option<u32>,
    pub min_replicas: Option<u32>,
    pub max_replicas: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TriggerAuthentication {
    pub kind: TriggerAuthKind,
    pub name: String,
    #[serde(default = "bearer")]
    pub modes: String,
}

fn bearer() -> String {
    "bearer".into()
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Limits {
    pub max_replicas: Option<u32>,
    pub allowed_strategies: Option<Vec<Strategy>>,
    pub allowed_prometheus_addresses: Option<Vec<String>>,
    pub min_polling_interval: Option<u32>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequireWhen {
    /// Only InferenceServices whose model container requests a GPU.
    #[default]
    Gpu,
    Always,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequireAction {
    /// Refuse an InferenceService without a strategy.
    #[default]
    Deny,
    /// Add the rule's strategy annotation.
    Default,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RequireStrategy {
    #[serde(default)]
    pub when: RequireWhen,
    #[serde(default)]
    pub action: RequireAction,
    /// The strategy annotation value added by `action: default`, e.g. `tokens`.
    pub strategy: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Rule {
    pub name: String,
    /// Namespaces by name.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Namespaces by label. A rule with neither applies everywhere; with both, a namespace
    /// matching either is in scope.
    pub namespace_selector: Option<LabelSelector>,
    #[serde(default)]
    pub enforcement: Enforcement,
    #[serde(default)]
    pub defaults: Defaults,
    #[serde(default)]
    pub limits: Limits,
    pub require_strategy: Option<RequireStrategy>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Exemptions {
    /// A namespace carrying any of these labels (with this value) is exempt from limits and
    /// requirements; namespace labels are set by whoever may edit namespaces.
    #[serde(default)]
    pub namespace_labels: BTreeMap<String, String>,
    /// An InferenceService annotation (value `"true"`) that exempts it. The webhook refuses
    /// to let anyone but `allowedUsers` / `allowedGroups` add or change it.
    pub annotation: Option<String>,
    #[serde(default)]
    pub allowed_users: Vec<String>,
    #[serde(default)]
    pub allowed_groups: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Policy {
    #[serde(default)]
    pub defaults: Defaults,
    #[serde(default)]
    pub limits: Limits,
    /// Mode of the cluster-wide `limits`.
    #[serde(default)]
    pub enforcement: Enforcement,
    #[serde(default)]
    pub rules: Vec<Rule>,
    #[serde(default)]
    pub exemptions: Exemptions,
}

/// Parses and checks a policy. Syntax, type and unknown-field errors carry the line and
/// column; consistency errors name the path of the field.
pub fn parse(text: &str) -> Result<Policy, PolicyError> {
    let policy: Policy = if text.trim().is_empty() {
        Policy::default()
    } else {
        serde_yaml_ng::from_str(text).map_err(|e| PolicyError::Syntax(e.to_string()))?
    };
    policy.check()?;
    Ok(policy)
}

impl Policy {
    fn check(&self) -> Result<(), PolicyError> {
        let bad = |path: String, problem: String| Err(PolicyError::Invalid { path, problem });
        let prefix = self
            .defaults
            .annotation_prefix
            .clone()
            .unwrap_or_else(|| Settings::default().prefix);
        // Every annotation key is `<prefix>/<name>`, and the API server refuses a key whose
        // prefix is not a DNS-1123 subdomain: with such a prefix no annotation could be set.
        if let Err(e) = crate::core::names::dns1123_subdomain(&prefix) {
            return bad(
                "defaults.annotationPrefix".into(),
                format!("{e}; it prefixes annotation keys, for example scaling.io"),
            );
        }
        check_defaults("defaults", &self.defaults)?;
        check_limits("limits", &self.limits, &self.defaults)?;
        let mut names = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            let at = |f: &str| format!("rules[{i}] ({}).{f}", rule.name);
            if rule.name.trim().is_empty() {
                return bad(
                    format!("rules[{i}].name"),
                    "is empty; every rule needs a name for its messages".into(),
                );
            }
            if names.contains(&rule.name) {
                return bad(
                    at("name"),
                    "is used by an earlier rule; names must be unique".into(),
                );
            }
            names.push(rule.name.clone());
            if rule.defaults.annotation_prefix.is_some() {
                return bad(
                    at("defaults.annotationPrefix"),
                    "can only be set cluster-wide (top-level defaults)".into(),
                );
            }
            check_defaults(&at("defaults"), &rule.defaults)?;
            check_limits(&at("limits"), &rule.limits, &rule.defaults)?;
            // A rule's defaults must also fit the cluster limits, or every InferenceService
            // that relies on them would be refused.
            check_limits(&at("defaults"), &self.limits, &rule.defaults)?;
            if let Some(req) = &rule.require_strategy {
                match (req.action, &req.strategy) {
                    (RequireAction::Default, None) => {
                        return bad(
                            at("requireStrategy.strategy"),
                            "is required with action: default (for example tokens)".into(),
                        );
                    }
                    (_, Some(s)) => {
                        let annotations =
                            BTreeMap::from([(format!("{prefix}/{}", keys::STRATEGY), s.clone())]);
                        if let Err(e) = spec::parse(&annotations, &prefix) {
                            return bad(at("requireStrategy.strategy"), e.problem);
                        }
                    }
                    _ => {}
                }
            }
            if let Some(sel) = &rule.namespace_selector {
                for (j, expr) in sel.match_expressions.iter().flatten().enumerate() {
                    let ok = match expr.operator.as_str() {
                        "In" | "NotIn" => expr.values.as_ref().is_some_and(|v| !v.is_empty()),
                        "Exists" | "DoesNotExist" => expr.values.as_ref().is_none_or(Vec::is_empty),
                        _ => false,
                    };
                    if !ok {
                        return bad(
                            at(&format!("namespaceSelector.matchExpressions[{j}]")),
                            format!(
                                "operator '{}' with these values is not allowed; use In/NotIn with values or Exists/DoesNotExist without",
                                expr.operator
                            ),
                        );
                    }
                }
            }
        }
        if let Some(a) = &self.exemptions.annotation
            && (a.starts_with(&format!("{prefix}/")) || !a.contains('/'))
        {
            return bad(
                "exemptions.annotation".into(),
                format!(
                    "'{a}' must be a prefixed key outside {prefix}/ (for example policy.{prefix}/exempt), so users' scaling annotations can never set it"
                ),
            );
        }
        Ok(())
    }

    pub fn prefix(&self) -> String {
        self.defaults
            .annotation_prefix
            .clone()
            .unwrap_or_else(|| Settings::default().prefix)
    }

    /// Cluster settings: built-in defaults overlaid with the policy's `defaults`, and the
    /// command line's flags (`base`) below both.
    pub fn cluster_settings(&self, base: &Settings) -> Settings {
        let mut s = base.clone();
        overlay(&mut s, &self.defaults);
        s
    }

    /// What applies in one namespace.
    pub fn resolve(
        &self,
        base: &Settings,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> Effective<'_> {
        let mut settings = self.cluster_settings(base);
        let mut limits = vec![Scoped {
            source: "cluster limits".to_string(),
            mode: self.enforcement,
            limits: &self.limits,
        }];
        let mut require = None;
        for rule in self.rules.iter().filter(|r| r.applies(namespace, labels)) {
            overlay(&mut settings, &rule.defaults);
            limits.push(Scoped {
                source: format!("rule '{}'", rule.name),
                mode: rule.enforcement,
                limits: &rule.limits,
            });
            if let Some(req) = &rule.require_strategy {
                require = Some((rule, req));
            }
        }
        let exempt = self
            .exemptions
            .namespace_labels
            .iter()
            .any(|(k, v)| labels.get(k) == Some(v));
        Effective {
            settings,
            limits,
            require,
            exempt_namespace: exempt,
            policy: self,
        }
    }

    /// Whether any rule selects namespaces by label (which needs the namespace cache).
    pub fn uses_namespace_labels(&self) -> bool {
        !self.exemptions.namespace_labels.is_empty()
            || self.rules.iter().any(|r| r.namespace_selector.is_some())
    }
}

impl Rule {
    fn applies(&self, namespace: &str, labels: &BTreeMap<String, String>) -> bool {
        if self.namespaces.is_empty() && self.namespace_selector.is_none() {
            return true;
        }
        self.namespaces.iter().any(|n| n == namespace)
            || self
                .namespace_selector
                .as_ref()
                .is_some_and(|s| selects(s, labels))
    }
}

/// Kubernetes label-selector semantics: every matchLabels pair and every expression holds.
pub fn selects(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let pairs = sel
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let exprs = sel.match_expressions.iter().flatten().all(|e| {
        let value = labels.get(&e.key);
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    pairs && exprs
}

fn overlay(s: &mut Settings, d: &Defaults) {
    if let Some(p) = &d.annotation_prefix {
        s.prefix = p.clone();
    }
    if let Some(m) = d.raw_mode {
        s.raw_mode = m;
    }
    if let Some(a) = &d.prometheus_address {
        s.prometheus_address = a.clone();
    }
    if let Some(t) = &d.trigger_authentication {
        s.trigger_auth = Some(AuthRef {
            kind: t.kind.as_str().to_string(),
            name: t.name.clone(),
            modes: t.modes.clone(),
        });
    }
    if let Some(m) = d.monitor {
        s.monitor = m;
    }
    if let Some(l) = &d.monitor_labels {
        s.monitor_labels.extend(l.clone());
    }
    if let Some(a) = d.alerts {
        s.alerts = a;
    }
    if let Some(t) = &d.targets {
        s.targets.extend(t.iter().map(|(k, v)| (*k, *v)));
    }
    if let Some(n) = d.polling_interval {
        s.polling_interval = n;
    }
    if let Some(n) = d.cooldown_period {
        s.cooldown_period = n;
    }
    if let Some(n) = d.min_replicas {
        s.min_replicas = n;
    }
    if let Some(n) = d.max_replicas {
        s.max_replicas = n;
    }
}

fn check_defaults(at: &str, d: &Defaults) -> Result<(), PolicyError> {
    let bad = |f: &str, problem: String| {
        Err(PolicyError::Invalid {
            path: format!("{at}.{f}"),
            problem,
        })
    };
    if let Some(a) = &d.prometheus_address
        && let Err(e) = spec::check_url(a)
    {
        return bad("prometheusAddress", e);
    }
    for (k, v) in d.monitor_labels.iter().flatten() {
        if let Err(e) = names::label_key(k) {
            return bad("monitorLabels", e);
        }
        if let Err(e) = names::label_value(v) {
            return bad(&format!("monitorLabels.{}", text::clip(k)), e);
        }
    }
    if let Some(auth) = &d.trigger_authentication {
        if let Err(e) = names::dns1123_subdomain(&auth.name) {
            return bad("triggerAuthentication.name", e);
        }
        if let Err(e) = settings::check_auth_modes(&auth.modes) {
            return bad("triggerAuthentication.modes", e);
        }
    }
    for (s, t) in d.targets.iter().flatten() {
        if *s == Strategy::Custom {
            return bad(
                "targets.custom",
                "custom has no default target; its users set it".into(),
            );
        }
        if let Err(e) = spec::check_target(*t) {
            return bad(&format!("targets.{s}"), format!("'{t}' {e}"));
        }
    }
    // KEDA's ScaledObject fields are int32.
    for (f, n) in [
        ("pollingInterval", d.polling_interval),
        ("cooldownPeriod", d.cooldown_period),
        ("minReplicas", d.min_replicas),
        ("maxReplicas", d.max_replicas),
    ] {
        if let Some(n) = n.filter(|n| *n > spec::MAX_INT32) {
            return bad(
                f,
                format!(
                    "{n} is not allowed; use a whole number up to {}",
                    spec::MAX_INT32
                ),
            );
        }
    }
    if d.polling_interval == Some(0) {
        return bad("pollingInterval", "must be at least 1 second".into());
    }
    if d.max_replicas == Some(0) {
        return bad("maxReplicas", "must be at least 1".into());
    }
    if let (Some(min), Some(max)) = (d.min_replicas, d.max_replicas)
        && min > max
    {
        return bad(
            "minReplicas",
            format!("{min} is greater than maxReplicas {max}"),
        );
    }
    Ok(())
}

/// Checks a limit set, and that the defaults next to it respect it.
fn check_limits(at: &str, l: &Limits, d: &Defaults) -> Result<(), PolicyError> {
    let bad = |f: &str, problem: String| {
        Err(PolicyError::Invalid {
            path: format!("{at}.{f}"),
            problem,
        })
    };
    if l.max_replicas == Some(0) {
        return bad("maxReplicas", "must be at least 1".into());
    }
    for (i, a) in l.allowed_prometheus_addresses.iter().flatten().enumerate() {
        if let Err(e) = spec::check_url(a) {
            return bad(&format!("allowedPrometheusAddresses[{i}]"), e);
        }
    }
    if let (Some(limit), Some(n)) = (l.max_replicas, d.max_replicas)
        && n > limit
    {
        return bad(
            "maxReplicas",
            format!("default {n} is above the limit {limit}"),
        );
    }
    if let (Some(limit), Some(n)) = (l.min_polling_interval, d.polling_interval)
        && n < limit
    {
        return bad(
            "pollingInterval",
            format!("default {n} is below the minimum {limit}"),
        );
    }
    if let (Some(allowed), Some(a)) = (&l.allowed_prometheus_addresses, &d.prometheus_address)
        && !allowed.contains(a)
    {
        return bad(
            "prometheusAddress",
            format!("default '{a}' is not in allowedPrometheusAddresses"),
        );
    }
    Ok(())
}

/// A limit set and where it came from.
#[derive(Clone, Debug)]
pub struct Scoped<'a> {
    pub source: String,
    pub mode: Enforcement,
    pub limits: &'a Limits,
}

/// The policy as it applies in one namespace.
#[derive(Clone, Debug)]
pub struct Effective<'a> {
    pub settings: Settings,
    pub limits: Vec<Scoped<'a>>,
    pub require: Option<(&'a Rule, &'a RequireStrategy)>,
    pub exempt_namespace: bool,
    policy: &'a Policy,
}

/// Who is asking (admission only): decides whether the exemption annotation may change.
#[derive(Clone, Debug, Default)]
pub struct Requester<'a> {
    pub username: &'a str,
    pub groups: &'a [String],
}

/// Plans under the policy: applies required strategies and exemptions, plans with the
/// namespace's settings, then checks limits according to each one's mode.
pub fn enforce(
    input: Input<'_>,
    effective: &Effective<'_>,
    requester: Option<Requester<'_>>,
) -> Result<Plan, PlanError> {
    let exemptions = &effective.policy.exemptions;
    let settings = &effective.settings;
    let prefix = settings.prefix.clone();
    let strategy_key = format!("{prefix}/{}", keys::STRATEGY);
    let mut findings: Vec<(Enforcement, String)> = Vec::new();

    let exempt_annotation = exemptions.annotation.as_ref().and_then(|key| {
        let value = input.isvc.annotations.get(key)?;
        Some((key.clone(), value.clone()))
    });
    if let (Some(key), Some(who)) = (&exemptions.annotation, &requester) {
        let new = input.isvc.annotations.get(key);
        let old = input.old.and_then(|o| o.annotations.get(key));
        let allowed = exemptions.allowed_users.iter().any(|u| u == who.username)
            || exemptions
                .allowed_groups
                .iter()
                .any(|g| who.groups.contains(g));
        if new.is_some() && new != old && !allowed {
            return Err(PlanError::Policy(format!(
                "annotation {key} exempts an InferenceService from scaling policy and may only be set by the platform team (users {:?}, groups {:?}); remove it or ask them",
                exemptions.allowed_users, exemptions.allowed_groups
            )));
        }
    }
    let exempt =
        effective.exempt_namespace || exempt_annotation.as_ref().is_some_and(|(_, v)| v == "true");

    // Required autoscaling.
    let mut injected = None;
    let has_strategy = input.isvc.annotations.contains_key(&strategy_key);
    if let (false, false, Some((rule, req))) = (exempt, has_strategy, effective.require) {
        let applies = match req.when {
            RequireWhen::Gpu => input.isvc.predictor.requests_gpu,
            RequireWhen::Always => true,
        };
        if applies {
            let what = match req.when {
                RequireWhen::Gpu => "InferenceServices that request GPUs",
                RequireWhen::Always => "every InferenceService",
            };
            match (req.action, rule.enforcement, &req.strategy) {
                (RequireAction::Default, Enforcement::Enforce, Some(s)) => injected = Some(s.clone()),
                (RequireAction::Default, mode, Some(s)) => findings.push((
                    mode,
                    format!("rule '{}' will set {strategy_key}: {s} on {what}", rule.name),
                )),
                (_, mode, _) => findings.push((
                    mode,
                    format!(
                        "rule '{}' requires autoscaling for {what}: add {strategy_key} (for example tokens)",
                        rule.name
                    ),
                )),
            }
        }
    }

    // Plan as if the user had written the required strategy themselves.
    let with_default: Option<Isvc> = injected.as_ref().map(|s| {
        let mut copy = input.isvc.clone();
        copy.annotations.insert(strategy_key.clone(), s.clone());
        copy
    });
    let isvc = with_default.as_ref().unwrap_or(input.isvc);
    let mut planned = plan::plan(
        Input {
            isvc,
            old: input.old,
            live_deployment: input.live_deployment,
        },
        settings,
    )?;
    if let Some(s) = injected {
        planned.annotations.insert(strategy_key, Some(s));
    }

    if !exempt && let Some(so) = &planned.scaled_object {
        // Only the strategy limit needs the request itself (the planned triggers include the
        // companion `tokens` brings along); skip parsing it again on the common path.
        let checks_strategies = effective
            .limits
            .iter()
            .any(|l| l.limits.allowed_strategies.is_some());
        let requested = if checks_strategies {
            spec::parse(&isvc.annotations, &prefix)?
                .map(|s| s.strategies)
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        for scoped in &effective.limits {
            limit_findings(scoped, so, &requested, &prefix, &mut findings);
        }
    }

    let mut denials = Vec::new();
    for (mode, message) in findings {
        match mode {
            Enforcement::Enforce => denials.push(message),
            Enforcement::Warn => planned
                .warnings
                .push(format!("{WARN_PREFIX}{}", text::clip_to(&message, 240))),
            Enforcement::Audit => planned.audit.push(message),
        }
    }
    if !denials.is_empty() {
        return Err(PlanError::Policy(denials.join("; ")));
    }
    Ok(planned)
}

/// How a policy finding in `warn` mode starts, so it can be told from other warnings.
pub const WARN_PREFIX: &str = "policy (warn): ";

fn limit_findings(
    scoped: &Scoped<'_>,
    so: &crate::core::resources::ScaledObject,
    requested: &[Strategy],
    prefix: &str,
    out: &mut Vec<(Enforcement, String)>,
) {
    let l = scoped.limits;
    let src = &scoped.source;
    let mut push = |m: String| out.push((scoped.mode, format!("{src}: {m}")));
    if let Some(limit) = l.max_replicas
        && so.spec.max_replica_count > limit
    {
        push(format!(
            "max replicas {} is above the limit {limit}; set {prefix}/max-replicas to {limit} or less",
            so.spec.max_replica_count
        ));
    }
    if let Some(min) = l.min_polling_interval
        && so.spec.polling_interval < min
    {
        push(format!(
            "polling interval {}s is below the minimum {min}s; set {prefix}/polling-interval to {min} or more",
            so.spec.polling_interval
        ));
    }
    if let Some(allowed) = &l.allowed_strategies {
        let refused: Vec<&str> = requested
            .iter()
            .filter(|s| !allowed.contains(s))
            .map(|s| s.as_str())
            .collect();
        if !refused.is_empty() {
            let list: Vec<&str> = allowed.iter().map(|s| s.as_str()).collect();
            push(format!(
                "strategy {} is not allowed here; allowed: {}",
                refused.join(", "),
                list.join(", ")
            ));
        }
    }
    if let Some(allowed) = &l.allowed_prometheus_addresses
        && let Some(address) = so
            .spec
            .triggers
            .iter()
            .filter_map(|t| t.metadata.get("serverAddress"))
            .find(|a| !allowed.contains(a))
    {
        push(format!(
            "Prometheus address '{}' is not allowed; allowed: {}",
            text::clip(address),
            allowed.join(", ")
        ));
    }
}
