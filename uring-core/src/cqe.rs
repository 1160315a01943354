//! Completion entries: the borrowed [`Cqe`] view, owned [`CqeSlot`]
//! storage for [`Ring::reap`](crate::Ring::reap), and batches of reaped
//! completions.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::ptr::NonNull;

use uring_sys as sys;

use crate::context::{ContextMode, ContextPools, ExtSqe, IndirectSqe, SqeContext};

bitflags::bitflags! {
    /// `IORING_CQE_F_*` flags. Unknown bits are kept; the upper 16 bits of
    /// a CQE's flags carry the buffer id when [`CqeFlags::BUFFER`] is set.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct CqeFlags: u32 {
        /// `IORING_CQE_F_BUFFER`: a provided buffer was used; its id is in the upper 16 bits.
        const BUFFER = sys::IORING_CQE_F_BUFFER;
        /// `IORING_CQE_F_MORE`: the (multishot) operation posts more CQEs.
        const MORE = sys::IORING_CQE_F_MORE;
        /// `IORING_CQE_F_SOCK_NONEMPTY`: data remained in the socket after this receive.
        const SOCK_NONEMPTY = sys::IORING_CQE_F_SOCK_NONEMPTY;
        /// `IORING_CQE_F_NOTIF`: a zero-copy send's notification.
        const NOTIF = sys::IORING_CQE_F_NOTIF;
        /// `IORING_CQE_F_BUF_MORE`: an incremental buffer is not consumed yet.
        const BUF_MORE = sys::IORING_CQE_F_BUF_MORE;
        /// `IORING_CQE_F_SKIP`: a padding entry in a mixed CQ; never surfaced.
        const SKIP = sys::IORING_CQE_F_SKIP;
        /// `IORING_CQE_F_32`: a 32-byte CQE in a mixed CQ.
        const BIG = sys::IORING_CQE_F_32;
        const _ = !0;
    }
}

/// Storage for one copied completion (16- or 32-byte), filled by
/// [`Ring::reap`](crate::Ring::reap). Opaque; read it through the [`Cqe`]
/// views a [`Reaped`] batch hands out, or [`CqeSlot::cqe`].
#[derive(Clone, Copy, Default)]
#[repr(C, align(16))]
pub struct CqeSlot {
    /// The CQE's bytes as the kernel laid them out: `user_data`,
    /// `res | flags << 32`, and the two extra words of a 32-byte CQE.
    words: [u64; 4],
    /// Where it came from: see [`Cqe::ring_id`] and [`Cqe::seq`].
    ring: u64,
    seq: u64,
    is_big: bool,
}

impl CqeSlot {
    /// An empty slot, for building arrays: `[CqeSlot::EMPTY; 64]`. It
    /// belongs to no ring ([`Cqe::ring_id`] 0).
    pub const EMPTY: CqeSlot = CqeSlot { words: [0; 4], ring: 0, seq: 0, is_big: false };

    #[inline]
    fn head(&self) -> NonNull<sys::io_uring_cqe> {
        NonNull::from(&self.words).cast()
    }

    /// A view of the copied completion. Without the ring's pools, indirect
    /// and extended contexts are not resolved (use
    /// [`ContextPools::indirect`] with [`Cqe::context`]).
    pub fn cqe(&self) -> Cqe<'_> {
        Cqe::new(self.head(), self.is_big, None, self.ring, self.seq)
    }

    /// Records which ring reaped the CQE and at which position.
    #[inline]
    pub(crate) fn set_origin(&mut self, ring: u64, seq: u64) {
        self.ring = ring;
        self.seq = seq;
    }

    /// Copies the CQE at `src` (and its second half when `big`).
    ///
    /// # Safety
    ///
    /// `src` must point to a published CQE, followed by its 16 extra bytes
    /// when `big`.
    #[inline]
    pub(crate) unsafe fn fill(&mut self, src: *const sys::io_uring_cqe, big: bool) {
        let src = src.cast::<u64>();
        // SAFETY: the caller guarantees `src` is a readable, 8-byte aligned
        // CQE: 16 bytes, or 32 when `big`.
        unsafe {
            self.words[0] = src.read();
            self.words[1] = src.add(1).read();
            if big {
                self.words[2] = src.add(2).read();
                self.words[3] = src.add(3).read();
            }
        }
        self.is_big = big;
    }
}

