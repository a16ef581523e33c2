//! Segmented, CRC-checked log storage with group fsync and crash recovery.
//!
//! One log per directory. The writer reaches the disk only through a narrow seam with a real
//! io_uring implementation and a simulated one used by the crash tests and the cluster simulator.
