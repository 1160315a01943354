//! Ring messages and file-table operations, between two rings in one thread.

mod common;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use uring_core::{SqeContext, sys};
use uring_ops::msg::{FilesUpdate, FixedFdInstall, MsgOps, MsgRing, MsgRingFd};
use uring_ops::prelude::*;

fn ud(n: u64) -> SqeContext {
    SqeContext::token(n).unwrap()
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a writable array of two ints.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) }, 0);
    // SAFETY: pipe2 just created both descriptors for us.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn write_all(fd: RawFd, data: &[u8]) {
    // SAFETY: writes from a valid buffer.
    assert_eq!(unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) }, data.len() as isize);
}

fn read_some(fd: &OwnedFd) -> Vec<u8> {
    let mut buf = [0u8; 64];
    // SAFETY: reads into a valid, writable buffer.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    buf[..n.max(0) as usize].to_vec()
}

/// Takes ownership of a descriptor a CQE returned.
fn owned(res: i32) -> OwnedFd {
    assert!(res >= 0, "expected a descriptor, got {res}");
    // SAFETY: the kernel just created this descriptor for us.
    unsafe { OwnedFd::from_raw_fd(res) }
}

#[test]
fn data_message_posts_exactly_the_given_cqe() {
    let mut a = common::ring(8);
    let mut b = common::ring(8);
    let posted = 0x1234_5678_9abc_def0;
    a.msg_ring(ud(1), b.as_raw_fd(), posted, 77).unwrap();
    let d = common::reap_one(&mut a);
    assert_eq!((d.user_data, d.res), (ud(1).raw(), 0));
    let got = common::reap_one(&mut b);
    assert_eq!((got.user_data, got.res, got.flags), (posted, 77, 0));
}

#[test]
fn data_message_passes_cqe_flags() {
    let mut a = common::ring(8);
    let mut b = common::ring(8);
    a.push_op(ud(2), MsgRing::new(b.as_raw_fd(), 0x55_0000, -5).cqe_flags(0x00ab_0000)).unwrap();
    assert_eq!(common::reap_one(&mut a).res, 0);
    let got = common::reap_one(&mut b);
    assert_eq!((got.user_data, got.res, got.flags), (0x55_0000, -5, 0x00ab_0000));
}

#[test]
fn a_message_to_a_non_ring_fd_is_ebadfd() {
    let mut a = common::ring(8);
    let (r, _w) = pipe();
    a.msg_ring(ud(3), r.as_raw_fd(), 1, 1).unwrap();
    assert_eq!(common::reap_one(&mut a).res, -libc::EBADFD);
}

#[test]
fn a_passed_fd_works_in_the_target_ring() {
    let mut a = common::ring(8);
    let mut b = common::ring(8);
    let (r, w) = pipe();
    a.register().files(&[w.as_raw_fd()]).unwrap();
    drop(w);
    b.register().files_sparse(4).unwrap();
    a.msg_ring_fd(ud(4), b.as_raw_fd(), Fixed(0), FileDest::Slot(2), 0x99_0000).unwrap();
    assert_eq!(common::reap_one(&mut a).res, 0);
    let got = common::reap_one(&mut b);
    assert_eq!((got.user_data, got.res), (0x99_0000, 0));
    // The target's slot 2 now holds the pipe's write end: install it and write.
    b.fixed_fd_install(ud(5), Fixed(2)).unwrap();
    let fd = owned(common::reap_one(&mut b).res);
    write_all(fd.as_raw_fd(), b"via b");
    assert_eq!(read_some(&r), b"via b");
}

#[test]
fn fd_passing_to_any_slot_reports_the_slot_and_can_skip_the_target_cqe() {
    let mut a = common::ring(8);
    let mut b = common::ring(8);
    let (_r, w) = pipe();
    a.register().files(&[w.as_raw_fd()]).unwrap();
    b.register().files_sparse(2).unwrap();
    a.push_op(ud(6), MsgRingFd::new(b.as_raw_fd(), Fixed(0), FileDest::AnySlot, 0x77_0000)).unwrap();
    let slot = common::reap_one(&mut a).res;
    assert!((0..2).contains(&slot), "slot {slot}");
    let got = common::reap_one(&mut b);
    assert_eq!((got.user_data, got.res), (0x77_0000, slot));
    a.push_op(ud(7), MsgRingFd::new(b.as_raw_fd(), Fixed(0), FileDest::AnySlot, 1).skip_target_cqe()).unwrap();
    assert!(common::reap_one(&mut a).res >= 0);
    common::expect_none(&mut b, std::time::Duration::from_millis(20));
    // An empty source slot.
    a.register().files_update(0, &[-1]).unwrap();
    a.msg_ring_fd(ud(8), b.as_raw_fd(), Fixed(0), FileDest::Slot(0), 1).unwrap();
    assert_eq!(common::reap_one(&mut a).res, -libc::EBADF);
    // A plain descriptor as destination is refused before submission.
    let err = a.msg_ring_fd(ud(9), b.as_raw_fd(), Fixed(0), FileDest::Fd, 1).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
}

