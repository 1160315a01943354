//! Submitting operations through `push_op` with packed contexts allocates
//! nothing: not a NOP, not a timeout (its timespec goes inline into the
//! slot's Keep), not a read into a caller buffer, and neither does reaping
//! them. A counting global allocator proves it.
//!
//! One test in this binary, so no other test thread allocates while the
//! counter is armed (the counter is per thread anyway).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use uring_core::{CqeSlot, Options, Ring, SqeContext};
use uring_ops::cmd::Nop;
use uring_ops::file::Read;
use uring_ops::prelude::*;
use uring_ops::timeout::Timeout;

struct Counting;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<usize> = const { Cell::new(0) };
}

fn note() {
    // `try_with`: allocation can happen while thread locals are torn down.
    let _ = ARMED.try_with(|armed| {
        if armed.get() {
            let _ = COUNT.try_with(|c| c.set(c.get() + 1));
        }
    });
}

// SAFETY: forwards every call to the system allocator unchanged; counting
// touches only const-initialized thread locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: forwarded contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: forwarded contract.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: forwarded contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `f` with the counter armed and returns how many allocations it made.
fn allocations(f: impl FnOnce()) -> usize {
    COUNT.with(|c| c.set(0));
    ARMED.with(|a| a.set(true));
    f();
    ARMED.with(|a| a.set(false));
    COUNT.with(Cell::get)
}

#[test]
fn push_op_and_reap_allocate_nothing() {
    let mut ring = Ring::new(Options::default().entries(64)).expect("Ring::new (see SETUP.md)");
    ring.start().unwrap();
    let file = std::fs::File::open("/proc/self/exe").unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
    let mut buf = [0u8; 64];
    let mut slots = [CqeSlot::EMPTY; 64];
    let mut seen = 0usize;
    // Warm up once (thread locals, lazily sized internals).
    ring.push_op(SqeContext::for_fd(-1), Nop::new()).unwrap();
    ring.submit_and_wait(1).unwrap();
    let _ = ring.reap(&mut slots).unwrap();
    let n = allocations(|| {
        for round in 0..100u64 {
            let ctx = SqeContext::for_fd(fd).with_buf_group(round as u16);
            ring.push_op(ctx, Nop::new()).unwrap();
            ring.push_op(ctx, Timeout::new(Duration::from_nanos(1))).unwrap();
            // SAFETY: `buf` outlives the read: it is reaped below before
            // the next round reuses it.
            let read = unsafe { Read::new(fd, &mut buf) };
            ring.push_op(ctx, read.offset(0)).unwrap();
            ring.submit_and_wait(3).unwrap();
            let mut got = 0;
            while got < 3 {
                let done = ring.wait_for(&mut slots, 3 - got, Some(Duration::from_secs(5))).unwrap();
                got += done.len() as u32;
                for c in done.iter() {
                    assert!(c.res() >= 0 || c.res() == -libc::ETIME, "{c:?}");
                }
            }
            seen += got as usize;
        }
    });
    assert_eq!(seen, 300, "every operation completed");
    assert_eq!(&buf[1..4], b"ELF", "the reads really read");
    assert_eq!(n, 0, "allocations on the push_op path");
}
