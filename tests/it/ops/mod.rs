//! Integration tests: ops.

mod reload;
mod server;
mod shutdown;
