//! Rules: rule files, the shared sandboxed Rhai engine and its helpers, evaluation per
//! tracker, the alert state machine, and `test` for rule unit tests.
//!
//! Reads the state cache; never touches the network or the store. Its output is
//! [`AlertTransition`](crate::alert::AlertTransition) values for the dispatcher.
//!
//! - [`file`]: the YAML format; [`load`]: globs, parsing, checks, compilation, reporting
//!   every problem with its file, line, rule and field; [`set`]: the loaded [`RuleSet`].
//! - [`script`]: the Rhai engine, the context conditions read, the helpers.
//! - [`eval`]: the per-shard [`Evaluator`] and its live alerts; [`machine`]: the state
//!   machine; [`render`]: what a transition carries; [`faults`]: errors per rule.
//! - [`schedule`], [`zones`]: weekly windows and geofences; [`around`]: Navixy's context
//!   and the fleet's positions (`nearby`, `distance_to`).
//! - [`testing`]: `navixy-alerts test`; [`format`]: one line per transition;
//!   [`suggest`]: "did you mean" in messages.

pub mod around;
pub mod error;
pub mod eval;
pub mod faults;
pub mod file;
pub mod format;
pub mod load;
pub(crate) mod machine;
pub mod playground;
pub(crate) mod render;
pub mod schedule;
pub(crate) mod script;
pub mod set;
pub mod suggest;
pub mod testing;
pub mod zones;

#[cfg(test)]
mod event_tests;
#[cfg(test)]
mod tests;

pub use error::{Place, RuleError};
pub use eval::{Evaluator, Restored, RuleStats, evaluator_factory};
pub use file::RuleMode;
pub use format::format_transition;
pub use load::LoadOptions;
pub use set::{Rule, RuleSet, RuleSummary};
