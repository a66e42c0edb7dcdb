//! The user's `scaling.io/*` annotations, parsed into a typed request with field-named errors.

use std::collections::BTreeMap;

use crate::settings::MonitorKind;
use crate::strategy::{MetricType, Runtime, Strategy};

/// One annotation has a value the product cannot use.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("annotation {key}: {problem}")]
pub struct AnnotationError {
    pub key: String,
    pub problem: String,
}

/// Annotation names under the prefix. Inputs are what users write; records are what the
/// webhook writes back and never reads as a request.
pub mod keys {
    pub const STRATEGY: &str = "strategy";
    pub const TARGET: &str = "target";
    pub const TARGET_PREFIX: &str = "target-";
    pub const ACTIVATION: &str = "activation-target";
    pub const ACTIVATION_PREFIX: &str = "activation-target-";
    pub const MIN_REPLICAS: &str = "min-replicas";
    pub const MAX_REPLICAS: &str = "max-replicas";
    pub const POLLING_INTERVAL: &str = "polling-interval";
    pub const COOLDOWN_PERIOD: &str = "cooldown-period";
    pub const WINDOW: &str = "window";
    pub const RUNTIME: &str = "runtime";
    pub const PROMETHEUS_ADDRESS: &str = "prometheus-address";
    pub const QUERY: &str = "query";
    pub const METRIC_TYPE: &str = "metric-type";
    pub const MONITOR: &str = "monitor";
    pub const METRICS_PORT: &str = "metrics-port";
    pub const METRICS_PATH: &str = "metrics-path";
    /// `false` leaves out the PrometheusRule generated beside the monitor.
    pub const ALERTS: &str = "alerts";

    pub const FIXED_INPUTS: [&str; 16] = [
        STRATEGY,
        TARGET,
        ACTIVATION,
        MIN_REPLICAS,
        MAX_REPLICAS,
        POLLING_INTERVAL,
        COOLDOWN_PERIOD,
        WINDOW,
        RUNTIME,
        PROMETHEUS_ADDRESS,
        QUERY,
        METRIC_TYPE,
        MONITOR,
        METRICS_PORT,
        METRICS_PATH,
        ALERTS,
    ];

    /// Written by the webhook to record what it generated.
    pub const SCALE_TARGET: &str = "scale-target";
    pub const SCALED_OBJECT: &str = "scaled-object";
    pub const MONITOR_NAME: &str = "monitor-name";
    pub const RECORDS: [&str; 3] = [SCALE_TARGET, SCALED_OBJECT, MONITOR_NAME];

    /// Written by the controller: the last `metadata.generation` it applied successfully.
    /// Not a record the webhook owns, so removing the strategy does not remove it.
    pub const OBSERVED_GENERATION: &str = "observed-generation";
}

/// What the user asked for, before defaults are applied.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScalingSpec {
    /// Requested strategies in the order given, without repeats.
    pub strategies: Vec<Strategy>,
    pub targets: BTreeMap<Strategy, f64>,
    pub activations: BTreeMap<Strategy, f64>,
    pub min_replicas: Option<u32>,
    pub max_replicas: Option<u32>,
    pub polling_interval: Option<u32>,
    pub cooldown_period: Option<u32>,
    pub window: Option<String>,
    pub runtime: Runtime,
    pub prometheus_address: Option<String>,
    pub query: Option<String>,
    pub metric_type: Option<MetricType>,
    pub monitor: Option<MonitorKind>,
    pub metrics_port: Option<u16>,
    pub metrics_path: Option<String>,
    pub alerts: Option<bool>,
    /// Targets given for strategies that were not requested: harmless, but worth saying.
    pub unused: Vec<String>,
}

/// Shortens a user value for an error message so a huge annotation cannot flood a response.
pub fn clip(s: &str) -> String {
    clip_to(s, 64)
}

/// `s` cut to `max` characters, with `...` when something was cut.
pub fn clip_to(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((cut, _)) => format!("{}...", &s[..cut]),
        None => s.to_string(),
    }
}

/// The annotations under `prefix/` that are requests (not records written back by us).
pub fn input_keys<'a>(
    annotations: &'a BTreeMap<String, String>,
    prefix: &'a str,
) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
    annotations.iter().filter_map(move |(k, v)| {
        let short = k.strip_prefix(prefix)?.strip_prefix('/')?;
        (!keys::RECORDS.contains(&short) && short != keys::OBSERVED_GENERATION)
            .then_some((short, v.as_str()))
    })
}

