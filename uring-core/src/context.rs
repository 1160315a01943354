//! Submission identity carried through `user_data`: [`SqeContext`], and the
//! fixed-capacity [`ContextPools`] behind its indirect and extended modes.
//!
//! # Layout of the 64 bits
//!
//! | bits | direct | indirect / extended |
//! |---|---|---|
//! | 0–1 | mode `0` | mode `1` (indirect) or `2` (extended) |
//! | 2–9 | opcode | slot index (bits 2–31) |
//! | 10–16 | SQE flags (`IOSQE_*`, 7 bits) | |
//! | 17–32 | buffer group | |
//! | 33–63 | fd (31 bits; all ones = none) | generation (bits 32–63) |
//!
//! Pooled contexts hold a slot index and a generation, never a pointer: a
//! `user_data` that does not name a live slot of this ring's pools (returned
//! already, or posted by another ring through `MSG_RING`) decodes to
//! nothing instead of to a dangling reference.

use std::fmt;
use std::mem::{align_of, size_of};

use crate::error::{Error, Result};
use crate::sqe::{Sqe, SqeFlags};

const MODE_MASK: u64 = 0b11;
const OP_SHIFT: u32 = 2;
const FLAGS_SHIFT: u32 = 10;
const FLAGS_MASK: u64 = 0x7f;
const GROUP_SHIFT: u32 = 17;
const FD_SHIFT: u32 = 33;
const FD_NONE: u64 = (1 << 31) - 1;
const INDEX_SHIFT: u32 = 2;
const INDEX_MASK: u64 = (1 << 30) - 1;
const GEN_SHIFT: u32 = 32;

/// Foreign `user_data` (mode bits `3`) of the layers above, laid out alike
/// so they never claim each other's CQEs: bit 2 is the layer's own flag,
/// bits 3–10 a tag naming the layer, bits 11–63 the layer's payload. A
/// caller that stamps foreign values of its own should keep clear of these
/// tags (or use direct and pooled contexts, which no layer claims).
///
/// Multishot subscriptions (`uring_ops::subscription`).
pub const FOREIGN_TAG_SUBSCRIPTION: u8 = 0xB5;
/// Fixed-buffer operations (`uring_buffers::fixed`).
pub const FOREIGN_TAG_FIXED: u8 = 0xF1;
/// Zero-copy send tracking (`uring_ops::zc`).
pub const FOREIGN_TAG_ZC: u8 = 0x2C;
/// Zero-copy receive streams (`uring_zcrx`).
pub const FOREIGN_TAG_ZCRX: u8 = 0x2E;
/// Listener setup chains (`uring_ops::listener`): a socket phase's CQE
/// hands the chain a descriptor it then owns and closes.
pub const FOREIGN_TAG_LISTENER: u8 = 0x4C;
/// Requests of incremental provided-buffer rings
/// (`uring_buffers::BufRing::push_op`): the request's last CQE lets the
/// ring queue the next one.
pub const FOREIGN_TAG_BUFRING: u8 = 0xB7;

/// Which of the three encodings an [`SqeContext`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextMode {
    /// Op, flags, buffer group and fd packed inline.
    Direct,
    /// A pooled full SQE copy ([`IndirectSqe`]).
    Indirect,
    /// A pooled SQE plus 64 bytes of caller data ([`ExtSqe`]).
    Extended,
    /// Mode bits `3`: a raw `user_data` of the caller's own, or of a layer
    /// above that keeps its own identities (see [`FOREIGN_TAG_SUBSCRIPTION`]
    /// and its neighbours for the layout those layers share).
    Foreign,
}

/// The 64-bit identity of a submission, stored in `user_data` and handed
/// back, unchanged, by every CQE the submission produces.
///
/// Direct contexts cost nothing: build one with [`SqeContext::direct`] or
/// [`SqeContext::for_fd`] and the `with_*` methods. Pooled ones come from
/// [`ContextPools::acquire_indirect`] and
/// [`ContextPools::acquire_extended`].
///
/// ```
/// use uring_core::{SqeContext, SqeFlags};
/// let ctx = SqeContext::for_fd(7).with_op(27).with_buf_group(3).with_flags(SqeFlags::BUFFER_SELECT);
/// assert_eq!((ctx.op(), ctx.fd(), ctx.buf_group()), (Some(27), Some(7), Some(3)));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(transparent)]
pub struct SqeContext(u64);

