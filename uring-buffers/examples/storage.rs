//! Random reads and random writes against a file, a block device or an
//! NVMe generic character device (`/dev/ngXnY`), through the fastest path
//! the kernel and the target allow, with IOPS and user-space instructions
//! per I/O for each path.
//!
//! ```text
//! cargo run --release -p uring-buffers --example storage -- [OPTIONS] TARGET
//!   --variant buffered|direct|iopoll|passthru   one path (default: the fastest the target allows)
//!   --all            every path the target allows, one after the other
//!   --qd N           requests in flight (default 16)
//!   --bs BYTES       block size (default 4096)
//!   --ops N          requests per phase (default: run --secs instead)
//!   --secs S         seconds per phase (default 3)
//!   --size BYTES     blocks 0..SIZE/BS only (default: the whole target)
//!   --verify         every write stamps its block with (block number, seed); reads check it
//! ```
//!
//! Reads check the blocks this run's writes reached: keep `--size` small
//! enough for `--ops` writes to cover most of it. Any mismatch or I/O
//! error ends the run with a message and exit status 1.
//!
//! The pattern, for any storage engine:
//!
//! 1. Register the file once (`register().files`) and name it by slot
//!    (`Fixed(0)`): no descriptor lookup per request.
//! 2. Register one buffer per request in flight (`FixedBuffers`): the
//!    kernel pins them once, and `read_fixed`/`write_fixed` are safe
//!    because the table owns the memory and knows which buffer the kernel
//!    is using until `handle_cqe` says otherwise.
//! 3. Keep the queue full: give every idle buffer a request, then one
//!    `wait_for` submits them all and waits for at least one CQE.
//! 4. Skip the page cache with `O_DIRECT` (registered buffers are page
//!    aligned; offsets are multiples of the block size), and when the
//!    device has poll queues (`/sys/block/<dev>/queue/io_poll` is 1) let
//!    an `IOPOLL` ring poll for completions instead of taking interrupts.
//! 5. On `/dev/ngXnY`, send NVMe commands straight to the driver
//!    (`NvmeCmd`, `URING_CMD`): 128-byte SQEs, 32-byte CQEs, registered
//!    buffers named by index (`.fixed`).
#![allow(dead_code)] // `main` and the tests (tests/storage.rs) each use a part.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use uring_buffers::{FixedBuffers, RegisteredBuffers};
use uring_core::{Cqe, CqeSize, CqeSlot, IoPoll, Options, Ring, SqeContext};
use uring_ops::Fixed;
use uring_ops::cmd::Ring128Ops;
use uring_ops::nvme::{NvmeCmd, NvmeCompletion};

// The CPU's count of this thread's user-space instructions
// (`perf_event_open`), in a file of its own: it is not about storage.
#[path = "support/instructions.rs"]
mod instructions;
use instructions::Counter;

/// Any error, with a message for the user.
pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The paths to the device, slowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// Fixed file and fixed buffers, through the page cache.
    Buffered,
    /// The same with `O_DIRECT`.
    Direct,
    /// The same on an `IOPOLL` ring.
    Iopoll,
    /// NVMe passthrough on the generic char device (polled when it can be).
    Passthru,
}
/// Every variant, slowest first.
pub const VARIANTS: [Variant; 4] = [Variant::Buffered, Variant::Direct, Variant::Iopoll, Variant::Passthru];

/// What to run: the command line ([`parse`]).
#[derive(Debug, Clone)]
pub struct Config {
    target: PathBuf,
    variant: Option<Variant>,
    all: bool,
    qd: u32,
    bs: usize,
    ops: Option<u64>,
    secs: f64,
    size: Option<u64>,
    verify: bool,
}

/// One phase (writes, then reads) of one variant.
#[derive(Debug)]
pub struct Report {
    /// The path it took.
    pub variant: Variant,
    /// Writes or reads.
    pub write: bool,
    /// I/Os completed, each of `--bs` bytes.
    pub ios: u64,
    /// I/Os per second.
    pub iops: f64,
    /// User-space instructions per I/O, or why there is no count.
    pub instructions: std::result::Result<f64, String>,
    /// Blocks whose stamp a read checked (`--verify`).
    pub verified: u64,
}

/// The device under test, as sysfs describes it.
#[derive(Debug)]
pub struct Target {
    path: PathBuf,
    /// `/dev/ngXnY`: passthrough only.
    nvme_char: bool,
    bytes: u64,
    /// `/sys/block/<disk>` behind it, if there is one (tmpfs has none).
    disk: Option<PathBuf>,
    nsid: u32,
    lba: u64,
}

fn sysfs(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok().map(|s| s.trim().to_owned())
}

