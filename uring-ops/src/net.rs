//! Socket I/O: `recv` (into a caller buffer, into a provided buffer, or a
//! bundle of provided buffers), `send` and `sendto`, `recvmsg`, `sendmsg`,
//! zero-copy `send` and `sendmsg`, and multicast (one payload to several
//! destinations, plain and zero-copy).
//!
//! # What the kernel copies, and when
//!
//! Checked against `io_uring/net.c` (`io_sendmsg_prep`, `io_send_setup`,
//! `io_sendmsg_setup`, `io_recvmsg_prep`, `io_send_zc_prep`):
//!
//! - the destination address of `send`/`send_zc` (`sqe->addr2`) is copied
//!   at submission (`move_addr_to_kernel` in the prep), so it lives in the
//!   SQ slot's [`Keep`];
//! - for `sendmsg`/`sendmsg_zc`, the `msghdr`, the destination address it
//!   names, and the iovec array are copied at submission (the header by
//!   `io_copy_msghdr_from_user`, the name by `__copy_msghdr`, the array by
//!   the iovec import): the header and the address live in the `Keep`. The
//!   data the iovecs point to, and the control buffer (`msg_control`, read
//!   when the send runs), are the caller's until the CQE;
//! - `recvmsg` writes `msg_namelen`, `msg_controllen` and `msg_flags` back
//!   into the caller's `msghdr` when it completes, and the name and control
//!   buffers are outputs: the whole `msghdr` is caller memory;
//! - data buffers are always the caller's (or, with buffer selection, the
//!   provided-buffer ring's).
//!
//! Operations that name caller memory are not [`SafeOp`]: submit them with
//! [`RingOps::push_op_unchecked`] or the `unsafe` methods of [`NetOps`].
//! Buffer-selecting receives name no memory in the SQE (the kernel picks a
//! buffer from a ring whose registration vouched for its memory) and are
//! safe.

use std::io::IoSlice;
use std::net::SocketAddr;

use uring_core::{Error, FeatureFlags, Features, Keep, Result, Sqe, SqeContext, sys};

use crate::flags::sealed::OnRing;
use crate::op::{Prepare, SafeOp, Target};
use crate::ring::RingOps;

/// `MSG_*` flags a receive accepts.
const RECV_FLAGS: i32 = libc::MSG_OOB
    | libc::MSG_PEEK
    | libc::MSG_TRUNC
    | libc::MSG_DONTWAIT
    | libc::MSG_WAITALL
    | libc::MSG_ERRQUEUE
    | libc::MSG_CMSG_CLOEXEC;

/// `MSG_*` flags a send accepts. `MSG_ZEROCOPY` is left out on purpose:
/// on a plain send it asks for the socket error-queue notifications of
/// `SO_ZEROCOPY`, which io_uring does not deliver; use [`SendZc`].
const SEND_FLAGS: i32 = libc::MSG_OOB
    | libc::MSG_DONTROUTE
    | libc::MSG_DONTWAIT
    | libc::MSG_EOR
    | libc::MSG_NOSIGNAL
    | libc::MSG_MORE
    | libc::MSG_CONFIRM
    | libc::MSG_WAITALL
    | libc::MSG_FASTOPEN;

/// The most iovecs one `sendmsg` takes (`UIO_MAXIOV`).
const MAX_IOVECS: usize = 1024;

#[inline]
fn check_flags(what: &str, flags: i32, allowed: i32) -> Result<()> {
    if flags & !allowed != 0 { Err(flags_error(what, flags, allowed)) } else { Ok(()) }
}

#[cold]
fn flags_error(what: &str, flags: i32, allowed: i32) -> Error {
    let unknown = flags & !allowed;
    Error::InvalidArgument(format!(
        "{what}: MSG_* flags {flags:#x} include {unknown:#x}, which this operation does not take"
    ))
}

#[inline]
fn check_len(what: &str, len: usize) -> Result<()> {
    // The kernel keeps lengths in an `int`.
    if len > i32::MAX as usize { Err(len_error(what, len)) } else { Ok(()) }
}

#[cold]
fn len_error(what: &str, len: usize) -> Error {
    Error::InvalidArgument(format!("{what}: {len} bytes exceed i32::MAX"))
}

#[inline]
fn check_iovecs(what: &str, n: usize) -> Result<()> {
    if n > MAX_IOVECS { Err(iovecs_error(what, n)) } else { Ok(()) }
}

#[cold]
fn iovecs_error(what: &str, n: usize) -> Error {
    Error::InvalidArgument(format!("{what}: {n} iovecs exceed UIO_MAXIOV ({MAX_IOVECS})"))
}

const fn poll_first_bit(on: bool) -> u32 {
    if on { sys::IORING_RECVSEND_POLL_FIRST } else { 0 }
}

/// A socket address in the kernel's layout: `sockaddr_in` or
/// `sockaddr_in6`. Kept in an SQ slot's [`Keep`] while the kernel copies
/// it.
#[derive(Clone, Copy)]
#[repr(C)]
pub(crate) union RawSockAddr {
    v4: libc::sockaddr_in,
    v6: libc::sockaddr_in6,
}

impl RawSockAddr {
    /// No address (all zero).
    const UNSPEC: RawSockAddr = RawSockAddr {
        v4: libc::sockaddr_in { sin_family: 0, sin_port: 0, sin_addr: libc::in_addr { s_addr: 0 }, sin_zero: [0; 8] },
    };

    /// The kernel form of `addr` and its length.
    pub(crate) fn new(addr: &SocketAddr) -> (Self, u32) {
        match addr {
            SocketAddr::V4(a) => (
                RawSockAddr {
                    v4: libc::sockaddr_in {
                        sin_family: libc::AF_INET as libc::sa_family_t,
                        sin_port: a.port().to_be(),
                        sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(a.ip().octets()) },
                        sin_zero: [0; 8],
                    },
                },
                size_of::<libc::sockaddr_in>() as u32,
            ),
            SocketAddr::V6(a) => (
                RawSockAddr {
                    v6: libc::sockaddr_in6 {
                        sin6_family: libc::AF_INET6 as libc::sa_family_t,
                        sin6_port: a.port().to_be(),
                        sin6_flowinfo: a.flowinfo(),
                        sin6_addr: libc::in6_addr { s6_addr: a.ip().octets() },
                        sin6_scope_id: a.scope_id(),
                    },
                },
                size_of::<libc::sockaddr_in6>() as u32,
            ),
        }
    }
}

