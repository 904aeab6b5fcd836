//! Turning a magnet link (BEP 9) into a torrent: finding peers for its info hash (the link's `x.pe`
//! peers, its trackers, the DHT), fetching the metadata from them with `ut_metadata` (the sans-IO
//! [`MetadataFetch`] decides what to ask whom) and checking it against the info hash.
//!
//! The connections of this phase only exchange extension messages (BEP 10); once the metadata is in,
//! they close and the torrent starts with every peer address found, like one added from a file.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use swarmer_proto::InfoHash;
use swarmer_proto::extension::{ExtensionHandshake, OUR_UT_METADATA, UT_METADATA};
use swarmer_proto::hashes::{HASH_REJECT, HASH_REQUEST, HashMessage};
use swarmer_proto::layer_fetch::LayerFetch;
use swarmer_proto::magnet::{Magnet, MagnetPeer};
use swarmer_proto::metadata::{FetchProgress, MetadataFetch};
use swarmer_proto::metainfo::{Info, MetaVersion, Metainfo, MetainfoError};
use swarmer_proto::wire::Message;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::connections::{Connections, ConnectionsConfig};
use crate::dht::TorrentDht;
use crate::peer::{ConnEvent, ConnId, Outbound};
use crate::rate::TorrentLimits;
use crate::shared::SessionShared;
use crate::sources::PeerSources;
use crate::tracker::{AnnouncerConfig, TrackerClient, TransferStats, spawn_announcer};

/// Capacity of one connection's queue of outgoing messages.
const CONN_QUEUE: usize = 64;
/// Capacity of the queue of events from all connections to the fetch task.
const EVENT_QUEUE: usize = 64;
/// How often more peers are dialled, and the progress published at least.
const TICK: Duration = Duration::from_secs(1);
/// Largest frame accepted in this phase (length prefix excluded): a bitfield of the largest torrent
/// we accept (2 million pieces is 256 KiB), or a `ut_metadata` piece, with room to spare.
const MAX_FRAME: u32 = 1 << 20;
/// How long a host name in `x.pe` may take to resolve.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);

/// How a metadata fetch is going, for display.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetadataProgress {
    /// Peer addresses known (from the link, trackers and the DHT).
    pub peers_known: usize,
    /// Peers connected now.
    pub peers_connected: usize,
    /// The metadata pieces: how many peers offer them, how many are in, how many in all.
    pub metadata: FetchProgress,
}

/// The result of a metadata fetch: the torrent, and the peers found on the way.
#[derive(Debug, Clone)]
pub struct FetchedMetadata {
    /// The metainfo built from the verified `info` dictionary and the link's trackers (one tier
    /// each, in link order).
    pub metainfo: Metainfo,
    /// Every peer address found, to hand to the torrent ([`crate::TorrentHandle::add_peers`]).
    pub peers: Vec<SocketAddr>,
}

/// Why a metadata fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// The metadata matched the info hash but is not a valid `info` dictionary: the torrent itself
    /// is broken, and fetching again would give the same bytes.
    #[error("the torrent's metadata is invalid: {0}")]
    Invalid(#[source] MetainfoError),
    /// The fetch task ended unexpectedly (a bug: it panicked).
    #[error("metadata fetch task ended unexpectedly")]
    TaskGone,
}

/// A metadata fetch in progress, started by [`crate::Session::fetch_metadata`]. Dropping it stops
/// the fetch.
pub struct MetadataFetchHandle {
    info_hash: InfoHash,
    progress: watch::Receiver<MetadataProgress>,
    task: JoinHandle<Result<FetchedMetadata, MetadataError>>,
}

impl MetadataFetchHandle {
    /// The info hash being fetched.
    pub fn info_hash(&self) -> InfoHash {
        self.info_hash
    }

    /// Progress updates, at most about once a second and on every metadata piece.
    pub fn progress(&self) -> watch::Receiver<MetadataProgress> {
        self.progress.clone()
    }

    /// Waits until the metadata is fetched and verified. There is no overall time limit: a magnet
    /// link's swarm may take long to find; drop the handle to give up.
    ///
    /// Errors: [`MetadataError`].
    pub async fn wait(mut self) -> Result<FetchedMetadata, MetadataError> {
        (&mut self.task)
            .await
            .map_err(|_| MetadataError::TaskGone)?
    }
}

