//! `cargo xtask compare`: user-space instructions per operation for the
//! same workloads through liburing, the `io-uring` crate and uring, counted
//! exactly by valgrind's callgrind, with each one's ratio to liburing; with
//! `--check`, a gate on the ratios in `xtask/compare/budgets.txt`.
//!
//! The workloads are small programs: `xtask/compare/liburing.c` (compiled
//! with the C compiler against Debian's `liburing-dev`, fetched with a
//! private apt configuration from the suites of `uring-sys/headers.pin`
//! and linked statically) and `uring-buffers/examples/compare.rs` (uring and
//! the `io-uring` crate). Each figure is a difference of two runs, so
//! process start-up and ring setup cancel:
//!
//! - per SQE: the slope over the batch size at a fixed number of rounds
//!   (one `submit` per round cancels too);
//! - per operation of a fixed batch (QD32 reads, one message): the slope
//!   over the number of rounds, enter and reap included (TCP echo: per
//!   request, the in-process clients' `write` and `read` included);
//! - reap per CQE: the round trip's per-SQE slope minus the submission
//!   side's, each with the library's raw push.
//!
//! Instruction counts are exact and repeatable for one build (same
//! compiler, same liburing), which is what makes them a CI gate on a
//! shared machine; wall-clock is not measured here.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::apt::{self, PrivateApt};
use crate::bindgen::{PIN_FILE, Pin};
use crate::deps::{self, Need};
use crate::util::{self, Failure, Result};
use crate::workspace_root;

/// The budgets: the targets and the recorded ceilings.
pub(crate) const BUDGETS: &str = "xtask/compare/budgets.txt";
/// The C workloads.
const C_SOURCE: &str = "xtask/compare/liburing.c";
/// How much worse than its recorded ceiling a ratio may be under `--check`.
const SLACK: f64 = 0.02;

/// Rounds for the per-SQE slopes (batches of `BATCH_LO` and `BATCH_HI`).
const SQE_ROUNDS: u32 = 100;
const BATCH_LO: u32 = 8;
const BATCH_HI: u32 = 72;
/// Queue depth and rounds (`n` and `2n`) of the fixed reads.
const QD: u32 = 32;
const READ_ROUNDS: u32 = 50;
/// Messages (`n` and `2n`) of the multishot receive.
const RECV_ROUNDS: u32 = 1_000;
/// Wall-clock: rounds by default, and how many times more operations than
/// under callgrind each run makes.
const WALL_ROUNDS: u32 = 5;
const WALL_SCALE: u32 = 100;
/// Rounds (`n` and `2n`) of the echo with one connection (a quarter with 16).
const ECHO_ROUNDS: u32 = 200;
/// The read workload's file: 256 blocks of 4 KiB.
const FILE_LEN: usize = 256 * 4096;

/// How a workload's per-operation figure is taken from its runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    /// Slope over the batch size (`BATCH_LO` to `BATCH_HI`) at `SQE_ROUNDS`.
    PerSqe,
    /// Slope over rounds at a fixed batch: `(I(2n) - I(n)) / (n * batch)`.
    PerRound { batch: u32, rounds: u32 },
    /// `PerSqe` of the first mode minus `PerSqe` of the second (the reap
    /// side: a round trip minus the submission side).
    Minus,
}

/// One row of the table.
#[derive(Debug, Clone, Copy)]
struct Workload {
    /// The budget file's key.
    id: &'static str,
    label: &'static str,
    method: Method,
    /// liburing's modes (the second only for `Minus`).
    liburing: (&'static str, &'static str),
    /// The io-uring crate's, if it has this path.
    peer: Option<(&'static str, &'static str)>,
    /// uring's.
    uring: (&'static str, &'static str),
}

