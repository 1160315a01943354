//! Sends from a `BufRing`'s buffers (`BufRing::send`): the token is lent to
//! the send and comes back only with the send's own CQE, once, from its
//! ring; the memory stays mapped whatever the caller drops.

mod common;

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;

use common::{reap, ring};
use uring_buffers::{Buf, BufEvent, BufRing, BufRingConfig, BufSent, Error, Held};
use uring_core::{Cqe, CqeSlot, HandleCqe, Layer, LayerData, Ring, SqeContext};
use uring_ops::RingOps;
use uring_ops::msg::MsgRing;
use uring_ops::net::{RecvBundle, RecvSelect};

/// Shrinks a socket's send buffer, so a large send goes out short.
fn small_sndbuf(s: &impl AsFd) {
    let size: libc::c_int = 4096;
    // SAFETY: a valid socket and a c_int option value of the given length.
    let r = unsafe {
        libc::setsockopt(
            s.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&size as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "setsockopt(SO_SNDBUF)");
}

/// Receives what `tx` wrote into one buffer of `br` through `rx`.
fn receive(ring: &mut Ring, br: &mut BufRing, rx: &UnixStream) -> Buf {
    ring.push_op(SqeContext::token(1).unwrap(), RecvSelect::new(rx.as_raw_fd(), br.group())).unwrap();
    let s = reap(ring, 1);
    br.take(&s[0].cqe()).unwrap().expect("the receive names a buffer")
}

/// Reaps until the CQE of one of `br`'s sends arrives; returns it and a
/// copy of its CQE.
fn sent(ring: &mut Ring, br: &mut BufRing) -> (BufSent, CqeSlot) {
    loop {
        let s = reap(ring, 1)[0];
        if let Some(sent) = br.handle_send(&s.cqe()) {
            return (sent, s);
        }
    }
}

fn pattern(n: usize, seed: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 + seed) as u8).collect()
}

#[test]
fn a_received_buffer_is_echoed_and_recycled_after_its_send() {
    let mut ring = ring();
    let mut br = BufRing::register(&mut ring, BufRingConfig::new(3, 4, 64)).unwrap();
    let (mut a, b) = UnixStream::pair().unwrap();
    a.write_all(b"hello, ring").unwrap();
    let buf = receive(&mut ring, &mut br, &b);
    assert_eq!(br.bytes(&buf), b"hello, ring");
    let id = br.send(&mut ring, b.as_raw_fd(), buf, 0, 0).unwrap();
    assert_eq!((br.sends_in_flight(), br.held(), br.available()), (1, 1, 3), "lent, not published");
    let (done, _) = sent(&mut ring, &mut br);
    assert_eq!((done.id, done.res, done.from, done.asked, done.end()), (id, 11, 0, 11, 11));
    assert!(done.done());
    let mut got = [0u8; 11];
    a.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hello, ring");
    // Part of it again, from an offset: the token came back intact.
    let Held::Buf(buf) = done.token else { panic!("a Buf was lent") };
    br.send(&mut ring, b.as_raw_fd(), buf, 7, 0).unwrap();
    let (done, _) = sent(&mut ring, &mut br);
    assert_eq!((done.res, done.end(), done.done()), (4, 11, true));
    a.read_exact(&mut got[..4]).unwrap();
    assert_eq!(&got[..4], b"ring");
    br.recycle_held(done.token).unwrap();
    assert_eq!((br.sends_in_flight(), br.held(), br.available()), (0, 0, 4));
}

