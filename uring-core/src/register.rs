//! The register calls that concern the ring itself: [`Registrar`].
//!
//! Buffers and provided-buffer rings belong to `uring-buffers`, zero-copy
//! receive queues to `uring-zcrx`; this module covers eventfds, the file
//! table, restrictions, io-wq tuning, personalities, the wait clock and
//! NAPI busy polling (its tracking strategies and static ids are in the
//! `napi` module). Enabling is [`Ring::start`](crate::Ring::start),
//! registering the ring fd [`Ring::register_ring_fd`](crate::Ring::register_ring_fd),
//! resizing [`Ring::resize`](crate::Ring::resize), and the probe is read
//! once into [`Features`](crate::Features) (and again by [`Registrar::probe`]).
//!
//! Every call here hands the kernel only data it copies during the call,
//! or file descriptors it takes its own references to, so all are safe.

use std::ffi::c_void;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::ptr;

use uring_sys as sys;

use crate::core::{Core, State};
use crate::error::{Error, Result};
use crate::features::read_probe;
use crate::sqe::SqeFlags;

/// One rule for [`Registrar::restrictions`]. Build with the constructors;
/// the kernel accepts restrictions only while the ring is disabled (between
/// `new` and `start`).
#[derive(Clone, Copy)]
#[repr(transparent)]
pub struct Restriction(sys::io_uring_restriction);

impl std::fmt::Debug for Restriction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Restriction").field("opcode", &self.0.opcode).field("arg", &self.0.sqe_op()).finish()
    }
}

impl Restriction {
    fn new(kind: u32, set: impl FnOnce(&mut sys::io_uring_restriction)) -> Self {
        // SAFETY: io_uring_restriction is plain integers; all zeroes is valid
        // and leaves every reserved field zero.
        let mut r: sys::io_uring_restriction = unsafe { std::mem::zeroed() };
        r.opcode = kind as u16;
        set(&mut r);
        Restriction(r)
    }
    /// Allow register opcode `op` (`IORING_RESTRICTION_REGISTER_OP`).
    pub fn register_op(op: u32) -> Self {
        Self::new(sys::IORING_RESTRICTION_REGISTER_OP, |r| r.set_register_op(op as u8))
    }
    /// Allow SQE opcode `op` (`IORING_RESTRICTION_SQE_OP`).
    pub fn sqe_op(op: u8) -> Self {
        Self::new(sys::IORING_RESTRICTION_SQE_OP, |r| r.set_sqe_op(op))
    }
    /// Allow these SQE flags (`IORING_RESTRICTION_SQE_FLAGS_ALLOWED`).
    pub fn sqe_flags_allowed(flags: SqeFlags) -> Self {
        Self::new(sys::IORING_RESTRICTION_SQE_FLAGS_ALLOWED, |r| r.set_sqe_flags(flags.bits()))
    }
    /// Require these SQE flags on every SQE (`IORING_RESTRICTION_SQE_FLAGS_REQUIRED`).
    pub fn sqe_flags_required(flags: SqeFlags) -> Self {
        Self::new(sys::IORING_RESTRICTION_SQE_FLAGS_REQUIRED, |r| r.set_sqe_flags(flags.bits()))
    }
}

/// Whether the kernel would post `tag` as a layer's `user_data`: any value
/// with mode bits `3` ([`LayerData`](crate::LayerData), whether or not it
/// names a [`Layer`](crate::Layer) known today). A layer relies on such a
/// value to release memory or hand over a descriptor, so no safe call may
/// make the kernel post one: the push paths refuse every layer value, and
/// so do the resource tags of [`Registrar::files_tagged`].
#[inline]
pub const fn is_layer_tag(tag: u64) -> bool {
    crate::SqeContext::from_raw(tag).is_none()
}

/// Refuses resource tags the kernel would post as a layer's `user_data`.
fn check_tags(fds: &[RawFd], tags: &[u64]) -> Result<()> {
    if fds.len() != tags.len() {
        return Err(Error::InvalidArgument(format!("{} fds but {} tags", fds.len(), tags.len())));
    }
    for &t in tags {
        if is_layer_tag(t) {
            return Err(Error::InvalidArgument(format!(
                "resource tag {t:#x} is a layer value (mode bits 3): the kernel posts a tag as a CQE's user_data, \
                 which a layer would take for its own"
            )));
        }
    }
    Ok(())
}

