//! [`Ring`]: the single-issuer ring. (The setup and stop both ring types
//! share are in `core.rs`.)

use std::marker::PhantomData;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use uring_sys as sys;

use crate::context::ContextPools;
use crate::core::{Core, no_slots, rings_len, sqes_len};
pub use crate::core::{STOP_TIMEOUT, State, WaitArgs};
use crate::cqe::{Cqe, CqeSlot, Reaped};
use crate::error::{Error, Result};
use crate::features::Features;
use crate::keep::Keep;
use crate::options::{Issuer, Options};
use crate::queue::{Cq, Mapping, Sq};
use crate::register::Registrar;
use crate::sqe::{Sqe, Sqe128};

/// A single-issuer io_uring instance: `IORING_SETUP_SINGLE_ISSUER` with
/// deferred task work by default.
///
/// `Ring` is `Send` but not `Sync`: one thread at a time owns it, and the
/// type system (every submit-state call takes `&mut self`) serializes
/// submission and reaping. Use [`SharedRing`](crate::SharedRing) when
/// several threads must submit.
///
/// The kernel binds a single-issuer ring to the thread that enables it: a
/// `Ring` may be created on one thread and moved to another, but the thread
/// that calls [`start`](Self::start) is the only one that may submit, wait
/// or register afterwards. From any other thread those calls fail with
/// [`Error::WrongThread`] (and `stop`/`Drop` there can only close the fd,
/// without the synchronous cancellation described at [`stop`](Self::stop)).
///
/// # Lifecycle
///
/// [`new`](Self::new) creates the ring disabled and maps it; register files,
/// eventfds, restrictions and buffers through [`register`](Self::register);
/// [`start`](Self::start) enables it; [`stop`](Self::stop) ends it for good.
///
/// ```no_run
/// use uring_core::{CqeSlot, Options, Ring, Sqe, SqeContext};
///
/// let mut ring = Ring::new(Options::small())?;
/// ring.start()?;
/// let mut nop = Sqe::new(uring_sys::IORING_OP_NOP as u8);
/// nop.set_context(SqeContext::packed(0, Default::default(), 0, -1).with_op(0));
/// // SAFETY: a NOP names no memory.
/// unsafe { ring.push(&nop) }?;
/// let mut slots = [CqeSlot::EMPTY; 8];
/// let done = ring.wait_for(&mut slots, 1, None)?;
/// assert_eq!(done.get(0).unwrap().res(), 0);
/// # Ok::<(), uring_core::Error>(())
/// ```
#[derive(Debug)]
pub struct Ring {
    /// Declared first so that it drops first: after [`Drop`] has stopped
    /// the ring, unmapping the ring memory drops our last reference to it,
    /// and only then do the SQ slots' `Keep`s go.
    pub(crate) core: Core,
    pub(crate) sq: Sq,
    pub(crate) cq: Cq,
    pools: ContextPools,
    /// Buffer groups a layer owns exclusively (see
    /// [`Ring::reserve_buffer_group`]); usually empty.
    reserved_groups: Vec<u16>,
    /// Buffer group ids a provided-buffer ring was ever registered under
    /// on this ring ([`Ring::claim_buffer_group`]).
    claimed_groups: Vec<u16>,
    /// One bit per buffer group id a typed push queued an entry selecting
    /// from ([`Ring::note_selected_group`]); allocated on first use.
    named_groups: Option<Box<[u64; 1024]>>,
    /// `Sq`/`Cq` are `Send` but not `Sync`; this marker states it for the
    /// whole type regardless of how their fields change.
    _not_sync: PhantomData<std::cell::Cell<()>>,
}

impl Ring {
    /// Creates the ring (disabled), maps it, reads the probe and sizes the
    /// context pools. Nothing can be submitted until [`start`](Self::start).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for bad options (before any syscall),
    /// [`Error::Unsupported`] naming a setup flag the kernel rejects, and the
    /// machine-dependent setup errors ([`Error::LockedMemory`],
    /// [`Error::Disabled`], [`Error::Blocked`], [`Error::NoIoUring`]).
    pub fn new(opts: Options) -> Result<Self> {
        let (core, sq, cq) = Core::setup(&opts, Issuer::Single)?;
        let (indirect, extended) = opts.pool_sizes(core.params.sq_entries);
        Ok(Ring::from_parts(core, sq, cq, indirect, extended))
    }

    /// The ring around a set-up `Core`, with pools of the given sizes.
    fn from_parts(core: Core, sq: Sq, cq: Cq, indirect: u32, extended: u32) -> Ring {
        let pools = ContextPools::for_ring(core.id, indirect, extended);
        Ring {
            sq,
            cq,
            core,
            pools,
            reserved_groups: Vec::new(),
            claimed_groups: Vec::new(),
            named_groups: None,
            _not_sync: PhantomData,
        }
    }

