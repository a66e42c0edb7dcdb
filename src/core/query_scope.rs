//! Whether a parsed PromQL query reads only one namespace's series.
//!
//! A `custom` query runs with whatever credentials its trigger carries. When those are the
//! platform's (a shared (Cluster)TriggerAuthentication), an unscoped query would let a tenant
//! read any namespace's series through KEDA and the HPA status. The check is on the parsed
//! expression, never on the text, and it refuses rather than rewrites: every vector and matrix
//! selector, wherever it sits (function arguments, aggregation parameters, both sides of
//! `or`/`and`/`unless`, subqueries), must carry exactly one matcher on `namespace`, and that
//! matcher must be `namespace="<own>"`. A regex, a negative matcher, a second namespace
//! matcher, a missing one, or a label merely spelled like it are refused; so is a pattern on
//! `__name__`, which can only widen what a selector reads.
//!
//! What a query may compute from in-scope series (`label_replace` renaming labels, `offset`,
//! `@`) does not widen what it reads, so it is allowed.

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{Expr, VectorSelector};

use crate::core::text::clip_to;

/// The label every scoped selector must pin.
pub const NAMESPACE_LABEL: &str = "namespace";

/// The first selector found reading outside the namespace, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("selector {selector} {why}")]
pub struct OutOfScope {
    /// The selector as PromQL prints it, clipped.
    pub selector: String,
    pub why: String,
}

/// Checks that every selector in `expr` reads only series with `namespace="<namespace>"`.
pub fn check(expr: &Expr, namespace: &str) -> Result<(), OutOfScope> {
    match expr {
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => Ok(()),
        Expr::VectorSelector(vs) => selector(vs, namespace),
        Expr::MatrixSelector(ms) => selector(&ms.vs, namespace),
        Expr::Aggregate(a) => {
            if let Some(p) = &a.param {
                check(p, namespace)?;
            }
            check(&a.expr, namespace)
        }
        Expr::Unary(u) => check(&u.expr, namespace),
        Expr::Paren(p) => check(&p.expr, namespace),
        Expr::Subquery(s) => check(&s.expr, namespace),
        Expr::Binary(b) => {
            check(&b.lhs, namespace)?;
            check(&b.rhs, namespace)
        }
        Expr::Call(c) => c.args.args.iter().try_for_each(|a| check(a, namespace)),
        // Never produced by the parser; whatever it reads is unknown.
        Expr::Extension(_) => Err(OutOfScope {
            selector: "(extension)".into(),
            why: "cannot be checked".into(),
        }),
    }
}

