//! The MSE handshake for both roles as one sans-IO state machine. The steps, named as in the spec
//! (A dials, B answers; `ENCRYPT` is RC4 keyed `keyA` from A and `keyB` from B):
//!
//! 1. A→B: `Ya`, PadA (0–512 random bytes).
//! 2. B→A: `Yb`, PadB.
//! 3. A→B: `HASH('req1', S)`, `HASH('req2', SKEY) xor HASH('req3', S)`,
//!    `ENCRYPT(VC, crypto_provide, len(PadC), PadC, len(IA))`, `ENCRYPT(IA)`.
//! 4. B→A: `ENCRYPT(VC, crypto_select, len(PadD), PadD)`, then the payload stream.
//! 5. A→B: the payload stream.
//!
//! Since padding lengths are not sent, B finds step 3 by searching for `HASH('req1', S)` and A finds
//! step 4 by searching for `ENCRYPT(VC)`; both searches stop at the spec's window. Each state takes
//! only the bytes it may still need, so the buffer never holds more than one window (or one initial
//! payload of at most 65,535 bytes).

use super::cipher::{self, Rc4Stream};
use super::dh::{self, DH_KEY_LEN};
use super::{MAX_PAD, Method, Methods, MseFault, Secrets};
use crate::InfoHash;
use crate::time::Instant;

/// The verification constant: 8 zero bytes, encrypted, so a wrong key shows at once.
const VC: [u8; 8] = [0; 8];
/// How far past the initiator's key the responder looks for `HASH('req1', S)`: PadA and the hash.
const REQ1_WINDOW: usize = MAX_PAD + 20;
/// How far past the responder's key the initiator looks for `ENCRYPT(VC)`: PadB and the constant.
const VC_WINDOW: usize = MAX_PAD + VC.len();
/// `VC`, `crypto_provide` and `len(PadC)`: the fixed start of step 3's encrypted part.
const PROVIDE_LEN: usize = 8 + 4 + 2;
/// `crypto_select` and `len(PadD)`, after the verification constant of step 4.
const SELECT_LEN: usize = 4 + 2;

/// What a handshake waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// More bytes from the peer (or the deadline).
    NeedInput,
    /// The responder read `HASH('req2', SKEY)`: answer with [`Handshake::provide_skey`], the info
    /// hash whose `HASH('req2', info hash)` this is, if the session has such a torrent.
    NeedSkey([u8; 20]),
    /// The handshake is done: take the result with [`Handshake::into_established`].
    Done,
    /// The handshake failed; every call returns the fault again.
    Failed,
}

/// A finished handshake: the payload stream's method and ciphers.
#[derive(Debug)]
pub struct Established {
    /// The torrent (SKEY): the one dialled for, or the one the initiator named.
    pub info_hash: InfoHash,
    /// Plaintext or RC4 from here on.
    pub method: Method,
    /// Encrypts what we send, when `method` is [`Method::Rc4`].
    pub send: Rc4Stream,
    /// Decrypts what we receive, when `method` is [`Method::Rc4`].
    pub recv: Rc4Stream,
    /// Payload-stream bytes already received, in plaintext: the initiator's initial payload (IA)
    /// on the responder's side, then any bytes that came with the handshake's end. Bytes that
    /// [`Handshake::handle_input`] did not consume are not here, and are raw (still encrypted).
    pub received: Vec<u8>,
}

struct Keys {
    send: Rc4Stream,
    recv: Rc4Stream,
}

