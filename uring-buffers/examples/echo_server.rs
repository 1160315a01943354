//! A TCP echo server on one io_uring and one thread: the server to read
//! first (`echo.rs` is the load tool, with every option and counter).
//!
//! 1. The listener chain queues socket, bind and listen as ring operations.
//! 2. One multishot accept puts every connection into the ring's file table
//!    (direct descriptors: no process fd to own, close or leak).
//! 3. One multishot bundle receive per connection: each CQE may fill several
//!    buffers of a provided-buffer ring ([`BufRing`]).
//! 4. The bytes go back out from the buffers they arrived in, which return
//!    to the ring when the send's CQE says the kernel is done with them.
//! 5. Shutdown, then close.
//!
//! Every request carries a token ([`SqeContext::token`]), the application's
//! own number: here a connection's slot + 1 (0 is the accept). The push
//! stamps the opcode in, so `cqe.op()` says which request of it completed.
//!
//! ```text
//! cargo run -p uring-buffers --example echo_server -- 127.0.0.1:7000
//! ```

use std::collections::VecDeque;
use std::net::{Shutdown as How, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use uring_buffers::{BufRing, BufRingConfig, Bundle};
use uring_core::{Cqe, CqeSlot, Error, HandleCqe, Options, Ring, SqeContext};
use uring_ops::{Fixed, Prepare, RingOps, SafeOp, cancel::AsyncCancel, fs::Close, listener::ListenerManager};
use uring_ops::{multishot::AcceptMulti, multishot::RecvBundleMulti, net::Send, socket::Shutdown};

type Result<T, E = Box<dyn std::error::Error>> = std::result::Result<T, E>;
const GROUP: u16 = 1; // the buffer group receives select from
const SLOTS: u32 = 256; // direct-descriptor slots: the most connections at once

#[derive(Default)]
struct Conn {
    out: VecDeque<Bundle>, // received, not yet echoed; the front one is being sent
    sent: usize,           // bytes of the front bundle already sent
    armed: bool,           // the receive is armed
    sending: bool,         // a send is in flight
    done: bool,            // end of stream, an error, or the server stops
    shut: bool,            // shutdown queued
    shutting: bool,        // shutdown in flight
}

/// What the test checks: bundles did span several buffers.
#[derive(Debug, Default)]
struct Stats {
    max_bundle: usize,
    rearmed: usize,
}

struct Server {
    ring: Ring,
    bufs: BufRing,
    conns: Vec<Option<Conn>>, // by slot
    starved: Vec<u32>,        // slots whose receive waits for buffers
    stopping: bool,
    stats: Stats,
}

fn token(slot: u32) -> SqeContext {
    SqeContext::token(u64::from(slot) + 1).expect("slots are small numbers")
}

/// Queues a safe operation. Pushes never flush on their own: a full SQ is
/// the one place an explicit `submit()` belongs.
fn push(ring: &mut Ring, ctx: SqeContext, op: impl SafeOp) -> Result<SqeContext, Error> {
    if ring.sq_room() == 0 {
        ring.submit()?;
    }
    ring.push_op(ctx, op)
}

/// Serves on `addr` until `stop` is set; tells `ready` the bound address.
fn serve(addr: SocketAddr, stop: &AtomicBool, ready: impl FnOnce(SocketAddr)) -> Result<Stats> {
    let mut ring = Ring::new(Options::default().entries(256))?;
    ring.start()?;
    ring.register().files_sparse(SLOTS)?;
    // 64 buffers of 4 KiB, small on purpose: a large message arrives as a
    // bundle of several buffers, and a burst can run the ring dry.
    let bufs = BufRing::register(&mut ring, BufRingConfig::new(GROUP, 64, 4096))?;
    let mut chain = ListenerManager::new(());
    let id = chain.listen(&mut ring, addr, 128)?;
    let (mut listener, mut accept, mut ready) = (None, None, Some(ready));
    let conns = (0..SLOTS).map(|_| None).collect();
    let mut s = Server { ring, bufs, conns, starved: Vec::new(), stopping: false, stats: Stats::default() };
    let mut slots = [CqeSlot::EMPTY; 64];
    loop {
        // `wait_for` flushes the queued SQEs and waits in ONE io_uring_enter:
        // a `submit()` before it would cost a second syscall per loop.
        let n = match s.ring.wait_for(&mut slots, 1, Some(Duration::from_millis(50))) {
            Ok(reaped) => reaped.len(),
            Err(Error::WouldBlock) => 0, // the timeout: look at `stop`
            Err(e) => return Err(e.into()),
        };
        for cqe in slots[..n].iter().map(CqeSlot::cqe) {
            // The chain's CQEs carry its own identity (`None`: not its own);
            // it queues its next phase itself.
            if chain.handle_cqe(&mut s.ring, &cqe).is_some() {
                continue;
            }
            let slot = cqe.context().as_token().map_or(0, |t| t.saturating_sub(1) as u32);
            match cqe.op() {
                Some(AcceptMulti::CODE) => {
                    if cqe.res() >= 0 {
                        s.conns[cqe.res() as usize] = Some(Conn { armed: true, ..Conn::default() });
                        push(
                            &mut s.ring,
                            token(cqe.res() as u32),
                            RecvBundleMulti::new(Fixed(cqe.res() as u32), GROUP),
                        )?;
                    }
                    if !cqe.more() {
                        accept = None; // ended (a full table ends it with -ENFILE): re-armed below
                    }
                    continue;
                }
                Some(RecvBundleMulti::CODE) => s.on_recv(slot, &cqe)?,
                Some(Send::CODE) => s.on_send(slot, cqe.res())?,
                Some(Shutdown::CODE) => s.conns[slot as usize].as_mut().expect("open").shutting = false,
                _ => continue, // the results of Close and AsyncCancel
            }
            s.settle(slot)?;
        }
        if listener.is_none() {
            listener = chain.take(id);
            if listener.is_none() && chain.status(id).is_none() {
                return Err("the listener chain failed".into());
            }
        }
        if let Some(l) = &listener
            && accept.is_none()
            && !s.stopping
        {
            // Cancel by the context the push RETURNED: it has the opcode in.
            accept = Some(l.accept_multishot_direct(&mut s.ring, SqeContext::token(0)?)?);
            if let Some(ready) = ready.take() {
                ready(l.local_addr().as_socket_addr().ok_or("not an IP listener")?);
            }
        }
        s.rearm()?;
        if stop.load(Ordering::Relaxed) && !s.stopping {
            s.stopping = true;
            if let Some(a) = accept {
                push(&mut s.ring, SqeContext::token(0)?, AsyncCancel::new(a))?;
            }
            for slot in 0..SLOTS {
                if let Some(c) = &mut s.conns[slot as usize] {
                    c.done = true;
                    s.settle(slot)?;
                }
            }
        }
        if s.stopping && accept.is_none() && chain.pending() == 0 && s.conns.iter().all(Option::is_none) {
            return Ok(s.stats); // nothing in flight; dropping the ring frees its buffers
        }
    }
}

impl Server {
    fn on_recv(&mut self, slot: u32, cqe: &Cqe<'_>) -> Result<()> {
        // Rule: EVERY CQE of the group goes through its BufRing, in CQE
        // order, whatever happens to its connection: `take_bundle` finds a
        // bundle's buffers from the ring's head, so one CQE skipped loses
        // track of every later bundle. (BufRing's `HandleCqe` takes ONE
        // buffer: it is for plain receives, not bundles.)
        let bundle = self.bufs.take_bundle(cqe)?;
        let c = self.conns[slot as usize].as_mut().expect("an armed receive has its connection");
        if let Some(b) = bundle {
            self.stats.max_bundle = self.stats.max_bundle.max(b.count());
            c.out.push_back(b);
        }
        if !cqe.more() {
            // The multishot ended. With data or -ENOBUFS (the ring ran dry:
            // the bytes wait in the socket), re-arm, but only once buffers
            // are back (`rearm`): at once, it would fail again. 0 is the
            // peer's end of stream, other errors end the connection.
            c.armed = false;
            match cqe.res() {
                r if r > 0 || r == -libc::ENOBUFS => self.starved.push(slot),
                _ => c.done = true,
            }
        }
        self.send_next(slot)
    }

    fn send_next(&mut self, slot: u32) -> Result<()> {
        let c = self.conns[slot as usize].as_mut().expect("open");
        let Some(front) = c.out.front().filter(|_| !c.sending) else { return Ok(()) };
        let mut skip = c.sent; // the unsent rest of the front bundle's first unsent buffer
        let part = self.bufs.bundle(front).find_map(|b| {
            (skip < b.len()).then(|| &b[skip..]).or_else(|| {
                skip -= b.len();
                None
            })
        });
        let part = part.expect("a bundle in `out` has bytes left");
        // MSG_MORE while more is queued behind this part: TCP sends it all
        // together instead of one small segment per buffer.
        let more = part.len() < front.len() - c.sent || c.out.len() > 1;
        let send = Send::new(Fixed(slot), part).flags(if more { libc::MSG_MORE } else { 0 });
        if self.ring.sq_room() == 0 {
            self.ring.submit()?;
        }
        // SAFETY: no safe push sends a buffer taken from a BufRing, so: the
        // `Bundle` stays in `c.out` until this send's CQE, and until it is
        // recycled the kernel selects none of its buffers for a receive,
        // and we never write them; the memory is attached to the ring,
        // mapped until the ring closes with nothing in flight.
        unsafe { self.ring.push_op_unchecked(token(slot), send) }?;
        c.sending = true;
        Ok(())
    }

    fn on_send(&mut self, slot: u32, res: i32) -> Result<()> {
        let c = self.conns[slot as usize].as_mut().expect("open");
        c.sending = false; // the kernel reads none of `out` now
        if res < 0 {
            c.done = true;
            c.sent = 0;
            return c.out.drain(..).try_for_each(|b| self.bufs.recycle_bundle(b)).map_err(Into::into);
        }
        c.sent += res as usize; // after a short send, the rest goes next
        if c.sent == c.out[0].len() {
            c.sent = 0;
            self.bufs.recycle_bundle(c.out.pop_front().expect("sent from it"))?;
        }
        self.send_next(slot)
    }

    /// Re-arms the starved receives once the ring has buffers again.
    fn rearm(&mut self) -> Result<()> {
        if self.bufs.available() == 0 {
            return Ok(());
        }
        for slot in std::mem::take(&mut self.starved) {
            if let Some(c) = self.conns[slot as usize].as_mut().filter(|c| !c.done) {
                c.armed = true;
                self.stats.rearmed += 1;
                push(&mut self.ring, token(slot), RecvBundleMulti::new(Fixed(slot), GROUP))?;
            }
        }
        Ok(())
    }

    /// Rule: shut a socket down before closing it. An armed receive holds
    /// its own reference to the socket, so a close alone leaves both the
    /// socket and the receive alive; shutdown ends the receive (a last CQE
    /// with 0), and the slot is closed once nothing of it is in flight.
    fn settle(&mut self, slot: u32) -> Result<()> {
        let stopping = self.stopping;
        let Some(c) = self.conns[slot as usize].as_mut() else { return Ok(()) };
        if c.done && !c.shut && (stopping || (c.out.is_empty() && !c.sending)) {
            (c.shut, c.shutting) = (true, true);
            push(&mut self.ring, token(slot), Shutdown::new(Fixed(slot), How::Both))?;
        } else if c.shut && !(c.shutting || c.armed || c.sending) {
            c.out.drain(..).try_for_each(|b| self.bufs.recycle_bundle(b))?;
            self.conns[slot as usize] = None;
            push(&mut self.ring, token(slot), Close::new(Fixed(slot)))?;
        }
        Ok(())
    }
}

fn main() -> Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".into()).parse()?;
    serve(addr, &AtomicBool::new(false), |a| println!("echo_server: listening on {a}"))?;
    Ok(())
}

