//! Rules: rule files, the shared sandboxed Rhai engine and its helpers, evaluation per
//! tracker, the alert state machine, and `test` for rule unit tests.
//!
//! Reads the state cache; never touches the network or the store. Its output is
//! [`alert::AlertTransition`] values for the dispatcher.

pub mod alert;
