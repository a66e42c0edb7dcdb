//! Names of the objects KServe creates and of the ones we generate.

use sha2::{Digest, Sha256};

/// KEDA names the HPA it creates `keda-hpa-<scaledobject>`, and that must fit in 63 characters.
pub const SCALED_OBJECT_MAX: usize = 54;
/// Monitor names end up in Prometheus job names and label values, which stay within 63.
pub const MONITOR_MAX: usize = 63;

/// The predictor Deployment of an InferenceService in raw/Standard mode (KServe >= 0.11; a
/// named predictor, KServe 0.20, adds its name). The reconciler prefers the live Deployment.
pub fn predictor_deployment(isvc: &str, predictor_name: Option<&str>) -> String {
    match predictor_name {
        Some(p) => format!("{isvc}-{p}-predictor"),
        None => format!("{isvc}-predictor"),
    }
}

/// `name` itself when short enough; otherwise a prefix of it and 8 hex digits of its SHA-256,
/// so long names stay unique and the same input always gives the same output.
pub fn fit(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_string();
    }
    let digest = Sha256::digest(name.as_bytes());
    let hash: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    let keep = max - hash.len() - 1;
    // Names are ASCII (DNS labels), but cut on a char boundary anyway.
    let mut cut = keep;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    let stem = name[..cut].trim_end_matches(['-', '.']);
    format!("{stem}-{hash}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_names_follow_kserve() {
        assert_eq!(predictor_deployment("qwen", None), "qwen-predictor");
        assert_eq!(
            predictor_deployment("qwen", Some("main")),
            "qwen-main-predictor"
        );
    }

    #[test]
    fn short_names_are_kept() {
        let n = "a".repeat(54);
        assert_eq!(fit(&n, SCALED_OBJECT_MAX), n);
    }

    #[test]
    fn long_names_are_cut_with_a_stable_distinct_hash() {
        let a = format!("{}-predictor", "a".repeat(60));
        let b = format!("{}-predictor", "a".repeat(61));
        let fa = fit(&a, SCALED_OBJECT_MAX);
        assert_eq!(fa.len(), SCALED_OBJECT_MAX);
        assert_eq!(fa, fit(&a, SCALED_OBJECT_MAX));
        assert_ne!(fa, fit(&b, SCALED_OBJECT_MAX));
        assert!(fa.starts_with("aaaa"));
    }

    /// Literal names, computed outside this code (`printf %s NAME | sha256sum`): a change to
    /// the scheme would rename every generated object on upgrade, and the controller would
    /// delete and recreate them all.
    #[test]
    fn generated_names_are_pinned() {
        let b = |n: usize| "b".repeat(n);
        // At the limit: kept as is.
        let at = format!("{}-predictor", b(44));
        assert_eq!(fit(&at, SCALED_OBJECT_MAX), at);
        // One over: 45 characters of the name, a dash, 8 hex digits of its SHA-256.
        assert_eq!(
            fit(&format!("{}-predictor", b(45)), SCALED_OBJECT_MAX),
            format!("{}-ba859d91", b(45))
        );
        assert_eq!(
            fit(&format!("{}-predictor", "a".repeat(60)), SCALED_OBJECT_MAX),
            format!("{}-5376fc15", "a".repeat(45))
        );
        // The cut ends on a dash, which goes before the hash is added.
        let long = "llama-3-1-70b-instruct-with-a-very-long-team-prefix-predictor";
        assert_eq!(
            fit(long, SCALED_OBJECT_MAX),
            "llama-3-1-70b-instruct-with-a-very-long-team-f9fa9767"
        );
        // Monitors allow 63: the same name is kept.
        assert_eq!(fit(long, MONITOR_MAX), long);
        assert_eq!(
            fit("qwen25-05b-predictor", SCALED_OBJECT_MAX),
            "qwen25-05b-predictor"
        );
        assert_eq!(SCALED_OBJECT_MAX, 54);
        assert_eq!(MONITOR_MAX, 63);
    }

    #[test]
    fn a_cut_never_leaves_a_double_dash() {
        // The cut lands right after a '-', which is trimmed before the hash is appended.
        let name = format!("{}-{}", "a".repeat(44), "b".repeat(30));
        let f = fit(&name, SCALED_OBJECT_MAX);
        assert!(!f.contains("--"), "{f}");
        assert!(f.len() <= SCALED_OBJECT_MAX);
    }
}
