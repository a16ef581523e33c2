//! One shard: a thread that owns some logs' replicas, one io_uring ring and one QUIC endpoint,
//! and runs them all from one event loop.
//!
//! Owns: the shard's current-thread tokio runtime, its [`UringDisk`] (shared by its logs' stores),
//! its [`Transport`], its replicas, and the routing of traffic for logs it does not own to the
//! shard that does.
//! Must not: share state with other shards (they talk through [`Command`]s over crossbeam
//! channels), or block the loop except in the storage's documented synchronous operations.
//!
//! The loop waits on four things at once and, whichever wakes it, takes everything that is ready
//! from all of them before driving the replicas, so that every proposal, message and completion
//! that arrived together is handled as one batch (one Ready, one storage batch, one send per
//! peer):
//! - the ring's eventfd, registered with the runtime (`AsyncFd`): disk completions;
//! - the transport's events: peer messages, client requests and subscriptions;
//! - the command channel's wake-up: the embedding API and traffic forwarded by other shards;
//! - the consensus clock's tick.
//!
//! Invariant: every replica is driven after every batch of inputs, so no Ready is left undrained
//! while the loop sleeps.
//!
//! The loop ends when the node tells the shard to stop ([`Command::Shutdown`]). A thread that
//! ends otherwise once its shard serves (a panic, or the loop ending on its own) is a failure
//! of the node: the thread logs it and reports it in the node's [`FailureSlot`] on its way out.

use crate::config::NodeConfig;
use crate::error::{
    AppendError, CompactError, ReadError, ReadIndexError, ShardFailure, StartError, StatusError,
    TransferError,
};
use crate::metrics::NodeMetrics;
use crate::raft::{Config as RaftConfig, RaftCore};
use crate::runtime::clock;
use crate::runtime::command::{Command, ShardHandle, ShardInbox};
use crate::runtime::disk_wake::DiskWake;
use crate::runtime::failure::{panic_message, FailureSlot};
use crate::runtime::read_index::ReadIndexReply;
use crate::runtime::replica::Replica;
use crate::runtime::source::StoreSource;
use crate::runtime::subscribers::RoomWaker;
use crate::runtime::waiters::AppendReply;
use crate::storage::{LogOptions, LogStore, UringDisk, UringOptions};
use raftwal_wire::client::{ClientError, ClientResponse, ErrorCode};
use raftwal_wire::codec::FrameLimits;
use raftwal_wire::message::Message;
use raftwal_wire::tls::TlsIdentity;
use raftwal_wire::transport::{
    ClientLimits, ClientRequestEvent, SubscribeEvent, Transport, TransportConfig, TransportEvent,
    TransportEvents,
};
use raftwal_wire::types::{ClusterId, LogId};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

/// Events or commands taken per loop turn before the replicas are driven (a bound on latency
/// for the rest when a flood arrives).
const DRAIN_MAX: usize = 4096;

/// Why a shard stopped opening its logs: another shard had failed to start (never the error a
/// failed start reports, which is that shard's own).
pub(crate) const START_ABANDONED: &str = "start abandoned: another shard failed to start";

/// Everything a shard thread needs to start.
#[derive(Debug)]
pub(crate) struct ShardContext {
    pub(crate) index: usize,
    pub(crate) config: Arc<NodeConfig>,
    pub(crate) identity: TlsIdentity,
    pub(crate) cluster: ClusterId,
    pub(crate) inbox: ShardInbox,
    pub(crate) shards: Vec<ShardHandle>,
    pub(crate) metrics: Arc<NodeMetrics>,
    /// The node's client limits, shared by every shard's transport.
    pub(crate) client_limits: ClientLimits,
    /// Set by the node when another shard failed to start: this one stops opening logs (a
    /// node with hundreds of logs would otherwise open them all before it could exit).
    pub(crate) start_abandoned: Arc<AtomicBool>,
    /// Where this thread reports that it ended without being told to stop.
    pub(crate) failures: Arc<FailureSlot>,
}

