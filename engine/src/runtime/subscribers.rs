//! The subscribers of one log on one node: local ones (the embedding API's [`Subscription`]s)
//! and remote ones (a client's Subscribe stream), each with its own cursor.
//!
//! Owns: every subscriber's cursor and sink, and delivery: on every commit advance (and when a
//! stalled subscriber made room), read committed entries from the log store in batches and push
//! them while the sink has room.
//! Must not: deliver an entry past the commit index (subscribers see committed entries only, so
//! any replica serves them the same bytes), or block: a full sink pauses that subscriber alone.
//!
//! Invariants:
//! 1. A subscriber's cursor only moves forward, one batch at a time, over consecutive indices:
//!    no gap, no duplicate.
//! 2. A paused subscriber is woken exactly when its sink has room again: a local sink by the
//!    consumer's resume command (the `stalled` flag is raised before the final re-check, so the
//!    consumer cannot miss it), a remote sink by a task waiting for room.
//! 3. A subscriber whose consumer went away is dropped at its next delivery or the log's next
//!    tick ([`Subscribers::forget_gone`]), whichever comes first: the list holds the live
//!    subscribers and, for at most a tick, those that just left.
//!
//! [`Subscription`]: crate::Subscription

use crate::error::ReadError;
use crate::log::LogEntry;
use crate::storage::{Disk, LogStore, ReadError as StoreReadError};
use raftwal_wire::client::{ClientError, ErrorCode};
use raftwal_wire::transport::{
    SinkError, SubscriptionSink, READ_ANSWER_ENTRY_OVERHEAD_BYTES, READ_ANSWER_FIXED_BYTES,
};
use raftwal_wire::types::{Entry, LogId, LogIndex};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

/// Payload bytes read per delivered batch, about.
pub(crate) const BATCH_BYTES_MAX: usize = 1 << 20;

/// Cuts `entries` to the longest prefix (at least one entry) that one Entries frame of at most
/// `frame_bytes_max` bytes carries, counting each entry's framing and the frame's fixed fields
/// as the transport does when it reserves room for a Read's answer
/// ([`raftwal_wire::transport::read_answer_body_bytes_max`]: more than the wire's own). A
/// node's frame limit may be as low as its largest entry allows, well below a batch of many
/// small entries with their framing; the rest goes in the next frame.
pub(crate) fn fit_frame(entries: &mut Vec<Entry>, frame_bytes_max: usize) {
    let mut size = READ_ANSWER_FIXED_BYTES;
    let keep = entries
        .iter()
        .position(|e| {
            size += e.data.len() + READ_ANSWER_ENTRY_OVERHEAD_BYTES;
            size > frame_bytes_max
        })
        .unwrap_or(entries.len());
    entries.truncate(keep.max(1));
}

/// The shard's end of a local subscription.
#[derive(Debug)]
pub(crate) struct LocalSink {
    pub(crate) id: u64,
    pub(crate) tx: mpsc::Sender<Result<Vec<LogEntry>, ReadError>>,
    pub(crate) stalled: Arc<AtomicBool>,
    /// Why the subscription ended, when its buffer was full at the end: the consumer reads it
    /// once it drained the buffer and found the channel closed.
    pub(crate) end: Arc<OnceLock<ReadError>>,
}

#[derive(Debug)]
enum Sink {
    Local(LocalSink),
    Remote {
        sink: Arc<SubscriptionSink>,
        /// A task is waiting for room in the sink and will wake the shard.
        waiting: bool,
    },
}

#[derive(Debug)]
struct Subscriber {
    id: u64,
    next: LogIndex,
    /// Asked from 0 (the first entry this node has, wherever compaction left it) and given
    /// nothing yet: `next` is the first stored index when it came, and follows the log's start
    /// should that move past it first (compaction, or a follower's log started after a
    /// leader's entry), instead of ending the subscription as compacted.
    from_start: bool,
    sink: Sink,
}

/// What delivery to one subscriber came to.
enum Outcome {
    /// Everything committed was delivered, or the sink is full (and will wake us).
    Paused,
    /// The subscriber is gone; drop it.
    Remove,
    /// Reading for the subscriber failed; end it with this error.
    Fail(ReadError, ErrorCode),
}

/// Asks the shard loop to deliver again to remote subscriber `(log, id)` once its sink has room.
pub(crate) type RoomWaker = mpsc::UnboundedSender<(LogId, u64)>;

