//! Hostile peers: nine scripted peers on 127.0.0.21–29, one per misbehaviour of issue 5 item 5,
//! each speaking a real BEP 3 handshake for the test's torrent and then breaking the protocol in
//! its own way (wrong data, blocks never requested, a 4 GiB message, a bad bitfield, 100,000
//! `have`s, silence, a piece index out of range, a 1 byte/s trickle, handshake-then-close).
//!
//! Each listens on `IP:6881` and registers with opentracker by a UDP announce (BEP 15) sent from
//! its own address, so the tracker hands it to swarmer exactly like an honest peer. Some also dial
//! swarmer (`HostilePeers::dial`), to reach the code path of incoming connections. Every peer
//! counts the connections it had with swarmer and the hostile acts it completed on them, so a
//! test can prove that swarmer really met it; connections from anyone else (the libtorrent
//! seeders learn of the hostile peers from the tracker too) are closed at once and not counted. Written with std sockets and hand-made messages, independent of
//! swarmer's codec. Bounded: at most `MAX_CONNS` connection threads per peer, every socket has
//! timeouts, and dropping `HostilePeers` stops and joins every thread.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::bencode;
use crate::scene::Scene;

/// The port every hostile peer listens on (each has its own address).
pub(crate) const PORT: u16 = 6881;
/// Connections one hostile peer serves at once; further ones are closed at once.
const MAX_CONNS: usize = 8;
/// How long a hostile connection may last at most, whatever happens.
const MAX_LIFETIME: Duration = Duration::from_secs(150);
/// How often blocked reads wake up to look at the stop flag.
const TICK: Duration = Duration::from_millis(200);
/// `have` messages the flooder sends on each connection.
pub(crate) const HAVE_FLOOD: u64 = 100_000;
/// Handshake-then-close connections the (i) peer makes to swarmer, at most.
const HANDSHAKE_CLOSE_DIALS: u64 = 200;
const BLOCK: u32 = 16 * 1024;

/// One way of misbehaving, lettered as in the issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Behaviour {
    /// (a) Claims every piece and answers each request with the right length of wrong bytes.
    WrongData,
    /// (b) Claims every piece and answers each request with a block of another piece, which
    /// nobody asked it for.
    Unrequested,
    /// (c) Announces a message of 4 GiB − 1 bytes right after the handshake.
    Giant,
    /// (d) Sends a bitfield one byte too long (when dialled) or with the spare bits set (when it
    /// dials).
    BadBitfield,
    /// (e) Sends [`HAVE_FLOOD`] `have` messages, cycling over every piece.
    HaveFlood,
    /// (f) Never says a word: accepts swarmer's connection and stays silent, and dials swarmer
    /// and stays silent.
    Mute,
    /// (g) Claims every piece and answers the first request with a block of a piece past the end.
    OutOfRange,
    /// (h) Claims every piece and sends its answer to the first request at 1 byte/s.
    Trickle,
    /// (i) Sends a handshake and closes; dials swarmer and does so again, repeatedly.
    HandshakeThenClose,
}

impl Behaviour {
    pub(crate) const ALL: [Behaviour; 9] = [
        Behaviour::WrongData,
        Behaviour::Unrequested,
        Behaviour::Giant,
        Behaviour::BadBitfield,
        Behaviour::HaveFlood,
        Behaviour::Mute,
        Behaviour::OutOfRange,
        Behaviour::Trickle,
        Behaviour::HandshakeThenClose,
    ];

    /// Its address: 127.0.0.21 for (a) to 127.0.0.29 for (i).
    pub(crate) fn ip(self) -> Ipv4Addr {
        let index = Behaviour::ALL
            .iter()
            .position(|b| *b == self)
            .expect("listed");
        Ipv4Addr::new(127, 0, 0, 21 + index as u8)
    }

    /// Where it listens.
    pub(crate) fn addr(self) -> SocketAddr {
        SocketAddr::from((self.ip(), PORT))
    }

    fn peer_id(self) -> [u8; 20] {
        let mut id = *b"-HO0001-hostile-peer";
        id[19] = b'a'
            + Behaviour::ALL
                .iter()
                .position(|b| *b == self)
                .expect("listed") as u8;
        id
    }

    /// True for the peers that also dial swarmer.
    fn dials(self) -> bool {
        matches!(
            self,
            Behaviour::BadBitfield | Behaviour::Mute | Behaviour::HandshakeThenClose
        )
    }
}

