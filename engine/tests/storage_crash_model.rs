//! The log store under a crash *inside* any operation: random sequences of append, submit,
//! complete, flush, truncate, compact, reset and hard state saves on the simulated disk (with
//! reordered completions, full disks and several option sets), and a power loss (torn or with a
//! partial writeback) or a process kill at a random write or sync point within an operation,
//! not only between them. What recovery finds must be a log docs/format.md allows for the
//! operation under way: the log before it (for a truncation or a reset, possibly without some
//! of its entries after the cut; for a compaction, a suffix) or the log after it, never a gap,
//! never entries the log did not hold, never fewer entries than were durable, and the hard
//! state before or after a save.
//!
//! `CRASH_MODEL_SEEDS` (200) and `CRASH_MODEL_SEED_FROM` (0) choose the seeds; each runs five
//! option sets of 300 steps.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is a failure report.

mod storage_common;

use raftwal::storage::{LogOptions, LogStore, SimDisk, SimFaults, Tear, ZeroFill};
use raftwal_wire::types::{HardState, LogIndex, NodeId, Term};
use std::path::Path;
use std::rc::Rc;
use storage_common::{entries, small_options, LogModel as Model};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[derive(Clone, Debug)]
enum Op {
    Append(u64, bool),
    Submit,
    Complete,
    Flush,
    Truncate(u64),
    Compact(u64),
    Reset(u64, u64),
    SaveHardState(HardState),
}

/// What the reopened log holds.
fn recovered(log: &LogStore<SimDisk>) -> Model {
    let first = log.first_index().get();
    let last = log.last_index().get();
    let mut out = Vec::new();
    let mut next = first;
    while next <= last {
        let got = log.read(LogIndex(next), 1 << 20).expect("read after reopen");
        assert!(!got.is_empty());
        next += got.len() as u64;
        out.extend(got);
    }
    let term = out.last().map(|e| e.term.get()).unwrap_or(0);
    Model {
        entries: out,
        first,
        durable: last,
        term,
        hard_state: log.hard_state(),
        prev_term: log.term(LogIndex(first - 1)).map(|t| t.get()),
    }
}

/// Whether `r`'s entries are `m`'s from `r.first` on, as a prefix (and `r` starts inside `m`).
fn prefix_of(r: &Model, m: &Model) -> bool {
    if r.first < m.first {
        return false;
    }
    r.entries.iter().all(|e| {
        let i = e.index.get();
        i <= m.last() && m.entries[(i - m.first) as usize] == *e
    })
}

fn check_outcome(ctx: &str, op: &Op, ok: bool, before: &Model, after: &Model, r: &Model) {
    let hard_ok = r.hard_state == before.hard_state || r.hard_state == after.hard_state;
    assert!(
        hard_ok,
        "{ctx}: hard state {:?}, before {:?}, after {:?}",
        r.hard_state, before.hard_state, after.hard_state
    );
    let old_log = |lower: u64| {
        r.first == before.first
            && prefix_of(r, before)
            && r.last() >= lower
            && before.prev_term.is_none_or(|t| r.prev_term == Some(t))
    };
    let new_log = || {
        r.first == after.first
            && prefix_of(r, after)
            && r.last() >= after.durable
            && after.prev_term.is_none_or(|t| r.prev_term == Some(t))
    };
    let fine = match op {
        Op::Append(..) | Op::Submit | Op::Complete | Op::Flush | Op::SaveHardState(_) => {
            r.first == before.first && prefix_of(r, after) && r.last() >= before.durable
        }
        Op::Truncate(to) => {
            if ok {
                new_log()
            } else {
                old_log(before.durable.min(*to))
            }
        }
        Op::Compact(_) => {
            r.first >= before.first
                && r.first <= after.first
                && prefix_of(r, before)
                && r.last() >= before.durable
                && (!ok || r.first == after.first)
        }
        Op::Reset(index, _) => {
            if ok {
                new_log()
            } else {
                old_log(before.durable.min(*index)) || new_log()
            }
        }
    };
    assert!(
        fine,
        "{ctx}: after a crash in {op:?} (returned ok: {ok}) recovery found entries {}..={} \
         (prev term {:?}); before: {}..={} durable {} (prev term {:?}); after: {}..={} durable {}",
        r.first,
        r.last(),
        r.prev_term,
        before.first,
        before.last(),
        before.durable,
        before.prev_term,
        after.first,
        after.last(),
        after.durable
    );
}