impl Target {
    /// Looks at `path`; `size` limits the blocks used (`--size`).
    pub fn open(path: &Path, size: Option<u64>) -> Result<Target> {
        let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let ft = meta.file_type();
        let nvme_char = ft.is_char_device();
        // The disk's sysfs directory: through the generic char device's
        // block twin, the device node, or the device the file lives on (a
        // partition's `queue` is its disk's).
        let dev = if ft.is_block_device() { meta.rdev() } else { meta.dev() };
        let mut disk = std::fs::canonicalize(format!("/sys/dev/block/{}:{}", libc::major(dev), libc::minor(dev))).ok();
        if nvme_char {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let Some(rest) = name.strip_prefix("ng") else { return Err("char devices: only /dev/ngXnY".into()) };
            disk = Some(PathBuf::from(format!("/sys/block/nvme{rest}")));
        }
        if let Some(d) = disk.as_mut().filter(|d| !d.join("queue").exists()) {
            d.pop();
        }
        let lba = disk.as_ref().and_then(|d| sysfs(&d.join("queue/logical_block_size"))?.parse().ok()).unwrap_or(512);
        let bytes = if ft.is_file() {
            meta.len()
        } else {
            let d = disk.as_ref().ok_or("no sysfs entry for the device")?;
            sysfs(&d.join("size")).and_then(|s| s.parse::<u64>().ok()).ok_or("no device size")? * 512
        };
        let nsid = disk.as_ref().and_then(|d| sysfs(&d.join("nsid"))?.parse().ok()).unwrap_or(1);
        Ok(Target { path: path.to_owned(), nvme_char, bytes: size.unwrap_or(bytes).min(bytes), disk, nsid, lba })
    }

    fn polls(&self) -> bool {
        self.disk.as_ref().and_then(|d| sysfs(&d.join("queue/io_poll"))).as_deref() == Some("1")
    }

    fn open_file(&self, direct: bool) -> std::io::Result<File> {
        let flags = if direct { libc::O_DIRECT } else { 0 };
        OpenOptions::new().read(true).write(true).custom_flags(flags).open(&self.path)
    }

    /// Whether `v` can run here, or why not.
    pub fn allows(&self, v: Variant) -> std::result::Result<(), String> {
        match v {
            Variant::Passthru if !self.nvme_char => Err("passthrough needs /dev/ngXnY".into()),
            Variant::Passthru => Ok(()),
            _ if self.nvme_char => Err("a generic char device takes passthrough only".into()),
            Variant::Buffered => Ok(()),
            Variant::Direct | Variant::Iopoll => {
                self.open_file(true).map_err(|e| format!("O_DIRECT refused: {e}"))?;
                if v == Variant::Iopoll && !self.polls() {
                    return Err("no poll queues (queue/io_poll is not 1; NVMe: nvme.poll_queues=N)".into());
                }
                Ok(())
            }
        }
    }
}

/// The buffers of one ring: a `FixedBuffers` table (safe fixed I/O), or
/// plain registered buffers that passthrough commands name by index.
#[derive(Debug)]
pub enum Bufs {
    /// For `read_fixed` and `write_fixed`.
    Fixed(FixedBuffers),
    /// For `NvmeCmd::fixed`.
    Passthru(RegisteredBuffers),
}

impl Bufs {
    fn get(&mut self, i: u32) -> &mut [u8] {
        match self {
            Bufs::Fixed(b) => b.buffer_mut(i).expect("an idle buffer"),
            Bufs::Passthru(b) => b.buffer_mut(i).expect("an installed buffer"),
        }
    }

    /// Queues a read or a write of block `block` with buffer `i`.
    fn queue(&mut self, ring: &mut Ring, t: &Target, i: u32, write: bool, block: u64, bs: usize) -> Result<()> {
        let off = block * bs as u64;
        match self {
            Bufs::Fixed(b) if write => b.write_fixed(ring, Fixed(0), i, 0..bs, off).map(drop)?,
            Bufs::Fixed(b) => b.read_fixed(ring, Fixed(0), i, 0..bs, off).map(drop)?,
            Bufs::Passthru(b) => {
                let buf = &mut b.buffer_mut(i).expect("an installed buffer")[..bs];
                let (slba, n) = (off / t.lba, (buf.len() as u64 / t.lba) as u32);
                let cmd = if write {
                    // SAFETY: `buf` is `n` whole blocks of registered buffer
                    // `i`, which nothing touches until its CQE (`complete`).
                    unsafe { NvmeCmd::write(Fixed(0), t.nsid, slba, n, buf) }?
                } else {
                    // SAFETY: as for the write.
                    unsafe { NvmeCmd::read(Fixed(0), t.nsid, slba, n, buf) }?
                };
                ring.push_op128(SqeContext::token(i.into())?, cmd.fixed(i as u16))?;
            }
        }
        Ok(())
    }

