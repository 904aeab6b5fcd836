//! One peer connection's IO (BEP 3, "peer protocol"): connecting, the handshake, cutting the byte stream
//! into length-prefixed frames, writing the bytes the torrent's owner task decided to send, and reading
//! from disk the blocks it decided to upload. It makes no protocol decisions: frames go to the owner,
//! which decodes them and feeds the engine.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use swarmer_proto::torrent::Requested;
use swarmer_proto::wire::{
    HANDSHAKE_LEN, Handshake, LENGTH_PREFIX_LEN, PIECE_HEADER_LEN, WireError, encode_piece_header,
    frame_len, reserved_bytes,
};
use swarmer_proto::{InfoHash, PeerId};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;

use crate::clock::Clock;
use crate::config::Encryption;
use crate::config::Transport;
use crate::mse::{self, FirstBytes, MseError};
use crate::rate::LimiterPair;
use crate::storage::{Storage, StorageError};
use crate::utp::{UtpConnector, UtpStream};

/// What the owner task asks a connection to write, in order.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// Encoded messages.
    Bytes(Bytes),
    /// Blocks to read from disk and send as `piece` messages (BEP 3), reported with
    /// [`ConnEvent::Sent`] as they go out.
    Blocks(Vec<Requested>),
}

/// The receiving half of a connection's byte stream, whatever carries it.
pub(crate) type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;
/// The sending half of a connection's byte stream, whatever carries it.
pub(crate) type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

/// A connection's byte stream as two halves, so its reader and its writer run apart. TCP is one
/// carrier; a layer that transforms the bytes (a cipher) or another transport wraps the halves, and
/// everything from the BitTorrent handshake on works the same over any of them.
pub(crate) struct PeerStream {
    pub(crate) read: ReadHalf,
    pub(crate) write: WriteHalf,
    /// The connection went through an MSE handshake (RC4 or plaintext after it): the peer
    /// supports encryption, as PEX tells others (BEP 11 flag 0x01).
    pub(crate) encrypted: bool,
    /// The carrier is uTP (BEP 29), not TCP (PEX flag 0x04).
    pub(crate) utp: bool,
}

impl PeerStream {
    /// The halves of a TCP connection.
    pub(crate) fn tcp(stream: TcpStream) -> PeerStream {
        let (read, write) = stream.into_split();
        PeerStream {
            read: Box::new(read),
            write: Box::new(write),
            encrypted: false,
            utp: false,
        }
    }

    /// The halves of a uTP connection.
    pub(crate) fn utp(stream: UtpStream) -> PeerStream {
        PeerStream {
            read: Box::new(stream.read),
            write: Box::new(stream.write),
            encrypted: false,
            utp: true,
        }
    }
}

impl std::fmt::Debug for PeerStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerStream")
    }
}

/// A connection the session's listener accepted and routed by the info hash in its handshake,
/// on its way to that torrent's owner task.
#[derive(Debug)]
pub(crate) struct Incoming {
    pub(crate) stream: PeerStream,
    /// Bytes the peer sent after its handshake, already read.
    pub(crate) buf: BytesMut,
    pub(crate) handshake: Handshake,
    pub(crate) addr: SocketAddr,
}

/// Identifies a connection inside one torrent's owner task, from before the handshake until it closes.
pub(crate) type ConnId = u64;

/// What a connection task reports to its torrent's owner task.
#[derive(Debug)]
pub(crate) enum ConnEvent {
    /// The handshake is done: the peer speaks for our torrent.
    Handshaken {
        conn: ConnId,
        handshake: Handshake,
        /// Through an MSE handshake ([`PeerStream::encrypted`]).
        encrypted: bool,
        /// Over uTP ([`PeerStream::utp`]).
        utp: bool,
    },
    /// The bodies of complete frames (message id and payload, the length prefix cut off by
    /// [`frame_len`]; empty for a keep-alive), in arrival order. Decode each with
    /// [`swarmer_proto::wire::Message::decode_frame`].
    Frames { conn: ConnId, frames: Vec<Bytes> },
    /// `blocks` blocks of [`Outbound::Blocks`] holding `bytes` payload bytes were written to the socket.
    Sent {
        conn: ConnId,
        blocks: u32,
        bytes: u64,
    },
    /// The connection is gone; `error` says why (`None` for an orderly close by the peer).
    Closed {
        conn: ConnId,
        error: Option<ConnError>,
    },
}

