//! SHA-1 for info hashes and piece verification (BEP 3): one entry point, so the implementation can be
//! swapped for a faster one without touching callers.

/// The SHA-1 digest of `data`: 20 bytes.
pub fn sha1(data: &[u8]) -> [u8; 20] {
    use sha1::Digest;
    sha1::Sha1::digest(data).into()
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_vector() {
        // FIPS 180-1 test vector "abc".
        assert_eq!(
            super::sha1(b"abc"),
            [
                0xa9, 0x99, 0x3e, 0x36, 0x47, 0x06, 0x81, 0x6a, 0xba, 0x3e, 0x25, 0x71, 0x78, 0x50,
                0xc2, 0x6c, 0x9c, 0xd0, 0xd8, 0x9d
            ]
        );
    }
}
