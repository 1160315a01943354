//! A loopback echo server on one io_uring, one thread, with a built-in load
//! generator that checks every byte it gets back.
//!
//! TCP: the listener is made by the ring (`uring_ops::listener`: socket,
//! bind, listen as io_uring operations, port 0), ONE multishot accept takes
//! every connection, and each connection gets ONE multishot receive
//! (in bundles when the kernel has `IORING_FEAT_RECVSEND_BUNDLE`) that draws
//! its buffers from a [`BufRing`]. Each received buffer is echoed straight
//! from where the kernel put it: the [`Buf`] (or [`Bundle`]) token is held
//! until the send's CQE, then recycled, so the send names memory the
//! kernel cannot reuse meanwhile, and nothing is copied. Partial sends
//! send the rest; a stream that runs out of buffers (`-ENOBUFS`) is re-armed
//! once buffers are back; end of stream closes the connection; an error
//! closes only that connection.
//!
//! UDP: a ping-pong server on its own ring: one multishot `recvmsg` over a
//! provided-buffer ring (the peer address comes in the buffer, in front of
//! the payload), each datagram sent back with `sendto` from that buffer.
//!
//! Load mode: the server runs on its own thread; N client threads with
//! blocking `std` sockets send `--size`-byte messages with a pattern, read
//! the echo, compare every byte and record the round trip. It prints
//! requests per second and p50/p99 latency, and `echo: OK` only if every
//! byte matched (the exit status is non-zero otherwise).
//!
//! ```text
//! cargo run --release -p uring-buffers --example echo                  # TCP, then UDP, briefly
//! cargo run --release -p uring-buffers --example echo -- --clients 8 --seconds 3 --size 64 --tcp
//! cargo run --release -p uring-buffers --example echo -- --udp --size 1024
//! cargo run --release -p uring-buffers --example echo -- --serve       # TCP and UDP until killed
//! ```

#![allow(dead_code)] // Parts serve the test and the benchmark, and `main` serves neither.

use std::collections::VecDeque;
use std::io::{IoSlice, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use uring_buffers::{Buf, BufRing, BufRingConfig, Bundle};
use uring_core::{CqeSlot, Error as RingError, FeatureFlags, HandleCqe, Options, Ring, SqeContext, SqeFlags, sys};
use uring_ops::cmd::SetSockOpt;
use uring_ops::listener::{ListenerHandler, ListenerId, ListenerManager, ListenerPhase};
use uring_ops::multishot::{AcceptMulti, RecvBundleMulti, RecvMsgMulti, RecvMsgOut, RecvMulti};
use uring_ops::net::{Send, SendMsg};
use uring_ops::socket::Shutdown;
use uring_ops::{Prepare, RingOps};

/// Errors of this example: a message saying what failed.
type Result<T, E = String> = std::result::Result<T, E>;

const OP_ACCEPT: u8 = sys::IORING_OP_ACCEPT as u8;
const OP_RECV: u8 = sys::IORING_OP_RECV as u8;
const OP_RECVMSG: u8 = sys::IORING_OP_RECVMSG as u8;
const OP_SEND: u8 = sys::IORING_OP_SEND as u8;
const OP_SENDMSG: u8 = sys::IORING_OP_SENDMSG as u8;
const OP_URING_CMD: u8 = sys::IORING_OP_URING_CMD as u8;
const OP_SHUTDOWN: u8 = sys::IORING_OP_SHUTDOWN as u8;

/// The value of `TCP_NODELAY` the server sets on each connection (a
/// `c_int` 1): static, so it is valid for as long as any request may read
/// it, and `SetSockOpt::from_static` takes it without `unsafe`.
static ONE: [u8; size_of::<libc::c_int>()] = (1 as libc::c_int).to_ne_bytes();

/// How long the server blocks before looking at its stop flag.
const TICK: Duration = Duration::from_millis(50);

/// Which protocol a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// TCP: multishot accept, multishot (bundle) receive, send.
    Tcp,
    /// UDP: multishot recvmsg, sendto.
    Udp,
}

/// How the server is set up.
#[derive(Debug, Clone, Copy)]
pub struct ServerConfig {
    /// Receive in bundles when the kernel can (TCP).
    pub bundles: bool,
    /// Buffers in the provided-buffer ring (a power of two).
    pub entries: u32,
    /// Bytes per buffer (TCP; UDP buffers are sized for the largest
    /// datagram).
    pub buf_size: u32,
    /// SQ entries.
    pub ring_entries: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig { bundles: true, entries: 1024, buf_size: 4096, ring_entries: 512 }
    }
}

/// What the server counted.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerStats {
    /// Connections accepted (TCP).
    pub accepted: u64,
    /// Receive CQEs that carried data.
    pub recv_cqes: u64,
    /// Bytes received and echoed.
    pub bytes: u64,
    /// Sends that sent less than asked (the rest was sent after).
    pub partial_sends: u64,
    /// Receive streams re-armed after `-ENOBUFS` (or another clean end).
    pub rearms: u64,
    /// The most buffers one bundle CQE filled.
    pub widest_bundle: usize,
    /// Connections closed on an error.
    pub conn_errors: u64,
    /// Whether the receives used bundles.
    pub bundles: bool,
}

/// A running echo server: its address, and how to stop it.
#[derive(Debug)]
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<Result<ServerStats>>,
}

