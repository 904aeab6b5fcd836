//! What a running torrent's readers and its download order wish to have soon, and the piece
//! deadlines that follows from them (the engine's time-critical pieces, `set_piece_deadline`):
//!
//! - each open [`FileReader`](super::FileReader) publishes a window: the bytes under its position
//!   and its read-ahead, and the rate it reads at. The piece under the position is due now, each
//!   further piece when the reader would reach it at that rate;
//! - **sequential**: the first [`SEQUENTIAL_WINDOW`] bytes of wanted pieces not yet verified, in
//!   order, each due a little after the one before (see [`desired`]);
//! - **first and last pieces**: the first and last piece of every wanted file, due in a few
//!   seconds (what players read first: headers, and an MP4's index at the end).
//!
//! Readers and the handle write here under a short lock and wake the owner task, which computes
//! the deadlines and hands them to the engine; no one waits on the torrent. A deadline once given
//! only moves earlier while it is still wished for, so a piece does not become less urgent
//! because time passed.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use swarmer_proto::layout::Layout;
use swarmer_proto::time::Instant;
use swarmer_proto::{Bitfield, FilePriority, PieceIndex};
use tokio::sync::Notify;

/// Most readers open at once on one torrent.
pub const MAX_READERS: usize = 64;
/// Bytes of pieces a sequential download keeps deadlines on, from the first missing one.
pub const SEQUENTIAL_WINDOW: u64 = 16 << 20;
/// The slowest rate assumed for spacing deadlines (a reader's or the download's), bytes/s: a
/// stalled download does not push deadlines out of sight.
const MIN_RATE: f64 = 256.0 * 1024.0;
/// How far off the first piece of a sequential window, and first and last pieces, are due.
const POLICY_LEAD: Duration = Duration::from_secs(2);
/// Pieces of a reader's window under its position and the next are due now; those further ahead
/// this much later (plus their distance at the reader's rate), so another reader's seek, due now,
/// comes before a read-ahead (an HTTP reader keeps reading ahead into its socket's buffer after
/// its client went to another position).
const READ_AHEAD_LEAD: Duration = Duration::from_secs(2);

/// One reader's wish: the torrent bytes `start..end` (its position and read-ahead), read at
/// `rate` bytes/s.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Window {
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) rate: f64,
}

/// Every wish of one torrent.
#[derive(Debug, Default)]
pub(crate) struct Wishes {
    readers: BTreeMap<u64, Window>,
    next_reader: u64,
    /// Download wanted pieces in order (through deadlines).
    pub(crate) sequential: bool,
    /// The first and last piece of every wanted file first.
    pub(crate) first_last: bool,
}

impl Wishes {
    /// True when nothing is wished: no deadlines at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.readers.is_empty() && !self.sequential && !self.first_last
    }
}

/// The wishes, shared by the handle, the readers and the owner task.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    wishes: Mutex<Wishes>,
    /// Wakes the owner task after a change.
    pub(crate) changed: Notify,
}

impl Shared {
    /// Wishes for a download `sequential` and first-and-last pieces first or not.
    pub(crate) fn new(sequential: bool, first_last: bool) -> Shared {
        Shared {
            wishes: Mutex::new(Wishes {
                sequential,
                first_last,
                ..Wishes::default()
            }),
            changed: Notify::new(),
        }
    }

    /// Runs `f` on the wishes under the lock, then wakes the owner.
    pub(crate) fn update<T>(&self, f: impl FnOnce(&mut Wishes) -> T) -> T {
        let out = f(&mut self.wishes.lock().unwrap_or_else(|e| e.into_inner()));
        self.changed.notify_one();
        out
    }

    /// Reads the wishes under the lock.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Wishes) -> T) -> T {
        f(&self.wishes.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// A new reader's id, or `None` when [`MAX_READERS`] are open.
    pub(crate) fn add_reader(&self) -> Option<u64> {
        self.update(|w| {
            if w.readers.len() >= MAX_READERS {
                return None;
            }
            let id = w.next_reader;
            w.next_reader += 1;
            Some(id)
        })
    }

    /// Sets reader `id`'s window.
    pub(crate) fn set_window(&self, id: u64, window: Window) {
        self.update(|w| w.readers.insert(id, window));
    }

    /// Forgets reader `id` (it was dropped): its deadlines are cleared.
    pub(crate) fn remove_reader(&self, id: u64) {
        self.update(|w| w.readers.remove(&id));
    }
}

/// What [`desired`] needs to know of the torrent.
pub(crate) struct Facts<'a> {
    pub(crate) layout: &'a Layout,
    /// Its verified pieces.
    pub(crate) have: &'a Bitfield,
    /// Each piece's priority (empty: all wanted).
    pub(crate) priorities: &'a [FilePriority],
    /// Its files as `(first byte in the torrent, length, wanted)`, padding files left out.
    pub(crate) files: &'a [(u64, u64, bool)],
    /// Its download rate, bytes/s.
    pub(crate) download_rate: u64,
}

