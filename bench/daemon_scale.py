#!/usr/bin/python3
"""Scenario (f): daemons holding N small torrents: swarmer vs transmission-daemon vs qbittorrent-nox.

Writes N small payloads (one file of --file-kib KiB each, deterministic content) and a .torrent for
each (one piece per file; the tracker URL is 127.0.0.1:9, where nothing listens). The mix: every
--stopped-every-th torrent is added paused (stopped), the first --downloading torrents have no data
(downloading, with no peer to download from), every other one has its data present (seeding). Each
daemon gets its own hard-linked copy of the data. Then, for each daemon (swarmer; transmission-daemon
3.00 over its RPC; qbittorrent-nox, when installed, over its Web API):

  populate     a fresh state, every torrent added through the daemon's own API, then wait until
               every torrent with data is seeding; stop (SIGTERM)
  start-up     restart on the same state, one daemon at a time: process start until the API
               answers, until it lists all N torrents, and until every torrent with data that
               is not stopped is seeding again
  idle         all daemons running side by side (after --settle-seconds), for --idle-seconds:
               CPU time from /proc/PID/stat as percent of one core, VmRSS at the end
  list         listing all N torrents through each API, requests interleaved round-robin
               between the APIs, --requests each: median and p95. swarmer is listed through its
               own JSON API (`GET /api/v1/torrents`), its Transmission RPC (`torrent-get`) and its
               qBittorrent API (`GET /api/v2/torrents/info`); Transmission through `torrent-get`
               (same fields), qBittorrent through `/api/v2/torrents/info`

Prints a Markdown table and, with --markdown FILE, writes it there with the command. Reachable as
scenario f of bench/swarm.py (`sudo bench/swarm.py --scenarios f --daemon-torrents 1000`).

Not a test and not in CI. Needs root: it re-executes itself inside `unshare --net` with only `lo`
up, so nothing leaves the machine. Reproduce with:

  cargo build --release -p swarmer-cli
  sudo bench/daemon_scale.py --torrents 10000
"""

import argparse
import base64
import hashlib
import http.client
import json
import math
import os
import shutil
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
TRANSMISSION_RPC = ("127.0.0.1", 9091)
QBT_WEBUI = ("127.0.0.1", 8080)
# Bounds on every wait: a daemon that does not get there is a failed measurement.
START_TIMEOUT = 300.0
SEED_TIMEOUT = 1800.0
STOP_TIMEOUT = 120.0
REQUEST_TIMEOUT = 120.0


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


class Item:
    """One torrent of the mix: its .torrent path and bytes, and what it should be doing."""

    def __init__(self, path, data, kind):
        self.path, self.data, self.kind = path, data, kind  # kind: seeding, stopped, downloading


def make_torrents(args, data_dir, torrent_dir):
    """Writes the payloads (not those of the downloading ones) into `data_dir` and every .torrent
    into `torrent_dir`; returns the Items."""
    size = args.file_kib * 1024
    piece = max(16384, 1 << (size - 1).bit_length())
    items = []
    for i in range(args.torrents):
        name = f"t{i:05d}.bin"
        data = payload_bytes(i, size)
        if i < args.downloading:
            kind = "downloading"
        elif args.stopped_every and i % args.stopped_every == args.stopped_every - 1:
            kind = "stopped"
        else:
            kind = "seeding"
        if kind != "downloading":
            with open(os.path.join(data_dir, name), "wb") as f:
                f.write(data)
        pieces = b"".join(hashlib.sha1(data[o:o + piece]).digest()
                          for o in range(0, len(data), piece))
        info = {"name": name, "length": size, "piece length": piece, "pieces": pieces}
        path = os.path.join(torrent_dir, f"{name}.torrent")
        metainfo = bencode({"announce": NO_TRACKER, "info": info})
        with open(path, "wb") as f:
            f.write(metainfo)
        items.append(Item(path, metainfo, kind))
    return items


