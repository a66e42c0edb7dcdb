//! Replays trigger values through KEDA and the HPA controller, without the model-server
//! model: what each trigger's query returned over time (read from a Prometheus range query,
//! or set by a test) decides the replicas. It answers "what would these signals have done
//! with other targets or bounds", and it is how the HPA model is compared with a real
//! kube-controller-manager on the same input.

use std::collections::BTreeMap;

use serde::Serialize;

use super::engine::{self, Config, TriggerValue};
use super::hpa::Hpa;
use super::limits;
use super::load::MAX_COLUMNS;

/// Each trigger's value over time: a step function, 0 before its first point.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Signals {
    by_trigger: BTreeMap<String, Vec<(f64, f64)>>,
}

impl Signals {
    /// The value of `trigger` at `t`: the last point at or before `t`. Points are sorted by
    /// time, so this is a binary search (a scan per sync made a long file quadratic).
    pub fn at(&self, trigger: &str, t: f64) -> f64 {
        self.by_trigger
            .get(trigger)
            .and_then(|points| {
                let after = points.partition_point(|(at, _)| *at <= t);
                after.checked_sub(1).map(|i| points[i].1)
            })
            .unwrap_or(0.0)
    }

    /// The time of the last point of any trigger.
    pub fn last(&self) -> f64 {
        self.by_trigger
            .values()
            .filter_map(|p| p.last().map(|(t, _)| *t))
            .fold(0.0, f64::max)
    }
}

/// Reads a CSV with a header row naming the columns `t` (seconds from the start), `trigger`
/// (a trigger name of the ScaledObject) and `value`.
pub fn parse(origin: &str, text: &str, triggers: &[String]) -> Result<Signals, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
    let (_, header) = lines.next().ok_or_else(|| {
        format!("signals {origin}: empty; expected a header row `t,trigger,value` and one row per change")
    })?;
    let names: Vec<&str> = header.split(',').take(MAX_COLUMNS).map(str::trim).collect();
    let column = |wanted: &str| {
        names.iter().position(|n| *n == wanted).ok_or_else(|| {
            format!(
                "signals {origin} line 1: no `{wanted}` column; the header must name t, trigger and value (found: {})",
                crate::core::text::clip(header)
            )
        })
    };
    let (ti, ni, vi) = (column("t")?, column("trigger")?, column("value")?);
    let read = ti.max(ni).max(vi) + 1;
    let mut signals = Signals::default();
    let mut rows = 0u64;
    for (i, line) in lines {
        let n = i + 1;
        rows += 1;
        if rows > limits::MAX_SIGNAL_ROWS {
            return Err(format!(
                "signals {origin} line {n}: more than {} rows, the most simulate reads; keep one row per change of a value",
                limits::MAX_SIGNAL_ROWS
            ));
        }
        let cells: Vec<&str> = line.split(',').take(read).map(str::trim).collect();
        let cell = |idx: usize, what: &str| {
            cells.get(idx).copied().ok_or_else(|| {
                format!("signals {origin} line {n}: no {what} (expected t,trigger,value)")
            })
        };
        let number = |idx: usize, what: &str| -> Result<f64, String> {
            let raw = cell(idx, what)?;
            match raw.parse::<f64>() {
                Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
                _ => Err(format!(
                    "signals {origin} line {n}: {what} '{}' is not a number of at least 0",
                    crate::core::text::clip(raw)
                )),
            }
        };
        let t = number(ti, "t")?;
        if t > limits::MAX_SECONDS {
            return Err(format!(
                "signals {origin} line {n}: t {t} is past the 31 days ({} s) simulate covers; t counts seconds from the start of the run",
                limits::MAX_SECONDS
            ));
        }
        let value = number(vi, "value")?;
        let name = cell(ni, "trigger")?;
        if !triggers.iter().any(|tr| tr == name) {
            return Err(format!(
                "signals {origin} line {n}: trigger '{}' is not in the ScaledObject; its triggers are: {}",
                crate::core::text::clip(name),
                triggers.join(", ")
            ));
        }
        let points = signals.by_trigger.entry(name.to_string()).or_default();
        if points.last().is_some_and(|(last, _)| *last > t) {
            return Err(format!(
                "signals {origin} line {n}: t {t} is earlier than the previous row of trigger '{name}'; sort the rows by time"
            ));
        }
        points.push((t, value));
    }
    Ok(signals)
}

/// One HPA sync of a replay.
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
}

