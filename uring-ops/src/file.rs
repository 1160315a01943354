//! File I/O: `read`, `write`, `readv`, `writev`, and the fixed-buffer forms
//! (`read_fixed`, `write_fixed`, `readv_fixed`, `writev_fixed`), with
//! offsets, `RWF_*` flags and an I/O priority.
//!
//! Every operation here but [`ReadProvided`] names caller memory that the
//! kernel reads or writes while the operation runs (possibly later, from an
//! io-wq worker): the data buffer, or the iovec targets. [`Read`],
//! [`Write`], [`Readv`] and [`Writev`] take it as slices in an `unsafe`
//! constructor, whose `# Safety` section is the one statement of the
//! obligation (the memory stays valid until the operation's CQE); the
//! operations are then [`SafeOp`]s, pushed like any other, and the
//! [`FileOps`] methods take the same arguments (`unsafe` for the same
//! reason). `'static` bytes need no `unsafe`: [`Write::from_static`].
//!
//! The fixed-buffer builders ([`ReadFixed`], …) take an address and a
//! length into registered memory in the same kind of `unsafe` constructor
//! (`from_raw_parts`), whose caller keeps that memory valid until the
//! CQE; they are then [`SafeOp`]s too. `uring_buffers::FixedBuffers` is
//! their safe form, which tracks the buffer itself.
//!
//! # Offsets
//!
//! An offset of [`CURRENT_POSITION`] (`u64::MAX`, `-1` as the kernel's
//! `loff_t`) reads or writes at the file's current position and advances
//! it, like `read(2)`/`write(2)`; any other offset works like
//! `pread(2)`/`pwrite(2)` and leaves the position alone. Streams (pipes,
//! sockets) ignore the offset; pass 0 or [`CURRENT_POSITION`].

use uring_core::{Features, Keep, Result, SqeContext, SqeFlags, sys};

use crate::flags::sealed::OnRing;
use crate::op::{Prepare, SafeOp, Target};
use crate::ring::RingOps;

/// The offset that means "the file's current position" (`-1`).
pub const CURRENT_POSITION: u64 = u64::MAX;

bitflags::bitflags! {
    /// Per-operation `RWF_*` flags of the read/write family (`sqe->rw_flags`,
    /// as for `preadv2(2)`/`pwritev2(2)`). Unknown bits are kept and passed
    /// on: a kernel that does not know one answers `-EOPNOTSUPP`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct RwFlags: u32 {
        /// `RWF_HIPRI`: high-priority (polled) I/O.
        const HIPRI = sys::RWF_HIPRI;
        /// `RWF_DSYNC`: per-write `O_DSYNC`.
        const DSYNC = sys::RWF_DSYNC;
        /// `RWF_SYNC`: per-write `O_SYNC`.
        const SYNC = sys::RWF_SYNC;
        /// `RWF_NOWAIT`: fail with `-EAGAIN` instead of blocking.
        const NOWAIT = sys::RWF_NOWAIT;
        /// `RWF_APPEND`: per-write `O_APPEND`.
        const APPEND = sys::RWF_APPEND;
        /// `RWF_NOAPPEND`: ignore `O_APPEND` for this write (since 6.9).
        const NOAPPEND = sys::RWF_NOAPPEND;
        /// `RWF_ATOMIC`: untorn write (since 6.11; see `statx` for limits).
        const ATOMIC = sys::RWF_ATOMIC;
        /// `RWF_DONTCACHE`: drop the page cache after the I/O (since 6.14).
        const DONTCACHE = sys::RWF_DONTCACHE;
        /// `RWF_NOSIGNAL`: no `SIGPIPE` on a broken pipe (since 6.16).
        const NOSIGNAL = sys::RWF_NOSIGNAL;
        const _ = !0;
    }
}

/// The fields every read/write SQE shares.
#[derive(Debug, Clone, Copy)]
struct Rw {
    fd: Target,
    addr: u64,
    len: u32,
    offset: u64,
    flags: RwFlags,
    ioprio: u16,
    /// A slice longer than the kernel's 32-bit length (refused by `check`).
    oversize: bool,
}

impl Rw {
    #[inline]
    fn new(fd: Target, addr: u64, len: u32) -> Self {
        Rw { fd, addr, len, offset: 0, flags: RwFlags::empty(), ioprio: 0, oversize: false }
    }

    /// Over a slice of `len` bytes or iovecs; one past `u32::MAX` is
    /// remembered and refused by [`check_len`](Self::check_len).
    #[inline]
    fn slice(fd: Target, addr: u64, len: usize) -> Self {
        let mut rw = Rw::new(fd, addr, u32::try_from(len).unwrap_or(u32::MAX));
        rw.oversize = len > u32::MAX as usize;
        rw
    }

