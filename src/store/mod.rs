//! SQLite (WAL): alert states, the outbox, the notification log and silences, with
//! versioned migrations. All blocking SQLite work runs off the async runtime's workers.
