//! Commands: `uring_cmd`, `uring_cmd128`, `nop`, `nop128`.

use uring_core::{ContextMode, Error, Features, Keep, Result, Ring, SharedRing, Sqe, Sqe128, SqeContext, sys};

use crate::flags::sealed::OnRing;
use crate::op::{Prepare, SafeOp, Target};
use crate::ring::RingOps;

/// Does nothing, and completes: `io_uring_prep_nop`.
///
/// Since Linux 5.1. With [`result`](Self::result) (since 6.10) the CQE
/// carries the given result instead of 0, which tests use to inject
/// failures.
#[doc(alias = "IORING_OP_NOP")]
#[doc(alias = "io_uring_prep_nop")]
#[derive(Debug, Clone, Copy, Default)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct Nop {
    result: Option<i32>,
    cqe32: Option<[u64; 2]>,
}

impl Nop {
    /// A NOP that completes with result 0.
    #[inline]
    pub const fn new() -> Self {
        Nop { result: None, cqe32: None }
    }

    /// Completes with `res` instead (`IORING_NOP_INJECT_RESULT`).
    #[inline]
    pub const fn result(mut self, res: i32) -> Self {
        self.result = Some(res);
        self
    }

    /// Posts a 32-byte CQE whose second half ([`Cqe::big`]) is
    /// `[extra1, extra2]` (`IORING_NOP_CQE32`; the kernel takes them from
    /// `sqe->off` and `sqe->addr`): on a mixed ring
    /// ([`CqeSize::Mixed`](uring_core::CqeSize::Mixed)) the one way to make
    /// a 32-byte CQE on demand, on a 32-byte ring a way to fill its extra
    /// words.
    ///
    /// Since Linux 6.18 (it came with `IORING_SETUP_CQE_MIXED`; older
    /// kernels answer `-EINVAL`, so [`check`](Prepare::check) refuses it
    /// there as [`Error::Unsupported`]). On a ring with 16-byte CQEs the
    /// kernel answers `-EINVAL`; `check` refuses it first, as
    /// [`Error::InvalidArgument`].
    ///
    /// [`Cqe::big`]: uring_core::Cqe::big
    #[doc(alias = "IORING_NOP_CQE32")]
    #[inline]
    pub const fn cqe32(mut self, extra1: u64, extra2: u64) -> Self {
        self.cqe32 = Some([extra1, extra2]);
        self
    }
}

impl Prepare for Nop {
    const CODE: u8 = sys::IORING_OP_NOP as u8;
    const USES_KEEP: bool = false;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        if self.cqe32.is_some() { check_cqe32(features) } else { Ok(()) }
    }

    #[inline]
    fn prepare(self, sqe: &mut Sqe, _keep: &mut Keep) {
        let Nop { result, cqe32 } = self;
        *sqe = Sqe::new(Self::CODE);
        sqe.fd = -1;
        let mut flags = 0;
        if let Some(res) = result {
            flags |= sys::IORING_NOP_INJECT_RESULT;
            sqe.len = res as u32;
        }
        if let Some([extra1, extra2]) = cqe32 {
            flags |= sys::IORING_NOP_CQE32;
            sqe.set_off(extra1);
            sqe.set_addr(extra2);
        }
        sqe.set_op_flags(flags);
    }
}

// SAFETY: a NOP names no memory.
unsafe impl SafeOp for Nop {}

/// What [`Nop::cqe32`] needs of the kernel and the ring.
#[cold]
fn check_cqe32(features: &Features) -> Result<()> {
    crate::timeout::require_version(features, (6, 18), "IORING_NOP_CQE32")?;
    if features.cqe_size() == uring_core::CqeSize::Normal {
        return Err(Error::InvalidArgument(
            "Nop::cqe32 needs a ring with 32-byte or mixed CQEs (Options::cqe_size); the kernel answers -EINVAL on \
             a 16-byte ring"
                .into(),
        ));
    }
    Ok(())
}

