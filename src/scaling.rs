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
    pub fn plan(
        &self,
        input: Input<'_>,
        requester: Option<Requester<'_>>,
    ) -> Result<Plan, PlanError> {
        self.plan_with(input, requester, true)
    }

    /// Plans one admission request: the same decision, annotation changes, warnings and
    /// findings as [`Scaling::plan`], without building the alert rule unless the object
    /// asks for alerts itself. Admission answers with annotations only; the rule is the
    /// controller's to apply, and building it was a fifth of a review's cost.
    pub fn admit(&self, input: Input<'_>, requester: Requester<'_>) -> Result<Plan, PlanError> {
        self.plan_with(input, Some(requester), false)
    }

    fn plan_with(
        &self,
        input: Input<'_>,
        requester: Option<Requester<'_>>,
        default_alerts: bool,
    ) -> Result<Plan, PlanError> {
        let policy = self.policy();
        let labels = (self.labels)(&input.isvc.namespace);
        let mut effective = policy.resolve(&self.base, &input.isvc.namespace, &labels);
        effective.settings.alerts &= default_alerts;
        policy::enforce(input, &effective, requester)
    }
}

/// Re-reads the policy file every `interval`; a new version that parses replaces the old
/// one, a broken one is logged and counted and the last good policy stays in force. A file
/// that disappears (a ConfigMap being replaced) keeps the current policy too.
///
/// The file is parsed on a blocking thread: a large or pathological file (within the caps
/// of [`policy::source`]) then costs a blocking thread its time, never an async worker
/// that answers reviews and probes.
pub async fn watch_policy(
    scaling: Arc<Scaling>,
    path: PathBuf,
    current: String,
    interval: Duration,
    metrics: Metrics,
) {
    watch_with(
        scaling,
        path,
        current,
        interval,
        metrics,
        Arc::new(|bytes: &[u8]| policy::parse_bytes(bytes).map_err(|e| e.to_string())),
    )
    .await;
}

/// How a reload turns the file's bytes into a policy (a seam for tests).
type Parse = Arc<dyn Fn(&[u8]) -> Result<Policy, String> + Send + Sync>;

async fn watch_with(
    scaling: Arc<Scaling>,
    path: PathBuf,
    current: String,
    interval: Duration,
    metrics: Metrics,
    parse: Parse,
) {
    let what = format!("policy {}", path.display());
    crate::reload::on_change_async(
        &what,
        interval,
        current.into_bytes(),
        || read_policy(&path).ok(),
        |bytes| {
            let bytes = bytes.clone();
            let parse = parse.clone();
            let scaling = scaling.clone();
            async move {
                let parsed = tokio::task::spawn_blocking(move || parse(&bytes))
                    .await
                    .map_err(|e| format!("the parse did not finish: {e}"))??;
                scaling.replace(parsed);
                Ok(())
            }
        },
        metrics.policy_reloads,
    )
    .await;
}

