//! Tests of the replica driver: one replica on a simulated disk, driven by hand in the order the
//! shard loop drives it (inputs first, then `drive`, then `submit_to_disk`), with a real but idle
//! transport (its peers are never connected, so what the replica sends goes nowhere).

use super::command::{Command, ShardHandle, ShardInbox};
use super::dedup::Lookup;
use super::read_index::ReadIndexReply;
use super::replica::Replica;
use super::subscribers::RoomWaker;
use super::waiters::AppendReply;
use crate::config::{NodeConfig, PeerConfig};
use crate::error::{AppendError, ReadError, ReadIndexError, TransferError};
use crate::log::{BatchPosition, LogEntry, ReadLimit};
use crate::metrics::LogMetrics;
use crate::raft::{Config as RaftConfig, RaftCore, Role};
use crate::runtime::clock;
use crate::runtime::source::StoreSource;
use crate::storage::{LogOptions, LogStore, SimDisk, SimFaults};
use crate::subscription::Subscription;
use bytes::Bytes;
use futures_core::Stream;
use raftwal_wire::client::{ClientId, ClientSeq, TaggedPayload};
use raftwal_wire::codec::{FrameEncoder, FrameLimits};
use raftwal_wire::message::{
    AppendEntries, AppendEntriesResponse, Heartbeat, HeartbeatResponse, LogStart, Message,
    MessageBody, ReadIndexResponse, RequestVote, RequestVoteResponse,
};
use raftwal_wire::tls::{ClusterCerts, TlsIdentity};
use raftwal_wire::transport::{Transport, TransportConfig, TransportEvents};
use raftwal_wire::types::{Entry, EntryKind, LogId, LogIndex, NodeId, Term};
use std::collections::HashMap;
use std::path::Path;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use tokio::sync::{mpsc, oneshot};

pub(super) const LOG: LogId = LogId(0);

pub(super) type AppendRx = oneshot::Receiver<Result<BatchPosition, AppendError>>;

/// A current-thread runtime to enter for the transport.
pub(super) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Node 1 of a cluster, its replica of log 0 on a simulated disk.
pub(super) struct Harness {
    pub(super) disk: Rc<SimDisk>,
    pub(super) config: Arc<NodeConfig>,
    pub(super) transport: Transport,
    _events: TransportEvents,
    pub(super) replica: Replica<SimDisk>,
    pub(super) room_tx: RoomWaker,
    _room_rx: mpsc::UnboundedReceiver<(LogId, u64)>,
    /// The way the embedding API reaches the shard, and the shard's end of it.
    shard: ShardHandle,
    inbox: ShardInbox,
}

impl Harness {
    /// Node 1 of `voters` voters on a fresh disk. Call it inside a runtime.
    pub(super) fn new(voters: u64) -> Harness {
        Harness::with(voters, |_| {})
    }

    /// [`Harness::new`] with the node's configuration adjusted first.
    pub(super) fn with(voters: u64, adjust: impl FnOnce(&mut NodeConfig)) -> Harness {
        let ids: Vec<NodeId> = (1..=voters).map(NodeId).collect();
        let certs = ClusterCerts::generate(None, &ids).unwrap();
        let own = &certs.nodes[0].1;
        let identity =
            TlsIdentity::from_pem(certs.cluster, &certs.ca.cert_pem, &own.cert_pem, &own.key_pem)
                .unwrap();
        let addr = "127.0.0.1:0".parse().unwrap();
        let peers = (2..=voters)
            .map(|id| PeerConfig { id: NodeId(id), addr: "127.0.0.1:9".parse().unwrap() })
            .collect();
        let mut config = NodeConfig::new(NodeId(1), addr, peers, "/data", "/tls");
        config.shards = Some(1);
        config.storage.segment_size_bytes = 1 << 20;
        adjust(&mut config);
        let config = Arc::new(config);
        let (transport, events) =
            Transport::bind(TransportConfig::new(NodeId(1), addr), &identity).unwrap();
        let disk = Rc::new(SimDisk::new());
        let replica = open(&disk, &config, &transport);
        let (room_tx, room_rx) = mpsc::unbounded_channel();
        let (shard, inbox) = ShardHandle::new();
        Harness {
            disk,
            config,
            transport,
            _events: events,
            replica,
            room_tx,
            _room_rx: room_rx,
            shard,
            inbox,
        }
    }

    /// [`Harness::new`] with 16 KiB segments and entries of up to 4 KiB, so that a few dozen
    /// 1 KiB entries fill several segments (for compaction).
    pub(super) fn with_small_segments(voters: u64) -> Harness {
        Harness::with(voters, |c| {
            c.storage.segment_size_bytes = 16 << 10;
            c.entry_size_bytes_max = 4 << 10;
        })
    }

    /// Replaces the replica with a new one opened from the same disk, as a process that
    /// stopped without its shutdown (a crash that kept every durable byte) and started again.
    pub(super) fn restart(&mut self) {
        self.disk.restart_process();
        let fresh = open(&self.disk, &self.config, &self.transport);
        drop(std::mem::replace(&mut self.replica, fresh));
    }

    /// One loop turn after the inputs: drive, then hand the batch to the disk.
    pub(super) fn turn(&mut self) {
        self.replica.drive(&self.room_tx);
        self.replica.submit_to_disk();
    }

    /// Settles until the disk writes nothing more (the zero-fill ahead of the writer included),
    /// so that the next write is the one a test expects.
    pub(super) fn settle_writes(&mut self) {
        let mut writes = u64::MAX;
        while self.disk.stats().writes != writes {
            writes = self.disk.stats().writes;
            self.settle();
        }
    }

    /// Turns until the disk and the core have nothing left to do.
    pub(super) fn settle(&mut self) {
        for _ in 0..8 {
            self.turn();
        }
    }

    /// Ticks (one loop turn each) until this single voter leads.
    pub(super) fn elect(&mut self) {
        for _ in 0..100 {
            if self.replica.core.role() == Role::Leader {
                self.settle();
                return;
            }
            self.replica.tick();
            self.turn();
        }
        panic!("node 1 did not become leader");
    }

    /// Ticks (one loop turn each, no more) until node 1 has `role`.
    pub(super) fn tick_until(&mut self, role: Role) {
        for _ in 0..100 {
            if self.replica.core.role() == role {
                return;
            }
            self.replica.tick();
            self.turn();
        }
        assert_eq!(self.replica.core.role(), role);
    }

    /// Makes node 1 the leader of several voters by hand: its election timer runs out, and
    /// node 2 grants its pre-vote and then its vote.
    pub(super) fn elect_with_node_2(&mut self) {
        self.tick_until(Role::PreCandidate);
        let pre_vote = RequestVoteResponse { pre_vote: true, granted: true };
        let term = self.replica.core.term().next();
        self.replica.step(from_peer(2, term, MessageBody::RequestVoteResponse(pre_vote)));
        self.settle();
        let vote = RequestVoteResponse { pre_vote: false, granted: true };
        self.replica.step(from_peer(2, term, MessageBody::RequestVoteResponse(vote)));
        self.settle();
        assert_eq!(self.replica.core.role(), Role::Leader);
    }

    /// A local append of `data`, not yet driven.
    pub(super) fn append(&mut self, data: &'static [u8]) -> AppendRx {
        let (tx, rx) = oneshot::channel();
        let payloads = vec![Bytes::from_static(data)];
        self.replica.append_local(payloads, AppendReply::Local(tx), clock::now());
        rx
    }

    /// A subscription from `from`, through the embedding API (its first delivery happens at
    /// once).
    pub(super) fn subscribe(&mut self, from: u64) -> Subscription {
        let subscription = Subscription::start(LOG, self.shard.clone(), LogIndex(from));
        self.commands();
        subscription
    }

    /// Carries out the commands the embedding API queued for the shard.
    pub(super) fn commands(&mut self) {
        while let Ok(command) = self.inbox.rx.try_recv() {
            match command {
                Command::Subscribe { from, sink, .. } => {
                    self.replica.subscribe_local(sink, from, &self.room_tx);
                }
                Command::ResumeSubscriber { id, .. } => {
                    self.replica.resume_subscriber(id, &self.room_tx);
                }
                other => panic!("unexpected command {other:?}"),
            }
        }
    }
}

/// A message of log 0 from node `from` to node 1.
pub(super) fn from_peer(from: u64, term: Term, body: MessageBody) -> Message {
    Message { log: LOG, from: NodeId(from), to: NodeId(1), term, body }
}

/// A log start of log 0 from node `from` in `term`: the log starts after entry `index`, of
/// `term`, the leader's commit index is `index`, and it carries no clients' numbers.
fn log_start(from: u64, term: u64, index: u64) -> Message {
    let index = LogIndex(index);
    let start = LogStart { index, term: Term(term), leader_commit: index, client_seqs: Vec::new() };
    from_peer(from, Term(term), MessageBody::LogStart(start))
}

fn open(disk: &Rc<SimDisk>, config: &Arc<NodeConfig>, transport: &Transport) -> Replica<SimDisk> {
    let options = LogOptions {
        segment_size_bytes: config.storage.segment_size_bytes,
        zero_chunk_bytes: 64 << 10,
        log_id: LOG,
        ..LogOptions::default()
    };
    let (store, recovery) =
        LogStore::open(Path::new("/data/log-0"), options, disk.clone()).unwrap();
    let mut raft = RaftConfig::new(NodeId(1), LOG, config.voters());
    raft.timeout_seed = 1;
    let core = RaftCore::restore(raft, recovery.hard_state, &StoreSource(&store)).unwrap();
    Replica::new(config.clone(), core, store, transport.clone(), Arc::new(LogMetrics::new(LOG)))
}

/// Everything a subscription yields now without waiting: its entries, and its error when it
/// ended.
pub(super) fn drain(subscription: &mut Subscription) -> (Vec<LogEntry>, Option<ReadError>) {
    let mut cx = Context::from_waker(Waker::noop());
    let mut entries = Vec::new();
    loop {
        match Pin::new(&mut *subscription).poll_next(&mut cx) {
            Poll::Ready(Some(Ok(entry))) => entries.push(entry),
            Poll::Ready(Some(Err(e))) => return (entries, Some(e)),
            Poll::Ready(None) | Poll::Pending => return (entries, None),
        }
    }
}

#[test]
fn a_local_append_is_answered_once_durable_with_its_position() {
    let rt = runtime();
    let _entered = rt.enter();
    let mut h = Harness::new(1);
    h.elect();
    h.disk.set_manual(true);
    let mut rx = h.append(b"one");
    h.settle();
    assert!(rx.try_recv().is_err(), "answered before its entry was durable");
    h.disk.run_pending(usize::MAX);
    h.settle();
    h.disk.set_manual(false);
    h.settle();
    let position = rx.try_recv().expect("answered").expect("appended");
    assert_eq!(position.first_index, LogIndex(2), "after the leader's no-op");
    assert_eq!(position.count, 1);
    let mut sub = h.subscribe(1);
    let (entries, end) = drain(&mut sub);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].index, LogIndex(2));
    assert!(end.is_none());
}

/// The payload bytes a subscriber is given count in `raftwal_bytes_out_total` however they
/// reach it: with the commit that brought them, at once when it subscribes behind the commit
/// index (a consumer catching up), or when it made room after its buffer was full. (Only the
/// first were counted: a tail that caught up from behind, or was paused by its buffer, was
/// missing from the metric, nearly all of its bytes.)
#[test]
fn every_byte_given_to_a_subscriber_counts_in_the_bytes_out_metric() {
    static PAYLOAD: [u8; 512 << 10] = [b'x'; 512 << 10];
    let rt = runtime();
    let _entered = rt.enter();
    let mut h = Harness::with(1, |c| c.storage.segment_size_bytes = 8 << 20);
    h.elect();
    // More than the subscriber's buffer holds (16 batches of up to 1 MiB).
    let count = 40;
    for _ in 0..count {
        let (tx, _rx) = oneshot::channel();
        let payloads = vec![Bytes::from_static(&PAYLOAD)];
        h.replica.append_local(payloads, AppendReply::Local(tx), clock::now());
        h.settle();
    }
    let bytes_out = |h: &Harness| h.replica.metrics.bytes_out.load(Ordering::Relaxed);
    assert_eq!(bytes_out(&h), 0, "a single voter sends no entry to a peer");
    let mut sub = h.subscribe(1);
    let mut given = 0;
    for _ in 0..count {
        let (entries, end) = drain(&mut sub);
        assert!(end.is_none(), "{end:?}");
        given += entries.len();
        if given == count {
            break;
        }
        // The consumer made room: the shard delivers again.
        h.commands();
    }
    assert_eq!(given, count);
    let expected = (count * PAYLOAD.len()) as u64;
    assert_eq!(bytes_out(&h), expected, "payload bytes given to the subscriber");
}

