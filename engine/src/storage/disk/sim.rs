//! [`SimDisk`]: a deterministic, single-threaded, in-memory disk for crash and fault tests and
//! for the whole-cluster simulator.
//!
//! Owns: a model of files and directories that keeps, for every file, a *written* image (what
//! reads see) and a *durable* image (what survives a crash), and, for every directory, written
//! and durable name tables. It injects faults: a crash after a given number of write and sync
//! points (optionally tearing the last unsynced write at sector granularity), a failed fdatasync,
//! running out of space, flipped bits.
//!
//! It must not touch real files, threads, clocks or global randomness: the same calls give the
//! same results, so a failing seed replays exactly.
//!
//! Model (docs/format.md, "Media assumptions", says why these are the rules of real disks):
//! 1. A write changes the written image only. fdatasync of a file copies its written bytes (and
//!    length) to its durable image. A failed fdatasync leaves the durable image unchanged *and*
//!    forgets that the written bytes were dirty, as Linux does: a later fdatasync that succeeds
//!    does not make them durable (fsyncgate).
//! 2. Creating, renaming and removing a name changes the directory's written table; an fsync of
//!    the directory copies it to the durable table. A directory made by [`Disk::create_dir_all`]
//!    is such a name too: it is durable once its parent directory was fsynced after its
//!    creation (and its parent is durable). Directories the disk never made (the root, and
//!    those of files a test puts in place) stand for ones that were there before: durable.
//! 3. A crash replaces every written image and table with its durable one; with a tear, a prefix
//!    of whole sectors of the most recent unsynced write survives ([`Tear::LastWrite`]), or the
//!    caches had written back part of what was not synced ([`Tear::Writeback`]: any pages or
//!    sectors of any file's unsynced writes, and a prefix, in order, of the name changes no
//!    directory fsync covered). A directory that was not durable is gone, with every name in it.
//! 4. Ops queued with `submit` run, in submission order (or in an order drawn from
//!    [`SimFaults::reorder_seed`]), when an owner reaps or waits (or when the test calls
//!    [`SimDisk::run_pending`] in manual mode).
//! 5. [`Disk::drop_clean_cache`] makes reads of a file see its durable image again, except over
//!    its dirty range (pages waiting for writeback stay cached): after a failed fdatasync the
//!    bytes it could not write stop being readable. [`SimDisk::restart_process`] keeps the
//!    written images, so a process restarted in the same boot reads them until it drops them.

use super::{Completion, Disk, FileId, OpenOptions, OwnerId, SubmitRejected, WriteOp};
use crate::storage::format::{BLOCK_SIZE_BYTES, SECTOR_SIZE_BYTES};
use bytes::Bytes;
use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Faults to inject; set them with [`SimDisk::set_faults`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimFaults {
    /// Crash once this many write and sync points (counted by [`SimStats::points`]) have run:
    /// the next point and every op after it fail until [`SimDisk::crash`] restarts the disk.
    pub crash_at_point: Option<u64>,
    /// Fail the next fdatasync (of a file, queued or synchronous) with EIO.
    pub fail_next_sync: bool,
    /// Total bytes the files may occupy; writes and allocations past it fail with ENOSPC.
    pub capacity_bytes: Option<u64>,
    /// Run queued ops in an order drawn from this seed instead of the order they were
    /// submitted in, as a device does with concurrent writes (it completes and persists them
    /// in any order): a later batch's write and fdatasync may run before an earlier batch's
    /// write, and a crash then leaves a hole.
    pub reorder_seed: Option<u64>,
    /// Fail the next write (queued or synchronous, to any file) with ENOSPC, writing nothing:
    /// a file system that needs a block for its own metadata (an extent split) even inside
    /// preallocated space.
    pub no_space_next_write: bool,
    /// The same for one write after this many more writes succeed (`Some(0)`: the next one):
    /// reaches a write past those a test lets through.
    pub no_space_after_writes: Option<u64>,
    /// Fail every map with ENOMEM, as `mmap` does once the process holds `vm.max_map_count`
    /// maps.
    pub maps_fail: bool,
}

/// What survives of the most recent unsynced write at a crash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tear {
    /// Nothing unsynced survives.
    None,
    /// A prefix of whole sectors of the most recent unsynced write survives: `seed` picks how
    /// many (from none to all but one).
    LastWrite {
        /// Chooses the number of surviving sectors, deterministically.
        seed: u64,
    },
    /// The page cache and the device had written back part of what no fdatasync covered, in
    /// no particular order (docs/format.md, "Media assumptions", rule 3): each 4096-byte page
    /// of every file's unsynced writes (its dirty range) survives whole, as a subset of its
    /// sectors, or not at all, and a file grows to hold the bytes that survived past its
    /// durable length, or (a quarter of the files) to its whole written length, as when the
    /// file system committed the size and not the data (the gaps read as zeros either way).
    /// Of the name changes (creations, renames, removals, directory creations) that no
    /// directory fsync covered, a prefix survives, in the order they were made, as a
    /// journaling file system commits them. `seed` picks the share of pages (none, a quarter,
    /// half, three quarters or all), which ones, which files keep their size, and how many
    /// name changes.
    Writeback {
        /// Chooses what survives, deterministically.
        seed: u64,
    },
}

