//! Local Service Discovery (BEP 14), sans-IO: the `BT-SEARCH` announce codec, the schedule of our own
//! announces (which info hashes to multicast when) and the filter for announces we receive (our own
//! cookie, a rate limit per source address). The driver owns the sockets and the clock.
//!
//! An announce is a small HTTP-like datagram multicast to `239.192.152.143:6771` (IPv4) or
//! `[ff15::efc0:988f]:6771` (IPv6):
//!
//! ```text
//! BT-SEARCH * HTTP/1.1\r\n
//! Host: 239.192.152.143:6771\r\n
//! Port: 6881\r\n
//! Infohash: 0123456789abcdef0123456789abcdef01234567\r\n
//! cookie: 5f0e3a9c81b2d4e6\r\n
//! \r\n
//! \r\n
//! ```
//!
//! The receiver learns a peer at (source IP of the datagram, `Port`) for each info hash.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::time::Duration;

use crate::time::Instant;

use crate::InfoHash;

/// The UDP port of both LSD multicast groups (BEP 14).
pub const LSD_PORT: u16 = 6771;
/// The IPv4 group (org-local scope), BEP 14 "A".
pub const IPV4_GROUP: Ipv4Addr = Ipv4Addr::new(239, 192, 152, 143);
/// The IPv6 group (site-local scope), BEP 14 "B".
pub const IPV6_GROUP: Ipv6Addr = Ipv6Addr::new(0xff15, 0, 0, 0, 0, 0, 0xefc0, 0x988f);
/// The largest datagram we send or accept, bytes. BEP 14 asks senders of several info hashes to stay
/// under 1400 bytes so the datagram is never fragmented; a larger one is refused whole.
pub const MAX_DATAGRAM: usize = 1400;
/// Most info hashes kept from one received announce; the rest are ignored. A datagram within
/// [`MAX_DATAGRAM`] has room for 27 at most, so this only guards against a later change of that limit.
pub const MAX_PARSED_INFO_HASHES: usize = 32;
/// Most info hashes we put in one datagram: with the longest `Host` and cookie lines the datagram is
/// then at most 1,393 bytes, under [`MAX_DATAGRAM`].
pub const MAX_SENT_INFO_HASHES: usize = 24;
/// Longest cookie accepted, bytes; BEP 14 leaves its shape open, clients send a few hex digits.
pub const MAX_COOKIE_LEN: usize = 64;
/// How often each torrent is announced again after its first announce (libtorrent and BEP 14's
/// reference implementations use 5 minutes).
pub const ANNOUNCE_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// Shortest time between two announces of one torrent: BEP 14 asks for at most one per minute.
pub const MIN_ANNOUNCE_INTERVAL: Duration = Duration::from_secs(60);
/// An announce due within this much time is sent early with one that is due now, so that torrents
/// share datagrams (never earlier than [`MIN_ANNOUNCE_INTERVAL`] after their last announce).
pub const BATCH_SLACK: Duration = Duration::from_secs(30);
/// When the first announce of a torrent is sent again, after that announce: multicast datagrams are
/// lost without a word (a busy Wi-Fi link, a receiver that adds the same torrent a moment later), and
/// the next announce is [`ANNOUNCE_INTERVAL`] away. The copies are the same announce, not new ones
/// (libtorrent also sends each announce more than once).
pub const FIRST_ANNOUNCE_REPEATS: [Duration; 2] = [Duration::from_secs(2), Duration::from_secs(10)];
/// Most torrents the [`Scheduler`] tracks, including those removed in the last minute.
pub const MAX_SCHEDULED: usize = 10_000;
/// Length of the window of the inbound rate limit.
pub const INBOUND_WINDOW: Duration = Duration::from_secs(60);
/// Most announces accepted from one source IP address per [`INBOUND_WINDOW`]. A client with many
/// torrents needs several datagrams (at most one per torrent per minute), so this is not 1.
pub const INBOUND_PER_WINDOW: u32 = 16;
/// Most source addresses the inbound rate limit remembers; when it is full of sources seen within the
/// window, announces from new sources are refused until a window ends.
pub const MAX_INBOUND_SOURCES: usize = 1024;

const REQUEST_LINE: &str = "BT-SEARCH * HTTP/1.1";

