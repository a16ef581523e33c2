//! What clients may make a node hold, counted per connection and for the whole node.
//!
//! A client connection's requests waiting for an answer, its Subscribes waiting for the shard,
//! the room reserved for the answers, and the answers and subscription batches queued for it and
//! not yet taken by QUIC are charged
//! to two [`ByteBudget`]s: the connection's own and the node's ([`ClientLimits`], shared by every
//! shard's transport). Nothing new is admitted while either is at or above its limit: a request
//! is not read, a subscription batch is refused (the subscription waits, see
//! [`super::SubscriptionSink::ready`]). So one connection cannot take more than its share, and
//! all connections together not much more than the node's limit, however many streams they open.
//!
//! Invariants:
//! 1. `used` is the sum of the charges not yet released; every charge is released exactly once
//!    (queued bytes when QUIC takes them or the queue closes, admission charges when their
//!    request is answered or dropped, or when the shard takes their Subscribe).
//! 2. Admission happens only while `used` is below the limit, so `used` exceeds it by at most
//!    what the admitters that saw room at the same moment charge (one frame, or one Subscribe's
//!    charge, each), plus answers already reserved for.
//! 3. A waiter for room is woken when `used` falls from at or above the limit to below it.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;

/// A count of bytes held against a limit, with a way to wait for room.
#[derive(Debug)]
pub(crate) struct ByteBudget {
    limit: usize,
    used: AtomicUsize,
    room: Notify,
}

impl ByteBudget {
    pub(crate) fn new(limit: usize) -> ByteBudget {
        ByteBudget { limit: limit.max(1), used: AtomicUsize::new(0), room: Notify::new() }
    }

    /// Whether something new may be admitted now.
    pub(crate) fn has_room(&self) -> bool {
        self.used.load(Ordering::Acquire) < self.limit
    }

    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Counts `bytes` as held, whether or not there is room (the caller checked, or the bytes
    /// were reserved for earlier).
    pub(crate) fn charge(&self, bytes: usize) {
        if bytes > 0 {
            self.used.fetch_add(bytes, Ordering::AcqRel);
        }
    }

    /// Gives back `bytes` charged earlier; wakes the waiters if that made room.
    pub(crate) fn release(&self, bytes: usize) {
        if bytes == 0 {
            return;
        }
        let before = self.used.fetch_sub(bytes, Ordering::AcqRel);
        debug_assert!(before >= bytes, "released {bytes} bytes of {before} charged");
        if before >= self.limit && before - bytes < self.limit {
            self.room.notify_waiters();
        }
    }

    /// A future that resolves at the next wake-up for room. Create it before looking at
    /// [`ByteBudget::has_room`], so that room made in between is not missed.
    pub(crate) fn room(&self) -> tokio::sync::futures::Notified<'_> {
        self.room.notified()
    }
}

/// Waits until every budget in `budgets` has room.
pub(crate) async fn wait_for_room(budgets: &[&ByteBudget]) {
    loop {
        let Some(full) = budgets.iter().find(|b| !b.has_room()) else {
            return;
        };
        let notified = full.room();
        tokio::pin!(notified);
        // Registers the waiter, then looks again: room made before the registration is seen.
        notified.as_mut().enable();
        if full.has_room() {
            continue;
        }
        notified.await;
    }
}

/// The budgets one client connection charges: its own, then the node's.
#[derive(Clone, Debug)]
pub(crate) struct ClientCharge {
    pub(crate) connection: Arc<ByteBudget>,
    pub(crate) node: Arc<ByteBudget>,
}

impl ClientCharge {
    pub(crate) fn has_room(&self) -> bool {
        self.connection.has_room() && self.node.has_room()
    }

    pub(crate) fn charge(&self, bytes: usize) {
        self.connection.charge(bytes);
        self.node.charge(bytes);
    }

    pub(crate) fn release(&self, bytes: usize) {
        self.connection.release(bytes);
        self.node.release(bytes);
    }

    pub(crate) async fn wait_for_room(&self) {
        wait_for_room(&[&self.connection, &self.node]).await
    }
}

/// Bytes charged for an admitted request until it is answered or dropped.
#[derive(Debug)]
pub(crate) struct HeldCharge {
    charge: ClientCharge,
    bytes: usize,
}

impl HeldCharge {
    pub(crate) fn new(charge: ClientCharge, bytes: usize) -> HeldCharge {
        charge.charge(bytes);
        HeldCharge { charge, bytes }
    }
}

impl Drop for HeldCharge {
    fn drop(&mut self) {
        self.charge.release(self.bytes);
    }
}

#[derive(Debug)]
struct Shared {
    connections_max: usize,
    connections: AtomicUsize,
    /// Connections that ended by the idle timeout (their client never said it closed them).
    timed_out: AtomicU64,
    memory: Arc<ByteBudget>,
}

/// Node-wide limits on clients: how many connections a node serves at once, and how many bytes
/// all of them together may make it hold. Clones share the counts: give every shard's
/// [`TransportConfig`](super::TransportConfig) a clone of one value.
#[derive(Clone, Debug)]
pub struct ClientLimits {
    shared: Arc<Shared>,
}