/// The deadlines `wishes` ask for now, for the torrent `facts` describe. `current` are the
/// deadlines in force: a piece still wished for keeps its deadline if that is earlier.
pub(crate) fn desired(
    wishes: &Wishes,
    facts: &Facts<'_>,
    now: Instant,
    current: impl Fn(PieceIndex) -> Option<Instant>,
) -> BTreeMap<PieceIndex, Instant> {
    let Facts {
        layout,
        have,
        priorities,
        files,
        download_rate,
    } = *facts;
    let mut out: BTreeMap<PieceIndex, Instant> = BTreeMap::new();
    let mut wish = |piece: PieceIndex, at: Instant| {
        if have.get(piece.as_usize()) {
            return;
        }
        let at = current(piece).map_or(at, |old| old.min(at));
        out.entry(piece)
            .and_modify(|d| *d = (*d).min(at))
            .or_insert(at);
    };
    let wanted = |piece: PieceIndex| {
        priorities
            .get(piece.as_usize())
            .is_none_or(|p| p.is_wanted())
    };
    for window in wishes.readers.values() {
        let rate = window.rate.max(MIN_RATE);
        let Some(first) = piece_at(layout, window.start) else {
            continue;
        };
        for (k, piece) in layout.pieces().skip(first.as_usize()).enumerate() {
            let offset = layout.piece_offset(piece);
            if offset >= window.end.max(window.start + 1) {
                break;
            }
            let ahead = offset.saturating_sub(window.start) as f64 / rate;
            let lead = if k < 2 {
                Duration::ZERO
            } else {
                READ_AHEAD_LEAD
            };
            wish(piece, now + lead + Duration::from_secs_f64(ahead));
        }
    }
    let piece_time = f64::from(layout.piece_length()) / (download_rate as f64).max(MIN_RATE);
    if wishes.sequential {
        let mut bytes = 0;
        let missing = layout
            .pieces()
            .filter(|p| wanted(*p) && !have.get(p.as_usize()));
        for (k, piece) in missing.enumerate() {
            if bytes >= SEQUENTIAL_WINDOW {
                break;
            }
            bytes += u64::from(layout.piece_len(piece));
            let ahead = POLICY_LEAD + Duration::from_secs_f64(k as f64 * piece_time);
            wish(piece, now + ahead);
        }
    }
    if wishes.first_last {
        for &(start, len, file_wanted) in files {
            if !file_wanted || len == 0 {
                continue;
            }
            for at in [start, start + len - 1] {
                if let Some(piece) = piece_at(layout, at) {
                    wish(piece, now + POLICY_LEAD);
                }
            }
        }
    }
    out
}

/// The piece holding torrent byte `offset`, if it is inside the torrent.
pub(crate) fn piece_at(layout: &Layout, offset: u64) -> Option<PieceIndex> {
    if offset >= layout.total_length() {
        return None;
    }
    layout.piece((offset / u64::from(layout.piece_length())) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Instant {
        Instant::from_origin(Duration::from_millis(ms))
    }

    #[test]
    fn a_readers_window_is_due_at_its_rate_and_keeps_earlier_deadlines() {
        // 10 pieces of 1 MiB; a reader at byte 2.5 MiB with 3 MiB of read-ahead at 1 MiB/s.
        let layout = Layout::new(1 << 20, [10 << 20]).unwrap();
        let mut wishes = Wishes::default();
        wishes.readers.insert(
            0,
            Window {
                start: (5 << 20) / 2,
                end: (11 << 20) / 2,
                rate: f64::from(1 << 20),
            },
        );
        let have = Bitfield::new(10);
        let piece = |i| layout.piece(i).unwrap();
        let facts = Facts {
            layout: &layout,
            have: &have,
            priorities: &[],
            files: &[],
            download_rate: 0,
        };
        let got = desired(&wishes, &facts, at(1000), |p| {
            (p == piece(4)).then(|| at(1200))
        });
        let got: Vec<(u32, Instant)> = got.into_iter().map(|(p, t)| (p.get(), t)).collect();
        // Piece 2 holds the position (due now), 3 starts half a MiB on, 4 kept its earlier
        // deadline, 5 starts 2.5 MiB on, plus the read-ahead's lead.
        assert_eq!(
            got,
            [(2, at(1000)), (3, at(1500)), (4, at(1200)), (5, at(5500))]
        );
    }

    #[test]
    fn sequential_and_first_last_pieces() {
        let layout = Layout::new(1 << 20, [3 << 20, 40 << 20]).unwrap();
        let mut have = Bitfield::new(43);
        have.set(0);
        let wishes = Wishes {
            sequential: true,
            ..Wishes::default()
        };
        let mut facts = Facts {
            layout: &layout,
            have: &have,
            priorities: &[],
            files: &[],
            download_rate: 1 << 20,
        };
        let got = desired(&wishes, &facts, at(0), |_| None);
        let pieces: Vec<u32> = got.keys().map(|p| p.get()).collect();
        assert_eq!(
            pieces,
            (1..17).collect::<Vec<_>>(),
            "16 MiB from the first missing"
        );
        assert!(got.values().is_sorted(), "in order");
        let wishes = Wishes {
            first_last: true,
            ..Wishes::default()
        };
        let files = [(0, 3 << 20, true), (3 << 20, 40 << 20, false)];
        facts.files = &files;
        let got = desired(&wishes, &facts, at(0), |_| None);
        let pieces: Vec<u32> = got.keys().map(|p| p.get()).collect();
        assert_eq!(pieces, [2], "piece 0 is there; the second file is skipped");
    }
}
