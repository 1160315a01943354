//! File management: `openat`, `openat2`, `close`, `fsync` (and
//! `fdatasync`), `fallocate`, `ftruncate`, `statx`, `renameat`,
//! `unlinkat`, `mkdirat`, `symlinkat`, `linkat`.
//!
//! # Paths
//!
//! Paths are taken as `impl AsRef<Path>` and converted to C strings when
//! the builder is made; a path with an interior NUL byte is
//! [`Error::InvalidArgument`] when the operation is pushed, before any SQE
//! is acquired. The string is moved into the SQ slot's [`Keep`]: the kernel
//! copies every path of these opcodes while it prepares the request
//! (`getname` in `io_uring/openclose.c`, `statx.c`, `fs.c`, `xattr.c`), so
//! the operations that name nothing else are [`SafeOp`]s.
//!
//! Directory arguments are plain descriptors (`libc::AT_FDCWD` for the
//! working directory): the kernel refuses registered files for every
//! path-based opcode (`-EBADF`).

use std::ffi::CString;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use uring_core::{Error, Features, Keep, Result, Sqe, SqeContext, sys};

use crate::flags::sealed::OnRing;
use crate::op::{FileDest, Prepare, SafeOp, Target};
use crate::ring::RingOps;

/// A path converted for the kernel, or the path that could not be (it has
/// an interior NUL byte); the error is reported by the operation's check.
#[derive(Debug, Clone)]
pub(crate) enum CPath {
    Ok(CString),
    Nul(PathBuf),
}

impl CPath {
    pub(crate) fn new(path: impl AsRef<Path>) -> Self {
        let path = path.as_ref();
        match CString::new(path.as_os_str().as_bytes()) {
            Ok(c) => CPath::Ok(c),
            Err(_) => CPath::Nul(path.to_path_buf()),
        }
    }

    /// A name that is not a path (an xattr name), with the same check.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Self {
        match CString::new(bytes) {
            Ok(c) => CPath::Ok(c),
            Err(_) => CPath::Nul(PathBuf::from(std::ffi::OsStr::from_bytes(bytes))),
        }
    }

    /// `InvalidArgument` naming `what` if the path has an interior NUL.
    pub(crate) fn check(&self, what: &str) -> Result<()> {
        match self {
            CPath::Ok(_) => Ok(()),
            CPath::Nul(p) => Err(Error::InvalidArgument(format!("{what}: {p:?} contains a NUL byte"))),
        }
    }

    /// The C string; an unchecked bad path becomes the empty string, which
    /// the kernel answers with `-ENOENT` (the push path never gets here:
    /// it checks first).
    pub(crate) fn into_cstring(self) -> CString {
        match self {
            CPath::Ok(c) => c,
            CPath::Nul(_) => CString::default(),
        }
    }
}

fn invalid(msg: String) -> Error {
    Error::InvalidArgument(msg)
}

/// Opens a file relative to a directory: `io_uring_prep_openat`
/// (`io_uring_prep_openat_direct` with a fixed-table [`FileDest`]).
///
/// Since Linux 5.6 (direct since 5.15). The CQE's result is the new
/// descriptor, the slot chosen (for [`FileDest::AnySlot`]), 0 (for
/// [`FileDest::Slot`]), or `-errno`. The path is copied by the kernel at
/// submission (held in the [`Keep`] until then), so this is a [`SafeOp`].
#[doc(alias = "IORING_OP_OPENAT")]
#[doc(alias = "io_uring_prep_openat")]
#[doc(alias = "io_uring_prep_openat_direct")]
#[derive(Debug, Clone)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct OpenAt {
    dir: RawFd,
    path: CPath,
    flags: i32,
    mode: u32,
    dest: FileDest,
}

impl OpenAt {
    /// Opens `path` relative to `dir` (`libc::AT_FDCWD`: the working
    /// directory) with `open(2)` `flags` and, when creating, `mode`.
    pub fn new(dir: RawFd, path: impl AsRef<Path>, flags: i32, mode: u32) -> Self {
        OpenAt { dir, path: CPath::new(path), flags, mode, dest: FileDest::Fd }
    }

    /// Where the file goes: a descriptor (the default) or the registered
    /// file table. A direct open must not ask for `O_CLOEXEC`.
    pub const fn dest(mut self, dest: FileDest) -> Self {
        self.dest = dest;
        self
    }
}

fn check_direct_cloexec(what: &str, dest: FileDest, flags: u64) -> Result<()> {
    if dest.is_direct() && flags & libc::O_CLOEXEC as u64 != 0 {
        return Err(invalid(format!("{what}: O_CLOEXEC cannot apply to a registered-file slot; drop it")));
    }
    Ok(())
}

impl Prepare for OpenAt {
    const CODE: u8 = sys::IORING_OP_OPENAT as u8;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        self.path.check("openat")?;
        check_direct_cloexec("openat", self.dest, self.flags as u32 as u64)
    }

    fn prepare(self, sqe: &mut Sqe, keep: &mut Keep) {
        let OpenAt { dir, path, flags, mode, dest } = self;
        *sqe = Sqe::new(Self::CODE);
        sqe.fd = dir;
        sqe.set_addr(keep.hold(path.into_cstring()).as_ptr() as u64);
        sqe.len = mode;
        sqe.set_op_flags(flags as u32);
        sqe.set_file_index(dest.file_index());
    }
}

