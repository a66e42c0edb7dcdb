//! The `simulate` command: flags, input files, and which report to print.

use std::path::PathBuf;

use super::SimError;
use super::engine::{self, Config};
use super::limits::{self, read};
use super::load::{self, Request};
use super::profile::{self, Profile};
use super::replay;
use super::report::{self, SweepRow};
use super::rng::Rng;
use super::scenario::{self, Planned};
use crate::core::strategy::Strategy;
use crate::core::text::duration;
use crate::policy;

#[derive(clap::Args, Debug, Clone)]
pub struct SimulateArgs {
    /// InferenceService manifest to plan and simulate, or `-` for standard input.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub file: String,
    /// Namespace for an object that names none.
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// Platform policy file, as `render` and `serve` take it.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Generated load, e.g. `step:from=2,to=8,at=10m` (forms: constant, step, ramp, diurnal,
    /// bursty; see the README).
    #[arg(
        long,
        value_name = "SPEC",
        required_unless_present_any = ["trace", "signals"],
        conflicts_with_all = ["trace", "signals"]
    )]
    pub load: Option<String>,
    /// CSV of requests: arrival time, prompt tokens, output tokens (own column names or the
    /// Azure LLM inference traces': TIMESTAMP, ContextTokens, GeneratedTokens).
    #[arg(long, value_name = "FILE", conflicts_with = "signals")]
    pub trace: Option<PathBuf>,
    /// CSV of trigger values over time (`t,trigger,value`; t in seconds): replays them through
    /// KEDA and the HPA controller only, without the model-server model.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["sweep", "plot"])]
    pub signals: Option<PathBuf>,
    /// kube-controller-manager's --horizontal-pod-autoscaler-sync-period.
    #[arg(long, value_name = "DURATION", default_value = "15s")]
    pub hpa_sync_period: String,
    /// kube-controller-manager's --horizontal-pod-autoscaler-downscale-stabilization.
    #[arg(long, value_name = "DURATION", default_value = "5m")]
    pub hpa_downscale_stabilization: String,
    /// A built-in profile (llama-3.1-8b-a100, mistral-7b-rtx4090) or a profile YAML file.
    #[arg(long, value_name = "NAME|FILE", default_value = profile::DEFAULT)]
    pub profile: String,
    /// Time-to-first-token objective per request.
    #[arg(long, value_name = "DURATION", default_value = "1s")]
    pub slo_ttft: String,
    /// Objective for a request's mean inter-token latency.
    #[arg(long, value_name = "DURATION", default_value = "100ms")]
    pub slo_itl: String,
    /// Share of requests that must meet both objectives for a sweep setting to count.
    #[arg(long, value_name = "SHARE", default_value_t = 0.95)]
    pub slo_goal: f64,
    /// Simulated time (default: 1h for --load, up to the last request for --trace).
    #[arg(long, value_name = "DURATION")]
    pub duration: Option<String>,
    /// Seed of the random generator: the same seed gives the same output.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Prometheus scrape interval of the generated monitor.
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub scrape_interval: String,
    /// Seconds a deleted pod may finish its requests.
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub grace_period: String,
    #[arg(long, value_enum, default_value = "text")]
    pub output: Format,
    /// Write an SVG of load, replicas and p95 TTFT over time.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Compare targets of a strategy, e.g. `queue=3,5,8` (repeatable); prints a table.
    #[arg(long, value_name = "STRATEGY=TARGET,...")]
    pub sweep: Vec<String>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

struct Common {
    controller: Controller,
    profile: Profile,
    requests: Vec<Request>,
    load_name: String,
    duration: f64,
    step_at: Option<f64>,
    slo_ttft: f64,
    slo_itl: f64,
    scrape: f64,
    grace: f64,
}

fn input(e: String) -> SimError {
    SimError::Input(e)
}

/// The HPA controller's own flags.
#[derive(Clone, Copy)]
struct Controller {
    sync_period: f64,
    downscale_stabilization: u32,
}

