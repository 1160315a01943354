//! Vectored I/O: one `writev` gathers a record from three separate buffers
//! (header, body, trailer) into a file, and one `readv` scatters it back
//! into three buffers sized for those parts.
//!
//! Run with `cargo run -p uring-ops --example vectored`.

use std::error::Error;
use std::fs::OpenOptions;
use std::os::fd::AsRawFd;

use uring_core::{CqeSlot, Options, Ring, SqeContext};
use uring_ops::file::FileOps;

/// Submits and waits for one completion; a negative result is an error.
fn complete_one(ring: &mut Ring, what: &str) -> Result<usize, Box<dyn Error>> {
    let mut slots = [CqeSlot::EMPTY; 1];
    ring.submit_and_wait(1)?;
    let done = ring.reap(&mut slots)?;
    let res = done.get(0).ok_or("no completion")?.res();
    if res < 0 {
        return Err(format!("{what}: {}", std::io::Error::from_raw_os_error(-res)).into());
    }
    Ok(res as usize)
}

/// An iovec describing `buf` for the kernel to read.
fn out(buf: &[u8]) -> libc::iovec {
    libc::iovec { iov_base: buf.as_ptr() as *mut libc::c_void, iov_len: buf.len() }
}

/// An iovec describing `buf` for the kernel to fill.
fn into(buf: &mut [u8]) -> libc::iovec {
    libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() }
}

fn run() -> Result<(), Box<dyn Error>> {
    let dir = std::env::temp_dir().join(format!("uring-example-vectored-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("record.bin");
    // Plain std for the open: the ring works on any descriptor.
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path)?;
    let fd = file.as_raw_fd();

    let mut ring = Ring::new(Options::default().entries(8))?;
    ring.start()?;

    // Gather: three buffers that live apart in memory, one write.
    let header = *b"REC1";
    let body = b"the payload sits in its own allocation".to_vec();
    let trailer = (body.len() as u32).to_le_bytes();
    let parts = [out(&header), out(&body), out(&trailer)];
    // SAFETY: `parts` and the three buffers it names live until the
    // completion below and are not modified before it.
    unsafe { ring.writev(SqeContext::for_fd(fd), fd, &parts, 0) }?;
    let written = complete_one(&mut ring, "writev")?;
    println!("writev: {written} bytes from {} buffers ({} + {} + {})", parts.len(), 4, body.len(), 4);
    assert_eq!(std::fs::metadata(&path)?.len() as usize, written);

    // Scatter: read the record back into buffers sized for its parts.
    let mut h = [0u8; 4];
    let mut b = vec![0u8; body.len()];
    let mut t = [0u8; 4];
    let targets = [into(&mut h), into(&mut b), into(&mut t)];
    // SAFETY: `targets` and the three buffers live until the completion and
    // are not accessed before it.
    unsafe { ring.readv(SqeContext::for_fd(fd), fd, &targets, 0) }?;
    let read = complete_one(&mut ring, "readv")?;
    println!("readv: {read} bytes into {} buffers", targets.len());
    println!("  header  {:?}", String::from_utf8_lossy(&h));
    println!("  body    {:?}", String::from_utf8_lossy(&b));
    println!("  trailer {} (body length)", u32::from_le_bytes(t));
    assert_eq!((&h, &b, u32::from_le_bytes(t) as usize), (&header, &body, body.len()));

    drop(file);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("vectored: {e}");
        std::process::exit(1);
    }
}

#[test]
fn example_runs() {
    run().unwrap();
}
