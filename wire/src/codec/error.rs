//! The codec's errors: one enum per operation (decode, encode, limits configuration).
//!
//! A [`DecodeError`] always means the bytes came from a peer or client that is broken, hostile or
//! speaks another version: the caller closes that connection (saying why) and goes on serving
//! everyone else. An [`EncodeError`] means the caller asked to send something that the protocol
//! cannot carry; nothing was queued.

use thiserror::Error;

/// Why bytes received from the network are not a valid frame.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The frame header names a protocol version this build does not speak.
    #[error("bad protocol version {found} (this node speaks version {expected})")]
    BadVersion {
        /// The version byte received.
        found: u8,
        /// The version this build speaks.
        expected: u8,
    },
    /// The frame header's type byte is not a frame type of any protocol.
    #[error("unknown frame type 0x{found:02x}")]
    UnknownFrameType {
        /// The type byte received.
        found: u8,
    },
    /// A known frame type arrived on a stream where it has no meaning (a client request on a
    /// peer stream, a Raft message before the Hello, ...).
    #[error("unexpected frame type {found:?} on {context}")]
    UnexpectedFrameType {
        /// The type received.
        found: super::FrameType,
        /// Where it arrived.
        context: &'static str,
    },
    /// The header's reserved bits are not zero.
    #[error("reserved header bits set (0x{found:04x})")]
    ReservedBitsSet {
        /// The reserved field received.
        found: u16,
    },
    /// The declared body size is above the configured bound; nothing was allocated for it.
    #[error("frame of {size_bytes} bytes is over the limit of {max_bytes} bytes")]
    FrameTooLarge {
        /// The size declared by the frame header.
        size_bytes: u64,
        /// The configured limit.
        max_bytes: u32,
    },
    /// The input ended before a field or a frame was complete.
    #[error("truncated {what}: needed {needed} more bytes, {available} available")]
    Truncated {
        /// The field or structure being read.
        what: &'static str,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes that were left.
        available: usize,
    },
    /// A frame's body has bytes left after its last field.
    #[error("{count} trailing bytes after the end of a {frame} frame")]
    TrailingBytes {
        /// Number of unread bytes.
        count: usize,
        /// The frame type being decoded.
        frame: &'static str,
    },
    /// A field holds a value the protocol does not define (a kind byte, a flag, an option tag).
    #[error("invalid {what}: {value}")]
    InvalidValue {
        /// The field.
        what: &'static str,
        /// The value received.
        value: u64,
    },
    /// A count field promises more items than the rest of the frame can hold.
    #[error("{what} count {count} cannot fit in the {available} bytes left in the frame")]
    CountTooLarge {
        /// The field.
        what: &'static str,
        /// The count received.
        count: u64,
        /// Bytes left in the frame.
        available: usize,
    },
    /// Entry indices would reach u64::MAX, which no entry holds (no index could follow it).
    #[error("entry indices overflow: first index {first} with {count} entries")]
    IndexOverflow {
        /// Index of the first entry.
        first: u64,
        /// Number of entries.
        count: u64,
    },
    /// A text field is not UTF-8.
    #[error("{what} is not valid UTF-8")]
    InvalidUtf8 {
        /// The field.
        what: &'static str,
    },
}

/// Why a value could not be encoded; nothing was queued.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum EncodeError {
    /// The encoded body would be over the frame size limit: split the batch (fewer entries per
    /// AppendEntries, a smaller append batch) and send again.
    #[error("encoded frame of {size_bytes} bytes is over the limit of {max_bytes} bytes")]
    FrameTooLarge {
        /// The size the body would have.
        size_bytes: u64,
        /// The configured limit.
        max_bytes: u32,
    },
    /// The entries of an AppendEntries or Entries batch are not consecutive from the batch's
    /// first index; the wire format carries only the first index, so this is a caller bug.
    #[error(
        "entry {position} has index {found}, expected {expected}: entries must be consecutive"
    )]
    EntriesNotConsecutive {
        /// Position of the offending entry in the batch.
        position: usize,
        /// Its index.
        found: u64,
        /// The index it should have.
        expected: u64,
    },
    /// A text field is longer than its 16-bit length prefix allows.
    #[error("{what} is {size_bytes} bytes, more than {max_bytes}")]
    TextTooLong {
        /// The field.
        what: &'static str,
        /// Its size.
        size_bytes: usize,
        /// The largest encodable size.
        max_bytes: usize,
    },
}

/// Why a frame limit configuration is refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum LimitsError {
    /// The frame size bound is outside what the protocol allows.
    #[error(
        "frame size limit of {requested_bytes} bytes is outside [{floor_bytes}, {ceiling_bytes}]"
    )]
    FrameSizeOutOfRange {
        /// The requested bound.
        requested_bytes: u32,
        /// The smallest allowed bound.
        floor_bytes: u32,
        /// The largest allowed bound.
        ceiling_bytes: u32,
    },
}