const WORKLOADS: &[Workload] = &[
    Workload {
        id: "nop-next",
        label: "NOP per SQE, raw (next_sqe)",
        method: Method::PerSqe,
        liburing: ("nop-submit", ""),
        peer: Some(("peer-submit", "")),
        uring: ("next-submit", ""),
    },
    Workload {
        id: "nop-push",
        label: "NOP per SQE, typed (push_op)",
        method: Method::PerSqe,
        liburing: ("nop-submit", ""),
        peer: Some(("peer-submit", "")),
        uring: ("push-submit", ""),
    },
    Workload {
        id: "reap-completions",
        label: "reap per CQE (completions)",
        method: Method::Minus,
        liburing: ("nop-round", "nop-submit"),
        peer: Some(("peer-round", "peer-submit")),
        uring: ("next-round", "next-submit"),
    },
    Workload {
        id: "reap-slots",
        label: "reap per CQE (reap into CqeSlots)",
        method: Method::Minus,
        liburing: ("nop-round", "nop-submit"),
        peer: Some(("peer-round", "peer-submit")),
        uring: ("reap-round", "next-submit"),
    },
    Workload {
        id: "read-raw",
        label: "4K read QD32 fixed, raw ReadFixed",
        method: Method::PerRound { batch: QD, rounds: READ_ROUNDS },
        liburing: ("read-fixed", ""),
        peer: Some(("peer-read", "")),
        uring: ("read-raw", ""),
    },
    Workload {
        id: "read-safe",
        label: "4K read QD32, safe FixedBuffers",
        method: Method::PerRound { batch: QD, rounds: READ_ROUNDS },
        liburing: ("read-fixed", ""),
        peer: None,
        uring: ("read-safe", ""),
    },
    Workload {
        id: "recv-multi",
        label: "multishot recv + recycle, per msg",
        method: Method::PerRound { batch: 1, rounds: RECV_ROUNDS },
        liburing: ("recv-multi", ""),
        peer: Some(("peer-recv", "")),
        uring: ("recv", ""),
    },
    Workload {
        id: "echo-1",
        label: "TCP echo, 1 connection, per request",
        method: Method::PerRound { batch: 1, rounds: ECHO_ROUNDS },
        liburing: ("echo", ""),
        peer: Some(("peer-echo", "")),
        uring: ("echo", ""),
    },
    Workload {
        id: "echo-16",
        label: "TCP echo, 16 connections, per request",
        method: Method::PerRound { batch: 16, rounds: ECHO_ROUNDS / 4 },
        liburing: ("echo", ""),
        peer: Some(("peer-echo", "")),
        uring: ("echo", ""),
    },
];

/// One budget line: the target and the recorded ceiling, both as
/// ratios to liburing.
#[derive(Debug, Clone, PartialEq)]
struct Budget {
    id: String,
    target: f64,
    ceiling: f64,
}

/// The parsed budget file.
#[derive(Debug, Clone, PartialEq)]
struct Budgets {
    /// The liburing-dev version the ceilings were recorded against.
    liburing: String,
    rows: Vec<Budget>,
}

