//! Regression tests for the soundness inventory (SOUNDNESS.md): safe call
//! sequences that once made the kernel write into a buffer this crate had
//! lent out as `&[u8]`/`&mut [u8]`, or free a buffer the kernel still
//! read. Each now ends in a clear error, and the test checks the real
//! effect: the kernel's bytes land where they belong and nothing lent out
//! changes under its borrow.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use uring_buffers::{BufRing, BufRingConfig, Error, FixedBuffers, SendRing};
use uring_core::{CqeSlot, Error as CoreError, Ring, SqeContext};
use uring_ops::RingOps;
use uring_ops::cmd::Nop;
use uring_ops::net::RecvSelect;
use uring_ops::prelude::*;

mod common;

use common::{reap, ring};

fn not_owned<T: std::fmt::Debug>(r: Result<T, Error>) -> bool {
    matches!(r, Err(Error::NotOwned { .. }))
}

/// Inventory: `BufRing::take`, pooled contexts. A CQE copied out of the
/// ring (`CqeSlot::cqe`, no pools) cannot prove its group through a pooled
/// context: once group 22 accepted group 21's CQE and lent out its own
/// buffer 0, which the kernel then filled under the borrow.
#[test]
fn a_pooled_cqe_without_its_pools_proves_no_group() {
    let mut ring = ring();
    let mut a = BufRing::register(&mut ring, BufRingConfig::new(21, 4, 64)).unwrap();
    let mut b = BufRing::register(&mut ring, BufRingConfig::new(22, 4, 64)).unwrap();
    let (mut tx, rx) = UnixStream::pair().unwrap();
    tx.write_all(b"to group 21").unwrap();
    let ctx = ring.pools_mut().acquire_indirect().unwrap();
    ring.push_op(ctx, RecvSelect::new(rx.as_raw_fd(), 21)).unwrap();
    ring.submit().unwrap();
    let slot = reap(&mut ring, 1)[0];
    assert!(not_owned(b.take(&slot.cqe())), "group 22 refuses a CQE it cannot prove is its own");
    assert!(not_owned(a.take(&slot.cqe())), "without the pools, group 21 cannot prove it either");
    assert_eq!((a.held(), b.held()), (0, 0));
    // Resolved through the ring's pools, the proof names group 21 only.
    let sel = ring.pools().buffer_selection(&slot.cqe()).expect("recorded at submission");
    assert_eq!((sel.group(), sel.bid(), sel.ring_id()), (21, 0, ring.id()));
    assert!(not_owned(b.take_selection(&sel)));
    let mine = a.take_selection(&sel).unwrap();
    assert_eq!(a.bytes(&mine), b"to group 21");
    ring.pools_mut().release(ctx).unwrap();
    // Group 22's buffer 0 is still the kernel's: its next receive fills it
    // and the CQE hands it over, once.
    tx.write_all(b"to group 22").unwrap();
    ring.push_op(SqeContext::for_fd(1), RecvSelect::new(rx.as_raw_fd(), 22)).unwrap();
    ring.submit().unwrap();
    let done = reap(&mut ring, 1)[0];
    let theirs = b.take(&done.cqe()).unwrap().expect("group 22's own CQE");
    assert_eq!((theirs.bid(), b.bytes(&theirs)), (0, &b"to group 22"[..]));
    assert_eq!(a.bytes(&mine), b"to group 21", "the other group's buffer was not touched");
}

