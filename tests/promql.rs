//! Every generated trigger query evaluated by a real PromQL engine (`promtool test rules`)
//! over series shaped like vLLM, SGLang, TGI, dcgm-exporter, Kepler and kube-state-metrics
//! publish them after a prometheus-operator scrape, with decoys a badly scoped query would
//! count: a sibling predictor of the same InferenceService, a multi-node worker, an
//! InferenceService whose name extends ours, a transformer, and the same Deployment name in
//! another namespace.

mod promql_support;

use kserve_keda_webhook::core::settings::Settings;
use kserve_keda_webhook::core::strategy::{self, Runtime, Scope, Strategy};
use kserve_keda_webhook::render::render;
use kserve_keda_webhook::scaling::Scaling;
use promql_support::*;
use serde_json::{Value, json};

/// A trigger as `render` prints it.
#[derive(Debug)]
struct Trigger {
    name: String,
    metric_type: String,
    query: String,
}

fn isvc_yaml(namespace: &str, name: &str, predictor: Option<&str>, annotations: Value) -> String {
    let mut p = json!({"model": {"modelFormat": {"name": "huggingface"}}});
    if let Some(n) = predictor {
        p["name"] = json!(n);
    }
    let doc = json!({
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
        "spec": {"predictor": p},
    });
    serde_yaml_ng::to_string(&doc).unwrap()
}

/// Every document `render` prints for one InferenceService.
fn rendered(
    namespace: &str,
    name: &str,
    predictor: Option<&str>,
    annotations: Value,
) -> Vec<Value> {
    let text = isvc_yaml(namespace, name, predictor, annotations);
    let out = render(&text, namespace, &Scaling::from(Settings::default()))
        .unwrap_or_else(|e| panic!("render {name}: {e}"));
    serde_yaml_ng::Deserializer::from_str(&out.yaml)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

fn triggers(
    namespace: &str,
    name: &str,
    predictor: Option<&str>,
    s: Strategy,
    r: Runtime,
) -> Vec<Trigger> {
    let docs = rendered(
        namespace,
        name,
        predictor,
        json!({"scaling.io/strategy": s.as_str(), "scaling.io/runtime": r.as_str()}),
    );
    let so = docs
        .iter()
        .find(|d| d["kind"] == "ScaledObject")
        .expect("a ScaledObject");
    so["spec"]["triggers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| Trigger {
            name: t["name"].as_str().unwrap().to_string(),
            metric_type: t["metricType"].as_str().unwrap().to_string(),
            query: t["metadata"]["query"].as_str().unwrap().to_string(),
        })
        .collect()
}

/// The model's own pods first, then the decoys.
fn world(namespace: &str, isvc: &str, predictor: Option<&str>) -> Vec<Workload> {
    let dep = |i: &str, p: Option<&str>| match p {
        Some(p) => format!("{i}-{p}-predictor"),
        None => format!("{i}-predictor"),
    };
    let target = Workload::new(namespace, isvc, "predictor", &dep(isvc, predictor), 2);
    let sibling = match predictor {
        Some(_) => dep(isvc, None),
        None => dep(isvc, Some("canary")),
    };
    let longer = format!("{isvc}-v2");
    vec![
        target.clone(),
        Workload::new(namespace, isvc, "predictor", &sibling, 2),
        Workload::with_app(
            namespace,
            isvc,
            "predictor",
            &format!("{}-worker", target.deployment),
            &format!("{isvc}-predictor-worker"),
            1,
        ),
        Workload::new(namespace, &longer, "predictor", &dep(&longer, predictor), 2),
        Workload::new(
            namespace,
            isvc,
            "transformer",
            &format!("{isvc}-transformer"),
            1,
        ),
        Workload::new(
            &format!("{namespace}-b"),
            isvc,
            "predictor",
            &target.deployment,
            2,
        ),
    ]
}

