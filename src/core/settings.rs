//! Cluster-wide defaults the planner falls back to when an annotation is absent.
//!
//! These are the knobs a platform team sets, by flags and by the policy file's defaults (the
//! policy resolves a `Settings` per namespace). Keeping them in one plain struct is what lets
//! `plan` stay a pure function of (InferenceService, Settings).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::core::spec::MonitorKind;
use crate::core::strategy::Strategy;

/// The raw-mode value written into `serving.kserve.io/deploymentMode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(try_from = "String")]
pub enum RawMode {
    /// Accepted by every KServe >= 0.11 (0.16+ normalises it to `Standard`).
    #[default]
    RawDeployment,
    /// The name KServe >= 0.16 uses; older releases reject it.
    Standard,
}

impl RawMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RawMode::RawDeployment => "RawDeployment",
            RawMode::Standard => "Standard",
        }
    }
}

impl fmt::Display for RawMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for RawMode {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl FromStr for RawMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "RawDeployment" => Ok(RawMode::RawDeployment),
            "Standard" => Ok(RawMode::Standard),
            other => Err(format!(
                "raw mode '{}' is not allowed; use RawDeployment or Standard",
                crate::core::text::clip(other)
            )),
        }
    }
}

/// Kind of the KEDA object holding Prometheus credentials, spelled as KEDA spells it (in the
/// policy file and on the command line).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
pub enum TriggerAuthKind {
    TriggerAuthentication,
    ClusterTriggerAuthentication,
}

impl TriggerAuthKind {
    pub const ALL: [TriggerAuthKind; 2] = [
        TriggerAuthKind::TriggerAuthentication,
        TriggerAuthKind::ClusterTriggerAuthentication,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TriggerAuthKind::TriggerAuthentication => "TriggerAuthentication",
            TriggerAuthKind::ClusterTriggerAuthentication => "ClusterTriggerAuthentication",
        }
    }
}

impl FromStr for TriggerAuthKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TriggerAuthKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "'{}' is not a trigger authentication kind; allowed: TriggerAuthentication, ClusterTriggerAuthentication",
                    crate::core::text::clip(s)
                )
            })
    }
}

/// Reference to a KEDA (Cluster)TriggerAuthentication holding Prometheus credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthRef {
    /// `TriggerAuthentication` or `ClusterTriggerAuthentication`.
    pub kind: String,
    pub name: String,
    /// KEDA `authModes` for the Prometheus scaler: bearer, basic, tls, custom or oauth.
    pub modes: String,
}

/// The `authModes` KEDA's Prometheus scaler accepts (its authentication config's enum).
pub const AUTH_MODES: [&str; 6] = ["apiKey", "basic", "tls", "bearer", "custom", "oauth"];

/// Checks a comma list of KEDA `authModes` as KEDA parses it: known modes only, each once,
/// and at most one of `bearer`, `basic` and `oauth`, which KEDA treats as exclusive. A bad
/// list would otherwise reach the ScaledObject and fail only when KEDA first queries.
pub fn check_auth_modes(modes: &str) -> Result<(), String> {
    let shown = crate::core::text::clip(modes);
    let list: Vec<&str> = modes.split(',').map(str::trim).collect();
    if list.iter().any(|m| m.is_empty()) {
        return Err(format!(
            "'{shown}' has an empty mode; use a comma list of {}",
            AUTH_MODES.join(", ")
        ));
    }
    for (i, m) in list.iter().enumerate() {
        if !AUTH_MODES.contains(m) {
            return Err(format!(
                "'{}' is not a KEDA authMode; allowed: {}",
                crate::core::text::clip(m),
                AUTH_MODES.join(", ")
            ));
        }
        if list[..i].contains(m) {
            return Err(format!("'{shown}' names '{m}' twice"));
        }
    }
    let exclusive = list
        .iter()
        .filter(|m| ["bearer", "basic", "oauth"].contains(m))
        .count();
    if exclusive > 1 {
        return Err(format!(
            "'{shown}' combines modes KEDA allows only one of: bearer, basic, oauth"
        ));
    }
    Ok(())
}

