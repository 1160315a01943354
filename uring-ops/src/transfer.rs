//! Transfers and hints: [`Splice`], [`Tee`], [`Pipe`] creation,
//! [`SyncFileRange`], [`Fadvise`], [`Madvise`].
//!
//! Splice, tee, `sync_file_range` and `fadvise` name no memory (files,
//! offsets and lengths only) and are safe. Pipe creation writes the two
//! new descriptors to caller memory when it runs, and `madvise` acts on
//! caller memory, so both are `unsafe` to submit.

use std::os::fd::RawFd;

use uring_core::{Error, Features, Keep, Result, Sqe, SqeContext, sys};

use crate::flags::sealed::OnRing;
use crate::op::{FileDest, Prepare, SafeOp, Target};
use crate::ring::RingOps;
use crate::timeout::require_version;

bitflags::bitflags! {
    /// `SPLICE_F_*` flags of [`Splice`] and [`Tee`]. (The fixed input file,
    /// `SPLICE_F_FD_IN_FIXED`, is set from the input [`Target`].)
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct SpliceFlags: u32 {
        /// `SPLICE_F_MOVE`: move pages instead of copying (a hint).
        const MOVE = libc::SPLICE_F_MOVE;
        /// `SPLICE_F_NONBLOCK`: do not block on the pipes (the files may
        /// still block).
        const NONBLOCK = libc::SPLICE_F_NONBLOCK;
        /// `SPLICE_F_MORE`: more data will follow (a hint to sockets).
        const MORE = libc::SPLICE_F_MORE;
        /// `SPLICE_F_GIFT`: unused by splice.
        const GIFT = libc::SPLICE_F_GIFT;
    }
}

/// Rejects `SPLICE_F_*` bits the kernel does not define.
fn check_splice_flags(flags: SpliceFlags) -> Result<()> {
    if flags.bits() & !SpliceFlags::all().bits() != 0 {
        return Err(Error::InvalidArgument(format!(
            "splice flags {:#x}: only SPLICE_F_MOVE, NONBLOCK, MORE and GIFT are defined",
            flags.bits()
        )));
    }
    Ok(())
}

/// `sqe.splice_fd_in` and the `SPLICE_F_FD_IN_FIXED` bit for an input file.
#[inline]
fn fd_in(target: Target) -> (i32, u32) {
    match target {
        Target::Fd(fd) => (fd, 0),
        Target::Fixed(slot) => (slot as i32, sys::SPLICE_F_FD_IN_FIXED),
    }
}

/// The kernel's "no offset" (`-1` as a 64-bit value).
const NO_OFFSET: u64 = u64::MAX;

/// Moves up to `len` bytes between two files, one of which is a pipe, in
/// the kernel: `io_uring_prep_splice`.
///
/// Since Linux 5.7. An offset of `None` uses (and advances) the file's
/// position; a pipe must have `None`. The result is the number of bytes
/// moved (0 at end of input), or `-EINVAL` when neither file is a pipe,
/// `-ESPIPE` for an offset on a pipe, `-EBADF` for a bad descriptor. A
/// fixed (registered) input file uses `SPLICE_F_FD_IN_FIXED`; a fixed
/// output file, `IOSQE_FIXED_FILE`. The kernel always runs it on an io-wq
/// worker, where a splice from an empty pipe blocks until data (or the end
/// of input) arrives, and a [`LinkTimeout`](crate::timeout::LinkTimeout)
/// does not interrupt it; [`SpliceFlags::NONBLOCK`] makes it `-EAGAIN`
/// instead.
#[doc(alias = "IORING_OP_SPLICE")]
#[doc(alias = "io_uring_prep_splice")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct Splice {
    fd_in: Target,
    off_in: Option<u64>,
    fd_out: Target,
    off_out: Option<u64>,
    len: u32,
    flags: SpliceFlags,
}

impl Splice {
    /// Moves up to `len` bytes from `fd_in` (at `off_in`) to `fd_out` (at
    /// `off_out`).
    #[inline]
    pub fn new(
        fd_in: impl Into<Target>,
        off_in: Option<u64>,
        fd_out: impl Into<Target>,
        off_out: Option<u64>,
        len: u32,
    ) -> Self {
        Splice { fd_in: fd_in.into(), off_in, fd_out: fd_out.into(), off_out, len, flags: SpliceFlags::empty() }
    }

