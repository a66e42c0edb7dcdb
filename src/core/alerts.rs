//! Alerting rules that tell a platform team why a model does not scale. Every expression reads
//! the same exact selection as the triggers, plus kube-state-metrics' view of the Deployment.

use crate::core::isvc::AUTOSCALER_CLASS as AUTOSCALER;
use crate::core::strategy::{MetricType, Runtime, Scope, Strategy, query, quote, server_metric};

/// How long the scaling signal may be missing while the model runs before it is reported:
/// long enough for a new pod's first scrapes.
pub const ABSENT_FOR: &str = "10m";
/// How long the model may sit at its maximum before that is reported as a capacity cap.
pub const AT_MAX_FOR: &str = "30m";
/// How long the signal may stay above target without the replicas growing.
pub const STUCK_FOR: &str = "15m";
/// The HPA leaves replicas alone while current/target is within 10 % of 1, so "above target"
/// only means something beyond that.
const HPA_TOLERANCE: f64 = 1.1;

/// One trigger as the ScaledObject has it.
#[derive(Clone, Debug)]
pub struct Trigger {
    pub strategy: Strategy,
    pub metric_type: MetricType,
    pub threshold: f64,
    pub query: String,
}

/// One alerting rule, ready to be put into a PrometheusRule.
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    pub alert: &'static str,
    pub expr: String,
    pub for_: &'static str,
    /// The trigger it concerns, if any.
    pub strategy: Option<Strategy>,
    pub summary: String,
    pub description: String,
}

impl Scope<'_> {
    /// `kube_deployment_<what>` for the predictor Deployment, folded to one series.
    fn deployment(&self, what: &str) -> String {
        format!(
            "max(kube_deployment_{what}{{namespace={},deployment={}}})",
            quote(self.namespace),
            quote(self.deployment)
        )
    }
}

/// The series whose absence means a trigger reads nothing: the model server's metric
/// itself, or for node-level exporters the joined query (empty when the exporter or
/// kube-state-metrics is missing).
fn presence(t: &Trigger, runtime: Runtime, scope: Scope<'_>, window: &str) -> Option<String> {
    match server_metric(t.strategy, runtime) {
        Some(name) => Some(format!("{name}{{{}}}", scope.server_matchers())),
        None => query(t.strategy, runtime, scope, window).ok(),
    }
}

pub fn alerts(
    scope: Scope<'_>,
    runtime: Runtime,
    window: &str,
    triggers: &[Trigger],
    max_replicas: u32,
) -> Vec<Alert> {
    let model = format!("InferenceService {}/{}", scope.namespace, scope.isvc);
    let running = format!("{} > 0", scope.deployment("status_replicas_available"));
    let spec_replicas = scope.deployment("spec_replicas");
    let mut out = Vec::new();
    for t in triggers.iter().filter(|t| t.strategy != Strategy::Custom) {
        let Some(present) = presence(t, runtime, scope, window) else {
            continue;
        };
        let what = if t.strategy.uses_server_metrics() {
            format!(
                "check that the generated monitor scrapes the predictor pods (Prometheus targets), that the {} runtime exports {} (vLLM's --disable-log-stats turns metrics off), and that the runtime annotation names the right server",
                runtime,
                server_metric(t.strategy, runtime).unwrap_or_default()
            )
        } else {
            "check that the node exporter (dcgm-exporter for GPU metrics, Kepler for power) runs on the model's nodes and that kube-state-metrics is scraped (kube_pod_owner, kube_replicaset_owner)".to_string()
        };
        out.push(Alert {
            alert: "KServeScalingSignalAbsent",
            expr: format!("absent({present}) and on () ({running})"),
            for_: ABSENT_FOR,
            strategy: Some(t.strategy),
            summary: format!(
                "{model} is running but its '{}' scaling signal is missing, so KEDA reads 0 and will not scale up",
                t.strategy
            ),
            description: what,
        });
        let per_replica = match t.metric_type {
            MetricType::AverageValue => format!("({}) / {spec_replicas}", t.query),
            MetricType::Value => format!("({})", t.query),
        };
        out.push(Alert {
            alert: "KServeScalingStuck",
            expr: format!(
                "{per_replica} > {} and on () ({spec_replicas} < {max_replicas}) and on () (max(changes(kube_deployment_spec_replicas{{namespace={},deployment={}}}[{STUCK_FOR}])) == 0)",
                // Rounded so the rule reads 0.11, not 0.11000000000000001.
                (t.threshold * HPA_TOLERANCE * 1e9).round() / 1e9,
                quote(scope.namespace),
                quote(scope.deployment)
            ),
            for_: STUCK_FOR,
            strategy: Some(t.strategy),
            summary: format!(
                "{model}: the '{}' signal has stayed above its target {} for {STUCK_FOR} but the replicas did not grow",
                t.strategy, t.threshold
            ),
            description: format!(
                "check the ScaledObject and its HPA keda-hpa-* (kubectl describe: conditions, events), the KEDA operator logs (Prometheus errors), that {AUTOSCALER} is external, and whether new pods are Pending for lack of GPUs",
            ),
        });
    }
    out.push(Alert {
        alert: "KServeScalingAtMaxReplicas",
        expr: format!("{spec_replicas} >= {max_replicas}"),
        for_: AT_MAX_FOR,
        strategy: None,
        summary: format!(
            "{model} has run at its maximum of {max_replicas} replicas for {AT_MAX_FOR}: demand is capped"
        ),
        description: "raise the max-replicas annotation (or the platform policy's limit) if the cluster has room, or check the latency the model's users see".to_string(),
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCOPE: Scope<'static> = Scope {
        namespace: "llm",
        isvc: "qwen",
        deployment: "qwen-predictor",
    };

    fn trigger(s: Strategy) -> Trigger {
        Trigger {
            strategy: s,
            metric_type: s.metric_type(),
            threshold: 4.0,
            query: query(s, Runtime::Vllm, SCOPE, "1m").unwrap(),
        }
    }

    #[test]
    fn each_trigger_gets_an_absent_and_a_stuck_alert_and_the_model_one_cap_alert() {
        let a = alerts(
            SCOPE,
            Runtime::Vllm,
            "1m",
            &[trigger(Strategy::Queue), trigger(Strategy::Gpu)],
            5,
        );
        let names: Vec<_> = a.iter().map(|a| a.alert).collect();
        assert_eq!(
            names,
            [
                "KServeScalingSignalAbsent",
                "KServeScalingStuck",
                "KServeScalingSignalAbsent",
                "KServeScalingStuck",
                "KServeScalingAtMaxReplicas"
            ]
        );
        assert!(
            a[0].expr
                .starts_with("absent(vllm:num_requests_waiting{namespace=\"llm\",")
        );
        assert!(a[1].expr.contains("> 4.4"), "{}", a[1].expr);
        assert!(a[4].expr.ends_with(">= 5"), "{}", a[4].expr);
        for x in &a {
            assert!(x.summary.contains("llm/qwen"), "{}", x.summary);
        }
    }

    #[test]
    fn custom_triggers_get_no_per_trigger_alerts() {
        let custom = Trigger {
            strategy: Strategy::Custom,
            metric_type: MetricType::Value,
            threshold: 1.0,
            query: "vector(1)".into(),
        };
        let a = alerts(SCOPE, Runtime::Vllm, "1m", &[custom], 3);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].alert, "KServeScalingAtMaxReplicas");
    }
}
