//! Timeouts: [`Timeout`] (relative or absolute, on a chosen [`Clock`],
//! after a count of completions, multishot), [`TimeoutRemove`],
//! [`TimeoutUpdate`] (of a timeout or a linked timeout), [`LinkTimeout`],
//! and the all-or-nothing deadline helper
//! [`TimeoutOps::push_with_deadline`].
//!
//! Every timespec here is copied by the kernel while it prepares the
//! request (`io_timeout_prep` and `io_timeout_remove_prep` read it with
//! `get_timespec64` at submission), so it lives in the SQ slot's
//! [`Keep`] and all these operations are [`SafeOp`].
//!
//! # Matching a timeout by its context
//!
//! [`TimeoutRemove`] and [`TimeoutUpdate`] find their target by the
//! `user_data` it was submitted with. For a token or a packed
//! [`SqeContext`] that is the context *as stamped* (with the timeout's
//! opcode, and a packed one's final SQE flags): the value the push
//! returned, or [`stamped`](crate::cancel::stamped).

use std::time::{Duration, SystemTime};

use uring_core::{Error, Features, Keep, Result, SqeContext, SqeFlags, sys};
use uring_core::{Sqe, sys::__kernel_timespec};

use crate::flags::sealed::OnRing;
use crate::op::{OpExt, Prepare, SafeOp};
use crate::ring::RingOps;

/// The clock a timeout is measured on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Clock {
    /// `CLOCK_MONOTONIC` (the default): stops while the system is
    /// suspended.
    #[default]
    Monotonic,
    /// `CLOCK_BOOTTIME` (`IORING_TIMEOUT_BOOTTIME`, since Linux 5.15):
    /// keeps counting while the system is suspended.
    Boottime,
    /// `CLOCK_REALTIME` (`IORING_TIMEOUT_REALTIME`, since Linux 5.15):
    /// wall-clock time; an absolute realtime timeout follows clock changes.
    Realtime,
}

impl Clock {
    /// The `IORING_TIMEOUT_*` clock bit.
    #[inline]
    pub const fn flag(self) -> u32 {
        match self {
            Clock::Monotonic => 0,
            Clock::Boottime => sys::IORING_TIMEOUT_BOOTTIME,
            Clock::Realtime => sys::IORING_TIMEOUT_REALTIME,
        }
    }

    /// The `clockid_t` (`CLOCK_MONOTONIC`, …).
    #[inline]
    pub const fn clock_id(self) -> libc::clockid_t {
        match self {
            Clock::Monotonic => libc::CLOCK_MONOTONIC,
            Clock::Boottime => libc::CLOCK_BOOTTIME,
            Clock::Realtime => libc::CLOCK_REALTIME,
        }
    }

    /// The clock's current time (`clock_gettime`).
    pub fn now(self) -> Deadline {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `ts` is a valid, writable timespec; the clock ids are
        // ones every Linux kernel knows, so the call cannot fail.
        unsafe { libc::clock_gettime(self.clock_id(), &mut ts) };
        Deadline { clock: self, since_zero: Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32) }
    }
}

/// A point in time on a [`Clock`]: the expiry of an absolute timeout
/// (`IORING_TIMEOUT_ABS`).
///
/// ```
/// use std::time::Duration;
/// use uring_ops::timeout::{Clock, Deadline};
/// let d = Deadline::after(Clock::Monotonic, Duration::from_millis(50));
/// assert!(d.since_zero() > Clock::Monotonic.now().since_zero());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Deadline {
    clock: Clock,
    since_zero: Duration,
}

impl Deadline {
    /// The time `since_zero` after the zero of `clock` (boot for the
    /// monotonic and boottime clocks, the Unix epoch for realtime).
    #[inline]
    pub const fn new(clock: Clock, since_zero: Duration) -> Self {
        Deadline { clock, since_zero }
    }

    /// `d` from now on `clock` (saturating at the largest representable
    /// time).
    pub fn after(clock: Clock, d: Duration) -> Self {
        let now = clock.now();
        Deadline { clock, since_zero: now.since_zero.saturating_add(d) }
    }

