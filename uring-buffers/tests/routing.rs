//! One routing trait (`uring_core::HandleCqe`) for every owner of CQEs:
//! each CQE of a mixed batch is offered to every owner in turn, and
//! exactly the one whose request it is answers; the others answer `None`
//! and change nothing, whatever order they are asked in.

mod common;

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;

use common::{reap, ring};
use uring_buffers::{BufEvent, BufRing, BufRingConfig, FixedBuffers};
use uring_core::{HandleCqe, Ring, SqeContext};
use uring_ops::RingOps;
use uring_ops::cmd::Nop;
use uring_ops::net::RecvSelect;

/// Offers `cqe` to each owner; returns which answered (0 buffer ring, 1
/// fixed buffers, none: the caller's own).
fn route(ring: &mut Ring, br: &mut BufRing, fixed: &mut FixedBuffers, cqe: &uring_core::Cqe<'_>) -> Vec<usize> {
    let mut who = Vec::new();
    if let Some(event) = br.handle_cqe(ring, cqe) {
        let BufEvent::Received(bundle) = event else { panic!("no send was queued: {event:?}") };
        let bundle = bundle.expect("the buffer ring's own CQE hands over its buffers");
        let got: Vec<u8> = br.bundle(&bundle).flatten().copied().collect();
        assert_eq!(got, b"routed", "the received bytes");
        br.recycle_bundle(bundle).unwrap();
        who.push(0);
    }
    // (FixedBuffers also has a ring-less inherent `handle_cqe`, usable
    // while a CQE still borrows the ring; this is the trait.)
    if let Some(done) = HandleCqe::handle_cqe(fixed, ring, cqe) {
        assert_eq!((done.res, done.free), (6, true));
        who.push(1);
    }
    who
}

#[test]
fn each_cqe_is_answered_by_its_owner_only() {
    let mut ring = ring();
    let mut br = BufRing::register(&mut ring, BufRingConfig::new(5, 4, 64)).unwrap();
    let mut fixed = FixedBuffers::register(&mut ring, 1, 4096).unwrap();
    let (mut tx, rx) = UnixStream::pair().unwrap();
    tx.write_all(b"routed").unwrap();
    // A receive selecting from the buffer ring, under the caller's token.
    ring.push_op(SqeContext::token(1).unwrap(), RecvSelect::new(rx.as_raw_fd(), 5)).unwrap();
    // A fixed-buffer write to a pipe, under the table's own identity.
    let (pr, pw) = std::io::pipe().unwrap();
    fixed.buffer_mut(0).unwrap()[..6].copy_from_slice(b"routed");
    fixed.write_fixed(&mut ring, pw.as_raw_fd(), 0, 0..6, 0).unwrap();
    // The caller's own NOP: nobody else's.
    ring.push_op(SqeContext::token(2).unwrap(), Nop::new()).unwrap();
    ring.submit().unwrap();
    let slots = reap(&mut ring, 3);
    let mut answered = Vec::new();
    for slot in &slots {
        let cqe = slot.cqe();
        let who = route(&mut ring, &mut br, &mut fixed, &cqe);
        assert!(who.len() <= 1, "{cqe:?} answered by {who:?}");
        if who.is_empty() {
            assert_eq!(cqe.context().as_token(), Some(2), "only the caller's NOP is unanswered: {cqe:?}");
        }
        answered.extend(who);
        // Offered again (a replayed copy), nobody answers.
        assert!(route(&mut ring, &mut br, &mut fixed, &cqe).is_empty(), "a copy of {cqe:?} was answered");
    }
    answered.sort();
    assert_eq!(answered, [0, 1]);
    let mut got = [0u8; 6];
    std::io::Read::read_exact(&mut &pr, &mut got).unwrap();
    assert_eq!(&got, b"routed");
}