/// One of the two multicast groups of BEP 14.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// `239.192.152.143:6771`.
    V4,
    /// `[ff15::efc0:988f]:6771`.
    V6,
}

impl Group {
    /// The group's address and port, where announces are sent.
    pub fn addr(self) -> SocketAddr {
        match self {
            Group::V4 => SocketAddr::V4(SocketAddrV4::new(IPV4_GROUP, LSD_PORT)),
            Group::V6 => SocketAddr::V6(SocketAddrV6::new(IPV6_GROUP, LSD_PORT, 0, 0)),
        }
    }

    /// The value of the `Host` header for this group (RFC 2616 14.23, RFC 2732 brackets for IPv6).
    pub fn host(self) -> &'static str {
        match self {
            Group::V4 => "239.192.152.143:6771",
            Group::V6 => "[ff15::efc0:988f]:6771",
        }
    }
}

/// The opaque token a client puts in its announces to recognise them when multicast loops them back
/// (BEP 14 `cookie`): 1 to [`MAX_COOKIE_LEN`] visible ASCII characters.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Cookie(String);

impl Cookie {
    /// A fresh cookie of 16 lowercase hex digits (64 random bits) from `rng`.
    pub fn generate(rng: &mut impl rand::RngCore) -> Cookie {
        Cookie(format!("{:016x}", rng.next_u64()))
    }

    /// Takes `s` as a cookie if it is 1 to [`MAX_COOKIE_LEN`] visible ASCII characters (no spaces).
    pub fn new(s: &str) -> Option<Cookie> {
        let ok =
            !s.is_empty() && s.len() <= MAX_COOKIE_LEN && s.bytes().all(|b| b.is_ascii_graphic());
        ok.then(|| Cookie(s.to_owned()))
    }

    /// The cookie's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Cookie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cookie({})", self.0)
    }
}

/// A parsed announce (BEP 14).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announce {
    /// The TCP port the sender listens on for peers (1 to 65535).
    pub port: u16,
    /// The torrents announced: 1 to [`MAX_PARSED_INFO_HASHES`], distinct, in datagram order.
    pub info_hashes: Vec<InfoHash>,
    /// The sender's cookie, if it sent a valid one.
    pub cookie: Option<Cookie>,
}

