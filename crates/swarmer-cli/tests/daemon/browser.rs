//! The web UI end to end: headless Chromium adds, watches, pauses, resumes, reprioritises and
//! removes torrents in a real `swarmer daemon`, through the page only, and the test checks the
//! result through the API and on disk.
//!
//! Each screen at 1280x800 and 390x844, with the screenshots the README shows, is the child
//! module `screens` (`browser::screens::every_screen_at_two_sizes`).
//!
//! Waits poll the DOM with the test's deadline (the page updates from the daemon's event stream,
//! which the test cannot observe directly); nothing sleeps.
//!
//! Gotchas met on the way:
//! - Headless Chromium (`--headless=new`) sends over a hundred packets for its own services even
//!   with `--disable-background-networking` and friends; the namespace's `OutNoRoutes` check
//!   caught them. `--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.*` stops them, and leaves
//!   loopback addresses alone (a plain `MAP * ~NOTFOUND` also breaks `http://127.0.0.20:PORT/`
//!   with ERR_NAME_NOT_RESOLVED).
//! - `--window-size` counts window decorations in the new headless mode (1280x800 gave an
//!   1280x652 viewport); the viewport is pinned through the DevTools protocol instead.
//! - After SIGTERM with the page connected, Chromium's EventSource reconnects by itself (about
//!   3 s later); against a daemon that now wants a token the stream's 401 closes it for good, and
//!   the page has to notice (`readyState == CLOSED`) and ask for the token.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Instant;

use serde_json::Value;

use crate::harness::{self, Daemon, DaemonOptions};
use crate::netns::{Need, isolated};
use crate::scene::Scene;
use crate::webdriver::Browser;
use crate::{bencode, payload, swarmer, tracker};

/// The swarmer seeder of the first torrent; the daemon learns it from the magnet's `x.pe`.
const SEEDER: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    Ipv4Addr::new(127, 0, 0, 21),
    6881,
));
/// The torrents' tracker: nothing listens there (connection refused at once), so peers come only
/// from the magnet link.
const DEAD_TRACKER: &str = "http://127.0.0.1:1/announce";
/// The restarted daemon's API token.
const TOKEN: &str = "ui7-test-token";
/// The window size the UI is designed for.
const WIDTH: u32 = 1280;
const HEIGHT: u32 = 800;

#[path = "screens.rs"]
mod screens;

#[test]
fn web_ui_end_to_end() {
    isolated("browser::web_ui_end_to_end", &[Need::Chromium], run);
}