impl Budgets {
    /// `liburing = VERSION` and lines of `id target ceiling`; `#` comments.
    fn parse(text: &str) -> Result<Self> {
        let mut liburing = None;
        let mut rows = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            if let Some((k, v)) = line.split_once('=')
                && k.trim() == "liburing"
            {
                liburing = Some(v.trim().to_owned());
                continue;
            }
            let bad = || Failure::new(format!("{BUDGETS}:{}: expected `id target ceiling`, got `{line}`", n + 1));
            let mut words = line.split_whitespace();
            let (Some(id), Some(target), Some(ceiling), None) =
                (words.next(), words.next(), words.next(), words.next())
            else {
                return Err(bad());
            };
            let target: f64 = target.parse().map_err(|_| bad())?;
            let ceiling: f64 = ceiling.parse().map_err(|_| bad())?;
            if !WORKLOADS.iter().any(|w| w.id == id) {
                return Err(Failure::new(format!("{BUDGETS}:{}: no workload `{id}`", n + 1)));
            }
            rows.push(Budget { id: id.to_owned(), target, ceiling });
        }
        let liburing = liburing.ok_or_else(|| Failure::new(format!("{BUDGETS} has no `liburing = VERSION` line")))?;
        Ok(Self { liburing, rows })
    }

    fn get(&self, id: &str) -> Option<&Budget> {
        self.rows.iter().find(|b| b.id == id)
    }

    /// `text` with each row's ceiling replaced by `measured`'s ratio
    /// (rounded up to 0.01) and the liburing version by `liburing`.
    fn record(text: &str, liburing: &str, measured: &[(String, f64)]) -> String {
        let mut out = String::new();
        for line in text.lines() {
            let body = line.split('#').next().unwrap_or_default();
            let words: Vec<&str> = body.split_whitespace().collect();
            if let Some((k, _)) = body.split_once('=')
                && k.trim() == "liburing"
            {
                let _ = writeln!(out, "liburing = {liburing}");
            } else if let [id, target, _] = words[..]
                && let Some((_, r)) = measured.iter().find(|(m, _)| m == id)
            {
                let ceiling = format!("{:.2}", (r * 100.0).ceil() / 100.0);
                let row = format!("{id:<18} {target:<6} {ceiling}");
                match line.find('#') {
                    Some(at) => {
                        let _ = writeln!(out, "{row:<34}{}", &line[at..]);
                    }
                    None => {
                        let _ = writeln!(out, "{row}");
                    }
                }
            } else {
                let _ = writeln!(out, "{line}");
            }
        }
        out
    }
}

#[derive(Debug, Default)]
struct Args {
    check: bool,
    record: bool,
    /// Wall-clock rounds (`--wall K`), instead of instruction counts.
    wall: Option<u32>,
}

fn parse_args(args: &[String]) -> Result<Args> {
    let mut parsed = Args::default();
    for arg in args {
        match arg.as_str() {
            "--check" => parsed.check = true,
            "--record" => parsed.record = true,
            "--wall" => parsed.wall = Some(WALL_ROUNDS),
            other if other.starts_with("--wall=") => {
                let k = other["--wall=".len()..].parse().ok().filter(|k| *k > 0);
                parsed.wall = Some(k.ok_or_else(|| Failure::usage(format!("compare: bad `{other}`")))?);
            }
            other => return Err(Failure::usage(format!("compare: unknown option `{other}`"))),
        }
    }
    Ok(parsed)
}

/// Cargo's target directory as cargo itself resolves it.
fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if Path::new(&d).is_absolute() => PathBuf::from(d),
        Some(d) => root.join(d),
        None => root.join("target"),
    }
}

/// liburing-dev's headers and static library, and the kernel headers
/// `liburing.h` includes (`linux/blkdev.h`, newer than the host's
/// linux-libc-dev may have: the pinned `linux-libc-dev` of
/// `uring-sys/headers.pin`, or the newest offered once Debian drops it; they
/// only need to be recent enough), unpacked under `dir`. Downloads only
/// what is not unpacked yet. Returns (liburing version, include dirs,
/// `liburing.a`).
fn fetch_liburing(dir: &Path, wanted: &str, pin: &Pin) -> Result<(String, Vec<PathBuf>, PathBuf)> {
    let unpacked = |v: &str| dir.join(format!("liburing-dev_{v}"));
    let lib_of = |v: &str| unpacked(v).join("usr/lib/x86_64-linux-gnu/liburing.a");
    let headers = dir.join("kernel-headers");
    let mut version = wanted.to_owned();
    if !lib_of(&version).is_file() || !headers.join("usr/include/linux/blkdev.h").is_file() {
        let apt = PrivateApt::new(&dir.join("apt"), &pin.headers_suites)?;
        apt.update()?;
        let newest_of = |package: &str| -> Result<(Vec<String>, String)> {
            let offered = apt.versions(package)?;
            let newest = offered.first().cloned().ok_or_else(|| {
                Failure::unavailable(format!("the suites {:?} offer no {package}", pin.headers_suites))
            })?;
            Ok((offered, newest))
        };
        if !lib_of(&version).is_file() {
            let (offered, newest) = newest_of("liburing-dev")?;
            if !offered.iter().any(|v| v == wanted) {
                println!(
                    "note: Debian no longer offers liburing-dev {wanted} (the version {BUDGETS} was recorded \
                     against); using the newest, {newest}. Re-record the ceilings: cargo xtask compare --record"
                );
                version = newest;
            }
            if !lib_of(&version).is_file() {
                let deb = apt.download("liburing-dev", &version, &dir.join("debs"))?;
                apt::extract(&deb, &unpacked(&version))?;
            }
        }
        if !headers.join("usr/include/linux/blkdev.h").is_file() {
            let (offered, newest) = newest_of(&pin.headers_package)?;
            let v = if offered.contains(&pin.headers_version) { pin.headers_version.clone() } else { newest };
            let deb = apt.download(&pin.headers_package, &v, &dir.join("debs"))?;
            apt::extract(&deb, &headers)?;
        }
    }
    Ok((version.clone(), vec![unpacked(&version).join("usr/include"), headers.join("usr/include")], lib_of(&version)))
}