fn controller(args: &SimulateArgs) -> Result<Controller, SimError> {
    let sync_period = duration::parse("--hpa-sync-period", &args.hpa_sync_period).map_err(input)?;
    if !(1.0..=3600.0).contains(&sync_period) {
        return Err(input(format!(
            "--hpa-sync-period: '{}' is out of range; use 1s to 1h (the controller's default is 15s)",
            args.hpa_sync_period
        )));
    }
    let window = duration::parse(
        "--hpa-downscale-stabilization",
        &args.hpa_downscale_stabilization,
    )
    .map_err(input)?;
    if !(0.0..=86400.0).contains(&window) || window.fract() != 0.0 {
        return Err(input(format!(
            "--hpa-downscale-stabilization: '{}' is not whole seconds between 0s and 24h (the controller's default is 5m)",
            args.hpa_downscale_stabilization
        )));
    }
    Ok(Controller {
        sync_period,
        downscale_stabilization: window as u32,
    })
}

fn common(args: &SimulateArgs) -> Result<Common, SimError> {
    let controller = controller(args)?;
    let profile = profile::load(&args.profile).map_err(input)?;
    let slo_ttft = duration::parse("--slo-ttft", &args.slo_ttft).map_err(input)?;
    let slo_itl = duration::parse("--slo-itl", &args.slo_itl).map_err(input)?;
    let scrape = duration::parse("--scrape-interval", &args.scrape_interval).map_err(input)?;
    let grace = duration::parse("--grace-period", &args.grace_period).map_err(input)?;
    if scrape < 1.0 {
        return Err(input(format!(
            "--scrape-interval: '{}' is shorter than 1s; Prometheus scrapes every few seconds at most",
            args.scrape_interval
        )));
    }
    if !(args.slo_goal > 0.0 && args.slo_goal <= 1.0) {
        return Err(input(format!(
            "--slo-goal: {} is not a share; use a number above 0 and at most 1, e.g. 0.95",
            args.slo_goal
        )));
    }
    let duration = given_duration(args)?;
    let (requests, load_name, duration, step_at) = match (&args.load, &args.trace) {
        (Some(spec), _) => {
            let load = load::parse(spec).map_err(input)?;
            let d = duration.unwrap_or(3600.0);
            limits::arrivals(spec, load.shape.max_rate(), d)?;
            limits::syncs(d, controller.sync_period, &args.hpa_sync_period)?;
            let mut rng = Rng::new(args.seed);
            let r = load::generate(
                &load,
                d,
                profile.prompt_tokens,
                profile.output_tokens,
                &mut rng,
            );
            (r, spec.clone(), d, load.shape.step_at().filter(|t| *t < d))
        }
        (None, Some(path)) => {
            let origin = path.display().to_string();
            let text = read(&origin, limits::MAX_CSV_BYTES)?;
            let r = load::parse_trace(&origin, &text).map_err(input)?;
            let last = r.last().map_or(0.0, |x| x.arrival);
            // Up to the last request and a minute, within the longest run.
            let d = duration.unwrap_or((last + 60.0).clamp(60.0, limits::MAX_SECONDS));
            limits::syncs(d, controller.sync_period, &args.hpa_sync_period)?;
            (r, format!("trace {origin}"), d, None)
        }
        (None, None) => return Err(input("give --load SPEC or --trace FILE".into())),
    };
    Ok(Common {
        controller,
        profile,
        requests,
        load_name,
        duration,
        step_at,
        slo_ttft,
        slo_itl,
        scrape,
        grace,
    })
}

/// `--duration` in seconds, when given, within the bounds of one run.
fn given_duration(args: &SimulateArgs) -> Result<Option<f64>, SimError> {
    let Some(given) = args.duration.as_deref() else {
        return Ok(None);
    };
    let seconds = duration::parse("--duration", given).map_err(input)?;
    limits::duration(given, seconds)?;
    Ok(Some(seconds))
}

/// The plan as the model-server simulation can run it.
fn simulable(p: &Planned, prefix: &str) -> Result<(), SimError> {
    limits::replicas(p.max_replicas, prefix)
}

