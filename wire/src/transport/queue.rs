//! A stream's send queue: synchronous, non-blocking encoding into a window-bounded queue, and
//! the writer task that drains it into a quinn stream.
//!
//! The shard's event loop calls [`SendQueue::push_with`] from synchronous code: it encodes the
//! frame into the queue's [`FrameEncoder`] (payloads become chunks, not copies) and wakes the
//! writer task. The writer takes every queued chunk at once and hands them to quinn in one
//! `write_all_chunks` call, so many frames cost one wake-up and one write.
//!
//! Invariants:
//! 1. `in_flight_bytes` counts bytes encoded and not yet accepted by quinn (queued or being
//!    written). A push is refused while it is at or above the window, so it never exceeds the
//!    window by more than one frame.
//! 2. After a refusal, the owner is told (through `on_writable`) once the queue has drained to
//!    half the window, or once the queue closed, so it can resume without polling.
//! 3. Once closed (stream error or shutdown), every push is refused and the queue holds nothing.
//! 4. Once finishing, every push is refused; the writer sends what is queued, then finishes the
//!    stream cleanly and closes the queue.
//! 5. A client stream's queue charges its `in_flight_bytes` to its connection's and the node's
//!    [`ClientCharge`] as well; a push that checks the window is also refused while either is
//!    full, and `has_room` / `wait_for_room` look at them too. What is still charged when the
//!    queue is dropped unclosed (its writer task was dropped with its runtime) is released then:
//!    the node's budget is shared with transports that live on.

use super::budget::ClientCharge;
use crate::codec::{EncodeError, FrameEncoder, FrameLimits};
use bytes::Bytes;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

/// Why a frame was not queued.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PushError {
    /// The window is full; the frame was dropped.
    WindowFull,
    /// The stream is closed; the frame was dropped.
    Closed,
    /// The frame could not be encoded; nothing was queued.
    Encode(EncodeError),
}

#[derive(Debug)]
struct State {
    encoder: FrameEncoder,
    in_flight_bytes: usize,
    /// Bytes promised to frames not pushed yet ([`SendQueue::reserve`]).
    reserved_bytes: usize,
    refused: bool,
    closed: bool,
    finishing: bool,
}

/// A window-bounded queue of encoded frames for one stream.
#[derive(Debug)]
pub(crate) struct SendQueue {
    state: Mutex<State>,
    /// Wakes the writer task when frames are queued or the queue is closed.
    work: Notify,
    /// Wakes tasks waiting for room in the window.
    room: Notify,
    window_bytes: usize,
    /// A client stream's budgets, charged with `in_flight_bytes` (peer streams have none).
    charge: Option<ClientCharge>,
}

impl SendQueue {
    pub(crate) fn new(limits: FrameLimits, window_bytes: usize) -> Arc<SendQueue> {
        SendQueue::charging(limits, window_bytes, None)
    }

    /// A queue whose queued bytes are charged to `charge` too (a client stream's).
    pub(crate) fn charging(
        limits: FrameLimits,
        window_bytes: usize,
        charge: Option<ClientCharge>,
    ) -> Arc<SendQueue> {
        Arc::new(SendQueue {
            state: Mutex::new(State {
                encoder: FrameEncoder::new(limits),
                in_flight_bytes: 0,
                reserved_bytes: 0,
                refused: false,
                closed: false,
                finishing: false,
            }),
            work: Notify::new(),
            room: Notify::new(),
            window_bytes,
            charge,
        })
    }

