//! The integration suite: one binary, a module per area, real parts on loopback.

mod cluster;
mod console;
mod dispatch;
mod foundation;
mod ops;
mod rules;
mod source;
pub mod system;