/// What woke the loop.
enum Wake {
    Disk,
    Event(Option<TransportEvent>),
    Commands,
    Tick,
    Room(Option<(LogId, u64)>),
}

#[derive(Debug)]
struct Shard {
    disk_wake: DiskWake,
    index: usize,
    config: Arc<NodeConfig>,
    replicas: BTreeMap<LogId, Replica<UringDisk>>,
    transport: Transport,
    events: TransportEvents,
    inbox: ShardInbox,
    shards: Vec<ShardHandle>,
    room_tx: RoomWaker,
    room_rx: mpsc::UnboundedReceiver<(LogId, u64)>,
    stopping: bool,
    /// The node told this shard to stop ([`Command::Shutdown`]).
    told_to_stop: bool,
    /// Why the loop ended without being told to stop, if it did.
    ended: Option<String>,
    /// Handing leadership over before stopping: when it started and until when it may last.
    handover: Option<(Instant, Instant)>,
}

/// The body of a shard thread: opens the shard, reports its address (or why it could not start)
/// on `started`, and runs until told to shut down. If, once the shard serves, the thread panics
/// or the loop ends without being told to, logs it and reports it in `context.failures`: the
/// node goes on without this shard's logs, and only the embedding program can end it.
pub(crate) fn run(
    context: ShardContext,
    started: std::sync::mpsc::Sender<Result<SocketAddr, StartError>>,
) {
    let index = context.index;
    let node = context.config.id;
    let failures = context.failures.clone();
    let serving = Cell::new(false);
    // The shard's state is dropped as the panic unwinds, and nothing of it is used afterwards:
    // only the message is kept.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        serve(context, started, &serving)
    }));
    let failure = match outcome {
        Ok(None) => return,
        Ok(Some(reason)) => ShardFailure::Ended { node, shard: index, reason },
        Err(payload) if serving.get() => {
            ShardFailure::Panicked { node, shard: index, message: panic_message(payload.as_ref()) }
        }
        Err(payload) => {
            // The start reports that this thread exited; the message is here.
            let message = panic_message(payload.as_ref());
            error!(node = %node, shard = index, "shard {index} panicked while starting: {message}");
            return;
        }
    };
    error!(node = %node, shard = index, "{failure}");
    failures.report(failure);
}

/// [`run`] until the panic catch: sets `serving` once the shard reported its address, and
/// returns why the loop ended if it was not told to stop.
fn serve(
    context: ShardContext,
    started: std::sync::mpsc::Sender<Result<SocketAddr, StartError>>,
    serving: &Cell<bool>,
) -> Option<String> {
    let index = context.index;
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = started.send(Err(StartError::Shard { shard: index, message: e.to_string() }));
            return None;
        }
    };
    runtime.block_on(async move {
        let mut shard = match Shard::open(context) {
            Ok(shard) => shard,
            Err(e) => {
                let _ = started.send(Err(e));
                return None;
            }
        };
        let addr = shard
            .transport
            .local_addr()
            .unwrap_or(NodeConfig::shard_addr(shard.config.listen, shard.index));
        let _ = started.send(Ok(addr));
        // Dropped now, not held for the shard's whole run: a start waits for every shard's
        // report or the end of all senders, so a shard whose thread dies while opening (its
        // sender dropped in the unwinding) must not leave the start waiting on this one.
        drop(started);
        serving.set(true);
        shard.run().await;
        shard.shut_down().await;
        shard.ended.take()
    })
}

