//! Echo throughput: the echo example's TCP server against the same server
//! written directly on the `io-uring` crate, driven by the same clients.
//!
//! Both servers have the same architecture: one thread, one ring, one
//! multishot accept, one multishot receive per connection selecting from a
//! provided-buffer ring of 1024 × 4 KiB (registered with
//! `register_buf_ring_with_flags`, entries written as `types::BufRingEntry`
//! on the io-uring side), each received buffer sent back from where it
//! landed and recycled at the send's CQE, `TCP_NODELAY`, and a 50 ms
//! timed wait for at least one CQE. Differences, by design: ours receives
//! in bundles when the kernel can (a 16 KiB message in one CQE and one
//! `sendmsg`), the io-uring one with `RecvMulti` (one CQE and one `send`
//! per buffer). The io-uring server runs twice: with the crate's default
//! setup (`IoUring::new`), and with our ring's default setup flags
//! (`SINGLE_ISSUER | DEFER_TASKRUN`), so the library's own cost shows apart
//! from its defaults.
//!
//! Each iteration is 4 clients × 16 round trips (blocking `std` sockets on
//! their own threads, every echoed byte compared); criterion reports
//! round trips per second. After the groups, the ratios of the medians are
//! printed. Run: `cargo bench -p uring-buffers --bench echo`.

#[path = "../examples/echo.rs"]
#[allow(unreachable_pub, missing_docs)]
mod echo;

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use io_uring::types::{BufRingEntry, Fd, SubmitArgs, Timespec};
use io_uring::{IoUring, cqueue, opcode};

const CLIENTS: usize = 4;
const ROUNDS: u64 = 16;
const SIZES: [usize; 3] = [64, 1024, 16384];
const ENTRIES: u16 = 1024;
const BUF_SIZE: u32 = 4096;
const GROUP: u16 = 7;

// ---------------------------------------------------------------------------
// The io-uring crate's echo server

const K_ACCEPT: u64 = 1;
const K_RECV: u64 = 2;
const K_SEND: u64 = 3;

struct RawConn {
    fd: OwnedFd,
    /// Buffers to send back, oldest first: (buffer id, length, sent).
    out: VecDeque<(u16, usize, usize)>,
    sending: bool,
    recv_armed: bool,
    done: bool,
}

/// A provided-buffer ring managed by hand, as the io-uring crate's users do.
struct RawBufRing {
    ring: *mut BufRingEntry,
    data: Vec<u8>,
    tail: u16,
    available: u32,
}

impl RawBufRing {
    fn register(uring: &IoUring) -> std::io::Result<Self> {
        let bytes = usize::from(ENTRIES) * size_of::<BufRingEntry>();
        // SAFETY: a fresh anonymous mapping; no existing memory is touched.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let ring = p.cast::<BufRingEntry>();
        // SAFETY: the mapping is never unmapped (leaked for the process's
        // life), so it outlives the registration.
        unsafe { uring.submitter().register_buf_ring_with_flags(ring as u64, ENTRIES, GROUP, 0) }?;
        let mut br =
            RawBufRing { ring, data: vec![0; usize::from(ENTRIES) * BUF_SIZE as usize], tail: 0, available: 0 };
        for bid in 0..ENTRIES {
            br.add(bid);
        }
        Ok(br)
    }

    fn add(&mut self, bid: u16) {
        let addr = self.data.as_ptr() as u64 + u64::from(bid) * u64::from(BUF_SIZE);
        // SAFETY: the index is masked into the ring; the entry at our tail
        // is not the kernel's until the tail below covers it.
        let e = unsafe { &mut *self.ring.add(usize::from(self.tail & (ENTRIES - 1))) };
        e.set_addr(addr);
        e.set_len(BUF_SIZE);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
        self.available += 1;
        // SAFETY: the tail overlays entry 0's reserved field, an aligned u16
        // in the mapping.
        let tail = unsafe { AtomicU16::from_ptr(BufRingEntry::tail(self.ring).cast_mut()) };
        tail.store(self.tail, Ordering::Release);
    }

    fn bytes(&self, bid: u16, len: usize) -> &[u8] {
        &self.data[usize::from(bid) * BUF_SIZE as usize..][..len]
    }
}