    /// The `SPLICE_F_*` flags.
    #[inline]
    pub const fn flags(mut self, flags: SpliceFlags) -> Self {
        self.flags = flags;
        self
    }
}

/// Rejects an offset that is not a valid `loff_t`.
fn check_offset(what: &str, off: Option<u64>) -> Result<()> {
    match off {
        Some(o) if o > i64::MAX as u64 => {
            Err(Error::InvalidArgument(format!("{what} offset {o} exceeds i64::MAX (the kernel's loff_t)")))
        }
        _ => Ok(()),
    }
}

impl Prepare for Splice {
    const CODE: u8 = sys::IORING_OP_SPLICE as u8;
    const USES_KEEP: bool = false;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        check_splice_flags(self.flags)?;
        check_offset("splice input", self.off_in)?;
        check_offset("splice output", self.off_out)
    }

    #[inline]
    fn prepare(self, sqe: &mut Sqe, _keep: &mut Keep) {
        let Splice { fd_in: input, off_in, fd_out, off_out, len, flags } = self;
        *sqe = Sqe::new(Self::CODE);
        fd_out.apply(sqe);
        let (raw_in, fixed_in) = fd_in(input);
        sqe.set_splice_fd_in(raw_in);
        sqe.set_splice_off_in(off_in.unwrap_or(NO_OFFSET));
        sqe.set_off(off_out.unwrap_or(NO_OFFSET));
        sqe.len = len;
        sqe.set_op_flags(flags.bits() | fixed_in);
    }
}

// SAFETY: files, offsets and a length; the SQE names no memory.
unsafe impl SafeOp for Splice {}

/// Duplicates up to `len` bytes from one pipe into another without
/// consuming them: `io_uring_prep_tee`.
///
/// Since Linux 5.8. Both files must be pipes. The result is the number of
/// bytes duplicated (0 when the input is empty and has no writers),
/// `-EINVAL` when a file is not a pipe or both are the same pipe.
#[doc(alias = "IORING_OP_TEE")]
#[doc(alias = "io_uring_prep_tee")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct Tee {
    fd_in: Target,
    fd_out: Target,
    len: u32,
    flags: SpliceFlags,
}

impl Tee {
    /// Duplicates up to `len` bytes from pipe `fd_in` into pipe `fd_out`.
    #[inline]
    pub fn new(fd_in: impl Into<Target>, fd_out: impl Into<Target>, len: u32) -> Self {
        Tee { fd_in: fd_in.into(), fd_out: fd_out.into(), len, flags: SpliceFlags::empty() }
    }

    /// The `SPLICE_F_*` flags.
    #[inline]
    pub const fn flags(mut self, flags: SpliceFlags) -> Self {
        self.flags = flags;
        self
    }
}

impl Prepare for Tee {
    const CODE: u8 = sys::IORING_OP_TEE as u8;
    const USES_KEEP: bool = false;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        check_splice_flags(self.flags)
    }

    #[inline]
    fn prepare(self, sqe: &mut Sqe, _keep: &mut Keep) {
        let Tee { fd_in: input, fd_out, len, flags } = self;
        *sqe = Sqe::new(Self::CODE);
        fd_out.apply(sqe);
        let (raw_in, fixed_in) = fd_in(input);
        sqe.set_splice_fd_in(raw_in);
        sqe.len = len;
        sqe.set_op_flags(flags.bits() | fixed_in);
    }
}

// SAFETY: two files and a length; the SQE names no memory.
unsafe impl SafeOp for Tee {}

/// Creates a pipe: `io_uring_prep_pipe` (`io_uring_prep_pipe_direct` with
/// [`dest`](Self::dest)).
///
/// Since Linux 6.16. When the request runs, the kernel writes the read end
/// and the write end into `fds` (`[read, write]`): descriptors, or with a
/// direct destination the two registered-table slots (a
/// [`FileDest::Slot`] `n` uses `n` and `n + 1`). The result is 0, or
/// `-EMFILE`, `-ENFILE`, `-EFAULT`. The descriptors get `O_CLOEXEC`
/// unless [`flags`](Self::flags) says otherwise (registered slots have no
/// close-on-exec, and the flag is dropped for them).
///
/// `fds` is written at execution time, which can be after submission (an
/// io-wq worker, a linked chain), so it cannot live in the SQ slot's
/// `Keep`: the `unsafe` constructor takes the obligation, and the
/// operation is then a [`SafeOp`] ([`TransferOps::pipe`] takes the same
/// argument).
#[doc(alias = "IORING_OP_PIPE")]
#[doc(alias = "io_uring_prep_pipe")]
#[doc(alias = "io_uring_prep_pipe_direct")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct Pipe {
    fds: *mut [RawFd; 2],
    flags: i32,
    dest: FileDest,
}

