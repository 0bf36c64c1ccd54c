//! Rule unit tests (`navixy-alerts test`), like `promtool test rules`: a YAML file names
//! rule files, gives each tracker a timed series of inputs, and lists the transitions
//! expected. The series runs through the real cache and evaluator on an event-time
//! clock; the report shows PASS/FAIL per test and, for a failure, a diff of transitions.

pub mod file;
pub mod run;

pub use run::{Summary, run_file, run_files};
