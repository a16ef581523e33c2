//! [`Node`]: a running raftwal node, as an embedding program sees it.
//!
//! Owns: the node's start (configuration, TLS identity, data directory identity, one thread per
//! shard), its handles on the shards, its metrics, its shutdown, and the report of a shard thread
//! that ended while the node ran ([`Node::failure`]).
//! Must not: do consensus, storage or network work itself; the shards do. Must not stop or
//! restart anything on a shard failure: the embedding program decides.
//!
//! The data directory records which cluster and node it belongs to (`raftwal.id`, written once,
//! with a temporary file, an fsync, a rename and an fsync of the directory); a node refuses to
//! start on another cluster's or another node's directory. A running node holds an exclusive
//! lock on the directory (`raftwal.lock`, `flock`), so a second process refuses to start on it;
//! the kernel drops the lock when the process ends, however it ends.

use crate::config::NodeConfig;
use crate::error::{ShardFailure, StartError};
use crate::log::Log;
use crate::metrics::{self, NodeMetrics};
use crate::runtime::command::{Command, ShardHandle};
use crate::runtime::failure::FailureSlot;
use crate::runtime::shard::{self, ShardContext};
use raftwal_wire::tls::names::format_cluster_id;
use raftwal_wire::tls::TlsIdentity;
use raftwal_wire::transport::ClientLimits;
use raftwal_wire::types::{ClusterId, LogId, NodeId};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use tracing::warn;

/// Name of the data directory's identity file.
pub const IDENTITY_FILE: &str = "raftwal.id";

/// Name of the data directory's record of the logs this node created, one log id per line. A
/// log it lists whose directory holds no log any more was lost (the node refuses to start),
/// where a log it does not list is new (its directory is created).
pub const LOGS_FILE: &str = "raftwal.logs";

/// Name of the file in a log's directory that says the log lost its data and rejoins the
/// cluster (created by a start with [`NodeConfig::rejoin`], removed once it caught up).
pub const REJOIN_MARKER: &str = "REJOIN";

/// Name of the data directory's lock file (it holds the running node's process id).
pub(crate) const LOCK_FILE: &str = "raftwal.lock";

/// A running node. Dropping it stops it as [`Node::halt`] does, without handing leadership
/// over; call [`Node::shutdown`] for the graceful stop.
#[derive(Debug)]
pub struct Node {
    id: NodeId,
    cluster: ClusterId,
    config: Arc<NodeConfig>,
    shards: Vec<ShardHandle>,
    threads: Vec<JoinHandle<()>>,
    addrs: Vec<SocketAddr>,
    metrics: Arc<NodeMetrics>,
    /// The metrics endpoint, when configured; stopped with the node.
    metrics_server: Option<metrics::MetricsServer>,
    /// The first shard thread that ended while the node ran, once one did.
    failures: Arc<FailureSlot>,
    /// Holds the data directory's lock; dropped after the shards stopped (`Drop` stops them
    /// first).
    _dir_lock: std::fs::File,
}

