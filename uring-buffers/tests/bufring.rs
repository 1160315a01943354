//! Provided buffer rings against the kernel: receives with buffer
//! selection land in the ring's buffers, recycled buffers come back, the
//! ring wraps, exhaustion is `-ENOBUFS`, and misuse is refused.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use uring_buffers::{BufRing, BufRingConfig, Error};
use uring_core::{CqeSlot, Options, Ring, SqeContext};
use uring_ops::RingOps;
use uring_ops::net::RecvSelect;

fn ring() -> Ring {
    let mut ring = Ring::new(Options::default().entries(16)).expect("Ring::new (see SETUP.md)");
    ring.start().unwrap();
    ring
}

/// Queues one `recv` on `fd` that selects a buffer from `group`, under
/// token `n`: submission stamps the entry's real group into it, which is
/// what lets a `BufRing` accept the CQE.
fn push_recv(ring: &mut Ring, fd: i32, group: u16, n: u64) {
    ring.push_op(SqeContext::token(n).unwrap(), RecvSelect::new(fd, group)).unwrap();
}

/// Submits and waits for one completion, kept with its provenance.
fn one_cqe(ring: &mut Ring) -> CqeSlot {
    ring.submit().unwrap();
    let mut slots = [CqeSlot::EMPTY; 1];
    ring.wait_for(&mut slots, 1, Some(Duration::from_secs(5))).expect("a completion within 5 s");
    slots[0]
}

