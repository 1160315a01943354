//! Shared helpers of the uring-ops kernel tests.
#![allow(dead_code)] // Each test binary uses a different subset.
#![allow(unreachable_pub)]

use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU16, AtomicU32, Ordering};
use std::time::Duration;

use uring_core::{CqeSlot, Error, Options, Ring, sys};

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

/// A token's `user_data` as the test built it (`SqeContext::token(n)`),
/// without the opcode the push stamped in, so tests compare against the
/// token they made; other modes unchanged. (`reap` records this.)
pub fn as_built(user_data: u64) -> u64 {
    match uring_core::SqeContext::of_user_data(user_data).as_token() {
        Some(n) if uring_core::SqeContext::of_user_data(user_data).buf_group().is_none() => {
            uring_core::SqeContext::token(n).unwrap().raw()
        }
        _ => user_data,
    }
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
            Ok(r) => out.extend(r.iter().map(|c| Done {
                user_data: as_built(c.user_data()),
                res: c.res(),
                flags: c.raw_flags(),
            })),
            Err(Error::WouldBlock) => {}
            Err(e) => panic!("wait_for: {e}"),
        }
    }
    out
}

/// Submits and reaps `n` completions as copies with their provenance.
pub fn reap_slots(ring: &mut Ring, n: usize) -> Vec<CqeSlot> {
    let mut out = Vec::new();
    let mut slots = [CqeSlot::EMPTY; 64];
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while out.len() < n {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        assert!(!left.is_zero(), "timed out after {} of {n} completions", out.len());
        let k = (n - out.len()).min(64);
        match ring.wait_for(&mut slots[..k], 1, Some(left)) {
            Ok(r) => out.extend(r.iter().map(|c| c.to_slot())),
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

/// A descriptor number that is never open (far above any fd limit): the
/// kernel answers `EBADF`. Tests must not use a just-closed descriptor
/// instead: another test thread may reopen the number meanwhile.
pub const NEVER_OPEN_FD: i32 = 0x3fff_fff0;

/// Prints why a test skipped; call it and return.
pub fn skip(test: &str, reason: &str) {
    eprintln!("SKIPPED {test}: {reason}");
}

/// A provided-buffer ring registered by hand with
/// `IORING_REGISTER_PBUF_RING` (uring-buffers will own this properly): the
/// ring of `io_uring_buf` entries and the buffers live in anonymous
/// mappings that are never unmapped, so the kernel can never write into
/// freed memory, whatever order the test drops things in.
pub struct BufRing {
    ring: *mut sys::io_uring_buf_ring,
    data: *mut u8,
    pub entries: u16,
    pub size: usize,
    tail: u16,
    pub group: u16,
}

impl BufRing {
    /// Registers group `group` on `ring` with `entries` (a power of two)
    /// buffers of `size` bytes, all of them published.
    pub fn register(ring: &Ring, group: u16, entries: u16, size: usize) -> BufRing {
        assert!(entries.is_power_of_two());
        let ring_bytes = usize::from(entries) * std::mem::size_of::<sys::io_uring_buf>();
        let map = |len: usize| {
            // SAFETY: a fresh private anonymous mapping; no existing memory is touched.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            assert_ne!(p, libc::MAP_FAILED, "mmap: {}", std::io::Error::last_os_error());
            p
        };
        let ring_mem = map(ring_bytes).cast::<sys::io_uring_buf_ring>();
        let data = map(usize::from(entries) * size).cast::<u8>();
        let reg = sys::io_uring_buf_reg {
            ring_addr: ring_mem as u64,
            ring_entries: u32::from(entries),
            bgid: group,
            ..Default::default()
        };
        // SAFETY: `reg` is a valid io_uring_buf_reg naming a page-aligned
        // mapping of `entries` entries that is never unmapped.
        unsafe {
            sys::io_uring_register(
                ring.as_raw_fd(),
                sys::IORING_REGISTER_PBUF_RING,
                (&reg as *const sys::io_uring_buf_reg).cast(),
                1,
            )
        }
        .expect("IORING_REGISTER_PBUF_RING");
        let mut b = BufRing { ring: ring_mem, data, entries, size, tail: 0, group };
        for bid in 0..entries {
            b.push(bid);
        }
        b.publish();
        b
    }

    /// Writes buffer `bid` into the next entry (not visible before
    /// [`publish`](Self::publish)).
    pub fn push(&mut self, bid: u16) {
        assert!(bid < self.entries);
        let idx = usize::from(self.tail & (self.entries - 1));
        // SAFETY: idx < entries, inside the ring mapping; entry fields other
        // than `resv` (which overlays the tail in entry 0) are written.
        unsafe {
            let e = sys::io_uring_buf_ring::bufs_ptr(self.ring).add(idx);
            (*e).addr = self.data.add(usize::from(bid) * self.size) as u64;
            (*e).len = self.size as u32;
            (*e).bid = bid;
        }
        self.tail = self.tail.wrapping_add(1);
    }

    /// Publishes the pushed entries: a release store of the tail, so the
    /// kernel sees the entries written before it.
    pub fn publish(&self) {
        // SAFETY: the tail is a naturally aligned u16 inside the mapping,
        // shared with the kernel, which only reads it.
        let tail = unsafe { AtomicU16::from_ptr(sys::io_uring_buf_ring::tail_ptr(self.ring)) };
        tail.store(self.tail, Ordering::Release);
    }

    /// The first `len` bytes of buffer `bid`; call only for a buffer a CQE
    /// handed back and that was not recycled since.
    pub fn bytes(&self, bid: u16, len: usize) -> Vec<u8> {
        assert!(bid < self.entries && len <= self.size);
        // SAFETY: inside the data mapping; the kernel is done with this
        // buffer (its CQE was reaped) until it is pushed again.
        unsafe { std::slice::from_raw_parts(self.data.add(usize::from(bid) * self.size), len).to_vec() }
    }
}
