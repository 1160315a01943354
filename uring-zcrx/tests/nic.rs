//! Zero-copy receive from a real NIC queue, when one is configured:
//!
//! ```text
//! URING_ZCRX_IFNAME=eth1 URING_ZCRX_QUEUE=3 [URING_ZCRX_LISTEN=0.0.0.0:9999] \
//!     [URING_ZCRX_BYTES=67108864] [URING_ZCRX_RX_BUF_LEN=4096] cargo test -p uring-zcrx --test nic -- --nocapture
//! ```
//!
//! The device needs header split (`ethtool -G eth1 tcp-data-split on`) and
//! the flow must be steered to the queue (`ethtool -N eth1 flow-type tcp4
//! dst-port 9999 action 3`, and RSS kept off that queue). The test accepts
//! one connection on `URING_ZCRX_LISTEN` within 120 s; send it the pattern
//! from the peer machine with
//! `cargo run --release -p uring-zcrx --example zcrx_recv -- send HOST:9999 BYTES`.
//! Without the variables the test says it skipped and why.

mod common;

use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use common::{Verify, drive_to_end};
use uring_core::CqeSize;
use uring_zcrx::{Zcrx, ZcrxConfig, ZcrxEnd, ZcrxReceiver, ZcrxTarget};

#[test]
fn a_real_nic_queue_receives_a_verified_pattern() {
    let (Ok(ifname), Ok(queue)) = (std::env::var("URING_ZCRX_IFNAME"), std::env::var("URING_ZCRX_QUEUE")) else {
        println!(
            "SKIPPED nic: set URING_ZCRX_IFNAME and URING_ZCRX_QUEUE to a zero-copy capable NIC queue (header split, \
             queue management) with a flow steered to it; see this file's header"
        );
        return;
    };
    let queue: u32 = queue.parse().expect("URING_ZCRX_QUEUE: a queue number");
    let listen = std::env::var("URING_ZCRX_LISTEN").unwrap_or_else(|_| "0.0.0.0:9999".into());
    let bytes: u64 = std::env::var("URING_ZCRX_BYTES").map_or(64 << 20, |b| b.parse().expect("URING_ZCRX_BYTES"));
    let mut ring = common::ring(CqeSize::Big);
    let mut config = ZcrxConfig::new(ZcrxTarget::interface(&ifname, queue).unwrap()).area_len(16 << 20);
    if let Ok(len) = std::env::var("URING_ZCRX_RX_BUF_LEN") {
        config = config.rx_buf_len(len.parse().expect("URING_ZCRX_RX_BUF_LEN"));
    }
    let zcrx = Zcrx::register(&mut ring, &config).unwrap_or_else(|e| panic!("{ifname} queue {queue}: {e}"));
    println!("nic: registered {ifname} queue {queue}, rx_buf_len {}, waiting on {listen}", zcrx.rx_buf_len());
    let listener = TcpListener::bind(&listen).unwrap();
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let sock = loop {
        match listener.accept() {
            Ok((s, peer)) => {
                println!("nic: connection from {peer}");
                break s;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("no connection on {listen} within 120 s: {e}"),
        }
    };
    sock.set_nonblocking(false).unwrap();
    let started = Instant::now();
    let mut rx = ZcrxReceiver::new(&zcrx, Verify::default());
    rx.start(&mut ring, sock.as_raw_fd()).unwrap();
    let restarts = drive_to_end(&mut ring, &mut rx, sock.as_raw_fd(), Duration::from_secs(600));
    let took = started.elapsed();
    let h = rx.handler();
    assert_eq!(h.mismatch, None, "received bytes differ from the pattern");
    assert_eq!(h.pos, bytes, "bytes received");
    assert_eq!(rx.end(), Some(ZcrxEnd::Finished));
    println!(
        "nic: {} bytes in {:.3} s ({:.0} MB/s), {} buffers, {restarts} restarts, copy fallback {:?}",
        h.pos,
        took.as_secs_f64(),
        h.pos as f64 / took.as_secs_f64() / 1e6,
        rx.received().1,
        zcrx.stats()
    );
}