impl Server {
    /// Starts a server on its own thread (one ring, single issuer) and
    /// waits until it listens.
    pub fn spawn(proto: Proto, cfg: ServerConfig, udp_max: usize) -> Result<Server> {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let flag = stop.clone();
        let thread = thread::Builder::new()
            .name(format!("echo-{proto:?}").to_lowercase())
            .spawn(move || match proto {
                Proto::Tcp => serve_tcp(cfg, &flag, tx),
                Proto::Udp => serve_udp(cfg, udp_max, &flag, tx),
            })
            .map_err(|e| format!("spawning the server thread: {e}"))?;
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(addr) => Ok(Server { addr, stop, thread }),
            Err(_) => {
                stop.store(true, Ordering::Relaxed);
                match thread.join() {
                    Ok(Err(e)) => Err(e),
                    _ => Err("the server did not start within 10 s".into()),
                }
            }
        }
    }

    /// Stops the server and returns what it counted.
    pub fn stop(self) -> Result<ServerStats> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().map_err(|_| "the server thread panicked".to_string())?
    }
}

/// Queues an operation that names no caller memory, submitting first if
/// the SQ is full.
fn push_safe<O: uring_ops::SafeOp + Copy>(ring: &mut Ring, ctx: SqeContext, op: O) -> Result<(), RingError> {
    match ring.push_op(ctx, op) {
        Err(RingError::QueueFull { .. }) => {
            ring.submit()?;
            ring.push_op(ctx, op).map(drop)
        }
        r => r.map(drop),
    }
}

/// Queues an operation that names memory, submitting first if the SQ is
/// full.
///
/// # Safety
///
/// As for [`RingOps::push_op_unchecked`]: the memory `op` names must stay
/// valid, and unwritten, until its CQE is reaped.
unsafe fn push_unchecked<O: Prepare + Copy>(ring: &mut Ring, ctx: SqeContext, op: O) -> Result<(), RingError> {
    // SAFETY: forwarded to the caller.
    match unsafe { ring.push_op_unchecked(ctx, op) } {
        Err(RingError::QueueFull { .. }) => {
            ring.submit()?;
            // SAFETY: forwarded to the caller.
            unsafe { ring.push_op_unchecked(ctx, op) }.map(drop)
        }
        r => r.map(drop),
    }
}

/// Reaps a batch into `slots`, blocking up to [`TICK`]; 0 when nothing came.
fn reap(ring: &mut Ring, slots: &mut [CqeSlot]) -> Result<usize> {
    match ring.wait_for(slots, 1, Some(TICK)) {
        Ok(r) => Ok(r.len()),
        Err(RingError::WouldBlock) => Ok(0),
        Err(e) if e.raw_os_error() == Some(libc::EINTR) => Ok(0),
        Err(e) => Err(format!("waiting for completions: {e}")),
    }
}

// ---------------------------------------------------------------------------
// TCP

/// What a connection still has to send, oldest first; the front one is in
/// flight while `sending`.
enum Out {
    /// One buffer, `off` bytes of it sent.
    One { buf: Buf, off: usize },
    /// A bundle of one buffer (the usual case for small messages), sent
    /// with a plain `send` like [`Out::One`].
    Single { bundle: Bundle, off: usize },
    /// A bundle of several buffers; `iov` is what is left to send (the front trimmed as parts
    /// go out). The vector's heap array is what the `sendmsg` names.
    Many { bundle: Bundle, iov: Vec<libc::iovec> },
}

struct Conn {
    fd: OwnedFd,
    generation: u16,
    recv_armed: bool,
    sending: bool,
    /// `TCP_NODELAY` and shutdown requests in flight. They name the fd by
    /// number (a shutdown is always run on an io-wq worker, which looks the
    /// number up only then), so the fd stays open until their CQEs: closed
    /// earlier, the number could be reused by another socket of this
    /// process, and that socket would be the one shut down.
    side_ops: u8,
    eof: bool,
    failed: bool,
    out: VecDeque<Out>,
}

/// Records the listener chain's failure.
#[derive(Debug, Default)]
struct ChainErrors(Option<String>);

impl ListenerHandler for ChainErrors {
    fn on_error(&mut self, _id: ListenerId, phase: ListenerPhase, error: RingError) {
        self.0 = Some(format!("listener {phase:?}: {error}"));
    }
}

struct Tcp {
    ring: Ring,
    br: BufRing,
    bundles: bool,
    conns: Vec<Option<Conn>>,
    free: Vec<u32>,
    rearm: Vec<u32>,
    stats: ServerStats,
}

fn tcp_ring(cfg: &ServerConfig) -> Result<(Ring, BufRing)> {
    let mut ring = Ring::new(Options::default().entries(cfg.ring_entries).register_ring_fd(true))
        .map_err(|e| format!("creating the ring (see SETUP.md): {e}"))?;
    ring.start().map_err(|e| format!("starting the ring: {e}"))?;
    let br = BufRing::register(&mut ring, BufRingConfig::new(1, cfg.entries, cfg.buf_size))
        .map_err(|e| format!("registering the buffer ring: {e}"))?;
    Ok((ring, br))
}

