//! io_uring zero-copy receive (zcrx): the kernel receives TCP data into an
//! area of memory this crate owns, hands each chunk over as a 32-byte CQE
//! naming where it is, and takes the memory back when the caller releases
//! it through the refill ring.
//!
//! - [`ZcrxSupport`] asks the kernel what it supports
//!   (`IORING_REGISTER_QUERY` where it exists).
//! - [`Zcrx`] registers an instance (`IORING_REGISTER_ZCRX_IFQ`) on a
//!   device RX queue, or with no device (`ZCRX_REG_NODEV`, copy mode,
//!   Linux 7.2+): the area, the refill ring ([`RefillRing`]), flushing,
//!   export and import, statistics.
//! - [`ZcrxReceiver`] runs one socket's multishot `RECV_ZC` with a
//!   [`ZcrxHandler`] through Idle → Active → Stopping → Retiring → Stopped.
//! - [`ZcrxBuffer`] is a delivered chunk: read it, then release or drop it.
//!
//! The ring must have `DEFER_TASKRUN` (the default single-issuer
//! [`Options`](uring_core::Options)) and 32-byte or mixed CQEs
//! ([`CqeSize::Big`](uring_core::CqeSize) or `Mixed`). Registration needs
//! `CAP_NET_ADMIN`.
//!
//! All memory is the library's and stays mapped as long as the kernel or
//! any buffer can use it, so every API here is safe.

#![cfg(target_os = "linux")]

mod error;
pub mod query;
pub mod receiver;
pub mod refill;
pub mod zcrx;

pub use error::{Error, Result};
pub use query::{ZcrxQuery, ZcrxSupport};
pub use receiver::{ReceiverState, ZcrxEnd, ZcrxHandler, ZcrxReceiver, is_zcrx_token};
pub use refill::{MAX_REFILL_ENTRIES, RefillOffsets, RefillRing};
pub use zcrx::{AreaMemory, ExportedZcrx, RefillFull, Zcrx, ZcrxBuffer, ZcrxConfig, ZcrxStats, ZcrxTarget};

/// The README's examples, compiled as doctests so they stay true (here, in
/// the highest crate: every crate they use is a dependency or, for
/// uring-buffers, a dev-dependency).
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
