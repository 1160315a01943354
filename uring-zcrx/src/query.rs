//! What the running kernel supports for zero-copy receive, asked with
//! `IORING_REGISTER_QUERY` (no ring needed) where the kernel has it.
//!
//! Kernels that know `RECV_ZC` but not the query (6.15 to 6.18) support
//! exactly the first version: one user-memory area on a device queue, no
//! `ZCRX_REG_NODEV`, no `ZCRX_REG_IMPORT`, no `IORING_REGISTER_ZCRX_CTRL`.

use std::ffi::c_void;
use std::io;

use uring_core::{CqeSize, Features, SetupFlags, sys};

use crate::error::{Error, Result};

/// The kernel's answer to `IO_URING_QUERY_ZCRX`
/// (`struct io_uring_query_zcrx`), and to `IO_URING_QUERY_ZCRX_EVENT`
/// when it knows that one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ZcrxQuery {
    /// Supported `ZCRX_REG_*` flags.
    pub register_flags: u64,
    /// Supported `IORING_ZCRX_AREA_*` flags.
    pub area_flags: u64,
    /// How many `ZCRX_CTRL_*` opcodes `IORING_REGISTER_ZCRX_CTRL` knows.
    pub nr_ctrl_opcodes: u32,
    /// `ZCRX_FEATURE_*` bits.
    pub features: u32,
    /// Size of the refill ring's header (head and tail).
    pub rq_hdr_size: u32,
    /// Alignment of the refill ring's entries after the header.
    pub rq_hdr_alignment: u32,
    /// Supported `ZCRX_EVENT_*` types (bit per type), 0 if the kernel does
    /// not know `IO_URING_QUERY_ZCRX_EVENT`.
    pub event_types: u32,
    /// Size of `struct zcrx_stats`, 0 if unknown.
    pub stats_size: u32,
}

/// What this kernel can do for zero-copy receive: the opcode, the query,
/// and each optional piece. Built by [`ZcrxSupport::probe`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZcrxSupport {
    release: String,
    recv_zc: bool,
    query: Option<ZcrxQuery>,
    query_errno: Option<i32>,
}

impl ZcrxSupport {
    /// Asks the running kernel. `features` (any ring's) supplies the
    /// opcode probe; the query itself needs no ring.
    pub fn probe(features: &Features) -> Self {
        let recv_zc = features.supports(sys::IORING_OP_RECV_ZC as u8);
        let (query, query_errno) = match query_zcrx() {
            Ok(q) => (q, None),
            Err(e) => (None, e.raw_os_error()),
        };
        ZcrxSupport { release: features.kernel_release().to_owned(), recv_zc, query, query_errno }
    }

    /// Support as for an instance no kernel knows (benchmarks).
    pub(crate) fn detached() -> Self {
        ZcrxSupport { release: uring_core::kernel_release(), recv_zc: true, query: None, query_errno: None }
    }

    /// `uname -r` of the kernel asked.
    pub fn kernel_release(&self) -> &str {
        &self.release
    }

    /// Whether the kernel knows `IORING_OP_RECV_ZC` (6.15+).
    pub fn recv_zc(&self) -> bool {
        self.recv_zc
    }

    /// The query's answer, `None` if the kernel has no
    /// `IORING_REGISTER_QUERY` or no `IO_URING_QUERY_ZCRX`.
    pub fn query(&self) -> Option<&ZcrxQuery> {
        self.query.as_ref()
    }

    /// Why there is no query answer: the errno of `IORING_REGISTER_QUERY`
    /// itself (`EINVAL`: the kernel does not know the register opcode), or
    /// `EOPNOTSUPP` when it knows the query but not its zero-copy receive
    /// part. `None` when the query answered.
    pub fn query_errno(&self) -> Option<i32> {
        self.query_errno
    }

    /// Whether `ZCRX_REG_NODEV` (an instance without a device, all data
    /// copied) is known.
    pub fn nodev(&self) -> bool {
        self.query.is_some_and(|q| q.register_flags & u64::from(sys::ZCRX_REG_NODEV) != 0)
    }

    /// Whether `ZCRX_REG_IMPORT` is known.
    pub fn import(&self) -> bool {
        self.query.is_some_and(|q| q.register_flags & u64::from(sys::ZCRX_REG_IMPORT) != 0)
    }

    /// Whether `IORING_REGISTER_ZCRX_CTRL` knows `op` (a `ZCRX_CTRL_*`).
    pub fn ctrl(&self, op: u32) -> bool {
        self.query.is_some_and(|q| op < q.nr_ctrl_opcodes)
    }

    /// Whether the refill ring can be flushed (`ZCRX_CTRL_FLUSH_RQ`).
    pub fn flush(&self) -> bool {
        self.ctrl(sys::ZCRX_CTRL_FLUSH_RQ)
    }

    /// Whether an instance can be exported (`ZCRX_CTRL_EXPORT`) and
    /// imported (`ZCRX_REG_IMPORT`).
    pub fn export(&self) -> bool {
        self.ctrl(sys::ZCRX_CTRL_EXPORT) && self.import()
    }

    /// Whether a receive buffer size other than the page size can be asked
    /// for (`ZCRX_FEATURE_RX_PAGE_SIZE`).
    pub fn rx_buf_len(&self) -> bool {
        self.query.is_some_and(|q| q.features & sys::ZCRX_FEATURE_RX_PAGE_SIZE != 0)
    }

