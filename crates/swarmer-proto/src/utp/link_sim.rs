//! A deterministic link simulator for uTP: flows of real [`Connection`] pairs exchanging real
//! datagrams over one shared bottleneck on a virtual clock, for tests of throughput under loss,
//! fairness between flows, and yielding to a loss-driven (TCP-like) flow.
//!
//! # Model
//!
//! - The **forward path** (senders to receivers) is one bottleneck: `capacity` bytes per second, a
//!   drop-tail queue of `queue_limit` bytes, random loss with probability `loss` per packet (a
//!   seeded [`SmallRng`]), then `delay` of propagation.
//! - The **return path** (ACKs) has the same propagation `delay`, no capacity limit and no loss.
//! - A uTP flow's sender always has data to write; its receiver reads at once.
//! - A **TCP-like** flow is an AIMD load, not a TCP: packets of 1,400 bytes, a window that grows by
//!   one packet per round trip and halves (once per round trip) when the bottleneck drops one of
//!   its packets, learnt one round trip later. It is what LEDBAT must yield to.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::conn::{Config, Connection};
use super::packet::{Packet, PacketType};
use crate::time::Instant;

/// The bottleneck.
#[derive(Debug, Clone, Copy)]
pub(super) struct LinkConfig {
    /// Bytes per second.
    pub(super) capacity: u64,
    /// One-way propagation delay.
    pub(super) delay: Duration,
    /// Queue in front of the bottleneck, in bytes.
    pub(super) queue_limit: u64,
    /// Probability that a packet entering the bottleneck is lost.
    pub(super) loss: f64,
}

const TCP_PACKET: u64 = 1400;

enum Flow {
    Utp {
        sender: Box<Connection>,
        /// Created from the SYN when it arrives.
        receiver: Option<Box<Connection>>,
    },
    Tcp {
        cwnd: f64,
        in_flight: u64,
        last_halving: Option<Duration>,
    },
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum What {
    /// A uTP datagram reaches the receiver (`true`) or the sender.
    Utp { to_receiver: bool, bytes: Vec<u8> },
    /// A TCP-like packet's fate reaches its sender: delivered (`true`) or dropped.
    TcpAck { delivered: bool },
    /// A flow starts.
    Start,
}

/// The simulation (see the module documentation).
pub(super) struct LinkSim {
    link: LinkConfig,
    rng: SmallRng,
    now: Duration,
    /// When the bottleneck finishes sending what is queued.
    busy_until: Duration,
    flows: Vec<Flow>,
    started: Vec<bool>,
    /// Payload bytes delivered per flow.
    delivered: Vec<u64>,
    events: BinaryHeap<Reverse<(Duration, u64, usize, What)>>,
    seq: u64,
    buf: Vec<u8>,
    read_buf: Vec<u8>,
}

impl LinkSim {
    pub(super) fn new(link: LinkConfig, seed: u64) -> LinkSim {
        LinkSim {
            link,
            rng: SmallRng::seed_from_u64(seed),
            now: Duration::ZERO,
            busy_until: Duration::ZERO,
            flows: Vec::new(),
            started: Vec::new(),
            delivered: Vec::new(),
            events: BinaryHeap::new(),
            seq: 0,
            buf: Vec::new(),
            read_buf: vec![0; 1 << 16],
        }
    }

    fn instant(&self) -> Instant {
        Instant::ZERO + self.now
    }

    fn schedule(&mut self, at: Duration, flow: usize, what: What) {
        self.seq += 1;
        self.events.push(Reverse((at, self.seq, flow, what)));
    }

    /// Adds a uTP flow that connects at `start`; returns its index.
    pub(super) fn add_utp(&mut self, start: Duration) -> usize {
        let now = Instant::ZERO + start;
        let id: u16 = self.rng.r#gen();
        let sender = Connection::connect(Config::default(), now, id, self.rng.r#gen());
        self.flows.push(Flow::Utp {
            sender: Box::new(sender),
            receiver: None,
        });
        self.push_flow(start)
    }

    /// Adds a TCP-like flow that starts at `start`; returns its index.
    pub(super) fn add_tcp(&mut self, start: Duration) -> usize {
        self.flows.push(Flow::Tcp {
            cwnd: 2.0,
            in_flight: 0,
            last_halving: None,
        });
        self.push_flow(start)
    }

    fn push_flow(&mut self, start: Duration) -> usize {
        let i = self.flows.len() - 1;
        self.started.push(false);
        self.delivered.push(0);
        self.schedule(start, i, What::Start);
        i
    }

    /// Payload bytes flow `i` delivered so far.
    pub(super) fn delivered(&self, i: usize) -> u64 {
        self.delivered[i]
    }

    /// The uTP sender of flow `i`.
    pub(super) fn sender(&self, i: usize) -> &Connection {
        match &self.flows[i] {
            Flow::Utp { sender, .. } => sender,
            Flow::Tcp { .. } => panic!("flow {i} is not uTP"),
        }
    }

    /// Puts `len` bytes into the bottleneck; the time they arrive, or `None` if dropped.
    fn enqueue(&mut self, len: u64) -> Option<Duration> {
        let start = self.busy_until.max(self.now);
        let queued = (start - self.now).as_nanos() as u64 * self.link.capacity / 1_000_000_000;
        if queued + len > self.link.queue_limit || self.rng.r#gen::<f64>() < self.link.loss {
            return None;
        }
        self.busy_until = start + Duration::from_nanos(len * 1_000_000_000 / self.link.capacity);
        Some(self.busy_until + self.link.delay)
    }

