//! File I/O through the ring: open a file, write it and sync it (a linked
//! pair), read it back, then read four slices of it with one batch (four
//! SQEs, one submit).
//!
//! Run with `cargo run -p uring-ops --example file_io`.

use std::error::Error;
use std::os::fd::{FromRawFd, OwnedFd};

use uring_core::{CqeSlot, Options, Ring, SqeContext};
use uring_ops::FlagOps;
use uring_ops::file::FileOps;
use uring_ops::fs::FsOps;

/// Submits what is queued and collects `n` completions as
/// `(context, result)`, in completion order.
fn complete(ring: &mut Ring, n: usize) -> Result<Vec<(SqeContext, i32)>, Box<dyn Error>> {
    let mut out = Vec::with_capacity(n);
    let mut slots = [CqeSlot::EMPTY; 16];
    while out.len() < n {
        ring.submit_and_wait((n - out.len()) as u32)?;
        let done = ring.reap(&mut slots)?;
        out.extend(done.iter().map(|c| (c.context(), c.res())));
    }
    Ok(out)
}

/// One completion's result, with a negative result turned into an error.
fn complete_one(ring: &mut Ring, what: &str) -> Result<i32, Box<dyn Error>> {
    let (_, res) = complete(ring, 1)?[0];
    if res < 0 {
        return Err(format!("{what}: {}", std::io::Error::from_raw_os_error(-res)).into());
    }
    Ok(res)
}

fn run() -> Result<(), Box<dyn Error>> {
    let dir = std::env::temp_dir().join(format!("uring-example-file-io-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("greeting.txt");

    let mut ring = Ring::new(Options::default().entries(16))?;
    ring.start()?;

    // openat: the path is copied into the ring's per-slot storage, so this
    // is a safe call; the CQE's result is the new descriptor.
    ring.openat(SqeContext::default(), libc::AT_FDCWD, &path, libc::O_CREAT | libc::O_RDWR | libc::O_CLOEXEC, 0o644)?;
    let fd = complete_one(&mut ring, "openat")?;
    // SAFETY: the kernel just created this descriptor for us; we own it.
    let file = unsafe { OwnedFd::from_raw_fd(fd) };
    println!("opened {} as fd {fd}", path.display());

    // write, then fsync, as a linked pair: `linked()` adds IOSQE_IO_LINK to
    // the write, so the fsync starts only once the write has succeeded in
    // full (a failed or short write would cancel it: -ECANCELED). The
    // kernel reads a write's buffer while it runs; `text` is `'static`, so
    // `write_static` needs no `unsafe` (`write` with a borrowed buffer is
    // `unsafe`, as is `file::Write::new`).
    let text = b"io_uring writes, then reads back: one ring, no threads.\n";
    ring.linked().write_static(SqeContext::token(10)?, fd, text, 0)?;
    ring.fsync(SqeContext::token(11)?, fd)?;
    let mut pair = complete(&mut ring, 2)?;
    pair.sort_unstable_by_key(|(ctx, _)| ctx.as_token());
    let [(_, written), (_, synced)] = pair[..] else { unreachable!("two completions") };
    if written != text.len() as i32 || synced != 0 {
        return Err(format!("write {written}, fsync {synced}").into());
    }
    println!("wrote {written} bytes, then fsync");

    // Read it all back.
    let mut back = vec![0u8; text.len()];
    // SAFETY: `back` is not used until the completion has been reaped.
    unsafe { ring.read(SqeContext::for_fd(fd), fd, &mut back, 0) }?;
    let n = complete_one(&mut ring, "read")? as usize;
    assert_eq!(&back[..n], text);
    println!("read back: {:?}", String::from_utf8_lossy(&back[..n]).trim_end());

    // A batch: four reads at different offsets, queued first, then one
    // submit for all of them. Completions may come in any order; each read
    // carries a token, our own number for it, which its CQE gives back.
    let offsets = [0u64, 9, 17, 28];
    let mut bufs = [[0u8; 6]; 4];
    for (i, (buf, &off)) in bufs.iter_mut().zip(&offsets).enumerate() {
        // SAFETY: every buffer stays untouched until all four completions
        // have been reaped below.
        unsafe { ring.read(SqeContext::token(i as u64)?, fd, buf, off) }?;
    }
    let done = complete(&mut ring, offsets.len())?;
    println!("batch of {} reads, one submit:", done.len());
    for (ctx, res) in done {
        let i = ctx.as_token().ok_or("a completion without a token")? as usize;
        let got = String::from_utf8_lossy(&bufs[i][..res.max(0) as usize]).into_owned();
        println!("  read {i} at offset {:>2}: {res} bytes {got:?}", offsets[i]);
        assert_eq!(got.as_bytes(), &text[offsets[i] as usize..offsets[i] as usize + 6]);
    }

    // Close through the ring too; the descriptor must not be closed twice.
    let raw = std::os::fd::IntoRawFd::into_raw_fd(file);
    ring.close(SqeContext::default(), raw)?;
    complete_one(&mut ring, "close")?;
    println!("closed fd {raw}");

    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("file_io: {e}");
        std::process::exit(1);
    }
}

#[test]
fn example_runs() {
    run().unwrap();
}
