//! Attack 5: caller-owned memory as registered buffers, resource tags, and
//! zero-copy sends from registered buffers, from safe code only.
//!
//! Each test drives a sequence of safe calls that would, if the library
//! were wrong, let the kernel write (or read) memory Rust has lent out or
//! freed, or hand memory back while the kernel may still use it; and
//! checks the property that rules it out (a refusal, bytes unchanged, a
//! canary not overwritten, data still in a pipe the kernel would have
//! drained). Unsafe code appears only to *observe* the kernel's view (raw
//! fixed reads that prove what a slot names), never in an attack.
//!
//! Finding (section 11, four failing tests): a zero-copy fixed send from
//! caller memory whose result CQE has come but whose notification has not
//! (the bytes wait in a TCP write queue behind a closed window) leaves no
//! request for `Ring::stop` to cancel, so closing the ring frees the vault,
//! and dropping the table frees the caller's `Vec`, while the kernel's skb
//! still references its pages: the peer later receives bytes Rust wrote
//! into the reused allocation.
#![allow(clippy::single_range_in_vec_init)]

mod common;

use std::fs::File;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use uring_buffers::{CallerRegion, Error, FixedBuffers, RegisteredBuffers, TagEvent};
use uring_core::{CqeSlot, Error as CoreError, Mapping, Ring, SqeContext};
use uring_ops::RingOps;
use uring_ops::file::ReadFixed;
use uring_ops::msg::MsgRing;

use common::{reap, ring};

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: fresh fds we own.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn tcp_pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (b, _) = l.accept().unwrap();
    (a, b)
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

fn is_busy<T: std::fmt::Debug>(r: &Result<T, Error>) -> bool {
    matches!(r, Err(Error::Busy { .. }))
}

/// Waits up to `ms` for one CQE; `None` when none came.
fn try_reap(ring: &mut Ring, ms: u64) -> Option<CqeSlot> {
    let mut slots = [CqeSlot::EMPTY; 1];
    match ring.wait_for(&mut slots, 1, Some(Duration::from_millis(ms))) {
        Ok(r) if r.len() == 1 => Some(slots[0]),
        Ok(_) | Err(CoreError::WouldBlock) => None,
        Err(e) => panic!("{e}"),
    }
}

/// Exactly one CQE (5 s), leaving any others in the ring.
fn reap1(ring: &mut Ring) -> CqeSlot {
    for _ in 0..50 {
        if let Some(c) = try_reap(ring, 100) {
            return c;
        }
    }
    panic!("no CQE in 5 s");
}

