//! Integration tests: ops.

mod chaos;
