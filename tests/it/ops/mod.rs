//! Integration tests of the running daemon: the admin API, reload, shutdown, chaos,
//! crashes, reconnect snapshots and storage faults.

mod chaos;
mod crash;
mod reload;
pub(crate) mod server;
mod server_access;
mod server_limits;
mod server_openapi;
mod server_silences;
mod shutdown;
mod snapshot;
mod storage;
