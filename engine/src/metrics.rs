//! Metrics: counters, gauges and latency histograms kept by the shards, and their Prometheus text
//! exposition (served by `raftwal serve --metrics ADDR` on `GET /metrics`).
//!
//! Owns: [`LogMetrics`] (one per log, written only by the shard thread that owns the log, read
//! by the exporter), [`Histogram`] (fixed exponential buckets of atomic counters) and the text
//! rendering.
//! Must not: lock or allocate on the shard's hot path. Every update is a relaxed atomic add on
//! memory only the owning shard writes, once per batch or per client request, never per entry.

use raftwal_wire::transport::ClientLimits;
use raftwal_wire::types::{LogId, NodeId};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Upper bounds of the latency buckets, in microseconds: 10 us to about 21 s, doubling.
const LATENCY_BOUNDS_US: [u64; 22] = {
    let mut b = [0u64; 22];
    let mut i = 0;
    while i < 22 {
        b[i] = 10 << i;
        i += 1;
    }
    b
};

/// Upper bounds of the batch-size buckets, in entries: 1 to 65,536, doubling.
const COUNT_BOUNDS: [u64; 17] = {
    let mut b = [0u64; 17];
    let mut i = 0;
    while i < 17 {
        b[i] = 1 << i;
        i += 1;
    }
    b
};

/// A histogram with fixed bucket bounds and atomic counts.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [u64],
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [u64]) -> Histogram {
        Histogram {
            bounds,
            // One bucket per bound plus the overflow bucket (+Inf).
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
        }
    }

    /// A latency histogram (values in microseconds).
    pub fn latency() -> Histogram {
        Histogram::new(&LATENCY_BOUNDS_US)
    }

    /// A count histogram (values in entries).
    pub fn count() -> Histogram {
        Histogram::new(&COUNT_BOUNDS)
    }

    /// Records one value.
    pub fn observe(&self, value: u64) {
        let position = self.bounds.partition_point(|&bound| bound < value);
        self.buckets[position].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
    }

    /// Records a duration in microseconds.
    pub fn observe_duration(&self, duration: Duration) {
        self.observe(u64::try_from(duration.as_micros()).unwrap_or(u64::MAX));
    }

    /// Number of values recorded.
    pub fn count_total(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Sum of the values recorded.
    pub fn sum_total(&self) -> u64 {
        self.sum.load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, labels: &str, scale: f64) {
        let mut cumulative = 0;
        for (position, bound) in self.bounds.iter().enumerate() {
            cumulative += self.buckets[position].load(Ordering::Relaxed);
            let le = *bound as f64 * scale;
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
        }
        cumulative += self.buckets[self.bounds.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {cumulative}");
        let sum = self.sum.load(Ordering::Relaxed) as f64 * scale;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count.load(Ordering::Relaxed));
    }
}

/// The metrics of one log on one node.
#[derive(Debug)]
pub struct LogMetrics {
    /// The log.
    pub log: LogId,
    /// Client and API append requests received (each may carry many entries).
    pub append_requests: AtomicU64,
    /// Entries proposed by this node as leader.
    pub entries_proposed: AtomicU64,
    /// From an append request's arrival on the shard to its answer (us).
    pub append_latency_us: Histogram,
    /// From a proposal to its commit on the leader (us).
    pub commit_latency_us: Histogram,
    /// From a storage batch's submission to its durability (write plus fdatasync, us).
    pub fsync_latency_us: Histogram,
    /// Entries per storage batch (one fdatasync each).
    pub fsync_batch_entries: Histogram,
    /// Current term.
    pub term: AtomicU64,
    /// Commit index.
    pub commit_index: AtomicU64,
    /// Last index in the log.
    pub last_index: AtomicU64,
    /// First index the log still holds (1 until it is compacted or reset).
    pub first_index: AtomicU64,
    /// Times a leader told this node to start its log after an entry it lacked, replacing
    /// its log (the leader had compacted the entries this node needed).
    pub log_resets: AtomicU64,
    /// Whether this node leads the log (0 or 1).
    pub is_leader: AtomicU64,
    /// Whether this node's copy of the log is rejoining after a loss of its data (0 or 1).
    pub rejoining: AtomicU64,
    /// Subscribers of the log served by this node (local and remote).
    pub subscribers: AtomicU64,
    /// Times this node saw the leader change (including to "no leader").
    pub leader_changes: AtomicU64,
    /// Entry payload bytes received from clients and peers.
    pub bytes_in: AtomicU64,
    /// Entry payload bytes sent to peers and subscribers.
    pub bytes_out: AtomicU64,
    /// Background writes of zeros ahead of the writer since the log was opened (the store's
    /// count, copied after each completion).
    pub zero_fill_writes: AtomicU64,
    /// Bytes of those writes.
    pub zero_fill_bytes: AtomicU64,
    /// Storage batches started while an earlier batch of the log was in flight (the store's
    /// count, copied after each completion).
    pub pipelined_batches: AtomicU64,
}

