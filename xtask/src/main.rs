//! Developer tasks for the uring workspace, run as `cargo xtask <task>`.
//!
//! This crate is never a dependency of a library crate. It owns the
//! generation of `uring-sys`'s bindings and the checks that CI runs.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod apt;
mod bindgen;
mod callgrind;
mod compare;
mod deps;
mod doctor;
#[cfg(test)]
mod tidy;
mod util;
mod vm;

const USAGE: &str = "\
usage: cargo xtask <task> [options]

tasks:
  bindgen [--check] [--headers DIR] [--repin]
      Regenerate uring-sys/src/bindings/*.rs from the pinned kernel uapi
      headers (uring-sys/headers.pin), downloaded into target/xtask/ with a
      private apt configuration.
        --check        regenerate into target/ and fail with a diff when the
                       committed files differ (exit 1); exit 3 when the pinned
                       headers can no longer be obtained (the committed files'
                       integrity is still verified).
        --headers DIR  use DIR (a linux-libc-dev `usr/include` tree) instead
                       of the pinned package.
        --repin        move the pin to the newest linux-libc-dev that the
                       pinned suites offer, then regenerate.
  deps [--list]
      Install (apt-get, as root or through sudo) every Debian package the
      tasks below and .ci/run need: the pinned libclang, apt and the archive
      keyring, QEMU, busybox-static, cpio, e2fsprogs, valgrind, ... Installs
      only what is missing and prints it; without root or sudo it prints
      the exact apt-get command instead (exit 3).
        --list         list each package, whether it is installed and what
                       needs it; install nothing.
      Every task checks its tools before it starts and, when some are
      missing, names them all in one line (exit 3).
  doctor
      Diagnose this machine for io_uring: kernel release against the 6.18
      baseline, kernel.io_uring_disabled, RLIMIT_MEMLOCK, seccomp, every
      setup flag and opcode the kernel supports, then a short self test.
      Exits 1 when io_uring is not usable.
  callgrind
      Count user-space instructions per io_uring_enter and per SQE for
      uring-core and the io-uring crate with valgrind's callgrind (exact
      where wall-clock benchmarks are noisy). Needs valgrind (`cargo xtask
      deps`).
  compare [--check] [--record] [--wall[=K]]
      User-space instructions per operation (valgrind's callgrind, exact)
      for the same workloads through liburing, the io-uring crate and
      uring: NOPs per SQE (raw and typed), reap per CQE, 4 KiB fixed reads
      at QD32 (raw and through FixedBuffers), multishot receive with a
      provided-buffer ring. Prints a Markdown table with each ratio to
      liburing, the issue's target and the recorded ceiling
      (xtask/compare/budgets.txt). liburing-dev is Debian's, fetched with a
      private apt configuration into the target directory; the C workloads
      (xtask/compare/liburing.c) are built with gcc, the Rust ones are
      uring-buffers/examples/compare.rs. About a minute.
        --check   exit 1 when a ratio exceeds its recorded ceiling by more
                  than 2% (the CI gate: a ratchet towards the targets).
        --record  write this run's ratios as the new ceilings.
        --wall[=K] wall-clock instead (not a gate): K interleaved rounds
                  (default 5) of native runs pinned to one CPU with
                  taskset, the median of per-round ratios and their spread.
  vm-test [--kernel VERSION]... [--binary LABEL]... [--timeout SECS] [-- TEST ARGS...]
      Run the test binaries of the workspace's library crates (every
      member but xtask: unit, integration and example tests) on a matrix of
      kernels: `host` runs them on the running kernel; any other VERSION
      (7.3 = newest 7.3.x, 7.3.4, or 7.3.4+deb13-cloud-amd64) is Debian's
      cloud-amd64 kernel, fetched into target/xtask/vm/ with a private apt
      configuration and booted under QEMU (TCG) with an initramfs of
      busybox-static and the tests built with +crt-static. Default matrix:
      host 7.0 7.2 7.3. Prints passed, failed and skipped (with reasons)
      per kernel and a Markdown table; serial logs stay in
      target/xtask/vm/logs/. --binary keeps the test binaries whose label
      (uring-core/ring, uring-ops/example:poll, ...) contains LABEL; TEST
      ARGS go to every test binary (a test-name filter, --exact, ...).
      Exits 1 on a failed test or a boot that never reports (--timeout per
      boot, default 600). Needs qemu-system-x86, busybox-static, cpio and
      (for an ext4 temp dir in the guest) e2fsprogs: `cargo xtask deps`.
  vm-bench --bench LABEL... [--kernel VERSION]... [--timeout SECS] [-- BENCH ARGS...]
      Run criterion benches ([[bench]] targets of the library crates) on a
      kernel of vm-test's kind, default 7.3 (`host`: directly). Built in
      the bench profile with +crt-static; each selected binary runs with
      `--bench BENCH ARGS...` (as `cargo bench` runs it: --test,
      --warm-up-time 1, a benchmark filter, ...) in its package directory.
      --bench (required, repeatable) keeps the benches whose label
      (uring-zcrx/bench:throughput) or short form (uring-zcrx/throughput)
      contains LABEL. criterion's results are echoed as they come, and each
      binary's whole output after the boot. --timeout limits each bench
      binary (default 1800; a boot gets the sum plus 300). Exits 1 when a
      bench binary fails or a boot never reports.
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((task, rest)) = args.split_first() else {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    };
    let result = match task.as_str() {
        "bindgen" => bindgen::run(rest),
        "deps" => deps::run(rest),
        "doctor" => doctor::run(rest),
        "callgrind" => callgrind::run(rest),
        "compare" => compare::run(rest),
        "vm-test" => vm::run(rest),
        "vm-bench" => vm::run_bench(rest),
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            Ok(())
        }
        other => Err(util::Failure::usage(format!("unknown task `{other}`\n\n{USAGE}"))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

/// The workspace root: the parent of this crate's manifest directory.
pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}
