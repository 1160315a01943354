//! The storage example's workload, run in-process against the real kernel:
//! every variant a temp file allows, with `--verify` (every block a read
//! returns that a write stamped is checked word by word); a read of
//! another run's stamps fails; and, in `cargo xtask vm-test`'s guests,
//! every variant on the raw NVMe disk with serial `uring-passthru`:
//! `O_DIRECT` and `IOPOLL` on the block device, passthrough on its
//! `/dev/ngXnY`. No other disk is ever written.

#[path = "../examples/storage.rs"]
#[allow(unreachable_pub, missing_docs)]
mod storage;

use std::path::{Path, PathBuf};

use storage::{Config, Report, Target, Variant};

/// The command line `args` followed by `target`.
fn config(args: &str, target: &Path) -> Config {
    let target = target.to_str().unwrap();
    storage::parse(&args.split_whitespace().chain([target]).collect::<Vec<_>>()).unwrap()
}

/// A temp file of `bytes` bytes of zeroes, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, bytes: u64) -> TempFile {
        let path = std::env::temp_dir().join(format!("uring-storage-{name}-{}", std::process::id()));
        std::fs::File::create(&path).unwrap().set_len(bytes).unwrap();
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Every report did the work asked, and every read phase checked stamps.
fn assert_worked(reports: &[Report], ops: u64) {
    for r in reports {
        println!("{r:?}");
        assert_eq!(r.ios, ops, "{r:?}");
        assert!(r.iops > 0.0, "{r:?}");
        if !r.write {
            assert!(r.verified > 0, "{r:?}: the reads checked no block the writes stamped");
        }
    }
}

fn ran(reports: &[Report], v: Variant) -> bool {
    reports.iter().any(|r| r.variant == v)
}

#[test]
fn every_variant_a_temp_file_allows_moves_verified_blocks() {
    // 256 blocks: 2000 random writes stamp nearly all of them.
    let file = TempFile::new("all", 1 << 20);
    let reports = storage::run(&config("--all --verify --qd 8 --ops 2000", &file.0)).unwrap();
    assert_worked(&reports, 2000);
    assert!(ran(&reports, Variant::Buffered));
    assert!(!ran(&reports, Variant::Passthru), "a file is not an NVMe char device");
    // O_DIRECT where the file system takes it (ext4 does, tmpfs does not).
    let t = Target::open(&file.0, None).unwrap();
    assert_eq!(ran(&reports, Variant::Direct), t.allows(Variant::Direct).is_ok());
    // IOPOLL where the file's disk has poll queues (the VM's NVMe disks).
    assert_eq!(ran(&reports, Variant::Iopoll), t.allows(Variant::Iopoll).is_ok());
    if let Err(why) = t.allows(Variant::Iopoll) {
        println!("the IOPOLL variant did not run here: {why}");
    }
}

#[test]
fn a_time_bounded_run_of_the_fastest_variant_reports_iops() {
    let file = TempFile::new("secs", 1 << 20);
    let cfg = config("--secs 0.2", &file.0);
    let reports = storage::run(&cfg).unwrap();
    assert_eq!(reports.len(), 2, "one variant: a write phase and a read phase");
    assert!(reports.iter().all(|r| r.ios > 0 && r.iops > 0.0), "{reports:?}");
}

#[test]
fn a_read_of_another_seeds_stamps_fails_verification() {
    let file = TempFile::new("seed", 64 * 4096);
    let cfg = config("--verify --qd 8 --ops 256", &file.0);
    let t = Target::open(&file.0, None).unwrap();
    let mut io = storage::setup(&t, &cfg, Variant::Buffered).unwrap();
    let mut written = vec![false; 64];
    let r = storage::phase(&mut io, &t, &cfg, Variant::Buffered, true, 1, &mut written).unwrap();
    assert_eq!(r.ios, 256);
    assert!(written.iter().any(|&w| w));
    // The same blocks read back expecting seed 2's stamps.
    let err = storage::phase(&mut io, &t, &cfg, Variant::Buffered, false, 2, &mut written).unwrap_err();
    assert!(err.to_string().contains("expected"), "{err}");
}

#[test]
fn bad_arguments_get_a_clear_error() {
    let file = TempFile::new("args", 1 << 16);
    let err = |args: &str, target: &Path| match storage::parse(
        &args.split_whitespace().chain([target.to_str().unwrap()]).collect::<Vec<_>>(),
    ) {
        Ok(cfg) => storage::run(&cfg).unwrap_err().to_string(),
        Err(e) => e.to_string(),
    };
    assert!(err("--bs 1000", &file.0).contains("--bs"));
    assert!(err("--qd 0", &file.0).contains("--qd"));
    assert!(err("--variant passthru", &file.0).contains("/dev/ngXnY"));
    assert!(err("--variant fastest", &file.0).contains("buffered, direct, iopoll or passthru"));
    assert!(err("--qd", &file.0).contains("invalid digit"), "the path is not a number");
    assert!(err("--secs -1", &file.0).contains("positive"));
    assert!(err("--secs NaN", &file.0).contains("positive"));
    assert!(err("--ops 0", &file.0).contains("positive"));
    assert!(err("--verify", Path::new("/nonexistent/uring-storage")).contains("/nonexistent"));
    assert!(storage::parse(&["--all"]).unwrap_err().to_string().contains("usage"));
}

/// The VM's raw NVMe disk: (`/dev/nvmeXnY`, `/dev/ngXnY`), or why none.
fn passthru_disk() -> Result<(PathBuf, PathBuf), String> {
    for e in std::fs::read_dir("/sys/block").map_err(|e| format!("/sys/block: {e}"))?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let serial = std::fs::read_to_string(e.path().join("device/serial")).unwrap_or_default();
        if name.starts_with("nvme") && serial.trim() == "uring-passthru" {
            let ng = PathBuf::from(format!("/dev/ng{}", &name["nvme".len()..]));
            return Ok((PathBuf::from("/dev").join(&name), ng));
        }
    }
    Err("no NVMe disk with serial uring-passthru (cargo xtask vm-test's guests have one)".into())
}

#[test]
fn every_variant_on_the_vm_nvme_disk_moves_verified_blocks() {
    let (block, ng) = match passthru_disk() {
        Ok(d) => d,
        Err(why) => {
            println!("SKIPPED: {why}");
            return;
        }
    };
    // The first 4 MiB of the disk: 1024 blocks.
    let args = "--all --verify --qd 8 --ops 4000 --size 4194304";
    let reports = storage::run(&config(args, &block)).unwrap();
    assert_worked(&reports, 4000);
    // The guest boots with nvme.poll_queues=1: the polled path runs.
    for v in [Variant::Buffered, Variant::Direct, Variant::Iopoll] {
        assert!(ran(&reports, v), "{v:?} did not run on {}", block.display());
    }
    let reports = storage::run(&config(args, &ng)).unwrap();
    assert_worked(&reports, 4000);
    assert!(ran(&reports, Variant::Passthru));
}