impl Shard {
    fn open(context: ShardContext) -> Result<Shard, StartError> {
        let ShardContext {
            index,
            config,
            identity,
            cluster,
            inbox,
            shards,
            metrics,
            client_limits,
            start_abandoned,
            failures: _,
        } = context;
        let shard_error = |message: String| StartError::Shard { shard: index, message };
        let disk = UringDisk::new(UringOptions {
            fsync_mode: config.storage.fsync.mode(),
            ..UringOptions::default()
        })
        .map_err(|e| shard_error(format!("cannot create the io_uring ring: {e}")))?;
        let disk = Rc::new(disk);
        let disk_wake = DiskWake::register(disk.clone())
            .map_err(|e| shard_error(format!("cannot register the ring's eventfd: {e}")))?;

        let addr = NodeConfig::shard_addr(config.listen, index);
        let mut transport_config = TransportConfig::new(config.id, addr);
        transport_config.bulk_window_bytes = config.transport.bulk_window_bytes;
        transport_config.client_connection_memory_bytes =
            config.transport.client_connection_memory_bytes_max;
        transport_config.client_limits = client_limits;
        transport_config.entry_data_bytes_max = config.entry_data_bytes_max();
        transport_config.frame_limits = FrameLimits::new(config.transport.frame_size_bytes_max)
            .map_err(|e| shard_error(format!("transport.frame_size_bytes_max: {e}")))?;
        let (transport, events) = Transport::bind(transport_config, &identity)
            .map_err(|e| shard_error(format!("cannot listen on {addr}: {e}")))?;
        for peer in &config.peers {
            transport.add_peer(peer.id, NodeConfig::shard_addr(peer.addr, index));
        }

        let mut replicas = BTreeMap::new();
        for log in (0..config.log_count).map(LogId) {
            if config.shard_of(log) != index {
                continue;
            }
            if start_abandoned.load(Ordering::Relaxed) {
                return Err(shard_error(START_ABANDONED.into()));
            }
            let Some(log_metrics) = metrics.log(log).cloned() else {
                return Err(shard_error(format!("no metrics for log {log}")));
            };
            let dir = crate::node::log_dir(&config.data_dir, log);
            let options = LogOptions {
                segment_size_bytes: config.storage.segment_size_bytes,
                direct_io: config.storage.direct_io,
                batch_bytes_max: config.storage.batch_bytes_max,
                tail_cache_bytes_max: config.storage.tail_cache_bytes_max,
                zero_chunk_bytes: config.storage.zero_chunk_bytes,
                zero_fill: config.storage.zero_fill.policy(),
                batches_in_flight_max: config.storage.batches_in_flight,
                check_sealed_at_open: config.storage.check_sealed_at_open,
                sealed_segments_mapped_max: config.storage.sealed_segments_mapped_max,
                cluster_id: cluster,
                log_id: log,
                ..LogOptions::default()
            };
            // Recovery reads the last segment's records and the sealed segments' index files
            // (all their records where an index is missing or refused, or with
            // `check_sealed_at_open`): the line below says how long it took.
            let opening = crate::runtime::clock::now();
            let (store, recovery) = LogStore::open(&dir, options, disk.clone())
                .map_err(|source| StartError::Storage { log, dir: dir.clone(), source })?;
            let took = opening.elapsed();
            if recovery.torn_tail_bytes > 0 {
                warn!(
                    log = %log,
                    "cut a torn tail of {} bytes (a write not covered by a completed fsync)",
                    recovery.torn_tail_bytes
                );
            }
            info!(
                log = %log,
                "opened in {took:.1?}: entries {}..={} in {} segments ({} from their index), term {}, commit {}",
                recovery.first_index,
                recovery.last_index,
                recovery.segments,
                recovery.segments_indexed,
                recovery.hard_state.term,
                recovery.hard_state.commit
            );
            let mut raft = raft_config(&config, log);
            // A log that lost its data rejoins until it caught up (the marker outlives restarts).
            raft.rejoin = dir.join(crate::node::REJOIN_MARKER).exists();
            if raft.rejoin {
                warn!(log = %log, "rejoining: this node takes no vote until it caught up");
            }
            let core = RaftCore::restore(raft, recovery.hard_state, &StoreSource(&store))
                .map_err(|e| StartError::Restore { log, message: e.to_string() })?;
            let replica = Replica::new(config.clone(), core, store, transport.clone(), log_metrics);
            replicas.insert(log, replica);
        }
        let (room_tx, room_rx) = mpsc::unbounded_channel();
        Ok(Shard {
            disk_wake,
            index,
            config,
            replicas,
            transport,
            events,
            inbox,
            shards,
            room_tx,
            room_rx,
            stopping: false,
            told_to_stop: false,
            ended: None,
            handover: None,
        })
    }

