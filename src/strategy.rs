//! Scaling strategies and the PromQL each one generates. All PromQL in the product lives here.
//!
//! Every query is scoped to one InferenceService's predictor pods in one namespace and
//! aggregates to a single series, because KEDA's Prometheus scaler fails on a query that
//! returns several. Totals (`sum`) go with `AverageValue`, where the HPA divides by the replica
//! count; ratios and latencies go with `Value`.

use std::fmt;

/// What a trigger scales on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Deserialize)]
#[serde(try_from = "String")]
pub enum Strategy {
    Tokens,
    Concurrency,
    Queue,
    KvCache,
    Ttft,
    Itl,
    Gpu,
    Power,
    Custom,
}

/// The model server inside the predictor; it decides the metric names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Runtime {
    #[default]
    Vllm,
    Sglang,
    Tgi,
}

/// KEDA trigger `metricType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricType {
    AverageValue,
    Value,
}

/// A strategy the chosen runtime does not export metrics for.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "strategy '{strategy}' is not available for runtime '{runtime}' (it exports no such metric); available: {available}"
)]
pub struct Unsupported {
    pub strategy: Strategy,
    pub runtime: Runtime,
    pub available: String,
}

impl Strategy {
    pub const ALL: [Strategy; 9] = [
        Strategy::Tokens,
        Strategy::Concurrency,
        Strategy::Queue,
        Strategy::KvCache,
        Strategy::Ttft,
        Strategy::Itl,
        Strategy::Gpu,
        Strategy::Power,
        Strategy::Custom,
    ];

    pub const ALLOWED: &'static str =
        "tokens, concurrency, queue, kv-cache, ttft, itl (alias tpot), gpu, power, custom";

    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Tokens => "tokens",
            Strategy::Concurrency => "concurrency",
            Strategy::Queue => "queue",
            Strategy::KvCache => "kv-cache",
            Strategy::Ttft => "ttft",
            Strategy::Itl => "itl",
            Strategy::Gpu => "gpu",
            Strategy::Power => "power",
            Strategy::Custom => "custom",
        }
    }

    /// Parses a strategy name; `tpot` is the older name of inter-token latency.
    pub fn parse(s: &str) -> Option<Strategy> {
        match s {
            "tpot" => Some(Strategy::Itl),
            _ => Strategy::ALL.into_iter().find(|k| k.as_str() == s),
        }
    }

    /// Per-replica target used when neither the user nor the platform gives one. The README
    /// explains each number; `custom` has none because only its author knows the unit.
    pub fn default_target(self) -> Option<f64> {
        match self {
            Strategy::Tokens => Some(1000.0),
            Strategy::Concurrency => Some(4.0),
            Strategy::Queue => Some(5.0),
            Strategy::KvCache => Some(0.7),
            Strategy::Ttft => Some(1.0),
            Strategy::Itl => Some(0.1),
            Strategy::Gpu => Some(80.0),
            Strategy::Power => Some(200.0),
            Strategy::Custom => None,
        }
    }

    /// Fixed metric type of a built-in strategy (`custom` takes the user's).
    pub fn metric_type(self) -> MetricType {
        match self {
            Strategy::Tokens | Strategy::Concurrency | Strategy::Queue | Strategy::Power => {
                MetricType::AverageValue
            }
            Strategy::KvCache | Strategy::Ttft | Strategy::Itl | Strategy::Gpu => MetricType::Value,
            Strategy::Custom => MetricType::AverageValue,
        }
    }

    /// Whether the signal comes from the predictor pods themselves, so it vanishes at zero
    /// replicas and cannot wake the model up again.
    pub fn is_pod_level(self) -> bool {
        !matches!(self, Strategy::Custom)
    }

    /// Whether the signal is read from the model server's own `/metrics` (so it needs the
    /// generated monitor and is switched off by vLLM's `--disable-log-stats`).
    pub fn uses_server_metrics(self) -> bool {
        !matches!(self, Strategy::Gpu | Strategy::Power | Strategy::Custom)
    }
}