class Http:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, host, port):
        self.host, self.port = host, port
        self.conn = http.client.HTTPConnection(host, port, timeout=REQUEST_TIMEOUT)

    def request(self, method, path, body=None, headers=None):
        """Returns (status, headers, body bytes); reconnects once if the server closed the
        connection. `last_exchange_s` becomes the seconds from sending the request to reading the
        last byte of the reply: the daemon's latency, without the client's decoding."""
        for attempt in (0, 1):
            try:
                started = time.perf_counter()
                self.conn.request(method, path, body=body, headers=headers or {})
                response = self.conn.getresponse()
                answer = response.read()
                self.last_exchange_s = time.perf_counter() - started
                return response.status, response.headers, answer
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
                    ConnectionRefusedError):
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port,
                                                       timeout=REQUEST_TIMEOUT)
                if attempt:
                    raise
        raise AssertionError("unreachable")


class Rpc:
    """Transmission RPC over an Http connection, with the session-id handshake."""

    def __init__(self, http_):
        self.http, self.session_id = http_, None

    def call(self, method, **arguments):
        body = json.dumps({"method": method, "arguments": arguments}).encode()
        for _ in range(3):
            headers = {"Content-Type": "application/json"}
            if self.session_id:
                headers["X-Transmission-Session-Id"] = self.session_id
            status, response_headers, answer = self.http.request("POST", "/transmission/rpc",
                                                                 body, headers)
            if status == 409:
                self.session_id = response_headers.get("X-Transmission-Session-Id")
                continue
            if status != 200:
                sys.exit(f"bench: {method} answered {status}: {answer[:200]!r}")
            reply = json.loads(answer)
            if reply.get("result") != "success":
                sys.exit(f"bench: {method}: {reply.get('result')}")
            return reply["arguments"]
        sys.exit("bench: /transmission/rpc kept answering 409")

    def list_all(self):
        return len(self.call("torrent-get", fields=RPC_FIELDS)["torrents"])


def multipart(fields, files):
    """A multipart/form-data body: (content type, bytes)."""
    boundary = "swarmerbench" + hashlib.sha1(os.urandom(16)).hexdigest()
    body = b""
    for name, value in fields:
        body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n"
                 f"{value}\r\n").encode()
    for name, filename, data in files:
        body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; "
                 f"filename=\"{filename}\"\r\nContent-Type: application/x-bittorrent\r\n\r\n"
                 ).encode() + data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}", body


def qbt_list(http_):
    status, _, body = http_.request("GET", "/api/v2/torrents/info")
    if status != 200:
        raise OSError(f"/api/v2/torrents/info answered {status}: {body[:200]!r}")
    return json.loads(body)


def status_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def listed_or_none(call):
    """`call()`, or None while the daemon does not answer yet."""
    try:
        return call()
    except (OSError, http.client.HTTPException, json.JSONDecodeError):
        return None


