//! Every screen of the web UI at a desktop's 1280x800 and a phone's 390x844, in headless
//! Chromium against a daemon with three torrents (one downloading slowly from a real seeder, one
//! complete, one paused magnet link): the list, the details panel with each tab, settings and
//! the add dialog. It checks what each screen shows, that nothing overflows the phone's width,
//! and drives sorting, filtering, searching, the tabs' keys, Escape and a settings change.
//!
//! Each screen becomes `<scene>/ui/NAME-desktop.png` and `NAME-phone.png`, and also
//! `docs/ui/` when `SWARMER_UPDATE_SCREENSHOT=1` (the README shows those).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::harness::{self, Daemon, DaemonOptions, expect_json};
use crate::netns::{Need, isolated};
use crate::payload::{self, Payload};
use crate::scene::Scene;
use crate::webdriver::Browser;
use crate::{bencode, tracker};

/// The seeder of the downloading torrent.
const SEEDER: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 22), 6881));
/// Trackers where nothing listens: the trackers tab shows their errors.
const TRACKERS: [&str; 2] = ["http://127.0.0.1:1/announce", "udp://127.0.0.1:1/announce"];
/// The downloading torrent's own limit, bytes/s: slow enough to be downloading, with its peer
/// connected, through every screenshot.
const SLOW: u64 = 96 << 10;
/// Where `SWARMER_UPDATE_SCREENSHOT=1` copies the screenshots.
const DOCS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/ui");
/// The largest screenshot kept, bytes (the README loads them all).
const MAX_PNG: usize = 150_000;

#[test]
fn every_screen_at_two_sizes() {
    isolated(
        "browser::screens::every_screen_at_two_sizes",
        &[Need::Chromium],
        run,
    );
}

fn run(scene: &Scene) {
    let download_dir = scene.subdir("daemon-download");
    let daemon = Daemon::start(
        scene,
        DaemonOptions {
            download_dir: Some(download_dir.clone()),
            ..DaemonOptions::default()
        },
    );

    // A complete torrent in the "linux" category, and a paused magnet link in it too.
    let iso = payload::single_file(&download_dir, "debian-13.2.0-amd64-netinst.iso", 3 << 20, 5);
    let iso_torrent = iso.make_torrent(&scene.dir.join("iso.torrent"), 14, &TRACKERS[..1]);
    let form = reqwest::blocking::multipart::Form::new()
        .part(
            "torrent",
            reqwest::blocking::multipart::Part::bytes(std::fs::read(&iso_torrent).expect("read"))
                .file_name("iso.torrent"),
        )
        .text("category", "linux");
    let iso_id = id(&expect_json(
        daemon.post_multipart("/api/v1/torrents", form),
        201,
        "POST",
        "the iso",
    ));
    let parked = harness::magnet(
        "0123456789abcdef0123456789abcdef01234567",
        "ubuntu-24.04.1-desktop-amd64.iso",
        &[],
    );
    expect_json(
        daemon.post_json(
            "/api/v1/torrents",
            &json!({ "magnet": parked, "paused": true, "category": "linux" }),
        ),
        201,
        "POST",
        "the paused magnet",
    );

    // A film with subtitles and a poster, downloading slowly from a seeder.
    let seed_dir = scene.subdir("seed");
    let film = film(&seed_dir);
    let film_torrent = film.make_torrent(&scene.dir.join("film.torrent"), 14, &TRACKERS);
    let _seeder = crate::swarmer::seed_at(scene, "seeder", &film_torrent, &seed_dir, SEEDER);
    let film_hash = tracker::hex(&bencode::info_hash(
        &std::fs::read(&film_torrent).expect("read"),
    ));
    let tr: String = TRACKERS
        .iter()
        .map(|t| format!("&tr={}", encode(t)))
        .collect();
    let link = format!(
        "{}{tr}",
        harness::magnet(&film_hash, "Big Buck Bunny (2008)", &[SEEDER])
    );
    let film_id = id(&expect_json(
        daemon.post_json(
            "/api/v1/torrents",
            &json!({ "magnet": link, "category": "movies" }),
        ),
        201,
        "POST",
        "the film",
    ));
    let limits = format!("/api/v1/torrents/{film_id}/limits");
    expect_json(
        daemon.put_json(&limits, &json!({ "max_download_rate": SLOW })),
        200,
        "PUT",
        &limits,
    );
    scene
        .deadline
        .poll("the film to download", crate::api::POLL, || {
            let t = daemon.torrent(film_id);
            (t["state"] == "downloading" && t["download_rate"].as_u64()? > 0).then_some(())
        });
    scene
        .deadline
        .poll("the iso to seed", crate::api::POLL, || {
            (daemon.torrent(iso_id)["state"] == "seeding").then_some(())
        });
    scene.mark("three torrents: downloading, seeding, paused");

    let shots = scene.subdir("ui");
    let browser = Browser::start(scene, 1280, 800);
    browser.goto(&format!("{}/", daemon.url()));
    browser.wait_for(scene.deadline, "three rows", |b| {
        (rows(b).len() == 3).then_some(())
    });
    interact(scene, &browser, &daemon, film_id);
    for (size, width, height) in [("desktop", 1280, 800), ("phone", 390, 844)] {
        browser.set_viewport(width, height);
        let shot = |name: &str| save(scene, &browser, &shots, &format!("{name}-{size}"), width);
        every_screen(scene, &browser, film_id, shot);
    }
    let errors: Vec<String> = browser
        .console_errors()
        .into_iter()
        .filter(|m| !m.contains("Failed to load resource"))
        .collect();
    assert!(errors.is_empty(), "the page logged errors: {errors:#?}");
    assert_eq!(
        daemon.torrent(film_id)["state"],
        "downloading",
        "the film finished before the screenshots did: raise its size"
    );
}

