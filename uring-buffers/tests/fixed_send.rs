//! Sends from registered buffers against the kernel: a zero-copy
//! `sendmsg` of several ranges of one buffer (`SENDMSG_ZC` with
//! `IORING_RECVSEND_FIXED_BUF`, 6.15+), to a connected stream and to a
//! datagram destination, and a plain copying `SEND` from a buffer (7.2+,
//! refused by name before); the bytes arrive exactly, the buffer is busy
//! until the notification (or the plain send's one CQE), and replayed,
//! foreign and forged CQEs free nothing.
// One range among a sendmsg's ranges is a message of one iovec, not a
// mistaken `Vec` of a range's numbers.
#![allow(clippy::single_range_in_vec_init)]

use std::io::{IoSlice, Read};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use uring_buffers::{BufferState, Error, FixedBuffers, FixedDone, FixedKind, RegisteredBuffers};
use uring_core::{CqeSlot, LayerData, Ring, SqeContext};
use uring_ops::RingOps;
use uring_ops::msg::MsgRing;
use uring_ops::net::SendMsgZc;

mod common;

use common::{reap, ring};

fn tcp_pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (b, _) = l.accept().unwrap();
    (a, b)
}

fn pattern(n: usize, seed: u32) -> Vec<u8> {
    (0..n as u32).map(|i| (i.wrapping_mul(31).wrapping_add(seed) % 251) as u8).collect()
}

fn is_busy(e: &Error) -> bool {
    matches!(e, Error::Busy { .. })
}

fn concat(data: &[u8], ranges: &[std::ops::Range<usize>]) -> Vec<u8> {
    ranges.iter().flat_map(|r| data[r.clone()].iter().copied()).collect()
}

/// Reaps until `n` CQEs of `fixed` arrived (5 s), handing each over.
fn complete(ring: &mut Ring, fixed: &mut FixedBuffers, n: usize) -> Vec<(FixedDone, CqeSlot)> {
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut slots = [CqeSlot::EMPTY; 8];
    while out.len() < n {
        assert!(Instant::now() < deadline, "timed out after {} of {n}: {out:?}", out.len());
        let got = match ring.wait_for(&mut slots, 1, Some(Duration::from_millis(100))) {
            Ok(r) => r.len(),
            Err(e) if e.is_would_block() => 0,
            Err(e) => panic!("wait: {e}"),
        };
        for slot in &slots[..got] {
            let done = fixed
                .handle_cqe(&slot.cqe())
                .unwrap_or_else(|| panic!("a CQE not of the table: {:#x}", slot.cqe().user_data()));
            out.push((done, *slot));
        }
    }
    out
}

/// Runs the ring while a thread drains `server` until `want` bytes
/// arrived (5 s); every CQE goes to `fixed`, which must own it. Returns
/// the bytes and what `fixed` said of each CQE.
fn pump_and_drain(
    ring: &mut Ring,
    fixed: &mut FixedBuffers,
    server: TcpStream,
    want: usize,
    cqes_wanted: usize,
) -> (Vec<u8>, Vec<(FixedDone, CqeSlot)>) {
    let h = common::drain(server, want);
    let mut out = Vec::new();
    let mut slots = [CqeSlot::EMPTY; 8];
    let deadline = Instant::now() + Duration::from_secs(6);
    while (!h.is_finished() || out.len() < cqes_wanted) && Instant::now() < deadline {
        if let Ok(r) = ring.wait_for(&mut slots, 1, Some(Duration::from_millis(20))) {
            for c in r.iter() {
                let slot = c.to_slot();
                let done = fixed.handle_cqe(&slot.cqe()).expect("the table's own CQE");
                out.push((done, slot));
            }
        }
    }
    (h.join().unwrap(), out)
}