/// The `msghdr` of a send and the destination it names, together in one
/// [`Keep`] (56 + 28 bytes).
#[derive(Clone, Copy)]
#[repr(C)]
struct MsgKeep {
    hdr: libc::msghdr,
    addr: RawSockAddr,
}

/// Writes a `sendmsg`-shaped SQE whose header lives in `keep`.
#[allow(clippy::too_many_arguments)] // One private helper for two opcodes.
fn prepare_msg(
    sqe: &mut Sqe,
    keep: &mut Keep,
    code: u8,
    fd: Target,
    iov: *const IoSlice<'static>,
    iovlen: usize,
    dest: Option<SocketAddr>,
    control: (*const u8, usize),
) {
    // SAFETY: `msghdr` is plain data (pointers and integers, and padding
    // on some targets): all zeroes is a valid value, the empty header.
    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    hdr.msg_iov = iov.cast_mut().cast::<libc::iovec>();
    hdr.msg_iovlen = iovlen as _;
    if control.1 != 0 {
        hdr.msg_control = control.0.cast_mut().cast();
        hdr.msg_controllen = control.1 as _;
    }
    let (addr, addr_len) = dest.map_or((RawSockAddr::UNSPEC, 0), |d| RawSockAddr::new(&d));
    let kept = keep.inline(MsgKeep { hdr, addr });
    if addr_len != 0 {
        kept.hdr.msg_name = (&raw mut kept.addr).cast();
        kept.hdr.msg_namelen = addr_len;
    }
    *sqe = Sqe::new(code);
    fd.apply(sqe);
    sqe.set_addr((&raw const kept.hdr) as u64);
    sqe.len = 1;
}

// ---------------------------------------------------------------------------
// Receive

/// Receives into a caller buffer: `io_uring_prep_recv`.
///
/// Since Linux 5.6. The result is the number of bytes received (0 at end
/// of stream) or `-errno` (`-ENOTSOCK` on a file that is not a socket).
/// With `MSG_WAITALL` on a stream socket the kernel retries short receives
/// until the buffer is full.
///
/// The kernel writes the buffer when data arrives, until the CQE: the
/// `unsafe` constructor takes that obligation, so the operation is a
/// [`SafeOp`] ([`NetOps::recv`] takes the same arguments).
#[doc(alias = "IORING_OP_RECV")]
#[doc(alias = "io_uring_prep_recv")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct Recv {
    fd: Target,
    buf: *mut u8,
    len: usize,
    flags: i32,
    poll_first: bool,
}

impl Recv {
    /// Receives from `fd` into `buf`. A buffer over `u32::MAX` bytes is
    /// refused when the operation is pushed.
    ///
    /// # Safety
    ///
    /// For every push of the returned operation (or of a copy of it),
    /// `buf` must stay valid, and must be neither read nor written by the
    /// program, until that operation's CQE has been reaped (the borrow
    /// ends here; the obligation does not).
    #[inline]
    pub unsafe fn new(fd: impl Into<Target>, buf: &mut [u8]) -> Self {
        Recv { fd: fd.into(), buf: buf.as_mut_ptr(), len: buf.len(), flags: 0, poll_first: false }
    }

    /// `MSG_*` flags (`MSG_WAITALL`, `MSG_PEEK`, `MSG_DONTWAIT`, `MSG_TRUNC`,
    /// `MSG_OOB`, `MSG_ERRQUEUE`, `MSG_CMSG_CLOEXEC`); others are refused
    /// by [`check`](Prepare::check). On a receive that selects a provided
    /// buffer ([`RecvSelect`], [`RecvBundle`], the multishot receives, or
    /// `IOSQE_BUFFER_SELECT` added by hand) the push refuses `MSG_TRUNC`:
    /// its result would be a datagram's whole length, not the bytes the
    /// buffers took, so no one could tell which buffers the kernel used.
    #[inline]
    pub const fn flags(mut self, flags: i32) -> Self {
        self.flags = flags;
        self
    }

    /// Waits for data before the first attempt (`IORING_RECVSEND_POLL_FIRST`,
    /// since 5.19): saves a futile try when the socket is known to be empty.
    #[inline]
    pub const fn poll_first(mut self) -> Self {
        self.poll_first = true;
        self
    }
}

impl Prepare for Recv {
    const CODE: u8 = sys::IORING_OP_RECV as u8;
    const USES_KEEP: bool = false;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        check_flags("recv", self.flags, RECV_FLAGS)?;
        check_len("recv", self.len)
    }

    #[inline]
    fn prepare(self, sqe: &mut Sqe, _keep: &mut Keep) {
        let Recv { fd, buf, len, flags, poll_first } = self;
        *sqe = Sqe::new(Self::CODE);
        fd.apply(sqe);
        sqe.set_addr(buf as u64);
        sqe.len = len as u32;
        sqe.set_op_flags(flags as u32);
        sqe.ioprio = poll_first_bit(poll_first) as u16;
    }
}

// SAFETY: the buffer is the only memory named; the caller of the unsafe
// constructor keeps it valid and unaccessed until every push's CQE.
unsafe impl SafeOp for Recv {}

/// Receives into a buffer the kernel picks from a provided-buffer group:
/// `io_uring_prep_recv` with `IOSQE_BUFFER_SELECT` and `sqe->buf_group`.
///
/// Since Linux 5.7 (provided-buffer rings since 5.19). The CQE carries
/// `IORING_CQE_F_BUFFER` and the buffer id
/// ([`Cqe::buffer_id`](uring_core::Cqe::buffer_id)); the result is the
/// byte count in that buffer. An empty group is `-ENOBUFS`.
///
/// [`SafeOp`]: the SQE names no memory. The buffers belong to the group's
/// registration, which vouched for them (and owns them in `uring-buffers`).
#[doc(alias = "IORING_OP_RECV")]
#[doc(alias = "IOSQE_BUFFER_SELECT")]
#[doc(alias = "io_uring_prep_recv")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct RecvSelect {
    fd: Target,
    group: u16,
    max_len: u32,
    flags: i32,
    poll_first: bool,
}

impl RecvSelect {
    /// Receives from `fd` into a buffer of group `group`.
    #[inline]
    pub fn new(fd: impl Into<Target>, group: u16) -> Self {
        RecvSelect { fd: fd.into(), group, max_len: 0, flags: 0, poll_first: false }
    }

    /// Receives at most `len` bytes (default 0: the selected buffer's size).
    #[inline]
    pub const fn max_len(mut self, len: u32) -> Self {
        self.max_len = len;
        self
    }