/// Why a datagram is not an announce we accept. Every variant is the sender's fault (malformed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LsdError {
    /// The datagram is over [`MAX_DATAGRAM`] bytes.
    #[error("datagram of {0} bytes is over the 1400-byte limit")]
    TooLong(usize),
    /// It is not valid UTF-8 (announces are ASCII).
    #[error("not text")]
    NotText,
    /// The first line is not `BT-SEARCH * HTTP/1.1`.
    #[error("not a BT-SEARCH request")]
    NotAnnounce,
    /// The headers are not ended by a blank line.
    #[error("headers not ended by a blank line")]
    Unterminated,
    /// Something other than line breaks follows the blank line.
    #[error("data after the headers")]
    TrailingData,
    /// A header line has no `:`.
    #[error("header line without a colon")]
    BadHeader,
    /// `Host` or `Port` is missing.
    #[error("missing {0} header")]
    Missing(&'static str),
    /// `Host` or `Port` appears twice.
    #[error("duplicate {0} header")]
    Duplicate(&'static str),
    /// `Port` is not a decimal number from 1 to 65535.
    #[error("bad port")]
    BadPort,
    /// No `Infohash` header holds 40 hex digits.
    #[error("no valid info hash")]
    NoInfoHash,
}

/// Encodes the announces of `info_hashes` for `group`: one datagram per [`MAX_SENT_INFO_HASHES`]
/// hashes, each at most [`MAX_DATAGRAM`] bytes, with our listening `port` and `cookie`. Empty
/// `info_hashes` give no datagram.
pub fn encode(group: Group, port: u16, info_hashes: &[InfoHash], cookie: &Cookie) -> Vec<Vec<u8>> {
    info_hashes
        .chunks(MAX_SENT_INFO_HASHES)
        .map(|chunk| {
            let mut text = format!(
                "{REQUEST_LINE}\r\nHost: {}\r\nPort: {port}\r\n",
                group.host()
            );
            for hash in chunk {
                text.push_str("Infohash: ");
                text.push_str(&hash.to_hex());
                text.push_str("\r\n");
            }
            text.push_str("cookie: ");
            text.push_str(cookie.as_str());
            text.push_str("\r\n\r\n\r\n");
            text.into_bytes()
        })
        .collect()
}

/// Parses a received datagram as an announce (BEP 14).
///
/// Strict where it matters and lenient where clients differ: the request line must be exact and the
/// headers must end with a blank line followed only by line breaks; lines may end in `\r\n` or `\n`;
/// header names are case-insensitive and unknown headers are ignored. `Host` (any value) and `Port`
/// must appear once each. `Infohash` values that are not 40 hex digits are skipped, duplicates are
/// dropped and only the first [`MAX_PARSED_INFO_HASHES`] are kept; at least one must be valid. A cookie
/// that is not a valid [`Cookie`] is treated as absent.
///
/// Errors: [`LsdError`], naming the first problem found. Never panics.
pub fn parse(datagram: &[u8]) -> Result<Announce, LsdError> {
    if datagram.len() > MAX_DATAGRAM {
        return Err(LsdError::TooLong(datagram.len()));
    }
    let text = std::str::from_utf8(datagram).map_err(|_| LsdError::NotText)?;
    // Only complete lines count: a last fragment without its `\n` ends nothing.
    let mut lines = text.split_inclusive('\n');
    let mut line = || {
        let l = lines.next()?.strip_suffix('\n')?;
        Some(l.strip_suffix('\r').unwrap_or(l))
    };
    if line() != Some(REQUEST_LINE) {
        return Err(LsdError::NotAnnounce);
    }
    let (mut host, mut port, mut cookie) = (false, None, None);
    let mut info_hashes = Vec::new();
    loop {
        let l = line().ok_or(LsdError::Unterminated)?;
        if l.is_empty() {
            break;
        }
        let (name, value) = l.split_once(':').ok_or(LsdError::BadHeader)?;
        let value = value.trim_matches([' ', '\t']);
        if name.eq_ignore_ascii_case("host") {
            if std::mem::replace(&mut host, true) {
                return Err(LsdError::Duplicate("Host"));
            }
        } else if name.eq_ignore_ascii_case("port") {
            if port.replace(parse_port(value)?).is_some() {
                return Err(LsdError::Duplicate("Port"));
            }
        } else if name.eq_ignore_ascii_case("infohash") {
            let hash = InfoHash::from_hex(value);
            if let Some(hash) = hash.filter(|h| !info_hashes.contains(h)) {
                if info_hashes.len() < MAX_PARSED_INFO_HASHES {
                    info_hashes.push(hash);
                }
            }
        } else if name.eq_ignore_ascii_case("cookie") {
            cookie = Cookie::new(value);
        }
    }
    // What follows the blank line: BEP 14 ends with a second blank line; allow any number.
    if !lines.all(|l| l.bytes().all(|b| b == b'\r' || b == b'\n')) {
        return Err(LsdError::TrailingData);
    }
    if !host {
        return Err(LsdError::Missing("Host"));
    }
    let port = port.ok_or(LsdError::Missing("Port"))?;
    if info_hashes.is_empty() {
        return Err(LsdError::NoInfoHash);
    }
    Ok(Announce {
        port,
        info_hashes,
        cookie,
    })
}

fn parse_port(value: &str) -> Result<u16, LsdError> {
    let digits = !value.is_empty() && value.len() <= 5 && value.bytes().all(|b| b.is_ascii_digit());
    match value.parse::<u16>() {
        Ok(port) if digits && port != 0 => Ok(port),
        _ => Err(LsdError::BadPort),
    }
}

/// When a torrent is next announced.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// `None`: removed; kept only until [`MIN_ANNOUNCE_INTERVAL`] after `last`, so that removing and
    /// adding it again cannot announce it twice in a minute.
    next: Option<Instant>,
    last: Option<Instant>,
    /// Whether the next announce is the first since [`Scheduler::add`]: it gets repeated.
    fresh: bool,
    /// The copies of the first announce still to send: when the next is due and how many of
    /// [`FIRST_ANNOUNCE_REPEATS`] are sent.
    repeat: Option<(Instant, usize)>,
}

impl Slot {
    /// The earliest instant the torrent may be announced again.
    fn allowed_at(&self) -> Option<Instant> {
        self.last.map(|l| l + MIN_ANNOUNCE_INTERVAL)
    }
}

