#!/usr/bin/python3
"""Daemon scale measurement: `swarmer daemon` holding 1,000 seeding torrents.

Writes N small payloads (one file of --file-kib KiB each, deterministic content) into the daemon's
download directory and a .torrent for each (one piece per file, encoded here; the tracker URL is
127.0.0.1:9, where nothing listens), starts the release build

  swarmer daemon --http-listen 127.0.0.1:0 -o DIR --state-dir DIR --port 0
                 --bind-address 127.0.0.1 --no-dht --no-lsd --no-pex

on a fresh state directory, adds every torrent through the JSON API (multipart upload) and waits
until all N are seeding. Then it stops the daemon (SIGTERM), starts it again on the same state
and measures:

  start-up     process start until `GET /api/v1/torrents` lists N torrents, all seeding (and the
               time until the HTTP API answered at all)
  idle RSS     VmRSS of the daemon after --idle-seconds of idling with N torrents (and the CPU
               seconds it used meanwhile)
  torrent-get  POST /transmission/rpc (after the X-Transmission-Session-Id handshake) with
               fields id,name,status,percentDone,rateDownload,rateUpload,totalSize,eta:
               median and p95 of --requests requests on one keep-alive connection
               (skipped, and said so, when the daemon has no /transmission/rpc yet)
  list         GET /api/v1/torrents, median and p95 the same way

and the time SIGTERM took with N torrents. Prints a Markdown table and, with --markdown FILE,
writes it there with the command that reproduces it.

Not a test and not in CI. Needs root: it re-executes itself inside `unshare --net` with only `lo`
up, so nothing leaves the machine. Reproduce with:

  cargo build --release -p swarmer-cli
  sudo bench/daemon_scale.py --torrents 1000
"""

import argparse
import hashlib
import http.client
import json
import math
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
from common import log  # noqa: E402

NETNS_MARKER = "SWARMER_BENCH_DAEMON_NETNS"
READY = "swarmer daemon: listening on "
NO_TRACKER = "http://127.0.0.1:9/announce"
RPC_FIELDS = ["id", "name", "status", "percentDone", "rateDownload", "rateUpload", "totalSize",
              "eta"]
# Bounds on every wait: a daemon that does not get there is a failed measurement.
START_TIMEOUT = 120.0
SEED_TIMEOUT = 900.0
STOP_TIMEOUT = 60.0
REQUEST_TIMEOUT = 60.0


def bencode(value):
    """Bencodes ints, bytes, str, lists and dicts (keys sorted, as BEP 3 requires)."""
    if isinstance(value, int):
        return b"i%de" % value
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes):
        return b"%d:%s" % (len(value), value)
    if isinstance(value, list):
        return b"l" + b"".join(bencode(v) for v in value) + b"e"
    if isinstance(value, dict):
        items = sorted((k.encode() if isinstance(k, str) else k, v) for k, v in value.items())
        return b"d" + b"".join(bencode(k) + bencode(v) for k, v in items) + b"e"
    raise TypeError(f"cannot bencode {type(value)}")


