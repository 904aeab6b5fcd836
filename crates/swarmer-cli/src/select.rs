//! `--only`, `--exclude` and `--files`: which of a torrent's files to download (or, for `seed`, to
//! check and serve), parsed in two steps: the raw strings become a [`Selection`] (globs compiled,
//! index lists parsed) before the torrent is read, then [`Selection::priorities`] applies it to the
//! torrent's file list.
//!
//! What a glob is matched against: the file's path inside the torrent, components joined with `/`,
//! without the torrent's name (for `name/sub/a.txt`, `sub/a.txt`; a single-file torrent's only file
//! is matched as its name). A glob with a `/` must match that whole path (`*` stays within one
//! component, `**` crosses them: `sub/**`); a glob without `/` matches the file name alone, in any
//! directory (`*.nfo`), as in `.gitignore`. Indices are those `swarmer info` prints (0-based
//! positions in the torrent's file list; padding files have indices but cannot be selected).
//!
//! The rule: with `--only` or `--files`, a file is selected when it matches any `--only` glob or is
//! listed in `--files`; without either, every file is. Then every file matching an `--exclude` glob
//! is dropped. Selecting no file at all is an error.

use anyhow::{Context, bail};
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use swarmer::FilePriority;
use swarmer_proto::metainfo::Info;

/// The selection options as typed on the command line.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct SelectArgs {
    /// Only these files: a glob over the path inside the torrent (without its name); a glob without
    /// `/` matches file names in any directory. Repeatable; combines with --files.
    #[arg(long = "only", value_name = "GLOB")]
    only: Vec<String>,
    /// Not these files (same globs as --only); applied after --only and --files. Repeatable.
    #[arg(long = "exclude", value_name = "GLOB")]
    exclude: Vec<String>,
    /// Only the files with these indices, as `swarmer info` prints them: e.g. 1,3-5.
    #[arg(long = "files", value_name = "LIST")]
    files: Option<String>,
}

/// A validated selection: compiled globs and parsed index ranges.
#[derive(Debug, Clone)]
pub(crate) struct Selection {
    /// `None` when neither `--only` nor `--files` was given: every file starts selected.
    include: Option<Include>,
    exclude: Matcher,
}

#[derive(Debug, Clone)]
struct Include {
    globs: Matcher,
    /// Inclusive index ranges from `--files`.
    ranges: Vec<(usize, usize)>,
}

/// Globs split by what they match: whole paths (with `/`) or file names (without).
#[derive(Debug, Clone)]
struct Matcher {
    paths: GlobSet,
    names: GlobSet,
}

impl Matcher {
    fn new(globs: &[String], option: &str) -> anyhow::Result<Matcher> {
        let (mut paths, mut names) = (GlobSetBuilder::new(), GlobSetBuilder::new());
        for glob in globs {
            if glob.is_empty() {
                bail!("{option}: empty glob");
            }
            let compiled = GlobBuilder::new(glob)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .with_context(|| format!("{option} {glob:?}"))?;
            if glob.contains('/') {
                paths.add(compiled);
            } else {
                names.add(compiled);
            }
        }
        Ok(Matcher {
            paths: paths.build().context(option.to_string())?,
            names: names.build().context(option.to_string())?,
        })
    }

    fn matches(&self, path: &str) -> bool {
        let name = path.rsplit('/').next().unwrap_or(path);
        self.paths.is_match(path) || self.names.is_match(name)
    }

    fn is_empty(&self) -> bool {
        self.paths.is_empty() && self.names.is_empty()
    }
}

impl Selection {
    /// Validates the options: globs must compile and `--files` must be a list of indices and
    /// ranges (`1,3-5`).
    pub(crate) fn parse(args: &SelectArgs) -> anyhow::Result<Selection> {
        let only = Matcher::new(&args.only, "--only")?;
        let exclude = Matcher::new(&args.exclude, "--exclude")?;
        let ranges = match &args.files {
            Some(list) => parse_list(list).with_context(|| format!("--files {list:?}"))?,
            None => Vec::new(),
        };
        let include = (!only.is_empty() || args.files.is_some()).then_some(Include {
            globs: only,
            ranges,
        });
        Ok(Selection { include, exclude })
    }

    /// True when no option narrows the download: every file is wanted.
    pub(crate) fn is_everything(&self) -> bool {
        self.include.is_none() && self.exclude.is_empty()
    }

