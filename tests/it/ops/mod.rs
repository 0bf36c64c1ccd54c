//! Integration tests of the running daemon: the admin API, reload, shutdown, chaos,
//! crashes and reconnect snapshots.

mod chaos;
mod crash;
mod reload;
mod server;
mod shutdown;
mod snapshot;
