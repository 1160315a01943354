//! CQE provenance on the host, without a kernel that can register an
//! instance: the bookkeeping a data CQE goes through before it hands out
//! area memory, on a detached instance (`bench_support`), and the
//! receiver's routing of CQEs given with their ring identity and position.
//! The same refusals against the kernel's own CQEs are in `replay.rs`
//! (7.2+, in the VM).

use uring_core::{Options, Ring, sys};
use uring_zcrx::zcrx::bench_support::{consume, deliver, detached, detached_on};
use uring_zcrx::{ReceiverState, ZcrxBuffer, ZcrxEnd, ZcrxHandler, ZcrxReceiver};

const PAGE: u64 = 4096;

fn page() -> u64 {
    uring_core::Mapping::page_size() as u64
}

#[derive(Default)]
struct Keep {
    held: Vec<ZcrxBuffer>,
    stopped: Vec<ZcrxEnd>,
}

impl ZcrxHandler for Keep {
    fn on_data(&mut self, buf: ZcrxBuffer) -> bool {
        self.held.push(buf);
        true
    }

    fn on_stopped(&mut self, end: ZcrxEnd) {
        self.stopped.push(end);
    }
}

#[test]
fn a_niov_is_handed_out_again_only_for_a_newer_cqe() {
    assert_eq!(page(), PAGE, "the test assumes 4 KiB pages");
    let zcrx = detached(16 * PAGE as usize, 64);
    let first = deliver(&zcrx, 10, 0, 100).expect("a first delivery");
    // The same CQE again, while the buffer is held and after it is
    // released (and consumed: the kernel may be refilling the niov).
    assert!(deliver(&zcrx, 10, 0, 100).is_none(), "a copy of the CQE while its buffer is held");
    drop(first);
    assert_eq!(consume(&zcrx), 1);
    assert!(deliver(&zcrx, 10, 0, 100).is_none(), "a copy of the CQE after the niov went back");
    assert!(deliver(&zcrx, 9, 200, 100).is_none(), "an older CQE for the same niov");
    // Another niov has its own history; a newer CQE for the first is a new
    // delivery (the kernel may hand out one niov several times).
    let other = deliver(&zcrx, 3, PAGE, 100).expect("another niov");
    let again = deliver(&zcrx, 11, 0, 100).expect("a newer CQE for the niov");
    let frag = deliver(&zcrx, 12, 100, 100).expect("a second fragment of the niov");
    assert_eq!(zcrx.counts().0, 4);
    drop((other, again, frag));
}

#[test]
fn positions_are_kept_per_ring_for_an_instance_two_rings_share() {
    let a = detached(16 * PAGE as usize, 64);
    let b = detached_on(&a, 77);
    assert_eq!(b.ring_id(), 77);
    let x = deliver(&a, 1000, 0, 10).expect("ring A's delivery");
    // Ring B's positions are its own: a smaller one is not older.
    let y = deliver(&b, 5, 0, 10).expect("ring B's delivery of the same niov");
    assert!(deliver(&b, 5, 0, 10).is_none(), "ring B's CQE presented again");
    assert!(deliver(&a, 1000, 0, 10).is_none(), "ring A's CQE presented again");
    // A second handle on the same ring shares the ring's history.
    let b2 = detached_on(&a, 77);
    assert!(deliver(&b2, 5, 0, 10).is_none(), "ring B's CQE through another handle of ring B");
    drop((x, y));
}

#[test]
fn a_range_outside_one_niov_or_the_area_or_with_another_token_is_refused() {
    let zcrx = detached(16 * PAGE as usize, 64);
    assert!(deliver(&zcrx, 1, PAGE - 10, 20).is_none(), "across a niov boundary");
    assert!(deliver(&zcrx, 2, 16 * PAGE - 10, 20).is_none(), "past the area");
    assert!(deliver(&zcrx, 3, 16 * PAGE, 1).is_none(), "after the area");
    assert!(deliver(&zcrx, 4, 0, 0).is_none(), "empty");
    assert!(deliver(&zcrx, 5, 1 << sys::IORING_ZCRX_AREA_SHIFT, 10).is_none(), "another area's token");
    assert!(deliver(&zcrx, u64::MAX, 0, 10).is_none(), "a position past any CQ");
    assert_eq!(zcrx.counts().0, 0);
    // None of the refusals touched the niovs' histories.
    drop(deliver(&zcrx, 1, PAGE - 10, 10).expect("a proper range"));
}

