//! The shared-memory queues: the SQ producer and the CQ consumer (the
//! memory they live in is a [`Mapping`], in `mapping.rs`). Everything here is `pub(crate)`; [`Ring`](crate::Ring) and
//! [`SharedRing`](crate::SharedRing) wrap it.
//!
//! # Memory ordering
//!
//! The SQ tail is ours and the SQ head the kernel's; the CQ head is ours
//! and the CQ tail the kernel's. We store our index with `Release` after
//! writing (SQEs) or reading (CQEs) the entries it covers, and load the
//! kernel's index with `Acquire` before touching the entries it covers.
//! With SQPOLL, the kernel thread may go to sleep between our tail store
//! and our check of `IORING_SQ_NEED_WAKEUP`; a `SeqCst` fence between the
//! two pairs with the kernel's barrier between setting the flag and
//! re-reading the tail, so one side always sees the other (see
//! `Sq::needs_wakeup`).

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering, fence};

use uring_sys as sys;

use crate::cqe::CqeSlot;
use crate::keep::Keep;
pub(crate) use crate::mapping::Mapping;
use crate::sqe::Sqe;

/// # Safety
///
/// `base + off` must be a 4-byte aligned `u32` inside a live ring mapping.
unsafe fn atomic_at(base: *mut u8, off: u32) -> *const AtomicU32 {
    // SAFETY: forwarded to the caller.
    unsafe { base.add(off as usize).cast::<AtomicU32>().cast_const() }
}

/// The SQ producer side.
#[derive(Debug)]
pub(crate) struct Sq {
    khead: *const AtomicU32,
    ktail: *const AtomicU32,
    kflags: *const AtomicU32,
    sqes: *mut u8,
    /// log2 of the SQE size (6 or 7).
    shift: u32,
    mask: u32,
    pub(crate) entries: u32,
    /// Next free slot (not yet published).
    tail: u32,
    /// Last value stored to the kernel's tail.
    published: u32,
    /// `tail` may advance up to here (the kernel head we last saw plus the
    /// SQ size) before the head is read again. Equal to `tail` while the
    /// queue is closed, so the fast path needs no separate state check.
    limit: u32,
    /// Whether entries may be acquired at all (the ring is started).
    open: bool,
    /// One [`Keep`] per slot, allocated here so acquiring never allocates.
    keeps: Box<[Keep]>,
    /// The tail right after the last 128-byte entry of an `SQE_MIXED`
    /// ring was acquired (a value the tail cannot have otherwise:
    /// `published - 1`): while the tail is still there, that entry was the
    /// last acquisition. Kept out of `next`, which stays as cheap as
    /// before: only `next_pair` and `retract` read or write these.
    pair_end: u32,
    /// That entry's first slot, and how many slots it took with its
    /// padding (2 or 3): what `retract` gives back.
    pair_first: u32,
    pair_len: u32,
}

// SAFETY: `Sq` points into ring memory owned by the same ring object and
// moves with it; nothing in it is tied to a thread.
unsafe impl Send for Sq {}

impl Sq {
    /// # Safety
    ///
    /// `rings`/`sqes` must be the live mappings described by `p`, and stay
    /// mapped as long as the returned `Sq` is used.
    pub(crate) unsafe fn new(p: &sys::io_uring_params, rings: *mut u8, sqes: *mut u8) -> Self {
        let o = &p.sq_off;
        // SAFETY: the offsets come from the kernel and lie inside `rings`.
        let (khead, ktail, kflags, mask) = unsafe {
            (
                atomic_at(rings, o.head),
                atomic_at(rings, o.tail),
                atomic_at(rings, o.flags),
                atomic_at(rings, o.ring_mask),
            )
        };
        if p.flags & sys::IORING_SETUP_NO_SQARRAY == 0 {
            // Slot i always carries SQE i, so the index array is the
            // identity, written once here instead of on every flush.
            // SAFETY: the array has sq_entries u32s at sq_off.array.
            let array = unsafe { rings.add(o.array as usize).cast::<u32>() };
            for i in 0..p.sq_entries {
                // SAFETY: i < sq_entries.
                unsafe { array.add(i as usize).write(i) };
            }
        }
        // SAFETY: kernel-published, aligned fields of the live mapping.
        let (head, mask) = unsafe { ((*khead).load(Ordering::Acquire), (*mask).load(Ordering::Relaxed)) };
        let shift = if p.flags & sys::IORING_SETUP_SQE128 != 0 { 7 } else { 6 };
        Sq {
            khead,
            ktail,
            kflags,
            sqes,
            shift,
            mask,
            entries: p.sq_entries,
            tail: head,
            published: head,
            limit: head,
            open: false,
            keeps: (0..p.sq_entries).map(|_| Keep::new()).collect(),
            pair_end: head.wrapping_sub(1),
            pair_first: 0,
            pair_len: 0,
        }
    }