/// Parses the request. `Ok(None)` means the user asked for no autoscaling (no strategy key).
pub fn parse(
    annotations: &BTreeMap<String, String>,
    prefix: &str,
) -> Result<Option<ScalingSpec>, AnnotationError> {
    let full = |short: &str| format!("{prefix}/{short}");
    // A key is outside input too: clipped, so a huge unknown key is not echoed back whole.
    let err = |short: &str, problem: String| AnnotationError {
        key: clip(&full(short)),
        problem,
    };
    let Some(strategy_value) = annotations.get(&full(keys::STRATEGY)) else {
        return Ok(None);
    };

    let mut spec = ScalingSpec {
        strategies: parse_strategies(strategy_value).map_err(|p| err(keys::STRATEGY, p))?,
        ..ScalingSpec::default()
    };

    for (short, value) in input_keys(annotations, prefix) {
        let bad = |problem: String| err(short, problem);
        match short {
            keys::STRATEGY => {}
            keys::TARGET => {
                let [only] = spec.strategies[..] else {
                    return Err(bad(format!(
                        "applies only when one strategy is requested, but {} are ({}); use {prefix}/target-<strategy> instead",
                        spec.strategies.len(),
                        joined(&spec.strategies)
                    )));
                };
                let t = positive(value).map_err(&bad)?;
                spec.targets.entry(only).or_insert(t);
            }
            keys::ACTIVATION => {
                let [only] = spec.strategies[..] else {
                    return Err(bad(format!(
                        "applies only when one strategy is requested; use {prefix}/activation-target-<strategy> instead"
                    )));
                };
                let a = non_negative(value).map_err(&bad)?;
                spec.activations.entry(only).or_insert(a);
            }
            keys::MIN_REPLICAS => spec.min_replicas = Some(whole(value, 0).map_err(&bad)?),
            keys::MAX_REPLICAS => spec.max_replicas = Some(whole(value, 1).map_err(&bad)?),
            keys::POLLING_INTERVAL => spec.polling_interval = Some(whole(value, 1).map_err(&bad)?),
            keys::COOLDOWN_PERIOD => spec.cooldown_period = Some(whole(value, 0).map_err(&bad)?),
            keys::WINDOW => {
                if !is_prometheus_duration(value) {
                    return Err(bad(format!(
                        "'{}' is not a Prometheus duration; use for example 30s, 1m, 5m or 1m30s",
                        clip(value)
                    )));
                }
                spec.window = Some(value.to_string());
            }
            keys::RUNTIME => {
                spec.runtime = Runtime::parse(value).ok_or_else(|| {
                    bad(format!(
                        "'{}' is not allowed; allowed: {}",
                        clip(value),
                        Runtime::ALLOWED
                    ))
                })?
            }
            keys::PROMETHEUS_ADDRESS => {
                check_url(value).map_err(&bad)?;
                spec.prometheus_address = Some(value.to_string());
            }
            keys::QUERY => {
                if value.trim().is_empty() {
                    return Err(bad(
                        "is empty; give a PromQL query that returns one series".into()
                    ));
                }
                spec.query = Some(value.to_string());
            }
            keys::METRIC_TYPE => {
                spec.metric_type = Some(MetricType::parse(value).ok_or_else(|| {
                    bad(format!(
                        "'{}' is not allowed; allowed: {}",
                        clip(value),
                        MetricType::ALLOWED
                    ))
                })?)
            }
            keys::MONITOR => {
                spec.monitor = Some(MonitorKind::parse(value).ok_or_else(|| {
                    bad(format!(
                        "'{}' is not allowed; allowed: {}",
                        clip(value),
                        MonitorKind::ALLOWED
                    ))
                })?)
            }
            keys::ALERTS => {
                spec.alerts = Some(match value {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(bad(format!(
                            "'{}' is not allowed; use true or false",
                            clip(value)
                        )));
                    }
                })
            }
            keys::METRICS_PORT => {
                let port = whole(value, 1).map_err(&bad)?;
                spec.metrics_port = Some(u16::try_from(port).map_err(|_| {
                    bad(format!(
                        "'{value}' is not a port; use a number from 1 to 65535"
                    ))
                })?);
            }
            keys::METRICS_PATH => {
                if !value.starts_with('/') || value.chars().any(char::is_whitespace) {
                    return Err(bad(format!(
                        "'{}' is not an HTTP path; it must start with '/' and contain no spaces",
                        clip(value)
                    )));
                }
                spec.metrics_path = Some(value.to_string());
            }
            _ => {
                if let Some(name) = short.strip_prefix(keys::ACTIVATION_PREFIX) {
                    let s = named_strategy(name).map_err(&bad)?;
                    let a = non_negative(value).map_err(&bad)?;
                    record(&mut spec, s, short, prefix, |spec| &mut spec.activations, a);
                } else if let Some(name) = short.strip_prefix(keys::TARGET_PREFIX) {
                    let s = named_strategy(name).map_err(&bad)?;
                    let t = positive(value).map_err(&bad)?;
                    record(&mut spec, s, short, prefix, |spec| &mut spec.targets, t);
                } else {
                    return Err(bad(format!(
                        "is not a known annotation; known: {}, target-<strategy>, activation-target-<strategy> (all under {prefix}/)",
                        keys::FIXED_INPUTS.join(", ")
                    )));
                }
            }
        }
    }
    Ok(Some(spec))
}

