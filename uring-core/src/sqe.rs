//! The submission entry: [`Sqe`], its typed flags, and the 128-byte form.

use std::fmt;
use std::ops::{Deref, DerefMut};

use uring_sys as sys;

use crate::context::SqeContext;

bitflags::bitflags! {
    /// `IOSQE_*` flags of one SQE. Unknown bits are kept.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct SqeFlags: u8 {
        /// `IOSQE_FIXED_FILE`: `fd` is an index into the registered file table.
        const FIXED_FILE = sys::IOSQE_FIXED_FILE as u8;
        /// `IOSQE_IO_DRAIN`: start only after every earlier SQE completed.
        const IO_DRAIN = sys::IOSQE_IO_DRAIN as u8;
        /// `IOSQE_IO_LINK`: the next SQE starts after this one succeeds;
        /// a failure cancels the rest of the chain.
        const IO_LINK = sys::IOSQE_IO_LINK as u8;
        /// `IOSQE_IO_HARDLINK`: like `IO_LINK`, but the chain continues on failure.
        const IO_HARDLINK = sys::IOSQE_IO_HARDLINK as u8;
        /// `IOSQE_ASYNC`: go straight to an io-wq worker.
        const ASYNC = sys::IOSQE_ASYNC as u8;
        /// `IOSQE_BUFFER_SELECT`: the kernel picks a buffer from `buf_group`.
        const BUFFER_SELECT = sys::IOSQE_BUFFER_SELECT as u8;
        /// `IOSQE_CQE_SKIP_SUCCESS`: post no CQE if the operation succeeds.
        const CQE_SKIP_SUCCESS = sys::IOSQE_CQE_SKIP_SUCCESS as u8;
        const _ = !0;
    }
}

/// One 64-byte submission queue entry.
///
/// A transparent wrapper of [`uring_sys::io_uring_sqe`]: it dereferences to
/// the raw struct, whose named accessors ([`set_addr`](sys::io_uring_sqe::set_addr),
/// [`set_op_flags`](sys::io_uring_sqe::set_op_flags), …) reach every field,
/// and adds typed access to the flags and the [`SqeContext`].
///
/// Building an `Sqe` is safe: it only writes bytes. Handing one to the
/// kernel is not ([`Ring::push`](crate::Ring::push)), because the addresses
/// in it are trusted.
#[derive(Clone, Copy, Default)]
#[repr(transparent)]
pub struct Sqe(pub sys::io_uring_sqe);

const _: () = assert!(size_of::<Sqe>() == 64);

impl Sqe {
    /// A zeroed SQE with `opcode` set (`IORING_OP_*`).
    #[inline]
    pub fn new(opcode: u8) -> Self {
        let mut sqe = Sqe::default();
        sqe.0.opcode = opcode;
        sqe
    }

    /// The SQE flags.
    #[inline]
    pub fn sqe_flags(&self) -> SqeFlags {
        SqeFlags::from_bits_retain(self.0.flags)
    }

    /// Replaces the SQE flags.
    #[inline]
    pub fn set_sqe_flags(&mut self, flags: SqeFlags) -> &mut Self {
        self.0.flags = flags.bits();
        self
    }

    /// Adds SQE flags to the ones already set.
    #[inline]
    pub fn add_sqe_flags(&mut self, flags: SqeFlags) -> &mut Self {
        self.0.flags |= flags.bits();
        self
    }

    /// Stamps the submission identity into `user_data`.
    #[inline]
    pub fn set_context(&mut self, ctx: SqeContext) -> &mut Self {
        self.0.user_data = ctx.raw();
        self
    }

    /// The identity in `user_data`.
    #[inline]
    pub fn context(&self) -> SqeContext {
        SqeContext::of_user_data(self.0.user_data)
    }

    /// The raw entry.
    #[inline]
    pub fn as_raw(&self) -> &sys::io_uring_sqe {
        &self.0
    }
}

impl Deref for Sqe {
    type Target = sys::io_uring_sqe;
    #[inline]
    fn deref(&self) -> &sys::io_uring_sqe {
        &self.0
    }
}

impl DerefMut for Sqe {
    #[inline]
    fn deref_mut(&mut self) -> &mut sys::io_uring_sqe {
        &mut self.0
    }
}

impl fmt::Debug for Sqe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sqe")
            .field("opcode", &self.0.opcode)
            .field("flags", &self.sqe_flags())
            .field("fd", &self.0.fd)
            .field("off", &self.0.off())
            .field("addr", &format_args!("{:#x}", self.0.addr()))
            .field("len", &self.0.len)
            .field("op_flags", &self.0.op_flags())
            .field("user_data", &format_args!("{:#x}", self.0.user_data))
            .finish_non_exhaustive()
    }
}

/// A 128-byte SQE (rings with [`Options::sqe128`](crate::Options::sqe128)):
/// the ordinary entry followed by 64 more bytes of command payload
/// (`URING_CMD` passthrough, `NOP128`).
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct Sqe128 {
    /// The first 64 bytes.
    pub sqe: Sqe,
    /// The extra 64 bytes (`sqe->cmd` continues into them).
    pub ext: [u8; 64],
}

impl Default for Sqe128 {
    fn default() -> Self {
        Sqe128 { sqe: Sqe::default(), ext: [0; 64] }
    }
}

const _: () = assert!(size_of::<Sqe128>() == 128);