/// Why a connection ended, by whose fault.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnError {
    #[error("connect timed out after {0:?}")]
    ConnectTimeout(Duration),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("handshake timed out after {0:?}")]
    HandshakeTimeout(Duration),
    #[error("bad handshake: {0}")]
    BadHandshake(String),
    #[error("handshake for another torrent ({0})")]
    WrongInfoHash(InfoHash),
    #[error("connected to ourselves")]
    SelfConnection,
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error(transparent)]
    Mse(#[from] MseError),
    /// A plaintext connection while [`Encryption::Require`] is set.
    #[error("plaintext connection refused: encryption is required")]
    EncryptionRequired,
    /// An encrypted (MSE) connection while [`Encryption::Disable`] is set.
    #[error("encrypted connection refused: encryption is disabled")]
    EncryptionDisabled,
    /// Reading a block to upload failed: a local problem, which fails the torrent.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl ConnError {
    /// Errors after which trying the other way (MSE or plaintext) cannot help: the peer is us, or
    /// serves another torrent.
    fn is_not_refusal(&self) -> bool {
        matches!(
            self,
            ConnError::SelfConnection | ConnError::WrongInfoHash(_)
        )
    }

    /// True when the connection failed in a way that another transport might avoid: it could not
    /// be opened, or it closed before the peer's handshake.
    fn may_succeed_over_another_carrier(&self) -> bool {
        matches!(self, ConnError::ConnectTimeout(_) | ConnError::Io(_))
    }

    /// True when the peer did something wrong (as opposed to the network failing).
    pub(crate) fn is_peer_fault(&self) -> bool {
        matches!(
            self,
            ConnError::BadHandshake(_) | ConnError::WrongInfoHash(_) | ConnError::Wire(_)
        ) || matches!(self, ConnError::Mse(e) if e.is_peer_fault())
    }
}

/// What every connection of one torrent shares.
#[derive(Clone)]
pub(crate) struct ConnContext {
    pub(crate) info_hash: InfoHash,
    pub(crate) our_id: PeerId,
    pub(crate) bind_ip: Option<IpAddr>,
    pub(crate) events: mpsc::Sender<ConnEvent>,
    /// The largest frame accepted, in bytes (length prefix excluded).
    pub(crate) max_frame: u32,
    pub(crate) connect_timeout: Duration,
    pub(crate) handshake_timeout: Duration,
    /// Where uploaded blocks are read from; `None` while a magnet link's metadata is fetched, when
    /// there are no blocks to send.
    pub(crate) storage: Option<Arc<Storage>>,
    /// The torrent's and the session's limits on bytes written and read (each possibly unlimited).
    pub(crate) upload_limit: LimiterPair,
    pub(crate) download_limit: LimiterPair,
    /// Set the DHT bit in our handshake (BEP 5): the session runs a DHT and the torrent is public.
    pub(crate) dht: bool,
    /// Whether connections use MSE (read at each dial), and what worked with each address.
    pub(crate) encryption: Arc<mse::Memory>,
    /// The session's clock, for the MSE handshake's deadline.
    pub(crate) clock: Clock,
    /// Which transports outgoing connections may use.
    pub(crate) transport: Transport,
    /// Opens uTP connections through the session's UDP socket.
    pub(crate) utp: UtpConnector,
}

