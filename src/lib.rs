//! navixy-alerts: watches a Navixy fleet in real time and tells people when something
//! needs attention.
//!
//! # Data flow
//! ```text
//! source ──frames──> decode ──updates──> state cache ──> rule evaluator ──transitions──> dispatcher ──> channels
//! ```
//! - [`source`]: where frames come from: the live Navixy WebSocket (via [`navixy`]), the
//!   built-in simulator, or a recording (`replay`). Each frame carries its arrival time.
//! - [`navixy`]: the protocol: frame types and the tolerant decoder, time formats, the
//!   WebSocket and REST clients, and a Navixy-compatible simulator.
//! - [`engine`]: maps frames to per-tracker [`state::Update`]s and routes each to the shard
//!   of its tracker id. A shard is owned by one worker thread: its part of the cache and
//!   its alert states need no locks. A ticker re-evaluates silent trackers.
//! - [`geofence`]: zones as geometry (circle, polygon, sausage) and the spatial index
//!   that tells which zones hold a position.
//! - [`state`]: the per-tracker cache: merged latest state, previous state, readings
//!   merged from deltas, lifecycle, bounded history windows.
//! - [`rules`]: rule files, one sandboxed Rhai engine with compiled conditions, the alert
//!   state machine (inactive → pending → firing → resolved), and rule unit tests.
//! - [`alert`]: the alert contract: fingerprint, severity, status, the transition and
//!   the persisted records. Made by [`rules`] and the source's engine alerts; moved by
//!   [`engine`], [`dispatch`] and [`store`].
//! - [`dispatch`]: routes, grouping, dedup, flap damping, silences, and a durable outbox
//!   in front of each channel (webhook, Slack, email, Alertmanager, stdout).
//! - [`store`]: SQLite (WAL): alert states, the outbox, the notification log, silences.
//! - [`cluster`]: several instances on one PostgreSQL database: the lease by which one
//!   instance at a time runs each source, and the fence that refuses a deposed one's writes.
//! - [`server`]: the admin HTTP API and Prometheus metrics.
//! - [`console`]: the web pages for the operations desk, served by [`server`] at `/`.
//! - [`config`]: the config file; [`cli`] and [`commands`]: what `main` runs.
//!
//! - [`backoff`], [`text`], [`rfc3339`]: retry delays, text truncation and times as text,
//!   shared.
//! - [`time_intervals`]: named time intervals (Alertmanager's syntax) for routes' mutes
//!   and rules' schedules.
//!
//! Time comes from a [`clock`] so that tests and `replay` run on event time.
//!
//! Modules depend on each other without cycles (`tests/it/foundation/architecture.rs`
//! checks it); `docs/architecture.md` draws the graph.

pub mod alert;
pub mod backoff;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod console;
pub mod daemon;
pub mod dispatch;
pub mod engine;
pub mod geofence;
pub mod navixy;
pub mod rfc3339;
pub mod rules;
pub mod server;
pub mod source;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod text;
pub mod time_intervals;
