//! What a run shows: a text summary, JSON, an SVG picture and the sweep table.

use std::fmt::Write as _;

use serde::Serialize;

use super::engine::{Config, Outcome, Summary, Tick, Trigger};

fn pct(x: f64) -> String {
    format!("{:.1} %", x * 100.0)
}

fn secs(x: f64) -> String {
    if x < 1.0 {
        format!("{}ms", (x * 1000.0).round())
    } else {
        format!("{x}s")
    }
}

/// A run length as `2h`, `1h30m` or `95s`.
pub fn span(seconds: f64) -> String {
    let s = seconds.round() as u64;
    let (h, m, sec) = (s / 3600, s % 3600 / 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if sec > 0 || out.is_empty() {
        out.push_str(&format!("{sec}s"));
    }
    out
}

fn describe(triggers: &[Trigger]) -> String {
    triggers
        .iter()
        .map(|t| {
            let via = if t.name == t.signal.as_str() {
                String::new()
            } else {
                format!(" reading {}", t.signal)
            };
            format!("{} {} {}{via}", t.name, t.metric_type.as_str(), t.target)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn text(name: &str, load: &str, cfg: &Config, out: &Outcome) -> String {
    let s = &out.summary;
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{name}: {} | replicas {}..{} | polling {}s, cooldown {}s, window {}s, scrape {}s",
        describe(&cfg.triggers),
        cfg.min_replicas,
        cfg.max_replicas,
        cfg.polling_interval,
        cfg.cooldown_period,
        cfg.window,
        cfg.scrape_interval
    );
    let _ = writeln!(
        t,
        "profile {} | load {load} | {} | seed {}",
        cfg.profile.name,
        span(cfg.duration),
        cfg.seed
    );
    let _ = writeln!(
        t,
        "requests        {} (finished {}, failed {}, unfinished at the end {})",
        s.requests, s.finished, s.failed, s.unfinished
    );
    let _ = writeln!(
        t,
        "TTFT <= {:<8} {}",
        secs(cfg.slo_ttft),
        pct(s.ttft_attainment)
    );
    let _ = writeln!(
        t,
        "ITL <= {:<9} {}",
        secs(cfg.slo_itl),
        pct(s.itl_attainment)
    );
    let _ = writeln!(t, "both            {}", pct(s.slo_attainment));
    let _ = writeln!(t, "replica-hours   {:.2}", s.replica_hours);
    let _ = writeln!(
        t,
        "scale events    {} up, {} down (at most {} replicas)",
        s.scale_ups, s.scale_downs, s.max_replicas_reached
    );
    let _ = writeln!(t, "peak queue      {}", s.peak_queue);
    if cfg.step_at.is_some() {
        let f = |x: Option<f64>| x.map_or("never".to_string(), |v| format!("{v:.0} s"));
        let _ = writeln!(
            t,
            "load step       scale-up decided after {}, first new pod serving after {}",
            f(s.step_to_scale_up),
            f(s.step_to_ready)
        );
    }
    t
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Json<'a> {
    inference_service: &'a str,
    profile: &'a str,
    seed: u64,
    triggers: &'a [Trigger],
    timeline: &'a [Tick],
    summary: &'a Summary,
}

pub fn json(name: &str, cfg: &Config, out: &Outcome) -> Result<String, serde_json::Error> {
    let mut s = serde_json::to_string_pretty(&Json {
        inference_service: name,
        profile: &cfg.profile.name,
        seed: cfg.seed,
        triggers: &cfg.triggers,
        timeline: &out.timeline,
        summary: &out.summary,
    })?;
    s.push('\n');
    Ok(s)
}

/// One row of a sweep.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SweepRow {
    pub strategy: String,
    pub target: f64,
    pub triggers: String,
    pub summary: Summary,
    pub meets_slo: bool,
}

/// The sweep as a table, naming the cheapest setting that meets the SLO goal.
pub fn sweep_table(rows: &[SweepRow], goal: f64, slo: &str) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{:<12} {:>8} {:>8} {:>8} {:>8} {:>13} {:>7} {:>10}  meets {} for {}",
        "strategy",
        "target",
        "TTFT ok",
        "ITL ok",
        "both",
        "replica-hours",
        "scales",
        "peak queue",
        pct(goal),
        slo
    );
    for r in rows {
        let s = &r.summary;
        let _ = writeln!(
            t,
            "{:<12} {:>8} {:>8} {:>8} {:>8} {:>13.2} {:>7} {:>10}  {}",
            r.strategy,
            r.target,
            pct(s.ttft_attainment),
            pct(s.itl_attainment),
            pct(s.slo_attainment),
            s.replica_hours,
            s.scale_ups + s.scale_downs,
            s.peak_queue,
            if r.meets_slo { "yes" } else { "no" }
        );
    }
    match cheapest(rows) {
        Some(r) => {
            let _ = writeln!(
                t,
                "cheapest meeting the SLO: {}={} ({:.2} replica-hours)",
                r.strategy, r.target, r.summary.replica_hours
            );
        }
        None => {
            let _ = writeln!(
                t,
                "no setting meets the SLO; raise max replicas, lower the targets or relax the SLO"
            );
        }
    }
    t
}

