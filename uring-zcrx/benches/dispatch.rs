//! CQE-to-handler dispatch: the cost, per CQE, of taking a `RECV_ZC` data
//! completion to the handler with its buffer and giving the buffer back,
//! with the same work written by hand on the `io-uring` crate's 32-byte
//! CQE type (`cqueue::Entry32`) in the same group.
//!
//! - `uring-zcrx receiver`: [`ZcrxReceiver`]'s routing (tag and stream
//!   check, state, the `F_MORE` test, the buffer's range check against the
//!   area, byte counters) into a [`ZcrxHandler`] that reads a byte of the
//!   buffer and releases it into the refill ring.
//! - `io-uring (hand-written)`: what a caller of the `io-uring` crate
//!   writes: compare `user_data`, test `F_MORE` and the result, read the
//!   offset from `big_cqe()`, check the area token and bounds, slice the
//!   area, call the same handler logic through a closure, write the refill
//!   entry and store the tail. No state machine, no ownership tracking.
//!
//! The CQEs are made in user memory (a detached instance: library memory
//! laid out as the kernel lays it out, its refill ring consumed by the
//! bench as the kernel would), so only the user-space path is timed.
//! Batches of 32 CQEs; criterion reports the cost per CQE.
//! Run: `cargo bench -p uring-zcrx --bench dispatch`.

mod raw;

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use io_uring::cqueue::Entry32;
use raw::RawRefill;
use uring_core::{Options, Ring};
use uring_zcrx::zcrx::bench_support::{consume, detached};
use uring_zcrx::{ZcrxBuffer, ZcrxHandler, ZcrxReceiver};

const ENTRIES: u32 = 256;
const BUF: u32 = 4096;
const AREA: usize = 1 << 20;
const NIOVS: u64 = (AREA / BUF as usize) as u64;
const BATCH: usize = 32;
const LEN: i32 = 1448;

/// Reads a byte of each buffer and releases it.
struct Touch(u64);

impl ZcrxHandler for Touch {
    #[inline]
    fn on_data(&mut self, buf: ZcrxBuffer) -> bool {
        self.0 += u64::from(buf.as_slice()[0]) + buf.len() as u64;
        buf.recycle().is_ok()
    }
}

/// A 32-byte CQE as the kernel posts it, in the `io-uring` crate's type.
fn entry32(user_data: u64, res: i32, flags: u32, off: u64) -> Entry32 {
    #[repr(C)]
    struct RawCqe {
        user_data: u64,
        res: i32,
        flags: u32,
        big: [u64; 2],
    }
    let raw = RawCqe { user_data, res, flags, big: [off, 0] };
    // SAFETY: `Entry32` is `#[repr(C)]` over the kernel's 16-byte CQE and
    // two u64s, the layout of `RawCqe`; every bit pattern is valid.
    unsafe { std::mem::transmute::<RawCqe, Entry32>(raw) }
}

/// The hand-written consumer side on the `io-uring` crate.
struct Raw {
    refill: RawRefill,
    user_data: u64,
    bytes: u64,
}

impl Raw {
    /// Routes one CQE: true if it was ours.
    #[inline(never)]
    fn dispatch(&mut self, cqe: &Entry32, mut on_data: impl FnMut(&[u8]) -> bool) -> bool {
        if cqe.user_data() != self.user_data {
            return false;
        }
        let res = cqe.result();
        if cqe.flags() & uring_sys::IORING_CQE_F_MORE == 0 || res <= 0 {
            return true; // the end of the stream: not part of this bench
        }
        let off = cqe.big_cqe()[0];
        let Some(bytes) = self.refill.bytes(off, res as u32) else { return true };
        self.bytes += res as u64;
        on_data(bytes);
        assert!(self.refill.release(off, res as u32), "refill ring full");
        true
    }
}

fn dispatch(c: &mut Criterion) {
    let mut g = c.benchmark_group("dispatch");
    g.throughput(Throughput::Elements(BATCH as u64));
    let more = uring_sys::IORING_CQE_F_MORE;

    let mut ring = Ring::new(Options::default().entries(8)).expect("ring");
    ring.start().expect("start");
    let zcrx = detached(AREA, ENTRIES);
    let mut rx = ZcrxReceiver::new(&zcrx, Touch(0));
    rx.bench_activate();
    let ud = rx.token();
    let mut next = 0u64;
    g.bench_function("uring-zcrx receiver", |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                let off = (next % NIOVS) * u64::from(BUF);
                next += 1;
                // SAFETY: the CQE names a range of the detached area, which
                // no kernel writes.
                let mine = unsafe { rx.bench_dispatch(&mut ring, black_box(ud), black_box(LEN), more, [off, 0]) };
                assert!(mine);
            }
            assert_eq!(consume(&zcrx), BATCH as u32);
        })
    });
    assert_eq!(rx.received().0, next * LEN as u64, "every CQE reached the handler");

    let mut raw = Raw { refill: RawRefill::new(ENTRIES, AREA), user_data: 0x5a5a, bytes: 0 };
    let mut sum = 0u64;
    let mut next = 0u64;
    let ud = raw.user_data;
    g.bench_function("io-uring (hand-written)", |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                let off = raw.refill.token | ((next % NIOVS) * u64::from(BUF));
                next += 1;
                let cqe = entry32(black_box(ud), black_box(LEN), more, off);
                let mine = raw.dispatch(&cqe, |bytes| {
                    sum += u64::from(bytes[0]) + bytes.len() as u64;
                    true
                });
                assert!(mine);
            }
            assert_eq!(raw.refill.consume(), BATCH as u32);
        })
    });
    assert_eq!(raw.bytes, next * LEN as u64, "every CQE reached the handler");
    black_box(sum);
    g.finish();
}

criterion_group!(benches, dispatch);
criterion_main!(benches);
