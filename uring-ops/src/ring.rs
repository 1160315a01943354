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
    /// submit. Use it to queue a linked chain all or nothing. The same
    /// number as [`Ring::sq_space_left`], under the same name, so generic
    /// code over `RingOps` (and [`WithFlags`](crate::WithFlags)) can ask.
    fn sq_space_left(&mut self) -> u32;
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
        // Every path refuses the layers' tags, the unsafe one too: named
        // ring methods, deadlines and helpers all come through here.
        refuse_reserved(ctx)?;
        // SAFETY: forwarded to the caller.
        unsafe { push_selecting(self, ctx, op, false) }.map(|(stamped, _)| stamped)
    }

    #[inline]
    fn sq_space_left(&mut self) -> u32 {
        Ring::sq_space_left(self)
    }
}

/// Queues `op` under a `user_data` carrying a layer's reserved tag
/// ([`uring_core::FOREIGN_TAG_SUBSCRIPTION`] and its neighbours), which
/// every other push refuses: for the layers themselves (fixed buffers,
/// zero-copy receive, zero-copy sends, subscriptions).
///
/// # Errors
///
/// As for [`RingOps::push_op`].
///
/// # Safety
///
/// As for [`RingOps::push_op_unchecked`], and: the caller is the layer the
/// tag names, `ctx` is an identity it issued for this operation only, and
/// it releases memory on a CQE with `ctx` only after checking the CQE's
/// ring ([`Cqe::ring_id`](uring_core::Cqe::ring_id)) and position
/// ([`Cqe::seq`](uring_core::Cqe::seq)).
#[doc(hidden)]
#[inline]
pub unsafe fn push_layer_op<O: Prepare>(ring: &mut Ring, ctx: SqeContext, op: O) -> Result<(SqeContext, Option<u16>)> {
    // SAFETY: forwarded to the caller.
    unsafe { push_selecting(ring, ctx, op, false) }
}

/// Queues `op`, which may select from a buffer group reserved with
/// [`Ring::reserve_buffer_group`] (every other push refuses such an
/// entry): for the layer that owns the group. Reserved layer tags are
/// refused as by [`RingOps::push_op_unchecked`].
///
/// # Errors
///
/// As for [`RingOps::push_op`].
///
/// # Safety
///
/// As for [`RingOps::push_op_unchecked`], and: the caller is the layer
/// that reserved the group the entry selects from.
#[doc(hidden)]
#[inline]
pub unsafe fn push_group_owner_op<O: Prepare>(
    ring: &mut Ring,
    ctx: SqeContext,
    op: O,
) -> Result<(SqeContext, Option<u16>)> {
    refuse_reserved(ctx)?;
    // SAFETY: forwarded to the caller.
    unsafe { push_selecting(ring, ctx, op, true) }
}

/// [`push_layer_op`] for an entry that selects from a buffer group the
/// layer reserved ([`Ring::reserve_buffer_group`]).
///
/// # Errors
///
/// As for [`RingOps::push_op`].
///
/// # Safety
///
/// As for [`push_layer_op`] and [`push_group_owner_op`] together.
#[doc(hidden)]
#[inline]
pub unsafe fn push_group_owner_layer_op<O: Prepare>(
    ring: &mut Ring,
    ctx: SqeContext,
    op: O,
) -> Result<(SqeContext, Option<u16>)> {
    // SAFETY: forwarded to the caller.
    unsafe { push_selecting(ring, ctx, op, true) }
}

