//! [`FileReader`]: one file of a running torrent as a tokio [`AsyncRead`] + [`AsyncSeek`], for
//! streaming while it downloads. Its position and read-ahead become deadlines (the engine's
//! time-critical pieces, see `wishes`); a read waits until the piece under the position is
//! verified and written, woken by the torrent's verified-pieces `watch` (no polling, no sleeps),
//! and then reads from the torrent's files only bytes of verified pieces, never anything else.
//!
//! Memory per reader: one read of at most [`READ_CHUNK`] bytes (read-ahead is deadlines, not
//! buffers; the page cache keeps what was just written).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use swarmer_proto::metainfo::Metainfo;
use swarmer_proto::{Bitfield, PieceIndex};
use tokio::io::{AsyncRead, AsyncSeek, ReadBuf};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::wishes::{self, Window};
use crate::storage::Storage;

/// Most bytes one read takes from disk (and holds in memory).
pub const READ_CHUNK: usize = 256 * 1024;
/// Least read-ahead, bytes.
pub const MIN_READ_AHEAD: u64 = 2 << 20;
/// Most read-ahead, bytes.
pub const MAX_READ_AHEAD: u64 = 32 << 20;
/// Seconds of the reader's own rate that its read-ahead covers (between the two bounds above).
const READ_AHEAD_SECONDS: f64 = 20.0;

/// What a running torrent's readers share with it: the wishes and the verified pieces.
#[derive(Clone)]
pub(crate) struct ReaderParts {
    pub(crate) metainfo: Arc<Metainfo>,
    pub(crate) storage: Arc<Storage>,
    pub(crate) wishes: Arc<wishes::Shared>,
    /// The verified pieces, published by the owner task after each change; closed when the
    /// torrent's task ends.
    pub(crate) have: watch::Receiver<Arc<Bitfield>>,
}

type Wait = Pin<Box<dyn Future<Output = bool> + Send>>;

enum State {
    Idle,
    /// Waiting for the verified pieces to change.
    Waiting(Wait),
    /// Reading `len` bytes at file offset `at` on the blocking pool.
    Reading {
        at: u64,
        job: JoinHandle<io::Result<Vec<u8>>>,
    },
}

/// One file of a running torrent, read while it downloads: see the module documentation. Made by
/// [`TorrentHandle::open_file`](crate::TorrentHandle::open_file); several may be open at once
/// (at most [`MAX_READERS`](crate::MAX_READERS) per torrent). Dropping it clears its deadlines.
///
/// Reads return only bytes of verified pieces. A read waits as long as its piece is missing (a
/// skipped file's pieces are not downloaded); it fails with [`io::ErrorKind::BrokenPipe`] once the
/// torrent has stopped without the piece.
pub struct FileReader {
    parts: ReaderParts,
    id: u64,
    /// The file's first byte in the torrent, and its length.
    start: u64,
    len: u64,
    /// The position in the file.
    pos: u64,
    state: State,
    /// Bytes read from disk, not yet returned, and the file offset of the first.
    ready: Option<(u64, Vec<u8>)>,
    /// The window last published.
    published: Option<Window>,
    /// The reader's rate: bytes returned since `since`, and the estimate, bytes/s.
    since: Instant,
    returned: u64,
    rate: f64,
    seek_to: Option<u64>,
}

impl FileReader {
    /// A reader of file `index` (of `info.files`) at position 0, or `None` when `MAX_READERS` are
    /// open. The caller checked the index.
    pub(crate) fn new(parts: ReaderParts, index: usize) -> Option<FileReader> {
        let layout = &parts.metainfo.info.layout;
        let file = layout.file(index)?;
        let (start, len) = (layout.file_offset(file), layout.file_length(file));
        let id = parts.wishes.add_reader()?;
        let mut reader = FileReader {
            parts,
            id,
            start,
            len,
            pos: 0,
            state: State::Idle,
            ready: None,
            published: None,
            since: Instant::now(),
            returned: 0,
            rate: 0.0,
            seek_to: None,
        };
        reader.publish();
        Some(reader)
    }

    /// The file's length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True for a file of no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The position in the file, bytes.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The read-ahead now, bytes: 20 seconds of the rate this reader reads at,
    /// between [`MIN_READ_AHEAD`] and [`MAX_READ_AHEAD`].
    pub fn read_ahead(&self) -> u64 {
        ((self.rate * READ_AHEAD_SECONDS) as u64).clamp(MIN_READ_AHEAD, MAX_READ_AHEAD)
    }

    /// Publishes the window when it moved to another piece or its size changed by a quarter.
    fn publish(&mut self) {
        let start = self.start + self.pos.min(self.len.saturating_sub(1));
        let end = self.start + (self.pos + self.read_ahead()).min(self.len);
        let window = Window {
            start,
            end,
            rate: self.rate,
        };
        let layout = &self.parts.metainfo.info.layout;
        let same = self.published.is_some_and(|old| {
            wishes::piece_at(layout, old.start) == wishes::piece_at(layout, start)
                && (old.end.abs_diff(end) as f64) < 0.25 * (end - start).max(1) as f64
        });
        if !same && self.len > 0 {
            self.published = Some(window);
            self.parts.wishes.set_window(self.id, window);
        }
    }

