//! Each SQ slot's `Keep` holds memory the kernel reads while it consumes
//! the entry (on SQPOLL rings, on the poller thread, after `submit` has
//! returned). Dropping a ring must not free it while the kernel may still
//! consume entries.
//!
//! A kernel read of freed heap memory is invisible to AddressSanitizer
//! (the kernel is not instrumented), so these tests observe it instead:
//! the order of drops, and connects whose sockaddr lives in a `Keep`.

mod common;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use uring_core::{Options, Ring, SharedRing, SqPoll, Sqe, sys};

/// Set when dropped.
struct Region(Arc<AtomicBool>);

impl Drop for Region {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

const NOT_DROPPED: u8 = 0;
const AFTER_STOP: u8 = 1;
const BEFORE_STOP: u8 = 2;

/// Held in a `Keep`: records, when dropped, whether the ring's stop had
/// finished (its attached region was already dropped).
struct Witness {
    stopped: Arc<AtomicBool>,
    seen: Arc<AtomicU8>,
}

impl Drop for Witness {
    fn drop(&mut self) {
        let when = if self.stopped.load(Ordering::SeqCst) { AFTER_STOP } else { BEFORE_STOP };
        self.seen.store(when, Ordering::SeqCst);
    }
}

#[test]
fn keeps_are_dropped_only_after_the_ring_has_stopped() {
    let sqpoll = SqPoll { idle: std::time::Duration::from_millis(10), cpu: None };
    for (name, opts) in [("default", Options::small()), ("SQPOLL", Options::small().sqpoll(sqpoll))] {
        let stopped = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(AtomicU8::new(NOT_DROPPED));
        {
            let mut ring = Ring::new(opts).unwrap();
            ring.start().unwrap();
            ring.attach(Box::new(Region(stopped.clone()))).unwrap();
            // SAFETY: a NOP names no memory; the Keep holds only the witness.
            let (sqe, keep) = unsafe { ring.next_sqe_keep() }.unwrap();
            *sqe = Sqe::new(sys::IORING_OP_NOP as u8);
            keep.hold(Witness { stopped: stopped.clone(), seen: seen.clone() });
            ring.submit().unwrap();
        }
        assert_eq!(seen.load(Ordering::SeqCst), AFTER_STOP, "{name}: a Keep was dropped before the ring stopped");
    }
}

fn client() -> OwnedFd {
    // SAFETY: a fresh socket; we own the descriptor.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, 0);
        assert!(fd >= 0);
        OwnedFd::from_raw_fd(fd)
    }
}

/// Fills `sqe` with a connect of `fd` to the sockaddr at `addr`.
fn connect(sqe: &mut Sqe, fd: &OwnedFd, addr: &libc::sockaddr_in) {
    *sqe = Sqe::new(sys::IORING_OP_CONNECT as u8);
    sqe.fd = fd.as_raw_fd();
    sqe.set_addr(addr as *const libc::sockaddr_in as u64);
    sqe.set_off(size_of::<libc::sockaddr_in>() as u64);
}

/// `TCP_CLOSE` of `include/net/tcp_states.h` (not in the libc crate).
const TCP_CLOSE: u8 = 7;

/// Whether a connect was ever issued on `fd` (a socket no connect reached
/// stays in `TCP_CLOSE`; one whose connect read a bad address too).
fn connect_issued(fd: &OwnedFd) -> bool {
    // SAFETY: TCP_INFO writes at most `len` bytes into `info`.
    unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = size_of::<libc::tcp_info>() as libc::socklen_t;
        let r = libc::getsockopt(fd.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_INFO, (&raw mut info).cast(), &mut len);
        assert_eq!(r, 0);
        info.tcpi_state != TCP_CLOSE
    }
}

/// The slots' `Keep`s of a 1024-entry ring take 144 KiB; with malloc's
/// mmap threshold fixed below that, freeing them unmaps them, so a kernel
/// read after the free fails (`EFAULT`) instead of reading stale bytes.
fn unmap_large_frees() {
    // SAFETY: mallopt only changes the allocator's policy (a no-op under
    // sanitizers, which bring their own allocator).
    unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 10) };
}

const CONNECTS: usize = 1024;

/// Raises the soft descriptor limit to the hard one: the two SQPOLL tests
/// open 1024 sockets each, in parallel, beyond a default soft limit of
/// 1024 (the VM guests' init keeps it).
fn raise_nofile() {
    // SAFETY: getrlimit/setrlimit read and write one local struct.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut r), 0);
        if r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
        assert!(
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur as usize > 2 * CONNECTS + 64,
            "these tests need more than {} descriptors (RLIMIT_NOFILE is {})",
            2 * CONNECTS + 64,
            r.rlim_cur
        );
    }
}

/// SQPOLL: a batch of connects whose sockaddrs live in the slots' `Keep`s,
/// and the ring dropped right after `submit`. Every connect must have been
/// issued with its address: the poller thread consumed every published
/// entry before the `Keep`s were freed.
#[test]
fn dropping_an_sqpoll_ring_right_after_submit_frees_no_keep_the_poller_reads() {
    unmap_large_frees();
    raise_nofile();
    let (_lfd, addr) = common::listener();
    let clients: Vec<OwnedFd> = (0..CONNECTS).map(|_| client()).collect();
    {
        let opts = Options::default().entries(CONNECTS as u32).sqpoll(SqPoll::default());
        let mut ring = Ring::new(opts).unwrap();
        ring.start().unwrap();
        for fd in &clients {
            // SAFETY: the sockaddr lives in the slot's Keep, which the
            // kernel reads while preparing the connect; no other memory.
            let (sqe, keep) = unsafe { ring.next_sqe_keep() }.unwrap();
            connect(sqe, fd, keep.inline(addr));
        }
        ring.submit().unwrap();
    }
    let missed = clients.iter().filter(|fd| !connect_issued(fd)).count();
    assert_eq!(missed, 0, "{missed} of {CONNECTS} connects never reached the kernel with their address");
}

/// The same through `SharedRing::push_with`.
#[test]
fn dropping_an_sqpoll_shared_ring_right_after_submit_frees_no_keep_the_poller_reads() {
    unmap_large_frees();
    raise_nofile();
    let (_lfd, addr) = common::listener();
    let clients: Vec<OwnedFd> = (0..CONNECTS).map(|_| client()).collect();
    {
        let opts = Options::default().entries(CONNECTS as u32).sqpoll(SqPoll::default());
        let mut ring = SharedRing::new(opts).unwrap();
        ring.start().unwrap();
        for fd in &clients {
            // SAFETY: as above.
            unsafe { ring.push_with(|sqe, keep| connect(sqe, fd, keep.inline(addr))) }.unwrap();
        }
        ring.submit().unwrap();
    }
    let missed = clients.iter().filter(|fd| !connect_issued(fd)).count();
    assert_eq!(missed, 0, "{missed} of {CONNECTS} connects never reached the kernel with their address");
}
