//! The loop: arrivals, engine steps, scrapes, KEDA polls and HPA syncs on one clock.
//! Everything happens at exact event times in a fixed order, so a seed fixes the run.

use serde::Serialize;

use super::hpa::{self, Behavior, Hpa, Metric};
use super::load::Request;
use super::profile::Profile;
use super::prom::{Buckets, Sample, ServerSample, Tsdb};
use super::rng::Rng;
use super::server::{Event, ITL_BUCKETS, Server, TTFT_BUCKETS};
use crate::core::strategy::{MetricType, Strategy};

/// One trigger of the ScaledObject, tied to the signal it reads.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Trigger {
    pub name: String,
    /// The built-in signal the query reads (for `custom`, the one the profile names).
    #[serde(serialize_with = "strategy")]
    pub signal: Strategy,
    #[serde(serialize_with = "metric_type")]
    pub metric_type: MetricType,
    pub target: f64,
    pub activation: f64,
}

fn strategy<S: serde::Serializer>(v: &Strategy, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v.as_str())
}

fn metric_type<S: serde::Serializer>(m: &MetricType, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(m.as_str())
}

/// Everything one run needs.
#[derive(Clone, Debug)]
pub struct Config {
    pub triggers: Vec<Trigger>,
    pub min_replicas: u32,
    pub max_replicas: u32,
    pub polling_interval: f64,
    pub cooldown_period: f64,
    /// The HPA's `spec.behavior`; None when the ScaledObject sets none.
    pub behavior: Option<Behavior>,
    /// kube-controller-manager's `--horizontal-pod-autoscaler-sync-period`, in seconds.
    pub sync_period: f64,
    /// Its `--horizontal-pod-autoscaler-downscale-stabilization`, in seconds.
    pub downscale_stabilization: u32,
    /// The query's rate / quantile window in seconds.
    pub window: f64,
    pub scrape_interval: f64,
    pub profile: Profile,
    pub duration: f64,
    pub slo_ttft: f64,
    pub slo_itl: f64,
    pub seed: u64,
    /// Seconds a deleted pod may finish its requests (terminationGracePeriodSeconds).
    pub grace: f64,
    /// When the load steps up, for the reaction time.
    pub step_at: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TriggerValue {
    pub name: String,
    pub value: f64,
    pub target: f64,
    pub metric_type: &'static str,
}

/// One HPA sync.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Tick {
    pub t: f64,
    pub triggers: Vec<TriggerValue>,
    pub current_replicas: u32,
    pub ready_replicas: u32,
    pub proposal: Option<i32>,
    pub desired: u32,
    pub keda_active: bool,
    /// Requests per second that arrived since the previous sync.
    pub load: f64,
    /// p95 of the TTFT of first tokens sent since the previous sync (None if none).
    pub p95_ttft: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub requests: u64,
    pub finished: u64,
    /// Refused (no ready pod, or larger than the KV cache) or lost with a killed pod.
    pub failed: u64,
    /// Still queued or running when the run ended; left out of the attainment shares.
    pub unfinished: u64,
    /// Shares of counted requests (finished + failed) meeting each SLO; failed ones miss.
    pub ttft_attainment: f64,
    pub itl_attainment: f64,
    pub slo_attainment: f64,
    /// Pod-hours from creation to deletion: each pod holds its GPU while it starts.
    pub replica_hours: f64,
    pub scale_ups: u32,
    pub scale_downs: u32,
    pub peak_queue: u64,
    pub max_replicas_reached: u32,
    /// Seconds from the load step to the first scale-up decision, and to the first added
    /// pod serving (None without a step, or if nothing reacted).
    pub step_to_scale_up: Option<f64>,
    pub step_to_ready: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Outcome {
    pub timeline: Vec<Tick>,
    pub summary: Summary,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum State {
    Starting { ready_at: f64 },
    Serving,
    Draining { deadline: f64 },
}

struct Pod {
    id: u64,
    created: f64,
    state: State,
    server: Server,
    busy_at_scrape: f64,
    scraped_at: f64,
}

struct Sim<'a> {
    cfg: &'a Config,
    now: f64,
    pods: Vec<Pod>,
    next_id: u64,
    rng: Rng,
    tsdb: Tsdb,
    hpa: Hpa,
    keda_active: bool,
    last_active: Option<f64>,
    // accounting
    pod_seconds: f64,
    finished: u64,
    failed: u64,
    ttft_ok: u64,
    itl_ok: u64,
    both_ok: u64,
    scale_ups: u32,
    scale_downs: u32,
    peak_queue: u64,
    max_reached: u32,
    arrived_since_tick: u64,
    ttfts_since_tick: Vec<f64>,
    step_scale_up: Option<f64>,
    step_ready: Option<f64>,
    ready_at_step: Option<u32>,
}

pub fn run(cfg: &Config, requests: &[Request]) -> Outcome {
    let keep = cfg.window.max(cfg.scrape_interval) + 2.0 * cfg.scrape_interval;
    let mut sim = Sim {
        cfg,
        now: 0.0,
        pods: Vec::new(),
        next_id: 0,
        rng: Rng::new(cfg.seed ^ 0x5ca1_ab1e),
        tsdb: Tsdb::new(keep),
        hpa: Hpa::new(
            cfg.min_replicas.max(1) as i32,
            cfg.max_replicas as i32,
            cfg.behavior.as_ref(),
            cfg.downscale_stabilization,
        ),
        keda_active: false,
        last_active: None,
        pod_seconds: 0.0,
        finished: 0,
        failed: 0,
        ttft_ok: 0,
        itl_ok: 0,
        both_ok: 0,
        scale_ups: 0,
        scale_downs: 0,
        peak_queue: 0,
        max_reached: cfg.min_replicas.max(1),
        arrived_since_tick: 0,
        ttfts_since_tick: Vec::new(),
        step_scale_up: None,
        step_ready: None,
        ready_at_step: None,
    };
    // The run starts in a steady state: min replicas (at least one) serving; with min 0,
    // KEDA's first poll decides whether that one stays.
    for _ in 0..cfg.min_replicas.max(1) {
        sim.add_pod(0.0);
    }
    let mut timeline = Vec::new();
    let mut next_arrival = 0usize;
    let mut next_scrape = cfg.scrape_interval;
    let mut next_keda = cfg.polling_interval;
    let mut next_hpa = cfg.sync_period;
    loop {
        let mut t = cfg.duration;
        for p in &sim.pods {
            if let Some(b) = p.server.busy_until {
                t = t.min(b);
            }
            match p.state {
                State::Starting { ready_at } => t = t.min(ready_at),
                State::Draining { deadline } => t = t.min(deadline),
                State::Serving => {}
            }
        }
        if let Some(r) = requests.get(next_arrival) {
            t = t.min(r.arrival);
        }
        t = t.min(next_scrape).min(next_keda).min(next_hpa);
        sim.advance(t);
        if t >= cfg.duration {
            break;
        }
        sim.finish_steps(t);
        sim.pods_ready(t);
        while let Some(r) = requests.get(next_arrival).filter(|r| r.arrival <= t) {
            sim.arrive(t, *r);
            next_arrival += 1;
        }
        sim.reap(t);
        if next_scrape <= t {
            sim.scrape(t);
            next_scrape += cfg.scrape_interval;
        }
        if next_keda <= t {
            sim.keda_poll(t);
            next_keda += cfg.polling_interval;
        }
        if next_hpa <= t {
            timeline.push(sim.hpa_sync(t));
            next_hpa += cfg.sync_period;
        }
    }
    let unfinished: u64 = sim
        .pods
        .iter()
        .map(|p| p.server.running() as u64 + p.server.waiting() as u64)
        .sum();
    let counted = (sim.finished + sim.failed).max(1) as f64;
    let summary = Summary {
        requests: requests.iter().filter(|r| r.arrival < cfg.duration).count() as u64,
        finished: sim.finished,
        failed: sim.failed,
        unfinished,
        ttft_attainment: sim.ttft_ok as f64 / counted,
        itl_attainment: sim.itl_ok as f64 / counted,
        slo_attainment: sim.both_ok as f64 / counted,
        replica_hours: sim.pod_seconds / 3600.0,
        scale_ups: sim.scale_ups,
        scale_downs: sim.scale_downs,
        peak_queue: sim.peak_queue,
        max_replicas_reached: sim.max_reached,
        step_to_scale_up: sim.step_scale_up,
        step_to_ready: sim.step_ready,
    };
    Outcome { timeline, summary }
}

/// Each trigger's value as reported, and as the HPA controller reads it (milli-quantities).
pub fn read_triggers(
    triggers: &[Trigger],
    value: impl Fn(&Trigger) -> f64,
) -> (Vec<TriggerValue>, Vec<Metric>) {
    triggers
        .iter()
        .map(|tr| {
            let v = value(tr);
            let reported = TriggerValue {
                name: tr.name.clone(),
                value: v,
                target: tr.target,
                metric_type: tr.metric_type.as_str(),
            };
            let read = Metric {
                metric_type: tr.metric_type,
                usage_milli: hpa::to_milli(v),
                target_milli: hpa::to_milli(tr.target),
            };
            (reported, read)
        })
        .unzip()
}

/// What KEDA does to the replicas at one poll, if anything: from zero to `max(min, 1)` when a
/// trigger is active; to zero when `min` is 0 and the last active poll is more than
/// `cooldown` seconds ago.
pub fn keda_scale(
    active: bool,
    current: u32,
    min: u32,
    last_active: Option<f64>,
    cooldown: f64,
    t: f64,
) -> Option<u32> {
    if active {
        return (current == 0).then_some(min.max(1));
    }
    if current == 0 || min != 0 {
        return None;
    }
    // Never active yet: KEDA counts from creation plus initialCooldownPeriod (0 by default,
    // and the ScaledObject sets none), not plus cooldownPeriod.
    let idle_since = last_active.map_or(0.0, |at| at + cooldown);
    (idle_since < t).then_some(0)
}

impl Sim<'_> {
    fn advance(&mut self, t: f64) {
        let dt = (t - self.now).max(0.0);
        self.pod_seconds += dt * self.pods.len() as f64;
        self.now = t;
    }

