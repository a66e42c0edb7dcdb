//! The HTTPS admission server: `/mutate`, health, readiness and metrics.

pub mod limits;
pub mod listener;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use prometheus_client::registry::Registry;
use tokio::sync::Semaphore;
use tower_http::timeout::TimeoutLayer;
use tracing::warn;

use crate::admission;
use crate::core::settings::Settings;
use crate::metrics::{self, Metrics, ModeLabels, OutcomeLabels};
use crate::scaling::Scaling;

/// Largest AdmissionReview accepted. An InferenceService is stored in etcd (1.5 MiB limit)
/// and a review holds the new and the old object, so 4 MiB fits every legitimate request.
pub const MAX_BODY: usize = 4 * 1024 * 1024;

/// Request bodies held in memory at once, over all connections, in each of two pools: one
/// for ordinary reviews (a few kilobytes; up to [`SMALL_BODY`]), one for larger ones. A
/// burst of maximum-size reviews waits its turn instead of growing the heap by 4 MiB (and
/// their parsed form) per connection, and cannot hold up the ordinary ones.
pub const MAX_BODIES_IN_FLIGHT: usize = 2 * MAX_BODY;

/// Bodies up to this size (declared by Content-Length) use the pool for ordinary reviews.
pub const SMALL_BODY: usize = 64 * 1024;

/// How long a review may wait for room in [`MAX_BODIES_IN_FLIGHT`] before it is turned away
/// with 429, unless the API server's own deadline comes first (see [`answer_within`]).
pub const BODY_QUEUE_WAIT: Duration = Duration::from_secs(5);

/// Budget units are KiB so the largest body fits a semaphore's `u32` permit count.
const UNIT: usize = 1024;

/// Readiness: up once listening (and, with the controller, once its caches have synced);
/// down again as soon as shutdown begins so the endpoints drop this replica first.
#[derive(Clone, Default)]
pub struct Readiness {
    listening: Arc<AtomicBool>,
    controller_synced: Arc<AtomicBool>,
    shutting_down: Arc<AtomicBool>,
}

impl Readiness {
    /// `needs_controller`: false when the controller is disabled.
    pub fn new(needs_controller: bool) -> Readiness {
        let r = Readiness::default();
        r.controller_synced
            .store(!needs_controller, Ordering::SeqCst);
        r
    }
    pub fn set_listening(&self) {
        self.listening.store(true, Ordering::SeqCst);
    }
    pub fn set_controller_synced(&self, synced: bool) {
        self.controller_synced.store(synced, Ordering::SeqCst);
    }
    pub fn set_shutting_down(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }
    pub fn is_ready(&self) -> bool {
        self.listening.load(Ordering::SeqCst)
            && self.controller_synced.load(Ordering::SeqCst)
            && !self.shutting_down.load(Ordering::SeqCst)
    }
}

#[derive(Clone)]
pub struct AppState {
    pub scaling: Arc<Scaling>,
    pub metrics: Metrics,
    pub registry: Arc<Registry>,
    pub readiness: Readiness,
    /// Room for request bodies, in KiB (see [`MAX_BODIES_IN_FLIGHT`]).
    pub body_budget: BodyBudget,
}

/// The two pools of room for request bodies.
#[derive(Clone)]
pub struct BodyBudget {
    small: Arc<Semaphore>,
    large: Arc<Semaphore>,
}

impl Default for BodyBudget {
    fn default() -> Self {
        BodyBudget {
            small: Arc::new(Semaphore::new(MAX_BODIES_IN_FLIGHT / UNIT)),
            large: Arc::new(Semaphore::new(MAX_BODIES_IN_FLIGHT / UNIT)),
        }
    }
}

impl AppState {
    /// State without a policy (plain settings).
    pub fn new(settings: Settings, readiness: Readiness) -> AppState {
        AppState::with_scaling(Arc::new(Scaling::from(settings)), readiness)
    }