    /// The buffer a CQE frees, once the I/O succeeded in full.
    fn complete(&mut self, cqe: &Cqe<'_>, len: usize) -> Result<u32> {
        let (i, ok, res) = match self {
            Bufs::Fixed(b) => {
                let done = b.handle_cqe(cqe).ok_or("a CQE that is not ours")?;
                (done.index, done.res == len as i32, done.res)
            }
            Bufs::Passthru(_) => {
                let done = NvmeCompletion::of(cqe).ok_or("a 16-byte CQE")?;
                (cqe.context().as_token().ok_or("not a token")? as u32, done.is_ok(), done.res)
            }
        };
        match (ok, res) {
            (true, _) => Ok(i),
            (false, r) if r < 0 => Err(std::io::Error::from_raw_os_error(-r).into()),
            (false, r) => Err(format!("result {r:#x} (bytes, or an NVMe status), expected {len} bytes").into()),
        }
    }
}

/// The stamp of 8-byte word `w` of block `block`.
fn stamp(block: u64, seed: u64, w: usize) -> u64 {
    (block << 20 | w as u64) ^ seed
}

fn fill(buf: &mut [u8], block: u64, seed: u64) {
    for (w, word) in buf.chunks_exact_mut(8).enumerate() {
        word.copy_from_slice(&stamp(block, seed, w).to_le_bytes());
    }
}

fn check(buf: &[u8], block: u64, seed: u64) -> Result<()> {
    for (w, word) in buf.chunks_exact(8).enumerate() {
        let got = u64::from_le_bytes(word.try_into()?);
        if got != stamp(block, seed, w) {
            return Err(format!("block {block} word {w}: read {got:#x}, expected {:#x}", stamp(block, seed, w)).into());
        }
    }
    Ok(())
}

/// Runs one phase of variant `v`: `--ops` or `--secs` worth of random
/// reads or writes, `--qd` in flight; `written` marks the blocks this
/// run's writes stamped with `seed`.
pub fn phase(
    (ring, bufs): &mut (Ring, Bufs),
    t: &Target,
    cfg: &Config,
    v: Variant,
    write: bool,
    seed: u64,
    written: &mut [bool],
) -> Result<Report> {
    let blocks = written.len() as u64;
    // Reads draw their own random blocks, not the writes' sequence again.
    let mut rng = (seed ^ if write { 0 } else { 0x9e37_79b9_7f4a_7c15 }) | 1;
    let mut next_block = move || {
        rng ^= rng << 13; // xorshift64
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % blocks
    };
    let mut block_of = vec![0; cfg.qd as usize];
    let mut idle: Vec<u32> = (0..cfg.qd).collect();
    let mut slots = vec![CqeSlot::EMPTY; cfg.qd as usize];
    let (mut issued, mut done, mut verified) = (0, 0, 0);
    let mut counter = Counter::open();
    let before = counter.as_mut().map_or(0, Counter::read);
    let start = Instant::now();
    let more = |issued: u64| match cfg.ops {
        Some(n) => issued < n,
        None => start.elapsed() < Duration::from_secs_f64(cfg.secs),
    };
    loop {
        while more(issued) {
            let Some(i) = idle.pop() else { break };
            let block = next_block();
            if write && cfg.verify {
                fill(bufs.get(i), block, seed);
            }
            bufs.queue(ring, t, i, write, block, cfg.bs)?;
            block_of[i as usize] = block;
            issued += 1;
        }
        if idle.len() == cfg.qd as usize {
            break; // nothing in flight and nothing more to do
        }
        let n = match ring.wait_for(&mut slots, 1, None) {
            Ok(r) => r.len(),
            // An IOPOLL ring's wait may return before anything completed
            // (the kernel stops polling when the thread should yield).
            Err(uring_core::Error::WouldBlock) => 0,
            Err(e) => return Err(e.into()),
        };
        for slot in &slots[..n] {
            let i = bufs.complete(&slot.cqe(), cfg.bs)?;
            let block = block_of[i as usize];
            if write {
                written[block as usize] = true;
            } else if cfg.verify && written[block as usize] {
                check(bufs.get(i), block, seed)?;
                verified += 1;
            }
            idle.push(i);
            done += 1;
        }
    }
    let iops = done as f64 / start.elapsed().as_secs_f64();
    let instructions = counter.map(|mut c| (c.read() - before) as f64 / done.max(1) as f64);
    Ok(Report { variant: v, write, ios: done, iops, instructions, verified })
}