/// A per-pod number: small for the model's own pods, large for decoys, so counting a decoy
/// always shows.
fn load(workload: usize, pod: usize) -> f64 {
    if workload == 0 {
        2.0 + 3.0 * pod as f64
    } else {
        100.0 * workload as f64 + pod as f64
    }
}

/// The metric a server strategy reads, as each runtime names it (independent of the code).
fn exporter_metric(s: Strategy, r: Runtime) -> &'static str {
    match (s, r) {
        (Strategy::Tokens, Runtime::Vllm) => "vllm:generation_tokens_total",
        (Strategy::Tokens, Runtime::Sglang) => "sglang:generation_tokens_total",
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
        _ => unreachable!("{s}/{r} reads no server metric"),
    }
}

fn labels_of<'a>(l: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    l.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

const LES: [f64; 7] = [0.1, 0.25, 0.5, 0.75, 1.0, 2.5, f64::INFINITY];

/// Observations per second falling into each bucket (not cumulative).
fn observations(workload: usize, pod: usize) -> [f64; 7] {
    match (workload, pod) {
        (0, 0) => [1.0, 2.0, 3.0, 2.0, 1.0, 1.0, 0.0],
        (0, _) => [0.0, 1.0, 2.0, 4.0, 2.0, 1.0, 0.0],
        _ => [0.0, 0.0, 0.0, 0.0, 0.0, 5.0, 5.0],
    }
}

fn le_label(le: f64) -> String {
    if le.is_infinite() {
        "+Inf".into()
    } else if le.fract() == 0.0 {
        format!("{le:.1}")
    } else {
        format!("{le}")
    }
}

/// How busy the model's own pods are in a latency case.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Traffic {
    Busy,
    /// Pods up, no requests: histograms exist but do not move.
    Idle,
    /// No pods: no series at all.
    Gone,
}

/// Server-metric series for every workload; returns the expected value for the model.
fn server_fixture(
    case: &mut Case,
    w: &[Workload],
    s: Strategy,
    r: Runtime,
    traffic: Traffic,
) -> f64 {
    let metric = exporter_metric(s, r);
    let mut mine = Vec::new();
    let mut cum_mine = [0.0; 7];
    for (wi, wl) in w.iter().enumerate() {
        if wi == 0 && traffic == Traffic::Gone {
            continue;
        }
        for (pi, pod) in wl.pods.iter().enumerate() {
            let mut labels = wl.server_labels(pod);
            labels.push(("engine", "0".into()));
            match s {
                Strategy::Ttft | Strategy::Itl => {
                    let obs = observations(wi, pi);
                    let mut cum = 0.0;
                    for (b, le) in LES.iter().enumerate() {
                        cum += if wi == 0 && traffic == Traffic::Idle {
                            0.0
                        } else {
                            obs[b]
                        };
                        if wi == 0 {
                            cum_mine[b] += cum;
                        }
                        let mut l = labels.clone();
                        l.push(("le", le_label(*le)));
                        case.add(series(metric, &labels_of(&l)), counter(cum));
                    }
                }
                Strategy::Tokens => {
                    let v = load(wi, pi) * 10.0;
                    case.add(series(metric, &labels_of(&labels)), counter(v));
                    if wi == 0 {
                        mine.push(v);
                    }
                }
                Strategy::KvCache => {
                    let v = if wi == 0 {
                        0.25 * (pi + 1) as f64
                    } else {
                        0.99
                    };
                    case.add(series(metric, &labels_of(&labels)), gauge(v));
                    if wi == 0 {
                        mine.push(v);
                    }
                }
                _ => {
                    let v = load(wi, pi);
                    case.add(series(metric, &labels_of(&labels)), gauge(v));
                    if wi == 0 {
                        mine.push(v);
                    }
                }
            }
        }
    }
    match s {
        Strategy::Ttft | Strategy::Itl => match traffic {
            Traffic::Busy => p95(&LES.iter().copied().zip(cum_mine).collect::<Vec<_>>()),
            _ => 0.0,
        },
        Strategy::KvCache => mine.iter().sum::<f64>() / mine.len() as f64,
        _ => mine.iter().sum(),
    }
}

