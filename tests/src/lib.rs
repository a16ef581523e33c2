//! raftwal's integration test harnesses.
//!
//! - [`store`]: the storage seam of the simulated replicas ([`store::SimStore`]) and its model,
//!   [`store::ModelStore`], which keeps a "written" and a "durable" image of the hard state and
//!   the log, so a crash keeps exactly what was fsynced (and, optionally, a prefix of the writes
//!   whose fsync had not completed).
//! - [`replica`]: a model of the replica loop that drives one consensus core (drain `Ready`,
//!   group-commit writes, send after persist, acknowledge proposals).
//! - [`checker`]: the safety properties checked after every step (the five Raft properties,
//!   acknowledged entries durable on a majority, linearizable reads).
//! - [`sim`]: the seeded whole-cluster simulator behind the `simulate` binary.
//! - [`scenario`]: a small DSL for hand-written scenario tests.
//! - [`rng`]: the simulator's deterministic generator.

pub mod checker;
pub mod replica;
pub mod rng;
pub mod scenario;
pub mod sim;
pub mod store;
