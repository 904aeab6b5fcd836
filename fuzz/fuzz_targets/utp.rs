//! Fuzz target: uTP (BEP 29). Arbitrary bytes become a script of datagrams, timer expiries, writes
//! and reads driven into a connected [`Connection`] (packets handed to it whatever their id) and into
//! an [`Endpoint`] (routed by address and id, SYNs accepted). Nothing may panic, and every
//! connection's bounds (buffers, in-flight accounting, out-of-order slots) must hold after each step.

#![no_main]

use std::net::SocketAddr;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use swarmer_proto::time::Instant;
use swarmer_proto::utp::{Config, Connection, Endpoint, EndpointConfig, Packet};

fuzz_target!(|data: &[u8]| {
    let mut rng = SmallRng::seed_from_u64(0);
    let peer = SocketAddr::from(([10, 0, 0, 2], 6881));
    let mut now = Instant::ZERO;
    let cfg = Config {
        send_buffer: 64 * 1024,
        recv_buffer: 64 * 1024,
        ..Config::default()
    };
    let mut conn = Connection::connect(cfg.clone(), now, 100, 200);
    let mut endpoint = Endpoint::new(EndpointConfig {
        conn: cfg,
        max_connections: 16,
        max_half_open: 4,
        accept_queue: 4,
    });
    let _ = endpoint.connect(now, peer, &mut rng);
    let mut out = Vec::new();
    let mut read = vec![0; 4096];
    let mut rest = data;
    while let [op, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (arg, next) = tail.split_at(len);
        rest = next;
        match op % 5 {
            0 => {
                if let Ok(p) = Packet::decode(arg) {
                    conn.handle_packet(now, &p);
                }
                let _ = endpoint.handle_datagram(now, peer, arg, &mut rng);
            }
            1 => {
                now += Duration::from_millis(len as u64 * 37);
                conn.handle_timeout(now);
                endpoint.handle_timeout(now);
            }
            2 => {
                conn.write(arg);
                if op & 0x80 != 0 {
                    conn.shutdown();
                }
            }
            3 => {
                conn.read(&mut read[..len]);
            }
            _ => {}
        }
        for _ in 0..64 {
            if !conn.poll_transmit(now, &mut out) {
                break;
            }
            Packet::decode(&out).expect("we decode what we send");
        }
        for _ in 0..64 {
            if endpoint.poll_transmit(now, &mut out).is_none() {
                break;
            }
        }
        while let Some((id, _)) = endpoint.accept() {
            endpoint.connection_mut(id).map(|c| c.write(b"hello"));
        }
        conn.check_invariants();
        assert!(endpoint.len() <= 16);
    }
});
