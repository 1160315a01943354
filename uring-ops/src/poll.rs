//! Poll: add (one-shot or multishot, edge- or level-triggered), remove,
//! update.
//!
//! A poll request names no memory: the SQE carries the descriptor, the
//! event mask and flags, and (for remove and update) the `user_data` of the
//! poll to act on. Every operation here is [`SafeOp`].
//!
//! Polls are found by their `user_data`, exactly as the kernel saw it: a
//! pooled [`SqeContext`] is stamped
//! unchanged, but a packed context or a token gets the opcode (and a packed
//! one the SQE flags) stamped in
//! by [`push_op`](crate::RingOps::push_op). Pass what the poll's CQEs
//! report ([`Cqe::user_data`](uring_core::Cqe::user_data)), or use
//! [`PollAdd::stamped`] to compute it before submitting.

use uring_core::{Error, Features, Keep, Result, Sqe, SqeContext, sys};

use crate::flags::sealed::OnRing;
use crate::op::{Prepare, SafeOp, Target};
use crate::ring::RingOps;

bitflags::bitflags! {
    /// Poll events (`POLL*`), the mask of a poll request and of its CQE
    /// result. Unknown bits are kept.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct PollEvents: u32 {
        /// `POLLIN`: data to read.
        const IN = libc::POLLIN as u32;
        /// `POLLPRI`: urgent data.
        const PRI = libc::POLLPRI as u32;
        /// `POLLOUT`: writing will not block.
        const OUT = libc::POLLOUT as u32;
        /// `POLLERR`: an error condition (always reported).
        const ERR = libc::POLLERR as u32;
        /// `POLLHUP`: hang-up (always reported).
        const HUP = libc::POLLHUP as u32;
        /// `POLLNVAL`: invalid descriptor.
        const NVAL = libc::POLLNVAL as u32;
        /// `POLLRDNORM`: normal data to read.
        const RDNORM = libc::POLLRDNORM as u32;
        /// `POLLRDBAND`: priority band data to read.
        const RDBAND = libc::POLLRDBAND as u32;
        /// `POLLWRNORM`: normal data may be written.
        const WRNORM = libc::POLLWRNORM as u32;
        /// `POLLWRBAND`: priority band data may be written.
        const WRBAND = libc::POLLWRBAND as u32;
        /// `POLLMSG` (the same bit as `EPOLLMSG`).
        const MSG = libc::EPOLLMSG as u32;
        /// `POLLRDHUP`: the peer closed its writing half (sockets).
        const RDHUP = libc::POLLRDHUP as u32;
        const _ = !0;
    }
}

impl PollEvents {
    /// The events of a poll CQE's result (`None` for a negative result,
    /// an error).
    #[inline]
    pub const fn from_result(res: i32) -> Option<Self> {
        if res < 0 { None } else { Some(PollEvents::from_bits_retain(res as u32)) }
    }
}

/// Waits until a file is ready for `events`: `io_uring_prep_poll_add`
/// (`io_uring_prep_poll_multishot` with [`multishot`](Self::multishot)).
///
/// Since Linux 5.1; multishot since 5.13. The CQE's result is the ready
/// mask ([`PollEvents::from_result`]). One-shot polls complete once;
/// multishot polls post one CQE per wake-up, each with
/// `IORING_CQE_F_MORE`, until removed or an error ends them (the last CQE
/// lacks `F_MORE`).
///
/// Polls are edge-triggered by default: a multishot poll reports each new
/// wake-up, not the state that persists. [`level`](Self::level) asks for
/// level-triggered polling (`IORING_POLL_ADD_LEVEL`), which the kernel
/// defines but, up to at least 6.18, refuses in a `POLL_ADD` SQE (its prep
/// accepts only `IORING_POLL_ADD_MULTI`; it uses level polling internally).
/// [`check`](Prepare::check) therefore rejects it as
/// [`Error::Unsupported`] before anything is queued.
#[doc(alias = "IORING_OP_POLL_ADD")]
#[doc(alias = "io_uring_prep_poll_add")]
#[doc(alias = "io_uring_prep_poll_multishot")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct PollAdd {
    fd: Target,
    events: PollEvents,
    multishot: bool,
    level: bool,
}

impl PollAdd {
    /// A one-shot, edge-triggered poll of `fd` for `events`.
    #[inline]
    pub fn new(fd: impl Into<Target>, events: PollEvents) -> Self {
        PollAdd { fd: fd.into(), events, multishot: false, level: false }
    }