/// Compiles the C workloads against the fetched liburing.
fn build_c(root: &Path, out: &Path, includes: &[PathBuf], lib: &Path) -> Result<()> {
    let mut cmd = Command::new("gcc");
    cmd.args(["-O2", "-Wall", "-Wextra", "-Werror", "-o"]).arg(out);
    for i in includes {
        cmd.arg("-I").arg(i);
    }
    cmd.arg(root.join(C_SOURCE)).arg(lib);
    util::output(&mut cmd)?;
    Ok(())
}

/// Instructions callgrind counts for one run.
fn instructions(exe: &Path, mode: &str, batch: u32, rounds: u32, file: &Path) -> Result<u64> {
    let out = Command::new("valgrind")
        .args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
        .arg(exe)
        .arg(mode)
        .arg(batch.to_string())
        .arg(rounds.to_string())
        .arg(file)
        .output()
        .map_err(|e| Failure::unavailable(format!("cannot run valgrind: {e}")))?;
    let text = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(Failure::new(format!("valgrind {} {mode} {batch} {rounds} failed:\n{text}", exe.display())));
    }
    collected(&text).ok_or_else(|| Failure::new(format!("no instruction count in callgrind's output:\n{text}")))
}

/// The count in callgrind's `==123== Collected : 1234567` line.
fn collected(stderr: &str) -> Option<u64> {
    stderr.lines().find_map(|l| l.split("Collected :").nth(1)).and_then(|n| n.trim().parse().ok())
}

/// Runs the two modes' measurements and memoizes them by (exe, mode,
/// batch, rounds): `nop-submit` serves three rows.
struct Runner<'a> {
    file: &'a Path,
    seen: Vec<(PathBuf, String, u32, u32, u64)>,
}

impl Runner<'_> {
    fn count(&mut self, exe: &Path, mode: &str, batch: u32, rounds: u32) -> Result<u64> {
        if let Some(s) = self.seen.iter().find(|s| s.0 == exe && s.1 == mode && s.2 == batch && s.3 == rounds) {
            return Ok(s.4);
        }
        let n = instructions(exe, mode, batch, rounds, self.file)?;
        self.seen.push((exe.to_path_buf(), mode.to_owned(), batch, rounds, n));
        Ok(n)
    }

    fn per_sqe(&mut self, exe: &Path, mode: &str) -> Result<f64> {
        let lo = self.count(exe, mode, BATCH_LO, SQE_ROUNDS)?;
        let hi = self.count(exe, mode, BATCH_HI, SQE_ROUNDS)?;
        Ok(slope(lo, hi, (BATCH_HI - BATCH_LO) * SQE_ROUNDS))
    }

    fn per_op(&mut self, method: Method, exe: &Path, modes: (&str, &str)) -> Result<f64> {
        match method {
            Method::PerSqe => self.per_sqe(exe, modes.0),
            Method::Minus => Ok(self.per_sqe(exe, modes.0)? - self.per_sqe(exe, modes.1)?),
            Method::PerRound { batch, rounds } => {
                let a = self.count(exe, modes.0, batch, rounds)?;
                let b = self.count(exe, modes.0, batch, 2 * rounds)?;
                Ok(slope(a, b, batch * rounds))
            }
        }
    }
}

