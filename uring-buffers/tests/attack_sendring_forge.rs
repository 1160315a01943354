//! Attack: SendRing's bundle send carries a caller-chosen context, so a NOP
//! pushed with the same token posts a CQE that `complete` takes for the
//! send's last one: the send counts as finished while it is in flight, and
//! the "one at a time" rule (`send_bundle` refusing while in flight) falls.

mod common;

use std::os::fd::AsRawFd;

use uring_buffers::{BufRingConfig, SendRing};
use uring_core::{CqeSlot, FeatureFlags, SqeContext};
use uring_ops::RingOps;
use uring_ops::cmd::Nop;

#[test]
fn a_nop_with_the_send_token_does_not_complete_the_bundle_send() {
    let mut ring = common::ring();
    if !ring.features().has(FeatureFlags::RECVSEND_BUNDLE) {
        return;
    }
    let mut sr = SendRing::register(&mut ring, BufRingConfig::new(92, 4, 64)).unwrap();
    let (client, server, queued) = common::blocked_pair();
    let mut b = sr.acquire().unwrap();
    sr.buf_mut(&mut b)[..5].copy_from_slice(b"hello");
    sr.queue(b, 5).unwrap();
    const UD: u64 = 77;
    sr.send_bundle(&mut ring, SqeContext::token(UD).unwrap(), client.as_raw_fd()).unwrap();
    ring.submit().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    // The forged CQE: a NOP with the same token.
    ring.push_op(SqeContext::token(UD).unwrap(), Nop::new().result(5)).unwrap();
    let s: Vec<CqeSlot> = common::reap(&mut ring, 1);
    let forged = sr.complete(&s[0].cqe());
    let accepted = forged.is_ok();
    let still = sr.in_flight();
    let second = if accepted {
        sr.send_bundle(&mut ring, SqeContext::token(UD).unwrap(), client.as_raw_fd()).is_ok()
    } else {
        false
    };
    // Let the real send finish before the ring goes.
    let t = common::drain(server, queued + 5);
    let _ = common::reap(&mut ring, 1);
    let _ = t.join();
    assert!(
        !accepted,
        "SendRing::complete took a NOP's CQE (same token) for the bundle send's: {forged:?}; in_flight now {still}, \
         a second bundle send accepted while the first is in flight: {second}"
    );
}
