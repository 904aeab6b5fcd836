//! One peer connection's IO (BEP 3, "peer protocol"): connecting, the handshake, cutting the byte stream
//! into length-prefixed frames, and writing the bytes the torrent's owner task decided to send. It makes
//! no protocol decisions: frames go to the owner, which decodes them and feeds the engine.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use swarmer_proto::wire::{HANDSHAKE_LEN, Handshake, reserved_bytes};
use swarmer_proto::{InfoHash, PeerId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;

/// Identifies a connection inside one torrent's owner task, from before the handshake until it closes.
pub(crate) type ConnId = u64;

/// What a connection task reports to its torrent's owner task.
#[derive(Debug)]
pub(crate) enum ConnEvent {
    /// The handshake is done: the peer speaks for our torrent.
    Handshaken { conn: ConnId, handshake: Handshake },
    /// Complete frames (length prefix included), in arrival order.
    Frames { conn: ConnId, frames: Vec<Bytes> },
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
    #[error("message of {len} bytes is over the limit of {max} bytes")]
    MessageTooLong { len: u32, max: u32 },
}

impl ConnError {
    /// True when the peer did something wrong (as opposed to the network failing).
    pub(crate) fn is_peer_fault(&self) -> bool {
        matches!(
            self,
            ConnError::BadHandshake(_)
                | ConnError::WrongInfoHash(_)
                | ConnError::MessageTooLong { .. }
        )
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
}

/// Our reserved handshake bytes: the Fast Extension (BEP 6) and the extension protocol (BEP 10); no DHT yet.
const OUR_RESERVED: [u8; 8] = reserved_bytes(false, true, true);

/// Size of the read buffer: large enough for dozens of 16 KiB blocks per read system call.
const READ_BUFFER: usize = 256 * 1024;

/// Dials `addr` and runs the connection until it closes or `commands` is dropped.
pub(crate) async fn run_outgoing(
    conn: ConnId,
    addr: SocketAddr,
    ctx: ConnContext,
    commands: mpsc::Receiver<Bytes>,
) {
    let result = async {
        let stream = connect(addr, &ctx).await?;
        let mut stream = stream;
        stream.write_all(&handshake(&ctx)).await?;
        let mut buf = BytesMut::with_capacity(READ_BUFFER);
        let theirs = read_handshake(&mut stream, &mut buf, &ctx).await?;
        Ok::<_, ConnError>((stream, buf, theirs))
    }
    .await;
    match result {
        Ok((stream, buf, theirs)) => {
            run_established(conn, stream, buf, theirs, ctx, commands).await
        }
        Err(error) => report_closed(&ctx, conn, Some(error)).await,
    }
}

/// Runs a connection the session's listener accepted; `theirs` is the handshake it already read and
/// `buf` anything that followed it.
pub(crate) async fn run_incoming(
    conn: ConnId,
    mut stream: TcpStream,
    buf: BytesMut,
    theirs: Handshake,
    ctx: ConnContext,
    commands: mpsc::Receiver<Bytes>,
) {
    if theirs.peer_id == ctx.our_id {
        return report_closed(&ctx, conn, Some(ConnError::SelfConnection)).await;
    }
    if let Err(e) = stream.write_all(&handshake(&ctx)).await {
        return report_closed(&ctx, conn, Some(e.into())).await;
    }
    run_established(conn, stream, buf, theirs, ctx, commands).await;
}

fn handshake(ctx: &ConnContext) -> [u8; HANDSHAKE_LEN] {
    Handshake {
        reserved: OUR_RESERVED,
        info_hash: ctx.info_hash,
        peer_id: ctx.our_id,
    }
    .encode()
}

async fn connect(addr: SocketAddr, ctx: &ConnContext) -> Result<TcpStream, ConnError> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    // Trackers and peers see the address we connect from; with a bind address every connection must
    // come from it (see ARCHITECTURE.md, "addresses").
    if let Some(ip) = ctx.bind_ip {
        if ip.is_ipv4() == addr.is_ipv4() {
            socket.bind(SocketAddr::new(ip, 0))?;
        }
    }
    let stream = tokio::time::timeout(ctx.connect_timeout, socket.connect(addr))
        .await
        .map_err(|_| ConnError::ConnectTimeout(ctx.connect_timeout))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Reads the peer's handshake into `buf` and checks it is for our torrent and not from ourselves.
/// Bytes after the handshake stay in `buf`.
pub(crate) async fn read_handshake(
    stream: &mut TcpStream,
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
    stream: &mut TcpStream,
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
    stream: TcpStream,
    mut buf: BytesMut,
    theirs: Handshake,
    ctx: ConnContext,
    mut commands: mpsc::Receiver<Bytes>,
) {
    let handshaken = ConnEvent::Handshaken {
        conn,
        handshake: theirs,
    };
    if ctx.events.send(handshaken).await.is_err() {
        return;
    }
    let (mut reader, mut writer) = stream.into_split();
    // The writer runs on its own so a slow reader on the other side never stops us reading, and the
    // reverse. It ends when the owner drops the command sender or the socket fails.
    let mut write_task = tokio::spawn(async move {
        while let Some(bytes) = commands.recv().await {
            writer.write_all(&bytes).await?;
        }
        writer.shutdown().await
    });
    let read = async {
        loop {
            let mut frames = Vec::new();
            loop {
                if buf.len() < 4 {
                    break;
                }
                let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
                if len > ctx.max_frame {
                    return Err(ConnError::MessageTooLong {
                        len,
                        max: ctx.max_frame,
                    });
                }
                let total = 4 + len as usize;
                if buf.len() < total {
                    // Make room for the rest of this frame without buffering past it.
                    buf.reserve(total - buf.len());
                    break;
                }
                frames.push(buf.split_to(total).freeze());
            }
            if !frames.is_empty()
                && ctx
                    .events
                    .send(ConnEvent::Frames { conn, frames })
                    .await
                    .is_err()
            {
                return Ok(());
            }
            if buf.capacity() - buf.len() < READ_BUFFER / 4 {
                buf.reserve(READ_BUFFER);
            }
            if reader.read_buf(&mut buf).await? == 0 {
                return Ok(());
            }
        }
    };
    let error = tokio::select! {
        r = read => r.err(),
        w = &mut write_task => match w {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(ConnError::Io(e)),
            Err(_) => None,
        },
    };
    write_task.abort();
    report_closed(&ctx, conn, error).await;
}

async fn report_closed(ctx: &ConnContext, conn: ConnId, error: Option<ConnError>) {
    let _ = ctx.events.send(ConnEvent::Closed { conn, error }).await;
}