impl SqeContext {
    /// A direct context with every field given. `fd` is a file descriptor
    /// or fixed-file slot in `0..2^31 - 1`; a negative `fd` means none.
    #[inline]
    pub const fn direct(op: u8, flags: SqeFlags, buf_group: u16, fd: i32) -> Self {
        let fd_bits = if fd < 0 || fd as u64 >= FD_NONE { FD_NONE } else { fd as u64 };
        SqeContext(
            ((op as u64) << OP_SHIFT)
                | (((flags.bits() as u64) & FLAGS_MASK) << FLAGS_SHIFT)
                | ((buf_group as u64) << GROUP_SHIFT)
                | (fd_bits << FD_SHIFT),
        )
    }

    /// A direct context carrying only `fd` (opcode 0, no flags, group 0).
    #[inline]
    pub const fn for_fd(fd: i32) -> Self {
        SqeContext::direct(0, SqeFlags::empty(), 0, fd)
    }

    /// The raw `user_data` value.
    #[inline]
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// Reinterprets a raw `user_data` value.
    #[inline]
    pub const fn from_raw(raw: u64) -> Self {
        SqeContext(raw)
    }

    /// The encoding.
    #[inline]
    pub const fn mode(self) -> ContextMode {
        match self.0 & MODE_MASK {
            0 => ContextMode::Direct,
            1 => ContextMode::Indirect,
            2 => ContextMode::Extended,
            _ => ContextMode::Foreign,
        }
    }

    #[inline]
    const fn is_direct(self) -> bool {
        self.0 & MODE_MASK == 0
    }

    /// Replaces the opcode (direct contexts; others are returned unchanged).
    #[inline]
    pub const fn with_op(self, op: u8) -> Self {
        if !self.is_direct() {
            return self;
        }
        SqeContext((self.0 & !(0xff << OP_SHIFT)) | ((op as u64) << OP_SHIFT))
    }

    /// Replaces the whole flag set (direct contexts only). Compute unions
    /// before calling; only the seven defined `IOSQE_*` bits are kept.
    #[inline]
    pub const fn with_flags(self, flags: SqeFlags) -> Self {
        if !self.is_direct() {
            return self;
        }
        SqeContext((self.0 & !(FLAGS_MASK << FLAGS_SHIFT)) | (((flags.bits() as u64) & FLAGS_MASK) << FLAGS_SHIFT))
    }

    /// Replaces the buffer group (direct contexts only).
    #[inline]
    pub const fn with_buf_group(self, group: u16) -> Self {
        if !self.is_direct() {
            return self;
        }
        SqeContext((self.0 & !(0xffff << GROUP_SHIFT)) | ((group as u64) << GROUP_SHIFT))
    }

    /// Replaces the fd (direct contexts only).
    #[inline]
    pub const fn with_fd(self, fd: i32) -> Self {
        if !self.is_direct() {
            return self;
        }
        let d = SqeContext::direct(0, SqeFlags::empty(), 0, fd);
        SqeContext((self.0 & !(FD_NONE << FD_SHIFT)) | d.0)
    }

    /// The layer tag (bits 3–10) of a foreign context: see
    /// [`FOREIGN_TAG_SUBSCRIPTION`].
    #[inline]
    pub const fn foreign_tag(self) -> Option<u8> {
        if self.0 & MODE_MASK == 3 { Some((self.0 >> 3) as u8) } else { None }
    }

    /// The opcode of a direct context.
    #[inline]
    pub const fn op(self) -> Option<u8> {
        if self.is_direct() { Some((self.0 >> OP_SHIFT) as u8) } else { None }
    }