    /// A wall-clock time, on [`Clock::Realtime`].
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a time before the Unix epoch.
    pub fn from_system_time(t: SystemTime) -> Result<Self> {
        let since_zero = t
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_err(|_| Error::InvalidArgument(format!("{t:?} is before the Unix epoch")))?;
        Ok(Deadline { clock: Clock::Realtime, since_zero })
    }

    /// The clock.
    #[inline]
    pub const fn clock(self) -> Clock {
        self.clock
    }

    /// The time since the clock's zero.
    #[inline]
    pub const fn since_zero(self) -> Duration {
        self.since_zero
    }
}

/// Checks that `d` fits a `__kernel_timespec` (seconds up to `i64::MAX`).
fn check_span(what: &str, d: Duration) -> Result<()> {
    if d.as_secs() > i64::MAX as u64 {
        return Err(Error::InvalidArgument(format!("{what}: {d:?} does not fit a timespec")));
    }
    Ok(())
}

/// `d` as the kernel's timespec; [`check_span`] rejected what does not fit.
#[inline]
fn timespec(d: Duration) -> __kernel_timespec {
    __kernel_timespec { tv_sec: d.as_secs().min(i64::MAX as u64) as i64, tv_nsec: i64::from(d.subsec_nanos()) }
}

/// `Ok` when the running kernel is at least `min` (or its version cannot
/// be read), else [`Error::Unsupported`] naming `what`.
pub(crate) fn require_version(features: &Features, min: (u32, u32), what: &str) -> Result<()> {
    match features.kernel_version() {
        Some(v) if v < min => Err(Error::unsupported(format!("{what} (needs Linux {}.{})", min.0, min.1), None)),
        _ => Ok(()),
    }
}

/// When a relative or absolute expiry is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    /// Relative to submission.
    After(Duration),
    /// Absolute, on the timeout's clock (`IORING_TIMEOUT_ABS`).
    At(Duration),
}

impl Expiry {
    #[inline]
    const fn span(self) -> Duration {
        match self {
            Expiry::After(d) | Expiry::At(d) => d,
        }
    }

    #[inline]
    const fn flag(self) -> u32 {
        match self {
            Expiry::After(_) => 0,
            Expiry::At(_) => sys::IORING_TIMEOUT_ABS,
        }
    }
}

/// How a [`Timeout`] completes apart from expiring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repeat {
    /// Once: on expiry (`-ETIME`), or with 0 once this many other
    /// completions were posted (0: no count).
    Once { count: u32 },
    /// Every period (`IORING_TIMEOUT_MULTISHOT`), `times` times (0: until
    /// removed).
    Multishot { times: u32 },
}

/// Completes after a time, or after a number of other completions:
/// `io_uring_prep_timeout`.
///
/// Since Linux 5.4. The CQE's result is `-ETIME` when the time expired, 0
/// when [`count`](Self::count) completions were posted first, and
/// `-ECANCELED` when it was removed ([`TimeoutRemove`]) or the ring was
/// torn down. The timespec is copied at submission (`io_timeout_prep`).
///
/// - [`new`](Self::new) is relative to submission, [`at`](Self::at)
///   absolute (`IORING_TIMEOUT_ABS`) on the [`Deadline`]'s clock;
///   [`clock`](Self::clock) chooses the clock (boottime and realtime since
///   5.15).
/// - [`etime_success`](Self::etime_success) (`IORING_TIMEOUT_ETIME_SUCCESS`,
///   since 5.16): expiry does not count as a failure, so a chain linked
///   after the timeout goes on.
/// - [`multishot`](Self::multishot) (`IORING_TIMEOUT_MULTISHOT`, since
///   6.4): a periodic timer; each expiry posts `-ETIME` with
///   `IORING_CQE_F_MORE` until the last.
#[doc(alias = "IORING_OP_TIMEOUT")]
#[doc(alias = "io_uring_prep_timeout")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct Timeout {
    expiry: Expiry,
    clock: Clock,
    repeat: Repeat,
    etime_success: bool,
}

impl Timeout {
    /// Expires `d` after submission, on the monotonic clock.
    #[inline]
    pub const fn new(d: Duration) -> Self {
        Timeout {
            expiry: Expiry::After(d),
            clock: Clock::Monotonic,
            repeat: Repeat::Once { count: 0 },
            etime_success: false,
        }
    }