/// Submits and waits for one completion: `(res, buffer id)`.
fn one(ring: &mut Ring) -> (i32, Option<u16>) {
    let c = one_cqe(ring);
    (c.cqe().res(), c.cqe().buffer_id())
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
    let c = one_cqe(&mut ring);
    assert_eq!(c.cqe().res(), 1);
    let buf = br.take(&c.cqe()).unwrap().unwrap();
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
    let c = one_cqe(&mut ring);
    assert!(matches!(b.take(&c.cqe()), Err(Error::NotOwned { .. })), "group 2 refuses group 1's CQE");
    let buf = a.take(&c.cqe()).unwrap().unwrap();
    assert!(matches!(a.take(&c.cqe()), Err(Error::NotOwned { .. })), "the same CQE twice");
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
    assert!(err.to_string().contains("registered on this ring before"), "{err}");
    // A registration that fails (huge pages, where none are reserved)
    // leaves its id free for another try.
    assert!(
        BufRing::register(&mut ring, BufRingConfig::new(9, 4, 64).huge_pages()).is_ok() || {
            BufRing::register(&mut ring, BufRingConfig::new(9, 4, 64)).is_ok()
        }
    );
    ring.stop();
    assert!(matches!(
        BufRing::register(&mut ring, BufRingConfig::new(8, 4, 64)),
        Err(Error::Core(uring_core::Error::Stopped))
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
    let buf = br.take(&one_cqe(&mut ring).cqe()).unwrap().unwrap();
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

#[test]
fn bundles_span_consecutive_buffers_and_recycle_exactly_those() {
    let mut ring = ring();
    if !ring.features().has(uring_core::FeatureFlags::RECVSEND_BUNDLE) {
        eprintln!("SKIPPED bundles_span_consecutive_buffers_and_recycle_exactly_those: no IORING_FEAT_RECVSEND_BUNDLE");
        return;
    }
    let mut br = BufRing::register(&mut ring, BufRingConfig::new(9, 8, 16)).unwrap();
    let (mut tx, rx) = UnixStream::pair().unwrap();
    let mut all_sent = Vec::new();
    let mut all_got = Vec::new();
    let mut widest = 0;
    for round in 0..7u8 {
        // 40 bytes: two full buffers and 8 bytes of a third. Round 3 is a
        // plain receive in between, which the bundle bookkeeping follows.
        let payload: Vec<u8> = (0..40u32).map(|i| (u32::from(round) * 40 + i) as u8).collect();
        tx.write_all(&payload).unwrap();
        all_sent.extend_from_slice(&payload);
        if round == 3 {
            push_recv(&mut ring, rx.as_raw_fd(), 9, 100);
            ring.submit().unwrap();
            let mut slots = [CqeSlot::EMPTY; 1];
            let done = ring.wait_for(&mut slots, 1, Some(Duration::from_secs(5))).unwrap();
            let buf = br.take(&done.get(0).unwrap()).unwrap().unwrap();
            assert_eq!(buf.len(), 16);
            all_got.extend_from_slice(br.bytes(&buf));
            br.recycle(buf).unwrap();
            // The other 24 bytes come with the next bundle.
            continue;
        }
        bundle_sqe(&mut ring, rx.as_raw_fd(), 9, round as u64);
        ring.submit().unwrap();
        let mut slots = [CqeSlot::EMPTY; 1];
        let done = ring.wait_for(&mut slots, 1, Some(Duration::from_secs(5))).unwrap();
        let cqe = done.get(0).unwrap();
        assert!(cqe.res() > 0, "bundle recv: {}", cqe.res());
        let bundle = br.take_bundle(&cqe).unwrap().unwrap();
        let parts: Vec<&[u8]> = br.bundle(&bundle).collect();
        assert_eq!(parts.len(), bundle.count());
        assert_eq!(bundle.count(), bundle.len().div_ceil(16));
        assert!(parts[..parts.len() - 1].iter().all(|p| p.len() == 16), "all full but the last");
        for p in &parts {
            all_got.extend_from_slice(p);
        }
        assert_eq!(br.held() as usize, bundle.count());
        widest = widest.max(bundle.count());
        br.recycle_bundle(bundle).unwrap();
        assert_eq!(br.held(), 0);
        assert_eq!(br.available(), 8);
    }
    assert_eq!(all_got, all_sent, "every byte once, in order, across ring wraps");
    assert!(widest >= 3, "some bundle spanned several buffers (widest {widest})");
}

/// Queues a bundle recv on `fd` selecting from `group`, under token `n`.
fn bundle_sqe(ring: &mut Ring, fd: i32, group: u16, n: u64) {
    ring.push_op(SqeContext::token(n).unwrap(), uring_ops::net::RecvBundle::new(fd, group)).unwrap();
}

#[test]
fn incremental_rings_hand_out_each_range_once_and_recycle_when_done() {
    let mut ring = ring();
    let mut br = match BufRing::register(&mut ring, BufRingConfig::new(11, 2, 64).incremental()) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("SKIPPED incremental_rings_hand_out_each_range_once_and_recycle_when_done: {e}");
            return;
        }
    };
    let (mut tx, rx) = UnixStream::pair().unwrap();
    let mut got = Vec::new();
    let mut tokens = Vec::new();
    let sends: [&[u8]; 3] = [b"abc", b"defgh", &[b'x'; 60]];
    let mut expect_more = Vec::new();
    // The group is the ring's own: only its one request may select from it.
    let e = ring.push_op(SqeContext::for_fd(0), RecvSelect::new(rx.as_raw_fd(), 11)).unwrap_err();
    assert!(e.to_string().contains("reserved"), "{e}");
    for s in &sends {
        tx.write_all(s).unwrap();
        br.push_op(&mut ring, RecvSelect::new(rx.as_raw_fd(), 11)).unwrap();
        assert!(br.push_op(&mut ring, RecvSelect::new(rx.as_raw_fd(), 11)).is_err(), "one at a time");
        ring.submit().unwrap();
        let mut slots = [CqeSlot::EMPTY; 1];
        let done = ring.wait_for(&mut slots, 1, Some(Duration::from_secs(5))).unwrap();
        let cqe = done.get(0).unwrap();
        expect_more.push((cqe.buffer_id(), cqe.res(), cqe.buf_more()));
        let buf = br.take(&cqe).unwrap().unwrap();
        got.extend_from_slice(br.bytes(&buf));
        tokens.push(buf);
    }
    // Buffer 0 took 3, then 5, then its last 56 bytes; the kernel said
    // BUF_MORE until it was full.
    assert_eq!(expect_more, [(Some(0), 3, true), (Some(0), 5, true), (Some(0), 56, false)]);
    assert_eq!((tokens[1].offset(), tokens[2].offset()), (3, 8));
    assert_eq!(br.available(), 1, "buffer 0 is out of the kernel's hands once full");
    // The 4 bytes left of the 60 arrive in buffer 1.
    br.push_op(&mut ring, RecvSelect::new(rx.as_raw_fd(), 11)).unwrap();
    let c = one_cqe(&mut ring);
    assert_eq!((c.cqe().res(), c.cqe().buffer_id(), c.cqe().buf_more()), (4, Some(1), true));
    let last = br.take(&c.cqe()).unwrap().unwrap();
    got.extend_from_slice(br.bytes(&last));
    let mut want = Vec::new();
    for s in sends {
        want.extend_from_slice(s);
    }
    assert_eq!(got, want, "each range once, nothing lost");
    // Buffer 0 returns only after its three ranges all come back.
    let t2 = tokens.pop().unwrap();
    let t1 = tokens.pop().unwrap();
    br.recycle(t1).unwrap();
    br.recycle(t2).unwrap();
    assert_eq!(br.available(), 1);
    br.recycle(tokens.pop().unwrap()).unwrap();
    assert_eq!(br.available(), 2, "buffer 0 is back in the ring");
    br.recycle(last).unwrap();
    assert_eq!(br.available(), 2, "buffer 1 stays with the kernel: it is not full yet");
    assert_eq!(br.held(), 0);
}

#[test]
fn receives_requested_by_size_land_in_the_matching_class() {
    use uring_buffers::{BufferGroups, BufferLayout, SizeClass};
    use uring_core::SqeContext;
    let layout = BufferLayout::for_budget(4 << 20, 40).unwrap();
    let mut ring = Ring::new(Options::default().entries(16)).unwrap();
    let mut groups = BufferGroups::register(&mut ring, layout).unwrap();
    ring.start().unwrap();
    let (mut tx, rx) = UnixStream::pair().unwrap();
    for (size, class) in [(60usize, SizeClass::TINY), (1500, SizeClass::MEDIUM)] {
        let payload = vec![size as u8; size];
        tx.write_all(&payload).unwrap();
        let stamped = groups.recv(&mut ring, SqeContext::for_fd(rx.as_raw_fd()), rx.as_raw_fd(), size).unwrap();
        ring.submit().unwrap();
        let mut slots = [CqeSlot::EMPTY; 1];
        let done = ring.wait_for(&mut slots, 1, Some(Duration::from_secs(5))).unwrap();
        let cqe = done.get(0).unwrap();
        let group = cqe.context().buf_group().unwrap();
        assert_eq!(cqe.context(), stamped);
        assert_eq!(groups.ring(group).unwrap().buf_size(), class.bytes(), "{size} bytes asked a {class:?} buffer");
        let buf = groups.take(group, &cqe).unwrap().unwrap();
        assert_eq!(groups.bytes(&buf), &payload[..]);
        groups.recycle(buf).unwrap();
    }
    let err = groups.recv(&mut ring, SqeContext::default(), rx.as_raw_fd(), 10 << 20).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert_eq!(ring.sq_pending(), 0);
}

#[test]
fn a_cqe_of_another_group_is_refused_when_its_pooled_context_says_so() {
    use uring_ops::RingOps;
    use uring_ops::net::RecvSelect;
    let mut ring = ring();
    let mut a = BufRing::register(&mut ring, BufRingConfig::new(21, 4, 64)).unwrap();
    let mut b = BufRing::register(&mut ring, BufRingConfig::new(22, 4, 64)).unwrap();
    let (mut tx, rx) = UnixStream::pair().unwrap();
    tx.write_all(b"to group 21").unwrap();
    let ctx = ring.pools_mut().acquire_indirect().unwrap();
    ring.push_op(ctx, RecvSelect::new(rx.as_raw_fd(), 21)).unwrap();
    ring.submit().unwrap();
    let mut slots = [CqeSlot::EMPTY; 1];
    let done = ring.wait_for(&mut slots, 1, Some(Duration::from_secs(5))).unwrap();
    let cqe = done.get(0).unwrap();
    assert!(matches!(b.take(&cqe), Err(Error::NotOwned { .. })), "group 22 refuses group 21's CQE");
    assert_eq!(b.held(), 0);
    let buf = a.take(&cqe).unwrap().unwrap();
    assert_eq!(a.bytes(&buf), b"to group 21");
    a.recycle(buf).unwrap();
    ring.pools_mut().release(ctx).unwrap();
}

/// Found by `prop_bufring`: a CQE of an incremental ring does not say
/// where in the buffer its bytes start, so the CQEs of its (one) request
/// must be taken in CQE order. Taken out of order, the later CQE gets the
/// earlier one's bytes and the earlier one is refused; the tokens stay
/// inside bytes the kernel has finished writing (one request commits and
/// posts its ranges in order), and the buffer goes back only when the
/// kernel is done with it.
#[test]
fn incremental_cqes_of_one_buffer_taken_out_of_order_get_the_leading_bytes() {
    let mut ring = ring();
    let mut br = match BufRing::register(&mut ring, BufRingConfig::new(13, 2, 8).incremental()) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("SKIPPED incremental_cqes_of_one_buffer_taken_out_of_order_get_the_leading_bytes: {e}");
            return;
        }
    };
    let (mut tx, rx) = UnixStream::pair().unwrap();
    br.push_op(&mut ring, uring_ops::multishot::RecvMulti::new(rx.as_raw_fd(), 13)).unwrap();
    ring.submit().unwrap();
    let mut cqes = Vec::new();
    for msg in [&b"abc"[..], b"def"] {
        tx.write_all(msg).unwrap();
        let mut slots = [CqeSlot::EMPTY; 1];
        ring.wait_for(&mut slots, 1, Some(Duration::from_secs(5))).unwrap();
        cqes.push(slots[0]);
    }
    let c: Vec<_> = cqes.iter().map(|s| (s.cqe().buffer_id(), s.cqe().res(), s.cqe().buf_more())).collect();
    assert_eq!(c, [(Some(0), 3, true), (Some(0), 3, true)]);
    let second = br.take(&cqes[1].cqe()).unwrap().unwrap();
    assert_eq!((second.offset(), br.bytes(&second)), (0, &b"abc"[..]), "the leading range, not its own");
    assert!(matches!(br.take(&cqes[0].cqe()), Err(Error::NotOwned { .. })), "the earlier CQE is refused");
    br.recycle(second).unwrap();
    assert_eq!((br.held(), br.available()), (0, 2), "buffer 0 stays with the kernel, which is still filling it");
    tx.write_all(b"gh").unwrap();
    let mut slots = [CqeSlot::EMPTY; 1];
    ring.wait_for(&mut slots, 1, Some(Duration::from_secs(5))).unwrap();
    let s = slots[0];
    assert_eq!((s.cqe().buffer_id(), s.cqe().res(), s.cqe().buf_more()), (Some(0), 2, false));
    let last = br.take(&s.cqe()).unwrap().unwrap();
    assert_eq!((last.offset(), br.bytes(&last)), (3, &b"def"[..2]), "ranges follow the ones taken");
    br.recycle(last).unwrap();
    assert_eq!(br.available(), 2);
    assert!(br.request_in_flight(), "the multishot receive is still armed");
}