#[test]
fn sendmsg_fixed_gathers_ranges_in_order_and_frees_the_buffer_at_the_notification() {
    let mut ring = ring();
    let mut fixed = FixedBuffers::register(&mut ring, 2, 65536).unwrap();
    let data = pattern(65536, 7);
    fixed.buffer_mut(1).unwrap().copy_from_slice(&data);
    let (a, mut b) = tcp_pair();
    // Out of order and touching the buffer's ends: the kernel gathers the
    // iovecs as given.
    let ranges = [60000..65536, 0..100, 5000..9000, 100..101];
    let id = fixed.sendmsg_fixed(&mut ring, a.as_raw_fd(), 1, &ranges, None).unwrap();
    assert_eq!(fixed.state(1).unwrap(), BufferState::KernelReads(id));
    assert!(is_busy(&fixed.buffer_mut(1).unwrap_err()));
    assert_eq!(fixed.state(0).unwrap(), BufferState::Idle, "the other buffer is not involved");
    let want = concat(&data, &ranges);
    // The result (IORING_CQE_F_MORE), then the notification: handed over
    // one at a time.
    let cqes = reap(&mut ring, 2);
    assert_eq!(cqes.len(), 2);
    let first = fixed.handle_cqe(&cqes[0].cqe()).expect("the result");
    assert_eq!((first.id, first.kind, first.index, first.notification), (id, FixedKind::SendMsgZc, 1, false));
    assert_eq!((first.res, first.free), (want.len() as i32, false));
    let mut got = vec![0; want.len()];
    b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    b.read_exact(&mut got).unwrap();
    assert_eq!(got, want, "the ranges arrived, in the order given");
    // Until the notification the kernel may still read the buffer: it is
    // readable but not writable.
    assert_eq!(fixed.state(1).unwrap(), BufferState::KernelReads(id));
    assert!(is_busy(&fixed.buffer_mut(1).unwrap_err()));
    assert_eq!(fixed.buffer(1).unwrap()[60000], data[60000]);
    let notif = fixed.handle_cqe(&cqes[1].cqe()).expect("the notification");
    assert_eq!((notif.id, notif.kind, notif.notification, notif.free), (id, FixedKind::SendMsgZc, true, true));
    assert_eq!(notif.res, want.len() as i32, "the notification carries the result");
    assert_eq!((fixed.in_flight(), fixed.state(1).unwrap()), (0, BufferState::Idle));
    fixed.buffer_mut(1).unwrap()[0] = 0;
}

#[test]
fn sendmsg_fixed_sends_a_datagram_to_its_destination() {
    let mut ring = ring();
    let mut fixed = FixedBuffers::register(&mut ring, 1, 4096).unwrap();
    fixed.buffer_mut(0).unwrap()[..26].copy_from_slice(b"abcdefghijklmnopqrstuvwxyz");
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let id =
        fixed.sendmsg_fixed(&mut ring, tx.as_raw_fd(), 0, &[20..26, 0..3], Some(rx.local_addr().unwrap())).unwrap();
    let cqes = reap(&mut ring, 2);
    let first = fixed.handle_cqe(&cqes[0].cqe()).unwrap();
    assert_eq!((first.id, first.res, first.free), (id, 9, false));
    assert!(fixed.handle_cqe(&cqes[1].cqe()).unwrap().free);
    let mut got = [0u8; 64];
    let (n, from) = rx.recv_from(&mut got).unwrap();
    assert_eq!(&got[..n], b"uvwxyzabc", "one datagram, gathered");
    assert_eq!(from, tx.local_addr().unwrap());
}

#[test]
fn sendmsg_fixed_refuses_bad_arguments_and_queues_nothing() {
    let mut ring = ring();
    let mut other = ring_();
    let mut fixed = FixedBuffers::register(&mut ring, 2, 4096).unwrap();
    let (a, _b) = tcp_pair();
    let fd = a.as_raw_fd();
    let invalid = |e: Error| assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
    invalid(fixed.sendmsg_fixed(&mut ring, fd, 0, &[0..4097], None).unwrap_err());
    invalid(fixed.sendmsg_fixed(&mut ring, fd, 0, &[0..10, 4000..4100], None).unwrap_err());
    invalid(fixed.sendmsg_fixed(&mut ring, fd, 0, &[], None).unwrap_err());
    invalid(fixed.sendmsg_fixed(&mut ring, fd, 0, &vec![0..1; 1025], None).unwrap_err());
    invalid(fixed.sendmsg_fixed(&mut ring, fd, 2, &[0..1], None).unwrap_err());
    let e = fixed.sendmsg_fixed(&mut other, fd, 0, &[0..1], None).unwrap_err();
    assert!(e.to_string().contains("belong to ring"), "another ring: {e}");
    assert_eq!((ring.sq_pending(), other.sq_pending(), fixed.in_flight()), (0, 0, 0), "nothing queued");
    // A busy buffer: one operation at a time.
    let (client, server, queued) = common::blocked_pair();
    let id = fixed.sendmsg_fixed(&mut ring, client.as_raw_fd(), 0, &[0..10], None).unwrap();
    ring.submit().unwrap();
    assert!(is_busy(&fixed.sendmsg_fixed(&mut ring, fd, 0, &[0..1], None).unwrap_err()));
    assert!(is_busy(&fixed.send_fixed(&mut ring, fd, 0, 0..1).unwrap_err()));
    assert_eq!(ring.sq_pending(), 0);
    let (bytes, cqes) = pump_and_drain(&mut ring, &mut fixed, server, queued + 10, 1);
    assert_eq!(bytes.len(), queued + 10);
    assert!(cqes.iter().all(|(d, _)| d.id == id));
    if !cqes.last().unwrap().0.free {
        complete(&mut ring, &mut fixed, 1);
    }
    assert_eq!(ring.sq_pending(), 0);
    assert_eq!(fixed.in_flight(), 0);
}

