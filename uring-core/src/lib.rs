//! io_uring rings: setup, lifecycle, submission, completion, submission
//! identity, and the ring's own register calls.
//!
//! This is the second layer of the `uring` workspace, above the raw ABI of
//! [`uring_sys`]. It knows the shape of the rings, not of any operation:
//! SQEs are written by the layer above (`uring-ops`) or by hand through
//! [`Sqe`]'s field accessors.
//!
//! - [`Ring`]: the single-issuer ring (`SINGLE_ISSUER | DEFER_TASKRUN` by
//!   default), `Send` and not `Sync`. [`SharedRing`]: the multi-issuer ring
//!   (`COOP_TASKRUN | TASKRUN_FLAG`), `Sync`.
//! - [`Options`]: every setup flag a 6.18 kernel accepts, checked before
//!   any syscall.
//! - Submission: [`Ring::next_sqe`], [`Ring::push`] (`unsafe`: the kernel
//!   trusts the addresses in an SQE), then [`Ring::submit`]. A full SQ is
//!   [`Error::QueueFull`], never a hidden flush.
//! - Completion: [`Ring::reap`] / [`Ring::wait_for`] copy CQEs into the
//!   caller's [`CqeSlot`]s and hand out [`Cqe`] views that borrow them;
//!   [`Ring::completions`] is the zero-copy pass over ring memory. Nothing
//!   observable is [`Error::WouldBlock`].
//! - Identity: [`SqeContext`] packs op, flags, buffer group and fd into
//!   `user_data`, or names a pooled [`IndirectSqe`] / [`ExtSqe`] in the
//!   ring's [`ContextPools`].
//! - [`Features`]: the probe and the setup features, decoded once.
//!
//! # Safety model
//!
//! Building an [`Sqe`] is safe; handing it to the kernel is `unsafe`,
//! because every address in it is trusted until the operation completes.
//! Everything the library owns (ring memory, pools) is managed safely:
//! pooled contexts are indices with generations, never pointers, so a
//! stale or foreign `user_data` cannot become a dangling reference.

#![cfg(target_os = "linux")]

pub mod bpf;
mod context;
mod core;
mod cqe;
mod error;
mod features;
mod keep;
mod mapping;
mod napi;
mod options;
pub mod query;
mod queue;
mod register;
mod ring;
mod shared;
mod sigmask;
mod sqe;
mod wait_region;

pub use crate::core::keep_for_ever;
pub use context::{
    ContextMode, ContextPools, CtxWords, ExtData, ExtSqe, IndirectSqe, Layer, LayerData, PlainData, PoolStats,
    SqeContext,
};
pub use cqe::{BufferSelection, Cqe, CqeFlags, CqeSlot, HandleCqe, Reaped};
pub use error::{Error, Result};
pub use features::{
    BASELINE, FeatureFlags, Features, OPCODES, SetupFlagSupport, kernel_release, opcode_name, parse_release,
    probe_setup_flag, probe_setup_flags,
};
pub use keep::{KEEP_INLINE, Keep};
pub use mapping::Mapping;
pub use napi::{NapiSettings, NapiTracking};
pub use options::{
    CqeSize, Entries, IoPoll, MAX_CONTEXTS, MAX_CQ_ENTRIES, MAX_ENTRIES, Options, SetupFlags, SqPoll, setup_flag_name,
};
pub use register::{CancelTarget, Napi, Registrar, ResourceTag, Restriction, is_layer_tag, send_msg_ring};
pub use ring::{Completions, Ring, STOP_TIMEOUT, State, WaitArgs};
pub use shared::SharedRing;
pub use sigmask::SigMask;
pub use sqe::{Sqe, Sqe128, SqeFlags};
pub use uring_sys as sys;
pub use wait_region::{RegWait, WaitRegion};

/// Compile-time proof of the threading contract: `Ring` is `Send` and not
/// `Sync`; `SharedRing` is both. (If `Ring` became `Sync`, the call through
/// `NotSync` below would be ambiguous and fail to compile.)
#[allow(dead_code)]
fn _assert_threading() {
    const fn send<T: Send>() {}
    const fn sync<T: Sync>() {}
    send::<Ring>();
    send::<SharedRing>();
    sync::<SharedRing>();
    send::<ContextPools>();

    trait NotSync<A> {
        fn check() {}
    }
    impl<T: ?Sized> NotSync<()> for T {}
    impl<T: ?Sized + Sync> NotSync<u8> for T {}
    <Ring as NotSync<_>>::check();
    <Completions<'static> as NotSync<_>>::check();
}
