//! What the controller's watch caches keep, and the reads a reconcile serves from them.
//!
//! Every cached object is trimmed, before it enters its store, to the fields a reconcile or a
//! trigger reads: a whole InferenceService carries a `kubectl` last-applied copy and
//! managedFields, each several times the size of what planning needs, and the heap of a
//! cluster-wide controller is mostly its caches.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::{DynamicObject, PartialObjectMeta};
use kube::runtime::reflector::Store;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::Kind;
use crate::core::isvc::{FieldError, Isvc};
use crate::core::plan::{ISVC_LABEL, MANAGED_BY_LABEL};

/// `kubectl apply`'s copy of the whole object: never read by planning.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// An InferenceService as planning reads it: name, namespace, uid, generation, deletion
/// time, resourceVersion (events refer to it) and annotations without the last-applied copy;
/// of the body only `spec.predictor` and `status.deploymentMode`, kept as
/// `[predictor as JSON text, deploymentMode]` (read back by [`isvc_view`]). A JSON tree costs
/// a map node of about 600 bytes per nested object, several KiB for a predictor that is a
/// few hundred bytes of text; the text is parsed again at each reconcile, in microseconds.
pub fn trim_isvc(obj: &mut DynamicObject) {
    let m = &mut obj.metadata;
    m.managed_fields = None;
    m.labels = None;
    m.owner_references = None;
    m.finalizers = None;
    m.creation_timestamp = None;
    if let Some(a) = m.annotations.as_mut() {
        a.remove(LAST_APPLIED);
    }
    let predictor = obj
        .data
        .pointer("/spec/predictor")
        .map_or(Value::Null, |p| Value::String(p.to_string()));
    let mode = obj
        .data
        .pointer("/status/deploymentMode")
        .cloned()
        .unwrap_or(Value::Null);
    obj.data = Value::Array(vec![predictor, mode]);
}

/// The planner's view of an InferenceService from the cache (see [`trim_isvc`]).
pub fn isvc_view(obj: &DynamicObject, fallback_namespace: &str) -> Result<Isvc, FieldError> {
    let predictor = match obj.data.get(0) {
        Some(Value::String(text)) => {
            Some(serde_json::from_str::<Value>(text).map_err(|e| FieldError {
                field: "spec.predictor".into(),
                problem: format!("is not JSON: {e}"),
            })?)
        }
        _ => None,
    };
    Isvc::from_fields(
        &obj.metadata,
        predictor.as_ref(),
        obj.data.get(1),
        fallback_namespace,
    )
}

/// A predictor Deployment as the scale-target lookup reads it: name, namespace, the
/// InferenceService label and whether it is being deleted.
pub fn trim_deployment(d: &mut PartialObjectMeta<Deployment>) {
    let m = &mut d.metadata;
    let isvc = m.labels.as_ref().and_then(|l| l.get(ISVC_LABEL)).cloned();
    *m = ObjectMeta {
        name: m.name.take(),
        namespace: m.namespace.take(),
        deletion_timestamp: m.deletion_timestamp.take(),
        labels: isvc.map(|v| BTreeMap::from([(ISVC_LABEL.to_string(), v)])),
        ..ObjectMeta::default()
    };
}

