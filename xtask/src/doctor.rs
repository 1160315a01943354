//! `cargo xtask doctor`: is io_uring usable on this machine, and if not,
//! what to fix.
//!
//! Prints the kernel release against the 6.18 baseline, the
//! `kernel.io_uring_disabled` sysctl, the locked-memory limit, seccomp, the
//! setup flags and opcodes the kernel supports, then runs a short self test
//! (NOPs, a file written and read back, a linked timeout, a shared ring
//! driven from two threads). Exits 0 when io_uring is usable (warnings
//! allowed), 1 when it is not.

use std::fmt::Display;
use std::io::Write as _;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use uring_core::{CqeSlot, Error, Options, Ring, SharedRing, Sqe, SqeFlags, sys};

use crate::util::{Failure, Result};

/// One row's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Ok,
    Info,
    Warn,
    Fail,
}

impl Level {
    fn tag(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Info => "--",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        }
    }
}

/// The report: rows printed as they are found, the worst level kept.
#[derive(Debug, Default)]
struct Report {
    worst: Option<(Level, String)>,
}

impl Report {
    fn row(&mut self, level: Level, what: &str, value: impl Display, advice: &str) {
        let value = value.to_string();
        println!("  {:<5} {:<28} {}", level.tag(), what, value);
        if !advice.is_empty() && level >= Level::Warn {
            println!("        {:<28} -> {}", "", advice);
        }
        if level == Level::Fail && self.worst.as_ref().is_none_or(|(l, _)| *l < Level::Fail) {
            let reason = if advice.is_empty() { format!("{what}: {value}") } else { format!("{what}: {advice}") };
            self.worst = Some((Level::Fail, reason));
        }
    }

    fn failed(&self) -> Option<&str> {
        self.worst.as_ref().filter(|(l, _)| *l == Level::Fail).map(|(_, r)| r.as_str())
    }
}

fn section(title: &str) {
    println!("\n{title}");
}

pub(crate) fn run(args: &[String]) -> Result<()> {
    if let Some(a) = args.first() {
        return Err(Failure::usage(format!("doctor takes no arguments (got `{a}`)")));
    }
    let mut r = Report::default();
    println!("uring doctor: can this machine run io_uring, and what does its kernel offer?");

    section("Machine");
    machine(&mut r);

    let ring = match Ring::new(Options::small()) {
        Ok(ring) => Some(ring),
        Err(e) => {
            r.row(Level::Fail, "ring setup", &e, "see the message above and SETUP.md");
            None
        }
    };

    if let Some(mut ring) = ring {
        section("Setup flags (each probed alone)");
        setup_flags();
        section("Opcodes (IORING_REGISTER_PROBE)");
        opcodes(&ring);
        section("Self test");
        match ring.start() {
            Ok(()) => self_test(&mut r, &mut ring),
            Err(e) => r.row(Level::Fail, "start", &e, "IORING_REGISTER_ENABLE_RINGS failed"),
        }
        shared_test(&mut r);
    }

    println!();
    match r.failed() {
        None => {
            println!("verdict: io_uring is usable on this machine.");
            Ok(())
        }
        Some(reason) => {
            println!("verdict: io_uring is NOT usable here: {reason}");
            Err(Failure::new("io_uring is not usable on this machine (see the verdict above)"))
        }
    }
}

