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

/// Prints why a test skipped; the caller returns right after.
fn skip(test: &str, reason: &str) {
    println!("SKIPPED {test}: {reason}");
}

/// Sets up a ring with the raw syscall, as code outside this library would.
fn raw_ring(entries: u32, flags: u32) -> (std::os::fd::OwnedFd, sys::io_uring_params) {
    use std::os::fd::FromRawFd;
    let mut p = sys::io_uring_params { flags, ..Default::default() };
    // SAFETY: `p` is valid for the call and names no memory of ours.
    let fd = unsafe { sys::io_uring_setup(entries, &mut p) }.expect("io_uring_setup");
    // SAFETY: the kernel just returned this fd; we own it.
    (unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }, p)
}

/// Pushes `each` NOPs from each of `threads` threads (user data
/// `thread << 32 | i`), submitting as they go, and reaps them all here:
/// every one comes back exactly once.
fn nops_from_threads(ring: SharedRing, threads: u64, each: u64, push: fn(&SharedRing, u64) -> Result<(), Error>) {
    let ring = Arc::new(ring);
    let submitters: Vec<_> = (0..threads)
        .map(|t| {
            let ring = ring.clone();
            std::thread::spawn(move || {
                for i in 0..each {
                    while let Err(e) = push(&ring, t << 32 | i) {
                        assert!(matches!(e, Error::QueueFull { .. }), "{e}");
                        ring.submit().unwrap();
                        std::thread::yield_now();
                    }
                }
                ring.submit().unwrap();
            })
        })
        .collect();
    let mut seen = HashSet::new();
    let mut slots = [CqeSlot::EMPTY; 64];
    while seen.len() < (threads * each) as usize {
        let n = ring.wait_for(&mut slots, 1, Some(Duration::from_secs(10))).expect("completions");
        for s in &slots[..n] {
            assert_eq!(s.cqe().res(), 0);
            assert!(seen.insert(s.cqe().user_data()), "{:#x} twice", s.cqe().user_data());
        }
    }
    for s in submitters {
        s.join().unwrap();
    }
    let expected: HashSet<u64> = (0..threads).flat_map(|t| (0..each).map(move |i| t << 32 | i)).collect();
    assert_eq!(seen, expected);
}

fn push_nop(ring: &SharedRing, user_data: u64) -> Result<(), Error> {
    // SAFETY: a NOP names no memory.
    unsafe { ring.push(&nop(user_data)) }
}

#[test]
fn an_adopted_ring_is_shared_by_threads() {
    for flags in [0, sys::IORING_SETUP_R_DISABLED, sys::IORING_SETUP_COOP_TASKRUN | sys::IORING_SETUP_TASKRUN_FLAG] {
        let (fd, p) = raw_ring(16, flags);
        // SAFETY: `p` is what io_uring_setup returned for `fd`; nothing
        // else uses the ring, nothing was ever submitted, and it is not
        // enabled yet when R_DISABLED.
        let mut ring = unsafe { SharedRing::from_raw_fd(fd, p) }.unwrap_or_else(|e| panic!("adopt {flags:#x}: {e}"));
        assert_eq!(ring.state(), State::Created);
        ring.start().unwrap_or_else(|e| panic!("start {flags:#x}: {e}"));
        nops_from_threads(ring, 3, 200, push_nop);
    }
}

#[test]
fn a_single_issuer_ring_is_not_adopted_as_shared() {
    for flags in [
        sys::IORING_SETUP_SINGLE_ISSUER,
        sys::IORING_SETUP_SINGLE_ISSUER | sys::IORING_SETUP_DEFER_TASKRUN | sys::IORING_SETUP_R_DISABLED,
    ] {
        let (fd, p) = raw_ring(8, flags);
        // SAFETY: refused before anything is mapped.
        match unsafe { SharedRing::from_raw_fd(fd, p) } {
            Err(Error::InvalidArgument(m)) => assert!(m.contains("Ring::from_raw_fd"), "{m}"),
            other => panic!("{flags:#x}: expected a refusal, got {:?}", other.map(|_| ())),
        }
    }
    // And what `Ring::from_raw_fd` refuses, this does too: not a ring.
    let (_, p) = raw_ring(8, 0);
    let null = std::fs::File::open("/dev/null").unwrap();
    // SAFETY: refused at the probe, before anything is mapped.
    assert!(unsafe { SharedRing::from_raw_fd(null.into(), p) }.is_err());
}

