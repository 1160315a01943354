//! The generic submission path: `RingOps::push_op` checks, acquires,
//! prepares and stamps contexts truthfully.

mod common;

use std::time::Duration;

use std::os::fd::AsRawFd;

use uring_core::{ContextMode, CqeSlot, Error, SqeContext, SqeFlags, sys};
use uring_ops::cmd::Nop;
use uring_ops::prelude::*;

#[test]
fn direct_context_carries_the_real_opcode_and_flags() {
    let mut ring = common::ring(8);
    let ctx = SqeContext::for_fd(42).with_buf_group(9);
    ring.push_op(ctx, Nop::new().with_sqe_flags(SqeFlags::ASYNC)).unwrap();
    ring.submit_and_wait(1).unwrap();
    let mut slots = [CqeSlot::EMPTY; 4];
    let done = ring.reap(&mut slots).unwrap();
    let cqe = done.get(0).unwrap();
    assert_eq!(cqe.res(), 0);
    let back = cqe.context();
    assert_eq!(back.mode(), ContextMode::Packed);
    assert_eq!(back.op(), Some(sys::IORING_OP_NOP as u8));
    assert_eq!(back.flags(), Some(SqeFlags::ASYNC));
    assert_eq!((back.fd(), back.buf_group()), (Some(42), Some(9)));
}

#[test]
fn injected_results_come_back() {
    let mut ring = common::ring(8);
    ring.push_op(SqeContext::token(7).unwrap(), Nop::new().result(-libc::EBADF)).unwrap();
    let d = common::reap_one(&mut ring);
    assert_eq!(d.res, -libc::EBADF);
}

#[test]
fn indirect_context_sees_the_submitted_sqe() {
    let mut ring = common::ring(8);
    let ctx = ring.pools_mut().acquire_indirect().unwrap();
    ring.push_op(ctx, Nop::new().result(5).with_sqe_flags(SqeFlags::IO_DRAIN)).unwrap();
    ring.submit_and_wait(1).unwrap();
    let mut slots = [CqeSlot::EMPTY; 4];
    let done = ring.reap(&mut slots).unwrap();
    let cqe = done.get(0).unwrap();
    assert_eq!(cqe.res(), 5);
    let ind = cqe.indirect().expect("the pooled SQE copy");
    assert_eq!(ind.sqe.opcode, sys::IORING_OP_NOP as u8);
    assert_eq!(ind.sqe.sqe_flags(), SqeFlags::IO_DRAIN);
    assert_eq!(ind.sqe.len, 5);
    ring.pools_mut().release(ctx).unwrap();
}

#[test]
fn a_released_pooled_context_is_refused_before_anything_is_queued() {
    let mut ring = common::ring(8);
    let ctx = ring.pools_mut().acquire_extended().unwrap();
    ring.pools_mut().release(ctx).unwrap();
    let err = ring.push_op(ctx, Nop::new()).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert_eq!(ring.sq_pending(), 0);
}

#[test]
fn a_full_queue_is_an_error_not_a_flush() {
    let mut ring = common::ring(4);
    for i in 0..4 {
        ring.push_op(SqeContext::token(i as u64).unwrap(), Nop::new()).unwrap();
    }
    assert_eq!(ring.sq_space_left(), 0);
    assert!(matches!(ring.push_op(SqeContext::default(), Nop::new()), Err(Error::QueueFull { entries: 4 })));
    let got = common::reap(&mut ring, 4);
    assert_eq!(got.len(), 4);
    common::expect_none(&mut ring, Duration::from_millis(20));
}

#[test]
fn a_stopped_or_unstarted_ring_refuses_operations() {
    let mut ring = uring_core::Ring::new(uring_core::Options::small()).unwrap();
    assert!(matches!(ring.push_op(SqeContext::default(), Nop::new()), Err(Error::NotStarted)));
    ring.start().unwrap();
    ring.stop();
    assert!(matches!(ring.push_op(SqeContext::default(), Nop::new()), Err(Error::Stopped)));
}