/// `push_op_unchecked` on a [`Ring`], also returning the buffer group the
/// queued entry selects from (`IOSQE_BUFFER_SELECT`), if any: what a layer
/// that queues under its own identity vouches for at completion.
///
/// # Safety
///
/// As for [`RingOps::push_op_unchecked`].
#[inline]
pub(crate) unsafe fn push_selecting<O: Prepare>(
    ring: &mut Ring,
    ctx: SqeContext,
    op: O,
    group_owner: bool,
) -> Result<(SqeContext, Option<u16>)> {
    op.check(ring.features())?;
    check_live(ring.pools(), ctx)?;
    let queued_at = ring.cq_position();
    // SAFETY: forwarded to the caller (the memory the operation names);
    // the Keep holds the rest until the kernel consumed the entry.
    let (sqe, keep) = unsafe { ring.next_sqe_keep() }?;
    op.prepare(sqe, keep);
    let stamped = stamp(sqe, ctx);
    let group = sqe.sqe_flags().contains(SqeFlags::BUFFER_SELECT).then(|| sqe.buf_group());
    let pooled =
        if matches!(stamped.mode(), ContextMode::Indirect | ContextMode::Extended) { Some(*sqe) } else { None };
    if let Some(g) = group {
        if !group_owner && ring.is_buffer_group_reserved(g) {
            // SAFETY: the entry was acquired just above and nothing
            // depends on it: it is taken back, never submitted.
            unsafe { ring.retract_last_sqe() };
            return Err(reserved_group_error(g));
        }
        ring.note_selected_group(g);
    }
    if let Some(copy) = pooled {
        // SAFETY: `copy` is the entry just queued under `ctx` on this
        // ring, not yet submitted; `queued_at` was read before it was.
        if !unsafe { record_pooled(ring.pools_mut(), ctx, copy, queued_at) } {
            // (`check_live` refused a slot with a submission already.)
            // SAFETY: acquired above, not flushed, nothing depends on it.
            unsafe { ring.retract_last_sqe() };
            return Err(submitted_error(ctx));
        }
    }
    Ok((stamped, group))
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
        refuse_reserved(ctx)?;
        op.check(self.features())?;
        let pooled = matches!(ctx.mode(), ContextMode::Indirect | ContextMode::Extended);
        if pooled {
            check_live(&self.pools(), ctx)?;
        }
        // Read before the entry exists: a lower bound of its CQEs' `seq`.
        let queued_at = if pooled { self.cq_position() } else { 0 };
        // SAFETY: forwarded to the caller; the Keep holds the rest until
        // the kernel consumed the entry. The pooled copy is written before
        // the entry can be published (the SQ lock is held), so a thread
        // reaping its CQE sees it; the pools lock is only ever taken after
        // the SQ lock here, never the other way round.
        unsafe {
            self.push_with(|sqe, keep| {
                op.prepare(sqe, keep);
                let stamped = stamp(sqe, ctx);
                // (Inside the unsafe block above: `*sqe` is the entry being
                // queued under `ctx` on this ring, unpublished while the SQ
                // lock is held, as `record_pooled` needs.)
                if pooled && !record_pooled(&mut self.pools(), ctx, *sqe, queued_at) {
                    // Another thread queued an entry under this slot
                    // meanwhile: this one becomes a NOP that posts nothing.
                    *sqe = Sqe::new(uring_core::sys::IORING_OP_NOP as u8);
                    sqe.set_sqe_flags(SqeFlags::CQE_SKIP_SUCCESS);
                    return Err(submitted_error(ctx));
                }
                Ok(stamped)
            })
        }?
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
            let flags = SqeFlags::from_bits_retain(flags);
            let stamped = ctx.with_op(sqe.opcode).with_flags(flags);
            // The group a CQE's buffer comes from is the entry's, never
            // the caller's claim: `Cqe::buffer_selection` trusts it.
            if flags.contains(SqeFlags::BUFFER_SELECT) { stamped.with_buf_group(sqe.buf_group()) } else { stamped }
        }
        _ => ctx,
    };
    sqe.user_data = stamped.raw();
    stamped
}

/// Copies the final SQE into a pooled context's slot (and the buffer
/// group it selects from, where the caller cannot edit it).
///
/// # Safety
///
/// `sqe` is the entry queued with `user_data` `ctx` on the pools' ring,
/// not yet submitted.
pub(crate) unsafe fn record_pooled(pools: &mut ContextPools, ctx: SqeContext, sqe: Sqe, queued_at: u64) -> bool {
    // SAFETY: forwarded to the caller.
    unsafe { pools.record_submission(ctx, &sqe, queued_at) }
}

#[cold]
fn submitted_error(ctx: SqeContext) -> Error {
    Error::InvalidArgument(format!(
        "{ctx:?} already names a queued entry: a pooled context names one submission (acquire another)"
    ))
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
    if live && pools.submitted(ctx) {
        Err(submitted_error(ctx))
    } else if live {
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
            | uring_core::FOREIGN_TAG_LISTENER
            | uring_core::FOREIGN_TAG_BUFRING
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
fn reserved_group_error(group: u16) -> Error {
    Error::InvalidArgument(format!(
        "buffer group {group} is reserved by the layer that owns it (a send ring): no other request may select from \
         it"
    ))
}

#[cold]
fn reserved_error(ctx: SqeContext, tag: u8) -> Error {
    Error::InvalidArgument(format!(
        "{ctx:?} carries the layer tag {tag:#04x}, which a layer above reserves for its own operations (a CQE with it \
         would tell that layer the kernel is done with its memory); use a direct or pooled context"
    ))
}