#[test]
fn fixed_fd_install_makes_a_working_fd_and_an_empty_slot_is_ebadf() {
    let mut ring = common::ring(8);
    let (r, w) = pipe();
    ring.register().files(&[w.as_raw_fd(), -1]).unwrap();
    drop(w);
    ring.fixed_fd_install(ud(10), Fixed(0)).unwrap();
    let fd = owned(common::reap_one(&mut ring).res);
    // SAFETY: F_GETFD on an open descriptor.
    let fl = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) };
    assert_ne!(fl & libc::FD_CLOEXEC, 0, "close-on-exec by default");
    write_all(fd.as_raw_fd(), b"hello");
    assert_eq!(read_some(&r), b"hello");
    ring.push_op(ud(11), FixedFdInstall::new(Fixed(0)).no_cloexec()).unwrap();
    let fd2 = owned(common::reap_one(&mut ring).res);
    // SAFETY: as above.
    assert_eq!(unsafe { libc::fcntl(fd2.as_raw_fd(), libc::F_GETFD) } & libc::FD_CLOEXEC, 0);
    ring.fixed_fd_install(ud(12), Fixed(1)).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::EBADF);
}

#[test]
fn files_update_replaces_slots_which_then_work() {
    let mut ring = common::ring(8);
    ring.register().files_sparse(4).unwrap();
    let (r1, w1) = pipe();
    let (r2, w2) = pipe();
    let fds = [w1.as_raw_fd(), w2.as_raw_fd()];
    // SAFETY: `fds` outlives the reap and is not written.
    unsafe { ring.files_update(ud(20), 1, &fds) }.unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 2);
    drop((w1, w2));
    for (slot, r, msg) in [(1, &r1, b"one"), (2, &r2, b"two")] {
        ring.fixed_fd_install(ud(21), Fixed(slot)).unwrap();
        let fd = owned(common::reap_one(&mut ring).res);
        write_all(fd.as_raw_fd(), msg);
        assert_eq!(read_some(r), msg);
    }
    // Emptying a slot.
    // SAFETY: as above.
    unsafe { ring.files_update(ud(22), 1, &[-1]) }.unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 1);
    ring.fixed_fd_install(ud(23), Fixed(1)).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::EBADF);
}

#[test]
fn files_update_to_any_slot_writes_the_slots_back() {
    let mut ring = common::ring(8);
    ring.register().files_sparse(4).unwrap();
    let (r, w) = pipe();
    let mut fds = [w.as_raw_fd()];
    // SAFETY: `fds` outlives the reap and is not touched before it.
    unsafe { ring.files_update_any_slot(ud(24), &mut fds) }.unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 1);
    let slot = fds[0];
    assert!((0..4).contains(&slot), "the kernel wrote the slot back: {slot}");
    drop(w);
    ring.fixed_fd_install(ud(25), Fixed(slot as u32)).unwrap();
    let fd = owned(common::reap_one(&mut ring).res);
    write_all(fd.as_raw_fd(), b"alloc");
    assert_eq!(read_some(&r), b"alloc");
    // The shared-slice method refuses the writing mode; a bad fd fails in the CQE.
    // SAFETY: refused before anything is queued.
    let err = unsafe { ring.files_update(ud(26), u32::MAX, &[0]) }.unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    // The builder refuses it the same way: only `any_slot`, which holds a
    // unique borrow, lets the kernel write the array.
    // SAFETY: as above.
    let err = ring.push_op(ud(26), unsafe { FilesUpdate::new(u32::MAX, &[0]) }).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert_eq!(ring.sq_pending(), 0);
    let bad = [9999];
    // SAFETY: `bad` outlives the reap.
    unsafe { ring.files_update(ud(27), 0, &bad) }.unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::EBADF);
}

/// `MsgRing::send_without_ring`, or why it cannot run here.
fn send_blind(op: MsgRing) -> Result<(), uring_core::Error> {
    op.send_without_ring()
}

fn blind_supported(test: &str) -> bool {
    let mut probe = common::ring(4);
    // A message to a ring of our own: posted at once, or Unsupported.
    match send_blind(MsgRing::new(probe.as_raw_fd(), ud(9).raw(), 0)) {
        Ok(()) => {
            assert_eq!(common::reap_one(&mut probe).user_data, ud(9).raw());
            true
        }
        Err(e @ uring_core::Error::Unsupported { .. }) => {
            common::skip(test, &format!("{e}"));
            false
        }
        Err(e) => panic!("IORING_REGISTER_SEND_MSG_RING: {e}"),
    }
}