fn slope(a: u64, b: u64, ops: u32) -> f64 {
    (b as f64 - a as f64) / f64::from(ops)
}

/// One measured row.
#[derive(Debug, Clone)]
struct Row {
    workload: Workload,
    liburing: f64,
    peer: Option<f64>,
    uring: f64,
}

impl Row {
    fn ratio(&self) -> f64 {
        self.uring / self.liburing
    }
}

/// A row's verdict against its budget.
#[derive(Debug, Clone, PartialEq)]
enum Verdict {
    /// Within the recorded ceiling (plus slack).
    Ok,
    /// Better than the ceiling by more than the slack: it could be lowered.
    Improved,
    /// Over the ceiling plus slack.
    Over,
    /// No budget line.
    Unbudgeted,
}

fn verdict(ratio: f64, budget: Option<&Budget>) -> Verdict {
    match budget {
        None => Verdict::Unbudgeted,
        Some(b) if ratio > b.ceiling * (1.0 + SLACK) => Verdict::Over,
        Some(b) if ratio < b.ceiling * (1.0 - SLACK) => Verdict::Improved,
        Some(_) => Verdict::Ok,
    }
}

/// The table, as printed (Markdown).
fn table(rows: &[Row], budgets: &Budgets) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| workload | liburing | io-uring crate | uring | uring / liburing | target | ceiling | to target |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let peer = r.peer.map_or_else(|| "—".to_owned(), |p| format!("{p:.1}"));
        let b = budgets.get(r.workload.id);
        let (target, ceiling, to_target) = match b {
            Some(b) => (
                format!("{:.2}", b.target),
                format!("{:.2}", b.ceiling),
                if r.ratio() <= b.target { "met".to_owned() } else { format!("{:.2}x over", r.ratio() / b.target) },
            ),
            None => ("—".into(), "—".into(), "—".into()),
        };
        let _ = writeln!(
            s,
            "| {} | {:.1} | {peer} | {:.1} | {:.2} | {target} | {ceiling} | {to_target} |",
            r.workload.label,
            r.liburing,
            r.uring,
            r.ratio()
        );
    }
    s
}

