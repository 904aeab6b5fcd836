//! One uTP connection as a sans-IO state machine (BEP 29): the handshake (SYN, then STATE), ordered
//! delivery with sequence and ack numbers modulo 2^16, retransmission on timeout, on three
//! duplicate ACKs and on selective ACKs, the receive window, LEDBAT, keep-alives and the close (FIN,
//! RESET, timeouts).
//!
//! The caller feeds packets with [`Connection::handle_packet`] and timer expiries with
//! [`Connection::handle_timeout`], moves bytes with [`Connection::write`] and [`Connection::read`],
//! and drains datagrams with [`Connection::poll_transmit`] until it returns `false`.
//!
//! **Bounds**: written bytes not yet acknowledged stay under [`Config::send_buffer`]; received bytes
//! (in order and out of order) under [`Config::recv_buffer`], which is also the window we advertise;
//! out-of-order packets are kept only up to [`Config::max_out_of_order`] past the gap. A packet that
//! acknowledges data never sent is dropped whole.

use std::collections::VecDeque;
use std::time::Duration;

use super::ledbat::Ledbat;
use super::packet::{HEADER_LEN, Header, Packet, PacketType, SelectiveAck, seq_less};
use crate::time::Instant;

/// Limits and timers of a connection.
#[derive(Debug, Clone)]
pub struct Config {
    /// Largest payload per packet, in bytes. 1,400 keeps a packet with a selective ACK and IPv6
    /// and UDP headers under a 1,500-byte MTU, so nothing is fragmented.
    pub max_payload: usize,
    /// Bytes written and not yet acknowledged, at most.
    pub send_buffer: usize,
    /// Bytes received and not yet read, at most; the receive window we advertise.
    pub recv_buffer: usize,
    /// Packets past the first missing one that are kept (at most 256, what a selective ACK can name).
    pub max_out_of_order: usize,
    /// Retransmissions of one packet (SYN included) before the connection is given up.
    pub max_retransmissions: u32,
    /// How long without any packet from the peer closes the connection.
    pub idle_timeout: Duration,
    /// How long we stay silent before sending a STATE so that NATs keep the mapping.
    pub keepalive: Duration,
    /// How long a connection waits for the peer's FIN after ours was acknowledged.
    pub linger: Duration,
    /// How long a connection may take from SYN to the first data packet of the initiator.
    pub handshake_timeout: Duration,
    /// In-order data packets acknowledged together: each ACK costs the sender a datagram to
    /// receive, and the sender's CPU is what limits a fast transfer.
    pub ack_every: u32,
    /// How long an in-order data packet may wait for its ACK. Anything else (a gap, a repeat, a
    /// FIN, a window that opens) is acknowledged at once.
    pub ack_delay: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_payload: 1400,
            send_buffer: 1 << 20,
            recv_buffer: 1 << 20,
            max_out_of_order: 256,
            max_retransmissions: 6,
            idle_timeout: Duration::from_secs(120),
            keepalive: Duration::from_secs(29),
            linger: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(10),
            ack_every: 16,
            ack_delay: Duration::from_millis(1),
        }
    }
}

/// Where the connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// We sent a SYN and wait for the peer's STATE.
    SynSent,
    /// We answered a SYN and have not yet had data from the peer (a half-open connection).
    SynReceived,
    /// Both sides may send.
    Connected,
    /// Gone, for the reason given.
    Closed(CloseReason),
}

/// Why a connection closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CloseReason {
    /// Both sides sent FIN and ours was acknowledged (or the linger time passed).
    #[error("closed")]
    Finished,
    /// The peer sent RESET.
    #[error("reset by peer")]
    Reset,
    /// The peer stopped answering: a packet was retransmitted too often, or nothing came for the
    /// idle timeout.
    #[error("timed out")]
    TimedOut,
}

/// Smallest retransmission timeout (BEP 29: 500 ms).
const MIN_RTO: Duration = Duration::from_millis(500);
/// Largest retransmission timeout, after back-off.
const MAX_RTO: Duration = Duration::from_secs(30);
/// Timeout before the first RTT sample (BEP 29: 1 s).
const INITIAL_RTO: Duration = Duration::from_secs(1);
/// Duplicate ACKs that mark the first unacknowledged packet lost.
const DUP_ACK_THRESHOLD: u32 = 3;
/// Packets selectively acknowledged after one, sent after it, that mark it lost.
const SACK_THRESHOLD: usize = 3;
/// Most packets sent and not acknowledged: far from half the sequence space, and as many as a
/// 1 MiB window of full packets needs several times over.
const MAX_UNACKED: usize = 4096;

