//! The owner task of a running torrent: the only place its state lives. It feeds the sans-IO engine
//! (`swarmer_proto::torrent`) with frames from its connections, verification results, "block sent"
//! reports, peers from its sources and the clock, and carries out the engine's actions. Hashing and
//! disk writes run on the blocking pool; connection tasks read uploaded blocks.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use swarmer_proto::hashes::{self, HashMessage};
use swarmer_proto::merkle::PieceCheck;
use swarmer_proto::torrent::{
    Action, Config as EngineConfig, Event, PeerInfo, PeerKey, Requested, Torrent,
};
use swarmer_proto::wire::Message;
use swarmer_proto::{Bitfield, FilePriority, PieceIndex};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::command::Command;
use super::progress::{Progress, TorrentState};
use super::resume_saver::{ResumeSaver, Snapshot};
use super::task::TorrentTask;
use super::web_seeds::{WebEvent, WebSeeds};
use super::wishes::{Facts, desired};
use crate::check::hashing_threads;
use crate::clock::Clock;
use crate::connections::{Connections, ConnectionsConfig};
use crate::dht::TorrentDht;
use crate::error::TorrentError;
use crate::peer::{ConnError, ConnEvent, ConnId, Incoming, Outbound};
use crate::rate::LimiterPair;
use crate::sources::PeerSources;
use crate::storage::StorageError;
use crate::tracker::{AnnouncerConfig, TransferStats, spawn_announcer};

/// Capacity of the per-connection queue of outgoing byte batches; a peer that lets it fill up is not
/// reading and is disconnected.
const CONN_QUEUE: usize = 256;
/// Capacity of the queue of events from all connections to the owner task. An event carries at most one
/// socket read (64 KiB), so this bounds buffered input at 2 MiB per torrent; a full queue stops the
/// connection tasks from reading, which pushes back on the peers through TCP.
const EVENT_QUEUE: usize = 32;
/// BEP 52 leaf-layer answers computed at once (each reads and hashes one piece); requests beyond
/// them are rejected.
const LEAF_ANSWERS: usize = 4;
/// How often the owner looks for new peers to dial.
const CONNECT_INTERVAL: Duration = Duration::from_secs(1);

struct Running {
    t: TorrentTask,
    engine: Torrent,
    /// Trackers and the DHT.
    sources: PeerSources,
    stats_tx: watch::Sender<TransferStats>,
    conns: Connections,
    /// The engine's key of each established connection, and back.
    keys: HashMap<ConnId, PeerKey>,
    by_key: HashMap<PeerKey, ConnId>,
    verify: JoinSet<(PieceIndex, Result<PieceCheck, StorageError>, Vec<u8>)>,
    /// BEP 52 leaf-layer answers being computed from pieces on disk, at most [`LEAF_ANSWERS`].
    leaf_answers: JoinSet<(ConnId, Vec<u8>)>,
    /// Pieces waiting for a verification slot; at most `verify_slots` run at once, so hashing never has
    /// more threads than there are cores to run them.
    verify_queue: VecDeque<(PieceIndex, Vec<u8>)>,
    verify_slots: usize,
    out: HashMap<ConnId, Vec<Pending>>,
    hash_failures: u32,
    announced_complete: bool,
    state: TorrentState,
    /// When seeding began, for [`crate::SeedLimits::time`].
    seeding_since: Option<Instant>,
    /// A local error met by a connection task (reading a block to upload).
    failure: Option<StorageError>,
    /// Saves fast-resume state, if the torrent keeps one.
    resume: Option<ResumeSaver>,
    /// The web seeds' HTTP side.
    web: WebSeeds,
    /// Verified pieces last published to readers.
    published_have: Option<usize>,
    /// A piece was verified since the deadlines were last worked out (a sequential window moves).
    deadlines_stale: bool,
    /// Each piece's priority, and each file's `(first byte, length, wanted)`, for deadlines.
    piece_priorities: Vec<FilePriority>,
    files: Vec<(u64, u64, bool)>,
}

/// Output for one connection gathered while draining the engine, in order.
enum Pending {
    Bytes(Vec<u8>),
    Blocks(Vec<Requested>),
}

/// Runs a torrent: checks the data on disk as its options say, then serves peers until it is
/// stopped or fails with a local error.
pub(crate) async fn run(mut task: TorrentTask) -> Result<(), TorrentError> {
    match task.check().await {
        Ok(Some((have, earlier))) => start(task, have, earlier).run().await,
        Ok(None) => {
            task.publish_state(TorrentState::Stopped);
            Ok(())
        }
        Err(e) => {
            task.publish_state(TorrentState::Failed(e.to_string()));
            Err(e)
        }
    }
}