    /// The SQE flags of a direct context.
    #[inline]
    pub const fn flags(self) -> Option<SqeFlags> {
        if self.is_direct() {
            Some(SqeFlags::from_bits_retain(((self.0 >> FLAGS_SHIFT) & FLAGS_MASK) as u8))
        } else {
            None
        }
    }

    /// The buffer group of a direct context.
    #[inline]
    pub const fn buf_group(self) -> Option<u16> {
        if self.is_direct() { Some((self.0 >> GROUP_SHIFT) as u16) } else { None }
    }

    /// The fd of a direct context, if it carries one.
    #[inline]
    pub const fn fd(self) -> Option<i32> {
        let bits = self.0 >> FD_SHIFT;
        if self.is_direct() && bits != FD_NONE { Some(bits as i32) } else { None }
    }

    const fn pooled(mode: u64, index: u32, generation: u32) -> Self {
        SqeContext(mode | ((index as u64 & INDEX_MASK) << INDEX_SHIFT) | ((generation as u64) << GEN_SHIFT))
    }

    const fn slot(self) -> (u32, u32) {
        (((self.0 >> INDEX_SHIFT) & INDEX_MASK) as u32, (self.0 >> GEN_SHIFT) as u32)
    }
}

impl fmt::Debug for SqeContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.mode() {
            ContextMode::Direct => f
                .debug_struct("SqeContext::Direct")
                .field("op", &self.op().unwrap_or(0))
                .field("flags", &self.flags().unwrap_or_default())
                .field("buf_group", &self.buf_group().unwrap_or(0))
                .field("fd", &self.fd())
                .finish(),
            mode => {
                let (index, generation) = self.slot();
                f.debug_struct("SqeContext")
                    .field("mode", &mode)
                    .field("index", &index)
                    .field("generation", &generation)
                    .finish()
            }
        }
    }
}

/// Plain data that may live in an [`ExtSqe`]'s 64 caller bytes: `Copy`,
/// no pointers the compiler would track, and valid for every bit pattern
/// (the bytes are read back as `Self` whatever was written before).
///
/// # Safety
///
/// Implement only for types for which every 64-byte-or-smaller bit pattern
/// of their size is a valid value (integers, arrays and `#[repr(C)]`
/// structs of them, with no padding that matters). References, `bool`,
/// `char`, enums and anything with a `Drop` or a niche do not qualify.
pub unsafe trait PlainData: Copy + 'static {}

macro_rules! plain {
    ($($t:ty),*) => { $(
        // SAFETY: every bit pattern is a valid value of this integer type.
        unsafe impl PlainData for $t {}
    )* };
}
plain!(u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize);
// SAFETY: an array of plain data is plain data.
unsafe impl<T: PlainData, const N: usize> PlainData for [T; N] {}

/// A ready-made view of the 64 caller bytes: eight `u64` values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct CtxWords {
    /// The eight words.
    pub words: [u64; 8],
}
// SAFETY: an array of u64, any bit pattern is valid.
unsafe impl PlainData for CtxWords {}

/// The 64 bytes of caller data in an [`ExtSqe`].
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub struct ExtData([u8; 64]);

impl ExtData {
    const fn check<T>() {
        assert!(size_of::<T>() <= 64, "an ExtSqe carries at most 64 bytes of caller data");
        assert!(align_of::<T>() <= 64, "ExtSqe caller data is 64-byte aligned at most");
    }

    /// The data as a `T`.
    #[inline]
    pub fn view<T: PlainData>(&self) -> &T {
        const { Self::check::<T>() };
        // SAFETY: size and alignment were checked at compile time, the bytes
        // are initialized, and `T: PlainData` is valid for any bit pattern.
        unsafe { &*self.0.as_ptr().cast::<T>() }
    }

    /// The data as a mutable `T`.
    #[inline]
    pub fn view_mut<T: PlainData>(&mut self) -> &mut T {
        const { Self::check::<T>() };
        // SAFETY: as in `view`; the borrow is exclusive.
        unsafe { &mut *self.0.as_mut_ptr().cast::<T>() }
    }

