//! What boots: the static test or bench binaries, busybox and the exit
//! helper packed into an initramfs, and QEMU running it on one kernel.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::deps::BUSYBOX;
use crate::util::{self, Failure, Result};

use super::report::MARK;

/// The only target a static build can use here: the host's own, with
/// glibc's static libraries (no other toolchain can be fetched).
pub(crate) const TARGET: &str = "x86_64-unknown-linux-gnu";
/// The one workspace member whose tests do not run: its own.
const NOT_TESTED: &str = "xtask";
/// The source of `/bin/vm-exit` (see the file).
const EXIT_HELPER_SRC: &str = include_str!("guest-exit.rs");
/// Written to isa-debug-exit: 16 + overall status (0 passed, 1 failed);
/// QEMU exits with (value << 1) | 1.
const EXIT_BASE: u8 = 16;
/// Seconds one test binary may run in the guest before it is killed (and
/// reported), so that one hung test does not cost the whole boot.
pub(crate) const TEST_BINARY_TIMEOUT: u32 = 300;
/// Size of the guest's scratch disk (sparse on the host).
const SCRATCH_BYTES: u64 = 512 << 20;

/// Size of the guest's raw NVMe disk for passthrough tests (serial
/// `uring-passthru`, no filesystem; sparse on the host).
const PASSTHRU_BYTES: u64 = 64 << 20;

/// What the binaries are: how they are built and how each one runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// libtest harnesses (`cargo test --no-run --tests`: unit, integration
    /// and example tests), run with `--show-output`.
    Tests,
    /// `[[bench]]` targets (`cargo bench --no-run --bench '*'`, the bench
    /// profile), run with `--bench` as `cargo bench` runs them.
    Benches,
}

impl Kind {
    /// The argument each binary gets before the user's.
    fn lead(self) -> &'static str {
        match self {
            Kind::Tests => "--show-output",
            Kind::Benches => "--bench",
        }
    }

    /// The task that generated an init script.
    fn task(self) -> &'static str {
        match self {
            Kind::Tests => "vm-test",
            Kind::Benches => "vm-bench",
        }
    }
}

/// How every binary of one boot (or host run) is invoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invocation {
    pub(crate) kind: Kind,
    /// The user's arguments, after the kind's own ([`Kind::lead`]).
    pub(crate) args: Vec<String>,
    /// Seconds one binary may run in the guest before it is killed.
    pub(crate) limit: u32,
}

/// One test or bench binary.
#[derive(Debug, Clone)]
pub(crate) struct Binary {
    /// `crate/target` (`uring-core/ring`, `uring-core/lib`,
    /// `uring-ops/example:poll`, `uring-zcrx/bench:throughput`).
    pub(crate) label: String,
    /// The built executable.
    pub(crate) path: PathBuf,
    /// Its package's directory: the working directory `cargo test` and
    /// `cargo bench` give it, and `CARGO_MANIFEST_DIR`.
    pub(crate) dir: PathBuf,
}

/// Builds every test binary of the workspace's library crates (all members
/// but xtask, so a new crate joins the matrix by existing) statically and
/// lists them.
pub(crate) fn build_tests(root: &Path) -> Result<Vec<Binary>> {
    build(root, Kind::Tests)
}

/// Builds every `[[bench]]` target of the workspace's library crates
/// statically, in the bench profile, and lists them.
pub(crate) fn build_benches(root: &Path) -> Result<Vec<Binary>> {
    build(root, Kind::Benches)
}