#[test]
fn a_bundle_goes_out_one_buffer_at_a_time_in_order() {
    let mut ring = ring();
    let mut br = BufRing::register(&mut ring, BufRingConfig::new(4, 8, 64)).unwrap();
    let (mut a, b) = UnixStream::pair().unwrap();
    let msg = pattern(150, 5);
    a.write_all(&msg).unwrap();
    ring.push_op(SqeContext::token(1).unwrap(), RecvBundle::new(b.as_raw_fd(), 4)).unwrap();
    let s = reap(&mut ring, 1);
    let bundle = br.take_bundle(&s[0].cqe()).unwrap().unwrap();
    let (len, count) = (bundle.len(), bundle.count());
    assert!(count >= 2 && len > 64, "{count} buffers, {len} bytes");
    // From byte 10: the rest of the first buffer, then one buffer a send.
    let (mut token, mut from, mut sends) = (Held::from(bundle), 10, 0);
    loop {
        br.send(&mut ring, b.as_raw_fd(), token, from, 0).unwrap();
        let (done, _) = sent(&mut ring, &mut br);
        sends += 1;
        assert_eq!(done.asked, (len - from).min(64 - from % 64), "one buffer's rest per send");
        assert_eq!(done.res as usize, done.asked);
        (from, token) = (done.end(), done.token);
        if from == len {
            break;
        }
    }
    assert_eq!(sends, count);
    let mut got = vec![0; len - 10];
    a.read_exact(&mut got).unwrap();
    assert_eq!(got, msg[10..len]);
    br.recycle_held(token).unwrap();
    assert_eq!(br.available(), 8);
}

#[test]
fn a_short_send_returns_the_token_and_the_count_and_the_rest_follows() {
    const LEN: usize = 128 * 1024;
    let mut ring = ring();
    let mut br = BufRing::register(&mut ring, BufRingConfig::new(5, 1, LEN as u32)).unwrap();
    let (mut a, b) = UnixStream::pair().unwrap();
    let msg = pattern(LEN, 9);
    a.write_all(&msg).unwrap();
    let buf = receive(&mut ring, &mut br, &b);
    assert_eq!(br.bytes(&buf), &msg[..], "one receive took it all");
    small_sndbuf(&b);
    let (mut token, mut from, mut shorts) = (Held::from(buf), 0, 0);
    let mut got = Vec::new();
    while from < LEN {
        br.send(&mut ring, b.as_raw_fd(), token, from, 0).unwrap();
        let (done, _) = sent(&mut ring, &mut br);
        assert!(done.res > 0, "{}", done.res);
        shorts += usize::from(!done.done());
        let n = done.res as usize;
        let mut chunk = vec![0; n];
        a.read_exact(&mut chunk).unwrap();
        got.extend(chunk);
        (from, token) = (done.end(), done.token);
    }
    assert!(shorts > 0, "a send larger than the socket's buffer goes out short");
    assert!(got == msg, "every byte once, in order");
    br.recycle_held(token).unwrap();
    assert_eq!((br.held(), br.available()), (0, 1));
}

