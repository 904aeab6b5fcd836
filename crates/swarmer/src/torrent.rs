//! The owner task of one torrent: the only place its state lives. It feeds the sans-IO engine
//! (`swarmer_proto::torrent`) with frames from connection tasks, verification results, tracker peers and
//! the clock, and carries out the engine's actions. Hashing and disk writes run on the blocking pool.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use swarmer_proto::metainfo::Metainfo;
use swarmer_proto::torrent::{Action, Event, PeerInfo, PeerKey, Torrent};
use swarmer_proto::wire::{Handshake, Message};
use swarmer_proto::{PieceIndex, digest};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::peer::{self, ConnContext, ConnEvent, ConnId};
use crate::peer_book::PeerBook;
use crate::session::SessionShared;
use crate::storage::{Storage, StorageError};
use crate::tracker::{AnnouncerHandle, TransferStats};

/// Where a torrent is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TorrentState {
    /// Downloading pieces.
    Downloading,
    /// Every piece is verified and flushed to disk.
    Complete,
    /// Stopped by a local error (disk full, permission); the message says which file and what failed.
    Failed(String),
    /// Stopped on request.
    Stopped,
}

/// A snapshot of a torrent's progress, published on every change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// The torrent's state.
    pub state: TorrentState,
    /// Total content size in bytes (padding files included).
    pub total_bytes: u64,
    /// Bytes in verified pieces.
    pub verified_bytes: u64,
    /// Payload bytes received from peers, including discarded ones.
    pub downloaded_bytes: u64,
    /// Payload bytes received that were discarded (duplicates or failed pieces).
    pub wasted_bytes: u64,
    /// Payload bytes sent to peers.
    pub uploaded_bytes: u64,
    /// Download rate over the last second, bytes/s.
    pub download_rate: u64,
    /// Upload rate over the last second, bytes/s.
    pub upload_rate: u64,
    /// Connected peers (handshake done).
    pub peers: usize,
    /// Verified pieces.
    pub pieces_have: u32,
    /// Pieces in the torrent.
    pub piece_count: u32,
    /// Pieces that failed their hash check so far.
    pub hash_failures: u32,
}

/// A failure that stops a torrent: local problems only (peer problems never fail a torrent).
#[derive(Debug, thiserror::Error)]
pub enum TorrentError {
    /// Reading or writing the torrent's files failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The torrent's task ended unexpectedly (a bug: it panicked).
    #[error("torrent task ended unexpectedly")]
    TaskGone,
}

pub(crate) enum Command {
    Incoming {
        stream: TcpStream,
        buf: BytesMut,
        handshake: Handshake,
        addr: SocketAddr,
    },
    AddPeers(Vec<SocketAddr>),
    Stop(oneshot::Sender<()>),
}

/// Capacity of the per-connection queue of outgoing byte batches; a peer that lets it fill up is not
/// reading and is disconnected.
const CONN_QUEUE: usize = 256;
/// Capacity of the queue of events from all connections to the owner task. An event carries at most one
/// socket read (256 KiB), so this bounds buffered input at 16 MiB per torrent; a full queue stops the
/// connection tasks from reading, which pushes back on the peers through TCP.
const EVENT_QUEUE: usize = 64;
/// How often the owner looks for new peers to dial.
const CONNECT_INTERVAL: Duration = Duration::from_secs(1);

struct Conn {
    addr: SocketAddr,
    key: Option<PeerKey>,
    commands: mpsc::Sender<Bytes>,
    outgoing: bool,
}

pub(crate) struct TorrentTask {
    pub(crate) shared: Arc<SessionShared>,
    pub(crate) metainfo: Arc<Metainfo>,
    pub(crate) storage: Arc<Storage>,
    /// Held while writing a verified piece. Hashing runs in parallel; writes to one torrent's files go one
    /// at a time, because concurrent writers to a file only contend on its inode lock in the kernel
    /// (measured: ~8 % of CPU spent spinning on it with parallel writes).
    pub(crate) write_lock: Arc<std::sync::Mutex<()>>,
    pub(crate) engine: Torrent,
    /// Taken at shutdown to announce `stopped`.
    pub(crate) announcer: Option<AnnouncerHandle>,
    pub(crate) stats_tx: watch::Sender<TransferStats>,
    pub(crate) progress_tx: watch::Sender<Progress>,
    pub(crate) commands: mpsc::Receiver<Command>,
}