/// Index 0 holds no entry; reading or subscribing from it reads from the first entry, on
/// a log that was never compacted (it answered `Compacted { requested: 0, first_index: 1 }`).
#[test]
fn a_read_or_subscription_from_index_0_starts_at_the_first_entry() {
    let rt = runtime();
    let _entered = rt.enter();
    let mut h = Harness::new(1);
    h.elect();
    let mut rx = h.append(b"one");
    h.settle();
    assert!(matches!(rx.try_recv(), Ok(Ok(_))));
    let read = h.replica.read_local(LogIndex(0), ReadLimit::entries(10)).unwrap();
    assert_eq!(read.len(), 1, "{read:?}");
    assert_eq!(read[0].data, Bytes::from_static(b"one"));
    let mut sub = h.subscribe(0);
    let (entries, end) = drain(&mut sub);
    assert_eq!(entries.len(), 1, "{entries:?} {end:?}");
    assert_eq!(entries[0].data, Bytes::from_static(b"one"));
    assert!(end.is_none(), "{end:?}");
}

#[test]
fn a_subscriber_that_arrives_after_the_log_was_poisoned_is_ended() {
    let rt = runtime();
    let _entered = rt.enter();
    let mut h = Harness::new(1);
    h.elect();
    let mut first = h.append(b"one");
    h.settle();
    assert!(matches!(first.try_recv(), Ok(Ok(_))));
    h.disk.set_faults(crate::storage::SimFaults { fail_next_sync: true, ..Default::default() });
    let mut second = h.append(b"two");
    h.settle();
    assert!(matches!(second.try_recv(), Ok(Err(AppendError::Poisoned { .. }))));
    assert!(h.replica.failed.is_some());
    // The log stops on this node: a subscriber gets what is committed and then the reason,
    // instead of waiting for entries that will never come.
    let mut sub = h.subscribe(1);
    h.settle();
    let (entries, end) = drain(&mut sub);
    assert!(entries.iter().all(|e| e.index <= LogIndex(2)), "{entries:?}");
    match end {
        Some(ReadError::Storage { .. }) => {}
        other => panic!("a subscriber of a poisoned log was not ended with its reason: {other:?}"),
    }
}

#[test]
fn a_retry_handled_in_the_turn_its_node_became_leader_is_not_appended_twice() {
    let rt = runtime();
    let _entered = rt.enter();
    let mut h = Harness::new(1);
    h.elect();
    let tagged = || vec![TaggedPayload::new(ClientId(7), ClientSeq(1), Bytes::from_static(b"x"))];
    let (tx, mut rx) = oneshot::channel();
    h.replica.append_remote(tagged(), AppendReply::Local(tx), clock::now());
    h.settle();
    let first = rx.try_recv().expect("answered").expect("appended");
    // The node stops without its shutdown: the commit index reached the disk only with the
    // term, so the restarted node holds the client's entry above its commit index.
    h.restart();
    assert!(h.replica.core.commit_index() < first.first_index);
    // The tick that makes it leader and the client's retry come in the same loop turn, before
    // the replica is driven.
    for _ in 0..100 {
        h.replica.tick();
        if h.replica.core.role() == Role::Leader {
            break;
        }
        h.turn();
    }
    assert_eq!(h.replica.core.role(), Role::Leader);
    let (tx, mut rx) = oneshot::channel();
    h.replica.append_remote(tagged(), AppendReply::Local(tx), clock::now());
    h.settle();
    let entries = h.replica.store.read(LogIndex(1), usize::MAX).unwrap();
    let copies = entries.iter().filter(|e| e.kind == EntryKind::Tagged).count();
    assert_eq!(copies, 1, "the retried entry is in the log twice: {entries:?}");
    assert_eq!(rx.try_recv().expect("answered").expect("appended"), first);
}

#[test]
fn a_remote_entry_of_the_largest_payload_the_configuration_allows_does_not_poison_the_log() {
    let rt = runtime();
    let _entered = rt.enter();
    let mut h = Harness::with(1, |c| {
        // The largest entry size the configuration accepts with this segment size.
        c.entry_size_bytes_max = c.storage.segment_size_bytes as usize;
        while c.validate().is_err() {
            c.entry_size_bytes_max -= 1;
        }
    });
    h.elect();
    let size = h.config.entry_size_bytes_max;
    let payload = Bytes::from(vec![5u8; size]);
    let items = vec![TaggedPayload::new(ClientId(7), ClientSeq(1), payload)];
    let (tx, mut rx) = oneshot::channel();
    h.replica.append_remote(items, AppendReply::Local(tx), clock::now());
    h.settle();
    assert_eq!(h.replica.failed, None, "a client's append of {size} bytes poisoned the log");
    let position = rx.try_recv().expect("answered").expect("appended");
    assert_eq!(position.count, 1);
}

/// A subscriber whose consumer went away is forgotten although the log commits nothing more:
/// a program (or `raftwal tail` run in a loop) that subscribes and leaves again and again, on a
/// log that is idle or has no leader, made the node keep every subscriber it ever had, since
/// only a delivery noticed that its consumer was gone.
#[test]
fn subscribers_whose_consumer_went_away_are_forgotten_on_an_idle_log() {
    let rt = runtime();
    let _entered = rt.enter();
    let mut h = Harness::new(1);
    h.elect();
    let mut rx = h.append(b"one");
    h.settle();
    assert!(matches!(rx.try_recv(), Ok(Ok(_))));
    let mut kept = h.subscribe(0);
    for _ in 0..100 {
        let mut gone = h.subscribe(0);
        let (entries, end) = drain(&mut gone);
        assert_eq!((entries.len(), end), (1, None));
        drop(gone);
        h.replica.tick();
        h.settle();
    }
    assert_eq!(h.replica.subscribers.len(), 1, "only the subscriber still consumed is kept");
    drop(h.append(b"two"));
    h.settle();
    let (entries, end) = drain(&mut kept);
    assert_eq!((entries.len(), end), (2, None));
}

#[test]
fn a_lagging_subscriber_of_a_log_that_fails_learns_the_failure_after_its_backlog() {
    let rt = runtime();
    let _entered = rt.enter();
    let mut h = Harness::new(1);
    h.elect();
    let mut sub = h.subscribe(1);
    // The consumer reads nothing while more batches commit than its buffer holds.
    for _ in 0..crate::subscription::CHANNEL_BATCHES + 2 {
        drop(h.append(b"entry"));
        h.settle();
    }
    h.disk.set_faults(crate::storage::SimFaults { fail_next_sync: true, ..Default::default() });
    drop(h.append(b"lost"));
    h.settle();
    assert!(h.replica.failed.is_some());
    let (entries, end) = drain(&mut sub);
    assert_eq!(entries.len(), crate::subscription::CHANNEL_BATCHES);
    match end {
        Some(ReadError::Storage { .. }) => {}
        other => panic!("the subscriber was not told why its log stopped: {other:?}"),
    }
}

#[test]
fn a_log_whose_storage_failed_while_handing_over_is_not_waited_for() {
    let rt = runtime();
    let _entered = rt.enter();
    let mut h = Harness::new(3);
    h.elect_with_node_2();
    h.disk.set_manual(true);
    drop(h.append(b"one"));
    h.settle();
    // The node stops while the log is handed over to node 2; then the write in flight fails.
    h.replica.core.transfer_leadership(NodeId(2)).unwrap();
    assert!(h.replica.hand_over(), "a stop does not wait for the transfer under way");
    h.disk.set_faults(crate::storage::SimFaults { fail_next_sync: true, ..Default::default() });
    h.disk.run_pending(usize::MAX);
    h.disk.set_manual(false);
    h.settle();
    assert!(h.replica.failed.is_some());
    // The replica is no longer driven: it can never hear of another leader, and the shard
    // would keep the whole node running for it until the handover's deadline.
    assert!(!h.replica.hand_over(), "the shard waits for a log that stopped on this node");
}

#[test]
fn a_leader_that_hands_over_tells_local_appends_in_flight_they_may_still_commit() {
    let rt = runtime();
    let _entered = rt.enter();
    let mut h = Harness::new(3);
    h.elect_with_node_2();
    let mut rx = h.append(b"one");
    h.settle();
    assert!(rx.try_recv().is_err(), "committed without a follower");
    let last = h.replica.core.last_index();
    let term = h.replica.core.term();
    // Node 2 received the entry and, told to campaign (a leadership transfer, as a graceful
    // shutdown starts), asks for votes: its log holds the entry, which its term's no-op will
    // commit.
    let request = RequestVote {
        pre_vote: false,
        last_log_index: last,
        last_log_term: term,
        leadership_transfer: true,
    };
    h.replica.step(from_peer(2, term.next(), MessageBody::RequestVote(request)));
    h.settle();
    assert_eq!(h.replica.core.role(), Role::Follower);
    match rx.try_recv() {
        Ok(Err(AppendError::LeadershipLost { .. })) => {}
        // `NotLeader` tells the caller to append on the leader: the entry would be in the log
        // twice.
        other => panic!("an append that may still commit was answered {other:?}"),
    }
}
/// An AppendEntries from `from` in `term`: `entries` (term, payload) from `prev.0 + 1` on.
fn append_entries(
    from: u64,
    term: u64,
    prev: (u64, u64),
    leader_commit: u64,
    entries: &[(u64, &'static [u8])],
) -> Message {
    let entries = entries
        .iter()
        .enumerate()
        .map(|(offset, (term, data))| Entry {
            index: LogIndex(prev.0 + 1 + offset as u64),
            term: Term(*term),
            kind: EntryKind::Normal,
            data: Bytes::from_static(data),
        })
        .collect();
    Message {
        log: LOG,
        from: NodeId(from),
        to: NodeId(1),
        term: Term(term),
        body: MessageBody::AppendEntries(AppendEntries {
            prev_log_index: LogIndex(prev.0),
            prev_log_term: Term(prev.1),
            leader_commit: LogIndex(leader_commit),
            entries,
        }),
    }
}

/// The core learns entries and a commit index that covers them as soon as it steps a leader's
/// AppendEntries; the store has them only once the replica is driven. A read or a subscriber
/// served in between (the shard takes every event and command of a loop turn before it drives
/// the replicas) must not take the store's entries at those indices for committed ones: there
/// may be none yet, or the entries of a deposed leader that the new ones replace.
#[test]
fn a_follower_serves_no_entry_of_a_replaced_suffix_in_the_turn_it_learns_the_commit() {
    let rt = runtime();
    let _entered = rt.enter();
    let mut h = Harness::new(3);
    // Node 2 leads term 1; its two entries reach this follower's disk but never commit.
    h.replica.step(append_entries(2, 1, (0, 0), 0, &[(1, b"old-1"), (1, b"old-2")]));
    h.settle();
    assert_eq!(h.replica.store.durable_index(), LogIndex(2));
    // Node 3 leads term 2, replaces them and commits its own, then three more entries.
    h.replica.step(append_entries(3, 2, (0, 0), 2, &[(2, b"new-1"), (2, b"new-2")]));
    h.replica.step(append_entries(3, 2, (2, 2), 5, &[(2, b"new-3"), (2, b"new-4"), (2, b"new-5")]));
    assert_eq!(h.replica.core.commit_index(), LogIndex(5));
    // In the same loop turn, before the replica is driven: a read, a new subscriber.
    let read = h.replica.read_local(LogIndex(1), ReadLimit::entries(100));
    let mut sub = h.subscribe(1);
    let (early, end) = drain(&mut sub);
    assert!(end.is_none(), "the subscriber was ended: {end:?}");
    let read = read.expect("a read of committed entries failed");
    for entry in read.iter().chain(&early) {
        assert_eq!(entry.term, Term(2), "an entry that never committed was served: {entry:?}");
    }
    h.settle();
    let read = h.replica.read_local(LogIndex(1), ReadLimit::entries(100)).unwrap();
    let texts: Vec<&[u8]> = read.iter().map(|e| &e.data[..]).collect();
    assert_eq!(texts, [&b"new-1"[..], b"new-2", b"new-3", b"new-4", b"new-5"]);
    let (late, end) = drain(&mut sub);
    assert!(end.is_none(), "the subscriber was ended: {end:?}");
    let seen: Vec<&[u8]> = early.iter().chain(&late).map(|e| &e.data[..]).collect();
    assert_eq!(seen, texts, "the subscriber skipped or repeated entries");
}

/// A follower holding entry 1 (durable) that has just stepped an AppendEntries with entries 2
/// and 3 and a commit index of 3, in the same turn: nothing of it stored yet.
fn follower_learning_entries_and_their_commit() -> Harness {
    let mut h = Harness::new(3);
    h.replica.step(append_entries(2, 1, (0, 0), 1, &[(1, b"one")]));
    h.settle();
    h.replica.step(append_entries(2, 1, (1, 1), 3, &[(1, b"two"), (1, b"three")]));
    h
}

/// A read and a subscriber past the store's end, in the turn a follower learns entries and a
/// commit index that covers them: nothing to serve yet, which is no storage error.
#[test]
fn a_follower_read_past_its_stored_end_in_the_turn_it_learns_the_commit_is_no_error() {
    let rt = runtime();
    let _entered = rt.enter();
    let mut h = follower_learning_entries_and_their_commit();
    let read = h.replica.read_local(LogIndex(3), ReadLimit::entries(100));
    assert!(read.is_ok(), "a read of a committed index failed: {read:?}");
    let mut sub = h.subscribe(3);
    let (_, end) = drain(&mut sub);
    assert!(end.is_none(), "a subscriber from a committed index was ended: {end:?}");
    h.settle();
    let (entries, end) = drain(&mut sub);
    assert!(end.is_none(), "{end:?}");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].data, "three");
}

