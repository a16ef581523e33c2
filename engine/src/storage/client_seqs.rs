//! The client sequence numbers file: for each client, the highest sequence number of its
//! appends up to an index, and the numbers below it no entry up to that index holds (its gaps),
//! kept for what the log no longer holds or no longer reads at start.
//!
//! Owns: the file `client_seqs` of a log directory (docs/format.md, "Client sequence numbers"):
//! two slots of [`SLOT_BYTES`], each able to hold [`CLIENT_SEQS_MAX`] pairs and
//! [`CLIENT_SEQS_GAPS_MAX`] gap ranges. The store keeps it for the node's deduplication of
//! retried appends, which the store does not interpret: it loads the file at open and replaces
//! its contents on request.
//!
//! Invariants:
//! 1. A save writes the slot the previous save did not use, with a save number one higher, and
//!    fdatasyncs it; the other slot keeps the previous contents until the next save. The file is
//!    made at its full size before its first save (a temporary file renamed into place), so a
//!    save allocates nothing and a full disk does not stop it on a filesystem that overwrites
//!    in place. A file an earlier build wrote (version 1, smaller) is read, and replaced whole
//!    by the first save (a temporary file holding that save, renamed over it), so it holds a
//!    valid save at every moment.
//! 2. A save spans many sectors, so a crash during one can leave its slot torn: open takes the
//!    valid slot with the highest save number and treats an invalid one beside it as a torn
//!    save. Both slots invalid (no save tears two) is corruption, reported, never skipped. Whoever
//!    relies on a save (compaction, a log start) does so only after it returned, so a torn slot
//!    was never relied on; a slot that went bad later shows as contents older than the log
//!    (`through` before the log's first index), which the node reports.
//! 3. Open fdatasyncs the file before anyone relies on what it read (a slot written by a process
//!    killed before its fdatasync may be only in the page cache).

use crate::storage::disk::{Disk, FileId, OpenOptions};
use crate::storage::error::{ClientSeqsError, Corruption, OpenError};
use raftwal_wire::client::{ClientId, ClientSeq};
use raftwal_wire::types::LogIndex;
use std::io;
use std::path::{Path, PathBuf};

/// The file name in a log directory.
pub const CLIENT_SEQS_FILE: &str = "client_seqs";
/// Pairs a slot holds: what a node's deduplication table remembers (4,096 clients).
pub const CLIENT_SEQS_MAX: usize = 4096;
/// Gap ranges a slot holds, over all its clients.
pub const CLIENT_SEQS_GAPS_MAX: usize = 4096;
const MAGIC: [u8; 4] = *b"RWCS";
const VERSION: u16 = 2;
const HEADER_BYTES: usize = 40;
const PAIR_BYTES: usize = 16;
const GAP_BYTES: usize = 24;
const CRC_BYTES: usize = 4;
/// A slot: header, pairs, gap ranges and checksum, rounded up to 4 KiB (167,936 bytes).
const SLOT_BYTES: usize =
    (HEADER_BYTES + CLIENT_SEQS_MAX * PAIR_BYTES + CLIENT_SEQS_GAPS_MAX * GAP_BYTES + CRC_BYTES)
        .div_ceil(4096)
        * 4096;
const FILE_BYTES: usize = 2 * SLOT_BYTES;
/// Version 1 (an earlier build's, read only): a 32-byte header, pairs, no gaps.
const V1_HEADER_BYTES: usize = 32;
const V1_SLOT_BYTES: usize =
    (V1_HEADER_BYTES + CLIENT_SEQS_MAX * PAIR_BYTES + CRC_BYTES).div_ceil(4096) * 4096;
const V1_FILE_BYTES: usize = 2 * V1_SLOT_BYTES;

