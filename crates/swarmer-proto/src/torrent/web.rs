//! Web seeds as sources of the engine (BEP 19, BEP 17): a web seed has every piece, never chokes
//! and is handed one fetch at a time, a contiguous run of whole pieces sized to its measured rate
//! ([`Config::web_fetch_seconds`]) within the memory budget for unverified pieces. Its bytes come
//! back in order ([`Torrent::handle_web_data`]) and are cut into blocks that go through the same
//! picker, piece buffers, verification and trust as a peer's; a failed fetch backs the seed off
//! ([`crate::webseed::backoff`]) and a piece it sent alone that fails verification drops it.
//! Planning the HTTP requests of a fetch is [`crate::webseed`]'s, doing them the driver's.
//!
//! [`Config::web_fetch_seconds`]: super::Config::web_fetch_seconds

use std::collections::VecDeque;
use std::time::Duration;

use super::download::Source;
use super::{
    Action, FetchEnd, HEADROOM_PIECES, Offence, PeerFault, RateMeter, Torrent, WebSeedKey,
    WebSeedStatus,
};
use crate::picker::BlockOutcome;
use crate::time::Instant;
use crate::{BLOCK_SIZE, BlockRef};

/// One web seed's state.
#[derive(Debug, Default)]
pub(super) struct WebSeed {
    /// The fetch under way: the next byte expected and the end, over the whole torrent.
    fetch: Option<(u64, u64)>,
    /// Blocks of the fetch asked of this seed and not yet received, each counted in the picker.
    pub(super) in_flight: VecDeque<BlockRef>,
    /// The bytes of the block being received, until it is whole.
    partial: Vec<u8>,
    down: RateMeter,
    downloaded: u64,
    /// Bytes arrived since the last tick.
    sending: bool,
    failures: u32,
    retry_at: Option<Instant>,
    trust: i32,
}

impl Torrent {
    /// Adds a web seed; its first fetch is planned at once (see [`Action::WebFetch`]).
    pub fn add_web_seed(&mut self, now: Instant) -> WebSeedKey {
        let key = WebSeedKey(self.next_web_key);
        self.next_web_key += 1;
        self.web_seeds.insert(key, WebSeed::default());
        if self.next_tick.is_none() {
            self.next_tick = Some(now + Duration::from_secs(1));
        }
        self.fill_web(key, now);
        key
    }

    /// Forgets a web seed: its outstanding blocks go back to the picker.
    pub fn remove_web_seed(&mut self, key: WebSeedKey) {
        if let Some(seed) = self.web_seeds.remove(&key) {
            for block in seed.in_flight {
                self.picker.request_dropped(block);
            }
        }
    }

    /// How web seed `key` stands, or `None` if it was dropped or removed.
    pub fn web_seed_status(&self, key: WebSeedKey) -> Option<WebSeedStatus> {
        let seed = self.web_seeds.get(&key)?;
        Some(WebSeedStatus {
            download_rate: seed.down.rate as u64,
            downloaded: seed.downloaded,
            fetching: seed.fetch.is_some(),
            sending: seed.sending,
            failures: seed.failures,
            retry_at: seed.retry_at,
        })
    }

    /// The next bytes of web seed `key`'s fetch, in order from its first byte, in pieces of any
    /// size. Bytes past the fetch's end, and any when no fetch is under way, are counted as wasted.
    pub fn handle_web_data(&mut self, key: WebSeedKey, mut data: &[u8], now: Instant) {
        let Some(seed) = self.web_seeds.get_mut(&key) else {
            return;
        };
        seed.sending = true;
        let piece_length = u64::from(self.layout.piece_length());
        while !data.is_empty() {
            let seed = self.web_seeds.get_mut(&key).expect("checked");
            let Some((next, end)) = seed.fetch.filter(|(next, end)| next < end) else {
                break;
            };
            // Fetches start on a block boundary, so `next` is as far into its block as `partial`.
            let piece = self
                .layout
                .piece((next / piece_length) as u32)
                .expect("a fetch is within the torrent");
            let in_piece = next - self.layout.piece_offset(piece);
            let block = self
                .layout
                .block(piece, (in_piece / u64::from(BLOCK_SIZE)) as u32)
                .expect("a fetch is within the torrent");
            let need = block.length as usize - seed.partial.len();
            let take = need.min(data.len());
            let (chunk, rest) = data.split_at(take);
            data = rest;
            seed.fetch = Some((next + take as u64, end));
            seed.down.add(take as u64);
            seed.downloaded += take as u64;
            self.stats.downloaded += take as u64;
            if seed.partial.is_empty() && take == block.length as usize {
                self.web_block(key, block, chunk, now);
            } else {
                seed.partial.extend_from_slice(chunk);
                if take == need {
                    let whole = std::mem::take(&mut seed.partial);
                    self.web_block(key, block, &whole, now);
                    if let Some(seed) = self.web_seeds.get_mut(&key) {
                        seed.partial = whole;
                        seed.partial.clear();
                    }
                }
            }
            if !self.web_seeds.contains_key(&key) {
                // Dropped while its block was handled: the rest is of no use.
                return;
            }
        }
        self.stats.wasted += data.len() as u64;
    }

