//! An in-memory Kubernetes API server for controller tests, plugged into `kube::Client` as a
//! tower service. It exists for fast, deterministic fault injection; the real control plane
//! (`scripts/e2e`) checks what this does not model.
//!
//! Modelled, because the controller's safety depends on it:
//! - uid, monotonic resourceVersion, generation (bumped only when something outside metadata
//!   and status changes); a write that changes nothing is a no-op without a watch event.
//! - GET, LIST and WATCH with label selectors, validated like the server's (a malformed key
//!   or value is 400 BadRequest); lists in pages (`limit`, `continue`; later pages report the
//!   first page's resourceVersion, so a watch from it replays what changed in between);
//!   watches are JSON lines replayed from a resourceVersion and closed after a timeout; a
//!   watch that falls behind the change feed catches up from the history instead of ending;
//!   metadata-only responses (`PartialObjectMetadata`).
//! - create (409 AlreadyExists), update with a resourceVersion precondition (409 Conflict),
//!   merge / JSON patches, and the status subresource: writes to the object keep the stored
//!   `status`, writes to `/status` change nothing else.
//! - server-side apply with field ownership: every apply and update records which fields its
//!   field manager owns (returned in `metadata.managedFields`); an apply that would change a
//!   field another manager owns is refused with 409 Conflict unless forced, in which case the
//!   fields change hands; fields a manager stops applying are removed unless another manager
//!   owns them; `ownerReferences` merge by uid, maps key by key, other lists are atomic.
//! - delete with `uid` and `resourceVersion` preconditions (409 Conflict when they do not
//!   hold), finalizers (delete sets `deletionTimestamp`; removing the last finalizer deletes),
//!   and background garbage collection of objects whose owners are all gone, either at once
//!   or, after `hold_garbage_collection`, only when the test runs `collect_garbage`.
//! - 404 for resources it does not serve (a CRD not installed), injected faults per verb and
//!   client, a "restart" (open watches end, connections refused for a while), and history
//!   compaction (a watch resuming from before it gets 410 Gone and the client must re-list).
//!
//! Not modelled: authentication and RBAC (every request is allowed; `seen` records the calls
//! so tests can derive the permissions needed), admission (webhooks, defaulting, schema
//! validation of bodies: the CRD-schema test checks generated bodies), field selectors,
//! expired continue tokens, foreground / orphan propagation and `blockOwnerDeletion`, strategic-merge
//! patch semantics beyond what a JSON merge patch does for the fields used here,
//! managedFields in the exact FieldsV1 encoding (paths are JSON pointers here), `dryRun`,
//! and namespaces as objects (any namespace exists).

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use kube::client::Body;
use serde_json::{Value, json};
use tokio::sync::broadcast;

/// A resource type the fake serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Res {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub kind: &'static str,
}

impl Res {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

pub const ISVC: Res = Res {
    group: "serving.kserve.io",
    version: "v1beta1",
    plural: "inferenceservices",
    kind: "InferenceService",
};
pub const DEPLOYMENT: Res = Res {
    group: "apps",
    version: "v1",
    plural: "deployments",
    kind: "Deployment",
};
pub const SCALED_OBJECT: Res = Res {
    group: "keda.sh",
    version: "v1alpha1",
    plural: "scaledobjects",
    kind: "ScaledObject",
};
pub const SERVICE_MONITOR: Res = Res {
    group: "monitoring.coreos.com",
    version: "v1",
    plural: "servicemonitors",
    kind: "ServiceMonitor",
};
pub const POD_MONITOR: Res = Res {
    group: "monitoring.coreos.com",
    version: "v1",
    plural: "podmonitors",
    kind: "PodMonitor",
};
pub const PROMETHEUS_RULE: Res = Res {
    group: "monitoring.coreos.com",
    version: "v1",
    plural: "prometheusrules",
    kind: "PrometheusRule",
};
pub const LEASE: Res = Res {
    group: "coordination.k8s.io",
    version: "v1",
    plural: "leases",
    kind: "Lease",
};
pub const EVENT: Res = Res {
    group: "events.k8s.io",
    version: "v1",
    plural: "events",
    kind: "Event",
};
pub const SECRET: Res = Res {
    group: "",
    version: "v1",
    plural: "secrets",
    kind: "Secret",
};
/// Cluster-scoped: stored under the empty namespace.
pub const MUTATING_WEBHOOK: Res = Res {
    group: "admissionregistration.k8s.io",
    version: "v1",
    plural: "mutatingwebhookconfigurations",
    kind: "MutatingWebhookConfiguration",
};
pub const ALL: [Res; 10] = [
    ISVC,
    DEPLOYMENT,
    SCALED_OBJECT,
    SERVICE_MONITOR,
    POD_MONITOR,
    PROMETHEUS_RULE,
    LEASE,
    EVENT,
    SECRET,
    MUTATING_WEBHOOK,
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
}

#[derive(Clone, Copy, Debug)]
pub enum Effect {
    /// Answer with this HTTP status (409 Conflict, 500 InternalError, ...).
    Status(u16),
    /// Answer nothing for this long, then 504.
    Hang(Duration),
}

/// The next `times` requests with this verb on this resource get `effect`.
#[derive(Clone, Debug)]
pub struct Fault {
    /// Only requests of the client made by `client_as(tag)`; `None` matches every client.
    pub tag: Option<&'static str>,
    pub verb: Verb,
    pub plural: &'static str,
    pub times: usize,
    pub effect: Effect,
}

/// One request as the fake saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub tag: &'static str,
    pub at: std::time::Instant,
    pub verb: Verb,
    pub group: String,
    pub plural: String,
    /// `status` for a write to the status subresource.
    pub subresource: Option<String>,
    pub namespace: String,
    pub name: String,
    pub field_manager: Option<String>,
}

#[derive(Clone, Debug)]
struct Change {
    rv: u64,
    plural: String,
    namespace: String,
    type_: &'static str,
    /// Shared: every open watch receives every change, and most of them skip it.
    object: Arc<Value>,
}

type Key = (String, String, String);