#[derive(Clone, Debug)]
pub struct Settings {
    /// Annotation prefix without the trailing slash, e.g. `scaling.io`.
    pub prefix: String,
    pub raw_mode: RawMode,
    pub prometheus_address: String,
    pub trigger_auth: Option<AuthRef>,
    pub monitor: MonitorKind,
    /// Extra labels on generated monitors (kube-prometheus-stack selects on `release`).
    pub monitor_labels: BTreeMap<String, String>,
    pub metrics_port: u16,
    pub metrics_path: String,
    /// Generate a PrometheusRule beside each monitor.
    pub alerts: bool,
    pub window: String,
    pub polling_interval: u32,
    pub cooldown_period: u32,
    pub min_replicas: u32,
    pub max_replicas: u32,
    /// Per-replica targets used when the user gives none.
    pub targets: BTreeMap<Strategy, f64>,
    /// Addresses besides `prometheus_address` that may receive `trigger_auth`: the policy's
    /// `allowedPrometheusAddresses` in force for the namespace (empty: the default alone).
    pub credential_addresses: Vec<String>,
    /// Whether a `custom` query must read only its own namespace to carry `trigger_auth`.
    pub scoped_custom_queries: bool,
    /// What happens to a trigger that may not carry `trigger_auth`.
    pub credential_refusal: CredentialRefusal,
}

/// What happens when a trigger would carry the shared credential where the platform did not
/// allow it (another address, or a `custom` query outside its namespace).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CredentialRefusal {
    /// Refuse the InferenceService.
    #[default]
    Deny,
    /// Generate the trigger without the credential, and say so in a warning (a policy in
    /// `warn` or `audit` mode admits the object, but never lets the credential go).
    Withhold,
}

/// The form two Prometheus addresses are compared in: scheme and host in lower case, the
/// port always written (80 and 443 when left out), trailing `/` dropped. `None` for anything
/// that is not plainly `http(s)://host[:port][/path]` (credentials, `%`-escapes, `.`/`..`
/// segments, a query, a fragment, spaces), so a spelling that could mean two things never
/// compares equal to anything.
pub fn canonical_address(address: &str) -> Option<String> {
    let (scheme, rest) = address.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (h, after) = v6.split_once(']')?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':')?),
            };
            if h.is_empty() || !h.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
                return None;
            }
            (format!("[{}]", h.to_ascii_lowercase()), port)
        }
        None => {
            let (h, port) = match authority.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            };
            if h.is_empty()
                || !h
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
            {
                return None;
            }
            (h.to_ascii_lowercase(), port)
        }
    };
    let port = match port {
        None => default_port,
        Some(p) if !p.is_empty() && p.len() <= 5 && p.chars().all(|c| c.is_ascii_digit()) => {
            p.parse::<u16>().ok().filter(|n| *n > 0)?
        }
        Some(_) => return None,
    };
    let path = path.trim_end_matches('/');
    let path_ok = path.split('/').skip(1).all(|seg| {
        !seg.is_empty()
            && seg != "."
            && seg != ".."
            && seg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~'))
    });
    if !path_ok {
        return None;
    }
    Some(format!("{scheme}://{host}:{port}{path}"))
}

