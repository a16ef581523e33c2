//! raftwal's wire layer: everything that crosses the network.
//!
//! - [`types`]: the protocol quantities (`Term`, `LogIndex`, `NodeId`, ...) and [`types::Entry`],
//!   shared by every layer above. Pure data, no I/O.
//! - [`message`]: the Raft peer messages exchanged by the consensus core. Pure data, no I/O.
//! - [`client`]: the client protocol's requests and responses. Pure data, no I/O.
//! - [`codec`]: the versioned, length-prefixed binary framing of both protocols, zero-copy on
//!   both sides, with bounded frame sizes and descriptive decode errors. No I/O.
//! - [`fuzzing`]: the fuzzing oracles for every decoder, shared by `fuzz/` and the corpus tests.
//! - [`tls`]: the cluster CA, node and client certificates (`raftwal certs`), and the mutual-TLS
//!   configurations whose certificate names bind a connection to a cluster id and a node id.
//! - [`transport`]: a shard's QUIC endpoint: one link per peer with a control and a bulk stream,
//!   window-bounded synchronous sends, budget-bounded delivery of incoming traffic to the
//!   shard's loop, and both sides of the client protocol.
//!
//! The byte layouts, streams, handshake and limits are documented in `docs/protocol.md`.
//!
//! This crate never depends on the `raftwal` engine; the engine's pure consensus core imports
//! only [`types`] and [`message`] from here.

pub mod client;
pub mod codec;
pub mod fuzzing;
pub mod message;
pub mod tls;
pub mod transport;
pub mod types;
