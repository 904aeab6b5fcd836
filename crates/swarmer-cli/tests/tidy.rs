//! Tidy checks over every crate's `src/` (as rust-analyzer's tidy test does): each file opens with a
//! `//!` line saying what it owns, no file holds more than [`MAX_CODE_LINES`] lines of non-test code,
//! and no two files import each other, directly or round a ring. They keep the shape ARCHITECTURE.md
//! describes from eroding one commit at a time.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Most lines of code (not blank, not comments, not test modules) in one source file.
const MAX_CODE_LINES: usize = 1000;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every `.rs` file under each `crates/*/src`, by crate name, as (path relative to `src`, text).
fn sources() -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for krate in fs::read_dir(workspace().join("crates")).unwrap() {
        let krate = krate.unwrap().path();
        let src = krate.join("src");
        if !src.is_dir() {
            continue;
        }
        let mut files = BTreeMap::new();
        walk(&src, &src, &mut files);
        let name = krate.file_name().unwrap().to_string_lossy().into_owned();
        out.insert(name, files);
    }
    assert!(
        out.len() >= 3,
        "expected the workspace's crates, found {out:?}"
    );
    out
}

fn walk(root: &Path, dir: &Path, files: &mut BTreeMap<String, String>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(root, &path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            files.insert(rel, fs::read_to_string(&path).unwrap());
        }
    }
}

/// The file's text before its inline test module, and without test files (`tests.rs`, `tests/`).
fn non_test(rel: &str, text: &str) -> Option<String> {
    if rel.ends_with("/tests.rs") || rel.contains("/tests/") || rel == "tests.rs" {
        return None;
    }
    let code = match text.find("#[cfg(test)]\nmod tests {") {
        Some(at) => &text[..at],
        None => text,
    };
    Some(code.to_owned())
}

/// Lines that are code: not blank, not comments.
fn code_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("//"))
}

