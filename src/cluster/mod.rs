//! Several instances on one PostgreSQL database: which instance runs which source.
//!
//! Each source (Navixy account) is run by exactly one instance at a time, the one holding
//! its lease: a row of `leases` (owner, epoch, expiry on the database's clock). The owner
//! renews it every `cluster.renew`; an instance that stops renewing (killed, frozen, cut
//! off) loses it when it expires, and another takes it with a higher epoch. A deposed
//! owner's commits are refused by the fence, which checks the lease row in the same
//! transaction.
//!
//! - [`lease`]: the leases themselves, on a database connection of their own (renewal must
//!   never wait behind the store's queue): acquire, renew, notice a loss, release.
//! - [`fence`]: the store's commit guard that refuses a deposed owner's commits.
//! - [`view`]: who holds what, as the daemon, `/readyz`, the metrics and the console read it.
//!
//! It owns the `leases` table (created by the store's migrations) and nothing else: what runs while a lease is held is the
//! daemon's business.

pub mod fence;
pub mod lease;
pub mod view;

pub use lease::{LeaseEvent, Leases};
pub use view::{ClusterView, SourceLease};