impl Node {
    /// Validates `config`, loads the TLS identity, checks the data directory, starts one thread
    /// per shard (each opens and recovers its logs and binds its endpoint) and returns once all
    /// are serving. On any failure, nothing is left running.
    pub fn start(mut config: NodeConfig) -> Result<Node, StartError> {
        config.validate()?;
        // Fixed once: one per available core asks the calling thread's CPU affinity and the
        // cgroup's quota, which another thread (or a later moment) may see differently, and every
        // shard and caller must route a log to the same shard as the threads started here.
        config.shards = Some(config.shard_count());
        for warning in config.warnings() {
            warn!("{warning}");
        }
        if let Some(warning) = map_count_warning(&config, read_max_map_count()) {
            warn!("{warning}");
        }
        let identity = TlsIdentity::load_node(&config.tls_dir, config.id)
            .map_err(|source| StartError::Tls { dir: config.tls_dir.clone(), source })?;
        let cluster = identity.cluster();
        let dir_lock = lock_data_dir(&config.data_dir)?;
        check_data_dir(&config.data_dir, cluster, config.id)?;
        let created = logs_kept(&config.data_dir, config.log_count, config.rejoin)?;
        let config = Arc::new(config);
        let client_limits = ClientLimits::new(
            config.transport.client_connections_max,
            config.transport.client_memory_bytes_max,
        );
        let metrics = Arc::new(
            NodeMetrics::new(config.id, config.log_count).with_client_limits(client_limits.clone()),
        );
        // The metrics port first: a port in use fails the start before any log opens, with
        // the metrics address to blame.
        let metrics_server = match config.metrics {
            Some(addr) => Some(
                metrics::serve(addr, metrics.clone())
                    .map_err(|source| StartError::Metrics { addr, source })?,
            ),
            None => None,
        };
        let shard_count = config.shard_count();
        let (handles, inboxes): (Vec<_>, Vec<_>) =
            (0..shard_count).map(|_| ShardHandle::new()).unzip();
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let start_abandoned = Arc::new(AtomicBool::new(false));
        let failures = Arc::new(FailureSlot::new());
        let mut threads = Vec::with_capacity(shard_count);
        let mut spawn_error = None;
        for (index, inbox) in inboxes.into_iter().enumerate() {
            let context = ShardContext {
                index,
                config: config.clone(),
                identity: identity.clone(),
                cluster,
                inbox,
                shards: handles.clone(),
                metrics: metrics.clone(),
                client_limits: client_limits.clone(),
                start_abandoned: start_abandoned.clone(),
                failures: failures.clone(),
            };
            let started = started_tx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("raftwal-n{}-s{index}", config.id))
                .spawn(move || shard::run(context, started));
            match spawned {
                Ok(thread) => threads.push(thread),
                Err(e) => {
                    spawn_error = Some(StartError::Shard { shard: index, message: e.to_string() });
                    break;
                }
            }
        }
        drop(started_tx);
        let mut node = Node {
            id: config.id,
            cluster,
            config: config.clone(),
            shards: handles,
            threads,
            addrs: vec![config.listen; shard_count],
            metrics,
            metrics_server,
            failures,
            _dir_lock: dir_lock,
        };
        if let Some(e) = spawn_error {
            node.stop(false);
            return Err(e);
        }
        let mut first_error = None;
        for _ in 0..node.threads.len() {
            match started_rx.recv() {
                Ok(Ok(addr)) => node.record_addr(addr),
                Ok(Err(e)) => {
                    // The other shards stop opening logs; the error reported is this first one.
                    start_abandoned.store(true, Ordering::Relaxed);
                    first_error.get_or_insert(e);
                }
                Err(_) => {
                    start_abandoned.store(true, Ordering::Relaxed);
                    first_error.get_or_insert(StartError::Shard {
                        shard: usize::MAX,
                        message: "a shard thread exited during start".into(),
                    });
                }
            }
        }
        if let Some(e) = first_error {
            node.stop(false);
            return Err(e);
        }
        // Every configured log now has its directory and hard state: record them.
        if let Err(e) = record_logs(&config.data_dir, &created, config.log_count) {
            node.stop(false);
            return Err(e);
        }
        Ok(node)
    }

    fn record_addr(&mut self, addr: SocketAddr) {
        // A shard listens on the configured port + its index, unless that port was 0 (then the
        // system chose): match by port offset when possible, else fill the first unset slot.
        let base = self.config.listen.port();
        if base != 0 {
            let offset = usize::from(addr.port().wrapping_sub(base));
            if offset < self.addrs.len() {
                self.addrs[offset] = addr;
                return;
            }
        }
        if let Some(slot) = self.addrs.iter_mut().find(|a| a.port() == 0) {
            *slot = addr;
        }
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The cluster this node belongs to (from its certificate).
    pub fn cluster(&self) -> ClusterId {
        self.cluster
    }

    /// The address clients connect to (shard 0's endpoint; any shard's endpoint serves every
    /// log, forwarding to the owner).
    pub fn client_addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Every shard's endpoint address.
    pub fn shard_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The node's configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// The node's metrics.
    pub fn metrics(&self) -> &Arc<NodeMetrics> {
        &self.metrics
    }

    /// Where metrics are served, when configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_server.as_ref().map(metrics::MetricsServer::local_addr)
    }

    /// A handle on log `log`, if the cluster has it (`log < log_count`).
    pub fn log(&self, log: LogId) -> Option<Log> {
        if log.get() >= self.config.log_count {
            return None;
        }
        let shard = self.shards.get(self.config.shard_of(log))?.clone();
        Some(Log::new(log, shard))
    }

    /// The first shard of this node that stopped without being told to (its thread panicked, or
    /// its loop ended on its own), if one did. `None` while every shard serves, and for shards
    /// that stopped because the node was told to stop ([`HaltHandle::halt`], as in
    /// [`Node::halt`] and [`Node::shutdown`]), which is no failure; a panic is reported
    /// whenever it happens once the shard served, during a stop too. Cheap and non-blocking:
    /// poll it, or await [`Node::wait_for_failure`].
    ///
    /// The node does not act on a failure itself: the failed shard's logs are gone from it
    /// while the other shards go on. Halt the node and start it again (or exit for a supervisor
    /// to restart the process, as `raftwal serve` does); see [`ShardFailure`]. The failed
    /// thread also logs the failure at error level.
    pub fn failure(&self) -> Option<ShardFailure> {
        self.failures.get()
    }

    /// Resolves with the first shard failure ([`Node::failure`]) once there is one (at once if
    /// there was); never while every shard serves. Any async runtime.
    pub async fn wait_for_failure(&self) -> ShardFailure {
        self.failures.wait().await
    }

    /// Stops the node gracefully. First, every log this node leads is handed to a connected
    /// peer whose log the leader brings up to date, which then campaigns at once (leadership
    /// transfer), so that the cluster goes on without waiting out an election timeout; this
    /// lasts until the new leader is heard from, at most two election timeouts. A peer that
    /// does not take the leadership, or hands it back, is followed by the next one, and a log
    /// this node comes to lead meanwhile (from a peer that stops too) is handed on. Appends that
    /// arrive meanwhile are refused as during any transfer (remote clients retry, and find the
    /// new leader). Then as [`Node::halt`]. Returns once all threads exited.
    pub fn shutdown(mut self) {
        self.stop(true);
    }

    /// Stops every shard at once, without handing leadership over (to the peers, as a crash
    /// looks; dropping a `Node` does the same): appends waiting for their commit are answered
    /// with [`AppendError::Interrupted`] (their entries may still commit), later ones with
    /// `ShuttingDown`, batches in flight finish, hard states are saved, connections are closed.
    /// Returns once all threads exited.
    ///
    /// [`AppendError::Interrupted`]: crate::AppendError::Interrupted
    pub fn halt(mut self) {
        self.stop(false);
    }

    /// A handle that halts this node from another thread, for example while
    /// [`Node::shutdown`] waits for a handover: shards still handing leadership over stop at
    /// once, as with [`Node::halt`].
    pub fn halt_handle(&self) -> HaltHandle {
        HaltHandle { shards: self.shards.clone(), failures: self.failures.clone() }
    }

    fn stop(&mut self, hand_over: bool) {
        for shard in &self.shards {
            let _ = shard.send(Command::Shutdown { hand_over });
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        // Closes its port and ends its thread, so that a node started again in this process
        // can serve metrics on the same address.
        self.metrics_server = None;
    }
}

