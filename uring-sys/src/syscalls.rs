//! The three io_uring system calls as thin `unsafe fn`s.
//!
//! They add no policy: no retry on `EINTR`, no argument checks beyond what
//! the types say. A negative kernel return becomes an [`io::Error`] carrying
//! the errno (no allocation: the standard library stores OS errors inline).
//!
//! On x86-64, the one architecture this workspace builds and tests, the
//! `syscall` instruction is issued inline: this skips glibc's variadic
//! `syscall(3)` wrapper and its `errno` round-trip, which matters on the
//! submit path where `io_uring_enter` is the one syscall per batch (measured
//! in `benches/enter.rs`). Every other architecture (aarch64, the other one
//! the bindings are generated for) goes through `libc::syscall`: nothing
//! here runs on one, so no hand-written register convention is trusted
//! there untested. The `libc::syscall` path is also compiled, and checked
//! against the inline one, in x86-64 test builds.

use core::ffi::{c_int, c_long, c_uint, c_void};
use std::io;
use std::os::fd::RawFd;

use crate::io_uring_params;

/// Size in bytes of the kernel's signal set (`_NSIG / 8`), which is what
/// `io_uring_enter` expects as the size of its `sigset_t` argument. glibc's
/// `sigset_t` is larger (1024 bits); the kernel reads only this many bytes.
const KERNEL_SIGSET_SIZE: usize = 8;

/// Converts a raw syscall return (`-errno` on failure) into a result.
#[inline(always)]
fn check(ret: c_long) -> io::Result<c_long> {
    // The kernel reports failure as -4095..=-1.
    if (-4095..0).contains(&ret) { Err(io::Error::from_raw_os_error(-ret as i32)) } else { Ok(ret) }
}

/// Issues a raw system call with up to six arguments and returns the
/// kernel's return value unchanged (`-errno` on failure).
///
/// # Safety
///
/// The arguments must satisfy the contract of system call `nr`: every
/// pointer among them must be valid for what the kernel reads or writes
/// through it.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn raw_syscall6(nr: c_long, a0: usize, a1: usize, a2: usize, a3: usize, a4: usize, a5: usize) -> c_long {
    {
        let ret: c_long;
        // The x86-64 Linux syscall convention: number in rax, arguments in
        // rdi, rsi, rdx, r10, r8, r9; the kernel clobbers rcx and r11,
        // returns in rax and never touches the user stack (`nostack`).
        // Memory is not declared untouched: the kernel may read and write
        // what the arguments point to.
        // SAFETY: registers as the convention above requires; the caller
        // vouches for every memory the arguments name.
        unsafe {
            core::arch::asm!(
                "syscall",
                inlateout("rax") nr => ret,
                in("rdi") a0,
                in("rsi") a1,
                in("rdx") a2,
                in("r10") a3,
                in("r8") a4,
                in("r9") a5,
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            );
        }
        ret
    }
}

/// [`raw_syscall6`] everywhere but x86-64: glibc's `syscall(3)`, with its
/// `-1`/`errno` result turned back into the kernel's `-errno`.
///
/// # Safety
///
/// As for the x86-64 [`raw_syscall6`].
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
unsafe fn raw_syscall6(nr: c_long, a0: usize, a1: usize, a2: usize, a3: usize, a4: usize, a5: usize) -> c_long {
    // SAFETY: forwarded obligations (see `# Safety`).
    unsafe { libc_syscall6(nr, a0, a1, a2, a3, a4, a5) }
}