#[test]
fn a_replayed_foreign_or_forged_cqe_gives_nothing_back() {
    let (mut ring, mut other) = (ring(), ring());
    let mut br = BufRing::register(&mut ring, BufRingConfig::new(6, 2, 64)).unwrap();
    let mut twin = BufRing::register(&mut ring, BufRingConfig::new(7, 2, 64)).unwrap();
    let (mut a, b) = UnixStream::pair().unwrap();
    a.write_all(b"payload").unwrap();
    let buf = receive(&mut ring, &mut br, &b);
    // A token goes out only through the ring its memory is attached to.
    let refused = br.send(&mut other, b.as_raw_fd(), buf, 0, 0).unwrap_err();
    assert!(matches!(refused.error, Error::InvalidArgument(_)), "{refused}");
    // And only through its own BufRing.
    let refused = twin.send(&mut ring, b.as_raw_fd(), refused.token, 0, 0).unwrap_err();
    assert!(matches!(refused.error, Error::NotOwned { .. }), "{refused}");
    // Nor past its end.
    let refused = br.send(&mut ring, b.as_raw_fd(), refused.token, 7, 0).unwrap_err();
    assert!(matches!(refused.error, Error::InvalidArgument(_)), "{refused}");
    let id = br.send(&mut ring, b.as_raw_fd(), refused.token, 0, 0).unwrap();
    let ud = id.user_data();
    assert_eq!(LayerData::decode(ud).map(|d| (d.layer(), d.flag())), Some((Layer::BufRing, true)));

    // Safe code cannot make the kernel post the send's user_data.
    assert!(SqeContext::from_raw(ud).is_none());
    let forged = SqeContext::of_user_data(ud);
    assert!(ring.push_op(forged, uring_ops::cmd::Nop::new()).is_err(), "a push under the send's id");
    let to_self = MsgRing::new(ring.as_raw_fd(), ud, 7);
    assert!(ring.push_op(SqeContext::token(2).unwrap(), to_self).is_err(), "MSG_RING with the send's id");

    // A CQE with the send's user_data reaped by another ring (posted here
    // by the layer's own unsafe push, as no safe code can) gives nothing,
    // even at a CQ position past the send's (positions of two rings are
    // not comparable: only the ring check refuses it).
    for n in 0..8 {
        other.push_op(SqeContext::token(n).unwrap(), uring_ops::cmd::Nop::new()).unwrap();
    }
    reap(&mut other, 8);
    assert!(other.cq_position() > ring.cq_position());
    // SAFETY: a NOP names no memory; nothing releases memory on its CQE
    // (the check under test refuses it).
    unsafe {
        uring_ops::push_layer_op(&mut other, LayerData::decode(ud).unwrap().context(), uring_ops::cmd::Nop::new())
    }
    .unwrap();
    let foreign = reap(&mut other, 1)[0];
    assert_eq!(foreign.cqe().user_data(), ud);
    assert!(br.handle_send(&foreign.cqe()).is_none(), "another ring's CQE");
    assert!(br.handle_cqe(&mut ring, &foreign.cqe()).is_none());
    assert_eq!(br.sends_in_flight(), 1);

    let (done, copy) = sent(&mut ring, &mut br);
    assert_eq!((done.id, done.res), (id, 7));
    let mut got = [0u8; 7];
    a.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"payload");
    // Presented again (a saved CqeSlot), to this ring and its neighbour.
    let cqe: Cqe<'_> = copy.cqe();
    assert!(br.handle_send(&cqe).is_none(), "a replayed send CQE gave the token back twice");
    assert!(br.handle_cqe(&mut ring, &cqe).is_none());
    assert!(twin.handle_send(&cqe).is_none());
    assert!(twin.handle_cqe(&mut ring, &cqe).is_none());
    // Send the same buffer again: the old copy still gives nothing, the new
    // send's own CQE gives it back.
    let Held::Buf(buf) = done.token else { panic!() };
    let id2 = br.send(&mut ring, b.as_raw_fd(), buf, 0, 0).unwrap();
    assert!(br.handle_send(&copy.cqe()).is_none(), "an old copy gave back the token of the new send");
    // The slot is reused (the id repeats), which is why the old copy above
    // is refused by its position, not by its value; the twin ring's
    // sends carry its own owner id.
    assert_eq!(id2, id, "the send's slot is reused");
    let (again, _) = sent(&mut ring, &mut br);
    assert_eq!(again.id, id2);
    a.read_exact(&mut got).unwrap();
    br.recycle_held(again.token).unwrap();
    assert_eq!((br.held(), br.available(), twin.available()), (0, 2, 2));
}

#[test]
fn handle_cqe_routes_sends_and_receives() {
    let mut ring = ring();
    let mut br = BufRing::register(&mut ring, BufRingConfig::new(8, 2, 64)).unwrap();
    let (mut a, b) = UnixStream::pair().unwrap();
    a.write_all(b"route").unwrap();
    ring.push_op(SqeContext::token(1).unwrap(), RecvSelect::new(b.as_raw_fd(), 8)).unwrap();
    let s = reap(&mut ring, 1)[0];
    let Some(BufEvent::Received(Ok(bundle))) = br.handle_cqe(&mut ring, &s.cqe()) else { panic!() };
    assert!(br.handle_cqe(&mut ring, &s.cqe()).is_none(), "a copy of the receive");
    br.send(&mut ring, b.as_raw_fd(), bundle, 0, 0).unwrap();
    let s = reap(&mut ring, 1)[0];
    let Some(BufEvent::Sent(done)) = br.handle_cqe(&mut ring, &s.cqe()) else { panic!() };
    assert_eq!(done.res, 5);
    assert!(br.handle_cqe(&mut ring, &s.cqe()).is_none(), "a copy of the send");
    br.recycle_held(done.token).unwrap();
}