    pub fn with_scaling(scaling: Arc<Scaling>, readiness: Readiness) -> AppState {
        let mut registry = Registry::default();
        let metrics = Metrics::new(&mut registry);
        AppState {
            scaling,
            metrics,
            registry: Arc::new(registry),
            readiness,
            body_budget: BodyBudget::default(),
        }
    }
}

/// The full router of the TLS listener.
pub fn router(state: AppState) -> Router {
    probes()
        .route("/mutate", post(mutate))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        // A client that trickles its body in cannot hold a connection and a task forever.
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .with_state(state)
}

/// Health, readiness and metrics only, for the optional plain-HTTP listener.
pub fn probes_router(state: AppState) -> Router {
    probes().with_state(state)
}

fn probes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.readiness.is_ready() {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
    }
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics::encode(&state.registry),
    )
        .into_response()
}

/// Takes room for the body from the shared budget before reading it: the declared length,
/// or the maximum when the client streams without one. Waits up to [`BODY_QUEUE_WAIT`], and
/// answers before the API server's deadline in any case.
async fn mutate(State(state): State<AppState>, request: Request) -> Response {
    let _in_flight = InFlight::start(&state.metrics.admissions_in_flight);
    let within = answer_within(request.uri().query());
    let deadline = tokio::time::Instant::now() + within;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY) {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {MAX_BODY} bytes\n"),
        )
            .into_response();
    }
    let size = declared.unwrap_or(MAX_BODY);
    let pool = if size <= SMALL_BODY {
        &state.body_budget.small
    } else {
        &state.body_budget.large
    };
    let units = u32::try_from(size.div_ceil(UNIT).max(1)).unwrap_or(u32::MAX);
    let queue_until = deadline.min(tokio::time::Instant::now() + BODY_QUEUE_WAIT);
    let permit = tokio::time::timeout_at(queue_until, pool.clone().acquire_many_owned(units)).await;
    let _permit = match permit {
        Ok(Ok(p)) => p,
        _ => {
            state
                .metrics
                .admission_requests
                .get_or_create(&OutcomeLabels { outcome: "shed" })
                .inc();
            warn!(bytes = ?declared, "too many large reviews in flight; answered 429");
            let _ = tokio::time::timeout_at(deadline, discard(request)).await;
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, "1")],
                "too many large admission reviews in flight; retry\n",
            )
                .into_response();
        }
    };
    let body = match tokio::time::timeout_at(deadline, read_body(request)).await {
        Ok(Ok(b)) => b,
        Ok(Err(answer)) => return answer,
        Err(_) => {
            warn!(within = ?within, "the review's body did not arrive in time; answered 408");
            return (
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the body did not arrive within {:.1}s\n",
                    within.as_secs_f64()
                ),
            )
                .into_response();
        }
    };
    answer(&state, &body)
}

/// The whole body, up to [`MAX_BODY`] bytes (413 past it, however it is framed). A body that
/// breaks off or is framed wrongly (a chunk size that is not hex) is the client's error: 400
/// with hyper's reason.
async fn read_body(request: Request) -> Result<Bytes, Response> {
    use futures::StreamExt;
    let mut stream = request.into_body().into_data_stream();
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut len = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            let mut reason = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                reason = format!("{reason}: {s}");
                source = s.source();
            }
            (
                StatusCode::BAD_REQUEST,
                format!(
                    "cannot read the body: {}\n",
                    crate::core::text::clip_to(&reason, 200)
                ),
            )
                .into_response()
        })?;
        len += chunk.len();
        if len > MAX_BODY {
            return Err((
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is larger than {MAX_BODY} bytes\n"),
            )
                .into_response());
        }
        chunks.push(chunk);
    }
    // One chunk (the usual case: the API server's review fits one read) is used as it is.
    Ok(match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.pop().unwrap_or_default(),
        _ => Bytes::from(chunks.concat()),
    })
}

/// Counts a review in `admissions_in_flight` until dropped, however the handler ends
/// (including a client that goes away and cancels it).
struct InFlight(prometheus_client::metrics::gauge::Gauge);

