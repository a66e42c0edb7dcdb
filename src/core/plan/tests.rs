use std::collections::BTreeMap;

use serde_json::json;

use super::*;
use crate::core::settings::{AuthRef, RawMode};

fn isvc(annotations: &[(&str, &str)], predictor: serde_json::Value) -> Isvc {
    let meta = ObjectMeta {
        name: Some("qwen".into()),
        namespace: Some("llm".into()),
        annotations: Some(
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..ObjectMeta::default()
    };
    Isvc::from_parts(&meta, &json!({"spec": {"predictor": predictor}}), "default").unwrap()
}

fn create(i: &Isvc) -> Result<Plan, PlanError> {
    plan(
        Input {
            isvc: i,
            old: None,
            live_deployment: None,
        },
        &Settings::default(),
    )
}

fn update(new: &Isvc, old: &Isvc) -> Result<Plan, PlanError> {
    plan(
        Input {
            isvc: new,
            old: Some(old),
            live_deployment: None,
        },
        &Settings::default(),
    )
}

fn so(p: &Plan) -> &ScaledObjectSpec {
    &p.scaled_object.as_ref().unwrap().spec
}

fn set<'a>(p: &'a Plan, key: &str) -> Option<&'a str> {
    p.annotations.get(key).and_then(|v| v.as_deref())
}

#[test]
fn tokens_creates_raw_external_scaled_object_and_monitor() {
    let p = create(&isvc(&[("scaling.io/strategy", "tokens")], json!({}))).unwrap();
    assert_eq!(set(&p, DEPLOYMENT_MODE), Some("RawDeployment"));
    assert_eq!(set(&p, AUTOSCALER_CLASS), Some("external"));
    assert_eq!(set(&p, "scaling.io/scale-target"), Some("qwen-predictor"));
    assert_eq!(set(&p, "scaling.io/scaled-object"), Some("qwen-predictor"));
    assert_eq!(set(&p, "scaling.io/monitor-name"), Some("qwen-predictor"));

    let so_obj = p.scaled_object.as_ref().unwrap();
    assert_eq!(so_obj.metadata.namespace.as_deref(), Some("llm"));
    assert_eq!(
        so_obj.metadata.labels.as_ref().unwrap()[MANAGED_BY_LABEL],
        MANAGED_BY
    );
    let spec = so(&p);
    assert_eq!(spec.scale_target_ref.name, "qwen-predictor");
    assert_eq!(spec.scale_target_ref.kind, "Deployment");
    assert_eq!((spec.min_replica_count, spec.max_replica_count), (1, 4));
    assert_eq!((spec.polling_interval, spec.cooldown_period), (30, 300));
    let names: Vec<&str> = spec.triggers.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["tokens", "concurrency"]);
    for t in &spec.triggers {
        assert_eq!(t.type_, "prometheus");
        assert_eq!(t.metric_type, "AverageValue");
        assert_eq!(
            t.metadata["serverAddress"],
            "http://prometheus-operated.monitoring.svc:9090"
        );
    }
    assert_eq!(spec.triggers[0].metadata["threshold"], "1000");
    assert_eq!(spec.triggers[1].metadata["threshold"], "4");
    let Some(Monitor::Service(sm)) = &p.monitor else {
        panic!("a ServiceMonitor: {:?}", p.monitor);
    };
    assert_eq!(
        sm.spec.pod_target_labels,
        ["serving.kserve.io/inferenceservice", "component", "app"]
    );
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
}

