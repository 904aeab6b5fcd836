//! Where one torrent's peer addresses come from besides incoming connections: its trackers (BEP 3,
//! BEP 12, BEP 15) and the DHT (BEP 5). Shared by a running torrent and by a magnet link's metadata
//! phase, so both ask for more peers, and wake up for them, the same way. A hybrid torrent (BEP 52)
//! has a second set: its trackers and the DHT are asked under its v2 info hash (truncated to 20
//! bytes) as well, as libtorrent does, so peers that only know that hash find us and we find them.

use std::net::SocketAddr;

use tokio::time::Instant;

use crate::dht::TorrentDht;
use crate::tracker::AnnouncerHandle;

/// A torrent's announcer and DHT searches; either may be absent (no trackers, DHT off, private).
pub(crate) struct PeerSources {
    /// `None` once stopped.
    announcer: Option<AnnouncerHandle>,
    dht: Option<TorrentDht>,
    /// The same under a hybrid torrent's second info hash (BEP 52); `None` for one hash.
    second_announcer: Option<AnnouncerHandle>,
    second_dht: Option<TorrentDht>,
}

impl PeerSources {
    pub(crate) fn new(announcer: AnnouncerHandle, dht: Option<TorrentDht>) -> PeerSources {
        PeerSources {
            announcer: Some(announcer),
            dht,
            second_announcer: None,
            second_dht: None,
        }
    }

    /// Adds the sources of a hybrid torrent's second info hash: its announcer and DHT searches.
    pub(crate) fn with_second(
        mut self,
        announcer: AnnouncerHandle,
        dht: Option<TorrentDht>,
    ) -> PeerSources {
        self.second_announcer = Some(announcer);
        self.second_dht = dht;
        self
    }

    /// The next peers any source found, or an empty list when a DHT search ended: its retry may now
    /// be due sooner than the [`PeerSources::deadline`] the caller sleeps until, so the caller must
    /// ask again. Never completes otherwise while no source has any.
    pub(crate) async fn next(&mut self) -> Vec<SocketAddr> {
        tokio::select! {
            Some(peers) = AnnouncerHandle::next_of(&mut self.announcer) => peers,
            Some(peers) = AnnouncerHandle::next_of(&mut self.second_announcer) => peers,
            found = TorrentDht::next_peers(&mut self.dht) => {
                let peers = found.unwrap_or_default();
                if !peers.is_empty() {
                    tracing::info!(count = peers.len(), "peers from the DHT");
                }
                peers
            }
            found = TorrentDht::next_peers(&mut self.second_dht) => {
                let peers = found.unwrap_or_default();
                if !peers.is_empty() {
                    tracing::info!(count = peers.len(), "peers from the DHT (v2 info hash)");
                }
                peers
            }
        }
    }

    /// When [`PeerSources::poll`] is next due, if ever.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        [&self.dht, &self.second_dht]
            .into_iter()
            .flatten()
            .map(TorrentDht::deadline)
            .min()
    }

    /// Starts the DHT searches that are due, if any.
    pub(crate) fn poll(&mut self, now: Instant) {
        for d in [&mut self.dht, &mut self.second_dht].into_iter().flatten() {
            d.poll_start(now);
        }
    }

    /// The torrent has nobody left to dial: ask the trackers (within their minimum interval) and
    /// the DHT (at most once a minute) for more.
    pub(crate) fn dry(&mut self, now: Instant) {
        for a in [&self.announcer, &self.second_announcer]
            .into_iter()
            .flatten()
        {
            a.want_peers();
        }
        for d in [&mut self.dht, &mut self.second_dht].into_iter().flatten() {
            d.peers_dry(now);
        }
    }

    /// A peer runs a DHT node at `node` (BEP 5 `port`).
    pub(crate) fn dht_node(&self, node: SocketAddr) {
        if let Some(d) = &self.dht {
            d.ping(node);
        }
    }

    /// Asks the trackers for an announce now (a user's reannounce); `false` without trackers.
    pub(crate) fn reannounce(&self) -> bool {
        if let Some(a) = &self.second_announcer {
            a.reannounce();
        }
        self.announcer
            .as_ref()
            .map(AnnouncerHandle::reannounce)
            .is_some()
    }

    /// The announcer's latest status; `None` once stopped.
    pub(crate) fn tracker_status(&self) -> Option<crate::tracker::AnnouncerStatus> {
        self.announcer.as_ref().map(AnnouncerHandle::status)
    }

    /// Tells the trackers the download completed (BEP 3 `event=completed`), once.
    pub(crate) fn completed(&self) {
        for a in [&self.announcer, &self.second_announcer]
            .into_iter()
            .flatten()
        {
            a.completed();
        }
    }

    /// Tells the trackers we leave (`event=stopped`), within the announcer's stop budget; searches
    /// end with the torrent.
    pub(crate) async fn stop(&mut self) {
        let stop = |a: Option<AnnouncerHandle>| async move {
            if let Some(announcer) = a {
                announcer.stop().await;
            }
        };
        // At once, so both fit in one stop budget.
        tokio::join!(
            stop(self.announcer.take()),
            stop(self.second_announcer.take())
        );
    }
}
