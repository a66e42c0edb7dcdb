//! Hot reload of mounted files (the serving certificate, the policy): poll, compare content,
//! apply, count.
//!
//! Content is compared rather than modification times because the kubelet swaps mounted
//! Secrets and ConfigMaps through a symlink. A version that fails to apply is remembered too,
//! so it is reported once rather than on every tick; the next change is tried afresh.

use std::future::Future;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tracing::{info, warn};

use crate::metrics::ResultLabels;

/// Calls `read` every `interval`. When it returns something other than the last value seen,
/// hands it to `apply`, counts the result in `reloads` and logs it. `read` returning `None`
/// (a file missing mid-swap) keeps everything as it is.
pub async fn on_change<T: PartialEq>(
    what: &str,
    interval: Duration,
    last: T,
    read: impl FnMut() -> Option<T>,
    mut apply: impl FnMut(&T) -> Result<(), String>,
    reloads: Family<ResultLabels, Counter>,
) {
    on_change_async(
        what,
        interval,
        last,
        read,
        |next| std::future::ready(apply(next)),
        reloads,
    )
    .await;
}

/// [`on_change`] with an `apply` that may wait, so one that does heavy work can hand it to a
/// blocking thread (`tokio::task::spawn_blocking`) instead of holding an async worker.
pub async fn on_change_async<T: PartialEq, F: Future<Output = Result<(), String>>>(
    what: &str,
    interval: Duration,
    mut last: T,
    mut read: impl FnMut() -> Option<T>,
    mut apply: impl FnMut(&T) -> F,
    reloads: Family<ResultLabels, Counter>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(next) = read() else {
            continue;
        };
        if next == last {
            continue;
        }
        match apply(&next).await {
            Ok(()) => {
                reloads
                    .get_or_create(&ResultLabels { result: "success" })
                    .inc();
                info!(what, "reloaded");
            }
            Err(e) => {
                reloads
                    .get_or_create(&ResultLabels { result: "error" })
                    .inc();
                warn!(what, error = %e, "new version rejected; the current one stays in force");
            }
        }
        last = next;
    }
}
