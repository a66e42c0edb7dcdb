//! Property tests over everything that reads outside input: the AdmissionReview decoder, the
//! annotation parser and the planner. Case counts are bounded so `cargo test` stays fast; a
//! longer hunt is `PROPTEST_CASES=20000 cargo test --release --test fuzz`.
//!
//! The policy parser is fuzzed too, from mutations of the shipped policy examples.

mod admission_review;
use std::collections::BTreeMap;

use base64::Engine;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kserve_keda_webhook::admission;
use kserve_keda_webhook::core::isvc::Isvc;
use kserve_keda_webhook::core::names::SCALED_OBJECT_MAX;
use kserve_keda_webhook::core::plan::{self, Input};
use kserve_keda_webhook::core::query_limits;
use kserve_keda_webhook::core::settings::Settings;
use kserve_keda_webhook::core::spec::{self, keys};
use kserve_keda_webhook::core::text;
use kserve_keda_webhook::policy;
use kserve_keda_webhook::scaling::Scaling;
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{Value, json};

fn config() -> Config {
    // PROPTEST_CASES still overrides this for a longer run.
    Config {
        cases: 384,
        // A failure's seed is saved (relative to the package root, where cargo runs tests)
        // and replayed first on every later run until the file is edited: commit it with
        // the fix. PROPTEST_RNG_SEED fixes the seed of the random cases (CI sets it).
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct("proptest-regressions/fuzz.txt"),
        )),
        ..Config::default()
    }
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,24}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Short annotation names: the known ones, per-strategy forms, records and noise.
fn short_key() -> impl Strategy<Value = String> {
    let known: Vec<String> = keys::FIXED_INPUTS
        .iter()
        .chain(keys::RECORDS.iter())
        .map(|k| k.to_string())
        .collect();
    prop_oneof![
        4 => prop::sample::select(known),
        2 => prop::sample::select(vec![
            "tokens", "concurrency", "queue", "kv-cache", "ttft", "itl", "tpot", "gpu",
            "power", "custom", "latency", "",
        ])
        .prop_flat_map(|s| {
            prop::sample::select(vec!["target-", "activation-target-"])
                .prop_map(move |p| format!("{p}{s}"))
        }),
        1 => "[a-z-]{0,20}",
        1 => ".{0,20}",
        1 => "(target-|activation-target-)?[a-z]{60,200}",
    ]
}

/// Values: plausible ones for every key, and arbitrary text.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "tokens", "concurrency", "queue", "kv-cache", "ttft", "itl", "gpu", "power",
            "custom", "tokens,queue", "queue,queue", "tokens, kv-cache ,ttft", ",", "",
            "0", "1", "4", "-1", "0.5", "1e3", "NaN", "inf", "4294967296", "99999999999",
            "30s", "1m30s", "0s", "1h", "vllm", "sglang", "tgi", "AverageValue", "Value",
            "servicemonitor", "podmonitor", "none", "8080", "0", "65536", "/metrics",
            "metrics", "http://prometheus:9090", "ftp://x", "sum(up)",
        ])
        .prop_map(str::to_string),
        1 => "[0-9.e+-]{0,12}",
        1 => ".{0,40}",
        1 => ".{60,300}",
        1 => hostile_query(),
    ]
}

