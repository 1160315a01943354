//! The direct-context submit and reap paths allocate nothing once the ring
//! is started: a counting global allocator proves it.
//!
//! One test in this binary, so no other test thread allocates while the
//! counter is armed (the counter is per thread anyway).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use uring_core::{CqeSlot, Error, Options, Ring, Sqe, SqeContext, SqeFlags, sys};

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
    COUNT.with(|c| c.get())
}

#[test]
fn direct_submit_and_reap_allocate_nothing() {
    // The counter works: a Vec allocates.
    assert_eq!(allocations(|| drop(std::hint::black_box(vec![1u8; 10]))), 1);

    let mut ring = Ring::new(Options::default().entries(64)).unwrap();
    ring.start().unwrap();
    let mut slots = [CqeSlot::EMPTY; 16];
    let mut seen = 0u64;
    let mut fd_sum = 0i64;

    let n = allocations(|| {
        for round in 0..1_000u32 {
            for i in 0..8 {
                let ctx = SqeContext::packed(sys::IORING_OP_NOP as u8, SqeFlags::ASYNC, 7, (round * 8 + i) as i32);
                let mut sqe = Sqe::new(sys::IORING_OP_NOP as u8);
                sqe.set_context(ctx);
                // SAFETY: a NOP names no memory.
                unsafe { ring.push(&sqe) }.unwrap();
            }
            if round % 2 == 0 {
                ring.submit().unwrap();
                let done = ring.wait_for(&mut slots, 8, Some(Duration::from_secs(5))).unwrap();
                for c in done.iter() {
                    let ctx = c.context();
                    assert_eq!((ctx.op(), ctx.buf_group()), (Some(sys::IORING_OP_NOP as u8), Some(7)));
                    fd_sum += i64::from(c.fd().unwrap());
                    seen += 1;
                }
            } else {
                ring.submit_and_wait(8).unwrap();
                let mut pass = ring.completions().unwrap();
                while let Some(c) = pass.next() {
                    fd_sum += i64::from(c.context().fd().unwrap());
                    seen += 1;
                }
            }
        }
        // Outcomes met in normal operation allocate nothing either.
        assert!(matches!(ring.reap(&mut slots), Err(Error::WouldBlock)));
        for _ in 0..64 {
            // SAFETY: a NOP names no memory.
            unsafe { ring.push(&Sqe::new(sys::IORING_OP_NOP as u8)) }.unwrap();
        }
        // SAFETY: as above.
        assert!(matches!(unsafe { ring.push(&Sqe::new(sys::IORING_OP_NOP as u8)) }, Err(Error::QueueFull { .. })));
    });
    assert_eq!(n, 0, "the direct submit/reap path allocated {n} times");
    assert_eq!(seen, 8_000, "every completion was reaped");
    assert_eq!(fd_sum, (0..8_000i64).sum::<i64>(), "every context came back intact");
}
