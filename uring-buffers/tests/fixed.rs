//! Safe fixed-buffer I/O against the kernel: bytes moved through registered
//! buffers into files, pipes and a loopback TCP pair; buffers in flight
//! refused to the caller until their own CQE; stale `user_data` ignored;
//! and the kernel facts the design rests on (plain SEND refuses fixed
//! buffers, READV_FIXED ranges must share one buffer).

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use uring_buffers::{BufferState, Error, FixedBuffers, FixedDone, FixedKind};
use uring_core::{CqeSlot, Options, Ring, sys};

fn ring() -> Ring {
    let mut ring = Ring::new(Options::default().entries(16)).expect("Ring::new (see SETUP.md)");
    ring.start().unwrap();
    ring
}

fn temp(tag: &str) -> File {
    let p = std::env::temp_dir().join(format!("uring-buffers-fixed-{tag}-{}", std::process::id()));
    let f = File::options().read(true).write(true).create(true).truncate(true).open(&p).unwrap();
    std::fs::remove_file(&p).unwrap();
    f
}

/// A pipe: (read end, write end).
fn pipe() -> (File, File) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into `fds`.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both descriptors are fresh and owned by nobody else.
    unsafe { (File::from(OwnedFd::from_raw_fd(fds[0])), File::from(OwnedFd::from_raw_fd(fds[1]))) }
}

fn tcp_pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (b, _) = l.accept().unwrap();
    (a, b)
}

/// Submits and reaps CQEs (5 s limit) until `n` of them belong to `fixed`;
/// every CQE that is not its own is a test failure.
fn complete(ring: &mut Ring, fixed: &mut FixedBuffers, n: usize) -> Vec<FixedDone> {
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut slots = [CqeSlot::EMPTY; 8];
    while out.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "timed out after {} of {n} completions: {out:?}", out.len());
        let got = match ring.wait_for(&mut slots, 1, Some(left)) {
            Ok(r) => r.len(),
            Err(e) if e.is_would_block() => 0,
            Err(e) => panic!("wait: {e}"),
        };
        for slot in &slots[..got] {
            let cqe = slot.cqe();
            let done =
                fixed.handle_cqe(&cqe).unwrap_or_else(|| panic!("a CQE not of the table: {:#x}", cqe.user_data()));
            out.push(done);
        }
    }
    out
}

fn pattern(n: usize, seed: u32) -> Vec<u8> {
    (0..n as u32).map(|i| (i.wrapping_mul(31).wrapping_add(seed) % 251) as u8).collect()
}

fn is_busy(e: &Error) -> bool {
    matches!(e, Error::Busy { .. })
}

#[test]
fn bytes_written_from_a_buffer_reach_the_file() {
    let mut ring = ring();
    let mut fixed = FixedBuffers::register(&mut ring, 2, 8192).unwrap();
    let data = pattern(8192, 1);
    fixed.buffer_mut(1).unwrap().copy_from_slice(&data);
    let mut f = temp("write");
    let id = fixed.write_fixed(&mut ring, f.as_raw_fd(), 1, 100..5100, 10).unwrap();
    // The kernel only reads it: readable, not writable.
    assert_eq!(fixed.state(1).unwrap(), BufferState::KernelReads(id));
    assert_eq!(fixed.buffer(1).unwrap()[100], data[100]);
    assert!(is_busy(&fixed.buffer_mut(1).unwrap_err()));
    let done = complete(&mut ring, &mut fixed, 1);
    assert_eq!(done[0].id, id);
    assert_eq!((done[0].kind, done[0].index, done[0].res, done[0].free), (FixedKind::Write, 1, 5000, true));
    assert_eq!(fixed.in_flight(), 0);
    let mut on_disk = Vec::new();
    f.rewind().unwrap();
    f.read_to_end(&mut on_disk).unwrap();
    assert_eq!(on_disk.len(), 5010);
    assert_eq!(&on_disk[..10], &[0; 10]);
    assert_eq!(&on_disk[10..], &data[100..5100]);
    fixed.buffer_mut(1).unwrap()[0] = 1;
}