/// dcgm-exporter as scraped with honorLabels (`pod`/`namespace` are the workload's) or
/// without (`exported_pod`/`exported_namespace`).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Dcgm {
    Honored,
    Exported,
}

fn dcgm_series(
    case: &mut Case,
    metric: &str,
    layout: Dcgm,
    wl: Option<&Workload>,
    pod: &str,
    gpu: usize,
    value: f64,
) {
    let uuid = format!("GPU-{gpu:04}-{}", pod.len());
    let gpu_s = gpu.to_string();
    let mut l: Vec<(&str, &str)> = vec![
        ("gpu", &gpu_s),
        ("UUID", &uuid),
        ("device", "nvidia0"),
        ("modelName", "NVIDIA A100-SXM4-80GB"),
        ("Hostname", "gpu-node-1"),
        ("DCGM_FI_DRIVER_VERSION", "570.124.06"),
        ("instance", "10.3.0.4:9400"),
        ("job", "nvidia-dcgm-exporter"),
        ("endpoint", "gpu-metrics"),
        ("service", "nvidia-dcgm-exporter"),
    ];
    let ns;
    match (layout, wl) {
        (Dcgm::Honored, Some(w)) => {
            ns = w.namespace.clone();
            l.extend([
                ("namespace", ns.as_str()),
                ("pod", pod),
                ("container", "kserve-container"),
            ]);
        }
        (Dcgm::Exported, Some(w)) => {
            ns = w.namespace.clone();
            l.extend([
                ("exported_namespace", ns.as_str()),
                ("exported_pod", pod),
                ("exported_container", "kserve-container"),
                ("namespace", "gpu-operator"),
                ("pod", "nvidia-dcgm-exporter-x7k2p"),
                ("container", "nvidia-dcgm-exporter"),
            ]);
        }
        // A GPU no pod holds: the exporter's own target labels only.
        (_, None) => {
            l.extend([
                ("namespace", "gpu-operator"),
                ("pod", "nvidia-dcgm-exporter-x7k2p"),
            ]);
        }
    }
    case.add(series(metric, &l), gauge(value));
}

/// GPU utilisation: the model's first pod holds two GPUs, the second one.
fn gpu_fixture(case: &mut Case, w: &[Workload], layout: Dcgm) -> f64 {
    let mut mine = Vec::new();
    for (wi, wl) in w.iter().enumerate() {
        for (pi, pod) in wl.pods.iter().enumerate() {
            let gpus = if wi == 0 && pi == 0 { 2 } else { 1 };
            for g in 0..gpus {
                let v = if wi == 0 {
                    40.0 + 20.0 * (pi + g) as f64 + 7.0 * g as f64
                } else {
                    3.0
                };
                dcgm_series(
                    case,
                    "DCGM_FI_DEV_GPU_UTIL",
                    layout,
                    Some(wl),
                    pod,
                    wi * 10 + pi * 2 + g,
                    v,
                );
                if wi == 0 {
                    mine.push(v);
                }
            }
        }
        case.series.extend(wl.owner_series());
    }
    dcgm_series(case, "DCGM_FI_DEV_GPU_UTIL", layout, None, "", 99, 100.0);
    mine.iter().sum::<f64>() / mine.len() as f64
}

/// Which power sources a cluster runs.
#[derive(Clone, Copy, Debug)]
struct PowerSources {
    kepler: bool,
    kepler_gpu: bool,
    kepler_old: bool,
    dcgm: Option<Dcgm>,
}

fn kepler_labels<'a>(wl: &'a Workload, pod: &'a str) -> Vec<(&'static str, &'a str)> {
    vec![
        ("pod_id", "3f1c-uid"),
        ("pod_name", pod),
        ("pod_namespace", wl.namespace.as_str()),
        ("state", "running"),
        ("instance", "gpu-node-1:28282"),
        ("job", "kepler"),
        ("namespace", "kepler"),
        ("pod", "kepler-q8x2z"),
        ("container", "kepler"),
    ]
}