fn run(scene: &Scene) {
    // Torrent 1: a multi-file payload (nested directories, 0-byte files, 16 KiB pieces that span
    // files) seeded by `swarmer seed`; the browser adds it by magnet link.
    let seed_dir = scene.subdir("seed");
    let first = payload::multi_file(&seed_dir, "multi", 1);
    let first_torrent = first.make_torrent(&scene.dir.join("multi.torrent"), 14, &[DEAD_TRACKER]);
    let first_hash = info_hash(&first_torrent);
    let _seeder = swarmer::seed_at(scene, "seeder", &first_torrent, &seed_dir, SEEDER);

    // Torrent 2: another payload, already complete in the daemon's download directory; the
    // browser uploads its .torrent, and finally removes it with its data.
    let download_dir = scene.subdir("daemon-download");
    let second = payload::multi_file(&download_dir, "second", 100);
    let second_torrent =
        second.make_torrent(&scene.dir.join("second.torrent"), 14, &[DEAD_TRACKER]);
    let second_hash = info_hash(&second_torrent);

    let options = DaemonOptions {
        download_dir: Some(download_dir.clone()),
        ..DaemonOptions::default()
    };
    let daemon = Daemon::start(scene, options.clone());
    let browser = Browser::start(scene, WIDTH, HEIGHT);
    browser.goto(&format!("{}/", daemon.url()));
    let viewport = browser.execute("return [innerWidth, innerHeight];", &[]);
    assert_eq!(viewport, serde_json::json!([WIDTH, HEIGHT]), "the viewport");
    browser.wait_for(scene.deadline, "the page to show the session totals", |b| {
        let counts = b.text("#session-counts")?;
        counts.starts_with("0 torrents").then_some(())
    });
    scene.mark("the page loaded and shows the session");

    // Add by magnet; the row appears from the POST's answer, and only the event stream can move
    // it on to 100%.
    let link = harness::magnet(&first_hash, "multi", &[SEEDER]);
    browser.click("#add-open");
    browser.type_into("#magnet-input", &link);
    let added = Instant::now();
    browser.click("#add-submit");
    let row1 = row(&first_hash);
    browser.wait_for(scene.deadline, "the magnet's row", |b| {
        b.find(&row1).map(|_| ())
    });
    browser.wait_for(scene.deadline, "the magnet's row at 100%", |b| {
        (b.text(&format!("{row1} [data-testid=torrent-percent]"))? == "100%").then_some(())
    });
    let state = browser.wait_for(scene.deadline, "the magnet's torrent to finish", |b| {
        let state = row_state(b, &row1)?;
        ["seeding", "complete"]
            .contains(&state.as_str())
            .then_some(state)
    });
    scene.mark(&format!(
        "the page shows the magnet's torrent at 100% ({state}) {:.2}s after adding it",
        added.elapsed().as_secs_f64()
    ));
    first.assert_same(&download_dir.join("multi"));
    scene.mark("every downloaded file is byte-identical");

    // The API's errors reach the add dialog, which stays open, and nothing is added.
    browser.wait_for(scene.deadline, "the add dialog to close", |b| {
        (!b.visible("#add-dialog[open]")).then_some(())
    });
    browser.click("#add-open");
    browser.type_into("#magnet-input", &link);
    browser.click("#add-submit");
    let duplicate = wait_error(&browser, scene);
    browser.clear("#magnet-input");
    browser.type_into("#magnet-input", "magnet:?xt=urn:btih:not-a-hash");
    browser.click("#add-submit");
    browser.wait_for(scene.deadline, "a new error for the bad magnet", |b| {
        let error = b.text("#add-error")?;
        (b.visible("#add-error") && error != duplicate).then_some(())
    });
    scene.mark(&format!(
        "the add dialog shows the API's errors: {duplicate:?}, then {:?}",
        browser.text("#add-error").unwrap_or_default()
    ));
    assert_eq!(row_count(&browser), 1, "a refused torrent was listed");
    browser.clear("#magnet-input");

    // Add by uploading the .torrent through the file input.
    browser.type_into("#file-input", &second_torrent.display().to_string());
    browser.click("#add-submit");
    let row2 = row(&second_hash);
    browser.wait_for(scene.deadline, "the uploaded torrent's row", |b| {
        b.find(&row2).map(|_| ())
    });
    let id2: u64 = browser
        .execute(
            "return document.querySelector(arguments[0]).dataset.id;",
            &[Value::from(row2.clone())],
        )
        .as_str()
        .and_then(|id| id.parse().ok())
        .expect("the row's data-id");
    assert!(
        !browser.visible("#add-dialog[open]"),
        "the add dialog stays open"
    );
    assert!(!browser.visible("#error"), "an error after a good upload");
    browser.wait_for(
        scene.deadline,
        "the uploaded torrent to check its data",
        |b| {
            let state = row_state(b, &row2)?;
            ["seeding", "complete"]
                .contains(&state.as_str())
                .then_some(())
        },
    );
    scene.mark("the uploaded torrent found its data complete");

    // Pause and resume through the buttons.
    browser.click(&format!("{row2} [data-testid=pause]"));
    browser.wait_for(scene.deadline, "the state column to say paused", |b| {
        let text = b.text(&format!("{row2} [data-testid=torrent-state]"))?;
        (text == "paused").then_some(())
    });
    assert_eq!(daemon.torrent(id2)["state"], "paused");
    browser.click(&format!("{row2} [data-testid=resume]"));
    let resumed = browser.wait_for(scene.deadline, "the state column to leave paused", |b| {
        let text = b.text(&format!("{row2} [data-testid=torrent-state]"))?;
        (text != "paused").then_some(text)
    });
    assert_ne!(daemon.torrent(id2)["state"], "paused");
    scene.mark(&format!("paused, then resumed ({resumed})"));

    // Open the detail panel on its files tab and skip one file.
    browser.click(&format!("{row2} [data-testid=torrent-name]"));
    browser.click("#tab-files");
    let files = daemon.torrent(id2)["files"]
        .as_array()
        .cloned()
        .expect("the detail's files");
    assert_eq!(files.len(), second.files.len());
    browser.wait_for(scene.deadline, "the detail panel's file list", |b| {
        let shown = b
            .execute(
                "return document.querySelectorAll('#file-rows select[data-index]').length;",
                &[],
            )
            .as_u64()?;
        (b.visible("#detail") && shown == files.len() as u64).then_some(())
    });
    let skipped = files
        .iter()
        .find(|f| {
            f["path"]
                .as_str()
                .is_some_and(|p| p.ends_with("dir3/d.bin"))
        })
        .unwrap_or_else(|| panic!("no dir3/d.bin among {files:?}"))["index"]
        .as_u64()
        .expect("file index");
    browser.click(&format!(
        "#file-rows select[data-index=\"{skipped}\"] option[value=skip]"
    ));
    scene
        .deadline
        .poll("the API to report the skipped file", POLL, || {
            let detail = daemon.torrent(id2);
            let files = detail["files"].as_array()?;
            let priorities: Vec<&str> = files
                .iter()
                .filter_map(|f| f["priority"].as_str())
                .collect();
            let want = |f: &Value| {
                if f["index"] == skipped {
                    "skip"
                } else {
                    "normal"
                }
            };
            files
                .iter()
                .zip(&priorities)
                .all(|(f, p)| want(f) == *p)
                .then_some(())
        });
    browser.wait_for(
        scene.deadline,
        "the select to show the saved priority",
        |b| {
            let saved = b.execute(
                "return document.querySelector(arguments[0]).dataset.priority;",
                &[Value::from(format!(
                    "#file-rows select[data-index=\"{skipped}\"]"
                ))],
            );
            (saved == "skip").then_some(())
        },
    );
    scene.mark("set a file to skip from the detail panel; the API reports it");

    // Remove with its data, through the confirmation dialog.
    let data = download_dir.join("second");
    assert!(
        data.exists(),
        "the second torrent's data is missing before removal"
    );
    browser.click(&format!("{row2} [data-testid=remove]"));
    browser.wait_for(scene.deadline, "the remove dialog", |b| {
        b.visible("#remove-dialog[open]").then_some(())
    });
    browser.click("#remove-delete-data");
    browser.click("#remove-confirm");
    browser.wait_for(scene.deadline, "the removed row to go", |b| {
        b.find(&row2).is_none().then_some(())
    });
    assert!(
        !browser.visible("#detail"),
        "the removed torrent's detail stays open"
    );
    assert!(
        daemon
            .torrents()
            .iter()
            .all(|t| t["info_hash"] != second_hash.as_str()),
        "the API still lists the removed torrent"
    );
    scene
        .deadline
        .poll("the removed torrent's data to be deleted", POLL, || {
            (!any_file_under(&data)).then_some(())
        });
    first.assert_same(&download_dir.join("multi"));
    scene.mark("removed with its data; the other torrent's files are untouched");

    assert!(!browser.visible("#error"), "an error is shown");

    let errors: Vec<String> = browser
        .console_errors()
        .into_iter()
        .filter(|m| !m.contains("Failed to load resource"))
        .collect();
    assert!(errors.is_empty(), "the page logged errors: {errors:#?}");

    // Stopping the daemon while the page holds its event stream must still end it promptly; the
    // page notices. A daemon back on the same address with its state, now with a token, answers
    // the page's reconnection with 401: the page asks for the token, logs in (a cookie), and
    // shows the torrents again, all without a reload.
    let http_port = daemon.http_port();
    let state_dir = daemon.state_dir.clone();
    daemon.stop();
    scene.mark("the daemon exited 0 on SIGTERM with the page connected");
    browser.wait_for(
        scene.deadline,
        "the page to notice the lost connection",
        |b| b.visible("#connection").then_some(()),
    );
    let restarted = Daemon::start(
        scene,
        DaemonOptions {
            name: "daemon-restarted".to_owned(),
            state_dir: Some(state_dir),
            http_port,
            token: Some(TOKEN.to_owned()),
            ..options
        },
    );
    browser.wait_for(scene.deadline, "the page to ask for the token", |b| {
        b.visible("#login").then_some(())
    });
    browser.type_into("#token-input", TOKEN);
    browser.click("#login-submit");
    browser.wait_for(
        scene.deadline,
        "the page to reconnect after logging in",
        |b| {
            let shown = !b.visible("#login") && !b.visible("#connection");
            (shown && b.text(&format!("{row1} [data-testid=torrent-percent]"))? == "100%")
                .then_some(())
        },
    );
    assert_eq!(row_count(&browser), 1);
    assert!(
        !browser.visible("#error"),
        "an error is shown after logging in"
    );
    scene.mark("the page logged in to the restarted daemon and shows its torrent");
    drop(browser);
    restarted.stop();
}

