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
}
