//! Message filters for [`super::Cluster::deliver_where`], [`super::Cluster::take`] and
//! [`super::Cluster::drop_where`].
//!
//! Owns: small predicates over messages.
//! Must not: look at anything but the message.
//! Invariants: none beyond purity.

use raftwal_wire::message::Message;

/// Messages of this kind (`Message::kind_name`).
pub fn kind(name: &'static str) -> impl Fn(&Message) -> bool {
    move |message| message.kind_name() == name
}

/// Messages from `node`.
pub fn from(node: u64) -> impl Fn(&Message) -> bool {
    move |message| message.from.get() == node
}

/// Messages to `node`.
pub fn to(node: u64) -> impl Fn(&Message) -> bool {
    move |message| message.to.get() == node
}

/// Messages of this kind to `node`.
pub fn kind_to(name: &'static str, node: u64) -> impl Fn(&Message) -> bool {
    move |message| message.kind_name() == name && message.to.get() == node
}

/// Messages of this kind from `node`.
pub fn kind_from(name: &'static str, node: u64) -> impl Fn(&Message) -> bool {
    move |message| message.kind_name() == name && message.from.get() == node
}

/// Every message.
pub fn all() -> impl Fn(&Message) -> bool {
    |_| true
}