impl InFlight {
    fn start(gauge: &prometheus_client::metrics::gauge::Gauge) -> InFlight {
        gauge.inc();
        InFlight(gauge.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Reads and drops up to [`MAX_BODY`] bytes of a body that will not be used, one chunk at a
/// time, so the client gets to read the answer instead of a reset while it is still sending.
async fn discard(request: Request) {
    use futures::StreamExt;
    let mut stream = request.into_body().into_data_stream();
    let mut seen = 0;
    while seen <= MAX_BODY {
        match stream.next().await {
            Some(Ok(chunk)) => seen += chunk.len(),
            _ => break,
        }
    }
}

fn answer(state: &AppState, body: &Bytes) -> Response {
    let started = Instant::now();
    let result = admission::review(body, &state.scaling);
    let outcome = match &result {
        Ok((_, o, findings)) => {
            for (mode, n) in [("warn", findings.warned), ("audit", findings.audited)] {
                if n > 0 {
                    state
                        .metrics
                        .policy_findings
                        .get_or_create(&ModeLabels { mode })
                        .inc_by(n as u64);
                }
            }
            o.as_str()
        }
        Err(_) => "invalid",
    };
    state
        .metrics
        .admission_requests
        .get_or_create(&OutcomeLabels { outcome })
        .inc();
    state
        .metrics
        .admission_duration
        .observe(started.elapsed().as_secs_f64());
    match result {
        Ok((bytes, _, _)) => ([(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(e) => {
            warn!(error = %e, "rejected a body that is not an AdmissionReview");
            // Decoder errors can quote the input; keep the answer short and on one line.
            let text = crate::core::text::clip_to(&e.to_string(), 512);
            (StatusCode::BAD_REQUEST, format!("{text}\n")).into_response()
        }
    }
}

/// How long a request may take end to end on the TLS port, including slow clients.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How long `/mutate` takes at most before answering on its own (429 while waiting for room,
/// 408 while waiting for the body). The API server sends its webhook timeout (the webhook's
/// `timeoutSeconds`, 1-30 s, rounded up to whole seconds) as `?timeout=5s`, counted from
/// before it connects; answering at four fifths of it leaves the answer time to arrive, so
/// a slow review ends with our reason rather than the API server's bare "context deadline
/// exceeded". Without the parameter, or past [`REQUEST_TIMEOUT`], the latter applies.
pub fn answer_within(query: Option<&str>) -> Duration {
    let asked = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("timeout="))
        .and_then(|v| crate::core::text::duration::parse("timeout", v).ok())
        .filter(|secs| *secs > 0.0)
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok());
    match asked {
        Some(t) => (t * 4 / 5).min(REQUEST_TIMEOUT),
        None => REQUEST_TIMEOUT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_comes_before_the_api_servers_deadline() {
        let ms = |q: Option<&str>| answer_within(q).as_millis();
        // What the API server sends for timeoutSeconds 1, 5 and 30 (Go's Duration format).
        assert_eq!(ms(Some("timeout=1s")), 800);
        assert_eq!(ms(Some("timeout=5s")), 4000);
        assert_eq!(
            ms(Some("timeout=30s")),
            10_000,
            "never past REQUEST_TIMEOUT"
        );
        assert_eq!(ms(Some("a=b&timeout=1m0s")), 10_000);
        // Anything else leaves the plain request timeout.
        for q in [
            None,
            Some(""),
            Some("timeout=soon"),
            Some("timeout=0s"),
            Some("timeout=-5s"),
            Some("x=timeout=2s"),
        ] {
            assert_eq!(ms(q), 10_000, "{q:?}");
        }
    }

    #[test]
    fn readiness_needs_listener_and_controller_and_drops_on_shutdown() {
        let r = Readiness::new(true);
        assert!(!r.is_ready());
        r.set_listening();
        assert!(!r.is_ready());
        r.set_controller_synced(true);
        assert!(r.is_ready());
        r.set_shutting_down();
        assert!(!r.is_ready());
        let r = Readiness::new(false);
        r.set_listening();
        assert!(r.is_ready());
    }
}