def payload_bytes(index, size):
    """`size` deterministic bytes for torrent `index` (SHA-256 in counter mode)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(b"%d/%d" % (index, counter)).digest()
        counter += 1
    return bytes(out[:size])


def make_torrents(count, size, data_dir, torrent_dir):
    """Writes `count` payloads into `data_dir` and their .torrent files (one piece each, pieces of
    at least 16 KiB) into `torrent_dir`; returns the .torrent paths."""
    piece = max(16384, 1 << (size - 1).bit_length())
    paths = []
    for i in range(count):
        name = f"t{i:05d}.bin"
        data = payload_bytes(i, size)
        with open(os.path.join(data_dir, name), "wb") as f:
            f.write(data)
        pieces = b"".join(hashlib.sha1(data[o:o + piece]).digest()
                          for o in range(0, len(data), piece))
        info = {"name": name, "length": size, "piece length": piece, "pieces": pieces}
        path = os.path.join(torrent_dir, f"{name}.torrent")
        with open(path, "wb") as f:
            f.write(bencode({"announce": NO_TRACKER, "info": info}))
        paths.append(path)
    return paths


class Api:
    """One keep-alive HTTP/1.1 connection to the daemon."""

    def __init__(self, host, port):
        self.host, self.port = host, port
        self.conn = http.client.HTTPConnection(host, port, timeout=REQUEST_TIMEOUT)
        self.session_id = None

    def request(self, method, path, body=None, headers=None):
        """Returns (status, headers, body bytes); reconnects once if the daemon closed the
        connection."""
        for attempt in (0, 1):
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                response = self.conn.getresponse()
                return response.status, response.headers, response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port,
                                                       timeout=REQUEST_TIMEOUT)
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def torrents(self):
        status, _, body = self.request("GET", "/api/v1/torrents")
        if status != 200:
            sys.exit(f"bench: GET /api/v1/torrents answered {status}: {body[:200]!r}")
        return json.loads(body)

    def add(self, torrent_path):
        with open(torrent_path, "rb") as f:
            data = f.read()
        boundary = "swarmerbench" + hashlib.sha1(data).hexdigest()
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"torrent\"; "
                f"filename=\"{os.path.basename(torrent_path)}\"\r\n"
                "Content-Type: application/x-bittorrent\r\n\r\n").encode()
        body += data + f"\r\n--{boundary}--\r\n".encode()
        status, _, answer = self.request("POST", "/api/v1/torrents", body, {
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "X-Requested-By": "swarmer-bench",
        })
        if status != 201:
            sys.exit(f"bench: adding {torrent_path} answered {status}: {answer[:200]!r}")

    def rpc(self, payload):
        """One Transmission RPC call with the session-id handshake; None if there is no RPC."""
        body = json.dumps(payload).encode()
        for _ in range(2):
            headers = {"Content-Type": "application/json"}
            if self.session_id:
                headers["X-Transmission-Session-Id"] = self.session_id
            status, response_headers, answer = self.request("POST", "/transmission/rpc", body,
                                                            headers)
            if status == 409:
                self.session_id = response_headers.get("X-Transmission-Session-Id")
                continue
            if status == 404:
                return None
            if status != 200:
                sys.exit(f"bench: /transmission/rpc answered {status}: {answer[:200]!r}")
            return json.loads(answer)
        sys.exit("bench: /transmission/rpc kept answering 409")


def start_daemon(args, work, procs, name):
    """Starts the daemon; returns (child, Api, seconds until it printed its address)."""
    command = [args.swarmer, "daemon", "--http-listen", "127.0.0.1:0",
               "-o", os.path.join(work, "downloads"), "--state-dir", os.path.join(work, "state"),
               "--port", "0", "--bind-address", "127.0.0.1", "--no-dht", "--no-lsd", "--no-pex", "--no-port-mapping"]
    env = dict(os.environ, XDG_CONFIG_HOME=os.path.join(work, "xdg"))
    env.pop("SWARMER_TOKEN", None)
    started = time.monotonic()
    child = procs.start(name, command, os.path.join(work, "logs"), env=env)
    stdout = os.path.join(work, "logs", f"{name}.stdout")

    def ready():
        if child.poll() is not None:
            sys.exit(f"bench: the daemon exited with {child.returncode}; see {work}/logs")
        with open(stdout) as f:
            for line in f:
                if line.startswith(READY):
                    return line[len(READY):].strip()
        return None

    url = common.wait_for("the daemon's address", started + START_TIMEOUT, ready, 0.005)
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return child, Api(host, int(port)), time.monotonic() - started, started


def all_seeding(api, count):
    torrents = api.torrents()
    seeding = sum(1 for t in torrents if t["state"] == "seeding")
    return (len(torrents), seeding) if len(torrents) == count and seeding == count else None


def status_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def timed(call, requests):
    """Seconds each of `requests` calls took."""
    times = []
    for _ in range(requests):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return times


def p95(values):
    """Nearest-rank 95th percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def measure(args, work, procs):
    for sub in ("downloads", "state", "torrents", "logs", "xdg"):
        os.makedirs(os.path.join(work, sub), exist_ok=True)
    t0 = time.monotonic()
    paths = make_torrents(args.torrents, args.file_kib * 1024, os.path.join(work, "downloads"),
                          os.path.join(work, "torrents"))
    log(f"{len(paths)} payloads of {args.file_kib} KiB and their torrents written in "
        f"{time.monotonic() - t0:.1f} s")

    child, api, _, _ = start_daemon(args, work, procs, "daemon-first")
    t0 = time.monotonic()
    for path in paths:
        api.add(path)
    add_seconds = time.monotonic() - t0
    log(f"{len(paths)} torrents added in {add_seconds:.1f} s")
    t0 = time.monotonic()
    common.wait_for(f"{args.torrents} torrents seeding", t0 + SEED_TIMEOUT,
                    lambda: all_seeding(api, args.torrents), 0.5)
    first_seed_seconds = time.monotonic() - t0
    log(f"all seeding {first_seed_seconds:.1f} s after the last add")
    t0 = time.monotonic()
    procs.stop(child, grace=STOP_TIMEOUT)
    stop_seconds = time.monotonic() - t0
    if child.returncode != 0:
        sys.exit(f"bench: the daemon exited with {child.returncode} after SIGTERM")
    log(f"stopped (SIGTERM) in {stop_seconds:.2f} s")

    child, api, http_seconds, started = start_daemon(args, work, procs, "daemon-restart")
    listed_at = None

    def restored():
        nonlocal listed_at
        torrents = api.torrents()
        if len(torrents) == args.torrents and listed_at is None:
            listed_at = time.monotonic() - started
        states = {}
        for t in torrents:
            states[t["state"]] = states.get(t["state"], 0) + 1
        return states if states.get("seeding") == args.torrents else None

    common.wait_for("every torrent seeding after the restart", started + SEED_TIMEOUT,
                    restored, 0.02)
    startup_seconds = time.monotonic() - started
    log(f"restart: HTTP up after {http_seconds:.2f} s, {args.torrents} listed after "
        f"{listed_at:.2f} s, all seeding after {startup_seconds:.2f} s")

    cpu_before = common.cpu_seconds(child.pid)
    log(f"idling {args.idle_seconds} s")
    # VmRSS every 5 s while idle: resume saves (every 30 s) and tracker retries land in it.
    rss_series = []
    idle_start = time.monotonic()
    while (left := idle_start + args.idle_seconds - time.monotonic()) > 0:
        time.sleep(min(5.0, left))
        rss_series.append(round(status_kib(child.pid, "VmRSS") / 1024, 1))
    log(f"VmRSS every 5 s (MiB): {rss_series}")
    idle_cpu = common.cpu_seconds(child.pid) - cpu_before
    rss_kib = status_kib(child.pid, "VmRSS")
    hwm_kib = status_kib(child.pid, "VmHWM")
    log(f"idle: VmRSS {rss_kib / 1024:.1f} MiB (peak {hwm_kib / 1024:.1f} MiB), "
        f"{idle_cpu:.2f} CPU s in {args.idle_seconds} s")

    list_bytes = len(api.request("GET", "/api/v1/torrents")[2])
    list_times = timed(api.torrents, args.requests)
    rpc_request = {"method": "torrent-get", "arguments": {"fields": RPC_FIELDS}}
    probe = api.rpc(rpc_request)
    rpc_times = None
    if probe is None:
        log("no /transmission/rpc on this daemon: torrent-get not measured")
    else:
        got = len(probe.get("arguments", {}).get("torrents", []))
        if got != args.torrents:
            sys.exit(f"bench: torrent-get returned {got} torrents, not {args.torrents}")
        rpc_times = timed(lambda: api.rpc(rpc_request), args.requests)
    procs.stop(child, grace=STOP_TIMEOUT)

    ms = lambda s: s * 1000  # noqa: E731
    results = {
        "torrents": args.torrents,
        "file_kib": args.file_kib,
        "add_seconds": add_seconds,
        "first_seed_seconds": first_seed_seconds,
        "stop_seconds": stop_seconds,
        "restart_http_seconds": http_seconds,
        "restart_listed_seconds": listed_at,
        "restart_all_seeding_seconds": startup_seconds,
        "idle_seconds": args.idle_seconds,
        "idle_rss_mib": rss_kib / 1024,
        "peak_rss_mib": hwm_kib / 1024,
        "idle_cpu_seconds": idle_cpu,
        "idle_rss_mib_every_5s": rss_series,
        "list_bytes": list_bytes,
        "list_ms_median": ms(statistics.median(list_times)),
        "list_ms_p95": ms(p95(list_times)),
        "rpc_ms_median": ms(statistics.median(rpc_times)) if rpc_times else None,
        "rpc_ms_p95": ms(p95(rpc_times)) if rpc_times else None,
        "requests": args.requests,
    }
    table = markdown(results)
    print(table)
    print(json.dumps(results, indent=2))
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table)
        log(f"wrote {args.markdown}")


