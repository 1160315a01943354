//! [`RingOps`]: acquire an SQE, prepare an operation into it, stamp the
//! [`SqeContext`].

use uring_core::{ContextMode, Error, Result, Ring, SqeContext, SqeFlags};

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
    /// kernel has consumed the entry.
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`], [`Error::InvalidArgument`] (from the
    /// operation's check, or a pooled context that is not live),
    /// [`Error::QueueFull`], [`Error::NotStarted`], [`Error::Stopped`].
    fn push_op<O: SafeOp>(&mut self, ctx: SqeContext, op: O) -> Result<()>;

    /// Queues any operation.
    ///
    /// # Errors
    ///
    /// As for [`push_op`](Self::push_op).
    ///
    /// # Safety
    ///
    /// Every address the operation names (the buffers, iovecs and output
    /// structures given to its constructor) must stay valid, and must not be
    /// accessed in a way the operation forbids (read while the kernel writes
    /// it, written while the kernel reads it), until the operation's last
    /// CQE has been reaped: for multishot operations, the CQE without
    /// `IORING_CQE_F_MORE`. Each operation's documentation says which
    /// memory that is.
    unsafe fn push_op_unchecked<O: Prepare>(&mut self, ctx: SqeContext, op: O) -> Result<()>;

    /// Free SQ entries: how many `push_op` calls will succeed before a
    /// submit. Use it to queue a linked chain all or nothing.
    fn sq_room(&mut self) -> u32;
}

impl RingOps for Ring {
    #[inline]
    fn push_op<O: SafeOp>(&mut self, ctx: SqeContext, op: O) -> Result<()> {
        // SAFETY: `O: SafeOp` names no memory the kernel reads after it
        // consumed the entry, other than the slot's Keep, which the ring
        // holds that long.
        unsafe { self.push_op_unchecked(ctx, op) }
    }

    #[inline]
    unsafe fn push_op_unchecked<O: Prepare>(&mut self, ctx: SqeContext, op: O) -> Result<()> {
        op.check(self.features())?;
        let mode = ctx.mode();
        if matches!(mode, ContextMode::Indirect | ContextMode::Extended) {
            check_pooled(self, ctx)?;
        }
        // SAFETY: forwarded to the caller (the memory the operation names);
        // the Keep holds the rest until the kernel consumed the entry.
        let (sqe, keep) = unsafe { self.next_sqe_keep() }?;
        op.prepare(sqe, keep);
        match mode {
            ContextMode::Direct => {
                let flags = sqe.flags | direct_flags(ctx);
                sqe.flags = flags;
                sqe.user_data = ctx.with_op(sqe.opcode).with_flags(SqeFlags::from_bits_retain(flags)).raw();
            }
            ContextMode::Indirect => {
                sqe.user_data = ctx.raw();
                let copy = *sqe;
                if let Some(slot) = self.pools_mut().indirect_mut(ctx) {
                    slot.sqe = copy;
                }
            }
            ContextMode::Extended => {
                sqe.user_data = ctx.raw();
                let copy = *sqe;
                if let Some(slot) = self.pools_mut().extended_mut(ctx) {
                    slot.sqe = copy;
                }
            }
            ContextMode::Foreign => sqe.user_data = ctx.raw(),
        }
        Ok(())
    }

    #[inline]
    fn sq_room(&mut self) -> u32 {
        self.sq_space_left()
    }
}

#[inline]
fn direct_flags(ctx: SqeContext) -> u8 {
    match ctx.flags() {
        Some(f) => f.bits(),
        None => 0,
    }
}

fn check_pooled(ring: &Ring, ctx: SqeContext) -> Result<()> {
    let live = match ctx.mode() {
        ContextMode::Indirect => ring.pools().indirect(ctx).is_some(),
        _ => ring.pools().extended(ctx).is_some(),
    };
    if live {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "{ctx:?} does not name a live slot of this ring's context pools (released already, or from another ring)"
        )))
    }
}