// SAFETY: the path is in the Keep, copied by the kernel at prep (getname).
unsafe impl SafeOp for OpenAt {}

bitflags::bitflags! {
    /// `RESOLVE_*` flags of `openat2(2)`: how the path may be resolved.
    /// Unknown bits are kept (and rejected by [`OpenAt2`]'s check).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct ResolveFlags: u64 {
        /// `RESOLVE_NO_XDEV`: no mount-point crossing.
        const NO_XDEV = sys::RESOLVE_NO_XDEV as u64;
        /// `RESOLVE_NO_MAGICLINKS`: no `/proc/*/fd`-style links.
        const NO_MAGICLINKS = sys::RESOLVE_NO_MAGICLINKS as u64;
        /// `RESOLVE_NO_SYMLINKS`: no symbolic links at all.
        const NO_SYMLINKS = sys::RESOLVE_NO_SYMLINKS as u64;
        /// `RESOLVE_BENEATH`: stay beneath the directory (`-EXDEV` otherwise).
        const BENEATH = sys::RESOLVE_BENEATH as u64;
        /// `RESOLVE_IN_ROOT`: treat the directory as the root.
        const IN_ROOT = sys::RESOLVE_IN_ROOT as u64;
        /// `RESOLVE_CACHED`: only from the dentry cache (`-EAGAIN` otherwise).
        const CACHED = sys::RESOLVE_CACHED as u64;
        const _ = !0;
    }
}

const KNOWN_RESOLVE: u64 = ResolveFlags::NO_XDEV.bits()
    | ResolveFlags::NO_MAGICLINKS.bits()
    | ResolveFlags::NO_SYMLINKS.bits()
    | ResolveFlags::BENEATH.bits()
    | ResolveFlags::IN_ROOT.bits()
    | ResolveFlags::CACHED.bits();

/// Opens a file with an `open_how`: `io_uring_prep_openat2`
/// (`io_uring_prep_openat2_direct` with a fixed-table [`FileDest`]).
///
/// Since Linux 5.6 (direct since 5.15). Unlike [`OpenAt`], unknown open
/// flags, a mode without `O_CREAT`/`O_TMPFILE`, and unknown resolve flags
/// are errors; this builder rejects them before submission. The
/// `open_how` and the path are copied by the kernel at submission (held in
/// the [`Keep`]), so this is a [`SafeOp`].
#[doc(alias = "IORING_OP_OPENAT2")]
#[doc(alias = "io_uring_prep_openat2")]
#[doc(alias = "io_uring_prep_openat2_direct")]
#[derive(Debug, Clone)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct OpenAt2 {
    dir: RawFd,
    path: CPath,
    flags: u64,
    mode: u64,
    resolve: ResolveFlags,
    dest: FileDest,
}

impl OpenAt2 {
    /// Opens `path` relative to `dir` with `open(2)` `flags`; no mode, no
    /// resolve restrictions.
    pub fn new(dir: RawFd, path: impl AsRef<Path>, flags: i32) -> Self {
        OpenAt2 {
            dir,
            path: CPath::new(path),
            flags: flags as u32 as u64,
            mode: 0,
            resolve: ResolveFlags::empty(),
            dest: FileDest::Fd,
        }
    }

    /// The mode of a created file (only with `O_CREAT` or `O_TMPFILE`).
    pub const fn mode(mut self, mode: u32) -> Self {
        self.mode = mode as u64;
        self
    }

    /// How the path may be resolved (`RESOLVE_*`).
    pub const fn resolve(mut self, resolve: ResolveFlags) -> Self {
        self.resolve = resolve;
        self
    }

    /// Where the file goes: a descriptor (the default) or the registered
    /// file table.
    pub const fn dest(mut self, dest: FileDest) -> Self {
        self.dest = dest;
        self
    }
}

