//! raftwal's wire layer: everything that crosses the network.
//!
//! - [`types`]: the protocol quantities (`Term`, `LogIndex`, `NodeId`, ...) and [`types::Entry`],
//!   shared by every layer above. Pure data, no I/O.
//! - [`message`]: the Raft peer messages exchanged by the consensus core. Pure data, no I/O.
//!
//! This crate never depends on the `raftwal` engine; the engine's pure consensus core imports
//! only [`types`] and [`message`] from here.

pub mod message;
pub mod types;
