//! Multishot operations: accept (plain and direct), receive, receive
//! bundle, read. One submission, many CQEs: each carries
//! `IORING_CQE_F_MORE` while the operation stays armed; the CQE without it
//! ends the operation (routing them is
//! [`subscription`](crate::subscription)'s job).

use uring_core::{Features, Keep, Result, Sqe, sys};

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
    /// result is the slot. Needs a sparse file table with room.
    #[inline]
    pub const fn direct(mut self) -> Self {
        self.direct = true;
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
            return Err(uring_core::Error::InvalidArgument(format!(
                "accept flags {:#x}: only SOCK_CLOEXEC and SOCK_NONBLOCK are accepted",
                self.flags
            )));
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