    /// Moves `value` into word `at` (0–7) of the data: a reference-counted
    /// hand-off through the completion, without a lookup table. The slot
    /// now owns one strong count; take it back exactly once with
    /// [`take_arc`](Self::take_arc) at the completion that ends the
    /// operation. A slot returned to its pool without taking it leaks that
    /// count (never frees it twice).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if `at` is not below 8 or the word already
    /// holds something (`value` is handed back inside the error's drop, not
    /// leaked).
    pub fn put_arc<T: Send + Sync + 'static>(&mut self, at: usize, value: std::sync::Arc<T>) -> Result<()> {
        let words = self.view_mut::<[usize; 8]>();
        match words.get_mut(at) {
            Some(w) if *w == 0 => {
                *w = std::sync::Arc::into_raw(value) as usize;
                Ok(())
            }
            Some(_) => Err(Error::InvalidArgument(format!("word {at} of the extended data is already in use"))),
            None => Err(Error::InvalidArgument(format!("word {at} is beyond the 8 words of extended data"))),
        }
    }

    /// Takes back the `Arc<T>` that [`put_arc`](Self::put_arc) stored in
    /// word `at`, and clears the word.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if `at` is not below 8 or the word is
    /// zero (nothing stored, or taken already).
    ///
    /// # Safety
    ///
    /// A non-zero word `at` must hold a pointer stored by `put_arc::<T>`
    /// (the same `T`) on this data: not bytes written through
    /// [`view_mut`](Self::view_mut) or [`bytes_mut`](Self::bytes_mut).
    pub unsafe fn take_arc<T: Send + Sync + 'static>(&mut self, at: usize) -> Result<std::sync::Arc<T>> {
        let words = self.view_mut::<[usize; 8]>();
        let Some(w) = words.get_mut(at) else {
            return Err(Error::InvalidArgument(format!("word {at} is beyond the 8 words of extended data")));
        };
        let raw = std::mem::replace(w, 0);
        if raw == 0 {
            return Err(Error::InvalidArgument(format!("word {at} holds no Arc (never stored, or taken already)")));
        }
        // SAFETY: the caller guarantees a non-zero word came from
        // `Arc::<T>::into_raw` in `put_arc`; it is cleared now, so the
        // count is taken back once.
        Ok(unsafe { std::sync::Arc::from_raw(raw as *const T) })
    }

    /// The raw bytes.
    #[inline]
    pub fn bytes(&self) -> &[u8; 64] {
        &self.0
    }

    /// The raw bytes, mutable.
    #[inline]
    pub fn bytes_mut(&mut self) -> &mut [u8; 64] {
        &mut self.0
    }
}

impl fmt::Debug for ExtData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ExtData").field(&self.view::<CtxWords>().words).finish()
    }
}

/// An indirect context: a full copy of the submitted SQE.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(64))]
pub struct IndirectSqe {
    /// The SQE, as the caller recorded it.
    pub sqe: Sqe,
}

/// An extended context: a full SQE plus 64 bytes of caller data.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
pub struct ExtSqe {
    /// The SQE, as the caller recorded it.
    pub sqe: Sqe,
    /// Caller data; read and write it through [`ExtData::view`].
    pub data: ExtData,
}

impl Default for ExtSqe {
    fn default() -> Self {
        ExtSqe { sqe: Sqe::default(), data: ExtData([0; 64]) }
    }
}

/// Counters of one pool, for finding leaks: a slot borrowed and never
/// returned shows as `in_use` that does not come back to zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Fixed number of slots.
    pub capacity: u32,
    /// Slots borrowed now.
    pub in_use: u32,
    /// Most slots borrowed at once.
    pub peak: u32,
    /// Slots borrowed since creation (or the last reset).
    pub acquired: u64,
    /// Slots returned since creation (or the last reset).
    pub released: u64,
    /// Failed acquisitions (pool empty).
    pub exhausted: u64,
    /// Returns of a context that was not live (double return, foreign).
    pub stale_returns: u64,
}

/// No buffer selection recorded for a slot.
const NO_GROUP: u32 = u32::MAX;

