//! A loopback echo server built from multishot operations and
//! subscriptions: ONE multishot accept takes every connection, and each
//! connection gets ONE multishot receive that draws its buffers from a
//! provided-buffer ring. The program owns the reap loop and routes each
//! completion to its subscription by `user_data`
//! ([`subscription_id`]); the handlers only record what happened, and the
//! loop acts on it (subscribe the new connection, echo the bytes, recycle
//! the buffer, resubscribe after `ENOBUFS`, close at end of stream).
//!
//! A client thread opens a few connections, sends lines, and checks that
//! each comes back. Run it with `cargo run -p uring-ops --example multishot`.
//!
//! The echo itself is written back with `std` (a blocking `write_all` on
//! the accepted socket) to keep the example about multishot; a real server
//! would queue a send on the ring instead.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use uring_core::{CqeSlot, Error, HandleCqe, Options, Ring, sys};
use uring_ops::multishot::RecvMulti;
use uring_ops::subscription::{
    MultishotAction, MultishotEnd, MultishotHandler, MultishotSubscriber, Subscribe, Subscription, subscription_id,
};

const CLIENTS: usize = 3;
const LINES: usize = 4;
const GROUP: u16 = 1;

/// What the handlers saw; the loop acts on it after routing a batch.
#[derive(Debug)]
enum Event {
    Accepted(RawFd),
    AcceptEnded(MultishotEnd),
    Data { fd: RawFd, bid: u16, len: usize },
    RecvEnded { fd: RawFd, end: MultishotEnd },
}

type Events = Rc<RefCell<VecDeque<Event>>>;
type Sub = Subscription<Box<dyn MultishotHandler>>;

/// What a subscription is for; stable across resubscriptions (which change
/// the subscription's id, the key its completions are routed by).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Accept,
    Conn(RawFd),
}

/// The handler of one connection's receive stream.
fn recv_handler(fd: RawFd, events: &Events) -> Box<dyn MultishotHandler> {
    let (on_data, on_end) = (events.clone(), events.clone());
    Box::new(
        MultishotSubscriber::new()
            .on_step(move |step| {
                // Every CQE comes here, the final one too; only those with a
                // buffer carry bytes (a final ENOBUFS or EOF carries none).
                if let Some(bid) = step.buffer_id() {
                    on_data.borrow_mut().push_back(Event::Data { fd, bid, len: step.res() as usize });
                }
                MultishotAction::Continue
            })
            .on_stop(move |end| on_end.borrow_mut().push_back(Event::RecvEnded { fd, end })),
    )
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut ring = Ring::new(Options::default().entries(64))?;
    ring.start()?;
    // Four 32-byte buffers: small on purpose, so a long line runs the
    // stream dry (ENOBUFS) and the loop shows the resubscribe.
    let mut bufs = BufRing::register(&ring, GROUP, 4, 32)?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    println!("echo server on {addr}: one multishot accept, one multishot receive per connection");

    let events: Events = Rc::new(RefCell::new(VecDeque::new()));
    let mut subs: HashMap<Key, Sub> = HashMap::new();
    let mut routes: HashMap<u64, Key> = HashMap::new();
    let (acc, acc_end) = (events.clone(), events.clone());
    let accept: Box<dyn MultishotHandler> = Box::new(
        MultishotSubscriber::new()
            .on_step(move |step| {
                if let Ok(fd) = step.result() {
                    acc.borrow_mut().push_back(Event::Accepted(fd as RawFd));
                }
                MultishotAction::Continue
            })
            .on_stop(move |end| acc_end.borrow_mut().push_back(Event::AcceptEnded(end))),
    );
    let accept = ring.subscribe_accept(listener.as_raw_fd(), accept)?;
    routes.insert(accept.id(), Key::Accept);
    subs.insert(Key::Accept, accept);
    ring.submit()?;

    let client = std::thread::spawn(move || clients(addr));

    let mut conns: HashMap<RawFd, TcpStream> = HashMap::new();
    let mut closed = 0;
    let mut slots = [CqeSlot::EMPTY; 64];
    let deadline = Instant::now() + Duration::from_secs(10);
    while !subs.is_empty() {
        if Instant::now() > deadline {
            return Err("the echo did not finish within 10 s".into());
        }
        // Reap a batch, then route each completion by its token.
        let n = match ring.wait_for(&mut slots, 1, Some(Duration::from_secs(1))) {
            Ok(r) => r.len(),
            Err(Error::WouldBlock) => 0,
            Err(e) => return Err(e.into()),
        };
        for slot in &slots[..n] {
            let cqe = slot.cqe();
            let key = subscription_id(cqe.user_data()).and_then(|id| routes.get(&id));
            match key.and_then(|k| subs.get_mut(k)) {
                Some(sub) => {
                    sub.handle_cqe(&mut ring, &cqe);
                }
                None => println!("  unrouted completion {cqe:?}"),
            }
        }
        // Act on what the handlers saw.
        while let Some(event) = events.borrow_mut().pop_front() {
            match event {
                Event::Accepted(fd) => {
                    // SAFETY: the kernel just created this descriptor for us.
                    let stream = TcpStream::from(unsafe { OwnedFd::from_raw_fd(fd) });
                    println!("accepted {} as fd {fd}", stream.peer_addr()?);
                    let sub = ring.subscribe_recv(fd, GROUP, recv_handler(fd, &events))?;
                    routes.insert(sub.id(), Key::Conn(fd));
                    subs.insert(Key::Conn(fd), sub);
                    conns.insert(fd, stream);
                }
                Event::Data { fd, bid, len } => {
                    let bytes = bufs.bytes(bid, len);
                    bufs.push(bid);
                    bufs.publish();
                    println!("  fd {fd}: {len} bytes in buffer {bid}: {:?}", String::from_utf8_lossy(&bytes));
                    conns[&fd].try_clone()?.write_all(&bytes)?;
                }
                Event::RecvEnded { fd, end: MultishotEnd::NoBuffers } => {
                    println!("  fd {fd}: out of buffers; the data waits in the socket: resubscribing");
                    if let Some(sub) = subs.get_mut(&Key::Conn(fd)) {
                        routes.remove(&sub.id());
                        sub.resubscribe(&mut ring, RecvMulti::new(fd, GROUP))?;
                        routes.insert(sub.id(), Key::Conn(fd));
                    }
                }
                Event::RecvEnded { fd, end } => {
                    println!("fd {fd}: receive stream ended ({end:?}); closing");
                    conns.remove(&fd);
                    closed += 1;
                    if closed == CLIENTS {
                        println!("all {CLIENTS} clients done: cancelling the accept");
                        if let Some(accept) = subs.get_mut(&Key::Accept) {
                            accept.cancel(&mut ring)?;
                        }
                    }
                }
                Event::AcceptEnded(end) => println!("accept stream ended: {end:?} (cancelled: {})", end.cancelled()),
            }
        }
        subs.retain(|_, s| !s.is_finished());
        routes.retain(|_, k| subs.contains_key(k));
    }
    client.join().map_err(|_| "client thread panicked")??;
    println!("done: every line came back");
    Ok(())
}