/// A system call through `libc::syscall`, returning `-errno` on failure as
/// the kernel does. The path of every architecture but x86-64, and compiled
/// in x86-64 test builds so the tests can hold it against the inline one.
///
/// # Safety
///
/// As for [`raw_syscall6`].
#[cfg(any(test, not(target_arch = "x86_64")))]
#[inline(always)]
unsafe fn libc_syscall6(nr: c_long, a0: usize, a1: usize, a2: usize, a3: usize, a4: usize, a5: usize) -> c_long {
    // Every argument is passed as a full register-width integer, which is
    // what the variadic `syscall(3)` reads for each of the six.
    // SAFETY: the caller vouches for the system call's contract and every
    // memory the arguments name.
    let ret = unsafe {
        libc::syscall(nr, a0 as c_long, a1 as c_long, a2 as c_long, a3 as c_long, a4 as c_long, a5 as c_long)
    };
    if ret == -1 {
        // glibc stores the kernel's -4095..=-1 as errno and returns -1.
        -(io::Error::last_os_error().raw_os_error().unwrap_or(libc::ENOSYS) as c_long)
    } else {
        ret
    }
}

/// `io_uring_setup(2)`: creates an io_uring instance with room for `entries`
/// submission entries and returns its file descriptor.
///
/// The kernel reads `params` (flags, `sq_thread_cpu`, `sq_thread_idle`,
/// `cq_entries`, `wq_fd`, and with `IORING_SETUP_NO_MMAP` the user addresses
/// in `sq_off.user_addr`/`cq_off.user_addr`) and writes back the actual
/// entry counts, the features and the ring offsets.
///
/// Since Linux 5.1.
///
/// # Safety
///
/// - `params` must point to a valid, writable `io_uring_params` for the
///   duration of the call.
/// - With `IORING_SETUP_NO_MMAP`, the memory named by `sq_off.user_addr` and
///   `cq_off.user_addr` must stay valid, and must not be used for anything
///   else, until the returned ring file descriptor is closed and every
///   reference to the ring is gone: the kernel pins and uses it for the
///   ring's lifetime.
/// - With `IORING_SETUP_ATTACH_WQ`, `params.wq_fd` must name an io_uring file
///   descriptor (the kernel checks and fails with `EINVAL` otherwise; there
///   is no memory hazard).
///
/// # Errors
///
/// The kernel's errno: `EINVAL` (bad flags or entry counts), `ENOMEM`
/// (locked-memory limit or allocation failure), `EPERM`
/// (`kernel.io_uring_disabled` or a seccomp filter), `ENOSYS` (no io_uring
/// in this kernel), `EFAULT` (bad `params`), `EMFILE`/`ENFILE`.
///
/// # References
///
/// `io_uring_setup(2)`; `io_uring/io_uring.c` in the kernel.
#[doc(alias = "SYS_io_uring_setup")]
#[inline]
pub unsafe fn io_uring_setup(entries: u32, params: *mut io_uring_params) -> io::Result<RawFd> {
    // SAFETY: the caller guarantees `params` is valid for the kernel's read
    // and write of one `io_uring_params`, and any memory it names.
    let ret = unsafe { raw_syscall6(libc::SYS_io_uring_setup, entries as usize, params as usize, 0, 0, 0, 0) };
    check(ret).map(|fd| fd as RawFd)
}