    async fn run(&mut self) {
        let mut ticker = tokio::time::interval(self.config.tick());
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !self.stopping {
            let wake = tokio::select! {
                _ = self.disk_wake.ready() => Wake::Disk,
                event = self.events.recv() => Wake::Event(event),
                _ = self.inbox.wake.notified() => Wake::Commands,
                _ = ticker.tick() => Wake::Tick,
                room = self.room_rx.recv() => Wake::Room(room),
            };
            let now = clock::now();
            match wake {
                Wake::Disk | Wake::Commands => {}
                Wake::Event(Some(event)) => self.on_event(event, now),
                Wake::Event(None) => self.end_loop("its transport's events ended"),
                Wake::Tick => {
                    for replica in self.replicas.values_mut() {
                        replica.tick();
                    }
                }
                Wake::Room(Some((log, id))) => {
                    if let Some(replica) = self.replicas.get_mut(&log) {
                        replica.resume_subscriber(id, &self.room_tx);
                    }
                }
                Wake::Room(None) => {}
            }
            // Take everything else that is ready, so it joins this batch.
            for _ in 0..DRAIN_MAX {
                let Some(event) = self.events.try_recv() else { break };
                self.on_event(event, now);
            }
            for _ in 0..DRAIN_MAX {
                let Ok(command) = self.inbox.rx.try_recv() else { break };
                self.on_command(command, now);
            }
            // Before the replicas are driven, so that a transfer it starts leaves in this turn.
            if let Some((started, deadline)) = self.handover {
                self.check_handover(started, deadline, now);
            }
            let mut send_first = false;
            for replica in self.replicas.values_mut() {
                send_first |= replica.drive(&self.room_tx);
            }
            if send_first {
                // A leader's AppendEntries leave before its batch goes to the disk: the
                // transport's tasks run now, the submission after (see `Replica::drive`).
                tokio::task::yield_now().await;
            }
            for replica in self.replicas.values_mut() {
                replica.submit_to_disk();
            }
        }
    }

    /// Ends the loop, which the node may not have told to stop: then the shard stops as if
    /// told, and its thread logs and reports the failure with `reason` once it stopped.
    fn end_loop(&mut self, reason: &str) {
        if self.told_to_stop {
            warn!(shard = self.index, "{reason} while stopping; shard stops");
        } else {
            self.ended = Some(reason.to_owned());
        }
        self.stopping = true;
    }

    /// Starts stopping: at once, or once the logs this shard leads have another leader
    /// ([`Replica::hand_over`]).
    fn begin_stop(&mut self, hand_over: bool, now: Instant) {
        self.told_to_stop = true;
        if self.stopping {
            return;
        }
        if self.handover.is_some() {
            // A halt during a handover (a second signal to `raftwal serve`) stops at once.
            if !hand_over {
                warn!(shard = self.index, "stopping without waiting for the handover");
                self.handover = None;
                self.stopping = true;
            }
            return;
        }
        let mut handing_over = 0;
        if hand_over {
            for replica in self.replicas.values_mut() {
                handing_over += usize::from(replica.hand_over());
            }
        }
        if handing_over == 0 {
            self.stopping = true;
            return;
        }
        // The core abandons a transfer after an election timeout (the handover then tries the
        // next peer); a target's election and its first heartbeat take much less.
        let deadline = now + self.config.raft.election_timeout() * 2;
        info!(shard = self.index, logs = handing_over, "handing leadership over before stopping");
        self.handover = Some((now, deadline));
    }

