//! The extension messages the engine takes part in: the BEP 10 extension handshake, serving
//! metadata (BEP 9 `ut_metadata`) and peer exchange (BEP 11 `ut_pex`), none of them for a private
//! torrent (BEP 27).

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::time::Instant;

use super::{Event, Offence, Outgoing, Peer, PeerFault, PeerKey, Torrent};
use crate::extension::{
    ExtensionError, ExtensionHandshake, MAX_METADATA_SIZE, MetadataMessage, OUR_UT_METADATA,
    OUR_UT_PEX, PexFlags, PexMessage, UT_METADATA, UT_PEX,
};

/// Listen addresses of the connected peers with their PEX flags and keys (see `Torrent::pex_snapshot`).
type PexSnapshot = BTreeMap<SocketAddr, (PexFlags, PeerKey)>;

/// What one peer's extension handshakes told us, and the state of its extension messages.
#[derive(Debug, Default)]
pub(super) struct PeerExtensions {
    /// The id the peer wants BEP 9 `ut_metadata` messages under (its `m`), if it supports them.
    pub(super) ut_metadata: Option<u8>,
    /// The id the peer wants BEP 11 `ut_pex` messages under, if it supports them.
    pub(super) ut_pex: Option<u8>,
    /// Its listening port (`p`), for the address PEX gives of an incoming connection.
    pub(super) listen_port: Option<u16>,
    /// Metadata requests since `metadata_window` began (at most a minute ago).
    pub(super) metadata_requests: u32,
    pub(super) metadata_window: Option<Instant>,
    /// When we may next send it a PEX message (`None` until it supports `ut_pex`).
    pub(super) pex_due: Option<Instant>,
    /// Addresses our PEX messages listed as added and not yet as dropped: what it knows from us. At
    /// most [`PEX_TOLD_MAX`].
    pub(super) pex_told: HashSet<SocketAddr>,
    /// When we last took a PEX message from it.
    pub(super) pex_received: Option<Instant>,
    /// Its client name and version (`v`), for display.
    pub(super) client: Option<String>,
}

/// BEP 9 metadata requests a peer may send per minute: 64, or twice the metadata's piece count
/// when larger (an honest fetcher asks for each piece once, again only after a reject or a lost
/// answer). Beyond that it is [`Offence::MetadataFlood`]: each answer costs us up to 16 KiB.
pub const METADATA_REQUESTS_PER_MINUTE: u32 = 64;

/// We send each peer at most one PEX message per this interval (BEP 11 asks for no more than one
/// a minute).
pub const PEX_INTERVAL: Duration = Duration::from_secs(60);

/// Our first PEX message to a peer goes this long after its extension handshake, so peers that
/// connected at the same moment (and their listening ports) are in it.
pub const PEX_FIRST_DELAY: Duration = Duration::from_secs(3);

/// A PEX message received less than this long after the previous one from the same peer is
/// ignored: BEP 11 peers send one a minute, so this only stops a flood.
pub const PEX_MIN_RECEIVE_INTERVAL: Duration = Duration::from_secs(45);

/// Added peers, and dropped peers, listed in one PEX message we send (libtorrent's limit too).
pub const PEX_MAX_PER_MESSAGE: usize = 50;

/// Addresses remembered per peer as told to it by PEX; under heavy churn the oldest knowledge is
/// let go (the peer learns of those departures from its own failed connections).
const PEX_TOLD_MAX: usize = 1000;

impl Torrent {
    /// Our BEP 10 extension handshake: `m` lists `ut_metadata` (with `metadata_size`) when we serve
    /// metadata and `ut_pex` when we exchange peers (neither for a private torrent), then our
    /// listening port `p`, `reqq` (the requests we accept at once), our client name `v`, and BEP 21
    /// `upload_only`: 1 once every wanted piece is verified, else 0 (which also tells peers told 1
    /// before that we download again).
    pub(super) fn extension_handshake(&self) -> Vec<u8> {
        let mut messages = Vec::new();
        let metadata = self.served_metadata();
        if metadata.is_some() {
            messages.push((UT_METADATA.to_owned(), OUR_UT_METADATA));
        }
        if self.pex_enabled() {
            messages.push((UT_PEX.to_owned(), OUR_UT_PEX));
        }
        ExtensionHandshake {
            messages,
            listen_port: self.config.listen_port,
            client: Some(crate::extension::OUR_CLIENT.to_owned()),
            your_ip: None,
            reqq: Some(self.config.max_peer_requests),
            metadata_size: metadata.map(|m| m.len() as u32),
            upload_only: self.finished,
        }
        .encode()
    }