struct Running {
    t: TorrentTask,
    ctx: ConnContext,
    events_rx: mpsc::Receiver<ConnEvent>,
    conns: HashMap<ConnId, Conn>,
    by_key: HashMap<PeerKey, ConnId>,
    next_conn: ConnId,
    book: PeerBook,
    verify: JoinSet<(PieceIndex, Result<bool, StorageError>, Vec<u8>)>,
    /// Pieces waiting for a verification slot; at most `verify_slots` run at once, so hashing never has
    /// more threads than there are cores to run them.
    verify_queue: std::collections::VecDeque<(PieceIndex, Vec<u8>)>,
    verify_slots: usize,
    out: HashMap<ConnId, Vec<u8>>,
    hash_failures: u32,
    announced_complete: bool,
    state: TorrentState,
}

impl TorrentTask {
    pub(crate) async fn run(self) -> Result<(), TorrentError> {
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
        let piece_count = self.engine.layout().piece_count() as usize;
        let ctx = ConnContext {
            info_hash: self.metainfo.info_hash,
            our_id: self.shared.peer_id,
            bind_ip: self.shared.config.bind_ip,
            events: events_tx,
            // A block message, or a bitfield, or an extension message of up to 1 MiB, whichever is larger.
            max_frame: (piece_count.div_ceil(8) as u32 + 1)
                .max(swarmer_proto::BLOCK_SIZE + 9)
                .max(1 << 20),
            connect_timeout: self.shared.config.connect_timeout,
            handshake_timeout: self.shared.config.handshake_timeout,
        };
        let mut own = vec![self.shared.listen_addr];
        if let Some(ip) = self.shared.config.bind_ip {
            own.push(SocketAddr::new(ip, self.shared.listen_addr.port()));
        }
        let state = if self.engine.is_complete() {
            TorrentState::Complete
        } else {
            TorrentState::Downloading
        };
        let mut r = Running {
            book: PeerBook::new(own),
            t: self,
            ctx,
            events_rx,
            conns: HashMap::new(),
            by_key: HashMap::new(),
            next_conn: 0,
            verify: JoinSet::new(),
            verify_queue: Default::default(),
            verify_slots: std::thread::available_parallelism().map_or(2, |n| n.get()),
            out: HashMap::new(),
            hash_failures: 0,
            announced_complete: false,
            state,
        };
        r.run().await
    }
}

impl Running {
    async fn run(&mut self) -> Result<(), TorrentError> {
        let mut batch = Vec::with_capacity(64);
        let mut next_connect = Instant::now();
        self.publish();
        let result = loop {
            let wake = match self.t.engine.poll_timeout() {
                Some(t) => Instant::from_std(t).min(next_connect),
                None => next_connect,
            };
            tokio::select! {
                n = self.events_rx.recv_many(&mut batch, 64) => {
                    debug_assert!(n > 0, "the owner holds a sender, so the channel never closes");
                    for event in batch.drain(..) {
                        self.on_conn_event(event);
                    }
                }
                Some(joined) = self.verify.join_next() => {
                    let (piece, result, buffer) = joined.expect("verification task panicked");
                    match result {
                        Ok(ok) => self.t.engine.handle_piece_verified(piece, ok, buffer, std::time::Instant::now()),
                        Err(e) => break Err(TorrentError::Storage(e)),
                    }
                }
                Some(peers) = next_peers(&mut self.t.announcer) => {
                    self.book.add(peers);
                    self.connect_more();
                }
                _ = tokio::time::sleep_until(wake) => {
                    let now = Instant::now();
                    self.t.engine.handle_timeout(now.into_std());
                    if now >= next_connect {
                        next_connect = now + CONNECT_INTERVAL;
                        self.connect_more();
                    }
                }
                command = self.t.commands.recv() => match command {
                    Some(Command::Incoming { stream, buf, handshake, addr }) => self.accept(stream, buf, handshake, addr),
                    Some(Command::AddPeers(peers)) => {
                        self.book.add(peers);
                        self.connect_more();
                    }
                    Some(Command::Stop(done)) => {
                        self.state = TorrentState::Stopped;
                        let _ = done.send(());
                        break Ok(());
                    }
                    None => { self.state = TorrentState::Stopped; break Ok(()); }
                },
            }
            self.drain_engine();
            if let Err(e) = self.finish_if_complete().await {
                break Err(e);
            }
            self.publish();
        };
        if let Err(e) = &result {
            self.state = TorrentState::Failed(e.to_string());
        }
        self.shutdown().await;
        self.publish();
        result
    }