/// The running torrent from the pieces in `have`: its engine, peer sources and connections,
/// ready for [`Running::run`].
///
/// Not async, and boxed: every local an async fn builds its state from is laid out in its future
/// beside that state (moved or not), which made each torrent's task about 9 KiB; this way the task
/// holds the box and the loop's own future (scenario f, 10,000 torrents).
fn start(mut t: TorrentTask, have: Bitfield, earlier: (u64, u64)) -> Box<Running> {
    let shared = Arc::clone(&t.shared);
    let metainfo = Arc::clone(&t.metainfo);
    // A private torrent's metadata is never served and its peers never exchanged (BEP 27).
    let private = metainfo.info.private;
    let engine_config = EngineConfig {
        listen_port: Some(shared.listen_addr.port()),
        metadata: (!private).then(|| Arc::clone(&metainfo.info_bytes)),
        pex: shared.config.pex && !private,
        private,
        ..shared.config.engine.clone()
    };
    let mut engine = Torrent::new(
        metainfo.info.layout.clone(),
        metainfo.info_hash,
        have,
        engine_config,
        rand::random(),
    );
    if !t.options.file_priorities.is_empty() {
        engine.set_piece_priorities(&t.piece_priorities(), shared.clock.now());
    }
    let stats = engine.stats();
    let (stats_tx, stats_rx) = watch::channel(TransferStats {
        uploaded: 0,
        downloaded: 0,
        left: stats.left,
    });
    let announce = |info_hash, second_hash| {
        spawn_announcer(
            t.tracker.clone(),
            AnnouncerConfig {
                tiers: metainfo.announce_tiers.clone(),
                info_hash,
                peer_id: shared.peer_id,
                port: shared.listen_addr.port(),
                num_want: shared.config.num_want,
                crypto: shared.encryption_memory.policy().tracker_crypto(),
                second_hash,
            },
            stats_rx.clone(),
        )
    };
    let announcer = announce(metainfo.info_hash, false);
    // A hybrid torrent is announced under its v2 info hash too (BEP 52), truncated to 20 bytes.
    let second_hash = metainfo.wire_hashes().get(1).copied();
    let second_announcer = second_hash.map(|hash| announce(hash, true));
    let piece_count = engine.layout().piece_count() as usize;
    let mut conns = Connections::new(
        Arc::clone(&shared),
        ConnectionsConfig {
            info_hash: metainfo.info_hash,
            // A block message, or a bitfield, or an extension message of up to 1 MiB, whichever is
            // larger.
            max_frame: (piece_count.div_ceil(8) as u32 + 1)
                .max(swarmer_proto::BLOCK_SIZE + 9)
                .max(1 << 20),
            storage: Some(Arc::clone(&t.storage)),
            dht: shared.dht.is_some() && !metainfo.info.private,
            limits: &t.limits,
            send_queue: CONN_QUEUE,
            event_queue: EVENT_QUEUE,
        },
    );
    conns.book.add(std::mem::take(&mut t.early_peers));
    // BEP 27: a private torrent finds peers through its trackers only.
    let dht_for = |info_hash| {
        shared
            .dht
            .clone()
            .filter(|_| !metainfo.info.private)
            .map(|h| TorrentDht::new(h, info_hash, Some(shared.listen_addr.port())))
    };
    let dht = dht_for(metainfo.info_hash);
    let mut sources = PeerSources::new(announcer, dht);
    if let (Some(hash), Some(announcer)) = (second_hash, second_announcer) {
        sources = sources.with_second(announcer, dht_for(hash));
    }
    let (state, seeding_since) = match (engine.is_finished(), t.options.seed.is_some()) {
        (false, _) => (TorrentState::Downloading, None),
        (true, true) => (TorrentState::Seeding, Some(Instant::now())),
        (true, false) => (TorrentState::Complete, None),
    };
    // After hashing, save at once: a restart then needs no hashing, even after a crash.
    let hashed = t.progress_tx.borrow().checked_pieces > 0;
    let resume = t
        .options
        .resume
        .clone()
        .map(|store| ResumeSaver::new(store, earlier, hashed, t.loaded_state.take()));
    let web = WebSeeds::new(
        Arc::clone(&metainfo),
        t.tracker.config().bind,
        (
            shared.config.connect_timeout,
            shared.config.web_seed_timeout,
        ),
        LimiterPair {
            torrent: Arc::clone(&t.limits.download),
            session: Arc::clone(&shared.download_limit),
        },
    );
    let mut r = Box::new(Running {
        web,
        resume,
        t,
        engine,
        sources,
        stats_tx,
        conns,
        keys: HashMap::new(),
        by_key: HashMap::new(),
        verify: JoinSet::new(),
        leaf_answers: JoinSet::new(),
        verify_queue: VecDeque::new(),
        verify_slots: hashing_threads(),
        out: HashMap::new(),
        hash_failures: 0,
        announced_complete: false,
        state,
        seeding_since,
        failure: None,
        published_have: None,
        deadlines_stale: true,
        piece_priorities: Vec::new(),
        files: Vec::new(),
    });
    r.note_priorities();
    r
}