/// Which info hashes to announce when (BEP 14): each torrent once when added and then every
/// [`ANNOUNCE_INTERVAL`], never twice within [`MIN_ANNOUNCE_INTERVAL`], batched up to
/// [`MAX_SENT_INFO_HASHES`] per datagram. Tracks at most [`MAX_SCHEDULED`] torrents.
///
/// The first announce after [`Scheduler::add`] is sent again after each of [`FIRST_ANNOUNCE_REPEATS`]
/// ([`Scheduler::poll_repeat`]); the copies do not count against the per-minute limit.
///
/// The driver calls [`Scheduler::poll_announce`] and then [`Scheduler::poll_repeat`] until each
/// returns nothing, sends each batch, then sleeps until [`Scheduler::poll_timeout`] (or until a
/// torrent is added).
#[derive(Debug, Default)]
pub struct Scheduler {
    slots: HashMap<InfoHash, Slot>,
}

impl Scheduler {
    /// An empty schedule.
    pub fn new() -> Scheduler {
        Scheduler::default()
    }

    /// Schedules `info_hash` for an announce now (or as soon as the per-minute limit allows, if it was
    /// announced lately) and every [`ANNOUNCE_INTERVAL`] after. Returns false if it was already
    /// scheduled or the schedule is full ([`MAX_SCHEDULED`]).
    pub fn add(&mut self, info_hash: InfoHash, now: Instant) -> bool {
        if self.slots.len() >= MAX_SCHEDULED {
            self.forget_removed(now);
        }
        let full = self.slots.len() >= MAX_SCHEDULED;
        match self.slots.entry(info_hash) {
            Entry::Occupied(mut e) if e.get().next.is_none() => {
                let slot = e.get_mut();
                slot.next = Some(slot.allowed_at().map_or(now, |a| a.max(now)));
                slot.fresh = true;
                true
            }
            Entry::Occupied(_) => false,
            Entry::Vacant(_) if full => false,
            Entry::Vacant(e) => {
                e.insert(Slot {
                    next: Some(now),
                    last: None,
                    fresh: true,
                    repeat: None,
                });
                true
            }
        }
    }

    /// Stops announcing `info_hash`. Returns false if it was not scheduled.
    pub fn remove(&mut self, info_hash: &InfoHash) -> bool {
        match self.slots.get_mut(info_hash) {
            Some(slot) if slot.next.is_some() => {
                slot.next = None;
                slot.repeat = None;
                true
            }
            _ => false,
        }
    }

    /// Whether `info_hash` is scheduled (added and not removed).
    pub fn contains(&self, info_hash: &InfoHash) -> bool {
        self.slots.get(info_hash).is_some_and(|s| s.next.is_some())
    }

    /// The number of scheduled torrents.
    pub fn len(&self) -> usize {
        self.slots.values().filter(|s| s.next.is_some()).count()
    }