impl Prepare for OpenAt2 {
    const CODE: u8 = sys::IORING_OP_OPENAT2 as u8;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        self.path.check("openat2")?;
        check_direct_cloexec("openat2", self.dest, self.flags)?;
        let unknown = self.resolve.bits() & !KNOWN_RESOLVE;
        if unknown != 0 {
            return Err(invalid(format!("openat2: unknown RESOLVE_* bits {unknown:#x}")));
        }
        if self.resolve.contains(ResolveFlags::BENEATH | ResolveFlags::IN_ROOT) {
            return Err(invalid("openat2: RESOLVE_BENEATH and RESOLVE_IN_ROOT exclude each other".into()));
        }
        // O_TMPFILE includes O_DIRECTORY's bit: test for all of it.
        let tmpfile = libc::O_TMPFILE as u32 as u64;
        let creates = self.flags & libc::O_CREAT as u64 != 0 || self.flags & tmpfile == tmpfile;
        if self.mode != 0 && !creates {
            return Err(invalid(format!(
                "openat2: mode {:#o} without O_CREAT or O_TMPFILE (the kernel refuses it)",
                self.mode
            )));
        }
        if self.mode & !0o7777 != 0 {
            return Err(invalid(format!("openat2: mode {:#o} has bits beyond 0o7777", self.mode)));
        }
        if self.flags >> 32 != 0 {
            return Err(invalid(format!("openat2: open flags {:#x} do not fit 32 bits", self.flags)));
        }
        Ok(())
    }

    fn prepare(self, sqe: &mut Sqe, keep: &mut Keep) {
        let OpenAt2 { dir, path, flags, mode, resolve, dest } = self;
        *sqe = Sqe::new(Self::CODE);
        sqe.fd = dir;
        let how = keep.inline(sys::open_how { flags, mode, resolve: resolve.bits() });
        sqe.set_addr2(how as *mut sys::open_how as u64);
        sqe.len = size_of::<sys::open_how>() as u32;
        sqe.set_addr(keep.hold(path.into_cstring()).as_ptr() as u64);
        sqe.set_file_index(dest.file_index());
    }
}

// SAFETY: path and open_how are in the Keep; the kernel copies both at prep
// (getname, copy_struct_from_user in io_openat2_prep).
unsafe impl SafeOp for OpenAt2 {}

/// Closes a descriptor or empties a registered-file slot:
/// `io_uring_prep_close` (`io_uring_prep_close_direct` for a slot).
///
/// Since Linux 5.6 (slots since 5.15). This is `IORING_OP_CLOSE`, not ring
/// teardown. The CQE's result is 0 or `-errno` (`-EBADF` for a descriptor
/// that is not open, or for an io_uring descriptor).
#[doc(alias = "IORING_OP_CLOSE")]
#[doc(alias = "io_uring_prep_close")]
#[doc(alias = "io_uring_prep_close_direct")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct Close {
    target: Target,
}

impl Close {
    /// Closes `target`: a descriptor, or a [`Fixed`](crate::Fixed) slot.
    #[inline]
    pub fn new(target: impl Into<Target>) -> Self {
        Close { target: target.into() }
    }
}

impl Prepare for Close {
    const CODE: u8 = sys::IORING_OP_CLOSE as u8;
    const USES_KEEP: bool = false;

    #[inline]
    fn prepare(self, sqe: &mut Sqe, _keep: &mut Keep) {
        let Close { target } = self;
        *sqe = Sqe::new(Self::CODE);
        // The slot goes in file_index, never with IOSQE_FIXED_FILE (the
        // kernel answers that with -EBADF).
        match target {
            Target::Fd(fd) => sqe.fd = fd,
            Target::Fixed(slot) => sqe.set_file_index(slot.wrapping_add(1)),
        }
    }
}

// SAFETY: names no memory.
unsafe impl SafeOp for Close {}

/// Flushes a file to storage: `io_uring_prep_fsync`.
///
/// Since Linux 5.1. With [`datasync`](Self::datasync) it is `fdatasync`
/// (`IORING_FSYNC_DATASYNC`); with [`range`](Self::range) only that byte
/// range is synced (`vfs_fsync_range`). The CQE's result is 0 or `-errno`.
#[doc(alias = "IORING_OP_FSYNC")]
#[doc(alias = "io_uring_prep_fsync")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct Fsync {
    fd: Target,
    datasync: bool,
    offset: u64,
    len: u32,
}

impl Fsync {
    /// A full `fsync` of `fd`.
    #[inline]
    pub fn new(fd: impl Into<Target>) -> Self {
        Fsync { fd: fd.into(), datasync: false, offset: 0, len: 0 }
    }

    /// Syncs data (and only the metadata needed to read it back):
    /// `fdatasync`.
    #[inline]
    pub const fn datasync(mut self) -> Self {
        self.datasync = true;
        self
    }

    /// Syncs only `len` bytes from `offset` (`len` 0: to the end).
    #[inline]
    pub const fn range(mut self, offset: u64, len: u32) -> Self {
        self.offset = offset;
        self.len = len;
        self
    }
}

impl Prepare for Fsync {
    const CODE: u8 = sys::IORING_OP_FSYNC as u8;
    const USES_KEEP: bool = false;

    #[inline]
    fn prepare(self, sqe: &mut Sqe, _keep: &mut Keep) {
        let Fsync { fd, datasync, offset, len } = self;
        *sqe = Sqe::new(Self::CODE);
        fd.apply(sqe);
        sqe.set_off(offset);
        sqe.len = len;
        if datasync {
            sqe.set_op_flags(sys::IORING_FSYNC_DATASYNC);
        }
    }
}

// SAFETY: names no memory.
unsafe impl SafeOp for Fsync {}

/// Allocates (or punches, zeroes, collapses…) file space:
/// `io_uring_prep_fallocate`.
///
/// Since Linux 5.6. `mode` is `fallocate(2)`'s (`0`,
/// `FALLOC_FL_KEEP_SIZE`, `FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE`, …).
/// The CQE's result is 0 or `-errno`.
#[doc(alias = "IORING_OP_FALLOCATE")]
#[doc(alias = "io_uring_prep_fallocate")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct Fallocate {
    fd: Target,
    mode: i32,
    offset: u64,
    len: u64,
}