fn ring_() -> Ring {
    ring()
}

/// The operation's own CQEs free the buffer; nothing else does: copies of
/// an earlier operation's CQEs under the same `user_data`, a CQE with the
/// same `user_data` reaped by another ring, and no safe push or
/// `MSG_RING` can make the kernel post the value.
#[test]
fn a_fixed_sendmsg_is_freed_only_by_its_own_cqes() {
    let mut ring = ring();
    let mut other = ring_();
    let mut fixed = FixedBuffers::register(&mut ring, 1, 8192).unwrap();
    let data = pattern(8192, 11);
    fixed.buffer_mut(0).unwrap().copy_from_slice(&data);
    // A first send completes; its CQEs are kept.
    let (a, mut b) = tcp_pair();
    let old = fixed.sendmsg_fixed(&mut ring, a.as_raw_fd(), 0, &[0..8], None).unwrap();
    let old_cqes = complete(&mut ring, &mut fixed, 2);
    let mut got = [0u8; 8];
    b.read_exact(&mut got).unwrap();
    assert_eq!(&got, &data[..8]);
    // A second one, reusing the slot (same user_data), on a full socket.
    let (client, server, queued) = common::blocked_pair();
    let ranges = [4096..8192, 0..4096];
    let id = fixed.sendmsg_fixed(&mut ring, client.as_raw_fd(), 0, &ranges, None).unwrap();
    ring.submit().unwrap();
    assert_eq!(id.user_data(), old.user_data(), "same slot, same table");
    // Copies of the first send's CQEs: older than the operation.
    for (_, c) in &old_cqes {
        assert!(fixed.handle_cqe(&c.cqe()).is_none(), "a replayed CQE");
    }
    assert!(fixed.handle_cqe(&CqeSlot::EMPTY.cqe()).is_none());
    // Safe code cannot make the kernel post the value.
    assert!(SqeContext::from_raw(id.user_data()).is_none());
    assert!(ring.push_op(id.context(), uring_ops::cmd::Nop::new()).is_err(), "a push under the operation's id");
    let to_self = MsgRing::new(ring.as_raw_fd(), id.user_data(), 0);
    assert!(ring.push_op(SqeContext::token(3).unwrap(), to_self).is_err(), "MSG_RING with the operation's id");
    assert!(
        MsgRing::new(ring.as_raw_fd(), id.user_data(), 0).send_without_ring().is_err(),
        "MSG_RING without a ring, with the operation's id"
    );
    let notif = MsgRing::new(ring.as_raw_fd(), 77, 0).cqe_flags(uring_core::sys::IORING_CQE_F_NOTIF);
    assert!(ring.push_op(SqeContext::token(4).unwrap(), notif).is_err(), "MSG_RING posting a notification flag");
    assert_eq!(ring.sq_pending(), 0, "nothing was queued");
    // The same user_data reaped by another ring (posted by the layer's own
    // unsafe push, as no safe code can), at a later CQ position.
    for n in 0..8 {
        other.push_op(SqeContext::token(n).unwrap(), uring_ops::cmd::Nop::new()).unwrap();
    }
    reap(&mut other, 8);
    let foreign = post_on(&mut other, id.user_data());
    assert_eq!(foreign.cqe().user_data(), id.user_data());
    assert!(fixed.handle_cqe(&foreign.cqe()).is_none(), "another ring's CQE");
    assert_eq!(fixed.state(0).unwrap(), BufferState::KernelReads(id));
    assert!(is_busy(&fixed.buffer_mut(0).unwrap_err()), "still in flight");
    assert_eq!(fixed.in_flight(), 1);
    // The real CQEs: bytes arrive, the buffer comes back at the last one.
    let want = concat(&data, &ranges);
    let (bytes, mut cqes) = pump_and_drain(&mut ring, &mut fixed, server, queued + want.len(), 1);
    assert_eq!(&bytes[queued..], &want[..], "the kernel sent the buffer's bytes, untouched");
    if !cqes.last().unwrap().0.free {
        let r = cqes[0].1;
        // The result's copy, presented again before the notification.
        assert!(fixed.handle_cqe(&r.cqe()).is_none(), "the result once only");
        assert!(is_busy(&fixed.buffer_mut(0).unwrap_err()), "until the notification");
        cqes.extend(complete(&mut ring, &mut fixed, 1));
    }
    let last = cqes.last().unwrap().0;
    assert_eq!((last.id, last.free), (id, true));
    assert_eq!(fixed.in_flight(), 0);
    for (_, c) in &cqes {
        assert!(fixed.handle_cqe(&c.cqe()).is_none(), "handled once");
    }
    fixed.buffer_mut(0).unwrap()[0] = 1;
}

