//! attack7: safe-API attacks on zero-copy cancel and xattr value copies.

mod common;

use std::ffi::CString;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

use uring_core::{CqeSlot, Error, SqeContext};
use uring_ops::cancel::CancelOps;
use uring_ops::prelude::*;
use uring_ops::xattr::FSetXattr;
use uring_ops::zc::{ZcEvent, ZcTracker};

fn ctx(n: u64) -> SqeContext {
    SqeContext::token(n).unwrap()
}

fn blocked_pair() -> (TcpStream, TcpStream) {
    let (client, server) = common::tcp_pair();
    client.set_nonblocking(true).unwrap();
    let chunk = [b'.'; 4096];
    let mut c = &client;
    loop {
        match c.write(&chunk) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("{e}"),
        }
    }
    client.set_nonblocking(false).unwrap();
    (client, server)
}

/// Attack: a zero-copy send parked waiting for socket room, cancelled by
/// its own ZcId through the safe `cancel`; the payload comes back and is
/// overwritten at once with `Z`. The peer must never read a `Z`: the
/// kernel may not read the payload after the tracker handed it back.
#[test]
fn zc_send_cancelled_by_its_id_never_reads_the_returned_payload() {
    let mut ring = common::ring(16);
    let (client, server) = blocked_pair();
    let mut tracker: ZcTracker = ZcTracker::new();
    let payload = vec![b'A'; 256 * 1024];
    let id = tracker.send(&mut ring, client.as_raw_fd(), payload).expect("send");
    ring.submit().unwrap();
    // Let it park (no timing dependence for correctness: either it parks or not).
    std::thread::sleep(Duration::from_millis(20));
    let cancel = ring.cancel(ctx(7), SqeContext::of_user_data(id.user_data()));
    // The drain thread reads whatever reaches the peer, for up to 3 s.
    let reader = std::thread::spawn(move || {
        let mut server = server;
        server.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let mut all = Vec::new();
        let mut buf = vec![0u8; 65536];
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            match server.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => all.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(e) => panic!("{e}"),
            }
        }
        all
    });
    let mut back = false;
    // Payloads handed back, kept allocated (and Z-filled) while the peer
    // reads, and freed only after it has read everything.
    let mut kept = Vec::new();
    let mut slots = [CqeSlot::EMPTY; 16];
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut cancel_seen = cancel.is_err();
    while !(back && cancel_seen) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "timed out: payload back {back}, cancel seen {cancel_seen}");
        match ring.wait_for(&mut slots, 1, Some(left)) {
            Ok(done) => {
                for cqe in done.iter() {
                    match tracker.handle_cqe(&cqe) {
                        Some(
                            ZcEvent::Released { payload: Some(mut p), .. }
                            | ZcEvent::Finished { payload: Some(mut p), .. },
                        ) => {
                            p.fill(b'Z');
                            back = true;
                            kept.push(p);
                        }
                        Some(ev) => eprintln!("zc event: {ev:?}"),
                        None => {
                            eprintln!("cancel cqe res {}", cqe.res());
                            cancel_seen = true
                        }
                    }
                }
            }
            Err(Error::WouldBlock) => {}
            Err(e) => panic!("wait_for: {e}"),
        }
    }
    drop(client);
    let got = reader.join().unwrap();
    drop(kept);
    let zs = got.iter().filter(|&&b| b == b'Z').count();
    assert_eq!(
        zs, 0,
        "ZcTracker::send(big payload on a full TCP socket); ring.cancel(token, ZcId) ; payload handed back in \
         Released/Finished and overwritten with Z: the peer read {zs} Z bytes, so the kernel read the payload after \
         it was returned to safe code"
    );
    assert!(got.iter().all(|&b| b == b'.' || b == b'A'), "peer saw bytes that were never sent");
}

fn sys_get(path: &Path, name: &str) -> Result<Vec<u8>, i32> {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: NUL-terminated strings, `buf` has `len` bytes.
    let r = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
    }
    buf.truncate(r as usize);
    Ok(buf)
}

/// Attack: many `FSetXattr`s queued from values that are dropped (and
/// their heap memory reused by the next value) before submission, more
/// than the SQ holds so slots and their Keeps are recycled. Each attribute
/// must hold the value the caller meant.
#[test]
fn fsetxattr_values_dropped_before_submit_are_what_the_kernel_stores() {
    fsetxattr_values_attack(common::ring(4), "plain");
}

/// The same on an SQPOLL ring: the kernel thread consumes entries on its
/// own schedule, so a slot's Keep must outlive the push until the SQ head
/// passes it.
#[test]
fn fsetxattr_values_dropped_before_submit_on_sqpoll_ring() {
    let opts = uring_core::Options::default()
        .entries(4)
        .sqpoll(uring_core::SqPoll { idle: Duration::from_millis(50), ..Default::default() });
    let mut ring = match uring_core::Ring::new(opts) {
        Ok(r) => r,
        Err(e) => {
            common::skip("fsetxattr_values_dropped_before_submit_on_sqpoll_ring", &format!("no SQPOLL ring: {e}"));
            return;
        }
    };
    ring.start().expect("start");
    fsetxattr_values_attack(ring, "sqpoll");
}

fn fsetxattr_values_attack(mut ring: uring_core::Ring, tag: &str) {
    let dir = common::tmpdir("attack7-xattr");
    let mut candidates = vec![dir];
    let shm = Path::new("/dev/shm").join(format!("uring-ops-attack7-{}-{tag}", std::process::id()));
    if std::fs::create_dir_all(&shm).is_ok() {
        candidates.push(shm);
    }
    let mut chosen = None;
    for d in candidates {
        let f = d.join("f");
        std::fs::write(&f, b"x").unwrap();
        let p = CString::new(f.as_os_str().as_bytes()).unwrap();
        // SAFETY: valid strings and buffer.
        let r = unsafe { libc::setxattr(p.as_ptr(), c"user.probe".as_ptr(), b"1".as_ptr().cast(), 1, 0) };
        if r == 0 {
            chosen = Some(f);
            break;
        }
    }
    let Some(path) = chosen else {
        common::skip("fsetxattr_values_dropped_before_submit_are_what_the_kernel_stores", "no user xattrs");
        return;
    };
    let file = std::fs::File::open(&path).unwrap();
    let rounds = 12u8;
    let mut pushed = 0;
    for i in 0..rounds {
        if ring.sq_space_left() == 0 {
            let _ = common::reap(&mut ring, pushed);
            pushed = 0;
        }
        let value = vec![b'a' + i; 64];
        let name = format!("user.a7_{i}");
        ring.push_op(ctx(100 + i as u64), FSetXattr::new(file.as_raw_fd(), name.as_bytes(), &value)).expect("push");
        // overwrite and free the caller's copy, and allocate over it
        drop(value);
        let junk = vec![b'#'; 64];
        std::hint::black_box(&junk);
        pushed += 1;
    }
    for d in common::reap(&mut ring, pushed) {
        assert!(d.res >= 0, "FSetXattr failed: {d:?}");
    }
    for i in 0..rounds {
        let got = sys_get(&path, &format!("user.a7_{i}")).expect("getxattr");
        assert_eq!(
            got,
            vec![b'a' + i; 64],
            "push_op(FSetXattr::new(fd, name, &value)); drop(value); submit: the kernel stored bytes other than \
             the value (read after the caller's memory was freed/reused)"
        );
    }
}