#[test]
fn a_fixed_read_fills_the_buffer_which_is_readable_only_after_its_cqe() {
    let mut ring = ring();
    let mut fixed = FixedBuffers::register(&mut ring, 2, 4096).unwrap();
    let (rx, mut tx) = pipe();
    let id = fixed.read_fixed(&mut ring, rx.as_raw_fd(), 0, 0..4096, u64::MAX).unwrap();
    assert_eq!(ring.submit().unwrap(), 1);
    assert_eq!(fixed.state(0).unwrap(), BufferState::KernelWrites(id));
    // Nothing written yet: the read is parked in the kernel, and the
    // buffer is out of reach.
    let e = fixed.buffer(0).unwrap_err();
    assert!(is_busy(&e), "{e}");
    assert!(e.to_string().contains("fixed read into it"), "{e}");
    assert!(is_busy(&fixed.buffer_mut(0).unwrap_err()));
    // A second operation on the same buffer is refused.
    let f = temp("second");
    assert!(is_busy(&fixed.write_fixed(&mut ring, f.as_raw_fd(), 0, 0..1, 0).unwrap_err()));
    // The other buffer is untouched.
    fixed.buffer_mut(1).unwrap()[0] = 7;
    tx.write_all(b"through a registered buffer").unwrap();
    let done = complete(&mut ring, &mut fixed, 1);
    assert_eq!((done[0].id, done[0].kind, done[0].res, done[0].free), (id, FixedKind::Read, 27, true));
    assert_eq!(&fixed.buffer(0).unwrap()[..27], b"through a registered buffer");
    assert_eq!(fixed.state(0).unwrap(), BufferState::Idle);
}

#[test]
fn bad_arguments_are_errors() {
    let mut ring = ring();
    let mut fixed = FixedBuffers::register(&mut ring, 2, 4096).unwrap();
    let f = temp("bad");
    let fd = f.as_raw_fd();
    for e in [
        fixed.buffer(2).unwrap_err(),
        fixed.write_fixed(&mut ring, fd, 2, 0..1, 0).unwrap_err(),
        fixed.write_fixed(&mut ring, fd, 0, 0..4097, 0).unwrap_err(),
        #[allow(clippy::reversed_empty_ranges)]
        fixed.write_fixed(&mut ring, fd, 0, 10..5, 0).unwrap_err(),
        fixed.writev_fixed(&mut ring, fd, 0, &[], 0).unwrap_err(),
        fixed.readv_fixed(&mut ring, fd, 0, &[0..1, 4000..4100], 0).unwrap_err(),
    ] {
        assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
    }
    let mut other = self::ring();
    let e = fixed.write_fixed(&mut other, fd, 0, 0..1, 0).unwrap_err();
    assert!(e.to_string().contains("belong to ring"), "{e}");
    assert_eq!(fixed.in_flight(), 0);
    // A full SQ leaves the buffer idle.
    for _ in 0..16 {
        // SAFETY: a NOP names no memory.
        let sqe = unsafe { ring.next_sqe() }.unwrap();
        sqe.opcode = sys::IORING_OP_NOP as u8;
    }
    assert!(matches!(
        fixed.write_fixed(&mut ring, fd, 0, 0..1, 0),
        Err(Error::Core(uring_core::Error::QueueFull { .. }))
    ));
    assert_eq!(fixed.state(0).unwrap(), BufferState::Idle);
    fixed.buffer_mut(0).unwrap();
}

