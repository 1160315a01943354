//! The refill ring: the single-producer ring through which buffers go
//! back to the kernel.
//!
//! The kernel lays it out in the region registered with the instance and
//! reports where each part is (`struct io_uring_zcrx_offsets`): a 32-bit
//! `head` it advances as it consumes entries, a 32-bit `tail` this side
//! advances as it produces them, and an array of `rq_entries` (a power of
//! two) `struct io_uring_zcrx_rqe { u64 off; u32 len; u32 __pad; }`. Head
//! and tail are free-running; an entry's slot is `index & (entries - 1)`.
//! The kernel reads the tail with acquire ordering, so each entry is
//! written before the tail that covers it is stored with release
//! ordering; it stores the head with release ordering after it read the
//! entries, so a slot is reused only after an acquire load of the head
//! shows it consumed. The header changed between kernels (6.15–7.2 put
//! head and tail in one cache line, 7.3 gives each its own), which is
//! why only the kernel's offsets are used.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use uring_core::{Mapping, sys};

use crate::error::{Error, Result};

/// The largest refill ring the kernel accepts (`IO_RQ_MAX_ENTRIES`).
pub const MAX_REFILL_ENTRIES: u32 = 32768;

/// Where the kernel put the refill ring's parts inside its region
/// (`struct io_uring_zcrx_offsets`, in bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefillOffsets {
    /// Offset of the 32-bit head.
    pub head: u32,
    /// Offset of the 32-bit tail.
    pub tail: u32,
    /// Offset of the entry array.
    pub rqes: u32,
}

impl RefillOffsets {
    /// The layout of Linux 6.15–7.2 (`struct io_uring { u32 head, tail; }`,
    /// entries at the next cache line).
    pub const V1: RefillOffsets = RefillOffsets { head: 0, tail: 4, rqes: 64 };
    /// The layout of Linux 7.3 (head and tail each on its own cache line).
    pub const V2: RefillOffsets = RefillOffsets { head: 0, tail: 64, rqes: 128 };

    pub(crate) fn from_sys(o: &sys::io_uring_zcrx_offsets) -> Self {
        RefillOffsets { head: o.head, tail: o.tail, rqes: o.rqes }
    }

    /// Bytes a region needs for `entries` entries with this layout.
    pub const fn region_len(&self, entries: u32) -> usize {
        self.rqes as usize + entries as usize * size_of::<sys::io_uring_zcrx_rqe>()
    }
}

/// The producer side of a refill ring over memory this crate owns; see
/// the [module documentation](self) for the protocol.
///
/// [`Zcrx`](crate::Zcrx) holds one per registered instance. It is public
/// so that the protocol can be tested and measured against memory laid
/// out exactly as the kernel lays it out, on kernels that cannot register
/// an instance: [`RefillRing::new`] takes any [`Mapping`] and offsets.
pub struct RefillRing {
    region: Arc<Mapping>,
    head: *const AtomicU32,
    tail: *const AtomicU32,
    rqes: *mut sys::io_uring_zcrx_rqe,
    mask: u32,
    local_tail: u32,
    cached_head: u32,
    published: u32,
}

// SAFETY: the pointers point into `region`, which the ring keeps alive;
// every access goes through `&mut self` (or atomics), so moving the
// producer to another thread moves the only writer with it.
unsafe impl Send for RefillRing {}
// SAFETY: `&self` methods only load the atomic head/tail.
unsafe impl Sync for RefillRing {}

impl std::fmt::Debug for RefillRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefillRing")
            .field("entries", &self.entries())
            .field("tail", &self.local_tail)
            .field("head", &self.head())
            .finish()
    }
}

