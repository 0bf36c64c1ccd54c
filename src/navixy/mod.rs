//! The Navixy protocol: frame types and their decoder, time formats, the WebSocket client,
//! the REST client, Navixy's context (zones, groups, tags, drivers), and a
//! Navixy-compatible simulator for demos and tests.
//!
//! Nothing here knows about rules or alerts: it speaks Navixy and hands frames on.

pub mod client;
pub mod context;
pub mod decode;
pub mod messages;
pub mod requests;
pub mod rest;
pub mod simulator;
pub mod time;
