//! NVMe passthrough (`URING_CMD` with `NVME_URING_CMD_IO`/`_ADMIN`)
//! against a real NVMe device: the raw disk with serial `uring-passthru`
//! that `cargo xtask vm-test` gives its guests (QEMU's emulated NVMe).
//! Data written through `/dev/ngXnY` is read back through the block device
//! (`O_DIRECT`, so no page cache answers) and the other way round, plain
//! and from a registered buffer (`IORING_URING_CMD_FIXED`); identify
//! reports the disk; a read past the end comes back with the NVMe status
//! decoded. On a machine without that disk the device tests skip, saying
//! so; no other NVMe device is ever touched.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use uring_core::{CqeSize, CqeSlot, Error, IoPoll, Mapping, Options, Ring, SqeContext, SqeFlags, sys};
use uring_ops::block::BlockDiscard;
use uring_ops::cmd::Ring128Ops;
use uring_ops::file::{Read, Write};
use uring_ops::nvme::{NVME_ID_CNS_CTRL, NVME_ID_CNS_NS, NVME_IDENTIFY_LEN, NvmeCmd, NvmeCompletion};
use uring_ops::{OpExt, RingOps};

const SERIAL: &str = "uring-passthru";

/// The passthrough disk.
struct Disk {
    /// `/dev/ngXnY`.
    ng: PathBuf,
    /// `/dev/nvmeXnY`.
    block: PathBuf,
    /// `/dev/nvmeX` (admin commands).
    ctrl: Option<PathBuf>,
    nsid: u32,
    lba: usize,
    /// Namespace size in logical blocks.
    blocks: u64,
}

fn read_trim(p: impl AsRef<Path>) -> Option<String> {
    std::fs::read_to_string(p).ok().map(|s| s.trim().to_owned())
}

/// The disk with serial `uring-passthru`, or why there is none.
fn disk() -> Result<Disk, String> {
    let mut found = None;
    for e in std::fs::read_dir("/sys/block").map_err(|e| format!("/sys/block: {e}"))?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("nvme") && read_trim(e.path().join("device/serial")).as_deref() == Some(SERIAL) {
            found = Some(name);
        }
    }
    let name =
        found.ok_or_else(|| format!("no NVMe disk with serial {SERIAL} (cargo xtask vm-test's guests have one)"))?;
    let ng = PathBuf::from(format!("/dev/ng{}", &name["nvme".len()..]));
    if !ng.exists() {
        return Err(format!("{} has no generic char device {}", name, ng.display()));
    }
    let sys = Path::new("/sys/block").join(&name);
    let lba: usize = read_trim(sys.join("queue/logical_block_size")).and_then(|s| s.parse().ok()).unwrap_or(512);
    let sectors: u64 = read_trim(sys.join("size")).and_then(|s| s.parse().ok()).ok_or("no size")?;
    let nsid = read_trim(sys.join("nsid")).and_then(|s| s.parse().ok()).unwrap_or(1);
    let mut ctrl = None;
    for e in std::fs::read_dir("/sys/class/nvme").into_iter().flatten().flatten() {
        if read_trim(e.path().join("serial")).as_deref() == Some(SERIAL) {
            ctrl = Some(Path::new("/dev").join(e.file_name()));
        }
    }
    Ok(Disk { ng, block: PathBuf::from(format!("/dev/{name}")), ctrl, nsid, lba, blocks: sectors * 512 / lba as u64 })
}

macro_rules! disk_or_skip {
    () => {
        match disk() {
            Ok(d) => d,
            Err(why) => {
                println!("SKIPPED: {why}");
                return;
            }
        }
    };
}

fn ring() -> Ring {
    let mut ring = Ring::new(Options::default().entries(8).sqe128(true).cqe_size(CqeSize::Big)).unwrap();
    ring.start().unwrap();
    ring
}

/// Pushes `cmd`, waits for its CQE and decodes it (the memory it names
/// was vouched for when it was built, for as long as this waits).
fn run(ring: &mut Ring, cmd: NvmeCmd) -> NvmeCompletion {
    let ctx = ring.push_op128(SqeContext::token(0x4e56_0003).unwrap(), cmd).unwrap();
    ring.submit().unwrap();
    let mut slots = [CqeSlot::EMPTY; 1];
    let n = ring.wait_for(&mut slots, 1, Some(Duration::from_secs(30))).unwrap().len();
    assert_eq!(n, 1);
    let cqe = slots[0].cqe();
    assert_eq!(cqe.user_data(), ctx.raw());
    NvmeCompletion::of(&cqe).expect("a 32-byte CQE")
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed) ^ (i >> 9) as u8).collect()
}

