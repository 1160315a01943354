//! The root of the replay attacks in uring-buffers' `attack_*` tests (all
//! fixed): `Ring::cq_position` promises that every CQE reaped before has a
//! smaller `seq`. A `Completions` pass used to consume its CQEs only when
//! dropped, so a `mem::forget`-ten pass left the position at them and the
//! next pass showed them again with `seq` equal to the position read in
//! between, which a layer queuing then took as its own. A pass now
//! consumes each CQE as it hands it out (the kernel gets the slots back
//! when the pass drops).

mod common;

use common::{push_ctx, ring};
use uring_core::SqeContext;

#[test]
fn a_cqe_seen_in_a_forgotten_pass_is_older_than_the_position_after_it() {
    let mut ring = ring(8);
    push_ctx(&mut ring, SqeContext::token(5).unwrap()).unwrap();
    ring.submit_and_wait(1).unwrap();
    let seen = {
        let mut pass = ring.completions().unwrap();
        let seq = pass.next().expect("the NOP's CQE").seq();
        std::mem::forget(pass);
        seq
    };
    let pos = ring.cq_position();
    let again = ring.completions().unwrap().next().map(|c| c.seq());
    assert_eq!(again, None, "the forgotten pass consumed the CQE: it is not shown again");
    assert!(
        seen < pos,
        "a CQE handed out by a (forgotten) pass has seq {seen}, not below cq_position {pos}; the next pass shows it \
         again with seq {again:?}: a layer queuing now (queued_at = {pos}) accepts it as its own"
    );
}