/// Sends a driver-defined command to a file: `io_uring_prep_uring_cmd`
/// (`IORING_OP_URING_CMD`), with `cmd_op` and up to 16 inline command
/// bytes (`sqe->cmd`).
///
/// Since Linux 5.19. What the command does, and what its result means, is
/// up to the file's driver (NVMe passthrough, ublk, sockets, …); see
/// [`SiocInq`], [`SiocOutq`], [`GetSockOpt`], [`SetSockOpt`] for the
/// socket commands. On a ring with 128-byte SQEs the kernel reads 80
/// command bytes, and this builder writes only the first 64-byte half:
/// it is refused there ([`Error::InvalidArgument`]); use [`UringCmd128`].
///
/// Not [`SafeOp`]: the command bytes may carry addresses the driver
/// dereferences while the command runs. Push it with
/// [`RingOps::push_op_unchecked`] and keep whatever the command names valid
/// until its last CQE.
#[doc(alias = "IORING_OP_URING_CMD")]
#[doc(alias = "io_uring_prep_uring_cmd")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct UringCmd {
    fd: Target,
    cmd_op: u32,
    cmd: [u8; 16],
    cmd_len: usize,
}

impl UringCmd {
    /// Command `cmd_op` to `fd`, with no command bytes.
    #[inline]
    pub fn new(fd: impl Into<Target>, cmd_op: u32) -> Self {
        UringCmd { fd: fd.into(), cmd_op, cmd: [0; 16], cmd_len: 0 }
    }

    /// The inline command bytes (at most 16; more is
    /// [`Error::InvalidArgument`] when pushed).
    #[inline]
    pub fn cmd(mut self, bytes: &[u8]) -> Self {
        let n = bytes.len().min(16);
        self.cmd = [0; 16];
        self.cmd[..n].copy_from_slice(&bytes[..n]);
        self.cmd_len = bytes.len();
        self
    }
}

/// Writes the first 16 command bytes (`sqe->cmd[0..16]`, the words that
/// `addr3` and the following pad occupy) in memory order.
fn write_cmd16(sqe: &mut Sqe, cmd: &[u8]) {
    let mut w = [[0u8; 8]; 2];
    w[0].copy_from_slice(&cmd[..8]);
    w[1].copy_from_slice(&cmd[8..16]);
    sqe.set_addr3(u64::from_ne_bytes(w[0]));
    sqe.set_attr_type_mask(u64::from_ne_bytes(w[1]));
}

impl Prepare for UringCmd {
    const CODE: u8 = sys::IORING_OP_URING_CMD as u8;
    const USES_KEEP: bool = false;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        if features.sqe_size() == 128 {
            return Err(Error::InvalidArgument(
                "uring_cmd on a ring of 128-byte SQEs: the kernel reads 80 command bytes; use UringCmd128, which \
                 writes all of them"
                    .into(),
            ));
        }
        if self.cmd_len > 16 {
            return Err(Error::InvalidArgument(format!(
                "uring_cmd: {} command bytes; a 64-byte SQE carries 16 (use UringCmd128 on a 128-byte-SQE ring)",
                self.cmd_len
            )));
        }
        Ok(())
    }

    #[inline]
    fn prepare(self, sqe: &mut Sqe, _keep: &mut Keep) {
        let UringCmd { fd, cmd_op, cmd, cmd_len: _ } = self;
        *sqe = Sqe::new(Self::CODE);
        fd.apply(sqe);
        sqe.set_cmd_op(cmd_op);
        write_cmd16(sqe, &cmd);
    }
}

/// The queued-input byte count of a socket (`SIOCINQ`, as `ioctl(FIONREAD)`):
/// `io_uring_prep_cmd_sock(SOCKET_URING_OP_SIOCINQ)`.
///
/// Since Linux 6.7. The result is the number of bytes ready to read
/// (`-EOPNOTSUPP` for a socket whose protocol has no such ioctl).
#[doc(alias = "IORING_OP_URING_CMD")]
#[doc(alias = "SOCKET_URING_OP_SIOCINQ")]
#[doc(alias = "io_uring_prep_cmd_sock")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct SiocInq {
    fd: Target,
}

impl SiocInq {
    /// Asks socket `fd`.
    #[inline]
    pub fn new(fd: impl Into<Target>) -> Self {
        SiocInq { fd: fd.into() }
    }
}

impl Prepare for SiocInq {
    const CODE: u8 = sys::IORING_OP_URING_CMD as u8;
    const USES_KEEP: bool = false;

