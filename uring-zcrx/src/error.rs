//! The crate's error type.

use std::io;

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a zero-copy receive call failed. Each variant says what to change.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A ring-level failure (stopped ring, full submission queue, an
    /// unsupported opcode, an errno from a ring call).
    #[error(transparent)]
    Core(#[from] uring_core::Error),

    /// The configuration cannot work; checked before anything reaches the
    /// kernel.
    #[error("zero-copy receive configuration: {0}")]
    Config(String),

    /// The running kernel cannot do what was asked. `what` names the
    /// feature, `why` says what the kernel lacks and what would work.
    #[error("zero-copy receive: {what} is not supported by this kernel ({release}): {why}")]
    Unsupported {
        /// The feature, by its C name where it has one.
        what: &'static str,
        /// `uname -r`.
        release: String,
        /// What is missing, and what to do instead.
        why: String,
    },

    /// Registering an interface queue needs `CAP_NET_ADMIN` (the queue can
    /// see other processes' traffic).
    #[error(
        "zero-copy receive registration needs CAP_NET_ADMIN (EPERM): run as root, or grant the capability \
         (`setcap cap_net_admin+ep <binary>`)"
    )]
    Permission,

    /// The ring was not created the way zero-copy receive needs.
    #[error("zero-copy receive needs a ring with {0}")]
    RingSetup(&'static str),

    /// The named device or queue cannot do zero-copy receive.
    #[error("{device} RX queue {queue}: {why} ({source})")]
    Device {
        /// The interface, by name if it has one, else by index.
        device: String,
        /// The RX queue asked for.
        queue: u32,
        /// What the device lacks, and the fix.
        why: String,
        /// The kernel's errno.
        source: io::Error,
    },

    /// The receiver or instance is not in a state that allows the call.
    #[error("zero-copy receiver {id}: {what} (state {state:?})")]
    State {
        /// The receiver's id.
        id: u64,
        /// The state it is in.
        state: crate::ReceiverState,
        /// What was refused, and what to do first.
        what: &'static str,
    },

    /// The [`Zcrx`](crate::Zcrx) handle was closed; use another handle of
    /// the instance.
    #[error("zero-copy receive instance {id}: this handle was closed")]
    Closed {
        /// The instance id.
        id: u32,
    },

    /// The call named a ring other than the one the instance is
    /// registered with (compared by [`Ring::id`](uring_core::Ring::id), not
    /// by fd: a closed ring's fd number is reused, so the two fds may be
    /// equal).
    #[error(
        "zero-copy receive instance {id} is registered with another ring (fd {expected}), not the ring with fd {got}"
    )]
    WrongRing {
        /// The instance id.
        id: u32,
        /// Its ring's fd.
        expected: i32,
        /// The fd of the ring passed.
        got: i32,
    },

    /// A register call failed with an errno this crate has no better
    /// explanation for.
    #[error("{call}: {source}")]
    Io {
        /// The call, by its C name.
        call: &'static str,
        /// The errno.
        source: io::Error,
    },
}

impl Error {
    pub(crate) fn unsupported(what: &'static str, why: impl Into<String>) -> Self {
        Error::Unsupported { what, release: uring_core::kernel_release(), why: why.into() }
    }

    /// The errno behind this error, if the kernel gave one.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Core(e) => e.raw_os_error(),
            Error::Device { source, .. } | Error::Io { source, .. } => source.raw_os_error(),
            Error::Permission => Some(libc::EPERM),
            _ => None,
        }
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Core(e) => e.into(),
            Error::Io { source, .. } => source,
            e => {
                let kind = match &e {
                    Error::Config(_) | Error::RingSetup(_) | Error::WrongRing { .. } => io::ErrorKind::InvalidInput,
                    Error::Unsupported { .. } => io::ErrorKind::Unsupported,
                    Error::Permission => io::ErrorKind::PermissionDenied,
                    _ => io::ErrorKind::Other,
                };
                io::Error::new(kind, e)
            }
        }
    }
}
