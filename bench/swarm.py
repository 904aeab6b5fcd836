#!/usr/bin/python3
"""Swarm benchmark: swarmer against libtorrent, Transmission, aria2 and rqbit on loopback, one command.

Inside a private network namespace holding only `lo` (it re-executes itself under
`unshare --net`), it writes deterministic payloads into RAM (/dev/shm, or a directory on disk with
--disk DIR), makes v1 torrents with mktorrent, starts opentracker on 127.0.0.1:6969 and real
seeders, and times every client in the same run, interleaved run by run (the first client rotates
each run) so that drift hits all of them alike. Scenarios:

  a  one file (--size, 4 GiB), 1 MiB pieces, one libtorrent seeder (high-performance settings)
  b  the same file, 8 libtorrent seeders on 127.0.0.21-28 sharing one copy of the data
  c  --files-count files (10,000) totalling --files-total (1 GiB) in nested directories, one
     libtorrent seeder
  d  seeding: each client in turn seeds the (a) payload and one libtorrent leecher with
     high-performance settings downloads it; the figures are the leecher's speed and the
     seeder's CPU and memory
  u  uTP (BEP 29): the (a) payload from one libtorrent seeder with TCP off (--utp-only), to
     swarmer (--transport utp) and to libtorrent leechers with TCP off; every libtorrent peer
     gets 4 MiB socket buffers, as swarmer's UDP socket has (on loopback the default ~208 KiB
     receive buffer drops datagrams). Only swarmer, lt-hp and lt-default take part.
  e  a heterogeneous swarm: one --size-e file (1 GiB), 1 MiB pieces, one libtorrent seeder
     (high-performance settings, seed mode) per --caps upload cap (MB/s = 10^6 bytes/s; default
     40,30,20,12,8,5,3,2,1.5,1, or a set drawn from 1..40 with --caps-seed N), two more that all
     but stall (--stall-rate, 4 KB/s) and bench/stall_peer.py, a plain BEP 3 seeder that answers
     --stall-answer (3) requests and then nothing, with the connection left open; each on its own
     address from 127.0.0.31 on. Fresh seeders for every run. Besides the usual figures: the wall
     time over the ideal (payload / sum of all caps), the seeders' CPU and how busy the machine
     was during the download, and the bytes each seeder sent. Not in the default set.
  f  a daemon holding --daemon-torrents (10,000) small torrents, mixed (seeding, stopped,
     downloading): swarmer vs transmission-daemon and qbittorrent-nox in the same run (start-up,
     RSS, idle CPU, listing latency through each API); runs bench/daemon_scale.py, first, and
     writes its table to daemon_scale.md beside results.md. Not in the default set.

Clients (each on its own 127.0.0.x; DHT, local peer discovery and PEX off everywhere):

  swarmer       target/release/swarmer download|seed ... -q --no-dht --no-lsd --no-pex
  lt-hp         crates/swarmer-cli/tests/interop/lt_peer.py with high_performance_seed() settings
  lt-default    the same with libtorrent's default settings (leecher only)
  transmission  transmission-daemon 3.00 driven over its RPC (a fresh config per run); only in
                the last --transmission-runs runs (default 1): it moves 10-30 MiB/s here
  aria2         aria2c, exits when done (--seed-time=0); seeds with -V --seed-ratio=0.0
  rqbit         only if `rqbit` is on PATH (cargo install rqbit)

With --encryption forced every peer speaks RC4 (MSE/PE) only, both ways: libtorrent peers get
out_enc_policy and in_enc_policy forced with allowed_enc_level RC4 (lt_peer.py --encryption forced),
swarmer --encryption require, Transmission encryption 2, aria2 --bt-require-crypto with ARC4; rqbit
has no encryption and is left out.

Figures per run: wall seconds (spawn to exit, or to completion for a daemon), MiB/s, CPU seconds
per GiB (user+sys of the client process: wait4 rusage for a child that exits, /proc/PID/stat for a
daemon), peak RSS (VmHWM) and peak anonymous RSS (RssAnon), both sampled from /proc every 20 ms
(libtorrent 2.0 mmaps the payload, so its RSS counts file pages; ru_maxrss would count the forked
Python too). Every download is checked
file by file against the payload's SHA-1s; a mismatch stops the benchmark.

Writes bench/results/<UTC timestamp>/: results.md (one table of medians per scenario), results.json
(every run, versions, the command) and chart.png; logs/ holds every process's output. Needs root,
opentracker, mktorrent, python3-libtorrent, python3-matplotlib, transmission-daemon, aria2:

  cargo build --release -p swarmer-cli
  sudo bench/swarm.py                                          # everything, 3 runs
  sudo bench/swarm.py --size 512M --files-total 256M --runs 1  # a quick look
  sudo bench/swarm.py --scenarios a --clients swarmer,lt-hp --size 2G --encryption forced
  sudo bench/swarm.py --scenarios e --runs 3 --clients swarmer,lt-hp,aria2,rqbit,transmission \
      --transmission-runs 3                                    # (e), default caps
  sudo bench/swarm.py --scenarios e --caps-seed 7 --runs 1     # (e), another cap set
"""

import argparse
import base64
import datetime
import hashlib
import http.client
import json
import math
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (  # noqa: E402 - the payload, tracker and process helpers shared by bench/
    GIB, LT_PEER, MIB, REPO, MemorySampler, check_swarmer, chunk_bytes, cpu_seconds,
    die_with_parent, ensure_netns, in_workdir, info_hash, log, make_torrent, sha1_of, start_tracker,
    tracker_lists, wait_for, warm_up, write_payload)

IN_NETNS = "SWARMER_SWARM_BENCH_IN_NETNS"
SCENARIOS = {
    "a": "one {size} file, 1 MiB pieces, one libtorrent seeder (high-performance settings)",
    "b": "one {size} file, 1 MiB pieces, 8 libtorrent seeders (high-performance settings)",
    "c": "{count} files totalling {files_total} in nested directories, 1 MiB pieces, one "
         "libtorrent seeder (high-performance settings)",
    "d": "seeding one {size} file (1 MiB pieces) to one libtorrent leecher (high-performance "
         "settings): MiB/s and wall are the leecher's, CPU and memory the seeder's",
    "u": "uTP only: one {size} file, 1 MiB pieces, one libtorrent seeder with TCP off "
         "(high-performance settings, 4 MiB socket buffers)",
    "e": "heterogeneous swarm: one {size_e} file, 1 MiB pieces, {n_caps} libtorrent seeders "
         "capped at {caps} MB/s, {n_stall} at {stall_rate} KB/s and one that stops answering "
         "mid-piece (bench/stall_peer.py); ideal {ideal:.2f} s",
}
UTP_CLIENTS = ["swarmer", "lt-hp", "lt-default"]
# lt_peer.py's uTP-only switch and the socket buffers every libtorrent peer of scenario u gets.
LT_UTP = ["--utp-only", "--socket-buffer", str(4 << 20)]
CLIENTS = ["swarmer", "lt-hp", "lt-default", "transmission", "aria2", "rqbit"]
SEEDING_CLIENTS = ["swarmer", "lt-hp", "transmission", "aria2", "rqbit"]
ADDR = {
    "swarmer": ("127.0.0.10", 6890),
    "lt-hp": ("127.0.0.11", 6881),
    "lt-default": ("127.0.0.12", 6881),
    "transmission": ("127.0.0.13", 51413),
    "aria2": ("127.0.0.14", 6882),
    # rqbit can choose its listening address but not the source of its tracker announces, which
    # therefore come from 127.0.0.1: it listens there, so that the peer the tracker hands out works.
    "rqbit": ("127.0.0.1", 4240),
}
TRANSMISSION_RPC_PORT = 9091
SEEDER_A = ("127.0.0.2", 6881)
SEEDER_C = ("127.0.0.4", 6881)
SEEDERS_B = [(f"127.0.0.{20 + i}", 6881) for i in range(1, 9)]
# Scenario e: the capped seeders from 127.0.0.31 on, then the near-stalled ones, then stall_peer.py.
SEEDERS_E_FIRST = 31
STALL_PEER = os.path.join(REPO, "bench", "stall_peer.py")
# The cap set of (e), MB/s (10^6 bytes/s): 122.5 MB/s in all, spanning 1 to 40 (see --caps).
DEFAULT_CAPS = "40,30,20,12,8,5,3,2,1.5,1"
# The two near-stalled seeders of (e) and what they are allowed to send each, KB/s (10^3 B/s).
STALLED_SEEDERS = 2
# --swarmer-log: the swarmer leecher's logging flag.
SWARMER_LOG = {"quiet": "-q", "info": "-v", "debug": "-vv", "trace": "-vvv"}
LEECHER_D = ("127.0.0.3", 6881)
SINGLE_NAME = "bench.bin"
MULTI_NAME = "bench-files"
SAMPLE_S = 0.02