impl Drop for MetadataFetchHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts fetching the metadata of `magnet`.
pub(crate) fn spawn(
    shared: Arc<SessionShared>,
    tracker: TrackerClient,
    magnet: &Magnet,
) -> MetadataFetchHandle {
    let (progress_tx, progress) = watch::channel(MetadataProgress::default());
    let info_hash = magnet.info_hash;
    let task = tokio::spawn(run(shared, tracker, magnet.clone(), progress_tx));
    MetadataFetchHandle {
        info_hash,
        progress,
        task,
    }
}

struct Fetch {
    conns: Connections,
    fetch: MetadataFetch,
    /// After the metadata of a v2 torrent: its piece layers, from the same peers (BEP 52).
    layers: Option<LayerFetch>,
    our_handshake: Bytes,
}

async fn run(
    shared: Arc<SessionShared>,
    tracker: TrackerClient,
    magnet: Magnet,
    progress: watch::Sender<MetadataProgress>,
) -> Result<FetchedMetadata, MetadataError> {
    let tiers: Vec<Vec<String>> = magnet.trackers.iter().map(|t| vec![t.clone()]).collect();
    // Trackers are told 1 byte is left: the size is unknown, and 0 would say we are a seed.
    let (_stats_tx, stats_rx) = watch::channel(TransferStats {
        uploaded: 0,
        downloaded: 0,
        left: 1,
    });
    let announcer = spawn_announcer(
        tracker,
        AnnouncerConfig {
            tiers: tiers.clone(),
            info_hash: magnet.info_hash,
            peer_id: shared.peer_id,
            port: shared.listen_addr.port(),
            num_want: shared.config.num_want,
            crypto: shared.encryption_memory.policy().tracker_crypto(),
            second_hash: false,
        },
        stats_rx,
    );
    let our_handshake = {
        let handshake = ExtensionHandshake {
            messages: vec![(UT_METADATA.to_owned(), OUR_UT_METADATA)],
            listen_port: Some(shared.listen_addr.port()),
            client: Some(swarmer_proto::extension::OUR_CLIENT.to_owned()),
            ..ExtensionHandshake::default()
        };
        let mut bytes = Vec::new();
        Message::Extended {
            id: 0,
            payload: &handshake.encode(),
        }
        .encode(&mut bytes);
        Bytes::from(bytes)
    };
    // The DHT is searched without announcing: until the metadata is in we cannot serve anyone.
    let dht = shared
        .dht
        .clone()
        .map(|h| TorrentDht::new(h, magnet.info_hash, None));
    let conns = Connections::new(
        Arc::clone(&shared),
        ConnectionsConfig {
            info_hash: magnet.info_hash,
            max_frame: MAX_FRAME,
            storage: None,
            dht: shared.dht.is_some(),
            // Metadata exchange has no torrent limits of its own; the session's apply.
            limits: &TorrentLimits::new(None, None),
            send_queue: CONN_QUEUE,
            event_queue: EVENT_QUEUE,
        },
    );
    let mut f = Fetch {
        conns,
        fetch: MetadataFetch::new(magnet.info_hash),
        layers: None,
        our_handshake,
    };
    let mut verified: Option<Vec<u8>> = None;
    let mut sources = PeerSources::new(announcer, dht);
    f.conns.book.add(resolve_peers(&magnet.peers).await);
    f.connect_more();
    let mut batch = Vec::with_capacity(EVENT_QUEUE);
    let mut next_tick = Instant::now() + TICK;
    let metadata = loop {
        let due = match &f.layers {
            Some(layers) => layers.poll_timeout(),
            None => f.fetch.poll_timeout(),
        };
        let mut wake = match due {
            Some(t) => f.conns.clock().tokio_instant(t).min(next_tick),
            None => next_tick,
        };
        if let Some(due) = sources.deadline() {
            wake = wake.min(due);
        }
        tokio::select! {
            n = f.conns.recv(&mut batch, EVENT_QUEUE) => {
                debug_assert!(n > 0, "the connections hold a sender, so the queue never closes");
                for event in batch.drain(..) {
                    f.on_event(event);
                }
            }
            peers = sources.next() => {
                // Empty: a DHT search ended; the loop recomputes its wake (a retry may be due).
                if !peers.is_empty() {
                    f.conns.book.add(peers);
                    f.connect_more();
                }
            }
            _ = tokio::time::sleep_until(wake) => {
                let now = Instant::now();
                match &mut f.layers {
                    Some(layers) => layers.handle_timeout(f.conns.clock().proto_instant(now)),
                    None => f.fetch.handle_timeout(f.conns.clock().proto_instant(now)),
                }
                if now >= next_tick {
                    next_tick = now + TICK;
                    f.connect_more();
                    if f.conns.running_dry(1, now) {
                        sources.dry(now);
                    }
                }
                sources.poll(now);
            }
        }
        f.flush();
        let now = MetadataProgress {
            peers_known: f.conns.book.len(),
            peers_connected: f.conns.established(),
            metadata: f.fetch.progress(),
        };
        // Watchers wake only when something they show changed.
        progress.send_if_modified(|shown| std::mem::replace(shown, now) != now);
        if let Some(metadata) = f.fetch.take_metadata() {
            let info = Info::from_bytes(&metadata).map_err(MetadataError::Invalid)?;
            // A v2-only torrent's piece layers are not in its metadata: ask the same peers. A
            // hybrid's SHA-1s check every piece, and its peers may not speak v2, so it starts now.
            let needs_layers = info.version() == MetaVersion::V2;
            match LayerFetch::new(&info).filter(|_| needs_layers) {
                Some(mut layers) => {
                    tracing::info!("metadata verified; fetching the v2 piece layers (BEP 52)");
                    let now = f.conns.clock().now();
                    for conn in f.conns.established_ids() {
                        layers.add_peer(conn, now);
                    }
                    f.layers = Some(layers);
                    verified = Some(metadata);
                    f.flush();
                }
                None => break metadata,
            }
        }
        if f.layers.as_ref().is_some_and(LayerFetch::is_complete) {
            break verified
                .take()
                .expect("layers are fetched after the metadata");
        }
    };
    tracing::info!(
        bytes = metadata.len(),
        peers = f.conns.len(),
        "metadata fetched and verified"
    );
    let peers: Vec<SocketAddr> = f.conns.book.known().collect();
    // Dropping the connections' command senders closes them.
    f.conns.drain();
    sources.stop().await;
    let mut metainfo = match &f.layers {
        Some(layers) => Metainfo::from_info_bytes_and_layers(&metadata, tiers, &layers.layers()),
        None => Metainfo::from_info_bytes(&metadata, tiers),
    }
    .map_err(MetadataError::Invalid)?;
    // The link's `ws=` web seeds (BEP 19) serve the content once the metadata is known.
    metainfo.url_list = magnet.web_seeds.clone();
    Ok(FetchedMetadata { metainfo, peers })
}

