//! The controller end to end: the real `controller::run` (leader election, kube-runtime
//! Controller, watches, server-side apply, events) against the in-memory API server in
//! `support`. Every scenario waits for the cluster to converge and then checks the exact set
//! of generated objects.

mod admission_review;
mod fake_api;
mod hostile_query;
mod wait;

use std::sync::Arc;
use std::time::{Duration, Instant};

use fake_api::{
    DEPLOYMENT, EVENT, Effect, FakeApi, Fault, ISVC, LEASE, POD_MONITOR, PROMETHEUS_RULE,
    SCALED_OBJECT, SERVICE_MONITOR, Verb,
};
use kserve_keda_webhook::controller::{self, ControllerOptions};
use kserve_keda_webhook::core::settings::Settings;
use kserve_keda_webhook::metrics::Metrics;
use kserve_keda_webhook::scaling::Scaling;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use wait::eventually;

const NS: &str = "ml";

struct Replica {
    task: JoinHandle<()>,
    ready: watch::Receiver<bool>,
    registry: Arc<Registry>,
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn options(identity: &str) -> ControllerOptions {
    let mut o = ControllerOptions::new("kserve-keda-webhook", identity);
    o.lease_duration = Duration::from_secs(1);
    o.renew_interval = Duration::from_millis(200);
    o.resync = Duration::from_secs(2);
    o.retry_base = Duration::from_millis(50);
    o.retry_max = Duration::from_millis(400);
    o.reconcile_timeout = Duration::from_millis(700);
    o
}

fn start(api: &FakeApi, tag: &'static str) -> Replica {
    start_with(api, tag, options(tag))
}

fn start_with(api: &FakeApi, tag: &'static str, opts: ControllerOptions) -> Replica {
    start_scaling(api, tag, opts, Scaling::from(Settings::default()))
}

fn start_scaling(
    api: &FakeApi,
    tag: &'static str,
    opts: ControllerOptions,
    scaling: Scaling,
) -> Replica {
    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    let (ready_tx, ready) = watch::channel(false);
    let client = api.client_as(tag);
    let task = tokio::spawn(async move {
        let r = controller::run(client, Arc::new(scaling), opts, metrics, ready_tx).await;
        assert!(r.is_ok(), "{r:?}");
    });
    Replica {
        task,
        ready,
        registry: Arc::new(registry),
    }
}

fn stored_isvc(name: &str, extra: Value) -> Value {
    let mut annotations = json!({
        "serving.kserve.io/deploymentMode": "RawDeployment",
        "serving.kserve.io/autoscalerClass": "external",
        "scaling.io/strategy": "concurrency",
    });
    for (k, v) in extra.as_object().into_iter().flatten() {
        annotations[k] = v.clone();
    }
    json!({
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"predictor": {"model": {"modelFormat": {"name": "huggingface"}}}},
        "status": {"deploymentMode": "RawDeployment"},
    })
}

fn deployment(isvc: &str, name: &str) -> Value {
    json!({
        "metadata": {"name": name, "labels": {
            "serving.kserve.io/inferenceservice": isvc,
            "component": "predictor",
        }},
        "spec": {"replicas": 1},
    })
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or_default()
}

/// The controller's record of the InferenceService generation it planned from, on the
/// ScaledObject `so`.
fn observed(api: &FakeApi, so: &str) -> Option<String> {
    api.get(SCALED_OBJECT, NS, so)?
        .pointer("/metadata/annotations")?
        .get("scaling.io/observed-generation")?
        .as_str()
        .map(str::to_string)
}

fn annotation(api: &FakeApi, name: &str, key: &str) -> Option<String> {
    api.get(ISVC, NS, name)?
        .pointer("/metadata/annotations")?
        .get(key)?
        .as_str()
        .map(str::to_string)
}

fn events(api: &FakeApi, name: &str, reason: &str) -> Vec<Value> {
    api.list(EVENT, NS)
        .into_iter()
        .filter(|e| str_at(e, "/regarding/name") == name && str_at(e, "/reason") == reason)
        .collect()
}

fn names(api: &FakeApi, res: fake_api::Res) -> Vec<String> {
    let mut v: Vec<String> = api
        .list(res, NS)
        .iter()
        .map(|o| str_at(o, "/metadata/name").to_string())
        .collect();
    v.sort();
    v
}

/// Checks that `obj` is generated for the InferenceService `owner` as the controller does it.
fn assert_generated(obj: &Value, owner: &Value) {
    let refs = obj["metadata"]["ownerReferences"].as_array().unwrap();
    assert_eq!(refs.len(), 1, "{obj}");
    assert_eq!(refs[0]["uid"], owner["metadata"]["uid"]);
    assert_eq!(refs[0]["kind"], "InferenceService");
    assert_eq!(refs[0]["controller"], true);
    assert_eq!(refs[0]["blockOwnerDeletion"], true);
    let labels = &obj["metadata"]["labels"];
    assert_eq!(
        labels["app.kubernetes.io/managed-by"],
        "kserve-keda-webhook"
    );
    assert_eq!(
        labels["serving.kserve.io/inferenceservice"],
        owner["metadata"]["name"]
    );
    let hash = str_at(obj, "/metadata/annotations/scaling.io~1inputs-hash");
    assert_eq!(hash.len(), 32, "{obj}");
}

async fn converged_on(api: &FakeApi, name: &str) -> (Value, Value) {
    eventually("ScaledObject and ServiceMonitor", || {
        api.get(SCALED_OBJECT, NS, &format!("{name}-predictor"))
            .is_some()
            && api
                .get(SERVICE_MONITOR, NS, &format!("{name}-predictor"))
                .is_some()
            && observed(api, &format!("{name}-predictor")).is_some()
    })
    .await;
    (
        api.get(SCALED_OBJECT, NS, &format!("{name}-predictor"))
            .unwrap(),
        api.get(SERVICE_MONITOR, NS, &format!("{name}-predictor"))
            .unwrap(),
    )
}

