//! The receive path allocates nothing: reaping, routing a data CQE to the
//! handler, handing out the buffer, releasing it through the refill ring,
//! and the flushes of an instance without a device. Counted with a global
//! allocator, on the receiving thread only, over a megabyte of steady
//! state (7.2+, in `cargo xtask vm-test`; the host says why it skipped).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use common::{Verify, fd, nodev, send_pattern, tcp_pair};
use uring_core::{CqeSize, CqeSlot, Error as CoreError};
use uring_ops::prelude::HandleCqe;
use uring_zcrx::{ZcrxEnd, ZcrxReceiver};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

fn note() {
    // `try_with`: the thread-locals may already be gone while a thread
    // exits; nothing is counted then.
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            let _ = COUNT.try_with(|c| c.set(c.get() + 1));
        }
    });
}

// SAFETY: forwards every call to the system allocator unchanged; the
// bookkeeping touches only thread-locals of plain integers.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded; `ptr` came from `System.alloc` with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        note();
        // SAFETY: forwarded with the caller's pointer and layouts.
        unsafe { System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

#[test]
fn steady_state_receive_allocates_nothing() {
    // A 1 MiB area and a 256-entry refill ring: flushes happen (every 64
    // releases) but the area never runs dry, so the stream is not
    // restarted inside the counted window.
    let Some((mut ring, zcrx)) = nodev("alloc", CqeSize::Big, |c| c.area_len(1 << 20).refill_entries(256)) else {
        return;
    };
    let (server, client) = tcp_pair();
    let total = 4u64 << 20;
    let sender = send_pattern(client, 0, total, 16 << 10, Duration::from_micros(300));
    let mut rx = ZcrxReceiver::new(&zcrx, Verify::default());
    rx.start(&mut ring, fd(&server)).unwrap();
    let mut slots = [CqeSlot::EMPTY; 64];
    let mut counted_bytes = 0u64;
    let mut counted_cqes = 0u64;
    while !rx.is_stopped() {
        let n = match ring.wait_for(&mut slots, 1, Some(Duration::from_secs(5))) {
            Ok(r) => r.len(),
            Err(CoreError::WouldBlock) => panic!("no CQE within 5 s"),
            Err(e) => panic!("wait_for: {e}"),
        };
        let warm = rx.handler().pos >= 256 << 10 && rx.handler().pos < 3 << 20;
        COUNTING.with(|c| c.set(warm));
        let before = rx.handler().pos;
        let allocs_before = COUNT.with(Cell::get);
        for slot in &slots[..n] {
            assert!(rx.handle_cqe(&mut ring, &slot.cqe()).is_some());
        }
        COUNTING.with(|c| c.set(false));
        if rx.end().is_some() {
            // A batch that ended the stream (under TCG, `CqFull`) is not
            // the steady state: the end is reported with what it needs.
            COUNT.with(|c| c.set(allocs_before));
        } else if warm {
            counted_bytes += rx.handler().pos - before;
            counted_cqes += n as u64;
        }
        if rx.end().is_some_and(ZcrxEnd::is_resumable) {
            // Sized not to run dry, but under QEMU's TCG the reaping side
            // can fall far enough behind for the CQ to fill (`CqFull`):
            // resume, outside the counted window, as a caller would.
            println!("alloc: the stream ended with {:?}; resuming", rx.end());
            rx.start(&mut ring, fd(&server)).unwrap();
        }
    }
    assert_eq!(sender.join().unwrap(), total);
    assert_eq!(rx.handler().pos, total);
    assert_eq!(rx.handler().mismatch, None);
    assert!(counted_bytes >= 1 << 20, "only {counted_bytes} bytes counted");
    let allocs = COUNT.with(Cell::get);
    println!("alloc: {counted_cqes} CQEs, {counted_bytes} bytes routed and released with {allocs} allocations");
    assert_eq!(allocs, 0, "the receive path allocated");
}
