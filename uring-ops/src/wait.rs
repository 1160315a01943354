//! Asynchronous waits: `epoll_wait`, futex wait, wake and waitv, `waitid`.
//!
//! # What the kernel does with the addresses
//!
//! - [`EpollWait`] writes the ready events into the caller's array when it
//!   completes (`epoll_sendevents` at issue, possibly after a poll wake-up):
//!   caller memory, so it is pushed with `push_op_unchecked`.
//! - [`Waitid`] writes the child's `siginfo_t` when it completes: caller
//!   memory as well.
//! - [`FutexWake`] names a futex word only as a key: `futex_wake` hashes
//!   the address (`get_futex_key`) and never reads or writes the word, so
//!   any `&AtomicU32` will do and the operation is [`SafeOp`].
//! - [`FutexWait`] *reads* the word: `io_futex_wait` → `futex_wait_setup`
//!   loads it to compare with the expected value **when the request is
//!   issued**, which is not when [`push_op`](RingOps::push_op) returns: at
//!   the next submit, or later still (after a linked predecessor completes,
//!   or on an io-wq worker with `IOSQE_ASYNC`). A borrow cannot last that
//!   long, and neither can the SQ slot's [`Keep`] (cleared once the entry
//!   is consumed, which may be before the issue). So the safe constructors
//!   take a `&'static AtomicU32` (a `static`, or `Box::leak`), and
//!   [`FutexWait::from_ptr`] (`unsafe`) takes any address whose word stays
//!   readable until the operation's CQE.
//! - [`FutexWaitV`]'s `futex_waitv` array is copied by the kernel while it
//!   prepares the request (`io_futexv_prep` → `futex_parse_waitv`, a
//!   `copy_from_user` into a kernel allocation); it lives in the SQ slot's
//!   [`Keep`] until then. The words it names are read at issue
//!   (`futex_wait_multiple_setup`), as for [`FutexWait`]: `&'static` in the
//!   safe constructors, [`FutexWaitV::push_ptr`] (`unsafe`) otherwise.

use std::sync::atomic::AtomicU32;

use uring_core::{Error, Features, Keep, Result, Sqe, SqeContext, sys};

use crate::flags::sealed::OnRing;
use crate::op::{Prepare, SafeOp, Target};
use crate::ring::RingOps;

/// The most events one `epoll_wait` may return (`EP_MAX_EVENTS`:
/// `INT_MAX / sizeof(struct epoll_event)`).
const EP_MAX_EVENTS: usize = i32::MAX as usize / size_of::<libc::epoll_event>();

/// Waits for events on an epoll instance: `io_uring_prep_epoll_wait`.
///
/// Since Linux 6.15. Completes once at least one event is ready, with the
/// number of events written to the array as its result. The reference API
/// takes a timeout; the kernel's operation has none (link a timeout, or
/// cancel), so only [`timeout`](Self::timeout)`(0)` is accepted, and any
/// other value is [`Error::InvalidArgument`] before submission.
///
/// The events array is written at completion: the `unsafe` constructor
/// takes that obligation, and the operation is a [`SafeOp`]
/// ([`WaitOps::epoll_wait`] takes the same arguments).
#[doc(alias = "IORING_OP_EPOLL_WAIT")]
#[doc(alias = "io_uring_prep_epoll_wait")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct EpollWait {
    epfd: Target,
    events: *mut libc::epoll_event,
    max: usize,
    timeout_ms: i32,
}

impl EpollWait {
    /// Waits on `epfd`, writing up to `events.len()` events to `events`.
    ///
    /// # Safety
    ///
    /// For every push of the returned operation (or of a copy of it),
    /// `events` must stay valid, and must be neither read nor written by the
    /// program, until that operation's CQE has been reaped: the kernel
    /// writes it while the operation runs (the borrow ends here; the
    /// obligation does not).
    #[inline]
    pub unsafe fn new(epfd: impl Into<Target>, events: &mut [libc::epoll_event]) -> Self {
        EpollWait { epfd: epfd.into(), events: events.as_mut_ptr(), max: events.len(), timeout_ms: 0 }
    }

