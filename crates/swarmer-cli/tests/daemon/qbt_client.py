#!/usr/bin/env python3
"""An *arr-style client of the daemon's qBittorrent API, through the real `qbittorrent-api` package
(the library Sonarr-like Python tools use). Run by tests/daemon/qbt.rs in the test's network
namespace; every step asserts, so any difference from qBittorrent's behaviour exits non-zero.

Usage: qbt_client.py URL USERNAME PASSWORD TORRENT PAYLOAD_DIR SAVE_DIR MOVE_DIR MAGNET TIMEOUT_S
"""

import filecmp
import os
import sys
import time

import qbittorrentapi
import requests

(URL, USER, PASSWORD, TORRENT, PAYLOAD, SAVE_DIR, MOVE_DIR, MAGNET, TIMEOUT) = sys.argv[1:]
DEADLINE = time.monotonic() + float(TIMEOUT)


def step(text):
    print(f"step: {text}", flush=True)


def wait(what, probe, interval=0.2):
    """Polls `probe` until it returns a truthy value, bounded by the test's deadline."""
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > DEADLINE:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def differences(a, b):
    """Files under `a` that are not under `b` with the same bytes."""
    out = []
    for root, _dirs, files in os.walk(a):
        for name in files:
            left = os.path.join(root, name)
            right = os.path.join(b, os.path.relpath(left, a))
            if not os.path.isfile(right) or not filecmp.cmp(left, right, shallow=False):
                out.append(right)
    return out


def same_tree(a, b):
    """Every file under `a` is under `b` with the same bytes."""
    diff = differences(a, b)
    assert not diff, f"these differ from {a}: {diff}"


step("a request without a login is refused, a wrong password fails")
assert requests.get(f"{URL}/api/v2/torrents/info", timeout=10).status_code == 403
bad = qbittorrentapi.Client(host=URL, username=USER, password="wrong", REQUESTS_ARGS={"timeout": 10})
try:
    bad.auth_log_in()
    raise AssertionError("a wrong password logged in")
except qbittorrentapi.LoginFailed:
    pass
cross = requests.post(
    f"{URL}/api/v2/auth/login",
    data={"username": USER, "password": PASSWORD},
    headers={"Origin": "http://evil.example"},
    timeout=10,
)
assert cross.status_code == 401, f"a cross-site login answered {cross.status_code}"

step("login")
qbt = qbittorrentapi.Client(host=URL, username=USER, password=PASSWORD, REQUESTS_ARGS={"timeout": 30})
qbt.auth_log_in()
assert qbt.app.version.startswith("v5"), qbt.app.version
assert qbt.app.web_api_version == "2.11.2", qbt.app.web_api_version
prefs = qbt.app.preferences
assert prefs["save_path"], prefs

step("a category with a save path, and adds: a .torrent and a magnet link, paused, tagged")
qbt.torrents_create_category(name="tv", save_path=os.path.join(SAVE_DIR, "tv"))
assert qbt.torrents_categories()["tv"]["savePath"] == os.path.join(SAVE_DIR, "tv")
shows = os.path.join(SAVE_DIR, "shows")
with open(TORRENT, "rb") as f:
    answer = qbt.torrents_add(
        torrent_files=f, category="tv", tags="sonarr,hd", save_path=shows, is_paused=True
    )
assert answer == "Ok.", answer
answer = qbt.torrents_add(urls=MAGNET, category="tv", tags="sonarr", is_paused=True)
assert answer == "Ok.", answer
with open(TORRENT, "rb") as f:
    assert qbt.torrents_add(torrent_files=f) == "Fails.", "a duplicate is a failure"
try:
    qbt.torrents_set_category(category="no-such-category", torrent_hashes="all")
    raise AssertionError("an unknown category was set")
except qbittorrentapi.Conflict409Error:
    pass
try:
    other = MAGNET.replace("b1&", "b2&")
    assert other != MAGNET
    qbt.torrents_add(urls=other, save_path="/etc")
    raise AssertionError("a save path outside the download roots was accepted")
except qbittorrentapi.Forbidden403Error:
    pass

step("list by category and tag")
listed = qbt.torrents_info(category="tv")
assert len(listed) == 2, listed
for t in listed:
    assert t.state in ("stoppedDL", "pausedDL"), t.state
    assert t.category == "tv"
hd = qbt.torrents_info(tag="hd")
assert len(hd) == 1, hd
target = hd[0]
assert target.save_path == shows, target.save_path
assert set(target.tags.split(", ")) == {"sonarr", "hd"}, target.tags
assert sorted(qbt.torrents_tags()) == ["hd", "sonarr"]
assert len(qbt.torrents_info(status_filter="stopped", sort="name", limit=1, offset=1)) == 1

step("sync/maindata: a full update, then an empty diff")
full = qbt.sync_maindata(rid=0)
assert full["full_update"] is True and target.hash in full["torrents"], full
rid = full["rid"]
empty = qbt.sync_maindata(rid=rid)
assert "full_update" not in empty or not empty["full_update"], empty
assert target.hash not in empty.get("torrents", {}), empty