    fn on_conn_event(&mut self, event: ConnEvent) {
        let now = std::time::Instant::now();
        match event {
            ConnEvent::Handshaken { conn, handshake } => {
                let Some(c) = self.conns.get_mut(&conn) else {
                    return;
                };
                if self.t.engine.is_banned(c.addr.ip()) {
                    self.close(conn, true);
                    return;
                }
                // We always offer both extensions, so each is in use exactly when the peer offers it.
                let info = PeerInfo {
                    addr: c.addr,
                    fast: handshake.supports_fast(),
                    extensions: handshake.supports_extensions(),
                };
                tracing::debug!(addr = %c.addr, peer_id = ?handshake.peer_id, "peer connected");
                let key = self.t.engine.add_peer(info, now);
                c.key = Some(key);
                self.by_key.insert(key, conn);
                self.book.connected(c.addr);
            }
            ConnEvent::Frames { conn, frames } => {
                let Some(key) = self.conns.get(&conn).and_then(|c| c.key) else {
                    return;
                };
                for frame in frames {
                    match Message::decode(&frame, u32::MAX) {
                        Ok(Some((message, _))) => self.t.engine.handle_message(key, message, now),
                        Ok(None) => unreachable!("the connection task sends whole frames"),
                        Err(e) => {
                            tracing::debug!(addr = %self.conns[&conn].addr, "malformed message: {e}");
                            self.close(conn, true);
                            return;
                        }
                    }
                }
            }
            ConnEvent::Closed { conn, error } => {
                if let Some(c) = self.conns.get(&conn) {
                    match &error {
                        Some(e) => tracing::debug!(addr = %c.addr, "connection closed: {e}"),
                        None => tracing::debug!(addr = %c.addr, "connection closed by peer"),
                    }
                }
                self.close(conn, error.as_ref().is_some_and(|e| e.is_peer_fault()));
            }
        }
    }

    /// Forgets connection `conn` everywhere: the connection table, pending output, the engine (its
    /// requests go back to the picker) and the peer book (`fault`: it ended through the peer's fault).
    /// Dropping the command sender ends the connection's writer, and with it the connection.
    fn close(&mut self, conn: ConnId, fault: bool) {
        if let Some(c) = self.conns.remove(&conn) {
            self.out.remove(&conn);
            if let Some(key) = c.key {
                self.by_key.remove(&key);
                self.t.engine.remove_peer(key);
            }
            self.book
                .disconnected(c.addr, c.key.is_some(), fault, c.outgoing);
        }
    }

    fn drain_engine(&mut self) {
        while let Some(action) = self.t.engine.poll_action() {
            match action {
                Action::Send { peer, message } => {
                    if let Some(conn) = self.by_key.get(&peer) {
                        message
                            .to_message()
                            .encode(self.out.entry(*conn).or_default());
                    }
                }
                Action::Disconnect { peer, fault } => {
                    if let Some(conn) = self.by_key.remove(&peer) {
                        if let Some(c) = self.conns.get(&conn) {
                            tracing::info!(addr = %c.addr, "disconnecting peer: {fault}");
                        }
                        self.close(conn, true);
                    }
                }
                Action::VerifyPiece { piece, data } => self.verify_queue.push_back((piece, data)),
            }
        }
        while self.verify.len() < self.verify_slots {
            let Some((piece, data)) = self.verify_queue.pop_front() else {
                break;
            };
            self.spawn_verify(piece, data);
        }
        let out = std::mem::take(&mut self.out);
        for (conn, bytes) in out {
            let Some(c) = self.conns.get(&conn) else {
                continue;
            };
            if c.commands.try_send(Bytes::from(bytes)).is_err() {
                // Full: the peer is not reading what we send. Closed: it is already going away.
                tracing::debug!(addr = %c.addr, "send queue full, disconnecting");
                self.close(conn, true);
            }
        }
        while let Some(event) = self.t.engine.poll_event() {
            match event {
                Event::PieceVerified(_) => {}
                Event::HashFailed { piece, peers } => {
                    self.hash_failures += 1;
                    tracing::warn!(
                        piece = piece.get(),
                        ?peers,
                        "piece failed its hash check; downloading it again"
                    );
                }
                Event::Banned(ip) => {
                    tracing::warn!(%ip, "banning peer after repeated bad data");
                    self.book.ban(ip);
                }
                Event::Complete => {}
            }
        }
    }

    fn spawn_verify(&mut self, piece: PieceIndex, data: Vec<u8>) {
        let expected = *self.t.metainfo.info.piece_hash(piece);
        let storage = Arc::clone(&self.t.storage);
        let write_lock = Arc::clone(&self.t.write_lock);
        self.verify.spawn_blocking(move || {
            let ok = digest::sha1(&data) == expected;
            let result = if ok {
                let _writing = write_lock.lock().unwrap_or_else(|e| e.into_inner());
                storage.write(piece, 0, &data).map(|()| true)
            } else {
                Ok(false)
            };
            (piece, result, data)
        });
    }