    /// The `epoll_wait` timeout in milliseconds. Only 0 is accepted (the
    /// kernel operation has no timeout of its own; link a
    /// `LINK_TIMEOUT` instead).
    #[inline]
    pub const fn timeout(mut self, ms: i32) -> Self {
        self.timeout_ms = ms;
        self
    }
}

impl Prepare for EpollWait {
    const CODE: u8 = sys::IORING_OP_EPOLL_WAIT as u8;
    const USES_KEEP: bool = false;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        if self.timeout_ms != 0 {
            return Err(Error::InvalidArgument(format!(
                "epoll_wait timeout {} ms: IORING_OP_EPOLL_WAIT has no timeout; pass 0 and link a timeout",
                self.timeout_ms
            )));
        }
        if self.max == 0 || self.max > EP_MAX_EVENTS {
            return Err(Error::InvalidArgument(format!(
                "epoll_wait: room for {} events; the kernel needs 1 to {EP_MAX_EVENTS}",
                self.max
            )));
        }
        Ok(())
    }

    #[inline]
    fn prepare(self, sqe: &mut Sqe, _keep: &mut Keep) {
        let EpollWait { epfd, events, max, timeout_ms: _ } = self;
        *sqe = Sqe::new(Self::CODE);
        epfd.apply(sqe);
        sqe.set_addr(events as u64);
        sqe.len = max as u32;
    }
}

// SAFETY: the events array is the only memory named; the caller of the unsafe
// constructor keeps it valid and unaccessed until every push's CQE.
unsafe impl SafeOp for EpollWait {}

/// `FUTEX_BITSET_MATCH_ANY`: a wait or wake mask that matches every waiter.
pub const FUTEX_BITSET_MATCH_ANY: u32 = u32::MAX;

/// The address of a futex word: its key (kept as a number, so the
/// builders are `Send` and never dereference it).
fn futex_addr(futex: *const AtomicU32) -> u64 {
    futex as u64
}

/// The `futex2` flags of a 32-bit futex, private to this process or shared.
const fn futex2_flags(shared: bool) -> u32 {
    sys::FUTEX2_SIZE_U32 | if shared { 0 } else { sys::FUTEX2_PRIVATE }
}

/// Waits on a 32-bit futex while it holds `expected`:
/// `io_uring_prep_futex_wait`.
///
/// Since Linux 6.7. The result is 0 when woken, `-EAGAIN` when the futex
/// did not hold `expected` at issue, `-ECANCELED` when cancelled. Private
/// to this process by default (`FUTEX2_PRIVATE`, matching
/// `FUTEX_WAKE_PRIVATE`); [`shared`](Self::shared) for futexes in shared
/// memory.
///
/// The kernel reads the word when it issues the request, which may be long
/// after the push (see the [module](self)): [`new`](Self::new) takes a
/// `&'static AtomicU32`, which makes the operation [`SafeOp`];
/// [`from_ptr`](Self::from_ptr) is the `unsafe` way for any other word.
#[doc(alias = "IORING_OP_FUTEX_WAIT")]
#[doc(alias = "io_uring_prep_futex_wait")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct FutexWait {
    futex: u64,
    expected: u32,
    mask: u32,
    shared: bool,
}

impl FutexWait {
    /// Waits on `futex` while it holds `expected`. The word must live for
    /// the rest of the process (a `static`, or `Box::leak`), since the
    /// kernel reads it at issue, after the push.
    ///
    /// ```
    /// use std::sync::atomic::AtomicU32;
    /// static WORD: AtomicU32 = AtomicU32::new(0);
    /// let _ = uring_ops::wait::FutexWait::new(&WORD, 0);
    /// ```
    ///
    /// A word that could be freed before the kernel reads it is refused at
    /// compile time (the operation outlives the borrow once pushed):
    ///
    /// ```compile_fail,E0597
    /// use std::sync::atomic::AtomicU32;
    /// let op = {
    ///     let word = AtomicU32::new(0);
    ///     uring_ops::wait::FutexWait::new(&word, 0)
    /// };
    /// drop(op);
    /// ```
    #[inline]
    pub fn new(futex: &'static AtomicU32, expected: u32) -> Self {
        FutexWait { futex: futex_addr(futex), expected, mask: FUTEX_BITSET_MATCH_ANY, shared: false }
    }

