//! Ring messages: `msg_ring` (posting a CQE to another ring, passing a
//! fixed file to it), fixed-fd install, files update.
//!
//! A `MSG_RING` SQE carries only values (the target ring's descriptor, the
//! `user_data`, result and flags to post, slot numbers), so [`MsgRing`],
//! [`MsgRingFd`] and [`FixedFdInstall`] are [`SafeOp`]. [`FilesUpdate`]
//! is not: the kernel reads its descriptor array when the operation runs
//! (`io_files_update`, not at prep), and with
//! [`any_slot`](FilesUpdate::any_slot) writes the chosen slots back into it.

use std::os::fd::RawFd;

use uring_core::{Error, Features, Keep, Result, Sqe, SqeContext, sys};

use crate::flags::sealed::OnRing;
use crate::op::{FileDest, Fixed, Prepare, SafeOp, Target};
use crate::ring::RingOps;

/// Posts a CQE with the given `user_data`, result and (optionally) flags
/// to another ring: `io_uring_prep_msg_ring`
/// (`io_uring_prep_msg_ring_cqe_flags` with [`cqe_flags`](Self::cqe_flags)).
///
/// Since Linux 5.18; passing CQE flags (`IORING_MSG_RING_FLAGS_PASS`)
/// since 6.3. The target is the other ring's descriptor (or a fixed-file
/// slot holding it). This operation completes with 0 once the CQE is
/// posted (`-EBADFD` when the target is not a ring or not enabled yet,
/// `-EOVERFLOW` when its CQ is full). The `user_data` is posted as it is:
/// the target decodes it as its own context, so send values the target
/// expects (a [token](SqeContext::token) is the usual choice; a layer
/// value is refused).
///
/// A thread without a ring of its own sends the same message with
/// [`send_without_ring`](Self::send_without_ring)
/// (`IORING_REGISTER_SEND_MSG_RING`, since 6.13).
#[doc(alias = "IORING_OP_MSG_RING")]
#[doc(alias = "IORING_MSG_DATA")]
#[doc(alias = "io_uring_prep_msg_ring")]
#[doc(alias = "io_uring_prep_msg_ring_cqe_flags")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct MsgRing {
    ring: Target,
    user_data: u64,
    res: i32,
    cqe_flags: Option<u32>,
}

impl MsgRing {
    /// Posts `{ user_data, res }` to the ring `ring`.
    #[inline]
    pub fn new(ring: impl Into<Target>, user_data: u64, res: i32) -> Self {
        MsgRing { ring: ring.into(), user_data, res, cqe_flags: None }
    }

    /// Also sets the posted CQE's flags to `flags`
    /// (`IORING_MSG_RING_FLAGS_PASS`).
    #[inline]
    pub const fn cqe_flags(mut self, flags: u32) -> Self {
        self.cqe_flags = Some(flags);
        self
    }
}

impl Prepare for MsgRing {
    const CODE: u8 = sys::IORING_OP_MSG_RING as u8;
    const USES_KEEP: bool = false;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        self.check_posted()
    }

    #[inline]
    fn prepare(self, sqe: &mut Sqe, _keep: &mut Keep) {
        self.write(sqe);
    }
}

impl MsgRing {
    /// The posted CQE must not be mistaken for one that releases memory a
    /// layer owns: no layer value in its `user_data`, and no buffer or
    /// notification flags.
    fn check_posted(&self) -> Result<()> {
        crate::ring::refuse_layer(SqeContext::of_user_data(self.user_data))?;
        const MEMORY_FLAGS: u32 = sys::IORING_CQE_F_BUFFER | sys::IORING_CQE_F_BUF_MORE | sys::IORING_CQE_F_NOTIF;
        // The CQ's own layout flags: the kernel writes a 32-byte entry for
        // F_32 on a mixed CQ, and F_SKIP marks padding the reaper passes
        // over; posted by a message they would make a phantom entry.
        const LAYOUT_FLAGS: u32 = sys::IORING_CQE_F_SKIP | sys::IORING_CQE_F_32;
        if let Some(flags) = self.cqe_flags {
            if flags & MEMORY_FLAGS != 0 {
                return Err(Error::InvalidArgument(format!(
                    "CQE flags {flags:#x} for MSG_RING: IORING_CQE_F_BUFFER, F_BUF_MORE and F_NOTIF say that the \
                     kernel is done with a buffer, which a posted message cannot mean"
                )));
            }
            if flags & LAYOUT_FLAGS != 0 {
                return Err(Error::InvalidArgument(format!(
                    "CQE flags {flags:#x} for MSG_RING: IORING_CQE_F_SKIP and F_32 describe the CQ's layout (padding, \
                     a 32-byte entry), which the kernel sets itself"
                )));
            }
        }
        Ok(())
    }

