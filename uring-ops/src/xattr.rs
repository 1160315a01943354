//! Extended attributes: `fgetxattr`, `fsetxattr`, `getxattr`, `setxattr`.
//!
//! What the kernel copies while preparing the request (`io_uring/xattr.c`):
//! the attribute name (`strncpy_from_user` / `import_xattr_name`), the path
//! of the path-based forms (`getname_flags`), and, for the set forms, the
//! value itself (`setxattr_copy` duplicates it into kernel memory). So the
//! set operations hold everything in the [`Keep`] and are [`SafeOp`]s. The
//! get operations write the value into caller memory when they run: they
//! are `unsafe` to push.
//!
//! Names and paths are converted to C strings when the builder is made; an
//! interior NUL byte is [`Error::InvalidArgument`]
//! before any SQE is acquired. Descriptors are plain ones: the kernel
//! refuses registered files here (`-EBADF`).

use std::os::fd::RawFd;
use std::path::Path;

use uring_core::{Error, Features, Keep, Result, Sqe, SqeContext, sys};

use crate::flags::sealed::OnRing;
use crate::fs::CPath;
use crate::op::{Prepare, SafeOp, len_u32};
use crate::ring::RingOps;

bitflags::bitflags! {
    /// `XATTR_*` flags of the set operations. Unknown bits are kept (and
    /// rejected by the operations' checks: the kernel answers `-EINVAL`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct XattrFlags: u32 {
        /// `XATTR_CREATE`: fail with `-EEXIST` if the attribute exists.
        const CREATE = sys::XATTR_CREATE;
        /// `XATTR_REPLACE`: fail with `-ENODATA` if it does not.
        const REPLACE = sys::XATTR_REPLACE;
        const _ = !0;
    }
}

fn check_set(what: &str, flags: XattrFlags, value: &[u8]) -> Result<()> {
    let unknown = flags.bits() & !(XattrFlags::CREATE | XattrFlags::REPLACE).bits();
    if unknown != 0 {
        return Err(Error::InvalidArgument(format!("{what}: unknown XATTR_* flags {unknown:#x}")));
    }
    len_u32(what, value.len()).map(drop)
}

/// Reads an extended attribute of an open file: `io_uring_prep_fgetxattr`.
///
/// Since Linux 5.19. The CQE's result is the value's length (with `len` 0:
/// the length it would need), `-ENODATA` if there is no such attribute,
/// `-ERANGE` if `len` is too small, or `-errno`.
///
/// The name is copied at submission (held in the [`Keep`]); the value
/// buffer is caller memory the kernel writes when the operation runs: the
/// `unsafe` constructor takes that obligation, and the operation is a
/// [`SafeOp`] ([`XattrOps::fgetxattr`] takes the same arguments).
#[doc(alias = "IORING_OP_FGETXATTR")]
#[doc(alias = "io_uring_prep_fgetxattr")]
#[derive(Debug, Clone)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct FGetXattr {
    fd: RawFd,
    name: CPath,
    value: *mut u8,
    len: usize,
}

impl FGetXattr {
    /// Reads attribute `name` (e.g. `"user.note"`) of `fd` into `value`
    /// (empty: only ask for the length). Over `u32::MAX` bytes is refused
    /// when pushed.
    ///
    /// # Safety
    ///
    /// For every push of the returned operation (or of a copy of it),
    /// `value` must stay valid, and must be neither read nor written by the
    /// program, until that operation's CQE has been reaped: the kernel
    /// writes it while the operation runs (the borrow ends here; the
    /// obligation does not).
    pub unsafe fn new(fd: RawFd, name: impl AsRef<[u8]>, value: &mut [u8]) -> Self {
        FGetXattr { fd, name: CPath::from_bytes(name.as_ref()), value: value.as_mut_ptr(), len: value.len() }
    }
}

impl Prepare for FGetXattr {
    const CODE: u8 = sys::IORING_OP_FGETXATTR as u8;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        self.name.check("fgetxattr (name)")?;
        len_u32("fgetxattr", self.len).map(drop)
    }

    fn prepare(self, sqe: &mut Sqe, keep: &mut Keep) {
        let FGetXattr { fd, name, value, len } = self;
        *sqe = Sqe::new(Self::CODE);
        sqe.fd = fd;
        sqe.set_addr(keep.hold(name.into_cstring()).as_ptr() as u64);
        sqe.set_addr2(value as u64);
        sqe.len = len as u32;
    }
}

// SAFETY: the name is in the Keep (copied at prep); the value buffer is the
// only caller memory named, kept valid and unaccessed until every push's
// CQE by the caller of the unsafe constructor.
unsafe impl SafeOp for FGetXattr {}

/// Sets an extended attribute of an open file: `io_uring_prep_fsetxattr`.
///
/// Since Linux 5.19. The CQE's result is 0, `-EEXIST` (with
/// [`XattrFlags::CREATE`]), `-ENODATA` (with [`XattrFlags::REPLACE`]),
/// `-EOPNOTSUPP` where the filesystem has no such namespace, or `-errno`.
/// Name and value are copied into the [`Keep`] and by the kernel at
/// submission, so this is a [`SafeOp`].
#[doc(alias = "IORING_OP_FSETXATTR")]
#[doc(alias = "io_uring_prep_fsetxattr")]
#[derive(Debug, Clone)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct FSetXattr {
    fd: RawFd,
    name: CPath,
    value: Vec<u8>,
    flags: XattrFlags,
}

