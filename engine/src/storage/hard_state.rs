//! The hard state file: term, vote and commit index, updated atomically in place.
//!
//! Owns: the file `hard_state` of a log directory, made of two 512-byte slots (one per sector).
//! A save writes the slot the previous save did not use, with a sequence number one higher, and
//! fdatasyncs it; load picks the valid slot with the highest sequence number.
//!
//! Invariants:
//! 1. Each slot lies in its own sector, and a sector write is atomic (docs/format.md, media
//!    assumptions), so after any crash each slot is either all zero (never written), the old
//!    state or the new one: never a mix.
//! 2. Hence a slot that is neither zero nor valid is corruption, and load reports it instead of
//!    falling back to the other slot (which may hold an older vote: using it could let the node
//!    vote twice in one term).
//! 3. A save returns only after its fdatasync completed.

use crate::storage::client_seqs::CLIENT_SEQS_FILE;
use crate::storage::disk::{Disk, FileId, OpenOptions};
use crate::storage::error::Corruption;
use crate::storage::format::{SegmentId, SECTOR_SIZE_BYTES};
use raftwal_wire::types::{HardState, LogIndex, NodeId, Term};
use std::io;
use std::path::{Path, PathBuf};

/// The file name of the hard state in a log directory.
pub const HARD_STATE_FILE: &str = "hard_state";
const SLOT_MAGIC: [u8; 4] = *b"RWHS";
const SLOT_VERSION: u16 = 1;
const SLOT_FIELDS_BYTES: usize = 44;
const FILE_BYTES: usize = 2 * SECTOR_SIZE_BYTES;
const _: () = assert!(SLOT_FIELDS_BYTES <= SECTOR_SIZE_BYTES);

/// Why a hard state file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoadError {
    #[error("I/O error while {0}: {1}")]
    Io(&'static str, io::Error),
    #[error("{0}")]
    Corrupt(Corruption),
}

fn encode_slot(seq: u64, hs: &HardState, out: &mut [u8]) {
    out.fill(0);
    out[0..4].copy_from_slice(&SLOT_MAGIC);
    out[4..6].copy_from_slice(&SLOT_VERSION.to_le_bytes());
    out[6..8].copy_from_slice(&u16::from(hs.vote.is_some()).to_le_bytes());
    out[8..16].copy_from_slice(&seq.to_le_bytes());
    out[16..24].copy_from_slice(&hs.term.get().to_le_bytes());
    out[24..32].copy_from_slice(&hs.vote.map_or(0, NodeId::get).to_le_bytes());
    out[32..40].copy_from_slice(&hs.commit.get().to_le_bytes());
    let crc = crc32fast::hash(&out[0..40]);
    out[40..44].copy_from_slice(&crc.to_le_bytes());
}

/// Decodes a slot: `Ok(None)` when it is all zero, `Err(reason)` when it is neither zero nor
/// valid.
fn decode_slot(bytes: &[u8]) -> Result<Option<(u64, HardState)>, String> {
    if bytes.iter().all(|&b| b == 0) {
        return Ok(None);
    }
    let u64_at = |at: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(a)
    };
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&bytes[40..44]);
    if crc32fast::hash(&bytes[0..40]) != u32::from_le_bytes(crc) {
        return Err("hard state slot checksum mismatch".into());
    }
    if bytes[0..4] != SLOT_MAGIC {
        return Err("hard state slot has a bad magic".into());
    }
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    if version != SLOT_VERSION {
        return Err(format!("unsupported hard state version {version}"));
    }
    let flags = u16::from_le_bytes([bytes[6], bytes[7]]);
    if flags > 1 || bytes[SLOT_FIELDS_BYTES..].iter().any(|&b| b != 0) {
        return Err("hard state slot has unknown flags or trailing bytes".into());
    }
    let vote = (flags == 1).then(|| NodeId(u64_at(24)));
    let hs = HardState { term: Term(u64_at(16)), vote, commit: LogIndex(u64_at(32)) };
    Ok(Some((u64_at(8), hs)))
}

/// Which step of a hard state save failed.
#[derive(Debug)]
pub(crate) enum SaveError {
    /// Writing the slot.
    Write(io::Error),
    /// Its fdatasync.
    Sync(io::Error),
}

/// The open hard state file of one log.
#[derive(Debug)]
pub(crate) struct HardStateFile {
    file: FileId,
    path: PathBuf,
    seq: u64,
    state: HardState,
    slot_buf: Vec<u8>,
}

