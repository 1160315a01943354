//! Receive throughput over loopback TCP: zero-copy receive without a
//! device (`ZCRX_REG_NODEV`, the copy fallback: the kernel copies each
//! chunk from the socket into the area) against a plain multishot receive
//! into provided buffers, through this workspace and through the
//! `io-uring` crate, in the same group.
//!
//! - `uring-zcrx RECV_ZC (copy fallback)`: [`ZcrxReceiver`] over a 1 MiB
//!   area of 4 KiB buffers and a 256-entry refill ring; the handler checks
//!   every byte and releases the buffer; the receiver flushes the refill
//!   ring and is started again whenever the area runs dry.
//! - `uring-buffers RECV multishot (provided buffers)`: `RecvMulti` over a
//!   [`BufRing`] of 256 × 4 KiB; each buffer checked and recycled; re-armed
//!   when the ring runs dry (`ENOBUFS`).
//! - `io-uring RECV_ZC (copy fallback, hand-written)`: the same zero-copy
//!   receive on the `io-uring` crate, as its users must write it: the
//!   crate has `opcode::RecvZc`, `register_ifq` and the uapi structures
//!   but no refill ring, flush or `ZCRX_REG_NODEV` (taken from uring-sys),
//!   so the area, the refill ring (entries and tail by hand), the flush
//!   (`IORING_REGISTER_ZCRX_CTRL`, a raw `io_uring_register`) and the
//!   restart are written here, with the same sizes and flush threshold.
//! - `io-uring RECV multishot (provided buffers)`: the plain receive on the
//!   `io-uring` crate (`opcode::RecvMulti`, a buffer ring registered with
//!   `register_buf_ring_with_flags` and managed by hand).
//!
//! The `io-uring` rings have the same setup flags as ours
//! (`SINGLE_ISSUER | DEFER_TASKRUN`).
//!
//! The copy fallback copies every byte, as the plain receive does, so this
//! shows the overhead of its protocol (32-byte CQEs, the refill ring and
//! its flushes, restarts when the area is exhausted) honestly; with a NIC
//! queue that supports it, the copy disappears.
//!
//! A sender thread per variant writes a pattern without pause; each
//! iteration receives 1 MiB and checks every byte. `ZCRX_REG_NODEV` needs
//! Linux 7.2: elsewhere the zcrx variant prints why it is skipped and the
//! other two run. On 7.2+ run it in a VM with
//! `cargo xtask vm-bench --bench uring-zcrx/bench:throughput`; on this
//! host, `cargo bench -p uring-zcrx --bench throughput`.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU16, AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use io_uring::types::{
    BufRingEntry, Fd, io_uring_region_desc, io_uring_zcrx_area_reg, io_uring_zcrx_ifq_reg, io_uring_zcrx_rqe,
};
use io_uring::{IoUring, cqueue, opcode, squeue};
use uring_buffers::{BufRing, BufRingConfig};
use uring_core::{CqeSize, CqeSlot, Error as CoreError, Mapping, Options, Ring, SqeContext};
use uring_ops::multishot::RecvMulti;
use uring_ops::prelude::*;
use uring_zcrx::{Zcrx, ZcrxBuffer, ZcrxConfig, ZcrxEnd, ZcrxHandler, ZcrxReceiver, ZcrxSupport, ZcrxTarget};

/// Bytes per iteration.
const CHUNK: u64 = 1 << 20;
/// Buffers of every variant: 256 × 4 KiB (1 MiB).
const BUFS: u16 = 256;
const BUF_SIZE: u32 = 4096;
/// The pattern's period: a prime, so that buffer boundaries wander over it.
const PERIOD: usize = 251;
/// How long a wait for one CQE may take before the bench gives up.
const STALL: Duration = Duration::from_secs(20);
/// Every ring's SQ and CQ sizes. The CQ has room for more data CQEs than
/// the area has buffers, so a receive pass never ends for want of CQ
/// entries (`ZcrxEnd::CqFull`), which would cost a restart.
const SQ: u32 = 64;
const CQ: u32 = 1024;

/// The pattern from any phase: `TABLE[p % PERIOD..]` is the stream from
/// position `p`, for up to 64 KiB.
fn table() -> &'static [u8] {
    static T: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    T.get_or_init(|| (0..PERIOD + (64 << 10)).map(|k| (k % PERIOD) as u8).collect())
}

