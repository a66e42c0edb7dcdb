//! Prometheus as the triggers see it: samples exist only at scrape times, a gauge is the last
//! scraped value, `rate()` extrapolates over the samples inside its window the way
//! Prometheus does, and `histogram_quantile` interpolates inside a bucket. So a signal
//! reaches KEDA one scrape interval and (for rates and quantiles) part of a window late.

use std::collections::VecDeque;

use crate::core::strategy::Strategy;

/// One scrape of one pod.
#[derive(Clone, Debug)]
pub struct Sample {
    pub t: f64,
    /// vLLM series, present once the server answers `/metrics`.
    pub server: Option<ServerSample>,
    /// dcgm-exporter's utilisation (percent) over the last scrape interval.
    pub gpu_util: f64,
    /// Kepler's energy counter in joules.
    pub joules: f64,
}

#[derive(Clone, Debug)]
pub struct ServerSample {
    pub running: f64,
    pub waiting: f64,
    pub kv: f64,
    pub generation_tokens: f64,
    pub ttft: Vec<f64>,
    pub itl: Vec<f64>,
}

#[derive(Clone, Debug)]
struct Series {
    pod: u64,
    /// Set by the first scrape that no longer finds the pod: instant queries skip the
    /// series from then on, range queries still use its older samples.
    stale: bool,
    samples: VecDeque<Sample>,
}

#[derive(Clone, Debug, Default)]
pub struct Tsdb {
    series: Vec<Series>,
    /// How far back samples are kept: the longest window any query needs.
    keep: f64,
}

/// The histogram bounds a quantile query reads.
pub struct Buckets<'a> {
    pub bounds: &'a [f64],
}

impl Tsdb {
    pub fn new(keep: f64) -> Tsdb {
        Tsdb {
            series: Vec::new(),
            keep,
        }
    }

    /// Records one scrape: `present` holds the pods the target list still has.
    pub fn scrape(&mut self, t: f64, present: Vec<(u64, Sample)>) {
        for s in &mut self.series {
            if !present.iter().any(|(pod, _)| *pod == s.pod) {
                s.stale = true;
            }
        }
        for (pod, sample) in present {
            match self.series.iter_mut().find(|s| s.pod == pod) {
                Some(s) => s.samples.push_back(sample),
                None => self.series.push(Series {
                    pod,
                    stale: false,
                    samples: VecDeque::from([sample]),
                }),
            }
        }
        let cutoff = t - self.keep;
        for s in &mut self.series {
            while s.samples.front().is_some_and(|x| x.t < cutoff) {
                s.samples.pop_front();
            }
        }
        self.series.retain(|s| !s.samples.is_empty());
    }

    fn live(&self) -> impl Iterator<Item = &Sample> {
        self.series
            .iter()
            .filter(|s| !s.stale)
            .filter_map(|s| s.samples.back())
    }

    fn gauge(&self, f: impl Fn(&Sample) -> Option<f64>) -> Vec<f64> {
        self.live().filter_map(f).collect()
    }

    /// `sum(rate(counter[window]))` at `now`.
    fn sum_rate(&self, now: f64, window: f64, f: impl Fn(&Sample) -> Option<f64>) -> f64 {
        self.series
            .iter()
            .filter_map(|s| {
                let points: Vec<(f64, f64)> = s
                    .samples
                    .iter()
                    .filter(|x| x.t > now - window && x.t <= now)
                    .filter_map(|x| f(x).map(|v| (x.t, v)))
                    .collect();
                extrapolated_rate(&points, now - window, now)
            })
            .sum::<f64>()
            + 0.0
    }

    /// `histogram_quantile(q, sum by (le) (rate(bucket[window])))`, with the query's
    /// `> 0 or vector(0)` turning "no observations" into 0.
    fn quantile(
        &self,
        now: f64,
        window: f64,
        q: f64,
        bounds: &[f64],
        f: impl Fn(&ServerSample) -> &Vec<f64>,
    ) -> f64 {
        let rates: Vec<f64> = (0..=bounds.len())
            .map(|i| {
                self.sum_rate(now, window, |x| {
                    x.server.as_ref().and_then(|s| f(s).get(i).copied())
                })
            })
            .collect();
        let v = histogram_quantile(q, bounds, &rates);
        if v.is_finite() && v > 0.0 { v } else { 0.0 }
    }

