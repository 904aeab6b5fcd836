//! Message Stream Encryption (MSE, also "Protocol Encryption"), the de facto standard of Vuze,
//! libtorrent and Transmission for obfuscating a peer connection: a Diffie-Hellman exchange on a
//! 768-bit prime, the torrent's info hash as a shared secret (SKEY) both sides must know, and RC4
//! (its first 1,024 bytes of keystream discarded) over the rest of the connection, or plaintext
//! after an obfuscated handshake if both sides agree.
//!
//! [`Handshake`] is the handshake as a sans-IO state machine for both roles: bytes in with
//! [`Handshake::handle_input`], bytes out with [`Handshake::poll_transmit`], the deadline passed in.
//! Randomness (the private key and the padding) comes in as [`Secrets`]; this crate draws none.
//! Every wait is bounded: the sync searches give up after the spec's windows (532 bytes after the
//! initiator's key for the responder, 628 from the start; 520 after the responder's key for the
//! initiator), padding over 512 bytes is a fault, and so is anything not done by the deadline.

mod cipher;
mod dh;
mod handshake;

pub use cipher::Rc4Stream;
pub use dh::{DH_KEY_LEN, PRIVATE_KEY_LEN};
pub use handshake::{Established, Handshake, Status};

/// `HASH('req2', SKEY)` for the torrent `info_hash`: what a responder compares with
/// [`Status::NeedSkey`]'s hash to find the torrent an initiator names.
pub fn req2_hash(info_hash: &crate::InfoHash) -> [u8; 20] {
    cipher::req2(&info_hash.0)
}

/// The most padding either side may send in one place (PadA, PadB, PadC, PadD), in bytes.
pub const MAX_PAD: usize = 512;

/// The crypto methods of `crypto_provide` and `crypto_select`, a 32-bit field of flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Methods(pub u32);

impl Methods {
    /// Plaintext after the handshake (0x01): only the handshake is obfuscated.
    pub const PLAINTEXT: Methods = Methods(0x01);
    /// RC4 over the whole connection (0x02).
    pub const RC4: Methods = Methods(0x02);
    /// Either, as offered by a peer that prefers encryption but tolerates plaintext.
    pub const BOTH: Methods = Methods(0x03);

    /// Whether every flag of `other` is set here.
    pub fn contains(self, other: Methods) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }
}

/// The method a handshake settled on for the payload stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// The payload stream is plaintext.
    Plaintext,
    /// The payload stream is RC4-encrypted both ways.
    Rc4,
}

/// The random inputs of one handshake: the Diffie-Hellman private key and the padding sent after our
/// public key (PadA or PadB). Drawn by the caller (the library from the OS's generator, tests from
/// a seeded one), since this crate reads no randomness of its own.
#[derive(Clone)]
pub struct Secrets {
    /// The private exponent, big-endian; 160 bits, within the spec's 128 to 180.
    pub private_key: [u8; PRIVATE_KEY_LEN],
    /// Random bytes sent after our public key, at most [`MAX_PAD`] of them.
    pub pad: Vec<u8>,
}

impl Secrets {
    /// A random private key and 0 to [`MAX_PAD`] random padding bytes from `rng`.
    pub fn generate(rng: &mut impl rand::Rng) -> Secrets {
        let mut private_key = [0; PRIVATE_KEY_LEN];
        rng.fill_bytes(&mut private_key);
        let mut pad = vec![0; rng.gen_range(0..=MAX_PAD)];
        rng.fill_bytes(&mut pad);
        Secrets { private_key, pad }
    }
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The private key stays out of logs.
        write!(f, "Secrets {{ pad: {} bytes }}", self.pad.len())
    }
}

/// Why a handshake failed, by who is at fault (the peer for all but [`MseFault::Timeout`], which
/// may be the network).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MseFault {
    /// The peer's public key is not in 2..=P-2 (a degenerate key would make the secret guessable).
    #[error("degenerate Diffie-Hellman public key")]
    BadPublicKey,
    /// The synchronisation pattern (the initiator's `HASH('req1', S)`, or the responder's encrypted
    /// verification constant) did not come within the spec's window: the peer speaks something
    /// else, or derived another secret.
    #[error("no MSE sync pattern within {0} bytes")]
    NoSync(usize),
    /// `req2 xor req3` names no torrent we have.
    #[error("encrypted handshake for a torrent we do not have")]
    UnknownTorrent,
    /// The decrypted verification constant is not 8 zero bytes: the peer uses another key.
    #[error("bad verification constant")]
    BadVerificationConstant,
    /// A padding length over [`MAX_PAD`].
    #[error("padding of {0} bytes, over 512")]
    BadPadLength(u16),
    /// `crypto_select` is not exactly one of the methods we offered.
    #[error("crypto_select {0:#x} is not one method we offered")]
    BadSelect(u32),
    /// The peer offers no method we accept (for instance plaintext only when we require RC4).
    #[error("no common crypto method (peer offers {0:#x})")]
    NoCommonMethod(u32),
    /// The handshake was not done by its deadline.
    #[error("MSE handshake timed out")]
    Timeout,
}

#[cfg(test)]
mod tests;