impl Fallocate {
    /// `fallocate(fd, mode, offset, len)`.
    #[inline]
    pub fn new(fd: impl Into<Target>, mode: i32, offset: u64, len: u64) -> Self {
        Fallocate { fd: fd.into(), mode, offset, len }
    }
}

impl Prepare for Fallocate {
    const CODE: u8 = sys::IORING_OP_FALLOCATE as u8;
    const USES_KEEP: bool = false;

    #[inline]
    fn prepare(self, sqe: &mut Sqe, _keep: &mut Keep) {
        let Fallocate { fd, mode, offset, len } = self;
        *sqe = Sqe::new(Self::CODE);
        fd.apply(sqe);
        sqe.set_off(offset);
        sqe.set_addr(len);
        sqe.len = mode as u32;
    }
}

// SAFETY: names no memory.
unsafe impl SafeOp for Fallocate {}

/// Sets a file's length: `io_uring_prep_ftruncate`.
///
/// Since Linux 6.9. The CQE's result is 0 or `-errno`.
#[doc(alias = "IORING_OP_FTRUNCATE")]
#[doc(alias = "io_uring_prep_ftruncate")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct Ftruncate {
    fd: Target,
    len: u64,
}

impl Ftruncate {
    /// `ftruncate(fd, len)`.
    #[inline]
    pub fn new(fd: impl Into<Target>, len: u64) -> Self {
        Ftruncate { fd: fd.into(), len }
    }
}

impl Prepare for Ftruncate {
    const CODE: u8 = sys::IORING_OP_FTRUNCATE as u8;
    const USES_KEEP: bool = false;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        if self.len > i64::MAX as u64 {
            return Err(invalid(format!("ftruncate: length {} exceeds i64::MAX", self.len)));
        }
        Ok(())
    }

    #[inline]
    fn prepare(self, sqe: &mut Sqe, _keep: &mut Keep) {
        let Ftruncate { fd, len } = self;
        *sqe = Sqe::new(Self::CODE);
        fd.apply(sqe);
        sqe.set_off(len);
    }
}

// SAFETY: names no memory.
unsafe impl SafeOp for Ftruncate {}

const STATX_FLAGS: i32 =
    libc::AT_SYMLINK_NOFOLLOW | libc::AT_NO_AUTOMOUNT | libc::AT_EMPTY_PATH | libc::AT_STATX_SYNC_TYPE;

/// Reads a file's status into a `statx` structure: `io_uring_prep_statx`.
///
/// Since Linux 5.6. `flags` are `AT_*` (`AT_EMPTY_PATH` with an empty path
/// stats `dir` itself), `mask` the `STATX_*` fields wanted. The CQE's
/// result is 0 or `-errno`.
///
/// The output is a [`libc::statx`](struct@libc::statx), the type `statx(2)` callers already
/// use (the kernel's `struct statx`: same size, asserted at compile time).
/// The path is copied at submission (held in the [`Keep`]); the output is
/// caller memory the kernel writes when the operation runs, which the
/// `unsafe` constructor vouches for, so the operation is a [`SafeOp`]
/// ([`FsOps::statx`] takes the same arguments).
#[doc(alias = "IORING_OP_STATX")]
#[doc(alias = "io_uring_prep_statx")]
#[derive(Debug, Clone)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct Statx {
    dir: RawFd,
    path: CPath,
    flags: i32,
    mask: u32,
    out: *mut libc::statx,
}

// The kernel writes its whole `struct statx` (`cp_statx` copies
// `sizeof(struct statx)`): libc's must be exactly as large.
const _: () = assert!(size_of::<libc::statx>() == size_of::<sys::statx>());

impl Statx {
    /// `statx(dir, path, flags, mask, out)`.
    ///
    /// # Safety
    ///
    /// For every push of the returned operation (or of a clone of it),
    /// `out` must stay valid, and must be neither read nor written by the
    /// program, until that operation's CQE has been reaped: the kernel
    /// writes it when the operation runs (the borrow ends here; the
    /// obligation does not).
    pub unsafe fn new(dir: RawFd, path: impl AsRef<Path>, flags: i32, mask: u32, out: &mut libc::statx) -> Self {
        Statx { dir, path: CPath::new(path), flags, mask, out }
    }
}

