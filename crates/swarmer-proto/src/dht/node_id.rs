//! DHT node ids (BEP 5): 160-bit identifiers, the XOR distance metric, and the BEP 42 rule that ties a
//! node's id to its IP address.

use std::fmt;
use std::net::IpAddr;

/// A node id or a lookup target (an info hash): 20 bytes, compared by XOR distance (BEP 5, "Kademlia").
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct NodeId(pub [u8; 20]);

/// The XOR distance between two ids (BEP 5): 20 bytes, ordered as a big-endian 160-bit number, so
/// `a.distance(t) < b.distance(t)` means `a` is closer to `t`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Distance(pub [u8; 20]);

impl NodeId {
    /// A uniformly random id.
    pub fn random(rng: &mut impl rand::RngCore) -> NodeId {
        let mut id = [0u8; 20];
        rng.fill_bytes(&mut id);
        NodeId(id)
    }

    /// The XOR distance to `other`.
    pub fn distance(&self, other: &NodeId) -> Distance {
        let mut d = [0u8; 20];
        for (i, b) in d.iter_mut().enumerate() {
            *b = self.0[i] ^ other.0[i];
        }
        Distance(d)
    }

    /// How many leading bits `self` and `other` share: 0..=160 (160 only when they are equal).
    pub fn common_prefix_len(&self, other: &NodeId) -> usize {
        for (i, (a, b)) in self.0.iter().zip(other.0.iter()).enumerate() {
            let x = a ^ b;
            if x != 0 {
                return i * 8 + x.leading_zeros() as usize;
            }
        }
        160
    }

    /// A random id that shares exactly `prefix` leading bits with `self` (`prefix` < 160), for refreshing
    /// the bucket at that depth; for `prefix` ≥ 160 a copy of `self`.
    pub fn random_with_prefix(&self, prefix: usize, rng: &mut impl rand::RngCore) -> NodeId {
        if prefix >= 160 {
            return *self;
        }
        let mut id = NodeId::random(rng).0;
        let (byte, bit) = (prefix / 8, prefix % 8);
        id[..byte].copy_from_slice(&self.0[..byte]);
        // Keep the first `bit` bits of `self` in this byte, flip bit number `bit`, random after it.
        let keep = if bit == 0 { 0 } else { 0xffu8 << (8 - bit) };
        let flip = 0x80u8 >> bit;
        let rest = !keep & !flip;
        id[byte] = (self.0[byte] & keep) | (!self.0[byte] & flip) | (id[byte] & rest);
        NodeId(id)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId(")?;
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as BEP 42 specifies. Bitwise: it hashes a few
/// bytes per id check.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0x82F6_3B78 & mask);
        }
    }
    !crc
}

/// The 21-bit prefix BEP 42 derives from an IP and 3 random bits: the top 21 bits of the returned
/// value's first three bytes.
fn bep42_prefix(ip: IpAddr, r: u8) -> [u8; 3] {
    let crc = match ip {
        IpAddr::V4(v4) => {
            let mut b = v4.octets();
            for (x, m) in b.iter_mut().zip([0x03, 0x0f, 0x3f, 0xff]) {
                *x &= m;
            }
            b[0] |= (r & 7) << 5;
            crc32c(&b)
        }
        IpAddr::V6(v6) => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&v6.octets()[..8]);
            for (x, m) in b
                .iter_mut()
                .zip([0x01, 0x03, 0x07, 0x0f, 0x1f, 0x3f, 0x7f, 0xff])
            {
                *x &= m;
            }
            b[0] |= (r & 7) << 5;
            crc32c(&b)
        }
    };
    [(crc >> 24) as u8, (crc >> 16) as u8, (crc >> 8) as u8]
}

/// A BEP 42 node id for `ip`: the CRC-32C prefix of the masked address, then `random` bytes, with the
/// last byte's low 3 bits as the `r` the prefix was derived from. `random` supplies bytes 2..20.
pub fn bep42_id(ip: IpAddr, random: [u8; 20]) -> NodeId {
    let r = random[19];
    let prefix = bep42_prefix(ip, r);
    let mut id = random;
    id[0] = prefix[0];
    id[1] = prefix[1];
    id[2] = (prefix[2] & 0xf8) | (random[2] & 7);
    NodeId(id)
}

/// True if BEP 42 applies to `ip` at all: public unicast addresses. Loopback, private (RFC 1918, ULA),
/// link-local, unspecified and multicast addresses are exempt, as BEP 42 says for local networks.
pub fn bep42_applies(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                // 100.64.0.0/10, carrier-grade NAT: not reachable from outside either.
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64))
        }
        IpAddr::V6(v6) => {
            let seg0 = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg0 & 0xfe00) == 0xfc00
                || (seg0 & 0xffc0) == 0xfe80)
        }
    }
}

/// BEP 42: does `id` match `ip`? The first 21 bits must equal the CRC-32C prefix computed from the
/// masked address and the low 3 bits of the id's last byte. Exempt addresses (see [`bep42_applies`])
/// always pass.
pub fn bep42_valid(id: &NodeId, ip: IpAddr) -> bool {
    if !bep42_applies(ip) {
        return true;
    }
    let prefix = bep42_prefix(ip, id.0[19]);
    id.0[0] == prefix[0] && id.0[1] == prefix[1] && (id.0[2] & 0xf8) == (prefix[2] & 0xf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> [u8; 20] {
        let mut out = [0u8; 20];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    #[test]
    fn bep42_examples() {
        // The table in BEP 42: IP, rand (last byte), and the expected first three bytes (21 bits).
        let cases = [
            ("124.31.75.21", 1u8, "5fbfbf"),
            ("21.75.31.124", 86, "5a3ce9"),
            ("65.23.51.170", 22, "a5d432"),
            ("84.124.73.14", 65, "1b0321"),
            ("43.213.53.83", 90, "e56f6c"),
        ];
        for (ip, r, prefix) in cases {
            let ip: IpAddr = ip.parse().unwrap();
            let mut random = [0u8; 20];
            random[19] = r;
            random[2] = u8::from_str_radix(&prefix[4..6], 16).unwrap() & 7;
            let id = bep42_id(ip, random);
            assert_eq!(
                &id.0[..3],
                &hex(&format!("{prefix}{}", "0".repeat(34)))[..3]
            );
            assert!(bep42_valid(&id, ip));
            let mut wrong = id;
            wrong.0[0] ^= 0x80;
            assert!(!bep42_valid(&wrong, ip));
        }
        // Local addresses are exempt.
        assert!(bep42_valid(&NodeId([0; 20]), "127.0.0.1".parse().unwrap()));
        assert!(bep42_valid(
            &NodeId([0; 20]),
            "192.168.1.1".parse().unwrap()
        ));
        assert!(!bep42_valid(&NodeId([0; 20]), "8.8.8.8".parse().unwrap()));
    }

    #[test]
    fn distance_and_prefix() {
        let a = NodeId([0; 20]);
        let mut b = [0u8; 20];
        b[1] = 0x10;
        let b = NodeId(b);
        assert_eq!(a.common_prefix_len(&b), 11);
        assert_eq!(a.common_prefix_len(&a), 160);
        assert!(a.distance(&a) < a.distance(&b));
        let mut rng = <rand::rngs::SmallRng as rand::SeedableRng>::seed_from_u64(0x5eed);
        for p in [0, 1, 7, 8, 9, 100, 159] {
            let r = b.random_with_prefix(p, &mut rng);
            assert_eq!(b.common_prefix_len(&r), p);
        }
    }
}
