//! Helpers the soundness tests of uring-buffers share.
#![allow(dead_code)] // Each test binary uses a different subset.
#![allow(unreachable_pub)]

use std::time::{Duration, Instant};

use uring_core::{CqeSlot, Error as CoreError, Options, Ring};

/// A started ring with 16 SQ entries.
pub fn ring() -> Ring {
    let mut ring = Ring::new(Options::default().entries(16)).expect("Ring::new (see SETUP.md)");
    ring.start().unwrap();
    ring
}

/// Reaps CQEs (copied, with their provenance) until `n` arrived (5 s).
pub fn reap(ring: &mut Ring, n: usize) -> Vec<CqeSlot> {
    let mut out = Vec::new();
    let mut slots = [CqeSlot::EMPTY; 8];
    let deadline = Instant::now() + Duration::from_secs(5);
    while out.len() < n {
        assert!(Instant::now() < deadline, "timed out after {} of {n}", out.len());
        match ring.wait_for(&mut slots, 1, Some(Duration::from_millis(100))) {
            Ok(r) => out.extend(r.iter().map(|c| c.to_slot())),
            Err(CoreError::WouldBlock) => {}
            Err(e) => panic!("{e}"),
        }
    }
    out
}

/// A thread that reads `server` until `want` bytes arrived, it closed, or
/// 5 s passed; joins to the bytes.
pub fn drain(server: std::net::TcpStream, want: usize) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        use std::io::Read;
        let mut server = server;
        server.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let mut all = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut buf = vec![0u8; 65536];
        while all.len() < want && Instant::now() < deadline {
            if let Ok(n) = server.read(&mut buf) {
                if n == 0 {
                    break;
                }
                all.extend_from_slice(&buf[..n]);
            }
        }
        all
    })
}

/// A loopback pair whose client side cannot take one more byte (filled
/// until `EAGAIN`), and how many bytes were queued.
pub fn blocked_pair() -> (std::net::TcpStream, std::net::TcpStream, usize) {
    use std::io::Write;
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (server, _) = l.accept().unwrap();
    client.set_nonblocking(true).unwrap();
    let mut queued = 0;
    let mut c = &client;
    loop {
        match c.write(&[b'.'; 1024]) {
            Ok(n) => queued += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("{e}"),
        }
    }
    client.set_nonblocking(false).unwrap();
    (client, server, queued)
}