#[test]
fn a_lent_buffer_is_not_selected_until_recycled_after_the_send() {
    let mut ring = ring();
    let mut br = BufRing::register(&mut ring, BufRingConfig::new(9, 1, 64)).unwrap();
    let (mut a, b) = UnixStream::pair().unwrap();
    a.write_all(b"first").unwrap();
    let buf = receive(&mut ring, &mut br, &b);
    let bid = buf.bid();
    // Bytes wait in the socket: a receive selects at once, and finds the
    // one buffer lent to the send, so it fails.
    a.write_all(b"second").unwrap();
    br.send(&mut ring, b.as_raw_fd(), buf, 0, 0).unwrap();
    ring.push_op(SqeContext::token(2).unwrap(), RecvSelect::new(b.as_raw_fd(), 9)).unwrap();
    let mut done = None;
    for s in reap(&mut ring, 2) {
        match br.handle_send(&s.cqe()) {
            Some(d) => done = Some(d),
            None => {
                assert_eq!(s.cqe().res(), -libc::ENOBUFS, "the lent buffer was not the kernel's to select");
                assert!(br.take(&s.cqe()).unwrap().is_none());
            }
        }
    }
    let done = done.expect("the send's CQE");
    assert_eq!(done.res, 5);
    br.recycle_held(done.token).unwrap();
    let again = receive(&mut ring, &mut br, &b);
    assert_eq!((again.bid(), br.bytes(&again)), (bid, &b"second"[..]), "the recycled buffer is reused");
    let mut got = [0u8; 5];
    a.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"first");
    br.recycle(again).unwrap();
}

/// Fills `b`'s send buffer until it would block, so a send on it waits.
fn fill(b: &UnixStream) -> usize {
    b.set_nonblocking(true).unwrap();
    let mut n = 0;
    loop {
        match (&*b).write(&[0xAA; 1024]) {
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("{e}"),
        }
    }
    b.set_nonblocking(false).unwrap();
    n
}

static FORGOTTEN: std::sync::Mutex<Vec<std::mem::ManuallyDrop<BufRing>>> = std::sync::Mutex::new(Vec::new());

/// Drops (or forgets, or unregisters) the `BufRing` while its send waits
/// for room, then lets the send finish: the bytes that arrive are the
/// buffer's, read from memory that stayed mapped.
fn lose_the_bufring_with_a_send_in_flight(how: u8) {
    let mut ring = ring();
    let mut br = BufRing::register(&mut ring, BufRingConfig::new(10, 2, 4096)).unwrap();
    let (mut a, b) = UnixStream::pair().unwrap();
    let msg = pattern(4096, 3);
    a.write_all(&msg).unwrap();
    let buf = receive(&mut ring, &mut br, &b);
    small_sndbuf(&b);
    let filler = fill(&b);
    br.send(&mut ring, b.as_raw_fd(), buf, 0, libc::MSG_WAITALL).unwrap();
    ring.submit().unwrap();
    assert_eq!(ring.cq_ready(), 0, "the send waits for room");
    match how {
        0 => drop(br),
        // `mem::forget`, kept reachable from a static so that the leak
        // checker (CI runs the tests under LSan) sees no leak: its `Drop`
        // never runs all the same.
        1 => FORGOTTEN.lock().unwrap().push(std::mem::ManuallyDrop::new(br)),
        _ => br.unregister(&mut ring).unwrap(),
    }
    // Churn the allocator: nothing of the buffers may be reused.
    let junk: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; 4096]).collect();
    let reader = std::thread::spawn(move || {
        let mut got = vec![0; filler + 4096];
        a.read_exact(&mut got).unwrap();
        got.split_off(filler)
    });
    let s = reap(&mut ring, 1)[0];
    assert_eq!(s.cqe().res(), 4096, "the send read the whole buffer");
    assert!(reader.join().unwrap() == msg, "the bytes sent are the buffer's");
    drop(junk);
}

#[test]
fn dropping_the_bufring_with_a_send_in_flight_is_sound() {
    lose_the_bufring_with_a_send_in_flight(0);
}

#[test]
fn forgetting_the_bufring_with_a_send_in_flight_is_sound() {
    lose_the_bufring_with_a_send_in_flight(1);
}