    /// `MSG_*` flags, as for [`Recv::flags`].
    #[inline]
    pub const fn flags(mut self, flags: i32) -> Self {
        self.flags = flags;
        self
    }

    /// `IORING_RECVSEND_POLL_FIRST`, as for [`Recv::poll_first`].
    #[inline]
    pub const fn poll_first(mut self) -> Self {
        self.poll_first = true;
        self
    }
}

impl Prepare for RecvSelect {
    const CODE: u8 = sys::IORING_OP_RECV as u8;
    const USES_KEEP: bool = false;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        check_flags("recv (buffer select)", self.flags, RECV_FLAGS)?;
        check_len("recv (buffer select)", self.max_len as usize)
    }

    #[inline]
    fn prepare(self, sqe: &mut Sqe, _keep: &mut Keep) {
        let RecvSelect { fd, group, max_len, flags, poll_first } = self;
        *sqe = Sqe::new(Self::CODE);
        fd.apply(sqe);
        sqe.flags |= sys::IOSQE_BUFFER_SELECT as u8;
        sqe.set_buf_group(group);
        sqe.len = max_len;
        sqe.set_op_flags(flags as u32);
        sqe.ioprio = poll_first_bit(poll_first) as u16;
    }
}

// SAFETY: the SQE names no address: the kernel picks the buffer from the
// group's registered ring.
unsafe impl SafeOp for RecvSelect {}

/// Receives into as many consecutive buffers of a provided-buffer group as
/// the data available fills, in one CQE: `io_uring_prep_recv` with
/// `IOSQE_BUFFER_SELECT` and `IORING_RECVSEND_BUNDLE`, single-shot.
///
/// Since Linux 6.10 (`IORING_FEAT_RECVSEND_BUNDLE`). The CQE's buffer id
/// is the first buffer used; the result is the total byte count, spread
/// over buffers `id, id + 1, …` (modulo the ring size) each filled to its
/// length before the next is used. A bundle may stop short of the data
/// queued (the CQE then has `IORING_CQE_F_SOCK_NONEMPTY`); the next
/// receive continues with the next buffer. Only provided-buffer *rings*
/// can bundle.
///
/// [`SafeOp`] for the reason given at [`RecvSelect`].
#[doc(alias = "IORING_OP_RECV")]
#[doc(alias = "IORING_RECVSEND_BUNDLE")]
#[doc(alias = "io_uring_prep_recv")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct RecvBundle {
    fd: Target,
    group: u16,
    max_len: u32,
    flags: i32,
    poll_first: bool,
}

impl RecvBundle {
    /// A bundle receive from `fd` into group `group`.
    #[inline]
    pub fn new(fd: impl Into<Target>, group: u16) -> Self {
        RecvBundle { fd: fd.into(), group, max_len: 0, flags: 0, poll_first: false }
    }

    /// Receives at most `len` bytes in total (default 0: no limit but the
    /// buffers available).
    #[inline]
    pub const fn max_len(mut self, len: u32) -> Self {
        self.max_len = len;
        self
    }

    /// `MSG_*` flags, as for [`Recv::flags`].
    #[inline]
    pub const fn flags(mut self, flags: i32) -> Self {
        self.flags = flags;
        self
    }

    /// `IORING_RECVSEND_POLL_FIRST`, as for [`Recv::poll_first`].
    #[inline]
    pub const fn poll_first(mut self) -> Self {
        self.poll_first = true;
        self
    }
}

impl Prepare for RecvBundle {
    const CODE: u8 = sys::IORING_OP_RECV as u8;
    const USES_KEEP: bool = false;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        if !features.has(FeatureFlags::RECVSEND_BUNDLE) {
            return Err(Error::unsupported("IORING_RECVSEND_BUNDLE (IORING_FEAT_RECVSEND_BUNDLE)", None));
        }
        check_flags("recv bundle", self.flags, RECV_FLAGS)?;
        check_len("recv bundle", self.max_len as usize)
    }

    #[inline]
    fn prepare(self, sqe: &mut Sqe, _keep: &mut Keep) {
        let RecvBundle { fd, group, max_len, flags, poll_first } = self;
        *sqe = Sqe::new(Self::CODE);
        fd.apply(sqe);
        sqe.flags |= sys::IOSQE_BUFFER_SELECT as u8;
        sqe.set_buf_group(group);
        sqe.len = max_len;
        sqe.set_op_flags(flags as u32);
        sqe.ioprio = (sys::IORING_RECVSEND_BUNDLE | poll_first_bit(poll_first)) as u16;
    }
}

// SAFETY: as for `RecvSelect`: no address in the SQE.
unsafe impl SafeOp for RecvBundle {}

/// Sends from as many consecutive queued buffers of a provided-buffer group
/// as the socket takes, in one CQE: `io_uring_prep_send_bundle`
/// (`IORING_OP_SEND` with `IOSQE_BUFFER_SELECT` and
/// `IORING_RECVSEND_BUNDLE`).
///
/// Since Linux 6.10 (`IORING_FEAT_RECVSEND_BUNDLE`). The group's ring holds
/// buffers the caller filled and published with their data lengths (see
/// `uring_buffers::sendring`); the CQE's buffer id is the first one sent
/// and the result the total byte count. A buffer the kernel started counts
/// as consumed even if only part of it went out.
///
/// [`SafeOp`] for the reason given at [`RecvSelect`]: the SQE names no
/// address; the group's memory is vouched for by whoever registered it.
#[doc(alias = "IORING_OP_SEND")]
#[doc(alias = "IORING_RECVSEND_BUNDLE")]
#[doc(alias = "io_uring_prep_send_bundle")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct SendBundle {
    fd: Target,
    group: u16,
    flags: i32,
}

impl SendBundle {
    /// A bundle send on `fd` from group `group`.
    #[inline]
    pub fn new(fd: impl Into<Target>, group: u16) -> Self {
        SendBundle { fd: fd.into(), group, flags: 0 }
    }

    /// `MSG_*` flags, as for [`Send::flags`].
    #[inline]
    pub const fn flags(mut self, flags: i32) -> Self {
        self.flags = flags;
        self
    }
}

