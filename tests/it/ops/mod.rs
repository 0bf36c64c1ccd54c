//! Integration tests: ops.

mod chaos;
mod crash;
mod snapshot;
