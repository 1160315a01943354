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
    let done = ring.wait(&mut slots).unwrap();
    let cqe = done.get(0).unwrap();
    assert_eq!(cqe.res(), 0);
    let back = cqe.context();
    assert_eq!(back.mode(), ContextMode::Direct);
    assert_eq!(back.op(), Some(sys::IORING_OP_NOP as u8));
    assert_eq!(back.flags(), Some(SqeFlags::ASYNC));
    assert_eq!((back.fd(), back.buf_group()), (Some(42), Some(9)));
}

#[test]
fn injected_results_come_back() {
    let mut ring = common::ring(8);
    ring.push_op(SqeContext::from_raw(7 << 2), Nop::new().result(-libc::EBADF)).unwrap();
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
    let done = ring.wait(&mut slots).unwrap();
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
        ring.push_op(SqeContext::from_raw(i << 2), Nop::new()).unwrap();
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
    use uring_core::{FOREIGN_TAG_FIXED, FOREIGN_TAG_SUBSCRIPTION, FOREIGN_TAG_ZC, FOREIGN_TAG_ZCRX};
    use uring_ops::msg::MsgRing;
    let mut ring = common::ring(8);
    for tag in [FOREIGN_TAG_SUBSCRIPTION, FOREIGN_TAG_FIXED, FOREIGN_TAG_ZC, FOREIGN_TAG_ZCRX] {
        let forged = SqeContext::from_raw(0b11 | (u64::from(tag) << 3) | (1 << 11));
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
    // Foreign values outside the reserved tags are the caller's own.
    ring.push_op(SqeContext::from_raw(0b11 | (0x42 << 3)), Nop::new()).unwrap();
    assert_eq!(common::reap_one(&mut ring).user_data, 0b11 | (0x42 << 3));
}
