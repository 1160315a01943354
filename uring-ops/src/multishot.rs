//! Multishot operations: accept (plain and direct), receive, receive
//! bundle, read. One submission, many CQEs: each carries
//! `IORING_CQE_F_MORE` while the operation stays armed; the CQE without it
//! ends the operation (routing them is
//! [`subscription`](crate::subscription)'s job).

use uring_core::{Error, FeatureFlags, Features, Keep, Result, Sqe, SqeContext, sys};

use crate::RingOps;
use crate::flags::sealed::OnRing;
use crate::op::{Prepare, SafeOp, Target};

/// Accepts connections on a listening socket, one CQE per connection,
/// until cancelled or an error ends it: `io_uring_prep_multishot_accept`
/// (`io_uring_prep_multishot_accept_direct` with [`direct`](Self::direct)).
///
/// Since Linux 5.19. Each CQE's result is the new descriptor (or, when
/// direct, the fixed-table slot the kernel chose); `IORING_CQE_F_MORE` says
/// whether more will follow. Peer addresses are not reported (each accept
/// would overwrite the last); ask the socket (`getpeername`).
#[doc(alias = "IORING_OP_ACCEPT")]
#[doc(alias = "IORING_ACCEPT_MULTISHOT")]
#[doc(alias = "io_uring_prep_multishot_accept")]
#[doc(alias = "io_uring_prep_multishot_accept_direct")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct AcceptMulti {
    listener: Target,
    flags: i32,
    direct: bool,
    poll_first: bool,
}

impl AcceptMulti {
    /// Multishot accept on `listener`; new descriptors get `SOCK_CLOEXEC`.
    #[inline]
    pub fn new(listener: impl Into<Target>) -> Self {
        AcceptMulti { listener: listener.into(), flags: libc::SOCK_CLOEXEC, direct: false, poll_first: false }
    }

    /// The `accept4` flags of each new socket (`SOCK_CLOEXEC`,
    /// `SOCK_NONBLOCK`); replaces the default `SOCK_CLOEXEC`.
    #[inline]
    pub const fn flags(mut self, flags: i32) -> Self {
        self.flags = flags;
        self
    }

    /// Installs each connection into a free slot of the registered file
    /// table (`IORING_FILE_INDEX_ALLOC`) instead of the fd table; the CQE
    /// result is the slot. Needs a sparse file table with room; a full
    /// table ends the stream with `-ENFILE`. Clears `SOCK_CLOEXEC`, which
    /// means nothing for a slot and which the kernel refuses with a direct
    /// accept (`EINVAL`); setting it again afterwards is refused by
    /// [`check`](Prepare::check).
    ///
    /// The kernel picks the slot; there is deliberately no way to name
    /// one. `io_accept_prep` (`io_uring/net.c`) answers a multishot accept
    /// whose `file_index` is anything but `IORING_FILE_INDEX_ALLOC` with
    /// `-EINVAL` (every connection would replace the previous one in the
    /// same slot). To put one connection into a chosen slot, use the
    /// single-shot [`Accept`](crate::socket::Accept) with
    /// [`FileDest::Slot`](crate::FileDest::Slot), re-armed per connection.
    #[inline]
    pub const fn direct(mut self) -> Self {
        self.direct = true;
        self.flags &= !libc::SOCK_CLOEXEC;
        self
    }

    /// Waits for a connection before trying to accept
    /// (`IORING_ACCEPT_POLL_FIRST`, since 6.10): saves a futile attempt
    /// when the backlog is known to be empty.
    #[inline]
    pub const fn poll_first(mut self) -> Self {
        self.poll_first = true;
        self
    }
}