/// A 64-byte NOP written into a 128-byte entry, its second half marked.
fn push_nop_128(ring: &SharedRing, user_data: u64) -> Result<(), Error> {
    // SAFETY: a NOP names no memory; the extra 64 bytes are plain payload.
    unsafe {
        ring.push128_with(|sqe| {
            sqe.sqe = nop(user_data);
            sqe.ext = [0x5a; 64];
            Ok(())
        })
    }
}

#[test]
fn threads_push_128_byte_entries() {
    let mut ring = SharedRing::new(Options::default().entries(16).sqe128(true)).unwrap();
    ring.start().unwrap();
    nops_from_threads(ring, 3, 300, push_nop_128);
}

#[test]
fn a_128_byte_entry_refused_by_its_filler_is_given_back() {
    let mut ring = SharedRing::new(Options::default().entries(4).sqe128(true)).unwrap();
    ring.start().unwrap();
    // SAFETY: nothing is written; the entry goes back.
    let r: Result<(), Error> = unsafe { ring.push128_with(|_| Err(Error::InvalidArgument("refused".into()))) };
    assert!(matches!(r, Err(Error::InvalidArgument(ref m)) if m == "refused"), "{r:?}");
    push_nop_128(&ring, 7).unwrap();
    assert_eq!(ring.submit().unwrap(), 1, "only the NOP is published");
    let mut slots = [CqeSlot::EMPTY; 4];
    let n = ring.wait_for(&mut slots, 1, Some(Duration::from_secs(5))).unwrap();
    assert_eq!(n, 1);
    assert_eq!((slots[0].cqe().user_data(), slots[0].cqe().res()), (7, 0));
    // All 4 slots are free again: 4 pushes fit, the fifth does not.
    for i in 0..4 {
        push_nop_128(&ring, 10 + i).unwrap();
    }
    assert!(matches!(push_nop_128(&ring, 14), Err(Error::QueueFull { entries: 4 })));
}

#[test]
fn a_128_byte_push_on_a_64_byte_ring_is_unsupported() {
    let mut ring = SharedRing::new(Options::default().entries(4)).unwrap();
    ring.start().unwrap();
    match push_nop_128(&ring, 1) {
        Err(Error::Unsupported { what, .. }) => assert!(what.contains("128-byte"), "{what}"),
        other => panic!("expected Unsupported, got {other:?}"),
    }
    assert_eq!(ring.submit().unwrap(), 0);
}

/// On an `SQE_MIXED` ring (6.19+) 128-byte entries take two slots, the
/// wrap padded; threads mixing 64- and 128-byte entries get every
/// completion once.
#[test]
fn threads_push_128_byte_entries_on_an_sqe_mixed_ring() {
    let opts = Options::default().entries(8).extra_flags(SetupFlags::SQE_MIXED);
    let mut ring = match SharedRing::new(opts) {
        Ok(r) => r,
        Err(e) => {
            skip("threads_push_128_byte_entries_on_an_sqe_mixed_ring", &format!("{e} (SQE_MIXED is 6.19+)"));
            return;
        }
    };
    ring.start().unwrap();
    if !ring.features().supports(sys::IORING_OP_NOP128 as u8) {
        skip("threads_push_128_byte_entries_on_an_sqe_mixed_ring", "no IORING_OP_NOP128 in the probe");
        return;
    }
    fn push(ring: &SharedRing, user_data: u64) -> Result<(), Error> {
        if user_data.is_multiple_of(3) {
            return push_nop(ring, user_data);
        }
        // SAFETY: a NOP128 names no memory.
        unsafe {
            ring.push128_with(|sqe| {
                sqe.sqe = nop(user_data);
                sqe.sqe.opcode = sys::IORING_OP_NOP128 as u8;
                Ok(())
            })
        }
    }
    nops_from_threads(ring, 2, 300, push);
}
