//! The four ways to identify a submission in its `user_data`, and what
//! each gives back at completion:
//!
//! - **token**: your own number (up to 53 bits: a connection index, a slab
//!   key) and the opcode; free, nothing to release. The usual choice;
//! - **packed**: opcode, SQE flags, buffer group and fd packed into the 64
//!   bits; free, nothing to release;
//! - **indirect**: a pooled slot holding a copy of the whole SQE;
//! - **extended**: a pooled slot holding the SQE plus 64 bytes of typed
//!   caller data (any [`PlainData`] type), here a `Job` record.
//!
//! Pooled slots are borrowed from the ring's [`ContextPools`](uring_core::ContextPools)
//! and must be released once the operation's last CQE is handled.
//!
//! Run with `cargo run -p uring-ops --example context_modes`.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use uring_core::{ContextMode, CqeSlot, Options, PlainData, Ring, SqeContext, sys};
use uring_ops::RingOps;
use uring_ops::cmd::Nop;
use uring_ops::poll::{PollAdd, PollEvents};

/// What the extended context carries for us: plain integers, so every bit
/// pattern is a valid `Job`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
struct Job {
    id: u64,
    attempt: u32,
    kind: u32,
    deadline_ms: u64,
}

// SAFETY: `Job` is `repr(C)` integers without padding (8 + 4 + 4 + 8
// bytes); any bytes are a valid value.
unsafe impl PlainData for Job {}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut ring = Ring::new(Options::default().entries(8).indirect_contexts(4).extended_contexts(4))?;
    ring.start()?;

    let mut fds = [0; 2];
    // SAFETY: `fds` is a writable array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    // SAFETY: pipe2 just created both descriptors; we own them now.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };

    // Token: our own number; push_op fills in the opcode.
    ring.push_op(SqeContext::token(1 << 40)?, Nop::new().result(7))?;

    // Direct: the fd and buffer group are ours; push_op fills in the opcode
    // and the SQE flags.
    let direct = SqeContext::for_fd(r.as_raw_fd()).with_buf_group(7);
    ring.push_op(direct, Nop::new())?;

    // Indirect: the pool keeps a copy of the SQE as submitted.
    let indirect = ring.pools_mut().acquire_indirect()?;
    ring.push_op(indirect, Nop::new().result(42))?;

    // Extended: the SQE copy plus our Job, written before submission. The
    // poll completes only once the pipe has data.
    let extended = ring.pools_mut().acquire_extended()?;
    if let Some(slot) = ring.pools_mut().extended_mut(extended) {
        *slot.data.view_mut::<Job>() = Job { id: 1001, attempt: 1, kind: 3, deadline_ms: 250 };
    }
    ring.push_op(extended, PollAdd::new(r.as_raw_fd(), PollEvents::IN))?;
    ring.submit()?;
    // SAFETY: one byte from a valid buffer to the pipe's write end.
    unsafe { libc::write(w.as_raw_fd(), b"x".as_ptr().cast(), 1) };

    // Reap all four; note which pooled contexts to release afterwards
    // (the completions borrow the ring, and with it the pools).
    let mut slots = [CqeSlot::EMPTY; 8];
    let mut seen = 0;
    let mut to_release = Vec::new();
    while seen < 4 {
        let done = ring.wait_for(&mut slots, 1, Some(Duration::from_secs(5)))?;
        for cqe in done.iter() {
            seen += 1;
            let ctx = cqe.context();
            match ctx.mode() {
                ContextMode::Packed => {
                    println!(
                        "direct:   result {}, opcode {:?} (NOP is {}), fd {:?}, buffer group {:?}",
                        cqe.res(),
                        ctx.op(),
                        sys::IORING_OP_NOP,
                        ctx.fd(),
                        ctx.buf_group()
                    );
                    assert_eq!(ctx.op(), Some(sys::IORING_OP_NOP as u8));
                }
                ContextMode::Indirect => {
                    let copy = cqe.indirect().ok_or("the indirect slot is live")?;
                    println!(
                        "indirect: result {}, the submitted SQE had opcode {} and len {}",
                        cqe.res(),
                        copy.sqe.opcode,
                        copy.sqe.len
                    );
                    assert_eq!(cqe.res(), 42);
                    to_release.push(ctx);
                }
                ContextMode::Extended => {
                    let ext = cqe.extended().ok_or("the extended slot is live")?;
                    let job = *ext.data.view::<Job>();
                    println!(
                        "extended: poll result {:?}, opcode {}, job {job:?}",
                        PollEvents::from_result(cqe.res()),
                        ext.sqe.opcode
                    );
                    assert_eq!(job.id, 1001);
                    to_release.push(ctx);
                }
                ContextMode::Token => {
                    println!("token:    result {}, number {:?}, opcode {:?}", cqe.res(), ctx.as_token(), ctx.op());
                    assert_eq!((ctx.as_token(), cqe.res()), (Some(1 << 40), 7));
                }
                // Values of the layers above (fixed buffers, subscriptions,
                // ...): never ours, and none were queued here.
                ContextMode::Layer => println!("a layer's user_data {:#x}", cqe.user_data()),
            }
        }
    }

    // Every CQE of the pooled operations is handled: return the slots.
    for ctx in to_release {
        ring.pools_mut().release(ctx)?;
    }
    let (i, e) = (ring.pools().indirect_stats(), ring.pools().extended_stats());
    println!("pools after release: indirect in use {}, extended in use {}", i.in_use, e.in_use);
    assert_eq!((i.in_use, e.in_use), (0, 0));
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("context_modes example failed: {e}");
        std::process::exit(1);
    }
}

#[test]
fn example_runs() {
    run().unwrap()
}
