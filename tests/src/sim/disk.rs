//! The world's side of the simulated disks: when each replica's next disk operation completes,
//! what the writer's outcome does, crashes and restarts, and the disk faults.
//!
//! Owns: [`World::start_writes`], [`World::disk_step`], [`World::after_disk_activity`],
//! [`World::node_down`], [`World::restart`] and [`World::disk_fault`].
//! Must not: complete a disk operation without a scheduled [`Event::DiskStep`] (every write and
//! fsync takes virtual time, so completions interleave with network events); skip reading the
//! durable image again after the store touched the disk.
//! Invariants:
//! 1. A replica whose writer needs the disk has exactly one `DiskStep` scheduled for its
//!    current epoch (`disk_step_scheduled`; the writer is sequential).
//! 2. A replica that goes down gets a new epoch, so its scheduled disk steps and restarts are
//!    ignored.

use super::profile::Sickness;
use super::trace::TraceEvent;
use super::world::{id_of, Event, World};
use super::PlantedBug;
use crate::checker::{Property, Violation};
use crate::replica::Down;
use raftwal::storage::Tear;
use raftwal_wire::types::LogIndex;

/// Why a replica went down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DownCause {
    /// The fault injector crashed it between two operations.
    Crash,
    /// A crash inside a disk operation: queued writes and fsyncs ran into it, or an armed
    /// crash point fired.
    CrashInDiskOp,
    /// A failed write or fsync poisoned its log.
    Poisoned,
    /// It crashes for good, for the liveness phase.
    Sick,
}

/// A fault the injector put on a disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DiskFault {
    /// The next fdatasync fails.
    FsyncFails,
    /// The files may grow by this many bytes at most.
    Full { slack_bytes: u64 },
    /// The next write fails with ENOSPC although it lands in allocated space (a file system
    /// that needs a block for its own metadata): a batch in flight is withdrawn.
    WriteNoSpace,
    /// A full disk has room again.
    Freed,
}

impl World {
    /// A replica stopped on its own in the middle of a disk operation: it goes down, or the
    /// storage broke a promise (a violation).
    pub(super) fn handle_down(&mut self, node: usize, down: Down) -> Result<(), Violation> {
        match down {
            Down::Crashed => self.node_down(node, DownCause::CrashInDiskOp),
            Down::Poisoned(_) => self.node_down(node, DownCause::Poisoned),
            Down::Broken(violation) => Err(violation),
        }
    }

    /// Starts the replica's writer on what waits for it; sends what finished at once.
    pub(super) fn start_writes(&mut self, node: usize) -> Result<(), Violation> {
        if !self.replicas[node].is_up() {
            return Ok(());
        }
        match self.replicas[node].start_writes() {
            Ok(released) => {
                self.refresh_durable(node)?;
                for message in released {
                    self.send(message)?;
                }
                Ok(())
            }
            Err(down) => self.handle_down(node, down),
        }
    }

    /// One disk step of a replica: the device completes some of its queued ops (often all of
    /// them: the chunk writes of a batch are in flight together), or the writer saves its hard
    /// state; the messages that waited for it leave. Returns whether the replica is still up.
    pub(super) fn disk_step(&mut self, node: usize) -> Result<bool, Violation> {
        let pending = self.replicas[node].store().disk().pending_ops().max(1) as u64;
        let ops_max = if self.rng.chance(500_000) { pending } else { self.rng.range(1, pending) };
        match self.replicas[node].disk_step(ops_max as usize) {
            Ok(released) => {
                self.refresh_durable(node)?;
                let index = self.replicas[node].store().durable().last_index();
                self.trace.record(self.now, TraceEvent::Durable { node: id_of(node), index });
                for message in released {
                    self.send(message)?;
                }
                Ok(true)
            }
            Err(down) => {
                self.handle_down(node, down)?;
                Ok(false)
            }
        }
    }

