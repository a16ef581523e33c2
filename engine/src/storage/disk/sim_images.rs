//! Read-only views of a [`SimDisk`]'s durable image, for checkers outside the storage engine.
//!
//! Owns: the accessors a whole-cluster simulator needs to judge durability against the disk
//! itself rather than against what a log store claims: the durable name table, the durable bytes
//! of a file, and the space in use.
//! Must not: change the disk (a check must never influence the run it checks) or copy a file's
//! bytes (a checker reads them after every step).

use super::{names_in, SimDisk};
use std::path::Path;

impl SimDisk {
    /// Names of the files in `dir` as its durable name table has them (what a crash would
    /// leave), sorted.
    pub fn durable_file_names(&self, dir: &Path) -> Vec<String> {
        let s = self.state.borrow();
        if !s.dir_durable(dir) {
            return Vec::new();
        }
        names_in(&s.durable_names, dir)
    }

    /// Calls `read` with the durable bytes of the file that `path` names in the durable name
    /// table (what a crash without a tear would leave), without copying them; `None` when the
    /// durable table has no such name. `read` must not call the disk.
    pub fn with_durable_bytes<R>(&self, path: &Path, read: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let s = self.state.borrow();
        if !s.name_durable(path) {
            return None;
        }
        let inode = s.durable_names.get(path)?;
        let bytes = s.inodes.get(inode).map(|node| node.durable.as_slice()).unwrap_or_default();
        Some(read(bytes))
    }

    /// Bytes the files occupy now, the quantity [`super::SimFaults::capacity_bytes`] limits.
    pub fn used_bytes(&self) -> u64 {
        self.state.borrow().used_bytes()
    }
}
