//! How a node learns that one of its shard threads ended without being told to stop.
//!
//! Owns: [`FailureSlot`], which the shard threads of a node share with it: a shard thread that
//! ends on its own, or panics, fills it on its way out, and the node reads it or waits on it
//! ([`crate::Node::failure`]); and [`panic_message`], the text of a caught panic.
//! Must not: restart or stop anything; what to do about a failure is the embedding program's
//! decision (`raftwal serve` halts the node and exits non-zero).
//!
//! Invariant: the slot keeps the first failure reported; later ones are logged by their shard
//! threads, but not kept.

use crate::error::ShardFailure;
use std::any::Any;
use tokio::sync::watch;

/// The first shard failure of a node, if any, shared by the node and its shard threads.
#[derive(Debug)]
pub(crate) struct FailureSlot {
    first: watch::Sender<Option<ShardFailure>>,
}

impl FailureSlot {
    /// An empty slot.
    pub(crate) fn new() -> FailureSlot {
        FailureSlot { first: watch::Sender::new(None) }
    }

    /// Keeps `failure` unless one was kept before, and wakes those waiting.
    pub(crate) fn report(&self, failure: ShardFailure) {
        self.first.send_if_modified(|slot| {
            if slot.is_some() {
                return false;
            }
            *slot = Some(failure);
            true
        });
    }

    /// The first failure reported, without waiting.
    pub(crate) fn get(&self) -> Option<ShardFailure> {
        self.first.borrow().clone()
    }

    /// Waits for the first failure (at once if there was one).
    pub(crate) async fn wait(&self) -> ShardFailure {
        let mut changes = self.first.subscribe();
        loop {
            let current = changes.borrow_and_update().clone();
            if let Some(failure) = current {
                return failure;
            }
            // Fails only once the sender is gone, which `self` holds: never while this waits.
            if changes.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// The message of a caught panic (the payload `panic!` and `assert!` give: a `&str` or a
/// `String`).
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftwal_wire::types::NodeId;

    fn panicked(shard: usize, message: &str) -> ShardFailure {
        ShardFailure::Panicked { node: NodeId(1), shard, message: message.to_owned() }
    }

    #[test]
    fn the_first_failure_is_kept_and_wakes_a_waiter() {
        let slot = FailureSlot::new();
        assert_eq!(slot.get(), None);
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let failure = runtime.block_on(async {
            let waiting = slot.wait();
            tokio::pin!(waiting);
            // Polled once before the report: it waits on the change.
            assert!(futures_poll_once(waiting.as_mut()).await.is_none());
            slot.report(panicked(1, "first"));
            slot.report(panicked(0, "second"));
            waiting.await
        });
        assert_eq!(failure, panicked(1, "first"));
        assert_eq!(slot.get(), Some(panicked(1, "first")));
        assert_eq!(runtime.block_on(slot.wait()), panicked(1, "first"), "at once when reported");
    }

    #[test]
    fn a_panic_message_is_its_text() {
        let caught = std::panic::catch_unwind(|| panic!("planted: {}", 7)).unwrap_err();
        assert_eq!(panic_message(caught.as_ref()), "planted: 7");
        let caught = std::panic::catch_unwind(|| std::panic::panic_any(7_u32)).unwrap_err();
        assert_eq!(panic_message(caught.as_ref()), "a panic without a message");
    }

    /// Polls `future` once: its output if it is ready.
    async fn futures_poll_once<F: std::future::Future + Unpin>(future: F) -> Option<F::Output> {
        let mut future = future;
        std::future::poll_fn(|cx| {
            std::task::Poll::Ready(match std::pin::Pin::new(&mut future).poll(cx) {
                std::task::Poll::Ready(output) => Some(output),
                std::task::Poll::Pending => None,
            })
        })
        .await
    }
}