fn build(root: &Path, kind: Kind) -> Result<Vec<Binary>> {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(root);
    match kind {
        Kind::Tests => cmd.args(["test", "--no-run", "--tests"]),
        // Only the bench targets: `--benches` would add every library's
        // unit tests built as a bench harness.
        Kind::Benches => cmd.args(["bench", "--no-run", "--bench", "*"]),
    };
    cmd.args(["--message-format=json-render-diagnostics", "--target", TARGET])
        .args(["--workspace", "--exclude", NOT_TESTED])
        // The target-specific build directory keeps the host's artifacts
        // valid; these flags reach only the target's crates. Debug info is
        // stripped (panic messages keep file:line, backtraces keep function
        // names): the initramfs is a third of the size.
        .env("CARGO_ENCODED_RUSTFLAGS", "-Ctarget-feature=+crt-static\x1f-Cstrip=debuginfo")
        .env_remove("RUSTFLAGS")
        .stderr(Stdio::inherit());
    let what = match kind {
        Kind::Tests => "test",
        Kind::Benches => "bench",
    };
    println!("building the workspace's {what} binaries statically (--target {TARGET}, +crt-static)");
    let text = util::output(&mut cmd)?;
    let mut bins = Vec::new();
    for line in text.lines().filter(|l| l.contains("\"reason\":\"compiler-artifact\"")) {
        if let Some(bin) = artifact(line, kind) {
            bins.push(bin);
        }
    }
    bins.sort_by(|a, b| a.label.cmp(&b.label));
    bins.dedup_by(|a, b| a.label == b.label);
    if bins.is_empty() {
        return Err(Failure::new(format!("cargo built no {what} binaries")));
    }
    for bin in &bins {
        if !is_static(&bin.path)? {
            return Err(Failure::new(format!("{} is dynamically linked despite +crt-static", bin.path.display())));
        }
    }
    Ok(bins)
}

/// A test (or, for [`Kind::Benches`], a bench) executable from one
/// `compiler-artifact` message, if it is one.
fn artifact(line: &str, kind: Kind) -> Option<Binary> {
    // The profile's `test` flag, not the target's: a test harness build.
    // Bench targets have it too (harness or not), and the target's own
    // `test` flag is false for them.
    let profile = line.split("\"profile\":{").nth(1)?.split('}').next()?;
    if !profile.contains("\"test\":true") {
        return None;
    }
    let exe = json_str(line, "executable")?;
    let manifest = json_str(line, "manifest_path")?;
    let krate = Path::new(&manifest).parent()?.file_name()?.to_str()?.to_owned();
    if krate == NOT_TESTED {
        return None;
    }
    let name = json_str(line, "name")?;
    let target_kind = line.split("\"kind\":[\"").nth(1)?.split('"').next()?;
    if kind == Kind::Benches && target_kind != "bench" {
        return None;
    }
    let label = match target_kind {
        "test" => format!("{krate}/{name}"),
        "lib" => format!("{krate}/lib"),
        other => format!("{krate}/{other}:{name}"),
    };
    let dir = Path::new(&manifest).parent()?.to_path_buf();
    Some(Binary { label, path: PathBuf::from(exe), dir })
}

/// The first string value of `"key":"..."` in a JSON line (cargo escapes
/// only `"` and `\` in paths and names).
fn json_str(line: &str, key: &str) -> Option<String> {
    let start = line.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let mut out = String::new();
    let mut chars = line[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => out.push(chars.next()?),
            c => out.push(c),
        }
    }
    None
}

