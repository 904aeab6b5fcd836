#!/usr/bin/python3
"""Download benchmark: swarmer against libtorrent, leeching from one libtorrent seeder on loopback.

Creates a single-file payload with deterministic content in /dev/shm, makes a torrent with
mktorrent (1 MiB pieces), starts opentracker on 127.0.0.1 and a libtorrent seeder
(high_performance_seed settings) on 127.0.0.2, then times each client N times, alternating:

  swarmer     `swarmer download T -o DIR --bind-address 127.0.0.10 --port 6890 -q`
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
import ctypes
import hashlib
import http.client
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.parse

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LT_PEER = os.path.join(REPO, "crates/swarmer-cli/tests/interop/lt_peer.py")
IN_NETNS = "SWARMER_BENCH_IN_NETNS"
TRACKER = ("127.0.0.1", 6969)
SEEDER = ("127.0.0.2", 6881)
CLIENT_ADDR = {
    "swarmer": ("127.0.0.10", 6890),
    "lt-hp": ("127.0.0.11", 6881),
    "lt-default": ("127.0.0.12", 6881),
}
MIB = 1 << 20

_libc = ctypes.CDLL("libc.so.6", use_errno=True)


def die_with_parent():
    """preexec_fn: SIGKILL this child if the benchmark dies (PR_SET_PDEATHSIG)."""
    _libc.prctl(1, signal.SIGKILL)


def log(message):
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def ensure_netns(script, marker):
    """Unless already inside it (`marker` set), runs `script` again inside `unshare --net` with
    `lo` up, with this process's arguments, and exits with its exit code."""
    if os.environ.get(marker) is not None:
        return
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    if shutil.which("unshare") is None or shutil.which("ip", path=path) is None:
        sys.exit(f"{os.path.basename(script)}: needs `unshare` and `ip` (util-linux, iproute2)")
    env = dict(os.environ, **{marker: "1"}, PATH=path)
    env.pop("RUST_LOG", None)
    command = ["unshare", "--net", "--", "sh", "-c", 'ip link set lo up && exec "$0" "$@"',
               "/usr/bin/python3", os.path.abspath(script)] + sys.argv[1:]
    sys.exit(subprocess.call(command, env=env))


def check_swarmer(parser, args):
    """Makes `args.swarmer` absolute and fails the command line if it is not an executable."""
    args.swarmer = os.path.abspath(args.swarmer)
    if not os.access(args.swarmer, os.X_OK):
        parser.error(f"{args.swarmer} is not executable (cargo build --release -p swarmer-cli)")


