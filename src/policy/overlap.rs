//! `policy check`: defaults that can never be admitted where they apply.
//!
//! In a namespace, the defaults in force are the cluster's overlaid by every matching rule's
//! (a later rule wins), and every matching rule's limits apply on top. A default that breaks
//! one of those limits denies (or warns about) every InferenceService there that relies on
//! it. The file's own checks already compare a rule's defaults with its own and the cluster's
//! limits; this one follows the defaults into each namespace two scopes share: a rule that
//! applies everywhere, the namespaces rules name, and whatever a label-selected rule picks
//! (where the rules for every namespace apply too). Whether two label-selected rules meet
//! only the cluster knows, so that pair is left out.
//!
//! Linear in the file: the rules that apply everywhere are folded once (the last to set each
//! default, the tightest of each limit), then each named namespace adds its own rules.

use std::collections::{BTreeMap, HashMap};

use super::file::{Defaults, Enforcement, Policy, PolicyError, RequireAction, Rule};
use crate::core::settings;
use crate::core::strategy::Strategy;

/// A value and the path of the field that set it.
#[derive(Clone, Debug)]
struct At<T> {
    value: T,
    path: String,
    /// Index of the rule that set it; `None` for the top level.
    rule: Option<usize>,
}

fn rule_path(i: usize, r: &Rule, field: &str) -> String {
    format!("rules[{i}] ({}).{field}", crate::core::text::clip(&r.name))
}

/// The defaults in force (those the file sets) and the limits that apply, in one place.
#[derive(Clone, Default)]
struct Scope {
    max_replicas: Option<At<u32>>,
    min_replicas: Option<At<u32>>,
    polling_interval: Option<At<u32>>,
    prometheus_address: Option<At<String>>,
    required_strategy: Option<At<String>>,
    /// Tightest limits.
    limit_max_replicas: Option<At<u32>>,
    limit_min_polling: Option<At<u32>>,
}

impl Scope {
    /// Overlays the defaults of a scope (the top level or rule `i`), later ones winning.
    fn overlay(&mut self, d: &Defaults, path: &dyn Fn(&str) -> String, rule: Option<usize>) {
        let at = |value, field: &str| At {
            value,
            path: path(&format!("defaults.{field}")),
            rule,
        };
        if let Some(n) = d.max_replicas {
            self.max_replicas = Some(at(n, "maxReplicas"));
        }
        if let Some(n) = d.min_replicas {
            self.min_replicas = Some(at(n, "minReplicas"));
        }
        if let Some(n) = d.polling_interval {
            self.polling_interval = Some(at(n, "pollingInterval"));
        }
        if let Some(a) = &d.prometheus_address {
            self.prometheus_address = Some(At {
                value: a.clone(),
                path: path("defaults.prometheusAddress"),
                rule,
            });
        }
    }

    fn add_rule(&mut self, i: usize, r: &Rule) {
        let path = |f: &str| rule_path(i, r, f);
        self.overlay(&r.defaults, &path, Some(i));
        // The last matching rule's requirement is the one in force; only `action: default`
        // in enforce mode adds a strategy (an empty value stands for one that adds none).
        if let Some(req) = &r.require_strategy {
            let adds = match (req.action, r.enforcement, &req.strategy) {
                (RequireAction::Default, Enforcement::Enforce, Some(s)) => s.clone(),
                _ => String::new(),
            };
            self.required_strategy = Some(At {
                value: adds,
                path: path("requireStrategy.strategy"),
                rule: Some(i),
            });
        }
        self.tighten(&r.limits, &path, Some(i));
    }

    fn tighten(
        &mut self,
        l: &super::file::Limits,
        path: &dyn Fn(&str) -> String,
        rule: Option<usize>,
    ) {
        if let Some(n) = l.max_replicas
            && self.limit_max_replicas.as_ref().is_none_or(|t| n < t.value)
        {
            self.limit_max_replicas = Some(At {
                value: n,
                path: path("limits.maxReplicas"),
                rule,
            });
        }
        if let Some(n) = l.min_polling_interval
            && self.limit_min_polling.as_ref().is_none_or(|t| n > t.value)
        {
            self.limit_min_polling = Some(At {
                value: n,
                path: path("limits.minPollingInterval"),
                rule,
            });
        }
    }

