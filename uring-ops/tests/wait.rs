//! Asynchronous waits against the kernel: epoll, futexes, waitid.

mod common;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use uring_core::{SqeContext, SqeFlags};
use uring_ops::prelude::*;
use uring_ops::wait::{EpollWait, FutexWait, FutexWaitV, FutexWake, WaitOps};

/// A futex word that lives for the rest of the process, as the safe futex
/// waits require (the kernel reads it at issue, after the push): a fresh
/// one of a static set, so nothing is leaked (LeakSanitizer runs these).
fn word(v: u32) -> &'static AtomicU32 {
    use std::sync::atomic::AtomicUsize;
    static WORDS: [AtomicU32; 64] = [const { AtomicU32::new(0) }; 64];
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let w = &WORDS[NEXT.fetch_add(1, Ordering::Relaxed)];
    w.store(v, Ordering::Relaxed);
    w
}

fn ud(n: u64) -> SqeContext {
    SqeContext::token(n).unwrap()
}

fn eventfd() -> OwnedFd {
    // SAFETY: plain syscall; the result is checked.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    assert!(fd >= 0);
    // SAFETY: eventfd just created it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn signal(efd: &OwnedFd) {
    let one = 1u64;
    // SAFETY: writes eight bytes from a valid u64.
    assert_eq!(unsafe { libc::write(efd.as_raw_fd(), (&raw const one).cast(), 8) }, 8);
}

/// An epoll set watching `efd` for input, tagged `tag`.
fn epoll_with(efd: &OwnedFd, tag: u64) -> OwnedFd {
    // SAFETY: plain syscall; the result is checked.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(ep >= 0);
    let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: tag };
    // SAFETY: `ev` is a valid epoll_event for the duration of the call.
    assert_eq!(unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, efd.as_raw_fd(), &mut ev) }, 0);
    // SAFETY: epoll_create1 just created it.
    unsafe { OwnedFd::from_raw_fd(ep) }
}

fn skip_unless(ring: &Ring, op: u32, test: &str) -> bool {
    if ring.features().supports(op as u8) {
        return false;
    }
    common::skip(test, &format!("opcode {op} is not supported by this kernel"));
    true
}

#[test]
fn epoll_wait_reports_a_ready_eventfd() {
    let mut ring = common::ring(8);
    if skip_unless(&ring, uring_core::sys::IORING_OP_EPOLL_WAIT, "epoll_wait_reports_a_ready_eventfd") {
        return;
    }
    let efd = eventfd();
    let ep = epoll_with(&efd, 0xfeed);
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 4];
    // SAFETY: `events` outlives the reap below and is not touched before.
    unsafe { ring.epoll_wait(ud(1), ep.as_raw_fd(), &mut events) }.unwrap();
    ring.submit().unwrap();
    // Nothing is ready yet: the operation waits.
    common::expect_none(&mut ring, Duration::from_millis(20));
    signal(&efd);
    let d = common::reap_one(&mut ring);
    assert_eq!((d.user_data, d.res), (ud(1).raw(), 1));
    let (flags, tag) = (events[0].events, events[0].u64);
    assert_eq!(tag, 0xfeed);
    assert_ne!(flags & libc::EPOLLIN as u32, 0);
}

#[test]
fn epoll_wait_refuses_a_timeout_and_an_empty_array() {
    let mut ring = common::ring(8);
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 1];
    // SAFETY: refused before anything is queued.
    let op = unsafe { EpollWait::new(0, &mut events) }.timeout(10);
    let err = ring.push_op(ud(2), op).unwrap_err();
    assert!(matches!(&err, Error::InvalidArgument(m) if m.contains("timeout")), "{err}");
    // SAFETY: as above.
    let op = unsafe { EpollWait::new(0, &mut events[..0]) };
    let err = ring.push_op(ud(2), op).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert_eq!(ring.sq_pending(), 0);
}

#[test]
fn epoll_wait_on_a_non_epoll_fd_fails_in_the_cqe() {
    let mut ring = common::ring(8);
    if skip_unless(&ring, uring_core::sys::IORING_OP_EPOLL_WAIT, "epoll_wait_on_a_non_epoll_fd_fails_in_the_cqe") {
        return;
    }
    let efd = eventfd();
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 1];
    // SAFETY: `events` outlives the reap.
    unsafe { ring.epoll_wait(ud(3), efd.as_raw_fd(), &mut events) }.unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::EINVAL);
}