/// A change to the name tables that no directory fsync has covered yet, for
/// [`Tear::Writeback`].
#[derive(Clone, Debug)]
enum NameOp {
    /// A file was created under this name.
    Link(PathBuf, u64),
    /// This name was removed.
    Unlink(PathBuf),
    /// A name was renamed.
    Rename(PathBuf, PathBuf),
    /// `create_dir_all` made this directory.
    MakeDir(PathBuf),
}

impl NameOp {
    /// Whether an fsync of `dir` makes this change durable. A rename between two directories
    /// leaves the log at an fsync of either, though only that directory's name table becomes
    /// durable (the other keeps its durable name, or lacks the new one, until it is synced):
    /// a file system commits such a rename whole, so the model is not faithful there. raftwal
    /// renames only within one directory.
    fn in_dir(&self, dir: &Path) -> bool {
        match self {
            NameOp::Link(p, _) | NameOp::Unlink(p) | NameOp::MakeDir(p) => p.parent() == Some(dir),
            NameOp::Rename(from, to) => from.parent() == Some(dir) || to.parent() == Some(dir),
        }
    }
}

/// Counters of what the disk did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Write and sync points run so far: every write, fdatasync, directory fsync, creation,
    /// rename, removal and allocation. A crash can be placed before any of them.
    pub points: u64,
    /// fdatasyncs of files (queued or synchronous) that ran.
    pub file_syncs: u64,
    /// Writes that ran (queued or synchronous).
    pub writes: u64,
    /// Of those writes, the queued background ones (zero-filling ahead of the writer).
    pub background_writes: u64,
    /// Of those fdatasyncs, the ones of queued background ops.
    pub background_syncs: u64,
}

#[derive(Debug, Default)]
struct Inode {
    written: Vec<u8>,
    durable: Vec<u8>,
    /// The byte range written since the last fdatasync, if any.
    dirty: Option<(usize, usize)>,
}

#[derive(Debug)]
struct OpenFile {
    inode: u64,
    direct: bool,
}

#[derive(Debug, Default)]
struct State {
    inodes: BTreeMap<u64, Inode>,
    next_inode: u64,
    written_names: BTreeMap<PathBuf, u64>,
    durable_names: BTreeMap<PathBuf, u64>,
    /// Directories made by `create_dir_all` (the written table of their parents).
    dirs: Vec<PathBuf>,
    /// Of those, the ones whose parent was fsynced since they were made.
    durable_dirs: Vec<PathBuf>,
    files: BTreeMap<u32, OpenFile>,
    next_file: u32,
    owners: BTreeMap<u32, VecDeque<Completion>>,
    next_owner: u32,
    pending: VecDeque<(OwnerId, WriteOp)>,
    manual: bool,
    faults: SimFaults,
    crashed: bool,
    stats: SimStats,
    /// The most recent unsynced write: (inode, offset, length).
    last_write: Option<(u64, usize, usize)>,
    /// Name changes no directory fsync covered yet, in the order they were made.
    name_log: Vec<NameOp>,
    /// [`Disk::prefetch`] advice received: (path, offset, length).
    prefetches: Vec<(PathBuf, u64, u64)>,
    /// Draws made for [`SimFaults::reorder_seed`].
    reorder_draws: u64,
    /// [`Disk::drop_clean_cache`] does nothing (see [`SimDisk::set_keeps_stale_cache`]).
    keeps_stale_cache: bool,
}

