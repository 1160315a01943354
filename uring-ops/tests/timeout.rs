//! Timeouts on a real kernel: expiry (never before the deadline), counts,
//! absolute deadlines on each clock, removal, update, multishot, and the
//! linked-timeout helper with both outcomes.

mod common;

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant, SystemTime};

use uring_core::{Error, Keep, Sqe, SqeContext, sys};
use uring_ops::cancel::stamped;
use uring_ops::cmd::Nop;
use uring_ops::prelude::*;
use uring_ops::timeout::{Clock, Deadline, LinkTimeout, Timeout, TimeoutOps, TimeoutRemove, TimeoutUpdate};

const ETIME: i32 = -libc::ETIME;
const ECANCELED: i32 = -libc::ECANCELED;

fn ctx(n: u64) -> SqeContext {
    SqeContext::token(n).unwrap() // a token: the push stamps the opcode in
}

/// Timeout `n` as the kernel saw it: the token with the timeout's opcode
/// stamped in (what a removal or update must name).
fn timer(n: u64) -> SqeContext {
    ctx(n).with_op(sys::IORING_OP_TIMEOUT as u8)
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
    const CODE: u8 = sys::IORING_OP_READ as u8;
    fn prepare(self, sqe: &mut Sqe, _keep: &mut Keep) {
        let PipeRead { fd, buf, len } = self;
        *sqe = Sqe::new(Self::CODE);
        fd.apply(sqe);
        sqe.set_addr(buf as u64);
        sqe.len = len;
        sqe.set_off(u64::MAX);
    }
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a writable array of two ints.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: pipe2 returned two fresh descriptors that nothing else owns.
    unsafe { (std::os::fd::FromRawFd::from_raw_fd(fds[0]), std::os::fd::FromRawFd::from_raw_fd(fds[1])) }
}

fn by_user_data(done: &[common::Done], c: SqeContext) -> common::Done {
    *done.iter().find(|d| d.user_data == c.raw()).unwrap_or_else(|| panic!("no CQE for {c:?} in {done:?}"))
}

#[test]
fn a_timeout_expires_with_etime_and_not_before_its_duration() {
    let mut ring = common::ring(8);
    let d = Duration::from_millis(50);
    let start = Instant::now();
    ring.timeout(ctx(1), d).unwrap();
    let done = common::reap_one(&mut ring);
    assert_eq!((done.user_data, done.res), (ctx(1).raw(), ETIME));
    assert!(start.elapsed() >= d, "fired after {:?}, before {d:?}", start.elapsed());
}

#[test]
fn a_boottime_timeout_expires_too() {
    let mut ring = common::ring(8);
    let d = Duration::from_millis(20);
    let start = Clock::Boottime.now();
    ring.push_op(ctx(1), Timeout::new(d).clock(Clock::Boottime)).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, ETIME);
    assert!(Clock::Boottime.now().since_zero() - start.since_zero() >= d);
}

#[test]
fn a_count_completes_the_timeout_with_zero_before_it_expires() {
    let mut ring = common::ring(8);
    ring.push_op(ctx(1), Timeout::new(Duration::from_secs(30)).count(2)).unwrap();
    ring.push_op(ctx(2), Nop::new()).unwrap();
    ring.push_op(ctx(3), Nop::new()).unwrap();
    let done = common::reap(&mut ring, 3);
    assert_eq!(by_user_data(&done, ctx(1)).res, 0, "{done:?}");
    common::expect_none(&mut ring, Duration::from_millis(20));
}

#[test]
fn absolute_timeouts_fire_at_their_deadline_on_each_clock() {
    let mut ring = common::ring(8);
    let mono = Deadline::after(Clock::Monotonic, Duration::from_millis(40));
    ring.timeout_at(ctx(1), mono).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, ETIME);
    assert!(Clock::Monotonic.now().since_zero() >= mono.since_zero());

    let wall = Deadline::from_system_time(SystemTime::now() + Duration::from_millis(40)).unwrap();
    assert_eq!(wall.clock(), Clock::Realtime);
    ring.push_op(ctx(2), Timeout::at(wall)).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, ETIME);
    assert!(Clock::Realtime.now().since_zero() >= wall.since_zero());

    let boot = Deadline::after(Clock::Boottime, Duration::from_millis(20));
    ring.push_op(ctx(3), Timeout::at(boot)).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, ETIME);
    assert!(Clock::Boottime.now().since_zero() >= boot.since_zero());

    // A deadline already past expires at once.
    ring.push_op(ctx(4), Timeout::at(Deadline::new(Clock::Monotonic, Duration::from_secs(1)))).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, ETIME);
}

