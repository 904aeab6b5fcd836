"""Helpers shared by the benchmarks in bench/: network namespace, payloads, torrents, opentracker,
process bookkeeping and /proc sampling.

Not a benchmark by itself. The scripts beside it import it by name (their directory is on
sys.path when they run).
"""

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
LT_TORRENT = os.path.join(REPO, "crates/swarmer-cli/tests/interop/lt_torrent.py")
TRACKER = ("127.0.0.1", 6969)
MIB = 1 << 20
GIB = 1 << 30
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

_libc = ctypes.CDLL("libc.so.6", use_errno=True)


def die_with_parent():
    """preexec_fn: SIGKILL this child if the benchmark dies (PR_SET_PDEATHSIG)."""
    _libc.prctl(1, signal.SIGKILL)


_START = time.monotonic()


def log(message):
    print(f"[bench {time.monotonic() - _START:7.1f}s] {message}", file=sys.stderr, flush=True)


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


def in_workdir(prefix, keep, body, base="/dev/shm", logs="logs"):
    """Runs `body(work, procs)` in a new directory BASE/PREFIX-PID; stops every process started
    through `procs` and removes the directory afterwards (keeps it with `keep`; keeps only its
    subdirectory `logs` after a failure, nothing if `logs` is None)."""
    work = os.path.join(base, f"{prefix}-{os.getpid()}")
    os.makedirs(work, mode=0o755)
    os.chmod(work, 0o755)
    procs = Procs()
    failed = True
    try:
        body(work, procs)
        failed = False
    finally:
        procs.stop_all()
        if failed and logs is None:
            shutil.rmtree(work, ignore_errors=True)
        elif failed:
            # Keep the logs, but not the payload and downloads that fill /dev/shm.
            for entry in os.listdir(work):
                path = os.path.join(work, entry)
                if entry == logs:
                    continue
                if os.path.isdir(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    os.remove(path)
            log(f"failed; logs kept in {work}/{logs}")
        elif keep:
            log(f"files kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


class Swarm:
    """What every benchmark starts from, under `work`: logs/, a payload of `size_mib` MiB in seed/
    with its SHA-1, a torrent of it (1 MiB pieces) made by mktorrent (`version` "v1") or by
    libtorrent (`version` "v2" or "hybrid", BEP 52), and opentracker (whitelisting it) running
    through `procs`."""

    def __init__(self, work, size_mib, procs, version="v1"):
        self.logdir = os.path.join(work, "logs")
        self.seed_dir = os.path.join(work, "seed")
        tracker_root = os.path.join(work, "opentracker")
        for d in (self.logdir, self.seed_dir, tracker_root):
            os.makedirs(d, mode=0o755)
        payload = os.path.join(self.seed_dir, "bench.bin")
        log(f"writing {size_mib} MiB payload")
        self.sha1 = write_payload(payload, size_mib * MIB)
        self.torrent = os.path.join(work, "bench.torrent")
        if version == "v1":
            make_torrent(payload, self.torrent)
        else:
            subprocess.run(["/usr/bin/python3", LT_TORRENT, "create", payload, self.torrent,
                            "--version", version, "--piece-length", str(MIB), "--tracker",
                            f"http://{TRACKER[0]}:{TRACKER[1]}/announce"],
                           check=True, stdout=subprocess.DEVNULL)
        self.info_hash = info_hash(self.torrent)
        start_tracker(tracker_root, [self.info_hash], procs, self.logdir)


def make_torrent(path, torrent, source=None, piece_log2=20):
    """A v1 torrent of `path` (file or directory) announcing to TRACKER over HTTP, made by
    mktorrent. A different `source` string (stored in the info dictionary) gives the same payload a
    different info hash, so separate swarms on one tracker do not see each other's peers."""
    command = ["mktorrent", "-l", str(piece_log2), "-a",
               f"http://{TRACKER[0]}:{TRACKER[1]}/announce", "-o", torrent]
    if source:
        command += ["-s", source]
    subprocess.run(command + [path], check=True, stdout=subprocess.DEVNULL)


def start_tracker(root, info_hashes, procs, logdir):
    """opentracker on TRACKER (HTTP and UDP), chrooted into `root`, whitelisting `info_hashes`
    (20-byte values). Returns its Popen."""
    whitelist = os.path.join(root, "whitelist.txt")
    with open(whitelist, "w") as f:
        f.writelines(ih.hex() + "\n" for ih in info_hashes)
    os.chmod(whitelist, 0o644)
    return procs.start("opentracker", ["opentracker", "-i", TRACKER[0], "-p", str(TRACKER[1]),
                                       "-P", str(TRACKER[1]), "-d", root,
                                       "-w", "/whitelist.txt"], logdir)


def chunk_bytes(seed, index, size):
    """`size` bytes of deterministic pseudo-random content for chunk `index` of stream `seed`."""
    return random.Random(seed * 1_000_003 + index).randbytes(size)


def write_payload(path, size, seed=0x5EED):
    """Deterministic pseudo-random content, in 16 MiB chunks each seeded from (seed, index).
    Returns the hex SHA-1 of the file."""
    sha1 = hashlib.sha1()
    with open(path, "wb") as out:
        done, index = 0, 0
        while done < size:
            chunk = chunk_bytes(seed, index, min(16 * MIB, size - done))
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
    """The info hash (20 bytes) a .torrent file is announced under: v1, or for a v2-only torrent the
    SHA-256 truncated to 20 bytes (BEP 52)."""
    import libtorrent as lt

    hashes = lt.torrent_info(torrent).info_hashes()
    return hashes.v1.to_bytes() if hashes.has_v1() else hashes.v2.to_bytes()[:20]


class Procs:
    """Every long-lived child, killed by PID at the end."""

    def __init__(self):
        self.children = []

    def start(self, name, command, logdir, **kwargs):
        out = open(os.path.join(logdir, f"{name}.stdout"), "wb")
        err = open(os.path.join(logdir, f"{name}.stderr"), "wb")
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                 preexec_fn=die_with_parent, **kwargs)
        out.close()
        err.close()
        self.children.append(child)
        return child

    def stop(self, child, grace=15.0):
        """SIGTERM, then SIGKILL after `grace` seconds; forgets the child."""
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                log(f"pid {child.pid} ignored SIGTERM for {grace:.0f} s; killing it")
                child.kill()
                child.wait()
        if child in self.children:
            self.children.remove(child)

    def stop_all(self):
        # opentracker drops privileges, which clears the parent-death signal: kill explicitly.
        for child in reversed(self.children):
            if child.poll() is None:
                child.kill()
            child.wait()
        self.children.clear()


def wait_for(what, deadline, probe, interval=0.05):
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            sys.exit(f"bench: timed out waiting for {what}")
        time.sleep(interval)


def tracker_lists(ih, peer, tracker=TRACKER):
    """Probe announce (started, then stopped); True if the tracker hands out `peer` (ip, port)."""
    quote = lambda b: urllib.parse.quote(b, safe="")  # noqa: E731 - every byte but unreserved as %XX
    peer_id = b"-XX0000-benchprobe00"
    peers = b""
    for event in ("started", "stopped"):
        path = (f"/announce?info_hash={quote(ih)}&peer_id={quote(peer_id)}&port=1&uploaded=0"
                f"&downloaded=0&left=1&compact=1&numwant=200&event={event}")
        try:
            conn = http.client.HTTPConnection(*tracker, timeout=2)
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
    memory = MemorySampler(pid)

    def sample():
        memory.sample()
        return memory.anon

    return sample


def cpu_seconds(pid):
    """user+sys CPU seconds of every thread of `pid` so far (/proc/PID/stat fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as f:
        # The command name (field 2) may contain spaces; the fields after it are fixed.
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class MemorySampler:
    """Remembers the peak VmRSS and RssAnon (KiB) of a process over the samples taken, and the
    kernel's lifetime peak VmHWM (KiB) as last read."""

    def __init__(self, pid):
        self.pid = pid
        self.rss = 0
        self.anon = 0
        self.hwm = 0

    def sample(self):
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    key, _, value = line.partition(":")
                    if key == "VmRSS":
                        self.rss = max(self.rss, int(value.split()[0]))
                    elif key == "RssAnon":
                        self.anon = max(self.anon, int(value.split()[0]))
                    elif key == "VmHWM":
                        self.hwm = int(value.split()[0])
        except OSError:
            pass


def warm_up(work, size_mib):
    """Writes and deletes `size_mib` MiB in the work directory before the timed runs.

    On a virtual machine the first writes into memory the guest has never touched are much slower
    (the hypervisor backs the pages on first use), which made whichever client ran first look ~2x
    slower. Touching that memory once, untimed, gives every client the same starting conditions.
    """
    path = os.path.join(work, "warm-up")
    chunk = b"\xa5" * MIB
    with open(path, "wb") as f:
        for _ in range(size_mib):
            f.write(chunk)
    os.remove(path)


def medians(results):
    """{name: {field: median over the runs}} for {name: [one dict of figures per run]}."""
    return {name: {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            for name, runs in results.items()}
