//! `cargo xtask vm-test`: the test suites of the workspace's library crates
//! (uring-sys, uring-core, uring-ops, uring-buffers, ...: every member but
//! xtask) on a matrix of kernels.
//!
//! - `host` runs the test binaries directly on the running kernel.
//! - Any other entry is one of Debian's `cloud-amd64` kernels
//!   ([`kernel`]), booted under QEMU's TCG (no KVM) with an initramfs of
//!   busybox, the statically linked test binaries, the source tree (at its
//!   own path, for tests that read their package's files) and an exit
//!   helper ([`guest`]). The temp dir is ext4 on an NVMe scratch disk, as
//!   on a host. The init script runs every binary (in its package
//!   directory, under a 300 s limit) between marker lines and carries the
//!   overall status out through QEMU's isa-debug-exit device; the serial
//!   console is kept under `target/xtask/vm/logs/`. A kernel that dies
//!   before init, or later on the int3 of live code patching (multi-threaded
//!   TCG occasionally races the kernel's text poking), is booted again, up
//!   to three times, keeping the failed log; other crashes are reported.
//! - [`report`] reads passed, failed and skipped tests (with each skip's
//!   reason) out of the log.
//!
//! The exit status is 1 when any test fails or any boot never reports
//! (timeout, panic, no end marker), 2 for bad usage, 3 when a kernel or a
//! tool cannot be obtained.
//!
//! `cargo xtask vm-bench` ([`bench`](mod@bench)) boots the same way to run criterion
//! benches on kernels the host does not run.

mod bench;
mod guest;
mod kernel;
mod report;

pub(crate) use bench::run as run_bench;
pub(crate) use guest::is_static;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::deps::{self, Need};
use crate::util::{Failure, Result};
use crate::workspace_root;

use guest::{Ending, Invocation, Kind};
use kernel::{Fetcher, Kernel, Spec};
use report::Outcome;

/// The matrix when no `--kernel` is given.
pub(crate) const DEFAULT_KERNELS: [&str; 4] = ["host", "7.0", "7.2", "7.3"];
/// Boots per kernel when the kernel dies before the guest's init starts.
const BOOT_ATTEMPTS: u32 = 3;
/// Per-boot timeout unless `--timeout` says otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// What `vm-test` and `vm-bench` run: `--kernel` (repeated; `host` or a
/// series), the selecting flag (`--binary`, `--bench`: repeated, non-empty
/// parts of labels), `--timeout` seconds, and what follows `--` (the
/// binaries' own arguments).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct RunArgs {
    pub(crate) kernels: Vec<Option<Spec>>,
    /// Parts of labels to keep (all binaries when empty).
    pub(crate) selected: Vec<String>,
    pub(crate) timeout: Duration,
    pub(crate) rest: Vec<String>,
}

/// Parses [`RunArgs`] for `task`, whose selecting flag is `select` and
/// whose arguments after `--` are `rest_what` (for the usage error);
/// `kernels` and `timeout` are the defaults.
pub(crate) fn parse_run_args(
    args: &[String],
    task: &str,
    select: &str,
    rest_what: &str,
    kernels: &[&str],
    timeout: Duration,
) -> Result<RunArgs> {
    let mut out = RunArgs { kernels: Vec::new(), selected: Vec::new(), timeout, rest: Vec::new() };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
            _ => (arg.as_str(), None),
        };
        let mut value = || {
            inline.clone().or_else(|| it.next().cloned()).ok_or_else(|| Failure::usage(format!("{flag} needs a value")))
        };
        match flag {
            "--kernel" => {
                let v = value()?;
                out.kernels.push(if v == "host" { None } else { Some(Spec::parse(&v)?) });
            }
            f if f == select => {
                let v = value()?;
                if v.is_empty() {
                    return Err(Failure::usage(format!("{select} needs a non-empty label")));
                }
                out.selected.push(v);
            }
            "--timeout" => {
                let v = value()?;
                // u32: a limit the guest's `timeout` and the boot deadline
                // arithmetic take without overflow.
                let secs: u32 = v
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| Failure::usage(format!("--timeout {v}: expected seconds")))?;
                out.timeout = Duration::from_secs(secs.into());
            }
            "--" => out.rest.extend(it.by_ref().cloned()),
            other => {
                return Err(Failure::usage(format!("{task}: unknown argument `{other}` ({rest_what} go after `--`)")));
            }
        }
    }
    if out.kernels.is_empty() {
        for k in kernels {
            out.kernels.push(if *k == "host" { None } else { Some(Spec::parse(k)?) });
        }
    }
    Ok(out)
}