/// The TCP server loop: runs until `stop`, reporting its address on `ready`.
fn serve_tcp(cfg: ServerConfig, stop: &AtomicBool, ready: mpsc::Sender<SocketAddr>) -> Result<ServerStats> {
    let (mut ring, br) = tcp_ring(&cfg)?;
    let bundles = cfg.bundles && ring.features().has(FeatureFlags::RECVSEND_BUNDLE);
    let mut slots = [CqeSlot::EMPTY; 256];

    // The listener chain: socket, bind, listen, each a CQE of its own.
    let mut chain = ListenerManager::new(ChainErrors::default());
    let id = chain
        .listen(&mut ring, SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0), 1024)
        .map_err(|e| format!("listening: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while chain.listener(id).is_none() {
        if let Some(e) = chain.handler_mut().0.take() {
            return Err(e);
        }
        if Instant::now() > deadline {
            return Err("the listener chain did not complete within 5 s".into());
        }
        let n = reap(&mut ring, &mut slots)?;
        for slot in &slots[..n] {
            chain.handle_cqe(&mut ring, &slot.cqe());
        }
    }
    let listener = chain.take(id).ok_or("the listener vanished")?;
    let addr = listener.local_addr().as_socket_addr().ok_or("the listener has no IP address")?;
    let accept_ctx = SqeContext::packed(0, SqeFlags::empty(), 0, -1);
    push_safe(&mut ring, accept_ctx, listener.accept_multi()).map_err(|e| format!("multishot accept: {e}"))?;
    ring.submit().map_err(|e| format!("submit: {e}"))?;
    let _ = ready.send(addr);

    let mut server = Tcp {
        ring,
        br,
        bundles,
        conns: Vec::new(),
        free: Vec::new(),
        rearm: Vec::new(),
        stats: ServerStats { bundles, ..ServerStats::default() },
    };
    let mut accept_failures = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let n = reap(&mut server.ring, &mut slots)?;
        for slot in &slots[..n] {
            let cqe = slot.cqe();
            let ctx = cqe.context();
            let (res, more) = (cqe.res(), cqe.more());
            match ctx.op() {
                Some(OP_ACCEPT) => {
                    if res >= 0 {
                        // SAFETY: the kernel just installed this descriptor
                        // for our accept; nobody else owns it.
                        let fd = unsafe { OwnedFd::from_raw_fd(res) };
                        server.open(fd)?;
                    }
                    if !more {
                        // The accept stream ended (an error such as EMFILE):
                        // arm it again, a bounded number of times.
                        accept_failures += 1;
                        if accept_failures > 100 {
                            return Err(format!("multishot accept keeps ending (last result {res})"));
                        }
                        push_safe(&mut server.ring, accept_ctx, AcceptMulti::new(listener.as_raw_fd()))
                            .map_err(|e| format!("re-arming accept: {e}"))?;
                    }
                }
                Some(OP_RECV) => server.on_recv(ctx, &cqe)?,
                Some(OP_SEND | OP_SENDMSG) => server.on_send(ctx, res)?,
                Some(OP_URING_CMD) => {
                    if res < 0 {
                        eprintln!("echo: TCP_NODELAY: {}", std::io::Error::from_raw_os_error(-res));
                    }
                    server.on_side_op(ctx);
                }
                Some(OP_SHUTDOWN) => server.on_side_op(ctx),
                _ => {}
            }
        }
        server.rearm_waiting()?;
    }
    // Stopping the ring cancels what is still armed (accept, receives,
    // sends) and waits for it; only then are the sockets closed.
    server.ring.stop();
    drop(listener);
    Ok(server.stats)
}

impl Tcp {
    fn open(&mut self, fd: OwnedFd) -> Result<()> {
        self.stats.accepted += 1;
        let idx = match self.free.pop() {
            Some(i) => i,
            None if self.conns.len() < 1 << 20 => {
                self.conns.push(None);
                (self.conns.len() - 1) as u32
            }
            None => {
                // The context numbers 2^20 connection slots: refuse more.
                eprintln!("echo: {} connections open, the most this server numbers; closing the new one", 1 << 20);
                self.stats.conn_errors += 1;
                return Ok(());
            }
        };
        let generation = self.stats.accepted as u16;
        self.conns[idx as usize] = Some(Conn {
            fd,
            generation,
            recv_armed: false,
            sending: false,
            side_ops: 0,
            eof: false,
            failed: false,
            out: VecDeque::new(),
        });
        self.set_nodelay(idx);
        self.arm_recv(idx)
    }

    /// Turns Nagle off (`TCP_NODELAY`, through the ring): an echo sent in
    /// several pieces must not wait for the peer's delayed ACK.
    fn set_nodelay(&mut self, idx: u32) {
        let Some(conn) = self.conns[idx as usize].as_ref() else { return };
        let (fd, ctx) = (conn.fd.as_raw_fd(), Self::ctx(idx, conn.generation));
        let op = SetSockOpt::from_static(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, &ONE);
        // SAFETY: the option value is `'static` (the operation is a
        // `SafeOp`); the helper is `unsafe` for the other operations it
        // pushes.
        match unsafe { push_unchecked(&mut self.ring, ctx, op) } {
            Ok(()) => self.side_op_started(idx),
            Err(e) => eprintln!("echo: TCP_NODELAY on fd {fd}: {e}"),
        }
    }

    fn side_op_started(&mut self, idx: u32) {
        if let Some(conn) = self.conns[idx as usize].as_mut() {
            conn.side_ops += 1;
        }
    }

