//! The binary codec: versioned, length-prefixed frames for the peer and the client protocols.
//!
//! Owns the byte layout of every frame (documented in `docs/protocol.md`), the bound on a frame's
//! size ([`FrameLimits`]), the zero-copy encoder ([`FrameEncoder`]), the receive-side reassembly
//! of frames from stream chunks ([`FrameAssembler`]) and the decoders. It performs no I/O and
//! reads no clock.
//!
//! Invariants:
//! 1. Every decoder takes bytes from the network as untrusted: on bad input it returns a
//!    [`DecodeError`] that says what is wrong; it never panics.
//! 2. Nothing is allocated before the size it depends on has been checked against a bound: a
//!    frame's body against [`FrameLimits`], an item count against the bytes left in the frame.
//! 3. Decoded payloads (entry data, append payloads) are slices of the frame's buffer: no copy.
//! 4. The encoder hands large payloads over as separate `Bytes` chunks instead of copying them,
//!    and never produces a frame its own limits would refuse to decode.

mod assembler;
mod client;
mod cursor;
mod encoder;
mod entries;
mod error;
mod frame;
mod peer;

pub use assembler::{Assembled, FrameAssembler, OversizedFrame, RawFrame, OVERSIZED_PREFIX_BYTES};
pub use client::{decode_client_request, decode_client_response};
pub use encoder::{FrameEncoder, INLINE_PAYLOAD_BYTES_MAX};
pub use error::{DecodeError, EncodeError, LimitsError};
pub use frame::{
    FrameHeader, FrameLimits, FrameType, FRAME_HEADER_SIZE_BYTES, FRAME_SIZE_BYTES_CEILING,
    PROTOCOL_VERSION,
};
pub use peer::{decode_peer_frame, log_start_clients_max, Hello, PeerFrame, StreamKind};

/// Decodes one whole frame (header and body, nothing after it) of the peer protocol.
///
/// The receive path uses [`FrameAssembler`] and [`decode_peer_frame`]; this is the same decoder
/// for a frame that is already contiguous (tests, fuzzing, tools).
pub fn decode_peer_frame_bytes(
    frame: bytes::Bytes,
    limits: &FrameLimits,
) -> Result<PeerFrame, DecodeError> {
    let raw = RawFrame::split(frame, limits)?;
    decode_peer_frame(raw)
}

/// Decodes one whole client request frame (header and body, nothing after it).
pub fn decode_client_request_bytes(
    frame: bytes::Bytes,
    limits: &FrameLimits,
) -> Result<(crate::client::RequestId, crate::client::ClientRequest), DecodeError> {
    let raw = RawFrame::split(frame, limits)?;
    decode_client_request(raw)
}

/// Decodes one whole client response frame (header and body, nothing after it).
pub fn decode_client_response_bytes(
    frame: bytes::Bytes,
    limits: &FrameLimits,
) -> Result<(crate::client::RequestId, crate::client::ClientResponse), DecodeError> {
    let raw = RawFrame::split(frame, limits)?;
    decode_client_response(raw)
}
