//! The frame header, the frame types and the frame size bound.
//!
//! Every frame of both protocols starts with the same 8-byte header:
//!
//! ```text
//! offset size field
//! 0      1    version      PROTOCOL_VERSION; anything else is refused
//! 1      1    frame type   FrameType
//! 2      2    reserved     must be zero (room for flags in a later version)
//! 4      4    body length  u32 little-endian, bytes after the header, <= FrameLimits
//! ```
//!
//! Invariant: a [`FrameHeader`] value only exists with a known version, a known type, zero
//! reserved bits and a body length within the limits it was decoded (or built) against. (Inside
//! the codec, the header of a frame the assembler skips as over its limit is the one exception:
//! it never leaves the assembler.)

use super::error::{DecodeError, LimitsError};

/// The protocol version this build speaks. A peer speaking another version is refused at its
/// first frame (the version is in every frame header, so no frame is misread).
pub const PROTOCOL_VERSION: u8 = 1;

/// Size of the frame header in bytes.
pub const FRAME_HEADER_SIZE_BYTES: usize = 8;

/// The largest frame body any configuration may allow (256 MiB). A configured limit above it is
/// refused, so a corrupt or hostile length field can never ask for more memory than this.
pub const FRAME_SIZE_BYTES_CEILING: u32 = 256 * 1024 * 1024;

/// The smallest configurable frame body limit (4 KiB): every fixed-size frame fits in it.
pub(crate) const FRAME_SIZE_BYTES_FLOOR: u32 = 4 * 1024;

/// The default frame body limit (16 MiB): an AppendEntries batch of several MiB fits.
const FRAME_SIZE_BYTES_DEFAULT: u32 = 16 * 1024 * 1024;

/// The bound on a frame's body size, checked on every decoded header before any allocation and
/// on every encoded frame before it is queued.
///
/// Invariant: `FRAME_SIZE_BYTES_FLOOR <= frame_size_bytes_max <= FRAME_SIZE_BYTES_CEILING`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameLimits {
    frame_size_bytes_max: u32,
}

impl FrameLimits {
    /// Limits with a frame body of at most `frame_size_bytes_max` bytes.
    pub fn new(frame_size_bytes_max: u32) -> Result<FrameLimits, LimitsError> {
        if !(FRAME_SIZE_BYTES_FLOOR..=FRAME_SIZE_BYTES_CEILING).contains(&frame_size_bytes_max) {
            return Err(LimitsError::FrameSizeOutOfRange {
                requested_bytes: frame_size_bytes_max,
                floor_bytes: FRAME_SIZE_BYTES_FLOOR,
                ceiling_bytes: FRAME_SIZE_BYTES_CEILING,
            });
        }
        Ok(FrameLimits { frame_size_bytes_max })
    }

    /// The smallest limits there are (a frame body of at most 4 KiB): for reading what must be
    /// small, such as the Hello that opens a peer stream, before the sender is known.
    pub fn smallest() -> FrameLimits {
        FrameLimits { frame_size_bytes_max: FRAME_SIZE_BYTES_FLOOR }
    }

    /// The largest limits there are (a frame body of at most [`FRAME_SIZE_BYTES_CEILING`]): for
    /// reading what a node of any configuration may send, such as a client's answers.
    pub fn largest() -> FrameLimits {
        FrameLimits { frame_size_bytes_max: FRAME_SIZE_BYTES_CEILING }
    }

    /// The largest frame body accepted, in bytes.
    #[inline]
    pub fn frame_size_bytes_max(&self) -> u32 {
        self.frame_size_bytes_max
    }
}

impl Default for FrameLimits {
    fn default() -> FrameLimits {
        FrameLimits { frame_size_bytes_max: FRAME_SIZE_BYTES_DEFAULT }
    }
}

