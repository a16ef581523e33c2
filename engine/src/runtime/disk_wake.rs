//! The ring's completion eventfd as a readiness source of the shard's tokio runtime, so one
//! thread waits on its sockets and its disk alike, with no helper thread.
//!
//! Owns: [`DiskWake`], the registration of a [`UringDisk`]'s eventfd with the runtime.
//! Must not: read the eventfd (the disk's reap does, clearing it) or outlive the disk: it holds
//! the disk, so the descriptor stays open for as long as it is registered.
#![allow(unsafe_code)]

use crate::storage::UringDisk;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// Keeps the disk (and so its eventfd) alive while the runtime watches the descriptor.
#[derive(Debug)]
struct Holder(Rc<UringDisk>);

impl AsRawFd for Holder {
    fn as_raw_fd(&self) -> RawFd {
        self.0.event_fd()
    }
}

/// A disk's eventfd, registered with the current runtime.
#[derive(Debug)]
pub(crate) struct DiskWake(AsyncFd<Holder>);

impl DiskWake {
    /// Registers `disk`'s eventfd with the current tokio runtime (call it inside the runtime).
    pub(crate) fn register(disk: Rc<UringDisk>) -> io::Result<DiskWake> {
        // SAFETY: `register_with_interest` needs the descriptor to stay open and the same for
        // the AsyncFd's whole life. The holder owns an `Rc` of the disk that owns the eventfd,
        // so the descriptor is closed only after the AsyncFd (and its holder) are dropped, and
        // `UringDisk::event_fd` returns the same descriptor on every call.
        let fd = unsafe { AsyncFd::register_with_interest(Holder(disk), Interest::READABLE) }?;
        Ok(DiskWake(fd))
    }

    /// Waits until a completion may be waiting, and clears the runtime's readiness first: the
    /// caller then reaps (which reads the eventfd), so a completion posted after that raises
    /// readiness again.
    pub(crate) async fn ready(&self) -> io::Result<()> {
        let mut guard = self.0.readable().await?;
        guard.clear_ready();
        Ok(())
    }
}
