//! Write tokens for `announce_peer` (BEP 5, "announce_peer"): a token is a hash of the requester's IP
//! and a secret that rotates every 5 minutes; tokens made with the current or the previous secret are
//! accepted, so a token lives 5 to 10 minutes. Nothing is stored per requester.

use std::net::IpAddr;
use std::time::Duration;

use crate::time::Instant;

use crate::digest::sha1;

/// How often the secret changes.
pub const ROTATION: Duration = Duration::from_secs(5 * 60);
/// Bytes of a token we hand out.
pub const TOKEN_LEN: usize = 8;

/// The current and previous secrets and when the current one expires.
#[derive(Debug, Clone)]
pub struct Tokens {
    current: [u8; 20],
    previous: [u8; 20],
    next_rotation: Instant,
}

impl Tokens {
    /// Fresh secrets from `rng`; the first rotation is [`ROTATION`] after `now`.
    pub fn new(rng: &mut impl rand::RngCore, now: Instant) -> Tokens {
        let mut current = [0u8; 20];
        let mut previous = [0u8; 20];
        rng.fill_bytes(&mut current);
        rng.fill_bytes(&mut previous);
        Tokens {
            current,
            previous,
            next_rotation: now + ROTATION,
        }
    }

    /// Rotates the secret if [`ROTATION`] has passed (once per call, however long it has been: a token
    /// made just before a long pause stays valid one more period, which is harmless).
    pub fn rotate_if_due(&mut self, now: Instant, rng: &mut impl rand::RngCore) {
        if now >= self.next_rotation {
            self.previous = self.current;
            rng.fill_bytes(&mut self.current);
            self.next_rotation = now + ROTATION;
        }
    }

    /// The token for a requester at `ip`: [`TOKEN_LEN`] bytes.
    pub fn make(&self, ip: IpAddr) -> [u8; TOKEN_LEN] {
        token(&self.current, ip)
    }

    /// True if `token` was made for `ip` with the current or the previous secret.
    pub fn validate(&self, ip: IpAddr, given: &[u8]) -> bool {
        given == token(&self.current, ip) || given == token(&self.previous, ip)
    }
}

fn token(secret: &[u8; 20], ip: IpAddr) -> [u8; TOKEN_LEN] {
    let mut input = Vec::with_capacity(36);
    input.extend_from_slice(secret);
    match ip {
        IpAddr::V4(v4) => input.extend_from_slice(&v4.octets()),
        IpAddr::V6(v6) => input.extend_from_slice(&v6.octets()),
    }
    let digest = sha1(&input);
    let mut out = [0u8; TOKEN_LEN];
    out.copy_from_slice(&digest[..TOKEN_LEN]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_survive_one_rotation_not_two() {
        let mut rng = <rand::rngs::SmallRng as rand::SeedableRng>::seed_from_u64(0x5eed);
        let t0 = Instant::ZERO;
        let mut tokens = Tokens::new(&mut rng, t0);
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        let other: IpAddr = "10.1.2.4".parse().unwrap();
        let tok = tokens.make(ip);
        assert!(tokens.validate(ip, &tok));
        assert!(!tokens.validate(other, &tok));
        assert!(!tokens.validate(ip, &tok[..4]));
        // Not yet due: nothing changes.
        tokens.rotate_if_due(t0 + ROTATION - Duration::from_secs(1), &mut rng);
        assert_eq!(tokens.make(ip), tok);
        tokens.rotate_if_due(t0 + ROTATION, &mut rng);
        assert_ne!(tokens.make(ip), tok);
        assert!(tokens.validate(ip, &tok), "previous secret still accepted");
        tokens.rotate_if_due(t0 + 2 * ROTATION, &mut rng);
        assert!(!tokens.validate(ip, &tok), "two rotations later it expired");
    }
}