fn parse_args(args: &[String]) -> Result<RunArgs> {
    parse_run_args(args, "vm-test", "--binary", "test filters", &DEFAULT_KERNELS, DEFAULT_TIMEOUT)
}

/// One row of the results.
#[derive(Debug)]
struct Row {
    kernel: String,
    outcome: Outcome,
    /// Why the run did not report, if it did not.
    broken: Option<String>,
    log: PathBuf,
    took: Duration,
}

impl Row {
    fn ok(&self) -> bool {
        self.broken.is_none() && self.outcome.ok()
    }
}

pub(crate) fn run(args: &[String]) -> Result<()> {
    let args = parse_args(args)?;
    if !cfg!(all(target_arch = "x86_64", target_os = "linux")) {
        return Err(Failure::unavailable(
            "vm-test builds x86_64 Linux binaries and boots x86_64 kernels: run it on one",
        ));
    }
    let root = workspace_root();
    let dir = root.join("target/xtask/vm");
    preflight("vm-test", &dir, &args.kernels)?;
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| Failure::new(format!("cannot create {}: {e}", logs.display())))?;
    let started = Instant::now();

    // Kernels first: a missing one fails before the long build.
    let kernels = fetch_kernels(&dir, &args.kernels)?;
    let mut bins = guest::build_tests(&root)?;
    if !args.selected.is_empty() {
        bins.retain(|b| args.selected.iter().any(|p| b.label.contains(p.as_str())));
        if bins.is_empty() {
            return Err(Failure::usage(format!("no test binary matches --binary {}", args.selected.join(", "))));
        }
    }
    println!("{} test binaries: {}", bins.len(), bins.iter().map(|b| b.label.as_str()).collect::<Vec<_>>().join(", "));
    let inv = Invocation { kind: Kind::Tests, args: args.rest.clone(), limit: guest::TEST_BINARY_TIMEOUT };
    let initrd = if kernels.iter().any(Option::is_some) { Some(guest::initramfs(&dir, &bins, &inv)?) } else { None };

    let mut rows = Vec::new();
    for (spec, k) in args.kernels.iter().zip(&kernels) {
        let t = Instant::now();
        let row = match k {
            None => {
                let log = logs.join("host.log");
                println!("\n== host kernel {} (directly)", uring_core::kernel_release());
                let text = guest::run_on_host(&bins, &inv, &log, "host")?;
                let outcome = report::parse(&text);
                Row { kernel: "host (directly)".into(), outcome, broken: None, log, took: t.elapsed() }
            }
            Some(k) => {
                let log = logs.join(format!("{}.log", k.abi));
                println!("\n== {} ({}) under QEMU/TCG, serial log {}", k.abi, k.source, rel(&root, &log));
                let initrd = initrd.as_deref().expect("built when a VM kernel is listed");
                let (ending, text) = boot_until_init(&root, k, initrd, &log, args.timeout, Kind::Tests)?;
                let outcome = report::parse(&text);
                let broken = broken(&ending, outcome.end_status, args.timeout);
                Row {
                    kernel: format!("{} (Debian)", spec.as_ref().map_or("?", |s| s.0.as_str())),
                    outcome,
                    broken,
                    log,
                    took: t.elapsed(),
                }
            }
        };
        detail(&root, &row);
        rows.push(row);
    }

    println!("\n{}", table(&rows));
    let filter =
        if args.rest.is_empty() { String::new() } else { format!(" (test arguments: {})", args.rest.join(" ")) };
    println!("total {:.0} s{filter}", started.elapsed().as_secs_f64());
    let bad: Vec<&str> = rows.iter().filter(|r| !r.ok()).map(|r| r.kernel.as_str()).collect();
    if bad.is_empty() { Ok(()) } else { Err(Failure::new(format!("failures on: {}", bad.join(", ")))) }
}

