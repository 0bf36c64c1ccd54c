//! Integration tests: dispatch.
