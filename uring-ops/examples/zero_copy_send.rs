//! Zero-copy send of a few MiB over loopback TCP through [`ZcTracker`].
//!
//! The tracker owns each chunk while the kernel may read it: a send's
//! result CQE says how many bytes went out, and its notification CQE hands
//! the chunk back. Sends on one TCP socket are issued one at a time (the
//! next starts at the previous result, not at its notification), so the
//! stream stays in order while buffers are still being released behind it.
//! A thread reads the other end and the bytes are compared at the end.
//!
//! Run with `cargo run -p uring-ops --example zero_copy_send`.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::thread;

use uring_core::{CqeSlot, Error, Options, Ring};
use uring_ops::zc::{ZcEvent, ZcOptions, ZcTracker};

const TOTAL: usize = 4 << 20;
const CHUNK: usize = 256 << 10;

fn pattern(at: usize) -> u8 {
    (at % 251) as u8
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let sender = TcpStream::connect(listener.local_addr()?)?;
    let (mut receiver, _) = listener.accept()?;
    let reader = thread::spawn(move || -> std::io::Result<Vec<u8>> {
        let mut all = Vec::with_capacity(TOTAL);
        receiver.read_to_end(&mut all)?;
        Ok(all)
    });

    let mut ring = Ring::new(Options::default().entries(16))?;
    ring.start()?;
    let mut tracker: ZcTracker = ZcTracker::new();
    // MSG_WAITALL: the kernel keeps sending until the whole chunk is out.
    let opts = ZcOptions::new().flags(libc::MSG_WAITALL);

    let mut next = 0usize;
    let mut sending = false;
    let mut returned = 0usize;
    let mut slots = [CqeSlot::EMPTY; 16];
    while next < TOTAL || tracker.in_flight() > 0 {
        if !sending && next < TOTAL {
            let chunk: Vec<u8> = (next..next + CHUNK).map(pattern).collect();
            tracker.send_with(&mut ring, sender.as_raw_fd(), chunk, opts)?;
            next += CHUNK;
            sending = true;
        }
        let done = match ring.wait_for(&mut slots, 1, Some(std::time::Duration::from_secs(5))) {
            Ok(done) => done,
            Err(Error::WouldBlock) => return Err("no completion within 5 s".into()),
            Err(e) => return Err(e.into()),
        };
        for cqe in done.iter() {
            match tracker.handle_cqe(&cqe) {
                Some(ZcEvent::Sent { bytes, .. }) => {
                    if bytes as usize != CHUNK {
                        return Err(format!("short send: {bytes} of {CHUNK} bytes").into());
                    }
                    sending = false;
                }
                Some(ZcEvent::Released { payload, .. }) => {
                    // The chunk is ours again: reuse it, or drop it.
                    returned += payload.map_or(0, |p| p.len());
                }
                Some(ZcEvent::Failed { errno, .. }) => {
                    return Err(std::io::Error::from_raw_os_error(errno).into());
                }
                Some(ZcEvent::Finished { res, .. }) => {
                    return Err(format!("send refused before it started: {res}").into());
                }
                None => return Err(format!("a CQE that is not the tracker's: {cqe:?}").into()),
            }
        }
    }
    drop(sender);
    let received = reader.join().map_err(|_| "reader thread panicked")??;

    let stats = tracker.stats();
    println!("sent {} bytes in {} zero-copy sends of {} KiB", stats.bytes, stats.submitted, CHUNK >> 10);
    println!("result CQEs: {}, notification CQEs: {}", stats.results, stats.notifications);
    println!(
        "notifications reporting a copy: {}, reporting zero copy: {} (loopback copies)",
        stats.copied, stats.zero_copy
    );
    println!("bytes handed back at notifications: {returned}");

    if received.len() != TOTAL || received.iter().enumerate().any(|(i, b)| *b != pattern(i)) {
        return Err(format!("receiver got {} bytes, not the {TOTAL} sent in order", received.len()).into());
    }
    if stats.results != stats.submitted || stats.notifications != stats.submitted || returned != TOTAL {
        return Err("a send lacked its result, its notification or its buffer".into());
    }
    println!("receiver got all {TOTAL} bytes, in order");
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("zero_copy_send: {e}");
        std::process::exit(1);
    }
}

#[test]
fn example_runs() {
    run().unwrap()
}
