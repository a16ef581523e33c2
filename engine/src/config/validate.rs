//! Validation of a [`NodeConfig`]: the rules every configuration must pass before a node starts.
//!
//! Owns: [`NodeConfig::validate`] and the bounds it enforces; its errors are
//! [`ConfigError`]s (`error.rs`).
//! Must not: open files or sockets, or resolve names (the node's start does that); a rule that
//! needs the system to answer is not checked here.
//!
//! Invariants of a validated config:
//! 1. The node's id is not 0 and is not among its peers; peer ids are distinct and not 0.
//! 2. `shards >= 1`, `1 <= log_count <= LOG_COUNT_MAX`, and every shard's port (`listen` port +
//!    shard index) fits in 16 bits, for this node and for every peer; no two members' port
//!    ranges (`port .. port + shards - 1`, this node's shard count for all) overlap on one host
//!    (the same IP address, or a wildcard and a loopback or wildcard address).
//!    No peer's port is 0, nor this node's unless it runs one shard and has no peers (an
//!    embedding program or a test may then let the system pick the port).
//! 3. The timing is sane: `tick_ms >= 1`, the election timeout exceeds the heartbeat interval
//!    (the consensus core checks the ticks again), and it is at most
//!    [`ELECTION_TIMEOUT_MS_MAX`] long.
//! 4. `entry_size_bytes_max` fits in one AppendEntries, one frame, one storage batch and one
//!    segment, with a remote client's 16-byte entry header.
//! 5. `storage.segment_size_bytes` is a multiple of 4096 from [`SEGMENT_SIZE_BYTES_MIN`] to
//!    [`SEGMENT_SIZE_BYTES_MAX`], and `storage.zero_chunk_bytes` a positive multiple of 4096
//!    (the store checks its options again when it opens).
//! 6. The consensus core's flow limits (`raft.inflight_message_count_max`,
//!    `raft.inflight_size_bytes_max`, `raft.entry_cache_size_bytes_max`) are positive, and
//!    `transport.bulk_window_bytes >= raft.inflight_size_bytes_max`, so the core's flow control
//!    stops sending before the transport's window refuses a message.
//! 7. The client limits (`transport.client_connections_max`, `transport.client_memory_bytes_max`,
//!    `transport.client_connection_memory_bytes_max`) are positive: a node with a limit of 0
//!    would serve no client at all.
//! 8. `transport.frame_size_bytes_max` is within the codec's bounds ([`FrameLimits::new`]: 4 KiB
//!    to 256 MiB), which the transport would otherwise refuse only when a shard binds, after
//!    the data directory was created and stamped; and an AppendEntries of
//!    `raft.append_size_bytes_max` (entries and their headers, as the core counts them) fits in
//!    one frame with 4096 bytes to spare for the message's own fields.
//!
//! Every setting that the consensus core, the store or the transport would refuse later is
//! refused here, by its name: the node's start opens the logs only after validation, and a
//! refusal after that reads like a damaged log.

use super::{ConfigError, FsyncChoice, NodeConfig};
use crate::storage::format::{BLOCK_SIZE_BYTES, PAYLOAD_BYTES_MAX, SEGMENT_HEADER_BYTES};
use raftwal_wire::client::TAG_SIZE_BYTES;
use raftwal_wire::codec::{FrameLimits, LimitsError};
use raftwal_wire::types::NodeId;
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

/// The most logs a cluster may keep. Every node opens every log at start, and each log
/// preallocates two segments on its disk (the active one and the next, prepared ahead): 1024
/// logs of the default 64 MiB segments take 128 GiB per node before the first append. A count
/// above it is a mistake (a million logs tried to preallocate 64 TB and filled the disk), not a
/// tuning; a node that needs more logs per disk should use smaller segments, not more logs.
pub const LOG_COUNT_MAX: u64 = 1024;

/// The smallest `storage.segment_size_bytes` the store accepts: four 4096-byte blocks (16 KiB),
/// the header block and room for records.
pub const SEGMENT_SIZE_BYTES_MIN: u64 = 16 << 10;

/// The largest `storage.segment_size_bytes` the store accepts: record offsets are 32-bit, so a
/// segment stays below 4 GiB (4 GiB minus one 4096-byte block).
pub const SEGMENT_SIZE_BYTES_MAX: u64 = (4 << 30) - 4096;

