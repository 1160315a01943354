//! Attack: a `mem::forget`-ten zero-copy pass leaves its CQEs unreleased, so
//! `Ring::cq_position` does not move past them. A send queued afterwards in
//! the reused slot notes `queued_at` = that position, and the old CQE, shown
//! again by the next pass with the same `seq`, passes `handle_send`'s
//! position check: the new send's token comes back while the kernel still
//! reads it.

mod common;

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;

use common::{reap, ring};
use uring_buffers::{BufRing, BufRingConfig, Held};
use uring_core::SqeContext;
use uring_ops::RingOps;
use uring_ops::net::RecvSelect;

#[test]
fn a_forgotten_pass_replays_a_send_cqe_into_the_reused_slot() {
    let mut ring = ring();
    let mut br = BufRing::register(&mut ring, BufRingConfig::new(90, 2, 64)).unwrap();
    let (mut a, b) = UnixStream::pair().unwrap();
    a.write_all(b"original").unwrap();
    ring.push_op(SqeContext::token(1).unwrap(), RecvSelect::new(b.as_raw_fd(), 90)).unwrap();
    let s = reap(&mut ring, 1);
    let buf = br.take(&s[0].cqe()).unwrap().expect("a buffer");
    assert_eq!(br.bytes(&buf), b"original");

    // Send 1 (slot 0) completes at once; its CQE is handled in a pass that
    // is then forgotten (never released).
    let id1 = br.send(&mut ring, b.as_raw_fd(), buf, 0, 0).unwrap();
    ring.submit_and_wait(1).unwrap();
    let token = {
        let mut pass = ring.completions().unwrap();
        let c = pass.next().expect("send 1's CQE");
        let sent = br.handle_send(&c).expect("send 1's own CQE");
        assert_eq!(sent.id, id1);
        std::mem::forget(pass);
        sent.token
    };
    let mut got = [0u8; 8];
    a.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"original");

    // Fill b's send buffer so that send 2 stays in flight.
    b.set_nonblocking(true).unwrap();
    let mut filled = 0usize;
    loop {
        match (&b).write(&[b'.'; 1024]) {
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("{e}"),
        }
    }
    b.set_nonblocking(false).unwrap();

    // Send 2, same slot, queued while the forgotten CQE is still unreleased.
    let id2 = br.send(&mut ring, b.as_raw_fd(), token, 0, 0).unwrap();
    assert_eq!(id2, id1, "the slot is reused");
    ring.submit().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert_eq!(br.sends_in_flight(), 1);

    // The next pass shows send 1's CQE again (same seq).
    let replayed = {
        let mut pass = ring.completions().unwrap();
        // (None: the forgotten pass consumed it; nothing to replay.)
        pass.next().and_then(|c| br.handle_send(&c))
    };
    let Some(sent) = replayed else {
        // Refused: the library is sound here. Drain and finish.
        let _ = drain_unix(a, filled + 8);
        return;
    };
    // The token is the caller's while send 2 is still in the kernel.
    let Held::Buf(mut buf) = sent.token else { panic!("a Buf") };
    br.bytes_mut(&mut buf).copy_from_slice(b"REWRITE!");
    let mut a = a;
    let mut filler = vec![0u8; filled];
    a.read_exact(&mut filler).unwrap();
    let real = reap(&mut ring, 1)[0];
    assert!(br.handle_send(&real.cqe()).is_none(), "the slot was emptied by the replay");
    assert_eq!(real.cqe().res(), 8, "send 2 completes after the token was handed back");
    let mut tail = [0u8; 8];
    a.read_exact(&mut tail).unwrap();
    panic!(
        "handle_send gave back send 2's token from send 1's replayed CQE while send 2 was in flight; \
         the kernel then sent {:?} (written through bytes_mut after the token came back, original {:?})",
        String::from_utf8_lossy(&tail),
        "original"
    );
}

/// Reads `a` until `want` bytes arrived or 5 s passed.
fn drain_unix(mut a: UnixStream, want: usize) -> Vec<u8> {
    a.set_read_timeout(Some(std::time::Duration::from_millis(200))).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut all = Vec::new();
    let mut buf = vec![0u8; 65536];
    while all.len() < want && std::time::Instant::now() < deadline {
        if let Ok(n) = a.read(&mut buf) {
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
        }
    }
    all
}