/// What the hostile peers know of the torrent.
#[derive(Clone, Copy)]
struct Torrent {
    info_hash: [u8; 20],
    piece_len: u32,
    total_len: u64,
}

impl Torrent {
    fn piece_count(&self) -> u32 {
        self.total_len.div_ceil(u64::from(self.piece_len)) as u32
    }

    fn piece_size(&self, index: u32) -> u64 {
        let start = u64::from(index) * u64::from(self.piece_len);
        (self.total_len - start).min(u64::from(self.piece_len))
    }

    /// A bitfield of every piece, of the right length with the spare bits clear.
    fn full_bitfield(&self) -> Vec<u8> {
        let n = self.piece_count() as usize;
        let mut bits = vec![0xFF; n.div_ceil(8)];
        if n % 8 != 0 {
            *bits.last_mut().expect("at least one piece") = 0xFF << (8 - n % 8);
        }
        bits
    }
}

/// Counters of one hostile peer.
#[derive(Default)]
pub(crate) struct Counts {
    /// Connections on which it and swarmer exchanged handshakes (or, for the mute peer, that it
    /// accepted or made).
    pub(crate) connections: AtomicU64,
    /// Hostile acts completed: bad blocks, giant headers, bad bitfields, `have`s, silent
    /// connections, out-of-range blocks, trickled bytes, handshake-then-closes.
    pub(crate) acts: AtomicU64,
}

struct Peer {
    behaviour: Behaviour,
    counts: Arc<Counts>,
}