/// The film: an .mp4 (so the files tab offers to play it), subtitles and a poster.
fn film(parent: &Path) -> Payload {
    let root = parent.join("Big Buck Bunny (2008)");
    let files: Vec<(PathBuf, u64)> = vec![
        ("Big Buck Bunny.mp4".into(), 24 << 20),
        ("Big Buck Bunny.en.srt".into(), 48 << 10),
        ("poster.jpg".into(), 300 << 10),
    ];
    for (i, (path, len)) in files.iter().enumerate() {
        payload::write_file(&root.join(path), *len, 90 + i as u64);
    }
    Payload { root, files }
}

/// Sorting, filters, search, the tabs' arrow keys, Escape and saving a setting, at 1280x800.
fn interact(scene: &Scene, browser: &Browser, daemon: &Daemon, film_id: u64) {
    // Sort by name, then the other way.
    browser.click("#torrents th[data-sort=name] button");
    let names = rows(browser);
    let mut sorted = names.clone();
    sorted.sort_by_key(|n| n.to_lowercase());
    assert_eq!(names, sorted, "sorted by name");
    browser.click("#torrents th[data-sort=name] button");
    sorted.reverse();
    assert_eq!(rows(browser), sorted, "sorted by name, descending");
    // Filter by state and category, and search.
    browser.click("#state-filter option[value=paused]");
    assert_eq!(rows(browser), ["ubuntu-24.04.1-desktop-amd64.iso"]);
    browser.click("#state-filter option[value='']");
    browser.click("#category-filter option[value=linux]");
    assert_eq!(rows(browser).len(), 2, "the linux category");
    browser.click("#category-filter option[value='']");
    browser.type_into("#search", "bunny");
    assert_eq!(rows(browser), ["Big Buck Bunny (2008)"]);
    browser.clear("#search");
    browser.execute(
        "document.getElementById('search').dispatchEvent(new Event('input'));",
        &[],
    );
    // A third click goes back to the order of adding.
    browser.click("#torrents th[data-sort=name] button");
    assert_eq!(rows(browser).len(), 3);
    let order = browser.execute("return location.hash;", &[]);
    assert_eq!(order, "", "the view is the default one again");
    scene.mark("sorted, filtered by state and category, searched");

    // The overview sets the category (a new one is created).
    open_details(browser, film_id);
    browser.click("#tab-overview");
    browser.wait_for(scene.deadline, "the overview", |b| {
        (b.execute(
            "return document.getElementById('detail-category').value;",
            &[],
        ) == "movies")
            .then_some(())
    });
    browser.replace_text("#detail-category", "films");
    browser.click("#category-save");
    scene
        .deadline
        .poll("the category to change", crate::api::POLL, || {
            (daemon.torrent(film_id)["category"] == "films").then_some(())
        });
    browser.wait_for(scene.deadline, "the row's category", |b| {
        let tags = b.text(&format!(
            "tr[data-id=\"{film_id}\"] [data-testid=torrent-tags]"
        ))?;
        (tags == "films").then_some(())
    });
    scene.mark("set the category from the overview");

    // A .torrent dropped on the page opens the add dialog with it chosen; Add adds it.
    let dropped = payload::single_file(&scene.subdir("dropped"), "dropped.bin", 20_000, 3);
    let torrent = dropped.make_torrent(&scene.dir.join("dropped.torrent"), 14, &TRACKERS[..1]);
    let bytes: Vec<Value> = std::fs::read(&torrent)
        .expect("read")
        .into_iter()
        .map(Value::from)
        .collect();
    browser.execute(
        "const dt = new DataTransfer(); \
         dt.items.add(new File([new Uint8Array(arguments[0])], 'dropped.torrent')); \
         for (const type of ['dragover', 'drop']) \
           document.querySelector('main').dispatchEvent(new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer: dt }));",
        &[Value::from(bytes)],
    );
    browser.wait_for(
        scene.deadline,
        "the add dialog with the dropped file",
        |b| {
            let name = b.execute(
                "return document.getElementById('file-input').files[0]?.name;",
                &[],
            );
            (b.visible("#add-dialog[open]") && name == "dropped.torrent").then_some(())
        },
    );
    browser.click("#add-submit");
    let id = browser.wait_for(scene.deadline, "the dropped torrent's row", |b| {
        let names = rows(b);
        names.iter().any(|n| n == "dropped.bin").then_some(())?;
        daemon
            .torrents()
            .iter()
            .find(|t| t["name"] == "dropped.bin")
            .map(id)
    });
    let removed = daemon.delete(&format!("/api/v1/torrents/{id}"));
    assert_eq!(removed.status().as_u16(), 204);
    browser.wait_for(scene.deadline, "the dropped torrent to go", |b| {
        (rows(b).len() == 3).then_some(())
    });
    scene.mark("a dropped .torrent was added through the add dialog");

    // Keyboard: the tabs follow the arrow keys; Escape closes the panel and gives focus back.
    browser.execute("document.getElementById('tab-overview').focus();", &[]);
    browser.type_into("#tab-overview", "\u{E014}"); // ArrowRight
    browser.wait_for(scene.deadline, "the files tab", |b| {
        let focused = b.execute("return document.activeElement.id;", &[]);
        (focused == "tab-files" && !b.visible("#pane-overview")).then_some(())
    });
    browser.type_into("#tab-files", "\u{E00C}"); // Escape
    browser.wait_for(scene.deadline, "Escape to close the panel", |b| {
        (!b.visible("#detail")).then_some(())
    });
    let focused = browser.execute("return document.activeElement.dataset.testid;", &[]);
    assert_eq!(focused, "torrent-name", "focus went back to the row");
    scene.mark("arrow keys move between tabs; Escape closes the panel");

    // Settings: a download limit typed in KiB/s reaches the API in bytes/s.
    browser.click("#settings-open");
    browser.wait_for(scene.deadline, "the settings dialog", |b| {
        b.visible("#settings-dialog[open]").then_some(())
    });
    browser.clear("#set-down");
    browser.type_into("#set-down", "4096");
    browser.click("#settings-save");
    browser.wait_for(scene.deadline, "the dialog to close", |b| {
        (!b.visible("#settings-dialog[open]")).then_some(())
    });
    assert_eq!(
        daemon.get_json("/api/v1/settings")["max_download_rate"],
        4096 * 1024
    );
    scene.mark("saved a session download limit from the settings dialog");
}

