//! The shared credential goes only where the platform said, and custom queries that carry it
//! keep to their namespace: by flags alone, by policy, and in each enforcement mode.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::json;

use super::*;
use crate::core::isvc::Isvc;
use crate::core::plan::{Input, Plan, PlanError};
use crate::core::resources::ScaleTrigger;
use crate::core::settings::{AuthRef, Settings};

const DEFAULT: &str = "http://prometheus-operated.monitoring.svc:9090";

fn isvc(ns: &str, annotations: &[(&str, &str)]) -> Isvc {
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
    Isvc::from_parts(&meta, &json!({"spec": {"predictor": {}}}), "default").unwrap()
}

/// Settings as `--trigger-auth-kind ClusterTriggerAuthentication --trigger-auth-name prom`.
fn with_flags() -> Settings {
    Settings {
        trigger_auth: Some(AuthRef {
            kind: "ClusterTriggerAuthentication".into(),
            name: "prom".into(),
            modes: "bearer".into(),
        }),
        ..Settings::default()
    }
}

fn plan(base: &Settings, policy: &str, i: &Isvc) -> Result<Plan, PlanError> {
    let p = parse(policy).unwrap();
    let eff = p.resolve(base, &i.namespace, &BTreeMap::new());
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

fn triggers(p: &Plan) -> &[ScaleTrigger] {
    &p.scaled_object.as_ref().unwrap().spec.triggers
}

/// Whether every trigger carries the credential (true) or none does (false).
fn carries(p: &Plan) -> bool {
    let t = triggers(p);
    let with: Vec<bool> = t.iter().map(|t| t.authentication_ref.is_some()).collect();
    assert!(with.iter().all(|w| *w == with[0]), "{t:?}");
    for t in t {
        assert_eq!(
            t.metadata.contains_key("authModes"),
            t.authentication_ref.is_some()
        );
    }
    with[0]
}

fn queue_at(address: &str) -> Isvc {
    isvc(
        "team-a",
        &[
            ("scaling.io/strategy", "queue"),
            ("scaling.io/prometheus-address", address),
        ],
    )
}

#[test]
fn by_flags_the_credential_goes_to_the_default_address_only() {
    let base = with_flags();
    let p = plan(
        &base,
        "",
        &isvc("team-a", &[("scaling.io/strategy", "queue")]),
    )
    .unwrap();
    assert!(carries(&p));
    // The default spelled another way is the default (annotations accept host case and
    // a port with a leading zero; core::settings tests the rest of the normalising).
    for same in [
        "http://Prometheus-Operated.Monitoring.svc:9090",
        "http://prometheus-operated.monitoring.svc:09090",
    ] {
        assert!(
            carries(&plan(&base, "", &queue_at(same)).unwrap()),
            "{same}"
        );
    }
    for other in [
        "http://anyhost",
        "http://prometheus-operated.monitoring.svc.evil.example:9090",
        "http://prometheus-operated.monitoring.svc:9091",
        "https://prometheus-operated.monitoring.svc:9090",
    ] {
        let e = plan(&base, "", &queue_at(other)).unwrap_err().to_string();
        for says in [
            "annotation scaling.io/prometheus-address",
            "ClusterTriggerAuthentication prom",
            DEFAULT,
            "remove the annotation",
            "limits.allowedPrometheusAddresses",
        ] {
            assert!(e.contains(says), "{other}: {e}");
        }
    }
    // Without a shared credential, any address is the user's business.
    let p = plan(&Settings::default(), "", &queue_at("http://anyhost")).unwrap();
    assert!(!carries(&p));
}

#[test]
fn allowed_prometheus_addresses_extend_where_the_credential_may_go() {
    let base = with_flags();
    let cluster = "limits:\n  allowedPrometheusAddresses: [http://prometheus-operated.monitoring.svc:9090, 'http://Thanos.monitoring.svc:10902']\n";
    let p = plan(
        &base,
        cluster,
        &queue_at("http://thanos.monitoring.svc:10902"),
    )
    .unwrap();
    assert!(carries(&p));
    // A rule's list narrows it where the rule applies: an address must be in every list.
    let narrowed = format!(
        "{cluster}rules:\n  - name: a\n    namespaces: [team-a]\n    limits:\n      allowedPrometheusAddresses: [{DEFAULT}]\n"
    );
    let e = plan(
        &base,
        &narrowed,
        &queue_at("http://thanos.monitoring.svc:10902"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("allowedPrometheusAddresses"), "{e}");
    // A rule's default address is the default there, and may receive it.
    let rule_default = "rules:\n  - name: a\n    namespaces: [team-a]\n    defaults: {prometheusAddress: 'http://team-prom:9090'}\n";
    let p = plan(
        &base,
        rule_default,
        &isvc("team-a", &[("scaling.io/strategy", "queue")]),
    )
    .unwrap();
    assert!(carries(&p));
    assert_eq!(
        triggers(&p)[0].metadata["serverAddress"],
        "http://team-prom:9090"
    );
    assert!(plan(&base, rule_default, &queue_at(DEFAULT)).is_err());
}

/// warn and audit admit the object, and the credential still never goes.
#[test]
fn in_warn_and_audit_the_object_is_admitted_without_the_credential() {
    let base = with_flags();
    for mode in ["warn", "audit"] {
        let policy = format!("enforcement: {mode}\n");
        let p = plan(&base, &policy, &queue_at("http://anyhost")).unwrap();
        assert!(!carries(&p), "{mode}");
        assert!(
            p.warnings
                .iter()
                .any(|w| w.contains("without the platform's credentials")),
            "{mode}: {:?}",
            p.warnings
        );
        assert!(carries(&plan(&base, &policy, &queue_at(DEFAULT)).unwrap()));
    }
    // A credential a rule sets follows the rule's mode, not the cluster's.
    let rule_warn = "rules:\n  - name: a\n    enforcement: warn\n    defaults: {triggerAuthentication: {kind: TriggerAuthentication, name: team}}\n";
    let p = plan(&Settings::default(), rule_warn, &queue_at("http://anyhost")).unwrap();
    assert!(!carries(&p));
    let rule_enforce = "enforcement: warn\nrules:\n  - name: a\n    defaults: {triggerAuthentication: {kind: TriggerAuthentication, name: team}}\n";
    let e = plan(
        &Settings::default(),
        rule_enforce,
        &queue_at("http://anyhost"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("TriggerAuthentication team"), "{e}");
    // The cluster's mode governs a credential from flags, whatever a rule's mode is.
    let cluster_enforce =
        "rules:\n  - name: a\n    enforcement: warn\n    limits: {maxReplicas: 9}\n";
    assert!(plan(&base, cluster_enforce, &queue_at("http://anyhost")).is_err());
}

fn custom(ns: &str, query: &str) -> Isvc {
    isvc(
        ns,
        &[
            ("scaling.io/strategy", "custom,queue"),
            ("scaling.io/query", query),
            ("scaling.io/target-custom", "5"),
        ],
    )
}

const UNSCOPED: &str = "sum(rate(http_requests_total[1m]))";
const OTHER: &str = r#"sum(rate(http_requests_total{namespace="team-b"}[1m]))"#;
const SCOPED: &str = r#"sum(rate(http_requests_total{namespace="team-a"}[1m]))"#;

#[test]
fn with_a_shared_credential_custom_queries_keep_to_their_namespace_by_default() {
    let base = with_flags();
    for q in [UNSCOPED, OTHER] {
        let e = plan(&base, "", &custom("team-a", q))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("annotation scaling.io/query") && e.contains(r#"namespace="team-a""#),
            "{e}"
        );
    }
    assert!(carries(
        &plan(&base, "", &custom("team-a", SCOPED)).unwrap()
    ));
    // Without a shared credential there is nothing to leak.
    assert!(plan(&Settings::default(), "", &custom("team-a", UNSCOPED)).is_ok());
    // The platform may opt out, cluster-wide or in a rule.
    let any = "limits: {customQueryNamespace: any}\n";
    assert!(carries(
        &plan(&base, any, &custom("team-a", OTHER)).unwrap()
    ));
    let rule_any = "rules:\n  - name: monitoring\n    namespaces: [team-a]\n    limits: {customQueryNamespace: any}\n";
    assert!(carries(
        &plan(&base, rule_any, &custom("team-a", OTHER)).unwrap()
    ));
    assert!(plan(&base, rule_any, &custom("team-c", OTHER)).is_err());
    // The tightest wins: a rule cannot undo a cluster-wide `own`.
    let own_any = format!("limits: {{customQueryNamespace: own}}\n{rule_any}");
    assert!(plan(&base, &own_any, &custom("team-a", OTHER)).is_err());
}

#[test]
fn in_warn_mode_only_the_custom_trigger_loses_the_credential() {
    let p = plan(
        &with_flags(),
        "enforcement: warn\n",
        &custom("team-a", OTHER),
    )
    .unwrap();
    let t = triggers(&p);
    assert_eq!(t[0].name, "custom");
    assert!(t[0].authentication_ref.is_none() && !t[0].metadata.contains_key("authModes"));
    assert!(t[1].authentication_ref.is_some(), "{t:?}");
    assert!(
        p.warnings
            .iter()
            .any(|w| w.contains("scaling.io/query") && w.contains("team-b")),
        "{:?}",
        p.warnings
    );
}

/// `customQueryNamespace: own` set explicitly is a limit like the others: checked without a
/// credential too, in its rule's mode.
#[test]
fn an_explicit_own_is_a_limit_in_its_mode() {
    let base = Settings::default();
    let rule = |mode: &str| {
        format!(
            "rules:\n  - name: tenants\n    enforcement: {mode}\n    limits: {{customQueryNamespace: own}}\n"
        )
    };
    let e = plan(&base, &rule("enforce"), &custom("team-a", OTHER))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("rule 'tenants'") && e.contains("may read only namespace 'team-a'"),
        "{e}"
    );
    assert!(plan(&base, &rule("enforce"), &custom("team-a", SCOPED)).is_ok());
    let p = plan(&base, &rule("warn"), &custom("team-a", UNSCOPED)).unwrap();
    assert!(
        p.warnings
            .iter()
            .any(|w| w.starts_with(WARN_PREFIX) && w.contains("team-a")),
        "{:?}",
        p.warnings
    );
}

#[test]
fn the_address_limit_compares_normalised_addresses() {
    let policy = "limits:\n  allowedPrometheusAddresses: ['http://prom:80']\n";
    assert!(plan(&Settings::default(), policy, &queue_at("http://Prom")).is_ok());
    assert!(plan(&Settings::default(), policy, &queue_at("http://prom:8080")).is_err());
    // And in the file's own check, a default that is spelled otherwise is the allowed one.
    assert!(
        parse("defaults: {prometheusAddress: 'http://Prom'}\nlimits: {allowedPrometheusAddresses: ['http://prom:80']}\n")
            .is_ok()
    );
}
