//! The error type of `uring-buffers`.

/// `Result<T, uring_buffers::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `uring-buffers`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The ring refused (stopped, not supported, a register call failed).
    #[error(transparent)]
    Ring(#[from] uring_core::Error),

    /// The arguments were rejected before any syscall.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// Memory for the buffers could not be obtained.
    #[error("cannot allocate {bytes} bytes for {what}: {source}{}", if *.huge { " (huge pages: is vm.nr_hugepages large enough?)" } else { "" })]
    Alloc {
        /// What the memory was for.
        what: &'static str,
        /// How much was asked.
        bytes: usize,
        /// Whether huge pages were asked for.
        huge: bool,
        /// The errno of `mmap`.
        source: std::io::Error,
    },

    /// Registration was refused for lack of locked memory (`ENOMEM`).
    #[error(
        "registering {what} needs {asked} bytes of locked memory, more than RLIMIT_MEMLOCK ({limit}) allows: raise \
         it (`ulimit -l`, LimitMEMLOCK= for a systemd service, --ulimit memlock= for a container; SETUP.md §3, \
         locked memory) or register a smaller budget"
    )]
    LockedMemory {
        /// What was being registered.
        what: &'static str,
        /// Bytes asked for (whole pages).
        asked: usize,
        /// The soft `RLIMIT_MEMLOCK`, as text.
        limit: String,
    },

    /// A completion named a buffer this ring does not hand out now: not
    /// from this group, not in the kernel's hands (returned twice), or out
    /// of range.
    #[error("buffer {bid} of group {group}: {why}")]
    NotOwned {
        /// The group.
        group: u16,
        /// The buffer id.
        bid: u16,
        /// What is wrong with it.
        why: &'static str,
    },
}

impl Error {
    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidArgument(msg.into())
    }
}

/// The soft `RLIMIT_MEMLOCK`, as text.
pub(crate) fn memlock_limit() -> String {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r) } != 0 {
        return "unknown".into();
    }
    if r.rlim_cur == libc::RLIM_INFINITY { "unlimited".into() } else { format!("{} bytes", r.rlim_cur) }
}