/// How often state outside the page (the API, the disk) is polled.
const POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// The hex info hash of a .torrent file.
fn info_hash(torrent: &Path) -> String {
    tracker::hex(&bencode::info_hash(
        &std::fs::read(torrent).expect("read torrent"),
    ))
}

/// The CSS selector of a torrent's row.
fn row(info_hash: &str) -> String {
    format!("tr[data-testid=torrent-row][data-info-hash=\"{info_hash}\"]")
}

/// The state the row shows (its `data-state`, the API's name).
fn row_state(browser: &Browser, row: &str) -> Option<String> {
    browser
        .execute(
            "const r = document.querySelector(arguments[0]); return r ? r.dataset.state : null;",
            &[Value::from(row)],
        )
        .as_str()
        .map(str::to_owned)
}

fn row_count(browser: &Browser) -> u64 {
    browser
        .execute(
            "return document.querySelectorAll('tr[data-testid=torrent-row]').length;",
            &[],
        )
        .as_u64()
        .expect("a count")
}

/// Waits until the add dialog shows an error, and returns it.
fn wait_error(browser: &Browser, scene: &Scene) -> String {
    browser.wait_for(scene.deadline, "an error message", |b| {
        let error = b.text("#add-error")?;
        (b.visible("#add-error") && !error.is_empty()).then_some(error)
    })
}

/// Whether `dir` (or the file `dir`) holds any regular file.
fn any_file_under(dir: &Path) -> bool {
    if dir.is_file() {
        return true;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries
        .filter_map(Result::ok)
        .any(|e| any_file_under(&e.path()))
}
