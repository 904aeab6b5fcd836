#!/usr/bin/python3
"""One libtorrent (python3-libtorrent 2.0) peer for swarmer's interop tests and benchmark.

Modes:
  seed   add the torrent with the data already in --save-path, check it (or trust it with
         --seed-mode) and seed until killed or --timeout;
  leech  download into --save-path and exit 0 as soon as every piece is verified;
  dht    no torrent: only a DHT node (needs --dht-bootstrap), until killed or --timeout.

Progress goes to stdout as one JSON object per line, flushed at once, so the caller can wait on
events such as {"event":"seeding"} or {"event":"finished","seconds":1.23} by reading the file.
Every event carries "time", the wall clock (Unix seconds) when it was printed, so events can be
ordered against other processes' logs. With --progress, each verified piece is reported as
{"event":"piece","piece":N} (printed after the piece passed its hash check, so its "time" is an
upper bound on when it was verified).
On SIGTERM it prints {"event":"stopped","uploaded":N,"downloaded":N} (payload bytes over its
life) and exits 0; with --report-peers that event also lists every peer it was connected to as
"peers": [{"ip","port","uploaded","downloaded","outgoing","rc4","handshaken"}] (bytes to and
from each, as last sampled while connected, at each poll of the alert queue (ALERT_POLL);
"outgoing": this process dialled it; "rc4": the connection is RC4-encrypted (MSE); "handshaken":
it was past connecting and the handshakes when last sampled).
Exit codes: 0 done (leech), stopped by SIGTERM, or timeout after seeding (seed), 2 timeout before
finishing, 3 torrent error.

Opt-in, for tests of those features: --pex turns peer exchange (BEP 11) on for the torrent,
--magnet adds the torrent by its info hash only (a magnet link: the metadata comes from peers,
BEP 9; --magnet-v2 by its v2 hash alone, `urn:btmh:`, with the torrent's trackers, so it announces
and connects under the v2 hash only), --connect IP:PORT dials a peer directly (repeatable), --lsd turns Local Service Discovery
on and --dht-bootstrap turns the DHT on. --encryption forced refuses anything but RC4 (MSE) both
ways; --encryption plaintext never speaks MSE.

--utp-only turns TCP off and uTP (BEP 29) on (a TCP connection is still accepted, then closed at
once), and --socket-buffer sets the send and receive buffers of its sockets (the UDP socket's decide
uTP speed on loopback).

Every packet stays on the loopback address given by --listen: DHT (unless --dht-bootstrap), LSD
(unless --lsd), UPnP, NAT-PMP, PEX (unless --pex) and uTP (unless --utp-only) are off, and the address is used for
listening, outgoing peer connections and tracker
announces alike (opentracker records the announce's source address).
"""

import argparse
import urllib.parse
import faulthandler
import json
import signal
import sys
import time

import libtorrent as lt

# A crash inside libtorrent would otherwise end the process with no word on stderr.
faulthandler.enable()

# How often the alert queue is polled, in seconds. Not `session.wait_for_alert()`: python3-libtorrent
# 2.0.8 wraps the alert pointer that call returns, and libtorrent's network thread can free it by
# growing the alert queue meanwhile, so the process died of SIGSEGV inside that call now and then
# under heavy alert traffic (piece progress, checking, several peers). Polling `pop_alerts()` on a
# timer touches no alert outside handle_alerts(); events are printed at most this much later.
ALERT_POLL = 0.02


# libtorrent's errors::torrent_inconsistent_hashes.
INCONSISTENT_HASHES = 217


def emit(event, **fields):
    fields["event"] = event
    fields["time"] = time.time()
    print(json.dumps(fields), flush=True)


# With --report-peers: (ip, port) -> the last sample of that connection, kept after it closes.
PEERS_SEEN = {}


