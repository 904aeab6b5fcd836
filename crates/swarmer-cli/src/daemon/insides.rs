//! What only a running torrent (or its saved resume state) knows, as the JSON API shows it: its
//! peers, its trackers with their announce and scrape results, and its verified pieces. Built from
//! the manager's [`Inside`]; the Transmission RPC uses the same flag letters and piece bitfield.

use base64::Engine;
use serde::{Deserialize, Serialize};
use swarmer_proto::tracker::scrape::ScrapeCounts;
use utoipa::ToSchema;

use super::model::Inside;

/// One connected peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub(crate) struct Peer {
    /// `ip:port` (for an incoming connection, its source address).
    pub(crate) address: String,
    /// Its client's name from its BEP 10 handshake; empty if it sent none.
    pub(crate) client: String,
    /// Transmission's `flagStr` letters: T over uTP, D/d downloading from it or interested, U/u
    /// uploading to it or it is interested, K unchoked by it while we are not interested, ?
    /// unchoked while it is not interested, E encrypted, I incoming.
    pub(crate) flags: String,
    /// What carries the connection: `tcp` or `utp` (BEP 29).
    pub(crate) transport: String,
    /// The connection is encrypted (MSE).
    pub(crate) encrypted: bool,
    /// It dialled us.
    pub(crate) incoming: bool,
    /// What it sends us, bytes/s.
    pub(crate) download_rate: u64,
    /// What we send it, bytes/s.
    pub(crate) upload_rate: u64,
    /// Its share of the torrent's pieces, 0 to 1.
    pub(crate) progress: f64,
}

/// How announcing to one tracker goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum TrackerState {
    /// The torrent does not run, so nothing is announced.
    Inactive,
    /// Running, and this tracker has not answered (yet; another of its tier may have).
    Waiting,
    /// It answered the last announce.
    Working,
    /// Every tracker failed in the last round; `error` says why.
    Error,
}

/// One tracker of a torrent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub(crate) struct Tracker {
    /// Its announce URL.
    pub(crate) url: String,
    /// Its tier (BEP 12), 0 first.
    pub(crate) tier: u32,
    /// How announcing goes.
    pub(crate) status: TrackerState,
    /// The last announce round's error, if every tracker failed in it.
    pub(crate) error: Option<String>,
    /// Seeders: from its last scrape where known, else from its last announce reply; null when
    /// unknown.
    pub(crate) seeders: Option<u32>,
    /// Leechers, as `seeders`.
    pub(crate) leechers: Option<u32>,
    /// Downloads completed, from its last scrape; null when unknown.
    pub(crate) completed: Option<u32>,
    /// When it was last scraped, seconds since the Unix epoch; null if never.
    pub(crate) last_scrape: Option<u64>,
    /// Why its last scrape failed, if it did.
    pub(crate) scrape_error: Option<String>,
}

/// A torrent's verified pieces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub(crate) struct Pieces {
    /// Pieces in the torrent (0 until the metadata is known).
    pub(crate) piece_count: u32,
    /// Verified pieces.
    pub(crate) pieces_have: u32,
    /// The verified pieces as a bitfield (BEP 3's: piece 0 is the high bit of the first byte),
    /// base64; all zeros when not known.
    pub(crate) bitfield: String,
}

/// Transmission's `flagStr` letters for one peer.
pub(crate) fn flag_str(p: &swarmer::PeerDetails) -> String {
    let s = &p.status;
    let downloading = s.am_interested && !s.peer_choking;
    let uploading = s.peer_interested && !s.am_choking;
    let mut flags = String::new();
    if s.utp {
        flags.push('T');
    }
    match (downloading, s.am_interested) {
        (true, _) => flags.push('D'),
        (false, true) => flags.push('d'),
        (false, false) if !s.peer_choking => flags.push('K'),
        _ => {}
    }
    match (uploading, s.peer_interested) {
        (true, _) => flags.push('U'),
        (false, true) => flags.push('u'),
        (false, false) if !s.am_choking => flags.push('?'),
        _ => {}
    }
    if s.encrypted {
        flags.push('E');
    }
    if !p.outgoing {
        flags.push('I');
    }
    flags
}

/// A peer's share of the torrent's pieces, 0 to 1.
pub(crate) fn peer_progress(d: &Inside, p: &swarmer::PeerDetails) -> f64 {
    let count = d.detail.piece_count.max(1);
    f64::from(p.status.pieces.min(count)) / f64::from(count)
}

/// The connected peers, in the order the torrent lists them.
pub(crate) fn peers(d: &Inside) -> Vec<Peer> {
    d.peers
        .iter()
        .map(|p| Peer {
            address: p.addr.to_string(),
            client: p.status.client.clone().unwrap_or_default(),
            flags: flag_str(p),
            transport: if p.status.utp { "utp" } else { "tcp" }.to_owned(),
            encrypted: p.status.encrypted,
            incoming: !p.outgoing,
            download_rate: p.status.download_rate,
            upload_rate: p.status.upload_rate,
            progress: peer_progress(d, p),
        })
        .collect()
}

/// The trackers, every tier in order, each with the announcer's status (which names only the one
/// that answered last, or the error of a round in which all failed) and its last scrape.
pub(crate) fn trackers(d: &Inside) -> Vec<Tracker> {
    let status = d.tracker.as_ref();
    let tiers = d.metainfo.as_ref().map_or_else(
        || d.detail.trackers.iter().map(|t| vec![t.clone()]).collect(),
        |m| m.announce_tiers.clone(),
    );
    let mut out = Vec::new();
    for (tier, urls) in tiers.iter().enumerate() {
        for url in urls {
            let answered = status.and_then(|s| s.tracker.as_deref()) == Some(url.as_str());
            let error = status.and_then(|s| s.last_error.clone());
            let state = match status {
                None => TrackerState::Inactive,
                Some(_) if answered => TrackerState::Working,
                Some(_) if error.is_some() => TrackerState::Error,
                Some(_) => TrackerState::Waiting,
            };
            let scraped = d.scrapes.get(url);
            let counts = scraped.and_then(|r| r.counts.as_ref());
            let from_scrape = |pick: fn(&ScrapeCounts) -> u32| counts.map(pick);
            let announced = |n: Option<u32>| n.filter(|_| answered);
            out.push(Tracker {
                url: url.clone(),
                tier: tier as u32,
                status: state,
                error,
                seeders: from_scrape(|c| c.seeders)
                    .or_else(|| announced(status.and_then(|s| s.seeders))),
                leechers: from_scrape(|c| c.leechers)
                    .or_else(|| announced(status.and_then(|s| s.leechers))),
                completed: from_scrape(|c| c.completed),
                last_scrape: scraped.map(|r| r.at),
                scrape_error: scraped.and_then(|r| r.error.clone()),
            });
        }
    }
    out
}

/// The verified pieces as a BEP 3 bitfield, base64.
pub(crate) fn bitfield_base64(d: &Inside) -> String {
    let count = d.detail.piece_count as usize;
    let mut bytes = vec![0u8; count.div_ceil(8)];
    if let Some(have) = &d.have {
        for i in (0..count).filter(|&i| have.get(i)) {
            bytes[i / 8] |= 0x80 >> (i % 8);
        }
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The verified pieces.
pub(crate) fn pieces(d: &Inside) -> Pieces {
    let have = d.have.as_ref().map_or(0, |h| {
        (0..d.detail.piece_count as usize)
            .filter(|&i| h.get(i))
            .count() as u32
    });
    Pieces {
        piece_count: d.detail.piece_count,
        pieces_have: have,
        bitfield: bitfield_base64(d),
    }
}