    #[inline]
    fn khead(&self) -> &AtomicU32 {
        // SAFETY: points into the live ring mapping (see `new`).
        unsafe { &*self.khead }
    }

    #[inline]
    pub(crate) fn kflags(&self) -> &AtomicU32 {
        // SAFETY: points into the live ring mapping (see `new`).
        unsafe { &*self.kflags }
    }

    /// Allows acquiring entries (the ring was started).
    pub(crate) fn open(&mut self) {
        self.open = true;
        self.limit = self.khead().load(Ordering::Acquire).wrapping_add(self.entries);
    }

    /// Refuses every further acquisition (the ring was stopped).
    pub(crate) fn close(&mut self) {
        self.open = false;
        self.limit = self.tail;
    }

    /// Free entries.
    #[inline]
    pub(crate) fn space_left(&mut self) -> u32 {
        if !self.open {
            return 0;
        }
        self.refresh();
        self.limit.wrapping_sub(self.tail)
    }

    /// Rereads the kernel's head.
    #[inline]
    fn refresh(&mut self) {
        // Acquire: the kernel (or the SQPOLL thread) has finished reading
        // the slots below the head it published.
        self.limit = self.khead().load(Ordering::Acquire).wrapping_add(self.entries);
    }

    /// Entries written but not yet published.
    #[inline]
    pub(crate) fn unpublished(&self) -> u32 {
        self.tail.wrapping_sub(self.published)
    }

    /// The next free slot, or `None` when the SQ is full or closed.
    #[inline]
    pub(crate) fn next(&mut self) -> Option<*mut u8> {
        if self.tail == self.limit {
            if !self.open {
                return None;
            }
            self.refresh();
            if self.tail == self.limit {
                return None;
            }
        }
        // SAFETY: (tail & mask) < entries, so the slot lies in the SQE array.
        let slot = unsafe { self.sqes.add(((self.tail & self.mask) as usize) << self.shift) };
        self.tail = self.tail.wrapping_add(1);
        Some(slot)
    }

    /// Two consecutive 64-byte slots for a 128-byte entry of an
    /// `SQE_MIXED` ring, or `None` when the SQ is full or closed. The pair
    /// never wraps (the kernel refuses a 128-byte entry in the last slot):
    /// when the tail is at the last slot, that slot first gets a NOP with
    /// `IOSQE_CQE_SKIP_SUCCESS`, which posts no CQE (liburing's
    /// `io_uring_get_sqe128` does the same). All or nothing: no slot is
    /// taken unless all are free. The SQ must have at least 4 entries
    /// (checked by the caller), else a pair at the wrap never fits.
    pub(crate) fn next_pair(&mut self) -> Option<*mut u8> {
        debug_assert_eq!(self.shift, 6);
        let pad = self.tail & self.mask == self.mask;
        let need = if pad { 3 } else { 2 };
        if !self.has_room(need) {
            return None;
        }
        if pad {
            // An unpublished entry before the pad that links to the next
            // one links through the pad: the chain goes on to the
            // 128-byte entry (a NOP never fails, so it never breaks it).
            let link = (sys::IOSQE_IO_LINK | sys::IOSQE_IO_HARDLINK) as u8;
            // The entry acquired last starts one slot back, or at the
            // first slot of a 128-byte entry acquired last.
            let prev = if self.tail == self.pair_end { self.pair_first } else { self.tail.wrapping_sub(1) };
            let unpublished = self.tail.wrapping_sub(prev) <= self.tail.wrapping_sub(self.published);
            let carry = if unpublished && self.tail != self.published {
                // SAFETY: `prev` is an unpublished slot of ours (the start
                // of the last entry acquired), inside the SQE array; the
                // kernel does not read it before the tail is published.
                let flags = unsafe {
                    let sqe = self.sqes.add(((prev & self.mask) as usize) << self.shift).cast::<sys::io_uring_sqe>();
                    (*sqe).flags
                };
                flags & link
            } else {
                0
            };
            let slot = self.next()?;
            let mut nop = Sqe::new(sys::IORING_OP_NOP as u8);
            nop.flags = sys::IOSQE_CQE_SKIP_SUCCESS as u8 | carry;
            nop.user_data = 0;
            // SAFETY: a 64-byte slot we own until the tail is published.
            unsafe { slot.cast::<Sqe>().write(nop) };
        }
        let start = self.tail;
        let first = self.next()?;
        self.next()?;
        self.pair_end = self.tail;
        self.pair_first = start;
        self.pair_len = need;
        Some(first)
    }

