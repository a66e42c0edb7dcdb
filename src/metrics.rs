//! Prometheus metrics of the webhook and the controller, served on `/metrics`.

pub mod process;

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
pub struct ListenerLabels {
    /// https (admission) or metrics (the plain-HTTP probes and metrics port).
    pub listener: &'static str,
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
    /// Reviews being answered right now (body read, planned, encoded).
    pub admissions_in_flight: Gauge,
    /// 1 while this replica holds the Lease (or runs without leader election).
    pub leader: Gauge,
    /// notAfter of the certificate being served, in seconds since the epoch.
    pub certificate_expiry: Gauge,
    /// Connections open now, per listener (handshakes included).
    pub connections: Family<ListenerLabels, Gauge>,
    /// Connections closed on arrival because their listener was at its cap.
    pub connections_refused: Family<ListenerLabels, Counter>,
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
            admissions_in_flight: Gauge::default(),
            leader: Gauge::default(),
            certificate_expiry: Gauge::default(),
            connections: Family::default(),
            connections_refused: Family::default(),
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
        r.register(
            "admissions_in_flight",
            "Admission reviews being answered right now",
            m.admissions_in_flight.clone(),
        );
        r.register(
            "leader",
            "1 while this replica holds the leader-election Lease and runs the controller",
            m.leader.clone(),
        );
        r.register(
            "certificate_expiry_timestamp_seconds",
            "notAfter of the serving certificate in use, in seconds since the epoch",
            m.certificate_expiry.clone(),
        );
        r.register(
            "connections",
            "Connections open now, by listener (https, metrics), TLS handshakes included",
            m.connections.clone(),
        );
        r.register(
            "connections_refused",
            "Connections closed on arrival because the listener was at its connection cap",
            m.connections_refused.clone(),
        );
        // The standard names every exporter uses, so existing fleet alerts apply unchanged.
        registry.register_collector(Box::new(crate::metrics::process::ProcessCollector));
        m
    }
}

/// Mirrors leadership into the `leader` gauge; returns when the sender is gone.
pub async fn track_leader(gauge: Gauge, mut leader: tokio::sync::watch::Receiver<bool>) {
    loop {
        gauge.set(i64::from(*leader.borrow_and_update()));
        if leader.changed().await.is_err() {
            gauge.set(0);
            return;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn leader_gauge_follows_the_election_and_drops_when_it_ends() {
        let gauge = Gauge::default();
        let (tx, rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(track_leader(gauge.clone(), rx));
        let wait_for = |want: i64| {
            let gauge = gauge.clone();
            async move {
                for _ in 0..100 {
                    if gauge.get() == want {
                        return true;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
                false
            }
        };
        tx.send_replace(true);
        assert!(wait_for(1).await);
        tx.send_replace(false);
        assert!(wait_for(0).await);
        tx.send_replace(true);
        assert!(wait_for(1).await);
        drop(tx);
        task.await.unwrap();
        assert_eq!(gauge.get(), 0);
    }
}