    /// Whether the kernel keeps copy-fallback statistics in the refill
    /// region (`ZCRX_FEATURE_EVENT` with `ZCRX_EVENT_DESC_FLAG_STATS`).
    pub fn stats(&self) -> bool {
        self.query.is_some_and(|q| q.features & sys::ZCRX_FEATURE_EVENT != 0 && q.stats_size >= 16)
    }

    /// Whether a dma-buf area (`IORING_ZCRX_AREA_DMABUF`) is known.
    pub fn dmabuf(&self) -> bool {
        self.query.is_some_and(|q| q.area_flags & u64::from(sys::IORING_ZCRX_AREA_DMABUF) != 0)
    }

    /// The refill ring header's size and alignment: from the query, or the
    /// first version's (`struct io_uring`, cache-line aligned).
    pub(crate) fn rq_header(&self) -> (usize, usize) {
        match self.query {
            Some(q) if q.rq_hdr_size > 0 => (q.rq_hdr_size as usize, (q.rq_hdr_alignment as usize).max(8)),
            _ => (8, 64),
        }
    }

    /// Fails with a clear error unless `RECV_ZC` is known.
    pub(crate) fn require_recv_zc(&self) -> Result<()> {
        if self.recv_zc {
            Ok(())
        } else {
            Err(Error::unsupported("IORING_OP_RECV_ZC", "zero-copy receive arrived in Linux 6.15"))
        }
    }

    /// Fails with a clear error unless `ZCRX_REG_NODEV` is known.
    pub(crate) fn require_nodev(&self) -> Result<()> {
        if self.nodev() {
            return Ok(());
        }
        Err(Error::unsupported(
            "ZCRX_REG_NODEV",
            match self.query_errno {
                Some(libc::EINVAL) => "the kernel has no IORING_REGISTER_QUERY, so it predates ZCRX_REG_NODEV \
                (Linux 7.2 has both); register on a device queue instead"
                    .to_owned(),
                Some(e) => format!(
                    "IORING_REGISTER_QUERY could not tell ({}); ZCRX_REG_NODEV needs Linux 7.2 or later",
                    io::Error::from_raw_os_error(e)
                ),
                None => "the kernel's query lists no ZCRX_REG_NODEV (Linux 7.2 has it); register on a device queue \
                instead"
                    .to_owned(),
            },
        ))
    }

    /// Fails with a clear error unless control opcode `op` is known.
    pub(crate) fn require_ctrl(&self, op: u32, what: &'static str) -> Result<()> {
        if self.ctrl(op) {
            Ok(())
        } else {
            Err(Error::unsupported(
                what,
                "the kernel has no IORING_REGISTER_ZCRX_CTRL or does not know this control opcode (see \
                 ZcrxSupport::query)",
            ))
        }
    }
}

/// Checks that a ring was set up the way zero-copy receive needs:
/// `DEFER_TASKRUN` and 32-byte or mixed CQEs.
pub(crate) fn check_ring(features: &Features) -> Result<()> {
    if !features.setup_flags().contains(SetupFlags::DEFER_TASKRUN) {
        return Err(Error::RingSetup(
            "IORING_SETUP_DEFER_TASKRUN (the default single-issuer Options; not SQPOLL, not Issuer::Multi)",
        ));
    }
    if features.cqe_size() == CqeSize::Normal {
        return Err(Error::RingSetup("32-byte or mixed CQEs (Options::cqe_size(CqeSize::Big) or CqeSize::Mixed)"));
    }
    Ok(())
}

/// `IORING_REGISTER_QUERY` for the zero-copy receive entries.
fn query_zcrx() -> io::Result<Option<ZcrxQuery>> {
    let mut zcrx = sys::io_uring_query_zcrx::default();
    let mut event = sys::io_uring_query_zcrx_event::default();
    let mut second = sys::io_uring_query_hdr {
        query_data: (&raw mut event) as u64,
        query_op: sys::IO_URING_QUERY_ZCRX_EVENT,
        size: size_of::<sys::io_uring_query_zcrx_event>() as u32,
        ..Default::default()
    };
    let mut first = sys::io_uring_query_hdr {
        next_entry: (&raw mut second) as u64,
        query_data: (&raw mut zcrx) as u64,
        query_op: sys::IO_URING_QUERY_ZCRX,
        size: size_of::<sys::io_uring_query_zcrx>() as u32,
        ..Default::default()
    };
    // SAFETY: a blind query (fd -1, no ring) reads the two headers chained
    // through `next_entry` and writes each entry's result and data into
    // the structures they name, all locals that outlive the call; the
    // kernel keeps no pointer afterwards.
    unsafe { sys::io_uring_register(-1, sys::IORING_REGISTER_QUERY, (&raw mut first).cast::<c_void>(), 0) }?;
    if first.result < 0 {
        return Err(io::Error::from_raw_os_error(-first.result));
    }
    let mut q = ZcrxQuery {
        register_flags: zcrx.register_flags,
        area_flags: zcrx.area_flags,
        nr_ctrl_opcodes: zcrx.nr_ctrl_opcodes,
        features: zcrx.features,
        rq_hdr_size: zcrx.rq_hdr_size,
        rq_hdr_alignment: zcrx.rq_hdr_alignment,
        ..Default::default()
    };
    if second.result == 0 {
        q.event_types = event.event_flags;
        q.stats_size = event.stats_size;
    }
    Ok(Some(q))
}
