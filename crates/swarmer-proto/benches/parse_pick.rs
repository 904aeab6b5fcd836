//! Cost of the two CPU paths that grow with a torrent's size rather than its bytes: parsing a large
//! .torrent (bencode decoding and metainfo validation) and piece picking with 100,000 pieces and 200
//! peers (rarest first from a fresh picker, again after one `have`, and taking in one more peer's
//! bitfield). Run with
//! `cargo bench -p swarmer-proto --bench parse_pick`.

// `criterion_group!` generates an undocumented `pub fn benches`; a bench target has no public API.
#![allow(missing_docs)]

use criterion::{BatchSize, Criterion, Throughput, black_box, criterion_group, criterion_main};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use swarmer_proto::bencode::{self, OwnedValue};
use swarmer_proto::metainfo::Metainfo;
use swarmer_proto::picker::Picker;
use swarmer_proto::{Bitfield, Layout};

/// A multi-file torrent of `files` files of 1 MiB under 100 directories, with 256 KiB pieces.
fn large_torrent(files: usize) -> Vec<u8> {
    let piece = 256 * 1024;
    let pieces = files * (1 << 20) / piece;
    let list = OwnedValue::list((0..files).map(|i| {
        OwnedValue::dict([
            ("length", OwnedValue::Int(1 << 20)),
            (
                "path",
                OwnedValue::list([
                    OwnedValue::Bytes(format!("dir{:03}", i % 100).into_bytes()),
                    OwnedValue::Bytes(format!("file-{i:06}.bin").into_bytes()),
                ]),
            ),
        ])
    }));
    let info = OwnedValue::dict([
        ("files", list),
        ("name", OwnedValue::Bytes(b"large".to_vec())),
        ("piece length", OwnedValue::Int(piece as i64)),
        ("pieces", OwnedValue::Bytes(vec![0xab; pieces * 20])),
    ]);
    OwnedValue::dict([
        (
            "announce",
            OwnedValue::Bytes(b"http://tracker.invalid/announce".to_vec()),
        ),
        ("info", info),
    ])
    .encode()
}

fn bench_parse(c: &mut Criterion) {
    let torrent = large_torrent(10_000);
    let mut group = c.benchmark_group("parse_10000_files");
    group.throughput(Throughput::Bytes(torrent.len() as u64));
    group.bench_function("bencode_decode", |b| {
        b.iter(|| bencode::decode(black_box(&torrent)).map(|v| v.raw().len()))
    });
    group.bench_function("metainfo_from_bytes", |b| {
        b.iter(|| Metainfo::from_bytes(black_box(&torrent)).map(|m| m.info.files.len()))
    });
    group.finish();
}

const PIECES: u32 = 100_000;
const PEERS: usize = 200;

/// 100,000 pieces of 256 KiB (16 blocks each), and 200 peers holding a random half of them each.
fn swarm() -> (Layout, Vec<Bitfield>) {
    let layout = Layout::new(256 * 1024, [u64::from(PIECES) * 256 * 1024]).expect("layout");
    let mut rng = SmallRng::seed_from_u64(7);
    let peers = (0..PEERS)
        .map(|_| {
            let mut bits = Bitfield::new(PIECES as usize);
            for i in 0..PIECES as usize {
                if rng.r#gen::<bool>() {
                    bits.set(i);
                }
            }
            bits
        })
        .collect();
    (layout, peers)
}

fn bench_pick(c: &mut Criterion) {
    let (layout, peers) = swarm();
    let mut rng = SmallRng::seed_from_u64(1);
    let mut picker = Picker::new(&layout, &Bitfield::new(PIECES as usize), &mut rng);
    for bits in &peers[1..] {
        picker.add_availability(bits);
    }
    let mut group = c.benchmark_group("pick_100000_pieces_200_peers");
    let mut out = Vec::with_capacity(64);
    // The last peer's bitfield arrives: availability of every piece it has goes up.
    group.bench_function("add_peer_bitfield", |b| {
        b.iter_batched_ref(
            || picker.clone(),
            |p| p.add_availability(black_box(&peers[0])),
            BatchSize::LargeInput,
        )
    });
    picker.add_availability(&peers[0]);
    // A peer asks for a full request queue (64 blocks = 4 new pieces) from a fresh picker: the
    // rarest-first scan over 100,000 pieces.
    group.bench_function("pick_64_blocks_rarest_first", |b| {
        b.iter_batched_ref(
            || picker.clone(),
            |p| {
                out.clear();
                p.pick(black_box(&peers[3]), 64, usize::MAX, |_| false, &mut out);
                out.len()
            },
            BatchSize::LargeInput,
        )
    });
    // Steady state: the order is current, then one `have` arrives and the same peer asks again.
    out.clear();
    picker.pick(&peers[3], 64, usize::MAX, |_| false, &mut out);
    for block in out.drain(..) {
        picker.request_dropped(block);
    }
    let have = layout.piece(PIECES / 2).expect("in range");
    group.bench_function("pick_64_blocks_after_one_have", |b| {
        b.iter_batched_ref(
            || picker.clone(),
            |p| {
                p.increment_availability(have);
                out.clear();
                p.pick(black_box(&peers[3]), 64, usize::MAX, |_| false, &mut out);
                out.len()
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench_parse, bench_pick);
criterion_main!(benches);