/// Watts per pod and source; returns the model's total with each joule counted once.
fn power_fixture(case: &mut Case, w: &[Workload], src: PowerSources) -> f64 {
    let mut cpu = 0.0;
    let mut kepler_gpu = 0.0;
    let mut dcgm = 0.0;
    let mut old = 0.0;
    for (wi, wl) in w.iter().enumerate() {
        let mine = wi == 0;
        let scale = if mine { 1.0 } else { 10.0 };
        for (pi, pod) in wl.pods.iter().enumerate() {
            let k = pi as f64;
            if src.kepler {
                // RAPL: package contains core and uncore; dram is separate; psys is the
                // whole platform. Only package + dram is this pod's CPU and memory power.
                let zones = [
                    ("package", 30.0 + 20.0 * k),
                    ("core", 20.0 + 15.0 * k),
                    ("uncore", 5.0 + 5.0 * k),
                    ("dram", 8.0 + 4.0 * k),
                    ("psys", 90.0),
                ];
                for (zone, watts) in zones {
                    let mut l = kepler_labels(wl, pod);
                    l.push(("zone", zone));
                    case.add(
                        series("kepler_pod_cpu_joules_total", &l),
                        counter(watts * scale),
                    );
                    if mine && (zone == "package" || zone == "dram") {
                        cpu += watts;
                    }
                }
            }
            if src.kepler_gpu {
                let watts = 150.0 + 20.0 * k;
                let mut l = kepler_labels(wl, pod);
                l.extend([("gpu", "0"), ("vendor", "nvidia")]);
                case.add(
                    series("kepler_pod_gpu_joules_total", &l),
                    counter(watts * scale),
                );
                if mine {
                    kepler_gpu += watts;
                }
            }
            if let Some(layout) = src.dcgm {
                let watts = 148.0 + 23.0 * k;
                dcgm_series(
                    case,
                    "DCGM_FI_DEV_POWER_USAGE",
                    layout,
                    Some(wl),
                    pod,
                    wi * 10 + pi,
                    watts * scale,
                );
                if mine {
                    dcgm += watts;
                }
            }
            if src.kepler_old {
                let containers: &[(&str, f64, f64)] = if pi == 0 {
                    &[("kserve-container", 60.0, 20.0), ("agent", 4.0, 1.0)]
                } else {
                    &[("kserve-container", 90.0, 25.0)]
                };
                for (c, dynamic, idle) in containers {
                    for (mode, watts) in [("dynamic", dynamic), ("idle", idle)] {
                        let l = vec![
                            ("container_id", "c0ffee"),
                            ("container_name", *c),
                            ("container_namespace", wl.namespace.as_str()),
                            ("pod_name", pod.as_str()),
                            ("mode", mode),
                            ("instance", "gpu-node-1:9102"),
                            ("job", "kepler"),
                            ("namespace", "kepler"),
                            ("pod", "kepler-exporter-4kq9d"),
                        ];
                        case.add(
                            series("kepler_container_joules_total", &l),
                            counter(watts * scale),
                        );
                        if mine {
                            old += watts;
                        }
                    }
                }
            }
        }
        case.series.extend(wl.owner_series());
    }
    if src.kepler {
        cpu + if src.dcgm.is_some() { dcgm } else { kepler_gpu }
    } else if src.kepler_old {
        old
    } else {
        dcgm
    }
}

fn expect_metric_type(s: Strategy, t: &Trigger) {
    let want = match s {
        Strategy::Tokens | Strategy::Concurrency | Strategy::Queue | Strategy::Power => {
            "AverageValue"
        }
        _ => "Value",
    };
    assert_eq!(t.metric_type, want, "{s}: {}", t.query);
}

fn run_or_panic(cases: &[Case]) {
    if let Err(report) = run(cases, None, &[]) {
        panic!("promtool test rules failed:\n{report}");
    }
}