impl Pipe {
    /// A pipe whose two ends are written to `fds` when it completes.
    ///
    /// # Safety
    ///
    /// For every push of the returned operation (or of a copy of it),
    /// `fds` must stay valid, and must be neither read nor written by the
    /// program, until that operation's CQE has been reaped: the kernel
    /// writes it while the operation runs (the borrow ends here; the
    /// obligation does not).
    #[inline]
    pub unsafe fn new(fds: &mut [RawFd; 2]) -> Self {
        Pipe { fds, flags: libc::O_CLOEXEC, dest: FileDest::Fd }
    }

    /// The `pipe2` flags (`O_CLOEXEC`, `O_NONBLOCK`, `O_DIRECT`); replaces
    /// the default `O_CLOEXEC`.
    #[inline]
    pub const fn flags(mut self, flags: i32) -> Self {
        self.flags = flags;
        self
    }

    /// Where the two ends go: descriptors (the default) or the registered
    /// file table.
    #[inline]
    pub const fn dest(mut self, dest: FileDest) -> Self {
        self.dest = dest;
        self
    }
}

impl Prepare for Pipe {
    const CODE: u8 = sys::IORING_OP_PIPE as u8;
    const USES_KEEP: bool = false;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        if self.flags & !(libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_DIRECT) != 0 {
            return Err(Error::InvalidArgument(format!(
                "pipe flags {:#x}: only O_CLOEXEC, O_NONBLOCK and O_DIRECT are accepted",
                self.flags
            )));
        }
        if self.fds.is_null() {
            return Err(Error::InvalidArgument("pipe: the fds pointer is null".into()));
        }
        if let FileDest::Slot(slot) = self.dest
            && slot >= i32::MAX as u32 - 1
        {
            return Err(Error::InvalidArgument(format!("pipe: slot {slot} leaves no room for the write end")));
        }
        Ok(())
    }

    #[inline]
    fn prepare(self, sqe: &mut Sqe, _keep: &mut Keep) {
        let Pipe { fds, flags, dest } = self;
        *sqe = Sqe::new(Self::CODE);
        sqe.set_addr(fds as u64);
        // The kernel refuses O_CLOEXEC for registered slots (EINVAL).
        let flags = if dest.is_direct() { flags & !libc::O_CLOEXEC } else { flags };
        sqe.set_op_flags(flags as u32);
        sqe.set_file_index(dest.file_index());
    }
}

// SAFETY: `fds` is the only memory named; the caller of the unsafe
// constructor keeps it valid and unaccessed until every push's CQE.
unsafe impl SafeOp for Pipe {}

/// Starts writeback of, or waits for, a range of a file:
/// `io_uring_prep_sync_file_range`.
///
/// Since Linux 5.2. `flags` are `SYNC_FILE_RANGE_WAIT_BEFORE`, `_WRITE`,
/// `_WAIT_AFTER` (0 does nothing); a `len` of 0 means to the end of the
/// file. The result is 0 or a negative errno (`-ESPIPE` on a pipe,
/// `-EBADF`).
#[doc(alias = "IORING_OP_SYNC_FILE_RANGE")]
#[doc(alias = "io_uring_prep_sync_file_range")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct SyncFileRange {
    fd: Target,
    offset: u64,
    len: u32,
    flags: u32,
}

impl SyncFileRange {
    /// Writes back `len` bytes at `offset` of `fd` and waits for them
    /// (`SYNC_FILE_RANGE_WAIT_BEFORE | WRITE | WAIT_AFTER`).
    #[inline]
    pub fn new(fd: impl Into<Target>, offset: u64, len: u32) -> Self {
        SyncFileRange {
            fd: fd.into(),
            offset,
            len,
            flags: libc::SYNC_FILE_RANGE_WAIT_BEFORE | libc::SYNC_FILE_RANGE_WRITE | libc::SYNC_FILE_RANGE_WAIT_AFTER,
        }
    }