impl Prepare for SendBundle {
    const CODE: u8 = sys::IORING_OP_SEND as u8;
    const USES_KEEP: bool = false;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        if !features.has(FeatureFlags::RECVSEND_BUNDLE) {
            return Err(Error::unsupported("IORING_RECVSEND_BUNDLE (IORING_FEAT_RECVSEND_BUNDLE)", None));
        }
        check_flags("send bundle", self.flags, SEND_FLAGS)
    }

    #[inline]
    fn prepare(self, sqe: &mut Sqe, _keep: &mut Keep) {
        let SendBundle { fd, group, flags } = self;
        *sqe = Sqe::new(Self::CODE);
        fd.apply(sqe);
        sqe.flags |= sys::IOSQE_BUFFER_SELECT as u8;
        sqe.set_buf_group(group);
        sqe.set_op_flags(flags as u32);
        sqe.ioprio = sys::IORING_RECVSEND_BUNDLE as u16;
    }
}

// SAFETY: as for `RecvSelect`: no address in the SQE.
unsafe impl SafeOp for SendBundle {}

/// Receives a message into the caller's `msghdr`: `io_uring_prep_recvmsg`.
///
/// Since Linux 5.3. The result is the byte count; the kernel also updates
/// the header's `msg_namelen` (the sender's address length, the address in
/// `msg_name`), `msg_controllen` and `msg_flags` (`MSG_TRUNC`, …).
///
/// The header, the iovec targets, the name and the control buffer are
/// written when the message arrives, until the CQE: the `unsafe`
/// constructor takes that obligation, and the operation is a [`SafeOp`]
/// ([`NetOps::recvmsg`] takes the same arguments).
#[doc(alias = "IORING_OP_RECVMSG")]
#[doc(alias = "io_uring_prep_recvmsg")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct RecvMsg {
    fd: Target,
    msg: *mut libc::msghdr,
    flags: i32,
    poll_first: bool,
}

impl RecvMsg {
    /// Receives from `fd` as `msg` describes.
    ///
    /// # Safety
    ///
    /// For every push of the returned operation (or of a copy of it),
    /// `msg`, the iovec array it names and every buffer those point to, the
    /// name and the control buffer must stay valid, and must be neither
    /// read nor written by the program, until that operation's CQE has been
    /// reaped.
    #[inline]
    pub unsafe fn new(fd: impl Into<Target>, msg: &mut libc::msghdr) -> Self {
        RecvMsg { fd: fd.into(), msg, flags: 0, poll_first: false }
    }

    /// `MSG_*` flags, as for [`Recv::flags`].
    #[inline]
    pub const fn flags(mut self, flags: i32) -> Self {
        self.flags = flags;
        self
    }

    /// `IORING_RECVSEND_POLL_FIRST`, as for [`Recv::poll_first`].
    #[inline]
    pub const fn poll_first(mut self) -> Self {
        self.poll_first = true;
        self
    }
}

impl Prepare for RecvMsg {
    const CODE: u8 = sys::IORING_OP_RECVMSG as u8;
    const USES_KEEP: bool = false;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        check_flags("recvmsg", self.flags, RECV_FLAGS)
    }

    #[inline]
    fn prepare(self, sqe: &mut Sqe, _keep: &mut Keep) {
        let RecvMsg { fd, msg, flags, poll_first } = self;
        *sqe = Sqe::new(Self::CODE);
        fd.apply(sqe);
        sqe.set_addr(msg as u64);
        sqe.len = 1;
        sqe.set_op_flags(flags as u32);
        sqe.ioprio = poll_first_bit(poll_first) as u16;
    }
}

// SAFETY: the header and what it names are the only caller memory; the caller of
// the unsafe constructor keeps them valid and unaccessed until every
// push's CQE.
unsafe impl SafeOp for RecvMsg {}

// ---------------------------------------------------------------------------
// Send

/// Sends a caller buffer, optionally to a destination (`sendto`):
/// `io_uring_prep_send` / `io_uring_prep_sendto`.
///
/// Since Linux 5.6; the destination (`sqe->addr2`, `sqe->addr_len`) since
/// 6.1. The result is the number of bytes sent, or `-errno`. The kernel
/// always adds `MSG_NOSIGNAL`: a send on a shut-down stream is `-EPIPE`,
/// never `SIGPIPE`. A short send is not an error unless `MSG_WAITALL` is
/// set (then the kernel retries; set it when linking).
///
/// The destination is copied at submission: it lives in the SQ slot's
/// [`Keep`]. The buffer is read when the send runs, until the CQE: the
/// `unsafe` constructor [`new`](Self::new) takes that obligation (none for
/// `'static` bytes: [`from_static`](Self::from_static)), so the operation
/// is a [`SafeOp`] ([`NetOps::send`], [`NetOps::send_static`] take the same
/// arguments).
#[doc(alias = "IORING_OP_SEND")]
#[doc(alias = "io_uring_prep_send")]
#[doc(alias = "io_uring_prep_sendto")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct Send {
    fd: Target,
    buf: *const u8,
    len: usize,
    dest: Option<SocketAddr>,
    flags: i32,
    poll_first: bool,
}

impl Send {
    /// Sends `buf` on `fd`. A buffer over `u32::MAX` bytes is refused when
    /// the operation is pushed.
    ///
    /// # Safety
    ///
    /// For every push of the returned operation (or of a copy of it),
    /// `buf` must stay valid and unmodified until that operation's CQE has
    /// been reaped.
    #[inline]
    pub unsafe fn new(fd: impl Into<Target>, buf: &[u8]) -> Self {
        Send { fd: fd.into(), buf: buf.as_ptr(), len: buf.len(), dest: None, flags: 0, poll_first: false }
    }

    /// Sends `'static` bytes on `fd`: safe, since they are never freed and
    /// (behind a shared reference) never modified.
    ///
    /// ```compile_fail,E0597
    /// let op = {
    ///     let local = *b"ping";
    ///     uring_ops::net::Send::from_static(1, &local)
    /// };
    /// drop(op);
    /// ```
    #[inline]
    pub fn from_static(fd: impl Into<Target>, buf: &'static [u8]) -> Self {
        // SAFETY: `'static` bytes behind a shared reference stay valid and
        // unmodified for ever.
        unsafe { Send::new(fd, buf) }
    }

    /// Sends to `dest` (`sendto`; datagram sockets, or `MSG_FASTOPEN`).
    #[inline]
    pub const fn to(mut self, dest: SocketAddr) -> Self {
        self.dest = Some(dest);
        self
    }