struct Pool<T> {
    slots: Box<[T]>,
    /// Odd: borrowed; even: free. Bumped on every acquire and release.
    generations: Box<[u32]>,
    /// Per slot: the buffer group the queued entry selects from
    /// (`IOSQE_BUFFER_SELECT`), recorded at submission, or [`NO_GROUP`].
    /// Private, unlike the SQE copy the caller may edit.
    groups: Box<[u32]>,
    /// Per slot: the ring's CQ position when its entry was queued (every
    /// CQE of that entry has a `seq` at least this), or `u64::MAX` while
    /// no entry was queued under the slot's current generation: a slot
    /// names one submission.
    queued_at: Box<[u64]>,
    free: Vec<u32>,
    stats: PoolStats,
    mode: u64,
    name: &'static str,
}

impl<T: Default + Copy> Pool<T> {
    fn new(capacity: u32, mode: u64, name: &'static str) -> Self {
        let capacity = capacity.min(INDEX_MASK as u32);
        Pool {
            slots: vec![T::default(); capacity as usize].into_boxed_slice(),
            generations: vec![0; capacity as usize].into_boxed_slice(),
            groups: vec![NO_GROUP; capacity as usize].into_boxed_slice(),
            queued_at: vec![u64::MAX; capacity as usize].into_boxed_slice(),
            free: (0..capacity).rev().collect(),
            stats: PoolStats { capacity, ..Default::default() },
            mode,
            name,
        }
    }

    fn acquire(&mut self) -> Result<SqeContext> {
        let Some(index) = self.free.pop() else {
            self.stats.exhausted += 1;
            return Err(Error::PoolExhausted { pool: self.name, capacity: self.stats.capacity });
        };
        let i = index as usize;
        self.generations[i] = self.generations[i].wrapping_add(1);
        self.slots[i] = T::default();
        self.groups[i] = NO_GROUP;
        self.queued_at[i] = u64::MAX;
        self.stats.in_use += 1;
        self.stats.peak = self.stats.peak.max(self.stats.in_use);
        self.stats.acquired += 1;
        Ok(SqeContext::pooled(self.mode, index, self.generations[i]))
    }

    fn live(&self, ctx: SqeContext) -> Option<usize> {
        if ctx.0 & MODE_MASK != self.mode {
            return None;
        }
        let (index, generation) = ctx.slot();
        let i = index as usize;
        (self.generations.get(i) == Some(&generation) && generation & 1 == 1).then_some(i)
    }

    fn get(&self, ctx: SqeContext) -> Option<&T> {
        self.live(ctx).map(|i| &self.slots[i])
    }

    fn get_mut(&mut self, ctx: SqeContext) -> Option<&mut T> {
        self.live(ctx).map(|i| &mut self.slots[i])
    }

    /// The group recorded for the live slot, if a CQE at position `seq`
    /// can be its entry's (reaped after the entry was queued).
    fn group(&self, ctx: SqeContext, seq: u64) -> Option<u16> {
        let i = self.live(ctx)?;
        let g = self.groups[i];
        (g != NO_GROUP && self.queued_at[i] != u64::MAX && seq >= self.queued_at[i]).then_some(g as u16)
    }

    fn submitted(&self, ctx: SqeContext) -> bool {
        self.live(ctx).is_some_and(|i| self.queued_at[i] != u64::MAX)
    }

    /// Records the slot's one submission; false if it has one already.
    fn record(&mut self, ctx: SqeContext, group: u32, queued_at: u64) -> Option<usize> {
        let i = self.live(ctx)?;
        if self.queued_at[i] != u64::MAX {
            return None;
        }
        self.groups[i] = group;
        self.queued_at[i] = queued_at;
        Some(i)
    }

    fn release(&mut self, ctx: SqeContext) -> Result<T> {
        let Some(i) = self.live(ctx) else {
            self.stats.stale_returns += 1;
            return Err(Error::StaleContext);
        };
        self.generations[i] = self.generations[i].wrapping_add(1);
        self.free.push(i as u32);
        self.stats.in_use -= 1;
        self.stats.released += 1;
        Ok(self.slots[i])
    }