impl Prepare for AcceptMulti {
    const CODE: u8 = sys::IORING_OP_ACCEPT as u8;
    const USES_KEEP: bool = false;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        if self.flags & !(libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK) != 0 {
            return Err(Error::InvalidArgument(format!(
                "accept flags {:#x}: only SOCK_CLOEXEC and SOCK_NONBLOCK are accepted",
                self.flags
            )));
        }
        if self.direct && self.flags & libc::SOCK_CLOEXEC != 0 {
            return Err(Error::InvalidArgument(
                "accept flags: SOCK_CLOEXEC cannot be combined with a direct (fixed-slot) accept".into(),
            ));
        }
        Ok(())
    }

    #[inline]
    fn prepare(self, sqe: &mut Sqe, _keep: &mut Keep) {
        let AcceptMulti { listener, flags, direct, poll_first } = self;
        *sqe = Sqe::new(Self::CODE);
        listener.apply(sqe);
        sqe.ioprio = (sys::IORING_ACCEPT_MULTISHOT | if poll_first { sys::IORING_ACCEPT_POLL_FIRST } else { 0 }) as u16;
        sqe.set_op_flags(flags as u32);
        if direct {
            sqe.set_file_index(sys::IORING_FILE_INDEX_ALLOC as u32);
        }
    }
}

// SAFETY: no peer-address output; the SQE names no memory.
unsafe impl SafeOp for AcceptMulti {}

/// Fails with [`Error::Unsupported`] naming `what` when the running
/// kernel is known to be older than `since`; an unparsable release is given
/// the benefit of the doubt (the opcode probe already passed).
fn require_kernel(features: &Features, since: (u32, u32), what: &str) -> Result<()> {
    match features.kernel_version() {
        Some(v) if v < since => Err(Error::unsupported(
            format!("{what} (Linux {}.{}+)", since.0, since.1),
            Some("multishot needs a newer kernel; fall back to one-shot operations"),
        )),
        _ => Ok(()),
    }
}

/// Rejects `msg_flags` a multishot receive cannot take: `MSG_WAITALL` is
/// refused by the kernel with a bare `EINVAL`.
fn check_recv_flags(what: &str, msg_flags: i32) -> Result<()> {
    if msg_flags & libc::MSG_WAITALL != 0 {
        return Err(Error::InvalidArgument(format!(
            "{what}: MSG_WAITALL cannot be combined with multishot receive (flags {msg_flags:#x})"
        )));
    }
    Ok(())
}

/// Receives from a connected socket into buffers the kernel picks from a
/// provided-buffer group, one CQE per receive, until the peer closes, the
/// group runs dry, or it is cancelled: `io_uring_prep_recv_multishot`.
///
/// Since Linux 6.0. Buffer selection is mandatory: each CQE carries the
/// buffer id (`IORING_CQE_F_BUFFER`, [`Cqe::buffer_id`](uring_core::Cqe::buffer_id))
/// and the byte count in its result; `IORING_CQE_F_MORE` says the
/// operation stays armed. It ends (a CQE without `F_MORE`) with result 0
/// at end of stream, `-ENOBUFS` when the group has no buffer left (the
/// data stays in the socket: recycle buffers and submit again),
/// `-ECANCELED` when cancelled, or another errno.
///
/// The SQE names no memory: the buffers belong to the group, whose
/// registration made the kernel's use of them the registrant's promise.
#[doc(alias = "IORING_OP_RECV")]
#[doc(alias = "IORING_RECV_MULTISHOT")]
#[doc(alias = "io_uring_prep_recv_multishot")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct RecvMulti {
    fd: Target,
    group: u16,
    msg_flags: i32,
    poll_first: bool,
}

impl RecvMulti {
    /// Multishot receive on `fd` with buffers from provided-buffer group
    /// `group`.
    #[inline]
    pub fn new(fd: impl Into<Target>, group: u16) -> Self {
        RecvMulti { fd: fd.into(), group, msg_flags: 0, poll_first: false }
    }

    /// `recv(2)` flags (`MSG_*`) for every receive; `MSG_WAITALL` is
    /// refused by [`check`](Prepare::check).
    #[inline]
    pub const fn msg_flags(mut self, flags: i32) -> Self {
        self.msg_flags = flags;
        self
    }

    /// Waits for data before the first attempt (`IORING_RECVSEND_POLL_FIRST`,
    /// since 5.19): saves a futile try when the socket is known empty.
    #[inline]
    pub const fn poll_first(mut self) -> Self {
        self.poll_first = true;
        self
    }
}