/// Halts a node from another thread ([`Node::halt_handle`]).
#[derive(Clone, Debug)]
pub struct HaltHandle {
    shards: Vec<ShardHandle>,
    failures: Arc<FailureSlot>,
}

impl HaltHandle {
    /// Tells every shard to stop at once, without (further) handing leadership over. Does not
    /// wait: the thread in [`Node::shutdown`] or [`Node::halt`] returns once the shards exited.
    pub fn halt(&self) {
        for shard in &self.shards {
            let _ = shard.send(Command::Shutdown { hand_over: false });
        }
    }

    /// The node's first shard failure, as [`Node::failure`] gives it: readable after the node
    /// itself was moved away, for example into the thread that runs [`Node::shutdown`], so that
    /// a shard that failed during the stop is known once the stop returned.
    pub fn failure(&self) -> Option<ShardFailure> {
        self.failures.get()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop(false);
    }
}

/// Creates the data directory if needed and takes its exclusive lock, writing this process's id
/// into the lock file for the error another process would print.
fn lock_data_dir(dir: &Path) -> Result<std::fs::File, StartError> {
    let fail = |message: String| StartError::DataDir { dir: dir.to_owned(), message };
    create_dir_durably(dir).map_err(|e| fail(format!("cannot create: {e}")))?;
    let path = dir.join(LOCK_FILE);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| fail(format!("cannot open {LOCK_FILE}: {e}")))?;
    match file.try_lock() {
        Ok(()) => {
            // Only for the message another process prints: no fsync.
            let pid = format!("pid {}\n", std::process::id());
            file.set_len(0)
                .and_then(|()| file.write_all_at(pid.as_bytes(), 0))
                .map_err(|e| fail(format!("cannot write {LOCK_FILE}: {e}")))?;
            Ok(file)
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => "process id unknown".to_owned(),
                text => text.to_owned(),
            };
            Err(StartError::DataDirInUse { dir: dir.to_owned(), holder })
        }
        Err(std::fs::TryLockError::Error(e)) => Err(fail(format!("cannot lock {LOCK_FILE}: {e}"))),
    }
}

