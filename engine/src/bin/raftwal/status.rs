//! `raftwal status`: every listed node's view of a log, one JSON line per node, in the order of
//! `--cluster`.
//!
//! Owns: asking all nodes at once and printing their answers or why there is none.
//! Must not: hide an unreachable node: it gets a line with `"error"`. The command succeeds
//! (exit 0) when at least one node answered, so that a degraded cluster can still be inspected;
//! it fails (exit 1) when none did.

use crate::client_args::ClusterArgs;
use crate::interrupt;
use crate::output::{write_line, StatusErrorLine, StatusLine};
use clap::Args;
use raftwal::client::{Client, ClientError};
use std::io::Write;
use std::sync::Arc;

/// Arguments of `raftwal status`.
#[derive(Debug, Args)]
#[command(after_help = "Exit status 0 when at least one node answered (unreachable nodes get a \
    line with \"error\"), 1 when none did.")]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
}

pub(crate) fn run(args: StatusArgs) -> Result<(), String> {
    interrupt::runtime()?.block_on(status(args))
}

async fn status(args: StatusArgs) -> Result<(), String> {
    let client = Arc::new(Client::new(args.cluster.client_config()).map_err(|e| e.to_string())?);
    let asks: Vec<_> = args
        .cluster
        .cluster
        .iter()
        .map(|&addr| {
            let client = client.clone();
            (addr, tokio::spawn(async move { client.status_of(addr).await }))
        })
        .collect();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut answered = 0;
    for (addr, ask) in asks {
        let written = match ask.await {
            Ok(Ok(status)) => {
                answered += 1;
                write_line(&mut out, &StatusLine::new(addr, &status))
            }
            Ok(Err(e)) => {
                // One node was asked: say what failed there, not "no node answered".
                let error = match e {
                    ClientError::Unavailable(reason) => reason,
                    other => other.to_string(),
                };
                write_line(&mut out, &StatusErrorLine { addr, error: &error })
            }
            Err(e) => write_line(&mut out, &StatusErrorLine { addr, error: &e.to_string() }),
        };
        written.map_err(|e| format!("cannot write standard output: {e}"))?;
    }
    out.flush().map_err(|e| format!("cannot write standard output: {e}"))?;
    client.close();
    if answered == 0 {
        return Err("no node answered".into());
    }
    Ok(())
}