impl Prepare for RecvMulti {
    const CODE: u8 = sys::IORING_OP_RECV as u8;
    const USES_KEEP: bool = false;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        require_kernel(features, (6, 0), "IORING_RECV_MULTISHOT")?;
        check_recv_flags("RecvMulti", self.msg_flags)
    }

    #[inline]
    fn prepare(self, sqe: &mut Sqe, _keep: &mut Keep) {
        let RecvMulti { fd, group, msg_flags, poll_first } = self;
        *sqe = Sqe::new(Self::CODE);
        fd.apply(sqe);
        sqe.flags |= sys::IOSQE_BUFFER_SELECT as u8;
        sqe.ioprio = (sys::IORING_RECV_MULTISHOT | if poll_first { sys::IORING_RECVSEND_POLL_FIRST } else { 0 }) as u16;
        sqe.set_op_flags(msg_flags as u32);
        sqe.set_buf_group(group);
    }
}

// SAFETY: addr and len are zero; the kernel writes only into buffers of
// the provided-buffer group, which the SQE names by number.
unsafe impl SafeOp for RecvMulti {}

/// Multishot receive in bundles: each CQE may fill several consecutive
/// buffers of the group (`IORING_RECVSEND_BUNDLE`):
/// `io_uring_prep_recv_multishot` with `IORING_RECVSEND_BUNDLE` in `ioprio`.
///
/// Since Linux 6.10 (`IORING_FEAT_RECVSEND_BUNDLE`). A CQE's buffer id is
/// the first buffer used; its result is the byte count, spread over that
/// buffer and the ones after it in ring order (as many as the count needs
/// at the group's buffer sizes). Otherwise as [`RecvMulti`]; a bundle
/// stream also ends when a bundle empties the group, with a final CQE that
/// still carries data.
#[doc(alias = "IORING_OP_RECV")]
#[doc(alias = "IORING_RECVSEND_BUNDLE")]
#[doc(alias = "io_uring_prep_recv_multishot")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct RecvBundleMulti {
    fd: Target,
    group: u16,
    msg_flags: i32,
    poll_first: bool,
}

impl RecvBundleMulti {
    /// Multishot bundle receive on `fd` from provided-buffer group `group`.
    #[inline]
    pub fn new(fd: impl Into<Target>, group: u16) -> Self {
        RecvBundleMulti { fd: fd.into(), group, msg_flags: 0, poll_first: false }
    }

    /// `recv(2)` flags (`MSG_*`); `MSG_WAITALL` is refused.
    #[inline]
    pub const fn msg_flags(mut self, flags: i32) -> Self {
        self.msg_flags = flags;
        self
    }

    /// Waits for data before the first attempt (`IORING_RECVSEND_POLL_FIRST`).
    #[inline]
    pub const fn poll_first(mut self) -> Self {
        self.poll_first = true;
        self
    }
}

impl Prepare for RecvBundleMulti {
    const CODE: u8 = sys::IORING_OP_RECV as u8;
    const USES_KEEP: bool = false;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        if !features.has(FeatureFlags::RECVSEND_BUNDLE) {
            return Err(Error::unsupported(
                "IORING_RECVSEND_BUNDLE (IORING_FEAT_RECVSEND_BUNDLE, Linux 6.10+)",
                Some("use RecvMulti, one buffer per CQE"),
            ));
        }
        check_recv_flags("RecvBundleMulti", self.msg_flags)
    }

    #[inline]
    fn prepare(self, sqe: &mut Sqe, _keep: &mut Keep) {
        let RecvBundleMulti { fd, group, msg_flags, poll_first } = self;
        *sqe = Sqe::new(Self::CODE);
        fd.apply(sqe);
        sqe.flags |= sys::IOSQE_BUFFER_SELECT as u8;
        sqe.ioprio = (sys::IORING_RECV_MULTISHOT
            | sys::IORING_RECVSEND_BUNDLE
            | if poll_first { sys::IORING_RECVSEND_POLL_FIRST } else { 0 }) as u16;
        sqe.set_op_flags(msg_flags as u32);
        sqe.set_buf_group(group);
    }
}

