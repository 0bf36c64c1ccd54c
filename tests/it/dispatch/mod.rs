//! Integration tests: dispatch. Real HTTP receivers, a real SMTP server (in process),
//! real SQLite files, and a private PostgreSQL server where the database is lost.

mod ack;
mod channel_notify_test;
mod channel_pagerduty;
mod channel_support;
mod channel_teams;
mod channel_telegram;
mod channel_webhook;
mod database_loss;
mod delivery;
mod email;
mod muting;
mod restart;
mod retry;
mod smtp_sink;
pub(crate) mod support;
