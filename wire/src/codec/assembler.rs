//! Reassembly of frames from the chunks a QUIC stream delivers.
//!
//! QUIC hands stream data over in chunks whose boundaries have nothing to do with frames
//! (usually one packet's worth: up to about 6.4 KiB where the path carries the transport's
//! largest packets, as loopback does, 1.2 to 1.4 KiB on an Ethernet-sized path). The assembler
//! queues chunks, decodes each frame header as soon as its 8 bytes are there, checks the
//! declared size against the limits, and then produces the body as one contiguous `Bytes`:
//! - if the whole body lies in one chunk, the body is a slice of that chunk (no copy);
//! - otherwise it is copied once into a buffer of exactly the declared size.
//!
//! Either way every payload decoded from the frame is a slice of that one buffer, so an entry's
//! bytes are copied at most once between the socket and the disk writer.
//!
//! A frame whose header declares a body over the limit is refused, unless the owner asked for
//! such frames to be skipped ([`FrameAssembler::skip_oversized`]; a node's client streams do, so
//! that a request too large for the node is answered alone instead of ending the connection).
//! A skipped frame is reported as soon as the first [`OVERSIZED_PREFIX_BYTES`] of its body are
//! there (a client request's id) and the rest of its body is dropped as it arrives, never
//! gathered.
//!
//! Invariants: at most `FRAME_HEADER_SIZE_BYTES + frame_size_bytes_max` bytes are allocated for a
//! frame, and only after its header passed validation; nothing is allocated for a skipped frame
//! but its prefix, and what arrived of its body is dropped by the next call; after an error the
//! assembler refuses every further call (the stream is broken and must be closed).

use super::error::DecodeError;
use super::frame::{
    FrameHeader, FrameLimits, FrameType, FRAME_HEADER_SIZE_BYTES, FRAME_SIZE_BYTES_FLOOR,
};
use bytes::{Buf, Bytes, BytesMut};
use std::collections::VecDeque;

/// One frame: its validated header and its body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawFrame {
    header: FrameHeader,
    body: Bytes,
}

impl RawFrame {
    /// Splits a buffer holding exactly one whole frame into header and body.
    pub fn split(mut frame: Bytes, limits: &FrameLimits) -> Result<RawFrame, DecodeError> {
        if frame.len() < FRAME_HEADER_SIZE_BYTES {
            return Err(DecodeError::Truncated {
                what: "frame header",
                needed: FRAME_HEADER_SIZE_BYTES,
                available: frame.len(),
            });
        }
        let mut head = [0u8; FRAME_HEADER_SIZE_BYTES];
        head.copy_from_slice(&frame[..FRAME_HEADER_SIZE_BYTES]);
        let header = FrameHeader::decode(&head, limits)?;
        frame.advance(FRAME_HEADER_SIZE_BYTES);
        let declared = header.body_size_bytes() as usize;
        if frame.len() < declared {
            return Err(DecodeError::Truncated {
                what: "frame body",
                needed: declared,
                available: frame.len(),
            });
        }
        if frame.len() > declared {
            return Err(DecodeError::TrailingBytes {
                count: frame.len() - declared,
                frame: "whole-frame buffer",
            });
        }
        Ok(RawFrame { header, body: frame })
    }

    /// The frame's header.
    #[inline]
    pub fn header(&self) -> FrameHeader {
        self.header
    }

    /// The frame's body.
    #[inline]
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// Takes the body.
    #[inline]
    pub fn into_body(self) -> Bytes {
        self.body
    }
}

/// Bytes of a skipped frame's body kept for its answer ([`OversizedFrame::prefix`]): every
/// client request's body starts with its 8-byte request id.
pub const OVERSIZED_PREFIX_BYTES: usize = 8;

// Every body over a limit is longer than the prefix: no limit is below 4 KiB.
const _: () = assert!(OVERSIZED_PREFIX_BYTES as u32 <= FRAME_SIZE_BYTES_FLOOR);