#[test]
fn safe_code_cannot_forge_a_layers_memory_releasing_cqe() {
    use uring_ops::msg::MsgRing;
    let mut ring = common::ring(8);
    for layer in uring_core::Layer::ALL {
        let forged = uring_core::LayerData::new(layer, false, 1).unwrap().context();
        let err = ring.push_op(forged, Nop::new()).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
        let err = ring.push_op(SqeContext::default(), MsgRing::new(ring.as_raw_fd(), forged.raw(), 0)).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "MSG_RING posting {forged:?}: {err}");
    }
    for flag in [sys::IORING_CQE_F_BUFFER, sys::IORING_CQE_F_NOTIF, sys::IORING_CQE_F_BUF_MORE] {
        let op = MsgRing::new(ring.as_raw_fd(), 7 << 2, 0).cqe_flags(flag | (3 << sys::IORING_CQE_BUFFER_SHIFT));
        assert!(matches!(ring.push_op(SqeContext::default(), op), Err(Error::InvalidArgument(_))), "flag {flag:#x}");
    }
    assert_eq!(ring.sq_pending(), 0, "nothing was queued");
    // Any layer-mode value is refused, a known layer's or not (safe code
    // cannot even build one with `from_raw`); the caller's own numbers are
    // tokens.
    assert_eq!(SqeContext::from_raw(0b11 | (0x42 << 3)), None);
    let unknown = SqeContext::of_user_data(0b11 | (0x42 << 3));
    assert!(matches!(ring.push_op(unknown, Nop::new()), Err(Error::InvalidArgument(_))));
    // The small numbers that once collided with a layer's id in the old
    // foreign idiom (`(n << 2) | 3`) are plain tokens.
    for n in [88u64, 89, 92, 93, 362, 363, 482, 483] {
        ring.push_op(SqeContext::token(n).unwrap(), Nop::new()).unwrap();
        assert_eq!(SqeContext::of_user_data(common::reap_one(&mut ring).user_data).as_token(), Some(n));
    }
}

/// Tokens: the caller's number comes back with the opcode the push stamped
/// in; a buffer-selecting entry gets its real group stamped in (what lets
/// a buffer ring accept the CQE) and refuses a number that would not fit
/// beside it, queuing nothing; a cancel naming a token as built (never
/// pushed, opcode 0) is refused with an error that says what to pass.
#[test]
fn tokens_come_back_with_their_opcode_and_refuse_what_they_cannot_carry() {
    use uring_ops::cancel::AsyncCancel;
    use uring_ops::net::RecvSelect;
    let mut ring = common::ring(8);
    let n = (1u64 << 52) + 12345;
    let stamped = ring.push_op(SqeContext::token(n).unwrap(), Nop::new().result(3)).unwrap();
    assert_eq!((stamped.as_token(), stamped.op()), (Some(n), Some(sys::IORING_OP_NOP as u8)));
    let mut slots = [uring_core::CqeSlot::EMPTY; 1];
    ring.wait_for(&mut slots, 1, Some(std::time::Duration::from_secs(5))).unwrap();
    let c = slots[0].cqe();
    assert_eq!((c.context(), c.res(), c.op()), (stamped, 3, Some(sys::IORING_OP_NOP as u8)));

    let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    let big = SqeContext::token(SqeContext::TOKEN_MAX_SELECTING + 1).unwrap();
    let err = ring.push_op(big, RecvSelect::new(a.as_raw_fd(), 9)).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert_eq!(ring.sq_pending(), 0, "the refused entry was taken back");
    let fits = SqeContext::token(SqeContext::TOKEN_MAX_SELECTING).unwrap();
    let s = ring.push_op(fits, RecvSelect::new(a.as_raw_fd(), 9)).unwrap();
    assert_eq!((s.as_token(), s.buf_group()), (Some(SqeContext::TOKEN_MAX_SELECTING), Some(9)));

    // (Group 9 has no buffers: the receive ends at once, its token intact.)
    ring.submit().unwrap();
    let mut slots = [uring_core::CqeSlot::EMPTY; 1];
    ring.wait_for(&mut slots, 1, Some(std::time::Duration::from_secs(5))).unwrap();
    assert_eq!((slots[0].cqe().context(), slots[0].cqe().res()), (s, -libc::ENOBUFS));

    // A pending poll, cancelled by the token it was pushed as.
    let poll = ring
        .push_op(
            SqeContext::token(7).unwrap(),
            uring_ops::poll::PollAdd::new(a.as_raw_fd(), uring_ops::poll::PollEvents::IN),
        )
        .unwrap();
    let err = ring.push_op(SqeContext::token(1).unwrap(), AsyncCancel::new(SqeContext::token(7).unwrap())).unwrap_err();
    assert!(err.to_string().contains("as built"), "{err}");
    ring.push_op(SqeContext::token(1).unwrap(), AsyncCancel::new(poll)).unwrap();
    ring.submit().unwrap();
    let mut slots = [uring_core::CqeSlot::EMPTY; 2];
    let mut got = Vec::new();
    while got.len() < 2 {
        let r = ring.wait_for(&mut slots, 1, Some(std::time::Duration::from_secs(5))).unwrap();
        got.extend(r.iter().map(|c| (c.context().as_token(), c.res())));
    }
    got.sort();
    assert_eq!(got, [(Some(1), 0), (Some(7), -libc::ECANCELED)]);
}

