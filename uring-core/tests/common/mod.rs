//! Shared helpers of the uring-core kernel tests.
#![allow(dead_code)] // Each test binary uses a different subset.
#![allow(unreachable_pub)]

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use uring_core::{CqeSlot, Error, Options, Ring, Sqe, SqeContext, sys};

/// A started single-issuer ring with `entries` SQ entries.
pub fn ring(entries: u32) -> Ring {
    let mut ring = Ring::new(Options::default().entries(entries)).expect("Ring::new (see SETUP.md if this fails)");
    ring.start().expect("start");
    ring
}

/// A NOP carrying `user_data`.
pub fn nop(user_data: u64) -> Sqe {
    let mut sqe = Sqe::new(sys::IORING_OP_NOP as u8);
    sqe.user_data = user_data;
    sqe
}

/// A NOP whose result is `res` (`IORING_NOP_INJECT_RESULT`).
pub fn nop_result(user_data: u64, res: i32) -> Sqe {
    let mut sqe = nop(user_data);
    sqe.set_op_flags(sys::IORING_NOP_INJECT_RESULT);
    sqe.len = res as u32;
    sqe
}

/// Pushes a NOP (safe: a NOP names no memory).
pub fn push_nop(ring: &mut Ring, user_data: u64) -> Result<(), Error> {
    // SAFETY: a NOP names no memory.
    unsafe { ring.push(&nop(user_data)) }
}

/// Pushes a NOP stamped with `ctx`.
pub fn push_ctx(ring: &mut Ring, ctx: SqeContext) -> Result<(), Error> {
    let mut sqe = nop(0);
    sqe.set_context(ctx);
    // SAFETY: a NOP names no memory.
    unsafe { ring.push(&sqe) }
}

/// Reaps until `n` completions were seen (blocking), returning
/// `(user_data, res, flags)` of each in order.
pub fn reap(ring: &mut Ring, n: usize) -> Vec<(u64, i32, u32)> {
    let mut out = Vec::new();
    let mut slots = [CqeSlot::EMPTY; 64];
    while out.len() < n {
        let want = (n - out.len()).min(64) as u32;
        match ring.wait_for(&mut slots, want, Some(std::time::Duration::from_secs(5))) {
            Ok(r) => out.extend(r.iter().map(|c| (c.user_data(), c.res(), c.raw_flags()))),
            Err(Error::WouldBlock) => panic!("timed out after {} of {n} completions", out.len()),
            Err(e) => panic!("wait_for: {e}"),
        }
    }
    out
}

/// A TCP listener on 127.0.0.1 with a kernel-chosen port, and its address.
pub fn listener() -> (OwnedFd, libc::sockaddr_in) {
    // SAFETY: plain socket syscalls on a fresh descriptor and local structs.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0);
        let fd = OwnedFd::from_raw_fd(fd);
        let mut addr: libc::sockaddr_in = std::mem::zeroed();
        addr.sin_family = libc::AF_INET as libc::sa_family_t;
        addr.sin_addr.s_addr = u32::from_be_bytes([127, 0, 0, 1]).to_be();
        let len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        assert_eq!(libc::bind(fd.as_raw_fd(), (&raw const addr).cast(), len), 0);
        assert_eq!(libc::listen(fd.as_raw_fd(), 4096), 0);
        let mut len = len;
        assert_eq!(libc::getsockname(fd.as_raw_fd(), (&raw mut addr).cast(), &mut len), 0);
        (fd, addr)
    }
}

pub mod huge;
