//! The Rust side of `cargo xtask compare` (xtask/src/compare.rs): the
//! workloads of `xtask/compare/liburing.c`, through uring and through the
//! `io-uring` crate, for exact instruction counts under callgrind.
//!
//! `compare <mode> <batch> <rounds> [file]`; every mode sets up one ring
//! (256 SQ entries, 512 CQ entries, `SINGLE_ISSUER | DEFER_TASKRUN |
//! NO_SQARRAY`), runs `rounds` rounds and prints a checksum. The harness
//! subtracts two runs, so set-up cancels. Modes (uring's first, then the
//! `io-uring` crate's, `peer-`):
//!
//! - `next-submit`, `push-submit`, `peer-submit`: per round, `batch` NOPs
//!   flagged `CQE_SKIP_SUCCESS` (no CQE), one `submit`: the push path alone.
//!   `next` writes the entry in place (`Ring::next_sqe`, `unsafe`), `push`
//!   is the typed, checked `RingOps::push_op(SqeContext::token(n), Nop)`.
//! - `next-round`, `reap-round`, `peer-round`: per round, `batch` raw NOPs,
//!   `submit_and_wait(batch)`, reap every CQE: through `Ring::completions`
//!   (in ring memory), `Ring::reap` (copied into `CqeSlot`s), the crate's
//!   `completion()`. Minus the `-submit` run: the reap side per CQE.
//! - `read-raw`, `read-safe`, `peer-read`: per round, `batch` 4 KiB
//!   `READ_FIXED` from registered file 0 (`file`) into registered buffer i,
//!   submit and wait for `batch` (`Ring::wait_completions`), reap every
//!   CQE in place. `raw` pushes `ReadFixed`
//!   with `push_op_unchecked`; `safe` goes through
//!   `FixedBuffers::read_fixed` and hands each CQE to
//!   `FixedBuffers::handle_cqe`.
//! - `recv`, `peer-recv`: one multishot receive on a socketpair selecting
//!   from a provided-buffer ring; per round, one 64-byte `write` to the
//!   peer, submit and wait for one CQE (`Ring::wait_completions`), take the
//!   buffer the CQE names, read a byte, recycle it. `batch` is ignored.
//!
//! - `echo`, `peer-echo`: TCP echo over loopback, `batch` connections
//!   (accepted at set-up), each server socket with a multishot receive
//!   from a provided-buffer ring; per round each client writes 64 bytes,
//!   the ring is driven (`wait_completions(1)`, CQEs in place) until every
//!   receive has been answered by a send from the received buffer (uring:
//!   the safe `BufRing::send`, the token in the ring's table until the
//!   send's CQE, `handle_send` gives it back, then it is recycled), and
//!   each client reads its echo.
//!
//! Each workload is its own function, never inlined into `main`, so
//! adding one changes the others' code as little as the compiler allows
//! (library functions with `#[inline]` still see every call site).
//!
//! Keep this file the only place the comparison touches uring's API.

use std::hint::black_box;
use std::os::fd::AsRawFd;

use io_uring::{IoUring, opcode, squeue, types};
use uring_buffers::{BufRing, BufRingConfig, FixedBuffers};
use uring_core::{CqeSlot, Options, Ring, SqeContext, SqeFlags, sys};
use uring_ops::cmd::Nop;
use uring_ops::file::ReadFixed;
use uring_ops::multishot::RecvMulti;
use uring_ops::{OpExt, RingOps, Target};

const READ_SIZE: usize = 4096;
const FILE_BLOCKS: u64 = 256;
const MSG: usize = 64;
const BUFS: u16 = 16;
const BUF_SIZE: u32 = 256;

fn ring() -> Ring {
    let mut ring = Ring::new(Options::default().entries(256).cq_entries(512).no_sqarray(true)).expect("ring");
    ring.start().expect("start");
    ring
}

fn peer() -> IoUring {
    IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_no_sqarray()
        .setup_cqsize(512)
        .build(256)
        .expect("ring")
}

fn block(round: u32, batch: u32, i: u32) -> u64 {
    u64::from(round * batch + i) % FILE_BLOCKS * READ_SIZE as u64
}

