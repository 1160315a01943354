//! Zero-copy send and its tracker against the kernel.

mod common;

use std::io::Read;
use std::net::{Shutdown, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use uring_core::{CqeSlot, Error, Ring, SqeContext};
use uring_ops::net::{NetOps, SendZc};
use uring_ops::prelude::*;
use uring_ops::zc::{ZcCqe, ZcEvent, ZcPayload, ZcTracker, classify};

/// Submits, then feeds every CQE to `tracker` until `n` events came back
/// (5 s limit). CQEs that are not the tracker's fail the test.
fn pump<P: ZcPayload>(ring: &mut Ring, tracker: &mut ZcTracker<P>, n: usize) -> Vec<ZcEvent<P>> {
    let mut events = Vec::new();
    let mut slots = [CqeSlot::EMPTY; 16];
    let deadline = Instant::now() + Duration::from_secs(5);
    while events.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "timed out after {} of {n} events", events.len());
        match ring.wait_for(&mut slots, 1, Some(left)) {
            Ok(done) => {
                for cqe in done.iter() {
                    let ev = tracker.handle_cqe(&cqe);
                    events.push(ev.unwrap_or_else(|| panic!("not the tracker's: {cqe:?}")));
                }
            }
            Err(Error::WouldBlock) => {}
            Err(e) => panic!("wait_for: {e}"),
        }
    }
    events
}

