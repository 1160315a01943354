//! What a typed operation costs to prepare, against the `io-uring` crate's
//! builders, one criterion group per operation so each ratio comes from
//! the same run:
//!
//! - `uring-ops`: `Op::new(..)` with its setters, then
//!   [`Prepare::prepare`] into an [`Sqe`] and a [`Keep`] (what
//!   `RingOps::push_op` does after acquiring the slot);
//! - `io-uring`: `opcode::Op::new(..)` with its setters, then `.build()`
//!   (a 64-byte `Entry` by value).
//!
//! Inputs go through `black_box`, and so does the prepared entry. Path
//! operations differ in kind, not only in speed: `OpenAt` converts the
//! path to a `CString` and moves it into the slot's `Keep` (so the push is
//! safe), while the io-uring crate takes a `*const c_char` the caller keeps
//! alive; the `io-uring + CString` line adds that conversion to the peer
//! for an equal-work comparison.
//!
//! The `push` group measures the ring path: 32 NOPs queued with
//! `push_op` (check, acquire with Keep, prepare, stamp the context), one
//! `submit_and_wait(32)`, all reaped; against uring-core's raw
//! `Ring::push` of a ready SQE and the io-uring crate's
//! `submission().push`, with the same submit and reap.
//!
//! `timeout` differs in kind too: `Timeout` copies its timespec into the
//! slot's `Keep` (safe), the io-uring crate points at a `Timespec` the
//! caller keeps alive.
//!
//! Run: `cargo bench -p uring-ops --bench prep`.

use std::ffi::CString;
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use io_uring::{opcode, types};
use uring_core::{Keep, Options, Ring, Sqe, SqeContext, sys};
use uring_ops::Prepare;
use uring_ops::RingOps;
use uring_ops::cmd::Nop;
use uring_ops::file::{Read, Readv, Write};
use uring_ops::fs::OpenAt;
use uring_ops::net::{Recv, Send};
use uring_ops::timeout::Timeout;

const BATCH: u32 = 32;

fn prep(c: &mut Criterion) {
    let mut buf = [0u8; 4096];
    let iovecs = [libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: 4096 }; 3];
    let path = "/tmp/uring-ops-bench-path";
    let cpath = CString::new(path).unwrap();
    let mut sqe = Sqe::default();
    let mut keep = Keep::new();

    let mut g = c.benchmark_group("prep/nop");
    g.bench_function("uring-ops", |b| {
        b.iter(|| {
            black_box(Nop::new()).prepare(&mut sqe, &mut keep);
            black_box(&sqe);
        })
    });
    g.bench_function("io-uring", |b| b.iter(|| black_box(opcode::Nop::new().build())));
    g.finish();

    let mut g = c.benchmark_group("prep/read");
    g.bench_function("uring-ops", |b| {
        b.iter(|| {
            // SAFETY: only prepared, never pushed.
            unsafe { Read::new(black_box(5), black_box(&mut buf[..])) }
                .offset(black_box(8192))
                .prepare(&mut sqe, &mut keep);
            black_box(&sqe);
        })
    });
    g.bench_function("io-uring", |b| {
        b.iter(|| {
            black_box(
                opcode::Read::new(types::Fd(black_box(5)), black_box(buf.as_mut_ptr()), black_box(4096))
                    .offset(black_box(8192))
                    .build(),
            )
        })
    });
    g.finish();

    let mut g = c.benchmark_group("prep/write");
    g.bench_function("uring-ops", |b| {
        b.iter(|| {
            // SAFETY: only prepared, never pushed.
            unsafe { Write::new(black_box(5), black_box(&buf[..])) }
                .offset(black_box(8192))
                .prepare(&mut sqe, &mut keep);
            black_box(&sqe);
        })
    });
    g.bench_function("io-uring", |b| {
        b.iter(|| {
            black_box(
                opcode::Write::new(types::Fd(black_box(5)), black_box(buf.as_ptr()), black_box(4096))
                    .offset(black_box(8192))
                    .build(),
            )
        })
    });
    g.finish();

    let mut g = c.benchmark_group("prep/send");
    g.bench_function("uring-ops", |b| {
        b.iter(|| {
            // SAFETY: only prepared, never pushed.
            unsafe { Send::new(black_box(5), black_box(&buf[..])) }.prepare(&mut sqe, &mut keep);
            black_box(&sqe);
        })
    });
    g.bench_function("io-uring", |b| {
        b.iter(|| {
            black_box(opcode::Send::new(types::Fd(black_box(5)), black_box(buf.as_ptr()), black_box(4096)).build())
        })
    });
    g.finish();

    let mut g = c.benchmark_group("prep/recv");
    g.bench_function("uring-ops", |b| {
        b.iter(|| {
            // SAFETY: only prepared, never pushed.
            unsafe { Recv::new(black_box(5), black_box(&mut buf[..])) }.prepare(&mut sqe, &mut keep);
            black_box(&sqe);
        })
    });
    g.bench_function("io-uring", |b| {
        b.iter(|| {
            black_box(opcode::Recv::new(types::Fd(black_box(5)), black_box(buf.as_mut_ptr()), black_box(4096)).build())
        })
    });
    g.finish();

    let mut g = c.benchmark_group("prep/timeout");
    g.bench_function("uring-ops", |b| {
        b.iter(|| {
            Timeout::new(black_box(Duration::from_millis(10))).prepare(&mut sqe, &mut keep);
            black_box(&sqe);
        })
    });
    let ts = types::Timespec::from(Duration::from_millis(10));
    g.bench_function("io-uring", |b| b.iter(|| black_box(opcode::Timeout::new(black_box(&ts)).build())));
    g.finish();

    let mut g = c.benchmark_group("prep/readv");
    g.bench_function("uring-ops", |b| {
        b.iter(|| {
            // SAFETY: only prepared, never pushed.
            unsafe { Readv::new(black_box(5), black_box(&iovecs[..])) }
                .offset(black_box(8192))
                .prepare(&mut sqe, &mut keep);
            black_box(&sqe);
        })
    });
    g.bench_function("io-uring", |b| {
        b.iter(|| {
            black_box(
                opcode::Readv::new(types::Fd(black_box(5)), black_box(iovecs.as_ptr()), black_box(3))
                    .offset(black_box(8192))
                    .build(),
            )
        })
    });
    g.finish();

    let mut g = c.benchmark_group("prep/openat");
    g.bench_function("uring-ops", |b| {
        b.iter(|| {
            OpenAt::new(black_box(libc::AT_FDCWD), black_box(path), black_box(libc::O_RDONLY), black_box(0))
                .prepare(&mut sqe, &mut keep);
            black_box(&sqe);
        })
    });
    g.bench_function("io-uring", |b| {
        b.iter(|| {
            black_box(
                opcode::OpenAt::new(types::Fd(black_box(libc::AT_FDCWD)), black_box(cpath.as_ptr()))
                    .flags(black_box(libc::O_RDONLY))
                    .mode(black_box(0))
                    .build(),
            )
        })
    });
    g.bench_function("io-uring + CString", |b| {
        b.iter(|| {
            let owned = CString::new(black_box(path)).unwrap();
            let e = opcode::OpenAt::new(types::Fd(black_box(libc::AT_FDCWD)), owned.as_ptr())
                .flags(black_box(libc::O_RDONLY))
                .mode(black_box(0))
                .build();
            black_box((e, owned))
        })
    });
    g.finish();
}

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