#[test]
fn io_drain_holds_an_entry_until_everything_before_it_completed() {
    use uring_ops::timeout::Timeout;
    let tok = |n: u64| SqeContext::token(n).unwrap();
    let order = |ring: &mut uring_core::Ring| -> Vec<(u64, i32)> {
        common::reap(ring, 3).into_iter().map(|d| (d.user_data, d.res)).collect()
    };
    // Without drain, a NOP queued after a 100 ms timeout completes first.
    let mut ring = common::ring(8);
    ring.push_op(tok(1), Timeout::new(Duration::from_millis(100))).unwrap();
    ring.push_op(tok(2), Nop::new()).unwrap();
    ring.push_op(tok(3), Nop::new()).unwrap();
    let got = order(&mut ring);
    assert_eq!(got[2], (tok(1).raw(), -libc::ETIME), "{got:?}");
    // With IOSQE_IO_DRAIN the NOP waits for the timeout, and so does the
    // entry queued after it.
    ring.push_op(tok(1), Timeout::new(Duration::from_millis(100))).unwrap();
    ring.push_op(tok(2), Nop::new().with_sqe_flags(SqeFlags::IO_DRAIN)).unwrap();
    ring.push_op(tok(3), Nop::new()).unwrap();
    let got = order(&mut ring);
    assert_eq!(got, vec![(tok(1).raw(), -libc::ETIME), (tok(2).raw(), 0), (tok(3).raw(), 0)]);
}

/// Sets this thread's filesystem uid (per thread, a plain syscall), and
/// returns the previous one.
fn set_fsuid(uid: u32) -> u32 {
    // SAFETY: setfsuid takes a number and changes only this thread.
    unsafe { libc::setfsuid(uid) as u32 }
}

