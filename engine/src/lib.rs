//! raftwal: a Raft-replicated write-ahead log engine.
//!
//! Layers, from the bottom up (each imports only from layers below it):
//! - `raftwal_wire::{types, message}`: protocol quantities, entries and Raft messages (pure data);
//! - [`raft`]: the sans-IO consensus core (no clock, thread, file, socket or RNG);
//! - [`storage`]: segmented, CRC-checked log files, group fsync and recovery, behind a disk seam.

pub mod raft;
pub mod storage;
