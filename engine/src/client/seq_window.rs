//! The sequence numbers a [`super::Client`] hands to its appends, kept within the node's
//! deduplication window.
//!
//! Owns: [`SeqWindow`]: the next sequence number and those handed out whose append has not
//! settled (answered, failed or given up).
//! Must not: hand out a number that is [`DEDUP_WINDOW_SEQS`] or more past the oldest unsettled
//! one, unless nothing is unsettled.
//!
//! Why: a node remembers, per client, the highest [`DEDUP_WINDOW_SEQS`] sequence numbers it
//! applied (`runtime::dedup`). An append retried while the same client's other appends go on
//! (64 tasks sharing one client, one of them stuck on a node that failed) would otherwise find
//! its number forgotten once more than that many newer ones were applied, and its outcome could
//! no longer be told. With every number handed out less than the window past the oldest
//! unsettled one, at most `DEDUP_WINDOW_SEQS - 1` numbers above a retried one exist, so the
//! node still holds it if it was applied, and its floor is below it if it was not. New appends
//! wait instead (the client's appends are paced by its slowest one, as a Kafka producer's are by
//! its in-flight limit).

use crate::runtime::dedup::SEQS_PER_CLIENT;
use std::collections::BTreeMap;
use std::sync::Mutex;
use tokio::sync::Notify;

/// The node's deduplication window per client, in sequence numbers.
pub(crate) const DEDUP_WINDOW_SEQS: u64 = SEQS_PER_CLIENT as u64;

#[derive(Debug)]
struct State {
    next: u64,
    /// First number to count of each unsettled range.
    open: BTreeMap<u64, u64>,
}

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct SeqWindow {
    state: Mutex<State>,
    settled: Notify,
}

/// A range of sequence numbers handed out; settled when dropped.
#[derive(Debug)]
pub(crate) struct SeqLease<'a> {
    window: &'a SeqWindow,
    first: u64,
}

impl SeqLease<'_> {
    /// The first number of the range.
    pub(crate) fn first(&self) -> u64 {
        self.first
    }
}

impl Drop for SeqLease<'_> {
    fn drop(&mut self) {
        self.window.lock().open.remove(&self.first);
        self.window.settled.notify_waiters();
    }
}

impl SeqWindow {
    /// A window whose first number is `first`.
    pub(crate) fn new(first: u64) -> SeqWindow {
        SeqWindow {
            state: Mutex::new(State { next: first, open: BTreeMap::new() }),
            settled: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Only map updates happen under this lock; a panic cannot leave it half-done.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Hands out `count` consecutive numbers, waiting while the last of them would be the window
    /// or more past the oldest unsettled number. `count` must be at most the window (a batch
    /// larger than it could not be deduplicated: its first item would be forgotten).
    pub(crate) async fn lease(&self, count: u64) -> SeqLease<'_> {
        debug_assert!((1..=DEDUP_WINDOW_SEQS).contains(&count));
        loop {
            let settled = self.settled.notified();
            {
                let mut state = self.lock();
                let oldest = state.open.keys().next().copied().unwrap_or(state.next);
                if state.next + count - oldest <= DEDUP_WINDOW_SEQS {
                    let first = state.next;
                    state.next += count;
                    state.open.insert(first, count);
                    return SeqLease { window: self, first };
                }
            }
            settled.await;
        }
    }

    /// Numbers handed out and not settled (for tests).
    #[cfg(test)]
    pub(crate) fn unsettled(&self) -> u64 {
        self.lock().open.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    fn ready<F: Future>(future: std::pin::Pin<&mut F>) -> Option<F::Output> {
        match future.poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(value) => Some(value),
            Poll::Pending => None,
        }
    }

    #[test]
    fn numbers_stay_within_the_window_of_the_oldest_unsettled_one() {
        let window = SeqWindow::new(1);
        let stuck = ready(pin!(window.lease(1)).as_mut()).expect("the first is free");
        assert_eq!(stuck.first(), 1);
        // Others come and go while number 1 is retried.
        for expected in 2..=DEDUP_WINDOW_SEQS {
            let lease = ready(pin!(window.lease(1)).as_mut()).expect("within the window");
            assert_eq!(lease.first(), expected);
        }
        // Number 1025 would be the window past number 1: it waits until 1 settles.
        let mut next = pin!(window.lease(1));
        assert!(ready(next.as_mut()).is_none(), "handed out past the window");
        drop(stuck);
        let lease = ready(next.as_mut()).expect("free once the oldest settled");
        assert_eq!(lease.first(), DEDUP_WINDOW_SEQS + 1);
        drop(lease);
        assert_eq!(window.unsettled(), 0);
    }

    /// 64 appenders share a client; one append is stuck (its node failed) while the others
    /// commit thousands; its retry must still be recognised by the node's table: applied if it
    /// was, unknown (appended) if it was not, never forgotten.
    #[test]
    fn a_stuck_append_stays_recognisable_however_many_others_commit() {
        use crate::runtime::dedup::{DedupTable, Lookup};
        use raftwal_wire::client::{ClientId, ClientSeq};
        use raftwal_wire::types::{LogIndex, Term};
        for stuck_was_applied in [false, true] {
            let window = SeqWindow::new(1);
            let mut table = DedupTable::default();
            let client = ClientId(7);
            let mut index = 0;
            let mut apply = |table: &mut DedupTable, seq: u64| {
                index += 1;
                table.record(client, ClientSeq(seq), LogIndex(index), Term(1));
            };
            let stuck = ready(pin!(window.lease(1)).as_mut()).unwrap();
            if stuck_was_applied {
                apply(&mut table, stuck.first());
            }
            let mut in_flight = std::collections::VecDeque::new();
            let mut handed_out = 1;
            for _ in 0..5_000 {
                // Keep 63 others in flight; the oldest of them commits and settles.
                while in_flight.len() < 63 {
                    match ready(pin!(window.lease(1)).as_mut()) {
                        Some(lease) => {
                            handed_out += 1;
                            in_flight.push_back(lease);
                        }
                        None => break, // The window waits for the stuck append.
                    }
                }
                let Some(done) = in_flight.pop_front() else { break };
                apply(&mut table, done.first());
            }
            assert!(handed_out >= DEDUP_WINDOW_SEQS - 1, "the others went on: {handed_out}");
            let retry = table.lookup(client, ClientSeq(stuck.first()));
            if stuck_was_applied {
                assert!(matches!(retry, Lookup::Applied { .. }), "{retry:?}");
            } else {
                assert_eq!(retry, Lookup::Unknown);
            }
        }
    }

    #[test]
    fn a_batch_counts_its_last_number() {
        let window = SeqWindow::new(1);
        let first = ready(pin!(window.lease(1)).as_mut()).unwrap();
        let batch = ready(pin!(window.lease(DEDUP_WINDOW_SEQS - 1)).as_mut()).unwrap();
        assert_eq!(batch.first(), 2);
        assert!(ready(pin!(window.lease(1)).as_mut()).is_none());
        drop(first);
        // The batch is now the oldest: a whole window of numbers may follow its first one.
        assert_eq!(ready(pin!(window.lease(1)).as_mut()).unwrap().first(), DEDUP_WINDOW_SEQS + 1);
        drop(batch);
        // A batch as large as the window goes alone.
        assert_eq!(
            ready(pin!(window.lease(DEDUP_WINDOW_SEQS)).as_mut()).unwrap().first(),
            DEDUP_WINDOW_SEQS + 2
        );
    }
}
