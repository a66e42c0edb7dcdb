//! `simulate`: replays a load through the scaling loop the generated objects create (KEDA,
//! the HPA controller, Prometheus scrapes and queries, a continuous-batching model server),
//! so strategies and targets can be compared without GPUs.

pub mod duration;
pub mod hpa;
pub mod load;
pub mod profile;
pub mod prom;
pub mod rng;
pub mod server;