    /// The `SYNC_FILE_RANGE_*` flags; replaces the default (all three).
    #[inline]
    pub const fn flags(mut self, flags: u32) -> Self {
        self.flags = flags;
        self
    }
}

impl Prepare for SyncFileRange {
    const CODE: u8 = sys::IORING_OP_SYNC_FILE_RANGE as u8;
    const USES_KEEP: bool = false;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        let known = libc::SYNC_FILE_RANGE_WAIT_BEFORE | libc::SYNC_FILE_RANGE_WRITE | libc::SYNC_FILE_RANGE_WAIT_AFTER;
        if self.flags & !known != 0 {
            return Err(Error::InvalidArgument(format!(
                "sync_file_range flags {:#x}: only SYNC_FILE_RANGE_WAIT_BEFORE, WRITE and WAIT_AFTER are defined",
                self.flags
            )));
        }
        check_offset("sync_file_range", Some(self.offset))
    }

    #[inline]
    fn prepare(self, sqe: &mut Sqe, _keep: &mut Keep) {
        let SyncFileRange { fd, offset, len, flags } = self;
        *sqe = Sqe::new(Self::CODE);
        fd.apply(sqe);
        sqe.set_off(offset);
        sqe.len = len;
        sqe.set_op_flags(flags);
    }
}

// SAFETY: a file, an offset and a length; the SQE names no memory.
unsafe impl SafeOp for SyncFileRange {}

/// Lengths above `u32::MAX` go in the 64-bit field (since Linux 6.11).
#[inline]
fn check_len64(features: &Features, what: &str, len: u64) -> Result<()> {
    if len > u64::from(u32::MAX) {
        require_version(features, (6, 11), &format!("{what} lengths above 4 GiB"))?;
    }
    Ok(())
}

/// Declares how a file range will be accessed: `io_uring_prep_fadvise`
/// (`io_uring_prep_fadvise64`).
///
/// Since Linux 5.6 (lengths above 4 GiB since 6.11). `advice` is a
/// `POSIX_FADV_*` value; a `len` of 0 means to the end of the file. The
/// result is 0, `-EINVAL` for unknown advice, `-ESPIPE` on a pipe.
#[doc(alias = "IORING_OP_FADVISE")]
#[doc(alias = "io_uring_prep_fadvise")]
#[doc(alias = "io_uring_prep_fadvise64")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct Fadvise {
    fd: Target,
    offset: u64,
    len: u64,
    advice: i32,
}

impl Fadvise {
    /// `advice` for `len` bytes of `fd` at `offset`.
    #[inline]
    pub fn new(fd: impl Into<Target>, offset: u64, len: u64, advice: i32) -> Self {
        Fadvise { fd: fd.into(), offset, len, advice }
    }
}

impl Prepare for Fadvise {
    const CODE: u8 = sys::IORING_OP_FADVISE as u8;
    const USES_KEEP: bool = false;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        check_len64(features, "fadvise", self.len)
    }

    #[inline]
    fn prepare(self, sqe: &mut Sqe, _keep: &mut Keep) {
        let Fadvise { fd, offset, len, advice } = self;
        *sqe = Sqe::new(Self::CODE);
        fd.apply(sqe);
        sqe.set_off(offset);
        // 32-bit lengths in `len` (every kernel), larger ones in `addr`
        // (which kernels since 6.11 prefer when non-zero).
        match u32::try_from(len) {
            Ok(short) => sqe.len = short,
            Err(_) => sqe.set_addr(len),
        }
        sqe.set_op_flags(advice as u32);
    }
}

// SAFETY: a file, an offset and a length; the SQE names no memory.
unsafe impl SafeOp for Fadvise {}

