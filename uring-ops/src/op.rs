//! The shape every operation shares: [`Prepare`], [`SafeOp`], file
//! [`Target`]s and [`FileDest`]inations, and the generic SQE options of
//! [`OpExt`].

use std::fmt;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

use uring_core::{Features, Keep, Result, Sqe, SqeFlags, sys};

/// An operation that can write itself into an SQE.
///
/// Every operation of this crate is a small builder: required arguments go
/// to its `new` (positional), optional ones are `const fn` setters, and
/// [`prepare`](Self::prepare) writes the whole entry. Building one is safe
/// and touches nothing; so is preparing it (it only writes bytes). What is
/// unsafe is handing the entry to the kernel when it names caller memory:
/// [`RingOps::push_op_unchecked`](crate::RingOps::push_op_unchecked).
/// Operations that name no caller memory are [`SafeOp`] and go through the
/// safe [`RingOps::push_op`](crate::RingOps::push_op).
pub trait Prepare {
    /// The `IORING_OP_*` opcode.
    const CODE: u8;

    /// Checks, before any SQE is acquired, that the running kernel and this
    /// ring can execute the operation. The default asks the opcode probe;
    /// operations that need more (a feature bit, a 128-byte SQE ring, a flag
    /// newer than the opcode) override it. An argument the kernel would
    /// reject with a bare `EINVAL` is rejected here, by name, as well.
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`](uring_core::Error::Unsupported) naming what is
    /// missing, or [`Error::InvalidArgument`](uring_core::Error::InvalidArgument).
    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)
    }

    /// Whether [`prepare`](Self::prepare) may put anything in the slot's
    /// [`Keep`]. When `false` the push does not clear the Keep first
    /// (it saves the check on every push of the operation); a value an
    /// earlier entry of the slot held then stays until the slot's next
    /// clearing push or the ring's drop. Leave it `true` unless `prepare`
    /// ignores its `keep` argument.
    const USES_KEEP: bool = true;

    /// Overwrites all 64 bytes of `sqe` with this operation (reserved
    /// fields zero, `user_data` zero: the ring method stamps the context
    /// afterwards). Memory the kernel copies while preparing the request
    /// (timespecs, sockaddrs, paths, `open_how`) is moved into `keep`, and
    /// the SQE points there.
    fn prepare(self, sqe: &mut Sqe, keep: &mut Keep);
}

/// An operation whose SQE names no memory but what its
/// [`prepare`](Prepare::prepare) moved into the [`Keep`], and the kernel
/// reads that memory only while it consumes the entry; or whose other
/// memory was vouched for when it was built, by an `unsafe` constructor
/// (`file::Read::new`, `net::Send::new`, `wait::FutexWait::from_ptr`, …)
/// whose contract covers every push of the operation and of its copies,
/// or by a `'static` borrow (`Write::from_static`). Submitting it is safe:
/// [`RingOps::push_op`](crate::RingOps::push_op).
///
/// # Safety
///
/// Implement it only for operations whose prepared SQE names no address
/// the kernel dereferences after it has consumed the entry, and none that
/// it dereferences at all other than the `Keep` (or addresses it treats as
/// plain values, such as a futex key, that cannot corrupt memory), except
/// memory that every way of building the operation proves valid for as
/// long as the kernel may use it: a `'static` borrow, or the contract of
/// an `unsafe` constructor.
pub unsafe trait SafeOp: Prepare {}

/// The file an operation acts on: a plain descriptor, or a slot of the
/// ring's registered file table (`IOSQE_FIXED_FILE`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// A file descriptor of this process.
    Fd(RawFd),
    /// An index into the registered file table.
    Fixed(u32),
}

impl Target {
    /// Writes the descriptor into `sqe.fd`, setting `IOSQE_FIXED_FILE` for
    /// a fixed slot.
    #[inline]
    pub fn apply(self, sqe: &mut Sqe) {
        match self {
            Target::Fd(fd) => sqe.fd = fd,
            Target::Fixed(slot) => {
                sqe.fd = slot as i32;
                sqe.flags |= sys::IOSQE_FIXED_FILE as u8;
            }
        }
    }

    /// The value that goes into `sqe.fd`.
    #[inline]
    pub const fn raw(self) -> i32 {
        match self {
            Target::Fd(fd) => fd,
            Target::Fixed(slot) => slot as i32,
        }
    }

    /// Whether this is a registered-file slot.
    #[inline]
    pub const fn is_fixed(self) -> bool {
        matches!(self, Target::Fixed(_))
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Fd(fd) => write!(f, "Fd({fd})"),
            Target::Fixed(slot) => write!(f, "Fixed({slot})"),
        }
    }
}

impl From<RawFd> for Target {
    #[inline]
    fn from(fd: RawFd) -> Self {
        Target::Fd(fd)
    }
}

impl From<BorrowedFd<'_>> for Target {
    #[inline]
    fn from(fd: BorrowedFd<'_>) -> Self {
        Target::Fd(fd.as_raw_fd())
    }
}

impl From<Fixed> for Target {
    #[inline]
    fn from(f: Fixed) -> Self {
        Target::Fixed(f.0)
    }
}

/// A slot of the registered file table, as an operation's target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct Fixed(pub u32);

