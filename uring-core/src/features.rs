//! What the running kernel and this ring support: [`Features`], decoded
//! once at ring creation from the setup parameters and the opcode probe.

use std::ffi::CStr;
use std::fmt;
use std::os::fd::{FromRawFd, OwnedFd};

use uring_sys as sys;

use crate::error::{Error, Result};
use crate::options::{CqeSize, SetupFlags, probe_params, setup_flag_name};

bitflags::bitflags! {
    /// `IORING_FEAT_*` bits the kernel reported at setup. Unknown bits are kept.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct FeatureFlags: u32 {
        /// `IORING_FEAT_SINGLE_MMAP`
        const SINGLE_MMAP = sys::IORING_FEAT_SINGLE_MMAP;
        /// `IORING_FEAT_NODROP`: CQ overflow is buffered, never dropped.
        const NODROP = sys::IORING_FEAT_NODROP;
        /// `IORING_FEAT_SUBMIT_STABLE`
        const SUBMIT_STABLE = sys::IORING_FEAT_SUBMIT_STABLE;
        /// `IORING_FEAT_RW_CUR_POS`
        const RW_CUR_POS = sys::IORING_FEAT_RW_CUR_POS;
        /// `IORING_FEAT_CUR_PERSONALITY`
        const CUR_PERSONALITY = sys::IORING_FEAT_CUR_PERSONALITY;
        /// `IORING_FEAT_FAST_POLL`
        const FAST_POLL = sys::IORING_FEAT_FAST_POLL;
        /// `IORING_FEAT_POLL_32BITS`
        const POLL_32BITS = sys::IORING_FEAT_POLL_32BITS;
        /// `IORING_FEAT_SQPOLL_NONFIXED`
        const SQPOLL_NONFIXED = sys::IORING_FEAT_SQPOLL_NONFIXED;
        /// `IORING_FEAT_EXT_ARG`
        const EXT_ARG = sys::IORING_FEAT_EXT_ARG;
        /// `IORING_FEAT_NATIVE_WORKERS`
        const NATIVE_WORKERS = sys::IORING_FEAT_NATIVE_WORKERS;
        /// `IORING_FEAT_RSRC_TAGS`
        const RSRC_TAGS = sys::IORING_FEAT_RSRC_TAGS;
        /// `IORING_FEAT_CQE_SKIP`
        const CQE_SKIP = sys::IORING_FEAT_CQE_SKIP;
        /// `IORING_FEAT_LINKED_FILE`
        const LINKED_FILE = sys::IORING_FEAT_LINKED_FILE;
        /// `IORING_FEAT_REG_REG_RING`
        const REG_REG_RING = sys::IORING_FEAT_REG_REG_RING;
        /// `IORING_FEAT_RECVSEND_BUNDLE`
        const RECVSEND_BUNDLE = sys::IORING_FEAT_RECVSEND_BUNDLE;
        /// `IORING_FEAT_MIN_TIMEOUT`
        const MIN_TIMEOUT = sys::IORING_FEAT_MIN_TIMEOUT;
        /// `IORING_FEAT_RW_ATTR`
        const RW_ATTR = sys::IORING_FEAT_RW_ATTR;
        /// `IORING_FEAT_NO_IOWAIT`
        const NO_IOWAIT = sys::IORING_FEAT_NO_IOWAIT;
        const _ = !0;
    }
}

macro_rules! opcode_names {
    ($($name:ident),* $(,)?) => {
        /// Every opcode the bindings know, with its C name, in opcode order.
        pub const OPCODES: &[(u8, &str)] = &[$((sys::$name as u8, stringify!($name))),*];
    };
}

