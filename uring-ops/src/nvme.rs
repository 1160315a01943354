//! NVMe passthrough: NVMe commands sent through `IORING_OP_URING_CMD` to a
//! namespace's generic character device (`/dev/ngXnY`, I/O commands) or a
//! controller's (`/dev/nvmeX`, admin commands), bypassing the block layer,
//! as fio's `io_uring_cmd` engine does.
//!
//! The command is a [`sys::nvme_uring_cmd`] (72 bytes, generated from
//! `linux/nvme_ioctl.h`) carried in the SQE's command area, so the ring
//! needs 128-byte SQEs (`Options::sqe128(true)`), and the kernel posts the
//! NVMe completion's result dword(s) in the second half of a 32-byte CQE
//! (`Options::cqe_size(CqeSize::Big)`): the NVMe driver refuses the command
//! with `-EOPNOTSUPP` on a ring without either, and [`NvmeCmd`] refuses it
//! before an SQE is taken. [`NvmeCompletion`] decodes the CQE.
//!
//! The command opcodes and dword layouts below are the NVMe base and NVM
//! command set specifications' (the kernel's `include/linux/nvme.h` is not
//! uapi): [`NvmeCmd::read`], [`write`](NvmeCmd::write),
//! [`flush`](NvmeCmd::flush) and [`identify`](NvmeCmd::identify) build
//! them; [`NvmeCmd::io`] and [`NvmeCmd::admin`] take any command.
//!
//! [`NvmeCmd::fixed`] makes the data transfer use a registered buffer
//! (`IORING_URING_CMD_FIXED`, `sqe->buf_index`): the address must lie
//! inside that buffer.
//!
//! A [`SafeOp128`](crate::cmd::SafeOp128), pushed with
//! [`Ring128Ops::push_op128`](crate::cmd::Ring128Ops::push_op128): the
//! data buffer the device reads or writes (by DMA) while the command runs
//! is named only by the `unsafe` constructors ([`read`](NvmeCmd::read),
//! [`write`](NvmeCmd::write), [`identify`](NvmeCmd::identify), and
//! [`io`](NvmeCmd::io) and [`admin`](NvmeCmd::admin) for any command),
//! which take the obligation once, as the file builders do
//! ([`Read::new`](crate::file::Read::new)). [`flush`](NvmeCmd::flush)
//! names no memory and is safe.

use uring_core::sys;
use uring_core::{Cqe, CqeSize, Error, Features, Result, Sqe, Sqe128};

use crate::Target;
use crate::cmd::Prepare128;

/// NVM command set opcode: Flush (NVM Command Set Specification, 3.2).
pub const NVME_CMD_FLUSH: u8 = 0x00;
/// NVM command set opcode: Write.
pub const NVME_CMD_WRITE: u8 = 0x01;
/// NVM command set opcode: Read.
pub const NVME_CMD_READ: u8 = 0x02;
/// Admin command opcode: Identify (NVMe Base Specification, 5.1.13).
pub const NVME_ADMIN_IDENTIFY: u8 = 0x06;
/// Identify CNS 00h: the Identify Namespace data structure of `nsid`.
pub const NVME_ID_CNS_NS: u8 = 0x00;
/// Identify CNS 01h: the Identify Controller data structure.
pub const NVME_ID_CNS_CTRL: u8 = 0x01;
/// Bytes an Identify command returns.
pub const NVME_IDENTIFY_LEN: u32 = 4096;

/// One NVMe command through `IORING_OP_URING_CMD`; see the
/// [module documentation](self).
#[doc(alias = "NVME_URING_CMD_IO")]
#[doc(alias = "NVME_URING_CMD_ADMIN")]
#[doc(alias = "IORING_URING_CMD_FIXED")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct NvmeCmd {
    fd: Target,
    cmd_op: u32,
    cmd: sys::nvme_uring_cmd,
    buf_index: Option<u16>,
}

