//! Message Stream Encryption on a connection (the async side of [`swarmer_proto::mse`]): running
//! the handshake over a stream's halves within its deadline, telling an incoming plaintext
//! handshake from an MSE key by its first bytes, wrapping the halves in RC4 when that was chosen,
//! and remembering per address whether a peer took MSE or plaintext, and whether it speaks uTP
//! ([`Memory`]: what worked with an address, to dial it the right way first). The choice of what to
//! try (the [`Encryption`] policy, the transport) is made by the connection code that calls it.

mod stream;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use swarmer_proto::InfoHash;
use swarmer_proto::mse::{Handshake, Method, Methods, MseFault, Secrets, Status};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::clock::Clock;
use crate::config::Encryption;
use stream::{CipherRead, CipherWrite};

/// The BitTorrent handshake's first 20 bytes (BEP 3): a length byte of 19, then the protocol name.
const PLAIN_PREFIX: &[u8; 20] = b"\x13BitTorrent protocol";

/// Most bytes read from the socket per read during the handshake.
const READ_CHUNK: usize = 1024;

/// Addresses remembered by [`Memory`]; past this the memory starts again, which only costs the
/// forgotten peers one refused attempt each.
const MEMORY_CAPACITY: usize = 4096;

/// Why an MSE handshake failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MseError {
    #[error("MSE: {0}")]
    Io(#[from] std::io::Error),
    #[error("MSE: {0}")]
    Fault(#[from] MseFault),
}

impl MseError {
    /// The peer broke the protocol (as opposed to the network failing or time running out).
    pub(crate) fn is_peer_fault(&self) -> bool {
        matches!(self, MseError::Fault(f) if *f != MseFault::Timeout)
    }
}

/// What an incoming connection's first bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FirstBytes {
    /// A plaintext BitTorrent handshake.
    Plaintext,
    /// Anything else: an MSE public key, or garbage.
    Encrypted,
}

/// Tells a plaintext handshake from an MSE key by the first bytes received; `None` until it can
/// tell (fewer than 20 bytes that all match the plaintext handshake so far).
pub(crate) fn classify(first: &[u8]) -> Option<FirstBytes> {
    let n = first.len().min(PLAIN_PREFIX.len());
    if first[..n] != PLAIN_PREFIX[..n] {
        Some(FirstBytes::Encrypted)
    } else if n == PLAIN_PREFIX.len() {
        Some(FirstBytes::Plaintext)
    } else {
        None
    }
}

/// The methods we offer (dialling) or accept (answering) under `policy`; `None` for no MSE.
pub(crate) fn methods(policy: Encryption) -> Option<Methods> {
    match policy {
        Encryption::Prefer => Some(Methods::BOTH),
        Encryption::Require => Some(Methods::RC4),
        Encryption::Disable => None,
    }
}

/// A connection after its MSE handshake: its halves (wrapped in RC4 when chosen), the torrent it
/// is for, and the payload bytes already received, in plaintext.
pub(crate) struct Encrypted<R, W> {
    pub(crate) read: R,
    pub(crate) write: W,
    pub(crate) info_hash: InfoHash,
    pub(crate) received: BytesMut,
}

/// Boxed halves, as a connection holds them.
type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// Runs the dialling side's handshake for `info_hash` over `read`/`write`, offering `provide` and
/// sending `ia` (our BitTorrent handshake) inside it, within `timeout`.
pub(crate) async fn initiate(
    mut read: BoxRead,
    mut write: BoxWrite,
    info_hash: InfoHash,
    provide: Methods,
    ia: &[u8],
    timeout: Duration,
    clock: Clock,
) -> Result<Encrypted<BoxRead, BoxWrite>, MseError> {
    let secrets = Secrets::generate(&mut rand::thread_rng());
    let deadline = clock.now() + timeout;
    let mut hs = Handshake::initiator(secrets, info_hash, provide, ia, deadline);
    let rest = drive(&mut hs, &mut read, &mut write, Vec::new(), |_| None, clock).await?;
    Ok(wrap(read, write, hs, rest))
}

/// Runs the answering side's handshake over `read`/`write`, `first` being the bytes already read,
/// accepting `allowed`; `lookup` names the torrent whose `HASH('req2', info hash)` the peer sent.
pub(crate) async fn respond(
    mut read: BoxRead,
    mut write: BoxWrite,
    first: &[u8],
    allowed: Methods,
    lookup: impl Fn(&[u8; 20]) -> Option<InfoHash>,
    timeout: Duration,
    clock: Clock,
) -> Result<Encrypted<BoxRead, BoxWrite>, MseError> {
    let secrets = Secrets::generate(&mut rand::thread_rng());
    let deadline = clock.now() + timeout;
    let mut hs = Handshake::responder(secrets, allowed, deadline);
    let rest = drive(
        &mut hs,
        &mut read,
        &mut write,
        first.to_vec(),
        lookup,
        clock,
    )
    .await?;
    Ok(wrap(read, write, hs, rest))
}

