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
        // KEDA's ScaledObject fields are int32.
        if let Some(n) = self.default_min_replicas {
            if n > spec::MAX_INT32 {
                bail!(
                    "--default-min-replicas: {n} is not allowed; use a whole number up to {}",
                    spec::MAX_INT32
                );
            }
            s.min_replicas = n;
        }
        if let Some(n) = self.default_max_replicas {
            if n == 0 || n > spec::MAX_INT32 {
                bail!(
                    "--default-max-replicas: {n} is not allowed; use a whole number from 1 to {}",
                    spec::MAX_INT32
                );
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

/// `KEY=VALUE` items of a repeatable flag; the error names the flag and the item. A key
/// given twice is refused rather than the last one silently winning.
pub fn pairs(flag: &str, items: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for item in items {
        let Some((k, v)) = item.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            bail!("{flag}: '{}' is not KEY=VALUE", text::clip(item));
        };
        if out.insert(k.to_string(), v.to_string()).is_some() {
            bail!("{flag}: '{}' is given twice", text::clip(k));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        planning: PlanningArgs,
    }

    fn settings(args: &[&str]) -> anyhow::Result<Settings> {
        let cli = Cli::try_parse_from(std::iter::once("x").chain(args.iter().copied()))?;
        cli.planning.settings()
    }

    /// Hostile values on the flags that feed the planner: each is refused naming the flag,
    /// with the value clipped and control characters escaped.
    #[test]
    fn hostile_flag_values_are_refused_naming_the_flag() {
        let huge = "x".repeat(100_000);
        for (args, says) in [
            (
                vec!["--default-target", "queue=NaN"],
                "--default-target queue",
            ),
            (
                vec!["--default-target", "queue=inf"],
                "--default-target queue",
            ),
            (
                vec!["--default-target", "queue=-1"],
                "--default-target queue",
            ),
            (
                vec!["--default-target", "queue=0"],
                "--default-target queue",
            ),
            (
                vec!["--default-target", "queue=1e400"],
                "--default-target queue",
            ),
            (
                vec!["--default-target", "queue=1", "--default-target", "queue=2"],
                "--default-target: 'queue' is given twice",
            ),
            (
                vec!["--monitor-label", "a=b", "--monitor-label", "a=c"],
                "--monitor-label: 'a' is given twice",
            ),
            (vec!["--monitor-label", "a=b\nc"], "--monitor-label a"),
            (vec!["--monitor-label", "=v"], "--monitor-label"),
            (
                vec!["--default-max-replicas", "0"],
                "--default-max-replicas",
            ),
            (
                vec!["--default-max-replicas", "3000000000"],
                "--default-max-replicas",
            ),
            (
                vec!["--default-min-replicas", "3000000000"],
                "--default-min-replicas",
            ),
            (vec!["--default-min-replicas=-1"], "--default-min-replicas"),
            (
                vec!["--default-max-replicas", "4294967296"],
                "--default-max-replicas",
            ),
            (vec!["--raw-mode", &huge], "--raw-mode"),
            (vec!["--raw-mode", "Standard\u{1b}"], "--raw-mode"),
            (
                vec!["--prometheus-address", "http://prom\n:9090"],
                "--prometheus-address",
            ),
            (vec!["--prometheus-address", &huge], "--prometheus-address"),
            (
                vec![
                    "--trigger-auth-kind",
                    "TriggerAuthentication",
                    "--trigger-auth-name",
                    &huge,
                ],
                "--trigger-auth-name",
            ),
            (
                vec![
                    "--trigger-auth-kind",
                    "TriggerAuthentication",
                    "--trigger-auth-name",
                    "pr\u{43e}m",
                ],
                "--trigger-auth-name",
            ),
            (
                vec![
                    "--trigger-auth-kind",
                    "TriggerAuthentication",
                    "--trigger-auth-name",
                    "prom",
                    "--trigger-auth-modes",
                    "bearer\u{0}",
                ],
                "--trigger-auth-modes",
            ),
        ] {
            let e = match settings(&args) {
                Ok(_) => panic!("{} accepted", text::clip(&args.join(" "))),
                Err(e) => format!("{e:#}"),
            };
            assert!(e.contains(says), "{}: {e}", text::clip(&args.join(" ")));
            assert!(e.len() < 1_000, "clipped: {}", e.len());
            assert!(!e.contains('\u{1b}') && !e.contains('\0'), "{e:?}");
        }
    }

    /// Unicode where the flag allows it and repeated identical values are fine.
    #[test]
    fn ordinary_values_still_pass() {
        let s = settings(&[
            "--default-target",
            "queue=0.5",
            "--default-target",
            "tokens=1e3",
            "--monitor-label",
            "release=kps",
            "--default-min-replicas",
            "0",
            "--default-max-replicas",
            "2147483647",
        ])
        .unwrap();
        assert_eq!(s.max_replicas, 2_147_483_647);
        assert_eq!(s.targets[&Strategy::Tokens], 1000.0);
    }

    #[test]
    fn every_strategy_with_a_built_in_target_can_have_a_cluster_default() {
        assert_eq!(
            defaultable_strategies(),
            "tokens, concurrency, queue, kv-cache, ttft, itl, gpu, power"
        );
    }
}
