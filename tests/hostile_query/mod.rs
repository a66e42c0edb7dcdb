//! `scaling.io/query` values that nest far past the limit in every form the PromQL grammar
//! allows, each small enough to pass the size limit, and some past the size limit. Before the
//! query guard, the deepest of these overflowed the parser's stack and aborted the process.

#![allow(dead_code)]

/// Levels each form nests: far beyond the limit of 100, as an attacker would send.
const N: usize = 800;

/// (what the form is, the query, what the denial must say).
pub fn forms() -> Vec<(&'static str, String, &'static str)> {
    let deep = "levels deep; at most 100 levels are allowed";
    let long = "at most 4096 bytes";
    let nest_n =
        |open: &str, close: &str, n: usize| format!("{}x{}", open.repeat(n), close.repeat(n));
    let nest = |open: &str, close: &str| nest_n(open, close, N);
    let forms = vec![
        ("parentheses", nest("(", ")"), deep),
        ("aggregations", nest("sum(", ")"), deep),
        ("function calls", nest("abs(", ")"), deep),
        ("mixed calls", nest_n("sum(-abs(", "))", N / 3), deep),
        ("unary minus", format!("{}x", "-".repeat(4 * N)), deep),
        (
            "binary chain",
            format!("sum(x{})", "+x".repeat(2 * N)),
            deep,
        ),
        ("power chain", format!("x{}", "^x".repeat(2 * N)), deep),
        ("keyword chain", format!("x{}", " or x".repeat(N)), deep),
        ("subqueries", format!("x{}", "[1m:]".repeat(N)), deep),
        // N, not more: `render` refuses text whose `[`/`{` nest past 1,000 before YAML parsing,
        // strings included, and these must reach the query guard.
        ("brackets", format!("x{}", "[".repeat(N)), deep),
        ("braces", format!("x{}", "{".repeat(N)), deep),
        ("long", format!("sum(x){}", " ".repeat(5000)), long),
        // Past the size limit too: these aborted a debug build's webhook (on a 2 MiB worker
        // stack) and `render` (on the 8 MiB main thread) before the guard.
        ("100 KB of aggregations", nest_n("sum(", ")", 20_000), long),
        (
            "40 KB binary chain",
            format!("sum(x{})", "+x".repeat(20_000)),
            long,
        ),
    ];
    for (what, q, needle) in &forms {
        if *needle == deep {
            assert!(q.len() <= 4096, "{what}: {} bytes", q.len());
        }
    }
    forms
}