/// Where an operation that creates a file (`accept`, `socket`, `openat`,
/// `pipe`, fixed-fd install) puts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum FileDest {
    /// A new file descriptor, returned in the CQE's result.
    #[default]
    Fd,
    /// This slot of the registered file table (replacing what is there);
    /// the result is 0.
    Slot(u32),
    /// Any free slot in the table's allocation range
    /// (`IORING_FILE_INDEX_ALLOC`); the result is the slot chosen.
    AnySlot,
}

impl FileDest {
    /// The value of `sqe.file_index`: 0 for a descriptor, slot + 1, or
    /// `IORING_FILE_INDEX_ALLOC`.
    #[inline]
    pub const fn file_index(self) -> u32 {
        match self {
            FileDest::Fd => 0,
            FileDest::Slot(slot) => slot.wrapping_add(1),
            FileDest::AnySlot => sys::IORING_FILE_INDEX_ALLOC as u32,
        }
    }

    /// Whether the file goes into the registered table.
    #[inline]
    pub const fn is_direct(self) -> bool {
        !matches!(self, FileDest::Fd)
    }
}

/// An operation with extra SQE flags and a personality; made by
/// [`OpExt::with_sqe_flags`] and [`OpExt::with_personality`].
#[derive(Debug, Clone, Copy)]
pub struct With<O> {
    op: O,
    flags: SqeFlags,
    personality: u16,
}

impl<O: Prepare> Prepare for With<O> {
    const CODE: u8 = O::CODE;
    const USES_KEEP: bool = O::USES_KEEP;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        self.op.check(features)
    }

    #[inline]
    fn prepare(self, sqe: &mut Sqe, keep: &mut Keep) {
        self.op.prepare(sqe, keep);
        sqe.flags |= self.flags.bits();
        if self.personality != 0 {
            sqe.personality = self.personality;
        }
    }
}

// SAFETY: flags and a personality name no memory; `O` is safe itself.
unsafe impl<O: SafeOp> SafeOp for With<O> {}

/// Options every operation takes: extra SQE flags (linking, drain, async,
/// skipping the CQE on success) and the personality to run as.
pub trait OpExt: Prepare + Sized {
    /// Adds `IOSQE_*` flags (`IO_LINK`, `IO_HARDLINK`, `IO_DRAIN`, `ASYNC`,
    /// `CQE_SKIP_SUCCESS`, …) to the ones the operation sets itself. The
    /// named ring methods take flags the same way through
    /// [`FlagOps::with_flags`](crate::FlagOps::with_flags) and
    /// [`FlagOps::linked`](crate::FlagOps::linked): both write the same
    /// entry.
    ///
    /// # What breaks a link
    ///
    /// Under `IO_LINK` the next entry runs only if this one *succeeds*;
    /// otherwise it and the rest of the chain complete with `-ECANCELED`.
    /// For the kernel a read or write that transferred fewer bytes than
    /// asked has failed, although its result is the (non-negative) byte
    /// count: `__io_complete_rw_common` in `io_uring/rw.c` marks any
    /// result other than the requested length as a failure. So a read that
    /// reaches end of file, or a short write, cancels the rest of an
    /// `IO_LINK` chain (a read-then-write copy loop sees its write
    /// `-ECANCELED` on the last, short block). `IO_HARDLINK` does not: the
    /// next entry runs whatever this one's result. (Sends and receives are
    /// short without failing unless `MSG_WAITALL` is set.) Kernel test:
    /// `uring-ops/tests/file.rs::a_short_read_fails_the_rest_of_an_io_link_chain_but_not_of_a_hardlink_chain`.
    /// Every entry still posts its CQE, so memory an entry names must stay
    /// valid until its own CQE, cancelled or not. For reads and writes
    /// through registered buffers, `uring_buffers::FixedBuffers::chain`
    /// does this bookkeeping safely.
    ///
    /// `IO_DRAIN` holds the entry until every entry submitted before it has
    /// completed, and the entries after it wait too. Kernel test:
    /// `uring-ops/tests/ops.rs::io_drain_holds_an_entry_until_everything_before_it_completed`.
    #[inline]
    fn with_sqe_flags(self, flags: SqeFlags) -> With<Self> {
        With { op: self, flags, personality: 0 }
    }

    /// Runs the operation with the credentials registered as `id`
    /// ([`Registrar::personality`](uring_core::Registrar::personality),
    /// `IORING_REGISTER_PERSONALITY`, since Linux 5.6): file access, for
    /// one, is checked against them. An id that is not registered (never,
    /// or no longer) fails the entry with `-EINVAL`. Kernel test:
    /// `uring-ops/tests/ops.rs::a_personality_runs_an_operation_with_the_registered_credentials`.
    #[inline]
    fn with_personality(self, id: u16) -> With<Self> {
        With { op: self, flags: SqeFlags::empty(), personality: id }
    }
}

impl<O: Prepare> OpExt for O {}

impl<O: Prepare> With<O> {
    /// Adds more SQE flags.
    #[inline]
    pub fn with_sqe_flags(mut self, flags: SqeFlags) -> Self {
        self.flags |= flags;
        self
    }

    /// Sets the personality.
    #[inline]
    pub fn with_personality(mut self, id: u16) -> Self {
        self.personality = id;
        self
    }
}

/// Checks that `sqe`-level arguments fit the kernel's fields before an SQE
/// is acquired: a length that must fit `u32`.
#[allow(dead_code)] // for the families that take byte lengths
pub(crate) fn len_u32(what: &str, len: usize) -> Result<u32> {
    u32::try_from(len).map_err(|_| uring_core::Error::InvalidArgument(format!("{what}: {len} bytes exceed u32::MAX")))
}