/// A 64-bit mix (splitmix64's finalizer): deterministic, well spread.
fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The simulated disk. Cheap to create; share one per simulated node through `Rc`.
///
/// For a whole-cluster simulator: give each node its own `SimDisk` and small segments
/// (`LogOptions::segment_size_bytes` of 64 KiB or so: preallocation materializes the bytes). To
/// crash a node, call [`SimDisk::crash`] *first* and then drop its log stores (dropping a store
/// first lets its batch in flight finish, like a clean shutdown), then reopen them with
/// `LogStore::open` on the same disk.
#[derive(Debug, Default)]
pub struct SimDisk {
    state: RefCell<State>,
}

fn crashed_error() -> io::Error {
    io::Error::other("simulated crash: the disk is down until restart")
}

fn no_space() -> io::Error {
    io::Error::from_raw_os_error(libc::ENOSPC)
}

impl State {
    /// Counts one write or sync point; fails if the crash fuse fires now.
    fn point(&mut self) -> io::Result<()> {
        if self.crashed {
            return Err(crashed_error());
        }
        if self.faults.crash_at_point == Some(self.stats.points) {
            self.crashed = true;
            return Err(crashed_error());
        }
        self.stats.points += 1;
        Ok(())
    }

    fn open_file(&self, file: FileId) -> io::Result<&OpenFile> {
        if self.crashed {
            return Err(crashed_error());
        }
        self.files.get(&file.0).ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))
    }

    fn used_bytes(&self) -> u64 {
        let mut live: Vec<u64> = self.written_names.values().copied().collect();
        live.extend(self.files.values().map(|f| f.inode));
        live.sort_unstable();
        live.dedup();
        live.iter().filter_map(|i| self.inodes.get(i)).map(|n| n.written.len() as u64).sum()
    }

    /// Whether `dir` exists: the root, a directory made by `create_dir_all`, or one holding
    /// files or directories (a directory the disk did not make was there before).
    fn dir_exists(&self, dir: &Path) -> bool {
        let below = |p: &PathBuf| p.starts_with(dir) && p.as_path() != dir;
        dir.parent().is_none()
            || self.dirs.iter().any(|d| d == dir || below(d))
            || self.written_names.keys().any(below)
    }

    /// Whether `dir` survives a crash: every directory on its path that the disk made had its
    /// parent fsynced since.
    fn dir_durable(&self, dir: &Path) -> bool {
        dir.ancestors()
            .all(|a| !self.dirs.iter().any(|d| d == a) || self.durable_dirs.iter().any(|d| d == a))
    }

    /// Whether the name `path` would survive a crash (its directory does).
    fn name_durable(&self, path: &Path) -> bool {
        self.durable_names.contains_key(path) && path.parent().is_none_or(|d| self.dir_durable(d))
    }

    fn check_space(&self, inode: u64, new_len: usize) -> io::Result<()> {
        let Some(capacity) = self.faults.capacity_bytes else { return Ok(()) };
        let current = self.inodes.get(&inode).map_or(0, |n| n.written.len());
        if new_len <= current {
            return Ok(());
        }
        if self.used_bytes() + (new_len - current) as u64 > capacity {
            return Err(no_space());
        }
        Ok(())
    }

    fn write(&mut self, file: FileId, offset: u64, data: &[u8]) -> io::Result<()> {
        let of = self.open_file(file)?;
        let (inode, direct) = (of.inode, of.direct);
        let block = BLOCK_SIZE_BYTES as u64;
        if direct && (!offset.is_multiple_of(block) || !(data.len() as u64).is_multiple_of(block)) {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let offset = usize::try_from(offset).map_err(|_| no_space())?;
        let end = offset + data.len();
        if std::mem::take(&mut self.faults.no_space_next_write) {
            return Err(no_space());
        }
        match &mut self.faults.no_space_after_writes {
            Some(0) => {
                self.faults.no_space_after_writes = None;
                return Err(no_space());
            }
            Some(writes) => *writes -= 1,
            None => {}
        }
        self.check_space(inode, end)?;
        self.point()?;
        self.stats.writes += 1;
        let node = self.inodes.entry(inode).or_default();
        if node.written.len() < end {
            node.written.resize(end, 0);
        }
        node.written[offset..end].copy_from_slice(data);
        node.dirty = Some(match node.dirty {
            Some((lo, hi)) => (lo.min(offset), hi.max(end)),
            None => (offset, end),
        });
        self.last_write = Some((inode, offset, data.len()));
        Ok(())
    }

    fn sync(&mut self, file: FileId) -> io::Result<()> {
        let inode = self.open_file(file)?.inode;
        self.point()?;
        self.stats.file_syncs += 1;
        let fail = std::mem::take(&mut self.faults.fail_next_sync);
        let node = self.inodes.entry(inode).or_default();
        let dirty = node.dirty.take();
        if fail {
            // Linux marks the pages clean after a failed writeback: the data stays readable but
            // is not on disk, and a later fdatasync will not write it again.
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        node.durable.resize(node.written.len(), 0);
        if let Some((lo, hi)) = dirty {
            let hi = hi.min(node.written.len());
            if lo < hi {
                node.durable[lo..hi].copy_from_slice(&node.written[lo..hi]);
            }
        }
        if self.last_write.is_some_and(|(i, _, _)| i == inode) {
            self.last_write = None;
        }
        Ok(())
    }

    fn run_one(&mut self) -> bool {
        let next = match (self.faults.reorder_seed, self.pending.len()) {
            (_, 0) => return false,
            (Some(seed), n) => {
                self.reorder_draws += 1;
                (splitmix64(seed ^ self.reorder_draws.wrapping_mul(0x9E37_79B9_7F4A_7C15))
                    % n as u64) as usize
            }
            (None, _) => 0,
        };
        let Some((owner, op)) = self.pending.remove(next) else { return false };
        let mut sync_failed = false;
        // An empty buffer is a sync-only op: no write point.
        let mut result = if op.buf.is_empty() {
            Ok(())
        } else {
            self.write(op.file, op.offset, op.buf.as_slice())
        };
        if result.is_ok() && op.background && !op.buf.is_empty() {
            self.stats.background_writes += 1;
        }
        if result.is_ok() && op.sync {
            let syncs_before = self.stats.file_syncs;
            result = self.sync(op.file);
            sync_failed = result.is_err();
            if op.background {
                self.stats.background_syncs += self.stats.file_syncs - syncs_before;
            }
        }
        let completion = Completion { tag: op.tag, buf: op.buf, result, sync_failed };
        if let Some(queue) = self.owners.get_mut(&owner.0) {
            queue.push_back(completion);
        }
        true
    }

    /// [`Tear::Writeback`]: copies to the durable images what the caches wrote back before the
    /// power failed, and applies a prefix of the name changes to the durable tables.
    fn write_back(&mut self, seed: u64) {
        let mut draws = 0u64;
        let mut draw = || {
            draws += 1;
            splitmix64(seed ^ draws.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        };
        let page = BLOCK_SIZE_BYTES;
        let sectors_per_page = page / SECTOR_SIZE_BYTES;
        // Quarters of the dirty pages that survive, the same share for every file.
        let share = draw() % 5;
        for node in self.inodes.values_mut() {
            let Some((lo, hi)) = node.dirty else { continue };
            let hi = hi.min(node.written.len());
            if draw() % 4 == 0 && node.durable.len() < node.written.len() {
                // The size reached the device, its data may not have.
                node.durable.resize(node.written.len(), 0);
            }
            let mut at = lo - lo % page;
            while at < hi {
                let roll = draw();
                if roll % 4 < share {
                    // Most surviving pages are whole; some are a subset of their sectors.
                    let sectors = if (roll >> 8) % 8 == 0 { draw() } else { u64::MAX };
                    for k in 0..sectors_per_page {
                        let from = (at + k * SECTOR_SIZE_BYTES).max(lo);
                        let to = (at + (k + 1) * SECTOR_SIZE_BYTES).min(hi);
                        if from >= to || sectors & (1 << k) == 0 {
                            continue;
                        }
                        if node.durable.len() < to {
                            node.durable.resize(to, 0);
                        }
                        node.durable[from..to].copy_from_slice(&node.written[from..to]);
                    }
                }
                at += page;
            }
        }
        let survive = usize::try_from(draw() % (self.name_log.len() as u64 + 1)).unwrap_or(0);
        for op in std::mem::take(&mut self.name_log).into_iter().take(survive) {
            match op {
                NameOp::Link(path, inode) => {
                    self.durable_names.insert(path, inode);
                }
                NameOp::Unlink(path) => {
                    self.durable_names.remove(&path);
                }
                NameOp::Rename(from, to) => {
                    if let Some(inode) = self.durable_names.remove(&from) {
                        self.durable_names.insert(to, inode);
                    }
                }
                NameOp::MakeDir(dir) => {
                    if !self.durable_dirs.contains(&dir) {
                        self.durable_dirs.push(dir);
                    }
                }
            }
        }
    }

    fn run_newest_pending(&mut self) -> bool {
        let Some(last) = self.pending.pop_back() else { return false };
        self.pending.push_front(last);
        let seed = self.faults.reorder_seed.take();
        let ran = self.run_one();
        self.faults.reorder_seed = seed;
        ran
    }

    fn run_pending(&mut self, max_ops: usize) -> usize {
        let mut ran = 0;
        while ran < max_ops && self.run_one() {
            ran += 1;
        }
        ran
    }
}

impl SimDisk {
    /// A new, empty disk with no faults.
    pub fn new() -> SimDisk {
        SimDisk::default()
    }

    /// Replaces the fault settings.
    pub fn set_faults(&self, faults: SimFaults) {
        self.state.borrow_mut().faults = faults;
    }

    /// The current fault settings (a fired `fail_next_sync` reads back as false).
    pub fn faults(&self) -> SimFaults {
        self.state.borrow().faults
    }

    /// What the disk did so far.
    pub fn stats(&self) -> SimStats {
        self.state.borrow().stats
    }

    /// True after the crash fuse fired and before [`SimDisk::crash`].
    pub fn is_crashed(&self) -> bool {
        self.state.borrow().crashed
    }

    /// In manual mode queued ops run only in [`SimDisk::run_pending`] or [`Disk::wait`], so a
    /// test can hold a write in flight.
    pub fn set_manual(&self, manual: bool) {
        self.state.borrow_mut().manual = manual;
    }

    /// Runs up to `max_ops` queued ops; returns how many ran.
    pub fn run_pending(&self, max_ops: usize) -> usize {
        self.state.borrow_mut().run_pending(max_ops)
    }

    /// Runs the most recently queued op (in manual mode: a device finishing a later write
    /// first); returns whether there was one.
    pub fn run_newest_pending(&self) -> bool {
        self.state.borrow_mut().run_newest_pending()
    }

    /// Queued ops not yet run.
    pub fn pending_ops(&self) -> usize {
        self.state.borrow().pending.len()
    }

    /// Whether the next queued op is a background one (a log's zero-fill or the fdatasync of
    /// its prepared segment), so a test can let those run and strike the batch behind them.
    pub fn next_pending_is_background(&self) -> bool {
        self.state.borrow().pending.front().is_some_and(|(_, op)| op.background)
    }

    /// Crashes and restarts the disk: queued ops are dropped, every open file and owner is
    /// forgotten, and every file and directory goes back to its durable image (keeping a torn
    /// prefix of the last unsynced write, or what the caches wrote back, if `tear` says so).
    /// Faults are cleared, except the order queued ops run in ([`SimFaults::reorder_seed`]:
    /// the device, not a fault).
    pub fn crash(&self, tear: Tear) {
        let mut s = self.state.borrow_mut();
        if let Tear::Writeback { seed } = tear {
            s.write_back(seed);
        }
        if let (Tear::LastWrite { seed }, Some((inode, offset, len))) = (tear, s.last_write) {
            if let Some(node) = s.inodes.get_mut(&inode) {
                let first_sector = offset / SECTOR_SIZE_BYTES;
                let last_sector = (offset + len).div_ceil(SECTOR_SIZE_BYTES);
                let sectors = (last_sector - first_sector) as u64;
                let keep = if sectors > 1 { seed % sectors } else { 0 } as usize;
                let keep_end = ((first_sector + keep) * SECTOR_SIZE_BYTES).min(offset + len);
                if keep_end > offset {
                    if node.durable.len() < keep_end {
                        node.durable.resize(keep_end, 0);
                    }
                    node.durable[offset..keep_end].copy_from_slice(&node.written[offset..keep_end]);
                }
            }
        }
        // A directory whose creation was not durable is gone, and so is everything in it.
        let durable_dirs: Vec<PathBuf> =
            s.dirs.iter().filter(|d| s.dir_durable(d)).cloned().collect();
        let names: BTreeMap<PathBuf, u64> = s
            .durable_names
            .iter()
            .filter(|(p, _)| s.name_durable(p))
            .map(|(p, i)| (p.clone(), *i))
            .collect();
        s.dirs = durable_dirs.clone();
        s.durable_dirs = durable_dirs;
        s.durable_names = names;
        s.written_names = s.durable_names.clone();
        let live: Vec<u64> = s.durable_names.values().copied().collect();
        s.inodes.retain(|id, _| live.contains(id));
        for node in s.inodes.values_mut() {
            node.written = node.durable.clone();
            node.dirty = None;
        }
        s.files.clear();
        s.owners.clear();
        s.pending.clear();
        s.crashed = false;
        // The faults are spent; the device's ordering is not a fault and stays.
        s.faults = SimFaults { reorder_seed: s.faults.reorder_seed, ..SimFaults::default() };
        s.last_write = None;
        s.name_log.clear();
    }

    /// The process dies and restarts, the machine does not: queued ops are dropped (never
    /// run), every open file and owner is forgotten and a fired crash fuse is reset, but the
    /// written images and names stay as they are (the page cache and the device's volatile
    /// cache survive a process), still unsynced: a later [`SimDisk::crash`] loses what no
    /// fdatasync covered. Faults are cleared except [`SimFaults::reorder_seed`].
    pub fn restart_process(&self) {
        let mut s = self.state.borrow_mut();
        s.files.clear();
        s.owners.clear();
        s.pending.clear();
        s.crashed = false;
        s.faults = SimFaults { reorder_seed: s.faults.reorder_seed, ..SimFaults::default() };
    }

    /// The [`Disk::prefetch`] advice received since the last call, as (path, offset, length),
    /// in order (the disk does nothing else with it: reads cost nothing here).
    pub fn take_prefetches(&self) -> Vec<(PathBuf, u64, u64)> {
        std::mem::take(&mut self.state.borrow_mut().prefetches)
    }

    /// Makes [`Disk::drop_clean_cache`] do nothing: a recovery that trusts the page cache
    /// after a failed fdatasync, planted to prove that the simulator's checker catches it.
    pub fn set_keeps_stale_cache(&self, keeps: bool) {
        self.state.borrow_mut().keeps_stale_cache = keeps;
    }

    /// The written bytes of a file, or `None` if no such name exists.
    pub fn file_bytes(&self, path: &Path) -> Option<Vec<u8>> {
        let s = self.state.borrow();
        let inode = s.written_names.get(path)?;
        Some(s.inodes.get(inode).map(|n| n.written.clone()).unwrap_or_default())
    }

    /// Names of the files in `dir` (written table), sorted.
    pub fn file_names(&self, dir: &Path) -> Vec<String> {
        let s = self.state.borrow();
        names_in(&s.written_names, dir)
    }

    /// Flips one bit of a file in both its written and durable images (media corruption).
    pub fn flip_bit(&self, path: &Path, offset: usize, bit: u8) -> bool {
        self.edit_both(path, |image| {
            if let Some(b) = image.get_mut(offset) {
                *b ^= 1 << (bit % 8);
            }
        })
    }

    /// Overwrites bytes of a file in both images (crafting bad files in tests).
    pub fn overwrite(&self, path: &Path, offset: usize, data: &[u8]) -> bool {
        self.edit_both(path, |image| {
            if image.len() < offset + data.len() {
                image.resize(offset + data.len(), 0);
            }
            image[offset..offset + data.len()].copy_from_slice(data);
        })
    }

    /// Sets a file's length in both images (cutting or zero-extending it).
    pub fn set_file_len(&self, path: &Path, len: usize) -> bool {
        self.edit_both(path, |image| image.resize(len, 0))
    }

    /// Creates a file durably with `data` as both images.
    pub fn put_file(&self, path: &Path, data: &[u8]) {
        let mut s = self.state.borrow_mut();
        let id = s.next_inode;
        s.next_inode += 1;
        s.inodes.insert(id, Inode { written: data.to_vec(), durable: data.to_vec(), dirty: None });
        s.written_names.insert(path.to_path_buf(), id);
        s.durable_names.insert(path.to_path_buf(), id);
    }

    fn edit_both(&self, path: &Path, mut edit: impl FnMut(&mut Vec<u8>)) -> bool {
        let mut s = self.state.borrow_mut();
        let Some(&inode) = s.written_names.get(path) else { return false };
        let node = s.inodes.entry(inode).or_default();
        edit(&mut node.written);
        edit(&mut node.durable);
        true
    }
}

fn names_in(table: &BTreeMap<PathBuf, u64>, dir: &Path) -> Vec<String> {
    table
        .keys()
        .filter(|p| p.parent() == Some(dir))
        .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_owned))
        .collect()
}