/// A status taken in the turn a follower learns entries and a commit index that covers them
/// reports the commit index its reads serve, not the core's: a caller that waits for the
/// status to show an index and then reads must find the entry.
#[test]
fn a_followers_status_reports_the_commit_index_its_reads_serve() {
    let rt = runtime();
    let _entered = rt.enter();
    let mut h = follower_learning_entries_and_their_commit();
    assert_eq!(h.replica.core.commit_index(), LogIndex(3));
    let status = h.replica.status();
    let read = h.replica.read_local(LogIndex(1), ReadLimit::entries(100)).unwrap();
    assert_eq!(
        read.last().map(|e| e.index),
        Some(status.commit_index),
        "the status reports a commit index the reads do not serve yet"
    );
    h.settle();
    assert_eq!(h.replica.status().commit_index, LogIndex(3));
    let read = h.replica.read_local(LogIndex(1), ReadLimit::entries(100)).unwrap();
    assert_eq!(read.len(), 3);
}

/// A leader deposed while a local append waits for its commit: the entry went out to the
/// followers and may still commit under the next leader, so the caller is told
/// `LeadershipLost` (read to check), not `NotLeader`, which says to append at the leader and
/// would put the entry in the log twice (local appends carry no sequence number).
#[test]
fn a_local_append_waiting_when_its_leader_is_deposed_may_still_commit() {
    let rt = runtime();
    let _entered = rt.enter();
    let mut h = Harness::new(3);
    h.elect_with_node_2();
    let mut rx = h.append(b"in flight");
    h.settle();
    assert!(rx.try_recv().is_err(), "answered before a majority held it");
    // Node 3 leads a later term.
    let term = h.replica.core.term().get() + 1;
    let last = h.replica.core.last_index().get();
    h.replica.step(append_entries(3, term, (last, term - 1), 0, &[]));
    h.settle();
    assert_ne!(h.replica.core.role(), Role::Leader);
    match rx.try_recv().expect("the waiting append was not answered") {
        Err(AppendError::LeadershipLost { .. }) => {}
        other => panic!("expected LeadershipLost, got {other:?}"),
    }
}

/// `storage.retention_bytes` keeps the newest sealed segments whose records hold at least that
/// many bytes, the segment being written besides: right after a roll-over that segment holds
/// next to nothing, and counting it as one of the kept segments would leave the log far below
/// the retention. Nor does it keep more sealed segments than it needs.
#[test]
fn retention_keeps_at_least_its_bytes_right_after_a_roll_over() {
    const SEGMENT: u64 = 16 << 10;
    // Half a segment: the newest sealed segment holds it, the older ones go.
    const RETAIN: u64 = SEGMENT / 2;
    static PAYLOAD: [u8; 1000] = [b'x'; 1000];
    let rt = runtime();
    let _entered = rt.enter();
    let mut h = Harness::with(1, |c| {
        c.storage.segment_size_bytes = SEGMENT;
        c.entry_size_bytes_max = 4 << 10;
        c.storage.retention_bytes = RETAIN;
    });
    h.elect();
    // Append until the segment being written was just started and holds one entry.
    for _ in 0..200 {
        drop(h.append(&PAYLOAD));
        h.settle();
        let firsts: Vec<LogIndex> =
            h.replica.store.segment_extents().map(|(first, _)| first).collect();
        if firsts.len() >= 3 && firsts.last() == Some(&h.replica.store.last_index()) {
            break;
        }
    }
    let last = h.replica.store.last_index();
    let active = h.replica.store.segment_extents().last().map(|(first, _)| first);
    assert_eq!(active, Some(last), "no roll-over");
    assert_eq!(h.replica.core.commit_index(), last);
    h.replica.tick();
    h.settle();
    let first = h.replica.store.first_index();
    let extents: Vec<(LogIndex, u64)> = h.replica.store.segment_extents().collect();
    assert!(first > LogIndex(1), "retention compacted nothing: {extents:?}");
    // The segments but the one being written must hold the retention, and without the oldest
    // of them they would not: retention removed what it may, no more.
    let sealed: Vec<u64> = h.replica.store.segment_extents().map(|(_, bytes)| bytes).collect();
    let sealed = &sealed[..sealed.len() - 1];
    let held: u64 = sealed.iter().sum();
    assert!(held >= RETAIN, "retention of {RETAIN} bytes kept {held} in {sealed:?}, {first}..");
    assert!(held - sealed[0] < RETAIN, "retention kept more than it needs: {sealed:?}");
}

/// A transfer asked for while another is under way says so, naming the target of the one under
/// way (it read as a bad target before); a target that is no other member is a bad target.
#[test]
fn a_transfer_during_another_is_busy() {
    let rt = runtime();
    let _entered = rt.enter();
    let mut h = Harness::with(3, |_| {});
    h.elect_with_node_2();
    assert_eq!(h.replica.transfer(NodeId(2)), Ok(()));
    assert_eq!(h.replica.transfer(NodeId(3)), Err(TransferError::Busy(NodeId(2))));
    assert_eq!(h.replica.transfer(NodeId(9)), Err(TransferError::BadTarget(NodeId(9))));
    assert_eq!(h.replica.transfer(NodeId(1)), Err(TransferError::BadTarget(NodeId(1))));
}

/// A leader whose log's storage failed leads no more (it sends nothing again): a transfer asked
/// of it is refused as not the leader's to make, not accepted as if a TimeoutNow could leave.
/// (Found by a review: it answered `Ok`.)
#[test]
fn a_transfer_from_a_leader_whose_storage_failed_is_refused() {
    let rt = runtime();
    let _entered = rt.enter();
    let mut h = Harness::with(3, |_| {});
    h.elect_with_node_2();
    h.disk.set_faults(crate::storage::SimFaults { fail_next_sync: true, ..Default::default() });
    drop(h.append(b"lost"));
    h.settle();
    assert!(h.replica.failed.is_some());
    assert_eq!(h.replica.transfer(NodeId(2)), Err(TransferError::NotLeader));
}

/// A linearizable read through the embedding API, not yet driven.
fn read_index(h: &mut Harness) -> oneshot::Receiver<Result<LogIndex, ReadIndexError>> {
    let (tx, rx) = oneshot::channel();
    h.replica.read_index(ReadIndexReply::Local(tx));
    rx
}

/// Makes the replica a follower of node 2 (term 1, index 1 committed) and starts a
/// linearizable read, which it forwards to node 2: the read and its request id.
fn forwarded_read(h: &mut Harness) -> (oneshot::Receiver<Result<LogIndex, ReadIndexError>>, u64) {
    h.replica.step(append_entries(2, 1, (0, 0), 1, &[(1, b"one")]));
    h.settle();
    let rx = read_index(h);
    h.settle();
    (rx, h.replica.read_indexes.last_id())
}

/// Node `from`'s answer of term 1 to read `request_id`, stepped and settled.
fn answer_read(h: &mut Harness, from: u64, request_id: u64, read_index: u64) {
    let answer = ReadIndexResponse { request_id, read_index: Some(LogIndex(read_index)) };
    h.replica.step(from_peer(from, Term(1), MessageBody::ReadIndexResponse(answer)));
    h.settle();
}

/// A single voter confirms its own leadership: the read index is its commit index.
#[test]
fn a_single_voters_read_index_is_its_commit_index() {
    let rt = runtime();
    let _entered = rt.enter();
    let mut h = Harness::new(1);
    h.elect();
    let mut append = h.append(b"one");
    h.settle();
    let position = append.try_recv().unwrap().unwrap();
    let mut rx = read_index(&mut h);
    h.settle();
    assert_eq!(rx.try_recv().expect("answered"), Ok(position.first_index));
}

/// A follower's read point is the leader's commit index, and it is answered only once the
/// follower itself can serve reads up to there: a read from it right after may not miss an
/// entry the leader had committed.
#[test]
fn a_followers_read_index_waits_until_it_can_serve_the_leaders_commit() {
    let rt = runtime();
    let _entered = rt.enter();
    let mut h = Harness::new(3);
    // Node 2 leads term 1 and has committed index 1 here.
    let (mut rx, request_id) = forwarded_read(&mut h);
    assert!(rx.try_recv().is_err(), "answered before the leader confirmed");
    // The leader answers the forwarded request with its commit index, 3, which this follower
    // has not seen yet.
    answer_read(&mut h, 2, request_id, 3);
    assert!(rx.try_recv().is_err(), "answered before this follower could serve index 3");
    // The entries and the commit index reach it.
    h.replica.step(append_entries(2, 1, (1, 1), 3, &[(1, b"two"), (1, b"three")]));
    h.settle();
    assert_eq!(rx.try_recv().expect("answered"), Ok(LogIndex(3)));
    let read = h.replica.read_local(LogIndex(1), ReadLimit::entries(100)).unwrap();
    assert_eq!(read.last().map(|e| e.index), Some(LogIndex(3)));
}

/// Without a leader there is no read point; a leader deposed before a majority confirmed it
/// answers its waiting reads with a failure, never with an index.
#[test]
fn no_read_index_without_a_confirmed_leader() {
    let rt = runtime();
    let _entered = rt.enter();
    let mut h = Harness::new(3);
    let mut rx = read_index(&mut h);
    assert_eq!(rx.try_recv().expect("answered at once"), Err(ReadIndexError::NoLeader));
    h.elect_with_node_2();
    let mut rx = read_index(&mut h);
    h.settle();
    assert!(rx.try_recv().is_err(), "answered before a majority confirmed the leader");
    // Node 3 leads a later term.
    let term = h.replica.core.term().get() + 1;
    let last = h.replica.core.last_index().get();
    h.replica.step(append_entries(3, term, (last, term - 1), 0, &[]));
    h.settle();
    assert_eq!(rx.try_recv().expect("answered"), Err(ReadIndexError::NotConfirmed));
}

/// Reads waiting for their read point are answered when the log stops on the node.
#[test]
fn waiting_read_indexes_are_answered_at_shutdown() {
    let rt = runtime();
    let _entered = rt.enter();
    let mut h = Harness::new(3);
    h.elect_with_node_2();
    let mut rx = read_index(&mut h);
    h.settle();
    h.replica.shut_down();
    assert_eq!(rx.try_recv().expect("answered"), Err(ReadIndexError::ShuttingDown));
}

