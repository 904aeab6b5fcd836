//! Tests of uTP: the codec with plain bytes, the state machine between two connections whose
//! packets a test can drop, reorder or forge, the endpoint's bounds, and the link simulations
//! (throughput under loss, fairness, yielding to a TCP-like flow).

use std::net::SocketAddr;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::SmallRng;

use super::link_sim::{LinkConfig, LinkSim};
use super::*;
use crate::time::Instant;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn header(kind: PacketType) -> Header {
    Header {
        kind,
        connection_id: 0x1234,
        timestamp_us: 0xdead_beef,
        timestamp_diff_us: 7,
        wnd_size: 65536,
        seq_nr: 0xfffe,
        ack_nr: 3,
    }
}

#[test]
fn codec_round_trips_with_and_without_a_selective_ack() {
    let mut out = Vec::new();
    let h = header(PacketType::Data);
    assert_eq!(h.encode(None, &mut out), 20);
    out.extend_from_slice(b"payload");
    let p = Packet::decode(&out).unwrap();
    assert_eq!(p.header, h);
    assert_eq!(p.sack, None);
    assert_eq!(p.payload, b"payload");
    assert_eq!(out[0], 0x01, "type 0, version 1");

    let mut sack = SelectiveAck::new(4);
    sack.set(0);
    sack.set(9);
    out.clear();
    assert_eq!(header(PacketType::State).encode(Some(&sack), &mut out), 26);
    let p = Packet::decode(&out).unwrap();
    assert_eq!(
        p.sack.as_ref().map(SelectiveAck::as_bytes),
        Some(&[1, 2, 0, 0][..])
    );
    assert!(p.payload.is_empty());
    assert_eq!(out[0], 0x21);
}

#[test]
fn codec_rejects_malformed_packets() {
    let mut good = Vec::new();
    header(PacketType::Syn).encode(None, &mut good);
    let check = |bytes: &[u8], expected: PacketError| {
        assert_eq!(Packet::decode(bytes), Err(expected), "{bytes:02x?}");
    };
    check(&good[..19], PacketError::Truncated);
    let mut v2 = good.clone();
    v2[0] = 0x42;
    check(&v2, PacketError::Version(2));
    let mut t5 = good.clone();
    t5[0] = 0x51;
    check(&t5, PacketError::Type(5));
    // An extension whose length runs past the end.
    let mut long = good.clone();
    long[1] = 2;
    long.extend_from_slice(&[0, 10, 1, 2]);
    check(&long, PacketError::Truncated);
    // A selective ACK of 3 bytes, and one of 36.
    let mut odd = good.clone();
    odd[1] = 1;
    odd.extend_from_slice(&[0, 3, 1, 2, 3]);
    check(&odd, PacketError::SackLength(3));
    let mut big = good.clone();
    big[1] = 1;
    big.extend_from_slice(&[0, 36]);
    big.extend_from_slice(&[0; 36]);
    check(&big, PacketError::SackLength(36));
    // A chain of five unknown extensions.
    let mut chain = good.clone();
    chain[1] = 9;
    for _ in 0..4 {
        chain.extend_from_slice(&[9, 0]);
    }
    chain.extend_from_slice(&[0, 0]);
    check(&chain, PacketError::TooManyExtensions);
    // Four unknown extensions are skipped.
    let mut four = good.clone();
    four[1] = 9;
    four.extend_from_slice(&[9, 1, 0, 9, 0, 9, 0, 0, 0]);
    four.extend_from_slice(b"x");
    assert_eq!(Packet::decode(&four).unwrap().payload, b"x");
}

