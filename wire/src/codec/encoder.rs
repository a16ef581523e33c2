//! The zero-copy frame encoder.
//!
//! Frames are written into a list of `Bytes` chunks ready for quinn's `write_chunks`: headers
//! and small fields accumulate in one scratch buffer, and every payload larger than
//! [`INLINE_PAYLOAD_BYTES_MAX`] is handed over as its own chunk (a reference-count increment,
//! not a copy). Many frames can be queued in one encoder; the writer takes all of them at once.
//!
//! Why small payloads are copied: quinn-proto keeps a stream's unacknowledged data as a list of
//! the chunks it was given and, for every packet it builds, walks that list from the front to
//! the packet's offset. With a chunk per 1 KiB payload (two, counting its header) and megabytes
//! in flight, that walk dominated the sender: the transport benchmark measured 0.23 to 0.42 of
//! raw quinn's MB/s with 1 KiB entries handed over as chunks, against 0.79 to 0.87 with them
//! copied into the frame. From 8 KiB on, handing payloads over won (0.93 to 1.04 against 0.77
//! to 0.82 copied), so the threshold sits at 4 KiB.
//!
//! Invariants:
//! 1. `pending_size_bytes` equals the total length of the taken-but-not-yet-returned chunks plus
//!    the scratch buffer; it is what a send window accounts.
//! 2. A frame is either encoded whole or not at all: size checks happen before the first byte.
//! 3. The bytes written for a frame equal the body size its header declares (asserted).

use super::error::EncodeError;
use super::frame::{FrameHeader, FrameLimits, FrameType, FRAME_HEADER_SIZE_BYTES};
use bytes::{BufMut, Bytes, BytesMut};

/// Payloads up to this size are copied next to their header instead of becoming a chunk of
/// their own: below it, a chunk's bookkeeping in quinn's send buffer costs more than the copy
/// (see the module doc for the measurements).
pub const INLINE_PAYLOAD_BYTES_MAX: usize = 4096;

/// Scratch space is reserved in blocks of at least this size, so that encoding many frames costs
/// one allocation per block, not one per frame or per entry, and quinn gets few large chunks.
const SCRATCH_BLOCK_SIZE_BYTES: usize = 256 * 1024;

/// Encodes frames into `Bytes` chunks.
#[derive(Debug)]
pub struct FrameEncoder {
    limits: FrameLimits,
    scratch: BytesMut,
    chunks: Vec<Bytes>,
    pending_size_bytes: usize,
    /// Bytes still to be written for the frame being encoded (checks invariant 3).
    frame_remaining_bytes: u64,
}

impl FrameEncoder {
    /// An empty encoder that refuses frames over `limits`.
    pub fn new(limits: FrameLimits) -> FrameEncoder {
        FrameEncoder {
            limits,
            scratch: BytesMut::new(),
            chunks: Vec::new(),
            pending_size_bytes: 0,
            frame_remaining_bytes: 0,
        }
    }

    /// The limits frames are checked against.
    pub fn limits(&self) -> &FrameLimits {
        &self.limits
    }

    /// Bytes encoded and not yet taken.
    #[inline]
    pub fn pending_size_bytes(&self) -> usize {
        self.pending_size_bytes
    }

