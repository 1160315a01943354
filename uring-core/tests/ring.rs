//! Ring lifecycle, submission and completion against the running kernel.

mod common;

use std::time::{Duration, Instant};

use common::*;
use uring_core::{CqeSize, CqeSlot, Error, FeatureFlags, Options, Ring, SqeFlags, State, WaitArgs, sys};

#[test]
fn nop_round_trip_through_wait() {
    let mut ring = ring(8);
    push_nop(&mut ring, 42).unwrap();
    assert_eq!(ring.sq_pending(), 1);
    let mut slots = [CqeSlot::EMPTY; 4];
    let r = ring.wait_for(&mut slots, 1, Some(Duration::from_secs(5))).unwrap();
    assert_eq!(r.len(), 1);
    let c = r.get(0).unwrap();
    assert_eq!((c.user_data(), c.res(), c.raw_flags()), (42, 0, 0));
    assert!(c.error().is_none());
    assert!(matches!(ring.reap(&mut slots), Err(Error::WouldBlock)), "nothing left is WouldBlock, not an error");
}

#[test]
fn injected_results_and_errors_come_back_raw() {
    let mut ring = ring(8);
    // SAFETY: NOPs name no memory.
    unsafe {
        ring.push(&nop_result(1, 1234)).unwrap();
        ring.push(&nop_result(2, -libc::EBADF)).unwrap();
    }
    let got = reap(&mut ring, 2);
    assert_eq!(got, vec![(1, 1234, 0), (2, -libc::EBADF, 0)]);
    let mut slots = [CqeSlot::EMPTY; 1];
    // SAFETY: a NOP names no memory.
    unsafe { ring.push(&nop_result(3, -libc::ENOENT)).unwrap() };
    let r = ring.wait_for(&mut slots, 1, None).unwrap();
    let c = r.get(0).unwrap();
    assert_eq!(c.error().unwrap().raw_os_error(), Some(libc::ENOENT));
    assert_eq!(c.result().unwrap_err().kind(), std::io::ErrorKind::NotFound);
}

#[test]
fn full_queue_is_reported_not_flushed() {
    let mut ring = ring(4);
    for i in 0..4 {
        push_nop(&mut ring, i).unwrap();
    }
    assert!(matches!(push_nop(&mut ring, 99), Err(Error::QueueFull { entries: 4 })));
    assert_eq!(ring.sq_pending(), 4, "the failed push did not flush anything");
    assert_eq!(ring.submit().unwrap(), 4);
    push_nop(&mut ring, 4).unwrap();
    let got: Vec<u64> = reap(&mut ring, 5).into_iter().map(|c| c.0).collect();
    assert_eq!(got, vec![0, 1, 2, 3, 4]);
    // push_all is all or nothing.
    let four: Vec<_> = (10..14).map(nop).collect();
    // SAFETY: NOPs name no memory.
    unsafe { ring.push_all(&four[..3]).unwrap() };
    // SAFETY: as above.
    assert!(matches!(unsafe { ring.push_all(&four[..2]) }, Err(Error::QueueFull { .. })));
    assert_eq!(ring.sq_pending(), 3);
    // A chain longer than the SQ can never fit: a clear error, not a QueueFull forever.
    let five: Vec<_> = (20..25).map(nop).collect();
    // SAFETY: as above.
    assert!(matches!(unsafe { ring.push_all(&five) }, Err(Error::InvalidArgument(_))));
    // No slots to reap into is refused too, and loses nothing.
    assert!(matches!(ring.reap(&mut []), Err(Error::InvalidArgument(_))));
    assert!(matches!(ring.wait_for(&mut [], 1, None), Err(Error::InvalidArgument(_))));
    assert_eq!(reap(&mut ring, 3).len(), 3);
}

#[test]
fn lifecycle_not_started_double_start_stopped() {
    let mut ring = Ring::new(Options::small()).unwrap();
    assert_eq!(ring.state(), State::Created);
    assert!(matches!(push_nop(&mut ring, 1), Err(Error::NotStarted)));
    let mut slots = [CqeSlot::EMPTY; 1];
    assert!(matches!(ring.reap(&mut slots), Err(Error::NotStarted)));
    ring.start().unwrap();
    assert!(matches!(ring.start(), Err(Error::AlreadyStarted)));
    push_nop(&mut ring, 1).unwrap();
    assert_eq!(reap(&mut ring, 1)[0].0, 1);
    ring.stop();
    ring.stop(); // idempotent
    assert_eq!(ring.state(), State::Stopped);
    assert!(matches!(push_nop(&mut ring, 1), Err(Error::Stopped)));
    assert!(matches!(ring.submit(), Err(Error::Stopped)));
    assert!(matches!(ring.reap(&mut slots), Err(Error::Stopped)));
    assert!(matches!(ring.wait_for(&mut slots, 1, None), Err(Error::Stopped)), "a wait on a stopped ring returns");
    assert!(matches!(ring.completions(), Err(Error::Stopped)));
    assert!(matches!(ring.start(), Err(Error::Stopped)));
    assert!(matches!(ring.register().personality(), Err(Error::Stopped)));
    assert!(matches!(ring.resize(8, 16), Err(Error::Stopped)));
}