impl Prepare for Statx {
    const CODE: u8 = sys::IORING_OP_STATX as u8;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        self.path.check("statx")?;
        if self.flags & !STATX_FLAGS != 0 {
            return Err(invalid(format!(
                "statx: flags {:#x}: only AT_SYMLINK_NOFOLLOW, AT_NO_AUTOMOUNT, AT_EMPTY_PATH and AT_STATX_* apply",
                self.flags
            )));
        }
        if self.flags & libc::AT_STATX_SYNC_TYPE == libc::AT_STATX_SYNC_TYPE {
            return Err(invalid("statx: AT_STATX_FORCE_SYNC and AT_STATX_DONT_SYNC exclude each other".into()));
        }
        if self.mask & libc::STATX__RESERVED as u32 != 0 {
            return Err(invalid(format!("statx: mask {:#x} has the reserved STATX__RESERVED bit", self.mask)));
        }
        Ok(())
    }

    fn prepare(self, sqe: &mut Sqe, keep: &mut Keep) {
        let Statx { dir, path, flags, mask, out } = self;
        *sqe = Sqe::new(Self::CODE);
        sqe.fd = dir;
        sqe.set_addr(keep.hold(path.into_cstring()).as_ptr() as u64);
        sqe.len = mask;
        sqe.set_op_flags(flags as u32);
        sqe.set_addr2(out as u64);
    }
}

// SAFETY: the path is in the Keep (copied at prep); the output is the only
// caller memory named, kept valid and unaccessed until every push's CQE by
// the caller of the unsafe constructor.
unsafe impl SafeOp for Statx {}

const RENAME_FLAGS: u32 = libc::RENAME_NOREPLACE | libc::RENAME_EXCHANGE | libc::RENAME_WHITEOUT;

/// Renames a file: `io_uring_prep_renameat`.
///
/// Since Linux 5.11. `flags` are `renameat2(2)`'s (`RENAME_NOREPLACE`,
/// `RENAME_EXCHANGE`, `RENAME_WHITEOUT`). The CQE's result is 0 or
/// `-errno`. Both paths are copied at submission (held in the [`Keep`]).
#[doc(alias = "IORING_OP_RENAMEAT")]
#[doc(alias = "io_uring_prep_renameat")]
#[derive(Debug, Clone)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct RenameAt {
    old_dir: RawFd,
    old: CPath,
    new_dir: RawFd,
    new: CPath,
    flags: u32,
}

impl RenameAt {
    /// Renames `old` (relative to `old_dir`) to `new` (relative to
    /// `new_dir`).
    pub fn new(old_dir: RawFd, old: impl AsRef<Path>, new_dir: RawFd, new: impl AsRef<Path>) -> Self {
        RenameAt { old_dir, old: CPath::new(old), new_dir, new: CPath::new(new), flags: 0 }
    }

    /// `RENAME_*` flags.
    pub const fn flags(mut self, flags: u32) -> Self {
        self.flags = flags;
        self
    }
}

impl Prepare for RenameAt {
    const CODE: u8 = sys::IORING_OP_RENAMEAT as u8;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        self.old.check("renameat (old path)")?;
        self.new.check("renameat (new path)")?;
        if self.flags & !RENAME_FLAGS != 0 {
            return Err(invalid(format!("renameat: unknown RENAME_* flags {:#x}", self.flags & !RENAME_FLAGS)));
        }
        if self.flags & libc::RENAME_EXCHANGE != 0 && self.flags & (libc::RENAME_NOREPLACE | libc::RENAME_WHITEOUT) != 0
        {
            return Err(invalid("renameat: RENAME_EXCHANGE excludes RENAME_NOREPLACE and RENAME_WHITEOUT".into()));
        }
        Ok(())
    }

    fn prepare(self, sqe: &mut Sqe, keep: &mut Keep) {
        let RenameAt { old_dir, old, new_dir, new, flags } = self;
        *sqe = Sqe::new(Self::CODE);
        let (old, new) = keep.hold((old.into_cstring(), new.into_cstring()));
        sqe.fd = old_dir;
        sqe.set_addr(old.as_ptr() as u64);
        sqe.len = new_dir as u32;
        sqe.set_addr2(new.as_ptr() as u64);
        sqe.set_op_flags(flags);
    }
}

// SAFETY: both paths are in the Keep, copied at prep (io_renameat_prep).
unsafe impl SafeOp for RenameAt {}

/// Removes a file, or with [`remove_dir`](Self::remove_dir) an empty
/// directory: `io_uring_prep_unlinkat`.
///
/// Since Linux 5.11. The CQE's result is 0 or `-errno`. The path is copied
/// at submission (held in the [`Keep`]).
#[doc(alias = "IORING_OP_UNLINKAT")]
#[doc(alias = "io_uring_prep_unlinkat")]
#[derive(Debug, Clone)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct UnlinkAt {
    dir: RawFd,
    path: CPath,
    flags: i32,
}

impl UnlinkAt {
    /// Unlinks `path` relative to `dir`.
    pub fn new(dir: RawFd, path: impl AsRef<Path>) -> Self {
        UnlinkAt { dir, path: CPath::new(path), flags: 0 }
    }

    /// Removes a directory instead (`AT_REMOVEDIR`, `rmdir`).
    pub const fn remove_dir(mut self) -> Self {
        self.flags |= libc::AT_REMOVEDIR;
        self
    }

    /// The raw `unlinkat(2)` flags (only `AT_REMOVEDIR` is accepted).
    pub const fn flags(mut self, flags: i32) -> Self {
        self.flags = flags;
        self
    }
}