opcode_names!(
    IORING_OP_NOP,
    IORING_OP_READV,
    IORING_OP_WRITEV,
    IORING_OP_FSYNC,
    IORING_OP_READ_FIXED,
    IORING_OP_WRITE_FIXED,
    IORING_OP_POLL_ADD,
    IORING_OP_POLL_REMOVE,
    IORING_OP_SYNC_FILE_RANGE,
    IORING_OP_SENDMSG,
    IORING_OP_RECVMSG,
    IORING_OP_TIMEOUT,
    IORING_OP_TIMEOUT_REMOVE,
    IORING_OP_ACCEPT,
    IORING_OP_ASYNC_CANCEL,
    IORING_OP_LINK_TIMEOUT,
    IORING_OP_CONNECT,
    IORING_OP_FALLOCATE,
    IORING_OP_OPENAT,
    IORING_OP_CLOSE,
    IORING_OP_FILES_UPDATE,
    IORING_OP_STATX,
    IORING_OP_READ,
    IORING_OP_WRITE,
    IORING_OP_FADVISE,
    IORING_OP_MADVISE,
    IORING_OP_SEND,
    IORING_OP_RECV,
    IORING_OP_OPENAT2,
    IORING_OP_EPOLL_CTL,
    IORING_OP_SPLICE,
    IORING_OP_PROVIDE_BUFFERS,
    IORING_OP_REMOVE_BUFFERS,
    IORING_OP_TEE,
    IORING_OP_SHUTDOWN,
    IORING_OP_RENAMEAT,
    IORING_OP_UNLINKAT,
    IORING_OP_MKDIRAT,
    IORING_OP_SYMLINKAT,
    IORING_OP_LINKAT,
    IORING_OP_MSG_RING,
    IORING_OP_FSETXATTR,
    IORING_OP_SETXATTR,
    IORING_OP_FGETXATTR,
    IORING_OP_GETXATTR,
    IORING_OP_SOCKET,
    IORING_OP_URING_CMD,
    IORING_OP_SEND_ZC,
    IORING_OP_SENDMSG_ZC,
    IORING_OP_READ_MULTISHOT,
    IORING_OP_WAITID,
    IORING_OP_FUTEX_WAIT,
    IORING_OP_FUTEX_WAKE,
    IORING_OP_FUTEX_WAITV,
    IORING_OP_FIXED_FD_INSTALL,
    IORING_OP_FTRUNCATE,
    IORING_OP_BIND,
    IORING_OP_LISTEN,
    IORING_OP_RECV_ZC,
    IORING_OP_EPOLL_WAIT,
    IORING_OP_READV_FIXED,
    IORING_OP_WRITEV_FIXED,
    IORING_OP_PIPE,
    IORING_OP_NOP128,
    IORING_OP_URING_CMD128,
);

/// The C name of an opcode (`"IORING_OP_READ"`), or `None` if this build
/// does not know it.
pub fn opcode_name(op: u8) -> Option<&'static str> {
    OPCODES.get(op as usize).filter(|(o, _)| *o == op).map(|(_, n)| *n)
}

/// `uname -r`.
pub fn kernel_release() -> String {
    // SAFETY: utsname is plain data; zeroed is a valid initial value.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid, writable utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return "unknown".into();
    }
    // SAFETY: uname NUL-terminates `release`.
    unsafe { CStr::from_ptr(u.release.as_ptr()) }.to_string_lossy().into_owned()
}

/// `(major, minor)` of a release string such as `6.18.44+deb13-cloud-amd64`.
pub fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// The kernel baseline this library is written for.
pub const BASELINE: (u32, u32) = (6, 18);

/// What the running kernel and one ring support, decoded once at
/// [`Ring::new`](crate::Ring::new). The layers above consult it before
/// submitting, so an unsupported opcode or feature becomes an
/// [`Error::Unsupported`] naming it, not an `EINVAL` from the kernel.
#[derive(Clone)]
pub struct Features {
    release: String,
    sq_entries: u32,
    cq_entries: u32,
    setup: SetupFlags,
    features: FeatureFlags,
    last_op: u8,
    ops: [u64; 4],
}

impl Features {
    pub(crate) fn new(params: &sys::io_uring_params, probe: &[sys::io_uring_probe_op], last_op: u8) -> Self {
        let mut ops = [0u64; 4];
        for p in probe {
            if u32::from(p.flags) & sys::IO_URING_OP_SUPPORTED != 0 {
                ops[usize::from(p.op) / 64] |= 1 << (p.op % 64);
            }
        }
        Features {
            release: kernel_release(),
            sq_entries: params.sq_entries,
            cq_entries: params.cq_entries,
            setup: SetupFlags::from_bits_retain(params.flags),
            features: FeatureFlags::from_bits_retain(params.features),
            last_op,
            ops,
        }
    }

    pub(crate) fn set_entries(&mut self, sq: u32, cq: u32) {
        self.sq_entries = sq;
        self.cq_entries = cq;
    }

