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
                "raw mode '{other}' is not allowed; use RawDeployment or Standard"
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
