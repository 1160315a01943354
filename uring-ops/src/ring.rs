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
/// - a **token** ([`SqeContext::token`]) gets the operation's opcode and,
///   when the entry selects a provided buffer, the entry's buffer group;
/// - a **packed** context gets the operation's opcode in its op field and
///   the entry's final SQE flags in its flags field (its own flags are
///   added to the entry first), so [`Cqe::op`](uring_core::Cqe::op) and
///   [`SqeContext::flags`] tell the truth at completion; its buffer group
///   and fd are the caller's;
/// - an **indirect** or **extended** context gets a copy of the final SQE
///   in its pooled slot, so the completion can see the whole request;
/// - a **layer** value ([`uring_core::LayerData`]) is refused: only the
///   layer that owns it queues one.
///
/// Nothing is submitted: [`Ring::submit`] (or a wait) does that. A full SQ
/// is [`Error::QueueFull`], not a hidden flush.
pub trait RingOps {
    /// Queues a [`SafeOp`]: one whose memory the library holds until the
    /// kernel has consumed the entry. Returns the context as stamped into
    /// `user_data` (for a packed context, with the opcode and final SQE
    /// flags filled in): the value to cancel, remove or update the request
    /// by, and what its CQEs will carry.
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`], [`Error::InvalidArgument`] (from the
    /// operation's check, a pooled context that is not live, a layer value
    /// ([`uring_core::LayerData`]), or a token above
    /// [`SqeContext::TOKEN_MAX_SELECTING`] on an entry that selects a
    /// provided buffer),
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
        refuse_layer(ctx)?;
        // SAFETY: `O: SafeOp` names no memory the kernel reads after it
        // consumed the entry, other than the slot's Keep, which the ring
        // holds that long.
        unsafe { self.push_op_unchecked(ctx, op) }
    }

    #[inline]
    unsafe fn push_op_unchecked<O: Prepare>(&mut self, ctx: SqeContext, op: O) -> Result<SqeContext> {
        // Every path refuses layer values, the unsafe one too: named
        // ring methods, deadlines and helpers all come through here.
        refuse_layer(ctx)?;
        // SAFETY: forwarded to the caller.
        unsafe { push_selecting(self, ctx, op, false) }.map(|(stamped, _)| stamped)
    }

    #[inline]
    fn sq_space_left(&mut self) -> u32 {
        Ring::sq_space_left(self)
    }
}

/// Queues `op` under a layer value ([`uring_core::LayerData`]), which
/// every other push refuses: for the layers themselves (fixed buffers,
/// zero-copy receive, zero-copy sends, subscriptions).
///
/// # Errors
///
/// As for [`RingOps::push_op`].
///
/// # Safety
///
/// As for [`RingOps::push_op_unchecked`], and: the caller is the layer
/// `ctx` names, `ctx` is an identity it issued for this operation only, and
/// it releases memory on a CQE with `ctx` only after checking the CQE's
/// ring ([`Cqe::ring_id`](uring_core::Cqe::ring_id)) and position
/// ([`Cqe::seq`](uring_core::Cqe::seq)).
#[doc(hidden)]
#[inline]
pub unsafe fn push_layer_op<O: Prepare>(ring: &mut Ring, ctx: SqeContext, op: O) -> Result<(SqeContext, Option<u16>)> {
    if ctx.mode() != ContextMode::Layer {
        // SAFETY: forwarded to the caller.
        return unsafe { push_selecting(ring, ctx, op, false) };
    }
    // SAFETY: forwarded to the caller; `ctx` is a layer value.
    unsafe { push_layer_value(ring, ctx.raw(), op) }.map(|group| (ctx, group))
}

/// [`push_layer_op`] for a layer that builds its values itself: `user_data`
/// is written as it is (a layer value is never stamped), with no mode to
/// dispatch on.
///
/// # Errors
///
/// As for [`RingOps::push_op`].
///
/// # Safety
///
/// As for [`push_layer_op`], and `user_data` is a layer value
/// ([`uring_core::LayerData::raw`]).
#[doc(hidden)]
#[inline(always)]
pub unsafe fn push_layer_value<O: Prepare>(ring: &mut Ring, user_data: u64, op: O) -> Result<Option<u16>> {
    debug_assert_eq!(SqeContext::from_raw(user_data), None, "a layer value");
    op.check(ring.features())?;
    // SAFETY: as in `push_selecting`.
    let (sqe, keep) = unsafe { acquire::<O>(ring) }?;
    op.prepare(sqe, keep);
    sqe.user_data = user_data;
    if sqe.flags & SqeFlags::BUFFER_SELECT.bits() == 0 {
        return Ok(None);
    }
    let group = sqe.buf_group();
    // SAFETY: the entry was acquired just above, not flushed.
    unsafe { settle_selecting(ring, Ok(SqeContext::of_user_data(user_data)), group, false) }.map(|(_, g)| g)
}

/// Queues `op`, which may select from a buffer group reserved with
/// [`Ring::reserve_buffer_group`] (every other push refuses such an
/// entry): for the layer that owns the group. Layer values are refused as
/// by [`RingOps::push_op_unchecked`].
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
    refuse_layer(ctx)?;
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
/// The common case (a packed, token or layer context on an entry that
/// selects no buffer) is straight-line code: the opcode probe, the slot,
/// the operation's own writes, the stamp. Everything else (pooled
/// contexts, buffer selection, refusals after the slot was taken) is out
/// of line, so a push costs what the entry costs.
///
/// # Safety
///
/// As for [`RingOps::push_op_unchecked`].
#[inline(always)]
pub(crate) unsafe fn push_selecting<O: Prepare>(
    ring: &mut Ring,
    ctx: SqeContext,
    op: O,
    group_owner: bool,
) -> Result<(SqeContext, Option<u16>)> {
    if matches!(ctx.mode(), ContextMode::Indirect | ContextMode::Extended) {
        // SAFETY: forwarded to the caller.
        return unsafe { push_pooled(ring, ctx, op, group_owner) };
    }
    op.check(ring.features())?;
    // SAFETY: forwarded to the caller (the memory the operation names);
    // the Keep holds the rest until the kernel consumed the entry.
    let (sqe, keep) = unsafe { acquire::<O>(ring) }?;
    op.prepare(sqe, keep);
    match ctx.stamp(sqe) {
        Ok(stamped) if sqe.flags & SqeFlags::BUFFER_SELECT.bits() == 0 => Ok((stamped, None)),
        stamped => {
            let group = sqe.buf_group();
            // SAFETY: the entry was acquired just above, not flushed.
            unsafe { settle_selecting(ring, stamped, group, group_owner) }
        }
    }
}

/// The next entry and its slot's Keep for an operation of type `O`: an
/// operation that puts nothing in the Keep skips clearing it
/// ([`Prepare::USES_KEEP`], a constant, so one branch remains).
///
/// # Safety
///
/// As for [`Ring::next_sqe_keep`].
#[inline(always)]
unsafe fn acquire<O: Prepare>(ring: &mut Ring) -> Result<(&mut Sqe, &mut uring_core::Keep)> {
    if O::USES_KEEP {
        // SAFETY: forwarded to the caller.
        unsafe { ring.next_sqe_keep() }
    } else {
        // SAFETY: forwarded to the caller.
        unsafe { ring.next_sqe_uncleared() }
    }
}

/// [`push_selecting`] under a pooled context: the slot must be live and
/// without a submission, and records this entry as its one submission.
///
/// # Safety
///
/// As for [`RingOps::push_op_unchecked`].
#[inline(never)]
unsafe fn push_pooled<O: Prepare>(
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
    let stamped = stamp_entry(sqe, ctx);
    // SAFETY: `stamped` is of the entry just acquired on `ring`, not
    // flushed; `queued_at` was read before it was acquired.
    unsafe { settle(ring, ctx, stamped, queued_at, group_owner) }
}

/// The end of a push whose entry selects a provided buffer from `group`
/// (or whose stamp was refused): refuses a group a layer reserved (unless
/// `group_owner`), notes the group, and takes the entry back on refusal.
///
/// # Safety
///
/// The entry acquired last on `ring`, not flushed since, is the one
/// `stamped` was stamped into.
#[inline(never)]
unsafe fn settle_selecting(
    ring: &mut Ring,
    stamped: Result<SqeContext>,
    group: u16,
    group_owner: bool,
) -> Result<(SqeContext, Option<u16>)> {
    let refusal = match stamped {
        Ok(_) if !group_owner && ring.is_buffer_group_reserved(group) => reserved_group_error(group),
        Ok(stamped) => {
            ring.note_selected_group(group);
            return Ok((stamped, Some(group)));
        }
        Err(e) => e,
    };
    // SAFETY: the entry was acquired last and nothing depends on it (the
    // caller's contract): it is taken back, never submitted.
    unsafe { ring.retract_last_sqe() };
    Err(refusal)
}

/// A prepared entry with its context stamped: what [`settle`] needs.
pub(crate) struct Stamped {
    ctx: SqeContext,
    group: Option<u16>,
    pooled: Option<Sqe>,
}

/// Stamps `ctx` into the prepared `sqe` ([`SqeContext::stamp`]) and notes
/// the group it selects from and, for a pooled context, its final copy.
#[inline]
pub(crate) fn stamp_entry(sqe: &mut Sqe, ctx: SqeContext) -> Result<Stamped> {
    let stamped = ctx.stamp(sqe)?;
    let group = sqe.sqe_flags().contains(SqeFlags::BUFFER_SELECT).then(|| sqe.buf_group());
    let pooled =
        if matches!(stamped.mode(), ContextMode::Indirect | ContextMode::Extended) { Some(*sqe) } else { None };
    Ok(Stamped { ctx: stamped, group, pooled })
}

/// The end of every push on a [`Ring`] (64- and 128-byte entries): refuses
/// an entry that selects from a group a layer reserved (unless
/// `group_owner`), notes the group it selects from, records a pooled
/// context's one submission, and takes the entry back on any refusal.
///
/// # Safety
///
/// `stamped` comes from [`stamp_entry`] on the entry acquired last on
/// `ring`, not flushed since; `queued_at` is the ring's CQ position
/// before it was acquired.
#[inline]
pub(crate) unsafe fn settle(
    ring: &mut Ring,
    ctx: SqeContext,
    stamped: Result<Stamped>,
    queued_at: u64,
    group_owner: bool,
) -> Result<(SqeContext, Option<u16>)> {
    let refusal = match stamped {
        Ok(Stamped { ctx: stamped, group, pooled }) => 'ok: {
            if let Some(g) = group {
                if !group_owner && ring.is_buffer_group_reserved(g) {
                    break 'ok reserved_group_error(g);
                }
                ring.note_selected_group(g);
            }
            if let Some(copy) = pooled {
                // SAFETY: `copy` is the entry just queued under `ctx` on this
                // ring, not yet submitted (the caller's contract).
                if !unsafe { record_pooled(ring.pools_mut(), ctx, copy, queued_at) } {
                    // (`check_live` refused a slot with a submission already.)
                    break 'ok submitted_error(ctx);
                }
            }
            return Ok((stamped, group));
        }
        Err(e) => e,
    };
    // SAFETY: the entry was acquired last and nothing depends on it (the
    // caller's contract): it is taken back, never submitted.
    unsafe { ring.retract_last_sqe() };
    Err(refusal)
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
        refuse_layer(ctx)?;
        // SAFETY: as in `RingOps::push_op`.
        unsafe { self.push_op_unchecked(ctx, op) }
    }

    unsafe fn push_op_unchecked<O: Prepare>(&self, ctx: SqeContext, op: O) -> Result<SqeContext> {
        refuse_layer(ctx)?;
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
                let stamped = match stamp(sqe, ctx) {
                    Ok(stamped) => stamped,
                    Err(e) => {
                        // A refused token: the entry becomes a NOP that
                        // posts nothing (the SQ lock is held, it is not
                        // published yet, but it cannot be taken back).
                        *sqe = Sqe::new(uring_core::sys::IORING_OP_NOP as u8);
                        sqe.set_sqe_flags(SqeFlags::CQE_SKIP_SUCCESS);
                        return Err(e);
                    }
                };
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

/// Writes `ctx` into `sqe.user_data` as `push_op` documents
/// ([`SqeContext::stamp`]) and returns what was written.
#[inline]
pub(crate) fn stamp(sqe: &mut Sqe, ctx: SqeContext) -> Result<SqeContext> {
    ctx.stamp(sqe)
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
/// pools; other modes always pass.
#[inline]
pub(crate) fn check_live(pools: &ContextPools, ctx: SqeContext) -> Result<()> {
    let live = match ctx.mode() {
        ContextMode::Packed | ContextMode::Token | ContextMode::Layer => return Ok(()),
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

/// Refuses a layer value ([`uring_core::LayerData`]): only the layer's
/// own push ([`push_layer_op`]) queues one, since its CQE tells that layer
/// the kernel is done with memory it owns.
#[inline]
pub(crate) fn refuse_layer(ctx: SqeContext) -> Result<()> {
    if ctx.mode() == ContextMode::Layer { Err(layer_error(ctx)) } else { Ok(()) }
}

#[cold]
fn reserved_group_error(group: u16) -> Error {
    Error::InvalidArgument(format!(
        "buffer group {group} is reserved by the layer that owns it (a send ring): no other request may select from \
         it"
    ))
}

#[cold]
fn layer_error(ctx: SqeContext) -> Error {
    Error::InvalidArgument(format!(
        "{ctx:?} is a layer value (mode bits 3), which only the layer that owns it may queue (its CQE would tell that \
         layer the kernel is done with its memory); use a token, a packed or a pooled context"
    ))
}