step("start the download and watch it reach 100 %")
qbt.torrents_start(torrent_hashes=target.hash)
done = wait(
    "the download to finish",
    lambda: next(
        (t for t in qbt.torrents_info(torrent_hashes=target.hash) if t.progress == 1.0 and t.state in ("uploading", "stalledUP")),
        None,
    ),
)
name = done.name
same_tree(PAYLOAD, os.path.join(shows, name))
step(f"downloaded {done.size} bytes, byte-identical")

step("sync/maindata diff carries the changes only")
diff = qbt.sync_maindata(rid=rid)
assert not diff.get("full_update"), diff
changes = diff["torrents"][target.hash]
assert changes["progress"] == 1.0, changes
assert "name" not in changes, f"an unchanged field was sent: {changes}"
assert "server_state" in diff

step("files, trackers, properties, piece states")
files = qbt.torrents_files(torrent_hash=target.hash)
assert len(files) >= 2, files
for f in files:
    assert f.progress == 1.0 and f.priority == 1, f
props = qbt.torrents_properties(torrent_hash=target.hash)
assert props.save_path == shows and props.pieces_have == props.pieces_num > 0, props
assert props.total_size == done.total_size
trackers = qbt.torrents_trackers(torrent_hash=target.hash)
assert any(t.status == 2 for t in trackers), trackers
states = qbt.torrents_piece_states(torrent_hash=target.hash)
assert len(states) == props.pieces_num and set(states) == {2}, states
assert len(qbt.torrents_piece_hashes(torrent_hash=target.hash)) == props.pieces_num

step("file priority")
qbt.torrents_file_priority(torrent_hash=target.hash, file_ids=0, priority=0)
assert qbt.torrents_files(torrent_hash=target.hash)[0].priority == 0
qbt.torrents_file_priority(torrent_hash=target.hash, file_ids=0, priority=1)
assert qbt.torrents_files(torrent_hash=target.hash)[0].priority == 1
try:
    qbt.torrents_file_priority(torrent_hash=target.hash, file_ids=0, priority=3)
    raise AssertionError("priority 3 was accepted")
except qbittorrentapi.InvalidRequest400Error:
    pass

step("reannounce a running torrent; a stopped one cannot, and says so")
qbt.torrents_reannounce(torrent_hashes=target.hash)
stopped = [t.hash for t in qbt.torrents_info(status_filter="stopped")]
assert stopped, "the magnet link is stopped"
try:
    qbt.torrents_reannounce(torrent_hashes=stopped[0])
    raise AssertionError("reannounce of a stopped torrent claimed success")
except qbittorrentapi.Conflict409Error:
    pass

step("things swarmer cannot do are errors, not silent successes")
try:
    qbt.torrents_rename_file(torrent_hash=target.hash, file_id=0, new_file_name="x")
    raise AssertionError("renameFile claimed success")
except qbittorrentapi.Conflict409Error:
    pass

step("setLocation moves the data")
qbt.torrents_set_location(location=MOVE_DIR, torrent_hashes=target.hash)
assert not os.path.exists(os.path.join(shows, name)), "the old copy is gone"
same_tree(PAYLOAD, os.path.join(MOVE_DIR, name))
moved = qbt.torrents_info(torrent_hashes=target.hash)[0]
assert moved.save_path == MOVE_DIR, moved.save_path
wait(
    "the moved torrent to seed again",
    lambda: qbt.torrents_info(torrent_hashes=target.hash)[0].state in ("uploading", "stalledUP"),
)

step("recheck finds a damaged piece, which is downloaded again")
biggest = max(
    (os.path.join(r, f) for r, _d, fs in os.walk(os.path.join(MOVE_DIR, name)) for f in fs),
    key=os.path.getsize,
)
with open(biggest, "r+b") as f:
    f.seek(os.path.getsize(biggest) // 2)
    byte = f.read(1)
    f.seek(-1, os.SEEK_CUR)
    f.write(bytes([byte[0] ^ 0xFF]))
assert differences(PAYLOAD, os.path.join(MOVE_DIR, name)), "the damage is on disk"
qbt.torrents_recheck(torrent_hashes=target.hash)
# Only a re-check notices the damage; the piece then comes from the seeder again.
wait(
    "the damaged piece to be found and fetched again",
    lambda: not differences(PAYLOAD, os.path.join(MOVE_DIR, name)),
)
wait(
    "the re-checked torrent to seed",
    lambda: (lambda t: t.progress == 1.0 and t.state in ("uploading", "stalledUP"))(
        qbt.torrents_info(torrent_hashes=target.hash)[0]
    ),
)

step("delete with files")
qbt.torrents_delete(delete_files=True, torrent_hashes=target.hash)
assert not os.path.exists(os.path.join(MOVE_DIR, name)), "the data is deleted"
remaining = qbt.torrents_info()
assert len(remaining) == 1 and remaining[0].hash != target.hash, remaining
assert qbt.transfer_info()["connection_status"] == "connected"
log = qbt.log_main()
assert any("added a torrent" in entry.message for entry in log), log[-5:]
assert all(entry.type in (1, 2, 4, 8) for entry in log)
last = log[-1].id
assert all(entry.id > last for entry in qbt.log_main(last_known_id=last)), "only newer entries"
assert all(entry.type == 4 for entry in qbt.log_main(normal=False, info=False, critical=False))
qbt.auth_log_out()
print("OK", flush=True)
