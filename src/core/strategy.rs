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

    /// The strategies as error messages list them, built from [`Strategy::ALL`] and each
    /// one's alias when the crate is compiled, so a new strategy cannot be left out.
    pub const ALLOWED: &'static str = match std::str::from_utf8(&ALLOWED_TEXT) {
        Ok(text) => text,
        Err(_) => panic!("strategy names are ASCII"),
    };

    pub const fn as_str(self) -> &'static str {
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

    /// Another name accepted for the strategy: `tpot` is the older name of inter-token
    /// latency.
    pub const fn alias(self) -> Option<&'static str> {
        match self {
            Strategy::Itl => Some("tpot"),
            _ => None,
        }
    }

    /// Parses a strategy name or alias.
    pub fn parse(s: &str) -> Option<Strategy> {
        Strategy::ALL
            .into_iter()
            .find(|k| k.as_str() == s || k.alias() == Some(s))
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

const ALLOWED_LEN: usize = list_strategies(&mut []);
const ALLOWED_TEXT: [u8; ALLOWED_LEN] = {
    let mut text = [0; ALLOWED_LEN];
    list_strategies(&mut text);
    text
};

/// Writes "tokens, ..., itl (alias tpot), ..." into `out` as far as it fits and returns the
/// full length, so one function both sizes the buffer and fills it (at compile time).
const fn list_strategies(out: &mut [u8]) -> usize {
    let mut len = 0;
    let mut i = 0;
    while i < Strategy::ALL.len() {
        let strategy = Strategy::ALL[i];
        if i > 0 {
            len = push(out, len, ", ");
        }
        len = push(out, len, strategy.as_str());
        if let Some(alias) = strategy.alias() {
            len = push(out, len, " (alias ");
            len = push(out, len, alias);
            len = push(out, len, ")");
        }
        i += 1;
    }
    len
}

const fn push(out: &mut [u8], mut at: usize, text: &str) -> usize {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if at < out.len() {
            out[at] = bytes[i];
        }
        at += 1;
        i += 1;
    }
    at
}

