//! Typed io_uring operations over [`uring_core::Ring`].
//!
//! One module per opcode family. Every operation is a builder with the same
//! shape (see [`Prepare`]): required arguments positional in `new`,
//! optional ones as setters, and a `prepare` that writes the whole SQE.
//! Rings submit them through [`RingOps`]: [`push_op`](RingOps::push_op)
//! for operations whose memory the library holds ([`SafeOp`]), and the
//! `unsafe` [`push_op_unchecked`](RingOps::push_op_unchecked) for
//! operations that name caller memory until they complete. Each family
//! also has an extension trait of named ring methods for the common
//! cases, taking the same arguments as the builders; [`prelude`] imports
//! them all.
//!
//! SQE flags go on a named method the way they go on a builder:
//! `ring.linked().fsync(ctx, fd)` queues what
//! `ring.push_op(ctx, Fsync::new(fd).with_sqe_flags(SqeFlags::IO_LINK))`
//! does ([`FlagOps`], [`OpExt`]), so a chain reads like single calls.
//!
//! # Safety model
//!
//! Memory the kernel copies while it prepares a request (timespecs,
//! sockaddrs, paths, `open_how`) is moved into the SQ slot's
//! [`Keep`](uring_core::Keep), which the ring holds until the kernel has
//! consumed the entry: those operations are safe. Memory the kernel uses
//! while the operation runs (data buffers, iovec targets, output
//! structures) is the caller's. For the common operations
//! ([`file::Read`], [`file::Write`], [`file::Readv`], [`file::Writev`],
//! [`net::Send`], [`net::Recv`], [`net::SendMsg`], [`net::SendMsgZc`],
//! [`net::RecvMsg`], [`fs::Statx`], [`xattr::FGetXattr`],
//! [`xattr::GetXattr`], [`cmd::GetSockOpt`], [`cmd::SetSockOpt`],
//! [`sockcmd::GetSockName`],
//! [`wait::EpollWait`], [`wait::Waitid`], [`transfer::Pipe`],
//! [`msg::FilesUpdate`]) the builder's constructor takes it as a slice or
//! reference and is `unsafe`, with the one `# Safety` section that names
//! it and the CQE until which it must stay valid; the operation is then a
//! [`SafeOp`], and the named ring method taking the same arguments is
//! `unsafe` for the same reason ("as for `Read::new`"). `'static` bytes
//! need no `unsafe` at all ([`file::Write::from_static`],
//! [`net::Send::from_static`], [`cmd::SetSockOpt::from_static`],
//! [`wait::Waitid::without_info`]). The other builders that name caller
//! memory (`SendZc`, `ProvideBuffers`, `Madvise`, `UringCmd`, the
//! fixed-buffer reads and writes) are built safely and pushed with the
//! `unsafe` [`push_op_unchecked`](RingOps::push_op_unchecked). Registered
//! and provided buffers, which the library owns, get safe APIs in
//! `uring-buffers`.
//!
//! This crate makes no syscall of its own: it writes SQEs and reads CQEs.

#![cfg(target_os = "linux")]

mod flags;
mod op;
mod ring;

pub mod block;
pub mod cancel;
pub mod cmd;
pub mod file;
pub mod fs;
pub mod listener;
pub mod msg;
pub mod multishot;
pub mod net;
pub mod nvme;
pub mod poll;
pub mod provide;
pub mod sockcmd;
pub mod socket;
pub mod subscription;
pub mod timeout;
pub mod transfer;
pub mod wait;
pub mod xattr;
pub mod zc;

pub use flags::{FlagOps, WithFlags};
pub use op::{FileDest, Fixed, OpExt, Prepare, SafeOp, Target, With};
pub use ring::{
    RingOps, SharedRingOps, push_group_owner_layer_op, push_group_owner_op, push_layer_op, push_layer_value,
};
pub use uring_core;

/// Everything needed to submit operations: [`RingOps`], [`OpExt`], the
/// argument types, and each family's extension trait of ring methods.
pub mod prelude {
    pub use crate::cancel::CancelOps;
    pub use crate::cmd::{CmdOps, Ring128Ops, SharedRing128Ops};
    pub use crate::file::FileOps;
    pub use crate::fs::FsOps;
    pub use crate::msg::MsgOps;
    pub use crate::multishot::MultishotOps;
    pub use crate::net::NetOps;
    pub use crate::poll::PollOps;
    pub use crate::provide::ProvideOps;
    pub use crate::sockcmd::SockCmdOps;
    pub use crate::socket::SocketSetupOps;
    pub use crate::subscription::{MultishotAction, MultishotHandler, MultishotSubscriber, Subscribe};
    pub use crate::timeout::TimeoutOps;
    pub use crate::transfer::TransferOps;
    pub use crate::wait::WaitOps;
    pub use crate::xattr::XattrOps;
    pub use crate::{FileDest, Fixed, FlagOps, OpExt, Prepare, RingOps, SafeOp, SharedRingOps, Target};
    pub use uring_core::{Cqe, CqeSlot, Error, HandleCqe, Options, Result, Ring, SqeContext, SqeFlags};
}