    /// Posts the message from a thread that has no ring of its own:
    /// `IORING_REGISTER_SEND_MSG_RING`, a blind `io_uring_register` (ring
    /// fd -1) that hands the kernel this entry; liburing's
    /// `io_uring_register_sync_msg`. Since Linux 6.13.
    ///
    /// The CQE `{ user_data, res }` (with [`cqe_flags`](Self::cqe_flags),
    /// those flags) is posted to the target ring before this returns: a
    /// thread blocked in [`Ring::wait_for`](uring_core::Ring::wait_for) on
    /// that ring wakes up (on a deferred-task-work ring the kernel queues
    /// the CQE as task work of the ring's issuer, which its wait runs).
    /// The usual cross-thread wake-up, without an eventfd, a multishot poll
    /// and the CQE that costs. The target must be a ring descriptor
    /// ([`Target::Fd`]): with no ring of one's own there is no file table
    /// to resolve a fixed slot in. The same checks as a pushed `MsgRing`
    /// apply: a layer value as `user_data` and the buffer and notification
    /// CQE flags are refused.
    ///
    /// The uring-core call underneath is
    /// [`uring_core::send_msg_ring`] (`unsafe`: it posts whatever the entry
    /// says).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a fixed-slot target, a layer value or
    /// memory-releasing flags (before any syscall);
    /// [`Error::Unsupported`] before Linux 6.13; [`Error::Io`] with
    /// `EBADF` (no such descriptor), `EBADFD` (not a ring, or a ring not
    /// started yet), `EOVERFLOW` (the target's CQ is full), `EOWNERDEAD`
    /// (a deferred-task-work target whose issuer thread has exited).
    #[doc(alias = "io_uring_register_sync_msg")]
    #[doc(alias = "IORING_REGISTER_SEND_MSG_RING")]
    pub fn send_without_ring(self) -> Result<()> {
        if self.ring.is_fixed() {
            return Err(Error::InvalidArgument(
                "IORING_REGISTER_SEND_MSG_RING has no ring, so no file table: the target must be a ring descriptor, \
                 not a fixed slot"
                    .into(),
            ));
        }
        self.check_posted()?;
        let mut sqe = Sqe::new(Self::CODE);
        self.write(&mut sqe);
        // SAFETY: `check_posted` refused a layer value as `user_data` and
        // the memory-releasing CQE flags: the CQE posted is one safe code
        // may post with a pushed `MsgRing`.
        unsafe { uring_core::send_msg_ring(&sqe) }
    }

    /// Writes the whole entry.
    #[inline]
    fn write(self, sqe: &mut Sqe) {
        let MsgRing { ring, user_data, res, cqe_flags } = self;
        *sqe = Sqe::new(Self::CODE);
        ring.apply(sqe);
        sqe.set_addr(u64::from(sys::IORING_MSG_DATA));
        sqe.set_off(user_data);
        sqe.len = res as u32;
        if let Some(flags) = cqe_flags {
            sqe.set_op_flags(sys::IORING_MSG_RING_FLAGS_PASS);
            sqe.set_file_index(flags);
        }
    }
}

// SAFETY: the SQE carries values only (descriptor, user_data, result, flags).
unsafe impl SafeOp for MsgRing {}

