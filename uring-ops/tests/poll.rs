//! Poll operations against the kernel, on pipes and eventfds.

mod common;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use uring_core::{SqeContext, sys};
use uring_ops::poll::{PollAdd, PollEvents, PollOps, PollRemove, PollUpdate};
use uring_ops::prelude::*;

/// A foreign `user_data` (mode bits 3): stamped unchanged, so removes and
/// updates can name it.
fn ud(n: u64) -> SqeContext {
    SqeContext::token(n).unwrap()
}

/// Poll `n`'s `user_data` as the kernel saw it: the token with the poll's
/// opcode stamped in (what `PollRemove` and `PollUpdate` must name).
fn pushed(n: u64) -> u64 {
    ud(n).with_op(sys::IORING_OP_POLL_ADD as u8).raw()
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a writable array of two ints.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) }, 0);
    // SAFETY: pipe2 just created both descriptors for us.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn write_byte(fd: &OwnedFd) {
    // SAFETY: one byte from a valid buffer to an open descriptor.
    assert_eq!(unsafe { libc::write(fd.as_raw_fd(), b"x".as_ptr().cast(), 1) }, 1);
}

fn drain(fd: &OwnedFd) -> usize {
    let mut buf = [0u8; 64];
    // SAFETY: reads into a valid, writable buffer.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    n.max(0) as usize
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

#[test]
fn one_shot_poll_reports_readiness_with_the_mask() {
    let mut ring = common::ring(8);
    let (r, w) = pipe();
    ring.poll_add(ud(1), r.as_raw_fd(), PollEvents::IN).unwrap();
    ring.submit().unwrap();
    common::expect_none(&mut ring, Duration::from_millis(20));
    write_byte(&w);
    let d = common::reap_one(&mut ring);
    assert_eq!(d.user_data, ud(1).raw());
    let ev = PollEvents::from_result(d.res).expect("poll succeeded");
    assert!(ev.contains(PollEvents::IN), "{ev:?}");
    assert!(!d.more(), "a one-shot poll ends with its CQE");
    // The write end is writable right away.
    ring.poll_add(ud(2), w.as_raw_fd(), PollEvents::OUT).unwrap();
    let d = common::reap_one(&mut ring);
    assert!(PollEvents::from_result(d.res).unwrap().contains(PollEvents::OUT));
}

#[test]
fn multishot_poll_fires_per_wakeup_and_stays_armed() {
    let mut ring = common::ring(8);
    let efd = eventfd();
    ring.poll_multishot(ud(3), efd.as_raw_fd(), PollEvents::IN).unwrap();
    ring.submit().unwrap();
    for _ in 0..3 {
        signal(&efd);
        let d = common::reap_one(&mut ring);
        assert_eq!(d.user_data, ud(3).raw());
        assert!(PollEvents::from_result(d.res).unwrap().contains(PollEvents::IN));
        assert!(d.more(), "multishot poll must stay armed: {d:?}");
    }
    ring.poll_remove(ud(4), pushed(3)).unwrap();
    let mut done = common::reap(&mut ring, 2);
    done.sort_by_key(|d| d.user_data);
    assert_eq!(done[0].user_data, ud(3).raw());
    assert_eq!(done[0].res, -libc::ECANCELED);
    assert!(!done[0].more());
    assert_eq!((done[1].user_data, done[1].res), (ud(4).raw(), 0));
}

#[test]
fn edge_triggered_multishot_does_not_refire_on_unread_data() {
    // Edge-triggered: data left unread produces no further CQEs; only a new
    // wake-up (another write) does.
    let mut ring = common::ring(8);
    let (r, w) = pipe();
    ring.poll_multishot(ud(5), r.as_raw_fd(), PollEvents::IN).unwrap();
    ring.submit().unwrap();
    write_byte(&w);
    let d = common::reap_one(&mut ring);
    assert!(d.more());
    common::expect_none(&mut ring, Duration::from_millis(50));
    write_byte(&w);
    let d = common::reap_one(&mut ring);
    assert!(d.more() && PollEvents::from_result(d.res).unwrap().contains(PollEvents::IN));
    assert_eq!(drain(&r), 2);
}

#[test]
fn level_triggered_polls_are_refused_by_name() {
    // The kernel defines IORING_POLL_ADD_LEVEL but its POLL_ADD prep accepts
    // only IORING_POLL_ADD_MULTI; check that this is still true, and that
    // the builder refuses it before anything is queued.
    let mut ring = common::ring(8);
    let (r, _w) = pipe();
    let err = ring.push_op(ud(6), PollAdd::new(r.as_raw_fd(), PollEvents::IN).level()).unwrap_err();
    assert!(matches!(&err, Error::Unsupported { what, .. } if what.contains("IORING_POLL_ADD_LEVEL")), "{err}");
    assert_eq!(ring.sq_pending(), 0);
    // The same SQE, pushed without the check, is what the kernel rejects.
    let mut s = uring_core::Sqe::default();
    PollAdd::new(r.as_raw_fd(), PollEvents::IN).multishot().level().prepare(&mut s, &mut uring_core::Keep::new());
    s.set_context(ud(7));
    // SAFETY: a poll SQE names no memory.
    unsafe { ring.push(&s) }.unwrap();
    let d = common::reap_one(&mut ring);
    assert_eq!(d.res, -libc::EINVAL, "the kernel started accepting IORING_POLL_ADD_LEVEL: lift the check");
}

#[test]
fn remove_cancels_and_unknown_is_enoent() {
    let mut ring = common::ring(8);
    let (r, _w) = pipe();
    ring.poll_add(ud(10), r.as_raw_fd(), PollEvents::IN).unwrap();
    ring.submit().unwrap();
    ring.push_op(ud(11), PollRemove::new(pushed(10))).unwrap();
    let mut done = common::reap(&mut ring, 2);
    done.sort_by_key(|d| d.user_data);
    assert_eq!((done[0].user_data, done[0].res), (ud(10).raw(), -libc::ECANCELED));
    assert_eq!((done[1].user_data, done[1].res), (ud(11).raw(), 0));
    ring.poll_remove(ud(12), pushed(0xdead)).unwrap();
    let d = common::reap_one(&mut ring);
    assert_eq!(d.res, -libc::ENOENT);
}

#[test]
fn update_changes_the_mask_and_the_user_data() {
    let mut ring = common::ring(8);
    let (r, w) = pipe();
    // Armed for POLLOUT on the read end: never ready.
    ring.poll_add(ud(20), r.as_raw_fd(), PollEvents::OUT).unwrap();
    ring.submit().unwrap();
    write_byte(&w);
    common::expect_none(&mut ring, Duration::from_millis(20));
    // Now ask for POLLIN and a new user_data: data is already there.
    ring.push_op(ud(21), PollUpdate::new(pushed(20)).events(PollEvents::IN).user_data(ud(22).raw())).unwrap();
    let mut done = common::reap(&mut ring, 2);
    done.sort_by_key(|d| d.user_data);
    assert_eq!((done[0].user_data, done[0].res), (ud(21).raw(), 0), "{done:?}");
    assert_eq!(done[1].user_data, ud(22).raw(), "the poll completes under its new user_data");
    assert!(PollEvents::from_result(done[1].res).unwrap().contains(PollEvents::IN));
    // Unknown target.
    ring.poll_update_events(ud(23), 0xbeef_0003, PollEvents::IN).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::ENOENT);
}

