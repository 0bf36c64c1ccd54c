//! Integration tests: dispatch. Real HTTP receivers, a real SMTP server (in process),
//! real SQLite files.

mod delivery;
mod email;
mod restart;
mod retry;
mod smtp_sink;
mod support;
