//! [`RingOps`]: acquire an SQE, prepare an operation into it, stamp the
//! [`SqeContext`].

use uring_core::{ContextMode, ContextPools, Error, Result, Ring, SharedRing, Sqe, SqeContext, SqeFlags};

use crate::op::{Prepare, SafeOp};

/// Submitting operations on a [`Ring`].
///
/// Each call checks the operation against the ring's
/// [`Features`](uring_core::Features) first (an unsupported opcode is
/// [`Error::Unsupported`] by name, and nothing is queued), acquires the
/// next SQE together with its [`Keep`](uring_core::Keep), lets the
/// operation write the entry, and stamps `ctx` into `user_data`:
///
/// - a **direct** context gets the operation's opcode in its op field and
///   the entry's final SQE flags in its flags field (its own flags are
///   added to the entry first), so [`Cqe::op`](uring_core::Cqe::op) and
///   [`SqeContext::flags`] tell the truth at completion; its buffer group
///   and fd are the caller's;
/// - an **indirect** or **extended** context gets a copy of the final SQE
///   in its pooled slot, so the completion can see the whole request;
/// - a **foreign** `user_data` (mode bits `3`) is stamped as it is.
///
/// Nothing is submitted: [`Ring::submit`] (or a wait) does that. A full SQ
/// is [`Error::QueueFull`], not a hidden flush.
pub trait RingOps {
    /// Queues a [`SafeOp`]: one whose memory the library holds until the
    /// kernel has consumed the entry. Returns the context as stamped into
    /// `user_data` (for a direct context, with the opcode and final SQE
    /// flags filled in): the value to cancel, remove or update the request
    /// by, and what its CQEs will carry.
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`], [`Error::InvalidArgument`] (from the
    /// operation's check, a pooled context that is not live, or a foreign
    /// context with a layer tag the layers above reserve: see
    /// [`uring_core::FOREIGN_TAG_SUBSCRIPTION`]),
    /// [`Error::QueueFull`], [`Error::NotStarted`], [`Error::Stopped`].
    fn push_op<O: SafeOp>(&mut self, ctx: SqeContext, op: O) -> Result<SqeContext>;

    /// Queues any operation.
    ///
    /// # Errors
    ///
    /// As for [`push_op`](Self::push_op).
    ///
    /// # Safety
    ///
    /// `ctx` must not carry one of the layer tags of foreign `user_data`
    /// ([`uring_core::FOREIGN_TAG_SUBSCRIPTION`] and its neighbours) unless
    /// the caller is that layer: a CQE with such a `user_data` tells the
    /// layer that the kernel is done with memory it owns. ([`push_op`]
    /// refuses them.)
    ///
    /// [`push_op`]: Self::push_op
    ///
    /// Every address the operation names (the buffers, iovecs and output
    /// structures given to its constructor) must stay valid, and must not be
    /// accessed in a way the operation forbids (read while the kernel writes
    /// it, written while the kernel reads it), until the operation's last
    /// CQE has been reaped: for multishot operations, the CQE without
    /// `IORING_CQE_F_MORE`. Each operation's documentation says which
    /// memory that is.
    unsafe fn push_op_unchecked<O: Prepare>(&mut self, ctx: SqeContext, op: O) -> Result<SqeContext>;

    /// Free SQ entries: how many `push_op` calls will succeed before a
    /// submit. Use it to queue a linked chain all or nothing.
    fn sq_room(&mut self) -> u32;
}

impl RingOps for Ring {
    #[inline]
    fn push_op<O: SafeOp>(&mut self, ctx: SqeContext, op: O) -> Result<SqeContext> {
        refuse_reserved(ctx)?;
        // SAFETY: `O: SafeOp` names no memory the kernel reads after it
        // consumed the entry, other than the slot's Keep, which the ring
        // holds that long.
        unsafe { self.push_op_unchecked(ctx, op) }
    }

    #[inline]
    unsafe fn push_op_unchecked<O: Prepare>(&mut self, ctx: SqeContext, op: O) -> Result<SqeContext> {
        op.check(self.features())?;
        check_live(self.pools(), ctx)?;
        // SAFETY: forwarded to the caller (the memory the operation names);
        // the Keep holds the rest until the kernel consumed the entry.
        let (sqe, keep) = unsafe { self.next_sqe_keep() }?;
        op.prepare(sqe, keep);
        let stamped = stamp(sqe, ctx);
        if stamped.mode() != ContextMode::Direct {
            let copy = *sqe;
            record_pooled(self.pools_mut(), ctx, copy);
        }
        Ok(stamped)
    }

    #[inline]
    fn sq_room(&mut self) -> u32 {
        self.sq_space_left()
    }
}

/// Submitting operations on a [`SharedRing`], from any thread: the same
/// checks, `Keep` and context stamping as [`RingOps`], with the SQ lock
/// held while the entry is written. (The families' named ring methods are
/// for [`Ring`]; on a shared ring, push their builders.)
pub trait SharedRingOps {
    /// As [`RingOps::push_op`].
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    fn push_op<O: SafeOp>(&self, ctx: SqeContext, op: O) -> Result<SqeContext>;

    /// As [`RingOps::push_op_unchecked`].
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    ///
    /// # Safety
    ///
    /// As for [`RingOps::push_op_unchecked`]; the memory must stay valid
    /// until the last CQE is reaped, by whichever thread reaps it.
    unsafe fn push_op_unchecked<O: Prepare>(&self, ctx: SqeContext, op: O) -> Result<SqeContext>;
}

impl SharedRingOps for SharedRing {
    #[inline]
    fn push_op<O: SafeOp>(&self, ctx: SqeContext, op: O) -> Result<SqeContext> {
        refuse_reserved(ctx)?;
        // SAFETY: as in `RingOps::push_op`.
        unsafe { self.push_op_unchecked(ctx, op) }
    }

    unsafe fn push_op_unchecked<O: Prepare>(&self, ctx: SqeContext, op: O) -> Result<SqeContext> {
        op.check(self.features())?;
        if matches!(ctx.mode(), ContextMode::Indirect | ContextMode::Extended) {
            check_live(&self.pools(), ctx)?;
        }
        // SAFETY: forwarded to the caller; the Keep holds the rest until
        // the kernel consumed the entry. The pooled copy is written before
        // the entry can be published (the SQ lock is held), so a thread
        // reaping its CQE sees it; the pools lock is only ever taken after
        // the SQ lock here, never the other way round.
        unsafe {
            self.push_with(|sqe, keep| {
                op.prepare(sqe, keep);
                let stamped = stamp(sqe, ctx);
                if stamped.mode() != ContextMode::Direct {
                    record_pooled(&mut self.pools(), ctx, *sqe);
                }
                stamped
            })
        }
    }
}

/// Writes `ctx` into `sqe.user_data` as `push_op` documents and returns
/// what was written: direct contexts get the entry's opcode and its final
/// SQE flags (the context's own flags are added to the entry first).
#[inline]
pub(crate) fn stamp(sqe: &mut Sqe, ctx: SqeContext) -> SqeContext {
    let stamped = match ctx.mode() {
        ContextMode::Direct => {
            let flags = sqe.flags | ctx.flags().map_or(0, |f| f.bits());
            sqe.flags = flags;
            ctx.with_op(sqe.opcode).with_flags(SqeFlags::from_bits_retain(flags))
        }
        _ => ctx,
    };
    sqe.user_data = stamped.raw();
    stamped
}

/// Copies the final SQE into a pooled context's slot.
pub(crate) fn record_pooled(pools: &mut ContextPools, ctx: SqeContext, sqe: Sqe) {
    match ctx.mode() {
        ContextMode::Indirect => {
            if let Some(slot) = pools.indirect_mut(ctx) {
                slot.sqe = sqe;
            }
        }
        ContextMode::Extended => {
            if let Some(slot) = pools.extended_mut(ctx) {
                slot.sqe = sqe;
            }
        }
        ContextMode::Direct | ContextMode::Foreign => {}
    }
}

/// Refuses a pooled context that does not name a live slot of `ring`'s
/// pools; direct and foreign contexts always pass.
#[inline]
pub(crate) fn check_live(pools: &ContextPools, ctx: SqeContext) -> Result<()> {
    let live = match ctx.mode() {
        ContextMode::Direct | ContextMode::Foreign => return Ok(()),
        ContextMode::Indirect => pools.indirect(ctx).is_some(),
        ContextMode::Extended => pools.extended(ctx).is_some(),
    };
    if live {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "{ctx:?} does not name a live slot of this ring's context pools (released already, or from another ring)"
        )))
    }
}

/// Whether `tag` is a layer tag of foreign `user_data` that a layer above
/// relies on to release memory (subscriptions, fixed buffers, zero-copy
/// sends): safe code must not be able to forge such a CQE.
#[inline]
pub(crate) const fn is_reserved(tag: u8) -> bool {
    matches!(
        tag,
        uring_core::FOREIGN_TAG_SUBSCRIPTION
            | uring_core::FOREIGN_TAG_FIXED
            | uring_core::FOREIGN_TAG_ZC
            | uring_core::FOREIGN_TAG_ZCRX
    )
}

/// Refuses a foreign context carrying a reserved layer tag.
#[inline]
pub(crate) fn refuse_reserved(ctx: SqeContext) -> Result<()> {
    match ctx.foreign_tag() {
        Some(tag) if is_reserved(tag) => Err(reserved_error(ctx, tag)),
        _ => Ok(()),
    }
}

#[cold]
fn reserved_error(ctx: SqeContext, tag: u8) -> Error {
    Error::InvalidArgument(format!(
        "{ctx:?} carries the layer tag {tag:#04x}, which a layer above reserves for its own operations (a CQE with it \
         would tell that layer the kernel is done with its memory); use a direct or pooled context"
    ))
}