#[test]
fn dropping_the_table_with_a_fixed_sendmsg_in_flight_is_safe() {
    let mut ring = ring();
    let mut fixed = FixedBuffers::register(&mut ring, 1, 4096).unwrap();
    fixed.buffer_mut(0).unwrap()[..4].copy_from_slice(b"late");
    let (client, mut server, queued) = common::blocked_pair();
    fixed.sendmsg_fixed(&mut ring, client.as_raw_fd(), 0, &[0..2, 2..4], Some("127.0.0.1:9".parse().unwrap())).unwrap();
    ring.submit().unwrap();
    // The header, address and iovecs go to the ring's graveyard.
    drop(fixed);
    let h = std::thread::spawn(move || {
        let mut all = vec![0u8; queued + 4];
        server.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        server.read_exact(&mut all).unwrap();
        all
    });
    let mut seen = 0;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !h.is_finished() && Instant::now() < deadline {
        seen += reap_some(&mut ring);
    }
    let all = h.join().unwrap();
    assert_eq!(&all[queued..], b"late", "the kernel read the header after the table was gone");
    assert!(seen >= 1);
    drop(ring);
}

fn reap_some(ring: &mut Ring) -> usize {
    let mut slots = [CqeSlot::EMPTY; 4];
    ring.wait_for(&mut slots, 1, Some(Duration::from_millis(20))).map_or(0, |r| r.len())
}

/// `SendMsgZc::fixed`: the builder's registered-buffer form, pushed by
/// hand over a `RegisteredBuffers` table: result, notification, bytes;
/// an iovec outside the buffer is `-EFAULT`.
#[test]
fn the_sendmsg_zc_builder_sends_from_a_registered_buffer() {
    let mut ring = ring();
    let mut bufs = RegisteredBuffers::register(&mut ring, 1, 4096).unwrap();
    bufs.buffer_mut(0).unwrap()[..10].copy_from_slice(b"0123456789");
    let (p, len) = bufs.raw_parts(0).unwrap();
    // SAFETY: the buffer is registered memory attached to the ring; it is
    // not written until the notification below.
    let whole = unsafe { std::slice::from_raw_parts(p, len) };
    let iov = [IoSlice::new(&whole[5..10]), IoSlice::new(&whole[0..5])];
    let (a, mut b) = tcp_pair();
    // SAFETY: both slices lie in registered buffer 0 of this ring, the very
    // memory registered, and stay untouched until the notification.
    let op = unsafe { SendMsgZc::new(a.as_raw_fd(), &iov).fixed(0) };
    ring.push_op(SqeContext::token(1).unwrap(), op).unwrap();
    let cqes = reap(&mut ring, 2);
    let (res, notif) = (cqes[0].cqe(), cqes[1].cqe());
    assert_eq!((res.res(), res.more(), notif.notif()), (10, true, true));
    let mut got = [0u8; 10];
    b.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"5678901234");
    // An iovec that is not inside buffer 0: the kernel refuses it.
    let outside = [IoSlice::new(b"not registered")];
    // SAFETY: the kernel refuses the iovec (it lies in no registered
    // buffer) without reading it; the static bytes outlive everything.
    let op = unsafe { SendMsgZc::new(a.as_raw_fd(), &outside).fixed(0) };
    ring.push_op(SqeContext::token(2).unwrap(), op).unwrap();
    let c = reap(&mut ring, 2);
    assert_eq!(c[0].cqe().res(), -libc::EFAULT, "an iovec outside the registered buffer");
    assert!(c[1].cqe().notif());
}