impl Disk for SimDisk {
    fn register(&self) -> OwnerId {
        let mut s = self.state.borrow_mut();
        let id = s.next_owner;
        s.next_owner += 1;
        s.owners.insert(id, VecDeque::new());
        OwnerId(id)
    }

    fn unregister(&self, owner: OwnerId) {
        self.state.borrow_mut().owners.remove(&owner.0);
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.state.borrow_mut();
        if s.crashed {
            return Err(crashed_error());
        }
        // Top down: each directory missing on the path is made (not durable yet).
        let missing: Vec<PathBuf> =
            dir.ancestors().filter(|a| !s.dir_exists(a)).map(Path::to_path_buf).collect();
        for dir in missing.into_iter().rev() {
            s.name_log.push(NameOp::MakeDir(dir.clone()));
            s.dirs.push(dir);
        }
        Ok(())
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let s = self.state.borrow();
        if s.crashed {
            return Err(crashed_error());
        }
        if !s.dir_exists(dir) {
            return Err(io::Error::from_raw_os_error(libc::ENOENT));
        }
        Ok(names_in(&s.written_names, dir))
    }

    fn open(&self, path: &Path, options: OpenOptions) -> io::Result<FileId> {
        let mut s = self.state.borrow_mut();
        if s.crashed {
            return Err(crashed_error());
        }
        let inode = match s.written_names.get(path) {
            Some(_) if options.create_new => {
                return Err(io::Error::from_raw_os_error(libc::EEXIST));
            }
            Some(&inode) => inode,
            None if options.create_new => {
                s.point()?;
                let id = s.next_inode;
                s.next_inode += 1;
                s.inodes.insert(id, Inode::default());
                s.written_names.insert(path.to_path_buf(), id);
                s.name_log.push(NameOp::Link(path.to_path_buf(), id));
                id
            }
            None => return Err(io::Error::from_raw_os_error(libc::ENOENT)),
        };
        let id = s.next_file;
        s.next_file += 1;
        s.files.insert(id, OpenFile { inode, direct: options.direct });
        Ok(FileId(id))
    }