#[tokio::test]
async fn an_annotated_isvc_gets_an_owned_scaled_object_and_service_monitor() {
    let api = FakeApi::new();
    let replica = start(&api, "a");
    let owner = api.create(ISVC, NS, stored_isvc("m", json!({})));
    let (so, sm) = converged_on(&api, "m").await;

    assert_generated(&so, &owner);
    assert_generated(&sm, &owner);
    assert_eq!(str_at(&so, "/spec/scaleTargetRef/name"), "m-predictor");
    assert_eq!(str_at(&so, "/spec/triggers/0/name"), "concurrency");
    assert_eq!(names(&api, SCALED_OBJECT), ["m-predictor"]);
    assert_eq!(names(&api, POD_MONITOR), Vec::<String>::new());
    assert_eq!(observed(&api, "m-predictor").as_deref(), Some("1"));
    // Never on the InferenceService: KServe copies its annotations into the pod template,
    // so a record there would restart the model servers.
    assert_eq!(
        annotation(&api, "m", "scaling.io/observed-generation"),
        None
    );
    // Admission's records, so a later removal of the strategy is undone by the planner.
    assert_eq!(
        annotation(&api, "m", "scaling.io/scaled-object").as_deref(),
        Some("m-predictor")
    );
    let applies: Vec<_> = api
        .seen()
        .into_iter()
        .filter(|s| s.verb == Verb::Patch && s.plural == "scaledobjects")
        .collect();
    assert!(!applies.is_empty());
    assert!(
        applies
            .iter()
            .all(|s| s.field_manager.as_deref() == Some("kserve-keda-webhook"))
    );
    eventually("ScalingConfigured event", || {
        !events(&api, "m", "ScalingConfigured").is_empty()
    })
    .await;
    eventually("ready", || *replica.ready.borrow()).await;
    let metrics = kserve_keda_webhook::metrics::encode(&replica.registry);
    assert!(
        metrics.contains("kserve_keda_webhook_managed_objects{kind=\"ScaledObject\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("kserve_keda_webhook_reconciles_total{result=\"success\"}"),
        "{metrics}"
    );

    // A resync that finds everything as planned writes nothing.
    let rv = str_at(&so, "/metadata/resourceVersion").to_string();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let again = api.get(SCALED_OBJECT, NS, "m-predictor").unwrap();
    assert_eq!(str_at(&again, "/metadata/resourceVersion"), rv);
    assert_eq!(events(&api, "m", "ScalingConfigured").len(), 1);
}

#[tokio::test]
async fn spec_changes_update_switch_and_finally_remove_generated_objects() {
    let api = FakeApi::new();
    let _replica = start(&api, "a");
    api.create(ISVC, NS, stored_isvc("m", json!({})));
    let (so, _) = converged_on(&api, "m").await;
    let first_hash = str_at(&so, "/metadata/annotations/scaling.io~1inputs-hash").to_string();

    api.edit(ISVC, NS, "m", |o| {
        o["metadata"]["annotations"]["scaling.io/strategy"] = json!("queue");
    });
    eventually("ScaledObject follows the new strategy", || {
        api.get(SCALED_OBJECT, NS, "m-predictor")
            .is_some_and(|so| str_at(&so, "/spec/triggers/0/name") == "queue")
    })
    .await;
    let so = api.get(SCALED_OBJECT, NS, "m-predictor").unwrap();
    assert_ne!(
        str_at(&so, "/metadata/annotations/scaling.io~1inputs-hash"),
        first_hash
    );
    // The applied body replaces the old trigger list instead of merging into it.
    assert_eq!(so["spec"]["triggers"].as_array().unwrap().len(), 1);

    api.edit(ISVC, NS, "m", |o| {
        o["metadata"]["annotations"]["scaling.io/monitor"] = json!("podmonitor");
    });
    eventually("PodMonitor replaces ServiceMonitor", || {
        names(&api, POD_MONITOR) == ["m-predictor"] && names(&api, SERVICE_MONITOR).is_empty()
    })
    .await;
    let owner = api.get(ISVC, NS, "m").unwrap();
    assert_generated(&api.get(POD_MONITOR, NS, "m-predictor").unwrap(), &owner);
    // The PrometheusRule lives beside the monitor, owned the same way.
    assert_generated(
        &api.get(PROMETHEUS_RULE, NS, "m-predictor").unwrap(),
        &owner,
    );

    api.edit(ISVC, NS, "m", |o| {
        let a = o["metadata"]["annotations"].as_object_mut().unwrap();
        a.remove("scaling.io/strategy");
        a.remove("scaling.io/monitor");
    });
    eventually("everything generated is deleted", || {
        names(&api, SCALED_OBJECT).is_empty()
            && names(&api, POD_MONITOR).is_empty()
            && names(&api, SERVICE_MONITOR).is_empty()
            && names(&api, PROMETHEUS_RULE).is_empty()
    })
    .await;
    // The planner's undo: KServe's own autoscaler takes over again.
    eventually("autoscalerClass reset", || {
        annotation(&api, "m", "serving.kserve.io/autoscalerClass").is_none()
    })
    .await;
}

#[tokio::test]
async fn a_persons_object_with_the_planned_name_is_never_touched() {
    let api = FakeApi::new();
    let _replica = start(&api, "a");
    let mine = api.create(
        SCALED_OBJECT,
        NS,
        json!({"metadata": {"name": "m-predictor"}, "spec": {"note": "hand-made"}}),
    );
    api.create(ISVC, NS, stored_isvc("m", json!({})));
    eventually("NameConflict warning", || {
        !events(&api, "m", "NameConflict").is_empty()
    })
    .await;
    eventually("monitor still applied", || {
        names(&api, SERVICE_MONITOR) == ["m-predictor"]
    })
    .await;
    let event = &events(&api, "m", "NameConflict")[0];
    assert_eq!(event["type"], "Warning");
    assert!(str_at(event, "/note").contains("ScaledObject ml/m-predictor"));

    // Removing the strategy cleans up what was generated, never the person's object.
    api.edit(ISVC, NS, "m", |o| {
        o["metadata"]["annotations"]
            .as_object_mut()
            .unwrap()
            .remove("scaling.io/strategy");
    });
    eventually("monitor deleted", || {
        names(&api, SERVICE_MONITOR).is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(api.get(SCALED_OBJECT, NS, "m-predictor").unwrap(), mine);
    let writes = api
        .seen()
        .into_iter()
        .filter(|s| s.plural == "scaledobjects" && matches!(s.verb, Verb::Patch | Verb::Delete))
        .count();
    assert_eq!(writes, 0);
}

#[tokio::test]
async fn hand_deleted_and_hand_edited_objects_come_back_as_planned() {
    let api = FakeApi::new();
    let _replica = start(&api, "a");
    api.create(ISVC, NS, stored_isvc("m", json!({})));
    let (so, sm) = converged_on(&api, "m").await;

    api.delete(SERVICE_MONITOR, NS, "m-predictor");
    eventually("ServiceMonitor recreated", || {
        api.get(SERVICE_MONITOR, NS, "m-predictor")
            .is_some_and(|m| m["spec"] == sm["spec"])
    })
    .await;

    api.edit(SCALED_OBJECT, NS, "m-predictor", |o| {
        o["spec"]["maxReplicaCount"] = json!(99);
        o["spec"]["scaleTargetRef"]["name"] = json!("elsewhere");
    });
    eventually("ScaledObject restored", || {
        api.get(SCALED_OBJECT, NS, "m-predictor")
            .is_some_and(|o| o["spec"] == so["spec"])
    })
    .await;
}

#[tokio::test]
async fn a_deployment_with_an_older_name_retargets_the_scaled_object() {
    let api = FakeApi::new();
    let _replica = start(&api, "a");
    api.create(ISVC, NS, stored_isvc("m", json!({})));
    converged_on(&api, "m").await;
    // KServe <= 0.10 names, plus a multi-node worker that must never be the target.
    api.create(DEPLOYMENT, NS, deployment("m", "m-predictor-worker"));
    api.create(DEPLOYMENT, NS, deployment("m", "m-predictor-default"));
    eventually("ScaledObject follows the live Deployment", || {
        names(&api, SCALED_OBJECT) == ["m-predictor-default"]
    })
    .await;
    let so = api.get(SCALED_OBJECT, NS, "m-predictor-default").unwrap();
    assert_eq!(
        str_at(&so, "/spec/scaleTargetRef/name"),
        "m-predictor-default"
    );
    assert_generated(&so, &api.get(ISVC, NS, "m").unwrap());
    eventually("monitor renamed too", || {
        names(&api, SERVICE_MONITOR) == ["m-predictor-default"]
    })
    .await;
}

#[tokio::test]
async fn api_errors_are_retried_with_backoff_until_converged() {
    let api = FakeApi::new();
    for (effect, times) in [
        (Effect::Status(500), 3),
        (Effect::Status(409), 2),
        (Effect::Hang(Duration::from_secs(2)), 1),
    ] {
        api.fail(Fault {
            tag: None,
            verb: Verb::Patch,
            plural: "scaledobjects",
            times,
            effect,
        });
    }
    api.fail(Fault {
        tag: None,
        verb: Verb::Get,
        plural: "servicemonitors",
        times: 2,
        effect: Effect::Status(500),
    });
    let _replica = start(&api, "a");
    let owner = api.create(ISVC, NS, stored_isvc("m", json!({})));
    let (so, _) = converged_on(&api, "m").await;
    assert_generated(&so, &owner);

    let patches: Vec<Instant> = api
        .seen()
        .into_iter()
        .filter(|s| s.verb == Verb::Patch && s.plural == "scaledobjects")
        .map(|s| s.at)
        .collect();
    assert!(patches.len() >= 7, "{} applies", patches.len());
    // Retries are spaced by a doubling delay up to the cap (400 ms here), not fired back to
    // back. The first gap is skipped: the controller's own annotation patch is a watch event
    // that legitimately triggers an immediate reconcile.
    let gaps: Vec<Duration> = patches.windows(2).map(|w| w[1] - w[0]).collect();
    let ms = |d: &Duration| d.as_millis();
    assert!(ms(&gaps[1]) >= 90, "{gaps:?}");
    assert!(ms(&gaps[2]) >= 190 && ms(&gaps[3]) >= 390, "{gaps:?}");
    assert!(gaps.iter().all(|g| ms(g) < 400 + 700 + 300), "{gaps:?}");
    eventually("failure reported", || {
        !events(&api, "m", "ReconcileFailed").is_empty()
    })
    .await;
}

#[tokio::test]
async fn a_knative_isvc_gets_a_warning_and_nothing_is_applied() {
    let api = FakeApi::new();
    let _replica = start(&api, "a");
    let mut obj = stored_isvc("k", json!({}));
    let a = obj["metadata"]["annotations"].as_object_mut().unwrap();
    a.remove("serving.kserve.io/deploymentMode");
    a.remove("serving.kserve.io/autoscalerClass");
    obj["status"]["deploymentMode"] = json!("Serverless");
    api.create(ISVC, NS, obj);
    eventually("frozen-mode warning", || {
        !events(&api, "k", "InvalidScalingRequest").is_empty()
    })
    .await;
    let ev = &events(&api, "k", "InvalidScalingRequest")[0];
    assert!(str_at(ev, "/note").contains("recreate"), "{ev}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(names(&api, SCALED_OBJECT).is_empty());
    assert!(names(&api, SERVICE_MONITOR).is_empty());
    let isvc_writes = api
        .seen()
        .into_iter()
        .filter(|s| s.plural == "inferenceservices" && s.verb == Verb::Patch)
        .count();
    assert_eq!(isvc_writes, 0);
    // A permanent error is not retried on a timer.
    assert_eq!(events(&api, "k", "InvalidScalingRequest").len(), 1);
}

#[tokio::test]
async fn a_pre_existing_raw_isvc_gets_autoscaler_class_external_and_is_configured() {
    let api = FakeApi::new();
    let mut obj = stored_isvc("old", json!({}));
    let a = obj["metadata"]["annotations"].as_object_mut().unwrap();
    a.remove("serving.kserve.io/deploymentMode");
    a.remove("serving.kserve.io/autoscalerClass");
    let owner = api.create(ISVC, NS, obj);
    let _replica = start(&api, "a");
    let (so, _) = converged_on(&api, "old").await;
    assert_generated(&so, &owner);
    assert_eq!(
        annotation(&api, "old", "serving.kserve.io/autoscalerClass").as_deref(),
        Some("external")
    );
    // The frozen mode is never written: KServe would read it as a mode change.
    assert_eq!(
        annotation(&api, "old", "serving.kserve.io/deploymentMode"),
        None
    );
}

#[tokio::test]
async fn deleting_the_isvc_takes_the_generated_objects_along() {
    let api = FakeApi::new();
    let _replica = start(&api, "a");
    api.create(ISVC, NS, stored_isvc("m", json!({})));
    api.create(
        SCALED_OBJECT,
        NS,
        json!({"metadata": {"name": "unrelated"}, "spec": {}}),
    );
    converged_on(&api, "m").await;
    api.delete(ISVC, NS, "m");
    eventually("dependents collected", || {
        names(&api, SERVICE_MONITOR).is_empty() && names(&api, SCALED_OBJECT) == ["unrelated"]
    })
    .await;
}

#[tokio::test]
async fn without_monitor_apis_the_scaled_object_is_still_applied_and_warned_once() {
    let api = FakeApi::new();
    api.unserve(SERVICE_MONITOR);
    api.unserve(POD_MONITOR);
    let _replica = start(&api, "a");
    api.create(ISVC, NS, stored_isvc("m", json!({})));
    eventually("ScaledObject applied", || {
        names(&api, SCALED_OBJECT) == ["m-predictor"] && observed(&api, "m-predictor").is_some()
    })
    .await;
    // Several resyncs later there is still one warning.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let warned = events(&api, "m", "MonitorApiMissing");
    assert_eq!(warned.len(), 1);
    assert!(
        warned[0].get("series").is_none_or(Value::is_null),
        "{}",
        warned[0]
    );
}

fn set_ready(api: &FakeApi, so: &str, status: &str, reason: &str, message: &str) {
    api.edit(SCALED_OBJECT, NS, so, |o| {
        o["status"] = json!({"conditions": [
            {"type": "Ready", "status": status, "reason": reason, "message": message},
            {"type": "Active", "status": "False"},
        ]});
    });
}

#[tokio::test]
async fn kedas_not_ready_verdict_reaches_the_isvc_once_while_keda_flaps() {
    let api = FakeApi::new();
    let _replica = start(&api, "a");
    api.create(ISVC, NS, stored_isvc("m", json!({})));
    converged_on(&api, "m").await;
    assert!(events(&api, "m", "ScaledObjectNotReady").is_empty());

    set_ready(
        &api,
        "m-predictor",
        "False",
        "TriggerError",
        "dial tcp: connection refused",
    );
    eventually("the verdict on the InferenceService", || {
        events(&api, "m", "ScaledObjectNotReady").len() == 1
    })
    .await;
    let note = str_at(&events(&api, "m", "ScaledObjectNotReady")[0], "/note").to_string();
    assert!(
        note.contains("(TriggerError): dial tcp: connection refused"),
        "{note}"
    );
    assert_eq!(
        str_at(&events(&api, "m", "ScaledObjectNotReady")[0], "/type"),
        "Warning"
    );

    // While a trigger fails KEDA flips Ready back to True at each of its reconciles and to
    // False at its next poll: the same failure is not reported again.
    for _ in 0..3 {
        set_ready(&api, "m-predictor", "True", "ScaledObjectReady", "ok");
        tokio::time::sleep(Duration::from_millis(300)).await;
        set_ready(
            &api,
            "m-predictor",
            "False",
            "TriggerError",
            "dial tcp: connection refused",
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    api.edit(ISVC, NS, "m", |o| {
        o["metadata"]["labels"] = json!({"touched": "1"});
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(occurrences(&events(&api, "m", "ScaledObjectNotReady")), 1);

    // Another failure is news, and its own words reach the InferenceService (not a count on
    // the first Event, which would still show the first failure).
    set_ready(&api, "m-predictor", "False", "TriggerError", "no such host");
    eventually("the other failure", || {
        occurrences(&events(&api, "m", "ScaledObjectNotReady")) == 2
    })
    .await;
    let notes: Vec<String> = events(&api, "m", "ScaledObjectNotReady")
        .iter()
        .map(|e| str_at(e, "/note").to_string())
        .collect();
    assert!(
        notes
            .iter()
            .any(|n| n.contains("(TriggerError): no such host")),
        "{notes:?}"
    );
}

fn occurrences(events: &[Value]) -> u64 {
    events
        .iter()
        .map(|e| {
            e.pointer("/series/count")
                .and_then(Value::as_u64)
                .unwrap_or(1)
        })
        .sum()
}

#[tokio::test]
async fn plan_warnings_become_events_only_when_they_change() {
    let api = FakeApi::new();
    let _replica = start(&api, "a");
    let mut obj = stored_isvc("w", json!({}));
    obj["spec"]["predictor"]["model"]["args"] = json!(["--disable-log-stats"]);
    api.create(ISVC, NS, obj);
    converged_on(&api, "w").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let warned = events(&api, "w", "ScalingWarning");
    assert_eq!(warned.len(), 1);
    assert!(str_at(&warned[0], "/note").contains("--disable-log-stats"));
    assert!(warned[0].get("series").is_none_or(Value::is_null));
}

#[tokio::test]
async fn only_the_lease_holder_reconciles_and_a_follower_takes_over_after_expiry() {
    let api = FakeApi::new();
    let a = start(&api, "a");
    eventually("a leads", || {
        api.get(LEASE, "kserve-keda-webhook", "kserve-keda-webhook")
            .is_some_and(|l| l["spec"]["holderIdentity"] == "a")
    })
    .await;
    let b = start(&api, "b");
    eventually("both ready", || *a.ready.borrow() && *b.ready.borrow()).await;

    api.create(ISVC, NS, stored_isvc("m", json!({})));
    converged_on(&api, "m").await;
    let writers = |plural: &str| -> Vec<&'static str> {
        let mut w: Vec<_> = api
            .seen()
            .into_iter()
            .filter(|s| {
                s.plural == plural
                    && s.verb != Verb::Get
                    && s.verb != Verb::List
                    && s.verb != Verb::Watch
            })
            .map(|s| s.tag)
            .collect();
        w.dedup();
        w
    };
    assert_eq!(writers("scaledobjects"), ["a"]);
    assert!(
        !api.seen()
            .iter()
            .any(|s| s.tag == "b" && s.plural == "inferenceservices"),
        "a follower does not even watch"
    );

    // a can no longer reach the Lease: it must stop before b may start.
    api.fail(Fault {
        tag: Some("a"),
        verb: Verb::Get,
        plural: "leases",
        times: usize::MAX,
        effect: Effect::Status(500),
    });
    let cut = Instant::now();
    eventually("b takes over", || {
        api.get(LEASE, "kserve-keda-webhook", "kserve-keda-webhook")
            .is_some_and(|l| l["spec"]["holderIdentity"] == "b")
    })
    .await;
    let took = cut.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "took over after {took:?}"
    );
    let lease = api
        .get(LEASE, "kserve-keda-webhook", "kserve-keda-webhook")
        .unwrap();
    assert_eq!(lease["spec"]["leaseTransitions"], 1);

    api.create(ISVC, NS, stored_isvc("n", json!({})));
    converged_on(&api, "n").await;
    let takeover = cut + took;
    let late_a_writes = api
        .seen()
        .into_iter()
        .filter(|s| s.tag == "a" && s.at > takeover && s.plural != "leases")
        .count();
    assert_eq!(late_a_writes, 0, "a kept working after losing the Lease");
    assert!(
        api.seen()
            .iter()
            .any(|s| s.tag == "b" && s.plural == "scaledobjects" && s.verb == Verb::Patch)
    );
}

/// A lease long enough that a short API outage does not cost the leadership, so what is
/// tested is the watches' recovery rather than a new leadership term.
fn outage_proof(tag: &str) -> ControllerOptions {
    let mut o = options(tag);
    o.lease_duration = Duration::from_secs(15);
    o.renew_interval = Duration::from_secs(1);
    o
}

fn trigger_names(api: &FakeApi, name: &str) -> Vec<String> {
    api.get(SCALED_OBJECT, NS, name)
        .and_then(|so| {
            so["spec"]["triggers"]
                .as_array()
                .map(|ts| ts.iter().map(|t| str_at(t, "/name").to_string()).collect())
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn after_an_api_server_restart_changes_made_during_the_outage_are_applied() {
    let api = FakeApi::new();
    let replica = start_with(&api, "a", outage_proof("a"));
    api.create(ISVC, NS, stored_isvc("m", json!({})));
    converged_on(&api, "m").await;

    api.restart(Duration::from_secs(2));
    let outage_end = Instant::now() + Duration::from_secs(2);
    api.edit(ISVC, NS, "m", |o| {
        o["metadata"]["annotations"]["scaling.io/strategy"] = json!("queue");
    });
    api.create(ISVC, NS, stored_isvc("n", json!({})));
    eventually("the controller tried while the server was down", || {
        api.refused() > 0
    })
    .await;
    assert_eq!(trigger_names(&api, "m-predictor"), ["concurrency"]);

    eventually("the change made during the outage is applied", || {
        trigger_names(&api, "m-predictor") == ["queue"]
    })
    .await;
    converged_on(&api, "n").await;
    assert!(Instant::now() >= outage_end);
    assert!(
        !replica.task.is_finished(),
        "the controller is still running"
    );
    let lease = api
        .get(LEASE, "kserve-keda-webhook", "kserve-keda-webhook")
        .unwrap();
    assert_eq!(
        lease["spec"]["leaseTransitions"], 0,
        "no new leadership term"
    );
}

#[tokio::test]
async fn an_expired_watch_relists_and_converges() {
    let api = FakeApi::new();
    let replica = start_with(&api, "a", outage_proof("a"));
    api.create(ISVC, NS, stored_isvc("m", json!({})));
    api.create(ISVC, NS, stored_isvc("gone", json!({})));
    converged_on(&api, "m").await;
    converged_on(&api, "gone").await;

    // The connections drop, and by the time the watch on InferenceServices resumes, its
    // watch cache has rolled past the controller's resourceVersion: 410 Gone, so it must list
    // again to see what happened meanwhile. The short outage keeps the watch from resuming
    // before the changes below are made and compacted away (else it would simply see them).
    api.restart(Duration::from_secs(1));
    // Wait until the old watch is gone (its reconnect was refused), so it cannot deliver the
    // changes below before noticing the restart.
    eventually("the controller's watch was cut off", || api.refused() > 0).await;
    api.edit(ISVC, NS, "m", |o| {
        o["metadata"]["annotations"]["scaling.io/monitor"] = json!("podmonitor");
    });
    api.create(ISVC, NS, stored_isvc("n", json!({})));
    // Removing the strategy leaves the generated objects for the controller to delete.
    api.edit(ISVC, NS, "gone", |o| {
        o["metadata"]["annotations"]
            .as_object_mut()
            .unwrap()
            .remove("scaling.io/strategy");
    });
    api.compact(ISVC);
    let compacted_at = Instant::now();

    eventually("watches were told their resourceVersion expired", || {
        api.expired_watches() > 0
    })
    .await;
    eventually("everything done during the outage is reconciled", || {
        names(&api, POD_MONITOR) == ["m-predictor"]
            && names(&api, SERVICE_MONITOR) == ["n-predictor"]
            && names(&api, SCALED_OBJECT) == ["m-predictor", "n-predictor"]
    })
    .await;
    let relisted = api
        .seen()
        .into_iter()
        .any(|s| s.verb == Verb::List && s.plural == "inferenceservices" && s.at > compacted_at);
    assert!(
        relisted,
        "the InferenceServices were listed again after the 410"
    );
    assert!(
        !replica.task.is_finished(),
        "the controller is still running"
    );
    // And it keeps following changes with its new watches.
    api.edit(ISVC, NS, "n", |o| {
        o["metadata"]["annotations"]["scaling.io/strategy"] = json!("kv-cache");
    });
    eventually("a change after recovery is applied", || {
        trigger_names(&api, "n-predictor") == ["kv-cache"]
    })
    .await;
}

#[tokio::test]
async fn the_policy_of_the_namespace_shapes_what_is_applied_and_audits_become_events() {
    let api = FakeApi::new();
    let policy = kserve_keda_webhook::policy::parse(&format!(
        "rules:\n  - name: ns-defaults\n    namespaces: [{NS}]\n    enforcement: audit\n    defaults: {{prometheusAddress: 'http://team-prom:9090', maxReplicas: 3}}\n    limits: {{allowedStrategies: [concurrency]}}\n"
    ))
    .unwrap();
    let scaling = Scaling::new(
        Settings::default(),
        policy,
        Arc::new(|_: &str| std::collections::BTreeMap::new()),
    );
    let _replica = start_scaling(&api, "a", options("a"), scaling);
    api.create(
        ISVC,
        NS,
        stored_isvc("m", json!({"scaling.io/strategy": "tokens"})),
    );
    let (so, _) = converged_on(&api, "m").await;
    assert_eq!(so["spec"]["maxReplicaCount"], 3, "the rule's default");
    assert_eq!(
        so["spec"]["triggers"][0]["metadata"]["serverAddress"],
        "http://team-prom:9090"
    );
    // The request uses tokens, outside the allowed list: audit mode applies it anyway and
    // records the finding on the object.
    eventually("a PolicyAudit event", || {
        !events(&api, "m", "PolicyAudit").is_empty()
    })
    .await;
    let note = str_at(&events(&api, "m", "PolicyAudit")[0], "/note").to_string();
    assert!(
        note.contains("rule 'ns-defaults'") && note.contains("strategy tokens is not allowed"),
        "{note}"
    );
}

fn owner_ref(owner: &Value, controller: bool) -> Value {
    json!({
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": controller,
        "blockOwnerDeletion": true,
    })
}

/// Labels the controller lists by, so only ownership can tell these objects apart.
fn our_labels(isvc: &str) -> Value {
    json!({
        "app.kubernetes.io/managed-by": "kserve-keda-webhook",
        "serving.kserve.io/inferenceservice": isvc,
    })
}

fn writes_to(api: &FakeApi, plural: &str, name: &str) -> usize {
    api.seen()
        .iter()
        .filter(|s| {
            s.plural == plural
                && s.name == name
                && matches!(s.verb, Verb::Patch | Verb::Update | Verb::Delete)
        })
        .count()
}

#[tokio::test]
async fn labelled_objects_that_are_not_ours_are_never_deleted_or_overwritten() {
    let api = FakeApi::new();
    let other = api.create(ISVC, "elsewhere", stored_isvc("other", json!({})));
    let owner = api.create(ISVC, NS, stored_isvc("m", json!({})));
    // A copy of another InferenceService's ScaledObject, with the planned name.
    let copy = api.create(
        SCALED_OBJECT,
        NS,
        json!({"metadata": {"name": "m-predictor", "labels": our_labels("m"),
            "ownerReferences": [owner_ref(&other, true)]}, "spec": {"note": "copy"}}),
    );
    // Labelled like ours but owned by nobody, and owned by this InferenceService but not as
    // its controller: both are in the label selector's list, neither is ours to delete.
    let unowned = api.create(
        SERVICE_MONITOR,
        NS,
        json!({"metadata": {"name": "m-unowned", "labels": our_labels("m")}, "spec": {}}),
    );
    let not_controller = api.create(
        POD_MONITOR,
        NS,
        json!({"metadata": {"name": "m-shared", "labels": our_labels("m"),
            "ownerReferences": [owner_ref(&owner, false)]}, "spec": {}}),
    );
    let _replica = start(&api, "a");
    eventually("NameConflict for the copy", || {
        !events(&api, "m", "NameConflict").is_empty()
    })
    .await;
    eventually("the monitor applied", || {
        names(&api, SERVICE_MONITOR) == ["m-predictor", "m-unowned"]
    })
    .await;
    let note = str_at(&events(&api, "m", "NameConflict")[0], "/note").to_string();
    assert!(note.contains("ScaledObject ml/m-predictor"), "{note}");

    api.edit(ISVC, NS, "m", |o| {
        o["metadata"]["annotations"]
            .as_object_mut()
            .unwrap()
            .remove("scaling.io/strategy");
    });
    eventually("our monitor deleted", || {
        names(&api, SERVICE_MONITOR) == ["m-unowned"]
    })
    .await;
    // Several more reconciles (resync is 2 s) must not change that.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(api.get(SCALED_OBJECT, NS, "m-predictor").unwrap(), copy);
    assert_eq!(api.get(SERVICE_MONITOR, NS, "m-unowned").unwrap(), unowned);
    assert_eq!(
        api.get(POD_MONITOR, NS, "m-shared").unwrap(),
        not_controller
    );
    assert_eq!(writes_to(&api, "scaledobjects", "m-predictor"), 0);
    assert_eq!(writes_to(&api, "servicemonitors", "m-unowned"), 0);
    assert_eq!(writes_to(&api, "podmonitors", "m-shared"), 0);
}

#[tokio::test]
async fn a_predecessors_objects_are_waited_for_then_replaced_after_garbage_collection() {
    let api = FakeApi::new();
    api.hold_garbage_collection();
    let _replica = start(&api, "a");
    let first = api.create(ISVC, NS, stored_isvc("m", json!({})));
    let (old_so, _) = converged_on(&api, "m").await;
    assert_generated(&old_so, &first);

    // Deleted and recreated under the same name: a new uid, while the collector has not yet
    // removed what the first one owned.
    api.delete(ISVC, NS, "m");
    let second = api.create(ISVC, NS, stored_isvc("m", json!({})));
    assert_ne!(first["metadata"]["uid"], second["metadata"]["uid"]);
    // Its records are patched onto it before its objects are looked at.
    eventually("the new InferenceService is reconciled", || {
        api.seen()
            .iter()
            .filter(|s| s.plural == "inferenceservices" && s.verb == Verb::Patch)
            .count()
            >= 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Waiting is not a conflict: no warning, and the old objects are left to the collector.
    assert!(events(&api, "m", "NameConflict").is_empty());
    let so = api.get(SCALED_OBJECT, NS, "m-predictor").unwrap();
    assert_eq!(so["metadata"]["uid"], old_so["metadata"]["uid"]);
    assert_eq!(
        so["metadata"]["ownerReferences"][0]["uid"],
        first["metadata"]["uid"]
    );
    assert_eq!(api.failed_preconditions(), 0);

    // The ScaledObject, the ServiceMonitor and the PrometheusRule beside it.
    assert_eq!(api.collect_garbage(), 3);
    eventually("new objects owned by the new InferenceService", || {
        api.get(SCALED_OBJECT, NS, "m-predictor").is_some_and(|so| {
            so["metadata"]["ownerReferences"][0]["uid"] == second["metadata"]["uid"]
        }) && api
            .get(SERVICE_MONITOR, NS, "m-predictor")
            .is_some_and(|m| {
                m["metadata"]["ownerReferences"][0]["uid"] == second["metadata"]["uid"]
            })
    })
    .await;
    assert_generated(&api.get(SCALED_OBJECT, NS, "m-predictor").unwrap(), &second);
}

#[tokio::test]
async fn an_isvc_being_deleted_is_left_to_garbage_collection() {
    let api = FakeApi::new();
    let _replica = start(&api, "a");
    let mut obj = stored_isvc("m", json!({}));
    obj["metadata"]["finalizers"] = json!(["serving.kserve.io/inferenceservice-finalizer"]);
    api.create(ISVC, NS, obj);
    converged_on(&api, "m").await;

    // KServe's finalizer holds the object: it only gets a deletionTimestamp.
    api.delete(ISVC, NS, "m");
    assert!(api.get(ISVC, NS, "m").unwrap()["metadata"]["deletionTimestamp"].is_string());
    let before = api.seen().len();
    // Something removes the monitor meanwhile; a controller that still reconciled the
    // deleted InferenceService would bring it back.
    api.delete(SERVICE_MONITOR, NS, "m-predictor");
    api.edit(ISVC, NS, "m", |o| {
        o["metadata"]["annotations"]["scaling.io/strategy"] = json!("queue");
    });
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(names(&api, SERVICE_MONITOR).is_empty());
    assert_eq!(
        trigger_names(&api, "m-predictor"),
        ["concurrency"],
        "nothing re-applied"
    );
    let writes = api.seen()[before..]
        .iter()
        .filter(|s| s.verb != Verb::Get && s.verb != Verb::List && s.verb != Verb::Watch)
        .filter(|s| s.plural != "leases" && s.plural != "events")
        .count();
    assert_eq!(writes, 0, "no write for an InferenceService being deleted");

    // KServe removes its finalizer; the InferenceService goes and takes its objects along.
    api.edit(ISVC, NS, "m", |o| {
        o["metadata"]["finalizers"] = json!([]);
    });
    assert!(api.get(ISVC, NS, "m").is_none());
    eventually("collected", || names(&api, SCALED_OBJECT).is_empty()).await;
}

#[tokio::test]
async fn deletes_carry_the_uid_of_the_object_inspected() {
    let api = FakeApi::new();
    let _replica = start(&api, "a");
    api.create(ISVC, NS, stored_isvc("m", json!({})));
    let (_, sm) = converged_on(&api, "m").await;
    api.edit(ISVC, NS, "m", |o| {
        o["metadata"]["annotations"]["scaling.io/monitor"] = json!("podmonitor");
    });
    eventually("ServiceMonitor replaced", || {
        names(&api, SERVICE_MONITOR).is_empty() && names(&api, POD_MONITOR) == ["m-predictor"]
    })
    .await;
    let deletes = api.delete_options();
    assert_eq!(deletes.len(), 1, "{deletes:?}");
    assert_eq!(
        deletes[0]["preconditions"]["uid"], sm["metadata"]["uid"],
        "{deletes:?}"
    );
}

#[tokio::test]
async fn the_fake_enforces_delete_preconditions_and_apply_conflicts() {
    use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
    use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
    let api = FakeApi::new();
    let obj = api.create(
        SCALED_OBJECT,
        NS,
        json!({"metadata": {"name": "x"}, "spec": {"a": 1}}),
    );
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "keda.sh",
        "v1alpha1",
        "ScaledObject",
    ));
    let client: Api<DynamicObject> = Api::namespaced_with(api.client(), NS, &ar);
    let with = |uid: Option<&str>, rv: Option<&str>| DeleteParams {
        preconditions: Some(Preconditions {
            uid: uid.map(str::to_string),
            resource_version: rv.map(str::to_string),
        }),
        ..DeleteParams::default()
    };
    fn code<T>(r: Result<T, kube::Error>) -> u16 {
        match r {
            Err(kube::Error::Api(s)) => s.code,
            Err(e) => panic!("{e}"),
            Ok(_) => 200,
        }
    }
    assert_eq!(
        code(client.delete("x", &with(Some("uid-999"), None)).await),
        409
    );
    assert_eq!(
        code(client.delete("x", &with(None, Some("999"))).await),
        409
    );
    assert_eq!(api.failed_preconditions(), 2);

    // Two managers: a non-forced apply that changes the other's field is refused.
    let body = |v: i64| {
        json!({"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
        "metadata": {"name": "x"}, "spec": {"a": v}})
    };
    let pp = |m: &str, force: bool| {
        let p = PatchParams::apply(m);
        if force { p.force() } else { p }
    };
    assert_eq!(
        code(
            client
                .patch("x", &pp("one", false), &Patch::Apply(body(2)))
                .await
        ),
        200
    );
    assert_eq!(
        code(
            client
                .patch("x", &pp("two", false), &Patch::Apply(body(3)))
                .await
        ),
        409
    );
    assert_eq!(
        code(
            client
                .patch("x", &pp("two", false), &Patch::Apply(body(2)))
                .await
        ),
        200
    );
    assert_eq!(
        code(
            client
                .patch("x", &pp("two", true), &Patch::Apply(body(4)))
                .await
        ),
        200
    );
    let managers = api.managers(SCALED_OBJECT, NS, "x");
    assert_eq!(managers.len(), 1, "{managers:?}");
    assert_eq!(managers[0].0, "two");
    assert!(api.get(SCALED_OBJECT, NS, "x").unwrap()["metadata"]["managedFields"].is_array());

    // A malformed label selector is the server's 400, not an empty list.
    let lp = kube::api::ListParams::default().labels("bad key=x");
    assert_eq!(code(client.list(&lp).await.map(|_| ())), 400);

    let uid = str_at(&obj, "/metadata/uid").to_string();
    let rv = str_at(
        &api.get(SCALED_OBJECT, NS, "x").unwrap(),
        "/metadata/resourceVersion",
    )
    .to_string();
    assert_eq!(
        code(
            client
                .delete("x", &with(Some(&uid), Some(&rv)))
                .await
                .map(|_| ())
        ),
        200
    );
    assert!(api.get(SCALED_OBJECT, NS, "x").is_none());
}

#[tokio::test]
async fn the_scale_target_is_the_live_predictor_deployment_from_the_first_apply() {
    let api = FakeApi::new();
    // KServe 0.10 names the predictor `-predictor-default`; a custom rename is another
    // scheme. Both exist before the controller starts, so the conventional name must never
    // be applied, not even once.
    api.create(DEPLOYMENT, NS, deployment("old", "old-predictor-default"));
    api.create(DEPLOYMENT, NS, deployment("renamed", "renamed-serving"));
    api.create(ISVC, NS, stored_isvc("old", json!({})));
    api.create(ISVC, NS, stored_isvc("renamed", json!({})));
    let _replica = start(&api, "a");
    eventually("both configured", || {
        names(&api, SCALED_OBJECT) == ["old-predictor-default", "renamed-serving"]
    })
    .await;
    for (isvc, target) in [
        ("old", "old-predictor-default"),
        ("renamed", "renamed-serving"),
    ] {
        let so = api.get(SCALED_OBJECT, NS, target).unwrap();
        assert_eq!(str_at(&so, "/spec/scaleTargetRef/name"), target);
        assert_generated(&so, &api.get(ISVC, NS, isvc).unwrap());
    }
    let conventional = api
        .seen()
        .iter()
        .filter(|s| s.verb == Verb::Patch && s.name.ends_with("-predictor"))
        .filter(|s| s.plural != "inferenceservices")
        .count();
    assert_eq!(conventional, 0, "a write under the conventional name");
    // The records on the InferenceService are the ones admission writes (it cannot see the
    // cluster, so it plans with the naming convention): the webhook sees the controller's
    // patch as an UPDATE and must agree with it rather than rewrite it, forever.
    eventually("records written", || {
        annotation(&api, "old", "scaling.io/scaled-object").is_some()
    })
    .await;
    assert_eq!(
        annotation(&api, "old", "scaling.io/scaled-object").as_deref(),
        Some("old-predictor")
    );
    assert_eq!(
        annotation(&api, "old", "scaling.io/scale-target").as_deref(),
        Some("old-predictor")
    );
}

#[tokio::test]
async fn the_lease_records_holder_duration_and_times_on_every_write() {
    use kserve_keda_webhook::controller::{Elector, LeaseConfig, Round};
    let api = FakeApi::new();
    let cfg = |id: &str| LeaseConfig {
        namespace: "kkw".into(),
        name: "lock".into(),
        identity: id.into(),
        lease_duration: Duration::from_millis(1500),
        renew_interval: Duration::from_millis(100),
    };
    let mut a = Elector::new(api.client(), cfg("a"));
    let start = k8s_openapi::jiff::Timestamp::now();
    assert_eq!(a.round().await.unwrap(), Round::Leader);
    let lease = api.get(LEASE, "kkw", "lock").unwrap();
    let spec = &lease["spec"];
    assert_eq!(spec["holderIdentity"], "a");
    // Whole seconds, rounded up: others must never wait less than the holder assumes.
    assert_eq!(spec["leaseDurationSeconds"], 2);
    assert_eq!(spec["leaseTransitions"], 0);
    let time = |v: &Value| -> k8s_openapi::jiff::Timestamp {
        v.as_str().expect("a timestamp").parse().expect("RFC 3339")
    };
    let acquired = time(&spec["acquireTime"]);
    let renewed = time(&spec["renewTime"]);
    assert!(
        acquired
            >= start.round(k8s_openapi::jiff::Unit::Second).unwrap()
                - k8s_openapi::jiff::SignedDuration::from_secs(1)
    );
    assert_eq!(acquired, renewed);

    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(a.round().await.unwrap(), Round::Leader);
    let spec = api.get(LEASE, "kkw", "lock").unwrap()["spec"].clone();
    assert_eq!(
        time(&spec["acquireTime"]),
        acquired,
        "a renewal keeps acquireTime"
    );
    assert!(
        time(&spec["renewTime"]) > renewed,
        "a renewal moves renewTime"
    );
    assert_eq!(spec["leaseDurationSeconds"], 2);

    // Another candidate sees a live Lease and waits; after a full duration without change
    // (the Lease's 2 s, not the configured 1.5 s) it takes over and stamps its own
    // acquisition.
    let mut b = Elector::new(api.client(), cfg("b"));
    assert_eq!(b.round().await.unwrap(), Round::Follower);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(b.round().await.unwrap(), Round::Follower);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(b.round().await.unwrap(), Round::Leader);
    let spec = api.get(LEASE, "kkw", "lock").unwrap()["spec"].clone();
    assert_eq!(spec["holderIdentity"], "b");
    assert_eq!(spec["leaseTransitions"], 1);
    assert!(time(&spec["acquireTime"]) > acquired);
    assert_eq!(spec["acquireTime"], spec["renewTime"]);
    assert_eq!(a.round().await.unwrap(), Round::Follower);
}

/// Every kind of call the controller makes, recorded from a run that goes through all of its
/// paths (election, create, retarget, monitor switch, repair, removal), for the chart's RBAC.
#[tokio::test]
async fn the_controllers_api_calls_are_the_ones_the_chart_grants() {
    let api = FakeApi::new();
    let replica = start(&api, "a");
    api.create(ISVC, NS, stored_isvc("m", json!({})));
    converged_on(&api, "m").await;
    // A generated object edited by hand is read before it is repaired (the cache only says
    // it changed).
    let read_after_edit = |res: fake_api::Res| {
        let api = api.clone();
        async move {
            let name = api.list(res, NS)[0]["metadata"]["name"]
                .as_str()
                .unwrap()
                .to_string();
            api.edit(res, NS, &name, |o| {
                o["metadata"]["labels"]["edited"] = json!("yes")
            });
            eventually("read after a hand edit", || {
                api.seen()
                    .iter()
                    .any(|s| s.plural == res.plural && s.verb == Verb::Get)
            })
            .await;
        }
    };
    read_after_edit(SERVICE_MONITOR).await;
    read_after_edit(PROMETHEUS_RULE).await;
    api.create(DEPLOYMENT, NS, deployment("m", "m-predictor-default"));
    eventually("retargeted", || {
        names(&api, SCALED_OBJECT) == ["m-predictor-default"]
    })
    .await;
    api.edit(ISVC, NS, "m", |o| {
        o["metadata"]["annotations"]["scaling.io/monitor"] = json!("podmonitor");
    });
    eventually("PodMonitor", || {
        names(&api, POD_MONITOR) == ["m-predictor-default"]
    })
    .await;
    read_after_edit(POD_MONITOR).await;
    // The same repair twice: the second event is a repeat.
    for _ in 0..2 {
        api.delete(SCALED_OBJECT, NS, "m-predictor-default");
        eventually("repaired", || {
            names(&api, SCALED_OBJECT) == ["m-predictor-default"]
        })
        .await;
    }
    api.edit(ISVC, NS, "m", |o| {
        o["metadata"]["annotations"]
            .as_object_mut()
            .unwrap()
            .remove("scaling.io/strategy");
    });
    eventually("removed", || names(&api, SCALED_OBJECT).is_empty()).await;
    eventually("the Lease renewed", || {
        api.seen()
            .iter()
            .any(|s| s.plural == "leases" && s.verb == Verb::Update)
    })
    .await;
    drop(replica);
    api.check_rbac_calls(
        "tests/chart/api-calls/controller.txt",
        "# The controller's calls (verb, API group, resource), recorded by\n# tests/reconcile.rs the_controllers_api_calls_are_the_ones_the_chart_grants.\n",
    );
}

#[tokio::test]
async fn a_failing_read_is_retried_not_taken_for_a_missing_api() {
    let api = FakeApi::new();
    let _replica = start(&api, "a");
    api.create(ISVC, NS, stored_isvc("m", json!({})));
    converged_on(&api, "m").await;
    // After the watches are up, so the failures reach the reconcile's own read of the
    // ScaledObject (its plan changes, so the cached digest no longer vouches for it).
    api.fail(Fault {
        tag: None,
        verb: Verb::Get,
        plural: "scaledobjects",
        times: 2,
        effect: Effect::Status(500),
    });
    api.edit(ISVC, NS, "m", |o| {
        o["metadata"]["annotations"]["scaling.io/strategy"] = json!("queue");
    });
    eventually("the change applied", || {
        trigger_names(&api, "m-predictor") == ["queue"]
    })
    .await;
    eventually("failure reported", || {
        !events(&api, "m", "ReconcileFailed").is_empty()
    })
    .await;
    // Only a 404 means the CRD is not installed; a 500 is an error to retry.
    assert!(events(&api, "m", "ApiNotServed").is_empty());
    assert!(events(&api, "m", "MonitorApiMissing").is_empty());
    assert!(api.get(SERVICE_MONITOR, NS, "m-predictor").is_some());
}

/// A failed renew keeps the leadership only while the Lease this replica last wrote is
/// certainly still its own: through a short outage the leader stays the leader (no new term,
/// no re-list), and it steps down before the Lease expires, so that another replica that
/// takes over after a full duration never overlaps with it.
#[tokio::test]
async fn a_leader_rides_out_failed_renews_only_while_its_lease_is_valid() {
    use kserve_keda_webhook::controller::{Elector, LeaseConfig};
    let api = FakeApi::new();
    let cfg = LeaseConfig {
        namespace: "kkw".into(),
        name: "lock".into(),
        identity: "a".into(),
        lease_duration: Duration::from_millis(3000),
        renew_interval: Duration::from_millis(500),
    };
    let (tx, leader) = watch::channel(false);
    let task = tokio::spawn(Elector::new(api.client(), cfg).run(tx));
    eventually("leader", || *leader.borrow()).await;
    // Cut the Lease off right after a successful renewal, so that renewal is the last write.
    let renewals = || {
        api.seen()
            .iter()
            .filter(|s| s.plural == "leases" && s.verb == Verb::Update)
            .count()
    };
    let before = renewals();
    eventually("a renewal", || renewals() > before).await;
    api.fail(Fault {
        tag: None,
        verb: Verb::Get,
        plural: "leases",
        times: usize::MAX,
        effect: Effect::Status(500),
    });
    let cut = Instant::now();
    let mut lost = None;
    while cut.elapsed() < Duration::from_millis(3500) {
        if !*leader.borrow() && lost.is_none() {
            lost = Some(cut.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    task.abort();
    let lost = lost.expect("still leading long after the Lease expired");
    assert!(
        lost >= Duration::from_millis(1500),
        "gave up after {lost:?}, though the Lease was valid for 3 s"
    );
    assert!(
        lost < Duration::from_millis(3000),
        "still leading after {lost:?}: past the Lease's expiry"
    );
}

/// `kubectl annotate --dry-run=server`: the API server asks the webhook with `dryRun: true`
/// and stores nothing. The webhook gives the answer the real request gets (so the preview is
/// true), and nothing reaches the cluster: the controller running beside it writes nothing for
/// the request. Storing the same object for real does lead to writes, so the observation
/// would see them.
#[tokio::test]
async fn a_dry_run_admission_previews_the_patch_and_writes_nothing() {
    use kserve_keda_webhook::admission;
    let api = FakeApi::new();
    let mut plain = stored_isvc("m", json!({}));
    plain["metadata"]["annotations"]
        .as_object_mut()
        .unwrap()
        .remove("scaling.io/strategy");
    let stored = api.create(ISVC, NS, plain);
    let replica = start(&api, "a");
    eventually("ready", || *replica.ready.borrow()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = api.seen().len();
    let at_rest = api.get(ISVC, NS, "m").unwrap();

    let mut annotated = stored.clone();
    annotated["metadata"]["annotations"]["scaling.io/strategy"] = json!("queue");
    let review =
        |dry_run: bool| admission_review::review("UPDATE", &annotated, Some(&stored), dry_run);
    let scaling = Scaling::from(Settings::default());
    let answer = |dry_run: bool| -> Value {
        let body = serde_json::to_vec(&review(dry_run)).unwrap();
        let (bytes, _, _) = admission::review(&body, &scaling).unwrap();
        serde_json::from_slice(&bytes).unwrap()
    };
    let dry = answer(true);
    assert_eq!(dry["response"]["allowed"], true, "{dry}");
    assert!(dry["response"]["patch"].is_string(), "{dry}");
    assert_eq!(dry, answer(false), "the preview is the real answer");

    // Several resyncs (every 2 s) later, nothing was written for it.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let writes = |from: usize| {
        api.seen()[from..]
            .iter()
            .filter(|s| !matches!(s.verb, Verb::Get | Verb::List | Verb::Watch))
            .filter(|s| s.plural != "leases")
            .count()
    };
    assert_eq!(writes(before), 0, "a dry run reached the cluster");
    assert!(names(&api, SCALED_OBJECT).is_empty());
    assert_eq!(api.get(ISVC, NS, "m").unwrap(), at_rest);

    // The same change stored for real is applied, and the writes show.
    api.edit(ISVC, NS, "m", |o| {
        o["metadata"]["annotations"]["scaling.io/strategy"] = json!("queue");
    });
    eventually("the stored change is applied", || {
        trigger_names(&api, "m-predictor") == ["queue"]
    })
    .await;
    assert!(writes(before) > 0);
}

/// A follower measures the Lease's age from its last change, and a renewal by the same
/// holder is a change: however long a follower watches a leader that keeps renewing, it
/// never takes over.
#[tokio::test]
async fn a_follower_never_takes_over_a_lease_that_keeps_being_renewed() {
    use kserve_keda_webhook::controller::{Elector, LeaseConfig, Round};
    let api = FakeApi::new();
    let cfg = |id: &str| LeaseConfig {
        namespace: "kkw".into(),
        name: "lock".into(),
        identity: id.into(),
        lease_duration: Duration::from_millis(1000),
        renew_interval: Duration::from_millis(200),
    };
    let mut a = Elector::new(api.client(), cfg("a"));
    let mut b = Elector::new(api.client(), cfg("b"));
    assert_eq!(a.round().await.unwrap(), Round::Leader);
    assert_eq!(b.round().await.unwrap(), Round::Follower);
    // Three lease durations of renewals, each seen by the follower.
    for _ in 0..15 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(a.round().await.unwrap(), Round::Leader);
        assert_eq!(b.round().await.unwrap(), Round::Follower);
    }
    let spec = api.get(LEASE, "kkw", "lock").unwrap()["spec"].clone();
    assert_eq!(spec["holderIdentity"], "a");
    assert_eq!(spec["leaseTransitions"], 0);
}

/// 409 on a Lease write means another candidate wrote first: this round is lost, which is
/// not an error. Any other failure says nothing about who holds the Lease and is an error
/// (so a leader keeps leading through it while its Lease is valid).
#[tokio::test]
async fn only_a_conflict_on_the_lease_write_is_a_lost_round() {
    use kserve_keda_webhook::controller::{Elector, LeaseConfig, Round};
    let api = FakeApi::new();
    let mut a = Elector::new(
        api.client(),
        LeaseConfig {
            namespace: "kkw".into(),
            name: "lock".into(),
            identity: "a".into(),
            lease_duration: Duration::from_secs(10),
            renew_interval: Duration::from_secs(1),
        },
    );
    let fail = |verb: Verb, code: u16| {
        api.fail(Fault {
            tag: None,
            verb,
            plural: "leases",
            times: 1,
            effect: Effect::Status(code),
        })
    };
    // Creating the Lease.
    fail(Verb::Create, 409);
    assert_eq!(a.round().await.unwrap(), Round::Follower);
    fail(Verb::Create, 500);
    assert!(a.round().await.is_err());
    assert_eq!(a.round().await.unwrap(), Round::Leader);
    // A whole number of seconds is written as it is, not rounded up.
    assert_eq!(
        api.get(LEASE, "kkw", "lock").unwrap()["spec"]["leaseDurationSeconds"],
        10
    );
    // Renewing it.
    fail(Verb::Update, 409);
    assert_eq!(a.round().await.unwrap(), Round::Follower);
    fail(Verb::Update, 500);
    assert!(a.round().await.is_err());
    assert_eq!(a.round().await.unwrap(), Round::Leader);
}

fn reconcile_errors(replica: &Replica) -> u64 {
    kserve_keda_webhook::metrics::encode(&replica.registry)
        .lines()
        .find_map(|l| l.strip_prefix("kserve_keda_webhook_reconciles_total{result=\"error\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Deleting a stale object that is already gone (404) or was replaced by someone else's (409,
/// the uid precondition) is done, not a failure; any other failed delete fails the reconcile,
/// which is counted and retried until the object is gone.
#[tokio::test]
async fn a_failed_delete_fails_the_reconcile_unless_the_object_is_gone_or_replaced() {
    let api = FakeApi::new();
    let replica = start(&api, "a");
    api.create(ISVC, NS, stored_isvc("m", json!({})));
    converged_on(&api, "m").await;
    let monitor = |kind: &str| {
        api.edit(ISVC, NS, "m", |o| {
            o["metadata"]["annotations"]["scaling.io/monitor"] = json!(kind);
        });
    };
    let fail_delete = |plural: &'static str, code: u16| {
        api.fail(Fault {
            tag: None,
            verb: Verb::Delete,
            plural,
            times: 1,
            effect: Effect::Status(code),
        });
    };

    for code in [409, 404] {
        let (stale, stale_plural, wanted) = if code == 409 {
            (SERVICE_MONITOR, "servicemonitors", POD_MONITOR)
        } else {
            (POD_MONITOR, "podmonitors", SERVICE_MONITOR)
        };
        fail_delete(stale_plural, code);
        monitor(if code == 409 {
            "podmonitor"
        } else {
            "servicemonitor"
        });
        eventually("the monitor kind switched", || {
            names(&api, stale).is_empty() && names(&api, wanted) == ["m-predictor"]
        })
        .await;
        assert_eq!(
            reconcile_errors(&replica),
            0,
            "a {code} on delete is not a failure"
        );
    }

    fail_delete("servicemonitors", 500);
    monitor("podmonitor");
    eventually("the monitor kind switched", || {
        names(&api, SERVICE_MONITOR).is_empty() && names(&api, POD_MONITOR) == ["m-predictor"]
    })
    .await;
    assert!(
        reconcile_errors(&replica) >= 1,
        "a 500 on delete fails the reconcile"
    );
}

/// Every write of the controller to an InferenceService names its field manager, so the
/// object's `managedFields` say who set the record annotations; without one the API server
/// files them under a manager derived from the client, which tells a user nothing.
#[tokio::test]
async fn annotation_patches_on_the_inferenceservice_name_the_field_manager() {
    let api = FakeApi::new();
    let _replica = start(&api, "a");
    api.create(ISVC, NS, stored_isvc("m", json!({})));
    converged_on(&api, "m").await;
    eventually("records written", || {
        annotation(&api, "m", "scaling.io/scaled-object").is_some()
    })
    .await;
    let patches: Vec<_> = api
        .seen()
        .into_iter()
        .filter(|s| s.verb == Verb::Patch && s.plural == "inferenceservices")
        .collect();
    assert!(!patches.is_empty(), "no patch of the InferenceService seen");
    for p in patches {
        assert_eq!(
            p.field_manager.as_deref(),
            Some(kserve_keda_webhook::core::names::FIELD_MANAGER),
            "{p:?}"
        );
    }
}

/// KServe copies the InferenceService's annotations into the predictor's pod template: any
/// annotation the controller writes there rolls out the model servers. Once the admission
/// records are in place, a spec change is recorded on the ScaledObject only.
#[tokio::test]
async fn a_new_generation_is_recorded_on_the_scaled_object_without_touching_the_isvc() {
    let api = FakeApi::new();
    let _replica = start(&api, "a");
    api.create(ISVC, NS, stored_isvc("m", json!({})));
    converged_on(&api, "m").await;
    eventually("admission's records written", || {
        annotation(&api, "m", "scaling.io/scaled-object").is_some()
    })
    .await;
    let isvc_writes = |api: &FakeApi| {
        api.seen()
            .iter()
            .filter(|s| {
                s.plural == "inferenceservices" && matches!(s.verb, Verb::Patch | Verb::Update)
            })
            .count()
    };
    let before = isvc_writes(&api);
    api.edit(ISVC, NS, "m", |o| {
        o["spec"]["predictor"]["model"]["storageUri"] = json!("hf://other/model");
    });
    eventually("generation 2 observed", || {
        observed(&api, "m-predictor").as_deref() == Some("2")
    })
    .await;
    assert_eq!(
        isvc_writes(&api),
        before,
        "the controller wrote to the InferenceService"
    );
    assert_eq!(
        annotation(&api, "m", "scaling.io/observed-generation"),
        None
    );
}

fn reconciles(replica: &Replica, result: &str) -> u64 {
    let prefix = format!("kserve_keda_webhook_reconciles_total{{result=\"{result}\"}} ");
    kserve_keda_webhook::metrics::encode(&replica.registry)
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Requests other than the watches' own lists and watches, and the Lease's.
fn reconcile_requests(api: &FakeApi) -> Vec<String> {
    api.seen()
        .iter()
        .filter(|s| !matches!(s.verb, Verb::List | Verb::Watch) && s.plural != "leases")
        .map(|s| format!("{:?} {} {}", s.verb, s.plural, s.name))
        .collect()
}

/// A reconcile triggered by a change that leaves the plan as it is (KEDA's status update)
/// is served from the caches: no read, no write. One triggered by an edit of a generated
/// object reads that object, sees the drift and repairs it.
#[tokio::test]
async fn a_reconcile_with_nothing_to_do_makes_no_request_and_an_edit_is_still_repaired() {
    let api = FakeApi::new();
    let replica = start(&api, "a");
    api.create(ISVC, NS, stored_isvc("m", json!({})));
    converged_on(&api, "m").await;
    // Settled: the reconciles of the controller's own writes have run.
    let mut last = reconciles(&replica, "success");
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = reconciles(&replica, "success");
        if now == last {
            break;
        }
        last = now;
    }
    let before = reconcile_requests(&api).len();
    set_ready(&api, "m-predictor", "True", "ScaledObjectReady", "ok");
    eventually("the status update reconciled", || {
        reconciles(&replica, "success") > last
    })
    .await;
    assert_eq!(reconcile_requests(&api)[before..], [] as [String; 0]);

    api.edit(SCALED_OBJECT, NS, "m-predictor", |o| {
        o["spec"]["maxReplicaCount"] = json!(77);
    });
    eventually("repaired", || {
        api.get(SCALED_OBJECT, NS, "m-predictor")
            .is_some_and(|so| so["spec"]["maxReplicaCount"] != json!(77))
    })
    .await;
    let after = reconcile_requests(&api)[before..].to_vec();
    assert!(
        after.starts_with(&[
            "Get scaledobjects m-predictor".to_string(),
            "Patch scaledobjects m-predictor".to_string(),
        ]),
        "{after:?}"
    );
    // Besides the event that reports the repair, nothing else was read or written.
    assert!(
        after[2..].iter().all(|r| r.contains(" events ")),
        "{after:?}"
    );
}

/// A Deployment KServe creates after the InferenceService was configured is found by the
/// reconcile it triggers, from the cache it has just entered: the ScaledObject moves to it.
#[tokio::test]
async fn a_deployment_that_appears_later_is_read_from_the_cache_and_retargets() {
    let api = FakeApi::new();
    let _replica = start(&api, "a");
    api.create(ISVC, NS, stored_isvc("m", json!({})));
    converged_on(&api, "m").await;
    api.create(DEPLOYMENT, NS, deployment("m", "m-serving"));
    eventually("retargeted", || names(&api, SCALED_OBJECT) == ["m-serving"]).await;
    // Read from the cache: no request names a Deployment.
    assert!(
        !api.seen()
            .iter()
            .any(|s| s.plural == "deployments" && !matches!(s.verb, Verb::List | Verb::Watch)),
    );
    assert_eq!(
        api.seen()
            .iter()
            .filter(|s| s.plural == "deployments" && s.verb == Verb::List)
            .count(),
        1,
        "one list, by the watch"
    );
}

#[tokio::test]
async fn the_fake_lists_in_pages_and_a_watch_that_falls_behind_catches_up() {
    use futures::{StreamExt, TryStreamExt};
    use kube::api::{Api, ListParams, WatchEvent, WatchParams};
    use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
    let api = FakeApi::new();
    for i in 0..7 {
        api.create(
            SCALED_OBJECT,
            NS,
            json!({"metadata": {"name": format!("so-{i}")}}),
        );
    }
    api.create(
        SCALED_OBJECT,
        "other",
        json!({"metadata": {"name": "elsewhere"}}),
    );
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "keda.sh",
        "v1alpha1",
        "ScaledObject",
    ));
    let sos: Api<DynamicObject> = Api::namespaced_with(api.client(), NS, &ar);
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    let mut versions = Vec::new();
    loop {
        let mut lp = ListParams::default().limit(3);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        // Pages keep the first page's resourceVersion even when objects change in between.
        api.edit(SCALED_OBJECT, "other", "elsewhere", |o| {
            o["spec"]["n"] = json!(names.len());
        });
        let page = sos.list(&lp).await.unwrap();
        assert!(page.items.len() <= 3);
        names.extend(page.items.iter().map(|o| o.metadata.name.clone().unwrap()));
        versions.push(page.metadata.resource_version.clone().unwrap());
        token = page.metadata.continue_.filter(|c| !c.is_empty());
        if token.is_none() {
            break;
        }
    }
    assert_eq!(names, (0..7).map(|i| format!("so-{i}")).collect::<Vec<_>>());
    assert_eq!(versions.len(), 3);
    assert!(versions.iter().all(|v| *v == versions[0]), "{versions:?}");

    // More changes than the feed holds while the watch is not read: it still sees every one.
    let rv = sos
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version;
    let stream = sos
        .watch(&WatchParams::default().timeout(3), &rv.unwrap())
        .await
        .unwrap();
    let edits = 9_000;
    for i in 0..edits {
        api.edit(SCALED_OBJECT, NS, "so-0", |o| o["spec"]["n"] = json!(i));
    }
    let seen: Vec<i64> = stream
        .try_filter_map(|e| async move {
            Ok(match e {
                WatchEvent::Modified(o) => o.data.pointer("/spec/n").and_then(Value::as_i64),
                _ => None,
            })
        })
        .take(edits)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(seen, (0..edits as i64).collect::<Vec<_>>());
}

/// Stored InferenceServices the webhook would have refused (every nesting form of the
/// query), beside good ones: each poisoned one gets one Warning naming the limit and nothing
/// generated, and the good ones, including one created after them, are configured. Run in a
/// child process by the test below, because a stack overflow aborts the whole test binary.
#[tokio::test]
#[ignore = "run in its own process by poisoned_isvcs_are_skipped_with_a_warning"]
async fn poisoned_isvcs_child() {
    let api = FakeApi::new();
    let _replica = start(&api, "a");
    api.create(ISVC, NS, stored_isvc("before", json!({})));
    let forms = hostile_query::forms();
    for (i, (_, query, _)) in forms.iter().enumerate() {
        api.create(
            ISVC,
            NS,
            stored_isvc(
                &format!("poison-{i}"),
                json!({
                    "scaling.io/strategy": if i % 2 == 0 { "custom" } else { "queue" },
                    "scaling.io/target": "3",
                    "scaling.io/query": query,
                }),
            ),
        );
    }
    converged_on(&api, "before").await;
    for (i, (form, _, needle)) in forms.iter().enumerate() {
        let name = format!("poison-{i}");
        eventually(&format!("a Warning on the {form} poison"), || {
            !events(&api, &name, "InvalidScalingRequest").is_empty()
        })
        .await;
        let ev = &events(&api, &name, "InvalidScalingRequest")[0];
        assert_eq!(str_at(ev, "/type"), "Warning", "{ev}");
        let note = str_at(ev, "/note");
        assert!(
            note.contains("scaling.io/query") && note.contains(needle),
            "{form}: {note}"
        );
    }
    api.create(ISVC, NS, stored_isvc("after", json!({})));
    converged_on(&api, "after").await;
    assert_eq!(
        names(&api, SCALED_OBJECT),
        ["after-predictor", "before-predictor"]
    );
    // A request only the user can fix is not retried: one Warning each, however long.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..forms.len() {
        assert_eq!(
            events(&api, &format!("poison-{i}"), "InvalidScalingRequest").len(),
            1
        );
    }
}

#[test]
fn poisoned_isvcs_are_skipped_with_a_warning() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "poisoned_isvcs_child",
            "--ignored",
            "--nocapture",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "the controller child failed ({:?}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
