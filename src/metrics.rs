//! Prometheus metrics of the webhook and the controller, served on `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// allowed (no change), patched, denied, skipped (not ours), invalid (not a review).
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// success or error.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

/// All metrics; cheap to clone (every field is an `Arc` inside).
#[derive(Clone)]
pub struct Metrics {
    pub admission_requests: Family<OutcomeLabels, Counter>,
    pub admission_duration: Histogram,
    pub reconciles: Family<ResultLabels, Counter>,
    pub reconcile_duration: Histogram,
    pub managed_objects: Family<KindLabels, Gauge>,
    pub cert_reloads: Family<ResultLabels, Counter>,
    pub policy_reloads: Family<ResultLabels, Counter>,
    pub policy_findings: Family<ModeLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModeLabels {
    /// warn or audit (enforced findings are denials, counted as such).
    pub mode: &'static str,
}

impl Metrics {
    /// Creates the metrics and registers them under the `kserve_keda_webhook` prefix.
    pub fn new(registry: &mut Registry) -> Metrics {
        let m = Metrics {
            admission_requests: Family::default(),
            // 50 µs .. ~0.4 s: admission is CPU-only and should sit in the lowest buckets.
            admission_duration: Histogram::new(exponential_buckets(0.00005, 2.0, 14)),
            reconciles: Family::default(),
            reconcile_duration: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            managed_objects: Family::default(),
            cert_reloads: Family::default(),
            policy_reloads: Family::default(),
            policy_findings: Family::default(),
        };
        let r = registry.sub_registry_with_prefix("kserve_keda_webhook");
        r.register(
            "admission_requests",
            "Admission reviews answered, by outcome",
            m.admission_requests.clone(),
        );
        r.register(
            "admission_duration_seconds",
            "Time to decode, plan and encode one admission review",
            m.admission_duration.clone(),
        );
        r.register(
            "reconciles",
            "Reconciles of InferenceServices, by result",
            m.reconciles.clone(),
        );
        r.register(
            "reconcile_duration_seconds",
            "Time of one reconcile",
            m.reconcile_duration.clone(),
        );
        r.register(
            "managed_objects",
            "Generated objects the controller currently manages, by kind",
            m.managed_objects.clone(),
        );
        r.register(
            "certificate_reloads",
            "Serving certificate reloads, by result",
            m.cert_reloads.clone(),
        );
        r.register(
            "policy_reloads",
            "Policy file reloads, by result",
            m.policy_reloads.clone(),
        );
        r.register(
            "policy_findings",
            "Policy findings let through, by enforcement mode (warn, audit)",
            m.policy_findings.clone(),
        );
        m
    }
}

/// Renders the registry in the Prometheus text format.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail; an error would only come from a broken metric.
    if prometheus_client::encoding::text::encode(&mut out, registry).is_err() {
        out.clear();
    }
    out
}
