//! The command line: flags turned into checked settings, one file per command. Only the
//! binary uses it; `anyhow` stays here.

pub mod cluster;
pub mod input;
pub mod planning;
pub mod policy;
pub mod render;
pub mod serve;
pub mod version;