impl NvmeCmd {
    /// I/O command `cmd` (`NVME_URING_CMD_IO`) to a namespace's generic
    /// character device `fd`.
    ///
    /// # Safety
    ///
    /// For every push of the returned operation (or of a copy of it), the
    /// memory `cmd` names (`addr`/`data_len`, `metadata`/`metadata_len`)
    /// must stay valid, and must not be accessed by the program in a way
    /// the command forbids (neither read nor written while the device
    /// writes it, not written while it reads it), until that operation's
    /// CQE has been reaped; and the command must transfer no more than
    /// `data_len` (and `metadata_len`) bytes.
    #[inline]
    pub unsafe fn io(fd: impl Into<Target>, cmd: sys::nvme_uring_cmd) -> Self {
        NvmeCmd { fd: fd.into(), cmd_op: sys::NVME_URING_CMD_IO, cmd, buf_index: None }
    }

    /// Admin command `cmd` (`NVME_URING_CMD_ADMIN`) to a controller's
    /// character device `fd` (`/dev/nvmeX`).
    ///
    /// # Safety
    ///
    /// As for [`io`](Self::io).
    #[inline]
    pub unsafe fn admin(fd: impl Into<Target>, cmd: sys::nvme_uring_cmd) -> Self {
        NvmeCmd { fd: fd.into(), cmd_op: sys::NVME_URING_CMD_ADMIN, cmd, buf_index: None }
    }

    /// Reads logical blocks `slba..slba + blocks` of namespace `nsid` into
    /// `buf`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for 0 or more than 65536 blocks (the
    /// command's count is 16 bits, 0-based), or a buffer over `u32::MAX`
    /// bytes.
    ///
    /// # Safety
    ///
    /// `buf.len()` must be `blocks` × the namespace's LBA size (the device
    /// transfers whole blocks; the kernel does not compare the two). For
    /// every push of the returned operation (or of a copy of it), `buf`
    /// must stay valid, and must be neither read nor written by the
    /// program, until that operation's CQE has been reaped: the device
    /// writes it while the command runs (the borrow ends when this call
    /// returns; the obligation does not).
    pub unsafe fn read(fd: impl Into<Target>, nsid: u32, slba: u64, blocks: u32, buf: &mut [u8]) -> Result<Self> {
        let cmd = rw(NVME_CMD_READ, nsid, slba, blocks, buf.as_mut_ptr() as u64, buf.len())?;
        // SAFETY: the command names `buf` only, under the caller's
        // obligation stated above.
        Ok(unsafe { Self::io(fd, cmd) })
    }

    /// Writes `buf` to logical blocks `slba..slba + blocks` of namespace
    /// `nsid`.
    ///
    /// # Errors
    ///
    /// As for [`read`](Self::read).
    ///
    /// # Safety
    ///
    /// `buf.len()` must be `blocks` × the namespace's LBA size. For every
    /// push of the returned operation (or of a copy of it), `buf` must
    /// stay valid, and must not be written by the program, until that
    /// operation's CQE has been reaped: the device reads it while the
    /// command runs.
    pub unsafe fn write(fd: impl Into<Target>, nsid: u32, slba: u64, blocks: u32, buf: &[u8]) -> Result<Self> {
        let cmd = rw(NVME_CMD_WRITE, nsid, slba, blocks, buf.as_ptr() as u64, buf.len())?;
        // SAFETY: the command names `buf` only, under the caller's
        // obligation stated above.
        Ok(unsafe { Self::io(fd, cmd) })
    }

    /// Flushes namespace `nsid`'s volatile write cache. Names no memory.
    pub fn flush(fd: impl Into<Target>, nsid: u32) -> Self {
        let cmd = sys::nvme_uring_cmd { opcode: NVME_CMD_FLUSH, nsid, ..Default::default() };
        // SAFETY: a flush transfers no data: the command names no memory.
        unsafe { Self::io(fd, cmd) }
    }

    /// Identify (admin) with `cns` ([`NVME_ID_CNS_CTRL`],
    /// [`NVME_ID_CNS_NS`] with `nsid`) into `buf`
    /// ([`NVME_IDENTIFY_LEN`] bytes), to controller device `fd`.
    ///
    /// # Safety
    ///
    /// For every push of the returned operation (or of a copy of it), `buf`
    /// must stay valid, and must be neither read nor written by the
    /// program, until that operation's CQE has been reaped: the device
    /// writes it while the command runs.
    pub unsafe fn identify(
        fd: impl Into<Target>,
        cns: u8,
        nsid: u32,
        buf: &mut [u8; NVME_IDENTIFY_LEN as usize],
    ) -> Self {
        let cmd = sys::nvme_uring_cmd {
            opcode: NVME_ADMIN_IDENTIFY,
            nsid,
            addr: buf.as_mut_ptr() as u64,
            data_len: NVME_IDENTIFY_LEN,
            cdw10: u32::from(cns),
            ..Default::default()
        };
        // SAFETY: an Identify transfers exactly NVME_IDENTIFY_LEN bytes
        // into `buf`, under the caller's obligation stated above.
        unsafe { Self::admin(fd, cmd) }
    }

