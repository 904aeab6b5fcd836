//! Compact peer and node addresses, shared by trackers (BEP 23; BEP 7 for IPv6), peer exchange
//! (BEP 11) and the DHT (BEP 5; BEP 32): the address's bytes, then the port, big-endian.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Bytes of a compact IPv4 address and port.
pub const V4_LEN: usize = 6;
/// Bytes of a compact IPv6 address and port.
pub const V6_LEN: usize = 18;

/// Decodes one compact address of [`V4_LEN`] or [`V6_LEN`] bytes; `None` for any other length or
/// port 0.
pub fn decode(b: &[u8]) -> Option<SocketAddr> {
    let ip = match b.len() {
        V4_LEN => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(&b[..4]).ok()?)),
        V6_LEN => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&b[..16]).ok()?)),
        _ => return None,
    };
    let port = u16::from_be_bytes([b[b.len() - 2], b[b.len() - 1]]);
    (port != 0).then_some(SocketAddr::new(ip, port))
}

/// Appends the compact form of `addr`: [`V4_LEN`] bytes for IPv4, [`V6_LEN`] for IPv6 (an
/// IPv4-mapped IPv6 address stays 18).
pub fn encode_into(out: &mut Vec<u8>, addr: &SocketAddr) {
    match addr.ip() {
        IpAddr::V4(ip) => out.extend_from_slice(&ip.octets()),
        IpAddr::V6(ip) => out.extend_from_slice(&ip.octets()),
    }
    out.extend_from_slice(&addr.port().to_be_bytes());
}

/// `addr` if a peer can listen there: not port 0, not an unspecified, multicast or broadcast
/// address. Whoever handed out the address (a tracker, a peer's PEX, a DHT node, a magnet link),
/// dialling these would reach nobody, or ourselves.
pub fn usable_peer(addr: SocketAddr) -> Option<SocketAddr> {
    let ip = addr.ip();
    let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    (addr.port() != 0 && !ip.is_unspecified() && !ip.is_multicast() && !broadcast).then_some(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refusals() {
        for addr in ["1.2.3.4:6881", "[2001:db8::1]:51413"] {
            let addr: SocketAddr = addr.parse().unwrap();
            let mut out = Vec::new();
            encode_into(&mut out, &addr);
            assert_eq!(decode(&out), Some(addr));
        }
        assert_eq!(decode(&[1, 2, 3, 4, 0, 0]), None, "port 0");
        assert_eq!(decode(&[1, 2, 3, 4, 5]), None, "length");
        for bad in [
            "0.0.0.0:1",
            "255.255.255.255:1",
            "224.0.0.1:1",
            "[::]:1",
            "[ff02::1]:1",
            "1.2.3.4:0",
        ] {
            assert_eq!(usable_peer(bad.parse().unwrap()), None, "{bad}");
        }
        assert!(usable_peer("127.0.0.2:6881".parse().unwrap()).is_some());
    }
}