    /// Runs until `until`, virtual time.
    pub(super) fn run_until(&mut self, until: Duration) {
        while self.now < until {
            for i in 0..self.flows.len() {
                if self.started[i] {
                    self.pump(i);
                }
            }
            let next_event = self.events.peek().map(|Reverse((t, ..))| *t);
            let next_timer = (0..self.flows.len())
                .filter(|&i| self.started[i])
                .filter_map(|i| match &self.flows[i] {
                    Flow::Utp { sender, receiver } => {
                        let r = receiver.as_ref().and_then(|r| r.poll_timeout());
                        [sender.poll_timeout(), r].into_iter().flatten().min()
                    }
                    Flow::Tcp { .. } => None,
                })
                .map(|t| t.since_origin())
                .min();
            let next = [next_event, next_timer].into_iter().flatten().min();
            let Some(next) = next else { break };
            self.now = next.max(self.now).min(until);
            let now = self.instant();
            for flow in &mut self.flows {
                if let Flow::Utp { sender, receiver } = flow {
                    if sender.poll_timeout().is_some_and(|t| t <= now) {
                        sender.handle_timeout(now);
                    }
                    if let Some(r) = receiver {
                        if r.poll_timeout().is_some_and(|t| t <= now) {
                            r.handle_timeout(now);
                        }
                    }
                }
            }
            while self
                .events
                .peek()
                .is_some_and(|Reverse((t, ..))| *t <= self.now)
            {
                let Reverse((_, _, i, what)) = self.events.pop().expect("peeked");
                self.handle(i, what);
            }
        }
    }

    fn handle(&mut self, i: usize, what: What) {
        let now = self.instant();
        match what {
            What::Start => self.started[i] = true,
            What::Utp { to_receiver, bytes } => {
                let Ok(packet) = Packet::decode(&bytes) else {
                    return;
                };
                let Flow::Utp { sender, receiver } = &mut self.flows[i] else {
                    return;
                };
                if to_receiver {
                    match receiver {
                        Some(r) => r.handle_packet(now, &packet),
                        None if packet.header.kind == PacketType::Syn => {
                            let seq = self.rng.r#gen();
                            *receiver = Some(Box::new(Connection::accept(
                                Config::default(),
                                now,
                                &packet.header,
                                seq,
                            )));
                        }
                        None => {}
                    }
                    if let Some(r) = receiver {
                        r.check_invariants();
                    }
                } else {
                    sender.handle_packet(now, &packet);
                    sender.check_invariants();
                }
            }
            What::TcpAck { delivered } => {
                let rtt = 2 * self.link.delay;
                let Flow::Tcp {
                    cwnd,
                    in_flight,
                    last_halving,
                } = &mut self.flows[i]
                else {
                    return;
                };
                *in_flight -= 1;
                if delivered {
                    *cwnd += 1.0 / *cwnd;
                } else if last_halving.is_none_or(|t| self.now >= t + rtt) {
                    *last_halving = Some(self.now);
                    *cwnd = (*cwnd / 2.0).max(1.0);
                }
            }
        }
    }

    /// Lets flow `i` send what it may now.
    fn pump(&mut self, i: usize) {
        let now = self.instant();
        let mut out = Vec::new();
        match &mut self.flows[i] {
            Flow::Utp { sender, receiver } => {
                let chunk = [0x5a; 16 * 1024];
                while sender.write(&chunk) > 0 {}
                while sender.poll_transmit(now, &mut self.buf) {
                    out.push((true, self.buf.clone()));
                }
                if let Some(receiver) = receiver {
                    let mut got = 0;
                    loop {
                        let n = receiver.read(&mut self.read_buf);
                        if n == 0 {
                            break;
                        }
                        got += n as u64;
                    }
                    self.delivered[i] += got;
                    while receiver.poll_transmit(now, &mut self.buf) {
                        out.push((false, self.buf.clone()));
                    }
                }
            }
            Flow::Tcp {
                cwnd, in_flight, ..
            } => {
                let mut sent = 0;
                while (*in_flight + sent) < *cwnd as u64 {
                    sent += 1;
                }
                *in_flight += sent;
                for _ in 0..sent {
                    let arrival = self.enqueue(TCP_PACKET);
                    if arrival.is_some() {
                        self.delivered[i] += TCP_PACKET;
                    }
                    let back = arrival.unwrap_or(self.now + self.link.delay) + self.link.delay;
                    self.schedule(
                        back,
                        i,
                        What::TcpAck {
                            delivered: arrival.is_some(),
                        },
                    );
                }
                return;
            }
        }
        for (to_receiver, bytes) in out {
            let at = if to_receiver {
                self.enqueue(bytes.len() as u64)
            } else {
                Some(self.now + self.link.delay)
            };
            if let Some(at) = at {
                self.schedule(at, i, What::Utp { to_receiver, bytes });
            }
        }
    }
}
