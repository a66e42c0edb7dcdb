//! A small model of a cluster's Prometheus data, shaped as real exporters publish it after a
//! prometheus-operator scrape, and a runner for `promtool test rules` (Debian's `prometheus`
//! package). Expected values are computed here from the fixture numbers, never by the code
//! under test.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

use serde_json::{Value, json};

/// Samples are 15 s apart, as a typical scrape interval; every counter below rises linearly.
pub const STEP_SECONDS: f64 = 15.0;
/// 40 steps: 10 minutes of data; queries are evaluated at the end.
pub const STEPS: u32 = 40;
pub const EVAL_TIME: &str = "10m";

/// `promtool`, or `None` (with the reason printed) when it is not installed.
pub fn promtool() -> Option<PathBuf> {
    match Command::new("promtool").arg("--version").output() {
        Ok(o) if o.status.success() => Some(PathBuf::from("promtool")),
        _ => {
            eprintln!(
                "SKIPPED: promtool not found; install it with `apt-get update && apt-get install -y prometheus` (scripts/test does this) to run the real-PromQL tests"
            );
            None
        }
    }
}

/// A PromQL/Go string literal for fixture label values (JSON escaping is a subset of Go's).
pub fn lit(v: &str) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// `metric{k="v",...}` in promtool's series notation.
pub fn series(metric: &str, labels: &[(&str, &str)]) -> String {
    let body: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}={}", lit(v)))
        .collect();
    format!("{metric}{{{}}}", body.join(","))
}

/// A constant gauge.
pub fn gauge(v: f64) -> String {
    format!("{v}x{STEPS}")
}

/// A counter whose rate is `per_second`.
pub fn counter(per_second: f64) -> String {
    format!("0+{}x{STEPS}", per_second * STEP_SECONDS)
}

/// A Deployment's pods as KServe and Kubernetes name and label them.
#[derive(Clone, Debug)]
pub struct Workload {
    pub namespace: String,
    pub isvc: String,
    /// `predictor`, `transformer`, `explainer`.
    pub component: String,
    pub deployment: String,
    /// The pod label `app` (`isvc.<deployment>`; multi-node workers differ).
    pub app: String,
    pub replicaset: String,
    pub pods: Vec<String>,
}

/// What the API server does with `generateName`: a base longer than 58 characters is cut to
/// 58 before 5 random characters are added.
pub fn generated_name(base: &str, random: &str) -> String {
    let cut: String = base.chars().take(58).collect();
    format!("{cut}{random}")
}

impl Workload {
    pub fn new(namespace: &str, isvc: &str, component: &str, deployment: &str, n: usize) -> Self {
        Self::with_app(
            namespace,
            isvc,
            component,
            deployment,
            &format!("isvc.{deployment}"),
            n,
        )
    }

    pub fn with_app(
        namespace: &str,
        isvc: &str,
        component: &str,
        deployment: &str,
        app: &str,
        n: usize,
    ) -> Self {
        // The pod-template hash and pod suffixes are random in a cluster; derived from the
        // names here so every run is the same.
        let pick = |what: &str, len: usize| -> String {
            use sha2::Digest;
            let alphabet = b"bcdfghjklmnpqrstvwxz2456789";
            let digest = sha2::Sha256::digest(format!("{namespace}/{deployment}/{what}"));
            digest
                .iter()
                .take(len)
                .map(|b| alphabet[usize::from(*b) % alphabet.len()] as char)
                .collect()
        };
        let replicaset = format!("{deployment}-{}", pick("rs", 10));
        let pods = (0..n)
            .map(|i| generated_name(&format!("{replicaset}-"), &pick(&i.to_string(), 5)))
            .collect();
        Workload {
            namespace: namespace.into(),
            isvc: isvc.into(),
            component: component.into(),
            deployment: deployment.into(),
            app: app.into(),
            replicaset,
            pods,
        }
    }

    /// Labels of a series scraped from one of these pods by the generated ServiceMonitor
    /// (target labels plus the pod labels it copies).
    pub fn server_labels(&self, pod: &str) -> Vec<(&'static str, String)> {
        vec![
            ("namespace", self.namespace.clone()),
            ("pod", pod.to_string()),
            ("container", "kserve-container".into()),
            ("endpoint", "8080".into()),
            ("instance", format!("10.1.{}.7:8080", pod.len())),
            ("job", self.deployment.clone()),
            ("service", self.deployment.clone()),
            ("serving_kserve_io_inferenceservice", self.isvc.clone()),
            ("component", self.component.clone()),
            ("app", self.app.clone()),
            ("model_name", self.isvc.clone()),
        ]
    }