    /// Moves the handover along (a log this shard leads again, or newly, is handed over in
    /// turn), and stops once no log this shard hands over is led here or waits to hear from its
    /// new leader, or once the handover's time is up.
    fn check_handover(&mut self, started: Instant, deadline: Instant, now: Instant) {
        let waiting: Vec<LogId> = self
            .replicas
            .iter_mut()
            .filter_map(|(log, replica)| replica.hand_over().then_some(*log))
            .collect();
        if waiting.is_empty() {
            let took = now.saturating_duration_since(started);
            info!(shard = self.index, "leadership handed over in {took:?}");
        } else if now >= deadline {
            warn!(
                shard = self.index,
                "leadership of logs {waiting:?} not handed over in time; stopping anyway"
            );
        } else {
            return;
        }
        self.handover = None;
        self.stopping = true;
    }

    /// Which shard owns `log`, if this node has it.
    fn owner(&self, log: LogId) -> Option<usize> {
        (log.get() < self.config.log_count).then(|| self.config.shard_of(log))
    }

    fn on_event(&mut self, event: TransportEvent, now: Instant) {
        match event {
            TransportEvent::Message(inbound) => self.on_peer_message(inbound.into_message(), true),
            TransportEvent::PeerDisconnected(peer) => {
                for replica in self.replicas.values_mut() {
                    replica.peer_down(peer);
                }
            }
            // A peer back or a window drained: the next heartbeat answer resumes replication.
            TransportEvent::PeerConnected(_) | TransportEvent::Writable(_) => {}
            TransportEvent::ClientRequest(event) => self.on_client_request(event, now, true),
            TransportEvent::Subscribe(event) => self.on_subscribe(event, true),
        }
    }

    fn forward(&self, shard: usize, command: Command) {
        if let Some(handle) = self.shards.get(shard) {
            // A stopped shard drops what it is sent; Raft and clients retry.
            let _ = handle.send(command);
        }
    }

    fn on_peer_message(&mut self, message: Message, may_forward: bool) {
        match self.owner(message.log) {
            Some(shard) if shard == self.index => {
                if let Some(replica) = self.replicas.get_mut(&message.log) {
                    replica.step(message);
                }
            }
            Some(shard) if may_forward => self.forward(shard, Command::Peer(message)),
            _ => warn!(
                shard = self.index,
                "dropped a message for log {} not on this shard", message.log
            ),
        }
    }

    fn on_client_request(&mut self, event: ClientRequestEvent, now: Instant, may_forward: bool) {
        let log = event.request.log();
        match self.owner(log) {
            Some(shard) if shard == self.index => {
                if let Some(replica) = self.replicas.get_mut(&log) {
                    replica.handle_client(event, now);
                }
            }
            Some(shard) if may_forward => self.forward(shard, Command::Client(event)),
            _ => {
                let response = ClientResponse::Error(ClientError {
                    code: ErrorCode::UnknownLog,
                    message: format!("this node has no log {log}"),
                });
                let _ = event.responder.respond(&response);
            }
        }
    }

    fn on_subscribe(&mut self, event: SubscribeEvent, may_forward: bool) {
        let log = event.request.log;
        match self.owner(log) {
            Some(shard) if shard == self.index => {
                if let Some(replica) = self.replicas.get_mut(&log) {
                    replica.subscribe_remote(event, &self.room_tx);
                }
            }
            Some(shard) if may_forward => self.forward(shard, Command::ClientSubscribe(event)),
            _ => event.sink.end(Some(ClientError {
                code: ErrorCode::UnknownLog,
                message: format!("this node has no log {log}"),
            })),
        }
    }

