//! Port mapping against scripted NAT-PMP gateways (UDP sockets on port 5351 of a loopback
//! address): a well-behaved one (the mapping, the external address, renewal before the lease ends,
//! deletion on close), one that answers every request with garbage and one that never answers.
//! The hostile ones cost a bounded wait and a `Failed` state; the session starts at once regardless.
//! A PCP-only gateway (silent to NAT-PMP) gets the mapping after NAT-PMP's deadline. UPnP likewise: a scripted SSDP responder whose description URL leads to an HTTP server that
//! answers garbage, or accepts and never answers.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use swarmer::{PortMappingConfig, PortMappingState, Session, SessionConfig};
use tokio::net::UdpSocket;
use tokio::sync::watch;

/// The deadline of one exchange with the gateway in these tests.
const STEP: Duration = Duration::from_millis(600);

/// Replies from the scripted gateway, in turn: short junk, a NAT-PMP-shaped reply with an unknown
/// opcode, a PCP-versioned reply with a bad result code, and a long run of 0xff.
fn garbage(n: usize) -> Vec<u8> {
    match n % 4 {
        0 => b"\x07junk".to_vec(),
        1 => vec![
            0, 0x99, 0, 0, 0, 0, 0, 1, 0x1a, 0xe1, 0x1a, 0xe1, 0, 0, 0x0e, 0x10,
        ],
        2 => {
            let mut reply = vec![2, 0x81, 0, 0xee];
            reply.resize(60, 0x42);
            reply
        }
        _ => vec![0xff; 1100],
    }
}

/// A scripted gateway on `ip`:5351 that counts requests and answers each with `reply(n)`, or
/// not at all for `None`.
async fn gateway(ip: Ipv4Addr, reply: fn(usize) -> Option<Vec<u8>>) -> Arc<AtomicUsize> {
    let socket = UdpSocket::bind((ip, 5351))
        .await
        .expect("bind the scripted gateway");
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&requests);
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((_, from)) = socket.recv_from(&mut buf).await {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            if let Some(bytes) = reply(n) {
                let _ = socket.send_to(&bytes, from).await;
            }
        }
    });
    requests
}

fn config(gateway: Ipv4Addr) -> SessionConfig {
    SessionConfig {
        bind_ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        listen_port: 0,
        port_mapping: true,
        port_mapping_config: PortMappingConfig {
            upnp: false,
            gateway: Some(IpAddr::V4(gateway)),
            timeout: STEP,
            ..PortMappingConfig::default()
        },
        ..SessionConfig::default()
    }
}

/// Starts a session against the gateway at `ip` and checks that start-up did not wait for it,
/// that mapping failed within NAT-PMP's and PCP's deadlines (plus scheduling slack), and that
/// closing returns at once.
async fn check_bounded_failure(ip: Ipv4Addr, requests: Arc<AtomicUsize>) {
    let started = Instant::now();
    let session = Session::new(config(ip)).await.expect("session starts");
    let startup = started.elapsed();
    assert!(
        startup < STEP,
        "start-up took {startup:?}: it waited for the gateway"
    );
    let mapping = session.port_mapping().expect("port mapping is on");
    let mut state = mapping.watch();
    // NAT-PMP's TCP request, then PCP's: one deadline each.
    let bound = STEP * 2 + Duration::from_secs(2);
    let failed = tokio::time::timeout(
        bound,
        state.wait_for(|s| matches!(s, PortMappingState::Failed(_))),
    )
    .await
    // Not holding the receiver's borrow: the task writes the state again on closing.
    .is_ok_and(|r| r.is_ok());
    let state = mapping.state();
    assert!(failed, "no failure within {bound:?}; state {state:?}");
    let PortMappingState::Failed(reason) = state else {
        unreachable!()
    };
    assert!(
        reason.contains("NAT-PMP") && reason.contains("PCP"),
        "{reason}"
    );
    assert!(
        requests.load(Ordering::SeqCst) > 0,
        "the gateway was never asked"
    );
    assert_eq!(session.external_ip(), None);
    // The session works meanwhile: its listener accepts.
    let listen = session.listen_addr();
    tokio::net::TcpStream::connect(SocketAddr::new(listen.ip(), listen.port()))
        .await
        .expect("the listener accepts while mapping failed");
    let closing = Instant::now();
    mapping.close().await;
    assert_eq!(mapping.state(), PortMappingState::Closed);
    assert!(
        closing.elapsed() < Duration::from_secs(1),
        "nothing to remove, yet close waited"
    );
}

