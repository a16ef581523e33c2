//! The encoding of a run of consecutive log entries, shared by AppendEntries (peer protocol) and
//! Entries (client protocol).
//!
//! ```text
//! count        u32
//! then count times:
//!   term       u64
//!   kind       u8   EntryKind
//!   data_size  u32
//!   data       data_size bytes
//! ```
//!
//! Indices are not on the wire: entry `k` has index `first_index + k`, where the enclosing frame
//! carries `first_index`. That saves 8 bytes per entry and makes "consecutive" true by
//! construction on the receiving side.
//!
//! Invariants of a decoded run: consecutive indices below u64::MAX (which no entry holds); every kind known; a Noop
//! carries no data; a Tagged entry carries at least its 16-byte client id and sequence header.

use super::cursor::Cursor;
use super::encoder::{inline_size, FrameEncoder};
use super::error::{DecodeError, EncodeError};
use crate::types::{Entry, EntryKind, LogIndex, Term};

/// Bytes of an entry's fixed header: term, kind, data size.
pub(crate) const ENTRY_HEADER_SIZE_BYTES: usize = 8 + 1 + 4;

/// Size of the header that starts the data of a Tagged entry (client id and sequence number).
pub(crate) const TAG_SIZE_BYTES: usize = 16;

/// Encoded size of a run, and the part of it that goes through the scratch buffer. Also checks
/// that the run is consecutive from `first_index`.
pub(crate) fn run_size(
    first_index: LogIndex,
    entries: &[Entry],
) -> Result<(u64, usize), EncodeError> {
    let mut size: u64 = 4;
    let mut inline: usize = 4;
    for (position, entry) in entries.iter().enumerate() {
        let expected = first_index.get().wrapping_add(position as u64);
        if entry.index.get() != expected {
            return Err(EncodeError::EntriesNotConsecutive {
                position,
                found: entry.index.get(),
                expected,
            });
        }
        size += (ENTRY_HEADER_SIZE_BYTES + entry.data.len()) as u64;
        inline += ENTRY_HEADER_SIZE_BYTES + inline_size(&entry.data);
    }
    Ok((size, inline))
}

/// Writes a run whose size [`run_size`] has accounted.
pub(crate) fn put_run(enc: &mut FrameEncoder, entries: &[Entry]) {
    // The frame limit (at most 256 MiB) bounds the count far below u32::MAX.
    enc.put_u32(u32::try_from(entries.len()).expect("entry count bounded by the frame limit"));
    for entry in entries {
        enc.put_u64(entry.term.get());
        enc.put_u8(entry.kind.as_u8());
        enc.put_u32(
            u32::try_from(entry.data.len()).expect("entry size bounded by the frame limit"),
        );
        enc.put_payload(&entry.data);
    }
}

/// Reads a run whose first entry has index `first_index`. Each entry's data is a slice of the
/// frame's buffer.
pub(crate) fn get_run(cur: &mut Cursor, first_index: LogIndex) -> Result<Vec<Entry>, DecodeError> {
    let count = u64::from(cur.u32("entry count")?);
    let count = cur.check_count(count, ENTRY_HEADER_SIZE_BYTES, "entry")?;
    // No entry holds index u64::MAX: the index after a log's last entry must exist (where the
    // next entry goes, where a reader goes on), so the run must end below it.
    if count > 0 && first_index.get().checked_add(count as u64).is_none() {
        return Err(DecodeError::IndexOverflow { first: first_index.get(), count: count as u64 });
    }
    let mut entries = Vec::with_capacity(count);
    let mut index = first_index;
    for _ in 0..count {
        let term = Term(cur.u64("entry term")?);
        let kind_byte = cur.u8("entry kind")?;
        let kind = EntryKind::from_u8(kind_byte)
            .ok_or(DecodeError::InvalidValue { what: "entry kind", value: u64::from(kind_byte) })?;
        let size = cur.u32("entry data size")? as usize;
        let data = cur.bytes(size, "entry data")?;
        check_entry_data(kind, data.len())?;
        entries.push(Entry { index, term, kind, data });
        // The run ends below u64::MAX (checked above), so this never overflows.
        index = index.next();
    }
    Ok(entries)
}

/// Checks what each entry kind promises about its data.
pub(crate) fn check_entry_data(kind: EntryKind, size: usize) -> Result<(), DecodeError> {
    match kind {
        EntryKind::Noop if size != 0 => {
            Err(DecodeError::InvalidValue { what: "noop entry data size", value: size as u64 })
        }
        EntryKind::Tagged if size < TAG_SIZE_BYTES => {
            Err(DecodeError::InvalidValue { what: "tagged entry data size", value: size as u64 })
        }
        _ => Ok(()),
    }
}
