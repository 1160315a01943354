//! `cargo xtask callgrind`: user-space instructions per `io_uring_enter` and
//! per SQE, for uring-core and the `io-uring` crate, counted exactly by
//! valgrind's callgrind (wall-clock benchmarks on shared machines are
//! noisy; instruction counts are not).
//!
//! It builds `uring-core/examples/callgrind_nop.rs` in release mode and runs
//! it under callgrind with different batch sizes and round counts; the
//! differences cancel process start-up and ring setup:
//!
//! - per enter: the cost of one more batch of one SQE, minus one SQE;
//! - per SQE: the slope over the batch size at a fixed number of batches.
//!
//! Two workloads: `submit` (NOPs flagged `CQE_SKIP_SUCCESS`, so only the
//! submission side runs: push and one submit per batch) and `round trip`
//! (push, `submit_and_wait`, reap every CQE). liburing runs the same
//! workloads from `uring-core/benches/c/liburing_nop.c` when a C compiler
//! and liburing-dev are installed.

use std::process::Command;

use crate::deps::{self, Need};
use crate::util::{Failure, Result, output};
use crate::workspace_root;

const SMALL: u32 = 20_000;
const LARGE: u32 = 40_000;
const BATCH: u32 = 65;
const FIXED_ROUNDS: u32 = 1_000;

/// Compiles `uring-core/benches/c/liburing_nop.c` against the system's
/// liburing, if there is a C compiler and liburing-dev.
fn build_liburing_twin(root: &std::path::Path) -> std::result::Result<String, String> {
    let src = root.join("uring-core/benches/c/liburing_nop.c");
    let out = root.join("target/release/liburing_nop");
    let status = Command::new("cc")
        .args(["-O2", "-o"])
        .arg(&out)
        .arg(&src)
        .arg("-luring")
        .output()
        .map_err(|e| format!("no C compiler ({e})"))?;
    if !status.status.success() {
        return Err(format!(
            "cannot build against liburing (apt-get install liburing-dev): {}",
            String::from_utf8_lossy(&status.stderr).lines().next().unwrap_or("")
        ));
    }
    out.to_str().map(str::to_owned).ok_or_else(|| "non-UTF-8 target path".into())
}

fn instructions(exe: &str, mode: &str, batch: u32, rounds: u32) -> Result<u64> {
    let out = Command::new("valgrind")
        .args(["--tool=callgrind", "--callgrind-out-file=/dev/null", exe, mode])
        .arg(batch.to_string())
        .arg(rounds.to_string())
        .output()
        .map_err(|e| Failure::unavailable(format!("cannot run valgrind (apt-get install valgrind): {e}")))?;
    let text = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(Failure::new(format!("valgrind {mode} {batch} {rounds} failed:\n{text}")));
    }
    // "==123== Collected : 1234567"
    text.lines()
        .find_map(|l| l.split("Collected :").nth(1))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| Failure::new(format!("no instruction count in callgrind's output:\n{text}")))
}

/// (per enter, per SQE) for one mode.
fn measure(exe: &str, mode: &str) -> Result<(f64, f64)> {
    let a = instructions(exe, mode, 1, SMALL)?;
    let b = instructions(exe, mode, 1, LARGE)?;
    let c = instructions(exe, mode, 1, FIXED_ROUNDS)?;
    let d = instructions(exe, mode, BATCH, FIXED_ROUNDS)?;
    let per_round = (b as f64 - a as f64) / f64::from(LARGE - SMALL);
    let per_sqe = (d as f64 - c as f64) / f64::from((BATCH - 1) * FIXED_ROUNDS);
    Ok((per_round - per_sqe, per_sqe))
}

pub(crate) fn run(args: &[String]) -> Result<()> {
    if let Some(a) = args.first() {
        return Err(Failure::usage(format!("callgrind takes no arguments (got `{a}`)")));
    }
    deps::require("callgrind", &[Need::Valgrind])?;
    let root = workspace_root();
    output(Command::new(env!("CARGO")).current_dir(&root).args([
        "build",
        "--quiet",
        "--release",
        "-p",
        "uring-core",
        "--example",
        "callgrind_nop",
    ]))?;
    let exe = root.join("target/release/examples/callgrind_nop");
    let exe = exe.to_str().ok_or_else(|| Failure::new("non-UTF-8 target path"))?;
    let liburing = build_liburing_twin(&root);
    println!(
        "user-space instructions (valgrind --tool=callgrind), NOPs on SINGLE_ISSUER|DEFER_TASKRUN|NO_SQARRAY rings"
    );
    println!("{:<34} {:>10} {:>10}", "workload", "per enter", "per SQE");
    for (label, mode) in [
        ("submit only: uring-core push", "core-submit"),
        ("submit only: io-uring crate", "peer-submit"),
        ("round trip: uring-core push", "core"),
        ("round trip: uring-core next_sqe", "core-next"),
        ("round trip: io-uring crate", "peer"),
    ] {
        let (enter, sqe) = measure(exe, mode)?;
        println!("{label:<34} {enter:>10.1} {sqe:>10.1}");
    }
    match &liburing {
        Ok(c_exe) => {
            for (label, mode) in [("submit only: liburing", "submit"), ("round trip: liburing", "round")] {
                let (enter, sqe) = measure(c_exe, mode)?;
                println!("{label:<34} {enter:>10.1} {sqe:>10.1}");
            }
        }
        Err(why) => println!("{:<34} skipped: {why}", "liburing"),
    }
    println!(
        "\nper enter: one more batch of one SQE, minus that SQE ({SMALL} vs {LARGE} batches); per SQE: slope from \
         batches of 1 to {BATCH} ({FIXED_ROUNDS} batches). Round trip = push, submit_and_wait, reap every CQE."
    );
    Ok(())
}
