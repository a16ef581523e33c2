//! The `transport` benchmark: raftwal's QUIC transport against raw quinn on loopback.
//!
//! Throughput: one sender streams AppendEntries of 1 KiB entries (64 per frame by default) to
//! one receiver, each on its own thread with a current-thread tokio runtime, as shards run. The
//! sender pushes until its window is full and waits for the transport's `Writable` event; the
//! receiver takes every message from its event channel (decoded, entries sliced out of the
//! frame) and counts the entries. `raw-quinn` is measured in the same run with the same TLS
//! (mutual, same certificates, same provider) and the same QUIC parameters: one stream writing
//! 1 MiB buffers, the receiver reading chunks and counting bytes. MB/s counts payload bytes
//! (10^6 bytes per MB) from the sender's start to the receiver's last byte; phases alternate
//! and the medians of the runs are reported.
//!
//! The bytes sent: both systems send slices of one 64 MiB source buffer, in order, wrapping
//! around, so that what is sent is not in the CPU's caches when it is sent, as with a real
//! replication stream, whose entries arrived from clients moments or minutes before. The
//! source is larger than the last-level cache and than everything quinn may buffer (its send
//! window). `raw-quinn-hot` is the same raw stream writing one 1 MiB buffer again and again: its
//! bytes stay in the sender's L2 cache, which makes quinn's copy into packets cheaper than any
//! stream of distinct data can have it. It is reported as an upper bound, not as the reference:
//! on this machine it runs about a fifth faster than raw quinn sending distinct data
//! (docs/benchmarks.md).
//!
//! Latency: the round trip of a small request/response on an idle connection: a Heartbeat and
//! its HeartbeatResponse between two transports (`raftwal`), a Status request and its answer
//! over the client protocol (`raftwal-client`), and an 8-byte echo on one quinn stream
//! (`raw-quinn`).

// A benchmark reads the clock: that is what it is for.
#![allow(clippy::disallowed_methods)]

use crate::report::{latency_histogram_ns, Format, LatencyUs, Progress, Report, ResultRow};
use bytes::Bytes;
use raftwal_wire::client::{ClientRequest, ClientResponse, LogStatus, Role, StatusRequest};
use raftwal_wire::codec::FrameLimits;
use raftwal_wire::message::{AppendEntries, Heartbeat, HeartbeatResponse, Message, MessageBody};
use raftwal_wire::tls::certs::ClusterCa;
use raftwal_wire::tls::names::node_name;
use raftwal_wire::tls::TlsIdentity;
use raftwal_wire::transport::{
    client_config, open_endpoint, server_config, ClientEndpoint, QuicTuning, SendError, Transport,
    TransportConfig, TransportEvent, TransportEvents,
};
use raftwal_wire::types::{Entry, EntryKind, LogId, LogIndex, NodeId, Term};
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Arguments of `raftwal-bench transport`.
#[derive(Debug, clap::Args)]
pub(crate) struct TransportArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Seconds of streaming per system and run.
    #[arg(long, default_value_t = 3)]
    duration_s: u64,
    /// Streaming runs per system (phases alternate raw-quinn, raw-quinn-hot, raftwal, ...).
    #[arg(long, default_value_t = 3)]
    runs: u32,
    /// Payload bytes per entry.
    #[arg(long, default_value_t = 1024)]
    entry_bytes: usize,
    /// Entries per AppendEntries frame.
    #[arg(long, default_value_t = 64)]
    entries_per_frame: u64,
    /// Round trips measured per system (after 10% as warm-up).
    #[arg(long, default_value_t = 5000)]
    rtt_samples: u64,
}

const RAW_ALPN: &[u8] = b"raftwal-bench-raw/1";
const RAW_BUFFER_BYTES: usize = 1024 * 1024;
/// The source both systems send slices of: larger than the L3 cache (32 MiB here) and than the
/// bytes quinn may hold unacknowledged (`QuicTuning::send_window_bytes`, 16 MiB).
const SOURCE_BYTES: usize = 64 * 1024 * 1024;
const MEASURED_LOG: LogId = LogId(1);

struct Identities {
    node1: TlsIdentity,
    node2: TlsIdentity,
    client: TlsIdentity,
}

