//! The controller that applies, repairs and deletes generated objects on the cluster.
//!
//! # Entry point
//!
//! `run` never returns on its own except with [`Error::InvalidOptions`]; drop the future to
//! stop it (watches and in-flight reconciles stop with it; the Lease is not released, so
//! another replica takes over one lease duration later). Every replica runs it: all of them
//! take part in the election, only the holder of the Lease reconciles, and losing the Lease
//! drops the controller at once (it is rebuilt, with fresh caches, when the Lease is won
//! again).
//!
//! `ready` becomes true once this replica knows it is not the leader, or, as leader, once the
//! InferenceService and Deployment caches have synced. A follower is ready at once because
//! readiness gates admission traffic, which every replica serves. Readiness never goes back to
//! false on a leadership change: dropping a healthy admission replica from the webhook
//! Service because another replica now leads would only cost availability.
//!
//! # What a reconcile does
//!
//! For every InferenceService (cluster-wide, or in `namespaces`):
//! - With `<prefix>/strategy`: looks up the predictor Deployment by its labels
//!   (`serving.kserve.io/inferenceservice=<isvc>`, `component=predictor`, `-worker` excluded)
//!   and plans with it, or with the naming convention until KServe has created it (the
//!   Deployment watch re-triggers the InferenceService when it appears). Applies the
//!   ScaledObject, the monitor and its PrometheusRule by server-side apply (field manager `kserve-keda-webhook`,
//!   forced), owned by the InferenceService (controller, blockOwnerDeletion), labelled as the
//!   plan says and annotated with `<prefix>/inputs-hash`. Records the InferenceService's
//!   `metadata.generation` it planned from in `<prefix>/observed-generation` on the
//!   ScaledObject, never on the InferenceService: KServe copies its annotations into the
//!   predictor's pod template, so a record there would restart the model servers.
//! - Deletes generated objects the plan no longer asks for (strategy removed, monitor kind or
//!   name changed). "Generated" means both the managed-by label and a controller owner
//!   reference to this InferenceService's UID; anything else with a planned name is a
//!   person's object: it is never written or deleted, and is reported as a Warning
//!   (`NameConflict`) with an error result.
//! - Annotations: the controller writes the annotation changes admission would have written
//!   (planned without the live Deployment, exactly as admission plans). For an
//!   InferenceService created before the webhook was installed this adds
//!   `serving.kserve.io/autoscalerClass: external`, without which KServe keeps its own HPA and
//!   KEDA refuses the ScaledObject; and it adds the webhook's records, so removing the strategy
//!   later resets the autoscaler class. An InferenceService in Knative mode gets a Warning
//!   (the planner's frozen-mode explanation) and nothing is applied.
//! - Planning errors are the user's to fix: a Warning event and no retry until the object
//!   changes. The objects generated before the error are kept, so a typo does not switch off
//!   autoscaling. API errors are retried per object with exponential backoff
//!   (`retry_base` doubling up to `retry_max`); a reconcile is cut off after
//!   `reconcile_timeout`. A missing ServiceMonitor/PodMonitor/PrometheusRule API (no prometheus-operator) is
//!   reported once per InferenceService (`MonitorApiMissing`) and the ScaledObject is applied
//!   anyway; monitor APIs are probed when leadership is won, and only served ones are watched.
//! - Events: `ScalingConfigured` (Normal) when something was written; `ScalingWarning` for
//!   plan warnings, only when they change; failure reasons `InvalidScalingRequest`,
//!   `NameConflict`, `ApiNotServed`, `MonitorApiMissing`, `ReconcileFailed`.
//!
//! # What a reconcile reads
//!
//! InferenceServices, predictor Deployments (metadata only) and every object of the generated
//! kinds are watched into caches trimmed to what a reconcile reads (`cache`). A reconcile
//! reads the scale target, what exists under the planned names and what is stale from them.
//! It GETs a generated object only when the cache shows it changed since this leadership
//! term last saw it hold the plan (deciding that takes the whole object), so a reconcile
//! with nothing to do makes no request. Its requests go through a token bucket
//! (`api_qps`, `api_burst`).
//!
//! # RBAC
//!
//! | API group             | resource                       | verbs                              |
//! |-----------------------|--------------------------------|------------------------------------|
//! | serving.kserve.io     | inferenceservices              | list, watch, patch                 |
//! | serving.kserve.io     | inferenceservices/finalizers   | update                             |
//! | apps                  | deployments                    | list, watch                        |
//! | keda.sh               | scaledobjects                  | get, list, watch, create, patch, delete |
//! | monitoring.coreos.com | servicemonitors, podmonitors, prometheusrules | get, list, watch, create, patch, delete |
//! | events.k8s.io         | events                         | create, patch                      |
//! | coordination.k8s.io   | leases (namespaced, Role)      | get, create, update                |
//!
//! The controller never GETs an InferenceService or a Deployment (it reads them from its
//! watch caches), so `get` on those is not needed; granting it does no
//! harm. `inferenceservices/finalizers: update` is what the OwnerReferencesPermissionEnforcement
//! admission plugin (on by default in OpenShift) demands before it accepts an owner reference
//! with `blockOwnerDeletion: true`. `create` on the generated kinds is needed because a
//! server-side apply that creates an object is authorised as a create.