/// The longest election timeout (`raft.election_timeout_ticks` ticks of `raft.tick_ms`)
/// accepted: 10 minutes. After a leader fails, the cluster waits about this long before it
/// elects another, so a longer one is a mistake (usually a tick in microseconds or seconds
/// written as milliseconds), not a tuning.
pub const ELECTION_TIMEOUT_MS_MAX: u64 = 10 * 60 * 1000;

impl NodeConfig {
    /// Checks the invariants listed in the module documentation.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check_members()?;
        let shards = self.shard_count();
        if shards == 0 {
            return Err(ConfigError::Zero("shards"));
        }
        if !(1..=LOG_COUNT_MAX).contains(&self.log_count) {
            return Err(ConfigError::OutOfRange {
                what: "log_count",
                value: self.log_count,
                min: 1,
                max: LOG_COUNT_MAX,
            });
        }
        self.check_timing()?;
        if self.entry_size_bytes_max == 0 {
            return Err(ConfigError::Zero("entry_size_bytes_max"));
        }
        self.check_storage()?;
        self.check_ports(shards)?;
        self.check_flow()?;
        self.check_frame_size()?;
        self.check_entry_size()
    }

    /// Invariant 8: the transport accepts the frame limit, and every AppendEntries fits in it.
    fn check_frame_size(&self) -> Result<(), ConfigError> {
        let frame = self.transport.frame_size_bytes_max;
        if let Err(LimitsError::FrameSizeOutOfRange { floor_bytes, ceiling_bytes, .. }) =
            FrameLimits::new(frame)
        {
            return Err(ConfigError::OutOfRange {
                what: "transport.frame_size_bytes_max",
                value: u64::from(frame),
                min: u64::from(floor_bytes),
                max: u64::from(ceiling_bytes),
            });
        }
        // The core fills an AppendEntries up to this many bytes of entries and entry headers
        // (one larger entry alone is bounded by `entry_size_bytes_max`, invariant 4).
        if self.raft.append_size_bytes_max > (frame as usize).saturating_sub(4096) {
            return Err(ConfigError::AppendAboveFrame {
                append: self.raft.append_size_bytes_max,
                frame,
            });
        }
        Ok(())
    }

    /// Invariant 1: ids.
    fn check_members(&self) -> Result<(), ConfigError> {
        if self.id == NodeId::ZERO {
            return Err(ConfigError::ZeroId);
        }
        let mut seen = BTreeSet::new();
        for peer in &self.peers {
            if peer.id == self.id {
                return Err(ConfigError::SelfPeer(peer.id));
            }
            if peer.id == NodeId::ZERO || !seen.insert(peer.id) {
                return Err(ConfigError::BadPeer(peer.id));
            }
        }
        Ok(())
    }

    /// Invariant 3: the consensus clock.
    fn check_timing(&self) -> Result<(), ConfigError> {
        if self.raft.tick_ms == 0 {
            return Err(ConfigError::Zero("raft.tick_ms"));
        }
        if self.raft.heartbeat_interval_ticks == 0 {
            return Err(ConfigError::Zero("raft.heartbeat_interval_ticks"));
        }
        if self.raft.election_timeout_ticks <= self.raft.heartbeat_interval_ticks {
            return Err(ConfigError::Timing {
                election: self.raft.election_timeout_ticks,
                heartbeat: self.raft.heartbeat_interval_ticks,
            });
        }
        let timeout_ms =
            u128::from(self.raft.election_timeout_ticks) * u128::from(self.raft.tick_ms);
        if timeout_ms > u128::from(ELECTION_TIMEOUT_MS_MAX) {
            return Err(ConfigError::ElectionTimeoutTooLong {
                ticks: self.raft.election_timeout_ticks,
                tick_ms: self.raft.tick_ms,
                timeout_ms,
            });
        }
        Ok(())
    }

    /// Invariant 5: the store's options.
    fn check_storage(&self) -> Result<(), ConfigError> {
        for (value, what) in [
            (self.storage.segment_size_bytes, "storage.segment_size_bytes"),
            (self.storage.zero_chunk_bytes as u64, "storage.zero_chunk_bytes"),
        ] {
            if value == 0 || value % 4096 != 0 {
                return Err(ConfigError::NotBlockMultiple { what, value });
            }
        }
        let segment = self.storage.segment_size_bytes;
        if !(SEGMENT_SIZE_BYTES_MIN..=SEGMENT_SIZE_BYTES_MAX).contains(&segment) {
            return Err(ConfigError::OutOfRange {
                what: "storage.segment_size_bytes",
                value: segment,
                min: SEGMENT_SIZE_BYTES_MIN,
                max: SEGMENT_SIZE_BYTES_MAX,
            });
        }
        let limit = crate::storage::BATCHES_IN_FLIGHT_LIMIT;
        if !(1..=limit).contains(&self.storage.batches_in_flight) {
            return Err(ConfigError::OutOfRange {
                what: "storage.batches_in_flight",
                value: self.storage.batches_in_flight as u64,
                min: 1,
                max: limit as u64,
            });
        }
        if self.storage.batches_in_flight > 1
            && !self.storage.direct_io
            && self.storage.fsync != FsyncChoice::Thread
        {
            return Err(ConfigError::BufferedPipelining);
        }
        Ok(())
    }

    /// Invariant 2: every member's shard ports fit in 16 bits and are its own.
    fn check_ports(&self, shards: usize) -> Result<(), ConfigError> {
        let members: Vec<(NodeId, SocketAddr)> = std::iter::once((self.id, self.listen))
            .chain(self.peers.iter().map(|p| (p.id, p.addr)))
            .collect();
        if let Some(peer) = self.peers.iter().find(|p| p.addr.port() == 0) {
            return Err(ConfigError::PeerPortZero { peer: peer.id, addr: peer.addr });
        }
        // Port 0 lets the system pick shard 0's port, which only the node learns
        // (`Node::client_addr`): no peer could reach it, and shard i would bind port i.
        if self.listen.port() == 0 && (!self.peers.is_empty() || shards > 1) {
            return Err(ConfigError::ListenPortZero { addr: self.listen });
        }
        // In u64: a shard count near usize::MAX must be refused, not overflow.
        let span = shards as u64;
        for &(_, addr) in &members {
            if u64::from(addr.port()) + span - 1 > u64::from(u16::MAX) {
                return Err(ConfigError::PortRange { addr, shards });
            }
        }
        for (k, &(first, first_addr)) in members.iter().enumerate() {
            for &(second, second_addr) in &members[k + 1..] {
                let apart = u64::from(first_addr.port().abs_diff(second_addr.port()));
                if apart < span && may_share_ports(first_addr.ip(), second_addr.ip()) {
                    return Err(ConfigError::PortOverlap {
                        first,
                        first_addr,
                        second,
                        second_addr,
                        shards,
                    });
                }
            }
        }
        Ok(())
    }

    /// Invariant 6: the consensus core's flow control is open, and acts before the transport's
    /// window.
    fn check_flow(&self) -> Result<(), ConfigError> {
        for (value, what) in [
            (self.raft.inflight_message_count_max, "raft.inflight_message_count_max"),
            (self.raft.inflight_size_bytes_max, "raft.inflight_size_bytes_max"),
            (self.raft.entry_cache_size_bytes_max, "raft.entry_cache_size_bytes_max"),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero(what));
            }
        }
        for (value, what) in [
            (self.transport.client_connections_max, "transport.client_connections_max"),
            (self.transport.client_memory_bytes_max, "transport.client_memory_bytes_max"),
            (
                self.transport.client_connection_memory_bytes_max,
                "transport.client_connection_memory_bytes_max",
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero(what));
            }
        }
        if self.transport.bulk_window_bytes < self.raft.inflight_size_bytes_max {
            return Err(ConfigError::WindowBelowInflight {
                window: self.transport.bulk_window_bytes,
                inflight: self.raft.inflight_size_bytes_max,
            });
        }
        Ok(())
    }

    /// Invariant 4: the largest entry fits every message and batch that carries it.
    fn check_entry_size(&self) -> Result<(), ConfigError> {
        // A frame carries the entry plus a little framing; a batch carries the record header; a
        // segment holds its header, and a record never starts in its last block (the store's
        // own limit, `LogStore::payload_bytes_max`).
        let frame_room = (self.transport.frame_size_bytes_max as usize).saturating_sub(4096);
        for (limit, what) in [
            (self.raft.append_size_bytes_max, "raft.append_size_bytes_max"),
            (frame_room, "transport.frame_size_bytes_max minus 4096 bytes of framing"),
            (
                self.storage.batch_bytes_max.saturating_sub(4096),
                "storage.batch_bytes_max minus 4096",
            ),
            // A remote client's entry carries its deduplication header before the payload, and
            // the store refuses an entry it cannot hold (which poisons the log on every replica).
            (
                (self.storage.segment_size_bytes as usize)
                    .saturating_sub(SEGMENT_HEADER_BYTES + BLOCK_SIZE_BYTES)
                    .min(PAYLOAD_BYTES_MAX)
                    .saturating_sub(TAG_SIZE_BYTES),
                "the payload one segment holds: storage.segment_size_bytes minus 8192, at most \
                 64 MiB, minus a remote client's 16-byte entry header",
            ),
        ] {
            if self.entry_size_bytes_max > limit {
                return Err(ConfigError::EntryTooLarge {
                    entry: self.entry_size_bytes_max,
                    limit,
                    what,
                });
            }
        }
        Ok(())
    }
}

