//! Submission filters: classic BPF programs the kernel runs on every
//! request of one opcode before issuing it, `IORING_REGISTER_BPF_FILTER`
//! (`struct io_uring_bpf`, since Linux 7.0).
//!
//! A [`BpfFilter`] is one program for one opcode. The kernel runs it on a
//! `struct io_uring_bpf_ctx` describing the request (its `user_data`,
//! opcode and SQE flags, and for some opcodes their arguments: see
//! [`ctx`]); a return of 0 denies the request, anything else allows it.
//! A denied request is not issued: it completes at once with `-EACCES`
//! (and a chain it heads or belongs to is cut as for any failure). Several
//! filters on one opcode stack: the request runs only if every one allows
//! it. [`BpfFilter::deny_rest`] also denies every opcode that has no
//! filter yet. Filters cannot be removed; they live as long as the ring.
//!
//! Registering on a ring: [`Registrar::bpf_filter`](crate::Registrar::bpf_filter)
//! (liburing `io_uring_register_bpf_filter`), at any time. For the whole
//! task (every ring it creates afterwards, inherited by children):
//! [`register_task_filter`] (liburing `io_uring_register_bpf_filter_task`).
//!
//! The program is copied by the kernel during the registration and never
//! read again, so everything here is safe: a filter only ever makes
//! requests fail. One consequence to plan for: on an
//! `IORING_SETUP_SQE_MIXED` ring the padding NOP that
//! keeps a 128-byte entry from wrapping ([`Ring::next_sqe128`](crate::Ring::next_sqe128))
//! posts no CQE only when it succeeds; with `IORING_OP_NOP` denied it
//! completes with `-EACCES` and `user_data` 0.
//!
//! The kernel accepts a subset of classic BPF: 32-bit loads from the
//! context at 4-byte aligned offsets (`BPF_LD | BPF_W | BPF_ABS`), the
//! context's length, the scratch memory, ALU operations, jumps and
//! returns; no packet access, no extensions. [`BpfFilter::new`] checks the
//! same rules before the call, so a program the kernel would refuse is an
//! [`Error::InvalidArgument`] naming the instruction. Loads read the
//! context in the machine's byte order (64-bit fields: the low word
//! first on little-endian machines).

use std::ffi::c_void;
use std::fmt;

use uring_sys as sys;

use crate::error::{Error, Result};

/// Offsets of the words a filter can load (`BPF_LD | BPF_W | BPF_ABS`)
/// from `struct io_uring_bpf_ctx` (40 bytes). Multi-byte fields are in the
/// machine's byte order unless said otherwise; the per-opcode words are
/// zero for other opcodes and where the kernel does not fill them
/// (`pdu_size` says how many bytes it filled).
pub mod ctx {
    /// `user_data`, low 32 bits (little-endian machines).
    pub const USER_DATA_LOW: u32 = 0;
    /// `user_data`, high 32 bits (little-endian machines).
    pub const USER_DATA_HIGH: u32 = 4;
    /// The word holding `opcode` (byte 0), `sqe_flags` (byte 1, the
    /// `IOSQE_*` flags) and `pdu_size` (byte 2): on little-endian machines
    /// `opcode | sqe_flags << 8 | pdu_size << 16`.
    pub const OPCODE_FLAGS: u32 = 8;
    /// `IORING_OP_SOCKET`: the address family (`socket.family`).
    pub const SOCKET_FAMILY: u32 = 16;
    /// `IORING_OP_SOCKET`: the socket type with its flags (`socket.type`).
    pub const SOCKET_TYPE: u32 = 20;
    /// `IORING_OP_SOCKET`: the protocol (`socket.protocol`).
    pub const SOCKET_PROTOCOL: u32 = 24;
    /// `IORING_OP_OPENAT`/`OPENAT2`: the open flags, low 32 bits
    /// (`open.flags`, little-endian machines).
    pub const OPEN_FLAGS: u32 = 16;
    /// `IORING_OP_OPENAT`/`OPENAT2`: the mode, low 32 bits (`open.mode`).
    pub const OPEN_MODE: u32 = 24;
    /// `IORING_OP_OPENAT2`: the `RESOLVE_*` flags, low 32 bits
    /// (`open.resolve`).
    pub const OPEN_RESOLVE: u32 = 32;
    /// `IORING_OP_CONNECT`: the address family (`connect.family`). The
    /// kernel fills the `CONNECT` words since 7.2 (7.0 leaves them zero).
    pub const CONNECT_FAMILY: u32 = 16;
    /// `IORING_OP_CONNECT`: the port (network byte order, in the word's
    /// first two bytes).
    pub const CONNECT_PORT: u32 = 20;
    /// `IORING_OP_CONNECT`: the IPv4 address (network byte order), or the
    /// first word of the IPv6 address.
    pub const CONNECT_ADDR: u32 = 24;
    /// `sizeof(struct io_uring_bpf_ctx)`: loads must be below this.
    pub const SIZE: u32 = 40;
}