impl TryFrom<String> for Strategy {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Strategy::parse(&s).ok_or_else(|| {
            format!(
                "unknown strategy '{}'; allowed: {}",
                crate::core::text::clip(&s),
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

/// Pod labels the generated monitor copies onto every scraped series (prometheus-operator
/// `podTargetLabels`). KServe puts all three on predictor pods; `app` (`isvc.<deployment>`) is
/// the predictor Deployment's own selector, so together with the namespace it picks exactly
/// that Deployment's pods whatever their (possibly truncated) names.
pub const POD_TARGET_LABELS: [&str; 3] = ["serving.kserve.io/inferenceservice", "component", "app"];

/// [`POD_TARGET_LABELS`] as [`prometheus_label`] names them on the series, spelled out once
/// for the selectors every trigger builds.
const PROMETHEUS_POD_TARGET_LABELS: [&str; 3] =
    ["serving_kserve_io_inferenceservice", "component", "app"];

/// The Prometheus label a Kubernetes label becomes when prometheus-operator copies it onto a
/// target: every character outside `[a-zA-Z0-9_]` turns into `_`
/// (`serving.kserve.io/inferenceservice` -> `serving_kserve_io_inferenceservice`).
pub fn prometheus_label(kubernetes_label: &str) -> String {
    kubernetes_label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `value` as a PromQL double-quoted string literal. Every value that comes from an object
/// goes through here, so a quote, backslash or newline in it can end neither the string nor
/// the selector. Values are only ever compared with `=`, never placed in a regex, so no
/// regex metacharacter (`|`, `+`, `.`) can widen a match.
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    push_quoted(&mut out, value);
    out
}

/// [`quote`], appended to `out` (a selector is built from several without a copy of each).
fn push_quoted(out: &mut String, value: &str) {
    out.push('"');
    // Names of Kubernetes objects never need escaping; copy them whole.
    if !value
        .chars()
        .any(|c| c == '"' || c == '\\' || c.is_control())
    {
        out.push_str(value);
        out.push('"');
        return;
    }
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                use std::fmt::Write;
                // Writing to a String cannot fail.
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The pods one query may see: the predictor Deployment's pods in one namespace.
#[derive(Clone, Copy, Debug)]
pub struct Scope<'a> {
    pub namespace: &'a str,
    pub isvc: &'a str,
    pub deployment: &'a str,
}

impl Scope<'_> {
    /// Matchers for the model server's own series, by the pod labels the generated monitor
    /// copies onto them. Exact for every name: no pod-name pattern is involved.
    pub fn server_matchers(&self) -> String {
        let deployment = ["isvc.", self.deployment].concat();
        let values = [self.isvc, "predictor", &deployment];
        let mut out = String::with_capacity(160);
        out.push_str("namespace=");
        push_quoted(&mut out, self.namespace);
        for (label, value) in PROMETHEUS_POD_TARGET_LABELS.iter().zip(values) {
            out.push(',');
            out.push_str(label);
            out.push('=');
            push_quoted(&mut out, value);
        }
        out
    }

    /// One series per pod of the predictor Deployment, labelled `namespace` and `pod`, value 1,
    /// from kube-state-metrics: pod -> ReplicaSet -> Deployment. Node-level exporters (DCGM,
    /// Kepler) only know pod names, which the API server cuts for long Deployment names, so
    /// their series are joined with this instead of matched by name. ReplicaSet names are
    /// never cut. `max by` folds duplicates from several kube-state-metrics replicas.
    fn owned_pods(&self) -> String {
        let ns = quote(self.namespace);
        format!(
            "max by (namespace, pod) (label_replace(kube_pod_owner{{namespace={ns},owner_kind=\"ReplicaSet\"}}, \"replicaset\", \"$1\", \"owner_name\", \"(.+)\") * on (namespace, replicaset) group_left () max by (namespace, replicaset) (kube_replicaset_owner{{namespace={ns},owner_kind=\"Deployment\",owner_name={}}}))",
            quote(self.deployment)
        )
    }

    /// `expr` (series labelled `namespace`/`pod` with the workload's pod) restricted to the
    /// predictor's pods.
    fn on_pods(&self, expr: &str) -> String {
        format!(
            "({expr}) * on (namespace, pod) group_left () {}",
            self.owned_pods()
        )
    }

    /// A dcgm-exporter series `inner(selector)` relabelled to the workload's `namespace`/`pod`.
    /// The exporter labels a GPU with the pod using it as `pod`/`namespace` when scraped with
    /// honorLabels, and as `exported_pod`/`exported_namespace` otherwise (then `pod` is the
    /// exporter's own); both layouts are read.
    fn dcgm(&self, inner: impl Fn(&str) -> String) -> String {
        let ns = quote(self.namespace);
        let exported = inner(&format!("{{exported_namespace={ns}}}"));
        format!(
            "{} or {}",
            rename(
                &rename(&exported, "exported_namespace", "namespace"),
                "exported_pod",
                "pod"
            ),
            inner(&format!("{{namespace={ns}}}"))
        )
    }

    /// A Kepler series (labelled `pod_namespace`-like and `pod_name`) relabelled to
    /// `namespace`/`pod`; the scrape's own `namespace`/`pod` (Kepler's pod) are replaced.
    fn kepler(expr: &str, namespace_label: &str) -> String {
        rename(
            &rename(expr, namespace_label, "namespace"),
            "pod_name",
            "pod",
        )
    }

    /// Watts drawn by the predictor's pods, each joule counted once. CPU from Kepler >= 0.10:
    /// RAPL zones overlap (`package` contains `core` and `uncore`), so `package` + `dram`.
    /// GPU from one source: dcgm-exporter's board power when it has this model's pods,
    /// otherwise Kepler's GPU counter. Clusters with only Kepler < 0.10 get its container
    /// total (which already includes the GPU); clusters with only DCGM get the GPU alone.
    fn power(&self, window: &str) -> String {
        let ns = quote(self.namespace);
        let cpu = self.on_pods(&Self::kepler(
            &format!(
                "rate(kepler_pod_cpu_joules_total{{pod_namespace={ns},zone=~\"package|dram\"}}[{window}])"
            ),
            "pod_namespace",
        ));
        let kepler_gpu = self.on_pods(&Self::kepler(
            &format!("rate(kepler_pod_gpu_joules_total{{pod_namespace={ns}}}[{window}])"),
            "pod_namespace",
        ));
        let dcgm = self.on_pods(
            &self.dcgm(|sel| format!("avg_over_time(DCGM_FI_DEV_POWER_USAGE{sel}[{window}])")),
        );
        let kepler_old = self.on_pods(&Self::kepler(
            &format!("rate(kepler_container_joules_total{{container_namespace={ns}}}[{window}])"),
            "container_namespace",
        ));
        format!(
            "(sum({cpu}) + (sum({dcgm}) or sum({kepler_gpu}) or vector(0))) or sum({kepler_old}) or sum({dcgm})"
        )
    }
}

/// `label_replace` copying label `from` into `to` (overwriting it) where `from` is set.
fn rename(expr: &str, from: &str, to: &str) -> String {
    format!("label_replace({expr}, \"{to}\", \"$1\", \"{from}\", \"(.+)\")")
}

/// PromQL for one built-in strategy. `window` is the rate window (a Prometheus duration).
pub fn query(
    strategy: Strategy,
    runtime: Runtime,
    scope: Scope<'_>,
    window: &str,
) -> Result<String, Unsupported> {
    let pods = scope.server_matchers();
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
    let q = match (strategy, server_metric(strategy, runtime)) {
        (Strategy::Tokens, Some(name)) => format!("sum({})", rate(name)),
        (Strategy::Concurrency | Strategy::Queue, Some(name)) => {
            format!("sum({})", metric(name))
        }
        (Strategy::KvCache, Some(name)) => format!("avg({})", metric(name)),
        (Strategy::Ttft | Strategy::Itl, Some(name)) => p95(name),
        // Mean utilisation over every GPU the predictor's pods hold.
        (Strategy::Gpu, _) => format!(
            "avg({})",
            scope.on_pods(&scope.dcgm(|sel| format!("DCGM_FI_DEV_GPU_UTIL{sel}")))
        ),
        (Strategy::Power, _) => scope.power(window),
        // Every pair `supports` accepts has an arm above.
        _ => return Err(unsupported()),
    };
    Ok(q)
}

/// The series a strategy reads from the model server's own `/metrics`; `None` for the
/// strategies that read node-level exporters, `custom`, and pairs a runtime lacks.
pub fn server_metric(strategy: Strategy, runtime: Runtime) -> Option<&'static str> {
    Some(match (strategy, runtime) {
        (Strategy::Tokens, Runtime::Vllm) => "vllm:generation_tokens_total",
        (Strategy::Tokens, Runtime::Sglang) => "sglang:generation_tokens_total",
        // TGI has no token counter; the histogram's running sum of generated tokens is one.
        (Strategy::Tokens, Runtime::Tgi) => "tgi_request_generated_tokens_sum",
        (Strategy::Concurrency, Runtime::Vllm) => "vllm:num_requests_running",
        (Strategy::Concurrency, Runtime::Sglang) => "sglang:num_running_reqs",
        (Strategy::Concurrency, Runtime::Tgi) => "tgi_batch_current_size",
        (Strategy::Queue, Runtime::Vllm) => "vllm:num_requests_waiting",
        (Strategy::Queue, Runtime::Sglang) => "sglang:num_queue_reqs",
        (Strategy::Queue, Runtime::Tgi) => "tgi_queue_size",
        (Strategy::KvCache, Runtime::Vllm) => "vllm:kv_cache_usage_perc",
        (Strategy::KvCache, Runtime::Sglang) => "sglang:token_usage",
        (Strategy::Ttft, Runtime::Vllm) => "vllm:time_to_first_token_seconds_bucket",
        (Strategy::Ttft, Runtime::Sglang) => "sglang:time_to_first_token_seconds_bucket",
        (Strategy::Itl, Runtime::Vllm) => "vllm:inter_token_latency_seconds_bucket",
        _ => return None,
    })
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
        isvc: "qwen",
        deployment: "qwen-predictor",
    };
    const PODS: &str = r#"namespace="llm",serving_kserve_io_inferenceservice="qwen",component="predictor",app="isvc.qwen-predictor""#;

    #[test]
    fn allowed_lists_every_strategy_once_in_order_with_its_alias() {
        // The text users have seen in error messages since the list was written by hand.
        assert_eq!(
            Strategy::ALLOWED,
            "tokens, concurrency, queue, kv-cache, ttft, itl (alias tpot), gpu, power, custom"
        );
        let listed: Vec<Strategy> = Strategy::ALLOWED
            .split(", ")
            .map(|entry| {
                let (name, alias) = match entry.split_once(" (alias ") {
                    Some((name, rest)) => (name, rest.strip_suffix(')')),
                    None => (entry, None),
                };
                let strategy = Strategy::parse(name).unwrap();
                assert_eq!(strategy.alias(), alias, "{entry}");
                if let Some(alias) = alias {
                    assert_eq!(Strategy::parse(alias), Some(strategy));
                }
                strategy
            })
            .collect();
        assert_eq!(listed, Strategy::ALL);
    }

    fn q(s: Strategy, r: Runtime) -> String {
        query(s, r, SCOPE, "2m").unwrap()
    }

    #[test]
    fn the_spelled_out_label_names_are_prometheus_operators() {
        for (k8s, prom) in POD_TARGET_LABELS.iter().zip(PROMETHEUS_POD_TARGET_LABELS) {
            assert_eq!(prometheus_label(k8s), prom);
        }
    }

    #[test]
    fn quote_escapes_what_would_end_the_string() {
        assert_eq!(quote("qwen"), r#""qwen""#);
        assert_eq!(
            quote(r#"x"}) or vector(100) #"#),
            r#""x\"}) or vector(100) #""#
        );
        assert_eq!(quote(r"a\b"), r#""a\\b""#);
        assert_eq!(quote("a\nb\u{1}"), r#""a\nb\u0001""#);
        // Regex metacharacters stay as they are: values are only compared with `=`.
        assert_eq!(quote("a|b+.c"), r#""a|b+.c""#);
    }

    #[test]
    fn kubernetes_labels_become_prometheus_labels_as_prometheus_operator_writes_them() {
        assert_eq!(
            prometheus_label("serving.kserve.io/inferenceservice"),
            "serving_kserve_io_inferenceservice"
        );
        assert_eq!(
            prometheus_label("app.kubernetes.io/name"),
            "app_kubernetes_io_name"
        );
        assert_eq!(prometheus_label("component"), "component");
    }

    #[test]
    fn hostile_names_stay_inside_their_strings() {
        let scope = Scope {
            namespace: "ns\"x",
            isvc: r#"x"}) or vector(100) #"#,
            deployment: "a|b",
        };
        let text = query(Strategy::Queue, Runtime::Vllm, scope, "1m").unwrap();
        assert!(text.contains(r#"namespace="ns\"x""#), "{text}");
        assert!(
            text.contains(r#"serving_kserve_io_inferenceservice="x\"}) or vector(100) #""#),
            "{text}"
        );
        assert!(text.contains(r#"app="isvc.a|b""#), "{text}");
        assert!(!text.contains("=~\"isvc"), "{text}");
        let text = query(Strategy::Power, Runtime::Vllm, scope, "1m").unwrap();
        assert!(text.contains(r#"owner_name="a|b""#), "{text}");
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
    fn no_query_matches_pods_by_name() {
        for r in [Runtime::Vllm, Runtime::Sglang, Runtime::Tgi] {
            for s in Strategy::ALL {
                let Ok(text) = query(s, r, SCOPE, "1m") else {
                    continue;
                };
                assert!(!text.contains("pod=~"), "{s}/{r}: {text}");
                assert!(!text.contains("[a-z0-9]"), "{s}/{r}: {text}");
                assert!(text.contains("\"llm\""), "{text}");
            }
        }
    }

    #[test]
    fn node_exporters_are_joined_through_the_deployments_replica_sets() {
        for s in [Strategy::Gpu, Strategy::Power] {
            let text = q(s, Runtime::Vllm);
            assert!(
                text.contains(r#"kube_replicaset_owner{namespace="llm",owner_kind="Deployment",owner_name="qwen-predictor"}"#),
                "{text}"
            );
            assert!(text.contains("kube_pod_owner{"), "{text}");
        }
        let gpu = q(Strategy::Gpu, Runtime::Vllm);
        assert!(
            gpu.contains(r#"DCGM_FI_DEV_GPU_UTIL{exported_namespace="llm"}"#),
            "{gpu}"
        );
        assert!(
            gpu.contains(r#"DCGM_FI_DEV_GPU_UTIL{namespace="llm"}"#),
            "{gpu}"
        );
    }

    #[test]
    fn power_reads_non_overlapping_zones_and_one_gpu_source_first() {
        let text = q(Strategy::Power, Runtime::Tgi);
        assert!(text.contains(r#"zone=~"package|dram""#), "{text}");
        let dcgm = text.find("DCGM_FI_DEV_POWER_USAGE").unwrap();
        let kepler_gpu = text.find("kepler_pod_gpu_joules_total").unwrap();
        assert!(dcgm < kepler_gpu, "DCGM is the first GPU source: {text}");
        assert!(text.contains("kepler_container_joules_total"), "{text}");
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