/// `io_uring_enter(2)` without an extended argument: submits up to
/// `to_submit` queued SQEs and, with `IORING_ENTER_GETEVENTS`, waits until at
/// least `min_complete` CQEs are available. `sig`, when not null, is the
/// signal mask to apply while waiting (as `pselect`/`ppoll` do).
///
/// Returns the number of SQEs consumed.
///
/// Since Linux 5.1.
///
/// # Safety
///
/// - `fd` must be an io_uring file descriptor, or with
///   `IORING_ENTER_REGISTERED_RING` the index of a registered ring fd, of a
///   ring whose shared memory (SQ ring, SQEs) is mapped and whose published
///   SQEs describe operations whose memory obligations the caller meets
///   (each opcode's memory must stay valid until its CQE, as documented by
///   the layers that prepare it).
/// - `sig` must be null or point to a readable signal set of at least 8
///   bytes (a `libc::sigset_t` qualifies).
/// - `flags` must not contain `IORING_ENTER_EXT_ARG` or
///   `IORING_ENTER_EXT_ARG_REG`: those change the meaning of the last
///   argument; use [`io_uring_enter2`].
///
/// # Errors
///
/// The kernel's errno, e.g. `EBADF`/`EOPNOTSUPP` (not a ring), `EINTR`
/// (a signal arrived while waiting), `EBUSY`/`EAGAIN` (CQ overflow backlog
/// or resources), `EBADFD` (the ring is still disabled,
/// `IORING_SETUP_R_DISABLED`).
///
/// # References
///
/// `io_uring_enter(2)`.
#[doc(alias = "SYS_io_uring_enter")]
#[inline]
pub unsafe fn io_uring_enter(
    fd: c_int,
    to_submit: c_uint,
    min_complete: c_uint,
    flags: c_uint,
    sig: *const libc::sigset_t,
) -> io::Result<c_uint> {
    let sigsz = if sig.is_null() { 0 } else { KERNEL_SIGSET_SIZE };
    // The caller guarantees `fd` names a ring whose submitted SQEs are valid
    // and that no extended-argument flag reinterprets `sig`.
    // SAFETY: forwarded obligations (see `# Safety`); `sig` is null or readable.
    let ret = unsafe {
        raw_syscall6(
            libc::SYS_io_uring_enter,
            fd as usize,
            to_submit as usize,
            min_complete as usize,
            flags as usize,
            sig as usize,
            sigsz,
        )
    };
    check(ret).map(|n| n as c_uint)
}

/// `io_uring_enter(2)` with an extended argument: `arg` and `argsz` are
/// passed to the kernel unchanged.
///
/// With `IORING_ENTER_EXT_ARG`, `arg` points to an
/// [`io_uring_getevents_arg`](crate::io_uring_getevents_arg) (signal mask, timeout, minimum wait) and
/// `argsz` is its size. With `IORING_ENTER_EXT_ARG_REG`, `arg` is an offset
/// into the wait-argument region registered with
/// `IORING_REGISTER_MEM_REGION` and `argsz` the size of one
/// `io_uring_reg_wait`.
///
/// Returns the number of SQEs consumed. A wait that times out fails with
/// `ETIME`.
///
/// Since Linux 5.11 (`IORING_ENTER_EXT_ARG`); 6.13
/// (`IORING_ENTER_EXT_ARG_REG`).
///
/// # Safety
///
/// As for [`io_uring_enter`], and:
/// - with `IORING_ENTER_EXT_ARG`, `arg` must point to a readable
///   `io_uring_getevents_arg` whose `sigmask` (if non-zero) and `ts` (if
///   non-zero) are themselves addresses of a readable signal set and
///   `__kernel_timespec`, all valid for the duration of the call;
/// - without an extended-argument flag, `arg` is a signal set pointer as in
///   [`io_uring_enter`] and `argsz` must be 8 when it is not null.
///
/// # References
///
/// `io_uring_enter(2)`.
#[doc(alias = "SYS_io_uring_enter")]
#[inline]
pub unsafe fn io_uring_enter2(
    fd: c_int,
    to_submit: c_uint,
    min_complete: c_uint,
    flags: c_uint,
    arg: *const c_void,
    argsz: usize,
) -> io::Result<c_uint> {
    // SAFETY: forwarded obligations; the caller guarantees `arg`/`argsz`
    // match what `flags` tells the kernel to read.
    let ret = unsafe {
        raw_syscall6(
            libc::SYS_io_uring_enter,
            fd as usize,
            to_submit as usize,
            min_complete as usize,
            flags as usize,
            arg as usize,
            argsz,
        )
    };
    check(ret).map(|n| n as c_uint)
}

