//! `cargo xtask vm-bench`: criterion benchmarks (the workspace's
//! `[[bench]]` targets) on kernels the host does not run, booted as
//! `vm-test` boots them.
//!
//! The bench binaries are built like `cargo bench` builds them (bench
//! profile) but statically, packed into the same initramfs with the same
//! init, which runs each selected binary with `--bench` and the user's
//! arguments (what `cargo bench` passes to a `harness = false` bench), in
//! its package directory, through a pipe (no progress redrawing, no
//! colours), with criterion's data under the guest's temp dir. criterion's
//! result lines are echoed as they come; after the boot each binary's whole
//! output (between its `RUN` and `EXIT` markers) is printed. `host` runs
//! the binaries directly, their data under `target/criterion` as with
//! `cargo bench`.
//!
//! Exit status 1 when a bench binary fails (or is killed at its limit) or a
//! boot never reports, 2 for bad usage, 3 when a kernel or a tool cannot
//! be obtained.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::util::{Failure, Result};
use crate::workspace_root;

use super::guest::{self, Binary, Invocation, Kind};

use super::report::{self, BinaryOutput};
use super::{RunArgs, boot_until_init, broken, fetch_kernels, parse_run_args, rel};

/// The kernel when no `--kernel` is given: the newest of the matrix.
const DEFAULT_KERNEL: &str = "7.3";
/// Seconds one bench binary may run unless `--timeout` says otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);
/// Added to the binaries' limits for a boot's deadline: booting, and the
/// init's setup, under TCG.
const BOOT_ALLOWANCE: Duration = Duration::from_secs(300);

fn parse_args(args: &[String]) -> Result<RunArgs> {
    let a = parse_run_args(
        args,
        "vm-bench",
        "--bench",
        "arguments for the bench binaries",
        &[DEFAULT_KERNEL],
        DEFAULT_TIMEOUT,
    )?;
    if a.selected.is_empty() {
        return Err(Failure::usage(
            "vm-bench: name the benches to run with --bench LABEL (a part of `crate/bench:name`, e.g. \
             uring-zcrx/throughput); under TCG a run of every bench would take hours",
        ));
    }
    Ok(a)
}

/// Whether `pattern` selects the bench labelled `label`
/// (`uring-zcrx/bench:throughput`): a part of the label or of its short
/// form without `bench:` (`uring-zcrx/throughput`).
fn selects(pattern: &str, label: &str) -> bool {
    label.contains(pattern) || label.replacen("/bench:", "/", 1).contains(pattern)
}

/// One kernel's run.
#[derive(Debug)]
struct Row {
    kernel: String,
    release: Option<String>,
    sections: Vec<BinaryOutput>,
    /// Why the boot did not report, if it did not.
    broken: Option<String>,
    log: PathBuf,
    took: Duration,
}

impl Row {
    /// `label: why` for each selected binary that did not exit 0.
    fn failures(&self, bins: &[Binary]) -> Vec<String> {
        bins.iter()
            .filter_map(|b| {
                let why = match self.sections.iter().find(|s| s.binary == b.label) {
                    None => "never ran".to_owned(),
                    Some(BinaryOutput { killed: Some(why), .. }) => format!("killed {why}"),
                    Some(BinaryOutput { status: None, .. }) => {
                        "never finished (the VM stopped or timed out)".to_owned()
                    }
                    Some(BinaryOutput { status: Some(0), .. }) => return None,
                    Some(BinaryOutput { status: Some(rc), .. }) => format!("exited {rc}"),
                };
                Some(format!("{}: {why}", b.label))
            })
            .collect()
    }
}