    /// `MSG_*` flags (`MSG_WAITALL`, `MSG_MORE`, `MSG_DONTWAIT`, `MSG_EOR`,
    /// `MSG_OOB`, `MSG_DONTROUTE`, `MSG_CONFIRM`, `MSG_NOSIGNAL`,
    /// `MSG_FASTOPEN`); others are refused by [`check`](Prepare::check).
    #[inline]
    pub const fn flags(mut self, flags: i32) -> Self {
        self.flags = flags;
        self
    }

    /// Waits for send space before the first attempt
    /// (`IORING_RECVSEND_POLL_FIRST`, since 5.19).
    #[inline]
    pub const fn poll_first(mut self) -> Self {
        self.poll_first = true;
        self
    }
}

impl Prepare for Send {
    const CODE: u8 = sys::IORING_OP_SEND as u8;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        check_flags("send", self.flags, SEND_FLAGS)?;
        check_len("send", self.len)
    }

    #[inline]
    fn prepare(self, sqe: &mut Sqe, keep: &mut Keep) {
        let Send { fd, buf, len, dest, flags, poll_first } = self;
        *sqe = Sqe::new(Self::CODE);
        fd.apply(sqe);
        sqe.set_addr(buf as u64);
        sqe.len = len as u32;
        sqe.set_op_flags(flags as u32);
        sqe.ioprio = poll_first_bit(poll_first) as u16;
        if let Some(dest) = dest {
            let (raw, raw_len) = RawSockAddr::new(&dest);
            let kept = keep.inline(raw);
            sqe.set_addr2((&raw const *kept) as u64);
            sqe.set_addr_len(raw_len as u16);
        }
    }
}

// SAFETY: the buffer is the only caller memory named (`'static`, or kept
// valid by the caller of `new` until every push's CQE); the destination is
// in the Keep, copied by the kernel at prep.
unsafe impl SafeOp for Send {}

/// Sends a message gathered from several buffers, optionally to a
/// destination and with ancillary data: `io_uring_prep_sendmsg`.
///
/// Since Linux 5.3. The result is the number of bytes sent. The library
/// builds the `msghdr` and the destination address in the SQ slot's
/// [`Keep`] (the kernel copies both, and the iovec array, at submission).
/// The buffers the iovecs point to and the control data are read when the
/// send runs, until the CQE: the `unsafe` constructor and
/// [`control`](Self::control) take that obligation, and the operation is
/// a [`SafeOp`] ([`NetOps::sendmsg`] takes the same arguments).
#[doc(alias = "IORING_OP_SENDMSG")]
#[doc(alias = "io_uring_prep_sendmsg")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct SendMsg {
    fd: Target,
    iov: *const IoSlice<'static>,
    iovlen: usize,
    dest: Option<SocketAddr>,
    control: (*const u8, usize),
    flags: i32,
    poll_first: bool,
}

impl SendMsg {
    /// Sends the concatenation of `bufs` on `fd` (`IoSlice` has the layout
    /// of `struct iovec`).
    ///
    /// # Safety
    ///
    /// For every push of the returned operation (or of a copy of it), the
    /// buffers `bufs` names must stay valid and unmodified until that
    /// operation's CQE has been reaped (the array itself is copied at
    /// submission, but keep it too: a linked or `ASYNC` entry is prepared
    /// later).
    #[inline]
    pub unsafe fn new(fd: impl Into<Target>, bufs: &[IoSlice<'_>]) -> Self {
        SendMsg {
            fd: fd.into(),
            iov: bufs.as_ptr().cast(),
            iovlen: bufs.len(),
            dest: None,
            control: (std::ptr::null(), 0),
            flags: 0,
            poll_first: false,
        }
    }

    /// Sends to `dest` (`msg_name`).
    #[inline]
    pub const fn to(mut self, dest: SocketAddr) -> Self {
        self.dest = Some(dest);
        self
    }

    /// Ancillary data (`msg_control`: `cmsghdr`s, `SCM_RIGHTS`, …), read when
    /// the send runs.
    ///
    /// # Safety
    ///
    /// As for [`new`](Self::new), for `control`.
    #[inline]
    pub unsafe fn control(mut self, control: &[u8]) -> Self {
        self.control = (control.as_ptr(), control.len());
        self
    }

    /// `MSG_*` flags, as for [`Send::flags`].
    #[inline]
    pub const fn flags(mut self, flags: i32) -> Self {
        self.flags = flags;
        self
    }

    /// `IORING_RECVSEND_POLL_FIRST`, as for [`Send::poll_first`].
    #[inline]
    pub const fn poll_first(mut self) -> Self {
        self.poll_first = true;
        self
    }
}

impl Prepare for SendMsg {
    const CODE: u8 = sys::IORING_OP_SENDMSG as u8;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        check_flags("sendmsg", self.flags, SEND_FLAGS)?;
        check_iovecs("sendmsg", self.iovlen)
    }

    #[inline]
    fn prepare(self, sqe: &mut Sqe, keep: &mut Keep) {
        let SendMsg { fd, iov, iovlen, dest, control, flags, poll_first } = self;
        prepare_msg(sqe, keep, Self::CODE, fd, iov, iovlen, dest, control);
        sqe.set_op_flags(flags as u32);
        sqe.ioprio = poll_first_bit(poll_first) as u16;
    }
}

// SAFETY: the buffers (and control data) are the only caller memory, kept valid
// and unmodified until every push's CQE by the callers of the unsafe `new`
// and `control`; header and destination are in the Keep.
unsafe impl SafeOp for SendMsg {}

/// Sends a caller buffer without copying it into the kernel, where the
/// device allows: `io_uring_prep_send_zc` (`io_uring_prep_send_zc_fixed`
/// with [`fixed`](Self::fixed), `io_uring_prep_sendto_zc`-style with
/// [`to`](Self::to)).
///
/// Since Linux 6.0 (usage reports since 6.2). Two CQEs: the result (bytes
/// sent or `-errno`) with `IORING_CQE_F_MORE`, then a notification
/// (`IORING_CQE_F_NOTIF`, same `user_data`) once the kernel no longer
/// reads the buffer. With [`report_usage`](Self::report_usage) the
/// notification's result has `IORING_NOTIF_USAGE_ZC_COPIED` set when the
/// data was copied after all (loopback always copies). The kernel refuses
/// `IOSQE_CQE_SKIP_SUCCESS` on it (`-EINVAL`).
/// [`ZcTracker`](crate::zc::ZcTracker) handles the lifecycle, and owns the
/// buffer, safely.
///
/// Not [`SafeOp`]: the buffer must stay valid and unmodified until the
/// **notification** CQE, not just the result.
#[doc(alias = "IORING_OP_SEND_ZC")]
#[doc(alias = "io_uring_prep_send_zc")]
#[doc(alias = "io_uring_prep_send_zc_fixed")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct SendZc {
    fd: Target,
    buf: *const u8,
    len: usize,
    dest: Option<SocketAddr>,
    fixed: Option<u16>,
    flags: i32,
    poll_first: bool,
    report_usage: bool,
}

