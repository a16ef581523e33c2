//! A one-shot timer with microsecond precision for the open-loop load generator.
//!
//! tokio's timer wheel has a resolution of one millisecond and rounds deadlines up, so an open
//! loop paced with `tokio::time::sleep_until` sends its requests in bursts up to 2 ms late, and
//! because latency counts from the intended send time, that lateness lands in every figure. This
//! timer is a `timerfd` (an hrtimer, not subject to the thread's timer slack) registered with the
//! runtime's reactor, so the generator's own thread wakes within microseconds of the deadline
//! without leaving the runtime (no cross-thread wake-up).

#![allow(unsafe_code)] // timerfd through libc; each call has a SAFETY comment.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// A timerfd on the current tokio runtime's reactor.
#[derive(Debug)]
pub(crate) struct PreciseTimer {
    fd: AsyncFd<OwnedFd>,
}

impl PreciseTimer {
    /// Creates the timer; call it inside a runtime with I/O enabled.
    pub(crate) fn new() -> io::Result<PreciseTimer> {
        // SAFETY: timerfd_create takes no pointers; a non-negative result is a new descriptor
        // that nothing else owns.
        let raw = unsafe {
            libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC)
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a valid descriptor returned above and owned by nobody else.
        let owned = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: `owned` is a valid open descriptor, owned by the AsyncFd from here on and
        // closed only when it is dropped, so it refers to this timerfd for the AsyncFd's life.
        let fd = unsafe { AsyncFd::register_with_interest(owned, Interest::READABLE) }
            .map_err(io::Error::from)?;
        Ok(PreciseTimer { fd })
    }

    /// Resolves at `when` (at once if it has passed). Only one wait at a time: arming the timer
    /// replaces an earlier deadline.
    pub(crate) async fn sleep_until(&self, when: Instant) -> io::Result<()> {
        #[allow(clippy::disallowed_methods)] // the generator's clock is the point of it
        let now = Instant::now();
        let Some(delay) = when.checked_duration_since(now).filter(|d| !d.is_zero()) else {
            return Ok(());
        };
        self.arm(delay)?;
        loop {
            let mut guard = self.fd.readable().await?;
            let mut expirations = [0u8; 8];
            // SAFETY: the buffer is 8 writable bytes, the size a timerfd read needs.
            let n = unsafe {
                libc::read(self.fd.get_ref().as_raw_fd(), expirations.as_mut_ptr().cast(), 8)
            };
            if n == 8 {
                // The one-shot timer is now disarmed and unreadable until armed again: forget
                // this readiness, so the next wait does not begin with a read that finds nothing.
                guard.clear_ready();
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if n < 0 && e.kind() == io::ErrorKind::WouldBlock {
                // Readiness left over from an earlier deadline: wait for this one.
                guard.clear_ready();
                continue;
            }
            if n < 0 && e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(if n < 0 { e } else { io::Error::other("short read from a timerfd") });
        }
    }

    fn arm(&self, delay: Duration) -> io::Result<()> {
        let value = libc::itimerspec {
            it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 },
            it_value: libc::timespec {
                tv_sec: libc::time_t::try_from(delay.as_secs()).unwrap_or(libc::time_t::MAX),
                tv_nsec: libc::c_long::from(delay.subsec_nanos().max(1)),
            },
        };
        // SAFETY: `value` is a valid itimerspec for the call's duration; the old value is not
        // asked for (null).
        let rc = unsafe {
            libc::timerfd_settime(self.fd.get_ref().as_raw_fd(), 0, &value, std::ptr::null_mut())
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wakes_after_the_deadline_and_at_once_for_a_past_one() {
        let rt =
            tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async {
            let timer = PreciseTimer::new().expect("timerfd");
            for micros in [50u64, 300, 2_000, 50] {
                #[allow(clippy::disallowed_methods)]
                let start = Instant::now();
                let when = start + Duration::from_micros(micros);
                timer.sleep_until(when).await.expect("sleep");
                #[allow(clippy::disallowed_methods)]
                let woke = Instant::now();
                assert!(woke >= when, "woke {:?} before the deadline", when - woke);
            }
            // A deadline in the past returns without arming the timer.
            #[allow(clippy::disallowed_methods)]
            let past = Instant::now() - Duration::from_millis(1);
            timer.sleep_until(past).await.expect("past deadline");
        });
    }
}