impl HardStateFile {
    /// Opens the hard state of `dir`, creating it (durably) if it does not exist yet.
    pub(crate) fn open<D: Disk>(
        disk: &D,
        dir: &Path,
        names: &[String],
    ) -> Result<HardStateFile, LoadError> {
        let path = dir.join(HARD_STATE_FILE);
        if !names.iter().any(|n| n == HARD_STATE_FILE) {
            // The hard state is made before the first segment and before the clients' sequence
            // numbers file, so either without it means it was removed: starting from term 0
            // with no vote could let the node vote twice in a term it already voted in.
            let segment = names.iter().any(|n| SegmentId::parse_file_name(n).is_some());
            if segment || names.iter().any(|n| n == CLIENT_SEQS_FILE) {
                let found = if segment { "segments" } else { "its clients' sequence numbers" };
                return Err(LoadError::Corrupt(Corruption {
                    file: path,
                    offset: 0,
                    index: None,
                    reason: format!(
                        "the hard state file is missing while the log has {found} (the term \
                         and vote it held are lost)"
                    ),
                }));
            }
            let tmp = dir.join(format!("{HARD_STATE_FILE}.tmp"));
            let f = disk
                .open(&tmp, OpenOptions { create_new: true, direct: false })
                .map_err(|e| LoadError::Io("creating the hard state file", e))?;
            let made = disk
                .write_at(f, 0, &[0u8; FILE_BYTES])
                .and_then(|()| disk.sync(f))
                .and_then(|()| disk.rename(&tmp, &path))
                .and_then(|()| disk.sync_dir(dir));
            disk.close(f);
            made.map_err(|e| LoadError::Io("creating the hard state file", e))?;
        }
        let file = disk
            .open(&path, OpenOptions { create_new: false, direct: false })
            .map_err(|e| LoadError::Io("opening the hard state file", e))?;
        // A slot whose fdatasync failed in an earlier process of this boot may still be cached
        // (Linux keeps the pages it could not write): read what the device holds.
        if let Err(e) = disk.drop_clean_cache(file) {
            disk.close(file);
            return Err(LoadError::Io("dropping the cached hard state", e));
        }
        let mut bytes = vec![0u8; FILE_BYTES];
        let n = disk
            .read_at(file, 0, &mut bytes)
            .map_err(|e| LoadError::Io("reading the hard state", e))?;
        let corrupt = |offset: usize, reason: String| {
            LoadError::Corrupt(Corruption {
                file: path.clone(),
                offset: offset as u64,
                index: None,
                reason,
            })
        };
        if n != FILE_BYTES {
            disk.close(file);
            return Err(corrupt(n, format!("hard state file is {n} bytes, expected {FILE_BYTES}")));
        }
        let mut best: Option<(u64, HardState)> = None;
        for slot in 0..2 {
            let at = slot * SECTOR_SIZE_BYTES;
            match decode_slot(&bytes[at..at + SECTOR_SIZE_BYTES]) {
                // A save writes sequence number `seq` into slot `seq % 2`, never the last
                // number (none could follow it): a slot that says otherwise was not written by
                // a save, and the next save would overflow or overwrite the newest state.
                Ok(Some((seq, _))) if seq % 2 != slot as u64 || seq == u64::MAX => {
                    disk.close(file);
                    let reason = format!(
                        "hard state slot {slot} holds sequence number {seq}, which no save \
                         writes there"
                    );
                    return Err(corrupt(at, reason));
                }
                Ok(Some(found)) if best.is_none_or(|b| found.0 > b.0) => best = Some(found),
                Ok(_) => {}
                Err(reason) => {
                    disk.close(file);
                    return Err(corrupt(at, reason));
                }
            }
        }
        // The newest slot may have been written by a process killed before its fdatasync:
        // make it durable before the node acts on it (a vote read here and then lost to a power
        // failure would let the node vote twice in one term).
        if let Err(e) = disk.sync(file) {
            disk.close(file);
            return Err(LoadError::Io("syncing the hard state", e));
        }
        let (seq, state) = best.unwrap_or((0, HardState::default()));
        Ok(HardStateFile { file, path, seq, state, slot_buf: vec![0u8; SECTOR_SIZE_BYTES] })
    }

    /// The last saved state.
    pub(crate) fn state(&self) -> HardState {
        self.state
    }

    /// Writes `hs` into the slot not holding the current state and fdatasyncs it. A failed
    /// write leaves the current state where it was (the other slot) and the next save writes
    /// the same slot again; after a failed fdatasync nothing about the slot can be trusted.
    pub(crate) fn save<D: Disk>(&mut self, disk: &D, hs: HardState) -> Result<(), SaveError> {
        let seq = self.seq + 1;
        encode_slot(seq, &hs, &mut self.slot_buf);
        let at = (seq % 2) * SECTOR_SIZE_BYTES as u64;
        disk.write_at(self.file, at, &self.slot_buf).map_err(SaveError::Write)?;
        disk.sync(self.file).map_err(SaveError::Sync)?;
        self.seq = seq;
        self.state = hs;
        Ok(())
    }