    /// Waits on the word at `futex` while it holds `expected`.
    ///
    /// # Safety
    ///
    /// For every push of the returned operation (or of a copy of it),
    /// `futex` must point to a 4-byte-aligned `AtomicU32` that stays
    /// allocated (readable) until that operation's CQE has been reaped:
    /// the kernel reads the word when it issues the request, which may be
    /// after the push returns and after the entry was consumed.
    #[inline]
    pub unsafe fn from_ptr(futex: *const AtomicU32, expected: u32) -> Self {
        FutexWait { futex: futex_addr(futex), expected, mask: FUTEX_BITSET_MATCH_ANY, shared: false }
    }

    /// Wakes only for wakes whose mask shares a bit with `mask`
    /// (`FUTEX_WAIT_BITSET`); must not be 0. Default: every wake.
    #[inline]
    pub const fn mask(mut self, mask: u32) -> Self {
        self.mask = mask;
        self
    }

    /// A futex shared between processes (no `FUTEX2_PRIVATE`).
    #[inline]
    pub const fn shared(mut self) -> Self {
        self.shared = true;
        self
    }
}

impl Prepare for FutexWait {
    const CODE: u8 = sys::IORING_OP_FUTEX_WAIT as u8;
    const USES_KEEP: bool = false;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        if self.mask == 0 {
            return Err(Error::InvalidArgument("futex wait mask 0 matches no wake".into()));
        }
        Ok(())
    }

    #[inline]
    fn prepare(self, sqe: &mut Sqe, _keep: &mut Keep) {
        let FutexWait { futex, expected, mask, shared } = self;
        *sqe = Sqe::new(Self::CODE);
        sqe.fd = futex2_flags(shared) as i32;
        sqe.set_addr(futex);
        sqe.set_addr2(u64::from(expected));
        sqe.set_addr3(u64::from(mask));
    }
}

// SAFETY: the word the kernel reads at issue is `'static` (`new`) or kept
// readable until the CQE by the caller of `from_ptr`; no other address is
// named.
unsafe impl SafeOp for FutexWait {}

/// Wakes up to `count` waiters of a 32-bit futex:
/// `io_uring_prep_futex_wake`.
///
/// Since Linux 6.7. The result is the number of waiters woken (waiters of
/// `FUTEX_WAIT`, `futex_waitv` and io_uring futex waits alike). The futex
/// word is not touched, only its address used as the key (`futex_wake`
/// never loads it): [`SafeOp`] with any borrow.
#[doc(alias = "IORING_OP_FUTEX_WAKE")]
#[doc(alias = "io_uring_prep_futex_wake")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct FutexWake {
    futex: u64,
    count: u32,
    mask: u32,
    shared: bool,
}

impl FutexWake {
    /// Wakes up to `count` waiters of `futex`.
    #[inline]
    pub fn new(futex: &AtomicU32, count: u32) -> Self {
        FutexWake { futex: futex_addr(futex), count, mask: FUTEX_BITSET_MATCH_ANY, shared: false }
    }

    /// Wakes only waiters whose mask shares a bit with `mask`; must not be 0.
    #[inline]
    pub const fn mask(mut self, mask: u32) -> Self {
        self.mask = mask;
        self
    }

    /// A futex shared between processes (no `FUTEX2_PRIVATE`).
    #[inline]
    pub const fn shared(mut self) -> Self {
        self.shared = true;
        self
    }
}