/// Checks `data` against the pattern at stream position `pos`.
#[inline]
fn check(pos: u64, data: &[u8]) {
    let at = (pos % PERIOD as u64) as usize;
    assert!(data == &table()[at..at + data.len()], "pattern mismatch in {} bytes at stream position {pos}", data.len());
}

/// A connected loopback pair and a sender writing the pattern into the
/// client side until the server side closes.
fn stream() -> (TcpStream, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    let sender = std::thread::spawn(move || {
        let mut pos = 0usize;
        loop {
            let at = pos % PERIOD;
            match client.write(&table()[at..at + (64 << 10)]) {
                Ok(n) => pos += n,
                Err(_) => return,
            }
        }
    });
    (server, sender)
}

type Group<'a> = criterion::BenchmarkGroup<'a, criterion::measurement::WallTime>;

/// Benchmarks `name` in `g`: each iteration runs `pass` (reap once, check
/// and hand back what arrived, re-arm if needed) until [`CHUNK`] more bytes
/// have arrived than at the end of the previous iteration, so overshoot
/// carries over instead of adding up. `pass` returns the stream position
/// after it.
fn measure(g: &mut Group<'_>, name: &str, mut pass: impl FnMut() -> u64) {
    let mut target = 0u64;
    g.bench_function(name, |b| {
        b.iter(|| {
            target += CHUNK;
            while pass() < target {}
        })
    });
}

/// Reaps at least one CQE into `slots`, failing after [`STALL`].
fn reap(ring: &mut Ring, slots: &mut [CqeSlot]) -> usize {
    match ring.wait_for(slots, 1, Some(STALL)) {
        Ok(done) => done.len(),
        Err(CoreError::WouldBlock) => panic!("no completion within {STALL:?}"),
        Err(e) => panic!("wait_for: {e}"),
    }
}

/// Checks each chunk and releases it at once.
struct Check {
    pos: u64,
}

impl ZcrxHandler for Check {
    #[inline]
    fn on_data(&mut self, buf: ZcrxBuffer) -> bool {
        check(self.pos, buf.as_slice());
        self.pos += buf.len() as u64;
        drop(buf); // releases (queued behind the ring if it is full)
        true
    }

    fn on_error(&mut self, err: std::io::Error) -> bool {
        panic!("RECV_ZC failed: {err}");
    }
}

fn zcrx_variant(c: &mut Group<'_>) {
    const NAME: &str = "uring-zcrx RECV_ZC (copy fallback)";
    let mut ring = Ring::new(Options::default().entries(SQ).cq_entries(CQ).cqe_size(CqeSize::Big)).expect("ring");
    ring.start().expect("start");
    let support = ZcrxSupport::probe(ring.features());
    if !support.nodev() {
        println!(
            "SKIPPED {NAME}: kernel {} has no ZCRX_REG_NODEV (7.2+); run `cargo xtask vm-bench --bench \
             uring-zcrx/bench:throughput` to measure it on a newer kernel",
            support.kernel_release()
        );
        return;
    }
    let cfg = ZcrxConfig::new(ZcrxTarget::NoDevice)
        .area_len(usize::from(BUFS) * BUF_SIZE as usize)
        .refill_entries(u32::from(BUFS));
    let zcrx = Zcrx::register(&mut ring, &cfg).unwrap_or_else(|e| panic!("Zcrx::register: {e}"));
    let (server, sender) = stream();
    let mut rx = ZcrxReceiver::new(&zcrx, Check { pos: 0 });
    rx.start(&mut ring, server.as_raw_fd()).expect("start receiving");
    let mut slots = [CqeSlot::EMPTY; 128];
    let mut restarts = 0u64;
    measure(c, NAME, || {
        let n = reap(&mut ring, &mut slots);
        for slot in &slots[..n] {
            assert!(rx.handle_cqe(&mut ring, &slot.cqe()).is_some(), "a completion not of the receiver");
        }
        if let Some(e) = rx.take_error() {
            panic!("receiver: {e}");
        }
        if rx.is_stopped() {
            assert!(rx.end().is_some_and(ZcrxEnd::is_resumable), "the stream ended: {:?}", rx.end());
            restarts += 1;
            rx.start(&mut ring, server.as_raw_fd()).expect("start again after the area ran dry");
        }
        rx.handler().pos
    });
    println!("{NAME}: {} MiB checked, {restarts} restarts after the area ran dry", rx.handler().pos >> 20);
    drop(server);
    drop(rx);
    drop(ring);
    sender.join().expect("sender");
}

