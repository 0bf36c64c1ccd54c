//! Where frames come from: the live Navixy WebSocket, the in-process simulator, or a
//! recording. Every source yields raw text frames with their arrival time; decoding and
//! everything after is the engine's.

pub mod navixy;
pub mod recording;
pub mod replay;

use chrono::{DateTime, Utc};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::alert::AlertTransition;
use crate::navixy::messages::{SourceIx, TrackerInfo};

/// What a source hands the engine, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceEvent {
    /// A data frame exactly as received, stamped with its arrival on the engine clock.
    /// The engine decodes it; control frames (handshake, heartbeat, response, error,
    /// logout) are the source's own business and do not come here.
    RawFrame {
        /// The source's index among the configured ones (`sources:`): whose tracker
        /// list maps its ids, and whose trackers they are.
        source: SourceIx,
        received_at: DateTime<Utc>,
        /// The WebSocket message's own buffer (reference-counted): handing a frame to the
        /// engine thread copies none of its bytes.
        text: Utf8Bytes,
    },
    /// The account's trackers from `tracker/list` (with the source's index): sent on each
    /// (re)connect before the frames of that connection, and on each periodic refresh.
    Trackers(SourceIx, Vec<TrackerInfo>),
    /// An engine alert of the source (`navixy_session_closed`, `navixy_source_down`);
    /// boxed because it is rare and large, and frames should not pay for its size.
    Alert(Box<AlertTransition>),
}