impl Prepare for FutexWake {
    const CODE: u8 = sys::IORING_OP_FUTEX_WAKE as u8;
    const USES_KEEP: bool = false;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        if self.mask == 0 {
            return Err(Error::InvalidArgument("futex wake mask 0 matches no waiter".into()));
        }
        Ok(())
    }

    #[inline]
    fn prepare(self, sqe: &mut Sqe, _keep: &mut Keep) {
        let FutexWake { futex, count, mask, shared } = self;
        *sqe = Sqe::new(Self::CODE);
        sqe.fd = futex2_flags(shared) as i32;
        sqe.set_addr(futex);
        sqe.set_addr2(u64::from(count));
        sqe.set_addr3(u64::from(mask));
    }
}

// SAFETY: the futex address is only a key; nothing is read or written.
unsafe impl SafeOp for FutexWake {}

/// Waits on several 32-bit futexes at once, until any is woken:
/// `io_uring_prep_futex_waitv`.
///
/// Since Linux 6.7. The result is the index of the futex that was woken,
/// or `-EAGAIN` when one of them did not hold its expected value at issue.
/// The `futex_waitv` array is copied by the kernel at prep, from the SQ
/// slot's [`Keep`]; the futex words are read at issue (see the
/// [module](self)), so the safe constructors take `&'static AtomicU32`
/// words and the operation is [`SafeOp`]; [`push_ptr`](Self::push_ptr)
/// (`unsafe`) adds any other. At most 128 futexes (`FUTEX_WAITV_MAX`).
#[doc(alias = "IORING_OP_FUTEX_WAITV")]
#[doc(alias = "io_uring_prep_futex_waitv")]
#[derive(Debug, Clone)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct FutexWaitV {
    waiters: Vec<sys::futex_waitv>,
}

impl FutexWaitV {
    /// Waits on each `(futex, expected)` pair, private to this process.
    /// The words must live for the rest of the process (they are read at
    /// issue, after the push).
    ///
    /// ```compile_fail,E0597
    /// use std::sync::atomic::AtomicU32;
    /// let op = {
    ///     let word = AtomicU32::new(0);
    ///     uring_ops::wait::FutexWaitV::new(&[(&word, 0)])
    /// };
    /// drop(op);
    /// ```
    pub fn new(futexes: &[(&'static AtomicU32, u32)]) -> Self {
        let waiters = futexes
            .iter()
            .map(|&(f, expected)| sys::futex_waitv {
                val: u64::from(expected),
                uaddr: futex_addr(f),
                flags: futex2_flags(false),
                ..Default::default()
            })
            .collect();
        FutexWaitV { waiters }
    }

    /// Adds a futex shared between processes (no `FUTEX2_PRIVATE`).
    pub fn shared(self, futex: &'static AtomicU32, expected: u32) -> Self {
        // SAFETY: a `'static` word stays readable for ever.
        unsafe { self.push_ptr(futex, expected, true) }
    }

    /// Adds the word at `futex` with its expected value, shared between
    /// processes when `shared` (no `FUTEX2_PRIVATE`).
    ///
    /// # Safety
    ///
    /// For every push of the operation (or of a clone of it), `futex` must
    /// point to a 4-byte-aligned `AtomicU32` that stays allocated
    /// (readable) until that operation's CQE has been reaped: the kernel
    /// reads the words when it issues the request, which may be after the
    /// push returns and after the entry was consumed.
    pub unsafe fn push_ptr(mut self, futex: *const AtomicU32, expected: u32, shared: bool) -> Self {
        self.waiters.push(sys::futex_waitv {
            val: u64::from(expected),
            uaddr: futex_addr(futex),
            flags: futex2_flags(shared),
            ..Default::default()
        });
        self
    }
}

impl Prepare for FutexWaitV {
    const CODE: u8 = sys::IORING_OP_FUTEX_WAITV as u8;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        let n = self.waiters.len();
        if n == 0 || n > sys::FUTEX_WAITV_MAX as usize {
            return Err(Error::InvalidArgument(format!(
                "futex_waitv of {n} futexes: the kernel takes 1 to {}",
                sys::FUTEX_WAITV_MAX
            )));
        }
        Ok(())
    }

    fn prepare(self, sqe: &mut Sqe, keep: &mut Keep) {
        let FutexWaitV { waiters } = self;
        let n = waiters.len() as u32;
        let held = keep.hold(waiters);
        *sqe = Sqe::new(Self::CODE);
        sqe.set_addr(held.as_ptr() as u64);
        sqe.len = n;
    }
}

// SAFETY: the array is in the Keep and copied at prep; the words the kernel
// reads at issue are `'static` (`new`, `shared`) or kept readable until the
// CQE by the caller of `push_ptr`.
unsafe impl SafeOp for FutexWaitV {}

/// Waits for a child process to change state: `io_uring_prep_waitid`.
///
/// Since Linux 6.7. Like `waitid(idtype, id, info, options)`: the result is
/// 0 (or `-ECHILD`, …), and the child's `siginfo_t` (`si_pid`, `si_status`,
/// `si_code`, …) is written to `info` at completion.
///
/// `info` is caller memory written at completion: the `unsafe`
/// [`new`](Self::new) takes that obligation, and the operation is a
/// [`SafeOp`] ([`WaitOps::waitid`] takes the same arguments).
/// [`without_info`](Self::without_info) names no memory and is safe.
#[doc(alias = "IORING_OP_WAITID")]
#[doc(alias = "io_uring_prep_waitid")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct Waitid {
    idtype: libc::idtype_t,
    id: libc::id_t,
    info: *mut libc::siginfo_t,
    options: i32,
}