impl SendZc {
    /// Sends `buf` on `fd` with zero copy.
    #[inline]
    pub fn new(fd: impl Into<Target>, buf: &[u8]) -> Self {
        SendZc {
            fd: fd.into(),
            buf: buf.as_ptr(),
            len: buf.len(),
            dest: None,
            fixed: None,
            flags: 0,
            poll_first: false,
            report_usage: false,
        }
    }

    /// Sends to `dest` (copied at submission, held in the slot's [`Keep`]).
    #[inline]
    pub const fn to(mut self, dest: SocketAddr) -> Self {
        self.dest = Some(dest);
        self
    }

    /// The buffer lies inside registered buffer `index`
    /// (`IORING_RECVSEND_FIXED_BUF`): the pages are pinned already.
    #[inline]
    pub const fn fixed(mut self, index: u16) -> Self {
        self.fixed = Some(index);
        self
    }

    /// Asks the notification to say whether the data was copied
    /// (`IORING_SEND_ZC_REPORT_USAGE`, since 6.2).
    #[inline]
    pub const fn report_usage(mut self) -> Self {
        self.report_usage = true;
        self
    }

    /// `MSG_*` flags, as for [`Send::flags`].
    #[inline]
    pub const fn flags(mut self, flags: i32) -> Self {
        self.flags = flags;
        self
    }

    /// `IORING_RECVSEND_POLL_FIRST`, as for [`Send::poll_first`].
    #[inline]
    pub const fn poll_first(mut self) -> Self {
        self.poll_first = true;
        self
    }

    /// The destination set by [`to`](Self::to).
    #[inline]
    pub const fn dest(&self) -> Option<SocketAddr> {
        self.dest
    }

    /// Whether [`report_usage`](Self::report_usage) was asked for.
    #[inline]
    pub const fn reports_usage(&self) -> bool {
        self.report_usage
    }
}

impl Prepare for SendZc {
    const CODE: u8 = sys::IORING_OP_SEND_ZC as u8;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        check_flags("send_zc", self.flags, SEND_FLAGS)?;
        check_len("send_zc", self.len)
    }

    #[inline]
    fn prepare(self, sqe: &mut Sqe, keep: &mut Keep) {
        let SendZc { fd, buf, len, dest, fixed, flags, poll_first, report_usage } = self;
        *sqe = Sqe::new(Self::CODE);
        fd.apply(sqe);
        sqe.set_addr(buf as u64);
        sqe.len = len as u32;
        sqe.set_op_flags(flags as u32);
        let mut ioprio = poll_first_bit(poll_first);
        if report_usage {
            ioprio |= sys::IORING_SEND_ZC_REPORT_USAGE;
        }
        if let Some(index) = fixed {
            ioprio |= sys::IORING_RECVSEND_FIXED_BUF;
            sqe.set_buf_index(index);
        }
        sqe.ioprio = ioprio as u16;
        if let Some(dest) = dest {
            let (raw, raw_len) = RawSockAddr::new(&dest);
            let kept = keep.inline(raw);
            sqe.set_addr2((&raw const *kept) as u64);
            sqe.set_addr_len(raw_len as u16);
        }
    }
}

/// Sends a message gathered from several buffers without copying them:
/// `io_uring_prep_sendmsg_zc`.
///
/// Since Linux 6.1. The lifecycle of [`SendZc`] (result, then
/// notification), the header handling of [`SendMsg`] (header and
/// destination in the [`Keep`]).
///
/// The buffers the iovecs point to and the control data must stay valid
/// and unmodified until the **notification** CQE: the `unsafe`
/// constructor and [`control`](Self::control) take that obligation, and
/// the operation is a [`SafeOp`] ([`NetOps::sendmsg_zc`] takes the same
/// arguments). From registered memory with [`fixed`](Self::fixed) (since
/// 6.15); `uring_buffers::FixedBuffers::sendmsg_fixed` is the safe form.
#[doc(alias = "IORING_OP_SENDMSG_ZC")]
#[doc(alias = "io_uring_prep_sendmsg_zc")]
#[doc(alias = "io_uring_prep_sendmsg_zc_fixed")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct SendMsgZc {
    fd: Target,
    iov: *const IoSlice<'static>,
    iovlen: usize,
    dest: Option<SocketAddr>,
    control: (*const u8, usize),
    flags: i32,
    poll_first: bool,
    report_usage: bool,
    fixed: Option<u16>,
}