    #[inline]
    fn prepare(self, sqe: &mut Sqe, _keep: &mut Keep) {
        let SiocInq { fd } = self;
        *sqe = Sqe::new(Self::CODE);
        fd.apply(sqe);
        sqe.set_cmd_op(sys::SOCKET_URING_OP_SIOCINQ);
    }
}

// SAFETY: the command names no memory; the count comes back as the result.
unsafe impl SafeOp for SiocInq {}

/// The unsent byte count of a socket (`SIOCOUTQ`):
/// `io_uring_prep_cmd_sock(SOCKET_URING_OP_SIOCOUTQ)`.
///
/// Since Linux 6.7. The result is the number of bytes in the send queue.
#[doc(alias = "IORING_OP_URING_CMD")]
#[doc(alias = "SOCKET_URING_OP_SIOCOUTQ")]
#[doc(alias = "io_uring_prep_cmd_sock")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct SiocOutq {
    fd: Target,
}

impl SiocOutq {
    /// Asks socket `fd`.
    #[inline]
    pub fn new(fd: impl Into<Target>) -> Self {
        SiocOutq { fd: fd.into() }
    }
}

impl Prepare for SiocOutq {
    const CODE: u8 = sys::IORING_OP_URING_CMD as u8;
    const USES_KEEP: bool = false;

    #[inline]
    fn prepare(self, sqe: &mut Sqe, _keep: &mut Keep) {
        let SiocOutq { fd } = self;
        *sqe = Sqe::new(Self::CODE);
        fd.apply(sqe);
        sqe.set_cmd_op(sys::SOCKET_URING_OP_SIOCOUTQ);
    }
}

// SAFETY: the command names no memory; the count comes back as the result.
unsafe impl SafeOp for SiocOutq {}

/// Reads a socket option: `io_uring_prep_cmd_sock(SOCKET_URING_OP_GETSOCKOPT)`.
///
/// Since Linux 6.7. Only `SOL_SOCKET` options (the kernel answers
/// `-EOPNOTSUPP` for other levels). The value is written to `optval` when
/// the command runs; the result is its length.
///
/// `optval` is caller memory written when the command runs: the `unsafe`
/// constructor takes that obligation, and the operation is a [`SafeOp`]
/// ([`CmdOps::getsockopt`] takes the same arguments).
#[doc(alias = "IORING_OP_URING_CMD")]
#[doc(alias = "SOCKET_URING_OP_GETSOCKOPT")]
#[doc(alias = "io_uring_prep_cmd_sock")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct GetSockOpt {
    fd: Target,
    level: i32,
    optname: i32,
    optval: *mut u8,
    optlen: usize,
}

impl GetSockOpt {
    /// Reads option `optname` of `level` on socket `fd` into `optval`
    /// (over `u32::MAX` bytes is refused when pushed).
    ///
    /// # Safety
    ///
    /// For every push of the returned operation (or of a copy of it),
    /// `optval` must stay valid, and must be neither read nor written by
    /// the program, until that operation's CQE has been reaped.
    #[inline]
    pub unsafe fn new(fd: impl Into<Target>, level: i32, optname: i32, optval: &mut [u8]) -> Self {
        GetSockOpt { fd: fd.into(), level, optname, optval: optval.as_mut_ptr(), optlen: optval.len() }
    }
}

impl Prepare for GetSockOpt {
    const CODE: u8 = sys::IORING_OP_URING_CMD as u8;
    const USES_KEEP: bool = false;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        crate::op::len_u32("getsockopt value", self.optlen).map(drop)
    }

    #[inline]
    fn prepare(self, sqe: &mut Sqe, _keep: &mut Keep) {
        let GetSockOpt { fd, level, optname, optval, optlen } = self;
        *sqe = Sqe::new(Self::CODE);
        fd.apply(sqe);
        sqe.set_cmd_op(sys::SOCKET_URING_OP_GETSOCKOPT);
        sqe.set_level(level as u32);
        sqe.set_optname(optname as u32);
        sqe.set_optlen(optlen as u32);
        sqe.set_optval(optval as u64);
    }
}

// SAFETY: `optval` is the only memory named; the caller of the unsafe
// constructor keeps it valid and unaccessed until every push's CQE.
unsafe impl SafeOp for GetSockOpt {}

