//! The error type of `uring-core`.
//!
//! Every variant says what happened and what to do about it. Setup failures
//! that depend on the machine (locked-memory limit, the
//! `kernel.io_uring_disabled` sysctl, a seccomp filter, an old kernel) point
//! to the matching section of SETUP.md.
//!
//! Completion results are not errors of this type: a [`Cqe`](crate::Cqe)
//! keeps the kernel's raw `i32`, and [`Cqe::error`](crate::Cqe::error)
//! converts it on request.

use std::io;

/// `Result<T, uring_core::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `uring-core`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Nothing is observable yet: no completion is ready (or the timeout of
    /// a bounded wait passed first). Not a failure; poll again, park, or do
    /// other work, as the caller's policy decides.
    #[error("no completion is observable yet (would block)")]
    WouldBlock,

    /// The submission queue has no free entry. Submit (or wait) to let the
    /// kernel consume entries, then acquire again. The library never
    /// flushes on its own to make room.
    #[error("the submission queue is full ({entries} entries); submit before acquiring more")]
    QueueFull {
        /// The SQ size.
        entries: u32,
    },

    /// The ring was stopped; every call after `stop` returns this.
    #[error("the ring is stopped")]
    Stopped,

    /// The ring was created but `start` has not been called yet.
    #[error("the ring is not started yet: call `start` after registering resources")]
    NotStarted,

    /// `start` was called on a ring that is already running.
    #[error("the ring is already started")]
    AlreadyStarted,

    /// The call is only valid on a ring that has not been started (for
    /// example restrictions, which the kernel accepts only while the ring is
    /// disabled).
    #[error("{what} is only possible before `start`")]
    AlreadyEnabled {
        /// The call that was attempted.
        what: &'static str,
    },

    /// The options or arguments were rejected before any syscall.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// The running kernel does not support a setup flag, opcode, register
    /// call or feature. `what` names it (for example `IORING_SETUP_SQE_MIXED`
    /// or `IORING_OP_NOP128`).
    #[error("not supported by this kernel ({release}): {what}{}", hint_suffix(.hint))]
    Unsupported {
        /// The flag, opcode or call, by its C name.
        what: String,
        /// `uname -r` of the running kernel.
        release: String,
        /// What would make it work, if anything.
        hint: Option<&'static str>,
    },

    /// Ring setup failed with `ENOMEM`: the locked-memory limit
    /// (`RLIMIT_MEMLOCK`) or the memory cgroup is too small for the rings.
    #[error(
        "io_uring_setup failed with ENOMEM for {sq_entries} SQ / {cq_entries} CQ entries: the locked-memory limit \
         (RLIMIT_MEMLOCK, now {limit}) or the memory cgroup is too small; use fewer entries or raise the limit \
         (SETUP.md §3, locked memory)"
    )]
    LockedMemory {
        /// SQ entries asked for.
        sq_entries: u32,
        /// CQ entries asked for.
        cq_entries: u32,
        /// The soft `RLIMIT_MEMLOCK`, as text (`unlimited` or bytes).
        limit: String,
    },

    /// io_uring is turned off for this process by the
    /// `kernel.io_uring_disabled` sysctl (1: only the `io_uring_group`
    /// group and root; 2: nobody).
    #[error(
        "io_uring is disabled by kernel.io_uring_disabled = {value} (0 allows everyone, 1 only root and \
         kernel.io_uring_group); set it with `sysctl -w kernel.io_uring_disabled=0` (SETUP.md §2)"
    )]
    Disabled {
        /// The sysctl's value.
        value: u32,
    },

    /// The io_uring syscalls are blocked by a seccomp filter (container
    /// runtimes' default profiles do this).
    #[error(
        "the io_uring syscalls are blocked ({errno}): a seccomp filter is active (Seccomp: {seccomp} in \
         /proc/self/status); allow io_uring_setup/enter/register in the container's profile (SETUP.md §4, containers \
         and seccomp)"
    )]
    Blocked {
        /// The errno the syscall returned (`EPERM` or `ENOSYS`).
        errno: io::Error,
        /// The seccomp mode from `/proc/self/status`.
        seccomp: String,
    },

    /// The kernel has no io_uring at all (`ENOSYS` without a seccomp
    /// filter): too old, or built without `CONFIG_IO_URING`.
    #[error(
        "this kernel ({release}) has no io_uring (ENOSYS); uring needs Linux 6.18 or later built with CONFIG_IO_URING \
         (SETUP.md §1)"
    )]
    NoIoUring {
        /// `uname -r`.
        release: String,
    },

    /// A context pool has no free slot. Return contexts of completed
    /// operations, or size the pool larger in `Options`.
    #[error("the {pool} context pool is exhausted ({capacity} slots in use)")]
    PoolExhausted {
        /// `"indirect"` or `"extended"`.
        pool: &'static str,
        /// The pool's fixed capacity.
        capacity: u32,
    },

    /// A single-issuer ring was used from a thread other than the one that
    /// started it. The kernel binds an `IORING_SETUP_SINGLE_ISSUER` ring to
    /// the thread that enables it and refuses submissions and registrations
    /// from any other (`EEXIST`).
    #[error(
        "{call} from a thread other than the one that started this single-issuer ring: the kernel accepts it only \
         from that thread (IORING_SETUP_SINGLE_ISSUER); call `start` on the thread that drives the ring (a Ring may \
         move freely before `start`), or use a SharedRing"
    )]
    WrongThread {
        /// The syscall or register opcode.
        call: &'static str,
    },

    /// A pooled context was returned twice, or does not belong to this
    /// ring's pools (stale generation, foreign `user_data`).
    #[error("the context does not name a live slot of this ring's pools (returned twice, or foreign)")]
    StaleContext,

    /// A syscall failed. `call` names it (`io_uring_enter`,
    /// `IORING_REGISTER_FILES2`, `mmap`, …).
    #[error("{call}: {source}")]
    Io {
        /// The syscall or register opcode.
        call: &'static str,
        /// The kernel's errno.
        #[source]
        source: io::Error,
    },
}