    /// Expires at `deadline`, on its clock (`IORING_TIMEOUT_ABS`).
    #[inline]
    pub const fn at(deadline: Deadline) -> Self {
        Timeout {
            expiry: Expiry::At(deadline.since_zero),
            clock: deadline.clock,
            repeat: Repeat::Once { count: 0 },
            etime_success: false,
        }
    }

    /// Measures the timeout on `clock` instead. For an absolute timeout
    /// this reinterprets the deadline on the new clock.
    #[inline]
    pub const fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Also completes (with result 0) once `n` other completions were
    /// posted after it was submitted (`sqe->off`); 0 means no count.
    /// Replaces [`multishot`](Self::multishot).
    #[inline]
    pub const fn count(mut self, n: u32) -> Self {
        self.repeat = Repeat::Once { count: n };
        self
    }

    /// Fires every period, `times` times (0: until removed), each expiry
    /// posting `-ETIME`, all but the last with `IORING_CQE_F_MORE`
    /// (`IORING_TIMEOUT_MULTISHOT`, since Linux 6.4). Relative timeouts
    /// only. Replaces [`count`](Self::count).
    #[inline]
    pub const fn multishot(mut self, times: u32) -> Self {
        self.repeat = Repeat::Multishot { times };
        self
    }

    /// Treats expiry as success, so links after the timeout continue
    /// (`IORING_TIMEOUT_ETIME_SUCCESS`, since Linux 5.16). The result is
    /// still `-ETIME`.
    #[inline]
    pub const fn etime_success(mut self) -> Self {
        self.etime_success = true;
        self
    }
}

impl Prepare for Timeout {
    const CODE: u8 = sys::IORING_OP_TIMEOUT as u8;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        check_span("timeout", self.expiry.span())?;
        if let Repeat::Multishot { .. } = self.repeat {
            if let Expiry::At(_) = self.expiry {
                return Err(Error::InvalidArgument(
                    "a multishot timeout must be relative (IORING_TIMEOUT_MULTISHOT with IORING_TIMEOUT_ABS)".into(),
                ));
            }
            require_version(features, (6, 4), "IORING_TIMEOUT_MULTISHOT")?;
        }
        Ok(())
    }

    #[inline]
    fn prepare(self, sqe: &mut Sqe, keep: &mut Keep) {
        let Timeout { expiry, clock, repeat, etime_success } = self;
        *sqe = Sqe::new(Self::CODE);
        sqe.fd = -1;
        let ts = keep.inline(timespec(expiry.span()));
        sqe.set_addr(ts as *mut __kernel_timespec as u64);
        sqe.len = 1;
        let mut flags = expiry.flag() | clock.flag();
        if etime_success {
            flags |= sys::IORING_TIMEOUT_ETIME_SUCCESS;
        }
        let off = match repeat {
            Repeat::Once { count } => count,
            Repeat::Multishot { times } => {
                flags |= sys::IORING_TIMEOUT_MULTISHOT;
                times
            }
        };
        sqe.set_off(u64::from(off));
        sqe.set_op_flags(flags);
    }
}

// SAFETY: the timespec is in the Keep and copied by io_timeout_prep at
// submission; the SQE names no other memory.
unsafe impl SafeOp for Timeout {}

/// Removes a pending [`Timeout`]: `io_uring_prep_timeout_remove`.
///
/// Since Linux 5.5. The timeout completes with `-ECANCELED`; this
/// request's result is 0, `-ENOENT` if no pending timeout has that
/// `user_data`, or `-EALREADY` if it is already expiring. `target` is the
/// timeout's context as it was stamped (see the
/// [module documentation](self)).
///
/// A multishot timeout ([`Timeout::multishot`]) is off the kernel's timer
/// list between an expiry and the task work that posts it and re-arms the
/// timer; on a `DEFER_TASKRUN` ring (the default) that lasts until the
/// issuer next waits. A removal in that window answers `-ENOENT` (or
/// `-EALREADY`) and the timer stays armed: until the timeout's final CQE
/// (no `F_MORE`) has been seen, ask again after reaping. A
/// [`Subscription`](crate::subscription::Subscription) does this itself.
#[doc(alias = "IORING_OP_TIMEOUT_REMOVE")]
#[doc(alias = "io_uring_prep_timeout_remove")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct TimeoutRemove {
    target: SqeContext,
}

