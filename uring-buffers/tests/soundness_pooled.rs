//! Regression tests for holes a second round of attacks found (safe call
//! sequences that made the kernel write into memory the library had lent
//! out; SOUNDNESS.md). Each asserts the sound outcome.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;

use uring_buffers::{BufRing, BufRingConfig};
use uring_core::{Error as CoreError, Options, Ring, SqeContext};
use uring_ops::RingOps;
use uring_ops::net::RecvSelect;

mod common;

use common::{reap, ring};

/// HOLE A: one pooled context pushed twice. `record_submission` kept
/// only the last entry's group, so the first entry's CQE (a buffer of
/// group 21) was "proven" to come from group 22, which then lent out its
/// buffer 0 while it was still published: the second receive filled it
/// under the borrow. A pooled context names one submission now.
#[test]
fn a_pooled_context_names_one_submission() {
    let mut ring = ring();
    let mut a = BufRing::register(&mut ring, BufRingConfig::new(21, 4, 64)).unwrap();
    let mut b = BufRing::register(&mut ring, BufRingConfig::new(22, 4, 64)).unwrap();
    let (mut tx1, rx1) = UnixStream::pair().unwrap();
    let (_tx2, rx2) = UnixStream::pair().unwrap();
    tx1.write_all(b"to group 21").unwrap();
    let ctx = ring.pools_mut().acquire_indirect().unwrap();
    ring.push_op(ctx, RecvSelect::new(rx1.as_raw_fd(), 21)).unwrap();
    // Same live context, an entry that selects from group 22: refused.
    let e = ring.push_op(ctx, RecvSelect::new(rx2.as_raw_fd(), 22)).unwrap_err();
    assert!(e.to_string().contains("one submission"), "{e}");
    assert_eq!(ring.sq_pending(), 1, "only the first entry is queued");
    ring.submit().unwrap();
    let first = reap(&mut ring, 1)[0];
    let sel = ring.pools().buffer_selection(&first.cqe()).expect("a selection");
    assert_eq!(sel.group(), 21);
    assert!(b.take_selection(&sel).is_err());
    let buf = a.take_selection(&sel).unwrap();
    assert_eq!(a.bytes(&buf), b"to group 21");
    // Released, the slot names a new submission under a new generation.
    ring.pools_mut().release(ctx).unwrap();
    let again = ring.pools_mut().acquire_indirect().unwrap();
    ring.push_op(again, RecvSelect::new(rx2.as_raw_fd(), 22)).unwrap();
    assert!(ring.pools().buffer_selection(&first.cqe()).is_none(), "the old CQE proves nothing now");
}

/// HOLE B: unregister a group and register a new `BufRing` under the same
/// id: the new ring accepted a saved CQE of the old one and lent out its
/// buffer 0, which the kernel owned. A group id serves one registration
/// per ring now (a late CQE of a request that committed a buffer of the
/// old registration would name the new one's buffer just the same).
#[test]
fn a_group_id_serves_one_registration_per_ring() {
    let mut ring = ring();
    let old = BufRing::register(&mut ring, BufRingConfig::new(7, 4, 64)).unwrap();
    let (mut tx, rx) = UnixStream::pair().unwrap();
    tx.write_all(b"old ring").unwrap();
    ring.push_op(SqeContext::for_fd(0), RecvSelect::new(rx.as_raw_fd(), 7)).unwrap();
    ring.submit().unwrap();
    let _saved = reap(&mut ring, 1)[0];
    old.unregister(&mut ring).unwrap();
    let e = BufRing::register(&mut ring, BufRingConfig::new(7, 4, 64)).unwrap_err();
    assert!(e.to_string().contains("registered on this ring before"), "{e}");
    let e = uring_buffers::SendRing::register(&mut ring, BufRingConfig::new(7, 4, 64)).unwrap_err();
    assert!(
        e.to_string().contains("registered on this ring before") || e.to_string().contains("named by a request"),
        "{e}"
    );
    // Another id is fine, and so is the same id on another ring.
    BufRing::register(&mut ring, BufRingConfig::new(8, 4, 64)).unwrap();
    BufRing::register(&mut self::ring(), BufRingConfig::new(7, 4, 64)).unwrap();
}