pub(crate) fn run(args: &[String]) -> Result<()> {
    let args = parse_args(args)?;
    if !cfg!(all(target_arch = "x86_64", target_os = "linux")) {
        return Err(Failure::unavailable(
            "vm-bench builds x86_64 Linux binaries and boots x86_64 kernels: run it on one",
        ));
    }
    let root = workspace_root();
    let dir = root.join("target/xtask/vm");
    super::preflight("vm-bench", &dir, &args.kernels)?;
    let logs = dir.join("logs");
    // Its own initramfs, scratch disk and exit helper: a vm-test may run
    // beside it.
    let work = dir.join("bench");
    for d in [&logs, &work] {
        std::fs::create_dir_all(d).map_err(|e| Failure::new(format!("cannot create {}: {e}", d.display())))?;
    }
    let started = Instant::now();

    // Kernels first: a missing one fails before the long build.
    let kernels = fetch_kernels(&dir, &args.kernels)?;
    let mut bins = guest::build_benches(&root)?;
    let all: Vec<String> = bins.iter().map(|b| b.label.clone()).collect();
    bins.retain(|b| args.selected.iter().any(|p| selects(p, &b.label)));
    if bins.is_empty() {
        return Err(Failure::usage(format!(
            "no bench matches --bench {}; the benches are: {}",
            args.selected.join(", "),
            all.join(", ")
        )));
    }
    println!("{} bench binaries: {}", bins.len(), bins.iter().map(|b| b.label.as_str()).collect::<Vec<_>>().join(", "));
    let limit = u32::try_from(args.timeout.as_secs()).unwrap_or(u32::MAX);
    let inv = Invocation { kind: Kind::Benches, args: args.rest.clone(), limit };
    let initrd = if kernels.iter().any(Option::is_some) { Some(guest::initramfs(&work, &bins, &inv)?) } else { None };
    let boot_timeout = args.timeout * u32::try_from(bins.len()).unwrap_or(u32::MAX) + BOOT_ALLOWANCE;

    let mut rows = Vec::new();
    for (spec, k) in args.kernels.iter().zip(&kernels) {
        let t = Instant::now();
        let row = match k {
            None => {
                let log = logs.join("bench-host.log");
                println!("\n== host kernel {} (directly)", uring_core::kernel_release());
                let text = guest::run_on_host(&bins, &inv, &log, "host")?;
                let release = report::parse(&text).release;
                let sections = report::sections(&text);
                Row { kernel: "host (directly)".into(), release, sections, broken: None, log, took: t.elapsed() }
            }
            Some(k) => {
                let log = logs.join(format!("bench-{}.log", k.abi));
                println!("\n== {} ({}) under QEMU/TCG, serial log {}", k.abi, k.source, rel(&root, &log));
                let initrd = initrd.as_deref().expect("built when a VM kernel is listed");
                let (ending, text) = boot_until_init(&root, k, initrd, &log, boot_timeout, Kind::Benches)?;
                let outcome = report::parse(&text);
                Row {
                    kernel: format!("{} (Debian)", spec.as_ref().map_or("?", |s| s.0.as_str())),
                    release: outcome.release,
                    sections: report::sections(&text),
                    broken: broken(&ending, outcome.end_status, boot_timeout),
                    log,
                    took: t.elapsed(),
                }
            }
        };
        let release = row.release.as_deref().unwrap_or("release unknown");
        for s in &row.sections {
            let status = match (&s.killed, s.status) {
                (Some(why), _) => format!("killed {why}"),
                (None, Some(rc)) => format!("exit {rc}"),
                (None, None) => "did not finish".to_owned(),
            };
            println!("\n-- {} on {release} ({status})", s.binary);
            println!("{}", s.output.trim_end());
        }
        rows.push(row);
    }

    println!();
    let mut bad = Vec::new();
    for row in &rows {
        let failures = row.failures(&bins);
        println!(
            "{} {}: {} of {} bench binaries ok in {:.0} s (log: {})",
            row.kernel,
            row.release.as_deref().unwrap_or("(release unknown)"),
            bins.len() - failures.len(),
            bins.len(),
            row.took.as_secs_f64(),
            rel(&root, &row.log)
        );
        if let Some(why) = &row.broken {
            println!("  BROKEN RUN: {why}");
        }
        for f in &failures {
            println!("  FAILED   {f}");
        }
        if row.broken.is_some() || !failures.is_empty() {
            bad.push(row.kernel.as_str());
        }
    }
    let passed = if args.rest.is_empty() {
        String::new()
    } else {
        format!(" (bench arguments: --bench {})", args.rest.join(" "))
    };
    println!("total {:.0} s{passed}", started.elapsed().as_secs_f64());
    if bad.is_empty() { Ok(()) } else { Err(Failure::new(format!("bench failures on: {}", bad.join(", ")))) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::kernel::Spec;
    use crate::vm::tests::strings;

    #[test]
    fn arguments() {
        let a = parse_args(&strings(&["--bench", "uring-zcrx/throughput"])).unwrap();
        assert_eq!(a.kernels, vec![Some(Spec(DEFAULT_KERNEL.into()))]);
        assert_eq!(a.selected, strings(&["uring-zcrx/throughput"]));
        assert_eq!(a.timeout, DEFAULT_TIMEOUT);
        assert!(a.rest.is_empty());
        let a = parse_args(&strings(&[
            "--bench=nop",
            "--kernel",
            "7.2",
            "--kernel=host",
            "--bench",
            "uring-zcrx/bench:throughput",
            "--timeout",
            "120",
            "--",
            "--warm-up-time",
            "1",
            "--measurement-time",
            "3",
            "--kernel",
        ]))
        .unwrap();
        assert_eq!(a.selected, strings(&["nop", "uring-zcrx/bench:throughput"]));
        assert_eq!(a.kernels, vec![Some(Spec("7.2".into())), None]);
        assert_eq!(a.timeout, Duration::from_secs(120));
        // Everything after `--` goes to the binaries, flags of ours too.
        assert_eq!(a.rest, strings(&["--warm-up-time", "1", "--measurement-time", "3", "--kernel"]));
        // A selection is required.
        assert_eq!(parse_args(&[]).unwrap_err().code, 2);
        assert_eq!(parse_args(&strings(&["--kernel", "7.3", "--", "--test"])).unwrap_err().code, 2);
        assert_eq!(parse_args(&strings(&["--bench"])).unwrap_err().code, 2);
        assert_eq!(parse_args(&strings(&["--bench="])).unwrap_err().code, 2);
        assert_eq!(parse_args(&strings(&["--bench", "x", "--kernel", "seven"])).unwrap_err().code, 2);
        assert_eq!(parse_args(&strings(&["--bench", "x", "--timeout", "0"])).unwrap_err().code, 2);
        assert_eq!(parse_args(&strings(&["--bench", "x", "--test"])).unwrap_err().code, 2);
        assert_eq!(parse_args(&strings(&["--bench", "x", "--binary", "y"])).unwrap_err().code, 2);
    }

    #[test]
    fn labels_select_by_part_or_short_form() {
        let label = "uring-zcrx/bench:throughput";
        for p in ["uring-zcrx/throughput", "uring-zcrx/bench:throughput", "throughput", "zcrx/", "bench:thr"] {
            assert!(selects(p, label), "{p}");
        }
        for p in ["uring-core/", "uring-zcrx/refill", "throughput/"] {
            assert!(!selects(p, label), "{p}");
        }
        assert!(selects("uring-core/bench:nop", "uring-core/bench:nop"));
    }

    #[test]
    fn a_bench_fails_when_it_did_not_exit_0() {
        let bin = |label: &str| Binary { label: label.into(), path: "/x".into(), dir: "/".into() };
        let bins =
            [bin("a/bench:ok"), bin("a/bench:bad"), bin("a/bench:killed"), bin("a/bench:cut"), bin("a/bench:none")];
        let text = "@@URING-VM BEGIN 7.3\n@@URING-VM RUN a/bench:ok\n@@URING-VM EXIT a/bench:ok 0\n@@URING-VM RUN \
                    a/bench:bad\n@@URING-VM EXIT a/bench:bad 101\n@@URING-VM RUN a/bench:killed\n@@URING-VM KILLED \
                    a/bench:killed by SIGKILL: its 9 s limit\n@@URING-VM EXIT a/bench:killed 137\n@@URING-VM RUN \
                    a/bench:cut\n";
        let row = Row {
            kernel: "k".into(),
            release: None,
            sections: report::sections(text),
            broken: None,
            log: "/l".into(),
            took: Duration::ZERO,
        };
        assert_eq!(
            row.failures(&bins),
            strings(&[
                "a/bench:bad: exited 101",
                "a/bench:killed: killed by SIGKILL: its 9 s limit",
                "a/bench:cut: never finished (the VM stopped or timed out)",
                "a/bench:none: never ran",
            ])
        );
    }
}