/// Blocks read from disk and written per socket write: small enough that the owner hands out more
/// while these are being written, large enough to amortise the read and the system call.
const BLOCKS_PER_WRITE: usize = 16;

/// The most bytes read per system call while a download limit is set, so the limit paces reads finely
/// rather than in 256 KiB steps.
const LIMITED_READ: usize = 32 * 1024;

/// Our reserved handshake bytes: the Fast Extension (BEP 6) and the extension protocol (BEP 10), and
/// the DHT (BEP 5) when [`ConnContext::dht`] says the session runs one for this torrent.
const fn our_reserved(dht: bool) -> [u8; 8] {
    reserved_bytes(dht, true, true)
}

/// Size of the read buffer: four 16 KiB blocks per read system call. Frames handed to the owner share
/// it, so it is reallocated when they are still alive; larger buffers (256 KiB) measured the same
/// speed with about 20 MiB more peak memory at 600 MiB/s.
const READ_BUFFER: usize = 64 * 1024;

/// Most frames sent to the owner in one batch. A read of tiny messages (a flood of 9-byte `have`s)
/// would otherwise become one batch of ~29,000 frame handles of 32 bytes each, 3.5 times the bytes
/// read, and the owner's queue of batches would hold far more memory than its documented bound.
/// A read of 16 KiB blocks makes ~16 frames, so this never splits ordinary traffic.
const MAX_FRAMES_PER_BATCH: usize = 256;
/// How long a connection we close waits for the peer to close its side (see [`linger`]).
pub(crate) const LINGER: Duration = Duration::from_secs(3);

/// How long a dual-stack session waits for a peer known to speak uTP to answer over it before
/// dialling TCP instead: the SYN and two retransmissions (libtorrent waits about 4 s).
pub(crate) const UTP_FALLBACK: Duration = Duration::from_secs(3);

/// Dials `addr` and runs the connection until it closes or `commands` is dropped.
///
/// Under [`Transport::Both`] a peer known to speak uTP ([`mse::Memory::utp_first`]: PEX flag 0x04,
/// or it reached us over uTP before) is dialled over uTP first and over TCP if it does not answer
/// within [`UTP_FALLBACK`] or refuses; any other peer over TCP first and over uTP if TCP fails.
/// The attempts follow each other, so there is never more than one connection to `addr` from here.
pub(crate) async fn run_outgoing(
    conn: ConnId,
    addr: SocketAddr,
    ctx: ConnContext,
    commands: mpsc::Receiver<Outbound>,
) {
    let full = ctx.connect_timeout;
    let result = match ctx.transport {
        Transport::Tcp => open_outgoing(addr, Carrier::Tcp, full, &ctx).await,
        Transport::Utp => open_outgoing(addr, Carrier::Utp, full, &ctx).await,
        Transport::Both if ctx.encryption.utp_first(addr) => {
            let quick = full.min(UTP_FALLBACK);
            match open_outgoing(addr, Carrier::Utp, quick, &ctx).await {
                Err(e) if e.may_succeed_over_another_carrier() => {
                    tracing::debug!(%addr, "uTP failed ({e}); trying TCP");
                    let tcp = open_outgoing(addr, Carrier::Tcp, full, &ctx).await;
                    if tcp.is_ok() {
                        ctx.encryption.record_utp(addr, false);
                    }
                    tcp.map_err(|_| e)
                }
                other => other,
            }
        }
        // TCP first: most peers take it and it is cheaper on the CPU. A peer that is uTP-only
        // refuses TCP or closes it at once, and one behind a NAT may answer only over UDP.
        Transport::Both => match open_outgoing(addr, Carrier::Tcp, full, &ctx).await {
            Err(e) if e.may_succeed_over_another_carrier() => {
                tracing::debug!(%addr, "TCP failed ({e}); trying uTP");
                open_outgoing(addr, Carrier::Utp, full, &ctx)
                    .await
                    .map_err(|_| e)
            }
            other => other,
        },
    };
    match result {
        Ok((stream, buf, theirs)) => {
            if stream.utp {
                ctx.encryption.record_utp(addr, true);
            }
            run_established(conn, stream, buf, theirs, ctx, commands).await
        }
        Err(error) => report_closed(&ctx, conn, Some(error)).await,
    }
}