fn raw_server(same_flags: bool, stop: &AtomicBool, ready: mpsc::Sender<SocketAddr>) -> std::io::Result<()> {
    let mut uring: IoUring = if same_flags {
        IoUring::builder().setup_single_issuer().setup_defer_taskrun().build(512)?
    } else {
        IoUring::new(512)?
    };
    let mut br = RawBufRing::register(&uring)?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let accept =
        opcode::AcceptMulti::new(Fd(listener.as_raw_fd())).flags(libc::SOCK_CLOEXEC).build().user_data(K_ACCEPT);
    // SAFETY: the SQE names no memory.
    unsafe { uring.submission().push(&accept) }.map_err(std::io::Error::other)?;
    uring.submit()?;
    let _ = ready.send(listener.local_addr()?);
    let mut conns: Vec<Option<RawConn>> = Vec::new();
    let mut rearm: Vec<usize> = Vec::new();
    let ts = Timespec::new().nsec(50_000_000);
    let args = SubmitArgs::new().timespec(&ts);
    let mut cqes = Vec::with_capacity(256);
    while !stop.load(Ordering::Relaxed) {
        match uring.submitter().submit_with_args(1, &args) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ETIME) || e.raw_os_error() == Some(libc::EINTR) => {}
            Err(e) => return Err(e),
        }
        cqes.clear();
        cqes.extend(uring.completion().map(|c| (c.user_data(), c.result(), c.flags())));
        for &(ud, res, flags) in &cqes {
            let (kind, idx) = (ud & 0xff, (ud >> 8) as usize);
            match kind {
                K_ACCEPT if res >= 0 => {
                    // SAFETY: a descriptor the kernel just installed for us.
                    let fd = unsafe { OwnedFd::from_raw_fd(res) };
                    let one: libc::c_int = 1;
                    // SAFETY: setsockopt reads one c_int, valid for the call.
                    unsafe {
                        libc::setsockopt(
                            fd.as_raw_fd(),
                            libc::IPPROTO_TCP,
                            libc::TCP_NODELAY,
                            (&one as *const libc::c_int).cast(),
                            size_of::<libc::c_int>() as libc::socklen_t,
                        )
                    };
                    conns.push(Some(RawConn {
                        fd,
                        out: VecDeque::new(),
                        sending: false,
                        recv_armed: false,
                        done: false,
                    }));
                    let idx = conns.len() - 1;
                    arm_recv(&mut uring, &mut conns, idx)?;
                }
                K_RECV => {
                    let Some(conn) = conns[idx].as_mut() else { continue };
                    if let Some(bid) = cqueue::buffer_select(flags) {
                        br.available -= 1;
                        conn.out.push_back((bid, res as usize, 0));
                        kick(&mut uring, &br, conn, idx)?;
                    }
                    if !cqueue::more(flags) {
                        conn.recv_armed = false;
                        if res == -libc::ENOBUFS {
                            rearm.push(idx);
                        } else if res <= 0 {
                            conn.done = true;
                        } else {
                            rearm.push(idx);
                        }
                    }
                }
                K_SEND => {
                    let Some(conn) = conns[idx].as_mut() else { continue };
                    conn.sending = false;
                    if res < 0 {
                        conn.done = true;
                    } else if let Some(front) = conn.out.front_mut() {
                        front.2 += res as usize;
                        if front.2 >= front.1 {
                            let bid = front.0;
                            conn.out.pop_front();
                            br.add(bid);
                        }
                        kick(&mut uring, &br, conn, idx)?;
                    }
                }
                _ => {}
            }
            let finished =
                conns.get(idx).and_then(Option::as_ref).is_some_and(|c| c.done && !c.sending && !c.recv_armed);
            if kind != K_ACCEPT && finished {
                let conn = conns[idx].take().expect("checked");
                for (bid, ..) in conn.out {
                    br.add(bid);
                }
            }
        }
        if !rearm.is_empty() && br.available > 0 {
            for idx in std::mem::take(&mut rearm) {
                arm_recv(&mut uring, &mut conns, idx)?;
            }
        }
    }
    // Closing the ring's fd ends what is armed, but the kernel tears the
    // ring down asynchronously (io_uring's exit work runs after close
    // returns): the buffers are kept for the process's life rather than
    // freed while a cancelled send might still name them. They are parked
    // in a static, not forgotten, so LeakSanitizer (the ASan pass of
    // .ci/run) sees them as reachable instead of leaked; the ring mapping
    // is never unmapped.
    drop(uring);
    PARKED.lock().unwrap_or_else(|e| e.into_inner()).push(br.data);
    Ok(())
}

/// The data buffers of the io-uring servers' provided rings, kept until the
/// process exits (see the end of `raw_server`).
static PARKED: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