    /// `self` for the rules that apply everywhere, then the rules of one namespace: the last
    /// setter of each default (by position in the file), the tightest of each limit.
    fn with(&self, policy: &Policy, named: &[usize]) -> Scope {
        let mut out = Scope::default();
        for &i in named {
            out.add_rule(i, &policy.rules[i]);
        }
        let later = |a: &Option<At<u32>>, b: &Option<At<u32>>| -> Option<At<u32>> {
            match (a, b) {
                (Some(x), Some(y)) => Some(if x.rule > y.rule { x } else { y }.clone()),
                (x, y) => x.clone().or_else(|| y.clone()),
            }
        };
        let later_s = |a: &Option<At<String>>, b: &Option<At<String>>| match (a, b) {
            (Some(x), Some(y)) => Some(if x.rule > y.rule { x } else { y }.clone()),
            (x, y) => x.clone().or_else(|| y.clone()),
        };
        Scope {
            max_replicas: later(&self.max_replicas, &out.max_replicas),
            min_replicas: later(&self.min_replicas, &out.min_replicas),
            polling_interval: later(&self.polling_interval, &out.polling_interval),
            prometheus_address: later_s(&self.prometheus_address, &out.prometheus_address),
            required_strategy: later_s(&self.required_strategy, &out.required_strategy),
            limit_max_replicas: match (&self.limit_max_replicas, &out.limit_max_replicas) {
                (Some(x), Some(y)) => Some(if y.value < x.value { y } else { x }.clone()),
                (x, y) => x.clone().or_else(|| y.clone()),
            },
            limit_min_polling: match (&self.limit_min_polling, &out.limit_min_polling) {
                (Some(x), Some(y)) => Some(if y.value > x.value { y } else { x }.clone()),
                (x, y) => x.clone().or_else(|| y.clone()),
            },
        }
    }
}

/// Reports the first default that a limit in force where it applies refuses.
pub fn check(policy: &Policy) -> Result<(), PolicyError> {
    let everywhere: Vec<usize> = policy
        .rules
        .iter()
        .enumerate()
        .filter(|(_, r)| r.namespaces.is_empty() && r.namespace_selector.is_none())
        .map(|(i, _)| i)
        .collect();
    let mut named: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, r) in policy.rules.iter().enumerate() {
        for n in &r.namespaces {
            let list = named.entry(n.as_str()).or_default();
            if list.last() != Some(&i) {
                list.push(i);
            }
        }
    }
    let mut base = Scope::default();
    base.overlay(&policy.defaults, &|f: &str| f.to_string(), None);
    base.tighten(&policy.limits, &|f: &str| f.to_string(), None);
    for &i in &everywhere {
        base.add_rule(i, &policy.rules[i]);
    }
    // The address and strategy lists are checked one by one; an answer per value is kept,
    // so a value shared by many namespaces is looked up once.
    let lists = Lists::new(policy, &everywhere);
    let mut memo = Memo::default();
    check_scope(policy, &base, &[], "every namespace", &lists, &mut memo)?;
    for (ns, rules) in &named {
        let scope = base.with(policy, rules);
        let place = format!("namespace {}", crate::core::text::clip(ns));
        check_scope(policy, &scope, rules, &place, &lists, &mut memo)?;
    }
    // Whatever namespaces a label-selected rule picks, the rules for every namespace apply
    // there too.
    for (i, r) in policy.rules.iter().enumerate() {
        if r.namespace_selector.is_some() {
            let scope = base.with(policy, &[i]);
            let place = format!(
                "the namespaces rule '{}' selects",
                crate::core::text::clip(&r.name)
            );
            check_scope(policy, &scope, &[i], &place, &lists, &mut memo)?;
        }
    }
    Ok(())
}