/// The list, the details panel on each tab, settings and the add dialog, each checked and
/// saved through `shot`.
fn every_screen(scene: &Scene, browser: &Browser, film_id: u64, shot: impl Fn(&str)) {
    browser.wait_for(scene.deadline, "the list", |b| {
        (rows(b).len() == 3 && b.text("#session-counts")?.starts_with("3 torrents")).then_some(())
    });
    shot("list");

    open_details(browser, film_id);
    for tab in ["overview", "files", "peers", "trackers", "pieces"] {
        browser.click(&format!("#tab-{tab}"));
        let ready = match tab {
            "overview" => "#detail-hash:not(:empty)",
            "files" => "#file-rows [data-testid=file-stream]",
            "peers" => "#peer-rows [data-testid=peer-row]",
            "trackers" => "#tracker-rows [data-testid=tracker-row] .row-error",
            _ => "#pieces-summary:not(:empty)",
        };
        browser.wait_for(scene.deadline, &format!("the {tab} tab"), |b| {
            (b.visible(ready) && b.visible(&format!("#pane-{tab}"))).then_some(())
        });
        match tab {
            "files" => {
                let href = browser.execute(
                    "return document.querySelector('[data-testid=file-stream]').getAttribute('href');",
                    &[],
                );
                assert_eq!(href, format!("/api/v1/torrents/{film_id}/files/0/stream"));
            }
            "peers" => {
                let text = browser.text("#peer-rows").unwrap_or_default();
                assert!(
                    text.contains(&SEEDER.to_string()) && text.contains('D'),
                    "{text}"
                );
            }
            _ => {}
        }
        shot(&format!("details-{tab}"));
    }
    browser.click("#detail-close");
    browser.wait_for(scene.deadline, "the panel to close", |b| {
        (!b.visible("#detail")).then_some(())
    });

    browser.click("#settings-open");
    browser.wait_for(scene.deadline, "the settings dialog", |b| {
        (b.visible("#settings-dialog[open]")
            && b.execute("return document.getElementById('set-port').value;", &[]) != "")
            .then_some(())
    });
    shot("settings");
    browser.click("#settings-cancel");

    browser.click("#add-open");
    browser.wait_for(scene.deadline, "the add dialog", |b| {
        b.visible("#add-dialog[open]").then_some(())
    });
    browser.clear("#magnet-input");
    browser.type_into(
        "#magnet-input",
        "magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567&dn=example",
    );
    browser.clear("#add-category");
    browser.type_into("#add-category", "linux");
    shot("add");
    browser.click("#add-cancel");
    browser.wait_for(scene.deadline, "the add dialog to close", |b| {
        (!b.visible("#add-dialog[open]")).then_some(())
    });
}