/// Sets a socket option: `io_uring_prep_cmd_sock(SOCKET_URING_OP_SETSOCKOPT)`.
///
/// Since Linux 6.7. The result is 0 or a negative errno, as for
/// `setsockopt`.
///
/// The kernel reads `optval` when the command runs, which may be after
/// submission (io-wq): the `unsafe` constructor takes that obligation, and
/// the operation is a [`SafeOp`] ([`CmdOps::setsockopt`] takes the same
/// arguments).
#[doc(alias = "IORING_OP_URING_CMD")]
#[doc(alias = "SOCKET_URING_OP_SETSOCKOPT")]
#[doc(alias = "io_uring_prep_cmd_sock")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct SetSockOpt {
    fd: Target,
    level: i32,
    optname: i32,
    optval: *const u8,
    optlen: usize,
}

impl SetSockOpt {
    /// Sets option `optname` of `level` on socket `fd` from `optval` (over
    /// `u32::MAX` bytes is refused when pushed).
    ///
    /// # Safety
    ///
    /// For every push of the returned operation (or of a copy of it),
    /// `optval` must stay valid and unmodified until that operation's CQE
    /// has been reaped.
    #[inline]
    pub unsafe fn new(fd: impl Into<Target>, level: i32, optname: i32, optval: &[u8]) -> Self {
        SetSockOpt { fd: fd.into(), level, optname, optval: optval.as_ptr(), optlen: optval.len() }
    }

    /// Sets an option from `'static` bytes: safe.
    #[inline]
    pub fn from_static(fd: impl Into<Target>, level: i32, optname: i32, optval: &'static [u8]) -> Self {
        // SAFETY: `'static` bytes behind a shared reference stay valid and
        // unmodified for ever.
        unsafe { SetSockOpt::new(fd, level, optname, optval) }
    }
}

impl Prepare for SetSockOpt {
    const CODE: u8 = sys::IORING_OP_URING_CMD as u8;
    const USES_KEEP: bool = false;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        crate::op::len_u32("setsockopt value", self.optlen).map(drop)
    }

    #[inline]
    fn prepare(self, sqe: &mut Sqe, _keep: &mut Keep) {
        let SetSockOpt { fd, level, optname, optval, optlen } = self;
        *sqe = Sqe::new(Self::CODE);
        fd.apply(sqe);
        sqe.set_cmd_op(sys::SOCKET_URING_OP_SETSOCKOPT);
        sqe.set_level(level as u32);
        sqe.set_optname(optname as u32);
        sqe.set_optlen(optlen as u32);
        sqe.set_optval(optval as u64);
    }
}

// SAFETY: `optval` is the only memory named: `'static`, or kept valid and
// unmodified until every push's CQE by the caller of the unsafe
// constructor.
unsafe impl SafeOp for SetSockOpt {}

/// An operation that needs a 128-byte SQE: the companion of [`Prepare`]
/// for rings created with [`Options::sqe128`](uring_core::Options::sqe128).
/// Push it with [`Ring128Ops`].
pub trait Prepare128 {
    /// The `IORING_OP_*` opcode.
    const CODE: u8;