fn buffers_variant(c: &mut Group<'_>) {
    const NAME: &str = "uring-buffers RECV multishot (provided buffers)";
    let mut ring = Ring::new(Options::default().entries(SQ).cq_entries(CQ)).expect("ring");
    let mut br = BufRing::register(&mut ring, BufRingConfig::new(1, u32::from(BUFS), BUF_SIZE)).expect("BufRing");
    ring.start().expect("start");
    let (server, sender) = stream();
    let recv = RecvMulti::new(server.as_raw_fd(), br.group());
    let ctx = SqeContext::for_fd(server.as_raw_fd());
    ring.push_op(ctx, recv).expect("push RecvMulti");
    let mut slots = [CqeSlot::EMPTY; 128];
    let mut pos = 0u64;
    let mut rearms = 0u64;
    measure(c, NAME, || {
        let n = reap(&mut ring, &mut slots);
        let mut rearm = false;
        for slot in &slots[..n] {
            let cqe = slot.cqe();
            if let Some(buf) = br.take(&cqe).expect("take") {
                let data = br.bytes(&buf);
                check(pos, data);
                pos += data.len() as u64;
                br.recycle(buf).expect("recycle");
            }
            if !cqe.more() {
                assert_eq!(cqe.res(), -libc::ENOBUFS, "the multishot receive ended");
                rearm = true;
            }
        }
        if rearm {
            rearms += 1;
            ring.push_op(ctx, recv).expect("push RecvMulti");
        }
        pos
    });
    println!("{NAME}: {} MiB checked, {rearms} re-arms after the buffers ran dry", pos >> 20);
    drop(server);
    drop(ring);
    sender.join().expect("sender");
}

/// A provided-buffer ring managed by hand, as `io-uring` crate users do.
struct RawBufRing {
    /// The entries; dropped after the ring (see `io_uring_variant`).
    mem: Mapping,
    data: Vec<u8>,
    tail: u16,
}

impl RawBufRing {
    const GROUP: u16 = 1;

    fn register(uring: &IoUring) -> std::io::Result<Self> {
        let mem = anon(usize::from(BUFS) * size_of::<BufRingEntry>());
        let ring = mem.ptr().cast::<BufRingEntry>();
        let mut br = RawBufRing { mem, data: vec![0; usize::from(BUFS) * BUF_SIZE as usize], tail: 0 };
        // SAFETY: the mapping stays until `Drop`, which runs after the ring
        // (and so the registration) is gone: see `io_uring_variant`.
        unsafe { uring.submitter().register_buf_ring_with_flags(ring as u64, BUFS, Self::GROUP, 0) }?;
        for bid in 0..BUFS {
            br.add(bid);
        }
        Ok(br)
    }

    fn add(&mut self, bid: u16) {
        let addr = self.data.as_ptr() as u64 + u64::from(bid) * u64::from(BUF_SIZE);
        let ring = self.mem.ptr().cast::<BufRingEntry>();
        // SAFETY: the index is masked into the ring; the entry at our tail
        // is not the kernel's until the tail store below covers it.
        let e = unsafe { &mut *ring.add(usize::from(self.tail & (BUFS - 1))) };
        e.set_addr(addr);
        e.set_len(BUF_SIZE);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: the tail overlays entry 0's reserved field, an aligned u16
        // inside the mapping.
        let tail = unsafe { AtomicU16::from_ptr(BufRingEntry::tail(ring).cast_mut()) };
        tail.store(self.tail, Ordering::Release);
    }

    fn bytes(&self, bid: u16, len: usize) -> &[u8] {
        &self.data[usize::from(bid) * BUF_SIZE as usize..][..len]
    }
}