fn ring() -> Ring {
    let mut ring = Ring::new(Options::default().entries(8)).expect("Ring::new");
    ring.start().expect("start");
    ring
}

#[test]
fn the_receiver_takes_a_cqe_only_from_its_ring_and_newer_than_the_last() {
    let mut ring = ring();
    let zcrx = detached(16 * PAGE as usize, 64);
    let id = zcrx.ring_id();
    let mut rx = ZcrxReceiver::new(&zcrx, Keep::default());
    rx.bench_activate();
    let ud = rx.token();
    let more = sys::IORING_CQE_F_MORE;
    // SAFETY: every dispatch in the block names ranges of a detached
    // area, which no kernel writes.
    unsafe {
        assert!(rx.bench_dispatch_at(&mut ring, id, 10, ud, 100, more, [0, 0]));
        assert_eq!(rx.handler().held.len(), 1);
        // The same CQE again; an older one; one of another ring.
        assert!(!rx.bench_dispatch_at(&mut ring, id, 10, ud, 100, more, [0, 0]), "a copy was taken");
        assert!(!rx.bench_dispatch_at(&mut ring, id, 9, ud, 100, more, [PAGE, 0]), "an older CQE was taken");
        assert!(!rx.bench_dispatch_at(&mut ring, id + 1, 11, ud, 100, more, [PAGE, 0]), "another ring's CQE");
        assert_eq!(rx.handler().held.len(), 1);
        // A final CQE that is not newer does not end the stream.
        assert!(!rx.bench_dispatch_at(&mut ring, id, 10, ud, 0, 0, [0, 0]), "a stale final CQE was taken");
        assert!(!rx.bench_dispatch_at(&mut ring, id + 1, 20, ud, 0, 0, [0, 0]), "another ring's final CQE");
        assert_eq!(rx.state(), ReceiverState::Active);
        assert!(rx.handler().stopped.is_empty());
        // The stream goes on, then ends once.
        assert!(rx.bench_dispatch_at(&mut ring, id, 11, ud, 100, more, [PAGE, 0]));
        assert!(rx.bench_dispatch_at(&mut ring, id, 12, ud, 0, 0, [0, 0]));
        assert_eq!(rx.state(), ReceiverState::Stopped);
        assert_eq!(rx.handler().stopped, [ZcrxEnd::Finished]);
        // Nothing of the ended stream is taken again: a copy is not
        // claimed, a newer stray one is claimed and ignored.
        assert!(!rx.bench_dispatch_at(&mut ring, id, 12, ud, 0, 0, [0, 0]));
        rx.bench_dispatch_at(&mut ring, id, 13, ud, 100, more, [2 * PAGE, 0]);
    }
    assert_eq!(rx.handler().stopped.len(), 1);
    assert_eq!(rx.handler().held.len(), 2);
    // A new stream has a new token: the old one's CQEs are not its own.
    rx.bench_activate();
    assert_ne!(rx.token(), ud);
    // SAFETY: as above.
    assert!(!unsafe { rx.bench_dispatch_at(&mut ring, id, 100, ud, 100, more, [3 * PAGE, 0]) });
    assert_eq!(rx.handler().held.len(), 2);
}

#[test]
#[should_panic(expected = "running")]
fn bench_activate_refuses_a_running_receiver() {
    let zcrx = detached(16 * PAGE as usize, 64);
    let mut rx = ZcrxReceiver::new(&zcrx, Keep::default());
    rx.bench_activate();
    rx.bench_activate();
}
