//! Metric names (the `metrics` facade; the admin server renders them for Prometheus) and
//! logging setup. Every counter the engine exports is named here, so the names stay
//! consistent and `/metrics` documents itself.

/// Frames received, label `source`.
pub const FRAMES: &str = "navixy_alerts_frames_total";
/// Frames or items that failed to decode, label `kind` (malformed, wrong_type, oversized, unknown_shape).
pub const DECODE_ERRORS: &str = "navixy_alerts_decode_errors_total";
/// Events or items of an unknown type, label `type`.
pub const UNKNOWN_EVENTS: &str = "navixy_alerts_unknown_events_total";
/// Tracker updates applied, label `kind` (state, readings, lifecycle, iot).
pub const UPDATES: &str = "navixy_alerts_updates_total";
/// Rule evaluations, label `rule`.
pub const RULE_EVALUATIONS: &str = "navixy_alerts_rule_evaluations_total";
/// Expression evaluations by the evaluator that answered, labels `rule`, `outcome`
/// (`fast`: the direct evaluator; `fallback`: Rhai).
pub const RULE_FAST_PATH: &str = "navixy_alerts_rule_fast_path_total";
/// Rule evaluation errors, labels `rule`, `kind`.
pub const RULE_ERRORS: &str = "navixy_alerts_rule_errors_total";
/// Alert transitions, labels `rule`, `status` (`firing`, `resolved`, or `event` for an
/// occurrence of an event rule).
pub const ALERT_TRANSITIONS: &str = "navixy_alerts_alert_transitions_total";
/// Live alerts (gauge), label `state` (pending, firing).
pub const ALERTS: &str = "navixy_alerts_alerts";
/// Notifications accepted by a channel, label `channel`.
pub const NOTIFICATIONS_SENT: &str = "navixy_alerts_notifications_sent_total";
/// Notifications that failed for good (permanent error or gave up), label `channel`.
pub const NOTIFICATIONS_FAILED: &str = "navixy_alerts_notifications_failed_total";
/// Notification attempts that will be retried, label `channel`.
pub const NOTIFICATIONS_RETRIED: &str = "navixy_alerts_notifications_retried_total";
/// Notifications silenced, label `channel`.
pub const NOTIFICATIONS_SILENCED: &str = "navixy_alerts_notifications_silenced_total";
/// Notifications waiting in the outbox (gauge).
pub const OUTBOX_DEPTH: &str = "navixy_alerts_outbox_depth";
/// WebSocket reconnects.
pub const WS_RECONNECTS: &str = "navixy_alerts_websocket_reconnects_total";
/// Fetches of Navixy's context (zones, groups, tags, drivers), label `result` (ok, error).
pub const CONTEXT_REFRESHES: &str = "navixy_alerts_context_refreshes_total";
/// Source connected (gauge, 0 or 1).
pub const SOURCE_UP: &str = "navixy_alerts_source_up";
/// Seconds from a frame's arrival to the end of its evaluation (histogram).
pub const EVAL_LATENCY: &str = "navixy_alerts_evaluation_latency_seconds";
/// Rule set reloads, label `result` (ok, error).
pub const RELOADS: &str = "navixy_alerts_reloads_total";
/// With `cluster:`: 1 while this instance holds a source's lease (label `source`).
pub const LEASE_HELD: &str = "navixy_alerts_cluster_lease_held";
/// With `cluster:`: the epoch of a source's lease as last read (label `source`).
pub const LEASE_EPOCH: &str = "navixy_alerts_cluster_lease_epoch";
/// With `cluster:`: leases this instance took over from another instance.
pub const LEASE_TAKEOVERS: &str = "navixy_alerts_cluster_lease_takeovers_total";