impl Waitid {
    /// Waits for `id` of kind `idtype` (`P_PID`, `P_PGID`, `P_ALL`,
    /// `P_PIDFD`) with `options` (`WEXITED`, `WSTOPPED`, `WCONTINUED`,
    /// `WNOHANG`, `WNOWAIT`, …), writing the result to `info`.
    ///
    /// # Safety
    ///
    /// For every push of the returned operation (or of a copy of it),
    /// `info` must stay valid, and must be neither read nor written by the
    /// program, until that operation's CQE has been reaped: the kernel
    /// writes it while the operation runs (the borrow ends here; the
    /// obligation does not).
    #[inline]
    pub unsafe fn new(idtype: libc::idtype_t, id: libc::id_t, info: &mut libc::siginfo_t, options: i32) -> Self {
        Waitid { idtype, id, info, options }
    }

    /// As [`new`](Self::new) without a `siginfo_t`: the kernel writes
    /// nothing (a null `infop`, as `waitid(2)` allows), so this is safe.
    /// The result still says whether the wait succeeded.
    #[inline]
    pub const fn without_info(idtype: libc::idtype_t, id: libc::id_t, options: i32) -> Self {
        Waitid { idtype, id, info: std::ptr::null_mut(), options }
    }
}

const WAITID_OPTIONS: i32 = libc::WNOHANG
    | libc::WNOWAIT
    | libc::WEXITED
    | libc::WSTOPPED
    | libc::WCONTINUED
    | libc::__WNOTHREAD
    | libc::__WCLONE
    | libc::__WALL;

impl Prepare for Waitid {
    const CODE: u8 = sys::IORING_OP_WAITID as u8;
    const USES_KEEP: bool = false;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        if self.options & !WAITID_OPTIONS != 0 {
            return Err(Error::InvalidArgument(format!("waitid options {:#x}: unknown bits", self.options)));
        }
        if self.options & (libc::WEXITED | libc::WSTOPPED | libc::WCONTINUED) == 0 {
            return Err(Error::InvalidArgument(
                "waitid options need at least one of WEXITED, WSTOPPED, WCONTINUED".into(),
            ));
        }
        Ok(())
    }

    #[inline]
    fn prepare(self, sqe: &mut Sqe, _keep: &mut Keep) {
        let Waitid { idtype, id, info, options } = self;
        *sqe = Sqe::new(Self::CODE);
        sqe.fd = id as i32;
        sqe.len = idtype;
        sqe.set_addr2(info as u64);
        sqe.set_file_index(options as u32);
    }
}

