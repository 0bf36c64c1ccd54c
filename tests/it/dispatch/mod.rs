//! Integration tests: dispatch. Real HTTP receivers, a real SMTP server, real SQLite files.

mod delivery;
mod email;
mod restart;
mod retry;
mod support;