/// Whether sockets bound to `a` and `b` with the same port would be one port of one host: the
/// same address, or a wildcard address and an address of the host that the wildcard covers
/// (another wildcard, or loopback; an IPv4 wildcard does not cover IPv6 addresses, an IPv6 one
/// covers both). Whether any other address is this host's cannot be known without asking the
/// system, so a node that listens on the wildcard next to peers on other addresses passes: that
/// is the usual deployment, one node per host.
fn may_share_ports(a: IpAddr, b: IpAddr) -> bool {
    let covers = |wildcard: IpAddr, other: IpAddr| {
        wildcard.is_unspecified()
            && (other.is_unspecified() || other.is_loopback())
            && (wildcard.is_ipv6() || other.is_ipv4())
    };
    a == b || covers(a, b) || covers(b, a)
}

#[cfg(test)]
mod tests {
    use super::super::tests::base;
    use super::*;
    use crate::config::PeerConfig;

    #[test]
    fn bad_identities_are_refused() {
        let mut c = base();
        c.id = NodeId(0);
        assert!(matches!(c.validate(), Err(ConfigError::ZeroId)));
        let mut c = base();
        c.peers[0].id = NodeId(1);
        assert!(matches!(c.validate(), Err(ConfigError::SelfPeer(NodeId(1)))));
        let mut c = base();
        c.peers[1].id = NodeId(2);
        assert!(matches!(c.validate(), Err(ConfigError::BadPeer(NodeId(2)))));
    }

