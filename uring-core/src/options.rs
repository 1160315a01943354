//! Ring configuration: [`Options`] and the setup flags it turns into.

use std::os::fd::RawFd;
use std::time::Duration;

use uring_sys as sys;

use crate::error::{Error, Result};

bitflags::bitflags! {
    /// `IORING_SETUP_*` flags, as passed to `io_uring_setup(2)`. Unknown
    /// bits are kept, so a flag newer than this build is representable.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct SetupFlags: u32 {
        /// `IORING_SETUP_IOPOLL`: busy-poll for I/O completion (O_DIRECT on polled block devices).
        const IOPOLL = sys::IORING_SETUP_IOPOLL;
        /// `IORING_SETUP_SQPOLL`: a kernel thread polls the SQ.
        const SQPOLL = sys::IORING_SETUP_SQPOLL;
        /// `IORING_SETUP_SQ_AFF`: pin the SQPOLL thread to `sq_thread_cpu`.
        const SQ_AFF = sys::IORING_SETUP_SQ_AFF;
        /// `IORING_SETUP_CQSIZE`: CQ size from `cq_entries`.
        const CQSIZE = sys::IORING_SETUP_CQSIZE;
        /// `IORING_SETUP_CLAMP`: clamp entry counts to the maximum instead of failing.
        const CLAMP = sys::IORING_SETUP_CLAMP;
        /// `IORING_SETUP_ATTACH_WQ`: share the io-wq backend of `wq_fd`.
        const ATTACH_WQ = sys::IORING_SETUP_ATTACH_WQ;
        /// `IORING_SETUP_R_DISABLED`: start disabled until `IORING_REGISTER_ENABLE_RINGS`.
        const R_DISABLED = sys::IORING_SETUP_R_DISABLED;
        /// `IORING_SETUP_SUBMIT_ALL`: keep submitting a batch after an SQE fails.
        const SUBMIT_ALL = sys::IORING_SETUP_SUBMIT_ALL;
        /// `IORING_SETUP_COOP_TASKRUN`: no IPI to run task work.
        const COOP_TASKRUN = sys::IORING_SETUP_COOP_TASKRUN;
        /// `IORING_SETUP_TASKRUN_FLAG`: set `IORING_SQ_TASKRUN` when task work is pending.
        const TASKRUN_FLAG = sys::IORING_SETUP_TASKRUN_FLAG;
        /// `IORING_SETUP_SQE128`: 128-byte SQEs.
        const SQE128 = sys::IORING_SETUP_SQE128;
        /// `IORING_SETUP_CQE32`: 32-byte CQEs.
        const CQE32 = sys::IORING_SETUP_CQE32;
        /// `IORING_SETUP_SINGLE_ISSUER`: one task submits.
        const SINGLE_ISSUER = sys::IORING_SETUP_SINGLE_ISSUER;
        /// `IORING_SETUP_DEFER_TASKRUN`: task work runs only when the issuer waits.
        const DEFER_TASKRUN = sys::IORING_SETUP_DEFER_TASKRUN;
        /// `IORING_SETUP_NO_MMAP`: ring memory provided by the application.
        const NO_MMAP = sys::IORING_SETUP_NO_MMAP;
        /// `IORING_SETUP_REGISTERED_FD_ONLY`: return a registered ring index, no fd.
        const REGISTERED_FD_ONLY = sys::IORING_SETUP_REGISTERED_FD_ONLY;
        /// `IORING_SETUP_NO_SQARRAY`: no SQ index array.
        const NO_SQARRAY = sys::IORING_SETUP_NO_SQARRAY;
        /// `IORING_SETUP_HYBRID_IOPOLL`: sleep before polling.
        const HYBRID_IOPOLL = sys::IORING_SETUP_HYBRID_IOPOLL;
        /// `IORING_SETUP_CQE_MIXED`: 16- and 32-byte CQEs in one CQ.
        const CQE_MIXED = sys::IORING_SETUP_CQE_MIXED;
        /// `IORING_SETUP_SQE_MIXED`: 64- and 128-byte SQEs in one SQ (6.19+).
        const SQE_MIXED = sys::IORING_SETUP_SQE_MIXED;
        /// `IORING_SETUP_SQ_REWIND` (7.x, with `NO_SQARRAY`): the kernel
        /// reads the SQ from index 0 on every submit. The SQ code here
        /// does not rewind, so [`Options::extra_flags`] refuses it
        /// ([`Error::InvalidArgument`](crate::Error::InvalidArgument)
        /// naming it, before any syscall); it is listed for probing and decoding.
        const SQ_REWIND = sys::IORING_SETUP_SQ_REWIND;
        const _ = !0;
    }
}