/// A leader whose log a peer started near the top of the index range (a LogStart the gateway
/// lets through): a client's retry of a batch whose first item is in the log at index `i`
/// names its last item at `i + count - 1`, past u64::MAX for a long batch. That sum
/// overflowed (a panic of the shard thread); the retry is refused as a partial batch instead
/// (only a prefix of it can be in the log).
#[test]
fn a_retried_batch_that_would_pass_the_last_index_is_refused_not_a_panic() {
    let rt = runtime();
    let _entered = rt.enter();
    let mut h = Harness::new(3);
    let top = LogIndex(u64::MAX - 10);
    h.replica.step(log_start(2, 1, top.get()));
    h.settle();
    assert_eq!(h.replica.store.last_index(), top);
    h.elect_with_node_2();
    let item = |seq| TaggedPayload::new(ClientId(7), ClientSeq(seq), Bytes::from_static(b"x"));
    let (tx, _first) = oneshot::channel();
    h.replica.append_remote(vec![item(1)], AppendReply::Local(tx), clock::now());
    h.settle();
    // The retry comes back as a longer batch (a client bug, or a forged request).
    let (tx, mut rx) = oneshot::channel();
    let retry = (1..=20).map(item).collect();
    h.replica.append_remote(retry, AppendReply::Local(tx), clock::now());
    h.settle();
    assert!(rx.try_recv().expect("answered").is_err(), "the retry is refused");
    assert_eq!(h.replica.failed, None);
}

/// A node that stops while a local append waits for its commit: the entry is in its log
/// (durable: the stop lets the batch in flight finish) and went out to the followers, so it
/// may still commit, here after a restart or under another leader. `ShuttingDown`, which
/// says the append was not taken (retry it), would have the caller append it twice.
#[test]
fn a_local_append_waiting_when_its_node_stops_is_told_it_may_still_commit() {
    let rt = runtime();
    let _entered = rt.enter();
    let mut h = Harness::new(3);
    h.elect_with_node_2();
    let mut rx = h.append(b"in flight");
    h.settle();
    assert!(rx.try_recv().is_err(), "answered before a majority held it");
    let index = h.replica.core.last_index();
    h.replica.shut_down();
    let answer = rx.try_recv().expect("the waiting append was not answered");
    // The node starts again and leads with node 2's vote; node 2 holds the log: the entry
    // commits.
    h.restart();
    h.elect_with_node_2();
    let last = h.replica.core.last_index();
    let term = h.replica.core.term();
    let ack = raftwal_wire::message::AppendEntriesResponse::Success { match_index: last };
    h.replica.step(from_peer(2, term, MessageBody::AppendEntriesResponse(ack)));
    h.settle();
    assert!(h.replica.core.commit_index() >= index);
    let read = h.replica.read_local(index, ReadLimit::entries(1)).unwrap();
    assert_eq!(read[0].data, Bytes::from_static(b"in flight"), "the entry committed");
    match answer {
        Err(AppendError::Interrupted { .. }) => {}
        other => panic!("an append that committed after all was answered {other:?}"),
    }
}

/// A follower holding entries 1 to 3 of term 1 (1 committed) that has heard of node 3's
/// leadership in term 2 (the new term saved), on a disk with no room left: the segment prepared
/// ahead cannot take a new header (the file system needs a block for its metadata) and goes, and
/// the room it held is taken by then. Its next truncation or log start is refused.
fn follower_on_a_full_disk() -> Harness {
    let mut h = Harness::new(3);
    h.replica.step(append_entries(2, 1, (0, 0), 1, &[(1, b"one"), (1, b"old-2"), (1, b"old-3")]));
    h.replica.step(append_entries(3, 2, (1, 1), 1, &[]));
    // The zero-fill ahead of the writer finishes.
    h.settle_writes();
    assert_eq!(h.replica.store.durable_index(), LogIndex(3));
    assert_eq!(h.replica.readable_commit(), LogIndex(1));
    let dir = Path::new("/data/log-0");
    let used: u64 = h
        .disk
        .file_names(dir)
        .iter()
        .map(|n| h.disk.file_bytes(&dir.join(n)).map_or(0, |b| b.len() as u64))
        .sum();
    let full = SimFaults {
        capacity_bytes: Some(used - 1),
        no_space_next_write: true,
        ..SimFaults::default()
    };
    h.disk.set_faults(full);
    h
}

/// Ticks (each followed by a settled turn) on a full disk: the replica holds the `Ready` the
/// disk refused; the store keeps entries 1 to 3 of term 1, and no commit past 1 is served.
fn ticks_while_full(h: &mut Harness) {
    for _ in 0..3 {
        h.replica.tick();
        h.settle();
        assert!(h.replica.failed.is_none(), "{:?}", h.replica.failed);
        assert_eq!(h.replica.readable_commit(), LogIndex(1), "a commit served past the store");
        assert_eq!(h.replica.store.first_index(), LogIndex(1));
        let stored = h.replica.store.read(LogIndex(1), 1 << 20).unwrap();
        let terms: Vec<u64> = stored.iter().map(|e| e.term.get()).collect();
        assert_eq!(terms, [1, 1, 1], "the refused write changed the log");
    }
    h.disk.set_faults(SimFaults::default());
    h.replica.tick();
    h.settle();
    assert!(h.replica.failed.is_none(), "{:?}", h.replica.failed);
}

/// A full disk that refuses a follower's truncation stops nothing for good: the replica holds
/// that `Ready` and carries it out on the first tick that finds room.
#[test]
fn a_truncation_a_full_disk_refuses_is_carried_out_once_there_is_room() {
    let rt = runtime();
    let _entered = rt.enter();
    let mut h = follower_on_a_full_disk();
    // Node 3's entries replace 2 and 3, and it commits them.
    h.replica.step(append_entries(3, 2, (1, 1), 3, &[(2, b"new-2"), (2, b"new-3")]));
    ticks_while_full(&mut h);
    assert_eq!(h.replica.store.durable_index(), LogIndex(3));
    assert_eq!(h.replica.readable_commit(), LogIndex(3));
    let read = h.replica.read_local(LogIndex(1), ReadLimit::entries(100)).unwrap();
    let texts: Vec<&[u8]> = read.iter().map(|e| &e.data[..]).collect();
    assert_eq!(texts, [&b"one"[..], b"new-2", b"new-3"]);
}

/// Makes the full disk of [`follower_on_a_full_disk`] refuse a log start's reset rather than
/// the save of the clients' numbers before it, which overwrites its file in place (a full disk
/// lets that through): the reset's first write (into the spare segment, which then goes) and
/// every write that needs room after it.
fn refuse_the_reset(h: &Harness) {
    let faults =
        SimFaults { no_space_next_write: false, no_space_after_writes: Some(1), ..h.disk.faults() };
    h.disk.set_faults(faults);
}

/// The same for a log start (the leader compacted past this follower), whether the disk
/// refuses the save of the clients' numbers that comes first or the reset: the old log stays
/// whole while the disk is full, and is replaced once there is room.
#[test]
fn a_log_start_a_full_disk_refuses_is_carried_out_once_there_is_room() {
    let rt = runtime();
    let _entered = rt.enter();
    for refuse_reset in [false, true] {
        let mut h = follower_on_a_full_disk();
        if refuse_reset {
            refuse_the_reset(&h);
        }
        h.replica.step(log_start(3, 2, 10));
        h.settle();
        assert!(h.replica.holds_ready(), "the disk refused nothing");
        if refuse_reset {
            ticks_while_full(&mut h);
        } else {
            // Only the save was refused (nothing changed), and the reset needs no room (the
            // spare segment serves): the retry on the next tick carries both out.
            assert_eq!(h.replica.readable_commit(), LogIndex(1), "a commit served past the store");
            let stored = h.replica.store.read(LogIndex(1), 1 << 20).unwrap();
            assert_eq!(stored.len(), 3, "the refused save changed the log");
            assert_eq!(h.replica.client_seqs_through, None);
            h.replica.tick();
            h.settle();
            assert!(!h.replica.holds_ready());
        }
        // The new start is durable and the core hears it (the follower acknowledges it then).
        assert_eq!(h.replica.store.durable_index(), LogIndex(10));
        assert_eq!(h.replica.core.durable_index(), LogIndex(10));
        assert_eq!(h.replica.client_seqs_through, Some(LogIndex(10)));
        h.replica.step(append_entries(3, 2, (10, 2), 11, &[(2, b"eleven")]));
        h.settle();
        assert_eq!(h.replica.store.first_index(), LogIndex(11));
        assert_eq!(h.replica.store.durable_index(), LogIndex(11));
        assert_eq!(h.replica.readable_commit(), LogIndex(11));
        let read = h.replica.read_local(LogIndex(11), ReadLimit::entries(100)).unwrap();
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].data, "eleven");
    }
}

/// While a truncation or a log start is held, the core's commit index covers the leader's
/// entries, which the store does not hold: its old entries 2 and 3 of term 1 (never committed)
/// still sit there. Neither the lazy save of a commit-only change (every
/// `COMMIT_SAVE_INTERVAL_TICKS` ticks) nor the save at shutdown may claim them committed, or
/// the node, restarted, would serve them as the committed ones.
#[test]
fn a_held_write_saves_no_commit_over_the_entries_it_replaces() {
    let rt = runtime();
    let _entered = rt.enter();
    let leader_writes = [
        vec![append_entries(3, 2, (1, 1), 3, &[(2, b"new-2"), (2, b"new-3")])],
        vec![log_start(3, 2, 10), append_entries(3, 2, (10, 2), 11, &[(2, b"eleven")])],
    ];
    for (i, messages) in leader_writes.into_iter().enumerate() {
        let mut h = follower_on_a_full_disk();
        if i == 1 {
            refuse_the_reset(&h);
        }
        for message in messages {
            h.replica.step(message);
        }
        h.settle();
        assert!(h.replica.holds_ready(), "the write is held");
        for _ in 0..super::replica::COMMIT_SAVE_INTERVAL_TICKS + 1 {
            h.replica.tick();
            h.settle();
        }
        assert!(h.replica.holds_ready(), "the disk is still full");
        let saved = h.replica.store.hard_state().commit;
        assert_eq!(saved, LogIndex(1), "a lazy save covered old entries");
        h.replica.shut_down();
        let saved = h.replica.store.hard_state().commit;
        assert_eq!(saved, LogIndex(1), "the shutdown covered old entries");
        h.disk.set_faults(SimFaults::default());
        h.restart();
        assert_eq!(h.replica.readable_commit(), LogIndex(1), "old entries served as committed");
    }
}

/// A log start alone in its `Ready` (no entries after it yet): once the store has replaced the
/// log, durably, the core hears it (the start is the `Ready`'s persist point), and the follower
/// can acknowledge the start to its leader.
#[test]
fn a_log_start_alone_is_reported_durable_to_the_core() {
    let rt = runtime();
    let _entered = rt.enter();
    let mut h = Harness::new(3);
    h.replica.step(append_entries(2, 1, (0, 0), 1, &[(1, b"one"), (1, b"two")]));
    h.settle();
    assert_eq!(h.replica.core.durable_index(), LogIndex(2));
    h.replica.step(log_start(3, 2, 10));
    h.settle();
    assert_eq!(h.replica.store.first_index(), LogIndex(11));
    assert_eq!(h.replica.store.durable_index(), LogIndex(10));
    assert_eq!(h.replica.core.durable_index(), LogIndex(10), "the core never heard of the start");
}

/// While a `Ready` is held, nothing the core would answer can leave: a core that went on taking
/// its leader's heartbeats and its own ticks would pile up an answer per heartbeat (and its
/// elections, and a request per read) for as long as the disk stays full. It takes none; the
/// leader's next heartbeat after the wait brings it up to date.
#[test]
fn a_held_ready_piles_up_nothing_in_the_core() {
    let rt = runtime();
    let _entered = rt.enter();
    let mut h = follower_on_a_full_disk();
    h.replica.step(append_entries(3, 2, (1, 1), 3, &[(2, b"new-2"), (2, b"new-3")]));
    h.settle();
    assert!(h.replica.holds_ready());
    let heartbeat = |round| {
        let heartbeat = Heartbeat { leader_commit: LogIndex(3), read_context: Some(round) };
        from_peer(3, Term(2), MessageBody::Heartbeat(heartbeat))
    };
    let timeout = u64::from(h.replica.core.config().election_timeout_ticks);
    for round in 0..4 * timeout {
        h.replica.step(heartbeat(round));
        h.replica.tick();
        h.settle();
        assert!(h.replica.holds_ready(), "the disk is still full");
        assert!(!h.replica.core.has_ready(), "the core piles up what cannot leave");
    }
    assert_eq!(h.replica.core.role(), Role::Follower);
    // A read would wait on a request to the leader that cannot leave: it is refused at once.
    let mut read = read_index(&mut h);
    assert_eq!(read.try_recv().expect("answered"), Err(ReadIndexError::NotConfirmed));
    assert!(!h.replica.core.has_ready());
    h.disk.set_faults(SimFaults::default());
    h.replica.tick();
    h.settle();
    assert!(!h.replica.holds_ready());
    h.replica.step(heartbeat(4 * timeout));
    h.settle();
    assert_eq!(h.replica.readable_commit(), LogIndex(3));
}