#[derive(Default)]
struct State {
    served: BTreeSet<&'static str>,
    objects: BTreeMap<Key, Value>,
    /// Last body applied per (object, field manager).
    applied: BTreeMap<(Key, String), Value>,
    /// Field ownership per object: manager -> (operation, owned field paths).
    managers: BTreeMap<Key, BTreeMap<String, Managed>>,
    /// While set, owners' deletion leaves dependents in place until `collect_garbage`.
    hold_gc: bool,
    rv: u64,
    uids: u64,
    log: Vec<Change>,
    faults: Vec<Fault>,
    seen: Vec<Seen>,
    /// Per resource: a watch from a resourceVersion below this gets 410 Gone (the watch
    /// cache of that resource no longer reaches back that far).
    compacted: BTreeMap<String, u64>,
    /// Until then, every request fails as a refused connection.
    down_until: Option<std::time::Instant>,
    refused: usize,
    expired_watches: usize,
    /// Deletes refused because a precondition did not hold.
    failed_preconditions: usize,
    /// The DeleteOptions body of every accepted delete request.
    deletes: Vec<Value>,
    /// Verbs the API server authorizes besides the request's own: an apply that creates the
    /// object is also checked as `create` (group, plural).
    also_authorized: BTreeSet<(Verb, String, String)>,
}

/// One field manager's share of an object.
#[derive(Clone, Debug)]
struct Managed {
    operation: &'static str,
    fields: BTreeSet<String>,
}

struct Inner {
    state: Mutex<State>,
    changes: broadcast::Sender<Change>,
    watch_timeout: Duration,
    /// Bumped on every restart; open watch streams end when it changes.
    restarts: tokio::sync::watch::Sender<u64>,
}

#[derive(Clone)]
pub struct FakeApi {
    inner: Arc<Inner>,
}