fn identities() -> Result<Identities, String> {
    let ca = ClusterCa::generate(None).map_err(|e| e.to_string())?;
    let load = |cert: raftwal_wire::tls::IssuedCert| {
        TlsIdentity::from_pem(ca.cluster(), ca.cert_pem(), &cert.cert_pem, &cert.key_pem)
            .map_err(|e| e.to_string())
    };
    Ok(Identities {
        node1: load(ca.issue_node(NodeId(1)).map_err(|e| e.to_string())?)?,
        node2: load(ca.issue_node(NodeId(2)).map_err(|e| e.to_string())?)?,
        client: load(ca.issue_client().map_err(|e| e.to_string())?)?,
    })
}

/// Runs `make()`'s future on a new thread with its own current-thread runtime, as a shard does.
fn on_thread<F, T>(
    make: impl FnOnce() -> F + Send + 'static,
) -> std::thread::JoinHandle<Result<T, String>>
where
    F: Future<Output = Result<T, String>>,
    T: Send + 'static,
{
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(make())
    })
}

fn join<T>(handle: std::thread::JoinHandle<Result<T, String>>) -> Result<T, String> {
    handle.join().map_err(|_| "benchmark thread panicked".to_string())?
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

async fn wait_connected(events: &mut TransportEvents, peer: NodeId) -> Result<(), String> {
    loop {
        match events.recv().await {
            Some(TransportEvent::PeerConnected(p)) if p == peer => return Ok(()),
            Some(_) => {}
            None => return Err("transport closed".into()),
        }
    }
}

/// Starts the receiving node 2 on its own thread; returns its address and the join handle.
/// `serve` runs the receiver's loop once node 2 is up.
fn spawn_node2<T: Send + 'static, F: Future<Output = Result<T, String>>>(
    identity: TlsIdentity,
    serve: impl FnOnce(Transport, TransportEvents) -> F + Send + 'static,
) -> Result<(SocketAddr, std::thread::JoinHandle<Result<T, String>>), String> {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let handle = on_thread(move || async move {
        let (t2, e2) = Transport::bind(TransportConfig::new(NodeId(2), loopback()), &identity)
            .map_err(|e| e.to_string())?;
        let _ = addr_tx.send(t2.local_addr().map_err(|e| e.to_string()));
        let result = serve(t2.clone(), e2).await;
        t2.close();
        t2.wait_idle().await;
        result
    });
    let addr = addr_rx.recv().map_err(|_| "receiver thread failed to start".to_string())??;
    Ok((addr, handle))
}

struct StreamResult {
    payload_bytes: u64,
    entries: u64,
    seconds: f64,
}

/// Distinct bytes to send, handed out as consecutive slices of one buffer (zero-copy).
struct Source {
    data: Bytes,
    offset: usize,
}

impl Source {
    fn new() -> Source {
        // A xorshift stream: every slice differs from its neighbours.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut data = Vec::with_capacity(SOURCE_BYTES);
        while data.len() < SOURCE_BYTES {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            data.extend_from_slice(&state.to_le_bytes());
        }
        Source { data: Bytes::from(data), offset: 0 }
    }

    /// The next `size_bytes` of the source (at most its size), wrapping to its start.
    fn next(&mut self, size_bytes: usize) -> Bytes {
        if self.offset + size_bytes > self.data.len() {
            self.offset = 0;
        }
        let slice = self.data.slice(self.offset..self.offset + size_bytes);
        self.offset += size_bytes;
        slice
    }
}

fn make_append(prev: u64, source: &mut Source, entry_bytes: usize, count: u64) -> Message {
    Message {
        log: MEASURED_LOG,
        from: NodeId(1),
        to: NodeId(2),
        term: Term(1),
        body: MessageBody::AppendEntries(AppendEntries {
            prev_log_index: LogIndex(prev),
            prev_log_term: Term(1),
            leader_commit: LogIndex(prev),
            entries: (0..count)
                .map(|i| Entry {
                    index: LogIndex(prev + 1 + i),
                    term: Term(1),
                    kind: EntryKind::Normal,
                    data: source.next(entry_bytes),
                })
                .collect(),
        }),
    }
}