impl FSetXattr {
    /// Sets attribute `name` of `fd` to `value` (copied).
    pub fn new(fd: RawFd, name: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Self {
        FSetXattr {
            fd,
            name: CPath::from_bytes(name.as_ref()),
            value: value.as_ref().to_vec(),
            flags: XattrFlags::empty(),
        }
    }

    /// `XATTR_CREATE` or `XATTR_REPLACE`.
    pub const fn flags(mut self, flags: XattrFlags) -> Self {
        self.flags = flags;
        self
    }
}

impl Prepare for FSetXattr {
    const CODE: u8 = sys::IORING_OP_FSETXATTR as u8;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        self.name.check("fsetxattr (name)")?;
        check_set("fsetxattr", self.flags, &self.value)
    }

    fn prepare(self, sqe: &mut Sqe, keep: &mut Keep) {
        let FSetXattr { fd, name, value, flags } = self;
        *sqe = Sqe::new(Self::CODE);
        let len = value.len() as u32;
        let (name, value) = keep.hold((name.into_cstring(), value));
        sqe.fd = fd;
        sqe.set_addr(name.as_ptr() as u64);
        sqe.set_addr2(value.as_ptr() as u64);
        sqe.len = len;
        sqe.set_op_flags(flags.bits());
    }
}

// SAFETY: name and value are in the Keep; the kernel copies both at prep
// (__io_setxattr_prep → setxattr_copy).
unsafe impl SafeOp for FSetXattr {}

/// Reads an extended attribute of a file by path (following symbolic
/// links): `io_uring_prep_getxattr`.
///
/// Since Linux 5.19. Results as [`FGetXattr`]. Path and name are copied at
/// submission (held in the [`Keep`]); the value buffer is caller memory
/// written when the operation runs, vouched for by the `unsafe`
/// constructor, so the operation is a [`SafeOp`].
#[doc(alias = "IORING_OP_GETXATTR")]
#[doc(alias = "io_uring_prep_getxattr")]
#[derive(Debug, Clone)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct GetXattr {
    path: CPath,
    name: CPath,
    value: *mut u8,
    len: usize,
}

impl GetXattr {
    /// Reads attribute `name` of the file at `path` into `value` (empty:
    /// only ask for the length). Over `u32::MAX` bytes is refused when
    /// pushed.
    ///
    /// # Safety
    ///
    /// For every push of the returned operation (or of a copy of it),
    /// `value` must stay valid, and must be neither read nor written by the
    /// program, until that operation's CQE has been reaped: the kernel
    /// writes it while the operation runs (the borrow ends here; the
    /// obligation does not).
    pub unsafe fn new(path: impl AsRef<Path>, name: impl AsRef<[u8]>, value: &mut [u8]) -> Self {
        let (value, len) = (value.as_mut_ptr(), value.len());
        GetXattr { path: CPath::new(path), name: CPath::from_bytes(name.as_ref()), value, len }
    }
}

impl Prepare for GetXattr {
    const CODE: u8 = sys::IORING_OP_GETXATTR as u8;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        self.path.check("getxattr (path)")?;
        self.name.check("getxattr (name)")?;
        len_u32("getxattr", self.len).map(drop)
    }

    fn prepare(self, sqe: &mut Sqe, keep: &mut Keep) {
        let GetXattr { path, name, value, len } = self;
        *sqe = Sqe::new(Self::CODE);
        let (path, name) = keep.hold((path.into_cstring(), name.into_cstring()));
        sqe.set_addr(name.as_ptr() as u64);
        sqe.set_addr2(value as u64);
        sqe.set_addr3(path.as_ptr() as u64);
        sqe.len = len as u32;
    }
}

// SAFETY: path and name are in the Keep (copied at prep); the value buffer
// is the only caller memory named, kept valid and unaccessed until every
// push's CQE by the caller of the unsafe constructor.
unsafe impl SafeOp for GetXattr {}

/// Sets an extended attribute of a file by path (following symbolic
/// links): `io_uring_prep_setxattr`.
///
/// Since Linux 5.19. Results as [`FSetXattr`]. Path, name and value are
/// copied into the [`Keep`] and by the kernel at submission, so this is a
/// [`SafeOp`].
#[doc(alias = "IORING_OP_SETXATTR")]
#[doc(alias = "io_uring_prep_setxattr")]
#[derive(Debug, Clone)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct SetXattr {
    path: CPath,
    name: CPath,
    value: Vec<u8>,
    flags: XattrFlags,
}

