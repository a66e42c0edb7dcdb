//! The review path in one process, for instruction counts that repeat exactly:
//!
//! ```sh
//! cargo bench --bench review_path --no-run    # prints the executable's path
//! valgrind --tool=callgrind <executable> --bench small-annotated 2000
//! ```
//!
//! Each request goes through the server's own router (routing, body limit, request timeout,
//! body budget, metrics) with the JSON log record of the default level written to
//! `/dev/null`, the way `serve --log-format json` writes it; only TLS and HTTP/1.1 parsing are
//! left out. Loads: `healthz`, `small-annotated`, `small-plain`, `large-annotated`,
//! `large-plain`. Divide callgrind's total by the count, after subtracting a run of 0 (start
//! and teardown). Without `--bench` (as `cargo test --all-targets` runs it) it sends each load
//! once and checks the answer.

use std::time::Instant;

use axum::body::Body;
use http_body_util::BodyExt;
use kserve_keda_webhook::core::settings::Settings;
use kserve_keda_webhook::logging::{self, LogFormat};
use kserve_keda_webhook::server::{self, AppState, Readiness};
use tower::ServiceExt;

#[path = "support/bodies.rs"]
mod bodies;

const LOADS: [&str; 5] = [
    "healthz",
    "small-annotated",
    "small-plain",
    "large-annotated",
    "large-plain",
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bench = args.iter().any(|a| a == "--bench");
    let rest: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let (loads, n): (Vec<&str>, u64) = if bench {
        let load = rest.first().map_or("small-annotated", |s| s.as_str());
        let n = rest.get(1).and_then(|s| s.parse().ok()).unwrap_or(10_000);
        (vec![load], n)
    } else {
        (LOADS.to_vec(), 1)
    };
    let devnull = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .expect("open /dev/null");
    // The setup `serve` runs, at its default level and format.
    let _logs = logging::init(LogFormat::Json, "info", devnull).expect("logging");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let app = server::router(AppState::new(Settings::default(), Readiness::new(false)));
    let reviews = bodies::reviews();
    for load in loads {
        let (method, path, body, annotated) = match load {
            "healthz" => ("GET", "/healthz", Vec::new(), None),
            other => {
                let i = LOADS[1..]
                    .iter()
                    .position(|l| *l == other)
                    .unwrap_or_else(|| {
                        eprintln!("unknown load '{other}'; one of {LOADS:?}");
                        std::process::exit(2)
                    });
                let (_, body, annotated) = reviews[i].clone();
                ("POST", "/mutate", body, Some(annotated))
            }
        };
        let body = axum::body::Bytes::from(body);
        let started = Instant::now();
        runtime.block_on(async {
            for i in 0..n {
                let request = http::Request::builder()
                    .method(method)
                    .uri(path)
                    .header("content-type", "application/json")
                    .header("content-length", body.len())
                    .body(Body::from(body.clone()))
                    .expect("a request");
                let response = app.clone().oneshot(request).await.expect("infallible");
                assert_eq!(response.status(), 200, "{load}");
                let answer = response
                    .into_body()
                    .collect()
                    .await
                    .expect("a body")
                    .to_bytes();
                // Checked once: parsing the answer is the client's work, not the server's.
                if i == 0
                    && let Some(annotated) = annotated
                {
                    let v: serde_json::Value = serde_json::from_slice(&answer).expect("JSON");
                    let patched = v["response"]["patch"].is_string();
                    assert!(
                        v["response"]["allowed"] == true && patched == annotated,
                        "{v}"
                    );
                }
            }
        });
        let took = started.elapsed();
        if bench {
            eprintln!(
                "{load}: {n} requests, {:.2} µs each (wall clock)",
                took.as_secs_f64() * 1e6 / n.max(1) as f64
            );
        }
    }
    if !bench {
        println!("review path smoke check: 1 passed, 0 failed");
    }
}