#[test]
fn example_runs() {
    use std::io::{Read, Write};
    let fds = || std::fs::read_dir("/proc/self/fd").unwrap().count();
    let (before, stop) = (fds(), std::sync::Arc::new(AtomicBool::new(false)));
    let (tx, rx) = std::sync::mpsc::channel();
    let flag = stop.clone();
    let server = std::thread::spawn(move || {
        serve("127.0.0.1:0".parse().unwrap(), &flag, |a| tx.send(a).unwrap()).map_err(|e| e.to_string())
    });
    let addr = rx.recv_timeout(Duration::from_secs(5)).expect("the server listens");
    let clients: Vec<_> = (0..4usize)
        .map(|c| {
            std::thread::spawn(move || {
                let mut sock = std::net::TcpStream::connect(addr).unwrap();
                sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                for size in [1, 100, 4096, 4097, 10_000, 65_536, 100_000] {
                    let msg: Vec<u8> = (0..size).map(|i| (i * 31 + c * 7 + size) as u8).collect();
                    sock.write_all(&msg).unwrap();
                    let mut back = vec![0; size];
                    sock.read_exact(&mut back).unwrap();
                    assert!(back == msg, "client {c}: {size} bytes came back changed");
                }
            })
        })
        .collect();
    clients.into_iter().for_each(|c| c.join().unwrap());
    stop.store(true, Ordering::Relaxed);
    let stats = server.join().unwrap().unwrap();
    println!("{stats:?}");
    assert!(stats.max_bundle > 1, "a large message arrives in bundles of several buffers");
    assert_eq!(fds(), before, "every descriptor the server opened is closed");
}