/// Entry point of `cargo xtask compare`.
pub(crate) fn run(args: &[String]) -> Result<()> {
    let args = parse_args(args)?;
    deps::require("compare", &[Need::Valgrind, Need::Apt, Need::CCompiler, Need::StaticBuild])?;
    let root = workspace_root();
    let budgets_text = util::read(&root.join(BUDGETS))?;
    let budgets = Budgets::parse(&budgets_text)?;
    let pin = Pin::parse(&util::read(&root.join(PIN_FILE))?)?;
    let target = target_dir(&root);
    let dir = target.join("xtask/compare");
    let (version, includes, lib) = fetch_liburing(&dir, &budgets.liburing, &pin)?;

    let c_exe = dir.join("liburing-workloads");
    build_c(&root, &c_exe, &includes, &lib)?;
    util::output(Command::new(env!("CARGO")).current_dir(&root).args([
        "build",
        "--quiet",
        "--release",
        "--locked",
        "-p",
        "uring-buffers",
        "--example",
        "compare",
    ]))?;
    let rust_exe = target.join("release/examples/compare");
    let file = dir.join("read-data");
    if std::fs::metadata(&file).map(|m| m.len() as usize).ok() != Some(FILE_LEN) {
        let data: Vec<u8> = (0..FILE_LEN).map(|i| (i * 7 + i / 4096) as u8).collect();
        std::fs::write(&file, data).map_err(|e| Failure::new(format!("cannot write {}: {e}", file.display())))?;
    }

    if let Some(k) = args.wall {
        if args.check || args.record {
            return Err(Failure::usage("compare: --wall measures time; it neither checks nor records"));
        }
        return wall(&c_exe, &rust_exe, &file, &version, k);
    }
    println!(
        "user-space instructions per operation (valgrind --tool=callgrind), liburing-dev {version} (Debian, static), \
         io-uring crate {}, rings SINGLE_ISSUER|DEFER_TASKRUN|NO_SQARRAY, 256/512 entries\n",
        peer_version(&root)
    );
    let mut runner = Runner { file: &file, seen: Vec::new() };
    let mut rows = Vec::new();
    for w in WORKLOADS {
        let liburing = runner.per_op(w.method, &c_exe, w.liburing)?;
        let peer = w.peer.map(|m| runner.per_op(w.method, &rust_exe, m)).transpose()?;
        let uring = runner.per_op(w.method, &rust_exe, w.uring)?;
        rows.push(Row { workload: *w, liburing, peer, uring });
    }
    print!("{}", table(&rows, &budgets));
    println!(
        "\nper SQE: slope over batches of {BATCH_LO} to {BATCH_HI} NOPs (CQE_SKIP_SUCCESS) at {SQE_ROUNDS} submits; \
         reap per CQE: the round trip's slope minus that; reads: QD{QD}, {READ_ROUNDS} vs {} rounds, submit and \
         reap included; recv: {RECV_ROUNDS} vs {} messages, write, submit_and_wait, reap, take and recycle included; echo: per request, the \
         clients' write and read included. \
         Targets from issue 13; ceiling: the ratio recorded in {BUDGETS}; --check allows +{:.0}%.",
        2 * READ_ROUNDS,
        2 * RECV_ROUNDS,
        SLACK * 100.0
    );
    if version != budgets.liburing {
        println!("note: the ceilings were recorded against liburing-dev {}, this run used {version}", budgets.liburing);
    }

    if args.record {
        let measured: Vec<(String, f64)> = rows.iter().map(|r| (r.workload.id.to_owned(), r.ratio())).collect();
        util::write(&root.join(BUDGETS), &Budgets::record(&budgets_text, &version, &measured))?;
        println!("recorded these ratios as the ceilings in {BUDGETS}");
    }
    if args.check {
        let mut over = Vec::new();
        for r in &rows {
            let b = budgets.get(r.workload.id);
            match verdict(r.ratio(), b) {
                Verdict::Over => over.push(format!(
                    "{} ({}): {:.3} of liburing, ceiling {:.2} (+{:.0}%: {:.3})",
                    r.workload.label,
                    r.workload.id,
                    r.ratio(),
                    b.map_or(0.0, |b| b.ceiling),
                    SLACK * 100.0,
                    b.map_or(0.0, |b| b.ceiling * (1.0 + SLACK))
                )),
                Verdict::Improved => println!(
                    "note: {} ({}) improved to {:.3} from its ceiling {:.2}: lower it (cargo xtask compare --record)",
                    r.workload.label,
                    r.workload.id,
                    r.ratio(),
                    b.map_or(0.0, |b| b.ceiling)
                ),
                Verdict::Unbudgeted => over.push(format!("{}: no line in {BUDGETS}", r.workload.id)),
                Verdict::Ok => {}
            }
        }
        if !over.is_empty() {
            return Err(Failure::new(format!("compare --check: over budget:\n  {}", over.join("\n  "))));
        }
        println!("compare --check: every path within its recorded ceiling (+{:.0}%)", SLACK * 100.0);
    }
    Ok(())
}