#[test]
fn each_strategy_has_its_metric_type_and_default_target() {
    for (name, metric_type, threshold) in [
        ("concurrency", "AverageValue", "4"),
        ("queue", "AverageValue", "5"),
        ("kv-cache", "Value", "0.7"),
        ("ttft", "Value", "1"),
        ("itl", "Value", "0.1"),
        ("tpot", "Value", "0.1"),
        ("gpu", "Value", "80"),
        ("power", "AverageValue", "200"),
    ] {
        let p = create(&isvc(&[("scaling.io/strategy", name)], json!({}))).unwrap();
        let [t] = &so(&p).triggers[..] else {
            panic!("{name}: one trigger expected");
        };
        assert_eq!(t.metric_type, metric_type, "{name}");
        assert_eq!(t.metadata["threshold"], threshold, "{name}");
        assert!(
            t.metadata["query"].contains(r#"app="isvc.qwen-predictor""#)
                || t.metadata["query"].contains(r#"owner_name="qwen-predictor""#),
            "{name}"
        );
    }
}

#[test]
fn several_strategies_give_several_triggers_with_their_own_targets() {
    let p = create(&isvc(
        &[
            ("scaling.io/strategy", "queue,kv-cache,tokens,concurrency"),
            ("scaling.io/target-queue", "3"),
            ("scaling.io/target-concurrency", "16"),
            ("scaling.io/activation-target-queue", "1"),
        ],
        json!({}),
    ))
    .unwrap();
    let t = &so(&p).triggers;
    let names: Vec<&str> = t.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["queue", "kv-cache", "tokens", "concurrency"]);
    assert_eq!(t[0].metadata["threshold"], "3");
    assert_eq!(t[0].metadata["activationThreshold"], "1");
    assert!(!t[1].metadata.contains_key("activationThreshold"));
    assert_eq!(t[3].metadata["threshold"], "16");
}

#[test]
fn named_predictor_and_live_deployment_decide_the_target() {
    let i = isvc(&[("scaling.io/strategy", "queue")], json!({"name": "main"}));
    let p = create(&i).unwrap();
    assert_eq!(so(&p).scale_target_ref.name, "qwen-main-predictor");
    let p = plan(
        Input {
            isvc: &i,
            old: None,
            live_deployment: Some("qwen-predictor-default"),
        },
        &Settings::default(),
    )
    .unwrap();
    assert_eq!(so(&p).scale_target_ref.name, "qwen-predictor-default");
    assert!(so(&p).triggers[0].metadata["query"].contains(r#"app="isvc.qwen-predictor-default""#));
}

#[test]
fn long_names_fit_keda_limit() {
    let meta = ObjectMeta {
        name: Some("a".repeat(48)),
        annotations: Some(BTreeMap::from([(
            "scaling.io/strategy".to_string(),
            "queue".to_string(),
        )])),
        ..ObjectMeta::default()
    };
    let i = Isvc::from_parts(&meta, &json!({}), "ns").unwrap();
    let p = create(&i).unwrap();
    let name = p.scaled_object.unwrap().metadata.name.unwrap();
    assert!(name.len() <= 54, "{name}");
    assert_eq!(
        set(
            &Plan {
                annotations: p.annotations.clone(),
                ..Plan::default()
            },
            "scaling.io/scaled-object"
        ),
        Some(name.as_str())
    );
    // The target keeps the real Deployment name, whatever its length.
    assert_eq!(
        p.scale_target.as_deref(),
        Some(&*format!("{}-predictor", "a".repeat(48)))
    );
}

#[test]
fn replicas_come_from_annotation_then_spec_then_defaults() {
    let p = create(&isvc(
        &[("scaling.io/strategy", "queue")],
        json!({"minReplicas": 2, "maxReplicas": 6}),
    ))
    .unwrap();
    assert_eq!((so(&p).min_replica_count, so(&p).max_replica_count), (2, 6));
    let p = create(&isvc(
        &[
            ("scaling.io/strategy", "queue"),
            ("scaling.io/min-replicas", "3"),
            ("scaling.io/max-replicas", "9"),
        ],
        json!({"minReplicas": 2, "maxReplicas": 6}),
    ))
    .unwrap();
    assert_eq!((so(&p).min_replica_count, so(&p).max_replica_count), (3, 9));
    // maxReplicas 0 is KServe's "unset"; a min above the default max raises the max.
    let p = create(&isvc(
        &[("scaling.io/strategy", "queue")],
        json!({"minReplicas": 6, "maxReplicas": 0}),
    ))
    .unwrap();
    assert_eq!((so(&p).min_replica_count, so(&p).max_replica_count), (6, 6));
}

#[test]
fn min_above_max_is_denied_with_sources() {
    let e = create(&isvc(
        &[
            ("scaling.io/strategy", "queue"),
            ("scaling.io/min-replicas", "5"),
        ],
        json!({"maxReplicas": 3}),
    ))
    .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("min replicas 5 (from scaling.io/min-replicas)"),
        "{msg}"
    );
    assert!(
        msg.contains("max replicas 3 (from spec.predictor.maxReplicas)"),
        "{msg}"
    );
}

#[test]
fn custom_needs_query_and_target_and_honours_metric_type() {
    let e = create(&isvc(
        &[
            ("scaling.io/strategy", "custom"),
            ("scaling.io/target", "5"),
        ],
        json!({}),
    ))
    .unwrap_err();
    assert!(matches!(e, PlanError::CustomWithoutQuery { .. }), "{e}");
    assert!(e.to_string().contains("scaling.io/query"));
    let e = create(&isvc(
        &[
            ("scaling.io/strategy", "custom"),
            ("scaling.io/query", "sum(x)"),
        ],
        json!({}),
    ))
    .unwrap_err();
    assert!(matches!(e, PlanError::CustomWithoutTarget { .. }), "{e}");
    let p = create(&isvc(
        &[
            ("scaling.io/strategy", "custom"),
            ("scaling.io/query", "max(gateway_pending{model=\"qwen\"})"),
            ("scaling.io/metric-type", "Value"),
            ("scaling.io/target", "10"),
            ("scaling.io/min-replicas", "0"),
        ],
        json!({}),
    ))
    .unwrap();
    let t = &so(&p).triggers[0];
    assert_eq!(t.metric_type, "Value");
    assert_eq!(t.metadata["query"], "max(gateway_pending{model=\"qwen\"})");
    // A signal from outside the pods can wake the model from zero: no warning.
    assert!(
        !p.warnings.iter().any(|w| w.contains("from zero")),
        "{:?}",
        p.warnings
    );
}

#[test]
fn runtime_changes_metric_names_and_refuses_missing_ones() {
    let p = create(&isvc(
        &[
            ("scaling.io/strategy", "queue"),
            ("scaling.io/runtime", "tgi"),
        ],
        json!({}),
    ))
    .unwrap();
    assert!(so(&p).triggers[0].metadata["query"].starts_with("sum(tgi_queue_size{"));
    let e = create(&isvc(
        &[
            ("scaling.io/strategy", "kv-cache"),
            ("scaling.io/runtime", "tgi"),
        ],
        json!({}),
    ))
    .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("annotation scaling.io/strategy") && msg.contains("'kv-cache'"),
        "{msg}"
    );
}

#[test]
fn conflicting_kserve_annotations_are_denied() {
    for (key, value) in [
        (DEPLOYMENT_MODE, "Knative"),
        (DEPLOYMENT_MODE, "Serverless"),
        (DEPLOYMENT_MODE, "ModelMesh"),
        (AUTOSCALER_CLASS, "hpa"),
        (AUTOSCALER_CLASS, "keda"),
        (AUTOSCALER_CLASS, "none"),
        (AUTOSCALER_CLASS, "kpa"),
    ] {
        let e = create(&isvc(
            &[("scaling.io/strategy", "queue"), (key, value)],
            json!({}),
        ))
        .unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains(&format!("{key}={value}")), "{msg}");
        assert!(msg.contains("scaling.io/strategy"), "{msg}");
    }
}

