//! Integration tests of the running daemon: the admin API, reload, shutdown, chaos,
//! crashes, reconnect snapshots and storage faults.

mod chaos;
mod crash;
mod reload;
mod server;
mod shutdown;
mod snapshot;
mod storage;
