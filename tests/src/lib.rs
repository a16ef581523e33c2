//! raftwal's integration test harnesses.
//!
//! - [`store`]: the storage of a simulated node ([`store::SimStore`]): the real log store of
//!   `raftwal::storage` on the node's own simulated disk (`SimDisk`), which keeps a written and
//!   a durable image and crashes, tears writes, fails fsyncs and fills up on demand.
//! - [`durable`]: an independent reading of a simulated disk's durable image, against which the
//!   checker judges durability.
//! - [`replica`]: a model of the replica loop that drives one consensus core (drain `Ready`,
//!   group-commit writes through the store, one disk step at a time; send after persist;
//!   acknowledge proposals).
//! - [`checker`]: the safety properties checked after every step (the five Raft properties,
//!   acknowledged entries durable on a majority, linearizable reads, the lemmas).
//! - [`sim`]: the seeded whole-cluster simulator behind the `simulate` binary.
//! - [`scenario`]: a small DSL for hand-written scenario tests.
//! - [`rng`]: the simulator's deterministic generator.

pub mod checker;
pub mod durable;
pub mod replica;
pub mod rng;
pub mod scenario;
pub mod sim;
pub mod store;