impl TimeoutRemove {
    /// Removes the timeout submitted with `target`.
    #[inline]
    pub const fn new(target: SqeContext) -> Self {
        TimeoutRemove { target }
    }
}

impl Prepare for TimeoutRemove {
    const CODE: u8 = sys::IORING_OP_TIMEOUT_REMOVE as u8;
    const USES_KEEP: bool = false;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        crate::cancel::check_target(self.target.raw())
    }

    #[inline]
    fn prepare(self, sqe: &mut Sqe, _keep: &mut Keep) {
        let TimeoutRemove { target } = self;
        *sqe = Sqe::new(Self::CODE);
        sqe.fd = -1;
        sqe.set_addr(target.raw());
    }
}

// SAFETY: `addr` is a user_data value to match, not an address.
unsafe impl SafeOp for TimeoutRemove {}

/// Re-arms a pending [`Timeout`] (or, with [`linked`](Self::linked), a
/// pending [`LinkTimeout`]) with a new expiry:
/// `io_uring_prep_timeout_update`.
///
/// Since Linux 5.11 (linked timeouts since 5.15). The timeout keeps its
/// clock and now expires after the new time, measured from this request's
/// execution; a count it had is dropped (it becomes a pure timer). This
/// request's result is 0, `-ENOENT` if no pending timeout has that
/// `user_data`, or `-EALREADY` if it is already expiring. The timespec is
/// copied at submission (`io_timeout_remove_prep`).
#[doc(alias = "IORING_OP_TIMEOUT_REMOVE")]
#[doc(alias = "IORING_TIMEOUT_UPDATE")]
#[doc(alias = "IORING_LINK_TIMEOUT_UPDATE")]
#[doc(alias = "io_uring_prep_timeout_update")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct TimeoutUpdate {
    target: SqeContext,
    expiry: Expiry,
    linked: bool,
}

impl TimeoutUpdate {
    /// Re-arms the timeout submitted with `target` to expire `d` from now.
    #[inline]
    pub const fn new(target: SqeContext, d: Duration) -> Self {
        TimeoutUpdate { target, expiry: Expiry::After(d), linked: false }
    }

    /// Re-arms it to expire at `deadline` (`IORING_TIMEOUT_ABS`). The
    /// kernel reads the time on the clock the timeout was armed with (an
    /// update cannot change it), so `deadline` must be on that clock.
    #[inline]
    pub const fn at(target: SqeContext, deadline: Deadline) -> Self {
        TimeoutUpdate { target, expiry: Expiry::At(deadline.since_zero), linked: false }
    }

    /// The target is a [`LinkTimeout`] (`IORING_LINK_TIMEOUT_UPDATE`, since
    /// Linux 5.15).
    #[inline]
    pub const fn linked(mut self) -> Self {
        self.linked = true;
        self
    }
}

impl Prepare for TimeoutUpdate {
    const CODE: u8 = sys::IORING_OP_TIMEOUT_REMOVE as u8;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        crate::cancel::check_target(self.target.raw())?;
        check_span("timeout update", self.expiry.span())?;
        if self.linked {
            require_version(features, (5, 15), "IORING_LINK_TIMEOUT_UPDATE")?;
        }
        Ok(())
    }

    #[inline]
    fn prepare(self, sqe: &mut Sqe, keep: &mut Keep) {
        let TimeoutUpdate { target, expiry, linked } = self;
        *sqe = Sqe::new(Self::CODE);
        sqe.fd = -1;
        sqe.set_addr(target.raw());
        let ts = keep.inline(timespec(expiry.span()));
        sqe.set_addr2(ts as *mut __kernel_timespec as u64);
        let mut flags = sys::IORING_TIMEOUT_UPDATE | expiry.flag();
        if linked {
            flags |= sys::IORING_LINK_TIMEOUT_UPDATE;
        }
        sqe.set_op_flags(flags);
    }
}

// SAFETY: `addr` is a user_data value; the timespec is in the Keep and
// copied by io_timeout_remove_prep at submission.
unsafe impl SafeOp for TimeoutUpdate {}

