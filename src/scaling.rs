//! The one object every shell plans through: the command line's settings, the platform policy
//! in force (swapped on reload), and a lookup of namespace labels for label-selected rules.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::core::plan::{Input, Plan, PlanError};
use crate::core::settings::Settings;
use crate::metrics::Metrics;
use crate::policy::{self, Policy, Requester};

/// Labels of a namespace by name; empty when unknown.
pub type NamespaceLabels = Arc<dyn Fn(&str) -> BTreeMap<String, String> + Send + Sync>;

pub struct Scaling {
    base: Settings,
    policy: RwLock<Arc<Policy>>,
    labels: NamespaceLabels,
}

impl From<Settings> for Scaling {
    fn from(base: Settings) -> Scaling {
        Scaling::new(base, Policy::default(), Arc::new(|_| BTreeMap::new()))
    }
}

impl Scaling {
    pub fn new(base: Settings, policy: Policy, labels: NamespaceLabels) -> Scaling {
        Scaling {
            base,
            policy: RwLock::new(Arc::new(policy)),
            labels,
        }
    }

    pub fn policy(&self) -> Arc<Policy> {
        // A writer that panicked left a complete Arc behind; keep using it.
        self.policy
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn replace(&self, policy: Policy) {
        *self.policy.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(policy);
    }

    /// The annotation prefix in force.
    pub fn prefix(&self) -> String {
        self.policy().cluster_settings(&self.base).prefix
    }

    /// Plans one InferenceService under the policy of its namespace. `requester` is the
    /// user of an admission request (None in render and the controller).
    pub fn decide(
        &self,
        input: Input<'_>,
        requester: Option<Requester<'_>>,
    ) -> Result<Plan, PlanError> {
        let policy = self.policy();
        let labels = (self.labels)(&input.isvc.namespace);
        let effective = policy.resolve(&self.base, &input.isvc.namespace, &labels);
        policy::decide(input, &effective, requester)
    }
}

/// Re-reads the policy file every `interval`; a new version that parses replaces the old
/// one, a broken one is logged and counted and the last good policy stays in force. A file
/// that disappears (a ConfigMap being replaced) keeps the current policy too.
pub async fn watch_policy(
    scaling: Arc<Scaling>,
    path: PathBuf,
    current: String,
    interval: Duration,
    metrics: Metrics,
) {
    let what = format!("policy {}", path.display());
    crate::reload::on_change(
        &what,
        interval,
        current,
        || std::fs::read_to_string(&path).ok(),
        |text| {
            scaling.replace(policy::parse(text).map_err(|e| e.to_string())?);
            Ok(())
        },
        metrics.policy_reloads,
    )
    .await;
}