/// fsync of a directory: makes the creations, renames and removals of names in it durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(test)]
    tests::SYNCED_DIRS.with(|synced| synced.borrow_mut().push(dir.to_owned()));
    std::fs::File::open(dir)?.sync_all()
}

/// Creates `dir` and the directories missing above it, each made durable in its parent (an
/// fsync of the parent, top down) before anything is written in it: a directory's entry, like
/// a file's name, survives a power loss only after that fsync (docs/format.md, media assumption
/// 5). A data directory whose entry was lost would come back as nothing at all: no identity, no
/// record of its logs, no votes; the node would start as a new one and could not tell.
fn create_dir_durably(dir: &Path) -> std::io::Result<()> {
    let missing: Vec<&Path> =
        dir.ancestors().take_while(|d| !d.as_os_str().is_empty() && !d.exists()).collect();
    std::fs::create_dir_all(dir)?;
    for d in missing.iter().rev() {
        match d.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent)?,
            _ => sync_dir(Path::new("."))?,
        }
    }
    Ok(())
}

/// The directory of `log` in the data directory `dir`.
pub(crate) fn log_dir(dir: &Path, log: LogId) -> PathBuf {
    dir.join(format!("log-{}", log.get()))
}

/// The logs this node created before (its [`LOGS_FILE`]; a data directory from before the file
/// existed: its log directories that hold anything), after checking that each of them below
/// `log_count` still holds its log. A log started over from nothing would have forgotten its
/// votes and the entries it acknowledged (the store already refuses segments without their hard
/// state; this catches a whole directory gone): unless `rejoin` is set, such a log is refused;
/// with it, every such log below `log_count` (every log whose directory is missing or empty,
/// when there is no [`LOGS_FILE`]: a whole data directory lost) gets a rejoin marker
/// ([`REJOIN_MARKER`]), and opens in the rejoin state until it caught up. A log the record does
/// not list is new, with or without `rejoin`.
fn logs_kept(dir: &Path, log_count: u64, rejoin: bool) -> Result<BTreeSet<u64>, StartError> {
    let fail = |message: String| StartError::DataDir { dir: dir.to_owned(), message };
    let record = dir.join(LOGS_FILE);
    // A directory holding any of the store's files (or the rejoin marker) is left to the store
    // to open or refuse (segments without their hard state are corruption, and so is a hard
    // state without segments), and so is anything else at the log's path (a file in its place
    // is an I/O error): lost is nothing there, or a directory without any of them (empty, or
    // holding only what a fresh file system puts there, such as `lost+found`).
    let holds_log = |log: u64| {
        let path = log_dir(dir, LogId(log));
        match std::fs::read_dir(&path) {
            Ok(entries) => entries.filter_map(Result::ok).any(|entry| {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                name == crate::storage::HARD_STATE_FILE
                    || name == crate::storage::CLIENT_SEQS_FILE
                    || name == REJOIN_MARKER
                    || crate::storage::SegmentId::parse_file_name(&name).is_some()
            }),
            Err(e) => e.kind() != std::io::ErrorKind::NotFound,
        }
    };
    let mut recorded = true;
    let created: BTreeSet<u64> = match std::fs::read_to_string(&record) {
        Ok(text) => text
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| line.trim().parse::<u64>())
            .collect::<Result<_, _>>()
            .map_err(|_| fail(format!("{LOGS_FILE} is unreadable: {text:?}")))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            recorded = false;
            let names = std::fs::read_dir(dir).map_err(|e| fail(format!("cannot list: {e}")))?;
            names
                .filter_map(|entry| {
                    entry.ok()?.file_name().to_str()?.strip_prefix("log-")?.parse().ok()
                })
                .filter(|log| holds_log(*log))
                .collect()
        }
        Err(e) => return Err(fail(format!("cannot read {LOGS_FILE}: {e}"))),
    };
    if rejoin {
        // A log the record does not list is new, with the flag as without it: marked, it
        // would take no vote until it caught up with a leader, and a majority of nodes started
        // so (a flag left on while `log_count` grows) could never elect one. Without a record
        // (a whole data directory lost, or one from before the record) any log may be lost.
        let lost = |log: &u64| (!recorded || created.contains(log)) && !holds_log(*log);
        for log in (0..log_count).filter(lost) {
            mark_rejoin(&log_dir(dir, LogId(log)))
                .map_err(|e| fail(format!("cannot mark log {log} to rejoin: {e}")))?;
            warn!(log, "log {log} holds no data here: it rejoins the cluster");
        }
    } else if let Some(&log) = created.iter().find(|&&log| log < log_count && !holds_log(log)) {
        return Err(StartError::LostLog {
            log: LogId(log),
            dir: log_dir(dir, LogId(log)),
            record: record.clone(),
        });
    }
    Ok(created)
}