    /// Gives back the slots acquired last (not yet published).
    #[inline]
    pub(crate) fn retract(&mut self) {
        let last = if self.tail == self.pair_end { self.pair_len } else { 1 };
        let n = last.min(self.tail.wrapping_sub(self.published));
        self.tail = self.tail.wrapping_sub(n);
        // The entry before is not known any more: no pair is the last one.
        self.pair_end = self.published.wrapping_sub(1);
    }

    /// The next free slot and its [`Keep`], cleared of what an earlier
    /// submission through the same slot held (the kernel consumed that
    /// entry before the slot could come round again).
    #[inline]
    pub(crate) fn next_keep(&mut self) -> Option<(*mut u8, usize)> {
        let index = (self.tail & self.mask) as usize;
        let slot = self.next()?;
        // SAFETY: `index` is the slot just acquired.
        unsafe { self.keep(index) }.clear();
        Some((slot, index))
    }

    /// [`next_keep`](Self::next_keep) without clearing the slot's `Keep`.
    #[inline]
    pub(crate) fn next_keep_uncleared(&mut self) -> Option<(*mut u8, usize)> {
        let index = (self.tail & self.mask) as usize;
        let slot = self.next()?;
        Some((slot, index))
    }

    /// The [`Keep`] of slot `index` (from [`next_keep`](Self::next_keep)).
    #[inline]
    ///
    /// # Safety
    ///
    /// `index` is the index `next_keep` or `next_keep_uncleared` returned
    /// with the slot acquired last.
    pub(crate) unsafe fn keep(&mut self, index: usize) -> &mut Keep {
        debug_assert!(index < self.keeps.len());
        // SAFETY: such an index is `tail & mask`, below `entries`, the
        // length of `keeps` as long as the SQ is open; `leak_keeps` (which
        // empties it) closes the SQ first, and `next` gives nothing on a
        // closed SQ.
        unsafe { self.keeps.get_unchecked_mut(index) }
    }

    /// Whether `n` more entries fit (for all-or-nothing pushes).
    #[inline]
    pub(crate) fn has_room(&mut self, n: u32) -> bool {
        if !self.open {
            return false;
        }
        if self.limit.wrapping_sub(self.tail) >= n {
            return true;
        }
        self.refresh();
        self.limit.wrapping_sub(self.tail) >= n
    }

    /// Writes `sqe` into the next slot.
    #[inline]
    pub(crate) fn push(&mut self, sqe: &Sqe) -> bool {
        match self.next() {
            Some(slot) => {
                // SAFETY: the slot is a 64-byte aligned SQE we own until the
                // tail is published; `Sqe` is 64 plain bytes.
                unsafe { slot.cast::<Sqe>().write(*sqe) };
                true
            }
            None => false,
        }
    }

    /// Publishes every written entry (one `Release` store of the tail, if
    /// anything changed) and returns how many entries the kernel has not
    /// consumed yet.
    #[inline]
    pub(crate) fn flush(&mut self) -> u32 {
        // Release: the SQE bytes written before must be visible to the
        // kernel before it can see the new tail. Storing an unchanged tail
        // again is harmless and cheaper than testing for it.
        // SAFETY: points into the live ring mapping.
        unsafe { &*self.ktail }.store(self.tail, Ordering::Release);
        self.published = self.tail;
        self.tail.wrapping_sub(self.khead().load(Ordering::Acquire))
    }

