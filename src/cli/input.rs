//! Reading the files a command is given (`-` is standard input) and naming them in messages.

use std::io::Read;

use anyhow::Context;
use kserve_keda_webhook::core::text;

/// The most read from one manifest or policy file. A YAML document takes up to a hundred
/// times its size while it is parsed, and the API server takes at most 3 MiB in one request,
/// so a larger file is a mistake or an attack, and is refused before it is read whole.
pub const MAX_BYTES: u64 = 4 << 20;

/// `[` and `{` nested deeper than this are refused before parsing (the parser itself stops
/// at 128, but only after a pass quadratic in the depth).
pub const MAX_FLOW_NESTING: usize = 1_000;

/// A manifest or policy file (YAML), bounded in size and nesting.
pub fn read(file: &str) -> anyhow::Result<String> {
    let text = read_at_most(file, MAX_BYTES)?;
    if text::flow_nesting_exceeds(&text, MAX_FLOW_NESTING) {
        anyhow::bail!(
            "{} nests '[' and '{{' more than {MAX_FLOW_NESTING} deep; no manifest needs that",
            name(file)
        );
    }
    Ok(text)
}

fn read_at_most(file: &str, max: u64) -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    if file == "-" {
        std::io::stdin()
            .take(max + 1)
            .read_to_end(&mut bytes)
            .context("cannot read standard input")?;
    } else {
        std::fs::File::open(file)
            .and_then(|f| f.take(max + 1).read_to_end(&mut bytes))
            .with_context(|| format!("cannot read {file}"))?;
    }
    if bytes.len() as u64 > max {
        anyhow::bail!(
            "{} is larger than {} MiB, the most read from one manifest",
            name(file),
            max >> 20
        );
    }
    String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8 text", name(file)))
}

/// How an input file is named in messages.
pub fn name(file: &str) -> &str {
    if file == "-" { "standard input" } else { file }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_over_the_bound_is_refused_with_it() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("big.yaml");
        let file = path.display().to_string();
        std::fs::write(&path, vec![b'#'; (1 << 20) + 1]).unwrap_or_else(|e| panic!("{e}"));
        let e = read_at_most(&file, 1 << 20).map(|_| ()).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("{file} is larger than 1 MiB, the most read from one manifest")
        );
        std::fs::write(&path, vec![b'#'; 1 << 20]).unwrap_or_else(|e| panic!("{e}"));
        assert!(read_at_most(&file, 1 << 20).is_ok());
        assert_eq!(MAX_BYTES, 4 << 20);
    }
}
