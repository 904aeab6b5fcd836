//! Tests of the MSE handshake: a fixed-key exchange whose bytes were computed independently from
//! the spec (a short Python script: `pow` for the DH, `hashlib.sha1`, a textbook RC4), both roles
//! against each other under any split of the input, and every fault within its bound.

use rand::SeedableRng;
use rand::rngs::SmallRng;

use super::*;
use crate::InfoHash;
use crate::time::Instant;

const SKEY: InfoHash = InfoHash([0xAA; 20]);
const DEADLINE: Instant = Instant::from_origin(std::time::Duration::from_secs(10));

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn fixed(first: u8) -> Secrets {
    Secrets {
        private_key: std::array::from_fn(|i| first + i as u8),
        pad: Vec::new(),
    }
}

fn random(rng: &mut SmallRng) -> Secrets {
    Secrets::generate(rng)
}

/// Feeds everything `from` has to send into `to`, `chunk` bytes at a time; returns what `to` left
/// unconsumed.
fn pump(from: &mut Handshake, to: &mut Handshake, chunk: usize) -> Vec<u8> {
    let mut left = Vec::new();
    while let Some(bytes) = from.poll_transmit() {
        for part in bytes.chunks(chunk.max(1)) {
            if !left.is_empty() {
                left.extend_from_slice(part);
                continue;
            }
            let used = to.handle_input(part).unwrap();
            if let Status::NeedSkey(req2) = to.status() {
                let known = super::cipher::req2(&SKEY.0);
                to.provide_skey((req2 == known).then_some(SKEY)).unwrap();
                let rest = &part[used..];
                let again = to.handle_input(rest).unwrap();
                left.extend_from_slice(&rest[again..]);
            } else {
                left.extend_from_slice(&part[used..]);
            }
        }
    }
    left
}

#[test]
fn fixed_keys_reproduce_the_spec_computed_exchange() {
    let mut a = Handshake::initiator(fixed(1), SKEY, Methods::BOTH, b"hello", DEADLINE);
    // The responder requires RC4, so it selects 2 from the offered 3.
    let mut b = Handshake::responder(fixed(21), Methods::RC4, DEADLINE);
    let ya = a.poll_transmit().unwrap();
    assert_eq!(ya.len(), DH_KEY_LEN);
    assert_eq!(ya[..8], hex("96e112dab29e8c52"));
    let yb = b.poll_transmit().unwrap();
    assert_eq!(yb[..8], hex("a3e981e821087e74"));

    assert_eq!(a.handle_input(&yb), Ok(DH_KEY_LEN));
    let step3 = a.poll_transmit().unwrap();
    let mut expected = hex("83c8d8a3d91a5bf40d723666c4258731c8427ccb");
    expected.extend(hex("4a278249411ccc527bb5e8d3a33af2a69725a1fc"));
    expected.extend(hex("0327b6d211c82d4947ce46c0fdb5f37cbed6c8f11d"));
    assert_eq!(step3, expected);

    assert_eq!(b.handle_input(&ya), Ok(DH_KEY_LEN));
    assert_eq!(b.handle_input(&step3[..40]), Ok(40));
    let Status::NeedSkey(req2) = b.status() else {
        panic!("{:?}", b.status())
    };
    assert_eq!(req2, super::cipher::req2(&SKEY.0));
    b.provide_skey(Some(SKEY)).unwrap();
    assert_eq!(b.handle_input(&step3[40..]), Ok(step3.len() - 40));
    assert_eq!(b.status(), Status::Done);
    assert_eq!(
        b.poll_transmit().unwrap(),
        hex("06d0d8359370f45e284e8cb732fd")
    );
    let b = b.into_established().unwrap();
    assert_eq!((b.method, b.info_hash), (Method::Rc4, SKEY));
    assert_eq!(b.received, b"hello");

    assert_eq!(a.handle_input(&hex("06d0d8359370f45e284e8cb732fd")), Ok(14));
    let a = a.into_established().unwrap();
    assert_eq!(a.method, Method::Rc4);
    assert!(a.received.is_empty());
}

/// Feeds step 3 to a responder that has read `Ya`, naming `skey` when asked.
fn feed_step3(b: &mut Handshake, step3: &[u8], skey: Option<InfoHash>) -> Result<(), MseFault> {
    let used = b.handle_input(step3)?;
    assert!(matches!(b.status(), Status::NeedSkey(_)));
    b.provide_skey(skey)?;
    b.handle_input(&step3[used..]).map(|_| ())
}

