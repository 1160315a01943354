//! Cost of one `io_uring_enter` that has nothing to do (no SQEs, no wait):
//! the pure syscall-entry overhead every batch pays once.
//!
//! Three ways to issue it, in one group so the ratios come from one run:
//! - `uring-sys`: this crate's wrapper (inline `syscall` instruction);
//! - `libc::syscall`: glibc's variadic wrapper, which also writes `errno`;
//! - `io-uring`: the `io-uring` crate's `Submitter::enter`.
//!
//! Run: `cargo bench -p uring-sys --bench enter`.

use std::hint::black_box;
use std::os::fd::AsRawFd;
use std::ptr;

use criterion::{Criterion, criterion_group, criterion_main};
use uring_sys::{io_uring_enter, io_uring_params, io_uring_setup};

fn enter_nothing(c: &mut Criterion) {
    let mut params = io_uring_params::default();
    // SAFETY: valid params; no flag hands the kernel memory of ours.
    let fd = unsafe { io_uring_setup(8, &mut params) }.expect("io_uring_setup");
    let peer = io_uring::IoUring::new(8).expect("io-uring crate ring");

    let mut group = c.benchmark_group("enter_nothing");
    group.bench_function("uring-sys", |b| {
        b.iter(|| {
            // SAFETY: a live ring fd, nothing submitted, no signal mask.
            let n = unsafe { io_uring_enter(black_box(fd), 0, 0, 0, ptr::null()) };
            black_box(n.unwrap())
        })
    });
    group.bench_function("libc::syscall", |b| {
        b.iter(|| {
            // SAFETY: as above, through glibc's syscall(3).
            let n = unsafe {
                libc::syscall(libc::SYS_io_uring_enter, black_box(fd), 0u32, 0u32, 0u32, ptr::null::<u8>(), 0usize)
            };
            assert!(n >= 0);
            black_box(n)
        })
    });
    group.bench_function("io-uring", |b| {
        b.iter(|| {
            // SAFETY: nothing submitted, no argument.
            let n = unsafe { peer.submitter().enter::<libc::sigset_t>(black_box(0), 0, 0, None) };
            black_box(n.unwrap())
        })
    });
    group.finish();
    let _ = peer.as_raw_fd();
    // SAFETY: `fd` came from io_uring_setup above and is not used again.
    unsafe { libc::close(fd) };
}

criterion_group!(benches, enter_nothing);
criterion_main!(benches);
