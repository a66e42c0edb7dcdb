//! Platform policy: cluster defaults, limits, per-namespace rules with an enforcement mode,
//! required autoscaling, and exemptions. Parsing and checking are pure; `enforce` wraps the
//! planner so render, admission and the controller apply the same policy.
//!
//! Precedence, strongest first (README, "Platform policy"):
//! 1. limits (cluster and every matching rule; the tightest applies), enforced per their mode;
//! 2. the user's annotations;
//! 3. defaults of the matching rules (a later rule in the file overrides an earlier one);
//! 4. cluster defaults (`defaults`);
//! 5. built-in defaults.

mod enforce;
mod file;
mod overlap;
pub mod source;

pub use enforce::{Effective, Requester, Scoped, WARN_PREFIX, enforce, selects};
pub use file::{
    Defaults, Enforcement, Exemptions, Limits, Policy, PolicyError, QueryNamespace, RequireAction,
    RequireStrategy, RequireWhen, Rule, TriggerAuthentication, parse, parse_bytes,
};

#[cfg(test)]
mod tests;

#[cfg(test)]
mod credential_tests;

#[cfg(test)]
mod hostile_tests;
