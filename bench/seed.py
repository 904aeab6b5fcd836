#!/usr/bin/python3
"""Seed benchmark: swarmer against libtorrent as the seeder of one libtorrent leecher on loopback.

Creates a single-file payload with deterministic content in /dev/shm, makes a torrent with
mktorrent (1 MiB pieces) and starts opentracker on 127.0.0.1. Then, N times each and alternating,
it starts one seeder on that payload:

  swarmer     `swarmer seed T -o DIR --bind-address 127.0.0.10 --port 6890 --no-dht --no-lsd --no-pex`
              (release build)
  libtorrent  a libtorrent seeder with high_performance_seed() settings (127.0.0.2)

waits until it has verified its data and the tracker lists it, and times a libtorrent leecher
with high_performance_seed() settings (127.0.0.11) downloading the whole payload from it. The
seeder's start-up verification is outside every measurement.

Per run: the leecher's wall seconds (process start to exit) and MiB/s; the seeder's CPU seconds
(user+sys from /proc/PID/stat, all threads) spent while the leecher ran, sampled just before the
seeder is stopped, minus what it had used until the leecher started; the seeder's peak RSS and
peak anonymous RSS while serving (VmRSS and RssAnon sampled from /proc/PID/status; libtorrent 2.0
mmaps the payload, so its total RSS counts file pages). Every download is checked against the
payload's SHA-1. Prints a Markdown table of medians and the ratio swarmer / libtorrent.

Not a test. Needs root (it re-executes itself inside a private network namespace holding only
`lo`, like the interop tests), opentracker, mktorrent and python3-libtorrent. Reproduce with:

  cargo build --release -p swarmer-cli
  sudo bench/seed.py --size-mib 1024 --runs 3 --seeders swarmer,libtorrent
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# The helpers shared by bench/: payload, torrent, tracker probe, process bookkeeping, /proc.
import common  # noqa: E402
from common import MemorySampler, cpu_seconds  # noqa: E402

IN_NETNS = "SWARMER_SEED_BENCH_IN_NETNS"
SEEDER_ADDR = {
    "swarmer": ("127.0.0.10", 6890),
    "libtorrent": ("127.0.0.2", 6881),
}
LEECHER = ("127.0.0.11", 6881)
MIB = common.MIB


def log(message):
    print(f"[seed-bench] {message}", file=sys.stderr, flush=True)


def start_seeder(kind, args, torrent, seed_dir, logdir, procs, run_index):
    ip, port = SEEDER_ADDR[kind]
    name = f"{kind}-seeder-{run_index}"
    if kind == "swarmer":
        # -v logs only events (connections, announces), so a slow run can be explained from
        # its log without costing the transfer anything measurable.
        command = [args.swarmer, "seed", torrent, "-o", seed_dir, "--bind-address", ip,
                   "--port", str(port), "-v", "--no-dht", "--no-lsd", "--no-pex", "--no-port-mapping"]
    else:
        command = ["/usr/bin/python3", common.LT_PEER, "seed", "--torrent", torrent,
                   "--save-path", seed_dir, "--listen", f"{ip}:{port}", "--high-performance",
                   "--timeout", "1e9"]
    env = dict(os.environ)
    env.pop("RUST_LOG", None)
    child = procs.start(name, command, logdir, env=env)
    return name, child


def wait_ready(kind, name, child, ih, logdir, deadline):
    """Until the seeder has verified its data and the tracker hands it out."""

    def alive():
        if child.poll() is not None:
            sys.exit(f"seed-bench: {name} exited with {child.returncode}; logs in {logdir}")

    if kind == "libtorrent":
        def seeding():
            alive()
            with open(os.path.join(logdir, f"{name}.stdout")) as f:
                return '"event": "seeding"' in f.read()
    else:
        def seeding():
            alive()
            with open(os.path.join(logdir, f"{name}.stderr")) as f:
                return ": data verified, seeding" in f.read()

    def listed():
        alive()
        return common.tracker_lists(ih, SEEDER_ADDR[kind])

    common.wait_for(f"{name} to verify its data", deadline, seeding)
    common.wait_for(f"the tracker to list {name}", deadline, listed, 0.1)


def stop_seeder(kind, child):
    """swarmer gets SIGTERM and announces `stopped`; libtorrent's driver is simply ended."""
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            log(f"{kind} seeder ignored SIGTERM for 15 s; killing it")
            child.kill()
            child.wait()


