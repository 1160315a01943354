//! Cancellation on a real kernel: reads parked on empty pipes are
//! cancelled by user data, by file (plain and fixed), by opcode, all
//! matches and any request, while unrelated requests survive.

mod common;

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use uring_core::{Error, Keep, Ring, Sqe, SqeContext, sys};
use uring_ops::cancel::{AsyncCancel, CancelOps, stamped};
use uring_ops::prelude::*;
use uring_ops::timeout::{TimeoutOps, TimeoutRemove};

const ECANCELED: i32 = -libc::ECANCELED;
const ENOENT: i32 = -libc::ENOENT;
const READ: u8 = sys::IORING_OP_READ as u8;

/// Request `n`'s token as built; a target is the token as pushed, with the
/// opcode stamped in (`ctx(n).with_op(READ)`): the kernel matches all 64
/// bits.
fn ctx(n: u64) -> SqeContext {
    SqeContext::token(n).unwrap() // a token: the push stamps the opcode in
}

/// A plain `read` into caller memory (the file family lives elsewhere):
/// enough to park a request on an empty pipe.
#[derive(Debug, Clone, Copy)]
struct PipeRead {
    fd: Target,
    buf: *mut u8,
    len: u32,
}

impl Prepare for PipeRead {
    const CODE: u8 = READ;
    fn prepare(self, sqe: &mut Sqe, _keep: &mut Keep) {
        let PipeRead { fd, buf, len } = self;
        *sqe = Sqe::new(Self::CODE);
        fd.apply(sqe);
        sqe.set_addr(buf as u64);
        sqe.len = len;
        sqe.set_off(u64::MAX);
    }
}

/// Parks a read of `fd` into `buf` under `c`.
fn park(ring: &mut Ring, c: SqeContext, fd: Target, buf: &mut [u8; 8]) {
    let op = PipeRead { fd, buf: buf.as_mut_ptr(), len: 8 };
    // SAFETY: every test keeps its buffers alive until the read's CQE is
    // reaped (each test reaps every request it parks).
    unsafe { ring.push_op_unchecked(c, op) }.unwrap();
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a writable array of two ints.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: pipe2 returned two fresh descriptors that nothing else owns.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn by_user_data(done: &[common::Done], c: SqeContext) -> common::Done {
    *done.iter().find(|d| d.user_data == c.raw()).unwrap_or_else(|| panic!("no CQE for {c:?} in {done:?}"))
}

/// Submits, and checks the parked requests really are parked.
fn settle(ring: &mut Ring) {
    ring.submit().unwrap();
    common::expect_none(ring, Duration::from_millis(20));
}

#[test]
fn cancel_by_user_data() {
    let mut ring = common::ring(8);
    let (r, _w) = pipe();
    let mut buf = [0u8; 8];
    // A packed context: the key is the context as stamped.
    let read_ctx = SqeContext::for_fd(r.as_raw_fd());
    let op = PipeRead { fd: Target::Fd(r.as_raw_fd()), buf: buf.as_mut_ptr(), len: 8 };
    // SAFETY: `buf` outlives the read's CQE, reaped below.
    unsafe { ring.push_op_unchecked(read_ctx, op) }.unwrap();
    settle(&mut ring);
    let key = stamped(read_ctx, op);
    assert_eq!(key.op(), Some(READ));
    ring.cancel(ctx(2), key).unwrap();
    let done = common::reap(&mut ring, 2);
    assert_eq!(by_user_data(&done, key).res, ECANCELED, "{done:?}");
    assert_eq!(by_user_data(&done, ctx(2)).res, 0);
}

#[test]
fn nothing_to_cancel_is_enoent() {
    let mut ring = common::ring(8);
    ring.cancel(ctx(1), ctx(42).with_op(READ)).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, ENOENT);
    // All matches of nothing is a count of 0, not ENOENT.
    ring.cancel_any(ctx(2)).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 0);
    ring.push_op(ctx(3), AsyncCancel::new(ctx(42).with_op(READ)).all()).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 0);
}