#[derive(Debug)]
struct Sent {
    kind: PacketType,
    payload: Vec<u8>,
    sent_at: Instant,
    transmissions: u32,
    /// Counted in `in_flight` (sent, neither acknowledged selectively nor deemed lost).
    in_flight: bool,
    sacked: bool,
    lost: bool,
}

impl Sent {
    fn wire_len(&self) -> u32 {
        (self.payload.len() + HEADER_LEN) as u32
    }
}

/// One connection (see the module documentation).
#[derive(Debug)]
pub struct Connection {
    cfg: Config,
    state: State,
    recv_id: u16,
    send_id: u16,
    /// Sequence number of the next new packet.
    seq_nr: u16,
    /// Sent packets not cumulatively acknowledged, the first with sequence number `first_unacked`.
    unacked: VecDeque<Sent>,
    first_unacked: u16,
    /// Sequence numbers of packets deemed lost, to retransmit (checked again when popped).
    resend: VecDeque<u16>,
    send_buf: VecDeque<u8>,
    /// Payload bytes in `unacked`.
    unacked_bytes: usize,
    in_flight: u32,
    peer_wnd: u32,
    dup_acks: u32,
    cc: Ledbat,
    srtt: Option<Duration>,
    rttvar: Duration,
    rto: Duration,
    rto_deadline: Option<Instant>,
    /// The application will write no more: send FIN once the buffer is empty.
    fin_queued: bool,
    fin_seq: Option<u16>,
    fin_acked_at: Option<Instant>,
    /// Last sequence number received in order.
    ack_nr: u16,
    recv_buf: VecDeque<u8>,
    /// Out-of-order packets: index `k` holds sequence number `ack_nr + 2 + k`.
    ooo: VecDeque<Option<Vec<u8>>>,
    ooo_bytes: usize,
    peer_fin: Option<u16>,
    eof: bool,
    ack_pending: bool,
    /// In-order data packets received since our last packet, and when their ACK is due.
    delayed_acks: u32,
    ack_deadline: Option<Instant>,
    /// Our clock minus the peer's timestamp of its last packet, µs (our `timestamp_difference`).
    reply_micro: u32,
    last_recv: Instant,
    last_send: Instant,
    /// The peer's initial sequence number (its SYN's), to recognise a repeated SYN.
    peer_syn: u16,
    /// Packets dropped because they acknowledged data never sent or lay outside the window.
    dropped: u64,
    created: Instant,
}

/// Copies the first `out.len()` bytes of `from` into `out` (two `memcpy`s, not a byte loop).
fn copy_front(from: &VecDeque<u8>, out: &mut [u8]) {
    let (a, b) = from.as_slices();
    let n = out.len().min(a.len());
    out[..n].copy_from_slice(&a[..n]);
    let rest = out.len() - n;
    out[n..].copy_from_slice(&b[..rest]);
}

/// `now` as a uTP timestamp: microseconds modulo 2^32.
fn micros(now: Instant) -> u32 {
    now.since_origin().as_micros() as u32
}

impl Connection {
    /// Opens a connection (sends a SYN on the first [`Connection::poll_transmit`]). `recv_id` is a
    /// random connection id (the peer sends to it; we send to `recv_id + 1`), `seq` a random initial
    /// sequence number; both come from the caller's random source.
    pub fn connect(cfg: Config, now: Instant, recv_id: u16, seq: u16) -> Connection {
        let mut c = Connection::new(cfg, now, recv_id, recv_id.wrapping_add(1), seq);
        c.state = State::SynSent;
        c.push_sent(PacketType::Syn, Vec::new());
        c
    }

    /// Answers a peer's SYN (the STATE goes out on the first [`Connection::poll_transmit`]). `seq` is
    /// our random initial sequence number.
    pub fn accept(cfg: Config, now: Instant, syn: &Header, seq: u16) -> Connection {
        let mut c = Connection::new(
            cfg,
            now,
            syn.connection_id.wrapping_add(1),
            syn.connection_id,
            seq,
        );
        c.state = State::SynReceived;
        c.ack_nr = syn.seq_nr;
        c.peer_syn = syn.seq_nr;
        c.first_unacked = seq;
        c.reply_micro = micros(now).wrapping_sub(syn.timestamp_us);
        c.peer_wnd = syn.wnd_size;
        c.ack_pending = true;
        c
    }

