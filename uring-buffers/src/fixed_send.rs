//! Sends from [`FixedBuffers`] beyond [`send_fixed`](FixedBuffers::send_fixed):
//! a zero-copy `sendmsg` of several ranges of one registered buffer
//! ([`sendmsg_fixed`](FixedBuffers::sendmsg_fixed), `IORING_OP_SENDMSG_ZC`
//! with `IORING_RECVSEND_FIXED_BUF`, since 6.15) and a plain, copying send
//! ([`send`](FixedBuffers::send), `IORING_OP_SEND` with
//! `IORING_RECVSEND_FIXED_BUF`, since 7.2).
//!
//! Both use the table's bookkeeping: the buffer is busy (readable, not
//! writable) from the call until the operation's last CQE has been handed
//! to [`FixedBuffers::handle_cqe`] (the notification for `sendmsg_fixed`,
//! the one CQE for `send`), and the CQE is checked for provenance as for
//! every fixed-buffer operation. The message header, the destination
//! address and the iovec array of a `sendmsg_fixed` live in the operation's
//! slot until then (handed to the ring if the table is dropped first).

use std::net::SocketAddr;
use std::ops::Range;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use uring_core::{CqeSlot, Keep, Options, Ring, SqeContext, sys};
use uring_ops::{Prepare, RingOps, Target};

use crate::error::Result;
use crate::fixed::{FixedBuffers, FixedId, FixedKind};

/// The header of a `sendmsg_fixed`: a `msghdr` pointing at the
/// operation's iovec array and, with a destination, at `addr` beside it.
/// Boxed, so the addresses the kernel is given do not move with the slot.
pub(crate) struct MsgHeader {
    hdr: libc::msghdr,
    addr: libc::sockaddr_storage,
}

impl MsgHeader {
    /// A header for `iov` (its heap array, which does not move) and `dest`.
    fn new(iov: &mut [libc::iovec], dest: Option<SocketAddr>) -> Box<Self> {
        // SAFETY: `msghdr` and `sockaddr_storage` are plain data (pointers,
        // integers, padding): all zeroes is valid, the empty header and the
        // unspecified address.
        let mut me: Box<MsgHeader> = Box::new(unsafe { std::mem::zeroed() });
        me.hdr.msg_iov = iov.as_mut_ptr();
        me.hdr.msg_iovlen = iov.len() as _;
        if let Some(dest) = dest {
            me.hdr.msg_namelen = write_sockaddr(&mut me.addr, dest);
            me.hdr.msg_name = (&raw mut me.addr).cast();
        }
        me
    }
}

/// Writes `addr` as a `sockaddr_in`/`sockaddr_in6` into `out`; returns its
/// length.
fn write_sockaddr(out: &mut libc::sockaddr_storage, addr: SocketAddr) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(a.ip().octets()) },
                sin_zero: [0; 8],
            };
            // SAFETY: `sockaddr_storage` is larger than and aligned for
            // every socket address type.
            unsafe { (&raw mut *out).cast::<libc::sockaddr_in>().write(sin) };
            size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo().to_be(),
                sin6_addr: libc::in6_addr { s6_addr: a.ip().octets() },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: as above.
            unsafe { (&raw mut *out).cast::<libc::sockaddr_in6>().write(sin6) };
            size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// `IORING_OP_SENDMSG_ZC` with `IORING_RECVSEND_FIXED_BUF` from a header
/// the table keeps in the operation's slot.
struct FixedSendMsgZc {
    fd: Target,
    hdr: *const libc::msghdr,
    index: u16,
}

impl Prepare for FixedSendMsgZc {
    const CODE: u8 = sys::IORING_OP_SENDMSG_ZC as u8;
    // The header lives in the operation's slot, not in the Keep.
    const USES_KEEP: bool = false;

    fn check(&self, features: &uring_core::Features) -> uring_core::Result<()> {
        features.require(Self::CODE)?;
        match features.kernel_version() {
            Some(v) if v < (6, 15) => Err(uring_core::Error::unsupported(
                "IORING_OP_SENDMSG_ZC with IORING_RECVSEND_FIXED_BUF (needs Linux 6.15)",
                Some("send_fixed (SEND_ZC of one range) takes a registered buffer since 6.0"),
            )),
            _ => Ok(()),
        }
    }

    fn prepare(self, sqe: &mut uring_core::Sqe, _keep: &mut Keep) {
        *sqe = uring_core::Sqe::new(Self::CODE);
        self.fd.apply(sqe);
        sqe.set_addr(self.hdr as u64);
        sqe.len = 1;
        sqe.ioprio = sys::IORING_RECVSEND_FIXED_BUF as u16;
        sqe.set_buf_index(self.index);
    }
}