/// A plain `SEND` from a registered buffer: on kernels that take it
/// (7.2+), the bytes arrive and the buffer is free at the one CQE; on the
/// others (6.18, 7.0) `send` refuses by name and queues nothing.
#[test]
fn plain_fixed_send_sends_or_is_refused_by_name() {
    let mut ring = ring();
    let mut fixed = FixedBuffers::register(&mut ring, 2, 16384).unwrap();
    let data = pattern(16384, 5);
    fixed.buffer_mut(1).unwrap().copy_from_slice(&data);
    let (a, mut b) = tcp_pair();
    let supported = FixedBuffers::plain_send_supported().unwrap();
    let version = ring.features().kernel_version().unwrap_or((0, 0));
    if !supported {
        let e = fixed.send(&mut ring, a.as_raw_fd(), 1, 0..100).unwrap_err();
        assert!(matches!(e, Error::Core(uring_core::Error::Unsupported { .. })), "{e}");
        assert!(e.to_string().contains("IORING_RECVSEND_FIXED_BUF"), "{e}");
        assert_eq!((ring.sq_pending(), fixed.in_flight(), fixed.state(1).unwrap()), (0, 0, BufferState::Idle));
        assert!(version < (7, 2), "refused on {version:?}, which the kernel matrix saw accept it");
        eprintln!(
            "SKIPPED plain_fixed_send_sends_or_is_refused_by_name (the sending half): plain SEND refuses \
             IORING_RECVSEND_FIXED_BUF on {version:?} (7.2+ takes it); the refusal was checked"
        );
        return;
    }
    let id = fixed.send(&mut ring, a.as_raw_fd(), 1, 1000..13000).unwrap();
    assert_eq!(fixed.state(1).unwrap(), BufferState::KernelReads(id));
    assert!(is_busy(&fixed.buffer_mut(1).unwrap_err()));
    assert_eq!(fixed.buffer(1).unwrap()[1000], data[1000], "readable meanwhile");
    let (done, _) = complete(&mut ring, &mut fixed, 1)[0];
    assert_eq!((done.id, done.kind, done.index, done.res), (id, FixedKind::Send, 1, 12000));
    assert!(done.free && !done.notification, "one CQE, no notification");
    let mut got = vec![0u8; 12000];
    b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    b.read_exact(&mut got).unwrap();
    assert_eq!(got, &data[1000..13000]);
    assert_eq!(fixed.in_flight(), 0);
    fixed.buffer_mut(1).unwrap()[0] = 0;
}

/// A plain fixed send in flight on a full socket: copies of an earlier
/// send's CQE and another ring's CQE under the same `user_data` free
/// nothing; the send's own CQE does.
#[test]
fn a_plain_fixed_send_is_freed_only_by_its_own_cqe() {
    if !FixedBuffers::plain_send_supported().unwrap() {
        eprintln!(
            "SKIPPED a_plain_fixed_send_is_freed_only_by_its_own_cqe: plain SEND refuses IORING_RECVSEND_FIXED_BUF \
             on this kernel (7.2+ takes it)"
        );
        return;
    }
    let mut ring = ring();
    let mut other = ring_();
    let mut fixed = FixedBuffers::register(&mut ring, 1, 4096).unwrap();
    fixed.buffer_mut(0).unwrap()[..6].copy_from_slice(b"plain!");
    let (a, mut b) = tcp_pair();
    let old = fixed.send(&mut ring, a.as_raw_fd(), 0, 0..6).unwrap();
    let old_cqe = complete(&mut ring, &mut fixed, 1)[0].1;
    let mut got = [0u8; 6];
    b.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"plain!");
    let (client, server, queued) = common::blocked_pair();
    let id = fixed.send(&mut ring, client.as_raw_fd(), 0, 0..6).unwrap();
    ring.submit().unwrap();
    assert_eq!(id.user_data(), old.user_data());
    assert!(fixed.handle_cqe(&old_cqe.cqe()).is_none(), "a replayed CQE");
    let foreign = post_on(&mut other, id.user_data());
    assert!(fixed.handle_cqe(&foreign.cqe()).is_none(), "another ring's CQE");
    assert!(is_busy(&fixed.buffer_mut(0).unwrap_err()));
    let (bytes, cqes) = pump_and_drain(&mut ring, &mut fixed, server, queued + 6, 1);
    assert_eq!(&bytes[queued..], b"plain!");
    assert_eq!((cqes.len(), cqes[0].0.id, cqes[0].0.free), (1, id, true));
    assert!(fixed.handle_cqe(&cqes[0].1.cqe()).is_none(), "handled once");
    fixed.buffer_mut(0).unwrap()[0] = 0;
}

/// A NOP on `other` under `user_data` (the layer's own unsafe push, as no
/// safe code can), reaped: a CQE with a live operation's value from
/// another ring.
fn post_on(other: &mut Ring, user_data: u64) -> CqeSlot {
    // SAFETY: a NOP names no memory; nothing may be released on its CQE
    // (the checks under test refuse it).
    unsafe {
        uring_ops::push_layer_op(other, LayerData::decode(user_data).unwrap().context(), uring_ops::cmd::Nop::new())
    }
    .unwrap();
    reap(other, 1)[0]
}