/// The policy file's bytes, at most one byte past the cap: enough for the parser to refuse
/// an oversized file by its size without reading all of it.
pub fn read_policy(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(policy::source::MAX_BYTES as u64 + 1)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use serde_json::json;

    use crate::core::isvc::Isvc;

    fn isvc(annotations: &[(&str, &str)], predictor: serde_json::Value) -> Isvc {
        let meta = ObjectMeta {
            name: Some("qwen".into()),
            namespace: Some("llm".into()),
            annotations: Some(
                annotations
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..ObjectMeta::default()
        };
        Isvc::from_fields(&meta, Some(&predictor), None, "default").unwrap()
    }

    /// Admission leaves out only the alert rule: the answer (annotations, warnings, audit
    /// findings, or the refusal) is the full plan's, whatever the annotations ask.
    #[test]
    fn admission_plans_like_the_controller_without_the_rule() {
        let policy = policy::parse(
            "limits: {maxReplicas: 6}\nenforcement: warn\nrules:\n- name: audit\n  enforcement: audit\n  limits: {minPollingInterval: 60}\n",
        )
        .unwrap();
        let scaling = Scaling::new(Settings::default(), policy, Arc::new(|_| BTreeMap::new()));
        let model = json!({"minReplicas": 1, "model": {"modelFormat": {"name": "huggingface"},
            "args": ["--disable-log-stats"], "resources": {"limits": {"nvidia.com/gpu": "1"}}}});
        let cases: Vec<Vec<(&str, &str)>> = vec![
            vec![
                ("scaling.io/strategy", "tokens,queue"),
                ("scaling.io/max-replicas", "8"),
            ],
            vec![
                ("scaling.io/strategy", "concurrency"),
                ("scaling.io/alerts", "true"),
            ],
            vec![
                ("scaling.io/strategy", "gpu"),
                ("scaling.io/alerts", "false"),
            ],
            vec![
                ("scaling.io/strategy", "concurrency"),
                ("scaling.io/monitor", "none"),
            ],
            vec![("scaling.io/strategy", "nonsense")],
            vec![("scaling.io/max-replicas", "3")],
            vec![],
        ];
        let groups = Vec::new();
        let requester = Requester {
            username: "alice",
            groups: &groups,
        };
        let mut rules = 0;
        for annotations in cases {
            let isvc = isvc(&annotations, model.clone());
            let input = Input {
                isvc: &isvc,
                old: None,
                live_deployment: None,
            };
            let full = scaling.plan(input, Some(requester.clone()));
            let admitted = scaling.admit(input, requester.clone());
            match (full, admitted) {
                (Ok(full), Ok(admitted)) => {
                    rules += usize::from(full.rule.is_some());
                    let asked = annotations.contains(&("scaling.io/alerts", "true"));
                    assert_eq!(admitted.rule.is_some(), asked, "{annotations:?}");
                    assert_eq!(admitted.annotations, full.annotations, "{annotations:?}");
                    assert_eq!(admitted.warnings, full.warnings, "{annotations:?}");
                    assert_eq!(admitted.audit, full.audit, "{annotations:?}");
                    assert_eq!(admitted.scaled_object, full.scaled_object);
                    assert_eq!(admitted.monitor, full.monitor);
                }
                (Err(full), Err(admitted)) => assert_eq!(admitted, full),
                (full, admitted) => panic!("{annotations:?}: {full:?} vs {admitted:?}"),
            }
        }
        // The controller's plan does build rules for these inputs, so the comparison above
        // covered plans where the two differ in the rule.
        assert!(rules >= 2, "{rules}");
    }

    /// A reload parses on a blocking thread: while a parse is held in progress, the
    /// runtime (one thread here, as a worker of `serve` is one) still plans reviews, and
    /// the parse ran on another thread. No clock: the parse waits for the test to let it go.
    #[tokio::test(flavor = "current_thread")]
    async fn a_reload_parses_off_the_async_thread_while_reviews_go_on() {
        use std::sync::Mutex;
        use std::sync::mpsc;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.yaml");
        std::fs::write(&path, "limits: {maxReplicas: 2}\n").unwrap();
        let scaling = Arc::new(Scaling::from(Settings::default()));
        let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
        let (release, release_rx) = mpsc::channel::<()>();
        let release_rx = Mutex::new(release_rx);
        let runtime_thread = std::thread::current().id();
        let parse: Parse = Arc::new(move |bytes: &[u8]| {
            let here = std::thread::current().id();
            let _ = started_tx.send(here);
            // Held only off the runtime's thread: held on it, nothing could release it,
            // and the assertion below is what should fail.
            if here != runtime_thread {
                let _ = release_rx.lock().unwrap().recv();
            }
            policy::parse_bytes(bytes).map_err(|e| e.to_string())
        });
        let task = tokio::spawn(watch_with(
            scaling.clone(),
            path,
            String::new(),
            Duration::from_millis(1),
            Metrics::new(&mut prometheus_client::registry::Registry::default()),
            parse,
        ));

        let parsing_on = started.recv().await.unwrap();
        assert_ne!(parsing_on, std::thread::current().id());
        // The parse is in progress and held; a review is planned meanwhile, under the
        // policy still in force.
        let i = isvc(
            &[
                ("scaling.io/strategy", "queue"),
                ("scaling.io/max-replicas", "5"),
            ],
            json!({}),
        );
        let input = Input {
            isvc: &i,
            old: None,
            live_deployment: None,
        };
        assert!(scaling.plan(input, None).is_ok());
        release.send(()).unwrap();
        while scaling.policy().limits.max_replicas != Some(2) {
            tokio::task::yield_now().await;
        }
        assert!(scaling.plan(input, None).is_err());
        task.abort();
    }
}