    fn add_pod(&mut self, now: f64) {
        let warm = now == 0.0;
        let state = if warm {
            State::Serving
        } else {
            State::Starting {
                ready_at: now + self.cfg.profile.startup_seconds,
            }
        };
        self.pods.push(Pod {
            id: self.next_id,
            created: now,
            state,
            server: Server::new(&self.cfg.profile),
            busy_at_scrape: 0.0,
            scraped_at: now,
        });
        self.next_id += 1;
    }

    /// Pods the Deployment counts (spec and status replicas): all but the terminating.
    fn replicas(&self) -> u32 {
        self.pods
            .iter()
            .filter(|p| !matches!(p.state, State::Draining { .. }))
            .count() as u32
    }

    fn ready(&self) -> u32 {
        self.pods
            .iter()
            .filter(|p| p.state == State::Serving)
            .count() as u32
    }

    fn finish_steps(&mut self, t: f64) {
        let slo_ttft = self.cfg.slo_ttft;
        let slo_itl = self.cfg.slo_itl;
        let mut events = Vec::new();
        for p in &mut self.pods {
            while p.server.busy_until.is_some_and(|b| b <= t) {
                let end = p.server.busy_until.unwrap_or(t);
                p.server.finish_step(end, &mut |e| events.push(e));
            }
        }
        for e in events {
            match e {
                Event::FirstToken { ttft } => self.ttfts_since_tick.push(ttft),
                Event::Finished { ttft, itl } => {
                    self.finished += 1;
                    let a = ttft <= slo_ttft;
                    let b = itl.is_none_or(|i| i <= slo_itl);
                    self.ttft_ok += u64::from(a);
                    self.itl_ok += u64::from(b);
                    self.both_ok += u64::from(a && b);
                }
            }
        }
    }