#[test]
fn first_byte_tells_utp_from_dht_and_trackers() {
    let mut syn = Vec::new();
    header(PacketType::Syn).encode(None, &mut syn);
    assert!(looks_like_utp(&syn));
    assert!(!looks_like_utp(
        b"d1:ad2:id20:aaaaaaaaaaaaaaaaaaaae1:q4:ping1:t2:aa1:y1:qe"
    ));
    let tracker_reply = [0u8, 0, 0, 1, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    assert!(!looks_like_utp(&tracker_reply));
    assert!(!looks_like_utp(&syn[..10]));
}

#[test]
fn sequence_numbers_compare_across_the_wrap() {
    assert!(packet::seq_less(0xfffe, 0x0001));
    assert!(!packet::seq_less(0x0001, 0xfffe));
    assert!(!packet::seq_less(5, 5));
}

/// Two connections wired directly, with a clock and a filter on the packets in flight.
struct Pair {
    a: Connection,
    b: Connection,
    now: Instant,
    buf: Vec<u8>,
}

impl Pair {
    /// A connected pair; `a` opened it. Initial sequence numbers near the wrap.
    fn new(cfg: Config) -> Pair {
        let now = Instant::ZERO;
        let mut a = Connection::connect(cfg.clone(), now, 0xfffe, 0xfffd);
        let mut buf = Vec::new();
        assert!(a.poll_transmit(now, &mut buf));
        let syn = Packet::decode(&buf).unwrap();
        assert_eq!(syn.header.kind, PacketType::Syn);
        assert_eq!(syn.header.connection_id, 0xfffe);
        let b = Connection::accept(cfg, now, &syn.header, 0xffff);
        assert_eq!((b.recv_id(), b.send_id()), (0xffff, 0xfffe));
        let mut pair = Pair { a, b, now, buf };
        pair.exchange(|_, _| true);
        assert_eq!(pair.a.state(), State::Connected);
        pair
    }

    /// Moves packets both ways until neither has any; `keep(from_a, packet)` may drop one.
    fn exchange(&mut self, mut keep: impl FnMut(bool, &Packet<'_>) -> bool) -> usize {
        let mut moved = 0;
        loop {
            let mut any = false;
            while self.a.poll_transmit(self.now, &mut self.buf) {
                let p = Packet::decode(&self.buf).unwrap();
                if keep(true, &p) {
                    self.b.handle_packet(self.now, &p);
                }
                any = true;
                moved += 1;
            }
            while self.b.poll_transmit(self.now, &mut self.buf) {
                let p = Packet::decode(&self.buf).unwrap();
                if keep(false, &p) {
                    self.a.handle_packet(self.now, &p);
                }
                any = true;
                moved += 1;
            }
            self.a.check_invariants();
            self.b.check_invariants();
            if !any {
                return moved;
            }
        }
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        for c in [&mut self.a, &mut self.b] {
            if c.poll_timeout().is_some_and(|t| t <= self.now) {
                c.handle_timeout(self.now);
            }
        }
    }

    fn read_b(&mut self) -> Vec<u8> {
        let mut out = vec![0; self.b.readable()];
        let n = self.b.read(&mut out);
        out.truncate(n);
        out
    }
}

/// Every data packet acknowledged at once, so `Pair::exchange` runs a transfer to its end
/// without advancing the clock.
fn quick_acks() -> Config {
    Config {
        ack_every: 1,
        ..Config::default()
    }
}

#[test]
fn in_order_data_is_acknowledged_every_16_packets_or_after_a_millisecond() {
    let mut p = Pair::new(Config::default());
    // The initiator's first data packet completes the accept; its ACK waits.
    p.a.write(b"x");
    let mut last_data = None;
    p.exchange(|from_a, pkt| {
        if from_a && pkt.header.kind == PacketType::Data {
            last_data = Some(pkt.header);
        }
        true
    });
    let due = p.b.poll_timeout().unwrap();
    assert_eq!(due, p.now + ms(1));
    let mut acks = 0;
    p.advance(ms(1));
    p.exchange(|from_a, pkt| {
        acks += usize::from(!from_a && pkt.header.kind == PacketType::State);
        true
    });
    assert_eq!(acks, 1, "the delayed ACK went out");
    // 32 packets in one go (forged as a's next ones: a's window would not send them yet): two
    // ACKs, not 32.
    let mut acks = 0;
    let mut out = Vec::new();
    let mut h = last_data.unwrap();
    for _ in 0..32 {
        h.seq_nr = h.seq_nr.wrapping_add(1);
        let payload = [7u8; 1400];
        p.b.handle_packet(
            p.now,
            &Packet {
                header: h,
                sack: None,
                payload: &payload,
            },
        );
        while p.b.poll_transmit(p.now, &mut out) {
            acks += 1;
        }
    }
    assert_eq!(acks, 2);
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

#[test]
fn data_crosses_the_sequence_wrap_in_order() {
    let mut p = Pair::new(quick_acks());
    let sent = data(100_000);
    assert_eq!(p.a.write(&sent), sent.len());
    p.exchange(|_, _| true);
    assert_eq!(p.read_b(), sent);
    assert_eq!(p.a.dropped() + p.b.dropped(), 0);
}

#[test]
fn a_lost_packet_is_resent_after_duplicate_or_selective_acks() {
    let mut p = Pair::new(quick_acks());
    let sent = data(30_000);
    p.a.write(&sent);
    let mut dropped = None;
    p.exchange(|from_a, pkt| {
        if from_a && pkt.header.kind == PacketType::Data && dropped.is_none() {
            dropped = Some(pkt.header.seq_nr);
            return false;
        }
        true
    });
    assert!(dropped.is_some());
    assert_eq!(p.read_b(), sent, "recovered without a timeout");
}

#[test]
fn a_lost_tail_is_resent_on_timeout_with_back_off() {
    let mut p = Pair::new(quick_acks());
    p.a.write(b"hello");
    p.exchange(|from_a, _| !from_a);
    assert_eq!(p.b.readable(), 0);
    let first = p.a.poll_timeout().unwrap();
    p.advance(first - p.now);
    p.exchange(|_, _| true);
    assert_eq!(p.read_b(), b"hello");
    assert!(
        p.a.congestion_window() <= 1420,
        "one packet after a timeout"
    );
}

#[test]
fn an_unanswering_peer_times_out() {
    let mut p = Pair::new(quick_acks());
    p.a.write(b"anyone?");
    for _ in 0..100 {
        p.exchange(|from_a, _| !from_a);
        let Some(t) = p.a.poll_timeout() else { break };
        p.advance(t - p.now);
        p.exchange(|_, _| false);
    }
    assert_eq!(p.a.state(), State::Closed(CloseReason::TimedOut));
    assert!(p.now < Instant::ZERO + Duration::from_secs(200));
}

#[test]
fn keep_alives_hold_an_idle_connection_open() {
    let mut p = Pair::new(quick_acks());
    // The initiator speaks first (the BitTorrent handshake), which completes the accept.
    p.a.write(b"hi");
    p.exchange(|_, _| true);
    for _ in 0..20 {
        let t = p.a.poll_timeout().unwrap().min(p.b.poll_timeout().unwrap());
        p.advance(t - p.now);
        p.exchange(|_, _| true);
    }
    assert!(p.now > Instant::ZERO + Duration::from_secs(200));
    assert_eq!(p.a.state(), State::Connected);
    assert_eq!(p.b.state(), State::Connected);
}

#[test]
fn fin_both_ways_closes_both() {
    let mut p = Pair::new(quick_acks());
    p.a.write(b"bye");
    p.a.shutdown();
    p.exchange(|_, _| true);
    assert_eq!(p.read_b(), b"bye");
    assert!(p.b.is_eof());
    assert_eq!(p.a.write(b"more"), 0, "shut down");
    p.b.shutdown();
    p.exchange(|_, _| true);
    assert_eq!(p.a.state(), State::Closed(CloseReason::Finished));
    assert_eq!(p.b.state(), State::Closed(CloseReason::Finished));
}

#[test]
fn reset_closes() {
    let mut p = Pair::new(quick_acks());
    let mut h = header(PacketType::Reset);
    h.connection_id = p.a.recv_id();
    p.a.handle_packet(
        p.now,
        &Packet {
            header: h,
            sack: None,
            payload: &[],
        },
    );
    assert_eq!(p.a.state(), State::Closed(CloseReason::Reset));
}

#[test]
fn the_receive_window_bounds_what_is_sent() {
    let cfg = Config {
        recv_buffer: 10_000,
        ..quick_acks()
    };
    let mut p = Pair::new(cfg);
    let sent = data(50_000);
    let mut written = p.a.write(&sent);
    let mut got = Vec::new();
    for _ in 0..100 {
        p.exchange(|_, _| true);
        assert!(p.b.readable() <= 10_000);
        got.extend(p.read_b());
        written += p.a.write(&sent[written..]);
        if got.len() == sent.len() {
            break;
        }
        // A window update may be needed from b; the zero-window probe runs on the timer.
        let t = p.a.poll_timeout().unwrap();
        p.advance(t - p.now);
    }
    assert_eq!(got, sent);
}

#[test]
fn forged_acks_and_out_of_window_data_are_dropped() {
    let mut p = Pair::new(quick_acks());
    p.a.write(&data(5000));
    p.exchange(|_, _| true);
    let mut h = header(PacketType::State);
    h.connection_id = p.a.recv_id();
    // An ACK of data a never sent.
    h.ack_nr = p.b.recv_id().wrapping_add(1000);
    let before = p.a.dropped();
    let mut forged = h;
    forged.ack_nr = 0x7000;
    p.a.handle_packet(
        p.now,
        &Packet {
            header: forged,
            sack: None,
            payload: &[],
        },
    );
    assert_eq!(p.a.dropped(), before + 1);
    // Data far past the window (more than 256 packets ahead) is not buffered.
    let mut far = header(PacketType::Data);
    far.connection_id = p.b.recv_id();
    far.seq_nr = 0x4000;
    far.ack_nr = 0xfffd; // the SYN: a valid ack
    let before = p.b.dropped();
    p.b.handle_packet(
        p.now,
        &Packet {
            header: far,
            sack: None,
            payload: &[1; 1000],
        },
    );
    assert_eq!(p.b.dropped(), before + 1);
    p.a.check_invariants();
    p.b.check_invariants();
}

#[test]
fn out_of_order_data_is_bounded() {
    let cfg = Config {
        max_out_of_order: 8,
        ..quick_acks()
    };
    let mut p = Pair::new(cfg);
    p.a.write(&data(100 * 1400));
    // Drop the first data packet: everything behind it is out of order; only 8 are kept.
    let mut first = true;
    p.exchange(|from_a, pkt| {
        if from_a && pkt.header.kind == PacketType::Data && first {
            first = false;
            return false;
        }
        true
    });
    p.b.check_invariants();
    // It still completes, by retransmission.
    let mut got = Vec::new();
    for _ in 0..200 {
        got.extend(p.read_b());
        if got.len() == 100 * 1400 {
            break;
        }
        let t = p.a.poll_timeout().unwrap();
        p.advance(t - p.now);
        p.exchange(|_, _| true);
    }
    assert_eq!(got, data(100 * 1400));
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1], port))
}

