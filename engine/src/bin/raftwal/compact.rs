//! `raftwal compact`: asks every listed node to compact its copy of a log, one JSON line per
//! node, in the order of `--cluster`.
//!
//! Owns: asking all nodes at once and printing what each did, or why it did not.
//! Must not: report success unless every listed node compacted: a node that did not answer or
//! refused gets a line with `"error"` and the command fails (exit 1), so that a script learns
//! which disks were not trimmed.

use crate::client_args::ClusterArgs;
use crate::interrupt;
use crate::output::{write_line, CompactedLine, NodeErrorLine};
use crate::status::ask_each;
use clap::Args;
use raftwal::client::Client;
use raftwal_wire::types::LogIndex;
use std::io::Write;
use std::sync::Arc;

/// Arguments of `raftwal compact`.
#[derive(Debug, Args)]
#[command(after_help = "Each node forgets, as far as it may, its entries before --before: only \
    entries committed, durable and applied on that node, and only whole segments, so its first \
    index afterwards (printed) may be lower. A follower that still needs entries its leader \
    removed starts its log over after them. Exit status 0 when every listed node compacted, 1 \
    otherwise (those nodes get a line with \"error\").")]
pub(crate) struct CompactArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Forget entries before this index (at least 1).
    #[arg(long, value_name = "INDEX", value_parser = clap::value_parser!(u64).range(1..))]
    before: u64,
}

pub(crate) fn run(args: CompactArgs) -> Result<(), String> {
    interrupt::runtime()?.block_on(compact(args))
}

async fn compact(args: CompactArgs) -> Result<(), String> {
    let client = Arc::new(Client::new(args.cluster.client_config()).map_err(|e| e.to_string())?);
    let result = compact_with(&client, args).await;
    // However the command ends: the nodes hear of the close before the process exits.
    client.close_and_wait().await;
    result
}

async fn compact_with(client: &Arc<Client>, args: CompactArgs) -> Result<(), String> {
    let before = LogIndex(args.before);
    let answers = ask_each(client, &args.cluster.cluster, move |client, addr| async move {
        client.compact_on(addr, before).await
    });
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut failed = 0;
    let answers = answers.await;
    for (addr, answer) in &answers {
        let written = match answer {
            Ok(compacted) => write_line(&mut out, &CompactedLine::new(*addr, compacted)),
            Err(error) => {
                failed += 1;
                write_line(&mut out, &NodeErrorLine { addr: *addr, error: &error.text })
            }
        };
        written.map_err(|e| format!("cannot write standard output: {e}"))?;
    }
    out.flush().map_err(|e| format!("cannot write standard output: {e}"))?;
    if failed > 0 {
        return Err(format!("{failed} of {} nodes did not compact", answers.len()));
    }
    Ok(())
}
