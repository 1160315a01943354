//! A TCP echo server on one io_uring and one thread: read this one first
//! (`echo.rs` is the load tool). Needs Linux 6.11. Its path, step by step:
//! the listener chain (socket, bind, listen as ring operations); one
//! multishot accept into the ring's file table (direct descriptors: no fd to
//! own or leak); one multishot bundle receive per connection, each CQE
//! filling one or more buffers of a provided-buffer ring ([`BufRing`]); the
//! echo sent from those buffers ([`BufRing::send`] lends the bundle to the
//! send until its CQE gives it back), then recycled; shutdown and close. A
//! request's token ([`SqeContext::token`]) is the application's own number,
//! here the connection's slot; the push stamps the opcode in, so `cqe.op()`
//! tells which of the slot's requests completed.
//! `cargo run -p uring-buffers --example echo_server -- 127.0.0.1:7000`

use std::collections::{HashMap, VecDeque};
use std::net::{Shutdown as How, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use uring_buffers::{BufRing, BufRingConfig, BufSendId, Bundle, Held};
use uring_core::{CqeSlot, Error, HandleCqe, Options, Ring, SqeContext};
use uring_ops::listener::{ListenerHandler, ListenerId, ListenerManager, ListenerPhase};
use uring_ops::multishot::{AcceptMulti, RecvBundleMulti};
use uring_ops::{Fixed, Prepare, RingOps, cancel::AsyncCancel, fs::Close, socket::Shutdown};

type Result<T, E = Box<dyn std::error::Error + std::marker::Send + Sync>> = std::result::Result<T, E>;
const GROUP: u16 = 1; // the buffer group the receives select from
const BUF: usize = 4096; // bytes per buffer
const SLOTS: u32 = 256; // file-table slots: the most connections at once
const ACCEPT: u64 = SLOTS as u64; // the accept's token, which no slot has
type Sends = HashMap<BufSendId, u32>; // the slot of each send in flight

#[derive(Default)]
struct Conn {
    open: bool,
    out: VecDeque<Held>, // received, not echoed yet (the one being sent is lent to the send)
    sent: usize,         // bytes of the front bundle sent
    armed: bool,         // the receive is armed
    sending: bool,       // a send is in flight
    done: bool,          // end of stream, an error, or the server stops
    shut: Option<bool>,  // shutdown queued; `Some(true)` once it completed
}

/// The listener chain reports each phase to a handler: this one keeps the error.
struct ChainError(Option<Error>);
impl ListenerHandler for ChainError {
    fn on_error(&mut self, _: ListenerId, _: ListenerPhase, e: Error) {
        self.0 = Some(e);
    }
}

/// Serves on `addr` until `stop` is set; returns the most buffers one CQE filled.
fn serve(addr: SocketAddr, stop: &AtomicBool, ready: impl FnOnce(SocketAddr)) -> Result<usize> {
    // Pushes never flush on their own (a full SQ is `Error::QueueFull`): 1024
    // entries hold more than a loop ever queues (2 per CQE, 2 per connection).
    let mut ring = Ring::new(Options::default().entries(1024))?;
    ring.start()?;
    ring.register().files_sparse(SLOTS)?;
    // 32 buffers, few and small on purpose: a large message comes in
    // bundles of several buffers, and a burst runs the ring dry.
    let mut bufs = BufRing::register(&mut ring, BufRingConfig::new(GROUP, 32, BUF as u32))?;
    let mut chain = ListenerManager::new(ChainError(None));
    let id = chain.listen(&mut ring, addr, 128)?;
    let (mut listener, mut accept, mut ready) = (None, None, Some(ready));
    let mut conns: Vec<Conn> = (0..SLOTS).map(|_| Conn::default()).collect();
    let (mut starved, mut stopping, mut max_bundle) = (Vec::new(), false, 0); // starved: slots waiting for buffers
    let (mut sends, mut cqes) = (Sends::new(), [CqeSlot::EMPTY; 64]);
    loop {
        // `wait_for` flushes the queued SQEs and waits in ONE io_uring_enter:
        // a `submit()` before it would cost a second syscall per loop.
        let n = match ring.wait_for(&mut cqes, 1, Some(Duration::from_millis(50))) {
            Ok(reaped) => reaped.len(),
            Err(Error::WouldBlock) => 0, // the timeout: look at `stop`
            Err(e) => return Err(e.into()),
        };
        for cqe in cqes[..n].iter().map(CqeSlot::cqe) {
            // The chain answers `None` for CQEs not its own; for its own it
            // queues the next phase (socket, bind, listen) itself.
            if chain.handle_cqe(&mut ring, &cqe).is_some() {
                continue;
            }
            // A send's CQE (under the BufRing's own identity) gives its bundle back.
            if let Some(sent) = bufs.handle_send(&cqe) {
                let slot = sends.remove(&sent.id).expect("every send is noted");
                let c = &mut conns[slot as usize];
                (c.sending, c.sent) = (false, sent.end()); // after a short send or one buffer, the rest goes next
                if sent.res < 0 || sent.done() {
                    (c.sent, c.done) = (0, c.done || sent.res < 0); // an error: the peer is gone
                    bufs.recycle_held(sent.token)?;
                } else {
                    c.out.push_front(sent.token);
                }
                step(&mut ring, &mut bufs, &mut sends, &mut conns[slot as usize], slot, stopping)?;
                continue;
            }
            let (slot, res) = (cqe.context().as_token().unwrap_or(ACCEPT) as u32, cqe.res());
            match cqe.op() {
                Some(AcceptMulti::CODE) => {
                    accept = accept.filter(|_| cqe.more()); // ended (-ENFILE: table full)? re-armed below
                    let Ok(slot) = u32::try_from(res) else { continue };
                    conns[slot as usize] = Conn { open: true, armed: true, ..Conn::default() };
                    ring.push_op(SqeContext::token(slot.into())?, RecvBundleMulti::new(Fixed(slot), GROUP))?;
                    continue;
                }
                Some(RecvBundleMulti::CODE) => {
                    // Rule: EVERY CQE of a group goes through its BufRing, in CQE
                    // order, whatever became of its connection: one skipped, and
                    // no later bundle can be located.
                    let bundle = bufs.take_bundle(&cqe)?;
                    max_bundle = max_bundle.max(bundle.as_ref().map_or(0, Bundle::count));
                    let c = &mut conns[slot as usize];
                    c.out.extend(bundle.map(Held::from));
                    if !cqe.more() {
                        // The multishot ended. After data (a bundle emptied the ring)
                        // or -ENOBUFS (the bytes wait in the socket), re-arm once
                        // buffers are back (at once, it fails again); EOF (0) or an
                        // error ends the connection.
                        c.armed = false;
                        if res > 0 || res == -libc::ENOBUFS { starved.push(slot) } else { c.done = true }
                    }
                }
                Some(Shutdown::CODE) => conns[slot as usize].shut = Some(true),
                _ => continue, // the results of Close and AsyncCancel
            }
            step(&mut ring, &mut bufs, &mut sends, &mut conns[slot as usize], slot, stopping)?;
        }
        listener = listener.or_else(|| chain.take(id));
        if let Some(e) = chain.handler_mut().0.take() {
            return Err(e.into());
        }
        if let Some(l) = listener.as_ref().filter(|_| accept.is_none() && !stopping) {
            // Keep the context the push RETURNS, opcode stamped in: a cancel
            // must name exactly that.
            accept = Some(l.accept_multishot_direct(&mut ring, SqeContext::token(ACCEPT)?)?);
            ready.take().map(|ready| l.local_addr().as_socket_addr().map(ready));
        }
        if bufs.available() > 0 {
            for slot in std::mem::take(&mut starved) {
                let c = &mut conns[slot as usize];
                if c.open && !c.armed && !c.done {
                    c.armed = true;
                    ring.push_op(SqeContext::token(slot.into())?, RecvBundleMulti::new(Fixed(slot), GROUP))?;
                }
            }
        }
        if stop.load(Ordering::Relaxed) && !stopping {
            stopping = true;
            if let Some(a) = accept {
                ring.push_op(SqeContext::token(ACCEPT)?, AsyncCancel::new(a))?;
            }
            for (slot, c) in conns.iter_mut().enumerate().filter(|(_, c)| c.open) {
                c.done = true;
                step(&mut ring, &mut bufs, &mut sends, c, slot as u32, true)?;
            }
        }
        if stopping && accept.is_none() && chain.pending() == 0 && conns.iter().all(|c| !c.open) {
            return Ok(max_bundle); // nothing in flight: dropping the ring frees the rest
        }
    }
}

/// Moves a connection on after each of its CQEs: echo, shut down, close.
fn step(ring: &mut Ring, bufs: &mut BufRing, sends: &mut Sends, c: &mut Conn, slot: u32, stop: bool) -> Result<()> {
    if let Some(front) = (!c.sending && c.shut.is_none()).then(|| c.out.pop_front()).flatten() {
        // The unsent rest of the buffer holding byte `c.sent` goes out (every
        // buffer of a bundle is full but the last); MSG_MORE while more is
        // queued behind it: TCP sends it all together, not one small segment
        // per buffer. The bundle is lent to the send until its CQE.
        let more = (c.sent / BUF + 1) * BUF < front.len() || !c.out.is_empty();
        let id = bufs.send(ring, Fixed(slot), front, c.sent, if more { libc::MSG_MORE } else { 0 })?;
        sends.insert(id, slot);
        c.sending = true;
    }
    // Rule: shut a socket down before closing it. An armed receive holds its
    // own reference to the socket: closing the slot alone would leave the
    // connection and the receive alive. Shutdown ends the receive (a last
    // CQE, with 0); the slot closes once nothing of it is in flight.
    if c.done && c.shut.is_none() && (stop || !c.sending) {
        c.shut = Some(false);
        ring.push_op(SqeContext::token(slot.into())?, Shutdown::new(Fixed(slot), How::Both))?;
    } else if c.shut == Some(true) && !c.armed && !c.sending {
        c.out.drain(..).try_for_each(|b| bufs.recycle_held(b))?;
        *c = Conn::default();
        ring.push_op(SqeContext::token(slot.into())?, Close::new(Fixed(slot)))?;
    }
    Ok(())
}

fn main() -> Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".into()).parse()?;
    serve(addr, &AtomicBool::new(false), |a| println!("echo_server: listening on {a}")).map(drop)
}