impl fmt::Debug for CqeSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.cqe().fmt(f)
    }
}

/// A completion, borrowed from the ring (for
/// [`Completions`](crate::Completions)) or from the caller's
/// [`CqeSlot`]s (for [`Reaped`]). It cannot outlive the reap that produced
/// it: the ring may reuse the entry once the borrow ends.
///
/// The result stays the kernel's raw `i32` ([`res`](Self::res)); ask for
/// [`error`](Self::error) or [`result`](Self::result) to convert it.
#[derive(Clone, Copy)]
pub struct Cqe<'a> {
    raw: NonNull<sys::io_uring_cqe>,
    big: bool,
    pools: Option<&'a ContextPools>,
    ring: u64,
    seq: u64,
    _borrow: PhantomData<&'a sys::io_uring_cqe>,
}

impl<'a> Cqe<'a> {
    #[inline]
    pub(crate) fn new(
        raw: NonNull<sys::io_uring_cqe>,
        big: bool,
        pools: Option<&'a ContextPools>,
        ring: u64,
        seq: u64,
    ) -> Self {
        Cqe { raw, big, pools, ring, seq, _borrow: PhantomData }
    }

    /// The identity of the ring that reaped this CQE
    /// ([`Ring::id`](crate::Ring::id)): process-unique, never reused, never
    /// 0 (0 is an empty [`CqeSlot`]).
    ///
    /// Together with [`seq`](Self::seq) it is the CQE's provenance, which
    /// safe code cannot forge: only reaping sets it, and copies keep it.
    /// The layers that release memory on a CQE check it, so a CQE of
    /// another ring, or an old one presented again, releases nothing.
    #[inline]
    pub fn ring_id(&self) -> u64 {
        self.ring
    }

    /// The CQE's position in its ring's completion queue: CQ slots
    /// consumed before it, counted in 64 bits from the ring's creation
    /// (it never wraps). A CQE reaped later has a larger `seq`; a copy
    /// presented again has the same one.
    #[inline]
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The provided buffer this CQE hands over, with the group it was
    /// provably selected from: `Some` only when the CQE names a buffer
    /// (`IORING_CQE_F_BUFFER`) **and** its context proves the group.
    ///
    /// - A packed context proves it when it carries `IOSQE_BUFFER_SELECT`
    ///   in its flags, a token when it carries a group: submission stamps
    ///   the entry's real flags and buffer group into both
    ///   ([`SqeContext::stamp`]).
    /// - A pooled context proves it through the ring's pools, which record
    ///   the group when the entry is queued (the SQE copy a caller can edit
    ///   is not trusted); views without the ring's pools (a [`CqeSlot`]'s)
    ///   resolve nothing: use [`ContextPools::buffer_selection`].
    /// - A layer value proves nothing: the layer that queued it vouches
    ///   with [`BufferSelection::vouch`].
    #[inline]
    pub fn buffer_selection(&self) -> Option<BufferSelection> {
        self.buffer_id()?;
        let ctx = self.context();
        // Packed and token contexts carry the group; pooled ones are looked
        // up out of line; layer values prove nothing.
        let group = match ctx.inline_selection() {
            Some(group) => group,
            None if matches!(ctx.mode(), ContextMode::Indirect | ContextMode::Extended) => self.pooled_group(ctx)?,
            None => return None,
        };
        Some(BufferSelection::from_cqe(self, group))
    }

    /// The group a pooled context's slot records for this CQE.
    #[inline(never)]
    fn pooled_group(&self, ctx: SqeContext) -> Option<u16> {
        self.pools?.selected_group(self.ring, ctx, self.seq)
    }

