//! `Core`: the parts both ring types share (the fd, the mappings, the
//! features, the state), and the private lifecycle behind them: setup
//! (with the `EINVAL` diagnosis), enable, entering the kernel, and stop
//! (SQPOLL drain, synchronous cancel, close). The public ring types are in
//! `ring.rs` ([`Ring`](crate::Ring)) and `shared.rs`.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;
use std::time::Duration;

use uring_sys as sys;

use crate::error::{Error, Result, setup_error};
use crate::features::{FeatureFlags, Features, probe_setup_flag, read_probe};
use crate::options::{Issuer, Options, SetupFlags, setup_flag_name};
use crate::queue::{Cq, Mapping, Sq};

/// What a blocking wait waits for; see [`Ring::wait_with`](crate::Ring::wait_with).
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
    /// The thread's signal mask during the wait, installed and restored
    /// by the kernel around it, as `ppoll(2)` does: a signal unblocked
    /// here (and blocked otherwise) interrupts the wait, which fails with
    /// [`Error::Io`] carrying `EINTR` after the handler ran.
    pub sigmask: Option<crate::SigMask>,
    /// Give up at this absolute time on the ring's clock
    /// (`IORING_ENTER_ABS_TIMER`, 6.12): the time `clock_gettime` reports
    /// for `CLOCK_MONOTONIC`, or for `CLOCK_BOOTTIME` once
    /// [`Registrar::clock`](crate::Registrar::clock) chose it. A deadline
    /// already past returns at once. Exclusive with `timeout`.
    pub deadline: Option<Duration>,
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
    /// Process-unique identity (see [`Ring::id`](crate::Ring::id)).
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
    /// The thread ([`this_thread`]) whose registered-ring table holds
    /// `enter_fd` while `enter_flags` is set: the index means this ring in
    /// that thread only (in another, it names that thread's ring of the
    /// same index, or nothing).
    pub(crate) registrant: u64,
    pub(crate) register_ring_fd: bool,
    /// `MADV_DONTFORK` on the ring mappings (see [`Options::dontfork`]).
    pub(crate) dontfork: bool,
    /// The thread that started a `SINGLE_ISSUER` ring: the only one the
    /// kernel lets submit or register from then on.
    pub(crate) issuer: Option<std::thread::ThreadId>,
    pub(crate) sqpoll: bool,
    pub(crate) defer: bool,
    /// `IORING_SETUP_IOPOLL`: completions are found only by polling, in
    /// `io_uring_enter` with `IORING_ENTER_GETEVENTS`.
    pub(crate) iopoll: bool,
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
        // With NO_MMAP: the rings' memory and the SQE array's, in two
        // library mappings or at two offsets of the caller's one.
        let user_mem = if no_mmap {
            let probe = probe_geometry(entries, &params, &requested)?;
            let mem = match &opts.no_mmap_memory {
                None => {
                    let rings = Mapping::anonymous(rings_len(&probe), false)
                        .map_err(|e| Error::io("mmap (NO_MMAP rings)", e))?;
                    let sqes =
                        Mapping::anonymous(sqes_len(&probe), false).map_err(|e| Error::io("mmap (NO_MMAP sqes)", e))?;
                    params.cq_off.user_addr = rings.ptr() as u64;
                    params.sq_off.user_addr = sqes.ptr() as u64;
                    let at = sqes.ptr();
                    (rings, Some(sqes), at)
                }
                Some(slot) => {
                    let mem =
                        slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take().ok_or_else(|| {
                            Error::InvalidArgument(
                                "Options::no_mmap_memory: the memory went to an earlier ring made from these options"
                                    .into(),
                            )
                        })?;
                    let sqes_at = rings_len(&probe).next_multiple_of(Mapping::page_size());
                    let need = sqes_at + sqes_len(&probe);
                    if !mem.is_private_anonymous() {
                        return Err(Error::InvalidArgument(
                            "Options::no_mmap_memory: the memory must be a private anonymous Mapping".into(),
                        ));
                    }
                    if mem.len() < need {
                        return Err(Error::InvalidArgument(format!(
                            "Options::no_mmap_memory: {} bytes, the ring needs {need}",
                            mem.len()
                        )));
                    }
                    // SAFETY: the mapping is ours alone (moved out of the
                    // options), private, and `len` bytes long: no stale
                    // ring indices survive into the new ring.
                    unsafe { ptr::write_bytes(mem.ptr(), 0, mem.len()) };
                    params.cq_off.user_addr = mem.ptr() as u64;
                    // SAFETY: `sqes_at + sqes_len <= len`.
                    let at = unsafe { mem.ptr().add(sqes_at) };
                    params.sq_off.user_addr = at as u64;
                    (mem, None, at)
                }
            };
            Some(mem)
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

        let (rings, sqes, sqes_ptr) = match user_mem {
            Some(mem) => mem,
            None => {
                let rings = Mapping::map_ring(fd.as_raw_fd(), rings_len(&params), sys::IORING_OFF_SQ_RING)
                    .map_err(|e| Error::io("mmap (IORING_OFF_SQ_RING)", e))?;
                let sqes = Mapping::map_ring(fd.as_raw_fd(), sqes_len(&params), sys::IORING_OFF_SQES)
                    .map_err(|e| Error::io("mmap (IORING_OFF_SQES)", e))?;
                let at = sqes.ptr();
                (rings, Some(sqes), at)
            }
        };
        if opts.dontfork {
            dont_fork(&rings, sqes.as_ref())?;
        }
        let (last_op, probe) = read_probe(fd.as_raw_fd())?;
        // SAFETY: both regions are the live memory `params` describes.
        Ok(unsafe {
            Core::assemble(fd, params, rings, sqes, sqes_ptr, (last_op, probe), opts.register_ring_fd, opts.dontfork)
        })
    }

    /// The `Core` and queues of a ring whose memory is mapped: what
    /// [`setup`](Self::setup) and [`adopt`](Self::adopt) end with.
    ///
    /// # Safety
    ///
    /// `rings` and the SQE array at `sqes_ptr` (inside `sqes`, or in
    /// `rings` for `NO_MMAP` rings) are the live memory `params` describes
    /// for the ring `fd`; they move into the returned `Core`, next to the
    /// queues that point into them.
    #[allow(clippy::too_many_arguments)] // One private constructor's parts.
    unsafe fn assemble(
        fd: OwnedFd,
        params: sys::io_uring_params,
        rings: Mapping,
        sqes: Option<Mapping>,
        sqes_ptr: *mut u8,
        (last_op, probe): (u8, Vec<sys::io_uring_probe_op>),
        register_ring_fd: bool,
        dontfork: bool,
    ) -> (Core, Sq, Cq) {
        // SAFETY: forwarded to the caller.
        let (sq, mut cq) = unsafe { (Sq::new(&params, rings.ptr(), sqes_ptr), Cq::new(&params, rings.ptr())) };
        let id = NEXT_RING_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        cq.ring_id = id;
        let features = Features::new(&params, &probe, last_op);
        let raw_fd = fd.as_raw_fd();
        let flags = params.flags;
        let core = Core {
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
            registrant: 0,
            register_ring_fd,
            dontfork,
            issuer: None,
            sqpoll: flags & sys::IORING_SETUP_SQPOLL != 0,
            defer: flags & sys::IORING_SETUP_DEFER_TASKRUN != 0,
            iopoll: flags & sys::IORING_SETUP_IOPOLL != 0,
            attached: Vec::new(),
        };
        (core, sq, cq)
    }

    /// A ring set up elsewhere: maps its memory as `setup` does and checks
    /// what can be checked (an io_uring fd, not `NO_MMAP`, the masks and
    /// entry counts in its memory match `params`, both queues empty).
    ///
    /// # Safety
    ///
    /// See [`Ring::from_raw_fd`](crate::Ring::from_raw_fd).
    pub(crate) unsafe fn adopt(fd: OwnedFd, params: sys::io_uring_params) -> Result<(Core, Sq, Cq)> {
        let bad = |m: &str| Err(Error::InvalidArgument(format!("Ring::from_raw_fd: {m}")));
        if params.flags & sys::IORING_SETUP_NO_MMAP != 0 {
            return bad("a NO_MMAP ring lives in its creator's memory; it cannot be adopted");
        }
        if params.flags & sys::IORING_SETUP_SQ_REWIND != 0 {
            return bad("IORING_SETUP_SQ_REWIND rings are not supported (see Options::extra_flags)");
        }
        let pow2 = |n: u32| n != 0 && n.is_power_of_two();
        if !pow2(params.sq_entries) || !pow2(params.cq_entries) {
            return bad("the entry counts in params are not powers of two");
        }
        // An io_uring fd answers the probe; any other file does not.
        let (last_op, probe) = read_probe(fd.as_raw_fd())?;
        let rings = Mapping::map_ring(fd.as_raw_fd(), rings_len(&params), sys::IORING_OFF_SQ_RING)
            .map_err(|e| Error::io("mmap (IORING_OFF_SQ_RING)", e))?;
        let sqes = Mapping::map_ring(fd.as_raw_fd(), sqes_len(&params), sys::IORING_OFF_SQES)
            .map_err(|e| Error::io("mmap (IORING_OFF_SQES)", e))?;
        let u32_at = |off: u32| -> Option<u32> {
            let off = off as usize;
            if !off.is_multiple_of(4) || off + 4 > rings.len() {
                return None;
            }
            // SAFETY: an aligned u32 inside the live rings mapping (checked
            // just above); the kernel writes it only atomically.
            Some(unsafe {
                (*rings.ptr().add(off).cast::<std::sync::atomic::AtomicU32>())
                    .load(std::sync::atomic::Ordering::Acquire)
            })
        };
        let (so, co) = (&params.sq_off, &params.cq_off);
        let geometry = (u32_at(so.ring_mask), u32_at(so.ring_entries), u32_at(co.ring_mask), u32_at(co.ring_entries));
        if geometry
            != (
                Some(params.sq_entries - 1),
                Some(params.sq_entries),
                Some(params.cq_entries - 1),
                Some(params.cq_entries),
            )
        {
            return bad("params do not describe this ring (masks and entry counts differ)");
        }
        let queues = (u32_at(so.head), u32_at(so.tail), u32_at(co.head), u32_at(co.tail));
        match queues {
            (Some(sh), Some(st), Some(ch), Some(ct)) if sh == st && ch == ct => {}
            _ => return bad("the ring has unconsumed submissions or unreaped completions"),
        }
        if u32_at(so.flags).is_none_or(|f| f & sys::IORING_SQ_CQ_OVERFLOW != 0) {
            return bad("the ring has an overflow backlog of completions");
        }
        let sqes_ptr = sqes.ptr();
        // SAFETY: both regions are the live memory `params` describes (the
        // caller's promise, and the masks just checked).
        Ok(unsafe { Core::assemble(fd, params, rings, Some(sqes), sqes_ptr, (last_op, probe), false, false) })
    }

    /// Bytes of ring memory (rings and SQEs, each rounded up to whole
    /// pages) a ring created from `opts` uses; see
    /// [`Options::memory_size`](crate::Options::memory_size).
    pub(crate) fn memory_size(opts: &Options) -> Result<usize> {
        let (entries, params) = opts.to_params(Issuer::Single)?;
        let p = probe_geometry(entries, &params, &params)?;
        let page = Mapping::page_size();
        let round = |n: usize| n.max(1).next_multiple_of(page);
        Ok(round(rings_len(&p)) + round(sqes_len(&p)))
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
        let (fd, via) = self.enter_target();
        // SAFETY: `fd` is this ring (its fd, or its registered index in
        // the thread that registered it, with the matching flag); every SQE
        // it may consume was pushed through an `unsafe` push whose caller
        // vouched for the memory it names; no signal mask or extended
        // argument is passed.
        let r = unsafe { sys::io_uring_enter(fd, to_submit, min_complete, flags | via, ptr::null()) };
        r.map_err(|e| self.failed("io_uring_enter", e))
    }

    /// A blocking `io_uring_enter` shaped by `args`: plain when there is
    /// neither a timeout nor a minimum wait, else with an extended argument.
    /// `ETIME` (the timeout passed) is not an error here.
    pub(crate) fn enter_wait(&self, to_submit: u32, args: &WaitArgs) -> Result<u32> {
        let (fd, via) = self.enter_target();
        let mut flags = sys::IORING_ENTER_GETEVENTS | via;
        if args.no_iowait {
            if !self.features.has(FeatureFlags::NO_IOWAIT) {
                return Err(Error::unsupported("IORING_ENTER_NO_IOWAIT", Some("needs Linux 6.15")));
            }
            flags |= sys::IORING_ENTER_NO_IOWAIT;
        }
        if args.deadline.is_some() {
            if args.timeout.is_some() {
                return Err(Error::InvalidArgument("a wait takes a timeout or a deadline, not both".into()));
            }
            flags |= sys::IORING_ENTER_ABS_TIMER;
        }
        let plain =
            args.timeout.is_none() && args.min_wait.is_none() && args.sigmask.is_none() && args.deadline.is_none();
        let r = if plain {
            // SAFETY: as in `enter`.
            unsafe { sys::io_uring_enter(fd, to_submit, args.min, flags, ptr::null()) }
        } else {
            let ts = args.timeout.or(args.deadline).map(|t| sys::__kernel_timespec {
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
                sigmask: args.sigmask.as_ref().map_or(0, |m| m.as_raw() as *const libc::sigset_t as u64),
                sigmask_sz: if args.sigmask.is_some() { crate::sigmask::KERNEL_SIGSET_BYTES } else { 0 },
            };
            // SAFETY: as in `enter`; `arg` and the timespec and signal set
            // it may point to live on this stack frame (in `args`) for the
            // duration of the call, and EXT_ARG tells the kernel to read
            // exactly that structure.
            unsafe {
                sys::io_uring_enter2(
                    fd,
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
    /// backlog only flushes when we ask, polled completions are posted
    /// only when we poll, and `IORING_SQ_TASKRUN` says task work is
    /// pending.
    #[inline]
    pub(crate) fn needs_getevents(&self, cq: &Cq, cq_empty: bool) -> bool {
        let kflags = cq.sq_flags();
        // An IOPOLL ring posts a completion only when polled: an empty CQ
        // is polled once (GETEVENTS with no minimum does not spin).
        kflags & sys::IORING_SQ_CQ_OVERFLOW != 0
            || (cq_empty && (self.defer || self.iopoll || kflags & sys::IORING_SQ_TASKRUN != 0))
    }

    pub(crate) fn start(&mut self) -> Result<()> {
        match self.state {
            State::Started => return Err(Error::AlreadyStarted),
            State::Stopped => return Err(Error::Stopped),
            State::Created => {}
        }
        // A ring set up without R_DISABLED (adopted) is enabled already.
        if self.params.flags & sys::IORING_SETUP_R_DISABLED != 0 {
            // SAFETY: ENABLE_RINGS takes no argument.
            unsafe { sys::io_uring_register(self.raw_fd, sys::IORING_REGISTER_ENABLE_RINGS, ptr::null(), 0) }
                .map_err(|e| Error::io("IORING_REGISTER_ENABLE_RINGS", e))?;
        }
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
            if self.registrant != this_thread() {
                return Err(Error::InvalidArgument(
                    "the ring fd is registered in another thread's table (IORING_REGISTER_RING_FDS is per thread); \
                     this thread enters through the fd"
                        .into(),
                ));
            }
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
        self.registrant = this_thread();
        Ok(upd.offset)
    }

    /// The fd and flag an `io_uring_enter` of this thread takes: the
    /// registered index only in the thread that registered it (in another
    /// thread the same index names that thread's ring, or nothing), else
    /// the fd.
    #[inline(always)]
    pub(crate) fn enter_target(&self) -> (i32, u32) {
        if self.enter_flags == 0 { (self.enter_fd, 0) } else { self.registered_target() }
    }

    /// [`enter_target`](Self::enter_target) for a registered ring, out of
    /// line: the thread-local lookup stays off an unregistered ring's path.
    #[cold]
    #[inline(never)]
    fn registered_target(&self) -> (i32, u32) {
        if self.registrant == this_thread() { (self.enter_fd, self.enter_flags) } else { (self.raw_fd, 0) }
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
        // A registration in another thread's table cannot be removed from
        // here (the same index in this thread's table is another ring's, or
        // nothing): it keeps the kernel's ring alive until that thread
        // exits, with whatever entries were published and not consumed.
        let mut registered_elsewhere = false;
        if self.enter_flags != 0 && self.registrant != this_thread() {
            registered_elsewhere = true;
        } else if self.enter_flags != 0 {
            let upd = sys::io_uring_rsrc_update { offset: self.enter_fd as u32, ..Default::default() };
            // SAFETY: UNREGISTER_RING_FDS reads one io_uring_rsrc_update.
            // Best effort: the registering thread's own index.
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
                if !drained || (registered_elsewhere && sq.unconsumed() > 0) {
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
            keep_for_ever(Box::new(attached));
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

/// Memory the kernel may use until the process exits (attached memory and
/// `Keep`s a stop could not prove idle): never dropped, but reachable
/// from this static, so a leak checker does not report it as lost.
static FOR_EVER: std::sync::Mutex<Vec<Box<dyn std::any::Any + Send>>> = std::sync::Mutex::new(Vec::new());

/// Keeps `memory` until the process exits: a leak on purpose, for memory
/// the kernel may still use and that nothing can wait for (what a stop
/// could not prove idle; a layer's buffers under a zero-copy send whose
/// notification will never be reaped). Never dropped, but reachable from a
/// static, so a leak checker does not report it as lost.
pub fn keep_for_ever(memory: Box<dyn std::any::Any + Send>) {
    FOR_EVER.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(memory);
}

/// A number for the calling thread, never given to another thread of the
/// process (unlike a thread-local's address or a tid, which an exited
/// thread's successor may get).
#[inline]
pub(crate) fn this_thread() -> u64 {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static ID: Cell<u64> = const { Cell::new(0) };
    }
    ID.with(|id| match id.get() {
        0 => {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            id.set(n);
            n
        }
        n => n,
    })
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

/// The geometry (entry counts and offsets) the kernel gives a ring set up
/// with `params`: a throwaway ring of the same shape without `NO_MMAP`
/// (whose memory must exist before the setup call, sized by offsets only
/// the kernel knows) and without `R_DISABLED`.
fn probe_geometry(
    entries: u32,
    params: &sys::io_uring_params,
    requested: &sys::io_uring_params,
) -> Result<sys::io_uring_params> {
    let mut probe = *params;
    probe.flags &= !(sys::IORING_SETUP_NO_MMAP | sys::IORING_SETUP_R_DISABLED);
    probe.cq_off.user_addr = 0;
    probe.sq_off.user_addr = 0;
    // SAFETY: `probe` is valid and hands the kernel no memory of ours.
    let fd = unsafe { sys::io_uring_setup(entries, &mut probe) };
    let fd = fd.map_err(|e| diagnose(e, entries, requested))?;
    // SAFETY: the kernel just returned this fd; we own it.
    drop(unsafe { OwnedFd::from_raw_fd(fd) });
    Ok(probe)
}

/// `MADV_DONTFORK` on the ring mappings.
pub(crate) fn dont_fork(rings: &Mapping, sqes: Option<&Mapping>) -> Result<()> {
    rings.dont_fork().map_err(|e| Error::io("madvise (MADV_DONTFORK rings)", e))?;
    if let Some(sqes) = sqes {
        sqes.dont_fork().map_err(|e| Error::io("madvise (MADV_DONTFORK sqes)", e))?;
    }
    Ok(())
}

pub(crate) fn rings_len(p: &sys::io_uring_params) -> usize {
    let cqe = if p.flags & sys::IORING_SETUP_CQE32 != 0 { 32 } else { 16 };
    let mut len = p.cq_off.cqes as usize + p.cq_entries as usize * cqe;
    if p.flags & sys::IORING_SETUP_NO_SQARRAY == 0 {
        len = len.max(p.sq_off.array as usize + p.sq_entries as usize * 4);
    }
    len
}

pub(crate) fn sqes_len(p: &sys::io_uring_params) -> usize {
    let sqe = if p.flags & sys::IORING_SETUP_SQE128 != 0 { 128 } else { 64 };
    p.sq_entries as usize * sqe
}

/// `IORING_CQ_EVENTFD_DISABLED` cleared (`enabled`) or set in the CQ
/// flags word; see [`Ring::set_eventfd_enabled`](crate::Ring::set_eventfd_enabled).
pub(crate) fn set_eventfd_enabled(cq: &Cq, enabled: bool) -> Result<()> {
    let Some(flags) = cq.cq_flags() else {
        return Err(Error::unsupported("IORING_CQ_EVENTFD_DISABLED", Some("needs Linux 5.8 (cq_off.flags)")));
    };
    // Relaxed: the kernel reads the word with READ_ONCE whenever it would
    // signal; no other memory is published with it. An atomic
    // read-modify-write keeps whatever other bits the word holds.
    if enabled {
        flags.fetch_and(!sys::IORING_CQ_EVENTFD_DISABLED, std::sync::atomic::Ordering::Relaxed);
    } else {
        flags.fetch_or(sys::IORING_CQ_EVENTFD_DISABLED, std::sync::atomic::Ordering::Relaxed);
    }
    Ok(())
}

/// Whether `IORING_CQ_EVENTFD_DISABLED` is clear (true without the word).
pub(crate) fn eventfd_enabled(cq: &Cq) -> bool {
    cq.cq_flags().is_none_or(|f| f.load(std::sync::atomic::Ordering::Relaxed) & sys::IORING_CQ_EVENTFD_DISABLED == 0)
}

#[cold]
pub(crate) fn no_slots() -> Error {
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