    #[test]
    fn ports_timing_and_sizes_are_checked() {
        let mut c = base();
        c.listen = "127.0.0.1:65535".parse().unwrap();
        c.shards = Some(2);
        assert!(matches!(c.validate(), Err(ConfigError::PortRange { .. })));
        let mut c = base();
        c.raft.election_timeout_ticks = 5;
        assert!(matches!(c.validate(), Err(ConfigError::Timing { .. })));
        let mut c = base();
        c.entry_size_bytes_max = 2 << 20;
        assert!(matches!(c.validate(), Err(ConfigError::EntryTooLarge { .. })));
        for (zero_chunk, segment) in [(0, 64 << 20), (6000, 64 << 20), (4096, 0), (4096, 5000)] {
            let mut c = base();
            c.storage.zero_chunk_bytes = zero_chunk;
            c.storage.segment_size_bytes = segment;
            let e = c.validate().unwrap_err();
            assert!(matches!(e, ConfigError::NotBlockMultiple { .. }), "{e}");
            assert!(e.to_string().contains("multiple of 4096"), "{e}");
        }
    }
    /// The error's text, which must name every one of `names`.
    fn refusal(config: &NodeConfig, names: &[&str]) -> String {
        let text = match config.validate() {
            Ok(()) => panic!("accepted: {config:?}"),
            Err(e) => e.to_string(),
        };
        for name in names {
            assert!(text.contains(name), "{text:?} does not name {name}");
        }
        text
    }

    #[test]
    fn a_bulk_window_below_the_inflight_bytes_is_refused() {
        for window in [0, (4 << 20) - 1] {
            let mut c = base();
            c.transport.bulk_window_bytes = window;
            refusal(&c, &["transport.bulk_window_bytes", "raft.inflight_size_bytes_max"]);
        }
        let mut c = base();
        c.transport.bulk_window_bytes = c.raft.inflight_size_bytes_max;
        c.validate().unwrap();
    }