type RespBody = UnsyncBoxBody<Bytes, Infallible>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Default for FakeApi {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeApi {
    pub fn new() -> FakeApi {
        let (changes, _) = broadcast::channel(8192);
        let state = State {
            served: ALL.iter().map(|r| r.plural).collect(),
            ..State::default()
        };
        FakeApi {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                changes,
                watch_timeout: Duration::from_secs(3),
                restarts: tokio::sync::watch::Sender::new(0),
            }),
        }
    }

    pub fn client(&self) -> kube::Client {
        self.client_as("default")
    }

    /// A client whose requests are recorded (and can be failed) under `tag`, to tell
    /// replicas apart.
    pub fn client_as(&self, tag: &'static str) -> kube::Client {
        kube::Client::new(
            Tagged {
                api: self.clone(),
                tag,
            },
            "default",
        )
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap()
    }

    /// Stops serving a resource, as if its CRD were not installed.
    pub fn unserve(&self, res: Res) {
        self.state().served.remove(res.plural);
    }

    pub fn fail(&self, fault: Fault) {
        self.state().faults.push(fault);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state().seen.clone()
    }

    /// The distinct calls made so far as RBAC authorizes them: `verb group
    /// resource[/subresource]` lines, sorted (the core group is `""`).
    pub fn rbac_calls(&self) -> Vec<String> {
        let line = |verb: Verb, group: &str, resource: &str| {
            let verb = format!("{verb:?}").to_lowercase();
            let group = if group.is_empty() { "\"\"" } else { group };
            format!("{verb} {group} {resource}")
        };
        let mut calls: BTreeSet<String> = self
            .seen()
            .iter()
            .map(|s| {
                let resource = match &s.subresource {
                    Some(sub) => format!("{}/{sub}", s.plural),
                    None => s.plural.clone(),
                };
                line(s.verb, &s.group, &resource)
            })
            .collect();
        for (verb, group, plural) in &self.state().also_authorized {
            calls.insert(line(*verb, group, plural));
        }
        calls.into_iter().collect()
    }

    /// Compares `rbac_calls` with the committed list at `path` (relative to the package),
    /// which the chart tests hold the chart's RBAC rules against. `UPDATE_API_CALLS=1`
    /// rewrites the list instead.
    pub fn check_rbac_calls(&self, path: &str, header: &str) {
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
        let mut text = String::from(header);
        for c in self.rbac_calls() {
            text.push_str(&c);
            text.push('\n');
        }
        if std::env::var_os("UPDATE_API_CALLS").is_some() {
            std::fs::write(&file, &text).expect("write the API call list");
            return;
        }
        let committed = std::fs::read_to_string(&file).unwrap_or_default();
        assert_eq!(
            committed, text,
            "the API calls differ from {path}; if the change is intended, rerun with UPDATE_API_CALLS=1 and update the chart's RBAC to match"
        );
    }

    /// Restarts the API server: every open watch stream ends now, and for `outage` every
    /// request fails as a refused connection. Stored objects survive (etcd keeps them).
    pub fn restart(&self, outage: Duration) {
        self.state().down_until = Some(std::time::Instant::now() + outage);
        self.inner.restarts.send_modify(|n| *n += 1);
    }

    /// Forgets the change history of `res` up to now, as when its watch cache rolls over: a
    /// watch on it that resumes from an older resourceVersion gets a 410 Gone ERROR event.
    pub fn compact(&self, res: Res) {
        let mut st = self.state();
        let rv = st.rv;
        st.compacted.insert(res.plural.to_string(), rv);
    }

    /// Requests refused while the server was down.
    pub fn refused(&self) -> usize {
        self.state().refused
    }

    /// Watches answered with 410 Gone.
    pub fn expired_watches(&self) -> usize {
        self.state().expired_watches
    }

    /// Whether a request arriving now is refused; counts it if so.
    fn refuse(&self) -> bool {
        let mut st = self.state();
        match st.down_until {
            Some(t) if std::time::Instant::now() < t => {
                st.refused += 1;
                true
            }
            _ => false,
        }
    }

    pub fn get(&self, res: Res, ns: &str, name: &str) -> Option<Value> {
        self.state()
            .objects
            .get(&(res.plural.to_string(), ns.to_string(), name.to_string()))
            .cloned()
    }

    pub fn list(&self, res: Res, ns: &str) -> Vec<Value> {
        objects_of(&self.state(), res.plural, ns, None)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// How many objects of `res` are stored (in `ns`, or in all namespaces when empty).
    pub fn count(&self, res: Res, ns: &str) -> usize {
        objects_of(&self.state(), res.plural, ns, None).count()
    }

    /// Creates an object directly, as KServe or a person would.
    pub fn create(&self, res: Res, ns: &str, mut obj: Value) -> Value {
        obj["apiVersion"] = json!(res.api_version());
        obj["kind"] = json!(res.kind);
        let mut st = self.state();
        let out = create(&mut st, &self.inner.changes, res.plural, ns, obj);
        out.map_err(|e| e.2).expect("fixture create")
    }

    /// Edits a stored object directly (a `kubectl edit` that is not an apply).
    pub fn edit(&self, res: Res, ns: &str, name: &str, f: impl FnOnce(&mut Value)) -> Value {
        let mut st = self.state();
        let key = (res.plural.to_string(), ns.to_string(), name.to_string());
        let live = st.objects.get(&key).cloned().expect("object to edit");
        let mut next = live.clone();
        f(&mut next);
        track_update(&mut st, &key, "kubectl-edit", &live, &next);
        commit(&mut st, &self.inner.changes, &key, next)
    }

    /// Deletes directly (`kubectl delete`): an object with finalizers only gets its
    /// `deletionTimestamp`; otherwise it goes, and its dependents with it (see
    /// `hold_garbage_collection`).
    pub fn delete(&self, res: Res, ns: &str, name: &str) -> bool {
        let mut st = self.state();
        let key = (res.plural.to_string(), ns.to_string(), name.to_string());
        if !st.objects.contains_key(&key) {
            return false;
        }
        delete_or_mark(&mut st, &self.inner.changes, &key);
        true
    }

    /// Makes garbage collection take time: from now on, dependents of a deleted owner stay
    /// until `collect_garbage` (the real collector works from its own informers, seconds
    /// later).
    pub fn hold_garbage_collection(&self) {
        self.state().hold_gc = true;
    }

    /// Runs the garbage collector once: deletes every object whose owners are all gone.
    /// Returns how many it deleted.
    pub fn collect_garbage(&self) -> usize {
        let mut st = self.state();
        let mut n = 0;
        while let Some(k) = orphan(&st) {
            delete_or_mark(&mut st, &self.inner.changes, &k);
            n += 1;
        }
        n
    }

    /// Deletes refused with 409 because a uid or resourceVersion precondition failed.
    pub fn failed_preconditions(&self) -> usize {
        self.state().failed_preconditions
    }

    /// The DeleteOptions of every delete the fake accepted, in order.
    pub fn delete_options(&self) -> Vec<Value> {
        self.state().deletes.clone()
    }

    /// The managers recorded for an object: (manager, operation, owned field paths).
    pub fn managers(&self, res: Res, ns: &str, name: &str) -> Vec<(String, String, Vec<String>)> {
        let key = (res.plural.to_string(), ns.to_string(), name.to_string());
        self.state()
            .managers
            .get(&key)
            .into_iter()
            .flatten()
            .map(|(m, f)| {
                (
                    m.clone(),
                    f.operation.to_string(),
                    f.fields.iter().cloned().collect(),
                )
            })
            .collect()
    }

    async fn handle(self, req: Request<Body>, tag: &'static str) -> Response<RespBody> {
        let (parts, body) = req.into_parts();
        let body = match body.collect_bytes().await {
            Ok(b) => b,
            Err(e) => return status(400, "BadRequest", &e.to_string()),
        };
        let Some(path) = parse_path(parts.uri.path()) else {
            return status(
                404,
                "NotFound",
                "the server could not find the requested resource",
            );
        };
        let query = parse_query(parts.uri.query().unwrap_or_default());
        let is_watch = query.get("watch").is_some_and(|w| w == "true" || w == "1");
        let verb = match (&parts.method, path.name.is_some()) {
            (&Method::GET, true) => Verb::Get,
            (&Method::GET, false) if is_watch => Verb::Watch,
            (&Method::GET, false) => Verb::List,
            (&Method::POST, _) => Verb::Create,
            (&Method::PUT, _) => Verb::Update,
            (&Method::PATCH, _) => Verb::Patch,
            (&Method::DELETE, _) => Verb::Delete,
            _ => return status(405, "MethodNotAllowed", "method not allowed"),
        };
        let header = |n: &str| {
            parts
                .headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        let metadata_only = header("accept").contains("as=PartialObjectMetadata");
        let content_type = header("content-type");

        let res = ALL.iter().find(|r| {
            r.group == path.group && r.version == path.version && r.plural == path.plural
        });
        let fault = {
            let mut st = self.state();
            st.seen.push(Seen {
                tag,
                at: std::time::Instant::now(),
                verb,
                group: path.group.clone(),
                plural: path.plural.clone(),
                subresource: path.subresource.clone(),
                namespace: path.namespace.clone().unwrap_or_default(),
                name: path.name.clone().unwrap_or_default(),
                field_manager: query.get("fieldManager").cloned(),
            });
            let fault = st.faults.iter_mut().find(|f| {
                f.verb == verb
                    && f.plural == path.plural
                    && f.times > 0
                    && f.tag.is_none_or(|t| t == tag)
            });
            fault.map(|f| {
                f.times -= 1;
                f.effect
            })
        };
        let served = res.is_some_and(|r| self.state().served.contains(r.plural));
        let Some(res) = res.copied().filter(|_| served) else {
            return status(
                404,
                "NotFound",
                "the server could not find the requested resource",
            );
        };
        match fault {
            Some(Effect::Status(code)) => {
                let reason = match code {
                    404 => "NotFound",
                    409 => "Conflict",
                    500 => "InternalError",
                    429 => "TooManyRequests",
                    _ => "Unknown",
                };
                return status(code, reason, "injected fault");
            }
            Some(Effect::Hang(d)) => {
                tokio::time::sleep(d).await;
                return status(504, "Timeout", "injected hang");
            }
            None => {}
        }

        let ns = path.namespace.clone().unwrap_or_default();
        let selector = match query.get("labelSelector").map(|s| Selector::parse(s)) {
            None => Selector::default(),
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                return status(
                    400,
                    "BadRequest",
                    &format!("unable to parse requirement: {e}"),
                );
            }
        };
        let manager = query
            .get("fieldManager")
            .cloned()
            .unwrap_or_else(|| tag.to_string());
        let force = query.get("force").is_some_and(|f| f == "true");
        let to_status = path.subresource.is_some();
        match verb {
            Verb::Get => {
                let key = (res.plural.to_string(), ns, path.name.unwrap_or_default());
                match self.state().objects.get(&key) {
                    Some(o) => ok(&shape(o, metadata_only)),
                    None => not_found(&res, &key.2),
                }
            }
            Verb::List => {
                let st = self.state();
                let limit = query
                    .get("limit")
                    .and_then(|l| l.parse::<usize>().ok())
                    .filter(|l| *l > 0);
                // `<resourceVersion of the first page>/<namespace>/<name of the last item>`.
                let resume = query.get("continue").filter(|c| !c.is_empty()).map(|c| {
                    let mut it = c.splitn(3, '/');
                    let rv = it.next().unwrap_or_default().to_string();
                    let n = it.next().unwrap_or_default().to_string();
                    let name = it.next().unwrap_or_default().to_string();
                    (rv, (res.plural.to_string(), n, name))
                });
                let list_rv = resume
                    .as_ref()
                    .map_or_else(|| st.rv.to_string(), |(rv, _)| rv.clone());
                let mut items = Vec::new();
                let mut last: Option<&Key> = None;
                let mut more = false;
                let matching = objects_of(&st, res.plural, &ns, resume.as_ref().map(|r| &r.1))
                    .filter(|(_, o)| selector.matches(o));
                for (k, o) in matching {
                    if limit.is_some_and(|l| items.len() >= l) {
                        more = true;
                        break;
                    }
                    items.push(shape(o, metadata_only));
                    last = Some(k);
                }
                let (api_version, kind) = if metadata_only {
                    (
                        "meta.k8s.io/v1".to_string(),
                        "PartialObjectMetadataList".to_string(),
                    )
                } else {
                    (res.api_version(), format!("{}List", res.kind))
                };
                let mut meta = json!({"resourceVersion": list_rv});
                if let (true, Some((_, n, name))) = (more, last) {
                    meta["continue"] = json!(format!("{list_rv}/{n}/{name}"));
                }
                ok(&json!({
                    "apiVersion": api_version,
                    "kind": kind,
                    "metadata": meta,
                    "items": items,
                }))
            }
            Verb::Watch => self.watch(res, ns, selector, &query, metadata_only),
            Verb::Create => {
                let Ok(mut obj) = serde_json::from_slice::<Value>(&body) else {
                    return status(400, "BadRequest", "body is not JSON");
                };
                obj["apiVersion"] = json!(res.api_version());
                obj["kind"] = json!(res.kind);
                let mut st = self.state();
                match create(&mut st, &self.inner.changes, res.plural, &ns, obj) {
                    Ok(o) => respond(201, &o),
                    Err((code, reason, message)) => status(code, reason, &message),
                }
            }
            Verb::Update => {
                let Ok(obj) = serde_json::from_slice::<Value>(&body) else {
                    return status(400, "BadRequest", "body is not JSON");
                };
                let name = path.name.unwrap_or_default();
                let key = (res.plural.to_string(), ns, name.clone());
                let mut st = self.state();
                let Some(live) = st.objects.get(&key).cloned() else {
                    return not_found(&res, &name);
                };
                let sent_rv = obj
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str);
                let live_rv = live
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str);
                if sent_rv.is_some() && sent_rv != live_rv {
                    return status(
                        409,
                        "Conflict",
                        &format!(
                            "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                            res.plural
                        ),
                    );
                }
                let mut next = split_status(&live, obj, to_status);
                keep_server_fields(&live, &mut next);
                track_update(&mut st, &key, &manager, &live, &next);
                ok(&commit(&mut st, &self.inner.changes, &key, next))
            }
            Verb::Patch => {
                let Ok(patch) = serde_json::from_slice::<Value>(&body) else {
                    return status(400, "BadRequest", "body is not JSON");
                };
                let name = path.name.unwrap_or_default();
                let key = (res.plural.to_string(), ns.clone(), name.clone());
                let mut st = self.state();
                let live = st.objects.get(&key).cloned();
                if content_type.starts_with("application/apply-patch") {
                    let Some(manager) = query.get("fieldManager").cloned() else {
                        return status(422, "Invalid", "fieldManager is required for apply");
                    };
                    if let Some(live) = &live {
                        let conflicts = apply_conflicts(&st, &key, &manager, live, &patch);
                        if !conflicts.is_empty() && !force {
                            return status(
                                409,
                                "Conflict",
                                &format!(
                                    "Apply failed with {} conflict(s): {}",
                                    conflicts.len(),
                                    conflicts.join(", ")
                                ),
                            );
                        }
                    }
                    let prev = st.applied.get(&(key.clone(), manager.clone())).cloned();
                    st.applied
                        .insert((key.clone(), manager.clone()), patch.clone());
                    track_apply(&mut st, &key, &manager, &patch);
                    match live {
                        None => {
                            let mut obj = patch;
                            obj["apiVersion"] = json!(res.api_version());
                            obj["kind"] = json!(res.kind);
                            stamp_managed(&st, &key, &mut obj);
                            match create(&mut st, &self.inner.changes, res.plural, &ns, obj) {
                                Ok(o) => {
                                    let also = (
                                        Verb::Create,
                                        res.group.to_string(),
                                        res.plural.to_string(),
                                    );
                                    st.also_authorized.insert(also);
                                    respond(201, &o)
                                }
                                Err((code, reason, message)) => status(code, reason, &message),
                            }
                        }
                        Some(live) => {
                            let mut next = live.clone();
                            if let Some(prev) = prev {
                                drop_unapplied(&st, &key, &mut next, &prev, &patch);
                            }
                            merge_apply(&mut next, &patch);
                            let mut next = split_status(&live, next, to_status);
                            keep_server_fields(&live, &mut next);
                            ok(&commit(&mut st, &self.inner.changes, &key, next))
                        }
                    }
                } else {
                    let Some(live) = live else {
                        return not_found(&res, &name);
                    };
                    let mut next = live.clone();
                    if content_type.starts_with("application/json-patch") {
                        let Ok(p) = serde_json::from_value::<json_patch::Patch>(patch) else {
                            return status(400, "BadRequest", "not a JSON patch");
                        };
                        if let Err(e) = json_patch::patch(&mut next, &p) {
                            return status(422, "Invalid", &e.to_string());
                        }
                    } else {
                        // Merge and strategic-merge patches: for the fields used here the
                        // two agree.
                        json_patch::merge(&mut next, &patch);
                    }
                    let mut next = split_status(&live, next, to_status);
                    keep_server_fields(&live, &mut next);
                    track_update(&mut st, &key, &manager, &live, &next);
                    ok(&commit(&mut st, &self.inner.changes, &key, next))
                }
            }
            Verb::Delete => {
                let name = path.name.unwrap_or_default();
                let key = (res.plural.to_string(), ns, name.clone());
                let mut st = self.state();
                let Some(live) = st.objects.get(&key).cloned() else {
                    return not_found(&res, &name);
                };
                let opts: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                for (field, what) in [("uid", "UID"), ("resourceVersion", "ResourceVersion")] {
                    let want = opts.pointer(&format!("/preconditions/{field}"));
                    let want = want.and_then(Value::as_str);
                    let have = live
                        .pointer(&format!("/metadata/{field}"))
                        .and_then(Value::as_str);
                    if want.is_some_and(|w| Some(w) != have) {
                        st.failed_preconditions += 1;
                        return status(
                            409,
                            "Conflict",
                            &format!(
                                "Precondition failed: {what} in precondition: {}, {what} in object meta: {}",
                                want.unwrap_or_default(),
                                have.unwrap_or_default()
                            ),
                        );
                    }
                }
                st.deletes.push(opts);
                ok(&delete_or_mark(&mut st, &self.inner.changes, &key))
            }
        }
    }

    fn watch(
        &self,
        res: Res,
        ns: String,
        selector: Selector,
        query: &BTreeMap<String, String>,
        metadata_only: bool,
    ) -> Response<RespBody> {
        let from: Option<u64> = query
            .get("resourceVersion")
            .and_then(|v| v.parse().ok())
            .filter(|v| *v > 0);
        let limit = query
            .get("timeoutSeconds")
            .and_then(|t| t.parse().ok())
            .map(Duration::from_secs)
            .unwrap_or(self.inner.watch_timeout)
            .min(self.inner.watch_timeout);
        let ns_all = ns.clone();
        let selector_all = selector.clone();
        let relevant = move |c: &Change| {
            c.plural == res.plural
                && (ns.is_empty() || c.namespace == ns)
                && selector.matches(&c.object)
        };
        if let Some(rv) = from {
            let mut st = self.state();
            let compacted = st.compacted.get(res.plural).copied().unwrap_or(0);
            if rv < compacted {
                st.expired_watches += 1;
                let gone = json!({
                    "type": "ERROR",
                    "object": {
                        "kind": "Status", "apiVersion": "v1", "metadata": {},
                        "status": "Failure", "reason": "Expired", "code": 410,
                        "message": format!("too old resource version: {rv} ({compacted})"),
                    },
                });
                let mut line = gone.to_string().into_bytes();
                line.push(b'\n');
                return Response::builder()
                    .status(200)
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(line)).boxed_unsync())
                    .unwrap();
            }
        }
        let mut restarted = self.inner.restarts.subscribe();
        restarted.mark_unchanged();
        let (backlog, rx, covered) = {
            let st = self.state();
            // Subscribe under the lock, so no change falls between backlog and stream.
            let rx = self.inner.changes.subscribe();
            let backlog: Vec<Change> = match from {
                Some(rv) => {
                    let start = st.log.partition_point(|c| c.rv <= rv);
                    st.log[start..]
                        .iter()
                        .filter(|c| relevant(c))
                        .cloned()
                        .collect()
                }
                None => objects_of(&st, res.plural, &ns_all, None)
                    .filter(|(_, o)| selector_all.matches(o))
                    .map(|((p, n, _), o)| Change {
                        rv: st.rv,
                        plural: p.clone(),
                        namespace: n.clone(),
                        type_: "ADDED",
                        object: Arc::new(o.clone()),
                    })
                    .collect(),
            };
            (backlog, rx, st.rv)
        };
        let line = move |c: &Change| {
            let mut l = serde_json::to_vec(&json!({
                "type": c.type_,
                "object": shape(&c.object, metadata_only),
            }))
            .unwrap_or_default();
            l.push(b'\n');
            Ok::<_, Infallible>(http_body::Frame::data(Bytes::from(l)))
        };
        let deadline = tokio::time::Instant::now() + limit;
        let first = futures::stream::iter(backlog.iter().map(line).collect::<Vec<_>>());
        let me = self.clone();
        let start = Live {
            rx,
            restarted,
            covered,
            pending: std::collections::VecDeque::new(),
        };
        let live = futures::stream::unfold(start, move |mut at| {
            let relevant = relevant.clone();
            let me = me.clone();
            async move {
                loop {
                    if let Some(c) = at.pending.pop_front() {
                        return Some((line(&c), at));
                    }
                    let next = tokio::select! {
                        // A restart drops the connection under the stream.
                        _ = at.restarted.changed() => return None,
                        next = tokio::time::timeout_at(deadline, at.rx.recv()) => next,
                    };
                    match next {
                        // Already sent from the history after falling behind.
                        Ok(Ok(c)) if c.rv <= at.covered => continue,
                        Ok(Ok(c)) => {
                            at.covered = c.rv;
                            if relevant(&c) {
                                return Some((line(&c), at));
                            }
                        }
                        // Fell behind the feed: catch up from the history, as the server's
                        // watch cache serves a slow watcher, rather than end the watch.
                        Ok(Err(broadcast::error::RecvError::Lagged(_))) => {
                            let st = me.state();
                            let start = st.log.partition_point(|c| c.rv <= at.covered);
                            at.pending
                                .extend(st.log[start..].iter().filter(|c| relevant(c)).cloned());
                            at.covered = st.rv;
                        }
                        // Closed or timed out: end the stream; the client re-watches.
                        _ => return None,
                    }
                }
            }
        });
        use futures::StreamExt;
        let body = StreamBody::new(first.chain(live));
        Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(BodyExt::boxed_unsync(body))
            .unwrap()
    }
}