#[test]
fn removing_a_timeout_cancels_it() {
    let mut ring = common::ring(8);
    // A packed context: the key is the context as stamped.
    let timeout_ctx = SqeContext::for_fd(5);
    let timeout = Timeout::new(Duration::from_secs(30));
    ring.push_op(timeout_ctx, timeout).unwrap();
    let key = stamped(timeout_ctx, timeout);
    ring.timeout_remove(ctx(2), key).unwrap();
    let done = common::reap(&mut ring, 2);
    assert_eq!(by_user_data(&done, key).res, ECANCELED, "{done:?}");
    assert_eq!(by_user_data(&done, ctx(2)).res, 0);

    ring.push_op(ctx(3), TimeoutRemove::new(timer(99))).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::ENOENT);
}

#[test]
fn an_update_extends_a_pending_timeout() {
    let mut ring = common::ring(8);
    let longer = Duration::from_millis(1500);
    let start = Instant::now();
    ring.timeout(ctx(1), Duration::from_secs(1)).unwrap();
    ring.timeout_update(ctx(2), timer(1), longer).unwrap();
    let first = common::reap_one(&mut ring);
    assert_eq!((first.user_data, first.res), (ctx(2).raw(), 0));
    let fired = common::reap_one(&mut ring);
    assert_eq!((fired.user_data, fired.res), (ctx(1).raw(), ETIME));
    assert!(start.elapsed() >= longer, "fired after {:?}, before the update's {longer:?}", start.elapsed());

    ring.push_op(ctx(3), TimeoutUpdate::new(timer(99), longer)).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::ENOENT);
}

#[test]
fn an_absolute_update_moves_the_deadline() {
    let mut ring = common::ring(8);
    ring.timeout(ctx(1), Duration::from_secs(30)).unwrap();
    let soon = Deadline::after(Clock::Monotonic, Duration::from_millis(20));
    ring.push_op(ctx(2), TimeoutUpdate::at(timer(1), soon)).unwrap();
    let done = common::reap(&mut ring, 2);
    assert_eq!(by_user_data(&done, ctx(2)).res, 0);
    assert_eq!(by_user_data(&done, ctx(1)).res, ETIME);
    assert!(Clock::Monotonic.now().since_zero() >= soon.since_zero());
}

#[test]
fn a_multishot_timeout_fires_n_times() {
    let mut ring = common::ring(8);
    if ring.features().kernel_version().is_some_and(|v| v < (6, 4)) {
        return common::skip("a_multishot_timeout_fires_n_times", "IORING_TIMEOUT_MULTISHOT needs Linux 6.4");
    }
    let period = Duration::from_millis(10);
    let start = Instant::now();
    ring.push_op(ctx(1), Timeout::new(period).multishot(3)).unwrap();
    let done = common::reap(&mut ring, 3);
    assert!(done.iter().all(|d| d.res == ETIME && d.user_data == ctx(1).raw()), "{done:?}");
    assert_eq!(done.iter().map(common::Done::more).collect::<Vec<_>>(), [true, true, false]);
    assert!(start.elapsed() >= period * 3);
    common::expect_none(&mut ring, Duration::from_millis(40));
}