    #[inline]
    fn raw(&self) -> &sys::io_uring_cqe {
        // SAFETY: `raw` points to a CQE that stays unchanged for 'a (a ring
        // slot below the unpublished head, or a caller slot borrowed for 'a).
        unsafe { self.raw.as_ref() }
    }

    /// `user_data` as the submission set it.
    #[inline]
    pub fn user_data(&self) -> u64 {
        self.raw().user_data
    }
    /// The decoded submission identity.
    #[inline]
    pub fn context(&self) -> SqeContext {
        SqeContext::of_user_data(self.raw().user_data)
    }
    /// The raw result: a count or value when `>= 0`, `-errno` when negative.
    #[inline]
    pub fn res(&self) -> i32 {
        self.raw().res
    }
    /// The raw flags word.
    #[inline]
    pub fn raw_flags(&self) -> u32 {
        self.raw().flags
    }
    /// The flags (the buffer id bits included, as unknown bits).
    #[inline]
    pub fn flags(&self) -> CqeFlags {
        CqeFlags::from_bits_retain(self.raw().flags)
    }
    /// `IORING_CQE_F_MORE`: more CQEs follow for this submission.
    #[inline]
    pub fn more(&self) -> bool {
        self.raw().flags & sys::IORING_CQE_F_MORE != 0
    }
    /// `IORING_CQE_F_NOTIF`: a zero-copy send notification.
    #[inline]
    pub fn notif(&self) -> bool {
        self.raw().flags & sys::IORING_CQE_F_NOTIF != 0
    }
    /// `IORING_CQE_F_SOCK_NONEMPTY`.
    #[inline]
    pub fn sock_nonempty(&self) -> bool {
        self.raw().flags & sys::IORING_CQE_F_SOCK_NONEMPTY != 0
    }
    /// `IORING_CQE_F_BUF_MORE`: the incremental buffer is not used up.
    #[inline]
    pub fn buf_more(&self) -> bool {
        self.raw().flags & sys::IORING_CQE_F_BUF_MORE != 0
    }
    /// The provided buffer id, if the kernel selected a buffer.
    #[inline]
    pub fn buffer_id(&self) -> Option<u16> {
        let f = self.raw().flags;
        (f & sys::IORING_CQE_F_BUFFER != 0).then_some((f >> sys::IORING_CQE_BUFFER_SHIFT) as u16)
    }
    /// True for a 32-byte CQE.
    #[inline]
    pub fn is_big(&self) -> bool {
        self.big
    }
    /// The second 16 bytes of a 32-byte CQE (`big_cqe[0..2]`).
    #[inline]
    pub fn big(&self) -> Option<[u64; 2]> {
        if !self.big {
            return None;
        }
        let words = sys::io_uring_cqe::big_cqe_ptr(self.raw.as_ptr());
        // SAFETY: a 32-byte CQE is followed by two u64s in the same borrow.
        Some(unsafe { [words.read(), words.add(1).read()] })
    }
    /// `Some(error)` if the result is a negative errno.
    #[inline]
    pub fn error(&self) -> Option<io::Error> {
        let res = self.res();
        (res < 0).then(|| io::Error::from_raw_os_error(-res))
    }
    /// The result as `io::Result`: the non-negative value, or the errno.
    #[inline]
    pub fn result(&self) -> io::Result<u32> {
        let res = self.res();
        if res < 0 { Err(io::Error::from_raw_os_error(-res)) } else { Ok(res as u32) }
    }
    /// The indirect context's SQE copy, if this CQE carries a live one.
    pub fn indirect(&self) -> Option<&'a IndirectSqe> {
        self.pools?.indirect(self.context())
    }
    /// The extended context (SQE and caller data), if live.
    pub fn extended(&self) -> Option<&'a ExtSqe> {
        self.pools?.extended(self.context())
    }
    /// The opcode the submission recorded: inline for packed contexts,
    /// from the SQE copy for pooled ones.
    pub fn op(&self) -> Option<u8> {
        let ctx = self.context();
        match ctx.mode() {
            ContextMode::Packed | ContextMode::Token => ctx.op(),
            ContextMode::Indirect => self.indirect().map(|s| s.sqe.opcode),
            ContextMode::Extended => self.extended().map(|s| s.sqe.opcode),
            ContextMode::Layer => None,
        }
    }
    /// The fd the submission recorded (packed contexts inline, pooled ones
    /// from the SQE copy).
    pub fn fd(&self) -> Option<i32> {
        let ctx = self.context();
        match ctx.mode() {
            ContextMode::Packed => ctx.fd(),
            ContextMode::Indirect => self.indirect().map(|s| s.sqe.fd),
            ContextMode::Extended => self.extended().map(|s| s.sqe.fd),
            ContextMode::Token | ContextMode::Layer => None,
        }
    }
    /// An owned copy of this completion (with its provenance: a copy
    /// presented again is recognised as the same CQE).
    pub fn to_slot(&self) -> CqeSlot {
        let mut s = CqeSlot::default();
        // SAFETY: `raw` is a readable CQE with its second half when `big`.
        unsafe { s.fill(self.raw.as_ptr(), self.big) };
        s.set_origin(self.ring, self.seq);
        s
    }
}