    /// Transfers the data through registered buffer `buf_index`
    /// (`IORING_URING_CMD_FIXED`): the command's address range must lie
    /// inside it.
    pub fn fixed(mut self, buf_index: u16) -> Self {
        self.buf_index = Some(buf_index);
        self
    }

    /// The command as it will be sent.
    pub fn command(&self) -> &sys::nvme_uring_cmd {
        &self.cmd
    }
}

fn rw(opcode: u8, nsid: u32, slba: u64, blocks: u32, addr: u64, len: usize) -> Result<sys::nvme_uring_cmd> {
    if blocks == 0 || blocks > 1 << 16 {
        return Err(Error::InvalidArgument(format!("NVMe read/write of {blocks} blocks: need 1 to 65536")));
    }
    let Ok(len) = u32::try_from(len) else {
        return Err(Error::InvalidArgument(format!("NVMe read/write of {len} bytes exceeds u32::MAX")));
    };
    Ok(sys::nvme_uring_cmd {
        opcode,
        nsid,
        addr,
        data_len: len,
        // Starting LBA in CDW10 (low) and CDW11 (high); the 0-based block
        // count in CDW12 bits 0–15.
        cdw10: slba as u32,
        cdw11: (slba >> 32) as u32,
        cdw12: blocks - 1,
        ..Default::default()
    })
}

impl Prepare128 for NvmeCmd {
    const CODE: u8 = sys::IORING_OP_URING_CMD as u8;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        if features.sqe_size() != 128 {
            return Err(Error::unsupported(
                "NVMe passthrough on a ring of 64-byte SQEs (the command takes 72 bytes)",
                Some("create the ring with Options::sqe128(true)"),
            ));
        }
        if features.cqe_size() == CqeSize::Normal {
            return Err(Error::unsupported(
                "NVMe passthrough on a ring of 16-byte CQEs (the driver posts its result in a 32-byte CQE)",
                Some("create the ring with Options::cqe_size(CqeSize::Big)"),
            ));
        }
        Ok(())
    }

    fn prepare(self, sqe: &mut Sqe128) {
        let NvmeCmd { fd, cmd_op, cmd, buf_index } = self;
        *sqe = Sqe128::default();
        sqe.sqe = Sqe::new(Self::CODE);
        fd.apply(&mut sqe.sqe);
        sqe.sqe.set_cmd_op(cmd_op);
        if let Some(i) = buf_index {
            sqe.sqe.set_op_flags(sys::IORING_URING_CMD_FIXED);
            sqe.sqe.set_buf_index(i);
        }
        // The command area starts 48 bytes into the SQE (`sqe->cmd`) and
        // runs into the second half: 16 bytes there, 56 in `ext`.
        let size = size_of::<sys::nvme_uring_cmd>();
        let mut bytes = [0u8; 80];
        // SAFETY: nvme_uring_cmd is plain integers (no padding: 72 bytes,
        // every field naturally aligned), so its bytes are initialized.
        let src = unsafe { std::slice::from_raw_parts((&cmd as *const sys::nvme_uring_cmd).cast::<u8>(), size) };
        bytes[..size].copy_from_slice(src);
        let cmd_ptr = sys::io_uring_sqe::cmd_ptr(&mut *sqe.sqe);
        // SAFETY: `cmd_ptr` points at the 16 command bytes at the end of the
        // first 64-byte half.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), cmd_ptr, 16) };
        sqe.ext.copy_from_slice(&bytes[16..]);
    }
}

// SAFETY: every constructor that names memory (`io`, `admin`, `read`,
// `write`, `identify`) is `unsafe` and takes the obligation for every push
// of the command and its copies; `flush` names none. `fixed` only makes
// the kernel take the same range through a registered buffer, which it
// checks lies inside that buffer (`-EFAULT` otherwise).
unsafe impl crate::cmd::SafeOp128 for NvmeCmd {}