/// True when the ELF file has no program interpreter (statically linked).
pub(crate) fn is_static(path: &Path) -> Result<bool> {
    let data = std::fs::read(path).map_err(|e| Failure::new(format!("cannot read {}: {e}", path.display())))?;
    let bad = || Failure::new(format!("{} is not a 64-bit ELF file", path.display()));
    if data.len() < 64 || &data[..4] != b"\x7fELF" || data[4] != 2 {
        return Err(bad());
    }
    let u16_at = |o: usize| u16::from_le_bytes([data[o], data[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(data[0x20..0x28].try_into().map_err(|_| bad())?) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    for i in 0..phnum {
        let at = phoff + i * phentsize;
        let p_type = data.get(at..at + 4).ok_or_else(bad)?;
        if p_type == 3u32.to_le_bytes() {
            return Ok(false); // PT_INTERP
        }
    }
    Ok(true)
}

/// Compiles `/bin/vm-exit` (static) into `dir`, unless it is up to date.
fn build_exit_helper(dir: &Path) -> Result<PathBuf> {
    let src = dir.join("guest-exit.rs");
    let exe = dir.join("vm-exit");
    if exe.exists() && std::fs::read_to_string(&src).is_ok_and(|s| s == EXIT_HELPER_SRC) {
        return Ok(exe);
    }
    util::write(&src, EXIT_HELPER_SRC)?;
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    util::output(
        Command::new(rustc)
            .args(["--edition", "2024", "-O", "-Cpanic=abort", "-Ctarget-feature=+crt-static", "--target", TARGET])
            .arg("-o")
            .arg(&exe)
            .arg(&src),
    )?;
    Ok(exe)
}

/// Quotes `arg` for the init script's `sh`.
fn sh_quote(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', r"'\''"))
}

/// The guest's `/init`: mounts, loopback, each binary between markers (run
/// as `inv` says), the end marker, then the status out through
/// isa-debug-exit.
fn init_script(bins: &[(String, String, String)], inv: &Invocation, tmp: &str) -> String {
    let args: String = inv.args.iter().map(|a| format!(" {}", sh_quote(a))).collect();
    let (task, lead, limit) = (inv.kind.task(), inv.kind.lead(), inv.limit);
    // Benches write through a pipe, as under `cargo bench | tee`: criterion
    // then neither redraws its progress lines nor colours them (the
    // console is a terminal), and the binary's status survives the pipe.
    let (bench_setup, pipe) = match inv.kind {
        Kind::Tests => (String::new(), ""),
        Kind::Benches => (
            format!(
                "# criterion's data (baselines) on the scratch disk.\nexport CRITERION_HOME={tmp}/criterion\nset -o \
                 pipefail\n"
            ),
            " 2>&1 | cat",
        ),
    };
    let mut s = format!(
        r#"#!/bin/busybox sh
# Generated by `cargo xtask {task}`.
/bin/busybox mkdir -p /proc /sys /dev /tmp /root
/bin/busybox mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
/bin/busybox --install -s /bin
export PATH=/bin HOME=/root TMPDIR={tmp} RUST_BACKTRACE=1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
# The temp dir on a real disk (ext4 on QEMU's NVMe scratch disk, formatted
# by the host), so that files have a page cache and extents as on a host;
# ext2 made here when the host could not format it; tmpfs otherwise.
# Two NVMe controllers probe in either order: the scratch disk is the one
# with serial uring-scratch (the other, uring-passthru, is a raw disk for
# the NVMe passthrough tests, which find it by its serial too).
mkdir -p {tmp}
i=0
disk=
while [ -z "$disk" ] && [ $i -lt 50 ]; do
  for c in /sys/class/nvme/nvme*; do
    n=${{c##*/}}
    # The controller's serial is padded with spaces to 20 bytes.
    s=$(cat $c/serial 2>/dev/null)
    [ "${{s%% *}}" = uring-scratch ] && [ -b /dev/${{n}}n1 ] && disk=/dev/${{n}}n1
  done
  [ -n "$disk" ] || usleep 100000
  i=$((i + 1))
done
if [ -n "$disk" ] && mount -t ext4 $disk {tmp} 2>/dev/null; then
  echo "{MARK} NOTE temp dir {tmp}: ext4 on the NVMe scratch disk"
elif [ -n "$disk" ] && mke2fs -q $disk >/dev/null 2>&1 && mount -t ext4 $disk {tmp}; then
  echo "{MARK} NOTE temp dir {tmp}: ext2 on the NVMe scratch disk (no extents: fallocate fails)"
else
  echo "{MARK} NOTE temp dir {tmp}: tmpfs (no scratch disk)"
fi
chmod 1777 {tmp}
mkdir -p /dev/shm && mount -t tmpfs -o mode=1777 tmpfs /dev/shm
ip link set lo up
{bench_setup}echo "{MARK} BEGIN $(uname -r)"
status=0
run() {{
  label=$1; shift
  echo "{MARK} RUN $label"
  timeout -s KILL {limit} "$@"{pipe}
  rc=$?
  [ "$rc" -ne 137 ] || echo "{MARK} KILLED $label by SIGKILL: its {limit} s limit, or out of memory"
  echo "{MARK} EXIT $label $rc"
  [ "$rc" -eq 0 ] || status=1
}}
"#
    );
    for (label, file, dir) in bins {
        s.push_str(&format!("cd {0} && export CARGO_MANIFEST_DIR={0}\n", sh_quote(dir)));
        s.push_str(&format!("run {} /tests/{file} {lead}{args}\n", sh_quote(label)));
    }
    s.push_str(&format!(
        r#"echo "{MARK} END $status"
sync
/bin/vm-exit $(({EXIT_BASE} + status))
echo "{MARK} vm-exit did not stop the VM; powering off"
poweroff -f
"#
    ));
    s
}

/// Builds `dir/initramfs.cpio` (uncompressed: TCG would spend longer
/// decompressing than QEMU spends loading) and returns its path.
pub(crate) fn initramfs(dir: &Path, bins: &[Binary], inv: &Invocation) -> Result<PathBuf> {
    if !Path::new(BUSYBOX).is_file() || !is_static(Path::new(BUSYBOX))? {
        return Err(Failure::unavailable(format!(
            "{BUSYBOX} is missing or dynamically linked: apt-get install busybox-static"
        )));
    }
    let helper = build_exit_helper(dir)?;
    let stage = dir.join("initramfs");
    if stage.exists() {
        std::fs::remove_dir_all(&stage).map_err(|e| Failure::new(format!("cannot clear {}: {e}", stage.display())))?;
    }
    for sub in ["bin", "tests", "proc", "sys", "dev", "tmp", "root"] {
        std::fs::create_dir_all(stage.join(sub)).map_err(|e| Failure::new(format!("cannot create {sub}: {e}")))?;
    }
    let place = |from: &Path, to: &Path| -> Result<()> {
        std::fs::hard_link(from, to)
            .or_else(|_| std::fs::copy(from, to).map(drop))
            .map_err(|e| Failure::new(format!("cannot place {} in the initramfs: {e}", from.display())))
    };
    place(Path::new(BUSYBOX), &stage.join("bin/busybox"))?;
    place(&helper, &stage.join("bin/vm-exit"))?;
    let mut listed = Vec::new();
    for bin in bins {
        let file: String =
            bin.label.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
        place(&bin.path, &stage.join("tests").join(&file))?;
        listed.push((bin.label.clone(), file, bin.dir.to_string_lossy().into_owned()));
    }
    // The source tree at its own absolute path: tests that read files of
    // their package (a README, fixtures) through CARGO_MANIFEST_DIR find
    // them as under `cargo test`.
    let root = crate::workspace_root();
    copy_tree(&root, &stage.join(root.strip_prefix("/").unwrap_or(&root)))?;
    let init = stage.join("init");
    // The scratch disk goes on /tmp unless the source tree lives there.
    let tmp = if root.starts_with("/tmp") { "/scratch" } else { "/tmp" };
    util::write(&init, &init_script(&listed, inv, tmp))?;
    std::fs::set_permissions(&init, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .map_err(|e| Failure::new(format!("cannot make {} executable: {e}", init.display())))?;
    // The file list, parents first, for cpio.
    let mut names = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(stage.join(&rel))
            .map_err(|e| Failure::new(format!("cannot list {}: {e}", stage.join(&rel).display())))?
            .flatten()
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let r = rel.join(entry.file_name());
            names.push(r.to_string_lossy().into_owned());
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(r);
            }
        }
    }
    let archive = dir.join("initramfs.cpio");
    let out = std::fs::File::create(&archive)
        .map_err(|e| Failure::new(format!("cannot create {}: {e}", archive.display())))?;
    let mut child = Command::new("cpio")
        .args(["-o", "-H", "newc", "-R", "0:0", "--quiet"])
        .current_dir(&stage)
        .stdin(Stdio::piped())
        .stdout(out)
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Failure::unavailable(format!("cannot run cpio (apt-get install cpio): {e}")))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(names.join("\n").as_bytes())
        .map_err(|e| Failure::new(format!("cannot feed cpio: {e}")))?;
    let done = child.wait_with_output().map_err(|e| Failure::new(format!("cpio: {e}")))?;
    if !done.status.success() {
        return Err(Failure::new(format!("cpio failed: {}", String::from_utf8_lossy(&done.stderr))));
    }
    Ok(archive)
}

/// Copies the workspace's files (not `target/` and not hidden directories)
/// into `dest`, hard-linking where it can.
fn copy_tree(src: &Path, dest: &Path) -> Result<()> {
    std::fs::create_dir_all(dest).map_err(|e| Failure::new(format!("cannot create {}: {e}", dest.display())))?;
    let entries = std::fs::read_dir(src).map_err(|e| Failure::new(format!("cannot list {}: {e}", src.display())))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let (from, to) = (entry.path(), dest.join(&name));
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_dir() {
            if name != "target" && !name.to_string_lossy().starts_with('.') {
                copy_tree(&from, &to)?;
            }
        } else if kind.is_file() {
            std::fs::hard_link(&from, &to)
                .or_else(|_| std::fs::copy(&from, &to).map(drop))
                .map_err(|e| Failure::new(format!("cannot copy {}: {e}", from.display())))?;
        }
    }
    Ok(())
}

/// How a boot ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ending {
    /// The guest wrote its status to isa-debug-exit (0 passed, 1 failed).
    Reported(u8),
    /// QEMU exited without a status from the guest (panic, power-off).
    NoReport(Option<i32>),
    /// Killed after the timeout.
    TimedOut,
}