    /// The value the query of a built-in strategy returns at `now`.
    pub fn signal(
        &self,
        strategy: Strategy,
        now: f64,
        window: f64,
        ttft: Buckets<'_>,
        itl: Buckets<'_>,
    ) -> f64 {
        // `+ 0.0` turns the empty sum's -0.0 into 0.
        let sum = |v: Vec<f64>| v.iter().sum::<f64>() + 0.0;
        let avg = |v: Vec<f64>| {
            if v.is_empty() {
                0.0
            } else {
                v.iter().sum::<f64>() / v.len() as f64 + 0.0
            }
        };
        match strategy {
            Strategy::Tokens => self.sum_rate(now, window, |x| {
                x.server.as_ref().map(|s| s.generation_tokens)
            }),
            Strategy::Concurrency => sum(self.gauge(|x| x.server.as_ref().map(|s| s.running))),
            Strategy::Queue => sum(self.gauge(|x| x.server.as_ref().map(|s| s.waiting))),
            Strategy::KvCache => avg(self.gauge(|x| x.server.as_ref().map(|s| s.kv))),
            Strategy::Ttft => self.quantile(now, window, 0.95, ttft.bounds, |s| &s.ttft),
            Strategy::Itl => self.quantile(now, window, 0.95, itl.bounds, |s| &s.itl),
            Strategy::Gpu => avg(self.gauge(|x| Some(x.gpu_util))),
            Strategy::Power => self.sum_rate(now, window, |x| Some(x.joules)),
            // The caller maps `custom` to the signal the profile names.
            Strategy::Custom => 0.0,
        }
    }
}

/// Prometheus' extrapolatedRate for a counter: the increase between the first and last
/// sample, extended towards the window's edges (by at most half an average interval when a
/// sample is missing there, and never below zero), divided by the window.
pub fn extrapolated_rate(points: &[(f64, f64)], start: f64, end: f64) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let (t0, v0) = points[0];
    let (t1, v1) = points[points.len() - 1];
    // Counters here never reset (a restarted pod is a new series).
    let delta = v1 - v0;
    let sampled = t1 - t0;
    if sampled <= 0.0 {
        return None;
    }
    let avg = sampled / (points.len() - 1) as f64;
    let mut to_start = t0 - start;
    let mut to_end = end - t1;
    let threshold = avg * 1.1;
    if to_start >= threshold {
        to_start = avg / 2.0;
    }
    if delta > 0.0 && v0 >= 0.0 {
        let to_zero = sampled * (v0 / delta);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    if to_end >= threshold {
        to_end = avg / 2.0;
    }
    let factor = (sampled + to_start + to_end) / sampled;
    Some(delta * factor / (end - start))
}

/// Prometheus' histogram_quantile over cumulative bucket counts (the last one `+Inf`):
/// NaN without observations; the highest finite bound when the rank falls in `+Inf`;
/// otherwise linear interpolation inside the bucket (from 0 for the first one).
pub fn histogram_quantile(q: f64, bounds: &[f64], cumulative: &[f64]) -> f64 {
    let Some(&total) = cumulative.last() else {
        return f64::NAN;
    };
    if total <= 0.0 || bounds.is_empty() {
        return f64::NAN;
    }
    let rank = q * total;
    let b = cumulative
        .iter()
        .position(|c| *c >= rank)
        .unwrap_or(bounds.len());
    if b == bounds.len() {
        return bounds[bounds.len() - 1];
    }
    let (start, before) = if b == 0 {
        (0.0, 0.0)
    } else {
        (bounds[b - 1], cumulative[b - 1])
    };
    let end = bounds[b];
    let count = cumulative[b] - before;
    if count <= 0.0 {
        return end;
    }
    start + (end - start) * (rank - before) / count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_extrapolates_like_prometheus() {
        // Samples every 15 s covering the whole 60 s window: plain slope.
        let pts = [(15.0, 100.0), (30.0, 250.0), (45.0, 400.0), (60.0, 550.0)];
        let r = extrapolated_rate(&pts, 0.0, 60.0).unwrap();
        // Extended 15 s back (< 1.1 * 15) but not below zero: 100/10 per s reaches 0 at 10 s.
        assert!(
            (r - (450.0 * (45.0 + 10.0) / 45.0) / 60.0).abs() < 1e-9,
            "{r}"
        );
        assert_eq!(extrapolated_rate(&pts[..1], 0.0, 60.0), None);
        // A gap at the start larger than 1.1 intervals extends by half an interval only.
        let late = [(40.0, 1000.0), (50.0, 1100.0), (60.0, 1200.0)];
        let r = extrapolated_rate(&late, 0.0, 60.0).unwrap();
        assert!((r - 200.0 * (20.0 + 5.0) / 20.0 / 60.0).abs() < 1e-9, "{r}");
    }

    #[test]
    fn quantile_interpolates_and_caps_at_the_last_bound() {
        let bounds = [0.1, 0.5, 1.0];
        // 100 observations: 50 <= 0.1, 40 in (0.1, 0.5], 10 in (0.5, 1].
        let c = [50.0, 90.0, 100.0, 100.0];
        assert!((histogram_quantile(0.5, &bounds, &c) - 0.1).abs() < 1e-12);
        assert!((histogram_quantile(0.95, &bounds, &c) - 0.75).abs() < 1e-12);
        assert!((histogram_quantile(0.25, &bounds, &c) - 0.05).abs() < 1e-12);
        let over = [0.0, 0.0, 1.0, 10.0];
        assert_eq!(histogram_quantile(0.95, &bounds, &over), 1.0);
        assert!(histogram_quantile(0.95, &bounds, &[0.0; 4]).is_nan());
    }
}
