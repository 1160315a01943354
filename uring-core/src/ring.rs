//! [`Ring`]: the single-issuer ring, and the setup both ring types share.

use std::marker::PhantomData;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;
use std::time::Duration;

use uring_sys as sys;

use crate::context::ContextPools;
use crate::cqe::{Cqe, CqeSlot, Reaped};
use crate::error::{Error, Result, setup_error};
use crate::features::{FeatureFlags, Features, probe_setup_flag, read_probe};
use crate::keep::Keep;
use crate::options::{Issuer, Options, SetupFlags, setup_flag_name};
use crate::queue::{Cq, Mapping, Sq};
use crate::register::Registrar;
use crate::sqe::{Sqe, Sqe128};

/// What a blocking wait waits for; see [`Ring::wait_with`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WaitArgs {
    /// Completions to wait for.
    pub min: u32,
    /// Give up after this long (`None`: no limit).
    pub timeout: Option<Duration>,
    /// After this long, return as soon as at least one completion is ready
    /// even if fewer than `min` are (`min_wait_usec`, since 6.12): batch
    /// under load without adding latency when idle.
    pub min_wait: Option<Duration>,
    /// Do not count the wait as iowait (`IORING_ENTER_NO_IOWAIT`, 6.15).
    pub no_iowait: bool,
}

/// Where a ring is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Created with `IORING_SETUP_R_DISABLED`: register resources, then `start`.
    Created,
    /// Enabled; submissions and completions flow.
    Started,
    /// Stopped for good; every call returns [`Error::Stopped`].
    Stopped,
}

/// The next ring identity: 64 bits, so it never wraps; 0 is no ring.
static NEXT_RING_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// The parts both ring types share: the fd, the mappings, the features.
#[derive(Debug)]
pub(crate) struct Core {
    /// Process-unique identity (see [`Ring::id`]).
    pub(crate) id: u64,
    /// `None` once stopped. Declared before the mappings so the fd closes
    /// first.
    pub(crate) fd: Option<OwnedFd>,
    pub(crate) raw_fd: RawFd,
    pub(crate) params: sys::io_uring_params,
    pub(crate) rings: Mapping,
    pub(crate) sqes: Option<Mapping>,
    pub(crate) features: Features,
    pub(crate) state: State,
    /// The fd or registered index `io_uring_enter` takes.
    pub(crate) enter_fd: i32,
    /// `IORING_ENTER_REGISTERED_RING` when entering through the index.
    pub(crate) enter_flags: u32,
    pub(crate) register_ring_fd: bool,
    /// The thread that started a `SINGLE_ISSUER` ring: the only one the
    /// kernel lets submit or register from then on.
    pub(crate) issuer: Option<std::thread::ThreadId>,
    pub(crate) sqpoll: bool,
    pub(crate) defer: bool,
    /// Memory the kernel may use as long as the ring lives (buffer rings,
    /// registered buffers of the layers above): dropped only after the
    /// ring is closed with nothing in flight.
    pub(crate) attached: Vec<Box<dyn std::any::Any + Send + Sync>>,
}

impl Core {
    pub(crate) fn setup(opts: &Options, issuer: Issuer) -> Result<(Core, Sq, Cq)> {
        let (entries, mut params) = opts.to_params(issuer)?;
        let requested = params;
        let no_mmap = params.flags & sys::IORING_SETUP_NO_MMAP != 0;

        // With NO_MMAP the memory must exist before the setup call; its size
        // depends on offsets only the kernel knows, so ask a throwaway ring
        // with the same geometry first.
        let user_mem = if no_mmap {
            let mut probe = params;
            probe.flags &= !(sys::IORING_SETUP_NO_MMAP | sys::IORING_SETUP_R_DISABLED);
            // SAFETY: `probe` is valid and hands the kernel no memory of ours.
            let fd = unsafe { sys::io_uring_setup(entries, &mut probe) };
            let fd = fd.map_err(|e| diagnose(e, entries, &requested))?;
            // SAFETY: the kernel just returned this fd; we own it.
            drop(unsafe { OwnedFd::from_raw_fd(fd) });
            let rings =
                Mapping::anonymous(rings_len(&probe), false).map_err(|e| Error::io("mmap (NO_MMAP rings)", e))?;
            let sqes = Mapping::anonymous(sqes_len(&probe), false).map_err(|e| Error::io("mmap (NO_MMAP sqes)", e))?;
            params.cq_off.user_addr = rings.ptr() as u64;
            params.sq_off.user_addr = sqes.ptr() as u64;
            Some((rings, sqes))
        } else {
            None
        };

        // SAFETY: `params` is valid for the call. With NO_MMAP, the two user
        // addresses are page-aligned regions of the sizes the kernel needs
        // for this geometry; they stay mapped as long as the ring (they move
        // into `Core` below, which closes the fd before unmapping).
        let fd = unsafe { sys::io_uring_setup(entries, &mut params) }.map_err(|e| diagnose(e, entries, &requested))?;
        // SAFETY: the kernel just returned this fd; we own it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };

        let (rings, sqes) = match user_mem {
            Some((rings, sqes)) => (rings, Some(sqes)),
            None => {
                let rings = Mapping::map_ring(fd.as_raw_fd(), rings_len(&params), sys::IORING_OFF_SQ_RING)
                    .map_err(|e| Error::io("mmap (IORING_OFF_SQ_RING)", e))?;
                let sqes = Mapping::map_ring(fd.as_raw_fd(), sqes_len(&params), sys::IORING_OFF_SQES)
                    .map_err(|e| Error::io("mmap (IORING_OFF_SQES)", e))?;
                (rings, Some(sqes))
            }
        };
        let sqes_ptr = sqes.as_ref().map_or(ptr::null_mut(), Mapping::ptr);
        // SAFETY: both regions are the live memory `params` describes, and
        // they live in the returned Core next to the queues.
        let (sq, mut cq) = unsafe { (Sq::new(&params, rings.ptr(), sqes_ptr), Cq::new(&params, rings.ptr())) };
        let id = NEXT_RING_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        cq.ring_id = id;

        let (last_op, probe) = read_probe(fd.as_raw_fd())?;
        let features = Features::new(&params, &probe, last_op);
        let raw_fd = fd.as_raw_fd();
        let flags = params.flags;
        Ok((
            Core {
                id,
                fd: Some(fd),
                raw_fd,
                params,
                rings,
                sqes,
                features,
                state: State::Created,
                enter_fd: raw_fd,
                enter_flags: 0,
                register_ring_fd: opts.register_ring_fd,
                issuer: None,
                sqpoll: flags & sys::IORING_SETUP_SQPOLL != 0,
                defer: flags & sys::IORING_SETUP_DEFER_TASKRUN != 0,
                attached: Vec::new(),
            },
            sq,
            cq,
        ))
    }