fn stream_raftwal(ids: &Identities, args: &TransportArgs) -> Result<StreamResult, String> {
    let (target_tx, target_rx) = oneshot::channel::<u64>();
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let (addr2, receiver) = spawn_node2(ids.node2.clone(), move |_t2, mut e2| async move {
        let mut target_rx = target_rx;
        let mut target = None;
        let mut received = 0u64;
        loop {
            if target.is_some_and(|t| received >= t) {
                let end = Instant::now();
                let _ = done_tx.send(());
                return Ok(end);
            }
            tokio::select! {
                event = e2.recv() => match event {
                    Some(TransportEvent::Message(m)) => {
                        if let MessageBody::AppendEntries(a) = &m.message.body {
                            received += a.entries.len() as u64;
                        }
                    }
                    Some(_) => {}
                    None => return Err("receiver transport closed".into()),
                },
                t = &mut target_rx, if target.is_none() => {
                    target = Some(t.map_err(|_| "sender gave no total".to_string())?);
                }
            }
        }
    })?;
    let identity = ids.node1.clone();
    let duration = Duration::from_secs(args.duration_s);
    let (entry_bytes, per_frame) = (args.entry_bytes, args.entries_per_frame);
    let sender = on_thread(move || async move {
        let (t1, mut e1) = Transport::bind(TransportConfig::new(NodeId(1), loopback()), &identity)
            .map_err(|e| e.to_string())?;
        t1.add_peer(NodeId(2), addr2);
        wait_connected(&mut e1, NodeId(2)).await?;
        let mut source = Source::new();
        let start = Instant::now();
        let mut prev = 0u64;
        while start.elapsed() < duration {
            match t1.send(&make_append(prev, &mut source, entry_bytes, per_frame)) {
                Ok(()) => prev += per_frame,
                Err(SendError::WindowFull(_)) => loop {
                    match e1.recv().await {
                        Some(TransportEvent::Writable(_)) => break,
                        Some(_) => {}
                        None => return Err("sender transport closed".into()),
                    }
                },
                Err(e) => return Err(format!("send failed: {e}")),
            }
        }
        let _ = target_tx.send(prev);
        // This runtime drives the writer tasks: keep it running until everything arrived.
        done_rx.await.map_err(|_| "receiver failed".to_string())?;
        t1.close();
        t1.wait_idle().await;
        Ok((start, prev))
    });
    let (start, sent) = join(sender)?;
    let end = join(receiver)?;
    Ok(StreamResult {
        payload_bytes: sent * entry_bytes as u64,
        entries: sent,
        seconds: end.duration_since(start).as_secs_f64(),
    })
}

/// What the raw stream writes.
#[derive(Clone, Copy, Debug)]
enum RawData {
    /// Consecutive 1 MiB slices of the 64 MiB source.
    Distinct,
    /// One 1 MiB buffer, again and again (cache-hot).
    Hot,
}

fn stream_raw(
    ids: &Identities,
    args: &TransportArgs,
    data: RawData,
) -> Result<StreamResult, String> {
    let tuning = QuicTuning::default();
    let server = server_config(&ids.node2, &[RAW_ALPN], &tuning).map_err(|e| e.to_string())?;
    let client = client_config(&ids.node1, RAW_ALPN, &tuning).map_err(|e| e.to_string())?;
    let name = node_name(ids.node2.cluster(), NodeId(2));
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let receiver = on_thread(move || async move {
        let endpoint = open_endpoint(loopback(), Some(server), &QuicTuning::default())
            .map_err(|e| e.to_string())?;
        let _ = addr_tx.send(endpoint.local_addr().map_err(|e| e.to_string()));
        let incoming = endpoint.accept().await.ok_or("endpoint closed")?;
        let connection = incoming.await.map_err(|e| e.to_string())?;
        let mut stream = connection.accept_uni().await.map_err(|e| e.to_string())?;
        let mut received = 0u64;
        while let Some(chunk) =
            stream.read_chunk(usize::MAX, true).await.map_err(|e| e.to_string())?
        {
            received += chunk.bytes.len() as u64;
        }
        let end = Instant::now();
        connection.close(0u32.into(), b"done");
        endpoint.wait_idle().await;
        Ok((end, received))
    });
    let addr = addr_rx.recv().map_err(|_| "receiver thread failed to start".to_string())??;
    let duration = Duration::from_secs(args.duration_s);
    let sender = on_thread(move || async move {
        let endpoint =
            open_endpoint(loopback(), None, &QuicTuning::default()).map_err(|e| e.to_string())?;
        let connection = endpoint
            .connect_with(client, addr, &name)
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
        let mut stream = connection.open_uni().await.map_err(|e| e.to_string())?;
        let mut source = Source::new();
        let hot = source.next(RAW_BUFFER_BYTES);
        let start = Instant::now();
        let mut sent = 0u64;
        while start.elapsed() < duration {
            let buffer = match data {
                RawData::Distinct => source.next(RAW_BUFFER_BYTES),
                RawData::Hot => hot.clone(),
            };
            stream.write_chunk(buffer).await.map_err(|e| e.to_string())?;
            sent += RAW_BUFFER_BYTES as u64;
        }
        stream.finish().map_err(|e| e.to_string())?;
        // Wait for the receiver to have everything before the connection goes away.
        let _ = connection.closed().await;
        Ok((start, sent))
    });
    let (start, sent) = join(sender)?;
    let (end, received) = join(receiver)?;
    if received != sent {
        return Err(format!("raw-quinn receiver got {received} of {sent} bytes"));
    }
    Ok(StreamResult {
        payload_bytes: sent,
        entries: sent / args.entry_bytes as u64,
        seconds: end.duration_since(start).as_secs_f64(),
    })
}

