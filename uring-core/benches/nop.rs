//! NOP submit-and-reap throughput: ~10,000 NOPs per iteration, submitted in
//! batches of 1, 8, 32 and 128 and all reaped, through `uring-core` and
//! through the `io-uring` crate, in one criterion group per batch size so
//! the ratios come from the same run.
//!
//! Both rings use the same setup: `SINGLE_ISSUER | DEFER_TASKRUN |
//! NO_SQARRAY` (uring-core's default; the io-uring crate via its builder),
//! 256 SQ entries, CQ of 512. Per batch: push `batch` NOPs, one
//! `submit_and_wait(batch)`, reap every CQE.
//!
//! - `uring-core/completions`: reaped with the zero-copy `completions()` pass;
//! - `uring-core/wait`: reaped with `wait()` into caller slots (a copy);
//! - `io-uring`: `submission().push`, `submit_and_wait`, `completion()` iteration.
//!
//! Each iteration checks that every NOP came back, so a broken path cannot
//! be measured as a fast one.
//!
//! Run: `cargo bench -p uring-core --bench nop`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use uring_core::{CqeSlot, Options, Ring, Sqe, sys};

const PER_ITER: u64 = 10_000;
const BATCHES: [u64; 4] = [1, 8, 32, 128];

fn core_ring() -> Ring {
    let mut ring = Ring::new(Options::default().entries(256).cq_entries(512)).expect("uring-core ring");
    ring.start().expect("start");
    ring
}

fn peer_ring() -> io_uring::IoUring {
    io_uring::IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_no_sqarray()
        .setup_cqsize(512)
        .build(256)
        .expect("io-uring crate ring")
}

/// One iteration through uring-core: `rounds` batches of `batch` NOPs,
/// reaped with the zero-copy pass (`zero_copy`) or `wait` into `slots`.
/// Kept out of line so each implementation is compiled on its own.
#[inline(never)]
fn core_iteration(ring: &mut Ring, slots: &mut [CqeSlot], batch: u64, rounds: u64, zero_copy: bool) -> u64 {
    let mut reaped = 0u64;
    for round in 0..rounds {
        for i in 0..batch {
            let mut sqe = Sqe::new(sys::IORING_OP_NOP as u8);
            sqe.user_data = black_box(round * batch + i);
            // SAFETY: a NOP names no memory.
            unsafe { ring.push(&sqe) }.unwrap();
        }
        ring.submit_and_wait(batch as u32).unwrap();
        if zero_copy {
            let mut pass = ring.completions().unwrap();
            while let Some(cqe) = pass.next() {
                black_box(cqe.user_data());
                reaped += 1;
            }
        } else {
            let done = ring.reap(slots).unwrap();
            for cqe in done.iter() {
                black_box(cqe.user_data());
            }
            reaped += done.len() as u64;
        }
    }
    reaped
}

/// One iteration through the io-uring crate, the same work.
#[inline(never)]
fn peer_iteration(peer: &mut io_uring::IoUring, batch: u64, rounds: u64) -> u64 {
    let mut reaped = 0u64;
    for round in 0..rounds {
        for i in 0..batch {
            let nop = io_uring::opcode::Nop::new().build().user_data(black_box(round * batch + i));
            // SAFETY: a NOP names no memory.
            unsafe { peer.submission().push(&nop) }.unwrap();
        }
        peer.submit_and_wait(batch as usize).unwrap();
        for cqe in peer.completion() {
            black_box(cqe.user_data());
            reaped += 1;
        }
    }
    reaped
}

fn nop_batches(c: &mut Criterion) {
    let mut ring = core_ring();
    let mut peer = peer_ring();
    let mut slots = vec![CqeSlot::EMPTY; 128];

    for batch in BATCHES {
        let rounds = PER_ITER / batch;
        let total = rounds * batch;
        let mut group = c.benchmark_group(format!("nop_batch_{batch}"));
        group.throughput(Throughput::Elements(total));
        group.measurement_time(Duration::from_secs(3)).sample_size(20).warm_up_time(Duration::from_secs(1));
        group.bench_function(BenchmarkId::new("uring-core", "completions"), |b| {
            b.iter(|| assert_eq!(core_iteration(&mut ring, &mut slots, batch, rounds, true), total))
        });
        group.bench_function(BenchmarkId::new("uring-core", "wait"), |b| {
            b.iter(|| assert_eq!(core_iteration(&mut ring, &mut slots, batch, rounds, false), total))
        });
        group.bench_function(BenchmarkId::new("io-uring", "completion"), |b| {
            b.iter(|| assert_eq!(peer_iteration(&mut peer, batch, rounds), total))
        });
        group.finish();
    }
}

criterion_group!(benches, nop_batches);
criterion_main!(benches);