/// One way PromQL text nests: around the expression, in front of it or after it.
#[derive(Clone, Debug)]
enum Wrap {
    Around(&'static str, &'static str),
    Before(&'static str),
    After(&'static str),
}

/// PromQL text that nests in any mix of the grammar's forms, from shallow to thousands of
/// levels, some of it inside strings and comments, some of it unbalanced or too long.
fn hostile_query() -> impl Strategy<Value = String> {
    let wrap = prop::sample::select(vec![
        Wrap::Around("(", ")"),
        Wrap::Around("sum(", ")"),
        Wrap::Around("sum by (pod) (", ")"),
        Wrap::Around("abs(", ")"),
        Wrap::Around("clamp_min(", ", 1)"),
        Wrap::Around("rate(", "[1m])"),
        Wrap::Around("max_over_time(", "[5m:])"),
        Wrap::Before("-"),
        Wrap::Before("+"),
        Wrap::Before("x + "),
        Wrap::Before("1 * "),
        Wrap::Before("x or "),
        Wrap::After(" + x"),
        Wrap::After(" ^ 2"),
        Wrap::After(" == bool 1"),
        Wrap::After(" unless on (pod) y"),
        Wrap::After("[1m:]"),
        Wrap::After(" offset 1m"),
        Wrap::After("{a=\"((((\"}"),
        Wrap::After(" # ((((\n"),
        Wrap::Before("\"(((\" + "),
        Wrap::After("["),
        Wrap::After("{"),
        Wrap::Before(")"),
    ]);
    (
        prop::sample::select(vec!["x", "1", "up{job=\"a\"}", "rate(x[1m])", "\"s\""]),
        prop::collection::vec(wrap, 1..8),
        prop_oneof![0usize..=4, 0usize..=60, 50usize..=3000],
    )
        .prop_map(|(leaf, cycle, times)| {
            let mut q = leaf.to_string();
            for w in cycle.iter().cycle().take(cycle.len() * times) {
                match w {
                    Wrap::Around(a, b) => q = format!("{a}{q}{b}"),
                    Wrap::Before(a) => q = format!("{a}{q}"),
                    Wrap::After(b) => q.push_str(b),
                }
                if q.len() > 6000 {
                    break;
                }
            }
            q
        })
}

/// The depth of a parsed tree, walked with a stack of its own.
fn tree_depth(e: &promql_parser::parser::Expr) -> usize {
    use promql_parser::parser::Expr;
    let mut deepest = 0;
    let mut todo = vec![(e, 0usize)];
    while let Some((e, d)) = todo.pop() {
        deepest = deepest.max(d);
        match e {
            Expr::Aggregate(a) => {
                todo.push((&a.expr, d + 1));
                if let Some(p) = &a.param {
                    todo.push((p, d + 1));
                }
            }
            Expr::Unary(u) => todo.push((&u.expr, d + 1)),
            Expr::Binary(b) => todo.extend([(b.lhs.as_ref(), d + 1), (b.rhs.as_ref(), d + 1)]),
            Expr::Paren(p) => todo.push((&p.expr, d + 1)),
            Expr::Subquery(s) => todo.push((&s.expr, d + 1)),
            Expr::Call(c) => todo.extend(c.args.args.iter().map(|a| (a.as_ref(), d + 1))),
            _ => {}
        }
    }
    deepest
}

fn scaling_annotations() -> impl Strategy<Value = BTreeMap<String, String>> {
    (
        prop::option::weighted(0.85, value()),
        prop::collection::btree_map(short_key(), value(), 0..8),
    )
        .prop_map(|(strategy, rest)| {
            let mut m: BTreeMap<String, String> = rest
                .into_iter()
                .map(|(k, v)| (format!("scaling.io/{k}"), v))
                .collect();
            if let Some(s) = strategy {
                m.insert("scaling.io/strategy".into(), s);
            }
            m
        })
}

/// Annotations the planner reads besides `scaling.io/`: KServe's and Knative's.
fn all_annotations() -> impl Strategy<Value = BTreeMap<String, String>> {
    (
        scaling_annotations(),
        prop::option::of(prop::sample::select(vec![
            "RawDeployment",
            "Standard",
            "Serverless",
            "ModelMesh",
            "",
        ])),
        prop::option::of(prop::sample::select(vec![
            "external", "hpa", "keda", "none", "",
        ])),
        prop::collection::vec("[a-z-]{1,40}", 0..12),
    )
        .prop_map(|(mut m, mode, class, knative)| {
            if let Some(mode) = mode {
                m.insert("serving.kserve.io/deploymentMode".into(), mode.into());
            }
            if let Some(class) = class {
                m.insert("serving.kserve.io/autoscalerClass".into(), class.into());
            }
            for k in knative {
                m.insert(format!("autoscaling.knative.dev/{k}"), "x".into());
            }
            m
        })
}

/// `spec.predictor`: the fields the planner reads, with right and wrong types, plus noise.
fn predictor() -> impl Strategy<Value = Value> {
    let replicas = prop_oneof![
        Just(Value::Null),
        (0u32..12).prop_map(|n| json!(n)),
        any::<i64>().prop_map(|n| json!(n)),
        json_value(),
    ];
    let args = prop_oneof![
        prop::collection::vec(
            prop_oneof![
                Just("--disable-log-stats".to_string()),
                Just("--backend=huggingface".to_string()),
                ".{0,30}",
            ],
            0..6
        )
        .prop_map(|v| json!(v)),
        json_value(),
    ];
    (
        replicas.clone(),
        replicas,
        args,
        prop::option::of(prop_oneof![
            "[a-z0-9-]{0,40}".prop_map(Value::String),
            json_value()
        ]),
        prop::collection::btree_map("[a-zA-Z./-]{1,60}", json_value(), 0..20),
        prop::collection::btree_map(
            prop::sample::select(vec![
                "autoScaling",
                "scaleMetric",
                "scaleTarget",
                "containerConcurrency",
                "logger",
                "batcher",
                "containers",
            ]),
            json_value(),
            0..4,
        ),
    )
        .prop_map(|(min, max, args, name, annotations, extra)| {
            let mut p = json!({
                "minReplicas": min,
                "maxReplicas": max,
                "model": {"modelFormat": {"name": "huggingface"}, "args": args},
                "annotations": annotations,
            });
            if let Some(n) = name {
                p["name"] = n;
            }
            for (k, v) in extra {
                p[k] = v;
            }
            p
        })
}

/// Model containers as KServe takes them, well formed or not: the fields the planner reads
/// from the spec besides `predictor()`'s.
fn containers() -> impl Strategy<Value = Value> {
    let resources = prop_oneof![
        prop::collection::btree_map(
            prop::sample::select(vec!["limits", "requests", "claims"]),
            prop_oneof![
                prop::collection::btree_map(
                    prop::sample::select(vec!["nvidia.com/gpu", "cpu", "gpu.intel.com/i915"]),
                    json_value(),
                    0..3
                )
                .prop_map(|m| json!(m)),
                json_value(),
            ],
            0..3,
        )
        .prop_map(|m| json!(m)),
        json_value(),
    ];
    let container = (
        prop_oneof![
            Just(json!("kserve-container")),
            Just(json!("agent")),
            json_value()
        ],
        prop_oneof![
            prop::collection::vec(".{0,12}", 0..3).prop_map(|v| json!(v)),
            json_value()
        ],
        resources,
    )
        .prop_map(|(name, args, resources)| {
            json!({"name": name, "args": args, "command": ["python"], "resources": resources,
                   "env": [{"name": "HF_HOME", "value": "/tmp"}]})
        });
    prop_oneof![
        prop::collection::vec(container, 0..3).prop_map(Value::Array),
        json_value(),
    ]
}

/// DNS-1123-ish names, from short to far beyond the 54 characters a ScaledObject allows.
fn dns_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]([a-z0-9-]{0,20}[a-z0-9])?",
        "[a-z][a-z0-9.-]{40,120}[a-z0-9]",
    ]
}