/// Moves bytes between the socket and `hs` until it is done; returns the raw bytes read past its
/// end. Reads at most [`READ_CHUNK`] bytes at a time, so what is held stays bounded.
async fn drive(
    hs: &mut Handshake,
    read: &mut BoxRead,
    write: &mut BoxWrite,
    mut input: Vec<u8>,
    lookup: impl Fn(&[u8; 20]) -> Option<InfoHash>,
    clock: Clock,
) -> Result<Vec<u8>, MseError> {
    let mut chunk = vec![0; READ_CHUNK];
    loop {
        let mut used = hs.handle_input(&input)?;
        if let Status::NeedSkey(req2) = hs.status() {
            hs.provide_skey(lookup(&req2))?;
            used += hs.handle_input(&input[used..])?;
        }
        input.drain(..used);
        if let Some(out) = hs.poll_transmit() {
            write.write_all(&out).await?;
        }
        if hs.status() == Status::Done {
            return Ok(input);
        }
        let Some(deadline) = hs.poll_timeout() else {
            // Failed states return their fault above; this is not reached.
            return Err(MseFault::Timeout.into());
        };
        match tokio::time::timeout_at(clock.tokio_instant(deadline), read.read(&mut chunk)).await {
            Ok(n) => match n? {
                0 => return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into()),
                n => input.extend_from_slice(&chunk[..n]),
            },
            Err(_) => hs.handle_timeout(clock.now())?,
        }
    }
}

/// The halves for the payload stream, and the plaintext received so far.
fn wrap(
    read: BoxRead,
    write: BoxWrite,
    hs: Handshake,
    mut rest: Vec<u8>,
) -> Encrypted<BoxRead, BoxWrite> {
    let mut done = hs.into_established().expect("driven to done");
    let mut received = BytesMut::from(&done.received[..]);
    let (read, write): (BoxRead, BoxWrite) = match done.method {
        Method::Plaintext => (read, write),
        Method::Rc4 => {
            done.recv.apply(&mut rest);
            (
                Box::new(CipherRead::new(read, done.recv)),
                Box::new(CipherWrite::new(write, done.send)),
            )
        }
    };
    received.extend_from_slice(&rest);
    Encrypted {
        read,
        write,
        info_hash: done.info_hash,
        received,
    }
}

/// The session's encryption policy (changeable while it runs) and what we know of each address
/// lately: whether MSE (`true`) or plaintext worked, so a peer that refused one is dialled the
/// other way first next time, and whether it speaks uTP (BEP 29), so a dual-stack session dials it
/// over uTP first. Shared by the session's torrents and its listener. PEX hints (BEP 11 flags 0x01
/// and 0x04) decide for addresses we never talked to; what a connection showed overrides them.
#[derive(Debug, Default)]
pub(crate) struct Memory {
    policy: AtomicU8,
    known: Mutex<HashMap<SocketAddr, Known>>,
}

/// What [`Memory`] knows of one address; `None` where it knows nothing.
#[derive(Debug, Default, Clone, Copy)]
struct Known {
    /// MSE worked (`true`) or plaintext did.
    encrypted: Option<bool>,
    /// The peer answers uTP (`true`), or a uTP attempt failed where TCP then worked.
    utp: Option<bool>,
}

impl Memory {
    /// Remembers nothing yet, under `policy`.
    pub(crate) fn new(policy: Encryption) -> Memory {
        let memory = Memory::default();
        memory.set_policy(policy);
        memory
    }

    /// The policy now.
    pub(crate) fn policy(&self) -> Encryption {
        match self.policy.load(Ordering::Relaxed) {
            1 => Encryption::Require,
            2 => Encryption::Disable,
            _ => Encryption::Prefer,
        }
    }

    /// Changes the policy for connections opened from now on.
    pub(crate) fn set_policy(&self, policy: Encryption) {
        let code = match policy {
            Encryption::Prefer => 0,
            Encryption::Require => 1,
            Encryption::Disable => 2,
        };
        self.policy.store(code, Ordering::Relaxed);
    }

    fn get(&self, addr: SocketAddr) -> Known {
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        known.get(&addr).copied().unwrap_or_default()
    }

