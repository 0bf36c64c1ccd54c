//! Bounded history windows of numeric values (every metering sensor, speed), sized by the
//! longest window any rule uses. Rule helpers (`delta`, `fuel_drop`, `min_over`, ...) read
//! them.

/// Per value name, a time-ordered series of (epoch ms, value).
#[derive(Debug, Clone, Default)]
pub struct History {}
