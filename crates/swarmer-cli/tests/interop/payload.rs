//! Test payloads with deterministic pseudo-random content, their torrents, byte-for-byte
//! verification of a download, and corrupted copies for a lying seeder.
//!
//! Torrents come from mktorrent, except with 16 KiB pieces: mktorrent 1.1 refuses piece lengths
//! below 2^15, so those are encoded here (v1, files in payload order, 0-byte files included,
//! the same tier layout).

use std::path::{Path, PathBuf};
use std::process::Command;

use sha1::{Digest, Sha1};

/// The smallest `-l` mktorrent 1.1 accepts.
const MKTORRENT_MIN_PIECE_LOG2: u32 = 15;

/// A file tree (or single file) on disk that a torrent describes.
pub(crate) struct Payload {
    /// The file or top directory; its parent is the `save_path` of a seeder.
    pub(crate) root: PathBuf,
    /// Every file as (path relative to the torrent's name, length), in the order written.
    pub(crate) files: Vec<(PathBuf, u64)>,
}

/// Torrent A: one file, `len` bytes.
pub(crate) fn single_file(parent: &Path, name: &str, len: u64, seed: u64) -> Payload {
    let root = parent.join(name);
    write_file(&root, len, seed);
    Payload {
        root,
        files: vec![(PathBuf::new(), len)],
    }
}

/// Torrent B: nested directories, two 0-byte files, a file smaller than a 16 KiB piece, and
/// lengths that are not multiples of any piece length, so pieces span file boundaries.
pub(crate) fn multi_file(parent: &Path, name: &str, seed: u64) -> Payload {
    const MIB: u64 = 1 << 20;
    let layout: [(&str, u64); 8] = [
        ("a.bin", 5 * MIB + 12_345),
        ("empty.bin", 0),
        ("dir1/small.txt", 1_000),
        ("dir1/dir2/b.bin", 2 * MIB + 777),
        ("dir1/dir2/empty-too.bin", 0),
        ("dir1/dir2/c.bin", 16_384 + 1),
        ("dir3/d.bin", 3 * MIB - 1),
        ("z.bin", 99_999),
    ];
    let root = parent.join(name);
    let mut files = Vec::new();
    for (i, (path, len)) in layout.into_iter().enumerate() {
        write_file(&root.join(path), len, seed.wrapping_add(i as u64));
        files.push((PathBuf::from(path), len));
    }
    Payload { root, files }
}

/// Fills `path` with `len` bytes of splitmix64 output seeded by `seed`.
pub(crate) fn write_file(path: &Path, len: u64, seed: u64) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create payload dir");
    }
    let mut state = seed;
    let mut data = Vec::with_capacity(len as usize + 8);
    while (data.len() as u64) < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        data.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    data.truncate(len as usize);
    std::fs::write(path, data).expect("write payload file");
}

impl Payload {
    /// Writes a torrent with `2^piece_log2`-byte pieces and one tier per entry of `tiers` (URLs
    /// within an entry separated by commas share a tier), made by mktorrent where it can.
    pub(crate) fn make_torrent(&self, out: &Path, piece_log2: u32, tiers: &[&str]) -> PathBuf {
        self.make_torrent_with_web_seeds(out, piece_log2, tiers, &[])
    }