impl Fetch {
    fn connect_more(&mut self) {
        self.conns.connect_more(Instant::now(), |_| true);
    }

    fn on_event(&mut self, event: ConnEvent) {
        let now = self.conns.clock().now();
        match event {
            ConnEvent::Handshaken {
                conn, handshake, ..
            } => {
                let Some(c) = self.conns.get(conn) else {
                    return;
                };
                if !handshake.supports_extensions() {
                    tracing::debug!(addr = %c.addr, "peer lacks the extension protocol (BEP 10); cannot fetch metadata from it");
                    self.close(conn, false);
                    return;
                }
                self.conns.establish(conn);
                let hello = Outbound::Bytes(self.our_handshake.clone());
                if self.conns.send(conn, hello).is_err() {
                    self.close(conn, false);
                } else if let Some(layers) = &mut self.layers {
                    layers.add_peer(conn, now);
                }
            }
            ConnEvent::Frames { conn, frames } => {
                for frame in frames {
                    let Some(addr) = self.conns.get(conn).map(|c| c.addr) else {
                        return;
                    };
                    let message = match Message::decode_frame(&frame) {
                        Ok(message) => message,
                        Err(e) => {
                            tracing::debug!(%addr, "malformed message: {e}");
                            self.close(conn, true);
                            return;
                        }
                    };
                    match message {
                        Message::Extended { id: 0, payload } => {
                            match ExtensionHandshake::decode(payload) {
                                Ok(h) => self.fetch.handle_handshake(conn, &h, now),
                                Err(e) => {
                                    tracing::debug!(%addr, "bad extension handshake: {e}");
                                    self.close(conn, true);
                                }
                            }
                        }
                        Message::Extended {
                            id: OUR_UT_METADATA,
                            payload,
                        } => {
                            if let Err(fault) = self.fetch.handle_message(conn, payload, now) {
                                tracing::info!(%addr, "dropping peer: {fault}");
                                self.close(conn, true);
                            }
                        }
                        Message::Unknown { id, payload }
                            if (HASH_REQUEST..=HASH_REJECT).contains(&id) =>
                        {
                            let Some(layers) = &mut self.layers else {
                                continue;
                            };
                            let result = HashMessage::decode(id, payload)
                                .map_err(|e| e.to_string())
                                .and_then(|m| {
                                    layers
                                        .handle_message(conn, &m, now)
                                        .map_err(|e| e.to_string())
                                });
                            if let Err(e) = result {
                                tracing::info!(%addr, "dropping peer: {e}");
                                self.close(conn, true);
                            }
                        }
                        // Bitfields, haves and the rest matter once the torrent runs.
                        _ => {}
                    }
                }
            }
            ConnEvent::Sent { .. } => {}
            ConnEvent::Closed { conn, error } => {
                if self.conns.closed(conn, error.as_ref()).is_some() {
                    self.fetch.remove_peer(conn);
                    if let Some(layers) = &mut self.layers {
                        layers.remove_peer(conn, now);
                    }
                }
            }
        }
    }

