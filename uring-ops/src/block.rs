//! Block-device commands through `IORING_OP_URING_CMD`
//! (`BLOCK_URING_CMD_*`, generated from `linux/blkdev.h`).

use uring_core::{Error, Features, Keep, Result, Sqe, sys};

use crate::Target;
use crate::op::{Prepare, SafeOp};

/// Discards bytes `offset..offset + len` of a block device
/// (`BLOCK_URING_CMD_DISCARD`, since Linux 6.12): the asynchronous
/// `ioctl(BLKDISCARD)`. Both must be multiples of the logical block size;
/// the device must be open for writing (`-EBADF` otherwise). The kernel
/// drops the range from the page cache first; what reading it returns
/// afterwards is the device's choice (zeroes on most NVMe drives, see
/// `/sys/block/*/queue/discard_zeroes_data` and the namespace's DLFEAT).
/// A kernel without the command fails it with `-EINVAL` or `-ENOTTY`.
///
/// Some stable kernels (Debian's 7.0.13 among them) fail every discard
/// with `-EINVAL`: they carry the backport of "block: only read the SQE on
/// the first issue of a uring_cmd" (which keeps `addr`/`addr3` across a
/// reissue) without its follow-up, mainline 4f919141be38 "block: fix
/// IORING_URING_CMD_REISSUE flags check in blkdev_uring_cmd". The first
/// tests the reissue bit, `1 << 31`, in the issue flags, where that bit is
/// `IO_URING_F_NONBLOCK`: on the inline, non-blocking issue the kernel
/// skips reading the SQE and validates a range it never read. Queued with
/// `IOSQE_ASYNC` (`.with_sqe_flags(SqeFlags::ASYNC)`), the command is
/// issued blocking from io-wq, reads its SQE and runs; 7.2 and later (and
/// 6.18.44) need nothing. Kernel test:
/// `uring-ops/tests/nvme.rs::a_block_discard_drops_the_range`.
#[doc(alias = "BLOCK_URING_CMD_DISCARD")]
#[doc(alias = "BLKDISCARD")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct BlockDiscard {
    fd: Target,
    offset: u64,
    len: u64,
}

impl BlockDiscard {
    /// Discards `len` bytes at `offset` of block device `fd`.
    pub fn new(fd: impl Into<Target>, offset: u64, len: u64) -> Self {
        BlockDiscard { fd: fd.into(), offset, len }
    }
}

impl Prepare for BlockDiscard {
    const CODE: u8 = sys::IORING_OP_URING_CMD as u8;
    const USES_KEEP: bool = false;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        if self.len == 0 {
            return Err(Error::InvalidArgument("a discard of 0 bytes".into()));
        }
        Ok(())
    }

    #[inline]
    fn prepare(self, sqe: &mut Sqe, _keep: &mut Keep) {
        let BlockDiscard { fd, offset, len } = self;
        *sqe = Sqe::new(Self::CODE);
        fd.apply(sqe);
        sqe.set_cmd_op(sys::BLOCK_URING_CMD_DISCARD);
        // The start in `addr`, the length in `addr3` (`blkdev_uring_cmd`).
        sqe.set_addr(offset);
        sqe.set_addr3(len);
    }
}

// SAFETY: the command names no memory: `addr` and `addr3` are a byte range
// of the device.
unsafe impl SafeOp for BlockDiscard {}