fn hint_suffix(hint: &Option<&'static str>) -> String {
    hint.map(|h| format!(" ({h})")).unwrap_or_default()
}

impl Error {
    /// True for [`Error::WouldBlock`], the "nothing observable yet" outcome.
    pub fn is_would_block(&self) -> bool {
        matches!(self, Error::WouldBlock)
    }

    /// The kernel errno behind this error, if there is one.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Io { source, .. } | Error::Blocked { errno: source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// An [`Error::Io`] for `call` (used by the layers above for their own
    /// syscalls and register calls).
    pub fn io(call: &'static str, source: io::Error) -> Self {
        Error::Io { call, source }
    }

    /// An [`Error::Unsupported`] naming `what` on the running kernel.
    pub fn unsupported(what: impl Into<String>, hint: Option<&'static str>) -> Self {
        Error::Unsupported { what: what.into(), release: crate::features::kernel_release(), hint }
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> Self {
        let kind = match &e {
            Error::WouldBlock => io::ErrorKind::WouldBlock,
            Error::Io { source, .. } => return io::Error::new(source.kind(), e),
            Error::InvalidArgument(_) => io::ErrorKind::InvalidInput,
            Error::Unsupported { .. } | Error::NoIoUring { .. } => io::ErrorKind::Unsupported,
            Error::Disabled { .. } | Error::Blocked { .. } => io::ErrorKind::PermissionDenied,
            Error::LockedMemory { .. } => io::ErrorKind::OutOfMemory,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}

/// Turns a failed `io_uring_setup` into the actionable variant.
pub(crate) fn setup_error(source: io::Error, sq_entries: u32, cq_entries: u32) -> Error {
    match source.raw_os_error() {
        Some(libc::ENOMEM) => Error::LockedMemory { sq_entries, cq_entries, limit: memlock_limit() },
        Some(libc::EPERM) | Some(libc::ENOSYS) => {
            let disabled = read_trimmed("/proc/sys/kernel/io_uring_disabled").and_then(|s| s.parse::<u32>().ok());
            let seccomp = seccomp_mode();
            match (source.raw_os_error(), disabled) {
                (Some(libc::EPERM), Some(value)) if value != 0 => Error::Disabled { value },
                _ if seccomp.as_deref().is_some_and(|m| m != "0") => {
                    Error::Blocked { errno: source, seccomp: seccomp.unwrap_or_default() }
                }
                (Some(libc::ENOSYS), _) => Error::NoIoUring { release: crate::features::kernel_release() },
                _ => Error::io("io_uring_setup", source),
            }
        }
        _ => Error::io("io_uring_setup", source),
    }
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_owned())
}

/// The `Seccomp:` mode of this process (0 none, 1 strict, 2 filter).
pub(crate) fn seccomp_mode() -> Option<String> {
    // thread-self: seccomp filters belong to threads, and the calling thread
    // is the one whose syscall was refused.
    let status = std::fs::read_to_string("/proc/thread-self/status").ok()?;
    status.lines().find_map(|l| l.strip_prefix("Seccomp:")).map(|v| v.trim().to_owned())
}

/// The soft `RLIMIT_MEMLOCK`, as text.
pub(crate) fn memlock_limit() -> String {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `lim` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } != 0 {
        return "unknown".into();
    }
    if lim.rlim_cur == libc::RLIM_INFINITY { "unlimited".into() } else { format!("{} bytes", lim.rlim_cur) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_errnos_map_to_actionable_variants() {
        let e = setup_error(io::Error::from_raw_os_error(libc::ENOMEM), 64, 128);
        assert!(matches!(&e, Error::LockedMemory { sq_entries: 64, cq_entries: 128, .. }), "{e:?}");
        assert!(e.to_string().contains("RLIMIT_MEMLOCK") && e.to_string().contains("SETUP.md §3"));
        // This test thread has no seccomp filter, and the sysctl is 0 on a
        // machine where the suite runs, so ENOSYS means "no io_uring".
        if seccomp_mode().as_deref() == Some("0") {
            let e = setup_error(io::Error::from_raw_os_error(libc::ENOSYS), 64, 128);
            assert!(matches!(e, Error::NoIoUring { .. }), "{e:?}");
            assert!(e.to_string().contains("6.18"));
        }
        let e = setup_error(io::Error::from_raw_os_error(libc::EFAULT), 64, 128);
        assert_eq!(e.raw_os_error(), Some(libc::EFAULT));
        assert!(e.to_string().starts_with("io_uring_setup"));
        assert_eq!(io::Error::from(Error::WouldBlock).kind(), io::ErrorKind::WouldBlock);
    }
}
