//! The cost of giving received buffers back to the kernel through the
//! refill ring, per buffer, with a hand-written producer over the
//! `io-uring` crate's refill entry type (`types::io_uring_zcrx_rqe`) in the
//! same group.
//!
//! Each iteration hands out a batch of 32 buffers (as 32 data CQEs would),
//! reads a byte of each, and releases them; then the kernel's part is
//! played (acquire the tail, read the entries, release-store the head) so
//! the ring never fills. Throughput is in buffers, so criterion reports a
//! cost per buffer.
//!
//! - `uring-zcrx release`: [`ZcrxBuffer::recycle`] per buffer (range check
//!   at hand-out, lock, entry, release store of the tail, counters).
//! - `uring-zcrx drop`: the same through the buffer's `Drop`.
//! - `uring-zcrx release_all`: one [`Zcrx::recycle_all`] for the batch (one
//!   lock and one tail store).
//! - `io-uring (raw rqes)`: what an `io-uring` crate user writes by hand
//!   (the crate has the entry type and no producer): slice the area at the
//!   CQE's offset, write the entry, store the tail; no ownership tracking,
//!   so nothing stops a double release.
//!
//! No kernel call is timed: the instance is detached (library memory laid
//! out as the kernel lays it out, consumed by the bench as the kernel
//! would). Run: `cargo bench -p uring-zcrx --bench refill`.

mod raw;

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use raw::RawRefill;
use uring_zcrx::zcrx::bench_support::{buffer, consume, detached};
use uring_zcrx::{Zcrx, ZcrxBuffer};

const ENTRIES: u32 = 256;
const BUF: u32 = 4096;
const AREA: usize = 1 << 20;
const NIOVS: u64 = (AREA / BUF as usize) as u64;
const BATCH: usize = 32;

/// The offset word of the `k`-th buffer handed out.
#[inline]
fn offset(k: u64) -> u64 {
    (k % NIOVS) * u64::from(BUF)
}

fn hand_out(zcrx: &Zcrx, next: &mut u64, out: &mut Vec<ZcrxBuffer>) {
    for _ in 0..BATCH {
        let buf = buffer(zcrx, offset(*next), black_box(1500));
        black_box(buf.as_slice()[0]);
        out.push(buf);
        *next += 1;
    }
}

fn release(c: &mut Criterion) {
    let mut g = c.benchmark_group("release");
    g.throughput(Throughput::Elements(BATCH as u64));

    let zcrx = detached(AREA, ENTRIES);
    let mut next = 0u64;
    let mut bufs = Vec::with_capacity(BATCH);
    g.bench_function("uring-zcrx release", |b| {
        b.iter(|| {
            hand_out(&zcrx, &mut next, &mut bufs);
            for buf in bufs.drain(..) {
                buf.recycle().expect("the ring is consumed every batch");
            }
            assert_eq!(consume(&zcrx), BATCH as u32);
        })
    });
    g.bench_function("uring-zcrx drop", |b| {
        b.iter(|| {
            hand_out(&zcrx, &mut next, &mut bufs);
            bufs.clear();
            assert_eq!(consume(&zcrx), BATCH as u32);
        })
    });
    g.bench_function("uring-zcrx release_all", |b| {
        b.iter(|| {
            hand_out(&zcrx, &mut next, &mut bufs);
            assert_eq!(zcrx.recycle_all(bufs.drain(..)), BATCH);
            assert_eq!(consume(&zcrx), BATCH as u32);
        })
    });

    let mut raw = RawRefill::new(ENTRIES, AREA);
    let mut pending = [(0u64, 0u32); BATCH];
    g.bench_function("io-uring (raw rqes)", |b| {
        b.iter(|| {
            for p in &mut pending {
                let off = raw.token | offset(next);
                let len = black_box(1500);
                black_box(raw.bytes(off, len).expect("inside the area")[0]);
                *p = (off, len);
                next += 1;
            }
            for &(off, len) in &pending {
                assert!(raw.release(off, len), "the ring is consumed every batch");
            }
            assert_eq!(raw.consume(), BATCH as u32);
        })
    });
    g.finish();
}

criterion_group!(benches, release);
criterion_main!(benches);