impl RefillRing {
    /// A producer over `region` laid out as `offsets` say, with `entries`
    /// entries (a power of two, at most [`MAX_REFILL_ENTRIES`]). The head
    /// and tail already in the memory are taken as they are (a fresh
    /// region has both at 0).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if `entries` is not a power of two in range, the
    /// parts do not fit the region, overlap, or are misaligned.
    pub fn new(region: Arc<Mapping>, offsets: RefillOffsets, entries: u32) -> Result<Self> {
        if !entries.is_power_of_two() || entries > MAX_REFILL_ENTRIES {
            return Err(Error::Config(format!(
                "refill ring entries {entries}: must be a power of two from 1 to {MAX_REFILL_ENTRIES}"
            )));
        }
        let RefillOffsets { head, tail, rqes } = offsets;
        let (head, tail, rqes) = (head as usize, tail as usize, rqes as usize);
        let end = offsets.region_len(entries);
        let disjoint = head + 4 <= rqes && tail + 4 <= rqes && (head + 4 <= tail || tail + 4 <= head);
        if end > region.len()
            || !head.is_multiple_of(4)
            || !tail.is_multiple_of(4)
            || !rqes.is_multiple_of(8)
            || !disjoint
        {
            return Err(Error::Config(format!(
                "refill ring offsets {offsets:?} with {entries} entries do not fit a {}-byte region",
                region.len()
            )));
        }
        let base = region.ptr();
        // SAFETY: the three offsets were checked to lie inside the region,
        // aligned, and not overlapping; the region stays mapped as long as
        // `self` holds the Arc.
        let (h, t, r) = unsafe { (base.add(head).cast(), base.add(tail).cast(), base.add(rqes).cast()) };
        let mut ring = RefillRing {
            region,
            head: h,
            tail: t,
            rqes: r,
            mask: entries - 1,
            local_tail: 0,
            cached_head: 0,
            published: 0,
        };
        ring.local_tail = ring.tail_atomic().load(Ordering::Relaxed);
        ring.published = ring.local_tail;
        ring.cached_head = ring.head();
        Ok(ring)
    }

    fn head_atomic(&self) -> &AtomicU32 {
        // SAFETY: `head` points to 4 aligned bytes inside the live region,
        // written by the kernel only with atomic stores.
        unsafe { &*self.head }
    }

    fn tail_atomic(&self) -> &AtomicU32 {
        // SAFETY: as for `head_atomic`; only this producer stores it.
        unsafe { &*self.tail }
    }

    /// Number of entries.
    #[inline]
    pub fn entries(&self) -> u32 {
        self.mask + 1
    }

    /// The kernel's head, as last stored (acquire load).
    #[inline]
    pub fn head(&self) -> u32 {
        self.head_atomic().load(Ordering::Acquire)
    }

    /// The tail as produced so far (published or not).
    #[inline]
    pub fn tail(&self) -> u32 {
        self.local_tail
    }

    /// Entries produced and not yet consumed by the kernel.
    #[inline]
    pub fn pending(&self) -> u32 {
        self.local_tail.wrapping_sub(self.head())
    }

    /// Free slots, reloading the kernel's head only when the cached one
    /// shows none.
    #[inline]
    pub fn free(&mut self) -> u32 {
        let entries = self.entries();
        let mut used = self.local_tail.wrapping_sub(self.cached_head);
        if used >= entries {
            self.cached_head = self.head();
            used = self.local_tail.wrapping_sub(self.cached_head);
        }
        // A head past the tail would mean a corrupted region; treat it as
        // full rather than overwrite.
        entries.saturating_sub(used)
    }

    /// Writes one entry (`off`: the area token plus the byte offset; `len`)
    /// without publishing it. Returns false, writing nothing, when the
    /// ring is full.
    #[inline]
    pub fn push(&mut self, off: u64, len: u32) -> bool {
        if self.free() == 0 {
            return false;
        }
        let slot = (self.local_tail & self.mask) as usize;
        // SAFETY: `slot` is within the entry array, and the slot is free:
        // the kernel's head (acquire-loaded into `cached_head`) is past
        // its previous use, so the kernel no longer reads it.
        unsafe { self.rqes.add(slot).write(sys::io_uring_zcrx_rqe { off, len, __pad: 0 }) };
        self.local_tail = self.local_tail.wrapping_add(1);
        true
    }

    /// Makes every pushed entry visible to the kernel (one release store
    /// of the tail).
    #[inline]
    pub fn publish(&mut self) {
        if self.published != self.local_tail {
            self.tail_atomic().store(self.local_tail, Ordering::Release);
            self.published = self.local_tail;
        }
    }

    /// The region this ring lives in.
    pub fn region(&self) -> &Arc<Mapping> {
        &self.region
    }

    /// Raw pointers to the head, the tail and the entry array, for a
    /// test that plays the kernel's part.
    pub fn raw_parts(&self) -> (*const AtomicU32, *const AtomicU32, *const sys::io_uring_zcrx_rqe) {
        (self.head, self.tail, self.rqes)
    }
}