    /// A `TCP_NODELAY` or shutdown CQE: the fd may be closed now if
    /// nothing else of the connection is in flight.
    fn on_side_op(&mut self, ctx: SqeContext) {
        if let Some(idx) = self.conn_of(ctx) {
            let conn = self.conns[idx as usize].as_mut().expect("conn_of checked it");
            conn.side_ops = conn.side_ops.saturating_sub(1);
            self.maybe_close(idx);
        }
    }

    /// A connection's identity in a packed context's 31-bit fd field:
    /// slot index (20 bits) and generation (11 bits). (Submission stamps
    /// the opcode, flags and the selected buffer group over the other
    /// fields.)
    fn ctx(idx: u32, generation: u16) -> SqeContext {
        let number = (u32::from(generation & 0x7ff) << 20) | (idx & 0xf_ffff);
        SqeContext::for_fd(number as i32)
    }

    /// The connection a CQE's context names, if it is still the same one.
    fn conn_of(&self, ctx: SqeContext) -> Option<u32> {
        let number = u32::try_from(ctx.fd()?).ok()?;
        let (idx, generation) = (number & 0xf_ffff, (number >> 20) as u16);
        let conn = self.conns.get(idx as usize)?.as_ref()?;
        (conn.generation & 0x7ff == generation).then_some(idx)
    }

    fn arm_recv(&mut self, idx: u32) -> Result<()> {
        let Some(conn) = self.conns[idx as usize].as_mut() else { return Ok(()) };
        let (fd, ctx) = (conn.fd.as_raw_fd(), Self::ctx(idx, conn.generation));
        let group = self.br.group();
        let pushed = if self.bundles {
            push_safe(&mut self.ring, ctx, RecvBundleMulti::new(fd, group))
        } else {
            push_safe(&mut self.ring, ctx, RecvMulti::new(fd, group))
        };
        match pushed {
            Ok(()) => conn.recv_armed = true,
            Err(e) => {
                eprintln!("echo: arming a receive on fd {fd}: {e}; closing it");
                conn.failed = true;
                self.stats.conn_errors += 1;
                self.maybe_close(idx);
            }
        }
        Ok(())
    }

    fn on_recv(&mut self, ctx: SqeContext, cqe: &uring_core::Cqe<'_>) -> Result<()> {
        let (res, more) = (cqe.res(), cqe.more());
        // Take the buffers first, whoever they belong to: every CQE of the
        // group goes through the BufRing, in order, so bundles stay located.
        let token = if self.bundles {
            self.br.take_bundle(cqe).map(|b| b.map(Token::Many))
        } else {
            self.br.take(cqe).map(|b| b.map(Token::One))
        }
        .map_err(|e| format!("taking the received buffers: {e}"))?;
        let Some(idx) = self.conn_of(ctx) else {
            // Not a live connection (cannot happen: a slot is reused only
            // once nothing of it is in flight); give the buffers back.
            self.recycle(token);
            return Ok(());
        };
        if let Some(token) = token {
            self.stats.recv_cqes += 1;
            self.stats.bytes += res as u64;
            let conn = self.conns[idx as usize].as_mut().expect("conn_of checked it");
            let out = match token {
                Token::One(buf) => Out::One { buf, off: 0 },
                Token::Many(bundle) if bundle.count() == 1 => {
                    self.stats.widest_bundle = self.stats.widest_bundle.max(1);
                    Out::Single { bundle, off: 0 }
                }
                Token::Many(bundle) => {
                    self.stats.widest_bundle = self.stats.widest_bundle.max(bundle.count());
                    let iov = self
                        .br
                        .bundle(&bundle)
                        .map(|part| libc::iovec { iov_base: part.as_ptr().cast_mut().cast(), iov_len: part.len() })
                        .collect();
                    Out::Many { bundle, iov }
                }
            };
            conn.out.push_back(out);
            self.kick_send(idx);
        }
        if !more {
            let conn = self.conns[idx as usize].as_mut().expect("conn_of checked it");
            conn.recv_armed = false;
            match res {
                0 => conn.eof = true,
                r if r > 0 || r == -libc::ENOBUFS => {
                    // Out of buffers (the data waits in the socket), or a
                    // bundle that emptied the group: arm again once buffers
                    // are back.
                    if !conn.failed && !conn.eof {
                        self.rearm.push(idx);
                    }
                }
                r => {
                    if r != -libc::ECANCELED && r != -libc::ECONNRESET {
                        eprintln!(
                            "echo: receive on fd {}: {}",
                            conn.fd.as_raw_fd(),
                            std::io::Error::from_raw_os_error(-r)
                        );
                    }
                    conn.failed = true;
                    self.stats.conn_errors += 1;
                }
            }
            self.maybe_close(idx);
        }
        Ok(())
    }