/// Bytes waiting in the read end of a pipe, read without blocking.
fn drain_pipe(r: &OwnedFd) -> Vec<u8> {
    // SAFETY: fcntl on our own fd.
    unsafe {
        let fl = libc::fcntl(r.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(r.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: reads at most buf.len() bytes into buf.
        let n = unsafe { libc::read(r.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
    out
}

/// Reaps until `bufs` takes a tag (other CQEs are returned in `others`).
fn wait_tag_fixed(ring: &mut Ring, bufs: &mut FixedBuffers, others: &mut Vec<CqeSlot>) -> TagEvent {
    for _ in 0..32 {
        let c = reap1(ring);
        if let Some(ev) = bufs.handle_tag(&c.cqe()) {
            return ev;
        }
        others.push(c);
    }
    panic!("no tag came");
}

fn wait_tag_reg(ring: &mut Ring, bufs: &mut RegisteredBuffers) -> TagEvent {
    for _ in 0..32 {
        let c = reap1(ring);
        if let Some(ev) = bufs.handle_tag(&c.cqe()) {
            return ev;
        }
    }
    panic!("no tag came");
}

/// Pushes a raw READ_FIXED (observation only) and returns its result.
///
/// # Safety
///
/// `addr..addr + len` is memory that stays valid until the CQE, or the
/// kernel refuses the read.
unsafe fn raw_read_fixed_result(ring: &mut Ring, fd: i32, addr: *mut u8, len: u32, index: u16) -> i32 {
    // SAFETY: forwarded to the caller.
    let op = unsafe { ReadFixed::from_raw_parts(fd, addr, len, index) }.offset(0);
    ring.push_op(SqeContext::token(0x5a5a).unwrap(), op).unwrap();
    ring.submit().unwrap();
    reap1(ring).cqe().res()
}

/// Many fresh allocations of `len` bytes, filled with `byte`: if memory the
/// kernel still writes had been freed, some of these would likely take it.
fn canaries(len: usize, byte: u8) -> Vec<Vec<u8>> {
    (0..64).map(|_| vec![byte; len]).collect()
}

fn canaries_intact(c: &[Vec<u8>], byte: u8) -> bool {
    c.iter().all(|v| v.iter().all(|&b| b == byte))
}

// ---------------------------------------------------------------------
// 1. A read in flight into caller memory: every way of getting the
//    memory back or lending it is refused until the read's CQE.
// ---------------------------------------------------------------------

#[test]
fn a_read_in_flight_into_caller_memory_blocks_replace_remove_clear_install_and_into_inner() {
    let mut ring = ring();
    let mut bufs = FixedBuffers::register_memory(
        &mut ring,
        vec![
            CallerRegion::new(vec![0xAAu8; 4096]),
            CallerRegion::new(vec![0xBBu8; 4096].into_boxed_slice()),
            CallerRegion::new(vec![0xCCu8; 8192]).split(4096).unwrap(),
        ],
    )
    .unwrap();
    assert_eq!(bufs.len(), 4);
    let (r, w) = pipe();
    bufs.read_fixed(&mut ring, r.as_raw_fd(), 0, 0..4096, u64::MAX).unwrap();
    ring.submit().unwrap();
    assert!(try_reap(&mut ring, 50).is_none(), "the pipe is empty: the read waits");
    assert!(bufs.buffer(0).is_err(), "buffer(0) while the kernel writes it");
    assert!(bufs.buffer_mut(0).is_err(), "buffer_mut(0) while the kernel writes it");
    assert!(is_busy(&bufs.replace(&mut ring, 0, CallerRegion::new(vec![0u8; 64]))), "replace(0)");
    // A two-buffer region starting at the busy slot.
    assert!(
        is_busy(&bufs.replace(&mut ring, 0, CallerRegion::new(vec![0u8; 128]).split(64).unwrap())),
        "replace(0..2)"
    );
    assert!(is_busy(&bufs.remove(&mut ring, 0)), "remove(0)");
    assert!(is_busy(&bufs.clear(&mut ring)), "clear");
    assert!(is_busy(&bufs.install(&mut ring, 0, 4096)), "install(0)");
    assert!(is_busy(&bufs.write_fixed(&mut ring, r.as_raw_fd(), 0, 0..1, 0)), "second op on buffer 0");
    assert!(is_busy(&bufs.chain(0).write(r.as_raw_fd(), 0..1, 0).queue(&mut ring)), "a chain on buffer 0");
    let mut bufs = match bufs.into_inner() {
        Ok(_) => panic!(
            "FixedBuffers::register_memory; read_fixed(slot 0, empty pipe); into_inner() returned the \
             RegisteredBuffers while the read was in flight"
        ),
        Err(b) => b,
    };
    // The kernel writes; the read's CQE frees the buffer; its bytes are the pipe's.
    let data = pattern(4096, 3);
    File::from(w).write_all(&data).unwrap();
    let c = reap1(&mut ring);
    let done = bufs.handle_cqe(&c.cqe()).expect("the read's CQE");
    assert_eq!((done.res, done.free), (4096, true));
    assert_eq!(bufs.buffer(0).unwrap(), &data[..]);
    // Now the memory comes back, with the bytes, only through its tag.
    bufs.replace(&mut ring, 0, CallerRegion::new(vec![0u8; 64])).unwrap();
    let mut others = Vec::new();
    let ev = wait_tag_fixed(&mut ring, &mut bufs, &mut others);
    let back: Vec<u8> = ev.released.expect("the Vec").downcast().unwrap();
    assert_eq!(back, data);
    assert!(bufs.handle_cqe(&c.cqe()).is_none(), "the read's CQE, replayed, is nobody's");
}

// ---------------------------------------------------------------------
// 2. A region split over several slots comes back only when every one of
//    its buffers has left the table and been let go of.
// ---------------------------------------------------------------------

#[test]
fn a_split_region_is_not_released_while_one_of_its_buffers_has_a_read_in_flight() {
    let mut ring = ring();
    let mut bufs =
        FixedBuffers::register_memory(&mut ring, vec![CallerRegion::new(vec![0x11u8; 3 * 4096]).split(4096).unwrap()])
            .unwrap();
    let (r, w) = pipe();
    bufs.read_fixed(&mut ring, r.as_raw_fd(), 2, 0..4096, u64::MAX).unwrap();
    ring.submit().unwrap();
    // Slots 0 and 1 of the region leave; their tags come, the region does not.
    bufs.replace(&mut ring, 0, CallerRegion::new(vec![0u8; 16])).unwrap();
    bufs.remove(&mut ring, 1).unwrap();
    let mut others = Vec::new();
    for _ in 0..2 {
        let ev = wait_tag_fixed(&mut ring, &mut bufs, &mut others);
        assert!(
            ev.released.is_none(),
            "register_memory(one Vec split in 3); read_fixed(slot 2, empty pipe); replace(0); remove(1): \
             the tag of slot {} released the whole Vec while the kernel still writes its third buffer",
            ev.index
        );
    }
    assert!(others.is_empty(), "no other CQE yet: {}", others.len());
    assert!(is_busy(&bufs.replace(&mut ring, 2, CallerRegion::new(vec![0u8; 16]))));
    assert!(is_busy(&bufs.remove(&mut ring, 2)));
    let data = pattern(4096, 9);
    File::from(w).write_all(&data).unwrap();
    let c = reap1(&mut ring);
    assert_eq!(bufs.handle_cqe(&c.cqe()).expect("the read").res, 4096);
    bufs.remove(&mut ring, 2).unwrap();
    let ev = wait_tag_fixed(&mut ring, &mut bufs, &mut others);
    let back: Vec<u8> = ev.released.expect("now the region").downcast().unwrap();
    assert_eq!(&back[8192..], &data[..], "the read landed in the region before it came back");
    assert_eq!(&back[..8192], &[0x11u8; 8192][..]);
}

// ---------------------------------------------------------------------
// 3. Dropping / forgetting the table, or dropping the ring first, with a
//    read in flight into caller memory.
// ---------------------------------------------------------------------

#[test]
fn a_dropped_fixed_table_with_a_read_in_flight_frees_no_memory_the_read_then_writes() {
    let mut ring = ring();
    let mut bufs = FixedBuffers::register_memory(&mut ring, vec![CallerRegion::new(vec![0u8; 4096])]).unwrap();
    let (r, w) = pipe();
    bufs.read_fixed(&mut ring, r.as_raw_fd(), 0, 0..4096, u64::MAX).unwrap();
    ring.submit().unwrap();
    drop(bufs);
    // Fresh allocations of the same size: one would take the Vec's memory
    // had the drop freed it.
    let c = canaries(4096, 0xC5);
    File::from(w).write_all(&[0x11u8; 4096]).unwrap();
    let cqe = reap1(&mut ring);
    assert_eq!(cqe.cqe().res(), 4096, "the read completed");
    assert!(
        canaries_intact(&c, 0xC5),
        "FixedBuffers::register_memory(Vec); read_fixed(slot 0, empty pipe); drop(table); allocate; write the \
         pipe: the kernel's read landed in a fresh allocation (the Vec was freed while the read was in flight)"
    );
    drop(ring);
}

#[test]
fn a_forgotten_fixed_table_with_a_send_in_flight_leaks_rather_than_frees() {
    let mut ring = ring();
    let data = pattern(4096, 1);
    let mut bufs = FixedBuffers::register_memory(&mut ring, vec![CallerRegion::new(data.clone())]).unwrap();
    let (client, server) = tcp_pair();
    bufs.send_fixed(&mut ring, client.as_raw_fd(), 0, 0..4096).unwrap();
    ring.submit().unwrap();
    // `mem::forget`, kept reachable from a static so that the leak
    // checker (CI runs this under LSan, nothing suppressed) sees no leak:
    // its `Drop` never runs all the same.
    static FORGOTTEN: std::sync::Mutex<Vec<std::mem::ManuallyDrop<FixedBuffers>>> = std::sync::Mutex::new(Vec::new());
    FORGOTTEN.lock().unwrap().push(std::mem::ManuallyDrop::new(bufs));
    let _c = canaries(4096, 0x3C);
    let got = common::drain(server, 4096).join().unwrap();
    assert_eq!(got, data, "the bytes sent are the Vec's, never freed memory's");
    let _ = reap(&mut ring, 2);
    drop(ring);
}

#[test]
fn dropping_the_ring_first_cancels_the_read_and_the_table_stays_busy() {
    let mut ring = ring();
    let mut bufs = FixedBuffers::register_memory(&mut ring, vec![CallerRegion::new(vec![0x77u8; 4096])]).unwrap();
    let (r, w) = pipe();
    bufs.read_fixed(&mut ring, r.as_raw_fd(), 0, 0..4096, u64::MAX).unwrap();
    ring.submit().unwrap();
    drop(ring);
    let mut w = File::from(w);
    w.write_all(b"after the ring closed").unwrap();
    assert_eq!(
        drain_pipe(&r),
        b"after the ring closed",
        "the cancelled read took nothing from the pipe (it cannot write the Vec any more)"
    );
    // The table never saw the read's CQE: it keeps the buffer busy, and a
    // new ring is refused.
    assert!(bufs.buffer_mut(0).is_err(), "drop(ring) with a read in flight; buffer_mut(0) lent the buffer");
    let mut other = common::ring();
    assert!(bufs.replace(&mut other, 0, CallerRegion::new(vec![0u8; 8])).is_err());
    assert!(bufs.read_fixed(&mut other, r.as_raw_fd(), 0, 0..1, 0).is_err());
    let bufs = bufs.into_inner().expect_err("a read whose CQE never came is still in flight");
    drop(bufs);
}

// ---------------------------------------------------------------------
// 4. Zero-copy sends from caller memory: busy until the notification.
// ---------------------------------------------------------------------

#[test]
fn a_zero_copy_send_from_caller_memory_keeps_it_until_the_notification() {
    let mut ring = ring();
    let data = pattern(8192, 4);
    let mut bufs = FixedBuffers::register_memory(
        &mut ring,
        vec![CallerRegion::new(data.clone()).split(4096).unwrap(), CallerRegion::new(vec![0u8; 64])],
    )
    .unwrap();
    let (client, server) = tcp_pair();
    let rx = common::drain(server, 8192);
    bufs.send_fixed(&mut ring, client.as_raw_fd(), 0, 0..4096).unwrap();
    bufs.sendmsg_fixed(&mut ring, client.as_raw_fd(), 1, &[2048..4096, 0..2048], None).unwrap();
    ring.submit().unwrap();
    let mut firsts = Vec::new();
    let mut notifs = Vec::new();
    let mut freed = 0;
    while freed < 2 {
        let c = reap1(&mut ring);
        let cq = c.cqe();
        // Before handling: a copy of every first CQE seen so far, replayed,
        // frees nothing; and the buffers stay unwritable.
        for f in &firsts {
            let f: &CqeSlot = f;
            assert!(
                bufs.handle_cqe(&f.cqe()).is_none(),
                "send_fixed/sendmsg_fixed on caller memory; the first CQE presented twice was taken again"
            );
        }
        let done = bufs.handle_cqe(&cq).expect("one of the sends' CQEs");
        if done.notification {
            notifs.push(c);
        } else {
            firsts.push(c);
        }
        if done.free {
            freed += 1;
            continue;
        }
        // Between the result and the notification.
        let i = done.index;
        assert!(bufs.buffer_mut(i).is_err(), "buffer_mut({i}) between a zero-copy send's result and notification");
        assert!(bufs.buffer(i).is_ok(), "readable while the kernel reads it");
        assert!(is_busy(&bufs.replace(&mut ring, i, CallerRegion::new(vec![0u8; 8]))), "replace({i})");
        assert!(is_busy(&bufs.remove(&mut ring, i)), "remove({i})");
        assert!(is_busy(&bufs.clear(&mut ring)), "clear");
    }
    // Every replay after the end frees nothing either.
    for c in firsts.iter().chain(notifs.iter()) {
        assert!(bufs.handle_cqe(&c.cqe()).is_none());
    }
    // Both idle: the region leaves, and comes back whole after its tags.
    bufs.buffer_mut(0).unwrap();
    bufs.buffer_mut(1).unwrap();
    bufs.remove(&mut ring, 0).unwrap();
    bufs.remove(&mut ring, 1).unwrap();
    let mut others = Vec::new();
    let mut back = None;
    for _ in 0..2 {
        if let Some(r) = wait_tag_fixed(&mut ring, &mut bufs, &mut others).released {
            back = Some(r);
        }
    }
    let back: Vec<u8> = back.expect("the region").downcast().unwrap();
    assert_eq!(back, data);
    let got = rx.join().unwrap();
    let mut want = data[..4096].to_vec();
    want.extend_from_slice(&data[4096 + 2048..]);
    want.extend_from_slice(&data[4096..4096 + 2048]);
    assert_eq!(got.len(), 8192);
    // Sends on one socket from two SQEs: order follows submission order.
    assert_eq!(got, want, "the bytes sent are those of the caller memory, unmodified");
}

#[test]
fn a_previous_sends_notification_does_not_complete_the_next_send_on_the_same_buffer() {
    let mut ring = ring();
    let mut bufs = FixedBuffers::register_memory(&mut ring, vec![CallerRegion::new(pattern(4096, 8))]).unwrap();
    let (client, server, queued) = common::blocked_pair();
    let (client2, server2) = tcp_pair();
    let rx2 = common::drain(server2, 4096);
    // Send 1 completes fully (result + notification), on a free socket.
    bufs.send_fixed(&mut ring, client2.as_raw_fd(), 0, 0..4096).unwrap();
    ring.submit().unwrap();
    let mut old = Vec::new();
    loop {
        let c = reap1(&mut ring);
        old.push(c);
        if bufs.handle_cqe(&c.cqe()).expect("send 1").free {
            break;
        }
    }
    assert_eq!(rx2.join().unwrap(), pattern(4096, 8));
    // Send 2 on a socket that cannot take a byte: it stays in flight.
    bufs.send_fixed(&mut ring, client.as_raw_fd(), 0, 0..4096).unwrap();
    ring.submit().unwrap();
    for c in &old {
        let d = bufs.handle_cqe(&c.cqe());
        assert!(
            d.is_none(),
            "send_fixed(slot 0) completed; send_fixed(slot 0) again on a full socket; the first send's {} CQE, \
             presented again, was taken as the second's: {d:?}",
            if c.cqe().notif() { "notification" } else { "result" }
        );
    }
    assert!(bufs.buffer_mut(0).is_err(), "send 2 in flight");
    assert!(is_busy(&bufs.replace(&mut ring, 0, CallerRegion::new(vec![0u8; 8]))));
    // Unblock and finish send 2: its own two CQEs free the buffer.
    let rx = common::drain(server, queued + 4096);
    let mut freed = false;
    for _ in 0..4 {
        let Some(c) = try_reap(&mut ring, 3000) else { break };
        if let Some(d) = bufs.handle_cqe(&c.cqe())
            && d.free
        {
            freed = true;
            break;
        }
    }
    assert!(freed, "send 2 completed with its own CQEs");
    let got = rx.join().unwrap();
    assert_eq!(&got[queued..], &pattern(4096, 8)[..], "send 2 sent the buffer's bytes, unmodified");
    drop(client);
}

#[test]
fn plain_fixed_send_is_refused_on_this_kernel_or_holds_the_buffer_until_its_cqe() {
    let mut ring = ring();
    let mut bufs = FixedBuffers::register_memory(&mut ring, vec![CallerRegion::new(pattern(512, 2))]).unwrap();
    let (client, server) = tcp_pair();
    match bufs.send(&mut ring, client.as_raw_fd(), 0, 0..512) {
        Err(e) => {
            assert!(bufs.buffer_mut(0).is_ok(), "a refused send leaves the buffer idle: {e}");
        }
        Ok(_) => {
            ring.submit().unwrap();
            assert!(bufs.buffer_mut(0).is_err(), "the plain send holds the buffer until its CQE");
            let c = reap1(&mut ring);
            assert!(bufs.handle_cqe(&c.cqe()).unwrap().free);
            assert!(bufs.handle_cqe(&c.cqe()).is_none());
            assert_eq!(common::drain(server, 512).join().unwrap(), pattern(512, 2));
        }
    }
}

// ---------------------------------------------------------------------
// 5. Edges: ranges, indices, short last chunks, the u16 index in the SQE.
// ---------------------------------------------------------------------

#[test]
fn edge_ranges_and_indices_are_refused_or_stay_inside_the_buffer() {
    let mut ring = ring();
    // A 100-byte Vec split into 64 + 36: the second buffer is short.
    let mut bufs =
        FixedBuffers::register_memory(&mut ring, vec![CallerRegion::new(vec![0xEEu8; 100]).split(64).unwrap()])
            .unwrap();
    assert_eq!(bufs.buffer(1).unwrap().len(), 36);
    let (r, w) = pipe();
    let mut w = File::from(w);
    w.write_all(&[0x01u8; 200]).unwrap();
    // Empty ranges at both edges: allowed, and read nothing.
    for (i, range) in [(0u32, 0..0), (0, 64..64), (1, 36..36), (1, 0..0)] {
        bufs.read_fixed(&mut ring, r.as_raw_fd(), i, range.clone(), u64::MAX).unwrap();
        let c = reap1(&mut ring);
        let d = bufs.handle_cqe(&c.cqe()).unwrap();
        assert_eq!(d.res, 0, "an empty read {i}:{range:?}");
    }
    assert_eq!(bufs.buffer(0).unwrap(), &[0xEEu8; 64][..]);
    assert_eq!(bufs.buffer(1).unwrap(), &[0xEEu8; 36][..]);
    // Out of the buffer, reversed, overflowing.
    #[allow(clippy::reversed_empty_ranges)]
    let bad: [(u32, std::ops::Range<usize>); 9] = [
        (0, 0..65),
        (0, 65..65),
        (1, 0..37),
        (1, 37..37),
        (1, 30..20),
        (0, usize::MAX - 1..usize::MAX),
        (0, 1..usize::MAX),
        (1, 36..usize::MAX),
        (0, usize::MAX..0),
    ];
    for (i, range) in bad {
        assert!(bufs.read_fixed(&mut ring, r.as_raw_fd(), i, range.clone(), 0).is_err(), "read {i}:{range:?}");
        assert!(bufs.write_fixed(&mut ring, r.as_raw_fd(), i, range.clone(), 0).is_err(), "write {i}:{range:?}");
        assert!(bufs.readv_fixed(&mut ring, r.as_raw_fd(), i, &[0..1, range.clone()], 0).is_err());
        assert!(bufs.chain(i).read(r.as_raw_fd(), range.clone(), 0).queue(&mut ring).is_err());
    }
    // Indices outside the table, including those that truncate to 0 as u16.
    for i in [2u32, 65535, 65536, 65537, u32::MAX] {
        assert!(bufs.read_fixed(&mut ring, r.as_raw_fd(), i, 0..1, 0).is_err(), "read_fixed({i})");
        assert!(bufs.send_fixed(&mut ring, r.as_raw_fd(), i, 0..1).is_err(), "send_fixed({i})");
        assert!(bufs.replace(&mut ring, i, CallerRegion::new(vec![0u8; 1])).is_err(), "replace({i})");
        assert!(bufs.remove(&mut ring, i).is_err(), "remove({i})");
        assert!(bufs.install(&mut ring, i, 64).is_err(), "install({i})");
        assert!(bufs.buffer(i).is_err() && bufs.buffer_mut(i).is_err());
    }
    assert!(try_reap(&mut ring, 20).is_none(), "nothing was queued");
    // The short last buffer: a full read lands in bytes 64..100 of the Vec.
    bufs.read_fixed(&mut ring, r.as_raw_fd(), 1, 0..36, u64::MAX).unwrap();
    let c = reap1(&mut ring);
    assert_eq!(bufs.handle_cqe(&c.cqe()).unwrap().res, 36);
    bufs.clear(&mut ring).unwrap();
    let mut others = Vec::new();
    let mut back = None;
    for _ in 0..2 {
        if let Some(r) = wait_tag_fixed(&mut ring, &mut bufs, &mut others).released {
            back = Some(r);
        }
    }
    let back: Vec<u8> = back.unwrap().downcast().unwrap();
    assert_eq!(&back[..64], &[0xEEu8; 64][..], "the first buffer untouched");
    assert_eq!(&back[64..], &[0x01u8; 36][..], "the second filled exactly");
    assert_eq!(back.len(), 100);
}

#[test]
fn a_full_sparse_table_refuses_indices_that_would_wrap_to_slot_0() {
    let mut ring = ring();
    let max = uring_buffers::registered::MAX_BUFFERS;
    let mut bufs = FixedBuffers::sparse(&mut ring, max).unwrap();
    bufs.replace(&mut ring, 0, CallerRegion::new(vec![0x42u8; 64])).unwrap();
    bufs.replace(&mut ring, max - 1, CallerRegion::new(vec![0x43u8; 64])).unwrap();
    let (r, w) = pipe();
    File::from(w).write_all(&[9u8; 64]).unwrap();
    for i in [max, 65535, 65536, 65536 + 1, 2 * 65536] {
        assert!(bufs.read_fixed(&mut ring, r.as_raw_fd(), i, 0..64, u64::MAX).is_err(), "read_fixed({i})");
        assert!(bufs.chain(i).read(r.as_raw_fd(), 0..64, u64::MAX).queue(&mut ring).is_err());
    }
    assert!(try_reap(&mut ring, 20).is_none());
    assert_eq!(bufs.buffer(0).unwrap(), &[0x42u8; 64][..], "slot 0 unchanged");
    bufs.read_fixed(&mut ring, r.as_raw_fd(), max - 1, 0..64, u64::MAX).unwrap();
    let c = reap1(&mut ring);
    assert_eq!(bufs.handle_cqe(&c.cqe()).unwrap().res, 64);
    assert_eq!(bufs.buffer(max - 1).unwrap(), &[9u8; 64][..], "the last slot took the read");
    assert_eq!(bufs.buffer(0).unwrap(), &[0x42u8; 64][..], "slot 0 unchanged");
    assert!(bufs.replace(&mut ring, max - 1, CallerRegion::new(vec![0u8; 128]).split(64).unwrap()).is_err());
}

// ---------------------------------------------------------------------
// 6. Tags: replayed after the same allocation is registered again, from
//    another table on the same ring, from another ring with reused fds.
// ---------------------------------------------------------------------

#[test]
fn an_old_tag_replayed_after_the_same_memory_is_registered_again_releases_nothing() {
    let mut ring = ring();
    let mut bufs = FixedBuffers::register_memory(&mut ring, vec![CallerRegion::new(vec![1u8; 4096])]).unwrap();
    bufs.replace(&mut ring, 0, CallerRegion::new(vec![2u8; 4096])).unwrap();
    let mut others = Vec::new();
    let first = reap1(&mut ring);
    let ev = bufs.handle_tag(&first.cqe()).expect("the tag");
    let v: Vec<u8> = ev.released.unwrap().downcast().unwrap();
    let addr = v.as_ptr() as usize;
    // The same allocation goes back in, in slot 0 again.
    bufs.replace(&mut ring, 0, CallerRegion::new(v)).unwrap();
    assert_eq!(bufs.buffer(0).unwrap().as_ptr() as usize, addr);
    // Slot 0's previous buffer (the 2s) has a tag pending now; the
    // old tag CQE, replayed, must release neither.
    assert!(bufs.handle_tag(&first.cqe()).is_none(), "the old tag replayed after re-registering its memory");
    let ev = wait_tag_fixed(&mut ring, &mut bufs, &mut others);
    assert!(ev.released.unwrap().downcast::<Vec<u8>>().unwrap().iter().all(|&b| b == 2));
    assert!(bufs.handle_tag(&first.cqe()).is_none());
    // The re-registered Vec is still in the table and usable.
    let (r, w) = pipe();
    File::from(w).write_all(&[7u8; 4096]).unwrap();
    bufs.read_fixed(&mut ring, r.as_raw_fd(), 0, 0..4096, u64::MAX).unwrap();
    let c = reap1(&mut ring);
    assert_eq!(bufs.handle_cqe(&c.cqe()).unwrap().res, 4096);
    assert_eq!(bufs.buffer(0).unwrap(), &[7u8; 4096][..]);
}

#[test]
fn tags_of_an_earlier_table_on_the_same_ring_release_nothing_from_the_next() {
    let mut ring = ring();
    let mut t1 = FixedBuffers::register_memory(&mut ring, vec![CallerRegion::new(vec![1u8; 64])]).unwrap();
    t1.replace(&mut ring, 0, CallerRegion::new(vec![2u8; 64])).unwrap();
    let t1_tag = reap1(&mut ring);
    // Do not hand it to t1. Tear t1 down (clear: a second tag, kept too).
    t1.clear(&mut ring).unwrap();
    let t1_tag2 = reap1(&mut ring);
    t1.into_inner().unwrap().unregister(&mut ring).unwrap();
    // A new table on the same ring, and its own replace pending.
    let mut t2 = FixedBuffers::register_memory(&mut ring, vec![CallerRegion::new(vec![3u8; 64])]).unwrap();
    t2.replace(&mut ring, 0, CallerRegion::new(vec![4u8; 64])).unwrap();
    for c in [t1_tag, t1_tag2] {
        assert!(
            t2.handle_tag(&c.cqe()).is_none(),
            "register_memory; replace; clear; unregister; register_memory again on the same ring: the first \
             table's tag released memory of the second"
        );
    }
    let mut others = Vec::new();
    let ev = wait_tag_fixed(&mut ring, &mut t2, &mut others);
    assert_eq!(ev.released.unwrap().downcast::<Vec<u8>>().unwrap(), vec![3u8; 64]);
}

#[test]
fn forged_tags_by_msg_ring_are_refused_before_any_cqe() {
    let mut a = ring();
    let mut b = ring();
    let mut bufs = RegisteredBuffers::register_memory(&mut a, vec![CallerRegion::new(vec![5u8; 64])]).unwrap();
    bufs.replace(&mut a, 0, CallerRegion::new(vec![6u8; 64])).unwrap();
    let tag = reap1(&mut a);
    let tag_ud = tag.cqe().user_data();
    // Hold the tag back; try to forge it from ring B into ring A.
    assert!(b.push_op(SqeContext::token(1).unwrap(), MsgRing::new(a.as_raw_fd(), tag_ud, 0)).is_err());
    assert!(b.push_op(SqeContext::token(1).unwrap(), MsgRing::new(a.as_raw_fd(), tag_ud, 0).cqe_flags(0)).is_err());
    assert!(MsgRing::new(a.as_raw_fd(), tag_ud, 0).send_without_ring().is_err());
    assert!(a.register().files_sparse(2).is_ok());
    let (r, _w) = pipe();
    assert!(a.register().files_update_tagged(0, &[r.as_raw_fd()], &[tag_ud]).is_err(), "file tag = buffer tag");
    // A tag from ring B's own table, presented to A's: nothing.
    let mut bb = RegisteredBuffers::register_memory(&mut b, vec![CallerRegion::new(vec![7u8; 64])]).unwrap();
    bb.remove(&mut b, 0).unwrap();
    let b_tag = reap1(&mut b);
    assert!(bufs.handle_tag(&b_tag.cqe()).is_none());
    assert!(bb.handle_tag(&b_tag.cqe()).unwrap().released.is_some());
    assert!(try_reap(&mut a, 20).is_none(), "nothing was posted to A");
    assert_eq!(bufs.handle_tag(&tag.cqe()).unwrap().released.unwrap().downcast::<Vec<u8>>().unwrap(), vec![5u8; 64]);
}

#[test]
fn tables_on_two_rings_of_different_sizes_and_a_reused_fd_stay_apart() {
    let mut r1 = ring();
    let mut r2 = ring();
    let mut a =
        FixedBuffers::register_memory(&mut r1, vec![CallerRegion::new(vec![1u8; 64]).split(32).unwrap()]).unwrap();
    let mut b =
        FixedBuffers::register_memory(&mut r2, vec![CallerRegion::new(vec![2u8; 128]).split(32).unwrap()]).unwrap();
    let (p, w) = pipe();
    let mut w = File::from(w);
    // A's table on ring 2: slot 1 there is B's memory.
    assert!(a.read_fixed(&mut r2, p.as_raw_fd(), 1, 0..32, u64::MAX).is_err());
    assert!(a.replace(&mut r2, 0, CallerRegion::new(vec![0u8; 8])).is_err());
    assert!(b.read_fixed(&mut r1, p.as_raw_fd(), 3, 0..32, u64::MAX).is_err());
    // B's read on its slot 1, whose CQE A would decode as its own slot 1.
    w.write_all(&[9u8; 32]).unwrap();
    b.read_fixed(&mut r2, p.as_raw_fd(), 1, 0..32, u64::MAX).unwrap();
    let c = reap1(&mut r2);
    a.read_fixed(&mut r1, p.as_raw_fd(), 1, 0..32, u64::MAX).unwrap();
    r1.submit().unwrap();
    assert!(a.handle_cqe(&c.cqe()).is_none(), "ring 2's CQE completed ring 1's read on slot 1");
    assert!(a.buffer(1).is_err());
    assert_eq!(b.handle_cqe(&c.cqe()).unwrap().res, 32);
    // Close ring 1 (its read cancelled); a new ring most likely reuses its fd.
    let fd1 = r1.as_raw_fd();
    drop(r1);
    let mut r3 = ring();
    let reused = r3.as_raw_fd() == fd1;
    assert!(a.read_fixed(&mut r3, p.as_raw_fd(), 0, 0..32, u64::MAX).is_err(), "fd reused: {reused}");
    assert!(a.replace(&mut r3, 0, CallerRegion::new(vec![0u8; 8])).is_err());
    assert!(a.remove(&mut r3, 0).is_err());
    assert!(a.clear(&mut r3).is_err());
    let mut t3 = FixedBuffers::register_memory(&mut r3, vec![CallerRegion::new(vec![3u8; 64])]).unwrap();
    t3.remove(&mut r3, 0).unwrap();
    let t3_tag = reap1(&mut r3);
    assert!(a.handle_tag(&t3_tag.cqe()).is_none());
    assert!(b.handle_tag(&t3_tag.cqe()).is_none());
    assert!(t3.handle_tag(&t3_tag.cqe()).unwrap().released.is_some());
}

// ---------------------------------------------------------------------
// 7. Clones: caller memory never reaches another ring's table.
// ---------------------------------------------------------------------

#[test]
fn caller_memory_never_reaches_a_clone_and_a_kept_slot_keeps_its_tag() {
    let mut a = ring();
    let mut b = ring();
    let mut c = ring();
    let mut x = RegisteredBuffers::register(&mut a, 2, 4096).unwrap();
    let mut y = x.clone_range_into(&a, &mut b, 0..2, 0).unwrap();
    assert!(x.is_shared(0) && y.is_shared(0));
    // Caller memory into A's slot 0: it may not go to another ring by any clone.
    x.replace(&mut a, 0, CallerRegion::new(vec![0xA1u8; 4096])).unwrap();
    assert!(x.clone_into(&a, &mut c).is_err());
    assert!(x.clone_range_into(&a, &mut c, 0..1, 0).is_err());
    assert!(x.clone_range_into(&a, &mut c, 0..2, 5).is_err());
    assert!(x.clone_range_replace(&a, &mut y, &mut b, 0..1, 1).is_err());
    assert!(x.clone_range_replace(&a, &mut y, &mut b, 0..2, 0).is_err());
    // A range that excludes it is fine (library memory of slot 1).
    let z = x.clone_range_into(&a, &mut c, 1..2, 0).unwrap();
    drop(z);
    // Ring B's slot 0 is no longer shared with A's (replaced there): writable.
    assert!(!y.is_shared(0));
    assert!(y.buffer_mut(0).is_some());
    // Caller memory into B's slot 0, then clone A's slot 1 over B's slot 1
    // (dst_off 1): B's slot 0, before the range, is kept by the kernel.
    y.replace(&mut b, 0, CallerRegion::new(vec![0xB0u8; 4096])).unwrap();
    assert!(x.clone_range_replace(&a, &mut y, &mut b, 1..2, 0).is_err(), "over B's caller slot 0");
    x.clone_range_replace(&a, &mut y, &mut b, 1..2, 1).unwrap();
    assert!(y.is_caller_memory(0));
    // Drain: tags of the replaced buffers (A's and B's library slot 0s
    // leave no tags; none of caller memory is due yet on B).
    let mut early = Vec::new();
    while let Some(cq) = try_reap(&mut b, 50) {
        early.push(cq);
    }
    for cq in &early {
        assert!(y.handle_tag(&cq.cqe()).is_none(), "a tag on B before B's caller slot left its table");
    }
    // B's slot 0 still names the caller Vec in the kernel: a raw read
    // through ring B lands in it.
    let (p, w) = pipe();
    File::from(w).write_all(&[0x5Bu8; 16]).unwrap();
    let (addr, _) = y.raw_parts(0).unwrap();
    // SAFETY: observation: addr..addr+16 lies in y's slot 0, caller memory
    // parked in y's vault (alive while y lives), no slice of it is out.
    let res = unsafe { raw_read_fixed_result(&mut b, p.as_raw_fd(), addr, 16, 0) };
    assert_eq!(res, 16, "B's slot 0 kept its caller memory through the replacing clone");
    assert_eq!(&y.buffer(0).unwrap()[..16], &[0x5Bu8; 16][..]);
    // Its tag comes when it leaves, and only then.
    y.remove(&mut b, 0).unwrap();
    let ev = wait_tag_reg(&mut b, &mut y);
    let back: Vec<u8> = ev.released.unwrap().downcast().unwrap();
    assert_eq!(&back[..16], &[0x5Bu8; 16][..]);
    // And ring B cannot reach it any more.
    let (p2, w2) = pipe();
    File::from(w2).write_all(&[0xEEu8; 16]).unwrap();
    let mut probe = vec![0u8; 16];
    // SAFETY: observation: `probe` is alive through the call; a kernel that
    // still had the old Vec in slot 0 would refuse this address (outside it).
    let res = unsafe { raw_read_fixed_result(&mut b, p2.as_raw_fd(), probe.as_mut_ptr(), 16, 0) };
    assert!(res < 0, "B's slot 0 is empty after remove: {res}");
    assert!(back[..16].iter().all(|&x| x == 0x5B), "the released Vec untouched");
    // A's caller slot 0 goes back the same way.
    x.remove(&mut a, 0).unwrap();
    let ev = wait_tag_reg(&mut a, &mut x);
    assert_eq!(ev.released.unwrap().downcast::<Vec<u8>>().unwrap(), vec![0xA1u8; 4096]);
}

#[test]
fn a_removed_caller_slot_with_its_tag_pending_clones_as_empty() {
    let mut a = ring();
    let mut b = ring();
    let mut x = RegisteredBuffers::sparse(&mut a, 2).unwrap();
    x.install(&mut a, 1, 4096).unwrap();
    x.replace(&mut a, 0, CallerRegion::new(vec![0x99u8; 4096])).unwrap();
    x.remove(&mut a, 0).unwrap();
    // The tag is posted (nothing used the buffer) but not handed over yet.
    let tag = reap1(&mut a);
    let y = x.clone_range_into(&a, &mut b, 0..2, 0).unwrap();
    assert!(!y.is_installed(0));
    let back: Vec<u8> = x.handle_tag(&tag.cqe()).unwrap().released.unwrap().downcast().unwrap();
    let addr = back.as_ptr() as *mut u8;
    let (p, w) = pipe();
    File::from(w).write_all(&[0x01u8; 16]).unwrap();
    // SAFETY: observation: the address is the released Vec's, alive
    // through the call; a kernel that cloned it into B would write it.
    let res = unsafe { raw_read_fixed_result(&mut b, p.as_raw_fd(), addr, 16, 0) };
    assert!(res < 0, "B's slot 0 names no memory: {res}");
    assert!(back.iter().all(|&x| x == 0x99), "the released Vec untouched by ring B");
    drop(y);
}

// ---------------------------------------------------------------------
// 8. Stop of the ring with tags pending; a Mapping region back intact.
// ---------------------------------------------------------------------

#[test]
fn stopping_the_ring_with_tags_pending_keeps_the_memory_parked_not_freed() {
    let mut ring = ring();
    let m = Mapping::anonymous(8192, false).unwrap();
    let maddr = m.ptr() as usize;
    let mut bufs = FixedBuffers::register_memory(
        &mut ring,
        vec![CallerRegion::new(m).split(4096).unwrap(), CallerRegion::new(vec![0x10u8; 4096])],
    )
    .unwrap();
    let (p, w) = pipe();
    File::from(w).write_all(&[0x33u8; 4096]).unwrap();
    bufs.read_fixed(&mut ring, p.as_raw_fd(), 1, 0..4096, u64::MAX).unwrap();
    let c = reap1(&mut ring);
    assert_eq!(bufs.handle_cqe(&c.cqe()).unwrap().res, 4096);
    bufs.remove(&mut ring, 0).unwrap();
    bufs.remove(&mut ring, 2).unwrap();
    // The tags are posted but lost with the stop.
    ring.stop();
    let lost = CqeSlot::EMPTY;
    assert!(bufs.handle_tag(&lost.cqe()).is_none());
    assert!(bufs.replace(&mut ring, 0, CallerRegion::new(vec![0u8; 8])).is_err(), "stopped");
    // The slot still in the table is readable, with the kernel's bytes,
    // its memory alive (ASan: no use after free).
    assert_eq!(bufs.buffer(1).unwrap(), &[0x33u8; 4096][..]);
    assert_eq!(bufs.buffer(1).unwrap().as_ptr() as usize, maddr + 4096);
    drop(ring);
    assert_eq!(bufs.buffer(1).unwrap(), &[0x33u8; 4096][..], "after the ring closed, still the table's");
    drop(bufs);
}

// ---------------------------------------------------------------------
// 9. Failure modes of zero-copy fixed sends: the library frees the buffer
//    on a result without F_MORE; a notification the kernel posts after
//    such a result would later complete the *next* send on the buffer.
//    So: a notification comes iff the result had F_MORE, and the buffer is
//    idle only after the last CQE.
// ---------------------------------------------------------------------

/// Collects every CQE of the operation just submitted: the first, then
/// whatever follows within `ms`.
fn all_cqes(ring: &mut Ring, ms: u64) -> Vec<CqeSlot> {
    let mut v = vec![reap1(ring)];
    while let Some(c) = try_reap(ring, ms) {
        v.push(c);
    }
    v
}

#[test]
fn every_failing_fixed_zero_copy_send_posts_a_notification_iff_its_result_says_more() {
    let mut ring = ring();
    ring.register().files_sparse(4).unwrap();
    let mut bufs = FixedBuffers::register_memory(&mut ring, vec![CallerRegion::new(pattern(4096, 6))]).unwrap();
    let (_pr, pw) = pipe();
    // SAFETY: plain socket(2) calls; the fds are wrapped in OwnedFd.
    let unconnected_tcp = unsafe { OwnedFd::from_raw_fd(libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0)) };
    // SAFETY: as above.
    let unconnected_udp = unsafe { OwnedFd::from_raw_fd(libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0)) };
    let (shut, _shut_peer) = tcp_pair();
    shut.shutdown(std::net::Shutdown::Write).unwrap();
    let (ok_c, ok_s) = tcp_pair();
    let _rx = common::drain(ok_s, 4096);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let cases: Vec<(&str, uring_ops::Target, bool, std::ops::Range<usize>)> = vec![
        ("pipe (ENOTSOCK)", uring_ops::Target::Fd(pw.as_raw_fd()), false, 0..4096),
        ("closed fd (EBADF)", uring_ops::Target::Fd(4000), false, 0..4096),
        ("empty fixed file slot", uring_ops::Target::Fixed(2), false, 0..4096),
        ("fixed file slot outside the table", uring_ops::Target::Fixed(100), false, 0..4096),
        ("unconnected TCP", uring_ops::Target::Fd(unconnected_tcp.as_raw_fd()), false, 0..4096),
        ("unconnected UDP, no destination", uring_ops::Target::Fd(unconnected_udp.as_raw_fd()), false, 0..4096),
        ("TCP shut down for writing", uring_ops::Target::Fd(shut.as_raw_fd()), false, 0..4096),
        ("listening socket", uring_ops::Target::Fd(listener.as_raw_fd()), false, 0..4096),
        ("empty range", uring_ops::Target::Fd(ok_c.as_raw_fd()), false, 0..0),
        ("sendmsg: pipe", uring_ops::Target::Fd(pw.as_raw_fd()), true, 0..4096),
        ("sendmsg: closed fd", uring_ops::Target::Fd(4000), true, 0..4096),
        ("sendmsg: empty fixed slot", uring_ops::Target::Fixed(2), true, 0..4096),
        ("sendmsg: unconnected UDP", uring_ops::Target::Fd(unconnected_udp.as_raw_fd()), true, 0..4096),
    ];
    let mut report = Vec::new();
    for (name, target, msg, range) in cases {
        let queued = if msg {
            bufs.sendmsg_fixed(&mut ring, target, 0, std::slice::from_ref(&range), None)
        } else {
            bufs.send_fixed(&mut ring, target, 0, range.clone())
        };
        let Ok(_id) = queued else {
            report.push(format!("{name}: refused before queuing"));
            assert!(bufs.buffer_mut(0).is_ok());
            continue;
        };
        ring.submit().unwrap();
        let cqes = all_cqes(&mut ring, 300);
        let first = cqes[0].cqe();
        let notifs = cqes.iter().filter(|c| c.cqe().notif()).count();
        report.push(format!("{name}: res {} more {} cqes {} notifs {notifs}", first.res(), first.more(), cqes.len()));
        assert_eq!(
            notifs,
            usize::from(first.more()),
            "FixedBuffers::send{}_fixed to {name}: the result (res {}, F_MORE {}) was followed by {notifs} \
             notification(s): a notification after a result without F_MORE reaches the next send on the buffer",
            if msg { "msg" } else { "" },
            first.res(),
            first.more()
        );
        // The library: idle exactly after the last CQE.
        for (k, c) in cqes.iter().enumerate() {
            let d = bufs.handle_cqe(&c.cqe()).unwrap_or_else(|| panic!("{name}: CQE {k} not the send's"));
            assert_eq!(d.free, k + 1 == cqes.len(), "{name}: CQE {k} of {}: free {}", cqes.len(), d.free);
        }
        assert!(bufs.buffer_mut(0).is_ok(), "{name}: idle after its CQEs");
    }
    eprintln!("{}", report.join("\n"));
}

#[test]
fn a_cancelled_fixed_zero_copy_send_still_holds_the_buffer_until_its_notification() {
    let mut ring = ring();
    let data = pattern(4096, 12);
    let mut bufs = FixedBuffers::register_memory(&mut ring, vec![CallerRegion::new(data.clone())]).unwrap();
    let (client, server, queued) = common::blocked_pair();
    let id = bufs.send_fixed(&mut ring, client.as_raw_fd(), 0, 0..4096).unwrap();
    ring.submit().unwrap();
    assert!(try_reap(&mut ring, 50).is_none(), "the send waits for room");
    let n = ring.register().sync_cancel(uring_core::CancelTarget::UserData(id.user_data()), true, None).unwrap();
    let cqes = all_cqes(&mut ring, 300);
    let first = cqes[0].cqe();
    eprintln!("cancelled {n}: res {} more {} cqes {}", first.res(), first.more(), cqes.len());
    let notifs = cqes.iter().filter(|c| c.cqe().notif()).count();
    assert_eq!(notifs, usize::from(first.more()), "cancel: notification iff F_MORE");
    for (k, c) in cqes.iter().enumerate() {
        let d = bufs.handle_cqe(&c.cqe()).unwrap();
        assert_eq!(d.free, k + 1 == cqes.len());
    }
    // Whatever went out is the buffer's bytes.
    let rx = common::drain(server, queued + 4096);
    drop(client);
    let got = rx.join().unwrap();
    assert!(got.len() >= queued);
    let sent = &got[queued..];
    assert_eq!(sent, &data[..sent.len()]);
}

// ---------------------------------------------------------------------
// 10. Positions across a resize and a forgotten pass: copies of an earlier
//     operation's CQEs do not complete the next one on the same buffer.
// ---------------------------------------------------------------------

#[test]
fn a_resize_between_two_reads_on_one_buffer_does_not_let_the_first_cqe_complete_the_second() {
    let mut ring = Ring::new(uring_core::Options::default().entries(8).defer_taskrun(true)).unwrap();
    ring.start().unwrap();
    let mut bufs = FixedBuffers::register_memory(&mut ring, vec![CallerRegion::new(vec![0u8; 64])]).unwrap();
    let (r, w) = pipe();
    let mut w = File::from(w);
    w.write_all(b"one").unwrap();
    bufs.read_fixed(&mut ring, r.as_raw_fd(), 0, 0..64, u64::MAX).unwrap();
    ring.submit().unwrap();
    std::thread::sleep(Duration::from_millis(20));
    // Its CQE is still in the CQ when the ring is resized.
    match ring.resize(16, 64) {
        Ok(()) => {}
        Err(e) => {
            eprintln!("SKIPPED: resize refused: {e}");
            return;
        }
    }
    let c1 = reap1(&mut ring);
    assert_eq!(bufs.handle_cqe(&c1.cqe()).expect("read 1").res, 3);
    ring.resize(32, 128).unwrap();
    bufs.read_fixed(&mut ring, r.as_raw_fd(), 0, 0..64, u64::MAX).unwrap();
    ring.submit().unwrap();
    assert!(
        bufs.handle_cqe(&c1.cqe()).is_none(),
        "read_fixed(0); resize; reap; read_fixed(0) again; the first read's CQE copy completed the second"
    );
    assert!(bufs.buffer_mut(0).is_err());
    w.write_all(b"two").unwrap();
    let c2 = reap1(&mut ring);
    assert_eq!(bufs.handle_cqe(&c2.cqe()).expect("read 2").res, 3);
    assert_eq!(&bufs.buffer(0).unwrap()[..3], b"two");
}

#[test]
fn a_forgotten_pass_that_saw_a_sends_result_does_not_replay_it_as_the_notification() {
    let mut ring = ring();
    let mut bufs = FixedBuffers::register_memory(&mut ring, vec![CallerRegion::new(pattern(4096, 5))]).unwrap();
    let (client, server) = tcp_pair();
    let rx = common::drain(server, 4096);
    bufs.send_fixed(&mut ring, client.as_raw_fd(), 0, 0..4096).unwrap();
    ring.submit_and_wait(1).unwrap();
    let mut seen = 0;
    {
        let mut pass = ring.completions().unwrap();
        if let Some(c) = pass.next() {
            let d = bufs.handle_cqe(&c).expect("the send's result");
            seen += 1;
            if d.free {
                // Result and notification in one go is impossible (F_MORE).
                panic!("the send's result freed the buffer");
            }
        }
        std::mem::forget(pass);
    }
    assert_eq!(seen, 1);
    // Whatever comes next, the buffer is free only with the notification.
    let mut freed_by_notif = false;
    for _ in 0..4 {
        let Some(c) = try_reap(&mut ring, 1000) else { break };
        let cq = c.cqe();
        if let Some(d) = bufs.handle_cqe(&cq) {
            assert!(
                !d.free || cq.notif(),
                "send_fixed; a Completions pass handled the result and was forgotten; the next pass showed a \
                 non-notification CQE that freed the buffer (res {}, notif {})",
                cq.res(),
                cq.notif()
            );
            if d.free {
                freed_by_notif = true;
                break;
            }
        }
    }
    assert!(freed_by_notif);
    assert_eq!(rx.join().unwrap(), pattern(4096, 5));
}

// ---------------------------------------------------------------------
// 11. A zero-copy send whose result is in but whose notification is not
//     (the bytes sit in a TCP write queue behind a closed window): the
//     send request itself is over, so stopping the ring finds nothing to
//     cancel. Does the caller's memory outlive the kernel's use of it?
// ---------------------------------------------------------------------

fn setsockopt_int(fd: i32, opt: i32, v: i32) {
    // SAFETY: setsockopt reads one int.
    let r = unsafe {
        libc::setsockopt(fd, libc::SOL_SOCKET, opt, (&raw const v).cast(), size_of::<i32>() as libc::socklen_t)
    };
    assert_eq!(r, 0, "setsockopt {opt}: {}", std::io::Error::last_os_error());
}

/// A loopback pair whose receiver has a tiny window and whose sender has a
/// large send buffer already holding `filler` bytes the receiver has no
/// room for: a send now completes at once, and its bytes stay queued (not
/// transmitted, so a zero-copy send's pages stay referenced) until the
/// receiver reads.
fn stalled_pair(filler: usize) -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    setsockopt_int(l.as_raw_fd(), libc::SO_RCVBUF, 4096);
    let s = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (r, _) = l.accept().unwrap();
    setsockopt_int(r.as_raw_fd(), libc::SO_RCVBUF, 4096);
    setsockopt_int(s.as_raw_fd(), libc::SO_SNDBUFFORCE, 16 << 20);
    s.set_nonblocking(true).unwrap();
    let mut queued = 0;
    let chunk = vec![b'.'; 65536];
    while queued < filler {
        match (&s).write(&chunk[..(filler - queued).min(chunk.len())]) {
            Ok(n) => queued += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                panic!("the send buffer filled at {queued} bytes")
            }
            Err(e) => panic!("{e}"),
        }
    }
    s.set_nonblocking(false).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    (s, r)
}

fn zero_copy_send_then_close(order: &str, msg: bool) {
    const LEN: usize = 16384;
    const FILLER: usize = 1 << 20;
    let mut ring = ring();
    let data = pattern(LEN, 0x21);
    let mut bufs = FixedBuffers::register_memory(&mut ring, vec![CallerRegion::new(data.clone())]).unwrap();
    let vec_addr = bufs.buffer(0).unwrap().as_ptr() as usize;
    let (s, r) = stalled_pair(FILLER);
    if msg {
        bufs.sendmsg_fixed(&mut ring, s.as_raw_fd(), 0, &[0..LEN / 2, LEN / 2..LEN], None).unwrap();
    } else {
        bufs.send_fixed(&mut ring, s.as_raw_fd(), 0, 0..LEN).unwrap();
    }
    ring.submit().unwrap();
    let c = reap1(&mut ring);
    let d = bufs.handle_cqe(&c.cqe()).expect("the send's result");
    assert_eq!(d.res, LEN as i32, "the send went into the socket's queue at once");
    let held = !d.free && try_reap(&mut ring, 200).is_none();
    eprintln!("{order}: notification pending at close: {held}");
    assert!(bufs.buffer_mut(0).is_err(), "the table keeps the buffer until the notification");
    // The attack: let go of everything, safely.
    match order {
        "drop table, then ring" => {
            drop(bufs);
            drop(ring);
        }
        "stop ring, drop table, drop ring" => {
            ring.stop();
            drop(bufs);
            drop(ring);
        }
        "drop ring, then table" => {
            drop(ring);
            drop(bufs);
        }
        _ => unreachable!(),
    }
    // Reuse: fresh allocations of the Vec's size, written by Rust.
    let c = canaries(LEN, 0xCC);
    let reused = c.iter().any(|v| v.as_ptr() as usize == vec_addr);
    eprintln!("{order}: a fresh allocation took the Vec's address: {reused}");
    // The receiver drains: the kernel now transmits the queued bytes.
    let rx = common::drain(r, FILLER + LEN);
    drop(s);
    let got = rx.join().unwrap();
    assert_eq!(got.len(), FILLER + LEN, "every byte arrived");
    let sent = &got[FILLER..];
    let cc = sent.iter().filter(|&&b| b == 0xCC).count();
    assert!(
        sent == &data[..],
        "FixedBuffers::register_memory(vec![CallerRegion::new(Vec of {LEN})]); {}(tcp socket whose \
         peer window is closed, slot 0, 0..{LEN}); submit; handle_cqe(result: res {LEN}, F_MORE, buffer not \
         free); then {order}; allocate Vec<u8>s of {LEN} filled with 0xCC; let the peer read: the kernel \
         transmitted bytes Rust wrote after the ring had freed the caller's Vec ({cc} of {LEN} bytes sent were \
         0xCC; a fresh allocation took the Vec's address: {reused}). Ring::stop found nothing to cancel (the \
         send request had completed; only its notification was outstanding) and dropped the vault holding the \
         Vec while the zero-copy skb still referenced its pages",
        if msg { "sendmsg_fixed" } else { "send_fixed" }
    );
    drop(c);
}

#[test]
fn zero_copy_send_with_notification_pending_then_table_and_ring_dropped() {
    zero_copy_send_then_close("drop table, then ring", false);
}

#[test]
fn zero_copy_send_with_notification_pending_then_ring_stopped() {
    zero_copy_send_then_close("stop ring, drop table, drop ring", false);
}

#[test]
fn zero_copy_send_with_notification_pending_then_ring_dropped_first() {
    zero_copy_send_then_close("drop ring, then table", false);
}

#[test]
fn zero_copy_sendmsg_with_notification_pending_then_table_and_ring_dropped() {
    zero_copy_send_then_close("drop table, then ring", true);
}