impl LogMetrics {
    /// Zeroed metrics for `log`.
    pub fn new(log: LogId) -> LogMetrics {
        LogMetrics {
            log,
            append_requests: AtomicU64::new(0),
            entries_proposed: AtomicU64::new(0),
            append_latency_us: Histogram::latency(),
            commit_latency_us: Histogram::latency(),
            fsync_latency_us: Histogram::latency(),
            fsync_batch_entries: Histogram::count(),
            term: AtomicU64::new(0),
            commit_index: AtomicU64::new(0),
            last_index: AtomicU64::new(0),
            first_index: AtomicU64::new(1),
            log_resets: AtomicU64::new(0),
            is_leader: AtomicU64::new(0),
            rejoining: AtomicU64::new(0),
            subscribers: AtomicU64::new(0),
            leader_changes: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            zero_fill_writes: AtomicU64::new(0),
            zero_fill_bytes: AtomicU64::new(0),
            pipelined_batches: AtomicU64::new(0),
        }
    }

    pub(crate) fn add(counter: &AtomicU64, value: u64) {
        counter.fetch_add(value, Ordering::Relaxed);
    }

    pub(crate) fn set(gauge: &AtomicU64, value: u64) {
        gauge.store(value, Ordering::Relaxed);
    }
}

/// A named counter or gauge: name, help text, and where to read it.
type Scalar = (&'static str, &'static str, fn(&LogMetrics) -> &AtomicU64);

/// A named histogram: name, help text, unit scale to the exposed unit, and where to read it.
type Distribution = (&'static str, &'static str, f64, fn(&LogMetrics) -> &Histogram);

/// Every log's metrics on one node.
#[derive(Debug)]
pub struct NodeMetrics {
    node: NodeId,
    logs: Vec<Arc<LogMetrics>>,
    clients: Option<ClientLimits>,
}

impl NodeMetrics {
    /// Metrics for `log_count` logs of node `node`.
    pub fn new(node: NodeId, log_count: u64) -> NodeMetrics {
        NodeMetrics {
            node,
            logs: (0..log_count).map(|l| Arc::new(LogMetrics::new(LogId(l)))).collect(),
            clients: None,
        }
    }

    /// Reports the node's client connections and the bytes held for them too.
    pub fn with_client_limits(mut self, limits: ClientLimits) -> NodeMetrics {
        self.clients = Some(limits);
        self
    }

    /// The node's client limits and their use, when known.
    pub fn client_limits(&self) -> Option<&ClientLimits> {
        self.clients.as_ref()
    }

