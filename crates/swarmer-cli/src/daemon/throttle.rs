//! Failed-login throttling per client address, as qBittorrent bans an address after repeated
//! failed logins: [`MAX_FAILURES`] wrong credentials within [`BAN`] of each other ban the address
//! for [`BAN`], during which even the right credentials are refused. It counts wrong tokens and
//! passwords (JSON API login, qBittorrent `auth/login`, bearer or Basic credentials), never a
//! request that simply carries none.
//!
//! The clock is passed in (`now`), so the rules are tested without waiting, and the table is
//! bounded: beyond [`MAX_ADDRESSES`] the stalest entry is dropped first.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Wrong credentials from one address before it is banned (qBittorrent's default).
pub(crate) const MAX_FAILURES: u32 = 5;
/// How long a ban lasts, and how long a failure is remembered (qBittorrent's default ban).
pub(crate) const BAN: Duration = Duration::from_secs(3600);
/// Most addresses remembered at once.
const MAX_ADDRESSES: usize = 10_000;

/// One address's failures.
#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    last: Instant,
}

/// The failure table, shared by every request handler.
#[derive(Debug, Default)]
pub(crate) struct Throttle {
    records: Mutex<HashMap<IpAddr, Record>>,
}

impl Throttle {
    /// Whether `ip` is banned at `now`.
    pub(crate) fn banned(&self, ip: IpAddr, now: Instant) -> bool {
        let records = self
            .records
            .lock()
            .expect("the throttle lock is never poisoned");
        records
            .get(&ip)
            .is_some_and(|r| r.failures >= MAX_FAILURES && now.duration_since(r.last) < BAN)
    }

    /// Counts a failed login from `ip` at `now`.
    pub(crate) fn failed(&self, ip: IpAddr, now: Instant) {
        let mut records = self
            .records
            .lock()
            .expect("the throttle lock is never poisoned");
        if records.len() >= MAX_ADDRESSES && !records.contains_key(&ip) {
            records.retain(|_, r| now.duration_since(r.last) < BAN);
            if records.len() >= MAX_ADDRESSES {
                let stalest = records
                    .iter()
                    .min_by_key(|(_, r)| r.last)
                    .map(|(ip, _)| *ip);
                if let Some(stalest) = stalest {
                    records.remove(&stalest);
                }
            }
        }
        let record = records.entry(ip).or_insert(Record {
            failures: 0,
            last: now,
        });
        if now.duration_since(record.last) >= BAN {
            record.failures = 0;
        }
        record.failures += 1;
        record.last = now;
    }

    /// Forgets `ip`'s failures after a successful login.
    pub(crate) fn succeeded(&self, ip: IpAddr) {
        let mut records = self
            .records
            .lock()
            .expect("the throttle lock is never poisoned");
        records.remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_ban_an_address_for_an_hour() {
        let t = Throttle::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let start = Instant::now();
        for i in 0..MAX_FAILURES {
            assert!(!t.banned(a, start), "not before failure {}", i + 1);
            t.failed(a, start + Duration::from_secs(u64::from(i)));
        }
        let after = start + Duration::from_secs(10);
        assert!(t.banned(a, after));
        assert!(!t.banned(b, after), "per address");
        assert!(!t.banned(a, after + BAN), "bans end");
        // A success clears the count; failures an hour apart do not add up.
        t.succeeded(a);
        assert!(!t.banned(a, after));
        for i in 0..MAX_FAILURES {
            t.failed(a, after + BAN * (i + 1));
        }
        assert!(!t.banned(a, after + BAN * MAX_FAILURES));
    }

    #[test]
    fn the_table_is_bounded() {
        let t = Throttle::default();
        let now = Instant::now();
        for i in 0..(MAX_ADDRESSES as u32 + 10) {
            t.failed(IpAddr::from(i.to_be_bytes()), now);
        }
        assert!(t.records.lock().unwrap().len() <= MAX_ADDRESSES);
    }
}