// SAFETY: `info` (or nothing, for `without_info`) is the only memory named; the caller of the unsafe
// constructor keeps it valid and unaccessed until every push's CQE.
unsafe impl SafeOp for Waitid {}

/// Adds, changes or removes a file in an epoll set: `io_uring_prep_epoll_ctl`.
///
/// Since Linux 5.6. `op` is `EPOLL_CTL_ADD`, `EPOLL_CTL_MOD` or
/// `EPOLL_CTL_DEL`; the result is 0 or the errno of `epoll_ctl(2)`. The
/// event is copied by the kernel while it prepares the request
/// (`io_epoll_ctl_prep`), so it is held in the SQ slot's [`Keep`] and the
/// operation is [`SafeOp`]. Both descriptors are plain fds (the kernel
/// resolves them itself; registered slots do not apply). Newer kernels
/// log that this opcode is deprecated in favour of `epoll_ctl(2)`.
#[doc(alias = "IORING_OP_EPOLL_CTL")]
#[doc(alias = "io_uring_prep_epoll_ctl")]
#[derive(Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct EpollCtl {
    epfd: i32,
    op: i32,
    fd: i32,
    event: Option<libc::epoll_event>,
}

impl std::fmt::Debug for EpollCtl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let event = self.event.map(|e| (e.events, e.u64));
        f.debug_struct("EpollCtl")
            .field("epfd", &self.epfd)
            .field("op", &self.op)
            .field("fd", &self.fd)
            .field("event", &event)
            .finish()
    }
}

impl EpollCtl {
    /// `EPOLL_CTL_ADD` of `fd` to `epfd` with `events` and `data`.
    pub const fn add(epfd: i32, fd: i32, events: u32, data: u64) -> Self {
        EpollCtl { epfd, op: libc::EPOLL_CTL_ADD, fd, event: Some(libc::epoll_event { events, u64: data }) }
    }

    /// `EPOLL_CTL_MOD` of `fd` in `epfd` to `events` and `data`.
    pub const fn modify(epfd: i32, fd: i32, events: u32, data: u64) -> Self {
        EpollCtl { epfd, op: libc::EPOLL_CTL_MOD, fd, event: Some(libc::epoll_event { events, u64: data }) }
    }

    /// `EPOLL_CTL_DEL` of `fd` from `epfd`.
    pub const fn delete(epfd: i32, fd: i32) -> Self {
        EpollCtl { epfd, op: libc::EPOLL_CTL_DEL, fd, event: None }
    }
}

impl Prepare for EpollCtl {
    const CODE: u8 = sys::IORING_OP_EPOLL_CTL as u8;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        if features.setup_flags().contains(uring_core::SetupFlags::IOPOLL) {
            return Err(Error::InvalidArgument("IORING_OP_EPOLL_CTL cannot run on an IOPOLL ring".into()));
        }
        Ok(())
    }

    #[inline]
    fn prepare(self, sqe: &mut Sqe, keep: &mut Keep) {
        let EpollCtl { epfd, op, fd, event } = self;
        *sqe = Sqe::new(Self::CODE);
        sqe.fd = epfd;
        sqe.len = op as u32;
        sqe.set_off(fd as u32 as u64);
        if let Some(ev) = event {
            let kept = keep.inline(ev);
            sqe.set_addr(kept as *mut libc::epoll_event as u64);
        }
    }
}

// SAFETY: the only address is the event, held in the Keep and copied by
// the kernel at prep.
unsafe impl SafeOp for EpollCtl {}