/// Bundle receives on an incremental ring (allowed by the kernel since
/// "io_uring/kbuf: enable bundles for incrementally consumed buffers",
/// in 6.18): each bundle continues where the last CQE stopped inside the
/// head buffer, fills the buffers after it, and may end inside the last
/// one, which stays with the kernel. Every byte arrives once, in order,
/// across ring wraps; a buffer goes back only when the kernel has moved
/// past it and its ranges are recycled; the kernel's `F_BUF_MORE` agrees
/// with the bytes; a replayed bundle CQE takes nothing.
#[test]
fn incremental_rings_take_bundles_that_start_and_end_inside_buffers() {
    let mut ring = ring();
    if !ring.features().has(uring_core::FeatureFlags::RECVSEND_BUNDLE) {
        eprintln!("SKIPPED incremental_rings_take_bundles_that_start_and_end_inside_buffers: no RECVSEND_BUNDLE");
        return;
    }
    let mut br = match BufRing::register(&mut ring, BufRingConfig::new(31, 8, 16).incremental()) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("SKIPPED incremental_rings_take_bundles_that_start_and_end_inside_buffers: {e}");
            return;
        }
    };
    let (mut tx, rx) = UnixStream::pair().unwrap();
    let (mut sent, mut got) = (Vec::new(), Vec::new());
    // (bytes sent, expected offset in the first buffer, buffers spanned)
    let plan: [(usize, usize, usize); 9] =
        [(5, 0, 1), (40, 5, 3), (3, 13, 1), (16, 0, 1), (1, 0, 1), (100, 1, 7), (9, 5, 1), (30, 14, 3), (64, 12, 5)];
    for (round, &(n, offset, count)) in plan.iter().enumerate() {
        let payload: Vec<u8> = (0..n).map(|i| (round * 37 + i) as u8).collect();
        tx.write_all(&payload).unwrap();
        sent.extend_from_slice(&payload);
        br.push_op(&mut ring, uring_ops::net::RecvBundle::new(rx.as_raw_fd(), 31)).unwrap();
        let c = one_cqe(&mut ring);
        let cqe = c.cqe();
        assert_eq!(cqe.res(), n as i32, "round {round}");
        let available = br.available();
        let bundle = br.take_bundle(&cqe).unwrap().expect("a buffer");
        assert_eq!((bundle.len(), bundle.offset(), bundle.count()), (n, offset, count), "round {round}");
        // The last buffer is unfinished exactly when the bytes stop short
        // of its end: the kernel says so with F_BUF_MORE.
        let ends_inside = (offset + n) % 16 != 0;
        assert_eq!(cqe.buf_more(), ends_inside, "round {round}: F_BUF_MORE against the bytes");
        let finished = count - usize::from(ends_inside);
        assert_eq!(br.available() as usize, available as usize - finished, "round {round}");
        let parts: Vec<&[u8]> = br.bundle(&bundle).collect();
        assert_eq!(parts.len(), count);
        assert_eq!(parts[0].len(), n.min(16 - offset), "round {round}: the first range starts at the offset");
        for p in &parts {
            got.extend_from_slice(p);
        }
        // Taken once: the same CQE again takes nothing.
        assert!(br.take_bundle(&c.cqe()).is_err(), "round {round}: a replayed bundle CQE was taken");
        br.recycle_bundle(bundle).unwrap();
        assert_eq!(br.held(), 0);
        // Finished buffers are back in the ring; an unfinished one never left.
        assert_eq!(br.available(), 8, "round {round}");
    }
    assert_eq!(got, sent, "every byte once, in order, across ring wraps");
}