/// Runs a connection the session's listener accepted (its handshake already read).
pub(crate) async fn run_incoming(
    conn: ConnId,
    incoming: Incoming,
    ctx: ConnContext,
    commands: mpsc::Receiver<Outbound>,
) {
    let Incoming {
        mut stream,
        buf,
        handshake: theirs,
        ..
    } = incoming;
    if theirs.peer_id == ctx.our_id {
        return report_closed(&ctx, conn, Some(ConnError::SelfConnection)).await;
    }
    // The session routed it here by its info hash, which is one of ours: a hybrid torrent answers
    // under the hash the peer named (BEP 52), v1 or truncated v2.
    let ours = Handshake {
        reserved: our_reserved(ctx.dht),
        info_hash: theirs.info_hash,
        peer_id: ctx.our_id,
    };
    if let Err(e) = stream.write.write_all(&ours.encode()).await {
        return report_closed(&ctx, conn, Some(e.into())).await;
    }
    run_established(conn, stream, buf, theirs, ctx, commands).await;
}

/// The transport of one connection attempt.
#[derive(Debug, Clone, Copy)]
enum Carrier {
    Tcp,
    Utp,
}

/// Opens a connection to `addr` over `carrier`, waiting at most `timeout` for the peer to answer.
async fn dial(
    addr: SocketAddr,
    carrier: Carrier,
    timeout: Duration,
    ctx: &ConnContext,
) -> Result<PeerStream, ConnError> {
    Ok(match carrier {
        Carrier::Tcp => PeerStream::tcp(connect(addr, timeout, ctx).await?),
        Carrier::Utp => PeerStream::utp(ctx.utp.connect(addr, timeout).await?),
    })
}

/// Dials `addr` over `carrier` (within `timeout`) and exchanges BitTorrent handshakes, behind MSE as
/// [`ConnContext::encryption`] says. Under [`Encryption::Prefer`] the way that worked last with
/// `addr` goes first (MSE when unknown), and if the peer refuses it after the connect, the other
/// way once, on a new connection over the same carrier.
async fn open_outgoing(
    addr: SocketAddr,
    carrier: Carrier,
    timeout: Duration,
    ctx: &ConnContext,
) -> Result<(PeerStream, BytesMut, Handshake), ConnError> {
    let policy = ctx.encryption.policy();
    let first = match policy {
        Encryption::Disable => false,
        Encryption::Require => true,
        Encryption::Prefer => ctx.encryption.encrypt_first(addr),
    };
    let stream = dial(addr, carrier, timeout, ctx).await?;
    let (encrypted, result) = match handshake_over(stream, ctx, policy, first).await {
        Err(e) if policy == Encryption::Prefer && !e.is_not_refusal() => {
            let way = |encrypted| if encrypted { "MSE" } else { "plaintext" };
            tracing::debug!(%addr, "{} refused ({e}), trying {}", way(first), way(!first));
            let stream = dial(addr, carrier, timeout, ctx).await?;
            (!first, handshake_over(stream, ctx, policy, !first).await)
        }
        result => (first, result),
    };
    if result.is_ok() && policy == Encryption::Prefer {
        ctx.encryption.record(addr, encrypted);
    }
    result
}

