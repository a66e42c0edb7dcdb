//! The policy file: its types as written in YAML, parsing, and the checks that refuse a
//! file which could not be applied (each error names the field's path).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use serde::Deserialize;

use super::source;

use crate::core::names;
use crate::core::settings::{self, RawMode, Settings, TriggerAuthKind};
use crate::core::spec::{self, MonitorKind, keys};
use crate::core::strategy::Strategy;
use crate::core::text;

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
    /// Where KEDA may query; with a shared credential configured, also the addresses besides
    /// the default that may receive it.
    pub allowed_prometheus_addresses: Option<Vec<String>>,
    pub min_polling_interval: Option<u32>,
    /// Which series a `custom` query may read. Unset: `own` when a shared credential is
    /// configured (the trigger carries it), `any` otherwise.
    pub custom_query_namespace: Option<QueryNamespace>,
}

/// `limits.customQueryNamespace`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueryNamespace {
    /// Every selector must carry `namespace="<the InferenceService's namespace>"`.
    Own,
    /// No restriction (the platform's Prometheus enforces its own, or holds nothing private).
    Any,
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
    /// matching either is in scope. Read in the strict form of [`Selector`]: k8s-openapi's
    /// type skips unknown keys, and a typo such as `matchLabel` would leave an empty
    /// selector, which selects every namespace.
    #[serde(default, deserialize_with = "strict_selector")]
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

/// A label selector as the policy file may spell it: the fields of Kubernetes'
/// `LabelSelector`, and nothing else.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Selector {
    match_labels: Option<BTreeMap<String, String>>,
    match_expressions: Option<Vec<Requirement>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Requirement {
    key: String,
    operator: Operator,
    values: Option<Vec<String>>,
}

#[derive(Clone, Copy, Deserialize)]
enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

fn strict_selector<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<LabelSelector>, D::Error> {
    let Some(s) = Option::<Selector>::deserialize(d)? else {
        return Ok(None);
    };
    let expressions = s.match_expressions.map(|list| {
        list.into_iter()
            .map(|r| LabelSelectorRequirement {
                key: r.key,
                operator: match r.operator {
                    Operator::In => "In",
                    Operator::NotIn => "NotIn",
                    Operator::Exists => "Exists",
                    Operator::DoesNotExist => "DoesNotExist",
                }
                .to_string(),
                values: r.values,
            })
            .collect()
    });
    Ok(Some(LabelSelector {
        match_labels: s.match_labels,
        match_expressions: expressions,
    }))
}

/// [`parse`] for the bytes of a file: the size cap is checked before anything else, and
/// text that is not UTF-8 is refused naming the byte.
pub fn parse_bytes(bytes: &[u8]) -> Result<Policy, PolicyError> {
    source::check_size(bytes.len()).map_err(PolicyError::Syntax)?;
    let text = std::str::from_utf8(bytes).map_err(|e| {
        PolicyError::Syntax(format!(
            "is not UTF-8 text (byte {} is not)",
            e.valid_up_to()
        ))
    })?;
    parse(text)
}

