//! How large one run may get, checked from the flags, the plan and the input files before
//! anything is generated or allocated, so an oversized run is refused with the flag or field
//! that made it large instead of running the machine out of memory.
//!
//! What a run holds grows with four things, each bounded here: the requests (generated or
//! read; 16 bytes each, plus up to 48 each while queued in a model server), the HPA syncs
//! (one timeline entry each, a few hundred bytes with its JSON), the modelled pods (a model
//! server each), and the input files (read whole; CSV rows are split into at most the
//! columns read, so a line of commas cannot multiply its size). At the bounds a run stays
//! under about 1 GiB; the README's `simulate` section gives the figures.

use super::SimError;
use crate::core::text;

/// Longest simulated time: `--duration`, and what a trace or signals file spans.
pub const MAX_SECONDS: f64 = 31.0 * 86400.0;
/// Shortest `--duration`.
pub const MIN_SECONDS: f64 = 60.0;
/// Requests a run may draw (`--load`) or read (`--trace`).
pub const MAX_REQUESTS: u64 = 5_000_000;
/// HPA syncs, one timeline entry each: 31 days at the controller's default 15 s fit.
pub const MAX_SYNCS: u64 = 200_000;
/// Pods the model-server simulation may run at once (the ScaledObject's maxReplicaCount).
pub const MAX_REPLICAS: u32 = 1_000;
/// Rows of a `--signals` file.
pub const MAX_SIGNAL_ROWS: u64 = 5_000_000;
/// Size of a trace or signals file (CSV, read line by line into 16-byte rows).
pub const MAX_CSV_BYTES: u64 = 256 << 20;
/// Size of a YAML file (manifest, policy, profile): a YAML document takes up to a hundred
/// times its size while it is parsed, and the API server takes at most 3 MiB in one request.
pub const MAX_YAML_BYTES: u64 = 4 << 20;
/// `[` and `{` nested deeper than this are refused before the YAML parser sees them: it
/// stops at 128 itself, but only after a pass quadratic in the depth.
pub const MAX_FLOW_NESTING: usize = 1_000;

fn input(e: String) -> SimError {
    SimError::Input(e)
}

/// `--duration` as given, in seconds.
pub fn duration(given: &str, seconds: f64) -> Result<(), SimError> {
    if (MIN_SECONDS..=MAX_SECONDS).contains(&seconds) {
        return Ok(());
    }
    Err(input(format!(
        "--duration: '{}' is out of range; simulate between 1m and 31d",
        text::clip(given)
    )))
}

/// A generated load draws candidate arrivals at its peak rate for the whole run (thinning
/// then keeps those under the shape), so the peak rate times the duration bounds both the
/// requests held and the work done.
pub fn arrivals(load: &str, peak_rate: f64, seconds: f64) -> Result<(), SimError> {
    let drawn = peak_rate * seconds;
    if drawn <= MAX_REQUESTS as f64 {
        return Ok(());
    }
    Err(input(format!(
        "--load '{}' over {} draws about {drawn:.0} arrivals (peak rate {peak_rate}/s x {seconds:.0} s), more than the {MAX_REQUESTS} requests simulate holds; lower the rate or --duration",
        text::clip(load),
        span(seconds)
    )))
}

/// The timeline has one entry per HPA sync.
pub fn syncs(seconds: f64, sync_period: f64, sync_flag: &str) -> Result<(), SimError> {
    let n = (seconds / sync_period).ceil();
    if n <= MAX_SYNCS as f64 {
        return Ok(());
    }
    Err(input(format!(
        "{} at --hpa-sync-period {sync_flag} is {n:.0} HPA syncs, more than the {MAX_SYNCS} simulate records (one timeline entry each); shorten --duration or lengthen --hpa-sync-period",
        span(seconds),
        sync_flag = text::clip(sync_flag),
    )))
}

/// Every modelled pod runs a model server; the HPA may ask for up to `max`.
pub fn replicas(max: u32, prefix: &str) -> Result<(), SimError> {
    if max <= MAX_REPLICAS {
        return Ok(());
    }
    Err(input(format!(
        "max replicas {max} (the ScaledObject's maxReplicaCount) is more than the {MAX_REPLICAS} pods simulate models; set {prefix}/max-replicas to at most {MAX_REPLICAS} for the simulation (--signals, which models no pod, takes any)"
    )))
}