/// KServe merges `spec.predictor.annotations` over the InferenceService's and builds the
/// predictor from the result: a class or mode set there wins over the top-level one.
#[test]
fn conflicting_predictor_annotations_are_denied_naming_where_they_are() {
    for (key, value) in [
        (AUTOSCALER_CLASS, "hpa"),
        (AUTOSCALER_CLASS, "keda"),
        (AUTOSCALER_CLASS, "none"),
        (AUTOSCALER_CLASS, "kpa"),
        (DEPLOYMENT_MODE, "Knative"),
        (DEPLOYMENT_MODE, "Serverless"),
        (DEPLOYMENT_MODE, "ModelMesh"),
    ] {
        // Whatever the top level says, including what the webhook itself would write.
        for top in [&[][..], &[(AUTOSCALER_CLASS, "external")][..]] {
            let mut annotations = vec![("scaling.io/strategy", "queue")];
            annotations.extend_from_slice(top);
            let e = create(&isvc(&annotations, json!({"annotations": {key: value}}))).unwrap_err();
            assert!(matches!(e, PlanError::PredictorConflict { .. }), "{e}");
            let msg = e.to_string();
            assert!(
                msg.starts_with(&format!("spec.predictor.annotations {key}={value} ")),
                "{msg}"
            );
            assert!(msg.contains("scaling.io/strategy"), "{msg}");
        }
    }
    // A hostile value is clipped and escaped like every other.
    let e = create(&isvc(
        &[("scaling.io/strategy", "queue")],
        json!({"annotations": {AUTOSCALER_CLASS: format!("hpa\n{}", "x".repeat(500))}}),
    ))
    .unwrap_err()
    .to_string();
    assert!(!e.contains('\n') && e.len() < 800, "{e}");
}