    /// Checks, before any SQE is acquired, that the kernel knows the opcode
    /// and that the ring has 128-byte SQEs; either missing is
    /// [`Error::Unsupported`] naming it.
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`], or [`Error::InvalidArgument`] for arguments
    /// the kernel would reject.
    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        require_sqe128(Self::CODE, features)
    }

    /// Overwrites all 128 bytes of `sqe` (`user_data` zero: the ring method
    /// stamps the context afterwards).
    fn prepare(self, sqe: &mut Sqe128);
}

/// A [`Prepare128`] operation whose SQE names no memory: safe to push with
/// [`Ring128Ops::push_op128`].
///
/// # Safety
///
/// As for [`SafeOp`]: the prepared SQE names no address the kernel
/// dereferences.
pub unsafe trait SafeOp128: Prepare128 {}

/// [`Error::Unsupported`] unless the ring has 128-byte SQEs, or is an
/// `SQE_MIXED` ring (6.19+) where a 128-byte entry takes two slots.
fn require_sqe128(code: u8, features: &Features) -> Result<()> {
    if features.sqe_size() == 128 || is_mixed(features) {
        return Ok(());
    }
    let name = uring_core::opcode_name(code).unwrap_or("opcode");
    Err(Error::unsupported(
        format!("{name} with a 128-byte SQE on a ring of 64-byte SQEs"),
        Some("create the ring with Options::sqe128(true) or SetupFlags::SQE_MIXED (6.19+)"),
    ))
}

/// Whether the ring mixes 64- and 128-byte SQEs (`IORING_SETUP_SQE_MIXED`).
fn is_mixed(features: &Features) -> bool {
    features.sqe_size() == 64 && features.setup_flags().contains(uring_core::SetupFlags::SQE_MIXED)
}

/// Does nothing in a 128-byte SQE, and completes: `io_uring_prep_nop128`.
///
/// Since Linux 6.19 (`IORING_OP_NOP128`, with `IORING_SETUP_SQE_MIXED`);
/// not in the 6.18 opcode probe, where pushing it is
/// [`Error::Unsupported`] naming `IORING_OP_NOP128`. Needs a 128-byte SQE
/// ring or an `SQE_MIXED` ring (where it takes two slots, padded at the
/// end of the SQ by a NOP that posts no CQE).
#[doc(alias = "IORING_OP_NOP128")]
#[doc(alias = "io_uring_prep_nop128")]
#[derive(Debug, Clone, Copy, Default)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct Nop128 {
    _private: (),
}

impl Nop128 {
    /// A 128-byte NOP.
    #[inline]
    pub const fn new() -> Self {
        Nop128 { _private: () }
    }
}

impl Prepare128 for Nop128 {
    const CODE: u8 = sys::IORING_OP_NOP128 as u8;

    #[inline]
    fn prepare(self, sqe: &mut Sqe128) {
        let Nop128 { _private: () } = self;
        *sqe = Sqe128::default();
        sqe.sqe.opcode = Self::CODE;
        sqe.sqe.fd = -1;
    }
}

// SAFETY: a NOP names no memory.
unsafe impl SafeOp128 for Nop128 {}

/// A driver command with 80 inline command bytes, on a ring of 128-byte
/// SQEs: `io_uring_prep_uring_cmd` on an `IORING_SETUP_SQE128` ring.
///
/// Since Linux 5.19. It is `IORING_OP_URING_CMD` in a 128-byte SQE: on an
/// `SQE128` ring every `URING_CMD` carries 80 command bytes (16 in the
/// first half, 64 in the second). `IORING_OP_URING_CMD128`, the opcode for
/// 128-byte commands on `SQE_MIXED` rings, arrives in 6.19 and is not in
/// the 6.18 probe; it is not needed on an `SQE128` ring. Pushing this on a
/// 64-byte-SQE ring is [`Error::Unsupported`].
///
/// Not [`SafeOp128`]: the command bytes may carry addresses the driver
/// dereferences; push it with [`Ring128Ops::push_op128_unchecked`].
#[doc(alias = "IORING_OP_URING_CMD")]
#[doc(alias = "IORING_OP_URING_CMD128")]
#[doc(alias = "io_uring_prep_uring_cmd128")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct UringCmd128 {
    fd: Target,
    cmd_op: u32,
    cmd: [u8; 80],
    cmd_len: usize,
}

impl UringCmd128 {
    /// Command `cmd_op` to `fd`, with no command bytes.
    #[inline]
    pub fn new(fd: impl Into<Target>, cmd_op: u32) -> Self {
        UringCmd128 { fd: fd.into(), cmd_op, cmd: [0; 80], cmd_len: 0 }
    }

    /// The inline command bytes (at most 80; more is
    /// [`Error::InvalidArgument`] when pushed).
    #[inline]
    pub fn cmd(mut self, bytes: &[u8]) -> Self {
        let n = bytes.len().min(80);
        self.cmd = [0; 80];
        self.cmd[..n].copy_from_slice(&bytes[..n]);
        self.cmd_len = bytes.len();
        self
    }
}

impl Prepare128 for UringCmd128 {
    const CODE: u8 = sys::IORING_OP_URING_CMD as u8;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        require_sqe128(Self::CODE, features)?;
        if is_mixed(features) {
            features.require(sys::IORING_OP_URING_CMD128 as u8)?;
        }
        if self.cmd_len > 80 {
            return Err(Error::InvalidArgument(format!(
                "uring_cmd: {} command bytes; a 128-byte SQE carries 80",
                self.cmd_len
            )));
        }
        Ok(())
    }

    #[inline]
    fn prepare(self, sqe: &mut Sqe128) {
        let UringCmd128 { fd, cmd_op, cmd, cmd_len: _ } = self;
        *sqe = Sqe128::default();
        sqe.sqe = Sqe::new(Self::CODE);
        fd.apply(&mut sqe.sqe);
        sqe.sqe.set_cmd_op(cmd_op);
        write_cmd16(&mut sqe.sqe, &cmd[..16]);
        sqe.ext.copy_from_slice(&cmd[16..]);
    }
}

/// Submitting [`Prepare128`] operations on a ring of 128-byte SQEs; the
/// companion of [`RingOps`], stamping contexts the same way (direct
/// contexts get the opcode and SQE flags; pooled ones a copy of the
/// first 64 bytes).
pub trait Ring128Ops {
    /// Queues a [`SafeOp128`].
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`] (the opcode, or a ring of 64-byte SQEs),
    /// [`Error::InvalidArgument`], [`Error::QueueFull`],
    /// [`Error::NotStarted`], [`Error::Stopped`].
    fn push_op128<O: SafeOp128>(&mut self, ctx: SqeContext, op: O) -> Result<SqeContext>;

    /// Queues any [`Prepare128`] operation.
    ///
    /// # Errors
    ///
    /// As for [`push_op128`](Self::push_op128).
    ///
    /// # Safety
    ///
    /// As for [`RingOps::push_op_unchecked`]: every address the operation
    /// names (in its command bytes too) must stay valid until its last CQE.
    unsafe fn push_op128_unchecked<O: Prepare128>(&mut self, ctx: SqeContext, op: O) -> Result<SqeContext>;

    /// Queues a [`Nop128`].
    ///
    /// # Errors
    ///
    /// As for [`push_op128`](Self::push_op128).
    fn nop128(&mut self, ctx: SqeContext) -> Result<SqeContext> {
        self.push_op128(ctx, Nop128::new())
    }
}