    /// Web seed `key`'s fetch ended. Blocks it did not deliver go back to the picker; after a
    /// failure, or a fetch that ended short, the seed waits ([`crate::webseed::backoff`] for its
    /// failures in a row, or what the server asked if longer) before its next fetch. Otherwise the
    /// next fetch is planned at once.
    pub fn handle_web_fetch_end(&mut self, key: WebSeedKey, end: FetchEnd, now: Instant) {
        let Some(seed) = self.web_seeds.get_mut(&key) else {
            return;
        };
        let fetch = seed.fetch.take();
        seed.partial.clear();
        let whole = end == FetchEnd::Done && fetch.is_some_and(|(next, end)| next == end);
        for block in seed.in_flight.drain(..) {
            self.picker.request_dropped(block);
        }
        if whole {
            seed.failures = 0;
        } else {
            seed.failures = seed.failures.saturating_add(1);
            let asked = match end {
                FetchEnd::Failed { retry_after } => retry_after.unwrap_or_default(),
                FetchEnd::Done => Duration::ZERO,
            };
            let wait = crate::webseed::backoff(seed.failures).max(asked);
            seed.retry_at = Some(now + wait);
        }
        // Blocks it gave back may go to peers at once.
        self.fill_all(now);
    }

    /// A whole block of web seed `key`'s fetch.
    fn web_block(&mut self, key: WebSeedKey, block: BlockRef, data: &[u8], now: Instant) {
        let seed = self.web_seeds.get_mut(&key).expect("caller checked");
        let ours = match seed.in_flight.iter().position(|b| *b == block) {
            Some(pos) => {
                seed.in_flight.remove(pos);
                1
            }
            None => 0,
        };
        // A block of the fetch's span not asked of this seed (received already, or at its
        // duplicate limit in endgame, or given to a peer since) is still of use if needed: the
        // server sent what was asked of it, and the piece hash judges it.
        let duplicated = self.picker.request_count(block) > ours;
        match self.picker.block_received(block) {
            BlockOutcome::Unneeded => self.stats.wasted += u64::from(block.length),
            BlockOutcome::New { piece_complete } => {
                self.store_block(block, data, Source::Web(key));
                if duplicated {
                    self.cancel_duplicates(block, now);
                }
                if piece_complete {
                    self.piece_ready(block.piece);
                }
            }
        }
    }

    /// Plans web seed `key`'s next fetch if it is idle, not backed off, and there is something to
    /// fetch within the memory budget.
    pub(super) fn fill_web(&mut self, key: WebSeedKey, now: Instant) {
        let Some(seed) = self.web_seeds.get_mut(&key) else {
            return;
        };
        if seed.fetch.is_some() || seed.retry_at.is_some_and(|t| now < t) {
            return;
        }
        seed.retry_at = None;
        let rate = seed.down.rate;
        let piece_length = u64::from(self.layout.piece_length());
        let bytes = if rate > 0.0 {
            (rate * self.config.web_fetch_seconds) as u64
        } else {
            self.config.first_web_fetch
        };
        let max_pieces = (self.config.max_web_fetch / piece_length).max(1);
        let pieces = bytes.div_ceil(piece_length).clamp(1, max_pieces);
        // As a peer with nothing in flight may, a web seed may go a few pieces over the budget.
        let started = (self.picker.partial_count() + self.verifying.len()) as u64;
        let max_new = (self.budget_pieces() + HEADROOM_PIECES).saturating_sub(started);
        let mut taken = std::mem::take(&mut self.scratch);
        taken.clear();
        // An idle seed has nothing in flight.
        let run = self
            .picker
            .pick_run(pieces as usize, max_new as usize, |_| false, &mut taken);
        if let Some((first, last)) = run {
            let start = self.layout.piece_offset(first.piece) + u64::from(first.offset);
            let end = self.layout.piece_offset(last.piece) + u64::from(last.offset + last.length);
            let seed = self.web_seeds.get_mut(&key).expect("checked");
            seed.fetch = Some((start, end));
            seed.in_flight.extend(taken.iter().copied());
            self.actions.push_back(Action::WebFetch {
                seed: key,
                offset: start,
                length: end - start,
            });
        }
        self.scratch = taken;
    }

    /// The tick's part for web seeds: their rates (fetches of seeds whose wait is over start
    /// with the tick's [`Torrent::fill_all`]). Returns their total rate over the tick, bytes/s.
    pub(super) fn tick_web_seeds(&mut self, elapsed: f64) -> f64 {
        let mut total = 0.0;
        for seed in self.web_seeds.values_mut() {
            seed.sending = seed.down.this_tick > 0;
            total += seed.down.tick(elapsed);
        }
        total
    }

    /// A piece web seed `key` contributed to failed verification: `penalty` as for a peer's
    /// address (4 when it sent all of the piece, 2 when others sent some). A seed that sent a
    /// failed piece alone, or whose trust falls to the ban level, is dropped.
    pub(super) fn web_seed_failed_piece(&mut self, key: WebSeedKey, penalty: i32) {
        let Some(seed) = self.web_seeds.get_mut(&key) else {
            return;
        };
        seed.trust -= penalty;
        if penalty >= 4 || seed.trust <= self.config.ban_trust {
            self.remove_web_seed(key);
            self.actions.push_back(Action::DropWebSeed {
                seed: key,
                fault: PeerFault::Misbehaved(Offence::HashFailures),
            });
        }
    }

    /// A piece web seed `key` contributed to passed verification.
    pub(super) fn web_seed_good_piece(&mut self, key: WebSeedKey) {
        if let Some(seed) = self.web_seeds.get_mut(&key) {
            seed.trust = (seed.trust + 1).min(20);
        }
    }
}
