//! Features newer than the 6.18 baseline, exercised for real where the
//! running kernel has them and skipped, with the probe's reason, where it
//! does not. `cargo xtask vm-test` runs this file on Debian's 7.x kernels,
//! where these tests run rather than skip.
//!
//! - `IORING_OP_NOP128`: a 128-byte NOP (Linux 6.19+); on the host's 6.18
//!   the opcode probe says no, and submitting it anyway fails the one
//!   request with `-EINVAL` (the kernel's real answer), not the ring.
//! - `IORING_SETUP_SQE_MIXED`: 64- and 128-byte SQEs in one SQ (6.19+); on
//!   6.18 `Ring::new` refuses the flag with `Error::Unsupported` naming it.

use std::time::Duration;

use uring_core::{CqeSlot, Error, Options, Ring, SetupFlags, Sqe, sys};

/// Prints why a test skipped; the caller returns right after.
fn skip(test: &str, reason: &str) {
    println!("SKIPPED {test}: {reason}");
}

/// A started `SQE_MIXED` ring of 8 entries that runs `NOP128`, or `None`
/// after printing why `test` skips.
fn mixed_nop128_ring(test: &str) -> Option<Ring> {
    let opts = Options::default().entries(8).extra_flags(SetupFlags::SQE_MIXED);
    let mut ring = match Ring::new(opts) {
        Ok(ring) => ring,
        Err(e @ Error::Unsupported { .. }) => {
            skip(test, &format!("{e} (the setup-flag probe says no)"));
            return None;
        }
        Err(e) => panic!("Ring::new with SQE_MIXED: {e}"),
    };
    ring.start().expect("start");
    if let Err(e) = ring.features().require(sys::IORING_OP_NOP128 as u8) {
        skip(test, &format!("{e} (the opcode probe says no)"));
        return None;
    }
    Some(ring)
}

/// Reaps `n` completions (blocking, 5 s at most each round) as
/// `(user_data, res)`.
fn reap(ring: &mut Ring, n: usize) -> Vec<(u64, i32)> {
    let mut out = Vec::new();
    let mut slots = [CqeSlot::EMPTY; 16];
    while out.len() < n {
        let want = (n - out.len()).min(16) as u32;
        match ring.wait_for(&mut slots, want, Some(Duration::from_secs(5))) {
            Ok(r) => out.extend(r.iter().map(|c| (c.user_data(), c.res()))),
            Err(Error::WouldBlock) => panic!("timed out after {} of {n} completions", out.len()),
            Err(e) => panic!("wait_for: {e}"),
        }
    }
    out
}

/// Writes a NOP128 with an injected result into the ring's next 128-byte
/// SQE, with a recognisable pattern in the second 64 bytes.
fn push_nop128(ring: &mut Ring, user_data: u64, res: i32) {
    // SAFETY: a NOP names no memory; the extra 64 bytes are plain payload.
    let sqe = unsafe { ring.next_sqe128() }.expect("a free 128-byte SQE");
    sqe.sqe.opcode = sys::IORING_OP_NOP128 as u8;
    sqe.sqe.user_data = user_data;
    sqe.sqe.set_op_flags(sys::IORING_NOP_INJECT_RESULT);
    sqe.sqe.len = res as u32;
    sqe.ext = [0xa5; 64];
}

#[test]
fn nop128_completes_with_its_injected_result() {
    let mut ring = Ring::new(Options::default().entries(8).sqe128(true)).expect("an SQE128 ring (6.18 has SQE128)");
    ring.start().expect("start");
    let op = sys::IORING_OP_NOP128 as u8;
    if let Err(e) = ring.features().require(op) {
        // The kernel's own answer where the probe says no: the request
        // fails alone with EINVAL, the ring carries on.
        push_nop128(&mut ring, 7, 1);
        assert_eq!(reap(&mut ring, 1), vec![(7, -libc::EINVAL)], "an unknown opcode fails its own request");
        skip("nop128_completes_with_its_injected_result", &format!("{e} (the opcode probe says no)"));
        return;
    }
    push_nop128(&mut ring, 1, 4242);
    push_nop128(&mut ring, 2, -libc::ENOENT);
    // An ordinary 64-byte-format NOP in between: on an SQE128 ring every
    // slot is 128 bytes, whatever the opcode.
    // SAFETY: a NOP names no memory.
    unsafe { ring.push(&Sqe::new(sys::IORING_OP_NOP as u8)) }.expect("push");
    push_nop128(&mut ring, 3, 128);
    let mut got = reap(&mut ring, 4);
    got.sort_unstable();
    assert_eq!(got, vec![(0, 0), (1, 4242), (2, -libc::ENOENT), (3, 128)]);
}