#[test]
fn an_external_class_on_the_predictor_decides_alone() {
    // The top-level class then only reaches the transformer and explainer: it is neither
    // refused nor rewritten.
    for top in [None, Some("hpa"), Some("external")] {
        let mut annotations = vec![("scaling.io/strategy", "queue")];
        if let Some(class) = top {
            annotations.push((AUTOSCALER_CLASS, class));
        }
        let p = create(&isvc(
            &annotations,
            json!({"annotations": {AUTOSCALER_CLASS: "external"}}),
        ))
        .unwrap();
        assert!(!p.annotations.contains_key(AUTOSCALER_CLASS), "{top:?}");
        assert_eq!(set(&p, DEPLOYMENT_MODE), Some("RawDeployment"));
        assert!(p.scaled_object.is_some());
    }
    // A raw mode on the predictor is fine; the top-level one is still what picks raw.
    for mode in ["RawDeployment", "Standard"] {
        let p = create(&isvc(
            &[("scaling.io/strategy", "queue")],
            json!({"annotations": {DEPLOYMENT_MODE: mode}}),
        ))
        .unwrap();
        assert_eq!(set(&p, DEPLOYMENT_MODE), Some("RawDeployment"));
        assert_eq!(set(&p, AUTOSCALER_CLASS), Some("external"));
    }
    // Removing the strategy leaves the predictor's class alone, and says it still wins.
    let records = [
        ("scaling.io/scaled-object", "qwen-predictor"),
        ("scaling.io/scale-target", "qwen-predictor"),
    ];
    let p = update(
        &isvc(
            &records,
            json!({"annotations": {AUTOSCALER_CLASS: "external"}}),
        ),
        &isvc(&records, json!({})),
    )
    .unwrap();
    assert!(!p.annotations.contains_key(AUTOSCALER_CLASS));
    assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
    assert!(
        p.warnings[0].contains("spec.predictor.annotations keeps")
            && !p.warnings[0].contains("KServe's own HPA"),
        "{:?}",
        p.warnings
    );
    // Without a strategy the predictor's annotations are the user's business.
    let p = create(&isvc(
        &[],
        json!({"annotations": {AUTOSCALER_CLASS: "hpa", DEPLOYMENT_MODE: "Knative"}}),
    ))
    .unwrap();
    assert_eq!(p, Plan::default());
}

#[test]
fn explicit_raw_mode_and_external_class_are_kept() {
    let p = create(&isvc(
        &[
            ("scaling.io/strategy", "queue"),
            (DEPLOYMENT_MODE, "Standard"),
            (AUTOSCALER_CLASS, "external"),
        ],
        json!({}),
    ))
    .unwrap();
    assert!(!p.annotations.contains_key(DEPLOYMENT_MODE));
    assert!(!p.annotations.contains_key(AUTOSCALER_CLASS));
}

#[test]
fn standard_mode_is_selectable() {
    let settings = Settings {
        raw_mode: RawMode::Standard,
        ..Settings::default()
    };
    let i = isvc(&[("scaling.io/strategy", "queue")], json!({}));
    let p = plan(
        Input {
            isvc: &i,
            old: None,
            live_deployment: None,
        },
        &settings,
    )
    .unwrap();
    assert_eq!(set(&p, DEPLOYMENT_MODE), Some("Standard"));
}

#[test]
fn update_adding_strategy_to_knative_object_is_denied_as_frozen() {
    let new = isvc(&[("scaling.io/strategy", "queue")], json!({}));
    // Old object says Knative in its annotation.
    let old = isvc(&[(DEPLOYMENT_MODE, "Serverless")], json!({}));
    let e = update(&new, &old).unwrap_err();
    assert!(matches!(e, PlanError::FrozenMode { .. }), "{e}");
    assert!(e.to_string().contains("recreate"), "{e}");
    // Old object has no annotation but its status says Knative.
    let mut old = isvc(&[], json!({}));
    old.status_deployment_mode = Some("Serverless".into());
    assert!(matches!(
        update(&new, &old),
        Err(PlanError::FrozenMode { .. })
    ));
    // No annotation and no status: created in the cluster default, which we cannot prove raw.
    let old = isvc(&[], json!({}));
    assert!(matches!(
        update(&new, &old),
        Err(PlanError::FrozenMode { .. })
    ));
}

#[test]
fn update_on_raw_object_restores_a_dropped_mode_and_never_adds_a_new_one() {
    let new = isvc(&[("scaling.io/strategy", "queue")], json!({}));
    let old = isvc(&[(DEPLOYMENT_MODE, "Standard")], json!({}));
    let p = update(&new, &old).unwrap();
    assert_eq!(set(&p, DEPLOYMENT_MODE), Some("Standard"));
    // Raw by cluster default (status only): no annotation is added, it would read as a change.
    let mut old = isvc(&[], json!({}));
    old.status_deployment_mode = Some("RawDeployment".into());
    let p = update(&new, &old).unwrap();
    assert!(!p.annotations.contains_key(DEPLOYMENT_MODE));
    assert_eq!(set(&p, AUTOSCALER_CLASS), Some("external"));
}