#[test]
fn a_personality_runs_an_operation_with_the_registered_credentials() {
    use uring_ops::fs::OpenAt;
    // SAFETY: geteuid has no arguments.
    if unsafe { libc::geteuid() } != 0 {
        common::skip("a_personality_runs_an_operation_with_the_registered_credentials", "needs root to switch fsuid");
        return;
    }
    let dir = common::tmpdir("personality");
    let path = dir.join("root-only");
    std::fs::write(&path, b"secret").unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let mut ring = common::ring(8);
    // Register this thread's credentials as they are with fsuid 65534
    // (nobody: the filesystem capabilities go with fsuid 0), then switch
    // back.
    assert_eq!(set_fsuid(65534), 0);
    let registered = ring.register().personality();
    assert_eq!(set_fsuid(0), 65534);
    let nobody = registered.unwrap();
    assert_ne!(nobody, 0);
    let open = || OpenAt::new(libc::AT_FDCWD, &path, libc::O_RDONLY | libc::O_CLOEXEC, 0);
    // As root: opens.
    ring.push_op(SqeContext::token(1).unwrap(), open()).unwrap();
    let fd = common::reap_one(&mut ring).res;
    assert!(fd >= 0, "root opens its file: {fd}");
    // SAFETY: the kernel just returned this descriptor to us.
    drop(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });
    // With the personality: the credentials of nobody.
    ring.push_op(SqeContext::token(2).unwrap(), open().with_personality(nobody)).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::EACCES, "the open ran as nobody");
    // An id never registered, and the id once unregistered: -EINVAL.
    ring.push_op(SqeContext::token(3).unwrap(), open().with_personality(nobody.wrapping_add(100))).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::EINVAL, "an unregistered personality is refused");
    ring.register().unregister_personality(nobody).unwrap();
    ring.push_op(SqeContext::token(4).unwrap(), open().with_personality(nobody)).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::EINVAL, "an unregistered personality is refused");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Set when dropped.
struct Witness(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Drop for Witness {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn operations_that_keep_nothing_leave_a_slots_held_value_for_the_next_clearing_push() {
    // `Prepare::USES_KEEP`: a NOP skips clearing its slot's Keep, so what an
    // earlier entry of that slot held stays (never freed early); the next
    // push through the slot by an operation that uses its Keep (a timeout,
    // whose timespec lives there) clears it, and so does dropping the ring.
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use uring_ops::timeout::Timeout;
    let entries = 8u32;
    for clearing_push in [true, false] {
        let dropped = Arc::new(AtomicBool::new(false));
        let mut ring = common::ring(entries);
        // Slot 0: a raw NOP whose Keep holds the witness.
        // SAFETY: a NOP names no memory; the Keep holds only the witness.
        let (sqe, keep) = unsafe { ring.next_sqe_keep() }.unwrap();
        *sqe = uring_core::Sqe::new(sys::IORING_OP_NOP as u8);
        sqe.set_sqe_flags(SqeFlags::CQE_SKIP_SUCCESS);
        keep.hold(Witness(dropped.clone()));
        // Slots 1..entries, then slot 0 again: NOPs keep nothing.
        for n in 0..entries {
            ring.submit().unwrap();
            let nop = Nop::new().with_sqe_flags(SqeFlags::CQE_SKIP_SUCCESS);
            ring.push_op(SqeContext::token(u64::from(n)).unwrap(), nop).unwrap();
        }
        ring.submit().unwrap();
        assert!(!dropped.load(Ordering::SeqCst), "a NOP's push cleared a Keep it does not use");
        // Slots 1.., then slot 0 once more: a timeout (its timespec in the
        // Keep) clears the slot, or a NOP does not.
        for n in 0..entries - 1 {
            let nop = Nop::new().with_sqe_flags(SqeFlags::CQE_SKIP_SUCCESS);
            ring.push_op(SqeContext::token(u64::from(n)).unwrap(), nop).unwrap();
        }
        ring.submit().unwrap();
        if clearing_push {
            ring.push_op(SqeContext::token(99).unwrap(), Timeout::new(Duration::from_millis(1))).unwrap();
            assert!(dropped.load(Ordering::SeqCst), "the timeout's push did not clear slot 0");
            assert_eq!(common::reap_one(&mut ring).res, -libc::ETIME);
        } else {
            let nop = Nop::new().with_sqe_flags(SqeFlags::CQE_SKIP_SUCCESS);
            ring.push_op(SqeContext::token(99).unwrap(), nop).unwrap();
            ring.submit().unwrap();
            assert!(!dropped.load(Ordering::SeqCst));
            drop(ring);
            assert!(dropped.load(Ordering::SeqCst), "the ring's drop did not free the held value");
        }
    }
}