/// Boots `k` with `initrd`, again (up to [`BOOT_ATTEMPTS`] boots, each
/// failed log kept beside `log`) when TCG kills the kernel before init or
/// on an int3 of live code patching; returns how the last boot ended and
/// its serial log.
fn boot_until_init(
    root: &Path,
    k: &Kernel,
    initrd: &Path,
    log: &Path,
    timeout: Duration,
    kind: Kind,
) -> Result<(Ending, String)> {
    let mut attempt = 1;
    loop {
        let ending = guest::boot(&k.image, initrd, log, timeout, &k.abi, kind)?;
        let text = std::fs::read(log).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
        let outcome = report::parse(&text);
        // A kernel that dies before init prints its first marker ran no
        // binary: under multi-threaded TCG, boot-time code patching
        // occasionally traps (an int3 oops in sched_clock_cpu). Boot again;
        // the failed log is kept. The same trap can strike later, at a
        // static-key site a binary's syscall runs through (seen:
        // io_submit_sqes): the kernel oopses on a stray int3 and the run
        // never reports. Only that signature is retried; any other crash is
        // reported as it is.
        let died_before_init = outcome.release.is_none();
        let patching_trap =
            outcome.end_status.is_none() && text.contains("Oops: int3") && text.contains("Kernel panic");
        if (died_before_init || patching_trap) && ending != Ending::TimedOut && attempt < BOOT_ATTEMPTS {
            let stem = log.file_stem().map_or_else(|| k.abi.clone(), |s| s.to_string_lossy().into_owned());
            let kept = log.with_file_name(format!("{stem}.failed-boot-{attempt}.log"));
            let _ = std::fs::rename(log, &kept);
            let why = if died_before_init {
                "the kernel died before init ran"
            } else {
                "the kernel oopsed on an int3 of live code patching (a TCG race, not a test failure)"
            };
            println!("  [{}] {why}; booting again ({})", k.abi, rel(root, &kept));
            attempt += 1;
            continue;
        }
        return Ok((ending, text));
    }
}

/// Why a boot did not report, if it did not: `end_status` is the status
/// the log's end marker gives.
fn broken(ending: &Ending, end_status: Option<i32>, timeout: Duration) -> Option<String> {
    match ending {
        Ending::Reported(s) if Some(i32::from(*s)) == end_status => None,
        Ending::Reported(s) => {
            Some(format!("the guest reported status {s} but the log's end marker says {end_status:?}"))
        }
        Ending::NoReport(code) => Some(format!(
            "QEMU exited ({}) without a status from the guest (kernel panic or init died)",
            code.map_or("by a signal".to_owned(), |c| format!("status {c}"))
        )),
        Ending::TimedOut => Some(format!("no result within {} s; QEMU killed", timeout.as_secs())),
    }
}

/// Checks, before anything is fetched or built, every tool `task` needs
/// for the kernels `specs` name (`None`: the host), all missing ones in
/// one line. The private apt's tools are needed only when some kernel is
/// not in the cache under `dir` (offline, a cached kernel will do); a
/// missing mkfs.ext4 is only a note (the guest falls back to ext2).
pub(crate) fn preflight(task: &str, dir: &Path, specs: &[Option<Spec>]) -> Result<()> {
    let mut needs = vec![Need::StaticBuild];
    let vms: Vec<&Spec> = specs.iter().flatten().collect();
    if !vms.is_empty() {
        needs.push(Need::Boot);
    }
    let fetcher = Fetcher::new(dir);
    let all_cached = vms.iter().all(|s| fetcher.newest_cached(s).is_some());
    if !all_cached {
        needs.push(Need::Apt);
    }
    deps::require(task, &needs)?;
    let mut optional = Vec::new();
    if !vms.is_empty() {
        optional.push(Need::Ext4);
    }
    if all_cached && !vms.is_empty() {
        optional.push(Need::Apt);
    }
    if let Some(note) = deps::note_optional(task, &optional) {
        println!("{note}");
    }
    Ok(())
}

