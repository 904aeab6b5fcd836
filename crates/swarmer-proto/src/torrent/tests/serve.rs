//! Tests of the upload side: serving, refusing and cancelling requests (BEP 3, BEP 6 `reject` and
//! allowed fast), upload windows, and the choker (BEP 3 choking).

use super::*;
use crate::wire::BlockRequest;

#[test]
fn requests_are_rejected_with_fast_extension() {
    let mut f = Fixture::new(2);
    let p = f.peer(2, true);
    f.drain();
    let req = BlockRequest {
        index: 0,
        begin: 0,
        length: BLOCK_SIZE,
    };
    f.t.handle_message(p, Message::HaveNone, f.now);
    f.t.handle_message(p, Message::Request(req), f.now);
    assert_eq!(sends(&f.drain(), p), vec![Outgoing::Reject(req)]);
}

fn req(index: u32, begin: u32, length: u32) -> BlockRequest {
    BlockRequest {
        index,
        begin,
        length,
    }
}

fn uploads(actions: &[Action], key: PeerKey) -> Vec<Requested> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Upload { peer, block } if *peer == key => Some(*block),
            _ => None,
        })
        .collect()
}

/// A seeder of 4 pieces with one interested leecher (Fast Extension as given), already unchoked.
fn seeding(fast: bool) -> (Fixture, PeerKey) {
    let mut f = Fixture::with_have(4, &[0, 1, 2, 3]);
    let p = f.peer(2, fast);
    if fast {
        f.t.handle_message(p, Message::HaveNone, f.now);
    }
    f.t.handle_message(p, Message::Interested, f.now);
    let sent = sends(&f.drain(), p);
    assert!(
        sent.contains(&Outgoing::Unchoke),
        "a free slot unchokes at once: {sent:?}"
    );
    (f, p)
}

#[test]
fn serves_requests_in_order_and_counts_what_was_sent() {
    let (mut f, p) = seeding(true);
    for i in 0..4 {
        f.t.handle_message(p, Message::Request(req(i, 0, BLOCK_SIZE)), f.now);
    }
    // An unaligned range inside a piece is served too (BEP 3 allows any).
    f.t.handle_message(p, Message::Request(req(1, 100, 1000)), f.now);
    // A new peer's window is two blocks; each report of blocks sent hands out more.
    let mut batch = uploads(&f.drain(), p);
    assert_eq!(batch.len(), 2);
    let mut served = Vec::new();
    while !batch.is_empty() {
        let bytes = batch.iter().map(|b| u64::from(b.length)).sum();
        f.t.handle_block_sent(p, batch.len() as u32, bytes, f.now);
        served.append(&mut batch);
        batch = uploads(&f.drain(), p);
        f.t.check_invariants();
    }
    assert_eq!(served.len(), 5);
    assert_eq!(served[0].piece.get(), 0);
    assert_eq!((served[4].offset, served[4].length), (100, 1000));
    assert_eq!(f.t.stats().uploaded, 4 * u64::from(BLOCK_SIZE) + 1000);
    f.now += Duration::from_secs(1);
    f.t.handle_timeout(f.now);
    assert!(f.t.stats().upload_rate > 0);
}

#[test]
fn requests_beyond_what_we_serve_are_rejected_or_ignored() {
    // Fast Extension: every refused request is rejected (BEP 6).
    let mut f = Fixture::with_have(4, &[0, 1]);
    let p = f.peer(2, true);
    f.t.handle_message(p, Message::HaveNone, f.now);
    let choked = req(0, 0, BLOCK_SIZE);
    f.t.handle_message(p, Message::Request(choked), f.now);
    f.t.handle_message(p, Message::Interested, f.now);
    f.drain();
    let missing = req(2, 0, BLOCK_SIZE);
    let huge = req(0, 0, 2 * BLOCK_SIZE);
    f.t.handle_message(p, Message::Request(missing), f.now);
    f.t.handle_message(p, Message::Request(huge), f.now);
    let actions = f.drain();
    assert!(uploads(&actions, p).is_empty());
    assert_eq!(
        sends(&actions, p),
        vec![Outgoing::Reject(missing), Outgoing::Reject(huge)]
    );
    // Without it they are dropped silently, and a request while choked too.
    let mut f = Fixture::with_have(4, &[0, 1]);
    let p = f.peer(2, false);
    f.drain();
    f.t.handle_message(p, Message::Request(choked), f.now);
    f.t.handle_message(p, Message::Interested, f.now);
    f.drain();
    f.t.handle_message(p, Message::Request(missing), f.now);
    f.t.handle_message(p, Message::Request(huge), f.now);
    let actions = f.drain();
    assert!(uploads(&actions, p).is_empty());
    assert!(sends(&actions, p).is_empty());
    assert!(faults(&actions).is_empty());
}

