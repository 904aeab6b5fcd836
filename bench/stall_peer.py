#!/usr/bin/python3
"""A seeder that stops answering mid-piece: the misbehaving peer of bench/swarm.py scenario (e).

It speaks plain BEP 3 over TCP and nothing else (no Fast Extension, no extension protocol, no
encryption): it accepts connections on --listen, answers a handshake for the torrent's info hash
with its own, sends a BITFIELD of every piece, UNCHOKEs a peer once it is INTERESTED, and answers
the first --answer REQUESTs from each address with blocks read from --payload (counted per address,
so a peer that both dials and is dialled gets no more). After that it answers nothing and sends
nothing to that address: it keeps the connection open, reads and discards everything, so the
blocks already asked of it stay outstanding until the other side gives up on them. A piece is
1 MiB (64 blocks) in the benchmark, so the stall comes in the middle of a piece.

It announces to the torrent's HTTP tracker from its own address (opentracker records the source
address) as a seeder, every --reannounce seconds, and dials every peer the tracker hands out once
(a Transmission leecher never dials loopback peers; other seeders just close the connection).

Output, one JSON object per line on stdout: {"event": "seeding"} once it listens and the tracker
answered, and on SIGTERM {"event": "stopped", "uploaded": N, "peers": [{"ip", "port",
"requests", "answered", "uploaded"}]} (payload bytes sent, requests received per connection).
"""

import argparse
import hashlib
import http.client
import json
import os
import signal
import socket
import struct
import sys
import threading
import time
import urllib.parse

CHOKE, UNCHOKE, INTERESTED, NOT_INTERESTED, HAVE, BITFIELD, REQUEST, PIECE, CANCEL = range(9)
PROTOCOL = b"\x13BitTorrent protocol"
# The most a REQUEST may ask for (bytes); larger ones are dropped like the rest.
MAX_BLOCK = 128 * 1024


def emit(event, **fields):
    fields["event"] = event
    fields["time"] = time.time()
    print(json.dumps(fields), flush=True)


def bdecode(data, i=0):
    """(value, end) for the bencoded value at data[i:]; dictionaries also keep each value's raw
    span under key (b"__span__", key), so the info dictionary can be hashed as it was written."""
    c = data[i:i + 1]
    if c == b"i":
        end = data.index(b"e", i)
        return int(data[i + 1:end]), end + 1
    if c == b"l":
        i, out = i + 1, []
        while data[i:i + 1] != b"e":
            value, i = bdecode(data, i)
            out.append(value)
        return out, i + 1
    if c == b"d":
        i, out = i + 1, {}
        while data[i:i + 1] != b"e":
            key, i = bdecode(data, i)
            start = i
            out[key], i = bdecode(data, i)
            out[(b"__span__", key)] = (start, i)
        return out, i + 1
    colon = data.index(b":", i)
    length = int(data[i:colon])
    return data[colon + 1:colon + 1 + length], colon + 1 + length