/// The C name of one setup flag bit.
pub fn setup_flag_name(bit: u32) -> &'static str {
    match bit {
        sys::IORING_SETUP_IOPOLL => "IORING_SETUP_IOPOLL",
        sys::IORING_SETUP_SQPOLL => "IORING_SETUP_SQPOLL",
        sys::IORING_SETUP_SQ_AFF => "IORING_SETUP_SQ_AFF",
        sys::IORING_SETUP_CQSIZE => "IORING_SETUP_CQSIZE",
        sys::IORING_SETUP_CLAMP => "IORING_SETUP_CLAMP",
        sys::IORING_SETUP_ATTACH_WQ => "IORING_SETUP_ATTACH_WQ",
        sys::IORING_SETUP_R_DISABLED => "IORING_SETUP_R_DISABLED",
        sys::IORING_SETUP_SUBMIT_ALL => "IORING_SETUP_SUBMIT_ALL",
        sys::IORING_SETUP_COOP_TASKRUN => "IORING_SETUP_COOP_TASKRUN",
        sys::IORING_SETUP_TASKRUN_FLAG => "IORING_SETUP_TASKRUN_FLAG",
        sys::IORING_SETUP_SQE128 => "IORING_SETUP_SQE128",
        sys::IORING_SETUP_CQE32 => "IORING_SETUP_CQE32",
        sys::IORING_SETUP_SINGLE_ISSUER => "IORING_SETUP_SINGLE_ISSUER",
        sys::IORING_SETUP_DEFER_TASKRUN => "IORING_SETUP_DEFER_TASKRUN",
        sys::IORING_SETUP_NO_MMAP => "IORING_SETUP_NO_MMAP",
        sys::IORING_SETUP_REGISTERED_FD_ONLY => "IORING_SETUP_REGISTERED_FD_ONLY",
        sys::IORING_SETUP_NO_SQARRAY => "IORING_SETUP_NO_SQARRAY",
        sys::IORING_SETUP_HYBRID_IOPOLL => "IORING_SETUP_HYBRID_IOPOLL",
        sys::IORING_SETUP_CQE_MIXED => "IORING_SETUP_CQE_MIXED",
        sys::IORING_SETUP_SQE_MIXED => "IORING_SETUP_SQE_MIXED",
        sys::IORING_SETUP_SQ_REWIND => "IORING_SETUP_SQ_REWIND",
        _ => "unknown IORING_SETUP bit",
    }
}

/// The most SQ entries a ring may have (`IORING_MAX_ENTRIES`); CQs may
/// have twice as many. Larger requests fail unless [`Options::clamp`] is set.
pub const MAX_ENTRIES: u32 = 32768;
/// The most CQ entries (`IORING_MAX_CQ_ENTRIES`).
pub const MAX_CQ_ENTRIES: u32 = 2 * MAX_ENTRIES;
/// The most slots a context pool may have (allocated at `new`: 64 MiB of
/// indirect or 128 MiB of extended contexts at this size).
pub const MAX_CONTEXTS: u32 = 1 << 20;

/// Entry-count presets for [`Options::entries`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entries;

impl Entries {
    /// 64 SQ entries: a client, a control ring, a test.
    pub const SMALL: u32 = 64;
    /// 1024 SQ entries: a server thread's ring (the default).
    pub const MEDIUM: u32 = 1024;
    /// 8192 SQ entries: a proxy or storage engine thread with deep queues.
    pub const LARGE: u32 = 8192;
}

