//! Socket commands that report back: transmit timestamps
//! ([`TxTimestamps`], a multishot command whose 32-byte CQEs
//! [`TxTimestamp`] decodes) and the local or peer address
//! ([`GetSockName`]). Both are `IORING_OP_URING_CMD` on a socket with a
//! `SOCKET_URING_OP_*` `cmd_op` (`io_uring/cmd_net.c`), as are the older
//! ones in [`cmd`](crate::cmd) (`SIOCINQ`, `SIOCOUTQ`, `getsockopt`,
//! `setsockopt`).
//!
//! The ring methods are in [`SockCmdOps`].

use std::fmt;
use std::time::{Duration, SystemTime};

use uring_core::{Cqe, CqeSize, Error, Features, Keep, Result, Sqe, SqeContext, sys};

use crate::flags::sealed::OnRing;
use crate::op::{Prepare, SafeOp, Target};
use crate::ring::RingOps;
use crate::socket::SockAddr;
use crate::timeout::require_version;

/// Reads transmit timestamps off a socket's error queue and posts each as
/// a CQE: `io_uring_prep_cmd_sock(SOCKET_URING_OP_TX_TIMESTAMP)`.
///
/// Since Linux 6.16. A multishot command: it stays armed, and every
/// timestamp the socket queues comes back as a 32-byte CQE with
/// `IORING_CQE_F_MORE`, which [`TxTimestamp::from_cqe`] decodes (the key
/// in `res`, the type and the hardware bit in the flags, the time in the
/// second half). It ends with one CQE without `F_MORE`: `-ECANCELED` when
/// cancelled ([`AsyncCancel`](crate::cancel::AsyncCancel) by its
/// `user_data`), or another error.
///
/// The socket must have `SO_TIMESTAMPING` on with the transmit stamps it
/// wants (`SOF_TIMESTAMPING_TX_SCHED`, `TX_SOFTWARE`, `TX_ACK`, … and
/// `SOF_TIMESTAMPING_SOFTWARE` to report software stamps) and with
/// `SOF_TIMESTAMPING_OPT_TSONLY`: the kernel skips error-queue entries
/// that carry a copy of the packet. `SOF_TIMESTAMPING_OPT_ID` gives each
/// stamp its key (a datagram's number on UDP, the last byte's offset on
/// TCP).
///
/// Needs a ring with 32-byte CQEs ([`CqeSize::Big`]) or a mixed CQ
/// ([`CqeSize::Mixed`], 6.18, where the stamps are its 32-byte entries);
/// on a ring of 16-byte CQEs the kernel answers `-EINVAL`, which
/// [`check`](Prepare::check) reports first as [`Error::InvalidArgument`].
/// Before 6.16 pushing it is [`Error::Unsupported`].
///
/// ```no_run
/// use std::os::fd::AsRawFd;
/// use uring_core::CqeSize;
/// use uring_ops::prelude::*;
/// use uring_ops::sockcmd::{SockCmdOps, TxTimestamp};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut ring = Ring::new(Options::default().cqe_size(CqeSize::Big))?;
/// ring.start()?;
/// let sock = std::net::UdpSocket::bind("127.0.0.1:0")?;
/// // … SO_TIMESTAMPING with OPT_TSONLY on `sock`, then sends …
/// let stamps = ring.tx_timestamps(SqeContext::token(1)?, sock.as_raw_fd())?;
/// ring.submit()?;
/// let mut slots = [CqeSlot::EMPTY; 16];
/// for cqe in ring.wait_for(&mut slots, 1, None)?.iter() {
///     if cqe.user_data() == stamps.raw() {
///         if let Some(ts) = TxTimestamp::from_cqe(&cqe) {
///             println!("{:?} of {} at {:?}", ts.kind(), ts.key(), ts.time());
///         }
///     }
/// }
/// # Ok(()) }
/// ```
#[doc(alias = "IORING_OP_URING_CMD")]
#[doc(alias = "SOCKET_URING_OP_TX_TIMESTAMP")]
#[doc(alias = "io_uring_prep_cmd_sock")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct TxTimestamps {
    fd: Target,
}

impl TxTimestamps {
    /// Reports the transmit timestamps of socket `fd`.
    #[inline]
    pub fn new(fd: impl Into<Target>) -> Self {
        TxTimestamps { fd: fd.into() }
    }
}