/// The bytes, not `F_BUF_MORE`, decide when the kernel is done with an
/// incremental buffer: a CQE that stops inside a buffer but lacks the flag
/// (as kernels without upstream commit ed46f39c47eb may post for a bundle
/// that retried internally) leaves the buffer with the kernel, and the
/// next receive continues in it.
#[test]
fn an_incremental_buffer_is_finished_by_its_bytes_not_by_a_missing_buf_more() {
    let mut ring = ring();
    let mut br = match BufRing::register(&mut ring, BufRingConfig::new(32, 2, 16).incremental()) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("SKIPPED an_incremental_buffer_is_finished_by_its_bytes_not_by_a_missing_buf_more: {e}");
            return;
        }
    };
    let (mut tx, rx) = UnixStream::pair().unwrap();
    tx.write_all(b"four").unwrap();
    br.push_op(&mut ring, RecvSelect::new(rx.as_raw_fd(), 32)).unwrap();
    let c = one_cqe(&mut ring);
    let (bid, res) = (c.cqe().buffer_id().unwrap(), c.cqe().res());
    assert!(c.cqe().buf_more(), "the kernel keeps the buffer");
    assert!(br.end_request(&c.cqe()));
    // SAFETY: `bid` and `res` come from this ring's CQE for the ring's
    // own request, presented once; only the flag is cleared, playing a
    // kernel that dropped it, which is what the take must withstand.
    let buf = unsafe { br.take_id(bid, res, false) }.unwrap().unwrap();
    assert_eq!(br.bytes(&buf), b"four");
    assert_eq!(br.available(), 2, "a 4-byte range of a 16-byte buffer does not finish it");
    br.recycle(buf).unwrap();
    assert_eq!(br.available(), 2);
    tx.write_all(b"-more").unwrap();
    br.push_op(&mut ring, RecvSelect::new(rx.as_raw_fd(), 32)).unwrap();
    let c = one_cqe(&mut ring);
    assert_eq!(c.cqe().buffer_id(), Some(bid), "the kernel continued in the same buffer");
    let buf = br.take(&c.cqe()).unwrap().unwrap();
    assert_eq!((buf.offset(), br.bytes(&buf)), (4, &b"-more"[..]));
    br.recycle(buf).unwrap();
}