/// Inventory: `BufRing::take`, pooled contexts. The SQE copy in a pooled
/// slot is the caller's to edit; the group is recorded where it cannot.
#[test]
fn editing_a_pooled_sqe_copy_does_not_change_the_proven_group() {
    let mut ring = ring();
    let mut a = BufRing::register(&mut ring, BufRingConfig::new(31, 4, 64)).unwrap();
    let mut b = BufRing::register(&mut ring, BufRingConfig::new(32, 4, 64)).unwrap();
    let (mut tx, rx) = UnixStream::pair().unwrap();
    tx.write_all(b"to group 31").unwrap();
    let ctx = ring.pools_mut().acquire_indirect().unwrap();
    ring.push_op(ctx, RecvSelect::new(rx.as_raw_fd(), 31)).unwrap();
    ring.pools_mut().indirect_mut(ctx).unwrap().sqe.set_buf_group(32);
    ring.submit().unwrap();
    let mut slots = [CqeSlot::EMPTY; 1];
    let done = ring.wait_for(&mut slots, 1, Some(Duration::from_secs(5))).unwrap();
    let cqe = done.get(0).unwrap();
    assert_eq!(cqe.indirect().unwrap().sqe.buf_group(), 32, "the copy says 32");
    assert!(not_owned(b.take(&cqe)), "group 32 refuses it all the same");
    let buf = a.take(&cqe).unwrap().unwrap();
    assert_eq!(a.bytes(&buf), b"to group 31");
}

/// Inventory: `BufRing::take`, replay. A copy of a CQE presented again,
/// after its buffer was recycled, once handed the buffer out a second time
/// while it was back in the kernel's ring.
#[test]
fn a_replayed_cqe_takes_nothing() {
    let mut ring = ring();
    let mut b = BufRing::register(&mut ring, BufRingConfig::new(41, 4, 64)).unwrap();
    let (mut tx, rx) = UnixStream::pair().unwrap();
    let mut recv = |ring: &mut Ring, msg: &[u8]| {
        tx.write_all(msg).unwrap();
        ring.push_op(SqeContext::for_fd(0), RecvSelect::new(rx.as_raw_fd(), 41)).unwrap();
        ring.submit().unwrap();
        reap(ring, 1)[0]
    };
    let first = recv(&mut ring, b"first");
    let buf = b.take(&first.cqe()).unwrap().unwrap();
    assert_eq!((buf.bid(), b.bytes(&buf)), (0, &b"first"[..]));
    assert!(not_owned(b.take(&first.cqe())), "presented twice while held");
    b.recycle(buf).unwrap();
    assert!(not_owned(b.take(&first.cqe())), "presented again after the buffer went back to the kernel");
    assert_eq!(b.held(), 0);
    // The kernel cycles through the ring and fills buffer 0 again: the new
    // CQE hands it over with the new bytes.
    let mut held = Vec::new();
    for m in [&b"one"[..], b"two", b"six"] {
        let s = recv(&mut ring, m);
        held.push(b.take(&s.cqe()).unwrap().unwrap());
    }
    let s = recv(&mut ring, b"KERNEL");
    let again = b.take(&s.cqe()).unwrap().unwrap();
    assert_eq!((again.bid(), b.bytes(&again)), (0, &b"KERNEL"[..]));
    assert_eq!(held.iter().map(|h| b.bytes(h).to_vec()).collect::<Vec<_>>(), [&b"one"[..], b"two", b"six"]);
}

/// Inventory: `BufRing::take`, ring identity. Two io_uring rings with the
/// same group id: one ring's CQE names a buffer id of the other's group.
#[test]
fn another_rings_cqe_takes_nothing() {
    let mut r1 = ring();
    let mut r2 = ring();
    let mut b1 = BufRing::register(&mut r1, BufRingConfig::new(5, 4, 64)).unwrap();
    let mut b2 = BufRing::register(&mut r2, BufRingConfig::new(5, 4, 64)).unwrap();
    let (mut tx, rx) = UnixStream::pair().unwrap();
    tx.write_all(b"ring one").unwrap();
    r1.push_op(SqeContext::for_fd(0), RecvSelect::new(rx.as_raw_fd(), 5)).unwrap();
    r1.submit().unwrap();
    let s = reap(&mut r1, 1)[0];
    assert!(not_owned(b2.take(&s.cqe())), "ring 2's group 5 refuses ring 1's CQE");
    assert_eq!(b2.held(), 0);
    let buf = b1.take(&s.cqe()).unwrap().unwrap();
    assert_eq!(b1.bytes(&buf), b"ring one");
}