    fn pods_ready(&mut self, t: f64) {
        let mut became_ready = false;
        for p in &mut self.pods {
            if let State::Starting { ready_at } = p.state
                && ready_at <= t
            {
                p.state = State::Serving;
                p.scraped_at = t;
                became_ready = true;
            }
        }
        if became_ready
            && self.step_ready.is_none()
            && let (Some(at), Some(before)) = (self.cfg.step_at, self.ready_at_step)
            && self.ready() > before
        {
            self.step_ready = Some(t - at);
        }
    }

    fn arrive(&mut self, t: f64, r: Request) {
        self.arrived_since_tick += 1;
        let serving: Vec<usize> = (0..self.pods.len())
            .filter(|i| self.pods[*i].state == State::Serving)
            .collect();
        if serving.is_empty() {
            // No endpoint behind the Service: the client gets an error.
            self.failed += 1;
            return;
        }
        // kube-proxy (iptables mode) picks an endpoint at random.
        let i = serving[self.rng.below(serving.len())];
        let pod = &mut self.pods[i];
        if !pod.server.fits(&r) {
            self.failed += 1;
            return;
        }
        pod.server.enqueue(t, r);
    }

    /// Removes drained pods and kills those whose grace period ran out.
    fn reap(&mut self, t: f64) {
        let mut lost = 0;
        self.pods.retain_mut(|p| match p.state {
            State::Draining { deadline } => {
                if p.server.idle() {
                    false
                } else if deadline <= t {
                    lost += p.server.abort();
                    false
                } else {
                    true
                }
            }
            _ => true,
        });
        self.failed += lost as u64;
    }

