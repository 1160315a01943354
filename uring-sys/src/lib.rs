//! The raw Linux io_uring ABI.
//!
//! This crate is the lowest layer of the `uring` workspace and holds exactly
//! two things:
//!
//! - **The kernel's uapi, generated.** Every io_uring structure, constant and
//!   enum value, plus the argument types individual opcodes need
//!   (`__kernel_timespec`, `open_how`, `futex_waitv`, `epoll_event`,
//!   `statx`, …), produced by bindgen from pinned `linux-libc-dev` headers
//!   (see `uring-sys/headers.pin`). Nothing here is a handwritten copy of a
//!   uapi type: `cargo xtask bindgen --check` regenerates and compares.
//!   Items newer than the running kernel stay in; the layers above detect at
//!   run time what the kernel lacks.
//! - **The three syscalls**, [`io_uring_setup`], [`io_uring_enter`] (and
//!   [`io_uring_enter2`] with an extended argument) and
//!   [`io_uring_register`], as thin `unsafe fn`s.
//!
//! bindgen names anonymous unions `__bindgen_anon_N`; those names never leave
//! this crate. The SQE, CQE and every other structure with an anonymous
//! member get named accessors instead ([`io_uring_sqe::set_addr`],
//! [`io_uring_buf_ring::tail_ptr`], …), documented in the `accessors`
//! module's impls.
//!
//! Enumerations are plain integer constants, never Rust `enum`s: a value the
//! kernel writes that this build does not know must not be undefined
//! behaviour.
//!
//! # Example
//!
//! ```no_run
//! use uring_sys::*;
//!
//! let mut params = io_uring_params { flags: IORING_SETUP_NO_SQARRAY, ..Default::default() };
//! // SAFETY: `params` is valid for the call; no flag hands the kernel our memory.
//! let fd = unsafe { io_uring_setup(64, &mut params) }?;
//! assert!(params.sq_entries >= 64);
//!
//! let mut sqe = io_uring_sqe::default();
//! sqe.opcode = IORING_OP_READ as u8;
//! sqe.fd = 0;
//! sqe.set_addr(0x1000); // sqe->addr, an anonymous union member in C
//! sqe.len = 4096;
//! # let _ = (fd, sqe);
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # Supported targets
//!
//! Linux on `x86_64` and `aarch64`, the two architectures the bindings are
//! generated for (the uapi differs between them, e.g. `epoll_event` is packed
//! only on x86-64). Only x86-64 is built and tested; there the syscalls are
//! issued inline. On aarch64 they go through `libc::syscall`, and the crate
//! is type-checked in CI, never run.

#[cfg(not(target_os = "linux"))]
compile_error!("uring-sys binds the Linux io_uring ABI and builds only for target_os = \"linux\"");

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!(
    "uring-sys has generated bindings for x86_64 and aarch64 only; add the architecture to \
     xtask/src/bindgen.rs (TARGETS) and run `cargo xtask bindgen`"
);

/// The generated bindings for this architecture.
#[allow(
    // Generated code: bindgen's names and layout assertions follow the C
    // headers; docs come from the header comments where there are any.
    missing_docs,
    missing_debug_implementations,
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    unreachable_pub,
    clippy::all,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc
)]
mod bindings {
    #[cfg(target_arch = "x86_64")]
    include!("bindings/x86_64.rs");
    #[cfg(target_arch = "aarch64")]
    include!("bindings/aarch64.rs");

    /// The aarch64 bindings, type-checked (and their layout assertions
    /// evaluated) in x86-64 test builds too, so a machine without the
    /// aarch64 standard library still checks them (CI's clippy pass for
    /// `aarch64-unknown-linux-gnu` needs `rustup target add`): every uapi
    /// type has the same layout on both 64-bit architectures except
    /// `epoll_event`, which that file leaves unpacked.
    #[cfg(all(test, target_arch = "x86_64"))]
    #[allow(dead_code)] // Compiled for its checks only.
    mod aarch64_typecheck {
        include!("bindings/aarch64.rs");
    }
}

pub use bindings::*;

mod accessors;
mod syscalls;

pub use accessors::{io_uring_bpf_ctx_connect, io_uring_bpf_ctx_open, io_uring_bpf_ctx_socket};
pub use syscalls::{io_uring_enter, io_uring_enter2, io_uring_register, io_uring_setup};