/// Exchanges BitTorrent handshakes over `stream`, first running MSE if `encrypted` (our handshake
/// then goes inside it as the initial payload, saving a round trip).
async fn handshake_over(
    mut stream: PeerStream,
    ctx: &ConnContext,
    policy: Encryption,
    encrypted: bool,
) -> Result<(PeerStream, BytesMut, Handshake), ConnError> {
    let mut buf = BytesMut::with_capacity(READ_BUFFER);
    match mse::methods(policy).filter(|_| encrypted) {
        Some(provide) => {
            let PeerStream {
                read, write, utp, ..
            } = stream;
            let timeout = ctx.handshake_timeout;
            let ours = handshake(ctx);
            let e = mse::initiate(
                read,
                write,
                ctx.info_hash,
                provide,
                &ours,
                timeout,
                ctx.clock,
            );
            let e = e.await?;
            stream = PeerStream {
                read: e.read,
                write: e.write,
                encrypted: true,
                utp,
            };
            buf.extend_from_slice(&e.received);
        }
        None => stream.write.write_all(&handshake(ctx)).await?,
    }
    let theirs = read_handshake(&mut stream.read, &mut buf, ctx).await?;
    Ok((stream, buf, theirs))
}

/// Reads an incoming connection's handshake, in plaintext or behind MSE as `encryption` allows
/// (told apart by the first bytes); `lookup` finds the torrent an MSE handshake names by its
/// `HASH('req2', info hash)`. Returns the stream to go on with, the bytes read past the
/// handshake, and the handshake.
pub(crate) async fn accept_handshake(
    mut stream: PeerStream,
    encryption: Encryption,
    lookup: impl Fn(&[u8; 20]) -> Option<InfoHash>,
    timeout: Duration,
    clock: Clock,
) -> Result<(PeerStream, BytesMut, Handshake), ConnError> {
    let mut buf = BytesMut::with_capacity(4096);
    let classify = async {
        loop {
            if let Some(kind) = mse::classify(&buf) {
                return Ok(kind);
            }
            if stream.read.read_buf(&mut buf).await? == 0 {
                return Err(ConnError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
    };
    let first = tokio::time::timeout(timeout, classify)
        .await
        .map_err(|_| ConnError::HandshakeTimeout(timeout))??;
    let mut skey = None;
    match (first, mse::methods(encryption)) {
        (FirstBytes::Plaintext, _) if encryption == Encryption::Require => {
            return Err(ConnError::EncryptionRequired);
        }
        (FirstBytes::Plaintext, _) => {}
        (FirstBytes::Encrypted, None) => return Err(ConnError::EncryptionDisabled),
        (FirstBytes::Encrypted, Some(allowed)) => {
            let PeerStream {
                read, write, utp, ..
            } = stream;
            let e = mse::respond(read, write, &buf, allowed, lookup, timeout, clock).await?;
            stream = PeerStream {
                read: e.read,
                write: e.write,
                encrypted: true,
                utp,
            };
            buf = e.received;
            skey = Some(e.info_hash);
        }
    }
    let theirs = read_any_handshake(&mut stream.read, &mut buf, timeout).await?;
    match skey {
        Some(skey) if skey != theirs.info_hash => Err(ConnError::WrongInfoHash(theirs.info_hash)),
        _ => Ok((stream, buf, theirs)),
    }
}

fn handshake(ctx: &ConnContext) -> [u8; HANDSHAKE_LEN] {
    Handshake {
        reserved: our_reserved(ctx.dht),
        info_hash: ctx.info_hash,
        peer_id: ctx.our_id,
    }
    .encode()
}

async fn connect(
    addr: SocketAddr,
    timeout: Duration,
    ctx: &ConnContext,
) -> Result<TcpStream, ConnError> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    // Trackers and peers see the address we connect from; with a bind address every connection must
    // come from it, or a tracker records us under another address than the one we listen on.
    if let Some(ip) = ctx.bind_ip {
        if ip.is_ipv4() == addr.is_ipv4() {
            socket.bind(SocketAddr::new(ip, 0))?;
        }
    }
    let stream = tokio::time::timeout(timeout, socket.connect(addr))
        .await
        .map_err(|_| ConnError::ConnectTimeout(timeout))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Reads the peer's handshake into `buf` and checks it is for our torrent and not from ourselves.
/// Bytes after the handshake stay in `buf`.
pub(crate) async fn read_handshake(
    stream: &mut (impl AsyncRead + Unpin),
    buf: &mut BytesMut,
    ctx: &ConnContext,
) -> Result<Handshake, ConnError> {
    let theirs = read_any_handshake(stream, buf, ctx.handshake_timeout).await?;
    if theirs.info_hash != ctx.info_hash {
        return Err(ConnError::WrongInfoHash(theirs.info_hash));
    }
    if theirs.peer_id == ctx.our_id {
        return Err(ConnError::SelfConnection);
    }
    Ok(theirs)
}

/// Reads a handshake for any torrent (the listener uses it to route the connection).
pub(crate) async fn read_any_handshake(
    stream: &mut (impl AsyncRead + Unpin),
    buf: &mut BytesMut,
    timeout: Duration,
) -> Result<Handshake, ConnError> {
    let read = async {
        loop {
            match Handshake::decode(buf) {
                Ok(Some(h)) => {
                    let _ = buf.split_to(HANDSHAKE_LEN);
                    return Ok(h);
                }
                Ok(None) => {}
                Err(e) => return Err(ConnError::BadHandshake(e.to_string())),
            }
            if stream.read_buf(buf).await? == 0 {
                return Err(ConnError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| ConnError::HandshakeTimeout(timeout))?
}

async fn run_established(
    conn: ConnId,
    stream: PeerStream,
    mut buf: BytesMut,
    theirs: Handshake,
    ctx: ConnContext,
    commands: mpsc::Receiver<Outbound>,
) {
    let handshaken = ConnEvent::Handshaken {
        conn,
        handshake: theirs,
        encrypted: stream.encrypted,
        utp: stream.utp,
    };
    if ctx.events.send(handshaken).await.is_err() {
        return;
    }
    let PeerStream {
        read: mut reader,
        write: writer,
        ..
    } = stream;
    // The writer runs on its own so a slow reader on the other side never stops us reading, and the
    // reverse. It ends when the owner drops the command sender or the socket fails.
    let mut write_task = tokio::spawn(write_loop(conn, writer, commands, ctx.clone()));
    let read = async {
        loop {
            let mut frames = Vec::new();
            while frames.len() < MAX_FRAMES_PER_BATCH {
                let Some(total) = frame_len(&buf, ctx.max_frame)? else {
                    break;
                };
                if buf.len() < total {
                    // Make room for the rest of this frame without buffering past it.
                    buf.reserve(total - buf.len());
                    break;
                }
                let mut frame = buf.split_to(total);
                frame.advance(LENGTH_PREFIX_LEN);
                frames.push(frame.freeze());
            }
            let frames_full = frames.len() == MAX_FRAMES_PER_BATCH;
            if !frames.is_empty()
                && ctx
                    .events
                    .send(ConnEvent::Frames { conn, frames })
                    .await
                    .is_err()
            {
                return Ok(());
            }
            if frames_full {
                // More whole frames may wait in the buffer: cut them before reading again.
                continue;
            }
            if buf.capacity() - buf.len() < READ_BUFFER / 4 {
                buf.reserve(READ_BUFFER);
            }
            let n = if ctx.download_limit.is_limited() {
                let n = (&mut reader)
                    .take(LIMITED_READ as u64)
                    .read_buf(&mut buf)
                    .await?;
                ctx.download_limit.acquire(n).await;
                n
            } else {
                reader.read_buf(&mut buf).await?
            };
            if n == 0 {
                return Ok(());
            }
        }
    };
    let (error, uploaded_and_closed) = tokio::select! {
        r = read => (r.err(), false),
        w = &mut write_task => match w {
            Ok(Ok(uploaded)) => (None, uploaded),
            Ok(Err(e)) => (Some(e), false),
            Err(_) => (None, false),
        },
    };
    write_task.abort();
    // Only a peer we sent blocks to can lose something to a reset.
    if uploaded_and_closed {
        linger(&mut reader).await;
    }
    report_closed(&ctx, conn, error).await;
}

/// After our FIN (the writer shut the socket down) on a connection we uploaded on, reads and discards
/// what the peer still sends until it closes too, for at most [`LINGER`]. Closing a socket with unread input makes the kernel send a
/// reset, and a reset can make the peer drop the last blocks we sent before it read them.
async fn linger(reader: &mut ReadHalf) {
    let mut scratch = vec![0; 16 * 1024];
    let drain = async {
        while let Ok(n) = reader.read(&mut scratch).await {
            if n == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

/// Writes what the owner sends, in order, until it drops the sender; then shuts the socket down and
/// returns whether any block was sent. Blocks are read from disk on the blocking pool,
/// [`BLOCKS_PER_WRITE`] at a time, and each write is reported as [`ConnEvent::Sent`].
async fn write_loop(
    conn: ConnId,
    mut writer: WriteHalf,
    mut commands: mpsc::Receiver<Outbound>,
    ctx: ConnContext,
) -> Result<bool, ConnError> {
    let mut uploaded = false;
    // One buffer for this connection's block reads, reused so it is zeroed only once.
    let mut buf = Vec::new();
    while let Some(command) = commands.recv().await {
        match command {
            Outbound::Bytes(bytes) => writer.write_all(&bytes).await?,
            Outbound::Blocks(blocks) => {
                let Some(storage) = &ctx.storage else {
                    return Err(std::io::Error::other("blocks to send but no storage").into());
                };
                for chunk in blocks.chunks(BLOCKS_PER_WRITE) {
                    let storage = Arc::clone(storage);
                    let count = chunk.len() as u32;
                    let chunk = chunk.to_vec();
                    let read = tokio::task::spawn_blocking(move || {
                        let result = read_blocks(&storage, &chunk, &mut buf);
                        (buf, result)
                    })
                    .await
                    .map_err(|_| std::io::Error::other("block read task panicked"))?;
                    buf = read.0;
                    let (len, payload) = read.1?;
                    ctx.upload_limit.acquire(len).await;
                    writer.write_all(&buf[..len]).await?;
                    uploaded = true;
                    let sent = ConnEvent::Sent {
                        conn,
                        blocks: count,
                        bytes: payload,
                    };
                    if ctx.events.send(sent).await.is_err() {
                        return Ok(uploaded);
                    }
                }
            }
        }
    }
    writer.shutdown().await?;
    Ok(uploaded)
}

/// Reads `blocks` into the start of `buf` (grown as needed) as `piece` messages (BEP 3); returns the
/// bytes used and the payload size in bytes.
fn read_blocks(
    storage: &Storage,
    blocks: &[Requested],
    buf: &mut Vec<u8>,
) -> Result<(usize, u64), StorageError> {
    let payload: u64 = blocks.iter().map(|b| u64::from(b.length)).sum();
    let len = payload as usize + blocks.len() * PIECE_HEADER_LEN;
    if buf.len() < len {
        buf.resize(len, 0);
    }
    let mut at = 0;
    for block in blocks {
        let header: &mut [u8; PIECE_HEADER_LEN] = (&mut buf[at..at + PIECE_HEADER_LEN])
            .try_into()
            .expect("slice of header length");
        encode_piece_header(block.piece.get(), block.offset, block.length, header);
        at += PIECE_HEADER_LEN;
        let end = at + block.length as usize;
        storage.read(block.piece, block.offset, &mut buf[at..end])?;
        at = end;
    }
    Ok((len, payload))
}

async fn report_closed(ctx: &ConnContext, conn: ConnId, error: Option<ConnError>) {
    let _ = ctx.events.send(ConnEvent::Closed { conn, error }).await;
}
