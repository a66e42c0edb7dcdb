//! Reading the files a command is given (`-` is standard input) and naming them in messages.

use std::io::Read;

use anyhow::Context;

pub fn read(file: &str) -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    if file == "-" {
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("cannot read standard input")?;
    } else {
        bytes = std::fs::read(file).with_context(|| format!("cannot read {file}"))?;
    }
    String::from_utf8(bytes).with_context(|| format!("{file} is not UTF-8 text"))
}

/// How an input file is named in messages.
pub fn name(file: &str) -> &str {
    if file == "-" { "standard input" } else { file }
}
