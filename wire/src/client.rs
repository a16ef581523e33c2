//! The client protocol's requests and responses. Pure data, no I/O.
//!
//! A client appends to, reads from, tails and inspects logs. Appends carry a client id and a
//! per-client sequence number so that a retried append can be recognized and deduplicated by
//! the leader: the 16-byte header (client id, sequence number, little-endian u64 each) is part of
//! the entry's data (kind [`EntryKind::Tagged`](crate::types::EntryKind::Tagged)), and in a
//! received frame it sits right before the payload, so the whole entry data is one slice of the
//! frame.

use crate::types::{Entry, LogId, LogIndex, NodeId, Term};
use bytes::{BufMut, Bytes, BytesMut};
use std::fmt;
use std::net::SocketAddr;

macro_rules! id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub u64);

        impl $name {
            /// The raw number, for encoding.
            #[inline]
            pub const fn get(self) -> u64 {
                self.0
            }
        }
    };
}

id!(
    /// A client's identity for deduplication, chosen by the client (random, or assigned).
    ClientId
);
id!(
    /// A client's sequence number: one per append, increasing, so retries can be recognized.
    ClientSeq
);
id!(
    /// Matches a response to its request on one client stream; chosen by the client.
    RequestId
);

/// Size of the client id and sequence header at the start of a tagged entry's data.
pub const TAG_SIZE_BYTES: usize = 16;

/// A payload with its client id and sequence number: the data of a
/// [`EntryKind::Tagged`](crate::types::EntryKind::Tagged) entry.
///
/// Invariants: a received value is one slice of the frame, at least [`TAG_SIZE_BYTES`] long, that
/// starts with the header; a value built locally keeps its payload apart and is joined to its
/// header only when it becomes an entry (the encoder sends header and payload without joining).
#[derive(Clone)]
pub struct TaggedPayload {
    repr: Repr,
}

#[derive(Clone)]
enum Repr {
    /// Header and payload in one buffer, as received.
    Joined(Bytes),
    /// Built by a sender: the payload is kept as the caller's `Bytes`.
    Parts { client: ClientId, seq: ClientSeq, payload: Bytes },
}

impl TaggedPayload {
    /// A payload to send.
    pub fn new(client: ClientId, seq: ClientSeq, payload: Bytes) -> TaggedPayload {
        TaggedPayload { repr: Repr::Parts { client, seq, payload } }
    }

    /// Wraps tagged entry data (header then payload); `None` when it is shorter than the header.
    pub fn from_entry_data(data: Bytes) -> Option<TaggedPayload> {
        (data.len() >= TAG_SIZE_BYTES).then_some(TaggedPayload { repr: Repr::Joined(data) })
    }

    fn header_u64(data: &Bytes, at: usize) -> u64 {
        let mut a = [0u8; 8];
        a.copy_from_slice(&data[at..at + 8]);
        u64::from_le_bytes(a)
    }

    /// The client that sent it.
    pub fn client_id(&self) -> ClientId {
        match &self.repr {
            Repr::Joined(data) => ClientId(Self::header_u64(data, 0)),
            Repr::Parts { client, .. } => *client,
        }
    }

    /// The client's sequence number for it.
    pub fn seq(&self) -> ClientSeq {
        match &self.repr {
            Repr::Joined(data) => ClientSeq(Self::header_u64(data, 8)),
            Repr::Parts { seq, .. } => *seq,
        }
    }

    /// The user's payload, without the header (a slice, no copy).
    pub fn payload(&self) -> Bytes {
        match &self.repr {
            Repr::Joined(data) => data.slice(TAG_SIZE_BYTES..),
            Repr::Parts { payload, .. } => payload.clone(),
        }
    }

    /// Size of the payload without the header.
    pub fn payload_size_bytes(&self) -> usize {
        match &self.repr {
            Repr::Joined(data) => data.len() - TAG_SIZE_BYTES,
            Repr::Parts { payload, .. } => payload.len(),
        }
    }

    /// The data of the tagged entry: header then payload. For a received value this is the
    /// slice of the frame (no copy); a locally built value is joined here (one copy).
    pub fn into_entry_data(self) -> Bytes {
        match self.repr {
            Repr::Joined(data) => data,
            Repr::Parts { client, seq, payload } => {
                let mut out = BytesMut::with_capacity(TAG_SIZE_BYTES + payload.len());
                out.put_u64_le(client.get());
                out.put_u64_le(seq.get());
                out.put_slice(&payload);
                out.freeze()
            }
        }
    }
}

impl PartialEq for TaggedPayload {
    fn eq(&self, other: &TaggedPayload) -> bool {
        self.client_id() == other.client_id()
            && self.seq() == other.seq()
            && self.payload() == other.payload()
    }
}

