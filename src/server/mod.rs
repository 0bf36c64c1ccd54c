//! The admin HTTP server: health, readiness, Prometheus metrics, alerts, trackers,
//! silences and reload.