def sample_peers(handle):
    for p in handle.get_peer_info():
        PEERS_SEEN[(p.ip[0], p.ip[1])] = {
            "ip": p.ip[0],
            "port": p.ip[1],
            "uploaded": p.total_upload,
            "downloaded": p.total_download,
            "outgoing": bool(p.flags & lt.peer_info.local_connection),
            "rc4": bool(p.flags & lt.peer_info.rc4_encrypted),
            "handshaken": not p.flags & (lt.peer_info.connecting | lt.peer_info.handshake),
        }


class Stop(Exception):
    """Raised by the SIGTERM handler to leave the event loop."""


def on_sigterm(_signum, _frame):
    raise Stop()


def session_settings(listen, high_performance, upload_rate_limit, plaintext=False):
    ip, _, _port = listen.rpartition(":")
    # An IPv6 listen address comes as [::1]:port; outgoing_interfaces wants the bare address.
    ip = ip.strip("[]")
    pack = lt.high_performance_seed() if high_performance else lt.default_settings()
    if plaintext:
        # libtorrent dials with an MSE handshake first by default and falls back to plaintext on a
        # new connection when the peer does not speak MSE (swarmer does not yet).
        pack["out_enc_policy"] = lt.enc_policy.disabled
    pack.update(
        {
            # These must be in the constructor's settings: applied later, the session has
            # already started DHT/LSD/port mapping.
            "enable_dht": False,
            "enable_lsd": False,
            "enable_upnp": False,
            "enable_natpmp": False,
            "enable_outgoing_utp": False,
            "enable_incoming_utp": False,
            "listen_interfaces": listen,
            "outgoing_interfaces": ip,
            "allow_multiple_connections_per_ip": True,
            # Tests put a dead tracker in the first tier; do not wait for it to time out.
            "announce_to_all_tiers": True,
            "announce_to_all_trackers": True,
            "alert_mask": lt.alert.category_t.error_notification
            | lt.alert.category_t.status_notification
            | lt.alert.category_t.storage_notification
            | lt.alert.category_t.tracker_notification
            | lt.alert.category_t.ip_block_notification
            | lt.alert.category_t.piece_progress_notification,
        }
    )
    if upload_rate_limit:
        pack["upload_rate_limit"] = upload_rate_limit
    return pack


def enable_dht_on_loopback(pack, bootstrap):
    """Turns the DHT on, joining through `bootstrap` ("ip:port,ip:port"), in a way that works on
    127.0.0.x: by default libtorrent keeps one routing-table node per /24 (dht_restrict_routing_ips)
    and one per IP in a lookup (dht_restrict_search_ips), which on loopback leaves a single node.
    Each node received or stored is reported (dht_notification alerts)."""
    pack.update(
        {
            "enable_dht": True,
            # libtorrent splits host and port at the last colon and resolves the host, so an
            # IPv6 node goes without brackets ("::1:6882").
            "dht_bootstrap_nodes": ",".join(
                "{}:{}".format(host.strip("[]"), port)
                for host, _, port in (node.rpartition(":") for node in bootstrap.split(","))
            ),
            "dht_restrict_routing_ips": False,
            "dht_restrict_search_ips": False,
            "dht_ignore_dark_internet": False,
            "dht_enforce_node_id": False,
            "dht_prefer_verified_node_ids": False,
            "alert_mask": pack["alert_mask"] | lt.alert.category_t.dht_notification,
        }
    )


def limit_loopback_too(ses):
    """Puts every peer in the global peer class, whose rate limits apply.

    By default loopback and LAN peers sit in the unlimited local peer class, so
    upload_rate_limit would not slow down a test on 127.0.0.x at all.
    """
    classes = lt.ip_filter()
    classes.add_rule("0.0.0.0", "255.255.255.255", 1 << lt.session.global_peer_class_id)
    ses.set_peer_class_filter(classes)


