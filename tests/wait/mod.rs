//! Waiting for something that happens in the background (a reload, a reconcile).

#![allow(dead_code)]

use std::time::{Duration, Instant};

/// Polls `f` until it holds; fails the test naming `what` after 15 s.
pub async fn eventually(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