/// A single voter wins its election in the `Ready` that saves its new term: when a full disk
/// refuses that save, the `Ready` is held, yet the core already leads. It takes no append until
/// the retry saves the term: the proposals would pile up in the core's memory for as long as the
/// disk stays full. (Found by a review: appends went on into the core, and the store's backlog
/// bound never saw them.)
#[test]
fn a_single_voter_whose_new_term_a_full_disk_refuses_takes_no_append() {
    let rt = runtime();
    let _entered = rt.enter();
    let mut h = Harness::new(1);
    h.settle_writes();
    let full =
        SimFaults { capacity_bytes: Some(0), no_space_next_write: true, ..SimFaults::default() };
    h.disk.set_faults(full);
    h.tick_until(Role::Leader);
    h.settle();
    assert!(h.replica.holds_ready(), "the refused save of the new term was not held");
    let last = h.replica.core.last_index();
    for _ in 0..3 {
        let mut rx = h.append(b"while full");
        h.turn();
        match rx.try_recv() {
            Ok(Err(AppendError::DiskFull { .. })) => {}
            other => panic!("an append while the disk is full: {other:?}"),
        }
        assert_eq!(h.replica.core.last_index(), last, "the core took a proposal");
        // The retry on the tick finds the disk full again.
        h.disk.set_faults(SimFaults { no_space_next_write: true, ..h.disk.faults() });
        h.replica.tick();
        h.settle();
        assert!(h.replica.holds_ready());
    }
    h.disk.set_faults(SimFaults::default());
    h.replica.tick();
    h.settle();
    assert!(!h.replica.holds_ready());
    let mut rx = h.append(b"with room");
    h.settle();
    let position = rx.try_recv().expect("answered").expect("appended");
    assert_eq!(position.first_index, last.next());
}

/// A log start of a newer leader, stepped in the same turn as the one that replaced this
/// follower's log but one the core keeps its log for (its start is at or below the commit index
/// the first one brought), must not take the place of the first one's clients: the log is
/// replaced after entry 10 all the same, and the table must still refuse retries of the
/// entries up to it (it would append them a second time should this node lead).
#[test]
fn a_log_start_the_core_keeps_its_log_for_does_not_lose_the_clients_of_the_one_it_carries_out() {
    let rt = runtime();
    let _entered = rt.enter();
    let mut h = Harness::new(3);
    let start = |index: u64, seq: u64| LogStart {
        index: LogIndex(index),
        term: Term(2),
        leader_commit: LogIndex(10),
        client_seqs: vec![(ClientId(9), ClientSeq(seq))],
    };
    h.replica.step(from_peer(3, Term(2), MessageBody::LogStart(start(10, 5))));
    h.replica.step(from_peer(2, Term(3), MessageBody::LogStart(start(5, 2))));
    h.settle();
    assert_eq!(h.replica.store.first_index(), LogIndex(11), "the log was replaced");
    for seq in 1..=5 {
        let found = h.replica.dedup.lookup(ClientId(9), ClientSeq(seq));
        assert_eq!(found, Lookup::Forgotten, "a retry of {seq} would be appended again");
    }
    assert_eq!(h.replica.dedup.lookup(ClientId(9), ClientSeq(6)), Lookup::Unknown);
}

/// A leader whose table holds more clients than a log start of its frame limit can carry
/// (8 KiB: 508 of them) sends the clients whose last entries are newest, in a message the
/// transport can encode; one that could not be encoded was dropped each time it was sent, and
/// the follower it was for never caught up.
#[test]
fn a_log_start_fits_in_a_frame_whatever_the_number_of_clients() {
    let rt = runtime();
    let _entered = rt.enter();
    let frame = 8 << 10;
    let mut h = Harness::with(3, |c| {
        c.transport.frame_size_bytes_max = frame;
        c.entry_size_bytes_max = 1 << 10;
    });
    for c in 0..1000u64 {
        h.replica.dedup.record(ClientId(c), ClientSeq(3), LogIndex(c + 1), Term(1));
    }
    let core_start = LogStart {
        index: LogIndex(2000),
        term: Term(1),
        leader_commit: LogIndex(2000),
        client_seqs: Vec::new(),
    };
    let start = h.replica.log_start_to_send(&core_start);
    let message = Message {
        log: LOG,
        from: NodeId(1),
        to: NodeId(2),
        term: Term(2),
        body: MessageBody::LogStart(start.clone()),
    };
    let mut encoder = FrameEncoder::new(FrameLimits::new(frame).unwrap());
    assert_eq!(encoder.encode_message(&message), Ok(()), "the log start cannot leave");
    assert_eq!(start.client_seqs.len(), 508);
    assert_eq!(start.client_seqs.first(), Some(&(ClientId(492), ClientSeq(3))));
    assert_eq!(start.client_seqs.last(), Some(&(ClientId(999), ClientSeq(3))));
}

/// A leader sends a follower it probes a log start again on every heartbeat answer (and every
/// read-index round) until the follower acknowledges it. Filling in the clients' numbers scans
/// the whole deduplication table (milliseconds of the shard's thread when it is full): it is
/// done once per start, not once per message.
#[test]
fn a_log_start_sent_again_does_not_scan_the_table_again() {
    static PAYLOAD: [u8; 1000] = [b'x'; 1000];
    let rt = runtime();
    let _entered = rt.enter();
    let mut h = Harness::with_small_segments(3);
    h.elect_with_node_2();
    let term = h.replica.core.term();
    for _ in 0..40 {
        drop(h.append(&PAYLOAD));
    }
    h.settle();
    let last = h.replica.store.last_index();
    let acked = AppendEntriesResponse::Success { match_index: last };
    h.replica.step(from_peer(2, term, MessageBody::AppendEntriesResponse(acked)));
    h.settle();
    assert_eq!(h.replica.core.commit_index(), last);
    for c in 0..100u64 {
        h.replica.dedup.record(ClientId(c), ClientSeq(1), LogIndex(1), Term(1));
    }
    let first = h.replica.compact(last).unwrap();
    assert!(first > LogIndex(2), "nothing compacted");
    // Node 3 lacks everything: it is told where the log starts, and answers heartbeats (its
    // answer to the log start never comes).
    let probe = h.replica.core.progress(NodeId(3)).unwrap();
    let reject = AppendEntriesResponse::Reject {
        rejected_index: probe.next_index.prev(),
        hint_index: LogIndex::ZERO,
        hint_term: Term(0),
    };
    h.replica.step(from_peer(3, term, MessageBody::AppendEntriesResponse(reject)));
    h.settle();
    for _ in 0..5 {
        let answer = HeartbeatResponse { read_context: None };
        h.replica.step(from_peer(3, term, MessageBody::HeartbeatResponse(answer)));
        h.settle();
    }
    let (built, scanned) = h.replica.log_starts_built;
    assert!(built >= 6, "the leader sent {built} log starts");
    assert_eq!(scanned, 1, "{built} log starts scanned the table {scanned} times");
}

/// A remote client's batch of tagged entries, its numbers `seqs`, each with `payload`; not yet
/// driven.
fn append_tagged(
    h: &mut Harness,
    client: u64,
    seqs: std::ops::Range<u64>,
    payload: &'static [u8],
) -> AppendRx {
    let items = seqs
        .map(|seq| {
            TaggedPayload::new(ClientId(client), ClientSeq(seq), Bytes::from_static(payload))
        })
        .collect();
    let (tx, rx) = oneshot::channel();
    h.replica.append_remote(items, AppendReply::Local(tx), clock::now());
    rx
}

/// The tagged entries the store holds.
fn tagged_entries(h: &Harness) -> usize {
    let first = h.replica.store.first_index();
    let entries = h.replica.store.read(first, usize::MAX).unwrap();
    entries.iter().filter(|e| e.kind == EntryKind::Tagged).count()
}

/// Compaction saves the clients' numbers before the entries go, and a restart rebuilds the
/// deduplication table from that save and the entries left: a retry of an entry that went is
/// refused, never appended again, and one of an entry still there is answered with its
/// position; after a clean stop and after a crash alike. (The table used to be rebuilt from the
/// entries alone, and took retries of the compacted ones for new appends.)
#[test]
fn a_restart_after_compaction_appends_no_retry_of_the_entries_that_went() {
    static PAYLOAD: [u8; 1000] = [b'x'; 1000];
    let rt = runtime();
    let _entered = rt.enter();
    for clean_stop in [true, false] {
        let mut h = Harness::with_small_segments(1);
        h.elect();
        let mut positions = Vec::new();
        for seq in 1..=40 {
            let mut rx = append_tagged(&mut h, 7, seq..seq + 1, &PAYLOAD);
            h.settle();
            positions.push(rx.try_recv().expect("answered").expect("appended"));
        }
        let first = h.replica.compact(h.replica.store.last_index()).unwrap();
        assert!(
            first > positions[5].first_index,
            "too little compacted: the log starts at {first}"
        );
        let kept = positions.iter().filter(|p| p.first_index >= first).count();
        assert!(kept > 0, "nothing left to retry against");
        let names = h.disk.file_names(Path::new("/data/log-0"));
        assert!(names.iter().any(|n| n == crate::storage::CLIENT_SEQS_FILE), "{names:?}");
        if clean_stop {
            h.replica.shut_down();
        }
        h.restart();
        h.elect();
        for (seq, position) in (1..=40).zip(&positions) {
            let mut rx = append_tagged(&mut h, 7, seq..seq + 1, &PAYLOAD);
            h.settle();
            let answer = rx.try_recv().expect("answered");
            if position.first_index < first {
                assert!(answer.is_err(), "the retry of {seq} (compacted) got {answer:?}");
            } else {
                assert_eq!(answer, Ok(*position), "the retry of {seq} is answered elsewhere");
            }
        }
        assert_eq!(tagged_entries(&h), kept, "a retry was appended again");
        assert!(h.replica.failed.is_none(), "{:?}", h.replica.failed);
    }
}

/// A single voter on 16 KiB segments that leads and holds 40 entries of 1,000 bytes, one per
/// append of client 7 (sequence numbers 1 to 40), all committed: several sealed segments to
/// compact. Call inside a runtime.
fn small_segments_leader_with_40_tagged_entries() -> Harness {
    static PAYLOAD: [u8; 1000] = [b'x'; 1000];
    let mut h = Harness::with_small_segments(1);
    h.elect();
    for seq in 1..=40 {
        drop(append_tagged(&mut h, 7, seq..seq + 1, &PAYLOAD));
        h.settle();
    }
    h
}

/// A save before a compaction that a full disk refuses does not hold the compaction back
/// (compaction is what frees space): the entries go, the log goes on, and the next tick after
/// the retry interval saves. A save that fails otherwise (an I/O error) does hold it back.
#[test]
fn a_full_disk_does_not_hold_compaction_back_but_an_io_error_does() {
    static PAYLOAD: [u8; 1000] = [b'x'; 1000];
    let rt = runtime();
    let _entered = rt.enter();
    let mut h = small_segments_leader_with_40_tagged_entries();
    let last = h.replica.store.last_index();
    h.disk.set_faults(SimFaults { fail_next_sync: true, ..SimFaults::default() });
    let refused = h.replica.compact(last);
    assert!(
        matches!(refused, Err(crate::error::CompactError::ClientSeqs(_))),
        "compaction after a failed save: {refused:?}"
    );
    assert_eq!(h.replica.store.first_index(), LogIndex(1), "entries went without a save");
    assert!(h.replica.failed.is_none(), "{:?}", h.replica.failed);
    let writes = h.disk.stats().writes;
    assert!(h.replica.compact(last).is_err());
    assert_eq!(h.disk.stats().writes, writes, "a save tried again before its interval");
    for _ in 0..super::replica::COMMIT_SAVE_INTERVAL_TICKS {
        h.replica.tick();
        h.settle();
    }
    // The disk is full now.
    let saved = h.replica.client_seqs_through;
    h.disk.set_faults(SimFaults { no_space_next_write: true, ..SimFaults::default() });
    let first = h.replica.compact(last).expect("a full disk held compaction back");
    assert!(first > LogIndex(1), "nothing compacted");
    assert_eq!(h.replica.client_seqs_through, saved, "a save counted that the disk refused");
    assert!(h.replica.failed.is_none(), "{:?}", h.replica.failed);
    // The log goes on; an early retry does not write again.
    let mut rx = append_tagged(&mut h, 7, 41..42, &PAYLOAD);
    h.settle();
    assert!(rx.try_recv().expect("answered").is_ok());
    let writes = h.disk.stats().writes;
    h.replica.tick();
    assert_eq!(h.disk.stats().writes, writes, "a save tried again before its interval");
    // Once the interval passed, a tick saves (the log now starts after the last save).
    for _ in 0..super::replica::COMMIT_SAVE_INTERVAL_TICKS {
        h.replica.tick();
        h.settle();
    }
    let through = h.replica.client_seqs_through.expect("no save after the compaction");
    assert!(through >= first.prev(), "saved through {through}, the log starts at {first}");
    // Restarted, the retries of the entries that went are refused.
    h.restart();
    h.elect();
    let mut rx = append_tagged(&mut h, 7, 1..2, &PAYLOAD);
    h.settle();
    assert!(rx.try_recv().expect("answered").is_err(), "a compacted entry appended again");
}