#[test]
fn update_that_changes_nothing_we_own_has_no_annotation_changes() {
    let first = create(&isvc(&[("scaling.io/strategy", "tokens")], json!({}))).unwrap();
    let mut pairs: Vec<(String, String)> = vec![("scaling.io/strategy".into(), "tokens".into())];
    for (k, v) in &first.annotations {
        pairs.push((k.clone(), v.clone().unwrap()));
    }
    let refs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let stored = isvc(&refs, json!({}));
    let p = update(&stored, &stored).unwrap();
    assert!(p.annotations.is_empty(), "{:?}", p.annotations);
    assert!(p.scaled_object.is_some());
}

#[test]
fn no_scaling_annotation_passes_through_untouched() {
    let p = create(&isvc(&[("team", "a")], json!({"minReplicas": 0}))).unwrap();
    assert_eq!(p, Plan::default());
}

#[test]
fn removing_the_strategy_undoes_what_we_set() {
    let i = isvc(
        &[
            (AUTOSCALER_CLASS, "external"),
            (DEPLOYMENT_MODE, "RawDeployment"),
            ("scaling.io/scaled-object", "qwen-predictor"),
            ("scaling.io/scale-target", "qwen-predictor"),
            ("scaling.io/target", "3"),
        ],
        json!({}),
    );
    let p = update(&i, &i).unwrap();
    assert_eq!(p.annotations.get(AUTOSCALER_CLASS), Some(&None));
    assert_eq!(p.annotations.get("scaling.io/scaled-object"), Some(&None));
    assert_eq!(p.annotations.get("scaling.io/scale-target"), Some(&None));
    // The mode is frozen: it stays.
    assert!(!p.annotations.contains_key(DEPLOYMENT_MODE));
    assert!(p.scaled_object.is_none() && p.monitor.is_none());
    assert!(
        p.warnings.iter().any(|w| w.contains("HPA")),
        "{:?}",
        p.warnings
    );
    assert!(
        p.warnings.iter().any(|w| w.contains("scaling.io/target")),
        "{:?}",
        p.warnings
    );
}

#[test]
fn warnings_for_what_will_not_work() {
    let p = create(&isvc(
        &[
            ("scaling.io/strategy", "tokens"),
            ("autoscaling.knative.dev/target", "10"),
        ],
        json!({
            "minReplicas": 0,
            "scaleMetric": "concurrency",
            "model": {"args": ["--disable-log-stats", "--backend=huggingface"]},
            "annotations": {"autoscaling.knative.dev/metric": "rps"}
        }),
    ))
    .unwrap();
    let all = p.warnings.join("\n");
    for needle in [
        "--disable-log-stats",
        "--backend=huggingface",
        "scale up from zero",
        "autoscaling.knative.dev/target",
        "autoscaling.knative.dev/metric",
        "spec.predictor.scaleMetric",
    ] {
        assert!(all.contains(needle), "missing {needle} in:\n{all}");
    }
}

/// KServe's default domainTemplate, `{{ .Name }}-{{ .Namespace }}.{{ .IngressDomain }}`,
/// makes `<name>-predictor-<namespace>` one DNS label of the host.
#[test]
fn a_host_label_over_63_under_the_default_domain_template_is_warned_about() {
    let with = |name: &str, ns: &str| {
        let meta = ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            annotations: Some(BTreeMap::from([(
                "scaling.io/strategy".to_string(),
                "queue".to_string(),
            )])),
            ..ObjectMeta::default()
        };
        let i = Isvc::from_parts(&meta, &json!({}), "default").unwrap();
        create(&i).unwrap().warnings
    };
    // 20 + 10 + 1 + 32 = 63: fits.
    let w = with(&"q".repeat(20), &"n".repeat(32));
    assert!(!w.iter().any(|w| w.contains("domainTemplate")), "{w:?}");
    let w = with(&"q".repeat(20), &"n".repeat(33));
    let host = w
        .iter()
        .find(|w| w.contains("domainTemplate"))
        .unwrap_or_else(|| panic!("{w:?}"));
    assert!(host.contains("(64 characters)"), "{host}");
    assert!(host.len() <= MAX_WARNING, "{host}");
}

#[test]
fn warnings_stay_within_what_the_api_server_shows() {
    let p = create(&isvc(
        &[
            ("scaling.io/strategy", "tokens,queue"),
            ("scaling.io/target-gpu", "3"),
            ("scaling.io/monitor", "none"),
        ],
        json!({"minReplicas": 0, "model": {"args": ["--disable-log-stats"]}}),
    ))
    .unwrap();
    assert!(p.warnings.len() >= 4, "{:?}", p.warnings);
    for w in &p.warnings {
        assert!(w.len() <= 256, "{} chars: {w}", w.len());
    }
}

