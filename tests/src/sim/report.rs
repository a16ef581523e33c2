//! The failure report: the violation, the last events and every replica's state.
//!
//! Owns: [`World::failure`].
//! Must not: run while the simulation goes well (it formats text).
//! Invariants: the report holds everything needed to replay the run (its options).

use super::world::{id_of, World};
use super::Failure;
use crate::checker::Violation;
use std::fmt::Write;

impl World {
    pub(super) fn failure(&self, violation: Violation) -> Box<Failure> {
        let mut state = String::new();
        for (position, replica) in self.replicas.iter().enumerate() {
            let image = replica.store().durable();
            let disk = replica.store().disk();
            let disk_state = format!(
                "disk: durable log ends at {:?}, durable {:?}, {} ops queued{}",
                image.last_index(),
                image.hard_state(),
                disk.pending_ops(),
                if replica.store().is_full() { ", FULL" } else { "" }
            );
            match replica.core() {
                Some(core) => {
                    let _ = writeln!(
                        state,
                        "{:?}: {:?} {:?} vote {:?} leader {:?}, log {:?}/{:?}, commit {:?}, \
                         durable {:?} ({disk_state})",
                        id_of(position),
                        core.role(),
                        core.term(),
                        core.vote(),
                        core.leader(),
                        core.last_index(),
                        core.last_term(),
                        core.commit_index(),
                        core.durable_index(),
                    );
                    for peer in core.config().voters.iter().filter(|peer| **peer != core.id()) {
                        if let Some(progress) = core.progress(*peer) {
                            let _ = writeln!(state, "    progress of {peer:?}: {progress:?}");
                        }
                    }
                }
                None => {
                    let _ = writeln!(state, "{:?}: down ({disk_state})", id_of(position));
                }
            }
        }
        let _ = writeln!(state, "--- profile drawn from the seed ---\n{:?}", self.profile);
        Box::new(Failure {
            options: self.options,
            at_us: self.now,
            violation,
            trace: self.trace.render(),
            state,
        })
    }
}