/// Where one watch stands in the change feed.
struct Live {
    rx: broadcast::Receiver<Change>,
    restarted: tokio::sync::watch::Receiver<u64>,
    /// Every change up to this resourceVersion is sent or queued.
    covered: u64,
    pending: std::collections::VecDeque<Change>,
}

/// The stored objects of one resource (in `ns`, or every namespace when it is empty), after
/// `after` if given, in key order: a range of the map, not a scan of every stored object.
fn objects_of<'a>(
    st: &'a State,
    plural: &str,
    ns: &str,
    after: Option<&Key>,
) -> impl Iterator<Item = (&'a Key, &'a Value)> + 'a {
    use std::ops::Bound;
    let from = (plural.to_string(), ns.to_string(), String::new());
    let lower = match after {
        Some(k) if *k >= from => Bound::Excluded(k.clone()),
        _ => Bound::Included(from),
    };
    let (plural, ns) = (plural.to_string(), ns.to_string());
    st.objects
        .range((lower, Bound::Unbounded))
        .take_while(move |((p, n, _), _)| *p == plural && (ns.is_empty() || *n == ns))
}

#[derive(Clone)]
struct Tagged {
    api: FakeApi,
    tag: &'static str,
}

impl tower::Service<Request<Body>> for Tagged {
    type Response = Response<RespBody>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let me = self.api.clone();
        let tag = self.tag;
        Box::pin(async move {
            if me.refuse() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionRefused,
                    "connection refused (the API server is restarting)",
                )
                .into());
            }
            Ok(me.handle(req, tag).await)
        })
    }
}