/// The running hostile peers; dropping it stops and joins every thread.
pub(crate) struct HostilePeers {
    torrent: Torrent,
    peers: Vec<Peer>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl HostilePeers {
    /// Starts every hostile peer for `torrent_path` (pieces of `piece_len` bytes, `total_len` in
    /// all) and announces each to the tracker from its own address. They serve connections from
    /// `victim` (swarmer's address) only.
    pub(crate) fn start(
        scene: &Scene,
        torrent_path: &Path,
        piece_len: u32,
        total_len: u64,
        victim: Ipv4Addr,
    ) -> HostilePeers {
        let bytes = std::fs::read(torrent_path).expect("read torrent");
        let torrent = Torrent {
            info_hash: bencode::info_hash(&bytes),
            piece_len,
            total_len,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let mut hostile = HostilePeers {
            torrent,
            peers: Vec::new(),
            stop: Arc::clone(&stop),
            threads: Vec::new(),
        };
        for behaviour in Behaviour::ALL {
            let listener = TcpListener::bind(behaviour.addr())
                .unwrap_or_else(|e| panic!("bind hostile peer {behaviour:?}: {e}"));
            let counts = Arc::new(Counts::default());
            let (c, s) = (Arc::clone(&counts), Arc::clone(&stop));
            hostile.threads.push(std::thread::spawn(move || {
                accept_loop(listener, behaviour, torrent, victim, c, s);
            }));
            hostile.peers.push(Peer { behaviour, counts });
            announce(&torrent, behaviour);
        }
        scene.mark("hostile peers listen on 127.0.0.21-29 and are announced");
        hostile
    }

    /// Makes the peers that also dial start dialling `target` (swarmer), which must listen already.
    pub(crate) fn dial(&mut self, target: SocketAddr) {
        for peer in &self.peers {
            if !peer.behaviour.dials() {
                continue;
            }
            let (behaviour, torrent) = (peer.behaviour, self.torrent);
            let (counts, stop) = (Arc::clone(&peer.counts), Arc::clone(&self.stop));
            self.threads.push(std::thread::spawn(move || {
                dial_loop(target, behaviour, torrent, &counts, &stop);
            }));
        }
    }

    /// The counters of `behaviour`'s peer.
    pub(crate) fn counts(&self, behaviour: Behaviour) -> (u64, u64) {
        let peer = self.peers.iter().find(|p| p.behaviour == behaviour);
        let counts = &peer.expect("every behaviour runs").counts;
        (
            counts.connections.load(Ordering::SeqCst),
            counts.acts.load(Ordering::SeqCst),
        )
    }

    /// Stops every peer and waits for its threads (each notices within about `TICK`).
    pub(crate) fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for peer in &self.peers {
            // Wakes the accept loop, which then sees the flag.
            let _ = TcpStream::connect_timeout(&peer.behaviour.addr(), TICK);
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for HostilePeers {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Registers `behaviour`'s peer as a seeder with opentracker's UDP interface (BEP 15), from the
/// peer's own address: opentracker records the source address of the announce.
fn announce(torrent: &Torrent, behaviour: Behaviour) {
    let socket = UdpSocket::bind((behaviour.ip(), 0)).expect("bind UDP");
    socket
        .set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    let tracker = SocketAddr::from(([127, 0, 0, 1], 6969));
    let transaction = 0x5151_0000 | u32::from(behaviour.ip().octets()[3]);
    let mut reply = [0u8; 1500];
    for _attempt in 0..5 {
        let mut connect = 0x0417_2710_1980_u64.to_be_bytes().to_vec();
        connect.extend(0u32.to_be_bytes());
        connect.extend(transaction.to_be_bytes());
        socket.send_to(&connect, tracker).expect("send connect");
        let Ok((n, _)) = socket.recv_from(&mut reply) else {
            continue;
        };
        if n < 16 || reply[..4] != [0, 0, 0, 0] || reply[4..8] != transaction.to_be_bytes() {
            continue;
        }
        let connection_id = &reply[8..16];
        let mut request = connection_id.to_vec();
        request.extend(1u32.to_be_bytes()); // announce
        request.extend(transaction.to_be_bytes());
        request.extend(torrent.info_hash);
        request.extend(behaviour.peer_id());
        request.extend(0u64.to_be_bytes()); // downloaded
        request.extend(0u64.to_be_bytes()); // left: a seeder
        request.extend(0u64.to_be_bytes()); // uploaded
        request.extend(2u32.to_be_bytes()); // event: started
        request.extend(0u32.to_be_bytes()); // ip: the source address
        request.extend(transaction.to_be_bytes()); // key
        request.extend((-1i32).to_be_bytes()); // num_want: default
        request.extend(PORT.to_be_bytes());
        socket.send_to(&request, tracker).expect("send announce");
        if let Ok((n, _)) = socket.recv_from(&mut reply) {
            if n >= 20 && reply[..4] == [0, 0, 0, 1] {
                return;
            }
            panic!(
                "opentracker refused the announce of {behaviour:?}: {:?}",
                String::from_utf8_lossy(&reply[8..n])
            );
        }
    }
    panic!("opentracker did not answer the UDP announce of {behaviour:?}");
}

fn accept_loop(
    listener: TcpListener,
    behaviour: Behaviour,
    torrent: Torrent,
    victim: Ipv4Addr,
    counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
) {
    let active = Arc::new(AtomicUsize::new(0));
    let mut handlers = Vec::new();
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        let from_victim = stream
            .peer_addr()
            .is_ok_and(|a| a.ip() == std::net::IpAddr::V4(victim));
        if !from_victim || active.load(Ordering::SeqCst) >= MAX_CONNS {
            continue;
        }
        active.fetch_add(1, Ordering::SeqCst);
        let (counts, stop, active) = (Arc::clone(&counts), Arc::clone(&stop), Arc::clone(&active));
        handlers.push(std::thread::spawn(move || {
            let mut conn = Conn::new(stream, &stop);
            let _ = conn.serve(behaviour, &torrent, &counts);
            active.fetch_sub(1, Ordering::SeqCst);
        }));
        handlers.retain(|h| !h.is_finished());
    }
    for handler in handlers {
        let _ = handler.join();
    }
}

/// Dials `target`, which listens already, and misbehaves: once for the mute peer and the bad
/// bitfield, `HANDSHAKE_CLOSE_DIALS` times in a row for handshake-then-close (each dial after the
/// previous connection ended).
fn dial_loop(
    target: SocketAddr,
    behaviour: Behaviour,
    torrent: Torrent,
    counts: &Counts,
    stop: &AtomicBool,
) {
    let started = Instant::now();
    let mut dials = 0;
    while !stop.load(Ordering::SeqCst) && started.elapsed() < MAX_LIFETIME {
        let Some(stream) = connect_from(behaviour.ip(), target) else {
            return;
        };
        let mut conn = Conn::new(stream, stop);
        let _ = conn.misbehave_dialling(behaviour, &torrent, counts);
        dials += 1;
        if behaviour != Behaviour::HandshakeThenClose || dials >= HANDSHAKE_CLOSE_DIALS {
            return;
        }
    }
}

/// A TCP connection to `target` from `ip` (std cannot bind before connecting; tokio's socket can,
/// and hands the connected socket back as a std one).
fn connect_from(ip: Ipv4Addr, target: SocketAddr) -> Option<TcpStream> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .expect("tokio runtime");
    let stream = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().ok()?;
        socket.bind(SocketAddr::from((ip, 0))).ok()?;
        tokio::time::timeout(Duration::from_secs(2), socket.connect(target))
            .await
            .ok()?
            .ok()
    })?;
    let stream = stream.into_std().ok()?;
    stream.set_nonblocking(false).ok()?;
    Some(stream)
}

/// One hostile connection: blocking reads that give up when the test stops or the connection
/// has lived `MAX_LIFETIME`.
struct Conn<'a> {
    stream: TcpStream,
    stop: &'a AtomicBool,
    born: Instant,
}