/// What [`Registrar::sync_cancel`] cancels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelTarget {
    /// The request(s) whose `user_data` is this.
    UserData(u64),
    /// Requests on this file descriptor.
    Fd(RawFd),
    /// Requests on this fixed-file slot.
    FixedFd(u32),
    /// Requests with this opcode.
    Op(u8),
    /// Every request.
    Any,
}

/// A resource-tag CQE ([`Registrar::files_tagged`]): the kernel has let go
/// of the file or buffer registered with this tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ResourceTag(pub u64);

impl ResourceTag {
    /// The tag `cqe` posts, if it has a tag CQE's shape: a non-zero
    /// `user_data`, `res` 0, no flags. A request's CQE can have the same
    /// shape (a NOP's, say): keep tags apart from the `user_data` of
    /// requests, as with any routing.
    pub fn of(cqe: &crate::Cqe<'_>) -> Option<Self> {
        (cqe.user_data() != 0 && cqe.res() == 0 && cqe.raw_flags() == 0).then_some(ResourceTag(cqe.user_data()))
    }
}

/// NAPI busy-poll settings (`IORING_REGISTER_NAPI`, since Linux 6.9):
/// the busy-poll time and the prefer flag. With a tracking strategy (6.13)
/// they go to [`Registrar::register_napi`] and come back in a
/// [`NapiSettings`](crate::NapiSettings).
#[doc(alias = "io_uring_napi")]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Napi {
    /// Busy-poll timeout in microseconds.
    pub busy_poll_usec: u32,
    /// Prefer busy polling over interrupts.
    pub prefer_busy_poll: bool,
}

/// The register calls of one ring, from [`Ring::register`](crate::Ring::register)
/// or [`SharedRing::register`](crate::SharedRing::register).
///
/// Every call fails with [`Error::Stopped`] on a stopped ring and names its
/// register opcode in [`Error::Io`] when the kernel refuses.
#[derive(Debug, Clone, Copy)]
pub struct Registrar<'r> {
    core: &'r Core,
}

impl<'r> Registrar<'r> {
    pub(crate) fn new(core: &'r Core) -> Self {
        Registrar { core }
    }