    #[test]
    fn a_frame_size_the_transport_refuses_is_refused_by_validation() {
        // docs/operations.md: validation refuses what the node would refuse later, before any
        // file is opened; the transport refuses frame limits above 256 MiB when a shard binds,
        // after the data directory was created and stamped.
        let ceiling = raftwal_wire::codec::FRAME_SIZE_BYTES_CEILING;
        for frame in [ceiling + 1, u32::MAX] {
            let mut c = base();
            c.transport.frame_size_bytes_max = frame;
            let e = refusal(&c, &["transport.frame_size_bytes_max", &ceiling.to_string()]);
            assert!(e.contains(&frame.to_string()), "{e}");
        }
        let mut c = base();
        c.transport.frame_size_bytes_max = ceiling;
        c.validate().unwrap();
        raftwal_wire::codec::FrameLimits::new(ceiling).unwrap();
    }

    /// An AppendEntries the core may fill beyond one frame could never be sent: a follower it
    /// is for would never catch up (a 10-entry batch of 1 KB each never committed with 8 KiB
    /// frames and the default 1 MiB appends).
    #[test]
    fn appends_larger_than_a_frame_are_refused() {
        let mut c = base();
        c.transport.frame_size_bytes_max = 8 << 10;
        c.entry_size_bytes_max = 1 << 10;
        let e = refusal(&c, &["raft.append_size_bytes_max", "transport.frame_size_bytes_max"]);
        assert!(e.contains("8192"), "{e}");
        c.raft.append_size_bytes_max = (8 << 10) - 4096;
        c.validate().unwrap();
        c.raft.append_size_bytes_max += 1;
        refusal(&c, &["raft.append_size_bytes_max"]);
    }

    #[test]
    fn zero_flow_limits_of_the_consensus_core_are_refused_by_name() {
        let mut c = base();
        c.raft.inflight_message_count_max = 0;
        refusal(&c, &["raft.inflight_message_count_max"]);
        let mut c = base();
        c.raft.inflight_size_bytes_max = 0;
        refusal(&c, &["raft.inflight_size_bytes_max"]);
        let mut c = base();
        c.raft.entry_cache_size_bytes_max = 0;
        refusal(&c, &["raft.entry_cache_size_bytes_max"]);
    }

    #[test]
    fn zero_client_limits_are_refused_by_name() {
        let mut c = base();
        c.transport.client_connections_max = 0;
        refusal(&c, &["transport.client_connections_max"]);
        let mut c = base();
        c.transport.client_memory_bytes_max = 0;
        refusal(&c, &["transport.client_memory_bytes_max"]);
        let mut c = base();
        c.transport.client_connection_memory_bytes_max = 0;
        refusal(&c, &["transport.client_connection_memory_bytes_max"]);
    }

    #[test]
    fn segment_sizes_outside_16_kib_to_4_gib_are_refused() {
        for segment in [8 << 10, 4 << 30, 8 << 30] {
            let mut c = base();
            c.storage.segment_size_bytes = segment;
            refusal(&c, &["storage.segment_size_bytes", "16384", "4294963200"]);
        }
        let mut c = base();
        c.storage.segment_size_bytes = (4 << 30) - 4096;
        c.validate().unwrap();
        // The smallest segment holds 8 KiB of payload, a remote client's entry header included:
        // larger entries are refused with it.
        c.storage.segment_size_bytes = 16 << 10;
        refusal(&c, &["entry_size_bytes_max", "storage.segment_size_bytes"]);
        c.entry_size_bytes_max = (8 << 10) - TAG_SIZE_BYTES + 1;
        refusal(&c, &["entry_size_bytes_max", "storage.segment_size_bytes", "16-byte"]);
        c.entry_size_bytes_max = (8 << 10) - TAG_SIZE_BYTES;
        c.validate().unwrap();
    }

    /// The bounds are the store's own: what validation lets through, the store opens, and what
    /// it refuses, the store refuses too.
    #[test]
    fn the_segment_size_bounds_and_payload_room_are_the_stores() {
        use crate::storage::{LogOptions, LogStore, OpenError, SimDisk};
        use raftwal_wire::types::{Entry, EntryKind, LogIndex, Term};
        let open = |segment_size_bytes: u64| {
            let options = LogOptions { segment_size_bytes, ..LogOptions::default() };
            LogStore::open(std::path::Path::new("/log"), options, std::rc::Rc::new(SimDisk::new()))
        };
        for refused in [SEGMENT_SIZE_BYTES_MIN - 4096, SEGMENT_SIZE_BYTES_MAX + 4096] {
            assert!(matches!(open(refused), Err(OpenError::InvalidOptions(_))), "{refused}");
        }
        let (mut store, _) = open(SEGMENT_SIZE_BYTES_MIN).unwrap();
        let mut c = base();
        c.storage.segment_size_bytes = SEGMENT_SIZE_BYTES_MIN;
        c.entry_size_bytes_max = (8 << 10) - TAG_SIZE_BYTES;
        c.validate().unwrap();
        let entry = |index: u64, size: usize| Entry {
            index: LogIndex(index),
            term: Term(1),
            kind: EntryKind::Tagged,
            data: vec![7; size].into(),
        };
        // The largest payload, with a remote client's header, is the largest entry the store
        // takes.
        let largest = c.entry_size_bytes_max + TAG_SIZE_BYTES;
        store.append(&[entry(1, largest)]).unwrap();
        assert!(store.append(&[entry(2, largest + 1)]).is_err());
    }