/// Runs `cfg`'s triggers, bounds and behavior on `signals` for `cfg.duration` seconds.
/// Pods are ready as soon as they exist: only `Value` triggers look at readiness.
pub fn run(cfg: &Config, signals: &Signals) -> Vec<Tick> {
    let mut hpa = Hpa::new(
        cfg.min_replicas.max(1) as i32,
        cfg.max_replicas as i32,
        cfg.behavior.as_ref(),
        cfg.downscale_stabilization,
    );
    let mut replicas = cfg.min_replicas.max(1);
    let mut active = false;
    let mut last_active = None;
    let mut next_keda = cfg.polling_interval;
    let mut next_hpa = cfg.sync_period;
    let mut timeline = Vec::new();
    loop {
        let t = next_keda.min(next_hpa);
        if t >= cfg.duration {
            break;
        }
        if next_keda <= t {
            active = cfg
                .triggers
                .iter()
                .any(|tr| signals.at(&tr.name, t) > tr.activation);
            if active {
                last_active = Some(t);
            }
            if let Some(n) = engine::keda_scale(
                active,
                replicas,
                cfg.min_replicas,
                last_active,
                cfg.cooldown_period,
                t,
            ) {
                replicas = n;
            }
            next_keda += cfg.polling_interval;
        }
        if next_hpa <= t {
            let (values, metrics) =
                engine::read_triggers(&cfg.triggers, |tr| signals.at(&tr.name, t));
            let n = replicas as i32;
            let d = hpa.sync(t, n, n, n, &metrics);
            let current = replicas;
            if d.rescale {
                replicas = d.desired.max(0) as u32;
            }
            timeline.push(Tick {
                t,
                triggers: values,
                current_replicas: current,
                ready_replicas: current,
                proposal: d.proposal,
                desired: replicas,
                keda_active: active,
            });
            next_hpa += cfg.sync_period;
        }
    }
    timeline
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::strategy::{MetricType, Strategy};
    use crate::simulate::engine::Trigger;
    use crate::simulate::hpa::Behavior;
    use crate::simulate::profile;

    fn names() -> Vec<String> {
        vec!["queue".into(), "concurrency".into()]
    }

    fn config(behavior: Option<Behavior>, min: u32, max: u32) -> Config {
        let trigger = |name: &str, signal, target| Trigger {
            name: name.into(),
            signal,
            metric_type: MetricType::AverageValue,
            target,
            activation: 0.0,
        };
        Config {
            triggers: vec![
                trigger("queue", Strategy::Queue, 5.0),
                trigger("concurrency", Strategy::Concurrency, 4.0),
            ],
            min_replicas: min,
            max_replicas: max,
            polling_interval: 2.0,
            cooldown_period: 10.0,
            behavior,
            window: 30.0,
            scrape_interval: 2.0,
            profile: profile::load(profile::DEFAULT).unwrap_or_else(|e| panic!("{e}")),
            duration: 120.0,
            slo_ttft: 1.0,
            slo_itl: 0.1,
            seed: 1,
            grace: 0.0,
            step_at: None,
            sync_period: 2.0,
            downscale_stabilization: 20,
        }
    }

    fn changes(timeline: &[Tick]) -> Vec<(f64, u32)> {
        timeline
            .iter()
            .filter(|t| t.desired != t.current_replicas)
            .map(|t| (t.t, t.desired))
            .collect()
    }

    #[test]
    fn a_step_without_behavior_doubles_per_sync_and_falls_after_the_window() {
        let signals = parse("s", "t,trigger,value\n10,queue,60\n40,queue,0\n", &names())
            .unwrap_or_else(|e| panic!("{e}"));
        let cfg = config(None, 1, 12);
        let timeline = run(&cfg, &signals);
        // ceil(60 / 5) = 12, reached through max(2 x current, 4) per 2 s sync; back to 1
        // once the last 12 (recorded at 38 s) leaves the 20 s window.
        assert_eq!(
            changes(&timeline),
            [(10.0, 4), (12.0, 8), (14.0, 12), (60.0, 1)]
        );
    }

    #[test]
    fn a_step_with_an_empty_behavior_follows_the_fifteen_second_policies() {
        let signals = parse("s", "t,trigger,value\n10,queue,60\n", &names())
            .unwrap_or_else(|e| panic!("{e}"));
        let cfg = config(Some(Behavior::default()), 1, 12);
        // max(100 %, 4 pods) per 15 s: 1 -> 5, then 10 a period later, then 12.
        assert_eq!(
            changes(&run(&cfg, &signals)),
            [(10.0, 5), (26.0, 10), (42.0, 12)]
        );
    }

    #[test]
    fn scale_to_zero_and_back_follows_activation_and_cooldown() {
        let signals = parse("s", "t,trigger,value\n20,queue,3\n30,queue,0\n", &names())
            .unwrap_or_else(|e| panic!("{e}"));
        let cfg = config(None, 0, 4);
        let timeline = run(&cfg, &signals);
        let replicas_at = |t: f64| {
            timeline
                .iter()
                .find(|k| k.t == t)
                .map(|k| k.desired)
                .unwrap_or(u32::MAX)
        };
        // Never active: zero at KEDA's first poll; active at 20 s; idle from 30 s, zero once
        // the 10 s cooldown after the last active poll (28 s) has passed.
        assert_eq!(replicas_at(2.0), 0);
        assert_eq!(replicas_at(20.0), 1);
        assert_eq!(replicas_at(38.0), 1);
        assert_eq!(replicas_at(40.0), 0);
    }

    #[test]
    fn bad_rows_name_the_line_and_what_is_allowed() {
        let err = |text: &str| parse("f.csv", text, &names()).err().unwrap_or_default();
        assert!(err("").contains("empty"));
        assert!(err("time,trigger,value\n").contains("no `t` column"));
        assert!(err("t,trigger,value\n1,gpu,3\n").contains(
            "line 2: trigger 'gpu' is not in the ScaledObject; its triggers are: queue, concurrency"
        ));
        assert!(err("t,trigger,value\n1,queue,-3\n").contains("line 2: value '-3'"));
        assert!(err("t,trigger,value\nx,queue,3\n").contains("line 2: t 'x'"));
        assert!(err("t,trigger,value\n5,queue,3\n1,queue,2\n").contains("line 3: t 1 is earlier"));
        assert!(err("t,trigger,value\n5,queue\n").contains("line 2: no value"));
    }

    #[test]
    fn a_signal_holds_its_last_value_and_starts_at_zero() {
        let s = parse(
            "s",
            "t,trigger,value\n# comment\n5,queue,3\n9,queue,1\n",
            &names(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.at("queue", 4.9), 0.0);
        assert_eq!(s.at("queue", 5.0), 3.0);
        assert_eq!(s.at("queue", 8.0), 3.0);
        assert_eq!(s.at("queue", 100.0), 1.0);
        assert_eq!(s.at("concurrency", 100.0), 0.0);
        assert_eq!(s.last(), 9.0);
    }
}