    fn new(cfg: Config, now: Instant, recv_id: u16, send_id: u16, seq: u16) -> Connection {
        let mss = (cfg.max_payload + HEADER_LEN) as u32;
        Connection {
            state: State::SynSent,
            recv_id,
            send_id,
            seq_nr: seq,
            unacked: VecDeque::new(),
            first_unacked: seq,
            resend: VecDeque::new(),
            send_buf: VecDeque::new(),
            unacked_bytes: 0,
            in_flight: 0,
            peer_wnd: mss,
            dup_acks: 0,
            cc: Ledbat::new(mss),
            srtt: None,
            rttvar: Duration::ZERO,
            rto: INITIAL_RTO,
            rto_deadline: None,
            fin_queued: false,
            fin_seq: None,
            fin_acked_at: None,
            ack_nr: 0,
            recv_buf: VecDeque::new(),
            ooo: VecDeque::new(),
            ooo_bytes: 0,
            peer_fin: None,
            eof: false,
            ack_pending: false,
            delayed_acks: 0,
            ack_deadline: None,
            reply_micro: 0,
            last_recv: now,
            last_send: now,
            peer_syn: 0,
            dropped: 0,
            created: now,
            cfg,
        }
    }

    /// Where the connection is.
    pub fn state(&self) -> State {
        self.state
    }

    /// The id the peer puts in the packets it sends us.
    pub fn recv_id(&self) -> u16 {
        self.recv_id
    }

    /// The id we put in the packets we send (and the peer puts in a RESET, sometimes).
    pub fn send_id(&self) -> u16 {
        self.send_id
    }

    /// The congestion window, in bytes (headers included).
    pub fn congestion_window(&self) -> u32 {
        self.cc.window()
    }

    /// The queuing delay LEDBAT sees on the path to the peer, once measured.
    pub fn queuing_delay(&self) -> Option<Duration> {
        self.cc.queuing_delay()
    }

    /// The smoothed round-trip time, once measured.
    pub fn rtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// Packets dropped for acknowledging data never sent or lying outside the window.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Bytes that [`Connection::write`] would take now.
    pub fn write_capacity(&self) -> usize {
        if self.fin_queued || matches!(self.state, State::Closed(_)) {
            return 0;
        }
        self.cfg
            .send_buffer
            .saturating_sub(self.send_buf.len() + self.unacked_bytes)
    }