/// A ScaledObject, monitor or rule as ownership, staleness and change detection read it:
/// name, namespace, uid, the managed-by and InferenceService labels, the controlling owner
/// reference, the deletion time, KEDA's conditions (ScaledObject only), and a digest of the
/// whole object. The digest is taken before trimming, so an edit anywhere but `status`
/// shows in it.
pub fn trim_owned(obj: &mut DynamicObject) {
    let digest = digest_of(obj);
    let conditions = obj.data.pointer("/status/conditions").cloned();
    // Only which triggers fail, not KEDA's failure counts: those change at every poll and
    // would wake the reconciler for nothing.
    let failing: Vec<Value> = obj
        .data
        .get("status")
        .into_iter()
        .flat_map(super::readiness::failing_triggers)
        .map(|metric| Value::String(metric.to_string()))
        .collect();
    let m = &mut obj.metadata;
    let labels = m.labels.take().map(|l| {
        l.into_iter()
            .filter(|(k, _)| k == MANAGED_BY_LABEL || k == ISVC_LABEL)
            .collect::<BTreeMap<_, _>>()
    });
    let owner = m
        .owner_references
        .take()
        .and_then(|rs| rs.into_iter().find(|r| r.controller == Some(true)));
    *m = ObjectMeta {
        name: m.name.take(),
        namespace: m.namespace.take(),
        uid: m.uid.take(),
        deletion_timestamp: m.deletion_timestamp.take(),
        labels: labels.filter(|l| !l.is_empty()),
        owner_references: owner.map(|o| vec![o]),
        ..ObjectMeta::default()
    };
    // `[digest, conditions, failing triggers]`: an array, not a map, for the same reason as
    // in `trim_isvc`.
    obj.data = Value::Array(vec![
        Value::String(digest.to_string()),
        conditions.unwrap_or(Value::Null),
        Value::Array(failing),
    ]);
}

/// The digest of a generated object as its writers see it: everything but `status` and the
/// metadata the server keeps (resourceVersion, managedFields, timestamps, generation), so a
/// status update by KEDA leaves it as it is and an edit of the spec, labels, annotations or
/// owner references changes it.
pub fn digest_of(obj: &DynamicObject) -> u64 {
    let mut v = serde_json::to_value(obj).unwrap_or(Value::Null);
    if let Some(o) = v.as_object_mut() {
        o.remove("status");
        if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
            m.retain(|k, _| {
                matches!(
                    k.as_str(),
                    "name" | "namespace" | "labels" | "annotations" | "ownerReferences"
                )
            });
        }
    }
    digest(&v)
}

/// First 8 bytes of the SHA-256 of the value's JSON (keys sorted).
pub fn digest(v: &Value) -> u64 {
    let d = Sha256::digest(v.to_string().as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_le_bytes(b)
}

/// The digest a cached generated object carries.
pub fn cached_digest(obj: &DynamicObject) -> Option<u64> {
    obj.data.get(0)?.as_str()?.parse().ok()
}

/// The `status` a cached generated object carries: KEDA's conditions, and `health` with the
/// triggers that fail (their failure counts are not kept).
pub fn cached_status(obj: &DynamicObject) -> Option<Value> {
    let c = obj.data.get(1).filter(|c| !c.is_null())?;
    let health: serde_json::Map<String, Value> = obj
        .data
        .get(2)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|m| (m.to_string(), json!({"status": "Failing"})))
        .collect();
    if health.is_empty() {
        return Some(json!({ "conditions": c }));
    }
    Some(json!({ "conditions": c, "health": health }))
}

/// The watch caches of one scope (the whole cluster, or one namespace).
#[derive(Clone)]
pub struct ScopeCaches {
    pub namespace: Option<String>,
    pub deployments: Store<PartialObjectMeta<Deployment>>,
    /// One store per generated kind whose API is served; every object of the kind, not only
    /// ours, so that a person's object with a planned name is seen without a GET.
    pub owned: Vec<(Kind, Store<DynamicObject>)>,
}

impl ScopeCaches {
    pub fn covers(&self, ns: &str) -> bool {
        self.namespace.as_deref().is_none_or(|n| n == ns)
    }

    pub fn owned(&self, kind: Kind) -> Option<&Store<DynamicObject>> {
        self.owned.iter().find(|(k, _)| *k == kind).map(|(_, s)| s)
    }

    /// Every cache has its first full list.
    pub async fn wait_until_ready(&self) -> bool {
        if self.deployments.wait_until_ready().await.is_err() {
            return false;
        }
        for (_, s) in &self.owned {
            if s.wait_until_ready().await.is_err() {
                return false;
            }
        }
        true
    }

