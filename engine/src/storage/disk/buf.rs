//! [`IoBuf`]: a growable byte buffer whose start is aligned for O_DIRECT.
//!
//! Owns: the alignment trick, done in safe code: the backing `Vec` is over-allocated by one
//! block and the buffer's window starts at the first block-aligned address inside it.
//!
//! Invariants:
//! 1. `as_slice().as_ptr()` is a multiple of [`BLOCK_SIZE_BYTES`].
//! 2. `len() <= capacity()`; bytes in `[0, len)` are the caller's, bytes after are unspecified.
//! 3. The allocation changes only in [`IoBuf::reserve`], and only when the capacity must grow,
//!    so a reused buffer makes no allocation on the write path.

use crate::storage::format::BLOCK_SIZE_BYTES;

/// A byte buffer aligned to [`BLOCK_SIZE_BYTES`], handed to the disk for one write.
#[derive(Debug, Default)]
pub struct IoBuf {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

impl IoBuf {
    /// An empty buffer with room for at least `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> IoBuf {
        let mut buf = IoBuf::default();
        buf.reserve(capacity);
        buf
    }

    /// Bytes in the buffer.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the buffer holds no bytes.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes the buffer can hold without reallocating.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.storage.len() - self.start
    }

    /// Makes room for at least `capacity` bytes, keeping the current contents.
    pub fn reserve(&mut self, capacity: usize) {
        if capacity <= self.capacity() && !self.storage.is_empty() {
            return;
        }
        let capacity = capacity.max(self.capacity() * 2).max(BLOCK_SIZE_BYTES);
        let mut storage = vec![0u8; capacity + BLOCK_SIZE_BYTES];
        let start = storage.as_ptr().align_offset(BLOCK_SIZE_BYTES);
        assert!(start < BLOCK_SIZE_BYTES, "align_offset on a u8 pointer always succeeds");
        storage[start..start + self.len].copy_from_slice(&self.storage[self.start..][..self.len]);
        self.storage = storage;
        self.start = start;
    }

    /// Sets the length to `len` (at most the capacity); bytes that become visible are
    /// whatever the buffer held, so callers write them before handing the buffer out.
    #[inline]
    pub fn set_len(&mut self, len: usize) {
        assert!(len <= self.capacity(), "IoBuf::set_len beyond capacity");
        self.len = len;
    }

    /// Resizes to `len`, reserving as needed, and zero-fills any newly visible bytes.
    pub fn resize_zeroed(&mut self, len: usize) {
        self.reserve(len);
        if len > self.len {
            self.storage[self.start + self.len..self.start + len].fill(0);
        }
        self.len = len;
    }

    /// The buffer's bytes.
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.len]
    }

    /// The buffer's bytes, mutable.
    #[inline]
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + self.len]
    }

    /// Moves `range` of the buffer to its front and sets the length to the range's length.
    pub fn keep_range(&mut self, from: usize, to: usize) {
        assert!(from <= to && to <= self.len, "IoBuf::keep_range out of bounds");
        self.storage.copy_within(self.start + from..self.start + to, self.start);
        self.len = to - from;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_and_keeps_contents_across_growth() {
        let mut b = IoBuf::with_capacity(10);
        b.resize_zeroed(3);
        b.as_mut_slice().copy_from_slice(b"abc");
        b.reserve(100_000);
        assert_eq!(b.as_slice(), b"abc");
        assert_eq!(b.as_slice().as_ptr() as usize % BLOCK_SIZE_BYTES, 0);
        b.resize_zeroed(6);
        assert_eq!(b.as_slice(), b"abc\0\0\0");
        b.keep_range(1, 3);
        assert_eq!(b.as_slice(), b"bc");
    }
}