    fn close(&self, file: FileId) {
        self.state.borrow_mut().files.remove(&file.0);
    }

    fn size(&self, file: FileId) -> io::Result<u64> {
        let s = self.state.borrow();
        let inode = s.open_file(file)?.inode;
        Ok(s.inodes.get(&inode).map_or(0, |n| n.written.len() as u64))
    }

    fn allocate(&self, file: FileId, len: u64) -> io::Result<()> {
        let mut s = self.state.borrow_mut();
        let inode = s.open_file(file)?.inode;
        let len = usize::try_from(len).map_err(|_| no_space())?;
        s.check_space(inode, len)?;
        s.point()?;
        let node = s.inodes.entry(inode).or_default();
        if node.written.len() < len {
            let old = node.written.len();
            node.written.resize(len, 0);
            node.dirty = Some(match node.dirty {
                Some((lo, hi)) => (lo.min(old), hi.max(len)),
                None => (old, len),
            });
        }
        Ok(())
    }

    fn read_at(&self, file: FileId, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let s = self.state.borrow();
        let inode = s.open_file(file)?.inode;
        let image = s.inodes.get(&inode).map(|n| n.written.as_slice()).unwrap_or_default();
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(image.len());
        let n = buf.len().min(image.len() - start);
        buf[..n].copy_from_slice(&image[start..start + n]);
        Ok(n)
    }

