//! Property test: random append / submit / complete / truncate / compact / reset / reopen
//! sequences on the simulated disk agree with an in-memory model of the log. A reopen follows a
//! power loss that keeps nothing unsynced, a torn last write, or what a partial writeback saved,
//! or a killed process (the caches keep what it wrote): what a restarted log reports must then
//! survive every later power loss.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is a failure report.

mod storage_common;

use proptest::prelude::*;
use raftwal::storage::{LogOptions, LogStore, SimDisk, SimFaults, Tear, ZeroFill};
use raftwal_wire::types::{HardState, LogIndex, NodeId, Term};
use std::path::Path;
use std::rc::Rc;
use storage_common::{entries, small_options, LogModel as Model};

#[derive(Clone, Debug)]
enum Op {
    Append {
        count: u64,
        term_bump: bool,
    },
    Submit,
    Complete,
    Flush,
    Truncate {
        back: u64,
    },
    Compact {
        fraction: u8,
    },
    /// `reset_to` below the log (`at` 0), inside it (1) or beyond it (2), `offset` entries away
    /// from its first or last index, with a term up to one below or above the current one.
    Reset {
        at: u8,
        offset: u64,
        term_step: u64,
    },
    SaveHardState {
        term: u64,
        vote: Option<u64>,
    },
    /// The power fails (the disk keeping what `tear` says of what was not synced), and the
    /// log is opened again.
    Reopen {
        complete_first: bool,
        tear: Tear,
    },
    /// The process is killed after `points` more write and sync points (its batches in
    /// flight run until then), the machine stays up (the caches keep what was written and not
    /// synced), and the log is opened again.
    Kill {
        points: u64,
    },
}

fn tear() -> impl Strategy<Value = Tear> {
    prop_oneof![
        Just(Tear::None),
        any::<u64>().prop_map(|seed| Tear::LastWrite { seed }),
        any::<u64>().prop_map(|seed| Tear::Writeback { seed }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1u64..12, any::<bool>()).prop_map(|(count, b)| Op::Append { count, term_bump: b && count % 3 == 0 }),
        3 => Just(Op::Submit),
        3 => Just(Op::Complete),
        2 => Just(Op::Flush),
        2 => (0u64..40).prop_map(|back| Op::Truncate { back }),
        1 => (0u8..=100).prop_map(|fraction| Op::Compact { fraction }),
        1 => (0u8..3, 0u64..60, 0u64..3).prop_map(|(at, offset, term_step)| Op::Reset { at, offset, term_step }),
        1 => (1u64..5, proptest::option::of(0u64..3)).prop_map(|(term, vote)| Op::SaveHardState { term, vote }),
        1 => (any::<bool>(), tear()).prop_map(|(complete_first, tear)| Op::Reopen { complete_first, tear }),
        1 => (0u64..6).prop_map(|points| Op::Kill { points }),
    ]
}

fn check(log: &LogStore<SimDisk>, model: &Model) {
    log.check_invariants();
    assert_eq!(log.first_index(), LogIndex(model.first), "first index");
    assert_eq!(log.last_index(), LogIndex(model.last()), "last index");
    assert!(log.durable_index() >= LogIndex(model.durable), "durable index went back");
    assert_eq!(log.hard_state(), model.hard_state);
    if let Some(t) = model.prev_term {
        assert_eq!(log.term(LogIndex(model.first - 1)), Some(Term(t)), "term before the first");
    }
    for e in &model.entries {
        assert_eq!(log.term(e.index), Some(e.term), "term of {:?}", e.index);
    }
    let mut next = model.first;
    while next <= model.last() {
        let got = log.read(LogIndex(next), 3000).expect("read");
        assert!(!got.is_empty(), "read returned nothing at {next}");
        for e in &got {
            assert_eq!(e, model.get(e.index.get()), "entry {:?}", e.index);
        }
        next += got.len() as u64;
    }
    assert!(log.read(LogIndex(model.last() + 1), 100).expect("read at end").is_empty());
}

/// Opens the log again after a kill or a power loss: it must hold every entry the model had
/// as durable and nothing the model never had; the model keeps what it recovered, all durable.
fn reopen(
    dir: &Path,
    options: LogOptions,
    disk: &Rc<SimDisk>,
    model: &mut Model,
) -> LogStore<SimDisk> {
    let (log, recovery) = LogStore::open(dir, options, disk.clone()).expect("reopen");
    let last = recovery.last_index.get();
    assert!(last >= model.durable, "lost durable entries: {last} < {}", model.durable);
    assert!(last <= model.last(), "recovered entries never appended");
    model.entries.truncate((last + 1 - model.first) as usize);
    model.durable = last;
    log
}