// SAFETY: as for RecvMulti: only provided buffers, named by group.
unsafe impl SafeOp for RecvBundleMulti {}

/// Reads from a pollable file (pipe, eventfd, tty, socket) into buffers of
/// a provided-buffer group, one CQE each time data is read, until end of
/// file, the group runs dry, or it is cancelled:
/// `io_uring_prep_read_multishot`.
///
/// Since Linux 6.7. Each CQE carries the buffer id and the byte count;
/// the stream ends like [`RecvMulti`]'s (0 at end of file, `-ENOBUFS`,
/// `-ECANCELED`). A file that cannot be polled (a regular file) fails with
/// `-EBADFD` in the CQE. Reads start at the file's current position.
#[doc(alias = "IORING_OP_READ_MULTISHOT")]
#[doc(alias = "io_uring_prep_read_multishot")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct ReadMulti {
    fd: Target,
    group: u16,
    max_len: u32,
}

impl ReadMulti {
    /// Multishot read of `fd` with buffers from group `group`.
    #[inline]
    pub fn new(fd: impl Into<Target>, group: u16) -> Self {
        ReadMulti { fd: fd.into(), group, max_len: 0 }
    }

    /// Reads at most `len` bytes per CQE (0, the default: the whole
    /// selected buffer).
    #[inline]
    pub const fn max_len(mut self, len: u32) -> Self {
        self.max_len = len;
        self
    }
}

impl Prepare for ReadMulti {
    const CODE: u8 = sys::IORING_OP_READ_MULTISHOT as u8;
    const USES_KEEP: bool = false;

    #[inline]
    fn prepare(self, sqe: &mut Sqe, _keep: &mut Keep) {
        let ReadMulti { fd, group, max_len } = self;
        *sqe = Sqe::new(Self::CODE);
        fd.apply(sqe);
        sqe.flags |= sys::IOSQE_BUFFER_SELECT as u8;
        sqe.len = max_len;
        // -1: the file's current position (streams have none and ignore it).
        sqe.set_off(u64::MAX);
        sqe.set_buf_group(group);
    }
}

// SAFETY: addr is zero; the kernel writes only into provided buffers.
unsafe impl SafeOp for ReadMulti {}

/// Receives datagrams (or stream data) with their source address and
/// control messages, one CQE per message, each into a buffer of a
/// provided-buffer group: `io_uring_prep_recvmsg_multishot`.
///
/// Since Linux 6.0. Each selected buffer starts with an
/// `io_uring_recvmsg_out` header, then `namelen` bytes reserved for the
/// source address, then `controllen` bytes for control messages, then the
/// payload; [`RecvMsgOut::parse`] reads that layout safely. The kernel
/// copies the header it needs (the reserved lengths) while it prepares the
/// request (`io_recvmsg_copy_hdr`), and the multishot path writes only into
/// the selected buffers, so the `msghdr` lives in the SQ slot's [`Keep`]
/// and the operation is [`SafeOp`].
#[doc(alias = "IORING_OP_RECVMSG")]
#[doc(alias = "IORING_RECV_MULTISHOT")]
#[doc(alias = "io_uring_prep_recvmsg_multishot")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct RecvMsgMulti {
    fd: Target,
    group: u16,
    namelen: u32,
    controllen: u32,
    flags: i32,
}

impl RecvMsgMulti {
    /// Multishot `recvmsg` on `fd` into buffers of `group`, reserving room
    /// for an IPv6 source address (`sockaddr_in6`) and no control data.
    #[inline]
    pub fn new(fd: impl Into<Target>, group: u16) -> Self {
        RecvMsgMulti { fd: fd.into(), group, namelen: size_of::<libc::sockaddr_in6>() as u32, controllen: 0, flags: 0 }
    }