#[test]
fn futex_wait_is_woken_by_a_ring_wake() {
    let mut ring = common::ring(8);
    let futex = word(0);
    ring.futex_wait(ud(10), futex, 0).unwrap();
    ring.submit().unwrap();
    common::expect_none(&mut ring, Duration::from_millis(20));
    futex.store(1, Ordering::Release);
    ring.futex_wake(ud(11), futex, 8).unwrap();
    let mut done = common::reap(&mut ring, 2);
    done.sort_by_key(|d| d.user_data);
    assert_eq!((done[0].user_data, done[0].res), (ud(10).raw(), 0), "the waiter was woken");
    assert_eq!((done[1].user_data, done[1].res), (ud(11).raw(), 1), "exactly one waiter woken");
}

#[test]
fn futex_wait_is_woken_by_a_plain_futex_syscall_from_another_thread() {
    let mut ring = common::ring(8);
    let futex = word(0);
    ring.futex_wait(ud(12), futex, 0).unwrap();
    // The wait is armed once submit returns (it is issued inline).
    ring.submit().unwrap();
    let f = futex;
    let waker = std::thread::spawn(move || {
        f.store(1, Ordering::Release);
        // The wait is armed already; retrying only guards against a
        // scheduler surprise, it never changes what is asserted.
        let mut woken = 0;
        for _ in 0..500 {
            // SAFETY: FUTEX_WAKE_PRIVATE on a live AtomicU32; no other pointer.
            woken = unsafe {
                libc::syscall(
                    libc::SYS_futex,
                    f.as_ptr(),
                    libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
                    1,
                    std::ptr::null::<libc::timespec>(),
                    std::ptr::null::<u32>(),
                    0,
                )
            };
            if woken != 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        woken
    });
    let woken = waker.join().unwrap();
    assert_eq!(woken, 1, "the syscall found the io_uring waiter");
    let d = common::reap_one(&mut ring);
    assert_eq!((d.user_data, d.res), (ud(12).raw(), 0));
}

#[test]
fn a_futex_wake_wakes_no_more_than_asked() {
    let mut ring = common::ring(8);
    let futex = word(0);
    ring.futex_wait(ud(16), futex, 0).unwrap();
    ring.futex_wait(ud(17), futex, 0).unwrap();
    ring.submit().unwrap();
    ring.futex_wake(ud(18), futex, 1).unwrap();
    let mut done = common::reap(&mut ring, 2);
    done.sort_by_key(|d| d.user_data);
    let woken_waiter = done[0];
    assert!([ud(16).raw(), ud(17).raw()].contains(&woken_waiter.user_data) && woken_waiter.res == 0);
    assert_eq!((done[1].user_data, done[1].res), (ud(18).raw(), 1), "one woken");
    common::expect_none(&mut ring, Duration::from_millis(20));
    ring.futex_wake(ud(19), futex, 5).unwrap();
    let mut done = common::reap(&mut ring, 2);
    done.sort_by_key(|d| d.user_data);
    assert_eq!(done[0].res, 0, "the second waiter");
    assert_ne!(done[0].user_data, woken_waiter.user_data);
    assert_eq!((done[1].user_data, done[1].res), (ud(19).raw(), 1), "only one was left to wake");
}

#[test]
fn futex_value_mismatch_is_eagain_and_a_zero_mask_is_refused() {
    let mut ring = common::ring(8);
    let futex = word(5);
    ring.futex_wait(ud(13), futex, 0).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::EAGAIN);
    let err = ring.push_op(ud(14), FutexWait::new(futex, 5).mask(0)).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    let err = ring.push_op(ud(14), FutexWake::new(futex, 1).mask(0)).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    // Nobody waits: a wake reports 0 woken.
    ring.futex_wake(ud(15), futex, 1).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 0);
}

/// Why the safe waits take `&'static`: the kernel loads the word when it
/// issues the request, not when it consumes the entry. A wait linked behind
/// a 100 ms timeout is consumed (its slot free, its `Keep` reusable) at
/// submit, and still reads the word 100 ms later: a value stored after
/// submit decides the result. With a borrow the word could have been freed
/// in between (the hole of `FutexWait::new(&AtomicU32)`, closed by the
/// `compile_fail` examples in `uring_ops::wait`).
#[test]
fn futex_wait_reads_the_word_at_issue_long_after_the_entry_was_consumed() {
    let mut ring = common::ring(8);
    let futex = word(0);
    let delay = uring_ops::timeout::Timeout::new(Duration::from_millis(100)).etime_success();
    ring.push_op(ud(40), delay.with_sqe_flags(SqeFlags::IO_LINK)).unwrap();
    ring.futex_wait(ud(41), futex, 0).unwrap();
    ring.submit().unwrap();
    assert_eq!(ring.sq_pending(), 0, "both entries consumed");
    // After the entry was consumed, before the wait is issued.
    futex.store(5, Ordering::Release);
    let mut done = common::reap(&mut ring, 2);
    done.sort_by_key(|d| d.user_data);
    assert_eq!((done[0].user_data, done[0].res), (ud(40).raw(), -libc::ETIME));
    assert_eq!(
        (done[1].user_data, done[1].res),
        (ud(41).raw(), -libc::EAGAIN),
        "the kernel read the word at issue, after submit returned"
    );
}

