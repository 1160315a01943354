//! The hand-written refill-ring producer an `io-uring` crate user needs
//! (the crate has the entry type, `types::io_uring_zcrx_rqe`, and no
//! producer), shared by the `refill` and `dispatch` benches: the ring's
//! head, tail and entries (in memory of our own, laid out as the kernel
//! lays them out), the area, and the kernel's part for the bench to play.

use std::hint::black_box;
use std::sync::atomic::{AtomicU32, Ordering};

use io_uring::types::io_uring_zcrx_rqe;

pub(crate) struct RawRefill {
    head: AtomicU32,
    tail: AtomicU32,
    rqes: Vec<io_uring_zcrx_rqe>,
    area: Vec<u8>,
    /// The area token the offset words carry (0 for the first area).
    pub(crate) token: u64,
    local_tail: u32,
    /// The head as last read: reloaded only when the ring looks full.
    cached_head: u32,
}

impl RawRefill {
    pub(crate) fn new(entries: u32, area_len: usize) -> Self {
        assert!(entries.is_power_of_two());
        // SAFETY: the entry is a plain C struct of integers; zero is valid.
        let rqes = (0..entries).map(|_| unsafe { std::mem::zeroed::<io_uring_zcrx_rqe>() }).collect();
        RawRefill {
            head: AtomicU32::new(0),
            tail: AtomicU32::new(0),
            rqes,
            area: vec![0; area_len],
            token: 0,
            local_tail: 0,
            cached_head: 0,
        }
    }

    fn mask(&self) -> u32 {
        self.rqes.len() as u32 - 1
    }

    /// The bytes a data CQE names by its offset word (area token | offset)
    /// and length, bounds-checked; `None` for another area or outside it.
    #[inline]
    pub(crate) fn bytes(&self, off: u64, len: u32) -> Option<&[u8]> {
        if off & uring_sys::IORING_ZCRX_AREA_MASK != self.token {
            return None;
        }
        let start = (off & !uring_sys::IORING_ZCRX_AREA_MASK) as usize;
        self.area.get(start..start.checked_add(len as usize)?)
    }

    /// One release: the entry, then the tail with release ordering; false
    /// when the ring is full.
    #[inline]
    pub(crate) fn release(&mut self, off: u64, len: u32) -> bool {
        let entries = self.mask() + 1;
        if self.local_tail.wrapping_sub(self.cached_head) >= entries {
            self.cached_head = self.head.load(Ordering::Acquire);
            if self.local_tail.wrapping_sub(self.cached_head) >= entries {
                return false;
            }
        }
        let slot = (self.local_tail & self.mask()) as usize;
        let e = &mut self.rqes[slot];
        e.off = off;
        e.len = len;
        self.local_tail = self.local_tail.wrapping_add(1);
        self.tail.store(self.local_tail, Ordering::Release);
        true
    }

    /// The kernel's part: acquire the tail, read the entries, release-store
    /// the head. Returns how many entries it consumed.
    pub(crate) fn consume(&self) -> u32 {
        let t = self.tail.load(Ordering::Acquire);
        let h = self.head.load(Ordering::Relaxed);
        let mut sum = 0u64;
        let mut i = h;
        while i != t {
            sum = sum.wrapping_add(self.rqes[(i & self.mask()) as usize].off);
            i = i.wrapping_add(1);
        }
        black_box(sum);
        self.head.store(t, Ordering::Release);
        t.wrapping_sub(h)
    }
}
