//! Operations on the multi-issuer `SharedRing` through `SharedRingOps`:
//! several threads queue safe operations (memory held in each slot's
//! `Keep`) and one thread reaps; every effect is real.

mod common;

use std::sync::Arc;
use std::time::Duration;

use uring_core::{CqeSlot, Error, Options, SharedRing, SqeContext};
use uring_ops::cmd::Nop;
use uring_ops::fs::MkdirAt;
use uring_ops::prelude::*;
use uring_ops::timeout::Timeout;

fn shared() -> SharedRing {
    let mut ring = SharedRing::new(Options::default().entries(64).cq_entries(512)).expect("SharedRing::new");
    ring.start().unwrap();
    ring
}

#[test]
fn threads_queue_safe_operations_and_every_one_completes() {
    let ring = Arc::new(shared());
    let dir = common::tmpdir("shared");
    let threads: Vec<_> = (0..2u64)
        .map(|t| {
            let ring = ring.clone();
            let dir = dir.clone();
            std::thread::spawn(move || {
                for i in 0..50u64 {
                    let ctx = SqeContext::token(t << 32 | i).unwrap();
                    loop {
                        match ring.push_op(ctx, Nop::new().result(i as i32)) {
                            Ok(_) => break,
                            Err(Error::QueueFull { .. }) => {
                                ring.submit().unwrap();
                            }
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
                // A path and a timespec, held by the slots' Keeps. (The
                // other thread may have filled the SQ meanwhile: submit and
                // retry, as for the NOPs.)
                let mkdir = || MkdirAt::new(libc::AT_FDCWD, dir.join(format!("t{t}")), 0o755);
                while let Err(e) = ring.push_op(SqeContext::token(t | 1 << 50).unwrap(), mkdir()) {
                    assert!(matches!(e, Error::QueueFull { .. }), "{e}");
                    ring.submit().unwrap();
                }
                while let Err(e) =
                    ring.push_op(SqeContext::token(t | 2 << 50).unwrap(), Timeout::new(Duration::from_millis(1)))
                {
                    assert!(matches!(e, Error::QueueFull { .. }), "{e}");
                    ring.submit().unwrap();
                }
                ring.submit().unwrap();
            })
        })
        .collect();
    let mut slots = [CqeSlot::EMPTY; 64];
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while seen.len() < 2 * 52 {
        assert!(std::time::Instant::now() < deadline, "stalled at {} of 104", seen.len());
        ring.submit().unwrap();
        match ring.wait_for(&mut slots, 1, Some(Duration::from_millis(100))) {
            Ok(n) => seen.extend(slots[..n].iter().map(|s| (s.cqe().context().as_token().unwrap(), s.cqe().res()))),
            Err(Error::WouldBlock) => {}
            Err(e) => panic!("{e}"),
        }
    }
    for t in threads {
        t.join().unwrap();
    }
    for t in 0..2u64 {
        for i in 0..50u64 {
            let ud = t << 32 | i;
            assert_eq!(seen.iter().filter(|(u, _)| *u == ud).count(), 1, "NOP {t}/{i} once");
            assert!(seen.contains(&(ud, i as i32)), "NOP {t}/{i} with its injected result");
        }
        assert!(dir.join(format!("t{t}")).is_dir(), "thread {t}'s directory exists");
        assert!(seen.contains(&(t | 2 << 50, -libc::ETIME)), "thread {t}'s timeout fired");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn shared_pushes_check_contexts_like_the_single_issuer_ring() {
    let ring = shared();
    let forged = uring_core::LayerData::new(uring_core::Layer::FixedBuffers, false, 0).unwrap().context();
    assert!(matches!(ring.push_op(forged, Nop::new()), Err(Error::InvalidArgument(_))));
    let ctx = ring.pools().acquire_indirect().unwrap();
    let stamped = ring.push_op(ctx, Nop::new().result(9)).unwrap();
    assert_eq!(stamped, ctx);
    ring.submit().unwrap();
    let mut slots = [CqeSlot::EMPTY; 4];
    let n = ring.wait_for(&mut slots, 1, Some(Duration::from_secs(5))).unwrap();
    assert_eq!((n, slots[0].cqe().res()), (1, 9));
    let copy = ring.pools().indirect(ctx).map(|i| (i.sqe.opcode, i.sqe.len)).unwrap();
    assert_eq!(copy, (uring_core::sys::IORING_OP_NOP as u8, 9), "the pooled SQE copy");
    ring.pools().release(ctx).unwrap();
    assert!(matches!(ring.push_op(ctx, Nop::new()), Err(Error::InvalidArgument(_))), "a released context");
}