    pub(crate) fn core(&self) -> &'r Core {
        self.core
    }

    pub(crate) fn call(&self, name: &'static str, op: u32, arg: *const c_void, nr: u32) -> Result<u32> {
        if self.core.state == State::Stopped {
            return Err(Error::Stopped);
        }
        // SAFETY: each caller passes `arg`/`nr` in the shape `op` expects,
        // pointing to memory that outlives this call; none of these opcodes
        // keeps a pointer to caller memory past the call.
        unsafe { sys::io_uring_register(self.core.raw_fd, op, arg, nr) }.map_err(|e| self.core.failed(name, e))
    }

    /// Any register call, for the layers above (buffers, zero-copy receive)
    /// whose argument layouts this crate does not know. The ring's state
    /// is checked and the errno is mapped as for every call here.
    ///
    /// # Errors
    ///
    /// [`Error::Stopped`]; [`Error::Io`] naming `name` with the errno.
    ///
    /// # Safety
    ///
    /// `arg` and `nr` must have the shape the kernel expects for `op`, and
    /// point to memory valid for the call. If `op` hands the kernel memory
    /// it keeps using after the call (a buffer ring, registered buffers, a
    /// zero-copy receive area), that memory must stay valid, mapped and
    /// not otherwise aliased as the kernel requires until it is
    /// unregistered or the ring is closed.
    pub unsafe fn raw(&self, name: &'static str, op: u32, arg: *const c_void, nr: u32) -> Result<u32> {
        self.call(name, op, arg, nr)
    }

    /// Reads the opcode probe again (`IORING_REGISTER_PROBE`):
    /// `(last_op, supported opcodes)`.
    pub fn probe(&self) -> Result<(u8, Vec<u8>)> {
        if self.core.state == State::Stopped {
            return Err(Error::Stopped);
        }
        let (last, ops) = read_probe(self.core.raw_fd).map_err(|e| match e {
            Error::Io { call, source } => self.core.failed(call, source),
            e => e,
        })?;
        Ok((last, ops.iter().filter(|o| u32::from(o.flags) & sys::IO_URING_OP_SUPPORTED != 0).map(|o| o.op).collect()))
    }

    /// Signal `eventfd` for every posted CQE (`IORING_REGISTER_EVENTFD`).
    pub fn eventfd(&self, eventfd: BorrowedFd<'_>) -> Result<()> {
        let fd: i32 = eventfd.as_raw_fd();
        self.call("IORING_REGISTER_EVENTFD", sys::IORING_REGISTER_EVENTFD, (&fd as *const i32).cast(), 1).map(drop)
    }

    /// Signal `eventfd` only for completions that finished asynchronously
    /// (`IORING_REGISTER_EVENTFD_ASYNC`).
    pub fn eventfd_async(&self, eventfd: BorrowedFd<'_>) -> Result<()> {
        let fd: i32 = eventfd.as_raw_fd();
        self.call("IORING_REGISTER_EVENTFD_ASYNC", sys::IORING_REGISTER_EVENTFD_ASYNC, (&fd as *const i32).cast(), 1)
            .map(drop)
    }

    /// Removes the registered eventfd (`IORING_UNREGISTER_EVENTFD`).
    pub fn unregister_eventfd(&self) -> Result<()> {
        self.call("IORING_UNREGISTER_EVENTFD", sys::IORING_UNREGISTER_EVENTFD, ptr::null(), 0).map(drop)
    }

    /// Registers a dense file table (`IORING_REGISTER_FILES2`): slot `i`
    /// holds `fds[i]`; `-1` leaves a slot empty. The kernel takes its own
    /// references, so the fds may be closed afterwards.
    pub fn files(&self, fds: &[RawFd]) -> Result<()> {
        let nr = u32::try_from(fds.len()).map_err(|_| Error::InvalidArgument("too many files".into()))?;
        if nr == 0 {
            return Err(Error::InvalidArgument("an empty file table; use files_sparse for empty slots".into()));
        }
        self.files2(sys::io_uring_rsrc_register { nr, data: fds.as_ptr() as u64, ..Default::default() })
    }

    /// `IORING_REGISTER_FILES2` with `reg` (whose `data`, if any, points to
    /// fds that outlive the call).
    fn files2(&self, reg: sys::io_uring_rsrc_register) -> Result<()> {
        self.call(
            "IORING_REGISTER_FILES2",
            sys::IORING_REGISTER_FILES2,
            (&reg as *const sys::io_uring_rsrc_register).cast(),
            size_of::<sys::io_uring_rsrc_register>() as u32,
        )
        .map(drop)
    }

    /// As [`files`](Self::files), with a resource tag per slot
    /// (`IORING_REGISTER_FILES2` with `tags`; 0 for none, and 0 for an
    /// empty slot). When a tagged file leaves the table (replaced by
    /// [`files_update`](Self::files_update), emptied, or the table
    /// unregistered) and the last request using it has completed, the
    /// kernel posts one CQE with `user_data` = the tag, `res` 0 and no
    /// flags; [`ResourceTag::of`] recognizes it.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when the lengths differ or a tag is
    /// a layer value ([`is_layer_tag`]);
    /// `EINVAL` from the kernel for a tag on an empty slot.
    pub fn files_tagged(&self, fds: &[RawFd], tags: &[u64]) -> Result<()> {
        check_tags(fds, tags)?;
        let nr = u32::try_from(fds.len()).map_err(|_| Error::InvalidArgument("too many files".into()))?;
        if nr == 0 {
            return Err(Error::InvalidArgument("an empty file table; use files_sparse for empty slots".into()));
        }
        self.files2(sys::io_uring_rsrc_register {
            nr,
            data: fds.as_ptr() as u64,
            tags: tags.as_ptr() as u64,
            ..Default::default()
        })
    }

    /// As [`files_update`](Self::files_update), tagging each new file
    /// (`IORING_REGISTER_FILES_UPDATE2` with `tags`). The files replaced
    /// post their own tags (if any) once released.
    ///
    /// # Errors
    ///
    /// As for [`files_tagged`](Self::files_tagged).
    pub fn files_update_tagged(&self, offset: u32, fds: &[RawFd], tags: &[u64]) -> Result<u32> {
        check_tags(fds, tags)?;
        let nr = u32::try_from(fds.len()).map_err(|_| Error::InvalidArgument("too many files".into()))?;
        let upd = sys::io_uring_rsrc_update2 {
            offset,
            data: fds.as_ptr() as u64,
            tags: tags.as_ptr() as u64,
            nr,
            ..Default::default()
        };
        self.call(
            "IORING_REGISTER_FILES_UPDATE2",
            sys::IORING_REGISTER_FILES_UPDATE2,
            (&upd as *const sys::io_uring_rsrc_update2).cast(),
            size_of::<sys::io_uring_rsrc_update2>() as u32,
        )
    }

    /// Registers a table of `n` empty slots (`IORING_RSRC_REGISTER_SPARSE`),
    /// to fill with [`files_update`](Self::files_update) or direct
    /// descriptors.
    pub fn files_sparse(&self, n: u32) -> Result<()> {
        if n == 0 {
            return Err(Error::InvalidArgument("a sparse file table needs at least one slot".into()));
        }
        self.files2(sys::io_uring_rsrc_register {
            nr: n,
            flags: sys::IORING_RSRC_REGISTER_SPARSE,
            ..Default::default()
        })
    }

    /// Replaces slots `offset..offset + fds.len()` (`IORING_REGISTER_FILES_UPDATE2`);
    /// `-1` empties a slot, `IORING_REGISTER_FILES_SKIP` (-2) leaves it.
    /// Returns how many slots were updated.
    pub fn files_update(&self, offset: u32, fds: &[RawFd]) -> Result<u32> {
        let nr = u32::try_from(fds.len()).map_err(|_| Error::InvalidArgument("too many files".into()))?;
        let upd = sys::io_uring_rsrc_update2 { offset, data: fds.as_ptr() as u64, nr, ..Default::default() };
        self.call(
            "IORING_REGISTER_FILES_UPDATE2",
            sys::IORING_REGISTER_FILES_UPDATE2,
            (&upd as *const sys::io_uring_rsrc_update2).cast(),
            size_of::<sys::io_uring_rsrc_update2>() as u32,
        )
    }

    /// Drops the file table (`IORING_UNREGISTER_FILES`).
    pub fn unregister_files(&self) -> Result<()> {
        self.call("IORING_UNREGISTER_FILES", sys::IORING_UNREGISTER_FILES, ptr::null(), 0).map(drop)
    }

    /// Confines kernel-allocated direct descriptors (`IORING_FILE_INDEX_ALLOC`)
    /// to slots `offset..offset + len` (`IORING_REGISTER_FILE_ALLOC_RANGE`).
    pub fn file_alloc_range(&self, offset: u32, len: u32) -> Result<()> {
        let range = sys::io_uring_file_index_range { off: offset, len, ..Default::default() };
        self.call(
            "IORING_REGISTER_FILE_ALLOC_RANGE",
            sys::IORING_REGISTER_FILE_ALLOC_RANGE,
            (&range as *const sys::io_uring_file_index_range).cast(),
            0,
        )
        .map(drop)
    }

    /// Limits what the ring may do (`IORING_REGISTER_RESTRICTIONS`): only
    /// while the ring is disabled, between `new` and `start`.
    pub fn restrictions(&self, rules: &[Restriction]) -> Result<()> {
        if self.core.state == State::Started {
            return Err(Error::AlreadyEnabled { what: "IORING_REGISTER_RESTRICTIONS" });
        }
        let nr = u32::try_from(rules.len()).map_err(|_| Error::InvalidArgument("too many restrictions".into()))?;
        self.call("IORING_REGISTER_RESTRICTIONS", sys::IORING_REGISTER_RESTRICTIONS, rules.as_ptr().cast(), nr)
            .map(drop)
    }

    /// Runs the ring's io-wq workers on `cpus` only (`IORING_REGISTER_IOWQ_AFF`).
    pub fn iowq_affinity(&self, cpus: &[usize]) -> Result<()> {
        // SAFETY: cpu_set_t is a plain bit array; zeroed is the empty set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        let max = 8 * size_of::<libc::cpu_set_t>();
        for &cpu in cpus {
            if cpu >= max {
                return Err(Error::InvalidArgument(format!("cpu {cpu} is beyond cpu_set_t ({max} cpus)")));
            }
            // SAFETY: `cpu` is below the set's capacity, checked above.
            unsafe { libc::CPU_SET(cpu, &mut set) };
        }
        self.call(
            "IORING_REGISTER_IOWQ_AFF",
            sys::IORING_REGISTER_IOWQ_AFF,
            (&set as *const libc::cpu_set_t).cast(),
            size_of::<libc::cpu_set_t>() as u32,
        )
        .map(drop)
    }

    /// Restores the default io-wq affinity (`IORING_UNREGISTER_IOWQ_AFF`).
    pub fn unregister_iowq_affinity(&self) -> Result<()> {
        self.call("IORING_UNREGISTER_IOWQ_AFF", sys::IORING_UNREGISTER_IOWQ_AFF, ptr::null(), 0).map(drop)
    }

    /// Sets the most bounded and unbounded io-wq workers (0 leaves a value
    /// unchanged) and returns the previous `[bounded, unbounded]`
    /// (`IORING_REGISTER_IOWQ_MAX_WORKERS`).
    pub fn iowq_max_workers(&self, bounded: u32, unbounded: u32) -> Result<[u32; 2]> {
        let mut v = [bounded, unbounded];
        self.call(
            "IORING_REGISTER_IOWQ_MAX_WORKERS",
            sys::IORING_REGISTER_IOWQ_MAX_WORKERS,
            v.as_mut_ptr().cast_const().cast(),
            2,
        )?;
        Ok(v)
    }

    /// Registers the calling thread's credentials as a personality
    /// (`IORING_REGISTER_PERSONALITY`) and returns its id, for
    /// `sqe.personality`.
    pub fn personality(&self) -> Result<u16> {
        self.call("IORING_REGISTER_PERSONALITY", sys::IORING_REGISTER_PERSONALITY, ptr::null(), 0).map(|id| id as u16)
    }

    /// Drops personality `id` (`IORING_UNREGISTER_PERSONALITY`).
    pub fn unregister_personality(&self, id: u16) -> Result<()> {
        self.call("IORING_UNREGISTER_PERSONALITY", sys::IORING_UNREGISTER_PERSONALITY, ptr::null(), u32::from(id))
            .map(drop)
    }

    /// The clock that wait timeouts are measured on
    /// (`IORING_REGISTER_CLOCK`): `CLOCK_MONOTONIC` (default) or
    /// `CLOCK_BOOTTIME`.
    pub fn clock(&self, clock: libc::clockid_t) -> Result<()> {
        let reg = sys::io_uring_clock_register { clockid: clock as u32, ..Default::default() };
        self.call(
            "IORING_REGISTER_CLOCK",
            sys::IORING_REGISTER_CLOCK,
            (&reg as *const sys::io_uring_clock_register).cast(),
            0,
        )
        .map(drop)
    }

    /// Cancels requests synchronously (`IORING_REGISTER_SYNC_CANCEL`, since
    /// 6.0) and waits up to `timeout` (`None`: indefinitely) for them to
    /// finish; their CQEs (`-ECANCELED`, or their result if they completed
    /// first) are posted as usual. With `all` (and always for
    /// [`CancelTarget::Any`]) every match is cancelled and the result is
    /// their count, 0 when nothing matched; without, only the first match
    /// is cancelled and the result is 0.
    ///
    /// # Errors
    ///
    /// `ENOENT` (nothing matched, without `all`), `EALREADY` / `ETIME` (a
    /// match is running and did not finish in time), as [`Error::Io`].
    pub fn sync_cancel(&self, target: CancelTarget, all: bool, timeout: Option<std::time::Duration>) -> Result<u32> {
        let mut reg = sys::io_uring_sync_cancel_reg { fd: -1, ..Default::default() };
        reg.flags = if all { sys::IORING_ASYNC_CANCEL_ALL } else { 0 };
        match target {
            CancelTarget::UserData(u) => reg.addr = u,
            CancelTarget::Fd(fd) => {
                reg.fd = fd;
                reg.flags |= sys::IORING_ASYNC_CANCEL_FD;
            }
            CancelTarget::FixedFd(slot) => {
                reg.fd = slot as i32;
                reg.flags |= sys::IORING_ASYNC_CANCEL_FD | sys::IORING_ASYNC_CANCEL_FD_FIXED;
            }
            CancelTarget::Op(op) => {
                reg.opcode = op;
                reg.flags |= sys::IORING_ASYNC_CANCEL_OP;
            }
            CancelTarget::Any => reg.flags = sys::IORING_ASYNC_CANCEL_ANY,
        }
        reg.timeout = match timeout {
            // The kernel's "no timeout" is both fields all ones.
            None => sys::__kernel_timespec { tv_sec: -1, tv_nsec: -1 },
            Some(t) => sys::__kernel_timespec {
                tv_sec: t.as_secs().min(i64::MAX as u64) as i64,
                tv_nsec: i64::from(t.subsec_nanos()),
            },
        };
        self.call(
            "IORING_REGISTER_SYNC_CANCEL",
            sys::IORING_REGISTER_SYNC_CANCEL,
            (&reg as *const sys::io_uring_sync_cancel_reg).cast(),
            1,
        )
    }

    /// Clones registered buffers of the ring `src_fd` into this ring's
    /// table (`IORING_REGISTER_CLONE_BUFFERS`, since Linux 6.12; offsets
    /// and `IORING_REGISTER_DST_REPLACE` since 6.13; liburing
    /// `io_uring_clone_buffers_offset`): `nr` slots from `src_off` of the
    /// source's table become slots `dst_off..dst_off + nr` of this one, the
    /// same pinned memory (an empty source slot clones empty). `nr == 0`
    /// means the whole source table (then both offsets must be 0).
    ///
    /// Without `replace` this ring must have no table yet (`EBUSY`
    /// otherwise) and gets one of `dst_off + nr` slots, the first `dst_off`
    /// empty. With `replace` its table becomes `max(dst_off + nr, len)`
    /// slots: the ones before `dst_off` kept, the range replaced (the old
    /// buffers' nodes are put, posting their resource tags once unused),
    /// and the ones after it kept from 6.18.y / 7.0 on (earlier kernels
    /// drop them: fixed in `io_clone_buffers`, "copy original dst nodes
    /// from after the cloned range"). Both rings must belong to the same
    /// user and memory accounting (`EINVAL`).
    ///
    /// # Errors
    ///
    /// [`Error::Stopped`]; [`Error::Io`] naming
    /// `IORING_REGISTER_CLONE_BUFFERS` with the kernel's errno: `EBUSY`
    /// (a table, without `replace`), `ENXIO` (the source has no table),
    /// `EINVAL` (a range outside the source's table, offsets with
    /// `nr == 0`, more than 16384 slots, a kernel before 6.12 or, with
    /// offsets or `replace`, one before 6.13), `EOVERFLOW`, `EBADF`.
    ///
    /// # Safety
    ///
    /// The call changes this ring's registered-buffer table under whatever
    /// tracks it: a `uring_buffers::RegisteredBuffers` or `FixedBuffers` of
    /// this ring would go on describing (and lending out) slots that now
    /// name other memory, and the cloned memory is reachable from both
    /// rings. The caller keeps every such description right, and the
    /// source's memory valid while this ring may use it (until the slots
    /// are replaced or unregistered and every request using them has
    /// completed, or the ring is closed).
    #[doc(alias = "io_uring_clone_buffers_offset")]
    #[doc(alias = "io_uring_clone_buffers")]
    #[doc(alias = "IORING_REGISTER_CLONE_BUFFERS")]
    pub unsafe fn clone_buffers(
        &self,
        src_fd: RawFd,
        src_off: u32,
        dst_off: u32,
        nr: u32,
        replace: bool,
    ) -> Result<()> {
        let arg = sys::io_uring_clone_buffers {
            src_fd: src_fd as u32,
            flags: if replace { sys::IORING_REGISTER_DST_REPLACE } else { 0 },
            src_off,
            dst_off,
            nr,
            ..Default::default()
        };
        self.call(
            "IORING_REGISTER_CLONE_BUFFERS",
            sys::IORING_REGISTER_CLONE_BUFFERS,
            (&arg as *const sys::io_uring_clone_buffers).cast(),
            1,
        )
        .map(drop)
    }

    /// Turns on NAPI busy polling for the ring's sockets
    /// (`IORING_REGISTER_NAPI`, since Linux 6.9) with dynamic tracking and
    /// returns the previous settings: `io_uring_register_napi`. To choose
    /// the tracking strategy, or see the previous one, use
    /// [`register_napi`](Self::register_napi) (6.13).
    #[doc(alias = "io_uring_register_napi")]
    pub fn napi(&self, napi: Napi) -> Result<Napi> {
        let mut reg = sys::io_uring_napi {
            busy_poll_to: napi.busy_poll_usec,
            prefer_busy_poll: u8::from(napi.prefer_busy_poll),
            ..Default::default()
        };
        self.call(
            "IORING_REGISTER_NAPI",
            sys::IORING_REGISTER_NAPI,
            (&mut reg as *mut sys::io_uring_napi).cast_const().cast(),
            1,
        )?;
        Ok(Napi { busy_poll_usec: reg.busy_poll_to, prefer_busy_poll: reg.prefer_busy_poll != 0 })
    }

    /// Registers a submission filter on this ring
    /// (`IORING_REGISTER_BPF_FILTER` with `struct io_uring_bpf`, since
    /// Linux 7.0): from now on every request of the filter's opcode runs
    /// its program first and, if it is denied, completes with `-EACCES`
    /// without being issued. Allowed at any time, started or not; filters
    /// stack per opcode and cannot be removed (see [`crate::bpf`]). The
    /// kernel copies the program during the call.
    ///
    /// Returns the number of per-opcode context bytes the kernel fills for
    /// the opcode (0 for opcodes without per-opcode words; see
    /// [`crate::bpf::ctx`]).
    ///
    /// # Errors
    ///
    /// [`Error::Stopped`]; [`Error::Unsupported`] naming the opcode when
    /// the kernel's probe does not know it, or naming
    /// `IORING_REGISTER_BPF_FILTER` before 7.0; [`Error::InvalidArgument`]
    /// when the kernel refuses the filter (`EINVAL`, `EMSGSIZE` for a
    /// [`strict_size`](crate::bpf::BpfFilter::strict_size) that does not
    /// match); [`Error::Io`] for another errno.
    #[doc(alias = "io_uring_register_bpf_filter")]
    #[doc(alias = "IORING_REGISTER_BPF_FILTER")]
    pub fn bpf_filter(&self, filter: &crate::bpf::BpfFilter) -> Result<u8> {
        if self.core.state == State::Stopped {
            return Err(Error::Stopped);
        }
        if filter.opcode() > self.core.features.last_op() {
            return Err(Error::unsupported(
                crate::features::opcode_name(filter.opcode())
                    .map_or_else(|| format!("opcode {}", filter.opcode()), str::to_owned),
                Some("a filter names an opcode the kernel knows"),
            ));
        }
        crate::bpf::register(self.core.raw_fd, filter).map_err(|e| match e {
            Error::Io { call, source } => self.core.failed(call, source),
            e => e,
        })
    }

    /// Turns NAPI busy polling off (`IORING_UNREGISTER_NAPI`, since Linux
    /// 6.9) and returns the settings that were in force:
    /// `io_uring_unregister_napi`. The kernel reports the busy-poll time
    /// and prefer flag, not the tracking strategy; the ring's tracking
    /// becomes [`NapiTracking::INACTIVE`](crate::NapiTracking::INACTIVE)
    /// (which the next [`register_napi`](Self::register_napi) reports).
    #[doc(alias = "io_uring_unregister_napi")]
    #[doc(alias = "IORING_UNREGISTER_NAPI")]
    pub fn unregister_napi(&self) -> Result<Napi> {
        let mut reg = sys::io_uring_napi::default();
        self.call(
            "IORING_UNREGISTER_NAPI",
            sys::IORING_UNREGISTER_NAPI,
            (&mut reg as *mut sys::io_uring_napi).cast_const().cast(),
            1,
        )?;
        Ok(Napi { busy_poll_usec: reg.busy_poll_to, prefer_busy_poll: reg.prefer_busy_poll != 0 })
    }
}