/// The state, named after what it waits for; each holds only what is valid in it.
enum State {
    /// A: `Yb`.
    InitKey {
        skey: InfoHash,
        provide: Methods,
        ia: Vec<u8>,
    },
    /// A: `ENCRYPT(VC)` somewhere in the next [`VC_WINDOW`] bytes.
    InitVc {
        skey: InfoHash,
        provide: Methods,
        keys: Keys,
        pattern: [u8; 8],
    },
    /// A: `crypto_select` and `len(PadD)`.
    InitSelect {
        skey: InfoHash,
        provide: Methods,
        keys: Keys,
    },
    /// A: PadD.
    InitPadD {
        skey: InfoHash,
        method: Method,
        keys: Keys,
        len: usize,
    },
    /// B: `Ya`.
    RespKey {
        allowed: Methods,
    },
    /// B: `HASH('req1', S)` somewhere in the next [`REQ1_WINDOW`] bytes.
    RespReq1 {
        allowed: Methods,
        secret: Box<[u8; DH_KEY_LEN]>,
        pattern: [u8; 20],
    },
    /// B: `HASH('req2', SKEY) xor HASH('req3', S)`.
    RespReq2 {
        allowed: Methods,
        secret: Box<[u8; DH_KEY_LEN]>,
    },
    /// B: the caller's answer to [`Status::NeedSkey`].
    RespSkey {
        allowed: Methods,
        secret: Box<[u8; DH_KEY_LEN]>,
        req2: [u8; 20],
    },
    /// B: `VC`, `crypto_provide`, `len(PadC)`.
    RespProvide {
        allowed: Methods,
        skey: InfoHash,
        keys: Keys,
    },
    /// B: PadC and `len(IA)`.
    RespPadC {
        allowed: Methods,
        skey: InfoHash,
        keys: Keys,
        provide: Methods,
        len: usize,
    },
    /// B: IA.
    RespIa {
        allowed: Methods,
        skey: InfoHash,
        keys: Keys,
        provide: Methods,
        len: usize,
    },
    Done(Established),
    Failed(MseFault),
}

/// One MSE handshake, either role. Feed it the peer's bytes with [`Handshake::handle_input`],
/// send what [`Handshake::poll_transmit`] returns, and call [`Handshake::handle_timeout`] at
/// [`Handshake::poll_timeout`]; when [`Handshake::status`] is [`Status::Done`], take the ciphers.
pub struct Handshake {
    state: State,
    private_key: [u8; dh::PRIVATE_KEY_LEN],
    /// Received bytes not yet used by the current state; at most one state's worth.
    buf: Vec<u8>,
    /// Bytes to send, in order.
    out: Vec<u8>,
    deadline: Instant,
}

impl std::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handshake")
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

impl Handshake {
    /// The dialling side (A) for the torrent `skey`, offering `provide` (which must not be empty)
    /// and sending `ia` (the payload stream's first bytes, typically the BitTorrent handshake)
    /// inside step 3. Step 1 is ready to send at once.
    ///
    /// Panics if `ia` is over 65,535 bytes (its length is a 16-bit field).
    pub fn initiator(
        secrets: Secrets,
        skey: InfoHash,
        provide: Methods,
        ia: &[u8],
        deadline: Instant,
    ) -> Handshake {
        assert!(
            ia.len() <= usize::from(u16::MAX),
            "initial payload over 65,535 bytes"
        );
        let state = State::InitKey {
            skey,
            provide,
            ia: ia.to_vec(),
        };
        Handshake::start(secrets, state, deadline)
    }

    /// The answering side (B), accepting the methods in `allowed`: plaintext is chosen when both
    /// sides allow it (libtorrent's default too: the handshake is obfuscated either way, and RC4
    /// costs about 3 s of CPU per GiB), RC4 otherwise. Step 2 is ready to send at once.
    pub fn responder(secrets: Secrets, allowed: Methods, deadline: Instant) -> Handshake {
        Handshake::start(secrets, State::RespKey { allowed }, deadline)
    }

    fn start(secrets: Secrets, state: State, deadline: Instant) -> Handshake {
        let pad = &secrets.pad[..secrets.pad.len().min(MAX_PAD)];
        let mut out = dh::public_key(&secrets.private_key).to_vec();
        out.extend_from_slice(pad);
        Handshake {
            state,
            private_key: secrets.private_key,
            buf: Vec::new(),
            out,
            deadline,
        }
    }

    /// What the handshake waits for.
    pub fn status(&self) -> Status {
        match &self.state {
            State::RespSkey { req2, .. } => Status::NeedSkey(*req2),
            State::Done(_) => Status::Done,
            State::Failed(_) => Status::Failed,
            _ => Status::NeedInput,
        }
    }