#[test]
fn zero_copy_completions_pass() {
    let mut ring = ring(16);
    for i in 0..10 {
        push_nop(&mut ring, i).unwrap();
    }
    ring.submit_and_wait(10).unwrap();
    assert_eq!(ring.cq_ready(), 10);
    let mut seen = Vec::new();
    {
        let mut pass = ring.completions().unwrap();
        while let Some(c) = pass.next() {
            seen.push(c.user_data());
            if seen.len() == 4 {
                break;
            }
        }
    }
    assert_eq!(ring.cq_ready(), 6, "dropping the pass released exactly the entries it visited");
    let n = ring.completions().unwrap().for_each(|c| seen.push(c.user_data()));
    assert_eq!(n, 6);
    assert_eq!(seen, (0..10).collect::<Vec<_>>());
}

#[test]
fn wait_completions_submits_waits_and_passes_in_place() {
    // Deferred task work (the default options): the completions are
    // posted only when the ring enters with GETEVENTS, which the wait does.
    let mut ring = ring(16);
    for want in [1u32, 5] {
        for i in 0..want {
            push_nop(&mut ring, u64::from(100 * want + i)).unwrap();
        }
        let mut seen = Vec::new();
        let n = ring.wait_completions(want).unwrap().for_each(|c| seen.push((c.user_data(), c.res())));
        assert_eq!(n, want as usize, "at least `want` ready, exactly `want` pushed");
        assert_eq!(seen, (0..want).map(|i| (u64::from(100 * want + i), 0)).collect::<Vec<_>>());
        assert_eq!(ring.cq_ready(), 0, "the pass released every entry it visited");
    }
    // 0: submit only, then whatever is ready (here: the NOP, once the
    // deferred task work has run).
    push_nop(&mut ring, 7).unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.is_empty() {
        assert!(Instant::now() < deadline, "the NOP never completed");
        ring.wait_completions(0).unwrap().for_each(|c| got.push(c.user_data()));
    }
    assert_eq!(got, [7]);
    // A stopped ring refuses, by name.
    ring.stop();
    assert!(matches!(ring.wait_completions(1), Err(Error::Stopped)));
}

#[test]
fn timeout_wait_with_nothing_is_would_block() {
    let mut ring = ring(4);
    let mut slots = [CqeSlot::EMPTY; 1];
    let t = Instant::now();
    assert!(matches!(ring.wait_for(&mut slots, 1, Some(Duration::from_millis(30))), Err(Error::WouldBlock)));
    assert!(t.elapsed() >= Duration::from_millis(25), "the wait actually blocked ({:?})", t.elapsed());
}

#[test]
fn cqe32_and_mixed_rings_carry_the_extra_words() {
    for size in [CqeSize::Big, CqeSize::Mixed] {
        let mut ring = Ring::new(Options::small().cqe_size(size)).unwrap();
        ring.start().unwrap();
        let mut big = nop(7);
        big.set_op_flags(sys::IORING_NOP_CQE32);
        big.set_off(0x1111_2222_3333_4444);
        big.set_addr(0x5555_6666_7777_8888);
        // SAFETY: NOPs name no memory.
        unsafe {
            ring.push(&nop(6)).unwrap();
            ring.push(&big).unwrap();
            ring.push(&nop(8)).unwrap();
        }
        ring.submit_and_wait(3).unwrap();
        let mut slots = [CqeSlot::EMPTY; 8];
        let r = ring.reap(&mut slots).unwrap();
        let v: Vec<_> = r.iter().map(|c| (c.user_data(), c.big())).collect();
        let small = if size == CqeSize::Big { Some([0, 0]) } else { None };
        assert_eq!(
            v,
            vec![(6, small), (7, Some([0x1111_2222_3333_4444, 0x5555_6666_7777_8888])), (8, small)],
            "{size:?}"
        );
    }
}