/// Inventory: reserved tags. `push_with_deadline` once queued its
/// operation with any context: a NOP carrying a live `read_fixed`'s
/// `user_data` made the table free a buffer the kernel was still to write.
#[test]
fn a_deadline_cannot_carry_a_layer_tag() {
    let mut ring = ring();
    let mut bufs = FixedBuffers::register(&mut ring, 1, 4096).unwrap();
    let (rd, mut wr) = std::io::pipe().unwrap();
    let id = bufs.read_fixed(&mut ring, rd.as_raw_fd(), 0, 0..16, u64::MAX).unwrap();
    ring.submit().unwrap();
    let err =
        ring.push_with_deadline(id.context(), Nop::new(), SqeContext::for_fd(-1), Duration::from_secs(5)).unwrap_err();
    assert!(matches!(err, CoreError::InvalidArgument(_)), "{err}");
    // SAFETY: a NOP names no memory.
    let err = unsafe { ring.push_op_unchecked(id.context(), Nop::new()) }.unwrap_err();
    assert!(matches!(err, CoreError::InvalidArgument(_)), "the unsafe push refuses it too: {err}");
    assert_eq!(ring.sq_pending(), 0, "nothing was queued");
    assert!(bufs.buffer(0).is_err(), "still the kernel's");
    wr.write_all(b"KERNEL-WROTE-IT!").unwrap();
    let s = reap(&mut ring, 1)[0];
    let done = bufs.handle_cqe(&s.cqe()).expect("the read's own CQE");
    assert_eq!((done.id, done.res, done.free), (id, 16, true));
    assert_eq!(&bufs.buffer(0).unwrap()[..16], b"KERNEL-WROTE-IT!");
}

fn table_of(b: &FixedBuffers) -> u64 {
    let s = format!("{b:?}");
    let at = s.find("table: ").unwrap() + 7;
    s[at..].split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
}

/// Inventory: `FixedBuffers::handle_cqe`, identities. Table ids were 16
/// bits of a process-wide counter: 65,536 tables later, another table on
/// another ring issued the very `user_data` of a live operation, and its
/// CQE freed that operation's buffer. Ids now never repeat, and a CQE of
/// another ring is refused whatever its `user_data`.
#[test]
fn table_ids_do_not_wrap() {
    let mut ring1 = ring();
    let mut ring2 = ring();
    let a = FixedBuffers::register(&mut ring1, 1, 4096).unwrap();
    let want = table_of(&a);
    for _ in 0..(1 << 16) + 8 {
        let t = FixedBuffers::sparse(&mut ring2, 1).unwrap();
        assert_ne!(table_of(&t), want, "a table id came round again");
        t.into_inner().unwrap().unregister(&mut ring2).unwrap();
    }
}

/// Runs the ring while a thread drains `server` until `want` bytes
/// arrived (5 s); returns the bytes and the CQEs reaped meanwhile.
fn pump_and_drain(ring: &mut Ring, server: std::net::TcpStream, want: usize) -> (Vec<u8>, Vec<CqeSlot>) {
    let h = common::drain(server, want);
    let mut cqes = Vec::new();
    let mut slots = [CqeSlot::EMPTY; 16];
    while !h.is_finished() {
        if let Ok(r) = ring.wait_for(&mut slots, 1, Some(Duration::from_millis(20))) {
            cqes.extend(r.iter().map(|c| c.to_slot()));
        }
    }
    (h.join().unwrap(), cqes)
}