/// A frame whose header declared a body over the limit, skipped rather than refused
/// ([`FrameAssembler::skip_oversized`]): its header's fields and the first
/// [`OVERSIZED_PREFIX_BYTES`] of its body. The rest of its body is dropped as it arrives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OversizedFrame {
    frame_type: FrameType,
    body_size_bytes: u32,
    max_bytes: u32,
    prefix: [u8; OVERSIZED_PREFIX_BYTES],
}

impl OversizedFrame {
    /// The frame's type.
    pub fn frame_type(&self) -> FrameType {
        self.frame_type
    }

    /// The body size its header declared.
    pub fn body_size_bytes(&self) -> u32 {
        self.body_size_bytes
    }

    /// The limit it is over.
    pub fn max_bytes(&self) -> u32 {
        self.max_bytes
    }

    /// The first bytes of its body (a client request's id, little-endian).
    pub fn prefix(&self) -> [u8; OVERSIZED_PREFIX_BYTES] {
        self.prefix
    }

    /// The refusal the frame would have met without skipping.
    pub fn error(&self) -> DecodeError {
        DecodeError::FrameTooLarge {
            size_bytes: u64::from(self.body_size_bytes),
            max_bytes: self.max_bytes,
        }
    }
}

/// What [`FrameAssembler::next_item`] found next on the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Assembled {
    /// A whole frame within the limit.
    Frame(RawFrame),
    /// A frame over the limit, skipped.
    Oversized(OversizedFrame),
}

/// Turns a stream's chunks back into frames.
#[derive(Debug)]
pub struct FrameAssembler {
    limits: FrameLimits,
    chunks: VecDeque<Bytes>,
    buffered_size_bytes: usize,
    /// The header of the frame whose body is being waited for.
    header: Option<FrameHeader>,
    /// Frames over the limit that declare at most this many body bytes are skipped, not refused.
    skip_size_bytes_max: Option<u32>,
    /// The header of a frame being skipped whose prefix is being waited for, with the limit it
    /// is over.
    oversized: Option<(FrameHeader, u32)>,
    /// Bytes of a skipped frame's body still to drop.
    discard_size_bytes: usize,
    failed: bool,
}

impl FrameAssembler {
    /// An empty assembler for frames within `limits`.
    pub fn new(limits: FrameLimits) -> FrameAssembler {
        FrameAssembler {
            limits,
            chunks: VecDeque::new(),
            buffered_size_bytes: 0,
            header: None,
            skip_size_bytes_max: None,
            oversized: None,
            discard_size_bytes: 0,
            failed: false,
        }
    }

    /// Skips, rather than refuses, the frames over the limit whose header declares a body of at
    /// most `size_bytes_max` bytes: [`FrameAssembler::next_item`] reports each as
    /// [`Assembled::Oversized`] once its prefix is there, and drops the rest of its body as it
    /// arrives. A frame declaring more is refused as before (bounding what a sender can make
    /// the reader read and drop for one frame).
    pub fn skip_oversized(&mut self, size_bytes_max: u32) {
        self.skip_size_bytes_max = Some(size_bytes_max);
    }

    /// Checks the frames whose headers come next against `limits` instead (a stream whose first
    /// frame is bounded more tightly than the rest).
    pub fn set_limits(&mut self, limits: FrameLimits) {
        self.limits = limits;
    }

