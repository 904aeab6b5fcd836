//! The two 20-byte identifiers of BEP 3: the info hash of a torrent and the peer id of a client.

use std::fmt;

/// The SHA-1 of the bencoded `info` dictionary of a v1 torrent (BEP 3, "metainfo files"): 20 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InfoHash(pub [u8; 20]);

impl InfoHash {
    /// The 40 lowercase hexadecimal digits of the hash, as trackers' whitelists and magnet links write it.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// Parses 40 hexadecimal digits (either case). Returns `None` for any other input.
    pub fn from_hex(s: &str) -> Option<InfoHash> {
        let bytes = s.as_bytes();
        if bytes.len() != 40 {
            return None;
        }
        let mut out = [0u8; 20];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            out[i] = (hi * 16 + lo) as u8;
        }
        Some(InfoHash(out))
    }
}

impl fmt::Debug for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InfoHash({})", self.to_hex())
    }
}

impl fmt::Display for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A peer id (BEP 3, "peer id"): 20 bytes a client picks for itself at start-up.
///
/// swarmer uses the Azureus style of BEP 20: `-SW0100-` followed by 12 random bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerId(pub [u8; 20]);

impl PeerId {
    /// The client-identifying prefix of swarmer's peer ids (BEP 20 Azureus style, version 0.1.0.0).
    pub const PREFIX: &'static [u8; 8] = b"-SW0100-";

    /// A swarmer peer id: [`PeerId::PREFIX`] followed by 12 bytes from `rng`.
    pub fn generate(rng: &mut impl rand::RngCore) -> PeerId {
        let mut id = [0u8; 20];
        id[..8].copy_from_slice(Self::PREFIX);
        rng.fill_bytes(&mut id[8..]);
        PeerId(id)
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Most clients put a readable prefix first; show it, then the rest as hex.
        let printable = self
            .0
            .iter()
            .take_while(|b| b.is_ascii_graphic())
            .count()
            .min(8);
        write!(
            f,
            "PeerId({}{})",
            String::from_utf8_lossy(&self.0[..printable]),
            hex(&self.0[printable..])
        )
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_hash_hex_round_trips() {
        let h = InfoHash(*b"\x00\x01\xfe\xff0123456789abcdef");
        assert_eq!(InfoHash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(InfoHash::from_hex(&h.to_hex().to_uppercase()), Some(h));
        assert_eq!(InfoHash::from_hex("zz"), None);
        assert_eq!(InfoHash::from_hex(&"g".repeat(40)), None);
    }

    #[test]
    fn generated_peer_id_has_prefix() {
        let id = PeerId::generate(
            &mut <rand::rngs::SmallRng as rand::SeedableRng>::seed_from_u64(0x5eed),
        );
        assert_eq!(&id.0[..8], PeerId::PREFIX);
    }
}