impl<'a> Conn<'a> {
    fn new(stream: TcpStream, stop: &'a AtomicBool) -> Conn<'a> {
        let _ = stream.set_read_timeout(Some(TICK));
        let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
        let _ = stream.set_nodelay(true);
        Conn {
            stream,
            stop,
            born: Instant::now(),
        }
    }

    fn alive(&self) -> std::io::Result<()> {
        if self.stop.load(Ordering::SeqCst) || self.born.elapsed() > MAX_LIFETIME {
            return Err(std::io::Error::new(ErrorKind::TimedOut, "stopped"));
        }
        Ok(())
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
        let mut got = 0;
        while got < buf.len() {
            self.alive()?;
            match self.stream.read(&mut buf[got..]) {
                Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
                Ok(n) => got += n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads and discards until the other side closes (or the test stops).
    fn drain(&mut self) -> std::io::Result<()> {
        let mut sink = [0u8; 4096];
        loop {
            self.alive()?;
            match self.stream.read(&mut sink) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The next message as (id, payload); `None` for a keep-alive.
    fn read_message(&mut self) -> std::io::Result<Option<(u8, Vec<u8>)>> {
        let mut prefix = [0u8; 4];
        self.read_exact(&mut prefix)?;
        let len = u32::from_be_bytes(prefix) as usize;
        if len == 0 {
            return Ok(None);
        }
        if len > 1 << 20 {
            return Err(std::io::Error::new(ErrorKind::InvalidData, "huge message"));
        }
        let mut body = vec![0u8; len];
        self.read_exact(&mut body)?;
        let id = body.remove(0);
        Ok(Some((id, body)))
    }

    /// Waits for swarmer's next `request` and returns (index, begin, length).
    fn next_request(&mut self) -> std::io::Result<(u32, u32, u32)> {
        loop {
            if let Some((6, body)) = self.read_message()? {
                if body.len() == 12 {
                    let field = |i: usize| u32::from_be_bytes(body[i..i + 4].try_into().unwrap());
                    return Ok((field(0), field(4), field(8)));
                }
            }
        }
    }

    fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.alive()?;
        self.stream.write_all(bytes)
    }

    fn handshake(&mut self, torrent: &Torrent, behaviour: Behaviour) -> std::io::Result<()> {
        let mut hs = vec![19u8];
        hs.extend(b"BitTorrent protocol");
        // No extensions: plain BEP 3, so every message below is legal framing.
        hs.extend([0u8; 8]);
        hs.extend(torrent.info_hash);
        hs.extend(behaviour.peer_id());
        self.send(&hs)
    }

    /// Reads swarmer's handshake and checks it is for our torrent.
    fn their_handshake(&mut self, torrent: &Torrent) -> std::io::Result<()> {
        let mut hs = [0u8; 68];
        self.read_exact(&mut hs)?;
        if &hs[..20] != b"\x13BitTorrent protocol" || hs[28..48] != torrent.info_hash {
            return Err(std::io::Error::new(ErrorKind::InvalidData, "bad handshake"));
        }
        Ok(())
    }

    /// Serves a connection swarmer made to us.
    fn serve(
        &mut self,
        behaviour: Behaviour,
        torrent: &Torrent,
        counts: &Counts,
    ) -> std::io::Result<()> {
        self.their_handshake(torrent)?;
        if behaviour == Behaviour::Mute {
            counts.connections.fetch_add(1, Ordering::SeqCst);
            counts.acts.fetch_add(1, Ordering::SeqCst);
            return self.drain();
        }
        self.handshake(torrent, behaviour)?;
        counts.connections.fetch_add(1, Ordering::SeqCst);
        self.misbehave(behaviour, torrent, counts, false)
    }

    /// Makes a connection to swarmer and misbehaves on it.
    fn misbehave_dialling(
        &mut self,
        behaviour: Behaviour,
        torrent: &Torrent,
        counts: &Counts,
    ) -> std::io::Result<()> {
        if behaviour == Behaviour::Mute {
            counts.connections.fetch_add(1, Ordering::SeqCst);
            counts.acts.fetch_add(1, Ordering::SeqCst);
            return self.drain();
        }
        self.handshake(torrent, behaviour)?;
        self.their_handshake(torrent)?;
        counts.connections.fetch_add(1, Ordering::SeqCst);
        self.misbehave(behaviour, torrent, counts, true)
    }

    /// What each behaviour does once handshakes are exchanged.
    fn misbehave(
        &mut self,
        behaviour: Behaviour,
        torrent: &Torrent,
        counts: &Counts,
        dialled: bool,
    ) -> std::io::Result<()> {
        let act = || counts.acts.fetch_add(1, Ordering::SeqCst);
        match behaviour {
            Behaviour::WrongData => {
                self.offer_everything(torrent)?;
                loop {
                    let (index, begin, length) = self.next_request()?;
                    self.send(&piece(index, begin, length.min(BLOCK)))?;
                    act();
                }
            }
            Behaviour::Unrequested => {
                self.offer_everything(torrent)?;
                loop {
                    let (index, begin, length) = self.next_request()?;
                    // The same range of the next piece (of piece 0 if the next is too short).
                    let mut other = (index + 1) % torrent.piece_count();
                    if torrent.piece_size(other) < u64::from(begin) + u64::from(length) {
                        other = 0;
                    }
                    self.send(&piece(other, begin, length.min(BLOCK)))?;
                    act();
                }
            }
            Behaviour::Giant => {
                let mut giant = u32::MAX.to_be_bytes().to_vec();
                giant.extend([7u8; 1024]);
                self.send(&giant)?;
                act();
                // Hold the connection: swarmer must close it without waiting for the body.
                self.drain()
            }
            Behaviour::BadBitfield => {
                let mut bits = torrent.full_bitfield();
                if dialled {
                    assert!(
                        torrent.piece_count() % 8 != 0,
                        "the torrent needs spare bits"
                    );
                    *bits.last_mut().expect("bits") = 0xFF;
                } else {
                    bits.push(0xFF);
                }
                self.send(&message(5, &bits))?;
                act();
                self.drain()
            }
            Behaviour::HaveFlood => {
                let n = torrent.piece_count();
                let mut batch = Vec::with_capacity(9 * 1000);
                for i in 0..HAVE_FLOOD {
                    batch.extend(message(4, &((i % u64::from(n)) as u32).to_be_bytes()));
                    if batch.len() >= 9 * 1000 || i + 1 == HAVE_FLOOD {
                        self.send(&batch)?;
                        counts
                            .acts
                            .fetch_add(batch.len() as u64 / 9, Ordering::SeqCst);
                        batch.clear();
                    }
                }
                self.drain()
            }
            Behaviour::Mute => unreachable!("the mute peer never gets this far"),
            Behaviour::OutOfRange => {
                self.offer_everything(torrent)?;
                let (_, begin, length) = self.next_request()?;
                self.send(&piece(torrent.piece_count(), begin, length.min(BLOCK)))?;
                act();
                self.drain()
            }
            Behaviour::Trickle => {
                self.offer_everything(torrent)?;
                let (index, begin, length) = self.next_request()?;
                for byte in piece(index, begin, length.min(BLOCK)) {
                    self.send(&[byte])?;
                    act();
                    // The pace is the misbehaviour under test.
                    std::thread::sleep(Duration::from_secs(1));
                }
                self.drain()
            }
            Behaviour::HandshakeThenClose => {
                act();
                self.stream.shutdown(Shutdown::Both)
            }
        }
    }

    /// A bitfield of every piece and an unchoke: swarmer will ask us for blocks.
    fn offer_everything(&mut self, torrent: &Torrent) -> std::io::Result<()> {
        let mut out = message(5, &torrent.full_bitfield());
        out.extend(message(1, &[]));
        self.send(&out)
    }
}

/// A length-prefixed message with `id` and `payload` (BEP 3).
fn message(id: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = ((payload.len() + 1) as u32).to_be_bytes().to_vec();
    out.push(id);
    out.extend_from_slice(payload);
    out
}

/// A `piece` message for (index, begin) carrying `length` bytes that are not the torrent's data
/// (the payload is pseudo-random, so a constant never matches a whole block).
fn piece(index: u32, begin: u32, length: u32) -> Vec<u8> {
    let mut payload = index.to_be_bytes().to_vec();
    payload.extend(begin.to_be_bytes());
    payload.resize(8 + length as usize, 0x5A);
    message(7, &payload)
}