const fn code(parts: u32) -> u16 {
    parts as u16
}

const LD_W_ABS: u16 = code(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS);
const RET_K: u16 = code(libc::BPF_RET | libc::BPF_K);
const ALU_AND_K: u16 = code(libc::BPF_ALU | libc::BPF_AND | libc::BPF_K);
const JEQ_K: u16 = code(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K);
const JSET_K: u16 = code(libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K);

/// One classic BPF instruction.
const fn insn(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// One filter: a classic BPF program for one request opcode, with its
/// registration flags. Build it with [`BpfFilter::new`] or a helper
/// ([`deny`](Self::deny), [`allow`](Self::allow), [`allow_if`](Self::allow_if),
/// [`deny_if`](Self::deny_if), [`socket_families`](Self::socket_families),
/// [`open_without`](Self::open_without)); register it with
/// [`Registrar::bpf_filter`](crate::Registrar::bpf_filter) or
/// [`register_task_filter`]. Since Linux 7.0.
#[derive(Clone)]
#[doc(alias = "io_uring_bpf_filter")]
#[doc(alias = "IO_URING_BPF_CMD_FILTER")]
pub struct BpfFilter {
    opcode: u8,
    flags: u32,
    pdu_size: u8,
    program: Vec<libc::sock_filter>,
}

impl fmt::Debug for BpfFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BpfFilter")
            .field("opcode", &self.opcode)
            .field("flags", &self.flags)
            .field("pdu_size", &self.pdu_size)
            .field("instructions", &self.program.len())
            .finish()
    }
}

impl BpfFilter {
    /// A filter running `program` on every request of `opcode`
    /// (`IORING_OP_*`). The program is copied and checked against the
    /// rules the kernel applies (see the [module docs](self)): 1 to 4096
    /// instructions, only the permitted instructions, context loads
    /// 4-byte aligned and inside the context, scratch-memory slots below
    /// 16, no division by a zero constant, jumps inside the program, a
    /// return as the last instruction.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] naming the first offending instruction.
    pub fn new(opcode: u8, program: &[libc::sock_filter]) -> Result<Self> {
        check_program(program)?;
        Ok(BpfFilter { opcode, flags: 0, pdu_size: 0, program: program.to_vec() })
    }

    /// Denies every request of `opcode`: the program `ret #0`.
    pub fn deny(opcode: u8) -> Self {
        BpfFilter { opcode, flags: 0, pdu_size: 0, program: vec![insn(RET_K, 0, 0, 0)] }
    }

    /// Allows every request of `opcode` (`ret #1`): with
    /// [`deny_rest`](Self::deny_rest), the way to build an allow-list.
    pub fn allow(opcode: u8) -> Self {
        BpfFilter { opcode, flags: 0, pdu_size: 0, program: vec![insn(RET_K, 0, 0, 1)] }
    }

    /// Allows a request of `opcode` only when the context word at `offset`
    /// (one of [`ctx`]), masked with `mask`, equals `value`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for an offset the kernel would refuse.
    pub fn allow_if(opcode: u8, offset: u32, mask: u32, value: u32) -> Result<Self> {
        Self::new(opcode, &word_test(offset, mask, value, true))
    }

    /// Denies a request of `opcode` when the context word at `offset`,
    /// masked with `mask`, equals `value`; allows the others.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for an offset the kernel would refuse.
    pub fn deny_if(opcode: u8, offset: u32, mask: u32, value: u32) -> Result<Self> {
        Self::new(opcode, &word_test(offset, mask, value, false))
    }