#[test]
fn two_operations_on_different_buffers_run_concurrently() {
    let mut ring = ring();
    let mut fixed = FixedBuffers::register(&mut ring, 3, 4096).unwrap();
    let (rx_a, mut tx_a) = pipe();
    let (rx_b, mut tx_b) = pipe();
    let a = fixed.read_fixed(&mut ring, rx_a.as_raw_fd(), 0, 0..100, u64::MAX).unwrap();
    let b = fixed.read_fixed(&mut ring, rx_b.as_raw_fd(), 2, 10..110, u64::MAX).unwrap();
    assert_ne!(a, b);
    ring.submit().unwrap();
    assert_eq!(fixed.in_flight(), 2);
    // Complete them in the other order.
    tx_b.write_all(b"second buffer").unwrap();
    let done = complete(&mut ring, &mut fixed, 1);
    assert_eq!((done[0].id, done[0].index, done[0].res), (b, 2, 13));
    assert_eq!(&fixed.buffer(2).unwrap()[10..23], b"second buffer");
    assert!(is_busy(&fixed.buffer(0).unwrap_err()), "the first read is still in flight");
    tx_a.write_all(b"first").unwrap();
    let done = complete(&mut ring, &mut fixed, 1);
    assert_eq!((done[0].id, done[0].index, done[0].res), (a, 0, 5));
    assert_eq!(&fixed.buffer(0).unwrap()[..5], b"first");
    assert_eq!(fixed.in_flight(), 0);
}

#[test]
fn readv_and_writev_move_ranges_of_buffers() {
    let mut ring = ring();
    if !ring.features().supports(sys::IORING_OP_READV_FIXED as u8) {
        eprintln!("SKIPPED readv_and_writev_move_ranges_of_buffers: no IORING_OP_READV_FIXED (Linux 6.15+)");
        return;
    }
    let mut fixed = FixedBuffers::register(&mut ring, 2, 8192).unwrap();
    let data = pattern(8192, 9);
    fixed.buffer_mut(0).unwrap().copy_from_slice(&data);
    let mut f = temp("vec");
    // Gather two ranges of buffer 0, out of order, into one write.
    fixed.writev_fixed(&mut ring, f.as_raw_fd(), 0, &[5000..6000, 100..300], 0).unwrap();
    let done = complete(&mut ring, &mut fixed, 1);
    assert_eq!((done[0].kind, done[0].res, done[0].free), (FixedKind::Writev, 1200, true));
    let mut on_disk = Vec::new();
    f.rewind().unwrap();
    f.read_to_end(&mut on_disk).unwrap();
    assert_eq!(&on_disk[..1000], &data[5000..6000]);
    assert_eq!(&on_disk[1000..], &data[100..300]);
    // Scatter the file back into three ranges of buffer 1.
    fixed.readv_fixed(&mut ring, f.as_raw_fd(), 1, &[4096..4596, 0..200, 7000..7500], 0).unwrap();
    assert!(is_busy(&fixed.buffer(1).unwrap_err()));
    let done = complete(&mut ring, &mut fixed, 1);
    assert_eq!((done[0].kind, done[0].index, done[0].res), (FixedKind::Readv, 1, 1200));
    let b = fixed.buffer(1).unwrap();
    assert_eq!(&b[4096..4596], &on_disk[..500]);
    assert_eq!(&b[..200], &on_disk[500..700]);
    assert_eq!(&b[7000..7500], &on_disk[700..1200]);
}