/// A number lost in a leader change while later ones committed (a gap) is appended when
/// retried, after a restart as before it: the save holds the gap, not only the highest number.
/// (A save used to hold the highest number alone, and a restart refused every number below it
/// that the rebuilt entries did not show, so the lost append could never be made.)
#[test]
fn a_number_lost_before_a_restart_is_appended_when_retried_after_it() {
    static PAYLOAD: [u8; 1000] = [b'x'; 1000];
    let rt = runtime();
    let _entered = rt.enter();
    let mut h = Harness::with_small_segments(1);
    h.elect();
    // Numbers 3 and 38 never reach the log.
    let lost = [3, 38];
    let mut positions = HashMap::new();
    for seq in (1..=40).filter(|s| !lost.contains(s)) {
        let mut rx = append_tagged(&mut h, 7, seq..seq + 1, &PAYLOAD);
        h.settle();
        positions.insert(seq, rx.try_recv().expect("answered").expect("appended"));
    }
    let first = h.replica.compact(h.replica.store.last_index()).unwrap();
    assert!(first > positions[&5].first_index, "too little compacted: the log starts at {first}");
    h.restart();
    h.elect();
    let before = tagged_entries(&h);
    for seq in lost {
        let mut rx = append_tagged(&mut h, 7, seq..seq + 1, &PAYLOAD);
        h.settle();
        let answer = rx.try_recv().expect("answered");
        let position = answer.unwrap_or_else(|e| panic!("the lost {seq} was refused: {e:?}"));
        assert!(position.first_index > positions[&40].first_index, "{seq} at {position:?}");
    }
    assert_eq!(tagged_entries(&h), before + lost.len());
    // The numbers around them stay as they were: refused (compacted) or answered.
    for seq in [2, 4, 37, 39] {
        let mut rx = append_tagged(&mut h, 7, seq..seq + 1, &PAYLOAD);
        h.settle();
        let answer = rx.try_recv().expect("answered");
        if positions[&seq].first_index < first {
            assert!(answer.is_err(), "the retry of {seq} (compacted) got {answer:?}");
        } else {
            assert_eq!(answer, Ok(positions[&seq]), "the retry of {seq}");
        }
    }
    assert_eq!(tagged_entries(&h), before + lost.len(), "a retry was appended again");
}

/// A retry of an entry that a save settled but the restored commit index does not cover yet
/// (the commit index is saved less often than the clients' numbers) waits for the entry's
/// commit under the new leader and is answered with its position, not refused.
#[test]
fn a_retry_after_a_restart_waits_for_the_entry_a_save_settled_ahead_of_the_commit() {
    static PAYLOAD: [u8; 1000] = [b'x'; 1000];
    let rt = runtime();
    let _entered = rt.enter();
    let mut h = Harness::new(1);
    h.elect();
    let mut positions = Vec::new();
    for seq in 1..=10 {
        let mut rx = append_tagged(&mut h, 7, seq..seq + 1, &PAYLOAD);
        h.settle();
        positions.push(rx.try_recv().expect("answered").expect("appended"));
    }
    // A save of the clients' numbers (through the applied index), as a tick makes every
    // `CLIENT_SEQS_SAVE_ENTRIES` entries.
    h.replica.save_client_seqs().unwrap();
    let through = h.replica.client_seqs_through.expect("saved");
    assert!(through >= positions[9].first_index);
    h.restart();
    // Leader, but no turn more: the new term's first entry is not committed yet.
    h.tick_until(Role::Leader);
    let position = positions[7];
    assert!(
        h.replica.core.commit_index() < position.first_index,
        "the restored commit index {} covers the entry at {}: nothing to wait for",
        h.replica.core.commit_index(),
        position.first_index
    );
    let mut rx = append_tagged(&mut h, 7, 8..9, &PAYLOAD);
    h.settle();
    assert_eq!(rx.try_recv().expect("answered"), Ok(position));
    assert_eq!(tagged_entries(&h), 10, "the retry was appended again");
}

/// The clients' numbers a leader's log start carries are saved before the old log goes: the
/// follower, restarted, still refuses retries of the entries it never saw.
#[test]
fn a_log_starts_clients_outlive_a_restart() {
    let rt = runtime();
    let _entered = rt.enter();
    let mut h = Harness::new(3);
    let start = LogStart {
        index: LogIndex(10),
        term: Term(2),
        leader_commit: LogIndex(10),
        client_seqs: vec![(ClientId(9), ClientSeq(5))],
    };
    h.replica.step(from_peer(3, Term(2), MessageBody::LogStart(start)));
    h.settle();
    assert_eq!(h.replica.store.first_index(), LogIndex(11), "the log was replaced");
    h.restart();
    for seq in 1..=5 {
        let found = h.replica.dedup.lookup(ClientId(9), ClientSeq(seq));
        assert_eq!(found, Lookup::Forgotten, "a retry of {seq} would be appended again");
    }
    assert_eq!(h.replica.dedup.lookup(ClientId(9), ClientSeq(6)), Lookup::Unknown);
}

/// Every `CLIENT_SEQS_SAVE_ENTRIES` applied entries, a tick saves the clients' numbers, so a
/// restart scans about that many entries at most beyond the recent window, not the whole log.
#[test]
fn the_clients_numbers_are_saved_as_entries_are_applied() {
    use super::dedup::CLIENT_SEQS_SAVE_ENTRIES;
    let rt = runtime();
    let _entered = rt.enter();
    let mut h = Harness::new(1);
    h.elect();
    h.replica.tick();
    assert_eq!(h.replica.client_seqs_through, None, "saved with nothing to save");
    let batch = 1000;
    let mut seq = 1;
    while h.replica.store.last_index().get() < CLIENT_SEQS_SAVE_ENTRIES {
        drop(append_tagged(&mut h, 7, seq..seq + batch, b"x"));
        seq += batch;
        h.settle();
    }
    h.replica.tick();
    let through = h.replica.client_seqs_through.expect("no save");
    assert_eq!(through, h.replica.store.last_index());
    h.restart();
    assert_eq!(h.replica.client_seqs_through, Some(through), "the save did not survive");
    assert_eq!(h.replica.dedup.lookup(ClientId(7), ClientSeq(1)), Lookup::Forgotten);
}

/// A subscription from 0 asks for the first entry this node has, wherever compaction left it.
/// A follower that holds nothing yet takes its first stored index (1) for it; when the leader,
/// which compacted, then starts this follower's log after 10, the subscriber, given nothing
/// yet, follows the log's start to 11 instead of ending as compacted. (Found by a review:
/// the subscriber was ended with `Compacted { requested: 1, first_index: 11 }`.) One that was
/// given an entry already is ended: what it asked for next is gone from this node.
#[test]
fn a_subscriber_from_0_follows_a_log_start_until_it_is_given_an_entry() {
    let rt = runtime();
    let _entered = rt.enter();
    let mut h = Harness::new(3);
    let mut from_start = h.subscribe(0);
    let (entries, end) = drain(&mut from_start);
    assert_eq!((entries.len(), end.as_ref()), (0, None));
    // The leader, node 3 in term 2, compacted through 10: the follower's log starts after 10.
    h.replica.step(log_start(3, 2, 10));
    h.settle();
    assert_eq!(h.replica.store.first_index(), LogIndex(11));
    h.replica.step(append_entries(3, 2, (10, 2), 11, &[(2, b"eleven")]));
    h.settle();
    let (entries, end) = drain(&mut from_start);
    assert!(end.is_none(), "a subscriber from 0 given nothing was ended: {end:?}");
    assert_eq!(entries.iter().map(|e| e.index.get()).collect::<Vec<_>>(), [11]);

    // Given entry 11, it no longer follows the start: a later log start past 12 ends it.
    h.replica.step(log_start(2, 3, 20));
    h.settle();
    assert_eq!(h.replica.store.first_index(), LogIndex(21));
    h.replica.step(append_entries(2, 3, (20, 3), 21, &[(3, b"twenty-one")]));
    h.settle();
    let (entries, end) = drain(&mut from_start);
    assert!(entries.is_empty(), "entries past the gap: {entries:?}");
    assert_eq!(
        end,
        Some(ReadError::Compacted { requested: LogIndex(12), first_index: LogIndex(21) })
    );
}

/// A full disk that refuses the save of a new term (a new leader's first heartbeat) stops
/// nothing for good either: the store is not poisoned, the `Ready` is held whole (nothing that
/// depends on the term leaves before it is durable), and the first tick with room saves it and
/// carries the rest out. (Found by a review: the save poisoned the log, so on a disk already
/// full a truncation that comes with a new leader's term was never held at all.)
#[test]
fn a_new_term_a_full_disk_refuses_is_saved_once_there_is_room() {
    let rt = runtime();
    let _entered = rt.enter();
    let mut h = follower_on_a_full_disk();
    // Node 2 leads term 3; its first message replaces this follower's entries 2 and 3.
    h.replica.step(append_entries(2, 3, (1, 1), 3, &[(3, b"new-2"), (3, b"new-3")]));
    h.settle();
    for _ in 0..3 {
        assert!(h.replica.holds_ready(), "the refused save was not held");
        assert!(h.replica.failed.is_none(), "{:?}", h.replica.failed);
        assert!(h.replica.store.poisoned().is_none(), "a full disk poisoned the log");
        assert_eq!(h.replica.store.hard_state().term, Term(2), "the refused term was saved");
        assert_eq!(h.replica.readable_commit(), LogIndex(1), "a commit served past the store");
        let stored = h.replica.store.read(LogIndex(1), 1 << 20).unwrap();
        let terms: Vec<u64> = stored.iter().map(|e| e.term.get()).collect();
        assert_eq!(terms, [1, 1, 1], "the refused write changed the log");
        // The retry on the tick finds the disk full again.
        h.disk.set_faults(SimFaults { no_space_next_write: true, ..h.disk.faults() });
        h.replica.tick();
        h.settle();
    }
    h.disk.set_faults(SimFaults::default());
    h.replica.tick();
    h.settle();
    assert!(!h.replica.holds_ready());
    assert_eq!(h.replica.store.hard_state().term, Term(3));
    assert_eq!(h.replica.core.durable_index(), LogIndex(3));
    assert_eq!(h.replica.readable_commit(), LogIndex(3));
    let read = h.replica.read_local(LogIndex(1), ReadLimit::entries(100)).unwrap();
    let texts: Vec<&[u8]> = read.iter().map(|e| &e.data[..]).collect();
    assert_eq!(texts, [&b"one"[..], b"new-2", b"new-3"]);
}

