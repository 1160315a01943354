//! Provided buffer rings against the kernel: receives with buffer
//! selection land in the ring's buffers, recycled buffers come back, the
//! ring wraps, exhaustion is `-ENOBUFS`, and misuse is refused.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use uring_buffers::{BufRing, BufRingConfig, Error};
use uring_core::{CqeSlot, Options, Ring, SqeFlags, sys};

fn ring() -> Ring {
    let mut ring = Ring::new(Options::default().entries(16)).expect("Ring::new (see SETUP.md)");
    ring.start().unwrap();
    ring
}

/// Queues one `recv` on `fd` that selects a buffer from `group`.
fn push_recv(ring: &mut Ring, fd: i32, group: u16, user_data: u64) {
    // SAFETY: with buffer selection the SQE names no caller memory: the
    // kernel writes into a buffer of the group, which the BufRing owns.
    let sqe = unsafe { ring.next_sqe() }.unwrap();
    sqe.opcode = sys::IORING_OP_RECV as u8;
    sqe.fd = fd;
    sqe.set_buf_group(group);
    sqe.set_sqe_flags(SqeFlags::BUFFER_SELECT);
    sqe.user_data = user_data;
}

/// Submits and waits for one completion: `(res, buffer id)`.
fn one(ring: &mut Ring) -> (i32, Option<u16>) {
    ring.submit().unwrap();
    let mut slots = [CqeSlot::EMPTY; 1];
    let done = ring.wait_for(&mut slots, 1, Some(Duration::from_secs(5))).expect("a completion within 5 s");
    let c = done.get(0).unwrap();
    (c.res(), c.buffer_id())
}

fn roundtrip(cfg: BufRingConfig, rounds: usize) {
    let mut ring = ring();
    let mut br = BufRing::register(&mut ring, cfg).unwrap();
    assert_eq!((br.available(), br.held()), (cfg.entries(), 0));
    let (mut tx, rx) = UnixStream::pair().unwrap();
    let mut seen = Vec::new();
    for i in 0..rounds {
        let msg = format!("message {i:04}");
        tx.write_all(msg.as_bytes()).unwrap();
        push_recv(&mut ring, rx.as_raw_fd(), cfg.group(), i as u64);
        ring.submit().unwrap();
        let mut slots = [CqeSlot::EMPTY; 1];
        let done = ring.wait_for(&mut slots, 1, Some(Duration::from_secs(5))).unwrap();
        let cqe = done.get(0).unwrap();
        assert_eq!(cqe.res(), msg.len() as i32);
        let buf = br.take(&cqe).unwrap().expect("the CQE names a buffer");
        assert_eq!(br.bytes(&buf), msg.as_bytes(), "exactly the received bytes");
        assert_eq!(br.held(), 1);
        seen.push(buf.bid());
        br.recycle(buf).unwrap();
        assert_eq!(br.held(), 0);
    }
    // The ring wrapped: buffers were handed out in ring order, cycling.
    let n = cfg.entries() as usize;
    for (i, bid) in seen.iter().enumerate() {
        assert_eq!(*bid as usize, i % n, "ring order after {} wraps", i / n);
    }
    assert_eq!(br.head(&ring).unwrap(), rounds as u16, "the kernel consumed one entry per receive");
}

#[test]
fn user_mapped_ring_receives_and_wraps() {
    roundtrip(BufRingConfig::new(3, 4, 64), 13);
}

#[test]
fn kernel_mapped_ring_receives_and_wraps() {
    roundtrip(BufRingConfig::new(4, 8, 128).kernel_mapped(), 20);
}

#[test]
fn an_empty_group_is_enobufs_and_recycling_refills_it() {
    let mut ring = ring();
    let mut br = BufRing::register(&mut ring, BufRingConfig::new(1, 2, 16)).unwrap();
    let (mut tx, rx) = UnixStream::pair().unwrap();
    let mut held = Vec::new();
    for i in 0..2 {
        tx.write_all(b"x").unwrap();
        push_recv(&mut ring, rx.as_raw_fd(), 1, i);
        ring.submit().unwrap();
        let mut slots = [CqeSlot::EMPTY; 1];
        let done = ring.wait_for(&mut slots, 1, Some(Duration::from_secs(5))).unwrap();
        held.push(br.take(&done.get(0).unwrap()).unwrap().unwrap());
    }
    assert_eq!(br.available(), 0);
    tx.write_all(b"y").unwrap();
    push_recv(&mut ring, rx.as_raw_fd(), 1, 9);
    assert_eq!(one(&mut ring), (-libc::ENOBUFS, None), "no buffer left: the data stays in the socket");
    br.recycle(held.pop().unwrap()).unwrap();
    push_recv(&mut ring, rx.as_raw_fd(), 1, 10);
    let (res, bid) = one(&mut ring);
    assert_eq!(res, 1);
    let buf = br.take_id(bid.unwrap(), res).unwrap().unwrap();
    assert_eq!(br.bytes(&buf), b"y", "the byte that found no buffer is received after the refill");
    br.recycle_all([buf, held.pop().unwrap()]).unwrap();
    assert_eq!(br.available(), 2);
}

