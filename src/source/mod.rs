//! Where frames come from: the live Navixy WebSocket, the in-process simulator, or a
//! recording. Every source yields raw text frames with their arrival time; decoding and
//! everything after is the engine's.

pub mod replay;
