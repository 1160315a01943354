//! CQE provenance against the kernel's own CQEs (7.2+, `ZCRX_REG_NODEV`;
//! skips elsewhere): a saved copy of a receiver's CQE presented again
//! hands out no area memory and ends no stream, and a ring that reuses the
//! fd number of an instance's closed ring is not that ring. The
//! bookkeeping itself is tested on the host in `provenance.rs`.

mod common;

use std::io::Write;
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use common::{fd, nodev, ring, tcp_pair};
use uring_core::{CqeSize, CqeSlot, Error as CoreError, Ring};
use uring_ops::prelude::HandleCqe;
use uring_zcrx::{Error, ReceiverState, ZcrxBuffer, ZcrxEnd, ZcrxHandler, ZcrxReceiver};

#[derive(Default)]
struct Keeper {
    keep: bool,
    held: Vec<ZcrxBuffer>,
    seen: usize,
    stopped: Vec<ZcrxEnd>,
}

impl ZcrxHandler for Keeper {
    fn on_data(&mut self, buf: ZcrxBuffer) -> bool {
        self.seen += 1;
        if self.keep {
            self.held.push(buf);
        }
        true // else dropped: released to the refill ring
    }

    fn on_stopped(&mut self, end: ZcrxEnd) {
        self.stopped.push(end);
    }
}

/// Reaps for up to `limit`, routing every CQE to `rx` (each must be
/// claimed); returns copies of the data CQEs (F_MORE, res > 0) and of the
/// final one, if any.
fn pump(ring: &mut Ring, rx: &mut ZcrxReceiver<Keeper>, limit: Duration, want: usize) -> Vec<CqeSlot> {
    let mut slots = [CqeSlot::EMPTY; 64];
    let mut out = Vec::new();
    let deadline = Instant::now() + limit;
    while out.len() < want && Instant::now() < deadline && !rx.is_stopped() {
        let n = match ring.wait_for(&mut slots, 1, Some(Duration::from_millis(100))) {
            Ok(r) => r.len(),
            Err(CoreError::WouldBlock) => 0,
            Err(e) => panic!("wait_for: {e}"),
        };
        for s in &slots[..n] {
            let c = s.cqe();
            if (c.res() > 0 && c.more()) || !c.more() {
                out.push(*s);
            }
            assert!(rx.handle_cqe(ring, &c).is_some(), "unclaimed completion {c:?}");
        }
    }
    out
}

fn stop_and_wait(ring: &mut Ring, rx: &mut ZcrxReceiver<Keeper>) {
    rx.stop(ring).expect("stop");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut slots = [CqeSlot::EMPTY; 64];
    while !rx.is_stopped() {
        assert!(Instant::now() < deadline, "no stop: {rx:?}");
        let n = ring.wait_for(&mut slots, 1, Some(Duration::from_millis(100))).map(|r| r.len()).unwrap_or(0);
        for s in &slots[..n] {
            rx.handle_cqe(ring, &s.cqe());
        }
    }
}

#[test]
fn a_replayed_data_cqe_hands_out_nothing() {
    let Some((mut ring, zcrx)) = nodev("a_replayed_data_cqe_hands_out_nothing", CqeSize::Big, |c| c) else {
        return;
    };
    let (server, mut client) = tcp_pair();
    let mut rx = ZcrxReceiver::new(&zcrx, Keeper::default()).manual_flush();
    rx.start(&mut ring, fd(&server)).unwrap();

    // A first buffer, released at once and given back to the kernel.
    client.write_all(&[b'A'; 4096]).unwrap();
    let first = pump(&mut ring, &mut rx, Duration::from_secs(10), 1);
    let first = *first.first().expect("a data CQE");
    assert_eq!(zcrx.counts().0, zcrx.counts().1, "every buffer released");
    zcrx.flush(&ring).unwrap();

    // Its copy, presented again: not claimed, no buffer.
    rx.handler_mut().keep = true;
    let delivered = zcrx.counts().0;
    assert!(rx.handle_cqe(&mut ring, &first.cqe()).is_none(), "a replayed data CQE was claimed");
    assert!(rx.handler().held.is_empty(), "a second token for a range the kernel got back");
    assert_eq!(zcrx.counts().0, delivered);

    // A buffer still held: a copy of its CQE makes no second token (whose
    // release would give the kernel the memory the first still lends).
    client.write_all(&[b'C'; 4096]).unwrap();
    let kept = pump(&mut ring, &mut rx, Duration::from_secs(10), 1);
    let kept = *kept.first().expect("a second data CQE");
    let held = rx.handler().held.len();
    assert!(held >= 1);
    assert!(rx.handle_cqe(&mut ring, &kept.cqe()).is_none(), "a replayed CQE of a held buffer was claimed");
    assert_eq!(rx.handler().held.len(), held);
    let snapshot: Vec<Vec<u8>> = rx.handler().held.iter().map(|b| b.as_slice().to_vec()).collect();

    // Keep the stream going, releasing everything new: the kernel reuses
    // released memory but never writes what is still lent out.
    rx.handler_mut().keep = false;
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline && !rx.is_stopped() {
        client.write_all(&[b'B'; 16384]).unwrap();
        pump(&mut ring, &mut rx, Duration::from_millis(100), usize::MAX);
        zcrx.flush(&ring).unwrap();
        assert!(rx.handle_cqe(&mut ring, &first.cqe()).is_none(), "a replayed data CQE was claimed");
        assert!(rx.handle_cqe(&mut ring, &kept.cqe()).is_none(), "a replayed data CQE was claimed");
    }
    assert!(rx.handler().seen > 2, "the stream went on");
    let now: Vec<Vec<u8>> = rx.handler().held.iter().map(|b| b.as_slice().to_vec()).collect();
    assert_eq!(now, snapshot, "the kernel wrote into memory lent out through a live ZcrxBuffer");
    stop_and_wait(&mut ring, &mut rx);
    assert_eq!(rx.handler().stopped.len(), 1);
}