    fn on_command(&mut self, command: Command, now: Instant) {
        match command {
            Command::Append { reply, .. } if self.stopping => {
                // Not proposed: the replicas are not driven again, and a proposal now would be
                // answered `Interrupted` (it may commit) though it never reached the log.
                let _ = reply.send(Err(AppendError::ShuttingDown));
            }
            Command::Append { log, payloads, reply } => match self.replicas.get_mut(&log) {
                Some(replica) => replica.append_local(payloads, AppendReply::Local(reply), now),
                None => {
                    let _ = reply.send(Err(AppendError::UnknownLog(log)));
                }
            },
            Command::Read { log, from, limit, reply } => {
                let result = match self.replicas.get(&log) {
                    Some(replica) => replica.read_local(from, limit),
                    None => Err(ReadError::UnknownLog(log)),
                };
                let _ = reply.send(result);
            }
            Command::Subscribe { log, from, sink } => match self.replicas.get_mut(&log) {
                Some(replica) => replica.subscribe_local(sink, from, &self.room_tx),
                None => {
                    let _ = sink.tx.try_send(Err(ReadError::UnknownLog(log)));
                }
            },
            Command::ResumeSubscriber { log, id } => {
                if let Some(replica) = self.replicas.get_mut(&log) {
                    replica.resume_subscriber(id, &self.room_tx);
                }
            }
            Command::Status { log, reply } => {
                let result = match self.replicas.get(&log) {
                    Some(replica) => Ok(replica.status()),
                    None => Err(StatusError::UnknownLog(log)),
                };
                let _ = reply.send(result);
            }
            Command::ReadIndex { log, reply } => match self.replicas.get_mut(&log) {
                Some(replica) => replica.read_index(ReadIndexReply::Local(reply)),
                None => {
                    let _ = reply.send(Err(ReadIndexError::UnknownLog(log)));
                }
            },
            Command::Compact { log, before, reply } => {
                let result = match self.replicas.get_mut(&log) {
                    Some(replica) => replica.compact(before),
                    None => Err(CompactError::UnknownLog(log)),
                };
                let _ = reply.send(result);
            }
            Command::Transfer { log, to, reply } => {
                let result = match self.replicas.get_mut(&log) {
                    Some(replica) => replica.transfer(to),
                    None => Err(TransferError::UnknownLog(log)),
                };
                let _ = reply.send(result);
            }
            Command::Peer(message) => self.on_peer_message(message, false),
            Command::Client(event) => self.on_client_request(event, now, false),
            Command::ClientSubscribe(event) => self.on_subscribe(event, false),
            Command::Shutdown { hand_over } => self.begin_stop(hand_over, now),
            #[cfg(test)]
            Command::Panic { message } => panic!("{message}"),
            #[cfg(test)]
            Command::EndLoop { reason } => self.end_loop(reason),
        }
    }

    async fn shut_down(&mut self) {
        // Answer whatever is still queued for this shard before going.
        while let Ok(command) = self.inbox.rx.try_recv() {
            self.on_command(command, clock::now());
        }
        for replica in self.replicas.values_mut() {
            replica.shut_down();
        }
        self.transport.close();
        // Give the closes a moment to reach the peers, so they notice at once rather than after
        // an idle timeout; never hang on it.
        let _ = tokio::time::timeout(Duration::from_millis(500), self.transport.wait_idle()).await;
        info!(shard = self.index, "shard stopped");
    }
}

/// The consensus configuration of `log` on this node.
fn raft_config(config: &NodeConfig, log: LogId) -> RaftConfig {
    let mut raft = RaftConfig::new(config.id, log, config.voters());
    let tuning = &config.raft;
    raft.election_timeout_ticks = tuning.election_timeout_ticks;
    raft.heartbeat_interval_ticks = tuning.heartbeat_interval_ticks;
    raft.pre_vote = tuning.pre_vote;
    raft.check_quorum = tuning.check_quorum;
    raft.append_size_bytes_max = tuning.append_size_bytes_max;
    raft.inflight_message_count_max = tuning.inflight_message_count_max;
    raft.inflight_size_bytes_max = tuning.inflight_size_bytes_max;
    raft.entry_cache_size_bytes_max = tuning.entry_cache_size_bytes_max;
    raft.timeout_seed = clock::timeout_seed(config.id.get(), log.get());
    raft
}