fn push(uring: &mut IoUring, e: &io_uring::squeue::Entry) -> std::io::Result<()> {
    // SAFETY: forwarded from the callers: every SQE pushed names memory
    // that outlives its CQE.
    if unsafe { uring.submission().push(e) }.is_err() {
        uring.submit()?;
        // SAFETY: as above.
        unsafe { uring.submission().push(e) }.map_err(std::io::Error::other)?;
    }
    Ok(())
}

fn arm_recv(uring: &mut IoUring, conns: &mut [Option<RawConn>], idx: usize) -> std::io::Result<()> {
    let Some(conn) = conns[idx].as_mut() else { return Ok(()) };
    let e = opcode::RecvMulti::new(Fd(conn.fd.as_raw_fd()), GROUP).build().user_data(K_RECV | (idx as u64) << 8);
    push(uring, &e)?;
    conn.recv_armed = true;
    Ok(())
}

fn kick(uring: &mut IoUring, br: &RawBufRing, conn: &mut RawConn, idx: usize) -> std::io::Result<()> {
    if conn.sending {
        return Ok(());
    }
    let Some(&(bid, len, off)) = conn.out.front() else { return Ok(()) };
    let bytes = &br.bytes(bid, len)[off..];
    let e = opcode::Send::new(Fd(conn.fd.as_raw_fd()), bytes.as_ptr(), bytes.len() as u32)
        .build()
        .user_data(K_SEND | (idx as u64) << 8);
    // The buffer is not re-added to the ring until this send's CQE, and
    // the buffer memory lives until after the ring is dropped.
    push(uring, &e)?;
    conn.sending = true;
    Ok(())
}

struct RawServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<std::io::Result<()>>,
}

impl RawServer {
    fn spawn(same_flags: bool) -> RawServer {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let flag = stop.clone();
        let thread = thread::spawn(move || raw_server(same_flags, &flag, tx));
        let addr = rx.recv_timeout(Duration::from_secs(10)).expect("the io-uring server starts");
        RawServer { addr, stop, thread }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("no panic").expect("the io-uring server ran cleanly");
    }
}

// ---------------------------------------------------------------------------
// Clients

/// Persistent client connections on their own threads; `run(n)` makes each
/// do `n` verified round trips and returns the wall time.
struct Clients {
    go: Vec<mpsc::Sender<u64>>,
    done: mpsc::Receiver<Result<(), String>>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Clients {
    fn connect(addr: SocketAddr, size: usize) -> Clients {
        let (done_tx, done) = mpsc::channel();
        let mut go = Vec::new();
        let mut threads = Vec::new();
        for id in 0..CLIENTS {
            let (tx, rx) = mpsc::channel::<u64>();
            let done_tx = done_tx.clone();
            let mut s = TcpStream::connect(addr).expect("connect");
            s.set_nodelay(true).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            go.push(tx);
            threads.push(thread::spawn(move || {
                let mut msg = vec![0u8; size];
                let mut back = vec![0u8; size];
                let mut seq = 0u64;
                while let Ok(n) = rx.recv() {
                    let r = (|| -> Result<(), String> {
                        for _ in 0..n {
                            echo::fill(&mut msg, id, seq);
                            s.write_all(&msg).map_err(|e| e.to_string())?;
                            s.read_exact(&mut back).map_err(|e| e.to_string())?;
                            echo::verify(&back, id, seq)?;
                            seq += 1;
                        }
                        Ok(())
                    })();
                    let _ = done_tx.send(r);
                }
            }));
        }
        Clients { go, done, threads }
    }

    fn run(&self, n: u64) -> Duration {
        let t = Instant::now();
        for g in &self.go {
            g.send(n).unwrap();
        }
        for _ in 0..CLIENTS {
            self.done.recv().unwrap().expect("every echoed byte matches");
        }
        t.elapsed()
    }

    fn close(self) {
        drop(self.go);
        for t in self.threads {
            t.join().unwrap();
        }
    }
}

// ---------------------------------------------------------------------------
// Benchmarks

#[derive(Clone, Copy, Debug, PartialEq)]
enum Which {
    Ours,
    RawDefault,
    RawSameFlags,
}

impl Which {
    fn name(self) -> &'static str {
        match self {
            Which::Ours => "uring-buffers",
            Which::RawDefault => "io-uring (IoUring::new)",
            Which::RawSameFlags => "io-uring (single issuer, defer taskrun)",
        }
    }
}