/// Proof that the kernel handed over provided buffer `bid` of buffer group
/// `group` of ring [`ring_id`](Self::ring_id) in the CQE at position
/// [`seq`](Self::seq): what a buffer ring needs before it lets the caller
/// read a buffer. Safe code gets one only from a reaped [`Cqe`]
/// ([`Cqe::buffer_selection`], [`ContextPools::buffer_selection`]); a layer
/// that queued the operation under its own identity vouches for it
/// ([`vouch`](Self::vouch), `unsafe`).
///
/// A buffer ring accepts a selection only for its own ring and group, and
/// only with a `seq` later than the one that last handed out the same
/// buffer, so a misrouted, foreign or replayed CQE releases nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferSelection {
    ring: u64,
    seq: u64,
    user_data: u64,
    res: i32,
    flags: u32,
    group: u16,
}

impl BufferSelection {
    #[inline]
    fn from_cqe(cqe: &Cqe<'_>, group: u16) -> Self {
        BufferSelection {
            ring: cqe.ring,
            seq: cqe.seq,
            user_data: cqe.user_data(),
            res: cqe.res(),
            flags: cqe.raw_flags(),
            group,
        }
    }

    /// The selection `cqe` makes from `group`, vouched for by the caller.
    /// `None` when the CQE names no buffer.
    ///
    /// # Safety
    ///
    /// `cqe` must answer an entry that the caller queued (with a
    /// `user_data` no safe code can make the kernel post, such as a
    /// layer value) with `IOSQE_BUFFER_SELECT` and buffer group
    /// `group`, on the ring that reaped `cqe`. A wrong `group` lets a
    /// buffer ring hand out a buffer the kernel may still write.
    #[inline]
    pub unsafe fn vouch(cqe: &Cqe<'_>, group: u16) -> Option<Self> {
        cqe.buffer_id()?;
        Some(BufferSelection::from_cqe(cqe, group))
    }

    /// The ring that reaped the CQE ([`Cqe::ring_id`]).
    #[inline]
    pub fn ring_id(&self) -> u64 {
        self.ring
    }

    /// The CQE's position ([`Cqe::seq`]).
    #[inline]
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The CQE's `user_data`: the request that selected.
    #[inline]
    pub fn user_data(&self) -> u64 {
        self.user_data
    }

    /// `IORING_CQE_F_MORE`: the request posts more CQEs.
    #[inline]
    pub fn more(&self) -> bool {
        self.flags & sys::IORING_CQE_F_MORE != 0
    }