/// A multishot bundle receive on an incremental ring: each CQE (with
/// `F_MORE`) continues where the last stopped; the end of the stream (a
/// CQE without a buffer or `F_MORE`) ends the ring's request, so the next
/// one may be queued.
#[test]
fn a_multishot_bundle_on_an_incremental_ring_delivers_every_byte_and_ends() {
    let mut ring = ring();
    if !ring.features().has(uring_core::FeatureFlags::RECVSEND_BUNDLE) {
        eprintln!("SKIPPED a_multishot_bundle_on_an_incremental_ring_delivers_every_byte_and_ends: no RECVSEND_BUNDLE");
        return;
    }
    let mut br = match BufRing::register(&mut ring, BufRingConfig::new(33, 4, 16).incremental()) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("SKIPPED a_multishot_bundle_on_an_incremental_ring_delivers_every_byte_and_ends: {e}");
            return;
        }
    };
    let (mut tx, rx) = UnixStream::pair().unwrap();
    br.push_op(&mut ring, uring_ops::multishot::RecvBundleMulti::new(rx.as_raw_fd(), 33)).unwrap();
    let (mut sent, mut got) = (Vec::new(), Vec::new());
    for (round, n) in [20usize, 7, 45, 1, 33].into_iter().enumerate() {
        let payload: Vec<u8> = (0..n).map(|i| (round * 59 + i) as u8).collect();
        tx.write_all(&payload).unwrap();
        sent.extend_from_slice(&payload);
        let mut taken = 0;
        while taken < n {
            let c = one_cqe(&mut ring);
            let bundle = br.take_bundle(&c.cqe()).unwrap().expect("a buffer");
            taken += bundle.len();
            for p in br.bundle(&bundle) {
                got.extend_from_slice(p);
            }
            br.recycle_bundle(bundle).unwrap();
            if !c.cqe().more() {
                // 7.3 ends a multishot receive whose bundle took the ring's
                // last buffers (rather than failing the next one with
                // -ENOBUFS): the request is over; re-arm, as a caller would.
                assert!(!br.request_in_flight(), "round {round}: the final CQE ends the request");
                br.push_op(&mut ring, uring_ops::multishot::RecvBundleMulti::new(rx.as_raw_fd(), 33)).unwrap();
            }
        }
        assert!(br.request_in_flight());
    }
    drop(tx);
    let c = one_cqe(&mut ring);
    assert_eq!((c.cqe().res(), c.cqe().more(), c.cqe().buffer_id()), (0, false, None));
    assert!(br.take_bundle(&c.cqe()).unwrap().is_none());
    assert!(!br.request_in_flight(), "the end of the stream ends the request");
    assert_eq!(got, sent);
    assert_eq!((br.held(), br.available()), (0, 4));
}
