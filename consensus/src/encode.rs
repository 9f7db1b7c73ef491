//! Canonical consensus encoding.
//!
//! Little-endian integers, Bitcoin's CompactSize lengths in their minimal form
//! only, and no trailing bytes. Every count read from the wire is checked
//! against the bytes that remain (times the smallest size one item can have)
//! before anything is allocated, so a hostile length prefix cannot make a
//! decoder reserve memory that the input does not back.

/// Why bytes did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended before the value did.
    #[error("unexpected end of data: needed {needed} more bytes at offset {offset}")]
    UnexpectedEnd {
        /// Bytes still needed.
        needed: usize,
        /// Where the reader stood.
        offset: usize,
    },
    /// A CompactSize used more bytes than its value needs.
    #[error("non-minimal CompactSize encoding of {value}")]
    NonMinimalCompactSize {
        /// The value that was encoded.
        value: u64,
    },
    /// A count or length is larger than the remaining bytes could hold.
    #[error("{what} count {count} exceeds what {remaining} remaining bytes can hold")]
    CountTooLarge {
        /// What was being counted.
        what: &'static str,
        /// The count read.
        count: u64,
        /// Bytes left in the input.
        remaining: usize,
    },
    /// A count or length is above a fixed limit.
    #[error("{what} {value} is above the limit of {limit}")]
    OverLimit {
        /// What was measured.
        what: &'static str,
        /// The value read.
        value: u64,
        /// The limit.
        limit: u64,
    },
    /// Bytes were left after a complete value.
    #[error("{0} trailing bytes after the encoded value")]
    TrailingBytes(usize),
}

/// A cursor over bytes being decoded.
#[derive(Debug)]
pub struct Reader<'a> {
    data: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    /// Starts reading at the beginning of `data`.
    #[must_use]
    pub fn new(data: &'a [u8]) -> Self {
        Self { data, offset: 0 }
    }

    /// Bytes not read yet.
    #[must_use]
    pub fn remaining(&self) -> usize {
        self.data.len() - self.offset
    }

    /// Bytes read so far.
    #[must_use]
    pub fn position(&self) -> usize {
        self.offset
    }

    /// Fails unless every byte has been read.
    ///
    /// # Errors
    /// [`DecodeError::TrailingBytes`] when bytes are left.
    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            left => Err(DecodeError::TrailingBytes(left)),
        }
    }

    /// Takes the next `len` bytes.
    ///
    /// # Errors
    /// [`DecodeError::UnexpectedEnd`] when fewer remain.
    pub fn take(&mut self, len: usize) -> Result<&'a [u8], DecodeError> {
        if len > self.remaining() {
            return Err(DecodeError::UnexpectedEnd { needed: len - self.remaining(), offset: self.offset });
        }
        let slice = &self.data[self.offset..self.offset + len];
        self.offset += len;
        Ok(slice)
    }

    /// Takes a fixed-size array.
    ///
    /// # Errors
    /// [`DecodeError::UnexpectedEnd`] when fewer bytes remain.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// Reads a byte.
    ///
    /// # Errors
    /// [`DecodeError::UnexpectedEnd`] at the end of input.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    /// Reads a little-endian u16.
    ///
    /// # Errors
    /// [`DecodeError::UnexpectedEnd`] at the end of input.
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    /// Reads a little-endian u32.
    ///
    /// # Errors
    /// [`DecodeError::UnexpectedEnd`] at the end of input.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    /// Reads a little-endian u64.
    ///
    /// # Errors
    /// [`DecodeError::UnexpectedEnd`] at the end of input.
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// Reads a CompactSize in its minimal form.
    ///
    /// # Errors
    /// [`DecodeError::NonMinimalCompactSize`] for a longer form than needed,
    /// [`DecodeError::UnexpectedEnd`] at the end of input.
    pub fn compact_size(&mut self) -> Result<u64, DecodeError> {
        let (value, minimum) = match self.u8()? {
            0xff => (self.u64()?, 0x1_0000_0000),
            0xfe => (u64::from(self.u32()?), 0x1_0000),
            0xfd => (u64::from(self.u16()?), 0xfd),
            small => return Ok(u64::from(small)),
        };
        if value < minimum {
            return Err(DecodeError::NonMinimalCompactSize { value });
        }
        Ok(value)
    }

    /// Reads a count of items of at least `min_item_size` bytes each and
    /// checks that the remaining input could hold them all.
    ///
    /// # Errors
    /// [`DecodeError::CountTooLarge`] when the input cannot back the count.
    pub fn count(&mut self, what: &'static str, min_item_size: usize) -> Result<usize, DecodeError> {
        let count = self.compact_size()?;
        let remaining = self.remaining();
        let fits = usize::try_from(count)
            .ok()
            .and_then(|n| n.checked_mul(min_item_size.max(1)))
            .is_some_and(|bytes| bytes <= remaining);
        if !fits {
            return Err(DecodeError::CountTooLarge { what, count, remaining });
        }
        usize::try_from(count).map_err(|_| DecodeError::CountTooLarge { what, count, remaining })
    }

    /// Reads a CompactSize length and that many bytes.
    ///
    /// # Errors
    /// As [`Reader::count`] and [`Reader::take`].
    pub fn var_bytes(&mut self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = self.count(what, 1)?;
        self.take(len)
    }
}