/// Seconds one native run takes, pinned to `cpu`.
fn seconds(cpu: usize, exe: &Path, mode: &str, batch: u32, rounds: u32, file: &Path) -> Result<f64> {
    let start = std::time::Instant::now();
    let out = Command::new("taskset")
        .arg("-c")
        .arg(cpu.to_string())
        .arg(exe)
        .arg(mode)
        .arg(batch.to_string())
        .arg(rounds.to_string())
        .arg(file)
        .output()
        .map_err(|e| Failure::unavailable(format!("cannot run taskset (util-linux): {e}")))?;
    let t = start.elapsed().as_secs_f64();
    if !out.status.success() {
        return Err(Failure::new(format!(
            "{} {mode} {batch} {rounds} failed:\n{}",
            exe.display(),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(t)
}

/// Nanoseconds per operation of one wall-clock measurement (the callgrind
/// differences, with `WALL_SCALE` times the rounds).
fn wall_per_op(cpu: usize, method: Method, exe: &Path, modes: (&str, &str), file: &Path) -> Result<f64> {
    let per_sqe = |mode: &str| -> Result<f64> {
        let r = SQE_ROUNDS * WALL_SCALE;
        let lo = seconds(cpu, exe, mode, BATCH_LO, r, file)?;
        let hi = seconds(cpu, exe, mode, BATCH_HI, r, file)?;
        Ok((hi - lo) * 1e9 / f64::from((BATCH_HI - BATCH_LO) * r))
    };
    match method {
        Method::PerSqe => per_sqe(modes.0),
        Method::Minus => Ok(per_sqe(modes.0)? - per_sqe(modes.1)?),
        Method::PerRound { batch, rounds } => {
            let r = rounds * WALL_SCALE;
            let a = seconds(cpu, exe, modes.0, batch, r, file)?;
            let b = seconds(cpu, exe, modes.0, batch, 2 * r, file)?;
            Ok((b - a) * 1e9 / f64::from(batch * r))
        }
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

/// `cargo xtask compare --wall K`: K interleaved rounds, pinned to one CPU;
/// per workload the median of the per-round ratios to liburing, and their
/// spread.
fn wall(c_exe: &Path, rust_exe: &Path, file: &Path, version: &str, k: u32) -> Result<()> {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let cpu = cpus - 1;
    println!(
        "wall-clock per operation (ns), liburing-dev {version}: {k} interleaved rounds pinned to CPU {cpu} \
         (taskset), each a difference of two native runs ({WALL_SCALE}x the callgrind runs' operations); \
         ratios are medians of per-round ratios, with their min..max\n"
    );
    /// Per workload, one entry per round: uring / liburing, peer /
    /// liburing, liburing's ns, uring's ns.
    type Samples = (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>);
    let mut acc: Vec<Samples> = vec![Default::default(); WORKLOADS.len()];
    for round in 0..k {
        for (w, a) in WORKLOADS.iter().zip(&mut acc) {
            // Rotate who goes first each round.
            let mut order: Vec<u8> = vec![0, 1, 2];
            order.rotate_left((round % 3) as usize);
            let (mut lib, mut peer, mut ours) = (0.0, None, 0.0);
            for who in order {
                match who {
                    0 => lib = wall_per_op(cpu, w.method, c_exe, w.liburing, file)?,
                    1 => {
                        if let Some(m) = w.peer {
                            peer = Some(wall_per_op(cpu, w.method, rust_exe, m, file)?);
                        }
                    }
                    _ => ours = wall_per_op(cpu, w.method, rust_exe, w.uring, file)?,
                }
            }
            a.0.push(ours / lib);
            if let Some(p) = peer {
                a.1.push(p / lib);
            }
            a.2.push(lib);
            a.3.push(ours);
        }
        eprintln!("wall: round {} of {k} done", round + 1);
    }
    println!(
        "| workload | liburing ns | uring ns | uring / liburing (min..max) | io-uring crate / liburing (min..max) |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (w, a) in WORKLOADS.iter().zip(&mut acc) {
        let spread = |v: &mut Vec<f64>| -> String {
            if v.is_empty() {
                return "—".into();
            }
            let (lo, hi) = (v.iter().copied().fold(f64::MAX, f64::min), v.iter().copied().fold(f64::MIN, f64::max));
            format!("{:.2} ({lo:.2}..{hi:.2})", median(v))
        };
        let (u, p) = (spread(&mut a.0), spread(&mut a.1));
        println!("| {} | {:.1} | {:.1} | {u} | {p} |", w.label, median(&mut a.2), median(&mut a.3));
    }
    println!(
        "\nreap per CQE is a difference of two differences: its wall-clock ratio is noise-dominated. \
         Shared machines are noisy: read the spread before the median."
    );
    Ok(())
}

/// The io-uring crate's version in Cargo.lock.
fn peer_version(root: &Path) -> String {
    let lock = util::read(&root.join("Cargo.lock")).unwrap_or_default();
    lock.split("[[package]]")
        .find(|p| p.contains("name = \"io-uring\""))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = ")))
        .map(|v| v.trim_matches('"').to_owned())
        .unwrap_or_else(|| "?".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_budgets_parse_and_name_every_workload() {
        let b = Budgets::parse(&util::read(&workspace_root().join(BUDGETS)).unwrap()).unwrap();
        for w in WORKLOADS {
            let line = b.get(w.id).unwrap_or_else(|| panic!("{} has no budget", w.id));
            assert!(line.target > 0.0 && line.ceiling > 0.0, "{line:?}");
        }
        assert!(!b.liburing.is_empty());
    }

    #[test]
    fn budgets_parse_and_refuse_garbage() {
        let b = Budgets::parse("# c\nliburing = 2.15-1\nnop-push 1.00 1.40 # typed\n").unwrap();
        assert_eq!(b.liburing, "2.15-1");
        assert_eq!(b.rows, vec![Budget { id: "nop-push".into(), target: 1.0, ceiling: 1.4 }]);
        assert!(Budgets::parse("nop-push 1.00 1.40\n").is_err(), "no liburing line");
        assert!(Budgets::parse("liburing = 1\nnop-push 1.00\n").is_err());
        assert!(Budgets::parse("liburing = 1\nnop-push 1.00 x\n").is_err());
        assert!(Budgets::parse("liburing = 1\nnope 1.00 1.00\n").is_err());
    }

    #[test]
    fn record_rewrites_only_the_ceilings_and_version() {
        let text = "# head\nliburing = 2.14-1\nnop-push 1.00 1.40 # typed\nread-raw 1.10 2.00\nreap-slots 1 1\n";
        let out = Budgets::record(text, "2.15-1", &[("nop-push".into(), 1.2345), ("reap-slots".into(), 0.5)]);
        assert_eq!(
            out,
            "# head\nliburing = 2.15-1\nnop-push           1.00   1.24    # typed\nread-raw 1.10 2.00\n\
             reap-slots         1      0.50\n"
        );
        assert_eq!(Budgets::parse(&out).unwrap().get("nop-push").unwrap().ceiling, 1.24);
    }

    #[test]
    fn the_ratchet_allows_two_percent() {
        let b = Budget { id: "x".into(), target: 1.0, ceiling: 1.5 };
        assert_eq!(verdict(1.5, Some(&b)), Verdict::Ok);
        assert_eq!(verdict(1.529, Some(&b)), Verdict::Ok);
        assert_eq!(verdict(1.531, Some(&b)), Verdict::Over);
        assert_eq!(verdict(1.46, Some(&b)), Verdict::Improved);
        assert_eq!(verdict(1.0, None), Verdict::Unbudgeted);
    }

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn callgrind_count_and_slopes() {
        assert_eq!(collected("==1== Events : Ir\n==1== Collected : 123456\n"), Some(123_456));
        assert_eq!(collected("nothing"), None);
        assert_eq!(slope(1000, 3000, 100), 20.0);
    }

    #[test]
    fn arguments() {
        let a = parse_args(&["--check".into(), "--record".into()]).unwrap();
        assert!(a.check && a.record && a.wall.is_none());
        assert_eq!(parse_args(&["--wall".into()]).unwrap().wall, Some(WALL_ROUNDS));
        assert_eq!(parse_args(&["--wall=9".into()]).unwrap().wall, Some(9));
        assert_eq!(parse_args(&["--wall=0".into()]).unwrap_err().code, 2);
        assert_eq!(parse_args(&["--bogus".into()]).unwrap_err().code, 2);
    }
}