    /// After anything that may have touched a replica's disk: reads its durable image again,
    /// checks the log store's invariants, and schedules the next disk step if the writer needs
    /// one (after the disk's latency, or after a while if a full disk refused the last step).
    pub(super) fn after_disk_activity(&mut self, node: usize) -> Result<(), Violation> {
        if !self.replicas[node].is_up() {
            return Ok(());
        }
        self.refresh_durable(node)?;
        self.replicas[node].settle_rejoin_marker();
        self.replicas[node].store_mut().check_log_invariants().map_err(|detail| Violation {
            property: Property::StorageFault,
            detail: format!("{:?}: {detail}", id_of(node)),
        })?;
        if self.replicas[node].needs_disk_step() && !self.disk_step_scheduled[node] {
            let delay = if self.replicas[node].disk_blocked() {
                self.trace.record(self.now, TraceEvent::DiskFull { node: id_of(node) });
                self.profile.disk_retry_us
            } else {
                self.rng.range(self.profile.disk_latency_min_us, self.profile.disk_latency_max_us)
            };
            let epoch = self.epochs[node];
            self.disk_step_scheduled[node] = true;
            self.schedule(self.now + delay, Event::DiskStep { node, epoch });
        }
        Ok(())
    }

    /// Reads the replica's durable image again; checks the acknowledged entries if a
    /// truncation removed durable ones.
    pub(super) fn refresh_durable(&mut self, node: usize) -> Result<(), Violation> {
        match self.replicas[node].store_mut().refresh() {
            Ok(None) => Ok(()),
            Ok(Some(from)) => {
                self.trace.record(self.now, TraceEvent::DurableLoss { node: id_of(node), from });
                self.checker.on_durable_loss(from, &self.replicas)
            }
            Err(error) => Err(Violation {
                property: Property::DurableImage,
                detail: format!("{:?}: {error}", id_of(node)),
            }),
        }
    }

    /// The injector crashes a replica: now, or (in some runs) at a disk point a few operations
    /// ahead, wherever the store is then.
    pub(super) fn chaos_crash(&mut self, node: usize) -> Result<(), Violation> {
        if self.rng.chance(self.profile.armed_crash_per_million) {
            let points = self.rng.range(0, 12);
            self.replicas[node].store().arm_crash(points);
            self.trace.record(self.now, TraceEvent::ArmCrash { node: id_of(node), points });
            return Ok(());
        }
        let pending = self.replicas[node].store().disk().pending_ops() as u64;
        if pending > 0 && self.rng.chance(500_000) {
            // The queued writes and fsyncs run into the crash: some complete, one may be torn.
            // Half the time the crash strikes right after a write, before its fdatasync: the
            // moment a torn write is possible.
            let points = if self.rng.chance(500_000) {
                2 * self.rng.below(pending) + 1
            } else {
                self.rng.range(0, 2 * pending)
            };
            self.replicas[node].store().run_into_crash(points);
            return self.node_down(node, DownCause::CrashInDiskOp);
        }
        self.node_down(node, DownCause::Crash)
    }