mod apply;
mod cache;
mod context;
mod lease;
mod ownership;
mod readiness;
mod reconciler;
mod throttle;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, ListParams};
use kube::core::{ApiResource, DynamicObject, PartialObjectMeta};
use kube::runtime::events::Reporter;
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::utils::ResetTimerBackoff;
use kube::runtime::watcher::ExponentialBackoff;
use kube::runtime::{Controller, WatchStreamExt, reflector, watcher};
use kube::{Client, ResourceExt};
use tokio::sync::watch;

pub use apply::{INPUTS_HASH, contains, inputs_hash};
pub use lease::{Elector, LeaseConfig, Round};
pub use ownership::generated_for;
pub use reconciler::backoff;

use crate::core::names::FIELD_MANAGER;
use crate::core::plan::{ISVC_LABEL, PlanError};
use crate::core::resources::{PodMonitor, PrometheusRule, ScaledObject, ServiceMonitor};
use crate::metrics::Metrics;
use crate::scaling::Scaling;

/// Default sustained rate of the controller's requests. A first start on a cluster with
/// 5,000 annotated InferenceServices makes about 20,000 writes (an annotation patch, two
/// applies and an event each); at this rate they take under a minute, and with at most 16
/// reconciles in flight the API server sees a handful of concurrent requests from this
/// client, well inside one priority level's share.
pub const DEFAULT_API_QPS: f64 = 500.0;
/// Default burst: a resync or a re-list re-queues everything at once; the burst lets a small
/// cluster's worth go without waiting.
pub const DEFAULT_API_BURST: u32 = 1000;

/// How the controller runs. [`ControllerOptions::new`] gives the production defaults.
#[derive(Clone, Debug)]
pub struct ControllerOptions {
    /// Namespaces to watch; empty means the whole cluster.
    pub namespaces: Vec<String>,
    /// Namespace of the Lease (usually the webhook's own).
    pub leader_election_namespace: String,
    pub lease_name: String,
    /// Unique per replica; the pod name is the usual choice.
    pub identity: String,
    pub lease_duration: Duration,
    /// How often the leader renews and followers retry; well below `lease_duration`.
    pub renew_interval: Duration,
    /// How long a leader keeps leading through failed renews; between `renew_interval` and
    /// `lease_duration`. `None`: `lease_duration - renew_interval`.
    pub renew_deadline: Option<Duration>,
    /// Take part in the election; `false` reconciles at once (run a single replica then).
    pub leader_elect: bool,
    /// Requeue after a successful reconcile, as a safety net for missed events.
    pub resync: Duration,
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Upper bound of one reconcile, so a hanging API call cannot stall an object forever.
    pub reconcile_timeout: Duration,
    /// Client-side limit on the reconciles' requests (watches aside): `api_qps` per second
    /// sustained, `api_burst` at once.
    pub api_qps: f64,
    pub api_burst: u32,
}

