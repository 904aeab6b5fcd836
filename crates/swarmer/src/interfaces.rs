//! The host's IPv6 interface addresses, read from Linux's `/proc/net/if_inet6` (the workspace
//! forbids `unsafe`, so no `getifaddrs`; elsewhere there are none): our global address, which
//! trackers are told (BEP 7 `ipv6=`), and the interfaces that have IPv6, which LSD joins its IPv6
//! group on (BEP 14). Read when a session starts; an address that changes later is not followed.

use std::net::Ipv6Addr;

/// One line of `/proc/net/if_inet6`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ipv6Interface {
    pub(crate) addr: Ipv6Addr,
    /// The interface index (for multicast joins).
    pub(crate) index: u32,
    /// The interface's name.
    pub(crate) name: String,
    /// `IFA_F_*` flags: temporary (privacy), deprecated, tentative.
    flags: u32,
}

/// `IFA_F_TEMPORARY`: a privacy address, which changes.
const TEMPORARY: u32 = 0x01;
/// `IFA_F_DEPRECATED` and `IFA_F_TENTATIVE` (duplicate address detection not done): not to be
/// handed out.
const UNUSABLE: u32 = 0x20 | 0x40;

/// The host's IPv6 addresses (empty without IPv6 or off Linux).
pub(crate) fn ipv6_interfaces() -> Vec<Ipv6Interface> {
    std::fs::read_to_string("/proc/net/if_inet6")
        .map(|text| parse(&text))
        .unwrap_or_default()
}

/// Our global unicast IPv6 address (in `2000::/3`, not documentation, usable), a stable one
/// before a temporary one; `None` without one.
pub(crate) fn global_ipv6(interfaces: &[Ipv6Interface]) -> Option<Ipv6Addr> {
    let global = |i: &&Ipv6Interface| {
        let s = i.addr.segments();
        s[0] & 0xe000 == 0x2000 && !(s[0] == 0x2001 && s[1] == 0x0db8) && i.flags & UNUSABLE == 0
    };
    let usable: Vec<&Ipv6Interface> = interfaces.iter().filter(global).collect();
    usable
        .iter()
        .find(|i| i.flags & TEMPORARY == 0)
        .or(usable.first())
        .map(|i| i.addr)
}

/// Parses `/proc/net/if_inet6`: per line the address in 32 hex digits, then the interface index,
/// prefix length, scope and flags in hex, and the name. Malformed lines are skipped.
fn parse(text: &str) -> Vec<Ipv6Interface> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [addr, index, _prefix, _scope, flags, name] = fields[..] else {
                return None;
            };
            let addr = u128::from_str_radix(addr, 16)
                .ok()
                .filter(|_| addr.len() == 32)?;
            Some(Ipv6Interface {
                addr: Ipv6Addr::from(addr),
                index: u32::from_str_radix(index, 16).ok()?,
                name: name.to_owned(),
                flags: u32::from_str_radix(flags, 16).ok()?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stable_global_address_is_ours() {
        let text = "\
fe8000000000000000fc00fffe000001 04 40 20 80     eth0
fd000000000000000000000000000002 04 40 00 82     eth0
2a0104f8000000010000000000000099 02 40 00 01     eth1
2a0104f8000000010000000000000002 02 40 00 00     eth1
20010db8000000000000000000000001 02 40 00 00     eth1
2a0104f8000000010000000000000003 02 40 00 40     eth1
00000000000000000000000000000001 01 80 10 80       lo
garbage line
";
        let interfaces = parse(text);
        assert_eq!(interfaces.len(), 7);
        assert_eq!(interfaces[0].index, 4);
        assert_eq!(interfaces[6].name, "lo");
        let ours = global_ipv6(&interfaces).unwrap();
        assert_eq!(ours, "2a01:4f8:0:1::2".parse::<Ipv6Addr>().unwrap());
        // Temporary only: taken for want of a stable one. Link-local, ULA, loopback: none.
        assert_eq!(
            global_ipv6(&interfaces[2..3]),
            Some("2a01:4f8:0:1::99".parse().unwrap())
        );
        assert_eq!(
            global_ipv6(&parse(&text.lines().take(2).collect::<Vec<_>>().join("\n"))),
            None
        );
        assert_eq!(global_ipv6(&interfaces[4..]), None);
    }
}