/// The kernel resolves every iovec of READV_FIXED against the one buffer
/// `buf_index` names: a range of another buffer is `-EFAULT`. (Why the
/// vectored calls take one buffer.)
#[test]
fn readv_fixed_ranges_must_share_one_buffer() {
    let mut ring = ring();
    if !ring.features().supports(sys::IORING_OP_READV_FIXED as u8) {
        eprintln!("SKIPPED readv_fixed_ranges_must_share_one_buffer: no IORING_OP_READV_FIXED (Linux 6.15+)");
        return;
    }
    let bufs = uring_buffers::RegisteredBuffers::register(&mut ring, 2, 4096).unwrap();
    let (p0, _) = bufs.raw_parts(0).unwrap();
    let (p1, _) = bufs.raw_parts(1).unwrap();
    let mut f = temp("cross");
    f.write_all(&[1; 64]).unwrap();
    let iov = [libc::iovec { iov_base: p0.cast(), iov_len: 32 }, libc::iovec { iov_base: p1.cast(), iov_len: 32 }];
    // SAFETY: both iovecs name registered memory attached to the ring; the
    // test waits for the CQE before `iov` goes out of scope.
    let sqe = unsafe { ring.next_sqe() }.unwrap();
    sqe.opcode = sys::IORING_OP_READV_FIXED as u8;
    sqe.fd = f.as_raw_fd();
    sqe.set_addr(iov.as_ptr() as u64);
    sqe.len = 2;
    sqe.set_buf_index(0);
    let mut slots = [CqeSlot::EMPTY; 1];
    let res = ring.wait_for(&mut slots, 1, Some(Duration::from_secs(5))).unwrap().get(0).unwrap().res();
    assert_eq!(res, -libc::EFAULT, "a range of buffer 1 in a READV_FIXED of buffer 0");
}

/// 6.18 refuses `IORING_RECVSEND_FIXED_BUF` on a plain `IORING_OP_SEND`
/// (which is why `send_fixed` uses `SEND_ZC`, accepted everywhere); the
/// kernel matrix showed 7.2 and later accepting it. Either way the answer
/// is exact: `-EINVAL`, or the 16 bytes really sent.
#[test]
fn plain_send_with_a_fixed_buffer_is_refused_or_really_sends() {
    let mut ring = ring();
    let bufs = uring_buffers::RegisteredBuffers::register(&mut ring, 1, 4096).unwrap();
    let (a, mut b) = tcp_pair();
    let (p, _) = bufs.raw_parts(0).unwrap();
    // SAFETY: the buffer is idle and nothing else holds it.
    unsafe { std::slice::from_raw_parts_mut(p, 16) }.copy_from_slice(b"sixteen bytes ok");
    // SAFETY: the address lies in registered memory attached to the ring;
    // the test waits for the CQE.
    let sqe = unsafe { ring.next_sqe() }.unwrap();
    sqe.opcode = sys::IORING_OP_SEND as u8;
    sqe.fd = a.as_raw_fd();
    sqe.set_addr(p as u64);
    sqe.len = 16;
    sqe.ioprio = sys::IORING_RECVSEND_FIXED_BUF as u16;
    sqe.set_buf_index(0);
    let mut slots = [CqeSlot::EMPTY; 1];
    let res = ring.wait_for(&mut slots, 1, Some(Duration::from_secs(5))).unwrap().get(0).unwrap().res();
    match res {
        r if r == -libc::EINVAL => {
            let (major, minor) = ring.features().kernel_version().unwrap_or((0, 0));
            assert!((major, minor) < (7, 2), "refused on {major}.{minor}, which the matrix saw accept it");
        }
        16 => {
            let mut got = [0u8; 16];
            std::io::Read::read_exact(&mut b, &mut got).unwrap();
            assert_eq!(&got, b"sixteen bytes ok", "the fixed buffer's bytes went out");
        }
        other => panic!("plain SEND with IORING_RECVSEND_FIXED_BUF: {other}"),
    }
}

