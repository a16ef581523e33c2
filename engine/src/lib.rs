//! raftwal: a Raft-replicated, thread-per-core write-ahead log engine.
//!
//! A cluster of 2f+1 nodes keeps durable, totally ordered logs and survives f failures. An
//! append returns once its entry is fsynced on a majority; committed entries can be read by index
//! and tailed as a stream from any replica.
//!
//! # Tutorial: open, append, read, subscribe
//!
//! A one-node cluster in a temporary directory (a real cluster lists its peers in
//! [`NodeConfig::peers`]; `raftwal certs` writes the certificates for all of them):
//!
//! ```
//! use raftwal::{Node, NodeConfig, ReadLimit};
//! use raftwal_wire::tls::ClusterCerts;
//! use raftwal_wire::types::{LogId, LogIndex, NodeId};
//! use std::time::Duration;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let tls = dir.path().join("tls");
//! ClusterCerts::generate(None, &[NodeId(1)])?.write_to_dir(&tls)?;
//!
//! let mut config = NodeConfig::new(
//!     NodeId(1),
//!     "127.0.0.1:0".parse()?,
//!     vec![], // no peers: a cluster of one
//!     dir.path().join("data"),
//!     tls,
//! );
//! config.shards = Some(1);
//! let node = Node::start(config)?;
//! let log = node.log(LogId(0)).expect("the cluster has log 0");
//! log.wait_for_leader_blocking(Duration::from_secs(10)).expect("a leader is elected");
//!
//! // Append: returns once the entry is durable on a majority (here: this node's disk).
//! let first = log.append_blocking("hello".into())?;
//! let batch = log.append_batch_blocking(vec!["a".into(), "b".into()])?;
//! assert_eq!(batch.first_index, first.index.next());
//!
//! // Read committed entries by index.
//! let entries = log.read_blocking(first.index, ReadLimit::entries(10))?;
//! let data: Vec<&[u8]> = entries.iter().map(|e| &e.data[..]).collect();
//! assert_eq!(data, [&b"hello"[..], b"a", b"b"]);
//!
//! // Subscribe: a stream of committed entries from any index, as they commit.
//! let mut tail = log.subscribe(LogIndex(1)).into_blocking_iter();
//! assert_eq!(tail.next().unwrap()?.data, "hello");
//! log.append_blocking("more".into())?;
//! assert_eq!(tail.nth(2).unwrap()?.data, "more");
//!
//! node.shutdown();
//! # Ok(())
//! # }
//! ```
//!
//! The async forms ([`Log::append`], [`Log::read`], [`Subscription`] as a `Stream`) do the same
//! from a tokio runtime; [`client`] reaches a cluster over the network.
//!
//! # Layers
//! From the bottom up, each importing only from layers below it:
//! - `raftwal_wire::{types, message}`: protocol quantities, entries and Raft messages (pure data);
//! - [`raft`]: the sans-IO consensus core (no clock, thread, file, socket or RNG);
//! - [`storage`]: segmented, CRC-checked log files, group fsync and recovery, behind a disk seam;
//! - `runtime`: shard threads driving core, storage and the QUIC transport;
//! - [`Node`], [`Log`], [`Subscription`]: the embedding API; [`client`]: the remote client.
//!
//! [`fuzzing`] holds the oracles of the storage and consensus fuzz targets (`fuzz/`).

pub mod client;
pub mod config;
pub mod error;
pub mod fuzzing;
mod log;
pub mod metrics;
mod node;
pub mod raft;
mod runtime;
pub mod storage;
mod subscription;

pub use config::{NodeConfig, PeerConfig};
pub use error::{
    AppendError, CompactError, LeaderInfo, ReadError, ReadIndexError, ShardFailure, StartError,
    StatusError, TransferError,
};
pub use log::{BatchPosition, Log, LogEntry, LogStatus, PeerStatus, Position, ReadLimit};
pub use node::{HaltHandle, Node, IDENTITY_FILE, LOGS_FILE, REJOIN_MARKER};
pub use runtime::source::StoreSource;
pub use subscription::{BlockingIter, Subscription};
