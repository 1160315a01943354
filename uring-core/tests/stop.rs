//! `stop` and `Drop` with operations in flight: once they return, the
//! kernel no longer touches memory those operations named.

mod common;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use uring_core::{Options, Ring, Sqe, sys};

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: pipe2 just returned these descriptors; we own them.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// Submits a read of `rx` into `buf` that cannot complete yet (empty pipe).
///
/// # Safety
///
/// `buf` must stay valid until the ring is stopped or dropped.
unsafe fn pending_read(ring: &mut Ring, rx: &OwnedFd, buf: &mut [u8; 16]) {
    let mut sqe = Sqe::new(sys::IORING_OP_READ as u8);
    sqe.fd = rx.as_raw_fd();
    sqe.set_addr(buf.as_mut_ptr() as u64);
    sqe.len = buf.len() as u32;
    sqe.set_off(u64::MAX); // current position (pipes have none)
    sqe.user_data = 1;
    // SAFETY: forwarded: `buf` outlives the operation.
    unsafe { ring.push(&sqe) }.unwrap();
    ring.submit().unwrap();
}

fn write_and_read_back(tx: &OwnedFd, rx: &OwnedFd) -> Vec<u8> {
    let msg = b"still here";
    // SAFETY: writes `msg` to a valid pipe fd.
    assert_eq!(unsafe { libc::write(tx.as_raw_fd(), msg.as_ptr().cast(), msg.len()) }, msg.len() as isize);
    std::thread::sleep(Duration::from_millis(50));
    let mut back = [0u8; 32];
    // Non-blocking, so a consumed message fails the test instead of hanging.
    // SAFETY: fcntl on a valid fd.
    unsafe { libc::fcntl(rx.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
    // SAFETY: reads into `back`, which has room for 32 bytes.
    let n = unsafe { libc::read(rx.as_raw_fd(), back.as_mut_ptr().cast(), back.len()) };
    assert!(n > 0, "the message was consumed by a read the ring should have cancelled");
    back[..n as usize].to_vec()
}

#[test]
fn stop_cancels_in_flight_reads_before_returning() {
    let (rx, tx) = pipe();
    let mut ring = Ring::new(Options::small()).unwrap();
    ring.start().unwrap();
    let mut buf = [0u8; 16];
    // SAFETY: `buf` lives until the end of the test, after `stop`.
    unsafe { pending_read(&mut ring, &rx, &mut buf) };
    let t = Instant::now();
    ring.stop();
    assert!(t.elapsed() < Duration::from_secs(1), "a cancellable read is cancelled at once ({:?})", t.elapsed());
    assert_eq!(write_and_read_back(&tx, &rx), b"still here");
    assert_eq!(buf, [0; 16], "the ring never wrote into the buffer");
}

#[test]
fn drop_cancels_in_flight_reads_too() {
    for opts in [Options::small(), Options::small().defer_taskrun(false), Options::small().register_ring_fd(true)] {
        let (rx, tx) = pipe();
        let mut buf = [0u8; 16];
        {
            let mut ring = Ring::new(opts.clone()).unwrap();
            ring.start().unwrap();
            // SAFETY: `buf` outlives the ring (dropped at the end of the block).
            unsafe { pending_read(&mut ring, &rx, &mut buf) };
        }
        assert_eq!(write_and_read_back(&tx, &rx), b"still here", "{opts:?}");
        assert_eq!(buf, [0; 16]);
    }
}

#[test]
fn a_created_ring_drops_cleanly() {
    let ring = Ring::new(Options::small()).unwrap();
    let fd = ring.as_raw_fd();
    assert!(fd >= 0);
    drop(ring);
}

#[test]
fn attached_memory_outlives_the_ring_and_no_longer() {
    let marker = std::sync::Arc::new(());
    let mut ring = common::ring(4);
    ring.attach(Box::new(marker.clone())).unwrap();
    assert_eq!(std::sync::Arc::strong_count(&marker), 2, "held by the ring");
    ring.stop();
    assert_eq!(std::sync::Arc::strong_count(&marker), 1, "dropped once the ring is stopped with nothing in flight");
    assert!(matches!(ring.attach(Box::new(marker.clone())), Err(uring_core::Error::Stopped)));
    assert_eq!(std::sync::Arc::strong_count(&marker), 1);
}

/// A poll for `POLLIN` on `fd`.
fn poll_in(fd: &OwnedFd, user_data: u64) -> Sqe {
    let mut sqe = Sqe::new(sys::IORING_OP_POLL_ADD as u8);
    sqe.fd = fd.as_raw_fd();
    sqe.set_op_flags(libc::POLLIN as u32);
    sqe.user_data = user_data;
    sqe
}

/// An accept on `fd` (multishot or not) that does not return the peer's
/// address.
fn accept(fd: &OwnedFd, multishot: bool, user_data: u64) -> Sqe {
    let mut sqe = Sqe::new(sys::IORING_OP_ACCEPT as u8);
    sqe.fd = fd.as_raw_fd();
    if multishot {
        sqe.ioprio = sys::IORING_ACCEPT_MULTISHOT as u16;
    }
    sqe.user_data = user_data;
    sqe
}

/// A value whose drop is observable.
struct Region(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Drop for Region {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

fn region() -> (Box<Region>, std::sync::Arc<std::sync::atomic::AtomicBool>) {
    let dropped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    (Box::new(Region(dropped.clone())), dropped)
}

/// Polls, an accept and a multishot accept that can never complete, then
/// `stop`: on a deferred-task-work ring their cancellations complete only
/// when task work runs, which `stop` must drive, or the attached memory
/// is leaked instead of dropped.
#[test]
fn stop_frees_attached_memory_with_polls_and_accepts_in_flight() {
    let cases = [
        ("default (DEFER_TASKRUN)", Options::small()),
        ("COOP_TASKRUN", Options::small().defer_taskrun(false)),
        ("registered ring fd", Options::small().register_ring_fd(true)),
        ("NO_MMAP", Options::small().no_mmap(true)),
    ];
    for (name, opts) in cases {
        let (rx, _tx) = pipe();
        let (lfd, _) = common::listener();
        let mut ring = Ring::new(opts).unwrap();
        ring.start().unwrap();
        let (memory, dropped) = region();
        ring.attach(memory).unwrap();
        let sqes = [poll_in(&rx, 1), accept(&lfd, false, 2), accept(&lfd, true, 3)];
        // SAFETY: polls and accepts without an address name no memory.
        unsafe { ring.push_all(&sqes) }.unwrap();
        assert_eq!(ring.submit().unwrap(), 3, "{name}");
        ring.stop();
        assert!(dropped.load(std::sync::atomic::Ordering::SeqCst), "{name}: attached memory leaked by stop");
    }
}

/// The same through `Drop`, with more requests than one pass of deferred
/// task work runs (the kernel runs at most 20 items per wait) and more
/// cancellation CQEs than the CQ holds (they overflow).
#[test]
fn drop_frees_attached_memory_with_many_polls_and_an_overflowing_cq() {
    let (rx, _tx) = pipe();
    let (lfd, _) = common::listener();
    let (memory, dropped) = region();
    {
        let mut ring = Ring::new(Options::default().entries(16).cq_entries(16)).unwrap();
        ring.start().unwrap();
        ring.attach(memory).unwrap();
        for batch in 0..20u64 {
            let sqes: Vec<Sqe> = (0..16).map(|i| poll_in(&rx, batch * 16 + i)).collect();
            // SAFETY: polls name no memory.
            unsafe { ring.push_all(&sqes) }.unwrap();
            assert_eq!(ring.submit().unwrap(), 16);
        }
        // SAFETY: as above.
        unsafe { ring.push_all(&[accept(&lfd, true, 1000), accept(&lfd, false, 1001)]) }.unwrap();
        ring.submit().unwrap();
    }
    assert!(dropped.load(std::sync::atomic::Ordering::SeqCst), "attached memory leaked by Drop");
}