#[tokio::test]
async fn garbage_from_the_gateway_costs_a_bounded_wait() {
    let ip = Ipv4Addr::new(127, 0, 0, 71);
    let requests = gateway(ip, |n| Some(garbage(n))).await;
    check_bounded_failure(ip, requests).await;
}

#[tokio::test]
async fn a_silent_gateway_costs_a_bounded_wait() {
    let ip = Ipv4Addr::new(127, 0, 0, 72);
    let requests = gateway(ip, |_| None).await;
    check_bounded_failure(ip, requests).await;
}

/// A NAT-PMP map request as the scripted gateway saw it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct MapRequest {
    /// 1: UDP, 2: TCP (RFC 6886 opcodes).
    op: u8,
    internal: u16,
    lifetime: u32,
}

/// The external address the well-behaved gateway reports (TEST-NET-3).
const EXTERNAL: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);

/// A NAT-PMP gateway on `ip`:5351 that answers as RFC 6886 says: the external address, and every
/// map request granted on the suggested port for the lifetime asked. Publishes the map requests.
async fn honest_gateway(ip: Ipv4Addr) -> watch::Receiver<Vec<MapRequest>> {
    let socket = UdpSocket::bind((ip, 5351))
        .await
        .expect("bind the scripted gateway");
    let (seen_tx, seen) = watch::channel(Vec::new());
    tokio::spawn(async move {
        let mut buf = [0u8; 64];
        let epoch = 1000u32.to_be_bytes();
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let reply = match (n, buf[0], buf[1]) {
                (2, 0, 0) => {
                    let mut r = vec![0, 128, 0, 0];
                    r.extend_from_slice(&epoch);
                    r.extend_from_slice(&EXTERNAL.octets());
                    r
                }
                (12, 0, op @ (1 | 2)) => {
                    let internal = u16::from_be_bytes([buf[4], buf[5]]);
                    let external = u16::from_be_bytes([buf[6], buf[7]]);
                    let lifetime = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
                    seen_tx.send_modify(|v| {
                        v.push(MapRequest {
                            op,
                            internal,
                            lifetime,
                        })
                    });
                    let granted = if lifetime == 0 { 0 } else { external.max(1) };
                    let mut r = vec![0, 128 + op, 0, 0];
                    r.extend_from_slice(&epoch);
                    r.extend_from_slice(&internal.to_be_bytes());
                    r.extend_from_slice(&granted.to_be_bytes());
                    r.extend_from_slice(&lifetime.to_be_bytes());
                    r
                }
                _ => continue,
            };
            let _ = socket.send_to(&reply, from).await;
        }
    });
    seen
}