#[test]
fn every_file_says_what_it_owns() {
    let mut missing = Vec::new();
    for (krate, files) in sources() {
        for (rel, text) in files {
            let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            if !first.starts_with("//!") {
                missing.push(format!("crates/{krate}/src/{rel}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "files without a `//!` line at the top: {missing:#?}"
    );
}

#[test]
fn no_file_is_over_a_thousand_lines_of_code() {
    let mut long = Vec::new();
    for (krate, files) in sources() {
        for (rel, text) in files {
            let Some(code) = non_test(&rel, &text) else {
                continue;
            };
            let n = code_lines(&code).count();
            if n > MAX_CODE_LINES {
                long.push(format!("crates/{krate}/src/{rel}: {n} lines of code"));
            }
        }
    }
    assert!(long.is_empty(), "split these by concern: {long:#?}");
}

/// The module path of a file: `torrent/mod.rs` is `[torrent]`, `lib.rs` and `main.rs` are `[]`.
fn module_of(rel: &str) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .trim_end_matches(".rs")
        .split('/')
        .map(String::from)
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The file that `path` (`crate::a::b::Item`, `super::x`, `self::y`), written in `rel`, names: the
/// file of its longest prefix that is a module.
fn resolve(modules: &BTreeMap<Vec<String>, String>, rel: &str, path: &[&str]) -> Option<String> {
    let mut base = module_of(rel);
    let mut rest = path;
    match rest.first() {
        Some(&"crate") => {
            base.clear();
            rest = &rest[1..];
        }
        Some(&"self") => rest = &rest[1..],
        Some(&"super") => {
            while rest.first() == Some(&"super") {
                base.pop();
                rest = &rest[1..];
            }
        }
        _ => return None,
    }
    (0..=rest.len()).rev().find_map(|k| {
        let mut m = base.clone();
        m.extend(rest[..k].iter().map(|s| s.to_string()));
        modules.get(&m).cloned()
    })
}

/// The paths a file's code (not its comments) names through `crate::`, `super::` or `self::`,
/// including each item of a `use x::{a, b::c}` group.
fn paths_named(code: &str) -> Vec<Vec<String>> {
    let code: String = code
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut i = 0;
    while i < bytes.len() {
        let starts = ["crate::", "super::", "self::"]
            .iter()
            .find(|s| bytes[i..].starts_with(s.as_bytes()) && (i == 0 || !ident(bytes[i - 1])));
        let Some(_) = starts else {
            i += 1;
            continue;
        };
        let mut j = i;
        while j < bytes.len() && (ident(bytes[j]) || bytes[j] == b':') {
            j += 1;
        }
        let prefix: Vec<String> = code[i..j]
            .split("::")
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        if bytes[j..].starts_with(b"{") {
            let end = code[j..].find('}').map_or(code.len(), |e| j + e);
            for item in code[j + 1..end].split(',') {
                let item = item.split_whitespace().next().unwrap_or("");
                let mut p = prefix.clone();
                p.extend(item.split("::").filter(|s| !s.is_empty()).map(String::from));
                out.push(p);
            }
        } else {
            out.push(prefix);
        }
        i = j.max(i + 1);
    }
    out
}

/// Which files each file imports (by `crate::`, `super::` or `self::` paths in its code), for one
/// crate's `src/` files by path. A parent module declaring and re-exporting its children is
/// structure, not an import; test files are outside the graph.
fn imports(files: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let modules: BTreeMap<Vec<String>, String> = files
        .keys()
        .map(|rel| (module_of(rel), rel.clone()))
        .collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (rel, text) in files {
        let Some(code) = non_test(rel, text) else {
            continue;
        };
        let from = module_of(rel);
        let parent_file = matches!(
            Path::new(rel).file_name().and_then(|f| f.to_str()),
            Some("mod.rs" | "lib.rs" | "main.rs")
        );
        let targets = edges.entry(rel.clone()).or_default();
        for path in paths_named(&code) {
            let path: Vec<&str> = path.iter().map(String::as_str).collect();
            let Some(to) = resolve(&modules, rel, &path) else {
                continue;
            };
            let child = parent_file && module_of(&to).starts_with(&from) && to != *rel;
            if to != *rel && !child && non_test(&to, "").is_some() {
                targets.insert(to);
            }
        }
    }
    edges
}

#[test]
fn no_two_files_import_each_other() {
    let mut rings = Vec::new();
    for (krate, files) in sources() {
        for ring in strongly_connected(&imports(&files)) {
            rings.push(format!("crates/{krate}/src: {ring:?}"));
        }
    }
    assert!(
        rings.is_empty(),
        "files that import each other (give the shared piece its own module): {rings:#?}"
    );
}

/// The strongly connected components of more than one file (Tarjan's algorithm).
fn strongly_connected(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.edges.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                s.out.push(component);
            }
        }
    }
    let mut s = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

/// The checker finds a ring when there is one, so a clean run means something.
#[test]
fn the_import_check_sees_a_ring() {
    let files: BTreeMap<String, String> = [
        ("lib.rs", "//! x\nmod a;\nmod b;\nmod c;\n"),
        ("a.rs", "//! a\nuse crate::b::Thing;\n"),
        ("b.rs", "//! b\nuse super::{c::Other, a};\n"),
        (
            "c.rs",
            "//! c\n/// Not an import: [`crate::a`].\nfn f() {}\n",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let edges = imports(&files);
    assert_eq!(
        edges["b.rs"],
        BTreeSet::from(["a.rs".to_owned(), "c.rs".to_owned()])
    );
    assert!(edges["c.rs"].is_empty(), "doc comments are not imports");
    assert!(
        edges["lib.rs"].is_empty(),
        "declaring children is not importing them"
    );
    let rings = strongly_connected(&edges);
    assert_eq!(rings.len(), 1);
    let mut ring = rings[0].clone();
    ring.sort();
    assert_eq!(ring, ["a.rs", "b.rs"]);
}