fn config(p: &Planned, c: &Common, seed: u64) -> Config {
    Config {
        triggers: p.triggers.clone(),
        min_replicas: p.min_replicas,
        max_replicas: p.max_replicas,
        polling_interval: f64::from(p.polling_interval.max(1)),
        cooldown_period: f64::from(p.cooldown_period),
        behavior: p.behavior.clone(),
        window: p.window,
        scrape_interval: c.scrape,
        profile: c.profile.clone(),
        duration: c.duration,
        slo_ttft: c.slo_ttft,
        slo_itl: c.slo_itl,
        seed,
        grace: c.grace,
        step_at: c.step_at,
        sync_period: c.controller.sync_period,
        downscale_stabilization: c.controller.downscale_stabilization,
    }
}

/// `--signals`: the planned triggers, bounds and behavior on recorded trigger values.
fn run_replay(
    args: &SimulateArgs,
    path: &std::path::Path,
    value: &serde_json::Value,
    scaling: &crate::scaling::Scaling,
) -> Result<String, SimError> {
    let controller = controller(args)?;
    let profile = profile::load(&args.profile).map_err(input)?;
    let planned =
        scenario::plan(value, &args.namespace, scaling, &profile).map_err(SimError::Plan)?;
    let origin = path.display().to_string();
    let names: Vec<String> = planned.triggers.iter().map(|t| t.name.clone()).collect();
    let signals =
        replay::parse(&origin, &read(&origin, limits::MAX_CSV_BYTES)?, &names).map_err(input)?;
    let duration = match given_duration(args)? {
        Some(d) => d,
        // Long enough for the last change to settle: the downscale window and a cooldown
        // (which an annotation may set to years), within the longest run.
        None => (signals.last()
            + f64::from(controller.downscale_stabilization)
            + f64::from(planned.cooldown_period)
            + 4.0 * controller.sync_period)
            .min(limits::MAX_SECONDS),
    };
    limits::syncs(duration, controller.sync_period, &args.hpa_sync_period)?;
    let cfg = Config {
        triggers: planned.triggers.clone(),
        min_replicas: planned.min_replicas,
        max_replicas: planned.max_replicas,
        polling_interval: f64::from(planned.polling_interval.max(1)),
        cooldown_period: f64::from(planned.cooldown_period),
        behavior: planned.behavior.clone(),
        window: planned.window,
        scrape_interval: 0.0,
        profile,
        duration,
        slo_ttft: 0.0,
        slo_itl: 0.0,
        seed: args.seed,
        grace: 0.0,
        step_at: None,
        sync_period: controller.sync_period,
        downscale_stabilization: controller.downscale_stabilization,
    };
    let timeline = replay::run(&cfg, &signals);
    /// Written straight from the timeline: a JSON tree of it first would take several
    /// times its size.
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Replay<'a> {
        inference_service: &'a str,
        timeline: &'a [replay::Tick],
    }
    match args.output {
        Format::Json => serde_json::to_string_pretty(&Replay {
            inference_service: &planned.name,
            timeline: &timeline,
        })
        .map(|s| s + "\n")
        .map_err(|e| input(format!("cannot encode JSON: {e}"))),
        Format::Text => Ok(report::replay_text(&planned.name, &timeline)),
    }
}

/// Parses `strategy=t1,t2,...`.
pub fn parse_sweep(text: &str) -> Result<(Strategy, Vec<f64>), String> {
    let bad = |why: String| {
        format!(
            "--sweep '{}': {why}; use STRATEGY=TARGET,... e.g. queue=3,5,8",
            crate::core::text::clip(text)
        )
    };
    let (name, values) = text.split_once('=').ok_or_else(|| bad("no '='".into()))?;
    let strategy = Strategy::parse(name).ok_or_else(|| {
        bad(format!(
            "unknown strategy '{}'; allowed: {}",
            crate::core::text::clip(name),
            Strategy::ALLOWED
        ))
    })?;
    let mut targets = Vec::new();
    for v in values.split(',') {
        match v.trim().parse::<f64>() {
            Ok(t) if t.is_finite() && t > 0.0 => targets.push(t),
            _ => {
                return Err(bad(format!(
                    "target '{}' is not a number greater than 0",
                    crate::core::text::clip(v)
                )));
            }
        }
    }
    Ok((strategy, targets))
}

