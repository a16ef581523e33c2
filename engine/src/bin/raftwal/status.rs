//! `raftwal status`: every listed node's view of a log, one JSON line per node, in the order of
//! `--cluster`.
//!
//! Owns: asking all nodes at once and printing their answers or why there is none.
//! Must not: hide an unreachable node: it gets a line with `"error"`. The command succeeds
//! (exit 0) when at least one node answered, so that a degraded cluster can still be inspected;
//! it fails (exit 1) when none did.

use crate::client_args::ClusterArgs;
use crate::interrupt;
use crate::output::{write_line, NodeErrorLine, StatusLine};
use clap::Args;
use raftwal::client::{Client, ClientError};
use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
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
    let result = status_with(&client, args).await;
    // However the command ends: the nodes hear of the close before the process exits.
    client.close_and_wait().await;
    result
}

async fn status_with(client: &Arc<Client>, args: StatusArgs) -> Result<(), String> {
    let answers_count = args.cluster.cluster.len();
    let answers = ask_each(client, &args.cluster.cluster, |client, addr| async move {
        client.status_of(addr).await
    });
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut answered = 0;
    let mut refused = 0;
    for (addr, answer) in answers.await {
        let written = match answer {
            Ok(status) => {
                answered += 1;
                write_line(&mut out, &StatusLine::new(addr, &status))
            }
            Err(NodeError { text, refused: was_refused }) => {
                refused += usize::from(was_refused);
                write_line(&mut out, &NodeErrorLine { addr, error: &text })
            }
        };
        written.map_err(|e| format!("cannot write standard output: {e}"))?;
    }
    out.flush().map_err(|e| format!("cannot write standard output: {e}"))?;
    if answered == 0 {
        // A node that refused (no such log, say) did answer: say so, not "no node answered".
        return Err(match refused {
            0 => "no node answered".into(),
            refused => format!(
                "no node gave a status: {refused} refused, {} did not answer",
                answers_count - refused
            ),
        });
    }
    Ok(())
}

/// What failed at one node: its text, and whether the node answered with a refusal (rather than
/// not answering at all).
#[derive(Debug)]
pub(crate) struct NodeError {
    pub(crate) text: String,
    pub(crate) refused: bool,
}

/// Asks every node at `addrs` at once (`ask` makes one request to one node) and returns their
/// answers in the order of `addrs`, each a success or what failed at that node.
pub(crate) async fn ask_each<T, F, Fut>(
    client: &Arc<Client>,
    addrs: &[SocketAddr],
    ask: F,
) -> Vec<(SocketAddr, Result<T, NodeError>)>
where
    T: Send + 'static,
    F: Fn(Arc<Client>, SocketAddr) -> Fut,
    Fut: Future<Output = Result<T, ClientError>> + Send + 'static,
{
    let asks: Vec<_> =
        addrs.iter().map(|&addr| (addr, tokio::spawn(ask(client.clone(), addr)))).collect();
    let mut answers = Vec::with_capacity(asks.len());
    for (addr, ask) in asks {
        let failed = |text: String, refused: bool| Err(NodeError { text, refused });
        let answer = match ask.await {
            Ok(Ok(value)) => Ok(value),
            // One node was asked: say what failed there, not "no node answered".
            Ok(Err(ClientError::Unavailable(reason))) => failed(reason, false),
            Ok(Err(refusal @ ClientError::Refused { .. })) => failed(refusal.to_string(), true),
            Ok(Err(other)) => failed(other.to_string(), false),
            Err(e) => failed(e.to_string(), false),
        };
        answers.push((addr, answer));
    }
    answers
}
