//! Fuzz target for the MSE handshake state machine (either role): the peer is a genuine handshake
//! whose bytes are XORed with the input (so mutations reach every step past the sync search), or
//! whose key is followed by the raw input. No input may panic, no call may use more than it was
//! given, and a handshake fails or finishes within the spec's bounds.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use swarmer_proto::InfoHash;
use swarmer_proto::mse::{Handshake, Methods, Secrets, Status};
use swarmer_proto::time::Instant;

const SKEY: InfoHash = InfoHash([0x42; 20]);

fn secrets(k: u8) -> Secrets {
    Secrets {
        private_key: [k; 20],
        pad: vec![k; usize::from(k)],
    }
}

/// Feeds `bytes` to `to` in `chunk`-byte reads, naming the torrent when asked; false once it failed.
fn feed(to: &mut Handshake, bytes: &[u8], chunk: usize, answered: &mut bool) -> bool {
    let mut at = 0;
    while at < bytes.len() {
        let end = (at + chunk).min(bytes.len());
        let Ok(used) = to.handle_input(&bytes[at..end]) else {
            return false;
        };
        assert!(used <= end - at);
        match to.status() {
            // Still waiting: it must have taken the whole read.
            Status::NeedInput => assert_eq!(used, end - at),
            Status::NeedSkey(_) => {
                assert!(!*answered, "asked for the torrent twice");
                *answered = true;
                if to.provide_skey(Some(SKEY)).is_err() {
                    return false;
                }
            }
            Status::Done => return true,
            Status::Failed => return false,
        }
        at += used;
    }
    true
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(mode >> 2) + 1;
    let deadline = Instant::from_origin(Duration::from_secs(10));
    let a = Handshake::initiator(secrets(3), SKEY, Methods::BOTH, b"ia", deadline);
    let b = Handshake::responder(secrets(5), Methods(u32::from(mode >> 6)), deadline);
    let (mut victim, mut other) = if mode & 1 == 0 { (b, a) } else { (a, b) };
    let mut answered = false;
    let mut other_answered = false;
    let mut noise = data.iter().copied();
    for round in 0..4 {
        if let Some(bytes) = victim.poll_transmit() {
            if !feed(&mut other, &bytes, 4096, &mut other_answered) {
                break;
            }
        }
        let mut bytes = other.poll_transmit().unwrap_or_default();
        if mode & 2 == 0 {
            for b in &mut bytes {
                *b ^= noise.next().unwrap_or(0);
            }
        } else if round == 1 {
            bytes = noise.by_ref().collect();
        }
        if !feed(&mut victim, &bytes, chunk, &mut answered) {
            break;
        }
    }
    // A failed handshake stays failed; an unfinished one fails at its deadline.
    match victim.status() {
        Status::Failed => assert!(victim.handle_input(b"x").is_err()),
        Status::Done => assert!(victim.into_established().is_some()),
        _ => assert!(victim.handle_timeout(deadline).is_err()),
    }
});