#[inline(never)]
fn nop_next(batch: u32, rounds: u32, submit_only: bool, slots_copy: bool) -> u64 {
    let mut ring = ring();
    let mut slots = vec![CqeSlot::EMPTY; batch as usize];
    let mut sum = 0u64;
    for round in 0..rounds {
        for i in 0..batch {
            // SAFETY: a NOP names no memory.
            let sqe = unsafe { ring.next_sqe() }.expect("next_sqe");
            sqe.opcode = sys::IORING_OP_NOP as u8;
            sqe.user_data = u64::from(round ^ i);
            if submit_only {
                sqe.set_sqe_flags(SqeFlags::CQE_SKIP_SUCCESS);
            }
        }
        if submit_only {
            sum += u64::from(ring.submit().expect("submit"));
            continue;
        }
        ring.submit_and_wait(batch).expect("submit");
        if slots_copy {
            let reaped = ring.reap(&mut slots).expect("reap");
            for cqe in reaped.iter() {
                sum = sum.wrapping_add(cqe.user_data()).wrapping_add(cqe.res() as u64);
            }
        } else {
            let mut pass = ring.completions().expect("completions");
            while let Some(cqe) = pass.next() {
                sum = sum.wrapping_add(cqe.user_data()).wrapping_add(cqe.res() as u64);
            }
        }
    }
    black_box(sum)
}

#[inline(never)]
fn nop_push(batch: u32, rounds: u32) -> u64 {
    let mut ring = ring();
    let mut sum = 0u64;
    for round in 0..rounds {
        for i in 0..batch {
            let ctx = SqeContext::token(u64::from(round ^ i)).expect("token");
            ring.push_op(ctx, Nop::new().with_sqe_flags(SqeFlags::CQE_SKIP_SUCCESS)).expect("push_op");
        }
        sum += u64::from(ring.submit().expect("submit"));
    }
    black_box(sum)
}

#[inline(never)]
fn peer_nop(batch: u32, rounds: u32, submit_only: bool) -> u64 {
    let mut ring = peer();
    let mut sum = 0u64;
    for round in 0..rounds {
        for i in 0..batch {
            let mut nop = opcode::Nop::new().build().user_data(u64::from(round ^ i));
            if submit_only {
                nop = nop.flags(squeue::Flags::SKIP_SUCCESS);
            }
            // SAFETY: a NOP names no memory.
            unsafe { ring.submission().push(&nop) }.expect("push");
        }
        if submit_only {
            sum += ring.submit().expect("submit") as u64;
            continue;
        }
        ring.submit_and_wait(batch as usize).expect("submit");
        for cqe in ring.completion() {
            sum = sum.wrapping_add(cqe.user_data()).wrapping_add(cqe.result() as u64);
        }
    }
    black_box(sum)
}

#[inline(never)]
fn read(path: &str, batch: u32, rounds: u32, safe: bool) -> u64 {
    let mut ring = ring();
    let file = std::fs::File::open(path).expect("open");
    ring.register().files(&[file.as_raw_fd()]).expect("register files");
    let mut fixed = FixedBuffers::register(&mut ring, batch, READ_SIZE).expect("register buffers");
    let bufs: Vec<*mut u8> = (0..batch).map(|i| fixed.buffer_mut(i).expect("buffer").as_mut_ptr()).collect();
    let mut sum = 0u64;
    for round in 0..rounds {
        for i in 0..batch {
            let offset = block(round, batch, i);
            if safe {
                fixed.read_fixed(&mut ring, Target::Fixed(0), i, 0..READ_SIZE, offset).expect("read_fixed");
            } else {
                let ctx = SqeContext::token(u64::from(i)).expect("token");
                // SAFETY: buffer i is registered, idle and outlives the
                // read, which is reaped within this round.
                unsafe {
                    let op = ReadFixed::from_raw_parts(Target::Fixed(0), bufs[i as usize], READ_SIZE as u32, i as u16)
                        .offset(offset);
                    ring.push_op_unchecked(ctx, op)
                }
                .expect("push_op_unchecked");
            }
        }
        if safe {
            let mut pass = ring.wait_completions(batch).expect("wait");
            while let Some(cqe) = pass.next() {
                let done = fixed.handle_cqe(&cqe).expect("a FixedBuffers CQE");
                sum = sum.wrapping_add(done.res as u64);
            }
        } else {
            let mut pass = ring.wait_completions(batch).expect("wait");
            while let Some(cqe) = pass.next() {
                sum = sum.wrapping_add(cqe.user_data()).wrapping_add(cqe.res() as u64);
            }
        }
    }
    black_box(sum)
}