    /// The buffer group the entry selected from.
    #[inline]
    pub fn group(&self) -> u16 {
        self.group
    }

    /// The buffer id the kernel chose (for a bundle, the first).
    #[inline]
    pub fn bid(&self) -> u16 {
        (self.flags >> sys::IORING_CQE_BUFFER_SHIFT) as u16
    }

    /// The CQE's raw result (bytes received, or `-errno`).
    #[inline]
    pub fn res(&self) -> i32 {
        self.res
    }

    /// The CQE's raw flags.
    #[inline]
    pub fn flags(&self) -> CqeFlags {
        CqeFlags::from_bits_retain(self.flags)
    }

    /// `IORING_CQE_F_BUF_MORE`: an incremental buffer is not used up.
    #[inline]
    pub fn buf_more(&self) -> bool {
        self.flags & sys::IORING_CQE_F_BUF_MORE != 0
    }
}

impl fmt::Debug for Cqe<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Cqe");
        d.field("user_data", &format_args!("{:#x}", self.user_data()))
            .field("res", &self.res())
            .field("flags", &self.flags());
        if let Some(big) = self.big() {
            d.field("big", &big);
        }
        d.finish()
    }
}

/// A value that owns some of a ring's CQEs (a layer's: fixed buffers, a
/// buffer ring, a send ring, zero-copy sends and receives, subscriptions,
/// listener chains): the one way each of them is offered a CQE.
///
/// Offer every CQE the reap loop sees to each owner in turn; the first
/// that answers `Some` has taken it. An owner answers `None`, changing
/// nothing, for every CQE that is not its own: another ring's
/// ([`Cqe::ring_id`]), another layer's or the caller's `user_data`, and a
/// copy of one it has taken already ([`Cqe::seq`]). So routing a CQE to
/// the wrong owner is never unsound, only unanswered.
///
/// ```no_run
/// # use uring_core::{Cqe, HandleCqe, Ring};
/// fn route(ring: &mut Ring, owner: &mut impl HandleCqe<Event = ()>, cqe: &Cqe<'_>) {
///     if owner.handle_cqe(ring, cqe).is_none() {
///         // The caller's own request: dispatch on `cqe.context()`.
///     }
/// }
/// ```
#[doc(alias = "HandleCQE")]
pub trait HandleCqe {
    /// What one of its CQEs meant (`()` for owners that report to a
    /// handler of their own).
    type Event;

    /// Offers `cqe`: `None` if it is not this owner's (route it
    /// elsewhere), else what it meant. `ring` is the ring that reaped it,
    /// for owners that queue a follow-up (a re-armed multishot, a listener
    /// chain's next phase).
    fn handle_cqe(&mut self, ring: &mut crate::Ring, cqe: &Cqe<'_>) -> Option<Self::Event>;
}

impl<T: HandleCqe + ?Sized> HandleCqe for &mut T {
    type Event = T::Event;

    #[inline]
    fn handle_cqe(&mut self, ring: &mut crate::Ring, cqe: &Cqe<'_>) -> Option<Self::Event> {
        (**self).handle_cqe(ring, cqe)
    }
}

/// Completions copied into the caller's slots by
/// [`Ring::reap`](crate::Ring::reap) and friends. The ring's CQ entries are
/// already released; the views borrow the caller's slots and the ring's
/// pools.
#[derive(Debug)]
pub struct Reaped<'a> {
    slots: &'a [CqeSlot],
    pools: Option<&'a ContextPools>,
}