    fn scrape(&mut self, t: f64) {
        let p = &self.cfg.profile;
        let mut present = Vec::new();
        let mut queue = 0u64;
        for pod in &mut self.pods {
            let busy = pod.server.busy_seconds;
            let span = (t - pod.scraped_at).max(1e-9);
            let util = ((busy - pod.busy_at_scrape) / span).clamp(0.0, 1.0);
            pod.busy_at_scrape = busy;
            pod.scraped_at = t;
            let joules = p.idle_watts * (t - pod.created) + (p.busy_watts - p.idle_watts) * busy;
            queue += pod.server.waiting() as u64;
            // vLLM answers /metrics once it serves; GPU and power exporters see the pod's
            // GPU from the start.
            let server = (!matches!(pod.state, State::Starting { .. })).then(|| ServerSample {
                running: f64::from(pod.server.running()),
                waiting: pod.server.waiting() as f64,
                kv: pod.server.kv_usage(),
                generation_tokens: pod.server.generation_tokens as f64,
                ttft: pod.server.ttft.cumulative.clone(),
                itl: pod.server.itl.cumulative.clone(),
            });
            present.push((
                pod.id,
                Sample {
                    t,
                    server,
                    gpu_util: util * 100.0,
                    joules,
                },
            ));
        }
        self.peak_queue = self.peak_queue.max(queue);
        self.tsdb.scrape(t, present);
    }

    fn value(&self, trigger: &Trigger, t: f64) -> f64 {
        self.tsdb.signal(
            trigger.signal,
            t,
            self.cfg.window,
            Buckets {
                bounds: &TTFT_BUCKETS,
            },
            Buckets {
                bounds: &ITL_BUCKETS,
            },
        )
    }

    fn keda_poll(&mut self, t: f64) {
        let active = self
            .cfg
            .triggers
            .iter()
            .any(|tr| self.value(tr, t) > tr.activation);
        self.keda_active = active;
        if active {
            self.last_active = Some(t);
        }
        let cfg = self.cfg;
        if let Some(n) = keda_scale(
            active,
            self.replicas(),
            cfg.min_replicas,
            self.last_active,
            cfg.cooldown_period,
            t,
        ) {
            self.scale_to(t, n);
        }
    }

    fn hpa_sync(&mut self, t: f64) -> Tick {
        let (values, metrics) = read_triggers(&self.cfg.triggers, |tr| self.value(tr, t));
        let current = self.replicas();
        let ready = self.ready();
        let d = self
            .hpa
            .sync(t, current as i32, current as i32, ready as i32, &metrics);
        let desired = d.desired.max(0) as u32;
        if let Some(at) = self.cfg.step_at
            && t >= at
        {
            if self.ready_at_step.is_none() {
                self.ready_at_step = Some(ready);
            }
            if self.step_scale_up.is_none() && d.rescale && desired > current {
                self.step_scale_up = Some(t - at);
            }
        }
        if d.rescale {
            self.scale_to(t, desired);
        }
        let mut ttfts = std::mem::take(&mut self.ttfts_since_tick);
        let p95 = (!ttfts.is_empty()).then(|| {
            ttfts.sort_by(f64::total_cmp);
            let idx = ((ttfts.len() as f64 * 0.95).ceil() as usize).clamp(1, ttfts.len()) - 1;
            ttfts[idx]
        });
        let load = self.arrived_since_tick as f64 / self.cfg.sync_period;
        self.arrived_since_tick = 0;
        Tick {
            t,
            triggers: values,
            current_replicas: current,
            ready_replicas: ready,
            proposal: d.proposal,
            desired: if d.rescale { desired } else { current },
            keda_active: self.keda_active,
            load,
            p95_ttft: p95,
        }
    }

    /// Sets the Deployment's replicas. The ReplicaSet deletes pods that are not ready
    /// first, then the ones that became ready most recently.
    fn scale_to(&mut self, t: f64, n: u32) {
        let current = self.replicas();
        if n > current {
            self.scale_ups += 1;
            for _ in current..n {
                self.add_pod(t.max(1e-9));
            }
            self.max_reached = self.max_reached.max(n);
        } else if n < current {
            self.scale_downs += 1;
            let mut excess = current - n;
            for i in (0..self.pods.len()).rev() {
                if excess == 0 {
                    break;
                }
                if matches!(self.pods[i].state, State::Starting { .. }) {
                    self.pods[i].state = State::Draining { deadline: t };
                    excess -= 1;
                }
            }
            for i in (0..self.pods.len()).rev() {
                if excess == 0 {
                    break;
                }
                if self.pods[i].state == State::Serving {
                    self.pods[i].state = State::Draining {
                        deadline: t + self.cfg.grace,
                    };
                    excess -= 1;
                }
            }
            self.reap(t);
        }
    }
}
