//! Integration tests of the running daemon: the admin API, reload, shutdown, chaos,
//! crashes, reconnect snapshots, storage faults, and event rules end to end.

pub(crate) mod chaos;
mod cluster_lease;
mod crash;
mod crash_escalation;
mod events;
mod history;
mod muting;
mod postgres;
mod reload;
pub(crate) mod server;
mod server_access;
mod server_ack;
mod server_limits;
mod server_openapi;
mod server_retry;
mod server_roles;
mod server_silences;
mod shutdown;
mod snapshot;
mod storage;
mod support;