#[inline(never)]
fn peer_read(path: &str, batch: u32, rounds: u32) -> u64 {
    let mut ring = peer();
    let file = std::fs::File::open(path).expect("open");
    ring.submitter().register_files(&[file.as_raw_fd()]).expect("register files");
    let mut mem = vec![0u8; batch as usize * READ_SIZE];
    let iovecs: Vec<libc::iovec> = mem
        .chunks_mut(READ_SIZE)
        .map(|c| libc::iovec { iov_base: c.as_mut_ptr().cast(), iov_len: READ_SIZE })
        .collect();
    // SAFETY: `mem` outlives the ring's use of it (the ring is dropped first).
    unsafe { ring.submitter().register_buffers(&iovecs) }.expect("register buffers");
    let mut sum = 0u64;
    for round in 0..rounds {
        for i in 0..batch {
            let read =
                opcode::ReadFixed::new(types::Fixed(0), iovecs[i as usize].iov_base.cast(), READ_SIZE as u32, i as u16)
                    .offset(block(round, batch, i))
                    .build()
                    .user_data(u64::from(i));
            // SAFETY: buffer i is registered and idle until its CQE, reaped
            // within this round.
            unsafe { ring.submission().push(&read) }.expect("push");
        }
        ring.submit_and_wait(batch as usize).expect("submit");
        for cqe in ring.completion() {
            sum = sum.wrapping_add(cqe.user_data()).wrapping_add(cqe.result() as u64);
        }
    }
    drop(ring);
    black_box(sum)
}

fn socketpair() -> (std::os::unix::net::UnixStream, std::os::unix::net::UnixStream) {
    std::os::unix::net::UnixStream::pair().expect("socketpair")
}

fn send(fd: i32, msg: &[u8; MSG]) {
    // SAFETY: `msg` is valid for MSG bytes.
    let n = unsafe { libc::write(fd, msg.as_ptr().cast(), MSG) };
    assert_eq!(n, MSG as isize, "write");
}

#[inline(never)]
fn recv(rounds: u32) -> u64 {
    let mut ring = ring();
    let (rx, tx) = socketpair();
    let mut br = BufRing::register(&mut ring, BufRingConfig::new(1, u32::from(BUFS), BUF_SIZE)).expect("bufring");
    let msg = [b'x'; MSG];
    let mut armed = false;
    let mut sum = 0u64;
    for _ in 0..rounds {
        if !armed {
            ring.push_op(SqeContext::token(7).expect("token"), RecvMulti::new(rx.as_raw_fd(), 1)).expect("recv");
        }
        send(tx.as_raw_fd(), &msg);
        let mut pass = ring.wait_completions(1).expect("wait");
        let cqe = pass.next().expect("a CQE");
        assert_eq!(cqe.res(), MSG as i32, "recv");
        armed = cqe.more();
        let buf = br.take(&cqe).expect("take").expect("a buffer");
        sum = sum.wrapping_add(u64::from(br.bytes(&buf)[0])).wrapping_add(cqe.res() as u64);
        br.recycle(buf).expect("recycle");
    }
    black_box(sum)
}

#[inline(never)]
fn peer_recv(rounds: u32) -> u64 {
    let mut ring = peer();
    let (rx, tx) = socketpair();
    let entries = usize::from(BUFS);
    let layout = std::alloc::Layout::from_size_align(entries * 16, 4096).expect("layout");
    // SAFETY: non-zero size.
    let base = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<types::BufRingEntry>();
    assert!(!base.is_null());
    let bufs = vec![0u8; entries * BUF_SIZE as usize];
    let mask = BUFS - 1;
    // SAFETY: `base` holds `entries` entries; the buffers outlive the ring.
    let tail = unsafe { types::BufRingEntry::tail(base) }.cast_mut();
    let add = |bid: u16, offset: u16| {
        // SAFETY: the index is masked into the ring; `bufs` holds every bid.
        unsafe {
            let tail_now = tail.read();
            let e = &mut *base.add(usize::from(tail_now.wrapping_add(offset) & mask));
            e.set_addr(bufs.as_ptr().add(usize::from(bid) * BUF_SIZE as usize) as u64);
            e.set_len(BUF_SIZE);
            e.set_bid(bid);
        }
    };
    let advance = |n: u16| {
        // SAFETY: the tail is the ring's, shared with the kernel: release.
        let t = unsafe { &*tail.cast::<std::sync::atomic::AtomicU16>() };
        t.store(t.load(std::sync::atomic::Ordering::Relaxed).wrapping_add(n), std::sync::atomic::Ordering::Release);
    };
    for bid in 0..BUFS {
        add(bid, bid);
    }
    advance(BUFS);
    // SAFETY: the ring memory stays valid until the ring is dropped.
    unsafe { ring.submitter().register_buf_ring_with_flags(base as u64, BUFS, 1, 0) }.expect("register buf ring");
    let msg = [b'x'; MSG];
    let mut armed = false;
    let mut sum = 0u64;
    for _ in 0..rounds {
        if !armed {
            let op = opcode::RecvMulti::new(types::Fd(rx.as_raw_fd()), 1).build().user_data(7);
            // SAFETY: the buffers belong to the registered group.
            unsafe { ring.submission().push(&op) }.expect("push");
        }
        send(tx.as_raw_fd(), &msg);
        ring.submit_and_wait(1).expect("submit");
        let cqe = ring.completion().next().expect("a CQE");
        assert_eq!(cqe.result(), MSG as i32, "recv");
        armed = io_uring::cqueue::more(cqe.flags());
        let bid = io_uring::cqueue::buffer_select(cqe.flags()).expect("a buffer");
        sum = sum.wrapping_add(u64::from(bufs[usize::from(bid) * BUF_SIZE as usize])).wrapping_add(cqe.result() as u64);
        add(bid, 0);
        advance(1);
    }
    drop(ring);
    // SAFETY: allocated above with `layout`; the ring is gone.
    unsafe { std::alloc::dealloc(base.cast(), layout) };
    black_box(sum)
}