impl SendMsgZc {
    /// Sends the concatenation of `bufs` on `fd` with zero copy.
    ///
    /// # Safety
    ///
    /// For every push of the returned operation (or of a copy of it), the
    /// buffers `bufs` names (and the array, as for [`SendMsg::new`]) must
    /// stay valid and unmodified until that operation's **notification**
    /// CQE has been reaped.
    #[inline]
    pub unsafe fn new(fd: impl Into<Target>, bufs: &[IoSlice<'_>]) -> Self {
        SendMsgZc {
            fd: fd.into(),
            iov: bufs.as_ptr().cast(),
            iovlen: bufs.len(),
            dest: None,
            control: (std::ptr::null(), 0),
            flags: 0,
            poll_first: false,
            report_usage: false,
            fixed: None,
        }
    }

    /// The iovecs lie inside registered buffer `index`
    /// (`IORING_RECVSEND_FIXED_BUF` on `IORING_OP_SENDMSG_ZC`, since Linux
    /// 6.15; liburing `io_uring_prep_sendmsg_zc_fixed`): the kernel
    /// resolves every iovec against that buffer's pinned pages, and fails
    /// the send with `-EFAULT` for one that does not lie inside it. It
    /// reads the pages registered at those addresses, not what is mapped
    /// there now.
    ///
    /// # Safety
    ///
    /// Every iovec given to [`new`](Self::new) must lie inside registered
    /// buffer `index` of each ring the operation is pushed to, whose pages
    /// are the memory `new`'s contract keeps valid and unmodified until the
    /// notification: a buffer registered from that very memory, still
    /// mapped as it was when it was registered.
    #[doc(alias = "io_uring_prep_sendmsg_zc_fixed")]
    #[inline]
    pub const unsafe fn fixed(mut self, index: u16) -> Self {
        self.fixed = Some(index);
        self
    }

    /// Sends to `dest` (`msg_name`).
    #[inline]
    pub const fn to(mut self, dest: SocketAddr) -> Self {
        self.dest = Some(dest);
        self
    }

    /// Ancillary data, as for [`SendMsg::control`].
    ///
    /// # Safety
    ///
    /// As for [`new`](Self::new), for `control`.
    #[inline]
    pub unsafe fn control(mut self, control: &[u8]) -> Self {
        self.control = (control.as_ptr(), control.len());
        self
    }

    /// `IORING_SEND_ZC_REPORT_USAGE`, as for [`SendZc::report_usage`].
    #[inline]
    pub const fn report_usage(mut self) -> Self {
        self.report_usage = true;
        self
    }

    /// `MSG_*` flags, as for [`Send::flags`].
    #[inline]
    pub const fn flags(mut self, flags: i32) -> Self {
        self.flags = flags;
        self
    }

    /// `IORING_RECVSEND_POLL_FIRST`, as for [`Send::poll_first`].
    #[inline]
    pub const fn poll_first(mut self) -> Self {
        self.poll_first = true;
        self
    }
}

impl Prepare for SendMsgZc {
    const CODE: u8 = sys::IORING_OP_SENDMSG_ZC as u8;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        check_flags("sendmsg_zc", self.flags, SEND_FLAGS)?;
        check_iovecs("sendmsg_zc", self.iovlen)
    }

    #[inline]
    fn prepare(self, sqe: &mut Sqe, keep: &mut Keep) {
        let SendMsgZc { fd, iov, iovlen, dest, control, flags, poll_first, report_usage, fixed } = self;
        prepare_msg(sqe, keep, Self::CODE, fd, iov, iovlen, dest, control);
        sqe.set_op_flags(flags as u32);
        let mut ioprio = poll_first_bit(poll_first);
        if report_usage {
            ioprio |= sys::IORING_SEND_ZC_REPORT_USAGE;
        }
        if let Some(index) = fixed {
            ioprio |= sys::IORING_RECVSEND_FIXED_BUF;
            sqe.set_buf_index(index);
        }
        sqe.ioprio = ioprio as u16;
    }
}

// SAFETY: as for `SendMsg`, until every push's notification CQE.
unsafe impl SafeOp for SendMsgZc {}

// ---------------------------------------------------------------------------
// Multicast