    /// One priority per file of `info.files`: `Normal` for selected files, `Skip` for the others
    /// (padding files are always `Skip`; they are never stored). Empty when nothing is narrowed.
    ///
    /// Errors: a `--files` index past the last file or naming a padding file; no file selected.
    pub(crate) fn priorities(&self, info: &Info) -> anyhow::Result<Vec<FilePriority>> {
        if self.is_everything() {
            return Ok(Vec::new());
        }
        if let Some(include) = &self.include {
            for &(_, last) in &include.ranges {
                if last >= info.files.len() {
                    bail!(
                        "--files: index {last} is past the last file ({}); see `swarmer info`",
                        info.files.len() - 1
                    );
                }
            }
            if let Some(i) = include
                .ranges
                .iter()
                .flat_map(|&(a, b)| a..=b)
                .find(|&i| info.files[i].padding)
            {
                bail!("--files: index {i} is a padding file, which holds no data");
            }
        }
        let priorities = mark(info, |i, path| {
            let included = self.include.as_ref().is_none_or(|inc| {
                inc.globs.matches(path) || inc.ranges.iter().any(|&(a, b)| (a..=b).contains(&i))
            });
            included && !self.exclude.matches(path)
        });
        if !priorities.iter().any(|p| p.is_wanted()) {
            bail!(
                "no file selected: --only, --files and --exclude leave none of the torrent's {} files",
                info.files.iter().filter(|f| !f.padding).count()
            );
        }
        Ok(priorities)
    }
}

/// One priority per file for a magnet link's `so` (BEP 53): `Normal` for the files whose indices the
/// ranges name, `Skip` for the others and for padding files. Indices past the last file are ignored;
/// when no file is left, the result is empty, meaning every file (with a warning, as the link is
/// wrong and the user asked for the torrent).
pub(crate) fn select_only(
    ranges: &[std::ops::RangeInclusive<u32>],
    info: &Info,
) -> Vec<FilePriority> {
    let priorities = mark(info, |i, _| {
        ranges
            .iter()
            .any(|r| u32::try_from(i).is_ok_and(|i| r.contains(&i)))
    });
    if priorities.iter().any(|p| p.is_wanted()) {
        priorities
    } else {
        tracing::warn!(
            "the magnet link's `so` names no file of the torrent; downloading every file"
        );
        Vec::new()
    }
}

/// One priority per file of `info.files`: `Normal` where `selected(index, path inside the torrent)`
/// holds, `Skip` elsewhere and for padding files, which are never stored.
fn mark(info: &Info, selected: impl Fn(usize, &str) -> bool) -> Vec<FilePriority> {
    info.files
        .iter()
        .enumerate()
        .map(|(i, file)| {
            if !file.padding && selected(i, &torrent_path(info, &file.path)) {
                FilePriority::Normal
            } else {
                FilePriority::Skip
            }
        })
        .collect()
}

/// The path a glob is matched against: components inside the torrent joined with `/` (a multi-file
/// torrent's name dropped; a single-file torrent is its name).
fn torrent_path(info: &Info, components: &[String]) -> String {
    let inside = if info.multi_file && components.len() > 1 {
        &components[1..]
    } else {
        components
    };
    inside.join("/")
}