/// Runs a whole exchange with random keys and padding, `chunk` bytes per read, then checks that
/// the payload streams decrypt both ways.
fn exchange(
    seed: u64,
    chunk: usize,
    provide: Methods,
    allowed: Methods,
) -> (Established, Established) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut a = Handshake::initiator(random(&mut rng), SKEY, provide, b"ia bytes", DEADLINE);
    let mut b = Handshake::responder(random(&mut rng), allowed, DEADLINE);
    for _ in 0..4 {
        assert!(pump(&mut a, &mut b, chunk).is_empty());
        assert!(pump(&mut b, &mut a, chunk).is_empty());
    }
    assert_eq!((a.status(), b.status()), (Status::Done, Status::Done));
    let (a, b) = (a.into_established().unwrap(), b.into_established().unwrap());
    assert_eq!(b.received, b"ia bytes");
    assert_eq!(a.method, b.method);
    (a, b)
}

#[test]
fn both_roles_agree_under_any_split_and_the_streams_decrypt() {
    for seed in 0..8 {
        for chunk in [1, 7, 100, 4096] {
            let (mut a, mut b) = exchange(seed, chunk, Methods::BOTH, Methods::RC4);
            assert_eq!(a.method, Method::Rc4);
            let mut data = b"a piece of payload".to_vec();
            a.send.apply(&mut data);
            assert_ne!(data, b"a piece of payload");
            b.recv.apply(&mut data);
            assert_eq!(data, b"a piece of payload");
            b.send.apply(&mut data);
            a.recv.apply(&mut data);
            assert_eq!(data, b"a piece of payload");
        }
    }
}

#[test]
fn plaintext_is_selected_when_both_allow_it_rc4_when_one_requires_it() {
    let (a, _) = exchange(1, 50, Methods::PLAINTEXT, Methods::BOTH);
    assert_eq!(a.method, Method::Plaintext);
    let (a, _) = exchange(2, 50, Methods::BOTH, Methods::PLAINTEXT);
    assert_eq!(a.method, Method::Plaintext);
    let (a, _) = exchange(4, 50, Methods::BOTH, Methods::BOTH);
    assert_eq!(a.method, Method::Plaintext);
    let (a, _) = exchange(5, 50, Methods::RC4, Methods::BOTH);
    assert_eq!(a.method, Method::Rc4);

    let mut rng = SmallRng::seed_from_u64(3);
    let mut a = Handshake::initiator(random(&mut rng), SKEY, Methods::PLAINTEXT, b"", DEADLINE);
    let mut b = Handshake::responder(random(&mut rng), Methods::RC4, DEADLINE);
    b.handle_input(&a.poll_transmit().unwrap()).unwrap();
    a.handle_input(&b.poll_transmit().unwrap()).unwrap();
    let step3 = a.poll_transmit().unwrap();
    assert_eq!(
        feed_step3(&mut b, &step3, Some(SKEY)),
        Err(MseFault::NoCommonMethod(1))
    );
    assert_eq!(b.status(), Status::Failed);
}

#[test]
fn bytes_after_the_handshake_come_out_as_payload() {
    let mut rng = SmallRng::seed_from_u64(4);
    let mut a = Handshake::initiator(random(&mut rng), SKEY, Methods::RC4, b"", DEADLINE);
    let mut b = Handshake::responder(random(&mut rng), Methods::RC4, DEADLINE);
    pump(&mut a, &mut b, 4096);
    pump(&mut b, &mut a, 4096);
    pump(&mut a, &mut b, 4096);
    assert_eq!(b.status(), Status::Done);
    let step4 = b.poll_transmit().unwrap();
    let mut b = b.into_established().unwrap();
    let mut payload = b"first message".to_vec();
    b.send.apply(&mut payload);
    let mut input = step4.clone();
    input.extend_from_slice(&payload);
    // The initiator reads up to its sync window at once: the payload that came along is decrypted
    // into `received`; anything past what it took stays raw with the caller.
    let used = a.handle_input(&input).unwrap();
    let mut a = a.into_established().unwrap();
    let mut rest = input[used..].to_vec();
    a.recv.apply(&mut rest);
    let mut all = a.received.clone();
    all.extend_from_slice(&rest);
    assert_eq!(all, b"first message");
}