    /// Allows `IORING_OP_SOCKET` only for these address families
    /// (`AF_INET`, `AF_UNIX`, …); the kernel fills the family since the
    /// filters arrived (7.0).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for no family or more than 254.
    pub fn socket_families(families: &[i32]) -> Result<Self> {
        if families.is_empty() || families.len() > 254 {
            return Err(Error::InvalidArgument(format!(
                "{} address families: give 1 to 254 (deny the opcode with BpfFilter::deny)",
                families.len()
            )));
        }
        let n = families.len();
        let mut p = vec![insn(LD_W_ABS, 0, 0, ctx::SOCKET_FAMILY)];
        for (i, &fam) in families.iter().enumerate() {
            // On a match jump to the `ret #1` after the `ret #0`.
            let to_allow = (n - i) as u8;
            p.push(insn(JEQ_K, to_allow, 0, fam as u32));
        }
        p.push(insn(RET_K, 0, 0, 0));
        p.push(insn(RET_K, 0, 0, 1));
        Self::new(sys::IORING_OP_SOCKET as u8, &p)
    }

    /// Denies an `IORING_OP_OPENAT` (or, with `openat2`, `OPENAT2`) whose
    /// open flags include any of `flags` (`O_CREAT`, `O_WRONLY | O_RDWR`,
    /// …, the low 32 bits); allows the others.
    pub fn open_without(flags: u32, openat2: bool) -> Self {
        let op = if openat2 { sys::IORING_OP_OPENAT2 } else { sys::IORING_OP_OPENAT };
        let p = [
            insn(LD_W_ABS, 0, 0, ctx::OPEN_FLAGS),
            insn(JSET_K, 0, 1, flags),
            insn(RET_K, 0, 0, 0),
            insn(RET_K, 0, 0, 1),
        ];
        BpfFilter { opcode: op as u8, flags: 0, pdu_size: 0, program: p.to_vec() }
    }

    /// Also denies every opcode that has no filter yet when this one is
    /// registered (`IO_URING_BPF_FILTER_DENY_REST`): register the allowed
    /// opcodes' filters first, then the last one with this flag.
    pub fn deny_rest(mut self) -> Self {
        self.flags |= sys::IO_URING_BPF_FILTER_DENY_REST;
        self
    }

    /// Fails the registration unless the kernel fills exactly `pdu_size`
    /// bytes of per-opcode context for this opcode
    /// (`IO_URING_BPF_FILTER_SZ_STRICT`): for a program that relies on the
    /// per-opcode words. Without it a filter expecting fewer bytes than
    /// the kernel fills is accepted, one expecting more is refused.
    pub fn strict_size(mut self, pdu_size: u8) -> Self {
        self.flags |= sys::IO_URING_BPF_FILTER_SZ_STRICT;
        self.pdu_size = pdu_size;
        self
    }

    /// The opcode filtered.
    pub fn opcode(&self) -> u8 {
        self.opcode
    }

    /// The program.
    pub fn program(&self) -> &[libc::sock_filter] {
        &self.program
    }

    /// The registration argument, naming this filter's program.
    fn to_raw(&self) -> sys::io_uring_bpf {
        let mut raw = sys::io_uring_bpf { cmd_type: sys::IO_URING_BPF_CMD_FILTER as u16, ..Default::default() };
        let f = raw.filter_mut();
        f.opcode = u32::from(self.opcode);
        f.flags = self.flags;
        f.filter_len = self.program.len() as u32;
        f.pdu_size = self.pdu_size;
        f.filter_ptr = self.program.as_ptr() as u64;
        raw
    }
}

/// `ld [offset]; and #mask; jeq #value, match, other; ret #match; ret #other`.
fn word_test(offset: u32, mask: u32, value: u32, allow_on_match: bool) -> [libc::sock_filter; 5] {
    let (on_match, other) = if allow_on_match { (1, 0) } else { (0, 1) };
    [
        insn(LD_W_ABS, 0, 0, offset),
        insn(ALU_AND_K, 0, 0, mask),
        insn(JEQ_K, 0, 1, value),
        insn(RET_K, 0, 0, on_match),
        insn(RET_K, 0, 0, other),
    ]
}

