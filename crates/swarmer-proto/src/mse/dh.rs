//! The Diffie-Hellman exchange of MSE: the 768-bit prime P (the Oakley group 1 prime of RFC 2409),
//! generator 2, public keys and the shared secret S as 96-byte big-endian numbers.

use num_bigint::BigUint;

/// Length of a public key and of the shared secret, in bytes (768 bits).
pub const DH_KEY_LEN: usize = 96;
/// Length of our private exponent, in bytes (160 bits; the spec asks for 128 to 180).
pub const PRIVATE_KEY_LEN: usize = 20;

/// P, big-endian.
const PRIME: [u8; DH_KEY_LEN] = [
    0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xC9, 0x0F, 0xDA, 0xA2, 0x21, 0x68, 0xC2, 0x34,
    0xC4, 0xC6, 0x62, 0x8B, 0x80, 0xDC, 0x1C, 0xD1, 0x29, 0x02, 0x4E, 0x08, 0x8A, 0x67, 0xCC, 0x74,
    0x02, 0x0B, 0xBE, 0xA6, 0x3B, 0x13, 0x9B, 0x22, 0x51, 0x4A, 0x08, 0x79, 0x8E, 0x34, 0x04, 0xDD,
    0xEF, 0x95, 0x19, 0xB3, 0xCD, 0x3A, 0x43, 0x1B, 0x30, 0x2B, 0x0A, 0x6D, 0xF2, 0x5F, 0x14, 0x37,
    0x4F, 0xE1, 0x35, 0x6D, 0x6D, 0x51, 0xC2, 0x45, 0xE4, 0x85, 0xB5, 0x76, 0x62, 0x5E, 0x7E, 0xC6,
    0xF4, 0x4C, 0x42, 0xE9, 0xA6, 0x3A, 0x36, 0x21, 0x00, 0x00, 0x00, 0x00, 0x00, 0x09, 0x05, 0x63,
];

fn prime() -> BigUint {
    BigUint::from_bytes_be(&PRIME)
}

fn to_key(n: &BigUint) -> [u8; DH_KEY_LEN] {
    let bytes = n.to_bytes_be();
    let mut out = [0; DH_KEY_LEN];
    out[DH_KEY_LEN - bytes.len()..].copy_from_slice(&bytes);
    out
}

/// Our public key `2^x mod P` for the private key `x`.
pub(super) fn public_key(private_key: &[u8; PRIVATE_KEY_LEN]) -> [u8; DH_KEY_LEN] {
    let x = BigUint::from_bytes_be(private_key);
    to_key(&BigUint::from(2u32).modpow(&x, &prime()))
}

/// The shared secret `Y^x mod P`, or `None` when the peer's key `Y` is not in 2..=P-2.
pub(super) fn shared_secret(
    private_key: &[u8; PRIVATE_KEY_LEN],
    theirs: &[u8; DH_KEY_LEN],
) -> Option<[u8; DH_KEY_LEN]> {
    let p = prime();
    let y = BigUint::from_bytes_be(theirs);
    let one = BigUint::from(1u32);
    if y <= one || y >= &p - &one {
        return None;
    }
    let x = BigUint::from_bytes_be(private_key);
    Some(to_key(&y.modpow(&x, &p)))
}
