//! `raftwal append`: appends standard input, one entry per line, with many appends in flight,
//! and prints each line's position in input order.
//!
//! Owns: grouping the lines of standard input (read on a thread of their own by `input.rs`, so
//! slow input never stalls answers) into requests (`--batch N`: up to N lines that are ready
//! together, and at most `--entry-size-bytes-max` bytes of them counting each line's framing
//! ([`BATCH_LINE_FRAMING_BYTES`]), so that a request always fits a frame), the window of
//! requests in flight, and printing the answers in input order.
//! Must not: print a position before the node acknowledged it (committed on a majority), let
//! more entries be in flight than the log's deduplication window covers, or send (or buffer) a
//! line over the entry size: it is answered with the error a node gives for it.
//!
//! Pipelining: requests go out over one connection in input order while earlier ones are in
//! flight, and their answers are printed as the oldest one completes. The window is counted
//! from the oldest unanswered line: at most [`IN_FLIGHT_ENTRIES_MAX`] lines past it are sent.
//! That keeps every retry within the node's deduplication window (1024 sequence numbers per
//! client, docs/operations.md): a retried request's sequence number is never more than the
//! window behind the newest, so a retry is recognised, never appended twice.
//!
//! Interruption: the first SIGINT or SIGTERM stops the input and waits for the answers of the
//! requests in flight (each line sent gets its position); a second stops the wait, and each line
//! still in flight gets an error line. Either way the command exits with status 1 saying which
//! lines were sent.
//!
//! Order: without failures, entries land in the log in input order. A request retried after a
//! leader change may land after requests that followed it; the printed positions say where each
//! line is.

use crate::client_args::ClusterArgs;
use crate::input::{Input, Lines};
use crate::interrupt;
use crate::output::{write_line, AppendErrorLine, PositionLine};
use bytes::Bytes;
use clap::Args;
use raftwal::client::{Client, ClientError};
use raftwal::config::ENTRY_SIZE_BYTES_MAX_DEFAULT;
use raftwal_wire::client::ErrorCode;
use std::collections::VecDeque;
use std::future::Future;
use std::io::Write;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// Lines sent past the oldest unanswered one, at most: half the log's per-client deduplication
/// window of 1024 sequence numbers (`runtime::dedup::SEQS_PER_CLIENT`).
pub(crate) const IN_FLIGHT_ENTRIES_MAX: usize = 512;

/// Lines read ahead of the requests.
const READ_AHEAD_LINES: usize = 4096;

/// The largest `--entry-size-bytes-max`: the client's frames hold at most 16 MiB
/// (`FrameLimits::default`), and a node's entries are at most its frame size minus 4096 bytes of
/// framing (`NodeConfig::validate`).
const ENTRY_SIZE_BYTES_CEILING: usize = (16 << 20) - 4096;

/// Arguments of `raftwal append`.
#[derive(Debug, Args)]
#[command(after_help = "Prints {\"index\":I,\"term\":T} per input line, in input order, once \
    the entry is committed; an unacknowledged line gets {\"line\":N,\"error\":\"...\"}, input \
    stops being read, and the command exits with status 1. SIGINT or SIGTERM stops reading \
    input, waits for the answers of the lines sent and exits with status 1; a second signal \
    stops the wait.")]
pub(crate) struct AppendArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Lines per request, at most: up to N lines that are ready together go in one AppendBatch
    /// (consecutive entries).
    #[arg(long, default_value_t = 1, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=IN_FLIGHT_ENTRIES_MAX as i64))]
    batch: u32,
    /// The cluster's `entry_size_bytes_max`: a longer line is refused without being sent (or
    /// read further), and a request of several lines carries at most this many bytes, 20 bytes
    /// of framing per line included.
    #[arg(long, default_value_t = ENTRY_SIZE_BYTES_MAX_DEFAULT as u64, value_name = "BYTES",
          value_parser = clap::value_parser!(u64).range(1..=ENTRY_SIZE_BYTES_CEILING as u64))]
    entry_size_bytes_max: u64,
}

/// What one line costs in an AppendBatch frame besides its bytes: its deduplication tag and its
/// length. Counted in a request's size, so that the lines of a request, however many, fit in the
/// frame that carries them: a node's entries are at most its frame size minus 4096 bytes, and
/// so is `--entry-size-bytes-max`. (Counting only the lines' bytes, 512 lines of 32,760 bytes,
/// within the largest `--entry-size-bytes-max`, made a frame 6,164 bytes over the client's 16
/// MiB, and every line of it was refused as a request that cannot be sent.)
const BATCH_LINE_FRAMING_BYTES: usize = raftwal_wire::client::TAG_SIZE_BYTES + 4;