class BenchError(Exception):
    """A failed run: wrong data, a client that exited early or timed out. Stops the benchmark."""


class Crashed(BenchError):
    """A process killed by a signal. python3-libtorrent 2.0.8 segfaulted now and then inside
    `session.wait_for_alert` under a heavy alert load (lt_peer.py now polls `pop_alerts()`
    instead); should a libtorrent peer still crash (`libtorrent` set), the run is retried instead
    of stopping the benchmark."""

    def __init__(self, message, libtorrent):
        super().__init__(message)
        self.libtorrent = libtorrent


def parse_size(text):
    """'4G', '512M', '64K', '1048576' -> bytes (binary units)."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    if t and t[-1] in units:
        return int(float(t[:-1]) * units[t[-1]])
    return int(t)


def human(size):
    for unit, scale in (("GiB", GIB), ("MiB", MIB)):
        if size >= scale and size % (scale // 16) == 0:
            return f"{size / scale:g} {unit}"
    return f"{size} bytes"


def parse_caps(text):
    """'40,30,1.5' -> [40.0, 30.0, 1.5] (MB/s), highest first; ValueError unless all are > 0."""
    caps = sorted((float(c) for c in text.split(",") if c.strip()), reverse=True)
    if not caps or min(caps) <= 0:
        raise ValueError(f"caps must be positive MB/s: {text!r}")
    return caps


def draw_caps(seed, count):
    """`count` caps (MB/s, in steps of 0.5) drawn log-uniformly from 1 to 40 by a generator seeded
    with `seed`; the set always holds 1 and 40, so every draw spans the whole range."""
    rng = random.Random(seed)
    inner = [max(1.0, round(math.exp(rng.uniform(0.0, math.log(40.0))) * 2) / 2)
             for _ in range(count - 2)]
    return sorted([40.0, 1.0] + inner, reverse=True)


def caps_label(caps):
    return ", ".join(f"{c:g}" for c in caps)


def hetero_ideal(size, caps, stall_rate_kb):
    """Seconds the (e) download takes if every seeder sends at its cap the whole time: the payload
    over the sum of the caps, the near-stalled seeders' included (stall_peer.py's few blocks are
    not counted)."""
    return size / (sum(caps) * 1e6 + STALLED_SEEDERS * stall_rate_kb * 1e3)


def steady_mibps(stdout, size):
    """The download rate (MiB/s) of a libtorrent leecher run with --progress between its 10th and
    90th percentile of verified pieces: start-up and the last pieces left out, so it shows whether
    the seeders together deliver their caps on this machine. None without enough piece events."""
    times = []
    try:
        with open(stdout) as f:
            for line in f:
                if '"event": "piece"' in line:
                    times.append(json.loads(line)["time"])
    except (OSError, ValueError):
        return None
    if len(times) < 20:
        return None
    times.sort()
    lo, hi = len(times) // 10, len(times) * 9 // 10
    return (hi - lo) / len(times) * size / MIB / max(times[hi] - times[lo], 1e-6)


def cpu_jiffies():
    """(busy, total) jiffies of every core from /proc/stat (the host's, namespaces or not)."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


# ---------------------------------------------------------------------------------------------
# Payloads

class Payload:
    """Files under `parent`/`name` with their SHA-1s, and the bytes they hold."""

    def __init__(self, parent, name, sha1s, size):
        self.parent, self.name, self.sha1s, self.size = parent, name, sha1s, size

    def verify(self, outdir, who):
        """Raises BenchError unless every file of the payload is in `outdir` with the same SHA-1."""
        for rel, want in self.sha1s.items():
            path = os.path.join(outdir, self.name, rel) if rel else os.path.join(outdir, self.name)
            if not os.path.isfile(path):
                raise BenchError(f"{who}: {path} is missing")
            got = sha1_of(path)
            if got != want:
                raise BenchError(f"{who}: {path} has SHA-1 {got}, the payload's is {want}")

    def remove(self):
        path = os.path.join(self.parent, self.name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)


def single_file_payload(parent, size):
    os.makedirs(parent, exist_ok=True)
    log(f"writing a {human(size)} payload")
    sha1 = write_payload(os.path.join(parent, SINGLE_NAME), size)
    return Payload(parent, SINGLE_NAME, {"": sha1}, size)


def multi_file_payload(parent, count, total):
    """`count` files of varied sizes (log-normal, at least 1 byte) totalling `total` bytes, 100 per
    directory two levels down (d00/s0/f00000.bin ...), deterministic content."""
    log(f"writing {count} files totalling {human(total)}")
    rng = random.Random(0xF11E5)
    weights = [rng.lognormvariate(0.0, 1.5) for _ in range(count)]
    scale = (total - count) / sum(weights)
    sizes = [1 + int(w * scale) for w in weights]
    sizes[max(range(count), key=lambda i: sizes[i])] += total - sum(sizes)
    sha1s = {}
    root = os.path.join(parent, MULTI_NAME)
    for i, size in enumerate(sizes):
        rel = os.path.join(f"d{i // 1000:02d}", f"s{(i // 100) % 10}", f"f{i:05d}.bin")
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        data = chunk_bytes(0xF11E5, i, size)
        with open(path, "wb") as f:
            f.write(data)
        sha1s[rel] = hashlib.sha1(data).hexdigest()
    return Payload(parent, MULTI_NAME, sha1s, total)


# ---------------------------------------------------------------------------------------------
# Measuring processes

def run_to_exit(name, command, logdir, timeout, cwd=None, watch=lambda: None, libtorrent=False):
    """Runs `command` to its exit; returns wall, CPU (user+sys from wait4), peak VmHWM and
    peak RssAnon. Calls `watch()` every 20 ms (it raises to abort). Raises BenchError on a non-zero
    exit or after `timeout` seconds, Crashed (with `libtorrent`) when a signal killed it."""
    with open(os.path.join(logdir, f"{name}.stdout"), "wb") as out, \
            open(os.path.join(logdir, f"{name}.stderr"), "wb") as err:
        start = time.monotonic()
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                 cwd=cwd, preexec_fn=die_with_parent)
        memory = MemorySampler(child.pid)
        pid = 0
        try:
            while True:
                pid, status, usage = os.wait4(child.pid, os.WNOHANG)
                if pid:
                    break
                memory.sample()
                watch()
                if time.monotonic() - start > timeout:
                    raise BenchError(f"{name} timed out after {timeout:.0f} s; logs in {logdir}")
                time.sleep(SAMPLE_S)
        finally:
            if not pid:
                child.kill()
                os.wait4(child.pid, 0)
        wall = time.monotonic() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode < 0:
        raise Crashed(f"{name} was killed by signal {-child.returncode}; logs in {logdir}",
                      libtorrent)
    if child.returncode != 0:
        raise BenchError(f"{name} exited with {child.returncode}; logs in {logdir}")
    # ru_maxrss also counts the RSS of the forked Python before exec, so small clients would all
    # show the benchmark's own size: the peak is VmHWM as last sampled (at most 20 ms early).
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
            "peak_rss_mib": max(memory.hwm, memory.rss) / 1024,
            "peak_anon_mib": memory.anon / 1024, "ru_maxrss_mib": usage.ru_maxrss / 1024}