/// Whether two addresses name the same Prometheus (see [`canonical_address`]).
pub fn same_address(a: &str, b: &str) -> bool {
    match (canonical_address(a), canonical_address(b)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// Where Prometheus lives when neither the user nor the platform says otherwise: the
/// governing Service prometheus-operator creates for a Prometheus in `monitoring`, which is
/// where kube-prometheus-stack is usually installed.
pub const DEFAULT_PROMETHEUS_ADDRESS: &str = "http://prometheus-operated.monitoring.svc:9090";

impl Default for Settings {
    fn default() -> Self {
        Settings {
            prefix: "scaling.io".to_string(),
            raw_mode: RawMode::default(),
            prometheus_address: DEFAULT_PROMETHEUS_ADDRESS.to_string(),
            trigger_auth: None,
            monitor: MonitorKind::default(),
            monitor_labels: BTreeMap::new(),
            metrics_port: 8080,
            metrics_path: "/metrics".to_string(),
            alerts: true,
            window: "1m".to_string(),
            polling_interval: 30,
            cooldown_period: 300,
            min_replicas: 1,
            max_replicas: 4,
            targets: Strategy::ALL
                .iter()
                .filter_map(|s| s.default_target().map(|t| (*s, t)))
                .collect(),
            credential_addresses: Vec::new(),
            scoped_custom_queries: true,
            credential_refusal: CredentialRefusal::Deny,
        }
    }
}

impl Settings {
    pub fn default_target(&self, strategy: Strategy) -> Option<f64> {
        self.targets
            .get(&strategy)
            .copied()
            .or_else(|| strategy.default_target())
    }

    /// Whether `trigger_auth` may be sent to `address`: the default address in force, or
    /// one the policy allows.
    pub fn credential_may_go_to(&self, address: &str) -> bool {
        std::iter::once(&self.prometheus_address)
            .chain(&self.credential_addresses)
            .any(|allowed| same_address(allowed, address))
    }
}

#[cfg(test)]
mod address_tests {
    use super::*;

    #[test]
    fn addresses_compare_after_normalising_and_lookalikes_never_match() {
        let base = "http://prometheus-operated.monitoring.svc:9090";
        for same in [
            "HTTP://Prometheus-Operated.Monitoring.SVC:9090",
            "http://prometheus-operated.monitoring.svc:09090",
            "http://prometheus-operated.monitoring.svc:9090/",
        ] {
            assert!(same_address(base, same), "{same}");
        }
        assert!(same_address("http://prom", "HTTP://Prom:80"));
        assert!(same_address("https://prom", "https://prom:443"));
        // IPv6 spellings are not unified: two spellings of one address are simply refused.
        assert!(!same_address("http://[::1]:9090", "http://[0::1]:9090"));
        assert!(same_address("http://[FE80::1]", "http://[fe80::1]:80"));
        for other in [
            "http://prometheus-operated.monitoring.svc:9091",
            "https://prometheus-operated.monitoring.svc:9090",
            "http://prometheus-operated.monitoring.svc.:9090",
            "http://prometheus-operated.monitoring.svc.evil.com:9090",
            "http://prometheus-operated.monitoring.svc@evil.com:9090",
            "http://evil.com@prometheus-operated.monitoring.svc:9090",
            "http://prometheus-operated.monitoring.svc:9090/x",
            "http://prometheus-operated.monitoring.svc:9090/%2e",
            "http://prometheus-operated.monitoring.svc:9090/..",
            "http://prometheus-operated.monitoring.svc:9090?x=1",
            "http://prometheus-operated.monitoring.svc:9090#x",
            "http://prometheus-operated.monitoring.svc:+9090",
            "http://prometheus-operated.monitoring.svc:9090:9090",
            "http://pr\u{43e}metheus-operated.monitoring.svc:9090",
            "http://prometheus-operated.monitoring.svc:9090\n",
            "ftp://prometheus-operated.monitoring.svc:9090",
            "//prometheus-operated.monitoring.svc:9090",
            "prometheus-operated.monitoring.svc:9090",
            "",
        ] {
            assert!(!same_address(base, other), "{other:?}");
        }
        // Nothing unreadable equals itself either.
        assert!(!same_address("http://a@b", "http://a@b"));
        assert_eq!(canonical_address("http://p:65536"), None);
        assert_eq!(canonical_address("http://p:0"), None);
    }

    #[test]
    fn the_credential_goes_to_the_default_or_an_allowed_address_only() {
        let mut s = Settings::default();
        assert!(s.credential_may_go_to("HTTP://prometheus-operated.monitoring.svc:9090/"));
        assert!(!s.credential_may_go_to("http://anyhost"));
        s.credential_addresses = vec!["http://thanos.monitoring.svc:10902".into()];
        assert!(s.credential_may_go_to("http://Thanos.monitoring.svc:10902"));
        assert!(!s.credential_may_go_to("http://thanos.monitoring.svc:10903"));
    }
}

#[cfg(test)]
mod auth_mode_tests {
    use super::check_auth_modes;

    #[test]
    fn auth_modes_follow_kedas_enum_and_exclusive_set() {
        for ok in [
            "bearer",
            "tls",
            "bearer,tls",
            "basic, custom",
            "apiKey",
            "oauth,tls",
        ] {
            assert_eq!(check_auth_modes(ok), Ok(()), "{ok}");
        }
        for (bad, says) in [
            ("Bearer", "not a KEDA authMode"),
            ("bearer,", "empty mode"),
            ("", "empty mode"),
            ("tls,tls", "twice"),
            ("bearer,basic", "only one of"),
            ("oauth,bearer", "only one of"),
            ("x\ny", "x\\ny"),
        ] {
            let err = check_auth_modes(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