/// Advises the kernel about a range of this process's memory:
/// `io_uring_prep_madvise` (`io_uring_prep_madvise64`).
///
/// Since Linux 5.6 (lengths above 4 GiB since 6.11). `advice` is a
/// `MADV_*` value; `addr` must be page-aligned. The result is 0 or a
/// negative errno (`-EINVAL` for unaligned addresses or unknown advice,
/// `-ENOMEM` for unmapped ranges).
///
/// Not a [`SafeOp`]: some advice changes the contents of the range
/// (`MADV_DONTNEED` zero-fills private anonymous memory, `MADV_FREE` may,
/// `MADV_REMOVE` punches holes), behind any Rust borrow of it.
#[doc(alias = "IORING_OP_MADVISE")]
#[doc(alias = "io_uring_prep_madvise")]
#[doc(alias = "io_uring_prep_madvise64")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct Madvise {
    addr: *mut libc::c_void,
    len: u64,
    advice: i32,
}

impl Madvise {
    /// `advice` for `len` bytes at `addr`.
    #[inline]
    pub const fn new(addr: *mut libc::c_void, len: u64, advice: i32) -> Self {
        Madvise { addr, len, advice }
    }
}

impl Prepare for Madvise {
    const CODE: u8 = sys::IORING_OP_MADVISE as u8;
    const USES_KEEP: bool = false;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        check_len64(features, "madvise", self.len)
    }

    #[inline]
    fn prepare(self, sqe: &mut Sqe, _keep: &mut Keep) {
        let Madvise { addr, len, advice } = self;
        *sqe = Sqe::new(Self::CODE);
        sqe.fd = -1;
        sqe.set_addr(addr as u64);
        // 32-bit lengths in `len` (every kernel), larger ones in `off`
        // (which kernels since 6.11 prefer when non-zero).
        match u32::try_from(len) {
            Ok(short) => sqe.len = short,
            Err(_) => sqe.set_off(len),
        }
        sqe.set_op_flags(advice as u32);
    }
}

/// Transfer operations on a [`Ring`](uring_core::Ring). Every method only queues; submit (or
/// wait) to run them. Flags and fixed files go through the builders and
/// [`RingOps::push_op`].
pub trait TransferOps {
    /// Queues a [`Splice`] of up to `len` bytes from `fd_in` at `off_in`
    /// to `fd_out` at `off_out` (`None`: the file position; a pipe must
    /// have `None`).
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    fn splice(
        &mut self,
        ctx: SqeContext,
        fd_in: Target,
        off_in: Option<u64>,
        fd_out: Target,
        off_out: Option<u64>,
        len: u32,
    ) -> Result<SqeContext>;

    /// Queues a [`Tee`] of up to `len` bytes from pipe `fd_in` to pipe
    /// `fd_out`.
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    fn tee(&mut self, ctx: SqeContext, fd_in: Target, fd_out: Target, len: u32) -> Result<SqeContext>;

    /// Queues a [`Pipe`] with `O_CLOEXEC`; its `[read, write]` descriptors
    /// are written to `fds` when it completes.
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    ///
    /// # Safety
    ///
    /// As for [`Pipe::new`].
    unsafe fn pipe(&mut self, ctx: SqeContext, fds: &mut [RawFd; 2]) -> Result<SqeContext>;

    /// Queues a [`SyncFileRange`] that writes back `len` bytes of `fd` at
    /// `offset` and waits for them.
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    fn sync_file_range(&mut self, ctx: SqeContext, fd: Target, offset: u64, len: u32) -> Result<SqeContext>;

    /// Queues a [`Fadvise`]: `advice` (`POSIX_FADV_*`) for `len` bytes of
    /// `fd` at `offset`.
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    fn fadvise(&mut self, ctx: SqeContext, fd: Target, offset: u64, len: u64, advice: i32) -> Result<SqeContext>;

    /// Queues a [`Madvise`]: `advice` (`MADV_*`) for `len` bytes at `addr`.
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    ///
    /// # Safety
    ///
    /// The range must be memory of this process that the advice may act on
    /// until the CQE has been reaped: advice that discards or replaces
    /// contents (`MADV_DONTNEED`, `MADV_FREE`, `MADV_REMOVE`, …) must only
    /// name memory no Rust reference or live value depends on, and the
    /// range must not be unmapped and reused before the CQE.
    unsafe fn madvise(&mut self, ctx: SqeContext, addr: *mut libc::c_void, len: u64, advice: i32)
    -> Result<SqeContext>;
}

impl<R: RingOps + OnRing> TransferOps for R {
    #[inline]
    fn splice(
        &mut self,
        ctx: SqeContext,
        fd_in: Target,
        off_in: Option<u64>,
        fd_out: Target,
        off_out: Option<u64>,
        len: u32,
    ) -> Result<SqeContext> {
        self.push_op(ctx, Splice::new(fd_in, off_in, fd_out, off_out, len))
    }