    /// Refuses a buffer the kernel's length field cannot describe.
    #[inline]
    fn check_len(&self, what: &'static str) -> Result<()> {
        if self.oversize {
            return Err(oversize_error(what));
        }
        Ok(())
    }

    /// Writes the whole entry for opcode `code`.
    #[inline]
    fn prepare(self, code: u8, sqe: &mut uring_core::Sqe) {
        let Rw { fd, addr, len, offset, flags, ioprio, oversize: _ } = self;
        *sqe = uring_core::Sqe::new(code);
        fd.apply(sqe);
        sqe.set_addr(addr);
        sqe.len = len;
        sqe.set_off(offset);
        sqe.set_op_flags(flags.bits());
        sqe.ioprio = ioprio;
    }
}

/// Rejects an iovec count the kernel answers with `-EINVAL`.
fn check_iovecs(what: &str, nr: u32) -> Result<()> {
    if nr > libc::UIO_MAXIOV as u32 {
        return Err(uring_core::Error::InvalidArgument(format!(
            "{what}: {nr} iovecs exceed UIO_MAXIOV ({})",
            libc::UIO_MAXIOV
        )));
    }
    Ok(())
}

/// Generates the offset / flags / ioprio setters of a read/write builder.
macro_rules! rw_setters {
    ($ty:ident) => {
        impl $ty {
            /// The file offset (default 0); [`CURRENT_POSITION`] uses and
            /// advances the file position.
            #[inline]
            pub const fn offset(mut self, offset: u64) -> Self {
                self.rw.offset = offset;
                self
            }

            /// `RWF_*` flags for this operation.
            #[inline]
            pub const fn rw_flags(mut self, flags: RwFlags) -> Self {
                self.rw.flags = flags;
                self
            }

            /// The I/O priority (`ioprio_set(2)` encoding: class in the top
            /// 3 bits). 0 (the default) uses the task's priority; a class
            /// the kernel does not know, or a real-time class without
            /// `CAP_SYS_ADMIN`, completes with `-EINVAL`/`-EPERM`.
            #[inline]
            pub const fn ioprio(mut self, ioprio: u16) -> Self {
                self.rw.ioprio = ioprio;
                self
            }
        }
    };
}

/// Reads up to `len` bytes into a buffer: `io_uring_prep_read`.
///
/// Since Linux 5.6. The CQE's result is the number of bytes read (0 at end
/// of file) or `-errno`.
///
/// The buffer is caller memory the kernel writes while the read runs; the
/// obligation that it stays valid is taken once, by the `unsafe`
/// constructor, so the operation itself is a [`SafeOp`] and goes through
/// [`RingOps::push_op`] like any other (with [`OpExt::with_sqe_flags`],
/// [`FlagOps::linked`](crate::FlagOps::linked), deadlines).
/// [`FileOps::read`] takes the same arguments.
///
/// [`OpExt::with_sqe_flags`]: crate::OpExt::with_sqe_flags
#[doc(alias = "IORING_OP_READ")]
#[doc(alias = "io_uring_prep_read")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct Read {
    rw: Rw,
}

impl Read {
    /// Reads up to `buf.len()` bytes from `fd` into `buf`, at offset 0. A
    /// buffer over `u32::MAX` bytes is refused (`InvalidArgument`) when the
    /// operation is pushed.
    ///
    /// # Safety
    ///
    /// For every push of the returned operation (or of a copy of it),
    /// `buf` must stay valid, and must be neither read nor written by the
    /// program, until that operation's CQE has been reaped: the kernel
    /// writes it while the read runs, possibly after the push returned and
    /// the entry was consumed (the borrow ends when this call returns; the
    /// obligation does not).
    #[inline]
    pub unsafe fn new(fd: impl Into<Target>, buf: &mut [u8]) -> Self {
        Read { rw: Rw::slice(fd.into(), buf.as_mut_ptr() as u64, buf.len()) }
    }
}

rw_setters!(Read);

impl Prepare for Read {
    const CODE: u8 = sys::IORING_OP_READ as u8;
    const USES_KEEP: bool = false;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        self.rw.check_len("read")
    }

    #[inline]
    fn prepare(self, sqe: &mut uring_core::Sqe, _keep: &mut Keep) {
        let Read { rw } = self;
        rw.prepare(Self::CODE, sqe);
    }
}

// SAFETY: the buffer is the only memory named; the caller of the unsafe
// constructor keeps it valid and unaccessed until every push's CQE.
unsafe impl SafeOp for Read {}