/// Heartbeat -> HeartbeatResponse between two transports on two threads.
fn rtt_raftwal_peer(
    ids: &Identities,
    samples: u64,
) -> Result<hdrhistogram::Histogram<u64>, String> {
    let (addr2, responder) = spawn_node2(ids.node2.clone(), |t2, mut e2| async move {
        while let Some(event) = e2.recv().await {
            if let TransportEvent::PeerDisconnected(_) = event {
                // The pinger is done and closed its transport.
                return Ok(());
            }
            if let TransportEvent::Message(m) = event {
                let m = m.into_message();
                if let MessageBody::Heartbeat(h) = m.body {
                    let reply = Message {
                        log: m.log,
                        from: NodeId(2),
                        to: NodeId(1),
                        term: m.term,
                        body: MessageBody::HeartbeatResponse(HeartbeatResponse {
                            read_context: h.read_context,
                        }),
                    };
                    t2.send(&reply).map_err(|e| e.to_string())?;
                }
            }
        }
        Err("responder transport closed".into())
    })?;
    let identity = ids.node1.clone();
    let pinger = on_thread(move || async move {
        let (t1, mut e1) = Transport::bind(TransportConfig::new(NodeId(1), loopback()), &identity)
            .map_err(|e| e.to_string())?;
        t1.add_peer(NodeId(2), addr2);
        wait_connected(&mut e1, NodeId(2)).await?;
        let mut histogram = latency_histogram_ns();
        let warmup = samples / 10;
        let heartbeat = |context: u64| Message {
            log: MEASURED_LOG,
            from: NodeId(1),
            to: NodeId(2),
            term: Term(1),
            body: MessageBody::Heartbeat(Heartbeat {
                leader_commit: LogIndex(0),
                read_context: Some(context),
            }),
        };
        for i in 0..warmup + samples {
            let start = Instant::now();
            t1.send(&heartbeat(i)).map_err(|e| e.to_string())?;
            loop {
                match e1.recv().await {
                    Some(TransportEvent::Message(m)) => {
                        if matches!(m.message.body, MessageBody::HeartbeatResponse(r) if r.read_context == Some(i))
                        {
                            break;
                        }
                    }
                    Some(_) => {}
                    None => return Err("pinger transport closed".into()),
                }
            }
            if i >= warmup {
                let _ = histogram.record(start.elapsed().as_nanos() as u64);
            }
        }
        t1.close();
        t1.wait_idle().await;
        Ok(histogram)
    });
    let histogram = join(pinger)?;
    join(responder)?;
    Ok(histogram)
}

