//! Writing the plan to the cluster: the objects it asks for, made ready to apply (owner
//! reference, inputs hash), applied by server-side apply unless someone else's object holds
//! the name, and ours that it no longer asks for deleted.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::core::DynamicObject;
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::cache::{self, ScopeCaches};
use super::context::Context;
use super::ownership::{Claim, claim, stale};
use super::{Error, Kind};
use crate::core::names::FIELD_MANAGER;
use crate::core::plan::Plan;
use crate::core::resources::Monitor;
use crate::core::spec::keys;

/// Annotation key (under the prefix) on generated objects: hash of the planned object.
pub const INPUTS_HASH: &str = "inputs-hash";

/// One generated object, ready to apply.
#[derive(Debug)]
pub(super) struct Desired {
    kind: Kind,
    name: String,
    body: Value,
    /// Of the body as applied, to recognise a live object already checked against it.
    digest: u64,
}

/// `generation`: the InferenceService's `metadata.generation`, recorded on the ScaledObject as
/// `<prefix>/observed-generation`. The record lives there and not on the InferenceService:
/// KServe copies the InferenceService's annotations into the predictor's pod template, so
/// every write of a record there would restart the model servers.
pub(super) fn desired_objects(
    planned: &Plan,
    owner: &OwnerReference,
    prefix: &str,
    generation: Option<i64>,
) -> Result<Vec<Desired>, Error> {
    let mut out = Vec::new();
    if let Some(so) = &planned.scaled_object {
        let body = serde_json::to_value(so).map_err(Error::Serialize)?;
        let mut so = finish(Kind::ScaledObject, body, owner, prefix);
        if let (Some(g), Some(annotations)) = (
            generation,
            so.body
                .pointer_mut("/metadata/annotations")
                .and_then(Value::as_object_mut),
        ) {
            annotations.insert(
                format!("{prefix}/{}", keys::OBSERVED_GENERATION),
                json!(g.to_string()),
            );
        }
        so.digest = cache::digest(&so.body);
        out.push(so);
    }
    match &planned.monitor {
        Some(m @ Monitor::Service(_)) => {
            let body = m.to_json().map_err(Error::Serialize)?;
            out.push(finish(Kind::ServiceMonitor, body, owner, prefix));
        }
        Some(m @ Monitor::Pod(_)) => {
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
    let digest = cache::digest(&body);
    Desired {
        kind,
        name,
        body,
        digest,
    }
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
pub(super) struct Outcome {
    /// Human-readable writes ("applied ScaledObject x", "deleted ServiceMonitor y").
    pub changed: Vec<String>,
    /// Kinds that exist as planned after this reconcile.
    pub present: Vec<Kind>,
    /// The ScaledObject applied, and its `status` as KEDA last wrote it (read before applying;
    /// an apply never changes status).
    pub scaled_object: Option<String>,
    pub scaled_object_status: Option<Value>,
}

/// Brings the generated objects of every kind to the plan: deletes ours that are no longer
/// planned, applies the planned ones. A conflict on one kind does not stop the others; an
/// API error stops the reconcile (it is retried). What exists is read from the watch caches;
/// see `apply_one` for the one read that may go to the API server.
pub(super) async fn sync_objects(
    ctx: &Context,
    caches: &ScopeCaches,
    obj: &DynamicObject,
    ns: &str,
    isvc_name: &str,
    uid: &str,
    desired: &[Desired],
) -> Result<Outcome, Error> {
    let mut outcome = Outcome::default();
    let mut first_error = None;
    for kind in Kind::ALL {
        let want = desired.iter().find(|d| d.kind == kind);
        // Only kinds served when leadership was won are watched and cached.
        let Some(store) = caches.owned(kind) else {
            report_missing_api(ctx, obj, uid, kind, want.is_some()).await?;
            continue;
        };
        let api: Api<DynamicObject> =
            Api::namespaced_with(ctx.client.clone(), ns, &kind.resource());
        let existing = cache::labelled_for(store, ns, isvc_name);
        let wanted = want.map(|w| w.name.as_str());
        for meta in stale(existing.iter(), uid, wanted) {
            if delete_one(ctx, &api, meta).await? {
                let name = meta.name.as_deref().unwrap_or_default();
                outcome
                    .changed
                    .push(format!("deleted {} {name}", kind.as_str()));
            }
        }
        let Some(want) = want else {
            ctx.set_verified(uid, kind, None);
            continue;
        };
        match apply_one(ctx, store, &api, want, isvc_name, uid, ns).await {
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

/// What a kind whose API is not served (its CRD is not installed) means for this reconcile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WithoutApi {
    /// Nothing of this kind is planned: nothing to do.
    Skip,
    /// A planned monitor or rule: the ScaledObject still works if Prometheus scrapes the
    /// pods some other way; say so once and carry on.
    Warn,
    /// A planned ScaledObject without KEDA: the reconcile fails.
    Fail,
}

fn without_api(kind: Kind, wanted: bool) -> WithoutApi {
    match (kind, wanted) {
        (_, false) => WithoutApi::Skip,
        (Kind::ScaledObject, true) => WithoutApi::Fail,
        (_, true) => WithoutApi::Warn,
    }
}

async fn report_missing_api(
    ctx: &Context,
    obj: &DynamicObject,
    uid: &str,
    kind: Kind,
    wanted: bool,
) -> Result<(), Error> {
    let missing = Error::MissingApi {
        kind: kind.as_str(),
        api_version: kind.resource().api_version,
    };
    match without_api(kind, wanted) {
        WithoutApi::Skip => Ok(()),
        WithoutApi::Fail => Err(missing),
        WithoutApi::Warn => {
            let note = format!(
                "{missing}; the {} is skipped and the ScaledObject is applied without it",
                kind.as_str()
            );
            if ctx.is_news(uid, "MonitorApiMissing", &note) {
                ctx.event(obj, EventType::Warning, "MonitorApiMissing", note)
                    .await;
            }
            Ok(())
        }
    }
}

/// Deletes one stale object, only if it is still the object we saw (uid precondition).
/// Returns whether it was deleted; gone already, or replaced by a new object we must not
/// touch, is not an error.
async fn delete_one(
    ctx: &Context,
    api: &Api<DynamicObject>,
    meta: &ObjectMeta,
) -> Result<bool, Error> {
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: meta.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    let name = meta.name.as_deref().unwrap_or_default();
    ctx.throttle.acquire().await;
    match api.delete(name, &dp).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Whose the object holding the planned name is; an error unless it is ours.
fn check_claim(
    meta: &ObjectMeta,
    want: &Desired,
    uid: &str,
    isvc_name: &str,
    ns: &str,
) -> Result<(), Error> {
    match claim(meta, uid, isvc_name) {
        Claim::Ours => Ok(()),
        Claim::Predecessor => Err(Error::AwaitingCollection {
            kind: want.kind.as_str(),
            name: want.name.clone(),
        }),
        Claim::Foreign => Err(Error::NotOwned {
            kind: want.kind.as_str(),
            namespace: ns.to_string(),
            name: want.name.clone(),
        }),
    }
}

/// Applies one object unless a person's object of that name is in the way. Returns whether
/// anything was written, and the live object's `status`.
///
/// The cache (every object of the kind, trimmed) answers whose the name is and, through the
/// digest, whether the object changed since it was last seen to hold the plan; then nothing
/// is read or written. The live object is read only when it did change, or was never
/// checked in this leadership term: deciding whether it still holds the plan takes the whole
/// object (`contains`), which the cache does not keep. A name absent from the cache is
/// applied at once, unless this term applied it already (the cache may not have seen that
/// write yet; the live read avoids writing it, and reporting it, twice). The cache holds
/// every object of the kind, so a person's object is in it unless it was created within the
/// watch's delay: the same kind of window as between a GET and the apply that follows it.
async fn apply_one(
    ctx: &Context,
    store: &Store<DynamicObject>,
    api: &Api<DynamicObject>,
    want: &Desired,
    isvc_name: &str,
    uid: &str,
    ns: &str,
) -> Result<(bool, Option<Value>), Error> {
    let key = ObjectRef::new_with(&want.name, want.kind.resource()).within(ns);
    let read_live = match store.get(&key) {
        Some(cached) => {
            check_claim(&cached.metadata, want, uid, isvc_name, ns)?;
            let unchanged = cache::cached_digest(&cached)
                .is_some_and(|d| ctx.is_verified(uid, want.kind, want.digest, d));
            if unchanged {
                return Ok((false, cache::cached_status(&cached)));
            }
            true
        }
        None => ctx.was_verified(uid, want.kind, want.digest),
    };
    let mut status = None;
    if read_live {
        ctx.throttle.acquire().await;
        if let Some(live) = api.get_opt(&want.name).await? {
            check_claim(&live.metadata, want, uid, isvc_name, ns)?;
            status = live.data.get("status").cloned();
            let live_json = serde_json::to_value(&live).map_err(Error::Serialize)?;
            if contains(&live_json, &want.body) {
                ctx.set_verified(uid, want.kind, Some((want.digest, cache::digest_of(&live))));
                return Ok((false, status));
            }
        }
    }
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    ctx.throttle.acquire().await;
    let applied = api
        .patch(&want.name, &pp, &Patch::Apply(&want.body))
        .await?;
    ctx.set_verified(
        uid,
        want.kind,
        Some((want.digest, cache::digest_of(&applied))),
    );
    Ok((true, status))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn only_a_planned_object_needs_its_api() {
        let cases = [
            (Kind::ScaledObject, true, WithoutApi::Fail),
            (Kind::ScaledObject, false, WithoutApi::Skip),
            (Kind::ServiceMonitor, true, WithoutApi::Warn),
            (Kind::PodMonitor, true, WithoutApi::Warn),
            (Kind::PrometheusRule, true, WithoutApi::Warn),
            (Kind::PodMonitor, false, WithoutApi::Skip),
        ];
        for (kind, wanted, want) in cases {
            assert_eq!(without_api(kind, wanted), want, "{kind:?} wanted={wanted}");
        }
    }

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
    fn the_hash_follows_the_planned_object() {
        let a = json!({"spec": {"min": 1}});
        let b = json!({"spec": {"min": 2}});
        assert_eq!(inputs_hash(&a), inputs_hash(&a.clone()));
        assert_ne!(inputs_hash(&a), inputs_hash(&b));
        assert_eq!(inputs_hash(&a).len(), 32);
    }
}