/// Parses and checks a policy. Syntax, type and unknown-field errors carry the line and
/// column and the field's path; consistency errors name the path of the field. The text is
/// read within the limits of [`super::source`] (size, nesting, aliases).
pub fn parse(text: &str) -> Result<Policy, PolicyError> {
    let policy: Policy = if text.trim().is_empty() {
        Policy::default()
    } else {
        source::read(text).map_err(PolicyError::Syntax)?
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
        let mut names = std::collections::HashSet::new();
        for (i, rule) in self.rules.iter().enumerate() {
            let at = |f: &str| format!("rules[{i}] ({}).{f}", text::clip(&rule.name));
            if rule.name.trim().is_empty() {
                return bad(
                    format!("rules[{i}].name"),
                    "is empty; every rule needs a name for its messages".into(),
                );
            }
            // The name is shown to users in denials and warnings, and in log lines.
            if rule.name.chars().count() > RULE_NAME_MAX || rule.name.chars().any(char::is_control)
            {
                return bad(
                    format!("rules[{i}].name"),
                    format!(
                        "'{}' is not allowed; use at most {RULE_NAME_MAX} characters and no control characters",
                        text::clip(&rule.name)
                    ),
                );
            }
            if !names.insert(rule.name.as_str()) {
                return bad(
                    at("name"),
                    "is used by an earlier rule; names must be unique".into(),
                );
            }
            for (j, n) in rule.namespaces.iter().enumerate() {
                if let Err(e) = names::dns1123_label(n) {
                    return bad(
                        at(&format!("namespaces[{j}]")),
                        format!("{e}; a namespace of that name cannot exist"),
                    );
                }
            }
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
                let labels = sel.match_labels.iter().flatten();
                if labels.clone().next().is_none()
                    && sel.match_expressions.as_ref().is_none_or(Vec::is_empty)
                {
                    return bad(
                        at("namespaceSelector"),
                        "is empty, which selects every namespace; give matchLabels or matchExpressions, or leave namespaceSelector out for a rule that applies everywhere".into(),
                    );
                }
                for (k, v) in labels {
                    if let Err(e) = names::label_key(k) {
                        return bad(at("namespaceSelector.matchLabels"), e);
                    }
                    if let Err(e) = names::label_value(v) {
                        return bad(
                            at(&format!("namespaceSelector.matchLabels.{}", text::clip(k))),
                            e,
                        );
                    }
                }
                for (j, expr) in sel.match_expressions.iter().flatten().enumerate() {
                    let here = |f: &str| at(&format!("namespaceSelector.matchExpressions[{j}]{f}"));
                    if let Err(e) = names::label_key(&expr.key) {
                        return bad(here(".key"), e);
                    }
                    if let Some(e) = expr
                        .values
                        .iter()
                        .flatten()
                        .find_map(|v| names::label_value(v).err())
                    {
                        return bad(here(".values"), e);
                    }
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
        let ex = &self.exemptions;
        for (k, v) in &ex.namespace_labels {
            if let Err(e) = names::label_key(k) {
                return bad("exemptions.namespaceLabels".into(), e);
            }
            if let Err(e) = names::label_value(v) {
                return bad(format!("exemptions.namespaceLabels.{}", text::clip(k)), e);
            }
        }
        if let Some(a) = &ex.annotation
            && let Err(e) = names::label_key(a)
        {
            return bad(
                "exemptions.annotation".into(),
                e.replace("label key", "annotation key"),
            );
        }
        for (field, list) in [
            ("allowedUsers", &ex.allowed_users),
            ("allowedGroups", &ex.allowed_groups),
        ] {
            for (j, who) in list.iter().enumerate() {
                if who.is_empty() || who.len() > 1024 || who.chars().any(char::is_control) {
                    return bad(
                        format!("exemptions.{field}[{j}]"),
                        format!(
                            "'{}' is not a user or group name: use 1 to 1024 characters and no control characters",
                            text::clip(who)
                        ),
                    );
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
        super::overlap::check(self)
    }

    pub fn prefix(&self) -> String {
        self.defaults
            .annotation_prefix
            .clone()
            .unwrap_or_else(|| Settings::default().prefix)
    }

    /// Whether any rule selects namespaces by label (which needs the namespace cache).
    pub fn uses_namespace_labels(&self) -> bool {
        !self.exemptions.namespace_labels.is_empty()
            || self.rules.iter().any(|r| r.namespace_selector.is_some())
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

/// The longest rule name, as long as an object name: it is shown in denials and warnings
/// (which clip it to fit what the API server shows).
pub const RULE_NAME_MAX: usize = 253;

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
    for (f, n) in [
        ("maxReplicas", l.max_replicas),
        ("minPollingInterval", l.min_polling_interval),
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
    if l.allowed_strategies.as_ref().is_some_and(Vec::is_empty) {
        return bad(
            "allowedStrategies",
            "is empty, which allows nothing and refuses every InferenceService with a strategy; list the strategies to allow, or leave it out".into(),
        );
    }
    if l.allowed_prometheus_addresses
        .as_ref()
        .is_some_and(Vec::is_empty)
    {
        return bad(
            "allowedPrometheusAddresses",
            "is empty, which allows nothing and refuses every InferenceService with a strategy; list the addresses to allow, or leave it out".into(),
        );
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
        && !allowed.iter().any(|x| settings::same_address(x, a))
    {
        return bad(
            "prometheusAddress",
            format!("default '{a}' is not in allowedPrometheusAddresses"),
        );
    }
    Ok(())
}