#[test]
fn an_endless_multishot_timeout_runs_until_removed() {
    let mut ring = common::ring(8);
    ring.push_op(ctx(1), Timeout::new(Duration::from_millis(5)).multishot(0)).unwrap();
    let done = common::reap(&mut ring, 2);
    assert!(done.iter().all(|d| d.res == ETIME && d.more()), "{done:?}");
    ring.timeout_remove(ctx(2), timer(1)).unwrap();
    // Reap until the removal and the final (no MORE) CQE of the timer;
    // it may fire a few more times first.
    let mut seen_remove = false;
    let mut ended = false;
    let mut retried = false;
    while !(seen_remove && ended) {
        for d in common::reap(&mut ring, 1) {
            if d.user_data == ctx(2).raw() && (d.res == -libc::EALREADY || d.res == -libc::ENOENT) && !ended {
                // The timer was firing at that instant (-EALREADY), or its
                // expiry was waiting in task work, off the kernel's timer
                // list (-ENOENT; seen on 7.2 under TCG): it stays armed
                // until its final CQE, so ask again, as a caller must.
                ring.timeout_remove(ctx(2), timer(1)).unwrap();
                retried = true;
            } else if d.user_data == ctx(2).raw() {
                // A retry may find the timer gone already (the first
                // removal won after all: seen on 7.0 under TCG).
                assert!(d.res == 0 || (retried && d.res == -libc::ENOENT), "{d:?}");
                seen_remove = true;
            } else if d.more() {
                assert_eq!(d.res, ETIME);
            } else {
                assert_eq!(d.res, ECANCELED);
                ended = true;
            }
        }
    }
}

#[test]
fn an_etime_success_timeout_lets_its_link_run() {
    let mut ring = common::ring(8);
    ring.push_op(
        ctx(1),
        Timeout::new(Duration::from_millis(5)).etime_success().with_sqe_flags(uring_core::SqeFlags::IO_LINK),
    )
    .unwrap();
    ring.push_op(ctx(2), Nop::new()).unwrap();
    let done = common::reap(&mut ring, 2);
    assert_eq!(by_user_data(&done, ctx(1)).res, ETIME);
    assert_eq!(by_user_data(&done, ctx(2)).res, 0, "the NOP linked after ran");

    // Without it, expiry fails the chain.
    ring.push_op(ctx(3), Timeout::new(Duration::from_millis(5)).with_sqe_flags(uring_core::SqeFlags::IO_LINK)).unwrap();
    ring.push_op(ctx(4), Nop::new()).unwrap();
    let done = common::reap(&mut ring, 2);
    assert_eq!(by_user_data(&done, ctx(4)).res, ECANCELED);
}

#[test]
fn bad_arguments_are_refused_before_anything_is_queued() {
    let mut ring = common::ring(8);
    let err = ring.timeout(ctx(1), Duration::MAX).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    let abs = Deadline::after(Clock::Monotonic, Duration::from_millis(5));
    let err = ring.push_op(ctx(1), Timeout::at(abs).multishot(2)).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    let err = ring.push_op(ctx(1), TimeoutUpdate::new(timer(1), Duration::MAX)).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert_eq!(ring.sq_pending(), 0);
}

#[test]
fn a_linked_timeout_with_nothing_to_link_to_is_einval_from_the_kernel() {
    let mut ring = common::ring(8);
    ring.push_op(ctx(1), LinkTimeout::new(Duration::from_millis(5))).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::EINVAL);
}

#[test]
fn deadline_op_wins_the_timeout_is_cancelled() {
    let mut ring = common::ring(8);
    ring.push_with_deadline(ctx(1), Nop::new(), ctx(2), Duration::from_secs(30)).unwrap();
    let done = common::reap(&mut ring, 2);
    assert_eq!(by_user_data(&done, ctx(1)).res, 0);
    assert_eq!(by_user_data(&done, ctx(2)).res, ECANCELED);

    // An operation that fails first also cancels its deadline.
    ring.push_with_deadline(ctx(5), Nop::new().result(-libc::EBADF), ctx(6), Duration::from_secs(30)).unwrap();
    let done = common::reap(&mut ring, 2);
    assert_eq!(by_user_data(&done, ctx(5)).res, -libc::EBADF);
    assert_eq!(by_user_data(&done, ctx(6)).res, ECANCELED);

    // A read of a pipe that has data wins too.
    let (r, w) = pipe();
    std::fs::File::from(w).write_all(b"ready").unwrap();
    let mut buf = [0u8; 16];
    let read = PipeRead { fd: Target::Fd(r.as_raw_fd()), buf: buf.as_mut_ptr(), len: buf.len() as u32 };
    // SAFETY: `buf` outlives both CQEs, reaped below.
    unsafe { ring.push_with_deadline_unchecked(ctx(3), read, ctx(4), Duration::from_secs(30)) }.unwrap();
    let done = common::reap(&mut ring, 2);
    assert_eq!(by_user_data(&done, ctx(3)).res, 5);
    assert_eq!(&buf[..5], b"ready");
    assert_eq!(by_user_data(&done, ctx(4)).res, ECANCELED);
}