    /// The error for a failed syscall `call`: [`Error::WrongThread`] when a
    /// single-issuer ring is used from a thread other than its issuer
    /// (the kernel says `EEXIST`, or `EINVAL`/`EBADF` for a registered
    /// ring index that belongs to the other thread), else the errno.
    #[cold]
    pub(crate) fn failed(&self, call: &'static str, e: std::io::Error) -> Error {
        let foreign = self.issuer.is_some_and(|t| t != std::thread::current().id());
        if foreign && matches!(e.raw_os_error(), Some(libc::EEXIST | libc::EINVAL | libc::EBADF)) {
            return Error::WrongThread { call };
        }
        Error::io(call, e)
    }

    #[inline]
    pub(crate) fn check(&self) -> Result<()> {
        if self.state == State::Started { Ok(()) } else { Err(self.state_error()) }
    }

    #[cold]
    pub(crate) fn state_error(&self) -> Error {
        match self.state {
            State::Created => Error::NotStarted,
            State::Stopped => Error::Stopped,
            State::Started => unreachable!("state_error on a started ring"),
        }
    }

    /// `io_uring_enter` without an extended argument.
    #[inline]
    pub(crate) fn enter(&self, to_submit: u32, min_complete: u32, flags: u32) -> Result<u32> {
        // SAFETY: `enter_fd` is this ring (fd or registered index, with the
        // matching flag); every SQE it may consume was pushed through an
        // `unsafe` push whose caller vouched for the memory it names; no
        // signal mask or extended argument is passed.
        let r = unsafe {
            sys::io_uring_enter(self.enter_fd, to_submit, min_complete, flags | self.enter_flags, ptr::null())
        };
        r.map_err(|e| self.failed("io_uring_enter", e))
    }

    /// A blocking `io_uring_enter` shaped by `args`: plain when there is
    /// neither a timeout nor a minimum wait, else with an extended argument.
    /// `ETIME` (the timeout passed) is not an error here.
    pub(crate) fn enter_wait(&self, to_submit: u32, args: &WaitArgs) -> Result<u32> {
        let mut flags = sys::IORING_ENTER_GETEVENTS | self.enter_flags;
        if args.no_iowait {
            if !self.features.has(FeatureFlags::NO_IOWAIT) {
                return Err(Error::unsupported("IORING_ENTER_NO_IOWAIT", Some("needs Linux 6.15")));
            }
            flags |= sys::IORING_ENTER_NO_IOWAIT;
        }
        let r = if args.timeout.is_none() && args.min_wait.is_none() {
            // SAFETY: as in `enter`.
            unsafe { sys::io_uring_enter(self.enter_fd, to_submit, args.min, flags, ptr::null()) }
        } else {
            let ts = args.timeout.map(|t| sys::__kernel_timespec {
                tv_sec: t.as_secs().min(i64::MAX as u64) as i64,
                tv_nsec: i64::from(t.subsec_nanos()),
            });
            let min_wait_usec = match args.min_wait {
                None => 0,
                Some(_) if !self.features.has(FeatureFlags::MIN_TIMEOUT) => {
                    return Err(Error::unsupported("IORING_FEAT_MIN_TIMEOUT", Some("needs Linux 6.12")));
                }
                Some(d) => u32::try_from(d.as_micros())
                    .map_err(|_| Error::InvalidArgument(format!("min_wait {d:?} exceeds u32 microseconds")))?,
            };
            let arg = sys::io_uring_getevents_arg {
                ts: ts.as_ref().map_or(0, |ts| ts as *const sys::__kernel_timespec as u64),
                min_wait_usec,
                ..Default::default()
            };
            // SAFETY: as in `enter`; `arg` and the timespec it may point to
            // live on this stack frame for the duration of the call, and
            // EXT_ARG tells the kernel to read exactly that structure.
            unsafe {
                sys::io_uring_enter2(
                    self.enter_fd,
                    to_submit,
                    args.min,
                    flags | sys::IORING_ENTER_EXT_ARG,
                    (&arg as *const sys::io_uring_getevents_arg).cast(),
                    size_of::<sys::io_uring_getevents_arg>(),
                )
            }
        };
        match r {
            Ok(n) => Ok(n),
            Err(e) if e.raw_os_error() == Some(libc::ETIME) => Ok(0),
            Err(e) => Err(self.failed("io_uring_enter", e)),
        }
    }

    /// Whether reaping needs a trip into the kernel even with nothing to
    /// submit: deferred task work only runs when we ask, an overflow
    /// backlog only flushes when we ask, and `IORING_SQ_TASKRUN` says task
    /// work is pending.
    #[inline]
    pub(crate) fn needs_getevents(&self, cq: &Cq, cq_empty: bool) -> bool {
        let kflags = cq.sq_flags();
        kflags & sys::IORING_SQ_CQ_OVERFLOW != 0 || (cq_empty && (self.defer || kflags & sys::IORING_SQ_TASKRUN != 0))
    }

    pub(crate) fn start(&mut self) -> Result<()> {
        match self.state {
            State::Started => return Err(Error::AlreadyStarted),
            State::Stopped => return Err(Error::Stopped),
            State::Created => {}
        }
        // SAFETY: ENABLE_RINGS takes no argument.
        unsafe { sys::io_uring_register(self.raw_fd, sys::IORING_REGISTER_ENABLE_RINGS, ptr::null(), 0) }
            .map_err(|e| Error::io("IORING_REGISTER_ENABLE_RINGS", e))?;
        self.state = State::Started;
        if self.params.flags & sys::IORING_SETUP_SINGLE_ISSUER != 0 {
            self.issuer = Some(std::thread::current().id());
        }
        if self.register_ring_fd {
            self.register_ring_fd()?;
        }
        Ok(())
    }

    pub(crate) fn register_ring_fd(&mut self) -> Result<u32> {
        if self.enter_flags != 0 {
            return Ok(self.enter_fd as u32);
        }
        let mut upd = sys::io_uring_rsrc_update { offset: u32::MAX, data: self.raw_fd as u64, ..Default::default() };
        // SAFETY: RING_FDS reads and writes back one io_uring_rsrc_update.
        unsafe {
            sys::io_uring_register(
                self.raw_fd,
                sys::IORING_REGISTER_RING_FDS,
                (&mut upd as *mut sys::io_uring_rsrc_update).cast(),
                1,
            )
        }
        .map_err(|e| Error::io("IORING_REGISTER_RING_FDS", e))?;
        self.enter_fd = upd.offset as i32;
        self.enter_flags = sys::IORING_ENTER_REGISTERED_RING;
        Ok(upd.offset)
    }