struct ApiPath {
    group: String,
    version: String,
    namespace: Option<String>,
    plural: String,
    name: Option<String>,
    subresource: Option<String>,
}

fn parse_path(path: &str) -> Option<ApiPath> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => (String::new(), v.to_string(), rest),
        ["apis", g, v, rest @ ..] => (g.to_string(), v.to_string(), rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
        _ => (None, rest),
    };
    let (plural, name, subresource) = match rest {
        [p] => (p.to_string(), None, None),
        [p, n] => (p.to_string(), Some(n.to_string()), None),
        // Only the status subresource is served.
        [p, n, "status"] => (
            p.to_string(),
            Some(n.to_string()),
            Some("status".to_string()),
        ),
        _ => return None,
    };
    Some(ApiPath {
        group,
        version,
        namespace,
        plural,
        name,
        subresource,
    })
}

fn parse_query(q: &str) -> BTreeMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Equality-based and set-based label selectors.
#[derive(Clone, Debug, Default)]
pub struct Selector(Vec<Requirement>);

#[derive(Clone, Debug)]
enum Requirement {
    Exists(String),
    NotExists(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

impl Selector {
    /// Parses and validates like the API server: keys are qualified names (optional DNS
    /// prefix and `/`), values are empty or label values; anything else is an error (400).
    pub fn parse(s: &str) -> Result<Selector, String> {
        let mut parts = Vec::new();
        let mut depth = 0;
        let mut cur = String::new();
        for c in s.chars() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                ',' if depth == 0 => {
                    parts.push(std::mem::take(&mut cur));
                    continue;
                }
                _ => {}
            }
            cur.push(c);
        }
        parts.push(cur);
        let set = |v: &str| {
            v.trim()
                .trim_start_matches('(')
                .trim_end_matches(')')
                .split(',')
                .map(|x| x.trim().to_string())
                .collect::<Vec<_>>()
        };
        if depth != 0 {
            return Err(format!("unbalanced parentheses in {s:?}"));
        }
        let reqs: Vec<Requirement> = parts
            .iter()
            .map(|p| p.trim())
            .filter(|p| !p.is_empty())
            .map(|p| {
                if let Some((k, v)) = p.split_once(" notin ") {
                    Requirement::NotIn(k.trim().into(), set(v))
                } else if let Some((k, v)) = p.split_once(" in ") {
                    Requirement::In(k.trim().into(), set(v))
                } else if let Some((k, v)) = p.split_once("!=") {
                    Requirement::NotIn(k.trim().into(), vec![v.trim().into()])
                } else if let Some((k, v)) = p.split_once("==").or_else(|| p.split_once('=')) {
                    Requirement::In(k.trim().into(), vec![v.trim().into()])
                } else if let Some(k) = p.strip_prefix('!') {
                    Requirement::NotExists(k.trim().into())
                } else {
                    Requirement::Exists(p.into())
                }
            })
            .collect();
        for r in &reqs {
            let (key, values): (&str, &[String]) = match r {
                Requirement::Exists(k) | Requirement::NotExists(k) => (k, &[]),
                Requirement::In(k, vs) | Requirement::NotIn(k, vs) => (k, vs),
            };
            check_label_key(key)?;
            for v in values {
                check_label_value(v)?;
            }
        }
        Ok(Selector(reqs))
    }

    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels");
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::NotExists(k) => get(k).is_none(),
            Requirement::In(k, vs) => get(k).is_some_and(|v| vs.iter().any(|x| x == v)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|v| !vs.iter().any(|x| x == v)),
        })
    }
}

