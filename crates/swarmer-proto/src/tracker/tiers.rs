//! The tracker try-order of BEP 12 (multitracker metadata extension): tiers tried in order, the URLs of a
//! tier shuffled once, and a tracker that answers moved to the front of its tier.

use rand::Rng;
use rand::seq::SliceRandom;

/// The position of a tier in a [`TrackerTiers`]; only [`TrackerTiers::iter`] makes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TierIdx(usize);

/// The position of a URL within its tier; only [`TrackerTiers::iter`] makes one.
///
/// It stays valid until the next [`TrackerTiers::promote`], which reorders the tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UrlIdx(usize);

impl TierIdx {
    /// The tier's 0-based position (tier 0 is tried first).
    pub fn get(self) -> usize {
        self.0
    }
}

impl UrlIdx {
    /// The URL's 0-based position within its tier.
    pub fn get(self) -> usize {
        self.0
    }
}

/// The announce URLs of a torrent in BEP 12 tiers, in the order to try them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackerTiers {
    tiers: Vec<Vec<String>>,
}

impl TrackerTiers {
    /// Builds the tiers from a metainfo `announce-list` (or `[[announce]]`), shuffling each tier once with
    /// `rng` as BEP 12 asks.
    ///
    /// URLs are trimmed; empty URLs, repeats of a URL seen earlier (in any tier) and tiers left empty are
    /// dropped.
    pub fn new(tiers: Vec<Vec<String>>, rng: &mut impl Rng) -> TrackerTiers {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::with_capacity(tiers.len());
        for tier in tiers {
            let mut urls: Vec<String> = tier
                .into_iter()
                .map(|u| u.trim().to_owned())
                .filter(|u| !u.is_empty() && seen.insert(u.clone()))
                .collect();
            if urls.is_empty() {
                continue;
            }
            urls.shuffle(rng);
            out.push(urls);
        }
        TrackerTiers { tiers: out }
    }

    /// Whether there is no tracker at all.
    pub fn is_empty(&self) -> bool {
        self.tiers.is_empty()
    }

    /// The number of tracker URLs over all tiers.
    pub fn len(&self) -> usize {
        self.tiers.iter().map(Vec::len).sum()
    }

    /// The tiers in their current order.
    pub fn tiers(&self) -> &[Vec<String>] {
        &self.tiers
    }

    /// Every tracker in try-order: tier 0 front to back, then tier 1, and so on (BEP 12: on failure, try
    /// the next tracker of the tier, then the next tier).
    pub fn iter(&self) -> impl Iterator<Item = (TierIdx, UrlIdx, &str)> + '_ {
        self.tiers.iter().enumerate().flat_map(|(t, urls)| {
            urls.iter()
                .enumerate()
                .map(move |(u, url)| (TierIdx(t), UrlIdx(u), url.as_str()))
        })
    }

    /// Moves the tracker at (`tier`, `url`) to the front of its tier because it answered (BEP 12). The
    /// others keep their relative order. Out-of-range indices are ignored.
    pub fn promote(&mut self, tier: TierIdx, url: UrlIdx) {
        if let Some(urls) = self.tiers.get_mut(tier.0) {
            if url.0 < urls.len() {
                urls[..=url.0].rotate_right(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    fn tiers(spec: &[&[&str]]) -> Vec<Vec<String>> {
        spec.iter()
            .map(|t| t.iter().map(|s| s.to_string()).collect())
            .collect()
    }

    fn order(t: &TrackerTiers) -> Vec<&str> {
        t.iter().map(|(_, _, u)| u).collect()
    }

    #[test]
    fn shuffles_within_tiers_only_and_deterministically() {
        let spec = tiers(&[&["a", "b", "c", "d", "e"], &["x", "y"], &["z"]]);
        let t1 = TrackerTiers::new(spec.clone(), &mut SmallRng::seed_from_u64(7));
        let t2 = TrackerTiers::new(spec.clone(), &mut SmallRng::seed_from_u64(7));
        assert_eq!(t1, t2);
        let mut first: Vec<String> = t1.tiers()[0].clone();
        first.sort();
        assert_eq!(first, spec[0]);
        let o = order(&t1);
        assert_eq!(o.len(), 8);
        assert!(o[..5].iter().all(|u| "abcde".contains(u)));
        assert!(o[5..7].iter().all(|u| "xy".contains(u)));
        assert_eq!(o[7], "z");
        // Some seed gives another order than file order: the shuffle really happens.
        let shuffled = (0..20).any(|seed| {
            TrackerTiers::new(spec.clone(), &mut SmallRng::seed_from_u64(seed)).tiers()[0]
                != spec[0]
        });
        assert!(shuffled);
    }

    #[test]
    fn drops_empty_and_repeated_urls() {
        let t = TrackerTiers::new(
            tiers(&[&["", " "], &["u", " u "], &["u", "v"]]),
            &mut SmallRng::seed_from_u64(1),
        );
        assert_eq!(t.tiers(), &tiers(&[&["u"], &["v"]])[..]);
        assert_eq!(t.len(), 2);
        assert!(!t.is_empty());
        assert!(TrackerTiers::new(vec![vec![]], &mut SmallRng::seed_from_u64(1)).is_empty());
    }

    #[test]
    fn promote_moves_to_front_of_its_tier() {
        let mut t = TrackerTiers {
            tiers: tiers(&[&["a", "b", "c"], &["x", "y"]]),
        };
        let (tier, url, name) = t.iter().find(|(_, _, u)| *u == "c").unwrap();
        assert_eq!(name, "c");
        t.promote(tier, url);
        assert_eq!(order(&t), ["c", "a", "b", "x", "y"]);
        let (tier, url, _) = t.iter().find(|(_, _, u)| *u == "y").unwrap();
        assert_eq!((tier.get(), url.get()), (1, 1));
        t.promote(tier, url);
        assert_eq!(order(&t), ["c", "a", "b", "y", "x"]);
        t.promote(TierIdx(9), UrlIdx(0));
        t.promote(TierIdx(0), UrlIdx(9));
        assert_eq!(order(&t), ["c", "a", "b", "y", "x"]);
    }
}