impl ControllerOptions {
    pub fn new(leader_election_namespace: impl Into<String>, identity: impl Into<String>) -> Self {
        ControllerOptions {
            namespaces: Vec::new(),
            leader_election_namespace: leader_election_namespace.into(),
            lease_name: "kserve-keda-webhook".to_string(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_interval: Duration::from_secs(5),
            renew_deadline: None,
            leader_elect: true,
            resync: Duration::from_secs(600),
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
            reconcile_timeout: Duration::from_secs(30),
            api_qps: DEFAULT_API_QPS,
            api_burst: DEFAULT_API_BURST,
        }
    }

    fn validate(&self) -> Result<(), Error> {
        let bad = |why: &str| Err(Error::InvalidOptions(why.to_string()));
        if self.identity.is_empty() {
            return bad("identity is empty; use the pod name");
        }
        if self.lease_name.is_empty() || self.leader_election_namespace.is_empty() {
            return bad("lease name and leader election namespace must be set");
        }
        if self.renew_interval.is_zero() || self.renew_interval * 2 > self.lease_duration {
            return bad("renew interval must be above zero and at most half the lease duration");
        }
        if self
            .renew_deadline
            .is_some_and(|d| d <= self.renew_interval || d >= self.lease_duration)
        {
            return bad(
                "renew deadline must be above the renew interval and below the lease duration",
            );
        }
        if self.retry_base.is_zero() || self.retry_max < self.retry_base {
            return bad("retry base must be above zero and at most retry max");
        }
        if !(self.api_qps.is_finite() && self.api_qps > 0.0) || self.api_burst == 0 {
            return bad("API qps must be a number above zero and API burst at least 1");
        }
        Ok(())
    }

    fn lease_config(&self) -> LeaseConfig {
        LeaseConfig {
            namespace: self.leader_election_namespace.clone(),
            name: self.lease_name.clone(),
            identity: self.identity.clone(),
            lease_duration: self.lease_duration,
            renew_interval: self.renew_interval,
        }
    }
}

/// Errors of the controller layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
    /// The user's annotations or spec cannot be planned; retrying cannot help.
    #[error("{0}")]
    Plan(#[from] PlanError),
    #[error(
        "{kind} {namespace}/{name} already exists and was not generated for this InferenceService (no app.kubernetes.io/managed-by=kserve-keda-webhook label with a controller owner reference to it); it is left untouched: delete or rename it to let the webhook manage scaling"
    )]
    NotOwned {
        kind: &'static str,
        namespace: String,
        name: String,
    },
    #[error(
        "{kind} {name} was generated for an earlier InferenceService of the same name; waiting for garbage collection to remove it"
    )]
    AwaitingCollection { kind: &'static str, name: String },
    #[error(
        "the {kind} API ({api_version}) is not served by this cluster; install its CRD (KEDA for ScaledObject, prometheus-operator for monitors)"
    )]
    MissingApi {
        kind: &'static str,
        api_version: String,
    },
    #[error("the object has no {0}")]
    Incomplete(&'static str),
    #[error("cannot serialise a generated object: {0}")]
    Serialize(#[source] serde_json::Error),
    #[error("reconcile did not finish within {0:?}")]
    Timeout(Duration),
    #[error("the controller's watch caches have not listed yet (or their watches stopped)")]
    NotSynced,
    #[error("invalid controller options: {0}")]
    InvalidOptions(String),
}

impl Error {
    /// Event reasons a successful reconcile clears, so a recurring problem is reported again.
    /// `MonitorApiMissing` is not among them: a reconcile succeeds despite it, and it is
    /// reported once.
    const REASONS: [&'static str; 4] = [
        "InvalidScalingRequest",
        "NameConflict",
        "ApiNotServed",
        "ReconcileFailed",
    ];

    /// Errors only the user can fix by changing the InferenceService.
    pub fn is_user_error(&self) -> bool {
        matches!(self, Error::Plan(_))
    }

    fn is_api(&self) -> bool {
        matches!(self, Error::Kube(_) | Error::Timeout(_) | Error::NotSynced)
    }

    /// The Warning event reason for this error; `None` for transient states not worth one.
    fn reason(&self) -> Option<&'static str> {
        match self {
            Error::Plan(_) => Some("InvalidScalingRequest"),
            Error::NotOwned { .. } => Some("NameConflict"),
            Error::MissingApi { .. } => Some("ApiNotServed"),
            Error::AwaitingCollection { .. } | Error::InvalidOptions(_) | Error::NotSynced => None,
            Error::Kube(_) | Error::Incomplete(_) | Error::Serialize(_) | Error::Timeout(_) => {
                Some("ReconcileFailed")
            }
        }
    }
}

/// The objects the controller generates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    ScaledObject,
    ServiceMonitor,
    PodMonitor,
    PrometheusRule,
}

impl Kind {
    pub const ALL: [Kind; 4] = [
        Kind::ScaledObject,
        Kind::ServiceMonitor,
        Kind::PodMonitor,
        Kind::PrometheusRule,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::ScaledObject => "ScaledObject",
            Kind::ServiceMonitor => "ServiceMonitor",
            Kind::PodMonitor => "PodMonitor",
            Kind::PrometheusRule => "PrometheusRule",
        }
    }

    pub fn resource(self) -> ApiResource {
        match self {
            Kind::ScaledObject => ApiResource::erase::<ScaledObject>(&()),
            Kind::ServiceMonitor => ApiResource::erase::<ServiceMonitor>(&()),
            Kind::PodMonitor => ApiResource::erase::<PodMonitor>(&()),
            Kind::PrometheusRule => ApiResource::erase::<PrometheusRule>(&()),
        }
    }
}