/// Inventory: `SendRing::complete`. A copy of an earlier send's CQE once
/// returned the buffer queued for the send in flight to the free pool,
/// and `buf_mut` lent it as `&mut` while the kernel was to send it.
#[test]
fn a_replayed_send_cqe_frees_nothing() {
    let mut ring = ring();
    if !ring.features().has(uring_core::FeatureFlags::RECVSEND_BUNDLE) {
        eprintln!("SKIPPED a_replayed_send_cqe_frees_nothing: no IORING_FEAT_RECVSEND_BUNDLE (Linux 6.10+)");
        return;
    }
    let mut sr = SendRing::register(&mut ring, BufRingConfig::new(51, 4, 4096)).unwrap();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let free_tx = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (_free_rx, _) = l.accept().unwrap();
    // Send 1 on a socket with room: its CQE names buffer 0.
    let mut b = sr.acquire().unwrap();
    sr.buf_mut(&mut b)[..100].fill(b'1');
    sr.queue(b, 100).unwrap();
    sr.send_bundle(&mut ring, SqeContext::for_fd(-1), free_tx.as_raw_fd()).unwrap();
    ring.submit().unwrap();
    let c1 = reap(&mut ring, 1)[0];
    assert_eq!(sr.complete(&c1.cqe()).unwrap().freed, 1);
    // Send 2, of buffer 0 again, on a socket that is full.
    let (client, server, queued) = common::blocked_pair();
    let mut b = sr.acquire().unwrap();
    assert_eq!(b.bid(), 0);
    sr.buf_mut(&mut b)[..100].fill(b'A');
    sr.queue(b, 100).unwrap();
    sr.send_bundle(&mut ring, SqeContext::for_fd(-1), client.as_raw_fd()).unwrap();
    ring.submit().unwrap();
    // Send 1's CQE again: refused; buffer 0 stays queued.
    assert!(matches!(sr.complete(&c1.cqe()), Err(Error::InvalidArgument(_))));
    assert_eq!((sr.free(), sr.queued()), (3, 1));
    let (got, cqes) = pump_and_drain(&mut ring, server, queued + 100);
    assert_eq!(&got[queued..], &[b'A'; 100][..], "the kernel sent the bytes queued, untouched");
    for c in &cqes {
        sr.complete(&c.cqe()).unwrap();
    }
    assert_eq!((sr.free(), sr.queued(), sr.in_flight()), (4, 0, false));
}

/// Inventory: `RegisteredBuffers::install`. Installing through a table of
/// one ring into another ring's table once put memory this value lends
/// out (`buffer_mut`) under the other ring's fixed operations: a
/// `FixedBuffers` read there then wrote into a live `&mut [u8]`.
#[test]
fn a_table_acts_on_its_own_ring_only() {
    use uring_buffers::RegisteredBuffers;
    let mut ring1 = ring();
    let mut ring3 = ring();
    let mut rogue = RegisteredBuffers::sparse(&mut ring1, 2).unwrap();
    let fixed = FixedBuffers::sparse(&mut ring3, 2).unwrap();
    for e in [
        rogue.install(&mut ring3, 0, 4096).unwrap_err(),
        rogue.clone_into(&ring3, &mut self::ring()).unwrap_err(),
        RegisteredBuffers::sparse(&mut self::ring(), 1).unwrap().unregister(&mut ring3).unwrap_err(),
    ] {
        assert!(e.to_string().contains("registered with ring"), "{e}");
    }
    assert!(fixed.buffer(0).is_err(), "ring 3's slot 0 is still empty");
    rogue.install(&mut ring1, 0, 4096).unwrap();
    assert_eq!(rogue.buffer_mut(0).unwrap().len(), 4096, "its own ring's table works");
}