/// Completion-entry size of the CQ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CqeSize {
    /// 16-byte CQEs (the default).
    #[default]
    Normal,
    /// 32-byte CQEs (`IORING_SETUP_CQE32`), needed by `RECV_ZC`,
    /// `URING_CMD` passthrough results and `NOP` with `IORING_NOP_CQE32`.
    Big,
    /// 16-byte CQEs with 32-byte ones where an operation posts them
    /// (`IORING_SETUP_CQE_MIXED`, since 6.18).
    Mixed,
}

/// Completion polling mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IoPoll {
    /// Interrupt-driven completion (the default).
    #[default]
    Off,
    /// `IORING_SETUP_IOPOLL`: busy-poll for completions; only for O_DIRECT
    /// I/O on devices with polled queues.
    On,
    /// `IORING_SETUP_IOPOLL | IORING_SETUP_HYBRID_IOPOLL` (6.13): sleep
    /// for part of the expected latency before polling.
    Hybrid,
}

/// SQPOLL configuration: a kernel thread consumes the SQ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqPoll {
    /// How long the thread spins without work before sleeping
    /// (`sq_thread_idle`, millisecond resolution).
    pub idle: Duration,
    /// Pin the thread to this CPU (`IORING_SETUP_SQ_AFF`).
    pub cpu: Option<u32>,
}

impl Default for SqPoll {
    fn default() -> Self {
        SqPoll { idle: Duration::from_millis(1000), cpu: None }
    }
}

/// How a ring is set up. Build with [`Options::default`] (or a preset) and
/// the builder methods, then pass to [`Ring::new`](crate::Ring::new) or
/// [`SharedRing::new`](crate::SharedRing::new).
///
/// The defaults: [`Entries::MEDIUM`] SQ entries, a CQ twice that,
/// `SINGLE_ISSUER | DEFER_TASKRUN` (a [`Ring`](crate::Ring); a
/// [`SharedRing`](crate::SharedRing) uses `COOP_TASKRUN | TASKRUN_FLAG`
/// instead), `NO_SQARRAY`, 16-byte CQEs, 64-byte SQEs, no polling, and
/// context pools as large as the SQ.
#[derive(Debug, Clone)]
pub struct Options {
    pub(crate) entries: u32,
    pub(crate) cq_entries: Option<u32>,
    pub(crate) sqpoll: Option<SqPoll>,
    pub(crate) iopoll: IoPoll,
    pub(crate) sqe128: bool,
    pub(crate) cqe: CqeSize,
    pub(crate) no_sqarray: bool,
    pub(crate) submit_all: bool,
    pub(crate) clamp: bool,
    pub(crate) attach_wq: Option<RawFd>,
    pub(crate) no_mmap: bool,
    pub(crate) register_ring_fd: bool,
    pub(crate) defer_taskrun: Option<bool>,
    pub(crate) taskrun_flag: bool,
    pub(crate) indirect_contexts: Option<u32>,
    pub(crate) extended_contexts: Option<u32>,
    pub(crate) extra_flags: SetupFlags,
    pub(crate) dontfork: bool,
    /// Caller memory for a `NO_MMAP` ring: taken out (once) by the first
    /// ring created from these options (or a clone of them).
    pub(crate) no_mmap_memory: Option<std::sync::Arc<std::sync::Mutex<Option<crate::Mapping>>>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            entries: Entries::MEDIUM,
            cq_entries: None,
            sqpoll: None,
            iopoll: IoPoll::Off,
            sqe128: false,
            cqe: CqeSize::Normal,
            no_sqarray: true,
            submit_all: false,
            clamp: false,
            attach_wq: None,
            no_mmap: false,
            register_ring_fd: false,
            defer_taskrun: None,
            taskrun_flag: false,
            indirect_contexts: None,
            extended_contexts: None,
            extra_flags: SetupFlags::empty(),
            dontfork: false,
            no_mmap_memory: None,
        }
    }
}