#[test]
fn a_copy_of_an_ended_streams_cqes_neither_stops_nor_feeds_the_next_stream() {
    let Some((mut ring, zcrx)) = nodev("a_copy_of_an_ended_streams_cqes", CqeSize::Big, |c| c) else { return };
    let (server, mut client) = tcp_pair();
    let mut rx = ZcrxReceiver::new(&zcrx, Keeper::default());
    rx.start(&mut ring, fd(&server)).unwrap();
    client.write_all(&[b'A'; 8192]).unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let saved = pump(&mut ring, &mut rx, Duration::from_secs(20), usize::MAX);
    assert!(rx.is_stopped());
    assert_eq!(rx.handler().stopped, [ZcrxEnd::Finished]);
    let last = *saved.last().expect("the final CQE");
    assert!(!last.cqe().more(), "the last copy is the final CQE");
    assert!(saved.len() >= 2, "data CQEs, then the final one");

    // A copy of the final CQE while stopped: nothing.
    assert!(rx.handle_cqe(&mut ring, &last.cqe()).is_none(), "a replayed final CQE was claimed");

    // A new stream: the old stream's copies are not its CQEs.
    let (server2, mut client2) = tcp_pair();
    rx.handler_mut().keep = true;
    rx.start(&mut ring, fd(&server2)).unwrap();
    for s in &saved {
        assert!(rx.handle_cqe(&mut ring, &s.cqe()).is_none(), "an old stream's CQE was claimed");
    }
    assert_eq!(rx.state(), ReceiverState::Active, "a replayed final CQE stopped a running stream");
    assert!(rx.handler().held.is_empty());
    assert_eq!(rx.handler().stopped.len(), 1);

    // The new stream works, and its own copies are refused too.
    client2.write_all(&[b'N'; 4096]).unwrap();
    let got = pump(&mut ring, &mut rx, Duration::from_secs(10), 1);
    let data = *got.first().expect("a data CQE of the new stream");
    let held = rx.handler().held.len();
    assert!(held >= 1 && rx.handler().held.iter().all(|b| b.as_slice().iter().all(|&x| x == b'N')));
    assert!(rx.handle_cqe(&mut ring, &data.cqe()).is_none());
    assert_eq!(rx.handler().held.len(), held);
    rx.handler_mut().held.clear();
    stop_and_wait(&mut ring, &mut rx);
    assert_eq!(rx.handler().stopped.len(), 2);
    assert!(rx.handle_cqe(&mut ring, &data.cqe()).is_none());
}

#[test]
fn a_ring_reusing_the_fd_of_the_instances_closed_ring_is_another_ring() {
    let Some((first, zcrx)) = nodev("a_ring_reusing_the_fd", CqeSize::Big, |c| c) else { return };
    let old_fd = first.as_raw_fd();
    drop(first);
    let mut second = ring(CqeSize::Big);
    println!("instance's ring fd {old_fd}, new ring fd {}", second.as_raw_fd());
    assert!(matches!(zcrx.flush(&second).unwrap_err(), Error::WrongRing { .. }));
    assert!(matches!(zcrx.export(&second).unwrap_err(), Error::WrongRing { .. }));
    let (server, _client) = tcp_pair();
    let mut rx = ZcrxReceiver::new(&zcrx, Keeper::default());
    assert!(matches!(rx.start(&mut second, fd(&server)).unwrap_err(), Error::WrongRing { .. }));
    assert_eq!(rx.state(), ReceiverState::Idle);
}