/// Status request -> answer over the client protocol.
fn rtt_raftwal_client(
    ids: &Identities,
    samples: u64,
) -> Result<hdrhistogram::Histogram<u64>, String> {
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (addr2, server) = spawn_node2(ids.node2.clone(), move |_t2, mut e2| async move {
        let mut stop_rx = stop_rx;
        loop {
            tokio::select! {
                event = e2.recv() => match event {
                    Some(TransportEvent::ClientRequest(r)) => {
                        let status = LogStatus {
                            log: r.request.log(),
                            node: NodeId(2),
                            role: Role::Leader,
                            term: Term(1),
                            leader: None,
                            first_index: LogIndex(1),
                            last_index: LogIndex(1),
                            commit_index: LogIndex(1),
                        };
                        r.responder.respond(&ClientResponse::Status(status)).map_err(|e| e.to_string())?;
                    }
                    Some(_) => {}
                    None => return Err("server transport closed".into()),
                },
                _ = &mut stop_rx => return Ok(()),
            }
        }
    })?;
    let identity = ids.client.clone();
    let client = on_thread(move || async move {
        let endpoint = ClientEndpoint::open(
            &identity,
            loopback(),
            &QuicTuning::default(),
            FrameLimits::default(),
        )
        .map_err(|e| e.to_string())?;
        let connection = endpoint.connect(addr2).await.map_err(|e| e.to_string())?;
        let request = ClientRequest::Status(StatusRequest { log: MEASURED_LOG });
        let mut histogram = latency_histogram_ns();
        let warmup = samples / 10;
        for i in 0..warmup + samples {
            let start = Instant::now();
            match connection.request(&request).await.map_err(|e| e.to_string())? {
                ClientResponse::Status(_) => {}
                other => return Err(format!("unexpected answer {other:?}")),
            }
            if i >= warmup {
                let _ = histogram.record(start.elapsed().as_nanos() as u64);
            }
        }
        endpoint.close();
        Ok(histogram)
    });
    let histogram = join(client);
    let _ = stop_tx.send(());
    join(server)?;
    histogram
}