/// A deadline for the operation linked before it: `io_uring_prep_link_timeout`.
///
/// Since Linux 5.5. Push it right after an operation that carries
/// `IOSQE_IO_LINK`, in the same submission (or use
/// [`TimeoutOps::push_with_deadline`], which does both, all or nothing).
/// The two race and both complete:
///
/// | outcome | operation's CQE | timeout's CQE |
/// |---|---|---|
/// | the operation completes first (success or error) | its result | `-ECANCELED` |
/// | the deadline passes first | `-ECANCELED` (the kernel cancelled it) | `-ETIME`, or (before 7.3) `1` for a [`Waitid`](crate::wait::Waitid), [`FutexWait`](crate::wait::FutexWait) or [`FutexWaitV`](crate::wait::FutexWaitV) |
/// | the deadline passes while the operation cannot be interrupted (running on an io-wq worker) | its own result, later | `-EALREADY` |
///
/// The timeout's result when it wins is what the kernel's cancellation of
/// the operation returned, with 0 turned into `-ETIME`
/// (`io_req_task_link_timeout` in `io_uring/timeout.c`). Most operations
/// are cancelled through paths that return 0; waitid and futex waits are
/// cancelled through their own lists, whose cancel returns how many
/// requests it removed: `1` (on 6.18, 7.0 and 7.2; 7.3 reports `-ETIME`
/// for them too). Treat `-ETIME` or any positive timeout result as "the
/// deadline fired" (checked in the kernel matrix by
/// `tests/timeout.rs::a_deadline_that_cancels_a_waitid_or_a_futex_wait_completes_with_1_not_etime`).
///
/// The kernel rejects a linked timeout with no operation before it, or
/// after another linked timeout, with `-EINVAL`.
///
/// A deadline interrupts waiting that the kernel does by polling (a read
/// of an empty pipe or socket). It does not bound an operation that blocks
/// inside an io-wq worker: on Linux 6.18, a [`Splice`](crate::transfer::Splice)
/// from an empty pipe (splice always runs on a worker) with a 30 ms linked
/// timeout posted nothing for seconds, and completed (splice first, the
/// timeout `-ECANCELED`) only when data arrived. Use
/// [`SpliceFlags::NONBLOCK`](crate::transfer::SpliceFlags::NONBLOCK) or poll
/// the pipe first.
#[doc(alias = "IORING_OP_LINK_TIMEOUT")]
#[doc(alias = "io_uring_prep_link_timeout")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct LinkTimeout {
    expiry: Expiry,
    clock: Clock,
}

impl LinkTimeout {
    /// A deadline `d` after the operation starts, on the monotonic clock.
    #[inline]
    pub const fn new(d: Duration) -> Self {
        LinkTimeout { expiry: Expiry::After(d), clock: Clock::Monotonic }
    }

    /// A deadline at `deadline`, on its clock (`IORING_TIMEOUT_ABS`).
    #[inline]
    pub const fn at(deadline: Deadline) -> Self {
        LinkTimeout { expiry: Expiry::At(deadline.since_zero), clock: deadline.clock }
    }

    /// Measures the deadline on `clock` instead.
    #[inline]
    pub const fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }
}

impl Prepare for LinkTimeout {
    const CODE: u8 = sys::IORING_OP_LINK_TIMEOUT as u8;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        check_span("linked timeout", self.expiry.span())
    }

    #[inline]
    fn prepare(self, sqe: &mut Sqe, keep: &mut Keep) {
        let LinkTimeout { expiry, clock } = self;
        *sqe = Sqe::new(Self::CODE);
        sqe.fd = -1;
        let ts = keep.inline(timespec(expiry.span()));
        sqe.set_addr(ts as *mut __kernel_timespec as u64);
        sqe.len = 1;
        sqe.set_op_flags(expiry.flag() | clock.flag());
    }
}

// SAFETY: the timespec is in the Keep and copied by io_link_timeout_prep
// at submission; the SQE names no other memory.
unsafe impl SafeOp for LinkTimeout {}

/// Timeout operations on a [`Ring`](uring_core::Ring). Every method only queues; submit (or
/// wait) to start them.
pub trait TimeoutOps {
    /// Queues a [`Timeout`] that expires `d` after submission (`-ETIME`).
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    fn timeout(&mut self, ctx: SqeContext, d: Duration) -> Result<SqeContext>;