    /// Queues as much of `data` as the send buffer takes; returns how many bytes (0 when full,
    /// closed or shut down).
    pub fn write(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.write_capacity());
        self.send_buf.extend(&data[..n]);
        n
    }

    /// We will write no more: a FIN follows the bytes written.
    pub fn shutdown(&mut self) {
        self.fin_queued = true;
    }

    /// The bytes ready for [`Connection::read`], in two slices (the buffer is a ring), to copy
    /// out without an intermediate buffer; then [`Connection::consume`] them.
    pub fn peek(&self) -> (&[u8], &[u8]) {
        self.recv_buf.as_slices()
    }

    /// Drops the first `n` readable bytes (as [`Connection::read`] would move them out).
    pub fn consume(&mut self, n: usize) {
        let before = self.window();
        let n = n.min(self.recv_buf.len());
        self.recv_buf.drain(..n);
        let mss = self.cfg.max_payload as u32;
        if before < mss && self.window() >= mss {
            self.ack_pending = true;
        }
    }

    /// Bytes ready for [`Connection::read`].
    pub fn readable(&self) -> usize {
        self.recv_buf.len()
    }

    /// The peer sent FIN and every byte before it has been read.
    pub fn is_eof(&self) -> bool {
        self.eof && self.recv_buf.is_empty()
    }

    /// Moves received bytes into `buf`; returns how many.
    pub fn read(&mut self, buf: &mut [u8]) -> usize {
        let n = buf.len().min(self.recv_buf.len());
        copy_front(&self.recv_buf, &mut buf[..n]);
        // A window that was too small for a packet has opened: `consume` tells the peer at once.
        self.consume(n);
        n
    }

    /// Our free receive window, in bytes.
    fn window(&self) -> u32 {
        self.cfg
            .recv_buffer
            .saturating_sub(self.recv_buf.len() + self.ooo_bytes) as u32
    }

    fn push_sent(&mut self, kind: PacketType, payload: Vec<u8>) {
        self.unacked_bytes += payload.len();
        self.unacked.push_back(Sent {
            kind,
            payload,
            sent_at: Instant::ZERO,
            transmissions: 0,
            in_flight: false,
            sacked: false,
            lost: true,
        });
        self.resend.push_back(self.seq_nr);
        self.seq_nr = self.seq_nr.wrapping_add(1);
    }

    /// Handles one packet addressed to this connection (the caller matched address and id).
    pub fn handle_packet(&mut self, now: Instant, packet: &Packet<'_>) {
        let h = &packet.header;
        if let State::Closed(reason) = self.state {
            // The ACK of the peer's FIN was lost: it sends the FIN again.
            if reason == CloseReason::Finished && h.kind == PacketType::Fin {
                self.ack_pending = true;
            }
            return;
        }
        match h.kind {
            PacketType::Reset => {
                self.close(CloseReason::Reset);
                return;
            }
            PacketType::Syn => {
                // Our STATE was lost: the peer asks again.
                if self.state != State::SynSent && h.seq_nr == self.peer_syn {
                    self.ack_pending = true;
                } else {
                    self.dropped += 1;
                }
                return;
            }
            _ => {}
        }
        if self.state == State::SynSent {
            if h.ack_nr != self.first_unacked {
                self.dropped += 1;
                return;
            }
            self.ack_nr = h.seq_nr.wrapping_sub(1);
            self.state = State::Connected;
        }
        // The ack must name a packet we sent: between the one before the oldest unacknowledged
        // and the newest.
        let last_sent = self.seq_nr.wrapping_sub(1);
        if seq_less(h.ack_nr, self.first_unacked.wrapping_sub(1)) || seq_less(last_sent, h.ack_nr) {
            self.dropped += 1;
            return;
        }
        self.last_recv = now;
        self.reply_micro = micros(now).wrapping_sub(h.timestamp_us);
        // More window than we could ever fill means nothing more than "no limit from the peer".
        self.peer_wnd = h.wnd_size.min(self.cfg.send_buffer as u32 * 4);
        if h.timestamp_diff_us != 0 {
            self.cc.on_delay_sample(now, h.timestamp_diff_us);
        }
        self.handle_ack(now, h, packet.sack.as_ref());
        match h.kind {
            PacketType::Data => self.receive(now, h.seq_nr, packet.payload),
            PacketType::Fin => {
                if self.peer_fin.is_none() {
                    self.peer_fin = Some(h.seq_nr);
                }
                self.receive(now, h.seq_nr, &[]);
            }
            _ => {}
        }
        if self.state == State::SynReceived && h.kind == PacketType::Data {
            self.state = State::Connected;
        }
        if self.fin_acked_at.is_some() && self.eof {
            self.close(CloseReason::Finished);
        }
    }

    fn handle_ack(&mut self, now: Instant, h: &Header, sack: Option<&SelectiveAck>) {
        let flight = self.in_flight;
        let mut acked_bytes = 0u32;
        let mut newest_sample = None;
        let mut advanced = false;
        while !self.unacked.is_empty() && !seq_less(h.ack_nr, self.first_unacked) {
            let p = self.unacked.pop_front().expect("checked non-empty");
            self.unacked_bytes -= p.payload.len();
            if p.in_flight {
                self.in_flight -= p.wire_len();
            }
            if !p.sacked {
                acked_bytes += p.wire_len();
            }
            if p.transmissions == 1 {
                newest_sample = Some(now.duration_since(p.sent_at));
            }
            if Some(self.first_unacked) == self.fin_seq {
                self.fin_acked_at = Some(now);
            }
            self.first_unacked = self.first_unacked.wrapping_add(1);
            advanced = true;
        }
        if let Some(sack) = sack {
            let base = h.ack_nr.wrapping_add(2);
            for i in 0..sack.capacity() {
                if !sack.get(i) {
                    continue;
                }
                let pos = base.wrapping_add(i as u16).wrapping_sub(self.first_unacked) as usize;
                let Some(p) = self.unacked.get_mut(pos) else {
                    break;
                };
                if !p.sacked && p.transmissions > 0 {
                    p.sacked = true;
                    acked_bytes += p.wire_len();
                    if p.in_flight {
                        p.in_flight = false;
                        self.in_flight -= p.wire_len();
                    }
                    if p.transmissions == 1 {
                        newest_sample = Some(now.duration_since(p.sent_at));
                    }
                }
            }
        }
        if let Some(sample) = newest_sample {
            self.rtt_sample(sample);
        }
        if advanced {
            self.dup_acks = 0;
            self.rto_deadline = (!self.unacked.is_empty()).then(|| now + self.rto);
        } else if h.kind == PacketType::State && !self.unacked.is_empty() {
            self.dup_acks += 1;
            if self.dup_acks == DUP_ACK_THRESHOLD {
                self.mark_lost(0, now);
            }
        }
        if sack.is_some() {
            self.detect_sack_losses(now);
        }
        if acked_bytes > 0 {
            let rtt = self.srtt.unwrap_or(INITIAL_RTO);
            self.cc.on_ack(now, rtt, acked_bytes, flight);
        }
    }

    /// Marks lost every packet after which [`SACK_THRESHOLD`] packets sent later were acknowledged.
    fn detect_sack_losses(&mut self, now: Instant) {
        let mut later_sacked: Vec<Instant> = Vec::new();
        let mut lost = Vec::new();
        for (pos, p) in self.unacked.iter().enumerate().rev() {
            if p.sacked {
                later_sacked.push(p.sent_at);
            } else if p.in_flight
                && later_sacked.iter().filter(|&&t| t > p.sent_at).count() >= SACK_THRESHOLD
            {
                lost.push(pos);
            }
            if later_sacked.len() > 64 {
                later_sacked.sort_unstable_by(|a, b| b.cmp(a));
                later_sacked.truncate(SACK_THRESHOLD);
            }
        }
        for pos in lost.into_iter().rev() {
            self.mark_lost(pos, now);
        }
    }

    fn mark_lost(&mut self, pos: usize, now: Instant) {
        let rtt = self.srtt.unwrap_or(INITIAL_RTO);
        let Some(p) = self.unacked.get_mut(pos) else {
            return;
        };
        if p.lost || p.sacked {
            return;
        }
        p.lost = true;
        if p.in_flight {
            p.in_flight = false;
            self.in_flight -= p.wire_len();
        }
        self.resend
            .push_back(self.first_unacked.wrapping_add(pos as u16));
        self.cc.on_loss(now, rtt);
    }

    fn rtt_sample(&mut self, sample: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(sample);
                self.rttvar = sample / 2;
            }
            Some(srtt) => {
                let diff = srtt.abs_diff(sample);
                self.rttvar = (self.rttvar * 3 + diff) / 4;
                self.srtt = Some((srtt * 7 + sample) / 8);
            }
        }
        let srtt = self.srtt.expect("set above");
        self.rto = (srtt + self.rttvar * 4).clamp(MIN_RTO, MAX_RTO);
    }

    fn receive(&mut self, now: Instant, seq: u16, payload: &[u8]) {
        let expected = self.ack_nr.wrapping_add(1);
        if seq_less(seq, expected) {
            // A repeat: our ACK was lost, send another.
            self.ack_pending = true;
            return;
        }
        let distance = seq.wrapping_sub(expected) as usize;
        if distance > self.cfg.max_out_of_order.min(256) || payload.len() > self.window() as usize {
            self.dropped += 1;
            return;
        }
        let gaps = !self.ooo.is_empty();
        if distance > 0 || gaps || self.peer_fin == Some(seq) {
            // Out of order, filling a gap, or the FIN: the sender must know at once.
            self.ack_pending = true;
        } else {
            self.delayed_acks += 1;
            if self.delayed_acks >= self.cfg.ack_every {
                self.ack_pending = true;
            } else {
                self.ack_deadline.get_or_insert(now + self.cfg.ack_delay);
            }
        }
        if distance > 0 {
            let k = distance - 1;
            if self.ooo.len() <= k {
                self.ooo.resize(k + 1, None);
            }
            if self.ooo[k].is_none() {
                self.ooo_bytes += payload.len();
                self.ooo[k] = Some(payload.to_vec());
            }
            return;
        }
        self.recv_buf.extend(payload);
        self.ack_nr = seq;
        while let Some(Some(next)) = self.ooo.front() {
            self.ooo_bytes -= next.len();
            self.recv_buf.extend(next.iter());
            self.ooo.pop_front();
            self.ack_nr = self.ack_nr.wrapping_add(1);
        }
        // The slot of the packet still missing (if any) goes: index 0 is now `ack_nr + 2`.
        if !self.ooo.is_empty() {
            self.ooo.pop_front();
        }
        if self.peer_fin.is_some_and(|f| !seq_less(self.ack_nr, f)) {
            self.eof = true;
            self.ooo.clear();
            self.ooo_bytes = 0;
        }
    }

    fn close(&mut self, reason: CloseReason) {
        self.state = State::Closed(reason);
        self.in_flight = 0;
        self.unacked_bytes = 0;
        self.rto_deadline = None;
        self.send_buf.clear();
        self.unacked.clear();
        self.resend.clear();
        self.ooo.clear();
        self.ooo_bytes = 0;
    }

    /// When [`Connection::handle_timeout`] should next be called; `None` once closed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if matches!(self.state, State::Closed(_)) {
            return None;
        }
        let mut t = [
            self.rto_deadline,
            Some(self.last_recv + self.cfg.idle_timeout),
            Some(self.last_send + self.cfg.keepalive),
            self.fin_acked_at.map(|t| t + self.cfg.linger),
            self.handshaking()
                .then(|| self.created + self.cfg.handshake_timeout),
            self.ack_deadline,
        ];
        t.sort_unstable();
        t.into_iter().flatten().next()
    }

    /// Runs the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if matches!(self.state, State::Closed(_)) {
            return;
        }
        if now >= self.last_recv + self.cfg.idle_timeout {
            return self.close(CloseReason::TimedOut);
        }
        if self.handshaking() && now >= self.created + self.cfg.handshake_timeout {
            return self.close(CloseReason::TimedOut);
        }
        if self
            .fin_acked_at
            .is_some_and(|t| now >= t + self.cfg.linger)
        {
            return self.close(CloseReason::Finished);
        }
        if self.rto_deadline.is_some_and(|t| now >= t) {
            let first = self.unacked.front().map_or(0, |p| p.transmissions);
            if first > self.cfg.max_retransmissions {
                return self.close(CloseReason::TimedOut);
            }
            self.cc.on_timeout();
            self.rto = (self.rto * 2).min(MAX_RTO);
            self.rto_deadline = None;
            self.dup_acks = 0;
            for pos in 0..self.unacked.len() {
                let p = &mut self.unacked[pos];
                if !p.sacked && !p.lost {
                    p.lost = true;
                    if p.in_flight {
                        p.in_flight = false;
                        self.in_flight -= p.wire_len();
                    }
                    self.resend
                        .push_back(self.first_unacked.wrapping_add(pos as u16));
                }
            }
            // Oldest first: the resend queue may hold later packets from earlier losses.
            let first = self.first_unacked;
            let mut seqs: Vec<u16> = self.resend.drain(..).collect();
            seqs.sort_by_key(|s| s.wrapping_sub(first));
            seqs.dedup();
            self.resend.extend(seqs);
        }
        if now >= self.last_send + self.cfg.keepalive || self.ack_deadline.is_some_and(|t| now >= t)
        {
            self.ack_pending = true;
        }
    }

    fn handshaking(&self) -> bool {
        matches!(self.state, State::SynSent | State::SynReceived)
    }

    fn header(&self, now: Instant, kind: PacketType, seq_nr: u16) -> Header {
        Header {
            kind,
            connection_id: if kind == PacketType::Syn {
                self.recv_id
            } else {
                self.send_id
            },
            timestamp_us: micros(now),
            timestamp_diff_us: self.reply_micro,
            wnd_size: self.window(),
            seq_nr,
            ack_nr: self.ack_nr,
        }
    }

    fn sack(&self) -> Option<SelectiveAck> {
        if self.ooo.is_empty() {
            return None;
        }
        let mut s = SelectiveAck::new(self.ooo.len().div_ceil(8));
        for (i, slot) in self.ooo.iter().enumerate() {
            if slot.is_some() {
                s.set(i);
            }
        }
        Some(s)
    }

    /// Room in the congestion and receive windows for a packet of `wire_len` bytes. One packet
    /// may always be in flight, so a zero window is probed.
    fn may_send(&self, wire_len: u32) -> bool {
        let window = self.cc.window().min(self.peer_wnd);
        self.in_flight == 0 || self.in_flight + wire_len <= window
    }

    /// Writes the next datagram to send into `out` (cleared first); `false` when there is none.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut Vec<u8>) -> bool {
        out.clear();
        if let State::Closed(reason) = self.state {
            // The last ACK, of the peer's FIN.
            if reason == CloseReason::Finished && self.ack_pending {
                let header = self.header(now, PacketType::State, self.seq_nr);
                self.emit(now, header, None, out);
                return true;
            }
            return false;
        }
        // Retransmissions (and the first SYN) first, oldest first.
        while let Some(&seq) = self.resend.front() {
            let pos = seq.wrapping_sub(self.first_unacked) as usize;
            let Some(p) = self.unacked.get(pos) else {
                self.resend.pop_front();
                continue;
            };
            if !p.lost || p.sacked {
                self.resend.pop_front();
                continue;
            }
            if !self.may_send(p.wire_len()) {
                break;
            }
            self.resend.pop_front();
            let header = self.header(now, p.kind, seq);
            self.emit(now, header, Some(pos), out);
            return true;
        }
        if self.state == State::SynSent {
            return false;
        }
        if !self.send_buf.is_empty() && self.resend.is_empty() && self.unacked.len() < MAX_UNACKED {
            let len = self.send_buf.len().min(self.cfg.max_payload);
            // Only a full packet, or everything there is, when the window has room for it.
            if self.may_send((len + HEADER_LEN) as u32) {
                let mut payload = vec![0; len];
                copy_front(&self.send_buf, &mut payload);
                self.send_buf.drain(..len);
                let seq = self.seq_nr;
                self.push_sent(PacketType::Data, payload);
                self.resend.pop_back();
                let header = self.header(now, PacketType::Data, seq);
                self.emit(now, header, Some(self.unacked.len() - 1), out);
                return true;
            }
        }
        if self.fin_queued
            && self.fin_seq.is_none()
            && self.send_buf.is_empty()
            && self.state == State::Connected
        {
            let seq = self.seq_nr;
            self.fin_seq = Some(seq);
            self.push_sent(PacketType::Fin, Vec::new());
            self.resend.pop_back();
            let header = self.header(now, PacketType::Fin, seq);
            self.emit(now, header, Some(self.unacked.len() - 1), out);
            return true;
        }
        if self.ack_pending {
            let header = self.header(now, PacketType::State, self.seq_nr);
            self.emit(now, header, None, out);
            return true;
        }
        false
    }

    /// Encodes a packet; `pos` is its place in `unacked` (none for a STATE).
    fn emit(&mut self, now: Instant, header: Header, pos: Option<usize>, out: &mut Vec<u8>) {
        let sack = self.sack();
        header.encode(sack.as_ref(), out);
        self.ack_pending = false;
        self.delayed_acks = 0;
        self.ack_deadline = None;
        self.last_send = now;
        if let Some(pos) = pos {
            let p = &mut self.unacked[pos];
            out.extend_from_slice(&p.payload);
            p.sent_at = now;
            p.transmissions += 1;
            p.lost = false;
            p.in_flight = true;
            self.in_flight += p.wire_len();
            if self.rto_deadline.is_none() {
                self.rto_deadline = Some(now + self.rto);
            }
        }
    }

    /// Checks the internal invariants; for tests and fuzzing.
    pub fn check_invariants(&self) {
        let flight: u32 = self
            .unacked
            .iter()
            .filter(|p| p.in_flight)
            .map(Sent::wire_len)
            .sum();
        assert_eq!(flight, self.in_flight, "in-flight bytes");
        let bytes: usize = self.unacked.iter().map(|p| p.payload.len()).sum();
        assert_eq!(bytes, self.unacked_bytes, "unacked bytes");
        assert!(self.send_buf.len() + self.unacked_bytes <= self.cfg.send_buffer);
        let ooo: usize = self.ooo.iter().flatten().map(Vec::len).sum();
        assert_eq!(ooo, self.ooo_bytes, "out-of-order bytes");
        assert!(self.recv_buf.len() + self.ooo_bytes <= self.cfg.recv_buffer);
        assert!(self.ooo.len() <= self.cfg.max_out_of_order.min(256));
        assert!(self.unacked.len() <= MAX_UNACKED + 1, "sequence space");
    }
}
