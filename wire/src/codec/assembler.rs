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
//! Invariants: at most `FRAME_HEADER_SIZE_BYTES + frame_size_bytes_max` bytes are allocated for a
//! frame, and only after its header passed validation; after an error the assembler refuses
//! every further call (the stream is broken and must be closed).

use super::error::DecodeError;
use super::frame::{FrameHeader, FrameLimits, FRAME_HEADER_SIZE_BYTES};
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

/// Turns a stream's chunks back into frames.
#[derive(Debug)]
pub struct FrameAssembler {
    limits: FrameLimits,
    chunks: VecDeque<Bytes>,
    buffered_size_bytes: usize,
    /// The header of the frame whose body is being waited for.
    header: Option<FrameHeader>,
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
            failed: false,
        }
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
    /// a valid sequence of frames.
    pub fn next_frame(&mut self) -> Result<Option<RawFrame>, DecodeError> {
        if self.failed {
            return Err(DecodeError::Truncated {
                what: "stream after an earlier decode error",
                needed: 0,
                available: 0,
            });
        }
        let header = match self.header {
            Some(header) => header,
            None => {
                if self.buffered_size_bytes < FRAME_HEADER_SIZE_BYTES {
                    return Ok(None);
                }
                let mut head = [0u8; FRAME_HEADER_SIZE_BYTES];
                self.copy_out(&mut head);
                match FrameHeader::decode(&head, &self.limits) {
                    Ok(header) => {
                        self.header = Some(header);
                        header
                    }
                    Err(e) => {
                        self.failed = true;
                        return Err(e);
                    }
                }
            }
        };
        let size = header.body_size_bytes() as usize;
        if self.buffered_size_bytes < size {
            return Ok(None);
        }
        self.header = None;
        let body = self.take_body(size);
        Ok(Some(RawFrame { header, body }))
    }

    /// Checks that the stream ended on a frame boundary.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.buffered_size_bytes == 0 && self.header.is_none() {
            return Ok(());
        }
        let needed = match self.header {
            Some(h) => h.body_size_bytes() as usize,
            None => FRAME_HEADER_SIZE_BYTES,
        };
        Err(DecodeError::Truncated {
            what: "frame at end of stream",
            needed,
            available: self.buffered_size_bytes,
        })
    }

    /// Copies the first `out.len()` buffered bytes out (headers only: 8 bytes).
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

    #[test]
    fn stream_ending_inside_a_frame_is_truncated() {
        let stream = frame(FrameType::Status, &[7; 16]);
        let mut asm = FrameAssembler::new(FrameLimits::default());
        asm.push(Bytes::copy_from_slice(&stream[..10]));
        assert_eq!(asm.next_frame(), Ok(None));
        assert!(matches!(asm.finish(), Err(DecodeError::Truncated { .. })));
    }
}