#[test]
fn every_tracked_send_yields_one_result_and_one_release_and_bytes_arrive() {
    let mut ring = common::ring(16);
    let (client, mut server) = common::tcp_pair();
    let mut tracker: ZcTracker = ZcTracker::new();
    let payloads: Vec<Vec<u8>> = (0..4u8).map(|i| vec![b'a' + i; 1000 * (usize::from(i) + 1)]).collect();
    let mut addrs = Vec::new();
    let mut ids = Vec::new();
    for p in payloads.clone() {
        addrs.push(p.as_ptr());
        ids.push(tracker.send(&mut ring, client.as_raw_fd(), p).unwrap());
    }
    assert_eq!(tracker.in_flight(), 4);

    let events = pump(&mut ring, &mut tracker, 8);
    let mut sent = [0u32; 4];
    let mut released: Vec<Option<Vec<u8>>> = vec![None, None, None, None];
    for ev in events {
        match ev {
            ZcEvent::Sent { id, bytes } => {
                let i = ids.iter().position(|x| *x == id).unwrap();
                assert_eq!(sent[i], 0, "one result per send");
                sent[i] = bytes;
            }
            ZcEvent::Released { id, payload, copied } => {
                let i = ids.iter().position(|x| *x == id).unwrap();
                assert!(released[i].is_none(), "one release per send");
                // Loopback delivers to a local socket, which copies: the
                // kernel reports it.
                assert_eq!(copied, Some(true), "usage report on loopback");
                released[i] = payload;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    for i in 0..4 {
        assert_eq!(sent[i] as usize, payloads[i].len());
        let back = released[i].take().expect("payload returned");
        assert_eq!(back.as_ptr(), addrs[i], "the very buffer comes back");
        assert_eq!(back, payloads[i]);
    }
    assert_eq!(tracker.in_flight(), 0);
    let stats = tracker.stats();
    assert_eq!((stats.submitted, stats.results, stats.notifications, stats.copied), (4, 4, 4, 4));
    assert_eq!(stats.bytes, 10_000);

    let mut got = vec![0u8; 10_000];
    server.read_exact(&mut got).unwrap();
    assert_eq!(got, payloads.concat());
}

#[test]
fn a_failed_send_still_releases_its_payload_once() {
    let mut ring = common::ring(8);
    let (client, _server) = common::tcp_pair();
    client.shutdown(Shutdown::Write).unwrap();
    let mut tracker: ZcTracker<Box<[u8]>> = ZcTracker::new();
    let id = tracker.send(&mut ring, client.as_raw_fd(), vec![7u8; 64].into_boxed_slice()).unwrap();
    let events = pump(&mut ring, &mut tracker, 2);
    assert!(matches!(events[0], ZcEvent::Failed { id: i, errno: libc::EPIPE } if i == id), "{events:?}");
    match &events[1] {
        ZcEvent::Released { id: i, payload: Some(p), copied } => {
            assert_eq!(*i, id);
            assert_eq!(**p, [7u8; 64]);
            // Nothing went out zero-copy: the kernel reports that as
            // "copied" (IORING_NOTIF_USAGE_ZC_COPIED).
            assert_eq!(*copied, Some(true));
        }
        other => panic!("expected the release, got {other:?}"),
    }
    assert_eq!(tracker.in_flight(), 0);
    assert_eq!(tracker.stats().failed, 1);
}

#[test]
fn a_bad_fd_fails_and_releases() {
    let mut ring = common::ring(8);
    let mut tracker: ZcTracker = ZcTracker::new();
    let id = tracker.send(&mut ring, -1, b"nowhere".to_vec()).unwrap();
    let mut events = pump(&mut ring, &mut tracker, 1);
    // EBADF is found when the file is looked up; whether a notification
    // follows depends on whether the kernel prepared the send first.
    let back = match &events[0] {
        ZcEvent::Finished { id: i, res, payload } => {
            assert_eq!((*i, *res), (id, -libc::EBADF));
            payload.clone()
        }
        ZcEvent::Failed { id: i, errno } => {
            assert_eq!((*i, *errno), (id, libc::EBADF));
            if events.len() < 2 {
                events.extend(pump(&mut ring, &mut tracker, 1));
            }
            match events.pop() {
                Some(ZcEvent::Released { payload, .. }) => payload,
                other => panic!("expected the release, got {other:?}"),
            }
        }
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(back.as_deref(), Some(&b"nowhere"[..]));
    assert_eq!(tracker.in_flight(), 0);
}

#[test]
fn a_rejected_send_gives_the_payload_back() {
    let mut ring = common::ring(2);
    let (client, _server) = common::tcp_pair();
    let mut tracker: ZcTracker = ZcTracker::new();
    tracker.send(&mut ring, client.as_raw_fd(), vec![1]).unwrap();
    tracker.send(&mut ring, client.as_raw_fd(), vec![2]).unwrap();
    let rejected = tracker.send(&mut ring, client.as_raw_fd(), vec![3; 5]).unwrap_err();
    assert!(matches!(rejected.error, Error::QueueFull { .. }), "{rejected:?}");
    assert_eq!(rejected.payload, vec![3; 5]);
    let bad = tracker
        .send_with(&mut ring, client.as_raw_fd(), vec![4], uring_ops::zc::ZcOptions::new().flags(libc::MSG_PEEK))
        .unwrap_err();
    assert!(matches!(bad.error, Error::InvalidArgument(_)), "{bad:?}");
    assert_eq!(tracker.in_flight(), 2);
    pump(&mut ring, &mut tracker, 4);
    assert_eq!(tracker.in_flight(), 0);
}

#[test]
fn a_dropped_tracker_leaks_in_flight_payloads_instead_of_freeing_them() {
    let mut ring = common::ring(8);
    let (client, mut server) = common::tcp_pair();
    let payload: Arc<[u8]> = Arc::from(&b"still the kernel's"[..]);
    {
        let mut tracker: ZcTracker<Arc<[u8]>> = ZcTracker::new();
        tracker.send(&mut ring, client.as_raw_fd(), payload.clone()).unwrap();
        assert_eq!(Arc::strong_count(&payload), 2);
    }
    // Queued, not yet submitted: the tracker is gone, its clone is not.
    assert_eq!(Arc::strong_count(&payload), 2);
    let done = common::reap(&mut ring, 2);
    assert_eq!(done.len(), 2);
    let mut got = vec![0u8; payload.len()];
    server.read_exact(&mut got).unwrap();
    assert_eq!(*got, *payload);
    assert_eq!(Arc::strong_count(&payload), 2, "leaked on purpose");
    // Both CQEs (the send and its notification) are reaped: the kernel is
    // done with the payload, so the test takes back the clone the tracker
    // forgot, and LeakSanitizer (the ASan pass of .ci/run) sees no leak.
    // SAFETY: the tracker `mem::forget`s exactly one strong reference to
    // this allocation (the count is 2 with ours); dropping it once here
    // balances that, and `payload` keeps the allocation alive.
    unsafe { Arc::decrement_strong_count(Arc::as_ptr(&payload)) };
    assert_eq!(Arc::strong_count(&payload), 1);
}

#[test]
fn tracked_multicast_to_three_udp_receivers_shares_one_payload() {
    let mut ring = common::ring(8);
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let receivers: Vec<UdpSocket> = (0..3).map(|_| UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
    let dests: Vec<SocketAddr> = receivers.iter().map(|r| r.local_addr().unwrap()).collect();
    let payload: Arc<[u8]> = Arc::from(vec![0xc3; 1200]);
    let mut tracker: ZcTracker<Arc<[u8]>> = ZcTracker::new();
    let ids = tracker.multicast(&mut ring, sender.as_raw_fd(), payload.clone(), &dests).unwrap();
    assert_eq!(ids.len(), 3);
    assert_eq!(Arc::strong_count(&payload), 4);
    let events = pump(&mut ring, &mut tracker, 6);
    let sent = events.iter().filter(|e| matches!(e, ZcEvent::Sent { bytes: 1200, .. })).count();
    assert_eq!(sent, 3, "{events:?}");
    drop(events);
    assert_eq!(Arc::strong_count(&payload), 1, "every clone came back and was dropped");
    for r in &receivers {
        r.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut got = [0u8; 2000];
        let n = r.recv(&mut got).unwrap();
        assert_eq!(&got[..n], &*payload);
    }
    // No room for three: nothing is queued, the payload comes back.
    let mut small = common::ring(2);
    let r = tracker.multicast(&mut small, sender.as_raw_fd(), payload.clone(), &dests).unwrap_err();
    assert!(matches!(r.error, Error::InvalidArgument(_)));
    assert_eq!(small.sq_pending(), 0);
}

#[test]
fn raw_send_zc_produces_a_result_then_a_notification() {
    let mut ring = common::ring(8);
    let (client, mut server) = common::tcp_pair();
    let buf = vec![9u8; 4096];
    let ctx = SqeContext::token(77).unwrap();
    // SAFETY: `buf` outlives both CQEs, reaped below.
    unsafe { ring.send_zc(ctx, client.as_raw_fd(), &buf) }.unwrap();
    ring.submit().unwrap();
    let mut slots = [CqeSlot::EMPTY; 4];
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while seen.len() < 2 {
        assert!(Instant::now() < deadline, "timed out: {seen:?}");
        if let Ok(done) = ring.wait_for(&mut slots, 1, Some(Duration::from_secs(1))) {
            for cqe in done.iter() {
                assert_eq!(cqe.context().as_token(), Some(77));
                seen.push(classify(&cqe));
            }
        }
    }
    assert_eq!(seen[0], ZcCqe::Result { res: 4096, notification_follows: true });
    // No usage report was asked for: the bit is never set.
    assert_eq!(seen[1], ZcCqe::Notification { copied: false });
    let mut got = vec![0u8; 4096];
    server.read_exact(&mut got).unwrap();
    assert_eq!(got, buf);
}

#[test]
fn send_raw_tracks_caller_memory_without_a_payload() {
    let mut ring = common::ring(8);
    let (client, mut server) = common::tcp_pair();
    let buf = b"caller-owned".to_vec();
    let mut tracker: ZcTracker = ZcTracker::new();
    // SAFETY: `buf` outlives the release event, pumped below.
    let id = unsafe { tracker.send_raw(&mut ring, SendZc::new(client.as_raw_fd(), &buf)) }.unwrap();
    let events = pump(&mut ring, &mut tracker, 2);
    assert!(matches!(events[0], ZcEvent::Sent { id: i, bytes: 12 } if i == id), "{events:?}");
    assert!(matches!(events[1], ZcEvent::Released { id: i, payload: None, copied: Some(true) } if i == id));
    let mut got = [0u8; 12];
    server.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"caller-owned");
}

#[test]
fn cqes_of_other_submissions_are_not_the_trackers() {
    let mut ring = common::ring(8);
    let mut tracker: ZcTracker = ZcTracker::new();
    ring.push_op(SqeContext::token(5).unwrap(), uring_ops::cmd::Nop::new()).unwrap();
    let mut slots = [CqeSlot::EMPTY; 2];
    ring.submit_and_wait(1).unwrap();
    let done = ring.reap(&mut slots).unwrap();
    assert!(tracker.handle_cqe(&done.get(0).unwrap()).is_none());
}

#[test]
fn sendmsg_zc_gathers_iovecs_with_a_result_and_a_notification() {
    let mut ring = common::ring(8);
    let (client, mut server) = common::tcp_pair();
    let (a, b) = (vec![1u8; 3000], vec![2u8; 5000]);
    let iov = [std::io::IoSlice::new(&a), std::io::IoSlice::new(&b)];
    let ctx = SqeContext::token(78).unwrap();
    // SAFETY: `a`, `b` and `iov` outlive both CQEs, reaped below.
    unsafe { ring.push_op_unchecked(ctx, uring_ops::net::SendMsgZc::new(client.as_raw_fd(), &iov).report_usage()) }
        .unwrap();
    let done = common::reap(&mut ring, 2);
    assert_eq!((done[0].res, done[0].more()), (8000, true), "{done:?}");
    assert_ne!(done[1].flags & uring_core::sys::IORING_CQE_F_NOTIF, 0, "{done:?}");
    let mut got = vec![0u8; 8000];
    server.read_exact(&mut got).unwrap();
    assert_eq!(got, [a, b].concat());
}

#[test]
fn send_zc_from_a_registered_buffer() {
    let mut ring = common::ring(8);
    let (client, mut server) = common::tcp_pair();
    let buf: Vec<u8> = (0..4096u32).map(|i| (i % 256) as u8).collect();
    let iov = libc::iovec { iov_base: buf.as_ptr().cast_mut().cast(), iov_len: buf.len() };
    // SAFETY: one iovec naming `buf`, which outlives the registration
    // (unregistered below, after the sends completed).
    unsafe {
        uring_core::sys::io_uring_register(
            ring.as_raw_fd(),
            uring_core::sys::IORING_REGISTER_BUFFERS,
            (&raw const iov).cast(),
            1,
        )
    }
    .expect("IORING_REGISTER_BUFFERS");
    let ctx = SqeContext::token(79).unwrap();
    // SAFETY: `buf[100..600]` lies in registered buffer 0 and outlives both
    // CQEs.
    unsafe { ring.push_op_unchecked(ctx, SendZc::new(client.as_raw_fd(), &buf[100..600]).fixed(0)) }.unwrap();
    let done = common::reap(&mut ring, 2);
    assert_eq!(done[0].res, 500, "{done:?}");
    let mut got = [0u8; 500];
    server.read_exact(&mut got).unwrap();
    assert_eq!(got[..], buf[100..600]);
    // An index with no registered buffer: the kernel refuses it (EFAULT).
    // SAFETY: as above.
    unsafe { ring.push_op_unchecked(ctx, SendZc::new(client.as_raw_fd(), &buf[..10]).fixed(3)) }.unwrap();
    let done = common::reap(&mut ring, 2);
    assert_eq!(done[0].res, -libc::EFAULT, "{done:?}");
    // SAFETY: no argument.
    unsafe {
        uring_core::sys::io_uring_register(
            ring.as_raw_fd(),
            uring_core::sys::IORING_UNREGISTER_BUFFERS,
            std::ptr::null(),
            0,
        )
    }
    .expect("IORING_UNREGISTER_BUFFERS");
}