    /// The metrics of `log`, if the node has it.
    pub fn log(&self, log: LogId) -> Option<&Arc<LogMetrics>> {
        usize::try_from(log.get()).ok().and_then(|i| self.logs.get(i))
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let us = 1e-6;
        let counters: [Scalar; 9] = [
            ("raftwal_log_resets_total", "Logs replaced by a leader's log start.", |m| {
                &m.log_resets
            }),
            ("raftwal_append_requests_total", "Append requests received.", |m| &m.append_requests),
            ("raftwal_entries_proposed_total", "Entries proposed as leader.", |m| {
                &m.entries_proposed
            }),
            ("raftwal_leader_changes_total", "Leader changes seen.", |m| &m.leader_changes),
            ("raftwal_bytes_in_total", "Entry payload bytes received.", |m| &m.bytes_in),
            ("raftwal_bytes_out_total", "Entry payload bytes sent.", |m| &m.bytes_out),
            ("raftwal_zero_fill_writes_total", "Background zero-fill writes.", |m| {
                &m.zero_fill_writes
            }),
            ("raftwal_zero_fill_bytes_total", "Background zero-fill bytes.", |m| {
                &m.zero_fill_bytes
            }),
            (
                "raftwal_pipelined_batches_total",
                "Storage batches started while another was in flight.",
                |m| &m.pipelined_batches,
            ),
        ];
        for (name, help, get) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for m in &self.logs {
                let v = get(m).load(Ordering::Relaxed);
                let _ = writeln!(out, "{name}{{node=\"{}\",log=\"{}\"}} {v}", self.node, m.log);
            }
        }
        let gauges: [Scalar; 7] = [
            ("raftwal_term", "Current term.", |m| &m.term),
            ("raftwal_commit_index", "Commit index.", |m| &m.commit_index),
            ("raftwal_first_index", "First index the log still holds.", |m| &m.first_index),
            ("raftwal_last_index", "Last index in the log.", |m| &m.last_index),
            ("raftwal_is_leader", "1 when this node leads the log.", |m| &m.is_leader),
            (
                "raftwal_rejoining",
                "1 while this node's copy of the log rejoins after a loss of its data.",
                |m| &m.rejoining,
            ),
            (
                "raftwal_subscribers",
                "Subscribers of the log served by this node (embedding API and clients).",
                |m| &m.subscribers,
            ),
        ];
        for (name, help, get) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for m in &self.logs {
                let v = get(m).load(Ordering::Relaxed);
                let _ = writeln!(out, "{name}{{node=\"{}\",log=\"{}\"}} {v}", self.node, m.log);
            }
        }
        let histograms: [Distribution; 4] = [
            ("raftwal_append_latency_seconds", "Append request arrival to answer.", us, |m| {
                &m.append_latency_us
            }),
            ("raftwal_commit_latency_seconds", "Proposal to commit.", us, |m| &m.commit_latency_us),
            ("raftwal_fsync_latency_seconds", "Storage batch write plus fdatasync.", us, |m| {
                &m.fsync_latency_us
            }),
            ("raftwal_fsync_batch_entries", "Entries per storage batch.", 1.0, |m| {
                &m.fsync_batch_entries
            }),
        ];
        for (name, help, scale, get) in histograms {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
            for m in &self.logs {
                let labels = format!("node=\"{}\",log=\"{}\"", self.node, m.log);
                get(m).render(&mut out, name, &labels, scale);
            }
        }
        if let Some(clients) = &self.clients {
            let node = self.node;
            for (name, help, value) in [
                (
                    "raftwal_client_connections",
                    "Client connections served now.",
                    clients.connections(),
                ),
                (
                    "raftwal_client_connections_max",
                    "Client connections served at most (transport.client_connections_max).",
                    clients.connections_max(),
                ),
                (
                    "raftwal_client_memory_bytes",
                    "Bytes held for client connections: requests waiting, reserved answers, queued answers and subscription batches.",
                    clients.memory_bytes(),
                ),
                (
                    "raftwal_client_memory_bytes_max",
                    "Bytes all client connections may make the node hold (transport.client_memory_bytes_max).",
                    clients.memory_bytes_max(),
                ),
            ] {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
                let _ = writeln!(out, "{name}{{node=\"{node}\"}} {value}");
            }
            let name = "raftwal_client_connections_timed_out_total";
            let _ = writeln!(
                out,
                "# HELP {name} Client connections that ended by the idle timeout (their client vanished without closing them).\n# TYPE {name} counter"
            );
            let _ = writeln!(out, "{name}{{node=\"{node}\"}} {}", clients.connections_timed_out());
        }
        out
    }
}

/// Requests served at once by the metrics endpoint; a connection beyond them is closed at once.
const METRICS_CONNECTIONS_MAX: usize = 16;