fn io_uring_variant(c: &mut Group<'_>) {
    const NAME: &str = "io-uring RECV multishot (provided buffers)";
    let mut uring: IoUring = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_cqsize(CQ)
        .build(SQ)
        .expect("io-uring ring");
    let mut br = RawBufRing::register(&uring).expect("buffer ring");
    let (server, sender) = stream();
    let recv = opcode::RecvMulti::new(Fd(server.as_raw_fd()), RawBufRing::GROUP).build().user_data(7);
    // SAFETY: the operation names only the registered buffer ring, which
    // outlives the ring.
    unsafe { uring.submission().push(&recv) }.expect("push RecvMulti");
    let mut pos = 0u64;
    let mut rearms = 0u64;
    measure(c, NAME, || {
        uring.submit_and_wait(1).expect("submit_and_wait");
        let mut rearm = false;
        for cqe in uring.completion() {
            let res = cqe.result();
            if res > 0 {
                let bid = io_uring::cqueue::buffer_select(cqe.flags()).expect("a buffer id");
                check(pos, br.bytes(bid, res as usize));
                pos += res as u64;
                br.add(bid);
            }
            if !io_uring::cqueue::more(cqe.flags()) {
                assert_eq!(res, -libc::ENOBUFS, "the multishot receive ended");
                rearm = true;
            }
        }
        if rearm {
            rearms += 1;
            // SAFETY: as above.
            unsafe { uring.submission().push(&recv) }.expect("push RecvMulti");
        }
        pos
    });
    println!("{NAME}: {} MiB checked, {rearms} re-arms after the buffers ran dry", pos >> 20);
    drop(server);
    drop(uring);
    drop(br);
    sender.join().expect("sender");
}

/// An anonymous mapping (unmapped on drop, after the ring that used it:
/// the variants drop their rings first).
fn anon(len: usize) -> Mapping {
    Mapping::anonymous(len, false).expect("mmap")
}

