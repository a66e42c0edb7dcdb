//! The pure planning model: everything the product decides, with no I/O, no clock and no
//! randomness, so the webhook, the controller and `render` can never disagree.
//!
//! Imports inside the core run one way: `text` <- `names` <- `strategy` <- `spec`,
//! `settings` <- `isvc` <- `plan`; `query_scope` (on `text`) <- `plan`; `resources` and `patch`
//! are leaf data types, and `query_limits` (the bounds `spec` checks before a query reaches
//! the PromQL parser) imports nothing.

pub mod alerts;
pub mod isvc;
pub mod names;
pub mod patch;
pub mod plan;
pub mod query_limits;
pub mod query_scope;
pub mod resources;
pub mod settings;
pub mod spec;
pub mod strategy;
pub mod text;