/// 8-byte echo on one quinn bidirectional stream.
fn rtt_raw(ids: &Identities, samples: u64) -> Result<hdrhistogram::Histogram<u64>, String> {
    let tuning = QuicTuning::default();
    let server = server_config(&ids.node2, &[RAW_ALPN], &tuning).map_err(|e| e.to_string())?;
    let client = client_config(&ids.node1, RAW_ALPN, &tuning).map_err(|e| e.to_string())?;
    let name = node_name(ids.node2.cluster(), NodeId(2));
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let echo = on_thread(move || async move {
        let endpoint = open_endpoint(loopback(), Some(server), &QuicTuning::default())
            .map_err(|e| e.to_string())?;
        let _ = addr_tx.send(endpoint.local_addr().map_err(|e| e.to_string()));
        let connection =
            endpoint.accept().await.ok_or("endpoint closed")?.await.map_err(|e| e.to_string())?;
        let (mut send, mut recv) = connection.accept_bi().await.map_err(|e| e.to_string())?;
        let mut buf = [0u8; 8];
        while recv.read_exact(&mut buf).await.is_ok() {
            send.write_all(&buf).await.map_err(|e| e.to_string())?;
        }
        endpoint.wait_idle().await;
        Ok(())
    });
    let addr = addr_rx.recv().map_err(|_| "echo thread failed to start".to_string())??;
    let pinger = on_thread(move || async move {
        let endpoint =
            open_endpoint(loopback(), None, &QuicTuning::default()).map_err(|e| e.to_string())?;
        let connection = endpoint
            .connect_with(client, addr, &name)
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
        let (mut send, mut recv) = connection.open_bi().await.map_err(|e| e.to_string())?;
        let mut histogram = latency_histogram_ns();
        let warmup = samples / 10;
        let mut buf = [0u8; 8];
        for i in 0..warmup + samples {
            let start = Instant::now();
            send.write_all(&i.to_le_bytes()).await.map_err(|e| e.to_string())?;
            recv.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
            if i >= warmup {
                let _ = histogram.record(start.elapsed().as_nanos() as u64);
            }
        }
        send.finish().map_err(|e| e.to_string())?;
        connection.close(0u32.into(), b"done");
        endpoint.wait_idle().await;
        Ok(histogram)
    });
    let histogram = join(pinger)?;
    join(echo)?;
    Ok(histogram)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Runs the benchmark and prints its report.
pub(crate) fn run(args: &TransportArgs) -> Result<(), String> {
    if args.runs == 0 || args.duration_s == 0 || args.entries_per_frame == 0 {
        return Err("runs, duration and entries per frame must be positive".into());
    }
    // At most a quarter of the source, so that consecutive entries are distinct bytes.
    if args.entry_bytes == 0 || args.entry_bytes > SOURCE_BYTES / 4 {
        return Err(format!("entry bytes must be between 1 and {}", SOURCE_BYTES / 4));
    }
    let ids = identities()?;
    let mut progress = Progress::default();
    let mut raw_mb = Vec::new();
    let mut raw_entries = Vec::new();
    let mut hot_mb = Vec::new();
    let mut hot_entries = Vec::new();
    let mut rw_mb = Vec::new();
    let mut rw_entries = Vec::new();
    for run in 1..=args.runs {
        progress.set(&format!("transport: streaming run {run}/{}: raw-quinn", args.runs));
        let raw = stream_raw(&ids, args, RawData::Distinct)?;
        raw_mb.push(raw.payload_bytes as f64 / 1e6 / raw.seconds);
        raw_entries.push(raw.entries as f64 / raw.seconds);
        progress.set(&format!("transport: streaming run {run}/{}: raw-quinn-hot", args.runs));
        let hot = stream_raw(&ids, args, RawData::Hot)?;
        hot_mb.push(hot.payload_bytes as f64 / 1e6 / hot.seconds);
        hot_entries.push(hot.entries as f64 / hot.seconds);
        progress.set(&format!("transport: streaming run {run}/{}: raftwal", args.runs));
        let rw = stream_raftwal(&ids, args)?;
        rw_mb.push(rw.payload_bytes as f64 / 1e6 / rw.seconds);
        rw_entries.push(rw.entries as f64 / rw.seconds);
    }
    progress.set("transport: round trips: raw-quinn");
    let raw_rtt = rtt_raw(&ids, args.rtt_samples)?;
    progress.set("transport: round trips: raftwal peer");
    let peer_rtt = rtt_raftwal_peer(&ids, args.rtt_samples)?;
    progress.set("transport: round trips: raftwal client");
    let client_rtt = rtt_raftwal_client(&ids, args.rtt_samples)?;
    progress.finish();

    let raw_mb_median = median(&mut raw_mb.clone());
    let hot_mb_median = median(&mut hot_mb.clone());
    let rw_mb_median = median(&mut rw_mb.clone());
    let row = |system: &str, mb: f64, entries: f64, rtt: &hdrhistogram::Histogram<u64>| ResultRow {
        system: system.to_owned(),
        payload_bytes: args.entry_bytes as u64,
        concurrency: 1,
        entries_per_s: entries,
        mb_per_s: mb,
        latency_us: LatencyUs::from_histogram_ns(rtt),
        extra: serde_json::Map::new(),
    };
    let mut report = Report::new("transport");
    report.results.push(
        row("raw-quinn", raw_mb_median, median(&mut raw_entries.clone()), &raw_rtt)
            .with(
                "workload",
                "1 stream of 1 MiB writes of distinct data; rtt: 8-byte echo on one stream",
            )
            .with("runs_mb_per_s", raw_mb),
    );
    report.results.push(
        row("raw-quinn-hot", hot_mb_median, median(&mut hot_entries.clone()), &raw_rtt)
            .with(
                "workload",
                "1 stream writing one cache-hot 1 MiB buffer again and again (upper bound); \
                 rtt: as raw-quinn",
            )
            .with("runs_mb_per_s", hot_mb),
    );
    report.results.push(
        row("raftwal", rw_mb_median, median(&mut rw_entries.clone()), &peer_rtt)
            .with("workload", "AppendEntries stream; rtt: Heartbeat/HeartbeatResponse")
            .with("entries_per_frame", args.entries_per_frame)
            .with("ratio_to_raw_mb_per_s", rw_mb_median / raw_mb_median)
            .with("ratio_to_raw_hot_mb_per_s", rw_mb_median / hot_mb_median)
            .with("runs_mb_per_s", rw_mb),
    );
    report.results.push(
        row("raftwal-client", 0.0, 0.0, &client_rtt)
            .with("workload", "rtt only: Status request/answer (throughput not measured)"),
    );
    report.print(args.format).map_err(|e| e.to_string())
}