fn block_dev(d: &Disk) -> File {
    File::options().read(true).write(true).custom_flags(libc::O_DIRECT).open(&d.block).unwrap()
}

#[allow(clippy::mut_from_ref)] // A test helper over the test's own mappings.
fn bytes(m: &Mapping) -> &mut [u8] {
    // SAFETY: the test's own anonymous mapping; no request uses it while
    // the slice lives (each command is awaited).
    unsafe { std::slice::from_raw_parts_mut(m.ptr(), m.len()) }
}

/// The first [`NVME_IDENTIFY_LEN`] bytes of `m`, as Identify takes them.
fn id_bytes(m: &Mapping) -> &mut [u8; NVME_IDENTIFY_LEN as usize] {
    (&mut bytes(m)[..NVME_IDENTIFY_LEN as usize]).try_into().unwrap()
}

#[test]
fn a_ring_without_big_cqes_or_big_sqes_is_refused_before_any_sqe() {
    let mut ring = Ring::new(Options::default().entries(4).sqe128(true)).unwrap();
    ring.start().unwrap();
    // Refused before an SQE is taken; nothing is submitted.
    let r = ring.push_op128(SqeContext::token(3).unwrap(), NvmeCmd::flush(0, 1));
    assert!(matches!(r, Err(Error::Unsupported { .. })), "{r:?}");
    let mut ring = Ring::new(Options::default().entries(4).cqe_size(CqeSize::Big)).unwrap();
    ring.start().unwrap();
    let r = ring.push_op128(SqeContext::token(3).unwrap(), NvmeCmd::flush(0, 1));
    assert!(matches!(r, Err(Error::Unsupported { .. })), "{r:?}");
}

#[test]
fn a_passthrough_write_reads_back_through_the_block_device() {
    let d = disk_or_skip!();
    let ng = File::options().read(true).write(true).open(&d.ng).unwrap();
    let mut ring = ring();
    let len = 8192;
    let buf = Mapping::anonymous(len, false).unwrap();
    let data = pattern(len, 1);
    bytes(&buf).copy_from_slice(&data);
    let slba = 64;
    let blocks = (len / d.lba) as u32;
    // SAFETY: `len` is `blocks` whole blocks; `buf` outlives the awaited
    // command and is not written meanwhile.
    let cmd = unsafe { NvmeCmd::write(ng.as_raw_fd(), d.nsid, slba, blocks, &bytes(&buf)[..len]) }.unwrap();
    let done = run(&mut ring, cmd);
    assert!(done.is_ok(), "{done:?}");
    assert!(run(&mut ring, NvmeCmd::flush(ng.as_raw_fd(), d.nsid)).is_ok());
    let back = Mapping::anonymous(len, false).unwrap();
    let n = block_dev(&d).read_at(bytes(&back), slba * d.lba as u64).unwrap();
    assert_eq!(n, len);
    assert_eq!(bytes(&back), &data[..], "the block device reads what passthrough wrote");
}

#[test]
fn a_block_device_write_reads_back_through_passthrough() {
    let d = disk_or_skip!();
    let ng = File::options().read(true).write(true).open(&d.ng).unwrap();
    let mut ring = ring();
    let len = 4096;
    let src = Mapping::anonymous(len, false).unwrap();
    let data = pattern(len, 2);
    bytes(&src).copy_from_slice(&data);
    let slba = 256;
    let dev = block_dev(&d);
    assert_eq!(dev.write_at(bytes(&src), slba * d.lba as u64).unwrap(), len);
    dev.sync_all().unwrap();
    let buf = Mapping::anonymous(len, false).unwrap();
    let blocks = (len / d.lba) as u32;
    // SAFETY: `len` is `blocks` whole blocks; `buf` outlives the awaited
    // command and is not touched meanwhile.
    let cmd = unsafe { NvmeCmd::read(ng.as_raw_fd(), d.nsid, slba, blocks, &mut bytes(&buf)[..len]) }.unwrap();
    let done = run(&mut ring, cmd);
    assert!(done.is_ok(), "{done:?}");
    assert_eq!(bytes(&buf), &data[..], "passthrough reads what the block device wrote");
}