/// Every frame type of both protocols. The numbering groups them: `0x0_` connection set-up,
/// `0x1_` Raft peer messages, `0x4_` client requests, `0x6_` client responses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameType {
    /// Peer stream opener: cluster id, node id, stream kind.
    Hello = 0x01,
    /// Raft RequestVote (and PreVote).
    RequestVote = 0x10,
    /// Raft RequestVote response.
    RequestVoteResponse = 0x11,
    /// Raft AppendEntries.
    AppendEntries = 0x12,
    /// Raft AppendEntries response.
    AppendEntriesResponse = 0x13,
    /// Raft heartbeat.
    Heartbeat = 0x14,
    /// Raft heartbeat response.
    HeartbeatResponse = 0x15,
    /// Raft TimeoutNow.
    TimeoutNow = 0x16,
    /// Raft ReadIndex.
    ReadIndex = 0x17,
    /// Raft ReadIndex response.
    ReadIndexResponse = 0x18,
    /// Raft log start (the follower's log starts after an entry the leader names).
    LogStart = 0x19,
    /// Client: append one payload.
    Append = 0x40,
    /// Client: append several payloads, in order.
    AppendBatch = 0x41,
    /// Client: read committed entries.
    Read = 0x42,
    /// Client: stream committed entries from an index on.
    Subscribe = 0x43,
    /// Client: ask for a log's status.
    Status = 0x44,
    /// Client: compact the receiving node's copy of a log.
    Compact = 0x45,
    /// Client: read committed entries, linearizably (a Read's body).
    ReadLinearizable = 0x46,
    /// Server: one payload appended.
    Appended = 0x60,
    /// Server: a batch appended.
    AppendedBatch = 0x61,
    /// Server: committed entries (read result or subscription batch).
    Entries = 0x62,
    /// Server: a log's status.
    StatusResponse = 0x63,
    /// Server: this node is not the leader; maybe a hint who is.
    NotLeader = 0x64,
    /// Server: the request failed.
    Error = 0x65,
    /// Server: the receiving node compacted its copy of a log.
    Compacted = 0x66,
}

impl FrameType {
    /// Decodes the type byte; `None` for a value this version does not know.
    pub fn from_u8(value: u8) -> Option<FrameType> {
        use FrameType::*;
        Some(match value {
            0x01 => Hello,
            0x10 => RequestVote,
            0x11 => RequestVoteResponse,
            0x12 => AppendEntries,
            0x13 => AppendEntriesResponse,
            0x14 => Heartbeat,
            0x15 => HeartbeatResponse,
            0x16 => TimeoutNow,
            0x17 => ReadIndex,
            0x18 => ReadIndexResponse,
            0x19 => LogStart,
            0x40 => Append,
            0x41 => AppendBatch,
            0x42 => Read,
            0x43 => Subscribe,
            0x44 => Status,
            0x45 => Compact,
            0x46 => ReadLinearizable,
            0x60 => Appended,
            0x61 => AppendedBatch,
            0x62 => Entries,
            0x63 => StatusResponse,
            0x64 => NotLeader,
            0x65 => Error,
            0x66 => Compacted,
            _ => return None,
        })
    }

    /// The type byte.
    #[inline]
    pub fn as_u8(self) -> u8 {
        self as u8
    }
}

/// A decoded, validated frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    frame_type: FrameType,
    body_size_bytes: u32,
}

impl FrameHeader {
    /// Decodes and validates the first [`FRAME_HEADER_SIZE_BYTES`] bytes of a frame.
    pub fn decode(
        bytes: &[u8; FRAME_HEADER_SIZE_BYTES],
        limits: &FrameLimits,
    ) -> Result<FrameHeader, DecodeError> {
        let header = FrameHeader::decode_unbounded(bytes)?;
        if header.body_size_bytes > limits.frame_size_bytes_max() {
            return Err(header.too_large(limits));
        }
        Ok(header)
    }