class Swarmer:
    """`swarmer daemon`: the build under test, or another (`swarmer:PATH`, e.g. a build from
    before a change, run side by side with it)."""

    def __init__(self, args, work, procs, binary=None):
        self.args, self.work, self.procs = args, work, procs
        self.binary = binary or args.swarmer
        self.tag = "swarmer" if binary is None else f"swarmer-{os.path.basename(binary)}"
        self.name = self.tag if binary is None else f"swarmer ({binary})"
        self.data = os.path.join(work, f"data-{self.tag}")

    def start(self, label):
        command = [self.binary, "daemon", "--http-listen", "127.0.0.1:0",
                   "-o", self.data, "--state-dir", os.path.join(self.work, f"state-{self.tag}"),
                   "--port", "0", "--bind-address", "127.0.0.1", "--no-dht", "--no-lsd",
                   "--no-pex"]
        # Builds from before port mapping have no switch for it (and no port mapping).
        help_text = subprocess.run([self.binary, "daemon", "--help"], capture_output=True,
                                   text=True).stdout
        if "--no-port-mapping" in help_text:
            command.append("--no-port-mapping")
        env = dict(os.environ, XDG_CONFIG_HOME=os.path.join(self.work, "xdg"))
        env.pop("SWARMER_TOKEN", None)
        started = time.monotonic()
        self.child = self.procs.start(f"{self.tag}-{label}", command,
                                      os.path.join(self.work, "logs"), env=env)
        stdout = os.path.join(self.work, "logs", f"{self.tag}-{label}.stdout")

        def ready():
            if self.child.poll() is not None:
                sys.exit(f"bench: swarmer exited with {self.child.returncode}; see logs")
            with open(stdout) as f:
                for line in f:
                    if line.startswith(READY):
                        return line[len(READY):].strip()
            return None

        url = common.wait_for("swarmer's address", started + START_TIMEOUT, ready, 0.005)
        host, port = url.removeprefix("http://").rsplit(":", 1)
        self.http = Http(host, int(port))
        self.rpc = Rpc(Http(host, int(port)))
        self.qbt = Http(host, int(port))
        return started

    def torrents(self):
        status, _, body = self.http.request("GET", "/api/v1/torrents")
        if status != 200:
            raise OSError(f"GET /api/v1/torrents answered {status}")
        return json.loads(body)

    def add_all(self, items):
        # No download or seed queue, as Transmission and qBittorrent run here: the torrents with
        # no peer would otherwise hold every download slot and queue the rest unchecked.
        self.rpc.call("session-set", **{"download-queue-enabled": False,
                                        "seed-queue-enabled": False})
        for item in items:
            fields = [("paused", "true")] if item.kind == "stopped" else []
            ctype, body = multipart(fields, [("torrent", os.path.basename(item.path),
                                              item.data)])
            status, _, answer = self.http.request("POST", "/api/v1/torrents", body, {
                "Content-Type": ctype, "X-Requested-By": "swarmer-bench"})
            if status != 201:
                sys.exit(f"bench: swarmer add answered {status}: {answer[:200]!r}")

    def seeding(self):
        return sum(1 for t in self.torrents() if t["state"] == "seeding")

    def listings(self):
        return {
            f"{self.name} /api/v1/torrents": (lambda: len(self.torrents()), self.http),
            f"{self.name} torrent-get (Transmission RPC)": (self.rpc.list_all, self.rpc.http),
            f"{self.name} /api/v2/torrents/info (qBittorrent API)":
                (lambda: len(qbt_list(self.qbt)), self.qbt),
        }


class Transmission:
    name = "transmission-daemon"

    def __init__(self, args, work, procs):
        self.args, self.work, self.procs = args, work, procs
        self.data = os.path.join(work, "data-transmission")
        self.conf = os.path.join(work, "transmission-config")

    def start(self, label):
        if not os.path.exists(self.conf):
            os.makedirs(self.conf)
            settings = {
                "dht-enabled": False, "lpd-enabled": False, "pex-enabled": False,
                "utp-enabled": False, "port-forwarding-enabled": False,
                "blocklist-enabled": False, "bind-address-ipv4": "127.0.0.1",
                "bind-address-ipv6": "::1", "peer-port": 51413,
                "peer-port-random-on-start": False, "rpc-enabled": True,
                "rpc-bind-address": TRANSMISSION_RPC[0], "rpc-port": TRANSMISSION_RPC[1],
                "rpc-authentication-required": False, "rpc-whitelist-enabled": False,
                "rpc-host-whitelist-enabled": False, "download-queue-enabled": False,
                "seed-queue-enabled": False, "queue-stalled-enabled": False,
                "ratio-limit-enabled": False, "idle-seeding-limit-enabled": False,
                "download-dir": self.data, "incomplete-dir-enabled": False,
                "rename-partial-files": False, "watch-dir-enabled": False,
                "start-added-torrents": True, "message-level": 1,
            }
            with open(os.path.join(self.conf, "settings.json"), "w") as f:
                json.dump(settings, f)
        started = time.monotonic()
        self.child = self.procs.start(f"transmission-{label}",
                                      ["transmission-daemon", "-f", "-g", self.conf],
                                      os.path.join(self.work, "logs"))
        self.rpc = Rpc(Http(*TRANSMISSION_RPC))

        def up():
            if self.child.poll() is not None:
                sys.exit(f"bench: transmission-daemon exited with {self.child.returncode}")
            return listed_or_none(lambda: self.rpc.call("session-get")) is not None

        common.wait_for("transmission's RPC", started + START_TIMEOUT, up, 0.005)
        return started

    def torrents(self):
        return self.rpc.call("torrent-get", fields=RPC_FIELDS)["torrents"]

    def add_all(self, items):
        for item in items:
            self.rpc.call("torrent-add", metainfo=base64.b64encode(item.data).decode(),
                          **{"download-dir": self.data, "paused": item.kind == "stopped"})

    def seeding(self):
        return sum(1 for t in self.torrents() if t["status"] == 6)

    def listings(self):
        return {"transmission-daemon torrent-get": (self.rpc.list_all, self.rpc.http)}