/// Boots `kernel` with `initrd` under TCG, writing the serial console to
/// `log` and echoing progress lines (of `kind`'s binaries) prefixed by `tag`.
pub(crate) fn boot(
    kernel: &Path,
    initrd: &Path,
    log: &Path,
    timeout: Duration,
    tag: &str,
    kind: Kind,
) -> Result<Ending> {
    // A fresh, sparse scratch disk per boot, ext4 when e2fsprogs is here
    // (otherwise the guest makes ext2 with busybox).
    let scratch = initrd.with_file_name("scratch.img");
    std::fs::File::create(&scratch)
        .and_then(|f| f.set_len(SCRATCH_BYTES))
        .map_err(|e| Failure::new(format!("cannot create {}: {e}", scratch.display())))?;
    let formatted = ["mkfs.ext4", "/sbin/mkfs.ext4", "/usr/sbin/mkfs.ext4"].iter().any(|mkfs| {
        Command::new(mkfs)
            .args(["-q", "-F"])
            .arg(&scratch)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if !formatted {
        println!("  [{tag}] no mkfs.ext4 (e2fsprogs): the guest's temp dir will be ext2, without fallocate");
    }
    // A second, raw disk for NVMe passthrough (written through /dev/ngXnY);
    // discards punch holes in the file, so discarded blocks read as zeroes.
    let passthru = initrd.with_file_name("passthru.img");
    std::fs::File::create(&passthru)
        .and_then(|f| f.set_len(PASSTHRU_BYTES))
        .map_err(|e| Failure::new(format!("cannot create {}: {e}", passthru.display())))?;
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(["-accel", "tcg,thread=multi", "-cpu", "max", "-smp", "2", "-m", "1G"])
        .args(["-nographic", "-no-reboot", "-nic", "none"])
        .args(["-device", &format!("isa-debug-exit,iobase={:#x},iosize=0x04", 0xf4)])
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .arg("-drive")
        .arg(format!("file={},if=none,id=scratch,format=raw", scratch.display()))
        .args(["-device", "nvme,drive=scratch,serial=uring-scratch"])
        .arg("-drive")
        .arg(format!("file={},if=none,id=passthru,format=raw,discard=unmap", passthru.display()))
        .args(["-device", "nvme,drive=passthru,serial=uring-passthru"])
        .args(["-append", "console=ttyS0 panic=-1 oops=panic quiet rdinit=/init nvme.poll_queues=1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| {
        Failure::unavailable(format!("cannot run qemu-system-x86_64 (apt-get install qemu-system-x86): {e}"))
    })?;
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let mut file =
        std::fs::File::create(log).map_err(|e| Failure::new(format!("cannot create {}: {e}", log.display())))?;
    let (tx, rx) = mpsc::channel::<()>();
    let mut progress = Progress::new(tag, kind);
    let reader = std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout);
        let mut buf = Vec::new();
        while lines.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
            let _ = file.write_all(&buf);
            let line = String::from_utf8_lossy(&buf);
            progress.line(line.trim_end());
            buf.clear();
        }
        let _ = file.flush();
        drop(tx);
    });
    let err_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut text);
        text
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| Failure::new(format!("waiting for qemu: {e}")))? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        // Wakes early when the console closes.
        let _ = rx.recv_timeout(Duration::from_millis(200));
    };
    let _ = reader.join();
    let qemu_err = err_reader.join().unwrap_or_default();
    if !qemu_err.trim().is_empty() {
        let mut f = std::fs::OpenOptions::new().append(true).open(log).ok();
        if let Some(f) = f.as_mut() {
            let _ = writeln!(f, "\n[qemu stderr]\n{qemu_err}");
        }
    }
    Ok(match status.map(|s| s.code()) {
        None => Ending::TimedOut,
        Some(Some(code)) if code & 1 == 1 && (code >> 1) >= i32::from(EXIT_BASE) && (code >> 1) <= 0xff => {
            Ending::Reported(((code >> 1) - i32::from(EXIT_BASE)) as u8)
        }
        Some(code) => Ending::NoReport(code),
    })
}