/// A metrics endpoint started by [`serve`]. Dropping it stops the endpoint: its listening
/// socket is closed (the address is free again) and its thread has ended when the drop returns.
/// A connection being answered then finishes on its own thread, within its read and write
/// timeouts.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// The address the endpoint listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // The thread waits in `accept`: a connection of our own wakes it, and it sees the flag.
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            });
        }
        match TcpStream::connect_timeout(&wake, Duration::from_secs(5)) {
            Ok(_) => {
                if let Some(thread) = self.thread.take() {
                    let _ = thread.join();
                }
            }
            // Not waited for: the thread stops at its next connection.
            Err(e) => tracing::warn!("metrics endpoint on {}: cannot stop it: {e}", self.addr),
        }
    }
}

/// Serves `GET /metrics` on `addr` from a thread of its own until the returned server is
/// dropped, each connection on a thread of its own (at most [`METRICS_CONNECTIONS_MAX`]), so
/// that a client that is slow to send its request, or never sends it, cannot hold up the
/// others' scrapes.
pub fn serve(addr: SocketAddr, metrics: Arc<NodeMetrics>) -> std::io::Result<MetricsServer> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    let serving = Arc::new(AtomicUsize::new(0));
    let stopping = Arc::new(AtomicBool::new(false));
    let stop = stopping.clone();
    let thread = std::thread::Builder::new().name("raftwal-metrics".into()).spawn(move || {
        for stream in listener.incoming() {
            if stop.load(Ordering::SeqCst) {
                return; // Dropping the listener closes it.
            }
            let Ok(stream) = stream else {
                // A failed accept (the process out of descriptors, say) leaves the connection
                // queued and fails again at once: pause rather than spin a core until it clears.
                // (This is the endpoint's own thread, never a shard's.)
                #[allow(clippy::disallowed_methods)]
                std::thread::sleep(ACCEPT_RETRY_PAUSE);
                continue;
            };
            if serving.fetch_add(1, Ordering::Relaxed) >= METRICS_CONNECTIONS_MAX {
                serving.fetch_sub(1, Ordering::Relaxed);
                continue; // Dropping the stream closes it.
            }
            let (metrics, done) = (metrics.clone(), serving.clone());
            let spawned =
                std::thread::Builder::new().name("raftwal-metrics-conn".into()).spawn(move || {
                    answer(stream, &metrics, REQUEST_TIME_MAX);
                    done.fetch_sub(1, Ordering::Relaxed);
                });
            if spawned.is_err() {
                // The closure, and with it the stream, was dropped unrun.
                serving.fetch_sub(1, Ordering::Relaxed);
            }
        }
    })?;
    Ok(MetricsServer { addr: bound, stopping, thread: Some(thread) })
}

/// The pause after a failed accept before the next.
const ACCEPT_RETRY_PAUSE: Duration = Duration::from_millis(50);

/// The most of one request the endpoint reads, request line and headers (a scrape sends a few
/// hundred bytes); a longer one is answered 400 and closed.
const REQUEST_BYTES_MAX: u64 = 16 * 1024;

/// How long one connection may take to send its request and take its answer; then it is
/// closed, however it trickles its bytes.
const REQUEST_TIME_MAX: Duration = Duration::from_secs(10);

/// A connection read and written with one deadline for all its reads and writes: each waits at
/// most until then, so a client that sends its request or takes its answer a few bytes at a
/// time is closed all the same.
struct Deadline<'a> {
    stream: &'a TcpStream,
    until: std::time::Instant,
}

impl Deadline<'_> {
    /// The time left, or `TimedOut` when none is.
    fn left(&self) -> std::io::Result<Duration> {
        let left = self.until.saturating_duration_since(crate::runtime::clock::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        Ok(left)
    }
}

impl std::io::Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.stream.set_read_timeout(Some(self.left()?))?;
        std::io::Read::read(&mut &*self.stream, buf)
    }
}

