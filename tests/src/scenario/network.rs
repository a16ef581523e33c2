//! The scenario cluster's wire: delivery under the test's control, and cut links.
//!
//! Owns: the [`Cluster`] methods that move, drop, reorder or inject messages and cut links.
//! Must not: deliver anything the test did not ask for, or across a cut link.
//! Invariants: messages wait on the wire in send order (the module invariant 1 of the DSL).

use super::Cluster;
use raftwal_wire::message::Message;

impl Cluster {
    /// Whether the link from `from` to `to` is cut.
    fn is_blocked(&self, message: &Message) -> bool {
        self.blocked.contains(&(message.from.get(), message.to.get()))
    }

    /// Delivers every message now on the wire, in order (messages they cause wait for the next
    /// round). Messages over cut links or to crashed replicas are dropped. Returns how many were
    /// delivered.
    pub fn deliver(&mut self) -> usize {
        let batch = std::mem::take(&mut self.wire);
        let mut delivered = 0;
        for message in batch {
            if self.deliver_one(message) {
                delivered += 1;
            }
        }
        delivered
    }

    fn deliver_one(&mut self, message: Message) -> bool {
        if self.is_blocked(&message) {
            return false;
        }
        let to = message.to.get();
        let position = Cluster::position(to);
        let Some(core) = self.replicas[position].core_mut() else {
            return false;
        };
        if let Err(error) = core.step(message) {
            panic!("n{to} refused a message: {error}");
        }
        self.step(to);
        true
    }

    /// Delivers until the wire is empty (at most 1,000 rounds).
    pub fn settle(&mut self) -> &mut Cluster {
        for _ in 0..1000 {
            if self.wire.is_empty() {
                return self;
            }
            self.deliver();
        }
        panic!("the cluster did not settle within 1000 delivery rounds");
    }

    /// Delivers, in order, only the messages on the wire that `filter` selects; the others stay.
    pub fn deliver_where(&mut self, filter: impl Fn(&Message) -> bool) -> usize {
        let (chosen, kept): (Vec<Message>, Vec<Message>) =
            std::mem::take(&mut self.wire).into_iter().partition(|message| filter(message));
        self.wire = kept;
        chosen.into_iter().filter(|message| self.deliver_one(message.clone())).count()
    }

    /// Removes and returns the messages `filter` selects.
    pub fn take(&mut self, filter: impl Fn(&Message) -> bool) -> Vec<Message> {
        let (chosen, kept): (Vec<Message>, Vec<Message>) =
            std::mem::take(&mut self.wire).into_iter().partition(|message| filter(message));
        self.wire = kept;
        chosen
    }

    /// Drops the messages `filter` selects; returns how many.
    pub fn drop_where(&mut self, filter: impl Fn(&Message) -> bool) -> usize {
        self.take(filter).len()
    }

    /// Puts messages back on the wire (for instance ones taken earlier, to deliver them late or
    /// twice).
    pub fn inject(&mut self, messages: impl IntoIterator<Item = Message>) -> &mut Cluster {
        self.wire.extend(messages);
        self
    }

    /// The messages now on the wire.
    pub fn wire(&self) -> &[Message] {
        &self.wire
    }

    /// Every message sent so far, in order.
    pub fn sent(&self) -> &[Message] {
        &self.sent_log
    }

    /// Cuts both directions between `node` and every other replica.
    pub fn isolate(&mut self, node: u64) -> &mut Cluster {
        for other in 1..=self.replicas.len() as u64 {
            if other != node {
                self.blocked.insert((node, other));
                self.blocked.insert((other, node));
            }
        }
        self
    }

    /// Cuts the link from `from` to `to` only.
    pub fn cut(&mut self, from: u64, to: u64) -> &mut Cluster {
        self.blocked.insert((from, to));
        self
    }

    /// Restores every link.
    pub fn heal(&mut self) -> &mut Cluster {
        self.blocked.clear();
        self
    }
}
