//! Zero-copy receive of a TCP stream, verified byte by byte.
//!
//! ```text
//! zcrx_recv                                   # self test: no device (7.2+), loopback sender, 8 MiB
//! zcrx_recv recv --nodev [--listen A] [--bytes N]
//! zcrx_recv recv --ifname eth1 --queue 3 [--listen A] [--bytes N]
//! zcrx_recv send HOST:PORT BYTES              # the pattern, for a receiver elsewhere
//! ```
//!
//! A receiver on a NIC queue needs header split on the device and the flow
//! steered to the queue (see `tests/nic.rs`). On a kernel without
//! `ZCRX_REG_NODEV` the self test says why it skipped.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use uring_core::{CqeSize, CqeSlot, Error as CoreError, Options, Ring};
use uring_ops::prelude::HandleCqe;
use uring_zcrx::{Zcrx, ZcrxBuffer, ZcrxConfig, ZcrxEnd, ZcrxHandler, ZcrxReceiver, ZcrxSupport, ZcrxTarget};

/// The byte at stream position `i`.
fn pattern(i: u64) -> u8 {
    (i.wrapping_mul(131) ^ (i >> 9)) as u8
}

/// Checks each buffer against the pattern, then releases it.
#[derive(Debug, Default)]
struct Check {
    pos: u64,
    bad: Option<u64>,
}

impl ZcrxHandler for Check {
    fn on_data(&mut self, buf: ZcrxBuffer) -> bool {
        if self.bad.is_none()
            && let Some(k) = buf.as_slice().iter().enumerate().position(|(k, &b)| b != pattern(self.pos + k as u64))
        {
            self.bad = Some(self.pos + k as u64);
        }
        self.pos += buf.len() as u64;
        // Dropping would release too; releasing says so, and reports a
        // full refill ring instead of queueing.
        if let Err(full) = buf.recycle() {
            drop(full.0);
        }
        true
    }

    fn on_error(&mut self, err: std::io::Error) -> bool {
        eprintln!("zcrx_recv: {err}");
        false
    }
}

fn send(addr: &str, bytes: u64) -> std::io::Result<u64> {
    let mut s = TcpStream::connect(addr)?;
    let mut buf = vec![0u8; 256 << 10];
    let mut pos = 0;
    while pos < bytes {
        let n = buf.len().min((bytes - pos) as usize);
        for (k, b) in buf[..n].iter_mut().enumerate() {
            *b = pattern(pos + k as u64);
        }
        s.write_all(&buf[..n])?;
        pos += n as u64;
    }
    Ok(pos)
}

/// Receives one connection's stream on `listener` through `target`.
/// Returns the bytes received, or an error message.
fn receive(target: ZcrxTarget, listener: &TcpListener, expect: u64) -> Result<String, String> {
    let mut ring = Ring::new(Options::default().entries(256).cqe_size(CqeSize::Big)).map_err(|e| e.to_string())?;
    ring.start().map_err(|e| e.to_string())?;
    let config = ZcrxConfig::new(target).area_len(4 << 20).refill_entries(1024);
    let zcrx = Zcrx::register(&mut ring, &config).map_err(|e| e.to_string())?;
    let (sock, peer) = listener.accept().map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut rx = ZcrxReceiver::new(&zcrx, Check::default());
    rx.start(&mut ring, sock.as_raw_fd()).map_err(|e| e.to_string())?;
    let mut slots = [CqeSlot::EMPTY; 128];
    let mut restarts = 0;
    loop {
        while !rx.is_stopped() {
            let n = match ring.wait_for(&mut slots, 1, Some(Duration::from_secs(30))) {
                Ok(r) => r.len(),
                Err(CoreError::WouldBlock) => return Err("no data for 30 s".into()),
                Err(e) => return Err(e.to_string()),
            };
            for slot in &slots[..n] {
                rx.handle_cqe(&mut ring, &slot.cqe());
            }
            if let Some(e) = rx.take_error() {
                return Err(e.to_string());
            }
        }
        // Flow control is the caller's: the area (or the CQ) ran dry, so
        // go on once the released buffers are back (start flushes them)
        // and the CQ is reaped.
        if !rx.end().is_some_and(ZcrxEnd::is_resumable) {
            break;
        }
        restarts += 1;
        rx.start(&mut ring, sock.as_raw_fd()).map_err(|e| e.to_string())?;
    }
    let took = started.elapsed().as_secs_f64();
    let h = rx.handler();
    if let Some(at) = h.bad {
        return Err(format!("byte {at} differs from the pattern"));
    }
    if expect > 0 && h.pos != expect {
        return Err(format!("received {} of {expect} bytes (end {:?})", h.pos, rx.end()));
    }
    Ok(format!(
        "{} bytes from {peer} in {took:.3} s ({:.0} MB/s), {} buffers, {restarts} restarts, copy fallback {:?}",
        h.pos,
        h.pos as f64 / took / 1e6,
        rx.received().1,
        zcrx.stats()
    ))
}