impl Eq for TaggedPayload {}

impl fmt::Debug for TaggedPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Tagged(client {} seq {} {}B)",
            self.client_id().get(),
            self.seq().get(),
            self.payload_size_bytes()
        )
    }
}

/// Append one payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendRequest {
    /// The log to append to.
    pub log: LogId,
    /// The payload with its deduplication header.
    pub tagged: TaggedPayload,
}

/// Append several payloads, in order, as consecutive entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendBatchRequest {
    /// The log to append to.
    pub log: LogId,
    /// The payloads, each with its own deduplication header.
    pub items: Vec<TaggedPayload>,
}

/// Read committed entries from `from` on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadRequest {
    /// The log to read.
    pub log: LogId,
    /// Index of the first entry wanted.
    pub from: LogIndex,
    /// At most this many entries.
    pub count_max: u32,
    /// At most about this many bytes of entry data (at least one entry is returned when one is
    /// available, even if it is larger).
    pub size_bytes_max: u32,
    /// A linearizable read (frame `ReadLinearizable` instead of `Read`): the node first learns
    /// the cluster's commit index as of the request (ReadIndex: its leader confirms with a
    /// majority that it still leads) and answers once it can serve reads up to there, so the
    /// answer holds every entry committed before the request was made. Without it the node
    /// answers from its own commit index at once, which on a follower may trail the leader's.
    pub linearizable: bool,
}

/// Stream committed entries from `from` on, as they commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubscribeRequest {
    /// The log to tail.
    pub log: LogId,
    /// Index of the first entry wanted.
    pub from: LogIndex,
}

/// Ask for a log's status on the node that receives the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusRequest {
    /// The log.
    pub log: LogId,
}

/// Compact the receiving node's copy of a log: forget its entries before `before`, as far as
/// that node may (only committed, durable and applied entries, and only whole segments).
/// Compaction is per node, like an etcd member's snapshots: send it to each node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompactRequest {
    /// The log.
    pub log: LogId,
    /// Forget entries before this index (as far as the node may).
    pub before: LogIndex,
}

/// A client request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientRequest {
    /// Append one payload; answered by [`ClientResponse::Appended`].
    Append(AppendRequest),
    /// Append several payloads; answered by [`ClientResponse::AppendedBatch`].
    AppendBatch(AppendBatchRequest),
    /// Read committed entries; answered by [`ClientResponse::Entries`].
    Read(ReadRequest),
    /// Tail committed entries; answered by a stream of [`ClientResponse::Entries`].
    Subscribe(SubscribeRequest),
    /// A log's status; answered by [`ClientResponse::Status`].
    Status(StatusRequest),
    /// Compact the receiving node's copy; answered by [`ClientResponse::Compacted`].
    Compact(CompactRequest),
}

impl ClientRequest {
    /// Memory the decoded request holds beyond its frame's bytes (which its payloads share):
    /// a batch's items. The node's inbound budget charges the frame's size plus this.
    pub fn decoded_extra_bytes(&self) -> usize {
        match self {
            ClientRequest::AppendBatch(r) => r.items.len() * std::mem::size_of::<TaggedPayload>(),
            _ => 0,
        }
    }

    /// The log the request is about (the node routes it to the shard that owns that log).
    pub fn log(&self) -> LogId {
        match self {
            ClientRequest::Append(r) => r.log,
            ClientRequest::AppendBatch(r) => r.log,
            ClientRequest::Read(r) => r.log,
            ClientRequest::Subscribe(r) => r.log,
            ClientRequest::Status(r) => r.log,
            ClientRequest::Compact(r) => r.log,
        }
    }

    /// A short name of the request kind, for logs.
    pub fn kind_name(&self) -> &'static str {
        match self {
            ClientRequest::Append(_) => "Append",
            ClientRequest::AppendBatch(_) => "AppendBatch",
            ClientRequest::Read(_) => "Read",
            ClientRequest::Subscribe(_) => "Subscribe",
            ClientRequest::Status(_) => "Status",
            ClientRequest::Compact(_) => "Compact",
        }
    }
}

/// Who the leader is, as far as the answering node knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaderHint {
    /// The leader's node id.
    pub node: NodeId,
    /// The leader's client address, when the answering node knows it. IPv6 flow info and scope
    /// id are not carried.
    pub client_addr: Option<SocketAddr>,
}

/// One payload was appended and is durable on a majority.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    /// The log.
    pub log: LogId,
    /// The entry's index.
    pub index: LogIndex,
    /// The entry's term.
    pub term: Term,
}

/// A batch was appended as consecutive entries and is durable on a majority.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendedBatch {
    /// The log.
    pub log: LogId,
    /// Index of the batch's first entry.
    pub first_index: LogIndex,
    /// Number of entries (the batch's size).
    pub count: u32,
    /// Term of the entries.
    pub term: Term,
}