fn run(ops: Vec<Op>, direct_io: bool, zero_fill: ZeroFill) {
    let dir = Path::new("/logs/a");
    let disk = Rc::new(SimDisk::new());
    let options = LogOptions { zero_fill, ..small_options(direct_io) };
    let (mut log, _) = LogStore::open(dir, options, disk.clone()).expect("open");
    let mut model = Model::empty(None);
    for op in ops {
        match op {
            Op::Append { count, term_bump } => {
                if term_bump {
                    model.term += 1;
                }
                let new = entries(model.last() + 1, count, model.term);
                log.append(&new).expect("append");
                model.entries.extend(new);
            }
            Op::Submit => {
                log.submit().expect("submit");
            }
            Op::Complete => {
                model.durable = log.process_completions().expect("complete").get();
            }
            Op::Flush => {
                model.durable = log.flush().expect("flush").get();
                assert_eq!(model.durable, model.last());
            }
            Op::Truncate { back } => {
                // Never below the saved commit index: Raft never truncates committed entries
                // (and recovery refuses damage at or below it as corruption).
                let to = model
                    .last()
                    .saturating_sub(back)
                    .max(model.first - 1)
                    .max(model.hard_state.commit.get().min(model.last()));
                log.truncate_after(LogIndex(to)).expect("truncate");
                model.entries.truncate((to + 1 - model.first) as usize);
                model.durable = model.durable.min(to);
                // A new leader's entries follow a truncation, in a higher term.
                model.term += 1;
            }
            Op::Compact { fraction } => {
                let span = model.last() + 1 - model.first;
                let to = model.first + span * u64::from(fraction) / 100;
                log.compact_before(LogIndex(to)).expect("compact");
                let first = log.first_index().get();
                assert!(
                    first >= model.first && first <= to.max(model.first),
                    "compaction kept too little"
                );
                model.entries.drain(..(first - model.first) as usize);
                if first != model.first {
                    model.prev_term = None;
                }
                model.first = first;
            }
            Op::Reset { at, offset, term_step } => {
                let index = match at {
                    0 => (model.first - 1).saturating_sub(offset),
                    1 => model.last().saturating_sub(offset).max(model.first - 1),
                    _ => model.last() + offset,
                }
                // Never below the saved commit index (refused with `ResetError::BelowCommit`).
                .max(model.hard_state.commit.get());
                let term = if index == 0 { 0 } else { (model.term + term_step).max(2) - 1 };
                log.reset_to(LogIndex(index), Term(term)).expect("reset");
                model.entries.clear();
                model.first = index + 1;
                model.durable = index;
                model.prev_term = Some(term);
                model.term = model.term.max(term);
            }
            Op::SaveHardState { term, vote } => {
                let hs = HardState {
                    term: Term(term),
                    vote: vote.map(NodeId),
                    commit: LogIndex(model.durable),
                };
                log.save_hard_state(hs).expect("save hard state");
                model.hard_state = hs;
            }
            Op::Kill { points } => {
                // The disk stops while the store finishes its batches in flight (a write may run
                // and its fdatasync not); the restart reads what the caches hold, synced or not,
                // and makes it durable.
                let at = disk.stats().points + points;
                disk.set_faults(SimFaults { crash_at_point: Some(at), ..disk.faults() });
                drop(log);
                disk.restart_process();
                log = reopen(dir, options, &disk, &mut model);
            }
            Op::Reopen { complete_first, tear } => {
                if complete_first {
                    model.durable = log.process_completions().expect("complete").get();
                }
                // The process dies: the disk loses what was not synced before the store can
                // finish its batch in flight.
                disk.crash(tear);
                drop(log);
                log = reopen(dir, options, &disk, &mut model);
            }
        }
        check(&log, &model);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn log_store_matches_model_direct(ops in proptest::collection::vec(op(), 1..120)) {
        run(ops, true, ZeroFill::Always);
    }

    #[test]
    fn log_store_matches_model_buffered(ops in proptest::collection::vec(op(), 1..120)) {
        run(ops, false, ZeroFill::Always);
    }

    #[test]
    fn log_store_matches_model_zero_fill_by_batch_size(ops in proptest::collection::vec(op(), 1..120)) {
        run(ops, true, ZeroFill::BatchBytesBelow(2048));
    }
}