/// Passes a fixed file of this ring into another ring's file table:
/// `io_uring_prep_msg_ring_fd` (`io_uring_prep_msg_ring_fd_alloc` with
/// [`FileDest::AnySlot`]).
///
/// Since Linux 6.0. The target ring must have a registered file table and
/// must be another ring (`-EINVAL` for this one). It receives a CQE with
/// `user_data` and, as result, 0 (a given slot) or the slot chosen
/// ([`FileDest::AnySlot`]), unless [`skip_target_cqe`](Self::skip_target_cqe).
/// This operation's own result is the same value, or a negative errno
/// (`-EBADF` for an empty source slot).
#[doc(alias = "IORING_OP_MSG_RING")]
#[doc(alias = "IORING_MSG_SEND_FD")]
#[doc(alias = "io_uring_prep_msg_ring_fd")]
#[doc(alias = "io_uring_prep_msg_ring_fd_alloc")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct MsgRingFd {
    ring: Target,
    source: Fixed,
    dest: FileDest,
    user_data: u64,
    skip_cqe: bool,
}

impl MsgRingFd {
    /// Installs this ring's fixed file `source` into the ring `ring` at
    /// `dest` ([`FileDest::Slot`] or [`FileDest::AnySlot`]), posting
    /// `user_data` there.
    #[inline]
    pub fn new(ring: impl Into<Target>, source: Fixed, dest: FileDest, user_data: u64) -> Self {
        MsgRingFd { ring: ring.into(), source, dest, user_data, skip_cqe: false }
    }

    /// Posts no CQE to the target ring (`IORING_MSG_RING_CQE_SKIP`).
    #[inline]
    pub const fn skip_target_cqe(mut self) -> Self {
        self.skip_cqe = true;
        self
    }
}

impl Prepare for MsgRingFd {
    const CODE: u8 = sys::IORING_OP_MSG_RING as u8;
    const USES_KEEP: bool = false;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        if !self.dest.is_direct() {
            return Err(Error::InvalidArgument(
                "MSG_RING fd passing installs into the target's file table: use FileDest::Slot or AnySlot".into(),
            ));
        }
        // The target's CQE carries this user_data: as for `MsgRing`.
        crate::ring::refuse_layer(SqeContext::of_user_data(self.user_data))?;
        Ok(())
    }

    #[inline]
    fn prepare(self, sqe: &mut Sqe, _keep: &mut Keep) {
        let MsgRingFd { ring, source, dest, user_data, skip_cqe } = self;
        *sqe = Sqe::new(Self::CODE);
        ring.apply(sqe);
        sqe.set_addr(u64::from(sys::IORING_MSG_SEND_FD));
        sqe.set_addr3(u64::from(source.0));
        sqe.set_file_index(dest.file_index());
        sqe.set_off(user_data);
        if skip_cqe {
            sqe.set_op_flags(sys::IORING_MSG_RING_CQE_SKIP);
        }
    }
}

// SAFETY: the SQE carries values only (descriptors, slots, user_data).
unsafe impl SafeOp for MsgRingFd {}

/// Turns a fixed file into a regular file descriptor of this process:
/// `io_uring_prep_fixed_fd_install`.
///
/// Since Linux 6.8. The result is the new descriptor (close-on-exec unless
/// [`no_cloexec`](Self::no_cloexec)), or `-EBADF` for an empty slot. The
/// slot keeps its file.
#[doc(alias = "IORING_OP_FIXED_FD_INSTALL")]
#[doc(alias = "io_uring_prep_fixed_fd_install")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct FixedFdInstall {
    slot: Fixed,
    no_cloexec: bool,
}

impl FixedFdInstall {
    /// Installs the file in `slot`.
    #[inline]
    pub const fn new(slot: Fixed) -> Self {
        FixedFdInstall { slot, no_cloexec: false }
    }

    /// Leaves `O_CLOEXEC` off the new descriptor (`IORING_FIXED_FD_NO_CLOEXEC`).
    #[inline]
    pub const fn no_cloexec(mut self) -> Self {
        self.no_cloexec = true;
        self
    }
}

