//! Attack 6: multi-threaded and kernel-thread paths, from safe code only.
//!
//! Every test checks that the kernel acted on the submission-time data the
//! caller pushed (paths, timespecs, sockaddrs held in the slots' `Keep`s),
//! not on bytes written later into reused memory: slots are reused as fast
//! as the ring allows (tiny SQs), on SharedRings pushed from several
//! threads, on SQPOLL rings whose poller thread reads entries on its own
//! schedule, across `resize`, links and `IOSQE_ASYNC`, and when rings are
//! dropped on other threads. A failure message names the safe calls.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::ffi::CString;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use uring_core::{CqeSlot, Error, Options, Ring, SharedRing, SqPoll, SqeContext, SqeFlags};
use uring_ops::fs::{MkdirAt, OpenAt};
use uring_ops::poll::{PollAdd, PollEvents};
use uring_ops::prelude::*;
use uring_ops::socket::Connect;
use uring_ops::timeout::{LinkTimeout, Timeout};

const ETIME: i32 = -libc::ETIME;
const ECANCELED: i32 = -libc::ECANCELED;

fn tok(n: u64) -> SqeContext {
    SqeContext::token(n).unwrap()
}

/// A Ring with SQPOLL, or None (skipped) when the machine refuses it.
fn sqpoll_ring(entries: u32, idle_ms: u64) -> Option<Ring> {
    let opts = Options::default()
        .entries(entries)
        .cq_entries(1024)
        .sqpoll(SqPoll { idle: Duration::from_millis(idle_ms), cpu: None });
    match Ring::new(opts) {
        Ok(mut r) => {
            r.start().expect("start");
            Some(r)
        }
        Err(e) => {
            common::skip("sqpoll", &format!("{e}"));
            None
        }
    }
}

fn sqpoll_shared(entries: u32, idle_ms: u64) -> Option<SharedRing> {
    let opts = Options::default()
        .entries(entries)
        .cq_entries(1024)
        .sqpoll(SqPoll { idle: Duration::from_millis(idle_ms), cpu: None });
    match SharedRing::new(opts) {
        Ok(mut r) => {
            r.start().expect("start");
            Some(r)
        }
        Err(e) => {
            common::skip("sqpoll shared", &format!("{e}"));
            None
        }
    }
}

/// Pushes on a Ring, making room on QueueFull (wait_sq_room on SQPOLL,
/// submit otherwise), reaping whatever completes meanwhile into `done`.
fn push_ring<O: SafeOp + Copy>(ring: &mut Ring, ctx: SqeContext, op: O, done: &mut Vec<(u64, i32)>) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match ring.push_op(ctx, op) {
            Ok(_) => return,
            Err(Error::QueueFull { .. }) => {
                assert!(Instant::now() < deadline, "SQ never got room");
                if ring.params().flags & uring_core::sys::IORING_SETUP_SQPOLL != 0 {
                    ring.wait_sq_room().expect("wait_sq_room");
                } else {
                    ring.submit().expect("submit");
                }
                drain_ring(ring, done);
            }
            Err(e) => panic!("push_op: {e}"),
        }
    }
}

fn drain_ring(ring: &mut Ring, done: &mut Vec<(u64, i32)>) {
    let mut slots = [CqeSlot::EMPTY; 64];
    match ring.reap(&mut slots) {
        Ok(r) => done.extend(r.iter().map(|c| (common::as_built(c.user_data()), c.res()))),
        Err(Error::WouldBlock) => {}
        Err(e) => panic!("reap: {e}"),
    }
}

/// Reaps on a Ring until `n` completions are in `done` (5 s limit).
fn reap_ring_until(ring: &mut Ring, done: &mut Vec<(u64, i32)>, n: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut slots = [CqeSlot::EMPTY; 64];
    while done.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "{what}: timed out with {} of {n} completions: {done:?}", done.len());
        match ring.wait_for(&mut slots, 1, Some(left.min(Duration::from_millis(200)))) {
            Ok(r) => done.extend(r.iter().map(|c| (common::as_built(c.user_data()), c.res()))),
            Err(Error::WouldBlock) => {}
            Err(e) => panic!("{what}: wait_for: {e}"),
        }
    }
}

/// Pushes on a SharedRing, making room on QueueFull.
fn push_shared<O: SafeOp + Clone>(ring: &SharedRing, ctx: SqeContext, op: O, sqpoll: bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match ring.push_op(ctx, op.clone()) {
            Ok(_) => return,
            Err(Error::QueueFull { .. }) => {
                assert!(Instant::now() < deadline, "SQ never got room");
                if sqpoll {
                    ring.wait_sq_room().expect("wait_sq_room");
                } else {
                    ring.submit().expect("submit");
                }
            }
            Err(e) => panic!("push_op: {e}"),
        }
    }
}

fn reap_shared_until(ring: &SharedRing, done: &mut Vec<(u64, i32)>, n: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut slots = [CqeSlot::EMPTY; 64];
    while done.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "{what}: timed out with {} of {n} completions", done.len());
        match ring.wait_for(&mut slots, 1, Some(left.min(Duration::from_millis(100)))) {
            Ok(k) => done.extend(slots[..k].iter().map(|s| {
                let c = s.cqe();
                (common::as_built(c.user_data()), c.res())
            })),
            Err(Error::WouldBlock) => {}
            Err(e) => panic!("{what}: wait_for: {e}"),
        }
    }
}