    /// Changes what is known of `addr` with `f`. A hint (`hint`) is dropped when the memory is
    /// full; a record starts the memory again, which only costs the forgotten peers one refused
    /// attempt each.
    fn update(&self, addr: SocketAddr, hint: bool, f: impl FnOnce(&mut Known)) {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if known.len() >= MEMORY_CAPACITY && !known.contains_key(&addr) {
            if hint {
                return;
            }
            known.clear();
        }
        f(known.entry(addr).or_default());
    }

    /// Whether to try MSE first with `addr` under the `prefer` policy: unless plaintext is what
    /// worked last time.
    pub(crate) fn encrypt_first(&self, addr: SocketAddr) -> bool {
        self.get(addr).encrypted.unwrap_or(true)
    }

    /// What another peer said of `addr` (PEX flag 0x01: it prefers encryption; flag 0x04: it
    /// speaks uTP), taken unless we know better from a connection of our own. No uTP flag says
    /// nothing: many clients never set it.
    pub(crate) fn hint(&self, addr: SocketAddr, encrypted: bool, utp: bool) {
        self.update(addr, true, |k| {
            k.encrypted.get_or_insert(encrypted);
            if utp {
                k.utp.get_or_insert(true);
            }
        });
    }

    /// Records that `addr` took MSE (`encrypted`) or plaintext.
    pub(crate) fn record(&self, addr: SocketAddr, encrypted: bool) {
        self.update(addr, false, |k| k.encrypted = Some(encrypted));
    }

    /// Whether a dual-stack session dials `addr` over uTP first: it advertised uTP, or reached us
    /// or answered us over it, and no uTP attempt failed since.
    pub(crate) fn utp_first(&self, addr: SocketAddr) -> bool {
        self.get(addr).utp == Some(true)
    }

    /// Records that `addr` answered over uTP (`true`: a connection to or from it got past the
    /// handshake), or did not while TCP worked (`false`).
    pub(crate) fn record_utp(&self, addr: SocketAddr, utp: bool) {
        self.update(addr, false, |k| k.utp = Some(utp));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_bytes_tell_plaintext_from_a_key() {
        assert_eq!(classify(b""), None);
        assert_eq!(classify(b"\x13BitTorr"), None);
        assert_eq!(
            classify(b"\x13BitTorrent protocol\0\0"),
            Some(FirstBytes::Plaintext)
        );
        assert_eq!(classify(b"\x13BitTorrenX"), Some(FirstBytes::Encrypted));
        assert_eq!(classify(&[0x12]), Some(FirstBytes::Encrypted));
    }

    #[test]
    fn memory_prefers_what_worked_and_stays_bounded() {
        let memory = Memory::new(Encryption::Require);
        assert_eq!(memory.policy(), Encryption::Require);
        memory.set_policy(Encryption::Disable);
        assert_eq!(memory.policy(), Encryption::Disable);
        let addr: SocketAddr = "10.0.0.1:6881".parse().unwrap();
        assert!(memory.encrypt_first(addr));
        memory.record(addr, false);
        assert!(!memory.encrypt_first(addr));
        // A PEX hint does not override what a connection showed, but decides for the unknown.
        memory.hint(addr, true, false);
        assert!(!memory.encrypt_first(addr));
        let other: SocketAddr = "10.0.0.2:6881".parse().unwrap();
        memory.hint(other, false, false);
        assert!(!memory.encrypt_first(other));
        for port in 0..(MEMORY_CAPACITY as u16 + 10) {
            memory.record(SocketAddr::new(addr.ip(), port), true);
        }
        assert!(memory.known.lock().unwrap().len() <= MEMORY_CAPACITY);
        for port in 0..(MEMORY_CAPACITY as u16 + 10) {
            memory.hint(SocketAddr::new(other.ip(), port), true, true);
        }
        assert!(memory.known.lock().unwrap().len() <= MEMORY_CAPACITY);
    }

    #[test]
    fn memory_dials_utp_first_only_for_peers_known_to_speak_it() {
        let memory = Memory::new(Encryption::Prefer);
        let addr: SocketAddr = "10.0.0.1:6881".parse().unwrap();
        assert!(!memory.utp_first(addr), "unknown peers: TCP first");
        // A PEX hint without the flag says nothing; with it, uTP first.
        memory.hint(addr, true, false);
        assert!(!memory.utp_first(addr));
        memory.hint(addr, true, true);
        assert!(memory.utp_first(addr));
        // A failed uTP attempt overrides the hint, and later hints do not undo it.
        memory.record_utp(addr, false);
        memory.hint(addr, true, true);
        assert!(!memory.utp_first(addr));
        // A connection over uTP (ours or the peer's) decides again.
        memory.record_utp(addr, true);
        assert!(memory.utp_first(addr));
        assert!(
            memory.encrypt_first(addr),
            "the encryption side is untouched"
        );
    }
}
