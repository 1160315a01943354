//! The error type of `uring-buffers`.

/// `Result<T, uring_buffers::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `uring-buffers`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The ring refused (stopped, not supported, a register call failed).
    #[error(transparent)]
    Core(#[from] uring_core::Error),

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

    /// A registered buffer is in flight: an operation the kernel has not
    /// finished uses it. Hand that operation's CQE to
    /// `FixedBuffers::handle_cqe` first.
    #[error(
        "registered buffer {index} cannot be {access}: it is in flight (a {op} has not completed; hand its CQE to \
         FixedBuffers::handle_cqe first)"
    )]
    Busy {
        /// The buffer.
        index: u32,
        /// What was attempted.
        access: String,
        /// The operation holding it.
        op: &'static str,
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

    /// The kernel errno behind this error, if there is one (as
    /// [`uring_core::Error::raw_os_error`]).
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Core(e) => e.raw_os_error(),
            Error::Alloc { source, .. } => source.raw_os_error(),
            Error::LockedMemory { .. } => Some(libc::ENOMEM),
            _ => None,
        }
    }

    /// True for the ring's "nothing observable yet" outcome
    /// ([`uring_core::Error::WouldBlock`]).
    pub fn is_would_block(&self) -> bool {
        matches!(self, Error::Core(e) if e.is_would_block())
    }
}

impl From<Error> for std::io::Error {
    fn from(e: Error) -> Self {
        use std::io::ErrorKind;
        let kind = match e {
            Error::Core(e) => return e.into(),
            Error::Alloc { ref source, .. } => source.kind(),
            Error::InvalidArgument(_) => ErrorKind::InvalidInput,
            Error::LockedMemory { .. } => ErrorKind::OutOfMemory,
            Error::Busy { .. } => ErrorKind::ResourceBusy,
            Error::NotOwned { .. } => ErrorKind::InvalidInput,
        };
        std::io::Error::new(kind, e)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errnos_and_io_kinds_pass_through() {
        let core = Error::from(uring_core::Error::io("register", std::io::Error::from_raw_os_error(libc::EBUSY)));
        assert_eq!(core.raw_os_error(), Some(libc::EBUSY));
        assert_eq!(std::io::Error::from(core).kind(), std::io::ErrorKind::ResourceBusy);
        let wb = Error::from(uring_core::Error::WouldBlock);
        assert!(wb.is_would_block());
        assert_eq!(std::io::Error::from(wb).kind(), std::io::ErrorKind::WouldBlock);
        let locked = Error::LockedMemory { what: "buffers", asked: 4096, limit: "0 bytes".into() };
        assert_eq!(locked.raw_os_error(), Some(libc::ENOMEM));
        let busy = Error::Busy { index: 1, access: "written".into(), op: "read" };
        assert_eq!((busy.raw_os_error(), std::io::Error::from(busy).kind()), (None, std::io::ErrorKind::ResourceBusy));
        assert_eq!(std::io::Error::from(Error::invalid("x")).kind(), std::io::ErrorKind::InvalidInput);
    }
}
