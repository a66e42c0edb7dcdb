//! `render`: what the webhook and the controller would produce for a manifest, offline.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use kserve_keda_webhook::core::names;
use kserve_keda_webhook::policy::Policy;
use kserve_keda_webhook::render;
use kserve_keda_webhook::scaling::Scaling;

use super::planning::{PlanningArgs, pairs};
use super::{input, policy};

#[derive(Args)]
pub struct RenderArgs {
    /// InferenceService manifest to read, or `-` for standard input.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    file: String,
    /// Namespace for objects that name none.
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
    /// Labels the namespace has on the cluster, for policy rules that select by label
    /// (repeatable KEY=VALUE).
    #[arg(long = "namespace-label", value_name = "KEY=VALUE")]
    namespace_labels: Vec<String>,
    #[command(flatten)]
    planning: PlanningArgs,
}

/// Bad flags or an unreadable file exit 2; a manifest the planner refuses exits with the
/// code of its error.
pub fn run(args: &RenderArgs) -> ExitCode {
    let scaling = match scaling(args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let text = match input::read(&args.file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    match render::render(&text, &args.namespace, &scaling) {
        Ok(out) => {
            for w in &out.warnings {
                eprintln!("warning: {w}");
            }
            print!("{}", out.yaml);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn scaling(args: &RenderArgs) -> anyhow::Result<Scaling> {
    let settings = args.planning.settings()?;
    let policy = match &args.planning.policy {
        Some(path) => policy::load(path)?.0,
        None => Policy::default(),
    };
    names::dns1123_label(&args.namespace).map_err(|e| anyhow::anyhow!("--namespace (-n): {e}"))?;
    let labels = pairs("--namespace-label", &args.namespace_labels)?;
    Ok(Scaling::new(
        settings,
        policy,
        Arc::new(move |_: &str| labels.clone()),
    ))
}
