//! The choking algorithm (BEP 3, "peer protocol"): which interested peers we upload to in a round, as
//! a pure function of a snapshot of rates and flags. The caller owns the round timer, the rate
//! measurement and the randomness, so one table of numbers tests every rule.
//!
//! BEP 3 describes the "currently deployed" algorithm, which [`choose`] follows:
//!
//! - **Rounds.** Peers "recalculate who they want to choke once every ten seconds, and then leave the
//!   situation as is until the next ten second period is up", which avoids fibrillation. The caller calls
//!   [`choose`] once per round and sends `choke`/`unchoke` only for peers whose state changed.
//! - **Regular slots: tit-for-tat.** Unchoke "the four peers which it has the best download rates from and
//!   are interested"; a peer "that has a complete file" ranks by its upload rate instead. The caller
//!   passes whichever rate applies as [`Candidate::rate`], and the number of regular slots as `slots`.
//!   Ties in rate go to peers already unchoked, so equal peers do not swap slots every round, then to the
//!   smaller key, so the result is deterministic.
//! - **Optimistic unchoke.** "At any one time there is a single peer which is unchoked regardless of its
//!   upload rate (if interested, it counts as one of the four allowed downloaders.)" The slot is on top
//!   of `slots`: a caller with BEP 3's four upload slots passes `slots = 3`. "Which peer is
//!   optimistically unchoked rotates every 30 seconds", so the holder keeps the slot between rotations
//!   (the caller sets `rotate_optimistic` every third round) and, when it rotates, goes to another peer
//!   whenever there is one. "Newly connected peers are three times as likely to start as the current
//!   optimistic unchoke as anywhere else in the rotation", which gives them "a decent chance of getting
//!   a complete piece to upload": the draw weighs them 3 and every other peer 1.
//! - **Anti-snubbing.** When "over a minute goes by without getting any piece data while downloading
//!   from a peer", the peer is "snubbed" and we do not upload to it "except as an optimistic unchoke".
//!   The caller decides what snubbed means and sets [`Candidate::snubbed`]; such a peer never gets a
//!   regular slot but stays in the optimistic draw, which is how it gets another chance.
//!
//! Deliberately absent: BEP 3 also unchokes uninterested peers that are faster than the slowest
//! downloader, so they can start at once if they become interested. Here only interested peers are
//! unchoked; a caller that wants a new downloader served quickly can run a round early when a peer
//! becomes interested.
//!
//! Guarantees of [`choose`] (checked on every case in the tests): every regular peer is interested and
//! not snubbed, there are at most `slots` of them and no key appears twice; the optimistic peer is
//! interested and not regular; the result does not depend on the order of `candidates`. Keys are
//! assumed unique within one call.

/// One connected peer as the choker sees it at a round.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate<K> {
    /// Identifies the peer (a connection id, say); unique within one call to [`choose`].
    pub key: K,
    /// The peer is interested in us (only interested peers get unchoked).
    pub interested: bool,
    /// bytes/s: the caller passes the download rate from the peer while we leech, the upload rate to it
    /// while we seed (BEP 3).
    pub rate: u64,
    /// Sent us nothing for a long time although we asked (anti-snubbing, BEP 3): not eligible for a
    /// regular slot.
    pub snubbed: bool,
    /// Connected recently (the caller decides, e.g. within the last 30 s): 3x as likely to win the
    /// optimistic slot (BEP 3).
    pub newly_connected: bool,
    /// Currently unchoked by us (regular or optimistic).
    pub unchoked: bool,
    /// Currently holds the optimistic slot.
    pub optimistic: bool,
}

/// The outcome of one choking round: every peer named here should be unchoked, every other peer choked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<K> {
    /// Peers to hold regular slots, best first (at most `slots`).
    pub regular: Vec<K>,
    /// The optimistic unchoke, if any interested peer is left over.
    pub optimistic: Option<K>,
}

/// Weight in the optimistic draw of a peer connected recently, against 1 for any other (BEP 3: "three
/// times as likely").
const NEW_PEER_WEIGHT: u64 = 3;

