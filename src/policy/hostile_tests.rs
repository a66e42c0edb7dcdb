//! Hostile input to the policy file: huge values, control characters, unicode, duplicates,
//! and numbers out of range, zero, negative, NaN and infinite. Each is refused naming the
//! field, without echoing more than a clipped value, or accepted on purpose.

use super::*;

fn refused(text: &str) -> String {
    match parse(text) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("{} was accepted", crate::core::text::clip(text)),
    }
}

#[test]
fn numbers_out_of_range_zero_negative_nan_and_infinite_are_refused() {
    for (text, says) in [
        (
            "defaults: {targets: {queue: .nan}}\n",
            "defaults.targets.queue",
        ),
        (
            "defaults: {targets: {queue: .inf}}\n",
            "defaults.targets.queue",
        ),
        (
            "defaults: {targets: {queue: -.inf}}\n",
            "defaults.targets.queue",
        ),
        ("defaults: {targets: {queue: 1e400}}\n", "line 1"),
        (
            "defaults: {targets: {queue: 0}}\n",
            "defaults.targets.queue",
        ),
        (
            "defaults: {targets: {queue: -3}}\n",
            "defaults.targets.queue",
        ),
        ("defaults: {maxReplicas: -1}\n", "defaults.maxReplicas"),
        (
            "defaults: {maxReplicas: 4294967296}\n",
            "defaults.maxReplicas",
        ),
        (
            "defaults: {maxReplicas: 3000000000}\n",
            "defaults.maxReplicas",
        ),
        ("defaults: {maxReplicas: 1.5}\n", "defaults.maxReplicas"),
        ("defaults: {maxReplicas: .nan}\n", "defaults.maxReplicas"),
        (
            "defaults: {pollingInterval: 0}\n",
            "defaults.pollingInterval",
        ),
        (
            "defaults: {cooldownPeriod: 3000000000}\n",
            "defaults.cooldownPeriod",
        ),
        ("limits: {maxReplicas: 0}\n", "limits.maxReplicas"),
        ("limits: {maxReplicas: 3000000000}\n", "limits.maxReplicas"),
        (
            "limits: {minPollingInterval: 3000000000}\n",
            "limits.minPollingInterval",
        ),
    ] {
        let e = refused(text);
        assert!(e.contains(says), "{text:?}: {e}");
    }
}

#[test]
fn names_and_labels_with_control_characters_unicode_or_no_end_are_refused_clipped() {
    let huge = "n".repeat(100_000);
    for (text, says) in [
        (format!("rules:\n- name: {huge}\n"), "rules[0].name"),
        ("rules:\n- name: \"a\\nb\"\n".to_string(), "rules[0].name"),
        ("rules:\n- name: \"a\\u001b[31m\"\n".to_string(), "rules[0].name"),
        ("rules:\n- name: \" \"\n".to_string(), "rules[0].name"),
        (
            "rules:\n- name: a\n  namespaces: [Team_A]\n".to_string(),
            "rules[0] (a).namespaces[0]",
        ),
        (
            format!("rules:\n- name: a\n  namespaces: [{huge}]\n"),
            "rules[0] (a).namespaces[0]",
        ),
        (
            "rules:\n- name: a\n  namespaces: [\"t\u{435}am\"]\n".to_string(),
            "rules[0] (a).namespaces[0]",
        ),
        (
            "rules:\n- name: a\n  namespaceSelector: {}\n".to_string(),
            "rules[0] (a).namespaceSelector",
        ),
        (
            "rules:\n- name: a\n  namespaceSelector: {matchLabels: {}}\n".to_string(),
            "rules[0] (a).namespaceSelector",
        ),
        (
            "rules:\n- name: a\n  namespaceSelector: {matchLabels: {'bad key': x}}\n".to_string(),
            "rules[0] (a).namespaceSelector.matchLabels",
        ),
        (
            "rules:\n- name: a\n  namespaceSelector: {matchLabels: {tier: 'not a value'}}\n"
                .to_string(),
            "rules[0] (a).namespaceSelector.matchLabels.tier",
        ),
        (
            "rules:\n- name: a\n  namespaceSelector: {matchExpressions: [{key: 'a b', operator: Exists}]}\n"
                .to_string(),
            "rules[0] (a).namespaceSelector.matchExpressions[0].key",
        ),
        (
            "rules:\n- name: a\n  namespaceSelector: {matchExpressions: [{key: t, operator: In, values: ['x y']}]}\n"
                .to_string(),
            "rules[0] (a).namespaceSelector.matchExpressions[0].values",
        ),
        (
            "exemptions: {namespaceLabels: {'bad key': x}}\n".to_string(),
            "exemptions.namespaceLabels",
        ),
        (
            "exemptions: {namespaceLabels: {ok: 'bad value'}}\n".to_string(),
            "exemptions.namespaceLabels.ok",
        ),
        (
            "exemptions: {annotation: 'policy.scaling.io/ex empt'}\n".to_string(),
            "exemptions.annotation",
        ),
        (
            "exemptions: {allowedUsers: ['']}\n".to_string(),
            "exemptions.allowedUsers[0]",
        ),
        (
            "exemptions: {allowedGroups: [\"admins\\n\"]}\n".to_string(),
            "exemptions.allowedGroups[0]",
        ),
        (
            format!("defaults: {{annotationPrefix: {huge}}}\n"),
            "defaults.annotationPrefix",
        ),
        (
            format!("defaults: {{rawMode: {huge}}}\n"),
            "defaults.rawMode",
        ),
        (
            "defaults: {triggerAuthentication: {kind: TriggerAuthentication, name: prom, modes: \"bearer\\u0000\"}}\n".to_string(),
            "defaults.triggerAuthentication.modes",
        ),
        (
            "rules:\n- name: a\n  requireStrategy: {action: default, strategy: \"tokens\\u0007\"}\n"
                .to_string(),
            "rules[0] (a).requireStrategy.strategy",
        ),
    ] {
        let e = refused(&text);
        assert!(e.contains(says), "{}: {e}", crate::core::text::clip(&text));
        assert!(e.len() < 1_000, "clipped: {} bytes", e.len());
        assert!(!e.contains('\n') && !e.contains('\u{1b}') && !e.contains('\0'), "{e:?}");
    }
}

#[test]
fn empty_allow_lists_are_refused_as_refusing_everything() {
    for (text, says) in [
        (
            "limits: {allowedStrategies: []}\n",
            "limits.allowedStrategies",
        ),
        (
            "limits: {allowedPrometheusAddresses: []}\n",
            "limits.allowedPrometheusAddresses",
        ),
        (
            "rules:\n- name: a\n  limits: {allowedStrategies: []}\n",
            "rules[0] (a).limits.allowedStrategies",
        ),
    ] {
        let e = refused(text);
        assert!(
            e.contains(says) && e.contains("allows nothing"),
            "{text}: {e}"
        );
    }
}

/// Accepted on purpose: unicode in a rule's name (it is only shown), duplicate entries in
/// lists, a byte-order mark, comments only.
#[test]
fn harmless_oddities_are_accepted() {
    for text in [
        "rules:\n- name: équipe 研究\n",
        "rules:\n- name: a\n  namespaces: [x, x]\n",
        "limits: {allowedStrategies: [queue, queue]}\n",
        "\u{feff}limits: {maxReplicas: 3}\n",
        "# nothing yet\n",
        "   \n\n",
    ] {
        assert!(parse(text).is_ok(), "{text:?}: {:?}", parse(text));
    }
    assert!(refused("limits: {maxReplicas: 3}\0\n").contains("line 1"));
}