/// Runs the command; returns what goes to standard output.
pub fn run(args: &SimulateArgs) -> Result<String, SimError> {
    let sweeps = args
        .sweep
        .iter()
        .map(|s| parse_sweep(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(input)?;
    let pol = match &args.policy {
        Some(path) => {
            let text = limits::read_yaml(&path.display().to_string())?;
            policy::parse(&text).map_err(|e| input(format!("policy {}: {e}", path.display())))?
        }
        None => policy::Policy::default(),
    };
    let scaling = scenario::scaling(pol);
    let text = limits::read_yaml(&args.file)?;
    let value = scenario::read_isvc(&args.file, &text).map_err(input)?;
    if let Some(path) = &args.signals {
        return run_replay(args, path, &value, &scaling);
    }
    let c = common(args)?;

    if sweeps.is_empty() {
        let planned = scenario::plan(&value, &args.namespace, &scaling, &c.profile)
            .map_err(SimError::Plan)?;
        simulable(&planned, &scaling.prefix())?;
        let cfg = config(&planned, &c, args.seed);
        let out = engine::run(&cfg, &c.requests);
        if let Some(path) = &args.plot {
            let title = format!("{} · {} · {}", planned.name, c.profile.name, c.load_name);
            std::fs::write(path, report::svg(&title, &cfg, &out))
                .map_err(|e| input(format!("--plot {}: cannot write: {e}", path.display())))?;
        }
        let mut s = match args.output {
            Format::Text => report::text(&planned.name, &c.load_name, &cfg, &out),
            Format::Json => report::json(&planned.name, &cfg, &out)
                .map_err(|e| input(format!("cannot encode JSON: {e}")))?,
        };
        if args.output == Format::Text {
            for w in &planned.warnings {
                s.push_str(&format!("warning: {w}\n"));
            }
        }
        return Ok(s);
    }

    let prefix = scaling.prefix();
    let mut rows = Vec::new();
    for (strategy, targets) in &sweeps {
        for target in targets {
            let v = scenario::with_target(&value, &prefix, *strategy, *target);
            let planned = scenario::plan(&v, &args.namespace, &scaling, &c.profile)
                .map_err(SimError::Plan)?;
            simulable(&planned, &prefix)?;
            let cfg = config(&planned, &c, args.seed);
            let out = engine::run(&cfg, &c.requests);
            rows.push(SweepRow {
                strategy: strategy.as_str().to_string(),
                target: *target,
                triggers: cfg
                    .triggers
                    .iter()
                    .map(|t| format!("{}={}", t.name, t.target))
                    .collect::<Vec<_>>()
                    .join(","),
                meets_slo: out.summary.slo_attainment >= args.slo_goal,
                summary: out.summary,
            });
        }
    }
    let slo = format!("TTFT <= {}, ITL <= {}", args.slo_ttft, args.slo_itl);
    match args.output {
        Format::Text => Ok(format!(
            "profile {} | load {} | {} | seed {}\n{}",
            c.profile.name,
            c.load_name,
            report::span(c.duration),
            args.seed,
            report::sweep_table(&rows, args.slo_goal, &slo)
        )),
        Format::Json => {
            let cheapest = report::cheapest(&rows).map(|r| (r.strategy.clone(), r.target));
            let v = serde_json::json!({
                "profile": c.profile.name,
                "sloGoal": args.slo_goal,
                "rows": rows,
                "cheapest": cheapest.map(|(s, t)| serde_json::json!({"strategy": s, "target": t})),
            });
            serde_json::to_string_pretty(&v)
                .map(|s| s + "\n")
                .map_err(|e| input(format!("cannot encode JSON: {e}")))
        }
    }
}
