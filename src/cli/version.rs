//! `version`: the build facts, which come from build.rs.

use clap::ValueEnum;

#[derive(Clone, Copy, ValueEnum)]
pub enum VersionFormat {
    Text,
    Json,
}

pub fn text(format: VersionFormat) -> String {
    let facts = [
        ("version", env!("CARGO_PKG_VERSION")),
        ("commit", env!("KKW_GIT_COMMIT")),
        ("buildDate", env!("KKW_BUILD_DATE")),
        ("rustcVersion", env!("KKW_RUSTC_VERSION")),
    ];
    match format {
        VersionFormat::Json => {
            let map: serde_json::Map<String, serde_json::Value> = facts
                .iter()
                .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
                .collect();
            format!("{}\n", serde_json::Value::Object(map))
        }
        VersionFormat::Text => {
            let [(_, version), (_, commit), (_, date), (_, rustc)] = facts;
            format!(
                "kserve-keda-webhook {version}\ncommit: {commit}\nbuilt: {date}\nrustc: {rustc}\n"
            )
        }
    }
}