impl Prepare for UnlinkAt {
    const CODE: u8 = sys::IORING_OP_UNLINKAT as u8;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        self.path.check("unlinkat")?;
        if self.flags & !libc::AT_REMOVEDIR != 0 {
            return Err(invalid(format!("unlinkat: flags {:#x}: only AT_REMOVEDIR is accepted", self.flags)));
        }
        Ok(())
    }

    fn prepare(self, sqe: &mut Sqe, keep: &mut Keep) {
        let UnlinkAt { dir, path, flags } = self;
        *sqe = Sqe::new(Self::CODE);
        sqe.fd = dir;
        sqe.set_addr(keep.hold(path.into_cstring()).as_ptr() as u64);
        sqe.set_op_flags(flags as u32);
    }
}

// SAFETY: the path is in the Keep, copied at prep (io_unlinkat_prep).
unsafe impl SafeOp for UnlinkAt {}

/// Creates a directory: `io_uring_prep_mkdirat`.
///
/// Since Linux 5.15. The CQE's result is 0 or `-errno`. The path is copied
/// at submission (held in the [`Keep`]).
#[doc(alias = "IORING_OP_MKDIRAT")]
#[doc(alias = "io_uring_prep_mkdirat")]
#[derive(Debug, Clone)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct MkdirAt {
    dir: RawFd,
    path: CPath,
    mode: u32,
}

impl MkdirAt {
    /// `mkdirat(dir, path, mode)` (the umask applies).
    pub fn new(dir: RawFd, path: impl AsRef<Path>, mode: u32) -> Self {
        MkdirAt { dir, path: CPath::new(path), mode }
    }
}

impl Prepare for MkdirAt {
    const CODE: u8 = sys::IORING_OP_MKDIRAT as u8;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        self.path.check("mkdirat")
    }

    fn prepare(self, sqe: &mut Sqe, keep: &mut Keep) {
        let MkdirAt { dir, path, mode } = self;
        *sqe = Sqe::new(Self::CODE);
        sqe.fd = dir;
        sqe.set_addr(keep.hold(path.into_cstring()).as_ptr() as u64);
        sqe.len = mode;
    }
}

// SAFETY: the path is in the Keep, copied at prep (io_mkdirat_prep).
unsafe impl SafeOp for MkdirAt {}

/// Creates a symbolic link: `io_uring_prep_symlinkat`.
///
/// Since Linux 5.15. The CQE's result is 0 or `-errno`. Both strings are
/// copied at submission (held in the [`Keep`]).
#[doc(alias = "IORING_OP_SYMLINKAT")]
#[doc(alias = "io_uring_prep_symlinkat")]
#[derive(Debug, Clone)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct SymlinkAt {
    target: CPath,
    new_dir: RawFd,
    link: CPath,
}

impl SymlinkAt {
    /// Creates `link` (relative to `new_dir`) pointing to `target` (stored
    /// as given, not resolved).
    pub fn new(target: impl AsRef<Path>, new_dir: RawFd, link: impl AsRef<Path>) -> Self {
        SymlinkAt { target: CPath::new(target), new_dir, link: CPath::new(link) }
    }
}

impl Prepare for SymlinkAt {
    const CODE: u8 = sys::IORING_OP_SYMLINKAT as u8;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        self.target.check("symlinkat (target)")?;
        self.link.check("symlinkat (link path)")
    }

    fn prepare(self, sqe: &mut Sqe, keep: &mut Keep) {
        let SymlinkAt { target, new_dir, link } = self;
        *sqe = Sqe::new(Self::CODE);
        let (target, link) = keep.hold((target.into_cstring(), link.into_cstring()));
        sqe.fd = new_dir;
        sqe.set_addr(target.as_ptr() as u64);
        sqe.set_addr2(link.as_ptr() as u64);
    }
}

// SAFETY: both strings are in the Keep, copied at prep (io_symlinkat_prep).
unsafe impl SafeOp for SymlinkAt {}

/// Creates a hard link: `io_uring_prep_linkat`.
///
/// Since Linux 5.15. `flags`: `AT_SYMLINK_FOLLOW`, `AT_EMPTY_PATH`. The
/// CQE's result is 0 or `-errno`. Both paths are copied at submission
/// (held in the [`Keep`]).
#[doc(alias = "IORING_OP_LINKAT")]
#[doc(alias = "io_uring_prep_linkat")]
#[derive(Debug, Clone)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct LinkAt {
    old_dir: RawFd,
    old: CPath,
    new_dir: RawFd,
    new: CPath,
    flags: i32,
}

impl LinkAt {
    /// Links `new` (relative to `new_dir`) to the file `old` (relative to
    /// `old_dir`).
    pub fn new(old_dir: RawFd, old: impl AsRef<Path>, new_dir: RawFd, new: impl AsRef<Path>) -> Self {
        LinkAt { old_dir, old: CPath::new(old), new_dir, new: CPath::new(new), flags: 0 }
    }

    /// `AT_SYMLINK_FOLLOW` / `AT_EMPTY_PATH`.
    pub const fn flags(mut self, flags: i32) -> Self {
        self.flags = flags;
        self
    }
}

