//! Shared helpers of the uring-zcrx kernel tests.
#![allow(dead_code)] // Each test binary uses a different subset.
#![allow(unreachable_pub)]

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use uring_core::{CqeSize, CqeSlot, Error as CoreError, Options, Ring};
use uring_ops::prelude::HandleCqe;
use uring_zcrx::{Zcrx, ZcrxBuffer, ZcrxConfig, ZcrxEnd, ZcrxHandler, ZcrxReceiver, ZcrxSupport, ZcrxTarget};

/// A started ring fit for zero-copy receive.
pub fn ring(cqe: CqeSize) -> Ring {
    let mut ring = Ring::new(Options::default().entries(64).cqe_size(cqe)).expect("Ring::new");
    ring.start().expect("start");
    ring
}

/// A ring and an instance without a device, or `None` after printing why
/// this kernel cannot have one.
pub fn nodev(test: &str, cqe: CqeSize, config: impl FnOnce(ZcrxConfig) -> ZcrxConfig) -> Option<(Ring, Zcrx)> {
    nodev_on(test, ring(cqe), config)
}

/// [`nodev`] on a ring of the caller's (started, fit for zero-copy
/// receive).
pub fn nodev_on(test: &str, mut ring: Ring, config: impl FnOnce(ZcrxConfig) -> ZcrxConfig) -> Option<(Ring, Zcrx)> {
    let support = ZcrxSupport::probe(ring.features());
    if !support.nodev() {
        println!(
            "SKIPPED {test}: kernel {} has no ZCRX_REG_NODEV (query: {:?}, errno {:?}); it runs on 7.2+ in \
             `cargo xtask vm-test`",
            support.kernel_release(),
            support.query(),
            support.query_errno()
        );
        return None;
    }
    let cfg = config(ZcrxConfig::new(ZcrxTarget::NoDevice).area_len(256 << 10).refill_entries(64));
    let zcrx = Zcrx::register(&mut ring, &cfg).expect("Zcrx::register (NODEV)");
    Some((ring, zcrx))
}

/// The byte at stream position `i` of the test pattern.
#[inline]
pub fn pattern(i: u64) -> u8 {
    (i.wrapping_mul(131) ^ (i >> 9)) as u8
}

/// A connected pair over loopback: (server side, client side).
pub fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let client = TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    (server, client)
}

/// Writes `total` pattern bytes starting at stream position `from` in
/// chunks of `chunk`, pausing `pause` between chunks, then shuts the
/// write side down.
pub fn send_pattern(mut client: TcpStream, from: u64, total: u64, chunk: usize, pause: Duration) -> JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut pos = from;
        let end = from + total;
        let mut buf = vec![0u8; chunk];
        while pos < end {
            let n = chunk.min((end - pos) as usize);
            for (k, b) in buf[..n].iter_mut().enumerate() {
                *b = pattern(pos + k as u64);
            }
            if client.write_all(&buf[..n]).is_err() {
                break;
            }
            pos += n as u64;
            if !pause.is_zero() {
                std::thread::sleep(pause);
            }
        }
        let _ = client.shutdown(std::net::Shutdown::Write);
        pos - from
    })
}

/// A handler that checks every byte against the pattern, in order, and
/// releases or keeps buffers as told.
#[derive(Debug, Default)]
pub struct Verify {
    /// The stream position of the next byte.
    pub pos: u64,
    /// First mismatch: (position, got, expected).
    pub mismatch: Option<(u64, u8, u8)>,
    /// Buffers kept instead of released.
    pub held: Vec<ZcrxBuffer>,
    /// Keep every buffer (never release).
    pub hold_all: bool,
    /// Release in batches of this many (0: release each at once).
    pub batch: usize,
    /// Stop (return false) once this many bytes arrived (0: never).
    pub stop_after: u64,
    /// on_stopped calls, with their ends.
    pub stopped: Vec<ZcrxEnd>,
    /// on_error calls.
    pub errors: Vec<std::io::Error>,
    /// Explicit releases that found the refill ring full.
    pub full: u64,
}