#[test]
fn an_update_without_changes_is_refused() {
    let mut ring = common::ring(4);
    let err = ring.push_op(ud(30), PollUpdate::new(1).multishot()).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert_eq!(ring.sq_pending(), 0);
}

#[test]
fn polling_a_bad_fd_fails_in_the_cqe() {
    let mut ring = common::ring(4);
    ring.poll_add(ud(31), 9999, PollEvents::IN).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::EBADF);
}

#[test]
fn stamped_matches_what_the_kernel_reports() {
    let mut ring = common::ring(4);
    let (r, w) = pipe();
    let op = PollAdd::new(r.as_raw_fd(), PollEvents::IN);
    let ctx = SqeContext::for_fd(r.as_raw_fd());
    let target = op.stamped(ctx);
    ring.push_op(ctx, op).unwrap();
    ring.submit().unwrap();
    ring.poll_remove(ud(40), target).unwrap();
    let mut done = common::reap(&mut ring, 2);
    done.sort_by_key(|d| d.res);
    assert_eq!((done[0].user_data, done[0].res), (target, -libc::ECANCELED));
    drop(w);
}

#[test]
fn update_keeps_the_polls_one_shot_mode() {
    // IORING_POLL_ADD_MULTI on an update only shapes the new mask: the
    // kernel keeps the armed poll's one-shot mode.
    let mut ring = common::ring(8);
    let (r, w) = pipe();
    ring.poll_add(ud(50), r.as_raw_fd(), PollEvents::OUT).unwrap();
    ring.submit().unwrap();
    ring.push_op(ud(51), PollUpdate::new(pushed(50)).events(PollEvents::IN).multishot()).unwrap();
    assert_eq!(common::reap_one(&mut ring), common::Done { user_data: ud(51).raw(), res: 0, flags: 0 });
    write_byte(&w);
    let d = common::reap_one(&mut ring);
    assert_eq!(d.user_data, ud(50).raw());
    assert!(PollEvents::from_result(d.res).unwrap().contains(PollEvents::IN));
    assert!(!d.more(), "still one-shot: {d:?}");
    write_byte(&w);
    common::expect_none(&mut ring, Duration::from_millis(30));
}