    #[test]
    fn an_election_timeout_over_ten_minutes_is_refused() {
        let mut c = base();
        c.raft.tick_ms = 20_000; // 30 ticks: exactly 10 minutes
        c.validate().unwrap();
        c.raft.tick_ms = 20_001;
        refusal(&c, &["raft.tick_ms", "raft.election_timeout_ticks", "600030 ms", "10 minutes"]);
        c.raft.tick_ms = u64::MAX;
        refusal(&c, &["raft.tick_ms"]);
    }

    #[test]
    fn log_count_is_between_1_and_1024() {
        let mut c = base();
        c.log_count = LOG_COUNT_MAX;
        c.validate().unwrap();
        for bad in [0, LOG_COUNT_MAX + 1, 1_000_000] {
            c.log_count = bad;
            refusal(&c, &["log_count", "1024"]);
        }
    }

    #[test]
    fn shard_port_ranges_of_members_on_one_host_must_not_overlap() {
        let with = |listen: &str, peers: &[&str]| {
            let mut c = base();
            c.listen = listen.parse().unwrap();
            c.peers = peers
                .iter()
                .enumerate()
                .map(|(i, a)| PeerConfig { id: NodeId(i as u64 + 2), addr: a.parse().unwrap() })
                .collect();
            c
        };
        // base() runs 4 shards: ports p..p+3.
        for (listen, peers) in [
            ("127.0.0.1:7000", &["127.0.0.1:7003"][..]),
            ("127.0.0.1:7003", &["127.0.0.1:7000"]),
            ("127.0.0.1:7000", &["127.0.0.1:7000"]),
            ("0.0.0.0:7000", &["127.0.0.1:7002"]),
            ("[::]:7000", &["127.0.0.1:7001"]),
            ("[::]:7000", &["0.0.0.0:7001"]),
            ("[::1]:7000", &["[::1]:7002"]),
            ("10.0.0.1:7000", &["10.0.0.2:7000", "10.0.0.2:7002"]),
        ] {
            let c = with(listen, peers);
            refusal(&c, &["overlap", "4 shards"]);
        }
        for (listen, peers) in [
            ("127.0.0.1:7000", &["127.0.0.1:7004", "127.0.0.1:7008"][..]),
            ("127.0.0.1:7000", &["127.0.0.2:7000"]),
            // The usual deployment: every node on its own host, listening on the wildcard.
            ("0.0.0.0:7000", &["10.0.0.2:7000", "10.0.0.3:7000"]),
            ("0.0.0.0:7000", &["[::1]:7000"]),
        ] {
            let c = with(listen, peers);
            c.validate().unwrap_or_else(|e| panic!("{listen} {peers:?}: {e}"));
        }
        // A shard count beyond any port range is refused, not an arithmetic overflow.
        let mut c = base();
        c.shards = Some(1 << 32);
        assert!(matches!(c.validate(), Err(ConfigError::PortRange { .. })));
    }

    #[test]
    fn port_zero_is_refused_where_a_fixed_port_is_needed() {
        let mut c = base();
        c.peers[1].addr = "127.0.0.1:0".parse().unwrap();
        refusal(&c, &["peer 3", "port 0"]);
        let mut c = base();
        c.listen = "127.0.0.1:0".parse().unwrap();
        refusal(&c, &["port 0", "peers"]);
        // A one-shard node without peers may let the system pick its port (its address is
        // known once it started: `Node::client_addr`).
        c.peers.clear();
        c.shards = Some(1);
        c.validate().unwrap();
        c.shards = Some(2);
        refusal(&c, &["port 0", "shard"]);
    }
}