    /// The metadata we serve (BEP 9): not for a private torrent, nor when empty or too large.
    fn served_metadata(&self) -> Option<&Arc<[u8]>> {
        self.config
            .metadata
            .as_ref()
            .filter(|m| !self.config.private && (1..=MAX_METADATA_SIZE as usize).contains(&m.len()))
    }

    /// True when we exchange peers (BEP 11): asked to, and not a private torrent.
    pub(super) fn pex_enabled(&self) -> bool {
        self.config.pex && !self.config.private
    }

    /// A BEP 10 extended message. Id 0 is a handshake (a later one updates the earlier: `m` entries
    /// with id 0 switch an extension off); [`OUR_UT_METADATA`] and [`OUR_UT_PEX`] are BEP 9 and BEP
    /// 11 messages when we offered those; anything under another id is ignored (BEP 10: ids are
    /// ours to assign, so it is nothing we asked for).
    pub(super) fn on_extended(
        &mut self,
        key: PeerKey,
        id: u8,
        payload: &[u8],
        now: Instant,
    ) -> Result<(), PeerFault> {
        match id {
            0 => {
                // The handshake is advisory: a malformed one changes nothing.
                if let Ok(ext) = ExtensionHandshake::decode(payload) {
                    self.on_extension_handshake(key, &ext, now);
                }
                Ok(())
            }
            OUR_UT_METADATA if self.served_metadata().is_some() => {
                match MetadataMessage::decode(payload) {
                    Ok(MetadataMessage::Request { piece }) => {
                        self.on_metadata_request(key, piece, now)
                    }
                    // We fetch nothing here: data and rejects are answers to someone else.
                    Ok(MetadataMessage::Data { .. } | MetadataMessage::Reject { .. })
                    | Err(ExtensionError::UnknownMsgType(_)) => Ok(()),
                    Err(e) => Err(PeerFault::Malformed(format!("ut_metadata: {e}"))),
                }
            }
            OUR_UT_PEX if self.pex_enabled() => self.on_pex(key, payload, now),
            _ => Ok(()),
        }
    }

    fn on_extension_handshake(&mut self, key: PeerKey, ext: &ExtensionHandshake, now: Instant) {
        let peer = self.peers.get_mut(&key).expect("caller checked");
        if let Some(reqq) = ext.reqq {
            peer.reqq = Some(reqq);
        }
        peer.upload_only = ext.upload_only;
        if ext.listen_port.is_some() {
            peer.ext.listen_port = ext.listen_port;
        }
        if ext.client.is_some() {
            peer.ext.client.clone_from(&ext.client);
        }
        for (name, id) in &ext.messages {
            let id = (*id != 0).then_some(*id);
            match name.as_str() {
                UT_METADATA => peer.ext.ut_metadata = id,
                UT_PEX => peer.ext.ut_pex = id,
                _ => {}
            }
        }
        if peer.ext.ut_pex.is_some() && peer.ext.pex_due.is_none() {
            peer.ext.pex_due = Some(now + PEX_FIRST_DELAY);
        }
        self.drop_if_both_seeds(key);
    }

    /// A BEP 9 request: a piece we have is sent at once (`data`), one past the end is rejected. A
    /// peer that did not say which id it wants `ut_metadata` under gets no answer. More than the
    /// allowance of [`METADATA_REQUESTS_PER_MINUTE`] is [`Offence::MetadataFlood`].
    fn on_metadata_request(
        &mut self,
        key: PeerKey,
        piece: u32,
        now: Instant,
    ) -> Result<(), PeerFault> {
        let metadata = Arc::clone(self.served_metadata().expect("caller checked"));
        let total = metadata.len() as u32;
        let allowance =
            METADATA_REQUESTS_PER_MINUTE.max(2 * crate::extension::metadata_piece_count(total));
        let peer = self.peers.get_mut(&key).expect("caller checked");
        let ext = &mut peer.ext;
        if ext
            .metadata_window
            .is_none_or(|start| now.duration_since(start) >= Duration::from_secs(60))
        {
            ext.metadata_window = Some(now);
            ext.metadata_requests = 0;
        }
        ext.metadata_requests += 1;
        if ext.metadata_requests > allowance {
            return Err(PeerFault::Misbehaved(Offence::MetadataFlood(allowance)));
        }
        let Some(id) = ext.ut_metadata else {
            return Ok(());
        };
        let mut payload = Vec::new();
        match crate::extension::metadata_piece_len(piece, total) {
            Some(len) => {
                let start = piece as usize * crate::extension::METADATA_PIECE_LEN as usize;
                MetadataMessage::Data {
                    piece,
                    total_size: total,
                    data: &metadata[start..start + len as usize],
                }
                .encode(&mut payload);
            }
            None => MetadataMessage::Reject { piece }.encode(&mut payload),
        }
        self.send(key, Outgoing::Extended(id, payload), now);
        Ok(())
    }

