//! `SharedRing`: several threads submit and reap through one ring.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use uring_core::{CqeSlot, Error, Options, SetupFlags, SharedRing, Sqe, State, sys};

fn nop(user_data: u64) -> Sqe {
    common::nop(user_data)
}

#[test]
fn threads_submit_and_one_reaps_every_completion_once() {
    let mut ring = SharedRing::new(Options::default().entries(256)).unwrap();
    let f = ring.features().setup_flags();
    assert!(f.contains(SetupFlags::COOP_TASKRUN | SetupFlags::TASKRUN_FLAG));
    assert!(!f.intersects(SetupFlags::SINGLE_ISSUER | SetupFlags::DEFER_TASKRUN));
    ring.start().unwrap();
    let ring = Arc::new(ring);
    const THREADS: u64 = 4;
    const EACH: u64 = 5_000;
    let barrier = Arc::new(Barrier::new(THREADS as usize + 1));
    let submitters: Vec<_> = (0..THREADS)
        .map(|t| {
            let (ring, barrier) = (ring.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                for i in 0..EACH {
                    loop {
                        // SAFETY: a NOP names no memory.
                        match unsafe { ring.push(&nop(t << 32 | i)) } {
                            Ok(()) => break,
                            Err(Error::QueueFull { .. }) => {
                                ring.submit().unwrap();
                                std::thread::yield_now();
                            }
                            Err(e) => panic!("{e}"),
                        }
                    }
                    if i % 16 == 15 {
                        ring.submit().unwrap();
                    }
                }
                ring.submit().unwrap();
            })
        })
        .collect();
    barrier.wait();
    let mut seen = HashSet::new();
    let mut slots = [CqeSlot::EMPTY; 128];
    while seen.len() < (THREADS * EACH) as usize {
        match ring.wait_for(&mut slots, 1, Some(Duration::from_secs(10))) {
            Ok(n) => {
                for s in &slots[..n] {
                    let c = s.cqe();
                    assert_eq!(c.res(), 0);
                    assert!(seen.insert(c.user_data()), "{:#x} twice", c.user_data());
                }
            }
            Err(Error::WouldBlock) => panic!("stalled at {} completions", seen.len()),
            Err(e) => panic!("{e}"),
        }
    }
    for s in submitters {
        s.join().unwrap();
    }
    assert!(matches!(ring.reap(&mut slots), Err(Error::WouldBlock)));
    let mut ring = Arc::into_inner(ring).expect("all threads joined");
    ring.stop();
    assert_eq!(ring.state(), State::Stopped);
    // SAFETY: a NOP names no memory.
    assert!(matches!(unsafe { ring.push(&nop(1)) }, Err(Error::Stopped)));
}

#[test]
fn a_blocked_waiter_does_not_block_submitters() {
    let mut ring = SharedRing::new(Options::small()).unwrap();
    ring.start().unwrap();
    let ring = Arc::new(ring);
    let waiter = {
        let ring = ring.clone();
        std::thread::spawn(move || {
            let mut slots = [CqeSlot::EMPTY; 4];
            let n = ring.wait_for(&mut slots, 1, Some(Duration::from_secs(10))).unwrap();
            slots[..n].iter().map(|s| s.cqe().user_data()).collect::<Vec<_>>()
        })
    };
    std::thread::sleep(Duration::from_millis(50));
    let mut sqe = nop(0xabc);
    sqe.set_op_flags(sys::IORING_NOP_INJECT_RESULT);
    sqe.len = 5;
    // SAFETY: a NOP names no memory.
    unsafe { ring.push(&sqe).unwrap() };
    ring.submit().unwrap();
    assert_eq!(waiter.join().unwrap(), vec![0xabc], "the waiter woke with the submitted NOP");
}