class TransmissionRpc:
    """Transmission's JSON RPC on ip:port; handles the 409 that hands out the session id."""

    def __init__(self, ip, port):
        self.ip, self.port, self.session_id = ip, port, ""

    def call(self, method, **arguments):
        body = json.dumps({"method": method, "arguments": arguments})
        for _ in range(2):
            conn = http.client.HTTPConnection(self.ip, self.port, timeout=5)
            try:
                conn.request("POST", "/transmission/rpc", body,
                             {"X-Transmission-Session-Id": self.session_id,
                              "Content-Type": "application/json"})
                reply = conn.getresponse()
                data = reply.read()
            finally:
                conn.close()
            if reply.status == 409:
                self.session_id = reply.getheader("X-Transmission-Session-Id", "")
                continue
            if reply.status != 200:
                raise BenchError(f"transmission RPC {method}: HTTP {reply.status} {data[:200]!r}")
            answer = json.loads(data)
            if answer.get("result") != "success":
                raise BenchError(f"transmission RPC {method}: {answer.get('result')}")
            return answer["arguments"]
        raise BenchError(f"transmission RPC {method}: no session id")

    def torrent(self):
        fields = ["status", "percentDone", "leftUntilDone", "error", "errorString"]
        torrents = self.call("torrent-get", fields=fields)["torrents"]
        if not torrents:
            raise BenchError("transmission lost its torrent")
        t = torrents[0]
        if t["error"]:
            raise BenchError(f"transmission reports error {t['error']}: {t['errorString']}")
        return t


def encryption_args(client, encryption):
    """The command-line arguments that make `client` speak RC4 only under --encryption forced."""
    if encryption != "forced":
        return []
    if client == "swarmer":
        return ["--encryption", "require"]
    if client.startswith("lt-"):
        return ["--encryption", "forced"]
    if client == "aria2":
        return ["--bt-require-crypto=true", "--bt-min-crypto-level=arc4"]
    return []


def start_transmission(procs, name, workdir, logdir, deadline, encryption="off"):
    """A transmission-daemon with a fresh config dir on its 127.0.0.x; returns (Popen, rpc) once
    its RPC answers. settings.json is written before the start: the daemon rewrites it on exit."""
    ip, port = ADDR["transmission"]
    conf = os.path.join(workdir, f"{name}-config")
    os.makedirs(conf)
    settings = {
        "dht-enabled": False, "lpd-enabled": False, "pex-enabled": False, "utp-enabled": False,
        "port-forwarding-enabled": False, "blocklist-enabled": False,
        "bind-address-ipv4": ip, "bind-address-ipv6": "::1",
        "peer-port": port, "peer-port-random-on-start": False,
        "rpc-enabled": True, "rpc-bind-address": ip, "rpc-port": TRANSMISSION_RPC_PORT,
        "rpc-authentication-required": False, "rpc-whitelist-enabled": False,
        "rpc-host-whitelist-enabled": False,
        "download-queue-enabled": False, "seed-queue-enabled": False,
        "ratio-limit-enabled": False, "idle-seeding-limit-enabled": False,
        "speed-limit-up-enabled": False, "speed-limit-down-enabled": False,
        "alt-speed-enabled": False, "encryption": 2 if encryption == "forced" else 0,
        "download-dir": workdir, "incomplete-dir-enabled": False, "rename-partial-files": False,
        "watch-dir-enabled": False, "start-added-torrents": True, "message-level": 1,
    }
    with open(os.path.join(conf, "settings.json"), "w") as f:
        json.dump(settings, f)
    daemon = procs.start(name, ["transmission-daemon", "-f", "-g", conf], logdir)
    rpc = TransmissionRpc(ip, TRANSMISSION_RPC_PORT)

    def up():
        if daemon.poll() is not None:
            raise BenchError(f"{name} exited with {daemon.returncode}; logs in {logdir}")
        try:
            rpc.call("session-get")
            return True
        except (OSError, http.client.HTTPException):
            return False

    wait_for(f"{name}'s RPC", deadline, up)
    return daemon, rpc


def transmission_add(rpc, torrent, parent):
    with open(torrent, "rb") as f:
        metainfo = base64.b64encode(f.read()).decode()
    rpc.call("torrent-add", metainfo=metainfo, **{"download-dir": parent, "paused": False})


def daemon_figures(pid, memory):
    """CPU seconds so far and peak memory of a daemon, from /proc, before it is stopped."""
    memory.sample()
    return {"cpu_s": cpu_seconds(pid), "peak_rss_mib": memory.hwm / 1024,
            "peak_anon_mib": memory.anon / 1024}


# ---------------------------------------------------------------------------------------------
# Leechers

