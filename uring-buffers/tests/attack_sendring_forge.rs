//! Attack: SendRing's bundle send carries a caller-chosen context, so a NOP
//! pushed with the same token posts a CQE that `complete` takes for the
//! send's last one: the send counts as finished while it is in flight, and
//! the "one at a time" rule (`send_bundle` refusing while in flight) falls.

mod common;

use std::os::fd::AsRawFd;

use uring_buffers::{BufRingConfig, SendRing};
use uring_core::{CqeSlot, FeatureFlags, SqeContext, sys};
use uring_ops::RingOps;
use uring_ops::cmd::Nop;

#[test]
fn a_nop_with_the_send_token_does_not_complete_the_bundle_send() {
    let mut ring = common::ring();
    if !ring.features().has(FeatureFlags::RECVSEND_BUNDLE) {
        println!("SKIPPED: the kernel has no bundle sends (IORING_FEAT_RECVSEND_BUNDLE)");
        return;
    }
    let mut sr = SendRing::register(&mut ring, BufRingConfig::new(92, 4, 64)).unwrap();
    let (client, mut server) = std::os::unix::net::UnixStream::pair().unwrap();
    let mut b = sr.acquire().unwrap();
    sr.buf_mut(&mut b)[..5].copy_from_slice(b"hello");
    sr.queue(b, 5).unwrap();
    const UD: u64 = 77;
    sr.send_bundle(&mut ring, SqeContext::token(UD).unwrap(), client.as_raw_fd()).unwrap();
    // The forged CQE: a NOP with the same token, queued behind the send.
    ring.push_op(SqeContext::token(UD).unwrap(), Nop::new().result(5)).unwrap();
    let cqes: Vec<CqeSlot> = common::reap(&mut ring, 2);
    let nop = sys::IORING_OP_NOP as u8;
    let (forged, real): (Vec<&CqeSlot>, Vec<&CqeSlot>) = cqes.iter().partition(|s| s.cqe().op() == Some(nop));
    assert_eq!((forged.len(), real.len()), (1, 1), "one NOP and one send CQE");
    // Presented first, while the send is still the ring's in flight.
    let taken = sr.complete(&forged[0].cqe());
    assert!(
        taken.is_err() && sr.in_flight(),
        "SendRing::complete took a NOP's CQE (same token) for the bundle send's: {taken:?}"
    );
    assert!(
        sr.send_bundle(&mut ring, SqeContext::token(UD).unwrap(), client.as_raw_fd()).is_err(),
        "a second bundle send accepted while the first is in flight"
    );
    // The send's own CQE completes it.
    assert!(sr.complete(&real[0].cqe()).is_ok());
    assert!(!sr.in_flight());
    let mut got = [0u8; 5];
    std::io::Read::read_exact(&mut server, &mut got).unwrap();
    assert_eq!(&got, b"hello");
}
