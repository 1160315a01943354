//! Shared helpers of the uring-ops kernel tests.
#![allow(dead_code)] // Each test binary uses a different subset.
#![allow(unreachable_pub)]

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use uring_core::{CqeSlot, Error, Options, Ring};

/// A started single-issuer ring with `entries` SQ entries.
pub fn ring(entries: u32) -> Ring {
    ring_with(Options::default().entries(entries))
}

/// A started ring with the given options.
pub fn ring_with(opts: Options) -> Ring {
    let mut ring = Ring::new(opts).expect("Ring::new (see SETUP.md if this fails)");
    ring.start().expect("start");
    ring
}

/// One reaped completion, copied out of the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Done {
    pub user_data: u64,
    pub res: i32,
    pub flags: u32,
}

impl Done {
    /// `IORING_CQE_F_MORE`.
    pub fn more(&self) -> bool {
        self.flags & uring_core::sys::IORING_CQE_F_MORE != 0
    }
    /// The buffer id, when `IORING_CQE_F_BUFFER` is set.
    pub fn buffer_id(&self) -> Option<u16> {
        (self.flags & uring_core::sys::IORING_CQE_F_BUFFER != 0)
            .then_some((self.flags >> uring_core::sys::IORING_CQE_BUFFER_SHIFT) as u16)
    }
}

/// Submits what is queued and reaps until `n` completions were seen (5 s
/// limit), in order.
pub fn reap(ring: &mut Ring, n: usize) -> Vec<Done> {
    reap_within(ring, n, Duration::from_secs(5))
}

/// As [`reap`], with a time limit.
pub fn reap_within(ring: &mut Ring, n: usize, limit: Duration) -> Vec<Done> {
    let mut out = Vec::new();
    let mut slots = [CqeSlot::EMPTY; 64];
    let deadline = std::time::Instant::now() + limit;
    while out.len() < n {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            panic!("timed out after {} of {n} completions: {out:?}", out.len());
        }
        match ring.wait_for(&mut slots, 1, Some(left)) {
            Ok(r) => {
                out.extend(r.iter().map(|c| Done { user_data: c.user_data(), res: c.res(), flags: c.raw_flags() }))
            }
            Err(Error::WouldBlock) => {}
            Err(e) => panic!("wait_for: {e}"),
        }
    }
    out
}

/// Submits and reaps exactly one completion.
pub fn reap_one(ring: &mut Ring) -> Done {
    let v = reap(ring, 1);
    assert_eq!(v.len(), 1, "expected one completion, got {v:?}");
    v[0]
}

/// Submits, then checks that no completion arrives within `wait`.
pub fn expect_none(ring: &mut Ring, wait: Duration) {
    let mut slots = [CqeSlot::EMPTY; 8];
    match ring.wait_for(&mut slots, 1, Some(wait)) {
        Err(Error::WouldBlock) => {}
        Ok(r) => {
            let got: Vec<_> = r.iter().map(|c| (c.user_data(), c.res(), c.raw_flags())).collect();
            panic!("expected no completion, got {got:?}")
        }
        Err(e) => panic!("wait_for: {e}"),
    }
}

/// A fresh, empty directory under the system temp dir (removed by the
/// caller or left for the OS; names are unique per process and call).
pub fn tmpdir(tag: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let p = std::env::temp_dir().join(format!(
        "uring-ops-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).expect("create temp dir");
    p
}

/// A connected loopback TCP pair: (client, server side).
pub fn tcp_pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let c = TcpStream::connect(l.local_addr().unwrap()).expect("connect loopback");
    let (s, _) = l.accept().expect("accept");
    (c, s)
}

/// Prints why a test skipped; call it and return.
pub fn skip(test: &str, reason: &str) {
    eprintln!("SKIPPED {test}: {reason}");
}