impl<'a> Reaped<'a> {
    pub(crate) fn new(slots: &'a [CqeSlot], pools: Option<&'a ContextPools>) -> Self {
        Reaped { slots, pools }
    }
    /// How many completions were reaped (never zero: an empty reap is
    /// [`Error::WouldBlock`](crate::Error::WouldBlock)).
    pub fn len(&self) -> usize {
        self.slots.len()
    }
    /// Always false; present for symmetry with `len`.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
    /// Completion `i`.
    pub fn get(&self, i: usize) -> Option<Cqe<'a>> {
        self.slots.get(i).map(|s| Cqe::new(s.head(), s.is_big, self.pools, s.ring, s.seq))
    }
    /// All completions, in ring order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Cqe<'a>> + '_ {
        let pools = self.pools;
        self.slots.iter().map(move |s| Cqe::new(s.head(), s.is_big, pools, s.ring, s.seq))
    }
    /// The pools contexts resolve against.
    pub fn pools(&self) -> Option<&'a ContextPools> {
        self.pools
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CQE laid out as the kernel writes it: user_data, res, flags, and
    /// the two extra words of a 32-byte entry.
    fn slot(user_data: u64, res: i32, flags: u32, big: Option<[u64; 2]>) -> CqeSlot {
        let extra = big.unwrap_or([0, 0]);
        let words: [u64; 4] = [user_data, u64::from(res as u32) | (u64::from(flags) << 32), extra[0], extra[1]];
        let mut s = CqeSlot::EMPTY;
        // SAFETY: `words` is an 8-byte aligned, 32-byte CQE image.
        unsafe { s.fill(words.as_ptr().cast(), big.is_some()) };
        s
    }

    #[test]
    fn flag_accessors_decode_the_kernel_bits() {
        let f = sys::IORING_CQE_F_BUFFER
            | sys::IORING_CQE_F_MORE
            | sys::IORING_CQE_F_SOCK_NONEMPTY
            | sys::IORING_CQE_F_BUF_MORE
            | (513 << sys::IORING_CQE_BUFFER_SHIFT);
        let s = slot(7, 1500, f, None);
        let c = s.cqe();
        assert_eq!((c.user_data(), c.res(), c.raw_flags()), (7, 1500, f));
        assert!(c.more() && c.sock_nonempty() && c.buf_more() && !c.notif());
        assert_eq!(c.buffer_id(), Some(513));
        assert_eq!(c.result().unwrap(), 1500);
        assert!(c.error().is_none() && !c.is_big() && c.big().is_none());
        assert!(c.flags().contains(CqeFlags::BUFFER | CqeFlags::MORE));

        let s = slot(8, -libc::ECANCELED, sys::IORING_CQE_F_NOTIF, Some([1, 2]));
        let c = s.cqe();
        assert!(c.notif() && !c.more() && c.buffer_id().is_none());
        assert_eq!(c.error().unwrap().raw_os_error(), Some(libc::ECANCELED));
        assert_eq!(c.big(), Some([1, 2]));
        let copy = c.to_slot();
        assert_eq!(copy.cqe().big(), Some([1, 2]));
        assert_eq!(copy.cqe().user_data(), 8);
    }
}

/// Property tests: CQE decoding from arbitrary words. A CQE's words are
/// whatever the kernel (or a `MSG_RING` sender) put there; no input may
/// make a view panic, and no input may make [`Cqe::buffer_selection`]
/// claim a group the submission did not prove.
#[cfg(test)]
mod prop {
    use proptest::prelude::*;

    use super::*;
    use crate::Sqe;
    use crate::SqeFlags;

    const BUF: u32 = sys::IORING_CQE_F_BUFFER;

    /// `PROPTEST_CASES` when set (for a longer run), else `default`.
    fn cases(default: u32) -> u32 {
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
    }

    /// A CQE with arbitrary words and origin.
    fn slot_of(words: [u64; 4], big: bool, ring: u64, seq: u64) -> CqeSlot {
        let mut s = CqeSlot::EMPTY;
        // SAFETY: `words` is an 8-byte aligned, 32-byte CQE image.
        unsafe { s.fill(words.as_ptr().cast(), big) };
        s.set_origin(ring, seq);
        s
    }

    fn words(user_data: u64, res: i32, flags: u32, extra: [u64; 2]) -> [u64; 4] {
        [user_data, u64::from(res as u32) | (u64::from(flags) << 32), extra[0], extra[1]]
    }