    /// Starts the send of the oldest queued data, if none is in flight.
    fn kick_send(&mut self, idx: u32) {
        let Some(conn) = self.conns[idx as usize].as_mut() else { return };
        if conn.sending || conn.failed {
            return;
        }
        let Some(front) = conn.out.front() else { return };
        let (fd, ctx) = (conn.fd.as_raw_fd(), Self::ctx(idx, conn.generation));
        let pushed = match front {
            Out::One { buf, off } => {
                let bytes = &self.br.bytes(buf)[*off..];
                // SAFETY: `bytes` is a buffer of the BufRing held by its
                // token, which stays in `conn.out` until this send's CQE:
                // the kernel does not write a held buffer, and the memory is
                // attached to the ring, so it outlives any request naming it.
                unsafe { push_unchecked(&mut self.ring, ctx, Send::new(fd, bytes)) }
            }
            Out::Single { bundle, off } => {
                let bytes = self.br.bundle(bundle).next().map_or(&[][..], |b| &b[*off..]);
                // SAFETY: as for `Out::One`: the bundle's token stays in
                // `conn.out` until this send's CQE.
                unsafe { push_unchecked(&mut self.ring, ctx, Send::new(fd, bytes)) }
            }
            Out::Many { iov, .. } => {
                // IoSlice is ABI-compatible with iovec on Unix.
                // SAFETY: `iov` is a live, initialized array of iovecs.
                let slices = unsafe { std::slice::from_raw_parts(iov.as_ptr().cast::<IoSlice<'_>>(), iov.len()) };
                // SAFETY: the iovecs name buffers held by the bundle token,
                // which stays in `conn.out` with `iov` (whose heap array
                // does not move) until this sendmsg's CQE; the buffer memory
                // is attached to the ring.
                unsafe { push_unchecked(&mut self.ring, ctx, SendMsg::new(fd, slices)) }
            }
        };
        match pushed {
            Ok(()) => conn.sending = true,
            Err(e) => {
                eprintln!("echo: queueing a send on fd {fd}: {e}; closing it");
                conn.failed = true;
                self.stats.conn_errors += 1;
                self.fail(idx);
            }
        }
    }

    fn on_send(&mut self, ctx: SqeContext, res: i32) -> Result<()> {
        let Some(idx) = self.conn_of(ctx) else { return Ok(()) };
        let conn = self.conns[idx as usize].as_mut().expect("conn_of checked it");
        conn.sending = false;
        if res < 0 {
            if res != -libc::EPIPE && res != -libc::ECONNRESET && res != -libc::ECANCELED {
                eprintln!("echo: send on fd {}: {}", conn.fd.as_raw_fd(), std::io::Error::from_raw_os_error(-res));
            }
            if !conn.failed {
                conn.failed = true;
                self.stats.conn_errors += 1;
            }
            self.fail(idx);
            return Ok(());
        }
        let sent = res as usize;
        let done = match conn.out.front_mut() {
            Some(Out::One { buf, off }) => {
                *off += sent;
                *off >= buf.len()
            }
            Some(Out::Single { bundle, off }) => {
                *off += sent;
                *off >= bundle.len()
            }
            Some(Out::Many { iov, .. }) => {
                let mut left = sent;
                while left > 0 && !iov.is_empty() {
                    if iov[0].iov_len <= left {
                        left -= iov[0].iov_len;
                        iov.remove(0);
                    } else {
                        // SAFETY: `left` < iov_len: still inside the part.
                        iov[0].iov_base = unsafe { iov[0].iov_base.cast::<u8>().add(left) }.cast();
                        iov[0].iov_len -= left;
                        left = 0;
                    }
                }
                iov.is_empty()
            }
            None => return Err("a send completed with nothing queued".into()),
        };
        if done {
            let out = conn.out.pop_front().expect("front exists");
            self.recycle_out(out)?;
        } else {
            self.stats.partial_sends += 1;
        }
        self.kick_send(idx);
        self.maybe_close(idx);
        Ok(())
    }

    /// A connection failed: drop what it still had to send and shut the
    /// socket so its receive ends.
    fn fail(&mut self, idx: u32) {
        let Some(conn) = self.conns[idx as usize].as_mut() else { return };
        let pending: Vec<Out> = if conn.sending {
            // The front one is still named by a send in flight.
            conn.out.drain(1..).collect()
        } else {
            conn.out.drain(..).collect()
        };
        let (fd, ctx, armed) = (conn.fd.as_raw_fd(), Self::ctx(idx, conn.generation), conn.recv_armed);
        for out in pending {
            let _ = self.recycle_out(out);
        }
        if armed && push_safe(&mut self.ring, ctx, Shutdown::new(fd, std::net::Shutdown::Both)).is_ok() {
            self.side_op_started(idx);
        }
        self.maybe_close(idx);
    }

    /// Closes the connection once nothing of it is in flight.
    fn maybe_close(&mut self, idx: u32) {
        let Some(conn) = self.conns[idx as usize].as_mut() else { return };
        let finished = conn.eof || conn.failed;
        if !finished || conn.recv_armed || conn.sending || conn.side_ops > 0 || (!conn.failed && !conn.out.is_empty()) {
            return;
        }
        let conn = self.conns[idx as usize].take().expect("checked above");
        for out in conn.out {
            let _ = self.recycle_out(out);
        }
        self.rearm.retain(|&i| i != idx);
        self.free.push(idx);
        // Dropping `conn.fd` closes the socket.
    }

    fn recycle_out(&mut self, out: Out) -> Result<()> {
        match out {
            Out::One { buf, .. } => self.br.recycle(buf),
            Out::Single { bundle, .. } | Out::Many { bundle, .. } => self.br.recycle_bundle(bundle),
        }
        .map_err(|e| format!("recycling: {e}"))
    }

    fn recycle(&mut self, token: Option<Token>) {
        match token {
            Some(Token::One(buf)) => drop(self.br.recycle(buf)),
            Some(Token::Many(bundle)) => drop(self.br.recycle_bundle(bundle)),
            None => {}
        }
    }

    /// Re-arms the receives that ran out of buffers, once some are back.
    fn rearm_waiting(&mut self) -> Result<()> {
        if self.rearm.is_empty() || self.br.available() == 0 {
            return Ok(());
        }
        for idx in std::mem::take(&mut self.rearm) {
            if self.conns[idx as usize].as_ref().is_some_and(|c| !c.recv_armed && !c.eof && !c.failed) {
                self.stats.rearms += 1;
                self.arm_recv(idx)?;
            }
        }
        Ok(())
    }
}

enum Token {
    One(Buf),
    Many(Bundle),
}

// ---------------------------------------------------------------------------
// UDP

/// Bytes reserved for the source address in each buffer.
const NAME_LEN: usize = size_of::<libc::sockaddr_in6>();
const OUT_LEN: usize = size_of::<sys::io_uring_recvmsg_out>();

/// The UDP server loop.
fn serve_udp(
    cfg: ServerConfig,
    max_datagram: usize,
    stop: &AtomicBool,
    ready: mpsc::Sender<SocketAddr>,
) -> Result<ServerStats> {
    let socket = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("binding the UDP socket: {e}"))?;
    let addr = socket.local_addr().map_err(|e| e.to_string())?;
    let fd = socket.as_raw_fd();
    grow_rcvbuf(fd, max_datagram);
    let buf_size = (OUT_LEN + NAME_LEN + max_datagram).next_multiple_of(64) as u32;
    let mut ring = Ring::new(Options::default().entries(cfg.ring_entries).register_ring_fd(true))
        .map_err(|e| format!("creating the ring (see SETUP.md): {e}"))?;
    ring.start().map_err(|e| format!("starting the ring: {e}"))?;
    let mut br = BufRing::register(&mut ring, BufRingConfig::new(2, cfg.entries.min(512), buf_size))
        .map_err(|e| format!("registering the buffer ring: {e}"))?;
    // Room for an IPv6 source address and no control data in each buffer;
    // the kernel copies the msghdr with those lengths at submission, so the
    // operation is safe.
    let recv = RecvMsgMulti::new(fd, br.group()).namelen(NAME_LEN as u32);
    let recv_ctx = SqeContext::packed(0, SqeFlags::empty(), 0, -1);
    push_safe(&mut ring, recv_ctx, recv).map_err(|e| format!("multishot recvmsg: {e}"))?;
    ring.submit().map_err(|e| format!("submit: {e}"))?;
    let _ = ready.send(addr);

    let mut stats = ServerStats::default();
    // Buffers named by sends in flight, by slot (the send's context fd).
    let mut sending: Vec<Option<Buf>> = Vec::new();
    let mut free: Vec<u32> = Vec::new();
    let mut armed = true;
    let mut slots = [CqeSlot::EMPTY; 256];
    let result = (|| -> Result<()> {
        while !stop.load(Ordering::Relaxed) {
            let n = reap(&mut ring, &mut slots)?;
            for slot in &slots[..n] {
                let cqe = slot.cqe();
                let ctx = cqe.context();
                match ctx.op() {
                    Some(OP_RECVMSG) => {
                        if let Some(buf) = br.take(&cqe).map_err(|e| format!("taking a datagram: {e}"))? {
                            stats.recv_cqes += 1;
                            match RecvMsgOut::parse(br.bytes(&buf), recv.layout()).and_then(|m| {
                                let at = m.payload().as_ptr() as usize - br.bytes(&buf).as_ptr() as usize;
                                Some((m.source()?, at..at + m.payload().len())).filter(|_| !m.is_truncated())
                            }) {
                                Some((peer, range)) => {
                                    stats.bytes += range.len() as u64;
                                    let idx = free.pop().unwrap_or_else(|| {
                                        sending.push(None);
                                        (sending.len() - 1) as u32
                                    });
                                    let ctx = SqeContext::packed(0, SqeFlags::empty(), 0, idx as i32);
                                    let payload = &br.bytes(&buf)[range];
                                    // SAFETY: the payload lies in a buffer held
                                    // by its token, which stays in `sending`
                                    // until this send's CQE; the memory is
                                    // attached to the ring.
                                    unsafe { push_unchecked(&mut ring, ctx, Send::new(fd, payload).to(peer)) }
                                        .map_err(|e| format!("queueing sendto: {e}"))?;
                                    sending[idx as usize] = Some(buf);
                                }
                                None => {
                                    stats.conn_errors += 1;
                                    br.recycle(buf).map_err(|e| e.to_string())?;
                                }
                            }
                        }
                        if !cqe.more() {
                            armed = false;
                            if cqe.res() < 0 && cqe.res() != -libc::ENOBUFS {
                                stats.conn_errors += 1;
                            }
                        }
                    }
                    Some(OP_SEND) => {
                        let idx = ctx.fd().unwrap_or(-1) as usize;
                        if let Some(buf) = sending.get_mut(idx).and_then(Option::take) {
                            br.recycle(buf).map_err(|e| e.to_string())?;
                            free.push(idx as u32);
                        }
                        if cqe.res() < 0 {
                            stats.conn_errors += 1;
                        }
                    }
                    _ => {}
                }
            }
            if !armed && br.available() > 0 {
                stats.rearms += 1;
                push_safe(&mut ring, recv_ctx, recv).map_err(|e| format!("re-arming recvmsg: {e}"))?;
                armed = true;
            }
        }
        Ok(())
    })();
    ring.stop();
    result.map(|()| stats)
}

/// Makes room in a UDP socket's receive queue for a datagram from every
/// client (the default holds only a few 64 KiB datagrams; those that do not
/// fit are dropped). Best effort: `SO_RCVBUFFORCE` needs `CAP_NET_ADMIN`,
/// `SO_RCVBUF` is capped by `net.core.rmem_max`.
fn grow_rcvbuf(fd: RawFd, max_datagram: usize) {
    let want = (max_datagram * 256).clamp(1 << 20, 32 << 20) as libc::c_int;
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: setsockopt reads one c_int from `want`, valid for the call.
        let r = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&want as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r == 0 {
            return;
        }
    }
}

