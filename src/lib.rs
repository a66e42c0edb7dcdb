//! Turns an annotated KServe InferenceService into a KEDA ScaledObject and a Prometheus
//! monitor, as a mutating admission webhook, a controller and an offline renderer.
//!
//! The modules are layers; each imports only from the layers below it (ARCHITECTURE.md):
//!
//! - shells: [`admission`], [`render`], [`controller`], [`server`], [`tls`], [`simulate`]
//! - [`scaling`]: the one planner every shell calls (settings, policy in force, namespace
//!   labels)
//! - [`policy`]: the platform policy file and the decision it drives
//! - [`core`]: the pure planning model (no I/O, no clock)
//! - [`metrics`], [`reload`] and [`logging`]: the Prometheus registry, the file watcher and the
//!   log setup, shared by the shells

pub mod core;
pub mod policy;
pub mod scaling;

pub mod admission;
pub mod controller;
pub mod render;
pub mod server;
pub mod simulate;
pub mod tls;

pub mod logging;
pub mod metrics;
pub mod reload;