class Bench:
    """One benchmark: its options, the work directory, the processes, the runs recorded."""

    def __init__(self, args, clients, work, procs, out):
        self.args, self.clients, self.work, self.procs, self.out = args, clients, work, procs, out
        self.logdir = os.path.join(out, "logs")
        os.makedirs(self.logdir, exist_ok=True)
        self.runs = []
        self.crashes = []
        # The libtorrent seeders of the running scenario: label -> [command, (ip, port), Popen].
        self.seeders = {}
        # Scenario u runs: every peer over uTP only.
        self.utp = False
        # Scenario e runs: libtorrent leechers report every piece (see steady_mibps).
        self.hetero = False

    def deadline(self, size=0):
        """Seconds allowed for start-up work on `size` bytes (checking, listing) from now."""
        return time.monotonic() + 120 + size / (50 * MIB)

    def leech(self, client, torrent, payload, name):
        """Downloads `torrent` with `client` into a fresh directory, verifies it, deletes it."""
        outdir = os.path.join(self.work, f"dl-{name}")
        os.makedirs(outdir)
        try:
            if client == "transmission":
                figures = self.leech_transmission(torrent, outdir, name)
            else:
                figures = run_to_exit(name, self.leech_command(client, torrent, outdir),
                                      self.logdir, self.args.timeout, cwd=outdir,
                                      watch=self.check_seeders,
                                      libtorrent=client.startswith("lt-"))
            payload.verify(outdir, name)
        finally:
            shutil.rmtree(outdir, ignore_errors=True)
        return figures

    def leech_command(self, client, torrent, outdir):
        return self.plain_leech_command(client, torrent, outdir) + \
            encryption_args(client, self.args.encryption)

    def plain_leech_command(self, client, torrent, outdir):
        ip, port = ADDR[client]
        if client == "swarmer":
            return [self.args.swarmer, "download", torrent, "-o", outdir, "--bind-address", ip,
                    "--port", str(port), SWARMER_LOG[self.args.swarmer_log], "--no-dht",
                    "--no-lsd", "--no-pex", "--no-port-mapping"] + \
                (["--transport", "utp"] if self.utp else [])
        if client in ("lt-hp", "lt-default"):
            command = ["/usr/bin/python3", LT_PEER, "leech", "--torrent", torrent,
                       "--save-path", outdir, "--listen", f"{ip}:{port}",
                       "--timeout", str(self.args.timeout)] + (LT_UTP if self.utp else []) \
                + (["--progress"] if self.hetero else [])
            return command + (["--high-performance"] if client == "lt-hp" else [])
        if client == "aria2":
            return aria2_command(outdir) + ["--seed-time=0", torrent]
        if client == "rqbit":
            return rqbit_command(self.args.rqbit, outdir) + ["--exit-on-finish", torrent]
        raise ValueError(client)

    def leech_transmission(self, torrent, outdir, name):
        """Wall time runs from spawning the daemon to the RPC reporting every piece verified."""
        start = time.monotonic()
        daemon, rpc = start_transmission(self.procs, name, outdir, self.logdir,
                                         start + self.args.timeout, self.args.encryption)
        try:
            memory = MemorySampler(daemon.pid)
            transmission_add(rpc, torrent, outdir)
            last_poll = 0.0
            while True:
                now = time.monotonic()
                if now - start > self.args.timeout:
                    raise BenchError(f"{name} timed out after {self.args.timeout:.0f} s; "
                                     f"logs in {self.logdir}")
                if daemon.poll() is not None:
                    raise BenchError(f"{name} exited with {daemon.returncode}")
                self.check_seeders()
                memory.sample()
                if now - last_poll >= 0.1:
                    last_poll = now
                    t = rpc.torrent()
                    if t["percentDone"] == 1 and t["leftUntilDone"] == 0:
                        break
                time.sleep(SAMPLE_S)
            wall = time.monotonic() - start
            figures = dict(daemon_figures(daemon.pid, memory), wall_s=wall)
        finally:
            # Stopping flushes its cache: the files are complete once it has exited.
            self.procs.stop(daemon)
        return figures

    # -----------------------------------------------------------------------------------------
    # Seeders

    def start_lt_seeders(self, torrent, payload, addrs, name, seed_mode=False, extra=()):
        """libtorrent seeders (high-performance settings) re-announcing every 2 s, so that they
        find and dial a Transmission leecher, which never dials loopback peers itself. Waits
        until each has checked its data and the tracker lists it."""
        self.seeders = {}
        for i, (ip, port) in enumerate(addrs):
            command = ["/usr/bin/python3", LT_PEER, "seed", "--torrent", torrent,
                       "--save-path", payload.parent, "--listen", f"{ip}:{port}",
                       "--high-performance", "--reannounce", "2", "--timeout", "1e9"]
            if seed_mode:
                command.append("--seed-mode")
            command += encryption_args("lt-hp", self.args.encryption)
            command += extra
            label = f"{name}-{i}" if len(addrs) > 1 else name
            self.seeders[label] = [command, (ip, port), None]
        self.seeder_info_hash = info_hash(torrent)
        self.seeder_size = payload.size
        self.restart_seeders()

    def restart_seeders(self):
        """(Re)starts every seeder of the scenario that is not running and waits until each
        has checked its data and the tracker lists it."""
        started = []
        for label, entry in self.seeders.items():
            command, _addr, child = entry
            if child is not None and child.poll() is None:
                continue
            log_label = label if child is None else f"{label}-restart{len(self.crashes)}"
            entry[2] = self.procs.start(log_label, command, self.logdir)
            started.append((log_label, entry))
        deadline = self.deadline(self.seeder_size * len(started))
        for log_label, (_command, addr, child) in started:
            self.wait_lt_seeding(log_label, child, deadline)
            wait_for(f"the tracker to list {log_label}", deadline,
                     lambda: tracker_lists(self.seeder_info_hash, addr), 0.1)

    def stop_seeders(self):
        for _command, _addr, child in self.seeders.values():
            if child is not None:
                self.procs.stop(child)
        self.seeders = {}

    def check_seeders(self):
        """Raises Crashed (a libtorrent one) if a seeder of the scenario has exited."""
        for label, (_command, _addr, child) in self.seeders.items():
            if child is not None and child.poll() is not None:
                raise Crashed(f"seeder {label} exited with {child.returncode}", True)

    def attempt(self, what, body):
        """body(), retried up to twice after a libtorrent process crashed (see Crashed), with
        the scenario's seeders restarted; every crash is kept in results.json."""
        for attempt in range(3):
            try:
                return body()
            except Crashed as e:
                if not e.libtorrent or attempt == 2:
                    raise
                log(f"warning: {what}: {e}; retrying the run")
                self.crashes.append({"run": what, "error": str(e)})
                self.restart_seeders()

    def start_hetero_seeders(self, torrent, payload, name):
        """Scenario e: fresh seeders for one run (so each one's upload counter is this run's):
        one libtorrent seeder per cap, STALLED_SEEDERS at --stall-rate, and stall_peer.py, each
        on its own 127.0.0.x from SEEDERS_E_FIRST on; all trust the one shared copy (seed mode).
        Returns [(label, cap in bytes/s or None)]."""
        self.stop_seeders()
        caps = [c * 1e6 for c in self.args.caps_list] + \
            [self.args.stall_rate * 1e3] * STALLED_SEEDERS
        plan = []
        for i, cap in enumerate(caps):
            stalled = i >= len(self.args.caps_list)
            label = f"{name}-seed{i:02d}-" + (f"{cap / 1e3:g}KBps" if stalled
                                                else f"{cap / 1e6:g}MBps")
            command = ["/usr/bin/python3", LT_PEER, "seed", "--torrent", torrent,
                       "--save-path", payload.parent,
                       "--listen", f"127.0.0.{SEEDERS_E_FIRST + i}:6881", "--high-performance",
                       "--reannounce", "2", "--timeout", "1e9", "--seed-mode",
                       "--upload-rate-limit", str(int(cap))]
            command += encryption_args("lt-hp", self.args.encryption)
            self.seeders[label] = [command, (f"127.0.0.{SEEDERS_E_FIRST + i}", 6881), None]
            plan.append((label, cap))
        addr = (f"127.0.0.{SEEDERS_E_FIRST + len(caps)}", 6881)
        label = f"{name}-stopper"
        self.seeders[label] = [["/usr/bin/python3", STALL_PEER, "--torrent", torrent,
                                "--payload", os.path.join(payload.parent, payload.name),
                                "--listen", f"{addr[0]}:{addr[1]}",
                                "--answer", str(self.args.stall_answer)], addr, None]
        plan.append((label, None))
        self.seeder_info_hash = info_hash(torrent)
        self.seeder_size = payload.size
        self.restart_seeders()
        return plan

    def seeders_cpu(self):
        """CPU seconds so far of every running seeder of the scenario, by label."""
        return {label: cpu_seconds(child.pid)
                for label, (_command, _addr, child) in self.seeders.items()
                if child is not None and child.poll() is None}

    def stop_hetero_seeders(self, plan):
        """Stops the seeders of one (e) run; returns what each sent, from its "stopped" event:
        [{"seeder", "cap_Bps", "uploaded", ...}] (stall_peer.py adds "requests" and "answered",
        summed over its connections)."""
        self.stop_seeders()
        served = []
        for label, cap in plan:
            row = {"seeder": label, "cap_Bps": cap, "uploaded": None}
            try:
                with open(os.path.join(self.logdir, f"{label}.stdout")) as f:
                    stopped = [json.loads(line) for line in f
                               if '"event": "stopped"' in line]
            except (OSError, ValueError):
                stopped = []
            if stopped:
                row["uploaded"] = stopped[-1]["uploaded"]
                peers = stopped[-1].get("peers") or []
                if cap is None:
                    row["requests"] = sum(p["requests"] for p in peers)
                    row["answered"] = sum(p["answered"] for p in peers)
            served.append(row)
        return served

    def hetero_scenario(self, torrent, payload):
        """Scenario e: every run of every client gets fresh seeders; besides the client's own
        figures, records the seeders' CPU, how busy the whole machine was (every core, other
        work included) and what each seeder sent."""
        ideal = hetero_ideal(payload.size, self.args.caps_list, self.args.stall_rate)
        self.hetero = True
        for run, client in self.rounds(self.clients):
            name = f"e-{client}-{run}"

            def one():
                plan = self.start_hetero_seeders(torrent, payload, name)
                try:
                    cpu_before, busy_before = self.seeders_cpu(), cpu_jiffies()
                    figures = self.leech(client, torrent, payload, name)
                    cpu_after, busy_after = self.seeders_cpu(), cpu_jiffies()
                finally:
                    served = self.stop_hetero_seeders(plan)
                busy = (busy_after[0] - busy_before[0]) / max(busy_after[1] - busy_before[1], 1)
                if client.startswith("lt-"):
                    figures["steady_mibps"] = steady_mibps(
                        os.path.join(self.logdir, f"{name}.stdout"), payload.size)
                return dict(figures, ideal_s=ideal, ratio_to_ideal=figures["wall_s"] / ideal,
                            seeders_cpu_s=sum(cpu_after.get(k, 0.0) - v
                                              for k, v in cpu_before.items()),
                            machine_busy=busy, loadavg=loadavg(), served=served)

            figures = self.attempt(name, one)
            self.record("e", client, run, figures, payload.size)
            log(f"e {client} run {run}: {figures['ratio_to_ideal']:.2f}x ideal "
                f"({ideal:.2f} s); seeders' CPU {figures['seeders_cpu_s']:.1f} s; machine "
                f"{figures['machine_busy'] * 100:.0f}% busy; load {figures['loadavg']}"
                + (f"; steady {figures['steady_mibps']:.0f} MiB/s (the caps: "
                   f"{payload.size / ideal / MIB:.0f})" if figures.get("steady_mibps") else ""))
        self.hetero = False

    def wait_lt_seeding(self, label, child, deadline):
        def seeding():
            if child.poll() is not None:
                raise BenchError(f"{label} exited with {child.returncode}; logs in {self.logdir}")
            with open(os.path.join(self.logdir, f"{label}.stdout")) as f:
                return '"event": "seeding"' in f.read()

        wait_for(f"{label} to check its data", deadline, seeding)

    def start_seeder(self, client, torrent, payload, name):
        """Starts `client` seeding `payload` and waits until it has verified the data and the
        tracker lists it. Returns (Popen, MemorySampler); stop it with self.procs.stop."""
        ip, port = ADDR[client]
        deadline = self.deadline(payload.size)
        parent = payload.parent
        ih = info_hash(torrent)
        rpc = None
        if client == "swarmer":
            # Not -q: the "data verified, seeding" line tells when it is ready.
            command = [self.args.swarmer, "seed", torrent, "-o", parent, "--bind-address", ip,
                       "--port", str(port), "--no-dht", "--no-lsd", "--no-pex", "--no-port-mapping"]
        elif client == "lt-hp":
            command = ["/usr/bin/python3", LT_PEER, "seed", "--torrent", torrent,
                       "--save-path", parent, "--listen", f"{ip}:{port}", "--high-performance",
                       "--timeout", "1e9"]
        elif client == "aria2":
            command = aria2_command(parent) + ["-V", "--seed-ratio=0.0", torrent]
        elif client == "rqbit":
            command = rqbit_command(self.args.rqbit, parent) + [torrent]
        if client != "transmission":
            command += encryption_args(client, self.args.encryption)
        if client == "transmission":
            child, rpc = start_transmission(self.procs, name, self.work, self.logdir, deadline,
                                            self.args.encryption)
            transmission_add(rpc, torrent, parent)
        else:
            child = self.procs.start(name, command, self.logdir, cwd=self.work)
        memory = MemorySampler(child.pid)

        def check(what_file, text):
            memory.sample()
            if child.poll() is not None:
                raise BenchError(f"{name} exited with {child.returncode}; logs in {self.logdir}")
            if what_file is None:
                return True
            with open(os.path.join(self.logdir, f"{name}.{what_file}"), errors="replace") as f:
                return text in f.read()

        if client == "swarmer":
            ready = lambda: check("stderr", ": data verified, seeding")  # noqa: E731
        elif client == "lt-hp":
            ready = lambda: check("stdout", '"event": "seeding"')  # noqa: E731
        elif client == "transmission":
            def ready():
                check(None, None)
                t = rpc.torrent()
                return t["status"] == 6 and t["percentDone"] == 1
        else:
            ready = lambda: check(None, None)  # noqa: E731
        wait_for(f"{name} to verify its data", deadline, ready, 0.1)
        wait_for(f"the tracker to list {name}", deadline,
                 lambda: check(None, None) and tracker_lists(ih, (ip, port)), 0.1)
        return child, memory

    def seed_run(self, client, torrent, payload, name):
        """Scenario d: one run of `client` seeding to a libtorrent high-performance leecher."""
        seeder, memory = self.start_seeder(client, torrent, payload, f"{name}-seeder")
        try:
            cpu_before = cpu_seconds(seeder.pid)
            outdir = os.path.join(self.work, f"dl-{name}")
            os.makedirs(outdir)
            ip, port = LEECHER_D
            command = ["/usr/bin/python3", LT_PEER, "leech", "--torrent", torrent,
                       "--save-path", outdir, "--listen", f"{ip}:{port}", "--high-performance",
                       "--timeout", str(self.args.timeout)]
            command += encryption_args("lt-hp", self.args.encryption)
            try:
                leecher = run_to_exit(f"{name}-leecher", command, self.logdir,
                                      self.args.timeout, libtorrent=True)
                if seeder.poll() is not None:
                    raise Crashed(f"{name}: the seeder exited with {seeder.returncode} during "
                                  "the download", client == "lt-hp")
                memory.sample()
                cpu = cpu_seconds(seeder.pid) - cpu_before
                payload.verify(outdir, f"{name}-leecher")
            finally:
                shutil.rmtree(outdir, ignore_errors=True)
        finally:
            self.procs.stop(seeder)
        return {"wall_s": leecher["wall_s"], "cpu_s": cpu, "peak_rss_mib": memory.hwm / 1024,
                "peak_anon_mib": memory.anon / 1024, "leecher_cpu_s": leecher["cpu_s"]}

    # -----------------------------------------------------------------------------------------

    def record(self, scenario, client, run, figures, size):
        figures = dict(figures, scenario=scenario, client=client, run=run, bytes=size)
        figures["mibps"] = size / MIB / figures["wall_s"]
        figures["cpu_s_per_gib"] = figures["cpu_s"] / (size / GIB)
        self.runs.append(figures)
        log(f"{scenario} {client} run {run}: {figures['wall_s']:.2f} s, "
            f"{figures['mibps']:.0f} MiB/s, CPU {figures['cpu_s_per_gib']:.2f} s/GiB, "
            f"RSS {figures['peak_rss_mib']:.0f} MiB, anon {figures['peak_anon_mib']:.0f} MiB "
            f"(verified)")

    def rounds(self, clients):
        """(run, client) in run order: every client once per run, the first one rotating.
        Transmission takes part only in the last --transmission-runs runs."""
        for run in range(self.args.runs):
            shift = run % len(clients)
            for client in clients[shift:] + clients[:shift]:
                if client == "transmission" and run < self.args.runs - self.args.transmission_runs:
                    continue
                yield run, client

    def leech_scenario(self, scenario, torrent, payload, clients=None):
        for run, client in self.rounds(clients or self.clients):
            name = f"{scenario}-{client}-{run}"
            figures = self.attempt(name, lambda: self.leech(client, torrent, payload, name))
            self.record(scenario, client, run, figures, payload.size)

    def run(self):
        args, work = self.args, self.work
        scenarios = args.scenarios
        tracker_root = os.path.join(work, "opentracker")
        os.makedirs(tracker_root, mode=0o755)
        tracker = None
        big = [s for s in scenarios if s in "abdu"]
        if big:
            payload = single_file_payload(os.path.join(work, "seed"), args.size)
            torrents = {}
            for s in big:
                torrents[s] = os.path.join(work, f"{s}.torrent")
                # A source string per scenario: same data, separate swarms on the tracker.
                make_torrent(os.path.join(payload.parent, payload.name), torrents[s],
                             source=f"swarmer-bench-{s}")
            tracker = start_tracker(tracker_root, [info_hash(t) for t in torrents.values()],
                                    self.procs, self.logdir)
            log(f"warming up: writing and deleting {human(args.size)}")
            warm_up(work, args.size // MIB)
            if "a" in big:
                log("scenario a: one libtorrent seeder")
                self.start_lt_seeders(torrents["a"], payload, [SEEDER_A],
                                                "a-seeder")
                self.leech_scenario("a", torrents["a"], payload)
                self.stop_seeders()
            if "b" in big:
                log("scenario b: 8 libtorrent seeders")
                # Seed mode: the 8 seeders trust the shared copy instead of each hashing it.
                self.start_lt_seeders(torrents["b"], payload, SEEDERS_B,
                                                "b-seeder", seed_mode=True)
                self.leech_scenario("b", torrents["b"], payload)
                self.stop_seeders()
            if "d" in big:
                log("scenario d: each client seeds to a libtorrent leecher")
                seeding = [c for c in self.clients if c in SEEDING_CLIENTS]
                for run, client in self.rounds(seeding):
                    name = f"d-{client}-{run}"
                    figures = self.attempt(
                        name, lambda: self.seed_run(client, torrents["d"], payload, name))
                    self.record("d", client, run, figures, payload.size)
            if "u" in big:
                log("scenario u: one uTP-only libtorrent seeder")
                self.start_lt_seeders(torrents["u"], payload, [SEEDER_A], "u-seeder",
                                      extra=LT_UTP)
                self.utp = True
                self.leech_scenario("u", torrents["u"], payload,
                                    [c for c in self.clients if c in UTP_CLIENTS])
                self.utp = False
                self.stop_seeders()
            payload.remove()
        if "c" in scenarios:
            payload = multi_file_payload(os.path.join(work, "seed-c"), args.files_count,
                                         args.files_total)
            torrent = os.path.join(work, "c.torrent")
            make_torrent(os.path.join(payload.parent, payload.name), torrent,
                         source="swarmer-bench-c")
            tracker = self.whitelist(tracker, tracker_root, info_hash(torrent))
            log("scenario c: many files, one libtorrent seeder")
            self.start_lt_seeders(torrent, payload, [SEEDER_C], "c-seeder")
            self.leech_scenario("c", torrent, payload)
            self.stop_seeders()
            payload.remove()
        if "e" in scenarios:
            payload = single_file_payload(os.path.join(work, "seed-e"), args.size_e)
            torrent = os.path.join(work, "e.torrent")
            make_torrent(os.path.join(payload.parent, payload.name), torrent,
                         source="swarmer-bench-e")
            tracker = self.whitelist(tracker, tracker_root, info_hash(torrent))
            if not big:
                log(f"warming up: writing and deleting {human(args.size_e)}")
                warm_up(work, args.size_e // MIB)
            log(f"scenario e: seeders capped at {caps_label(args.caps_list)} MB/s, "
                f"{STALLED_SEEDERS} at {args.stall_rate:g} KB/s, one that stops answering")
            self.hetero_scenario(torrent, payload)
            payload.remove()

    def whitelist(self, tracker, tracker_root, ih):
        """Starts the tracker with `ih` whitelisted, or adds `ih` to the running one's whitelist
        (opentracker reloads it on SIGHUP). Returns the tracker's Popen."""
        if tracker is None:
            return start_tracker(tracker_root, [ih], self.procs, self.logdir)
        with open(os.path.join(tracker_root, "whitelist.txt"), "a") as f:
            f.write(ih.hex() + "\n")
        tracker.send_signal(signal.SIGHUP)
        return tracker


def aria2_command(directory):
    """aria2c on its own 127.0.0.x with DHT, LPD and PEX off, no config file, no preallocation."""
    ip, port = ADDR["aria2"]
    return ["aria2c", "--no-conf", "--enable-dht=false", "--enable-dht6=false",
            "--bt-enable-lpd=false", "--enable-peer-exchange=false", "--disable-ipv6=true",
            f"--interface={ip}", f"--listen-port={port}", f"--dir={directory}",
            "--file-allocation=none", "--bt-save-metadata=false", "--allow-overwrite=true",
            "--console-log-level=warn", "--summary-interval=0", "--show-console-readout=false"]


def rqbit_command(rqbit, directory):
    """`rqbit download` into `directory` with DHT, LSD, UPnP and its HTTP API off, IPv4 only.
    It keeps seeding when done unless given --exit-on-finish; existing files are checked first."""
    ip, port = ADDR["rqbit"]
    return [rqbit, "--disable-dht", "--disable-dht-persistence", "--disable-lsd",
            "--disable-upnp-port-forward", "--ipv4-only", "--listen-ip", ip,
            "--listen-port", str(port), "download", "--disable-http-api",
            "--output-folder", directory, "--overwrite"]


# ---------------------------------------------------------------------------------------------
# Report

def medians(runs, scenario, client):
    rows = [r for r in runs if r["scenario"] == scenario and r["client"] == client]
    if not rows:
        return None
    keys = ["mibps", "wall_s", "cpu_s_per_gib", "peak_rss_mib", "peak_anon_mib"]
    # Scenario e's own figures.
    keys += [k for k in ("ratio_to_ideal", "seeders_cpu_s", "machine_busy", "steady_mibps")
             if all(r.get(k) is not None for r in rows)]
    return {k: statistics.median(r[k] for r in rows) for k in keys} | {"n": len(rows)}


def mib_cell(mib):
    return f"{mib:.1f}" if mib >= 10 else f"{mib:.2f}"


def served_table(runs, clients):
    """Scenario e: MiB each seeder sent to each client, median over its runs, as markdown."""
    rows = {}
    for r in runs:
        if r["scenario"] != "e":
            continue
        for i, s in enumerate(r["served"]):
            if s["uploaded"] is not None:
                rows.setdefault(i, {"cap": s["cap_Bps"]}).setdefault(r["client"], []).append(
                    s["uploaded"] / MIB)
    present = [c for c in clients if any(c in row for row in rows.values())]
    lines = ["| seeder cap | " + " | ".join(present) + " |",
             "|---|" + "---:|" * len(present)]
    for i in sorted(rows):
        cap = rows[i]["cap"]
        label = ("stops answering" if cap is None else
                 f"{cap / 1e6:g} MB/s" if cap >= 1e6 else f"{cap / 1e3:g} KB/s")
        cells = [mib_cell(statistics.median(rows[i][c])) if c in rows[i] else ""
                 for c in present]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def markdown(args, clients, runs, env):
    lines = [f"# swarmer swarm benchmark, {env['started_utc']}", "",
             f"Loopback in a private network namespace; payload in "
             f"{'RAM (/dev/shm)' if not args.disk else args.disk}; {env['cpu']}, "
             f"{env['cores']} cores; "
             + ("MSE forced: RC4 only, both ways, for every peer; "
                if args.encryption == "forced" else "")
             + f"medians of the runs (`runs` column); every download verified by "
             f"SHA-1. Versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()) + ".",
             ""]
    fmt = {"size": human(args.size), "count": f"{args.files_count:,}",
           "files_total": human(args.files_total), "size_e": human(args.size_e),
           "n_caps": len(args.caps_list), "caps": caps_label(args.caps_list),
           "n_stall": STALLED_SEEDERS, "stall_rate": f"{args.stall_rate:g}",
           "ideal": hetero_ideal(args.size_e, args.caps_list, args.stall_rate)}
    for scenario in args.scenarios:
        present = [c for c in clients if medians(runs, scenario, c)]
        if not present:
            continue
        lines += [f"## ({scenario}) {SCENARIOS[scenario].format(**fmt)}", ""]
        hetero = scenario == "e"
        lines += ["| client | MiB/s | wall s | " + ("x ideal | " if hetero else "")
                  + "CPU s/GiB | peak RSS MiB | peak anon RSS MiB | "
                  + ("seeders' CPU s | machine busy | " if hetero else "") + "runs |",
                  "|---|---:|---:|---:|---:|---:|---:|" + ("---:|---:|---:|" if hetero else "")]
        med = {c: medians(runs, scenario, c) for c in present}
        for c in present:
            m = med[c]
            lines.append(f"| {c} | {m['mibps']:.0f} | {m['wall_s']:.2f} | "
                         + (f"{m['ratio_to_ideal']:.2f} | " if hetero else "")
                         + f"{m['cpu_s_per_gib']:.2f} | {m['peak_rss_mib']:.0f} | "
                         f"{m['peak_anon_mib']:.0f} | "
                         + (f"{m['seeders_cpu_s']:.1f} | {m['machine_busy'] * 100:.0f} % | "
                            if hetero else "")
                         + f"{m['n']} |")
        others = [c for c in present if c != "swarmer"]
        if "swarmer" in med and others:
            fastest = max(others, key=lambda c: med[c]["mibps"])
            thriftiest = min(others, key=lambda c: med[c]["cpu_s_per_gib"])
            sw = med["swarmer"]
            lines += ["", f"swarmer / best other: MiB/s {sw['mibps'] / med[fastest]['mibps']:.2f}x "
                      f"({fastest}), CPU s/GiB "
                      f"{sw['cpu_s_per_gib'] / max(med[thriftiest]['cpu_s_per_gib'], 1e-9):.2f}x "
                      f"({thriftiest})"]
            if hetero:
                best = min(others, key=lambda c: med[c]["wall_s"])
                lines += ["", f"swarmer's wall: {sw['ratio_to_ideal']:.2f}x the ideal "
                          f"(target <= 1.10), {sw['wall_s'] / med[best]['wall_s']:.2f}x the best "
                          f"other's ({best}; target <= 0.90)"]
        if hetero:
            lines += ["", f"Caps (MB/s = 10^6 bytes/s): {caps_label(args.caps_list)} "
                      f"(sum {sum(args.caps_list):g})"
                      + (f", drawn with --caps-seed {args.caps_seed}"
                         if args.caps_seed is not None else "")
                      + f", plus {STALLED_SEEDERS} x {args.stall_rate:g} KB/s and stall_peer.py "
                      f"(answers {args.stall_answer} requests per address, then nothing). "
                      f"Ideal = payload / sum of the caps = {fmt['ideal']:.2f} s. Seeders' CPU: "
                      "user+sys of all "
                      f"{len(args.caps_list) + STALLED_SEEDERS + 1} seeder processes during the "
                      "download; machine busy: "
                      "share of all cores busy meanwhile (/proc/stat, other work included)."]
            steady = [f"{c} {med[c]['steady_mibps']:.0f}" for c in present
                      if "steady_mibps" in med[c]]
            if steady:
                lines += ["", "What the seeders delivered together in mid-download (libtorrent "
                          "leechers, 10th to 90th percentile of pieces), MiB/s: "
                          + ", ".join(steady) + f"; the caps sum to "
                          f"{args.size_e / fmt['ideal'] / MIB:.0f} MiB/s."]
            lines += ["", "MiB sent by each seeder (median over the runs):", ""]
            lines += served_table(runs, present)
        lines.append("")
    lines += ["Wall: spawn to exit (Transmission: spawn to every piece verified; (d): the "
              "leecher's). CPU: user+sys of the client process ((d): of the seeder while the "
              "leecher ran). libtorrent clients are Python processes: wall, CPU and RSS include "
              "the interpreter; its RSS counts the mmapped payload, see anon RSS. Transmission "
              "never dials loopback peers: its seeders must dial it after re-announcing (every "
              "2 s), and it decides interest/unchoke on a ~10 s timer, which its wall time "
              "includes.", "",
              f"Reproduce: `{env['command']}` (took {env['elapsed_s'] / 60:.1f} min)", ""]
    crashes = env.get("libtorrent_crashes_retried", [])
    if crashes:
        lines += [f"python3-libtorrent crashed {len(crashes)} time(s); those runs were repeated: "
                  + ", ".join(c["run"] for c in crashes) + ".", ""]
    return "\n".join(lines)


def chart(path, args, clients, runs):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = [s for s in args.scenarios if any(r["scenario"] == s for r in runs)]
    fig, axes = plt.subplots(2, 1, figsize=(10, 8), constrained_layout=True)
    width = 0.8 / max(len(clients), 1)
    for ax, key, label in ((axes[0], "mibps", "MiB/s (higher is better)"),
                           (axes[1], "cpu_s_per_gib", "CPU s/GiB (lower is better)")):
        top = 0.0
        for i, client in enumerate(clients):
            xs, ys = [], []
            for j, s in enumerate(scenarios):
                m = medians(runs, s, client)
                if m:
                    xs.append(j + (i - (len(clients) - 1) / 2) * width)
                    ys.append(m[key])
            ax.bar(xs, ys, width, label=client)
            top = max([top] + ys)
        ax.set_ylim(0, top * 1.2 or 1)  # room for the legend above the bars
        ax.set_xticks(range(len(scenarios)), [f"({s})" for s in scenarios])
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(ncols=min(len(clients), 6), fontsize="small")
    axes[0].set_title("(a) 1 file, 1 seeder  (b) 1 file, 8 seeders  (c) many files  "
                      "(d) seeding to libtorrent  (e) heterogeneous seeders")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def versions(args, clients):
    def first_line(command):
        try:
            p = subprocess.run(command, capture_output=True, text=True, timeout=10)
            return (p.stdout or p.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "?"

    import libtorrent as lt

    rev = first_line(["git", "-C", REPO, "rev-parse", "--short", "HEAD"])
    dirty = first_line(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"])
    out = {"swarmer": rev + ("+dirty" if dirty not in ("", "?") else ""),
           "libtorrent": lt.__version__}
    if "transmission" in clients:
        out["transmission"] = first_line(["transmission-daemon", "-V"]).split(" ", 1)[-1]
    if "aria2" in clients:
        out["aria2"] = first_line(["aria2c", "--version"]).rsplit(" ", 1)[-1]
    if "rqbit" in clients:
        out["rqbit"] = first_line([args.rqbit, "--version"]).rsplit(" ", 1)[-1]
    return out


def loadavg():
    """/proc/loadavg: other work on the machine skews every figure; the JSON keeps it."""
    try:
        with open("/proc/loadavg") as f:
            return f.read().strip()
    except OSError:
        return "?"


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


# ---------------------------------------------------------------------------------------------

def check_tools(parser, args):
    """Fails with the command that installs what is missing; returns the clients to run."""
    missing = []
    for tool, package in (("opentracker", "opentracker"), ("mktorrent", "mktorrent")):
        if shutil.which(tool) is None:
            missing.append(package)
    for module, package in (("libtorrent", "python3-libtorrent"),
                            ("matplotlib", "python3-matplotlib")):
        probe = subprocess.run(["/usr/bin/python3", "-c", f"import {module}"],
                               capture_output=True)
        if probe.returncode != 0:
            missing.append(package)
    wanted = [c for c in args.clients.split(",") if c]
    unknown = [c for c in wanted if c not in CLIENTS]
    if unknown:
        parser.error(f"unknown clients {unknown}; choose from {CLIENTS}")
    if "transmission" in wanted and shutil.which("transmission-daemon") is None:
        missing.append("transmission-daemon")
    if "aria2" in wanted and shutil.which("aria2c") is None:
        missing.append("aria2")
    if missing:
        sys.exit(f"swarm.py: missing {', '.join(missing)}: "
                 f"sudo apt-get install -y {' '.join(missing)}")
    if "rqbit" in wanted and args.encryption == "forced":
        if os.environ.get(IN_NETNS) is None:
            log("rqbit has no encryption: left out with --encryption forced")
        wanted.remove("rqbit")
    if "rqbit" in wanted:
        args.rqbit = args.rqbit or shutil.which("rqbit")
        if not args.rqbit:
            if args.clients_given:
                parser.error("rqbit is not on PATH (cargo install rqbit)")
            if os.environ.get(IN_NETNS) is None:
                log("rqbit is not on PATH: skipping it (cargo install rqbit)")
            wanted.remove("rqbit")
        else:
            args.rqbit = os.path.abspath(args.rqbit)
    if "swarmer" in wanted:
        check_swarmer(parser, args)
    return wanted


def daemon_scale(args):
    """Scenario (f): bench/daemon_scale.py, in its own network namespace, before the others."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or os.path.join(REPO, "bench", "results", stamp)
    os.makedirs(out, exist_ok=True)
    command = [sys.executable, os.path.join(REPO, "bench", "daemon_scale.py"),
               "--torrents", str(args.daemon_torrents), "--swarmer", args.swarmer,
               "--markdown", os.path.join(out, "daemon_scale.md")]
    if subprocess.call(command) != 0:
        sys.exit("swarm.py: FAILED: scenario f (bench/daemon_scale.py)")
    # The other scenarios (run again inside the namespace) write into the same folder.
    if args.out is None:
        args.out = out
        sys.argv += ["--out", out]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per client and scenario")
    parser.add_argument("--scenarios", default="abcdu",
                        help="any of a, b, c, d, u, e, f (default abcdu)")
    parser.add_argument("--daemon-torrents", type=int, default=10_000,
                        help="torrents the daemons of (f) hold")
    parser.add_argument("--clients", default=None,
                        help=f"comma-separated, from {','.join(CLIENTS)} (default: all; rqbit "
                        "only if on PATH)")
    parser.add_argument("--size", default="4G", help="single-file payload of (a), (b), (d)")
    parser.add_argument("--files-total", default="1G", help="bytes in all files of (c)")
    parser.add_argument("--files-count", type=int, default=10_000, help="files in (c)")
    parser.add_argument("--size-e", default="1G", help="single-file payload of (e)")
    parser.add_argument("--caps", default=None,
                        help="upload caps of the (e) seeders, MB/s (10^6 bytes/s), comma-"
                        f"separated, one seeder each (default {DEFAULT_CAPS})")
    parser.add_argument("--caps-seed", type=int, default=None, metavar="N",
                        help="(e): draw --caps-count caps from 1 to 40 MB/s (log-uniform, 1 and "
                        "40 always in) with seed N instead of --caps")
    parser.add_argument("--caps-count", type=int, default=10,
                        help="seeders drawn by --caps-seed (default 10)")
    parser.add_argument("--stall-rate", type=float, default=4.0, metavar="KB_S",
                        help=f"upload cap of the {STALLED_SEEDERS} near-stalled (e) seeders, "
                        "KB/s (10^3 bytes/s; default 4)")
    parser.add_argument("--stall-answer", type=int, default=3, metavar="N",
                        help="REQUESTs stall_peer.py answers per connection before it stops "
                        "answering (default 3)")
    parser.add_argument("--swarmer-log", default="quiet", choices=list(SWARMER_LOG),
                        help="swarmer leecher's logging to logs/<run>.stderr: quiet (-q, the "
                        "default), info (-v), debug (-vv) or trace (-vvv: every verified piece; "
                        "for diagnosis, costs CPU)")
    parser.add_argument("--disk", metavar="DIR", help="payloads and downloads in DIR, not /dev/shm")
    parser.add_argument("--swarmer", default=os.path.join(REPO, "target/release/swarmer"))
    parser.add_argument("--rqbit", default=None, help="rqbit binary (default: from PATH)")
    parser.add_argument("--transmission-runs", type=int, default=1,
                        help="runs of Transmission per scenario (default 1: at 10-30 MiB/s on "
                        "loopback it would take most of the time; its speed varies little)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per download")
    parser.add_argument("--encryption", choices=["off", "forced"], default="off",
                        help="forced: every peer speaks RC4 (MSE) only, both ways (rqbit, which "
                        "has no encryption, is left out)")
    parser.add_argument("--out", help="results folder (default bench/results/<UTC timestamp>)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    args.clients_given = args.clients is not None
    args.clients = args.clients or ",".join(CLIENTS)
    args.size = parse_size(args.size)
    args.files_total = parse_size(args.files_total)
    args.size_e = parse_size(args.size_e)
    if args.caps_seed is not None:
        if args.caps is not None or args.caps_count < 2:
            parser.error("--caps-seed draws the caps: give no --caps, and --caps-count >= 2")
        args.caps_list = draw_caps(args.caps_seed, args.caps_count)
    else:
        try:
            args.caps_list = parse_caps(args.caps or DEFAULT_CAPS)
        except ValueError as e:
            parser.error(str(e))
    given = args.scenarios
    args.scenarios = "".join(s for s in "abcdue" if s in given)
    if any(s not in "abcduef" for s in given) or not (args.scenarios or "f" in given):
        parser.error("--scenarios takes letters from abcduef")
    if "f" in given and os.environ.get(IN_NETNS) is None:
        daemon_scale(args)
        if not args.scenarios:
            return
    if args.runs < 1 or args.size < MIB or args.size_e < MIB or args.files_count < 1 \
            or args.files_total < args.files_count or args.stall_rate <= 0:
        parser.error("need --runs >= 1, --size and --size-e >= 1M, --files-total >= "
                     "--files-count bytes, --stall-rate > 0")
    clients = check_tools(parser, args)
    ensure_netns(__file__, IN_NETNS)

    started = datetime.datetime.now(datetime.timezone.utc)
    out = args.out or os.path.join(REPO, "bench", "results", started.strftime("%Y%m%dT%H%M%SZ"))
    os.makedirs(out, exist_ok=True)
    env = {"started_utc": started.strftime("%Y-%m-%d %H:%M UTC"), "cpu": cpu_model(),
           "cores": os.cpu_count(), "kernel": platform.release(),
           "versions": versions(args, clients),
           "command": "sudo bench/swarm.py" + "".join(f" {a}" for a in sys.argv[1:]),
           "loadavg_start": loadavg()}
    base = args.disk or "/dev/shm"
    t0 = time.monotonic()
    state = {}

    def body(work, procs):
        bench = Bench(args, clients, work, procs, out)
        state["bench"] = bench
        bench.run()

    try:
        in_workdir("swarmer-swarm-bench", args.keep, body, base=base, logs=None)
    except BenchError as e:
        sys.exit(f"swarm.py: FAILED: {e}")
    finally:
        env["elapsed_s"] = time.monotonic() - t0
        env["loadavg_end"] = loadavg()
        runs = state["bench"].runs if "bench" in state else []
        env["libtorrent_crashes_retried"] = state["bench"].crashes if "bench" in state else []
        with open(os.path.join(out, "results.json"), "w") as f:
            json.dump({"env": env, "args": {k: v for k, v in vars(args).items()},
                       "clients": clients, "runs": runs}, f, indent=1)
    text = markdown(args, clients, runs, env)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(text)
    chart(os.path.join(out, "chart.png"), args, clients, runs)
    print(text)
    print(f"Results in {out} (results.md, results.json, chart.png, logs/); "
          f"total {env['elapsed_s'] / 60:.1f} min.")


if __name__ == "__main__":
    main()