#[test]
fn out_of_range_requests_are_a_fault() {
    for bad in [
        req(4, 0, BLOCK_SIZE),
        req(0, 2 * BLOCK_SIZE, 1),
        req(0, u32::MAX, BLOCK_SIZE),
        req(0, 0, 0),
    ] {
        let (mut f, p) = seeding(true);
        f.t.handle_message(p, Message::Request(bad), f.now);
        assert_eq!(
            faults(&f.drain()),
            vec![PeerFault::Misbehaved(Offence::RequestOutOfRange {
                index: bad.index,
                begin: bad.begin,
                length: bad.length
            })],
            "{bad:?}"
        );
    }
}

#[test]
fn a_request_flood_is_bounded_then_disconnected() {
    for fast in [true, false] {
        let (mut f, p) = seeding(fast);
        let mut disconnected_after = None;
        for i in 0..10_000u32 {
            let r = req(i % 4, (i / 4 % 2) * BLOCK_SIZE, BLOCK_SIZE);
            // Distinct requests: vary the offset over unaligned ranges too.
            let r = BlockRequest {
                begin: r.begin.min(BLOCK_SIZE) + (i / 8 % 100),
                length: 100,
                ..r
            };
            f.t.handle_message(p, Message::Request(r), f.now);
            f.t.check_invariants();
            if !faults(&f.drain()).is_empty() {
                disconnected_after = Some(i);
                break;
            }
        }
        // Queued up to `reqq`, plus the (new peer's) window of 2 handed to the writer, then `reqq`
        // refusals.
        let c = Config::default();
        assert_eq!(
            disconnected_after,
            Some(2 * c.max_peer_requests + 2),
            "fast: {fast}"
        );
    }
}

#[test]
fn cancel_removes_a_queued_request_and_rejects_it() {
    let (mut f, p) = seeding(true);
    // A new peer's window is 2 blocks: two go out, two wait.
    let window = 2;
    for i in 0..window + 2 {
        f.t.handle_message(p, Message::Request(req(i % 4, 0, 100 + i)), f.now);
    }
    assert_eq!(uploads(&f.drain(), p).len(), window as usize);
    let queued = req((window + 1) % 4, 0, 100 + window + 1);
    f.t.handle_message(p, Message::Cancel(queued), f.now);
    assert_eq!(sends(&f.drain(), p), vec![Outgoing::Reject(queued)]);
    // A cancel for a block already handed out changes nothing: it is sent anyway.
    f.t.handle_message(p, Message::Cancel(req(0, 0, 100)), f.now);
    assert!(f.drain().is_empty());
    f.t.handle_block_sent(p, window, 0, f.now);
    let rest = uploads(&f.drain(), p);
    assert_eq!(rest.len(), 1, "only the request that was not cancelled");
    assert_eq!(rest[0].length, 100 + window);
}

#[test]
fn choking_rejects_queued_requests_but_keeps_allowed_fast_ones() {
    let (mut f, p) = seeding(true);
    let allowed = f.t.peers[&p].allowed_out.clone();
    assert_eq!(
        allowed.len(),
        4,
        "every piece of a 4-piece torrent is allowed fast"
    );
    // Fill the window so later requests queue.
    let window = Config::default().upload_window;
    for i in 0..window + 3 {
        f.t.handle_message(p, Message::Request(req(i % 4, 0, 10 + i)), f.now);
    }
    f.drain();
    f.t.choke(p, f.now);
    let sent = sends(&f.drain(), p);
    assert_eq!(
        sent,
        vec![Outgoing::Choke],
        "allowed-fast requests survive a choke"
    );
    f.t.check_invariants();
}