    /// Adopts a ring set up elsewhere (by raw `io_uring_setup`, another
    /// library, another process that passed the fd): maps its memory and
    /// wraps it, as liburing's `io_uring_queue_mmap`. The ring is
    /// [`Created`](State::Created); [`start`](Self::start) enables it if it
    /// was set up with `IORING_SETUP_R_DISABLED` (else it is enabled
    /// already). Context pools get the SQ size; the fd is not registered.
    ///
    /// Checked here, as [`Error::InvalidArgument`] (or the errno): that
    /// `fd` is an io_uring instance (it answers `IORING_REGISTER_PROBE`),
    /// not `NO_MMAP` (its memory is its creator's) nor `SQ_REWIND`, that the masks and
    /// entry counts in its memory are those of `params`, and that both
    /// queues are empty with no overflow backlog.
    ///
    /// # Errors
    ///
    /// As above; the errno of `mmap` or of the probe.
    ///
    /// # Safety
    ///
    /// - `params` is exactly what `io_uring_setup` returned for `fd` (the
    ///   offsets are trusted to lie inside the mappings they name).
    /// - From now until this ring is dropped, nothing else submits to or
    ///   reaps from the ring, enables it, resizes it or registers to it
    ///   (no other copy of the fd, no other mapping of its memory is used,
    ///   in this process or another): the library is its only producer
    ///   and consumer.
    /// - No request of the ring is in flight, and none was ever submitted
    ///   whose completion is still to come: every CQE this ring reaps is of
    ///   an entry pushed through it (a stray `user_data` would be trusted
    ///   as a context, see [`next_sqe`](Self::next_sqe)).
    /// - If it was set up with `IORING_SETUP_R_DISABLED`, it has not been
    ///   enabled yet.
    pub unsafe fn from_raw_fd(fd: std::os::fd::OwnedFd, params: sys::io_uring_params) -> Result<Self> {
        // SAFETY: forwarded to the caller.
        let (core, sq, cq) = unsafe { Core::adopt(fd, params) }?;
        let sq_entries = core.params.sq_entries;
        Ok(Ring::from_parts(core, sq, cq, sq_entries, sq_entries))
    }

    /// Enables the ring (`IORING_REGISTER_ENABLE_RINGS`) and, if asked,
    /// registers its fd. Fails with [`Error::AlreadyStarted`] the second
    /// time.
    pub fn start(&mut self) -> Result<()> {
        self.core.start()?;
        self.sq.open();
        Ok(())
    }

    /// Ends the ring for good. Idempotent; every later call returns
    /// [`Error::Stopped`]. Dropping the ring does the same.
    ///
    /// Entries not yet submitted are dropped (on SQPOLL rings, `stop`
    /// first waits, up to [`STOP_TIMEOUT`], until the poller thread has
    /// consumed every entry already published). Every request still in
    /// flight is then cancelled synchronously
    /// (`IORING_REGISTER_SYNC_CANCEL`, any request), running the task work
    /// that completes the cancellations (on deferred-task-work rings, in
    /// non-blocking `io_uring_enter(GETEVENTS)` calls between rounds) and
    /// waiting up to [`STOP_TIMEOUT`] for a request that cannot be
    /// interrupted at once; then the fd is closed. So once `stop` returns,
    /// the kernel no longer touches memory that in-flight operations
    /// named, with one exception no cancellation reaches: a zero-copy
    /// send whose result CQE came with `IORING_CQE_F_MORE` is done as a
    /// request, but the network stack may read its bytes until the
    /// notification (`IORING_CQE_F_NOTIF`), after `stop` too. Memory a
    /// zero-copy send names must live until its notification has been
    /// reaped, or for ever: the library's zero-copy layers leak it
    /// (`ZcTracker`, `uring_buffers::FixedBuffers`).
    ///
    /// Completions not reaped before `stop` are lost (`stop` discards the
    /// CQ as the cancellations complete, so an overflowing CQ does not
    /// hold it up), and so are pooled contexts they would have returned
    /// (visible in the pool counters): drain first when they matter.
    ///
    /// Memory [`attach`](Self::attach)ed to the ring is dropped after the
    /// fd is closed, or leaked if some request could not be cancelled
    /// (never freed while the kernel might still write to it); the same
    /// for each SQ slot's [`Keep`] when an SQPOLL ring's poller did not
    /// drain the SQ.
    ///
    /// From a thread other than the one that called
    /// [`start`](Self::start), the kernel refuses both the cancellation
    /// and the task work of a `SINGLE_ISSUER` ring (`EEXIST`): `stop` (and
    /// `Drop`) there can only close the fd. The kernel cancels the
    /// requests asynchronously once its last reference to the ring is
    /// gone (the mappings, unmapped when the ring drops; a ring fd
    /// registered by the issuer thread, until that thread exits), and the
    /// attached memory is leaked: safe, but permanent. Stop a ring on the
    /// thread that started it.
    pub fn stop(&mut self) {
        self.core.stop(Some((&mut self.sq, &mut self.cq)));
    }

    /// Where the ring is in its life.
    pub fn state(&self) -> State {
        self.core.state
    }

    /// This ring's identity: process-unique, never reused, never 0. Every
    /// [`Cqe`] it reaps carries it ([`Cqe::ring_id`]), so memory registered
    /// with this ring is released only by this ring's CQEs.
    #[inline]
    pub fn id(&self) -> u64 {
        self.core.id
    }

    /// CQ slots consumed so far: every CQE reaped from now on has a
    /// [`Cqe::seq`] at least this, and every CQE reaped before has a
    /// smaller one. A layer that queues an operation notes it, so that no
    /// CQE reaped before the operation existed can complete it.
    #[inline]
    pub fn cq_position(&self) -> u64 {
        self.cq.position()
    }

    /// What the kernel and this ring support.
    pub fn features(&self) -> &Features {
        &self.core.features
    }

    /// The ring memory as `(address, length)` pairs: the rings, then the
    /// SQE array, each a whole number of pages (their sum is what
    /// [`Options::memory_size`](crate::Options::memory_size) predicts); a
    /// single pair, the whole mapping, for memory from
    /// [`Options::no_mmap_memory`](crate::Options::no_mmap_memory).
    /// Addresses only, for inspection (`/proc/self/maps`, accounting);
    /// the library owns the memory.
    pub fn memory_regions(&self) -> Vec<(usize, usize)> {
        let mut v = vec![(self.core.rings.ptr() as usize, self.core.rings.len())];
        if let Some(sqes) = &self.core.sqes {
            v.push((sqes.ptr() as usize, sqes.len()));
        }
        v
    }

    /// The parameters the kernel returned from setup.
    pub fn params(&self) -> &sys::io_uring_params {
        &self.core.params
    }

    /// The ring's context pools.
    pub fn pools(&self) -> &ContextPools {
        &self.pools
    }

