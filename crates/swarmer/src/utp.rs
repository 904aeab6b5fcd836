//! uTP connections (BEP 29) as byte streams: the [`UtpRead`] and [`UtpWrite`] halves a connection
//! task reads and writes like a TCP stream's, and [`UtpConnector`], which asks the UDP socket's task
//! (`udp`) to open a connection.
//!
//! The halves never touch the socket or the protocol state. Each connection has one small shared
//! buffer per direction ([`STREAM_BUFFER`] bytes each, so memory is bounded) behind a mutex: a half
//! copies bytes in or out, then puts the connection on the [`Hub`]'s dirty list and wakes the socket
//! task, which moves bytes between those buffers and the sans-IO
//! [`swarmer_proto::utp::Connection`] and wakes the half when there is room or data again.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use swarmer_proto::utp::ConnectionId;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Notify, mpsc, oneshot};

/// Bytes buffered between a half and the socket task, per direction.
pub(crate) const STREAM_BUFFER: usize = 256 * 1024;

/// The socket task's wake-up: connections whose halves moved bytes or went away.
#[derive(Debug, Default)]
pub(crate) struct Hub {
    dirty: Mutex<Vec<ConnectionId>>,
    pub(crate) notify: Notify,
}

impl Hub {
    /// Takes the dirty list.
    pub(crate) fn take_dirty(&self, into: &mut Vec<ConnectionId>) {
        into.append(&mut self.dirty.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

/// What a connection's halves and the socket task share.
#[derive(Debug, Default)]
pub(crate) struct StreamState {
    /// Received bytes the reader has not taken.
    pub(crate) incoming: BytesMut,
    /// The peer finished sending (after `incoming`).
    pub(crate) eof: bool,
    /// The connection failed (reset, timed out); the halves report it.
    pub(crate) error: Option<io::ErrorKind>,
    pub(crate) read_waker: Option<Waker>,
    /// Written bytes the socket task has not taken.
    pub(crate) outgoing: BytesMut,
    /// The writer shut down: a FIN follows `outgoing`.
    pub(crate) shutdown: bool,
    pub(crate) write_waker: Option<Waker>,
    /// Halves still alive; at 0 the socket task closes the connection.
    pub(crate) halves: u8,
    /// On the hub's dirty list already.
    queued: bool,
}

/// One connection's shared state.
#[derive(Debug)]
pub(crate) struct StreamShared {
    pub(crate) id: ConnectionId,
    state: Mutex<StreamState>,
    hub: Arc<Hub>,
}

impl StreamShared {
    pub(crate) fn new(id: ConnectionId, hub: Arc<Hub>) -> Arc<StreamShared> {
        Arc::new(StreamShared {
            id,
            state: Mutex::new(StreamState {
                halves: 2,
                ..StreamState::default()
            }),
            hub,
        })
    }

    /// Locks the state. The socket task takes it after a half put the connection on the dirty
    /// list, so the flag is cleared here.
    pub(crate) fn lock(&self) -> MutexGuard<'_, StreamState> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.queued = false;
        s
    }

    fn lock_half(&self) -> MutexGuard<'_, StreamState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tells the socket task to look at this connection (once until it does).
    fn wake_task(&self, state: &mut StreamState) {
        if !state.queued {
            state.queued = true;
            self.hub
                .dirty
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(self.id);
            self.hub.notify.notify_one();
        }
    }
}

/// A uTP connection's halves, as the socket task hands them out.
#[derive(Debug)]
pub(crate) struct UtpStream {
    pub(crate) read: UtpRead,
    pub(crate) write: UtpWrite,
    pub(crate) peer: SocketAddr,
}

impl UtpStream {
    pub(crate) fn new(shared: Arc<StreamShared>, peer: SocketAddr) -> UtpStream {
        UtpStream {
            read: UtpRead(Arc::clone(&shared)),
            write: UtpWrite(shared),
            peer,
        }
    }
}

/// The receiving half of a uTP connection.
#[derive(Debug)]
pub(crate) struct UtpRead(Arc<StreamShared>);

/// The sending half of a uTP connection.
#[derive(Debug)]
pub(crate) struct UtpWrite(Arc<StreamShared>);

impl AsyncRead for UtpRead {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let shared = &self.0;
        let mut s = shared.lock_half();
        if !s.incoming.is_empty() {
            let n = buf.remaining().min(s.incoming.len());
            buf.put_slice(&s.incoming[..n]);
            s.incoming.advance(n);
            // Room again: the task may have bytes waiting in the connection.
            shared.wake_task(&mut s);
            return Poll::Ready(Ok(()));
        }
        if s.eof {
            return Poll::Ready(Ok(()));
        }
        if let Some(kind) = s.error {
            return Poll::Ready(Err(kind.into()));
        }
        s.read_waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl AsyncWrite for UtpWrite {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let shared = &self.0;
        let mut s = shared.lock_half();
        if let Some(kind) = s.error {
            return Poll::Ready(Err(kind.into()));
        }
        if s.shutdown {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let room = STREAM_BUFFER.saturating_sub(s.outgoing.len());
        if room == 0 {
            s.write_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = room.min(data.len());
        s.outgoing.extend_from_slice(&data[..n]);
        shared.wake_task(&mut s);
        Poll::Ready(Ok(n))
    }

    /// Bytes are handed to the connection as they are written; nothing waits here.
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let shared = &self.0;
        let mut s = shared.lock_half();
        if !s.shutdown {
            s.shutdown = true;
            shared.wake_task(&mut s);
        }
        Poll::Ready(Ok(()))
    }
}

fn drop_half(shared: &StreamShared) {
    let mut s = shared.lock_half();
    s.halves = s.halves.saturating_sub(1);
    shared.wake_task(&mut s);
}

impl Drop for UtpRead {
    fn drop(&mut self) {
        drop_half(&self.0);
    }
}

impl Drop for UtpWrite {
    fn drop(&mut self) {
        drop_half(&self.0);
    }
}

/// What the socket task is asked to do by others than the halves.
#[derive(Debug)]
pub(crate) enum UtpCommand {
    /// Open a connection to `addr`; the stream (or why not) goes to `reply` once the peer answered.
    Connect {
        addr: SocketAddr,
        reply: oneshot::Sender<io::Result<UtpStream>>,
    },
    /// Finish every connection (a FIN after what was written); `done` is told once each is closed.
    Close { done: oneshot::Sender<()> },
    /// Forget every connection, with a RESET to each that is still open; `done` is told once they
    /// are sent.
    Reset { done: oneshot::Sender<()> },
}

/// Opens uTP connections through the session's UDP socket; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct UtpConnector {
    /// Each socket's task by family (`true`: IPv4): one per family the session listens on.
    routes: Vec<(bool, mpsc::Sender<UtpCommand>)>,
}

impl UtpConnector {
    /// Connects through the task of one socket, of the family `ipv4` says.
    pub(crate) fn new(ipv4: bool, commands: mpsc::Sender<UtpCommand>) -> UtpConnector {
        UtpConnector {
            routes: vec![(ipv4, commands)],
        }
    }

    /// Connects through `self`'s socket or `other`'s, whichever has the peer's family.
    pub(crate) fn join(mut self, other: &UtpConnector) -> UtpConnector {
        self.routes.extend(other.routes.iter().cloned());
        self
    }

    /// Connects to `addr`, waiting at most `timeout` for the peer's answer. Errors:
    /// `AddrNotAvailable` without a socket of `addr`'s family, `TimedOut`, the peer's reset.
    pub(crate) async fn connect(
        &self,
        addr: SocketAddr,
        timeout: Duration,
    ) -> io::Result<UtpStream> {
        let Some((_, commands)) = self.routes.iter().find(|(v4, _)| *v4 == addr.is_ipv4()) else {
            // No socket of the peer's family (a bind address of the other one).
            return Err(io::ErrorKind::AddrNotAvailable.into());
        };
        let (reply, rx) = oneshot::channel();
        let attempt = async {
            commands
                .send(UtpCommand::Connect { addr, reply })
                .await
                .map_err(|_| io::Error::from(io::ErrorKind::NotConnected))?;
            rx.await
                .map_err(|_| io::Error::from(io::ErrorKind::NotConnected))?
        };
        // Dropping the reply's receiver on timeout tells the task to forget the attempt.
        tokio::time::timeout(timeout, attempt)
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?
    }

    /// Finishes every connection with a FIN and waits until each is closed, at most `grace`; then
    /// resets those still open. Without it a process that exits leaves its peers holding
    /// connections until they time out, and libtorrent refuses a new one from the same address
    /// meanwhile (measured: a restarted download waited 15 s for its second attempt).
    pub(crate) async fn close_all(&self, grace: Duration) {
        let fin = self.ask_all(|done| UtpCommand::Close { done });
        if tokio::time::timeout(grace, fin).await.is_err() {
            let reset = self.ask_all(|done| UtpCommand::Reset { done });
            let _ = tokio::time::timeout(grace, reset).await;
        }
    }

    /// Sends every socket's task (one per family) the command `make` builds, then waits until
    /// each has carried it out.
    async fn ask_all(&self, make: fn(oneshot::Sender<()>) -> UtpCommand) {
        let mut waits = Vec::with_capacity(self.routes.len());
        for (_, commands) in &self.routes {
            let (done, rx) = oneshot::channel();
            if commands.send(make(done)).await.is_ok() {
                waits.push(rx);
            }
        }
        for rx in waits {
            let _ = rx.await;
        }
    }
}