impl Ring128Ops for Ring {
    #[inline]
    fn push_op128<O: SafeOp128>(&mut self, ctx: SqeContext, op: O) -> Result<SqeContext> {
        // SAFETY: `O: SafeOp128` names no memory.
        unsafe { self.push_op128_unchecked(ctx, op) }
    }

    unsafe fn push_op128_unchecked<O: Prepare128>(&mut self, ctx: SqeContext, op: O) -> Result<SqeContext> {
        crate::ring::refuse_layer(ctx)?;
        op.check(self.features())?;
        crate::ring::check_live(self.pools(), ctx)?;
        let queued_at = self.cq_position();
        let mixed = is_mixed(self.features());
        // SAFETY: forwarded to the caller (the memory the operation names);
        // on a mixed ring a non-128-byte opcode is refused below, before
        // anything is published.
        let sqe = unsafe { self.next_sqe128() }?;
        op.prepare(sqe);
        if mixed && let Err(e) = mixed_opcode(sqe) {
            // SAFETY: the entry was acquired just above and nothing
            // depends on it yet.
            unsafe { self.retract_last_sqe() };
            return Err(e);
        }
        let stamped = crate::ring::stamp_entry(&mut sqe.sqe, ctx);
        // SAFETY: `stamped` is of the entry acquired just above, not
        // flushed; `queued_at` was read before it was acquired.
        unsafe { crate::ring::settle(self, ctx, stamped, queued_at, false) }.map(|(stamped, _)| stamped)
    }
}