    /// A BEP 11 message: its added peers become [`Event::PeersDiscovered`]. One message per
    /// [`PEX_MIN_RECEIVE_INTERVAL`] per peer is taken, the rest ignored; a malformed one is a fault.
    fn on_pex(&mut self, key: PeerKey, payload: &[u8], now: Instant) -> Result<(), PeerFault> {
        let peer = self.peers.get_mut(&key).expect("caller checked");
        if peer
            .ext
            .pex_received
            .is_some_and(|t| now.duration_since(t) < PEX_MIN_RECEIVE_INTERVAL)
        {
            return Ok(());
        }
        peer.ext.pex_received = Some(now);
        let message = PexMessage::decode(payload)
            .map_err(|e| PeerFault::Malformed(format!("ut_pex: {e}")))?;
        let own = peer.info.addr;
        let addrs: Vec<(SocketAddr, PexFlags)> = message
            .added
            .into_iter()
            .filter(|(a, _)| *a != own)
            .collect();
        if !addrs.is_empty() {
            self.events.push_back(Event::PeersDiscovered(addrs));
        }
        Ok(())
    }

    /// Where `peer` accepts connections, as PEX tells others: the address we dialled, or for an
    /// incoming connection its address with the port of its extension handshake (`None` before it
    /// gave one).
    fn listen_addr(peer: &Peer) -> Option<SocketAddr> {
        if peer.info.outgoing {
            Some(peer.info.addr)
        } else {
            let port = peer.ext.listen_port?;
            Some(SocketAddr::new(peer.info.addr.ip(), port))
        }
    }

    /// Every connected peer's listen address with its PEX flags (BEP 11: 0x10 when we dialled it,
    /// 0x02 when it only uploads, 0x01 when its connection is encrypted, 0x04 when it is over
    /// uTP), taken once per tick for all the messages due in it.
    pub(super) fn pex_snapshot(&self) -> PexSnapshot {
        self.peers
            .iter()
            .filter_map(|(k, p)| {
                let addr = Self::listen_addr(p)?;
                let mut flags = 0;
                if p.info.outgoing {
                    flags |= PexFlags::REACHABLE;
                }
                if p.info.encrypted {
                    flags |= PexFlags::ENCRYPTION;
                }
                if p.info.utp {
                    flags |= PexFlags::UTP;
                }
                if p.upload_only || p.bitfield.is_full() {
                    flags |= PexFlags::SEED;
                }
                Some((addr, (PexFlags(flags), *k)))
            })
            .collect()
    }

    /// Sends `key` a PEX message (BEP 11) if one is due and there is news: peers connected since
    /// the last one (`added`, with flags: 0x10 when we dialled them, 0x02 when they only upload)
    /// and peers gone (`dropped`), at most [`PEX_MAX_PER_MESSAGE`] of each (the rest go in the
    /// next). The peer itself is never listed.
    pub(super) fn send_pex_if_due(&mut self, key: PeerKey, now: Instant, snapshot: &PexSnapshot) {
        let peer = &self.peers[&key];
        let (Some(id), Some(due)) = (peer.ext.ut_pex, peer.ext.pex_due) else {
            return;
        };
        if now < due || !self.pex_enabled() {
            return;
        }
        let itself = (peer.info.addr, Self::listen_addr(peer));
        // The peers this one may be told of: all but itself.
        let current = |addr: &SocketAddr| {
            snapshot.get(addr).is_some_and(|(_, k)| *k != key)
                && *addr != itself.0
                && Some(*addr) != itself.1
        };
        let told = &peer.ext.pex_told;
        let added: Vec<(SocketAddr, PexFlags)> = snapshot
            .iter()
            .filter(|(a, _)| current(a) && !told.contains(a))
            .take(PEX_MAX_PER_MESSAGE)
            .map(|(a, (f, _))| (*a, *f))
            .collect();
        let mut dropped: Vec<SocketAddr> = told.iter().filter(|a| !current(a)).copied().collect();
        dropped.sort_unstable();
        dropped.truncate(PEX_MAX_PER_MESSAGE);
        if added.is_empty() && dropped.is_empty() {
            return;
        }
        let ext = &mut self.peers.get_mut(&key).expect("listed").ext;
        ext.pex_due = Some(now + PEX_INTERVAL);
        ext.pex_told.extend(added.iter().map(|(a, _)| *a));
        for a in &dropped {
            ext.pex_told.remove(a);
        }
        if ext.pex_told.len() > PEX_TOLD_MAX {
            ext.pex_told.retain(current);
        }
        let payload = PexMessage { added, dropped }.encode();
        self.send(key, Outgoing::Extended(id, payload), now);
    }
}
