//! `simulate`: replays a load through the scaling loop the generated objects create (KEDA,
//! the HPA controller, Prometheus scrapes and queries, a continuous-batching model server),
//! so strategies and targets can be compared without GPUs.

pub mod cli;
pub mod engine;
pub mod hpa;
pub mod limits;
pub mod load;
pub mod profile;
pub mod prom;
pub mod replay;
pub mod report;
pub mod rng;
pub mod scenario;
pub mod server;

/// Why a simulation cannot run.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A flag, file or value is unusable (exit code 2).
    #[error("{0}")]
    Input(String),
    /// The InferenceService cannot be planned or simulated as it is (exit code 1).
    #[error("{0}")]
    Plan(String),
}

impl SimError {
    pub fn exit_code(&self) -> u8 {
        match self {
            SimError::Input(_) => 2,
            SimError::Plan(_) => 1,
        }
    }
}
