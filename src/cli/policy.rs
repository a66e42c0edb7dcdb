//! `policy check`, and reading the policy file every command accepts.

use std::path::Path;

use anyhow::Context;
use clap::Subcommand;
use kserve_keda_webhook::policy::{self, Policy};

use super::input;

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Check a policy file; errors name the line or the field.
    Check {
        /// Policy file to read, or `-` for standard input.
        #[arg(
            short = 'f',
            long = "filename",
            visible_alias = "policy",
            value_name = "FILE"
        )]
        file: String,
    },
}

/// Checks a policy file; the error names the file and the line or field.
pub fn check(file: &str) -> anyhow::Result<()> {
    let text = input::read(file)?;
    policy::parse(&text).with_context(|| format!("policy {}", input::name(file)))?;
    Ok(())
}

/// Reads and checks a policy file; returns it with its text (the reload compares texts).
pub fn load(path: &Path) -> anyhow::Result<(Policy, String)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read policy {}", path.display()))?;
    let parsed = policy::parse(&text).with_context(|| format!("policy {}", path.display()))?;
    Ok((parsed, text))
}