impl TryFrom<String> for Strategy {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Strategy::parse(&s).ok_or_else(|| {
            format!(
                "unknown strategy '{}'; allowed: {}",
                crate::spec::clip(&s),
                Strategy::ALLOWED
            )
        })
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Runtime {
    pub const ALLOWED: &'static str = "vllm, sglang, tgi";

    pub fn parse(s: &str) -> Option<Runtime> {
        match s {
            "vllm" => Some(Runtime::Vllm),
            "sglang" => Some(Runtime::Sglang),
            "tgi" => Some(Runtime::Tgi),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Vllm => "vllm",
            Runtime::Sglang => "sglang",
            Runtime::Tgi => "tgi",
        }
    }
}

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl MetricType {
    pub const ALLOWED: &'static str = "AverageValue, Value";

    pub fn parse(s: &str) -> Option<MetricType> {
        match s {
            "AverageValue" => Some(MetricType::AverageValue),
            "Value" => Some(MetricType::Value),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::AverageValue => "AverageValue",
            MetricType::Value => "Value",
        }
    }
}

/// The pods one query may see: the predictor Deployment's pods in one namespace.
#[derive(Clone, Copy, Debug)]
pub struct Scope<'a> {
    pub namespace: &'a str,
    pub deployment: &'a str,
}

impl Scope<'_> {
    /// Matches exactly the pods of the Deployment: `<deployment>-<replicaset hash>-<suffix>`.
    /// The two fixed segments keep `foo-predictor` from matching `foo-predictor-x-predictor`.
    fn pod_regex(&self) -> String {
        // A `.` in a name must match itself; inside a PromQL string the regex escape needs its
        // own backslash escaped.
        format!(
            "{}-[a-z0-9]+-[a-z0-9]+",
            self.deployment.replace('.', "\\\\.")
        )
    }

    /// Label matchers for a source that labels series with the given namespace and pod labels.
    fn matchers(&self, namespace_label: &str, pod_label: &str) -> String {
        format!(
            "{namespace_label}=\"{}\",{pod_label}=~\"{}\"",
            self.namespace,
            self.pod_regex()
        )
    }
}

