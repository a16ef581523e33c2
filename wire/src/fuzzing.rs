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
    decode_client_response_bytes, decode_peer_frame, decode_peer_frame_bytes, Assembled,
    FrameAssembler, FrameEncoder, FrameLimits, FrameType, PeerFrame, FRAME_HEADER_SIZE_BYTES,
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

/// Feeds `data` to a [`FrameAssembler`] as a stream cut into chunks (the first byte's low six
/// bits pick the chunk size; its top bit has the assembler skip frames over the limit, up to
/// twice it, as a node's client streams do), and decodes every frame it yields with the decoder
/// its type belongs to, as the transport's stream readers do. A skipped frame's body must never
/// be held: what the assembler buffers stays below a chunk plus a frame.
pub fn frame_stream(data: &[u8]) -> bool {
    let Some((&seed, stream)) = data.split_first() else {
        return false;
    };
    let mut decoded_any = false;
    let chunk_size = usize::from(seed % 64) + 1;
    let mut asm = FrameAssembler::new(limits());
    if seed & 0x80 != 0 {
        asm.skip_oversized(2 * FUZZ_FRAME_SIZE_BYTES_MAX);
    }
    let held_max = chunk_size + FRAME_HEADER_SIZE_BYTES + FUZZ_FRAME_SIZE_BYTES_MAX as usize;
    for chunk in stream.chunks(chunk_size) {
        asm.push(Bytes::copy_from_slice(chunk));
        loop {
            let item = asm.next_item();
            assert!(asm.buffered_size_bytes() <= held_max, "the assembler holds too much");
            match item {
                Ok(Some(Assembled::Oversized(_))) => decoded_any = true,
                Ok(Some(Assembled::Frame(frame))) => {
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

#[cfg(test)]
mod tests {
    //! Hand-made inputs at the top of the integer ranges, through the oracles.

    use super::{client_request, client_response, frame_stream, peer_frame};

    const MAX: u64 = u64::MAX;

    fn frame(frame_type: u8, fields: &[&[u8]]) -> Vec<u8> {
        let body: Vec<u8> = fields.concat();
        let size = u32::try_from(body.len()).expect("a small body");
        let mut out = vec![1, frame_type, 0, 0];
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    fn u64le(value: u64) -> [u8; 8] {
        value.to_le_bytes()
    }

    /// A run of `count` no-ops of term 1.
    fn noops(count: u32) -> Vec<u8> {
        let mut out = count.to_le_bytes().to_vec();
        for _ in 0..count {
            out.extend_from_slice(&u64le(1));
            out.push(1);
            out.extend_from_slice(&0u32.to_le_bytes());
        }
        out
    }

    fn entries_response(first: u64, count: u32) -> Vec<u8> {
        frame(0x62, &[&u64le(7), &u64le(1), &u64le(first), &noops(count)])
    }

    fn append_entries(prev: u64, count: u32) -> Vec<u8> {
        let header = [u64le(1), u64le(2), u64le(1), u64le(MAX - 1)].concat();
        frame(0x12, &[&header, &u64le(prev), &u64le(1), &u64le(MAX), &noops(count)])
    }

    /// An entry at u64::MAX leaves no index after it: a client reading from a node that sent one
    /// went on from `last + 1`, an overflow (a panic of the client). Refused at decode now, in
    /// the client protocol's Entries and the peer protocol's AppendEntries alike.
    #[test]
    fn no_entry_run_reaches_the_last_index() {
        assert!(!client_response(&entries_response(MAX, 1)), "an entry at u64::MAX");
        assert!(!client_response(&entries_response(MAX - 1, 2)), "a run ending at u64::MAX");
        assert!(client_response(&entries_response(MAX - 1, 1)), "a run ending below it");
        assert!(client_response(&entries_response(MAX, 0)), "an empty run after the end");
        assert!(!peer_frame(&append_entries(MAX - 1, 1)), "an entry at u64::MAX");
        assert!(!peer_frame(&append_entries(MAX, 1)), "an entry after u64::MAX");
        assert!(peer_frame(&append_entries(MAX - 2, 1)), "a run ending below it");
        assert!(peer_frame(&append_entries(MAX, 0)), "a probe after the end (the gateway's job)");
        let stream = [&[7u8][..], &entries_response(MAX, 1)].concat();
        assert!(!frame_stream(&stream));
    }

    /// Values at the top of the range decode (and encode again) wherever the protocol allows
    /// any u64: refusing them is the consensus gateway's job, or the node's.
    #[test]
    fn the_largest_values_decode_where_any_value_is_allowed() {
        let header = [u64le(MAX), u64le(MAX), u64le(MAX), u64le(MAX)].concat();
        let client = [u64le(MAX), u64le(MAX)].concat();
        let log_start = frame(
            0x19,
            &[&header, &u64le(MAX), &u64le(MAX), &u64le(MAX), &1u32.to_le_bytes(), &client],
        );
        assert!(peer_frame(&log_start));
        let heartbeat = frame(0x14, &[&header, &u64le(MAX), &[1], &u64le(MAX)]);
        assert!(peer_frame(&heartbeat));
        let reject = frame(0x13, &[&header, &[1], &u64le(MAX), &u64le(MAX), &u64le(MAX)]);
        assert!(peer_frame(&reject));
        let vote = frame(0x10, &[&header, &[0b11], &u64le(MAX), &u64le(MAX)]);
        assert!(peer_frame(&vote));
        let read_index = frame(0x18, &[&header, &u64le(MAX), &[1], &u64le(MAX)]);
        assert!(peer_frame(&read_index));
        let top = u32::MAX.to_le_bytes();
        let read = frame(0x42, &[&u64le(MAX), &u64le(MAX), &u64le(MAX), &top, &top]);
        assert!(client_request(&read));
        let subscribe = frame(0x43, &[&u64le(MAX), &u64le(MAX), &u64le(MAX)]);
        assert!(client_request(&subscribe));
        let status = frame(0x44, &[&u64le(MAX), &u64le(MAX)]);
        assert!(client_request(&status));
        let batch = frame(0x61, &[&u64le(MAX), &u64le(MAX), &u64le(MAX), &top, &u64le(MAX)]);
        assert!(client_response(&batch));
        let appended = frame(0x60, &[&u64le(MAX), &u64le(MAX), &u64le(MAX), &u64le(MAX)]);
        assert!(client_response(&appended));
    }
}
