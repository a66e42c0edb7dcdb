//! `policy check`, and reading the policy file every command accepts.

use std::path::Path;

use anyhow::Context;
use clap::Subcommand;
use kserve_keda_webhook::policy::{self, Policy};
use kserve_keda_webhook::scaling;

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

/// Checks a policy file; the error names the file and the line or field. A file is read
/// only up to one byte past the size cap.
pub fn check(file: &str) -> anyhow::Result<()> {
    let bytes = if file == "-" {
        input::read(file)?.into_bytes()
    } else {
        scaling::read_policy(Path::new(file)).with_context(|| format!("cannot read {file}"))?
    };
    policy::parse_bytes(&bytes).with_context(|| format!("policy {}", input::name(file)))?;
    Ok(())
}

/// Reads and checks a policy file; returns it with its text (the reload compares texts).
/// At most one byte past the size cap is read, so a huge file is refused by its size.
pub fn load(path: &Path) -> anyhow::Result<(Policy, String)> {
    let bytes = scaling::read_policy(path)
        .with_context(|| format!("cannot read policy {}", path.display()))?;
    let parsed =
        policy::parse_bytes(&bytes).with_context(|| format!("policy {}", path.display()))?;
    // parse_bytes accepted the bytes, so they are UTF-8.
    Ok((parsed, String::from_utf8_lossy(&bytes).into_owned()))
}