    /// Published entries the kernel has not consumed yet (its head has not
    /// passed them): on an SQPOLL ring, the poller may still read them and
    /// the memory their slots' [`Keep`]s hold.
    #[inline]
    pub(crate) fn unconsumed(&self) -> u32 {
        self.published.wrapping_sub(self.khead().load(Ordering::Acquire))
    }

    /// Leaks every slot's [`Keep`] (and what it holds): for a ring stopped
    /// while the kernel might still consume published entries, so that it
    /// never reads memory Rust has freed.
    pub(crate) fn leak_keeps(&mut self) {
        // First: no slot is handed out again (`keep` relies on it).
        self.close();
        crate::core::keep_for_ever(Box::new(std::mem::take(&mut self.keeps)));
    }

    /// After a flush on an SQPOLL ring: whether the poller thread sleeps
    /// and must be woken with `IORING_ENTER_SQ_WAKEUP`.
    #[inline]
    pub(crate) fn needs_wakeup(&self) -> bool {
        // The tail store (in `flush`) and this load must not be reordered:
        // the kernel sets NEED_WAKEUP, then issues a full barrier and
        // re-checks the tail before sleeping. With our full fence here,
        // either it sees our tail or we see its flag (liburing #541,
        // tokio-rs/io-uring #197).
        fence(Ordering::SeqCst);
        self.kflags().load(Ordering::Relaxed) & sys::IORING_SQ_NEED_WAKEUP != 0
    }

    /// Rebinds to new ring memory after `IORING_REGISTER_RESIZE_RINGS`; the
    /// indices continue from what the kernel copied.
    ///
    /// # Safety
    ///
    /// As for [`Sq::new`].
    pub(crate) unsafe fn rebind(&mut self, p: &sys::io_uring_params, rings: *mut u8, sqes: *mut u8) {
        let open = self.open;
        // SAFETY: forwarded.
        *self = unsafe { Sq::new(p, rings, sqes) };
        if open {
            self.open();
        }
    }
}

/// The CQ consumer side.
#[derive(Debug)]
pub(crate) struct Cq {
    /// The SQ ring's flags word (`IORING_SQ_CQ_OVERFLOW`, `IORING_SQ_TASKRUN`),
    /// which the reaping side consults.
    ksqflags: *const AtomicU32,
    khead: *const AtomicU32,
    ktail: *const AtomicU32,
    koverflow: *const AtomicU32,
    /// The CQ ring's flags word (`cq_off.flags`, `IORING_CQ_EVENTFD_DISABLED`),
    /// written by us and read by the kernel; null on kernels before 5.8,
    /// which report offset 0 for it.
    kcqflags: *const AtomicU32,
    cqes: *const u8,
    mask: u32,
    /// Our head: entries below it are consumed. The kernel's copy is
    /// `published`, updated once per reaped batch or pass.
    head: u32,
    /// The head last given back to the kernel (`khead`); at most the CQ's
    /// size behind `head` (we consume only what the kernel posted, and it
    /// posts only into slots given back).
    published: u32,
    /// `IORING_SETUP_CQE32`: every entry is 32 bytes.
    big: bool,
    /// `IORING_SETUP_CQE_MIXED`: 16-byte slots, 32-byte entries take two.
    mixed: bool,
    /// The process-unique identity of the ring (see [`Cqe::ring_id`](crate::Cqe::ring_id)).
    pub(crate) ring_id: u64,
    /// Slots given back since the ring was created: the 64-bit position
    /// of `published`, which never wraps (see [`Cqe::seq`](crate::Cqe::seq)).
    pos: u64,
}

// SAFETY: as for `Sq`.
unsafe impl Send for Cq {}