/// Reads into a buffer the kernel picks from a provided-buffer group:
/// `io_uring_prep_read` with `IOSQE_BUFFER_SELECT`.
///
/// Since Linux 5.7 (provided buffers; buffer rings since 5.19). The CQE's
/// result is the byte count, and its flags carry `IORING_CQE_F_BUFFER` and
/// the buffer id (`Cqe::buffer_id`). An empty group completes with
/// `-ENOBUFS`.
///
/// This operation names no memory itself: the buffers were handed to the
/// kernel when they were provided, and that (unsafe, or library-owned)
/// step is where their lifetime is promised. So it is a [`SafeOp`].
#[doc(alias = "IORING_OP_READ")]
#[doc(alias = "IOSQE_BUFFER_SELECT")]
#[doc(alias = "io_uring_prep_read")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct ReadProvided {
    rw: Rw,
    group: u16,
}

impl ReadProvided {
    /// Reads at most `len` bytes (0: the whole selected buffer, for buffer
    /// rings) from `fd` into a buffer of `group`, at offset 0.
    #[inline]
    pub fn new(fd: impl Into<Target>, len: u32, group: u16) -> Self {
        ReadProvided { rw: Rw::new(fd.into(), 0, len), group }
    }
}

rw_setters!(ReadProvided);

impl Prepare for ReadProvided {
    const CODE: u8 = sys::IORING_OP_READ as u8;
    const USES_KEEP: bool = false;

    #[inline]
    fn prepare(self, sqe: &mut uring_core::Sqe, _keep: &mut Keep) {
        let ReadProvided { rw, group } = self;
        rw.prepare(Self::CODE, sqe);
        sqe.flags |= SqeFlags::BUFFER_SELECT.bits();
        sqe.set_buf_group(group);
    }
}

// SAFETY: the SQE's address is 0; the kernel writes only into buffers that
// were provided to it beforehand, whose validity that provision promised.
unsafe impl SafeOp for ReadProvided {}

/// Writes `len` bytes from a buffer: `io_uring_prep_write`.
///
/// Since Linux 5.6. The CQE's result is the number of bytes written or
/// `-errno`.
///
/// The buffer is caller memory the kernel reads while the write runs; the
/// obligation is taken by the `unsafe` constructor [`new`](Self::new)
/// (none for `'static` bytes: [`from_static`](Self::from_static)), so the
/// operation is a [`SafeOp`]. [`FileOps::write`] and
/// [`FileOps::write_static`] take the same arguments.
#[doc(alias = "IORING_OP_WRITE")]
#[doc(alias = "io_uring_prep_write")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct Write {
    rw: Rw,
}

impl Write {
    /// Writes `buf` to `fd`, at offset 0. A buffer over `u32::MAX` bytes is
    /// refused (`InvalidArgument`) when the operation is pushed.
    ///
    /// # Safety
    ///
    /// For every push of the returned operation (or of a copy of it),
    /// `buf` must stay valid and unmodified until that operation's CQE has
    /// been reaped: the kernel reads it while the write runs.
    #[inline]
    pub unsafe fn new(fd: impl Into<Target>, buf: &[u8]) -> Self {
        Write { rw: Rw::slice(fd.into(), buf.as_ptr() as u64, buf.len()) }
    }

    /// Writes `'static` bytes to `fd`, at offset 0: safe, since they are
    /// never freed and (behind a shared reference) never modified.
    ///
    /// ```compile_fail,E0597
    /// let op = {
    ///     let local = [0u8; 4];
    ///     uring_ops::file::Write::from_static(1, &local)
    /// };
    /// drop(op);
    /// ```
    #[inline]
    pub fn from_static(fd: impl Into<Target>, buf: &'static [u8]) -> Self {
        // SAFETY: `'static` bytes behind a shared reference stay valid and
        // unmodified for ever.
        unsafe { Write::new(fd, buf) }
    }
}

rw_setters!(Write);

impl Prepare for Write {
    const CODE: u8 = sys::IORING_OP_WRITE as u8;
    const USES_KEEP: bool = false;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        self.rw.check_len("write")
    }

    #[inline]
    fn prepare(self, sqe: &mut uring_core::Sqe, _keep: &mut Keep) {
        let Write { rw } = self;
        rw.prepare(Self::CODE, sqe);
    }
}

// SAFETY: the buffer is the only memory named; `'static` (`from_static`) or
// kept valid and unmodified until every push's CQE by the caller of `new`.
unsafe impl SafeOp for Write {}

/// Reads into several buffers (scatter): `io_uring_prep_readv`
/// (`io_uring_prep_readv2` with flags).
///
/// Since Linux 5.1. The CQE's result is the total byte count or `-errno`.
///
/// The iovec array and every buffer it names are caller memory the kernel
/// uses while the read runs (it writes the buffers): the `unsafe`
/// constructor takes that obligation, and the operation is a [`SafeOp`].
#[doc(alias = "IORING_OP_READV")]
#[doc(alias = "io_uring_prep_readv")]
#[doc(alias = "io_uring_prep_readv2")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct Readv {
    rw: Rw,
}