/// Lines that go out as one request.
#[derive(Debug, Default)]
struct Request {
    lines: Vec<Bytes>,
    /// The lines' bytes and their framing ([`BATCH_LINE_FRAMING_BYTES`] each).
    size_bytes: usize,
}

/// The answer for a line over the entry size, which is not sent: the error a node gives for an
/// entry over its maximum.
fn refuse_too_long(max_bytes: usize) -> JoinHandle<Result<(u64, u64), String>> {
    let error = ClientError::Refused {
        code: ErrorCode::InvalidRequest,
        message: format!(
            "entry of more than {max_bytes} bytes exceeds the maximum of {max_bytes} (not sent, \
             and the rest of the line not read; a cluster with a larger entry_size_bytes_max \
             needs --entry-size-bytes-max)"
        ),
    };
    fail_now(error.to_string())
}

/// An answer that is an error at once (a line not sent).
fn fail_now(error: String) -> JoinHandle<Result<(u64, u64), String>> {
    tokio::spawn(async move { Err(error) })
}

/// A request in flight: the input lines `first_line..first_line + count` (numbered from 1).
#[derive(Debug)]
struct InFlight {
    first_line: u64,
    count: u64,
    answer: JoinHandle<Result<(u64, u64), String>>,
}

/// Sends `lines` as one request; the task resolves to the (first index, term) of the entries.
fn send(client: &Arc<Client>, lines: Vec<Bytes>) -> JoinHandle<Result<(u64, u64), String>> {
    let client = client.clone();
    tokio::spawn(async move { append_lines(&client, lines).await.map_err(|e| e.to_string()) })
}

async fn append_lines(client: &Client, mut lines: Vec<Bytes>) -> Result<(u64, u64), ClientError> {
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
}

/// Prints the answer for one request: a position per line, or an error per line. Returns the
/// error, if any.
fn print_answer(
    out: &mut impl Write,
    request: &InFlight,
    answer: Result<Result<(u64, u64), String>, tokio::task::JoinError>,
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
        Ok(Err(e)) => e,
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
    let result = append_with(&client, args).await;
    // However the command ends: the nodes hear of the close before the process exits.
    client.close_and_wait().await;
    result
}