/// The subscribers of one log.
#[derive(Debug)]
pub(crate) struct Subscribers {
    log: LogId,
    list: Vec<Subscriber>,
    next_remote_id: u64,
    /// The largest frame the transport sends (a remote subscriber's batch must fit in one).
    frame_bytes_max: usize,
    /// Payload bytes pushed to subscribers, for metrics.
    bytes_out: u64,
}

impl Subscribers {
    pub(crate) fn new(log: LogId, frame_bytes_max: usize) -> Subscribers {
        // Remote ids count down from the top so they never meet the local ids counted up by
        // `Subscription`.
        Subscribers {
            log,
            list: Vec::new(),
            next_remote_id: u64::MAX,
            frame_bytes_max,
            bytes_out: 0,
        }
    }

    /// Payload bytes delivered so far.
    pub(crate) fn bytes_out(&self) -> u64 {
        self.bytes_out
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Subscribers kept now.
    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    /// Adds a local subscriber from `from` (at least the log's first stored index; 0, which
    /// holds no entry, subscribes from the first stored index, wherever compaction left it).
    pub(crate) fn add_local(&mut self, sink: LocalSink, from: LogIndex, first: LogIndex) {
        let from_start = from == LogIndex::ZERO;
        let from = if from_start { first } else { from };
        if from < first {
            let _ =
                sink.tx.try_send(Err(ReadError::Compacted { requested: from, first_index: first }));
            return;
        }
        self.list.push(Subscriber { id: sink.id, next: from, from_start, sink: Sink::Local(sink) });
    }

    /// Adds a remote subscriber from `from` (0 from the first stored index, as for a local one).
    pub(crate) fn add_remote(&mut self, sink: SubscriptionSink, from: LogIndex, first: LogIndex) {
        let from_start = from == LogIndex::ZERO;
        let from = if from_start { first } else { from };
        if from < first {
            sink.end(Some(ClientError {
                code: ErrorCode::Compacted,
                message: format!("index {from} is compacted; the log starts at {first}"),
            }));
            return;
        }
        let id = self.next_remote_id;
        self.next_remote_id -= 1;
        let sink = Sink::Remote { sink: Arc::new(sink), waiting: false };
        self.list.push(Subscriber { id, next: from, from_start, sink });
    }

    /// Drops the subscribers whose consumer went away (a dropped [`Subscription`], a closed
    /// stream or connection). A delivery notices that too, but only a subscriber with entries
    /// to deliver gets one: without this, a log that commits nothing (idle, or without a
    /// leader) would keep every subscriber that came and went.
    ///
    /// [`Subscription`]: crate::Subscription
    pub(crate) fn forget_gone(&mut self) {
        self.list.retain(|s| match &s.sink {
            Sink::Local(local) => !local.tx.is_closed(),
            Sink::Remote { sink, .. } => !sink.is_closed(),
        });
    }

    /// Marks subscriber `id` as having room again (its waker fired or its consumer resumed).
    pub(crate) fn room(&mut self, id: u64) {
        if let Some(s) = self.list.iter_mut().find(|s| s.id == id) {
            if let Sink::Remote { waiting, .. } = &mut s.sink {
                *waiting = false;
            }
        }
    }

    /// Delivers every committed entry (up to `commit`) that fits in the subscribers' sinks.
    pub(crate) fn deliver<D: Disk>(
        &mut self,
        store: &LogStore<D>,
        commit: LogIndex,
        waker: &RoomWaker,
    ) {
        let log = self.log;
        let frame_bytes_max = self.frame_bytes_max;
        let mut bytes_out = 0;
        let mut position = 0;
        while position < self.list.len() {
            let s = &mut self.list[position];
            match deliver_one(s, store, commit, log, frame_bytes_max, waker, &mut bytes_out) {
                Outcome::Paused => position += 1,
                Outcome::Remove => {
                    self.list.swap_remove(position);
                }
                Outcome::Fail(error, code) => {
                    let s = self.list.swap_remove(position);
                    end_one(s.sink, error, code);
                }
            }
        }
        self.bytes_out += bytes_out;
    }

    /// Ends every subscription with `error` (shutdown, storage failure).
    pub(crate) fn end_all(&mut self, error: ReadError, code: ErrorCode) {
        for s in self.list.drain(..) {
            end_one(s.sink, error.clone(), code);
        }
    }
}

fn end_one(sink: Sink, error: ReadError, code: ErrorCode) {
    match sink {
        Sink::Local(local) => {
            if let Err(TrySendError::Full(Err(error))) = local.tx.try_send(Err(error)) {
                // A lagging consumer: it learns why once it drained its buffer.
                let _ = local.end.set(error);
            }
        }
        Sink::Remote { sink, .. } => {
            // A task waiting for room may share the sink: ending it finishes the stream all the
            // same (with the error text), and the task's wait then fails.
            sink.end(Some(ClientError { code, message: error.to_string() }));
        }
    }
}

/// Reads the next batch for a subscriber at `next`, up to `commit`.
fn read_batch<D: Disk>(
    store: &LogStore<D>,
    next: LogIndex,
    commit: LogIndex,
) -> Result<Vec<Entry>, StoreReadError> {
    let mut entries = store.read(next, BATCH_BYTES_MAX)?;
    while entries.last().is_some_and(|e| e.index > commit) {
        entries.pop();
    }
    Ok(entries)
}

fn deliver_one<D: Disk>(
    s: &mut Subscriber,
    store: &LogStore<D>,
    commit: LogIndex,
    log: LogId,
    frame_bytes_max: usize,
    waker: &RoomWaker,
    bytes_out: &mut u64,
) -> Outcome {
    while s.next <= commit {
        match &mut s.sink {
            Sink::Local(local) => {
                if local.tx.is_closed() {
                    return Outcome::Remove;
                }
                // Do not read what cannot be sent: a consumer that stopped costs no reads.
                if local.tx.capacity() == 0 && !recheck_local(local) {
                    return Outcome::Paused;
                }
            }
            Sink::Remote { sink, waiting } => {
                if sink.is_closed() {
                    return Outcome::Remove;
                }
                if *waiting {
                    return Outcome::Paused;
                }
                if !sink.has_room() {
                    *waiting = true;
                    let (sink, waker, id) = (sink.clone(), waker.clone(), s.id);
                    tokio::spawn(async move {
                        if sink.ready().await.is_ok() {
                            let _ = waker.send((log, id));
                        }
                    });
                    return Outcome::Paused;
                }
            }
        }
        let mut entries = match read_batch(store, s.next, commit) {
            Ok(entries) => entries,
            Err(StoreReadError::Compacted { first_index, .. })
                if s.from_start && first_index > s.next =>
            {
                s.next = first_index;
                continue;
            }
            Err(e) => return fail(log, e),
        };
        if let Sink::Remote { .. } = s.sink {
            fit_frame(&mut entries, frame_bytes_max);
        }
        let Some(last) = entries.last().map(|e| e.index) else {
            return Outcome::Paused;
        };
        let size: u64 = entries.iter().map(|e| e.data.len() as u64).sum();
        match &mut s.sink {
            Sink::Local(local) => {
                let batch: Vec<LogEntry> =
                    entries.iter().filter_map(LogEntry::from_entry).collect();
                if !batch.is_empty() {
                    match local.tx.try_send(Ok(batch)) {
                        Ok(()) => s.from_start = false,
                        Err(TrySendError::Closed(_)) => return Outcome::Remove,
                        // Capacity was checked above and only this thread sends.
                        Err(TrySendError::Full(_)) => return Outcome::Paused,
                    }
                }
            }
            Sink::Remote { sink, .. } => match sink.try_send(&entries) {
                Ok(()) => s.from_start = false,
                Err(SinkError::Full) => continue,
                // Said to the subscriber, or its stream would wait for entries that never come.
                Err(SinkError::Encode(e)) => {
                    let reason = format!("cannot encode entries from {}: {e}", s.next);
                    return Outcome::Fail(ReadError::Storage { log, reason }, ErrorCode::Internal);
                }
                Err(_) => return Outcome::Remove,
            },
        }
        *bytes_out += size;
        s.next = last.next();
    }
    Outcome::Paused
}

/// The channel of a local subscriber is full: raise `stalled`, then look again, so that a
/// consumer taking a batch right now either sees the flag or left room we see here.
fn recheck_local(local: &LocalSink) -> bool {
    local.stalled.store(true, Ordering::SeqCst);
    if local.tx.capacity() > 0 {
        local.stalled.store(false, Ordering::SeqCst);
        return true;
    }
    false
}

fn fail(log: LogId, e: StoreReadError) -> Outcome {
    match e {
        StoreReadError::Compacted { index, first_index } => Outcome::Fail(
            ReadError::Compacted { requested: index, first_index },
            ErrorCode::Compacted,
        ),
        other => Outcome::Fail(
            ReadError::Storage { log, reason: other.to_string() },
            ErrorCode::Internal,
        ),
    }
}