/// Whether this kernel knows the blind `IORING_REGISTER_SEND_MSG_RING`
/// (since 6.13): 0 unknown yet, 1 yes, 2 no.
static SEND_MSG_RING: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Whether `io_uring_register(-1, IORING_REGISTER_SEND_MSG_RING, …)` exists
/// on this kernel, probed once: a pointer the kernel cannot read is
/// `EFAULT` from 6.13 on (the blind call copies the SQE in first); before,
/// the call fails otherwise (`EBADF`: fd -1 names no ring), as it does
/// under a seccomp filter that refuses it.
fn send_msg_ring_supported() -> bool {
    use std::sync::atomic::Ordering::Relaxed;
    match SEND_MSG_RING.load(Relaxed) {
        1 => return true,
        2 => return false,
        _ => {}
    }
    // A kernel address: `copy_from_user` refuses it without touching memory.
    let bad = usize::MAX & !0xfff;
    // SAFETY: the kernel only tries to copy an SQE from `bad`, which it
    // refuses (`EFAULT`), or fails before reading it; no memory of ours is
    // named.
    let r = unsafe { sys::io_uring_register(-1, sys::IORING_REGISTER_SEND_MSG_RING, bad as *const c_void, 1) };
    let yes = matches!(&r, Err(e) if e.raw_os_error() == Some(libc::EFAULT));
    SEND_MSG_RING.store(if yes { 1 } else { 2 }, Relaxed);
    yes
}