class Qbittorrent:
    name = "qbittorrent-nox"

    def __init__(self, args, work, procs):
        self.args, self.work, self.procs = args, work, procs
        self.data = os.path.join(work, "data-qbittorrent")
        self.profile = os.path.join(work, "qbt-profile")

    def start(self, label):
        conf_dir = os.path.join(self.profile, "qBittorrent", "config")
        if not os.path.exists(conf_dir):
            os.makedirs(conf_dir)
            with open(os.path.join(conf_dir, "qBittorrent.conf"), "w") as f:
                f.write("[LegalNotice]\nAccepted=true\n\n"
                        "[BitTorrent]\nSession\\DHTEnabled=false\nSession\\LSDEnabled=false\n"
                        "Session\\PeXEnabled=false\nSession\\QueueingSystemEnabled=false\n"
                        "Session\\Port=51414\nSession\\Interface=lo\n"
                        # libtorrent checks one torrent at a time by default: 10,000 small
                        # ones took about a second each.
                        "Session\\MaxActiveCheckingTorrents=200\n"
                        "Session\\InterfaceName=lo\n"
                        f"Session\\DefaultSavePath={self.data}\n\n"
                        "[Preferences]\nWebUI\\LocalHostAuth=false\n"
                        f"WebUI\\Address={QBT_WEBUI[0]}\nWebUI\\Port={QBT_WEBUI[1]}\n"
                        "WebUI\\HostHeaderValidation=false\nWebUI\\CSRFProtection=false\n"
                        "General\\Locale=en\n")
        started = time.monotonic()
        self.child = self.procs.start(
            f"qbittorrent-{label}",
            ["qbittorrent-nox", f"--profile={self.profile}", f"--webui-port={QBT_WEBUI[1]}"],
            os.path.join(self.work, "logs"), env=dict(os.environ, HOME=self.profile))
        self.http = Http(*QBT_WEBUI)

        def up():
            if self.child.poll() is not None:
                sys.exit(f"bench: qbittorrent-nox exited with {self.child.returncode}")
            return listed_or_none(lambda: self.http.request("GET", "/api/v2/app/version")[0]
                                  == 200)

        common.wait_for("qBittorrent's Web API", started + START_TIMEOUT, up, 0.005)
        return started

    def torrents(self):
        return qbt_list(self.http)

    def add_all(self, items):
        for paused in (False, True):
            batch = [i for i in items if (i.kind == "stopped") == paused]
            for at in range(0, len(batch), 200):
                files = [("torrents", os.path.basename(i.path), i.data)
                         for i in batch[at:at + 200]]
                ctype, body = multipart([("savepath", self.data),
                                         ("paused", "true" if paused else "false")], files)
                status, _, answer = self.http.request("POST", "/api/v2/torrents/add", body,
                                                      {"Content-Type": ctype})
                if status != 200:
                    sys.exit(f"bench: qBittorrent add answered {status}: {answer[:200]!r}")

    def seeding(self):
        return sum(1 for t in self.torrents() if t["state"] in ("uploading", "stalledUP"))

    def listings(self):
        return {"qbittorrent-nox /api/v2/torrents/info": (lambda: len(qbt_list(self.http)),
                                                          self.http)}