#[test]
fn allowed_fast_pieces_are_granted_and_served_while_choked() {
    // Eight pieces, of which we have the first four.
    let mut f = Fixture::with_have(8, &[0, 1, 2, 3]);
    let p = f.peer(2, true);
    let sent = sends(&f.drain(), p);
    let granted: Vec<u32> = sent
        .iter()
        .filter_map(|m| match m {
            Outgoing::AllowedFast(piece) => Some(piece.get()),
            _ => None,
        })
        .collect();
    let set = crate::allowed_fast::allowed_fast_set(
        std::net::Ipv4Addr::new(127, 0, 0, 2),
        &InfoHash([0xaa; 20]),
        8,
        Config::default().allowed_fast,
    );
    let mut expected: Vec<u32> = set.into_iter().filter(|&i| i < 4).collect();
    expected.sort_unstable();
    assert_eq!(granted, expected);
    let piece = *granted.first().expect("some of 8 pieces are in a set of 8");
    f.t.handle_message(p, Message::HaveNone, f.now);
    f.t.handle_message(p, Message::Request(req(piece, 0, BLOCK_SIZE)), f.now);
    assert_eq!(uploads(&f.drain(), p).len(), 1, "served while choked");
    let other = (0..4).find(|i| !granted.contains(i));
    if let Some(other) = other {
        f.t.handle_message(p, Message::Request(req(other, 0, BLOCK_SIZE)), f.now);
        assert_eq!(
            sends(&f.drain(), p),
            vec![Outgoing::Reject(req(other, 0, BLOCK_SIZE))]
        );
    }
}

#[test]
fn choker_unchokes_the_fastest_and_rotates_an_optimistic_slot() {
    let mut f = Fixture::with_have(4, &[0, 1, 2, 3]);
    let peers: Vec<PeerKey> = (2..10).map(|ip| f.peer(ip, true)).collect();
    for &p in &peers {
        f.t.handle_message(p, Message::HaveNone, f.now);
        f.t.handle_message(p, Message::Interested, f.now);
    }
    f.drain();
    let slots = Config::default().upload_slots;
    let unchoked = |f: &Fixture| -> Vec<PeerKey> {
        let mut v: Vec<PeerKey> =
            f.t.peers
                .iter()
                .filter(|(_, p)| !p.am_choking)
                .map(|(k, _)| *k)
                .collect();
        v.sort();
        v
    };
    assert_eq!(unchoked(&f).len(), slots + 1, "free slots fill at once");
    // Peers 4..8 take data fastest (we seed: upload rate counts).
    for _ in 0..10 {
        for (i, &p) in peers.iter().enumerate() {
            if !f.t.peers[&p].am_choking {
                f.t.handle_block_sent(p, 0, 1000 * i as u64, f.now);
            }
        }
        f.now += Duration::from_secs(1);
        f.t.handle_timeout(f.now);
        f.drain();
        f.t.check_invariants();
    }
    // After a round, the regular slots hold the fastest of those that were unchoked.
    let now_unchoked = unchoked(&f);
    assert_eq!(now_unchoked.len(), slots + 1);
    let optimistic: Vec<PeerKey> =
        f.t.peers
            .iter()
            .filter(|(_, p)| p.optimistic)
            .map(|(k, _)| *k)
            .collect();
    assert_eq!(optimistic.len(), 1);
    // Over many rounds the optimistic slot visits every peer that is not among the fastest.
    let mut visited = std::collections::HashSet::new();
    for _ in 0..300 {
        f.now += Duration::from_secs(1);
        f.t.handle_timeout(f.now);
        f.drain();
        f.t.check_invariants();
        visited.extend(
            f.t.peers
                .iter()
                .filter(|(_, p)| p.optimistic)
                .map(|(k, _)| *k),
        );
    }
    assert!(
        visited.len() >= 3,
        "optimistic unchoke rotates: {visited:?}"
    );
}