/// The self test: an instance without a device, a loopback sender thread.
fn self_test(bytes: u64) -> Result<String, String> {
    let probe = Ring::new(Options::default().entries(2)).map_err(|e| e.to_string())?;
    let support = ZcrxSupport::probe(probe.features());
    if !support.nodev() {
        return Ok(format!(
            "SKIPPED zcrx_recv: kernel {} has no ZCRX_REG_NODEV (Linux 7.2+); use `recv --ifname IF --queue N` with a \
             capable NIC",
            support.kernel_release()
        ));
    }
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?.to_string();
    let sender = std::thread::spawn(move || send(&addr, bytes));
    let out = receive(ZcrxTarget::NoDevice, &listener, bytes)?;
    let sent = sender.join().map_err(|_| "sender panicked".to_owned())?.map_err(|e| e.to_string())?;
    if sent != bytes {
        return Err(format!("sent {sent} of {bytes}"));
    }
    Ok(out)
}

fn run(args: &[String]) -> Result<String, String> {
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    match args.first().map(String::as_str) {
        None => self_test(8 << 20),
        Some("send") => {
            let (Some(addr), Some(bytes)) = (args.get(1), args.get(2)) else {
                return Err("usage: zcrx_recv send HOST:PORT BYTES".into());
            };
            let bytes = bytes.parse().map_err(|e| format!("BYTES: {e}"))?;
            send(addr, bytes).map(|n| format!("sent {n} bytes")).map_err(|e| e.to_string())
        }
        Some("recv") => {
            let target = if args.iter().any(|a| a == "--nodev") {
                ZcrxTarget::NoDevice
            } else {
                let ifname = arg("--ifname").ok_or("recv needs --nodev or --ifname IF --queue N")?;
                let queue = arg("--queue").ok_or("--ifname needs --queue N")?.parse().map_err(|e| format!("{e}"))?;
                ZcrxTarget::interface(&ifname, queue).map_err(|e| e.to_string())?
            };
            let listen = arg("--listen").unwrap_or_else(|| "0.0.0.0:9999".into());
            let bytes = arg("--bytes").map_or(Ok(0), |b| b.parse()).map_err(|e| format!("--bytes: {e}"))?;
            let listener = TcpListener::bind(&listen).map_err(|e| format!("{listen}: {e}"))?;
            eprintln!("zcrx_recv: listening on {listen}");
            receive(target, &listener, bytes)
        }
        Some(other) => Err(format!("unknown mode {other:?}; see the file's header")),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(line) => println!("{line}"),
        Err(e) => {
            eprintln!("zcrx_recv: {e}");
            std::process::exit(1);
        }
    }
}

#[test]
fn self_test_receives_the_pattern_or_says_why_not() {
    let out = self_test(2 << 20).unwrap();
    println!("{out}");
    assert!(out.starts_with("SKIPPED") || out.starts_with("2097152 bytes"), "{out}");
}
