//! The fuzzing oracles: one function per decoder, shared by the cargo-fuzz targets in `fuzz/`
//! and by the tests that replay the fuzz corpora on stable Rust (`wire/tests/fuzz_corpus.rs`).
//!
//! Each function feeds arbitrary bytes to a decoder. Decoding may fail (that is the expected
//! outcome for most inputs); it must not panic, and whatever decodes must encode again and decode
//! to the same value. A panic here is a bug the fuzzer found. Each returns whether the input
//! decoded, so the corpus tests can check that their seeds reach past the first check;
//! [`replay_corpus`] runs a target's corpus through an oracle for those tests (this crate's and
//! the engine's, whose storage and consensus oracles live in `raftwal::fuzzing`).
//!
//! The limits used are small ([`FUZZ_FRAME_SIZE_BYTES_MAX`]) so that the fuzzer reaches the
//! frame-size check with short inputs.

use crate::codec::{
    decode_client_request, decode_client_request_bytes, decode_client_response,
    decode_client_response_bytes, decode_peer_frame, decode_peer_frame_bytes, FrameAssembler,
    FrameEncoder, FrameLimits, FrameType, PeerFrame,
};
use bytes::Bytes;

/// The frame body bound the oracles decode with.
pub const FUZZ_FRAME_SIZE_BYTES_MAX: u32 = 64 * 1024;

fn limits() -> FrameLimits {
    FrameLimits::new(FUZZ_FRAME_SIZE_BYTES_MAX).expect("the fuzz limit is within the allowed range")
}

fn reencode_peer(frame: &PeerFrame) -> Bytes {
    let mut enc = FrameEncoder::new(limits());
    let result = match frame {
        PeerFrame::Hello(h) => enc.encode_hello(h),
        PeerFrame::Message(m) => enc.encode_message(m),
    };
    result.expect("a decoded peer frame encodes again");
    enc.take_contiguous()
}

/// Decodes `data` as one whole peer frame.
pub fn peer_frame(data: &[u8]) -> bool {
    let Ok(frame) = decode_peer_frame_bytes(Bytes::copy_from_slice(data), &limits()) else {
        return false;
    };
    let again = decode_peer_frame_bytes(reencode_peer(&frame), &limits())
        .expect("a re-encoded peer frame decodes");
    assert_eq!(frame, again, "peer frame changed through encode and decode");
    true
}

/// Decodes `data` as one whole client request frame.
pub fn client_request(data: &[u8]) -> bool {
    let Ok((id, request)) = decode_client_request_bytes(Bytes::copy_from_slice(data), &limits())
    else {
        return false;
    };
    let mut enc = FrameEncoder::new(limits());
    enc.encode_request(id, &request).expect("a decoded request encodes again");
    let again = decode_client_request_bytes(enc.take_contiguous(), &limits())
        .expect("a re-encoded request decodes");
    assert_eq!((id, request), again, "request changed through encode and decode");
    true
}

/// Decodes `data` as one whole client response frame.
pub fn client_response(data: &[u8]) -> bool {
    let Ok((id, response)) = decode_client_response_bytes(Bytes::copy_from_slice(data), &limits())
    else {
        return false;
    };
    let mut enc = FrameEncoder::new(limits());
    enc.encode_response(id, &response).expect("a decoded response encodes again");
    let again = decode_client_response_bytes(enc.take_contiguous(), &limits())
        .expect("a re-encoded response decodes");
    assert_eq!((id, response), again, "response changed through encode and decode");
    true
}

/// Feeds `data` to a [`FrameAssembler`] as a stream cut into chunks (the first byte picks the
/// chunk size), and decodes every frame it yields with the decoder its type belongs to, as the
/// transport's stream readers do.
pub fn frame_stream(data: &[u8]) -> bool {
    let Some((&seed, stream)) = data.split_first() else {
        return false;
    };
    let mut decoded_any = false;
    let chunk_size = usize::from(seed % 64) + 1;
    let mut asm = FrameAssembler::new(limits());
    for chunk in stream.chunks(chunk_size) {
        asm.push(Bytes::copy_from_slice(chunk));
        loop {
            match asm.next_frame() {
                Ok(Some(frame)) => {
                    let t = frame.header().frame_type().as_u8();
                    let ok = if t < FrameType::Append.as_u8() {
                        decode_peer_frame(frame).is_ok()
                    } else if t < FrameType::Appended.as_u8() {
                        decode_client_request(frame).is_ok()
                    } else {
                        decode_client_response(frame).is_ok()
                    };
                    decoded_any |= ok;
                }
                Ok(None) => break,
                Err(_) => return decoded_any,
            }
        }
    }
    // Whether the stream ended mid-frame does not change what was decoded.
    let _ = asm.finish();
    decoded_any
}

/// Inputs of a corpus that must get past the first check (fewer means the seeds are stale).
const CORPUS_PASSING_MIN: usize = 3;

/// Replays every file of the fuzz corpus of `target` (`fuzz/corpus/<target>/` in the
/// workspace) through `oracle`, for the tests that run the fuzz corpora on stable Rust (this
/// crate's and the engine's). Panics, naming the file, if the directory is missing or holds
/// fewer than 4 inputs, if an input makes the oracle panic, or if fewer than 3 inputs get past
/// the first check (stale seeds).
pub fn replay_corpus(target: &str, oracle: fn(&[u8]) -> bool) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target);
    let mut inputs: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {} is missing: {e}", dir.display()))
        .map(|entry| entry.expect("readable corpus directory").path())
        .collect();
    inputs.sort();
    assert!(inputs.len() >= 4, "corpus {} has only {} inputs", dir.display(), inputs.len());
    let mut passed = 0;
    for path in inputs {
        let data = std::fs::read(&path).expect("readable corpus file");
        match std::panic::catch_unwind(|| oracle(&data)) {
            Ok(true) => passed += 1,
            Ok(false) => {}
            Err(_) => panic!("the oracle panics on {}", path.display()),
        }
    }
    assert!(
        passed >= CORPUS_PASSING_MIN,
        "only {passed} inputs of {} get past the first check: the seeds are stale",
        dir.display()
    );
}
