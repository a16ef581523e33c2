//! `raftwal append`: appends standard input, one entry per line, with many appends in flight,
//! and prints each line's position in input order.
//!
//! Owns: reading lines (a thread of its own, so slow input never stalls answers), grouping them
//! into requests (`--batch N`: up to N lines that are ready together), the window of requests
//! in flight, and printing the answers in input order.
//! Must not: print a position before the node acknowledged it (committed on a majority), or let
//! more entries be in flight than the log's deduplication window covers.
//!
//! Pipelining: requests go out over one connection in input order while earlier ones are in
//! flight, and their answers are printed as the oldest one completes. The window is counted
//! from the oldest unanswered line: at most [`IN_FLIGHT_ENTRIES_MAX`] lines past it are sent.
//! That keeps every retry within the node's deduplication window (1024 sequence numbers per
//! client, docs/operations.md): a retried request's sequence number is never more than the
//! window behind the newest, so a retry is recognised, never appended twice.
//!
//! Order: without failures, entries land in the log in input order. A request retried after a
//! leader change may land after requests that followed it; the printed positions say where each
//! line is.

use crate::client_args::ClusterArgs;
use crate::interrupt;
use crate::output::{write_line, AppendErrorLine, PositionLine};
use bytes::Bytes;
use clap::Args;
use raftwal::client::{Client, ClientError};
use std::collections::VecDeque;
use std::io::{BufRead, Write};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Lines sent past the oldest unanswered one, at most: half the log's per-client deduplication
/// window of 1024 sequence numbers (`runtime::dedup::SEQS_PER_CLIENT`).
pub(crate) const IN_FLIGHT_ENTRIES_MAX: usize = 512;

/// Lines read ahead of the requests.
const READ_AHEAD_LINES: usize = 4096;

/// Arguments of `raftwal append`.
#[derive(Debug, Args)]
#[command(after_help = "Prints {\"index\":I,\"term\":T} per input line, in input order, once \
    the entry is committed; an unacknowledged line gets {\"line\":N,\"error\":\"...\"}, input \
    stops being read, and the command exits with status 1.")]
pub(crate) struct AppendArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Lines per request, at most: up to N lines that are ready together go in one AppendBatch
    /// (consecutive entries).
    #[arg(long, default_value_t = 1, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=IN_FLIGHT_ENTRIES_MAX as i64))]
    batch: u32,
}

/// One line of input, or why input could not be read.
type Line = Result<Bytes, String>;

/// Reads standard input line by line on a thread of its own; each line without its `\n`.
fn spawn_reader(tx: mpsc::Sender<Line>) {
    let spawned = std::thread::Builder::new().name("raftwal-stdin".into()).spawn(move || {
        let stdin = std::io::stdin();
        let mut input = stdin.lock();
        loop {
            let mut line = Vec::new();
            match input.read_until(b'\n', &mut line) {
                Ok(0) => return,
                Ok(_) => {
                    if line.last() == Some(&b'\n') {
                        line.pop();
                    }
                    // The receiver stops listening after a failure; then so does this thread.
                    if tx.blocking_send(Ok(Bytes::from(line))).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(format!("cannot read standard input: {e}")));
                    return;
                }
            }
        }
    });
    if let Err(e) = spawned {
        // Without the thread the sender is dropped: the command sees an input error.
        tracing::error!("cannot start the input thread: {e}");
    }
}

/// A request in flight: the input lines `first_line..first_line + count` (numbered from 1).
#[derive(Debug)]
struct InFlight {
    first_line: u64,
    count: u64,
    answer: JoinHandle<Result<(u64, u64), ClientError>>,
}

/// Sends `lines` as one request; the task resolves to the (first index, term) of the entries.
fn send(
    client: &Arc<Client>,
    mut lines: Vec<Bytes>,
) -> JoinHandle<Result<(u64, u64), ClientError>> {
    let client = client.clone();
    tokio::spawn(async move {
        if lines.len() == 1 {
            let data = lines.pop().unwrap_or_default();
            let position = client.append(data).await?;
            return Ok((position.index.get(), position.term.get()));
        }
        let count = lines.len() as u64;
        let batch = client.append_batch(lines).await?;
        if batch.count != count {
            return Err(ClientError::Protocol(format!(
                "{} entries acknowledged for a batch of {count}",
                batch.count
            )));
        }
        Ok((batch.first_index.get(), batch.term.get()))
    })
}

