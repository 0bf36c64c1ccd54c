//! Navixy's context for the rules: the account's geofences (`zone/list` and their points),
//! tracker groups (`tracker/group/list`), tags (`tag/list`), the employee assigned to each
//! tracker (`employee/list`) and each tracker's tags (`tracker/list`), fetched together
//! into one [`NavixyContext`] snapshot by [`fetch_all`].
//!
//! [`SharedContext`] holds the latest good snapshot for the rules to read.
//!
//! This module reads Navixy and turns zones into [`crate::geofence`] shapes; when to
//! refresh and what rules do with the snapshot belong to the source and the rules.

mod live;
mod snapshot;
mod types;

pub use live::{ContextSnapshot, SharedContext};

pub use snapshot::{Driver, NavixyContext, Skipped, fetch_all, zone_shape};
pub use types::{
    Employee, LatLng, ListAnswer, Listed, NavixyZone, Tag, TagBinding, TrackerBindings,
    TrackerGroup, ZonePoint,
};