#[test]
fn warnings_listing_many_keys_are_cut_with_a_count() {
    let knative: Vec<(String, String)> = (0..40)
        .map(|i| {
            (
                format!("autoscaling.knative.dev/key-{i:02}"),
                "1".to_string(),
            )
        })
        .collect();
    let mut pairs: Vec<(&str, &str)> = knative
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    pairs.push(("scaling.io/strategy", "queue"));
    let p = create(&isvc(&pairs, json!({}))).unwrap();
    let w = p
        .warnings
        .iter()
        .find(|w| w.contains("Knative"))
        .expect("a Knative warning");
    assert!(w.len() <= MAX_WARNING, "{} chars: {w}", w.len());
    assert!(
        w.starts_with("annotations autoscaling.knative.dev/key-00, "),
        "{w}"
    );
    assert!(w.contains(" more only affect Knative mode"), "{w}");

    // Without a strategy, leftover inputs are listed the same way.
    let leftovers: Vec<(String, String)> = (0..30)
        .map(|i| (format!("scaling.io/target-{i:02}"), "1".to_string()))
        .collect();
    let pairs: Vec<(&str, &str)> = leftovers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let p = create(&isvc(&pairs, json!({}))).unwrap();
    assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
    assert!(p.warnings[0].len() <= MAX_WARNING, "{}", p.warnings[0]);
    assert!(p.warnings[0].contains("scaling.io/target-00"));
    assert!(
        p.warnings[0].contains(" more have no effect"),
        "{}",
        p.warnings[0]
    );
}

#[test]
fn listing_names_everything_that_fits() {
    let items = vec!["a".to_string(), "b".to_string()];
    assert_eq!(listing("keys ", &items, " unused"), "keys a, b unused");
    let long = vec!["x".repeat(300); 3];
    let w = listing("keys ", &long, " unused");
    assert!(w.len() <= MAX_WARNING, "{w}");
    assert!(w.contains("..."), "each item is clipped: {w}");
}

#[test]
fn gpu_and_power_do_not_warn_about_log_stats() {
    let p = create(&isvc(
        &[("scaling.io/strategy", "gpu,power")],
        json!({"model": {"args": ["--disable-log-stats"]}}),
    ))
    .unwrap();
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
}

/// The `__address__` rewrites of a monitor endpoint: (regex on the pod IP, new address).
fn addresses(rules: &[RelabelConfig]) -> Vec<(&str, &str)> {
    rules
        .iter()
        .filter(|r| r.target_label.as_deref() == Some("__address__"))
        .map(|r| {
            assert_eq!(r.source_labels, ["__meta_kubernetes_pod_ip"], "{r:?}");
            assert_eq!(r.action, None, "replace is the default action: {r:?}");
            (
                r.regex.as_deref().unwrap_or_default(),
                r.replacement.as_deref().unwrap_or_default(),
            )
        })
        .collect()
}

#[test]
fn service_monitor_has_no_port_filter_and_rewrites_the_address() {
    let i = isvc(&[("scaling.io/strategy", "queue")], json!({}));
    let p = create(&i).unwrap();
    let Some(Monitor::Service(sm)) = &p.monitor else {
        panic!("ServiceMonitor expected");
    };
    let json = serde_json::to_value(sm).unwrap();
    let endpoint = &json["spec"]["endpoints"][0];
    // Any port filter becomes a keep on declared container ports, and KServe's runtimes may
    // declare none.
    for field in ["port", "targetPort", "portNumber"] {
        assert!(endpoint.get(field).is_none(), "{field} in {endpoint}");
    }
    let rules = &sm.spec.endpoints[0].relabelings;
    assert_eq!(
        addresses(rules),
        [("([^:]+)", "${1}:8080"), ("(.+:.+)", "[${1}]:8080")]
    );
    // Targets without a pod (no IP to rewrite) are dropped before the rewrite.
    assert_eq!(rules[0].action.as_deref(), Some("keep"));
    assert_eq!(rules[0].source_labels, ["__meta_kubernetes_pod_ip"]);
    // Every target of a pod ends with the same labels, so Prometheus scrapes it once.
    assert!(
        rules
            .iter()
            .any(|r| r.target_label.as_deref() == Some("container")
                && r.source_labels.is_empty()
                && r.replacement.as_deref() == Some("kserve-container")),
        "{rules:?}"
    );
    assert_eq!(
        endpoint["relabelings"][2],
        json!({"sourceLabels": ["__meta_kubernetes_pod_ip"], "regex": "([^:]+)", "targetLabel": "__address__", "replacement": "${1}:8080"}),
        "prometheus-operator's field names"
    );
}