/// Echoes the lines that say where a run is.
struct Progress {
    tag: String,
    kind: Kind,
    /// The benchmark criterion last said it started.
    bench: Option<String>,
    /// Its lines now compare with a saved baseline (after `change:`).
    change: bool,
}

impl Progress {
    fn new(tag: &str, kind: Kind) -> Self {
        Self { tag: tag.to_owned(), kind, bench: None, change: false }
    }

    fn line(&mut self, line: &str) {
        let tag = &self.tag;
        let line = line.trim_end_matches('\r');
        if let Some(at) = line.find(MARK) {
            let rest = &line[at + MARK.len()..];
            let mut words = rest.split_whitespace();
            match words.next() {
                Some("EXIT") => {
                    let label = words.next().unwrap_or("?");
                    let rc = words.next().unwrap_or("?");
                    println!(
                        "  [{tag}] {label}: {}",
                        if rc == "0" { "ok".to_owned() } else { format!("FAILED (exit {rc})") }
                    );
                }
                Some("BEGIN") => println!("  [{tag}] booted: {}", words.collect::<Vec<_>>().join(" ")),
                Some("NOTE" | "KILLED") => println!("  [{tag}] {}", rest.trim()),
                _ => {}
            }
        } else if line.contains("Kernel panic") || line.contains(" ... FAILED") {
            println!("  [{tag}] {}", line.trim());
        } else if self.kind == Kind::Benches {
            // criterion: `Benchmarking <id>[: <stage>]` on stderr, then
            // `<id>  time: [..]` (the id on a line of its own when long) and
            // `thrpt: [..]` on stdout; against a baseline, `change:` and the
            // same two lines again.
            if let Some(rest) = line.trim().strip_prefix("Benchmarking ") {
                self.bench = Some(rest.rsplit_once(": ").map_or(rest, |(id, _)| id).to_owned());
                self.change = false;
            } else if line.trim().starts_with("change:") {
                self.change = true;
            } else if let Some(at) = line.find("time:").or_else(|| line.find("thrpt:"))
                && line[at..].contains('[')
            {
                let change = if self.change { "change " } else { "" };
                println!("  [{tag}] {}: {change}{}", self.bench.as_deref().unwrap_or("?"), line[at..].trim());
            }
        }
    }
}