    /// Queues a [`Timeout`] that expires at `deadline` (`-ETIME`).
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    fn timeout_at(&mut self, ctx: SqeContext, deadline: Deadline) -> Result<SqeContext>;

    /// Queues a [`TimeoutRemove`] of the timeout stamped with `target`.
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    fn timeout_remove(&mut self, ctx: SqeContext, target: SqeContext) -> Result<SqeContext>;

    /// Queues a [`TimeoutUpdate`]: the timeout stamped with `target` now
    /// expires `d` from when this request runs.
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    fn timeout_update(&mut self, ctx: SqeContext, target: SqeContext, d: Duration) -> Result<SqeContext>;

    /// Queues `op` with `IOSQE_IO_LINK`, followed by a [`LinkTimeout`] of
    /// `d`: both or neither (room for two entries and both checks pass
    /// before anything is queued). Submit them together.
    ///
    /// Exactly one of the two wins, and both CQEs arrive (see
    /// [`LinkTimeout`]): the operation completes first and the timeout
    /// gets `-ECANCELED`; or the deadline passes, the operation gets
    /// `-ECANCELED` and the timeout `-ETIME` (`1` when the operation is a
    /// waitid or futex wait, before Linux 7.3). A timeout result of
    /// `-EALREADY` means the operation could not be interrupted and will
    /// complete on its own. An operation blocked inside an io-wq worker
    /// (a splice from an empty pipe) is not interrupted at all; see
    /// [`LinkTimeout`].
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`], for either entry; nothing is queued.
    fn push_with_deadline<O: SafeOp>(
        &mut self,
        op_ctx: SqeContext,
        op: O,
        timeout_ctx: SqeContext,
        d: Duration,
    ) -> Result<SqeContext>;

    /// [`push_with_deadline`](Self::push_with_deadline) for any operation.
    ///
    /// # Errors
    ///
    /// As for [`push_with_deadline`](Self::push_with_deadline).
    ///
    /// # Safety
    ///
    /// As for [`RingOps::push_op_unchecked`]: the memory `op` names must
    /// stay valid until `op`'s CQE has been reaped (which, when the deadline
    /// wins, is its `-ECANCELED` completion, not the timeout's).
    unsafe fn push_with_deadline_unchecked<O: Prepare>(
        &mut self,
        op_ctx: SqeContext,
        op: O,
        timeout_ctx: SqeContext,
        d: Duration,
    ) -> Result<SqeContext>;
}

impl<R: RingOps + OnRing> TimeoutOps for R {
    #[inline]
    fn timeout(&mut self, ctx: SqeContext, d: Duration) -> Result<SqeContext> {
        self.push_op(ctx, Timeout::new(d))
    }

    #[inline]
    fn timeout_at(&mut self, ctx: SqeContext, deadline: Deadline) -> Result<SqeContext> {
        self.push_op(ctx, Timeout::at(deadline))
    }

    #[inline]
    fn timeout_remove(&mut self, ctx: SqeContext, target: SqeContext) -> Result<SqeContext> {
        self.push_op(ctx, TimeoutRemove::new(target))
    }

    #[inline]
    fn timeout_update(&mut self, ctx: SqeContext, target: SqeContext, d: Duration) -> Result<SqeContext> {
        self.push_op(ctx, TimeoutUpdate::new(target, d))
    }

    #[inline]
    fn push_with_deadline<O: SafeOp>(
        &mut self,
        op_ctx: SqeContext,
        op: O,
        timeout_ctx: SqeContext,
        d: Duration,
    ) -> Result<SqeContext> {
        // SAFETY: `O: SafeOp` names no memory the kernel reads after it
        // consumed the entry, other than the slot's Keep.
        unsafe { self.push_with_deadline_unchecked(op_ctx, op, timeout_ctx, d) }
    }

    unsafe fn push_with_deadline_unchecked<O: Prepare>(
        &mut self,
        op_ctx: SqeContext,
        op: O,
        timeout_ctx: SqeContext,
        d: Duration,
    ) -> Result<SqeContext> {
        let timeout = LinkTimeout::new(d);
        // The flags of a `WithFlags` go on both entries: the pair joins a
        // chain as one link (the timeout carries `IO_LINK` on).
        let (ring, flags) = self.ring_and_flags();
        // Everything that could make the second push fail is checked
        // before the first: the operations, both contexts, and room.
        op.check(ring.features())?;
        timeout.check(ring.features())?;
        crate::ring::check_live(ring.pools(), op_ctx)?;
        crate::ring::check_live(ring.pools(), timeout_ctx)?;
        if ring.sq_space_left() < 2 {
            return Err(Error::QueueFull { entries: ring.features().sq_entries() });
        }
        // SAFETY: forwarded to the caller.
        unsafe { ring.push_op_unchecked(op_ctx, op.with_sqe_flags(flags | SqeFlags::IO_LINK)) }?;
        ring.push_op(timeout_ctx, timeout.with_sqe_flags(flags))
    }
}

/// Whether a pooled context names a live slot (what `push_op` checks), so a
/// pair is refused before its first half is queued.
#[cfg(test)]
mod tests {
    use super::*;

    fn prepared<O: Prepare>(op: O) -> (Sqe, Box<Keep>) {
        let mut sqe = Sqe::default();
        let mut keep = Box::new(Keep::new());
        op.prepare(&mut sqe, &mut keep);
        (sqe, keep)
    }

    fn ts_at(addr: u64) -> (i64, i64) {
        // SAFETY: the tests below only pass addresses into a live Keep.
        let ts = unsafe { &*(addr as *const __kernel_timespec) };
        (ts.tv_sec, ts.tv_nsec)
    }

    #[test]
    fn a_timeout_points_into_its_keep() {
        let (sqe, keep) = prepared(Timeout::new(Duration::new(3, 5)).count(4).clock(Clock::Boottime));
        assert_eq!(sqe.opcode, sys::IORING_OP_TIMEOUT as u8);
        assert_eq!((sqe.len, sqe.off(), sqe.op_flags()), (1, 4, sys::IORING_TIMEOUT_BOOTTIME));
        let keep_at = &*keep as *const Keep as usize;
        assert!((keep_at..keep_at + size_of::<Keep>()).contains(&(sqe.addr() as usize)));
        assert_eq!(ts_at(sqe.addr()), (3, 5));
    }

    #[test]
    fn multishot_and_absolute_flags() {
        let (sqe, _keep) = prepared(Timeout::new(Duration::from_millis(1)).multishot(7).etime_success());
        assert_eq!(sqe.off(), 7);
        assert_eq!(sqe.op_flags(), sys::IORING_TIMEOUT_MULTISHOT | sys::IORING_TIMEOUT_ETIME_SUCCESS);
        let at = Deadline::new(Clock::Realtime, Duration::from_secs(9));
        let (sqe, _keep) = prepared(Timeout::at(at));
        assert_eq!(sqe.op_flags(), sys::IORING_TIMEOUT_ABS | sys::IORING_TIMEOUT_REALTIME);
        assert_eq!(ts_at(sqe.addr()), (9, 0));
    }

    #[test]
    fn updates_carry_target_and_time() {
        let target = SqeContext::token(0x1234_5677).unwrap();
        let (sqe, _keep) = prepared(TimeoutUpdate::new(target, Duration::from_secs(2)).linked());
        assert_eq!(sqe.opcode, sys::IORING_OP_TIMEOUT_REMOVE as u8);
        assert_eq!(sqe.addr(), target.raw());
        assert_eq!(sqe.op_flags(), sys::IORING_TIMEOUT_UPDATE | sys::IORING_LINK_TIMEOUT_UPDATE);
        assert_eq!(ts_at(sqe.addr2()), (2, 0));
        let (sqe, _keep) = prepared(TimeoutRemove::new(target));
        assert_eq!((sqe.addr(), sqe.op_flags(), sqe.len), (target.raw(), 0, 0));
    }

    #[test]
    fn spans_beyond_a_timespec_are_refused() {
        assert!(check_span("t", Duration::from_secs(i64::MAX as u64)).is_ok());
        assert!(matches!(check_span("t", Duration::MAX), Err(Error::InvalidArgument(_))));
    }
}
