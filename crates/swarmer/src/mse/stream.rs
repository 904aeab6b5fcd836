//! A byte stream's halves under RC4 (MSE's payload stream): [`CipherRead`] decrypts in place what
//! the inner reader returns, [`CipherWrite`] encrypts into a bounded buffer of its own and writes
//! that out before taking more, so the keystream never runs ahead of the bytes on the wire.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use swarmer_proto::mse::Rc4Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Most plaintext bytes taken per write: the encrypted copy is at most this large.
const CHUNK: usize = 64 * 1024;

/// Decrypts what `inner` reads.
pub(crate) struct CipherRead<R> {
    inner: R,
    cipher: Rc4Stream,
}

impl<R> CipherRead<R> {
    pub(crate) fn new(inner: R, cipher: Rc4Stream) -> CipherRead<R> {
        CipherRead { inner, cipher }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for CipherRead<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        this.cipher.apply(&mut buf.filled_mut()[before..]);
        Poll::Ready(Ok(()))
    }
}

/// Encrypts what is written to `inner`. A write is accepted once it is encrypted into `pending`;
/// the next write, flush or shutdown first finishes writing `pending` out.
pub(crate) struct CipherWrite<W> {
    inner: W,
    cipher: Rc4Stream,
    /// Encrypted bytes taken but not yet written; `pending[written..]` is left.
    pending: Vec<u8>,
    written: usize,
}

impl<W> CipherWrite<W> {
    pub(crate) fn new(inner: W, cipher: Rc4Stream) -> CipherWrite<W> {
        CipherWrite {
            inner,
            cipher,
            pending: Vec::new(),
            written: 0,
        }
    }
}

impl<W: AsyncWrite + Unpin> CipherWrite<W> {
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let n =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.pending.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for CipherWrite<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        let n = data.len().min(CHUNK);
        this.pending.extend_from_slice(&data[..n]);
        this.cipher.apply(&mut this.pending);
        // Start writing at once; an error or a full socket shows on the next call.
        if let Poll::Ready(Err(e)) = this.poll_pending(cx) {
            tracing::trace!("encrypted write failed: {e}");
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}