fn syn_from(id: u16) -> Vec<u8> {
    let mut h = header(PacketType::Syn);
    h.connection_id = id;
    let mut out = Vec::new();
    h.encode(None, &mut out);
    out
}

#[test]
fn a_syn_flood_fills_only_the_half_open_cap() {
    let mut rng = SmallRng::seed_from_u64(1);
    let mut e = Endpoint::new(EndpointConfig {
        max_half_open: 10,
        accept_queue: 1000,
        ..EndpointConfig::default()
    });
    for i in 0..10_000u16 {
        e.handle_datagram(Instant::ZERO, addr(i), &syn_from(i), &mut rng);
    }
    assert_eq!(e.len(), 10);
    // Half-open connections time out and make room.
    let t = e.poll_timeout().unwrap();
    e.handle_timeout(t);
    let mut buf = Vec::new();
    while e.poll_transmit(t, &mut buf).is_some() {}
    let mut closed = Vec::new();
    while let Some((id, _)) = e.accept() {
        if matches!(e.connection(id).unwrap().state(), State::Closed(_)) {
            closed.push(id);
        }
    }
    assert_eq!(closed.len(), 10);
}

#[test]
fn endpoints_connect_and_resets_need_the_right_address_and_id() {
    let mut rng = SmallRng::seed_from_u64(2);
    let mut a = Endpoint::new(EndpointConfig::default());
    let mut b = Endpoint::new(EndpointConfig::default());
    let now = Instant::ZERO;
    let ca = a.connect(now, addr(2), &mut rng).unwrap();
    let mut buf = Vec::new();
    // a's SYN to b, b's STATE to a.
    let to = a.poll_transmit(now, &mut buf).unwrap();
    assert_eq!(to, addr(2));
    b.handle_datagram(now, addr(1), &buf, &mut rng).unwrap();
    let (cb, from) = b.accept().unwrap();
    assert_eq!(from, addr(1));
    b.poll_transmit(now, &mut buf).unwrap();
    assert_eq!(a.handle_datagram(now, addr(2), &buf, &mut rng), Some(ca));
    assert_eq!(a.connection(ca).unwrap().state(), State::Connected);
    // A RESET with a's id from another address, and one from b's address with another id.
    let mut reset = header(PacketType::Reset);
    reset.connection_id = a.connection(ca).unwrap().recv_id();
    let mut bytes = Vec::new();
    reset.encode(None, &mut bytes);
    assert_eq!(a.handle_datagram(now, addr(3), &bytes, &mut rng), None);
    reset.connection_id = reset.connection_id.wrapping_add(7);
    bytes.clear();
    reset.encode(None, &mut bytes);
    assert_eq!(a.handle_datagram(now, addr(2), &bytes, &mut rng), None);
    assert_eq!(a.connection(ca).unwrap().state(), State::Connected);
    // Removing b's side sends a RESET that closes a's.
    b.remove(cb);
    b.poll_transmit(now, &mut buf).unwrap();
    assert_eq!(a.handle_datagram(now, addr(2), &buf, &mut rng), Some(ca));
    assert_eq!(
        a.connection(ca).unwrap().state(),
        State::Closed(CloseReason::Reset)
    );
    // Stray data gets a RESET.
    let mut stray = header(PacketType::Data);
    stray.connection_id = 999;
    bytes.clear();
    stray.encode(None, &mut bytes);
    b.handle_datagram(now, addr(9), &bytes, &mut rng);
    assert_eq!(b.poll_transmit(now, &mut buf), Some(addr(9)));
    assert_eq!(Packet::decode(&buf).unwrap().header.kind, PacketType::Reset);
}