    /// A replica goes down and everything in memory is lost. Either its process dies in a boot
    /// that goes on (the caches keep what was written and not synced: some crashes, half the
    /// poisoned logs, which a supervisor restarts), or the machine loses power: its
    /// disk keeps what is durable (and a torn prefix of the last unsynced write in some runs,
    /// or what the caches had written back of the rest).
    /// It restarts after a downtime, unless it stays sick.
    pub(super) fn node_down(&mut self, node: usize, cause: DownCause) -> Result<(), Violation> {
        let in_place = match cause {
            // The planted bug: always in place, on a disk whose recovery trusts the cache.
            DownCause::Poisoned if self.options.bug == Some(PlantedBug::ReopenPoisonedLog) => true,
            DownCause::Poisoned => self.rng.chance(500_000),
            DownCause::Crash => self.rng.chance(250_000),
            DownCause::CrashInDiskOp | DownCause::Sick => false,
        };
        let mut tear = Tear::None;
        let lost_from = if in_place {
            self.replicas[node].kill();
            self.summary.process_kills += 1;
            None
        } else {
            // Some power losses tear the last unsynced write (in profiles that tear); some come
            // after the caches wrote back part of what no fdatasync or directory fsync covered.
            if self.profile.torn_writes && self.rng.chance(500_000) {
                tear = Tear::LastWrite { seed: self.rng.next_u64() };
            } else if self.rng.chance(400_000) {
                tear = Tear::Writeback { seed: self.rng.next_u64() };
            }
            self.replicas[node].crash(tear).map_err(|error| Violation {
                property: Property::DurableImage,
                detail: format!("{:?}: {error}", id_of(node)),
            })?
        };
        self.epochs[node] += 1;
        self.drain_scheduled[node] = false;
        self.disk_step_scheduled[node] = false;
        self.seen[node] = None;
        self.reads.retain(|read| read.node != node);
        match cause {
            DownCause::Crash => self.summary.crashes += 1,
            DownCause::CrashInDiskOp => {
                self.summary.crashes += 1;
                self.summary.crashes_in_disk_ops += 1;
            }
            DownCause::Poisoned => self.summary.poisoned += 1,
            DownCause::Sick => {}
        }
        self.summary.torn_crashes += u64::from(matches!(tear, Tear::LastWrite { .. }));
        self.summary.written_back_crashes += u64::from(matches!(tear, Tear::Writeback { .. }));
        self.trace.record(
            self.now,
            TraceEvent::Down {
                node: id_of(node),
                cause,
                in_place,
                tear,
                durable_last: self.replicas[node].store().durable().last_index(),
            },
        );
        if let Some(from) = lost_from {
            self.checker.on_durable_loss(from, &self.replicas)?;
        }
        if self.stays_down != Some(node) {
            // Some restarts are immediate (a supervisor restarts the process), most take longer.
            let downtime = if self.rng.chance(250_000) {
                self.rng.range(500, 5_000)
            } else {
                self.rng.range(1_000, self.profile.downtime_max_us)
            };
            let epoch = self.epochs[node];
            self.schedule(self.now + downtime, Event::Restart { node, epoch });
        }
        Ok(())
    }

    /// The injector wipes a replica: its disk is replaced by an empty one (a failed disk
    /// swapped, or a log directory moved away) and it restarts with the rejoin marker set, so
    /// its core rejoins (`raftwal::raft` module `rejoin`). A replica that is up goes down first
    /// (as a process whose machine lost its disk); one that is down restarts as scheduled.
    pub(super) fn chaos_wipe(&mut self, node: usize) -> Result<(), Violation> {
        let was_up = self.replicas[node].is_up();
        let keeps_stale_cache = self.options.bug == Some(PlantedBug::ReopenPoisonedLog);
        self.replicas[node].wipe(keeps_stale_cache);
        self.wiped_at[node] = self.now;
        self.summary.wipes += 1;
        self.trace.record(self.now, TraceEvent::Wipe { node: id_of(node), was_up });
        if was_up {
            self.epochs[node] += 1;
            self.drain_scheduled[node] = false;
            self.disk_step_scheduled[node] = false;
            self.seen[node] = None;
            self.reads.retain(|read| read.node != node);
            let downtime = self.rng.range(1_000, self.profile.downtime_max_us);
            let epoch = self.epochs[node];
            self.schedule(self.now + downtime, Event::Restart { node, epoch });
        }
        Ok(())
    }