#[test]
fn cancel_by_fd_leaves_other_files_alone() {
    let mut ring = common::ring(8);
    let (a, _aw) = pipe();
    let (b, bw) = pipe();
    let (mut b1, mut b2, mut b3) = ([0u8; 8], [0u8; 8], [0u8; 8]);
    park(&mut ring, ctx(1), Target::Fd(a.as_raw_fd()), &mut b1);
    park(&mut ring, ctx(2), Target::Fd(a.as_raw_fd()), &mut b2);
    park(&mut ring, ctx(3), Target::Fd(b.as_raw_fd()), &mut b3);
    settle(&mut ring);

    // One match only: the first read of `a`.
    ring.push_op(ctx(4), AsyncCancel::fd(Target::Fd(a.as_raw_fd()))).unwrap();
    let done = common::reap(&mut ring, 2);
    assert_eq!(by_user_data(&done, ctx(4)).res, 0, "{done:?}");
    assert_eq!(done.iter().filter(|d| d.res == ECANCELED).count(), 1);
    let first = done.iter().find(|d| d.res == ECANCELED).unwrap().user_data;

    // Then the rest of `a` (the ring method cancels every match).
    ring.cancel_fd(ctx(5), Target::Fd(a.as_raw_fd())).unwrap();
    let done = common::reap(&mut ring, 2);
    assert_eq!(by_user_data(&done, ctx(5)).res, 1, "{done:?}");
    let second = done.iter().find(|d| d.res == ECANCELED).unwrap().user_data;
    let mut both = [first, second];
    both.sort_unstable();
    assert_eq!(both, [ctx(1).raw(), ctx(2).raw()]);

    // The read of `b` is still parked, and completes with data.
    common::expect_none(&mut ring, Duration::from_millis(20));
    std::fs::File::from(bw).write_all(b"still").unwrap();
    let d = common::reap_one(&mut ring);
    assert_eq!((d.user_data, d.res), (ctx(3).raw(), 5));
    assert_eq!(&b3[..5], b"still");
}

#[test]
fn cancel_all_on_one_file_counts_them() {
    let mut ring = common::ring(8);
    let (a, _aw) = pipe();
    let (mut b1, mut b2, mut b3) = ([0u8; 8], [0u8; 8], [0u8; 8]);
    for (n, b) in [(1, &mut b1), (2, &mut b2), (3, &mut b3)] {
        park(&mut ring, ctx(n), Target::Fd(a.as_raw_fd()), b);
    }
    settle(&mut ring);
    ring.push_op(ctx(4), AsyncCancel::fd(Target::Fd(a.as_raw_fd())).all()).unwrap();
    let done = common::reap(&mut ring, 4);
    assert_eq!(by_user_data(&done, ctx(4)).res, 3, "{done:?}");
    for n in 1..=3 {
        assert_eq!(by_user_data(&done, ctx(n)).res, ECANCELED);
    }
}

#[test]
fn cancel_by_fixed_file() {
    let mut ring = common::ring(8);
    let (a, _aw) = pipe();
    let (b, _bw) = pipe();
    ring.register().files(&[a.as_raw_fd(), b.as_raw_fd()]).unwrap();
    let (mut b1, mut b2) = ([0u8; 8], [0u8; 8]);
    park(&mut ring, ctx(1), Target::Fixed(0), &mut b1);
    park(&mut ring, ctx(2), Target::Fixed(1), &mut b2);
    settle(&mut ring);
    ring.cancel_fd(ctx(3), Target::Fixed(1)).unwrap();
    let done = common::reap(&mut ring, 2);
    assert_eq!(by_user_data(&done, ctx(3)).res, 1, "{done:?}");
    assert_eq!(by_user_data(&done, ctx(2)).res, ECANCELED);
    common::expect_none(&mut ring, Duration::from_millis(20));
    ring.cancel_fd(ctx(4), Target::Fixed(0)).unwrap();
    let done = common::reap(&mut ring, 2);
    assert_eq!(by_user_data(&done, ctx(1)).res, ECANCELED, "{done:?}");
}

