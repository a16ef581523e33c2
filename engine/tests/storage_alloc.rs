//! No per-entry heap allocation on the write path: a counting global allocator shows that
//! appending, submitting and completing thousands of entries allocates a handful of times in
//! all (amortized growth of the tail queue and the offset table), not once per entry, on the
//! real io_uring disk in both fsync modes and with and without O_DIRECT.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is a failure report.
#![allow(unsafe_code)] // A global allocator is an unsafe trait; it only forwards to `System`.

use bytes::Bytes;
use raftwal::storage::{FsyncMode, LogOptions, LogStore, UringDisk, UringOptions};
use raftwal_wire::types::{Entry, EntryKind, LogIndex, Term};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::rc::Rc;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every method forwards to the system allocator unchanged; the counter is a
// thread-local `Cell` with a const initializer, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

const BATCH: u64 = 64;
const BATCHES: u64 = 200;

fn measure(fsync_mode: FsyncMode, direct_io: bool, chunks: (usize, usize)) {
    measure_with(fsync_mode, direct_io, chunks, 1);
}

/// With `in_flight` above 1, each round appends and submits that many batches, pipelined behind
/// each other, before it waits.
fn measure_with(
    fsync_mode: FsyncMode,
    direct_io: bool,
    (first, write_chunk_bytes): (usize, usize),
    in_flight: usize,
) {
    let dir = tempfile::tempdir().unwrap();
    let disk =
        Rc::new(UringDisk::new(UringOptions { fsync_mode, ..UringOptions::default() }).unwrap());
    let options = LogOptions {
        segment_size_bytes: 64 << 20,
        direct_io,
        write_chunk_bytes,
        write_chunk_first_bytes: first,
        batches_in_flight_max: in_flight,
        ..LogOptions::default()
    };
    let (mut log, _) = LogStore::open(dir.path(), options, disk.clone()).unwrap();
    // Payloads are slices of one shared buffer, as they are slices of received frames in a node.
    let frame = Bytes::from(vec![0xA5u8; 256 * 1024]);
    let total = BATCH * (BATCHES + 20);
    let all: Vec<Entry> = (1..=total)
        .map(|i| {
            let at = (i as usize * 97) % (frame.len() - 1024);
            Entry {
                index: LogIndex(i),
                term: Term(1),
                kind: EntryKind::Normal,
                data: frame.slice(at..at + 200),
            }
        })
        .collect();
    let mut batches = all.chunks(BATCH as usize);
    let mut run = |log: &mut LogStore<UringDisk>, n: u64| {
        for _ in 0..n / in_flight as u64 {
            for _ in 0..in_flight {
                log.append(batches.next().unwrap()).unwrap();
                assert!(log.submit().unwrap());
            }
            while log.has_in_flight() {
                log.wait().unwrap();
            }
        }
    };
    // Warm up: buffers and queues reach their working size.
    run(&mut log, 20);
    let before = allocations();
    run(&mut log, BATCHES);
    let allocated = allocations() - before;
    let entries = BATCH * BATCHES;
    assert_eq!(log.durable_index(), LogIndex(total));
    println!("{fsync_mode:?} direct={direct_io} chunks={first}..{write_chunk_bytes} in flight={in_flight}: {allocated} allocations for {entries} entries in {BATCHES} batches");
    if in_flight > 1 {
        assert!(log.stats().pipelined_batches >= BATCHES / 2, "{:?}", log.stats());
    }
    // Amortized doubling of the tail queue and the offset table: a logarithmic number in all.
    assert!(allocated <= 24, "{allocated} allocations for {entries} entries: the write path allocates per entry or per batch");
    assert_eq!(log.stats().data_syncs, log.stats().batches, "one fdatasync per batch");
}

#[test]
fn write_path_does_not_allocate_per_entry() {
    // One write per batch (the default chunk size is larger than these batches)...
    let whole = (LogOptions::default().write_chunk_bytes, LogOptions::default().write_chunk_bytes);
    measure(FsyncMode::Thread, true, whole);
    measure(FsyncMode::Ring, true, whole);
    measure(FsyncMode::Thread, false, whole);
    measure(FsyncMode::Ring, false, whole);
    measure(FsyncMode::Blocking, true, whole);
    measure(FsyncMode::Dsync, true, whole);
    measure(FsyncMode::Dsync, false, whole);
    // ...and batches written in several chunks followed by a separate fdatasync.
    measure(FsyncMode::Thread, true, (4096, 4096));
    measure(FsyncMode::Ring, true, (4096, 4096));
    measure(FsyncMode::Blocking, false, (4096, 4096));
    measure(FsyncMode::Dsync, true, (4096, 4096));
    // ...and in chunks that double from 1 KiB to 8 KiB.
    measure(FsyncMode::Thread, true, (1024, 8192));
    measure(FsyncMode::Ring, false, (1024, 8192));
    // ...and two batches in flight, the second pipelined behind the first.
    measure_with(FsyncMode::Dsync, true, whole, 2);
    measure_with(FsyncMode::Ring, true, (1024, 8192), 2);
    measure_with(FsyncMode::Thread, false, whole, 2);
}