/// Queues one send per destination, all or nothing: checks the operation
/// and the SQ room first, so an error leaves nothing queued.
///
/// # Safety
///
/// As for [`RingOps::push_op_unchecked`] with each operation `at` builds.
unsafe fn push_each<O: Prepare + Copy, R: RingOps + OnRing>(
    ring: &mut R,
    ctx: SqeContext,
    dests: &[SocketAddr],
    at: impl Fn(SocketAddr) -> O,
) -> Result<()> {
    let Some(&first) = dests.first() else {
        return Err(Error::InvalidArgument("multicast to no destination".into()));
    };
    at(first).check(ring.ring_and_flags().0.features())?;
    let room = ring.sq_space_left() as usize;
    if room < dests.len() {
        return Err(Error::InvalidArgument(format!(
            "multicast to {} destinations needs as many free SQ entries, {room} are free: submit first, or use a \
             larger ring",
            dests.len()
        )));
    }
    for &dest in dests {
        // SAFETY: forwarded to the caller.
        unsafe { ring.push_op_unchecked(ctx, at(dest)) }?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Ring methods

/// Socket I/O methods on [`Ring`](uring_core::Ring) (and on a
/// [`WithFlags`](crate::WithFlags), which adds SQE flags): the common case
/// of each operation of this module. Options are reached through the
/// builders and [`RingOps::push_op`] / [`RingOps::push_op_unchecked`].
pub trait NetOps {
    /// Queues a [`Recv`] into `buf`.
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    ///
    /// # Safety
    ///
    /// As for [`Recv::new`].
    unsafe fn recv(&mut self, ctx: SqeContext, fd: impl Into<Target>, buf: &mut [u8]) -> Result<SqeContext>;

    /// Queues a [`RecvSelect`]: a receive into a buffer of group `group`.
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    fn recv_select(&mut self, ctx: SqeContext, fd: impl Into<Target>, group: u16) -> Result<SqeContext>;

    /// Queues a [`RecvBundle`]: a receive into consecutive buffers of group
    /// `group`, one CQE.
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`]; [`Error::Unsupported`] before 6.10.
    fn recv_bundle(&mut self, ctx: SqeContext, fd: impl Into<Target>, group: u16) -> Result<SqeContext>;

    /// Queues a [`RecvMsg`] as `msg` describes.
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    ///
    /// # Safety
    ///
    /// As for [`RecvMsg::new`].
    unsafe fn recvmsg(&mut self, ctx: SqeContext, fd: impl Into<Target>, msg: &mut libc::msghdr) -> Result<SqeContext>;

    /// Queues a [`Send`] of `buf`.
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    ///
    /// # Safety
    ///
    /// As for [`Send::new`].
    unsafe fn send(&mut self, ctx: SqeContext, fd: impl Into<Target>, buf: &[u8]) -> Result<SqeContext>;

    /// Queues a [`Send`] of `'static` bytes ([`Send::from_static`]): safe.
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    fn send_static(&mut self, ctx: SqeContext, fd: impl Into<Target>, buf: &'static [u8]) -> Result<SqeContext>;

    /// Queues a [`Send`] of `buf` to `dest` (`sendto`).
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    ///
    /// # Safety
    ///
    /// As for [`Send::new`].
    unsafe fn send_to(
        &mut self,
        ctx: SqeContext,
        fd: impl Into<Target>,
        buf: &[u8],
        dest: SocketAddr,
    ) -> Result<SqeContext>;

    /// Queues a [`SendMsg`] of the concatenation of `bufs`.
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`]; [`Error::InvalidArgument`] for more
    /// than 1024 slices.
    ///
    /// # Safety
    ///
    /// As for [`SendMsg::new`].
    unsafe fn sendmsg(&mut self, ctx: SqeContext, fd: impl Into<Target>, bufs: &[IoSlice<'_>]) -> Result<SqeContext>;

    /// Queues a [`SendZc`] of `buf`: two CQEs, the result and the
    /// notification.
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    ///
    /// # Safety
    ///
    /// `buf` must stay valid and unmodified until the **notification** CQE
    /// (`IORING_CQE_F_NOTIF`) is reaped, or until the result CQE if that
    /// one has no `IORING_CQE_F_MORE`. [`ZcTracker`](crate::zc::ZcTracker)
    /// is the safe alternative.
    unsafe fn send_zc(&mut self, ctx: SqeContext, fd: impl Into<Target>, buf: &[u8]) -> Result<SqeContext>;

    /// Queues a [`SendMsgZc`] of the concatenation of `bufs`.
    ///
    /// # Errors
    ///
    /// As for [`sendmsg`](Self::sendmsg).
    ///
    /// # Safety
    ///
    /// As for [`SendMsgZc::new`].
    unsafe fn sendmsg_zc(&mut self, ctx: SqeContext, fd: impl Into<Target>, bufs: &[IoSlice<'_>])
    -> Result<SqeContext>;

    /// Queues one `sendto` per destination, sharing `op`'s buffer and
    /// options (its own destination, if any, is replaced): `dests.len()`
    /// SQEs with the same `ctx`, so `dests.len()` CQEs, each the byte
    /// count (or `-errno`) of one destination, in no guaranteed order.
    /// Each destination is held in its own slot's [`Keep`].
    ///
    /// All or nothing: the operation is checked and the SQ room counted
    /// before anything is queued.
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`]; [`Error::InvalidArgument`] for no
    /// destination, or fewer free SQ entries than destinations.
    ///
    /// Safe: `op`'s buffer was vouched for when it was made ([`Send::new`]
    /// covers every push of a copy; [`Send::from_static`] needs nothing).
    fn multicast(&mut self, ctx: SqeContext, op: Send, dests: &[SocketAddr]) -> Result<()>;

    /// As [`multicast`](Self::multicast) with zero-copy sends: each
    /// destination produces a result CQE and a notification CQE.
    ///
    /// # Errors
    ///
    /// As for [`multicast`](Self::multicast).
    ///
    /// # Safety
    ///
    /// `op`'s buffer must stay valid and unmodified until every
    /// notification CQE is reaped (see [`send_zc`](Self::send_zc)).
    unsafe fn multicast_zc(&mut self, ctx: SqeContext, op: SendZc, dests: &[SocketAddr]) -> Result<()>;
}

impl<R: RingOps + OnRing> NetOps for R {
    #[inline]
    unsafe fn recv(&mut self, ctx: SqeContext, fd: impl Into<Target>, buf: &mut [u8]) -> Result<SqeContext> {
        // SAFETY: forwarded to the caller (`Recv::new`'s contract).
        let op = unsafe { Recv::new(fd, buf) };
        self.push_op(ctx, op)
    }

    #[inline]
    fn recv_select(&mut self, ctx: SqeContext, fd: impl Into<Target>, group: u16) -> Result<SqeContext> {
        self.push_op(ctx, RecvSelect::new(fd, group))
    }

    #[inline]
    fn recv_bundle(&mut self, ctx: SqeContext, fd: impl Into<Target>, group: u16) -> Result<SqeContext> {
        self.push_op(ctx, RecvBundle::new(fd, group))
    }

    #[inline]
    unsafe fn recvmsg(&mut self, ctx: SqeContext, fd: impl Into<Target>, msg: &mut libc::msghdr) -> Result<SqeContext> {
        // SAFETY: forwarded to the caller (`RecvMsg::new`'s contract).
        let op = unsafe { RecvMsg::new(fd, msg) };
        self.push_op(ctx, op)
    }

    #[inline]
    unsafe fn send(&mut self, ctx: SqeContext, fd: impl Into<Target>, buf: &[u8]) -> Result<SqeContext> {
        // SAFETY: forwarded to the caller (`Send::new`'s contract).
        let op = unsafe { Send::new(fd, buf) };
        self.push_op(ctx, op)
    }

    #[inline]
    fn send_static(&mut self, ctx: SqeContext, fd: impl Into<Target>, buf: &'static [u8]) -> Result<SqeContext> {
        self.push_op(ctx, Send::from_static(fd, buf))
    }

    #[inline]
    unsafe fn send_to(
        &mut self,
        ctx: SqeContext,
        fd: impl Into<Target>,
        buf: &[u8],
        dest: SocketAddr,
    ) -> Result<SqeContext> {
        // SAFETY: forwarded to the caller (`Send::new`'s contract); the
        // destination is in the Keep.
        let op = unsafe { Send::new(fd, buf) };
        self.push_op(ctx, op.to(dest))
    }

    #[inline]
    unsafe fn sendmsg(&mut self, ctx: SqeContext, fd: impl Into<Target>, bufs: &[IoSlice<'_>]) -> Result<SqeContext> {
        // SAFETY: forwarded to the caller (`SendMsg::new`'s contract).
        let op = unsafe { SendMsg::new(fd, bufs) };
        self.push_op(ctx, op)
    }

    #[inline]
    unsafe fn send_zc(&mut self, ctx: SqeContext, fd: impl Into<Target>, buf: &[u8]) -> Result<SqeContext> {
        // SAFETY: forwarded to the caller (the buffer until the
        // notification).
        unsafe { self.push_op_unchecked(ctx, SendZc::new(fd, buf)) }
    }

    #[inline]
    unsafe fn sendmsg_zc(
        &mut self,
        ctx: SqeContext,
        fd: impl Into<Target>,
        bufs: &[IoSlice<'_>],
    ) -> Result<SqeContext> {
        // SAFETY: forwarded to the caller (`SendMsgZc::new`'s contract).
        let op = unsafe { SendMsgZc::new(fd, bufs) };
        self.push_op(ctx, op)
    }

    fn multicast(&mut self, ctx: SqeContext, op: Send, dests: &[SocketAddr]) -> Result<()> {
        // SAFETY: `Send` is a `SafeOp` (its buffer was vouched for when it
        // was made, for every push of a copy); each destination goes to its
        // slot's Keep.
        unsafe { push_each(self, ctx, dests, |d| op.to(d)) }
    }

    unsafe fn multicast_zc(&mut self, ctx: SqeContext, op: SendZc, dests: &[SocketAddr]) -> Result<()> {
        // SAFETY: forwarded to the caller (the shared buffer until every
        // notification).
        unsafe { push_each(self, ctx, dests, |d| op.to(d)) }
    }
}