/// Stores a per-strategy value; a per-strategy key wins over the single-strategy shorthand.
fn record(
    spec: &mut ScalingSpec,
    strategy: Strategy,
    short: &str,
    prefix: &str,
    map: impl Fn(&mut ScalingSpec) -> &mut BTreeMap<Strategy, f64>,
    value: f64,
) {
    // `tokens` brings a running-requests trigger along, so its target is in use too.
    let wanted = spec.strategies.contains(&strategy)
        || (strategy == Strategy::Concurrency && spec.strategies.contains(&Strategy::Tokens));
    if !wanted {
        spec.unused.push(format!("{prefix}/{short}"));
    }
    map(spec).insert(strategy, value);
}

fn named_strategy(name: &str) -> Result<Strategy, String> {
    Strategy::parse(name).ok_or_else(|| {
        format!(
            "names no strategy ('{}'); allowed: {}",
            clip(name),
            Strategy::ALLOWED
        )
    })
}

fn parse_strategies(value: &str) -> Result<Vec<Strategy>, String> {
    let mut out = Vec::new();
    for item in value.split(',').map(str::trim) {
        if item.is_empty() {
            return Err(format!(
                "'{}' has an empty entry; give one strategy or a comma-separated list of: {}",
                clip(value),
                Strategy::ALLOWED
            ));
        }
        let s = Strategy::parse(item).ok_or_else(|| {
            format!(
                "unknown strategy '{}'; allowed: {}",
                clip(item),
                Strategy::ALLOWED
            )
        })?;
        if !out.contains(&s) {
            out.push(s);
        }
    }
    Ok(out)
}