fn valid_review(annotations: Value) -> Value {
    let object = json!({
        "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
        "metadata": {"name": "qwen", "annotations": annotations},
        "spec": {"predictor": {"minReplicas": 1, "model": {"args": ["--port=8080"]}}}
    });
    admission_review::review("CREATE", &object, None, false)
}

/// Every JSON pointer into `v`.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                pointers(
                    c,
                    format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                pointers(c, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

#[derive(Clone, Debug)]
enum Mutation {
    Replace(usize, Value),
    Remove(usize),
    FlipByte(usize, u8),
    Truncate(usize),
    Insert(usize, u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<usize>(), json_value()).prop_map(|(i, v)| Mutation::Replace(i, v)),
        2 => any::<usize>().prop_map(Mutation::Remove),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::FlipByte(i, b)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
    ]
}

fn mutate(review: &Value, mutations: &[Mutation]) -> Vec<u8> {
    let mut doc = review.clone();
    let mut bytes = None::<Vec<u8>>;
    for m in mutations {
        // Structural mutations first while the document is still JSON; byte-level ones after.
        let mut ptrs = Vec::new();
        pointers(&doc, String::new(), &mut ptrs);
        match (m, bytes.as_mut()) {
            (Mutation::Replace(i, v), None) => {
                let p = &ptrs[i % ptrs.len()];
                if let Some(slot) = doc.pointer_mut(p) {
                    *slot = v.clone();
                }
            }
            (Mutation::Remove(i), None) => {
                let p = &ptrs[i % ptrs.len()];
                if let Some((parent, key)) = p.rsplit_once('/')
                    && let Some(Value::Object(o)) = doc.pointer_mut(parent)
                {
                    o.remove(&key.replace("~1", "/").replace("~0", "~"));
                }
            }
            (_, None) => {
                bytes = Some(serde_json::to_vec(&doc).unwrap());
                byte_mutation(m, bytes.as_mut().unwrap());
            }
            (_, Some(b)) => byte_mutation(m, b),
        }
    }
    bytes.unwrap_or_else(|| serde_json::to_vec(&doc).unwrap())
}