/// The allow-lists of the top level and of the rules that apply everywhere.
struct Lists<'a> {
    addresses: Vec<(String, &'a [String])>,
    strategies: Vec<(String, &'a [Strategy])>,
}

impl<'a> Lists<'a> {
    fn new(policy: &'a Policy, everywhere: &[usize]) -> Lists<'a> {
        let mut out = Lists {
            addresses: Vec::new(),
            strategies: Vec::new(),
        };
        let scopes = std::iter::once((String::new(), &policy.limits)).chain(
            everywhere
                .iter()
                .map(|&i| (rule_path(i, &policy.rules[i], ""), &policy.rules[i].limits)),
        );
        for (at, l) in scopes {
            if let Some(a) = &l.allowed_prometheus_addresses {
                out.addresses
                    .push((format!("{at}limits.allowedPrometheusAddresses"), a));
            }
            if let Some(s) = &l.allowed_strategies {
                out.strategies
                    .push((format!("{at}limits.allowedStrategies"), s));
            }
        }
        out
    }
}

#[derive(Default)]
struct Memo {
    addresses: HashMap<String, Option<String>>,
    strategies: HashMap<String, Option<String>>,
}

fn check_scope(
    policy: &Policy,
    s: &Scope,
    rules: &[usize],
    place: &str,
    lists: &Lists<'_>,
    memo: &mut Memo,
) -> Result<(), PolicyError> {
    let fail = |default_path: &str, problem: String| {
        Err(PolicyError::Invalid {
            path: default_path.to_string(),
            problem: format!(
                "{problem}, and both apply in {place}: every InferenceService there that relies on the default would be refused (or warned about); change one of them, or set the default in a rule for those namespaces"
            ),
        })
    };
    if let (Some(d), Some(l)) = (&s.max_replicas, &s.limit_max_replicas)
        && d.value > l.value
    {
        return fail(
            &d.path,
            format!(
                "default {} is above the limit {} of {}",
                d.value, l.value, l.path
            ),
        );
    }
    if let (Some(d), Some(l)) = (&s.polling_interval, &s.limit_min_polling)
        && d.value < l.value
    {
        return fail(
            &d.path,
            format!(
                "default {} is below the minimum {} of {}",
                d.value, l.value, l.path
            ),
        );
    }
    if let (Some(min), Some(max)) = (&s.min_replicas, &s.max_replicas)
        && min.value > max.value
    {
        return fail(
            &min.path,
            format!(
                "default {} is greater than {} {}",
                min.value, max.path, max.value
            ),
        );
    }
    let named_addresses = rules.iter().filter_map(|&i| {
        let r = &policy.rules[i];
        r.limits
            .allowed_prometheus_addresses
            .as_deref()
            .map(|a| (rule_path(i, r, "limits.allowedPrometheusAddresses"), a))
    });
    if let Some(d) = &s.prometheus_address {
        let shared = memo
            .addresses
            .entry(d.value.clone())
            .or_insert_with(|| {
                lists
                    .addresses
                    .iter()
                    .find(|(_, l)| !l.iter().any(|a| settings::same_address(a, &d.value)))
                    .map(|(p, _)| p.clone())
            })
            .clone();
        let refused = shared.or_else(|| {
            named_addresses
                .clone()
                .find(|(_, l)| !l.iter().any(|a| settings::same_address(a, &d.value)))
                .map(|(p, _)| p)
        });
        if let Some(list) = refused {
            return fail(
                &d.path,
                format!(
                    "default '{}' is not in {list}",
                    crate::core::text::clip(&d.value)
                ),
            );
        }
    }
    if let Some(d) = s.required_strategy.as_ref().filter(|d| !d.value.is_empty()) {
        // The file's own check parsed the value already; a list of names, comma-separated.
        let wanted: Vec<Strategy> = d
            .value
            .split(',')
            .filter_map(|x| Strategy::parse(x.trim()))
            .collect();
        let refuses = |l: &[Strategy]| wanted.iter().any(|w| !l.contains(w));
        let shared = memo
            .strategies
            .entry(d.value.clone())
            .or_insert_with(|| {
                lists
                    .strategies
                    .iter()
                    .find(|(_, l)| refuses(l))
                    .map(|(p, _)| p.clone())
            })
            .clone();
        let refused = shared.or_else(|| {
            rules.iter().find_map(|&i| {
                let r = &policy.rules[i];
                r.limits
                    .allowed_strategies
                    .as_deref()
                    .filter(|l| refuses(l))
                    .map(|_| rule_path(i, r, "limits.allowedStrategies"))
            })
        });
        if let Some(list) = refused {
            return fail(
                &d.path,
                format!(
                    "'{}' is added to InferenceServices without a strategy, but {list} does not allow it",
                    crate::core::text::clip(&d.value)
                ),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{PolicyError, parse};

    fn refused(text: &str) -> (String, String) {
        match parse(text) {
            Err(PolicyError::Invalid { path, problem }) => (path, problem),
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn a_default_refused_by_another_scopes_limit_where_both_apply_is_reported() {
        for (text, path, names, place) in [
            (
                "rules:\n- name: cap\n  limits: {maxReplicas: 4}\n- name: big\n  namespaces: [x]\n  defaults: {maxReplicas: 8}\n",
                "rules[1] (big).defaults.maxReplicas",
                "rules[0] (cap).limits.maxReplicas",
                "namespace x",
            ),
            (
                "rules:\n- name: cap\n  namespaces: [x, y]\n  limits: {maxReplicas: 4}\n- name: big\n  namespaces: [y]\n  defaults: {maxReplicas: 8}\n",
                "rules[1] (big).defaults.maxReplicas",
                "rules[0] (cap).limits.maxReplicas",
                "namespace y",
            ),
            (
                // The rule that applies first in the file sets the limit, a later one the
                // default.
                "rules:\n- name: a\n  namespaces: [x]\n  defaults: {maxReplicas: 3}\n  limits: {maxReplicas: 4}\n- name: b\n  namespaces: [x]\n  defaults: {maxReplicas: 8}\n",
                "rules[1] (b).defaults.maxReplicas",
                "rules[0] (a).limits.maxReplicas",
                "namespace x",
            ),
            (
                "defaults: {maxReplicas: 8}\nrules:\n- name: small\n  namespaces: [x]\n  limits: {maxReplicas: 4}\n",
                "defaults.maxReplicas",
                "rules[0] (small).limits.maxReplicas",
                "namespace x",
            ),
            (
                "rules:\n- name: slow\n  limits: {minPollingInterval: 60}\n- name: fast\n  namespaces: [x]\n  defaults: {pollingInterval: 5}\n",
                "rules[1] (fast).defaults.pollingInterval",
                "rules[0] (slow).limits.minPollingInterval",
                "namespace x",
            ),
            (
                "rules:\n- name: floor\n  defaults: {minReplicas: 5}\n- name: ceiling\n  namespaces: [x]\n  defaults: {maxReplicas: 3}\n",
                "rules[0] (floor).defaults.minReplicas",
                "rules[1] (ceiling).defaults.maxReplicas",
                "namespace x",
            ),
            (
                "rules:\n- name: gpus\n  requireStrategy: {action: default, strategy: tokens}\n- name: queues-only\n  namespaces: [x]\n  limits: {allowedStrategies: [queue]}\n",
                "rules[0] (gpus).requireStrategy.strategy",
                "rules[1] (queues-only).limits.allowedStrategies",
                "namespace x",
            ),
            (
                "limits: {allowedStrategies: [queue]}\nrules:\n- name: gpus\n  namespaces: [x]\n  requireStrategy: {action: default, strategy: tokens}\n",
                "rules[0] (gpus).requireStrategy.strategy",
                "limits.allowedStrategies",
                "namespace x",
            ),
            (
                "rules:\n- name: platform-prom\n  limits: {allowedPrometheusAddresses: ['http://prom:9090']}\n- name: team\n  namespaces: [x]\n  defaults: {prometheusAddress: 'http://team-prom:9090'}\n",
                "rules[1] (team).defaults.prometheusAddress",
                "rules[0] (platform-prom).limits.allowedPrometheusAddresses",
                "namespace x",
            ),
            (
                "rules:\n- name: cap\n  limits: {maxReplicas: 4}\n- name: big\n  defaults: {maxReplicas: 8}\n",
                "rules[1] (big).defaults.maxReplicas",
                "rules[0] (cap).limits.maxReplicas",
                "every namespace",
            ),
            (
                "rules:\n- name: cap\n  limits: {maxReplicas: 4}\n- name: gold\n  namespaceSelector: {matchLabels: {tier: gold}}\n  defaults: {maxReplicas: 8}\n",
                "rules[1] (gold).defaults.maxReplicas",
                "rules[0] (cap).limits.maxReplicas",
                "the namespaces rule 'gold' selects",
            ),
            (
                "rules:\n- name: gold\n  namespaceSelector: {matchLabels: {tier: gold}}\n  limits: {allowedStrategies: [queue]}\n  requireStrategy: {action: default, strategy: tokens}\n",
                "rules[0] (gold).requireStrategy.strategy",
                "rules[0] (gold).limits.allowedStrategies",
                "the namespaces rule 'gold' selects",
            ),
        ] {
            let (p, problem) = refused(text);
            assert_eq!(p, path, "{text}");
            assert!(
                problem.contains(names) && problem.contains(place),
                "{text}: {problem}"
            );
        }
    }

    #[test]
    fn defaults_that_fit_where_they_apply_pass() {
        for text in [
            // No namespace in common.
            "rules:\n- name: cap\n  namespaces: [x]\n  limits: {maxReplicas: 4}\n- name: big\n  namespaces: [y]\n  defaults: {maxReplicas: 8}\n",
            // A later rule's default replaces the one that would not fit.
            "rules:\n- name: big\n  namespaces: [x]\n  defaults: {maxReplicas: 8}\n- name: cap\n  namespaces: [x]\n  defaults: {maxReplicas: 3}\n  limits: {maxReplicas: 4}\n",
            // A label-selected rule may or may not pick a named namespace.
            "rules:\n- name: cap\n  namespaceSelector: {matchLabels: {tier: small}}\n  limits: {maxReplicas: 4}\n- name: big\n  namespaces: [x]\n  defaults: {maxReplicas: 8}\n",
            // A requirement in warn mode adds no strategy; a later deny replaces a default.
            "rules:\n- name: gpus\n  enforcement: warn\n  requireStrategy: {action: default, strategy: tokens}\n- name: q\n  namespaces: [x]\n  limits: {allowedStrategies: [queue]}\n",
            "rules:\n- name: gpus\n  requireStrategy: {action: default, strategy: tokens}\n- name: q\n  namespaces: [x]\n  requireStrategy: {action: deny}\n  limits: {allowedStrategies: [queue]}\n",
            // The address is allowed, spelled otherwise.
            "rules:\n- name: p\n  limits: {allowedPrometheusAddresses: ['http://prom:80']}\n- name: t\n  namespaces: [x]\n  defaults: {prometheusAddress: 'http://Prom'}\n",
        ] {
            assert!(parse(text).is_ok(), "{text}: {:?}", parse(text));
        }
    }
}