impl Prepare for TxTimestamps {
    const CODE: u8 = sys::IORING_OP_URING_CMD as u8;
    const USES_KEEP: bool = false;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        require_version(features, (6, 16), "SOCKET_URING_OP_TX_TIMESTAMP")?;
        if features.cqe_size() == CqeSize::Normal { Err(small_cqes()) } else { Ok(()) }
    }

    #[inline]
    fn prepare(self, sqe: &mut Sqe, _keep: &mut Keep) {
        let TxTimestamps { fd } = self;
        *sqe = Sqe::new(Self::CODE);
        fd.apply(sqe);
        sqe.set_cmd_op(sys::SOCKET_URING_OP_TX_TIMESTAMP);
    }
}

/// [`TxTimestamps`] on a ring of 16-byte CQEs.
#[cold]
fn small_cqes() -> Error {
    Error::InvalidArgument(
        "TxTimestamps: each timestamp is a 32-byte CQE; the kernel answers -EINVAL on a ring of 16-byte CQEs (use \
         CqeSize::Big or CqeSize::Mixed)"
            .into(),
    )
}

// SAFETY: the command names no memory; the timestamps come back in CQEs.
unsafe impl SafeOp for TxTimestamps {}

/// The point of transmission a timestamp marks: `SCM_TSTAMP_*` of
/// `linux/errqueue.h`, as the kernel puts it in a [`TxTimestamp`] CQE's
/// flags (from bit `IORING_TIMESTAMP_TYPE_SHIFT`).
///
/// A newtype, not an enum: a type a newer kernel adds is kept as it is.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct TstampType(u32);

impl TstampType {
    /// `SCM_TSTAMP_SND`: handed to the device (software: by the driver;
    /// hardware: by the NIC). Asked for with `SOF_TIMESTAMPING_TX_SOFTWARE`
    /// / `TX_HARDWARE`.
    #[doc(alias = "SCM_TSTAMP_SND")]
    pub const SND: TstampType = TstampType(0);
    /// `SCM_TSTAMP_SCHED`: entered the packet scheduler
    /// (`SOF_TIMESTAMPING_TX_SCHED`).
    #[doc(alias = "SCM_TSTAMP_SCHED")]
    pub const SCHED: TstampType = TstampType(1);
    /// `SCM_TSTAMP_ACK`: all the bytes were acknowledged (TCP,
    /// `SOF_TIMESTAMPING_TX_ACK`).
    #[doc(alias = "SCM_TSTAMP_ACK")]
    pub const ACK: TstampType = TstampType(2);
    /// `SCM_TSTAMP_COMPLETION`: the device reported the transmission
    /// complete (`SOF_TIMESTAMPING_TX_COMPLETION`, since Linux 6.14).
    #[doc(alias = "SCM_TSTAMP_COMPLETION")]
    pub const COMPLETION: TstampType = TstampType(3);

    /// The type with the kernel's value `raw`.
    #[inline]
    pub const fn from_raw(raw: u32) -> Self {
        TstampType(raw)
    }

    /// The kernel's value.
    #[inline]
    pub const fn raw(self) -> u32 {
        self.0
    }
}

impl fmt::Debug for TstampType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            TstampType::SND => f.write_str("SCM_TSTAMP_SND"),
            TstampType::SCHED => f.write_str("SCM_TSTAMP_SCHED"),
            TstampType::ACK => f.write_str("SCM_TSTAMP_ACK"),
            TstampType::COMPLETION => f.write_str("SCM_TSTAMP_COMPLETION"),
            TstampType(n) => write!(f, "TstampType({n})"),
        }
    }
}

/// One transmit timestamp, decoded from a [`TxTimestamps`] CQE.
///
/// The kernel lays it out as: `res` the key (`ee_data` of the error-queue
/// entry: with `SOF_TIMESTAMPING_OPT_ID`, the datagram's number on UDP or
/// the offset of the last byte on TCP), the flags `IORING_CQE_F_MORE`,
/// `IORING_CQE_F_TSTAMP_HW` for a hardware stamp and the type from bit
/// `IORING_TIMESTAMP_TYPE_SHIFT`, and the time as an `io_timespec` in the
/// second half of the 32-byte CQE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TxTimestamp {
    key: u32,
    kind: TstampType,
    hardware: bool,
    time: Duration,
}