    /// Stays armed and posts a CQE per wake-up (`IORING_POLL_ADD_MULTI`).
    #[inline]
    pub const fn multishot(mut self) -> Self {
        self.multishot = true;
        self
    }

    /// Level-triggered (`IORING_POLL_ADD_LEVEL`); see the type's
    /// documentation: the kernel refuses it in a `POLL_ADD` SQE.
    #[inline]
    pub const fn level(mut self) -> Self {
        self.level = true;
        self
    }

    /// The `user_data` the kernel will see when this poll is pushed with
    /// `ctx`: packed contexts get the opcode and the SQE flags stamped
    /// (as [`push_op`](crate::RingOps::push_op) does); others are unchanged.
    /// This is the value [`PollRemove`] and [`PollUpdate`] look for.
    pub fn stamped(&self, ctx: SqeContext) -> u64 {
        crate::cancel::stamped(ctx, *self).raw()
    }
}

fn poll_flags(multishot: bool, level: bool) -> u32 {
    (if multishot { sys::IORING_POLL_ADD_MULTI } else { 0 }) | (if level { sys::IORING_POLL_ADD_LEVEL } else { 0 })
}

fn level_unsupported() -> Error {
    Error::unsupported(
        "IORING_POLL_ADD_LEVEL in a POLL_ADD/POLL_REMOVE SQE",
        Some("the kernel accepts only IORING_POLL_ADD_MULTI there; polls are edge-triggered"),
    )
}

impl Prepare for PollAdd {
    const CODE: u8 = sys::IORING_OP_POLL_ADD as u8;
    const USES_KEEP: bool = false;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        if self.level {
            return Err(level_unsupported());
        }
        Ok(())
    }

    #[inline]
    fn prepare(self, sqe: &mut Sqe, _keep: &mut Keep) {
        let PollAdd { fd, events, multishot, level } = self;
        *sqe = Sqe::new(Self::CODE);
        fd.apply(sqe);
        sqe.set_op_flags(events.bits());
        sqe.len = poll_flags(multishot, level);
    }
}

// SAFETY: a poll names no memory, only a descriptor and a mask.
unsafe impl SafeOp for PollAdd {}

/// Removes (cancels) a poll by its `user_data`: `io_uring_prep_poll_remove`.
///
/// Since Linux 5.1. The removed poll completes with `-ECANCELED`; this
/// operation's result is 0, or `-ENOENT` when no poll has that
/// `user_data` (`-EALREADY` when it is completing right now).
#[doc(alias = "IORING_OP_POLL_REMOVE")]
#[doc(alias = "io_uring_prep_poll_remove")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct PollRemove {
    target: u64,
}

impl PollRemove {
    /// Removes the poll submitted with `user_data` `target` (see the
    /// [module documentation](self) for packed contexts).
    #[inline]
    pub const fn new(target: u64) -> Self {
        PollRemove { target }
    }
}

impl Prepare for PollRemove {
    const CODE: u8 = sys::IORING_OP_POLL_REMOVE as u8;
    const USES_KEEP: bool = false;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        crate::cancel::check_target(self.target)
    }

    #[inline]
    fn prepare(self, sqe: &mut Sqe, _keep: &mut Keep) {
        let PollRemove { target } = self;
        *sqe = Sqe::new(Self::CODE);
        sqe.fd = -1;
        sqe.set_addr(target);
    }
}

// SAFETY: `addr` is a user_data value to match, not an address.
unsafe impl SafeOp for PollRemove {}

/// Changes an armed poll's event mask and/or `user_data`:
/// `io_uring_prep_poll_update`.
///
/// Since Linux 5.13. The poll stays armed with the new settings (no CQE for
/// it); this operation's result is 0, or `-ENOENT` when no poll has the
/// old `user_data`. Only the event mask is replaced: the kernel keeps the
/// poll's one-shot or multishot mode (`IORING_POLL_ADD_MULTI` is accepted
/// with [`events`](Self::events) and only parses the new mask; it does not
/// turn a one-shot poll into a multishot one).
#[doc(alias = "IORING_OP_POLL_REMOVE")]
#[doc(alias = "IORING_POLL_UPDATE_EVENTS")]
#[doc(alias = "IORING_POLL_UPDATE_USER_DATA")]
#[doc(alias = "io_uring_prep_poll_update")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct PollUpdate {
    target: u64,
    events: Option<PollEvents>,
    user_data: Option<u64>,
    multishot: bool,
}

