//! A TCP client driven entirely through the ring: create the socket,
//! connect, send a request, read the reply until the server closes, shut
//! down, close. The server is a plain std thread that upper-cases what it
//! reads, so the example checks its own answer.
//!
//! Each step is one operation whose CQE the loop waits for; a real client
//! would keep many connections in flight and dispatch CQEs by their
//! `SqeContext` (here the fd slot of the packed context says which step).
//!
//! Run with `cargo run -p uring-ops --example tcp_client`.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener};
use std::os::fd::{FromRawFd, OwnedFd};
use std::thread;
use std::time::Duration;

use uring_core::{CqeSlot, Ring, SqeContext};
use uring_ops::prelude::*;

const REQUEST: &[u8] = b"hello from io_uring\n";

/// Submits what is queued and waits for one completion; returns its result
/// as an `io::Result` (a negative result is the errno).
fn complete(ring: &mut Ring, step: &str) -> std::io::Result<i32> {
    let mut slots = [CqeSlot::EMPTY; 1];
    let done = ring
        .wait_for(&mut slots, 1, Some(Duration::from_secs(5)))
        .map_err(|e| std::io::Error::other(format!("{step}: {e}")))?;
    let cqe = done.get(0).expect("one completion");
    let res = cqe.result().map_err(|e| std::io::Error::new(e.kind(), format!("{step}: {e}")))?;
    println!("{step:>8}: {res}");
    Ok(res as i32)
}

fn run() -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    // The server: read one line, answer it in upper case, close.
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let server = thread::spawn(move || -> std::io::Result<()> {
        let (mut conn, _) = listener.accept()?;
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while conn.read(&mut byte)? == 1 {
            line.push(byte[0]);
            if byte[0] == b'\n' {
                break;
            }
        }
        conn.write_all(&line.to_ascii_uppercase())?;
        conn.shutdown(Shutdown::Both)
    });

    let mut ring = Ring::new(uring_core::Options::small())?;
    ring.start()?;

    // 1. socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC)
    ring.tcp4_socket(SqeContext::for_fd(1))?;
    let fd = complete(&mut ring, "socket")?;
    // SAFETY: the kernel just created this descriptor for us; `sock` owns it.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };

    // 2. connect: the sockaddr is copied into the SQ slot's Keep, so this is safe.
    ring.connect(SqeContext::for_fd(2), fd, addr)?;
    complete(&mut ring, "connect")?;

    // 3. send the request: the kernel reads the buffer until the CQE; a
    // `'static` buffer needs no `unsafe` (a borrowed one goes through the
    // `unsafe` `send`).
    ring.send_static(SqeContext::for_fd(3), fd, REQUEST)?;
    let sent = complete(&mut ring, "send")?;
    assert_eq!(sent as usize, REQUEST.len());

    // 4. receive until the server closes (a result of 0).
    let mut reply = Vec::new();
    let mut buf = [0u8; 8];
    loop {
        // SAFETY: `buf` is not touched until the receive's CQE is reaped.
        unsafe { ring.recv(SqeContext::for_fd(4), fd, &mut buf) }?;
        let n = complete(&mut ring, "recv")? as usize;
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&buf[..n]);
    }

    // 5. shut down our side; 6. close through the ring (IORING_OP_CLOSE).
    ring.shutdown(SqeContext::for_fd(5), fd, Shutdown::Write)?;
    complete(&mut ring, "shutdown")?;
    let raw = std::os::fd::IntoRawFd::into_raw_fd(sock);
    ring.close(SqeContext::for_fd(6), raw)?;
    complete(&mut ring, "close")?;

    server.join().expect("server thread")?;
    println!("   reply: {}", String::from_utf8_lossy(&reply).trim_end());
    Ok(reply)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    run().map(drop)
}

#[test]
fn example_runs() {
    let reply = run().unwrap();
    assert_eq!(reply, REQUEST.to_ascii_uppercase());
}