/// The lazy save of a commit index that moved alone is optional (the commit index needs no
/// durability for safety): a full disk that refuses it stops nothing, and a later interval
/// saves it. (Found by a review: the refusal poisoned the log.)
#[test]
fn a_commit_save_a_full_disk_refuses_is_made_later() {
    let rt = runtime();
    let _entered = rt.enter();
    let mut h = Harness::new(3);
    h.replica.step(append_entries(2, 1, (0, 0), 0, &[(1, b"one"), (1, b"two"), (1, b"three")]));
    // The zero-fill ahead of the writer finishes.
    h.settle_writes();
    assert_eq!(h.replica.store.durable_index(), LogIndex(3));
    let heartbeat = || {
        let heartbeat = Heartbeat { leader_commit: LogIndex(3), read_context: None };
        from_peer(2, Term(1), MessageBody::Heartbeat(heartbeat))
    };
    h.replica.step(heartbeat());
    h.settle();
    assert_eq!(h.replica.readable_commit(), LogIndex(3));
    let saved_before = h.replica.store.hard_state().commit;
    assert!(saved_before < LogIndex(3), "saved at once: {saved_before}");
    h.disk.set_faults(SimFaults { no_space_next_write: true, ..SimFaults::default() });
    let interval = super::replica::COMMIT_SAVE_INTERVAL_TICKS;
    for _ in 0..interval + 1 {
        h.replica.step(heartbeat());
        h.replica.tick();
        h.settle();
    }
    assert!(h.replica.failed.is_none(), "{:?}", h.replica.failed);
    assert!(h.replica.store.poisoned().is_none(), "a full disk poisoned the log");
    assert_eq!(h.replica.store.hard_state().commit, saved_before, "the refused save changed it");
    // The fault refused one write; the next interval saves.
    for _ in 0..interval + 1 {
        h.replica.step(heartbeat());
        h.replica.tick();
        h.settle();
    }
    assert_eq!(h.replica.store.hard_state().commit, LogIndex(3));
}

/// A batch whose write a full disk refuses is withdrawn and retried, once per tick rather than
/// on every loop turn (a refused write completes at once and would wake the loop to fail
/// again, spinning), and the appends wait for it; the replica notes the full disk once and
/// forgets it once a batch is durable again.
#[test]
fn a_batch_a_full_disk_refuses_is_retried_every_tick() {
    let rt = runtime();
    let _entered = rt.enter();
    let mut h = Harness::new(1);
    h.elect();
    // The zero-fill ahead of the writer finishes: the next write is the batch's.
    h.settle_writes();
    let mut rx = h.append(b"one");
    h.disk.set_faults(SimFaults { no_space_next_write: true, ..SimFaults::default() });
    h.settle();
    let noted = h.replica.disk_full.expect("the full disk was not noted");
    for _ in 0..3 {
        // Turns without a tick retry nothing.
        let writes = h.disk.stats().writes;
        h.settle();
        h.settle();
        assert_eq!(h.disk.stats().writes, writes, "retried without a tick");
        // A tick retries, and the disk refuses again.
        h.disk.set_faults(SimFaults { no_space_next_write: true, ..SimFaults::default() });
        h.replica.tick();
        h.settle();
        assert!(rx.try_recv().is_err(), "answered although its batch was refused");
        assert!(h.replica.failed.is_none(), "{:?}", h.replica.failed);
        assert!(!h.disk.faults().no_space_next_write, "the tick did not retry");
        let now = h.replica.disk_full.expect("the full disk was forgotten");
        assert_eq!((now.since, now.logged), (noted.since, noted.logged), "noted again");
    }
    h.disk.set_faults(SimFaults::default());
    h.replica.tick();
    h.settle();
    let position = rx.try_recv().expect("answered").expect("appended");
    assert_eq!(position.first_index, LogIndex(2), "after the leader's no-op");
    assert!(h.replica.disk_full.is_none(), "a durable batch did not end the full disk");
}

/// A committed entry this node cannot read back (its record damaged after the node opened the
/// log from the sealed segment's index file) stops the log on this node with the reason, rather
/// than leaving the deduplication table without every client entry after it (a retry of one
/// could then be appended twice, were this node to lead) and applying, and so compacting,
/// nothing more. (Found by a review: the failure was logged and applying silently stopped.)
#[test]
fn a_committed_entry_that_cannot_be_read_back_stops_the_log_here() {
    let rt = runtime();
    let _entered = rt.enter();
    let mut h = Harness::with_small_segments(3);
    let payloads: Vec<(u64, &'static [u8])> =
        (1..=12u8).map(|i| (1, &*Box::leak(vec![i; 2000].into_boxed_slice()))).collect();
    h.replica.step(append_entries(2, 1, (0, 0), 1, &payloads));
    h.settle();
    assert_eq!(h.replica.store.durable_index(), LogIndex(12));
    assert!(h.replica.store.segment_extents().count() > 1, "no segment was sealed");
    // Entry 3's payload is damaged; reopened, the node takes the sealed segment from its
    // index file without reading its records.
    let path = Path::new("/data/log-0/00000000000000000001.seg");
    let bytes = h.disk.file_bytes(path).expect("the first segment");
    let at = bytes.windows(2000).position(|w| w.iter().all(|&b| b == 3)).expect("entry 3");
    assert!(h.disk.flip_bit(path, at + 100, 0));
    h.restart();
    assert!(h.replica.failed.is_none(), "{:?}", h.replica.failed);
    let heartbeat = Heartbeat { leader_commit: LogIndex(12), read_context: None };
    h.replica.step(from_peer(2, Term(1), MessageBody::Heartbeat(heartbeat)));
    h.settle();
    let failed = h.replica.failed.clone().expect("the log went on without entry 3 applied");
    assert!(failed.contains("to apply them") && failed.contains("(index 3)"), "{failed}");
}

/// The leader's answer to a read this follower forwarded before it restarted does not answer a
/// read of the new process, which started after entries 2 and 3 were acknowledged: read ids do
/// not repeat across restarts. (Found by a review: ids started at 1 in every process, and the
/// old read's index, 1, answered the new read.)
#[test]
fn a_read_answer_meant_for_the_previous_process_answers_no_new_read() {
    let rt = runtime();
    let _entered = rt.enter();
    let mut h = Harness::new(3);
    let (mut before, old_id) = forwarded_read(&mut h);
    assert!(before.try_recv().is_err(), "forwarded, waiting for the leader");
    h.restart();
    // Entries 2 and 3 commit after the restart; then a new linearizable read starts.
    h.replica.step(append_entries(2, 1, (1, 1), 3, &[(1, b"two"), (1, b"three")]));
    h.settle();
    assert_eq!(h.replica.readable_commit(), LogIndex(3));
    let mut after = read_index(&mut h);
    h.settle();
    let new_id = h.replica.read_indexes.last_id();
    assert_ne!(old_id, new_id, "a read id repeated across a restart");
    // The leader's answer to the previous process's read (its commit index then, 1), and one
    // from a node that is not the leader, answer nothing.
    answer_read(&mut h, 2, old_id, 1);
    answer_read(&mut h, 3, new_id, 1);
    assert!(after.try_recv().is_err(), "answered by a read that was not its own");
    // The leader's answer to this read does.
    answer_read(&mut h, 2, new_id, 3);
    assert_eq!(after.try_recv().expect("answered"), Ok(LogIndex(3)));
}

/// A `Ready` held by a full disk was taken from the core, whose log is the held one's: the
/// durability of a batch whose entries it replaces is not reported meanwhile. After an
/// overwrite and back in one turn (entries 4 and 5 of term 1 replaced by term 2's 4, then
/// written back by term 3's leader), a report of the first batch's (5, term 1) would be taken
/// for the rewritten entries, and their acknowledgement would leave before the retry made them
/// durable. (Found by a review: `reap` reported the old point while the `Ready` was held.)
#[test]
fn a_held_ready_lets_no_replaced_batch_acknowledge_its_entries() {
    let rt = runtime();
    let _entered = rt.enter();
    // Five voters, so that leader 2 can win term 3 without node 1 and node 3.
    let mut h = Harness::new(5);
    h.replica.step(append_entries(2, 1, (0, 0), 1, &[(1, b"one"), (1, b"two"), (1, b"three")]));
    h.settle_writes();
    assert_eq!(h.replica.store.durable_index(), LogIndex(3));
    h.disk.set_manual(true);
    // Entries 4 and 5 of term 1, written, not durable yet.
    h.replica.step(append_entries(2, 1, (3, 1), 1, &[(1, b"four"), (1, b"five")]));
    h.turn();
    assert_eq!(
        (h.replica.store.last_index(), h.replica.store.durable_index()),
        (LogIndex(5), LogIndex(3))
    );
    // In one turn: term 2's leader replaces 4, term 3's leader writes 4 and 5 of term 1 back;
    // the save of term 3 finds no room, and the `Ready` is held.
    h.replica.step(append_entries(3, 2, (3, 1), 1, &[(2, b"four-b")]));
    h.replica.step(append_entries(2, 3, (3, 1), 1, &[(1, b"four"), (1, b"five")]));
    h.disk.set_faults(SimFaults { no_space_next_write: true, ..SimFaults::default() });
    h.turn();
    assert!(h.replica.holds_ready());
    // The first batch completes while the `Ready` is held; then room comes back and the retry
    // carries the `Ready` out (truncate after 3, write 4 and 5 again).
    h.disk.run_pending(usize::MAX);
    h.turn();
    assert!(h.replica.holds_ready());
    h.disk.set_faults(SimFaults::default());
    h.replica.sent.clear();
    h.replica.tick();
    h.replica.drive(&h.room_tx);
    let durable = h.replica.store.durable_index();
    let acked = h
        .replica
        .sent
        .iter()
        .filter_map(|m| match m.body {
            MessageBody::AppendEntriesResponse(AppendEntriesResponse::Success { match_index }) => {
                Some(match_index)
            }
            _ => None,
        })
        .max();
    assert!(
        acked.is_none_or(|acked| acked <= durable),
        "acknowledged up to {acked:?} while the store is durable only up to {durable}"
    );
}

/// The points a held `Ready` drops cost no acknowledgement: a batch covering 2 to 5 has its
/// point at 5; a `Ready` replacing 4 is held (its term's save refused), which drops that point
/// though 2 and 3 stay; the batch completes while held; once the retry carries the `Ready` out,
/// the new entry 4's point covers 2 and 3, and the follower acknowledges 4.
#[test]
fn a_held_ready_that_drops_a_straddling_point_still_acknowledges_after_the_retry() {
    let rt = runtime();
    let _entered = rt.enter();
    let mut h = Harness::new(3);
    h.replica.step(append_entries(2, 1, (0, 0), 1, &[(1, b"one")]));
    h.settle_writes();
    assert_eq!(h.replica.store.durable_index(), LogIndex(1));
    h.disk.set_manual(true);
    let entries: [(u64, &[u8]); 4] = [(1, b"two"), (1, b"three"), (1, b"four"), (1, b"five")];
    h.replica.step(append_entries(2, 1, (1, 1), 1, &entries));
    h.turn();
    assert_eq!(
        (h.replica.store.last_index(), h.replica.store.durable_index()),
        (LogIndex(5), LogIndex(1))
    );
    // Term 2's leader, node 3, replaces 4: the save of term 2 is refused and the Ready held.
    h.replica.step(append_entries(3, 2, (3, 1), 1, &[(2, b"four-b")]));
    h.disk.set_faults(SimFaults { no_space_next_write: true, ..SimFaults::default() });
    h.turn();
    assert!(h.replica.holds_ready());
    h.disk.run_pending(usize::MAX);
    h.turn();
    assert!(h.replica.holds_ready());
    assert_eq!(h.replica.store.durable_index(), LogIndex(5));
    assert_eq!(h.replica.core.durable_index(), LogIndex(1), "a replaced point was reported");
    // Room again: the retry carries the Ready out, and the disk completes everything.
    h.disk.set_faults(SimFaults::default());
    h.disk.set_manual(false);
    h.replica.sent.clear();
    h.replica.tick();
    h.settle_writes();
    assert!(!h.replica.holds_ready());
    assert_eq!(h.replica.store.durable_index(), LogIndex(4));
    assert_eq!(h.replica.core.durable_index(), LogIndex(4), "durable entries never reported");
    let acked = h
        .replica
        .sent
        .iter()
        .filter(|m| m.to == NodeId(3))
        .filter_map(|m| match m.body {
            MessageBody::AppendEntriesResponse(AppendEntriesResponse::Success { match_index }) => {
                Some(match_index)
            }
            _ => None,
        })
        .max();
    assert_eq!(acked, Some(LogIndex(4)), "sent: {:?}", h.replica.sent);
}

/// An append whose entry commits in the loop turn its leader is deposed (a follower's
/// acknowledgement, then a later term's leader, both stepped before the drive) is answered with
/// its position, not `LeadershipLost`: a local caller, with no deduplication, would append it
/// again. (Found by a review: the role change failed every waiter before the commit answered
/// them.)
#[test]
fn an_append_committed_in_the_turn_its_leader_is_deposed_is_answered_committed() {
    let rt = runtime();
    let _entered = rt.enter();
    let mut h = Harness::new(3);
    h.elect_with_node_2();
    let term = h.replica.core.term();
    let mut rx = h.append(b"one");
    h.settle();
    assert!(rx.try_recv().is_err(), "answered before a majority held it");
    let last = h.replica.core.last_index();
    let ack = AppendEntriesResponse::Success { match_index: last };
    h.replica.step(from_peer(2, term, MessageBody::AppendEntriesResponse(ack)));
    assert!(h.replica.core.commit_index() >= last, "not committed");
    h.replica.step(append_entries(3, term.get() + 1, (last.get(), term.get()), last.get(), &[]));
    h.settle();
    let answer = rx.try_recv().expect("answered");
    assert_eq!(answer.map(|position| position.first_index), Ok(last));
}

/// A leader whose own disk stalls while its followers commit its appends holds what it has not
/// written in memory up to a bound, then refuses appends as backlogged until its disk catches
/// up. (Found by a review: with the followers acknowledging, every append was taken and
/// acknowledged while the leader's unwritten tail grew without bound.)
#[test]
fn a_leader_whose_disk_stalls_refuses_appends_past_its_backlog_bound() {
    static PAYLOAD: [u8; 512 << 10] = [b'x'; 512 << 10];
    let rt = runtime();
    let _entered = rt.enter();
    let mut h = Harness::new(3);
    h.elect_with_node_2();
    h.settle_writes();
    let term = h.replica.core.term();
    h.disk.set_manual(true);
    let limit = crate::runtime::requests::LEADER_UNDURABLE_BYTES_MAX;
    let mut refused = None;
    for _ in 0..1000 {
        let mut rx = h.append(&PAYLOAD);
        h.turn();
        let last = h.replica.core.last_index();
        for peer in [2, 3] {
            let ack = AppendEntriesResponse::Success { match_index: last };
            h.replica.step(from_peer(peer, term, MessageBody::AppendEntriesResponse(ack)));
        }
        h.turn();
        match rx.try_recv() {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                refused = Some(e);
                break;
            }
            Err(e) => panic!("not answered: {e:?}"),
        }
    }
    let Some(AppendError::Backlogged { undurable_bytes, limit_bytes, .. }) = refused else {
        panic!("never refused: {refused:?}");
    };
    assert_eq!(limit_bytes, limit);
    assert!(undurable_bytes > limit && undurable_bytes <= limit + PAYLOAD.len());
    // The disk catches up: appends are taken again.
    h.disk.set_manual(false);
    h.settle_writes();
    let mut rx = h.append(&PAYLOAD);
    h.turn();
    assert!(rx.try_recv().is_err(), "refused again: {:?}", rx.try_recv());
}