    fn write_at(&self, file: FileId, offset: u64, data: &[u8]) -> io::Result<()> {
        self.state.borrow_mut().write(file, offset, data)
    }

    fn sync(&self, file: FileId) -> io::Result<()> {
        self.state.borrow_mut().sync(file)
    }

    fn drop_clean_cache(&self, file: FileId) -> io::Result<()> {
        let mut s = self.state.borrow_mut();
        let inode = s.open_file(file)?.inode;
        if s.keeps_stale_cache {
            return Ok(());
        }
        // Reads now come from the device, except over the dirty range (pages still waiting
        // for writeback stay cached). A failed fdatasync forgot its range's dirtiness, so the
        // bytes it could not write read back as what the device holds.
        let node = s.inodes.entry(inode).or_default();
        let len = node.written.len();
        let (lo, hi) = node.dirty.map_or((len, len), |(lo, hi)| (lo.min(len), hi.min(len)));
        for (from, to) in [(0, lo), (hi, len)] {
            let held = node.durable.len().clamp(from, to);
            node.written[from..held].copy_from_slice(&node.durable[from..held]);
            node.written[held..to].fill(0);
        }
        Ok(())
    }

    fn prefetch(&self, file: FileId, offset: u64, len: u64) {
        let mut s = self.state.borrow_mut();
        let Ok(inode) = s.open_file(file).map(|f| f.inode) else { return };
        let path = s.written_names.iter().find(|(_, &i)| i == inode).map(|(p, _)| p.clone());
        if let Some(path) = path {
            s.prefetches.push((path, offset, len));
        }
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.state.borrow_mut();
        s.point()?;
        let in_dir = |p: &PathBuf| p.parent() == Some(dir);
        let written: Vec<(PathBuf, u64)> = s
            .written_names
            .iter()
            .filter(|(p, _)| in_dir(p))
            .map(|(p, i)| (p.clone(), *i))
            .collect();
        s.durable_names.retain(|p, _| !in_dir(p));
        s.durable_names.extend(written);
        let made: Vec<PathBuf> =
            s.dirs.iter().filter(|d| in_dir(d) && !s.durable_dirs.contains(d)).cloned().collect();
        s.durable_dirs.extend(made);
        s.name_log.retain(|op| !op.in_dir(dir));
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.state.borrow_mut();
        if !s.written_names.contains_key(from) {
            return Err(io::Error::from_raw_os_error(libc::ENOENT));
        }
        s.point()?;
        if let Some(inode) = s.written_names.remove(from) {
            s.written_names.insert(to.to_path_buf(), inode);
        }
        s.name_log.push(NameOp::Rename(from.to_path_buf(), to.to_path_buf()));
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut s = self.state.borrow_mut();
        if !s.written_names.contains_key(path) {
            return Err(io::Error::from_raw_os_error(libc::ENOENT));
        }
        s.point()?;
        s.written_names.remove(path);
        s.name_log.push(NameOp::Unlink(path.to_path_buf()));
        Ok(())
    }

