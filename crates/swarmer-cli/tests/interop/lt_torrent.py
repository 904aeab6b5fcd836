#!/usr/bin/python3
"""Making and checking .torrent files with libtorrent (python3-libtorrent 2.0), for swarmer's
BitTorrent v2 (BEP 52) interop tests and the `swarmer create` benchmark. No network: no session
listens or dials.

Modes:
  create ROOT OUT --version v1|v2|hybrid --piece-length N [--tracker URL]...
         libtorrent's create_torrent + set_piece_hashes over ROOT (a file or directory), written to
         OUT; prints {"v1": HEX|null, "v2": HEX|null, "seconds": S} (S: hashing and writing only).
  check TORRENT SAVE_PATH
         loads TORRENT, prints its versions and hashes, adds it to a session with no network, lets
         libtorrent check the data under SAVE_PATH, and prints {"v1": bool, "v2": bool, "pieces": N,
         "valid": N, "files": [[path, size], ...]} (pad files left out); exits 0 only when every
         piece is valid.
"""

import argparse
import json
import os
import sys
import time

import libtorrent as lt


def create(args):
    flags = {"v1": lt.create_torrent.v1_only, "v2": lt.create_torrent.v2_only, "hybrid": 0}
    start = time.time()
    fs = lt.file_storage()
    lt.add_files(fs, args.root)
    ct = lt.create_torrent(fs, args.piece_length, flags=flags[args.version])
    for tier, url in enumerate(args.tracker):
        ct.add_tracker(url, tier)
    lt.set_piece_hashes(ct, os.path.dirname(os.path.abspath(args.root)))
    with open(args.out, "wb") as out:
        out.write(lt.bencode(ct.generate()))
    seconds = time.time() - start
    hashes = lt.torrent_info(args.out).info_hashes()
    print(json.dumps({
        "v1": str(hashes.v1) if hashes.has_v1() else None,
        "v2": str(hashes.v2) if hashes.has_v2() else None,
        "seconds": seconds,
    }), flush=True)


def check(args):
    info = lt.torrent_info(args.torrent)
    hashes = info.info_hashes()
    settings = {
        "enable_dht": False, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
        "listen_interfaces": "", "alert_mask": lt.alert.category_t.status_notification,
    }
    ses = lt.session(settings)
    handle = ses.add_torrent({"ti": info, "save_path": args.save_path})
    deadline = time.time() + args.timeout
    while time.time() < deadline:
        status = handle.status()
        if status.state not in (lt.torrent_status.checking_files,
                                lt.torrent_status.checking_resume_data) and status.has_metadata:
            if status.state != lt.torrent_status.states.checking_files:
                break
        time.sleep(0.05)
    status = handle.status()
    storage = info.files()
    files = [[storage.file_path(i), storage.file_size(i)] for i in range(storage.num_files())
             if not storage.file_flags(i) & lt.file_storage.flag_pad_file]
    print(json.dumps({
        "v1": hashes.has_v1(), "v2": hashes.has_v2(), "pieces": info.num_pieces(),
        "valid": status.num_pieces, "state": str(status.state), "files": files,
        "error": str(status.errc.message()) if status.errc.value() else None,
    }), flush=True)
    sys.exit(0 if status.num_pieces == info.num_pieces() else 1)


def main():
    parser = argparse.ArgumentParser()
    modes = parser.add_subparsers(dest="mode", required=True)
    c = modes.add_parser("create")
    c.add_argument("root")
    c.add_argument("out")
    c.add_argument("--version", choices=["v1", "v2", "hybrid"], required=True)
    c.add_argument("--piece-length", type=int, required=True)
    c.add_argument("--tracker", action="append", default=[])
    k = modes.add_parser("check")
    k.add_argument("torrent")
    k.add_argument("save_path")
    k.add_argument("--timeout", type=float, default=60)
    args = parser.parse_args()
    create(args) if args.mode == "create" else check(args)


if __name__ == "__main__":
    main()
