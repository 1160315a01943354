//! Timeouts: a plain timeout, a deadline on another operation (both ways
//! the race can end), and removing a pending timeout.
//!
//! 1. A 50 ms timeout completes with `-ETIME`, no earlier than 50 ms.
//! 2. A NOP with a 1 s deadline: the NOP wins (0) and the deadline is
//!    cancelled (`-ECANCELED`).
//! 3. A slow request (here a 10 s timeout standing in for a read or a
//!    receive that never gets data) with a 50 ms deadline: the deadline
//!    wins (`-ETIME`) and the kernel cancels the request (`-ECANCELED`).
//! 4. A pending 10 s timeout is removed: it completes with `-ECANCELED`,
//!    the removal with 0.
//!
//! Run it with `cargo run -p uring-ops --example timeouts`.

use std::collections::HashMap;
use std::error::Error;
use std::time::{Duration, Instant};

use uring_core::{CqeSlot, Options, Ring, SqeContext};
use uring_ops::RingOps;
use uring_ops::cmd::Nop;
use uring_ops::timeout::{Timeout, TimeoutOps};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// A token: our own number for a request, which its CQEs give back.
fn tag(n: u64) -> SqeContext {
    SqeContext::token(n).expect("small numbers are tokens")
}

/// Submits what is queued and waits for `n` completions: their results by
/// token number.
fn complete(ring: &mut Ring, n: usize) -> Result<HashMap<u64, i32>> {
    let mut got = HashMap::new();
    let mut slots = [CqeSlot::EMPTY; 8];
    while got.len() < n {
        let done = ring.wait_for(&mut slots, 1, Some(Duration::from_secs(5)))?;
        for c in done.iter() {
            got.insert(c.context().as_token().ok_or("a completion without a token")?, c.res());
        }
    }
    Ok(got)
}

/// A result as text: a count, or the errno's name.
fn show(res: i32) -> String {
    match -res {
        0 => "0".into(),
        libc::ETIME => "-ETIME".into(),
        libc::ECANCELED => "-ECANCELED".into(),
        e if e > 0 => format!("-{}", std::io::Error::from_raw_os_error(e)),
        _ => res.to_string(),
    }
}

fn expect(got: &HashMap<u64, i32>, ctx: SqeContext, what: &str, want: i32) -> Result<()> {
    let n = ctx.as_token().ok_or("not a token")?;
    let res = *got.get(&n).ok_or_else(|| format!("{what}: no completion"))?;
    println!("  {what}: {}", show(res));
    if res != want {
        return Err(format!("{what}: expected {}, got {}", show(want), show(res)).into());
    }
    Ok(())
}

fn run() -> Result<()> {
    let mut ring = Ring::new(Options::small())?;
    ring.start()?;

    println!("1. a 50 ms timeout");
    let start = Instant::now();
    ring.timeout(tag(1), Duration::from_millis(50))?;
    let got = complete(&mut ring, 1)?;
    expect(&got, tag(1), "timeout", -libc::ETIME)?;
    println!("  fired after {:?}", start.elapsed());
    if start.elapsed() < Duration::from_millis(50) {
        return Err("the timeout fired early".into());
    }

    println!("2. a NOP with a 1 s deadline: the operation wins");
    ring.push_with_deadline(tag(2), Nop::new(), tag(3), Duration::from_secs(1))?;
    let got = complete(&mut ring, 2)?;
    expect(&got, tag(2), "nop", 0)?;
    expect(&got, tag(3), "deadline", -libc::ECANCELED)?;

    println!("3. a slow request with a 50 ms deadline: the deadline wins");
    let slow = Timeout::new(Duration::from_secs(10));
    ring.push_with_deadline(tag(4), slow, tag(5), Duration::from_millis(50))?;
    let got = complete(&mut ring, 2)?;
    expect(&got, tag(4), "slow request", -libc::ECANCELED)?;
    expect(&got, tag(5), "deadline", -libc::ETIME)?;

    println!("4. removing a pending timeout");
    // The push stamps the opcode into the token and returns it: that is
    // the `user_data` the kernel knows the timeout by, so the removal names
    // the returned value, not `tag(7)` as built (which it would refuse).
    let key = ring.push_op(tag(7), Timeout::new(Duration::from_secs(10)))?;
    ring.timeout_remove(tag(6), key)?;
    let got = complete(&mut ring, 2)?;
    expect(&got, key, "timeout", -libc::ECANCELED)?;
    expect(&got, tag(6), "remove", 0)?;
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("timeouts: {e}");
        std::process::exit(1);
    }
}

#[test]
fn example_runs() {
    run().unwrap()
}