/// 250 KB/s (2 Mbit/s), 50 ms each way, a queue of 200 ms.
fn link(loss: f64) -> LinkConfig {
    LinkConfig {
        capacity: 250_000,
        delay: ms(50),
        queue_limit: 50_000,
        loss,
    }
}

#[test]
fn one_percent_loss_at_100ms_rtt_keeps_80_percent_of_the_link() {
    // 1 Mbit/s, a typical uplink: with one packet in a hundred lost and a window that halves
    // for each loss (once per round trip), an AIMD window averages ~1.2/sqrt(0.01) = 12 packets,
    // which fills a 100 ms path at about 170 KB/s; so a link this size is one loss can keep full.
    let cfg = LinkConfig {
        capacity: 125_000,
        queue_limit: 25_000,
        ..link(0.01)
    };
    let mut sim = LinkSim::new(cfg, 11);
    let f = sim.add_utp(Duration::ZERO);
    sim.run_until(Duration::from_secs(10));
    let at_10 = sim.delivered(f);
    sim.run_until(Duration::from_secs(70));
    let rate = (sim.delivered(f) - at_10) as f64 / 60.0;
    let share = rate / cfg.capacity as f64;
    assert!(
        share >= 0.8,
        "{:.0} B/s is {:.0} % of the link",
        rate,
        share * 100.0
    );
}