fn byte_mutation(m: &Mutation, b: &mut Vec<u8>) {
    if b.is_empty() {
        return;
    }
    let n = b.len();
    match m {
        Mutation::FlipByte(i, x) => b[i % n] = *x,
        Mutation::Truncate(i) => b.truncate(i % n),
        Mutation::Insert(i, x) => b.insert(i % n, *x),
        Mutation::Replace(i, _) | Mutation::Remove(i) => {
            b.remove(i % n);
        }
    }
}

/// What every answer of `review` must satisfy, whatever came in.
fn check_review_answer(body: &[u8]) {
    match admission::review(body, &Scaling::from(Settings::default())) {
        Ok((out, outcome, _)) => {
            let v: Value = serde_json::from_slice(&out).expect("the answer is JSON");
            assert_eq!(v["apiVersion"], "admission.k8s.io/v1");
            assert_eq!(v["kind"], "AdmissionReview");
            let r = &v["response"];
            assert!(r["uid"].is_string(), "{v}");
            let allowed = r["allowed"].as_bool().expect("allowed is a bool");
            assert_eq!(allowed, outcome != admission::Outcome::Denied);
            if allowed {
                assert!(r.get("status").is_none(), "{v}");
            } else {
                assert_eq!(r["status"]["code"], 422);
                let msg = r["status"]["message"].as_str().unwrap_or_default();
                assert!(!msg.is_empty(), "{v}");
                assert!(r.get("patch").is_none(), "a denial carries no patch: {v}");
            }
            if let Some(p) = r.get("patch") {
                assert_eq!(outcome, admission::Outcome::Patched);
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(p.as_str().expect("patch is a string"))
                    .expect("patch is base64");
                serde_json::from_slice::<json_patch::Patch>(&raw).expect("a JSON patch");
            }
            for w in r["warnings"].as_array().into_iter().flatten() {
                let w = w.as_str().expect("warnings are strings");
                assert!(w.len() <= 256, "{} chars: {w}", w.len());
            }
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.contains("AdmissionReview") || msg.contains("encode"),
                "unclear error: {msg}"
            );
            // A huge input cannot be echoed back whole in the 400 body.
            assert!(msg.len() < 1024, "{} chars: {msg}", msg.len());
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn review_never_panics_on_arbitrary_bytes(body in prop::collection::vec(any::<u8>(), 0..2048)) {
        check_review_answer(&body);
    }

    #[test]
    fn review_never_panics_on_arbitrary_json(v in json_value()) {
        check_review_answer(&serde_json::to_vec(&v).unwrap());
    }

    #[test]
    fn review_answers_mutated_reviews_sensibly(
        annotations in scaling_annotations(),
        mutations in prop::collection::vec(mutation(), 0..5),
    ) {
        let review = valid_review(json!(annotations));
        check_review_answer(&mutate(&review, &mutations));
    }

    /// Admission reads the spec from the request's JSON text, skipping what the planner does
    /// not use; the controller and `render` read it from a decoded tree. Both must see the same
    /// InferenceService, or give the same error for a malformed one.
    #[test]
    fn the_spec_read_from_text_is_the_spec_read_from_a_tree(
        predictor in predictor(),
        containers in prop::option::of(containers()),
        model_resources in prop::option::of(json_value()),
        status in prop_oneof![
            Just(json!({"deploymentMode": "RawDeployment"})),
            json_value().prop_map(|v| json!({"deploymentMode": v})),
            json_value(),
        ],
        spec_not_object in prop::option::weighted(0.1, json_value()),
    ) {
        let mut predictor = predictor;
        if let Some(c) = containers {
            predictor["containers"] = c;
        }
        if let (Some(r), Some(model)) = (model_resources, predictor.get_mut("model")) {
            model["resources"] = r;
        }
        let spec = spec_not_object.unwrap_or_else(|| json!({"predictor": predictor, "transformer": {"containers": []}}));
        let annotations = BTreeMap::from([("team".to_string(), "a".to_string())]);
        let meta = ObjectMeta {
            name: Some("m".into()),
            annotations: Some(annotations.clone()),
            ..ObjectMeta::default()
        };
        let (spec_text, status_text) = (spec.to_string(), status.to_string());
        // Both read the same text, as both do in production (a float does not survive a
        // round trip through text exactly).
        let (spec, status): (Value, Value) =
            (serde_json::from_str(&spec_text).unwrap(), serde_json::from_str(&status_text).unwrap());
        let tree = Isvc::from_fields(&meta, spec.get("predictor"), status.get("deploymentMode"), "d");
        let text = Isvc::from_text(
            Some("m".into()),
            None,
            Some(annotations),
            Some(&spec_text),
            Some(&status_text),
            "d",
        );
        prop_assert_eq!(text, tree);
    }

    /// The guard before the parser: past the limits a query is refused with the limit named
    /// (and the parser never runs); within them the parser's tree is never deeper than the
    /// guard counted, whatever the strategy.
    #[test]
    fn nested_queries_are_refused_past_the_limits_and_parse_shallow_within(
        query in hostile_query(),
        strategy in prop::sample::select(vec!["custom", "queue"]),
    ) {
        let annotations = BTreeMap::from([
            ("scaling.io/strategy".to_string(), strategy.to_string()),
            ("scaling.io/query".to_string(), query.clone()),
        ]);
        let depth = query_limits::depth(&query);
        let result = spec::parse(&annotations, "scaling.io");
        if query.len() > query_limits::MAX_BYTES {
            let e = result.unwrap_err();
            prop_assert!(e.problem.contains("at most 4096 bytes"), "{e}");
        } else if depth > query_limits::MAX_DEPTH {
            let e = result.unwrap_err();
            prop_assert_eq!(&e.key, "scaling.io/query");
            prop_assert!(e.problem.contains("levels deep; at most 100 levels"), "{e}");
        } else {
            match promql_parser::parser::parse(&query) {
                Ok(tree) => {
                    prop_assert!(tree_depth(&tree) <= depth, "{} > {depth}: {query}", tree_depth(&tree));
                    prop_assert!(result.is_ok(), "{result:?}");
                }
                Err(_) => {
                    let e = result.unwrap_err();
                    prop_assert!(e.problem.contains("is not valid PromQL"), "{e}");
                }
            }
        }
    }

    /// The same queries inside whole AdmissionReview bodies: always an answer, a denial
    /// naming the limit past it.
    #[test]
    fn reviews_with_nested_queries_are_answered(query in hostile_query()) {
        let review = valid_review(json!({
            "scaling.io/strategy": "custom",
            "scaling.io/target": "3",
            "scaling.io/query": query,
        }));
        let body = serde_json::to_vec(&review).unwrap();
        check_review_answer(&body);
        if query.len() > query_limits::MAX_BYTES || query_limits::depth(&query) > query_limits::MAX_DEPTH {
            let (out, outcome, _) = admission::review(&body, &Scaling::from(Settings::default())).unwrap();
            prop_assert_eq!(outcome, admission::Outcome::Denied);
            let v: Value = serde_json::from_slice(&out).unwrap();
            let msg = v["response"]["status"]["message"].as_str().unwrap_or_default();
            prop_assert!(msg.contains("scaling.io/query") && msg.contains("at most"), "{msg}");
        }
    }

    #[test]
    fn annotation_errors_name_the_key(annotations in scaling_annotations()) {
        match spec::parse(&annotations, "scaling.io") {
            Ok(None) => prop_assert!(!annotations.contains_key("scaling.io/strategy")),
            Ok(Some(s)) => {
                prop_assert!(!s.strategies.is_empty());
                for t in s.targets.values().chain(s.activations.values()) {
                    prop_assert!(t.is_finite(), "{t}");
                }
                for u in &s.unused {
                    prop_assert!(annotations.contains_key(u), "{u}");
                }
            }
            Err(e) => {
                // The key as given, clipped when long and with control characters escaped.
                let named = annotations.keys().any(|k| text::clip(k) == e.key);
                prop_assert!(named, "{e:?} names no given key");
                prop_assert!(e.to_string().contains(&e.key));
                prop_assert!(!e.problem.is_empty());
                prop_assert!(e.to_string().len() < 1024, "{} chars: {e}", e.to_string().len());
            }
        }
    }

    #[test]
    fn every_plan_is_one_keda_and_the_api_server_accept(
        name in dns_name(),
        namespace in dns_name(),
        annotations in all_annotations(),
        predictor in predictor(),
        old_mode in prop::option::of(prop::sample::select(vec!["RawDeployment", "Serverless"])),
    ) {
        let meta = ObjectMeta {
            name: Some(name),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        };
        let data = json!({"spec": {"predictor": predictor}});
        let Ok(isvc) = Isvc::from_parts(&meta, &data, &namespace) else {
            return Ok(());
        };
        let old = old_mode.map(|m| {
            let mut o = isvc.clone();
            o.annotations = BTreeMap::from([("serving.kserve.io/deploymentMode".into(), m.into())]);
            o
        });
        let settings = Settings::default();
        let input = Input { isvc: &isvc, old: old.as_ref(), live_deployment: None };
        match plan::plan(input, &settings) {
            Err(e) => {
                let msg = e.to_string();
                prop_assert!(!msg.is_empty());
                prop_assert!(msg.len() < 2048, "{} chars: {msg}", msg.len());
            }
            Ok(p) => {
                for w in &p.warnings {
                    prop_assert!(w.len() <= 256, "{} chars: {w}", w.len());
                }
                let Some(so) = &p.scaled_object else {
                    prop_assert!(p.monitor.is_none());
                    return Ok(());
                };
                let so_name = so.metadata.name.as_deref().unwrap_or_default();
                prop_assert!(!so_name.is_empty() && so_name.len() <= SCALED_OBJECT_MAX, "{so_name}");
                prop_assert!(so.spec.min_replica_count <= so.spec.max_replica_count);
                prop_assert!(!so.spec.triggers.is_empty());
                let target = &so.spec.scale_target_ref.name;
                prop_assert_eq!(Some(target), p.scale_target.as_ref());
                for t in &so.spec.triggers {
                    let q = &t.metadata["query"];
                    if t.name == "custom" {
                        // The author's own PromQL, taken as written.
                        prop_assert_eq!(Some(q), isvc.annotations.get("scaling.io/query"));
                        continue;
                    }
                    prop_assert!(q.contains(&format!("amespace=\"{}\"", isvc.namespace)), "{q}");
                    // Exact selection: the Deployment's own pod label, or its ReplicaSets.
                    prop_assert!(q.contains(&format!("app=\"isvc.{target}\"")) || q.contains(&format!("owner_name=\"{target}\"")), "{q}");
                    prop_assert!(t.metadata["threshold"].parse::<f64>().is_ok_and(|n| (spec::MIN_TARGET..=spec::MAX_TARGET).contains(&n)), "{}", t.metadata["threshold"]);
                }
            }
        }
    }
}

/// The shipped policy examples: valid starting points for mutation.
fn example_policies() -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().contains("policy"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    out.sort();
    out
}

proptest! {
    #![proptest_config(config())]

    /// Arbitrary text and byte-level mutations of real policies: the parser answers with a
    /// policy or an error that says where, and a policy it accepts never makes planning panic.
    #[test]
    fn policy_parser_never_panics_and_accepted_policies_plan(
        pick in 0usize..3,
        mutations in prop::collection::vec(mutation(), 0..4),
        noise in "\\PC{0,200}",
        annotations in all_annotations(),
        predictor in predictor(),
    ) {
        let examples = example_policies();
        let mut bytes = examples[pick % examples.len()].clone().into_bytes();
        for m in &mutations {
            byte_mutation(m, &mut bytes);
        }
        for text in [String::from_utf8_lossy(&bytes).to_string(), noise] {
            match policy::parse(&text) {
                Err(e) => {
                    let msg = e.to_string();
                    prop_assert!(!msg.is_empty() && msg.len() < 4096, "{msg}");
                }
                Ok(p) => {
                    let meta = ObjectMeta {
                        name: Some("m".into()),
                        annotations: Some(annotations.clone()),
                        ..ObjectMeta::default()
                    };
                    let data = json!({"spec": {"predictor": predictor.clone()}});
                    let Ok(isvc) = Isvc::from_parts(&meta, &data, "lab") else {
                        continue;
                    };
                    let labels = BTreeMap::from([("team-type".to_string(), "research".to_string())]);
                    let eff = p.resolve(&Settings::default(), "lab", &labels);
                    let input = Input { isvc: &isvc, old: None, live_deployment: None };
                    if let Ok(plan) = policy::enforce(input, &eff, None) {
                        for w in &plan.warnings {
                            prop_assert!(w.len() <= 256, "{} chars: {w}", w.len());
                        }
                    }
                }
            }
        }
    }
}

/// A name KServe accepts (a DNS-1035 label) of exactly `len` characters.
fn kserve_name_of(len: usize) -> impl Strategy<Value = String> {
    let pattern = match len {
        1 => "[a-z]".to_string(),
        n => format!("[a-z][a-z0-9-]{{{}}}[a-z0-9]", n - 2),
    };
    proptest::string::string_regex(&pattern).unwrap()
}

/// A DNS-1123 label of exactly `len` characters.
fn dns_label_of(len: usize) -> impl Strategy<Value = String> {
    let pattern = match len {
        1 => "[a-z0-9]".to_string(),
        n => format!("[a-z0-9][a-z0-9-]{{{}}}[a-z0-9]", n - 2),
    };
    proptest::string::string_regex(&pattern).unwrap()
}

/// InferenceService name, namespace and predictor name, each valid, of every length the
/// names built from them allow: KServe's `app: isvc.<name>[-<predictor>]-predictor` label
/// within 63 characters.
fn valid_names() -> impl Strategy<Value = (String, String, Option<String>)> {
    (1usize..=48, 1usize..=63, 0usize..=46).prop_flat_map(|(name_len, ns_len, p_len)| {
        // Room left for a predictor name after `isvc.<name>-` and `-predictor`.
        let room = 58usize.saturating_sub(name_len + 1 + "-predictor".len());
        let p_len = if room == 0 { 0 } else { p_len.min(room) };
        (
            kserve_name_of(name_len),
            dns_label_of(ns_len),
            if p_len == 0 {
                Just(None).boxed()
            } else {
                kserve_name_of(p_len).prop_map(Some).boxed()
            },
        )
    })
}

/// Where a valid name is broken, and how.
#[derive(Clone, Debug)]
enum Break {
    /// A character Kubernetes refuses, at a position (modulo the length).
    Insert(usize, char),
    /// Longer than the 63 characters a label (and a Service name) allows.
    TooLong(usize),
    Empty,
}

fn breakage() -> impl Strategy<Value = Break> {
    prop_oneof![
        (
            any::<usize>(),
            prop::sample::select(vec![
                'A', 'Z', '_', '.', '"', '|', '+', ' ', '\n', '\u{1b}', '{', '}', '#', 'é', '/',
                '\\'
            ])
        )
            .prop_map(|(at, c)| Break::Insert(at, c)),
        (64usize..400).prop_map(Break::TooLong),
        Just(Break::Empty),
    ]
}

fn broken(valid: &str, how: &Break) -> String {
    match how {
        Break::Insert(at, c) => {
            let at = at % (valid.len() + 1);
            format!("{}{c}{}", &valid[..at], &valid[at..])
        }
        Break::TooLong(n) => format!("{valid}{}", "a".repeat(n.saturating_sub(valid.len()))),
        Break::Empty => String::new(),
    }
}

fn plan_named(
    name: &str,
    namespace: &str,
    predictor: Option<&str>,
) -> Result<plan::Plan, plan::PlanError> {
    let meta = ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(namespace.to_string()),
        annotations: Some(BTreeMap::from([(
            "scaling.io/strategy".to_string(),
            "tokens,gpu".to_string(),
        )])),
        ..ObjectMeta::default()
    };
    let mut p = json!({"model": {"modelFormat": {"name": "huggingface"}}});
    if let Some(n) = predictor {
        p["name"] = json!(n);
    }
    let isvc = Isvc::from_parts(&meta, &json!({"spec": {"predictor": p}}), "default")?;
    let input = Input {
        isvc: &isvc,
        old: None,
        live_deployment: None,
    };
    plan::plan(input, &Settings::default())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn names_of_every_valid_length_are_accepted((name, namespace, predictor) in valid_names()) {
        let p = plan_named(&name, &namespace, predictor.as_deref());
        let p = match p {
            Ok(p) => p,
            Err(e) => return Err(TestCaseError::fail(format!("{name}/{namespace}/{predictor:?}: {e}"))),
        };
        let so = p.scaled_object.expect("a ScaledObject");
        let so_name = so.metadata.name.unwrap_or_default();
        prop_assert!(!so_name.is_empty() && so_name.len() <= SCALED_OBJECT_MAX, "{so_name}");
        prop_assert_eq!(so.metadata.namespace.as_deref(), Some(namespace.as_str()));
        prop_assert!(p.scale_target.is_some_and(|t| t.len() <= 63));
    }

    #[test]
    fn broken_names_are_denied_with_the_field_named(
        (name, namespace, predictor) in valid_names(),
        which in 0usize..3,
        how in breakage(),
    ) {
        let (name, namespace, predictor, field) = match which {
            0 => (broken(&name, &how), namespace, predictor, "metadata.name"),
            1 => (name, broken(&namespace, &how), predictor, "metadata.namespace"),
            _ => (name, namespace, Some(broken(predictor.as_deref().unwrap_or("p"), &how)), "spec.predictor.name"),
        };
        // Empty means absent: no name is refused elsewhere, no namespace is the request's,
        // and no predictor name is the default.
        if matches!(how, Break::Empty) {
            return Ok(());
        }
        let e = match plan_named(&name, &namespace, predictor.as_deref()) {
            Err(e) => e.to_string(),
            Ok(_) => return Err(TestCaseError::fail(format!("accepted {name:?}/{namespace:?}/{predictor:?}"))),
        };
        // A too-long name or predictor name may be reported as their combination.
        let named = e.contains(field) || (which != 1 && e.contains("metadata.name and spec.predictor.name"));
        prop_assert!(named, "{field}: {e}");
        prop_assert!(!e.chars().any(char::is_control), "{e:?}");
        prop_assert!(e.len() < 1024, "{} chars", e.len());
    }

    #[test]
    fn counts_beyond_int32_are_denied_with_both_bounds(
        key in prop::sample::select(vec!["min-replicas", "max-replicas", "polling-interval", "cooldown-period"]),
        n in 2_147_483_648u64..,
    ) {
        let annotations = BTreeMap::from([
            ("scaling.io/strategy".to_string(), "queue".to_string()),
            (format!("scaling.io/{key}"), n.to_string()),
        ]);
        let e = spec::parse(&annotations, "scaling.io").unwrap_err();
        prop_assert!(e.problem.contains("to 2147483647"), "{e}");
    }
}