/// Creates the log directory `dir` with its rejoin marker, durably.
fn mark_rejoin(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let marker = std::fs::File::create(dir.join(REJOIN_MARKER))?;
    marker.sync_all()?;
    sync_dir(dir)?;
    match dir.parent() {
        Some(parent) => sync_dir(parent),
        None => Ok(()),
    }
}

/// Records that this node created logs `0..log_count` besides those in `created` (durably,
/// replacing the file), once their directories hold their logs.
fn record_logs(dir: &Path, created: &BTreeSet<u64>, log_count: u64) -> Result<(), StartError> {
    let all: BTreeSet<u64> = created.iter().copied().chain(0..log_count).collect();
    if all == *created && dir.join(LOGS_FILE).exists() {
        return Ok(());
    }
    let text: String = all.iter().map(|log| format!("{log}\n")).collect();
    let tmp = dir.join(format!("{LOGS_FILE}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join(LOGS_FILE))?;
        sync_dir(dir)
    };
    write().map_err(|e| StartError::DataDir {
        dir: dir.to_owned(),
        message: format!("cannot write {LOGS_FILE}: {e}"),
    })
}

/// Creates the data directory and its identity file, or checks that they are this node's.
fn check_data_dir(dir: &Path, cluster: ClusterId, node: NodeId) -> Result<(), StartError> {
    let fail = |message: String| StartError::DataDir { dir: dir.to_owned(), message };
    create_dir_durably(dir).map_err(|e| fail(format!("cannot create: {e}")))?;
    let path = dir.join(IDENTITY_FILE);
    let expected = format!("cluster = \"{}\"\nnode = {}\n", format_cluster_id(cluster), node);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let found = parse_identity(&text)
                .ok_or_else(|| fail(format!("{IDENTITY_FILE} is unreadable: {text:?}")))?;
            if found != (format_cluster_id(cluster), node) {
                return Err(StartError::ForeignDataDir {
                    dir: dir.to_owned(),
                    found_cluster: found.0,
                    found_node: found.1,
                    cluster: format_cluster_id(cluster),
                    node,
                });
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // The identity is written (durably) before anything else: a directory that holds
            // logs without it is not new, and whose logs and votes they are is unknown, so
            // taking it as this node's could start one node on another's votes and entries.
            let names = std::fs::read_dir(dir).map_err(|e| fail(format!("cannot list: {e}")))?;
            let holds_logs = names.filter_map(Result::ok).any(|entry| {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                name == LOGS_FILE || name.starts_with("log-")
            });
            if holds_logs {
                return Err(fail(format!(
                    "it holds logs ({LOGS_FILE} or log-* directories) but no {IDENTITY_FILE}, \
                     which is written before them: which node's they are is unknown. If they \
                     are this node's, write {IDENTITY_FILE} back with: {expected:?}"
                )));
            }
            let tmp = dir.join(format!("{IDENTITY_FILE}.tmp"));
            let write = || -> std::io::Result<()> {
                let mut f = std::fs::File::create(&tmp)?;
                f.write_all(expected.as_bytes())?;
                f.sync_all()?;
                std::fs::rename(&tmp, &path)?;
                sync_dir(dir)?;
                // A new data directory: one a start killed before it synced the directory into
                // its parent (`create_dir_durably`) comes back without its identity, and is
                // found here again.
                match dir.parent() {
                    Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
                    _ => sync_dir(Path::new(".")),
                }
            };
            write().map_err(|e| fail(format!("cannot write {IDENTITY_FILE}: {e}")))
        }
        Err(e) => Err(fail(format!("cannot read {IDENTITY_FILE}: {e}"))),
    }
}