    fn modified(&self, _path: &Path) -> io::Result<SystemTime> {
        // The simulated disk has no clock: time-based retention keeps every segment on it.
        Err(io::Error::new(io::ErrorKind::Unsupported, "the simulated disk keeps no times"))
    }

    fn map(&self, file: FileId, len: u64) -> io::Result<Bytes> {
        let s = self.state.borrow();
        if s.faults.maps_fail {
            return Err(io::Error::from_raw_os_error(libc::ENOMEM));
        }
        let inode = s.open_file(file)?.inode;
        let image = s.inodes.get(&inode).map(|n| n.written.as_slice()).unwrap_or_default();
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > image.len() {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
        }
        Ok(Bytes::copy_from_slice(&image[..len]))
    }

    fn submit(&self, owner: OwnerId, op: WriteOp) -> Result<(), SubmitRejected> {
        let mut s = self.state.borrow_mut();
        if s.crashed {
            return Err(SubmitRejected { op, error: crashed_error() });
        }
        s.pending.push_back((owner, op));
        Ok(())
    }

    fn reap(&self, owner: OwnerId, out: &mut Vec<Completion>) {
        let mut s = self.state.borrow_mut();
        if !s.manual {
            s.run_pending(usize::MAX);
        }
        if let Some(queue) = s.owners.get_mut(&owner.0) {
            out.extend(queue.drain(..));
        }
    }

    fn wait(&self, _owner: OwnerId) -> io::Result<()> {
        self.state.borrow_mut().run_pending(usize::MAX);
        Ok(())
    }
}

#[path = "sim_images.rs"]
mod images;

#[cfg(test)]
#[path = "sim_tests.rs"]
mod tests;