#[tokio::test]
async fn a_natpmp_gateway_maps_both_ports_renews_before_the_lease_ends_and_deletes_on_close() {
    let ip = Ipv4Addr::new(127, 0, 0, 73);
    let mut seen = honest_gateway(ip).await;
    let lease = Duration::from_secs(2);
    let mut config = config(ip);
    config.port_mapping_config.lease = lease;
    let session = Session::new(config).await.expect("session starts");
    let port = session.listen_addr().port();
    let mapping = session.port_mapping().expect("port mapping is on");
    let mut state = mapping.watch();
    let mapped = tokio::time::timeout(
        STEP * 4,
        state.wait_for(|s| matches!(s, PortMappingState::Mapped { .. })),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    assert!(mapped, "not mapped: {:?}", mapping.state());
    assert_eq!(session.external_ip(), Some(IpAddr::V4(EXTERNAL)));
    let PortMappingState::Mapped {
        method,
        tcp_port,
        udp_port,
        ..
    } = mapping.state()
    else {
        unreachable!()
    };
    assert_eq!(
        (method, tcp_port, udp_port),
        (swarmer::MappingMethod::NatPmp, port, port)
    );
    // Renewed at half the lease: a second request for each protocol well before the first
    // lease (2 s) is over.
    let count = |v: &[MapRequest], op: u8| {
        v.iter()
            .filter(|r| {
                *r == &MapRequest {
                    op,
                    internal: port,
                    lifetime: 2,
                }
            })
            .count()
    };
    let first = Instant::now();
    let renewed = tokio::time::timeout(
        lease * 2,
        seen.wait_for(|v| count(v, 1) >= 2 && count(v, 2) >= 2),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    assert!(renewed, "no renewal: {:?}", *seen.borrow());
    assert!(
        first.elapsed() < lease,
        "renewed after {:?}",
        first.elapsed()
    );
    // Closing deletes both (lifetime 0).
    mapping.close().await;
    assert_eq!(mapping.state(), PortMappingState::Closed);
    let requests = seen.borrow().clone();
    for op in [1, 2] {
        assert!(
            requests.contains(&MapRequest {
                op,
                internal: port,
                lifetime: 0
            }),
            "no deletion for opcode {op}: {requests:?}"
        );
    }
}

/// A scripted UPnP "gateway" on `ip`: SSDP on port 1900 answering every search with a
/// description URL on port 5000 of the same address, where an HTTP server either sends `garbage`
/// or, for `None`, accepts and stays silent. Returns the count of searches.
async fn upnp_gateway(ip: Ipv4Addr, garbage: Option<&'static [u8]>) -> Arc<AtomicUsize> {
    let ssdp = UdpSocket::bind((ip, 1900)).await.expect("bind SSDP");
    let http = tokio::net::TcpListener::bind((ip, 5000))
        .await
        .expect("bind HTTP");
    let searches = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&searches);
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((_, from)) = ssdp.recv_from(&mut buf).await {
            counted.fetch_add(1, Ordering::SeqCst);
            let reply = format!(
                "HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\n\
                 ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n\
                 USN: uuid:00000000-0000-0000-0000-000000000000\r\n\
                 LOCATION: http://{ip}:5000/rootDesc.xml\r\n\r\n"
            );
            let _ = ssdp.send_to(reply.as_bytes(), from).await;
        }
    });
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut stream, _)) = http.accept().await {
            match garbage {
                Some(bytes) => {
                    let _ = tokio::io::AsyncWriteExt::write_all(&mut stream, bytes).await;
                }
                // Silent: keep the connection open, never answer.
                None => held.push(stream),
            }
        }
    });
    searches
}

fn upnp_config(ip: Ipv4Addr) -> SessionConfig {
    let mut config = config(ip);
    config.port_mapping_config.upnp = true;
    config.port_mapping_config.natpmp = false;
    config.port_mapping_config.ssdp_addr = SocketAddr::from((ip, 1900));
    config
}