/// The kernel's rules for an io_uring filter program (its own whitelist,
/// then the classic checker's), checked without the kernel.
fn check_program(p: &[libc::sock_filter]) -> Result<()> {
    let bad = |pc: usize, why: &str| {
        Err(Error::InvalidArgument(format!("BPF filter instruction {pc} ({:#06x} k={}): {why}", p[pc].code, p[pc].k)))
    };
    if p.is_empty() || p.len() > libc::BPF_MAXINSNS as usize {
        return Err(Error::InvalidArgument(format!(
            "a BPF filter of {} instructions (1 to {})",
            p.len(),
            libc::BPF_MAXINSNS
        )));
    }
    use libc::{
        BPF_A, BPF_ABS, BPF_ADD, BPF_ALU, BPF_AND, BPF_DIV, BPF_IMM, BPF_JA, BPF_JEQ, BPF_JGE, BPF_JGT, BPF_JMP,
        BPF_JSET, BPF_K, BPF_LD, BPF_LDX, BPF_LEN, BPF_LSH, BPF_MEM, BPF_MISC, BPF_MUL, BPF_NEG, BPF_OR, BPF_RET,
        BPF_RSH, BPF_ST, BPF_STX, BPF_SUB, BPF_TAX, BPF_TXA, BPF_W, BPF_X, BPF_XOR,
    };
    let alu = [BPF_ADD, BPF_SUB, BPF_MUL, BPF_DIV, BPF_AND, BPF_OR, BPF_XOR, BPF_LSH, BPF_RSH];
    let jumps = [BPF_JEQ, BPF_JGE, BPF_JGT, BPF_JSET];
    let len = p.len();
    for (pc, i) in p.iter().enumerate() {
        let c = u32::from(i.code);
        let k = i.k;
        let conditional = jumps.iter().any(|&j| c == BPF_JMP | j | BPF_K || c == BPF_JMP | j | BPF_X);
        if c == BPF_LD | BPF_W | BPF_ABS {
            if k >= ctx::SIZE || k & 3 != 0 {
                return bad(pc, "a context load must be 4-byte aligned and below 40");
            }
        } else if c == BPF_LD | BPF_MEM || c == BPF_LDX | BPF_MEM || c == BPF_ST || c == BPF_STX {
            if k >= libc::BPF_MEMWORDS as u32 {
                return bad(pc, "scratch memory has 16 slots");
            }
        } else if c == BPF_ALU | BPF_DIV | BPF_K {
            if k == 0 {
                return bad(pc, "division by zero");
            }
        } else if c == BPF_JMP | BPF_JA {
            if (k as usize) >= len - pc - 1 {
                return bad(pc, "the jump leaves the program");
            }
        } else if conditional {
            if usize::from(i.jt) >= len - pc - 1 || usize::from(i.jf) >= len - pc - 1 {
                return bad(pc, "the jump leaves the program");
            }
        } else if !(c == BPF_LD | BPF_W | BPF_LEN
            || c == BPF_LDX | BPF_W | BPF_LEN
            || c == BPF_RET | BPF_K
            || c == BPF_RET | BPF_A
            || alu.iter().any(|&a| c == BPF_ALU | a | BPF_K || c == BPF_ALU | a | BPF_X)
            || c == BPF_ALU | BPF_NEG
            || c == BPF_LD | BPF_IMM
            || c == BPF_LDX | BPF_IMM
            || c == BPF_MISC | BPF_TAX
            || c == BPF_MISC | BPF_TXA)
        {
            return bad(pc, "not an instruction io_uring filters may use (context loads, ALU, jumps, returns only)");
        }
    }
    let last = u32::from(p[len - 1].code);
    if last != BPF_RET | BPF_K && last != BPF_RET | BPF_A {
        return bad(len - 1, "the last instruction must be a return");
    }
    Ok(())
}

/// Registers `filter` through `io_uring_register(fd, IORING_REGISTER_BPF_FILTER,
/// &arg, 1)`; returns the per-opcode context size the kernel fills.
pub(crate) fn register(fd: i32, filter: &BpfFilter) -> Result<u8> {
    let mut raw = filter.to_raw();
    // SAFETY: the kernel reads the 72-byte `raw` and the program it names
    // (`filter.program`, `filter_len` instructions, borrowed for the call)
    // and writes the filter's pdu_size back into `raw`, during the call
    // only; it copies the program into its own memory.
    let r = unsafe { sys::io_uring_register(fd, sys::IORING_REGISTER_BPF_FILTER, (&raw mut raw).cast::<c_void>(), 1) };
    let kernel_pdu = raw.filter().pdu_size;
    match r {
        Ok(_) => Ok(kernel_pdu),
        Err(e) => Err(match e.raw_os_error() {
            Some(libc::EMSGSIZE) => Error::InvalidArgument(format!(
                "IORING_REGISTER_BPF_FILTER: the kernel fills {kernel_pdu} bytes of context for opcode {}, the \
                 filter expects {} (EMSGSIZE)",
                filter.opcode, filter.pdu_size
            )),
            Some(libc::EINVAL) if !registers_bpf_filters() => {
                Error::unsupported("IORING_REGISTER_BPF_FILTER", Some("needs Linux 7.0"))
            }
            Some(libc::EINVAL) => Error::InvalidArgument(format!(
                "IORING_REGISTER_BPF_FILTER refused the filter for opcode {} (EINVAL): an opcode past the kernel's, \
                 a program the kernel's checker refuses, or a kernel built without CONFIG_IO_URING_BPF",
                filter.opcode
            )),
            _ => Error::io("IORING_REGISTER_BPF_FILTER", e),
        }),
    }
}

