//! `raftwal read` and `raftwal tail`: committed entries as JSON lines.
//!
//! Owns: paging a read through the client, and running a tail until SIGINT or SIGTERM.
//! Must not: ask the leader: committed entries are the same on every replica, so both commands
//! are served by the node the client reaches (the first in `--cluster`, the next one when it
//! fails), from its own log, up to its own commit index.
//!
//! Output is buffered and flushed whenever no entry is ready, so a fast stream costs few writes
//! and a slow one shows each entry at once. A closed standard output (`| head`) ends the command
//! successfully.

use crate::client_args::ClusterArgs;
use crate::interrupt;
use crate::output::{write_line, EntryLine};
use clap::Args;
use raftwal::client::{Client, ClientError};
use raftwal_wire::types::LogIndex;
use std::io::Write;
use std::sync::Arc;

/// Entries asked for per read request.
const READ_PAGE_ENTRIES: u64 = 10_000;

/// Arguments of `raftwal read`.
#[derive(Debug, Args)]
pub(crate) struct ReadArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// First index to print (entries below are skipped; indices of internal entries never
    /// print); 0, the default, is the first entry the node reached still has (retention and
    /// compaction remove older ones).
    #[arg(long, default_value_t = 0, value_name = "I")]
    from: u64,
    /// Entries to print at most (at least 1); without it, every entry committed on the node
    /// reached.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// Read linearizably: every entry committed before the command started is printed (up to
    /// --count), even from a follower that has not heard of the latest commits yet (each page
    /// waits for the leader to confirm with a majority that it still leads).
    #[arg(long)]
    linearizable: bool,
}

/// Arguments of `raftwal tail`.
#[derive(Debug, Args)]
pub(crate) struct TailArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// First index to print; entries then follow as they commit. 0, the default, is the first
    /// entry the node reached still has; `end` prints only entries committed after the node
    /// reached answered (the first listed node that answers).
    #[arg(long, default_value = "0", value_name = "I|end", value_parser = parse_tail_from)]
    from: TailFrom,
}

/// Where `tail` starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TailFrom {
    /// At this index (0: the node's first entry).
    Index(u64),
    /// After the last entry committed on the node reached when the command starts.
    End,
}

fn parse_tail_from(text: &str) -> Result<TailFrom, String> {
    if text == "end" {
        return Ok(TailFrom::End);
    }
    text.parse().map(TailFrom::Index).map_err(|_| format!("{text:?} is neither an index nor `end`"))
}

/// What stopped output.
enum Written {
    Ok,
    /// The reader closed standard output: stop quietly.
    Closed,
}

fn written(result: std::io::Result<()>) -> Result<Written, String> {
    match result {
        Ok(()) => Ok(Written::Ok),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(Written::Closed),
        Err(e) => Err(format!("cannot write standard output: {e}")),
    }
}

pub(crate) fn run_read(args: ReadArgs) -> Result<(), String> {
    interrupt::runtime()?.block_on(read(args))
}

async fn read(args: ReadArgs) -> Result<(), String> {
    let client = Client::new(args.cluster.client_config()).map_err(|e| e.to_string())?;
    let result = read_with(&client, args).await;
    // However the command ends: the nodes hear of the close before the process exits.
    client.close_and_wait().await;
    result
}

async fn read_with(client: &Client, args: ReadArgs) -> Result<(), String> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut next = LogIndex(args.from);
    let mut remaining = args.count.unwrap_or(u64::MAX);
    while remaining > 0 {
        let page = u32::try_from(remaining.min(READ_PAGE_ENTRIES)).unwrap_or(u32::MAX);
        let entries = if args.linearizable {
            client.read_linearizable(next, page).await
        } else {
            client.read(next, page).await
        };
        let entries = entries.map_err(|e| e.to_string())?;
        let Some(last) = entries.last() else { break };
        next = last.index.next();
        for entry in entries.iter().take(usize::try_from(remaining).unwrap_or(usize::MAX)) {
            if let Written::Closed = written(write_line(&mut out, &EntryLine::new(entry)))? {
                return Ok(());
            }
            remaining -= 1;
        }
    }
    let _ = written(out.flush())?;
    Ok(())
}

/// The commit index of the first node in `nodes` that answers, and that node's position in
/// the list.
async fn first_commit_index(
    client: &Client,
    nodes: &[std::net::SocketAddr],
) -> Result<(usize, LogIndex), String> {
    let mut failures = Vec::new();
    for (position, &addr) in nodes.iter().enumerate() {
        match client.status_of(addr).await {
            Ok(status) => return Ok((position, status.commit_index)),
            // One node was asked: what failed there (it names the node), not "no node
            // answered" once per node.
            Err(ClientError::Unavailable(reason)) => failures.push(reason),
            Err(e) => failures.push(e.to_string()),
        }
    }
    Err(format!("no node gave its commit index (for --from end): {}", failures.join("; ")))
}

pub(crate) fn run_tail(args: TailArgs) -> Result<(), String> {
    interrupt::runtime()?.block_on(tail(args))
}

async fn tail(args: TailArgs) -> Result<(), String> {
    let interrupted = interrupt::interrupted()?;
    tokio::pin!(interrupted);
    let client = Arc::new(Client::new(args.cluster.client_config()).map_err(|e| e.to_string())?);
    let result = tail_with(&client, args, interrupted).await;
    // However the command ends: the nodes hear of the close before the process exits.
    client.close_and_wait().await;
    result
}

async fn tail_with(
    client: &Arc<Client>,
    args: TailArgs,
    mut interrupted: std::pin::Pin<&mut impl std::future::Future<Output = interrupt::Signal>>,
) -> Result<(), String> {
    let mut subscription = match args.from {
        TailFrom::Index(from) => client.subscribe(LogIndex(from)),
        TailFrom::End => {
            let (node, commit) = first_commit_index(client, &args.cluster.cluster).await?;
            client.subscribe_at(node, commit.next())
        }
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut unflushed = false;
    loop {
        tokio::select! {
            biased;
            _ = &mut interrupted => break,
            entry = subscription.next() => {
                let entry = entry.map_err(|e| {
                    format!("stopped before index {}: {e}", subscription.next_index())
                })?;
                if let Written::Closed = written(write_line(&mut out, &EntryLine::new(&entry)))? {
                    return Ok(());
                }
                unflushed = true;
                continue;
            }
            _ = std::future::ready(()), if unflushed => {}
        }
        // Nothing was ready: show what was written before waiting.
        if let Written::Closed = written(out.flush())? {
            return Ok(());
        }
        unflushed = false;
    }
    let _ = written(out.flush())?;
    Ok(())
}