#[test]
fn sqe_mixed_ring_is_created_and_runs_nops() {
    let test = "sqe_mixed_ring_is_created_and_runs_nops";
    let opts = Options::default().entries(8).extra_flags(SetupFlags::SQE_MIXED);
    let mut ring = match Ring::new(opts) {
        Ok(ring) => ring,
        Err(e @ Error::Unsupported { .. }) => {
            let Error::Unsupported { what, .. } = &e else { unreachable!() };
            assert_eq!(what, "IORING_SETUP_SQE_MIXED", "the refusal names the flag");
            assert_eq!(uring_core::probe_setup_flag(sys::IORING_SETUP_SQE_MIXED), Some(false));
            skip(test, &format!("{e} (the setup-flag probe says no)"));
            return;
        }
        Err(e) => panic!("Ring::new with SQE_MIXED: {e}"),
    };
    assert!(ring.features().setup_flags().contains(SetupFlags::SQE_MIXED));
    assert_eq!(uring_core::probe_setup_flag(sys::IORING_SETUP_SQE_MIXED), Some(true));
    ring.start().expect("start");
    for i in 0..6u64 {
        let mut nop = Sqe::new(sys::IORING_OP_NOP as u8);
        nop.user_data = 100 + i;
        nop.set_op_flags(sys::IORING_NOP_INJECT_RESULT);
        nop.len = i as u32;
        // SAFETY: a NOP names no memory.
        unsafe { ring.push(&nop) }.expect("push");
    }
    let mut got = reap(&mut ring, 6);
    got.sort_unstable();
    assert_eq!(got, (0..6).map(|i| (100 + i, i as i32)).collect::<Vec<_>>());
}

/// A mixed ring of 8 entries where a NOP128 is pushed after 0..=7 NOP64s,
/// round after round, so that 128-byte entries land on every slot, the
/// last one (the wrap) included: there the ring pads with a NOP that posts
/// no CQE. Every pushed entry completes exactly once with its user_data.
#[test]
fn sqe_mixed_nop128_among_nops_wraps() {
    let test = "sqe_mixed_nop128_among_nops_wraps";
    let Some(mut ring) = mixed_nop128_ring(test) else { return };
    let entries = 8u32;
    // Our own copy of the SQ tail, to know where each entry lands.
    let mut tail = 0u32;
    let mut next_ud = 1u64;
    let mut wrapped = 0;
    for round in 0..400u32 {
        // Up to 4 NOP64s, the NOP128 (2 slots, 3 with the padding), up
        // to 1 NOP64: at most 8 slots, so a round fits the SQ of 8; the
        // mix puts the NOP128 at the last slot 115 times in 400 rounds.
        let before = round % 5;
        let after = (round / 5) % 2;
        let mut expect = Vec::new();
        for i in 0..before + 1 + after {
            let ud = next_ud;
            next_ud += 1;
            let res = (ud % 1000) as i32;
            if i == before {
                if tail % entries == entries - 1 {
                    wrapped += 1;
                    tail += 1;
                }
                push_nop128(&mut ring, ud, res);
                tail += 2;
            } else {
                let mut nop = Sqe::new(sys::IORING_OP_NOP as u8);
                nop.user_data = ud;
                nop.set_op_flags(sys::IORING_NOP_INJECT_RESULT);
                nop.len = res as u32;
                // SAFETY: a NOP names no memory.
                unsafe { ring.push(&nop) }.expect("push a NOP");
                tail += 1;
            }
            expect.push((ud, res));
        }
        let mut got = reap(&mut ring, expect.len());
        got.sort_unstable();
        expect.sort_unstable();
        assert_eq!(got, expect, "round {round}");
        // The padding NOP posted nothing: no completion is left over.
        let mut slots = [CqeSlot::EMPTY; 4];
        match ring.wait_for(&mut slots, 1, Some(Duration::from_millis(1))) {
            Err(Error::WouldBlock) => {}
            Ok(r) => panic!(
                "round {round}: unexpected completions {:?}",
                r.iter().map(|c| c.user_data()).collect::<Vec<_>>()
            ),
            Err(e) => panic!("wait_for: {e}"),
        }
    }
    assert!(wrapped >= 100, "only {wrapped} 128-byte entries met the wrap");
    println!("{test}: {wrapped} 128-byte entries padded at the wrap");
}

