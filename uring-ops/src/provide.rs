//! Legacy provided buffers: `provide_buffers` and `remove_buffers`, which
//! hand the kernel a group of buffers one request at a time. Buffer rings
//! (`uring-buffers`) replace them and are cheaper; these exist for
//! completeness and for kernels' and programs' older habits.

use uring_core::{Error, Features, Keep, Result, Sqe, SqeContext, sys};

use crate::flags::sealed::OnRing;
use crate::op::{Prepare, SafeOp};
use crate::ring::RingOps;

/// The most buffers one request may provide or remove (`USHRT_MAX`).
pub const MAX_BUFFERS: u32 = u16::MAX as u32;

/// Gives the kernel `count` buffers of `len` bytes, laid out back to back
/// from `addr`, as group `group` with ids `first_bid..first_bid + count`:
/// `io_uring_prep_provide_buffers`.
///
/// Since Linux 5.7. The result is 0 on success. Operations that select
/// from the group (`IOSQE_BUFFER_SELECT`) then write into these buffers
/// and report the id in their CQE; each buffer is used once and must be
/// provided again.
///
/// Not [`SafeOp`]: the kernel writes into the buffers whenever a
/// selecting operation completes. Push it with
/// [`RingOps::push_op_unchecked`], keeping the memory valid and otherwise
/// untouched until every buffer has come back in a CQE or has been
/// removed ([`RemoveBuffers`]).
#[doc(alias = "IORING_OP_PROVIDE_BUFFERS")]
#[doc(alias = "io_uring_prep_provide_buffers")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct ProvideBuffers {
    addr: *mut u8,
    len: u32,
    count: u32,
    group: u16,
    first_bid: u16,
}

impl ProvideBuffers {
    /// `count` buffers of `len` bytes from `addr`, ids from `first_bid`.
    pub const fn new(addr: *mut u8, len: u32, count: u32, group: u16, first_bid: u16) -> Self {
        ProvideBuffers { addr, len, count, group, first_bid }
    }
}

impl Prepare for ProvideBuffers {
    const CODE: u8 = sys::IORING_OP_PROVIDE_BUFFERS as u8;
    const USES_KEEP: bool = false;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        if self.count == 0 || self.count > MAX_BUFFERS {
            return Err(Error::InvalidArgument(format!("{} buffers: provide 1 to {MAX_BUFFERS}", self.count)));
        }
        if self.len == 0 {
            return Err(Error::InvalidArgument("provided buffers of 0 bytes".into()));
        }
        if u32::from(self.first_bid) + self.count > MAX_BUFFERS + 1 {
            return Err(Error::InvalidArgument(format!(
                "buffer ids {}..{} do not fit 16 bits",
                self.first_bid,
                u32::from(self.first_bid) + self.count
            )));
        }
        Ok(())
    }

    #[inline]
    fn prepare(self, sqe: &mut Sqe, _keep: &mut Keep) {
        let ProvideBuffers { addr, len, count, group, first_bid } = self;
        *sqe = Sqe::new(Self::CODE);
        sqe.fd = count as i32;
        sqe.set_addr(addr as u64);
        sqe.len = len;
        sqe.set_off(u64::from(first_bid));
        sqe.set_buf_group(group);
    }
}

/// Takes up to `count` unused buffers of group `group` back from the
/// kernel: `io_uring_prep_remove_buffers`.
///
/// Since Linux 5.7. The result is the number removed (0 when the group is
/// empty, `-ENOENT` when it was never provided). Once removed, a buffer's memory is the caller's again.
#[doc(alias = "IORING_OP_REMOVE_BUFFERS")]
#[doc(alias = "io_uring_prep_remove_buffers")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct RemoveBuffers {
    count: u32,
    group: u16,
}

impl RemoveBuffers {
    /// Up to `count` buffers of `group`.
    pub const fn new(count: u32, group: u16) -> Self {
        RemoveBuffers { count, group }
    }
}

impl Prepare for RemoveBuffers {
    const CODE: u8 = sys::IORING_OP_REMOVE_BUFFERS as u8;
    const USES_KEEP: bool = false;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        if self.count == 0 || self.count > MAX_BUFFERS {
            return Err(Error::InvalidArgument(format!("{} buffers: remove 1 to {MAX_BUFFERS}", self.count)));
        }
        Ok(())
    }

    #[inline]
    fn prepare(self, sqe: &mut Sqe, _keep: &mut Keep) {
        let RemoveBuffers { count, group } = self;
        *sqe = Sqe::new(Self::CODE);
        sqe.fd = count as i32;
        sqe.set_buf_group(group);
    }
}

// SAFETY: names no memory (it ends the kernel's use of buffers instead).
unsafe impl SafeOp for RemoveBuffers {}

/// Ring methods for legacy provided buffers.
pub trait ProvideOps {
    /// Queues [`ProvideBuffers`] over `memory`, split into buffers of `len`
    /// bytes (the count is `memory.len() / len`).
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op_unchecked`].
    ///
    /// # Safety
    ///
    /// `memory` must stay valid, and must be neither read nor written,
    /// until each of its buffers has come back in a CQE (after which that
    /// buffer's bytes are the caller's) or has been removed.
    unsafe fn provide_buffers(
        &mut self,
        ctx: SqeContext,
        memory: &mut [u8],
        len: u32,
        group: u16,
        first_bid: u16,
    ) -> Result<SqeContext>;

    /// Queues [`RemoveBuffers`].
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    fn remove_buffers(&mut self, ctx: SqeContext, count: u32, group: u16) -> Result<SqeContext>;
}

impl<R: RingOps + OnRing> ProvideOps for R {
    unsafe fn provide_buffers(
        &mut self,
        ctx: SqeContext,
        memory: &mut [u8],
        len: u32,
        group: u16,
        first_bid: u16,
    ) -> Result<SqeContext> {
        if len == 0 {
            return Err(Error::InvalidArgument("provided buffers of 0 bytes".into()));
        }
        let count = u32::try_from(memory.len() / len as usize).unwrap_or(u32::MAX);
        let op = ProvideBuffers::new(memory.as_mut_ptr(), len, count, group, first_bid);
        // SAFETY: forwarded to the caller.
        unsafe { self.push_op_unchecked(ctx, op) }
    }

    fn remove_buffers(&mut self, ctx: SqeContext, count: u32, group: u16) -> Result<SqeContext> {
        self.push_op(ctx, RemoveBuffers::new(count, group))
    }
}
