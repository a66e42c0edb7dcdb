//! The Kubernetes HPA controller as kube-controller-manager v1.37 runs it for the external
//! metrics KEDA serves (pkg/controller/podautoscaler: replica_calculator.go, horizontal.go).
//!
//! Facts the model keeps, because they change replica counts:
//! - metric values travel as milli-quantities, so usage and target are compared in integers;
//! - `AverageValue` divides the total by the *status* replica count (every pod, ready or not)
//!   for the tolerance test, then proposes `ceil(total / target)`;
//! - `Value` compares the usage ratio with 1 and proposes `ceil(ratio * ready pods)`: pods
//!   still loading a model count for nothing, so a Value trigger can propose fewer replicas
//!   than exist while new pods start;
//! - the proposal is the largest over all metrics; then stabilisation (the extreme of the
//!   recommendations inside each window, the unstabilised one recorded), then the rate
//!   policies computed from the scale events inside each policy period, then min/max;
//! - an HPA with no `behavior` at all takes the controller's older path (horizontal.go
//!   normalizeDesiredReplicas): the highest recommendation of the downscale window, then at
//!   most max(2 x current, 4) per sync, with no memory of earlier scale events. KEDA writes
//!   no behavior unless the ScaledObject's `advanced` section has one, and the API server does
//!   not default a missing one, so this is the path our ScaledObjects take;
//! - a target already outside min/max is moved to the bound without looking at metrics.

use serde::{Deserialize, Serialize};

use crate::core::strategy::MetricType;

