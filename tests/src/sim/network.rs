//! The simulated network: delivery, loss, duplication, delay, reordering and cut links.
//!
//! Owns: how a message travels from one simulated replica to another ([`World::send`],
//! [`World::deliver`]).
//! Must not: let a message cross a link that is cut when it is sent or when it arrives
//! (world invariant 3); deliver to a crashed replica.
//! Invariants: a link keeps FIFO order, like the QUIC stream raftwal uses per peer, except for
//! the messages the profile reorders on purpose and the rare stragglers (which never hold back
//! the messages behind them).

use super::trace::{MessageSummary, TraceEvent};
use super::world::{id_of, position_of, Event, Phase, World};
use crate::checker::{Property, Violation};
use raftwal_wire::message::{Message, MessageBody};

impl World {
    pub(super) fn deliver(&mut self, message: Message, sent_at: u64) -> Result<(), Violation> {
        let (from, to) = (position_of(message.from), position_of(message.to));
        let summary = MessageSummary::of(&message);
        if sent_at < self.wiped_at[to] {
            // The wiped replica is a new process: what was sent to its predecessor does not
            // reach it (in production the per-peer streams are the process's, and in order).
            self.summary.dropped += 1;
            self.trace.record(self.now, TraceEvent::Drop(summary, "sent before the wipe"));
            return Ok(());
        }
        if self.blocked[from * self.options.nodes + to] {
            self.summary.dropped += 1;
            self.trace.record(self.now, TraceEvent::Drop(summary, "link cut"));
            return Ok(());
        }
        if self.replicas[to].holds_ready() {
            // The runtime's replica drops what it is sent while it holds a `Ready` a full disk
            // refused: the core's answers could not leave.
            self.summary.dropped += 1;
            self.trace.record(self.now, TraceEvent::Drop(summary, "receiver holds a write"));
            return Ok(());
        }
        let Some(core) = self.replicas[to].core_mut() else {
            self.summary.dropped += 1;
            self.trace.record(self.now, TraceEvent::Drop(summary, "receiver down"));
            return Ok(());
        };
        self.summary.delivered += 1;
        self.trace.record(self.now, TraceEvent::Deliver(summary));
        if let Err(error) = core.step(message) {
            return Err(Violation {
                property: Property::CoreError,
                detail: format!("{:?} refused a message: {error}", id_of(to)),
            });
        }
        self.after_input(to)
    }

    pub(super) fn send(&mut self, message: Message) -> Result<(), Violation> {
        let (from, to) = (position_of(message.from), position_of(message.to));
        if matches!(message.body, MessageBody::LogStart(_)) {
            self.summary.log_starts += 1;
        }
        if self.options.lemma_checks {
            self.checker.on_send(&self.replicas[from], &message)?;
        }
        if self.blocked[from * self.options.nodes + to] {
            self.summary.dropped += 1;
            self.trace.record(self.now, TraceEvent::Drop(MessageSummary::of(&message), "link cut"));
            return Ok(());
        }
        if self.rng.chance(self.drop_per_million) {
            self.summary.dropped += 1;
            self.trace.record(self.now, TraceEvent::Drop(MessageSummary::of(&message), "lost"));
            return Ok(());
        }
        if self.rng.chance(self.duplicate_per_million) {
            self.trace.record(self.now, TraceEvent::Duplicate(MessageSummary::of(&message)));
            // A duplicate takes its own path and may arrive in any order.
            let (delay, _) = self.network_delay();
            self.schedule(self.now + delay, Event::Deliver(message.clone(), self.now));
        }
        let link = from * self.options.nodes + to;
        let (delay, straggler) = self.network_delay();
        let mut arrival = self.now + delay;
        if straggler || self.rng.chance(self.reorder_per_million) {
            // This one leaves the link's order: it may overtake earlier messages, and a
            // straggler does not hold back the ones behind it.
        } else {
            // Links are ordered like the QUIC streams raftwal uses: a message never overtakes
            // the one sent before it on the same link.
            arrival = arrival.max(self.link_arrival[link]);
            self.link_arrival[link] = arrival;
        }
        self.schedule(arrival, Event::Deliver(message, self.now));
        Ok(())
    }

    /// A delay between the profile's bounds; during the faults, one message in a hundred
    /// straggles far behind (and says so).
    pub(super) fn network_delay(&mut self) -> (u64, bool) {
        let (low, high) = (self.profile.net_delay_min_us, self.profile.net_delay_max_us);
        let delay = self.rng.range(low, high);
        if self.phase == Phase::Faults && self.rng.chance(10_000) {
            (delay + self.rng.range(0, 10 * high), true)
        } else {
            (delay, false)
        }
    }
}
