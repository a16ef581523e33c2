//! [`Subscription`]: committed entries of one log, delivered as they commit, as an async
//! `Stream` or a blocking iterator.
//!
//! Owns: the consumer's end of one subscription: a bounded channel of entry batches from the
//! shard, the batch being consumed, and the "stalled" flag that brings delivery back after the
//! consumer made room.
//! Must not: read the log itself; the shard reads and pushes, so a subscription costs the shard
//! one read per batch, not per entry.
//!
//! Backpressure: the shard pushes a batch only when the channel has room. When it finds the
//! channel full, it raises `stalled` and stops; the consumer, after taking a batch, lowers the
//! flag and asks the shard to resume. The shard re-checks the channel after raising the flag, so
//! a resume is never lost (see `runtime::subscribers`).

use crate::error::ReadError;
use crate::log::LogEntry;
use crate::runtime::command::{Command, ShardHandle};
use crate::runtime::subscribers::LocalSink;
use futures_core::Stream;
use raftwal_wire::types::{LogId, LogIndex};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// Batches buffered per subscriber (each at most `runtime::subscribers::BATCH_BYTES_MAX`).
pub(crate) const CHANNEL_BATCHES: usize = 16;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A stream of committed entries. See the module documentation.
#[derive(Debug)]
pub struct Subscription {
    log: LogId,
    id: u64,
    shard: ShardHandle,
    rx: mpsc::Receiver<Result<Vec<LogEntry>, ReadError>>,
    stalled: Arc<AtomicBool>,
    /// Why the shard ended the stream, when it could not queue the reason (the buffer was full).
    end: Arc<OnceLock<ReadError>>,
    batch: std::vec::IntoIter<LogEntry>,
    done: bool,
}

impl Subscription {
    pub(crate) fn start(log: LogId, shard: ShardHandle, from: LogIndex) -> Subscription {
        let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
        let stalled = Arc::new(AtomicBool::new(false));
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let end = Arc::new(OnceLock::new());
        let sink = LocalSink { id, tx, stalled: stalled.clone(), end: end.clone() };
        // When the shard is gone, dropping the command drops the sender: the stream then ends
        // with `ShuttingDown` below.
        let _ = shard.send(Command::Subscribe { log, from, sink });
        Subscription {
            log,
            id,
            shard,
            rx,
            stalled,
            end,
            batch: Vec::new().into_iter(),
            done: false,
        }
    }

    fn take_batch(&mut self, batch: Vec<LogEntry>) {
        if self.stalled.swap(false, Ordering::SeqCst) {
            // A lost resume would stall this subscriber for good; a spare one costs one command.
            let _ = self.shard.send(Command::ResumeSubscriber { log: self.log, id: self.id });
        }
        self.batch = batch.into_iter();
    }

    /// Why the channel closed: the reason the shard could not queue, else the shard is gone.
    fn closed_with(&self) -> ReadError {
        self.end.get().cloned().unwrap_or(ReadError::ShuttingDown)
    }

    fn poll_entry(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<LogEntry, ReadError>>> {
        loop {
            if let Some(entry) = self.batch.next() {
                return Poll::Ready(Some(Ok(entry)));
            }
            if self.done {
                return Poll::Ready(None);
            }
            match self.rx.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(batch))) => self.take_batch(batch),
                Poll::Ready(Some(Err(e))) => {
                    self.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None) => {
                    self.done = true;
                    return Poll::Ready(Some(Err(self.closed_with())));
                }
            }
        }
    }

    /// The next committed entry; `None` after the stream ended with an error.
    pub async fn next(&mut self) -> Option<Result<LogEntry, ReadError>> {
        std::future::poll_fn(|cx| self.poll_entry(cx)).await
    }

    /// The next committed entry, blocking the calling thread. Must not be called from inside an
    /// async runtime.
    pub fn next_blocking(&mut self) -> Option<Result<LogEntry, ReadError>> {
        loop {
            if let Some(entry) = self.batch.next() {
                return Some(Ok(entry));
            }
            if self.done {
                return None;
            }
            match self.rx.blocking_recv() {
                Some(Ok(batch)) => self.take_batch(batch),
                Some(Err(e)) => {
                    self.done = true;
                    return Some(Err(e));
                }
                None => {
                    self.done = true;
                    return Some(Err(self.closed_with()));
                }
            }
        }
    }

    /// The subscription as a blocking iterator (see [`Subscription::next_blocking`]).
    pub fn into_blocking_iter(self) -> BlockingIter {
        BlockingIter(self)
    }
}

impl Stream for Subscription {
    type Item = Result<LogEntry, ReadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_entry(cx)
    }
}

/// A [`Subscription`] consumed by blocking the calling thread.
#[derive(Debug)]
pub struct BlockingIter(Subscription);

impl Iterator for BlockingIter {
    type Item = Result<LogEntry, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next_blocking()
    }
}