/// Reaps every ready CQE; returns how many.
fn reap_all(ring: &mut Ring) -> u32 {
    let mut pass = ring.completions().unwrap();
    let mut n = 0;
    while let Some(cqe) = pass.next() {
        black_box(cqe.user_data());
        n += 1;
    }
    n
}

#[inline(never)]
fn ops_round(ring: &mut Ring) {
    for i in 0..BATCH {
        ring.push_op(SqeContext::for_fd(black_box(i as i32)), Nop::new()).unwrap();
    }
    ring.submit_and_wait(BATCH).unwrap();
    assert_eq!(reap_all(ring), BATCH);
}

#[inline(never)]
fn core_round(ring: &mut Ring) {
    for i in 0..BATCH {
        let mut sqe = Sqe::new(sys::IORING_OP_NOP as u8);
        sqe.user_data = black_box(u64::from(i) << 2);
        // SAFETY: a NOP names no memory.
        unsafe { ring.push(&sqe) }.unwrap();
    }
    ring.submit_and_wait(BATCH).unwrap();
    assert_eq!(reap_all(ring), BATCH);
}

#[inline(never)]
fn peer_round(peer: &mut io_uring::IoUring) {
    for i in 0..BATCH {
        let e = opcode::Nop::new().build().user_data(black_box(u64::from(i)));
        // SAFETY: a NOP names no memory.
        unsafe { peer.submission().push(&e) }.unwrap();
    }
    peer.submit_and_wait(BATCH as usize).unwrap();
    let mut n = 0;
    for cqe in peer.completion() {
        black_box(cqe.user_data());
        n += 1;
    }
    assert_eq!(n, BATCH);
}

fn push(c: &mut Criterion) {
    let mut g = c.benchmark_group("push/32-nops");
    let mut ring = core_ring();
    g.bench_function("uring-ops push_op", |b| b.iter(|| ops_round(&mut ring)));
    let mut ring = core_ring();
    g.bench_function("uring-core push", |b| b.iter(|| core_round(&mut ring)));
    let mut peer = peer_ring();
    g.bench_function("io-uring", |b| b.iter(|| peer_round(&mut peer)));
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = prep, push
}
criterion_main!(benches);