    /// Bytes reserved for the source address in each buffer (0 for none;
    /// `sockaddr_storage` holds any family).
    #[inline]
    pub const fn namelen(mut self, len: u32) -> Self {
        self.namelen = len;
        self
    }

    /// Bytes reserved for control messages in each buffer.
    #[inline]
    pub const fn controllen(mut self, len: u32) -> Self {
        self.controllen = len;
        self
    }

    /// `MSG_*` flags of each receive.
    #[inline]
    pub const fn flags(mut self, flags: i32) -> Self {
        self.flags = flags;
        self
    }

    /// The reserved lengths, for [`RecvMsgOut::parse`].
    #[inline]
    pub const fn layout(&self) -> (u32, u32) {
        (self.namelen, self.controllen)
    }
}

impl Prepare for RecvMsgMulti {
    const CODE: u8 = sys::IORING_OP_RECVMSG as u8;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        if self.flags & libc::MSG_WAITALL != 0 {
            return Err(Error::InvalidArgument("multishot recvmsg cannot take MSG_WAITALL".into()));
        }
        if self.namelen > size_of::<libc::sockaddr_storage>() as u32 || self.controllen > i32::MAX as u32 {
            return Err(Error::InvalidArgument(format!(
                "multishot recvmsg: reserved lengths {} (name) and {} (control) are out of range",
                self.namelen, self.controllen
            )));
        }
        Ok(())
    }

    #[inline]
    fn prepare(self, sqe: &mut Sqe, keep: &mut Keep) {
        let RecvMsgMulti { fd, group, namelen, controllen, flags } = self;
        // SAFETY: an all-zero msghdr is the empty header (no name, no
        // iovec, no control buffer); only the reserved lengths are set.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_namelen = namelen;
        msg.msg_controllen = controllen as usize;
        let kept = keep.inline(msg);
        *sqe = Sqe::new(Self::CODE);
        fd.apply(sqe);
        sqe.set_addr(kept as *mut libc::msghdr as u64);
        sqe.len = 1;
        sqe.flags |= sys::IOSQE_BUFFER_SELECT as u8;
        sqe.set_buf_group(group);
        sqe.set_op_flags(flags as u32);
        sqe.ioprio = sys::IORING_RECV_MULTISHOT as u16;
    }
}

// SAFETY: the only address is the msghdr in the Keep, copied at prep; the
// kernel writes into buffers of the group only.
unsafe impl SafeOp for RecvMsgMulti {}

/// One message of a multishot `recvmsg`, parsed from its buffer: the
/// `io_uring_recvmsg_out` header, the source address, the control data and
/// the payload, each cut to what the buffer holds.
#[derive(Debug, Clone, Copy)]
pub struct RecvMsgOut<'a> {
    header: sys::io_uring_recvmsg_out,
    name: &'a [u8],
    control: &'a [u8],
    payload: &'a [u8],
}

impl<'a> RecvMsgOut<'a> {
    /// Parses the first `len` bytes a CQE reported of a buffer, laid out
    /// with the reserved lengths of the operation ([`RecvMsgMulti::layout`]).
    /// `None` when the buffer is too short for the header and the reserved
    /// room (the kernel then reports the message as truncated).
    pub fn parse(buf: &'a [u8], (namelen, controllen): (u32, u32)) -> Option<Self> {
        let head = size_of::<sys::io_uring_recvmsg_out>();
        let (namelen, controllen) = (namelen as usize, controllen as usize);
        let payload_at = head.checked_add(namelen)?.checked_add(controllen)?;
        if buf.len() < payload_at {
            return None;
        }
        // SAFETY: `buf` holds at least `head` bytes; `read_unaligned` needs
        // no alignment and the header is four plain u32s.
        let header = unsafe { buf.as_ptr().cast::<sys::io_uring_recvmsg_out>().read_unaligned() };
        let name = &buf[head..head + namelen.min(header.namelen as usize)];
        let control = &buf[head + namelen..head + namelen + controllen.min(header.controllen as usize)];
        let payload = &buf[payload_at..buf.len().min(payload_at + header.payloadlen as usize)];
        Some(RecvMsgOut { header, name, control, payload })
    }

