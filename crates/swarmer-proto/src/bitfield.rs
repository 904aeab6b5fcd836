//! A fixed-length set of piece indices in the wire format of BEP 3's `bitfield` message: the high bit of
//! the first byte is piece 0, and spare bits at the end are zero.

use std::fmt;

/// A bit per piece, in BEP 3 order (high bit of byte 0 is piece 0). Its length is fixed at creation.
#[derive(Clone, PartialEq, Eq)]
pub struct Bitfield {
    bytes: Vec<u8>,
    len: usize,
    ones: usize,
}

/// Why a received `bitfield` message does not fit the torrent (BEP 3, "bitfield").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BitfieldError {
    /// The payload is not `ceil(pieces / 8)` bytes long.
    #[error("bitfield of {got} bytes for {pieces} pieces (expected {expected})")]
    WrongLength {
        /// Bytes received.
        got: usize,
        /// Bytes expected.
        expected: usize,
        /// Pieces in the torrent.
        pieces: usize,
    },
    /// A bit past the last piece is set.
    #[error("bitfield has spare bits set past piece {pieces}")]
    SpareBitsSet {
        /// Pieces in the torrent.
        pieces: usize,
    },
}

impl Bitfield {
    /// An empty set able to hold `len` pieces.
    pub fn new(len: usize) -> Bitfield {
        Bitfield {
            bytes: vec![0; len.div_ceil(8)],
            len,
            ones: 0,
        }
    }

    /// A full set of `len` pieces (what a seeder has).
    pub fn full(len: usize) -> Bitfield {
        let mut b = Bitfield::new(len);
        for i in 0..len {
            b.set(i);
        }
        b
    }

    /// Reads a `bitfield` payload for a torrent of `len` pieces, rejecting a wrong length or set spare bits.
    pub fn from_bytes(bytes: &[u8], len: usize) -> Result<Bitfield, BitfieldError> {
        let expected = len.div_ceil(8);
        if bytes.len() != expected {
            return Err(BitfieldError::WrongLength {
                got: bytes.len(),
                expected,
                pieces: len,
            });
        }
        if len % 8 != 0 {
            let spare_mask = 0xffu8 >> (len % 8);
            if bytes[expected - 1] & spare_mask != 0 {
                return Err(BitfieldError::SpareBitsSet { pieces: len });
            }
        }
        let ones = bytes.iter().map(|b| b.count_ones() as usize).sum();
        Ok(Bitfield {
            bytes: bytes.to_vec(),
            len,
            ones,
        })
    }

    /// The number of pieces this set can hold.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the set holds no pieces at all (a zero-length bitfield).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether piece `i` is in the set. `i` past the end reads as absent.
    pub fn get(&self, i: usize) -> bool {
        i < self.len && self.bytes[i / 8] & (0x80 >> (i % 8)) != 0
    }

    /// Adds piece `i`; returns true if it was absent. Panics if `i >= len()` (a caller bug: indices come
    /// from the torrent's [`crate::Layout`]).
    pub fn set(&mut self, i: usize) -> bool {
        assert!(i < self.len, "bit {i} out of range {}", self.len);
        let mask = 0x80 >> (i % 8);
        let was = self.bytes[i / 8] & mask != 0;
        self.bytes[i / 8] |= mask;
        if !was {
            self.ones += 1;
        }
        !was
    }

    /// Removes piece `i`; returns true if it was present.
    pub fn clear(&mut self, i: usize) -> bool {
        assert!(i < self.len, "bit {i} out of range {}", self.len);
        let mask = 0x80 >> (i % 8);
        let was = self.bytes[i / 8] & mask != 0;
        self.bytes[i / 8] &= !mask;
        if was {
            self.ones -= 1;
        }
        was
    }

    /// How many pieces are in the set.
    pub fn count_ones(&self) -> usize {
        self.ones
    }

    /// True when every piece is in the set.
    pub fn is_full(&self) -> bool {
        self.ones == self.len
    }

    /// The payload of a BEP 3 `bitfield` message for this set.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The indices in the set, ascending.
    pub fn iter_ones(&self) -> impl Iterator<Item = usize> + '_ {
        self.bytes
            .iter()
            .enumerate()
            .filter(|(_, b)| **b != 0)
            .flat_map(|(byte_index, b)| {
                (0..8)
                    .filter(move |bit| b & (0x80 >> bit) != 0)
                    .map(move |bit| byte_index * 8 + bit)
            })
    }
}

impl fmt::Debug for Bitfield {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bitfield({}/{})", self.ones, self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_get_clear_count() {
        let mut b = Bitfield::new(10);
        assert!(b.set(0));
        assert!(!b.set(0));
        assert!(b.set(9));
        assert_eq!(b.as_bytes(), &[0x80, 0x40]);
        assert_eq!(b.count_ones(), 2);
        assert_eq!(b.iter_ones().collect::<Vec<_>>(), vec![0, 9]);
        assert!(b.clear(0));
        assert!(!b.clear(0));
        assert_eq!(b.count_ones(), 1);
        assert!(!b.get(100));
    }

    #[test]
    fn from_bytes_checks_length_and_spare_bits() {
        assert!(Bitfield::from_bytes(&[0xff, 0xc0], 10).unwrap().is_full());
        assert_eq!(
            Bitfield::from_bytes(&[0xff], 10),
            Err(BitfieldError::WrongLength {
                got: 1,
                expected: 2,
                pieces: 10
            })
        );
        assert_eq!(
            Bitfield::from_bytes(&[0xff, 0xe0], 10),
            Err(BitfieldError::SpareBitsSet { pieces: 10 })
        );
        assert!(Bitfield::from_bytes(&[0xff], 8).unwrap().is_full());
    }

    #[test]
    fn full_is_full() {
        let b = Bitfield::full(13);
        assert!(b.is_full());
        assert_eq!(b.as_bytes(), &[0xff, 0xf8]);
    }
}