def p95(values):
    """Nearest-rank 95th percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def measure(args, work, procs):
    for sub in ("data", "torrents", "logs", "xdg"):
        os.makedirs(os.path.join(work, sub), exist_ok=True)
    t0 = time.monotonic()
    items = make_torrents(args, os.path.join(work, "data"), os.path.join(work, "torrents"))
    with_data = sum(1 for i in items if i.kind != "downloading")
    seeding = sum(1 for i in items if i.kind == "seeding")
    log(f"{len(items)} torrents ({seeding} seeding, {len(items) - with_data} downloading, "
        f"{with_data - seeding} stopped) of {args.file_kib} KiB written in "
        f"{time.monotonic() - t0:.1f} s")
    classes = {"swarmer": Swarmer, "transmission": Transmission, "qbittorrent": Qbittorrent}
    daemons = [Swarmer(args, work, procs, c.split(":", 1)[1]) if c.startswith("swarmer:")
               else classes[c](args, work, procs) for c in args.clients.split(",")]
    for d in daemons:
        # A hard-linked copy each: a daemon never writes into the seeding files.
        subprocess.run(["cp", "-al", os.path.join(work, "data"), d.data], check=True)

    results = {"torrents": args.torrents, "file_kib": args.file_kib, "seeding": seeding,
               "stopped": with_data - seeding, "downloading": len(items) - with_data,
               "daemons": {}}
    for d in daemons:
        d.start("populate")
        t0 = time.monotonic()
        d.add_all(items)
        add_s = time.monotonic() - t0
        common.wait_for(f"{d.name}: {seeding} seeding", time.monotonic() + SEED_TIMEOUT,
                        lambda: listed_or_none(d.seeding) == seeding, 0.5)
        log(f"{d.name}: {len(items)} added in {add_s:.1f} s, then all seeding after "
            f"{time.monotonic() - t0 - add_s:.1f} s")
        # Let the first periodic saves land, as a daemon that ran for a while has them.
        time.sleep(args.settle_seconds)
        procs.stop(d.child, grace=STOP_TIMEOUT)
        results["daemons"][d.name] = {"add_s": add_s}

    for d in daemons:
        load = loadavg()
        started = d.start("restart")
        http_s = time.monotonic() - started
        common.wait_for(f"{d.name} listing {args.torrents}", started + START_TIMEOUT,
                        lambda: (listed_or_none(lambda: len(d.torrents())) or 0)
                        >= args.torrents, 0.01)
        listed_s = time.monotonic() - started
        common.wait_for(f"{d.name}: {seeding} seeding again", started + START_TIMEOUT,
                        lambda: listed_or_none(d.seeding) == seeding, 0.01)
        seeding_s = time.monotonic() - started
        results["daemons"][d.name]["startup_cpu_s"] = common.cpu_seconds(d.child.pid)
        log(f"{d.name}: API up {http_s:.2f} s, all {args.torrents} listed {listed_s:.2f} s, "
            f"all {seeding} seeding {seeding_s:.2f} s after start (load {load:.2f})")
        results["daemons"][d.name].update(api_up_s=http_s, startup_s=listed_s,
                                          seeding_s=seeding_s, startup_load=load)

    log(f"all running; settling {args.settle_seconds} s, then idling {args.idle_seconds} s")
    time.sleep(args.settle_seconds)
    load0 = loadavg()
    cpu0 = {d.name: common.cpu_seconds(d.child.pid) for d in daemons}
    for d in daemons:
        r = results["daemons"][d.name]
        r["settle_cpu_s"] = cpu0[d.name] - r["startup_cpu_s"]
    t0 = time.monotonic()
    time.sleep(args.idle_seconds)
    elapsed = time.monotonic() - t0
    load1 = loadavg()
    for d in daemons:
        cpu = common.cpu_seconds(d.child.pid) - cpu0[d.name]
        r = results["daemons"][d.name]
        r.update(idle_cpu_pct=100 * cpu / elapsed, rss_mib=status_kib(d.child.pid, "VmRSS") / 1024,
                 hwm_mib=status_kib(d.child.pid, "VmHWM") / 1024)
        log(f"{d.name}: idle {r['idle_cpu_pct']:.2f} % of a core, VmRSS {r['rss_mib']:.1f} MiB")
    results["idle_load"] = (load0 + load1) / 2

    # Each listing's latency is its HTTP exchange (request sent to the reply's last byte); the
    # bench's own JSON decode of the reply, the same work whoever answered, is timed apart.
    listings = {}
    for d in daemons:
        for label, (call, http_) in d.listings().items():
            got = call()
            if got != args.torrents:
                sys.exit(f"bench: {label} listed {got}, not {args.torrents}")
            listings[label] = (call, http_, [], [])
    load = loadavg()
    for _ in range(args.requests):
        for label, (call, http_, exchanges, totals) in listings.items():
            t = time.perf_counter()
            call()
            totals.append(time.perf_counter() - t)
            exchanges.append(http_.last_exchange_s)
    results["list_load"] = (load + loadavg()) / 2
    results["listing"] = {label: {"median_ms": 1000 * statistics.median(exchanges),
                                  "p95_ms": 1000 * p95(exchanges),
                                  "with_decode_median_ms": 1000 * statistics.median(totals)}
                          for label, (_, _, exchanges, totals) in listings.items()}
    for d in daemons:
        procs.stop(d.child, grace=STOP_TIMEOUT)

    table = markdown(results, args)
    print(table)
    print(json.dumps(results, indent=2))
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table)
        with open(os.path.splitext(args.markdown)[0] + ".json", "w") as f:
            json.dump(results, f, indent=2)
        log(f"wrote {args.markdown}")


def markdown(r, args):
    lines = [f"### (f) {r['torrents']} torrents × {r['file_kib']} KiB: {r['seeding']} seeding, "
             f"{r['stopped']} stopped, {r['downloading']} downloading (no peer)", "",
             f"`sudo bench/daemon_scale.py --torrents {r['torrents']} --idle-seconds "
             f"{args.idle_seconds} --requests {args.requests}`", "",
             "| Daemon | Start-up: API up, all listed, all seeding (load) | CPU s to all "
             "seeding, then until idle | "
             f"Idle CPU, % of a core over {args.idle_seconds} s | VmRSS | Peak RSS |",
             "|---|---|---|---|---|---|"]
    for name, d in r["daemons"].items():
        lines.append(f"| {name} | {d['api_up_s']:.2f} s, {d['startup_s']:.2f} s, "
                     f"{d['seeding_s']:.2f} s ({d['startup_load']:.1f}) | "
                     f"{d['startup_cpu_s']:.2f} s, "
                     f"{d['settle_cpu_s']:.2f} s | {d['idle_cpu_pct']:.2f} % | "
                     f"{d['rss_mib']:.1f} MiB | {d['hwm_mib']:.1f} MiB |")
    lines += ["", f"Idle load average {r['idle_load']:.1f}. Listing all {r['torrents']} "
              f"torrents, {args.requests} requests each, interleaved (load "
              f"{r['list_load']:.1f}); latency is the HTTP exchange, request to last byte; the last "
              "column adds the bench's JSON decode:", "",
              "| API | Median | p95 | Median with decode |", "|---|---|---|---|"]
    for label, t in r["listing"].items():
        lines.append(f"| {label} | {t['median_ms']:.1f} ms | {t['p95_ms']:.1f} ms | "
                     f"{t['with_decode_median_ms']:.1f} ms |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--swarmer", default=os.path.join(common.REPO, "target/release/swarmer"))
    parser.add_argument("--torrents", type=int, default=10000)
    parser.add_argument("--file-kib", type=int, default=16)
    parser.add_argument("--stopped-every", type=int, default=10,
                        help="every Nth torrent is added stopped (0: none)")
    parser.add_argument("--downloading", type=int, default=10,
                        help="torrents without data, downloading with no peer")
    parser.add_argument("--clients", default=None,
                        help="comma-separated: swarmer,transmission,qbittorrent (default: those "
                             "installed); swarmer:PATH adds another swarmer build")
    parser.add_argument("--idle-seconds", type=int, default=60)
    parser.add_argument("--settle-seconds", type=int, default=35,
                        help="wait before stopping after populating, and before idling")
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--base", default="/var/tmp",
                        help="where the work directory goes (a disk, so fsyncs count)")
    parser.add_argument("--markdown", help="also write the table (and .json) to this file")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    common.check_swarmer(parser, args)
    if args.clients is None:
        args.clients = ",".join(["swarmer"] + [c for c, b in (
            ("transmission", "transmission-daemon"), ("qbittorrent", "qbittorrent-nox"))
            if shutil.which(b)])
    if args.markdown:
        args.markdown = os.path.abspath(args.markdown)
    common.ensure_netns(__file__, NETNS_MARKER)
    common.in_workdir("swarmer-daemon-scale", args.keep,
                      lambda work, procs: measure(args, work, procs), base=args.base)


if __name__ == "__main__":
    main()