def block_ips(ses, ips):
    """Refuses connections to and from each address in `ips`, in both directions."""
    blocked = lt.ip_filter()
    for ip in ips:
        blocked.add_rule(ip, ip, 1)  # 1 = lt.ip_filter.access_flags.blocked
    ses.set_ip_filter(blocked)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["seed", "leech", "dht"])
    parser.add_argument("--torrent")
    parser.add_argument("--save-path")
    parser.add_argument("--listen", required=True, help="127.0.0.x:port")
    parser.add_argument("--high-performance", action="store_true")
    parser.add_argument(
        "--seed-mode",
        action="store_true",
        help="trust the data without checking it and never verify it while serving "
        "(makes a seeder that serves corrupted data)",
    )
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument(
        "--plaintext",
        action="store_true",
        help="dial peers without trying MSE encryption first (libtorrent's default tries it)",
    )
    parser.add_argument(
        "--encryption",
        choices=["forced", "plaintext"],
        help="forced: MSE with RC4 only, both ways (out_enc_policy and in_enc_policy forced, "
        "allowed_enc_level rc4); plaintext: no MSE either way",
    )
    parser.add_argument(
        "--block-ip",
        action="append",
        default=[],
        metavar="IP",
        help="never connect to or accept this address (repeatable); each refusal is reported as "
        "a peer_blocked event",
    )
    parser.add_argument(
        "--upload-rate-limit",
        type=int,
        default=0,
        metavar="BYTES_PER_S",
        help="limit uploads, loopback peers included (0: unlimited)",
    )
    parser.add_argument(
        "--progress", action="store_true", help="report every verified piece as a piece event"
    )
    parser.add_argument(
        "--lsd",
        action="store_true",
        help="turn Local Service Discovery (BEP 14) on, for this torrent too; its errors are "
        "reported as lsd_error events",
    )
    parser.add_argument(
        "--reannounce",
        type=float,
        default=0.0,
        help="while seeding, re-announce every this many seconds ignoring the tracker's min interval",
    )
    parser.add_argument(
        "--dht-bootstrap",
        metavar="HOST:PORT,...",
        help="turn the DHT on (settings that work on loopback), joining through these nodes; "
        "announces received are reported as dht_announce events",
    )
    parser.add_argument("--pex", action="store_true", help="exchange peers (BEP 11)")
    parser.add_argument(
        "--utp-only",
        action="store_true",
        help="connect and accept over uTP (BEP 29) only; TCP connections are closed at once",
    )
    parser.add_argument(
        "--socket-buffer",
        type=int,
        default=0,
        metavar="BYTES",
        help="send and receive buffer size of every socket (0: the system's)",
    )
    parser.add_argument(
        "--magnet",
        action="store_true",
        help="add the torrent by its info hash only and fetch the metadata from peers (BEP 9)",
    )
    parser.add_argument(
        "--magnet-v2",
        action="store_true",
        help="add the torrent by its v2 info hash only (a btmh magnet link with the torrent's "
        "trackers) and fetch the metadata from peers (BEP 52, BEP 9)",
    )
    parser.add_argument(
        "--recover-inconsistent-hashes",
        type=int,
        default=0,
        metavar="N",
        help="up to N times, resume a torrent that libtorrent stopped with error 217 (v1 and v2 "
        "hashes do not describe the same data), each reported as an inconsistent_hashes event",
    )
    parser.add_argument(
        "--connect",
        action="append",
        default=[],
        metavar="IP:PORT",
        help="dial this peer once the torrent is added (repeatable)",
    )
    parser.add_argument(
        "--report-peers",
        action="store_true",
        help="list the connected peers and the bytes exchanged with each in the stopped event",
    )
    args = parser.parse_args()
    if args.mode != "dht" and (args.torrent is None or args.save_path is None):
        parser.error("seed and leech need --torrent and --save-path")
    if args.mode == "dht" and not args.dht_bootstrap:
        parser.error("dht needs --dht-bootstrap")

    settings = session_settings(
        args.listen, args.high_performance, args.upload_rate_limit, args.plaintext
    )
    if args.encryption == "forced":
        settings["out_enc_policy"] = lt.enc_policy.forced
        settings["in_enc_policy"] = lt.enc_policy.forced
        settings["allowed_enc_level"] = lt.enc_level.rc4
        settings["prefer_rc4"] = True
    elif args.encryption == "plaintext":
        settings["out_enc_policy"] = lt.enc_policy.disabled
        settings["in_enc_policy"] = lt.enc_policy.disabled
    if args.seed_mode:
        # In seed mode libtorrent hashes each piece the first time a peer asks for it and leaves
        # seed mode on a mismatch; this setting makes it trust the data for good.
        settings["disable_hash_checks"] = True
    if args.lsd:
        settings["enable_lsd"] = True
    if args.utp_only:
        settings["enable_outgoing_tcp"] = False
        settings["enable_incoming_tcp"] = False
        settings["enable_outgoing_utp"] = True
        settings["enable_incoming_utp"] = True
    if args.socket_buffer:
        settings["send_socket_buffer_size"] = args.socket_buffer
        settings["recv_socket_buffer_size"] = args.socket_buffer
    if args.dht_bootstrap:
        enable_dht_on_loopback(settings, args.dht_bootstrap)
    ses = lt.session(settings)
    if args.upload_rate_limit:
        limit_loopback_too(ses)
    if args.block_ip:
        block_ips(ses, args.block_ip)

    if args.mode == "dht":
        emit("dht_started", listen=args.listen)
        signal.signal(signal.SIGTERM, on_sigterm)
        try:
            return run_dht(args, ses)
        except Stop:
            emit("stopped")
            return 0

    if args.magnet_v2:
        info = lt.torrent_info(args.torrent)
        link = "magnet:?xt=urn:btmh:1220" + str(info.info_hashes().v2)
        for tracker in info.trackers():
            link += "&tr=" + urllib.parse.quote(tracker.url, safe="")
        params = lt.parse_magnet_uri(link)
    elif args.magnet:
        hashes = lt.torrent_info(args.torrent).info_hashes()
        # A v2-only torrent (BEP 52) has no v1 hash: its link names the SHA-256 as a multihash.
        if hashes.has_v1():
            params = lt.parse_magnet_uri("magnet:?xt=urn:btih:" + str(hashes.v1))
        else:
            params = lt.parse_magnet_uri("magnet:?xt=urn:btmh:1220" + str(hashes.v2))
    else:
        params = lt.add_torrent_params()
        params.ti = lt.torrent_info(args.torrent)
    params.save_path = args.save_path
    flags = lt.torrent_flags
    if not args.pex:
        params.flags |= flags.disable_pex
    if not args.lsd:
        params.flags |= flags.disable_lsd
    if not args.dht_bootstrap:
        params.flags |= flags.disable_dht
    params.flags &= ~flags.auto_managed
    params.flags &= ~flags.paused
    if args.seed_mode:
        params.flags |= flags.seed_mode
    start = time.monotonic()
    handle = ses.add_torrent(params)
    emit("added", info_hash=str(handle.info_hashes().v1), pid_listen=args.listen)
    for peer in args.connect:
        ip, _, port = peer.rpartition(":")
        handle.connect_peer((ip.strip("[]"), int(port)))

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        return run(args, ses, handle, start)
    except Stop:
        status = handle.status()
        fields = {}
        if args.report_peers:
            sample_peers(handle)
            fields["peers"] = list(PEERS_SEEN.values())
        emit(
            "stopped",
            uploaded=status.total_payload_upload,
            downloaded=status.total_payload_download,
            **fields,
        )
        return 0


