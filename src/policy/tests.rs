use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde_json::json;

use super::*;
use crate::core::isvc::Isvc;
use crate::core::plan::{Input, Plan, PlanError};
use crate::core::resources::ScaledObject;
use crate::core::settings::Settings;

fn isvc(ns: &str, annotations: &[(&str, &str)], predictor: serde_json::Value) -> Isvc {
    let meta = ObjectMeta {
        name: Some("m".into()),
        namespace: Some(ns.into()),
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

fn run(policy: &str, i: &Isvc, labels: &[(&str, &str)]) -> Result<Plan, PlanError> {
    let p = parse(policy).unwrap();
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let eff = p.resolve(&Settings::default(), &i.namespace, &labels);
    enforce(
        Input {
            isvc: i,
            old: None,
            live_deployment: None,
        },
        &eff,
        None,
    )
}

fn so(p: &Plan) -> &ScaledObject {
    p.scaled_object.as_ref().unwrap()
}

const GPU: &str = r#"{"model": {"resources": {"limits": {"nvidia.com/gpu": "1"}}}}"#;

fn gpu() -> serde_json::Value {
    serde_json::from_str(GPU).unwrap()
}

const LAYERED: &str = r#"
defaults:
  prometheusAddress: http://cluster-prom:9090
  maxReplicas: 6
  targets: {queue: 10, concurrency: 6}
  monitorLabels: {release: kps}
limits:
  maxReplicas: 20
rules:
  - name: team-a
    namespaces: [team-a]
    defaults:
      maxReplicas: 3
      targets: {queue: 7}
  - name: labelled
    namespaceSelector:
      matchLabels: {tier: gold}
    defaults:
      prometheusAddress: http://gold-prom:9090
"#;

/// The precedence table of the README, one row per test case: which value wins.
#[test]
fn precedence_table() {
    struct Row {
        what: &'static str,
        ns: &'static str,
        labels: &'static [(&'static str, &'static str)],
        annotations: &'static [(&'static str, &'static str)],
        predictor: serde_json::Value,
        check: fn(&ScaledObject) -> String,
        want: &'static str,
    }
    let threshold = |s: &ScaledObject| s.spec.triggers[0].metadata["threshold"].clone();
    let max = |s: &ScaledObject| s.spec.max_replica_count.to_string();
    let address = |s: &ScaledObject| s.spec.triggers[0].metadata["serverAddress"].clone();
    let rows = [
        Row {
            what: "built-in default (kv-cache target)",
            ns: "x",
            labels: &[],
            annotations: &[("scaling.io/strategy", "kv-cache")],
            predictor: json!({}),
            check: threshold,
            want: "0.7",
        },
        Row {
            what: "cluster default beats built-in",
            ns: "x",
            labels: &[],
            annotations: &[("scaling.io/strategy", "queue")],
            predictor: json!({}),
            check: threshold,
            want: "10",
        },
        Row {
            what: "namespace rule beats cluster default",
            ns: "team-a",
            labels: &[],
            annotations: &[("scaling.io/strategy", "queue")],
            predictor: json!({}),
            check: threshold,
            want: "7",
        },
        Row {
            what: "user annotation beats namespace rule",
            ns: "team-a",
            labels: &[],
            annotations: &[("scaling.io/strategy", "queue"), ("scaling.io/target", "2")],
            predictor: json!({}),
            check: threshold,
            want: "2",
        },
        Row {
            what: "cluster default max",
            ns: "x",
            labels: &[],
            annotations: &[("scaling.io/strategy", "queue")],
            predictor: json!({}),
            check: max,
            want: "6",
        },
        Row {
            what: "rule default max",
            ns: "team-a",
            labels: &[],
            annotations: &[("scaling.io/strategy", "queue")],
            predictor: json!({}),
            check: max,
            want: "3",
        },
        Row {
            what: "spec.predictor.maxReplicas beats rule default",
            ns: "team-a",
            labels: &[],
            annotations: &[("scaling.io/strategy", "queue")],
            predictor: json!({"maxReplicas": 5}),
            check: max,
            want: "5",
        },
        Row {
            what: "label-selected rule",
            ns: "y",
            labels: &[("tier", "gold")],
            annotations: &[("scaling.io/strategy", "queue")],
            predictor: json!({}),
            check: address,
            want: "http://gold-prom:9090",
        },
        Row {
            what: "labels that do not match",
            ns: "y",
            labels: &[("tier", "silver")],
            annotations: &[("scaling.io/strategy", "queue")],
            predictor: json!({}),
            check: address,
            want: "http://cluster-prom:9090",
        },
        Row {
            what: "user address beats every default",
            ns: "y",
            labels: &[("tier", "gold")],
            annotations: &[
                ("scaling.io/strategy", "queue"),
                ("scaling.io/prometheus-address", "http://mine:9090"),
            ],
            predictor: json!({}),
            check: address,
            want: "http://mine:9090",
        },
    ];
    for row in rows {
        let i = isvc(row.ns, row.annotations, row.predictor.clone());
        let p = run(LAYERED, &i, row.labels).unwrap_or_else(|e| panic!("{}: {e}", row.what));
        assert_eq!((row.check)(so(&p)), row.want, "{}", row.what);
    }
}

#[test]
fn limits_beat_user_annotations_in_each_mode() {
    let policy = |mode: &str| {
        format!(
            "rules:\n  - name: gpu-cap\n    namespaces: [ml]\n    enforcement: {mode}\n    limits: {{maxReplicas: 4}}\n"
        )
    };
    let i = isvc(
        "ml",
        &[
            ("scaling.io/strategy", "queue"),
            ("scaling.io/max-replicas", "10"),
        ],
        json!({}),
    );

    let e = run(&policy("enforce"), &i, &[]).unwrap_err().to_string();
    assert!(
        e.contains("rule 'gpu-cap'") && e.contains("max replicas 10 is above the limit 4"),
        "{e}"
    );
    assert!(e.contains("scaling.io/max-replicas to 4 or less"), "{e}");

    let p = run(&policy("warn"), &i, &[]).unwrap();
    assert_eq!(
        so(&p).spec.max_replica_count,
        10,
        "warn allows the request as written"
    );
    assert!(
        p.warnings
            .iter()
            .any(|w| w.starts_with("policy (warn): rule 'gpu-cap'")),
        "{:?}",
        p.warnings
    );
    assert!(p.audit.is_empty());

    let p = run(&policy("audit"), &i, &[]).unwrap();
    assert_eq!(so(&p).spec.max_replica_count, 10);
    assert!(
        p.warnings.is_empty(),
        "audit shows the user nothing: {:?}",
        p.warnings
    );
    assert_eq!(p.audit.len(), 1);

    // Other namespaces are not affected by the rule.
    let other = isvc(
        "web",
        &[
            ("scaling.io/strategy", "queue"),
            ("scaling.io/max-replicas", "10"),
        ],
        json!({}),
    );
    assert!(run(&policy("enforce"), &other, &[]).is_ok());
}

#[test]
fn every_kind_of_limit_is_checked() {
    let policy = r#"
limits:
  allowedStrategies: [tokens, queue]
  allowedPrometheusAddresses: [http://prom:9090]
  minPollingInterval: 15
defaults:
  prometheusAddress: http://prom:9090
"#;
    // tokens brings concurrency along; only what the user asked for is checked.
    let ok = isvc("a", &[("scaling.io/strategy", "tokens")], json!({}));
    assert!(run(policy, &ok, &[]).is_ok());
    for (annotations, needle) in [
        (
            vec![("scaling.io/strategy", "ttft")],
            "strategy ttft is not allowed here; allowed: tokens, queue",
        ),
        (
            vec![
                ("scaling.io/strategy", "queue"),
                ("scaling.io/prometheus-address", "http://other:9090"),
            ],
            "Prometheus address 'http://other:9090' is not allowed",
        ),
        (
            vec![
                ("scaling.io/strategy", "queue"),
                ("scaling.io/polling-interval", "5"),
            ],
            "polling interval 5s is below the minimum 15s",
        ),
    ] {
        let e = run(policy, &isvc("a", &annotations, json!({})), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("cluster limits") && e.contains(needle), "{e}");
    }
}

#[test]
fn required_strategy_denies_or_defaults_gpu_isvcs() {
    let deny = "rules:\n  - name: gpus-scale\n    requireStrategy: {when: gpu, action: deny}\n";
    let e = run(deny, &isvc("a", &[], gpu()), &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(
            "rule 'gpus-scale' requires autoscaling for InferenceServices that request GPUs"
        ),
        "{e}"
    );
    assert!(e.contains("scaling.io/strategy"), "{e}");
    // No GPU: nothing required, passes through untouched.
    assert_eq!(
        run(deny, &isvc("a", &[], json!({})), &[]).unwrap(),
        Plan::default()
    );

    let default =
        "rules:\n  - name: gpus-scale\n    requireStrategy: {action: default, strategy: tokens}\n";
    let p = run(default, &isvc("a", &[], gpu()), &[]).unwrap();
    assert_eq!(
        p.annotations["scaling.io/strategy"].as_deref(),
        Some("tokens")
    );
    assert_eq!(
        p.annotations["serving.kserve.io/autoscalerClass"].as_deref(),
        Some("external")
    );
    assert_eq!(so(&p).spec.triggers.len(), 2);

    let warn = "rules:\n  - name: gpus-scale\n    enforcement: warn\n    requireStrategy: {action: default, strategy: tokens}\n";
    let p = run(warn, &isvc("a", &[], gpu()), &[]).unwrap();
    assert!(p.scaled_object.is_none() && p.annotations.is_empty());
    assert!(
        p.warnings[0].contains("will set scaling.io/strategy: tokens"),
        "{:?}",
        p.warnings
    );
}

#[test]
fn exemptions_by_namespace_label_and_by_guarded_annotation() {
    let policy = r#"
limits: {maxReplicas: 2}
exemptions:
  namespaceLabels: {scaling.io/policy: exempt}
  annotation: policy.scaling.io/exempt
  allowedGroups: [platform-admins]
"#;
    let big = [
        ("scaling.io/strategy", "queue"),
        ("scaling.io/max-replicas", "9"),
    ];
    assert!(run(policy, &isvc("a", &big, json!({})), &[]).is_err());
    assert!(
        run(
            policy,
            &isvc("a", &big, json!({})),
            &[("scaling.io/policy", "exempt")]
        )
        .is_ok()
    );

    let mut exempted = big.to_vec();
    exempted.push(("policy.scaling.io/exempt", "true"));
    let i = isvc("a", &exempted, json!({}));
    assert!(
        run(policy, &i, &[]).is_ok(),
        "render and the controller honour the annotation"
    );

    // In admission, only the platform team may add it.
    let p = parse(policy).unwrap();
    let eff = p.resolve(&Settings::default(), "a", &BTreeMap::new());
    let input = Input {
        isvc: &i,
        old: None,
        live_deployment: None,
    };
    let user_groups = vec!["developers".to_string()];
    let e = enforce(
        input,
        &eff,
        Some(Requester {
            username: "alice",
            groups: &user_groups,
        }),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("policy.scaling.io/exempt") && e.contains("platform-admins"),
        "{e}"
    );
    let admin_groups = vec!["platform-admins".to_string()];
    assert!(
        enforce(
            input,
            &eff,
            Some(Requester {
                username: "bob",
                groups: &admin_groups
            })
        )
        .is_ok()
    );
    // Already there and unchanged: a user's unrelated update goes through.
    let mut stored = exempted.clone();
    stored.push(("serving.kserve.io/deploymentMode", "RawDeployment"));
    let stored = isvc("a", &stored, json!({}));
    let updated = Input {
        isvc: &stored,
        old: Some(&stored),
        live_deployment: None,
    };
    assert!(
        enforce(
            updated,
            &eff,
            Some(Requester {
                username: "alice",
                groups: &user_groups
            })
        )
        .is_ok()
    );
}

#[test]
fn syntax_type_and_unknown_field_errors_carry_the_line() {
    for (text, needles) in [
        (
            "rules:\n  - name: a\n    limits:\n      maxReplicas: lots\n",
            vec!["line 4"],
        ),
        (
            "rules:\n  - name: a\n    enforcment: warn\n",
            vec!["unknown field `enforcment`", "line 3"],
        ),
        (
            "limits:\n  allowedStrategies: [tokens, latency]\n",
            vec!["unknown strategy 'latency'", "line 2"],
        ),
        (
            "defaults:\n  rawMode: Serverless\n",
            vec!["Serverless", "line 2"],
        ),
        ("rules: [\n", vec!["line"]),
    ] {
        let e = parse(text).unwrap_err().to_string();
        for n in needles {
            assert!(e.contains(n), "{text:?}: {e}");
        }
    }
}

#[test]
fn consistency_errors_name_the_path() {
    for (text, path) in [
        (
            "defaults: {maxReplicas: 10}\nlimits: {maxReplicas: 4}\n",
            "limits.maxReplicas",
        ),
        (
            "rules:\n  - name: a\n    defaults: {maxReplicas: 10}\nlimits: {maxReplicas: 4}\n",
            "rules[0] (a).defaults.maxReplicas",
        ),
        ("rules:\n  - name: a\n  - name: a\n", "rules[1] (a).name"),
        (
            "rules:\n  - name: a\n    requireStrategy: {action: default}\n",
            "rules[0] (a).requireStrategy.strategy",
        ),
        (
            "rules:\n  - name: a\n    requireStrategy: {action: default, strategy: latency}\n",
            "rules[0] (a).requireStrategy.strategy",
        ),
        (
            "defaults: {prometheusAddress: prom:9090}\n",
            "defaults.prometheusAddress",
        ),
        (
            "defaults: {targets: {queue: -1}}\n",
            "defaults.targets.queue",
        ),
        (
            "exemptions: {annotation: scaling.io/exempt}\n",
            "exemptions.annotation",
        ),
        (
            "rules:\n  - name: a\n    defaults: {annotationPrefix: x.io}\n",
            "rules[0] (a).defaults.annotationPrefix",
        ),
        (
            "defaults: {monitorLabels: {'bad key': x}}\n",
            "defaults.monitorLabels",
        ),
        (
            "defaults: {monitorLabels: {release: 'not a value'}}\n",
            "defaults.monitorLabels.release",
        ),
        (
            "rules:\n  - name: a\n    defaults: {triggerAuthentication: {kind: TriggerAuthentication, name: 'Bad Name'}}\n",
            "rules[0] (a).defaults.triggerAuthentication.name",
        ),
        (
            "defaults: {triggerAuthentication: {kind: TriggerAuthentication, name: prom, modes: 'bearer,basic'}}\n",
            "defaults.triggerAuthentication.modes",
        ),
    ] {
        match parse(text) {
            Err(PolicyError::Invalid { path: p, .. }) => assert_eq!(p, path, "{text:?}"),
            other => panic!("{text:?}: {other:?}"),
        }
    }
    assert_eq!(parse("").unwrap(), Policy::default());
}

#[test]
fn label_selector_semantics() {
    let labels = BTreeMap::from([("tier".to_string(), "gold".to_string())]);
    let sel = |v: serde_json::Value| -> LabelSelector { serde_json::from_value(v).unwrap() };
    assert!(selects(
        &sel(json!({"matchLabels": {"tier": "gold"}})),
        &labels
    ));
    assert!(!selects(
        &sel(json!({"matchLabels": {"tier": "gold", "x": "y"}})),
        &labels
    ));
    assert!(selects(
        &sel(
            json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["gold", "silver"]}]})
        ),
        &labels
    ));
    assert!(!selects(
        &sel(
            json!({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["gold"]}]})
        ),
        &labels
    ));
    assert!(selects(
        &sel(json!({"matchExpressions": [{"key": "team", "operator": "DoesNotExist"}]})),
        &labels
    ));
    assert!(!selects(
        &sel(json!({"matchExpressions": [{"key": "team", "operator": "Exists"}]})),
        &labels
    ));
}

#[test]
fn exemption_annotation_may_be_set_by_a_named_user_and_no_one_else() {
    let policy = r#"
limits: {maxReplicas: 2}
exemptions:
  annotation: policy.scaling.io/exempt
  allowedUsers: ["system:serviceaccount:platform:deployer"]
"#;
    let p = parse(policy).unwrap();
    let eff = p.resolve(&Settings::default(), "a", &BTreeMap::new());
    let i = isvc(
        "a",
        &[
            ("scaling.io/strategy", "queue"),
            ("scaling.io/max-replicas", "9"),
            ("policy.scaling.io/exempt", "true"),
        ],
        json!({}),
    );
    let input = Input {
        isvc: &i,
        old: None,
        live_deployment: None,
    };
    let by = |username| {
        Some(Requester {
            username,
            groups: &[],
        })
    };
    assert!(enforce(input, &eff, by("system:serviceaccount:platform:deployer")).is_ok());
    let e = enforce(input, &eff, by("alice")).unwrap_err().to_string();
    assert!(
        e.contains("policy.scaling.io/exempt")
            && e.contains("system:serviceaccount:platform:deployer"),
        "{e}"
    );
}
