//! Command line: `render`, `serve`, `simulate`, `policy check`, `version`, `completion`.
//! Parsing and wiring only; each command lives in `cli/`.

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kserve_keda_webhook::simulate;

use cli::policy::PolicyCommand;
use cli::render::RenderArgs;
use cli::serve::ServeArgs;
use cli::version::VersionFormat;

#[derive(Parser)]
#[command(
    name = "kserve-keda-webhook",
    version,
    about = "Turns an annotated KServe InferenceService into a KEDA ScaledObject and a Prometheus monitor"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the mutated InferenceService and every object generated for it, as YAML.
    Render(Box<RenderArgs>),
    /// Run the HTTPS admission webhook.
    Serve(Box<ServeArgs>),
    /// Replay a load through the generated scaling loop (KEDA, HPA, Prometheus, model server).
    Simulate(Box<simulate::cli::SimulateArgs>),
    /// Work with platform policy files.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Print the version, the commit, the build date and the compiler.
    Version {
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value = "text")]
        output: VersionFormat,
    },
    /// Print a shell completion script, e.g. `source <(kserve-keda-webhook completion bash)`.
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Version { output } => {
            print!("{}", cli::version::text(output));
            ExitCode::SUCCESS
        }
        Command::Completion { shell } => {
            use clap::CommandFactory;
            let mut cmd = Cli::command();
            let out = &mut std::io::stdout();
            clap_complete::generate(shell, &mut cmd, "kserve-keda-webhook", out);
            ExitCode::SUCCESS
        }
        Command::Render(args) => cli::render::run(&args),
        Command::Simulate(args) => match simulate::cli::run(&args) {
            Ok(out) => {
                print!("{out}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(e.exit_code())
            }
        },
        Command::Policy(PolicyCommand::Check { file }) => match cli::policy::check(&file) {
            Ok(()) => {
                println!("{}: ok", cli::input::name(&file));
                ExitCode::SUCCESS
            }
            Err(e) => failure(&e),
        },
        Command::Serve(args) => match cli::serve::run(*args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => failure(&e),
        },
    }
}

fn failure(e: &anyhow::Error) -> ExitCode {
    eprintln!("error: {e:#}");
    ExitCode::FAILURE
}