def handle_alerts(ses, args):
    """Reports the alerts popped from `ses`; returns 3 on a torrent or listen error, else None.

    Alerts are only valid until the next pop_alerts(). Handling them in this function means no
    reference to one (the loop variable) outlives it: python3-libtorrent 2.0 crashed now and then
    while a stale alert object was still alive across pop_alerts() calls.
    """
    alerts = ses.pop_alerts()
    for alert in alerts:
        if isinstance(alert, lt.piece_finished_alert):
            if args.progress:
                emit("piece", piece=alert.piece_index)
        elif isinstance(alert, lt.peer_blocked_alert):
            emit("peer_blocked", ip=str(alert.endpoint[0]), reason=int(alert.reason))
        elif isinstance(alert, lt.lsd_error_alert):
            emit("lsd_error", message=alert.message())
        elif isinstance(alert, lt.hash_failed_alert):
            emit("hash_failed", piece=alert.piece_index)
        elif isinstance(alert, lt.tracker_error_alert):
            emit("tracker_error", url=alert.tracker_url(), message=alert.message())
        elif isinstance(alert, lt.tracker_reply_alert):
            emit("tracker_reply", url=alert.tracker_url(), peers=alert.num_peers)
        elif isinstance(alert, lt.torrent_error_alert):
            if alert.error.value() == INCONSISTENT_HASHES and args.recover_inconsistent_hashes > 0:
                # libtorrent 2.0.8 now and then stops a hybrid downloaded by its v2 hash at its
                # first verified piece with this error, though every hash it was served is proven
                # up to the file's root; resuming lets it download and verify everything again.
                args.recover_inconsistent_hashes -= 1
                emit("inconsistent_hashes", message=alert.message())
                alert.handle.clear_error()
                alert.handle.resume()
                continue
            emit("error", message=alert.message())
            return 3
        elif isinstance(alert, lt.listen_failed_alert):
            emit("error", message=alert.message())
            return 3
        elif isinstance(alert, lt.dht_announce_alert):
            emit(
                "dht_announce",
                ip=str(alert.ip),
                port=alert.port,
                info_hash=str(alert.info_hash),
            )
        elif isinstance(alert, lt.dht_get_peers_alert):
            emit("dht_get_peers", info_hash=str(alert.info_hash))
        elif isinstance(alert, lt.dht_reply_alert):
            emit("dht_reply", peers=alert.num_peers)
        elif isinstance(alert, lt.dht_bootstrap_alert):
            emit("dht_bootstrap")
    return None


