//! Attack: a MSG_RING whose passed CQE flags carry IORING_CQE_F_32 (or
//! F_SKIP), posted to a ring with a mixed CQ: the target's reaper trusts the
//! flag to size the entry.

use std::os::fd::AsRawFd;

use uring_core::{CqeSize, CqeSlot, Options, Ring, SqeContext};
use uring_ops::RingOps;
use uring_ops::msg::MsgRing;
mod sys {
    pub(crate) const IORING_CQE_F_SKIP: u32 = 32;
    pub(crate) const IORING_CQE_F_32: u32 = 32768;
}

fn mixed() -> Option<Ring> {
    let mut r = Ring::new(Options::default().entries(8).cqe_size(CqeSize::Mixed)).ok()?;
    r.start().ok()?;
    Some(r)
}

fn run(flag: u32) -> Vec<(u64, i32, u32, bool)> {
    let Some(mut b) = mixed() else {
        eprintln!("no mixed CQ: skipped");
        return Vec::new();
    };
    let mut a = Ring::new(Options::default().entries(8)).unwrap();
    a.start().unwrap();
    let tok = |n| SqeContext::token(n).unwrap();
    let mut seen = Vec::new();
    // Fill b's CQ around its ring several times so that a mis-sized entry
    // lands on the last slot too.
    for round in 0..40u64 {
        let r = a.push_op(tok(1), MsgRing::new(b.as_raw_fd(), tok(100 + round).raw(), 7).cqe_flags(flag));
        if let Err(e) = r {
            eprintln!("refused: {e}");
            return seen;
        }
        a.push_op(tok(2), MsgRing::new(b.as_raw_fd(), tok(200 + round).raw(), 8)).unwrap();
        a.submit_and_wait(2).unwrap();
        let mut slots = [CqeSlot::EMPTY; 8];
        let _ = a.reap(&mut slots);
        let mut slots = [CqeSlot::EMPTY; 8];
        match b.reap(&mut slots) {
            Ok(r) => {
                for c in r.iter() {
                    seen.push((c.user_data(), c.res(), c.raw_flags(), c.is_big()));
                }
            }
            Err(e) => panic!("{e}"),
        }
    }
    seen
}

fn check(flag: u32) {
    let seen = run(flag);
    if seen.is_empty() {
        return;
    }
    eprintln!(
        "flag {flag:#x}: {} CQEs, {} of res 7, big {}",
        seen.len(),
        seen.iter().filter(|s| s.1 == 7).count(),
        seen.iter().filter(|s| s.3).count()
    );
    let tok = |n| SqeContext::token(n).unwrap().raw();
    let plain: Vec<u64> = seen.iter().filter(|s| s.1 == 8).map(|s| s.0).collect();
    let want: Vec<u64> = (0..40).map(|r| tok(200 + r)).collect();
    let bogus: Vec<_> = seen.iter().filter(|s| s.1 != 7 && s.1 != 8).collect();
    assert!(
        bogus.is_empty() && plain == want,
        "flag {flag:#x}: the reaper lost sync: {} CQEs, {} bogus (first {:?}), plain ones {:?}",
        seen.len(),
        bogus.len(),
        bogus.first(),
        plain.len()
    );
}

#[test]
fn msg_ring_with_f32_keeps_the_target_in_sync() {
    check(sys::IORING_CQE_F_32);
}

#[test]
fn msg_ring_with_skip_keeps_the_target_in_sync() {
    check(sys::IORING_CQE_F_SKIP);
}

#[test]
fn msg_ring_with_skip_and_f32_keeps_the_target_in_sync() {
    check(sys::IORING_CQE_F_SKIP | sys::IORING_CQE_F_32);
}