// ---------------------------------------------------------------------------
// Load

/// A load run.
#[derive(Debug, Clone, Copy)]
pub struct LoadConfig {
    /// TCP or UDP.
    pub proto: Proto,
    /// Client connections (threads).
    pub clients: usize,
    /// How long the clients send.
    pub duration: Duration,
    /// Bytes per message.
    pub size: usize,
    /// The server's setup.
    pub server: ServerConfig,
}

/// What a load run measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// The run's configuration.
    pub cfg: LoadConfig,
    /// Round trips completed and verified.
    pub requests: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Median round trip.
    pub p50: Duration,
    /// 99th percentile round trip.
    pub p99: Duration,
    /// The clients' failures (a mismatch, a lost datagram, an I/O error).
    pub errors: Vec<String>,
    /// What the server counted.
    pub server: ServerStats,
}

impl Report {
    /// Whether every echoed byte matched and something was echoed.
    pub fn ok(&self) -> bool {
        self.errors.is_empty() && self.requests > 0
    }

    /// Requests per second.
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.cfg;
        let proto = match c.proto {
            Proto::Tcp if self.server.bundles => "tcp (multishot accept, multishot bundle recv, send)",
            Proto::Tcp => "tcp (multishot accept, multishot recv, send)",
            Proto::Udp => "udp (multishot recvmsg, sendto)",
        };
        writeln!(f, "echo {proto}")?;
        writeln!(
            f,
            "  clients {}, seconds {:.1}, size {} B: {} requests, {:.0} requests/s, p50 {:.1} µs, p99 {:.1} µs",
            c.clients,
            self.elapsed.as_secs_f64(),
            c.size,
            self.requests,
            self.rate(),
            self.p50.as_secs_f64() * 1e6,
            self.p99.as_secs_f64() * 1e6,
        )?;
        let s = &self.server;
        match c.proto {
            Proto::Tcp => write!(
                f,
                "  server: {} connections, {} receive CQEs, {} bytes echoed, widest bundle {} buffers, {} partial sends, {} re-arms, {} connection errors",
                s.accepted, s.recv_cqes, s.bytes, s.widest_bundle, s.partial_sends, s.rearms, s.conn_errors
            )?,
            Proto::Udp => write!(
                f,
                "  server: {} datagrams, {} bytes echoed, {} re-arms, {} errors",
                s.recv_cqes, s.bytes, s.rearms, s.conn_errors
            )?,
        }
        for e in &self.errors {
            write!(f, "\n  error: {e}")?;
        }
        Ok(())
    }
}