/// PromQL for one built-in strategy. `window` is the rate window (a Prometheus duration).
pub fn query(
    strategy: Strategy,
    runtime: Runtime,
    scope: Scope<'_>,
    window: &str,
) -> Result<String, Unsupported> {
    let pods = scope.matchers("namespace", "pod");
    let metric = |name: &str| format!("{name}{{{pods}}}");
    let rate = |name: &str| format!("rate({name}{{{pods}}}[{window}])");
    // An idle model has no observations, and histogram_quantile then yields NaN; KEDA must
    // read that as "no latency pressure", not as an error or a huge value.
    let p95 = |bucket: &str| {
        format!(
            "(histogram_quantile(0.95, sum by (le) ({})) > 0) or vector(0)",
            rate(bucket)
        )
    };
    let unsupported = || Unsupported {
        strategy,
        runtime,
        available: Strategy::ALL
            .into_iter()
            .filter(|s| *s != Strategy::Custom && supports(runtime, *s))
            .map(Strategy::as_str)
            .chain(["custom"])
            .collect::<Vec<_>>()
            .join(", "),
    };
    if !supports(runtime, strategy) || strategy == Strategy::Custom {
        return Err(unsupported());
    }
    let q = match (strategy, runtime) {
        (Strategy::Tokens, Runtime::Vllm) => {
            format!("sum({})", rate("vllm:generation_tokens_total"))
        }
        (Strategy::Tokens, Runtime::Sglang) => {
            format!("sum({})", rate("sglang:generation_tokens_total"))
        }
        // TGI has no token counter; the histogram's running sum of generated tokens is one.
        (Strategy::Tokens, Runtime::Tgi) => {
            format!("sum({})", rate("tgi_request_generated_tokens_sum"))
        }
        (Strategy::Concurrency, Runtime::Vllm) => {
            format!("sum({})", metric("vllm:num_requests_running"))
        }
        (Strategy::Concurrency, Runtime::Sglang) => {
            format!("sum({})", metric("sglang:num_running_reqs"))
        }
        (Strategy::Concurrency, Runtime::Tgi) => {
            format!("sum({})", metric("tgi_batch_current_size"))
        }
        (Strategy::Queue, Runtime::Vllm) => format!("sum({})", metric("vllm:num_requests_waiting")),
        (Strategy::Queue, Runtime::Sglang) => format!("sum({})", metric("sglang:num_queue_reqs")),
        (Strategy::Queue, Runtime::Tgi) => format!("sum({})", metric("tgi_queue_size")),
        (Strategy::KvCache, Runtime::Vllm) => {
            format!("avg({})", metric("vllm:kv_cache_usage_perc"))
        }
        (Strategy::KvCache, Runtime::Sglang) => format!("avg({})", metric("sglang:token_usage")),
        (Strategy::Ttft, Runtime::Vllm) => p95("vllm:time_to_first_token_seconds_bucket"),
        (Strategy::Ttft, Runtime::Sglang) => p95("sglang:time_to_first_token_seconds_bucket"),
        (Strategy::Itl, Runtime::Vllm) => p95("vllm:inter_token_latency_seconds_bucket"),
        // dcgm-exporter's own labels are `pod`/`namespace` when scraped with honorLabels, and
        // `exported_pod`/`exported_namespace` otherwise; the union covers both set-ups.
        (Strategy::Gpu, _) => format!(
            "avg(DCGM_FI_DEV_GPU_UTIL{{{}}} or DCGM_FI_DEV_GPU_UTIL{{{}}})",
            pods,
            scope.matchers("exported_namespace", "exported_pod")
        ),
        // Kepler >= 0.10 labels pod energy with pod_name/pod_namespace; the rate of joules is
        // watts, and CPU plus GPU is what the replica draws.
        (Strategy::Power, _) => format!(
            "sum(rate({{__name__=~\"kepler_pod_(cpu|gpu)_joules_total\",{}}}[{window}]))",
            scope.matchers("pod_namespace", "pod_name")
        ),
        // Every pair `supports` accepts has an arm above.
        _ => return Err(unsupported()),
    };
    Ok(q)
}

