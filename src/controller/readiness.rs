//! Whether KEDA can scale with the ScaledObject we applied, read from the conditions KEDA
//! writes. A broken trigger (Prometheus unreachable, a query that fails) is visible on the
//! ScaledObject only, and people look at their InferenceService; the reconciler repeats KEDA's
//! verdict there as an Event.

use std::time::Duration;

use serde_json::Value;

/// The Event reason for a ScaledObject that KEDA reports as not ready.
pub const REASON: &str = "ScaledObjectNotReady";

/// How long the same problem stays reported before it is repeated. KEDA's ScaledObject
/// controller sets `Ready` back to True whenever it reconciles, and its scale loop sets it to
/// False again at the next failing poll, so the condition flaps while a trigger fails.
pub const REPEAT_AFTER: Duration = Duration::from_secs(600);

/// What is wrong with the ScaledObject, from its `status`, or `None` when it is ready or KEDA
/// has not judged it yet.
///
/// KEDA sets `Ready` to `False` when every trigger fails (reason `TriggerError`), when the scale
/// target cannot be read or scaled, or when the ScaledObject is rejected by its checks; to
/// `Unknown` with reason `PartialTriggerError` when only some triggers fail. A missing
/// condition or a bare `Unknown` is the state before KEDA's first check, not a problem.
pub fn problem(name: &str, status: Option<&Value>) -> Option<String> {
    let conditions = status?.get("conditions")?.as_array()?;
    let ready = conditions
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))?;
    let text = |key: &str| ready.get(key).and_then(Value::as_str).unwrap_or_default();
    let (state, reason, message) = (text("status"), text("reason"), text("message"));
    let failing = match state {
        "False" => true,
        "Unknown" => reason == "PartialTriggerError",
        _ => false,
    };
    if !failing {
        return None;
    }
    let reason = if reason.is_empty() {
        "no reason given"
    } else {
        reason
    };
    let message = if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    };
    Some(format!(
        "KEDA reports ScaledObject {name} not ready ({reason}){message}; the replicas will not \
         follow the scaling signal until it is fixed (kubectl describe scaledobject {name}, \
         and the KEDA operator's log)"
    ))
}

/// The metric names KEDA gives the triggers that fail now (`status.health` entries whose
/// status is `Failing`), from a ScaledObject's `status`.
pub fn failing_triggers(status: &Value) -> impl Iterator<Item = &str> {
    status
        .get("health")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(_, h)| h.get("status").and_then(Value::as_str) == Some("Failing"))
        .map(|(metric, _)| metric.as_str())
}

/// The Event reason for a ScaledObject whose replicas follow KEDA's fallback.
pub const FALLBACK_REASON: &str = "ScalingOnFallback";

/// What KEDA is doing instead of following the signal, from the ScaledObject's `status`, or
/// `None` while no trigger is on its fallback.
///
/// KEDA counts consecutive failures per trigger in `status.health` (keyed by the metric name
/// it gives the trigger, `s<index>-prometheus`) and sets the `Fallback` condition to True once
/// one of them passes `fallback.failureThreshold`; from then on the HPA sees the fallback
/// value instead of the query's.
pub fn fallback(name: &str, status: Option<&Value>) -> Option<String> {
    let status = status?;
    let on = status.get("conditions")?.as_array()?.iter().any(|c| {
        c.get("type").and_then(Value::as_str) == Some("Fallback")
            && c.get("status").and_then(Value::as_str) == Some("True")
    });
    if !on {
        return None;
    }
    let failing: Vec<&str> = failing_triggers(status).collect();
    let which = if failing.is_empty() {
        "a trigger".to_string()
    } else {
        format!("trigger {}", failing.join(", "))
    };
    Some(format!(
        "KEDA holds ScaledObject {name} on its fallback: {which} failed more times in a row \
         than its failure threshold, so the replicas no longer follow the signal (none are \
         removed while it lasts); check that Prometheus still scrapes the model's pods and \
         answers the query (kubectl describe scaledobject {name}, and the KEDA operator's log)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn status(ready: &str, reason: &str, message: &str) -> Value {
        json!({"conditions": [
            {"type": "Active", "status": "False"},
            {"type": "Ready", "status": ready, "reason": reason, "message": message},
        ]})
    }

    #[test]
    fn only_a_failing_ready_condition_is_a_problem() {
        let cases = [
            (status("True", "ScaledObjectReady", "ok"), false),
            (status("False", "TriggerError", "error inside scaler"), true),
            (status("False", "ScaledObjectCheckFailed", "bad spec"), true),
            (status("Unknown", "PartialTriggerError", "some fail"), true),
            // Before KEDA's first check the condition is Unknown with no reason.
            (status("Unknown", "", ""), false),
            (
                json!({"conditions": [{"type": "Active", "status": "False"}]}),
                false,
            ),
            (json!({}), false),
            (json!({"conditions": "not a list"}), false),
        ];
        for (st, failing) in cases {
            assert_eq!(problem("so", Some(&st)).is_some(), failing, "{st}");
        }
        assert_eq!(problem("so", None), None);
    }

    #[test]
    fn the_note_names_the_object_and_repeats_kedas_reason_and_message() {
        let note = problem(
            "m-predictor",
            Some(&status("False", "TriggerError", "connection refused")),
        )
        .unwrap_or_default();
        assert!(note.contains("ScaledObject m-predictor"), "{note}");
        assert!(
            note.contains("(TriggerError): connection refused"),
            "{note}"
        );
        assert!(
            note.contains("kubectl describe scaledobject m-predictor"),
            "{note}"
        );

        let bare = problem("so", Some(&status("False", "", ""))).unwrap_or_default();
        assert!(bare.contains("(no reason given);"), "{bare}");
    }

    #[test]
    fn a_fallback_is_reported_with_the_failing_triggers_and_only_while_on() {
        let on = json!({
            "conditions": [
                {"type": "Ready", "status": "True"},
                {"type": "Fallback", "status": "True", "reason": "FallbackExists"},
            ],
            "health": {
                "s0-prometheus": {"numberOfFailures": 5, "status": "Failing"},
                "s1-prometheus": {"numberOfFailures": 0, "status": "Happy"},
            },
        });
        let note = fallback("m-predictor", Some(&on)).unwrap_or_default();
        assert!(
            note.contains("ScaledObject m-predictor on its fallback"),
            "{note}"
        );
        assert!(note.contains("trigger s0-prometheus failed"), "{note}");
        assert!(!note.contains("s1-prometheus"), "{note}");

        let off = json!({
            "conditions": [{"type": "Fallback", "status": "False", "reason": "NoFallbackFound"}],
            "health": {"s0-prometheus": {"numberOfFailures": 1, "status": "Failing"}},
        });
        assert_eq!(fallback("so", Some(&off)), None);
        assert_eq!(fallback("so", Some(&json!({}))), None);
        assert_eq!(fallback("so", None), None);
        let no_health = json!({"conditions": [{"type": "Fallback", "status": "True"}]});
        let note = fallback("so", Some(&no_health)).unwrap_or_default();
        assert!(note.contains("a trigger failed"), "{note}");
    }
}