/// A label name: at most 63 characters, alphanumeric at both ends, `-_.` inside.
fn label_name_ok(n: &str) -> bool {
    let inner = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    !n.is_empty()
        && n.len() <= 63
        && n.chars().all(inner)
        && n.starts_with(|c: char| c.is_ascii_alphanumeric())
        && n.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn check_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|p| {
        p.len() <= 253
            && p.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            })
    });
    if prefix_ok && label_name_ok(name) {
        Ok(())
    } else {
        Err(format!(
            "invalid label key {key:?}: must be a qualified name"
        ))
    }
}

fn check_label_value(v: &str) -> Result<(), String> {
    if v.is_empty() || label_name_ok(v) {
        Ok(())
    } else {
        Err(format!(
            "invalid label value: {v:?}: must be 63 characters or less, alphanumeric at both ends"
        ))
    }
}

/// Fields of an object that a write to the main resource may not change (`status`), or, on
/// the status subresource, the only ones it may change.
fn split_status(live: &Value, mut next: Value, to_status: bool) -> Value {
    if to_status {
        let status = next.get("status").cloned();
        next = live.clone();
        match status {
            Some(s) => next["status"] = s,
            None => {
                if let Some(o) = next.as_object_mut() {
                    o.remove("status");
                }
            }
        }
    } else if let Some(o) = next.as_object_mut() {
        match live.get("status") {
            Some(s) => {
                o.insert("status".into(), s.clone());
            }
            None => {
                o.remove("status");
            }
        }
    }
    next
}

/// The fields a body sets, as paths: nested maps down to their leaves; lists are atomic,
/// except `ownerReferences` (merged by uid, one path per uid). Only labels, annotations,
/// ownerReferences and finalizers count in metadata; `status` is the subresource's.
fn field_paths(obj: &Value) -> BTreeMap<String, Value> {
    fn walk(v: &Value, at: String, out: &mut BTreeMap<String, Value>) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, v) in m {
                    walk(
                        v,
                        format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                        out,
                    );
                }
            }
            _ => {
                out.insert(at, v.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    let Some(top) = obj.as_object() else {
        return out;
    };
    for (k, v) in top {
        match k.as_str() {
            "apiVersion" | "kind" | "status" => {}
            "metadata" => {
                for f in ["labels", "annotations"] {
                    if let Some(m) = v.get(f) {
                        walk(m, format!("/metadata/{f}"), &mut out);
                    }
                }
                if let Some(fin) = v.get("finalizers") {
                    out.insert("/metadata/finalizers".into(), fin.clone());
                }
                for r in v
                    .get("ownerReferences")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let uid = r.get("uid").and_then(Value::as_str).unwrap_or_default();
                    out.insert(format!("/metadata/ownerReferences[uid={uid}]"), r.clone());
                }
            }
            _ => walk(v, format!("/{k}"), &mut out),
        }
    }
    out
}