/// On a mixed ring the kernel reads an entry as 128 bytes only for the
/// 128-byte opcodes; any other would make it read the second half as the
/// next entry: `URING_CMD` becomes `URING_CMD128`, any other opcode but
/// `NOP128` is refused.
fn mixed_opcode(sqe: &mut Sqe128) -> Result<()> {
    if sqe.sqe.opcode == sys::IORING_OP_URING_CMD as u8 {
        sqe.sqe.opcode = sys::IORING_OP_URING_CMD128 as u8;
    }
    let op = sqe.sqe.opcode;
    if op != sys::IORING_OP_NOP128 as u8 && op != sys::IORING_OP_URING_CMD128 as u8 {
        let name = uring_core::opcode_name(op).unwrap_or("opcode");
        return Err(Error::InvalidArgument(format!(
            "{name} in a 128-byte entry of an SQE_MIXED ring: only IORING_OP_NOP128 and IORING_OP_URING_CMD128 are \
             128 bytes there"
        )));
    }
    Ok(())
}

/// [`Ring128Ops`] for a [`SharedRing`], from any thread: the same checks
/// and context stamping, the entry written under the SQ lock
/// ([`SharedRing::push128_with`]) and given back, unpublished, when it is
/// refused after it was acquired. Since Linux 5.19 (`IORING_SETUP_SQE128`,
/// `IORING_OP_URING_CMD`); `NOP128` and `SQE_MIXED` rings since 6.19.
pub trait SharedRing128Ops {
    /// As [`Ring128Ops::push_op128`].
    ///
    /// # Errors
    ///
    /// As for [`Ring128Ops::push_op128`].
    fn push_op128<O: SafeOp128>(&self, ctx: SqeContext, op: O) -> Result<SqeContext>;

    /// As [`Ring128Ops::push_op128_unchecked`].
    ///
    /// # Errors
    ///
    /// As for [`Ring128Ops::push_op128`].
    ///
    /// # Safety
    ///
    /// As for [`Ring128Ops::push_op128_unchecked`]; the memory must stay
    /// valid until the last CQE is reaped, by whichever thread reaps it.
    unsafe fn push_op128_unchecked<O: Prepare128>(&self, ctx: SqeContext, op: O) -> Result<SqeContext>;

    /// Queues a [`Nop128`].
    ///
    /// # Errors
    ///
    /// As for [`push_op128`](Self::push_op128).
    fn nop128(&self, ctx: SqeContext) -> Result<SqeContext> {
        self.push_op128(ctx, Nop128::new())
    }
}

impl SharedRing128Ops for SharedRing {
    #[inline]
    fn push_op128<O: SafeOp128>(&self, ctx: SqeContext, op: O) -> Result<SqeContext> {
        // SAFETY: `O: SafeOp128` names no memory.
        unsafe { self.push_op128_unchecked(ctx, op) }
    }

    unsafe fn push_op128_unchecked<O: Prepare128>(&self, ctx: SqeContext, op: O) -> Result<SqeContext> {
        crate::ring::refuse_layer(ctx)?;
        op.check(self.features())?;
        let pooled = matches!(ctx.mode(), ContextMode::Indirect | ContextMode::Extended);
        if pooled {
            crate::ring::check_live(&self.pools(), ctx)?;
        }
        // Read before the entry exists: a lower bound of its CQEs' `seq`.
        let queued_at = if pooled { self.cq_position() } else { 0 };
        let mixed = is_mixed(self.features());
        // SAFETY: forwarded to the caller (the memory the operation
        // names); on a mixed ring a non-128-byte opcode fails `fill`,
        // which gives the entry back unpublished. The pooled copy is
        // written before the entry can be published (the SQ lock is held);
        // the pools lock is taken after the SQ lock, as `SharedRingOps`
        // does.
        unsafe {
            self.push128_with(|sqe| {
                op.prepare(sqe);
                if mixed {
                    mixed_opcode(sqe)?;
                }
                let stamped = crate::ring::stamp(&mut sqe.sqe, ctx)?;
                // (Inside the unsafe block above: `sqe.sqe` is the entry
                // being queued under `ctx` on this ring, unpublished while
                // the SQ lock is held, as `record_pooled` needs.)
                if pooled && !crate::ring::record_pooled(&mut self.pools(), ctx, sqe.sqe, queued_at) {
                    // Another thread queued an entry under this slot
                    // meanwhile: `check_live` now says so.
                    crate::ring::check_live(&self.pools(), ctx)?;
                    return Err(Error::InvalidArgument(format!("{ctx:?} already names a queued entry")));
                }
                Ok(stamped)
            })
        }
    }
}