#[test]
fn a_completion_is_taken_once_and_tokens_stay_with_their_ring() {
    let mut ring = ring();
    let mut a = BufRing::register(&mut ring, BufRingConfig::new(1, 4, 16)).unwrap();
    let mut b = BufRing::register(&mut ring, BufRingConfig::new(2, 4, 16)).unwrap();
    let (mut tx, rx) = UnixStream::pair().unwrap();
    tx.write_all(b"hello").unwrap();
    push_recv(&mut ring, rx.as_raw_fd(), 1, 1);
    let (res, bid) = one(&mut ring);
    let buf = a.take_id(bid.unwrap(), res).unwrap().unwrap();
    assert!(matches!(a.take_id(bid.unwrap(), res), Err(Error::NotOwned { .. })), "the same CQE twice");
    assert!(matches!(a.take_id(9, 1), Err(Error::NotOwned { .. })), "an id beyond the ring");
    assert!(matches!(a.take_id(1, 17), Err(Error::NotOwned { .. }) | Err(Error::InvalidArgument(_))));
    assert!(matches!(b.recycle(buf), Err(Error::NotOwned { .. })), "a token of another ring");
    assert_eq!(a.held(), 1, "the misrouted token did not return the buffer");
}

#[test]
fn bad_configurations_and_taken_groups_are_refused() {
    let mut ring = ring();
    for cfg in [BufRingConfig::new(1, 3, 64), BufRingConfig::new(1, 65536, 64), BufRingConfig::new(1, 4, 0)] {
        assert!(matches!(BufRing::register(&mut ring, cfg), Err(Error::InvalidArgument(_))), "{cfg:?}");
    }
    let _first = BufRing::register(&mut ring, BufRingConfig::new(7, 4, 64)).unwrap();
    let err = BufRing::register(&mut ring, BufRingConfig::new(7, 4, 64)).unwrap_err();
    assert!(err.to_string().contains("EEXIST") || err.to_string().contains("exists"), "{err}");
    ring.stop();
    assert!(matches!(
        BufRing::register(&mut ring, BufRingConfig::new(8, 4, 64)),
        Err(Error::Ring(uring_core::Error::Stopped))
    ));
}

#[test]
fn unregistered_groups_give_enobufs_and_the_largest_ring_registers() {
    let mut ring = ring();
    let br = BufRing::register(&mut ring, BufRingConfig::new(5, 4, 64)).unwrap();
    br.unregister(&mut ring).unwrap();
    let (mut tx, rx) = UnixStream::pair().unwrap();
    tx.write_all(b"z").unwrap();
    push_recv(&mut ring, rx.as_raw_fd(), 5, 1);
    assert_eq!(one(&mut ring).0, -libc::ENOBUFS);
    let big = BufRing::register(&mut ring, BufRingConfig::new(6, uring_buffers::MAX_ENTRIES, 16)).unwrap();
    assert_eq!(big.available(), uring_buffers::MAX_ENTRIES);
}

#[test]
fn buffers_registered_before_start_work_after_it() {
    let mut ring = Ring::new(Options::default().entries(8)).unwrap();
    let mut br = BufRing::register(&mut ring, BufRingConfig::new(2, 4, 32).kernel_mapped()).unwrap();
    ring.start().unwrap();
    let (mut tx, rx) = UnixStream::pair().unwrap();
    tx.write_all(b"early").unwrap();
    push_recv(&mut ring, rx.as_raw_fd(), 2, 1);
    let (res, bid) = one(&mut ring);
    let buf = br.take_id(bid.unwrap(), res).unwrap().unwrap();
    assert_eq!(br.bytes(&buf), b"early");
    br.recycle(buf).unwrap();
}

#[test]
fn multi_size_groups_route_receives_by_size() {
    use uring_buffers::{BufferGroups, BufferLayout, SizeClass};
    let layout = BufferLayout::for_budget(4 << 20, 20).unwrap();
    println!("{layout}");
    let mut ring = Ring::new(Options::default().entries(16)).unwrap();
    let mut groups = BufferGroups::register(&mut ring, layout.clone()).unwrap();
    ring.start().unwrap();
    let (mut tx, rx) = UnixStream::pair().unwrap();
    for (size, class) in [(100usize, SizeClass::TINY), (3000, SizeClass::LARGE), (40000, SizeClass::HUGE)] {
        let group = groups.group_for(size).unwrap();
        assert_eq!(layout.tiers().iter().find(|t| t.group == group).unwrap().class, class);
        let payload: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
        tx.write_all(&payload).unwrap();
        push_recv(&mut ring, rx.as_raw_fd(), group, size as u64);
        ring.submit().unwrap();
        let mut slots = [CqeSlot::EMPTY; 1];
        let done = ring.wait_for(&mut slots, 1, Some(Duration::from_secs(5))).unwrap();
        let buf = groups.take(group, &done.get(0).unwrap()).unwrap().unwrap();
        assert_eq!(groups.bytes(&buf), &payload[..], "{size} bytes in one {class:?} buffer");
        assert_eq!(groups.held(), 1);
        groups.recycle(buf).unwrap();
    }
    assert_eq!(groups.held(), 0);
}