/// Asynchronous waits as [`Ring`](uring_core::Ring) methods.
pub trait WaitOps {
    /// Queues a wait on `futex` while it holds `expected` ([`FutexWait`]).
    /// The kernel reads the word at issue, after the push: hence
    /// `'static` (or [`FutexWait::from_ptr`], `unsafe`).
    ///
    /// ```compile_fail,E0597
    /// use std::sync::atomic::AtomicU32;
    /// use uring_ops::wait::WaitOps;
    /// fn queue(ring: &mut uring_core::Ring) {
    ///     let word = AtomicU32::new(0);
    ///     ring.futex_wait(uring_core::SqeContext::token(3).unwrap(), &word, 0).unwrap();
    /// } // `word` is freed here; the kernel reads it at the next submit
    /// ```
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    fn futex_wait(&mut self, ctx: SqeContext, futex: &'static AtomicU32, expected: u32) -> Result<SqeContext>;

    /// Queues a wake of up to `count` waiters of `futex` ([`FutexWake`]).
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    fn futex_wake(&mut self, ctx: SqeContext, futex: &AtomicU32, count: u32) -> Result<SqeContext>;

    /// Queues a wait on several futexes ([`FutexWaitV`]); the words are
    /// read at issue, hence `'static`.
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`]; [`Error::InvalidArgument`] for 0 or more
    /// than 128 futexes.
    fn futex_waitv(&mut self, ctx: SqeContext, futexes: &[(&'static AtomicU32, u32)]) -> Result<SqeContext>;

    /// Queues an `epoll_ctl` ([`EpollCtl`]).
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    fn epoll_ctl(&mut self, ctx: SqeContext, op: EpollCtl) -> Result<SqeContext>;

    /// Queues an `epoll_wait` on `epfd` into `events` ([`EpollWait`]).
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op_unchecked`].
    ///
    /// # Safety
    ///
    /// `events` must stay valid, and must be neither read nor written,
    /// until the operation's CQE has been reaped: the kernel writes it at
    /// completion.
    unsafe fn epoll_wait(
        &mut self,
        ctx: SqeContext,
        epfd: impl Into<Target>,
        events: &mut [libc::epoll_event],
    ) -> Result<SqeContext>;

    /// Queues a `waitid` ([`Waitid`]).
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op_unchecked`].
    ///
    /// # Safety
    ///
    /// `info` must stay valid, and must be neither read nor written, until
    /// the operation's CQE has been reaped: the kernel writes it at
    /// completion.
    unsafe fn waitid(
        &mut self,
        ctx: SqeContext,
        idtype: libc::idtype_t,
        id: libc::id_t,
        info: &mut libc::siginfo_t,
        options: i32,
    ) -> Result<SqeContext>;
}

impl<R: RingOps + OnRing> WaitOps for R {
    #[inline]
    fn futex_wait(&mut self, ctx: SqeContext, futex: &'static AtomicU32, expected: u32) -> Result<SqeContext> {
        self.push_op(ctx, FutexWait::new(futex, expected))
    }

    #[inline]
    fn futex_wake(&mut self, ctx: SqeContext, futex: &AtomicU32, count: u32) -> Result<SqeContext> {
        self.push_op(ctx, FutexWake::new(futex, count))
    }

    #[inline]
    fn futex_waitv(&mut self, ctx: SqeContext, futexes: &[(&'static AtomicU32, u32)]) -> Result<SqeContext> {
        self.push_op(ctx, FutexWaitV::new(futexes))
    }

    #[inline]
    fn epoll_ctl(&mut self, ctx: SqeContext, op: EpollCtl) -> Result<SqeContext> {
        self.push_op(ctx, op)
    }

    #[inline]
    unsafe fn epoll_wait(
        &mut self,
        ctx: SqeContext,
        epfd: impl Into<Target>,
        events: &mut [libc::epoll_event],
    ) -> Result<SqeContext> {
        // SAFETY: forwarded to the caller (`EpollWait::new`'s contract).
        let op = unsafe { EpollWait::new(epfd, events) };
        self.push_op(ctx, op)
    }

    #[inline]
    unsafe fn waitid(
        &mut self,
        ctx: SqeContext,
        idtype: libc::idtype_t,
        id: libc::id_t,
        info: &mut libc::siginfo_t,
        options: i32,
    ) -> Result<SqeContext> {
        // SAFETY: forwarded to the caller (`Waitid::new`'s contract).
        let op = unsafe { Waitid::new(idtype, id, info, options) };
        self.push_op(ctx, op)
    }
}