impl Readv {
    /// Reads from `fd` into the buffers of `iovecs`, at offset 0. More than
    /// `UIO_MAXIOV` iovecs are refused when the operation is pushed.
    ///
    /// # Safety
    ///
    /// For every push of the returned operation (or of a copy of it),
    /// `iovecs` and every buffer it names must stay valid, and the buffers
    /// must be neither read nor written by the program, until that
    /// operation's CQE has been reaped.
    #[inline]
    pub unsafe fn new(fd: impl Into<Target>, iovecs: &[libc::iovec]) -> Self {
        Readv { rw: Rw::slice(fd.into(), iovecs.as_ptr() as u64, iovecs.len()) }
    }
}

rw_setters!(Readv);

impl Prepare for Readv {
    const CODE: u8 = sys::IORING_OP_READV as u8;
    const USES_KEEP: bool = false;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        check_iovecs("readv", self.rw.len)
    }

    #[inline]
    fn prepare(self, sqe: &mut uring_core::Sqe, _keep: &mut Keep) {
        let Readv { rw } = self;
        rw.prepare(Self::CODE, sqe);
    }
}

// SAFETY: the iovec array and its buffers are the only memory named; the
// caller of the unsafe constructor keeps them valid until every push's CQE.
unsafe impl SafeOp for Readv {}

/// Writes from several buffers (gather): `io_uring_prep_writev`
/// (`io_uring_prep_writev2` with flags).
///
/// Since Linux 5.1. The CQE's result is the total byte count or `-errno`.
///
/// The iovec array and every buffer it names are caller memory: the
/// `unsafe` constructor takes the obligation, and the operation is a
/// [`SafeOp`].
#[doc(alias = "IORING_OP_WRITEV")]
#[doc(alias = "io_uring_prep_writev")]
#[doc(alias = "io_uring_prep_writev2")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct Writev {
    rw: Rw,
}

impl Writev {
    /// Writes the buffers of `iovecs` to `fd`, at offset 0. More than
    /// `UIO_MAXIOV` iovecs are refused when the operation is pushed.
    ///
    /// # Safety
    ///
    /// For every push of the returned operation (or of a copy of it),
    /// `iovecs` and every buffer it names must stay valid, and the buffers
    /// unmodified, until that operation's CQE has been reaped.
    #[inline]
    pub unsafe fn new(fd: impl Into<Target>, iovecs: &[libc::iovec]) -> Self {
        Writev { rw: Rw::slice(fd.into(), iovecs.as_ptr() as u64, iovecs.len()) }
    }
}

rw_setters!(Writev);

impl Prepare for Writev {
    const CODE: u8 = sys::IORING_OP_WRITEV as u8;
    const USES_KEEP: bool = false;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        check_iovecs("writev", self.rw.len)
    }

    #[inline]
    fn prepare(self, sqe: &mut uring_core::Sqe, _keep: &mut Keep) {
        let Writev { rw } = self;
        rw.prepare(Self::CODE, sqe);
    }
}

// SAFETY: the iovec array and its buffers are the only memory named; the
// caller of the unsafe constructor keeps them valid until every push's CQE.
unsafe impl SafeOp for Writev {}

/// Reads into a registered buffer: `io_uring_prep_read_fixed`.
///
/// Since Linux 5.1. `buf`..`buf + len` must lie inside registered buffer
/// `buf_index` (`IORING_REGISTER_BUFFERS[2]`); the kernel checks the range
/// (`-EFAULT` outside it, or for an index past the table). The CQE's result
/// is the byte count or `-errno`.
///
/// The kernel writes that range while the read runs: the program must not
/// access it until the CQE has been reaped.
#[doc(alias = "IORING_OP_READ_FIXED")]
#[doc(alias = "io_uring_prep_read_fixed")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct ReadFixed {
    rw: Rw,
    buf_index: u16,
}

impl ReadFixed {
    /// Reads up to `buf.len()` bytes from `fd` into `buf`, which lies
    /// inside registered buffer `buf_index`, at offset 0. A buffer over
    /// `u32::MAX` bytes is refused (`InvalidArgument`) when pushed.
    /// (`uring_buffers::FixedBuffers::read_fixed` is the safe form over
    /// buffers the library owns.)
    ///
    /// # Safety
    ///
    /// As [`Read::new`]: for every push of the returned operation (or of a
    /// copy), `buf` must stay valid, and must be neither read nor written
    /// by the program, until that operation's CQE has been reaped.
    #[inline]
    pub unsafe fn new(fd: impl Into<Target>, buf: &mut [u8], buf_index: u16) -> Self {
        ReadFixed { rw: Rw::slice(fd.into(), buf.as_mut_ptr() as u64, buf.len()), buf_index }
    }