#[test]
fn deadline_wins_the_op_is_cancelled() {
    let mut ring = common::ring(8);
    let (r, _w) = pipe();
    let mut buf = [0u8; 16];
    let d = Duration::from_millis(30);
    let start = Instant::now();
    let read = PipeRead { fd: Target::Fd(r.as_raw_fd()), buf: buf.as_mut_ptr(), len: buf.len() as u32 };
    // SAFETY: `buf` outlives both CQEs, reaped below.
    unsafe { ring.push_with_deadline_unchecked(ctx(1), read, ctx(2), d) }.unwrap();
    let done = common::reap(&mut ring, 2);
    assert_eq!(by_user_data(&done, ctx(1)).res, ECANCELED, "{done:?}");
    assert_eq!(by_user_data(&done, ctx(2)).res, ETIME);
    assert!(start.elapsed() >= d);

    // The safe form, with a safe operation that would take longer.
    ring.push_with_deadline(ctx(3), Timeout::new(Duration::from_secs(30)), ctx(4), d).unwrap();
    let done = common::reap(&mut ring, 2);
    assert_eq!(by_user_data(&done, ctx(3)).res, ECANCELED, "{done:?}");
    assert_eq!(by_user_data(&done, ctx(4)).res, ETIME);
}

#[test]
fn a_linked_timeout_can_be_updated() {
    let mut ring = common::ring(8);
    let (r, _w) = pipe();
    let mut buf = [0u8; 16];
    let read = PipeRead { fd: Target::Fd(r.as_raw_fd()), buf: buf.as_mut_ptr(), len: buf.len() as u32 };
    // SAFETY: `buf` outlives both CQEs, reaped below.
    unsafe { ring.push_with_deadline_unchecked(ctx(1), read, ctx(2), Duration::from_secs(30)) }.unwrap();
    ring.submit().unwrap();
    // Only the shortened deadline can end the read within reap's limit.
    ring.push_op(
        ctx(3),
        TimeoutUpdate::new(ctx(2).with_op(sys::IORING_OP_LINK_TIMEOUT as u8), Duration::from_millis(10)).linked(),
    )
    .unwrap();
    let done = common::reap(&mut ring, 3);
    assert_eq!(by_user_data(&done, ctx(3)).res, 0, "{done:?}");
    assert_eq!(by_user_data(&done, ctx(1)).res, ECANCELED);
    assert_eq!(by_user_data(&done, ctx(2)).res, ETIME);
}

#[test]
fn the_deadline_pair_is_all_or_nothing() {
    let mut ring = common::ring(4);
    for i in 0..3 {
        ring.push_op(ctx(10 + i), Nop::new()).unwrap();
    }
    let err = ring.push_with_deadline(ctx(1), Nop::new(), ctx(2), Duration::from_secs(1)).unwrap_err();
    assert!(matches!(err, Error::QueueFull { .. }), "{err}");
    assert_eq!(ring.sq_pending(), 3, "half a pair was queued");

    let stale = ring.pools_mut().acquire_indirect().unwrap();
    ring.pools_mut().release(stale).unwrap();
    common::reap(&mut ring, 3);
    let err = ring.push_with_deadline(ctx(1), Nop::new(), stale, Duration::from_secs(1)).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    let err = ring.push_with_deadline(ctx(1), Nop::new(), ctx(2), Duration::MAX).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert_eq!(ring.sq_pending(), 0, "half a pair was queued");
}