    async fn finish_if_complete(&mut self) -> Result<(), TorrentError> {
        if self.state != TorrentState::Downloading || !self.t.engine.is_complete() {
            return Ok(());
        }
        // Nothing counts as downloaded before it is on disk.
        let storage = Arc::clone(&self.t.storage);
        tokio::task::spawn_blocking(move || storage.sync_all())
            .await
            .map_err(|_| TorrentError::TaskGone)??;
        self.state = TorrentState::Complete;
        if !self.announced_complete {
            self.announced_complete = true;
            if let Some(a) = &self.t.announcer {
                a.completed();
            }
        }
        // A finished download needs no seeders; uploading to leechers arrives with seeding support.
        let conns: Vec<ConnId> = self.conns.keys().copied().collect();
        for conn in conns {
            self.close(conn, false);
        }
        Ok(())
    }

    fn connect_more(&mut self) {
        if self.state != TorrentState::Downloading {
            return;
        }
        let limit = self.t.shared.config.max_peers_per_torrent;
        let now = Instant::now();
        let connecting = self.conns.values().filter(|c| c.key.is_none()).count();
        let mut room = limit.saturating_sub(self.conns.len()).min(
            self.t
                .shared
                .config
                .max_half_open
                .saturating_sub(connecting),
        );
        while room > 0 {
            let Some(addr) = self.book.next_to_dial(now) else {
                break;
            };
            if self.t.engine.is_banned(addr.ip()) {
                continue;
            }
            room -= 1;
            let (tx, rx) = mpsc::channel(CONN_QUEUE);
            let conn = self.new_conn(addr, tx, true);
            tokio::spawn(peer::run_outgoing(conn, addr, self.ctx.clone(), rx));
        }
        if self.conns.len() < limit / 4 && self.book.dialable(now) == 0 {
            if let Some(a) = &self.t.announcer {
                a.want_peers();
            }
        }
    }

    fn accept(&mut self, stream: TcpStream, buf: BytesMut, handshake: Handshake, addr: SocketAddr) {
        let full = self.conns.len() >= self.t.shared.config.max_peers_per_torrent;
        if full || self.t.engine.is_banned(addr.ip()) || self.state != TorrentState::Downloading {
            return;
        }
        let (tx, rx) = mpsc::channel(CONN_QUEUE);
        let conn = self.new_conn(addr, tx, false);
        tokio::spawn(peer::run_incoming(
            conn,
            stream,
            buf,
            handshake,
            self.ctx.clone(),
            rx,
        ));
    }

    fn new_conn(
        &mut self,
        addr: SocketAddr,
        commands: mpsc::Sender<Bytes>,
        outgoing: bool,
    ) -> ConnId {
        let conn = self.next_conn;
        self.next_conn += 1;
        self.conns.insert(
            conn,
            Conn {
                addr,
                key: None,
                commands,
                outgoing,
            },
        );
        conn
    }

    fn publish(&mut self) {
        let s = self.t.engine.stats();
        let layout = self.t.engine.layout();
        let progress = Progress {
            state: self.state.clone(),
            total_bytes: layout.total_length(),
            verified_bytes: s.verified,
            downloaded_bytes: s.downloaded,
            wasted_bytes: s.wasted,
            uploaded_bytes: 0,
            download_rate: s.download_rate,
            upload_rate: 0,
            peers: s.peers,
            pieces_have: self.t.engine.have().count_ones() as u32,
            piece_count: layout.piece_count(),
            hash_failures: self.hash_failures,
        };
        self.t.progress_tx.send_if_modified(|p| {
            let changed = *p != progress;
            *p = progress;
            changed
        });
        let transfer = TransferStats {
            uploaded: 0,
            downloaded: s.downloaded,
            left: s.left,
        };
        self.t.stats_tx.send_if_modified(|t| {
            let changed = *t != transfer;
            *t = transfer;
            changed
        });
    }

    async fn shutdown(&mut self) {
        self.conns.clear();
        self.by_key.clear();
        // Pieces already complete are verified and written, so no downloaded data is lost.
        while let Some((piece, data)) = self.verify_queue.pop_front() {
            self.spawn_verify(piece, data);
        }
        while let Some(joined) = self.verify.join_next().await {
            if let Ok((piece, Ok(ok), buffer)) = joined {
                self.t
                    .engine
                    .handle_piece_verified(piece, ok, buffer, std::time::Instant::now());
            }
        }
        let storage = Arc::clone(&self.t.storage);
        let _ = tokio::task::spawn_blocking(move || storage.sync_all()).await;
        // Trackers learn we left (BEP 3 `event=stopped`); bounded by the announcer's stop budget.
        if let Some(announcer) = self.t.announcer.take() {
            announcer.stop().await;
        }
    }
}

async fn next_peers(announcer: &mut Option<AnnouncerHandle>) -> Option<Vec<SocketAddr>> {
    match announcer {
        Some(a) => a.next_peers().await,
        None => None,
    }
}
