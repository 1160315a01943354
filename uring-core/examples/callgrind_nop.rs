//! A fixed NOP workload for counting user-space instructions with
//! callgrind, which is exact where wall-clock benchmarks are noisy.
//!
//! `callgrind_nop <core|core-next|peer|core-submit|peer-submit> <batch> <rounds>` pushes `batch` NOPs,
//! submits and waits for them with one `io_uring_enter`, and reaps them,
//! `rounds` times, through uring-core (`core`) or the `io-uring` crate
//! (`peer`), with the same ring setup (`SINGLE_ISSUER | DEFER_TASKRUN |
//! NO_SQARRAY`, 256 entries).
//!
//! Instructions per enter and per SQE come from differences of runs, which
//! cancel the fixed cost of process start-up and ring setup:
//!
//! ```sh
//! cargo build --release -p uring-core --example callgrind_nop
//! cargo xtask callgrind   # or by hand:
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/callgrind_nop core 1 20000 2>&1 | grep refs
//! ```
//!
//! per enter = (I(core, 1, 40000) - I(core, 1, 20000)) / 20000, minus the
//! per-SQE cost (one SQE per round); per SQE = (I(core, 65, 1000) -
//! I(core, 1, 1000)) / (64 * 1000).

use std::hint::black_box;

use uring_core::{Options, Ring, Sqe, SqeFlags, sys};

/// The submission side alone: NOPs flagged `IOSQE_CQE_SKIP_SUCCESS` post
/// no CQE, so a run costs pushes and one `submit` per batch, nothing else.
fn core_submit_only(batch: u32, rounds: u32) -> u64 {
    let mut ring = Ring::new(Options::default().entries(256).cq_entries(512)).expect("ring");
    ring.start().expect("start");
    let mut sum = 0u64;
    for round in 0..rounds {
        for i in 0..batch {
            let mut sqe = Sqe::new(sys::IORING_OP_NOP as u8);
            sqe.set_sqe_flags(SqeFlags::CQE_SKIP_SUCCESS);
            sqe.user_data = u64::from(round ^ i);
            // SAFETY: a NOP names no memory.
            unsafe { ring.push(&sqe) }.expect("push");
        }
        sum += u64::from(ring.submit().expect("submit"));
    }
    assert_eq!(ring.cq_ready(), 0, "successful NOPs posted no CQE");
    sum
}

fn peer_submit_only(batch: u32, rounds: u32) -> u64 {
    let mut ring: io_uring::IoUring = io_uring::IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_no_sqarray()
        .setup_cqsize(512)
        .build(256)
        .expect("ring");
    let mut sum = 0u64;
    for round in 0..rounds {
        for i in 0..batch {
            let nop = io_uring::opcode::Nop::new()
                .build()
                .flags(io_uring::squeue::Flags::SKIP_SUCCESS)
                .user_data(u64::from(round ^ i));
            // SAFETY: a NOP names no memory.
            unsafe { ring.submission().push(&nop) }.expect("push");
        }
        sum += ring.submit().expect("submit") as u64;
    }
    sum
}

fn core(batch: u32, rounds: u32, in_place: bool) -> u64 {
    let mut ring = Ring::new(Options::default().entries(256).cq_entries(512)).expect("ring");
    ring.start().expect("start");
    let mut sum = 0u64;
    for round in 0..rounds {
        for i in 0..batch {
            if in_place {
                // SAFETY: a NOP names no memory.
                let sqe = unsafe { ring.next_sqe() }.expect("next_sqe");
                sqe.opcode = sys::IORING_OP_NOP as u8;
                sqe.user_data = u64::from(round ^ i);
            } else {
                let mut sqe = Sqe::new(sys::IORING_OP_NOP as u8);
                sqe.user_data = u64::from(round ^ i);
                // SAFETY: a NOP names no memory.
                unsafe { ring.push(&sqe) }.expect("push");
            }
        }
        ring.submit_and_wait(batch).expect("submit");
        let mut pass = ring.completions().expect("completions");
        while let Some(cqe) = pass.next() {
            sum = sum.wrapping_add(black_box(cqe.user_data()));
        }
    }
    sum
}

fn peer(batch: u32, rounds: u32) -> u64 {
    let mut ring: io_uring::IoUring = io_uring::IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_no_sqarray()
        .setup_cqsize(512)
        .build(256)
        .expect("ring");
    let mut sum = 0u64;
    for round in 0..rounds {
        for i in 0..batch {
            let nop = io_uring::opcode::Nop::new().build().user_data(u64::from(round ^ i));
            // SAFETY: a NOP names no memory.
            unsafe { ring.submission().push(&nop) }.expect("push");
        }
        ring.submit_and_wait(batch as usize).expect("submit");
        for cqe in ring.completion() {
            sum = sum.wrapping_add(black_box(cqe.user_data()));
        }
    }
    sum
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: callgrind_nop <core|core-next|peer|core-submit|peer-submit> <batch> <rounds>";
    let (mode, batch, rounds): (&str, u32, u32) = match &args[..] {
        [_, m, b, r] => (m.as_str(), b.parse().expect(usage), r.parse().expect(usage)),
        _ => panic!("{usage}"),
    };
    let sum = match mode {
        "core" => core(batch, rounds, false),
        "core-next" => core(batch, rounds, true),
        "core-submit" => core_submit_only(batch, rounds),
        "peer-submit" => peer_submit_only(batch, rounds),
        "peer" => peer(batch, rounds),
        _ => panic!("{usage}"),
    };
    println!("{sum}");
}
