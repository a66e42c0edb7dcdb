//! What the controller keeps between reconciles during one leadership term: the clients,
//! the failure counts behind the backoff, what was already reported, the managed-objects
//! gauge, and publishing events.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use kube::core::DynamicObject;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource};

use super::Kind;
use super::cache::ScopeCaches;
use super::reconciler::isvc_resource;
use super::throttle::Throttle;
use crate::core::text;
use crate::metrics::{KindLabels, Metrics};
use crate::scaling::Scaling;

/// What one reconcile needs; one per leadership term, so nothing stale survives a handover.
pub struct Context {
    pub client: Client,
    pub scaling: Arc<Scaling>,
    pub metrics: Metrics,
    /// Who the Events say reported them. A Recorder is made per Event: kube's Recorder folds
    /// a second Event of the same reason into the first as a series and keeps the first
    /// note, so a changed problem (a new KEDA verdict, other warnings) would never be shown.
    /// Repeats are suppressed here instead (`is_news`).
    pub reporter: Reporter,
    pub resync: Duration,
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub timeout: Duration,
    pub throttle: Throttle,
    /// The watch caches, per scope, once the leadership term has set them up.
    caches: OnceLock<Vec<ScopeCaches>>,
    state: Mutex<State>,
}

#[derive(Default)]
pub(super) struct State {
    /// Consecutive failures per object (namespace/name), for the backoff.
    pub failures: HashMap<String, u32>,
    /// What was last reported per (uid, reason), and when, so an unchanged problem is not
    /// re-reported on every retry or status update.
    reported: HashMap<(String, &'static str), (u64, Instant)>,
    /// Generated objects per InferenceService uid, for the `managed_objects` gauge.
    managed: HashMap<String, Vec<Kind>>,
    /// Per InferenceService uid and kind: the digest of the object planned and of the live
    /// object last seen to contain it. While the cached object still has that digest and the
    /// plan is the same, nothing needs reading or writing.
    verified: HashMap<(String, Kind), (u64, u64)>,
}

impl Context {
    pub fn new(
        client: Client,
        scaling: Arc<Scaling>,
        metrics: Metrics,
        reporter: Reporter,
        opts: &super::ControllerOptions,
    ) -> Context {
        Context {
            client,
            scaling,
            metrics,
            reporter,
            resync: opts.resync,
            retry_base: opts.retry_base,
            retry_max: opts.retry_max,
            timeout: opts.reconcile_timeout,
            throttle: Throttle::new(opts.api_qps, opts.api_burst),
            caches: OnceLock::new(),
            state: Mutex::new(State::default()),
        }
    }

    pub(super) fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves only counters behind; keep going with them.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets InferenceServices that are gone, and recomputes the gauge.
    pub fn retain_managed(&self, alive: &dyn Fn(&str) -> bool) {
        let mut st = self.state();
        st.managed.retain(|uid, _| alive(uid));
        st.reported.retain(|(uid, _), _| alive(uid));
        st.verified.retain(|(uid, _), _| alive(uid));
        self.publish_gauge(&st);
    }

    /// A replica that no longer leads manages nothing.
    pub fn clear_managed(&self) {
        let mut st = self.state();
        st.managed.clear();
        self.publish_gauge(&st);
    }

    pub(super) fn set_caches(&self, caches: Vec<ScopeCaches>) {
        // Set once per term, before the controllers run; a second call changes nothing.
        let _ = self.caches.set(caches);
    }

    /// The caches covering `ns`, once every one of them has listed; `None` if they are not
    /// set up, or their watches stopped.
    pub(super) async fn caches_for(&self, ns: &str) -> Option<&ScopeCaches> {
        let c = self.caches.get()?.iter().find(|c| c.covers(ns))?;
        c.wait_until_ready().await.then_some(c)
    }

    /// Whether the live object of `kind` for `uid` was last seen, with `live` as its digest,
    /// to contain the object planned with digest `want`.
    pub(super) fn is_verified(&self, uid: &str, kind: Kind, want: u64, live: u64) -> bool {
        self.state().verified.get(&(uid.to_string(), kind)) == Some(&(want, live))
    }