    /// The bytes to send now, if any.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        (!self.out.is_empty()).then(|| std::mem::take(&mut self.out))
    }

    /// When [`Handshake::handle_timeout`] must be called: the deadline, until done or failed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        matches!(self.status(), Status::NeedInput | Status::NeedSkey(_)).then_some(self.deadline)
    }

    /// Fails the handshake with [`MseFault::Timeout`] if it is not done at `now`.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), MseFault> {
        if let Some(deadline) = self.poll_timeout() {
            if now >= deadline {
                return Err(self.fail(MseFault::Timeout));
            }
        }
        self.result()
    }

    /// Takes bytes received from the peer; returns how many it used. It uses only what the current
    /// step may need (bytes taken during a sync search beyond the pattern are kept for the next
    /// steps, and used after [`Status::NeedSkey`]'s answer if it comes first). After
    /// [`Status::Done`] the unused rest belongs to the payload stream (raw: still encrypted when
    /// the method is RC4); while [`Status::NeedSkey`] waits, pass it again after the answer.
    pub fn handle_input(&mut self, input: &[u8]) -> Result<usize, MseFault> {
        self.result()?;
        let mut used = 0;
        while self.status() == Status::NeedInput {
            let rest = &input[used..];
            let take = self.wanted().saturating_sub(self.buf.len()).min(rest.len());
            if take == 0 {
                break;
            }
            self.buf.extend_from_slice(&rest[..take]);
            used += take;
            self.advance()?;
        }
        Ok(used)
    }

    /// Answers [`Status::NeedSkey`]: the info hash `h` with `HASH('req2', h)` equal to the one
    /// asked about, or `None` if there is no such torrent (which fails the handshake).
    pub fn provide_skey(&mut self, skey: Option<InfoHash>) -> Result<(), MseFault> {
        self.result()?;
        let State::RespSkey {
            allowed, secret, ..
        } = std::mem::replace(&mut self.state, State::Failed(MseFault::UnknownTorrent))
        else {
            panic!("provide_skey without Status::NeedSkey");
        };
        let Some(skey) = skey else {
            return Err(MseFault::UnknownTorrent);
        };
        let keys = Keys {
            send: Rc4Stream::new(b"keyB", &secret, &skey.0),
            recv: Rc4Stream::new(b"keyA", &secret, &skey.0),
        };
        self.state = State::RespProvide {
            allowed,
            skey,
            keys,
        };
        self.advance()
    }

    /// The finished handshake, if [`Status::Done`].
    pub fn into_established(self) -> Option<Established> {
        match self.state {
            State::Done(established) => Some(established),
            _ => None,
        }
    }

    fn result(&self) -> Result<(), MseFault> {
        match &self.state {
            State::Failed(fault) => Err(fault.clone()),
            _ => Ok(()),
        }
    }

    fn fail(&mut self, fault: MseFault) -> MseFault {
        self.state = State::Failed(fault.clone());
        self.buf = Vec::new();
        fault
    }

    /// How many bytes the current state may use in all (its buffer included).
    fn wanted(&self) -> usize {
        match &self.state {
            State::InitKey { .. } | State::RespKey { .. } => DH_KEY_LEN,
            State::InitVc { .. } => VC_WINDOW,
            State::InitSelect { .. } => SELECT_LEN,
            State::InitPadD { len, .. } => *len,
            State::RespReq1 { .. } => REQ1_WINDOW,
            State::RespReq2 { .. } => 20,
            State::RespProvide { .. } => PROVIDE_LEN,
            State::RespPadC { len, .. } => len + 2,
            State::RespIa { len, .. } => *len,
            State::RespSkey { .. } | State::Done(_) | State::Failed(_) => 0,
        }
    }

    /// Runs states until one needs more than the buffer holds.
    fn advance(&mut self) -> Result<(), MseFault> {
        loop {
            let state = std::mem::replace(&mut self.state, State::Failed(MseFault::Timeout));
            match self.step(state) {
                Ok((next, progressed)) => {
                    self.state = next;
                    if !progressed {
                        return Ok(());
                    }
                }
                Err(fault) => return Err(self.fail(fault)),
            }
        }
    }

    /// Takes the first `n` buffered bytes, if there are that many.
    fn take(&mut self, n: usize) -> Option<Vec<u8>> {
        (self.buf.len() >= n).then(|| self.buf.drain(..n).collect())
    }

    /// One transition: the next state and whether it used input (so the next may run too).
    fn step(&mut self, state: State) -> Result<(State, bool), MseFault> {
        let next = match state {
            State::InitKey { skey, provide, ia } => {
                let Some(key) = self.take(DH_KEY_LEN) else {
                    return Ok((State::InitKey { skey, provide, ia }, false));
                };
                let secret = self.secret(&key)?;
                let mut keys = Keys {
                    send: Rc4Stream::new(b"keyA", &secret, &skey.0),
                    recv: Rc4Stream::new(b"keyB", &secret, &skey.0),
                };
                self.out.extend_from_slice(&cipher::req1(&secret));
                let masked = cipher::xor(&cipher::req2(&skey.0), &cipher::req3(&secret));
                self.out.extend_from_slice(&masked);
                let mut plain = Vec::with_capacity(PROVIDE_LEN + 2 + ia.len());
                plain.extend_from_slice(&VC);
                plain.extend_from_slice(&provide.0.to_be_bytes());
                plain.extend_from_slice(&0u16.to_be_bytes()); // PadC: none.
                plain.extend_from_slice(&(ia.len() as u16).to_be_bytes());
                plain.extend_from_slice(&ia);
                keys.send.apply(&mut plain);
                self.out.extend_from_slice(&plain);
                // The same keystream again, to know `ENCRYPT(VC)` before it comes.
                let mut pattern = VC;
                Rc4Stream::new(b"keyB", &secret, &skey.0).apply(&mut pattern);
                State::InitVc {
                    skey,
                    provide,
                    keys,
                    pattern,
                }
            }
            State::InitVc {
                skey,
                provide,
                mut keys,
                pattern,
            } => match find(&self.buf, &pattern) {
                Some(at) => {
                    let mut vc: Vec<u8> = self.buf.drain(..at + VC.len()).skip(at).collect();
                    keys.recv.apply(&mut vc);
                    State::InitSelect {
                        skey,
                        provide,
                        keys,
                    }
                }
                None if self.buf.len() >= VC_WINDOW => return Err(MseFault::NoSync(VC_WINDOW)),
                None => {
                    let state = State::InitVc {
                        skey,
                        provide,
                        keys,
                        pattern,
                    };
                    return Ok((state, false));
                }
            },
            State::InitSelect {
                skey,
                provide,
                mut keys,
            } => {
                let Some(mut fields) = self.take(SELECT_LEN) else {
                    let state = State::InitSelect {
                        skey,
                        provide,
                        keys,
                    };
                    return Ok((state, false));
                };
                keys.recv.apply(&mut fields);
                let select = u32::from_be_bytes(fields[..4].try_into().expect("4 bytes"));
                let method = match Methods(select) {
                    m @ (Methods::PLAINTEXT | Methods::RC4) if provide.contains(m) => {
                        if m == Methods::RC4 {
                            Method::Rc4
                        } else {
                            Method::Plaintext
                        }
                    }
                    _ => return Err(MseFault::BadSelect(select)),
                };
                let len = pad_len(&fields[4..])?;
                State::InitPadD {
                    skey,
                    method,
                    keys,
                    len,
                }
            }
            State::InitPadD {
                skey,
                method,
                mut keys,
                len,
            } => {
                let Some(mut pad) = self.take(len) else {
                    let state = State::InitPadD {
                        skey,
                        method,
                        keys,
                        len,
                    };
                    return Ok((state, false));
                };
                keys.recv.apply(&mut pad);
                self.finish(skey, method, keys, Vec::new())
            }
            State::RespKey { allowed } => {
                let Some(key) = self.take(DH_KEY_LEN) else {
                    return Ok((State::RespKey { allowed }, false));
                };
                let secret = Box::new(self.secret(&key)?);
                let pattern = cipher::req1(&secret);
                State::RespReq1 {
                    allowed,
                    secret,
                    pattern,
                }
            }
            State::RespReq1 {
                allowed,
                secret,
                pattern,
            } => match find(&self.buf, &pattern) {
                Some(at) => {
                    self.buf.drain(..at + pattern.len());
                    State::RespReq2 { allowed, secret }
                }
                None if self.buf.len() >= REQ1_WINDOW => {
                    return Err(MseFault::NoSync(DH_KEY_LEN + REQ1_WINDOW));
                }
                None => {
                    let state = State::RespReq1 {
                        allowed,
                        secret,
                        pattern,
                    };
                    return Ok((state, false));
                }
            },
            State::RespReq2 { allowed, secret } => {
                let Some(masked) = self.take(20) else {
                    return Ok((State::RespReq2 { allowed, secret }, false));
                };
                let masked: [u8; 20] = masked.try_into().expect("20 bytes");
                let req2 = cipher::xor(&masked, &cipher::req3(&secret));
                // Waits for the caller; not progress.
                let state = State::RespSkey {
                    allowed,
                    secret,
                    req2,
                };
                return Ok((state, false));
            }
            state @ (State::RespSkey { .. } | State::Done(_) | State::Failed(_)) => {
                return Ok((state, false));
            }
            State::RespProvide {
                allowed,
                skey,
                mut keys,
            } => {
                let Some(mut fields) = self.take(PROVIDE_LEN) else {
                    let state = State::RespProvide {
                        allowed,
                        skey,
                        keys,
                    };
                    return Ok((state, false));
                };
                keys.recv.apply(&mut fields);
                if fields[..8] != VC {
                    return Err(MseFault::BadVerificationConstant);
                }
                let provide = Methods(u32::from_be_bytes(fields[8..12].try_into().expect("4")));
                let len = pad_len(&fields[12..])?;
                State::RespPadC {
                    allowed,
                    skey,
                    keys,
                    provide,
                    len,
                }
            }
            State::RespPadC {
                allowed,
                skey,
                mut keys,
                provide,
                len,
            } => {
                let Some(mut fields) = self.take(len + 2) else {
                    let state = State::RespPadC {
                        allowed,
                        skey,
                        keys,
                        provide,
                        len,
                    };
                    return Ok((state, false));
                };
                keys.recv.apply(&mut fields);
                let ia_len = u16::from_be_bytes([fields[len], fields[len + 1]]);
                State::RespIa {
                    allowed,
                    skey,
                    keys,
                    provide,
                    len: usize::from(ia_len),
                }
            }
            State::RespIa {
                allowed,
                skey,
                mut keys,
                provide,
                len,
            } => {
                let Some(mut ia) = self.take(len) else {
                    let state = State::RespIa {
                        allowed,
                        skey,
                        keys,
                        provide,
                        len,
                    };
                    return Ok((state, false));
                };
                keys.recv.apply(&mut ia);
                let (method, select) = choose(provide, allowed)?;
                let mut reply = Vec::with_capacity(VC.len() + SELECT_LEN);
                reply.extend_from_slice(&VC);
                reply.extend_from_slice(&select.0.to_be_bytes());
                reply.extend_from_slice(&0u16.to_be_bytes()); // PadD: none.
                keys.send.apply(&mut reply);
                self.out.extend_from_slice(&reply);
                self.finish(skey, method, keys, ia)
            }
        };
        Ok((next, true))
    }

    fn secret(&self, theirs: &[u8]) -> Result<[u8; DH_KEY_LEN], MseFault> {
        let theirs: &[u8; DH_KEY_LEN] = theirs.try_into().expect("a key's length");
        dh::shared_secret(&self.private_key, theirs).ok_or(MseFault::BadPublicKey)
    }

    /// The `Done` state; bytes still buffered belong to the payload stream.
    fn finish(&mut self, skey: InfoHash, method: Method, mut keys: Keys, ia: Vec<u8>) -> State {
        let mut rest = std::mem::take(&mut self.buf);
        if method == Method::Rc4 {
            keys.recv.apply(&mut rest);
        }
        let mut received = ia;
        received.extend_from_slice(&rest);
        State::Done(Established {
            info_hash: skey,
            method,
            send: keys.send,
            recv: keys.recv,
            received,
        })
    }
}

/// The responder's choice among what the initiator provides: plaintext when both allow it, else
/// RC4 (see [`Handshake::responder`]).
fn choose(provide: Methods, allowed: Methods) -> Result<(Method, Methods), MseFault> {
    if provide.contains(Methods::PLAINTEXT) && allowed.contains(Methods::PLAINTEXT) {
        Ok((Method::Plaintext, Methods::PLAINTEXT))
    } else if provide.contains(Methods::RC4) && allowed.contains(Methods::RC4) {
        Ok((Method::Rc4, Methods::RC4))
    } else {
        Err(MseFault::NoCommonMethod(provide.0))
    }
}

/// A 16-bit padding length, at most [`MAX_PAD`].
fn pad_len(field: &[u8]) -> Result<usize, MseFault> {
    let len = u16::from_be_bytes([field[0], field[1]]);
    if usize::from(len) > MAX_PAD {
        return Err(MseFault::BadPadLength(len));
    }
    Ok(usize::from(len))
}

/// Where `pattern` first occurs in `haystack`.
fn find(haystack: &[u8], pattern: &[u8]) -> Option<usize> {
    haystack.windows(pattern.len()).position(|w| w == pattern)
}