/// Runs leader election and, while this replica leads, the controller. See the module docs.
pub async fn run(
    client: Client,
    scaling: Arc<Scaling>,
    opts: ControllerOptions,
    metrics: Metrics,
    ready: watch::Sender<bool>,
) -> Result<(), Error> {
    opts.validate()?;
    let (leader_tx, leader_rx) = watch::channel(false);
    let mut elector = Elector::new(client.clone(), opts.lease_config());
    if let Some(deadline) = opts.renew_deadline {
        elector = elector.with_renew_deadline(deadline);
    }
    let leader_elect = opts.leader_elect;
    let elect = async move {
        if leader_elect {
            elector.run(leader_tx).await;
        } else {
            // Leads for good; the sender stays alive so leadership is never seen as lost.
            leader_tx.send_replace(true);
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = elect => Ok(()),
        () = crate::metrics::track_leader(metrics.leader.clone(), leader_rx.clone()) => Ok(()),
        () = follow(client, scaling, opts, metrics, ready, leader_rx) => Ok(()),
    }
}

async fn follow(
    client: Client,
    scaling: Arc<Scaling>,
    opts: ControllerOptions,
    metrics: Metrics,
    ready: watch::Sender<bool>,
    mut leader: watch::Receiver<bool>,
) {
    loop {
        if leader.changed().await.is_err() {
            return;
        }
        if !*leader.borrow_and_update() {
            ready.send_replace(true);
            continue;
        }
        tracing::info!(identity = %opts.identity, "leading: starting the controller");
        let reporter = Reporter {
            controller: FIELD_MANAGER.to_string(),
            instance: Some(opts.identity.clone()),
        };
        let ctx = Arc::new(context::Context::new(
            client.clone(),
            scaling.clone(),
            metrics.clone(),
            reporter,
            &opts,
        ));
        let term = lead(client.clone(), &opts, ctx.clone(), &ready);
        tokio::select! {
            () = term => {}
            _ = leader.wait_for(|l| !*l) => {
                tracing::info!(identity = %opts.identity, "lost the Lease: stopping the controller");
            }
        }
        ctx.clear_managed();
    }
}

/// One leadership term: a controller per watched scope, until the future is dropped.
async fn lead(
    client: Client,
    opts: &ControllerOptions,
    ctx: Arc<context::Context>,
    ready: &watch::Sender<bool>,
) {
    let scopes: Vec<Option<String>> = if opts.namespaces.is_empty() {
        vec![None]
    } else {
        opts.namespaces.iter().cloned().map(Some).collect()
    };
    let mut served = Vec::new();
    for kind in Kind::ALL {
        if is_served(&client, kind, scopes.first().cloned().flatten().as_deref()).await {
            served.push(kind);
        } else {
            tracing::warn!(kind = kind.as_str(), "API not served; not watching it");
        }
    }
    let mut stores = Vec::new();
    let mut runs = Vec::new();
    let mut caches = Vec::new();
    for scope in &scopes {
        let (controller, store, cache) = build_controller(&client, scope.as_deref(), &served);
        stores.push(store);
        runs.push(controller);
        caches.push(cache);
    }
    ctx.set_caches(caches);
    let all_stores = Arc::new(stores.clone());
    let futures = runs.into_iter().map(|c| {
        let ctx = ctx.clone();
        let stores = all_stores.clone();
        let prune_every = Duration::from_secs(10);
        let mut last_prune = tokio::time::Instant::now();
        c.run(reconciler::reconcile, reconciler::error_policy, ctx.clone())
            .for_each(move |res| {
                if let Err(e) = &res {
                    tracing::debug!(error = %e, "controller event");
                }
                if last_prune.elapsed() >= prune_every {
                    last_prune = tokio::time::Instant::now();
                    // One pass over the caches, not one per InferenceService remembered.
                    let uids: std::collections::HashSet<String> = stores
                        .iter()
                        .flat_map(|s| s.state())
                        .filter_map(|o| o.uid())
                        .collect();
                    ctx.retain_managed(&|uid: &str| uids.contains(uid));
                }
                std::future::ready(())
            })
    });
    let synced = async {
        for s in &stores {
            if s.wait_until_ready().await.is_err() {
                return;
            }
        }
        ready.send_replace(true);
    };
    futures::join!(futures::future::join_all(futures), synced);
}

/// Reconciles running at once. Unbounded, a cluster-wide start ran one per InferenceService
/// together: thousands of requests in flight at the API server and every reconcile's buffers
/// held at the same moment, which the heap kept afterwards.
const RECONCILE_CONCURRENCY: u16 = 16;

fn build_controller(
    client: &Client,
    namespace: Option<&str>,
    served: &[Kind],
) -> (
    Controller<DynamicObject>,
    Store<DynamicObject>,
    cache::ScopeCaches,
) {
    let isvc_ar = reconciler::isvc_resource();
    let isvcs: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &isvc_ar),
        None => Api::all_with(client.clone(), &isvc_ar),
    };
    // Metadata only: the scale-target lookup reads names and labels, never a pod template.
    let deployments: Api<PartialObjectMeta<Deployment>> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    // kube-runtime backs off all trigger watches together, and its default (up to 30 s, reset
    // only after 120 s quiet) can leave the controller blind for minutes after an API-server
    // restart expires every watch at once. A webhook's objects should come back within
    // seconds, so the cap is 5 s.
    let backoff = ResetTimerBackoff::new(
        ExponentialBackoff::from(
            backon::ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(500))
                .with_max_delay(Duration::from_secs(5))
                .with_factor(2.0)
                .with_jitter()
                .without_max_times(),
        ),
        Duration::from_secs(30),
    );
    // Each store is filled by its own watch, trimmed before it is stored (see `cache`), and
    // a trigger passes through the store first, so the reconcile it starts reads a cache
    // that already holds the change.
    let isvc_writer = Writer::<DynamicObject>::new(isvc_ar.clone());
    let store = isvc_writer.as_reader();
    let isvc_stream = reflector(
        isvc_writer,
        watcher(isvcs, watcher::Config::default()).modify(cache::trim_isvc),
    )
    .applied_objects();
    let mut controller = Controller::for_stream_with(isvc_stream, store.clone(), isvc_ar.clone())
        .with_config(
            kube::runtime::controller::Config::default().concurrency(RECONCILE_CONCURRENCY),
        )
        .trigger_backoff(backoff);
    let mapper_ar = isvc_ar.clone();
    let deployment_writer = Writer::<PartialObjectMeta<Deployment>>::new(());
    let deployment_store = deployment_writer.as_reader();
    let deployment_stream = reflector(
        deployment_writer,
        watcher(
            deployments,
            watcher::Config::default().labels(&format!("{ISVC_LABEL},component=predictor")),
        )
        .modify(cache::trim_deployment),
    )
    .touched_objects();
    controller = controller.watches_stream(
        deployment_stream,
        move |d: PartialObjectMeta<Deployment>| {
            let ns = d.namespace()?;
            let isvc = d.labels().get(ISVC_LABEL)?.clone();
            Some(ObjectRef::new_with(&isvc, mapper_ar.clone()).within(&ns))
        },
    );
    let mut owned = Vec::new();
    for kind in served {
        let ar = kind.resource();
        let api: Api<DynamicObject> = match namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
            None => Api::all_with(client.clone(), &ar),
        };
        // Every object of the kind, not only the labelled ones: a person's object that holds
        // a planned name must be seen before anything is applied under that name.
        let writer = Writer::<DynamicObject>::new(ar.clone());
        owned.push((*kind, writer.as_reader()));
        let stream = reflector(
            writer,
            watcher(api, watcher::Config::default()).modify(cache::trim_owned),
        )
        .touched_objects();
        controller = controller.owns_stream_with(stream, ar);
    }
    let caches = cache::ScopeCaches {
        namespace: namespace.map(str::to_string),
        deployments: deployment_store,
        owned,
    };
    (controller, store, caches)
}

/// Whether the API of `kind` exists. A watch on a missing API fails forever, and kube-runtime
/// backs off all triggers of a controller together, so an unserved API is not watched at all.
async fn is_served(client: &Client, kind: Kind, namespace: Option<&str>) -> bool {
    let ar = kind.resource();
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    };
    match api.list_metadata(&ListParams::default().limit(1)).await {
        Err(kube::Error::Api(s)) if s.code == 404 => false,
        // Anything else (RBAC, a blip) is for the watch and its backoff to sort out.
        _ => true,
    }
}