impl Prepare for FixedFdInstall {
    const CODE: u8 = sys::IORING_OP_FIXED_FD_INSTALL as u8;
    const USES_KEEP: bool = false;

    #[inline]
    fn prepare(self, sqe: &mut Sqe, _keep: &mut Keep) {
        let FixedFdInstall { slot, no_cloexec } = self;
        *sqe = Sqe::new(Self::CODE);
        Target::from(slot).apply(sqe);
        if no_cloexec {
            sqe.set_op_flags(sys::IORING_FIXED_FD_NO_CLOEXEC);
        }
    }
}

// SAFETY: the SQE carries a slot number only.
unsafe impl SafeOp for FixedFdInstall {}

/// Replaces slots of the registered file table from an array of
/// descriptors: `io_uring_prep_files_update`.
///
/// Since Linux 5.6. Slots `offset..offset + len` take `fds[i]` (`-1`
/// empties a slot, `-2`, `IORING_REGISTER_FILES_SKIP`, leaves it); the
/// result is the number of slots updated. With
/// [`any_slot`](Self::any_slot) (since 5.19) each descriptor goes into a
/// free slot and the kernel **writes** the slot chosen back into `fds[i]`.
///
/// The kernel reads (and with `any_slot` writes) `fds` when the operation
/// runs, which can be after submission (io-wq): the `unsafe` constructors
/// take that obligation, and the operation is a [`SafeOp`]
/// ([`MsgOps::files_update`] and [`MsgOps::files_update_any_slot`] take
/// the same arguments).
#[doc(alias = "IORING_OP_FILES_UPDATE")]
#[doc(alias = "io_uring_prep_files_update")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct FilesUpdate {
    fds: *mut RawFd,
    len: usize,
    offset: u32,
    /// Made by `any_slot` from a unique borrow: the kernel may write.
    writable: bool,
}

impl FilesUpdate {
    /// Updates slots from `offset` on with the descriptors of `fds`. An
    /// `offset` of `IORING_FILE_INDEX_ALLOC` (the kernel would write the
    /// slots into `fds`) is refused when pushed: use
    /// [`any_slot`](Self::any_slot).
    ///
    /// # Safety
    ///
    /// For every push of the returned operation (or of a copy of it),
    /// `fds` must stay valid and unmodified until that operation's CQE has
    /// been reaped: the kernel reads it when the operation runs.
    #[inline]
    pub unsafe fn new(offset: u32, fds: &[RawFd]) -> Self {
        FilesUpdate { fds: fds.as_ptr().cast_mut(), len: fds.len(), offset, writable: false }
    }

    /// Puts each descriptor of `fds` into any free slot
    /// (`IORING_FILE_INDEX_ALLOC`, since 5.19); the kernel writes the slot
    /// chosen back into `fds[i]`.
    ///
    /// # Safety
    ///
    /// For every push of the returned operation (or of a copy of it),
    /// `fds` must stay valid, and must be neither read nor written by the
    /// program, until that operation's CQE has been reaped.
    #[inline]
    pub unsafe fn any_slot(fds: &mut [RawFd]) -> Self {
        let (fds, len) = (fds.as_mut_ptr(), fds.len());
        FilesUpdate { fds, len, offset: sys::IORING_FILE_INDEX_ALLOC as u32, writable: true }
    }
}

impl Prepare for FilesUpdate {
    const CODE: u8 = sys::IORING_OP_FILES_UPDATE as u8;
    const USES_KEEP: bool = false;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        if self.len == 0 {
            return Err(Error::InvalidArgument("files update of 0 descriptors".into()));
        }
        if self.offset == sys::IORING_FILE_INDEX_ALLOC as u32 && !self.writable {
            return Err(Error::InvalidArgument(
                "files update at offset IORING_FILE_INDEX_ALLOC makes the kernel write the array: use \
                 FilesUpdate::any_slot"
                    .into(),
            ));
        }
        crate::op::len_u32("files update", self.len).map(drop)
    }

    #[inline]
    fn prepare(self, sqe: &mut Sqe, _keep: &mut Keep) {
        let FilesUpdate { fds, len, offset, writable: _ } = self;
        *sqe = Sqe::new(Self::CODE);
        sqe.fd = -1;
        sqe.set_addr(fds as u64);
        sqe.len = len as u32;
        sqe.set_off(u64::from(offset));
    }
}

