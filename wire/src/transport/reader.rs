//! Reading frames from a quinn receive stream.
//!
//! Chunks from quinn go into a [`FrameAssembler`], which hands back whole frames (each
//! reassembled at most once). Errors distinguish a broken stream (the connection's problem) from
//! bytes that are not valid frames (the sender's fault, closed with a protocol error).

use crate::codec::{Assembled, DecodeError, FrameAssembler, FrameLimits, RawFrame};
use thiserror::Error;

/// Why reading the next frame failed.
#[derive(Debug, Error)]
pub(crate) enum ReadFrameError {
    /// The sender sent bytes that are not a valid frame.
    #[error("{0}")]
    Decode(#[from] DecodeError),
    /// The stream or its connection failed.
    #[error("stream failed: {0}")]
    Stream(#[from] quinn::ReadError),
}

/// A stream error as text that keeps the connection's reason: quinn's own text for a lost
/// connection is only "connection lost", while its cause holds the node's close code and reason
/// (for example a node that serves its maximum of clients). For a lost connection it is the
/// cause alone, as it goes into a `RequestError::ConnectionLost`, whose text says the rest.
pub(crate) fn read_error_text(e: &quinn::ReadError) -> String {
    match e {
        quinn::ReadError::ConnectionLost(cause) => cause.to_string(),
        other => other.to_string(),
    }
}

/// The same for a write.
pub(crate) fn write_error_text(e: &quinn::WriteError) -> String {
    match e {
        quinn::WriteError::ConnectionLost(cause) => cause.to_string(),
        other => other.to_string(),
    }
}

/// Frames from one receive stream.
#[derive(Debug)]
pub(crate) struct FrameReader {
    stream: quinn::RecvStream,
    assembler: FrameAssembler,
}

impl FrameReader {
    pub(crate) fn new(stream: quinn::RecvStream, limits: FrameLimits) -> FrameReader {
        FrameReader { stream, assembler: FrameAssembler::new(limits) }
    }

    /// Checks the frames whose headers come next against `limits` instead.
    pub(crate) fn set_limits(&mut self, limits: FrameLimits) {
        self.assembler.set_limits(limits);
    }

    /// Skips, rather than refuses, frames over the limit that declare at most `size_bytes_max`
    /// body bytes ([`FrameAssembler::skip_oversized`]); [`FrameReader::next_item`] reports them.
    pub(crate) fn skip_oversized(&mut self, size_bytes_max: u32) {
        self.assembler.skip_oversized(size_bytes_max);
    }

    /// The next frame, or `None` when the stream ended cleanly between frames.
    pub(crate) async fn next(&mut self) -> Result<Option<RawFrame>, ReadFrameError> {
        loop {
            if let Some(frame) = self.assembler.next_frame()? {
                return Ok(Some(frame));
            }
            if !self.read_more().await? {
                return Ok(None);
            }
        }
    }

    /// The next frame or skipped frame, or `None` when the stream ended cleanly between frames.
    /// The rest of a skipped frame's body is read and dropped by the calls that follow.
    pub(crate) async fn next_item(&mut self) -> Result<Option<Assembled>, ReadFrameError> {
        loop {
            if let Some(item) = self.assembler.next_item()? {
                return Ok(Some(item));
            }
            if !self.read_more().await? {
                return Ok(None);
            }
        }
    }

    /// Gives the assembler the stream's next chunk; `false` when the stream ended cleanly
    /// between frames.
    async fn read_more(&mut self) -> Result<bool, ReadFrameError> {
        match self.stream.read_chunk(usize::MAX, true).await? {
            Some(chunk) => {
                self.assembler.push(chunk.bytes);
                Ok(true)
            }
            None => {
                self.assembler.finish()?;
                Ok(false)
            }
        }
    }

    /// Asks the sender to stop (when the reader gives up on the stream).
    pub(crate) fn stop(&mut self, code: u32) {
        // The stream may already be finished or reset; there is nothing more to do then.
        let _ = self.stream.stop(quinn::VarInt::from_u32(code));
    }
}
