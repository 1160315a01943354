//! What the running kernel's io_uring knows, asked without a ring:
//! `IORING_REGISTER_QUERY` (since Linux 6.18; liburing
//! `io_uring_register_query`).
//!
//! A query is a chain of `struct io_uring_query_hdr`, each naming a query
//! opcode (`IO_URING_QUERY_*`) and a buffer of `size` bytes. The kernel
//! walks the chain during the call, fills each buffer with as much of its
//! answer as fits (zeroing the rest of a buffer larger than its answer),
//! and writes back the size it filled and a per-entry `result`: 0, or a
//! negative errno (`-EOPNOTSUPP` for a query opcode it does not know).
//! The call is blind (ring fd -1) and keeps no pointer after it returns,
//! so every function here is safe.
//!
//! - [`opcodes`]: `IO_URING_QUERY_OPCODES` ([`OpcodeQuery`]): how many
//!   request, register and query opcodes the kernel knows, and every
//!   feature, setup, enter and SQE flag it accepts.
//! - [`ring_header`]: `IO_URING_QUERY_SCQ` ([`RingHeaderQuery`]): the size
//!   and alignment of the SQ/CQ rings' header.
//! - [`raw`]: any query opcode into a byte buffer, for the entries this
//!   crate does not decode (`uring-zcrx` decodes `IO_URING_QUERY_ZCRX`).

use std::ffi::c_void;
use std::io;

use uring_sys as sys;

use crate::error::{Error, Result};
use crate::features::FeatureFlags;
use crate::options::SetupFlags;
use crate::sqe::SqeFlags;

/// The kernel's answer to `IO_URING_QUERY_OPCODES`
/// (`struct io_uring_query_opcode`), from [`opcodes`]. Since Linux 6.18.
///
/// The opcode counts are one past the highest opcode the kernel knows
/// (`IORING_OP_LAST`, `IORING_REGISTER_LAST`); an opcode below the count
/// may still be unsupported by this build of the kernel (the opcode probe,
/// [`Features::supports`](crate::Features::supports), says which). The
/// flag masks keep every bit the kernel reported, known to this crate or
/// not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpcodeQuery {
    /// `nr_request_opcodes`: `IORING_OP_LAST`.
    pub request_opcodes: u32,
    /// `nr_register_opcodes`: `IORING_REGISTER_LAST`.
    pub register_opcodes: u32,
    /// `feature_flags`: every `IORING_FEAT_*` bit a ring set up now gets.
    pub feature_flags: u64,
    /// `ring_setup_flags`: every `IORING_SETUP_*` flag the kernel knows.
    pub setup_flags: u64,
    /// `enter_flags`: every `IORING_ENTER_*` flag the kernel knows.
    pub enter_flags: u64,
    /// `sqe_flags`: every `IOSQE_*` flag the kernel accepts.
    pub sqe_flags: u64,
    /// `nr_query_opcodes`: how many `IO_URING_QUERY_*` opcodes the kernel
    /// knows (1 on 6.18, which answers only `IO_URING_QUERY_OPCODES`; 3 on
    /// 7.0; 4 on 7.2 and 7.3); 0 if a kernel's answer were shorter than
    /// this structure.
    pub query_opcodes: u32,
}

impl OpcodeQuery {
    /// Whether request opcode `op` (`IORING_OP_*`) is within the kernel's
    /// range.
    pub fn knows_op(&self, op: u8) -> bool {
        u32::from(op) < self.request_opcodes
    }
    /// Whether register opcode `op` (`IORING_REGISTER_*`) is within the
    /// kernel's range.
    pub fn knows_register_op(&self, op: u32) -> bool {
        op < self.register_opcodes
    }
    /// Whether query opcode `op` (`IO_URING_QUERY_*`) is within the
    /// kernel's range (false where the kernel does not report the count).
    pub fn knows_query_op(&self, op: u32) -> bool {
        op < self.query_opcodes
    }
    /// The `IORING_FEAT_*` bits, unknown ones kept.
    pub fn features(&self) -> FeatureFlags {
        FeatureFlags::from_bits_retain(self.feature_flags as u32)
    }
    /// The `IORING_SETUP_*` flags, unknown ones kept.
    pub fn setup(&self) -> SetupFlags {
        SetupFlags::from_bits_retain(self.setup_flags as u32)
    }
    /// The `IOSQE_*` flags, unknown ones kept.
    pub fn sqe(&self) -> SqeFlags {
        SqeFlags::from_bits_retain(self.sqe_flags as u8)
    }
}

/// The kernel's answer to `IO_URING_QUERY_SCQ` (`struct io_uring_query_scq`),
/// from [`ring_header`]: the header the SQ and CQ rings share at the start
/// of the rings' memory (heads, tails, masks, flags), which a caller that
/// lays out `IORING_SETUP_NO_MMAP` memory itself must leave room for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RingHeaderQuery {
    /// `hdr_size`: the header's size in bytes.
    pub size: u64,
    /// `hdr_alignment`: the alignment the header needs.
    pub alignment: u64,
}

/// What the kernel said about one query entry, from [`raw`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryAnswer {
    /// The entry's `result`: 0, or a negative errno (`-EOPNOTSUPP`: the
    /// kernel does not know the query opcode).
    pub result: i32,
    /// How many bytes of the buffer hold the kernel's answer (the rest of
    /// the buffer was zeroed); 0 when `result` is negative.
    pub size: u32,
}