fn machine(r: &mut Report) {
    let release = uring_core::kernel_release();
    match uring_core::parse_release(&release) {
        Some(v) if v >= uring_core::BASELINE => r.row(Level::Ok, "kernel", &release, ""),
        Some(_) => r.row(Level::Fail, "kernel", &release, "uring needs Linux 6.18 or later (SETUP.md §1)"),
        None => r.row(Level::Warn, "kernel", &release, "cannot parse the release; uring needs 6.18+"),
    }

    match read("/proc/sys/kernel/io_uring_disabled").as_deref() {
        Some("0") => r.row(Level::Ok, "kernel.io_uring_disabled", "0 (allowed for everyone)", ""),
        Some("1") => {
            let group = read("/proc/sys/kernel/io_uring_group").unwrap_or_else(|| "?".into());
            r.row(
                Level::Warn,
                "kernel.io_uring_disabled",
                format!("1 (only root and group {group})"),
                "unprivileged users outside that group get EPERM (SETUP.md §2)",
            )
        }
        Some(v @ "2") => r.row(
            Level::Fail,
            "kernel.io_uring_disabled",
            format!("{v} (disabled)"),
            "sysctl -w kernel.io_uring_disabled=0 (SETUP.md §2)",
        ),
        Some(v) => r.row(Level::Warn, "kernel.io_uring_disabled", v, "unknown value"),
        None => r.row(Level::Info, "kernel.io_uring_disabled", "absent (kernel older than 6.6)", ""),
    }

    let (soft, hard) = memlock();
    let show = |v: u64| if v == libc::RLIM_INFINITY { "unlimited".to_string() } else { format!("{} KiB", v / 1024) };
    const WANT: u64 = 64 << 20;
    let level = if soft == libc::RLIM_INFINITY || soft >= WANT || is_root() { Level::Ok } else { Level::Warn };
    let note = if is_root() { " (root: CAP_IPC_LOCK, not enforced)" } else { "" };
    r.row(
        level,
        "RLIMIT_MEMLOCK",
        format!("soft {} / hard {}{note}", show(soft), show(hard)),
        "registered buffers beyond this fail with ENOMEM; raise it (SETUP.md §3)",
    );

    // The ring memory of the default options (Options::default()), which
    // the kernel accounts as locked memory.
    let defaults = Options::default();
    match defaults.memory_size() {
        Ok(bytes) => r.row(
            Level::Info,
            "ring memory (default opts)",
            format!("{} KiB ({} SQ entries, rings + SQEs)", bytes / 1024, defaults_entries()),
            "",
        ),
        Err(e) => r.row(Level::Info, "ring memory (default opts)", format!("unknown: {e}"), ""),
    }

    let seccomp = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Seccomp:").map(|v| v.trim().to_owned())));
    match seccomp.as_deref() {
        Some("0") | None => r.row(Level::Ok, "seccomp", seccomp.as_deref().unwrap_or("unknown"), ""),
        Some(v) => r.row(
            Level::Warn,
            "seccomp",
            format!("mode {v} (a filter is active)"),
            "a container profile may block io_uring (SETUP.md §4)",
        ),
    }
    let container = ["/.dockerenv", "/run/.containerenv"].iter().find(|p| std::path::Path::new(p).exists());
    r.row(Level::Info, "container", container.map_or("none detected", |p| p), "");
}

/// The SQ size of `Options::default()`.
fn defaults_entries() -> u32 {
    uring_core::Entries::MEDIUM
}

fn setup_flags() {
    let flags = uring_core::probe_setup_flags();
    for f in flags {
        // The flags that cannot be probed alone are tried through the
        // options that use them.
        let supported = f.supported.or_else(|| match f.flag {
            sys::IORING_SETUP_NO_MMAP => Some(Ring::new(Options::small().no_mmap(true)).is_ok()),
            sys::IORING_SETUP_ATTACH_WQ => {
                let first = Ring::new(Options::small()).ok()?;
                Some(Ring::new(Options::small().attach_wq(first.as_raw_fd())).is_ok())
            }
            _ => None,
        });
        let state = match supported {
            Some(true) => "yes",
            Some(false) => "no",
            None => "not probed (uring does not use it)",
        };
        println!("  {:<5} {:<34} {}", if supported == Some(true) { "ok" } else { "--" }, f.name, state);
    }
}

fn opcodes(ring: &Ring) {
    let f = ring.features();
    let ops: Vec<_> = f.opcodes().collect();
    let yes = ops.iter().filter(|o| o.2).count();
    println!("  {} of {} opcodes this build knows are supported (last_op = {})", yes, ops.len(), f.last_op());
    for chunk in ops.chunks(3) {
        let line: Vec<String> = chunk
            .iter()
            .map(|(op, name, has)| {
                format!("{:>3} {:<26}{}", op, name.trim_start_matches("IORING_OP_"), if *has { "yes" } else { "no " })
            })
            .collect();
        println!("  {}", line.join("  "));
    }
    println!("  features: {:?}", f.feature_flags());
    println!(
        "  ring: {} SQ / {} CQ entries, {}-byte SQEs, {:?} CQEs",
        f.sq_entries(),
        f.cq_entries(),
        f.sqe_size(),
        f.cqe_size()
    );
    match uring_core::query::opcodes() {
        Ok(q) => println!(
            "  query: {} request, {} register, {} query opcodes; BPF filters {}",
            q.request_opcodes,
            q.register_opcodes,
            q.query_opcodes,
            if q.knows_register_op(uring_core::sys::IORING_REGISTER_BPF_FILTER) { "yes" } else { "no (7.0+)" }
        ),
        Err(e) => println!("  query: {e}"),
    }
}