#[test]
fn mixed_ring_wraps_big_cqes_with_skip_entries() {
    // Many rounds of small+big CQEs through a small mixed CQ: big entries
    // that would straddle the end are preceded by a kernel skip entry.
    let mut ring = Ring::new(Options::default().entries(4).cq_entries(8).cqe_size(CqeSize::Mixed)).unwrap();
    ring.start().unwrap();
    let mut slots = [CqeSlot::EMPTY; 8];
    for round in 0u64..200 {
        let mut big = nop(round * 2 + 1);
        big.set_op_flags(sys::IORING_NOP_CQE32);
        big.set_off(round);
        big.set_addr(!round);
        // SAFETY: NOPs name no memory.
        unsafe {
            ring.push(&nop(round * 2)).unwrap();
            ring.push(&big).unwrap();
        }
        ring.submit_and_wait(2).unwrap();
        let r = ring.reap(&mut slots).unwrap();
        let v: Vec<_> = r.iter().map(|c| (c.user_data(), c.big())).collect();
        assert_eq!(v, vec![(round * 2, None), (round * 2 + 1, Some([round, !round]))], "round {round}");
    }
}

#[test]
fn sqe_flags_link_chains_and_skip_success() {
    let mut ring = ring(8);
    let mut a = nop_result(1, -libc::EINVAL);
    a.set_sqe_flags(SqeFlags::IO_LINK);
    let b = nop(2);
    let mut c = nop(3);
    c.set_sqe_flags(SqeFlags::CQE_SKIP_SUCCESS);
    let d = nop(4);
    // SAFETY: NOPs name no memory.
    unsafe { ring.push_all(&[a, b, c, d]).unwrap() };
    let mut got = reap(&mut ring, 3);
    // The cancellation of the link is posted after the independent NOP 4.
    got.sort();
    assert_eq!(got[0], (1, -libc::EINVAL, 0), "the failing head of the chain");
    assert_eq!(got[1], (2, -libc::ECANCELED, 0), "the linked NOP is cancelled");
    assert_eq!(got[2], (4, 0, 0), "NOP 3 succeeded silently (CQE_SKIP_SUCCESS)");
    let mut slots = [CqeSlot::EMPTY; 4];
    assert!(matches!(ring.reap(&mut slots), Err(Error::WouldBlock)));

    // A hard link keeps going after a failure.
    let mut a = nop_result(5, -libc::EIO);
    a.set_sqe_flags(SqeFlags::IO_HARDLINK);
    // SAFETY: NOPs name no memory.
    unsafe { ring.push_all(&[a, nop(6)]).unwrap() };
    let mut got = reap(&mut ring, 2);
    got.sort();
    assert_eq!(got, vec![(5, -libc::EIO, 0), (6, 0, 0)]);
}

#[test]
fn a_single_issuer_ring_belongs_to_the_thread_that_started_it() {
    // Created here, started on another thread: that thread is the issuer.
    let ring = Ring::new(Options::small()).unwrap();
    let got = std::thread::spawn(move || {
        let mut ring = ring;
        ring.start().unwrap();
        push_nop(&mut ring, 1).unwrap();
        reap(&mut ring, 1)[0].0
    })
    .join()
    .unwrap();
    assert_eq!(got, 1);

    // Started here, then moved away: the kernel refuses the other thread.
    for opts in [Options::small(), Options::small().defer_taskrun(false), Options::small().register_ring_fd(true)] {
        let mut ring = Ring::new(opts.clone()).unwrap();
        ring.start().unwrap();
        let mut ring = std::thread::spawn(move || {
            push_nop(&mut ring, 2).unwrap();
            assert!(matches!(ring.submit(), Err(Error::WrongThread { call: "io_uring_enter" })), "{opts:?}");
            let e = ring.register().personality().unwrap_err();
            assert!(matches!(e, Error::WrongThread { call: "IORING_REGISTER_PERSONALITY" }), "{e:?}");
            assert!(e.to_string().contains("start"), "the message says what to do: {e}");
            ring
        })
        .join()
        .unwrap();
        // Back on its own thread, nothing was lost.
        assert_eq!(reap(&mut ring, 1)[0].0, 2);
    }
}

#[test]
fn min_wait_returns_a_partial_batch_after_the_minimum_wait() {
    let mut ring = ring(8);
    if !ring.features().has(FeatureFlags::MIN_TIMEOUT) {
        println!("SKIPPED: IORING_FEAT_MIN_TIMEOUT needs Linux 6.12; this kernel lacks it");
        return;
    }
    let mut slots = [CqeSlot::EMPTY; 4];
    // One completion ready, four wanted: without min_wait the wait runs to
    // its 2 s timeout; with a 30 ms minimum wait it returns the one.
    push_nop(&mut ring, 1).unwrap();
    let args = WaitArgs {
        min: 4,
        timeout: Some(Duration::from_secs(2)),
        min_wait: Some(Duration::from_millis(30)),
        no_iowait: false,
        ..WaitArgs::default()
    };
    let t = Instant::now();
    let r = ring.wait_with(&mut slots, &args).unwrap();
    let took = t.elapsed();
    assert_eq!(r.len(), 1);
    assert!(took < Duration::from_millis(1500), "returned after the minimum wait, not the timeout ({took:?})");
    // Nothing at all: the full timeout applies.
    let t = Instant::now();
    let args = WaitArgs { timeout: Some(Duration::from_millis(60)), ..args };
    assert!(matches!(ring.wait_with(&mut slots, &args), Err(Error::WouldBlock)));
    assert!(t.elapsed() >= Duration::from_millis(50), "{:?}", t.elapsed());
}