    /// `uname -r` of the running kernel.
    pub fn kernel_release(&self) -> &str {
        &self.release
    }
    /// `(major, minor)` of the running kernel.
    pub fn kernel_version(&self) -> Option<(u32, u32)> {
        parse_release(&self.release)
    }
    /// True when the kernel is at least the 6.18 baseline.
    pub fn meets_baseline(&self) -> bool {
        self.kernel_version().is_some_and(|v| v >= BASELINE)
    }
    /// SQ entries the kernel gave this ring.
    pub fn sq_entries(&self) -> u32 {
        self.sq_entries
    }
    /// CQ entries the kernel gave this ring.
    pub fn cq_entries(&self) -> u32 {
        self.cq_entries
    }
    /// The setup flags the ring was created with.
    pub fn setup_flags(&self) -> SetupFlags {
        self.setup
    }
    /// The `IORING_FEAT_*` bits.
    pub fn feature_flags(&self) -> FeatureFlags {
        self.features
    }
    /// True if every bit of `f` was reported.
    pub fn has(&self, f: FeatureFlags) -> bool {
        self.features.contains(f)
    }
    /// SQE size in bytes (64 or 128).
    pub fn sqe_size(&self) -> usize {
        if self.setup.contains(SetupFlags::SQE128) { 128 } else { 64 }
    }
    /// The CQE size.
    pub fn cqe_size(&self) -> CqeSize {
        if self.setup.contains(SetupFlags::CQE32) {
            CqeSize::Big
        } else if self.setup.contains(SetupFlags::CQE_MIXED) {
            CqeSize::Mixed
        } else {
            CqeSize::Normal
        }
    }
    /// The highest opcode the kernel knows.
    pub fn last_op(&self) -> u8 {
        self.last_op
    }
    /// True if the kernel supports opcode `op`.
    #[inline]
    pub fn supports(&self, op: u8) -> bool {
        self.ops[usize::from(op) / 64] & (1 << (op % 64)) != 0
    }
    /// `Ok` if opcode `op` is supported, else [`Error::Unsupported`] naming it.
    #[inline]
    pub fn require(&self, op: u8) -> Result<()> {
        if self.supports(op) { Ok(()) } else { Err(self.unsupported_op(op)) }
    }
    #[cold]
    fn unsupported_op(&self, op: u8) -> Error {
        let name = opcode_name(op).map(str::to_owned).unwrap_or_else(|| format!("opcode {op}"));
        Error::Unsupported { what: name, release: self.release.clone(), hint: None }
    }
    /// Every opcode this build knows, with whether the kernel supports it.
    pub fn opcodes(&self) -> impl Iterator<Item = (u8, &'static str, bool)> + '_ {
        OPCODES.iter().map(|&(op, name)| (op, name, self.supports(op)))
    }
}

impl fmt::Debug for Features {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Features")
            .field("release", &self.release)
            .field("sq_entries", &self.sq_entries)
            .field("cq_entries", &self.cq_entries)
            .field("setup", &self.setup)
            .field("features", &self.features)
            .field("last_op", &self.last_op)
            .finish_non_exhaustive()
    }
}

/// Reads the opcode probe of ring `fd`: `(last_op, entries)`.
pub(crate) fn read_probe(fd: i32) -> Result<(u8, Vec<sys::io_uring_probe_op>)> {
    const OPS: usize = 256;
    let words = (size_of::<sys::io_uring_probe>() + OPS * size_of::<sys::io_uring_probe_op>()).div_ceil(8);
    let mut buf = vec![0u64; words];
    // SAFETY: IORING_REGISTER_PROBE with nr_args = OPS writes a header and at
    // most OPS entries into `buf`, which is zeroed, 8-byte aligned, large
    // enough, and outlives the call.
    unsafe { sys::io_uring_register(fd, sys::IORING_REGISTER_PROBE, buf.as_mut_ptr().cast(), OPS as u32) }
        .map_err(|e| Error::io("IORING_REGISTER_PROBE", e))?;
    let header = buf.as_ptr().cast::<sys::io_uring_probe>();
    // SAFETY: the kernel filled the header and `ops_len` (<= OPS) entries.
    unsafe {
        let len = usize::from((*header).ops_len).min(OPS);
        Ok(((*header).last_op, std::slice::from_raw_parts((*header).ops.as_ptr(), len).to_vec()))
    }
}

/// One setup flag and whether the running kernel accepts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetupFlagSupport {
    /// The flag bit.
    pub flag: u32,
    /// Its C name.
    pub name: &'static str,
    /// `Some(true)` accepted, `Some(false)` rejected (`EINVAL`), `None` not
    /// probed in isolation (needs a second ring or user memory).
    pub supported: Option<bool>,
}

/// Whether the kernel accepts one setup flag (with the partner flag or
/// argument it needs), by creating and closing a 4-entry ring.
/// `None` for flags that cannot be probed alone.
pub fn probe_setup_flag(flag: u32) -> Option<bool> {
    let mut p = probe_params(flag)?;
    // SAFETY: `p` is a valid io_uring_params; no probed flag hands the kernel
    // memory of ours (NO_MMAP is excluded by probe_params).
    match unsafe { sys::io_uring_setup(4, &mut p) } {
        Ok(fd) => {
            // SAFETY: the kernel just returned this fd; we own it.
            drop(unsafe { OwnedFd::from_raw_fd(fd) });
            Some(true)
        }
        Err(_) => Some(false),
    }
}

/// Every setup flag the bindings know, probed against the running kernel.
pub fn probe_setup_flags() -> Vec<SetupFlagSupport> {
    (0..21)
        .map(|b| 1u32 << b)
        .map(|flag| SetupFlagSupport { flag, name: setup_flag_name(flag), supported: probe_setup_flag(flag) })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opcode_table_is_indexed_by_opcode() {
        for (i, (op, name)) in OPCODES.iter().enumerate() {
            assert_eq!(usize::from(*op), i, "{name}");
        }
        assert_eq!(opcode_name(sys::IORING_OP_READ as u8), Some("IORING_OP_READ"));
        assert_eq!(opcode_name(200), None);
    }

    #[test]
    fn releases_parse() {
        assert_eq!(parse_release("6.18.44+deb13-cloud-amd64"), Some((6, 18)));
        assert_eq!(parse_release("7.3.4-1"), Some((7, 3)));
        assert_eq!(parse_release("garbage"), None);
    }
}
