//! Multishot operations: accept (plain and direct), receive, receive
//! bundle, read. One submission, many CQEs: each carries
//! `IORING_CQE_F_MORE` while the operation stays armed; the CQE without it
//! ends the operation (routing them is
//! [`subscription`](crate::subscription)'s job).

use uring_core::{Error, FeatureFlags, Features, Keep, Result, Ring, Sqe, SqeContext, sys};

use crate::RingOps;
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
}

impl MultishotOps for Ring {
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
