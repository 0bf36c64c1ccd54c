//! From alert transitions to notifications: routes, grouping, dedup (`repeat_interval`),
//! flap damping, silences, and a durable outbox in front of each channel. One file per
//! channel in `channels/`.
//!
//! - [`dispatcher`]: the entry point: [`Dispatcher::start`] and [`DispatcherHandle::submit`],
//!   which returns once a transition is committed.
//! - [`routes`]: which channels an alert goes to, with which settings.
//! - [`group`]: aggregation groups: membership, coalescing, the flush schedule, and the
//!   state the stages read.
//! - [`stages`]: delivery as stages, composed in one place: route, dedup/repeat,
//!   inhibit, silence, mute, flap, outbox; and the history sink they report to.
//! - [`silence`]: the compiled silences.
//! - [`notification`]: what a notification holds, and the webhook body.
//! - [`outbox`]: per-channel senders: ordering, retries, backoff, give-up; in a cluster,
//!   [`outbox::claimed`] delivers the shared PostgreSQL outbox from any live instance.
//! - [`channels`]: webhook, Slack, email, Alertmanager, stdout.
//! - [`ack`]: ack links, and the notification a `send_acks` channel gets on an ack.
//! - [`escalation`]: the steps of a route's `escalate`, scheduled per firing alert.
//!
//! Storage is [`crate::store`]'s; this module decides, the store keeps.

pub mod ack;
pub mod channels;
pub mod dispatcher;
pub mod escalation;
pub mod group;
pub mod notification;
pub mod outbox;
pub mod routes;
pub mod silence;
pub mod stages;

pub use channels::{Channel, ChannelError, SendError};
pub use dispatcher::{
    DispatchError, DispatchOptions, Dispatcher, DispatcherHandle, RetryError, StartError,
};
pub use notification::Notification;
pub use outbox::{Retried, RetryPolicy};
pub use routes::{RouteError, Router};

#[doc(hidden)]
pub mod testing;