    /// The payload (all of it, unless [`is_truncated`](Self::is_truncated)).
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// The source address bytes (a `sockaddr_*`), cut to the room reserved.
    pub fn name(&self) -> &'a [u8] {
        self.name
    }

    /// The source address, for IPv4 and IPv6 senders.
    pub fn source(&self) -> Option<std::net::SocketAddr> {
        let mut storage: libc::sockaddr_storage =
            // SAFETY: sockaddr_storage is plain bytes; all zero is valid.
            unsafe { std::mem::zeroed() };
        let n = self.name.len().min(size_of::<libc::sockaddr_storage>());
        // SAFETY: copying at most sizeof(storage) bytes into it.
        unsafe { std::ptr::copy_nonoverlapping(self.name.as_ptr(), (&raw mut storage).cast::<u8>(), n) };
        crate::socket::SockAddr::from_raw(storage, n as libc::socklen_t).as_socket_addr()
    }

    /// The control messages' bytes, cut to the room reserved.
    pub fn control(&self) -> &'a [u8] {
        self.control
    }

    /// The payload's length as the kernel reports it (what fit the buffer:
    /// a truncated datagram reports the room that was left, with
    /// `MSG_TRUNC` in [`flags`](Self::flags)).
    pub fn payload_len(&self) -> usize {
        self.header.payloadlen as usize
    }

    /// `msg_flags` of the receive (`MSG_TRUNC`, `MSG_CTRUNC`, …).
    pub fn flags(&self) -> i32 {
        self.header.flags as i32
    }

    /// Whether the payload did not fit the buffer (`MSG_TRUNC`).
    pub fn is_truncated(&self) -> bool {
        self.flags() & libc::MSG_TRUNC != 0 || self.payload.len() < self.payload_len()
    }

    /// Whether the source address did not fit the room reserved.
    pub fn is_name_truncated(&self) -> bool {
        (self.name.len()) < self.header.namelen as usize
    }
}

/// Zero-copy receive from a TCP socket into a registered zero-copy
/// receive area (`IORING_OP_RECV_ZC`).
///
/// Since Linux 6.15. Always multishot (the kernel refuses it otherwise):
/// each data CQE is a 32-byte CQE whose result is the byte count and
/// whose second half (`struct io_uring_zcrx_cqe`) holds the offset into
/// the area, tagged with the area token; `IORING_CQE_F_MORE` says more
/// follow. The stream ends (a CQE without `F_MORE`) with result 0 at end
/// of stream or after [`limit`](Self::limit) bytes, `-ENOMEM` when the area
/// has no free buffer, `-ECANCELED` when cancelled, or another errno.
///
/// Needs a ring with 32-byte or mixed CQEs and `DEFER_TASKRUN`, and a
/// zero-copy receive instance registered on it (`ifq` is its id). The
/// `uring-zcrx` crate registers the instance, routes these CQEs to a
/// handler and returns the buffers; pushing this builder by hand leaves
/// reading the area and refilling it to the caller.
///
/// The SQE names no memory: the kernel writes only into the registered
/// area.
#[doc(alias = "IORING_OP_RECV_ZC")]
#[doc(alias = "ReceiveZeroCopy")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct RecvZc {
    fd: Target,
    ifq: u32,
    len: u32,
    poll_first: bool,
}

impl RecvZc {
    /// Zero-copy receive on the TCP socket `fd` through the zero-copy
    /// receive instance `ifq`, with no byte limit.
    #[inline]
    pub fn new(fd: impl Into<Target>, ifq: u32) -> Self {
        RecvZc { fd: fd.into(), ifq, len: 0, poll_first: false }
    }

    /// Ends the stream (result 0, no `F_MORE`) once `len` bytes arrived;
    /// 0, the default, means no limit.
    #[inline]
    pub const fn limit(mut self, len: u32) -> Self {
        self.len = len;
        self
    }

