//! Copies a file through registered buffers with linked read → write
//! chains, several chains in flight at once.
//!
//! ```text
//! cargo run --release -p uring-buffers --example copy -- SRC DST
//! ```
//!
//! The pattern, for any copy or proxy loop:
//!
//! 1. Register a few buffers once (`FixedBuffers::register`): the kernel
//!    pins them, so fixed reads and writes skip the per-call page lookup.
//! 2. For each idle buffer, queue a *chain*: read a chunk into the buffer,
//!    then write the buffer out. `IOSQE_IO_LINK` makes the kernel start the
//!    write only after the read has filled the buffer, without a round
//!    trip through this program.
//! 3. One `wait_for` submits everything queued and waits for completions.
//!    Hand every CQE to `handle_cqe`: a buffer is idle again only when the
//!    *last* CQE of its chain has been seen (`done.free`).
//! 4. A short read (the file shrank or changed under us) breaks the link:
//!    the kernel cancels the write (`-ECANCELED`) and the outcome says
//!    `Short`. Nothing was written from unread bytes; queue the chunk
//!    again.

use std::fs::File;
use std::os::fd::AsRawFd;

use uring_buffers::{ChainStatus, FixedBuffers};
use uring_core::{CqeSlot, Options, Ring};

/// Bytes per chain (one registered buffer each).
const CHUNK: usize = 256 * 1024;
/// Chains in flight at once: the queue depth.
const DEPTH: u32 = 8;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Copies `src` to `dst` (created or truncated); returns the bytes copied.
fn copy(src: &str, dst: &str) -> Result<u64> {
    let input = File::open(src)?;
    let output = File::create(dst)?;
    let size = input.metadata()?.len();

    // Every chain is 2 SQEs and 2 CQEs: size the ring for all of them.
    let mut ring = Ring::new(Options::default().entries(2 * DEPTH))?;
    ring.start()?;
    let mut bufs = FixedBuffers::register(&mut ring, DEPTH, CHUNK)?;

    // The chunk each buffer is copying: (file offset, length).
    let mut chunk_of: Vec<Option<(u64, usize)>> = vec![None; DEPTH as usize];
    let mut next = 0u64; // the first byte no chain has taken yet
    let mut retry: Vec<(u64, usize)> = Vec::new(); // chunks to queue again
    let mut slots = [CqeSlot::EMPTY; 2 * DEPTH as usize];

    loop {
        // Give every idle buffer a chunk: a retried one first, else the next.
        for (i, chunk) in chunk_of.iter_mut().enumerate() {
            if chunk.is_some() {
                continue;
            }
            let (off, len) = match retry.pop() {
                Some(c) => c,
                None if next < size => (next, CHUNK.min((size - next) as usize)),
                None => break,
            };
            next = next.max(off + len as u64);
            // Read exactly the bytes that exist: a read asking past the
            // end of the file would come back short and cancel its write.
            bufs.chain(i as u32)
                .read(input.as_raw_fd(), 0..len, off)
                .write(output.as_raw_fd(), 0..len, off)
                .queue(&mut ring)?;
            *chunk = Some((off, len));
        }
        if chunk_of.iter().all(Option::is_none) {
            break; // nothing in flight, nothing left: done
        }

        // Submit what was queued and wait for at least one CQE, in one
        // syscall (no separate `submit()` before it).
        let n = ring.wait_for(&mut slots, 1, None)?.len();
        for slot in &slots[..n] {
            // Every CQE goes through the table; `None` would be a CQE that
            // is not ours (there are none on this ring).
            let Some(done) = bufs.handle_cqe(&slot.cqe()) else { continue };
            if !done.free {
                continue; // the chain's other CQE is still to come
            }
            let outcome = done.chain.and_then(|c| c.outcome).expect("a chain's last CQE has its outcome");
            let (off, len) = chunk_of[done.index as usize].take().expect("a busy buffer has a chunk");
            match outcome.status() {
                ChainStatus::Complete => {}
                // A short read or write: the rest was cancelled. Copy the
                // chunk again (reads and writes at an offset are
                // idempotent). Zero bytes read means the file shrank.
                ChainStatus::Short { step: 0, res: 0, .. } => return Err(format!("{src} shrank at {off}").into()),
                ChainStatus::Short { .. } => retry.push((off, len)),
                ChainStatus::Failed { step, res } | ChainStatus::TimedOut { step, res } => {
                    let op = if step == 0 { "read" } else { "write" };
                    return Err(format!("{op} at {off}: {}", std::io::Error::from_raw_os_error(-res)).into());
                }
            }
        }
    }
    Ok(size)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [src, dst] = &args[..] else {
        eprintln!("usage: copy SRC DST");
        std::process::exit(2);
    };
    if let Err(e) = copy(src, dst) {
        eprintln!("copy: {e}");
        std::process::exit(1);
    }
}

/// Copies 5 MiB and 3 bytes of random data (not a multiple of the chunk
/// size, so the last chain reads a partial chunk) and compares the bytes.
#[test]
fn copies_a_multi_mib_file_byte_for_byte() {
    use std::io::Read;
    let dir = std::env::temp_dir();
    let (src, dst) = (
        dir.join(format!("uring-copy-src-{}", std::process::id())),
        dir.join(format!("uring-copy-dst-{}", std::process::id())),
    );
    let mut data = vec![0; 5 * 1024 * 1024 + 3];
    File::open("/dev/urandom").unwrap().read_exact(&mut data).unwrap();
    std::fs::write(&src, &data).unwrap();
    let copied = copy(src.to_str().unwrap(), dst.to_str().unwrap()).unwrap();
    let back = std::fs::read(&dst).unwrap();
    std::fs::remove_file(&src).unwrap();
    std::fs::remove_file(&dst).unwrap();
    assert_eq!(copied, data.len() as u64);
    assert!(back == data, "the copy differs from the source");
}
