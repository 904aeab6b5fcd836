//! The queue: which torrents run. Not paused, not failed, metadata known, then in
//! `queue_position` order up to `max_active_downloads` unfinished and `max_active_seeds` finished
//! torrents, and at most [`MAX_STARTING`] being started at once. A pure function of the entries and
//! the settings; the owner applies the [`Plan`].

use std::collections::BTreeMap;

use super::entry::{Entry, Hold, Run};
use crate::daemon::store::Settings;

/// Most torrents being started (files `stat`ed, opened, resume state read) at once.
const MAX_STARTING: usize = 16;

/// What the owner should do now, in this order: stop, start, fetch metadata.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Plan {
    /// Running torrents over the limits: they queue.
    pub(super) stop: Vec<u64>,
    /// Idle torrents with a slot.
    pub(super) start: Vec<u64>,
    /// Magnet links whose metadata nobody is fetching.
    pub(super) fetch: Vec<u64>,
}

/// Decides which torrents run: not paused, not failed, metadata known, and within the download
/// and seed slots in queue order; torrents without metadata (and no fetch running) get a fetch.
pub(super) fn plan(entries: &BTreeMap<u64, Entry>, settings: &Settings) -> Plan {
    // One pass over the map; the walk below follows the references instead of looking each id up
    // again (this runs after every batch of reports, over thousands of torrents in a daemon).
    let mut starting = 0;
    let mut order: Vec<(u32, u64, &Entry)> = entries
        .iter()
        .map(|(&id, e)| {
            starting += usize::from(matches!(e.run, Run::Starting));
            (e.record.queue_position, id, e)
        })
        .collect();
    order.sort_unstable_by_key(|&(position, id, _)| (position, id));
    let (mut downloads, mut seeds) = (0u32, 0u32);
    let max_down = settings.max_active_downloads.unwrap_or(u32::MAX);
    let max_seed = settings.max_active_seeds.unwrap_or(u32::MAX);
    let mut plan = Plan::default();
    for (_, id, e) in order {
        if e.record.paused || e.error.is_some() || !matches!(e.hold, Hold::None) {
            continue;
        }
        if e.metainfo.is_none() {
            if e.fetch.is_none() {
                plan.fetch.push(id);
            }
            continue;
        }
        let slot = if e.done() {
            seeds += 1;
            seeds <= max_seed
        } else {
            downloads += 1;
            downloads <= max_down
        };
        match (&e.run, slot) {
            (Run::Idle, true) if starting < MAX_STARTING => {
                starting += 1;
                plan.start.push(id);
            }
            (Run::Running(..), false) => plan.stop.push(id),
            _ => {}
        }
    }
    plan
}