/// `IORING_OP_SEND` with `IORING_RECVSEND_FIXED_BUF`.
#[derive(Clone, Copy)]
struct FixedSend {
    fd: Target,
    buf: *const u8,
    len: u32,
    index: u16,
}

impl Prepare for FixedSend {
    const CODE: u8 = sys::IORING_OP_SEND as u8;
    const USES_KEEP: bool = false;

    fn prepare(self, sqe: &mut uring_core::Sqe, _keep: &mut Keep) {
        *sqe = uring_core::Sqe::new(Self::CODE);
        self.fd.apply(sqe);
        sqe.set_addr(self.buf as u64);
        sqe.len = self.len;
        sqe.ioprio = sys::IORING_RECVSEND_FIXED_BUF as u16;
        sqe.set_buf_index(self.index);
    }
}

/// Whether a plain `IORING_OP_SEND` takes `IORING_RECVSEND_FIXED_BUF` on
/// this kernel: 0 not tried yet, 1 yes, 2 no.
static PLAIN_SEND_FIXED: AtomicU8 = AtomicU8::new(0);

/// The trial behind [`FixedBuffers::plain_send_supported`]: on a ring of
/// its own, one byte of a registered buffer sent over a Unix socket pair.
fn plain_send_trial() -> Result<bool> {
    let mut ring = Ring::new(Options::default().entries(2))?;
    ring.start()?;
    let mut bufs = crate::RegisteredBuffers::register(&mut ring, 1, 4096)?;
    bufs.buffer_mut(0).expect("buffer 0 was just registered")[0] = 0x5a;
    let (base, _) = bufs.raw_parts(0).expect("buffer 0 was just registered");
    let mut fds = [0; 2];
    // SAFETY: socketpair writes two descriptors into `fds`.
    if unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) } != 0 {
        return Err(uring_core::Error::io("socketpair", std::io::Error::last_os_error()).into());
    }
    // SAFETY: both descriptors are fresh and owned by nothing else.
    let (tx, rx) = unsafe {
        use std::os::fd::FromRawFd;
        (std::os::fd::OwnedFd::from_raw_fd(fds[0]), std::os::fd::OwnedFd::from_raw_fd(fds[1]))
    };
    use std::os::fd::AsRawFd;
    let op = FixedSend { fd: Target::Fd(tx.as_raw_fd()), buf: base, len: 1, index: 0 };
    // SAFETY: the byte lies in registered buffer 0 of this ring, whose
    // memory is attached to it; the table is not touched again before the
    // CQE (or the ring's stop, which cancels the send) and the kernel only
    // reads the byte.
    unsafe { ring.push_op_unchecked(SqeContext::token(1)?, op) }?;
    let mut slots = [CqeSlot::EMPTY; 1];
    let got = ring.wait_for(&mut slots, 1, Some(Duration::from_secs(5)))?.len();
    if got != 1 {
        return Err(uring_core::Error::io(
            "IORING_OP_SEND with IORING_RECVSEND_FIXED_BUF (trial)",
            std::io::Error::from(std::io::ErrorKind::TimedOut),
        )
        .into());
    }
    let res = slots[0].cqe().res();
    let mut byte = 0u8;
    // SAFETY: reads at most one byte into `byte`.
    let n = unsafe { libc::recv(rx.as_raw_fd(), (&raw mut byte).cast(), 1, libc::MSG_DONTWAIT) };
    match res {
        1 if n == 1 && byte == 0x5a => Ok(true),
        r if r == -libc::EINVAL => Ok(false),
        r => Err(uring_core::Error::io(
            "IORING_OP_SEND with IORING_RECVSEND_FIXED_BUF (trial)",
            if r < 0 {
                std::io::Error::from_raw_os_error(-r)
            } else {
                std::io::Error::other(format!("sent {r}, received {n} byte(s) ({byte:#x})"))
            },
        )
        .into()),
    }
}

impl FixedBuffers {
    /// Whether this kernel sends from a registered buffer with a plain
    /// `IORING_OP_SEND` (`IORING_RECVSEND_FIXED_BUF`, Linux 7.2+; 6.18 and
    /// 7.0 refuse the flag with `EINVAL`). No opcode probe or feature bit
    /// says so, so the first call finds out by trial, once per process: a
    /// ring of its own, one registered page, one byte sent over a Unix
    /// socket pair, and the answer is whether the byte arrived (yes) or the
    /// kernel refused the flag with `EINVAL` (no). [`send`](Self::send)
    /// asks it before queuing anything.
    ///
    /// # Errors
    ///
    /// What stopped the trial (a ring or a registration the kernel or the
    /// locked-memory limit refused, an unexpected result); the next call
    /// tries again.
    pub fn plain_send_supported() -> Result<bool> {
        match PLAIN_SEND_FIXED.load(Ordering::Relaxed) {
            1 => return Ok(true),
            2 => return Ok(false),
            _ => {}
        }
        let yes = plain_send_trial()?;
        PLAIN_SEND_FIXED.store(if yes { 1 } else { 2 }, Ordering::Relaxed);
        Ok(yes)
    }

