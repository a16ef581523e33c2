//! [`UringDisk`]: the real disk, on io_uring, for one shard thread.
//!
//! Owns: one io_uring ring, an eventfd registered with it (so a shard's tokio runtime can wait
//! for completions with `AsyncFd` next to its sockets), the shard's open files, and the table of
//! ops in flight with their owners. It must not be shared across threads (it is `!Sync` through
//! its `RefCell`) and it never sleeps except in [`Disk::wait`].
//!
//! Invariants:
//! 1. The buffer of an op in flight is owned by its slot in `ops` until its completion is
//!    queued: the kernel reads from heap memory that nobody frees or moves meanwhile (moving an
//!    `IoBuf` moves its `Vec` header, not the heap bytes).
//! 2. Every op completes exactly once: after its write (and fdatasync) succeeded, or after the
//!    first error that is not EINTR/EAGAIN. Short writes continue from where they stopped.
//! 3. A failed fdatasync is reported, never retried.
//! 4. Dropping the disk waits for every op in flight, so the kernel never reads freed memory.
//! 5. A background op always goes through the ring (its fdatasync linked after its write),
//!    whatever the fsync mode, so it never runs on the shard thread; it is counted apart.
#![allow(unsafe_code)]

use super::{Completion, Disk, FileId, OpenOptions, OwnerId, SubmitRejected, WriteOp};
use super::{FsyncMode, UringOptions, UringStats};
use bytes::Bytes;
use io_uring::{opcode, squeue, types, IoUring};
use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::time::SystemTime;

#[derive(Debug)]
struct OpenFile {
    /// The descriptor writes go through (opened O_DIRECT when asked).
    write: File,
    /// A buffered descriptor for reads and maps, when `write` is O_DIRECT.
    read: Option<File>,
}

impl OpenFile {
    fn reader(&self) -> &File {
        self.read.as_ref().unwrap_or(&self.write)
    }
}

#[derive(Debug)]
struct Slot {
    owner: OwnerId,
    op: WriteOp,
    /// Bytes of the buffer written so far.
    done_bytes: usize,
    /// CQEs still expected for the current round (the write, and the fdatasync if any).
    awaiting: u8,
    write_res: Option<i32>,
    sync_res: Option<i32>,
}

#[derive(Debug, Default)]
struct Owner {
    queue: VecDeque<Completion>,
    in_flight: usize,
}

struct Inner {
    ring: IoUring,
    files: Vec<Option<OpenFile>>,
    free_files: Vec<u32>,
    owners: BTreeMap<u32, Owner>,
    next_owner: u32,
    slots: Vec<Option<Slot>>,
    free_slots: Vec<usize>,
    in_flight: usize,
    stats: UringStats,
    fsync_mode: FsyncMode,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("in_flight", &self.in_flight)
            .field("owners", &self.owners.len())
            .finish()
    }
}

/// The io_uring disk of one shard thread. Share it between the shard's log stores with `Rc`.
#[derive(Debug)]
pub struct UringDisk {
    inner: RefCell<Inner>,
    event_fd: OwnedFd,
    options: UringOptions,
}

const USER_DATA_SYNC: u64 = 1;

/// The fewest submission queue entries a [`UringDisk`] accepts: a write with its linked
/// fdatasync is pushed as two entries at once (`push_round`).
pub const RING_ENTRIES_MIN: u32 = 2;

/// True when `op` is a data op written with `RWF_DSYNC` instead of followed by an fdatasync
/// ([`FsyncMode::Dsync`]). A sync-only op (empty buffer) never is: it is the fdatasync, and its
/// result must be reported.
fn durable_write(mode: FsyncMode, op: &WriteOp) -> bool {
    mode == FsyncMode::Dsync && op.sync && !op.background && !op.buf.is_empty()
}

fn errno(res: i32) -> io::Error {
    io::Error::from_raw_os_error(-res)
}