    /// Whether an object planned with digest `want` was applied or checked in this term.
    pub(super) fn was_verified(&self, uid: &str, kind: Kind, want: u64) -> bool {
        self.state()
            .verified
            .get(&(uid.to_string(), kind))
            .is_some_and(|(w, _)| *w == want)
    }

    pub(super) fn set_verified(&self, uid: &str, kind: Kind, digests: Option<(u64, u64)>) {
        let mut st = self.state();
        let key = (uid.to_string(), kind);
        match digests {
            Some(d) => st.verified.insert(key, d),
            None => st.verified.remove(&key),
        };
    }

    pub(super) fn set_managed(&self, uid: &str, kinds: Vec<Kind>) {
        let mut st = self.state();
        if kinds.is_empty() {
            st.managed.remove(uid);
        } else {
            st.managed.insert(uid.to_string(), kinds);
        }
        self.publish_gauge(&st);
    }

    fn publish_gauge(&self, st: &State) {
        for kind in Kind::ALL {
            let n = st.managed.values().filter(|ks| ks.contains(&kind)).count();
            self.metrics
                .managed_objects
                .get_or_create(&KindLabels {
                    kind: kind.as_str(),
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Whether `note` is news for (uid, reason); records it as reported.
    pub(super) fn is_news(&self, uid: &str, reason: &'static str, note: &str) -> bool {
        self.is_news_within(uid, reason, note, None)
    }

    /// Like `is_news`, but the same note is news again once `repeat_after` has passed since
    /// it was last reported (for a state that flaps, so it is neither repeated at every flap
    /// nor forgotten).
    pub(super) fn is_news_within(
        &self,
        uid: &str,
        reason: &'static str,
        note: &str,
        repeat_after: Option<Duration>,
    ) -> bool {
        let mut h = DefaultHasher::new();
        note.hash(&mut h);
        let digest = h.finish();
        let now = Instant::now();
        let mut st = self.state();
        let key = (uid.to_string(), reason);
        let news = is_news_since(st.reported.get(&key).copied(), digest, now, repeat_after);
        if news {
            st.reported.insert(key, (digest, now));
        }
        news
    }

    pub(super) fn forget_reported(&self, uid: &str, reasons: &[&'static str]) {
        let mut st = self.state();
        for r in reasons {
            st.reported.remove(&(uid.to_string(), *r));
        }
    }

    /// Publishes an event; a failure to publish never fails the reconcile.
    pub(super) async fn event(
        &self,
        obj: &DynamicObject,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let reference = obj.object_ref(&isvc_resource());
        let ev = Event {
            type_,
            reason: reason.to_string(),
            // The Events API caps notes at 1 kB.
            note: Some(text::cut_bytes(note, 1000)),
            action: "Reconcile".to_string(),
            secondary: None,
        };
        self.throttle.acquire().await;
        match tokio::time::timeout(
            self.timeout,
            Recorder::new(self.client.clone(), self.reporter.clone()).publish(&ev, &reference),
        )
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, reason, "could not publish event"),
            Err(_) => tracing::warn!(reason, "publishing an event timed out"),
        }
    }
}

/// Whether a note with `digest` is news at `now`, given what was last reported (its digest
/// and when): a different note is; the same one only once `repeat_after` has passed.
fn is_news_since(
    last: Option<(u64, Instant)>,
    digest: u64,
    now: Instant,
    repeat_after: Option<Duration>,
) -> bool {
    match last {
        Some((d, at)) if d == digest => {
            repeat_after.is_some_and(|after| now.duration_since(at) >= after)
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_note_is_news_again_only_after_the_repeat_interval() {
        let t0 = Instant::now();
        let min = Duration::from_secs(60);
        let later = |s| t0 + Duration::from_secs(s);
        assert!(is_news_since(None, 1, t0, None));
        assert!(is_news_since(Some((1, t0)), 2, later(1), None));
        assert!(!is_news_since(Some((1, t0)), 1, later(3600), None));
        assert!(!is_news_since(Some((1, t0)), 1, later(59), Some(min)));
        assert!(is_news_since(Some((1, t0)), 1, later(60), Some(min)));
        assert!(is_news_since(Some((1, t0)), 2, later(1), Some(min)));
    }
}
