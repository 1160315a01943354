//! NAPI busy polling with a tracking strategy and static NAPI ids:
//! [`Registrar::register_napi`], [`Registrar::napi_add_id`],
//! [`Registrar::napi_del_id`] (`IORING_REGISTER_NAPI` with an
//! `io_uring_napi_op`, since Linux 6.13), beside the older
//! [`Registrar::napi`] / [`Registrar::unregister_napi`] (6.9).
//!
//! What the kernel does (`io_uring/napi.c`):
//!
//! - Every `IORING_REGISTER_NAPI` call first writes the settings in force
//!   (busy-poll time, prefer flag, tracking strategy) back into the
//!   argument, then performs its operation: so each call here returns the
//!   previous settings.
//! - Registering with a strategy empties the ring's list of NAPI ids and
//!   sets the strategy, the busy-poll time and the prefer flag. Only
//!   [`NapiTracking::DYNAMIC`] and [`NapiTracking::STATIC`] can be
//!   registered; [`NapiTracking::INACTIVE`] is the state of a ring that
//!   never registered or has unregistered (`-EINVAL` otherwise, which
//!   [`Registrar::register_napi`] reports up front).
//! - Dynamic tracking adds the NAPI id of every socket the ring polls and
//!   drops ids unused for 60 s; static tracking busy-polls exactly the ids
//!   added with [`Registrar::napi_add_id`] until they are deleted.
//! - Adding or deleting an id needs static tracking (`-EINVAL`); an id
//!   below `MIN_NAPI_ID` (`NR_CPUS + 1`: sender-CPU values, not NAPI
//!   instances; 0 is "no NAPI", what a loopback socket reports) is
//!   `-EINVAL`; adding an id already there is `-EEXIST`, deleting one that
//!   is not there `-ENOENT`. The kernel does not check that an id names a
//!   live NAPI instance.
//! - `IORING_UNREGISTER_NAPI` returns the busy-poll time and prefer flag
//!   (not the strategy) and leaves the ring inactive.
//!
//! All of these copy a 16-byte `io_uring_napi` during the call and keep no
//! address: they are safe.

use std::fmt;

use uring_sys as sys;

use crate::core::State;
use crate::error::{Error, Result};
use crate::register::{Napi, Registrar};

/// How a ring finds the NAPI instances it busy-polls
/// (`enum io_uring_napi_tracking_strategy`, since Linux 6.13).
///
/// A newtype over the kernel's value, not an enum: a value a newer kernel
/// reports is kept as it is ([`raw`](Self::raw)).
#[doc(alias = "io_uring_napi_tracking_strategy")]
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct NapiTracking(u32);

impl NapiTracking {
    /// `IO_URING_NAPI_TRACKING_DYNAMIC`: the ring adds the NAPI id of each
    /// socket it polls, and forgets ids idle for 60 s.
    #[doc(alias = "IO_URING_NAPI_TRACKING_DYNAMIC")]
    pub const DYNAMIC: NapiTracking = NapiTracking(sys::IO_URING_NAPI_TRACKING_DYNAMIC);
    /// `IO_URING_NAPI_TRACKING_STATIC`: the ring busy-polls exactly the ids
    /// given with [`Registrar::napi_add_id`].
    #[doc(alias = "IO_URING_NAPI_TRACKING_STATIC")]
    pub const STATIC: NapiTracking = NapiTracking(sys::IO_URING_NAPI_TRACKING_STATIC);
    /// `IO_URING_NAPI_TRACKING_INACTIVE`: no busy polling; the state before
    /// any registration and after [`Registrar::unregister_napi`]. Not a
    /// strategy one can register.
    #[doc(alias = "IO_URING_NAPI_TRACKING_INACTIVE")]
    pub const INACTIVE: NapiTracking = NapiTracking(sys::IO_URING_NAPI_TRACKING_INACTIVE);

    /// The strategy with the kernel's value `raw`.
    #[inline]
    pub const fn from_raw(raw: u32) -> Self {
        NapiTracking(raw)
    }

    /// The kernel's value.
    #[inline]
    pub const fn raw(self) -> u32 {
        self.0
    }

    fn name(self) -> Option<&'static str> {
        match self {
            NapiTracking::DYNAMIC => Some("DYNAMIC"),
            NapiTracking::STATIC => Some("STATIC"),
            NapiTracking::INACTIVE => Some("INACTIVE"),
            _ => None,
        }
    }
}

impl fmt::Debug for NapiTracking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "NapiTracking::{n}"),
            None => write!(f, "NapiTracking({})", self.0),
        }
    }
}

/// A ring's NAPI settings as `IORING_REGISTER_NAPI` reports them
/// (`struct io_uring_napi`): what [`Registrar::register_napi`],
/// [`napi_add_id`](Registrar::napi_add_id) and
/// [`napi_del_id`](Registrar::napi_del_id) return, the settings in force
/// before the call.
#[doc(alias = "io_uring_napi")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NapiSettings {
    /// The busy-poll time and the prefer flag.
    pub napi: Napi,
    /// The tracking strategy.
    pub tracking: NapiTracking,
}

/// The first kernel with tracking strategies and static ids.
const STRATEGIES: (u32, u32) = (6, 13);