    /// As [`new`](Self::new), from an address and a length.
    ///
    /// # Safety
    ///
    /// As [`new`](Self::new), for the `len` bytes at `buf`.
    #[inline]
    pub unsafe fn from_raw_parts(fd: impl Into<Target>, buf: *mut u8, len: u32, buf_index: u16) -> Self {
        ReadFixed { rw: Rw::new(fd.into(), buf as u64, len), buf_index }
    }
}

rw_setters!(ReadFixed);

impl Prepare for ReadFixed {
    const CODE: u8 = sys::IORING_OP_READ_FIXED as u8;
    const USES_KEEP: bool = false;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        self.rw.check_len("read_fixed")
    }

    #[inline]
    fn prepare(self, sqe: &mut uring_core::Sqe, _keep: &mut Keep) {
        let ReadFixed { rw, buf_index } = self;
        rw.prepare(Self::CODE, sqe);
        sqe.set_buf_index(buf_index);
    }
}

/// Writes from a registered buffer: `io_uring_prep_write_fixed`.
///
/// Since Linux 5.1. As [`ReadFixed`], in the other direction: the range
/// must lie inside registered buffer `buf_index` and stay unmodified until
/// the CQE has been reaped.
#[doc(alias = "IORING_OP_WRITE_FIXED")]
#[doc(alias = "io_uring_prep_write_fixed")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct WriteFixed {
    rw: Rw,
    buf_index: u16,
}

impl WriteFixed {
    /// Writes `buf`, which lies inside registered buffer `buf_index`, to
    /// `fd`, at offset 0. A buffer over `u32::MAX` bytes is refused
    /// (`InvalidArgument`) when pushed.
    ///
    /// # Safety
    ///
    /// As [`Write::new`]: for every push of the returned operation (or of
    /// a copy), `buf` must stay valid and unmodified until that
    /// operation's CQE has been reaped.
    #[inline]
    pub unsafe fn new(fd: impl Into<Target>, buf: &[u8], buf_index: u16) -> Self {
        WriteFixed { rw: Rw::slice(fd.into(), buf.as_ptr() as u64, buf.len()), buf_index }
    }

    /// As [`new`](Self::new), from an address and a length.
    ///
    /// # Safety
    ///
    /// As [`new`](Self::new), for the `len` bytes at `buf`.
    #[inline]
    pub unsafe fn from_raw_parts(fd: impl Into<Target>, buf: *const u8, len: u32, buf_index: u16) -> Self {
        WriteFixed { rw: Rw::new(fd.into(), buf as u64, len), buf_index }
    }
}

rw_setters!(WriteFixed);

impl Prepare for WriteFixed {
    const CODE: u8 = sys::IORING_OP_WRITE_FIXED as u8;
    const USES_KEEP: bool = false;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        self.rw.check_len("write_fixed")
    }

    #[inline]
    fn prepare(self, sqe: &mut uring_core::Sqe, _keep: &mut Keep) {
        let WriteFixed { rw, buf_index } = self;
        rw.prepare(Self::CODE, sqe);
        sqe.set_buf_index(buf_index);
    }
}

// SAFETY: the buffer is the only memory named; the caller of the unsafe
// constructor keeps it valid and unaccessed until every push's CQE.
unsafe impl SafeOp for ReadFixed {}
// SAFETY: as for ReadFixed (kept unmodified instead of unaccessed).
unsafe impl SafeOp for WriteFixed {}

/// Scatter read into ranges of one registered buffer:
/// `io_uring_prep_readv_fixed`.
///
/// Since Linux 6.15. Every iovec must lie inside registered buffer
/// `buf_index` (the kernel checks, `-EFAULT`). The kernel writes the ranges
/// while the read runs: they, and the iovec array, must stay valid and the
/// ranges unaccessed until the CQE has been reaped.
#[doc(alias = "IORING_OP_READV_FIXED")]
#[doc(alias = "io_uring_prep_readv_fixed")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct ReadvFixed {
    rw: Rw,
    buf_index: u16,
}