    /// Waits for data before the first attempt
    /// (`IORING_RECVSEND_POLL_FIRST`).
    #[inline]
    pub const fn poll_first(mut self) -> Self {
        self.poll_first = true;
        self
    }
}

impl Prepare for RecvZc {
    const CODE: u8 = sys::IORING_OP_RECV_ZC as u8;
    const USES_KEEP: bool = false;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        if features.cqe_size() == uring_core::CqeSize::Normal {
            return Err(Error::InvalidArgument(
                "RecvZc: the ring has 16-byte CQEs; zero-copy receive needs CqeSize::Big or CqeSize::Mixed".into(),
            ));
        }
        Ok(())
    }

    #[inline]
    fn prepare(self, sqe: &mut Sqe, _keep: &mut Keep) {
        let RecvZc { fd, ifq, len, poll_first } = self;
        *sqe = Sqe::new(Self::CODE);
        fd.apply(sqe);
        sqe.len = len;
        sqe.ioprio = (sys::IORING_RECV_MULTISHOT | if poll_first { sys::IORING_RECVSEND_POLL_FIRST } else { 0 }) as u16;
        sqe.set_zcrx_ifq_idx(ifq);
    }
}

// SAFETY: addr, addr2 and addr3 are zero; the kernel writes only into the
// zero-copy receive area registered under `ifq`, whose registration made
// the kernel's use of it the registrant's promise.
unsafe impl SafeOp for RecvZc {}

/// Ring methods for the multishot operations. Each queues one SQE (nothing
/// is submitted) whose CQEs all carry `ctx`; route them by hand or use a
/// [`Subscription`](crate::subscription::Subscription).
pub trait MultishotOps {
    /// Queues [`AcceptMulti`] on `listener`: one CQE per connection, its
    /// result the new descriptor.
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    #[doc(alias = "io_uring_prep_multishot_accept")]
    fn accept_multi(&mut self, ctx: SqeContext, listener: impl Into<Target>) -> Result<SqeContext>;

    /// Queues [`AcceptMulti::direct`]: each connection goes into a free
    /// slot of the registered file table, the CQE result is the slot.
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    #[doc(alias = "io_uring_prep_multishot_accept_direct")]
    fn accept_multi_direct(&mut self, ctx: SqeContext, listener: impl Into<Target>) -> Result<SqeContext>;

    /// Queues [`RecvMulti`] on `fd` with buffers from `group`.
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    #[doc(alias = "io_uring_prep_recv_multishot")]
    fn recv_multi(&mut self, ctx: SqeContext, fd: impl Into<Target>, group: u16) -> Result<SqeContext>;