fn parse_identity(text: &str) -> Option<(String, NodeId)> {
    let mut cluster = None;
    let mut node = None;
    for line in text.lines() {
        let (key, value) = line.split_once('=')?;
        match key.trim() {
            "cluster" => cluster = Some(value.trim().trim_matches('"').to_owned()),
            "node" => node = value.trim().parse().ok().map(NodeId),
            _ => return None,
        }
    }
    Some((cluster?, node?))
}

#[cfg(test)]
mod failure_tests;

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        /// The directories [`sync_dir`] synced on this thread, in order.
        pub(super) static SYNCED_DIRS: std::cell::RefCell<Vec<PathBuf>> =
            const { std::cell::RefCell::new(Vec::new()) };
    }

    fn synced_dirs() -> Vec<PathBuf> {
        SYNCED_DIRS.with(|synced| synced.take())
    }

    /// The data directory (and any directory made above it) is a name in its parent: a node
    /// that makes it syncs the parent before it writes anything there, so that a power loss
    /// cannot take the whole directory (identity, logs, votes) and leave a node that starts as
    /// new. An existing directory costs no sync.
    #[test]
    fn a_data_dir_the_node_makes_is_durable_in_its_parent() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data").join("node-1");
        synced_dirs();
        let held = lock_data_dir(&dir).unwrap();
        assert_eq!(
            synced_dirs(),
            [root.path().to_owned(), root.path().join("data")],
            "each directory made is synced in its parent, top down"
        );
        check_data_dir(&dir, ClusterId(7), NodeId(1)).unwrap();
        assert_eq!(synced_dirs(), [dir.clone(), root.path().join("data")]);
        drop(held);
        lock_data_dir(&dir).unwrap();
        check_data_dir(&dir, ClusterId(7), NodeId(1)).unwrap();
        assert!(synced_dirs().is_empty(), "an existing data directory needs no sync");
    }

    /// A start killed between making the data directory and syncing its parent leaves the
    /// directory (the kernel still has it) without an identity: the next start, which finds
    /// it, syncs its parent as it writes the identity.
    #[test]
    fn a_data_dir_left_by_a_killed_start_is_made_durable_in_its_parent() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("node-1");
        std::fs::create_dir(&dir).unwrap();
        synced_dirs();
        let _held = lock_data_dir(&dir).unwrap();
        check_data_dir(&dir, ClusterId(7), NodeId(1)).unwrap();
        assert_eq!(synced_dirs(), [dir.clone(), root.path().to_owned()]);
    }

    #[test]
    fn a_data_dir_is_locked_while_a_node_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock_data_dir(dir.path()).unwrap();
        match lock_data_dir(dir.path()) {
            Err(StartError::DataDirInUse { holder, .. }) => {
                assert_eq!(holder, format!("pid {}", std::process::id()));
            }
            other => panic!("a second lock was not refused: {other:?}"),
        }
        drop(held);
        lock_data_dir(dir.path()).expect("the lock is free again once its holder is gone");
    }

    #[test]
    fn a_data_dir_remembers_its_cluster_and_node() {
        let dir = tempfile::tempdir().unwrap();
        check_data_dir(dir.path(), ClusterId(7), NodeId(1)).unwrap();
        check_data_dir(dir.path(), ClusterId(7), NodeId(1)).unwrap();
        let e = check_data_dir(dir.path(), ClusterId(8), NodeId(1)).unwrap_err();
        assert!(matches!(e, StartError::ForeignDataDir { .. }), "{e}");
        let e = check_data_dir(dir.path(), ClusterId(7), NodeId(2)).unwrap_err();
        assert!(e.to_string().contains("belongs to cluster"), "{e}");
    }
}