#[test]
fn passthrough_from_a_registered_buffer_both_ways() {
    let d = disk_or_skip!();
    let ng = File::options().read(true).write(true).open(&d.ng).unwrap();
    let mut ring = ring();
    let len = 16384;
    let reg = Mapping::anonymous(2 * len, false).unwrap();
    let iov = libc::iovec { iov_base: reg.ptr().cast(), iov_len: reg.len() };
    // SAFETY: one iovec, valid for the call; `reg` outlives the ring's use
    // of it (the ring is dropped first: declared after).
    unsafe {
        ring.register().raw(
            "IORING_REGISTER_BUFFERS",
            sys::IORING_REGISTER_BUFFERS,
            (&iov as *const libc::iovec).cast(),
            1,
        )
    }
    .unwrap();
    let data = pattern(len, 3);
    bytes(&reg)[len..].copy_from_slice(&data);
    let blocks = (len / d.lba) as u32;
    let slba = 1024;
    // Write from the second half of registered buffer 0.
    // SAFETY: `len` is `blocks` whole blocks; the range lies in registered
    // buffer 0, alive and not written until the awaited CQE.
    let cmd = unsafe { NvmeCmd::write(ng.as_raw_fd(), d.nsid, slba, blocks, &bytes(&reg)[len..2 * len]) }.unwrap();
    let done = run(&mut ring, cmd.fixed(0));
    assert!(done.is_ok(), "{done:?}");
    let back = Mapping::anonymous(len, false).unwrap();
    block_dev(&d).read_at(bytes(&back), slba * d.lba as u64).unwrap();
    assert_eq!(bytes(&back), &data[..], "the block device reads the fixed-buffer write");
    // And a fixed read into the first half.
    let other = pattern(len, 4);
    bytes(&back).copy_from_slice(&other);
    let dev = block_dev(&d);
    dev.write_at(bytes(&back), (slba + u64::from(blocks)) * d.lba as u64).unwrap();
    dev.sync_all().unwrap();
    let at = slba + u64::from(blocks);
    // SAFETY: as above, and not read meanwhile either.
    let cmd = unsafe { NvmeCmd::read(ng.as_raw_fd(), d.nsid, at, blocks, &mut bytes(&reg)[..len]) }.unwrap();
    let done = run(&mut ring, cmd.fixed(0));
    assert!(done.is_ok(), "{done:?}");
    assert_eq!(&bytes(&reg)[..len], &other[..], "the fixed-buffer read holds what the block device wrote");
}

#[test]
fn identify_describes_the_disk_and_a_read_past_its_end_reports_the_nvme_status() {
    let d = disk_or_skip!();
    let ng = File::options().read(true).write(true).open(&d.ng).unwrap();
    let mut ring = ring();
    let id = Mapping::anonymous(NVME_IDENTIFY_LEN as usize, false).unwrap();
    if let Some(ctrl) = &d.ctrl {
        let ctrl = File::options().read(true).write(true).open(ctrl).unwrap();
        // SAFETY: `id` outlives the awaited command and is not touched
        // meanwhile.
        let cmd = unsafe { NvmeCmd::identify(ctrl.as_raw_fd(), NVME_ID_CNS_CTRL, 0, id_bytes(&id)) };
        let done = run(&mut ring, cmd);
        assert!(done.is_ok(), "{done:?}");
        // Identify Controller: the serial number in bytes 4..24, padded
        // with spaces.
        assert_eq!(String::from_utf8_lossy(&bytes(&id)[4..24]).trim_end(), SERIAL);
        bytes(&id).fill(0);
        // SAFETY: as above.
        let cmd = unsafe { NvmeCmd::identify(ctrl.as_raw_fd(), NVME_ID_CNS_NS, d.nsid, id_bytes(&id)) };
        let done = run(&mut ring, cmd);
        assert!(done.is_ok(), "{done:?}");
        // Identify Namespace: NSZE (size in blocks) in bytes 0..8.
        assert_eq!(u64::from_le_bytes(bytes(&id)[..8].try_into().unwrap()), d.blocks);
    } else {
        println!("no controller device for {SERIAL}: identify not tried");
    }
    // A read starting at the first block past the end.
    let buf = Mapping::anonymous(d.lba, false).unwrap();
    // SAFETY: one block; `buf` outlives the awaited command and is not
    // touched meanwhile.
    let cmd = unsafe { NvmeCmd::read(ng.as_raw_fd(), d.nsid, d.blocks, 1, &mut bytes(&buf)[..d.lba]) }.unwrap();
    let done = run(&mut ring, cmd);
    // Generic status 0x80: LBA Out of Range.
    assert_eq!((done.status_code_type(), done.status_code()), (Some(0), Some(0x80)), "{done:?}");
    assert_eq!(done.errno(), None);
}