#[test]
fn fixed_send_delivers_the_bytes_and_frees_the_buffer_at_the_notification() {
    let mut ring = ring();
    if !ring.features().supports(sys::IORING_OP_SEND_ZC as u8) {
        eprintln!("SKIPPED fixed_send_delivers_the_bytes_and_frees_the_buffer_at_the_notification: no SEND_ZC");
        return;
    }
    let mut fixed = FixedBuffers::register(&mut ring, 2, 65536).unwrap();
    let data = pattern(65536, 3);
    fixed.buffer_mut(1).unwrap().copy_from_slice(&data);
    let (a, mut b) = tcp_pair();
    let id = fixed.send_fixed(&mut ring, a.as_raw_fd(), 1, 1000..41000).unwrap();
    assert!(is_busy(&fixed.buffer_mut(1).unwrap_err()));
    let first = complete(&mut ring, &mut fixed, 1)[0];
    assert_eq!((first.id, first.kind, first.index, first.notification), (id, FixedKind::SendZc, 1, false));
    assert_eq!(first.res, 40000);
    let mut got = vec![0; 40000];
    b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    b.read_exact(&mut got).unwrap();
    assert_eq!(got, &data[1000..41000], "the bytes arrived");
    // The notification follows (IORING_CQE_F_MORE): until then the kernel
    // may still read the buffer, so it is readable but not writable.
    assert!(!first.free, "a prepared zero-copy send always has a notification");
    assert_eq!(fixed.state(1).unwrap(), BufferState::KernelReads(id));
    assert!(is_busy(&fixed.buffer_mut(1).unwrap_err()));
    assert_eq!(fixed.buffer(1).unwrap()[1000], data[1000]);
    let notif = complete(&mut ring, &mut fixed, 1)[0];
    assert_eq!((notif.id, notif.notification, notif.free, notif.res), (id, true, true, 40000));
    assert_eq!(fixed.in_flight(), 0);
    fixed.buffer_mut(1).unwrap()[0] = 0;
}

/// Reaps one CQE and keeps a copy of it (with its provenance).
fn reap_one(ring: &mut Ring) -> CqeSlot {
    let mut slots = [CqeSlot::EMPTY; 1];
    let n = ring.wait_for(&mut slots, 1, Some(Duration::from_secs(5))).unwrap().len();
    assert_eq!(n, 1);
    slots[0]
}

#[test]
fn a_replayed_or_foreign_cqe_does_not_free_a_buffer() {
    let mut ring = ring();
    let mut fixed = FixedBuffers::register(&mut ring, 1, 4096).unwrap();
    let f = temp("stale");
    // One completed operation; keep a copy of its real CQE.
    let old = fixed.write_fixed(&mut ring, f.as_raw_fd(), 0, 0..10, 0).unwrap();
    let old_cqe = reap_one(&mut ring);
    assert_eq!(fixed.handle_cqe(&old_cqe.cqe()).expect("its own CQE").id, old);
    // A new one on the same buffer, reusing the same operation slot: the
    // same user_data (slot and table), so only the CQE's provenance tells
    // the two apart.
    let (rx, mut tx) = pipe();
    let new = fixed.read_fixed(&mut ring, rx.as_raw_fd(), 0, 0..4096, u64::MAX).unwrap();
    ring.submit().unwrap();
    assert_eq!(old.user_data(), new.user_data(), "same slot, same table");
    // The old CQE presented again (a copy: same ring, older position)
    // releases nothing: the kernel is still to write the buffer.
    assert!(fixed.handle_cqe(&old_cqe.cqe()).is_none(), "a replayed CQE is not the operation's");
    assert!(fixed.handle_cqe(&CqeSlot::EMPTY.cqe()).is_none(), "an empty slot belongs to no ring");
    // Another table's CQEs, on another ring, with the same slot numbers.
    let mut ring2 = self::ring();
    let mut other = FixedBuffers::register(&mut ring2, 1, 4096).unwrap();
    let theirs = other.write_fixed(&mut ring2, f.as_raw_fd(), 0, 0..1, 0).unwrap();
    let theirs_cqe = reap_one(&mut ring2);
    assert_eq!(theirs_cqe.cqe().user_data(), theirs.user_data());
    assert!(fixed.handle_cqe(&theirs_cqe.cqe()).is_none(), "another table's CQE");
    assert!(is_busy(&fixed.buffer(0).unwrap_err()), "still in flight");
    assert!(is_busy(&fixed.buffer_mut(0).unwrap_err()), "still in flight");
    assert_eq!(fixed.in_flight(), 1);
    tx.write_all(b"own cqe").unwrap();
    let own = reap_one(&mut ring);
    let done = fixed.handle_cqe(&own.cqe()).expect("its own CQE");
    assert_eq!((done.id, done.res, done.free), (new, 7, true));
    assert_eq!(&fixed.buffer(0).unwrap()[..7], b"own cqe");
    // Handled once: the same CQE again is not the table's any more.
    assert!(fixed.handle_cqe(&own.cqe()).is_none());
    assert!(other.handle_cqe(&theirs_cqe.cqe()).is_some(), "the other table takes its own CQE");
}