impl TxTimestamp {
    /// The timestamp `cqe` carries, or `None` when it is not a timestamp
    /// CQE: without `IORING_CQE_F_MORE` (the command's last CQE, whose
    /// `res` says why it ended) or not 32 bytes.
    ///
    /// It decodes the shape only: route CQEs to it by the `user_data` of
    /// the [`TxTimestamps`] command, as with any completion.
    pub fn from_cqe(cqe: &Cqe<'_>) -> Option<Self> {
        if !cqe.more() {
            return None;
        }
        let [sec, nsec] = cqe.big()?;
        let flags = cqe.raw_flags();
        Some(TxTimestamp {
            // The kernel stores the u32 key in the i32 `res`.
            key: cqe.res() as u32,
            kind: TstampType(flags >> sys::IORING_TIMESTAMP_TYPE_SHIFT),
            hardware: flags & sys::IORING_CQE_F_TSTAMP_HW != 0,
            time: Duration::new(sec, nsec.min(999_999_999) as u32),
        })
    }

    /// The key: which datagram or byte the stamp is for (see the type's
    /// docs).
    #[inline]
    pub fn key(&self) -> u32 {
        self.key
    }

    /// Which point of transmission it marks.
    #[inline]
    pub fn kind(&self) -> TstampType {
        self.kind
    }

    /// `IORING_CQE_F_TSTAMP_HW`: a hardware stamp (the NIC's clock), not a
    /// software one (`CLOCK_REALTIME`).
    #[doc(alias = "IORING_CQE_F_TSTAMP_HW")]
    #[inline]
    pub fn is_hardware(&self) -> bool {
        self.hardware
    }

    /// The time as the kernel reported it (`io_timespec`): since the Unix
    /// epoch for a software stamp, on the NIC's clock for a hardware one.
    #[inline]
    pub fn time(&self) -> Duration {
        self.time
    }

    /// A software stamp as a [`SystemTime`] (`CLOCK_REALTIME`); `None` for
    /// a hardware stamp, whose clock is the NIC's.
    #[inline]
    pub fn system_time(&self) -> Option<SystemTime> {
        (!self.hardware).then(|| SystemTime::UNIX_EPOCH + self.time)
    }
}

/// The local or peer address of a socket, written into a [`SockAddr`]:
/// `io_uring_prep_cmd_getsockname`
/// (`io_uring_prep_cmd_sock(SOCKET_URING_OP_GETSOCKNAME)`).
///
/// Since Linux 6.19: the kernel writes the address (`sqe->addr`) and its
/// length (`sqe->addr3` points at a `socklen_t`, the capacity going in)
/// when the command runs, as `getsockname(2)` / `getpeername(2)` would
/// ([`peer`](Self::peer) sets `sqe->optlen` to 1). The result is 0, or
/// `-ENOTCONN` for the peer of an unconnected socket, `-EOPNOTSUPP` for a
/// file that is not a socket. It works on a fixed-file slot too, which
/// the syscalls cannot reach.
///
/// The address is caller memory written when the command runs (which may
/// be after submission): the `unsafe` constructors take that obligation,
/// and the operation is a [`SafeOp`]. Before 6.19 pushing it is
/// [`Error::Unsupported`].
#[doc(alias = "IORING_OP_URING_CMD")]
#[doc(alias = "SOCKET_URING_OP_GETSOCKNAME")]
#[doc(alias = "io_uring_prep_cmd_getsockname")]
#[doc(alias = "io_uring_prep_cmd_sock")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct GetSockName {
    fd: Target,
    peer: bool,
    addr: *mut libc::sockaddr,
    len: *mut libc::socklen_t,
}

impl GetSockName {
    /// Writes the local address of socket `fd` into `addr`
    /// (`getsockname`). The length in `addr` is set to its full capacity
    /// now; the kernel replaces it with the address's length.
    ///
    /// # Safety
    ///
    /// For every push of the returned operation (or of a copy of it),
    /// `addr` must stay valid, and must be neither read nor written by the
    /// program, until that operation's CQE has been reaped.
    #[inline]
    pub unsafe fn new(fd: impl Into<Target>, addr: &mut SockAddr) -> Self {
        let (addr, len) = addr.as_out_ptrs();
        GetSockName { fd: fd.into(), peer: false, addr, len }
    }

    /// Writes the address of the peer of socket `fd` into `addr`
    /// (`getpeername`).
    ///
    /// # Safety
    ///
    /// As for [`new`](Self::new).
    #[inline]
    pub unsafe fn peer(fd: impl Into<Target>, addr: &mut SockAddr) -> Self {
        let (addr, len) = addr.as_out_ptrs();
        GetSockName { fd: fd.into(), peer: true, addr, len }
    }
}