    /// Ends the ring: closes `sq` to new entries, on SQPOLL waits until the
    /// poller has consumed every published entry, cancels everything in
    /// flight (driving the task work that completes the cancellations),
    /// closes the fd, and drops the attached memory, or leaks it (and,
    /// when the poller did not drain the SQ, every slot's `Keep`) when
    /// the kernel might still use it.
    ///
    /// `queues` is `None` only from `Core`'s own `Drop`, which runs after
    /// the ring type's `Drop` has stopped the ring (or for a ring that was
    /// never wrapped, so never started).
    pub(crate) fn stop(&mut self, mut queues: Option<(&mut Sq, &mut Cq)>) {
        if self.state == State::Stopped {
            return;
        }
        if let Some((sq, _)) = queues.as_mut() {
            sq.close();
        }
        if self.enter_flags != 0 {
            let upd = sys::io_uring_rsrc_update { offset: self.enter_fd as u32, ..Default::default() };
            // SAFETY: UNREGISTER_RING_FDS reads one io_uring_rsrc_update.
            // Best effort: from another thread the index is not ours and
            // the kernel says EINVAL; the thread's exit releases it then.
            let _ = unsafe {
                sys::io_uring_register(
                    self.raw_fd,
                    sys::IORING_UNREGISTER_RING_FDS,
                    (&upd as *const sys::io_uring_rsrc_update).cast(),
                    1,
                )
            };
            self.enter_fd = self.raw_fd;
            self.enter_flags = 0;
        }
        let quiet = match (self.state, queues) {
            // Never enabled (`R_DISABLED`): nothing was ever submitted.
            (State::Created, _) => true,
            (_, Some((sq, cq))) => {
                let drained = !self.sqpoll || self.drain_sq(sq);
                if !drained {
                    // The poller may still read entries the kernel has not
                    // consumed, and the memory their `Keep`s hold.
                    sq.leak_keeps();
                }
                // Cancel even when not drained: what can be cancelled is.
                self.cancel_everything(cq) && drained
            }
            (_, None) => false,
        };
        // Closing our fd is not the end of the ring: the mappings hold
        // file references too (the kernel tears the ring down when the
        // ring object unmaps them on drop), and so would a registration of
        // the fd that another thread still holds. Nothing is in flight
        // when `quiet`, and no entry can be submitted any more (the SQ is
        // closed and, on SQPOLL, drained), so the kernel no longer touches
        // the attached memory either way.
        self.fd = None;
        self.enter_fd = -1;
        self.state = State::Stopped;
        let attached = std::mem::take(&mut self.attached);
        if quiet {
            drop(attached);
        } else {
            // A request could not be cancelled (or the SQ not drained):
            // the kernel may still write into attached memory. Leaking it
            // is the only safe choice.
            std::mem::forget(attached);
        }
    }