/// The kernels `specs` name (`None`: the host, nothing to fetch), fetched
/// or taken from the cache under `dir`.
pub(crate) fn fetch_kernels(dir: &Path, specs: &[Option<Spec>]) -> Result<Vec<Option<Kernel>>> {
    let mut fetcher = Fetcher::new(dir);
    let mut kernels = Vec::new();
    for spec in specs {
        kernels.push(match spec {
            None => None,
            Some(spec) => Some(fetcher.get(spec)?),
        });
    }
    Ok(kernels)
}

/// `path` relative to the workspace root, for display.
fn rel(root: &Path, path: &Path) -> String {
    path.strip_prefix(root).unwrap_or(path).display().to_string()
}

/// The per-kernel detail: failures, skips with reasons, ignored tests.
fn detail(root: &Path, row: &Row) {
    let o = &row.outcome;
    println!(
        "  {}: {} passed, {} failed, {} skipped in {:.0} s (log: {})",
        o.release.as_deref().unwrap_or("release unknown"),
        o.passed(),
        o.failed(),
        o.skipped_tests(),
        row.took.as_secs_f64(),
        rel(root, &row.log)
    );
    if let Some(why) = &row.broken {
        println!("  BROKEN RUN: {why}");
    }
    for f in &o.failures {
        match o.reasons.iter().find(|(name, _)| name == f) {
            Some((_, why)) => println!("  FAILED   {f}: {why}"),
            None => println!("  FAILED   {f}"),
        }
    }
    for s in &o.skips {
        println!("  skipped  {}: {}: {}", s.binary, s.test, s.reason);
    }
    for i in &o.ignored {
        println!("  ignored  {i}");
    }
}

/// The results as a Markdown table.
fn table(rows: &[Row]) -> String {
    let mut s =
        String::from("| kernel | release | passed | failed | skipped | time |\n|---|---|---:|---:|---:|---:|\n");
    for r in rows {
        let o = &r.outcome;
        let failed = match &r.broken {
            Some(_) => format!("{} + no report", o.failed()),
            None => o.failed().to_string(),
        };
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {:.0} s |\n",
            r.kernel,
            o.release.as_deref().unwrap_or("?"),
            o.passed(),
            failed,
            o.skipped_tests(),
            r.took.as_secs_f64()
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Owned strings, as the argument parsers take them (shared by the
    /// vm modules' tests).
    pub(crate) fn strings(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn arguments() {
        let a = parse_args(&[]).unwrap();
        assert_eq!(a.kernels.len(), DEFAULT_KERNELS.len());
        assert_eq!(a.kernels[0], None);
        assert_eq!(a.timeout, DEFAULT_TIMEOUT);
        let a = parse_args(&strings(&[
            "--kernel",
            "7.3",
            "--kernel=host",
            "--binary",
            "uring-core/",
            "--timeout",
            "60",
            "--",
            "ring",
            "--exact",
        ]))
        .unwrap();
        assert_eq!(a.selected, strings(&["uring-core/"]));
        assert_eq!(a.kernels, vec![Some(Spec("7.3".into())), None]);
        assert_eq!(a.timeout, Duration::from_secs(60));
        assert_eq!(a.rest, strings(&["ring", "--exact"]));
        assert_eq!(parse_args(&strings(&["--kernel"])).unwrap_err().code, 2);
        assert_eq!(parse_args(&strings(&["--kernel", "seven"])).unwrap_err().code, 2);
        assert_eq!(parse_args(&strings(&["ring"])).unwrap_err().code, 2);
        assert_eq!(parse_args(&strings(&["--timeout", "0"])).unwrap_err().code, 2);
        // Past u32 seconds: a usage error, not an overflow later.
        assert_eq!(parse_args(&strings(&["--timeout", "99999999999"])).unwrap_err().code, 2);
    }
}