    /// Counts `n` bytes returned toward the reader's rate (a fresh estimate each second).
    fn count(&mut self, n: usize) {
        self.returned += n as u64;
        let elapsed = self.since.elapsed();
        if elapsed >= Duration::from_secs(1) {
            let sample = self.returned as f64 / elapsed.as_secs_f64();
            self.rate = if self.rate == 0.0 {
                sample
            } else {
                0.5 * self.rate + 0.5 * sample
            };
            self.since = Instant::now();
            self.returned = 0;
        }
    }

    /// Starts reading at the position, or waiting for its piece.
    fn start_read(&mut self) -> io::Result<()> {
        let at = self.start + self.pos;
        let layout = &self.parts.metainfo.info.layout;
        let piece = wishes::piece_at(layout, at).expect("the position is inside the file");
        let have = Arc::clone(&self.parts.have.borrow_and_update());
        if !have.get(piece.as_usize()) {
            if self.parts.have.has_changed().is_err() {
                return Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "the torrent stopped before the piece was verified",
                ));
            }
            // The clone has seen what `self.parts.have` has seen, so no change is missed.
            let mut have = self.parts.have.clone();
            self.state = State::Waiting(Box::pin(async move { have.changed().await.is_ok() }));
            return Ok(());
        }
        // To the end of the piece (only verified bytes), the chunk or the file, whichever is first.
        let piece_end = layout.piece_offset(piece) + u64::from(layout.piece_len(piece));
        let end = piece_end
            .min(at + READ_CHUNK as u64)
            .min(self.start + self.len);
        let len = (end - at) as usize;
        let offset = (at - layout.piece_offset(piece)) as u32;
        let storage = Arc::clone(&self.parts.storage);
        let pos = self.pos;
        self.state = State::Reading {
            at: pos,
            job: tokio::task::spawn_blocking(move || read(&storage, piece, offset, len)),
        };
        Ok(())
    }
}

fn read(storage: &Storage, piece: PieceIndex, offset: u32, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0; len];
    storage
        .read(piece, offset, &mut buf)
        .map_err(io::Error::other)?;
    Ok(buf)
}

impl AsyncRead for FileReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.pos >= this.len || buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            if let Some((at, data)) = &this.ready {
                let end = at + data.len() as u64;
                if (*at..end).contains(&this.pos) {
                    let from = (this.pos - at) as usize;
                    let n = (data.len() - from).min(buf.remaining());
                    buf.put_slice(&data[from..from + n]);
                    this.pos += n as u64;
                    if this.pos >= end {
                        this.ready = None;
                    }
                    this.count(n);
                    this.publish();
                    return Poll::Ready(Ok(()));
                }
                this.ready = None;
            }
            match &mut this.state {
                State::Idle => this.start_read()?,
                State::Waiting(wait) => {
                    let open = ready!(wait.as_mut().poll(cx));
                    this.state = State::Idle;
                    if !open {
                        // Closed: one last look at the final pieces, then an error.
                        let have = this.parts.have.borrow().clone();
                        let layout = &this.parts.metainfo.info.layout;
                        let piece = wishes::piece_at(layout, this.start + this.pos);
                        if !piece.is_some_and(|p| have.get(p.as_usize())) {
                            return Poll::Ready(Err(io::Error::new(
                                io::ErrorKind::BrokenPipe,
                                "the torrent stopped before the piece was verified",
                            )));
                        }
                    }
                }
                State::Reading { at, job } => {
                    let at = *at;
                    let joined = ready!(Pin::new(job).poll(cx));
                    this.state = State::Idle;
                    let data = joined.map_err(io::Error::other)??;
                    this.ready = Some((at, data));
                }
            }
        }
    }
}

impl AsyncSeek for FileReader {
    fn start_seek(mut self: Pin<&mut Self>, position: io::SeekFrom) -> io::Result<()> {
        let target = match position {
            io::SeekFrom::Start(n) => Some(n),
            io::SeekFrom::End(d) => self.len.checked_add_signed(d),
            io::SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        let target = target
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        self.seek_to = Some(target);
        Ok(())
    }

    fn poll_complete(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        if let Some(target) = self.seek_to.take() {
            if target != self.pos {
                self.pos = target;
                // A read under way is for the old position (its result is dropped when it ends),
                // and a wait for the old position's piece is of no use.
                self.state = State::Idle;
                self.publish();
            }
        }
        Poll::Ready(Ok(self.pos))
    }
}

impl Drop for FileReader {
    fn drop(&mut self) {
        self.parts.wishes.remove_reader(self.id);
    }
}

impl std::fmt::Debug for FileReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileReader")
            .field("start", &self.start)
            .field("len", &self.len)
            .field("pos", &self.pos)
            .finish_non_exhaustive()
    }
}
