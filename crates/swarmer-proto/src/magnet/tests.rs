//! Tests of magnet URI parsing (BEP 9 magnet links, BEP 53 `so`): the BEP examples, hybrid links,
//! and bad hashes, peers, ports and encodings.

use super::*;

#[test]
fn magnet_uris_are_told_from_paths() {
    assert!(is_magnet_uri("magnet:?xt=urn:btih:00"));
    assert!(is_magnet_uri("MAGNET:?xt"));
    assert!(!is_magnet_uri("magnet.torrent"));
    assert!(!is_magnet_uri("/tmp/magnet:x"));
    assert!(!is_magnet_uri("mag"));
}

const HEX: &str = "c9e15763f722f23e98a29decdfae341b98d53056";

fn hash() -> InfoHash {
    InfoHash::from_hex(HEX).unwrap()
}

fn check_err(uri: &str, expected: MagnetError) {
    assert_eq!(Magnet::parse(uri), Err(expected), "{uri}");
}

#[test]
fn bep9_example_with_every_parameter() {
    let m = Magnet::parse(&format!(
        "magnet:?xt=urn:btih:{HEX}&dn=Cosmos+Laundromat%20%28720p%29\
         &tr=http%3A%2F%2Ftracker.example%3A6969%2Fannounce&tr.1=udp://t2.example:80\
         &tr=http%3A%2F%2Ftracker.example%3A6969%2Fannounce&x.pe=10.0.0.1:6881\
         &x.pe=[2001:db8::1]:51413&x.pe=peer.example:7000&so=0,2,4-6&ws=http://seed/\
         &ws.1=https%3A%2F%2Fmirror.example%2Fpub%2F&ws=http://seed/&ws=ftp://x/&unknown"
    ))
    .unwrap();
    assert_eq!(
        m,
        Magnet {
            info_hash_v2: None,
            info_hash: hash(),
            display_name: Some("Cosmos Laundromat (720p)".into()),
            trackers: vec![
                "http://tracker.example:6969/announce".into(),
                "udp://t2.example:80".into()
            ],
            peers: vec![
                MagnetPeer::Addr("10.0.0.1:6881".parse().unwrap()),
                MagnetPeer::Addr("[2001:db8::1]:51413".parse().unwrap()),
                MagnetPeer::Host {
                    host: "peer.example".into(),
                    port: 7000
                },
            ],
            select_only: Some(vec![0..=0, 2..=2, 4..=6]),
            web_seeds: vec!["http://seed/".into(), "https://mirror.example/pub/".into()],
        }
    );
}

#[test]
fn minimal_link_and_case_insensitivity() {
    let m = Magnet::parse(&format!("MAGNET:?xt=URN:BTIH:{}", HEX.to_uppercase())).unwrap();
    assert_eq!(m.info_hash, hash());
    assert_eq!(m.display_name, None);
    assert!(m.trackers.is_empty() && m.peers.is_empty());
    assert_eq!(m.select_only, None);
    // A fragment and empty values are ignored; a repeated identical hash is fine.
    let m = Magnet::parse(&format!(
        "magnet:?dn=&tr=&xt=urn:btih:{HEX}&xt.1=urn:btih:{HEX}#x"
    ))
    .unwrap();
    assert_eq!(m.display_name, None);
    assert!(m.trackers.is_empty());
}

#[test]
fn base32_hashes() {
    // The RFC 4648 base32 form of the same 20 bytes, in both cases.
    let base32 = "ZHQVOY7XELZD5GFCTXWN7LRUDOMNKMCW";
    let m = Magnet::parse(&format!("magnet:?xt=urn:btih:{base32}")).unwrap();
    assert_eq!(m.info_hash, hash());
    let m = Magnet::parse(&format!("magnet:?xt=urn:btih:{}", base32.to_lowercase())).unwrap();
    assert_eq!(m.info_hash, hash());
    check_err(
        "magnet:?xt=urn:btih:ZHQVOY7XELZD5GFCTXWN7LRUDOMNKMC1",
        MagnetError::BadBase32("ZHQVOY7XELZD5GFCTXWN7LRUDOMNKMC1".into()),
    );
}

const V2: &str = "caf1e1c30e81cb361b9ee167c4aa64228a7fa4fa9f6105232b28ad099f3a302e";

#[test]
fn hybrid_links_use_the_v1_hash_and_keep_the_v2_one() {
    let m = Magnet::parse(&format!("magnet:?xt=urn:btmh:1220{V2}&xt=urn:btih:{HEX}")).unwrap();
    assert_eq!(m.info_hash, hash());
    let v2: String = m
        .info_hash_v2
        .unwrap()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(v2, V2);
}

#[test]
fn v2_only_links_use_the_truncated_v2_hash() {
    let m = Magnet::parse(&format!("magnet:?xt=urn:btmh:1220{V2}&dn=x")).unwrap();
    assert_eq!(m.info_hash.to_hex(), V2[..40]);
    assert!(m.info_hash_v2.is_some());
    let bad = |hash: &str| MagnetError::BadMultihash(hash.to_owned());
    assert!(matches!(
        Magnet::parse(&format!("magnet:?xt=urn:btmh:1114{V2}")),
        Err(MagnetError::BadMultihash(_))
    ));
    check_err("magnet:?xt=urn:btmh:1220abcd", bad("1220abcd"));
    assert!(matches!(
        Magnet::parse(&format!("magnet:?xt=urn:btmh:1220{}zz", &V2[..62])),
        Err(MagnetError::BadMultihash(_))
    ));
    check_err(
        &format!(
            "magnet:?xt=urn:btmh:1220{V2}&xt=urn:btmh:1220{}",
            "0".repeat(64)
        ),
        MagnetError::ConflictingInfoHashes,
    );
    check_err("magnet:?dn=x", MagnetError::MissingInfoHash);
}

