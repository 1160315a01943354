//! Provided-buffer bookkeeping costs, with the `io-uring` crate's raw
//! buffer-ring entries (`types::BufRingEntry`) in the same groups:
//!
//! - `recycle`: hand one buffer out (as a CQE would) and give it back: for
//!   uring-buffers, `take_id` + `recycle` (ownership checks, ring entry,
//!   release store of the tail); for the io-uring crate, the minimum a
//!   caller must do by hand: write the entry and store the tail.
//! - `bundle`: take a bundle of 8 buffers, visit every part, recycle them
//!   (uring-buffers), against walking and re-adding 8 raw entries.
//!
//! No kernel call is timed: the ring is registered once; only the
//! user-space side of the protocol is measured.
//!
//! Run: `cargo bench -p uring-buffers --bench bufring`.

use std::hint::black_box;
use std::sync::atomic::{AtomicU16, Ordering};

use criterion::{Criterion, criterion_group, criterion_main};
use io_uring::types::BufRingEntry;
use uring_buffers::{BufRing, BufRingConfig};
use uring_core::{Options, Ring};

const ENTRIES: u32 = 256;
const SIZE: u32 = 2048;

/// The io-uring crate's side: ring entries in memory of our own, and the
/// buffers, managed by hand as its users do.
struct Raw {
    ring: Vec<BufRingEntry>,
    data: Vec<u8>,
    tail: u16,
    head: u16,
}

impl Raw {
    fn new() -> Self {
        // SAFETY: BufRingEntry is a plain C struct; all zeroes is valid.
        let ring = (0..ENTRIES).map(|_| unsafe { std::mem::zeroed::<BufRingEntry>() }).collect();
        Raw { ring, data: vec![0; (ENTRIES * SIZE) as usize], tail: 0, head: 0 }
    }

    #[inline(never)]
    fn add(&mut self, bid: u16) {
        let e = &mut self.ring[usize::from(self.tail) & (ENTRIES as usize - 1)];
        e.set_addr(self.data.as_ptr() as u64 + u64::from(bid) * u64::from(SIZE));
        e.set_len(SIZE);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: the tail overlays entry 0's resv, inside `ring`.
        let tail = unsafe { BufRingEntry::tail(self.ring.as_ptr()) }.cast::<AtomicU16>();
        // SAFETY: as above; aligned u16.
        unsafe { &*tail }.store(self.tail, Ordering::Release);
    }

    /// The next entry's buffer as a CQE of `len` bytes would name it.
    #[inline(never)]
    fn take(&mut self, len: usize) -> (u16, &[u8]) {
        let e = &self.ring[usize::from(self.head) & (ENTRIES as usize - 1)];
        self.head = self.head.wrapping_add(1);
        let bid = e.bid();
        (bid, &self.data[usize::from(bid) * SIZE as usize..][..len])
    }
}

fn registered() -> (Ring, BufRing) {
    let mut ring = Ring::new(Options::default().entries(8)).expect("ring");
    let br = BufRing::register(&mut ring, BufRingConfig::new(1, ENTRIES, SIZE)).expect("buffer ring");
    ring.start().expect("start");
    (ring, br)
}

fn recycle(c: &mut Criterion) {
    let mut g = c.benchmark_group("recycle");
    let (_ring, mut br) = registered();
    let mut next = 0u16;
    g.bench_function("uring-buffers", |b| {
        b.iter(|| {
            // SAFETY: nothing is ever submitted on this ring, so the kernel
            // selects no buffer: each id stands for a CQE presented once,
            // in ring order, as the kernel would post it.
            let buf = unsafe { br.take_id(next, black_box(100), false) }.unwrap().unwrap();
            black_box(br.bytes(&buf)[0]);
            br.recycle(buf).unwrap();
            next = (next + 1) % ENTRIES as u16;
        })
    });
    let mut raw = Raw::new();
    for bid in 0..ENTRIES as u16 {
        raw.add(bid);
    }
    g.bench_function("io-uring (raw entries)", |b| {
        b.iter(|| {
            let (bid, bytes) = raw.take(black_box(100));
            black_box(bytes[0]);
            raw.add(bid);
        })
    });
    g.finish();
}

fn bundle(c: &mut Criterion) {
    let mut g = c.benchmark_group("bundle");
    let (_ring, mut br) = registered();
    let mut next = 0u16;
    let len = (SIZE * 7 + 100) as i32;
    g.bench_function("uring-buffers", |b| {
        b.iter(|| {
            // SAFETY: as in `recycle`: no kernel selection can race this.
            let bundle = unsafe { br.take_bundle_id(next, black_box(len)) }.unwrap();
            let mut sum = 0usize;
            for part in br.bundle(&bundle) {
                sum += part.len() + usize::from(part[0]);
            }
            black_box(sum);
            br.recycle_bundle(bundle).unwrap();
            next = (next + 8) % ENTRIES as u16;
        })
    });
    let mut raw = Raw::new();
    for bid in 0..ENTRIES as u16 {
        raw.add(bid);
    }
    g.bench_function("io-uring (raw entries)", |b| {
        b.iter(|| {
            let mut left = black_box(len) as usize;
            let mut bids = [0u16; 8];
            let mut sum = 0usize;
            for slot in &mut bids {
                let n = left.min(SIZE as usize);
                let (bid, bytes) = raw.take(n);
                sum += bytes.len() + usize::from(bytes[0]);
                left -= n;
                *slot = bid;
            }
            black_box(sum);
            for bid in bids {
                raw.add(bid);
            }
        })
    });
    g.finish();
}

criterion_group!(benches, recycle, bundle);
criterion_main!(benches);