/// The length of a run as the messages give it: what was asked, or what a file implied.
fn span(seconds: f64) -> String {
    if seconds >= 86400.0 {
        format!("{:.1} days", seconds / 86400.0)
    } else {
        format!("{seconds:.0} s")
    }
}

/// A YAML file `simulate` was given, bounded in size and nesting.
pub fn read_yaml(file: &str) -> Result<String, SimError> {
    let text = read(file, MAX_YAML_BYTES)?;
    if text::flow_nesting_exceeds(&text, MAX_FLOW_NESTING) {
        let name = if file == "-" { "standard input" } else { file };
        return Err(input(format!(
            "{name} nests '[' and '{{' more than {MAX_FLOW_NESTING} deep; no manifest needs that"
        )));
    }
    Ok(text)
}

/// Reads a file `simulate` was given (`-` is standard input), refusing one over `max` bytes
/// ([`MAX_CSV_BYTES`], [`MAX_YAML_BYTES`]) without reading past that.
pub fn read(file: &str, max: u64) -> Result<String, SimError> {
    use std::io::Read;
    let mut bytes = Vec::new();
    let read = if file == "-" {
        std::io::stdin().take(max + 1).read_to_end(&mut bytes)
    } else {
        std::fs::File::open(file).and_then(|f| f.take(max + 1).read_to_end(&mut bytes))
    };
    let name = if file == "-" { "standard input" } else { file };
    read.map_err(|e| input(format!("cannot read {name}: {e}")))?;
    if bytes.len() as u64 > max {
        return Err(input(format!(
            "{name} is larger than {} MiB, the most simulate reads from a file of its kind",
            max >> 20
        )));
    }
    String::from_utf8(bytes).map_err(|_| input(format!("{name} is not UTF-8 text")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(r: Result<(), SimError>) -> String {
        r.err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn each_bound_is_inclusive_and_its_message_names_the_flag_and_the_bound() {
        assert!(duration("31d", MAX_SECONDS).is_ok());
        assert!(duration("1m", 60.0).is_ok());
        for s in [59.0, MAX_SECONDS + 1.0, f64::NAN, f64::INFINITY] {
            assert!(
                message(duration("x", s)).contains("between 1m and 31d"),
                "{s}"
            );
        }
        // 5,000,000 requests exactly, then one more second of them.
        assert!(arrivals("constant:rate=5", 5.0, 1_000_000.0).is_ok());
        let e = message(arrivals("constant:rate=5", 5.0, 1_000_001.0));
        assert!(
            e.contains("--load 'constant:rate=5'") && e.contains("5000000 requests"),
            "{e}"
        );
        assert!(syncs(MAX_SECONDS, 15.0, "15s").is_ok());
        let e = message(syncs(MAX_SECONDS, 1.0, "1s"));
        assert!(
            e.contains("--hpa-sync-period 1s is 2678400 HPA syncs") && e.contains("200000"),
            "{e}"
        );
        assert!(replicas(1000, "x").is_ok());
        let e = message(replicas(1001, "scaling.io"));
        assert!(
            e.contains("max replicas 1001 (the ScaledObject's maxReplicaCount)")
                && e.contains("set scaling.io/max-replicas to at most 1000"),
            "{e}"
        );
    }

    #[test]
    fn an_oversized_file_is_refused_without_reading_it_whole() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("big.csv");
        let name = path.display().to_string();
        std::fs::write(&path, vec![b'1'; (3 << 20) + 1]).unwrap_or_else(|e| panic!("{e}"));
        let e = read(&name, 3 << 20)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(
            e,
            format!("{name} is larger than 3 MiB, the most simulate reads from a file of its kind")
        );
        std::fs::write(&path, vec![b'1'; 3 << 20]).unwrap_or_else(|e| panic!("{e}"));
        assert!(read(&name, 3 << 20).is_ok());
    }
}