#[test]
fn unregistering_with_a_send_in_flight_is_sound() {
    lose_the_bufring_with_a_send_in_flight(2);
}

#[test]
fn dropping_the_ring_and_the_bufring_with_a_send_in_flight_is_sound() {
    let mut ring = ring();
    let mut br = BufRing::register(&mut ring, BufRingConfig::new(11, 2, 4096)).unwrap();
    let (mut a, b) = UnixStream::pair().unwrap();
    a.write_all(&pattern(4096, 1)).unwrap();
    let buf = receive(&mut ring, &mut br, &b);
    small_sndbuf(&b);
    fill(&b);
    br.send(&mut ring, b.as_raw_fd(), buf, 0, 0).unwrap();
    ring.submit().unwrap();
    assert_eq!(ring.cq_ready(), 0, "the send waits for room");
    drop(br);
    drop(ring); // cancels the send, then frees the memory
    drop((a, b));
}

#[test]
fn a_range_of_an_incremental_buffer_is_sent_while_the_kernel_fills_the_rest() {
    let mut ring = ring();
    let mut br = match BufRing::register(&mut ring, BufRingConfig::new(12, 1, 64).incremental()) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("SKIPPED a_range_of_an_incremental_buffer_is_sent_while_the_kernel_fills_the_rest: {e}");
            return;
        }
    };
    let (mut a, b) = UnixStream::pair().unwrap();
    br.push_op(&mut ring, uring_ops::multishot::RecvMulti::new(b.as_raw_fd(), 12)).unwrap();
    let mut echoed = Vec::new();
    for msg in [&b"abc"[..], b"defgh"] {
        a.write_all(msg).unwrap();
        let s = reap(&mut ring, 1)[0];
        let range = br.take(&s.cqe()).unwrap().expect("a range");
        assert_eq!(br.bytes(&range), msg);
        // Lent while the kernel keeps the rest of the buffer for the next
        // receive: the send reads only the range.
        br.send(&mut ring, b.as_raw_fd(), range, 0, 0).unwrap();
        let (done, _) = sent(&mut ring, &mut br);
        assert_eq!(done.res as usize, msg.len());
        let mut got = vec![0; msg.len()];
        a.read_exact(&mut got).unwrap();
        echoed.extend(got);
        br.recycle_held(done.token).unwrap();
    }
    assert_eq!(echoed, b"abcdefgh");
    assert_eq!((br.held(), br.sends_in_flight()), (0, 0));
}

#[test]
fn two_rings_sends_in_the_same_slot_give_back_only_their_own_tokens() {
    // Two BufRings on one ring, each with one send in flight: both sends
    // use slot 0 of their ring's table. Each CQE gives a token back only
    // to the BufRing whose owner id it carries.
    let mut ring = ring();
    let mut one = BufRing::register(&mut ring, BufRingConfig::new(11, 2, 64)).unwrap();
    let mut two = BufRing::register(&mut ring, BufRingConfig::new(12, 2, 64)).unwrap();
    let (mut a, b) = UnixStream::pair().unwrap();
    a.write_all(b"first").unwrap();
    let first = receive(&mut ring, &mut one, &b);
    a.write_all(b"second").unwrap();
    let second = receive(&mut ring, &mut two, &b);
    let id1 = one.send(&mut ring, b.as_raw_fd(), first, 0, 0).unwrap();
    let id2 = two.send(&mut ring, b.as_raw_fd(), second, 0, 0).unwrap();
    assert_ne!(id1, id2, "the owner ids differ");
    let cqes = reap(&mut ring, 2);
    for s in &cqes {
        let cqe = s.cqe();
        let (mine, theirs) =
            if cqe.user_data() == id1.user_data() { (&mut one, &mut two) } else { (&mut two, &mut one) };
        assert!(theirs.handle_send(&cqe).is_none(), "a token went back to the other BufRing");
        let done = mine.handle_send(&cqe).expect("its own send's CQE");
        mine.recycle_held(done.token).unwrap();
    }
    let mut got = [0u8; 11];
    a.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"firstsecond");
    assert_eq!((one.held(), two.held(), one.sends_in_flight(), two.sends_in_flight()), (0, 0, 0, 0));
}
