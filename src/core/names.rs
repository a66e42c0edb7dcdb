//! Names of the objects KServe creates and of the ones we generate.

use sha2::{Digest, Sha256};

/// The field manager of every write, so server-side apply attributes all generated fields
/// to this product.
pub const FIELD_MANAGER: &str = "kserve-keda-webhook";

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

/// The `app` label KServe puts on a raw predictor's pods and on its Deployment and Service
/// selectors (`constants.GetRawServiceLabel`): a label value, so at most 63 characters.
pub fn app_label(deployment: &str) -> String {
    format!("isvc.{deployment}")
}

/// The first DNS label of the predictor's host under KServe's default `domainTemplate`,
/// `{{ .Name }}-{{ .Namespace }}.{{ .IngressDomain }}`, which KServe renders for a raw
/// predictor before it creates anything and refuses when a label is over 63 characters.
pub fn default_host_label(deployment: &str, namespace: &str) -> String {
    format!("{deployment}-{namespace}")
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

/// Longest DNS-1123 label (namespaces, label values, Service names).
pub const LABEL_MAX: usize = 63;
/// Longest DNS-1123 subdomain (most object names, annotation-key prefixes).
pub const SUBDOMAIN_MAX: usize = 253;

/// Lowercase letters, digits and `-`, starting and ending with a letter or digit, at most 63
/// characters: namespaces and the label part of every DNS name.
pub fn dns1123_label(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > LABEL_MAX || !label_chars(s) {
        return Err(format!(
            "'{}' is not a DNS-1123 label: use 1 to {LABEL_MAX} lowercase letters, digits or '-', starting and ending with a letter or digit",
            crate::core::text::clip(s)
        ));
    }
    Ok(())
}

/// DNS-1123 labels joined by `.`, at most 253 characters: object names such as a
/// TriggerAuthentication's, and the prefix of annotation and label keys.
pub fn dns1123_subdomain(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > SUBDOMAIN_MAX || !s.split('.').all(label_chars) {
        return Err(format!(
            "'{}' is not a DNS-1123 subdomain: use 1 to {SUBDOMAIN_MAX} characters of lowercase letters, digits, '-' and '.', each dot-separated part starting and ending with a letter or digit",
            crate::core::text::clip(s)
        ));
    }
    Ok(())
}

/// What KServe accepts for an InferenceService name and `spec.predictor.name`: a DNS-1035
/// label (starts with a letter). KServe itself sets no length; `max` is the one that the
/// names built from it impose.
pub fn kserve_name(s: &str, max: usize) -> Result<(), String> {
    let starts_with_letter = s.bytes().next().is_some_and(|b| b.is_ascii_lowercase());
    if s.is_empty() || s.len() > max || !starts_with_letter || !label_chars(s) {
        return Err(format!(
            "'{}' is not allowed: use 1 to {max} lowercase letters, digits or '-', starting with a letter and ending with a letter or digit",
            crate::core::text::clip(s)
        ));
    }
    Ok(())
}

/// A label (or annotation) key: an optional DNS-1123 subdomain prefix and `/`, then a name
/// of 1 to 63 letters, digits, `-`, `_` or `.`, starting and ending with a letter or digit.
pub fn label_key(s: &str) -> Result<(), String> {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    if let Some(p) = prefix {
        dns1123_subdomain(p)
            .map_err(|e| format!("the prefix of key '{}': {e}", crate::core::text::clip(s)))?;
    }
    if !qualified_name(name) {
        return Err(format!(
            "'{}' is not a label key: after an optional DNS-subdomain prefix and '/', use 1 to {LABEL_MAX} letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
            crate::core::text::clip(s)
        ));
    }
    Ok(())
}

/// A label value: empty, or 1 to 63 letters, digits, `-`, `_` or `.`, starting and ending
/// with a letter or digit.
pub fn label_value(s: &str) -> Result<(), String> {
    if !s.is_empty() && !qualified_name(s) {
        return Err(format!(
            "'{}' is not a label value: use at most {LABEL_MAX} letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
            crate::core::text::clip(s)
        ));
    }
    Ok(())
}

fn label_chars(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= LABEL_MAX
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

fn qualified_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= LABEL_MAX
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names_follow_kubernetes() {
        for ok in ["a", "0", "a-b", "a1", &"a".repeat(63)] {
            assert!(dns1123_label(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", "a b", &"a".repeat(64)] {
            assert!(dns1123_label(bad).is_err(), "{bad}");
        }
        let long = [&"a".repeat(63)[..]; 4].join(".");
        assert_eq!(long.len(), 255);
        for ok in ["scaling.io", "a", "a-b.c", &long[..253]] {
            assert!(dns1123_subdomain(ok.trim_end_matches('.')).is_ok(), "{ok}");
        }
        for bad in ["Scaling.IO", "scaling_io", "a..b", ".a", "a.", "", &long] {
            assert!(dns1123_subdomain(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn kserve_names_start_with_a_letter() {
        assert!(kserve_name("qwen-2", 63).is_ok());
        for bad in [
            "2qwen",
            "qwen-",
            "Qwen",
            "a|b",
            "a+",
            "x\"}) or vector(100) #",
            "",
        ] {
            let e = kserve_name(bad, 63).unwrap_err();
            assert!(e.contains("starting with a letter"), "{e}");
        }
        assert!(kserve_name(&"a".repeat(10), 9).is_err());
    }

    #[test]
    fn label_keys_and_values() {
        for ok in ["release", "app.kubernetes.io/name", "a_b.c-D"] {
            assert!(label_key(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/a", "Bad.Prefix/a", "a/", "a b", "-a", &"a".repeat(64)] {
            assert!(label_key(bad).is_err(), "{bad}");
        }
        for ok in ["", "prometheus", "A_b.9"] {
            assert!(label_value(ok).is_ok(), "{ok}");
        }
        for bad in ["a b", "-a", "a\"b", &"a".repeat(64)] {
            assert!(label_value(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn deployment_names_follow_kserve() {
        assert_eq!(predictor_deployment("qwen", None), "qwen-predictor");
        assert_eq!(
            predictor_deployment("qwen", Some("main")),
            "qwen-main-predictor"
        );
        assert_eq!(app_label("qwen-predictor"), "isvc.qwen-predictor");
        assert_eq!(
            default_host_label("qwen-predictor", "llm"),
            "qwen-predictor-llm"
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