#[test]
fn every_strategy_and_runtime_reads_exactly_its_predictor() {
    let mut cases = Vec::new();
    for predictor in [None, Some("main")] {
        let w = world("llm", "qwen", predictor);
        for r in [Runtime::Vllm, Runtime::Sglang, Runtime::Tgi] {
            for s in Strategy::ALL {
                if s == Strategy::Custom || !strategy::supports(r, s) {
                    continue;
                }
                for t in triggers("llm", "qwen", predictor, s, r) {
                    let ts = Strategy::parse(&t.name).unwrap();
                    expect_metric_type(ts, &t);
                    let label = format!("{ts}/{r}/{}", predictor.unwrap_or("default"));
                    match ts {
                        Strategy::Gpu => {
                            for layout in [Dcgm::Honored, Dcgm::Exported] {
                                let mut c = Case::new(format!("{label}/{layout:?}"));
                                let want = gpu_fixture(&mut c, &w, layout);
                                c.check(&t.query, want);
                                cases.push(c);
                            }
                        }
                        Strategy::Power => {
                            let none = PowerSources {
                                kepler: false,
                                kepler_gpu: false,
                                kepler_old: false,
                                dcgm: None,
                            };
                            let setups = [
                                PowerSources {
                                    kepler: true,
                                    kepler_gpu: true,
                                    dcgm: Some(Dcgm::Honored),
                                    ..none
                                },
                                PowerSources {
                                    kepler: true,
                                    kepler_gpu: true,
                                    dcgm: Some(Dcgm::Exported),
                                    ..none
                                },
                                PowerSources {
                                    kepler: true,
                                    kepler_gpu: true,
                                    ..none
                                },
                                PowerSources {
                                    kepler: true,
                                    ..none
                                },
                                PowerSources {
                                    kepler_old: true,
                                    ..none
                                },
                                PowerSources {
                                    kepler_old: true,
                                    dcgm: Some(Dcgm::Honored),
                                    ..none
                                },
                                PowerSources {
                                    dcgm: Some(Dcgm::Exported),
                                    ..none
                                },
                            ];
                            for src in setups {
                                let mut c = Case::new(format!("{label}/{src:?}"));
                                let want = power_fixture(&mut c, &w, src);
                                c.check(&t.query, want);
                                cases.push(c);
                            }
                        }
                        Strategy::Ttft | Strategy::Itl => {
                            for traffic in [Traffic::Busy, Traffic::Idle, Traffic::Gone] {
                                let mut c = Case::new(format!("{label}/{traffic:?}"));
                                let want = server_fixture(&mut c, &w, ts, r, traffic);
                                assert!(traffic != Traffic::Busy || want > 0.3, "{want}");
                                c.check(&t.query, want);
                                cases.push(c);
                            }
                        }
                        _ => {
                            let mut c = Case::new(label);
                            let want = server_fixture(&mut c, &w, ts, r, Traffic::Busy);
                            c.check(&t.query, want);
                            cases.push(c);
                        }
                    }
                }
            }
        }
    }
    eprintln!("promtool cases: {}", cases.len());
    run_or_panic(&cases);
}

/// A DNS-1035 label (what KServe accepts as an InferenceService name) of exactly `len`
/// characters, drawn by proptest from a fixed seed so failures reproduce.
fn name_of_len(runner: &mut proptest::test_runner::TestRunner, len: usize) -> String {
    use proptest::strategy::{Strategy as _, ValueTree};
    let pattern = match len {
        1 => "[a-z]".to_string(),
        2 => "[a-z][a-z0-9]".to_string(),
        n => format!("[a-z][-a-z0-9]{{{}}}[a-z0-9]", n - 2),
    };
    proptest::string::string_regex(&pattern)
        .unwrap()
        .new_tree(runner)
        .unwrap()
        .current()
}