    /// Sends what the fetch decided and disconnects the peers it gave up on.
    fn flush(&mut self) {
        let outgoing: Vec<_> = self.fetch.drain_outgoing().collect();
        for out in outgoing {
            let mut bytes = Vec::new();
            Message::Extended {
                id: out.id,
                payload: &out.payload,
            }
            .encode(&mut bytes);
            if self.conns.get(out.peer).is_some()
                && self
                    .conns
                    .send(out.peer, Outbound::Bytes(Bytes::from(bytes)))
                    .is_err()
            {
                self.close(out.peer, true);
            }
        }
        let hash_messages: Vec<_> = self
            .layers
            .as_mut()
            .map(|l| l.drain_outgoing().collect())
            .unwrap_or_default();
        for (conn, message) in hash_messages {
            let mut body = Vec::new();
            message.encode(&mut body);
            let mut bytes = (body.len() as u32).to_be_bytes().to_vec();
            bytes.extend_from_slice(&body);
            if self.conns.get(conn).is_some()
                && self
                    .conns
                    .send(conn, Outbound::Bytes(Bytes::from(bytes)))
                    .is_err()
            {
                self.close(conn, true);
            }
        }
        while let Some((conn, fault)) = self.fetch.poll_fault() {
            if let Some(c) = self.conns.get(conn) {
                tracing::info!(addr = %c.addr, "dropping peer: {fault}");
            }
            self.close(conn, true);
        }
    }

    fn close(&mut self, conn: ConnId, fault: bool) {
        if self.conns.close(conn, fault).is_some() {
            self.fetch.remove_peer(conn);
            if let Some(layers) = &mut self.layers {
                layers.remove_peer(conn, self.conns.clock().now());
            }
        }
    }
}

/// The addresses of a magnet link's `x.pe` peers (BEP 9); host names are resolved (each within 10 s),
/// and those that fail are logged and skipped.
pub async fn resolve_peers(peers: &[MagnetPeer]) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for peer in peers {
        match peer {
            MagnetPeer::Addr(addr) => out.push(*addr),
            MagnetPeer::Host { host, port } => {
                let lookup = tokio::net::lookup_host((host.as_str(), *port));
                match tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await {
                    Ok(Ok(addrs)) => out.extend(addrs),
                    Ok(Err(e)) => tracing::warn!("cannot resolve peer {host}:{port}: {e}"),
                    Err(_) => tracing::warn!("resolving peer {host}:{port} timed out"),
                }
            }
        }
    }
    out
}