def warn_disconnects(stderr_log, name):
    """Reports each peer swarmer dropped for a reason other than the leecher having become a
    seed: a leecher that is cut off waits for libtorrent's reconnect delay (about 60 s), which
    would otherwise show up only as a slow run."""
    with open(stderr_log, errors="replace") as f:
        for line in f:
            if "disconnecting peer" in line and "both sides are seeds" not in line:
                line = re.sub(r"\x1b\[[0-9;]*m", "", line)  # tracing colours its fields
                log(f"warning: {name} {line[line.find('disconnecting peer'):].strip()}")


def leech(args, torrent, outdir, logdir, name, seeder, memory):
    """Runs the leecher to completion; samples the seeder's memory meanwhile. Returns its wall
    seconds and the seconds it reported from adding the torrent to having every piece."""
    command = ["/usr/bin/python3", common.LT_PEER, "leech", "--torrent", torrent, "--save-path",
               outdir, "--listen", f"{LEECHER[0]}:{LEECHER[1]}", "--high-performance",
               "--timeout", str(args.timeout)]
    if args.plaintext_leecher:
        command.append("--plaintext")
    stdout = os.path.join(logdir, f"{name}.stdout")
    with open(stdout, "wb") as out, open(os.path.join(logdir, f"{name}.stderr"), "wb") as err:
        start = time.monotonic()
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                 preexec_fn=common.die_with_parent)
        while child.poll() is None:
            memory.sample()
            if seeder.poll() is not None:
                child.kill()
                child.wait()
                sys.exit(f"seed-bench: the seeder exited during {name}; logs in {logdir}")
            if time.monotonic() - start > args.timeout:
                child.kill()
                child.wait()
                sys.exit(f"seed-bench: {name} timed out after {args.timeout}s; logs in {logdir}")
            time.sleep(0.02)
        wall = time.monotonic() - start
    if child.returncode != 0:
        sys.exit(f"seed-bench: {name} exited with {child.returncode}; logs in {logdir}")
    in_session = None
    with open(stdout) as f:
        for line in f:
            if '"event": "finished"' in line:
                in_session = json.loads(line)["seconds"]
    return wall, in_session


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--swarmer", default=os.path.join(common.REPO, "target/release/swarmer"))
    parser.add_argument("--seeders", default="swarmer,libtorrent",
                        help="comma-separated, in run order: swarmer, libtorrent")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per download")
    parser.add_argument("--keep", action="store_true", help="keep the files in /dev/shm")
    parser.add_argument("--plaintext-leecher", action="store_true",
                        help="the leecher dials without trying MSE first (swarmer has no MSE yet, so "
                        "by default libtorrent's first connection to it fails and it redials)")
    args = parser.parse_args()
    seeders = [s for s in args.seeders.split(",") if s]
    unknown = [s for s in seeders if s not in SEEDER_ADDR]
    if unknown:
        parser.error(f"unknown seeders {unknown}; choose from {list(SEEDER_ADDR)}")
    if "swarmer" in seeders:
        common.check_swarmer(parser, args)
    common.ensure_netns(__file__, IN_NETNS)
    common.in_workdir("swarmer-seed-bench", args.keep,
                  lambda work, procs: bench(args, seeders, work, procs))