/// As above for `futex_waitv`: its array is copied at prep, but the words
/// it names are read at issue.
#[test]
fn futex_waitv_reads_the_words_at_issue_long_after_the_entry_was_consumed() {
    let mut ring = common::ring(8);
    let (a, b) = (word(0), word(0));
    let delay = uring_ops::timeout::Timeout::new(Duration::from_millis(100)).etime_success();
    ring.push_op(ud(42), delay.with_sqe_flags(SqeFlags::IO_LINK)).unwrap();
    ring.futex_waitv(ud(43), &[(a, 0), (b, 0)]).unwrap();
    ring.submit().unwrap();
    assert_eq!(ring.sq_pending(), 0, "both entries consumed");
    b.store(9, Ordering::Release);
    let mut done = common::reap(&mut ring, 2);
    done.sort_by_key(|d| d.user_data);
    assert_eq!((done[1].user_data, done[1].res), (ud(43).raw(), -libc::EAGAIN), "read at issue");
}

#[test]
fn futex_waitv_reports_the_index_of_the_woken_futex() {
    let mut ring = common::ring(8);
    let a = word(0);
    let b = word(7);
    ring.futex_waitv(ud(20), &[(a, 0), (b, 7)]).unwrap();
    ring.submit().unwrap();
    common::expect_none(&mut ring, Duration::from_millis(20));
    ring.futex_wake(ud(21), b, 1).unwrap();
    let mut done = common::reap(&mut ring, 2);
    done.sort_by_key(|d| d.user_data);
    assert_eq!((done[0].user_data, done[0].res), (ud(20).raw(), 1), "woken on the second futex");
    assert_eq!(done[1].res, 1);
}

#[test]
fn futex_waitv_bounds_are_checked_and_mismatch_is_eagain() {
    let mut ring = common::ring(8);
    let err = ring.push_op(ud(22), FutexWaitV::new(&[])).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    let a = word(0);
    let many: Vec<(&'static AtomicU32, u32)> = (0..129).map(|_| (a, 0)).collect();
    let err = ring.push_op(ud(22), FutexWaitV::new(&many)).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert_eq!(ring.sq_pending(), 0);
    ring.futex_waitv(ud(23), &[(a, 0), (a, 3)]).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::EAGAIN);
}

#[test]
fn waitid_reaps_a_child_with_its_exit_status() {
    let mut ring = common::ring(8);
    let mut child = std::process::Command::new("sh").args(["-c", "exit 7"]).spawn().expect("spawn sh");
    let pid = child.id();
    // SAFETY: siginfo_t is plain data; zeroed is valid.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: `info` outlives the reap and is not touched before it.
    unsafe { ring.waitid(ud(30), libc::P_PID, pid, &mut info, libc::WEXITED) }.unwrap();
    let d = common::reap_one(&mut ring);
    assert_eq!((d.user_data, d.res), (ud(30).raw(), 0));
    assert_eq!(info.si_signo, libc::SIGCHLD);
    assert_eq!(info.si_code, libc::CLD_EXITED);
    // SAFETY: the kernel filled the SIGCHLD fields of the union.
    let (got_pid, status) = unsafe { (info.si_pid(), info.si_status()) };
    assert_eq!((got_pid as u32, status), (pid, 7));
    // The ring reaped it: there is nothing left for std to wait for.
    let err = child.wait().unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ECHILD));
}

#[test]
fn waitid_for_a_non_child_is_echild_and_bad_options_are_refused() {
    let mut ring = common::ring(8);
    // SAFETY: siginfo_t is plain data; zeroed is valid.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: `info` outlives the reap.
    unsafe { ring.waitid(ud(31), libc::P_PID, 1, &mut info, libc::WEXITED) }.unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::ECHILD);
    // SAFETY: refused before anything is queued.
    let err = unsafe { ring.waitid(ud(32), libc::P_PID, 1, &mut info, libc::WNOHANG) }.unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert_eq!(ring.sq_pending(), 0);
}

#[test]
fn waitid_without_info_is_safe_and_still_waits_for_the_child() {
    // A null `infop` (allowed by the kernel's waitid) names no memory: the
    // builder is safe, and the result alone says the child exited.
    let mut ring = common::ring(8);
    let mut child = std::process::Command::new("sh").args(["-c", "exit 3"]).spawn().unwrap();
    let op = uring_ops::wait::Waitid::without_info(libc::P_PID, child.id(), libc::WEXITED | libc::WNOWAIT);
    ring.push_op(ud(33), op).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 0);
    // WNOWAIT left the child waitable: its status is still there.
    assert_eq!(child.wait().unwrap().code(), Some(3));
}