impl ReadvFixed {
    /// Reads from `fd` into the `nr` ranges of `iovecs`, all inside
    /// registered buffer `buf_index`, at offset 0.
    #[inline]
    ///
    /// # Safety
    ///
    /// For every push of the returned operation (or of a copy), the `nr`
    /// iovecs at `iovecs` and the ranges they name must stay valid, and
    /// the ranges neither read nor written by the program, until that
    /// operation's CQE has been reaped.
    pub unsafe fn new(fd: impl Into<Target>, iovecs: *const libc::iovec, nr: u32, buf_index: u16) -> Self {
        ReadvFixed { rw: Rw::new(fd.into(), iovecs as u64, nr), buf_index }
    }
}

rw_setters!(ReadvFixed);

impl Prepare for ReadvFixed {
    const CODE: u8 = sys::IORING_OP_READV_FIXED as u8;
    const USES_KEEP: bool = false;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        check_iovecs("readv_fixed", self.rw.len)
    }

    #[inline]
    fn prepare(self, sqe: &mut uring_core::Sqe, _keep: &mut Keep) {
        let ReadvFixed { rw, buf_index } = self;
        rw.prepare(Self::CODE, sqe);
        sqe.set_buf_index(buf_index);
    }
}

/// Gather write from ranges of one registered buffer:
/// `io_uring_prep_writev_fixed`.
///
/// Since Linux 6.15. As [`ReadvFixed`], in the other direction: the ranges
/// must stay unmodified until the CQE has been reaped.
#[doc(alias = "IORING_OP_WRITEV_FIXED")]
#[doc(alias = "io_uring_prep_writev_fixed")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct WritevFixed {
    rw: Rw,
    buf_index: u16,
}

impl WritevFixed {
    /// Writes the `nr` ranges of `iovecs`, all inside registered buffer
    /// `buf_index`, to `fd`, at offset 0.
    #[inline]
    ///
    /// # Safety
    ///
    /// For every push of the returned operation (or of a copy), the `nr`
    /// iovecs at `iovecs` and the ranges they name must stay valid, and
    /// the ranges unmodified, until that operation's CQE has been reaped.
    pub unsafe fn new(fd: impl Into<Target>, iovecs: *const libc::iovec, nr: u32, buf_index: u16) -> Self {
        WritevFixed { rw: Rw::new(fd.into(), iovecs as u64, nr), buf_index }
    }
}

rw_setters!(WritevFixed);

impl Prepare for WritevFixed {
    const CODE: u8 = sys::IORING_OP_WRITEV_FIXED as u8;
    const USES_KEEP: bool = false;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        check_iovecs("writev_fixed", self.rw.len)
    }

    #[inline]
    fn prepare(self, sqe: &mut uring_core::Sqe, _keep: &mut Keep) {
        let WritevFixed { rw, buf_index } = self;
        rw.prepare(Self::CODE, sqe);
        sqe.set_buf_index(buf_index);
    }
}

// SAFETY: the iovec array and its ranges are the only memory named; the
// caller of the unsafe constructor keeps them valid until every push's CQE.
unsafe impl SafeOp for ReadvFixed {}
// SAFETY: as for ReadvFixed.
unsafe impl SafeOp for WritevFixed {}

#[cold]
fn oversize_error(what: &str) -> uring_core::Error {
    uring_core::Error::InvalidArgument(format!("{what}: the buffer exceeds u32::MAX bytes"))
}

/// Named ring methods for file I/O, the common case of each operation
/// (offset given, no `RWF_*` flags), with the builders' arguments. SQE
/// flags through [`FlagOps`](crate::FlagOps) (`ring.linked().read(..)`);
/// other options through the builders and [`RingOps::push_op`].
///
/// Slices longer than `u32::MAX` bytes (or iovec counts above
/// `UIO_MAXIOV`) are [`Error::InvalidArgument`](uring_core::Error::InvalidArgument)
/// before anything is queued. [`CURRENT_POSITION`] as the offset uses the
/// file position.
pub trait FileOps {
    /// Queues a read of `buf.len()` bytes from `fd` at `offset` ([`Read`]).
    ///
    /// # Errors
    ///
    /// As [`RingOps::push_op`], and `InvalidArgument` for a buffer over
    /// `u32::MAX` bytes.
    ///
    /// # Safety
    ///
    /// As for [`Read::new`].
    unsafe fn read(
        &mut self,
        ctx: SqeContext,
        fd: impl Into<Target>,
        buf: &mut [u8],
        offset: u64,
    ) -> Result<SqeContext>;

    /// Queues a write of `buf` to `fd` at `offset` ([`Write`]).
    ///
    /// # Errors
    ///
    /// As [`read`](Self::read).
    ///
    /// # Safety
    ///
    /// As for [`Write::new`].
    unsafe fn write(&mut self, ctx: SqeContext, fd: impl Into<Target>, buf: &[u8], offset: u64) -> Result<SqeContext>;