async fn append_with(client: &Arc<Client>, args: AppendArgs) -> Result<(), String> {
    let batch_max = args.batch as usize;
    // Bounded by ENTRY_SIZE_BYTES_CEILING through clap.
    let entry_size_bytes_max = usize::try_from(args.entry_size_bytes_max)
        .map_err(|_| "--entry-size-bytes-max is too large".to_string())?;
    let mut lines = Lines::stdin(READ_AHEAD_LINES, entry_size_bytes_max);
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
    // The first SIGINT or SIGTERM stops the input and waits for the lines in flight; a second
    // one stops waiting.
    let interrupted = interrupt::interrupted()?;
    tokio::pin!(interrupted);
    let mut stopped_by: Option<interrupt::Signal> = None;
    let mut second: Option<std::pin::Pin<Box<dyn Future<Output = interrupt::Signal>>>> = None;
    let mut abandoned = false;
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
            signal = &mut interrupted, if stopped_by.is_none() => {
                stopped_by = Some(signal);
                input_open = false;
                lines.close();
                second = Some(Box::pin(interrupt::interrupted()?));
                if !in_flight.is_empty() {
                    eprintln!(
                        "raftwal append: {} received: no more input is read; waiting for the \
                         answers to the {in_flight_entries} lines in flight (a second signal \
                         stops at once)",
                        signal.name()
                    );
                }
            }
            _ = async { second.as_mut().expect("guarded: set").await }, if second.is_some() => {
                // Their answers are not waited for: each line gets an error line instead.
                for request in in_flight.drain(..) {
                    request.answer.abort();
                    let error = "the command was interrupted before the answer came".to_owned();
                    print_answer(&mut out, &request, Ok(Err(error)))?;
                }
                abandoned = true;
                break;
            }
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
            input = lines.next(), if may_send => {
                let mut request = Request::default();
                let mut next = input;
                let mut too_long = false;
                let mut read_failed = None;
                // Whatever else is ready joins this request, up to the batch size and the entry
                // size in bytes, framing included (so that a request always fits a frame); what
                // does not fit comes next.
                loop {
                    match next {
                        None => {
                            input_open = false;
                            break;
                        }
                        Some(Input::Line(data)) => {
                            let size_bytes =
                                request.size_bytes + data.len() + BATCH_LINE_FRAMING_BYTES;
                            if !request.lines.is_empty() && size_bytes > entry_size_bytes_max {
                                lines.hold(Input::Line(data));
                                break;
                            }
                            request.lines.push(data);
                            request.size_bytes = size_bytes;
                        }
                        Some(Input::TooLong) if request.lines.is_empty() => {
                            too_long = true;
                            break;
                        }
                        Some(Input::TooLong) => {
                            lines.hold(Input::TooLong);
                            break;
                        }
                        Some(Input::Failed(e)) => {
                            input_open = false;
                            read_failed = Some(e);
                            break;
                        }
                    }
                    if request.lines.len() == batch_max {
                        break;
                    }
                    match lines.try_next() {
                        Ok(Some(input)) => next = Some(input),
                        Ok(None) => break,
                        Err(()) => next = None,
                    }
                }
                if !request.lines.is_empty() {
                    let count = request.lines.len() as u64;
                    in_flight_entries += request.lines.len();
                    let answer = send(client, request.lines);
                    in_flight.push_back(InFlight { first_line: next_line, count, answer });
                    next_line += count;
                }
                if too_long {
                    // Answered in input order, after the lines before it.
                    in_flight_entries += 1;
                    let answer = refuse_too_long(entry_size_bytes_max);
                    in_flight.push_back(InFlight { first_line: next_line, count: 1, answer });
                    next_line += 1;
                }
                if let Some(error) = read_failed {
                    // The line that could not be read gets its error line, in input order.
                    in_flight_entries += 1;
                    let answer = fail_now(error);
                    in_flight.push_back(InFlight { first_line: next_line, count: 1, answer });
                    next_line += 1;
                }
            }
            _ = std::future::ready(()), if unflushed => {
                out.flush().map_err(|e| format!("cannot write standard output: {e}"))?;
                unflushed = false;
            }
        }
        if failure.is_some() {
            // Stop reading: the reader thread ends at its next line.
            lines.close();
        }
    }
    out.flush().map_err(|e| format!("cannot write standard output: {e}"))?;
    match (failure, stopped_by) {
        (Some((line, error)), _) => Err(format!(
            "input line {line} was not acknowledged ({error}); no later line was read. Lines \
             without a printed position may or may not be in the log"
        )),
        (None, Some(signal)) => Err(format!(
            "{} received: {}; no later line was sent (lines read ahead are dropped){}",
            signal.name(),
            match next_line - 1 {
                0 => "no input line was sent".to_owned(),
                last => format!("input lines up to {last} were sent"),
            },
            if abandoned {
                ". Lines without a printed position may or may not be in the log"
            } else {
                ", and each has its printed position"
            }
        )),
        (None, None) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftwal_wire::codec::FrameLimits;

    #[test]
    fn the_entry_size_ceiling_fits_the_clients_frames() {
        let frame = FrameLimits::default().frame_size_bytes_max() as usize;
        assert_eq!(ENTRY_SIZE_BYTES_CEILING, frame - 4096);
    }

    /// A request of lines whose bytes and framing reach the largest entry size encodes within
    /// the client's frame, however many lines it has.
    #[test]
    fn a_full_batch_of_lines_fits_the_clients_frame() {
        use raftwal_wire::client::{
            AppendBatchRequest, ClientId, ClientRequest, ClientSeq, RequestId, TaggedPayload,
        };
        use raftwal_wire::codec::FrameEncoder;
        use raftwal_wire::types::LogId;
        let lines = IN_FLIGHT_ENTRIES_MAX;
        let each = ENTRY_SIZE_BYTES_CEILING / lines - BATCH_LINE_FRAMING_BYTES;
        let items = (0..lines as u64)
            .map(|seq| TaggedPayload::new(ClientId(1), ClientSeq(seq), vec![7u8; each].into()))
            .collect();
        let request = ClientRequest::AppendBatch(AppendBatchRequest { log: LogId(0), items });
        let mut encoder = FrameEncoder::new(FrameLimits::default());
        encoder.encode_request(RequestId(1), &request).unwrap();
    }
}