/// A name whose length varies, so the freed `CString`s of earlier
/// pushes are of every allocation size the later ones need (a kernel
/// reading a cleared `Keep` would read another push's path).
fn dir_name(tag: &str, i: u64) -> String {
    format!("{tag}{i:05}{}", "p".repeat((i % 7) as usize * 9))
}

fn entries_of(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
}

/// Allocates and drops strings that would take the place of freed path
/// buffers, with a canary name the test never pushes.
fn churn_allocator() {
    let v: Vec<CString> = (0..256).map(|i| CString::new(dir_name("CANARY", i)).unwrap()).collect();
    drop(v);
}

fn read_file(fd: RawFd) -> String {
    let mut buf = [0u8; 64];
    // SAFETY: plain pread into a stack buffer.
    let n = unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
    assert!(n >= 0, "pread: {}", std::io::Error::last_os_error());
    String::from_utf8_lossy(&buf[..n as usize]).into_owned()
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: fresh descriptors owned here.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn tcp_socket() -> OwnedFd {
    // SAFETY: plain socket(2).
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0);
    // SAFETY: fresh descriptor owned here.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn peer_port(fd: RawFd) -> Option<u16> {
    // SAFETY: getpeername into a sockaddr_in of the right size.
    unsafe {
        let mut sa: libc::sockaddr_in = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        if libc::getpeername(fd, (&raw mut sa).cast(), &mut len) != 0 {
            return None;
        }
        Some(u16::from_be(sa.sin_port))
    }
}

// ---------------------------------------------------------------------------
// SQPOLL: the poller thread reads entries (and their Keeps) on its own
// schedule.

