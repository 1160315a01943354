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
//! - `uring-zcrx release`: [`ZcrxBuffer::release`] per buffer (range check
//!   at hand-out, lock, entry, release store of the tail, counters).
//! - `uring-zcrx drop`: the same through the buffer's `Drop`.
//! - `uring-zcrx release_all`: one [`Zcrx::release_all`] for the batch (one
//!   lock and one tail store).
//! - `io-uring (raw rqes)`: what an `io-uring` crate user writes by hand
//!   (the crate has the entry type and no producer): slice the area at the
//!   CQE's offset, write the entry, store the tail; no ownership tracking,
//!   so nothing stops a double release.
//!
//! No kernel call is timed: the instance is detached (library memory laid
//! out as the kernel lays it out, consumed by the bench as the kernel
//! would). Run: `cargo bench -p uring-zcrx --bench refill`.

use std::hint::black_box;
use std::sync::atomic::{AtomicU32, Ordering};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use io_uring::types::io_uring_zcrx_rqe;
use uring_zcrx::zcrx::bench_support::{buffer, consume, detached};
use uring_zcrx::{Zcrx, ZcrxBuffer};

const ENTRIES: u32 = 256;
const BUF: u32 = 4096;
const AREA: usize = 1 << 20;
const NIOVS: u64 = (AREA / BUF as usize) as u64;
const BATCH: usize = 32;

/// The hand-written producer an `io-uring` crate user needs: the refill
/// ring's head, tail and entries (here in memory of our own, laid out as
/// the kernel lays them out), and the area.
struct Raw {
    head: AtomicU32,
    tail: AtomicU32,
    rqes: Vec<io_uring_zcrx_rqe>,
    area: Vec<u8>,
    token: u64,
    local_tail: u32,
    /// The head as last read: reloaded only when the ring looks full.
    cached_head: u32,
}

impl Raw {
    fn new() -> Self {
        // SAFETY: the entry is a plain C struct of integers; zero is valid.
        let rqes = (0..ENTRIES).map(|_| unsafe { std::mem::zeroed::<io_uring_zcrx_rqe>() }).collect();
        Raw {
            head: AtomicU32::new(0),
            tail: AtomicU32::new(0),
            rqes,
            area: vec![0; AREA],
            token: 0,
            local_tail: 0,
            cached_head: 0,
        }
    }

    /// The bytes a data CQE names: its offset word (area token | offset)
    /// and length, bounds-checked.
    #[inline(never)]
    fn bytes(&self, off: u64, len: u32) -> &[u8] {
        let start = (off & !uring_sys::IORING_ZCRX_AREA_MASK) as usize;
        &self.area[start..start + len as usize]
    }

    /// One release: entry, then the tail with release ordering.
    #[inline(never)]
    fn release(&mut self, off: u64, len: u32) -> bool {
        if self.local_tail.wrapping_sub(self.cached_head) >= ENTRIES {
            self.cached_head = self.head.load(Ordering::Acquire);
            if self.local_tail.wrapping_sub(self.cached_head) >= ENTRIES {
                return false;
            }
        }
        let e = &mut self.rqes[(self.local_tail & (ENTRIES - 1)) as usize];
        e.off = off;
        e.len = len;
        self.local_tail = self.local_tail.wrapping_add(1);
        self.tail.store(self.local_tail, Ordering::Release);
        true
    }

    /// The kernel's part.
    fn consume(&self) -> u32 {
        let t = self.tail.load(Ordering::Acquire);
        let h = self.head.load(Ordering::Relaxed);
        let mut sum = 0u64;
        let mut i = h;
        while i != t {
            sum = sum.wrapping_add(self.rqes[(i & (ENTRIES - 1)) as usize].off);
            i = i.wrapping_add(1);
        }
        black_box(sum);
        self.head.store(t, Ordering::Release);
        t.wrapping_sub(h)
    }
}

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
                buf.release().expect("the ring is consumed every batch");
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
            assert_eq!(zcrx.release_all(bufs.drain(..)), BATCH);
            assert_eq!(consume(&zcrx), BATCH as u32);
        })
    });

    let mut raw = Raw::new();
    let mut pending = [(0u64, 0u32); BATCH];
    g.bench_function("io-uring (raw rqes)", |b| {
        b.iter(|| {
            for p in &mut pending {
                let off = raw.token | offset(next);
                let len = black_box(1500);
                black_box(raw.bytes(off, len)[0]);
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