const ECHO_BUFS: u16 = 64;
/// The `io-uring` crate's echo: `user_data` at or above this is a send's;
/// below, a receive's connection.
const SEND: u64 = 1 << 20;

/// `conns` connected pairs: (clients, accepted server sockets).
fn tcp_pairs(conns: u32) -> (Vec<std::net::TcpStream>, Vec<std::net::TcpStream>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    let addr = listener.local_addr().expect("addr");
    let mut clients = Vec::new();
    let mut servers = Vec::new();
    for _ in 0..conns {
        let c = std::net::TcpStream::connect(addr).expect("connect");
        let (s, _) = listener.accept().expect("accept");
        c.set_nodelay(true).expect("nodelay");
        s.set_nodelay(true).expect("nodelay");
        clients.push(c);
        servers.push(s);
    }
    (clients, servers)
}

fn read_echo(fd: i32) -> u8 {
    let mut back = [0u8; MSG];
    // SAFETY: `back` is valid for MSG bytes.
    let n = unsafe { libc::read(fd, back.as_mut_ptr().cast(), MSG) };
    assert_eq!(n, MSG as isize, "read");
    back[0]
}

#[inline(never)]
fn echo(conns: u32, rounds: u32) -> u64 {
    let mut ring = ring();
    let (clients, servers) = tcp_pairs(conns);
    let mut br = BufRing::register(&mut ring, BufRingConfig::new(1, u32::from(ECHO_BUFS), BUF_SIZE)).expect("bufring");
    for (i, s) in servers.iter().enumerate() {
        ring.push_op(SqeContext::token(i as u64).expect("token"), RecvMulti::new(s.as_raw_fd(), 1)).expect("recv");
    }
    let msg = [b'e'; MSG];
    let mut echo = Vec::with_capacity(conns as usize);
    let mut sum = 0u64;
    for _ in 0..rounds {
        for c in &clients {
            send(c.as_raw_fd(), &msg);
        }
        let mut pending = 2 * conns;
        while pending > 0 {
            // The CQEs are handled in the ring's own memory; each send's
            // CQE gives its buffer back.
            let mut pass = ring.wait_completions(1).expect("wait");
            while let Some(cqe) = pass.next() {
                pending -= 1;
                if let Some(done) = br.handle_send(&cqe) {
                    assert_eq!(done.res, MSG as i32, "send");
                    br.recycle_held(done.token).expect("recycle");
                    continue;
                }
                assert!(cqe.res() == MSG as i32 && cqe.more(), "recv");
                let conn = cqe.context().as_token().expect("a token") as usize;
                echo.push((conn, br.take(&cqe).expect("take").expect("a buffer")));
            }
            drop(pass);
            // Each received buffer goes straight back out: the safe send
            // from a held buffer (the token stays in the ring's table until
            // the send's CQE).
            for (conn, buf) in echo.drain(..) {
                br.send(&mut ring, servers[conn].as_raw_fd(), buf, 0, 0).expect("send");
            }
        }
        for c in &clients {
            sum += u64::from(read_echo(c.as_raw_fd()));
        }
    }
    black_box(sum)
}