/// Opens the details panel of torrent `id` from its row.
fn open_details(browser: &Browser, id: u64) {
    browser.click(&format!("tr[data-id=\"{id}\"] [data-testid=torrent-name]"));
}

/// The names of the rows shown, top to bottom.
fn rows(browser: &Browser) -> Vec<String> {
    let names = browser.execute(
        "return [...document.querySelectorAll('tr[data-testid=torrent-row]')] \
         .filter((r) => !r.hidden).map((r) => r.querySelector('[data-testid=torrent-name]').textContent);",
        &[],
    );
    serde_json::from_value(names).expect("a list of names")
}

/// Checks the page fits `width` (nothing wider than the viewport), takes a PNG of it, checks
/// its size, and saves it as `<dir>/NAME.png` (and in docs/ui/ when asked).
fn save(scene: &Scene, browser: &Browser, dir: &Path, name: &str, width: u32) {
    let overflow = browser.execute(
        "const w = document.documentElement.clientWidth; \
         const bad = []; \
         if (document.documentElement.scrollWidth > w) bad.push(`the page is ${document.documentElement.scrollWidth}px wide`); \
         for (const e of document.querySelectorAll('button, input, select, a, progress, canvas, td')) { \
           if (e.getClientRects().length === 0 || e.closest('.visually-hidden')) continue; \
           const r = e.getBoundingClientRect(); \
           if (r.right > w + 1 || r.left < -1) bad.push(`${e.tagName}#${e.id}.${e.className}: ${r.left}..${r.right}`); \
         } \
         return bad.slice(0, 5);",
        &[],
    );
    assert_eq!(
        overflow,
        json!([]),
        "{name}: parts outside the {width}px viewport"
    );
    let png = browser.screenshot();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{name} is not a PNG");
    let shot_width = u32::from_be_bytes(png[16..20].try_into().expect("4 bytes"));
    assert_eq!(shot_width, width, "{name}'s width");
    assert!(
        png.len() > 8_000,
        "{name}: a {}-byte screenshot is nearly blank",
        png.len()
    );
    assert!(
        png.len() < MAX_PNG,
        "{name}: {} bytes is too large for the docs",
        png.len()
    );
    std::fs::write(dir.join(format!("{name}.png")), &png).expect("write the screenshot");
    if std::env::var("SWARMER_UPDATE_SCREENSHOT").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(DOCS).expect("create docs/ui");
        std::fs::write(Path::new(DOCS).join(format!("{name}.png")), &png).expect("write docs/ui");
    }
    scene.mark(&format!("{name}: {} bytes", png.len()));
}

/// The JSON id of an added torrent.
fn id(torrent: &Value) -> u64 {
    torrent["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("no id in {torrent}"))
}

/// Percent-encodes a tracker URL for a magnet link's `tr`.
fn encode(url: &str) -> String {
    url.replace(':', "%3A").replace('/', "%2F")
}
