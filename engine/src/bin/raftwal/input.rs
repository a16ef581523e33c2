//! Standard input of `raftwal append`: lines read on a thread of their own, each bounded by the
//! largest entry the cluster takes.
//!
//! Owns: the reader thread, the bound on a line, and the one input held back when it did not fit
//! the request being built.
//! Must not: decode bytes, reorder or drop a line, or buffer more of a line than the bound: a
//! longer line is reported as such and reading stops there, so a huge line without a newline
//! costs at most the bound in memory (a line can never be appended whole once it is over it).

use bytes::Bytes;
use std::io::{self, BufRead};
use tokio::sync::mpsc;

/// What the reader hands on, in input order.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Input {
    /// One line, without its `\n` (the last line needs none).
    Line(Bytes),
    /// A line longer than the bound; reading stopped inside it.
    TooLong,
    /// Standard input could not be read; reading stopped.
    Failed(String),
}

/// Reads the next line of `input`, without its `\n`, unless it holds more than `max_bytes`
/// bytes (then [`Input::TooLong`], with at most `max_bytes` of it read). `None` at the end of
/// input.
pub(crate) fn read_line(input: &mut impl BufRead, max_bytes: usize) -> io::Result<Option<Input>> {
    let mut line = Vec::new();
    loop {
        let available = match input.fill_buf() {
            Ok(available) => available,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            // The end of input ends the last line, which needs no newline; nothing read means
            // there is no further line.
            return Ok((!line.is_empty()).then(|| Input::Line(Bytes::from(line))));
        }
        let newline = available.iter().position(|&b| b == b'\n');
        let take = newline.unwrap_or(available.len());
        if line.len() + take > max_bytes {
            return Ok(Some(Input::TooLong));
        }
        line.extend_from_slice(&available[..take]);
        match newline {
            Some(_) => {
                input.consume(take + 1);
                return Ok(Some(Input::Line(Bytes::from(line))));
            }
            None => input.consume(take),
        }
    }
}

/// Reads standard input on a thread of its own until its end, a line over `max_bytes`, a read
/// error, or the receiver's closing.
fn spawn_reader(tx: mpsc::Sender<Input>, max_bytes: usize) {
    let spawned = std::thread::Builder::new().name("raftwal-stdin".into()).spawn(move || {
        let stdin = std::io::stdin();
        let mut input = stdin.lock();
        loop {
            let next = match read_line(&mut input, max_bytes) {
                Ok(Some(next)) => next,
                Ok(None) => return,
                Err(e) => Input::Failed(format!("cannot read standard input: {e}")),
            };
            let last = !matches!(next, Input::Line(_));
            // The receiver stops listening after a failure; then so does this thread.
            if tx.blocking_send(next).is_err() || last {
                return;
            }
        }
    });
    if let Err(e) = spawned {
        // Without the thread the sender is dropped: the command sees the end of input.
        tracing::error!("cannot start the input thread: {e}");
    }
}

/// The lines of standard input, as the command takes them.
#[derive(Debug)]
pub(crate) struct Lines {
    rx: mpsc::Receiver<Input>,
    /// An input taken but not used yet: it comes next.
    held: Option<Input>,
}

impl Lines {
    /// Starts reading standard input, at most `read_ahead` inputs ahead of the command, each line
    /// at most `max_bytes` long.
    pub(crate) fn stdin(read_ahead: usize, max_bytes: usize) -> Lines {
        let (tx, rx) = mpsc::channel(read_ahead);
        spawn_reader(tx, max_bytes);
        Lines { rx, held: None }
    }

    /// The next input, waiting for it; `None` once input ended. Cancel-safe: a held input is
    /// taken only by the poll that returns it.
    pub(crate) async fn next(&mut self) -> Option<Input> {
        if let Some(input) = self.held.take() {
            return Some(input);
        }
        self.rx.recv().await
    }

    /// The next input if one is ready: `Ok(None)` when none is yet, `Err(())` once input ended.
    pub(crate) fn try_next(&mut self) -> Result<Option<Input>, ()> {
        if let Some(input) = self.held.take() {
            return Ok(Some(input));
        }
        match self.rx.try_recv() {
            Ok(input) => Ok(Some(input)),
            Err(mpsc::error::TryRecvError::Empty) => Ok(None),
            Err(mpsc::error::TryRecvError::Disconnected) => Err(()),
        }
    }

    /// Puts `input` back: it comes next.
    pub(crate) fn hold(&mut self, input: Input) {
        debug_assert!(self.held.is_none(), "one input is held at a time");
        self.held = Some(input);
    }

    /// Stops reading: the reader thread ends at its next line.
    pub(crate) fn close(&mut self) {
        self.held = None;
        self.rx.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &[u8], max_bytes: usize, capacity: usize) -> Vec<Input> {
        let mut input = io::BufReader::with_capacity(capacity, text);
        let mut out = Vec::new();
        while let Some(next) = read_line(&mut input, max_bytes).unwrap() {
            let stop = next == Input::TooLong;
            out.push(next);
            if stop {
                break;
            }
        }
        out
    }

    fn line(text: &str) -> Input {
        Input::Line(Bytes::copy_from_slice(text.as_bytes()))
    }

    #[test]
    fn lines_are_split_at_newlines_and_the_last_needs_none() {
        for capacity in [1, 3, 8192] {
            assert_eq!(
                lines(b"a\n\nbc\nlast", 10, capacity),
                [line("a"), line(""), line("bc"), line("last")]
            );
            assert_eq!(lines(b"a\n", 10, capacity), [line("a")]);
            assert_eq!(lines(b"", 10, capacity), []);
        }
    }

    #[test]
    fn a_line_over_the_bound_stops_reading_inside_it() {
        for capacity in [1, 4, 8192] {
            // At the bound: taken; one byte over: refused, whether or not a newline follows.
            assert_eq!(lines(b"abcd\nx", 4, capacity), [line("abcd"), line("x")]);
            assert_eq!(lines(b"ok\nabcde\nnever", 4, capacity), [line("ok"), Input::TooLong]);
            assert_eq!(lines(b"abcde", 4, capacity), [Input::TooLong]);
        }
        // Reading stops near the bound: the rest of a huge line stays unread.
        let huge = vec![b'x'; 1 << 20];
        let mut source = &huge[..];
        let mut input = io::BufReader::with_capacity(4096, &mut source);
        assert_eq!(read_line(&mut input, 10_000).unwrap(), Some(Input::TooLong));
        drop(input);
        let read = huge.len() - source.len();
        assert!(read <= 10_000 + 4096, "read {read} bytes");
    }
}