#[test]
fn a_block_discard_drops_the_range() {
    let d = disk_or_skip!();
    let name = d.block.file_name().unwrap().to_string_lossy().into_owned();
    let max: u64 =
        read_trim(format!("/sys/block/{name}/queue/discard_max_bytes")).and_then(|s| s.parse().ok()).unwrap_or(0);
    if max == 0 {
        println!("SKIPPED: {name} does not support discard (discard_max_bytes 0)");
        return;
    }
    let len = 8192;
    let at = 4096 * d.lba as u64;
    let data = Mapping::anonymous(len, false).unwrap();
    bytes(&data).fill(0xA5);
    let dev = block_dev(&d);
    assert_eq!(dev.write_at(bytes(&data), at).unwrap(), len);
    dev.sync_all().unwrap();
    let mut ring = Ring::new(Options::default().entries(4)).unwrap();
    ring.start().unwrap();
    let ctx = ring
        .push_op(SqeContext::token(0xd15_0003).unwrap(), BlockDiscard::new(dev.as_raw_fd(), at, len as u64))
        .unwrap();
    ring.submit().unwrap();
    let mut slots = [CqeSlot::EMPTY; 1];
    ring.wait_for(&mut slots, 1, Some(Duration::from_secs(30))).unwrap();
    let cqe = slots[0].cqe();
    assert_eq!(cqe.user_data(), ctx.raw());
    let mut res = cqe.res();
    if res == -libc::EINVAL {
        // Debian's 7.0.13 fails every inline discard so: its backport of
        // the SQE-read-once change tests the reissue bit in the issue
        // flags, where bit 31 is IO_URING_F_NONBLOCK, so the first,
        // non-blocking issue never reads the range (fixed by mainline
        // 4f919141be38; 7.2 and 7.3 accept the entry). Issued from io-wq
        // (IOSQE_ASYNC), not non-blocking, the same command reads its SQE:
        // it must succeed then, or the diagnosis is wrong.
        println!(
            "NOTE: this kernel ({}) fails an inline BLOCK_URING_CMD_DISCARD with EINVAL (a stable backport missing \
             4f919141be38); retrying with IOSQE_ASYNC",
            read_trim("/proc/sys/kernel/osrelease").unwrap_or_default()
        );
        let discard = BlockDiscard::new(dev.as_raw_fd(), at, len as u64).with_sqe_flags(SqeFlags::ASYNC);
        let ctx = ring.push_op(SqeContext::token(0xd15_0004).unwrap(), discard).unwrap();
        ring.submit().unwrap();
        ring.wait_for(&mut slots, 1, Some(Duration::from_secs(30))).unwrap();
        assert_eq!(slots[0].cqe().user_data(), ctx.raw());
        res = slots[0].cqe().res();
    }
    assert_eq!(res, 0);
    let back = Mapping::anonymous(len, false).unwrap();
    bytes(&back).fill(0xFF);
    dev.read_at(bytes(&back), at).unwrap();
    assert!(bytes(&back).iter().all(|&b| b == 0), "the discarded range reads back as zeroes (QEMU's NVMe)");
    // A read-only descriptor may not discard.
    let ro = File::options().read(true).open(&d.block).unwrap();
    ring.push_op(SqeContext::token(0xd16_0003).unwrap(), BlockDiscard::new(ro.as_raw_fd(), at, len as u64)).unwrap();
    ring.submit().unwrap();
    ring.wait_for(&mut slots, 1, Some(Duration::from_secs(30))).unwrap();
    assert_eq!(slots[0].cqe().res(), -libc::EBADF);
}

/// Reaps one CQE with the non-blocking [`Ring::reap`] only, as an event
/// loop that never blocks does: on an `IOPOLL` ring each call polls the
/// device queues once (nothing else posts a polled completion).
fn poll_one(ring: &mut Ring) -> CqeSlot {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut slots = [CqeSlot::EMPTY; 1];
    let mut calls = 0u64;
    loop {
        calls += 1;
        match ring.reap(&mut slots) {
            Ok(r) if r.len() == 1 => return slots[0],
            Ok(_) | Err(Error::WouldBlock) => {}
            Err(e) => panic!("{e}"),
        }
        assert!(std::time::Instant::now() < deadline, "no polled completion after {calls} non-blocking reaps");
    }
}