#[test]
fn example_runs() {
    use std::{io::Read, io::Write, sync::Arc, thread};
    let fds = || std::fs::read_dir("/proc/self/fd").unwrap().count();
    let (before, stop, (tx, rx)) = (fds(), Arc::new(AtomicBool::new(false)), std::sync::mpsc::channel());
    let flag = stop.clone();
    let server = thread::spawn(move || serve("127.0.0.1:0".parse().unwrap(), &flag, |a| tx.send(a).unwrap()));
    let addr = rx.recv_timeout(Duration::from_secs(5)).expect("the server listens");
    let client = move |c: usize| {
        let mut sock = std::net::TcpStream::connect(addr).unwrap();
        for size in [1, 100, 4096, 4097, 10_000, 65_536, 100_000] {
            let msg: Vec<u8> = (0..size).map(|i| (i * 31 + c * 7 + size) as u8).collect();
            let mut back = vec![0; size];
            sock.write_all(&msg).and_then(|()| sock.read_exact(&mut back)).unwrap();
            assert!(back == msg, "client {c}: {size} bytes came back changed");
        }
    };
    let clients: Vec<_> = (0..4).map(|c| thread::spawn(move || client(c))).collect();
    clients.into_iter().for_each(|c| c.join().unwrap());
    stop.store(true, Ordering::Relaxed);
    assert!(server.join().unwrap().unwrap() > 1, "a large message comes in bundles of several buffers");
    assert_eq!(fds(), before, "the server closed every descriptor it opened");
}