/// The byte at `i` of message `seq` of client `client`.
fn pattern(client: usize, seq: u64, i: usize) -> u8 {
    (client as u64 * 131 + seq * 7 + i as u64 * 31 + (i as u64 >> 8)) as u8
}

/// Fills a message with the pattern of `client`'s message `seq`.
pub fn fill(msg: &mut [u8], client: usize, seq: u64) {
    for (i, b) in msg.iter_mut().enumerate() {
        *b = pattern(client, seq, i);
    }
}

/// Checks an echo against the pattern; the error names the first wrong byte.
pub fn verify(got: &[u8], client: usize, seq: u64) -> Result<()> {
    match got.iter().enumerate().find(|&(i, &b)| b != pattern(client, seq, i)) {
        None => Ok(()),
        Some((i, &b)) => Err(format!(
            "client {client}, message {seq}: byte {i} came back as {b:#04x}, sent {:#04x}",
            pattern(client, seq, i)
        )),
    }
}

/// One client: round trips until `until` (or `count` of them), every
/// echoed byte compared. Returns the round-trip times in nanoseconds.
pub fn client(proto: Proto, addr: SocketAddr, id: usize, size: usize, until: Instant, count: u64) -> Result<Vec<u32>> {
    let mut msg = vec![0u8; size];
    let mut back = vec![0u8; size.max(1) + 1];
    let mut lat = Vec::with_capacity(1 << 16);
    let timeout = Some(Duration::from_secs(5));
    let mut seq = 0u64;
    match proto {
        Proto::Tcp => {
            let mut s = TcpStream::connect(addr).map_err(|e| format!("client {id}: connect: {e}"))?;
            s.set_nodelay(true).map_err(|e| e.to_string())?;
            s.set_read_timeout(timeout).map_err(|e| e.to_string())?;
            while seq < count && Instant::now() < until {
                fill(&mut msg, id, seq);
                let t = Instant::now();
                s.write_all(&msg).map_err(|e| format!("client {id}: send: {e}"))?;
                s.read_exact(&mut back[..size]).map_err(|e| format!("client {id}, message {seq}: read: {e}"))?;
                lat.push(t.elapsed().as_nanos().min(u32::MAX as u128) as u32);
                verify(&back[..size], id, seq)?;
                seq += 1;
            }
        }
        Proto::Udp => {
            let s = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
            s.connect(addr).map_err(|e| e.to_string())?;
            grow_rcvbuf(s.as_raw_fd(), size);
            s.set_read_timeout(timeout).map_err(|e| e.to_string())?;
            while seq < count && Instant::now() < until {
                fill(&mut msg, id, seq);
                let t = Instant::now();
                s.send(&msg).map_err(|e| format!("client {id}: send: {e}"))?;
                let n = s.recv(&mut back).map_err(|e| format!("client {id}, datagram {seq}: {e} (lost?)"))?;
                lat.push(t.elapsed().as_nanos().min(u32::MAX as u128) as u32);
                if n != size {
                    return Err(format!("client {id}, datagram {seq}: {n} bytes came back, sent {size}"));
                }
                verify(&back[..n], id, seq)?;
                seq += 1;
            }
        }
    }
    Ok(lat)
}