/// Parses `1,3-5` into inclusive ranges.
fn parse_list(list: &str) -> anyhow::Result<Vec<(usize, usize)>> {
    let number = |s: &str| -> anyhow::Result<usize> {
        let s = s.trim();
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            bail!("{s:?} is not a file index");
        }
        s.parse().with_context(|| format!("{s:?} is too large"))
    };
    list.split(',')
        .map(|item| match item.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (number(a)?, number(b)?);
                if a > b {
                    bail!("range {a}-{b} runs backwards");
                }
                Ok((a, b))
            }
            None => number(item).map(|i| (i, i)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmer_proto::Layout;
    use swarmer_proto::metainfo::FileEntry;

    /// A multi-file torrent `t`: 0 README.txt, 1 a/one.mkv, 2 a/one.nfo, 3 (padding), 4 b/two.mkv,
    /// 5 b/sub/three.mkv.
    fn info() -> Info {
        let files = [
            ("README.txt", false),
            ("a/one.mkv", false),
            ("a/one.nfo", false),
            (".pad/7", true),
            ("b/two.mkv", false),
            ("b/sub/three.mkv", false),
        ];
        let files: Vec<FileEntry> = files
            .iter()
            .map(|(path, padding)| FileEntry {
                path: std::iter::once("t")
                    .chain(path.split('/'))
                    .map(String::from)
                    .collect(),
                length: 10,
                padding: *padding,
            })
            .collect();
        let layout = Layout::new(16, files.iter().map(|f| f.length)).unwrap();
        Info {
            name: "t".into(),
            piece_length: 16,
            piece_hashes: vec![[0; 20]; layout.piece_count() as usize],
            v2: None,
            files,
            multi_file: true,
            private: false,
            layout,
        }
    }

    fn args(only: &[&str], exclude: &[&str], files: Option<&str>) -> SelectArgs {
        SelectArgs {
            only: only.iter().map(|s| s.to_string()).collect(),
            exclude: exclude.iter().map(|s| s.to_string()).collect(),
            files: files.map(String::from),
        }
    }

    /// Runs one selection through both steps: the indices of the selected files, or the error.
    fn check(
        only: &[&str],
        exclude: &[&str],
        files: Option<&str>,
        expected: Result<&[usize], &str>,
    ) {
        let result =
            Selection::parse(&args(only, exclude, files)).and_then(|s| s.priorities(&info()));
        match (result, expected) {
            (Ok(p), Ok(want)) if p.is_empty() => assert_eq!(want, &[0, 1, 2, 4, 5]),
            (Ok(p), Ok(want)) => {
                let got: Vec<usize> = (0..p.len()).filter(|&i| p[i].is_wanted()).collect();
                assert_eq!(
                    got, want,
                    "--only {only:?} --exclude {exclude:?} --files {files:?}"
                );
            }
            (Err(e), Err(want)) => {
                let e = format!("{e:#}");
                assert!(e.contains(want), "{e:?} does not mention {want:?}");
            }
            (got, want) => panic!("{only:?} {exclude:?} {files:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn globs_match_paths_inside_the_torrent() {
        check(&[], &[], None, Ok(&[0, 1, 2, 4, 5]));
        check(&["*.mkv"], &[], None, Ok(&[1, 4, 5]));
        check(&["a/*"], &[], None, Ok(&[1, 2]));
        check(&["b/*"], &[], None, Ok(&[4]));
        check(&["b/**"], &[], None, Ok(&[4, 5]));
        check(&["t/*"], &[], None, Err("no file selected"));
        check(&["README.txt", "b/**/*.mkv"], &[], None, Ok(&[0, 4, 5]));
        check(&[], &["*.nfo", "README*"], None, Ok(&[1, 4, 5]));
        check(&["*.mkv"], &["b/sub/**"], None, Ok(&[1, 4]));
        check(&["{a,b}/*.mkv"], &[], None, Ok(&[1, 4]));
        check(&[], &["*"], None, Err("no file selected"));
        check(&["["], &[], None, Err("--only \"[\""));
        check(&[""], &[], None, Err("empty glob"));
    }

    #[test]
    fn index_lists_follow_swarmer_info() {
        check(&[], &[], Some("1"), Ok(&[1]));
        check(&[], &[], Some("0,2,4-5"), Ok(&[0, 2, 4, 5]));
        check(&[], &[], Some(" 4 - 5 "), Ok(&[4, 5]));
        check(&["README.txt"], &[], Some("4"), Ok(&[0, 4]));
        check(&[], &["*.mkv"], Some("0-2"), Ok(&[0, 2]));
        check(
            &[],
            &[],
            Some("6"),
            Err("index 6 is past the last file (5)"),
        );
        check(&[], &[], Some("3"), Err("index 3 is a padding file"));
        check(&[], &[], Some("2-1"), Err("runs backwards"));
        check(&[], &[], Some("1,,2"), Err("is not a file index"));
        check(&[], &[], Some("x"), Err("is not a file index"));
        check(&[], &[], Some("-1"), Err("is not a file index"));
        check(&[], &[], Some(""), Err("is not a file index"));
    }

    #[test]
    fn a_single_file_torrent_is_matched_by_its_name() {
        let mut single = info();
        single.files.truncate(1);
        single.files[0].path = vec!["movie.mkv".into()];
        single.multi_file = false;
        single.layout = Layout::new(16, [10]).unwrap();
        let sel = |only: &[&str]| {
            Selection::parse(&args(only, &[], None))
                .and_then(|s| s.priorities(&single))
                .is_ok()
        };
        assert!(sel(&["*.mkv"]));
        assert!(sel(&["movie.mkv"]));
        assert!(!sel(&["*.txt"]));
    }
}