#[test]
fn monitor_choices_port_path_and_platform_labels() {
    let settings = Settings {
        monitor_labels: BTreeMap::from([
            ("release".to_string(), "prometheus".to_string()),
            (MANAGED_BY_LABEL.to_string(), "someone-else".to_string()),
        ]),
        ..Settings::default()
    };
    let i = isvc(
        &[
            ("scaling.io/strategy", "queue"),
            ("scaling.io/monitor", "podmonitor"),
            ("scaling.io/metrics-port", "9000"),
            ("scaling.io/metrics-path", "/stats"),
        ],
        json!({}),
    );
    let p = plan(
        Input {
            isvc: &i,
            old: None,
            live_deployment: None,
        },
        &settings,
    )
    .unwrap();
    let Some(Monitor::Pod(pm)) = &p.monitor else {
        panic!("PodMonitor expected");
    };
    let labels = pm.metadata.labels.as_ref().unwrap();
    assert_eq!(labels["release"], "prometheus");
    assert_eq!(
        labels[MANAGED_BY_LABEL], MANAGED_BY,
        "ownership label cannot be overridden"
    );
    assert_eq!(pm.spec.pod_metrics_endpoints[0].path, "/stats");
    let rules = &pm.spec.pod_metrics_endpoints[0].relabelings;
    assert_eq!(
        addresses(rules),
        [("([^:]+)", "${1}:9000"), ("(.+:.+)", "[${1}]:9000")]
    );
    assert!(
        rules.iter().any(|r| r.action.as_deref() == Some("keep")
            && r.source_labels == ["__meta_kubernetes_pod_container_name"]
            && r.regex.as_deref() == Some("kserve-container")),
        "only the model server container is scraped: {rules:?}"
    );
    let sel = pm.spec.selector.match_labels.as_ref().unwrap();
    assert_eq!(sel[ISVC_LABEL], "qwen");
    assert_eq!(sel["component"], "predictor");
    assert_eq!(pm.spec.namespace_selector.match_names, vec!["llm"]);
    // The queries select on these pod labels, so the monitor must copy every one of them.
    assert_eq!(
        pm.spec.pod_target_labels,
        ["serving.kserve.io/inferenceservice", "component", "app"]
    );
    let q = &so(&p).triggers[0].metadata["query"];
    for label in ["serving_kserve_io_inferenceservice=", "component=", "app="] {
        assert!(q.contains(label), "{q}");
    }

    let i = isvc(
        &[
            ("scaling.io/strategy", "queue"),
            ("scaling.io/monitor", "none"),
        ],
        json!({}),
    );
    let p = create(&i).unwrap();
    assert!(p.monitor.is_none());
    assert!(!p.annotations.contains_key("scaling.io/monitor-name"));
}

#[test]
fn trigger_auth_and_prometheus_address() {
    let mut settings = Settings {
        trigger_auth: Some(AuthRef {
            kind: "ClusterTriggerAuthentication".into(),
            name: "prom".into(),
            modes: "bearer".into(),
        }),
        credential_addresses: vec!["https://thanos:9091".into()],
        ..Settings::default()
    };
    let i = isvc(
        &[
            ("scaling.io/strategy", "queue"),
            ("scaling.io/prometheus-address", "https://thanos:9091"),
        ],
        json!({}),
    );
    let input = Input {
        isvc: &i,
        old: None,
        live_deployment: None,
    };
    let p = plan(input, &settings).unwrap();
    let t = &so(&p).triggers[0];
    assert_eq!(t.metadata["serverAddress"], "https://thanos:9091");
    assert_eq!(t.metadata["authModes"], "bearer");
    let auth = t.authentication_ref.as_ref().unwrap();
    assert_eq!(
        (auth.kind.as_str(), auth.name.as_str()),
        ("ClusterTriggerAuthentication", "prom")
    );

    // An address nobody allowed never receives the shared credential: refused, or, when
    // the platform's policy admits it, generated without it.
    settings.credential_addresses.clear();
    let e = plan(input, &settings).unwrap_err();
    assert!(matches!(e, PlanError::SharedCredential { .. }), "{e:?}");
    settings.credential_refusal = crate::core::settings::CredentialRefusal::Withhold;
    let p = plan(input, &settings).unwrap();
    let t = &so(&p).triggers[0];
    assert!(t.authentication_ref.is_none() && !t.metadata.contains_key("authModes"));
    assert_eq!(t.metadata["serverAddress"], "https://thanos:9091");
    assert!(
        p.warnings
            .iter()
            .any(|w| w.contains("without the platform's credentials")),
        "{:?}",
        p.warnings
    );
}

