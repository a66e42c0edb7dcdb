//! Reading a policy file's text into its types, within limits that hold for any input.
//!
//! The file is trusted to say what the platform wants, not to be well-formed: it arrives
//! through a ConfigMap, a CI job or a hand edit, and `serve` re-reads it while answering
//! reviews. So the text is bounded before a typed value is built from it:
//! - at most [`MAX_BYTES`] of text (a ConfigMap holds at most 1 MiB anyway);
//! - at most [`MAX_DEPTH`] levels of nesting, block or flow (the deepest field of a policy is
//!   seven levels down). libyaml, behind `serde_yaml_ng`, reads a whole document before
//!   any limit of serde's applies, in time quadratic in its flow nesting (a 4,000-deep
//!   `[[[...` took 0.1 s, a 1 MiB one minutes); serde-saphyr's streaming parser stops at the
//!   limit.
//! - at most [`MAX_NODES`] nodes and [`MAX_SCALAR_BYTES`] of scalar text, counted after
//!   anchors and aliases are expanded, so `*alias` fan-out (a "billion laughs") is refused
//!   at the limit instead of being built. Anchors and aliases stay allowed within it: a
//!   platform may share one `limits` block between rules.
//!
//! Unknown fields, duplicate keys, tags other than YAML's own, `yes`/`no` booleans and a
//! second document are refused. Errors give the field's path and the line and column.

use serde::de::DeserializeOwned;

/// The largest policy file read, in bytes.
pub const MAX_BYTES: usize = 1024 * 1024;
/// The deepest nesting of mappings and sequences.
pub const MAX_DEPTH: usize = 32;
/// The most nodes (mappings, sequences, scalars), aliases expanded. A policy of 1 MiB
/// written out by hand holds about 130,000 (7,800 rules of 15 nodes in 900 kB).
pub const MAX_NODES: usize = 250_000;
/// The most scalar text, aliases expanded.
pub const MAX_SCALAR_BYTES: usize = 4 * MAX_BYTES;

/// Why a text is not a policy, ready to show: where, and what.
pub type SyntaxError = String;

/// Parses one YAML document into `T` within the limits above.
pub fn read<T: DeserializeOwned>(text: &str) -> Result<T, SyntaxError> {
    check_size(text.len())?;
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_reader_input_bytes: Some(MAX_BYTES),
            flow_nesting_limit: MAX_DEPTH,
            max_depth: MAX_DEPTH,
            max_nodes: MAX_NODES,
            max_events: 4 * MAX_NODES,
            max_aliases: MAX_NODES,
            max_anchors: MAX_NODES,
            max_recorded_anchor_events: MAX_NODES,
            max_recorded_anchor_bytes: MAX_SCALAR_BYTES,
            max_total_scalar_bytes: MAX_SCALAR_BYTES,
            max_documents: 1,
            max_merge_keys: 0,
            max_inclusion_depth: 0,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: MAX_NODES,
            max_replay_stack_depth: MAX_DEPTH,
            max_alias_expansions_per_anchor: MAX_NODES,
        },
        strict_booleans: true,
        reject_unsupported_tags: true,
        with_snippet: false,
    };
    let mut path = None;
    let parsed = serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            path = Some(e.path().to_string());
            e.into_inner()
        })
    });
    parsed.map_err(|e| describe(&e, path.as_deref()))
}

/// Refuses a file over [`MAX_BYTES`], naming the cap.
pub fn check_size(len: usize) -> Result<(), SyntaxError> {
    if len > MAX_BYTES {
        return Err(format!(
            "the policy is {len} bytes or more; at most {MAX_BYTES} bytes (1 MiB) are read"
        ));
    }
    Ok(())
}