impl Cq {
    /// # Safety
    ///
    /// `rings` must be the live ring mapping described by `p`, and stay
    /// mapped as long as the returned `Cq` is used.
    pub(crate) unsafe fn new(p: &sys::io_uring_params, rings: *mut u8) -> Self {
        let o = &p.cq_off;
        // SAFETY: kernel-provided offsets inside `rings`.
        let (khead, ktail, koverflow, mask) = unsafe {
            (
                atomic_at(rings, o.head),
                atomic_at(rings, o.tail),
                atomic_at(rings, o.overflow),
                atomic_at(rings, o.ring_mask),
            )
        };
        // SAFETY: kernel-published, aligned fields of the live mapping.
        let (head, mask) = unsafe { ((*khead).load(Ordering::Relaxed), (*mask).load(Ordering::Relaxed)) };
        Cq {
            // SAFETY: a kernel-provided offset inside `rings`.
            ksqflags: unsafe { atomic_at(rings, p.sq_off.flags) },
            khead,
            ktail,
            koverflow,
            kcqflags: if o.flags == 0 {
                std::ptr::null()
            } else {
                // SAFETY: a kernel-provided offset inside `rings`.
                unsafe { atomic_at(rings, o.flags) }
            },
            // SAFETY: the CQE array lies inside `rings` at cq_off.cqes.
            cqes: unsafe { rings.add(o.cqes as usize) },
            mask,
            head,
            published: head,
            big: p.flags & sys::IORING_SETUP_CQE32 != 0,
            mixed: p.flags & sys::IORING_SETUP_CQE_MIXED != 0,
            ring_id: 0,
            pos: 0,
        }
    }

    /// # Safety
    ///
    /// As for [`Cq::new`].
    pub(crate) unsafe fn rebind(&mut self, p: &sys::io_uring_params, rings: *mut u8) {
        let (ring_id, pos) = (self.ring_id, self.position());
        // SAFETY: forwarded.
        *self = unsafe { Cq::new(p, rings) };
        // The identity and the consumed count carry over: positions handed
        // out before the resize stay below every later one.
        self.ring_id = ring_id;
        self.pos = pos;
    }

    /// The 64-bit position of the slot at ring index `index` (at or after
    /// our head): what [`Cqe::seq`](crate::Cqe::seq) reports.
    #[inline]
    pub(crate) fn seq_of(&self, index: u32) -> u64 {
        self.pos.wrapping_add(u64::from(index.wrapping_sub(self.published)))
    }

    /// Slots consumed so far: every CQE reaped from now on has a
    /// [`seq`](crate::Cqe::seq) at least this.
    #[inline]
    pub(crate) fn position(&self) -> u64 {
        self.seq_of(self.head)
    }

    /// The SQ ring's flags word.
    #[inline]
    pub(crate) fn sq_flags(&self) -> u32 {
        // SAFETY: points into the live ring mapping.
        unsafe { &*self.ksqflags }.load(Ordering::Relaxed)
    }

    /// The CQ ring's flags word, `None` before Linux 5.8.
    #[inline]
    pub(crate) fn cq_flags(&self) -> Option<&AtomicU32> {
        // SAFETY: when not null, points into the live ring mapping.
        (!self.kcqflags.is_null()).then(|| unsafe { &*self.kcqflags })
    }

    #[inline]
    fn ktail(&self) -> &AtomicU32 {
        // SAFETY: points into the live ring mapping.
        unsafe { &*self.ktail }
    }

    /// Slots published by the kernel and not yet consumed.
    #[inline]
    pub(crate) fn ready(&self) -> u32 {
        // Acquire: pairs with the kernel's release of the tail.
        self.ktail().load(Ordering::Acquire).wrapping_sub(self.head)
    }

    /// The kernel's count of CQEs it had to drop (only without
    /// `IORING_FEAT_NODROP`, or when even the overflow list failed).
    pub(crate) fn dropped(&self) -> u32 {
        // SAFETY: points into the live ring mapping.
        unsafe { &*self.koverflow }.load(Ordering::Relaxed)
    }

    #[inline]
    fn slot(&self, index: u32) -> *const sys::io_uring_cqe {
        let shift = if self.big { 5 } else { 4 };
        // SAFETY: (index & mask) < entries: inside the CQE array.
        unsafe { self.cqes.add(((index & self.mask) as usize) << shift).cast() }
    }