    /// The ring's context pools, mutable (acquire, fill, release).
    pub fn pools_mut(&mut self) -> &mut ContextPools {
        &mut self.pools
    }

    /// The register calls of this ring.
    pub fn register(&self) -> Registrar<'_> {
        Registrar::new(&self.core)
    }

    /// Keeps `memory` alive as long as the ring: it is dropped only after
    /// the ring has been stopped with nothing in flight (and leaked if a
    /// request could not be cancelled, see [`stop`](Self::stop)). The
    /// layers above attach the memory they register with the kernel
    /// (buffer rings, registered buffers), so the kernel can never write
    /// into it after it was freed, whatever order the caller drops things
    /// in.
    ///
    /// # Errors
    ///
    /// [`Error::Stopped`]: the ring is gone, and `memory` is dropped.
    pub fn attach(&mut self, memory: Box<dyn std::any::Any + Send + Sync>) -> Result<()> {
        if self.core.state == State::Stopped {
            return Err(Error::Stopped);
        }
        self.core.attached.push(memory);
        Ok(())
    }

    /// Registers the ring fd now (see
    /// [`Options::register_ring_fd`](crate::Options::register_ring_fd)) and
    /// returns its index; later enters use it.
    pub fn register_ring_fd(&mut self) -> Result<u32> {
        self.core.check()?;
        self.core.register_ring_fd()
    }

    /// The next free SQE, zeroed, for the caller to fill in place.
    ///
    /// # Errors
    ///
    /// [`Error::QueueFull`] when no entry is free (submit first; nothing is
    /// flushed implicitly), [`Error::NotStarted`] / [`Error::Stopped`].
    ///
    /// # Safety
    ///
    /// Whatever the caller writes into the entry is submitted by the next
    /// [`submit`](Self::submit) / [`reap`](Self::reap). Every address in it
    /// (buffers, iovecs, paths, sockaddrs, timespecs, …) must point to
    /// memory that stays valid, and is not otherwise accessed in a way the
    /// operation forbids, until the operation's last CQE is reaped (for
    /// multishot operations: the CQE without `IORING_CQE_F_MORE`); memory
    /// the kernel only reads at submission must stay valid until the next
    /// submit returns. A half-written entry is submitted as it is.
    ///
    /// The `user_data` must not lie about the entry: a packed context whose
    /// flags carry `IOSQE_BUFFER_SELECT` must name the entry's real buffer
    /// group, and a token carrying a group must name the entry's (a buffer
    /// ring trusts them, see
    /// [`Cqe::buffer_selection`](crate::Cqe::buffer_selection); write the
    /// context with [`SqeContext::stamp`](crate::SqeContext::stamp)), a
    /// pooled context's slot must not be recorded for another entry, an
    /// entry that selects a provided buffer must be one `stamp` accepts
    /// (its result counts the bytes the buffers took: no `MSG_TRUNC`
    /// receive), and no
    /// [`LayerData`](crate::LayerData) value may be used unless the caller
    /// is that layer. The typed pushes of `uring-ops` stamp and check all of
    /// this.
    #[inline]
    pub unsafe fn next_sqe(&mut self) -> Result<&mut Sqe> {
        // No state check here: the SQ is closed unless the ring is started,
        // so `next` fails and `push_error` says why.
        match self.sq.next() {
            Some(slot) => {
                let sqe = slot.cast::<Sqe>();
                // SAFETY: the slot is an SQE we own until the tail is
                // published; zeroing leaves no stale fields of an earlier
                // submission in it.
                unsafe {
                    sqe.write(Sqe::default());
                    Ok(&mut *sqe)
                }
            }
            None => Err(self.push_error()),
        }
    }

    /// The next free SQE together with its slot's [`Keep`], for memory the
    /// kernel reads when it consumes the entry (see [`Keep`]). The entry is
    /// **not** zeroed: the caller overwrites all 64 bytes (the prepare
    /// functions of `uring-ops` do). The `Keep` was cleared of anything an
    /// earlier use of the slot held.
    ///
    /// # Errors
    ///
    /// As for [`next_sqe`](Self::next_sqe).
    ///
    /// # Safety
    ///
    /// As for [`next_sqe`](Self::next_sqe). Addresses into the `Keep` stay
    /// valid until the kernel has consumed the entry, and no longer: put
    /// there only what the kernel reads while preparing the request.
    #[inline]
    pub unsafe fn next_sqe_keep(&mut self) -> Result<(&mut Sqe, &mut Keep)> {
        match self.sq.next_keep() {
            // SAFETY: the slot is a 64-byte SQE we own until the tail is
            // published; any bytes are a valid `Sqe`. `index` is its slot.
            Some((slot, index)) => Ok((unsafe { &mut *slot.cast::<Sqe>() }, unsafe { self.sq.keep(index) })),
            None => Err(self.push_error()),
        }
    }

    /// [`next_sqe_keep`](Self::next_sqe_keep) without clearing the slot's
    /// [`Keep`]: for operations that put nothing there. A value an earlier
    /// entry of this slot [`hold`](Keep::hold)s stays until the slot is
    /// acquired through `next_sqe_keep` again, replaced, or the ring
    /// drops; it is never freed early.
    ///
    /// # Errors
    ///
    /// As for [`next_sqe`](Self::next_sqe).
    ///
    /// # Safety
    ///
    /// As for [`next_sqe_keep`](Self::next_sqe_keep).
    #[doc(hidden)]
    #[inline]
    pub unsafe fn next_sqe_uncleared(&mut self) -> Result<(&mut Sqe, &mut Keep)> {
        match self.sq.next_keep_uncleared() {
            // SAFETY: as in `next_sqe_keep`; `index` is the slot's.
            Some((slot, index)) => Ok((unsafe { &mut *slot.cast::<Sqe>() }, unsafe { self.sq.keep(index) })),
            None => Err(self.push_error()),
        }
    }

    /// The next free 128-byte SQE, zeroed: on a ring created with
    /// [`Options::sqe128`](crate::Options::sqe128) one slot; on an
    /// `IORING_SETUP_SQE_MIXED` ring (6.19+) two consecutive 64-byte slots.
    /// On a mixed ring a 128-byte entry never wraps round the end of the
    /// SQ (the kernel fails such an entry with `EINVAL`): when the tail is
    /// at the last slot, that slot first gets a NOP with
    /// `IOSQE_CQE_SKIP_SUCCESS`, which posts no CQE (as liburing's
    /// `io_uring_get_sqe128` does). When the entry queued just before
    /// links to the next (`IOSQE_IO_LINK`/`IOSQE_IO_HARDLINK`), the pad
    /// carries the same link flag, so the chain goes on through it to the
    /// 128-byte entry. Like liburing's, the pad's `IOSQE_CQE_SKIP_SUCCESS`
    /// makes the kernel refuse `IOSQE_IO_DRAIN` on this ring from then on
    /// (`EOPNOTSUPP`). On a mixed ring the opcode must be one
    /// the kernel reads as 128 bytes (`IORING_OP_NOP128`,
    /// `IORING_OP_URING_CMD128`); any other would make the kernel read the
    /// second half as the next entry.
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`] on a ring of 64-byte SQEs that is not mixed;
    /// [`Error::InvalidArgument`] on a mixed ring of fewer than 4 entries
    /// (a 128-byte entry at the wrap would never fit); otherwise as
    /// [`next_sqe`](Self::next_sqe) ([`Error::QueueFull`] also when only
    /// one slot, or only the padding, is free).
    ///
    /// # Safety
    ///
    /// As for [`next_sqe`](Self::next_sqe); on a mixed ring, the opcode
    /// written must be a 128-byte one (see above).
    pub unsafe fn next_sqe128(&mut self) -> Result<&mut Sqe128> {
        self.core.check()?;
        let slot = if self.core.features.sqe_size() == 128 {
            self.sq.next()
        } else if self.core.params.flags & sys::IORING_SETUP_SQE_MIXED != 0 {
            if self.sq.entries < 4 {
                return Err(Error::InvalidArgument(format!(
                    "a 128-byte SQE on an SQE_MIXED ring of {} entries: at the end of the SQ it needs a padding \
                     entry and two slots; create the ring with at least 4 entries",
                    self.sq.entries
                )));
            }
            self.sq.next_pair()
        } else {
            return Err(Error::unsupported(
                "128-byte SQE",
                Some("create the ring with Options::sqe128(true) or SetupFlags::SQE_MIXED (6.19+)"),
            ));
        };
        match slot {
            Some(slot) => {
                let sqe = slot.cast::<Sqe128>();
                // SAFETY: 128 bytes we own until the tail is published: one
                // slot of an SQE128 ring, or two consecutive 64-byte slots
                // of a mixed ring (`next_pair` never wraps).
                unsafe {
                    sqe.write(Sqe128::default());
                    Ok(&mut *sqe)
                }
            }
            None => Err(self.push_error()),
        }
    }

    /// Copies `sqe` into the next free entry.
    ///
    /// # Errors
    ///
    /// As for [`next_sqe`](Self::next_sqe).
    ///
    /// # Safety
    ///
    /// As for [`next_sqe`](Self::next_sqe): the memory `sqe` names must stay
    /// valid until the operation's last CQE is reaped.
    #[inline]
    pub unsafe fn push(&mut self, sqe: &Sqe) -> Result<()> {
        if self.sq.push(sqe) { Ok(()) } else { Err(self.push_error()) }
    }

    /// Copies all of `sqes` into consecutive entries, or none of them when
    /// they do not all fit (a linked chain must not be split across a
    /// flush by a full queue).
    ///
    /// # Errors
    ///
    /// As for [`next_sqe`](Self::next_sqe).
    ///
    /// # Safety
    ///
    /// As for [`push`](Self::push), for every entry.
    pub unsafe fn push_all(&mut self, sqes: &[Sqe]) -> Result<()> {
        self.core.check()?;
        let n = u32::try_from(sqes.len()).unwrap_or(u32::MAX);
        if n > self.sq.entries {
            return Err(Error::InvalidArgument(format!(
                "{n} entries can never fit an SQ of {} at once",
                self.sq.entries
            )));
        }
        if !self.sq.has_room(n) {
            return Err(self.push_error());
        }
        for sqe in sqes {
            let pushed = self.sq.push(sqe);
            debug_assert!(pushed, "room was checked");
        }
        Ok(())
    }

    /// Why no entry could be acquired: the ring's state, or a full SQ.
    #[cold]
    fn push_error(&self) -> Error {
        match self.core.check() {
            Err(e) => e,
            Ok(()) => Error::QueueFull { entries: self.sq.entries },
        }
    }

    /// Reserves provided-buffer group `group` for the layer that owns it
    /// (a send ring, whose accounting holds only if its own requests are
    /// the only ones selecting from the group): from now on the typed push
    /// paths of `uring-ops` refuse any other entry that selects from it.
    /// Reserving only restricts; it cannot be undone from safe code.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when the group is reserved already.
    pub fn reserve_buffer_group(&mut self, group: u16) -> Result<()> {
        if self.reserved_groups.contains(&group) {
            return Err(Error::InvalidArgument(format!("buffer group {group} is reserved already")));
        }
        if self.named_groups.as_ref().is_some_and(|n| n[usize::from(group) / 64] & (1 << (group % 64)) != 0) {
            return Err(Error::InvalidArgument(format!(
                "buffer group {group} was named by a request queued on this ring before (it could still select from \
                 the group once it exists): reserve a group id no request named"
            )));
        }
        self.reserved_groups.push(group);
        Ok(())
    }

    /// Ends the reservation of `group`.
    ///
    /// # Safety
    ///
    /// Only the layer that reserved the group may call it, once no request
    /// it depends on is left that selects from the group (for example after
    /// unregistering it).
    #[doc(hidden)]
    pub unsafe fn unreserve_buffer_group(&mut self, group: u16) {
        self.reserved_groups.retain(|&g| g != group);
    }

    /// Claims buffer group id `group` for a provided-buffer ring about to
    /// be registered: each id serves one registration in the ring's life.
    /// A CQE names a buffer only by its id; a request that selected a
    /// buffer of an earlier registration under the same id (committed, its
    /// CQE still to come) would otherwise name, to the new registration,
    /// a buffer of the new one that the kernel owns. Claiming only
    /// restricts.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when the id was claimed before.
    pub fn claim_buffer_group(&mut self, group: u16) -> Result<()> {
        if self.claimed_groups.contains(&group) {
            return Err(Error::InvalidArgument(format!(
                "buffer group {group} was registered on this ring before: a group id serves one provided-buffer \
                 ring per io_uring ring (a late CQE of the old one would name a buffer of the new one); use another id"
            )));
        }
        self.claimed_groups.push(group);
        Ok(())
    }

    /// Gives back a claim that served no registration.
    ///
    /// # Safety
    ///
    /// Nothing was published to the kernel under the id since it was
    /// claimed (the registration failed), so no CQE can name one of its
    /// buffers.
    #[doc(hidden)]
    pub unsafe fn unclaim_buffer_group(&mut self, group: u16) {
        self.claimed_groups.retain(|&g| g != group);
    }

    /// Notes that an entry selecting from `group` was queued (the typed
    /// push paths call it), so that the group can no longer be reserved:
    /// that request could still select from it once it exists.
    #[inline]
    pub fn note_selected_group(&mut self, group: u16) {
        let n = self.named_groups.get_or_insert_with(|| Box::new([0; 1024]));
        n[usize::from(group) / 64] |= 1 << (group % 64);
    }

    /// Whether `group` is reserved by a layer ([`reserve_buffer_group`](Self::reserve_buffer_group)).
    #[inline]
    pub fn is_buffer_group_reserved(&self, group: u16) -> bool {
        !self.reserved_groups.is_empty() && self.reserved_groups.contains(&group)
    }

    /// Takes back the entry acquired last, not yet flushed, so that it is
    /// never submitted (the push paths use it when a prepared entry turns
    /// out to be refused).
    ///
    /// # Safety
    ///
    /// The caller acquired an entry since the last flush and has not
    /// handed out anything that depends on its being submitted.
    #[doc(hidden)]
    pub unsafe fn retract_last_sqe(&mut self) {
        self.sq.retract();
    }

    /// Free SQ entries.
    pub fn sq_space_left(&mut self) -> u32 {
        self.sq.space_left()
    }

    /// Entries written but not yet submitted.
    pub fn sq_pending(&self) -> u32 {
        self.sq.unpublished()
    }

    /// Completion slots ready to reap (without entering the kernel).
    pub fn cq_ready(&self) -> u32 {
        self.cq.ready()
    }

    /// Whether the kernel has task work queued for this ring
    /// (`IORING_SQ_TASKRUN`): completions it will post at the next enter
    /// (a [`reap`](Self::reap) or wait makes one). `None` when the ring was
    /// not set up with `IORING_SETUP_TASKRUN_FLAG` (the kernel sets the flag
    /// only then; a `Ring` with deferred task work, the default, always
    /// enters to reap an empty CQ instead).
    ///
    /// Since Linux 5.19.
    #[doc(alias = "IORING_SQ_TASKRUN")]
    #[inline]
    pub fn task_work_pending(&self) -> Option<bool> {
        (self.core.params.flags & sys::IORING_SETUP_TASKRUN_FLAG != 0)
            .then(|| self.cq.sq_flags() & sys::IORING_SQ_TASKRUN != 0)
    }

    /// Whether completions overflowed the CQ and wait in the kernel's
    /// backlog (`IORING_SQ_CQ_OVERFLOW`); the next reap flushes them.
    #[doc(alias = "io_uring_cq_has_overflow")]
    #[inline]
    pub fn cq_overflow_pending(&self) -> bool {
        self.cq.sq_flags() & sys::IORING_SQ_CQ_OVERFLOW != 0
    }

    /// Turns the registered eventfd's notifications off or on
    /// (`IORING_CQ_EVENTFD_DISABLED` in the CQ ring's flags word,
    /// `cq_off.flags`): while off, the kernel posts CQEs without signalling
    /// the eventfd registered with
    /// [`Registrar::eventfd`](crate::Registrar::eventfd); turned on again,
    /// it signals for CQEs posted from then on (not for those posted
    /// meanwhile). An event loop turns them off while it is busy reaping
    /// anyway. No syscall: one store into ring memory, which the kernel
    /// reads each time it would signal. Since Linux 5.8.
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`] on kernels before 5.8 (no CQ flags word);
    /// [`Error::Stopped`].
    #[doc(alias = "io_uring_cq_eventfd_toggle")]
    #[doc(alias = "IORING_CQ_EVENTFD_DISABLED")]
    pub fn set_eventfd_enabled(&mut self, enabled: bool) -> Result<()> {
        if self.core.state == State::Stopped {
            return Err(Error::Stopped);
        }
        crate::core::set_eventfd_enabled(&self.cq, enabled)
    }

    /// Whether the registered eventfd is signalled for new CQEs: false
    /// only after [`set_eventfd_enabled(false)`](Self::set_eventfd_enabled)
    /// (true on kernels without the flag, which always signal). Since Linux
    /// 5.8.
    #[doc(alias = "io_uring_cq_eventfd_enabled")]
    pub fn eventfd_enabled(&self) -> bool {
        crate::core::eventfd_enabled(&self.cq)
    }

    /// CQEs the kernel dropped for lack of room (`cq_off.overflow`). Stays
    /// 0 on kernels with `IORING_FEAT_NODROP`, which buffer overflow
    /// instead; the library flushes that backlog when it reaps.
    pub fn cq_dropped(&self) -> u32 {
        self.cq.dropped()
    }

    /// Publishes the pending entries (one release store of the SQ tail) and
    /// submits them with one `io_uring_enter` (on SQPOLL rings: wakes the
    /// poller only if it sleeps). Returns how many the kernel consumed.
    #[inline]
    pub fn submit(&mut self) -> Result<u32> {
        self.core.check()?;
        let pending = self.sq.flush();
        if self.core.sqpoll {
            self.wake_sqpoll(pending)?;
            return Ok(pending);
        }
        if pending == 0 {
            return Ok(0);
        }
        self.core.enter(pending, 0, 0)
    }

    /// Submits and waits until at least `want` completions are ready.
    /// Returns how many entries the kernel consumed.
    #[inline]
    pub fn submit_and_wait(&mut self, want: u32) -> Result<u32> {
        self.core.check()?;
        let pending = self.sq.flush();
        if self.core.sqpoll {
            self.wake_sqpoll(pending)?;
            if want == 0 {
                return Ok(pending);
            }
            self.core.enter(0, want, sys::IORING_ENTER_GETEVENTS)?;
            return Ok(pending);
        }
        self.core.enter(pending, want, sys::IORING_ENTER_GETEVENTS)
    }

    /// Blocks until the SQ has room, on an SQPOLL ring: publishes the
    /// pending entries (waking the poller if it sleeps, as
    /// [`submit`](Self::submit) does) and, while the SQ is full, sleeps in
    /// the kernel (`io_uring_enter` with `IORING_ENTER_SQ_WAIT`) until the
    /// poller thread has consumed entries. Returns the free entries: a
    /// producer that got [`Error::QueueFull`] calls this instead of
    /// spinning. liburing `io_uring_sqring_wait`; since Linux 5.10.
    ///
    /// On a ring without SQPOLL the kernel consumes entries only when they
    /// are submitted, so there is nothing to wait for: it returns the free
    /// entries at once, without a syscall (0 means: call
    /// [`submit`](Self::submit)).
    ///
    /// A signal delivered meanwhile ends the kernel's wait early: the
    /// result may then be 0 (the SQ is still full; call again).
    ///
    /// # Errors
    ///
    /// [`Error::NotStarted`], [`Error::Stopped`]; the enter's errno
    /// (`EOWNERDEAD`: the poller thread is gone).
    #[doc(alias = "io_uring_sqring_wait")]
    #[doc(alias = "IORING_ENTER_SQ_WAIT")]
    pub fn wait_sq_room(&mut self) -> Result<u32> {
        self.core.check()?;
        if !self.core.sqpoll {
            return Ok(self.sq.space_left());
        }
        let unconsumed = self.sq.flush();
        let space = self.sq.space_left();
        if space > 0 {
            self.wake_sqpoll(unconsumed)?;
            return Ok(space);
        }
        // Full: the kernel's wait rechecks the published tail against the
        // head under its wait queue, so no wake-up is lost; a sleeping
        // poller is woken in the same call.
        let wake = if self.sq.needs_wakeup() { sys::IORING_ENTER_SQ_WAKEUP } else { 0 };
        self.core.enter(0, 0, sys::IORING_ENTER_SQ_WAIT | wake)?;
        Ok(self.sq.space_left())
    }

    #[inline]
    fn wake_sqpoll(&self, pending: u32) -> Result<()> {
        if pending > 0 && self.sq.needs_wakeup() {
            self.core.enter(0, 0, sys::IORING_ENTER_SQ_WAKEUP)?;
        }
        Ok(())
    }

    /// Submits what is pending and lets the kernel post what it owes
    /// (deferred task work, an overflow backlog), without blocking.
    #[inline]
    fn prepare_reap(&mut self) -> Result<()> {
        let pending = self.sq.flush();
        if self.core.sqpoll {
            self.wake_sqpoll(pending)?;
            if self.core.needs_getevents(&self.cq, self.cq.ready() == 0) {
                self.core.enter(0, 0, sys::IORING_ENTER_GETEVENTS)?;
            }
            return Ok(());
        }
        if pending > 0 || self.core.needs_getevents(&self.cq, self.cq.ready() == 0) {
            self.core.enter(pending, 0, sys::IORING_ENTER_GETEVENTS)?;
        }
        Ok(())
    }

    /// Flushes pending submissions, then copies ready completions into
    /// `out` (at most `out.len()`), without blocking: the reap. (The
    /// `wait_*` methods block; they flush too, so a `submit` right before
    /// any of them only costs a second syscall.)
    ///
    /// Makes no syscall when nothing is pending and completions are already
    /// visible. On deferred-task-work rings, an empty CQ costs one
    /// non-blocking `io_uring_enter` so the kernel can post what it owes
    /// (on `IOPOLL` rings too: it polls the device queues once, the only
    /// way their completions are posted);
    /// likewise when the kernel flags a CQ overflow backlog.
    ///
    /// The returned batch borrows the ring (its views resolve pooled
    /// contexts). To submit or return contexts while handling completions,
    /// keep only the count and read the slots directly:
    ///
    /// ```no_run
    /// # use uring_core::{CqeSlot, Ring, Options};
    /// # let mut ring = Ring::new(Options::small())?;
    /// let mut slots = [CqeSlot::EMPTY; 64];
    /// let n = ring.reap(&mut slots).map(|r| r.len()).or_else(|e| if e.is_would_block() { Ok(0) } else { Err(e) })?;
    /// for slot in &slots[..n] {
    ///     let cqe = slot.cqe();
    ///     if let Some(ext) = ring.pools().extended(cqe.context()) { /* ... */ }
    ///     let _ = ring.pools_mut().release(cqe.context());
    ///     // ... and push follow-up SQEs here
    /// }
    /// # Ok::<(), uring_core::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`] when no completion is observable;
    /// [`Error::Stopped`], [`Error::NotStarted`]; the enter's errno.
    #[doc(alias = "io_uring_peek_batch_cqe")]
    #[inline]
    pub fn reap<'a>(&'a mut self, out: &'a mut [CqeSlot]) -> Result<Reaped<'a>> {
        self.core.check()?;
        if out.is_empty() {
            return Err(no_slots());
        }
        self.prepare_reap()?;
        self.take_ready(out)
    }

    /// Like [`reap`](Self::reap), but blocks until at least `min`
    /// completions are ready or `timeout` passes (`None`: no limit). A
    /// timeout with nothing ready is [`Error::WouldBlock`]; a signal is an
    /// `EINTR` [`Error::Io`]. Shorthand for [`wait_with`](Self::wait_with).
    ///
    /// It submits what is queued in the same `io_uring_enter`: an event
    /// loop needs no [`submit`](Self::submit) before it (that would cost a
    /// second syscall per turn).
    #[inline]
    pub fn wait_for<'a>(
        &'a mut self,
        out: &'a mut [CqeSlot],
        min: u32,
        timeout: Option<Duration>,
    ) -> Result<Reaped<'a>> {
        self.wait_with(out, &WaitArgs { min, timeout, ..WaitArgs::default() })
    }

    /// The general blocking wait: flushes, then blocks as `args` says
    /// (at least `min` completions, an overall `timeout`, a `min_wait`
    /// after which fewer than `min` will do, without counting as iowait),
    /// then reaps into `out`.
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`] when the wait ended with nothing ready;
    /// [`Error::Unsupported`] for `min_wait` before 6.12 or `no_iowait`
    /// before 6.15; `EINTR` as [`Error::Io`].
    pub fn wait_with<'a>(&'a mut self, out: &'a mut [CqeSlot], args: &WaitArgs) -> Result<Reaped<'a>> {
        self.core.check()?;
        if out.is_empty() {
            return Err(no_slots());
        }
        let pending = self.sq.flush();
        if self.core.sqpoll {
            self.wake_sqpoll(pending)?;
        }
        let to_submit = if self.core.sqpoll { 0 } else { pending };
        let satisfied = self.cq.ready() >= args.min && !self.core.needs_getevents(&self.cq, false);
        if to_submit > 0 || !satisfied {
            self.core.enter_wait(to_submit, args)?;
        }
        self.take_ready(out)
    }

    #[inline]
    fn take_ready<'a>(&'a mut self, out: &'a mut [CqeSlot]) -> Result<Reaped<'a>> {
        let n = self.cq.reap_into(out);
        if n == 0 {
            return Err(Error::WouldBlock);
        }
        Ok(Reaped::new(&out[..n], Some(&self.pools)))
    }

    /// A zero-copy pass over the ready completions, in ring memory: each
    /// [`Cqe`] borrows its ring entry, and the entries go back to the
    /// kernel (one release store of the CQ head) when the pass is dropped.
    /// Flushes pending submissions first, as [`reap`](Self::reap) does.
    #[inline]
    pub fn completions(&mut self) -> Result<Completions<'_>> {
        self.core.check()?;
        self.prepare_reap()?;
        let (head, tail) = self.cq.window();
        Ok(Completions { seq: self.cq.position(), ring: self, head, tail })
    }

    /// Submits, waits until at least `want` completions are ready, and
    /// passes over them in ring memory: [`submit_and_wait`](Self::submit_and_wait)
    /// then [`completions`](Self::completions), without the second flush
    /// and flag checks (the wait's `GETEVENTS` has run the task work and
    /// flushed any overflow backlog). liburing's `io_uring_submit_and_wait`
    /// followed by `io_uring_for_each_cqe`. With `want` 0 it is
    /// `submit` then `completions`.
    ///
    /// # Errors
    ///
    /// As for [`submit_and_wait`](Self::submit_and_wait).
    #[inline]
    pub fn wait_completions(&mut self, want: u32) -> Result<Completions<'_>> {
        if want == 0 {
            self.submit()?;
            return self.completions();
        }
        self.submit_and_wait(want)?;
        let (head, tail) = self.cq.window();
        Ok(Completions { seq: self.cq.position(), ring: self, head, tail })
    }

    /// Resizes the SQ and CQ of a running ring
    /// (`IORING_REGISTER_RESIZE_RINGS`, since 6.13; the kernel allows it on
    /// deferred-task-work rings only). Pending SQEs are submitted first;
    /// ready CQEs are carried over by the kernel.
    pub fn resize(&mut self, sq_entries: u32, cq_entries: u32) -> Result<()> {
        self.core.check()?;
        if self.core.params.flags & sys::IORING_SETUP_NO_MMAP != 0 {
            return Err(Error::unsupported(
                "IORING_REGISTER_RESIZE_RINGS on a NO_MMAP ring",
                Some("this library resizes kernel-mapped rings only"),
            ));
        }
        if !self.core.defer {
            return Err(Error::unsupported(
                "IORING_REGISTER_RESIZE_RINGS without IORING_SETUP_DEFER_TASKRUN",
                Some("the kernel resizes deferred-task-work rings only"),
            ));
        }
        for (what, n) in [("sq_entries", sq_entries), ("cq_entries", cq_entries)] {
            if n == 0 || !n.is_power_of_two() {
                return Err(Error::InvalidArgument(format!("{what} must be a non-zero power of two, got {n}")));
            }
        }
        if cq_entries < sq_entries {
            return Err(Error::InvalidArgument(format!("cq_entries {cq_entries} < sq_entries {sq_entries}")));
        }
        if self.sq.flush() > 0 {
            self.core.enter(self.sq.flush(), 0, sys::IORING_ENTER_GETEVENTS)?;
        }
        let left = self.sq.flush();
        if left > 0 {
            // The kernel would copy these entries into the new ring and
            // read them later; their slots' `Keep`s are about to be
            // reallocated.
            return Err(Error::InvalidArgument(format!(
                "{left} SQ entries were not consumed by the kernel (a submission error stopped it); reap, then resize"
            )));
        }
        // The kernel copies the CQEs from its head on: every CQE we have
        // consumed (a forgotten `Completions` pass may have left them
        // unpublished) must be behind that head, or it would come back
        // under a new position.
        self.cq.publish_head();
        // Only CQSIZE/CLAMP may be passed; the kernel carries the entry
        // sizes and NO_SQARRAY over from the ring itself.
        let mut p =
            sys::io_uring_params { sq_entries, cq_entries, flags: sys::IORING_SETUP_CQSIZE, ..Default::default() };
        // SAFETY: RESIZE_RINGS reads and updates one io_uring_params; no
        // user memory is handed over (not NO_MMAP).
        unsafe {
            sys::io_uring_register(
                self.core.raw_fd,
                sys::IORING_REGISTER_RESIZE_RINGS,
                (&mut p as *mut sys::io_uring_params).cast(),
                1,
            )
        }
        .map_err(|e| Error::io("IORING_REGISTER_RESIZE_RINGS", e))?;
        p.flags = self.core.params.flags;
        p.features = self.core.params.features;
        let rings = Mapping::map_ring(self.core.raw_fd, rings_len(&p), sys::IORING_OFF_SQ_RING)
            .map_err(|e| Error::io("mmap (resized rings)", e))?;
        let sqes = Mapping::map_ring(self.core.raw_fd, sqes_len(&p), sys::IORING_OFF_SQES)
            .map_err(|e| Error::io("mmap (resized sqes)", e))?;
        if self.core.dontfork {
            // Best effort: the kernel has switched to the new rings already,
            // so a failure here must not leave the queues on the old ones
            // (madvise on a fresh whole mapping does not fail in practice).
            let _ = crate::core::dont_fork(&rings, Some(&sqes));
        }
        // SAFETY: the new mappings are what `p` describes; the old ones are
        // dropped right after, when nothing points into them any more.
        unsafe {
            self.sq.rebind(&p, rings.ptr(), sqes.ptr());
            self.cq.rebind(&p, rings.ptr());
        }
        self.core.rings = rings;
        self.core.sqes = Some(sqes);
        self.core.params.sq_entries = p.sq_entries;
        self.core.params.cq_entries = p.cq_entries;
        self.core.params.sq_off = p.sq_off;
        self.core.params.cq_off = p.cq_off;
        self.core.features.set_entries(p.sq_entries, p.cq_entries);
        Ok(())
    }
}

impl Drop for Ring {
    /// Stops the ring (see [`stop`](Self::stop)) before any field drops:
    /// the SQ slots' `Keep`s hold memory the kernel reads while it consumes
    /// entries (on SQPOLL rings, on the poller thread), so they must
    /// outlive every entry the kernel may still consume.
    fn drop(&mut self) {
        self.stop();
    }
}

impl AsRawFd for Ring {
    /// The ring fd (-1 once stopped).
    fn as_raw_fd(&self) -> RawFd {
        if self.core.fd.is_some() { self.core.raw_fd } else { -1 }
    }
}

/// A zero-copy pass over ready completions; see [`Ring::completions`].
///
/// Not an `Iterator`: each [`Cqe`] borrows the pass, so none can outlive
/// the point where the entries go back to the kernel. This does not
/// compile:
///
/// ```compile_fail
/// # use uring_core::{Options, Ring};
/// # let mut ring = Ring::new(Options::small())?;
/// let cqe = {
///     let mut pass = ring.completions()?;
///     pass.next().unwrap() // borrows `pass`, which is dropped here
/// };
/// println!("{}", cqe.res());
/// # Ok::<(), uring_core::Error>(())
/// ```
///
/// and neither does keeping a view from [`Ring::reap`] across a submit:
///
/// ```compile_fail
/// # use uring_core::{CqeSlot, Options, Ring};
/// # let mut ring = Ring::new(Options::small())?;
/// let mut slots = [CqeSlot::EMPTY; 8];
/// let cqe = ring.reap(&mut slots)?.get(0).unwrap();
/// ring.submit()?; // the ring is still borrowed by `cqe`
/// println!("{}", cqe.res());
/// # Ok::<(), uring_core::Error>(())
/// ```
#[derive(Debug)]
pub struct Completions<'r> {
    ring: &'r mut Ring,
    head: u32,
    /// The position of `head` ([`Cqe::seq`]).
    seq: u64,
    tail: u32,
}

impl Completions<'_> {
    /// The next completion, borrowed from ring memory.
    #[inline]
    #[allow(clippy::should_implement_trait)] // A lending iterator cannot be an Iterator.
    pub fn next(&mut self) -> Option<Cqe<'_>> {
        let (ptr, big, seq) = self.ring.cq.peek_at(&mut self.head, &mut self.seq, self.tail)?;
        // Consumed now, not at drop: a forgotten pass must not show this
        // CQE again, under the same `seq`, to a later pass (layers that
        // reuse an identity refuse a CQE only by its position). The kernel
        // gets the slot back when the pass is dropped (or at the next
        // pass's drop, or reap).
        self.ring.cq.consume_to(self.head);
        Some(Cqe::new(ptr, big, Some(&self.ring.pools), self.ring.core.id, seq))
    }

    /// Calls `f` for every ready completion; returns how many there were.
    pub fn for_each(mut self, mut f: impl FnMut(Cqe<'_>)) -> usize {
        let mut n = 0;
        while let Some(c) = self.next() {
            f(c);
            n += 1;
        }
        n
    }
}

impl Drop for Completions<'_> {
    #[inline]
    fn drop(&mut self) {
        self.ring.cq.publish_head();
    }
}