impl Write for Deadline<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.stream.set_write_timeout(Some(self.left()?))?;
        Write::write(&mut &*self.stream, buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Reads the request line and the headers, at most [`REQUEST_BYTES_MAX`] bytes of them: the
/// request line when the request ended (a blank line) within them, `None` when it did not (too
/// long, cut short, or out of time).
fn read_request(reader: impl std::io::Read) -> Option<String> {
    let mut reader = BufReader::new(std::io::Read::take(reader, REQUEST_BYTES_MAX));
    let mut request_line = String::new();
    match reader.read_line(&mut request_line) {
        Ok(_) if request_line.ends_with('\n') => {}
        _ => return None,
    }
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(_) if !line.ends_with('\n') => return None,
            Ok(_) if line == "\r\n" || line == "\n" => return Some(request_line),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

/// Reads one request from `stream` and answers it, all within `time_max`: the answer is cut
/// off (the connection closed) when the client has not taken it by then.
fn answer(stream: TcpStream, metrics: &NodeMetrics, time_max: Duration) {
    let until = crate::runtime::clock::now() + time_max;
    let (status, body) = match read_request(Deadline { stream: &stream, until }) {
        Some(line) if line.starts_with("GET /metrics") => ("200 OK", metrics.render()),
        Some(_) => ("404 Not Found", "only GET /metrics is served\n".to_owned()),
        None => ("400 Bad Request", "the request did not end in time or in size\n".to_owned()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut out = Deadline { stream: &stream, until };
    let _ = out.write_all(head.as_bytes()).and_then(|()| out.write_all(body.as_bytes()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_complete() {
        let h = Histogram::latency();
        for v in [1, 10, 11, 1000, u64::MAX / 2] {
            h.observe(v);
        }
        let mut out = String::new();
        h.render(&mut out, "x", "a=\"b\"", 1.0);
        assert!(out.contains("x_bucket{a=\"b\",le=\"10\"} 2"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"20\"} 3"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"+Inf\"} 5"), "{out}");
        assert!(out.contains("x_count{a=\"b\"} 5"), "{out}");
    }

    #[test]
    fn exposition_names_every_metric_per_log() {
        let m = NodeMetrics::new(NodeId(3), 2);
        m.log(LogId(1)).unwrap().commit_index.store(42, Ordering::Relaxed);
        let text = m.render();
        assert!(text.contains("raftwal_commit_index{node=\"3\",log=\"1\"} 42"), "{text}");
        assert!(text.contains("# TYPE raftwal_fsync_latency_seconds histogram"));
        assert_eq!(text.matches("raftwal_term{").count(), 2);
    }

    #[test]
    fn a_client_that_never_finishes_its_request_does_not_hold_up_the_others() {
        let m = Arc::new(NodeMetrics::new(NodeId(1), 1));
        let server = serve("127.0.0.1:0".parse().unwrap(), m).unwrap();
        let addr = server.local_addr();
        // A client that sends a header line now and then, never the end of its request.
        let mut slow = std::net::TcpStream::connect(addr).unwrap();
        slow.write_all(b"GET /metrics HTTP/1.1\r\n").unwrap();
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let trickle = {
            let done = done.clone();
            std::thread::spawn(move || {
                let (lock, wait) = (std::sync::Mutex::new(()), std::sync::Condvar::new());
                while !done.load(Ordering::Relaxed) {
                    if slow.write_all(b"X-Slow: 1\r\n").is_err() {
                        return;
                    }
                    let guard = lock.lock().unwrap();
                    let _ = wait.wait_timeout(guard, Duration::from_millis(100)).unwrap();
                }
            })
        };
        // Another scrape is answered meanwhile (the read timeout only turns a hang into a
        // failure).
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut body = String::new();
        let read = std::io::Read::read_to_string(&mut s, &mut body);
        done.store(true, Ordering::Relaxed);
        trickle.join().unwrap();
        read.unwrap();
        assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    }

    /// A client that sends a request line without end: the endpoint reads a bounded part of it
    /// and closes the connection. It read on without bound (a `String` growing with every
    /// byte sent, for as long as the client kept sending).
    #[test]
    fn a_request_without_end_is_read_no_further_than_a_bound() {
        let m = Arc::new(NodeMetrics::new(NodeId(1), 1));
        let server = serve("127.0.0.1:0".parse().unwrap(), m).unwrap();
        let mut s = std::net::TcpStream::connect(server.local_addr()).unwrap();
        // Far more than the socket buffers of both ends hold: the writes go through only
        // while the endpoint reads.
        let total: usize = 256 << 20;
        let chunk = vec![b'a'; 1 << 20];
        let mut written = 0;
        while written < total {
            match s.write(&chunk) {
                Ok(n) => written += n,
                Err(_) => break,
            }
        }
        assert!(written < total, "the endpoint read all {written} bytes of one request line");
    }

    /// A client that sends its request slowly, a byte now and then, without end: the endpoint
    /// closes the connection once its time for a request is up. Each byte reset the timeout of
    /// one read only, so such a client held a connection thread (of 16) for as long as it liked,
    /// and 16 of them stopped every scrape.
    #[test]
    fn a_request_that_never_ends_is_closed_when_its_time_is_up() {
        let m = Arc::new(NodeMetrics::new(NodeId(1), 1));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (stream, _) = listener.accept().unwrap();
        let served = std::thread::spawn(move || answer(stream, &m, Duration::from_millis(300)));
        client.write_all(b"GET /metrics HTTP/1.1\r\n").unwrap();
        let (lock, wait) = (std::sync::Mutex::new(()), std::sync::Condvar::new());
        // The test's own guard against a hang, far beyond the endpoint's time.
        let give_up = crate::runtime::clock::now() + Duration::from_secs(60);
        let closed = loop {
            if client.write_all(b"x").is_err() {
                break true;
            }
            if crate::runtime::clock::now() > give_up {
                break false;
            }
            let guard = lock.lock().unwrap();
            let _ = wait.wait_timeout(guard, Duration::from_millis(20)).unwrap();
        };
        assert!(closed, "the endpoint still reads a request that began a minute ago");
        served.join().unwrap();
    }

    /// A client that takes its answer slowly (a large one: a node of many logs) is closed
    /// once its time for a request is up, as one that sends its request slowly is. Only each
    /// write waited at most that long, so a client that read a little now and then held a
    /// connection thread (of 16) for as long as the answer lasted, hours for a node of 1,024
    /// logs read a few hundred bytes a second, and 16 of them stopped every scrape.
    #[test]
    fn an_answer_taken_slowly_is_closed_when_its_time_is_up() {
        // The largest `log_count` a node takes: an answer of megabytes, more than the socket
        // buffers of both ends hold.
        let m = NodeMetrics::new(NodeId(1), 1024);
        assert!(m.render().len() > 4 << 20, "an answer the buffers hold");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        client.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let (stream, _) = listener.accept().unwrap();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let served = std::thread::spawn(move || {
            answer(stream, &m, Duration::from_millis(300));
            let _ = done_tx.send(());
        });
        client.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
        // Reads 16 KiB every 20 ms (800 KiB/s): each of the endpoint's writes goes on well
        // within its time, the whole answer would take several seconds.
        let (lock, wait) = (std::sync::Mutex::new(()), std::sync::Condvar::new());
        let started = crate::runtime::clock::now();
        let mut buf = vec![0u8; 16 << 10];
        let finished = loop {
            if done_rx.try_recv().is_ok() {
                break true;
            }
            // Far beyond the endpoint's time: a failure, not a hang of the test.
            if crate::runtime::clock::now() - started > Duration::from_secs(3) {
                break false;
            }
            if matches!(std::io::Read::read(&mut client, &mut buf), Ok(0) | Err(_)) {
                break done_rx.recv_timeout(Duration::from_secs(3)).is_ok();
            }
            let guard = lock.lock().unwrap();
            let _ = wait.wait_timeout(guard, Duration::from_millis(20)).unwrap();
        };
        drop(client);
        served.join().unwrap();
        assert!(finished, "the endpoint still writes an answer begun 3 s ago (its time: 300 ms)");
    }

    #[test]
    fn served_over_http() {
        let m = Arc::new(NodeMetrics::new(NodeId(1), 1));
        let server = serve("127.0.0.1:0".parse().unwrap(), m).unwrap();
        let addr = server.local_addr();
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut body = String::new();
        std::io::Read::read_to_string(&mut s, &mut body).unwrap();
        assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
        assert!(body.contains("raftwal_term{node=\"1\",log=\"0\"} 0"), "{body}");
    }
}