impl ClientLimits {
    /// At most `connections_max` client connections at once (at least 1), and about
    /// `memory_bytes_max` bytes held for all of them together (at least 1).
    pub fn new(connections_max: usize, memory_bytes_max: usize) -> ClientLimits {
        ClientLimits {
            shared: Arc::new(Shared {
                connections_max: connections_max.max(1),
                connections: AtomicUsize::new(0),
                timed_out: AtomicU64::new(0),
                memory: Arc::new(ByteBudget::new(memory_bytes_max)),
            }),
        }
    }

    /// The most client connections served at once.
    pub fn connections_max(&self) -> usize {
        self.shared.connections_max
    }

    /// Client connections being served now.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::Acquire)
    }

    /// Client connections that ended by the idle timeout since the node started: clients that
    /// vanished without closing their connection (a process killed, a network gone, or a
    /// program that exited before its close reached the node), each of which held a connection
    /// slot until then.
    pub fn connections_timed_out(&self) -> u64 {
        self.shared.timed_out.load(Ordering::Relaxed)
    }

    /// The bytes all client connections together may make the node hold.
    pub fn memory_bytes_max(&self) -> usize {
        self.shared.memory.limit()
    }

    /// Bytes held for client connections now: requests waiting for an answer, Subscribes
    /// waiting for the shard, room reserved for their answers, answers and subscription batches
    /// not yet taken by QUIC.
    pub fn memory_bytes(&self) -> usize {
        self.shared.memory.used()
    }

    pub(crate) fn node_budget(&self) -> Arc<ByteBudget> {
        self.shared.memory.clone()
    }

    /// Takes a connection slot, or `None` when all are taken.
    pub(crate) fn try_connect(&self) -> Option<ConnectionSlot> {
        let shared = &self.shared;
        let mut now = shared.connections.load(Ordering::Acquire);
        loop {
            if now >= shared.connections_max {
                return None;
            }
            match shared.connections.compare_exchange_weak(
                now,
                now + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(ConnectionSlot { limits: self.clone() }),
                Err(seen) => now = seen,
            }
        }
    }
}

/// One client connection's place in [`ClientLimits`]; given back when dropped.
#[derive(Debug)]
pub(crate) struct ConnectionSlot {
    limits: ClientLimits,
}

impl ConnectionSlot {
    /// The connection ended by the idle timeout.
    pub(crate) fn timed_out(&self) {
        self.limits.shared.timed_out.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.limits.shared.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn admits_while_below_the_limit_and_counts_what_is_held() {
        let budget = ByteBudget::new(100);
        assert!(budget.has_room());
        budget.charge(99);
        assert!(budget.has_room());
        budget.charge(50);
        assert!(!budget.has_room());
        assert_eq!(budget.used(), 149);
        budget.release(49);
        assert!(!budget.has_room(), "at the limit is full");
        budget.release(1);
        assert!(budget.has_room());
        budget.release(99);
        assert_eq!(budget.used(), 0);
    }

    #[tokio::test]
    async fn a_waiter_wakes_when_room_is_made() {
        let budget = Arc::new(ByteBudget::new(10));
        budget.charge(10);
        let waiter = {
            let budget = budget.clone();
            tokio::spawn(async move { wait_for_room(&[&budget]).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "no room yet");
        budget.release(5);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken once room was made")
            .unwrap();
    }

    #[tokio::test]
    async fn waiting_on_two_budgets_needs_room_in_both() {
        let a = Arc::new(ByteBudget::new(10));
        let b = Arc::new(ByteBudget::new(10));
        a.charge(10);
        b.charge(10);
        let waiter = {
            let (a, b) = (a.clone(), b.clone());
            tokio::spawn(async move { wait_for_room(&[&a, &b]).await })
        };
        a.release(10);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "the second budget is still full");
        b.release(1);
        tokio::time::timeout(Duration::from_secs(5), waiter).await.expect("woken").unwrap();
    }

    #[test]
    fn connection_slots_are_bounded_and_given_back() {
        let limits = ClientLimits::new(2, 1 << 20);
        let one = limits.try_connect().expect("first");
        let two = limits.try_connect().expect("second");
        assert!(limits.try_connect().is_none(), "a third is refused");
        assert_eq!(limits.connections(), 2);
        drop(one);
        let three = limits.try_connect().expect("a slot was given back");
        drop((two, three));
        assert_eq!(limits.connections(), 0);
    }

    #[test]
    fn a_held_charge_is_released_once_on_drop() {
        let charge = ClientCharge {
            connection: Arc::new(ByteBudget::new(100)),
            node: Arc::new(ByteBudget::new(1000)),
        };
        let held = HeldCharge::new(charge.clone(), 70);
        assert_eq!((charge.connection.used(), charge.node.used()), (70, 70));
        drop(held);
        assert_eq!((charge.connection.used(), charge.node.used()), (0, 0));
    }
}