/// An NVMe passthrough command's completion: the 32-byte CQE decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NvmeCompletion {
    /// The CQE's `res`: 0 for success, a negative errno when the kernel
    /// failed the request, or the NVMe status field (positive) when the
    /// device did.
    pub res: i32,
    /// The completion's command-specific result (DW0, and DW1 for 64-bit
    /// results): the second half's first word.
    pub result: u64,
}

impl NvmeCompletion {
    /// Decodes a 32-byte CQE; `None` for a 16-byte one.
    pub fn of(cqe: &Cqe<'_>) -> Option<Self> {
        Some(NvmeCompletion { res: cqe.res(), result: cqe.big()?[0] })
    }

    /// Whether the command succeeded.
    pub fn is_ok(&self) -> bool {
        self.res == 0
    }

    /// The errno, when the kernel failed the request.
    pub fn errno(&self) -> Option<i32> {
        (self.res < 0).then_some(-self.res)
    }

    /// The NVMe status code (SC, bits 0–7 of the status field), when the
    /// device failed the command.
    pub fn status_code(&self) -> Option<u8> {
        (self.res > 0).then_some(self.res as u8)
    }

    /// The NVMe status code type (SCT, bits 8–10: 0 generic, 1 command
    /// specific, 2 media and data integrity errors, …).
    pub fn status_code_type(&self) -> Option<u8> {
        (self.res > 0).then_some(((self.res >> 8) & 0x7) as u8)
    }

    /// Whether the device said retrying cannot succeed (DNR, bit 14).
    pub fn do_not_retry(&self) -> bool {
        self.res > 0 && self.res & (1 << 14) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_laid_out_as_the_kernel_reads_them() {
        let mut buf = vec![0u8; 4096];
        // SAFETY: prepared only, never pushed.
        let c = unsafe { NvmeCmd::read(3, 1, 0x1_0000_0002, 8, &mut buf) }.unwrap();
        let mut sqe = Sqe128::default();
        c.fixed(5).prepare(&mut sqe);
        assert_eq!(sqe.sqe.opcode, sys::IORING_OP_URING_CMD as u8);
        assert_eq!(sqe.sqe.cmd_op(), sys::NVME_URING_CMD_IO);
        assert_eq!(sqe.sqe.buf_index(), 5);
        assert_eq!(sqe.sqe.op_flags(), sys::IORING_URING_CMD_FIXED);
        // The command area: opcode at byte 48 of the SQE, CDW10 at 48 + 40.
        // SAFETY: Sqe128 is 128 plain bytes.
        let raw: [u8; 128] = unsafe { std::mem::transmute(sqe) };
        assert_eq!(raw[48], NVME_CMD_READ);
        assert_eq!(u32::from_ne_bytes(raw[52..56].try_into().unwrap()), 1, "nsid");
        assert_eq!(u64::from_ne_bytes(raw[72..80].try_into().unwrap()), buf.as_ptr() as u64, "addr");
        assert_eq!(u32::from_ne_bytes(raw[84..88].try_into().unwrap()), 4096, "data_len");
        assert_eq!(u32::from_ne_bytes(raw[88..92].try_into().unwrap()), 2, "cdw10");
        assert_eq!(u32::from_ne_bytes(raw[92..96].try_into().unwrap()), 1, "cdw11");
        assert_eq!(u32::from_ne_bytes(raw[96..100].try_into().unwrap()), 7, "cdw12: 0-based count");
        // SAFETY: refused, so never pushed.
        assert!(unsafe { NvmeCmd::read(3, 1, 0, 0, &mut []) }.is_err());
        // SAFETY: as above.
        assert!(unsafe { NvmeCmd::write(3, 1, 0, 65537, &[]) }.is_err());
    }

    #[test]
    fn status_decodes() {
        let c = NvmeCompletion { res: 0x4080, result: 0 };
        assert_eq!(
            (c.status_code(), c.status_code_type(), c.do_not_retry(), c.errno()),
            (Some(0x80), Some(0), true, None)
        );
        let e = NvmeCompletion { res: -libc::EOPNOTSUPP, result: 0 };
        assert_eq!((e.errno(), e.status_code()), (Some(libc::EOPNOTSUPP), None));
        assert!(NvmeCompletion { res: 0, result: 7 }.is_ok());
    }
}
