//! The CPU's count of the calling thread's user-space instructions:
//! `perf_event_open` with `PERF_TYPE_HARDWARE` /
//! `PERF_COUNT_HW_INSTRUCTIONS`, `exclude_kernel` and `exclude_hv`, read as
//! one `u64`. Where the CPU exposes no such counter (a VM without a
//! virtual PMU, an emulator) or policy forbids it
//! (`kernel.perf_event_paranoid`, a container's seccomp), `Counter::open`
//! says why. Shared by the examples that print instructions per I/O.

use std::fs::File;
use std::io::Read;
use std::os::fd::FromRawFd;

/// Counts this thread's user-space instructions from its creation on.
pub(crate) struct Counter(File);

/// `struct perf_event_attr` up to `config1` (`PERF_ATTR_SIZE_VER0`);
/// libc does not define it.
#[repr(C)]
#[derive(Default)]
struct PerfEventAttr {
    kind: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
}

impl Counter {
    /// Starts counting, or says why the CPU's counter is unavailable.
    pub(crate) fn open() -> Result<Counter, String> {
        // PERF_TYPE_HARDWARE (0), PERF_COUNT_HW_INSTRUCTIONS (1);
        // flags: exclude_kernel (bit 5), exclude_hv (bit 6).
        let attr = PerfEventAttr { size: 64, config: 1, flags: 1 << 5 | 1 << 6, ..Default::default() };
        // PERF_FLAG_FD_CLOEXEC (libc does not define it either).
        const FD_CLOEXEC: libc::c_ulong = 1 << 3;
        // SAFETY: `attr` is a perf_event_attr of the size it states and
        // outlives the call; pid 0, cpu -1: this thread, on any CPU; no
        // group leader (-1).
        let fd = unsafe { libc::syscall(libc::SYS_perf_event_open, &attr, 0, -1, -1, FD_CLOEXEC) };
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::ENOENT) => "no hardware counter here (perf_event_open: ENOENT)".into(),
                _ => format!("perf_event_open: {e}"),
            });
        }
        // SAFETY: a new descriptor that nothing else owns.
        Ok(Counter(unsafe { File::from_raw_fd(fd as i32) }))
    }

    /// Instructions counted since [`open`](Self::open) (0 if the read fails).
    pub(crate) fn read(&mut self) -> u64 {
        let mut v = [0; 8];
        self.0.read_exact(&mut v).map_or(0, |()| u64::from_le_bytes(v))
    }
}