fn joined(strategies: &[Strategy]) -> String {
    strategies
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn number(value: &str) -> Result<f64, String> {
    match value.trim().parse::<f64>() {
        Ok(n) if n.is_finite() => Ok(n),
        _ => Err(format!("'{}' is not a number", clip(value))),
    }
}

/// A target: a finite number greater than 0. Shared by annotations and the CLI defaults.
pub fn positive(value: &str) -> Result<f64, String> {
    let n = number(value).map_err(|e| format!("{e}; use a number greater than 0"))?;
    if n <= 0.0 {
        return Err(format!(
            "'{value}' is not allowed; use a number greater than 0"
        ));
    }
    Ok(n)
}

fn non_negative(value: &str) -> Result<f64, String> {
    let n = number(value).map_err(|e| format!("{e}; use a number >= 0"))?;
    if n < 0.0 {
        return Err(format!("'{value}' is negative; use a number >= 0"));
    }
    Ok(n)
}

fn whole(value: &str, min: u32) -> Result<u32, String> {
    match value.trim().parse::<u32>() {
        Ok(n) if n >= min => Ok(n),
        _ => Err(format!(
            "'{}' is not allowed; use a whole number >= {min}",
            clip(value)
        )),
    }
}

/// An http(s) URL with a host. Shared by annotations and the CLI defaults.
pub fn check_url(value: &str) -> Result<(), String> {
    let rest = value
        .strip_prefix("http://")
        .or_else(|| value.strip_prefix("https://"));
    match rest {
        Some(host)
            if !host.is_empty()
                && !host.starts_with('/')
                && !value.contains(char::is_whitespace) =>
        {
            Ok(())
        }
        _ => Err(format!(
            "'{}' is not an http(s) URL; use for example http://prometheus-operated.monitoring.svc:9090",
            clip(value)
        )),
    }
}

/// Prometheus durations: one or more `<number><unit>` with units ms, s, m, h, d, w, y.
pub fn is_prometheus_duration(value: &str) -> bool {
    let mut rest = value;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        if digits == 0 {
            return false;
        }
        rest = &rest[digits..];
        let unit = ["ms", "s", "m", "h", "d", "w", "y"]
            .into_iter()
            .find(|u| rest.starts_with(u));
        match unit {
            Some(u) => rest = &rest[u.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (format!("scaling.io/{k}"), v.to_string()))
            .collect()
    }

    fn parse_ok(pairs: &[(&str, &str)]) -> ScalingSpec {
        parse(&ann(pairs), "scaling.io").unwrap().unwrap()
    }

    fn parse_err(pairs: &[(&str, &str)]) -> AnnotationError {
        parse(&ann(pairs), "scaling.io").unwrap_err()
    }

    #[test]
    fn no_strategy_means_no_request() {
        assert_eq!(parse(&ann(&[("target", "3")]), "scaling.io").unwrap(), None);
        assert_eq!(parse(&BTreeMap::new(), "scaling.io").unwrap(), None);
    }

    #[test]
    fn strategies_are_trimmed_deduplicated_and_aliased() {
        let spec = parse_ok(&[("strategy", " tokens, queue ,tpot,itl,queue")]);
        assert_eq!(
            spec.strategies,
            vec![Strategy::Tokens, Strategy::Queue, Strategy::Itl]
        );
    }

    #[test]
    fn unknown_strategy_names_value_and_allowed_list() {
        let e = parse_err(&[("strategy", "tokens,latency")]);
        assert_eq!(e.key, "scaling.io/strategy");
        assert!(e.problem.contains("'latency'"), "{e}");
        assert!(e.problem.contains(Strategy::ALLOWED), "{e}");
        let e = parse_err(&[("strategy", "tokens,")]);
        assert!(e.problem.contains("empty entry"), "{e}");
    }

    #[test]
    fn targets_must_be_positive_numbers() {
        for bad in ["abc", "-1", "0", "NaN", "inf", ""] {
            let e = parse_err(&[("strategy", "queue"), ("target", bad)]);
            assert_eq!(e.key, "scaling.io/target", "{bad}");
            assert!(e.problem.contains("greater than 0"), "{e}");
        }
        let e = parse_err(&[("strategy", "queue"), ("target-queue", "-3")]);
        assert_eq!(e.key, "scaling.io/target-queue");
        let spec = parse_ok(&[("strategy", "queue"), ("target", "2.5")]);
        assert_eq!(spec.targets[&Strategy::Queue], 2.5);
    }

    #[test]
    fn shorthand_target_needs_exactly_one_strategy() {
        let e = parse_err(&[("strategy", "tokens,queue"), ("target", "3")]);
        assert!(e.problem.contains("target-<strategy>"), "{e}");
        let spec = parse_ok(&[
            ("strategy", "tokens,queue"),
            ("target-queue", "3"),
            ("target-tokens", "800"),
        ]);
        assert_eq!(spec.targets[&Strategy::Queue], 3.0);
        assert_eq!(spec.targets[&Strategy::Tokens], 800.0);
    }

    #[test]
    fn per_strategy_target_wins_over_shorthand() {
        let spec = parse_ok(&[
            ("strategy", "queue"),
            ("target", "3"),
            ("target-queue", "9"),
        ]);
        assert_eq!(spec.targets[&Strategy::Queue], 9.0);
    }

    #[test]
    fn targets_for_strategies_not_requested_are_reported() {
        let spec = parse_ok(&[("strategy", "queue"), ("target-ttft", "2")]);
        assert_eq!(spec.unused, vec!["scaling.io/target-ttft"]);
        // tokens brings concurrency along, so its target is used.
        let spec = parse_ok(&[("strategy", "tokens"), ("target-concurrency", "8")]);
        assert!(spec.unused.is_empty());
        assert_eq!(spec.targets[&Strategy::Concurrency], 8.0);
        let e = parse_err(&[("strategy", "queue"), ("target-latency", "2")]);
        assert!(e.problem.contains("names no strategy"), "{e}");
    }

    #[test]
    fn every_scalar_key_is_checked() {
        let cases = [
            ("min-replicas", "-1"),
            ("min-replicas", "two"),
            ("max-replicas", "0"),
            ("polling-interval", "0"),
            ("cooldown-period", "1.5"),
            ("window", "1 minute"),
            ("window", "5"),
            ("runtime", "triton"),
            ("prometheus-address", "prometheus:9090"),
            ("metric-type", "Utilization"),
            ("monitor", "ServiceMonitor"),
            ("metrics-port", "70000"),
            ("metrics-port", "0"),
            ("metrics-path", "metrics"),
            ("query", "  "),
            ("activation-target", "-2"),
            ("min-replica", "1"),
        ];
        for (key, value) in cases {
            let e = parse_err(&[("strategy", "queue"), (key, value)]);
            assert_eq!(e.key, format!("scaling.io/{key}"), "{key}={value}: {e}");
        }
    }

    #[test]
    fn unknown_key_lists_known_keys() {
        let e = parse_err(&[("strategy", "queue"), ("max-replica", "3")]);
        assert!(e.problem.contains("max-replicas"), "{e}");
    }

    #[test]
    fn a_huge_unknown_key_is_clipped_in_the_error() {
        let key = format!("target-{}", "x".repeat(100_000));
        let e = parse_err(&[("strategy", "queue"), (key.as_str(), "3")]);
        assert!(e.key.starts_with("scaling.io/target-xxx"), "{e}");
        assert!(
            e.key.ends_with("...") && e.key.len() < 80,
            "{}",
            e.key.len()
        );
        assert!(e.to_string().len() < 1024);
    }

    #[test]
    fn records_written_back_are_not_inputs() {
        let spec = parse_ok(&[
            ("strategy", "queue"),
            ("scaled-object", "x"),
            ("scale-target", "y"),
            ("monitor-name", "z"),
        ]);
        assert_eq!(spec.strategies, vec![Strategy::Queue]);
    }

    #[test]
    fn full_request_parses() {
        let spec = parse_ok(&[
            ("strategy", "custom"),
            ("query", "sum(rate(x[1m]))"),
            ("metric-type", "Value"),
            ("target", "10"),
            ("activation-target", "0"),
            ("min-replicas", "0"),
            ("max-replicas", "8"),
            ("polling-interval", "15"),
            ("cooldown-period", "600"),
            ("window", "1m30s"),
            ("runtime", "sglang"),
            ("prometheus-address", "https://thanos.example:10902"),
            ("monitor", "podmonitor"),
            ("metrics-port", "9000"),
            ("metrics-path", "/stats"),
        ]);
        assert_eq!(spec.metric_type, Some(MetricType::Value));
        assert_eq!(spec.activations[&Strategy::Custom], 0.0);
        assert_eq!((spec.min_replicas, spec.max_replicas), (Some(0), Some(8)));
        assert_eq!(spec.window.as_deref(), Some("1m30s"));
        assert_eq!(spec.runtime, Runtime::Sglang);
        assert_eq!(spec.monitor, Some(MonitorKind::PodMonitor));
        assert_eq!(spec.metrics_port, Some(9000));
    }

    #[test]
    fn durations() {
        for ok in ["30s", "1m", "1m30s", "500ms", "2h", "1d"] {
            assert!(is_prometheus_duration(ok), "{ok}");
        }
        for bad in ["", "1", "m", "1 m", "1.5m", "-1m", "1mm"] {
            assert!(!is_prometheus_duration(bad), "{bad}");
        }
    }

    #[test]
    fn huge_values_are_clipped_in_messages() {
        let huge = "x".repeat(100_000);
        let e = parse_err(&[("strategy", &huge)]);
        assert!(e.to_string().len() < 400, "{}", e.to_string().len());
    }
}