    /// True when nothing is waiting to be taken.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.pending_size_bytes == 0
    }

    /// Moves every encoded chunk to the end of `out`, in order, and empties the encoder.
    pub fn take_chunks(&mut self, out: &mut Vec<Bytes>) {
        self.flush_scratch();
        out.append(&mut self.chunks);
        self.pending_size_bytes = 0;
    }

    /// Takes everything encoded so far as one contiguous buffer (tests, fuzzing and tools; the
    /// transport uses [`FrameEncoder::take_chunks`]).
    pub fn take_contiguous(&mut self) -> Bytes {
        let mut chunks = Vec::new();
        self.take_chunks(&mut chunks);
        let mut out = BytesMut::with_capacity(chunks.iter().map(Bytes::len).sum());
        for chunk in chunks {
            out.extend_from_slice(&chunk);
        }
        out.freeze()
    }

    /// Starts a frame: checks the body size against the limits, reserves scratch space for its
    /// fixed part and writes the header. `inline_size_bytes` is the part of the body that will
    /// go through the scratch buffer.
    pub(crate) fn begin_frame(
        &mut self,
        frame_type: FrameType,
        body_size_bytes: u64,
        inline_size_bytes: usize,
    ) -> Result<(), EncodeError> {
        assert_eq!(self.frame_remaining_bytes, 0, "a frame was left unfinished");
        let max_bytes = self.limits.frame_size_bytes_max();
        if body_size_bytes > u64::from(max_bytes) {
            return Err(EncodeError::FrameTooLarge { size_bytes: body_size_bytes, max_bytes });
        }
        let needed = FRAME_HEADER_SIZE_BYTES + inline_size_bytes;
        if self.scratch.capacity() - self.scratch.len() < needed {
            // Close the filled part as a chunk first: growing a buffer that still holds data
            // would copy that data into the new allocation.
            self.flush_scratch();
            self.scratch.reserve(needed.max(SCRATCH_BLOCK_SIZE_BYTES));
        }
        // The size is at most the limit, which is at most FRAME_SIZE_BYTES_CEILING < u32::MAX.
        let header = FrameHeader::for_encode(frame_type, body_size_bytes as u32);
        self.scratch.put_slice(&header.encode());
        self.pending_size_bytes += FRAME_HEADER_SIZE_BYTES;
        self.frame_remaining_bytes = body_size_bytes;
        Ok(())
    }

    /// Ends a frame, checking that its body was exactly as long as its header declared.
    pub(crate) fn end_frame(&mut self) {
        assert_eq!(
            self.frame_remaining_bytes, 0,
            "frame body shorter than its declared size: the size computation is wrong"
        );
    }

    #[inline]
    fn account(&mut self, size: usize) {
        self.frame_remaining_bytes = self
            .frame_remaining_bytes
            .checked_sub(size as u64)
            .expect("frame body longer than its declared size: the size computation is wrong");
        self.pending_size_bytes += size;
    }

    #[inline]
    pub(crate) fn put_u8(&mut self, value: u8) {
        self.account(1);
        self.scratch.put_u8(value);
    }

    #[inline]
    pub(crate) fn put_u16(&mut self, value: u16) {
        self.account(2);
        self.scratch.put_u16_le(value);
    }

    #[inline]
    pub(crate) fn put_u32(&mut self, value: u32) {
        self.account(4);
        self.scratch.put_u32_le(value);
    }

    #[inline]
    pub(crate) fn put_u64(&mut self, value: u64) {
        self.account(8);
        self.scratch.put_u64_le(value);
    }

    pub(crate) fn put_option_u64(&mut self, value: Option<u64>) {
        match value {
            Some(v) => {
                self.put_u8(1);
                self.put_u64(v);
            }
            None => self.put_u8(0),
        }
    }

    /// Small byte strings (addresses, text) always go through the scratch buffer.
    pub(crate) fn put_slice(&mut self, value: &[u8]) {
        self.account(value.len());
        self.scratch.put_slice(value);
    }

    /// A payload: copied when small, otherwise handed over as a chunk of its own.
    pub(crate) fn put_payload(&mut self, payload: &Bytes) {
        if payload.len() <= INLINE_PAYLOAD_BYTES_MAX {
            self.put_slice(payload);
            return;
        }
        self.account(payload.len());
        self.flush_scratch();
        self.chunks.push(payload.clone());
    }

    /// Closes the current scratch run as a chunk. `split` keeps the rest of the allocation for
    /// the next headers, so this does not allocate.
    fn flush_scratch(&mut self) {
        if !self.scratch.is_empty() {
            self.chunks.push(self.scratch.split().freeze());
        }
    }
}

/// The scratch bytes a payload takes when encoded by [`FrameEncoder::put_payload`].
#[inline]
pub(crate) fn inline_size(payload: &Bytes) -> usize {
    if payload.len() <= INLINE_PAYLOAD_BYTES_MAX {
        payload.len()
    } else {
        0
    }
}