    /// Queues a write of `'static` bytes to `fd` at `offset`
    /// ([`Write::from_static`]): safe.
    ///
    /// # Errors
    ///
    /// As [`read`](Self::read).
    fn write_static(
        &mut self,
        ctx: SqeContext,
        fd: impl Into<Target>,
        buf: &'static [u8],
        offset: u64,
    ) -> Result<SqeContext>;

    /// Queues a scatter read from `fd` at `offset` into the buffers of
    /// `iovecs` ([`Readv`]).
    ///
    /// # Errors
    ///
    /// As [`RingOps::push_op`], and `InvalidArgument` for more than
    /// `UIO_MAXIOV` iovecs.
    ///
    /// # Safety
    ///
    /// As for [`Readv::new`].
    unsafe fn readv(
        &mut self,
        ctx: SqeContext,
        fd: impl Into<Target>,
        iovecs: &[libc::iovec],
        offset: u64,
    ) -> Result<SqeContext>;

    /// Queues a gather write of the buffers of `iovecs` to `fd` at `offset`
    /// ([`Writev`]).
    ///
    /// # Errors
    ///
    /// As [`readv`](Self::readv).
    ///
    /// # Safety
    ///
    /// As for [`Writev::new`].
    unsafe fn writev(
        &mut self,
        ctx: SqeContext,
        fd: impl Into<Target>,
        iovecs: &[libc::iovec],
        offset: u64,
    ) -> Result<SqeContext>;

    /// Queues a read into `buf`, a range of registered buffer `buf_index`
    /// ([`ReadFixed`]).
    ///
    /// # Errors
    ///
    /// As [`read`](Self::read).
    ///
    /// # Safety
    ///
    /// `buf` must lie inside registered buffer `buf_index` (else the CQE is
    /// `-EFAULT`), stay registered and valid, and not be accessed by the
    /// program until this operation's CQE has been reaped.
    unsafe fn read_fixed(
        &mut self,
        ctx: SqeContext,
        fd: impl Into<Target>,
        buf: &mut [u8],
        buf_index: u16,
        offset: u64,
    ) -> Result<SqeContext>;

    /// Queues a write from `buf`, a range of registered buffer `buf_index`
    /// ([`WriteFixed`]).
    ///
    /// # Errors
    ///
    /// As [`read`](Self::read).
    ///
    /// # Safety
    ///
    /// `buf` must lie inside registered buffer `buf_index`, stay registered
    /// and valid, and not be modified until this operation's CQE has been
    /// reaped.
    unsafe fn write_fixed(
        &mut self,
        ctx: SqeContext,
        fd: impl Into<Target>,
        buf: &[u8],
        buf_index: u16,
        offset: u64,
    ) -> Result<SqeContext>;

    /// Queues a scatter read into ranges of registered buffer `buf_index`
    /// ([`ReadvFixed`], since 6.15).
    ///
    /// # Errors
    ///
    /// As [`readv`](Self::readv); `Unsupported` before 6.15.
    ///
    /// # Safety
    ///
    /// Every iovec must lie inside registered buffer `buf_index`; `iovecs`
    /// must stay valid, and the ranges must not be accessed by the program,
    /// until this operation's CQE has been reaped.
    unsafe fn readv_fixed(
        &mut self,
        ctx: SqeContext,
        fd: impl Into<Target>,
        iovecs: &[libc::iovec],
        buf_index: u16,
        offset: u64,
    ) -> Result<SqeContext>;

    /// Queues a gather write from ranges of registered buffer `buf_index`
    /// ([`WritevFixed`], since 6.15).
    ///
    /// # Errors
    ///
    /// As [`readv`](Self::readv); `Unsupported` before 6.15.
    ///
    /// # Safety
    ///
    /// Every iovec must lie inside registered buffer `buf_index`; `iovecs`
    /// must stay valid, and the ranges unmodified, until this operation's
    /// CQE has been reaped.
    unsafe fn writev_fixed(
        &mut self,
        ctx: SqeContext,
        fd: impl Into<Target>,
        iovecs: &[libc::iovec],
        buf_index: u16,
        offset: u64,
    ) -> Result<SqeContext>;

    /// Queues a read of at most `len` bytes into a buffer of provided-buffer
    /// group `group` ([`ReadProvided`]). Safe: the buffers were promised to
    /// the kernel when they were provided.
    ///
    /// # Errors
    ///
    /// As [`RingOps::push_op`].
    fn read_provided(
        &mut self,
        ctx: SqeContext,
        fd: impl Into<Target>,
        len: u32,
        group: u16,
        offset: u64,
    ) -> Result<SqeContext>;
}