#[test]
fn names_of_every_length_select_exactly_the_predictor_pods() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut cases = Vec::new();
    let mut truncated = 0;
    // KServe labels the predictor's pods `app: isvc.<name>[-<predictor>]-predictor`, and a
    // label value has at most 63 characters, so the planner accepts names up to 48
    // characters (less the predictor's name and its dash). Every such length is tried.
    const LONGEST: usize = 63 - "isvc.".len() - "-predictor".len();
    for len in 1..=LONGEST {
        let name = name_of_len(&mut runner, len);
        let room = LONGEST.saturating_sub(len + 1);
        let predictor =
            (len % 3 == 0 && room > 0).then(|| name_of_len(&mut runner, (1 + len % 11).min(room)));
        let w = world("ns-p", &name, predictor.as_deref());
        truncated += usize::from(w[0].pods[0].len() == 63);
        for s in [Strategy::Queue, Strategy::Gpu] {
            let t = triggers("ns-p", &name, predictor.as_deref(), s, Runtime::Vllm);
            let mut c = Case::new(format!("len {len}: {name} / {predictor:?} / {s}"));
            let want = match s {
                Strategy::Gpu => gpu_fixture(&mut c, &w, Dcgm::Exported),
                _ => server_fixture(&mut c, &w, s, Runtime::Vllm, Traffic::Busy),
            };
            c.check(&t[0].query, want);
            cases.push(c);
        }
    }
    // Pod names are cut once the Deployment name passes about 47 characters: the
    // longest quarter of the lengths above.
    assert!(
        truncated >= 12,
        "only {truncated} names long enough to have cut pod names"
    );
    eprintln!("promtool cases: {}", cases.len());
    run_or_panic(&cases);
}

/// Values that would end a string or widen a regex: the query still reads exactly the
/// series whose labels equal them.
#[test]
fn hostile_values_neither_inject_nor_widen_a_match() {
    let mut cases = Vec::new();
    for isvc in [
        r#"x"}) or vector(100) #"#,
        "a|b",
        "a+",
        "UPPER",
        r"back\slash",
        "a.b",
    ] {
        let deployment = format!("{isvc}-predictor");
        let scope = Scope {
            namespace: "ns\"q",
            isvc,
            deployment: &deployment,
        };
        let q = strategy::query(Strategy::Queue, Runtime::Vllm, scope, "1m").unwrap();
        let mine = Workload::new("ns\"q", isvc, "predictor", &deployment, 2);
        // Neighbours a regex reading of the value would also match.
        let others = ["a", "b", "aa", "x", "upper", "a-b", "backslash", "axb"]
            .map(|n| Workload::new("ns\"q", n, "predictor", &format!("{n}-predictor"), 1));
        let mut c = Case::new(format!("hostile {isvc}"));
        let want = server_fixture(
            &mut c,
            &std::iter::once(mine).chain(others).collect::<Vec<_>>(),
            Strategy::Queue,
            Runtime::Vllm,
            Traffic::Busy,
        );
        c.check(&q, want);
        cases.push(c);
    }
    run_or_panic(&cases);
}

/// The PrometheusRule `render` prints, as a promtool rule file.
fn rule_file(docs: &[Value]) -> Value {
    let rule = docs
        .iter()
        .find(|d| d["kind"] == "PrometheusRule")
        .expect("a PrometheusRule");
    json!({"groups": rule["spec"]["groups"]})
}