#[test]
fn garbage_instead_of_a_key_fails_within_the_sync_window() {
    let mut rng = SmallRng::seed_from_u64(5);
    let mut b = Handshake::responder(random(&mut rng), Methods::BOTH, DEADLINE);
    let garbage = vec![0x5A; 2000];
    let mut used = 0;
    let fault = loop {
        match b.handle_input(&garbage[used..used + 10]) {
            Ok(n) => used += n,
            Err(fault) => break fault,
        }
    };
    assert_eq!(fault, MseFault::NoSync(628));
    assert!(used <= 628, "read {used} bytes");
    assert_eq!(b.handle_input(&garbage), Err(MseFault::NoSync(628)));

    let mut a = Handshake::initiator(random(&mut rng), SKEY, Methods::BOTH, b"", DEADLINE);
    assert_eq!(a.handle_input(&garbage), Err(MseFault::NoSync(520)));
}

#[test]
fn a_degenerate_public_key_is_refused() {
    let mut rng = SmallRng::seed_from_u64(6);
    let mut b = Handshake::responder(random(&mut rng), Methods::BOTH, DEADLINE);
    let mut one = [0u8; DH_KEY_LEN];
    one[DH_KEY_LEN - 1] = 1;
    assert_eq!(b.handle_input(&one), Err(MseFault::BadPublicKey));
}

#[test]
fn a_padding_length_over_512_is_a_fault() {
    let mut rng = SmallRng::seed_from_u64(7);
    let mut a = Handshake::initiator(random(&mut rng), SKEY, Methods::BOTH, b"", DEADLINE);
    let mut b = Handshake::responder(random(&mut rng), Methods::BOTH, DEADLINE);
    b.handle_input(&a.poll_transmit().unwrap()).unwrap();
    a.handle_input(&b.poll_transmit().unwrap()).unwrap();
    let mut step3 = a.poll_transmit().unwrap();
    // RC4 is a stream cipher: flipping a ciphertext bit flips the same plaintext bit. The high
    // byte of len(PadC) is at 40 + 8 + 4, and 0 becomes 0x0201 = 513.
    step3[52] ^= 0x02;
    step3[53] ^= 0x01;
    assert_eq!(
        feed_step3(&mut b, &step3, Some(SKEY)),
        Err(MseFault::BadPadLength(513))
    );
}

#[test]
fn a_wrong_torrent_or_key_is_a_fault() {
    let mut rng = SmallRng::seed_from_u64(8);
    let mut a = Handshake::initiator(random(&mut rng), SKEY, Methods::BOTH, b"", DEADLINE);
    let mut b = Handshake::responder(random(&mut rng), Methods::BOTH, DEADLINE);
    b.handle_input(&a.poll_transmit().unwrap()).unwrap();
    a.handle_input(&b.poll_transmit().unwrap()).unwrap();
    let step3 = a.poll_transmit().unwrap();
    assert_eq!(
        feed_step3(&mut b, &step3, None),
        Err(MseFault::UnknownTorrent)
    );
    assert_eq!(b.handle_input(b"x"), Err(MseFault::UnknownTorrent));

    let mut b = Handshake::responder(random(&mut rng), Methods::BOTH, DEADLINE);
    let mut a = Handshake::initiator(random(&mut rng), SKEY, Methods::BOTH, b"", DEADLINE);
    b.handle_input(&a.poll_transmit().unwrap()).unwrap();
    a.handle_input(&b.poll_transmit().unwrap()).unwrap();
    let step3 = a.poll_transmit().unwrap();
    assert_eq!(
        feed_step3(&mut b, &step3, Some(InfoHash([0xBB; 20]))),
        Err(MseFault::BadVerificationConstant)
    );
}

#[test]
fn the_deadline_fails_an_unfinished_handshake_only() {
    let mut rng = SmallRng::seed_from_u64(9);
    let mut b = Handshake::responder(random(&mut rng), Methods::BOTH, DEADLINE);
    assert_eq!(b.poll_timeout(), Some(DEADLINE));
    assert_eq!(b.handle_timeout(Instant::ZERO), Ok(()));
    assert_eq!(b.handle_timeout(DEADLINE), Err(MseFault::Timeout));
    assert_eq!(b.poll_timeout(), None);

    let (_, _) = exchange(10, 64, Methods::BOTH, Methods::BOTH);
    let mut a = Handshake::initiator(random(&mut rng), SKEY, Methods::RC4, b"", DEADLINE);
    let mut b = Handshake::responder(random(&mut rng), Methods::RC4, DEADLINE);
    for _ in 0..3 {
        pump(&mut a, &mut b, 64);
        pump(&mut b, &mut a, 64);
    }
    assert_eq!(a.status(), Status::Done);
    assert_eq!(a.handle_timeout(DEADLINE), Ok(()));
}