/// Zero-copy receive without a device, written by hand on the `io-uring`
/// crate (skipped, saying why, when the kernel cannot).
fn io_uring_zcrx_variant(c: &mut Group<'_>) {
    const NAME: &str = "io-uring RECV_ZC (copy fallback, hand-written)";
    const ENTRIES: u32 = BUFS as u32;
    const FLUSH_AT: u32 = ENTRIES / 4;
    let uring: IoUring<squeue::Entry, cqueue::Entry32> = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_cqsize(CQ)
        .build(SQ)
        .expect("io-uring ring (CQE32)");
    let area = anon(usize::from(BUFS) * BUF_SIZE as usize);
    // The header (head and tail on their own cache lines from 7.3) fits a
    // page; the entries follow where the kernel says.
    let region = anon(4096 + ENTRIES as usize * size_of::<io_uring_zcrx_rqe>());
    let mut area_reg = io_uring_zcrx_area_reg { addr: area.ptr() as u64, len: area.len() as u64, ..Default::default() };
    let mut rd = io_uring_region_desc {
        user_addr: region.ptr() as u64,
        size: region.len() as u64,
        flags: uring_sys::IORING_MEM_REGION_TYPE_USER,
        ..Default::default()
    };
    let mut reg = io_uring_zcrx_ifq_reg {
        rq_entries: ENTRIES,
        flags: uring_sys::ZCRX_REG_NODEV,
        area_ptr: (&raw mut area_reg) as u64,
        region_ptr: (&raw mut rd) as u64,
        ..Default::default()
    };
    // Not `Submitter::register_ifq`: it takes `&io_uring_zcrx_ifq_reg`, but
    // the kernel writes the instance id and the refill ring's offsets back
    // into it (and the token into the area descriptor), which a shared
    // reference does not allow; the compiler may keep the zeroes.
    // SAFETY: `reg` names the area and region descriptors, live for the
    // call; the kernel pins the area and the region, which stay mapped
    // until after the ring is dropped (the end of this function).
    let res = unsafe {
        uring_sys::io_uring_register(
            uring.as_raw_fd(),
            uring_sys::IORING_REGISTER_ZCRX_IFQ,
            (&raw mut reg).cast::<libc::c_void>(),
            1,
        )
    };
    if let Err(e) = res {
        println!("SKIPPED {NAME}: IORING_REGISTER_ZCRX_IFQ with ZCRX_REG_NODEV: {e} (needs Linux 7.2+)");
        return;
    }
    let id = reg.zcrx_id;
    let token = area_reg.rq_area_token;
    // SAFETY: the offsets come from the kernel and lie inside the region,
    // which stays mapped until after the ring is dropped.
    let (head, tail, rqes) = unsafe {
        (
            AtomicU32::from_ptr(region.ptr().add(reg.offsets.head as usize).cast()),
            AtomicU32::from_ptr(region.ptr().add(reg.offsets.tail as usize).cast()),
            region.ptr().add(reg.offsets.rqes as usize).cast::<io_uring_zcrx_rqe>(),
        )
    };
    let ring_fd = uring.as_raw_fd();
    let flush = || {
        // SAFETY: all zeroes is `zcrx_ctrl`'s "no arguments" value.
        let mut ctrl: uring_sys::zcrx_ctrl = unsafe { std::mem::zeroed() };
        ctrl.zcrx_id = id;
        ctrl.op = uring_sys::ZCRX_CTRL_FLUSH_RQ;
        // SAFETY: `ctrl` is valid for the call; the kernel keeps nothing.
        unsafe {
            uring_sys::io_uring_register(ring_fd, uring_sys::IORING_REGISTER_ZCRX_CTRL, (&raw const ctrl).cast(), 0)
        }
        .expect("ZCRX_CTRL_FLUSH_RQ");
    };
    let (server, sender) = stream();
    let recv = opcode::RecvZc::new(Fd(server.as_raw_fd()), 0).ifq(id).build().user_data(9);
    let mut uring = uring;
    // SAFETY: the operation names the registered area, which outlives the
    // ring.
    unsafe { uring.submission().push(&recv) }.expect("push RecvZc");
    let mut local_tail = 0u32;
    let mut pos = 0u64;
    let mut restarts = 0u64;
    measure(c, NAME, || {
        uring.submit_and_wait(1).expect("submit_and_wait");
        let mut restart = false;
        for cqe in uring.completion() {
            let res = cqe.result();
            if !cqueue::more(cqe.flags()) {
                // Out of buffers or of CQ entries: restart.
                assert!(res == -libc::ENOMEM || res == -libc::ENOSPC, "the stream ended: {res}");
                restart = true;
                continue;
            }
            assert!(res > 0, "RECV_ZC: {}", std::io::Error::from_raw_os_error(-res));
            let off = cqe.big_cqe()[0];
            assert_eq!(off & uring_sys::IORING_ZCRX_AREA_MASK, token, "another area's token");
            let start = (off & !uring_sys::IORING_ZCRX_AREA_MASK) as usize;
            assert!(start + res as usize <= area.len(), "a buffer outside the area");
            // SAFETY: inside the area (checked); the kernel does not
            // write it again before its refill entry is consumed.
            let data = unsafe { std::slice::from_raw_parts(area.ptr().add(start), res as usize) };
            check(pos, data);
            pos += res as u64;
            // The release: the entry, then the tail. The ring cannot
            // be full: at most ENTRIES buffers exist and every one
            // is released at once, consumed at each flush.
            assert!(local_tail.wrapping_sub(head.load(Ordering::Acquire)) < ENTRIES, "refill ring full");
            // SAFETY: the slot is inside the entry array and free
            // (the kernel's head is past its previous use).
            unsafe {
                rqes.add((local_tail & (ENTRIES - 1)) as usize).write(io_uring_zcrx_rqe {
                    off,
                    len: res as u32,
                    __pad: 0,
                })
            };
            local_tail = local_tail.wrapping_add(1);
            tail.store(local_tail, Ordering::Release);
        }
        let pending = local_tail.wrapping_sub(head.load(Ordering::Acquire));
        if pending >= FLUSH_AT || (restart && pending > 0) {
            flush();
        }
        if restart {
            restarts += 1;
            // SAFETY: as above.
            unsafe { uring.submission().push(&recv) }.expect("push RecvZc");
        }
        pos
    });
    println!("{NAME}: {} MiB checked, {restarts} restarts after the area ran dry", pos >> 20);
    drop(server);
    drop(uring);
    drop(region);
    drop(area);
    sender.join().expect("sender");
}

fn throughput(c: &mut Criterion) {
    let mut g = c.benchmark_group("recv");
    g.throughput(Throughput::Bytes(CHUNK));
    zcrx_variant(&mut g);
    io_uring_zcrx_variant(&mut g);
    buffers_variant(&mut g);
    io_uring_variant(&mut g);
    g.finish();
}

criterion_group!(benches, throughput);
criterion_main!(benches);