#[test]
fn two_flows_share_a_link_within_20_percent() {
    let mut sim = LinkSim::new(link(0.001), 3);
    let f1 = sim.add_utp(Duration::ZERO);
    let f2 = sim.add_utp(Duration::from_millis(50));
    // Measured for three minutes after the first.
    sim.run_until(Duration::from_secs(60));
    let (a0, b0) = (sim.delivered(f1), sim.delivered(f2));
    sim.run_until(Duration::from_secs(240));
    let a = (sim.delivered(f1) - a0) as f64;
    let b = (sim.delivered(f2) - b0) as f64;
    let ratio = a.min(b) / a.max(b);
    assert!(ratio >= 0.8, "flows moved {a} and {b} bytes");
    let total = (a + b) / 180.0;
    assert!(total >= 0.8 * 250_000.0, "together {total:.0} B/s");
}

#[test]
fn a_utp_flow_yields_to_a_tcp_like_flow() {
    let mut sim = LinkSim::new(link(0.0), 13);
    let utp = sim.add_utp(Duration::ZERO);
    sim.run_until(Duration::from_secs(20));
    let alone = sim.delivered(utp) as f64 / 20.0;
    assert!(alone >= 0.8 * 250_000.0, "alone {alone:.0} B/s");
    let tcp = sim.add_tcp(Duration::from_secs(20));
    sim.run_until(Duration::from_secs(30));
    let (u0, t0) = (sim.delivered(utp), sim.delivered(tcp));
    sim.run_until(Duration::from_secs(90));
    let u = (sim.delivered(utp) - u0) as f64 / 60.0;
    let t = (sim.delivered(tcp) - t0) as f64 / 60.0;
    assert!(
        t >= 0.75 * 250_000.0,
        "TCP-like flow got {t:.0} B/s, uTP {u:.0}"
    );
    assert!(u <= 0.2 * 250_000.0, "uTP kept {u:.0} B/s");
    assert!(sim.sender(utp).state() == State::Connected);
}