#[inline(never)]
fn peer_echo(conns: u32, rounds: u32) -> u64 {
    let mut ring = peer();
    let (clients, servers) = tcp_pairs(conns);
    let entries = usize::from(ECHO_BUFS);
    let layout = std::alloc::Layout::from_size_align(entries * 16, 4096).expect("layout");
    // SAFETY: non-zero size.
    let base = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<types::BufRingEntry>();
    assert!(!base.is_null());
    let bufs = vec![0u8; entries * BUF_SIZE as usize];
    let mask = ECHO_BUFS - 1;
    // SAFETY: `base` holds `entries` entries; the buffers outlive the ring.
    let tail = unsafe { types::BufRingEntry::tail(base) }.cast_mut();
    let add = |bid: u16, offset: u16| {
        // SAFETY: the index is masked into the ring; `bufs` holds every bid.
        unsafe {
            let tail_now = tail.read();
            let e = &mut *base.add(usize::from(tail_now.wrapping_add(offset) & mask));
            e.set_addr(bufs.as_ptr().add(usize::from(bid) * BUF_SIZE as usize) as u64);
            e.set_len(BUF_SIZE);
            e.set_bid(bid);
        }
    };
    let advance = |n: u16| {
        // SAFETY: the tail is the ring's, shared with the kernel: release.
        let t = unsafe { &*tail.cast::<std::sync::atomic::AtomicU16>() };
        t.store(t.load(std::sync::atomic::Ordering::Relaxed).wrapping_add(n), std::sync::atomic::Ordering::Release);
    };
    for bid in 0..ECHO_BUFS {
        add(bid, bid);
    }
    advance(ECHO_BUFS);
    // SAFETY: the ring memory stays valid until the ring is dropped.
    unsafe { ring.submitter().register_buf_ring_with_flags(base as u64, ECHO_BUFS, 1, 0) }.expect("buf ring");
    for (i, s) in servers.iter().enumerate() {
        let op = opcode::RecvMulti::new(types::Fd(s.as_raw_fd()), 1).build().user_data(i as u64);
        // SAFETY: the buffers belong to the registered group.
        unsafe { ring.submission().push(&op) }.expect("push");
    }
    let msg = [b'e'; MSG];
    let mut sum = 0u64;
    for _ in 0..rounds {
        for c in &clients {
            send(c.as_raw_fd(), &msg);
        }
        let mut pending = 2 * conns;
        while pending > 0 {
            ring.submit_and_wait(1).expect("submit");
            let (submitter, mut sq, cq) = ring.split();
            let _ = submitter;
            for cqe in cq {
                pending -= 1;
                let ud = cqe.user_data();
                if ud >= SEND {
                    assert_eq!(cqe.result(), MSG as i32, "send");
                    add((ud - SEND) as u16, 0);
                    advance(1);
                    continue;
                }
                assert!(cqe.result() == MSG as i32 && io_uring::cqueue::more(cqe.flags()), "recv");
                let bid = io_uring::cqueue::buffer_select(cqe.flags()).expect("a buffer");
                // SAFETY: the buffer stays out of the ring until the send's CQE.
                let ptr = unsafe { bufs.as_ptr().add(usize::from(bid) * BUF_SIZE as usize) };
                let op = opcode::Send::new(types::Fd(servers[ud as usize].as_raw_fd()), ptr, MSG as u32)
                    .build()
                    .user_data(SEND + u64::from(bid));
                // SAFETY: as above.
                unsafe { sq.push(&op) }.expect("push");
            }
            sq.sync();
        }
        for c in &clients {
            sum += u64::from(read_echo(c.as_raw_fd()));
        }
    }
    drop(ring);
    // SAFETY: allocated above with `layout`; the ring is gone.
    unsafe { std::alloc::dealloc(base.cast(), layout) };
    black_box(sum)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: compare <mode> <batch> <rounds> [file] (modes: see the source)";
    let (mode, batch, rounds): (&str, u32, u32) = match &args[..] {
        [_, m, b, r, ..] => (m.as_str(), b.parse().expect(usage), r.parse().expect(usage)),
        _ => panic!("{usage}"),
    };
    let file = || args.get(4).map(String::as_str).expect(usage);
    let sum = match mode {
        "next-submit" => nop_next(batch, rounds, true, false),
        "push-submit" => nop_push(batch, rounds),
        "peer-submit" => peer_nop(batch, rounds, true),
        "next-round" => nop_next(batch, rounds, false, false),
        "reap-round" => nop_next(batch, rounds, false, true),
        "peer-round" => peer_nop(batch, rounds, false),
        "read-raw" => read(file(), batch, rounds, false),
        "read-safe" => read(file(), batch, rounds, true),
        "peer-read" => peer_read(file(), batch, rounds),
        "recv" => recv(rounds),
        "peer-recv" => peer_recv(rounds),
        "echo" => echo(batch, rounds),
        "peer-echo" => peer_echo(batch, rounds),
        _ => panic!("{usage}"),
    };
    println!("{sum}");
}
