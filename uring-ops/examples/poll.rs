//! Polling a pipe for readiness: a one-shot poll, then a multishot poll
//! that reports every new write until it is removed.
//!
//! Run with `cargo run -p uring-ops --example poll`.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use uring_core::{CqeSlot, Options, Ring, SqeContext};
use uring_ops::poll::{PollEvents, PollOps};

/// Waits (up to 5 s) for one completion: `(token, result, more)`.
fn next_completion(ring: &mut Ring) -> Result<(Option<u64>, i32, bool), Box<dyn std::error::Error>> {
    let mut slots = [CqeSlot::EMPTY; 1];
    let done = ring.wait_for(&mut slots, 1, Some(Duration::from_secs(5)))?;
    let cqe = done.get(0).ok_or("no completion")?;
    Ok((cqe.context().as_token(), cqe.res(), cqe.more()))
}

fn write_byte(fd: &OwnedFd) -> std::io::Result<()> {
    // SAFETY: one byte from a valid buffer to an open descriptor.
    if unsafe { libc::write(fd.as_raw_fd(), b"!".as_ptr().cast(), 1) } == 1 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut ring = Ring::new(Options::default().entries(8))?;
    ring.start()?;

    let mut fds = [0; 2];
    // SAFETY: `fds` is a writable array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    // SAFETY: pipe2 just created both descriptors; we own them now.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };

    // 1. One-shot: wait until the read end is readable. The poll names no
    //    memory, so the safe `poll_add` queues it.
    ring.poll_add(SqeContext::token(1)?, r.as_raw_fd(), PollEvents::IN)?;
    ring.submit()?;
    println!("one-shot poll armed on the read end; writing a byte");
    write_byte(&w)?;
    let (_, res, more) = next_completion(&mut ring)?;
    let ready = PollEvents::from_result(res).ok_or_else(|| std::io::Error::from_raw_os_error(-res))?;
    println!("  ready: {ready:?} (more: {more})");
    assert!(ready.contains(PollEvents::IN) && !more);

    // Drain the pipe: polls are edge-triggered, so the multishot poll below
    // reports new writes.
    let mut buf = [0u8; 16];
    // SAFETY: reads into a valid, writable buffer.
    unsafe { libc::read(r.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };

    // 2. Multishot: one submission, one CQE per write, each with F_MORE.
    //    `poll_multishot` returns the token as pushed (the opcode stamped
    //    in): the `user_data` to name the poll by later.
    let poll = ring.poll_multishot(SqeContext::token(2)?, r.as_raw_fd(), PollEvents::IN)?;
    ring.submit()?;
    for i in 1..=3 {
        write_byte(&w)?;
        let (_, res, more) = next_completion(&mut ring)?;
        println!("  multishot wake-up {i}: {:?} (more: {more})", PollEvents::from_result(res));
        assert!(more, "the poll stays armed");
    }

    // 3. Remove it: the poll ends with -ECANCELED, the removal with 0.
    ring.poll_remove(SqeContext::token(3)?, poll.raw())?;
    ring.submit()?;
    for _ in 0..2 {
        let (token, res, more) = next_completion(&mut ring)?;
        let who = if token == Some(2) { "poll" } else { "remove" };
        println!("  {who}: result {res} (more: {more})");
    }
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("poll example failed: {e}");
        std::process::exit(1);
    }
}

#[test]
fn example_runs() {
    run().unwrap()
}