fn iov_count(what: &str, iovecs: &[libc::iovec]) -> Result<u32> {
    let nr = u32::try_from(iovecs.len()).unwrap_or(u32::MAX);
    check_iovecs(what, nr)?;
    Ok(nr)
}

impl<R: RingOps + OnRing> FileOps for R {
    #[inline]
    unsafe fn read(
        &mut self,
        ctx: SqeContext,
        fd: impl Into<Target>,
        buf: &mut [u8],
        offset: u64,
    ) -> Result<SqeContext> {
        // SAFETY: forwarded to the caller (this method's contract is
        // `Read::new`'s).
        let op = unsafe { Read::new(fd, buf) };
        self.push_op(ctx, op.offset(offset))
    }

    #[inline]
    unsafe fn write(&mut self, ctx: SqeContext, fd: impl Into<Target>, buf: &[u8], offset: u64) -> Result<SqeContext> {
        // SAFETY: forwarded to the caller (`Write::new`'s contract).
        let op = unsafe { Write::new(fd, buf) };
        self.push_op(ctx, op.offset(offset))
    }

    #[inline]
    fn write_static(
        &mut self,
        ctx: SqeContext,
        fd: impl Into<Target>,
        buf: &'static [u8],
        offset: u64,
    ) -> Result<SqeContext> {
        self.push_op(ctx, Write::from_static(fd, buf).offset(offset))
    }

    #[inline]
    unsafe fn readv(
        &mut self,
        ctx: SqeContext,
        fd: impl Into<Target>,
        iovecs: &[libc::iovec],
        offset: u64,
    ) -> Result<SqeContext> {
        // SAFETY: forwarded to the caller (`Readv::new`'s contract).
        let op = unsafe { Readv::new(fd, iovecs) };
        self.push_op(ctx, op.offset(offset))
    }

    #[inline]
    unsafe fn writev(
        &mut self,
        ctx: SqeContext,
        fd: impl Into<Target>,
        iovecs: &[libc::iovec],
        offset: u64,
    ) -> Result<SqeContext> {
        // SAFETY: forwarded to the caller (`Writev::new`'s contract).
        let op = unsafe { Writev::new(fd, iovecs) };
        self.push_op(ctx, op.offset(offset))
    }

    #[inline]
    unsafe fn read_fixed(
        &mut self,
        ctx: SqeContext,
        fd: impl Into<Target>,
        buf: &mut [u8],
        buf_index: u16,
        offset: u64,
    ) -> Result<SqeContext> {
        // SAFETY: the caller keeps the registered range valid and unaccessed
        // until the CQE (this method's contract).
        let op = unsafe { ReadFixed::new(fd, buf, buf_index) }.offset(offset);
        self.push_op(ctx, op)
    }

    #[inline]
    unsafe fn write_fixed(
        &mut self,
        ctx: SqeContext,
        fd: impl Into<Target>,
        buf: &[u8],
        buf_index: u16,
        offset: u64,
    ) -> Result<SqeContext> {
        // SAFETY: the caller keeps the registered range valid and unmodified
        // until the CQE (this method's contract).
        let op = unsafe { WriteFixed::new(fd, buf, buf_index) }.offset(offset);
        self.push_op(ctx, op)
    }

    #[inline]
    unsafe fn readv_fixed(
        &mut self,
        ctx: SqeContext,
        fd: impl Into<Target>,
        iovecs: &[libc::iovec],
        buf_index: u16,
        offset: u64,
    ) -> Result<SqeContext> {
        let nr = iov_count("readv_fixed", iovecs)?;
        // SAFETY: the caller keeps the array and the registered ranges valid
        // (and the ranges unaccessed) until the CQE (this method's contract).
        let op = unsafe { ReadvFixed::new(fd, iovecs.as_ptr(), nr, buf_index) }.offset(offset);
        self.push_op(ctx, op)
    }

    #[inline]
    unsafe fn writev_fixed(
        &mut self,
        ctx: SqeContext,
        fd: impl Into<Target>,
        iovecs: &[libc::iovec],
        buf_index: u16,
        offset: u64,
    ) -> Result<SqeContext> {
        let nr = iov_count("writev_fixed", iovecs)?;
        // SAFETY: the caller keeps the array and the registered ranges valid
        // (and the ranges unmodified) until the CQE (this method's contract).
        let op = unsafe { WritevFixed::new(fd, iovecs.as_ptr(), nr, buf_index) }.offset(offset);
        self.push_op(ctx, op)
    }

    #[inline]
    fn read_provided(
        &mut self,
        ctx: SqeContext,
        fd: impl Into<Target>,
        len: u32,
        group: u16,
        offset: u64,
    ) -> Result<SqeContext> {
        self.push_op(ctx, ReadProvided::new(fd, len, group).offset(offset))
    }
}