pub fn cheapest(rows: &[SweepRow]) -> Option<&SweepRow> {
    rows.iter()
        .filter(|r| r.meets_slo)
        .min_by(|a, b| a.summary.replica_hours.total_cmp(&b.summary.replica_hours))
}

/// Rounds up to 1, 2 or 5 times a power of ten, for axis ranges.
fn nice(v: f64) -> f64 {
    if !(v.is_finite() && v > 0.0) {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if v <= m * p * (1.0 + 1e-9) {
            return m * p;
        }
    }
    10.0 * p
}

fn fmt_num(v: f64) -> String {
    let s = format!("{:.3}", v);
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Load, desired and ready replicas, and p95 TTFT over time, one panel each.
pub fn svg(title: &str, cfg: &Config, out: &Outcome) -> String {
    const W: f64 = 960.0;
    const LEFT: f64 = 70.0;
    const RIGHT: f64 = 150.0;
    const PANEL: f64 = 160.0;
    const GAP: f64 = 50.0;
    const TOP: f64 = 50.0;
    let h = TOP + 3.0 * PANEL + 3.0 * GAP;
    let plot_w = W - LEFT - RIGHT;
    let (unit, scale) = if cfg.duration > 3.0 * 3600.0 {
        ("h", 3600.0)
    } else {
        ("min", 60.0)
    };
    let x_max = cfg.duration / scale;
    let x = |t: f64| LEFT + plot_w * (t / scale) / x_max;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="24" font-size="15" font-weight="bold">{}</text>"#,
        escape(title)
    );
    let tl = &out.timeline;
    let panels: [(&str, f64); 3] = [
        (
            "load (requests/s)",
            tl.iter().map(|k| k.load).fold(0.0, f64::max),
        ),
        (
            "replicas",
            tl.iter()
                .map(|k| f64::from(k.desired.max(k.current_replicas)))
                .fold(f64::from(cfg.max_replicas), f64::max),
        ),
        (
            "p95 TTFT (s)",
            tl.iter()
                .filter_map(|k| k.p95_ttft)
                .fold(cfg.slo_ttft, f64::max),
        ),
    ];
    for (i, (label, max)) in panels.iter().enumerate() {
        let top = TOP + i as f64 * (PANEL + GAP);
        let bottom = top + PANEL;
        // Replica counts get whole-number ticks.
        let y_max = if i == 1 {
            ((*max + 1.0) / 4.0).ceil() * 4.0
        } else {
            nice(*max)
        };
        let y = |v: f64| bottom - PANEL * (v / y_max).min(1.05);
        let _ = writeln!(
            s,
            r##"<rect x="{LEFT}" y="{top}" width="{plot_w}" height="{PANEL}" fill="none" stroke="#888"/>"##
        );
        let _ = writeln!(
            s,
            r#"<text x="{LEFT}" y="{}" font-weight="bold">{label}</text>"#,
            top - 6.0
        );
        for k in 0..=4 {
            let v = y_max * f64::from(k) / 4.0;
            let yy = y(v);
            let _ = writeln!(
                s,
                r##"<line x1="{}" y1="{yy}" x2="{LEFT}" y2="{yy}" stroke="#888"/><text x="{}" y="{}" text-anchor="end">{}</text>"##,
                LEFT - 4.0,
                LEFT - 6.0,
                yy + 4.0,
                fmt_num(v)
            );
            if k > 0 && k < 4 {
                let _ = writeln!(
                    s,
                    r##"<line x1="{LEFT}" y1="{yy}" x2="{}" y2="{yy}" stroke="#eee"/>"##,
                    LEFT + plot_w
                );
            }
        }
        let x_step = nice(x_max / 6.0);
        let mut xv = 0.0;
        while xv <= x_max + 1e-9 {
            let xx = LEFT + plot_w * xv / x_max;
            let _ = writeln!(
                s,
                r##"<line x1="{xx}" y1="{bottom}" x2="{xx}" y2="{}" stroke="#888"/><text x="{xx}" y="{}" text-anchor="middle">{}</text>"##,
                bottom + 4.0,
                bottom + 17.0,
                fmt_num(xv)
            );
            xv += x_step;
        }
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">time ({unit})</text>"#,
            LEFT + plot_w,
            bottom + 32.0
        );
        let lx = LEFT + plot_w + 12.0;
        match i {
            0 => {
                let pts: Vec<(f64, f64)> = tl.iter().map(|k| (x(k.t), y(k.load))).collect();
                line(&mut s, &pts, "#1f77b4", "");
                legend(&mut s, lx, top, 0, "#1f77b4", "arrivals", "");
            }
            1 => {
                let desired: Vec<(f64, f64)> = tl
                    .iter()
                    .map(|k| (x(k.t), y(f64::from(k.desired))))
                    .collect();
                let ready: Vec<(f64, f64)> = tl
                    .iter()
                    .map(|k| (x(k.t), y(f64::from(k.ready_replicas))))
                    .collect();
                line(&mut s, &steps(&desired), "#d62728", "6 3");
                line(&mut s, &steps(&ready), "#2ca02c", "");
                legend(&mut s, lx, top, 0, "#d62728", "desired", "6 3");
                legend(&mut s, lx, top, 1, "#2ca02c", "ready", "");
            }
            _ => {
                let mut run: Vec<(f64, f64)> = Vec::new();
                for k in tl {
                    match k.p95_ttft {
                        Some(v) => run.push((x(k.t), y(v))),
                        None => {
                            line(&mut s, &run, "#9467bd", "");
                            run.clear();
                        }
                    }
                }
                line(&mut s, &run, "#9467bd", "");
                let slo = y(cfg.slo_ttft);
                let _ = writeln!(
                    s,
                    r##"<line x1="{LEFT}" y1="{slo}" x2="{}" y2="{slo}" stroke="#ff7f0e" stroke-dasharray="4 4"/>"##,
                    LEFT + plot_w
                );
                legend(&mut s, lx, top, 0, "#9467bd", "p95 TTFT", "");
                legend(&mut s, lx, top, 1, "#ff7f0e", "SLO", "4 4");
            }
        }
    }
    s.push_str("</svg>\n");
    s
}

