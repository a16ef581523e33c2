//! The thread-per-core runtime: shard threads that drive the consensus core, the log store and
//! the QUIC transport of the logs they own.
//!
//! Owns: the shard threads ([`shard`]) and the report of one that ended on its own
//! ([`failure`]), the replica driver ([`replica`], [`requests`]), the commands other threads
//! send to a shard ([`command`]), and what a replica keeps beside its core and store: waiting
//! appends ([`waiters`]), the deduplication table ([`dedup`]), subscribers ([`subscribers`]),
//! linearizable reads waiting for their read index ([`read_index`]).
//! Must not: be reached except through [`command::ShardHandle`]s: shards share nothing.
//!
//! docs/design.md walks through the write path step by step.

pub(crate) mod clock;
pub(crate) mod command;
pub(crate) mod dedup;
pub(crate) mod disk_wake;
pub(crate) mod failure;
pub(crate) mod read_index;
pub(crate) mod replica;
pub(crate) mod requests;
pub(crate) mod shard;
pub(crate) mod source;
pub(crate) mod subscribers;
#[cfg(test)]
mod tests;
pub(crate) mod waiters;