impl Prepare for GetSockName {
    const CODE: u8 = sys::IORING_OP_URING_CMD as u8;
    const USES_KEEP: bool = false;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        require_version(features, (6, 19), "SOCKET_URING_OP_GETSOCKNAME")
    }

    #[inline]
    fn prepare(self, sqe: &mut Sqe, _keep: &mut Keep) {
        let GetSockName { fd, peer, addr, len } = self;
        *sqe = Sqe::new(Self::CODE);
        fd.apply(sqe);
        sqe.set_cmd_op(sys::SOCKET_URING_OP_GETSOCKNAME);
        sqe.set_addr(addr as u64);
        sqe.set_addr3(len as u64);
        sqe.set_optlen(u32::from(peer));
    }
}

// SAFETY: the address and its length (both inside one `SockAddr`) are the
// only memory named; the caller of the unsafe constructors keeps it valid
// and unaccessed until every push's CQE.
unsafe impl SafeOp for GetSockName {}

/// The socket commands of this module as ring methods.
///
/// Every method queues one SQE and submits nothing; errors are those of
/// [`RingOps::push_op`].
pub trait SockCmdOps {
    /// Queues a [`TxTimestamps`] on socket `fd`: each transmit timestamp
    /// comes back as a CQE under `ctx` ([`TxTimestamp::from_cqe`]) until
    /// the command is cancelled.
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`]; see [`TxTimestamps`] for the ring it
    /// needs.
    #[doc(alias = "io_uring_prep_cmd_sock")]
    fn tx_timestamps(&mut self, ctx: SqeContext, fd: impl Into<Target>) -> Result<SqeContext>;

    /// Queues a [`GetSockName`] of socket `fd` into `addr`.
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    ///
    /// # Safety
    ///
    /// As for [`GetSockName::new`].
    #[doc(alias = "io_uring_prep_cmd_getsockname")]
    unsafe fn getsockname(&mut self, ctx: SqeContext, fd: impl Into<Target>, addr: &mut SockAddr)
    -> Result<SqeContext>;

    /// Queues a [`GetSockName::peer`] of socket `fd` into `addr`.
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    ///
    /// # Safety
    ///
    /// As for [`GetSockName::new`].
    #[doc(alias = "io_uring_prep_cmd_getsockname")]
    unsafe fn getpeername(&mut self, ctx: SqeContext, fd: impl Into<Target>, addr: &mut SockAddr)
    -> Result<SqeContext>;
}

impl<R: RingOps + OnRing> SockCmdOps for R {
    #[inline]
    fn tx_timestamps(&mut self, ctx: SqeContext, fd: impl Into<Target>) -> Result<SqeContext> {
        self.push_op(ctx, TxTimestamps::new(fd))
    }

    #[inline]
    unsafe fn getsockname(
        &mut self,
        ctx: SqeContext,
        fd: impl Into<Target>,
        addr: &mut SockAddr,
    ) -> Result<SqeContext> {
        // SAFETY: forwarded to the caller (`GetSockName::new`'s contract).
        let op = unsafe { GetSockName::new(fd, addr) };
        self.push_op(ctx, op)
    }

    #[inline]
    unsafe fn getpeername(
        &mut self,
        ctx: SqeContext,
        fd: impl Into<Target>,
        addr: &mut SockAddr,
    ) -> Result<SqeContext> {
        // SAFETY: forwarded to the caller (`GetSockName::peer`'s contract).
        let op = unsafe { GetSockName::peer(fd, addr) };
        self.push_op(ctx, op)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn getsockname_sqe_layout() {
        let mut sqe = Sqe::default();
        let mut keep = Keep::new();
        let mut addr = SockAddr::default();
        // SAFETY: the SQE is only inspected, never submitted.
        let op = unsafe { GetSockName::peer(5, &mut addr) };
        op.prepare(&mut sqe, &mut keep);
        assert_eq!(sqe.opcode, sys::IORING_OP_URING_CMD as u8);
        assert_eq!(sqe.fd, 5);
        assert_eq!(sqe.cmd_op(), sys::SOCKET_URING_OP_GETSOCKNAME);
        assert_eq!(sqe.optlen(), 1, "peer");
        let base = std::ptr::from_ref(&addr) as u64;
        assert_eq!(sqe.addr(), base, "the storage opens the SockAddr");
        assert_eq!(sqe.addr3(), base + size_of::<libc::sockaddr_storage>() as u64, "then its length");
        assert_eq!(addr.len() as usize, size_of::<libc::sockaddr_storage>(), "the capacity goes in");
    }

    #[test]
    fn tstamp_types_keep_unknown_values() {
        assert_eq!(format!("{:?}", TstampType::ACK), "SCM_TSTAMP_ACK");
        assert_eq!(format!("{:?}", TstampType::from_raw(9)), "TstampType(9)");
        assert_eq!(TstampType::SCHED.raw(), 1);
    }
}