/// Runs `f` against a fresh server of the kind asked for.
fn with_server<T>(which: Which, size: usize, f: impl FnOnce(&Clients) -> T) -> T {
    match which {
        Which::Ours => {
            let server = echo::Server::spawn(echo::Proto::Tcp, echo::ServerConfig::default(), 0).expect("our server");
            let clients = Clients::connect(server.addr, size);
            let out = f(&clients);
            clients.close();
            let stats = server.stop().expect("our server ran cleanly");
            assert_eq!(stats.conn_errors, 0);
            out
        }
        Which::RawDefault | Which::RawSameFlags => {
            let server = RawServer::spawn(which == Which::RawSameFlags);
            let clients = Clients::connect(server.addr, size);
            let out = f(&clients);
            clients.close();
            server.stop();
            out
        }
    }
}

const ALL: [Which; 3] = [Which::Ours, Which::RawDefault, Which::RawSameFlags];

fn bench_echo(c: &mut Criterion, medians: &Mutex<Vec<(usize, Which, f64)>>) {
    for size in SIZES {
        let mut g = c.benchmark_group(format!("echo/{size}B"));
        g.throughput(Throughput::Elements(CLIENTS as u64 * ROUNDS));
        g.sample_size(20).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
        for which in ALL {
            with_server(which, size, |clients| {
                let mut per_iter = Vec::new();
                g.bench_function(BenchmarkId::from_parameter(which.name()), |b| {
                    b.iter_custom(|iters| {
                        let t = clients.run(iters * ROUNDS);
                        per_iter.push(t.as_secs_f64() / iters as f64);
                        t
                    })
                });
                per_iter.sort_by(f64::total_cmp);
                if let Some(m) = per_iter.get(per_iter.len() / 2) {
                    medians.lock().unwrap().push((size, which, CLIENTS as f64 * ROUNDS as f64 / m));
                }
            });
        }
        g.finish();
    }
}

/// Ratios that survive a noisy machine: all three servers run at once,
/// each with its own clients, and short runs alternate between them
/// (ours, io-uring, io-uring same flags, ours, …); the ratio of each
/// round's rates is taken and the median of the rounds reported.
fn interleaved(size: usize) -> Vec<(Which, f64, f64)> {
    let ours = echo::Server::spawn(echo::Proto::Tcp, echo::ServerConfig::default(), 0).expect("our server");
    let raw = [RawServer::spawn(false), RawServer::spawn(true)];
    let clients =
        [Clients::connect(ours.addr, size), Clients::connect(raw[0].addr, size), Clients::connect(raw[1].addr, size)];
    let per_run = (100_000 / size as u64).clamp(50, 1000);
    for c in &clients {
        c.run(per_run);
    }
    let mut rates: [Vec<f64>; 3] = Default::default();
    let mut ratios: [Vec<f64>; 3] = Default::default();
    for _ in 0..ROUNDS_AB {
        let r: Vec<f64> =
            clients.iter().map(|c| (CLIENTS as u64 * per_run) as f64 / c.run(per_run).as_secs_f64()).collect();
        for i in 0..3 {
            rates[i].push(r[i]);
            ratios[i].push(r[0] / r[i]);
        }
    }
    for c in clients {
        c.close();
    }
    assert_eq!(ours.stop().expect("our server ran cleanly").conn_errors, 0);
    for r in raw {
        r.stop();
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    ALL.iter().enumerate().map(|(i, &w)| (w, median(&mut rates[i]), median(&mut ratios[i]))).collect()
}

const ROUNDS_AB: usize = 31;

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let medians = Mutex::new(Vec::new());
    bench_echo(&mut c, &medians);
    c.final_summary();
    let medians = medians.into_inner().unwrap();
    println!("\necho round trips per second, criterion samples (median per iteration):");
    for size in SIZES {
        let rate = |w: Which| medians.iter().find(|m| m.0 == size && m.1 == w).map(|m| m.2);
        let Some(ours) = rate(Which::Ours) else { continue };
        let mut line = format!("  {size:>5} B: uring-buffers {ours:>8.0}/s");
        for w in [Which::RawDefault, Which::RawSameFlags] {
            if let Some(r) = rate(w) {
                line += &format!(", {} {r:>8.0}/s (ours x{:.3})", w.name(), ours / r);
            }
        }
        println!("{line}");
    }
    println!("\necho, interleaved runs ({ROUNDS_AB} rounds; median rate, median of the per-round ratios ours/theirs):");
    for size in SIZES {
        let r = interleaved(size);
        let mut line = format!("  {size:>5} B: uring-buffers {:>8.0}/s", r[0].1);
        for (w, rate, ratio) in &r[1..] {
            line += &format!(", {} {rate:>8.0}/s (ours x{ratio:.3})", w.name());
        }
        println!("{line}");
    }
}