/// HOLE C: an incremental ring's one request was named by the caller's
/// context, so a NOP (or a `MSG_RING`) under the same context "ended" it
/// while it was still armed; a second request then committed ranges of
/// the same buffer out of order with the first (io-wq commits at
/// selection), and a range was lent out over bytes the first was still to
/// write. The request is named by the ring's own reserved identity now:
/// nothing else can carry it, and a second request waits for the first's
/// real end.
#[test]
fn an_incremental_request_is_ended_only_by_its_own_last_cqe() {
    use std::io::Read;
    use uring_ops::cmd::Nop;
    use uring_ops::file::ReadProvided;
    use uring_ops::msg::MsgRing;
    let mut ring = ring();
    let mut br = match BufRing::register(&mut ring, BufRingConfig::new(31, 2, 64).incremental()) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("SKIPPED an_incremental_request_is_ended_only_by_its_own_last_cqe: {e}");
            return;
        }
    };
    let (rd_a, mut wr_a) = std::io::pipe().unwrap();
    let a = br.push_op(&mut ring, ReadProvided::new(rd_a.as_raw_fd(), 16, 31)).unwrap();
    ring.submit().unwrap();
    for e in [
        ring.push_op(a, Nop::new()).unwrap_err(),
        ring.push_op(SqeContext::for_fd(1), MsgRing::new(ring.as_raw_fd(), a.raw(), 0)).unwrap_err(),
    ] {
        assert!(matches!(e, CoreError::InvalidArgument(_)), "{e}");
    }
    // A NOP under a look-alike context is no end of the request.
    ring.push_op(SqeContext::for_fd(2), Nop::new()).unwrap();
    ring.submit().unwrap();
    let nop = reap(&mut ring, 1)[0];
    assert!(!br.end_request(&nop.cqe()) && br.take(&nop.cqe()).unwrap().is_none());
    assert!(br.request_in_flight());
    let (rd_b, _wr_b) = std::io::pipe().unwrap();
    let e = br.push_op(&mut ring, ReadProvided::new(rd_b.as_raw_fd(), 0, 31)).unwrap_err();
    assert!(e.to_string().contains("one at a time"), "{e}");
    // A's own CQE ends it, with its bytes.
    wr_a.write_all(b"AAAA").unwrap();
    let a_cqe = reap(&mut ring, 1)[0];
    let buf = br.take(&a_cqe.cqe()).unwrap().unwrap();
    assert_eq!(br.bytes(&buf), b"AAAA");
    assert!(!br.request_in_flight());
    let mut rest = [0u8; 0];
    let _ = (&rd_a).read(&mut rest);
}

/// HOLE D: pooled generations are 32-bit and wrap (`wrapping_add`), and
/// `ContextPools::buffer_selection` did not compare the CQE's `seq` with
/// the submission (it does now: the saved CQE proves nothing). Save a CQE of pooled context P (group 21), release P,
/// cycle the slot 2^31 times: P is live again; queue a group-22 receive
/// under it; the saved CQE now proves group 22, buffer 0, which the
/// kernel still owns. ~3 min in debug.
#[test]
#[ignore = "2^31 acquire/release cycles of one pooled slot: about 3 minutes in a debug build; run with --ignored"]
fn a_pooled_generation_that_came_round_proves_nothing_for_an_old_cqe() {
    let mut ring = Ring::new(Options::default().entries(16).indirect_contexts(1)).expect("Ring::new");
    ring.start().unwrap();
    let mut a = BufRing::register(&mut ring, BufRingConfig::new(21, 4, 64)).unwrap();
    let mut b = BufRing::register(&mut ring, BufRingConfig::new(22, 4, 64)).unwrap();
    let (mut tx1, rx1) = UnixStream::pair().unwrap();
    let (mut tx2, rx2) = UnixStream::pair().unwrap();
    tx1.write_all(b"to group 21").unwrap();
    let p = ring.pools_mut().acquire_indirect().unwrap();
    ring.push_op(p, RecvSelect::new(rx1.as_raw_fd(), 21)).unwrap();
    ring.submit().unwrap();
    let saved = reap(&mut ring, 1)[0];
    let mine = a.take(&saved.cqe()).unwrap_or(None);
    ring.pools_mut().release(p).unwrap();
    let mut again = ring.pools_mut().acquire_indirect().unwrap();
    let mut n: u64 = 1;
    while again != p {
        ring.pools_mut().release(again).unwrap();
        again = ring.pools_mut().acquire_indirect().unwrap();
        n += 1;
    }
    eprintln!("context {p:?} live again after {n} acquisitions");
    ring.push_op(again, RecvSelect::new(rx2.as_raw_fd(), 22)).unwrap();
    ring.submit().unwrap();
    let Some(sel) = ring.pools().buffer_selection(&saved.cqe()) else { return };
    eprintln!("the old group-21 CQE now proves group {}", sel.group());
    let Ok(stolen) = b.take_selection(&sel) else { return };
    let view: &[u8] = b.bytes(&stolen);
    let before = view.to_vec();
    tx2.write_all(b"KERNEL WROTE").unwrap();
    let _ = reap(&mut ring, 1);
    let after = view.to_vec();
    let _ = mine;
    assert_eq!(before, after, "HOLE: the kernel wrote group 22's buffer 0 while it was lent out");
}

/// A request queued on a group id before a send ring or an incremental
/// ring reserves it could still select from the group once it exists (a
/// receive waits for data, then selects): such an id cannot be reserved.
#[test]
fn a_group_a_request_named_cannot_be_reserved() {
    let mut ring = ring();
    let (_tx, rx) = UnixStream::pair().unwrap();
    ring.push_op(SqeContext::for_fd(0), RecvSelect::new(rx.as_raw_fd(), 90)).unwrap();
    ring.submit().unwrap();
    let e = uring_buffers::SendRing::register(&mut ring, BufRingConfig::new(90, 4, 64)).unwrap_err();
    assert!(e.to_string().contains("named by a request"), "{e}");
    let e = BufRing::register(&mut ring, BufRingConfig::new(90, 4, 64).incremental()).unwrap_err();
    assert!(e.to_string().contains("named by a request"), "{e}");
    // A plain ring may take it (its bookkeeping takes any proven CQE), and
    // another id may be reserved.
    BufRing::register(&mut ring, BufRingConfig::new(90, 4, 64)).unwrap();
    uring_buffers::SendRing::register(&mut ring, BufRingConfig::new(91, 4, 64)).unwrap();
}
