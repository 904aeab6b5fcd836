#!/usr/bin/python3
"""Download benchmark: swarmer against libtorrent, leeching from one libtorrent seeder on loopback.

Creates a single-file payload with deterministic content in /dev/shm, makes a torrent with
mktorrent (1 MiB pieces), starts opentracker on 127.0.0.1 and a libtorrent seeder
(high_performance_seed settings) on 127.0.0.2, then times each client N times, alternating:

  swarmer     `swarmer download T -o DIR --bind-address 127.0.0.10 --port 6890 -q --no-dht --no-lsd --no-pex`
  lt-hp       a libtorrent leecher with high_performance_seed() settings (127.0.0.11)
  lt-default  a libtorrent leecher with default settings (127.0.0.12)

Per run: wall seconds, MiB/s, CPU seconds (user+sys of the child, from wait4), peak RSS
(ru_maxrss) and peak anonymous RSS (sampled from /proc: libtorrent 2.0 mmaps the payload, so its
total RSS counts file pages). Every download is checked against the payload's SHA-1. Prints a
Markdown table of medians and the ratio of swarmer to the faster libtorrent leecher.

Not a test. Needs root (it re-executes itself inside a private network namespace holding only
`lo`, like the interop tests), opentracker, mktorrent and python3-libtorrent:

  cargo build --release -p swarmer-cli
  sudo bench/download.py --size-mib 1024 --runs 3 --clients swarmer,lt-hp,lt-default
"""

import argparse
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (  # noqa: E402 - the payload, tracker and process helpers shared by bench/
    LT_PEER, REPO, Swarm, check_swarmer, die_with_parent, ensure_netns, in_workdir, log,
    medians, peak_anon_rss_sampler, sha1_of, tracker_lists, wait_for, warm_up)

IN_NETNS = "SWARMER_BENCH_IN_NETNS"
SEEDER = ("127.0.0.2", 6881)
CLIENT_ADDR = {
    "swarmer": ("127.0.0.10", 6890),
    "lt-hp": ("127.0.0.11", 6881),
    "lt-default": ("127.0.0.12", 6881),
}