/// The controller's `--horizontal-pod-autoscaler-tolerance` default.
pub const TOLERANCE: f64 = 0.1;
/// The controller's `--horizontal-pod-autoscaler-downscale-stabilization` default, used
/// when the scale-down rules name no window.
pub const DOWNSCALE_STABILIZATION: u32 = 300;
/// `--horizontal-pod-autoscaler-sync-period` default.
pub const SYNC_PERIOD: f64 = 15.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PolicyType {
    Pods,
    Percent,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SelectPolicy {
    Max,
    Min,
    Disabled,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScalingPolicy {
    #[serde(rename = "type")]
    pub kind: PolicyType,
    pub value: i32,
    pub period_seconds: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScalingRules {
    #[serde(default)]
    pub stabilization_window_seconds: Option<u32>,
    #[serde(default)]
    pub select_policy: Option<SelectPolicy>,
    #[serde(default)]
    pub policies: Option<Vec<ScalingPolicy>>,
}

/// `spec.behavior` of an autoscaling/v2 HPA (what KEDA copies from
/// `advanced.horizontalPodAutoscalerConfig.behavior`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Behavior {
    #[serde(default)]
    pub scale_up: Option<ScalingRules>,
    #[serde(default)]
    pub scale_down: Option<ScalingRules>,
}

/// Rules after the API server's defaulting of a present behavior
/// (SetDefaults_HorizontalPodAutoscalerBehavior): scale-up 0 s window, max of 100 % and 4 pods
/// per 15 s; scale-down 100 % per 15 s with the controller's downscale window.
#[derive(Clone, Debug, PartialEq)]
pub struct Rules {
    pub window: u32,
    pub select: SelectPolicy,
    pub policies: Vec<ScalingPolicy>,
}

impl Behavior {
    /// `downscale_window`: the controller's `--horizontal-pod-autoscaler-downscale-stabilization`
    /// in seconds, which a scale-down rule without its own window uses.
    pub fn defaulted(&self, downscale_window: u32) -> (Rules, Rules) {
        let up = self.scale_up.clone().unwrap_or(ScalingRules {
            stabilization_window_seconds: None,
            select_policy: None,
            policies: None,
        });
        let down = self.scale_down.clone().unwrap_or(ScalingRules {
            stabilization_window_seconds: None,
            select_policy: None,
            policies: None,
        });
        let up = Rules {
            window: up.stabilization_window_seconds.unwrap_or(0),
            select: up.select_policy.unwrap_or(SelectPolicy::Max),
            policies: up.policies.unwrap_or_else(|| {
                vec![
                    policy(PolicyType::Percent, 100, 15),
                    policy(PolicyType::Pods, 4, 15),
                ]
            }),
        };
        let down = Rules {
            window: down
                .stabilization_window_seconds
                .unwrap_or(downscale_window),
            select: down.select_policy.unwrap_or(SelectPolicy::Max),
            policies: down
                .policies
                .unwrap_or_else(|| vec![policy(PolicyType::Percent, 100, 15)]),
        };
        (up, down)
    }
}

fn policy(kind: PolicyType, value: i32, period_seconds: u32) -> ScalingPolicy {
    ScalingPolicy {
        kind,
        value,
        period_seconds,
    }
}

/// One external metric as the HPA reads it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Metric {
    pub metric_type: MetricType,
    /// The value KEDA reports, in milli-units.
    pub usage_milli: i64,
    pub target_milli: i64,
}

/// A float as KEDA hands it over: a quantity read back with MilliValue (rounded up);
/// NaN, infinities and negatives become zero (KEDA's GenerateMetricInMili).
pub fn to_milli(v: f64) -> i64 {
    if !v.is_finite() || v <= 0.0 {
        return 0;
    }
    let m = (v * 1000.0).ceil();
    if m >= i64::MAX as f64 {
        i64::MAX
    } else {
        m as i64
    }
}

fn within(ratio: f64, tolerance: f64) -> bool {
    (1.0 - tolerance) <= ratio && ratio <= (1.0 + tolerance)
}

fn clamp_i32(x: f64) -> i32 {
    if x > i32::MAX as f64 {
        i32::MAX
    } else {
        x as i32
    }
}

/// The replica count one metric proposes.
pub fn proposal(m: Metric, spec_replicas: i32, status_replicas: i32, ready: i32) -> i32 {
    let target = m.target_milli.max(1) as f64;
    let usage = m.usage_milli as f64;
    match m.metric_type {
        MetricType::AverageValue => {
            let ratio = usage / (target * status_replicas as f64);
            if within(ratio, TOLERANCE) {
                status_replicas
            } else {
                clamp_i32((usage / target).ceil())
            }
        }
        MetricType::Value => {
            let ratio = usage / target;
            if spec_replicas == 0 {
                clamp_i32(ratio.ceil())
            } else if within(ratio, TOLERANCE) {
                spec_replicas
            } else {
                clamp_i32((ratio * ready as f64).ceil())
            }
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Stamped {
    t: f64,
    value: i32,
    outdated: bool,
}

/// What one sync decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The largest metric proposal, before stabilisation and policies (None when the
    /// controller did not look at metrics: replicas outside min/max, or scaled to zero).
    pub proposal: Option<i32>,
    /// What the controller writes to the scale subresource.
    pub desired: i32,
    pub rescale: bool,
}

/// How changes are limited: by the HPA's `behavior`, or by the path without one.
#[derive(Clone, Debug)]
enum Limits {
    Behavior { up: Rules, down: Rules },
    Legacy { window: u32 },
}

/// The older path's scale-up cap (horizontal.go calculateScaleUpLimit).
const LEGACY_SCALE_UP_FACTOR: f64 = 2.0;
const LEGACY_SCALE_UP_MINIMUM: f64 = 4.0;

/// One HorizontalPodAutoscaler's controller state.
#[derive(Clone, Debug)]
pub struct Hpa {
    pub min: i32,
    pub max: i32,
    limits: Limits,
    recommendations: Vec<Stamped>,
    up_events: Vec<Stamped>,
    down_events: Vec<Stamped>,
}

impl Hpa {
    /// `behavior`: the HPA's `spec.behavior` (None when absent); `downscale_window`: the
    /// controller's downscale stabilisation flag in seconds.
    pub fn new(min: i32, max: i32, behavior: Option<&Behavior>, downscale_window: u32) -> Hpa {
        let limits = match behavior {
            Some(b) => {
                let (up, down) = b.defaulted(downscale_window);
                Limits::Behavior { up, down }
            }
            None => Limits::Legacy {
                window: downscale_window,
            },
        };
        Hpa {
            min,
            max,
            limits,
            recommendations: Vec::new(),
            up_events: Vec::new(),
            down_events: Vec::new(),
        }
    }

    /// One reconcile at `now` (seconds). `spec` is the target's spec.replicas, `status` its
    /// status.replicas, `ready` its ready pods.
    pub fn sync(
        &mut self,
        now: f64,
        spec: i32,
        status: i32,
        ready: i32,
        metrics: &[Metric],
    ) -> Decision {
        if self.recommendations.is_empty() && matches!(self.limits, Limits::Behavior { .. }) {
            self.recommendations.push(Stamped {
                t: now,
                value: spec,
                outdated: false,
            });
        }
        let (proposal, desired) = if spec == 0 && self.min != 0 {
            // KEDA scaled the target to zero: the HPA stays out of it (ScalingDisabled).
            return Decision {
                proposal: None,
                desired: 0,
                rescale: false,
            };
        } else if spec > self.max {
            (None, self.max)
        } else if spec < self.min {
            (None, self.min)
        } else {
            let p = metrics
                .iter()
                .map(|m| proposal(*m, spec, status, ready))
                .fold(0, i32::max);
            let desired = match &self.limits {
                Limits::Behavior { .. } => {
                    let stabilized = self.stabilize(now, spec, p);
                    self.limit(now, spec, stabilized)
                }
                Limits::Legacy { window } => {
                    let stabilized = self.stabilize_legacy(now, *window, p);
                    self.limit_legacy(spec, stabilized)
                }
            };
            (Some(p), desired)
        };
        let rescale = desired != spec;
        if rescale {
            self.store_event(now, spec, desired);
        }
        Decision {
            proposal,
            desired,
            rescale,
        }
    }

    /// The highest recommendation inside the window, this one included; this one takes the
    /// place of one that left the window.
    fn stabilize_legacy(&mut self, now: f64, window: u32, desired: i32) -> i32 {
        let cutoff = now - f64::from(window);
        let mut best = desired;
        let mut old = None;
        for (i, r) in self.recommendations.iter().enumerate() {
            if r.t < cutoff {
                old = Some(i);
            } else {
                best = best.max(r.value);
            }
        }
        let entry = Stamped {
            t: now,
            value: desired,
            outdated: false,
        };
        match old {
            Some(i) => self.recommendations[i] = entry,
            None => self.recommendations.push(entry),
        }
        best
    }

    /// min/max, and at most max(2 x current, 4) on the way up.
    fn limit_legacy(&self, current: i32, desired: i32) -> i32 {
        let up_limit =
            clamp_i32((LEGACY_SCALE_UP_FACTOR * f64::from(current)).max(LEGACY_SCALE_UP_MINIMUM));
        let allowed = self.max.min(up_limit);
        if desired < self.min {
            self.min
        } else {
            desired.min(allowed)
        }
    }

    fn rules(&self) -> Option<(&Rules, &Rules)> {
        match &self.limits {
            Limits::Behavior { up, down } => Some((up, down)),
            Limits::Legacy { .. } => None,
        }
    }

    fn stabilize(&mut self, now: f64, current: i32, desired: i32) -> i32 {
        let Some((up, down)) = self.rules() else {
            return desired;
        };
        let up_cutoff = now - f64::from(up.window);
        let down_cutoff = now - f64::from(down.window);
        let mut up_rec = desired;
        let mut down_rec = desired;
        let mut old = None;
        for (i, r) in self.recommendations.iter().enumerate() {
            if r.t > up_cutoff {
                up_rec = up_rec.min(r.value);
            }
            if r.t > down_cutoff {
                down_rec = down_rec.max(r.value);
            }
            if r.t < up_cutoff && r.t < down_cutoff {
                old = Some(i);
            }
        }
        let mut rec = current;
        if rec < up_rec {
            rec = up_rec;
        }
        if rec > down_rec {
            rec = down_rec;
        }
        let entry = Stamped {
            t: now,
            value: desired,
            outdated: false,
        };
        match old {
            Some(i) => self.recommendations[i] = entry,
            None => self.recommendations.push(entry),
        }
        rec
    }

    fn limit(&self, now: f64, current: i32, desired: i32) -> i32 {
        let Some((up, down)) = self.rules() else {
            return desired;
        };
        if desired > current {
            let limit =
                scale_up_limit(now, current, &self.up_events, &self.down_events, up).max(current);
            let allowed = self.max.min(limit);
            desired.min(allowed)
        } else if desired < current {
            let limit = scale_down_limit(now, current, &self.up_events, &self.down_events, down)
                .min(current);
            let allowed = self.min.max(limit);
            desired.max(allowed)
        } else {
            desired
        }
    }

    fn store_event(&mut self, now: f64, prev: i32, new: i32) {
        let Limits::Behavior { up, down } = &self.limits else {
            // The older path keeps no scale events.
            return;
        };
        let (events, rules, change) = if new > prev {
            (&mut self.up_events, up, new - prev)
        } else {
            (&mut self.down_events, down, prev - new)
        };
        let longest = rules
            .policies
            .iter()
            .map(|p| p.period_seconds)
            .max()
            .unwrap_or(0);
        let cutoff = now - f64::from(longest);
        for e in events.iter_mut() {
            if e.t < cutoff {
                e.outdated = true;
            }
        }
        let entry = Stamped {
            t: now,
            value: change,
            outdated: false,
        };
        match events.iter().rposition(|e| e.outdated) {
            Some(i) => events[i] = entry,
            None => events.push(entry),
        }
    }
}

fn change_in_period(now: f64, period: u32, events: &[Stamped]) -> i32 {
    let cutoff = now - f64::from(period);
    events
        .iter()
        .filter(|e| e.t > cutoff)
        .map(|e| e.value)
        .sum()
}

fn scale_up_limit(now: f64, current: i32, up: &[Stamped], down: &[Stamped], r: &Rules) -> i32 {
    let (mut result, pick): (i32, fn(i32, i32) -> i32) = match r.select {
        SelectPolicy::Disabled => return current,
        SelectPolicy::Min => (i32::MAX, i32::min),
        SelectPolicy::Max => (i32::MIN, i32::max),
    };
    for p in &r.policies {
        let start = current - change_in_period(now, p.period_seconds, up)
            + change_in_period(now, p.period_seconds, down);
        let proposed = match p.kind {
            PolicyType::Pods => start + p.value,
            PolicyType::Percent => {
                clamp_i32((f64::from(start) * (1.0 + f64::from(p.value) / 100.0)).ceil())
            }
        };
        result = pick(result, proposed);
    }
    result
}

fn scale_down_limit(now: f64, current: i32, up: &[Stamped], down: &[Stamped], r: &Rules) -> i32 {
    let (mut result, pick): (i32, fn(i32, i32) -> i32) = match r.select {
        SelectPolicy::Disabled => return current,
        SelectPolicy::Min => (i32::MIN, i32::max),
        SelectPolicy::Max => (i32::MAX, i32::min),
    };
    for p in &r.policies {
        let start = current - change_in_period(now, p.period_seconds, up)
            + change_in_period(now, p.period_seconds, down);
        let proposed = match p.kind {
            PolicyType::Pods => start - p.value,
            PolicyType::Percent => (f64::from(start) * (1.0 - f64::from(p.value) / 100.0)) as i32,
        };
        result = pick(result, proposed);
    }
    result
}

#[cfg(test)]
mod tests;
