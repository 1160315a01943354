//! Splice and tee: moving bytes between a file and pipes inside the
//! kernel, never through a user-space buffer.
//!
//! 1. The ring creates two pipes (`IORING_OP_PIPE`).
//! 2. `splice` copies a file's bytes into pipe A.
//! 3. `tee` duplicates pipe A's bytes into pipe B; A keeps them.
//! 4. `splice` drains pipe A into one output file and pipe B into another.
//!
//! Both output files end up with the input's bytes.
//!
//! Run it with `cargo run -p uring-ops --example splice_tee`.

use std::error::Error;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use uring_core::{CqeSlot, Options, Ring, SqeContext};
use uring_ops::Target;
use uring_ops::transfer::TransferOps;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// Submits what is queued and waits for one completion; returns its result
/// as a byte count, or the kernel's error.
fn complete(ring: &mut Ring, what: &str) -> Result<usize> {
    let mut slots = [CqeSlot::EMPTY; 1];
    let done = ring.wait_for(&mut slots, 1, Some(Duration::from_secs(5)))?;
    let res = done.get(0).ok_or("no completion")?.res();
    if res < 0 {
        return Err(format!("{what}: {}", std::io::Error::from_raw_os_error(-res)).into());
    }
    println!("{what}: {res}");
    Ok(res as usize)
}

/// A pipe made by the ring: `(read end, write end)`.
fn ring_pipe(ring: &mut Ring) -> Result<(OwnedFd, OwnedFd)> {
    let mut fds: [RawFd; 2] = [-1; 2];
    // SAFETY: the kernel writes `fds` while the operation runs; it is not
    // touched until `complete` has reaped the CQE.
    unsafe { ring.pipe(SqeContext::default(), &mut fds) }?;
    complete(ring, "pipe")?;
    println!("  read end {}, write end {}", fds[0], fds[1]);
    // SAFETY: the kernel installed both descriptors for this process, and
    // nothing else owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn run() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("uring-splice-tee-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let message = b"spliced and tee'd without a user-space copy\n";
    std::fs::write(dir.join("input"), message)?;
    let input = File::open(dir.join("input"))?;
    let out_a = File::create(dir.join("from-a"))?;
    let out_b = File::create(dir.join("from-b"))?;

    let mut ring = Ring::new(Options::small())?;
    ring.start()?;
    let fd = |f: &dyn AsRawFd| Target::Fd(f.as_raw_fd());

    let (a_read, a_write) = ring_pipe(&mut ring)?;
    let (b_read, b_write) = ring_pipe(&mut ring)?;
    let len = message.len() as u32;

    // The file, from offset 0, into pipe A.
    ring.splice(SqeContext::default(), fd(&input), Some(0), fd(&a_write), None, len)?;
    let moved = complete(&mut ring, "splice input -> pipe A")?;

    // Pipe A's bytes duplicated into pipe B; A still holds them.
    ring.tee(SqeContext::default(), fd(&a_read), fd(&b_write), len)?;
    complete(&mut ring, "tee pipe A -> pipe B")?;

    // Each pipe drained into its own file, at the file position.
    ring.splice(SqeContext::default(), fd(&a_read), None, fd(&out_a), None, len)?;
    complete(&mut ring, "splice pipe A -> from-a")?;
    ring.splice(SqeContext::default(), fd(&b_read), None, fd(&out_b), None, len)?;
    complete(&mut ring, "splice pipe B -> from-b")?;

    for name in ["from-a", "from-b"] {
        let got = std::fs::read(dir.join(name))?;
        if got != message[..moved] {
            return Err(format!("{name} holds {got:?}").into());
        }
        println!("{name}: {}", String::from_utf8_lossy(&got).trim_end());
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("splice_tee: {e}");
        std::process::exit(1);
    }
}

#[test]
fn example_runs() {
    run().unwrap()
}