impl Registrar<'_> {
    /// Turns on NAPI busy polling with a tracking strategy
    /// (`IORING_REGISTER_NAPI` with `IO_URING_NAPI_REGISTER_OP`):
    /// `io_uring_register_napi` with `opcode` and `op_param` set. Since
    /// Linux 6.13 for the strategy (6.9 for NAPI busy polling; on 6.9–6.12
    /// [`napi`](Self::napi) is the dynamic form). Empties the ring's list
    /// of NAPI ids; returns the settings in force before.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for [`NapiTracking::INACTIVE`] or a value
    /// the kernel does not define (use
    /// [`unregister_napi`](Self::unregister_napi) to stop busy polling),
    /// and on an `IOPOLL` ring (the kernel refuses NAPI there);
    /// [`Error::Unsupported`] before Linux 6.13, or on a kernel built
    /// without `CONFIG_NET_RX_BUSY_POLL`; [`Error::Stopped`]; otherwise
    /// [`Error::Io`] naming `IORING_REGISTER_NAPI`.
    #[doc(alias = "io_uring_register_napi")]
    #[doc(alias = "IORING_REGISTER_NAPI")]
    #[doc(alias = "IO_URING_NAPI_REGISTER_OP")]
    pub fn register_napi(&self, napi: Napi, tracking: NapiTracking) -> Result<NapiSettings> {
        if tracking != NapiTracking::DYNAMIC && tracking != NapiTracking::STATIC {
            return Err(Error::InvalidArgument(format!(
                "register_napi with {tracking:?}: only DYNAMIC and STATIC tracking can be registered (the kernel \
                 answers EINVAL); unregister_napi stops busy polling"
            )));
        }
        self.napi_op("IORING_REGISTER_NAPI", sys::IO_URING_NAPI_REGISTER_OP, napi, tracking.raw())
    }

    /// Adds NAPI instance `id` to the ring's static list
    /// (`IORING_REGISTER_NAPI` with `IO_URING_NAPI_STATIC_ADD_ID`), since
    /// Linux 6.13. The ring must be registered with
    /// [`NapiTracking::STATIC`]. An id comes from `SO_INCOMING_NAPI_ID` on
    /// a socket that received through a NAPI-driven device; the kernel
    /// does not check that it names a live instance. Returns the settings
    /// in force (unchanged).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] naming `IO_URING_NAPI_STATIC_ADD_ID` with `EINVAL`
    /// (the ring's tracking is not static, or `id` is below the kernel's
    /// `MIN_NAPI_ID`, as 0 — no NAPI — is) or `EEXIST` (already added);
    /// [`Error::Unsupported`], [`Error::InvalidArgument`] and
    /// [`Error::Stopped`] as for [`register_napi`](Self::register_napi).
    #[doc(alias = "IO_URING_NAPI_STATIC_ADD_ID")]
    #[doc(alias = "io_uring_register_napi")]
    pub fn napi_add_id(&self, id: u32) -> Result<NapiSettings> {
        self.napi_op("IO_URING_NAPI_STATIC_ADD_ID", sys::IO_URING_NAPI_STATIC_ADD_ID, Napi::default(), id)
    }

    /// Removes NAPI instance `id` from the ring's static list
    /// (`IORING_REGISTER_NAPI` with `IO_URING_NAPI_STATIC_DEL_ID`), since
    /// Linux 6.13. Returns the settings in force (unchanged).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] naming `IO_URING_NAPI_STATIC_DEL_ID` with `ENOENT`
    /// (`id` is not in the list) or `EINVAL` (not static tracking, or an
    /// id below `MIN_NAPI_ID`); otherwise as for
    /// [`napi_add_id`](Self::napi_add_id).
    #[doc(alias = "IO_URING_NAPI_STATIC_DEL_ID")]
    #[doc(alias = "io_uring_register_napi")]
    pub fn napi_del_id(&self, id: u32) -> Result<NapiSettings> {
        self.napi_op("IO_URING_NAPI_STATIC_DEL_ID", sys::IO_URING_NAPI_STATIC_DEL_ID, Napi::default(), id)
    }

    fn napi_op(&self, name: &'static str, opcode: u32, napi: Napi, op_param: u32) -> Result<NapiSettings> {
        let core = self.core();
        if core.state == State::Stopped {
            return Err(Error::Stopped);
        }
        if let Some(v) = core.features.kernel_version()
            && v < STRATEGIES
        {
            return Err(Error::unsupported(
                format!("{name} with an io_uring_napi_op (needs Linux {}.{})", STRATEGIES.0, STRATEGIES.1),
                Some("on 6.9-6.12, Registrar::napi registers dynamic tracking"),
            ));
        }
        if core.iopoll {
            return Err(Error::InvalidArgument(format!(
                "{name} on an IOPOLL ring: the kernel refuses NAPI busy polling there (EINVAL)"
            )));
        }
        let mut reg = sys::io_uring_napi {
            busy_poll_to: napi.busy_poll_usec,
            prefer_busy_poll: u8::from(napi.prefer_busy_poll),
            opcode: opcode as u8,
            op_param,
            ..Default::default()
        };
        let r = self.call(name, sys::IORING_REGISTER_NAPI, (&raw mut reg).cast_const().cast(), 1);
        match r {
            Ok(_) => Ok(NapiSettings {
                napi: Napi { busy_poll_usec: reg.busy_poll_to, prefer_busy_poll: reg.prefer_busy_poll != 0 },
                tracking: NapiTracking(reg.op_param),
            }),
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                Err(Error::unsupported(format!("{name} (the kernel is built without CONFIG_NET_RX_BUSY_POLL)"), None))
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracking_values_are_the_uapi_ones_and_unknown_ones_survive() {
        assert_eq!(NapiTracking::DYNAMIC.raw(), 0);
        assert_eq!(NapiTracking::STATIC.raw(), 1);
        assert_eq!(NapiTracking::INACTIVE.raw(), 255);
        assert_eq!(NapiTracking::from_raw(7).raw(), 7);
        assert_eq!(format!("{:?}", NapiTracking::STATIC), "NapiTracking::STATIC");
        assert_eq!(format!("{:?}", NapiTracking::from_raw(7)), "NapiTracking(7)");
    }
}