// SAFETY: `fds` is the only memory named; the caller of `new` keeps it
// valid and unmodified (the check refuses the offset that would make the
// kernel write it), the caller of `any_slot` valid and unaccessed, until
// every push's CQE.
unsafe impl SafeOp for FilesUpdate {}

/// Ring messages and file-table operations as [`Ring`](uring_core::Ring) methods.
pub trait MsgOps {
    /// Posts `{ user_data, res }` to the ring `target` ([`MsgRing`]).
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    fn msg_ring(&mut self, ctx: SqeContext, target: impl Into<Target>, user_data: u64, res: i32) -> Result<SqeContext>;

    /// Passes fixed file `source` to slot `dest` of the ring `target`,
    /// posting `user_data` there ([`MsgRingFd`]).
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    fn msg_ring_fd(
        &mut self,
        ctx: SqeContext,
        target: impl Into<Target>,
        source: Fixed,
        dest: FileDest,
        user_data: u64,
    ) -> Result<SqeContext>;

    /// Installs fixed file `slot` as a regular descriptor ([`FixedFdInstall`]).
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    fn fixed_fd_install(&mut self, ctx: SqeContext, slot: Fixed) -> Result<SqeContext>;

    /// Replaces slots from `offset` on with `fds` ([`FilesUpdate`]).
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`]; [`Error::InvalidArgument`]
    /// for `offset` `IORING_FILE_INDEX_ALLOC` (the kernel would write to
    /// `fds`: use [`files_update_any_slot`](Self::files_update_any_slot)).
    ///
    /// # Safety
    ///
    /// As for [`FilesUpdate::new`].
    unsafe fn files_update(&mut self, ctx: SqeContext, offset: u32, fds: &[RawFd]) -> Result<SqeContext>;

    /// Puts each descriptor of `fds` into a free slot and writes the slots
    /// chosen back into `fds` ([`FilesUpdate::any_slot`]).
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    ///
    /// # Safety
    ///
    /// As for [`FilesUpdate::any_slot`].
    unsafe fn files_update_any_slot(&mut self, ctx: SqeContext, fds: &mut [RawFd]) -> Result<SqeContext>;
}

impl<R: RingOps + OnRing> MsgOps for R {
    #[inline]
    fn msg_ring(&mut self, ctx: SqeContext, target: impl Into<Target>, user_data: u64, res: i32) -> Result<SqeContext> {
        self.push_op(ctx, MsgRing::new(target, user_data, res))
    }

    #[inline]
    fn msg_ring_fd(
        &mut self,
        ctx: SqeContext,
        target: impl Into<Target>,
        source: Fixed,
        dest: FileDest,
        user_data: u64,
    ) -> Result<SqeContext> {
        self.push_op(ctx, MsgRingFd::new(target, source, dest, user_data))
    }

    #[inline]
    fn fixed_fd_install(&mut self, ctx: SqeContext, slot: Fixed) -> Result<SqeContext> {
        self.push_op(ctx, FixedFdInstall::new(slot))
    }

    #[inline]
    unsafe fn files_update(&mut self, ctx: SqeContext, offset: u32, fds: &[RawFd]) -> Result<SqeContext> {
        // SAFETY: forwarded to the caller (`FilesUpdate::new`'s contract;
        // its check refuses the offset that would make the kernel write).
        let op = unsafe { FilesUpdate::new(offset, fds) };
        self.push_op(ctx, op)
    }

    #[inline]
    unsafe fn files_update_any_slot(&mut self, ctx: SqeContext, fds: &mut [RawFd]) -> Result<SqeContext> {
        // SAFETY: forwarded to the caller (`FilesUpdate::any_slot`'s contract).
        let op = unsafe { FilesUpdate::any_slot(fds) };
        self.push_op(ctx, op)
    }
}
