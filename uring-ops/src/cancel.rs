//! Cancellation of pending requests: [`AsyncCancel`] by user data, by
//! file, by opcode, any request, one match or all of them; and
//! [`stamped`], the `user_data` a request was really submitted with.

use uring_core::{Error, Features, Keep, Result, Sqe, SqeContext, sys};

use crate::flags::sealed::OnRing;
use crate::op::{Prepare, SafeOp, Target};
use crate::ring::RingOps;
use crate::timeout::require_version;

/// The context `op` is stamped with when it is pushed with `ctx`: what its
/// CQEs carry, and what [`AsyncCancel::new`] and
/// [`TimeoutRemove`](crate::timeout::TimeoutRemove) must be given to find
/// it.
///
/// [`RingOps::push_op`] writes a **packed** context's opcode and SQE-flag
/// fields from the entry itself (so completions tell the truth), and a
/// token's opcode; pooled contexts are stamped as they are, and returned
/// unchanged ([`SqeContext::stamp`]).
///
/// ```
/// use std::time::Duration;
/// use uring_core::{SqeContext, sys};
/// use uring_ops::cancel::stamped;
/// use uring_ops::timeout::Timeout;
/// let ctx = SqeContext::for_fd(3);
/// let key = stamped(ctx, Timeout::new(Duration::from_secs(1)));
/// assert_eq!(key.op(), Some(sys::IORING_OP_TIMEOUT as u8));
/// ```
pub fn stamped<O: Prepare>(ctx: SqeContext, op: O) -> SqeContext {
    let mut sqe = Sqe::default();
    let mut keep = Keep::new();
    op.prepare(&mut sqe, &mut keep);
    // (A stamp the push would refuse leaves `ctx` as it is.)
    ctx.stamp(&mut sqe).unwrap_or(ctx)
}

/// Refuses a target that is a token as built, never stamped (opcode 0):
/// requests are found by their `user_data` exactly as the kernel saw it,
/// which for a token includes the opcode the push stamped. Pass the
/// context `push_op` returned (or [`stamped`]).
pub(crate) fn check_target(target: u64) -> Result<()> {
    let ctx = SqeContext::of_user_data(target);
    if ctx.as_token().is_some() && ctx.op() == Some(0) {
        return Err(Error::InvalidArgument(format!(
            "{ctx:?} is a token as built, not as pushed: a request is found by the context push_op returned (with \
             its opcode stamped)"
        )));
    }
    Ok(())
}

/// Cancels pending requests: `io_uring_prep_cancel64`
/// (`io_uring_prep_cancel_fd` for [`fd`](Self::fd)).
///
/// Since Linux 5.5 (by user data). The matching request completes with
/// `-ECANCELED`. This request's result:
///
/// - one match (the default): 0 when it was cancelled, `-ENOENT` when
///   nothing matched, `-EALREADY` when it is running and cannot be
///   interrupted (it completes on its own);
/// - [`all`](Self::all) or [`any`](Self::any): the number of requests
///   cancelled, which is 0 (not `-ENOENT`) when nothing matched.
///
/// Criteria, which must all hold when several are given: the `user_data`
/// ([`new`](Self::new)), the file ([`fd`](Self::fd),
/// `IORING_ASYNC_CANCEL_FD`, since 5.19; a fixed slot uses
/// `IORING_ASYNC_CANCEL_FD_FIXED`, since 6.0), the opcode
/// ([`opcode`](Self::opcode), `IORING_ASYNC_CANCEL_OP`, since 6.6), or
/// every request ([`any`](Self::any), `IORING_ASYNC_CANCEL_ANY`, since
/// 5.19, which takes no other criterion).
#[doc(alias = "IORING_OP_ASYNC_CANCEL")]
#[doc(alias = "io_uring_prep_cancel")]
#[doc(alias = "io_uring_prep_cancel64")]
#[doc(alias = "io_uring_prep_cancel_fd")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct AsyncCancel {
    user_data: Option<u64>,
    fd: Option<Target>,
    opcode: Option<u8>,
    any: bool,
    all: bool,
}

impl AsyncCancel {
    const NONE: AsyncCancel = AsyncCancel { user_data: None, fd: None, opcode: None, any: false, all: false };

    /// Cancels the request submitted with `target`, as it was stamped (see
    /// [`stamped`]).
    #[inline]
    pub const fn new(target: SqeContext) -> Self {
        AsyncCancel { user_data: Some(target.raw()), ..Self::NONE }
    }