fn selector(vs: &VectorSelector, namespace: &str) -> Result<(), OutOfScope> {
    let fail = |why: String| {
        Err(OutOfScope {
            selector: clip_to(&vs.to_string(), 160),
            why,
        })
    };
    let m = &vs.matchers;
    // `{a="x" or b="y"}` reads the union of its alternatives: each must be in scope. Plain
    // matchers beside the alternatives count in each of them.
    let plain = [Vec::new()];
    let groups: &[Vec<Matcher>] = if m.or_matchers.is_empty() {
        &plain
    } else {
        &m.or_matchers
    };
    for group in groups {
        let all: Vec<&Matcher> = m.matchers.iter().chain(group).collect();
        if let Some(n) = all
            .iter()
            .find(|x| x.name == "__name__" && !matches!(x.op, MatchOp::Equal))
        {
            return fail(format!(
                "matches __name__ with '{}'; name the metric instead of a pattern",
                n.op
            ));
        }
        let on_namespace: Vec<&&Matcher> =
            all.iter().filter(|x| x.name == NAMESPACE_LABEL).collect();
        let wanted = format!("{NAMESPACE_LABEL}=\"{}\"", namespace);
        match on_namespace[..] {
            [] => {
                return fail(format!(
                    "has no {NAMESPACE_LABEL} matcher; add {wanted} so it reads this namespace only"
                ));
            }
            [only] => match &only.op {
                MatchOp::Equal if only.value == namespace => {}
                MatchOp::Equal => {
                    return fail(format!(
                        "reads namespace '{}'; only {wanted} is allowed",
                        clip_to(&only.value, 64)
                    ));
                }
                op => {
                    return fail(format!(
                        "matches {NAMESPACE_LABEL} with '{op}'; only the exact {wanted} is allowed"
                    ));
                }
            },
            _ => {
                return fail(format!(
                    "has {} {NAMESPACE_LABEL} matchers; use exactly one, {wanted}",
                    on_namespace.len()
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scoped(q: &str) -> Result<(), OutOfScope> {
        check(&promql_parser::parser::parse(q).unwrap(), "team-a")
    }

    #[test]
    fn queries_that_read_only_their_namespace_pass() {
        for q in [
            r#"sum(rate(http_requests_total{namespace="team-a", job="api"}[2m]))"#,
            r#"max(queue_depth{namespace="team-a"})"#,
            r#"sum(x{namespace="team-a"} offset 5m) / sum(y{namespace="team-a"} @ 100)"#,
            r#"max_over_time(sum(x{namespace="team-a"})[10m:1m])"#,
            r#"label_replace(up{namespace="team-a"}, "namespace", "team-a", "job", "(.*)")"#,
            r#"absent(up{namespace="team-a"}) or vector(0)"#,
            r#"topk(1, x{namespace="team-a"}) and on() y{"namespace"="team-a"}"#,
            r#"{__name__="up", namespace="team-a"}"#,
            r#"count_values("v", x{namespace="team-a"})"#,
            "vector(1) + time()",
            "42",
        ] {
            assert_eq!(scoped(q), Ok(()), "{q}");
        }
    }

    /// Each query tries one way out of the namespace.
    #[test]
    fn every_way_out_is_refused() {
        for (q, says) in [
            ("sum(rate(http_requests_total[2m]))", "no namespace matcher"),
            (r#"x{namespace="team-b"}"#, "reads namespace 'team-b'"),
            (r#"x{namespace=~"team-a|team-b"}"#, "'=~'"),
            (r#"x{namespace=~"team-a"}"#, "'=~'"),
            (r#"x{namespace!="team-b"}"#, "'!='"),
            (r#"x{namespace!~"kube-.*"}"#, "'!~'"),
            (
                r#"x{namespace="team-a", namespace="team-b"}"#,
                "2 namespace matchers",
            ),
            (
                r#"x{namespace="team-a", namespace=~".*"}"#,
                "2 namespace matchers",
            ),
            (
                r#"x{namespace="team-a"} or y{namespace="team-b"}"#,
                "team-b",
            ),
            (r#"x{namespace="team-a"} unless y"#, "no namespace matcher"),
            (
                r#"x{namespace="team-a"} and on() y{job="z"}"#,
                "no namespace",
            ),
            (
                r#"label_replace(up{namespace="team-b"}, "namespace", "team-a", "", "")"#,
                "team-b",
            ),
            (
                r#"label_replace(up, "namespace", "team-a", "", "")"#,
                "no namespace matcher",
            ),
            (r#"max_over_time(sum(x)[10m:1m])"#, "no namespace matcher"),
            (r#"absent(nope)"#, "no namespace matcher"),
            (r#"{__name__=~".+"}"#, "__name__"),
            (r#"{__name__=~".+", namespace="team-a"}"#, "__name__"),
            (r#"{__name__!="x", namespace="team-a"}"#, "__name__"),
            (r#"x{exported_namespace="team-a"}"#, "no namespace matcher"),
            (r#"x{Namespace="team-a"}"#, "no namespace matcher"),
            // A Cyrillic 'а' in a quoted label name.
            ("x{\"n\u{430}mespace\"=\"team-a\"}", "no namespace matcher"),
            (r#"namespace{job="team-a"}"#, "no namespace matcher"),
            (r#"sum(x offset 1h)"#, "no namespace matcher"),
            (r#"x{namespace="team-a"}[5m] @ end()"#, ""),
            (r#"topk(scalar(y), x{namespace="team-a"})"#, "no namespace"),
            (
                r#"quantile(scalar(y{namespace="team-b"}), x{namespace="team-a"})"#,
                "team-b",
            ),
            (r#"x{namespace="team-a"}[5m:] offset 1m"#, ""),
            (r#"x{namespace="team-a "}"#, "reads namespace 'team-a '"),
            (r#"x{namespace=""}"#, "reads namespace ''"),
        ] {
            match (scoped(q), says) {
                (Ok(()), "") => {}
                (Err(e), says) if !says.is_empty() => {
                    assert!(e.to_string().contains(says), "{q}: {e}")
                }
                (other, _) => panic!("{q}: {other:?}"),
            }
        }
    }

    /// `{a="x" or b="y"}` (Prometheus 3) reads both alternatives.
    #[test]
    fn each_alternative_of_an_or_selector_must_be_scoped() {
        let two = |a: &str, b: &str| format!(r#"x{{{a} or {b}}}"#);
        let cases = [
            (two(r#"namespace="team-a""#, r#"namespace="team-a""#), true),
            (two(r#"namespace="team-a""#, r#"namespace="team-b""#), false),
            (two(r#"namespace="team-a""#, r#"job="x""#), false),
        ];
        for (q, ok) in cases {
            let expr = promql_parser::parser::parse(&q).unwrap();
            assert!(!matches!(&expr, Expr::VectorSelector(v) if v.matchers.or_matchers.is_empty()));
            assert_eq!(check(&expr, "team-a").is_ok(), ok, "{q}");
        }
    }
}