/// Prints the answer for one request: a position per line, or an error per line. Returns the
/// error, if any.
fn print_answer(
    out: &mut impl Write,
    request: &InFlight,
    answer: Result<Result<(u64, u64), ClientError>, tokio::task::JoinError>,
) -> Result<Option<String>, String> {
    let write_failed = |e: std::io::Error| format!("cannot write standard output: {e}");
    let error = match answer {
        Ok(Ok((first_index, term))) => {
            for offset in 0..request.count {
                write_line(out, &PositionLine { index: first_index + offset, term })
                    .map_err(write_failed)?;
            }
            return Ok(None);
        }
        Ok(Err(e)) => e.to_string(),
        Err(e) => format!("the request's task failed: {e}"),
    };
    for offset in 0..request.count {
        write_line(out, &AppendErrorLine { line: request.first_line + offset, error: &error })
            .map_err(write_failed)?;
    }
    Ok(Some(error))
}

pub(crate) fn run(args: AppendArgs) -> Result<(), String> {
    let runtime = interrupt::runtime()?;
    runtime.block_on(append(args))
}

async fn append(args: AppendArgs) -> Result<(), String> {
    let client = Arc::new(Client::new(args.cluster.client_config()).map_err(|e| e.to_string())?);
    let batch_max = args.batch as usize;
    let (tx, mut rx) = mpsc::channel(READ_AHEAD_LINES);
    spawn_reader(tx);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut in_flight: VecDeque<InFlight> = VecDeque::new();
    let mut in_flight_entries = 0usize;
    let mut next_line = 1u64;
    let mut input_open = true;
    // The first request goes alone: once it is answered, the client is connected to the leader
    // and the requests that follow share that connection in input order.
    let mut connected = false;
    let mut failure: Option<(u64, String)> = None;
    let mut unflushed = false;
    loop {
        let may_send = input_open
            && failure.is_none()
            && in_flight_entries + batch_max <= IN_FLIGHT_ENTRIES_MAX
            && (connected || in_flight.is_empty());
        if !may_send && in_flight.is_empty() {
            break;
        }
        tokio::select! {
            biased;
            answer = async { (&mut in_flight.front_mut().expect("guarded: not empty").answer).await },
                if !in_flight.is_empty() =>
            {
                let request = in_flight.pop_front().expect("the branch ran on the front request");
                in_flight_entries -= request.count as usize;
                if let Some(error) = print_answer(&mut out, &request, answer)? {
                    failure.get_or_insert((request.first_line, error));
                } else {
                    connected = true;
                }
                unflushed = true;
            }
            line = rx.recv(), if may_send => {
                let mut lines = Vec::with_capacity(batch_max);
                match line {
                    Some(Ok(data)) => lines.push(data),
                    Some(Err(e)) => failure = Some((next_line, e)),
                    None => input_open = false,
                }
                // Whatever else is ready joins this request, up to the batch size.
                while !lines.is_empty() && lines.len() < batch_max && failure.is_none() {
                    match rx.try_recv() {
                        Ok(Ok(data)) => lines.push(data),
                        Ok(Err(e)) => failure = Some((next_line + lines.len() as u64, e)),
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => {
                            input_open = false;
                            break;
                        }
                    }
                }
                if !lines.is_empty() {
                    let count = lines.len() as u64;
                    in_flight_entries += lines.len();
                    in_flight.push_back(InFlight { first_line: next_line, count, answer: send(&client, lines) });
                    next_line += count;
                }
            }
            _ = std::future::ready(()), if unflushed => {
                out.flush().map_err(|e| format!("cannot write standard output: {e}"))?;
                unflushed = false;
            }
        }
        if failure.is_some() {
            // Stop reading: the reader thread ends at its next line.
            rx.close();
        }
    }
    out.flush().map_err(|e| format!("cannot write standard output: {e}"))?;
    client.close();
    match failure {
        None => Ok(()),
        Some((line, error)) => Err(format!(
            "input line {line} was not acknowledged ({error}); no later line was read. Lines \
             without a printed position may or may not be in the log"
        )),
    }
}