/// One choking round (BEP 3) over `candidates`: up to `slots` regular unchokes by rate, plus one
/// optimistic unchoke on top of them. The rules are in the module documentation.
///
/// `rotate_optimistic`: true every third round (30 s with 10 s rounds) or when no optimistic slot is
/// held; `random`: a caller-supplied random number so the function is deterministic. Runs in
/// O(n log n) for n candidates (plus O(n · slots) to exclude regular peers from the draw).
pub fn choose<K: Copy + Eq + Ord>(
    candidates: &[Candidate<K>],
    slots: usize,
    rotate_optimistic: bool,
    random: u64,
) -> Decision<K> {
    let regular = choose_regular(candidates, slots, random);
    let optimistic = choose_optimistic(candidates, &regular, rotate_optimistic, random);
    Decision {
        regular,
        optimistic,
    }
}

/// The `slots` interested, non-snubbed peers with the highest rate, best first.
fn choose_regular<K: Copy + Ord>(candidates: &[Candidate<K>], slots: usize, random: u64) -> Vec<K> {
    let mut eligible: Vec<&Candidate<K>> = candidates
        .iter()
        .filter(|c| c.interested && !c.snubbed)
        .collect();
    // Sorted by key first, so the shuffle below does not depend on the input order.
    eligible.sort_unstable_by_key(|c| c.key);
    let lots: Vec<u64> = (0..eligible.len() as u64)
        .map(|i| splitmix64(random ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
        .collect();
    let mut order: Vec<usize> = (0..eligible.len()).collect();
    // Highest rate first. Among equal non-zero rates the peer already unchoked wins (stability), then
    // the smaller key. Peers that gave us nothing (rate 0) are ordered by lot, so a peer that merely
    // connected first does not keep a slot for free round after round.
    order.sort_unstable_by(|&a, &b| {
        let (ca, cb) = (eligible[a], eligible[b]);
        cb.rate.cmp(&ca.rate).then_with(|| {
            if ca.rate == 0 {
                lots[a].cmp(&lots[b])
            } else {
                cb.unchoked.cmp(&ca.unchoked).then(ca.key.cmp(&cb.key))
            }
        })
    });
    order.iter().take(slots).map(|&i| eligible[i].key).collect()
}

/// A 64-bit mix (SplitMix64's finaliser): a different, well-spread value for each input.
fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The optimistic unchoke among interested peers not in `regular`.
fn choose_optimistic<K: Copy + Ord>(
    candidates: &[Candidate<K>],
    regular: &[K],
    rotate: bool,
    random: u64,
) -> Option<K> {
    // Snubbed peers stay in the pool: the optimistic slot is their only way back (BEP 3, anti-snubbing).
    // Sorted by key so the weighted walk below does not depend on the input order.
    let mut pool: Vec<&Candidate<K>> = candidates
        .iter()
        .filter(|c| c.interested && !regular.contains(&c.key))
        .collect();
    pool.sort_unstable_by_key(|c| c.key);

    if !rotate {
        // Between rotations the holder keeps the slot while it still wants data and has not earned a
        // regular slot (then the optimistic slot goes to someone else).
        if let Some(holder) = pool.iter().find(|c| c.optimistic) {
            return Some(holder.key);
        }
    }
    // Rotating means giving someone else a turn; the holder only keeps the slot when nobody else wants it.
    if pool.iter().any(|c| !c.optimistic) {
        pool.retain(|c| !c.optimistic);
    }

    let weight = |c: &Candidate<K>| {
        if c.newly_connected {
            NEW_PEER_WEIGHT
        } else {
            1
        }
    };
    let total: u64 = pool.iter().map(|c| weight(c)).sum();
    if total == 0 {
        return None;
    }
    // Walk the cumulative weights: each peer owns `weight` consecutive values of `random % total`.
    let mut r = random % total;
    pool.into_iter()
        .find(|c| {
            let w = weight(c);
            if r < w {
                true
            } else {
                r -= w;
                false
            }
        })
        .map(|c| c.key)
}

#[cfg(test)]
mod tests;