    /// Flags biased towards the interesting bits (BUFFER, BUF_MORE, …)
    /// with an arbitrary buffer id, or entirely arbitrary.
    fn flags() -> impl Strategy<Value = u32> {
        prop_oneof![any::<u32>(), (any::<u16>(), 0u32..64).prop_map(|(bid, low)| (u32::from(bid) << 16) | low),]
    }

    /// User data biased towards each context mode.
    fn user_data() -> impl Strategy<Value = u64> {
        prop_oneof![
            any::<u64>(),
            any::<u64>().prop_map(|u| u & !0b11),            // direct
            any::<u64>().prop_map(|u| (u & !0b111) | 1),     // indirect
            any::<u64>().prop_map(|u| (u & !0b111) | 0b101), // extended
            any::<u64>().prop_map(|u| (u & !0b11) | 2),      // token
            any::<u64>().prop_map(|u| u | 0b11),             // layer
        ]
    }

    /// Calls every accessor; none may panic.
    fn touch_everything(c: &Cqe<'_>) {
        let _ = (c.user_data(), c.context(), c.res(), c.raw_flags(), c.flags());
        let _ = (c.more(), c.notif(), c.sock_nonempty(), c.buf_more(), c.buffer_id(), c.is_big(), c.big());
        let _ = (c.error(), c.result(), c.indirect(), c.extended(), c.op(), c.fd());
        let _ = (c.ring_id(), c.seq(), c.buffer_selection(), format!("{c:?}"), format!("{:?}", c.context()));
        let copy = c.to_slot();
        let d = copy.cqe();
        assert_eq!(
            (d.user_data(), d.res(), d.raw_flags(), d.big(), d.ring_id(), d.seq()),
            (c.user_data(), c.res(), c.raw_flags(), c.big(), c.ring_id(), c.seq()),
            "a copy keeps the CQE and its provenance"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(cases(2048)))]

        /// Without pools, only a packed context with BUFFER_SELECT and a
        /// CQE with IORING_CQE_F_BUFFER yields a selection, and it is the
        /// one the words say.
        #[test]
        fn a_selection_needs_a_buffer_and_a_proving_context(
            ud in user_data(), res in any::<i32>(), fl in flags(), extra in any::<[u64; 2]>(),
            big in any::<bool>(), ring in any::<u64>(), seq in any::<u64>(),
        ) {
            let s = slot_of(words(ud, res, fl, extra), big, ring, seq);
            let c = s.cqe();
            touch_everything(&c);
            let ctx = SqeContext::of_user_data(ud);
            // The model, from the documented layout: a packed context with
            // BUFFER_SELECT in bits 10-16 and its group in bits 17-32, or a
            // token (mode 2) with bit 10 set and its group in bits 11-26.
            let (proving_ctx, group) = match ud & 3 {
                0 => (ctx.flags().is_some_and(|f| f.contains(SqeFlags::BUFFER_SELECT)), (ud >> 17) as u16),
                2 => (ud & (1 << 10) != 0, (ud >> 11) as u16),
                _ => (false, 0),
            };
            let proving = fl & BUF != 0 && proving_ctx;
            match c.buffer_selection() {
                None => prop_assert!(!proving, "{c:?} proves its group but gave no selection"),
                Some(sel) => {
                    prop_assert!(proving, "{c:?} claimed {sel:?}");
                    prop_assert_eq!(sel.group(), group);
                    prop_assert_eq!(sel.bid(), (fl >> 16) as u16);
                    prop_assert_eq!(Some(sel.bid()), c.buffer_id());
                    prop_assert_eq!((sel.ring_id(), sel.seq(), sel.res(), sel.flags().bits()), (ring, seq, res, fl));
                    prop_assert_eq!(sel.buf_more(), fl & sys::IORING_CQE_F_BUF_MORE != 0);
                }
            }
            // Pools of no ring (ring id 0) vouch for nothing beyond the
            // direct proof.
            let pools = ContextPools::new(4, 4);
            prop_assert_eq!(pools.buffer_selection(&c), c.buffer_selection());
            if ctx.mode() == ContextMode::Layer {
                prop_assert!(c.buffer_selection().is_none());
                prop_assert!(c.op().is_none() && c.fd().is_none());
            }
        }