    /// `make_torrent` with BEP 19 web seeds (`url-list`, mktorrent's `-w`); web seeds need
    /// pieces of at least 2^15 bytes (mktorrent's).
    pub(crate) fn make_torrent_with_web_seeds(
        &self,
        out: &Path,
        piece_log2: u32,
        tiers: &[&str],
        web_seeds: &[&str],
    ) -> PathBuf {
        if piece_log2 < MKTORRENT_MIN_PIECE_LOG2 {
            assert!(
                web_seeds.is_empty(),
                "web seeds need mktorrent's piece lengths"
            );
            std::fs::write(out, self.encode_torrent(1 << piece_log2, tiers)).expect("write");
            return out.to_owned();
        }
        let mut command = Command::new("mktorrent");
        command.arg("-l").arg(piece_log2.to_string()).arg("-d");
        for tier in tiers {
            command.arg("-a").arg(tier);
        }
        for url in web_seeds {
            command.arg("-w").arg(url);
        }
        let output = command
            .arg("-o")
            .arg(out)
            .arg(&self.root)
            .output()
            .expect("run mktorrent");
        assert!(
            output.status.success(),
            "mktorrent failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        out.to_owned()
    }

    /// Encodes the torrent mktorrent would make, for piece lengths it refuses.
    fn encode_torrent(&self, piece_len: usize, tiers: &[&str]) -> Vec<u8> {
        let mut pieces = Vec::new();
        let mut piece = Vec::with_capacity(piece_len);
        for (relative, _) in &self.files {
            let mut data: &[u8] = &std::fs::read(under(&self.root, relative)).expect("read");
            while !data.is_empty() {
                let take = (piece_len - piece.len()).min(data.len());
                piece.extend_from_slice(&data[..take]);
                data = &data[take..];
                if piece.len() == piece_len {
                    pieces.extend_from_slice(&Sha1::digest(&piece));
                    piece.clear();
                }
            }
        }
        if !piece.is_empty() {
            pieces.extend_from_slice(&Sha1::digest(&piece));
        }
        let name = self
            .root
            .file_name()
            .expect("name")
            .to_str()
            .expect("utf-8 name");
        // Keys in sorted order, as bencode requires.
        let mut info = b"d".to_vec();
        if self.files.len() == 1 && self.files[0].0.as_os_str().is_empty() {
            info.extend(format!("6:lengthi{}e", self.files[0].1).bytes());
        } else {
            info.extend(b"5:filesl");
            for (relative, len) in &self.files {
                info.extend(format!("d6:lengthi{len}e4:pathl").bytes());
                for part in relative.iter() {
                    info.extend(string(part.to_str().expect("utf-8 path").as_bytes()));
                }
                info.extend(b"ee");
            }
            info.extend(b"e");
        }
        info.extend(b"4:name");
        info.extend(string(name.as_bytes()));
        info.extend(format!("12:piece lengthi{piece_len}e6:pieces").bytes());
        info.extend(string(&pieces));
        info.extend(b"e");

        let mut torrent = b"d8:announce".to_vec();
        let first = tiers[0].split(',').next().expect("a tracker");
        torrent.extend(string(first.as_bytes()));
        if tiers.len() > 1 || tiers[0].contains(',') {
            torrent.extend(b"13:announce-listl");
            for tier in tiers {
                torrent.extend(b"l");
                for url in tier.split(',') {
                    torrent.extend(string(url.as_bytes()));
                }
                torrent.extend(b"e");
            }
            torrent.extend(b"e");
        }
        torrent.extend(b"4:info");
        torrent.extend(info);
        torrent.extend(b"e");
        torrent
    }

    /// Asserts that `downloaded` (the file or top directory of a download) holds every file of
    /// the payload byte for byte, 0-byte files included.
    pub(crate) fn assert_same(&self, downloaded: &Path) {
        self.assert_files(downloaded, true);
    }

    /// Like `assert_same`, but ignores the 0-byte files: Transmission does not create them.
    pub(crate) fn assert_same_with_data(&self, downloaded: &Path) {
        self.assert_files(downloaded, false);
    }

    /// Like `assert_same` for a download of selected files: the files in `skipped` (relative to
    /// the torrent's name) must not exist, every other file must be byte-identical.
    pub(crate) fn assert_selected(&self, downloaded: &Path, skipped: &[PathBuf]) {
        for relative in skipped {
            let path = under(downloaded, relative);
            assert!(!path.exists(), "skipped {} was created", path.display());
        }
        self.check_files(downloaded, |relative, _| {
            !skipped.iter().any(|s| s == relative)
        });
    }

    fn assert_files(&self, downloaded: &Path, with_empty: bool) {
        self.check_files(downloaded, |_, len| len > 0 || with_empty);
    }

    /// Compares the files for which `wanted(relative path, length)` holds.
    fn check_files(&self, downloaded: &Path, wanted: impl Fn(&Path, u64) -> bool) {
        for (relative, len) in &self.files {
            if !wanted(relative, *len) {
                continue;
            }
            let original = under(&self.root, relative);
            let copy = under(downloaded, relative);
            let got = std::fs::read(&copy)
                .unwrap_or_else(|e| panic!("cannot read downloaded {}: {e}", copy.display()));
            assert_eq!(got.len() as u64, *len, "length of {}", copy.display());
            let want = std::fs::read(&original).expect("read original");
            if let Some(at) = got.iter().zip(&want).position(|(a, b)| a != b) {
                panic!("{} differs from the original at byte {at}", copy.display());
            }
        }
    }

    /// An exact copy of the payload under `parent`, for a second seeder.
    pub(crate) fn copy_to(&self, parent: &Path) -> Payload {
        self.corrupted_copy(parent, 1, &[])
    }

    /// Copies the payload under `parent` and flips one byte in the middle of each of the given
    /// pieces (`piece_len` bytes each, counted across the files in `files` order, which is the
    /// torrent's order for a single file; for several files it still corrupts those pieces' bytes
    /// somewhere, which is all a lying seeder needs).
    pub(crate) fn corrupted_copy(&self, parent: &Path, piece_len: u64, pieces: &[u64]) -> Payload {
        let name = self.root.file_name().expect("payload name");
        let root = parent.join(name);
        let mut offset = 0;
        for (relative, len) in &self.files {
            let mut data = std::fs::read(under(&self.root, relative)).expect("read original");
            for piece in pieces {
                let target = piece * piece_len + piece_len / 2;
                if (offset..offset + len).contains(&target) {
                    data[(target - offset) as usize] ^= 0xFF;
                }
            }
            let path = under(&root, relative);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, data).expect("write corrupted copy");
            offset += len;
        }
        Payload {
            root,
            files: self.files.clone(),
        }
    }
}

/// `relative` under `base`; an empty `relative` (the single file of torrent A) is `base` itself,
/// where `Path::join` would append a slash.
fn under(base: &Path, relative: &Path) -> PathBuf {
    if relative.as_os_str().is_empty() {
        base.to_owned()
    } else {
        base.join(relative)
    }
}

/// A bencoded byte string.
fn string(bytes: &[u8]) -> Vec<u8> {
    let mut out = format!("{}:", bytes.len()).into_bytes();
    out.extend_from_slice(bytes);
    out
}