    /// Names of the predictor Deployments labelled for `isvc` in `ns`, with whether each is
    /// being deleted.
    pub fn predictor_deployments(&self, ns: &str, isvc: &str) -> Vec<(String, bool)> {
        self.deployments
            .state_filter(|d| {
                d.metadata.namespace.as_deref() == Some(ns)
                    && d.metadata.labels.as_ref().and_then(|l| l.get(ISVC_LABEL))
                        == Some(&isvc.to_string())
            })
            .iter()
            .filter_map(|d| {
                let name = d.metadata.name.clone()?;
                Some((name, d.metadata.deletion_timestamp.is_some()))
            })
            .collect()
    }
}

/// The cached objects of `store` in `ns` labelled for the InferenceService `isvc`.
pub fn labelled_for(store: &Store<DynamicObject>, ns: &str, isvc: &str) -> Vec<ObjectMeta> {
    store
        .state_filter(|o| {
            o.metadata.namespace.as_deref() == Some(ns)
                && o.metadata.labels.as_ref().and_then(|l| l.get(ISVC_LABEL))
                    == Some(&isvc.to_string())
        })
        .iter()
        .map(|o| o.metadata.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use kube::core::ApiResource;
    use kube::runtime::reflector::{ObjectRef, store};
    use kube::runtime::watcher::Event;

    use super::*;
    use crate::core::isvc::Isvc;
    use crate::core::plan::MANAGED_BY;

    fn dynamic(v: Value) -> DynamicObject {
        serde_json::from_value(v).unwrap()
    }

    fn kubectl_applied_isvc() -> Value {
        json!({
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "metadata": {
                "name": "m", "namespace": "ns", "uid": "u1", "generation": 3,
                "resourceVersion": "42",
                "labels": {"team": "a"},
                "annotations": {
                    "scaling.io/strategy": "tokens",
                    LAST_APPLIED: "{\"a very\":\"long copy\"}",
                },
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}],
                "finalizers": ["inferenceservice.finalizers"],
                "creationTimestamp": "2026-01-01T00:00:00Z",
            },
            "spec": {
                "predictor": {"model": {"modelFormat": {"name": "vLLM"}}, "minReplicas": 1},
                "transformer": {"containers": [{"name": "t", "image": "x"}]},
            },
            "status": {"deploymentMode": "RawDeployment", "url": "http://m", "conditions": []},
        })
    }

    #[test]
    fn a_trimmed_isvc_keeps_exactly_what_planning_reads() {
        let full = dynamic(kubectl_applied_isvc());
        let mut trimmed = full.clone();
        trim_isvc(&mut trimmed);
        let m = &trimmed.metadata;
        assert_eq!(m.managed_fields, None);
        assert_eq!(m.labels, None);
        assert_eq!(m.finalizers, None);
        let annotations = m.annotations.clone().unwrap_or_default();
        assert!(!annotations.contains_key(LAST_APPLIED));
        assert_eq!(annotations["scaling.io/strategy"], "tokens");
        assert_eq!(m.uid.as_deref(), Some("u1"));
        assert_eq!(m.generation, Some(3));
        assert_eq!(m.resource_version.as_deref(), Some("42"));
        // Planning sees the same InferenceService either way.
        let mut from_full = Isvc::from_parts(&full.metadata, &full.data, "ns").unwrap();
        from_full.annotations.remove(LAST_APPLIED);
        let from_cache = isvc_view(&trimmed, "ns").unwrap();
        assert_eq!(format!("{from_full:?}"), format!("{from_cache:?}"));
        assert_eq!(
            from_cache.status_deployment_mode.as_deref(),
            Some("RawDeployment")
        );
        // Nothing of the transformer or the rest of the status is kept.
        let kept = trimmed.data.to_string();
        assert!(
            !kept.contains("transformer") && !kept.contains("http://m"),
            "{kept}"
        );
    }

    #[test]
    fn a_trimmed_isvc_without_predictor_or_status_stays_without() {
        let mut o = dynamic(json!({
            "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": "m", "namespace": "ns"}, "spec": {},
        }));
        trim_isvc(&mut o);
        let view = isvc_view(&o, "ns").unwrap();
        assert_eq!(view.status_deployment_mode, None);
        assert_eq!(
            format!("{:?}", view.predictor),
            format!(
                "{:?}",
                Isvc::from_parts(&o.metadata, &json!({}), "ns")
                    .unwrap()
                    .predictor
            )
        );
    }

    fn scaled_object(extra_spec: Value) -> DynamicObject {
        let mut v = json!({
            "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
            "metadata": {
                "name": "m-predictor", "namespace": "ns", "uid": "so1", "resourceVersion": "7",
                "labels": {MANAGED_BY_LABEL: MANAGED_BY, ISVC_LABEL: "m", "component": "predictor"},
                "annotations": {"scaling.io/inputs-hash": "abc"},
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "c"},
                    {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
                     "name": "m", "uid": "u1", "controller": true},
                ],
                "managedFields": [{"manager": "kserve-keda-webhook"}],
            },
            "spec": {"minReplicaCount": 1, "triggers": [{"type": "prometheus"}]},
            "status": {"conditions": [{"type": "Ready", "status": "True"}], "hpaName": "keda-hpa"},
        });
        json_patch::merge(&mut v["spec"], &extra_spec);
        dynamic(v)
    }

    #[test]
    fn a_trimmed_generated_object_keeps_ownership_conditions_and_a_digest() {
        let full = scaled_object(json!({}));
        let mut c = full.clone();
        trim_owned(&mut c);
        let m = &c.metadata;
        assert_eq!(m.name.as_deref(), Some("m-predictor"));
        assert_eq!(m.uid.as_deref(), Some("so1"));
        assert_eq!(
            m.labels
                .clone()
                .unwrap_or_default()
                .keys()
                .collect::<Vec<_>>(),
            [MANAGED_BY_LABEL, ISVC_LABEL]
        );
        let owners = m.owner_references.clone().unwrap_or_default();
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0].uid, "u1");
        assert_eq!(m.annotations, None);
        assert_eq!(m.managed_fields, None);
        assert!(super::super::ownership::generated_for(m, "u1"));
        assert_eq!(
            cached_status(&c),
            Some(json!({"conditions": full.data.pointer("/status/conditions")}))
        );
        assert!(!c.data.to_string().contains("triggers"));
        let mut no_status = scaled_object(json!({}));
        no_status.data.as_object_mut().unwrap().remove("status");
        trim_owned(&mut no_status);
        assert_eq!(cached_status(&no_status), None);
        assert_eq!(cached_digest(&c), Some(digest_of(&full)));
    }

    #[test]
    fn a_trimmed_scaled_object_keeps_which_triggers_fail_but_not_how_often() {
        let mut so = scaled_object(json!({}));
        so.data["status"]["health"] = json!({
            "s0-prometheus": {"numberOfFailures": 4, "status": "Failing"},
            "s1-prometheus": {"numberOfFailures": 0, "status": "Happy"},
        });
        let mut more = so.clone();
        more.data["status"]["health"]["s0-prometheus"]["numberOfFailures"] = json!(5);
        trim_owned(&mut so);
        trim_owned(&mut more);
        assert_eq!(so.data, more.data, "a new failure count is no change");
        assert_eq!(
            cached_status(&so).and_then(|s| s.get("health").cloned()),
            Some(json!({"s0-prometheus": {"status": "Failing"}}))
        );
    }

    #[test]
    fn the_digest_ignores_status_and_server_metadata_but_not_edits() {
        let base = digest_of(&scaled_object(json!({})));
        let mut status_only = scaled_object(json!({}));
        status_only.data["status"] = json!({"conditions": [{"type": "Ready", "status": "False"}]});
        status_only.metadata.resource_version = Some("8".into());
        status_only.metadata.managed_fields = None;
        assert_eq!(digest_of(&status_only), base);

        assert_ne!(
            digest_of(&scaled_object(json!({"minReplicaCount": 2}))),
            base
        );
        let mut relabelled = scaled_object(json!({}));
        relabelled
            .metadata
            .labels
            .get_or_insert_default()
            .insert("x".into(), "y".into());
        assert_ne!(digest_of(&relabelled), base);
        let mut reannotated = scaled_object(json!({}));
        reannotated.metadata.annotations = None;
        assert_ne!(digest_of(&reannotated), base);
    }

    #[test]
    fn a_deployment_that_appeared_in_the_cache_is_found_and_one_being_deleted_is_marked() {
        let (reader, mut writer) = store::<PartialObjectMeta<Deployment>>();
        let caches = ScopeCaches {
            namespace: None,
            deployments: reader,
            owned: Vec::new(),
        };
        let dep = |name: &str, isvc: &str, ns: &str, deleting: bool| {
            let mut d: PartialObjectMeta<Deployment> = serde_json::from_value(json!({
                "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMeta",
                "metadata": {
                    "name": name, "namespace": ns,
                    "labels": {ISVC_LABEL: isvc, "component": "predictor", "app": "x"},
                    "annotations": {"deployment.kubernetes.io/revision": "1"},
                },
            }))
            .unwrap();
            if deleting {
                d.metadata.deletion_timestamp =
                    Some(serde_json::from_value(json!("2026-01-01T00:00:00Z")).unwrap());
            }
            trim_deployment(&mut d);
            d
        };
        writer.apply_watcher_event(&Event::Init);
        writer.apply_watcher_event(&Event::InitDone);
        assert!(caches.predictor_deployments("ns", "m").is_empty());
        let d = dep("m-predictor-default", "m", "ns", false);
        assert_eq!(d.metadata.annotations, None);
        assert_eq!(d.metadata.labels.as_ref().map(BTreeMap::len), Some(1));
        writer.apply_watcher_event(&Event::Apply(d));
        writer.apply_watcher_event(&Event::Apply(dep("m-predictor", "m", "other", false)));
        writer.apply_watcher_event(&Event::Apply(dep("n-predictor", "n", "ns", false)));
        assert_eq!(
            caches.predictor_deployments("ns", "m"),
            [("m-predictor-default".to_string(), false)]
        );
        writer.apply_watcher_event(&Event::Apply(dep("m-predictor-default", "m", "ns", true)));
        assert_eq!(
            caches.predictor_deployments("ns", "m"),
            [("m-predictor-default".to_string(), true)]
        );
        writer.apply_watcher_event(&Event::Delete(dep("m-predictor-default", "m", "ns", true)));
        assert!(caches.predictor_deployments("ns", "m").is_empty());
    }

    #[test]
    fn labelled_for_finds_only_that_isvcs_objects_in_that_namespace() {
        let ar = ApiResource::erase::<crate::core::resources::ScaledObject>(&());
        let writer_store =
            kube::runtime::reflector::store::Writer::<DynamicObject>::new(ar.clone());
        let reader = writer_store.as_reader();
        let mut writer = writer_store;
        let mut add = |name: &str, ns: &str, isvc: &str| {
            let mut o = scaled_object(json!({}));
            o.metadata.name = Some(name.into());
            o.metadata.namespace = Some(ns.into());
            o.metadata
                .labels
                .get_or_insert_default()
                .insert(ISVC_LABEL.into(), isvc.into());
            trim_owned(&mut o);
            writer.apply_watcher_event(&Event::Apply(o));
        };
        add("a", "ns", "m");
        add("b", "ns", "m");
        add("c", "other", "m");
        add("d", "ns", "n");
        let mut names: Vec<_> = labelled_for(&reader, "ns", "m")
            .into_iter()
            .filter_map(|m| m.name)
            .collect();
        names.sort();
        assert_eq!(names, ["a", "b"]);
        let got = reader.get(&ObjectRef::new_with("a", ar).within("ns"));
        assert!(got.is_some_and(|o| cached_digest(&o).is_some()));
    }
}