    /// Queues a plain (copying) send (`IORING_OP_SEND` with
    /// `IORING_RECVSEND_FIXED_BUF`, since Linux 7.2) of `range` of buffer
    /// `index` on socket `fd`. One CQE comes back, the bytes sent or
    /// `-errno`; the buffer is readable meanwhile and writable again after
    /// it ([`FixedDone::free`](crate::FixedDone::free) on that CQE). Unlike
    /// [`send_fixed`](Self::send_fixed) no notification follows: the kernel
    /// has copied the bytes when it posts the result.
    ///
    /// Support is found out once per process
    /// ([`plain_send_supported`](Self::plain_send_supported)).
    ///
    /// # Errors
    ///
    /// As for [`read_fixed`](Self::read_fixed), and [`Error::Core`](crate::Error::Core) with
    /// [`Unsupported`](uring_core::Error::Unsupported) on kernels whose
    /// plain send refuses a registered buffer (before 7.2), or what stopped
    /// the trial. Nothing is queued then and the buffer stays idle.
    #[doc(alias = "IORING_OP_SEND")]
    #[doc(alias = "IORING_RECVSEND_FIXED_BUF")]
    pub fn send(&mut self, ring: &mut Ring, fd: impl Into<Target>, index: u32, range: Range<usize>) -> Result<FixedId> {
        let base = self.check_op(ring, index, std::slice::from_ref(&range))?;
        if !Self::plain_send_supported()? {
            return Err(uring_core::Error::unsupported(
                "IORING_OP_SEND with IORING_RECVSEND_FIXED_BUF (Linux 7.2+)",
                Some("send_fixed (SEND_ZC) sends from a registered buffer on every kernel"),
            )
            .into());
        }
        let op = FixedSend {
            fd: fd.into(),
            buf: base.wrapping_add(range.start),
            len: range.len() as u32,
            index: index as u16,
        };
        // SAFETY: the range lies in buffer `index` (checked, at most
        // i32::MAX bytes); the kernel only reads it, until the send's one
        // CQE, which `handle_cqe` waits for before the buffer is idle.
        unsafe { self.push(ring, FixedKind::Send, index, None, op) }
    }

    /// Queues a zero-copy `sendmsg` (`IORING_OP_SENDMSG_ZC` with
    /// `IORING_RECVSEND_FIXED_BUF`, since Linux 6.15) of `ranges` of
    /// buffer `index`, gathered in order, on socket `fd`, to `dest` when
    /// given (`msg_name`: an unconnected datagram socket). Like
    /// [`writev_fixed`](Self::writev_fixed), every range must lie in the
    /// one buffer (the kernel resolves each iovec against it).
    ///
    /// Two CQEs come back, as for [`send_fixed`](Self::send_fixed): the
    /// result, then the notification; the buffer is readable meanwhile and
    /// writable again after the notification
    /// ([`FixedDone::free`](crate::FixedDone::free)). The message header,
    /// the address and the iovec array stay in the operation's slot until
    /// then.
    ///
    /// # Errors
    ///
    /// As for [`readv_fixed`](Self::readv_fixed); [`Error::Core`](crate::Error::Core) with
    /// [`Unsupported`](uring_core::Error::Unsupported) before 6.15.
    #[doc(alias = "io_uring_prep_sendmsg_zc_fixed")]
    #[doc(alias = "IORING_OP_SENDMSG_ZC")]
    pub fn sendmsg_fixed(
        &mut self,
        ring: &mut Ring,
        fd: impl Into<Target>,
        index: u32,
        ranges: &[Range<usize>],
        dest: Option<SocketAddr>,
    ) -> Result<FixedId> {
        let base = self.check_op(ring, index, ranges)?;
        let mut iov = Self::iovecs(base, ranges)?;
        let msg = MsgHeader::new(&mut iov.0[..], dest);
        let hdr = &raw const msg.hdr;
        iov.1 = Some(msg);
        let op = FixedSendMsgZc { fd: fd.into(), hdr, index: index as u16 };
        // SAFETY: every iovec names a range of buffer `index` (checked);
        // the kernel only reads them, until the notification, which
        // `handle_cqe` waits for; the header, the address and the iovec
        // array are boxed and move into the operation's slot (their heap
        // addresses stay) until then.
        unsafe { self.push(ring, FixedKind::SendMsgZc, index, Some(iov), op) }
    }
}