/// The value at a path from `field_paths`, in a stored object.
fn value_at<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    if let Some(uid) = path
        .strip_prefix("/metadata/ownerReferences[uid=")
        .and_then(|r| r.strip_suffix(']'))
    {
        return obj
            .pointer("/metadata/ownerReferences")?
            .as_array()?
            .iter()
            .find(|r| r.get("uid").and_then(Value::as_str) == Some(uid));
    }
    obj.pointer(path)
}

fn remove_at(obj: &mut Value, path: &str) {
    if let Some(uid) = path
        .strip_prefix("/metadata/ownerReferences[uid=")
        .and_then(|r| r.strip_suffix(']'))
    {
        if let Some(rs) = obj
            .pointer_mut("/metadata/ownerReferences")
            .and_then(Value::as_array_mut)
        {
            rs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(uid));
        }
        return;
    }
    if let Some((parent, last)) = path.rsplit_once('/') {
        let last = last.replace("~1", "/").replace("~0", "~");
        if let Some(o) = obj.pointer_mut(parent).and_then(Value::as_object_mut) {
            o.remove(&last);
        }
    }
}

/// Fields `manager` would take over from other managers with a different value: the
/// server's apply conflicts ("conflict with \"kubectl\": .spec.x").
fn apply_conflicts(
    st: &State,
    key: &Key,
    manager: &str,
    live: &Value,
    body: &Value,
) -> Vec<String> {
    let Some(managers) = st.managers.get(key) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (path, want) in field_paths(body) {
        if value_at(live, &path) == Some(&want) {
            continue;
        }
        for (other, m) in managers {
            if other != manager && m.fields.contains(&path) {
                out.push(format!("conflict with {other:?}: {path}"));
            }
        }
    }
    out
}

/// An apply: the manager now owns exactly what it applied, taken from everyone else (the
/// caller has refused the apply already if that took a differing value without `force`).
fn track_apply(st: &mut State, key: &Key, manager: &str, body: &Value) {
    let fields: BTreeSet<String> = field_paths(body).into_keys().collect();
    let managers = st.managers.entry(key.clone()).or_default();
    for (other, m) in managers.iter_mut() {
        if other != manager {
            m.fields.retain(|f| !fields.contains(f));
        }
    }
    managers.insert(
        manager.to_string(),
        Managed {
            operation: "Apply",
            fields,
        },
    );
    managers.retain(|_, m| !m.fields.is_empty());
}

/// An update or a non-apply patch: the writer takes every field it changed.
fn track_update(st: &mut State, key: &Key, manager: &str, live: &Value, next: &Value) {
    let before = field_paths(live);
    let changed: BTreeSet<String> = field_paths(next)
        .into_iter()
        .filter(|(p, v)| before.get(p) != Some(v))
        .map(|(p, _)| p)
        .collect();
    if changed.is_empty() {
        return;
    }
    let managers = st.managers.entry(key.clone()).or_default();
    for (other, m) in managers.iter_mut() {
        if other != manager {
            m.fields.retain(|f| !changed.contains(f));
        }
    }
    let mine = managers.entry(manager.to_string()).or_insert(Managed {
        operation: "Update",
        fields: BTreeSet::new(),
    });
    mine.fields.extend(changed);
    managers.retain(|_, m| !m.fields.is_empty());
}

/// Writes the ownership records into `metadata.managedFields`, as the server returns them.
fn stamp_managed(st: &State, key: &Key, obj: &mut Value) {
    let entries: Vec<Value> = st
        .managers
        .get(key)
        .into_iter()
        .flatten()
        .map(|(manager, m)| {
            json!({
                "manager": manager,
                "operation": m.operation,
                "fieldsType": "FieldsV1",
                "fieldsV1": m.fields.iter().map(|f| (f.clone(), json!({}))).collect::<serde_json::Map<_, _>>(),
            })
        })
        .collect();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if entries.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(entries));
        }
    }
}

/// A delete request: an object with finalizers is only marked (`deletionTimestamp`); the
/// last finalizer's removal deletes it (see `commit`).
fn delete_or_mark(st: &mut State, changes: &broadcast::Sender<Change>, key: &Key) -> Value {
    let Some(live) = st.objects.get(key).cloned() else {
        return Value::Null;
    };
    let has_finalizers = live
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty());
    if !has_finalizers {
        return remove(st, changes, key).unwrap_or(live);
    }
    if live.pointer("/metadata/deletionTimestamp").is_some() {
        return live;
    }
    let mut next = live;
    next["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:01Z");
    next["metadata"]["deletionGracePeriodSeconds"] = json!(0);
    commit(st, changes, key, next)
}

/// An object with owner references none of which exists any more.
fn orphan(st: &State) -> Option<Key> {
    let uids: BTreeSet<&str> = st
        .objects
        .values()
        .filter_map(|o| o.pointer("/metadata/uid").and_then(Value::as_str))
        .collect();
    st.objects
        .iter()
        .filter(|(_, o)| o.pointer("/metadata/deletionTimestamp").is_none())
        .find(|(_, o)| {
            o.pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .is_some_and(|rs| {
                    !rs.is_empty()
                        && rs.iter().all(|r| {
                            !uids.contains(r.get("uid").and_then(Value::as_str).unwrap_or_default())
                        })
                })
        })
        .map(|(k, _)| k.clone())
}

fn shape(obj: &Value, metadata_only: bool) -> Value {
    if metadata_only {
        json!({
            "apiVersion": "meta.k8s.io/v1",
            "kind": "PartialObjectMetadata",
            "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
        })
    } else {
        obj.clone()
    }
}