    /// The path of the file, for error messages.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Closes the file.
    pub(crate) fn close<D: Disk>(&self, disk: &D) {
        disk.close(self.file);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::disk::{SimDisk, Tear};

    #[test]
    fn a_missing_hard_state_beside_segments_is_corruption() {
        let disk = SimDisk::new();
        let dir = Path::new("/h");
        let names = vec!["00000000000000000001.seg".to_owned()];
        match HardStateFile::open(&disk, dir, &names) {
            Err(LoadError::Corrupt(c)) => assert!(c.reason.contains("missing"), "{c:?}"),
            other => panic!("a missing hard state was recreated: {other:?}"),
        }
        assert!(HardStateFile::open(&disk, dir, &[]).is_ok(), "a fresh directory gets one");
    }

    #[test]
    fn saves_alternate_slots_and_survive_reopen() {
        let disk = SimDisk::new();
        let dir = Path::new("/log");
        disk.create_dir_all(dir).unwrap();
        disk.sync_dir(Path::new("/")).unwrap();
        let mut f = HardStateFile::open(&disk, dir, &[]).unwrap();
        assert_eq!(f.state(), HardState::default());
        for t in 1..=5 {
            let hs =
                HardState { term: Term(t), vote: Some(NodeId(t % 3)), commit: LogIndex(t * 10) };
            f.save(&disk, hs).unwrap();
        }
        disk.crash(Tear::None);
        let names = disk.list_dir(dir).unwrap();
        let f = HardStateFile::open(&disk, dir, &names).unwrap();
        assert_eq!(
            f.state(),
            HardState { term: Term(5), vote: Some(NodeId(2)), commit: LogIndex(50) }
        );
    }

    #[test]
    fn a_flipped_bit_in_either_slot_is_corruption() {
        for at in [3usize, 20, SECTOR_SIZE_BYTES + 20] {
            let disk = SimDisk::new();
            let dir = Path::new("/log");
            disk.create_dir_all(dir).unwrap();
            let mut f = HardStateFile::open(&disk, dir, &[]).unwrap();
            f.save(&disk, HardState { term: Term(1), vote: None, commit: LogIndex(0) }).unwrap();
            f.save(&disk, HardState { term: Term(2), vote: None, commit: LogIndex(0) }).unwrap();
            disk.flip_bit(&dir.join(HARD_STATE_FILE), at, 1);
            let names = disk.list_dir(dir).unwrap();
            assert!(matches!(HardStateFile::open(&disk, dir, &names), Err(LoadError::Corrupt(_))));
        }
    }

    /// A slot as the writer never leaves it (checksum valid): the last sequence number, after
    /// which no save can follow (its `seq + 1` overflowed at the next save: a panic), or a
    /// sequence number in the other slot's place (the next save would overwrite the newest
    /// state instead of the older one, which the crash-safety of a save rests on).
    #[test]
    fn a_slot_no_save_could_have_written_is_corruption() {
        let hs = HardState { term: Term(3), vote: Some(NodeId(1)), commit: LogIndex(7) };
        for (slot, seq) in [(1usize, u64::MAX), (0, u64::MAX), (0, 5), (1, 4)] {
            let disk = SimDisk::new();
            let dir = Path::new("/log");
            disk.create_dir_all(dir).unwrap();
            let mut f = HardStateFile::open(&disk, dir, &[]).unwrap();
            f.save(&disk, hs).unwrap();
            let mut crafted = vec![0u8; SECTOR_SIZE_BYTES];
            encode_slot(seq, &hs, &mut crafted);
            disk.overwrite(&dir.join(HARD_STATE_FILE), slot * SECTOR_SIZE_BYTES, &crafted);
            let names = disk.list_dir(dir).unwrap();
            match HardStateFile::open(&disk, dir, &names) {
                Err(LoadError::Corrupt(c)) => {
                    assert_eq!(c.offset, (slot * SECTOR_SIZE_BYTES) as u64, "{c:?}");
                }
                Err(other) => panic!("slot {slot}, seq {seq}: {other:?}"),
                Ok(mut f) => {
                    let saved = f.save(&disk, hs);
                    panic!("slot {slot}, seq {seq} accepted (and saved: {saved:?})");
                }
            }
        }
    }
}