    /// Copies up to `out.len()` completions into `out`, releases their
    /// ring entries (one `Release` store of the head), returns the count.
    #[inline]
    pub(crate) fn reap_into(&mut self, out: &mut [CqeSlot]) -> usize {
        let tail = self.ktail().load(Ordering::Acquire);
        let mut head = self.head;
        // Positions follow the slots one for one: counted alongside.
        let mut seq = self.seq_of(head);
        let mut n = 0;
        while head != tail && n < out.len() {
            let cqe = self.slot(head);
            let (big, used) = if self.mixed {
                // SAFETY: the slot is below the tail we acquired.
                let flags = unsafe { (*cqe).flags };
                if flags & sys::IORING_CQE_F_SKIP != 0 {
                    // Padding: one slot, or two if it says it is 32 bytes.
                    head = head.wrapping_add(skip_len(flags));
                    seq = seq.wrapping_add(u64::from(skip_len(flags)));
                    continue;
                }
                let big = flags & sys::IORING_CQE_F_32 != 0;
                (big, if big { 2 } else { 1 })
            } else {
                (self.big, 1)
            };
            // SAFETY: the slot is published (below the acquired tail) and
            // 32 bytes long when `big` (CQE32, or two slots in a mixed CQ,
            // which the kernel never wraps).
            unsafe { out[n].fill(cqe, big) };
            out[n].set_origin(self.ring_id, seq);
            head = head.wrapping_add(used);
            seq = seq.wrapping_add(u64::from(used));
            n += 1;
        }
        self.release_to(head);
        n
    }

    /// The next completion in ring memory, without releasing it:
    /// `(pointer, is_big, seq)`. Skip entries are passed over.
    #[inline]
    pub(crate) fn peek_at(
        &self,
        head: &mut u32,
        seq: &mut u64,
        tail: u32,
    ) -> Option<(NonNull<sys::io_uring_cqe>, bool, u64)> {
        while *head != tail {
            let cqe = self.slot(*head);
            let at = *seq;
            if self.mixed {
                // SAFETY: the slot is below the acquired tail.
                let flags = unsafe { (*cqe).flags };
                let used = if flags & sys::IORING_CQE_F_SKIP != 0 {
                    skip_len(flags)
                } else if flags & sys::IORING_CQE_F_32 != 0 {
                    2
                } else {
                    1
                };
                *head = head.wrapping_add(used);
                *seq = seq.wrapping_add(u64::from(used));
                if flags & sys::IORING_CQE_F_SKIP != 0 {
                    continue;
                }
                // SAFETY: a slot of a live mapping is never null.
                return Some((unsafe { NonNull::new_unchecked(cqe.cast_mut()) }, used == 2, at));
            }
            *head = head.wrapping_add(1);
            *seq = seq.wrapping_add(1);
            // SAFETY: as above.
            return Some((unsafe { NonNull::new_unchecked(cqe.cast_mut()) }, self.big, at));
        }
        None
    }

    /// The head and the acquired tail, for a zero-copy pass.
    #[inline]
    pub(crate) fn window(&self) -> (u32, u32) {
        (self.head, self.ktail().load(Ordering::Acquire))
    }

    /// Gives every published entry back to the kernel unread (`stop`:
    /// completions not reaped before it are lost), so that completions
    /// posted while stopping find room instead of overflowing.
    pub(crate) fn discard(&mut self) {
        let tail = self.ktail().load(Ordering::Acquire);
        self.release_to(tail);
    }

    /// Gives entries below `head` back to the kernel.
    #[inline]
    pub(crate) fn release_to(&mut self, head: u32) {
        if head != self.published {
            self.head = head;
            self.publish_head();
        }
    }

    /// Counts the entries below `head` as consumed (our head and position
    /// move past them) without giving them back to the kernel yet: a
    /// [`Completions`](crate::Completions) pass consumes each CQE as it
    /// hands it out, so that a pass that is forgotten (`mem::forget`, no
    /// drop) can never show a CQE again under the same position. The kernel
    /// gets the slots back at the next [`publish_head`](Self::publish_head).
    #[inline]
    pub(crate) fn consume_to(&mut self, head: u32) {
        self.head = head;
    }

    /// Gives every consumed entry back to the kernel (one release store of
    /// the head).
    #[inline]
    pub(crate) fn publish_head(&mut self) {
        self.pos = self.seq_of(self.head);
        self.published = self.head;
        // Release: our reads of the entries happen before the kernel may
        // overwrite them.
        // SAFETY: points into the live ring mapping.
        unsafe { &*self.khead }.store(self.head, Ordering::Release);
    }
}

/// Slots a padding entry (`IORING_CQE_F_SKIP`) of a mixed CQ takes: the
/// kernel's own padding is one slot; an entry that also has
/// `IORING_CQE_F_32` was written as 32 bytes, so its second half is not an
/// entry of its own.
#[inline]
fn skip_len(flags: u32) -> u32 {
    if flags & sys::IORING_CQE_F_32 != 0 { 2 } else { 1 }
}
