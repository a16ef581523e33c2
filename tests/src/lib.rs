//! raftwal's integration test harnesses: the deterministic whole-cluster simulator and the
//! multi-process cluster tests.