    #[inline]
    fn tee(&mut self, ctx: SqeContext, fd_in: Target, fd_out: Target, len: u32) -> Result<SqeContext> {
        self.push_op(ctx, Tee::new(fd_in, fd_out, len))
    }

    #[inline]
    unsafe fn pipe(&mut self, ctx: SqeContext, fds: &mut [RawFd; 2]) -> Result<SqeContext> {
        // SAFETY: forwarded to the caller (`Pipe::new`'s contract).
        let op = unsafe { Pipe::new(fds) };
        self.push_op(ctx, op)
    }

    #[inline]
    fn sync_file_range(&mut self, ctx: SqeContext, fd: Target, offset: u64, len: u32) -> Result<SqeContext> {
        self.push_op(ctx, SyncFileRange::new(fd, offset, len))
    }

    #[inline]
    fn fadvise(&mut self, ctx: SqeContext, fd: Target, offset: u64, len: u64, advice: i32) -> Result<SqeContext> {
        self.push_op(ctx, Fadvise::new(fd, offset, len, advice))
    }

    #[inline]
    unsafe fn madvise(
        &mut self,
        ctx: SqeContext,
        addr: *mut libc::c_void,
        len: u64,
        advice: i32,
    ) -> Result<SqeContext> {
        // SAFETY: forwarded to the caller (the range and what the advice
        // does to it).
        unsafe { self.push_op_unchecked(ctx, Madvise::new(addr, len, advice)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::Fixed;

    fn prepared<O: Prepare>(op: O) -> Sqe {
        let mut sqe = Sqe::default();
        op.prepare(&mut sqe, &mut Keep::new());
        sqe
    }

    #[test]
    fn splice_fields_and_fixed_files() {
        let sqe = prepared(Splice::new(Fixed(2), None, Fixed(5), Some(8), 100).flags(SpliceFlags::MORE));
        assert_eq!((sqe.splice_fd_in(), sqe.fd, sqe.len), (2, 5, 100));
        assert_eq!(sqe.splice_off_in(), u64::MAX, "no input offset is -1");
        assert_eq!(sqe.off(), 8);
        assert_eq!(sqe.op_flags(), libc::SPLICE_F_MORE | sys::SPLICE_F_FD_IN_FIXED);
        assert_eq!(sqe.flags, sys::IOSQE_FIXED_FILE as u8, "the output slot");
        let sqe = prepared(Tee::new(3, 4, 9));
        assert_eq!((sqe.splice_fd_in(), sqe.fd, sqe.len, sqe.op_flags(), sqe.off()), (3, 4, 9, 0, 0));
    }

    #[test]
    fn long_advice_lengths_use_the_64_bit_fields() {
        let sqe = prepared(Fadvise::new(3, 10, 1 << 40, libc::POSIX_FADV_DONTNEED));
        assert_eq!((sqe.off(), sqe.addr(), sqe.len), (10, 1 << 40, 0));
        let sqe = prepared(Fadvise::new(3, 10, 4096, libc::POSIX_FADV_DONTNEED));
        assert_eq!((sqe.addr(), sqe.len), (0, 4096));
        let sqe = prepared(Madvise::new(0x1000 as *mut libc::c_void, 1 << 33, libc::MADV_DONTNEED));
        assert_eq!((sqe.addr(), sqe.off(), sqe.len), (0x1000, 1 << 33, 0));
    }

    #[test]
    fn a_direct_pipe_drops_cloexec() {
        let mut fds = [0; 2];
        // SAFETY: only prepared, never pushed.
        let sqe = prepared(unsafe { Pipe::new(&mut fds) }.dest(FileDest::Slot(3)));
        assert_eq!(sqe.op_flags(), 0);
        assert_eq!(sqe.file_index(), 4);
        assert_eq!(sqe.addr(), &mut fds as *mut _ as u64);
        // SAFETY: as above.
        let sqe = prepared(unsafe { Pipe::new(&mut fds) });
        assert_eq!((sqe.op_flags() as i32, sqe.file_index(), sqe.fd), (libc::O_CLOEXEC, 0, 0));
    }
}
