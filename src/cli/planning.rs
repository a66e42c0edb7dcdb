//! The planning flags every command shares, turned into checked [`Settings`]; each error
//! names the flag.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use kserve_keda_webhook::core::names;
use kserve_keda_webhook::core::settings::{self, AuthRef, RawMode, Settings, TriggerAuthKind};
use kserve_keda_webhook::core::spec;
use kserve_keda_webhook::core::strategy::Strategy;
use kserve_keda_webhook::core::text;

/// Cluster defaults: what a platform team sets for everyone.
#[derive(Args, Clone)]
pub struct PlanningArgs {
    /// Platform policy file (YAML): defaults, limits, namespace rules. `serve` re-reads it
    /// when it changes.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Value written to serving.kserve.io/deploymentMode (Standard needs KServe >= 0.16).
    #[arg(long, value_name = "MODE", default_value = "RawDeployment")]
    raw_mode: String,
    /// Prometheus URL KEDA queries when an InferenceService names none.
    #[arg(long, value_name = "URL")]
    prometheus_address: Option<String>,
    /// Label put on every generated monitor, e.g. release=prometheus (repeatable).
    #[arg(long = "monitor-label", value_name = "KEY=VALUE")]
    monitor_labels: Vec<String>,
    /// Kind of the KEDA authentication object for Prometheus.
    #[arg(
        long,
        value_name = "KIND",
        requires = "trigger_auth_name",
        value_parser = trigger_auth_kind()
    )]
    trigger_auth_kind: Option<TriggerAuthKind>,
    /// Name of the (Cluster)TriggerAuthentication for Prometheus.
    #[arg(long, value_name = "NAME", requires = "trigger_auth_kind")]
    trigger_auth_name: Option<String>,
    /// KEDA authModes for Prometheus, e.g. bearer.
    #[arg(long, value_name = "MODES", default_value = "bearer")]
    trigger_auth_modes: String,
    /// Default per-replica target for a strategy, e.g. queue=8 (repeatable).
    #[arg(long = "default-target", value_name = "STRATEGY=VALUE")]
    default_targets: Vec<String>,
    /// Minimum replicas when neither annotation nor spec sets one.
    #[arg(long, value_name = "N")]
    default_min_replicas: Option<u32>,
    /// Maximum replicas when neither annotation nor spec sets one.
    #[arg(long, value_name = "N")]
    default_max_replicas: Option<u32>,
}

/// The kinds as the policy file spells them, listed in `--help`.
fn trigger_auth_kind() -> impl TypedValueParser<Value = TriggerAuthKind> {
    PossibleValuesParser::new(TriggerAuthKind::ALL.map(TriggerAuthKind::as_str))
        .try_map(|name| name.parse::<TriggerAuthKind>())
}

impl PlanningArgs {
    pub fn settings(&self) -> anyhow::Result<Settings> {
        let mut s = Settings {
            raw_mode: self
                .raw_mode
                .parse::<RawMode>()
                .map_err(|e| anyhow::anyhow!("--raw-mode: {e}"))?,
            ..Settings::default()
        };
        if let Some(addr) = &self.prometheus_address {
            spec::check_url(addr).map_err(|e| anyhow::anyhow!("--prometheus-address: {e}"))?;
            s.prometheus_address = addr.clone();
        }
        s.monitor_labels = pairs("--monitor-label", &self.monitor_labels)?;
        for (k, v) in &s.monitor_labels {
            names::label_key(k).map_err(|e| anyhow::anyhow!("--monitor-label: {e}"))?;
            names::label_value(v).map_err(|e| anyhow::anyhow!("--monitor-label {k}: {e}"))?;
        }
        if let (Some(kind), Some(name)) = (self.trigger_auth_kind, &self.trigger_auth_name) {
            names::dns1123_subdomain(name)
                .map_err(|e| anyhow::anyhow!("--trigger-auth-name: {e}"))?;
            settings::check_auth_modes(&self.trigger_auth_modes)
                .map_err(|e| anyhow::anyhow!("--trigger-auth-modes: {e}"))?;
            s.trigger_auth = Some(AuthRef {
                kind: kind.as_str().to_string(),
                name: name.clone(),
                modes: self.trigger_auth_modes.clone(),
            });
        }
        for (name, value) in pairs("--default-target", &self.default_targets)? {
            // Only strategies with a built-in target can have a cluster default: `custom`
            // has no unit anyone but its author knows.
            let strategy = Strategy::parse(&name)
                .filter(|s| s.default_target().is_some())
                .with_context(|| {
                    format!(
                        "--default-target: '{name}' is not a strategy; allowed: {}",
                        defaultable_strategies()
                    )
                })?;
            let target = spec::positive(&value)
                .map_err(|e| anyhow::anyhow!("--default-target {name}: {e}"))?;
            s.targets.insert(strategy, target);
        }
        if let Some(n) = self.default_min_replicas {
            s.min_replicas = n;
        }
        if let Some(n) = self.default_max_replicas {
            if n == 0 {
                bail!("--default-max-replicas: must be at least 1");
            }
            s.max_replicas = n;
        }
        if s.min_replicas > s.max_replicas {
            bail!(
                "--default-min-replicas {} is greater than --default-max-replicas {}",
                s.min_replicas,
                s.max_replicas
            );
        }
        Ok(s)
    }
}

fn defaultable_strategies() -> String {
    Strategy::ALL
        .into_iter()
        .filter(|s| s.default_target().is_some())
        .map(Strategy::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `KEY=VALUE` items of a repeatable flag; the error names the flag and the item.
pub fn pairs(flag: &str, items: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    items
        .iter()
        .map(|item| match item.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => bail!("{flag}: '{}' is not KEY=VALUE", text::clip(item)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_strategy_with_a_built_in_target_can_have_a_cluster_default() {
        assert_eq!(
            defaultable_strategies(),
            "tokens, concurrency, queue, kv-cache, ttft, itl, gpu, power"
        );
    }
}