impl Prepare for LinkAt {
    const CODE: u8 = sys::IORING_OP_LINKAT as u8;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        self.old.check("linkat (old path)")?;
        self.new.check("linkat (new path)")?;
        if self.flags & !(libc::AT_SYMLINK_FOLLOW | libc::AT_EMPTY_PATH) != 0 {
            return Err(invalid(format!(
                "linkat: flags {:#x}: only AT_SYMLINK_FOLLOW and AT_EMPTY_PATH are accepted",
                self.flags
            )));
        }
        Ok(())
    }

    fn prepare(self, sqe: &mut Sqe, keep: &mut Keep) {
        let LinkAt { old_dir, old, new_dir, new, flags } = self;
        *sqe = Sqe::new(Self::CODE);
        let (old, new) = keep.hold((old.into_cstring(), new.into_cstring()));
        sqe.fd = old_dir;
        sqe.set_addr(old.as_ptr() as u64);
        sqe.len = new_dir as u32;
        sqe.set_addr2(new.as_ptr() as u64);
        sqe.set_op_flags(flags as u32);
    }
}

// SAFETY: both paths are in the Keep, copied at prep (io_linkat_prep).
unsafe impl SafeOp for LinkAt {}

/// Named ring methods for file management, the common case of each
/// operation. Options (direct opens, resolve flags, sync ranges, rename
/// flags) are reached through the builders and [`RingOps::push_op`].
///
/// Every method fails, before anything is queued, with
/// [`Error::InvalidArgument`] for a path with a NUL byte or flags the
/// kernel would refuse, and otherwise as [`RingOps::push_op`].
pub trait FsOps {
    /// Queues `openat(dir, path, flags, mode)` ([`OpenAt`]); the CQE's
    /// result is the new descriptor.
    ///
    /// # Errors
    ///
    /// See the [trait documentation](FsOps).
    fn openat(
        &mut self,
        ctx: SqeContext,
        dir: RawFd,
        path: impl AsRef<Path>,
        flags: i32,
        mode: u32,
    ) -> Result<SqeContext>;

    /// Queues `openat2` with `flags` and `resolve` restrictions, no mode
    /// ([`OpenAt2`]).
    ///
    /// # Errors
    ///
    /// See the [trait documentation](FsOps).
    fn openat2(
        &mut self,
        ctx: SqeContext,
        dir: RawFd,
        path: impl AsRef<Path>,
        flags: i32,
        resolve: ResolveFlags,
    ) -> Result<SqeContext>;

    /// Queues a close of a descriptor or registered-file slot ([`Close`]).
    ///
    /// # Errors
    ///
    /// See the [trait documentation](FsOps).
    fn close(&mut self, ctx: SqeContext, target: impl Into<Target>) -> Result<SqeContext>;

    /// Queues a full `fsync` ([`Fsync`]).
    ///
    /// # Errors
    ///
    /// See the [trait documentation](FsOps).
    fn fsync(&mut self, ctx: SqeContext, fd: impl Into<Target>) -> Result<SqeContext>;

    /// Queues an `fdatasync` ([`Fsync::datasync`]).
    ///
    /// # Errors
    ///
    /// See the [trait documentation](FsOps).
    fn fdatasync(&mut self, ctx: SqeContext, fd: impl Into<Target>) -> Result<SqeContext>;

    /// Queues `fallocate(fd, mode, offset, len)` ([`Fallocate`]).
    ///
    /// # Errors
    ///
    /// See the [trait documentation](FsOps).
    fn fallocate(
        &mut self,
        ctx: SqeContext,
        fd: impl Into<Target>,
        mode: i32,
        offset: u64,
        len: u64,
    ) -> Result<SqeContext>;

    /// Queues `ftruncate(fd, len)` ([`Ftruncate`], since 6.9).
    ///
    /// # Errors
    ///
    /// See the [trait documentation](FsOps).
    fn ftruncate(&mut self, ctx: SqeContext, fd: impl Into<Target>, len: u64) -> Result<SqeContext>;

    /// Queues `statx(dir, path, flags, mask, out)` ([`Statx`]).
    ///
    /// # Errors
    ///
    /// See the [trait documentation](FsOps).
    ///
    /// # Safety
    ///
    /// As for [`Statx::new`].
    unsafe fn statx(
        &mut self,
        ctx: SqeContext,
        dir: RawFd,
        path: impl AsRef<Path>,
        flags: i32,
        mask: u32,
        out: &mut libc::statx,
    ) -> Result<SqeContext>;

    /// Queues a rename of `old` to `new` ([`RenameAt`]).
    ///
    /// # Errors
    ///
    /// See the [trait documentation](FsOps).
    fn renameat(
        &mut self,
        ctx: SqeContext,
        old_dir: RawFd,
        old: impl AsRef<Path>,
        new_dir: RawFd,
        new: impl AsRef<Path>,
    ) -> Result<SqeContext>;