#[test]
fn bad_hashes() {
    check_err("magnet:?dn=x", MagnetError::MissingInfoHash);
    check_err("magnet:?", MagnetError::MissingInfoHash);
    check_err(
        &format!("magnet:?xt=urn:btih:{}", &HEX[..39]),
        MagnetError::HashLength(39),
    );
    check_err("magnet:?xt=urn:btih:", MagnetError::HashLength(0));
    let not_hex = format!("{}g", &HEX[..39]);
    check_err(
        &format!("magnet:?xt=urn:btih:{not_hex}"),
        MagnetError::BadHex(not_hex.clone()),
    );
    check_err(
        &format!("magnet:?xt=urn:btih:{HEX}&xt=urn:btih:{}", "0".repeat(40)),
        MagnetError::ConflictingInfoHashes,
    );
    // Lengths count characters, not bytes.
    check_err(
        &format!("magnet:?xt=urn:btih:{}", "é".repeat(20)),
        MagnetError::HashLength(20),
    );
    check_err(
        &format!("magnet:?xt=urn:btih:{}", "é".repeat(40)),
        MagnetError::BadHex("é".repeat(40)),
    );
    check_err(
        &format!("magnet:?xt=urn:btih:{}", "é".repeat(32)),
        MagnetError::BadBase32("é".repeat(32)),
    );
}

#[test]
fn bad_peers_and_ports() {
    let with_peer = |peer: &str| format!("magnet:?xt=urn:btih:{HEX}&x.pe={peer}");
    for bad in [
        "10.0.0.1",
        "[::1]",
        "[::1]6881",
        "[nope]:1",
        ":6881",
        "a b:1",
        "[::1:1",
    ] {
        check_err(&with_peer(bad), MagnetError::BadPeer(bad.into()));
    }
    for bad in [
        "10.0.0.1:0",
        "10.0.0.1:65536",
        "h:-1",
        "[::1]:",
        "h:x",
        "h:",
    ] {
        check_err(&with_peer(bad), MagnetError::BadPort(bad.into()));
    }
    // A percent-encoded IPv6 address decodes first.
    let m = Magnet::parse(&with_peer("%5B%3A%3A1%5D%3A6881")).unwrap();
    assert_eq!(m.peers, [MagnetPeer::Addr("[::1]:6881".parse().unwrap())]);
}

#[test]
fn bep53_file_selection() {
    let with_so = |so: &str| format!("magnet:?xt=urn:btih:{HEX}&so={so}");
    let m = Magnet::parse(&with_so("0,2,4-6")).unwrap();
    assert_eq!(m.select_only, Some(vec![0..=0, 2..=2, 4..=6]));
    let m = Magnet::parse(&with_so("7")).unwrap();
    assert_eq!(m.select_only, Some(vec![7..=7]));
    for bad in [
        "",
        "1,",
        "a",
        "3-1",
        "-1",
        "1-",
        "1-2-3",
        "4294967296",
        "1.5",
        "1 ,2",
    ] {
        check_err(&with_so(bad), MagnetError::BadFileSelection(bad.into()));
    }
}

#[test]
fn encodings_and_limits() {
    check_err("http://example/", MagnetError::NotMagnet);
    check_err("magnet:", MagnetError::NotMagnet);
    check_err("magnet:xt=urn:btih:", MagnetError::NotMagnet);
    check_err(
        &format!("magnet:?xt=urn:btih:{HEX}&dn=%ZZ"),
        MagnetError::BadEncoding { param: "dn".into() },
    );
    check_err(
        &format!("magnet:?xt=urn:btih:{HEX}&tr=%ff"),
        MagnetError::BadEncoding { param: "tr".into() },
    );
    check_err(
        &format!("magnet:?xt=urn:btih:{HEX}&dn=%4"),
        MagnetError::BadEncoding { param: "dn".into() },
    );
    // A value decoding to non-ASCII UTF-8 is kept.
    let m = Magnet::parse(&format!("magnet:?xt=urn:btih:{HEX}&dn=%C3%BC%2B1")).unwrap();
    assert_eq!(m.display_name.as_deref(), Some("ü+1"));
    // Unknown parameters, even malformed ones, are ignored.
    let m = Magnet::parse(&format!("magnet:?xs=%ZZ&&=&xt=urn:btih:{HEX}&kt=a+b")).unwrap();
    assert_eq!(m.info_hash, hash());
    let long = format!(
        "magnet:?xt=urn:btih:{HEX}&dn={}",
        "a".repeat(MAX_MAGNET_LEN)
    );
    assert_eq!(
        Magnet::parse(&long),
        Err(MagnetError::TooLong { len: long.len() })
    );
    // Values quoted in errors are cut.
    let peer = "h".repeat(100);
    let Err(MagnetError::BadPeer(quoted)) =
        Magnet::parse(&format!("magnet:?xt=urn:btih:{HEX}&x.pe={peer}"))
    else {
        panic!("expected BadPeer");
    };
    assert_eq!(quoted, format!("{}...", &peer[..64]));
}