fn legend(s: &mut String, lx: f64, top: f64, n: usize, color: &str, name: &str, dash: &str) {
    let ly = top + 14.0 + 18.0 * n as f64;
    let _ = writeln!(
        s,
        r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{color}" stroke-width="2" stroke-dasharray="{dash}"/><text x="{}" y="{}">{name}</text>"#,
        lx + 20.0,
        lx + 26.0,
        ly + 4.0
    );
}

fn steps(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(points.len() * 2);
    for (i, p) in points.iter().enumerate() {
        if i > 0 {
            out.push((p.0, points[i - 1].1));
        }
        out.push(*p);
    }
    out
}

fn line(s: &mut String, pts: &[(f64, f64)], color: &str, dash: &str) {
    if pts.is_empty() {
        return;
    }
    let coords: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
    let _ = writeln!(
        s,
        r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" stroke-dasharray="{dash}" points="{}"/>"#,
        coords.join(" ")
    );
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `--signals` as text: one line per HPA sync that changed the replicas.
pub fn replay_text(name: &str, timeline: &[super::replay::Tick]) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "{name}: replicas changed at");
    let mut changes = 0;
    for k in timeline.iter().filter(|k| k.desired != k.current_replicas) {
        changes += 1;
        let signals = k
            .triggers
            .iter()
            .map(|v| format!("{}={}/{} {}", v.name, v.value, v.target, v.metric_type))
            .collect::<Vec<_>>()
            .join(", ");
        let proposal = k
            .proposal
            .map_or_else(|| "KEDA".to_string(), |p| format!("proposal {p}"));
        let _ = writeln!(
            t,
            "  t={:>7.1}s  {} -> {}  ({proposal}; {signals})",
            k.t, k.current_replicas, k.desired
        );
    }
    if changes == 0 {
        let _ = writeln!(t, "  (never: the replicas stayed as they started)");
    }
    t
}
