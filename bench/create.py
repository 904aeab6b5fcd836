#!/usr/bin/python3
"""Torrent creation benchmark: `swarmer create` against libtorrent and mktorrent, same run.

Writes a payload of --size-mib MiB (4 files with deterministic content, in a directory) to
/dev/shm, then times, --runs times each, alternating:

  swarmer-hybrid   `swarmer create DIR -o T --hybrid --no-date` (all cores)
  swarmer-v1       `swarmer create DIR -o T --v1 --no-date`
  lt-hybrid        libtorrent 2.0 create_torrent + set_piece_hashes (hybrid), via lt_torrent.py
  mktorrent-v1     `mktorrent -t 2 -l 20` (v1, 2 threads)
  baseline-hybrid  with --baseline BIN: BIN's hybrid creation, to compare two builds in one run

all with 1 MiB pieces (what swarmer and libtorrent pick for 4 GiB). Per run: wall seconds
(process start to exit, Python start-up included for libtorrent) and CPU seconds (user+sys).
Every torrent made is checked: libtorrent loads it and, for swarmer's, must find the same v1 and
v2 info hashes as for its own torrent of the same kind. Prints a Markdown table of medians.

Not a test; needs python3-libtorrent and mktorrent:

  cargo build --release -p swarmer-cli
  bench/create.py --size-mib 4096 --runs 3
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import LT_TORRENT, MIB, REPO, log, write_payload  # noqa: E402

CLIENTS = ["swarmer-hybrid", "swarmer-v1", "lt-hybrid", "mktorrent-v1"]


def command(client, args, payload, torrent):
    if client == "baseline-hybrid":
        return [args.baseline, "create", payload, "-o", torrent, "--hybrid", "--no-date",
                "--piece-length", str(MIB)]
    if client.startswith("swarmer-"):
        version = client.split("-")[1]
        return [args.swarmer, "create", payload, "-o", torrent, f"--{version}", "--no-date",
                "--piece-length", str(MIB)]
    if client == "lt-hybrid":
        return ["/usr/bin/python3", LT_TORRENT, "create", payload, torrent, "--version", "hybrid",
                "--piece-length", str(MIB)]
    return ["mktorrent", "-t", "2", "-l", "20", "-o", torrent, payload]


def timed(cmd):
    start = time.monotonic()
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.monotonic() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"bench: {cmd} failed: {child.stderr.read().decode()}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime}


def hashes(torrent):
    import libtorrent as lt

    h = lt.torrent_info(torrent).info_hashes()
    return (str(h.v1) if h.has_v1() else None, str(h.v2) if h.has_v2() else None)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=4096)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--swarmer", default=os.path.join(REPO, "target/release/swarmer"))
    parser.add_argument("--clients", default=",".join(CLIENTS))
    parser.add_argument("--baseline", help="another swarmer binary (say, an earlier build) whose "
                        "hybrid creation runs as client baseline-hybrid, interleaved with the rest")
    parser.add_argument("--keep", action="store_true", help="keep the payload in /dev/shm")
    args = parser.parse_args()
    clients = [c for c in args.clients.split(",") if c]
    if args.baseline:
        clients.insert(0, "baseline-hybrid")
    work = f"/dev/shm/swarmer-create-bench-{os.getpid()}"
    payload = os.path.join(work, "payload")
    os.makedirs(os.path.join(payload, "sub"))
    try:
        log(f"writing {args.size_mib} MiB payload")
        quarter = args.size_mib * MIB // 4
        for i, name in enumerate(["a.bin", "b.bin", "sub/c.bin", "sub/d.bin"]):
            # Not multiples of the piece length, so hybrids need padding.
            write_payload(os.path.join(payload, name), quarter - 12345 * i, seed=i)
        results = {c: [] for c in clients}
        load_before = os.getloadavg()
        made = {}
        for run in range(args.runs):
            for client in clients:
                torrent = os.path.join(work, f"{client}-{run}.torrent")
                r = timed(command(client, args, payload, torrent))
                results[client].append(r)
                made[client] = hashes(torrent)
                log(f"{client} run {run}: {r['wall']:.2f} s wall, {r['cpu']:.2f} s CPU")
        load_after = os.getloadavg()
        for kind in ["swarmer-hybrid", "baseline-hybrid"]:
            if kind in made and "lt-hybrid" in made:
                assert made[kind] == made["lt-hybrid"], made
        if "swarmer-v1" in made and "mktorrent-v1" in made:
            assert made["swarmer-v1"][0] is not None and made["mktorrent-v1"][1] is None
        print(f"\nCreating a torrent of {args.size_mib} MiB in 4 files (/dev/shm, 1 MiB pieces), "
              f"{os.cpu_count()} cores; medians of {args.runs} runs, interleaved. Load average "
              f"(1, 5, 15 min) before: {load_before[0]:.2f} {load_before[1]:.2f} "
              f"{load_before[2]:.2f}, after: {load_after[0]:.2f} {load_after[1]:.2f} "
              f"{load_after[2]:.2f}.\n")
        print("| tool | wall s | GiB/s | CPU s |")
        print("|---|---:|---:|---:|")
        for c in clients:
            wall = statistics.median(r["wall"] for r in results[c])
            cpu = statistics.median(r["cpu"] for r in results[c])
            print(f"| {c} | {wall:.2f} | {args.size_mib / 1024 / wall:.2f} | {cpu:.2f} |")
        if "swarmer-hybrid" in made and "lt-hybrid" in made:
            print("\nswarmer's hybrid torrent has libtorrent's v1 and v2 info hashes.")
        print(f"\nCommand: bench/create.py {' '.join(sys.argv[1:])}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