def run_dht(args, ses):
    """A DHT-only node: reports alerts and, every 2 s, the size of its routing table."""
    start = time.monotonic()
    last_stats = 0.0
    while True:
        now = time.monotonic()
        if now - start > args.timeout:
            emit("timeout", seconds=now - start)
            return 0
        time.sleep(ALERT_POLL)
        if handle_alerts(ses, args) is not None:
            return 3
        if now - last_stats >= 2.0:
            last_stats = now
            status = ses.status()
            emit("dht_nodes", nodes=status.dht_nodes)


def run(args, ses, handle, start):
    last_state = None
    seeding_since = None
    last_reannounce = 0.0
    while True:
        now = time.monotonic()
        if now - start > args.timeout:
            emit("timeout", seconds=now - start)
            return 0 if seeding_since is not None else 2
        time.sleep(ALERT_POLL)
        if handle_alerts(ses, args) is not None:
            return 3
        if args.report_peers:
            sample_peers(handle)
        status = handle.status()
        state = str(status.state)
        if state != last_state:
            emit("state", state=state, progress=status.progress)
            last_state = state
        if args.mode == "leech" and status.is_seeding:
            emit("finished", seconds=time.monotonic() - start, bytes=status.total_wanted)
            return 0
        if args.mode == "seed" and status.is_seeding:
            if seeding_since is None:
                seeding_since = time.monotonic()
                emit("seeding", seconds=seeding_since - start)
            if args.reannounce > 0 and now - last_reannounce >= args.reannounce:
                # Plain force_reannounce() silently respects the tracker's min interval.
                handle.force_reannounce(0, -1, lt.reannounce_flags_t.ignore_min_interval)
                if args.dht_bootstrap:
                    handle.force_dht_announce()
                last_reannounce = now


if __name__ == "__main__":
    sys.exit(main())
