//! Protocol quantities and the log entry.
//!
//! Every quantity that crosses a module boundary has its own newtype, so an index is never passed
//! where a term is expected. These are plain values with no invariants of their own; the types that
//! hold them (a log, a message) state and check their invariants.
//!
//! `LogIndex::ZERO` and `Term::ZERO` are real positions, not sentinels: index 0 is the empty
//! prefix that precedes the first entry of every log (its term is 0), which makes the Raft
//! consistency check uniform for the first entry. Where "no value" is meant (no vote, no known
//! leader), the type is an `Option`.

use bytes::Bytes;
use std::fmt;

macro_rules! quantity {
    ($(#[$doc:meta])* $name:ident, $short:literal) => {
        $(#[$doc])*
        #[derive(
            Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash,
            serde::Serialize, serde::Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl $name {
            /// The smallest value.
            pub const ZERO: $name = $name(0);

            /// The raw number, for encoding and arithmetic at the edges.
            #[inline]
            pub const fn get(self) -> u64 {
                self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($short, "{}"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

quantity!(
    /// A Raft term: a logical clock that increases with every election.
    Term,
    "t"
);
quantity!(
    /// The position of an entry in a log. The first entry of a log has index 1.
    LogIndex,
    "i"
);
quantity!(
    /// A cluster member's identity, unique within a cluster and never reused.
    NodeId,
    "n"
);
quantity!(
    /// Which replicated log (raft group) a message or an entry belongs to; a node may host many.
    LogId,
    "log"
);
quantity!(
    /// The identity of a cluster, written into every data directory and carried by every
    /// peer handshake so that nodes of different clusters never talk to or mix data with each other.
    ClusterId,
    "c"
);

impl Term {
    /// The next term.
    ///
    /// Terms are 64-bit and grow by one per election; overflow would need 2^64 elections and is
    /// treated as a bug (overflow checks are on in release builds).
    #[inline]
    pub fn next(self) -> Term {
        Term(self.0 + 1)
    }
}

impl LogIndex {
    /// The index after this one.
    #[inline]
    pub fn next(self) -> LogIndex {
        LogIndex(self.0 + 1)
    }

    /// The index before this one; `ZERO` stays `ZERO` (there is nothing before the empty prefix).
    #[inline]
    pub fn prev(self) -> LogIndex {
        LogIndex(self.0.saturating_sub(1))
    }

    /// This index plus `count` entries.
    #[inline]
    pub fn plus(self, count: u64) -> LogIndex {
        LogIndex(self.0 + count)
    }

    /// The number of entries in `(other, self]`, or 0 when `other >= self`.
    #[inline]
    pub fn distance_from(self, other: LogIndex) -> u64 {
        self.0.saturating_sub(other.0)
    }
}

/// What an entry means to the layers above the log. Stored on disk as one byte of the record's
/// flags and carried on the wire as one byte; unknown values are rejected at decode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum EntryKind {
    /// A user entry: `data` is the user's payload.
    #[default]
    Normal = 0,
    /// The empty entry a new leader appends at the start of its term so that it can commit
    /// entries of earlier terms (Raft paper, section 5.4.2 and section 8). `data` is empty.
    Noop = 1,
    /// A user entry tagged for deduplication: `data` starts with a 16-byte header (client id and
    /// sequence number, both little-endian u64) followed by the user's payload. The header sits
    /// right before the payload in the client's frame, so the whole `data` is still one slice of
    /// the received buffer.
    Tagged = 2,
}

impl EntryKind {
    /// Decodes the kind byte; `None` for a value this version does not know.
    #[inline]
    pub fn from_u8(value: u8) -> Option<EntryKind> {
        match value {
            0 => Some(EntryKind::Normal),
            1 => Some(EntryKind::Noop),
            2 => Some(EntryKind::Tagged),
            _ => None,
        }
    }

    /// The kind byte.
    #[inline]
    pub fn as_u8(self) -> u8 {
        self as u8
    }
}

/// One entry of a replicated log.
///
/// The payload is a `Bytes`: it travels from the client's frame to the disk writer and to the
/// followers without being copied.
#[derive(Clone, PartialEq, Eq)]
pub struct Entry {
    /// Position in the log.
    pub index: LogIndex,
    /// Term of the leader that created the entry.
    pub term: Term,
    /// What the entry means (user data, leader no-op, tagged user data).
    pub kind: EntryKind,
    /// The payload.
    pub data: Bytes,
}

impl Entry {
    /// Bytes of the payload.
    #[inline]
    pub fn data_size_bytes(&self) -> usize {
        self.data.len()
    }
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Entry({:?} {:?} {:?} {}B)", self.index, self.term, self.kind, self.data.len())
    }
}

/// A node's durable Raft state: it must reach stable storage before any message that depends on
/// it leaves the node (Raft paper, Figure 2, "Persistent state on all servers").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HardState {
    /// Latest term this node has seen.
    pub term: Term,
    /// The candidate this node voted for in `term`, if any.
    pub vote: Option<NodeId>,
    /// The highest index this node knows to be committed. Persisting it is an optimization for
    /// restarts (the node can serve reads up to it at once); it is never needed for safety.
    pub commit: LogIndex,
}