/// Starts a server, drives it from `cfg.clients` client threads for
/// `cfg.duration`, and stops it.
pub fn run_load(cfg: LoadConfig) -> Result<Report> {
    if cfg.clients == 0 || cfg.clients > 1000 {
        return Err(format!("--clients {}: need 1 to 1000", cfg.clients));
    }
    let max = match cfg.proto {
        Proto::Tcp => 64 << 20,
        Proto::Udp => 65507,
    };
    if cfg.size == 0 || cfg.size > max {
        return Err(format!("--size {}: need 1 to {max} bytes for {:?}", cfg.size, cfg.proto));
    }
    let server = Server::spawn(cfg.proto, cfg.server, cfg.size)?;
    let addr = server.addr;
    let start = Instant::now();
    let until = start + cfg.duration;
    let clients: Vec<_> = (0..cfg.clients)
        .map(|id| thread::spawn(move || client(cfg.proto, addr, id, cfg.size, until, u64::MAX)))
        .collect();
    let mut lat = Vec::new();
    let mut errors = Vec::new();
    for c in clients {
        match c.join() {
            Ok(Ok(l)) => lat.extend(l),
            Ok(Err(e)) => errors.push(e),
            Err(_) => errors.push("a client thread panicked".into()),
        }
    }
    let elapsed = start.elapsed();
    let stats = server.stop()?;
    lat.sort_unstable();
    let pct = |p: f64| -> Duration {
        if lat.is_empty() {
            return Duration::ZERO;
        }
        let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
        Duration::from_nanos(u64::from(lat[i]))
    };
    Ok(Report { cfg, requests: lat.len() as u64, elapsed, p50: pct(0.50), p99: pct(0.99), errors, server: stats })
}

// ---------------------------------------------------------------------------
// Command line

struct Args {
    clients: usize,
    seconds: f64,
    size: usize,
    tcp: bool,
    udp: bool,
    serve: bool,
    bundles: bool,
}

fn parse_args() -> Result<Args> {
    let mut a = Args { clients: 4, seconds: 1.5, size: 64, tcp: false, udp: false, serve: false, bundles: true };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--clients" => a.clients = value("--clients")?.parse().map_err(|e| format!("--clients: {e}"))?,
            "--seconds" => a.seconds = value("--seconds")?.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--size" => a.size = value("--size")?.parse().map_err(|e| format!("--size: {e}"))?,
            "--tcp" => a.tcp = true,
            "--udp" => a.udp = true,
            "--serve" => a.serve = true,
            "--no-bundles" => a.bundles = false,
            "-h" | "--help" => {
                println!(
                    "usage: echo [--clients N] [--seconds S] [--size BYTES] [--tcp|--udp] [--no-bundles] [--serve]\n\
                     Without --tcp or --udp, runs both. --serve runs the servers until killed."
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    if !(a.seconds > 0.0 && a.seconds <= 3600.0) {
        return Err(format!("--seconds {}: need more than 0 and at most 3600", a.seconds));
    }
    if !a.tcp && !a.udp {
        a.tcp = true;
        a.udp = true;
    }
    Ok(a)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("echo: {e}");
            std::process::exit(2);
        }
    };
    let server = ServerConfig { bundles: args.bundles, ..ServerConfig::default() };
    if args.serve {
        let mut running = Vec::new();
        for (on, proto) in [(args.tcp, Proto::Tcp), (args.udp, Proto::Udp)] {
            if on {
                match Server::spawn(proto, server, 65507) {
                    Ok(s) => {
                        println!("echo: serving {proto:?} on {} (Ctrl-C to stop)", s.addr);
                        running.push(s);
                    }
                    Err(e) => {
                        eprintln!("echo: {e}");
                        std::process::exit(1);
                    }
                }
            }
        }
        for s in running {
            if let Err(e) = s.thread.join().unwrap_or_else(|_| Err("panicked".into())) {
                eprintln!("echo: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    let mut ok = true;
    for (on, proto) in [(args.tcp, Proto::Tcp), (args.udp, Proto::Udp)] {
        if !on {
            continue;
        }
        let cfg = LoadConfig {
            proto,
            clients: args.clients,
            duration: Duration::from_secs_f64(args.seconds),
            size: args.size,
            server,
        };
        match run_load(cfg) {
            Ok(report) => {
                println!("{report}");
                ok &= report.ok();
            }
            Err(e) => {
                eprintln!("echo: {e}");
                ok = false;
            }
        }
    }
    if ok {
        println!("echo: OK");
    } else {
        println!("echo: FAILED");
        std::process::exit(1);
    }
}