/// One self-test step: a description of what it saw, or why it failed.
type Check = fn(&mut Ring) -> std::result::Result<String, String>;

fn self_test(r: &mut Report, ring: &mut Ring) {
    let checks: [(&str, Check); 3] =
        [("64 NOPs in one batch", nops), ("file write + read back", file_io), ("linked timeout", linked_timeout)];
    for (name, check) in checks {
        match check(ring) {
            Ok(detail) => r.row(Level::Ok, name, detail, ""),
            Err(why) => r.row(Level::Fail, name, &why, "io_uring accepted the ring but cannot run operations"),
        }
    }
}

/// Waits for `n` completions (5 s at most) and returns (user_data, res).
fn reap(ring: &mut Ring, n: usize) -> std::result::Result<Vec<(u64, i32)>, String> {
    let mut out = Vec::new();
    let mut slots = [CqeSlot::EMPTY; 64];
    while out.len() < n {
        match ring.wait_for(&mut slots, 1, Some(Duration::from_secs(5))) {
            Ok(done) => out.extend(done.iter().map(|c| (c.user_data(), c.res()))),
            Err(Error::WouldBlock) => return Err(format!("timed out after {} of {n} completions", out.len())),
            Err(e) => return Err(e.to_string()),
        }
    }
    out.sort();
    Ok(out)
}

fn nops(ring: &mut Ring) -> std::result::Result<String, String> {
    for i in 0..64 {
        let mut sqe = Sqe::new(sys::IORING_OP_NOP as u8);
        sqe.user_data = i;
        // SAFETY: a NOP names no memory.
        unsafe { ring.push(&sqe) }.map_err(|e| e.to_string())?;
    }
    let submitted = ring.submit().map_err(|e| e.to_string())?;
    let got = reap(ring, 64)?;
    let want: Vec<(u64, i32)> = (0..64).map(|i| (i, 0)).collect();
    if got != want {
        return Err(format!("completions do not match the submissions: {got:?}"));
    }
    Ok(format!("{submitted} submitted with one enter, 64 reaped"))
}