/// Posts a message to a ring without a ring of one's own: the blind
/// `io_uring_register(-1, IORING_REGISTER_SEND_MSG_RING, sqe, 1)`, since
/// Linux 6.13 (liburing `io_uring_register_sync_msg`). The kernel copies
/// `sqe` during the call, accepts only an `IORING_OP_MSG_RING` data message
/// (`IORING_MSG_DATA`, no SQE flags, `fd` a ring descriptor, not a fixed
/// slot) and posts its CQE to the target ring before returning. The typed,
/// safe form is `uring_ops::msg::MsgRing::send_without_ring`, which writes
/// the entry and checks what it posts.
///
/// # Errors
///
/// [`Error::Unsupported`] before 6.13 (probed once per process);
/// [`Error::Io`] naming `IORING_REGISTER_SEND_MSG_RING` with the kernel's
/// errno: `EBADF` (no such descriptor), `EBADFD` (not a ring, or not
/// enabled yet), `EOVERFLOW` (the target's CQ is full and overflow is
/// off), `EINVAL` (an entry the kernel does not accept).
///
/// # Safety
///
/// The CQE the entry posts must be one the target ring's owner may
/// receive from safe code: its `user_data` (`sqe.off`) no layer value
/// ([`is_layer_tag`]), and with `IORING_MSG_RING_FLAGS_PASS` none of
/// `IORING_CQE_F_BUFFER`, `IORING_CQE_F_BUF_MORE`, `IORING_CQE_F_NOTIF` in
/// the flags it passes: a layer would take such a CQE as the kernel being
/// done with memory it lent out.
#[doc(alias = "io_uring_register_sync_msg")]
#[doc(alias = "IORING_REGISTER_SEND_MSG_RING")]
pub unsafe fn send_msg_ring(sqe: &crate::Sqe) -> Result<()> {
    if !send_msg_ring_supported() {
        return Err(Error::unsupported("IORING_REGISTER_SEND_MSG_RING", Some("needs Linux 6.13")));
    }
    let raw: &sys::io_uring_sqe = sqe;
    // SAFETY: the kernel copies one 64-byte SQE from `raw`, valid for the
    // call, and keeps no pointer; what the posted CQE may say is the
    // caller's obligation.
    unsafe {
        sys::io_uring_register(-1, sys::IORING_REGISTER_SEND_MSG_RING, (raw as *const sys::io_uring_sqe).cast(), 1)
    }
    .map(drop)
    .map_err(|e| Error::io("IORING_REGISTER_SEND_MSG_RING", e))
}