impl PollUpdate {
    /// Updates the poll submitted with `user_data` `target`; say what to
    /// change with [`events`](Self::events) and/or
    /// [`user_data`](Self::user_data).
    #[inline]
    pub const fn new(target: u64) -> Self {
        PollUpdate { target, events: None, user_data: None, multishot: false }
    }

    /// The new event mask (`IORING_POLL_UPDATE_EVENTS`).
    #[inline]
    pub const fn events(mut self, events: PollEvents) -> Self {
        self.events = Some(events);
        self
    }

    /// The new `user_data` its later CQEs carry
    /// (`IORING_POLL_UPDATE_USER_DATA`).
    #[inline]
    pub const fn user_data(mut self, user_data: u64) -> Self {
        self.user_data = Some(user_data);
        self
    }

    /// Sets `IORING_POLL_ADD_MULTI` in the update (as
    /// `io_uring_prep_poll_update` does for a multishot poll); see the type's
    /// documentation for what the kernel does with it.
    #[inline]
    pub const fn multishot(mut self) -> Self {
        self.multishot = true;
        self
    }
}

impl Prepare for PollUpdate {
    const CODE: u8 = sys::IORING_OP_POLL_REMOVE as u8;
    const USES_KEEP: bool = false;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        crate::cancel::check_target(self.target)?;
        if self.events.is_none() && self.user_data.is_none() {
            return Err(Error::InvalidArgument(
                "PollUpdate changes nothing: set events and/or user_data (use PollRemove to remove a poll)".into(),
            ));
        }
        // The poll's later CQEs carry the new user_data: it must not be one
        // a layer reads as "the kernel is done with my memory".
        if let Some(ud) = self.user_data {
            crate::ring::refuse_layer(SqeContext::of_user_data(ud))?;
        }
        Ok(())
    }

    #[inline]
    fn prepare(self, sqe: &mut Sqe, _keep: &mut Keep) {
        let PollUpdate { target, events, user_data, multishot } = self;
        *sqe = Sqe::new(Self::CODE);
        sqe.fd = -1;
        sqe.set_addr(target);
        let mut flags = poll_flags(multishot, false);
        if let Some(ev) = events {
            flags |= sys::IORING_POLL_UPDATE_EVENTS;
            sqe.set_op_flags(ev.bits());
        }
        if let Some(ud) = user_data {
            flags |= sys::IORING_POLL_UPDATE_USER_DATA;
            sqe.set_off(ud);
        }
        sqe.len = flags;
    }
}

// SAFETY: `addr` and `off` are user_data values, not addresses.
unsafe impl SafeOp for PollUpdate {}

/// Poll operations as [`Ring`](uring_core::Ring) methods.
pub trait PollOps {
    /// Queues a one-shot poll of `fd` for `events` ([`PollAdd`]).
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    fn poll_add(&mut self, ctx: SqeContext, fd: impl Into<Target>, events: PollEvents) -> Result<SqeContext>;

    /// Queues a multishot poll of `fd` for `events` ([`PollAdd::multishot`]).
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    fn poll_multishot(&mut self, ctx: SqeContext, fd: impl Into<Target>, events: PollEvents) -> Result<SqeContext>;

    /// Queues the removal of the poll with `user_data` `target` ([`PollRemove`]).
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    fn poll_remove(&mut self, ctx: SqeContext, target: u64) -> Result<SqeContext>;

    /// Queues an update of the poll with `user_data` `target` to `events`
    /// ([`PollUpdate::events`]).
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    fn poll_update_events(&mut self, ctx: SqeContext, target: u64, events: PollEvents) -> Result<SqeContext>;
}

impl<R: RingOps + OnRing> PollOps for R {
    #[inline]
    fn poll_add(&mut self, ctx: SqeContext, fd: impl Into<Target>, events: PollEvents) -> Result<SqeContext> {
        self.push_op(ctx, PollAdd::new(fd, events))
    }

    #[inline]
    fn poll_multishot(&mut self, ctx: SqeContext, fd: impl Into<Target>, events: PollEvents) -> Result<SqeContext> {
        self.push_op(ctx, PollAdd::new(fd, events).multishot())
    }

    #[inline]
    fn poll_remove(&mut self, ctx: SqeContext, target: u64) -> Result<SqeContext> {
        self.push_op(ctx, PollRemove::new(target))
    }

    #[inline]
    fn poll_update_events(&mut self, ctx: SqeContext, target: u64, events: PollEvents) -> Result<SqeContext> {
        self.push_op(ctx, PollUpdate::new(target).events(events))
    }
}