/// The client side: a few connections, each sending lines and reading
/// them back.
fn clients(addr: SocketAddr) -> Result<(), String> {
    let mut conns = Vec::new();
    for c in 0..CLIENTS {
        let s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
        conns.push((c, BufReader::new(s.try_clone().map_err(|e| e.to_string())?), s));
    }
    for line in 0..LINES {
        for (c, reader, writer) in &mut conns {
            let msg = format!("client {c} line {line}: {}\n", "echo ".repeat(line * 8));
            writer.write_all(msg.as_bytes()).map_err(|e| e.to_string())?;
            let mut back = String::new();
            reader.read_line(&mut back).map_err(|e| e.to_string())?;
            if back != msg {
                return Err(format!("client {c}: sent {msg:?}, got back {back:?}"));
            }
        }
    }
    Ok(())
}

/// A provided-buffer ring registered by hand (`IORING_REGISTER_PBUF_RING`);
/// `uring-buffers` will provide this. Its memory is two anonymous mappings
/// that are never unmapped, so the kernel can never write into freed
/// memory.
struct BufRing {
    ring: *mut sys::io_uring_buf_ring,
    data: *mut u8,
    entries: u16,
    size: usize,
    tail: u16,
}

impl BufRing {
    fn register(ring: &Ring, group: u16, entries: u16, size: usize) -> std::io::Result<BufRing> {
        let map = |len: usize| -> std::io::Result<*mut libc::c_void> {
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
            if p == libc::MAP_FAILED { Err(std::io::Error::last_os_error()) } else { Ok(p) }
        };
        let ring_mem = map(usize::from(entries) * std::mem::size_of::<sys::io_uring_buf>())?.cast();
        let data = map(usize::from(entries) * size)?.cast();
        let reg = sys::io_uring_buf_reg {
            ring_addr: ring_mem as u64,
            ring_entries: u32::from(entries),
            bgid: group,
            ..Default::default()
        };
        // SAFETY: `reg` names a page-aligned mapping of `entries` entries
        // that stays mapped for the life of the process.
        unsafe {
            sys::io_uring_register(
                ring.as_raw_fd(),
                sys::IORING_REGISTER_PBUF_RING,
                (&reg as *const sys::io_uring_buf_reg).cast(),
                1,
            )
        }?;
        let mut b = BufRing { ring: ring_mem, data, entries, size, tail: 0 };
        for bid in 0..entries {
            b.push(bid);
        }
        b.publish();
        Ok(b)
    }

    /// Hands buffer `bid` back to the kernel (visible after `publish`).
    fn push(&mut self, bid: u16) {
        let idx = usize::from(self.tail & (self.entries - 1));
        // SAFETY: idx < entries, inside the ring mapping; `resv`, which
        // overlays the tail in entry 0, is left alone.
        unsafe {
            let e = sys::io_uring_buf_ring::bufs_ptr(self.ring).add(idx);
            (*e).addr = self.data.add(usize::from(bid) * self.size) as u64;
            (*e).len = self.size as u32;
            (*e).bid = bid;
        }
        self.tail = self.tail.wrapping_add(1);
    }

    /// Publishes pushed entries with a release store of the tail, so the
    /// kernel sees the entries before the new tail.
    fn publish(&self) {
        // SAFETY: the tail is an aligned u16 in the mapping; the kernel only reads it.
        let tail = unsafe { AtomicU16::from_ptr(sys::io_uring_buf_ring::tail_ptr(self.ring)) };
        tail.store(self.tail, Ordering::Release);
    }

    /// A copy of the first `len` bytes of buffer `bid`, which a CQE handed
    /// back and which was not pushed again since.
    fn bytes(&self, bid: u16, len: usize) -> Vec<u8> {
        assert!(bid < self.entries && len <= self.size);
        // SAFETY: inside the data mapping; the kernel does not touch this
        // buffer until it is pushed again.
        unsafe { std::slice::from_raw_parts(self.data.add(usize::from(bid) * self.size), len).to_vec() }
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("multishot example failed: {e}");
        std::process::exit(1);
    }
}

#[test]
fn example_runs() {
    run().unwrap()
}
