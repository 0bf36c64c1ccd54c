//! Integration tests: ops.

mod chaos;
mod crash;