/// Items of a decoded list allocated before any is read. A count is backed
/// by the bytes left in the message, but the items it promises may not
/// decode, so room beyond this is taken only as they do.
pub const MAX_PREALLOCATED_ITEMS: usize = 1_024;

/// Decodes `count` items with `item` into a vector: room for at most
/// [`MAX_PREALLOCATED_ITEMS`] up front, more as items decode, and room
/// left over above an eighth given back, so that the vector's memory
/// stays within 9/8 of what its items need.
///
/// # Errors
/// The first item's error.
pub fn decode_list<T>(
    count: usize,
    mut item: impl FnMut() -> Result<T, DecodeError>,
) -> Result<Vec<T>, DecodeError> {
    let mut items = Vec::with_capacity(count.min(MAX_PREALLOCATED_ITEMS));
    for _ in 0..count {
        items.push(item()?);
    }
    trim_excess(&mut items);
    Ok(items)
}

/// Gives back a vector's unused room when it is over an eighth of its length.
pub fn trim_excess<T>(items: &mut Vec<T>) {
    if items.capacity() - items.len() > items.len() / 8 {
        items.shrink_to_fit();
    }
}

/// Appends the CompactSize encoding of `value` to `out`.
pub fn write_compact_size(out: &mut Vec<u8>, value: u64) {
    match value {
        0..=0xfc => out.push(value as u8),
        0xfd..=0xffff => {
            out.push(0xfd);
            out.extend_from_slice(&(value as u16).to_le_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(0xfe);
            out.extend_from_slice(&(value as u32).to_le_bytes());
        }
        _ => {
            out.push(0xff);
            out.extend_from_slice(&value.to_le_bytes());
        }
    }
}

/// Bytes the CompactSize encoding of `value` takes.
#[must_use]
pub const fn compact_size_len(value: u64) -> usize {
    match value {
        0..=0xfc => 1,
        0xfd..=0xffff => 3,
        0x1_0000..=0xffff_ffff => 5,
        _ => 9,
    }
}

/// A value with a canonical consensus encoding.
pub trait Encode {
    /// Appends the encoding to `out`.
    fn encode_to(&self, out: &mut Vec<u8>);

    /// The encoding as a new vector.
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_to(&mut out);
        out
    }
}

/// A value that can be read from its canonical consensus encoding.
pub trait Decode: Sized {
    /// Reads one value from `reader`, leaving it after the value.
    ///
    /// # Errors
    /// Any [`DecodeError`] the bytes cause.
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self, DecodeError>;

    /// Decodes exactly one value from `bytes`, refusing trailing bytes.
    ///
    /// # Errors
    /// Any [`DecodeError`], including [`DecodeError::TrailingBytes`].
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut reader = Reader::new(bytes);
        let value = Self::decode_from(&mut reader)?;
        reader.finish()?;
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compact(bytes: &[u8]) -> Result<u64, DecodeError> {
        let mut reader = Reader::new(bytes);
        let value = reader.compact_size()?;
        reader.finish()?;
        Ok(value)
    }

    #[test]
    fn compact_size_boundaries() {
        for value in [0u64, 0xfc, 0xfd, 0xffff, 0x1_0000, 0xffff_ffff, 0x1_0000_0000, u64::MAX] {
            let mut out = Vec::new();
            write_compact_size(&mut out, value);
            assert_eq!(out.len(), compact_size_len(value));
            assert_eq!(compact(&out), Ok(value));
        }
    }

    #[test]
    fn non_minimal_compact_size_is_refused_at_each_boundary() {
        // One step below each form's minimum is refused, the minimum itself is fine.
        assert_eq!(compact(&[0xfd, 0xfd, 0x00]), Ok(0xfd));
        assert_eq!(compact(&[0xfd, 0xfc, 0x00]), Err(DecodeError::NonMinimalCompactSize { value: 0xfc }));
        assert_eq!(compact(&[0xfe, 0x00, 0x00, 0x01, 0x00]), Ok(0x1_0000));
        assert_eq!(
            compact(&[0xfe, 0xff, 0xff, 0x00, 0x00]),
            Err(DecodeError::NonMinimalCompactSize { value: 0xffff })
        );
        assert_eq!(compact(&[0xff, 0, 0, 0, 0, 1, 0, 0, 0]), Ok(0x1_0000_0000));
        assert_eq!(
            compact(&[0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]),
            Err(DecodeError::NonMinimalCompactSize { value: 0xffff_ffff })
        );
    }

    #[test]
    fn count_is_checked_against_remaining_bytes_before_allocation() {
        // Claims 2^32 items of 10 bytes with 3 bytes behind it.
        let mut reader = Reader::new(&[0xff, 0, 0, 0, 0, 1, 0, 0, 0, 1, 2, 3]);
        assert!(matches!(
            reader.count("output", 10),
            Err(DecodeError::CountTooLarge { count: 0x1_0000_0000, remaining: 3, .. })
        ));
        // Exactly enough bytes is accepted; one item more is not.
        let mut reader = Reader::new(&[2, 0, 0, 0, 0]);
        assert_eq!(reader.count("pair", 2), Ok(2));
        let mut reader = Reader::new(&[3, 0, 0, 0, 0, 0]);
        assert!(reader.count("pair", 2).is_err());
    }

    #[test]
    fn truncated_input_is_an_error() {
        let mut reader = Reader::new(&[1, 2, 3]);
        assert_eq!(reader.u32(), Err(DecodeError::UnexpectedEnd { needed: 1, offset: 0 }));
    }
}
