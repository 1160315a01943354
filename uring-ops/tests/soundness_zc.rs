//! Soundness of `ZcTracker`: no CQE but the send's own (its ring, reaped
//! after it was queued, once) releases a payload the kernel may still read.
//!
//! Each attack queues a send on a socket with no room left, so the kernel
//! keeps the payload for as long as the test wants, then offers the tracker
//! a CQE that is not that send's. A payload handed back is overwritten at
//! once (as a caller reusing it would), so a release that came too early
//! shows up in the bytes the kernel sends: the server must receive the
//! original bytes only.
//!
//! The tracker identities used to be a 16-bit process-wide tag plus a
//! per-tracker send number counted from 0, so the tracker created 65,536
//! after another issued the very `user_data`s the first one did. The tests
//! create exactly that many trackers in between (no syscalls: trackers are
//! plain values) and hold `SERIAL` so that no other test of this binary
//! creates trackers meanwhile.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use uring_core::{CqeSlot, Error, Ring, SqeContext};
use uring_ops::cmd::Nop;
use uring_ops::msg::MsgRingFd;
use uring_ops::prelude::*;
use uring_ops::zc::{ZcEvent, ZcTracker};
use uring_ops::{FileDest, Fixed};

const LEN: usize = 4096;
/// Trackers created between the two whose identities used to coincide.
const WRAP: usize = 1 << 16;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The tracker created `WRAP` trackers after `first` (with none created
/// by anyone else in between, which `SERIAL` ensures).
fn wrapped_twin(first_created: &ZcTracker) -> ZcTracker {
    let _ = first_created;
    for _ in 0..WRAP - 1 {
        drop(ZcTracker::<Vec<u8>>::new());
    }
    ZcTracker::new()
}

/// A loopback pair whose client side cannot take one more byte: filled
/// until `EAGAIN`. Returns how many bytes were queued.
fn blocked_pair() -> (TcpStream, TcpStream, usize) {
    let (client, server) = common::tcp_pair();
    client.set_nonblocking(true).unwrap();
    let chunk = [b'.'; 1024];
    let mut queued = 0;
    let mut c = &client;
    loop {
        match c.write(&chunk) {
            Ok(n) => queued += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("{e}"),
        }
    }
    client.set_nonblocking(false).unwrap();
    (client, server, queued)
}

/// Reads up to `want` bytes from `server` (5 s limit).
fn drain(mut server: TcpStream, want: usize) -> Vec<u8> {
    server.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut all = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = vec![0u8; 65536];
    while all.len() < want && Instant::now() < deadline {
        match server.read(&mut buf[..(want - all.len()).min(65536)]) {
            Ok(0) => break,
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => panic!("{e}"),
        }
    }
    all
}

/// What the victim tracker gave back: its payload (overwritten with `Z`
/// the moment it came back) and whether the kernel had finished with it.
#[derive(Default)]
struct Victim {
    payload: Option<Vec<u8>>,
    releases: usize,
}

impl Victim {
    fn take(&mut self, ev: Option<ZcEvent<Vec<u8>>>) {
        if let Some(ZcEvent::Released { payload: Some(mut p), .. } | ZcEvent::Finished { payload: Some(mut p), .. }) =
            ev
        {
            // The caller owns it now and reuses it.
            p.fill(b'Z');
            self.payload = Some(p);
            self.releases += 1;
        }
    }
}

/// Lets the server drain the blocked socket while the ring runs, every CQE
/// going to `victim` (then to `other`, if any), until the victim's send
/// arrived and its payload came back. Returns the victim's bytes as the
/// server received them.
fn drain_routing(
    ring: &mut Ring,
    victim: &mut ZcTracker,
    v: &mut Victim,
    mut other: Option<&mut ZcTracker>,
    server: TcpStream,
    queued: usize,
) -> Vec<u8> {
    let h = std::thread::spawn(move || drain(server, queued + LEN));
    let mut slots = [CqeSlot::EMPTY; 16];
    let deadline = Instant::now() + Duration::from_secs(10);
    while (!h.is_finished() || victim.in_flight() > 0) && Instant::now() < deadline {
        match ring.wait_for(&mut slots, 1, Some(Duration::from_millis(20))) {
            Ok(done) => {
                for cqe in done.iter() {
                    let ev = victim.handle_cqe(&cqe);
                    if ev.is_none()
                        && let Some(o) = other.as_deref_mut()
                    {
                        o.handle_cqe(&cqe);
                    }
                    v.take(ev);
                }
            }
            Err(Error::WouldBlock) => {}
            Err(e) => panic!("{e}"),
        }
    }
    let got = h.join().unwrap();
    assert_eq!(got.len(), queued + LEN, "the victim's send completed");
    got[queued..].to_vec()
}

fn assert_original(tail: &[u8]) {
    assert!(
        tail.iter().all(|&b| b == b'A'),
        "the kernel read the payload after the tracker handed it back: sent {:?}…",
        &tail[..16]
    );
}

/// Reaps every CQE of `ring` until `tracker` has nothing in flight,
/// returning owned copies of them and the payloads released.
fn pump_saving(ring: &mut Ring, tracker: &mut ZcTracker) -> (Vec<CqeSlot>, Vec<Vec<u8>>) {
    let mut saved = Vec::new();
    let mut back = Vec::new();
    let mut slots = [CqeSlot::EMPTY; 16];
    let deadline = Instant::now() + Duration::from_secs(5);
    while tracker.in_flight() > 0 {
        assert!(Instant::now() < deadline, "timed out");
        match ring.wait_for(&mut slots, 1, Some(Duration::from_millis(100))) {
            Ok(done) => {
                for cqe in done.iter() {
                    saved.push(cqe.to_slot());
                    if let Some(
                        ZcEvent::Released { payload: Some(p), .. } | ZcEvent::Finished { payload: Some(p), .. },
                    ) = tracker.handle_cqe(&cqe)
                    {
                        back.push(p);
                    }
                }
            }
            Err(Error::WouldBlock) => {}
            Err(e) => panic!("{e}"),
        }
    }
    (saved, back)
}

/// The wrap: tracker B, created 65,536 trackers after A, used to issue A's
/// `user_data`; B's CQEs routed to A first released A's payload while A's
/// send still waited for room. Send numbers are process-wide and never
/// reused now: the ids differ and A takes none of B's CQEs.
#[test]
fn zc_ids_never_repeat_across_trackers_so_a_twin_cannot_release_a_payload() {
    let _serial = serial();
    let mut ring = common::ring(16);
    let (client, server, queued) = blocked_pair();
    let (c2, mut s2) = common::tcp_pair();
    let mut a: ZcTracker = ZcTracker::new();
    let mut b = wrapped_twin(&a);
    let ida = a.send(&mut ring, client.as_raw_fd(), vec![b'A'; LEN]).unwrap();
    let idb = b.send(&mut ring, c2.as_raw_fd(), vec![b'B'; 16]).unwrap();
    assert_ne!(ida, idb, "two live sends of two trackers share one user_data");
    ring.submit().unwrap();

    // B's send completes at once; every CQE goes to A first.
    let mut v = Victim::default();
    let mut slots = [CqeSlot::EMPTY; 16];
    let deadline = Instant::now() + Duration::from_secs(5);
    while b.in_flight() > 0 && Instant::now() < deadline {
        if let Ok(done) = ring.wait_for(&mut slots, 1, Some(Duration::from_millis(100))) {
            for cqe in done.iter() {
                let ev = a.handle_cqe(&cqe);
                if ev.is_none() {
                    assert!(b.handle_cqe(&cqe).is_some(), "B's own CQE: {cqe:?}");
                }
                v.take(ev);
            }
        }
    }
    assert_eq!(b.in_flight(), 0, "B's send is done");
    assert_eq!(v.releases, 0, "A released its payload on B's CQE");
    assert_eq!(a.in_flight(), 1);
    let mut x = [0u8; 16];
    s2.read_exact(&mut x).unwrap();
    assert_eq!(x, [b'B'; 16]);

    let tail = drain_routing(&mut ring, &mut a, &mut v, None, server, queued);
    assert_original(&tail);
    assert_eq!(v.releases, 1, "A's payload came back once, on its own notification");
}

/// A replay: a `CqeSlot` saved from a finished send, presented again after
/// its payload was re-sent. Neither the same tracker (whose next send has a
/// new id and a later CQ position) nor a tracker that used to share the
/// old send's identity releases anything on it.
#[test]
fn a_saved_cqe_replayed_after_the_payload_was_resent_releases_nothing() {
    let _serial = serial();
    let mut ring = common::ring(16);
    let (c2, mut s2) = common::tcp_pair();
    let mut a: ZcTracker = ZcTracker::new();
    a.send(&mut ring, c2.as_raw_fd(), vec![b'A'; LEN]).unwrap();
    let (saved, mut back) = pump_saving(&mut ring, &mut a);
    assert_eq!((saved.len(), back.len()), (2, 1), "a result and a notification");
    let mut x = vec![0u8; LEN];
    s2.read_exact(&mut x).unwrap();
    let payload = back.pop().unwrap();

    // The same payload re-sent, by A's twin, on a socket with no room.
    let (client, server, queued) = blocked_pair();
    let mut b = wrapped_twin(&a);
    b.send(&mut ring, client.as_raw_fd(), payload).unwrap();
    ring.submit().unwrap();
    let mut v = Victim::default();
    for slot in &saved {
        let ev = b.handle_cqe(&slot.cqe());
        assert!(ev.is_none(), "a replayed CQE was taken: {ev:?}");
        v.take(ev);
        assert!(a.handle_cqe(&slot.cqe()).is_none(), "A took its own CQE twice");
    }
    assert_eq!(b.in_flight(), 1);

    // And by A itself: its new send refuses the old CQEs too.
    let (c3, mut s3) = common::tcp_pair();
    a.send(&mut ring, c3.as_raw_fd(), vec![b'C'; 8]).unwrap();
    for slot in &saved {
        assert!(a.handle_cqe(&slot.cqe()).is_none(), "a replayed CQE was taken by A");
    }
    assert_eq!(a.in_flight(), 1);

    let tail = drain_routing(&mut ring, &mut b, &mut v, Some(&mut a), server, queued);
    assert_original(&tail);
    assert_eq!(v.releases, 1, "the payload came back once, on its own notification");
    let mut y = [0u8; 8];
    s3.read_exact(&mut y).unwrap();
    let (_, back) = pump_saving(&mut ring, &mut a);
    assert!(back.len() <= 1);
}

/// A CQE of another ring: B (A's twin under the old scheme) sends on a
/// second ring; its CQEs, offered to A, release nothing: A's send was
/// queued on the first ring.
#[test]
fn a_cqe_of_another_ring_releases_nothing() {
    let _serial = serial();
    let mut ring = common::ring(16);
    let mut other = common::ring(16);
    let (client, server, queued) = blocked_pair();
    let (c2, mut s2) = common::tcp_pair();
    let mut a: ZcTracker = ZcTracker::new();
    let mut b = wrapped_twin(&a);
    a.send(&mut ring, client.as_raw_fd(), vec![b'A'; LEN]).unwrap();
    ring.submit().unwrap();
    b.send(&mut other, c2.as_raw_fd(), vec![b'B'; 16]).unwrap();
    other.submit().unwrap();
    assert_ne!(ring.id(), other.id());

    let other_id = other.id();
    let mut v = Victim::default();
    let mut slots = [CqeSlot::EMPTY; 16];
    let deadline = Instant::now() + Duration::from_secs(5);
    while b.in_flight() > 0 && Instant::now() < deadline {
        if let Ok(done) = other.wait_for(&mut slots, 1, Some(Duration::from_millis(100))) {
            for cqe in done.iter() {
                assert_eq!(cqe.ring_id(), other_id);
                let ev = a.handle_cqe(&cqe);
                if ev.is_none() {
                    b.handle_cqe(&cqe);
                }
                v.take(ev);
            }
        }
    }
    assert_eq!(b.in_flight(), 0);
    assert_eq!(v.releases, 0, "A released its payload on another ring's CQE");
    let mut x = [0u8; 16];
    s2.read_exact(&mut x).unwrap();

    let tail = drain_routing(&mut ring, &mut a, &mut v, None, server, queued);
    assert_original(&tail);
    assert_eq!(v.releases, 1);
}

/// `push_with_deadline` used to push its operation without the reserved
/// tag check: a NOP with a live send's id completed at once and released
/// its payload. It is refused now, and the send is untouched.
#[test]
fn a_deadline_with_a_zc_id_is_refused() {
    let _serial = serial();
    let mut ring = common::ring(16);
    let (client, server, queued) = blocked_pair();
    let mut a: ZcTracker = ZcTracker::new();
    let id = a.send(&mut ring, client.as_raw_fd(), vec![b'A'; LEN]).unwrap();
    ring.submit().unwrap();
    let err = ring
        .push_with_deadline(
            SqeContext::of_user_data(id.user_data()),
            Nop::new(),
            SqeContext::for_fd(-1),
            Duration::from_secs(5),
        )
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert_eq!(ring.sq_pending(), 0, "nothing queued");
    let mut v = Victim::default();
    let tail = drain_routing(&mut ring, &mut a, &mut v, None, server, queued);
    assert_original(&tail);
    assert_eq!(v.releases, 1);
}

/// `MsgRingFd` used to post any `user_data` to the target ring, a live
/// send's id included. It is refused now.
#[test]
fn msg_ring_fd_with_a_zc_id_is_refused() {
    let _serial = serial();
    let mut target = common::ring(16);
    let mut source = common::ring(16);
    target.register().files_sparse(4).unwrap();
    let devnull = std::fs::File::open("/dev/null").unwrap();
    source.register().files(&[devnull.as_raw_fd()]).unwrap();
    let (client, server, queued) = blocked_pair();
    let mut a: ZcTracker = ZcTracker::new();
    let id = a.send(&mut target, client.as_raw_fd(), vec![b'A'; LEN]).unwrap();
    target.submit().unwrap();
    let err = source
        .push_op(
            SqeContext::for_fd(-1),
            MsgRingFd::new(target.as_raw_fd(), Fixed(0), FileDest::Slot(1), id.user_data()),
        )
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert_eq!(source.sq_pending(), 0);
    let mut v = Victim::default();
    let tail = drain_routing(&mut target, &mut a, &mut v, None, server, queued);
    assert_original(&tail);
    assert_eq!(v.releases, 1);
}