    /// Queues [`RecvBundleMulti`] on `fd` with buffers from `group`.
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`]; [`Error::Unsupported`] before 6.10.
    fn recv_bundle_multi(&mut self, ctx: SqeContext, fd: impl Into<Target>, group: u16) -> Result<SqeContext>;

    /// Queues [`ReadMulti`] on `fd` with buffers from `group`.
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    #[doc(alias = "io_uring_prep_read_multishot")]
    fn read_multi(&mut self, ctx: SqeContext, fd: impl Into<Target>, group: u16) -> Result<SqeContext>;

    /// Queues [`RecvMsgMulti`] on `fd` with buffers from `group` (room for
    /// an IPv6 source address, no control data); parse each buffer with
    /// [`RecvMsgOut::parse`] and `RecvMsgMulti::new(..).layout()`.
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    #[doc(alias = "io_uring_prep_recvmsg_multishot")]
    fn recvmsg_multi(&mut self, ctx: SqeContext, fd: impl Into<Target>, group: u16) -> Result<SqeContext>;

    /// Queues [`RecvZc`] on the TCP socket `fd` through the zero-copy
    /// receive instance `ifq` (see `uring-zcrx` for the instance and the
    /// routing of its 32-byte CQEs).
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    #[doc(alias = "ReceiveZeroCopy")]
    fn recv_zc(&mut self, ctx: SqeContext, fd: impl Into<Target>, ifq: u32) -> Result<SqeContext>;
}

impl<R: RingOps + OnRing> MultishotOps for R {
    #[inline]
    fn accept_multi(&mut self, ctx: SqeContext, listener: impl Into<Target>) -> Result<SqeContext> {
        self.push_op(ctx, AcceptMulti::new(listener))
    }

    #[inline]
    fn accept_multi_direct(&mut self, ctx: SqeContext, listener: impl Into<Target>) -> Result<SqeContext> {
        self.push_op(ctx, AcceptMulti::new(listener).direct())
    }

    #[inline]
    fn recv_multi(&mut self, ctx: SqeContext, fd: impl Into<Target>, group: u16) -> Result<SqeContext> {
        self.push_op(ctx, RecvMulti::new(fd, group))
    }

    #[inline]
    fn recv_bundle_multi(&mut self, ctx: SqeContext, fd: impl Into<Target>, group: u16) -> Result<SqeContext> {
        self.push_op(ctx, RecvBundleMulti::new(fd, group))
    }

    #[inline]
    fn read_multi(&mut self, ctx: SqeContext, fd: impl Into<Target>, group: u16) -> Result<SqeContext> {
        self.push_op(ctx, ReadMulti::new(fd, group))
    }

    #[inline]
    fn recvmsg_multi(&mut self, ctx: SqeContext, fd: impl Into<Target>, group: u16) -> Result<SqeContext> {
        self.push_op(ctx, RecvMsgMulti::new(fd, group))
    }

    #[inline]
    fn recv_zc(&mut self, ctx: SqeContext, fd: impl Into<Target>, ifq: u32) -> Result<SqeContext> {
        self.push_op(ctx, RecvZc::new(fd, ifq))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::Fixed;

    fn prep(op: impl Prepare) -> Sqe {
        let mut sqe = Sqe::new(0);
        let mut keep = Keep::new();
        op.prepare(&mut sqe, &mut keep);
        sqe
    }

    #[test]
    fn recv_multi_selects_buffers_from_its_group() {
        let sqe = prep(RecvMulti::new(Fixed(4), 9).msg_flags(libc::MSG_PEEK).poll_first());
        assert_eq!(sqe.opcode, sys::IORING_OP_RECV as u8);
        assert_eq!((sqe.fd, sqe.buf_group(), sqe.len, sqe.addr()), (4, 9, 0, 0));
        assert_eq!(
            u32::from(sqe.flags),
            sys::IOSQE_BUFFER_SELECT | sys::IOSQE_FIXED_FILE,
            "buffer selection is mandatory"
        );
        assert_eq!(u32::from(sqe.ioprio), sys::IORING_RECV_MULTISHOT | sys::IORING_RECVSEND_POLL_FIRST);
        assert_eq!(sqe.op_flags(), libc::MSG_PEEK as u32);
    }

    #[test]
    fn bundle_and_read_multi_set_their_bits() {
        let sqe = prep(RecvBundleMulti::new(3, 2));
        assert_eq!(u32::from(sqe.ioprio), sys::IORING_RECV_MULTISHOT | sys::IORING_RECVSEND_BUNDLE);
        assert_eq!((sqe.fd, sqe.buf_group()), (3, 2));
        let sqe = prep(ReadMulti::new(5, 6).max_len(100));
        assert_eq!(sqe.opcode, sys::IORING_OP_READ_MULTISHOT as u8);
        assert_eq!((sqe.fd, sqe.buf_group(), sqe.len, sqe.off(), sqe.ioprio), (5, 6, 100, u64::MAX, 0));
        assert_eq!(u32::from(sqe.flags), sys::IOSQE_BUFFER_SELECT);
    }

    #[test]
    fn direct_accept_drops_cloexec_and_allocates_a_slot() {
        let sqe = prep(AcceptMulti::new(7).direct());
        assert_eq!(sqe.op_flags(), 0);
        assert_eq!(sqe.file_index(), sys::IORING_FILE_INDEX_ALLOC as u32);
        assert_eq!(u32::from(sqe.ioprio), sys::IORING_ACCEPT_MULTISHOT);
    }
}