    /// Queues `unlinkat(dir, path, flags)` ([`UnlinkAt`]; `flags` 0 or
    /// `AT_REMOVEDIR`).
    ///
    /// # Errors
    ///
    /// See the [trait documentation](FsOps).
    fn unlinkat(&mut self, ctx: SqeContext, dir: RawFd, path: impl AsRef<Path>, flags: i32) -> Result<SqeContext>;

    /// Queues `mkdirat(dir, path, mode)` ([`MkdirAt`]).
    ///
    /// # Errors
    ///
    /// See the [trait documentation](FsOps).
    fn mkdirat(&mut self, ctx: SqeContext, dir: RawFd, path: impl AsRef<Path>, mode: u32) -> Result<SqeContext>;

    /// Queues `symlinkat(target, new_dir, link)` ([`SymlinkAt`]).
    ///
    /// # Errors
    ///
    /// See the [trait documentation](FsOps).
    fn symlinkat(
        &mut self,
        ctx: SqeContext,
        target: impl AsRef<Path>,
        new_dir: RawFd,
        link: impl AsRef<Path>,
    ) -> Result<SqeContext>;

    /// Queues `linkat(old_dir, old, new_dir, new, flags)` ([`LinkAt`]).
    ///
    /// # Errors
    ///
    /// See the [trait documentation](FsOps).
    fn linkat(
        &mut self,
        ctx: SqeContext,
        old_dir: RawFd,
        old: impl AsRef<Path>,
        new_dir: RawFd,
        new: impl AsRef<Path>,
        flags: i32,
    ) -> Result<SqeContext>;
}

impl<R: RingOps + OnRing> FsOps for R {
    fn openat(
        &mut self,
        ctx: SqeContext,
        dir: RawFd,
        path: impl AsRef<Path>,
        flags: i32,
        mode: u32,
    ) -> Result<SqeContext> {
        self.push_op(ctx, OpenAt::new(dir, path, flags, mode))
    }

    fn openat2(
        &mut self,
        ctx: SqeContext,
        dir: RawFd,
        path: impl AsRef<Path>,
        flags: i32,
        resolve: ResolveFlags,
    ) -> Result<SqeContext> {
        self.push_op(ctx, OpenAt2::new(dir, path, flags).resolve(resolve))
    }

    fn close(&mut self, ctx: SqeContext, target: impl Into<Target>) -> Result<SqeContext> {
        self.push_op(ctx, Close::new(target))
    }

    fn fsync(&mut self, ctx: SqeContext, fd: impl Into<Target>) -> Result<SqeContext> {
        self.push_op(ctx, Fsync::new(fd))
    }

    fn fdatasync(&mut self, ctx: SqeContext, fd: impl Into<Target>) -> Result<SqeContext> {
        self.push_op(ctx, Fsync::new(fd).datasync())
    }

    fn fallocate(
        &mut self,
        ctx: SqeContext,
        fd: impl Into<Target>,
        mode: i32,
        offset: u64,
        len: u64,
    ) -> Result<SqeContext> {
        self.push_op(ctx, Fallocate::new(fd, mode, offset, len))
    }

    fn ftruncate(&mut self, ctx: SqeContext, fd: impl Into<Target>, len: u64) -> Result<SqeContext> {
        self.push_op(ctx, Ftruncate::new(fd, len))
    }

    unsafe fn statx(
        &mut self,
        ctx: SqeContext,
        dir: RawFd,
        path: impl AsRef<Path>,
        flags: i32,
        mask: u32,
        out: &mut libc::statx,
    ) -> Result<SqeContext> {
        // SAFETY: forwarded to the caller (`Statx::new`'s contract).
        let op = unsafe { Statx::new(dir, path, flags, mask, out) };
        self.push_op(ctx, op)
    }

    fn renameat(
        &mut self,
        ctx: SqeContext,
        old_dir: RawFd,
        old: impl AsRef<Path>,
        new_dir: RawFd,
        new: impl AsRef<Path>,
    ) -> Result<SqeContext> {
        self.push_op(ctx, RenameAt::new(old_dir, old, new_dir, new))
    }

    fn unlinkat(&mut self, ctx: SqeContext, dir: RawFd, path: impl AsRef<Path>, flags: i32) -> Result<SqeContext> {
        self.push_op(ctx, UnlinkAt::new(dir, path).flags(flags))
    }

    fn mkdirat(&mut self, ctx: SqeContext, dir: RawFd, path: impl AsRef<Path>, mode: u32) -> Result<SqeContext> {
        self.push_op(ctx, MkdirAt::new(dir, path, mode))
    }

    fn symlinkat(
        &mut self,
        ctx: SqeContext,
        target: impl AsRef<Path>,
        new_dir: RawFd,
        link: impl AsRef<Path>,
    ) -> Result<SqeContext> {
        self.push_op(ctx, SymlinkAt::new(target, new_dir, link))
    }

    fn linkat(
        &mut self,
        ctx: SqeContext,
        old_dir: RawFd,
        old: impl AsRef<Path>,
        new_dir: RawFd,
        new: impl AsRef<Path>,
        flags: i32,
    ) -> Result<SqeContext> {
        self.push_op(ctx, LinkAt::new(old_dir, old, new_dir, new).flags(flags))
    }
}