#[test]
fn cancel_by_opcode_spares_other_opcodes() {
    let mut ring = common::ring(8);
    if ring.features().kernel_version().is_some_and(|v| v < (6, 6)) {
        return common::skip("cancel_by_opcode_spares_other_opcodes", "IORING_ASYNC_CANCEL_OP needs Linux 6.6");
    }
    let (a, _aw) = pipe();
    let (b, _bw) = pipe();
    let (mut b1, mut b2) = ([0u8; 8], [0u8; 8]);
    park(&mut ring, ctx(1), Target::Fd(a.as_raw_fd()), &mut b1);
    park(&mut ring, ctx(2), Target::Fd(b.as_raw_fd()), &mut b2);
    ring.timeout(ctx(3), Duration::from_secs(30)).unwrap();
    settle(&mut ring);

    ring.cancel_opcode(ctx(4), READ).unwrap();
    let done = common::reap(&mut ring, 3);
    assert_eq!(by_user_data(&done, ctx(4)).res, 2, "{done:?}");
    assert_eq!(by_user_data(&done, ctx(1)).res, ECANCELED);
    assert_eq!(by_user_data(&done, ctx(2)).res, ECANCELED);

    // The timeout survived; opcode and user data together find it.
    common::expect_none(&mut ring, Duration::from_millis(20));
    ring.push_op(
        ctx(5),
        AsyncCancel::opcode(sys::IORING_OP_TIMEOUT as u8).and_user_data(ctx(99).with_op(sys::IORING_OP_TIMEOUT as u8)),
    )
    .unwrap();
    assert_eq!(common::reap_one(&mut ring).res, ENOENT);
    ring.push_op(
        ctx(6),
        AsyncCancel::opcode(sys::IORING_OP_TIMEOUT as u8).and_user_data(ctx(3).with_op(sys::IORING_OP_TIMEOUT as u8)),
    )
    .unwrap();
    let done = common::reap(&mut ring, 2);
    assert_eq!(by_user_data(&done, ctx(6)).res, 0, "{done:?}");
    assert_eq!(by_user_data(&done, ctx(3)).res, ECANCELED);
}

#[test]
fn cancel_any_takes_everything() {
    let mut ring = common::ring(8);
    let (a, _aw) = pipe();
    let (b, _bw) = pipe();
    let (mut b1, mut b2) = ([0u8; 8], [0u8; 8]);
    park(&mut ring, ctx(1), Target::Fd(a.as_raw_fd()), &mut b1);
    park(&mut ring, ctx(2), Target::Fd(b.as_raw_fd()), &mut b2);
    ring.timeout(ctx(3), Duration::from_secs(30)).unwrap();
    settle(&mut ring);
    ring.cancel_any(ctx(4)).unwrap();
    let done = common::reap(&mut ring, 4);
    assert_eq!(by_user_data(&done, ctx(4)).res, 3, "{done:?}");
    for n in 1..=3 {
        assert_eq!(by_user_data(&done, ctx(n)).res, ECANCELED);
    }
    common::expect_none(&mut ring, Duration::from_millis(20));
}

#[test]
fn errors_before_and_after_submission() {
    let mut ring = common::ring(8);
    // ANY takes no other criterion: refused before an SQE is taken.
    let err = ring.push_op(ctx(1), AsyncCancel::any().and_fd(Target::Fd(0))).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    let err = ring.push_op(ctx(1), AsyncCancel::any().and_opcode(READ)).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert_eq!(ring.sq_pending(), 0);

    // A descriptor that is not open: the kernel answers EBADF. (Not a
    // just-closed one: another test thread may reopen that number and have
    // a read pending on it.)
    let closed = common::NEVER_OPEN_FD;
    ring.cancel_fd(ctx(2), Target::Fd(closed)).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::EBADF);
    // An empty fixed slot too.
    ring.register().files_sparse(2).unwrap();
    ring.cancel_fd(ctx(3), Target::Fixed(1)).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::EBADF);
    // A timeout removal cannot reach a read.
    let (b, _bw) = pipe();
    let mut buf = [0u8; 8];
    park(&mut ring, ctx(4), Target::Fd(b.as_raw_fd()), &mut buf);
    ring.push_op(ctx(5), TimeoutRemove::new(ctx(4).with_op(READ))).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, ENOENT);
    ring.cancel(ctx(6), ctx(4).with_op(READ)).unwrap();
    assert_eq!(common::reap(&mut ring, 2).len(), 2);
}