#[test]
fn polled_direct_reads_and_writes_on_iopoll_and_hybrid_rings_move_the_bytes() {
    let d = disk_or_skip!();
    let name = d.block.file_name().unwrap().to_string_lossy().into_owned();
    let io_poll = read_trim(format!("/sys/block/{name}/queue/io_poll")).unwrap_or_default();
    assert_eq!(io_poll, "1", "{name} has no poll queues: the VM boots with nvme.poll_queues=1");
    let dev = block_dev(&d);
    // Deferred task work or not: without it, only the IOPOLL rule makes
    // a non-blocking reap enter the kernel on an empty CQ.
    let modes = [(IoPoll::On, true), (IoPoll::Hybrid, true), (IoPoll::On, false), (IoPoll::Hybrid, false)];
    for (i, (mode, defer)) in modes.into_iter().enumerate() {
        let mut ring = Ring::new(Options::default().entries(8).iopoll(mode).defer_taskrun(defer)).unwrap();
        ring.start().unwrap();
        let len = 8192;
        let at = (8192 + 64 * i as u64) * d.lba as u64;
        let src = Mapping::anonymous(len, false).unwrap();
        let data = pattern(len, 10 + i as u8);
        bytes(&src).copy_from_slice(&data);
        // SAFETY: `src` outlives the write, whose CQE is reaped below.
        let w = unsafe { Write::new(dev.as_raw_fd(), &bytes(&src)[..len]) }.offset(at);
        ring.push_op(SqeContext::token(0x1003).unwrap(), w).unwrap();
        let c = poll_one(&mut ring);
        assert_eq!(c.cqe().res(), len as i32, "{mode:?} (defer {defer}) write");
        let dst = Mapping::anonymous(len, false).unwrap();
        // SAFETY: `dst` outlives the read, whose CQE is reaped below.
        let r = unsafe { Read::new(dev.as_raw_fd(), &mut bytes(&dst)[..len]) }.offset(at);
        ring.push_op(SqeContext::token(0x2003).unwrap(), r).unwrap();
        let c = poll_one(&mut ring);
        assert_eq!(c.cqe().res(), len as i32, "{mode:?} (defer {defer}) read");
        assert_eq!(bytes(&dst), &data[..], "{mode:?}: the polled read returns the polled write's bytes");
        // And through the page-cache-free path of another descriptor.
        let check = Mapping::anonymous(len, false).unwrap();
        block_dev(&d).read_at(bytes(&check), at).unwrap();
        assert_eq!(bytes(&check), &data[..]);
    }
}

#[test]
fn polled_passthrough_on_an_iopoll_ring() {
    let d = disk_or_skip!();
    let ng = File::options().read(true).write(true).open(&d.ng).unwrap();
    let mut ring =
        Ring::new(Options::default().entries(8).sqe128(true).cqe_size(CqeSize::Big).iopoll(IoPoll::On)).unwrap();
    ring.start().unwrap();
    let len = 4096;
    let blocks = (len / d.lba) as u32;
    let slba = 12288;
    let src = Mapping::anonymous(len, false).unwrap();
    let data = pattern(len, 20);
    bytes(&src).copy_from_slice(&data);
    // SAFETY: `len` is `blocks` whole blocks; `src` outlives the command,
    // whose CQE is reaped below, and is not written meanwhile.
    let cmd = unsafe { NvmeCmd::write(ng.as_raw_fd(), d.nsid, slba, blocks, &bytes(&src)[..len]) }.unwrap();
    ring.push_op128(SqeContext::token(0x3003).unwrap(), cmd).unwrap();
    let c = poll_one(&mut ring);
    assert_eq!(NvmeCompletion::of(&c.cqe()).map(|n| n.res), Some(0));
    let dst = Mapping::anonymous(len, false).unwrap();
    // SAFETY: as above, and not read meanwhile either.
    let cmd = unsafe { NvmeCmd::read(ng.as_raw_fd(), d.nsid, slba, blocks, &mut bytes(&dst)[..len]) }.unwrap();
    ring.push_op128(SqeContext::token(0x4003).unwrap(), cmd).unwrap();
    let c = poll_one(&mut ring);
    assert_eq!(NvmeCompletion::of(&c.cqe()).map(|n| n.res), Some(0));
    assert_eq!(bytes(&dst), &data[..]);
}