impl SetXattr {
    /// Sets attribute `name` of the file at `path` to `value` (copied).
    pub fn new(path: impl AsRef<Path>, name: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Self {
        SetXattr {
            path: CPath::new(path),
            name: CPath::from_bytes(name.as_ref()),
            value: value.as_ref().to_vec(),
            flags: XattrFlags::empty(),
        }
    }

    /// `XATTR_CREATE` or `XATTR_REPLACE`.
    pub const fn flags(mut self, flags: XattrFlags) -> Self {
        self.flags = flags;
        self
    }
}

impl Prepare for SetXattr {
    const CODE: u8 = sys::IORING_OP_SETXATTR as u8;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        self.path.check("setxattr (path)")?;
        self.name.check("setxattr (name)")?;
        check_set("setxattr", self.flags, &self.value)
    }

    fn prepare(self, sqe: &mut Sqe, keep: &mut Keep) {
        let SetXattr { path, name, value, flags } = self;
        *sqe = Sqe::new(Self::CODE);
        let len = value.len() as u32;
        let (path, name, value) = keep.hold((path.into_cstring(), name.into_cstring(), value));
        sqe.set_addr(name.as_ptr() as u64);
        sqe.set_addr2(value.as_ptr() as u64);
        sqe.set_addr3(path.as_ptr() as u64);
        sqe.len = len;
        sqe.set_op_flags(flags.bits());
    }
}

// SAFETY: path, name and value are in the Keep; the kernel copies all three
// at prep (getname_flags, setxattr_copy).
unsafe impl SafeOp for SetXattr {}

/// Named ring methods for extended attributes.
///
/// Every method fails, before anything is queued, with
/// [`Error::InvalidArgument`] for a name or path with a NUL byte, unknown
/// flags, or a buffer over `u32::MAX` bytes, and otherwise as
/// [`RingOps::push_op`].
pub trait XattrOps {
    /// Queues a read of attribute `name` of `fd` into `value`
    /// ([`FGetXattr`]).
    ///
    /// # Errors
    ///
    /// See the [trait documentation](XattrOps).
    ///
    /// # Safety
    ///
    /// As for [`FGetXattr::new`].
    unsafe fn fgetxattr(
        &mut self,
        ctx: SqeContext,
        fd: RawFd,
        name: impl AsRef<[u8]>,
        value: &mut [u8],
    ) -> Result<SqeContext>;

    /// Queues setting attribute `name` of `fd` to `value` ([`FSetXattr`]).
    ///
    /// # Errors
    ///
    /// See the [trait documentation](XattrOps).
    fn fsetxattr(
        &mut self,
        ctx: SqeContext,
        fd: RawFd,
        name: impl AsRef<[u8]>,
        value: &[u8],
        flags: XattrFlags,
    ) -> Result<SqeContext>;

    /// Queues a read of attribute `name` of the file at `path` into `value`
    /// ([`GetXattr`]).
    ///
    /// # Errors
    ///
    /// See the [trait documentation](XattrOps).
    ///
    /// # Safety
    ///
    /// As for [`GetXattr::new`].
    unsafe fn getxattr(
        &mut self,
        ctx: SqeContext,
        path: impl AsRef<Path>,
        name: impl AsRef<[u8]>,
        value: &mut [u8],
    ) -> Result<SqeContext>;

    /// Queues setting attribute `name` of the file at `path` to `value`
    /// ([`SetXattr`]).
    ///
    /// # Errors
    ///
    /// See the [trait documentation](XattrOps).
    fn setxattr(
        &mut self,
        ctx: SqeContext,
        path: impl AsRef<Path>,
        name: impl AsRef<[u8]>,
        value: &[u8],
        flags: XattrFlags,
    ) -> Result<SqeContext>;
}

impl<R: RingOps + OnRing> XattrOps for R {
    unsafe fn fgetxattr(
        &mut self,
        ctx: SqeContext,
        fd: RawFd,
        name: impl AsRef<[u8]>,
        value: &mut [u8],
    ) -> Result<SqeContext> {
        // SAFETY: forwarded to the caller (`FGetXattr::new`'s contract).
        let op = unsafe { FGetXattr::new(fd, name, value) };
        self.push_op(ctx, op)
    }

    fn fsetxattr(
        &mut self,
        ctx: SqeContext,
        fd: RawFd,
        name: impl AsRef<[u8]>,
        value: &[u8],
        flags: XattrFlags,
    ) -> Result<SqeContext> {
        self.push_op(ctx, FSetXattr::new(fd, name, value).flags(flags))
    }

    unsafe fn getxattr(
        &mut self,
        ctx: SqeContext,
        path: impl AsRef<Path>,
        name: impl AsRef<[u8]>,
        value: &mut [u8],
    ) -> Result<SqeContext> {
        // SAFETY: forwarded to the caller (`GetXattr::new`'s contract).
        let op = unsafe { GetXattr::new(path, name, value) };
        self.push_op(ctx, op)
    }

    fn setxattr(
        &mut self,
        ctx: SqeContext,
        path: impl AsRef<Path>,
        name: impl AsRef<[u8]>,
        value: &[u8],
        flags: XattrFlags,
    ) -> Result<SqeContext> {
        self.push_op(ctx, SetXattr::new(path, name, value).flags(flags))
    }
}