def markdown(r):
    rpc = ("not measured: no /transmission/rpc in this build" if r["rpc_ms_median"] is None
           else f"{r['rpc_ms_median']:.1f} ms median, {r['rpc_ms_p95']:.1f} ms p95")
    rows = [
        ("Start-up (process start → all listed and seeding)",
         f"{r['restart_all_seeding_seconds']:.2f} s (HTTP up {r['restart_http_seconds']:.2f} s, "
         f"all listed {r['restart_listed_seconds']:.2f} s)"),
        (f"Idle RSS after {r['idle_seconds']} s", f"{r['idle_rss_mib']:.1f} MiB "
         f"(peak {r['peak_rss_mib']:.1f} MiB; {r['idle_cpu_seconds']:.2f} CPU s while idle)"),
        (f"`torrent-get` over {r['torrents']} torrents ({r['requests']} requests)", rpc),
        (f"`GET /api/v1/torrents` ({r['requests']} requests, {r['list_bytes'] / 1024:.0f} KiB)",
         f"{r['list_ms_median']:.1f} ms median, {r['list_ms_p95']:.1f} ms p95"),
        ("SIGTERM with every torrent seeding", f"{r['stop_seconds']:.2f} s"),
        (f"First run: adding {r['torrents']} by upload, then all seeding",
         f"{r['add_seconds']:.1f} s, then {r['first_seed_seconds']:.1f} s"),
    ]
    lines = [f"| {r['torrents']} torrents × {r['file_kib']} KiB | |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--swarmer", default=os.path.join(common.REPO, "target/release/swarmer"))
    parser.add_argument("--torrents", type=int, default=1000)
    parser.add_argument("--file-kib", type=int, default=16)
    parser.add_argument("--idle-seconds", type=int, default=30)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--base", default="/var/tmp",
                        help="where the work directory goes (a disk, so redb's fsyncs count)")
    parser.add_argument("--markdown", help="also write the table to this file")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    common.check_swarmer(parser, args)
    if args.markdown:
        args.markdown = os.path.abspath(args.markdown)
    common.ensure_netns(__file__, NETNS_MARKER)
    common.in_workdir("swarmer-daemon-scale", args.keep,
                      lambda work, procs: measure(args, work, procs), base=args.base)


if __name__ == "__main__":
    main()