/// Whether `runtime` exports what `strategy` needs.
pub fn supports(runtime: Runtime, strategy: Strategy) -> bool {
    !matches!(
        (strategy, runtime),
        (
            Strategy::KvCache | Strategy::Ttft | Strategy::Itl,
            Runtime::Tgi
        ) | (Strategy::Itl, Runtime::Sglang)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCOPE: Scope<'static> = Scope {
        namespace: "llm",
        deployment: "qwen-predictor",
    };
    const PODS: &str = r#"namespace="llm",pod=~"qwen-predictor-[a-z0-9]+-[a-z0-9]+""#;

    fn q(s: Strategy, r: Runtime) -> String {
        query(s, r, SCOPE, "2m").unwrap()
    }

    #[test]
    fn vllm_queries_are_scoped_aggregated_and_use_current_names() {
        assert_eq!(
            q(Strategy::Tokens, Runtime::Vllm),
            format!("sum(rate(vllm:generation_tokens_total{{{PODS}}}[2m]))")
        );
        assert_eq!(
            q(Strategy::Concurrency, Runtime::Vllm),
            format!("sum(vllm:num_requests_running{{{PODS}}})")
        );
        assert_eq!(
            q(Strategy::Queue, Runtime::Vllm),
            format!("sum(vllm:num_requests_waiting{{{PODS}}})")
        );
        assert_eq!(
            q(Strategy::KvCache, Runtime::Vllm),
            format!("avg(vllm:kv_cache_usage_perc{{{PODS}}})")
        );
        assert_eq!(
            q(Strategy::Ttft, Runtime::Vllm),
            format!(
                "(histogram_quantile(0.95, sum by (le) (rate(vllm:time_to_first_token_seconds_bucket{{{PODS}}}[2m]))) > 0) or vector(0)"
            )
        );
        assert!(
            q(Strategy::Itl, Runtime::Vllm).contains("vllm:inter_token_latency_seconds_bucket")
        );
    }

    #[test]
    fn no_query_uses_removed_vllm_metric_names() {
        for s in Strategy::ALL {
            if let Ok(text) = query(s, Runtime::Vllm, SCOPE, "1m") {
                assert!(!text.contains("gpu_cache_usage_perc"), "{text}");
                assert!(!text.contains("time_per_output_token"), "{text}");
                assert!(!text.contains("vllm_"), "metric names use colons: {text}");
            }
        }
    }

    #[test]
    fn every_query_is_a_single_aggregate_over_this_predictor() {
        for r in [Runtime::Vllm, Runtime::Sglang, Runtime::Tgi] {
            for s in Strategy::ALL {
                let Ok(text) = query(s, r, SCOPE, "1m") else {
                    continue;
                };
                assert!(
                    ["sum(", "avg(", "(histogram_quantile("]
                        .iter()
                        .any(|p| text.starts_with(p)),
                    "{s}/{r} must aggregate: {text}"
                );
                assert!(
                    text.contains("qwen-predictor-[a-z0-9]+-[a-z0-9]+"),
                    "{text}"
                );
                assert!(text.contains("\"llm\""), "{text}");
            }
        }
    }

    #[test]
    fn metric_types_follow_the_sum_rule() {
        for s in Strategy::ALL {
            let Ok(text) = query(s, Runtime::Vllm, SCOPE, "1m") else {
                continue;
            };
            match s.metric_type() {
                MetricType::AverageValue => assert!(text.starts_with("sum("), "{s}: {text}"),
                MetricType::Value => assert!(!text.starts_with("sum("), "{s}: {text}"),
            }
        }
    }

    #[test]
    fn gpu_query_covers_both_dcgm_label_layouts() {
        let text = q(Strategy::Gpu, Runtime::Vllm);
        assert!(text.contains(&format!("DCGM_FI_DEV_GPU_UTIL{{{PODS}}}")));
        assert!(text.contains(r#"exported_namespace="llm",exported_pod=~"#));
    }

    #[test]
    fn power_query_uses_kepler_pod_labels() {
        let text = q(Strategy::Power, Runtime::Tgi);
        assert!(
            text.contains(r#"pod_namespace="llm",pod_name=~"qwen-predictor-"#),
            "{text}"
        );
        assert!(text.starts_with("sum(rate("));
    }

    #[test]
    fn dots_in_names_are_escaped_in_the_regex() {
        let scope = Scope {
            namespace: "a",
            deployment: "m.v1-predictor",
        };
        let text = query(Strategy::Queue, Runtime::Vllm, scope, "1m").unwrap();
        assert!(text.contains(r#"pod=~"m\\.v1-predictor-"#), "{text}");
    }

    #[test]
    fn runtimes_without_a_metric_say_what_is_available() {
        let err = query(Strategy::KvCache, Runtime::Tgi, SCOPE, "1m").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("'kv-cache'") && msg.contains("'tgi'"), "{msg}");
        assert!(
            msg.contains("tokens, concurrency, queue, gpu, power, custom"),
            "{msg}"
        );
        assert!(query(Strategy::Itl, Runtime::Sglang, SCOPE, "1m").is_err());
        assert_eq!(
            q(Strategy::Concurrency, Runtime::Sglang),
            format!("sum(sglang:num_running_reqs{{{PODS}}})")
        );
        assert_eq!(
            q(Strategy::Queue, Runtime::Tgi),
            format!("sum(tgi_queue_size{{{PODS}}})")
        );
    }

    #[test]
    fn names_round_trip_and_tpot_is_an_alias() {
        for s in Strategy::ALL {
            assert_eq!(Strategy::parse(s.as_str()), Some(s));
        }
        assert_eq!(Strategy::parse("tpot"), Some(Strategy::Itl));
        assert_eq!(Strategy::parse("Tokens"), None);
    }
}