    fn budgets_have_room(&self) -> bool {
        self.charge.as_ref().is_none_or(|c| c.has_room())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The lock is held only for encoding and counter updates, which do not panic on any
        // input (encode errors are values), so a poisoned lock cannot hold a broken state.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Encodes one or more frames with `encode` if the window has room. With `over_window`, the
    /// window is not checked: for replies whose number is already bounded by the requests
    /// admitted, which must not be lost.
    pub(crate) fn push_with(
        &self,
        over_window: bool,
        encode: impl FnOnce(&mut FrameEncoder) -> Result<(), EncodeError>,
    ) -> Result<(), PushError> {
        let mut state = self.lock();
        if state.closed || state.finishing {
            return Err(PushError::Closed);
        }
        if !over_window && (state.in_flight_bytes >= self.window_bytes || !self.budgets_have_room())
        {
            state.refused = true;
            return Err(PushError::WindowFull);
        }
        let before = state.encoder.pending_size_bytes();
        encode(&mut state.encoder).map_err(PushError::Encode)?;
        let added = state.encoder.pending_size_bytes() - before;
        state.in_flight_bytes += added;
        // Charged under the lock, so that a close or a drain releases only what was charged.
        if let Some(charge) = &self.charge {
            charge.charge(added);
        }
        drop(state);
        self.work.notify_one();
        Ok(())
    }

    /// Whether a push would be accepted now.
    pub(crate) fn has_room(&self) -> bool {
        let state = self.lock();
        !state.closed && state.in_flight_bytes < self.window_bytes && self.budgets_have_room()
    }

    /// Bytes queued or being written.
    pub(crate) fn in_flight_bytes(&self) -> usize {
        self.lock().in_flight_bytes
    }

    /// Waits until a push would be accepted; `false` if the queue closed instead.
    pub(crate) async fn wait_for_room(&self) -> bool {
        loop {
            let notified = self.room.notified();
            let window_full = {
                let state = self.lock();
                if state.closed {
                    return false;
                }
                state.in_flight_bytes >= self.window_bytes
            };
            if window_full {
                notified.await;
                continue;
            }
            let Some(charge) = &self.charge else {
                return true;
            };
            if charge.has_room() {
                return true;
            }
            // The window has room but a budget has not: wait for the budget, or for the queue
            // to close (which also wakes `room`).
            tokio::select! {
                _ = charge.wait_for_room() => {}
                _ = notified => {}
            }
        }
    }

    /// Waits until what is queued and reserved is below the window, then reserves `bytes` for a
    /// frame to be pushed later (with `over_window`): a reply whose bound is known when its
    /// request is admitted, so that the replies already promised never take the queue past its
    /// window plus one reply. `false` if the queue closed instead.
    pub(crate) async fn reserve(&self, bytes: usize) -> bool {
        loop {
            let notified = self.room.notified();
            {
                let mut state = self.lock();
                if state.closed || state.finishing {
                    return false;
                }
                if state.in_flight_bytes + state.reserved_bytes < self.window_bytes {
                    state.reserved_bytes += bytes;
                    return true;
                }
            }
            notified.await;
        }
    }

    /// Gives back bytes [`SendQueue::reserve`] took (after pushing the frame they were for, or
    /// instead of it).
    pub(crate) fn release(&self, bytes: usize) {
        let mut state = self.lock();
        state.reserved_bytes = state.reserved_bytes.saturating_sub(bytes);
        drop(state);
        self.room.notify_waiters();
    }

    /// Closes the queue: drops what is queued and refuses every later push.
    pub(crate) fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        let mut dropped = Vec::new();
        state.encoder.take_chunks(&mut dropped);
        let released = std::mem::take(&mut state.in_flight_bytes);
        if let Some(charge) = &self.charge {
            charge.release(released);
        }
        drop(state);
        self.work.notify_one();
        self.room.notify_waiters();
    }

    /// Ends the stream cleanly once everything queued is written.
    pub(crate) fn finish(&self) {
        self.lock().finishing = true;
        self.work.notify_one();
    }

    pub(crate) fn is_closed(&self) -> bool {
        let state = self.lock();
        state.closed || state.finishing
    }

    /// Drains the queue into `stream` until the queue is closed or finished, or the stream
    /// fails. `on_writable` runs after a refused push once the queue is down to half the window.
    pub(crate) async fn run_writer(
        self: Arc<SendQueue>,
        stream: quinn::SendStream,
        on_writable: impl Fn(),
    ) -> Result<(), quinn::WriteError> {
        let result = self.clone().write_until_closed(stream, &on_writable).await;
        // The queue is closed now: an owner refused earlier is told all the same, so that one
        // waiting for room learns to look again (and finds the link gone or replaced) rather
        // than wait for a wake-up that cannot come.
        if std::mem::take(&mut self.lock().refused) {
            on_writable();
        }
        result
    }

    async fn write_until_closed(
        self: Arc<SendQueue>,
        mut stream: quinn::SendStream,
        on_writable: &impl Fn(),
    ) -> Result<(), quinn::WriteError> {
        let mut chunks: Vec<Bytes> = Vec::new();
        // Resolves when the receiver stops the stream or the connection ends: an idle writer
        // must notice that too, so that the queue's owner learns its peer is gone.
        let mut stopped = std::pin::pin!(stream.stopped());
        loop {
            let notified = self.work.notified();
            let batch_bytes = {
                let mut state = self.lock();
                if state.closed {
                    return Ok(());
                }
                let size = state.encoder.pending_size_bytes();
                if size == 0 && state.finishing {
                    state.closed = true;
                    drop(state);
                    self.room.notify_waiters();
                    // The peer learns that the stream ended cleanly; an error only means it is
                    // already gone.
                    let _ = stream.finish();
                    return Ok(());
                }
                state.encoder.take_chunks(&mut chunks);
                size
            };
            if batch_bytes == 0 {
                tokio::select! {
                    _ = notified => {}
                    _ = &mut stopped => {
                        self.close();
                        return Ok(());
                    }
                }
                continue;
            }
            let written = stream.write_all_chunks(&mut chunks).await;
            chunks.clear();
            if let Err(e) = written {
                self.close();
                return Err(e);
            }
            let wake = {
                let mut state = self.lock();
                // A close while writing already released (and zeroed) what was in flight.
                let drained = batch_bytes.min(state.in_flight_bytes);
                state.in_flight_bytes -= drained;
                if let Some(charge) = &self.charge {
                    charge.release(drained);
                }
                let below_half = state.in_flight_bytes <= self.window_bytes / 2;
                let wake = state.refused && below_half;
                if wake {
                    state.refused = false;
                }
                wake
            };
            self.room.notify_waiters();
            if wake {
                on_writable();
            }
        }
    }
}

impl Drop for SendQueue {
    fn drop(&mut self) {
        // Only a writer dropped before it closed the queue (its runtime ended without the
        // transport being closed) leaves bytes charged; `close` zeroed them otherwise.
        if let Some(charge) = &self.charge {
            let state = self.state.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner());
            charge.release(std::mem::take(&mut state.in_flight_bytes));
        }
    }
}
