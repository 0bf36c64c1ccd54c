//! Integration tests of several instances on one PostgreSQL: delivery from the shared
//! outbox by whichever instance is alive, and chaos with daemons as processes.

mod chaos;
mod delivery;
mod support;
