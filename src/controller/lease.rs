//! Leader election through a `coordination.k8s.io/v1` Lease.
//!
//! kube-runtime 5 has no leader election of its own. `kube-lease-manager` supports kube 5, but
//! it takes and renews the Lease with strategic-merge and server-side-apply patches (so it
//! needs `patch` on leases) and relies on field-ownership conflicts to keep two candidates
//! apart. This one follows client-go's algorithm instead: every write is an `update` guarded by
//! the `resourceVersion` that was read, so of two candidates racing for a free Lease exactly
//! one wins, and a Lease held by someone else is taken over only after it has not changed for
//! a whole lease duration, measured on this replica's own clock (renew times written by another
//! node are never compared with ours, so clock skew cannot cause an early takeover).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::{Client, Error as KubeError};
use tokio::sync::watch;
use tokio::time::Instant;

/// Timing of the election. `renew_interval` must be well below `lease_duration`, so a
/// healthy leader renews several times before anyone may take over.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_interval: Duration,
}

/// The result of one round of the election.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Round {
    Leader,
    Follower,
}

/// What this replica last saw of the Lease, and when (on its own clock).
#[derive(Clone, Debug, PartialEq)]
struct Observed {
    holder: Option<String>,
    renew_time: Option<MicroTime>,
    transitions: i32,
    seen_at: Instant,
}

pub struct Elector {
    api: Api<Lease>,
    cfg: LeaseConfig,
    observed: Option<Observed>,
    /// When this replica last wrote the Lease as its holder.
    last_renewed: Option<Instant>,
    /// How long after its last successful renew a leader keeps leading through failed ones.
    renew_deadline: Duration,
}

impl Elector {
    pub fn new(client: Client, cfg: LeaseConfig) -> Elector {
        Elector {
            api: Api::namespaced(client, &cfg.namespace),
            observed: None,
            last_renewed: None,
            renew_deadline: cfg.lease_duration.saturating_sub(cfg.renew_interval),
            cfg,
        }
    }

    /// Replaces the default renew deadline (lease duration minus one renew interval); it must
    /// stay below the lease duration, which is the caller's to check.
    pub fn with_renew_deadline(mut self, deadline: Duration) -> Elector {
        self.renew_deadline = deadline;
        self
    }

    /// Runs the election forever, publishing after every round on `leader` whether this
    /// replica holds the Lease (every round marks the channel changed, so a receiver can also
    /// tell that the first round is over).
    pub async fn run(mut self, leader: watch::Sender<bool>) {
        loop {
            let round = self.round().await;
            let is_leader = match round {
                Ok(r) => r == Round::Leader,
                Err(e) => {
                    tracing::warn!(error = %e, lease = %self.cfg.name, "leader election round failed");
                    // Keep leading through a failed renew only while the Lease we last wrote
                    // is certainly still ours; stop well before anyone else may take over.
                    self.still_holding()
                }
            };
            if *leader.borrow() != is_leader {
                tracing::info!(identity = %self.cfg.identity, leader = is_leader, "leadership changed");
            }
            leader.send_replace(is_leader);
            tokio::time::sleep(self.cfg.renew_interval).await;
        }
    }

    /// Whether a Lease renewed at `last_renewed` is still ours: within the renew deadline,
    /// which leaves a margin below the lease duration (others wait a full lease duration
    /// after *they* saw the last renew).
    fn still_holding(&self) -> bool {
        self.last_renewed
            .is_some_and(|t| t.elapsed() < self.renew_deadline)
    }

    /// One attempt to acquire or renew the Lease.
    pub async fn round(&mut self) -> Result<Round, KubeError> {
        let lease = match self.api.get_opt(&self.cfg.name).await? {
            Some(l) => l,
            None => return self.create().await,
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let now = Instant::now();
        let seen = Observed {
            holder: spec.holder_identity.clone().filter(|h| !h.is_empty()),
            renew_time: spec.renew_time.clone(),
            transitions: spec.lease_transitions.unwrap_or(0),
            seen_at: now,
        };
        // The clock starts when the record last changed, not when we last looked.
        let changed = self
            .observed
            .as_ref()
            .is_none_or(|o| o.holder != seen.holder || o.renew_time != seen.renew_time);
        if changed {
            self.observed = Some(seen.clone());
        }
        let since_change = self
            .observed
            .as_ref()
            .map_or(Duration::ZERO, |o| now.duration_since(o.seen_at));
        let duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map(Duration::from_secs)
            .unwrap_or(self.cfg.lease_duration)
            .max(self.cfg.lease_duration);

        let ours = seen.holder.as_deref() == Some(self.cfg.identity.as_str());
        let free = seen.holder.is_none();
        // A first observation of someone else's Lease cannot tell how old it is, so that
        // holder gets a full duration from now.
        let expired = !changed && since_change >= duration;
        if !(ours || free || expired) {
            self.last_renewed = None;
            return Ok(Round::Follower);
        }
        let stamp = MicroTime(Timestamp::now());
        let mut next = lease.clone();
        let mut new_spec = spec.clone();
        new_spec.renew_time = Some(stamp.clone());
        new_spec.lease_duration_seconds = Some(self.duration_seconds());
        if !ours {
            new_spec.holder_identity = Some(self.cfg.identity.clone());
            new_spec.acquire_time = Some(stamp);
            new_spec.lease_transitions = Some(seen.transitions + 1);
        }
        next.spec = Some(new_spec);
        // `replace` sends the resourceVersion we read: a concurrent writer makes this fail
        // with 409 instead of silently overwriting the other candidate.
        match self
            .api
            .replace(&self.cfg.name, &PostParams::default(), &next)
            .await
        {
            Ok(_) => {
                self.last_renewed = Some(Instant::now());
                Ok(Round::Leader)
            }
            Err(KubeError::Api(s)) if s.code == 409 => {
                self.last_renewed = None;
                self.observed = None;
                Ok(Round::Follower)
            }
            Err(e) => Err(e),
        }
    }

    async fn create(&mut self) -> Result<Round, KubeError> {
        let stamp = MicroTime(Timestamp::now());
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.cfg.name.clone()),
                namespace: Some(self.cfg.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.cfg.identity.clone()),
                lease_duration_seconds: Some(self.duration_seconds()),
                acquire_time: Some(stamp.clone()),
                renew_time: Some(stamp),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        match self.api.create(&PostParams::default(), &lease).await {
            Ok(_) => {
                self.last_renewed = Some(Instant::now());
                Ok(Round::Leader)
            }
            Err(KubeError::Api(s)) if s.code == 409 => Ok(Round::Follower),
            Err(e) => Err(e),
        }
    }

    /// The Lease field is whole seconds; round up so others never wait less than we assume.
    fn duration_seconds(&self) -> i32 {
        let d = self.cfg.lease_duration;
        let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
        i32::try_from(secs.max(1)).unwrap_or(i32::MAX)
    }
}