    /// SQPOLL: waits until the poller thread has consumed every published
    /// entry (its SQ head reaches our published tail), waking it when it
    /// sleeps, for up to [`STOP_TIMEOUT`]. Entries written but never
    /// published are never seen by the kernel. Must run before the ring
    /// is closed: once the ring is dying the poller submits nothing more,
    /// and the head stops. Returns whether the SQ is drained.
    fn drain_sq(&self, sq: &Sq) -> bool {
        let deadline = std::time::Instant::now() + STOP_TIMEOUT;
        loop {
            if sq.unconsumed() == 0 {
                return true;
            }
            // Not through `enter`'s error mapping: a dead poller
            // (`EOWNERDEAD`) or any other failure means "not drained".
            if sq.needs_wakeup() && self.enter(0, 0, sys::IORING_ENTER_SQ_WAKEUP).is_err() {
                return false;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    }
}

impl Core {
    /// Cancels every request in flight and waits for the cancellations
    /// (`IORING_REGISTER_SYNC_CANCEL` with `IORING_ASYNC_CANCEL_ANY`,
    /// repeated until nothing matches), so that once `stop` returns no
    /// operation of this ring is still about to read or write memory.
    ///
    /// With `ANY`, the kernel returns how many requests it found, and
    /// finds again every request whose cancellation has not completed
    /// yet: a poll (or a request waiting in poll, such as an accept) is
    /// only marked cancelled, and completes in task work of the task that
    /// submitted it. On a `DEFER_TASKRUN` ring that task work runs only in
    /// an `io_uring_enter` with `IORING_ENTER_GETEVENTS` of the issuer, so
    /// every round is followed by one (non-blocking; the kernel runs up to
    /// 20 items per call). On `COOP_TASKRUN` and default rings it runs when
    /// the submitting task returns from a syscall (this thread: right
    /// after the register call; on SQPOLL: the poller). Completions are
    /// discarded as they come, so the CQ never overflows meanwhile.
    ///
    /// When a round finds no fewer requests than the last (a request
    /// running on an io-wq worker that cancellation cannot interrupt, or
    /// task work queued to another thread of a `SharedRing`), it waits up
    /// to [`STOP_TIMEOUT`] for a completion, and gives up when none comes.
    ///
    /// Returns whether nothing is left in flight. From a thread other than
    /// the issuer of a `SINGLE_ISSUER` ring the kernel refuses the cancel
    /// (`EEXIST`): false.
    fn cancel_everything(&mut self, cq: &mut Cq) -> bool {
        let mut last = u64::MAX;
        for _ in 0..MAX_CANCEL_ROUNDS {
            let reg = sys::io_uring_sync_cancel_reg {
                fd: -1,
                flags: sys::IORING_ASYNC_CANCEL_ANY,
                timeout: sys::__kernel_timespec {
                    tv_sec: STOP_TIMEOUT.as_secs() as i64,
                    tv_nsec: i64::from(STOP_TIMEOUT.subsec_nanos()),
                },
                ..Default::default()
            };
            // SAFETY: SYNC_CANCEL reads one io_uring_sync_cancel_reg, valid
            // for the call.
            let r = unsafe {
                sys::io_uring_register(
                    self.raw_fd,
                    sys::IORING_REGISTER_SYNC_CANCEL,
                    (&reg as *const sys::io_uring_sync_cancel_reg).cast(),
                    1,
                )
            };
            let found = match r {
                // With ANY the kernel returns how many it found: 0 means
                // nothing is left.
                Ok(0) => return true,
                Ok(n) => u64::from(n),
                // ENOENT: nothing left.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return true,
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                // Anything else (EEXIST from a foreign thread, ETIME):
                // stop trying; closing the fd still cancels, but not
                // synchronously.
                Err(_) => return false,
            };
            cq.discard();
            // Run the deferred task work that completes what was just
            // cancelled (and flush an overflow backlog), without blocking.
            if self.enter(0, 0, sys::IORING_ENTER_GETEVENTS).is_err() {
                return false;
            }
            if found < last {
                last = found;
                continue;
            }
            // No progress since the last round: wait for a completion.
            cq.discard();
            let wait = WaitArgs { min: 1, timeout: Some(STOP_TIMEOUT), ..WaitArgs::default() };
            match self.enter_wait(0, &wait) {
                Ok(_) if cq.ready() > 0 => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                // Nothing completed for STOP_TIMEOUT, or the wait failed.
                _ => return false,
            }
        }
        false
    }
}

/// How long `stop` waits for a request that cancellation cannot interrupt
/// (or for the SQPOLL thread to consume the SQ) before giving up and
/// leaking what the kernel might still use.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(1);

/// A bound on the cancel rounds of `stop`; each round either makes
/// progress or waits up to [`STOP_TIMEOUT`] for it.
const MAX_CANCEL_ROUNDS: u32 = 1 << 16;

impl Drop for Core {
    fn drop(&mut self) {
        self.stop(None);
    }
}

fn rings_len(p: &sys::io_uring_params) -> usize {
    let cqe = if p.flags & sys::IORING_SETUP_CQE32 != 0 { 32 } else { 16 };
    let mut len = p.cq_off.cqes as usize + p.cq_entries as usize * cqe;
    if p.flags & sys::IORING_SETUP_NO_SQARRAY == 0 {
        len = len.max(p.sq_off.array as usize + p.sq_entries as usize * 4);
    }
    len
}

fn sqes_len(p: &sys::io_uring_params) -> usize {
    let sqe = if p.flags & sys::IORING_SETUP_SQE128 != 0 { 128 } else { 64 };
    p.sq_entries as usize * sqe
}

#[cold]
fn no_slots() -> Error {
    Error::InvalidArgument("an empty slice of CqeSlots can hold no completion".into())
}

/// Turns a failed setup into the clearest error: an unknown flag is named.
#[cold]
fn diagnose(e: std::io::Error, entries: u32, requested: &sys::io_uring_params) -> Error {
    if e.raw_os_error() == Some(libc::EINVAL) {
        let ignore = sys::IORING_SETUP_R_DISABLED;
        for bit in (0..32).map(|b| 1u32 << b).filter(|b| requested.flags & b & !ignore != 0) {
            if probe_setup_flag(bit) == Some(false) {
                let what = if SetupFlags::all().bits() & bit != 0 && setup_flag_name(bit) != "unknown IORING_SETUP bit"
                {
                    setup_flag_name(bit).to_owned()
                } else {
                    format!("setup flag bit {}", bit.trailing_zeros())
                };
                return Error::unsupported(what, Some("see `cargo xtask doctor` for the flags this kernel accepts"));
            }
        }
    }
    let cq = if requested.cq_entries != 0 { requested.cq_entries } else { entries.saturating_mul(2) };
    setup_error(e, entries, cq)
}

/// A single-issuer io_uring instance: `IORING_SETUP_SINGLE_ISSUER` with
/// deferred task work by default.
///
/// `Ring` is `Send` but not `Sync`: one thread at a time owns it, and the
/// type system (every submit-state call takes `&mut self`) serializes
/// submission and reaping. Use [`SharedRing`](crate::SharedRing) when
/// several threads must submit.
///
/// The kernel binds a single-issuer ring to the thread that enables it: a
/// `Ring` may be created on one thread and moved to another, but the thread
/// that calls [`start`](Self::start) is the only one that may submit, wait
/// or register afterwards. From any other thread those calls fail with
/// [`Error::WrongThread`] (and `stop`/`Drop` there can only close the fd,
/// without the synchronous cancellation described at [`stop`](Self::stop)).
///
/// # Lifecycle
///
/// [`new`](Self::new) creates the ring disabled and maps it; register files,
/// eventfds, restrictions and buffers through [`register`](Self::register);
/// [`start`](Self::start) enables it; [`stop`](Self::stop) ends it for good.
///
/// ```no_run
/// use uring_core::{CqeSlot, Options, Ring, Sqe, SqeContext};
///
/// let mut ring = Ring::new(Options::small())?;
/// ring.start()?;
/// let mut nop = Sqe::new(uring_sys::IORING_OP_NOP as u8);
/// nop.set_context(SqeContext::direct(0, Default::default(), 0, -1).with_op(0));
/// // SAFETY: a NOP names no memory.
/// unsafe { ring.push(&nop) }?;
/// let mut slots = [CqeSlot::EMPTY; 8];
/// let done = ring.wait_for(&mut slots, 1, None)?;
/// assert_eq!(done.get(0).unwrap().res(), 0);
/// # Ok::<(), uring_core::Error>(())
/// ```
#[derive(Debug)]
pub struct Ring {
    /// Declared first so that it drops first: after [`Drop`] has stopped
    /// the ring, unmapping the ring memory drops our last reference to it,
    /// and only then do the SQ slots' `Keep`s go.
    pub(crate) core: Core,
    pub(crate) sq: Sq,
    pub(crate) cq: Cq,
    pools: ContextPools,
    /// Buffer groups a layer owns exclusively (see
    /// [`Ring::reserve_buffer_group`]); usually empty.
    reserved_groups: Vec<u16>,
    /// Buffer group ids a provided-buffer ring was ever registered under
    /// on this ring ([`Ring::claim_buffer_group`]).
    claimed_groups: Vec<u16>,
    /// One bit per buffer group id a typed push queued an entry selecting
    /// from ([`Ring::note_selected_group`]); allocated on first use.
    named_groups: Option<Box<[u64; 1024]>>,
    /// `Sq`/`Cq` are `Send` but not `Sync`; this marker states it for the
    /// whole type regardless of how their fields change.
    _not_sync: PhantomData<std::cell::Cell<()>>,
}

impl Ring {
    /// Creates the ring (disabled), maps it, reads the probe and sizes the
    /// context pools. Nothing can be submitted until [`start`](Self::start).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for bad options (before any syscall),
    /// [`Error::Unsupported`] naming a setup flag the kernel rejects, and the
    /// machine-dependent setup errors ([`Error::LockedMemory`],
    /// [`Error::Disabled`], [`Error::Blocked`], [`Error::NoIoUring`]).
    pub fn new(opts: Options) -> Result<Self> {
        let (core, sq, cq) = Core::setup(&opts, Issuer::Single)?;
        let (indirect, extended) = opts.pool_sizes(core.params.sq_entries);
        let pools = ContextPools::for_ring(core.id, indirect, extended);
        Ok(Ring {
            sq,
            cq,
            core,
            pools,
            reserved_groups: Vec::new(),
            claimed_groups: Vec::new(),
            named_groups: None,
            _not_sync: PhantomData,
        })
    }

    /// Enables the ring (`IORING_REGISTER_ENABLE_RINGS`) and, if asked,
    /// registers its fd. Fails with [`Error::AlreadyStarted`] the second
    /// time.
    pub fn start(&mut self) -> Result<()> {
        self.core.start()?;
        self.sq.open();
        Ok(())
    }

    /// Ends the ring for good. Idempotent; every later call returns
    /// [`Error::Stopped`]. Dropping the ring does the same.
    ///
    /// Entries not yet submitted are dropped (on SQPOLL rings, `stop`
    /// first waits, up to [`STOP_TIMEOUT`], until the poller thread has
    /// consumed every entry already published). Every request still in
    /// flight is then cancelled synchronously
    /// (`IORING_REGISTER_SYNC_CANCEL`, any request), running the task work
    /// that completes the cancellations (on deferred-task-work rings, in
    /// non-blocking `io_uring_enter(GETEVENTS)` calls between rounds) and
    /// waiting up to [`STOP_TIMEOUT`] for a request that cannot be
    /// interrupted at once; then the fd is closed. So once `stop` returns,
    /// the kernel no longer touches memory that in-flight operations
    /// named.
    ///
    /// Completions not reaped before `stop` are lost (`stop` discards the
    /// CQ as the cancellations complete, so an overflowing CQ does not
    /// hold it up), and so are pooled contexts they would have returned
    /// (visible in the pool counters): drain first when they matter.
    ///
    /// Memory [`attach`](Self::attach)ed to the ring is dropped after the
    /// fd is closed, or leaked if some request could not be cancelled
    /// (never freed while the kernel might still write to it); the same
    /// for each SQ slot's [`Keep`] when an SQPOLL ring's poller did not
    /// drain the SQ.
    ///
    /// From a thread other than the one that called
    /// [`start`](Self::start), the kernel refuses both the cancellation
    /// and the task work of a `SINGLE_ISSUER` ring (`EEXIST`): `stop` (and
    /// `Drop`) there can only close the fd. The kernel cancels the
    /// requests asynchronously once its last reference to the ring is
    /// gone (the mappings, unmapped when the ring drops; a ring fd
    /// registered by the issuer thread, until that thread exits), and the
    /// attached memory is leaked: safe, but permanent. Stop a ring on the
    /// thread that started it.
    pub fn stop(&mut self) {
        self.core.stop(Some((&mut self.sq, &mut self.cq)));
    }

    /// Where the ring is in its life.
    pub fn state(&self) -> State {
        self.core.state
    }

    /// This ring's identity: process-unique, never reused, never 0. Every
    /// [`Cqe`] it reaps carries it ([`Cqe::ring_id`]), so memory registered
    /// with this ring is released only by this ring's CQEs.
    #[inline]
    pub fn id(&self) -> u64 {
        self.core.id
    }

    /// CQ slots consumed so far: every CQE reaped from now on has a
    /// [`Cqe::seq`] at least this, and every CQE reaped before has a
    /// smaller one. A layer that queues an operation notes it, so that no
    /// CQE reaped before the operation existed can complete it.
    #[inline]
    pub fn cq_position(&self) -> u64 {
        self.cq.position()
    }

    /// What the kernel and this ring support.
    pub fn features(&self) -> &Features {
        &self.core.features
    }

    /// The parameters the kernel returned from setup.
    pub fn params(&self) -> &sys::io_uring_params {
        &self.core.params
    }

    /// The ring's context pools.
    pub fn pools(&self) -> &ContextPools {
        &self.pools
    }

    /// The ring's context pools, mutable (acquire, fill, release).
    pub fn pools_mut(&mut self) -> &mut ContextPools {
        &mut self.pools
    }

    /// The register calls of this ring.
    pub fn register(&self) -> Registrar<'_> {
        Registrar::new(&self.core)
    }

    /// Keeps `memory` alive as long as the ring: it is dropped only after
    /// the ring has been stopped with nothing in flight (and leaked if a
    /// request could not be cancelled, see [`stop`](Self::stop)). The
    /// layers above attach the memory they register with the kernel
    /// (buffer rings, registered buffers), so the kernel can never write
    /// into it after it was freed, whatever order the caller drops things
    /// in.
    ///
    /// # Errors
    ///
    /// [`Error::Stopped`]: the ring is gone, and `memory` is dropped.
    pub fn attach(&mut self, memory: Box<dyn std::any::Any + Send + Sync>) -> Result<()> {
        if self.core.state == State::Stopped {
            return Err(Error::Stopped);
        }
        self.core.attached.push(memory);
        Ok(())
    }

    /// Registers the ring fd now (see
    /// [`Options::register_ring_fd`](crate::Options::register_ring_fd)) and
    /// returns its index; later enters use it.
    pub fn register_ring_fd(&mut self) -> Result<u32> {
        self.core.check()?;
        self.core.register_ring_fd()
    }

    /// The next free SQE, zeroed, for the caller to fill in place.
    ///
    /// # Errors
    ///
    /// [`Error::QueueFull`] when no entry is free (submit first; nothing is
    /// flushed implicitly), [`Error::NotStarted`] / [`Error::Stopped`].
    ///
    /// # Safety
    ///
    /// Whatever the caller writes into the entry is submitted by the next
    /// [`submit`](Self::submit) / [`wait`](Self::wait). Every address in it
    /// (buffers, iovecs, paths, sockaddrs, timespecs, …) must point to
    /// memory that stays valid, and is not otherwise accessed in a way the
    /// operation forbids, until the operation's last CQE is reaped (for
    /// multishot operations: the CQE without `IORING_CQE_F_MORE`); memory
    /// the kernel only reads at submission must stay valid until the next
    /// submit returns. A half-written entry is submitted as it is.
    ///
    /// The `user_data` must not lie about the entry: a direct context whose
    /// flags carry `IOSQE_BUFFER_SELECT` must name the entry's real buffer
    /// group, and a token carrying a group must name the entry's (a buffer
    /// ring trusts them, see
    /// [`Cqe::buffer_selection`](crate::Cqe::buffer_selection); write the
    /// context with [`SqeContext::stamp`](crate::SqeContext::stamp)), a
    /// pooled context's slot must not be recorded for another entry, and no
    /// [`LayerData`](crate::LayerData) value may be used unless the caller
    /// is that layer. The typed pushes of `uring-ops` stamp and check all of
    /// this.
    #[inline]
    pub unsafe fn next_sqe(&mut self) -> Result<&mut Sqe> {
        // No state check here: the SQ is closed unless the ring is started,
        // so `next` fails and `push_error` says why.
        match self.sq.next() {
            Some(slot) => {
                let sqe = slot.cast::<Sqe>();
                // SAFETY: the slot is an SQE we own until the tail is
                // published; zeroing leaves no stale fields of an earlier
                // submission in it.
                unsafe {
                    sqe.write(Sqe::default());
                    Ok(&mut *sqe)
                }
            }
            None => Err(self.push_error()),
        }
    }

    /// The next free SQE together with its slot's [`Keep`], for memory the
    /// kernel reads when it consumes the entry (see [`Keep`]). The entry is
    /// **not** zeroed: the caller overwrites all 64 bytes (the prepare
    /// functions of `uring-ops` do). The `Keep` was cleared of anything an
    /// earlier use of the slot held.
    ///
    /// # Errors
    ///
    /// As for [`next_sqe`](Self::next_sqe).
    ///
    /// # Safety
    ///
    /// As for [`next_sqe`](Self::next_sqe). Addresses into the `Keep` stay
    /// valid until the kernel has consumed the entry, and no longer: put
    /// there only what the kernel reads while preparing the request.
    #[inline]
    pub unsafe fn next_sqe_keep(&mut self) -> Result<(&mut Sqe, &mut Keep)> {
        match self.sq.next_keep() {
            // SAFETY: the slot is a 64-byte SQE we own until the tail is
            // published; any bytes are a valid `Sqe`.
            Some((slot, index)) => Ok((unsafe { &mut *slot.cast::<Sqe>() }, self.sq.keep(index))),
            None => Err(self.push_error()),
        }
    }

    /// The next free 128-byte SQE, zeroed, on a ring created with
    /// [`Options::sqe128`](crate::Options::sqe128).
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`] on a 64-byte-SQE ring; otherwise as
    /// [`next_sqe`](Self::next_sqe).
    ///
    /// # Safety
    ///
    /// As for [`next_sqe`](Self::next_sqe).
    pub unsafe fn next_sqe128(&mut self) -> Result<&mut Sqe128> {
        self.core.check()?;
        if self.core.features.sqe_size() != 128 {
            return Err(Error::unsupported("128-byte SQE", Some("create the ring with Options::sqe128(true)")));
        }
        match self.sq.next() {
            Some(slot) => {
                let sqe = slot.cast::<Sqe128>();
                // SAFETY: on an SQE128 ring every slot is 128 bytes, ours
                // until the tail is published.
                unsafe {
                    sqe.write(Sqe128::default());
                    Ok(&mut *sqe)
                }
            }
            None => Err(self.push_error()),
        }
    }

    /// Copies `sqe` into the next free entry.
    ///
    /// # Errors
    ///
    /// As for [`next_sqe`](Self::next_sqe).
    ///
    /// # Safety
    ///
    /// As for [`next_sqe`](Self::next_sqe): the memory `sqe` names must stay
    /// valid until the operation's last CQE is reaped.
    #[inline]
    pub unsafe fn push(&mut self, sqe: &Sqe) -> Result<()> {
        if self.sq.push(sqe) { Ok(()) } else { Err(self.push_error()) }
    }

    /// Copies all of `sqes` into consecutive entries, or none of them when
    /// they do not all fit (a linked chain must not be split across a
    /// flush by a full queue).
    ///
    /// # Errors
    ///
    /// As for [`next_sqe`](Self::next_sqe).
    ///
    /// # Safety
    ///
    /// As for [`push`](Self::push), for every entry.
    pub unsafe fn push_all(&mut self, sqes: &[Sqe]) -> Result<()> {
        self.core.check()?;
        let n = u32::try_from(sqes.len()).unwrap_or(u32::MAX);
        if n > self.sq.entries {
            return Err(Error::InvalidArgument(format!(
                "{n} entries can never fit an SQ of {} at once",
                self.sq.entries
            )));
        }
        if !self.sq.has_room(n) {
            return Err(self.push_error());
        }
        for sqe in sqes {
            let pushed = self.sq.push(sqe);
            debug_assert!(pushed, "room was checked");
        }
        Ok(())
    }

    /// Why no entry could be acquired: the ring's state, or a full SQ.
    #[cold]
    fn push_error(&self) -> Error {
        match self.core.check() {
            Err(e) => e,
            Ok(()) => Error::QueueFull { entries: self.sq.entries },
        }
    }

    /// Reserves provided-buffer group `group` for the layer that owns it
    /// (a send ring, whose accounting holds only if its own requests are
    /// the only ones selecting from the group): from now on the typed push
    /// paths of `uring-ops` refuse any other entry that selects from it.
    /// Reserving only restricts; it cannot be undone from safe code.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when the group is reserved already.
    pub fn reserve_buffer_group(&mut self, group: u16) -> Result<()> {
        if self.reserved_groups.contains(&group) {
            return Err(Error::InvalidArgument(format!("buffer group {group} is reserved already")));
        }
        if self.named_groups.as_ref().is_some_and(|n| n[usize::from(group) / 64] & (1 << (group % 64)) != 0) {
            return Err(Error::InvalidArgument(format!(
                "buffer group {group} was named by a request queued on this ring before (it could still select from \
                 the group once it exists): reserve a group id no request named"
            )));
        }
        self.reserved_groups.push(group);
        Ok(())
    }

    /// Ends the reservation of `group`.
    ///
    /// # Safety
    ///
    /// Only the layer that reserved the group may call it, once no request
    /// it depends on is left that selects from the group (for example after
    /// unregistering it).
    #[doc(hidden)]
    pub unsafe fn unreserve_buffer_group(&mut self, group: u16) {
        self.reserved_groups.retain(|&g| g != group);
    }

    /// Claims buffer group id `group` for a provided-buffer ring about to
    /// be registered: each id serves one registration in the ring's life.
    /// A CQE names a buffer only by its id; a request that selected a
    /// buffer of an earlier registration under the same id (committed, its
    /// CQE still to come) would otherwise name, to the new registration,
    /// a buffer of the new one that the kernel owns. Claiming only
    /// restricts.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when the id was claimed before.
    pub fn claim_buffer_group(&mut self, group: u16) -> Result<()> {
        if self.claimed_groups.contains(&group) {
            return Err(Error::InvalidArgument(format!(
                "buffer group {group} was registered on this ring before: a group id serves one provided-buffer \
                 ring per io_uring ring (a late CQE of the old one would name a buffer of the new one); use another id"
            )));
        }
        self.claimed_groups.push(group);
        Ok(())
    }

    /// Gives back a claim that served no registration.
    ///
    /// # Safety
    ///
    /// Nothing was published to the kernel under the id since it was
    /// claimed (the registration failed), so no CQE can name one of its
    /// buffers.
    #[doc(hidden)]
    pub unsafe fn unclaim_buffer_group(&mut self, group: u16) {
        self.claimed_groups.retain(|&g| g != group);
    }

    /// Notes that an entry selecting from `group` was queued (the typed
    /// push paths call it), so that the group can no longer be reserved:
    /// that request could still select from it once it exists.
    #[inline]
    pub fn note_selected_group(&mut self, group: u16) {
        let n = self.named_groups.get_or_insert_with(|| Box::new([0; 1024]));
        n[usize::from(group) / 64] |= 1 << (group % 64);
    }

    /// Whether `group` is reserved by a layer ([`reserve_buffer_group`](Self::reserve_buffer_group)).
    #[inline]
    pub fn is_buffer_group_reserved(&self, group: u16) -> bool {
        !self.reserved_groups.is_empty() && self.reserved_groups.contains(&group)
    }

    /// Takes back the entry acquired last, not yet flushed, so that it is
    /// never submitted (the push paths use it when a prepared entry turns
    /// out to be refused).
    ///
    /// # Safety
    ///
    /// The caller acquired an entry since the last flush and has not
    /// handed out anything that depends on its being submitted.
    #[doc(hidden)]
    pub unsafe fn retract_last_sqe(&mut self) {
        self.sq.retract();
    }

    /// Free SQ entries.
    pub fn sq_space_left(&mut self) -> u32 {
        self.sq.space_left()
    }

    /// Entries written but not yet submitted.
    pub fn sq_pending(&self) -> u32 {
        self.sq.unpublished()
    }

    /// Completion slots ready to reap (without entering the kernel).
    pub fn cq_ready(&self) -> u32 {
        self.cq.ready()
    }

    /// CQEs the kernel dropped for lack of room (`cq_off.overflow`). Stays
    /// 0 on kernels with `IORING_FEAT_NODROP`, which buffer overflow
    /// instead; the library flushes that backlog when it reaps.
    pub fn cq_dropped(&self) -> u32 {
        self.cq.dropped()
    }

    /// Publishes the pending entries (one release store of the SQ tail) and
    /// submits them with one `io_uring_enter` (on SQPOLL rings: wakes the
    /// poller only if it sleeps). Returns how many the kernel consumed.
    #[inline]
    pub fn submit(&mut self) -> Result<u32> {
        self.core.check()?;
        let pending = self.sq.flush();
        if self.core.sqpoll {
            self.wake_sqpoll(pending)?;
            return Ok(pending);
        }
        if pending == 0 {
            return Ok(0);
        }
        self.core.enter(pending, 0, 0)
    }

    /// Submits and waits until at least `want` completions are ready.
    /// Returns how many entries the kernel consumed.
    #[inline]
    pub fn submit_and_wait(&mut self, want: u32) -> Result<u32> {
        self.core.check()?;
        let pending = self.sq.flush();
        if self.core.sqpoll {
            self.wake_sqpoll(pending)?;
            if want == 0 {
                return Ok(pending);
            }
            self.core.enter(0, want, sys::IORING_ENTER_GETEVENTS)?;
            return Ok(pending);
        }
        self.core.enter(pending, want, sys::IORING_ENTER_GETEVENTS)
    }

    #[inline]
    fn wake_sqpoll(&self, pending: u32) -> Result<()> {
        if pending > 0 && self.sq.needs_wakeup() {
            self.core.enter(0, 0, sys::IORING_ENTER_SQ_WAKEUP)?;
        }
        Ok(())
    }

    /// Submits what is pending and lets the kernel post what it owes
    /// (deferred task work, an overflow backlog), without blocking.
    #[inline]
    fn prepare_reap(&mut self) -> Result<()> {
        let pending = self.sq.flush();
        if self.core.sqpoll {
            self.wake_sqpoll(pending)?;
            if self.core.needs_getevents(&self.cq, self.cq.ready() == 0) {
                self.core.enter(0, 0, sys::IORING_ENTER_GETEVENTS)?;
            }
            return Ok(());
        }
        if pending > 0 || self.core.needs_getevents(&self.cq, self.cq.ready() == 0) {
            self.core.enter(pending, 0, sys::IORING_ENTER_GETEVENTS)?;
        }
        Ok(())
    }

    /// Flushes pending submissions, then copies ready completions into
    /// `out` (at most `out.len()`), without blocking.
    ///
    /// Makes no syscall when nothing is pending and completions are already
    /// visible. On deferred-task-work rings, an empty CQ costs one
    /// non-blocking `io_uring_enter` so the kernel can post what it owes;
    /// likewise when the kernel flags a CQ overflow backlog.
    ///
    /// The returned batch borrows the ring (its views resolve pooled
    /// contexts). To submit or return contexts while handling completions,
    /// keep only the count and read the slots directly:
    ///
    /// ```no_run
    /// # use uring_core::{CqeSlot, Ring, Options};
    /// # let mut ring = Ring::new(Options::small())?;
    /// let mut slots = [CqeSlot::EMPTY; 64];
    /// let n = ring.wait(&mut slots).map(|r| r.len()).or_else(|e| if e.is_would_block() { Ok(0) } else { Err(e) })?;
    /// for slot in &slots[..n] {
    ///     let cqe = slot.cqe();
    ///     if let Some(ext) = ring.pools().extended(cqe.context()) { /* ... */ }
    ///     let _ = ring.pools_mut().release(cqe.context());
    ///     // ... and push follow-up SQEs here
    /// }
    /// # Ok::<(), uring_core::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`] when no completion is observable;
    /// [`Error::Stopped`], [`Error::NotStarted`]; the enter's errno.
    #[inline]
    pub fn wait<'a>(&'a mut self, out: &'a mut [CqeSlot]) -> Result<Reaped<'a>> {
        self.core.check()?;
        if out.is_empty() {
            return Err(no_slots());
        }
        self.prepare_reap()?;
        self.reap(out)
    }

    /// Like [`wait`](Self::wait), but blocks until at least `min`
    /// completions are ready or `timeout` passes (`None`: no limit). A
    /// timeout with nothing ready is [`Error::WouldBlock`]; a signal is an
    /// `EINTR` [`Error::Io`]. Shorthand for [`wait_with`](Self::wait_with).
    #[inline]
    pub fn wait_for<'a>(
        &'a mut self,
        out: &'a mut [CqeSlot],
        min: u32,
        timeout: Option<Duration>,
    ) -> Result<Reaped<'a>> {
        self.wait_with(out, &WaitArgs { min, timeout, ..WaitArgs::default() })
    }

    /// The general blocking wait: flushes, then blocks as `args` says
    /// (at least `min` completions, an overall `timeout`, a `min_wait`
    /// after which fewer than `min` will do, without counting as iowait),
    /// then reaps into `out`.
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`] when the wait ended with nothing ready;
    /// [`Error::Unsupported`] for `min_wait` before 6.12 or `no_iowait`
    /// before 6.15; `EINTR` as [`Error::Io`].
    pub fn wait_with<'a>(&'a mut self, out: &'a mut [CqeSlot], args: &WaitArgs) -> Result<Reaped<'a>> {
        self.core.check()?;
        if out.is_empty() {
            return Err(no_slots());
        }
        let pending = self.sq.flush();
        if self.core.sqpoll {
            self.wake_sqpoll(pending)?;
        }
        let to_submit = if self.core.sqpoll { 0 } else { pending };
        let satisfied = self.cq.ready() >= args.min && !self.core.needs_getevents(&self.cq, false);
        if to_submit > 0 || !satisfied {
            self.core.enter_wait(to_submit, args)?;
        }
        self.reap(out)
    }

    #[inline]
    fn reap<'a>(&'a mut self, out: &'a mut [CqeSlot]) -> Result<Reaped<'a>> {
        let n = self.cq.reap_into(out);
        if n == 0 {
            return Err(Error::WouldBlock);
        }
        Ok(Reaped::new(&out[..n], Some(&self.pools)))
    }

    /// A zero-copy pass over the ready completions, in ring memory: each
    /// [`Cqe`] borrows its ring entry, and the entries go back to the
    /// kernel (one release store of the CQ head) when the pass is dropped.
    /// Flushes pending submissions first, as [`wait`](Self::wait) does.
    #[inline]
    pub fn completions(&mut self) -> Result<Completions<'_>> {
        self.core.check()?;
        self.prepare_reap()?;
        let (head, tail) = self.cq.window();
        Ok(Completions { ring: self, head, tail })
    }

    /// Resizes the SQ and CQ of a running ring
    /// (`IORING_REGISTER_RESIZE_RINGS`, since 6.13; the kernel allows it on
    /// deferred-task-work rings only). Pending SQEs are submitted first;
    /// ready CQEs are carried over by the kernel.
    pub fn resize(&mut self, sq_entries: u32, cq_entries: u32) -> Result<()> {
        self.core.check()?;
        if self.core.params.flags & sys::IORING_SETUP_NO_MMAP != 0 {
            return Err(Error::unsupported(
                "IORING_REGISTER_RESIZE_RINGS on a NO_MMAP ring",
                Some("this library resizes kernel-mapped rings only"),
            ));
        }
        if !self.core.defer {
            return Err(Error::unsupported(
                "IORING_REGISTER_RESIZE_RINGS without IORING_SETUP_DEFER_TASKRUN",
                Some("the kernel resizes deferred-task-work rings only"),
            ));
        }
        for (what, n) in [("sq_entries", sq_entries), ("cq_entries", cq_entries)] {
            if n == 0 || !n.is_power_of_two() {
                return Err(Error::InvalidArgument(format!("{what} must be a non-zero power of two, got {n}")));
            }
        }
        if cq_entries < sq_entries {
            return Err(Error::InvalidArgument(format!("cq_entries {cq_entries} < sq_entries {sq_entries}")));
        }
        if self.sq.flush() > 0 {
            self.core.enter(self.sq.flush(), 0, sys::IORING_ENTER_GETEVENTS)?;
        }
        let left = self.sq.flush();
        if left > 0 {
            // The kernel would copy these entries into the new ring and
            // read them later; their slots' `Keep`s are about to be
            // reallocated.
            return Err(Error::InvalidArgument(format!(
                "{left} SQ entries were not consumed by the kernel (a submission error stopped it); reap, then resize"
            )));
        }
        // Only CQSIZE/CLAMP may be passed; the kernel carries the entry
        // sizes and NO_SQARRAY over from the ring itself.
        let mut p =
            sys::io_uring_params { sq_entries, cq_entries, flags: sys::IORING_SETUP_CQSIZE, ..Default::default() };
        // SAFETY: RESIZE_RINGS reads and updates one io_uring_params; no
        // user memory is handed over (not NO_MMAP).
        unsafe {
            sys::io_uring_register(
                self.core.raw_fd,
                sys::IORING_REGISTER_RESIZE_RINGS,
                (&mut p as *mut sys::io_uring_params).cast(),
                1,
            )
        }
        .map_err(|e| Error::io("IORING_REGISTER_RESIZE_RINGS", e))?;
        p.flags = self.core.params.flags;
        p.features = self.core.params.features;
        let rings = Mapping::map_ring(self.core.raw_fd, rings_len(&p), sys::IORING_OFF_SQ_RING)
            .map_err(|e| Error::io("mmap (resized rings)", e))?;
        let sqes = Mapping::map_ring(self.core.raw_fd, sqes_len(&p), sys::IORING_OFF_SQES)
            .map_err(|e| Error::io("mmap (resized sqes)", e))?;
        // SAFETY: the new mappings are what `p` describes; the old ones are
        // dropped right after, when nothing points into them any more.
        unsafe {
            self.sq.rebind(&p, rings.ptr(), sqes.ptr());
            self.cq.rebind(&p, rings.ptr());
        }
        self.core.rings = rings;
        self.core.sqes = Some(sqes);
        self.core.params.sq_entries = p.sq_entries;
        self.core.params.cq_entries = p.cq_entries;
        self.core.params.sq_off = p.sq_off;
        self.core.params.cq_off = p.cq_off;
        self.core.features.set_entries(p.sq_entries, p.cq_entries);
        Ok(())
    }
}

impl Drop for Ring {
    /// Stops the ring (see [`stop`](Self::stop)) before any field drops:
    /// the SQ slots' `Keep`s hold memory the kernel reads while it consumes
    /// entries (on SQPOLL rings, on the poller thread), so they must
    /// outlive every entry the kernel may still consume.
    fn drop(&mut self) {
        self.stop();
    }
}

impl AsRawFd for Ring {
    /// The ring fd (-1 once stopped).
    fn as_raw_fd(&self) -> RawFd {
        if self.core.fd.is_some() { self.core.raw_fd } else { -1 }
    }
}

/// A zero-copy pass over ready completions; see [`Ring::completions`].
///
/// Not an `Iterator`: each [`Cqe`] borrows the pass, so none can outlive
/// the point where the entries go back to the kernel. This does not
/// compile:
///
/// ```compile_fail
/// # use uring_core::{Options, Ring};
/// # let mut ring = Ring::new(Options::small())?;
/// let cqe = {
///     let mut pass = ring.completions()?;
///     pass.next().unwrap() // borrows `pass`, which is dropped here
/// };
/// println!("{}", cqe.res());
/// # Ok::<(), uring_core::Error>(())
/// ```
///
/// and neither does keeping a view from [`Ring::wait`] across a submit:
///
/// ```compile_fail
/// # use uring_core::{CqeSlot, Options, Ring};
/// # let mut ring = Ring::new(Options::small())?;
/// let mut slots = [CqeSlot::EMPTY; 8];
/// let cqe = ring.wait(&mut slots)?.get(0).unwrap();
/// ring.submit()?; // the ring is still borrowed by `cqe`
/// println!("{}", cqe.res());
/// # Ok::<(), uring_core::Error>(())
/// ```
#[derive(Debug)]
pub struct Completions<'r> {
    ring: &'r mut Ring,
    head: u32,
    tail: u32,
}

impl Completions<'_> {
    /// The next completion, borrowed from ring memory.
    #[inline]
    #[allow(clippy::should_implement_trait)] // A lending iterator cannot be an Iterator.
    pub fn next(&mut self) -> Option<Cqe<'_>> {
        let (ptr, big, seq) = self.ring.cq.peek_at(&mut self.head, self.tail)?;
        Some(Cqe::new(ptr, big, Some(&self.ring.pools), self.ring.core.id, seq))
    }

    /// Calls `f` for every ready completion; returns how many there were.
    pub fn for_each(mut self, mut f: impl FnMut(Cqe<'_>)) -> usize {
        let mut n = 0;
        while let Some(c) = self.next() {
            f(c);
            n += 1;
        }
        n
    }
}

impl Drop for Completions<'_> {
    #[inline]
    fn drop(&mut self) {
        self.ring.cq.release_to(self.head);
    }
}