fn file_io(ring: &mut Ring) -> std::result::Result<String, String> {
    let path = std::env::temp_dir().join(format!("uring-doctor-{}", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    let _ = std::fs::remove_file(&path);
    let data: Vec<u8> = (0..8192u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut back = vec![0u8; data.len()];

    let mut write = Sqe::new(sys::IORING_OP_WRITE as u8);
    write.fd = file.as_raw_fd();
    write.set_addr(data.as_ptr() as u64);
    write.len = data.len() as u32;
    write.set_off(0);
    write.user_data = 1;
    write.set_sqe_flags(SqeFlags::IO_LINK);
    let mut read = Sqe::new(sys::IORING_OP_READ as u8);
    read.fd = file.as_raw_fd();
    read.set_addr(back.as_mut_ptr() as u64);
    read.len = back.len() as u32;
    read.set_off(0);
    read.user_data = 2;
    // SAFETY: `data`, `back` and `file` outlive both operations: `reap`
    // below waits for both CQEs (or the ring is stopped by the caller on
    // error, which cancels and waits) before they are dropped.
    unsafe { ring.push_all(&[write, read]) }.map_err(|e| e.to_string())?;
    let got = reap(ring, 2);
    let got = match got {
        Ok(got) => got,
        Err(e) => {
            ring.stop();
            return Err(e);
        }
    };
    if got != [(1, data.len() as i32), (2, data.len() as i32)] {
        return Err(format!("unexpected results (user_data, res): {got:?}"));
    }
    if back != data {
        return Err("the bytes read back differ from the bytes written".into());
    }
    Ok(format!("{} bytes written and read back through a linked pair", data.len()))
}

fn linked_timeout(ring: &mut Ring) -> std::result::Result<String, String> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe2: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: pipe2 just returned these descriptors; we own them.
    let (rx, _tx) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let mut buf = [0u8; 16];
    let ts = sys::__kernel_timespec { tv_sec: 0, tv_nsec: 50_000_000 };

    let mut read = Sqe::new(sys::IORING_OP_READ as u8);
    read.fd = rx.as_raw_fd();
    read.set_addr(buf.as_mut_ptr() as u64);
    read.len = buf.len() as u32;
    read.set_off(u64::MAX);
    read.user_data = 1;
    read.set_sqe_flags(SqeFlags::IO_LINK);
    let mut timeout = Sqe::new(sys::IORING_OP_LINK_TIMEOUT as u8);
    timeout.set_addr(&ts as *const sys::__kernel_timespec as u64);
    timeout.len = 1;
    timeout.user_data = 2;
    let started = std::time::Instant::now();
    // SAFETY: `buf`, `ts` and the pipe outlive both operations: `reap`
    // waits for both CQEs, and on failure the ring is stopped (which
    // cancels and waits) before they are dropped.
    unsafe { ring.push_all(&[read, timeout]) }.map_err(|e| e.to_string())?;
    let got = match reap(ring, 2) {
        Ok(got) => got,
        Err(e) => {
            ring.stop();
            return Err(e);
        }
    };
    let elapsed = started.elapsed();
    // The timeout fires (-ETIME) and cancels the read it guards (-ECANCELED).
    if got != [(1, -libc::ECANCELED), (2, -libc::ETIME)] {
        return Err(format!("expected the read cancelled and the timeout fired, got {got:?}"));
    }
    Ok(format!("a pipe read with no data was cancelled by its 50 ms timeout after {} ms", elapsed.as_millis()))
}

fn shared_test(r: &mut Report) {
    let result = (|| -> std::result::Result<String, String> {
        let mut ring = SharedRing::new(Options::small()).map_err(|e| e.to_string())?;
        ring.start().map_err(|e| e.to_string())?;
        let ring = Arc::new(ring);
        let threads: Vec<_> = (0..2u64)
            .map(|t| {
                let ring = ring.clone();
                std::thread::spawn(move || -> std::result::Result<(), String> {
                    for i in 0..32 {
                        let mut sqe = Sqe::new(sys::IORING_OP_NOP as u8);
                        sqe.user_data = t << 32 | i;
                        // SAFETY: a NOP names no memory.
                        unsafe { ring.push(&sqe) }.map_err(|e| e.to_string())?;
                    }
                    ring.submit().map(drop).map_err(|e| e.to_string())
                })
            })
            .collect();
        for t in threads {
            t.join().map_err(|_| "a submitting thread panicked".to_string())??;
        }
        let mut seen = std::collections::HashSet::new();
        let mut slots = [CqeSlot::EMPTY; 64];
        while seen.len() < 64 {
            match ring.wait_for(&mut slots, 1, Some(Duration::from_secs(5))) {
                Ok(n) => seen.extend(slots[..n].iter().map(|s| s.cqe().user_data())),
                Err(e) => return Err(format!("after {} completions: {e}", seen.len())),
            }
        }
        Ok("64 NOPs from two threads, each reaped once".into())
    })();
    match result {
        Ok(detail) => r.row(Level::Ok, "shared ring, two threads", detail, ""),
        Err(why) => r.row(Level::Fail, "shared ring, two threads", &why, "COOP_TASKRUN rings do not work here"),
    }
    let _ = std::io::stdout().flush();
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_owned())
}

fn memlock() -> (u64, u64) {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `lim` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } != 0 {
        return (0, 0);
    }
    (lim.rlim_cur, lim.rlim_max)
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_failure_decides_the_verdict() {
        let mut r = Report::default();
        r.row(Level::Warn, "a", "x", "advice a");
        assert_eq!(r.failed(), None, "warnings do not make io_uring unusable");
        r.row(Level::Fail, "b", "y", "fix b");
        r.row(Level::Fail, "c", "z", "fix c");
        assert_eq!(r.failed(), Some("b: fix b"));
    }
}