/// The kernel's bound on a process's memory maps (`vm.max_map_count`), when it can be read.
fn read_max_map_count() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/vm/max_map_count").ok()?.trim().parse().ok()
}

/// A warning when the node's logs could hold more than half of the process's maps
/// (`max_map_count`) in sealed segments kept mapped: beyond the bound, new segments are sealed
/// unmapped (slower reads), and a start that runs out while opening the logs fails.
fn map_count_warning(config: &NodeConfig, max_map_count: Option<u64>) -> Option<String> {
    let bound = max_map_count?;
    let per_log = config.storage.sealed_segments_mapped_max as u64 + 1;
    let needed = config.log_count.saturating_mul(per_log);
    (needed > bound / 2).then(|| {
        format!(
            "{} logs with storage.sealed_segments_mapped_max = {} may keep up to {needed} memory \
             maps, more than half the process's bound (vm.max_map_count = {bound}): raise the \
             sysctl or lower the setting (docs/operations.md)",
            config.log_count, config.storage.sealed_segments_mapped_max
        )
    })
}

#[cfg(test)]
mod map_count_tests {
    use super::*;
    use crate::config::PeerConfig;

    #[test]
    fn many_logs_with_many_mapped_segments_are_warned_of_against_the_bound() {
        let peers = vec![PeerConfig { id: NodeId(2), addr: "127.0.0.1:7100".parse().unwrap() }];
        let mut config =
            NodeConfig::new(NodeId(1), "127.0.0.1:7000".parse().unwrap(), peers, "/d", "/t");
        config.log_count = 1024;
        // The defaults fit the kernel's default bound.
        assert_eq!(map_count_warning(&config, Some(65_530)), None);
        assert_eq!(map_count_warning(&config, None), None);
        config.storage.sealed_segments_mapped_max = 64;
        let warning = map_count_warning(&config, Some(65_530)).expect("a warning");
        assert!(warning.contains("66560") && warning.contains("65530"), "{warning}");
        assert_eq!(map_count_warning(&config, Some(1 << 20)), None);
    }
}