/// `io_uring_register(2)`: registers, updates or queries resources of a ring
/// (`opcode` is an `IORING_REGISTER_*` / `IORING_UNREGISTER_*` value,
/// optionally with `IORING_REGISTER_USE_REGISTERED_RING`).
///
/// Returns the opcode's non-negative result (for example the personality
/// id, the number of updated slots, or 0).
///
/// Since Linux 5.1.
///
/// # Safety
///
/// - `fd` must be an io_uring file descriptor (or a registered ring index
///   with `IORING_REGISTER_USE_REGISTERED_RING`).
/// - `arg` and `nr_args` must be what `opcode` expects: e.g. for
///   `IORING_REGISTER_PROBE`, `arg` points to a writable `io_uring_probe`
///   followed by room for `nr_args` `io_uring_probe_op`s.
/// - Memory the registration hands to the kernel beyond the call must stay
///   valid as long as the registration lasts: registered buffers until they
///   are unregistered or replaced and every operation using them has
///   completed; a user-allocated provided-buffer ring until it is
///   unregistered; a memory region or zero-copy receive area until the ring
///   is closed.
///
/// # Errors
///
/// The kernel's errno, e.g. `EOPNOTSUPP` (`fd` is not a ring), `EINVAL`
/// (unknown opcode or bad argument), `EBUSY`, `ENOMEM` (locked-memory
/// limit), `EFAULT` (bad `arg`), `ENXIO` (nothing registered to update).
///
/// # References
///
/// `io_uring_register(2)`.
#[doc(alias = "SYS_io_uring_register")]
#[inline]
pub unsafe fn io_uring_register(fd: c_int, opcode: c_uint, arg: *const c_void, nr_args: c_uint) -> io::Result<c_uint> {
    // SAFETY: forwarded obligations; the caller guarantees `arg`/`nr_args`
    // fit `opcode` and that registered memory outlives its registration.
    let ret = unsafe {
        raw_syscall6(libc::SYS_io_uring_register, fd as usize, opcode as usize, arg as usize, nr_args as usize, 0, 0)
    };
    check(ret).map(|n| n as c_uint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_range_maps_to_errors() {
        assert_eq!(check(0).unwrap(), 0);
        assert_eq!(check(7).unwrap(), 7);
        assert_eq!(check(-(libc::EBADF as c_long)).unwrap_err().raw_os_error(), Some(libc::EBADF));
        assert_eq!(check(-4095).unwrap_err().raw_os_error(), Some(4095));
        // Values below the errno range are not errors (e.g. addresses).
        assert!(check(-4096).is_ok());
    }

    /// The `libc::syscall` path (every architecture but x86-64) returns
    /// what the inline one does: `-errno` for a failure, the kernel's
    /// result otherwise.
    #[test]
    fn the_libc_path_agrees_with_the_inline_one() {
        let (reg, bad_fd) = (libc::SYS_io_uring_register, i32::MAX as usize); // -1 would be a blind register
        let op = crate::IORING_REGISTER_PROBE as usize;
        // SAFETY: a descriptor that is not open fails before the kernel reads
        // the (null) argument.
        let (inline, via_libc) =
            unsafe { (raw_syscall6(reg, bad_fd, op, 0, 0, 0, 0), libc_syscall6(reg, bad_fd, op, 0, 0, 0, 0)) };
        assert_eq!((inline, via_libc), (-(libc::EBADF as c_long), -(libc::EBADF as c_long)));

        let mut params = io_uring_params::default();
        let p = &raw mut params as usize;
        // SAFETY: `params` is valid for the call; no flag hands the kernel
        // other memory.
        let fd = unsafe { libc_syscall6(libc::SYS_io_uring_setup, 4, p, 0, 0, 0, 0) };
        assert!(fd >= 0, "io_uring_setup through libc::syscall: {fd}");
        assert_eq!(params.sq_entries, 4);
        // SAFETY: a NOP enter (nothing to submit, no wait) on the ring just
        // created; `sig` is null.
        let r = unsafe { libc_syscall6(libc::SYS_io_uring_enter, fd as usize, 0, 0, 0, 0, 0) };
        assert_eq!(r, 0);
        // SAFETY: `fd` is ours and closed once.
        assert_eq!(unsafe { libc::close(fd as c_int) }, 0);
    }
}