/// Which kind of ring the options are turned into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Issuer {
    Single,
    Multi,
}

impl Options {
    /// [`Entries::SMALL`] entries, everything else default.
    pub fn small() -> Self {
        Options::default().entries(Entries::SMALL)
    }
    /// [`Entries::MEDIUM`] entries (the default).
    pub fn medium() -> Self {
        Options::default()
    }
    /// [`Entries::LARGE`] entries.
    pub fn large() -> Self {
        Options::default().entries(Entries::LARGE)
    }

    /// SQ entries: a power of two from 1 to [`MAX_ENTRIES`].
    pub fn entries(mut self, entries: u32) -> Self {
        self.entries = entries;
        self
    }
    /// CQ entries (`IORING_SETUP_CQSIZE`): a power of two, at least the SQ
    /// size, at most [`MAX_CQ_ENTRIES`]. Default: twice the SQ.
    pub fn cq_entries(mut self, cq_entries: u32) -> Self {
        self.cq_entries = Some(cq_entries);
        self
    }
    /// A kernel thread polls the SQ (`IORING_SETUP_SQPOLL`, with
    /// `IORING_SETUP_SQ_AFF` when a CPU is given). Turns deferred task run
    /// off (the kernel refuses the combination).
    pub fn sqpoll(mut self, sqpoll: SqPoll) -> Self {
        self.sqpoll = Some(sqpoll);
        self
    }
    /// Completion polling (`IORING_SETUP_IOPOLL`, `IORING_SETUP_HYBRID_IOPOLL`).
    pub fn iopoll(mut self, iopoll: IoPoll) -> Self {
        self.iopoll = iopoll;
        self
    }
    /// 128-byte SQEs (`IORING_SETUP_SQE128`), for `URING_CMD` payloads and `NOP128`.
    pub fn sqe128(mut self, on: bool) -> Self {
        self.sqe128 = on;
        self
    }
    /// CQE size: 16 bytes, 32 bytes (`CQE32`) or mixed (`CQE_MIXED`).
    pub fn cqe_size(mut self, size: CqeSize) -> Self {
        self.cqe = size;
        self
    }
    /// Leave out the SQ index array (`IORING_SETUP_NO_SQARRAY`, on by default).
    pub fn no_sqarray(mut self, on: bool) -> Self {
        self.no_sqarray = on;
        self
    }
    /// Keep submitting a batch after one SQE fails (`IORING_SETUP_SUBMIT_ALL`).
    pub fn submit_all(mut self, on: bool) -> Self {
        self.submit_all = on;
        self
    }
    /// Clamp entry counts to the kernel's maximum instead of failing
    /// (`IORING_SETUP_CLAMP`).
    pub fn clamp(mut self, on: bool) -> Self {
        self.clamp = on;
        self
    }
    /// Share the io-wq worker pool of another ring (`IORING_SETUP_ATTACH_WQ`).
    /// The fd must stay open until `new` returns.
    pub fn attach_wq(mut self, ring_fd: RawFd) -> Self {
        self.attach_wq = Some(ring_fd);
        self
    }
    /// Allocate the ring memory in the library and hand it to the kernel
    /// (`IORING_SETUP_NO_MMAP`) instead of mapping kernel memory.
    pub fn no_mmap(mut self, on: bool) -> Self {
        self.no_mmap = on;
        self
    }
    /// A `NO_MMAP` ring (this sets [`no_mmap`](Self::no_mmap)) in memory
    /// the caller supplies, for example 2 MiB huge pages from
    /// [`Mapping::anonymous(len, true)`](crate::Mapping::anonymous), as
    /// liburing's `io_uring_queue_init_mem`. The rings go at the start of
    /// `memory`, the SQE array at the next page boundary after them; it
    /// must hold [`memory_size`](Self::memory_size) bytes of these
    /// options (without this memory). The memory is zeroed at setup.
    ///
    /// Ownership moves into the ring: it stays mapped until the ring is
    /// closed and is unmapped after, so the kernel never writes to memory
    /// Rust has given back. Only the first ring created from these options
    /// (or a clone of them) gets it; a second one fails with
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument), as does
    /// memory that is not private anonymous (a
    /// [`Mapping::map_ring`](crate::Mapping::map_ring) mapping may be
    /// mapped again elsewhere) or too small. A failed setup drops it.
    pub fn no_mmap_memory(mut self, memory: crate::Mapping) -> Self {
        self.no_mmap = true;
        self.no_mmap_memory = Some(std::sync::Arc::new(std::sync::Mutex::new(Some(memory))));
        self
    }
    /// Keep the ring memory out of forked children (`madvise(MADV_DONTFORK)`
    /// on every ring mapping, as liburing's `io_uring_ring_dontfork`): a
    /// child of `fork(2)` then has no mapping at those addresses, so it
    /// cannot scribble on the parent's rings, and the parent's pages are
    /// not copied on write after the fork. Also applied to the mappings a
    /// resize creates. Off by default.
    pub fn dontfork(mut self, on: bool) -> Self {
        self.dontfork = on;
        self
    }
    /// Bytes of ring memory a ring created from these options uses: the
    /// rings (SQ and CQ heads, indices and CQEs) and the SQE array, each
    /// rounded up to whole pages, as liburing's `io_uring_memory_size`.
    /// That is the memory locked for the ring (`RLIMIT_MEMLOCK` on kernels
    /// before 5.12, the memory cgroup after), and the memory a
    /// [`no_mmap`](Self::no_mmap) ring allocates. The kernel alone knows
    /// the offsets, so this sets up (and closes at once) a throwaway ring
    /// of the same shape; with SQPOLL that starts a poller thread briefly.
    ///
    /// # Errors
    ///
    /// As for [`Ring::new`](crate::Ring::new): invalid options, flags the
    /// kernel rejects.
    pub fn memory_size(&self) -> Result<usize> {
        crate::core::Core::memory_size(self)
    }
    /// Register the ring fd at `start` (`IORING_REGISTER_RING_FDS`) and
    /// enter through the registered index (`IORING_ENTER_REGISTERED_RING`),
    /// which skips a file-table lookup per `io_uring_enter`.
    ///
    /// The registration belongs to the thread that calls `start` (the
    /// kernel keeps one table per thread, and the same index in another
    /// thread names that thread's ring, or nothing): a ring moved to
    /// another thread enters through its fd there, and a ring stopped or
    /// dropped in another thread leaves the registration to the first
    /// thread's exit (keeping the `Keep`s of entries it published and the
    /// kernel did not consume).
    pub fn register_ring_fd(mut self, on: bool) -> Self {
        self.register_ring_fd = on;
        self
    }
    /// Deferred task work (`IORING_SETUP_DEFER_TASKRUN`) for a single-issuer
    /// ring. On by default unless SQPOLL is set; `true` together with
    /// SQPOLL is an error.
    pub fn defer_taskrun(mut self, on: bool) -> Self {
        self.defer_taskrun = Some(on);
        self
    }
    /// `IORING_SETUP_TASKRUN_FLAG` on a ring with deferred task work: the
    /// kernel sets `IORING_SQ_TASKRUN` while completions wait as task work
    /// ([`Ring::task_work_pending`](crate::Ring::task_work_pending)), at
    /// the cost of one atomic OR per queued item. (Rings with cooperative
    /// task work have it always.) Off by default; since Linux 5.19.
    pub fn taskrun_flag(mut self, on: bool) -> Self {
        self.taskrun_flag = on;
        self
    }
    /// Capacity of the indirect-context pool (default: the SQ size).
    pub fn indirect_contexts(mut self, n: u32) -> Self {
        self.indirect_contexts = Some(n);
        self
    }
    /// Capacity of the extended-context pool (default: the SQ size).
    pub fn extended_contexts(mut self, n: u32) -> Self {
        self.extended_contexts = Some(n);
        self
    }

    /// Setup flags to pass on top of what the options above produce: for
    /// flags newer than this library's options (`SQE_MIXED`, …). A flag
    /// the kernel rejects fails `new` with [`Error::Unsupported`] naming
    /// it. Flags the options above control (entries, issuer, polling,
    /// sizes, memory) are refused here with [`Error::InvalidArgument`]:
    /// use their builder methods. [`SetupFlags::SQ_REWIND`] is refused
    /// with [`Error::InvalidArgument`] naming it, before any syscall: with it
    /// the kernel reads the SQ from index 0 on every submit, and this
    /// library's SQ (a running tail, each slot's [`Keep`](crate::Keep)
    /// cleared when the slot comes round again) does not rewind.
    pub fn extra_flags(mut self, flags: SetupFlags) -> Self {
        self.extra_flags = flags;
        self
    }

    pub(crate) fn pool_sizes(&self, sq_entries: u32) -> (u32, u32) {
        (self.indirect_contexts.unwrap_or(sq_entries), self.extended_contexts.unwrap_or(sq_entries))
    }

    /// Checks the options and turns them into `io_uring_params`, without a
    /// syscall.
    pub(crate) fn to_params(&self, issuer: Issuer) -> Result<(u32, sys::io_uring_params)> {
        let bad = |msg: String| Err(Error::InvalidArgument(msg));
        let max = if self.clamp { u32::MAX } else { MAX_ENTRIES };
        if self.entries == 0 {
            return bad("entries must be at least 1".into());
        }
        if !self.entries.is_power_of_two() {
            return bad(match self.entries.checked_next_power_of_two() {
                Some(up) => format!(
                    "entries must be a power of two, got {} (the kernel would round it up to {up})",
                    self.entries
                ),
                None => format!("entries must be a power of two, got {}", self.entries),
            });
        }
        if self.entries > max {
            return bad(format!("entries {} exceed the kernel maximum {MAX_ENTRIES} (or set clamp)", self.entries));
        }
        for (name, n) in [("indirect_contexts", self.indirect_contexts), ("extended_contexts", self.extended_contexts)]
        {
            if let Some(n) = n.filter(|n| *n > MAX_CONTEXTS) {
                return bad(format!("{name} {n} exceeds {MAX_CONTEXTS} slots (pools are allocated up front)"));
            }
        }
        let mut flags = SetupFlags::R_DISABLED;
        let mut p = sys::io_uring_params::default();
        if let Some(cq) = self.cq_entries {
            let cq_max = if self.clamp { u32::MAX } else { MAX_CQ_ENTRIES };
            if cq == 0 || !cq.is_power_of_two() {
                return bad(format!("cq_entries must be a non-zero power of two, got {cq}"));
            }
            if cq < self.entries {
                return bad(format!("cq_entries {cq} must be at least entries {}", self.entries));
            }
            if cq > cq_max {
                return bad(format!("cq_entries {cq} exceed the kernel maximum {MAX_CQ_ENTRIES} (or set clamp)"));
            }
            flags |= SetupFlags::CQSIZE;
            p.cq_entries = cq;
        }
        match issuer {
            Issuer::Single => {
                flags |= SetupFlags::SINGLE_ISSUER;
                let defer = match (self.defer_taskrun, self.sqpoll.is_some()) {
                    (Some(true), true) => {
                        return bad("defer_taskrun cannot be combined with sqpoll (the kernel refuses it)".into());
                    }
                    (Some(on), _) => on,
                    (None, sqpoll) => !sqpoll,
                };
                if defer {
                    flags |= SetupFlags::DEFER_TASKRUN;
                    if self.taskrun_flag {
                        flags |= SetupFlags::TASKRUN_FLAG;
                    }
                } else if self.sqpoll.is_none() {
                    flags |= SetupFlags::COOP_TASKRUN | SetupFlags::TASKRUN_FLAG;
                }
            }
            Issuer::Multi => {
                if self.defer_taskrun == Some(true) {
                    return bad("defer_taskrun needs a single-issuer Ring, not a SharedRing".into());
                }
                if self.register_ring_fd {
                    return bad("register_ring_fd is per thread; a SharedRing is entered from several threads".into());
                }
                if self.sqpoll.is_none() {
                    flags |= SetupFlags::COOP_TASKRUN | SetupFlags::TASKRUN_FLAG;
                }
            }
        }
        if let Some(sq) = self.sqpoll {
            flags |= SetupFlags::SQPOLL;
            let ms = sq.idle.as_millis();
            p.sq_thread_idle = u32::try_from(ms).map_err(|_| Error::InvalidArgument("sqpoll idle too long".into()))?;
            if let Some(cpu) = sq.cpu {
                flags |= SetupFlags::SQ_AFF;
                p.sq_thread_cpu = cpu;
            }
        }
        match self.iopoll {
            IoPoll::Off => {}
            IoPoll::On => flags |= SetupFlags::IOPOLL,
            IoPoll::Hybrid => flags |= SetupFlags::IOPOLL | SetupFlags::HYBRID_IOPOLL,
        }
        if self.sqe128 {
            flags |= SetupFlags::SQE128;
        }
        match self.cqe {
            CqeSize::Normal => {}
            CqeSize::Big => flags |= SetupFlags::CQE32,
            CqeSize::Mixed => flags |= SetupFlags::CQE_MIXED,
        }
        if self.no_sqarray {
            flags |= SetupFlags::NO_SQARRAY;
        }
        if self.submit_all {
            flags |= SetupFlags::SUBMIT_ALL;
        }
        if self.clamp {
            flags |= SetupFlags::CLAMP;
        }
        if let Some(fd) = self.attach_wq {
            if fd < 0 {
                return bad(format!("attach_wq needs a ring fd, got {fd}"));
            }
            flags |= SetupFlags::ATTACH_WQ;
            p.wq_fd = fd as u32;
        }
        if self.no_mmap {
            flags |= SetupFlags::NO_MMAP;
        }
        let owned = SetupFlags::IOPOLL
            | SetupFlags::SQPOLL
            | SetupFlags::SQ_AFF
            | SetupFlags::CQSIZE
            | SetupFlags::CLAMP
            | SetupFlags::ATTACH_WQ
            | SetupFlags::R_DISABLED
            | SetupFlags::COOP_TASKRUN
            | SetupFlags::TASKRUN_FLAG
            | SetupFlags::SQE128
            | SetupFlags::CQE32
            | SetupFlags::SINGLE_ISSUER
            | SetupFlags::DEFER_TASKRUN
            | SetupFlags::NO_MMAP
            | SetupFlags::REGISTERED_FD_ONLY
            | SetupFlags::HYBRID_IOPOLL
            | SetupFlags::CQE_MIXED;
        if self.extra_flags.intersects(owned) {
            return bad(format!(
                "extra_flags {:?} include flags that Options controls; use its builder methods",
                self.extra_flags & owned
            ));
        }
        if self.extra_flags.contains(SetupFlags::SQ_REWIND) {
            // The kernel would read entry 0 onwards on every submit while
            // the SQ code keeps filling slots after its running tail.
            return bad("extra_flags: IORING_SETUP_SQ_REWIND is not supported by this library (its SQ does not \
                 rewind to index 0 on every submit, as the kernel then reads it)"
                .into());
        }
        flags |= self.extra_flags;
        p.flags = flags.bits();
        Ok((self.entries, p))
    }
}