#[test]
fn platform_default_targets_apply_below_user_targets() {
    let mut settings = Settings::default();
    settings.targets.insert(Strategy::Queue, 12.0);
    let i = isvc(&[("scaling.io/strategy", "queue")], json!({}));
    let p = plan(
        Input {
            isvc: &i,
            old: None,
            live_deployment: None,
        },
        &settings,
    )
    .unwrap();
    assert_eq!(so(&p).triggers[0].metadata["threshold"], "12");
    let i = isvc(
        &[("scaling.io/strategy", "queue"), ("scaling.io/target", "2")],
        json!({}),
    );
    let p = plan(
        Input {
            isvc: &i,
            old: None,
            live_deployment: None,
        },
        &settings,
    )
    .unwrap();
    assert_eq!(so(&p).triggers[0].metadata["threshold"], "2");
}

#[test]
fn sglang_runtime() {
    let p = create(&isvc(
        &[
            ("scaling.io/strategy", "tokens"),
            ("scaling.io/runtime", "sglang"),
        ],
        json!({}),
    ))
    .unwrap();
    let q: Vec<&str> = so(&p)
        .triggers
        .iter()
        .map(|t| t.metadata["query"].as_str())
        .collect();
    assert!(q[0].contains("sglang:generation_tokens_total"), "{q:?}");
    assert!(q[1].contains("sglang:num_running_reqs"), "{q:?}");
}

#[test]
fn a_prometheus_rule_goes_beside_the_monitor_unless_switched_off() {
    let p = create(&isvc(&[("scaling.io/strategy", "queue")], json!({}))).unwrap();
    let rule = p.rule.as_ref().expect("a PrometheusRule");
    let monitor = p.monitor.as_ref().unwrap();
    assert_eq!(rule.metadata.name.as_deref(), Some(monitor.name()));
    assert_eq!(rule.metadata.labels, monitor.metadata().labels);
    assert_eq!(rule.metadata.namespace.as_deref(), Some("llm"));
    let alerts: Vec<&str> = rule.spec.groups[0]
        .rules
        .iter()
        .map(|r| r.alert.as_str())
        .collect();
    assert_eq!(
        alerts,
        [
            "KServeScalingSignalAbsent",
            "KServeScalingStuck",
            "KServeScalingAtMaxReplicas"
        ]
    );
    for r in &rule.spec.groups[0].rules {
        assert_eq!(r.labels["inferenceservice"], "qwen");
        assert!(r.annotations["summary"].contains("llm/qwen"));
    }

    for off in [
        vec![
            ("scaling.io/strategy", "queue"),
            ("scaling.io/alerts", "false"),
        ],
        vec![
            ("scaling.io/strategy", "queue"),
            ("scaling.io/monitor", "none"),
        ],
    ] {
        let p = create(&isvc(&off, json!({}))).unwrap();
        assert!(p.rule.is_none(), "{off:?}");
    }
    let err = create(&isvc(
        &[
            ("scaling.io/strategy", "queue"),
            ("scaling.io/alerts", "no"),
        ],
        json!({}),
    ))
    .unwrap_err();
    assert!(err.to_string().contains("true or false"), "{err}");

    let platform_off = Settings {
        alerts: false,
        ..Settings::default()
    };
    let i = isvc(&[("scaling.io/strategy", "queue")], json!({}));
    let input = Input {
        isvc: &i,
        old: None,
        live_deployment: None,
    };
    assert!(plan(input, &platform_off).unwrap().rule.is_none());
    let i = isvc(
        &[
            ("scaling.io/strategy", "queue"),
            ("scaling.io/alerts", "true"),
        ],
        json!({}),
    );
    let input = Input {
        isvc: &i,
        old: None,
        live_deployment: None,
    };
    assert!(plan(input, &platform_off).unwrap().rule.is_some());
}

#[test]
fn the_policy_default_switches_the_prometheus_rule_off() {
    let policy = crate::policy::parse("defaults:\n  alerts: false\n").unwrap();
    let scaling = crate::scaling::Scaling::new(
        Settings::default(),
        policy,
        std::sync::Arc::new(|_| BTreeMap::new()),
    );
    let i = isvc(&[("scaling.io/strategy", "queue")], json!({}));
    let input = Input {
        isvc: &i,
        old: None,
        live_deployment: None,
    };
    let p = scaling.plan(input, None).unwrap();
    assert!(p.monitor.is_some());
    assert!(p.rule.is_none());
}