#[test]
fn stopping_the_ring_with_buffers_in_flight_is_safe() {
    let mut ring = ring();
    let mut fixed = FixedBuffers::register(&mut ring, 2, 4096).unwrap();
    let (rx, tx) = pipe();
    let (rx2, _tx2) = pipe();
    fixed.read_fixed(&mut ring, rx.as_raw_fd(), 0, 0..4096, u64::MAX).unwrap();
    if ring.features().supports(sys::IORING_OP_READV_FIXED as u8) {
        fixed.readv_fixed(&mut ring, rx2.as_raw_fd(), 1, &[0..10, 100..200], u64::MAX).unwrap();
    }
    ring.submit().unwrap();
    ring.stop();
    // The reads were cancelled; the memory stays attached until the ring
    // is dropped. The table still calls the buffers in flight (no CQE
    // came), and nothing more can be queued.
    assert!(is_busy(&fixed.buffer(0).unwrap_err()));
    let f = temp("stopped");
    drop(tx);
    drop(fixed);
    drop(ring);
    // Dropping the table first, then the ring, then the pipes: no crash.
    drop(f);
}

#[test]
fn into_inner_waits_for_nothing_in_flight() {
    let mut ring = ring();
    let mut fixed = FixedBuffers::register(&mut ring, 1, 4096).unwrap();
    let (rx, mut tx) = pipe();
    fixed.read_fixed(&mut ring, rx.as_raw_fd(), 0, 0..16, u64::MAX).unwrap();
    ring.submit().unwrap();
    let mut fixed = fixed.into_inner().expect_err("in flight");
    tx.write_all(b"x").unwrap();
    complete(&mut ring, &mut fixed, 1);
    let bufs = fixed.into_inner().expect("nothing in flight");
    assert_eq!(bufs.buffer(0).unwrap()[0], b'x');
    bufs.unregister(&mut ring).unwrap();
}

#[test]
fn sparse_tables_take_installed_buffers_but_not_over_busy_ones() {
    let mut ring = ring();
    let mut fixed = FixedBuffers::sparse(&mut ring, 4).unwrap();
    let e = fixed.buffer(2).unwrap_err();
    assert!(e.to_string().contains("empty"), "{e}");
    let (rx, mut tx) = pipe();
    assert!(matches!(fixed.read_fixed(&mut ring, rx.as_raw_fd(), 2, 0..1, u64::MAX), Err(Error::InvalidArgument(_))));
    fixed.install(&mut ring, 2, 300).unwrap();
    fixed.read_fixed(&mut ring, rx.as_raw_fd(), 2, 0..300, u64::MAX).unwrap();
    ring.submit().unwrap();
    assert!(is_busy(&fixed.install(&mut ring, 2, 300).unwrap_err()), "not while a read fills it");
    tx.write_all(b"installed").unwrap();
    let done = complete(&mut ring, &mut fixed, 1);
    assert_eq!((done[0].index, done[0].res), (2, 9));
    assert_eq!(&fixed.buffer(2).unwrap()[..9], b"installed");
    fixed.install(&mut ring, 2, 100).unwrap();
    assert_eq!(fixed.buffer(2).unwrap(), &[0; 100][..], "a fresh buffer");
}
