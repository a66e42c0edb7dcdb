//! Turns an annotated KServe InferenceService into a KEDA ScaledObject and a Prometheus
//! monitor, as a mutating admission webhook, a controller and an offline renderer.

pub mod admission;
pub mod certs;
pub mod isvc;
pub mod metrics;
pub mod names;
pub mod patch;
pub mod plan;
pub mod policy;
pub mod process;
pub mod reconcile;
pub mod reload;
pub mod render;
pub mod resources;
pub mod scaling;
pub mod serve;
pub mod server;
pub mod settings;
pub mod simulate;
pub mod spec;
pub mod strategy;
pub mod tls;
