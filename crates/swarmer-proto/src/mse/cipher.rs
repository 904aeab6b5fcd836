//! The hashes and ciphers MSE derives from the shared secret S and the info hash (SKEY): the
//! `req1`/`req2`/`req3` hashes that let the responder sync and find the torrent, and the two RC4
//! streams (`keyA` for what the initiator sends, `keyB` for what the responder sends), each with
//! its first 1,024 bytes of keystream discarded.

use rc4::consts::U20;
use rc4::{KeyInit, Rc4, StreamCipher};
use sha1::{Digest, Sha1};

use super::dh::DH_KEY_LEN;

/// Keystream bytes thrown away before use (RC4's first bytes are biased).
const DISCARD: usize = 1024;

/// SHA-1 of the concatenation of `parts`.
pub(super) fn hash(parts: &[&[u8]]) -> [u8; 20] {
    let mut h = Sha1::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// `HASH('req1', S)`: the pattern the responder syncs on.
pub(super) fn req1(secret: &[u8; DH_KEY_LEN]) -> [u8; 20] {
    hash(&[b"req1", secret])
}

/// `HASH('req2', SKEY)`: names the torrent without showing its info hash.
pub(super) fn req2(skey: &[u8; 20]) -> [u8; 20] {
    hash(&[b"req2", skey])
}

/// `HASH('req3', S)`: masks `req2` so the same torrent looks different on every connection.
pub(super) fn req3(secret: &[u8; DH_KEY_LEN]) -> [u8; 20] {
    hash(&[b"req3", secret])
}

/// `a xor b`.
pub(super) fn xor(a: &[u8; 20], b: &[u8; 20]) -> [u8; 20] {
    std::array::from_fn(|i| a[i] ^ b[i])
}

/// One direction's RC4 keystream, already past the discarded bytes. Encrypting and decrypting are
/// the same operation; each side holds one for what it sends and one for what it receives.
pub struct Rc4Stream(Rc4<U20>);

impl Rc4Stream {
    /// The stream keyed with `HASH(name, S, SKEY)` (`name` is `keyA` or `keyB`), 1,024 bytes in.
    pub(super) fn new(name: &[u8], secret: &[u8; DH_KEY_LEN], skey: &[u8; 20]) -> Rc4Stream {
        let key = hash(&[name, secret, skey]);
        let mut rc4 = Rc4::<U20>::new(&key.into());
        let mut discard = [0u8; DISCARD];
        rc4.apply_keystream(&mut discard);
        Rc4Stream(rc4)
    }

    /// XORs `data` in place with the next `data.len()` bytes of keystream.
    pub fn apply(&mut self, data: &mut [u8]) {
        self.0.apply_keystream(data);
    }
}

impl std::fmt::Debug for Rc4Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Rc4Stream")
    }
}
