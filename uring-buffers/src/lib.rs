//! Buffers the library owns, for io_uring operations: provided buffer
//! rings ([`BufRing`], with bundles and incremental consumption), send
//! rings ([`SendRing`]), multi-size groups ([`BufferGroups`]), and
//! registered buffers ([`RegisteredBuffers`]) with safe fixed-buffer I/O
//! ([`FixedBuffers`], linked chains included).
//!
//! Memory here is allocated by the library and
//! [attached](uring_core::Ring::attach) to the ring it is registered with,
//! so the kernel can never write into memory Rust has freed, and the APIs
//! over it are safe.

#![cfg(target_os = "linux")]

pub mod bufring;
pub mod caller;
mod error;
pub mod fixed;
mod fixed_send;
pub mod groups;
pub mod registered;
pub mod sendring;

pub use bufring::{Buf, BufEvent, BufRing, BufRingConfig, BufSendId, BufSent, Bundle, Held, MAX_ENTRIES, SendRefused};
pub use caller::{CallerRegion, FixedMemory, RawMemory, Released, TagEvent};
pub use error::{Error, Result};
pub use fixed::{
    BufferState, ChainOutcome, ChainStatus, ChainStep, FixedBuffers, FixedChain, FixedDone, FixedId, FixedKind,
};
pub use groups::{BufferGroups, BufferLayout, MachineMemory, SizeClass, Tier};
pub use registered::RegisteredBuffers;
pub use sendring::{Partial, SendBuf, SendRing, Sent};