/// Inventory: reserved tags, `PollUpdate`. A poll armed with safe calls
/// was once relabelled with the reserved `user_data` of an in-flight fixed
/// read; its CQE then freed the read's buffer, and the read landed in a
/// live `&mut [u8]`. Likewise `MsgRingFd` posted any `user_data`.
#[test]
fn a_poll_cannot_be_relabelled_with_a_layer_tag() {
    use uring_ops::msg::MsgRingFd;
    use uring_ops::poll::{PollAdd, PollEvents, PollUpdate};
    use uring_ops::{FileDest, Fixed};
    let mut ring = ring();
    let mut bufs = FixedBuffers::register(&mut ring, 1, 4096).unwrap();
    let (rd, mut wr) = std::io::pipe().unwrap();
    let id = bufs.read_fixed(&mut ring, rd.as_raw_fd(), 0, 0..8, u64::MAX).unwrap();
    let (prd, mut pwr) = std::io::pipe().unwrap();
    let poll = ring.push_op(SqeContext::for_fd(7), PollAdd::new(prd.as_raw_fd(), PollEvents::IN)).unwrap();
    ring.submit().unwrap();
    let err = ring.push_op(SqeContext::for_fd(8), PollUpdate::new(poll.raw()).user_data(id.user_data())).unwrap_err();
    assert!(matches!(err, CoreError::InvalidArgument(_)), "{err}");
    let err = ring
        .push_op(SqeContext::for_fd(9), MsgRingFd::new(ring.as_raw_fd(), Fixed(0), FileDest::Slot(1), id.user_data()))
        .unwrap_err();
    assert!(matches!(err, CoreError::InvalidArgument(_)), "{err}");
    assert_eq!(ring.sq_pending(), 0, "nothing was queued");
    // The poll fires under its own identity and frees nothing.
    pwr.write_all(b"!").unwrap();
    let s = reap(&mut ring, 1)[0];
    assert_eq!(s.cqe().user_data(), poll.raw());
    assert!(bufs.handle_cqe(&s.cqe()).is_none());
    assert!(bufs.buffer_mut(0).is_err(), "the read still owns the buffer");
    wr.write_all(b"the read").unwrap();
    let s = reap(&mut ring, 1)[0];
    assert_eq!(bufs.handle_cqe(&s.cqe()).unwrap().id, id);
    assert_eq!(&bufs.buffer(0).unwrap()[..8], b"the read");
}

/// `mem::forget` of a zero-copy pass: it consumed every CQE it handed out
/// (the next pass does not show them again, so no position is handed out
/// twice), and the kernel gets their slots back at the next pass's drop.
/// A buffer taken in the forgotten pass stays the caller's.
#[test]
fn a_forgotten_pass_consumed_its_cqes_and_the_next_pass_gives_the_slots_back() {
    let mut ring = ring();
    let mut br = BufRing::register(&mut ring, BufRingConfig::new(61, 4, 64)).unwrap();
    let (mut tx, rx) = UnixStream::pair().unwrap();
    tx.write_all(b"once").unwrap();
    ring.push_op(SqeContext::for_fd(0), RecvSelect::new(rx.as_raw_fd(), 61)).unwrap();
    ring.submit_and_wait(1).unwrap();
    let before = ring.cq_position();
    let (buf, seq) = {
        let mut pass = ring.completions().unwrap();
        let cqe = pass.next().expect("the receive");
        let seq = cqe.seq();
        let buf = br.take(&cqe).unwrap().unwrap();
        std::mem::forget(pass);
        (buf, seq)
    };
    assert_eq!((seq, ring.cq_position()), (before, before + 1), "consumed when handed out");
    assert!(ring.completions().unwrap().next().is_none(), "not shown again");
    assert_eq!((br.bytes(&buf), br.held()), (&b"once"[..], 1));
    br.recycle(buf).unwrap();
    // The slots went back to the kernel: a full CQ's worth of NOPs still
    // completes (with the slot withheld, one would overflow).
    let entries = ring.features().cq_entries();
    let mut done = 0;
    for n in 0..u64::from(entries) {
        ring.push_op(SqeContext::token(n).unwrap(), uring_ops::cmd::Nop::new()).unwrap();
        if ring.sq_space_left() == 0 {
            ring.submit().unwrap();
        }
    }
    while done < entries {
        done += ring.wait_completions(1).unwrap().for_each(|c| assert_eq!(c.res(), 0)) as u32;
    }
    assert!(!ring.cq_overflow_pending() && ring.cq_dropped() == 0);
}

