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
