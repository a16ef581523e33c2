//! Waiting for the signals that end a long-running command: SIGINT (Ctrl-C) and SIGTERM.
//!
//! Owns: [`interrupted`], the future every long-running command selects on.
//! Must not: exit the process itself; the caller shuts down cleanly and returns.

use tokio::signal::unix::{signal, SignalKind};

/// Which signal arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Signal {
    Interrupt,
    Terminate,
}

impl Signal {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
        }
    }
}

/// Installs the handlers now (so a signal that arrives before the first poll is not lost) and
/// returns a future that resolves with the first of SIGINT or SIGTERM. Call it inside a tokio
/// runtime.
pub(crate) fn interrupted(
) -> Result<impl std::future::Future<Output = Signal> + Send + 'static, String> {
    let mut int = signal(SignalKind::interrupt())
        .map_err(|e| format!("cannot install the SIGINT handler: {e}"))?;
    let mut term = signal(SignalKind::terminate())
        .map_err(|e| format!("cannot install the SIGTERM handler: {e}"))?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => Signal::Interrupt,
            _ = term.recv() => Signal::Terminate,
        }
    })
}

/// A current-thread tokio runtime for one command.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}