    fn reset(&mut self) -> Result<()> {
        if self.stats.in_use != 0 {
            return Err(Error::InvalidArgument(format!(
                "{} pool reset with {} slots still borrowed",
                self.name, self.stats.in_use
            )));
        }
        self.stats = PoolStats { capacity: self.stats.capacity, ..Default::default() };
        Ok(())
    }
}

/// The indirect and extended context pools of a ring: fixed capacity,
/// allocated once at ring creation, never grown.
///
/// Acquiring returns the [`SqeContext`] that names the slot; the slot is
/// reached through [`indirect_mut`](Self::indirect_mut) /
/// [`extended_mut`](Self::extended_mut) while it is live and returned with
/// [`release`](Self::release), exactly once: a second release (or a stale
/// context) is an [`Error::StaleContext`], never a double free.
pub struct ContextPools {
    indirect: Pool<IndirectSqe>,
    extended: Pool<ExtSqe>,
    /// The ring these pools belong to ([`Ring::id`](crate::Ring::id)), or
    /// 0 for pools made with [`new`](Self::new), which vouch for no CQE.
    ring: u64,
}

impl fmt::Debug for ContextPools {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContextPools")
            .field("indirect", &self.indirect.stats)
            .field("extended", &self.extended.stats)
            .finish()
    }
}

impl ContextPools {
    /// Pools with `indirect` and `extended` slots.
    pub fn new(indirect: u32, extended: u32) -> Self {
        Self::for_ring(0, indirect, extended)
    }

    pub(crate) fn for_ring(ring: u64, indirect: u32, extended: u32) -> Self {
        ContextPools {
            indirect: Pool::new(indirect, 1, "indirect"),
            extended: Pool::new(extended, 2, "extended"),
            ring,
        }
    }

    /// The ring these pools belong to (0 for standalone pools).
    pub fn ring_id(&self) -> u64 {
        self.ring
    }

    /// Records the entry queued under the pooled context `ctx` when the
    /// ring's CQ position was `queued_at`: copies it into the slot (the
    /// copy [`indirect`](Self::indirect) and [`extended`](Self::extended)
    /// show) and notes, where the caller cannot edit them, the buffer group
    /// it selects from and the position. A slot names **one** submission:
    /// returns `false` (recording nothing) when `ctx` is not live here or
    /// already names one. The typed push paths of `uring-ops` call it
    /// after checking [`submitted`](Self::submitted).
    ///
    /// # Safety
    ///
    /// `sqe` must be exactly the entry queued on this pools' ring with
    /// `user_data` `ctx`, recorded before the entry can be submitted, and
    /// `queued_at` the ring's [`cq_position`](crate::Ring::cq_position)
    /// before it was queued: the recorded group is what
    /// [`Cqe::buffer_selection`](crate::Cqe::buffer_selection) trusts to
    /// let a buffer ring hand out the buffer a CQE names.
    pub unsafe fn record_submission(&mut self, ctx: SqeContext, sqe: &Sqe, queued_at: u64) -> bool {
        let group = if SqeFlags::from_bits_retain(sqe.flags).contains(SqeFlags::BUFFER_SELECT) {
            u32::from(sqe.buf_group())
        } else {
            NO_GROUP
        };
        match ctx.mode() {
            ContextMode::Indirect => match self.indirect.record(ctx, group, queued_at) {
                Some(i) => {
                    self.indirect.slots[i].sqe = *sqe;
                    true
                }
                None => false,
            },
            ContextMode::Extended => match self.extended.record(ctx, group, queued_at) {
                Some(i) => {
                    self.extended.slots[i].sqe = *sqe;
                    true
                }
                None => false,
            },
            ContextMode::Direct | ContextMode::Foreign => false,
        }
    }

    /// Whether the live pooled context `ctx` already names a queued entry
    /// (a slot names one submission: acquire another for the next).
    pub fn submitted(&self, ctx: SqeContext) -> bool {
        match ctx.mode() {
            ContextMode::Indirect => self.indirect.submitted(ctx),
            ContextMode::Extended => self.extended.submitted(ctx),
            ContextMode::Direct | ContextMode::Foreign => false,
        }
    }