/// Attack: SQPOLL ring of 2 entries with a poller that sleeps after 1 ms;
/// 300 `MkdirAt`s with paths of varying lengths pushed as fast as
/// `push_op` / `wait_sq_room` allow, so every slot's `Keep` (a boxed
/// `CString`) is cleared and refilled while the poller races. If a Keep
/// were cleared before the poller prepared its entry, the kernel would read
/// a freed (and reallocated) path: a wrong directory, or a missing one.
#[test]
fn sqpoll_reused_slots_make_exactly_the_directories_pushed() {
    let Some(mut ring) = sqpoll_ring(2, 1) else { return };
    let dir = common::tmpdir("a6-sqpoll-mkdir");
    let dfd = std::fs::File::open(&dir).unwrap();
    let n = 300u64;
    let mut done = Vec::new();
    for i in 0..n {
        let op = MkdirAt::new(dfd.as_raw_fd(), dir_name("d", i), 0o755);
        // Not Copy: push directly, retrying on QueueFull.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match ring.push_op(tok(i), op.clone()) {
                Ok(_) => break,
                Err(Error::QueueFull { .. }) => {
                    assert!(Instant::now() < deadline, "SQ never got room");
                    ring.wait_sq_room().expect("wait_sq_room");
                    churn_allocator();
                }
                Err(e) => panic!("push_op: {e}"),
            }
        }
        if i % 3 == 0 {
            ring.submit().unwrap();
        }
        if i % 17 == 0 {
            // Let the poller fall asleep so the next wake-up is late.
            std::thread::sleep(Duration::from_millis(2));
        }
        drain_ring(&mut ring, &mut done);
    }
    reap_ring_until(&mut ring, &mut done, n as usize, "sqpoll mkdir");
    let bad: Vec<_> = done.iter().filter(|(_, r)| *r != 0).collect();
    assert!(
        bad.is_empty(),
        "SQPOLL Ring(entries 2): push_op(MkdirAt) x{n} with wait_sq_room on QueueFull: failed mkdirs {bad:?}"
    );
    let want: BTreeSet<_> = (0..n).map(|i| dir_name("d", i)).collect();
    let got = entries_of(&dir);
    assert_eq!(
        got, want,
        "SQPOLL Ring(entries 2): push_op(MkdirAt(path_i)) x{n}, wait_sq_room on QueueFull: the kernel created \
         directories other than the paths pushed (a Keep was reused before the poller read it)"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Attack: the first timeout's timespec (5 ms) sits in slot 0's Keep; the
/// next pushes reuse the 2 slots with 30 s timeouts as soon as the poller
/// lets them. The first must expire after ~5 ms; had the poller read the
/// Keep after it was overwritten, it would wait 30 s.
#[test]
fn sqpoll_timeout_reads_its_own_timespec_before_the_slot_is_refilled() {
    let Some(mut ring) = sqpoll_ring(2, 1) else { return };
    std::thread::sleep(Duration::from_millis(20)); // poller asleep
    let t0 = Instant::now();
    let mut done = Vec::new();
    push_ring(&mut ring, tok(1), Timeout::new(Duration::from_millis(5)), &mut done);
    for i in 0..8 {
        push_ring(&mut ring, tok(100 + i), Timeout::new(Duration::from_secs(30)), &mut done);
    }
    ring.submit().unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    while !done.iter().any(|(u, _)| *u == tok(1).raw()) {
        assert!(
            Instant::now() < deadline,
            "SQPOLL Ring(entries 2): push_op(Timeout 5ms), then push_op(Timeout 30s) x8 with wait_sq_room: the 5 ms \
             timeout did not fire in 3 s (the poller read a timespec written later into the reused Keep); \
             completions {done:?}"
        );
        let mut slots = [CqeSlot::EMPTY; 16];
        match ring.wait_for(&mut slots, 1, Some(Duration::from_millis(100))) {
            Ok(r) => done.extend(r.iter().map(|c| (common::as_built(c.user_data()), c.res()))),
            Err(Error::WouldBlock) => {}
            Err(e) => panic!("{e}"),
        }
    }
    let res = done.iter().find(|(u, _)| *u == tok(1).raw()).unwrap().1;
    assert_eq!(res, ETIME, "the 5 ms timeout: {res}");
    assert!(t0.elapsed() >= Duration::from_millis(5));
    // The 30 s ones must still be pending (they read their own 30 s, not 5 ms).
    assert!(
        done.iter().all(|(u, _)| *u == tok(1).raw()),
        "SQPOLL: a 30 s timeout completed early (read another slot's 5 ms timespec): {done:?}"
    );
    // Dropping the ring cancels them: must not hang.
    let t = Instant::now();
    drop(ring);
    assert!(t.elapsed() < Duration::from_secs(3), "dropping the SQPOLL ring took {:?}", t.elapsed());
}

/// Attack: push `Connect`s (sockaddr inline in the Keep) on an SQPOLL ring
/// of 2 entries, alternating between two listeners, so each slot's
/// sockaddr is overwritten with the other port as soon as the slot is
/// reacquired. Each socket must be connected to the port pushed with it.
#[test]
fn sqpoll_connects_reach_the_address_pushed_with_them() {
    let Some(mut ring) = sqpoll_ring(2, 1) else { return };
    let la = TcpListener::bind("127.0.0.1:0").unwrap();
    let lb = TcpListener::bind("127.0.0.1:0").unwrap();
    let (pa, pb) = (la.local_addr().unwrap(), lb.local_addr().unwrap());
    let n = 24u64;
    let socks: Vec<OwnedFd> = (0..n).map(|_| tcp_socket()).collect();
    let mut done = Vec::new();
    for (i, s) in socks.iter().enumerate() {
        let addr: SocketAddr = if i % 2 == 0 { pa } else { pb };
        push_ring(&mut ring, tok(i as u64), Connect::new(s.as_raw_fd(), addr), &mut done);
    }
    reap_ring_until(&mut ring, &mut done, n as usize, "sqpoll connect");
    for (u, r) in &done {
        assert_eq!(*r, 0, "connect {u:#x}: {r}");
    }
    for (i, s) in socks.iter().enumerate() {
        let want = if i % 2 == 0 { pa.port() } else { pb.port() };
        assert_eq!(
            peer_port(s.as_raw_fd()),
            Some(want),
            "SQPOLL Ring(entries 2): push_op(Connect(sock{i}, port {want})) alternating two listeners: socket {i} is \
             connected elsewhere (the poller read a sockaddr written later into the reused Keep)"
        );
    }
}

/// Attack: push two `MkdirAt`s on an SQPOLL Ring whose poller is asleep,
/// `submit`, then move the Ring to another thread and drop it there at
/// once (before the poller may have woken); then churn the allocator with
/// canary paths. Whatever the poller did, it must have used the paths
/// pushed: no canary directory, and every pushed one exists or not, never
/// a third name.
#[test]
fn sqpoll_ring_dropped_on_another_thread_before_the_poller_woke() {
    for round in 0..6u64 {
        let Some(mut ring) = sqpoll_ring(4, 1) else { return };
        let dir = common::tmpdir("a6-sqpoll-drop");
        std::thread::sleep(Duration::from_millis(10)); // poller asleep
        let names: Vec<String> = (0..3).map(|i| dir_name("x", round * 10 + i)).collect();
        for (i, name) in names.iter().enumerate() {
            ring.push_op(tok(i as u64), MkdirAt::new(libc::AT_FDCWD, dir.join(name), 0o755)).unwrap();
        }
        if round % 2 == 0 {
            ring.submit().unwrap();
        }
        let t = Instant::now();
        std::thread::spawn(move || drop(ring)).join().unwrap();
        assert!(t.elapsed() < Duration::from_secs(4), "drop on another thread took {:?}", t.elapsed());
        for _ in 0..50 {
            churn_allocator();
        }
        std::thread::sleep(Duration::from_millis(30));
        let got = entries_of(&dir);
        let allowed: BTreeSet<_> = names.iter().cloned().collect();
        assert!(
            got.is_subset(&allowed),
            "SQPOLL Ring: push_op(MkdirAt) x3, submit (round {round}), move the Ring to another thread and drop it: \
             the kernel created {got:?}, not a subset of {allowed:?} (it read a freed Keep path)"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

// ---------------------------------------------------------------------------
// SharedRing: several threads pushing.

/// Attack: a SharedRing of 2 entries, three threads each pushing 80
/// `MkdirAt`s (varying path lengths) and `Timeout`s, submitting on
/// QueueFull, while a fourth reaps: slots are reacquired by other threads
/// right after the kernel consumed them. Every path pushed, and only those,
/// must be created; every timeout must last at least its own duration.
#[test]
fn shared_ring_threads_reusing_two_slots_make_exactly_the_paths_pushed() {
    let mut ring = SharedRing::new(Options::default().entries(2).cq_entries(1024)).expect("SharedRing::new");
    ring.start().unwrap();
    let ring = Arc::new(ring);
    let dir = common::tmpdir("a6-shared-mkdir");
    let per = 80u64;
    let threads: Vec<_> = (0..3u64)
        .map(|t| {
            let ring = ring.clone();
            let dir = dir.clone();
            std::thread::spawn(move || {
                let mut pushed_at = HashMap::new();
                for i in 0..per {
                    let op = MkdirAt::new(libc::AT_FDCWD, dir.join(dir_name(&format!("t{t}_"), i)), 0o755);
                    let deadline = Instant::now() + Duration::from_secs(5);
                    loop {
                        match ring.push_op(tok(t << 20 | i), op.clone()) {
                            Ok(_) => break,
                            Err(Error::QueueFull { .. }) => {
                                assert!(Instant::now() < deadline);
                                ring.submit().unwrap();
                            }
                            Err(e) => panic!("{e}"),
                        }
                    }
                    if i % 8 == 0 {
                        let ms = 10 + (i % 3) * 10;
                        pushed_at.insert(t << 20 | 1 << 19 | i, (Instant::now(), Duration::from_millis(ms)));
                        push_shared(&ring, tok(t << 20 | 1 << 19 | i), Timeout::new(Duration::from_millis(ms)), false);
                    }
                    ring.submit().unwrap();
                }
                pushed_at
            })
        })
        .collect();
    let mut done = Vec::new();
    let timeouts_per = per.div_ceil(8);
    let total = (3 * (per + timeouts_per)) as usize;
    // Reap while they push.
    let mut slots = [CqeSlot::EMPTY; 64];
    let mut reaped_at = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while done.len() < total {
        assert!(Instant::now() < deadline, "timed out: {} of {total}", done.len());
        match ring.wait_for(&mut slots, 1, Some(Duration::from_millis(50))) {
            Ok(k) => {
                for s in &slots[..k] {
                    let c = s.cqe();
                    let u = common::as_built(c.user_data());
                    reaped_at.insert(u, Instant::now());
                    done.push((u, c.res()));
                }
            }
            Err(Error::WouldBlock) => {}
            Err(e) => panic!("{e}"),
        }
    }
    let mut pushed_at = HashMap::new();
    for t in threads {
        pushed_at.extend(t.join().unwrap());
    }
    for (u, r) in &done {
        let n = SqeContext::of_user_data(*u).as_token().unwrap();
        if n & 1 << 19 != 0 {
            assert_eq!(*r, ETIME, "timeout {n:#x}: {r}");
            let (at, d) = pushed_at[&n];
            let took = reaped_at[u].duration_since(at);
            assert!(
                took + Duration::from_millis(1) >= d,
                "SharedRing(entries 2), 3 threads: push_op(Timeout {d:?}) completed after {took:?}: it read another \
                 entry's timespec"
            );
        } else {
            assert_eq!(*r, 0, "mkdir {n:#x}: {r}");
        }
    }
    let want: BTreeSet<_> = (0..3u64).flat_map(|t| (0..per).map(move |i| dir_name(&format!("t{t}_"), i))).collect();
    assert_eq!(
        entries_of(&dir),
        want,
        "SharedRing(entries 2), 3 threads push_op(MkdirAt) + submit on QueueFull: directories differ from the paths \
         pushed (a Keep was cleared by another thread's push before the kernel read it)"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Attack: a SharedRing with SQPOLL, two threads pushing `MkdirAt`s and
/// calling `SharedRing::wait_sq_room` on QueueFull (it publishes and
/// blocks without the lock), a third reaping. Exactly the paths pushed.
#[test]
fn shared_sqpoll_ring_threads_wait_for_room_and_make_exactly_the_paths_pushed() {
    let Some(ring) = sqpoll_shared(2, 1) else { return };
    let ring = Arc::new(ring);
    let dir = common::tmpdir("a6-shared-sqpoll");
    let per = 100u64;
    let threads: Vec<_> = (0..2u64)
        .map(|t| {
            let ring = ring.clone();
            let dir = dir.clone();
            std::thread::spawn(move || {
                for i in 0..per {
                    let op = MkdirAt::new(libc::AT_FDCWD, dir.join(dir_name(&format!("s{t}_"), i)), 0o755);
                    let deadline = Instant::now() + Duration::from_secs(5);
                    loop {
                        match ring.push_op(tok(t << 20 | i), op.clone()) {
                            Ok(_) => break,
                            Err(Error::QueueFull { .. }) => {
                                assert!(Instant::now() < deadline);
                                ring.wait_sq_room().unwrap();
                                churn_allocator();
                            }
                            Err(e) => panic!("{e}"),
                        }
                    }
                    if i % 5 == 0 {
                        ring.submit().unwrap();
                    }
                }
                ring.submit().unwrap();
            })
        })
        .collect();
    let mut done = Vec::new();
    reap_shared_until(&ring, &mut done, (2 * per) as usize, "shared sqpoll mkdir");
    for t in threads {
        t.join().unwrap();
    }
    for (u, r) in &done {
        assert_eq!(*r, 0, "mkdir {u:#x}: {r}");
    }
    let want: BTreeSet<_> = (0..2u64).flat_map(|t| (0..per).map(move |i| dir_name(&format!("s{t}_"), i))).collect();
    assert_eq!(
        entries_of(&dir),
        want,
        "SQPOLL SharedRing(entries 2), 2 threads push_op(MkdirAt) + wait_sq_room on QueueFull: directories differ \
         from the paths pushed"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Attack: a SQPOLL SharedRing dropped on a thread other than its pushers
/// right after they pushed and submitted, while the poller sleeps; then
/// the allocator is churned with canary names. Only pushed names may exist.
#[test]
fn shared_sqpoll_ring_dropped_by_another_thread_right_after_pushes() {
    for round in 0..4u64 {
        let Some(ring) = sqpoll_shared(8, 1) else { return };
        let dir = common::tmpdir("a6-shared-drop");
        std::thread::sleep(Duration::from_millis(10));
        let ring = Arc::new(ring);
        let names: Vec<String> = (0..6).map(|i| dir_name("y", round * 10 + i)).collect();
        let pushers: Vec<_> = (0..2usize)
            .map(|t| {
                let ring = ring.clone();
                let dir = dir.clone();
                let names = names.clone();
                std::thread::spawn(move || {
                    for i in (t..6).step_by(2) {
                        ring.push_op(tok(i as u64), MkdirAt::new(libc::AT_FDCWD, dir.join(&names[i]), 0o755)).unwrap();
                    }
                    ring.submit().unwrap();
                })
            })
            .collect();
        for p in pushers {
            p.join().unwrap();
        }
        let ring = Arc::into_inner(ring).unwrap();
        let t = Instant::now();
        std::thread::spawn(move || drop(ring)).join().unwrap();
        assert!(t.elapsed() < Duration::from_secs(4));
        for _ in 0..50 {
            churn_allocator();
        }
        std::thread::sleep(Duration::from_millis(30));
        let got = entries_of(&dir);
        let allowed: BTreeSet<_> = names.iter().cloned().collect();
        assert!(
            got.is_subset(&allowed),
            "SQPOLL SharedRing: 2 threads push_op(MkdirAt) + submit, drop on a third thread (round {round}): \
             created {got:?}, not a subset of {allowed:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

// ---------------------------------------------------------------------------
// Entries the kernel issues later than it consumes them: links, ASYNC.

/// Attack: `PollAdd(pipe).IO_LINK` then `OpenAt(file_i)`: the open is issued
/// only once the poll fires, long after its slot was reused by other
/// `OpenAt`s with other paths (and `IOSQE_ASYNC`). The fd it returns must
/// name the file pushed with it. On a SharedRing pushed by two threads.
#[test]
fn linked_and_async_opens_open_the_file_pushed_with_them() {
    let mut ring = SharedRing::new(Options::default().entries(2).cq_entries(256)).expect("SharedRing::new");
    ring.start().unwrap();
    let ring = Arc::new(ring);
    let dir = common::tmpdir("a6-linked-open");
    let files: Vec<String> = (0..8).map(|i| dir_name("f", i)).collect();
    for f in &files {
        std::fs::write(dir.join(f), f.as_bytes()).unwrap();
    }
    let (r, w) = pipe();
    // The linked pair: poll, then the open it gates.
    push_shared(&ring, tok(1000), PollAdd::new(r.as_raw_fd(), PollEvents::IN).with_sqe_flags(SqeFlags::IO_LINK), false);
    push_shared(&ring, tok(0), OpenAt::new(libc::AT_FDCWD, dir.join(&files[0]), libc::O_RDONLY, 0), false);
    ring.submit().unwrap();
    // Other threads refill both slots with other paths, async.
    let pushers: Vec<_> = (0..2usize)
        .map(|t| {
            let ring = ring.clone();
            let dir = dir.clone();
            let files = files.clone();
            std::thread::spawn(move || {
                for i in (1 + t..8).step_by(2) {
                    let op = OpenAt::new(libc::AT_FDCWD, dir.join(&files[i]), libc::O_RDONLY, 0)
                        .with_sqe_flags(SqeFlags::ASYNC);
                    let deadline = Instant::now() + Duration::from_secs(5);
                    loop {
                        match ring.push_op(tok(i as u64), op.clone()) {
                            Ok(_) => break,
                            Err(Error::QueueFull { .. }) => {
                                assert!(Instant::now() < deadline);
                                ring.submit().unwrap();
                            }
                            Err(e) => panic!("{e}"),
                        }
                    }
                    ring.submit().unwrap();
                    churn_allocator();
                }
            })
        })
        .collect();
    for p in pushers {
        p.join().unwrap();
    }
    for _ in 0..20 {
        churn_allocator();
    }
    // Now let the gated open run.
    // SAFETY: write one byte from a stack buffer.
    assert_eq!(unsafe { libc::write(w.as_raw_fd(), b"x".as_ptr().cast(), 1) }, 1);
    let mut done = Vec::new();
    reap_shared_until(&ring, &mut done, 9, "linked open");
    for (u, res) in &done {
        let n = SqeContext::of_user_data(*u).as_token().unwrap();
        if n == 1000 {
            assert!(*res > 0, "poll: {res}");
            continue;
        }
        assert!(*res >= 0, "open {n}: {res}");
        // SAFETY: the descriptor the open returned, owned here.
        let fd = unsafe { OwnedFd::from_raw_fd(*res) };
        let body = read_file(fd.as_raw_fd());
        assert_eq!(
            body, files[n as usize],
            "SharedRing(entries 2): push_op(PollAdd.IO_LINK), push_op(OpenAt(file {n})), submit, other threads \
             push_op(OpenAt(other).ASYNC) into the same slots, then the poll fires: the open of entry {n} opened \
             another file"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Attack: `PollAdd(pipe).IO_LINK` + `LinkTimeout(80 ms)` on a SharedRing of
/// 2 entries; then other threads reuse both slots with 30 s `Timeout`s
/// (their timespecs land in the same inline Keep bytes). The link timeout
/// must still fire after ~80 ms and cancel the poll.
#[test]
fn a_linked_timeout_keeps_its_own_timespec_when_threads_reuse_its_slot() {
    let mut ring = SharedRing::new(Options::default().entries(2).cq_entries(256)).expect("SharedRing::new");
    ring.start().unwrap();
    let ring = Arc::new(ring);
    let (r, _w) = pipe();
    let t0 = Instant::now();
    push_shared(&ring, tok(1), PollAdd::new(r.as_raw_fd(), PollEvents::IN).with_sqe_flags(SqeFlags::IO_LINK), false);
    push_shared(&ring, tok(2), LinkTimeout::new(Duration::from_millis(80)), false);
    ring.submit().unwrap();
    let pushers: Vec<_> = (0..2u64)
        .map(|t| {
            let ring = ring.clone();
            std::thread::spawn(move || {
                for i in 0..4 {
                    push_shared(&ring, tok(100 + t * 10 + i), Timeout::new(Duration::from_secs(30)), false);
                    ring.submit().unwrap();
                }
            })
        })
        .collect();
    for p in pushers {
        p.join().unwrap();
    }
    let mut done = Vec::new();
    reap_shared_until(&ring, &mut done, 2, "link timeout");
    let took = t0.elapsed();
    let get = |n: u64| done.iter().find(|(u, _)| *u == tok(n).raw()).map(|x| x.1);
    assert_eq!(
        (get(1), get(2)),
        (Some(ECANCELED), Some(ETIME)),
        "SharedRing(entries 2): PollAdd.IO_LINK + LinkTimeout(80ms), then threads push_op(Timeout 30s) into the same \
         slots: {done:?}"
    );
    assert!(took >= Duration::from_millis(75) && took < Duration::from_secs(3), "link timeout took {took:?}");
    drop(Arc::into_inner(ring).unwrap());
}

// ---------------------------------------------------------------------------
// resize, SUBMIT_ALL, and rings moved across threads.

/// Attack: entries pushed (not submitted) then `Ring::resize` (which
/// submits them and reallocates the slots' Keeps), down and up, with
/// pushes in between reusing the new slots. Every path is the one pushed.
#[test]
fn resize_with_pending_keep_entries_creates_the_paths_pushed() {
    let mut ring = common::ring_with(Options::default().entries(4).cq_entries(64));
    let dir = common::tmpdir("a6-resize");
    let mut done = Vec::new();
    let mut n = 0u64;
    let mut push = |ring: &mut Ring, done: &mut Vec<(u64, i32)>, k: u64| {
        for _ in 0..k {
            let op = MkdirAt::new(libc::AT_FDCWD, dir.join(dir_name("r", n)), 0o755);
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match ring.push_op(tok(n), op.clone()) {
                    Ok(_) => break,
                    Err(Error::QueueFull { .. }) => {
                        assert!(Instant::now() < deadline);
                        ring.submit().unwrap();
                        drain_ring(ring, done);
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            n += 1;
        }
    };
    push(&mut ring, &mut done, 3);
    match ring.resize(2, 8) {
        Ok(()) => {}
        Err(Error::Unsupported { .. }) => {
            common::skip("resize", "unsupported");
            return;
        }
        Err(e) => panic!("resize: {e}"),
    }
    churn_allocator();
    push(&mut ring, &mut done, 5);
    ring.resize(16, 64).unwrap();
    churn_allocator();
    push(&mut ring, &mut done, 20);
    ring.resize(4, 64).unwrap();
    push(&mut ring, &mut done, 6);
    let total = n as usize;
    reap_ring_until(&mut ring, &mut done, total, "resize mkdir");
    for (u, r) in &done {
        assert_eq!(*r, 0, "mkdir {u:#x}: {r}");
    }
    let want: BTreeSet<_> = (0..n).map(|i| dir_name("r", i)).collect();
    assert_eq!(
        entries_of(&dir),
        want,
        "Ring: push_op(MkdirAt) x3, resize(2,8), push x5, resize(16,64), push x20, resize(4,64), push x6: \
         directories differ from the paths pushed"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Attack: a SUBMIT_ALL ring of 2 entries where every other entry fails
/// at prep (an `OpenAt` of a path longer than PATH_MAX: `getname` fails)
/// and the rest are `OpenAt`s of real files reusing the slots: the good
/// ones must open the file pushed with them, and nothing hangs.
#[test]
fn submit_all_with_failing_preps_opens_the_files_pushed() {
    let mut ring = common::ring_with(Options::default().entries(2).cq_entries(256).submit_all(true));
    let dir = common::tmpdir("a6-submit-all");
    let files: Vec<String> = (0..10).map(|i| dir_name("g", i)).collect();
    for f in &files {
        std::fs::write(dir.join(f), f.as_bytes()).unwrap();
    }
    let long = dir.join("z".repeat(5000));
    let mut done = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let bad = OpenAt::new(libc::AT_FDCWD, &long, libc::O_RDONLY, 0);
        let good = OpenAt::new(libc::AT_FDCWD, dir.join(f), libc::O_RDONLY, 0);
        for (ctx, op) in [(tok(1000 + i as u64), bad), (tok(i as u64), good)] {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match ring.push_op(ctx, op.clone()) {
                    Ok(_) => break,
                    Err(Error::QueueFull { .. }) => {
                        assert!(Instant::now() < deadline);
                        ring.submit().unwrap();
                        churn_allocator();
                        drain_ring(&mut ring, &mut done);
                    }
                    Err(e) => panic!("{e}"),
                }
            }
        }
    }
    reap_ring_until(&mut ring, &mut done, 2 * files.len(), "submit_all opens");
    for (u, res) in &done {
        let n = SqeContext::of_user_data(*u).as_token().unwrap();
        if n >= 1000 {
            assert!(*res < 0, "the over-long path opened: {res}");
            continue;
        }
        assert!(*res >= 0, "open {n}: {res}");
        // SAFETY: the descriptor the open returned, owned here.
        let fd = unsafe { OwnedFd::from_raw_fd(*res) };
        assert_eq!(
            read_file(fd.as_raw_fd()),
            files[n as usize],
            "SUBMIT_ALL Ring(entries 2): push_op(OpenAt(too long)), push_op(OpenAt(file {n})) alternately: wrong file"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Attack: a single-issuer Ring started on thread A with a 30 s timeout
/// and a poll in flight is moved to thread B, which pushes (allowed: it
/// only writes the SQ), fails to submit (`WrongThread`), and drops the
/// ring: the kernel refuses the cancel there. The drop must return
/// promptly, and a connect pushed on A must have reached its own address.
#[test]
fn a_ring_moved_and_dropped_on_another_thread_returns_and_used_the_pushed_data() {
    let mut ring = common::ring_with(Options::default().entries(2).cq_entries(64));
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    let s = tcp_socket();
    let (r, _w) = pipe();
    let mut done = Vec::new();
    push_ring(&mut ring, tok(1), Connect::new(s.as_raw_fd(), l.local_addr().unwrap()), &mut done);
    push_ring(&mut ring, tok(2), Timeout::new(Duration::from_secs(30)), &mut done);
    ring.submit().unwrap();
    push_ring(&mut ring, tok(3), PollAdd::new(r.as_raw_fd(), PollEvents::IN), &mut done);
    ring.submit().unwrap();
    reap_ring_until(&mut ring, &mut done, 1, "connect");
    assert_eq!(done[0], (tok(1).raw(), 0), "connect: {done:?}");
    let s2 = tcp_socket();
    let other_addr = other.local_addr().unwrap();
    let fd2 = s2.as_raw_fd();
    let t = Instant::now();
    std::thread::spawn(move || {
        // Pushing is allowed from the new owner; submitting is not.
        let _ = ring.push_op(tok(4), Connect::new(fd2, other_addr));
        match ring.submit() {
            Err(Error::WrongThread { .. }) | Ok(_) => {}
            Err(e) => panic!("submit on another thread: {e}"),
        }
        drop(ring);
    })
    .join()
    .unwrap();
    assert!(t.elapsed() < Duration::from_secs(4), "drop on another thread took {:?}", t.elapsed());
    churn_allocator();
    assert_eq!(peer_port(s.as_raw_fd()), Some(l.local_addr().unwrap().port()));
    // The entry pushed on B (if ever consumed) must name other_addr.
    if let Some(p) = peer_port(fd2) {
        assert_eq!(p, other_addr.port(), "the connect pushed on thread B reached port {p}");
    }
    drop(TcpStream::connect(l.local_addr().unwrap()));
}

/// Compile-time: the types the docs call Send/Sync are, and the
/// multi-issuer ring is shareable.
#[test]
fn send_and_sync_as_documented() {
    fn send<T: Send>() {}
    fn sync<T: Sync>() {}
    send::<Ring>();
    send::<SharedRing>();
    sync::<SharedRing>();
    send::<CqeSlot>();
    sync::<CqeSlot>();
    send::<uring_core::ContextPools>();
}

// ---------------------------------------------------------------------------
// Registered ring fds and rings moved across threads.

/// Attack (registered ring fd + Ring moved across threads):
///
/// 1. thread A: `Ring::new(Options::register_ring_fd(true))`, `start` (its
///    fd is registered at index 0 of A's table), send the Ring to B;
/// 2. thread B: `push_op(MkdirAt(dir, name))` (the path goes into the
///    slot's `Keep`), `submit` (publishes the SQ tail; the enter fails,
///    `WrongThread`), `drop` the Ring: its fd is closed, its memory
///    unmapped and the `Keep`s freed, but A's registration still holds the
///    ring file, so the kernel ring lives on with the published entry;
/// 3. B churns the allocator with canary paths of the same length;
/// 4. thread C: `Ring::new(register_ring_fd(true))`, `start` (index 0 of
///    C's table), sends this second Ring to A;
/// 5. thread A: `push_op(MkdirAt(dir, marker))`, `submit` on the second Ring: its
///    `io_uring_enter(0, REGISTERED_RING)` resolves index 0 in A's table,
///    the first ring, and submits the stale entry, whose path the kernel
///    reads from the freed `Keep`.
///
/// No directory may appear after step 2 (the Ring that pushed it was
/// dropped before the kernel consumed the entry); one appearing at step 5
/// means the kernel read freed memory (a canary name: reused memory).
#[test]
fn a_registered_ring_index_on_another_thread_submits_a_dropped_rings_entries() {
    registered_index_confusion(true);
}

/// The same sequence with the first Ring kept alive on B (not dropped):
/// the second Ring's `submit` on A must submit the second Ring's own
/// entry, not the first Ring's. (A correctness check of the mechanism
/// above: a Ring's enter through a registered index another thread's
/// table maps to a different ring.)
#[test]
fn a_ring_moved_to_a_thread_whose_registered_index_is_another_rings_submits_its_own_entries() {
    registered_index_confusion(false);
}

/// The same attack with a `SharedRing` as the first ring: it is meant to
/// be entered from several threads, so a per-thread registered fd must be
/// refused (else every thread but the starter would enter whatever ring
/// its own table holds at that index).
#[test]
fn a_shared_ring_refuses_a_registered_ring_fd() {
    let r =
        SharedRing::new(Options::default().entries(4).register_ring_fd(true)).and_then(|mut r| r.start().map(|()| r));
    assert!(
        matches!(r, Err(Error::InvalidArgument(_))),
        "SharedRing::new(Options::register_ring_fd(true)) + start: {r:?} (a registered index is per thread)"
    );
}

fn registered_index_confusion(drop_first: bool) {
    use std::sync::mpsc;
    let dir = common::tmpdir("a6-ringfd");
    let dfd = Arc::new(std::fs::File::open(&dir).unwrap());
    let name = "stale_entry_path_0123456789abcdef".to_string();

    let (to_b, from_a) = mpsc::channel::<Ring>();
    let (to_a, a_gets) = mpsc::channel::<Ring>();
    let (a_done, a_result) = mpsc::channel::<String>();
    let marker_dfd = dfd.clone();
    let a = std::thread::spawn(move || {
        let opts = Options::default().entries(4).register_ring_fd(true);
        let started = Ring::new(opts).and_then(|mut r| r.start().map(|()| r));
        match started {
            Ok(r1) => to_b.send(r1).unwrap(),
            Err(e) => {
                a_done.send(format!("skip: start: {e}")).unwrap();
                return;
            }
        }
        // Stay alive (our registration keeps the first ring's file) until
        // the second Ring arrives.
        let Ok(mut r2) = a_gets.recv_timeout(Duration::from_secs(5)) else {
            a_done.send("skip: no second ring".into()).unwrap();
            return;
        };
        let pushed = r2.push_op(tok(7), MkdirAt::new(marker_dfd.as_raw_fd(), "second_ring_marker", 0o755));
        let submitted = r2.submit();
        a_done.send(format!("second ring on A: push {pushed:?}, submit {submitted:?}")).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        drop(r2);
    });
    let Ok(mut r1) = from_a.recv_timeout(Duration::from_secs(5)) else {
        let msg = a_result.recv().unwrap_or_default();
        a.join().unwrap();
        common::skip("ringfd", &msg);
        return;
    };
    // Thread B (this one).
    let stale = MkdirAt::new(dfd.as_raw_fd(), &name, 0o755);
    r1.push_op(tok(1), stale).unwrap();
    let sub = r1.submit();
    // Canaries of the same size as the freed path (name + NUL), built
    // before the drop so that only their copies, made right after it,
    // can take the freed chunk.
    let srcs: Vec<Vec<u8>> =
        (0..64).map(|i| format!("CANARY{i:02}_{}\0", "c".repeat(name.len() - 9)).into_bytes()).collect();
    let mut canaries: Vec<CString> = Vec::with_capacity(srcs.len());
    let t = Instant::now();
    let kept = if drop_first {
        drop(r1);
        None
    } else {
        Some(r1)
    };
    for s in &srcs {
        canaries.push(CString::from_vec_with_nul(s.clone()).unwrap());
    }
    assert!(t.elapsed() < Duration::from_secs(4));
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        entries_of(&dir).is_empty(),
        "the entry was consumed on B although submit said {sub:?}: {:?}",
        entries_of(&dir)
    );
    // Thread C: a second ring registered at the same index in C's table.
    let c = std::thread::spawn(move || {
        let mut r2 = Ring::new(Options::default().entries(4).register_ring_fd(true)).expect("Ring::new");
        r2.start().expect("start");
        to_a.send(r2).unwrap();
    });
    c.join().unwrap();
    let report = a_result.recv_timeout(Duration::from_secs(5)).unwrap_or_default();
    a.join().unwrap();
    if report.starts_with("skip") {
        common::skip("ringfd", &report);
        return;
    }
    std::thread::sleep(Duration::from_millis(200));
    let mut got = entries_of(&dir);
    let second_ring_ran = got.remove("second_ring_marker");
    drop(canaries);
    let _ = std::fs::remove_dir_all(&dir);
    if let Some(r1) = kept {
        drop(r1);
        // The second ring (a single issuer started on C) submits from A
        // through its fd: the kernel refuses that thread (WrongThread), or
        // runs its own entry; never the first ring's.
        assert!(
            got.is_empty() && (second_ring_ran || report.contains("WrongThread")),
            "BUG (correctness): thread A: Ring::new(register_ring_fd(true)) + start, move to B; B: \
             push_op(MkdirAt(dir, {name:?})), submit ({sub:?}), keep it; thread C: a second \
             Ring::new(register_ring_fd(true)) + start, move to A; A: push_op(MkdirAt(dir, marker)) + submit on the \
             second Ring ({report}): the second Ring's own entry ran: {second_ring_ran}; entries of the first ring \
             the kernel consumed instead: {got:?} (the enter used registered index 0 of A's table, the first ring)"
        );
        return;
    }
    assert!(
        got.is_empty(),
        "UNSOUND: thread A: Ring::new(register_ring_fd(true)) + start, move to B; B: push_op(MkdirAt(dir, {name:?})), \
         submit ({sub:?}), drop it (Keeps freed), allocate canary paths; thread C: a second \
         Ring::new(register_ring_fd(true)) + start, move to A; A: push_op(MkdirAt(dir, marker)) + submit on the second Ring \
         ({report}; its own marker entry ran: {second_ring_ran}). The second Ring's enter used registered index 0 \
         of A's table, i.e. the first (dropped) ring, and the kernel consumed that ring's stale entry, reading its \
         path from the freed Keep: it created {got:?} (a CANARY name: the freed memory was already reused by a live \
         CString; other bytes: allocator metadata)"
    );
}
