//! Turns an annotated KServe InferenceService into a KEDA ScaledObject and a Prometheus
//! monitor, as a mutating admission webhook, a controller and an offline renderer.

pub mod isvc;
pub mod names;
pub mod plan;
pub mod resources;
pub mod settings;
pub mod spec;
pub mod strategy;
pub mod metrics;
pub mod reconcile;