    /// Whether no torrent is scheduled.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// When the next announce or copy is due; `None` when nothing is scheduled.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let repeats = self
            .slots
            .values()
            .filter_map(|s| s.repeat.map(|(at, _)| at));
        self.next_announce().into_iter().chain(repeats).min()
    }

    fn next_announce(&self) -> Option<Instant> {
        self.slots.values().filter_map(|s| s.next).min()
    }

    /// The info hashes to announce in one datagram now: those due, earliest first, plus any due within
    /// [`BATCH_SLACK`] that the per-minute limit allows, at most [`MAX_SENT_INFO_HASHES`]. Marks them
    /// announced at `now`. Empty when nothing is due.
    pub fn poll_announce(&mut self, now: Instant) -> Vec<InfoHash> {
        self.forget_removed(now);
        if self.next_announce().is_none_or(|t| t > now) {
            return Vec::new();
        }
        let mut ready: Vec<(Instant, InfoHash)> = self
            .slots
            .iter()
            .filter_map(|(hash, slot)| {
                let next = slot.next?;
                let allowed = slot.allowed_at().is_none_or(|a| a <= now);
                (next <= now + BATCH_SLACK && allowed).then_some((next, *hash))
            })
            .collect();
        ready.sort_unstable();
        ready.truncate(MAX_SENT_INFO_HASHES);
        for (_, hash) in &ready {
            if let Some(slot) = self.slots.get_mut(hash) {
                slot.last = Some(now);
                slot.next = Some(now + ANNOUNCE_INTERVAL);
                if std::mem::take(&mut slot.fresh) {
                    slot.repeat = Some((now + FIRST_ANNOUNCE_REPEATS[0], 0));
                }
            }
        }
        ready.into_iter().map(|(_, hash)| hash).collect()
    }

    /// The info hashes whose first announce is due to be sent again now, at most
    /// [`MAX_SENT_INFO_HASHES`], for one datagram. Empty when none is due.
    pub fn poll_repeat(&mut self, now: Instant) -> Vec<InfoHash> {
        let mut ready: Vec<(Instant, InfoHash)> = self
            .slots
            .iter()
            .filter_map(|(hash, slot)| {
                let (at, _) = slot.repeat?;
                (at <= now).then_some((at, *hash))
            })
            .collect();
        ready.sort_unstable();
        ready.truncate(MAX_SENT_INFO_HASHES);
        for (_, hash) in &ready {
            if let Some(slot) = self.slots.get_mut(hash) {
                slot.repeat = slot.repeat.and_then(|(_, sent)| {
                    let last = slot.last?;
                    let delay = FIRST_ANNOUNCE_REPEATS.get(sent + 1)?;
                    Some((last + *delay, sent + 1))
                });
            }
        }
        ready.into_iter().map(|(_, hash)| hash).collect()
    }

    fn forget_removed(&mut self, now: Instant) {
        self.slots
            .retain(|_, s| s.next.is_some() || s.allowed_at().is_some_and(|a| a > now));
    }
}

/// What to make of a received datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Another client at `peer` (source IP, announced port) takes part in `info_hashes`.
    Peer {
        /// Where to connect to it.
        peer: SocketAddr,
        /// The torrents it announced (not filtered by what we have).
        info_hashes: Vec<InfoHash>,
    },
    /// Our own announce, looped back (same cookie).
    Own,
    /// The source sent more than [`INBOUND_PER_WINDOW`] announces in this window, or too many sources
    /// are being tracked.
    RateLimited,
    /// Not an announce we accept.
    Malformed(LsdError),
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    count: u32,
}

/// The receiving side of LSD: recognises our own announces by their cookie and limits how many
/// announces each source IP address gets through ([`INBOUND_PER_WINDOW`] per [`INBOUND_WINDOW`],
/// [`MAX_INBOUND_SOURCES`] sources remembered).
#[derive(Debug)]
pub struct Inbound {
    cookie: Cookie,
    sources: HashMap<IpAddr, Window>,
}

impl Inbound {
    /// A receiver that ignores announces carrying `cookie` (the one we send).
    pub fn new(cookie: Cookie) -> Inbound {
        Inbound {
            cookie,
            sources: HashMap::new(),
        }
    }

    /// Judges `datagram`, received from `from` at `now`. Malformed datagrams and our own count
    /// toward the source's limit too, so a flood of garbage is cut off as early as a flood of
    /// announces.
    pub fn handle(&mut self, datagram: &[u8], from: IpAddr, now: Instant) -> Verdict {
        if !self.allow(from, now) {
            return Verdict::RateLimited;
        }
        match parse(datagram) {
            Err(e) => Verdict::Malformed(e),
            Ok(a) if a.cookie.as_ref() == Some(&self.cookie) => Verdict::Own,
            Ok(a) => Verdict::Peer {
                peer: SocketAddr::new(from, a.port),
                info_hashes: a.info_hashes,
            },
        }
    }

    fn allow(&mut self, from: IpAddr, now: Instant) -> bool {
        let expired = |w: &Window| now.saturating_duration_since(w.start) >= INBOUND_WINDOW;
        if !self.sources.contains_key(&from) && self.sources.len() >= MAX_INBOUND_SOURCES {
            self.sources.retain(|_, w| !expired(w));
            if self.sources.len() >= MAX_INBOUND_SOURCES {
                return false;
            }
        }
        let window = self.sources.entry(from).or_insert(Window {
            start: now,
            count: 0,
        });
        if expired(window) {
            *window = Window {
                start: now,
                count: 0,
            };
        }
        window.count += 1;
        window.count <= INBOUND_PER_WINDOW
    }
}

#[cfg(test)]
mod tests;