/// A 128-byte entry on a ring of 64-byte SQEs that is not mixed is
/// refused before anything is queued.
#[test]
fn next_sqe128_on_a_plain_ring_is_unsupported() {
    let mut ring = Ring::new(Options::default().entries(8)).expect("ring");
    ring.start().expect("start");
    // SAFETY: nothing is written; the call fails.
    match unsafe { ring.next_sqe128() } {
        Err(Error::Unsupported { .. }) => {}
        other => panic!("expected Unsupported, got {:?}", other.map(|_| ())),
    }
    assert_eq!(ring.sq_space_left(), 8);
}

/// A link chain that runs into a 128-byte entry at the end of the SQ goes
/// on through the padding NOP: a failing head cancels the pad (whose
/// cancellation, not a success, posts a CQE, `user_data` 0) and the
/// NOP128 after it.
#[test]
fn sqe_mixed_link_chain_runs_through_the_padding() {
    let test = "sqe_mixed_link_chain_runs_through_the_padding";
    let Some(mut ring) = mixed_nop128_ring(test) else { return };
    // Five NOPs through, so that the batch below starts at slot 5.
    for i in 0..5u64 {
        let mut nop = Sqe::new(sys::IORING_OP_NOP as u8);
        nop.user_data = 10 + i;
        // SAFETY: a NOP names no memory.
        unsafe { ring.push(&nop) }.expect("push");
    }
    let mut got = reap(&mut ring, 5);
    got.sort_unstable();
    assert_eq!(got, (10..15).map(|u| (u, 0)).collect::<Vec<_>>());
    for i in 5..7u64 {
        let mut nop = Sqe::new(sys::IORING_OP_NOP as u8);
        nop.user_data = 10 + i;
        if i == 6 {
            nop.set_op_flags(sys::IORING_NOP_INJECT_RESULT);
            nop.len = (-libc::EIO) as u32;
            nop.flags = sys::IOSQE_IO_LINK as u8;
        }
        // SAFETY: a NOP names no memory.
        unsafe { ring.push(&nop) }.expect("push");
    }
    // The tail is at the last slot: the NOP128 is padded.
    push_nop128(&mut ring, 99, 5);
    let mut got = reap(&mut ring, 4);
    got.sort_unstable();
    let mut want = vec![(15, 0), (0, -libc::ECANCELED), (16, -libc::EIO), (99, -libc::ECANCELED)];
    want.sort_unstable();
    assert_eq!(got, want);
    // Unlinked, the same position (the tail is at 10: 5 NOPs bring it to
    // the last slot again) completes normally with no pad CQE.
    for _ in 0..5 {
        // SAFETY: a NOP names no memory.
        unsafe { ring.push(&Sqe::new(sys::IORING_OP_NOP as u8)) }.expect("push");
    }
    push_nop128(&mut ring, 98, 6);
    let mut got = reap(&mut ring, 6);
    got.sort_unstable();
    assert_eq!(got.last(), Some(&(98, 6)));
    assert!(got[..5].iter().all(|&c| c == (0, 0)));
    let mut slots = [CqeSlot::EMPTY; 4];
    assert!(matches!(ring.wait_for(&mut slots, 1, Some(Duration::from_millis(1))), Err(Error::WouldBlock)));
}
