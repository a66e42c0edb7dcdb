//! One reconcile of one InferenceService: plan, resolve the live Deployment, apply what the
//! plan asks for, delete what we generated and no longer want, and report.

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use kube::core::{ApiResource, DynamicObject};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Client, Resource, ResourceExt};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::ownership::{generated_for, generated_for_predecessor};
use super::readiness;
use super::{Error, Kind};
use crate::isvc::{self, Isvc};
use crate::metrics::{KindLabels, Metrics, ResultLabels};
use crate::names;
use crate::plan::{self, ISVC_LABEL, MANAGED_BY, MANAGED_BY_LABEL, Plan};
use crate::scaling::Scaling;
use crate::spec::keys;

/// The field manager of every write, so server-side apply attributes all generated fields
/// to this product.
pub const FIELD_MANAGER: &str = "kserve-keda-webhook";
/// Annotation key (under the prefix) on generated objects: hash of the planned object.
pub const INPUTS_HASH: &str = "inputs-hash";

/// What one reconcile needs; one per leadership term, so nothing stale survives a handover.
pub struct Context {
    pub client: Client,
    pub scaling: Arc<Scaling>,
    pub metrics: Metrics,
    pub recorder: Recorder,
    pub resync: Duration,
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub timeout: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Consecutive failures per object (namespace/name), for the backoff.
    failures: HashMap<String, u32>,
    /// What was last reported per (uid, reason), so an unchanged problem is not re-reported
    /// on every retry or status update.
    reported: HashMap<(String, &'static str), u64>,
    /// Generated objects per InferenceService uid, for the `managed_objects` gauge.
    managed: HashMap<String, Vec<Kind>>,
}

impl Context {
    pub fn new(
        client: Client,
        scaling: Arc<Scaling>,
        metrics: Metrics,
        recorder: Recorder,
        opts: &super::ControllerOptions,
    ) -> Context {
        Context {
            client,
            scaling,
            metrics,
            recorder,
            resync: opts.resync,
            retry_base: opts.retry_base,
            retry_max: opts.retry_max,
            timeout: opts.reconcile_timeout,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves only counters behind; keep going with them.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets InferenceServices that are gone, and recomputes the gauge.
    pub fn retain_managed(&self, alive: &dyn Fn(&str) -> bool) {
        let mut st = self.state();
        st.managed.retain(|uid, _| alive(uid));
        st.reported.retain(|(uid, _), _| alive(uid));
        self.publish_gauge(&st);
    }

    /// A replica that no longer leads manages nothing.
    pub fn clear_managed(&self) {
        let mut st = self.state();
        st.managed.clear();
        self.publish_gauge(&st);
    }

    fn set_managed(&self, uid: &str, kinds: Vec<Kind>) {
        let mut st = self.state();
        if kinds.is_empty() {
            st.managed.remove(uid);
        } else {
            st.managed.insert(uid.to_string(), kinds);
        }
        self.publish_gauge(&st);
    }

    fn publish_gauge(&self, st: &State) {
        for kind in Kind::ALL {
            let n = st.managed.values().filter(|ks| ks.contains(&kind)).count();
            self.metrics
                .managed_objects
                .get_or_create(&KindLabels {
                    kind: kind.as_str(),
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Whether `note` is news for (uid, reason); records it as reported.
    fn is_news(&self, uid: &str, reason: &'static str, note: &str) -> bool {
        let mut h = DefaultHasher::new();
        note.hash(&mut h);
        let digest = h.finish();
        let mut st = self.state();
        st.reported.insert((uid.to_string(), reason), digest) != Some(digest)
    }

    fn forget_reported(&self, uid: &str, reasons: &[&'static str]) {
        let mut st = self.state();
        for r in reasons {
            st.reported.remove(&(uid.to_string(), *r));
        }
    }

    /// Publishes an event; a failure to publish never fails the reconcile.
    async fn event(&self, obj: &DynamicObject, type_: EventType, reason: &str, note: String) {
        let reference = obj.object_ref(&isvc_resource());
        let ev = Event {
            type_,
            reason: reason.to_string(),
            // The Events API caps notes at 1 kB.
            note: Some(truncate(note, 1000)),
            action: "Reconcile".to_string(),
            secondary: None,
        };
        match tokio::time::timeout(self.timeout, self.recorder.publish(&ev, &reference)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, reason, "could not publish event"),
            Err(_) => tracing::warn!(reason, "publishing an event timed out"),
        }
    }
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// The InferenceService API as the controller addresses it.
pub fn isvc_resource() -> ApiResource {
    ApiResource {
        group: isvc::GROUP.to_string(),
        version: isvc::VERSION.to_string(),
        api_version: isvc::API_VERSION.to_string(),
        kind: isvc::KIND.to_string(),
        plural: "inferenceservices".to_string(),
    }
}

fn key(obj: &DynamicObject) -> String {
    format!(
        "{}/{}",
        obj.metadata.namespace.as_deref().unwrap_or_default(),
        obj.name_any()
    )
}

/// The reconcile entry the Controller calls.
pub async fn reconcile(obj: Arc<DynamicObject>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = match tokio::time::timeout(ctx.timeout, reconcile_isvc(&obj, &ctx)).await {
        Ok(r) => r,
        Err(_) => Err(Error::Timeout(ctx.timeout)),
    };
    ctx.metrics
        .reconcile_duration
        .observe(started.elapsed().as_secs_f64());
    let label = if result.is_ok() { "success" } else { "error" };
    ctx.metrics
        .reconciles
        .get_or_create(&ResultLabels { result: label })
        .inc();
    match &result {
        Ok(_) => {
            ctx.state().failures.remove(&key(&obj));
        }
        Err(e) => report_failure(&obj, e, &ctx).await,
    }
    result
}

/// Backoff per object, doubling from `retry_base` up to `retry_max`. A request the user has
/// to fix is not retried at all until the InferenceService changes.
pub fn error_policy(obj: Arc<DynamicObject>, err: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(object = %key(&obj), error = %err, "reconcile failed");
    if err.is_user_error() {
        return Action::await_change();
    }
    let n = {
        let mut st = ctx.state();
        let n = st.failures.entry(key(&obj)).or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    Action::requeue(backoff(ctx.retry_base, ctx.retry_max, n))
}

/// `base * 2^(attempt-1)`, capped at `max`.
pub fn backoff(base: Duration, max: Duration, attempt: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(30));
    base.saturating_mul(factor).min(max)
}

async fn report_failure(obj: &DynamicObject, err: &Error, ctx: &Context) {
    let Some(reason) = err.reason() else { return };
    let uid = obj.metadata.uid.as_deref().unwrap_or_default();
    let note = err.to_string();
    if ctx.is_news(uid, reason, &note) {
        ctx.event(obj, EventType::Warning, reason, note).await;
    }
}

async fn reconcile_isvc(obj: &DynamicObject, ctx: &Context) -> Result<Action, Error> {
    if obj.metadata.deletion_timestamp.is_some() {
        // Garbage collection removes the generated objects through their owner references.
        return Ok(Action::await_change());
    }
    let ns = obj
        .metadata
        .namespace
        .clone()
        .ok_or(Error::Incomplete("metadata.namespace"))?;
    let uid = obj
        .metadata
        .uid
        .clone()
        .ok_or(Error::Incomplete("metadata.uid"))?;
    let prefix = ctx.scaling.prefix();
    let prefix = prefix.as_str();
    let isvc = Isvc::from_parts(&obj.metadata, &obj.data, &ns)
        .map_err(|e| Error::Plan(plan::PlanError::Field(e)))?;
    let wants = isvc
        .annotations
        .contains_key(&format!("{prefix}/{}", keys::STRATEGY));

    let live = if wants {
        resolve_deployment(&ctx.client, &ns, &isvc).await?
    } else {
        None
    };
    // The stored object is both old and new: its deployment mode is frozen, so a Knative
    // InferenceService fails here with the planner's explanation and nothing is applied.
    let input = plan::Input {
        isvc: &isvc,
        old: Some(&isvc),
        live_deployment: live.as_deref(),
    };
    let planned = ctx.scaling.decide(input, None)?;

    // Annotations exactly as admission writes them (admission cannot see the cluster, so it
    // plans without the live Deployment). Writing the same values means the webhook, which
    // sees this patch as an UPDATE, agrees with it instead of fighting over it.
    let admission_annotations = if live.is_some() {
        ctx.scaling
            .decide(
                plan::Input {
                    live_deployment: None,
                    ..input
                },
                None,
            )?
            .annotations
    } else {
        planned.annotations.clone()
    };
    let isvc_api: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), &ns, &isvc_resource());
    if !admission_annotations.is_empty() {
        patch_annotations(&isvc_api, &isvc.name, &admission_annotations).await?;
    }

    let owner = OwnerReference {
        api_version: isvc::API_VERSION.to_string(),
        kind: isvc::KIND.to_string(),
        name: isvc.name.clone(),
        uid: uid.clone(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    let desired = desired_objects(&planned, &owner, prefix)?;
    let outcome = sync_objects(ctx, obj, &ns, &isvc.name, &uid, &desired).await?;

    report_warnings(ctx, obj, &uid, &planned).await;
    report_readiness(ctx, obj, &uid, &outcome).await;
    if !outcome.changed.is_empty() {
        let note = if wants {
            configured_note(&planned, &outcome)
        } else {
            format!(
                "{prefix}/strategy is gone: deleted {}",
                outcome.changed.join(", ")
            )
        };
        ctx.event(obj, EventType::Normal, "ScalingConfigured", note)
            .await;
    }

    let observed_key = format!("{prefix}/{}", keys::OBSERVED_GENERATION);
    let observed = isvc.annotations.get(&observed_key);
    let target = if wants {
        obj.metadata.generation.map(|g| g.to_string())
    } else {
        None
    };
    if observed != target.as_ref() {
        let change = BTreeMap::from([(observed_key, target)]);
        patch_annotations(&isvc_api, &isvc.name, &change).await?;
    }
    ctx.set_managed(&uid, outcome.present);
    ctx.forget_reported(&uid, &Error::REASONS);
    Ok(Action::requeue(ctx.resync))
}

fn configured_note(planned: &Plan, outcome: &Outcome) -> String {
    let target = planned.scale_target.as_deref().unwrap_or("?");
    format!(
        "scaling Deployment {target}: {}",
        outcome.changed.join(", ")
    )
}

/// KEDA's verdict on the ScaledObject, repeated on the InferenceService once per distinct
/// problem; a recovery makes the next failure news again.
async fn report_readiness(ctx: &Context, obj: &DynamicObject, uid: &str, outcome: &Outcome) {
    let Some(name) = &outcome.scaled_object else {
        return;
    };
    match readiness::problem(name, outcome.scaled_object_status.as_ref()) {
        Some(note) => {
            if ctx.is_news(uid, readiness::REASON, &note) {
                ctx.event(obj, EventType::Warning, readiness::REASON, note)
                    .await;
            }
        }
        None => ctx.forget_reported(uid, &[readiness::REASON]),
    }
}

async fn report_warnings(ctx: &Context, obj: &DynamicObject, uid: &str, planned: &Plan) {
    const REASON: &str = "ScalingWarning";
    if ctx.is_news(uid, REASON, &planned.warnings.join("\n")) {
        for w in &planned.warnings {
            ctx.event(obj, EventType::Warning, REASON, w.clone()).await;
        }
    }
    // Audit findings are recorded, not shown at admission: a Normal event is the record on
    // the object itself.
    const AUDIT: &str = "PolicyAudit";
    if ctx.is_news(uid, AUDIT, &planned.audit.join("\n")) {
        for finding in &planned.audit {
            ctx.event(obj, EventType::Normal, AUDIT, finding.clone())
                .await;
        }
    }
}

/// Merge patch touching only the given annotation keys (`None` removes one).
async fn patch_annotations(
    api: &Api<DynamicObject>,
    name: &str,
    changes: &BTreeMap<String, Option<String>>,
) -> Result<(), Error> {
    let patch = json!({"metadata": {"annotations": changes}});
    // Named, so the InferenceService's managedFields say who wrote these keys.
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    };
    api.patch(name, &params, &Patch::Merge(&patch)).await?;
    Ok(())
}

/// The predictor Deployment KServe created, found by its labels so that every naming scheme
/// (`-predictor`, `-predictor-default`, named predictors) resolves. Multi-node worker
/// Deployments carry the same labels and are never the scale target.
async fn resolve_deployment(
    client: &Client,
    ns: &str,
    isvc: &Isvc,
) -> Result<Option<String>, Error> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let lp =
        ListParams::default().labels(&format!("{ISVC_LABEL}={},component=predictor", isvc.name));
    let list = api.list_metadata(&lp).await?;
    let conventional = names::predictor_deployment(&isvc.name, isvc.predictor.name.as_deref());
    Ok(choose_deployment(
        list.items.iter().filter_map(|d| {
            let name = d.metadata.name.as_deref()?;
            Some((name, d.metadata.deletion_timestamp.is_some()))
        }),
        &conventional,
    ))
}

/// Of the predictor Deployments found (name, being deleted), the scale target: the
/// conventional name when it is among them, else the first by name. A Deployment being
/// deleted and a multi-node `-worker` are never the target.
fn choose_deployment<'a>(
    found: impl Iterator<Item = (&'a str, bool)>,
    conventional: &str,
) -> Option<String> {
    let mut live: Vec<&str> = found
        .filter(|(_, deleting)| !deleting)
        .map(|(n, _)| n)
        .filter(|n| !n.ends_with("-worker"))
        .collect();
    live.sort_unstable();
    if live.contains(&conventional) {
        Some(conventional.to_string())
    } else {
        live.first().map(|n| n.to_string())
    }
}

/// One generated object, ready to apply.
#[derive(Debug)]
struct Desired {
    kind: Kind,
    name: String,
    body: Value,
}

fn desired_objects(
    planned: &Plan,
    owner: &OwnerReference,
    prefix: &str,
) -> Result<Vec<Desired>, Error> {
    let mut out = Vec::new();
    if let Some(so) = &planned.scaled_object {
        let body = serde_json::to_value(so).map_err(Error::Serialize)?;
        out.push(finish(Kind::ScaledObject, body, owner, prefix));
    }
    match &planned.monitor {
        Some(m @ crate::resources::Monitor::Service(_)) => {
            let body = m.to_json().map_err(Error::Serialize)?;
            out.push(finish(Kind::ServiceMonitor, body, owner, prefix));
        }
        Some(m @ crate::resources::Monitor::Pod(_)) => {
            let body = m.to_json().map_err(Error::Serialize)?;
            out.push(finish(Kind::PodMonitor, body, owner, prefix));
        }
        None => {}
    }
    if let Some(r) = &planned.rule {
        let body = serde_json::to_value(r).map_err(Error::Serialize)?;
        out.push(finish(Kind::PrometheusRule, body, owner, prefix));
    }
    Ok(out)
}

/// Adds the hash of the planned object and the owner reference.
fn finish(kind: Kind, mut body: Value, owner: &OwnerReference, prefix: &str) -> Desired {
    let hash = inputs_hash(&body);
    let name = body
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if let Some(meta) = body.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert(
            "annotations".into(),
            json!({ format!("{prefix}/{INPUTS_HASH}"): hash }),
        );
        meta.insert("ownerReferences".into(), json!([owner]));
    }
    Desired { kind, name, body }
}

/// SHA-256 of the planned object's JSON (keys sorted), first 16 bytes in hex.
pub fn inputs_hash(body: &Value) -> String {
    let digest = Sha256::digest(body.to_string().as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether every field of `want` is in `live` with the same value. Fields only the server or
/// others set are ignored, as server-side apply ignores them.
pub fn contains(live: &Value, want: &Value) -> bool {
    match (live, want) {
        (Value::Object(l), Value::Object(w)) => w
            .iter()
            .all(|(k, wv)| l.get(k).is_some_and(|lv| contains(lv, wv))),
        (Value::Array(l), Value::Array(w)) => {
            l.len() == w.len() && l.iter().zip(w).all(|(lv, wv)| contains(lv, wv))
        }
        _ => live == want,
    }
}

#[derive(Default)]
struct Outcome {
    /// Human-readable writes ("applied ScaledObject x", "deleted ServiceMonitor y").
    changed: Vec<String>,
    /// Kinds that exist as planned after this reconcile.
    present: Vec<Kind>,
    /// The ScaledObject applied, and its `status` as KEDA last wrote it (read before applying;
    /// an apply never changes status).
    scaled_object: Option<String>,
    scaled_object_status: Option<Value>,
}

async fn sync_objects(
    ctx: &Context,
    obj: &DynamicObject,
    ns: &str,
    isvc_name: &str,
    uid: &str,
    desired: &[Desired],
) -> Result<Outcome, Error> {
    let mut outcome = Outcome::default();
    let mut first_error = None;
    let selector = format!("{MANAGED_BY_LABEL}={MANAGED_BY},{ISVC_LABEL}={isvc_name}");
    for kind in Kind::ALL {
        let api: Api<DynamicObject> =
            Api::namespaced_with(ctx.client.clone(), ns, &kind.resource());
        let want = desired.iter().find(|d| d.kind == kind);
        let existing = match api
            .list_metadata(&ListParams::default().labels(&selector))
            .await
        {
            Ok(l) => l.items,
            Err(kube::Error::Api(s)) if s.code == 404 => {
                let missing = Error::MissingApi {
                    kind: kind.as_str(),
                    api_version: kind.resource().api_version,
                };
                if kind == Kind::ScaledObject {
                    if want.is_some() {
                        return Err(missing);
                    }
                } else if want.is_some() {
                    // Without prometheus-operator the ScaledObject still works if Prometheus
                    // scrapes the pods some other way; say so once and carry on.
                    let note = format!(
                        "{missing}; the {} is skipped and the ScaledObject is applied without it",
                        kind.as_str()
                    );
                    if ctx.is_news(uid, "MonitorApiMissing", &note) {
                        ctx.event(obj, EventType::Warning, "MonitorApiMissing", note)
                            .await;
                    }
                }
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        for stale in existing.iter().filter(|m| generated_for(&m.metadata, uid)) {
            let name = stale.metadata.name.clone().unwrap_or_default();
            if want.is_some_and(|w| w.name == name) {
                continue;
            }
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: stale.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match api.delete(&name, &dp).await {
                Ok(_) => outcome
                    .changed
                    .push(format!("deleted {} {name}", kind.as_str())),
                // Gone already, or replaced by a new object we must not touch.
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
        let Some(want) = want else { continue };
        match apply_one(&api, want, isvc_name, uid, ns).await {
            Ok((changed, status)) => {
                outcome.present.push(kind);
                if kind == Kind::ScaledObject {
                    outcome.scaled_object = Some(want.name.clone());
                    outcome.scaled_object_status = status;
                }
                if changed {
                    outcome
                        .changed
                        .push(format!("applied {} {}", kind.as_str(), want.name));
                }
            }
            Err(e) if e.is_api() => return Err(e),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(outcome),
    }
}

/// Applies one object unless a person's object of that name is in the way. Returns whether
/// anything was written, and the live object's `status`.
async fn apply_one(
    api: &Api<DynamicObject>,
    want: &Desired,
    isvc_name: &str,
    uid: &str,
    ns: &str,
) -> Result<(bool, Option<Value>), Error> {
    let mut status = None;
    if let Some(live) = api.get_opt(&want.name).await? {
        if !generated_for(&live.metadata, uid) {
            if generated_for_predecessor(&live.metadata, isvc_name) {
                return Err(Error::AwaitingCollection {
                    kind: want.kind.as_str(),
                    name: want.name.clone(),
                });
            }
            return Err(Error::NotOwned {
                kind: want.kind.as_str(),
                namespace: ns.to_string(),
                name: want.name.clone(),
            });
        }
        status = live.data.get("status").cloned();
        let live_json = serde_json::to_value(&live).map_err(Error::Serialize)?;
        if contains(&live_json, &want.body) {
            return Ok((false, status));
        }
    }
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(&want.name, &pp, &Patch::Apply(&want.body))
        .await?;
    Ok((true, status))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contains_ignores_server_fields_but_not_changed_values() {
        let want = json!({"spec": {"a": 1, "list": [{"x": 1}]}});
        let live = json!({"spec": {"a": 1, "b": 2, "list": [{"x": 1, "y": 0}]}, "status": {}});
        assert!(contains(&live, &want));
        assert!(!contains(
            &json!({"spec": {"a": 2, "list": [{"x": 1}]}}),
            &want
        ));
        assert!(!contains(&json!({"spec": {"a": 1, "list": []}}), &want));
        assert!(!contains(&json!({"spec": {"list": [{"x": 1}]}}), &want));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(1);
        assert_eq!(backoff(base, max, 1), base);
        assert_eq!(backoff(base, max, 3), Duration::from_millis(400));
        assert_eq!(backoff(base, max, 5), max);
        assert_eq!(backoff(base, max, u32::MAX), max);
    }

    #[test]
    fn the_scale_target_prefers_the_conventional_name_and_skips_workers_and_deleted() {
        let pick = |found: &[(&'static str, bool)]| {
            choose_deployment(found.iter().copied(), "m-predictor")
        };
        assert_eq!(pick(&[]), None);
        assert_eq!(
            pick(&[("m-predictor-default", false), ("m-predictor", false)]).as_deref(),
            Some("m-predictor")
        );
        // KServe 0.10 naming: the only Deployment there is.
        assert_eq!(
            pick(&[("m-predictor-default", false)]).as_deref(),
            Some("m-predictor-default")
        );
        // Several unconventional names: the first by name, whatever the listing order.
        assert_eq!(
            pick(&[("m-z-predictor", false), ("m-a-predictor", false)]).as_deref(),
            Some("m-a-predictor")
        );
        assert_eq!(pick(&[("m-predictor-worker", false)]), None);
        assert_eq!(
            pick(&[
                ("m-predictor-worker", false),
                ("m-predictor-default", false)
            ])
            .as_deref(),
            Some("m-predictor-default")
        );
        assert_eq!(
            pick(&[("m-predictor", true), ("m-predictor-default", false)]).as_deref(),
            Some("m-predictor-default")
        );
        assert_eq!(pick(&[("m-predictor", true)]), None);
    }

    #[test]
    fn the_controller_record_is_not_read_as_a_request() {
        // The spec parser rejects unknown keys under the prefix; the controller's own
        // record must not turn every managed InferenceService into a planning error.
        let annotations = BTreeMap::from([
            ("scaling.io/strategy".to_string(), "queue".to_string()),
            (
                format!("scaling.io/{}", keys::OBSERVED_GENERATION),
                "3".to_string(),
            ),
        ]);
        let spec = crate::spec::parse(&annotations, "scaling.io").unwrap();
        assert!(spec.is_some());
        assert_eq!(
            crate::spec::input_keys(&annotations, "scaling.io").count(),
            1
        );
    }

    #[test]
    fn the_hash_follows_the_planned_object() {
        let a = json!({"spec": {"min": 1}});
        let b = json!({"spec": {"min": 2}});
        assert_eq!(inputs_hash(&a), inputs_hash(&a.clone()));
        assert_ne!(inputs_hash(&a), inputs_hash(&b));
        assert_eq!(inputs_hash(&a).len(), 32);
    }
}