impl UringDisk {
    /// Creates the ring and its eventfd. Refuses (`InvalidInput`) a ring of fewer than
    /// [`RING_ENTRIES_MIN`] entries: a write and the fdatasync linked after it are queued
    /// together, and a ring that cannot hold both would refuse every such op.
    pub fn new(options: UringOptions) -> io::Result<UringDisk> {
        if options.ring_entries < RING_ENTRIES_MIN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "ring_entries is {}, below {RING_ENTRIES_MIN}: a write and its linked \
                     fdatasync take two entries",
                    options.ring_entries
                ),
            ));
        }
        let ring = IoUring::new(options.ring_entries)?;
        // SAFETY: eventfd takes no pointers; a negative result is checked before use.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        let event_fd = unsafe { OwnedFd::from_raw_fd(fd) };
        ring.submitter().register_eventfd(event_fd.as_raw_fd())?;
        let inner = Inner {
            ring,
            files: Vec::new(),
            free_files: Vec::new(),
            owners: BTreeMap::new(),
            next_owner: 0,
            slots: Vec::new(),
            free_slots: Vec::new(),
            in_flight: 0,
            stats: UringStats::default(),
            fsync_mode: options.fsync_mode,
        };
        Ok(UringDisk { inner: RefCell::new(inner), event_fd, options })
    }

    /// The settings this disk was made with.
    pub fn options(&self) -> UringOptions {
        self.options
    }

    /// What the disk did so far.
    pub fn stats(&self) -> UringStats {
        self.inner.borrow().stats
    }

    /// The eventfd that becomes readable when a completion may be waiting: register it with the
    /// shard's runtime (`tokio::io::unix::AsyncFd`) and, when it fires, call
    /// `process_completions` on every log store of the shard. [`Disk::reap`] clears it, and sets
    /// it again if completions of other owners are still waiting in their queues, so a wake-up
    /// is never lost between two logs.
    pub fn event_fd(&self) -> RawFd {
        self.event_fd.as_raw_fd()
    }

    fn signal(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our own eventfd. A full counter (EAGAIN)
        // already means "readable", so the result needs no handling.
        let _ = unsafe { libc::write(self.event_fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    fn clear_signal(&self) {
        let mut value: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64 from our own non-blocking eventfd; EAGAIN (no
        // pending signal) is fine.
        let _ =
            unsafe { libc::read(self.event_fd.as_raw_fd(), (&mut value as *mut u64).cast(), 8) };
    }
}

impl AsRawFd for UringDisk {
    fn as_raw_fd(&self) -> RawFd {
        self.event_fd.as_raw_fd()
    }
}

impl AsFd for UringDisk {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.event_fd.as_fd()
    }
}

impl Inner {
    fn file(&self, file: FileId) -> io::Result<&OpenFile> {
        self.files
            .get(file.0 as usize)
            .and_then(Option::as_ref)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))
    }

    /// Pushes the SQEs of the current round of `slot` (the rest of its write, and its fdatasync).
    fn push_round(&mut self, slot_index: usize) -> io::Result<()> {
        let slot = self.slots[slot_index].as_mut().expect("push_round on a live slot");
        let fd = self.files[slot.op.file.0 as usize]
            .as_ref()
            .map(|f| f.write.as_raw_fd())
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))?;
        let rest = &slot.op.buf.as_slice()[slot.done_bytes..];
        let len =
            u32::try_from(rest.len()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        // Under Dsync a data write carries its own durability and no fdatasync follows it.
        let dsync = durable_write(self.fsync_mode, &slot.op);
        let mut write = opcode::Write::new(types::Fd(fd), rest.as_ptr(), len)
            .offset(slot.op.offset + slot.done_bytes as u64)
            .rw_flags(if dsync { libc::RWF_DSYNC } else { 0 })
            .build()
            .user_data((slot_index as u64) << 1);
        slot.write_res = None;
        slot.sync_res = None;
        slot.awaiting = 1;
        if rest.is_empty() && slot.op.sync {
            // A sync-only op: the fdatasync alone, as if an empty write had completed.
            slot.write_res = Some(0);
            write = opcode::Fsync::new(types::Fd(fd))
                .flags(types::FsyncFlags::DATASYNC)
                .build()
                .user_data(((slot_index as u64) << 1) | USER_DATA_SYNC);
            if slot.op.background {
                self.stats.background_syncs += 1;
            } else {
                self.stats.op_syncs += 1;
            }
            if self.ring.submission().is_full() {
                self.ring.submit()?;
            }
            // SAFETY: an fsync SQE holds no pointer; the descriptor stays open until completion.
            return unsafe { self.ring.submission().push(&write) }
                .map_err(|_| io::Error::from_raw_os_error(libc::EBUSY));
        }
        if dsync {
            self.stats.op_syncs += 1;
            self.stats.dsync_writes += 1;
        }
        let mut entries = [write.clone(), write.clone()];
        let mut count = 1;
        // A background op's fdatasync is always linked on the ring: it must not run on the
        // writer's thread.
        if slot.op.sync && (self.fsync_mode == FsyncMode::Ring || slot.op.background) {
            write = write.flags(squeue::Flags::IO_LINK);
            let fsync = opcode::Fsync::new(types::Fd(fd))
                .flags(types::FsyncFlags::DATASYNC)
                .build()
                .user_data(((slot_index as u64) << 1) | USER_DATA_SYNC);
            entries = [write, fsync];
            count = 2;
            if slot.op.background {
                self.stats.background_syncs += 1;
            } else {
                self.stats.op_syncs += 1;
            }
            slot.awaiting = 2;
        }
        let free = {
            let sq = self.ring.submission();
            sq.capacity() - sq.len()
        };
        if free < count {
            self.ring.submit()?;
        }
        // SAFETY: the SQEs point into the slot's buffer, which the slot owns until the op's
        // completion is queued (invariant 1), and at a descriptor that stays open until then.
        unsafe { self.ring.submission().push_multiple(&entries[..count]) }
            .map_err(|_| io::Error::from_raw_os_error(libc::EBUSY))?;
        Ok(())
    }

    /// Moves every CQE into its owner's queue, continuing short or interrupted writes.
    fn drain_cq(&mut self) {
        let mut resubmit = false;
        loop {
            let Some(cqe) = self.ring.completion().next() else { break };
            let slot_index = (cqe.user_data() >> 1) as usize;
            let is_sync = cqe.user_data() & USER_DATA_SYNC != 0;
            let Some(slot) = self.slots.get_mut(slot_index).and_then(Option::as_mut) else {
                continue;
            };
            if is_sync {
                slot.sync_res = Some(cqe.result());
            } else {
                slot.write_res = Some(cqe.result());
            }
            slot.awaiting -= 1;
            if slot.awaiting > 0 {
                continue;
            }
            let write_res = slot.write_res.unwrap_or(-libc::EIO);
            if write_res == -libc::EINTR || write_res == -libc::EAGAIN {
                resubmit |= self.retry(slot_index);
                continue;
            }
            let dsync = durable_write(self.fsync_mode, &slot.op);
            if write_res < 0 {
                // A durable write's failure may come from making it durable: report it as a
                // failed sync (never retried), except for a lack of space, which only the write
                // itself reports.
                let sync_failed = dsync && write_res != -libc::ENOSPC;
                let error = errno(write_res);
                let error = if sync_failed {
                    io::Error::new(error.kind(), format!("durable write (RWF_DSYNC): {error}"))
                } else {
                    error
                };
                self.finish(slot_index, Err(error), sync_failed);
                continue;
            }
            if write_res == 0 && slot.done_bytes < slot.op.buf.len() {
                self.finish(slot_index, Err(io::Error::from(io::ErrorKind::WriteZero)), false);
                continue;
            }
            slot.done_bytes += write_res as usize;
            if slot.done_bytes < slot.op.buf.len() {
                // A short write breaks the link, so the fdatasync was cancelled: go again with
                // the rest and a fresh fdatasync.
                resubmit |= self.retry(slot_index);
                continue;
            }
            let sync_res = slot.sync_res;
            if dsync {
                self.finish(slot_index, Ok(()), false);
                continue;
            }
            if slot.op.sync && sync_res.is_none() {
                // FsyncMode::Thread: the write is complete; this thread syncs it now.
                self.stats.op_syncs += 1;
                let file = slot.op.file;
                let synced = self.file(file).and_then(|f| f.write.sync_data());
                let failed = synced.is_err();
                self.finish(slot_index, synced, failed);
                continue;
            }
            match sync_res {
                Some(res) if res < 0 => self.finish(slot_index, Err(errno(res)), true),
                _ => self.finish(slot_index, Ok(()), false),
            }
        }
        if resubmit {
            // A failed submit leaves the SQEs queued; the next submit or wait pushes them.
            let _ = self.ring.submit();
        }
    }

    fn retry(&mut self, slot_index: usize) -> bool {
        match self.push_round(slot_index) {
            Ok(()) => true,
            Err(e) => {
                self.finish(slot_index, Err(e), false);
                false
            }
        }
    }

    fn finish(&mut self, slot_index: usize, result: io::Result<()>, sync_failed: bool) {
        let slot = self.slots[slot_index].take().expect("finish on a live slot");
        self.free_slots.push(slot_index);
        self.in_flight -= 1;
        if let Some(owner) = self.owners.get_mut(&slot.owner.0) {
            owner.in_flight -= 1;
            owner.queue.push_back(Completion {
                tag: slot.op.tag,
                buf: slot.op.buf,
                result,
                sync_failed,
            });
        }
    }

    fn new_slot(&mut self, slot: Slot) -> usize {
        self.in_flight += 1;
        if let Some(owner) = self.owners.get_mut(&slot.owner.0) {
            owner.in_flight += 1;
        }
        match self.free_slots.pop() {
            Some(i) => {
                self.slots[i] = Some(slot);
                i
            }
            None => {
                self.slots.push(Some(slot));
                self.slots.len() - 1
            }
        }
    }
}