/// Each client's highest sequence number among its entries at or before `through` (or that it
/// knows to be settled there), in the order the deduplication table forgets clients, and the
/// numbers below those that the table would append if retried.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientSeqs {
    /// The index the numbers describe the log up to.
    pub through: LogIndex,
    /// (client, highest sequence number), oldest client first; at most [`CLIENT_SEQS_MAX`].
    pub seqs: Vec<(ClientId, ClientSeq)>,
    /// (client, first, last): inclusive ranges of numbers at most the client's highest one
    /// that no entry at or before `through` holds; at most [`CLIENT_SEQS_GAPS_MAX`].
    pub gaps: Vec<(ClientId, ClientSeq, ClientSeq)>,
}

/// A slot's bytes: header (magic, version, flags, save number, `through`, count of pairs,
/// count of gap ranges), the pairs, the ranges, and a CRC32 of everything before it;
/// little-endian. Only these written; the rest of the slot keeps whatever it held.
fn encode_slot(save: u64, seqs: &ClientSeqs) -> Vec<u8> {
    debug_assert!(seqs.seqs.len() <= CLIENT_SEQS_MAX);
    debug_assert!(seqs.gaps.len() <= CLIENT_SEQS_GAPS_MAX);
    let len = HEADER_BYTES + seqs.seqs.len() * PAIR_BYTES + seqs.gaps.len() * GAP_BYTES;
    let mut out = Vec::with_capacity(len + CRC_BYTES);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&save.to_le_bytes());
    out.extend_from_slice(&seqs.through.get().to_le_bytes());
    out.extend_from_slice(&(seqs.seqs.len() as u64).to_le_bytes());
    out.extend_from_slice(&(seqs.gaps.len() as u64).to_le_bytes());
    for (client, seq) in &seqs.seqs {
        out.extend_from_slice(&client.get().to_le_bytes());
        out.extend_from_slice(&seq.get().to_le_bytes());
    }
    for (client, first, last) in &seqs.gaps {
        out.extend_from_slice(&client.get().to_le_bytes());
        out.extend_from_slice(&first.get().to_le_bytes());
        out.extend_from_slice(&last.get().to_le_bytes());
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Decodes a slot (`bytes`: the whole slot) of a file of `version`'s layout (1 or 2):
/// `Ok(None)` when it was never written (all zero), `Err(reason)` when it is not a valid save
/// (torn, or damaged); never a panic on any input.
fn decode_slot(bytes: &[u8], version: u16) -> Result<Option<(u64, ClientSeqs)>, String> {
    let (slot_bytes, header_bytes) =
        if version == 1 { (V1_SLOT_BYTES, V1_HEADER_BYTES) } else { (SLOT_BYTES, HEADER_BYTES) };
    if bytes.len() != slot_bytes {
        return Err(format!("{} bytes, not a slot's {slot_bytes}", bytes.len()));
    }
    if bytes.iter().all(|&b| b == 0) {
        return Ok(None);
    }
    if bytes[0..4] != MAGIC {
        return Err("bad magic".into());
    }
    let pairs = u64_at(bytes, 24);
    let gaps = if version == 1 { 0 } else { u64_at(bytes, 32) };
    let Some(end) = usize::try_from(pairs)
        .ok()
        .zip(usize::try_from(gaps).ok())
        .filter(|&(p, g)| p <= CLIENT_SEQS_MAX && g <= CLIENT_SEQS_GAPS_MAX)
        .map(|(p, g)| header_bytes + p * PAIR_BYTES + g * GAP_BYTES)
        .filter(|&end| end + CRC_BYTES <= bytes.len())
    else {
        return Err(format!("a count of {pairs} pairs and {gaps} gaps, more than a slot holds"));
    };
    let mut stored = [0u8; CRC_BYTES];
    stored.copy_from_slice(&bytes[end..end + CRC_BYTES]);
    if crc32fast::hash(&bytes[..end]) != u32::from_le_bytes(stored) {
        return Err("checksum mismatch".into());
    }
    let found = u16::from_le_bytes([bytes[4], bytes[5]]);
    if found != version {
        return Err(format!("version {found} in a file of version {version}'s size"));
    }
    if bytes[6..8] != [0, 0] {
        return Err("unknown flags".into());
    }
    let gaps_at = end - gaps as usize * GAP_BYTES;
    let seqs = bytes[header_bytes..gaps_at]
        .chunks_exact(PAIR_BYTES)
        .map(|pair| (ClientId(u64_at(pair, 0)), ClientSeq(u64_at(pair, 8))))
        .collect();
    let gaps = bytes[gaps_at..end]
        .chunks_exact(GAP_BYTES)
        .map(|g| (ClientId(u64_at(g, 0)), ClientSeq(u64_at(g, 8)), ClientSeq(u64_at(g, 16))))
        .collect();
    Ok(Some((u64_at(bytes, 8), ClientSeqs { through: LogIndex(u64_at(bytes, 16)), seqs, gaps })))
}

/// The client sequence numbers file of one log (see the module documentation).
#[derive(Debug)]
pub(crate) struct ClientSeqsFile {
    /// `None` until the file of this build's version exists (a full disk at open kept it from
    /// being made, or open found an earlier build's file, which the first save replaces).
    file: Option<FileId>,
    dir: PathBuf,
    /// The save number of the newest valid slot (0: none).
    save: u64,
}

impl ClientSeqsFile {
    /// Opens `dir`'s file, making it if `names` (the directory's listing) has none, and returns
    /// what its newest valid slot holds. A full disk leaves the file to be made by the first
    /// save.
    pub(crate) fn open<D: Disk>(
        disk: &D,
        dir: &Path,
        names: &[String],
    ) -> Result<(ClientSeqsFile, Option<ClientSeqs>), OpenError> {
        let path = dir.join(CLIENT_SEQS_FILE);
        let mut this = ClientSeqsFile { file: None, dir: dir.to_path_buf(), save: 0 };
        if !names.iter().any(|n| n == CLIENT_SEQS_FILE) {
            match this.make(disk, None) {
                Ok(_) => return Ok((this, None)),
                Err(e) if e.kind() == io::ErrorKind::StorageFull => return Ok((this, None)),
                Err(source) => {
                    let context = format!("making {}", path.display());
                    return Err(OpenError::Io { context, source });
                }
            }
        }
        let io_err = |source: io::Error| OpenError::Io {
            context: format!("reading {}", path.display()),
            source,
        };
        let file =
            disk.open(&path, OpenOptions { create_new: false, direct: false }).map_err(io_err)?;
        let corrupt = |offset: usize, reason: String| {
            disk.close(file);
            OpenError::Corrupt(Corruption {
                file: path.clone(),
                offset: offset as u64,
                index: None,
                reason: format!(
                    "{reason}; the file tells which clients' appends a retry must not repeat \
                     (remove it only to accept that retries of appends older than the log's \
                     recent entries may be appended again)"
                ),
            })
        };
        let size = disk.size(file).map_err(|e| {
            disk.close(file);
            io_err(e)
        })?;
        let (version, slot_bytes) = match usize::try_from(size) {
            Ok(FILE_BYTES) => (VERSION, SLOT_BYTES),
            Ok(V1_FILE_BYTES) => (1, V1_SLOT_BYTES),
            _ => {
                let reason = format!(
                    "{size} bytes, expected {FILE_BYTES} (or {V1_FILE_BYTES}, an earlier \
                     build's)"
                );
                return Err(corrupt(0, reason));
            }
        };
        let mut bytes = vec![0u8; 2 * slot_bytes];
        // A slot whose fdatasync failed in an earlier process of this boot may still be cached:
        // read what the device holds.
        let n = disk
            .drop_clean_cache(file)
            .and_then(|()| disk.read_at(file, 0, &mut bytes))
            .map_err(|e| {
                disk.close(file);
                io_err(e)
            })?;
        if n != bytes.len() {
            return Err(corrupt(n, format!("{n} bytes read of the file's {size}")));
        }
        let mut best: Option<(u64, ClientSeqs)> = None;
        let mut invalid = Vec::new();
        for slot in 0..2 {
            let at = slot * slot_bytes;
            match decode_slot(&bytes[at..at + slot_bytes], version) {
                // Save number `n` goes to slot `n % 2`, and never the last number: a slot that
                // says otherwise was not written by a save.
                Ok(Some((save, _))) if save % 2 != slot as u64 || save == u64::MAX => {
                    let reason =
                        format!("slot {slot} holds save {save}, which no save writes there");
                    return Err(corrupt(at, reason));
                }
                Ok(Some(found)) if best.as_ref().is_none_or(|b| found.0 > b.0) => {
                    best = Some(found)
                }
                Ok(_) => {}
                Err(reason) => invalid.push((at, reason)),
            }
        }
        if invalid.len() == 2 {
            let (at, reason) = invalid.swap_remove(0);
            return Err(corrupt(at, format!("both slots are invalid, slot 0: {reason}")));
        }
        if let Some((at, reason)) = invalid.first() {
            // A save torn by a crash (or a slot damaged since, which the node's check of
            // `through` against the log's first index reports).
            tracing::info!(file = %path.display(), offset = at, "a torn save of the clients' sequence numbers ({reason}); using the other slot");
        }
        // Invariant 3.
        disk.sync(file).map_err(|e| {
            disk.close(file);
            OpenError::Io { context: format!("syncing {}", path.display()), source: e }
        })?;
        if version == VERSION {
            this.file = Some(file);
        } else {
            // Invariant 1: the first save replaces the file whole.
            disk.close(file);
            tracing::info!(file = %path.display(), "an earlier build's file of the clients' sequence numbers (version {version}); the first save replaces it");
        }
        // The next save goes to the other slot than the newest valid one (a torn one beside it
        // is overwritten; with no valid slot, save 1 goes to slot 1).
        let found = best.map(|(save, seqs)| {
            this.save = save;
            seqs
        });
        Ok((this, found))
    }

    /// Makes the file at its full size under a temporary name renamed into place: all zero
    /// (no slot written), or holding `slot` (a save's number and bytes) in its slot.
    fn make<D: Disk>(&mut self, disk: &D, slot: Option<(u64, &[u8])>) -> io::Result<FileId> {
        let path = self.dir.join(CLIENT_SEQS_FILE);
        let tmp = self.dir.join(format!("{CLIENT_SEQS_FILE}.tmp"));
        match disk.remove(&tmp) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut bytes = vec![0u8; FILE_BYTES];
        if let Some((save, slot)) = slot {
            let at = (save % 2) as usize * SLOT_BYTES;
            bytes[at..at + slot.len()].copy_from_slice(slot);
        }
        let file = disk.open(&tmp, OpenOptions { create_new: true, direct: false })?;
        let made = disk
            .write_at(file, 0, &bytes)
            .and_then(|()| disk.sync(file))
            .and_then(|()| disk.rename(&tmp, &path))
            .and_then(|()| disk.sync_dir(&self.dir));
        if let Err(e) = made {
            disk.close(file);
            let _ = disk.remove(&tmp);
            return Err(e);
        }
        self.file = Some(file);
        Ok(file)
    }

    /// Writes `seqs` into the slot not holding the newest save and fdatasyncs it (invariant 1).
    pub(crate) fn save<D: Disk>(
        &mut self,
        disk: &D,
        seqs: &ClientSeqs,
    ) -> Result<(), ClientSeqsError> {
        let error = |e: io::Error| {
            if e.kind() == io::ErrorKind::StorageFull {
                ClientSeqsError::NoSpace(e)
            } else {
                ClientSeqsError::Io(e)
            }
        };
        if seqs.seqs.len() > CLIENT_SEQS_MAX {
            return Err(ClientSeqsError::TooMany(seqs.seqs.len()));
        }
        if seqs.gaps.len() > CLIENT_SEQS_GAPS_MAX {
            return Err(ClientSeqsError::TooManyGaps(seqs.gaps.len()));
        }
        let save = self.save + 1;
        let bytes = encode_slot(save, seqs);
        match self.file {
            Some(file) => {
                let at = (save % 2) * SLOT_BYTES as u64;
                disk.write_at(file, at, &bytes).and_then(|()| disk.sync(file)).map_err(error)?;
            }
            None => {
                self.make(disk, Some((save, &bytes))).map_err(error)?;
            }
        }
        self.save = save;
        Ok(())
    }

    /// Closes the file.
    pub(crate) fn close<D: Disk>(&self, disk: &D) {
        if let Some(file) = self.file {
            disk.close(file);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::disk::{SimDisk, SimFaults, Tear};
    use proptest::prelude::*;

    fn seqs(through: u64, pairs: &[(u64, u64)]) -> ClientSeqs {
        ClientSeqs {
            through: LogIndex(through),
            seqs: pairs.iter().map(|&(c, s)| (ClientId(c), ClientSeq(s))).collect(),
            gaps: Vec::new(),
        }
    }

    fn with_gaps(mut seqs: ClientSeqs, gaps: &[(u64, u64, u64)]) -> ClientSeqs {
        seqs.gaps =
            gaps.iter().map(|&(c, f, l)| (ClientId(c), ClientSeq(f), ClientSeq(l))).collect();
        seqs
    }

    /// A slot as an earlier build (version 1) wrote it: a 32-byte header, the pairs, the CRC.
    fn v1_slot(save: u64, seqs: &ClientSeqs) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(b"RWCS\x01\x00\x00\x00");
        out.extend_from_slice(&save.to_le_bytes());
        out.extend_from_slice(&seqs.through.get().to_le_bytes());
        out.extend_from_slice(&(seqs.seqs.len() as u64).to_le_bytes());
        for (client, seq) in &seqs.seqs {
            out.extend_from_slice(&client.get().to_le_bytes());
            out.extend_from_slice(&seq.get().to_le_bytes());
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out.resize(V1_SLOT_BYTES, 0);
        out
    }

    /// A slot as a save leaves it: the encoded bytes, then whatever the slot held (zeros here).
    fn slot(save: u64, seqs: &ClientSeqs) -> Vec<u8> {
        let mut bytes = encode_slot(save, seqs);
        bytes.resize(SLOT_BYTES, 0);
        bytes
    }

    fn reopen(
        disk: &SimDisk,
        dir: &Path,
    ) -> Result<(ClientSeqsFile, Option<ClientSeqs>), OpenError> {
        let names = disk.list_dir(dir).unwrap();
        ClientSeqsFile::open(disk, dir, &names)
    }

    fn fresh() -> (SimDisk, &'static Path) {
        let disk = SimDisk::new();
        let dir = Path::new("/log");
        disk.create_dir_all(dir).unwrap();
        disk.sync_dir(Path::new("/")).unwrap();
        (disk, dir)
    }

    #[test]
    fn the_layout_is_the_documented_one() {
        assert_eq!(SLOT_BYTES, 167_936);
        assert_eq!(V1_SLOT_BYTES, 69_632);
        let s = with_gaps(seqs(0x0102, &[(7, 9), (u64::MAX, 0)]), &[(7, 2, 4)]);
        let bytes = encode_slot(3, &s);
        assert_eq!(bytes.len(), 40 + 2 * 16 + 24 + 4);
        assert_eq!(&bytes[0..8], b"RWCS\x02\x00\x00\x00");
        assert_eq!(&bytes[8..16], &3u64.to_le_bytes());
        assert_eq!(&bytes[16..24], &0x0102u64.to_le_bytes());
        assert_eq!(&bytes[24..32], &2u64.to_le_bytes());
        assert_eq!(&bytes[32..40], &1u64.to_le_bytes());
        assert_eq!(&bytes[40..48], &7u64.to_le_bytes());
        assert_eq!(&bytes[48..56], &9u64.to_le_bytes());
        assert_eq!(&bytes[72..80], &7u64.to_le_bytes());
        assert_eq!(&bytes[80..88], &2u64.to_le_bytes());
        assert_eq!(&bytes[88..96], &4u64.to_le_bytes());
        assert_eq!(&bytes[96..100], &crc32fast::hash(&bytes[..96]).to_le_bytes());
        assert_eq!(decode_slot(&slot(3, &s), 2), Ok(Some((3, s))));
        assert_eq!(decode_slot(&[0u8; SLOT_BYTES], 2), Ok(None), "a slot never written");
        let old = seqs(5, &[(7, 9)]);
        assert_eq!(decode_slot(&v1_slot(1, &old), 1), Ok(Some((1, old))));
    }

    #[test]
    fn a_wrong_count_version_or_flags_is_refused_even_with_a_good_checksum() {
        let s = seqs(5, &[(1, 2)]);
        let reseal = |mut bytes: Vec<u8>| {
            let n = bytes.len() - CRC_BYTES;
            let crc = crc32fast::hash(&bytes[..n]);
            bytes[n..].copy_from_slice(&crc.to_le_bytes());
            bytes.resize(SLOT_BYTES, 0);
            bytes
        };
        let mut count = encode_slot(1, &s);
        count[24] = 2;
        assert!(decode_slot(&reseal(count), 2).unwrap_err().contains("checksum"));
        let mut huge = encode_slot(1, &s);
        huge[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode_slot(&reseal(huge), 2).unwrap_err().contains("more than a slot holds"));
        let mut version = encode_slot(1, &s);
        version[4] = 1;
        assert!(decode_slot(&reseal(version), 2).unwrap_err().contains("version"));
        let mut flags = encode_slot(1, &s);
        flags[6] = 1;
        assert!(decode_slot(&reseal(flags), 2).unwrap_err().contains("flags"));
    }

    proptest! {
        #[test]
        fn round_trips(
            save in any::<u64>(),
            through in any::<u64>(),
            pairs in proptest::collection::vec(any::<(u64, u64)>(), 0..40),
            gaps in proptest::collection::vec(any::<(u64, u64, u64)>(), 0..40),
        ) {
            let s = with_gaps(seqs(through, &pairs), &gaps);
            prop_assert_eq!(decode_slot(&slot(save, &s), 2), Ok(Some((save, s))));
        }

        /// A flipped bit in a save, or the save cut short, is refused, never a panic, and never
        /// decodes to other numbers; arbitrary bytes never panic.
        #[test]
        fn damaged_bytes_are_refused(
            pairs in proptest::collection::vec(any::<(u64, u64)>(), 0..8),
            gaps in proptest::collection::vec(any::<(u64, u64, u64)>(), 0..8),
            at in any::<prop::sample::Index>(),
            bit in 0u8..8,
            cut in any::<prop::sample::Index>(),
            noise in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let s = with_gaps(seqs(3, &pairs), &gaps);
            let bytes = slot(9, &s);
            let written = encode_slot(9, &s).len();
            let mut flipped = bytes.clone();
            flipped[at.index(written)] ^= 1 << bit;
            prop_assert!(decode_slot(&flipped, 2).is_err());
            prop_assert!(decode_slot(&bytes[..cut.index(written)], 2).is_err());
            for version in [1, 2, 3] {
                let _ = decode_slot(&noise, version);
                let mut padded = noise.clone();
                padded.resize(if version == 1 { V1_SLOT_BYTES } else { SLOT_BYTES }, 0);
                let _ = decode_slot(&padded, version);
            }
        }
    }

    #[test]
    fn a_fresh_directory_gets_the_whole_file_and_saves_survive_a_crash() {
        let (disk, dir) = fresh();
        let (mut f, found) = ClientSeqsFile::open(&disk, dir, &[]).unwrap();
        assert_eq!(found, None);
        let path = dir.join(CLIENT_SEQS_FILE);
        assert_eq!(disk.file_bytes(&path).unwrap(), vec![0u8; FILE_BYTES], "made at full size");
        for n in 1..=5u64 {
            f.save(&disk, &seqs(n * 10, &[(1, n), (2, n * 2)])).unwrap();
        }
        f.close(&disk);
        disk.crash(Tear::None);
        let (mut f, found) = reopen(&disk, dir).unwrap();
        assert_eq!(found, Some(seqs(50, &[(1, 5), (2, 10)])));
        // Saves go on from the newest one, into the other slot.
        f.save(&disk, &seqs(60, &[(3, 1)])).unwrap();
        disk.crash(Tear::None);
        assert_eq!(reopen(&disk, dir).unwrap().1, Some(seqs(60, &[(3, 1)])));
        let max: Vec<(u64, u64)> = (0..CLIENT_SEQS_MAX as u64).map(|c| (c, c + 1)).collect();
        let max_gaps: Vec<(u64, u64, u64)> =
            (0..CLIENT_SEQS_GAPS_MAX as u64).map(|c| (c, 0, c)).collect();
        let full = with_gaps(seqs(70, &max), &max_gaps);
        let (mut f, _) = reopen(&disk, dir).unwrap();
        f.save(&disk, &full).unwrap();
        let too_many: Vec<(u64, u64)> = (0..=CLIENT_SEQS_MAX as u64).map(|c| (c, c)).collect();
        assert!(matches!(f.save(&disk, &seqs(80, &too_many)), Err(ClientSeqsError::TooMany(_))));
        let too_many = with_gaps(seqs(80, &[]), &[(1, 1, 1); CLIENT_SEQS_GAPS_MAX + 1]);
        assert!(matches!(f.save(&disk, &too_many), Err(ClientSeqsError::TooManyGaps(_))));
        disk.crash(Tear::None);
        assert_eq!(reopen(&disk, dir).unwrap().1, Some(full));
    }

    /// A crash in the middle of a save leaves its slot torn (or untouched): open falls back to
    /// the previous save, and the next save overwrites the torn slot.
    #[test]
    fn a_torn_save_falls_back_to_the_previous_one() {
        let many: Vec<(u64, u64)> = (0..3000u64).map(|c| (c, c * 7)).collect();
        for seed in 0..24u64 {
            let (disk, dir) = fresh();
            let (mut f, _) = ClientSeqsFile::open(&disk, dir, &[]).unwrap();
            f.save(&disk, &seqs(1, &many)).unwrap();
            f.save(&disk, &seqs(2, &many[..100])).unwrap();
            // The third save's write runs, its fdatasync does not.
            let points = disk.stats().points;
            disk.set_faults(SimFaults { crash_at_point: Some(points + 1), ..SimFaults::default() });
            assert!(f.save(&disk, &seqs(3, &many[..2000])).is_err());
            disk.crash(Tear::LastWrite { seed });
            let (mut f, found) = reopen(&disk, dir).unwrap();
            assert_eq!(found, Some(seqs(2, &many[..100])), "seed {seed}");
            f.save(&disk, &seqs(4, &many[..5])).unwrap();
            disk.crash(Tear::None);
            assert_eq!(reopen(&disk, dir).unwrap().1, Some(seqs(4, &many[..5])), "seed {seed}");
        }
    }

    #[test]
    fn both_slots_invalid_or_a_slot_no_save_writes_is_corruption() {
        let (disk, dir) = fresh();
        let (mut f, _) = ClientSeqsFile::open(&disk, dir, &[]).unwrap();
        f.save(&disk, &seqs(1, &[(1, 1)])).unwrap();
        f.save(&disk, &seqs(2, &[(1, 2)])).unwrap();
        f.close(&disk);
        let path = dir.join(CLIENT_SEQS_FILE);
        // One damaged slot is taken for a torn save.
        assert!(disk.flip_bit(&path, 40, 0));
        assert_eq!(reopen(&disk, dir).unwrap().1, Some(seqs(1, &[(1, 1)])));
        // Both is corruption, reported with the file and offset.
        assert!(disk.flip_bit(&path, SLOT_BYTES + 40, 0));
        match reopen(&disk, dir) {
            Err(OpenError::Corrupt(c)) => {
                assert_eq!(c.file, path);
                assert!(c.reason.contains("both slots"), "{}", c.reason);
            }
            other => panic!("both slots damaged were accepted: {other:?}"),
        }
        // A valid slot holding a save number no save writes there.
        let (disk, dir) = fresh();
        ClientSeqsFile::open(&disk, dir, &[]).unwrap();
        assert!(disk.overwrite(&path, 0, &encode_slot(1, &seqs(1, &[]))));
        assert!(matches!(reopen(&disk, dir), Err(OpenError::Corrupt(_))));
        // The wrong length, shorter or longer.
        for len in [FILE_BYTES - 1, FILE_BYTES + 1, V1_FILE_BYTES + 4096, 0] {
            let (disk, dir) = fresh();
            ClientSeqsFile::open(&disk, dir, &[]).unwrap();
            assert!(disk.set_file_len(&path, len));
            match reopen(&disk, dir) {
                Err(OpenError::Corrupt(c)) => assert!(c.reason.contains("bytes"), "{}", c.reason),
                other => panic!("a file of {len} bytes was accepted: {other:?}"),
            }
        }
    }

    /// An earlier build's file (version 1) is read, and the first save replaces it whole: a
    /// crash at any point of that replacement leaves a file holding the old save or the new.
    #[test]
    fn an_earlier_builds_file_is_read_and_replaced_by_the_first_save() {
        let old = seqs(40, &[(1, 4), (2, 9)]);
        let new = with_gaps(seqs(50, &[(1, 6), (2, 9)]), &[(1, 5, 5)]);
        for crash_after in 0..12u64 {
            let (disk, dir) = fresh();
            let path = dir.join(CLIENT_SEQS_FILE);
            let file = disk.open(&path, OpenOptions { create_new: true, direct: false }).unwrap();
            let mut bytes = vec![0u8; V1_FILE_BYTES];
            bytes[V1_SLOT_BYTES..].copy_from_slice(&v1_slot(7, &old));
            disk.write_at(file, 0, &bytes).unwrap();
            disk.sync(file).unwrap();
            disk.sync_dir(dir).unwrap();
            disk.close(file);
            let (mut f, found) = reopen(&disk, dir).unwrap();
            assert_eq!(found.as_ref(), Some(&old));
            let points = disk.stats().points;
            disk.set_faults(SimFaults {
                crash_at_point: Some(points + crash_after),
                ..SimFaults::default()
            });
            let saved = f.save(&disk, &new).is_ok();
            disk.crash(Tear::None);
            let (_, found) = reopen(&disk, dir).unwrap();
            if saved {
                assert_eq!(found.as_ref(), Some(&new), "crash after {crash_after} points");
                assert_eq!(disk.file_bytes(&path).unwrap().len(), FILE_BYTES);
            } else {
                assert!(
                    found == Some(old.clone()) || found == Some(new.clone()),
                    "crash after {crash_after} points: {found:?}"
                );
            }
        }
    }

    /// A full disk at open leaves the file to the first save; saves into the made file need no
    /// space.
    #[test]
    fn a_full_disk_defers_making_the_file() {
        let (disk, dir) = fresh();
        disk.set_faults(SimFaults { capacity_bytes: Some(1000), ..SimFaults::default() });
        let (mut f, found) = ClientSeqsFile::open(&disk, dir, &[]).unwrap();
        assert_eq!(found, None);
        assert!(matches!(f.save(&disk, &seqs(1, &[])), Err(ClientSeqsError::NoSpace(_))));
        assert!(disk.list_dir(dir).unwrap().iter().all(|n| n != CLIENT_SEQS_FILE));
        disk.set_faults(SimFaults {
            capacity_bytes: Some(FILE_BYTES as u64),
            ..SimFaults::default()
        });
        f.save(&disk, &seqs(2, &[(5, 6)])).unwrap();
        f.save(&disk, &seqs(3, &[(5, 7)])).unwrap();
        disk.crash(Tear::None);
        assert_eq!(reopen(&disk, dir).unwrap().1, Some(seqs(3, &[(5, 7)])));
    }
}