/// `line L column C: path: problem`, on one line (reload errors go to a log line).
fn describe(e: &serde_saphyr::Error, path: Option<&str>) -> SyntaxError {
    use serde_saphyr::budget::BudgetBreach as B;
    let mut e = e;
    while let serde_saphyr::Error::AliasError { error, .. } = e {
        e = error;
    }
    let mut problem = match e {
        serde_saphyr::Error::Budget { breach, .. } => match breach {
            B::Depth { .. } => format!("nests deeper than {MAX_DEPTH} levels"),
            B::Documents { .. } => "holds more than one YAML document".to_string(),
            B::MergeKeys { .. } => "uses a merge key (<<); write the fields out".to_string(),
            _ => format!(
                "expands to more than {MAX_NODES} nodes or {} MiB of text, anchors and aliases counted as expanded",
                MAX_SCALAR_BYTES >> 20
            ),
        },
        _ => e.to_string(),
    };
    // The parser's own depth guard, and advice meant for programs that call the library.
    if problem.contains("recursion limit exceeded") {
        problem = format!("nests deeper than {MAX_DEPTH} levels");
    }
    if let Some((what, _)) = problem.split_once(", set DuplicateKeyPolicy") {
        problem = what.to_string();
    }
    // serde-saphyr starts with its own `line L column C: `; put it in one place.
    if let Some(rest) = problem.strip_prefix("error: ") {
        problem = rest.to_string();
    }
    let at = e
        .location()
        .map(|l| format!("line {} column {}: ", l.line(), l.column()))
        .unwrap_or_default();
    if !at.is_empty()
        && let Some(rest) = problem.strip_prefix(&at)
    {
        problem = rest.to_string();
    }
    // A repeat of the position at the end (`... at line 2, column 1`) is dropped too.
    if let Some(l) = e.location() {
        let tail = format!(" at line {}, column {}", l.line(), l.column());
        if let Some(rest) = problem.strip_suffix(&tail) {
            problem = rest.to_string();
        }
    }
    let problem = crate::core::text::clip_to(problem.lines().next().unwrap_or_default(), 400);
    // serde_path_to_error shows a map key it could not read as `?`.
    let path = path.map(|p| p.trim_end_matches(".?"));
    match path.filter(|p| !p.is_empty() && *p != "." && *p != "?") {
        Some(p) => format!("{at}{p}: {problem}"),
        None => format!("{at}{problem}"),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Policy, parse};
    use super::*;

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn a_file_over_the_cap_is_refused_before_parsing_naming_the_cap() {
        let text = format!("# {}\n", "x".repeat(MAX_BYTES));
        let e = err(&text);
        assert!(
            e.contains("1048579 bytes or more") && e.contains("1 MiB"),
            "{e}"
        );
        // Just under the cap is read.
        let text = format!("# {}\n", "x".repeat(MAX_BYTES - 4));
        assert_eq!(parse(&text).unwrap(), Policy::default());
    }

    /// Nesting a hundred thousand deep is refused at the limit, not parsed: this took
    /// libyaml minutes at 1 MiB. No clock is read; a regression shows as a hang.
    #[test]
    fn deep_nesting_is_refused_at_the_limit() {
        let n = MAX_BYTES / 2 - 16;
        for text in [
            format!("rules: {}{}", "[".repeat(n), "]".repeat(n)),
            format!("rules: {}", "[".repeat(2 * n)),
        ] {
            let e = err(&text);
            assert!(e.contains("line 1") && e.contains("deeper than 32"), "{e}");
        }
        // Where a mapping is not expected, the first one ends the read.
        let e = err(&format!(
            "defaults:\n  monitorLabels: {}",
            "{a: ".repeat(n / 2)
        ));
        assert!(
            e.contains("line 2") && e.contains("defaults.monitorLabels.a"),
            "{e}"
        );
        let mut block = String::from("rules:\n");
        for d in 0..200 {
            block.push_str(&" ".repeat(d));
            block.push_str("-\n");
        }
        let e = err(&block);
        assert!(e.contains("line 3") && e.contains("rules[0]"), "{e}");
    }

    /// A list of 50,000 names, aliased by 2,000 rules: a hundred million strings if built.
    #[test]
    fn alias_fan_out_is_refused_at_the_node_budget() {
        let mut text = String::from("rules:\n- name: first\n  namespaces: &all [");
        text.push_str(&vec!["n"; 50_000].join(","));
        text.push_str("]\n");
        for i in 0..2_000 {
            text.push_str(&format!("- {{name: r{i}, namespaces: *all}}\n"));
        }
        assert!(text.len() < MAX_BYTES);
        let e = err(&text);
        assert!(e.contains(&format!("more than {MAX_NODES} nodes")), "{e}");
    }

    /// A large policy written out by hand, just under the cap, is read whole.
    #[test]
    fn a_large_ordinary_policy_under_the_cap_is_read() {
        let mut text = String::from("limits: {maxReplicas: 64}\nrules:\n");
        let mut rules = 0;
        while text.len() < MAX_BYTES - 200 {
            text.push_str(&format!(
                "- name: team-{rules}\n  namespaces: [team-{rules}, team-{rules}-dev]\n  limits: {{maxReplicas: 16}}\n  defaults: {{maxReplicas: 8}}\n"
            ));
            rules += 1;
        }
        assert_eq!(parse(&text).unwrap().rules.len(), rules);
    }

    #[test]
    fn a_modest_alias_is_read() {
        let p = parse(
            "rules:\n- name: a\n  namespaces: [x]\n  limits: &cap {maxReplicas: 4}\n- name: b\n  namespaces: [y]\n  limits: *cap\n",
        )
        .unwrap();
        assert_eq!(p.rules[1].limits.max_replicas, Some(4));
    }

    #[test]
    fn unknown_fields_duplicates_and_loose_yaml_are_refused_with_path_and_line() {
        for (text, needles) in [
            (
                "rules:\n  - name: a\n    namespaceSelector:\n      matchLabel: {team: a}\n",
                &["line 4", "rules[0].namespaceSelector", "matchLabel"][..],
            ),
            (
                "rules:\n  - name: a\n    namespaceSelector:\n      matchExpressions:\n        - {key: team, operator: In, value: [a]}\n",
                &["line 5", "matchExpressions[0]", "`value`"],
            ),
            (
                "rules:\n  - name: a\n    namespaceSelector:\n      matchExpressions:\n        - {key: team, operator: Equals}\n",
                &["line 5", "Equals"],
            ),
            (
                "limits:\n  maxReplicas: 1\n  maxReplicas: 2\n",
                &["line 3", "duplicate"],
            ),
            (
                "defaults:\n  monitorLabels: {a: b, a: c}\n",
                &["line 2", "duplicate"],
            ),
            ("defaults:\n  alerts: yes\n", &["line 2", "defaults.alerts"]),
            (
                "limits: {}\n---\nlimits: {}\n",
                &["line 2", "more than one YAML document"],
            ),
            ("defaults:\n  alerts: !custom true\n", &["line 2"]),
        ] {
            let e = err(text);
            for n in needles {
                assert!(e.contains(n), "{text:?}: {e}");
            }
            assert!(!e.contains('\n'), "one line: {e}");
        }
    }
}