/// A started ring for variant `v` with the target at fixed-file slot 0
/// and `qd` registered buffers of `bs` bytes.
pub fn setup(t: &Target, cfg: &Config, v: Variant) -> Result<(Ring, Bufs)> {
    let passthru = v == Variant::Passthru;
    let poll = v == Variant::Iopoll || (passthru && t.polls());
    let mut opts = Options::default().entries(cfg.qd).iopoll(if poll { IoPoll::On } else { IoPoll::Off });
    if passthru {
        opts = opts.sqe128(true).cqe_size(CqeSize::Big);
    }
    let mut ring = Ring::new(opts)?;
    ring.start()?;
    let file = t.open_file(v == Variant::Direct || v == Variant::Iopoll)?;
    // The table holds its own reference to the file: `file` may close.
    ring.register().files(&[file.as_raw_fd()])?;
    let bufs = match passthru {
        false => Bufs::Fixed(FixedBuffers::register(&mut ring, cfg.qd, cfg.bs)?),
        true => Bufs::Passthru(RegisteredBuffers::register(&mut ring, cfg.qd, cfg.bs)?),
    };
    Ok((ring, bufs))
}

/// Runs the variants `cfg` asks for (each writes, then reads) and prints a
/// line per phase.
pub fn run(cfg: &Config) -> Result<Vec<Report>> {
    let t = Target::open(&cfg.target, cfg.size)?;
    let bs = cfg.bs as u64;
    if bs == 0 || !bs.is_multiple_of(8) || !bs.is_multiple_of(t.lba) || t.bytes < bs || cfg.qd == 0 {
        return Err(format!("need --qd > 0 and --bs a multiple of {} no larger than the target", t.lba).into());
    }
    let variants: Vec<Variant> = match (cfg.variant, cfg.all) {
        (Some(v), _) => vec![v],
        (None, true) => VARIANTS.to_vec(),
        (None, false) => VARIANTS.iter().rev().find(|v| t.allows(**v).is_ok()).into_iter().copied().collect(),
    };
    let mut reports = Vec::new();
    for v in variants {
        if let Err(why) = t.allows(v) {
            if cfg.variant.is_some() {
                return Err(format!("{v:?}: {why}").into());
            }
            println!("{v:?}: skipped: {why}");
            continue;
        }
        let mut io = setup(&t, cfg, v)?;
        let seed = (std::process::id() as u64) << 32 ^ v as u64;
        let mut written = vec![false; (t.bytes / cfg.bs as u64) as usize];
        for write in [true, false] {
            let r = phase(&mut io, &t, cfg, v, write, seed, &mut written)?;
            let instr = r.instructions.as_ref().map_or_else(|e| format!("n/a ({e})"), |n| format!("{n:.0}"));
            let what = if write { "write" } else { "read" };
            print!("{:<9} {what:<5} {:>9.0} IOPS   user instructions/IO: {instr}", format!("{v:?}"), r.iops);
            println!("{}", if r.verified > 0 { format!("  ({} blocks verified)", r.verified) } else { String::new() });
            reports.push(r);
        }
    }
    Ok(reports)
}

/// The command line (without the program name).
pub fn parse(args: &[&str]) -> Result<Config> {
    let (target, variant, size) = (PathBuf::new(), None, None);
    let mut cfg = Config { target, variant, all: false, qd: 16, bs: 4096, ops: None, secs: 3.0, size, verify: false };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().ok_or(format!("{a} needs a value"));
        match *a {
            "--all" => cfg.all = true,
            "--verify" => cfg.verify = true,
            "--qd" => cfg.qd = val()?.parse()?,
            "--bs" => cfg.bs = val()?.parse()?,
            "--ops" => cfg.ops = Some(val()?.parse()?),
            "--secs" => cfg.secs = val()?.parse()?,
            "--size" => cfg.size = Some(val()?.parse()?),
            "--variant" => {
                let v = val()?;
                let known = VARIANTS.iter().find(|k| format!("{k:?}").eq_ignore_ascii_case(v));
                cfg.variant = Some(*known.ok_or(format!("--variant {v}: buffered, direct, iopoll or passthru"))?);
            }
            s if s.starts_with("--") => return Err(format!("unknown option {s}").into()),
            s => cfg.target = PathBuf::from(s),
        }
    }
    if !(cfg.secs.is_finite() && cfg.secs > 0.0) || cfg.ops == Some(0) {
        return Err("--secs and --ops need a positive number".into());
    }
    if cfg.target.as_os_str().is_empty() {
        return Err("usage: storage [--variant V | --all] [--qd N] [--bs B] [--ops N | --secs S] [--size B] \
                    [--verify] TARGET"
            .into());
    }
    Ok(cfg)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = parse(&args.iter().map(String::as_str).collect::<Vec<_>>()).and_then(|cfg| run(&cfg)) {
        eprintln!("storage: {e}");
        std::process::exit(1);
    }
}