#[test]
fn no_iowait_waits_or_says_unsupported() {
    let mut ring = ring(8);
    push_nop(&mut ring, 5).unwrap();
    let mut slots = [CqeSlot::EMPTY; 2];
    let args = WaitArgs { min: 1, no_iowait: true, ..WaitArgs::default() };
    match ring.wait_with(&mut slots, &args) {
        Ok(r) => assert_eq!(r.get(0).unwrap().user_data(), 5),
        Err(Error::Unsupported { what, .. }) => {
            assert!(!ring.features().has(FeatureFlags::NO_IOWAIT));
            println!("SKIPPED: {what} is not in this kernel");
        }
        Err(e) => panic!("{e}"),
    }
}

/// `IORING_SQ_CQ_OVERFLOW`: more completions than the CQ holds wait in the
/// kernel's backlog; the flag says so, reaping flushes them all and clears
/// it, and none is lost. A default `Ring` (deferred task work, no
/// `TASKRUN_FLAG`) cannot tell pending task work: `None`, not `false`.
#[test]
fn cq_overflow_pending_reports_the_backlog_until_it_is_reaped() {
    let mut ring = Ring::new(Options::default().entries(2).cq_entries(4)).unwrap();
    ring.start().unwrap();
    assert_eq!(ring.task_work_pending(), None);
    for round in 0..3u64 {
        for i in 0..2 {
            // SAFETY: a NOP names no memory.
            unsafe { ring.push(&nop(round * 2 + i)) }.unwrap();
        }
        ring.submit().unwrap();
    }
    assert!(ring.cq_overflow_pending(), "6 completions, a CQ of 4");
    let mut seen = Vec::new();
    let mut slots = [CqeSlot::EMPTY; 8];
    while seen.len() < 6 {
        let done = ring.wait_for(&mut slots, 1, Some(Duration::from_secs(5))).unwrap();
        seen.extend(done.iter().map(|c| c.user_data()));
    }
    seen.sort();
    assert_eq!(seen, [0, 1, 2, 3, 4, 5]);
    assert!(!ring.cq_overflow_pending(), "the backlog was flushed");
}

/// `IORING_SQ_TASKRUN`: on a ring with deferred task work and
/// `TASKRUN_FLAG`, a poll that fires when its pipe is written leaves its
/// completion as task work, which runs only when the ring is entered: the
/// flag says so while the CQ is empty, and the reap runs it and clears it.
#[test]
fn task_work_pending_reports_a_completion_the_kernel_still_owes() {
    let mut ring = Ring::new(Options::small().taskrun_flag(true)).unwrap();
    ring.start().unwrap();
    let mut fds = [0; 2];
    // SAFETY: `fds` is a writable array of two ints.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    let mut poll = uring_core::Sqe::new(sys::IORING_OP_POLL_ADD as u8);
    poll.fd = fds[0];
    poll.set_op_flags(libc::POLLIN as u32);
    uring_core::SqeContext::token(5).unwrap().stamp(&mut poll).unwrap();
    // SAFETY: a poll names no memory.
    unsafe { ring.push(&poll) }.unwrap();
    ring.submit().unwrap();
    assert_eq!(ring.task_work_pending(), Some(false), "nothing owed yet");
    // SAFETY: one byte from a valid buffer to the pipe's write end.
    assert_eq!(unsafe { libc::write(fds[1], b"!".as_ptr().cast(), 1) }, 1);
    assert_eq!(ring.task_work_pending(), Some(true), "the poll fired; its completion waits for us");
    assert_eq!(ring.cq_ready(), 0, "owed, not posted");
    let mut slots = [CqeSlot::EMPTY; 2];
    let done = ring.wait_for(&mut slots, 1, Some(Duration::from_secs(5))).unwrap();
    let cqe = done.get(0).unwrap();
    assert_eq!(cqe.context().as_token(), Some(5));
    assert!(cqe.res() & libc::POLLIN as i32 != 0);
    assert_eq!(ring.task_work_pending(), Some(false), "the reap ran it");
    // SAFETY: both ends are ours and closed once.
    unsafe { libc::close(fds[0]) };
    // SAFETY: as above.
    unsafe { libc::close(fds[1]) };
}