fn run(seed: u64, steps: usize, options: LogOptions, nospace: bool) {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let dir = Path::new("/logs/crash-model");
    let disk = Rc::new(SimDisk::new());
    if seed % 2 == 1 {
        disk.set_faults(SimFaults { reorder_seed: Some(seed), ..SimFaults::default() });
    }
    let (mut log, _) = LogStore::open(dir, options, disk.clone()).expect("open");
    let mut model = Model::empty(Some(0));
    for step in 0..steps {
        let ctx = format!("seed {seed} step {step}");
        if rng.below(4) == 0 && disk.faults().crash_at_point.is_none() {
            let at = disk.stats().points + rng.below(10);
            disk.set_faults(SimFaults { crash_at_point: Some(at), ..disk.faults() });
        }
        if nospace && rng.below(8) == 0 {
            let faults = SimFaults { no_space_after_writes: Some(rng.below(4)), ..disk.faults() };
            disk.set_faults(faults);
        }
        let op = match rng.below(22) {
            0..=6 => Op::Append(1 + rng.below(12), rng.below(4) == 0),
            7..=9 => Op::Submit,
            10..=11 => Op::Complete,
            12..=13 => Op::Flush,
            14..=15 => Op::Truncate(rng.below(40)),
            16..=17 => Op::Compact(rng.below(101)),
            18..=19 => Op::Reset(rng.below(3), rng.below(60)),
            _ => Op::SaveHardState(HardState {
                term: Term(1 + rng.below(5)),
                vote: if rng.below(2) == 0 { None } else { Some(NodeId(rng.below(3))) },
                commit: LogIndex(model.durable),
            }),
        };
        let before = model.clone();
        let mut after = model.clone();
        // Resolve the op's parameters against the model, as storage_model.rs does.
        let op = match op {
            Op::Truncate(back) => Op::Truncate(
                after
                    .last()
                    .saturating_sub(back)
                    .max(after.first - 1)
                    .max(after.hard_state.commit.get().min(after.last())),
            ),
            Op::Compact(fraction) => {
                let span = after.last() + 1 - after.first;
                Op::Compact(after.first + span * fraction / 100)
            }
            Op::Reset(at, offset) => {
                let index = match at {
                    0 => (after.first - 1).saturating_sub(offset),
                    1 => after.last().saturating_sub(offset).max(after.first - 1),
                    _ => after.last() + offset,
                }
                .max(after.hard_state.commit.get());
                let term = if index == 0 { 0 } else { after.term.max(1) + rng.below(2) };
                Op::Reset(index, term)
            }
            other => other,
        };
        let ok = match &op {
            Op::Append(count, bump) => {
                if *bump {
                    after.term += 1;
                }
                let new = entries(after.last() + 1, *count, after.term);
                let done = log.append(&new).is_ok();
                after.entries.extend(new);
                done
            }
            Op::Submit => log.submit().is_ok(),
            Op::Complete => match log.process_completions() {
                Ok(d) => {
                    after.durable = d.get();
                    true
                }
                Err(_) => false,
            },
            Op::Flush => match log.flush() {
                Ok(d) => {
                    after.durable = d.get();
                    true
                }
                Err(_) => false,
            },
            Op::Truncate(to) => {
                let done = log.truncate_after(LogIndex(*to)).is_ok();
                after.entries.truncate((*to + 1 - after.first) as usize);
                after.durable = after.durable.min(*to);
                after.term += 1;
                done
            }
            Op::Compact(to) => {
                let done = log.compact_before(LogIndex(*to)).is_ok();
                if done {
                    let first = log.first_index().get();
                    after.entries.drain(..(first - after.first) as usize);
                    if first != after.first {
                        after.prev_term = None;
                    }
                    after.first = first;
                } else {
                    // Whole segments before `to` at most.
                    let first = (*to).max(after.first).min(after.last() + 1);
                    after.entries.drain(..(first - after.first) as usize);
                    after.prev_term = None;
                    after.first = first;
                }
                done
            }
            Op::Reset(index, term) => {
                let done = log.reset_to(LogIndex(*index), Term(*term)).is_ok();
                after.entries.clear();
                after.first = index + 1;
                after.durable = *index;
                after.prev_term = Some(*term);
                after.term = after.term.max(*term);
                done
            }
            Op::SaveHardState(hs) => {
                let done = log.save_hard_state(*hs).is_ok();
                after.hard_state = *hs;
                done
            }
        };
        if ok && !disk.is_crashed() {
            model = after;
            // A poisoned log (a failed background op is no poison) would have failed the op.
            continue;
        }
        // The disk went down inside the op: a power loss (or a process kill) now.
        let kill = rng.below(3) == 0;
        if kill {
            drop(log);
            disk.restart_process();
        } else {
            let tear = match rng.below(3) {
                0 => Tear::None,
                1 => Tear::LastWrite { seed: rng.next() },
                _ => Tear::Writeback { seed: rng.next() },
            };
            disk.crash(tear);
            drop(log);
        }
        let (reopened, _) = LogStore::open(dir, options, disk.clone())
            .unwrap_or_else(|e| panic!("{ctx}: reopen after a crash in {op:?}: {e}"));
        log = reopened;
        let r = recovered(&log);
        check_outcome(&ctx, &op, ok, &before, &after, &r);
        let term = r.term.max(before.term).max(after.term).max(r.prev_term.unwrap_or(0));
        model = Model { term, ..r };
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

#[test]
fn a_crash_inside_any_operation_recovers_an_allowed_log() {
    let seeds = env_u64("CRASH_MODEL_SEEDS", 200);
    let from = env_u64("CRASH_MODEL_SEED_FROM", 0);
    for seed in from..from + seeds {
        for (direct, zero_fill) in
            [(true, ZeroFill::Always), (false, ZeroFill::Always), (true, ZeroFill::Never)]
        {
            let options = LogOptions { zero_fill, ..small_options(direct) };
            run(seed, 300, options, seed % 3 == 0);
        }
        for direct in [true, false] {
            let options = LogOptions {
                zero_fill: ZeroFill::BatchBytesBelow(2048),
                batches_in_flight_max: 4,
                recycled_segments_max: 4,
                sealed_segments_mapped_max: 0,
                ..small_options(direct)
            };
            run(seed, 300, options, seed % 3 == 0);
        }
    }
}