    /// Decodes a header as [`FrameHeader::decode`] does, but without checking its body size
    /// against any limit: for a reader that skips frames over its limit rather than refusing
    /// them. The value breaks the type's invariant until the caller checked the size.
    pub(crate) fn decode_unbounded(
        bytes: &[u8; FRAME_HEADER_SIZE_BYTES],
    ) -> Result<FrameHeader, DecodeError> {
        let version = bytes[0];
        if version != PROTOCOL_VERSION {
            return Err(DecodeError::BadVersion { found: version, expected: PROTOCOL_VERSION });
        }
        let frame_type = FrameType::from_u8(bytes[1])
            .ok_or(DecodeError::UnknownFrameType { found: bytes[1] })?;
        let reserved = u16::from_le_bytes([bytes[2], bytes[3]]);
        if reserved != 0 {
            return Err(DecodeError::ReservedBitsSet { found: reserved });
        }
        let body_size_bytes = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        Ok(FrameHeader { frame_type, body_size_bytes })
    }

    /// The refusal of this header's body size under `limits`.
    pub(crate) fn too_large(&self, limits: &FrameLimits) -> DecodeError {
        DecodeError::FrameTooLarge {
            size_bytes: u64::from(self.body_size_bytes),
            max_bytes: limits.frame_size_bytes_max(),
        }
    }

    /// The header of a frame the encoder is about to write; the caller has checked the size.
    pub(crate) fn for_encode(frame_type: FrameType, body_size_bytes: u32) -> FrameHeader {
        FrameHeader { frame_type, body_size_bytes }
    }

    /// The header's bytes.
    pub fn encode(&self) -> [u8; FRAME_HEADER_SIZE_BYTES] {
        let mut out = [0u8; FRAME_HEADER_SIZE_BYTES];
        out[0] = PROTOCOL_VERSION;
        out[1] = self.frame_type.as_u8();
        out[4..8].copy_from_slice(&self.body_size_bytes.to_le_bytes());
        out
    }

    /// The frame's type.
    #[inline]
    pub fn frame_type(&self) -> FrameType {
        self.frame_type
    }

    /// Bytes of body after the header.
    #[inline]
    pub fn body_size_bytes(&self) -> u32 {
        self.body_size_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_roundtrip_and_each_refusal() {
        let limits = FrameLimits::new(8192).unwrap();
        let header = FrameHeader::for_encode(FrameType::AppendEntries, 8192);
        let bytes = header.encode();
        assert_eq!(FrameHeader::decode(&bytes, &limits).unwrap(), header);

        let mut bad = bytes;
        bad[0] = 2;
        assert_eq!(
            FrameHeader::decode(&bad, &limits),
            Err(DecodeError::BadVersion { found: 2, expected: 1 })
        );
        let mut bad = bytes;
        bad[1] = 0xEE;
        assert_eq!(
            FrameHeader::decode(&bad, &limits),
            Err(DecodeError::UnknownFrameType { found: 0xEE })
        );
        let mut bad = bytes;
        bad[3] = 1;
        assert_eq!(
            FrameHeader::decode(&bad, &limits),
            Err(DecodeError::ReservedBitsSet { found: 0x100 })
        );
        let too_big = FrameHeader::for_encode(FrameType::AppendEntries, 8193).encode();
        assert_eq!(
            FrameHeader::decode(&too_big, &limits),
            Err(DecodeError::FrameTooLarge { size_bytes: 8193, max_bytes: 8192 })
        );
    }

    #[test]
    fn every_type_byte_roundtrips() {
        for value in 0..=u8::MAX {
            if let Some(t) = FrameType::from_u8(value) {
                assert_eq!(t.as_u8(), value);
            }
        }
    }

    #[test]
    fn limits_are_bounded() {
        assert!(FrameLimits::new(FRAME_SIZE_BYTES_CEILING).is_ok());
        assert!(FrameLimits::new(FRAME_SIZE_BYTES_CEILING + 1).is_err());
        assert!(FrameLimits::new(FRAME_SIZE_BYTES_FLOOR - 1).is_err());
        assert_eq!(FrameLimits::default().frame_size_bytes_max(), FRAME_SIZE_BYTES_DEFAULT);
    }
}
