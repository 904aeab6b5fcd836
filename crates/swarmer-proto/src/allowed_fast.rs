//! The canonical allowed fast set of BEP 6 ("Allowed Fast"): the pieces a peer may request from us
//! while choked, derived from its IPv4 address and the info hash alone, so both ends compute the same
//! set and a peer cannot get more by reconnecting from a neighbouring address.
//!
//! BEP 6 defines the set only for IPv4 peers; the caller decides what to do for IPv6 ones.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use crate::InfoHash;
use crate::digest::sha1;

/// The first `k` pieces of the canonical allowed fast set (BEP 6, "Allowed Fast") of a peer at `ip`
/// for the torrent `info_hash` of `piece_count` pieces: distinct piece indices in `0..piece_count`, in
/// the order the algorithm generates them (the order to send `allowed fast` messages in).
///
/// As BEP 6 specifies: the address is masked to its /24 (`ip & 0xffffff00`), `x` is those 4 bytes
/// followed by the 20 bytes of the info hash, and then repeatedly `x = SHA-1(x)`, each digest giving
/// five big-endian 32-bit words taken modulo `piece_count`; indices already chosen are skipped. `k` is
/// capped at `piece_count` (a set cannot have more distinct pieces than the torrent), and a torrent
/// without pieces gives an empty set.
///
/// Cost: one SHA-1 per five candidates, so about `k / 5` hashes when `k` is small against
/// `piece_count`; asking for every piece needs about `piece_count · ln(piece_count) / 5`.
pub fn allowed_fast_set(
    ip: Ipv4Addr,
    info_hash: &InfoHash,
    piece_count: u32,
    k: usize,
) -> Vec<u32> {
    let k = k.min(piece_count as usize);
    let mut set = Vec::with_capacity(k);
    if k == 0 {
        return set;
    }
    let mut seen = HashSet::with_capacity(k);

    let masked = u32::from(ip) & 0xffff_ff00;
    let mut seed = [0u8; 24];
    seed[..4].copy_from_slice(&masked.to_be_bytes());
    seed[4..].copy_from_slice(&info_hash.0);
    let mut x = sha1(&seed);
    loop {
        for word in x.chunks_exact(4) {
            let index = u32::from_be_bytes([word[0], word[1], word[2], word[3]]) % piece_count;
            if seen.insert(index) {
                set.push(index);
                if set.len() == k {
                    return set;
                }
            }
        }
        x = sha1(&x);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC_IP: Ipv4Addr = Ipv4Addr::new(80, 4, 4, 200);
    const SPEC_HASH: InfoHash = InfoHash([0xaa; 20]);
    /// BEP 6's example: the 9-piece set for 80.4.4.200, an info hash of 20 0xaa bytes and 1313 pieces.
    /// Its 7-piece set is the first seven of these.
    const SPEC_SET: [u32; 9] = [1059, 431, 808, 1217, 287, 376, 1188, 353, 508];

    #[test]
    fn bep_6_test_vectors() {
        let cases: [(usize, &[u32]); 2] = [(7, &SPEC_SET[..7]), (9, &SPEC_SET)];
        for (k, expected) in cases {
            assert_eq!(
                allowed_fast_set(SPEC_IP, &SPEC_HASH, 1313, k),
                expected,
                "k = {k}"
            );
        }
    }

    #[test]
    fn only_the_slash_24_matters() {
        for last in [0, 1, 199, 255] {
            let ip = Ipv4Addr::new(80, 4, 4, last);
            assert_eq!(allowed_fast_set(ip, &SPEC_HASH, 1313, 9), SPEC_SET, "{ip}");
        }
        let other_net = allowed_fast_set(Ipv4Addr::new(80, 4, 5, 200), &SPEC_HASH, 1313, 9);
        assert_ne!(other_net, SPEC_SET);
        let other_hash = allowed_fast_set(SPEC_IP, &InfoHash([0xab; 20]), 1313, 9);
        assert_ne!(other_hash, SPEC_SET);
    }

    #[test]
    fn a_smaller_k_is_a_prefix() {
        let full = allowed_fast_set(SPEC_IP, &SPEC_HASH, 1313, 40);
        for k in 0..=40 {
            assert_eq!(
                allowed_fast_set(SPEC_IP, &SPEC_HASH, 1313, k),
                full[..k],
                "k = {k}"
            );
        }
    }

    #[test]
    fn sizes_and_edge_cases() {
        // (piece_count, k, expected length)
        let cases: [(u32, usize, usize); 8] = [
            (0, 0, 0),
            (0, 10, 0),
            (1313, 0, 0),
            (1, 10, 1),
            (3, 10, 3),
            (10, 10, 10),
            (1313, 10, 10),
            (200, 200, 200),
        ];
        for (piece_count, k, len) in cases {
            let set = allowed_fast_set(SPEC_IP, &SPEC_HASH, piece_count, k);
            assert_eq!(set.len(), len, "{piece_count} pieces, k = {k}");
            assert!(set.iter().all(|&i| i < piece_count), "{set:?}");
            let distinct: HashSet<_> = set.iter().collect();
            assert_eq!(distinct.len(), set.len(), "duplicates in {set:?}");
        }
        // Every piece of a tiny torrent, and the only one of a one-piece torrent.
        let mut all = allowed_fast_set(SPEC_IP, &SPEC_HASH, 3, 10);
        all.sort_unstable();
        assert_eq!(all, [0, 1, 2]);
        assert_eq!(allowed_fast_set(SPEC_IP, &SPEC_HASH, 1, 1), [0]);
    }
}