/// The same protocol, run directly on the host kernel: the output the
/// parser reads, as if from a VM's serial console.
pub(crate) fn run_on_host(bins: &[Binary], inv: &Invocation, log: &Path, tag: &str) -> Result<String> {
    let mut progress = Progress::new(tag, inv.kind);
    let mut text = format!("{MARK} BEGIN {}\n", uring_core::kernel_release());
    let mut status = 0;
    for bin in bins {
        text.push_str(&format!("{MARK} RUN {}\n", bin.label));
        let mut cmd = Command::new(&bin.path);
        cmd.current_dir(&bin.dir)
            .env("CARGO_MANIFEST_DIR", &bin.dir)
            .arg(inv.kind.lead())
            .args(&inv.args)
            .stdin(Stdio::null());
        let cannot = |e: std::io::Error| Failure::new(format!("cannot run {}: {e}", bin.path.display()));
        let rc = match inv.kind {
            Kind::Tests => {
                let out = cmd.output().map_err(cannot)?;
                text.push_str(&String::from_utf8_lossy(&out.stdout));
                text.push_str(&String::from_utf8_lossy(&out.stderr));
                out.status
            }
            Kind::Benches => {
                // One pipe for both streams, in the order they were
                // written, echoed as they come (a bench runs for minutes).
                let (reader, writer) = std::io::pipe().map_err(cannot)?;
                cmd.stdout(writer.try_clone().map_err(cannot)?).stderr(writer);
                let mut child = cmd.spawn().map_err(cannot)?;
                drop(cmd); // the parent's copies of the write end
                let mut lines = BufReader::new(reader);
                let mut buf = Vec::new();
                while lines.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
                    let line = String::from_utf8_lossy(&buf);
                    progress.line(line.trim_end());
                    text.push_str(&line);
                    buf.clear();
                }
                child.wait().map_err(cannot)?
            }
        };
        let rc = rc.code().unwrap_or(128);
        if rc != 0 {
            status = 1;
        }
        let exit = format!("{MARK} EXIT {} {rc}", bin.label);
        progress.line(&exit);
        text.push_str(&format!("\n{exit}\n"));
    }
    text.push_str(&format!("{MARK} END {status}\n"));
    util::write(log, &text)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::tests::strings;

    #[test]
    fn artifacts_are_read_from_cargo_json() {
        let line = r#"{"reason":"compiler-artifact","package_id":"path+file:///w/uring-core#0.1.0","manifest_path":"/w/uring-core/Cargo.toml","target":{"kind":["test"],"crate_types":["bin"],"name":"ring","src_path":"/w/uring-core/tests/ring.rs","edition":"2024","doc":false,"doctest":false,"test":true},"profile":{"opt_level":"0","debuginfo":2,"debug_assertions":true,"overflow_checks":true,"test":true},"features":[],"filenames":["/w/target/x/debug/deps/ring-1"],"executable":"/w/target/x/debug/deps/ring-1","fresh":true}"#;
        let bin = artifact(line, Kind::Tests).unwrap();
        assert_eq!(bin.label, "uring-core/ring");
        assert_eq!(bin.path, PathBuf::from("/w/target/x/debug/deps/ring-1"));
        let example = line
            .replace(r#""kind":["test"]"#, r#""kind":["example"]"#)
            .replace("\"name\":\"ring\"", "\"name\":\"poll\"");
        assert_eq!(artifact(&example, Kind::Tests).unwrap().label, "uring-core/example:poll");
        let not_test =
            line.replace("\"overflow_checks\":true,\"test\":true", "\"overflow_checks\":true,\"test\":false");
        assert!(artifact(&not_test, Kind::Tests).is_none());
        let other_crate = line.replace("/w/uring-core/Cargo.toml", "/w/xtask/Cargo.toml");
        assert!(artifact(&other_crate, Kind::Tests).is_none());
        // A test binary is no bench.
        assert!(artifact(line, Kind::Benches).is_none());
    }

    #[test]
    fn bench_artifacts_are_read_from_cargo_json() {
        // Verbatim from `cargo bench --no-run --message-format=json-render-diagnostics --target
        // x86_64-unknown-linux-gnu --bench '*'`: a `harness = false` bench has the profile's
        // `test` flag (not the target's).
        let line = r#"{"reason":"compiler-artifact","package_id":"path+file:///work/main/uring-zcrx#0.1.0","manifest_path":"/work/main/uring-zcrx/Cargo.toml","target":{"kind":["bench"],"crate_types":["bin"],"name":"throughput","src_path":"/work/main/uring-zcrx/benches/throughput.rs","edition":"2024","doc":false,"doctest":false,"test":false},"profile":{"opt_level":"3","debuginfo":2,"debug_assertions":false,"overflow_checks":false,"test":true},"features":[],"filenames":["/work/main/target/x86_64-unknown-linux-gnu/release/deps/throughput-88e88b817164aaab"],"executable":"/work/main/target/x86_64-unknown-linux-gnu/release/deps/throughput-88e88b817164aaab","fresh":false}"#;
        let bin = artifact(line, Kind::Benches).unwrap();
        assert_eq!(bin.label, "uring-zcrx/bench:throughput");
        assert_eq!(
            bin.path,
            PathBuf::from("/work/main/target/x86_64-unknown-linux-gnu/release/deps/throughput-88e88b817164aaab")
        );
        assert_eq!(bin.dir, PathBuf::from("/work/main/uring-zcrx"));
        // The library the bench links: no executable.
        let lib = r#"{"reason":"compiler-artifact","package_id":"path+file:///work/main/uring-zcrx#0.1.0","manifest_path":"/work/main/uring-zcrx/Cargo.toml","target":{"kind":["lib"],"crate_types":["lib"],"name":"uring_zcrx","src_path":"/work/main/uring-zcrx/src/lib.rs","edition":"2024","doc":true,"doctest":true,"test":true},"profile":{"opt_level":"3","debuginfo":2,"debug_assertions":false,"overflow_checks":false,"test":false},"features":[],"filenames":["/w/liburing_zcrx.rlib"],"executable":null,"fresh":true}"#;
        assert!(artifact(lib, Kind::Benches).is_none());
        let unit_tests = line.replace(r#""kind":["bench"]"#, r#""kind":["lib"]"#);
        assert!(artifact(&unit_tests, Kind::Benches).is_none());
    }

    #[test]
    fn init_quotes_filters() {
        let inv = Invocation { kind: Kind::Tests, args: vec!["it's".into()], limit: TEST_BINARY_TIMEOUT };
        let s =
            init_script(&[("uring-core/ring".into(), "uring-core_ring".into(), "/w/uring-core".into())], &inv, "/tmp");
        assert!(s.contains("cd '/w/uring-core' && export CARGO_MANIFEST_DIR='/w/uring-core'\n"), "{s}");
        assert!(s.contains("run 'uring-core/ring' /tests/uring-core_ring --show-output 'it'\\''s'\n"), "{s}");
        assert!(s.contains("  timeout -s KILL 300 \"$@\"\n"), "{s}");
        assert!(s.contains("/bin/vm-exit $((16 + status))"));
        assert!(!s.contains("pipefail") && !s.contains("CRITERION_HOME"), "{s}");
    }

    #[test]
    fn init_runs_benches_with_bench_and_their_own_limit() {
        let inv = Invocation { kind: Kind::Benches, args: strings(&["--warm-up-time", "1", "zc rx's"]), limit: 1800 };
        let s = init_script(
            &[("uring-zcrx/bench:throughput".into(), "uring-zcrx_bench_throughput".into(), "/w/uring-zcrx".into())],
            &inv,
            "/tmp",
        );
        assert!(s.contains("# Generated by `cargo xtask vm-bench`.\n"), "{s}");
        assert!(s.contains("cd '/w/uring-zcrx' && export CARGO_MANIFEST_DIR='/w/uring-zcrx'\n"), "{s}");
        assert!(
            s.contains(
                "run 'uring-zcrx/bench:throughput' /tests/uring-zcrx_bench_throughput --bench '--warm-up-time' '1' \
                 'zc rx'\\''s'\n"
            ),
            "{s}"
        );
        // Through a pipe, the binary's status kept; the bench's own limit.
        assert!(s.contains("set -o pipefail\n"), "{s}");
        assert!(s.contains("  timeout -s KILL 1800 \"$@\" 2>&1 | cat\n"), "{s}");
        assert!(s.contains("its 1800 s limit"), "{s}");
        assert!(s.contains("export CRITERION_HOME=/tmp/criterion\n"), "{s}");
        // The markers the report reads, before the first run.
        assert!(s.find("pipefail").unwrap() < s.find("BEGIN").unwrap());
        assert!(s.contains("/bin/vm-exit $((16 + status))"));
    }

    #[test]
    fn criterion_lines_are_echoed_with_their_benchmark() {
        let mut p = Progress::new("t", Kind::Benches);
        p.line("Benchmarking zcrx/recv: Warming up for 1.0000 s");
        assert_eq!(p.bench.as_deref(), Some("zcrx/recv"));
        p.line("                        change:");
        assert!(p.change);
        p.line("Benchmarking a/long/id");
        assert_eq!(p.bench.as_deref(), Some("a/long/id"));
        assert!(!p.change);
    }

    #[test]
    fn this_binary_is_an_elf_file() {
        assert!(is_static(&std::env::current_exe().unwrap()).is_ok());
        assert!(is_static(Path::new("/etc/hostname")).is_err() || !Path::new("/etc/hostname").exists());
    }
}