    /// kube-state-metrics' ownership series for these pods (scraped with honorLabels).
    pub fn owner_series(&self) -> Vec<(String, String)> {
        let ksm = [
            ("job", "kube-state-metrics"),
            ("instance", "10.2.0.9:8080"),
            ("container", "kube-state-metrics"),
        ];
        let mut out = Vec::new();
        for pod in &self.pods {
            let mut l = vec![
                ("namespace", self.namespace.as_str()),
                ("pod", pod.as_str()),
                ("uid", "0b7a-uid"),
                ("owner_kind", "ReplicaSet"),
                ("owner_name", self.replicaset.as_str()),
                ("owner_is_controller", "true"),
            ];
            l.extend(ksm);
            out.push((series("kube_pod_owner", &l), gauge(1.0)));
        }
        let old_rs = format!("{}-0ld", self.deployment);
        for rs in [self.replicaset.as_str(), old_rs.as_str()] {
            let mut l = vec![
                ("namespace", self.namespace.as_str()),
                ("replicaset", rs),
                ("owner_kind", "Deployment"),
                ("owner_name", self.deployment.as_str()),
                ("owner_is_controller", "true"),
            ];
            l.extend(ksm);
            out.push((series("kube_replicaset_owner", &l), gauge(1.0)));
        }
        out
    }
}

/// One promtool test: input series and checks evaluated at [`EVAL_TIME`].
#[derive(Default, Debug)]
pub struct Case {
    pub name: String,
    pub series: Vec<(String, String)>,
    pub checks: Vec<Check>,
}

/// `expr` must return exactly one series, without labels, equal to `expected` (within a
/// relative 1e-9, for float rounding in rate and quantile arithmetic).
#[derive(Debug)]
pub struct Check {
    pub expr: String,
    pub expected: f64,
}

impl Case {
    pub fn new(name: impl Into<String>) -> Self {
        Case {
            name: name.into(),
            ..Case::default()
        }
    }

    pub fn add(&mut self, series: String, values: String) {
        self.series.push((series, values));
    }

    pub fn check(&mut self, expr: &str, expected: f64) {
        self.checks.push(Check {
            expr: expr.to_string(),
            expected,
        });
    }

    fn to_yaml(&self) -> Value {
        let tol = 1e-9
            * self
                .checks
                .iter()
                .map(|c| c.expected.abs())
                .fold(1.0, f64::max);
        let exprs: Vec<Value> = self
            .checks
            .iter()
            .map(|c| {
                // One labelless sample with value 1 proves: one series, no labels, the value.
                json!({
                    "expr": format!("abs(({}) - {}) <= bool {tol:e}", c.expr, c.expected),
                    "eval_time": EVAL_TIME,
                    "exp_samples": [{"labels": "{}", "value": 1}],
                })
            })
            .collect();
        json!({
            "name": self.name,
            "interval": format!("{}s", STEP_SECONDS),
            "input_series": self.series.iter().map(|(s, v)| json!({"series": s, "values": v})).collect::<Vec<_>>(),
            "promql_expr_test": exprs,
        })
    }
}

/// Runs every case in one promtool invocation (with an optional rule file and alert tests);
/// Err carries promtool's report.
pub fn run(cases: &[Case], rules: Option<&Value>, extra_tests: &[Value]) -> Result<(), String> {
    let Some(promtool) = promtool() else {
        return Ok(());
    };
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut rule_files = Vec::new();
    if let Some(r) = rules {
        let path = dir.path().join("rules.yaml");
        std::fs::write(
            &path,
            serde_yaml_ng::to_string(r).map_err(|e| e.to_string())?,
        )
        .map_err(|e| e.to_string())?;
        rule_files.push("rules.yaml");
    }
    let mut tests: Vec<Value> = cases.iter().map(Case::to_yaml).collect();
    tests.extend(extra_tests.iter().cloned());
    let doc = json!({
        "rule_files": rule_files,
        "evaluation_interval": format!("{}s", STEP_SECONDS),
        "tests": tests,
    });
    let path = dir.path().join("tests.yaml");
    std::fs::write(
        &path,
        serde_yaml_ng::to_string(&doc).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let out = Command::new(promtool)
        .arg("test")
        .arg("rules")
        .arg(&path)
        .current_dir(dir.path())
        .output()
        .map_err(|e| e.to_string())?;
    // PROMQL_KEEP=<file> keeps the generated test file for a closer look at a failure.
    if let Some(keep) = std::env::var_os("PROMQL_KEEP") {
        let _ = std::fs::copy(&path, keep);
    }
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The 0.95 quantile of a cumulative histogram `(upper bound, cumulative rate)` the way a
/// textbook does it: find the bucket holding rank 0.95 * total and interpolate linearly
/// inside it (lower bound 0 for the first bucket).
pub fn p95(buckets: &[(f64, f64)]) -> f64 {
    let total = buckets.last().map(|b| b.1).unwrap_or(0.0);
    let rank = 0.95 * total;
    let mut prev = (0.0, 0.0);
    for &(le, cum) in buckets {
        if cum >= rank {
            if le.is_infinite() {
                return prev.0;
            }
            return prev.0 + (le - prev.0) * (rank - prev.1) / (cum - prev.1);
        }
        prev = (le, cum);
    }
    f64::NAN
}