/// The flags that need a partner flag or argument to be accepted alone, and
/// that partner: used to probe each flag in isolation.
pub(crate) fn probe_params(flag: u32) -> Option<sys::io_uring_params> {
    let mut p = sys::io_uring_params { flags: flag, ..Default::default() };
    match flag {
        sys::IORING_SETUP_SQ_AFF => p.flags |= sys::IORING_SETUP_SQPOLL,
        sys::IORING_SETUP_CQSIZE => p.cq_entries = 8,
        sys::IORING_SETUP_TASKRUN_FLAG => p.flags |= sys::IORING_SETUP_COOP_TASKRUN,
        sys::IORING_SETUP_DEFER_TASKRUN => p.flags |= sys::IORING_SETUP_SINGLE_ISSUER,
        sys::IORING_SETUP_HYBRID_IOPOLL => p.flags |= sys::IORING_SETUP_IOPOLL,
        // 7.x rewinds the SQ only for rings without the index array.
        sys::IORING_SETUP_SQ_REWIND => p.flags |= sys::IORING_SETUP_NO_SQARRAY,
        // Need a second ring's fd or user memory: probed by the caller.
        sys::IORING_SETUP_ATTACH_WQ | sys::IORING_SETUP_NO_MMAP | sys::IORING_SETUP_REGISTERED_FD_ONLY => return None,
        _ => {}
    }
    Some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(o: Options) -> String {
        match o.to_params(Issuer::Single) {
            Err(Error::InvalidArgument(m)) => m,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn bad_entry_counts_are_rejected_before_any_syscall() {
        assert!(err(Options::default().entries(0)).contains("at least 1"));
        assert!(err(Options::default().entries(100)).contains("round it up to 128"));
        assert!(err(Options::default().entries(65536)).contains("maximum 32768"));
        assert!(err(Options::default().entries(64).cq_entries(32)).contains("at least entries"));
        assert!(err(Options::default().entries(64).cq_entries(96)).contains("power of two"));
        assert!(err(Options::default().cq_entries(1 << 20)).contains("maximum 65536"));
        assert!(Options::default().entries(65536).clamp(true).to_params(Issuer::Single).is_ok());
    }

    #[test]
    fn contradictory_flags_are_rejected() {
        assert!(err(Options::default().sqpoll(SqPoll::default()).defer_taskrun(true)).contains("sqpoll"));
        let shared = Options::default().register_ring_fd(true).to_params(Issuer::Multi);
        assert!(matches!(shared, Err(Error::InvalidArgument(m)) if m.contains("per thread")));
        assert!(err(Options::default().attach_wq(-1)).contains("attach_wq"));
        assert!(err(Options::default().extended_contexts(u32::MAX)).contains("extended_contexts"));
        assert!(err(Options::default().entries(u32::MAX)).contains("power of two"));
    }

    #[test]
    fn sq_rewind_is_refused_by_name_before_any_syscall() {
        for issuer in [Issuer::Single, Issuer::Multi] {
            match Options::default().extra_flags(SetupFlags::SQ_REWIND | SetupFlags::SUBMIT_ALL).to_params(issuer) {
                Err(Error::InvalidArgument(m)) => {
                    assert!(m.contains("IORING_SETUP_SQ_REWIND") && m.contains("not supported by this library"), "{m}");
                }
                other => panic!("expected InvalidArgument naming SQ_REWIND, got {other:?}"),
            }
        }
    }

    #[test]
    fn defaults_are_single_issuer_deferred_without_sq_array() {
        let (entries, p) = Options::default().to_params(Issuer::Single).unwrap();
        assert_eq!(entries, Entries::MEDIUM);
        let f = SetupFlags::from_bits_retain(p.flags);
        assert!(f.contains(
            SetupFlags::R_DISABLED | SetupFlags::SINGLE_ISSUER | SetupFlags::DEFER_TASKRUN | SetupFlags::NO_SQARRAY
        ));
        let (_, p) = Options::default().to_params(Issuer::Multi).unwrap();
        let f = SetupFlags::from_bits_retain(p.flags);
        assert!(f.contains(SetupFlags::COOP_TASKRUN | SetupFlags::TASKRUN_FLAG));
        assert!(!f.intersects(SetupFlags::SINGLE_ISSUER | SetupFlags::DEFER_TASKRUN));
        let (_, p) = Options::default()
            .sqpoll(SqPoll { idle: Duration::from_millis(20), cpu: Some(0) })
            .to_params(Issuer::Single)
            .unwrap();
        let f = SetupFlags::from_bits_retain(p.flags);
        assert!(f.contains(SetupFlags::SQPOLL | SetupFlags::SQ_AFF));
        assert!(!f.contains(SetupFlags::DEFER_TASKRUN));
        assert_eq!(p.sq_thread_idle, 20);
    }
}