impl Running {
    /// The session's clock.
    fn clock(&self) -> Clock {
        self.t.shared.clock
    }

    async fn run(&mut self) -> Result<(), TorrentError> {
        // Grows to what a busy torrent needs; an idle one (most, in a daemon) never allocates it.
        let mut batch = Vec::new();
        // Dialling happens at most once a CONNECT_INTERVAL, and only when the book or the
        // connections say there is something to dial: an idle torrent sleeps until a timer of its
        // own is due (engine tick, resume save, DHT, seeding limit) or a peer event arrives.
        let mut last_connect = Instant::now() - CONNECT_INTERVAL;
        self.start_web_seeds();
        self.drain_engine();
        self.publish();
        let result = loop {
            let dial = self
                .serving()
                .then(|| self.conns.dial_due())
                .flatten()
                .map(|due| due.max(last_connect + CONNECT_INTERVAL));
            let tick = self
                .engine
                .poll_timeout()
                .map(|t| self.clock().tokio_instant(t));
            let saver = self.resume.as_ref().and_then(ResumeSaver::next);
            let wake = [
                tick,
                dial,
                self.seed_deadline(),
                saver,
                self.sources.deadline(),
            ]
            .into_iter()
            .flatten()
            .min();
            tokio::select! {
                n = self.conns.recv(&mut batch, 64) => {
                    debug_assert!(n > 0, "the connections hold a sender, so the queue never closes");
                    for event in batch.drain(..) {
                        self.on_conn_event(event);
                    }
                    self.resume_changed();
                }
                Some(joined) = self.verify.join_next() => {
                    self.resume_changed();
                    let (piece, result, buffer) = joined.expect("verification task panicked");
                    match result {
                        Ok(check) => self.engine.handle_piece_checked(piece, check, buffer, self.clock().now()),
                        Err(e) => break Err(TorrentError::Storage(e)),
                    }
                }
                Some(joined) = self.leaf_answers.join_next() => {
                    if let Ok((conn, reply)) = joined {
                        if self.conns.send(conn, Outbound::Bytes(Bytes::from(reply))).is_err() {
                            self.close(conn, true);
                        }
                    }
                }
                event = self.web.recv() => {
                    self.resume_changed();
                    let now = self.clock().now();
                    match event {
                        WebEvent::Data(seed, bytes) => self.engine.handle_web_data(seed, &bytes, now),
                        WebEvent::End(seed, end, error) => {
                            self.engine.handle_web_fetch_end(seed, end, now);
                            let retry_in = self
                                .engine
                                .web_seed_status(seed)
                                .and_then(|s| s.retry_at)
                                .map(|at| at.saturating_duration_since(now));
                            self.web.fetch_ended(seed, error, retry_in);
                        }
                    }
                }
                peers = self.sources.next() => {
                    // Empty: a DHT search ended; the loop recomputes its wake (a retry may be due).
                    if !peers.is_empty() {
                        self.conns.book.add(peers);
                        self.connect_more();
                    }
                }
                () = sleep_until(wake) => {
                    let now = Instant::now();
                    self.engine.handle_timeout(self.clock().proto_instant(now));
                    if dial.is_some_and(|due| now >= due) {
                        last_connect = now;
                        self.connect_more();
                    }
                    if saver.is_some_and(|due| now >= due) {
                        self.start_resume_save();
                    }
                    self.sources.poll(now);
                }
                () = self.t.wishes.changed.notified() => self.deadlines_stale = true,
                command = self.t.commands.recv() => match command {
                    Some(Command::Incoming(incoming)) => self.accept(*incoming),
                    Some(Command::AddPeers(peers)) => {
                        self.conns.book.add(peers);
                        self.connect_more();
                    }
                    Some(Command::SetFilePriorities(priorities, done)) => {
                        self.resume_changed();
                        let result = self.set_file_priorities(priorities).await;
                        let failed = match &result {
                            Err(TorrentError::Storage(e)) => Some(e.to_string()),
                            _ => None,
                        };
                        let _ = done.send(result);
                        if let Some(e) = failed {
                            self.state = TorrentState::Failed(e);
                            break Ok(());
                        }
                    }
                    Some(Command::Reannounce(reply)) => {
                        let _ = reply.send(self.sources.reannounce());
                    }
                    Some(Command::Details(reply)) => {
                        let _ = reply.send(self.details());
                    }
                    Some(Command::Stop(done)) => {
                        if !matches!(self.state, TorrentState::Complete) {
                            self.state = TorrentState::Stopped;
                        }
                        let _ = done.send(());
                        break Ok(());
                    }
                    None => { self.state = TorrentState::Stopped; break Ok(()); }
                },
            }
            if let Some(e) = self.failure.take() {
                break Err(TorrentError::Storage(e));
            }
            self.drain_engine();
            if std::mem::take(&mut self.deadlines_stale) {
                self.apply_deadlines();
                self.drain_engine();
            }
            if let Err(e) = self.finish_if_complete().await {
                break Err(e);
            }
            self.stop_seeding_if_done();
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
        let now = self.clock().now();
        match event {
            ConnEvent::Handshaken {
                conn,
                handshake,
                encrypted,
                utp,
            } => {
                let Some(c) = self.conns.get(conn) else {
                    return;
                };
                if self.engine.is_banned(c.addr.ip()) {
                    self.close(conn, true);
                    return;
                }
                let Some(c) = self.conns.establish(conn) else {
                    return;
                };
                // We always offer both extensions, so each is in use exactly when the peer offers it.
                let info = PeerInfo {
                    addr: c.addr,
                    fast: handshake.supports_fast(),
                    extensions: handshake.supports_extensions(),
                    outgoing: c.outgoing,
                    encrypted,
                    utp,
                };
                tracing::debug!(
                    addr = %c.addr,
                    peer_id = ?handshake.peer_id,
                    info_hash = %handshake.info_hash,
                    outgoing = c.outgoing,
                    "peer connected"
                );
                let key = self.engine.add_peer(info, now);
                self.keys.insert(conn, key);
                self.by_key.insert(key, conn);
            }
            ConnEvent::Frames { conn, frames } => {
                let Some(&key) = self.keys.get(&conn) else {
                    return;
                };
                for frame in frames {
                    match Message::decode_frame(&frame) {
                        // BEP 52 hash requests are answered from the metainfo's piece layers, or
                        // for a piece's leaves from its bytes on disk; `hashes` and `hash reject`
                        // answer the engine's requests and go to it.
                        Ok(Message::Unknown { id, payload }) if id == hashes::HASH_REQUEST => {
                            if let Err(e) = self.answer_hash_request(conn, payload) {
                                tracing::debug!("malformed hash message: {e}");
                                self.close(conn, true);
                                return;
                            }
                        }
                        Ok(message) => self.engine.handle_message(key, message, now),
                        Err(e) => {
                            if let Some(c) = self.conns.get(conn) {
                                tracing::debug!(addr = %c.addr, "malformed message: {e}");
                            }
                            self.close(conn, true);
                            return;
                        }
                    }
                }
            }
            ConnEvent::Sent {
                conn,
                blocks,
                bytes,
            } => match self.keys.get(&conn) {
                Some(&key) => self.engine.handle_block_sent(key, blocks, bytes, now),
                None => self.engine.count_uploaded(bytes),
            },
            ConnEvent::Closed { conn, error } => {
                self.conns.closed(conn, error.as_ref());
                self.forget(conn);
                if let Some(ConnError::Storage(e)) = error {
                    self.failure = Some(e);
                }
            }
        }
    }

    /// Closes connection `conn` (`fault`: through the peer's fault, for the peer book's back-off)
    /// and forgets it everywhere.
    fn close(&mut self, conn: ConnId, fault: bool) {
        self.conns.close(conn, fault);
        self.forget(conn);
    }

    /// Forgets a closed connection in the owner's tables: its pending output, and its peer in the
    /// engine (whose requests go back to the picker).
    fn forget(&mut self, conn: ConnId) {
        self.out.remove(&conn);
        if let Some(key) = self.keys.remove(&conn) {
            self.by_key.remove(&key);
            self.engine.remove_peer(key);
        }
    }

    fn drain_engine(&mut self) {
        while let Some(action) = self.engine.poll_action() {
            match action {
                Action::Send { peer, message } => {
                    if let Some(conn) = self.by_key.get(&peer) {
                        let out = self.out.entry(*conn).or_default();
                        match out.last_mut() {
                            Some(Pending::Bytes(bytes)) => message.to_message().encode(bytes),
                            _ => {
                                let mut bytes = Vec::new();
                                message.to_message().encode(&mut bytes);
                                out.push(Pending::Bytes(bytes));
                            }
                        }
                    }
                }
                Action::Upload { peer, block } => {
                    if let Some(conn) = self.by_key.get(&peer) {
                        let out = self.out.entry(*conn).or_default();
                        match out.last_mut() {
                            Some(Pending::Blocks(blocks)) => blocks.push(block),
                            _ => out.push(Pending::Blocks(vec![block])),
                        }
                    }
                }
                Action::Disconnect { peer, fault } => {
                    if let Some(conn) = self.by_key.remove(&peer) {
                        if let Some(c) = self.conns.get(conn) {
                            tracing::info!(addr = %c.addr, "disconnecting peer: {fault}");
                        }
                        // Useless peers (another seed while we seed) back off like faulty ones, so
                        // they are not redialled every 30 s and are forgotten after a few tries.
                        self.close(conn, true);
                    }
                }
                Action::VerifyPiece { piece, data } => self.verify_queue.push_back((piece, data)),
                Action::WebFetch {
                    seed,
                    offset,
                    length,
                } => self.web.fetch(seed, offset, length),
                Action::DropWebSeed { seed, fault } => self.web.drop_seed(seed, fault.to_string()),
            }
        }
        while self.verify.len() < self.verify_slots {
            let Some((piece, data)) = self.verify_queue.pop_front() else {
                break;
            };
            self.spawn_verify(piece, data);
        }
        let out = std::mem::take(&mut self.out);
        for (conn, pending) in out {
            for item in pending {
                let item = match item {
                    Pending::Bytes(bytes) => Outbound::Bytes(Bytes::from(bytes)),
                    Pending::Blocks(blocks) => Outbound::Blocks(blocks),
                };
                if self.conns.send(conn, item).is_err() {
                    // Full: the peer is not reading what we send. Closed: it is already going away.
                    if let Some(c) = self.conns.get(conn) {
                        tracing::debug!(addr = %c.addr, "send queue full, disconnecting");
                    }
                    self.close(conn, true);
                    break;
                }
            }
        }
        while let Some(event) = self.engine.poll_event() {
            match event {
                Event::PieceVerified(piece) => {
                    tracing::trace!(piece = piece.get(), "piece verified");
                    self.deadlines_stale = true;
                }
                Event::HashFailed {
                    piece,
                    peers,
                    web_seeds,
                } => {
                    self.hash_failures += 1;
                    let web_seeds = self.web.urls(&web_seeds);
                    tracing::warn!(
                        piece = piece.get(),
                        ?peers,
                        ?web_seeds,
                        "piece failed its hash check; downloading it again"
                    );
                }
                Event::BadBlocksPinned { piece, peers } => {
                    tracing::warn!(
                        piece = piece.get(),
                        ?peers,
                        "the merkle tree pins the piece's bad blocks on these peers alone"
                    );
                }
                Event::Banned(ip) => {
                    tracing::warn!(%ip, "banning peer after repeated bad data");
                    self.conns.book.ban(ip);
                }
                Event::Finished | Event::Complete => {}
                Event::DhtPort(node) => self.sources.dht_node(node),
                Event::PeersDiscovered(peers) => {
                    tracing::debug!(?peers, "peers from peer exchange (PEX)");
                    self.conns.add_pex_peers(peers);
                    self.connect_more();
                }
            }
        }
    }

    fn spawn_verify(&mut self, piece: PieceIndex, data: Vec<u8>) {
        let metainfo = Arc::clone(&self.t.metainfo);
        let storage = Arc::clone(&self.t.storage);
        let write_lock = Arc::clone(&self.t.write_lock);
        self.verify.spawn_blocking(move || {
            let check = metainfo.info.check_piece(piece, &data);
            let result = if check.is_good() {
                let _writing = write_lock.lock().unwrap_or_else(|e| e.into_inner());
                storage.write(piece, 0, &data).map(|()| check)
            } else {
                Ok(check)
            };
            (piece, result, data)
        });
    }

    /// Answers a BEP 52 `hash request` on `conn`: from the piece layers in the metainfo, or, for
    /// the leaves of one piece we have (what a peer resolving a failed piece asks), from the
    /// piece's bytes read and hashed on the blocking pool, at most [`LEAF_ANSWERS`] at a time
    /// (beyond that, and for anything else, a `hash reject`).
    ///
    /// Errors: a malformed request (the caller closes the connection).
    fn answer_hash_request(
        &mut self,
        conn: ConnId,
        payload: &[u8],
    ) -> Result<(), hashes::HashMessageError> {
        let info = &self.t.metainfo.info;
        let HashMessage::Request(request) = HashMessage::decode(hashes::HASH_REQUEST, payload)?
        else {
            return Ok(());
        };
        let leaves = info.v2.as_deref().and_then(|v2| {
            let file = v2
                .files
                .iter()
                .find(|f| f.pieces_root == request.pieces_root)?;
            let index = hashes::leaf_request_piece(file, &request, info.piece_length)?;
            let piece = info.layout.piece(file.first_piece + index)?;
            self.engine
                .have()
                .get(piece.as_usize())
                .then(|| (file.clone(), index, piece))
        });
        if let Some((file, index, piece)) = leaves {
            if self.leaf_answers.len() < LEAF_ANSWERS {
                tracing::debug!(
                    conn,
                    piece = piece.get(),
                    "answering a BEP 52 leaf hash request"
                );
                let storage = Arc::clone(&self.t.storage);
                let piece_length = info.piece_length;
                let len = info.layout.piece_len(piece) as usize;
                self.leaf_answers.spawn_blocking(move || {
                    let mut data = vec![0; len];
                    let start = u64::from(index) * u64::from(piece_length);
                    let content = (file.length - start).min(len as u64) as usize;
                    let served = storage.read(piece, 0, &mut data).ok().and_then(|()| {
                        hashes::serve_leaves(&file, &request, piece_length, index, &data[..content])
                    });
                    (conn, hashes::frame(&hashes::reply(request, served)))
                });
                return Ok(());
            }
        }
        tracing::debug!(
            conn,
            base_layer = request.base_layer,
            index = request.index,
            length = request.length,
            proof_layers = request.proof_layers,
            "answering a BEP 52 hash request"
        );
        let reply = hashes::answer_request(info.v2.as_deref(), info.piece_length, request);
        if self
            .conns
            .send(conn, Outbound::Bytes(Bytes::from(reply)))
            .is_err()
        {
            self.close(conn, true);
        }
        Ok(())
    }

    /// New file priorities at run time: files that become wanted are created (their pieces we
    /// already hold in the parts file copied in), then the engine re-plans. A torrent that was
    /// done and now wants more downloads again.
    async fn set_file_priorities(
        &mut self,
        priorities: Vec<FilePriority>,
    ) -> Result<(), TorrentError> {
        self.t.store_priorities(priorities)?;
        let pieces = self.t.piece_priorities();
        let info = &self.t.metainfo.info;
        let to_create: Vec<_> = info
            .layout
            .files()
            .filter(|f| {
                let i = f.as_usize();
                !info.files[i].padding
                    && self
                        .t
                        .options
                        .file_priorities
                        .get(i)
                        .is_none_or(|p| p.is_wanted())
                    && !self.t.storage.is_on_disk(*f)
            })
            .collect();
        if !to_create.is_empty() {
            let storage = Arc::clone(&self.t.storage);
            let have = self.engine.have().clone();
            let write_lock = Arc::clone(&self.t.write_lock);
            tokio::task::spawn_blocking(move || {
                let _writing = write_lock.lock().unwrap_or_else(|e| e.into_inner());
                to_create
                    .into_iter()
                    .try_for_each(|f| storage.want_file(f, &have))
            })
            .await
            .map_err(|_| TorrentError::TaskGone)??;
        }
        self.engine
            .set_piece_priorities(&pieces, self.clock().now());
        self.note_priorities();
        self.deadlines_stale = true;
        if !self.engine.is_finished()
            && matches!(self.state, TorrentState::Seeding | TorrentState::Complete)
        {
            tracing::info!("file priorities changed; downloading again");
            self.state = TorrentState::Downloading;
            self.seeding_since = None;
            self.start_web_seeds();
        }
        Ok(())
    }

    async fn finish_if_complete(&mut self) -> Result<(), TorrentError> {
        if self.state != TorrentState::Downloading || !self.engine.is_finished() {
            return Ok(());
        }
        // Nothing counts as downloaded before it is on disk.
        let storage = Arc::clone(&self.t.storage);
        tokio::task::spawn_blocking(move || storage.sync_all())
            .await
            .map_err(|_| TorrentError::TaskGone)??;
        if !self.announced_complete {
            self.announced_complete = true;
            // The announcer reads the transfer figures from the published stats: publish first, so
            // `completed` goes out with `left=0` (trackers such as opentracker count a completed
            // download only when nothing is left).
            self.publish();
            self.sources.completed();
        }
        self.stop_web_seeds();
        // A restart now seeds without hashing anything.
        self.save_resume().await;
        if self.t.options.seed.is_some() {
            tracing::info!("download complete; seeding");
            self.state = TorrentState::Seeding;
            self.seeding_since = Some(Instant::now());
        } else {
            self.state = TorrentState::Complete;
            self.close_all();
        }
        Ok(())
    }

    /// When seeding must end by [`crate::SeedLimits::time`].
    fn seed_deadline(&self) -> Option<Instant> {
        let since = self.seeding_since?;
        let limit = self.t.options.seed?.time?;
        (self.state == TorrentState::Seeding).then(|| since + limit)
    }

    /// Ends seeding once a [`crate::SeedLimits`] is reached: connections close and the torrent is
    /// [`TorrentState::Complete`].
    fn stop_seeding_if_done(&mut self) {
        if self.state != TorrentState::Seeding {
            return;
        }
        let Some(limits) = self.t.options.seed else {
            return;
        };
        let total = self.engine.stats().wanted as f64;
        let by_ratio = limits
            .ratio
            .is_some_and(|r| self.engine.stats().uploaded as f64 >= r * total);
        let by_time = self
            .seed_deadline()
            .is_some_and(|end| Instant::now() >= end);
        if by_ratio || by_time {
            tracing::info!(by_ratio, by_time, "seeding limit reached");
            self.state = TorrentState::Complete;
            self.close_all();
        }
    }

    /// Adds the web seeds to the engine while downloading (those dropped for bad data stay out).
    fn start_web_seeds(&mut self) {
        if self.state != TorrentState::Downloading {
            return;
        }
        let now = self.clock().now();
        let engine = &mut self.engine;
        self.web.start(|| engine.add_web_seed(now));
    }

    /// Stops the web seeds' fetches and takes them out of the engine: a finished torrent has no
    /// use for them.
    fn stop_web_seeds(&mut self) {
        for seed in self.web.stop_all() {
            self.engine.remove_web_seed(seed);
        }
    }

    fn close_all(&mut self) {
        self.conns.close_all();
        let established: Vec<ConnId> = self.keys.keys().copied().collect();
        for conn in established {
            self.forget(conn);
        }
        self.out.clear();
    }

    /// True while peers are of use: downloading, or seeding.
    fn serving(&self) -> bool {
        matches!(
            self.state,
            TorrentState::Downloading | TorrentState::Seeding
        )
    }

    fn connect_more(&mut self) {
        if !self.serving() {
            return;
        }
        let now = Instant::now();
        let engine = &self.engine;
        self.conns
            .connect_more(now, |addr| !engine.is_banned(addr.ip()));
        let limit = self.t.shared.config.max_peers_per_torrent;
        if self.conns.running_dry(limit / 4, now) {
            self.sources.dry(now);
        }
    }

    fn accept(&mut self, incoming: Incoming) {
        if self.engine.is_banned(incoming.addr.ip()) || !self.serving() {
            return;
        }
        self.conns.accept(incoming);
    }

    fn details(&self) -> super::progress::Details {
        let peers = self
            .keys
            .iter()
            .filter_map(|(&conn, &key)| {
                let c = self.conns.get(conn)?;
                Some(super::progress::PeerDetails {
                    addr: c.addr,
                    outgoing: c.outgoing,
                    status: self.engine.peer_status(key)?,
                })
            })
            .collect();
        super::progress::Details {
            have: self.engine.have().clone(),
            peers,
            tracker: self.sources.tracker_status(),
            web_seeds: self.web.details(|seed| self.engine.web_seed_status(seed)),
            deadline_pieces: self.engine.piece_deadlines().count(),
        }
    }

    /// Keeps the piece priorities and the wanted files' places, which deadlines are worked out
    /// from.
    fn note_priorities(&mut self) {
        self.piece_priorities = self.t.piece_priorities();
        let info = &self.t.metainfo.info;
        let wanted = &self.t.options.file_priorities;
        self.files = info
            .layout
            .files()
            .filter(|f| !info.files[f.as_usize()].padding)
            .map(|f| {
                let want = wanted.get(f.as_usize()).is_none_or(|p| p.is_wanted());
                (info.layout.file_offset(f), info.layout.file_length(f), want)
            })
            .collect();
    }

    /// Gives the engine the deadlines that readers and the download order wish for now (see
    /// `wishes`); nothing to do while nobody wishes anything and no deadline is set.
    fn apply_deadlines(&mut self) {
        let engine = &self.engine;
        let idle = self.t.wishes.read(|w| w.is_empty());
        if idle && engine.piece_deadlines().next().is_none() {
            return;
        }
        let now = self.clock().now();
        let facts = Facts {
            layout: engine.layout(),
            have: engine.have(),
            priorities: &self.piece_priorities,
            files: &self.files,
            download_rate: engine.stats().download_rate,
        };
        let wanted = self
            .t
            .wishes
            .read(|w| desired(w, &facts, now, |p| engine.piece_deadline(p)));
        tracing::trace!(
            deadlines = wanted.len(),
            first = ?wanted.iter().min_by_key(|(_, at)| **at).map(|(p, at)| (p.get(), at.saturating_duration_since(now))),
            "piece deadlines"
        );
        self.engine.replace_piece_deadlines(wanted, now);
    }

    fn publish(&mut self) {
        let have = self.engine.have().count_ones();
        if self.published_have != Some(have) {
            self.published_have = Some(have);
            let bits = Arc::new(self.engine.have().clone());
            self.t.have_tx.send_replace(bits);
        }
        let s = self.engine.stats();
        let layout = self.engine.layout();
        let progress = Progress {
            state: self.state.clone(),
            total_bytes: layout.total_length(),
            wanted_bytes: s.wanted,
            left_bytes: s.left,
            verified_bytes: s.verified,
            downloaded_bytes: s.downloaded,
            wasted_bytes: s.wasted,
            uploaded_bytes: s.uploaded,
            download_rate: s.download_rate,
            upload_rate: s.upload_rate,
            peers: s.peers,
            web_seeds: s.web_seeds,
            web_seeds_sending: s.web_seeds_sending,
            pieces_have: self.engine.have().count_ones() as u32,
            piece_count: layout.piece_count(),
            hash_failures: self.hash_failures,
            // What the check found stays as it published it.
            checked_pieces: 0,
            pieces_to_check: 0,
        };
        self.t.progress_tx.send_if_modified(|p| {
            let progress = Progress {
                checked_pieces: p.checked_pieces,
                pieces_to_check: p.pieces_to_check,
                ..progress
            };
            let changed = *p != progress;
            *p = progress;
            changed
        });
        let transfer = TransferStats {
            uploaded: s.uploaded,
            downloaded: s.downloaded,
            left: s.left,
        };
        self.stats_tx.send_if_modified(|t| {
            let changed = *t != transfer;
            *t = transfer;
            changed
        });
    }

    async fn shutdown(&mut self) {
        self.stop_web_seeds();
        self.conns.drain();
        self.keys.clear();
        self.by_key.clear();
        // Pieces already complete are verified and written, so no downloaded data is lost.
        while let Some((piece, data)) = self.verify_queue.pop_front() {
            self.spawn_verify(piece, data);
        }
        while let Some(joined) = self.verify.join_next().await {
            if let Ok((piece, Ok(check), buffer)) = joined {
                self.engine
                    .handle_piece_checked(piece, check, buffer, self.clock().now());
            }
        }
        // Data seeded from read-only files was never written; syncing them is harmless.
        let storage = Arc::clone(&self.t.storage);
        let _ = tokio::task::spawn_blocking(move || storage.sync_all()).await;
        self.save_resume().await;
        let engine = &mut self.engine;
        self.conns
            .wait_closed(|bytes| engine.count_uploaded(bytes))
            .await;
        // The announce carries the final totals.
        self.publish();
        // Trackers learn we left (BEP 3 `event=stopped`); bounded by the announcer's stop budget.
        self.sources.stop().await;
    }

    /// Starts saving fast-resume state in the background, unless a save is under way or nothing
    /// changed (see [`ResumeSaver::start`]).
    fn start_resume_save(&mut self) {
        if let Some(saver) = &mut self.resume {
            saver.start(&self.t, snapshot(&self.engine, &self.t));
        }
    }

    /// Something the resume state records may have changed: a periodic save is due again.
    fn resume_changed(&mut self) {
        if let Some(saver) = &mut self.resume {
            saver.changed();
        }
    }

    /// Saves fast-resume state now and waits for it.
    async fn save_resume(&mut self) {
        if let Some(saver) = &mut self.resume {
            saver.save(&self.t, snapshot(&self.engine, &self.t)).await;
        }
    }
}

/// What a fast-resume save records of the torrent now.
fn snapshot<'a>(engine: &'a Torrent, t: &'a TorrentTask) -> Snapshot<'a> {
    let stats = engine.stats();
    Snapshot {
        have: engine.have(),
        priorities: &t.options.file_priorities,
        transferred: (stats.uploaded, stats.downloaded),
    }
}

/// Sleeps until `wake`, or for ever without one.
async fn sleep_until(wake: Option<Instant>) {
    match wake {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