def run_client(client, args, torrent, outdir, logdir, run_index):
    ip, port = CLIENT_ADDR[client]
    if client == "swarmer":
        command = [args.swarmer, "download", torrent, "-o", outdir, "--bind-address", ip,
                   "--port", str(port), "-q", "--no-dht", "--no-lsd", "--no-pex", "--no-port-mapping"]
    else:
        command = ["/usr/bin/python3", LT_PEER, "leech", "--torrent", torrent, "--save-path", outdir,
                   "--listen", f"{ip}:{port}", "--timeout", str(args.timeout)]
        if client == "lt-hp":
            command.append("--high-performance")
    env = dict(os.environ)
    env.pop("RUST_LOG", None)
    name = f"{client}-{run_index}"
    with open(os.path.join(logdir, f"{name}.stdout"), "wb") as out, \
            open(os.path.join(logdir, f"{name}.stderr"), "wb") as err:
        start = time.monotonic()
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env,
                                 preexec_fn=die_with_parent)
        sample = peak_anon_rss_sampler(child.pid)
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            sample()
            if time.monotonic() - start > args.timeout:
                child.kill()
                pid, status, usage = os.wait4(child.pid, 0)
                sys.exit(f"bench: {name} timed out after {args.timeout}s; logs in {logdir}")
            time.sleep(0.02)
        wall = time.monotonic() - start
        child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        sys.exit(f"bench: {name} exited with {child.returncode}; logs in {logdir}")
    return {
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "maxrss_mib": usage.ru_maxrss / 1024,
        "anon_mib": sample() / 1024,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--swarmer", default=os.path.join(REPO, "target/release/swarmer"))
    parser.add_argument("--clients", default="swarmer,lt-hp",
                        help="comma-separated, in run order: swarmer, lt-hp, lt-default")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per download")
    parser.add_argument("--torrent-version", choices=["v1", "v2", "hybrid"], default="v1",
                        help="v1: made by mktorrent; v2 or hybrid (BEP 52): made by libtorrent")
    parser.add_argument("--keep", action="store_true", help="keep the files in /dev/shm")
    args = parser.parse_args()
    clients = [c for c in args.clients.split(",") if c]
    unknown = [c for c in clients if c not in CLIENT_ADDR]
    if unknown:
        parser.error(f"unknown clients {unknown}; choose from {list(CLIENT_ADDR)}")
    if "swarmer" in clients:
        check_swarmer(parser, args)
    ensure_netns(__file__, IN_NETNS)
    in_workdir("swarmer-bench", args.keep, lambda work, procs: bench(args, clients, work, procs))


def bench(args, clients, work, procs):
    swarm = Swarm(work, args.size_mib, procs, args.torrent_version)
    logdir, seed_dir, torrent, ih = swarm.logdir, swarm.seed_dir, swarm.torrent, swarm.info_hash
    want_sha1 = swarm.sha1
    deadline = time.monotonic() + 120 + args.size_mib / 50
    seeder_log = os.path.join(logdir, "seeder.stdout")
    seeder = procs.start("seeder", ["/usr/bin/python3", LT_PEER, "seed", "--torrent", torrent,
                                    "--save-path", seed_dir, "--listen", f"{SEEDER[0]}:{SEEDER[1]}",
                                    "--high-performance", "--reannounce", "2", "--timeout", "1e9"],
                         logdir)

    def seeding():
        if seeder.poll() is not None:
            sys.exit(f"bench: seeder exited; see {logdir}")
        with open(seeder_log) as f:
            return '"event": "seeding"' in f.read()

    wait_for("the seeder to check its data", deadline, seeding)
    wait_for("the tracker to list the seeder", deadline, lambda: tracker_lists(ih, SEEDER), 0.25)
    log("seeder is listed; warming up")
    warm_up(work, 2 * args.size_mib)
    log("starting runs")

    results = {c: [] for c in clients}
    for run in range(args.runs):
        for client in clients:
            outdir = os.path.join(work, f"dl-{client}-{run}")
            os.makedirs(outdir)
            r = run_client(client, args, torrent, outdir, logdir, run)
            downloaded = os.path.join(outdir, "bench.bin")
            if not os.path.isfile(downloaded):
                sys.exit(f"bench: {client} run {run} exited 0 but wrote no {downloaded}; logs in {logdir}")
            got = sha1_of(downloaded)
            if got != want_sha1:
                sys.exit(f"bench: {client} run {run} downloaded a different file (sha1 {got})")
            r["mibps"] = args.size_mib / r["wall"]
            results[client].append(r)
            log(f"{client} run {run}: {r['wall']:.2f}s {r['mibps']:.0f} MiB/s cpu {r['cpu']:.2f}s "
                f"rss {r['maxrss_mib']:.0f} MiB anon {r['anon_mib']:.0f} MiB (sha1 ok)")
            shutil.rmtree(outdir)
    report(args, clients, results)


def report(args, clients, results):
    med = medians(results)
    print(f"\nDownload of a {args.size_mib} MiB single-file {args.torrent_version} torrent (1 MiB pieces) from one "
          f"libtorrent 2.0 high-performance seeder over loopback; medians of {args.runs} runs.\n")
    print("| client | wall s | MiB/s | CPU s (user+sys) | peak RSS MiB | peak anon RSS MiB |")
    print("|---|---:|---:|---:|---:|---:|")
    for c in clients:
        m = med[c]
        print(f"| {c} | {m['wall']:.2f} | {m['mibps']:.0f} | {m['cpu']:.2f} | "
              f"{m['maxrss_mib']:.0f} | {m['anon_mib']:.0f} |")
    lt_clients = [c for c in clients if c.startswith("lt-")]
    if "swarmer" in clients and lt_clients:
        best = min(lt_clients, key=lambda c: med[c]["wall"])
        print(f"\nswarmer / {best} (the faster libtorrent leecher): wall "
              f"{med['swarmer']['wall'] / med[best]['wall']:.2f}x, CPU "
              f"{med['swarmer']['cpu'] / med[best]['cpu']:.2f}x, anon RSS "
              f"{med['swarmer']['anon_mib'] / max(med[best]['anon_mib'], 1e-9):.2f}x")
    print("\nlibtorrent leechers are Python processes: their wall, CPU and RSS include the "
          "interpreter and session start-up.")
    print(f"\nCommand: bench/download.py {' '.join(sys.argv[1:])}")


if __name__ == "__main__":
    main()
