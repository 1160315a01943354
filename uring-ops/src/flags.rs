//! SQE flags on the named ring methods: [`FlagOps::with_flags`] and
//! [`FlagOps::linked`] give a short-lived [`WithFlags`] that is a
//! [`RingOps`] itself, so every family's named methods (and `push_op`)
//! work on it and add the flags to the entry they queue. A linked chain
//! reads the same as single calls:
//!
//! ```no_run
//! use uring_ops::prelude::*;
//! # fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
//! # let mut ring = Ring::new(Options::small())?;
//! # ring.start()?;
//! let file = std::fs::File::create("/tmp/uring-flags-doc")?;
//! let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
//! let ctx = SqeContext::token(1)?;
//! // write, then fsync once the write has completed, then a NOP
//! ring.linked().write_static(ctx, fd, b"hello\n", 0)?;
//! ring.linked().fsync(ctx, fd)?;
//! ring.nop(ctx)?;
//! ring.submit()?;
//! # Ok(())
//! # }
//! ```
//!
//! The same with builders is `ring.linked().push_op(ctx, op)`, or
//! `ring.push_op(ctx, op.with_sqe_flags(SqeFlags::IO_LINK))`
//! ([`OpExt::with_sqe_flags`](crate::OpExt::with_sqe_flags)): both write
//! the same entry.

use uring_core::{Result, Ring, SqeContext, SqeFlags};

use crate::op::{OpExt, Prepare, SafeOp};
use crate::ring::RingOps;

pub(crate) mod sealed {
    use uring_core::{Ring, SqeFlags};

    /// What the families' named methods are implemented over: a [`Ring`],
    /// or a [`WithFlags`](super::WithFlags) borrowing one. The methods that
    /// check a group of entries before queuing any (deadlines, multicast)
    /// need the ring itself.
    pub trait OnRing {
        /// The ring, and the SQE flags every entry queued through `self`
        /// gets.
        fn ring_and_flags(&mut self) -> (&mut Ring, SqeFlags);
    }
}

impl sealed::OnRing for Ring {
    #[inline]
    fn ring_and_flags(&mut self) -> (&mut Ring, SqeFlags) {
        (self, SqeFlags::empty())
    }
}

impl sealed::OnRing for WithFlags<'_> {
    #[inline]
    fn ring_and_flags(&mut self) -> (&mut Ring, SqeFlags) {
        (self.ring, self.flags)
    }
}

/// A [`Ring`] borrowed with SQE flags that every entry queued through it
/// gets, ORed into the flags the operation sets itself (and a packed
/// context's own flags). Made by [`FlagOps::with_flags`] or
/// [`FlagOps::linked`]; it implements [`RingOps`] and so every family's
/// named methods: `ring.linked().fsync(ctx, fd)` is
/// `ring.push_op(ctx, Fsync::new(fd).with_sqe_flags(SqeFlags::IO_LINK))`.
///
/// It adds flags only: the checks, the `Keep`, the context stamping and
/// the errors are the ring's. (On a `SharedRing`, use
/// [`OpExt::with_sqe_flags`] on the builder. The 128-byte pushes of
/// [`Ring128Ops`](crate::cmd::Ring128Ops) and the subscriptions of
/// [`Subscribe`](crate::subscription::Subscribe) are on the `Ring` itself.)
#[derive(Debug)]
pub struct WithFlags<'r> {
    ring: &'r mut Ring,
    flags: SqeFlags,
}

impl<'r> WithFlags<'r> {
    /// `ring`, adding `flags` to every entry queued through the result.
    #[inline]
    pub fn new(ring: &'r mut Ring, flags: SqeFlags) -> Self {
        WithFlags { ring, flags }
    }

    /// The flags added to every entry.
    #[inline]
    pub fn flags(&self) -> SqeFlags {
        self.flags
    }

    /// The ring underneath (pushes through it add no flags).
    #[inline]
    pub fn ring(&mut self) -> &mut Ring {
        self.ring
    }
}

impl RingOps for WithFlags<'_> {
    #[inline]
    fn push_op<O: SafeOp>(&mut self, ctx: SqeContext, op: O) -> Result<SqeContext> {
        self.ring.push_op(ctx, op.with_sqe_flags(self.flags))
    }

    #[inline]
    unsafe fn push_op_unchecked<O: Prepare>(&mut self, ctx: SqeContext, op: O) -> Result<SqeContext> {
        // SAFETY: forwarded to the caller; flags name no memory.
        unsafe { self.ring.push_op_unchecked(ctx, op.with_sqe_flags(self.flags)) }
    }

    #[inline]
    fn sq_space_left(&mut self) -> u32 {
        self.ring.sq_space_left()
    }
}

/// SQE flags for the named ring methods: on a [`Ring`], and again on a
/// [`WithFlags`] (the flags add up).
pub trait FlagOps: sealed::OnRing {
    /// Borrows the ring so that every entry queued through the result gets
    /// `flags` (`IO_LINK`, `IO_HARDLINK`, `IO_DRAIN`, `ASYNC`,
    /// `CQE_SKIP_SUCCESS`, …) besides its own. See
    /// [`OpExt::with_sqe_flags`] for what each link flag does when an
    /// operation fails or comes up short.
    #[inline]
    fn with_flags(&mut self, flags: SqeFlags) -> WithFlags<'_> {
        let (ring, own) = self.ring_and_flags();
        WithFlags { ring, flags: own | flags }
    }

    /// [`with_flags`](Self::with_flags)`(SqeFlags::IO_LINK)`: the next
    /// entry queued starts only after this one succeeds in full (a failure,
    /// or a short read or write, cancels the rest of the chain with
    /// `-ECANCELED`).
    #[inline]
    fn linked(&mut self) -> WithFlags<'_> {
        self.with_flags(SqeFlags::IO_LINK)
    }
}

impl FlagOps for Ring {}
impl FlagOps for WithFlags<'_> {}