/// Asks the kernel one query entry: a blind
/// `io_uring_register(-1, IORING_REGISTER_QUERY, &hdr, 0)` with `hdr`
/// naming opcode `op` and `data`, since Linux 6.18 (liburing
/// `io_uring_register_query`). The kernel reads and writes at most
/// `data.len()` bytes of `data`, during the call only. `data` is the
/// opcode's structure as bytes (for example `io_uring_query_zcrx`), its
/// input zeroed.
///
/// # Errors
///
/// [`Error::InvalidArgument`] for an empty buffer or one over 4 GiB;
/// [`Error::Unsupported`] naming `IORING_REGISTER_QUERY` where the kernel
/// does not know the register opcode (`EINVAL`, before 6.18);
/// [`Error::Io`] for another errno of the call itself (`EPERM` under a
/// seccomp filter, say). An entry the kernel refuses is not an error
/// here: its [`QueryAnswer::result`] says why.
#[doc(alias = "io_uring_register_query")]
#[doc(alias = "IORING_REGISTER_QUERY")]
pub fn raw(op: u32, data: &mut [u8]) -> Result<QueryAnswer> {
    let size = u32::try_from(data.len())
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| Error::InvalidArgument(format!("a query buffer of {} bytes (1 to 4 GiB)", data.len())))?;
    // SAFETY: the kernel reads and writes at most `size` bytes at `data`,
    // which is exclusively borrowed for the call.
    unsafe { query_into(op, data.as_mut_ptr().cast(), size) }
}

/// One blind query entry into `size` bytes at `data`.
///
/// # Safety
///
/// `data` must be valid for reads and writes of `size` bytes for the call.
unsafe fn query_into(op: u32, data: *mut c_void, size: u32) -> Result<QueryAnswer> {
    let mut hdr = sys::io_uring_query_hdr { query_data: data as u64, query_op: op, size, ..Default::default() };
    // SAFETY: the kernel reads the header (a local, its reserved words and
    // `result` zero, `next_entry` 0: a chain of one), reads and writes at
    // most `size` bytes at `data` (valid, by the caller's contract), and
    // writes `size` and `result` back into the header, all during the
    // call; it keeps no pointer.
    let r = unsafe { sys::io_uring_register(-1, sys::IORING_REGISTER_QUERY, (&raw mut hdr).cast::<c_void>(), 0) };
    match r {
        Ok(_) => Ok(QueryAnswer { result: hdr.result, size: hdr.size }),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            Err(Error::unsupported("IORING_REGISTER_QUERY", Some("needs Linux 6.18")))
        }
        Err(e) => Err(Error::io("IORING_REGISTER_QUERY", e)),
    }
}

/// One typed query entry: the answer and how many bytes of it the kernel
/// filled, or the entry's refusal as an error naming `name`.
fn typed<T: Default + Copy>(op: u32, name: &'static str, hint: &'static str) -> Result<(T, u32)> {
    let mut out = T::default();
    // SAFETY: `out` is a local plain-integer structure of exactly this
    // size (a bindgen uapi struct), valid for the call.
    let answer = unsafe { query_into(op, (&raw mut out).cast(), size_of::<T>() as u32) }?;
    match answer.result {
        0 => Ok((out, answer.size)),
        r if r == -libc::EOPNOTSUPP => Err(Error::unsupported(name, Some(hint))),
        r => Err(Error::io(name, io::Error::from_raw_os_error(-r))),
    }
}

/// What the kernel's io_uring knows: `IO_URING_QUERY_OPCODES` through a
/// blind `IORING_REGISTER_QUERY` (no ring needed), since Linux 6.18
/// (liburing `io_uring_register_query`). Cheap: one syscall that copies
/// 48 bytes.
///
/// # Errors
///
/// [`Error::Unsupported`] naming `IORING_REGISTER_QUERY` on a kernel
/// without it; [`Error::Io`] when the call is refused otherwise (a seccomp
/// filter).
#[doc(alias = "io_uring_register_query")]
#[doc(alias = "IO_URING_QUERY_OPCODES")]
pub fn opcodes() -> Result<OpcodeQuery> {
    let (q, _) =
        typed::<sys::io_uring_query_opcode>(sys::IO_URING_QUERY_OPCODES, "IO_URING_QUERY_OPCODES", "needs Linux 6.18")?;
    Ok(OpcodeQuery {
        request_opcodes: q.nr_request_opcodes,
        register_opcodes: q.nr_register_opcodes,
        feature_flags: q.feature_flags,
        setup_flags: q.ring_setup_flags,
        enter_flags: q.enter_flags,
        sqe_flags: q.sqe_flags,
        query_opcodes: q.nr_query_opcodes,
    })
}

/// The SQ/CQ rings' header: `IO_URING_QUERY_SCQ` through a blind
/// `IORING_REGISTER_QUERY`, since Linux 6.19 (liburing
/// `io_uring_register_query`).
///
/// # Errors
///
/// [`Error::Unsupported`] naming `IO_URING_QUERY_SCQ` where the kernel's
/// query does not know it (6.18), or naming `IORING_REGISTER_QUERY` where
/// there is no query at all; [`Error::Io`] otherwise.
#[doc(alias = "io_uring_register_query")]
#[doc(alias = "IO_URING_QUERY_SCQ")]
pub fn ring_header() -> Result<RingHeaderQuery> {
    let (q, _) = typed::<sys::io_uring_query_scq>(sys::IO_URING_QUERY_SCQ, "IO_URING_QUERY_SCQ", "needs Linux 6.19")?;
    Ok(RingHeaderQuery { size: q.hdr_size, alignment: q.hdr_alignment })
}