        /// Pooled contexts: the group comes only from what
        /// `record_submission` noted for a live slot, on the pools' own
        /// ring, and never from the SQE copy the caller may edit.
        #[test]
        fn pooled_selections_resolve_only_through_their_rings_pools(
            pool_ring in 0u64..4, cqe_ring in 0u64..4, extended in any::<bool>(),
            sqe_flags in any::<u8>(), group in any::<u16>(), edited_group in any::<u16>(),
            edited_flags in any::<u8>(), record in any::<bool>(), release in any::<bool>(),
            res in any::<i32>(), fl in flags(), seq in any::<u64>(), stale_gen in any::<bool>(),
            queued_at in any::<u64>(), twice in any::<bool>(),
        ) {
            let mut pools = ContextPools::for_ring(pool_ring, 2, 2);
            let ctx = if extended { pools.acquire_extended() } else { pools.acquire_indirect() }.unwrap();
            let mut sqe = Sqe::new(sys::IORING_OP_RECV as u8);
            sqe.0.flags = sqe_flags;
            sqe.set_buf_group(group);
            sqe.set_context(ctx);
            let queued_at = queued_at.min(u64::MAX - 1);
            if record {
                // SAFETY: a test: no ring submits anything here.
                let recorded = unsafe { pools.record_submission(ctx, &sqe, queued_at) };
                prop_assert!(recorded, "the first submission is recorded");
                prop_assert!(pools.submitted(ctx));
                if twice {
                    // A slot names one submission: a second one (another
                    // group, a later position) is refused and changes nothing.
                    let mut other = sqe;
                    other.set_buf_group(group.wrapping_add(1));
                    // SAFETY: as above.
                    let again = unsafe { pools.record_submission(ctx, &other, queued_at / 2) };
                    prop_assert!(!again, "a second submission is refused");
                }
            }
            // The caller edits the copy afterwards.
            if let Some(ext) = pools.extended_mut(ctx) {
                ext.sqe.0.flags = edited_flags;
                ext.sqe.set_buf_group(edited_group);
            }
            if let Some(ind) = pools.indirect_mut(ctx) {
                ind.sqe.0.flags = edited_flags;
                ind.sqe.set_buf_group(edited_group);
            }
            if release {
                pools.release(ctx).unwrap();
            }
            // A context naming the slot under another generation.
            let named = if stale_gen { SqeContext::of_user_data(ctx.raw().wrapping_add(1 << 33)) } else { ctx };
            let s = slot_of(words(named.raw(), res, fl, [0, 0]), false, cqe_ring, seq);
            let without = s.cqe();
            prop_assert!(without.buffer_selection().is_none(), "a view without pools proves no pooled group");
            let with = Cqe::new(s.head(), false, Some(&pools), cqe_ring, seq);
            touch_everything(&with);
            let proving = fl & BUF != 0
                && record
                && !release
                && !stale_gen
                && pool_ring != 0
                && cqe_ring == pool_ring
                && seq >= queued_at
                && SqeFlags::from_bits_retain(sqe_flags).contains(SqeFlags::BUFFER_SELECT);
            for got in [with.buffer_selection(), pools.buffer_selection(&without)] {
                match got {
                    None => prop_assert!(!proving, "a proven pooled selection was not resolved"),
                    Some(sel) => {
                        prop_assert!(proving, "claimed {sel:?}");
                        prop_assert_eq!(sel.group(), group, "the recorded group, not the edited copy's");
                        prop_assert_eq!((sel.ring_id(), sel.seq(), sel.bid()), (cqe_ring, seq, (fl >> 16) as u16));
                    }
                }
            }
        }
    }
}