fn write_and_sync(file: &File, op: &WriteOp) -> (io::Result<()>, bool) {
    if let Err(e) = file.write_all_at(op.buf.as_slice(), op.offset) {
        return (Err(e), false);
    }
    if op.sync {
        if let Err(e) = file.sync_data() {
            return (Err(e), true);
        }
    }
    (Ok(()), false)
}

impl Disk for UringDisk {
    fn register(&self) -> OwnerId {
        let mut inner = self.inner.borrow_mut();
        let id = inner.next_owner;
        inner.next_owner += 1;
        inner.owners.insert(id, Owner::default());
        OwnerId(id)
    }

    fn unregister(&self, owner: OwnerId) {
        self.inner.borrow_mut().owners.remove(&owner.0);
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            if let Some(name) = entry?.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    fn open(&self, path: &Path, options: OpenOptions) -> io::Result<FileId> {
        let mut opts = std::fs::OpenOptions::new();
        opts.read(true).write(true);
        if options.create_new {
            opts.create_new(true);
        }
        if options.direct {
            opts.custom_flags(libc::O_DIRECT);
        }
        let write = opts.open(path)?;
        let read = if options.direct { Some(File::open(path)?) } else { None };
        let mut inner = self.inner.borrow_mut();
        let entry = Some(OpenFile { write, read });
        let id = match inner.free_files.pop() {
            Some(id) => {
                inner.files[id as usize] = entry;
                id
            }
            None => {
                inner.files.push(entry);
                u32::try_from(inner.files.len() - 1)
                    .map_err(|_| io::Error::from_raw_os_error(libc::EMFILE))?
            }
        };
        Ok(FileId(id))
    }

    fn close(&self, file: FileId) {
        let mut inner = self.inner.borrow_mut();
        if let Some(slot) = inner.files.get_mut(file.0 as usize) {
            if slot.take().is_some() {
                inner.free_files.push(file.0);
            }
        }
    }

    fn size(&self, file: FileId) -> io::Result<u64> {
        Ok(self.inner.borrow().file(file)?.write.metadata()?.len())
    }

    fn allocate(&self, file: FileId, len: u64) -> io::Result<()> {
        let inner = self.inner.borrow();
        let f = inner.file(file)?;
        let len_off =
            libc::off_t::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
        // SAFETY: fallocate takes a descriptor we own and plain integers.
        let rc = unsafe { libc::fallocate(f.write.as_raw_fd(), 0, 0, len_off) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn read_at(&self, file: FileId, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let inner = self.inner.borrow();
        let f = inner.file(file)?.reader();
        let mut done = 0;
        while done < buf.len() {
            match f.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }

    fn write_at(&self, file: FileId, offset: u64, data: &[u8]) -> io::Result<()> {
        self.inner.borrow().file(file)?.write.write_all_at(data, offset)
    }

    fn sync(&self, file: FileId) -> io::Result<()> {
        let mut inner = self.inner.borrow_mut();
        inner.stats.other_syncs += 1;
        inner.file(file)?.write.sync_data()
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.inner.borrow_mut().stats.other_syncs += 1;
        File::open(dir)?.sync_all()
    }

    fn drop_clean_cache(&self, file: FileId) -> io::Result<()> {
        let inner = self.inner.borrow();
        let fd = inner.file(file)?.write.as_raw_fd();
        // SAFETY: posix_fadvise takes a descriptor we own and plain integers; it returns the
        // error number instead of setting errno.
        let rc = unsafe { libc::posix_fadvise(fd, 0, 0, libc::POSIX_FADV_DONTNEED) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        Ok(())
    }

    fn prefetch(&self, file: FileId, offset: u64, len: u64) {
        let inner = self.inner.borrow();
        let Ok(f) = inner.file(file) else { return };
        let (Ok(offset), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len))
        else {
            return;
        };
        // SAFETY: as in `drop_clean_cache`. Advice: its result does not matter.
        let _ = unsafe {
            libc::posix_fadvise(f.reader().as_raw_fd(), offset, len, libc::POSIX_FADV_WILLNEED)
        };
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn modified(&self, path: &Path) -> io::Result<SystemTime> {
        std::fs::metadata(path)?.modified()
    }

    fn map(&self, file: FileId, len: u64) -> io::Result<Bytes> {
        let inner = self.inner.borrow();
        let f = inner.file(file)?.reader();
        if f.metadata()?.len() < len {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
        }
        let len = usize::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
        if len == 0 {
            return Ok(Bytes::new());
        }
        // SAFETY: the map is read-only and covers a sealed segment, which raftwal never writes
        // again while it is mapped (docs/format.md); the file is not truncated while open.
        let map = unsafe { memmap2::MmapOptions::new().len(len).map(f)? };
        Ok(Bytes::from_owner(map))
    }

    fn concurrent_syncs_share_errors(&self) -> bool {
        // Ring and Dsync run each batch's sync on a kernel worker, so two may overlap; Thread
        // and Blocking run them one after the other on the writer's thread.
        matches!(self.options.fsync_mode, FsyncMode::Ring | FsyncMode::Dsync)
    }

    fn submit(&self, owner: OwnerId, op: WriteOp) -> Result<(), SubmitRejected> {
        // A sync-only data op (empty buffer) in Thread mode is the writer's own fdatasync: run it
        // now. Background ops always go through the ring.
        let thread = !op.background;
        let inline = thread && op.buf.is_empty() && self.options.fsync_mode == FsyncMode::Thread;
        if (thread && self.options.fsync_mode == FsyncMode::Blocking) || inline {
            let (result, sync_failed) = {
                let mut inner = self.inner.borrow_mut();
                inner.stats.ops += 1;
                inner.stats.op_syncs += u64::from(op.sync);
                match inner.file(op.file) {
                    Ok(f) => write_and_sync(&f.write, &op),
                    Err(e) => return Err(SubmitRejected { op, error: e }),
                }
            };
            let mut inner = self.inner.borrow_mut();
            if let Some(o) = inner.owners.get_mut(&owner.0) {
                o.queue.push_back(Completion { tag: op.tag, buf: op.buf, result, sync_failed });
            }
            drop(inner);
            self.signal();
            return Ok(());
        }
        let mut inner = self.inner.borrow_mut();
        if let Err(error) = inner.file(op.file) {
            return Err(SubmitRejected { op, error });
        }
        if op.background {
            inner.stats.background_ops += 1;
        } else {
            inner.stats.ops += 1;
        }
        let slot = Slot { owner, op, done_bytes: 0, awaiting: 0, write_res: None, sync_res: None };
        let index = inner.new_slot(slot);
        // `push_round` fails only before it queued any SQE of the op (the SQEs of other ops may
        // be queued, so an empty queue says nothing about this one): then the op never reaches
        // the kernel and goes back to the caller.
        if let Err(error) = inner.push_round(index) {
            let slot = inner.slots[index].take().expect("slot just created");
            inner.free_slots.push(index);
            inner.in_flight -= 1;
            if let Some(o) = inner.owners.get_mut(&owner.0) {
                o.in_flight -= 1;
            }
            return Err(SubmitRejected { op: slot.op, error });
        }
        // A failed io_uring_enter leaves the SQEs queued: the next submit or wait hands them to
        // the kernel, and the op stays in flight meanwhile.
        let _ = inner.ring.submit();
        Ok(())
    }

    fn reap(&self, owner: OwnerId, out: &mut Vec<Completion>) {
        self.clear_signal();
        let mut inner = self.inner.borrow_mut();
        inner.drain_cq();
        if !inner.ring.submission().is_empty() {
            // SQEs an earlier io_uring_enter failed to hand over (the completion queue was
            // full, say): now that completions were taken, try again.
            let _ = inner.ring.submit();
        }
        if let Some(o) = inner.owners.get_mut(&owner.0) {
            out.extend(o.queue.drain(..));
        }
        // The signal just cleared may have announced completions of other owners, now routed to
        // their queues: keep the eventfd readable while any of them waits, or the shard loop
        // would sleep with a completion in hand.
        let others_waiting = inner.owners.values().any(|o| !o.queue.is_empty());
        drop(inner);
        if others_waiting {
            self.signal();
        }
    }

    fn wait(&self, owner: OwnerId) -> io::Result<()> {
        let mut inner = self.inner.borrow_mut();
        loop {
            inner.drain_cq();
            let Some(o) = inner.owners.get(&owner.0) else { return Ok(()) };
            if !o.queue.is_empty() || o.in_flight == 0 {
                return Ok(());
            }
            match inner.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for UringDisk {
    fn drop(&mut self) {
        let inner = self.inner.get_mut();
        while inner.in_flight > 0 {
            if inner.ring.submit_and_wait(1).is_err() {
                // The kernel refused to wait; leak the buffers rather than free memory that a
                // write may still read.
                for slot in inner.slots.drain(..).flatten() {
                    std::mem::forget(slot);
                }
                return;
            }
            inner.drain_cq();
        }
    }
}