    /// The buffer group recorded for the live pooled context `ctx` of a
    /// CQE reaped by ring `ring` at position `seq`, if these pools are
    /// that ring's and the CQE was reaped after the entry was queued (a
    /// CQE of an earlier use of the slot, even one its 32-bit generation
    /// has come round to again, proves nothing).
    pub(crate) fn selected_group(&self, ring: u64, ctx: SqeContext, seq: u64) -> Option<u16> {
        if ring == 0 || ring != self.ring {
            return None;
        }
        match ctx.mode() {
            ContextMode::Indirect => self.indirect.group(ctx, seq),
            ContextMode::Extended => self.extended.group(ctx, seq),
            ContextMode::Direct | ContextMode::Foreign => None,
        }
    }

    /// [`Cqe::buffer_selection`](crate::Cqe::buffer_selection) resolved
    /// against these pools: for a view without pools (a
    /// [`CqeSlot`](crate::CqeSlot)'s, or a shared ring's) whose context is
    /// pooled. Direct contexts resolve as there.
    pub fn buffer_selection(&self, cqe: &crate::Cqe<'_>) -> Option<crate::BufferSelection> {
        if let Some(sel) = cqe.buffer_selection() {
            return Some(sel);
        }
        cqe.buffer_id()?;
        let group = self.selected_group(cqe.ring_id(), cqe.context(), cqe.seq())?;
        // SAFETY: the group was recorded by `record_submission` for the
        // live slot this CQE's context names, on the ring that reaped it.
        unsafe { crate::BufferSelection::vouch(cqe, group) }
    }

    /// Borrows a zeroed indirect slot.
    pub fn acquire_indirect(&mut self) -> Result<SqeContext> {
        self.indirect.acquire()
    }

    /// Borrows a zeroed extended slot.
    pub fn acquire_extended(&mut self) -> Result<SqeContext> {
        self.extended.acquire()
    }

    /// The live indirect slot `ctx` names.
    pub fn indirect(&self, ctx: SqeContext) -> Option<&IndirectSqe> {
        self.indirect.get(ctx)
    }

    /// The live indirect slot `ctx` names, mutable.
    pub fn indirect_mut(&mut self, ctx: SqeContext) -> Option<&mut IndirectSqe> {
        self.indirect.get_mut(ctx)
    }

    /// The live extended slot `ctx` names.
    pub fn extended(&self, ctx: SqeContext) -> Option<&ExtSqe> {
        self.extended.get(ctx)
    }

    /// The live extended slot `ctx` names, mutable.
    pub fn extended_mut(&mut self, ctx: SqeContext) -> Option<&mut ExtSqe> {
        self.extended.get_mut(ctx)
    }

    /// Returns the slot `ctx` names to its pool. Fails with
    /// [`Error::StaleContext`] if it is not live (already returned, direct,
    /// or from elsewhere).
    pub fn release(&mut self, ctx: SqeContext) -> Result<()> {
        match ctx.mode() {
            ContextMode::Indirect => self.indirect.release(ctx).map(drop),
            ContextMode::Extended => self.extended.release(ctx).map(drop),
            _ => Err(Error::StaleContext),
        }
    }

    /// Counters of the indirect pool.
    pub fn indirect_stats(&self) -> PoolStats {
        self.indirect.stats
    }

    /// Counters of the extended pool.
    pub fn extended_stats(&self) -> PoolStats {
        self.extended.stats
    }

