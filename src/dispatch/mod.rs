//! From alert transitions to notifications: routes, grouping, dedup (`repeat_interval`),
//! flap damping, silences, and a durable outbox in front of each channel. One file per
//! channel in `channels/`.