/// Starts a session against the UPnP gateway at `ip`: start-up does not wait, mapping fails
/// within the search's deadline (plus slack), and the reason names UPnP.
async fn check_upnp_bounded_failure(ip: Ipv4Addr, searches: Arc<AtomicUsize>) {
    let started = Instant::now();
    let session = Session::new(upnp_config(ip)).await.expect("session starts");
    assert!(started.elapsed() < STEP, "start-up waited for the gateway");
    let mapping = session.port_mapping().expect("port mapping is on");
    let mut state = mapping.watch();
    let bound = STEP + Duration::from_secs(2);
    let failed = tokio::time::timeout(
        bound,
        state.wait_for(|s| matches!(s, PortMappingState::Failed(_))),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    let state = mapping.state();
    assert!(failed, "no failure within {bound:?}; state {state:?}");
    assert!(
        matches!(&state, PortMappingState::Failed(r) if r.contains("UPnP")),
        "{state:?}"
    );
    assert!(
        searches.load(Ordering::SeqCst) > 0,
        "no SSDP search reached the gateway"
    );
    mapping.close().await;
}

#[tokio::test]
async fn a_upnp_gateway_with_a_garbage_description_costs_a_bounded_wait() {
    let ip = Ipv4Addr::new(127, 0, 0, 74);
    let garbage: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n<root><device><<<<<";
    let searches = upnp_gateway(ip, Some(garbage)).await;
    check_upnp_bounded_failure(ip, searches).await;
}

#[tokio::test]
async fn a_upnp_gateway_that_never_answers_http_costs_a_bounded_wait() {
    let ip = Ipv4Addr::new(127, 0, 0, 75);
    let searches = upnp_gateway(ip, None).await;
    check_upnp_bounded_failure(ip, searches).await;
}

/// A PCP (RFC 6887) gateway on `ip`:5351 that ignores NAT-PMP (version 0) and grants every MAP
/// request on the suggested port for the lifetime asked, reporting [`EXTERNAL`]. Publishes the MAP
/// requests as (protocol, internal port, lifetime), protocol 6 for TCP and 17 for UDP.
async fn pcp_gateway(ip: Ipv4Addr) -> watch::Receiver<Vec<(u8, u16, u32)>> {
    let socket = UdpSocket::bind((ip, 5351))
        .await
        .expect("bind the scripted gateway");
    let (seen_tx, seen) = watch::channel(Vec::new());
    tokio::spawn(async move {
        let mut buf = [0u8; 1100];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            // Version 2, opcode MAP (1), a 24-byte header and a 36-byte MAP body.
            if n < 60 || buf[0] != 2 || buf[1] != 1 {
                continue;
            }
            let lifetime = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
            let protocol = buf[36];
            let internal = u16::from_be_bytes([buf[40], buf[41]]);
            seen_tx.send_modify(|v| v.push((protocol, internal, lifetime)));
            let mut reply = buf[..60].to_vec();
            reply[1] = 0x81;
            reply[2] = 0;
            reply[3] = 0; // SUCCESS
            reply[8..12].copy_from_slice(&1000u32.to_be_bytes());
            reply[12..24].fill(0);
            if lifetime == 0 {
                reply[42..44].fill(0);
            }
            // The assigned external address, IPv4-mapped.
            reply[44..56].copy_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);
            reply[56..60].copy_from_slice(&EXTERNAL.octets());
            let _ = socket.send_to(&reply, from).await;
        }
    });
    seen
}

#[tokio::test]
async fn a_pcp_only_gateway_maps_both_ports_after_natpmp_times_out_and_deletes_on_close() {
    let ip = Ipv4Addr::new(127, 0, 0, 76);
    let mut seen = pcp_gateway(ip).await;
    let session = Session::new(config(ip)).await.expect("session starts");
    let port = session.listen_addr().port();
    let mapping = session.port_mapping().expect("port mapping is on");
    let mut state = mapping.watch();
    // NAT-PMP's deadline, then PCP.
    let mapped = tokio::time::timeout(
        STEP * 3 + Duration::from_secs(1),
        state.wait_for(|s| matches!(s, PortMappingState::Mapped { .. })),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    assert!(mapped, "not mapped: {:?}", mapping.state());
    let PortMappingState::Mapped {
        method,
        external_ip,
        tcp_port,
        udp_port,
        ..
    } = mapping.state()
    else {
        unreachable!()
    };
    assert_eq!(
        (method, external_ip, tcp_port, udp_port),
        (
            swarmer::MappingMethod::Pcp,
            Some(IpAddr::V4(EXTERNAL)),
            port,
            port
        )
    );
    mapping.close().await;
    assert_eq!(mapping.state(), PortMappingState::Closed);
    let requests = seen.borrow_and_update().clone();
    for protocol in [6, 17] {
        assert!(
            requests.contains(&(protocol, port, 3600)),
            "no MAP for protocol {protocol}: {requests:?}"
        );
        assert!(
            requests.contains(&(protocol, port, 0)),
            "no deletion for protocol {protocol}: {requests:?}"
        );
    }
}