    /// Clears the counters. Fails if any slot is still borrowed.
    pub fn reset(&mut self) -> Result<()> {
        self.indirect.reset()?;
        self.extended.reset()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_round_trips_every_field() {
        for fd in [0, 1, 1 << 20, i32::MAX - 1] {
            let flags = SqeFlags::IO_LINK | SqeFlags::CQE_SKIP_SUCCESS | SqeFlags::FIXED_FILE;
            let c = SqeContext::direct(0xfe, flags, 0xbeef, fd);
            assert_eq!(c.mode(), ContextMode::Direct);
            assert_eq!((c.op(), c.flags(), c.buf_group(), c.fd()), (Some(0xfe), Some(flags), Some(0xbeef), Some(fd)));
        }
        let none = SqeContext::direct(1, SqeFlags::empty(), 0, -1);
        assert_eq!(none.fd(), None);
        let c = SqeContext::for_fd(9).with_op(22).with_buf_group(4).with_flags(SqeFlags::ASYNC).with_fd(11);
        assert_eq!((c.op(), c.buf_group(), c.flags(), c.fd()), (Some(22), Some(4), Some(SqeFlags::ASYNC), Some(11)));
        assert_eq!(c.with_op(23).with_fd(-1).op(), Some(23));
    }

    #[test]
    fn pools_return_each_slot_exactly_once() {
        let mut p = ContextPools::new(2, 1);
        let a = p.acquire_indirect().unwrap();
        let b = p.acquire_indirect().unwrap();
        assert!(matches!(p.acquire_indirect(), Err(Error::PoolExhausted { pool: "indirect", capacity: 2 })));
        assert_eq!(a.mode(), ContextMode::Indirect);
        p.indirect_mut(a).unwrap().sqe.0.len = 77;
        assert_eq!(p.indirect(a).unwrap().sqe.0.len, 77);
        p.release(a).unwrap();
        assert!(matches!(p.release(a), Err(Error::StaleContext)));
        assert!(p.indirect(a).is_none(), "a returned slot is not reachable through its old context");
        let c = p.acquire_indirect().unwrap();
        assert_ne!(a, c, "reuse bumps the generation");
        assert_eq!(p.indirect(c).unwrap().sqe.0.len, 0, "reused slots come back zeroed");
        let s = p.indirect_stats();
        assert_eq!((s.in_use, s.peak, s.acquired, s.released, s.exhausted, s.stale_returns), (2, 2, 3, 1, 1, 1));
        assert!(p.reset().is_err(), "reset refuses while slots are borrowed");
        p.release(b).unwrap();
        p.release(c).unwrap();
        p.reset().unwrap();

        let e = p.acquire_extended().unwrap();
        assert_eq!(e.mode(), ContextMode::Extended);
        assert!(p.indirect(e).is_none(), "modes do not cross");
        p.extended_mut(e).unwrap().data.view_mut::<CtxWords>().words[7] = 42;
        assert_eq!(p.extended(e).unwrap().data.view::<[u64; 8]>()[7], 42);
        assert_eq!(p.extended(e).unwrap().data.view::<u8>(), &0);
        assert!(p.release(SqeContext::for_fd(3)).is_err(), "direct contexts have no slot");
        assert!(p.extended(SqeContext::from_raw(u64::MAX - 1)).is_none(), "foreign user_data decodes to nothing");

        // A reference-counted hand-off: one strong count travels in the slot.
        let shared = std::sync::Arc::new(String::from("connection state"));
        let data = &mut p.extended_mut(e).unwrap().data;
        data.put_arc(2, shared.clone()).unwrap();
        assert!(data.put_arc(2, shared.clone()).is_err(), "an occupied word is refused");
        assert!(data.put_arc(8, shared.clone()).is_err(), "beyond the data");
        assert_eq!(std::sync::Arc::strong_count(&shared), 2, "refused values were dropped, not leaked");
        // SAFETY: word 2 holds the Arc<String> stored just above.
        let back: std::sync::Arc<String> = unsafe { data.take_arc(2) }.unwrap();
        // SAFETY: as above; the word is now zero.
        assert!(unsafe { data.take_arc::<String>(2) }.is_err(), "taken back only once");
        assert_eq!(*back, "connection state");
        drop(back);
        assert_eq!(std::sync::Arc::strong_count(&shared), 1, "taken back exactly once");
        assert_eq!(p.extended(e).unwrap().data.view::<[usize; 8]>()[2], 0, "the word is cleared");
    }
}