/// Committed entries: the result of a read, or one batch of a subscription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntriesBatch {
    /// The log.
    pub log: LogId,
    /// Consecutive committed entries (possibly none: a read past the end).
    pub entries: Vec<Entry>,
}

/// A node's role in a log's group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// Campaigns (pre-vote or vote).
    Candidate,
    /// Leads.
    Leader,
}

/// A log's status on the answering node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogStatus {
    /// The log.
    pub log: LogId,
    /// The answering node.
    pub node: NodeId,
    /// Its role.
    pub role: Role,
    /// Its current term.
    pub term: Term,
    /// The leader it knows, if any.
    pub leader: Option<LeaderHint>,
    /// Index of the first entry it still has.
    pub first_index: LogIndex,
    /// Index of its last durable entry.
    pub last_index: LogIndex,
    /// Its commit index.
    pub commit_index: LogIndex,
}

/// The answering node compacted its copy of a log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Compacted {
    /// The log.
    pub log: LogId,
    /// The answering node.
    pub node: NodeId,
    /// The node's first index afterwards: entries before it are gone there. It may be below the
    /// index asked for (entries not yet committed, durable or applied on that node, or the rest
    /// of a segment, stay) and never moves back.
    pub first_index: LogIndex,
}

/// The node that answered is not the leader of the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotLeader {
    /// The log.
    pub log: LogId,
    /// The leader, when known: retry there.
    pub leader: Option<LeaderHint>,
}

/// Why a request failed. Each code says what the client can do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// This node hosts no such log: check the log id, or ask another node.
    UnknownLog,
    /// The node is overloaded and shed the request: retry after a pause, same sequence number.
    Overloaded,
    /// The requested index is before the first entry the node still has: start later.
    Compacted,
    /// The request is malformed (for example a read with `count_max` 0): fix it, do not retry.
    InvalidRequest,
    /// The node is shutting down: retry on another node, same sequence number.
    ShuttingDown,
    /// The log refuses writes after a failed fsync: retry on another node.
    Poisoned,
    /// An unexpected failure on the node; it is logged there. Retrying may succeed.
    Internal,
    /// The subscriber fell behind further than the node buffers: subscribe again from the
    /// next index wanted.
    SubscriberLagged,
}

impl ErrorCode {
    pub(crate) fn as_u16(self) -> u16 {
        match self {
            ErrorCode::UnknownLog => 1,
            ErrorCode::Overloaded => 2,
            ErrorCode::Compacted => 3,
            ErrorCode::InvalidRequest => 4,
            ErrorCode::ShuttingDown => 5,
            ErrorCode::Poisoned => 6,
            ErrorCode::Internal => 7,
            ErrorCode::SubscriberLagged => 8,
        }
    }

    pub(crate) fn from_u16(value: u16) -> Option<ErrorCode> {
        Some(match value {
            1 => ErrorCode::UnknownLog,
            2 => ErrorCode::Overloaded,
            3 => ErrorCode::Compacted,
            4 => ErrorCode::InvalidRequest,
            5 => ErrorCode::ShuttingDown,
            6 => ErrorCode::Poisoned,
            7 => ErrorCode::Internal,
            8 => ErrorCode::SubscriberLagged,
            _ => return None,
        })
    }
}

/// A failed request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientError {
    /// What went wrong, for programs.
    pub code: ErrorCode,
    /// What went wrong, for people (at most 65535 bytes of UTF-8).
    pub message: String,
}

/// A response to a client request (several, for a subscription).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientResponse {
    /// Answers [`ClientRequest::Append`].
    Appended(Appended),
    /// Answers [`ClientRequest::AppendBatch`].
    AppendedBatch(AppendedBatch),
    /// Answers [`ClientRequest::Read`]; a subscription's stream is made of these.
    Entries(EntriesBatch),
    /// Answers [`ClientRequest::Status`].
    Status(LogStatus),
    /// Answers [`ClientRequest::Compact`].
    Compacted(Compacted),
    /// Any request that needs the leader reached a node that is not the leader.
    NotLeader(NotLeader),
    /// Any request failed.
    Error(ClientError),
}

impl ClientResponse {
    /// A short name of the response kind, for logs.
    pub fn kind_name(&self) -> &'static str {
        match self {
            ClientResponse::Appended(_) => "Appended",
            ClientResponse::AppendedBatch(_) => "AppendedBatch",
            ClientResponse::Entries(_) => "Entries",
            ClientResponse::Status(_) => "Status",
            ClientResponse::Compacted(_) => "Compacted",
            ClientResponse::NotLeader(_) => "NotLeader",
            ClientResponse::Error(_) => "Error",
        }
    }
}