impl ZcrxHandler for Verify {
    fn on_data(&mut self, buf: ZcrxBuffer) -> bool {
        let data = buf.as_slice();
        if self.mismatch.is_none() {
            for (k, &b) in data.iter().enumerate() {
                let want = pattern(self.pos + k as u64);
                if b != want {
                    self.mismatch = Some((self.pos + k as u64, b, want));
                    break;
                }
            }
        }
        self.pos += data.len() as u64;
        if self.hold_all {
            self.held.push(buf);
        } else if self.batch > 0 {
            self.held.push(buf);
            if self.held.len() >= self.batch {
                let zcrx_bufs = std::mem::take(&mut self.held);
                for b in zcrx_bufs {
                    if let Err(full) = b.recycle() {
                        self.full += 1;
                        drop(full.0); // queued by its drop
                    }
                }
            }
        } else if let Err(full) = buf.recycle() {
            self.full += 1;
            drop(full.0);
        }
        self.stop_after == 0 || self.pos < self.stop_after
    }

    fn on_error(&mut self, err: std::io::Error) -> bool {
        self.errors.push(err);
        false
    }

    fn on_stopped(&mut self, end: ZcrxEnd) {
        self.stopped.push(end);
    }
}

/// Reaps and routes CQEs until `done` says so, failing after `limit`.
pub fn drive<H: ZcrxHandler>(
    ring: &mut Ring,
    rx: &mut ZcrxReceiver<H>,
    limit: Duration,
    mut done: impl FnMut(&ZcrxReceiver<H>) -> bool,
) {
    let deadline = Instant::now() + limit;
    let mut slots = [CqeSlot::EMPTY; 64];
    while !done(rx) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "timed out: receiver {rx:?}");
        let n = match ring.wait_for(&mut slots, 1, Some(left.min(Duration::from_millis(500)))) {
            Ok(r) => r.len(),
            Err(CoreError::WouldBlock) => 0,
            Err(e) => panic!("wait_for: {e}"),
        };
        for slot in &slots[..n] {
            let cqe = slot.cqe();
            if rx.handle_cqe(ring, &cqe).is_some() {
                continue;
            }
            // Seen once on 7.2 under TCG, with the CQ filling: a second
            // final error CQE (-ENOMEM) of a stream that had already ended,
            // reaped after the restart. It carries no buffer; the receiver
            // rightly does not claim it for the new stream. Anything else
            // unclaimed is a routing failure.
            let earlier_stream = cqe.user_data() & 0x7ff == rx.token() & 0x7ff
                && cqe.user_data() >> 11 < rx.token() >> 11
                && !cqe.more()
                && cqe.res() < 0;
            assert!(earlier_stream, "unclaimed completion {cqe:?} (receiver {rx:?}, token {:#x})", rx.token());
            println!("a late final CQE of an earlier stream, not claimed by the new one: {cqe:?}");
        }
        if let Some(e) = rx.take_error() {
            panic!("receiver error: {e}");
        }
    }
}

/// The raw fd of a stream, for `start`.
pub fn fd(s: &TcpStream) -> i32 {
    s.as_raw_fd()
}

/// Starts `rx` again on `sock` after a stop, drives it to the end of the
/// stream, joins `sender`, and checks that all `total` bytes arrived, in
/// order, and that the last stream finished; returns the restarts
/// [`drive_to_end`] took.
pub fn resume_to_end(
    ring: &mut Ring,
    rx: &mut ZcrxReceiver<Verify>,
    sock: i32,
    sender: JoinHandle<u64>,
    total: u64,
    limit: Duration,
) -> u32 {
    rx.start(ring, sock).expect("start again");
    let restarts = drive_to_end(ring, rx, sock, limit);
    assert_eq!(sender.join().unwrap(), total);
    let h = rx.handler();
    assert_eq!(h.mismatch, None);
    assert_eq!(h.pos, total);
    assert_eq!(h.stopped.last(), Some(&ZcrxEnd::Finished));
    restarts
}

/// Drives `rx` on socket `sock` to the end of the stream, starting it
/// again whenever it ended for want of room (the area ran dry,
/// `ZcrxEnd::NoBuffers`, or the CQ did, `ZcrxEnd::CqFull`), as a caller
/// must; returns how many restarts that took.
pub fn drive_to_end<H: ZcrxHandler>(ring: &mut Ring, rx: &mut ZcrxReceiver<H>, sock: i32, limit: Duration) -> u32 {
    let deadline = Instant::now() + limit;
    let mut restarts = 0;
    loop {
        drive(ring, rx, deadline.saturating_duration_since(Instant::now()), |rx| rx.is_stopped());
        if !rx.end().is_some_and(ZcrxEnd::is_resumable) {
            return restarts;
        }
        restarts += 1;
        rx.start(ring, sock).expect("restart after NoBuffers or CqFull");
    }
}
