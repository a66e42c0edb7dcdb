//! The decision: what the policy means in one namespace (settings, limits, required
//! strategy, exemptions), and planning an InferenceService under it.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::core::isvc::Isvc;
use crate::core::plan::{self, Input, Plan, PlanError};
use crate::core::query_scope;
use crate::core::settings::{self, AuthRef, CredentialRefusal, Settings};
use crate::core::spec::{self, keys};
use crate::core::strategy::Strategy;
use crate::core::text;

use super::file::{
    Defaults, Enforcement, Limits, Policy, QueryNamespace, RequireAction, RequireStrategy,
    RequireWhen, Rule,
};

impl Policy {
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
        // The credential's owner decides what a refusal does: the top-level enforcement for
        // one set by flags or cluster defaults, the rule's for one a rule sets.
        let mut credential_mode = self.enforcement;
        for rule in self.rules.iter().filter(|r| r.applies(namespace, labels)) {
            overlay(&mut settings, &rule.defaults);
            if rule.defaults.trigger_authentication.is_some() {
                credential_mode = rule.enforcement;
            }
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
        if settings.trigger_auth.is_some() {
            credential_scope(&mut settings, &limits, credential_mode);
        }
        Effective {
            settings,
            limits,
            require,
            exempt_namespace: exempt,
            policy: self,
        }
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

/// Where the shared credential may go in this namespace: the addresses every
/// `allowedPrometheusAddresses` in force allows (the default address always may), and
/// whether `custom` queries must keep to their namespace (the tightest
/// `customQueryNamespace`; `own` when none says).
fn credential_scope(s: &mut Settings, limits: &[Scoped<'_>], mode: Enforcement) {
    let mut lists = limits
        .iter()
        .filter_map(|l| l.limits.allowed_prometheus_addresses.as_ref());
    s.credential_addresses = match lists.next() {
        None => Vec::new(),
        Some(first) => {
            let rest: Vec<&Vec<String>> = lists.collect();
            first
                .iter()
                .filter(|a| {
                    rest.iter()
                        .all(|l| l.iter().any(|b| settings::same_address(a, b)))
                })
                .cloned()
                .collect()
        }
    };
    let said: Vec<QueryNamespace> = limits
        .iter()
        .filter_map(|l| l.limits.custom_query_namespace)
        .collect();
    s.scoped_custom_queries = said.is_empty() || said.contains(&QueryNamespace::Own);
    s.credential_refusal = match mode {
        Enforcement::Enforce => CredentialRefusal::Deny,
        Enforcement::Warn | Enforcement::Audit => CredentialRefusal::Withhold,
    };
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
            .find(|a| !allowed.iter().any(|b| settings::same_address(a, b)))
    {
        push(format!(
            "Prometheus address '{}' is not allowed; allowed: {}",
            text::clip(address),
            allowed.join(", ")
        ));
    }
    if l.custom_query_namespace == Some(QueryNamespace::Own)
        && let Some(query) = so
            .spec
            .triggers
            .iter()
            .find(|t| t.name == Strategy::Custom.as_str())
            .and_then(|t| t.metadata.get("query"))
    {
        let namespace = so.metadata.namespace.as_deref().unwrap_or_default();
        let scoped = match promql_parser::parser::parse(query) {
            Ok(expr) => query_scope::check(&expr, namespace).map_err(|e| e.to_string()),
            Err(e) => Err(format!("is not valid PromQL: {}", text::clip(&e))),
        };
        if let Err(why) = scoped {
            push(format!(
                "{prefix}/query may read only namespace '{namespace}': {why}"
            ));
        }
    }
}