    /// Cancels a request on file `fd` (`IORING_ASYNC_CANCEL_FD`), a
    /// registered slot with `IORING_ASYNC_CANCEL_FD_FIXED`.
    #[inline]
    pub fn fd(fd: impl Into<Target>) -> Self {
        AsyncCancel { fd: Some(fd.into()), ..Self::NONE }
    }

    /// Cancels a request with opcode `op` (`IORING_ASYNC_CANCEL_OP`).
    #[inline]
    pub const fn opcode(op: u8) -> Self {
        AsyncCancel { opcode: Some(op), ..Self::NONE }
    }

    /// Cancels every pending request of the ring
    /// (`IORING_ASYNC_CANCEL_ANY`); the result is the count.
    #[inline]
    pub const fn any() -> Self {
        AsyncCancel { any: true, ..Self::NONE }
    }

    /// Also requires the file to be `fd`.
    #[inline]
    pub fn and_fd(mut self, fd: impl Into<Target>) -> Self {
        self.fd = Some(fd.into());
        self
    }

    /// Also requires the opcode to be `op`.
    #[inline]
    pub const fn and_opcode(mut self, op: u8) -> Self {
        self.opcode = Some(op);
        self
    }

    /// Also requires the `user_data` to be `target`'s
    /// (`IORING_ASYNC_CANCEL_USERDATA` when combined with a file or an
    /// opcode).
    #[inline]
    pub const fn and_user_data(mut self, target: SqeContext) -> Self {
        self.user_data = Some(target.raw());
        self
    }

    /// Cancels every match, not only the first (`IORING_ASYNC_CANCEL_ALL`,
    /// since Linux 5.19); the result is the count.
    #[inline]
    pub const fn all(mut self) -> Self {
        self.all = true;
        self
    }

    /// The `IORING_ASYNC_CANCEL_*` flags this request carries.
    fn flags(&self) -> u32 {
        let mut flags = 0;
        if self.any {
            flags |= sys::IORING_ASYNC_CANCEL_ANY;
        }
        if self.all {
            flags |= sys::IORING_ASYNC_CANCEL_ALL;
        }
        if let Some(fd) = self.fd {
            flags |= sys::IORING_ASYNC_CANCEL_FD;
            if fd.is_fixed() {
                flags |= sys::IORING_ASYNC_CANCEL_FD_FIXED;
            }
        }
        if self.opcode.is_some() {
            flags |= sys::IORING_ASYNC_CANCEL_OP;
        }
        if self.user_data.is_some() && (self.fd.is_some() || self.opcode.is_some()) {
            flags |= sys::IORING_ASYNC_CANCEL_USERDATA;
        }
        flags
    }
}

impl Prepare for AsyncCancel {
    const CODE: u8 = sys::IORING_OP_ASYNC_CANCEL as u8;
    const USES_KEEP: bool = false;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        if let Some(target) = self.user_data {
            check_target(target)?;
        }
        if self.any && (self.fd.is_some() || self.opcode.is_some() || self.user_data.is_some()) {
            return Err(Error::InvalidArgument(
                "IORING_ASYNC_CANCEL_ANY matches every request and takes no file, opcode or user_data".into(),
            ));
        }
        if self.fd.is_some() || self.any || self.all {
            require_version(features, (5, 19), "IORING_ASYNC_CANCEL_FD/ANY/ALL")?;
        }
        if self.fd.is_some_and(Target::is_fixed) {
            require_version(features, (6, 0), "IORING_ASYNC_CANCEL_FD_FIXED")?;
        }
        if self.flags() & (sys::IORING_ASYNC_CANCEL_OP | sys::IORING_ASYNC_CANCEL_USERDATA) != 0 {
            require_version(features, (6, 6), "IORING_ASYNC_CANCEL_OP/USERDATA")?;
        }
        Ok(())
    }

    #[inline]
    fn prepare(self, sqe: &mut Sqe, _keep: &mut Keep) {
        let flags = self.flags();
        let AsyncCancel { user_data, fd, opcode, any: _, all: _ } = self;
        *sqe = Sqe::new(Self::CODE);
        // The file goes in `sqe.fd` without IOSQE_FIXED_FILE: the cancel
        // flags say whether it is a slot.
        sqe.fd = fd.map_or(-1, Target::raw);
        sqe.set_addr(user_data.unwrap_or(0));
        sqe.len = opcode.map_or(0, u32::from);
        sqe.set_op_flags(flags);
    }
}