def bench(args, seeders, work, procs):
    swarm = common.Swarm(work, args.size_mib, procs)
    logdir, seed_dir, torrent, ih = swarm.logdir, swarm.seed_dir, swarm.torrent, swarm.info_hash
    want_sha1 = swarm.sha1
    log("warming up")
    common.warm_up(work, 2 * args.size_mib)

    results = {s: [] for s in seeders}
    for run in range(args.runs):
        for kind in seeders:
            deadline = time.monotonic() + 120 + args.size_mib / 50
            name, seeder = start_seeder(kind, args, torrent, seed_dir, logdir, procs, run)
            wait_ready(kind, name, seeder, ih, logdir, deadline)
            memory = MemorySampler(seeder.pid)
            cpu_before = cpu_seconds(seeder.pid)
            outdir = os.path.join(work, f"dl-{kind}-{run}")
            os.makedirs(outdir)
            wall, in_session = leech(args, torrent, outdir, logdir, f"leecher-{kind}-{run}",
                                     seeder, memory)
            memory.sample()
            cpu = cpu_seconds(seeder.pid) - cpu_before
            stop_seeder(kind, seeder)
            if kind == "swarmer":
                warn_disconnects(os.path.join(logdir, f"{name}.stderr"), name)
            downloaded = os.path.join(outdir, "bench.bin")
            if not os.path.isfile(downloaded):
                sys.exit(f"seed-bench: the leecher of {name} wrote no {downloaded}; logs in {logdir}")
            got = common.sha1_of(downloaded)
            if got != want_sha1:
                sys.exit(f"seed-bench: the leecher of {name} got a different file (sha1 {got})")
            shutil.rmtree(outdir)
            r = {
                "wall": wall,
                "mibps": args.size_mib / wall,
                "in_session": in_session if in_session is not None else float("nan"),
                "cpu": cpu,
                "rss_mib": memory.rss / 1024,
                "anon_mib": memory.anon / 1024,
                "hwm_mib": memory.hwm / 1024,
            }
            results[kind].append(r)
            log(f"{kind} run {run}: leecher {r['wall']:.2f}s {r['mibps']:.0f} MiB/s "
                f"(in session {r['in_session']:.2f}s); seeder cpu {r['cpu']:.2f}s "
                f"rss {r['rss_mib']:.0f} MiB anon {r['anon_mib']:.0f} MiB "
                f"(lifetime peak {r['hwm_mib']:.0f} MiB) (sha1 ok)")
    report(args, seeders, results)


def report(args, seeders, results):
    med = common.medians(results)
    print(f"\nA libtorrent 2.0 high-performance leecher downloads a {args.size_mib} MiB single-file "
          f"torrent (1 MiB pieces) from one seeder over loopback; medians of {args.runs} runs.\n")
    print("| seeder | leecher wall s | MiB/s | leecher in-session s | seeder CPU s (user+sys) "
          "| seeder peak RSS MiB | seeder peak anon RSS MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for s in seeders:
        m = med[s]
        print(f"| {s} | {m['wall']:.2f} | {m['mibps']:.0f} | {m['in_session']:.2f} | "
              f"{m['cpu']:.2f} | {m['rss_mib']:.0f} | {m['anon_mib']:.0f} |")
    if "swarmer" in seeders and "libtorrent" in seeders:
        sw, lt = med["swarmer"], med["libtorrent"]
        print(f"\nswarmer / libtorrent: leecher wall {sw['wall'] / lt['wall']:.2f}x, seeder CPU "
              f"{sw['cpu'] / max(lt['cpu'], 1e-9):.2f}x, seeder RSS "
              f"{sw['rss_mib'] / max(lt['rss_mib'], 1e-9):.2f}x, seeder anon RSS "
              f"{sw['anon_mib'] / max(lt['anon_mib'], 1e-9):.2f}x")
    print("\nThe leecher is a Python process: its wall time includes the interpreter and session "
          "start-up (the in-session column does not). Seeder CPU and memory exclude start-up "
          "verification; the libtorrent seeder's include its Python driver, which idles.")
    print(f"\nCommand: bench/seed.py {' '.join(sys.argv[1:])}")


if __name__ == "__main__":
    main()