class Torrent:
    """What this peer needs of a single-file v1 torrent."""

    def __init__(self, path):
        with open(path, "rb") as f:
            raw = f.read()
        meta, _ = bdecode(raw)
        start, end = meta[(b"__span__", b"info")]
        self.info_hash = hashlib.sha1(raw[start:end]).digest()
        info = meta[b"info"]
        self.length = info[b"length"]
        self.piece_length = info[b"piece length"]
        self.pieces = len(info[b"pieces"]) // 20
        self.announce = meta[b"announce"].decode()

    def bitfield(self):
        bits = bytearray((self.pieces + 7) // 8)
        for p in range(self.pieces):
            bits[p // 8] |= 0x80 >> (p % 8)
        return bytes(bits)


class Peer:
    """One seeder process: its torrent, payload, address and the connections it has had."""

    def __init__(self, args):
        self.args = args
        self.torrent = Torrent(args.torrent)
        ip, _, port = args.listen.rpartition(":")
        self.ip, self.port = ip, int(port)
        self.peer_id = b"-ST0001-" + os.urandom(6).hex().encode()[:12]
        self.lock = threading.Lock()
        self.stats = []  # one dict per connection, see `emit("stopped")`
        self.dialled = set()
        self.answered = {}  # remote IP -> REQUESTs answered on all its connections

    def announce(self, event=None):
        """One announce from our own address; returns the compact peers (bytes) or None."""
        url = urllib.parse.urlsplit(self.torrent.announce)
        quote = lambda b: urllib.parse.quote(b, safe="")  # noqa: E731 - every byte as %XX
        query = (f"info_hash={quote(self.torrent.info_hash)}&peer_id={quote(self.peer_id)}"
                 f"&port={self.port}&uploaded=0&downloaded=0&left=0&compact=1&numwant=200")
        if event:
            query += f"&event={event}"
        try:
            conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=5,
                                              source_address=(self.ip, 0))
            conn.request("GET", f"{url.path}?{query}")
            body = conn.getresponse().read()
            conn.close()
        except OSError:
            return None
        marker = body.find(b"5:peers")
        if marker < 0:
            return None
        colon = body.index(b":", marker + 7)
        length = int(body[marker + 7:colon])
        return body[colon + 1:colon + 1 + length]

    def announcer(self):
        first = True
        while True:
            peers = self.announce("started" if first else None)
            if peers is not None and first:
                first = False
                emit("seeding")
            for i in range(0, len(peers or b""), 6):
                ip = socket.inet_ntoa(peers[i:i + 4])
                port = int.from_bytes(peers[i + 4:i + 6], "big")
                with self.lock:
                    connected = any(s["ip"] == ip and s["open"] for s in self.stats)
                if (ip, port) == (self.ip, self.port) or (ip, port) in self.dialled or connected:
                    continue
                self.dialled.add((ip, port))
                threading.Thread(target=self.dial, args=(ip, port), daemon=True).start()
            time.sleep(self.args.reannounce)

    def dial(self, ip, port):
        try:
            sock = socket.create_connection((ip, port), timeout=5, source_address=(self.ip, 0))
        except OSError:
            return
        self.serve(sock, (ip, port), outgoing=True)

    def bind(self):
        """The listening socket, bound before the first announce names its port."""
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((self.ip, self.port))
        server.listen(64)
        return server

    def listen(self, server):
        while True:
            sock, addr = server.accept()
            threading.Thread(target=self.serve, args=(sock, addr, False), daemon=True).start()

    def serve(self, sock, addr, outgoing):
        stat = {"ip": addr[0], "port": addr[1], "outgoing": outgoing, "open": True,
                "requests": 0, "answered": 0, "uploaded": 0}
        with self.lock:
            self.stats.append(stat)
        try:
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with sock, open(self.args.payload, "rb") as payload:
                self.session(sock, payload, stat, outgoing)
        except (OSError, ValueError):
            pass
        stat["open"] = False

    def session(self, sock, payload, stat, outgoing):
        t = self.torrent
        ours = PROTOCOL + bytes(8) + t.info_hash + self.peer_id
        if outgoing:
            sock.sendall(ours)
        theirs = read_exact(sock, 68)
        if theirs[:20] != PROTOCOL or theirs[28:48] != t.info_hash:
            return
        if not outgoing:
            sock.sendall(ours)
        bitfield = t.bitfield()
        sock.sendall(struct.pack(">IB", 1 + len(bitfield), BITFIELD) + bitfield)
        while True:
            (length,) = struct.unpack(">I", read_exact(sock, 4))
            if length == 0:
                continue  # keep-alive
            body = read_exact(sock, length)
            kind = body[0]
            if kind == INTERESTED and self.budget(stat["ip"], 0):
                sock.sendall(struct.pack(">IB", 1, UNCHOKE))
            elif kind == REQUEST and length == 13:
                stat["requests"] += 1
                if not self.budget(stat["ip"], 1):
                    continue  # the stall: read and discarded, never answered
                piece, offset, size = struct.unpack(">III", body[1:])
                start = piece * t.piece_length + offset
                if piece >= t.pieces or size > MAX_BLOCK or start + size > t.length:
                    continue
                payload.seek(start)
                block = payload.read(size)
                sock.sendall(struct.pack(">IBII", 9 + size, PIECE, piece, offset) + block)
                stat["answered"] += 1
                stat["uploaded"] += size


    def budget(self, ip, take):
        """True if `ip` may still be answered; counts `take` more answers to it if so."""
        with self.lock:
            used = self.answered.get(ip, 0)
            if used >= self.args.answer:
                return False
            self.answered[ip] = used + take
            return True


def read_exact(sock, n):
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ValueError("connection closed")
        data += chunk
    return bytes(data)


class Stop(Exception):
    """Raised by the SIGTERM handler to leave the main thread's wait."""


def on_sigterm(_signum, _frame):
    raise Stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torrent", required=True, help="single-file v1 torrent (HTTP tracker)")
    parser.add_argument("--payload", required=True, help="the torrent's file, read for blocks")
    parser.add_argument("--listen", required=True, help="127.0.0.x:port to listen, dial and "
                        "announce from")
    parser.add_argument("--answer", type=int, default=3,
                        help="REQUESTs answered per connection before it stops answering "
                        "(default 3 blocks of the first piece asked)")
    parser.add_argument("--reannounce", type=float, default=2.0,
                        help="seconds between announces (default 2)")
    args = parser.parse_args()
    peer = Peer(args)
    signal.signal(signal.SIGTERM, on_sigterm)
    threading.Thread(target=peer.listen, args=(peer.bind(),), daemon=True).start()
    threading.Thread(target=peer.announcer, daemon=True).start()
    try:
        while True:
            time.sleep(3600)
    except (Stop, KeyboardInterrupt):
        peer.announce("stopped")
        with peer.lock:
            stats = [dict(s) for s in peer.stats]
        emit("stopped", uploaded=sum(s["uploaded"] for s in stats), peers=stats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