// SAFETY: `addr` is a user_data value to match, not an address; the SQE
// names no memory.
unsafe impl SafeOp for AsyncCancel {}

/// Cancellation on a [`Ring`](uring_core::Ring). Every method only queues; submit (or wait)
/// to run them. For all matches, build [`AsyncCancel`] with
/// [`all`](AsyncCancel::all) and [`push_op`](RingOps::push_op) it.
pub trait CancelOps {
    /// Queues the cancellation of the request stamped with `target` (see
    /// [`stamped`]). Result 0, `-ENOENT` or `-EALREADY`.
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    fn cancel(&mut self, ctx: SqeContext, target: SqeContext) -> Result<SqeContext>;

    /// Queues the cancellation of every request on file `fd`; the result
    /// is the count.
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    fn cancel_fd(&mut self, ctx: SqeContext, fd: Target) -> Result<SqeContext>;

    /// Queues the cancellation of every request with opcode `op`; the
    /// result is the count.
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    fn cancel_opcode(&mut self, ctx: SqeContext, op: u8) -> Result<SqeContext>;

    /// Queues the cancellation of every pending request of the ring; the
    /// result is the count.
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    fn cancel_any(&mut self, ctx: SqeContext) -> Result<SqeContext>;
}

impl<R: RingOps + OnRing> CancelOps for R {
    #[inline]
    fn cancel(&mut self, ctx: SqeContext, target: SqeContext) -> Result<SqeContext> {
        self.push_op(ctx, AsyncCancel::new(target))
    }

    #[inline]
    fn cancel_fd(&mut self, ctx: SqeContext, fd: Target) -> Result<SqeContext> {
        self.push_op(ctx, AsyncCancel::fd(fd).all())
    }

    #[inline]
    fn cancel_opcode(&mut self, ctx: SqeContext, op: u8) -> Result<SqeContext> {
        self.push_op(ctx, AsyncCancel::opcode(op).all())
    }

    #[inline]
    fn cancel_any(&mut self, ctx: SqeContext) -> Result<SqeContext> {
        self.push_op(ctx, AsyncCancel::any())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uring_core::SqeFlags;

    fn prepared(op: AsyncCancel) -> Sqe {
        let mut sqe = Sqe::default();
        op.prepare(&mut sqe, &mut Keep::new());
        sqe
    }

    #[test]
    fn criteria_become_flags_and_fields() {
        let target = SqeContext::token(99).unwrap().with_op(22);
        let sqe = prepared(AsyncCancel::new(target));
        assert_eq!((sqe.addr(), sqe.op_flags(), sqe.fd), (target.raw(), 0, -1));
        let sqe = prepared(AsyncCancel::fd(Target::Fixed(4)).all());
        assert_eq!(sqe.fd, 4);
        assert_eq!(sqe.flags, 0, "no IOSQE_FIXED_FILE: the cancel flags say it");
        assert_eq!(
            sqe.op_flags(),
            sys::IORING_ASYNC_CANCEL_FD | sys::IORING_ASYNC_CANCEL_FD_FIXED | sys::IORING_ASYNC_CANCEL_ALL
        );
        let sqe = prepared(AsyncCancel::opcode(22).and_user_data(SqeContext::token(7).unwrap().with_op(22)));
        assert_eq!((sqe.len, sqe.addr()), (22, SqeContext::token(7).unwrap().with_op(22).raw()));
        assert_eq!(sqe.op_flags(), sys::IORING_ASYNC_CANCEL_OP | sys::IORING_ASYNC_CANCEL_USERDATA);
        assert_eq!(prepared(AsyncCancel::any()).op_flags(), sys::IORING_ASYNC_CANCEL_ANY);
    }

    #[test]
    fn stamping_follows_push_op() {
        let ctx = SqeContext::for_fd(9).with_flags(SqeFlags::ASYNC);
        let op = AsyncCancel::any();
        let s = stamped(ctx, op);
        assert_eq!(s.op(), Some(AsyncCancel::CODE));
        assert_eq!(s.flags(), Some(SqeFlags::ASYNC));
        assert_eq!(s.fd(), Some(9));
        let pooled = SqeContext::from_raw(0xfd).unwrap();
        assert_eq!(stamped(pooled, op), pooled);
        let token = SqeContext::token(77).unwrap();
        assert_eq!(stamped(token, op).op(), Some(AsyncCancel::CODE));
        assert_eq!(stamped(token, op).as_token(), Some(77));
    }
}