/// A follower's read whose index its leader confirmed, and which then hears from no leader (the
/// leader cut off right after answering), is failed with `NoLeader` once the follower loses its
/// leader, rather than waiting as long as the partition lasts. (Found by a review: nothing but
/// the commit index, a storage failure or shutdown answered it.)
#[test]
fn a_confirmed_follower_read_fails_when_its_leader_is_lost() {
    let rt = runtime();
    let _entered = rt.enter();
    let mut h = Harness::new(3);
    let (mut rx, request_id) = forwarded_read(&mut h);
    answer_read(&mut h, 2, request_id, 3);
    assert!(rx.try_recv().is_err(), "answered before this follower could serve index 3");
    // No leader is heard from again: the follower's election timeout passes.
    for _ in 0..1000 {
        h.replica.tick();
        h.settle();
        if h.replica.core.leader().is_none() {
            break;
        }
    }
    assert_eq!(h.replica.core.leader(), None, "the follower kept its leader");
    assert_eq!(rx.try_recv().expect("answered"), Err(ReadIndexError::NoLeader));
}

/// A follower's read whose confirmed index it does not reach (its leader keeps it, but the index
/// is far ahead: a follower catching up a long backlog, or a leader that answered an index it
/// never commits) fails with `Lagging` after ten election timeouts instead of waiting without
/// bound. (Found by a review: such a read waited as long as the leader kept this follower.)
#[test]
fn a_confirmed_follower_read_that_stays_unreadable_fails_as_lagging() {
    let rt = runtime();
    let _entered = rt.enter();
    let mut h = Harness::new(3);
    let (mut rx, request_id) = forwarded_read(&mut h);
    let far = u64::MAX / 4;
    answer_read(&mut h, 2, request_id, far);
    let limit = h.replica.core.config().election_timeout_ticks
        * crate::runtime::read_index::CONFIRMED_WAIT_ELECTION_TIMEOUTS;
    for tick in 0..limit {
        assert!(rx.try_recv().is_err(), "answered after {tick} ticks");
        // The leader keeps this follower: a heartbeat every tick.
        let heartbeat = Heartbeat { leader_commit: LogIndex(1), read_context: None };
        h.replica.step(from_peer(2, Term(1), MessageBody::Heartbeat(heartbeat)));
        h.replica.tick();
        h.settle();
        assert_eq!(h.replica.core.leader(), Some(NodeId(2)));
    }
    assert_eq!(rx.try_recv().expect("answered"), Err(ReadIndexError::Lagging(LogIndex(far))));
}

/// A linearizable read this follower forwarded to its leader before a full disk made it hold a
/// `Ready` is answered (`NotConfirmed`: the caller retries, at the leader say) rather than for
/// as long as the disk stays full. While it holds, the core takes no message (the leader's
/// answer is dropped) and no tick (the forwarded request never ages out). (Found by a review:
/// the read waited through every tick of the full disk, 20 election timeouts here, and would
/// for as long as the disk stayed full.)
#[test]
fn a_read_forwarded_before_a_full_disk_held_the_follower_is_answered() {
    let rt = runtime();
    let _entered = rt.enter();
    let mut h = follower_on_a_full_disk();
    // Forwarded to node 3, the leader of term 2.
    let mut rx = read_index(&mut h);
    h.settle();
    assert!(rx.try_recv().is_err(), "no answer yet");
    // Node 3's entries replace 2 and 3: the full disk refuses the truncation.
    h.replica.step(append_entries(3, 2, (1, 1), 3, &[(2, b"new-2"), (2, b"new-3")]));
    h.settle();
    assert!(h.replica.holds_ready());
    // The leader's answer arrives meanwhile, and is dropped with every message.
    let answer = ReadIndexResponse {
        request_id: h.replica.read_indexes.last_id(),
        read_index: Some(LogIndex(1)),
    };
    h.replica.step(from_peer(3, Term(2), MessageBody::ReadIndexResponse(answer)));
    let timeout = h.replica.core.config().election_timeout_ticks;
    for _ in 0..timeout * 20 {
        h.replica.tick();
        h.settle();
    }
    assert!(h.replica.holds_ready(), "the disk is still full");
    assert_eq!(
        rx.try_recv().expect("the read is answered while the disk stays full"),
        Err(ReadIndexError::NotConfirmed)
    );
}

/// A leader deposed by a later term that a full disk refuses to save holds that `Ready`; the
/// appends waiting for their commit are answered all the same (`LeadershipLost`: their entries
/// may still commit) rather than for as long as the disk stays full. (Found by a review: the
/// role change was only looked at once the held `Ready` was carried out, so they waited through
/// every tick of the full disk, 20 election timeouts here.)
#[test]
fn appends_waiting_on_a_leader_deposed_while_its_disk_is_full_are_answered() {
    let rt = runtime();
    let _entered = rt.enter();
    let mut h = Harness::new(3);
    h.elect_with_node_2();
    let mut rx = h.append(b"in flight");
    h.settle_writes();
    assert!(rx.try_recv().is_err(), "answered before a majority held it");
    let full =
        SimFaults { capacity_bytes: Some(0), no_space_next_write: true, ..SimFaults::default() };
    h.disk.set_faults(full);
    // Node 3 leads a later term, which this node cannot save.
    let term = h.replica.core.term().get() + 1;
    let last = h.replica.core.last_index().get();
    h.replica.step(append_entries(3, term, (last, term - 1), 0, &[]));
    h.settle();
    assert!(h.replica.holds_ready(), "the refused save of the new term was not held");
    assert_ne!(h.replica.core.role(), Role::Leader);
    let timeout = h.replica.core.config().election_timeout_ticks;
    for _ in 0..timeout * 20 {
        h.disk.set_faults(SimFaults { no_space_next_write: true, ..h.disk.faults() });
        h.replica.tick();
        h.settle();
    }
    assert!(h.replica.holds_ready(), "the disk is still full");
    match rx.try_recv().expect("the waiting append is answered while the disk stays full") {
        Err(AppendError::LeadershipLost { .. }) => {}
        other => panic!("expected LeadershipLost, got {other:?}"),
    }
}

/// What a `tracing` subscriber writes, kept for a test to read.
#[derive(Clone, Default)]
struct CapturedLog(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLog {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for CapturedLog {
    type Writer = CapturedLog;

    fn make_writer(&'a self) -> CapturedLog {
        self.clone()
    }
}

/// A log compacted after the one save of its clients' numbers, whose save then went bad: the
/// node starts without the numbers (the other slot never held a save), and a retry of an append
/// before its recent entries may be appended again. That is the same loss as a save older than
/// the log, which the node warns of; it said it only at the info level, as it does for a log
/// written before the numbers were saved, though a log that starts after index 1 was compacted
/// (or started over) and so had a save.
#[test]
fn a_lost_only_save_of_a_compacted_log_is_warned_of() {
    let rt = runtime();
    let _entered = rt.enter();
    let mut h = small_segments_leader_with_40_tagged_entries();
    let last = h.replica.store.last_index();
    let first = h.replica.compact(last).unwrap();
    assert!(first > LogIndex(1), "nothing compacted");
    h.replica.shut_down();
    // The first save went to slot 1, the second half of the file; slot 0 never held one.
    let path = Path::new("/data/log-0").join(crate::storage::CLIENT_SEQS_FILE);
    let size = h.disk.file_bytes(&path).unwrap().len();
    assert!(h.disk.flip_bit(&path, size / 2 + 20, 3));
    let captured = CapturedLog::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    tracing::subscriber::with_default(subscriber, || h.restart());
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("clients' sequence numbers") && l.contains("may be appended again"))
        .unwrap_or_else(|| panic!("nothing said of the lost numbers: {text}"));
    assert!(line.contains("WARN"), "{line}");
}

/// Retention compacts whole segments, up to the applied index. When the applied index trails
/// the segment retention would start the log at (a leader whose followers acknowledge slowly),
/// a compaction that reaches only inside the first segment removes nothing: it must not save
/// the clients' numbers either. It did, on every tick the applied index moved (a 160 KiB write
/// and an fdatasync up to a hundred times a second), since the save was asked for up to the
/// index retention wanted, not up to what the compaction would remove.
#[test]
fn retention_saves_the_clients_numbers_only_when_a_segment_goes() {
    static PAYLOAD: [u8; 1000] = [b'x'; 1000];
    let rt = runtime();
    let _entered = rt.enter();
    let mut h = Harness::with(3, |c| {
        c.storage.segment_size_bytes = 16 << 10;
        c.entry_size_bytes_max = 4 << 10;
        c.storage.retention_bytes = 1;
    });
    h.elect_with_node_2();
    let term = h.replica.core.term();
    for seq in 1..=60 {
        drop(append_tagged(&mut h, 7, seq..seq + 1, &PAYLOAD));
        h.settle();
    }
    let segments: Vec<LogIndex> = h.replica.store.segment_extents().map(|(f, _)| f).collect();
    assert!(segments.len() >= 3, "{segments:?}");
    // Node 2 acknowledges one entry at a time: the commit (and applied) index moves inside the
    // first segments, well behind the newest sealed one that retention keeps.
    let mut saves = 0;
    let mut removals = 0;
    let mut match_index = h.replica.core.commit_index();
    while match_index < segments[2] {
        match_index = match_index.next();
        let ack = AppendEntriesResponse::Success { match_index };
        h.replica.step(from_peer(2, term, MessageBody::AppendEntriesResponse(ack)));
        h.settle();
        let (first, through) = (h.replica.store.first_index(), h.replica.client_seqs_through);
        h.replica.tick();
        h.settle();
        if h.replica.store.first_index() != first {
            removals += 1;
        }
        if h.replica.client_seqs_through != through {
            saves += 1;
        }
    }
    assert!(removals >= 1, "retention removed no segment");
    assert_eq!(saves, removals, "saves of the clients' numbers that removed no segment");
    assert!(h.replica.failed.is_none(), "{:?}", h.replica.failed);
}
