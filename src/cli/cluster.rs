//! What `serve` needs from the cluster: a client, the namespace-label cache that
//! label-selected policy rules read, and the controller running in the background.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use kserve_keda_webhook::controller::{self, ControllerOptions};
use kserve_keda_webhook::scaling::NamespaceLabels;
use kserve_keda_webhook::server::AppState;

/// A client from --kubeconfig, or the usual inference (in-cluster, KUBECONFIG, ~/.kube).
pub async fn client(kubeconfig: Option<&Path>) -> anyhow::Result<kube::Client> {
    use kube::config::{KubeConfigOptions, Kubeconfig};
    let Some(path) = kubeconfig else {
        return kube::Client::try_default().await.context(
            "the controller, self-managed certificates and label-selected policy rules need a Kubernetes API server (in-cluster service account or kubeconfig); run with --no-controller and file or --self-signed certificates to serve admission only",
        );
    };
    let file =
        Kubeconfig::read_from(path).with_context(|| format!("--kubeconfig {}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("--kubeconfig {}", path.display()))?;
    kube::Client::try_from(config)
        .with_context(|| format!("--kubeconfig {}: cannot build a client", path.display()))
}

/// Labels of no namespace: what planning sees when no policy rule selects by label.
pub fn no_labels() -> NamespaceLabels {
    Arc::new(|_: &str| BTreeMap::new())
}

/// Keeps namespace labels in a watched cache (metadata only) and returns the lookup; waits
/// until the cache has filled so the first reviews see the labels.
pub async fn namespace_labels(client: kube::Client) -> anyhow::Result<NamespaceLabels> {
    use futures::StreamExt;
    use k8s_openapi::api::core::v1::Namespace;
    use kube::core::PartialObjectMeta;
    use kube::runtime::{WatchStreamExt, reflector, watcher};
    // Metadata only: labels are all the rules read, and whole Namespaces would cost memory.
    let api: kube::Api<PartialObjectMeta<Namespace>> = kube::Api::all(client);
    let (reader, writer) = reflector::store();
    let stream = reflector(writer, watcher(api, watcher::Config::default()))
        .default_backoff()
        .touched_objects();
    tokio::spawn(stream.for_each(|_| futures::future::ready(())));
    tokio::time::timeout(Duration::from_secs(30), reader.wait_until_ready())
        .await
        .context("namespace labels (for label-selected policy rules) did not load within 30 s")?
        .context("namespace label cache")?;
    Ok(Arc::new(move |ns: &str| {
        reader
            .get(&reflector::ObjectRef::new(ns))
            .and_then(|n| n.metadata.labels.clone())
            .unwrap_or_default()
    }))
}

/// Runs the controller in the background; readiness follows its sync state.
pub async fn start_controller(client: kube::Client, opts: ControllerOptions, state: &AppState) {
    let (ready_tx, mut ready_rx) = tokio::sync::watch::channel(false);
    let readiness = state.readiness.clone();
    tokio::spawn(async move {
        while ready_rx.changed().await.is_ok() {
            readiness.set_controller_synced(*ready_rx.borrow());
        }
    });
    let scaling = state.scaling.clone();
    let metrics = state.metrics.clone();
    tokio::spawn(async move {
        if let Err(e) = controller::run(client, scaling, opts, metrics, ready_tx).await {
            tracing::error!(error = %e, "controller stopped");
        }
    });
}
