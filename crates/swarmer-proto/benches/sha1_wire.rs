//! Throughput of the two hot byte paths of a download: SHA-1 over a block and a piece
//! (`swarmer_proto::digest::sha1`, see docs/sha1.md), and decoding a stream of `piece` messages
//! (`swarmer_proto::wire`). Run with `cargo bench -p swarmer-proto --bench sha1_wire`.

// `criterion_group!` generates an undocumented `pub fn benches`; a bench target has no public API.
#![allow(missing_docs)]

use criterion::{BenchmarkId, Criterion, Throughput, black_box, criterion_group, criterion_main};
use swarmer_proto::BLOCK_SIZE;
use swarmer_proto::digest::sha1;
use swarmer_proto::wire::{Message, max_message_len};

fn bench_sha1(c: &mut Criterion) {
    let mut group = c.benchmark_group("sha1");
    for size in [16 * 1024usize, 1024 * 1024] {
        let data: Vec<u8> = (0..size).map(|i| (i * 31 + 7) as u8).collect();
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &data, |b, data| {
            b.iter(|| sha1(black_box(data)));
        });
    }
    group.finish();
}

fn bench_wire(c: &mut Criterion) {
    // 64 blocks of a piece, as a fast peer would send them back to back.
    let block = vec![0x5a; BLOCK_SIZE as usize];
    let mut stream = Vec::new();
    for i in 0..64u32 {
        Message::Piece {
            index: 1,
            begin: i * BLOCK_SIZE,
            data: &block,
        }
        .encode(&mut stream);
    }
    let max = max_message_len(1000);
    let mut group = c.benchmark_group("wire");
    group.throughput(Throughput::Bytes(stream.len() as u64));
    group.bench_function("decode_64_piece_messages", |b| {
        b.iter(|| {
            let mut rest = black_box(&stream[..]);
            let mut n = 0;
            while let Ok(Some((msg, used))) = Message::decode(rest, max) {
                black_box(msg);
                rest = &rest[used..];
                n += 1;
            }
            n
        });
    });
    group.finish();
}

criterion_group!(benches, bench_sha1, bench_wire);
criterion_main!(benches);