#[test]
fn a_thread_without_a_ring_wakes_a_ring_blocked_in_wait_for() {
    if !blind_supported("a_thread_without_a_ring_wakes_a_ring_blocked_in_wait_for") {
        return;
    }
    let token = ud(0x5eed);
    let (fd_tx, fd_rx) = std::sync::mpsc::channel::<RawFd>();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    // The waiter: a single-issuer, deferred-task-work ring (the default),
    // started on the thread that waits.
    let waiter = std::thread::spawn(move || {
        let mut ring = common::ring(8);
        let mut slots = [uring_core::CqeSlot::EMPTY; 4];
        fd_tx.send(ring.as_raw_fd()).unwrap();
        let started = std::time::Instant::now();
        let got = {
            let reaped = ring.wait_for(&mut slots, 1, Some(std::time::Duration::from_secs(10))).unwrap();
            assert_eq!(reaped.len(), 1);
            let c = reaped.get(0).unwrap();
            (c.user_data(), c.res(), c.raw_flags())
        };
        let waited = started.elapsed();
        // Keep the ring open until the sender has checked its result.
        done_rx.recv().unwrap();
        (got, waited)
    });
    let fd = fd_rx.recv().unwrap();
    // This thread has no ring. Give the waiter time to block first.
    std::thread::sleep(std::time::Duration::from_millis(200));
    send_blind(MsgRing::new(fd, token.raw(), 42)).unwrap();
    done_tx.send(()).unwrap();
    let ((user_data, res, flags), waited) = waiter.join().unwrap();
    assert_eq!((user_data, res, flags), (token.raw(), 42, 0), "the CQE carries the token sent");
    assert!(waited >= std::time::Duration::from_millis(150), "the waiter was blocked until the message: {waited:?}");
    assert!(waited < std::time::Duration::from_secs(10), "woken by the message, not the timeout: {waited:?}");
}

#[test]
fn a_message_without_a_ring_passes_flags_and_refuses_what_a_push_refuses() {
    if !blind_supported("a_message_without_a_ring_passes_flags_and_refuses_what_a_push_refuses") {
        return;
    }
    let mut b = common::ring(8);
    send_blind(MsgRing::new(b.as_raw_fd(), 0x77_0000, -3).cqe_flags(0x00cd_0000)).unwrap();
    let got = common::reap_one(&mut b);
    assert_eq!((got.user_data, got.res, got.flags), (0x77_0000, -3, 0x00cd_0000));

    // Refused before the syscall: layer values, memory-releasing flags, a
    // fixed slot (no file table without a ring).
    for layer in uring_core::Layer::ALL {
        let forged = uring_core::LayerData::new(layer, false, 1).unwrap().context().raw();
        let err = send_blind(MsgRing::new(b.as_raw_fd(), forged, 0)).unwrap_err();
        assert!(matches!(err, uring_core::Error::InvalidArgument(_)), "{layer:?}: {err}");
    }
    for flag in [sys::IORING_CQE_F_BUFFER, sys::IORING_CQE_F_NOTIF, sys::IORING_CQE_F_BUF_MORE] {
        let err = send_blind(MsgRing::new(b.as_raw_fd(), 7 << 2, 0).cqe_flags(flag)).unwrap_err();
        assert!(matches!(err, uring_core::Error::InvalidArgument(_)), "flag {flag:#x}: {err}");
    }
    let err = send_blind(MsgRing::new(uring_ops::Fixed(0), 7 << 2, 0)).unwrap_err();
    assert!(matches!(err, uring_core::Error::InvalidArgument(_)), "{err}");
    // Nothing was posted by any of them.
    let mut slots = [uring_core::CqeSlot::EMPTY; 4];
    assert!(b.reap(&mut slots).is_err_and(|e| e.is_would_block()));

    // The kernel's answers: not a ring, no such descriptor, a ring not
    // started yet.
    let (r, _w) = pipe();
    let errno = |e: uring_core::Error| match e {
        uring_core::Error::Io { source, .. } => source.raw_os_error(),
        e => panic!("{e}"),
    };
    assert_eq!(errno(send_blind(MsgRing::new(r.as_raw_fd(), 1, 0)).unwrap_err()), Some(libc::EBADFD));
    assert_eq!(errno(send_blind(MsgRing::new(common::NEVER_OPEN_FD, 1, 0)).unwrap_err()), Some(libc::EBADF));
    let created = uring_core::Ring::new(uring_core::Options::default().entries(4)).unwrap();
    assert_eq!(errno(send_blind(MsgRing::new(created.as_raw_fd(), 1, 0)).unwrap_err()), Some(libc::EBADFD));
}