fn create(
    st: &mut State,
    changes: &broadcast::Sender<Change>,
    plural: &str,
    ns: &str,
    mut obj: Value,
) -> Result<Value, (u16, &'static str, String)> {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if name.is_empty() {
        return Err((422, "Invalid", "metadata.name: Required value".into()));
    }
    let key = (plural.to_string(), ns.to_string(), name.clone());
    if st.objects.contains_key(&key) {
        return Err((
            409,
            "AlreadyExists",
            format!("{plural} \"{name}\" already exists"),
        ));
    }
    st.rv += 1;
    st.uids += 1;
    let meta = obj
        .as_object_mut()
        .map(|o| o.entry("metadata").or_insert(json!({})));
    if let Some(Value::Object(m)) = meta {
        m.insert("namespace".into(), json!(ns));
        m.insert("uid".into(), json!(format!("uid-{}", st.uids)));
        m.insert("resourceVersion".into(), json!(st.rv.to_string()));
        m.insert("generation".into(), json!(1));
        m.insert("creationTimestamp".into(), json!("2026-01-01T00:00:00Z"));
    }
    st.objects.insert(key, obj.clone());
    record(st, changes, plural, ns, "ADDED", &obj);
    Ok(obj)
}

/// Stores `next` over the object at `key`: no-op if nothing changed, generation bumped when
/// more than metadata or status changed.
fn commit(
    st: &mut State,
    changes: &broadcast::Sender<Change>,
    key: &Key,
    mut next: Value,
) -> Value {
    let Some(live) = st.objects.get(key).cloned() else {
        return next;
    };
    stamp_managed(st, key, &mut next);
    // A deleted object takes no new finalizers; the last one's removal completes the delete.
    if live.pointer("/metadata/deletionTimestamp").is_some() {
        next["metadata"]["deletionTimestamp"] = live["metadata"]["deletionTimestamp"].clone();
        let done = next
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
        if done {
            st.objects.insert(key.clone(), next);
            return remove(st, changes, key).unwrap_or(live);
        }
    }
    if eq_without(&live, &next, &["metadata"])
        && eq_without(&live["metadata"], &next["metadata"], &["resourceVersion"])
    {
        return live;
    }
    let generation = live
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    st.rv += 1;
    let g = if eq_without(&live, &next, &["metadata", "status"]) {
        generation
    } else {
        generation + 1
    };
    if let Some(m) = next.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert("resourceVersion".into(), json!(st.rv.to_string()));
        m.insert("generation".into(), json!(g));
    }
    st.objects.insert(key.clone(), next.clone());
    record(st, changes, &key.0, &key.1, "MODIFIED", &next);
    next
}

/// Whether two objects are equal apart from the top-level keys in `skip`.
fn eq_without(a: &Value, b: &Value, skip: &[&str]) -> bool {
    match (a.as_object(), b.as_object()) {
        (Some(a), Some(b)) => {
            let keep = |k: &String| !skip.contains(&k.as_str());
            a.keys()
                .filter(|k| keep(k))
                .eq(b.keys().filter(|k| keep(k)))
                && a.iter()
                    .filter(|(k, _)| keep(k))
                    .all(|(k, v)| b.get(k) == Some(v))
        }
        _ => a == b,
    }
}

/// Deletes `key` and, like the background garbage collector, everything it owns.
fn remove(st: &mut State, changes: &broadcast::Sender<Change>, key: &Key) -> Option<Value> {
    let mut gone = st.objects.remove(key)?;
    st.applied.retain(|(k, _), _| k != key);
    st.managers.remove(key);
    st.rv += 1;
    if let Some(m) = gone.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert("resourceVersion".into(), json!(st.rv.to_string()));
    }
    record(st, changes, &key.0, &key.1, "DELETED", &gone);
    if !st.hold_gc {
        while let Some(k) = orphan(st) {
            delete_or_mark(st, changes, &k);
        }
    }
    Some(gone)
}

fn record(
    st: &mut State,
    changes: &broadcast::Sender<Change>,
    plural: &str,
    ns: &str,
    type_: &'static str,
    obj: &Value,
) {
    let change = Change {
        rv: st.rv,
        plural: plural.to_string(),
        namespace: ns.to_string(),
        type_,
        object: Arc::new(obj.clone()),
    };
    st.log.push(change.clone());
    // No receiver is fine: nobody is watching.
    let _ = changes.send(change);
}

/// The server owns uid, creation time, generation and namespace; clients cannot change them.
fn keep_server_fields(live: &Value, next: &mut Value) {
    for f in [
        "uid",
        "creationTimestamp",
        "generation",
        "namespace",
        "resourceVersion",
    ] {
        if let (Some(v), Some(m)) = (
            live.pointer(&format!("/metadata/{f}")),
            next.get_mut("metadata").and_then(Value::as_object_mut),
        ) {
            m.insert(f.into(), v.clone());
        }
    }
}

/// Removes from `target` the fields `prev` applied that `now` no longer applies, unless
/// another manager owns them too (the caller has recorded `now` already).
fn drop_unapplied(st: &State, key: &Key, target: &mut Value, prev: &Value, now: &Value) {
    let now = field_paths(now);
    let owned_by_others = |p: &str| {
        st.managers
            .get(key)
            .is_some_and(|ms| ms.values().any(|m| m.fields.contains(p)))
    };
    for path in field_paths(prev).into_keys() {
        if !now.contains_key(&path) && !owned_by_others(&path) {
            remove_at(target, &path);
        }
    }
}

/// Applied fields win; objects merge key by key; `ownerReferences` merge by uid; other lists
/// and scalars are replaced.
fn merge_apply(target: &mut Value, applied: &Value) {
    match (target.as_object_mut(), applied.as_object()) {
        (Some(t), Some(a)) => {
            for (k, av) in a {
                match t.get_mut(k) {
                    Some(tv) if tv.is_object() && av.is_object() => merge_apply(tv, av),
                    Some(Value::Array(tv)) if k == "ownerReferences" && av.is_array() => {
                        for r in av.as_array().into_iter().flatten() {
                            let uid = r.get("uid");
                            match tv.iter_mut().find(|x| x.get("uid") == uid) {
                                Some(x) => *x = r.clone(),
                                None => tv.push(r.clone()),
                            }
                        }
                    }
                    _ => {
                        t.insert(k.clone(), av.clone());
                    }
                }
            }
        }
        _ => *target = applied.clone(),
    }
}

fn respond(code: u16, body: &Value) -> Response<RespBody> {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::OK))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())).boxed_unsync())
        .unwrap()
}

fn ok(body: &Value) -> Response<RespBody> {
    respond(200, body)
}

fn status(code: u16, reason: &str, message: &str) -> Response<RespBody> {
    respond(
        code,
        &json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": code,
        }),
    )
}

fn not_found(res: &Res, name: &str) -> Response<RespBody> {
    status(
        404,
        "NotFound",
        &format!("{}.{} \"{name}\" not found", res.plural, res.group),
    )
}