/// Commands as [`Ring`] methods (the 128-byte ones are in [`Ring128Ops`]).
pub trait CmdOps {
    /// Queues a [`Nop`].
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    fn nop(&mut self, ctx: SqeContext) -> Result<SqeContext>;

    /// Queues a `SIOCINQ` query of socket `fd` ([`SiocInq`]).
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    fn socket_inq(&mut self, ctx: SqeContext, fd: impl Into<Target>) -> Result<SqeContext>;

    /// Queues a `SIOCOUTQ` query of socket `fd` ([`SiocOutq`]).
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    fn socket_outq(&mut self, ctx: SqeContext, fd: impl Into<Target>) -> Result<SqeContext>;

    /// Queues a `getsockopt` of `level`/`optname` into `optval` ([`GetSockOpt`]).
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op_unchecked`]; [`Error::InvalidArgument`]
    /// for a buffer longer than `u32::MAX`.
    ///
    /// # Safety
    ///
    /// As for [`GetSockOpt::new`].
    unsafe fn getsockopt(
        &mut self,
        ctx: SqeContext,
        fd: impl Into<Target>,
        level: i32,
        optname: i32,
        optval: &mut [u8],
    ) -> Result<SqeContext>;

    /// Queues a `setsockopt` of `level`/`optname` from `optval` ([`SetSockOpt`]).
    ///
    /// # Errors
    ///
    /// As for [`getsockopt`](Self::getsockopt).
    ///
    /// # Safety
    ///
    /// As for [`SetSockOpt::new`].
    unsafe fn setsockopt(
        &mut self,
        ctx: SqeContext,
        fd: impl Into<Target>,
        level: i32,
        optname: i32,
        optval: &[u8],
    ) -> Result<SqeContext>;

    /// Queues driver command `cmd_op` to `fd` with up to 16 command bytes
    /// ([`UringCmd`]).
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op_unchecked`]; [`Error::InvalidArgument`]
    /// for more than 16 bytes.
    ///
    /// # Safety
    ///
    /// Every address the command bytes carry must be valid for what the
    /// driver does with it until the operation's last CQE.
    unsafe fn uring_cmd(
        &mut self,
        ctx: SqeContext,
        fd: impl Into<Target>,
        cmd_op: u32,
        cmd: &[u8],
    ) -> Result<SqeContext>;
}

impl<R: RingOps + OnRing> CmdOps for R {
    #[inline]
    fn nop(&mut self, ctx: SqeContext) -> Result<SqeContext> {
        self.push_op(ctx, Nop::new())
    }

    #[inline]
    fn socket_inq(&mut self, ctx: SqeContext, fd: impl Into<Target>) -> Result<SqeContext> {
        self.push_op(ctx, SiocInq::new(fd))
    }

    #[inline]
    fn socket_outq(&mut self, ctx: SqeContext, fd: impl Into<Target>) -> Result<SqeContext> {
        self.push_op(ctx, SiocOutq::new(fd))
    }

    #[inline]
    unsafe fn getsockopt(
        &mut self,
        ctx: SqeContext,
        fd: impl Into<Target>,
        level: i32,
        optname: i32,
        optval: &mut [u8],
    ) -> Result<SqeContext> {
        // SAFETY: forwarded to the caller (`GetSockOpt::new`'s contract).
        let op = unsafe { GetSockOpt::new(fd, level, optname, optval) };
        self.push_op(ctx, op)
    }

    #[inline]
    unsafe fn setsockopt(
        &mut self,
        ctx: SqeContext,
        fd: impl Into<Target>,
        level: i32,
        optname: i32,
        optval: &[u8],
    ) -> Result<SqeContext> {
        // SAFETY: forwarded to the caller (`SetSockOpt::new`'s contract).
        let op = unsafe { SetSockOpt::new(fd, level, optname, optval) };
        self.push_op(ctx, op)
    }

    #[inline]
    unsafe fn uring_cmd(
        &mut self,
        ctx: SqeContext,
        fd: impl Into<Target>,
        cmd_op: u32,
        cmd: &[u8],
    ) -> Result<SqeContext> {
        // SAFETY: forwarded to the caller.
        unsafe { self.push_op_unchecked(ctx, UringCmd::new(fd, cmd_op).cmd(cmd)) }
    }
}