#[test]
fn a_deadline_that_cancels_a_waitid_or_a_futex_wait_completes_with_1_not_etime() {
    // The linked timeout's result is what the kernel's cancel returned,
    // or -ETIME for 0 (`io_req_task_link_timeout`): waitid and futex
    // waits are cancelled through their own lists, whose cancel returns
    // how many requests it cancelled: 1 on 6.18, 7.0 and 7.2. 7.3 reports
    // -ETIME, as for every other request (seen in `cargo xtask vm-test`).
    let mut ring = common::ring(8);
    let mut child = std::process::Command::new("sleep").arg("10").spawn().unwrap();
    // SAFETY: `siginfo_t` is plain data; all-zero is a value.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let d = Duration::from_millis(30);
    // SAFETY: `info` outlives both CQEs, reaped below.
    let waitid = unsafe { uring_ops::wait::Waitid::new(libc::P_PID, child.id(), &mut info, libc::WEXITED) };
    ring.push_with_deadline(ctx(1), waitid, ctx(2), d).unwrap();
    let done = common::reap(&mut ring, 2);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(by_user_data(&done, ctx(1)).res, ECANCELED, "{done:?}");
    assert!([1, ETIME].contains(&by_user_data(&done, ctx(2)).res), "{done:?}");

    static WORD: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(7);
    ring.push_with_deadline(ctx(3), uring_ops::wait::FutexWait::new(&WORD, 7), ctx(4), d).unwrap();
    let done = common::reap(&mut ring, 2);
    assert_eq!(by_user_data(&done, ctx(3)).res, ECANCELED, "{done:?}");
    assert!([1, ETIME].contains(&by_user_data(&done, ctx(4)).res), "{done:?}");
}

#[test]
fn a_deadline_pair_queued_through_linked_joins_the_chain_as_one_link() {
    // `ring.linked().push_with_deadline(..)` puts IO_LINK on both entries:
    // the operation's failure cancels its timeout and the rest of the
    // chain; without `linked()` the entry after the pair is independent.
    let mut ring = common::ring(8);
    let d = Duration::from_secs(5);
    ring.linked().push_with_deadline(ctx(1), Nop::new().result(-libc::EIO), ctx(2), d).unwrap();
    ring.push_op(ctx(3), Nop::new()).unwrap();
    let done = common::reap(&mut ring, 3);
    let res: Vec<i32> = [1, 2, 3].map(|i| by_user_data(&done, ctx(i)).res).to_vec();
    assert_eq!(res, [-libc::EIO, ECANCELED, ECANCELED], "{done:?}");

    ring.push_with_deadline(ctx(4), Nop::new().result(-libc::EIO), ctx(5), d).unwrap();
    ring.push_op(ctx(6), Nop::new()).unwrap();
    let done = common::reap(&mut ring, 3);
    let res: Vec<i32> = [4, 5, 6].map(|i| by_user_data(&done, ctx(i)).res).to_vec();
    assert_eq!(res, [-libc::EIO, ECANCELED, 0], "{done:?}");
}

#[test]
fn removing_a_multishot_timeout_whose_expiry_waits_in_task_work_finds_nothing_and_it_stays_armed() {
    // The kernel behaviour that `TimeoutRemove`'s documentation and the
    // subscription's retry rest on: on a DEFER_TASKRUN ring an expiry of a
    // multishot timeout takes the timer off the list until the issuer runs
    // task work; a removal submitted in between answers -ENOENT.
    let mut ring = common::ring(8);
    ring.push_op(ctx(1), Timeout::new(Duration::from_millis(1)).multishot(0)).unwrap();
    ring.submit().unwrap();
    std::thread::sleep(Duration::from_millis(20));
    ring.timeout_remove(ctx(2), timer(1)).unwrap();
    ring.submit().unwrap();
    let done = common::reap(&mut ring, 2);
    assert_eq!(by_user_data(&done, ctx(2)).res, -libc::ENOENT, "{done:?}");
    let fired = by_user_data(&done, ctx(1));
    assert!(fired.res == ETIME && fired.more(), "{done:?}");
    // Still armed: it fires again, and a second removal ends it.
    let again = common::reap(&mut ring, 1);
    assert!(again[0].user_data == ctx(1).raw() && again[0].more(), "{again:?}");
    ring.timeout_remove(ctx(3), timer(1)).unwrap();
    let mut removed = false;
    let mut ended = false;
    while !(removed && ended) {
        for d in common::reap(&mut ring, 1) {
            if d.user_data == ctx(3).raw() {
                assert_eq!(d.res, 0, "{d:?}");
                removed = true;
            } else if !d.more() {
                assert_eq!(d.res, ECANCELED, "{d:?}");
                ended = true;
            }
        }
    }
}