/// A panic inside a multishot handler leaves the subscription and the
/// buffer ring consistent: the step's buffer is not lost to a double
/// take, the stream continues, and a copy of the CQE is not a new step.
#[test]
fn a_panicking_handler_leaves_the_bookkeeping_consistent() {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use uring_ops::multishot::RecvMulti;
    use uring_ops::subscription::{MultishotEnd, MultishotStep};

    struct Flaky {
        calls: u32,
        got: Vec<uring_core::BufferSelection>,
    }
    impl MultishotHandler for Flaky {
        fn on_step(&mut self, step: &MultishotStep) -> MultishotAction {
            self.calls += 1;
            if self.calls == 1 {
                panic!("the handler fails on its first step");
            }
            self.got.extend(step.buffer_selection());
            MultishotAction::Continue
        }
        fn on_stop(&mut self, _end: MultishotEnd) {}
    }
    let mut ring = ring();
    let mut br = BufRing::register(&mut ring, BufRingConfig::new(62, 4, 64)).unwrap();
    let (mut tx, rx) = UnixStream::pair().unwrap();
    let mut sub = ring.subscribe(RecvMulti::new(rx.as_raw_fd(), 62), Flaky { calls: 0, got: Vec::new() }).unwrap();
    ring.submit().unwrap();
    tx.write_all(b"first").unwrap();
    let first = reap(&mut ring, 1)[0];
    // (The panic's message is printed; the test expects it.)
    let r = catch_unwind(AssertUnwindSafe(|| sub.handle_cqe(&mut ring, &first.cqe())));
    assert!(r.is_err(), "the handler panicked");
    // The same CQE again is not a new step of the stream.
    assert!(sub.handle_cqe(&mut ring, &first.cqe()).is_none(), "a copy is not the stream's next step");
    assert!(sub.handler().got.is_empty());
    tx.write_all(b"second").unwrap();
    let second = reap(&mut ring, 1)[0];
    assert!(sub.handle_cqe(&mut ring, &second.cqe()).is_some());
    let sel = sub.handler_mut().got.pop().expect("the second step's buffer");
    let buf = br.take_selection(&sel).unwrap();
    assert_eq!(br.bytes(&buf), b"second");
    assert_eq!(br.held(), 1, "the first buffer was never handed out");
    sub.cancel(&mut ring).unwrap();
}

/// Inventory: `SendRing`, its group. The send accounting holds only if
/// its own sends are the only requests selecting from its group: a
/// receive (or a send of the caller's own) selecting from it once consumed
/// queued buffers behind the send ring's back, which then returned them to
/// the free pool while the kernel still used them. Such pushes are refused
/// now, and nothing is queued.
#[test]
fn a_send_rings_group_is_its_own() {
    use uring_ops::net::SendBundle;
    let mut ring = ring();
    if !ring.features().has(uring_core::FeatureFlags::RECVSEND_BUNDLE) {
        eprintln!("SKIPPED a_send_rings_group_is_its_own: no IORING_FEAT_RECVSEND_BUNDLE (Linux 6.10+)");
        return;
    }
    let mut sr = SendRing::register(&mut ring, BufRingConfig::new(71, 4, 64)).unwrap();
    let (a, b) = UnixStream::pair().unwrap();
    let pending = ring.sq_pending();
    for e in [
        ring.push_op(SqeContext::for_fd(1), RecvSelect::new(b.as_raw_fd(), 71)).unwrap_err(),
        ring.push_op(SqeContext::for_fd(2), SendBundle::new(a.as_raw_fd(), 71)).unwrap_err(),
        ring.push_op(SqeContext::for_fd(3), uring_ops::multishot::RecvMulti::new(b.as_raw_fd(), 71)).unwrap_err(),
    ] {
        assert!(e.to_string().contains("reserved"), "{e}");
    }
    assert_eq!(ring.sq_pending(), pending, "nothing was queued");
    assert!(matches!(SendRing::register(&mut ring, BufRingConfig::new(71, 4, 64)), Err(Error::Core(_))));
    // The send ring's own send goes through.
    let mut buf = sr.acquire().unwrap();
    sr.buf_mut(&mut buf)[..5].copy_from_slice(b"owned");
    sr.queue(buf, 5).unwrap();
    sr.send_bundle(&mut ring, SqeContext::for_fd(5), a.as_raw_fd()).unwrap();
    ring.submit().unwrap();
    let s = reap(&mut ring, 1)[0];
    assert_eq!(sr.complete(&s.cqe()).unwrap().freed, 1);
    let mut got = [0u8; 5];
    (&b).read_exact(&mut got).unwrap();
    assert_eq!(&got, b"owned");
    // Unregistered, the group is free again.
    sr.unregister(&mut ring).unwrap();
    assert!(!ring.is_buffer_group_reserved(71));
}