def in_workdir(prefix, keep, body):
    """Runs `body(work, procs)` in a new directory /dev/shm/PREFIX-PID; stops every process started
    through `procs` and removes the directory afterwards (keeps it with `keep`; keeps only its logs
    after a failure)."""
    work = f"/dev/shm/{prefix}-{os.getpid()}"
    os.makedirs(work, mode=0o755)
    os.chmod(work, 0o755)
    procs = Procs()
    failed = True
    try:
        body(work, procs)
        failed = False
    finally:
        procs.stop_all()
        if failed:
            # Keep the logs, but not the payload and downloads that fill /dev/shm.
            for entry in os.listdir(work):
                path = os.path.join(work, entry)
                if entry == "logs":
                    continue
                if os.path.isdir(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    os.remove(path)
            log(f"failed; logs kept in {work}/logs")
        elif keep:
            log(f"files kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


class Swarm:
    """What every benchmark starts from, under `work`: logs/, a payload of `size_mib` MiB in seed/
    with its SHA-1, a torrent of it (1 MiB pieces) made by mktorrent, and opentracker (whitelisting
    it) running through `procs`."""

    def __init__(self, work, size_mib, procs):
        self.logdir = os.path.join(work, "logs")
        self.seed_dir = os.path.join(work, "seed")
        tracker_root = os.path.join(work, "opentracker")
        for d in (self.logdir, self.seed_dir, tracker_root):
            os.makedirs(d, mode=0o755)
        payload = os.path.join(self.seed_dir, "bench.bin")
        log(f"writing {size_mib} MiB payload")
        self.sha1 = write_payload(payload, size_mib * MIB)
        self.torrent = os.path.join(work, "bench.torrent")
        subprocess.run(["mktorrent", "-l", "20", "-a",
                        f"http://{TRACKER[0]}:{TRACKER[1]}/announce", "-o", self.torrent, payload],
                       check=True, stdout=subprocess.DEVNULL)
        self.info_hash = info_hash(self.torrent)
        whitelist = os.path.join(tracker_root, "whitelist.txt")
        with open(whitelist, "w") as f:
            f.write(self.info_hash.hex() + "\n")
        os.chmod(whitelist, 0o644)
        procs.start("opentracker", ["opentracker", "-i", TRACKER[0], "-p", str(TRACKER[1]),
                                    "-P", str(TRACKER[1]), "-d", tracker_root,
                                    "-w", "/whitelist.txt"], self.logdir)


def write_payload(path, size, seed=0x5EED):
    """Deterministic pseudo-random content, in 16 MiB chunks each seeded from (seed, index)."""
    sha1 = hashlib.sha1()
    with open(path, "wb") as out:
        done, index = 0, 0
        while done < size:
            chunk = random.Random(seed * 1_000_003 + index).randbytes(min(16 * MIB, size - done))
            out.write(chunk)
            sha1.update(chunk)
            done += len(chunk)
            index += 1
    return sha1.hexdigest()


def sha1_of(path):
    sha1 = hashlib.sha1()
    with open(path, "rb") as f:
        while block := f.read(16 * MIB):
            sha1.update(block)
    return sha1.hexdigest()


def info_hash(torrent):
    import libtorrent as lt

    return lt.torrent_info(torrent).info_hashes().v1.to_bytes()


class Procs:
    """Every long-lived child, killed by PID at the end."""

    def __init__(self):
        self.children = []

    def start(self, name, command, logdir, **kwargs):
        out = open(os.path.join(logdir, f"{name}.stdout"), "wb")
        err = open(os.path.join(logdir, f"{name}.stderr"), "wb")
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                 preexec_fn=die_with_parent, **kwargs)
        self.children.append(child)
        return child

    def stop_all(self):
        # opentracker drops privileges, which clears the parent-death signal: kill explicitly.
        for child in reversed(self.children):
            if child.poll() is None:
                child.kill()
            child.wait()


def wait_for(what, deadline, probe, interval=0.05):
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            sys.exit(f"bench: timed out waiting for {what}")
        time.sleep(interval)


def tracker_lists(ih, peer):
    """Probe announce (started, then stopped); True if the tracker hands out `peer`."""
    quote = lambda b: urllib.parse.quote(b, safe="")  # noqa: E731 - every byte but unreserved as %XX
    peer_id = b"-XX0000-benchprobe00"
    peers = b""
    for event in ("started", "stopped"):
        path = (f"/announce?info_hash={quote(ih)}&peer_id={quote(peer_id)}&port=1&uploaded=0"
                f"&downloaded=0&left=1&compact=1&numwant=200&event={event}")
        try:
            conn = http.client.HTTPConnection(*TRACKER, timeout=2)
            conn.request("GET", path)
            body = conn.getresponse().read()
            conn.close()
        except OSError:
            return False
        if event == "started":
            marker = body.find(b"5:peers")
            if marker < 0:
                return False
            length_end = body.index(b":", marker + 7)
            length = int(body[marker + 7:length_end])
            peers = body[length_end + 1:length_end + 1 + length]
    want = bytes(int(x) for x in peer[0].split(".")) + peer[1].to_bytes(2, "big")
    return any(peers[i:i + 6] == want for i in range(0, len(peers), 6))


def peak_anon_rss_sampler(pid):
    """Returns a function that samples RssAnon (KiB) of `pid` and remembers the peak."""
    peak = [0]

    def sample():
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("RssAnon:"):
                        peak[0] = max(peak[0], int(line.split()[1]))
        except OSError:
            pass
        return peak[0]

    return sample


def run_client(client, args, torrent, outdir, logdir, run_index):
    ip, port = CLIENT_ADDR[client]
    if client == "swarmer":
        command = [args.swarmer, "download", torrent, "-o", outdir, "--bind-address", ip,
                   "--port", str(port), "-q"]
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


def warm_up(work, size_mib):
    """Writes and deletes twice the payload size in the work directory before the timed runs.

    On a virtual machine the first writes into memory the guest has never touched are much slower
    (the hypervisor backs the pages on first use), which made whichever client ran first look ~2x
    slower. Touching that memory once, untimed, gives every client the same starting conditions.
    """
    path = os.path.join(work, "warm-up")
    chunk = b"\xa5" * MIB
    with open(path, "wb") as f:
        for _ in range(2 * size_mib):
            f.write(chunk)
    os.remove(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--swarmer", default=os.path.join(REPO, "target/release/swarmer"))
    parser.add_argument("--clients", default="swarmer,lt-hp",
                        help="comma-separated, in run order: swarmer, lt-hp, lt-default")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per download")
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
    swarm = Swarm(work, args.size_mib, procs)
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
    warm_up(work, args.size_mib)
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


def medians(results):
    """{name: {field: median over the runs}} for {name: [one dict of figures per run]}."""
    return {name: {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            for name, runs in results.items()}


def report(args, clients, results):
    med = medians(results)
    print(f"\nDownload of a {args.size_mib} MiB single-file torrent (1 MiB pieces) from one "
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
