//! One reconcile of one InferenceService: plan, resolve the live Deployment, write the
//! annotations admission would have written, sync the generated objects (`apply`), record
//! the observed generation, and report.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::core::{ApiResource, DynamicObject};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use serde_json::json;

use super::Error;
use super::apply::{Outcome, desired_objects, sync_objects};
use super::cache::ScopeCaches;
use super::context::Context;
use super::readiness;
use crate::core::isvc::{self, Isvc};
use crate::core::names::{self, FIELD_MANAGER};
use crate::core::plan::{self, Plan};
use crate::core::spec::keys;
use crate::metrics::ResultLabels;

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
    let isvc =
        super::cache::isvc_view(obj, &ns).map_err(|e| Error::Plan(plan::PlanError::Field(e)))?;
    let wants = isvc
        .annotations
        .contains_key(&format!("{prefix}/{}", keys::STRATEGY));

    let caches = ctx.caches_for(&ns).await.ok_or(Error::NotSynced)?;
    let live = if wants {
        resolve_deployment(caches, &ns, &isvc)
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
    let planned = ctx.scaling.plan(input, None)?;

    // Annotations exactly as admission writes them (admission cannot see the cluster, so it
    // plans without the live Deployment). Writing the same values means the webhook, which
    // sees this patch as an UPDATE, agrees with it instead of fighting over it.
    let admission_annotations = if live.is_some() {
        ctx.scaling
            .plan(
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
        ctx.throttle.acquire().await;
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
    let desired = desired_objects(&planned, &owner, prefix, obj.metadata.generation)?;
    let outcome = sync_objects(ctx, caches, obj, &ns, &isvc.name, &uid, &desired).await?;

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

/// KEDA's verdict on the ScaledObject, repeated on the InferenceService: a new problem at
/// once, the same one again only after `readiness::REPEAT_AFTER` (KEDA flips `Ready` back to
/// True at each of its reconciles while a trigger keeps failing, so "ready again" is no sign
/// that the problem is over).
async fn report_readiness(ctx: &Context, obj: &DynamicObject, uid: &str, outcome: &Outcome) {
    let Some(name) = &outcome.scaled_object else {
        return;
    };
    if let Some(note) = readiness::problem(name, outcome.scaled_object_status.as_ref())
        && ctx.is_news_within(uid, readiness::REASON, &note, Some(readiness::REPEAT_AFTER))
    {
        ctx.event(obj, EventType::Warning, readiness::REASON, note)
            .await;
    }
    if let Some(note) = readiness::fallback(name, outcome.scaled_object_status.as_ref())
        && ctx.is_news_within(
            uid,
            readiness::FALLBACK_REASON,
            &note,
            Some(readiness::REPEAT_AFTER),
        )
    {
        ctx.event(obj, EventType::Warning, readiness::FALLBACK_REASON, note)
            .await;
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
/// Deployments carry the same labels and are never the scale target. Read from the
/// Deployment cache: a Deployment that appears triggers this InferenceService through that
/// same cache, so the reconcile it starts finds it.
fn resolve_deployment(caches: &ScopeCaches, ns: &str, isvc: &Isvc) -> Option<String> {
    let found = caches.predictor_deployments(ns, &isvc.name);
    let conventional = names::predictor_deployment(&isvc.name, isvc.predictor.name.as_deref());
    choose_deployment(
        found
            .iter()
            .map(|(name, deleting)| (name.as_str(), *deleting)),
        &conventional,
    )
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let spec = crate::core::spec::parse(&annotations, "scaling.io").unwrap();
        assert!(spec.is_some());
        assert_eq!(
            crate::core::spec::input_keys(&annotations, "scaling.io").count(),
            1
        );
    }
}