    /// Queues a chunk received from the stream.
    pub fn push(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.buffered_size_bytes += chunk.len();
            self.chunks.push_back(chunk);
        }
    }

    /// Bytes received and not yet returned as frames.
    pub fn buffered_size_bytes(&self) -> usize {
        self.buffered_size_bytes
    }

    /// The next complete frame, `Ok(None)` when more bytes are needed, or why the stream is not
    /// a valid sequence of frames. A frame over the limit is refused, also when skipping is on
    /// (use [`FrameAssembler::next_item`] to be told of it instead).
    pub fn next_frame(&mut self) -> Result<Option<RawFrame>, DecodeError> {
        match self.next_item()? {
            None => Ok(None),
            Some(Assembled::Frame(frame)) => Ok(Some(frame)),
            Some(Assembled::Oversized(oversized)) => Err(self.fail(oversized.error())),
        }
    }

    /// The next complete frame or skipped frame ([`FrameAssembler::skip_oversized`]),
    /// `Ok(None)` when more bytes are needed, or why the stream is not a valid sequence of
    /// frames.
    pub fn next_item(&mut self) -> Result<Option<Assembled>, DecodeError> {
        if self.failed {
            return Err(DecodeError::Truncated {
                what: "stream after an earlier decode error",
                needed: 0,
                available: 0,
            });
        }
        self.discard();
        if self.discard_size_bytes > 0 {
            return Ok(None);
        }
        if let Some((header, max_bytes)) = self.oversized {
            if self.buffered_size_bytes < OVERSIZED_PREFIX_BYTES {
                return Ok(None);
            }
            let mut prefix = [0u8; OVERSIZED_PREFIX_BYTES];
            self.copy_out(&mut prefix);
            self.oversized = None;
            self.discard_size_bytes =
                (header.body_size_bytes() as usize).saturating_sub(OVERSIZED_PREFIX_BYTES);
            self.discard();
            return Ok(Some(Assembled::Oversized(OversizedFrame {
                frame_type: header.frame_type(),
                body_size_bytes: header.body_size_bytes(),
                max_bytes,
                prefix,
            })));
        }
        let header = match self.header {
            Some(header) => header,
            None => {
                if self.buffered_size_bytes < FRAME_HEADER_SIZE_BYTES {
                    return Ok(None);
                }
                let mut head = [0u8; FRAME_HEADER_SIZE_BYTES];
                self.copy_out(&mut head);
                let header = match FrameHeader::decode_unbounded(&head) {
                    Ok(header) => header,
                    Err(e) => return Err(self.fail(e)),
                };
                let size = header.body_size_bytes();
                if size > self.limits.frame_size_bytes_max() {
                    if self.skip_size_bytes_max.is_some_and(|max| size <= max) {
                        self.oversized = Some((header, self.limits.frame_size_bytes_max()));
                        return self.next_item();
                    }
                    return Err(self.fail(header.too_large(&self.limits)));
                }
                self.header = Some(header);
                header
            }
        };
        let size = header.body_size_bytes() as usize;
        if self.buffered_size_bytes < size {
            return Ok(None);
        }
        self.header = None;
        let body = self.take_body(size);
        Ok(Some(Assembled::Frame(RawFrame { header, body })))
    }

    /// Checks that the stream ended on a frame boundary.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.buffered_size_bytes == 0
            && self.header.is_none()
            && self.oversized.is_none()
            && self.discard_size_bytes == 0
        {
            return Ok(());
        }
        let needed = match (self.header, self.oversized) {
            (Some(h), _) => h.body_size_bytes() as usize,
            (None, Some(_)) => OVERSIZED_PREFIX_BYTES,
            (None, None) if self.discard_size_bytes > 0 => self.discard_size_bytes,
            (None, None) => FRAME_HEADER_SIZE_BYTES,
        };
        Err(DecodeError::Truncated {
            what: "frame at end of stream",
            needed,
            available: self.buffered_size_bytes,
        })
    }

    /// Marks the stream broken; returns `error`.
    fn fail(&mut self, error: DecodeError) -> DecodeError {
        self.failed = true;
        error
    }

    /// Drops buffered bytes of a skipped frame's body, as many as are there.
    fn discard(&mut self) {
        while self.discard_size_bytes > 0 {
            let Some(front) = self.chunks.front_mut() else { return };
            let n = front.len().min(self.discard_size_bytes);
            front.advance(n);
            self.discard_size_bytes -= n;
            self.buffered_size_bytes -= n;
            if front.is_empty() {
                self.chunks.pop_front();
            }
        }
    }

    /// Copies the first `out.len()` buffered bytes out (headers and prefixes only: 8 bytes).
    fn copy_out(&mut self, out: &mut [u8]) {
        let mut filled = 0;
        while filled < out.len() {
            let front = self.chunks.front_mut().expect("caller checked the buffered size");
            let n = front.len().min(out.len() - filled);
            out[filled..filled + n].copy_from_slice(&front[..n]);
            front.advance(n);
            filled += n;
            if front.is_empty() {
                self.chunks.pop_front();
            }
        }
        self.buffered_size_bytes -= out.len();
    }

    /// Takes `size` buffered bytes as one `Bytes`: a slice of the front chunk when it holds them
    /// all, else one copy into a buffer of exactly `size` bytes.
    fn take_body(&mut self, size: usize) -> Bytes {
        self.buffered_size_bytes -= size;
        if size == 0 {
            return Bytes::new();
        }
        let front = self.chunks.front_mut().expect("caller checked the buffered size");
        if front.len() >= size {
            let body = front.split_to(size);
            if front.is_empty() {
                self.chunks.pop_front();
            }
            return body;
        }
        let mut body = BytesMut::with_capacity(size);
        while body.len() < size {
            let front = self.chunks.front_mut().expect("caller checked the buffered size");
            let n = front.len().min(size - body.len());
            body.extend_from_slice(&front[..n]);
            front.advance(n);
            if front.is_empty() {
                self.chunks.pop_front();
            }
        }
        body.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::FrameType;

    fn frame(frame_type: FrameType, body: &[u8]) -> Vec<u8> {
        let mut out = FrameHeader::for_encode(frame_type, body.len() as u32).encode().to_vec();
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn frames_split_at_every_byte_come_back_whole() {
        let mut stream = frame(FrameType::TimeoutNow, &[1; 32]);
        stream.extend(frame(FrameType::Status, &[2; 16]));
        stream.extend(frame(FrameType::TimeoutNow, &[]));
        for cut in 0..stream.len() {
            let mut asm = FrameAssembler::new(FrameLimits::default());
            asm.push(Bytes::copy_from_slice(&stream[..cut]));
            let mut got = Vec::new();
            while let Some(f) = asm.next_frame().unwrap() {
                got.push(f);
            }
            asm.push(Bytes::copy_from_slice(&stream[cut..]));
            while let Some(f) = asm.next_frame().unwrap() {
                got.push(f);
            }
            asm.finish().unwrap();
            assert_eq!(got.len(), 3, "cut at {cut}");
            assert_eq!(got[0].body().as_ref(), &[1; 32]);
            assert_eq!(got[1].header().frame_type(), FrameType::Status);
            assert!(got[2].body().is_empty());
        }
    }

    #[test]
    fn single_chunk_body_is_a_slice_of_the_chunk() {
        let stream = Bytes::from(frame(FrameType::Status, &[7; 100]));
        let mut asm = FrameAssembler::new(FrameLimits::default());
        asm.push(stream.clone());
        let f = asm.next_frame().unwrap().unwrap();
        // Same memory: the body points into the pushed chunk.
        assert_eq!(f.body().as_ptr(), stream[FRAME_HEADER_SIZE_BYTES..].as_ptr());
    }

    #[test]
    fn oversized_header_fails_before_buffering_the_body() {
        let limits = FrameLimits::new(4096).unwrap();
        let mut asm = FrameAssembler::new(limits);
        asm.push(Bytes::from(FrameHeader::for_encode(FrameType::Append, 4097).encode().to_vec()));
        assert_eq!(
            asm.next_frame(),
            Err(DecodeError::FrameTooLarge { size_bytes: 4097, max_bytes: 4096 })
        );
        assert!(asm.next_frame().is_err(), "a failed assembler stays failed");
    }

    /// A stream of a frame, an oversized frame and a frame, cut at every byte (and into
    /// chunks of every size): with skipping on, the oversized frame is reported with its
    /// prefix, its body is dropped as it arrives (what is buffered never holds much of it), and
    /// the frames around it come back whole.
    #[test]
    fn an_oversized_frame_is_skipped_without_being_buffered() {
        let limits = FrameLimits::new(4096).unwrap();
        let mut oversized_body = 42u64.to_le_bytes().to_vec();
        oversized_body.resize(10_000, 9);
        let mut stream = frame(FrameType::Status, &[1; 16]);
        stream.extend(frame(FrameType::AppendBatch, &oversized_body));
        stream.extend(frame(FrameType::Append, &[3; 100]));
        for chunk_size in [1, 7, 8, 9, 1000, 4096, stream.len()] {
            let mut asm = FrameAssembler::new(limits);
            asm.skip_oversized(20_000);
            let mut got = Vec::new();
            for chunk in stream.chunks(chunk_size) {
                asm.push(Bytes::copy_from_slice(chunk));
                while let Some(item) = asm.next_item().unwrap() {
                    got.push(item);
                }
                assert!(
                    asm.buffered_size_bytes() < chunk_size.max(FRAME_HEADER_SIZE_BYTES) + 200,
                    "chunks of {chunk_size}: {} bytes buffered",
                    asm.buffered_size_bytes()
                );
            }
            asm.finish().unwrap();
            assert_eq!(got.len(), 3, "chunks of {chunk_size}");
            let Assembled::Oversized(skipped) = &got[1] else { panic!("{:?}", got[1]) };
            assert_eq!(skipped.frame_type(), FrameType::AppendBatch);
            assert_eq!(u64::from_le_bytes(skipped.prefix()), 42);
            assert_eq!(
                skipped.error(),
                DecodeError::FrameTooLarge { size_bytes: 10_000, max_bytes: 4096 }
            );
            let Assembled::Frame(last) = &got[2] else { panic!("{:?}", got[2]) };
            assert_eq!(last.body().as_ref(), &[3; 100]);
        }
    }

    /// A frame declaring more than the skipping bound is refused, as is an oversized frame
    /// when skipping is off, also through `next_frame` with skipping on; a stream that ends
    /// inside a skipped frame is truncated.
    #[test]
    fn oversized_frames_beyond_what_is_skipped_are_refused() {
        let limits = FrameLimits::new(4096).unwrap();
        let header = |size| FrameHeader::for_encode(FrameType::Append, size).encode().to_vec();
        let mut asm = FrameAssembler::new(limits);
        asm.skip_oversized(8192);
        asm.push(Bytes::from(header(8193)));
        assert_eq!(
            asm.next_item(),
            Err(DecodeError::FrameTooLarge { size_bytes: 8193, max_bytes: 4096 })
        );
        assert!(asm.next_item().is_err(), "a failed assembler stays failed");

        let mut asm = FrameAssembler::new(limits);
        asm.skip_oversized(8192);
        let mut bytes = header(8192);
        bytes.extend([0; 8]);
        asm.push(Bytes::from(bytes));
        assert_eq!(
            asm.next_frame(),
            Err(DecodeError::FrameTooLarge { size_bytes: 8192, max_bytes: 4096 })
        );

        let mut asm = FrameAssembler::new(limits);
        asm.skip_oversized(8192);
        let mut bytes = header(8192);
        bytes.extend([0; 100]);
        asm.push(Bytes::from(bytes));
        assert!(matches!(asm.next_item(), Ok(Some(Assembled::Oversized(_)))));
        assert_eq!(asm.next_item(), Ok(None));
        assert_eq!(
            asm.finish(),
            Err(DecodeError::Truncated {
                what: "frame at end of stream",
                needed: 8192 - 100,
                available: 0
            })
        );
    }

    #[test]
    fn stream_ending_inside_a_frame_is_truncated() {
        let stream = frame(FrameType::Status, &[7; 16]);
        let mut asm = FrameAssembler::new(FrameLimits::default());
        asm.push(Bytes::copy_from_slice(&stream[..10]));
        assert_eq!(asm.next_frame(), Ok(None));
        assert!(matches!(asm.finish(), Err(DecodeError::Truncated { .. })));
    }
}