    /// A replica restarts: it reopens its log from the disk (recovery is checked against the
    /// durable image) and its core is restored from what recovery returned.
    pub(super) fn restart(&mut self, node: usize) -> Result<(), Violation> {
        let seed = self.rng.fork();
        let recovery = self.replicas[node].restart(seed)?;
        self.summary.torn_tails_cut += u64::from(recovery.torn_tail_bytes > 0);
        self.summary.segments_indexed += recovery.segments_indexed as u64;
        self.summary.segments_sealed += recovery.segments.saturating_sub(1) as u64;
        self.checker.on_restart(node);
        if self.wiped_at[node] > 0 {
            // A wiped replica that does not rejoin (a planted bug) holds none of its old copies.
            self.checker.on_durable_loss(LogIndex(1), &self.replicas)?;
        }
        let core = self.replicas[node].core().expect("just restarted");
        self.trace.record(
            self.now,
            TraceEvent::Restart {
                node: id_of(node),
                term: core.term(),
                last: core.last_index(),
                commit: core.commit_index(),
            },
        );
        self.check(node)
    }

    /// The injector's disk faults: a replica's next fsync fails, its disk fills up, its next
    /// write finds no space, or a full disk gets room again.
    pub(super) fn disk_fault(&mut self) {
        let n = self.options.nodes;
        let up: Vec<usize> = (0..n).filter(|node| self.replicas[*node].is_up()).collect();
        let full: Vec<usize> =
            (0..n).filter(|node| self.replicas[*node].store().is_full()).collect();
        let (node, fault) = match self.rng.below(4) {
            0 if !up.is_empty() => (up[self.rng.index(up.len())], DiskFault::FsyncFails),
            2 if !up.is_empty() => (up[self.rng.index(up.len())], DiskFault::WriteNoSpace),
            1 if !up.is_empty() => {
                let segment_bytes = self.profile.log_options.segment_size_bytes;
                let slack_bytes = self.rng.below(2 * segment_bytes);
                (up[self.rng.index(up.len())], DiskFault::Full { slack_bytes })
            }
            _ if !full.is_empty() => (full[self.rng.index(full.len())], DiskFault::Freed),
            _ => return,
        };
        let store = self.replicas[node].store_mut();
        match fault {
            DiskFault::FsyncFails => store.fail_next_sync(),
            DiskFault::WriteNoSpace => store.no_space_next_write(),
            DiskFault::Full { slack_bytes } => store.set_full(Some(slack_bytes)),
            DiskFault::Freed => store.set_full(None),
        }
        if fault != DiskFault::Freed {
            self.summary.disk_faults += 1;
        }
        self.trace.record(self.now, TraceEvent::DiskFault { node: id_of(node), fault });
    }

    /// At the end of the faults every disk heals.
    pub(super) fn heal_disks(&mut self) {
        for replica in &mut self.replicas {
            replica.store_mut().clear_faults();
        }
    }

    /// Once the cluster healed, one replica stays unwell in some runs: it crashes for good, or
    /// its next fsync fails (it then stays down). The others are a healthy majority, which must
    /// make progress on their own.
    /// The liveness deadline is then longer (`SICK_LIVENESS_FACTOR`): elections split more
    /// often without the missing replica.
    pub(super) fn make_one_sick(&mut self) -> Result<(), Violation> {
        let Some(sickness) = self.profile.sick_after_heal else { return Ok(()) };
        let mut node = self.rng.index(self.options.nodes);
        // A replica still rejoining needs every other one to finish: it is the one that stays
        // sick, so the others are a healthy majority.
        if let Some(rejoining) =
            (0..self.options.nodes).find(|n| self.replicas[*n].has_rejoin_marker())
        {
            node = rejoining;
        }
        self.stays_down = Some(node);
        match sickness {
            Sickness::Down => self.node_down(node, DownCause::Sick),
            Sickness::Poisoned => {
                self.replicas[node].store().fail_next_sync();
                self.summary.disk_faults += 1;
                let fault = DiskFault::FsyncFails;
                self.trace.record(self.now, TraceEvent::DiskFault { node: id_of(node), fault });
                Ok(())
            }
        }
    }
}