/// Whether the kernel knows `IORING_REGISTER_BPF_FILTER`, from the query.
fn registers_bpf_filters() -> bool {
    crate::query::opcodes().is_ok_and(|q| q.knows_register_op(sys::IORING_REGISTER_BPF_FILTER))
}

/// Registers `filter` for the calling task: every ring the task (or a
/// child it creates afterwards) sets up from now on runs it, on top of
/// its own filters; rings that exist already are not affected. A blind
/// `io_uring_register(-1, IORING_REGISTER_BPF_FILTER, &arg, 1)`, since
/// Linux 7.0 (liburing `io_uring_register_bpf_filter_task`). It cannot be
/// undone for the life of the task: run it in a process (or thread) meant
/// to be confined, typically before dropping privileges.
///
/// Returns the number of per-opcode context bytes the kernel fills for
/// the filter's opcode.
///
/// # Errors
///
/// [`Error::Io`] with `EACCES` unless the task has `CAP_SYS_ADMIN` or
/// `no_new_privs` set (`prctl(PR_SET_NO_NEW_PRIVS)`), as for seccomp;
/// otherwise as [`Registrar::bpf_filter`](crate::Registrar::bpf_filter).
#[doc(alias = "io_uring_register_bpf_filter_task")]
pub fn register_task_filter(filter: &BpfFilter) -> Result<u8> {
    if !registers_bpf_filters() {
        return Err(Error::unsupported("IORING_REGISTER_BPF_FILTER", Some("needs Linux 7.0")));
    }
    register(-1, filter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_context_offsets_match_the_uapi_layout() {
        assert_eq!(size_of::<sys::io_uring_bpf_ctx>(), ctx::SIZE as usize);
        assert_eq!(std::mem::offset_of!(sys::io_uring_bpf_ctx, opcode), ctx::OPCODE_FLAGS as usize);
        assert_eq!(std::mem::offset_of!(sys::io_uring_bpf_ctx, pad) + 5, ctx::SOCKET_FAMILY as usize);
        assert_eq!(size_of::<sys::io_uring_bpf>(), 72);
    }

    #[test]
    fn programs_the_kernel_would_refuse_are_refused_by_name() {
        let msg = |p: &[libc::sock_filter]| match BpfFilter::new(1, p) {
            Err(Error::InvalidArgument(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(msg(&[]).contains("0 instructions"));
        assert!(msg(&[insn(LD_W_ABS, 0, 0, 2), insn(RET_K, 0, 0, 0)]).contains("4-byte aligned"));
        assert!(msg(&[insn(LD_W_ABS, 0, 0, 40), insn(RET_K, 0, 0, 0)]).contains("below 40"));
        assert!(msg(&[insn(LD_W_ABS, 0, 0, 0)]).contains("must be a return"));
        assert!(msg(&[insn(JEQ_K, 5, 0, 0), insn(RET_K, 0, 0, 0)]).contains("leaves the program"));
        let ldb = code(libc::BPF_LD | libc::BPF_B | libc::BPF_ABS);
        assert!(msg(&[insn(ldb, 0, 0, 0), insn(RET_K, 0, 0, 0)]).contains("not an instruction"));
        assert!(BpfFilter::new(1, &word_test(ctx::OPCODE_FLAGS, 0xff, 1, true)).is_ok());
        assert!(BpfFilter::socket_families(&[]).is_err());
        let s = BpfFilter::socket_families(&[libc::AF_UNIX, libc::AF_INET]).unwrap();
        assert_eq!(s.program().len(), 5);
        assert_eq!(s.to_raw().filter().filter_len, 5);
    }
}