/// The annotations of the rendered rule named `alert` (static text, compared as promtool
/// compares every annotation of a firing alert).
fn annotations_of(rules: &Value, alert: &str) -> Value {
    rules["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["alert"] == alert)
        .map(|r| r["annotations"].clone())
        .unwrap()
}

/// 50 minutes of a constant.
fn long(v: f64) -> String {
    format!("{v}x200")
}

/// kube-state-metrics' Deployment series: `replicas` as "a series of values" per 15 s.
fn deployment_series(w: &Workload, spec_replicas: &str, available: &str) -> Vec<Value> {
    let l = [
        ("namespace", w.namespace.as_str()),
        ("deployment", w.deployment.as_str()),
        ("job", "kube-state-metrics"),
        ("instance", "10.2.0.9:8080"),
    ];
    vec![
        json!({"series": series("kube_deployment_spec_replicas", &l), "values": spec_replicas}),
        json!({"series": series("kube_deployment_status_replicas_available", &l), "values": available}),
    ]
}

/// Queue depth per pod of `w`.
fn queue_series(w: &Workload, per_pod: f64) -> Vec<Value> {
    w.pods
        .iter()
        .map(|pod| {
            let l = w.server_labels(pod);
            json!({"series": series("vllm:num_requests_waiting", &labels_of(&l)), "values": long(per_pod)})
        })
        .collect()
}

#[test]
fn alerts_fire_when_scaling_cannot_work_and_stay_quiet_when_it_does() {
    let docs = rendered(
        "llm",
        "qwen",
        None,
        json!({"scaling.io/strategy": "queue", "scaling.io/max-replicas": "4"}),
    );
    let rules = rule_file(&docs);
    let w = world("llm", "qwen", None);
    let me = &w[0];
    // Decoys: busy, at their own maximum, or silent; none of it concerns this model.
    let mut decoys: Vec<Value> = Vec::new();
    for d in &w[1..] {
        decoys.extend(queue_series(d, 50.0));
        decoys.extend(deployment_series(d, &long(4.0), &long(4.0)));
    }
    let rule_labels = |alert: &str, strategy: Option<&str>| {
        let mut l = json!({"severity": "warning", "inferenceservice": "qwen"});
        if let Some(s) = strategy {
            l["strategy"] = json!(s);
        }
        if alert == "KServeScalingSignalAbsent" {
            // absent() keeps the equality matchers of its selector as labels.
            for (k, v) in [
                ("namespace", "llm"),
                ("serving_kserve_io_inferenceservice", "qwen"),
                ("component", "predictor"),
                ("app", "isvc.qwen-predictor"),
            ] {
                l[k] = json!(v);
            }
        }
        l
    };
    let fires = |alert: &str, strategy: Option<&str>, at: &str| {
        json!({"eval_time": at, "alertname": alert, "exp_alerts": [{
            "exp_labels": rule_labels(alert, strategy),
            "exp_annotations": annotations_of(&rules, alert),
        }]})
    };
    let quiet =
        |alert: &str, at: &str| json!({"eval_time": at, "alertname": alert, "exp_alerts": []});
    let test = |name: &str, mine: Vec<Value>, checks: Vec<Value>| {
        let mut input = decoys.clone();
        input.extend(mine);
        json!({"name": name, "interval": "15s", "input_series": input, "alert_rule_test": checks})
    };
    let two = long(2.0);
    let mut tests = Vec::new();

    // Running, but the monitor scrapes nothing: absent fires once it has lasted 10 minutes.
    tests.push(test(
        "signal absent while running",
        deployment_series(me, &two, &two),
        vec![
            quiet("KServeScalingSignalAbsent", "5m"),
            fires("KServeScalingSignalAbsent", Some("queue"), "15m"),
            quiet("KServeScalingStuck", "15m"),
            quiet("KServeScalingAtMaxReplicas", "40m"),
        ],
    ));
    // The same with the signal present, and with the model scaled to zero.
    let mut present = deployment_series(me, &two, &two);
    present.extend(queue_series(me, 1.0));
    tests.push(test(
        "healthy and below target",
        present,
        vec![
            quiet("KServeScalingSignalAbsent", "15m"),
            quiet("KServeScalingStuck", "30m"),
            quiet("KServeScalingAtMaxReplicas", "40m"),
        ],
    ));
    tests.push(test(
        "scaled to zero",
        deployment_series(me, &long(0.0), &long(0.0)),
        vec![quiet("KServeScalingSignalAbsent", "15m")],
    ));
    // 7 waiting per replica against a target of 5 (beyond the HPA's 10 % tolerance), two
    // replicas that never change: stuck after 15 minutes.
    let mut stuck = deployment_series(me, &two, &two);
    stuck.extend(queue_series(me, 7.0));
    tests.push(test(
        "above target, replicas flat",
        stuck,
        vec![
            quiet("KServeScalingStuck", "10m"),
            fires("KServeScalingStuck", Some("queue"), "20m"),
            quiet("KServeScalingAtMaxReplicas", "40m"),
        ],
    ));
    // Above target but the replicas grew at minute 14: scaling works, nothing to say at 25m.
    let mut growing = deployment_series(me, "2x56 3x143", "2x56 3x143");
    growing.extend(queue_series(me, 7.0));
    tests.push(test(
        "above target, replicas growing",
        growing,
        vec![quiet("KServeScalingStuck", "25m")],
    ));
    // Within the HPA's tolerance (5.4 per replica against 5): nothing can be expected to move.
    let mut tolerated = deployment_series(me, &two, &two);
    tolerated.extend(queue_series(me, 5.4));
    tests.push(test(
        "within tolerance",
        tolerated,
        vec![quiet("KServeScalingStuck", "30m")],
    ));
    // At the maximum for 30 minutes: capped (and not "stuck", which is about not growing).
    let four = long(4.0);
    let mut capped = deployment_series(me, &four, &four);
    capped.extend(queue_series(me, 20.0));
    tests.push(test(
        "pinned at max",
        capped,
        vec![
            quiet("KServeScalingAtMaxReplicas", "20m"),
            fires("KServeScalingAtMaxReplicas", None, "35m"),
            quiet("KServeScalingStuck", "35m"),
        ],
    ));
    let mut below = deployment_series(me, &long(3.0), &long(3.0));
    below.extend(queue_series(me, 1.0));
    tests.push(test(
        "below max",
        below,
        vec![quiet("KServeScalingAtMaxReplicas", "40m")],
    ));
    let checks: usize = tests
        .iter()
        .map(|t| t["alert_rule_test"].as_array().unwrap().len())
        .sum();
    eprintln!("promtool alert checks: {checks}");
    if let Err(report) = run(&[], Some(&rules), &tests) {
        panic!("promtool test rules failed:\n{report}");
    }
}

/// The alerts of node-level strategies watch the joined signal, so a cluster without
/// kube-state-metrics or the exporter is reported instead of silently reading 0.
#[test]
fn node_level_signals_are_reported_absent_without_their_exporter() {
    let docs = rendered("llm", "qwen", None, json!({"scaling.io/strategy": "gpu"}));
    let rules = rule_file(&docs);
    let w = world("llm", "qwen", None);
    let two = long(2.0);
    let mut with_gpu = Case::new("unused");
    gpu_fixture(&mut with_gpu, &w, Dcgm::Honored);
    let extend = |s: &Case| -> Vec<Value> {
        s.series
            .iter()
            .map(|(k, v)| json!({"series": k, "values": v.replace("x40", "x200")}))
            .collect()
    };
    let mut present = deployment_series(&w[0], &two, &two);
    present.extend(extend(&with_gpu));
    let mut missing = deployment_series(&w[0], &two, &two);
    // DCGM runs, kube-state-metrics ownership series do not exist: the join is empty.
    missing.extend(
        extend(&with_gpu)
            .into_iter()
            .filter(|s| !s["series"].as_str().unwrap().starts_with("kube_")),
    );
    let absent = |input: Vec<Value>, exp: Vec<Value>, name: &str| {
        json!({"name": name, "interval": "15s", "input_series": input, "alert_rule_test": [
            {"eval_time": "15m", "alertname": "KServeScalingSignalAbsent", "exp_alerts": exp}
        ]})
    };
    let fired = json!({
        "exp_labels": {"severity": "warning", "inferenceservice": "qwen", "strategy": "gpu"},
        "exp_annotations": annotations_of(&rules, "KServeScalingSignalAbsent"),
    });
    let tests = [
        absent(present, vec![], "gpu signal present"),
        absent(missing, vec![fired], "no kube-state-metrics"),
    ];
    if let Err(report) = run(&[], Some(&rules), &tests) {
        panic!("promtool test rules failed:\n{report}");
    }
}
