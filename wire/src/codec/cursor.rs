//! A bounds-checked reader over one frame's body.
//!
//! Every read checks the bytes left first and names the field in its error, so decoders are
//! straight-line code with `?` and cannot index out of bounds. Byte strings are returned as
//! slices of the frame's `Bytes` (no copy).

use super::error::DecodeError;
use bytes::Bytes;

/// Reads little-endian fields from the front of a frame body.
#[derive(Debug)]
pub(crate) struct Cursor {
    buf: Bytes,
    pos: usize,
}

impl Cursor {
    pub(crate) fn new(buf: Bytes) -> Cursor {
        Cursor { buf, pos: 0 }
    }

    /// Bytes not yet read.
    #[inline]
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    #[inline]
    fn take(&mut self, size: usize, what: &'static str) -> Result<&[u8], DecodeError> {
        let available = self.remaining();
        if size > available {
            return Err(DecodeError::Truncated { what, needed: size, available });
        }
        let start = self.pos;
        self.pos += size;
        Ok(&self.buf[start..start + size])
    }

    #[inline]
    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }

    #[inline]
    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    #[inline]
    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    #[inline]
    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// A fixed-size byte array (addresses).
    pub(crate) fn array<const N: usize>(
        &mut self,
        what: &'static str,
    ) -> Result<[u8; N], DecodeError> {
        let b = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(b);
        Ok(a)
    }

    /// A boolean stored as one byte, 0 or 1.
    pub(crate) fn bool(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(DecodeError::InvalidValue { what, value: u64::from(other) }),
        }
    }

    /// An optional u64: a presence byte (0 or 1), then the value when present.
    pub(crate) fn option_u64(&mut self, what: &'static str) -> Result<Option<u64>, DecodeError> {
        if self.bool(what)? {
            Ok(Some(self.u64(what)?))
        } else {
            Ok(None)
        }
    }

    /// `size` bytes as a slice of the frame's buffer.
    pub(crate) fn bytes(&mut self, size: usize, what: &'static str) -> Result<Bytes, DecodeError> {
        let available = self.remaining();
        if size > available {
            return Err(DecodeError::Truncated { what, needed: size, available });
        }
        let start = self.pos;
        self.pos += size;
        Ok(self.buf.slice(start..start + size))
    }

    /// Checks that a count of items, each at least `item_size_min` bytes, can fit in the bytes
    /// left, so that the decoder never reserves memory for items the frame cannot hold.
    pub(crate) fn check_count(
        &self,
        count: u64,
        item_size_min: usize,
        what: &'static str,
    ) -> Result<usize, DecodeError> {
        let available = self.remaining();
        let fits = count
            .checked_mul(item_size_min as u64)
            .is_some_and(|needed| needed <= available as u64);
        if !fits {
            return Err(DecodeError::CountTooLarge { what, count, available });
        }
        // The count fits in the frame, whose size fits in a u32, so it fits in a usize.
        Ok(count as usize)
    }

    /// Ends decoding: every byte of the body must have been read.
    pub(crate) fn finish(self, frame: &'static str) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(DecodeError::TrailingBytes { count, frame }),
        }
    }
}
