//! CQE provenance (SOUNDNESS.md, mechanism 1): every reaped CQE carries
//! its ring's identity and its 64-bit CQ position, strictly increasing
//! through copies, zero-copy passes, batches and a resize; copies keep
//! both; no two rings share an identity.

mod common;

use common::{push_nop, ring};
use uring_core::{CqeSlot, Options, Ring};

/// Reaps `n` CQEs as copies, through `wait` (batches of up to 3).
fn reap_slots(ring: &mut Ring, n: usize) -> Vec<CqeSlot> {
    let mut out = Vec::new();
    let mut slots = [CqeSlot::EMPTY; 3];
    while out.len() < n {
        let k = (n - out.len()).min(3);
        let r = ring.wait_for(&mut slots[..k], 1, Some(std::time::Duration::from_secs(5))).expect("a completion");
        out.extend(r.iter().map(|c| c.to_slot()));
    }
    out
}

#[test]
fn rings_have_distinct_nonzero_identities() {
    let rings: Vec<Ring> = (0..8).map(|_| Ring::new(Options::small()).unwrap()).collect();
    let mut ids: Vec<u64> = rings.iter().map(Ring::id).collect();
    assert!(ids.iter().all(|&i| i != 0));
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 8);
    assert_eq!(CqeSlot::EMPTY.cqe().ring_id(), 0, "an empty slot belongs to no ring");
}

#[test]
fn positions_grow_across_reaps_passes_and_a_resize() {
    let mut ring = ring(8);
    let id = ring.id();
    assert_eq!(ring.cq_position(), 0);
    for i in 0..7 {
        push_nop(&mut ring, i).unwrap();
    }
    ring.submit_and_wait(7).unwrap();
    let mut seqs: Vec<u64> = reap_slots(&mut ring, 4).iter().map(|s| s.cqe().seq()).collect();
    assert_eq!(ring.cq_position(), 4);
    // The rest through a zero-copy pass.
    {
        let mut pass = ring.completions().unwrap();
        while let Some(c) = pass.next() {
            assert_eq!(c.ring_id(), id);
            assert_eq!(c.to_slot().cqe().seq(), c.seq(), "a copy keeps the position");
            seqs.push(c.seq());
        }
    }
    assert_eq!(seqs, (0..7).collect::<Vec<u64>>());
    assert_eq!(ring.cq_position(), 7);
    // Across a resize (deferred-task-work rings only), with CQEs carried
    // over: positions continue, never restart.
    for i in 0..3 {
        push_nop(&mut ring, 100 + i).unwrap();
    }
    ring.submit_and_wait(3).unwrap();
    ring.resize(16, 32).unwrap();
    for i in 0..16 {
        push_nop(&mut ring, 200 + i).unwrap();
    }
    ring.submit().unwrap();
    for i in 16..20 {
        push_nop(&mut ring, 200 + i).unwrap();
    }
    let after: Vec<(u64, u64)> = reap_slots(&mut ring, 23)
        .iter()
        .map(|s| {
            assert_eq!(s.cqe().ring_id(), id);
            (s.cqe().user_data(), s.cqe().seq())
        })
        .collect();
    assert_eq!(after.iter().map(|a| a.1).collect::<Vec<_>>(), (7..30).collect::<Vec<u64>>());
    assert_eq!(after[0].0, 100, "the carried-over CQEs come first");
    assert_eq!(ring.cq_position(), 30);
}

#[test]
fn positions_wrap_the_kernels_32_bit_head_without_wrapping() {
    // 2^32 CQEs cannot be produced in a test; what can be checked is that
    // the position is the consumed count, independent of the ring index:
    // many laps of a small CQ keep it exact.
    let mut ring = Ring::new(Options::default().entries(2).cq_entries(4)).unwrap();
    ring.start().unwrap();
    let mut expected = 0u64;
    for lap in 0..500u64 {
        push_nop(&mut ring, lap).unwrap();
        push_nop(&mut ring, lap).unwrap();
        ring.submit_and_wait(2).unwrap();
        for s in reap_slots(&mut ring, 2) {
            assert_eq!(s.cqe().seq(), expected);
            expected += 1;
        }
    }
    assert_eq!(ring.cq_position(), 1000);
}
