//! Safe fixed-buffer I/O over [`RegisteredBuffers`]: [`FixedBuffers`].
//!
//! Fixed-buffer operations (`READ_FIXED`, `WRITE_FIXED`, `READV_FIXED`,
//! `WRITEV_FIXED`, and `SEND_ZC` with `IORING_RECVSEND_FIXED_BUF`) name a
//! registered buffer by index and an address inside it. The memory belongs
//! to the library (it is [attached](uring_core::Ring::attach) to the ring),
//! so what is left to make them safe is *who may touch a buffer when*.
//! [`FixedBuffers`] owns the table and keeps, per buffer, one of three
//! states:
//!
//! | state | the kernel | the caller |
//! |---|---|---|
//! | idle | nothing | [`buffer`](FixedBuffers::buffer) and [`buffer_mut`](FixedBuffers::buffer_mut) |
//! | the kernel reads it (write, writev, send) | reads | [`buffer`](FixedBuffers::buffer) only |
//! | the kernel writes it (read, readv) | writes | nothing |
//!
//! A slice lent out cannot outlive the state that allowed it: starting an
//! operation needs `&mut self`, so this does not compile:
//!
//! ```compile_fail
//! # fn f(ring: &mut uring_core::Ring, bufs: &mut uring_buffers::FixedBuffers, fd: i32) {
//! let bytes = bufs.buffer(0).unwrap();
//! bufs.read_fixed(ring, fd, 0, 0..16, 0).unwrap(); // `bufs` is borrowed by `bytes`
//! println!("{bytes:?}");
//! # }
//! ```
//!
//! and completing one from raw values, which cannot prove where they came
//! from, is `unsafe`:
//!
//! ```compile_fail
//! # fn f(bufs: &mut uring_buffers::FixedBuffers, user_data: u64) {
//! let _ = bufs.handle_raw(user_data, 0, false, false); // call to unsafe function
//! # }
//! ```
//!
//! Starting an operation moves its buffer out of *idle* (a buffer serves
//! one operation at a time; a second one is refused), and handing the
//! operation's completion to [`handle_cqe`](FixedBuffers::handle_cqe) moves
//! it back. An accessor called on a buffer in the wrong state is an
//! [`Error::Busy`] saying which operation holds it, never a
//! borrow of bytes the kernel is writing or a `&mut` to bytes it is
//! reading.
//!
//! The table makes its own registration ([`register`](FixedBuffers::register),
//! [`register_huge`](FixedBuffers::register_huge),
//! [`sparse`](FixedBuffers::sparse) with
//! [`install`](FixedBuffers::install)) so that no other handle to the
//! memory exists; [`into_inner`](FixedBuffers::into_inner) gives the
//! [`RegisteredBuffers`] back once nothing is in flight.
//!
//! ```
//! use std::io::{Read, Seek};
//! use std::os::fd::AsRawFd;
//! use std::time::Duration;
//! use uring_buffers::FixedBuffers;
//! use uring_core::{CqeSlot, Options, Ring};
//!
//! let mut ring = Ring::new(Options::default())?;
//! ring.start()?;
//! let mut bufs = FixedBuffers::register(&mut ring, 4, 4096)?;
//! bufs.buffer_mut(0)?[..5].copy_from_slice(b"hello");
//! let mut file = tempfile();
//! let id = bufs.write_fixed(&mut ring, file.as_raw_fd(), 0, 0..5, 0)?;
//! assert!(bufs.buffer_mut(0).is_err(), "in flight");
//! let mut slots = [CqeSlot::EMPTY; 4];
//! let n = ring.wait_for(&mut slots, 1, Some(Duration::from_secs(5)))?.len();
//! let done = bufs.handle_cqe(&slots[0].cqe()).expect("the table's own CQE");
//! assert_eq!((n, done.id, done.res, done.free), (1, id, 5, true));
//! bufs.buffer_mut(0)?[0] = b'j'; // idle again
//! # let mut s = String::new();
//! # file.rewind()?;
//! # file.read_to_string(&mut s)?;
//! # assert_eq!(s, "hello");
//! # fn tempfile() -> std::fs::File {
//! #     let p = std::env::temp_dir().join(format!("uring-fixed-doc-{}", std::process::id()));
//! #     let f = std::fs::File::options().read(true).write(true).create(true).truncate(true).open(&p).unwrap();
//! #     std::fs::remove_file(&p).unwrap();
//! #     f
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Completions and the `user_data` scheme
//!
//! Each operation is submitted with a `user_data` of the table's own, a
//! *foreign* context (mode bits `3`) that other layers never produce:
//!
//! | bits | meaning |
//! |---|---|
//! | 0–1 | `3` (foreign mode) |
//! | 2 | `0` |
//! | 3–10 | the tag `0xF1` (subscriptions use `0xB5`) |
//! | 11–24 | the operation slot (14 bits: at most one operation per buffer, and a table has at most 16384) |
//! | 25–63 | the table's id (39 bits, from a process-wide counter that never wraps) |
//!
//! [`handle_cqe`](FixedBuffers::handle_cqe) answers `None` for every CQE
//! that is not one of this table's live operations: other layers' CQEs,
//! another table's, another ring's ([`Cqe::ring_id`]), and a stale or
//! replayed one: a CQE reaped before the operation was queued
//! ([`Cqe::seq`] below the ring's [`cq_position`](Ring::cq_position) at
//! submission), or a second result or notification of one operation. So a
//! buffer still in flight is never released by a CQE that is not its own.
//! A CQE forged with the exact `user_data` of a live operation cannot be
//! posted from safe code: `RingOps::push_op`, `MsgRing`, `MsgRingFd` and
//! `PollUpdate` refuse the layer tag ([`uring_core::FOREIGN_TAG_FIXED`]),
//! and `push_op_unchecked`'s contract forbids it.
//!
//! # Vectored operations
//!
//! `READV_FIXED`/`WRITEV_FIXED` (since 6.15) take several ranges that must
//! all lie in **one** registered buffer: the kernel resolves every iovec
//! against the buffer `sqe->buf_index` names and fails the request with
//! `-EFAULT` otherwise. [`readv_fixed`](FixedBuffers::readv_fixed) and
//! [`writev_fixed`](FixedBuffers::writev_fixed) therefore take a buffer and
//! ranges of it. In 6.18 the kernel copies the iovec array at prep
//! (`io_prep_reg_iovec`) and resolves it against the buffer at issue; the
//! table keeps the array in the operation's slot until the CQE all the same,
//! so it stays valid whatever a kernel version does.
//!
//! # Fixed send
//!
//! A plain `IORING_OP_SEND` does not take `IORING_RECVSEND_FIXED_BUF` (the
//! kernel refuses it with `-EINVAL`; the test
//! `plain_send_refuses_fixed_buffers` checks it), so
//! [`send_fixed`](FixedBuffers::send_fixed) is a zero-copy send
//! (`IORING_OP_SEND_ZC`) from the registered buffer. Its buffer stays busy
//! until the **notification** CQE (`IORING_CQE_F_NOTIF`), not just the
//! result: [`FixedDone::free`] says when.
//!
//! # Stopping and dropping
//!
//! Stopping or dropping the ring with operations in flight is safe: the
//! ring cancels them, and the buffers' memory stays attached to it until it
//! is closed. Their CQEs are lost with the ring, so the table keeps those
//! buffers in flight for good (it cannot tell a cancelled request from one
//! the kernel could not cancel). Dropping the table with operations in
//! flight hands their iovec arrays to the ring (the kernel might still read
//! them), which frees them once it has closed with nothing in flight; the
//! buffers are fine.

use std::fmt;
use std::ops::Range;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};

use uring_core::{Cqe, Ring, SqeContext};
use uring_ops::Target;
use uring_ops::file::{ReadFixed, ReadvFixed, WriteFixed, WritevFixed};
use uring_ops::net::SendZc;

use crate::error::{Error, Result};
use crate::registered::RegisteredBuffers;

const MODE_FOREIGN: u64 = 0b11;
const TAG: u64 = uring_core::FOREIGN_TAG_FIXED as u64;
const TAG_SHIFT: u32 = 3;
/// Bits 0–10: mode, bit 2, tag.
const LOW_MASK: u64 = (1 << 11) - 1;
const LOW: u64 = MODE_FOREIGN | (TAG << TAG_SHIFT);
const SLOT_SHIFT: u32 = 11;
const SLOT_BITS: u32 = 14;
const SLOT_MASK: u64 = (1 << SLOT_BITS) - 1;
const TABLE_SHIFT: u32 = 25;
const TABLE_MASK: u64 = (1 << 39) - 1;

/// The most ranges one vectored operation takes (`UIO_MAXIOV`).
pub const MAX_RANGES: usize = 1024;

static NEXT_TABLE: AtomicU64 = AtomicU64::new(1);

/// The identity of one fixed-buffer operation: the `user_data` its CQEs
/// carry (see the [module documentation](self) for the layout).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FixedId(u64);

impl FixedId {
    /// The `user_data` value.
    pub const fn user_data(self) -> u64 {
        self.0
    }

    /// The context the operation was submitted with (foreign mode).
    pub const fn context(self) -> SqeContext {
        SqeContext::from_raw(self.0)
    }
}

/// Which fixed-buffer operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FixedKind {
    /// `IORING_OP_READ_FIXED`: the kernel writes the buffer.
    Read,
    /// `IORING_OP_WRITE_FIXED`: the kernel reads the buffer.
    Write,
    /// `IORING_OP_READV_FIXED`: the kernel writes ranges of the buffer.
    Readv,
    /// `IORING_OP_WRITEV_FIXED`: the kernel reads ranges of the buffer.
    Writev,
    /// `IORING_OP_SEND_ZC` with `IORING_RECVSEND_FIXED_BUF`: the kernel
    /// reads the buffer until the notification.
    SendZc,
}

impl FixedKind {
    /// Whether the kernel writes the buffer (reads from a file into it).
    pub const fn kernel_writes(self) -> bool {
        matches!(self, FixedKind::Read | FixedKind::Readv)
    }

    fn name(self) -> &'static str {
        match self {
            FixedKind::Read => "fixed read into it",
            FixedKind::Write => "fixed write from it",
            FixedKind::Readv => "fixed readv into it",
            FixedKind::Writev => "fixed writev from it",
            FixedKind::SendZc => "fixed zero-copy send from it",
        }
    }
}

/// What a buffer is doing now ([`FixedBuffers::state`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BufferState {
    /// No operation uses it: readable and writable.
    Idle,
    /// An operation reads it (write, writev, send): readable only.
    KernelReads(FixedId),
    /// An operation writes it (read, readv): not accessible.
    KernelWrites(FixedId),
}

/// One CQE of a fixed-buffer operation, as [`FixedBuffers::handle_cqe`]
/// saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct FixedDone {
    /// The operation.
    pub id: FixedId,
    /// Which operation it was.
    pub kind: FixedKind,
    /// The registered buffer it used.
    pub index: u32,
    /// The operation's result: bytes read, written or sent, or `-errno`.
    /// On a send's notification, the result its first CQE reported.
    pub res: i32,
    /// Whether the buffer is idle again (always, but for a zero-copy send's
    /// first CQE when a notification follows).
    pub free: bool,
    /// Whether this CQE is a zero-copy send's notification
    /// (`IORING_CQE_F_NOTIF`).
    pub notification: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Buf {
    Idle,
    Busy(u32),
}

/// The iovec array of a vectored operation, kept until its CQE.
struct IoVecs(Box<[libc::iovec]>);

// SAFETY: the array is plain data (addresses into the table's registered
// memory, never dereferenced by Rust); moving it between threads changes
// nothing.
unsafe impl Send for IoVecs {}

/// Where a dropped table leaves the iovec arrays of operations still in
/// flight: attached to the ring, so they are freed once the ring has
/// closed with nothing in flight (or leaked with the rest of its attached
/// memory if it could not make sure), never while the kernel may read one.
#[derive(Default)]
struct Graveyard(std::sync::Mutex<Vec<IoVecs>>);

impl fmt::Debug for IoVecs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} iovecs", self.0.len())
    }
}

#[derive(Debug)]
struct Live {
    kind: FixedKind,
    index: u32,
    iovecs: Option<IoVecs>,
    /// The first CQE's result (zero-copy sends wait for a second CQE).
    result: Option<i32>,
    /// A zero-copy send's notification was seen.
    notified: bool,
}

#[derive(Debug)]
struct OpSlot {
    /// The ring's [`Ring::cq_position`] when the operation was queued:
    /// its CQEs have a `seq` at least this.
    queued_at: u64,
    live: Option<Live>,
}

/// Registered buffers with safe fixed-buffer I/O; see the
/// [module documentation](self).
pub struct FixedBuffers {
    bufs: RegisteredBuffers,
    state: Vec<Buf>,
    ops: Vec<OpSlot>,
    free_ops: Vec<u32>,
    table: u64,
    /// The ring the table is registered with ([`Ring::id`]).
    ring_id: u64,
    ring_fd: RawFd,
    in_flight: usize,
    graveyard: std::sync::Arc<Graveyard>,
}

// SAFETY: the iovec arrays point into the table's own registered memory;
// nothing in the table is tied to a thread.
unsafe impl Send for FixedBuffers {}

impl fmt::Debug for FixedBuffers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FixedBuffers")
            .field("buffers", &self.bufs.len())
            .field("in_flight", &self.in_flight)
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl FixedBuffers {
    /// Registers `count` buffers of `size` bytes with `ring`
    /// ([`RegisteredBuffers::register`]) and takes them over.
    ///
    /// # Errors
    ///
    /// As for [`RegisteredBuffers::register`].
    pub fn register(ring: &mut Ring, count: u32, size: usize) -> Result<Self> {
        let bufs = RegisteredBuffers::register(ring, count, size)?;
        // SAFETY: the table was just made; no other handle to its memory
        // exists.
        unsafe { Self::from_registered(ring, bufs) }
    }

    /// As [`register`](Self::register), from 2 MiB huge pages
    /// ([`RegisteredBuffers::register_huge`]).
    ///
    /// # Errors
    ///
    /// As for [`RegisteredBuffers::register_huge`].
    pub fn register_huge(ring: &mut Ring, count: u32, size: usize) -> Result<Self> {
        let bufs = RegisteredBuffers::register_huge(ring, count, size)?;
        // SAFETY: as in `register`.
        unsafe { Self::from_registered(ring, bufs) }
    }

    /// Registers a sparse table of `count` empty slots
    /// ([`RegisteredBuffers::sparse`]) to [`install`](Self::install)
    /// buffers into.
    ///
    /// # Errors
    ///
    /// As for [`RegisteredBuffers::sparse`].
    pub fn sparse(ring: &mut Ring, count: u32) -> Result<Self> {
        let bufs = RegisteredBuffers::sparse(ring, count)?;
        // SAFETY: as in `register`.
        unsafe { Self::from_registered(ring, bufs) }
    }

    /// Installs a fresh buffer of `size` bytes in slot `index`
    /// ([`RegisteredBuffers::install`]), replacing what was there.
    ///
    /// # Errors
    ///
    /// [`Error::Busy`] while an operation uses the slot;
    /// [`Error::InvalidArgument`] for another ring or an index outside the
    /// table; and as for [`RegisteredBuffers::install`].
    pub fn install(&mut self, ring: &mut Ring, index: u32, size: usize) -> Result<()> {
        self.check_ring(ring)?;
        if let Buf::Busy(op) = self.slot_state(index)? {
            return Err(self.busy_error(index, op, "replaced"));
        }
        self.bufs.install(ring, index, size)
    }

    /// Takes over `bufs`, a table registered with `ring`: from now on its
    /// buffers are reached through this value, which knows which are in
    /// flight. Operations must be submitted on `ring`.
    ///
    /// There is no safe way to wrap a table made elsewhere, nor a
    /// `clone_into` here: a second handle to the same memory (a table
    /// cloned into another ring with [`RegisteredBuffers::clone_into`], or
    /// the one it was cloned from) would not see this table's operations,
    /// and could read bytes the kernel is writing.
    ///
    /// # Safety
    ///
    /// No other [`RegisteredBuffers`] may share memory with `bufs` (made by
    /// [`clone_into`](RegisteredBuffers::clone_into) from it, or it from
    /// another), or none may be used to reach the buffers while this table
    /// has operations in flight: until each operation's last CQE has been
    /// handed to [`handle_cqe`](Self::handle_cqe), or the ring has been
    /// stopped.
    ///
    /// # Errors
    ///
    /// [`Error::Ring`] when the ring is stopped.
    pub unsafe fn from_registered(ring: &mut Ring, bufs: RegisteredBuffers) -> Result<Self> {
        let n = bufs.len();
        let graveyard = std::sync::Arc::new(Graveyard::default());
        ring.attach(Box::new(graveyard.clone()))?;
        Ok(FixedBuffers {
            bufs,
            state: vec![Buf::Idle; n],
            ops: Vec::new(),
            free_ops: Vec::new(),
            // 2^39 tables (one registration syscall each) is beyond any
            // process's life; the id never wraps onto a live one.
            table: NEXT_TABLE.fetch_add(1, Ordering::Relaxed) & TABLE_MASK,
            ring_id: ring.id(),
            ring_fd: ring.as_raw_fd(),
            in_flight: 0,
            graveyard,
        })
    }

    /// Gives the table back when no operation is in flight.
    ///
    /// # Errors
    ///
    /// `self`, unchanged, while operations are in flight.
    #[allow(clippy::result_large_err)] // The table itself comes back, unchanged: nothing is lost.
    pub fn into_inner(self) -> std::result::Result<RegisteredBuffers, Self> {
        if self.in_flight > 0 {
            return Err(self);
        }
        let me = std::mem::ManuallyDrop::new(self);
        // SAFETY: `me` is never used again nor dropped; each field is read
        // out once and the ones not returned are dropped here.
        unsafe {
            drop(std::ptr::read(&me.state));
            drop(std::ptr::read(&me.ops));
            drop(std::ptr::read(&me.free_ops));
            drop(std::ptr::read(&me.graveyard));
            Ok(std::ptr::read(&me.bufs))
        }
    }

    /// Slots in the table.
    pub fn len(&self) -> usize {
        self.bufs.len()
    }

    /// Whether the table has no slots.
    pub fn is_empty(&self) -> bool {
        self.bufs.is_empty()
    }

    /// Operations whose buffer is not free yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// What buffer `index` is doing.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for an index outside the table.
    pub fn state(&self, index: u32) -> Result<BufferState> {
        match self.slot_state(index)? {
            Buf::Idle => Ok(BufferState::Idle),
            Buf::Busy(op) => {
                let live = self.ops[op as usize].live.as_ref().expect("a busy buffer names a live operation");
                let id = self.id_of(op);
                Ok(if live.kind.kernel_writes() { BufferState::KernelWrites(id) } else { BufferState::KernelReads(id) })
            }
        }
    }

    fn slot_state(&self, index: u32) -> Result<Buf> {
        self.state
            .get(index as usize)
            .copied()
            .ok_or_else(|| Error::invalid(format!("registered buffer {index} is outside the table of {}", self.len())))
    }

    fn busy_error(&self, index: u32, op: u32, access: &str) -> Error {
        let kind = self.ops[op as usize].live.as_ref().map_or("an operation", |l| l.kind.name());
        Error::Busy { index, access: access.to_owned(), op: kind }
    }

    /// The bytes of buffer `index`: while it is idle, or while an
    /// operation only reads it (write, writev, send).
    ///
    /// # Errors
    ///
    /// [`Error::Busy`] while an operation writes into the buffer (a read,
    /// or a chain with a read, that has not completed);
    /// [`Error::InvalidArgument`] when the index is outside the table or
    /// the slot is empty.
    pub fn buffer(&self, index: u32) -> Result<&[u8]> {
        if let Buf::Busy(op) = self.slot_state(index)?
            && self.ops[op as usize].live.as_ref().is_some_and(|l| l.kind.kernel_writes())
        {
            return Err(self.busy_error(index, op, "read"));
        }
        self.bufs.buffer(index).ok_or_else(|| empty_slot(index))
    }

    /// The bytes of buffer `index`, writable: only while it is idle.
    ///
    /// # Errors
    ///
    /// [`Error::Busy`] while any operation uses the buffer;
    /// [`Error::InvalidArgument`] when the index is outside the table or
    /// the slot is empty.
    pub fn buffer_mut(&mut self, index: u32) -> Result<&mut [u8]> {
        if let Buf::Busy(op) = self.slot_state(index)? {
            return Err(self.busy_error(index, op, "written"));
        }
        self.bufs.buffer_mut(index).ok_or_else(|| empty_slot(index))
    }

    /// Checks that buffer `index` is idle and installed and that `ranges`
    /// lie inside it; returns its address.
    fn check_ring(&self, ring: &Ring) -> Result<()> {
        // The ring's identity, not its fd: a closed ring's fd number is
        // reused by the next ring, whose table index `i` is other memory.
        if ring.id() != self.ring_id {
            return Err(Error::invalid(format!(
                "these registered buffers belong to ring {} (fd {}), not to ring {} (fd {})",
                self.ring_id,
                self.ring_fd,
                ring.id(),
                ring.as_raw_fd()
            )));
        }
        Ok(())
    }

    fn check_op(&self, ring: &Ring, index: u32, ranges: &[Range<usize>]) -> Result<*mut u8> {
        self.check_ring(ring)?;
        if let Buf::Busy(op) = self.slot_state(index)? {
            return Err(self.busy_error(index, op, "used by another operation"));
        }
        if index > u32::from(u16::MAX) {
            return Err(Error::invalid(format!("registered buffer {index}: fixed operations name at most 65535")));
        }
        let (ptr, len) = self.bufs.raw_parts(index).ok_or_else(|| empty_slot(index))?;
        for r in ranges {
            if r.start > r.end || r.end > len {
                return Err(Error::invalid(format!(
                    "range {}..{} does not lie inside registered buffer {index} of {len} bytes",
                    r.start, r.end
                )));
            }
            if r.end - r.start > i32::MAX as usize {
                return Err(Error::invalid(format!("range {}..{} exceeds i32::MAX bytes", r.start, r.end)));
            }
        }
        Ok(ptr)
    }

    fn id_of(&self, op: u32) -> FixedId {
        FixedId(LOW | (u64::from(op) << SLOT_SHIFT) | (self.table << TABLE_SHIFT))
    }

    /// Takes a free operation slot for buffer `index`, queued when the
    /// ring's CQ position is `queued_at`, and marks the buffer busy.
    fn begin(&mut self, kind: FixedKind, index: u32, iovecs: Option<IoVecs>, queued_at: u64) -> u32 {
        let op = match self.free_ops.pop() {
            Some(op) => op,
            None => {
                self.ops.push(OpSlot { queued_at: 0, live: None });
                (self.ops.len() - 1) as u32
            }
        };
        let slot = &mut self.ops[op as usize];
        slot.queued_at = queued_at;
        slot.live = Some(Live { kind, index, iovecs, result: None, notified: false });
        self.state[index as usize] = Buf::Busy(op);
        self.in_flight += 1;
        op
    }

    /// Ends operation `op`: its buffer is idle, its slot free. Returns the
    /// iovec array, to be dropped by the caller.
    fn finish(&mut self, op: u32) -> Option<Live> {
        let live = self.ops[op as usize].live.take()?;
        self.state[live.index as usize] = Buf::Idle;
        self.free_ops.push(op);
        self.in_flight -= 1;
        Some(live)
    }

    /// Pushes `prepared` for a new operation of `kind` on buffer `index`,
    /// undoing the bookkeeping when the ring refuses.
    ///
    /// # Safety
    ///
    /// `operation` must name only memory of registered buffer `index` of
    /// this table (and the iovec array held in `iovecs`, whose heap
    /// address does not change when it moves into the slot), used as the
    /// operation's `kind` says (written only by reads).
    unsafe fn push<O: uring_ops::Prepare>(
        &mut self,
        ring: &mut Ring,
        kind: FixedKind,
        index: u32,
        iovecs: Option<IoVecs>,
        operation: O,
    ) -> Result<FixedId> {
        let op = self.begin(kind, index, iovecs, ring.cq_position());
        let id = self.id_of(op);
        // SAFETY: the operation names registered buffer `index` of this
        // table (the caller's obligation), whose memory is attached to the
        // ring and so outlives every request; the buffer is marked busy
        // above, so until `handle_cqe` sees this operation's last CQE the
        // table lends no `&mut` to it (and no `&` either when the kernel
        // writes it); the iovec array lives in the operation's slot until
        // then, and is leaked if the table is dropped first.
        match unsafe { uring_ops::push_layer_op(ring, id.context(), operation) } {
            Ok(_) => Ok(id),
            Err(e) => {
                self.finish(op);
                Err(e.into())
            }
        }
    }

    /// Queues a fixed read (`IORING_OP_READ_FIXED`) of `range.len()` bytes
    /// from `fd` at file offset `offset` into `range` of buffer `index`.
    /// The buffer is not accessible until the CQE has been handed to
    /// [`handle_cqe`](Self::handle_cqe).
    ///
    /// # Errors
    ///
    /// [`Error::Busy`] while another operation uses the buffer;
    /// [`Error::InvalidArgument`] for an index outside the table or above
    /// 65535, an empty slot, a range outside the buffer or above
    /// `i32::MAX` bytes, or another ring; [`Error::Ring`] when the ring
    /// refuses (full queue, not started, stopped, opcode unsupported). In
    /// every case nothing is queued and the buffer keeps its state.
    pub fn read_fixed(
        &mut self,
        ring: &mut Ring,
        fd: impl Into<Target>,
        index: u32,
        range: Range<usize>,
        offset: u64,
    ) -> Result<FixedId> {
        let base = self.check_op(ring, index, std::slice::from_ref(&range))?;
        let fd = fd.into();
        let op = ReadFixed::new(fd, base.wrapping_add(range.start), range.len() as u32, index as u16).offset(offset);
        // SAFETY: the range lies in buffer `index` (checked), which the
        // kernel may write: the kind says so.
        unsafe { self.push(ring, FixedKind::Read, index, None, op) }
    }

    /// Queues a fixed write (`IORING_OP_WRITE_FIXED`) of `range` of buffer
    /// `index` to `fd` at file offset `offset`. The buffer stays readable,
    /// not writable, until the CQE.
    ///
    /// # Errors
    ///
    /// As for [`read_fixed`](Self::read_fixed).
    pub fn write_fixed(
        &mut self,
        ring: &mut Ring,
        fd: impl Into<Target>,
        index: u32,
        range: Range<usize>,
        offset: u64,
    ) -> Result<FixedId> {
        let base = self.check_op(ring, index, std::slice::from_ref(&range))?;
        let fd = fd.into();
        let op = WriteFixed::new(fd, base.wrapping_add(range.start), range.len() as u32, index as u16).offset(offset);
        // SAFETY: the range lies in buffer `index` (checked); the kernel
        // only reads it.
        unsafe { self.push(ring, FixedKind::Write, index, None, op) }
    }

    fn iovecs(base: *mut u8, ranges: &[Range<usize>]) -> Result<IoVecs> {
        if ranges.is_empty() || ranges.len() > MAX_RANGES {
            return Err(Error::invalid(format!("{} ranges: need 1 to {MAX_RANGES}", ranges.len())));
        }
        let total: usize = ranges.iter().map(ExactSizeIterator::len).sum();
        if total > i32::MAX as usize {
            return Err(Error::invalid(format!("{total} bytes in all ranges exceed i32::MAX")));
        }
        Ok(IoVecs(
            ranges
                .iter()
                // SAFETY: each range lies inside the buffer (checked by
                // `check_op` before).
                .map(|r| libc::iovec { iov_base: unsafe { base.add(r.start) }.cast(), iov_len: r.len() })
                .collect(),
        ))
    }

    /// Queues a fixed scatter read (`IORING_OP_READV_FIXED`, since 6.15)
    /// from `fd` at file offset `offset` into `ranges` of buffer `index`,
    /// in order. The kernel requires every range to lie in the one buffer
    /// (see the [module documentation](self#vectored-operations)).
    ///
    /// # Errors
    ///
    /// As for [`read_fixed`](Self::read_fixed), and
    /// [`Error::InvalidArgument`] for no ranges or more than
    /// [`MAX_RANGES`]; [`Error::Ring`] with
    /// [`Unsupported`](uring_core::Error::Unsupported) before 6.15.
    pub fn readv_fixed(
        &mut self,
        ring: &mut Ring,
        fd: impl Into<Target>,
        index: u32,
        ranges: &[Range<usize>],
        offset: u64,
    ) -> Result<FixedId> {
        let base = self.check_op(ring, index, ranges)?;
        let iov = Self::iovecs(base, ranges)?;
        let fd = fd.into();
        let nr = ranges.len() as u32;
        let op = ReadvFixed::new(fd, iov.0.as_ptr(), nr, index as u16).offset(offset);
        // SAFETY: every iovec names a range of buffer `index` (checked),
        // which the kernel may write; the array moves into the slot (its
        // heap address stays).
        unsafe { self.push(ring, FixedKind::Readv, index, Some(iov), op) }
    }

    /// Queues a fixed gather write (`IORING_OP_WRITEV_FIXED`, since 6.15)
    /// of `ranges` of buffer `index`, in order, to `fd` at file offset
    /// `offset`.
    ///
    /// # Errors
    ///
    /// As for [`readv_fixed`](Self::readv_fixed).
    pub fn writev_fixed(
        &mut self,
        ring: &mut Ring,
        fd: impl Into<Target>,
        index: u32,
        ranges: &[Range<usize>],
        offset: u64,
    ) -> Result<FixedId> {
        let base = self.check_op(ring, index, ranges)?;
        let iov = Self::iovecs(base, ranges)?;
        let fd = fd.into();
        let nr = ranges.len() as u32;
        let op = WritevFixed::new(fd, iov.0.as_ptr(), nr, index as u16).offset(offset);
        // SAFETY: every iovec names a range of buffer `index` (checked);
        // the kernel only reads them; the array moves into the slot (its
        // heap address stays).
        unsafe { self.push(ring, FixedKind::Writev, index, Some(iov), op) }
    }

    /// Queues a zero-copy send (`IORING_OP_SEND_ZC` with
    /// `IORING_RECVSEND_FIXED_BUF`) of `range` of buffer `index` on socket
    /// `fd`. Two CQEs come back: the result, then the notification; the
    /// buffer is readable meanwhile and writable again after the
    /// notification ([`FixedDone::free`]).
    ///
    /// # Errors
    ///
    /// As for [`read_fixed`](Self::read_fixed).
    pub fn send_fixed(
        &mut self,
        ring: &mut Ring,
        fd: impl Into<Target>,
        index: u32,
        range: Range<usize>,
    ) -> Result<FixedId> {
        let base = self.check_op(ring, index, std::slice::from_ref(&range))?;
        let fd = fd.into();
        // SAFETY: the range lies in the idle buffer `index` (checked), and
        // nothing writes it while the slice lives (`&mut self` is held).
        let bytes = unsafe { std::slice::from_raw_parts(base.add(range.start), range.len()) };
        let op = SendZc::new(fd, bytes).fixed(index as u16);
        // SAFETY: the range lies in buffer `index` (checked); the kernel
        // only reads it, until the notification, which `handle_cqe` waits
        // for before the buffer is idle again.
        unsafe { self.push(ring, FixedKind::SendZc, index, None, op) }
    }

    /// The live operation slot `user_data` names, if any.
    fn decode(&self, user_data: u64) -> Option<u32> {
        if user_data & LOW_MASK != LOW || (user_data >> TABLE_SHIFT) & TABLE_MASK != self.table {
            return None;
        }
        let op = ((user_data >> SLOT_SHIFT) & SLOT_MASK) as u32;
        let slot = self.ops.get(op as usize)?;
        slot.live.is_some().then_some(op)
    }

    /// Whether `user_data` names one of this table's operations in flight.
    pub fn is_ours(&self, user_data: u64) -> bool {
        self.decode(user_data).is_some()
    }

    /// Interprets a CQE: `None` unless it belongs to one of this table's
    /// operations in flight (see the [module documentation](self)), else
    /// what happened, and whether the buffer is free again.
    pub fn handle_cqe(&mut self, cqe: &Cqe<'_>) -> Option<FixedDone> {
        if cqe.ring_id() != self.ring_id {
            return None;
        }
        let op = self.decode(cqe.user_data())?;
        if cqe.seq() < self.ops[op as usize].queued_at {
            // Reaped before the operation was queued: a copy of an
            // earlier operation's CQE.
            return None;
        }
        // SAFETY: reaped by this table's ring after the operation was
        // queued, with its user_data, which safe code cannot make the
        // kernel post; repeats within one operation are refused below.
        unsafe { self.handle_raw(cqe.user_data(), cqe.res(), cqe.more(), cqe.notif()) }
    }

    /// As [`handle_cqe`](Self::handle_cqe), from a CQE's `user_data`,
    /// result, and `IORING_CQE_F_MORE` / `IORING_CQE_F_NOTIF` flags,
    /// without checking where the CQE came from.
    ///
    /// # Safety
    ///
    /// The values must come from a CQE reaped from this table's ring after
    /// the operation they name was queued, presented once: given the
    /// `user_data` of an operation in flight, this marks its buffer idle,
    /// and [`buffer_mut`](Self::buffer_mut) then lends memory the kernel
    /// may still write.
    pub unsafe fn handle_raw(&mut self, user_data: u64, res: i32, more: bool, notif: bool) -> Option<FixedDone> {
        let op = self.decode(user_data)?;
        let id = FixedId(user_data);
        let live = self.ops[op as usize].live.as_mut()?;
        let (kind, index) = (live.kind, live.index);
        let done = |res, free, notification| FixedDone { id, kind, index, res, free, notification };
        if kind != FixedKind::SendZc {
            if notif {
                return None;
            }
            self.finish(op);
            return Some(done(res, true, false));
        }
        if notif {
            if live.notified {
                return None;
            }
            live.notified = true;
            let first = live.result;
            if first.is_some() {
                self.finish(op);
            }
            // The kernel posts the result first; should the notification
            // come first anyway, the buffer waits for the result.
            return Some(done(first.unwrap_or(0), first.is_some(), true));
        }
        if live.result.is_some() {
            // A second result for one send: not the kernel's doing.
            return None;
        }
        live.result = Some(res);
        let free = live.notified || !more;
        if free {
            self.finish(op);
        }
        Some(done(res, free, false))
    }
}

impl Drop for FixedBuffers {
    fn drop(&mut self) {
        // The kernel may still read the iovec arrays of operations in
        // flight (not in 6.18, which copies them at prep; older or later
        // kernels may differ): they go to the graveyard attached to the
        // ring, freed once the ring has closed with nothing in flight.
        let mut dead = self.graveyard.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for slot in &mut self.ops {
            if let Some(iov) = slot.live.take().and_then(|live| live.iovecs) {
                dead.push(iov);
            }
        }
    }
}

fn empty_slot(index: u32) -> Error {
    Error::invalid(format!("registered buffer slot {index} is empty (sparse table: install a buffer first)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_data_layout() {
        let id = FixedId(LOW | (5 << SLOT_SHIFT) | (TABLE_MASK << TABLE_SHIFT));
        assert_eq!(id.context().mode(), uring_core::ContextMode::Foreign);
        assert_eq!(id.user_data() & 0b11, 0b11);
        assert_eq!((id.user_data() >> TAG_SHIFT) & 0xff, 0xF1);
        assert_eq!(id.user_data() >> TABLE_SHIFT, TABLE_MASK);
        // The subscription tag's bits stay distinct.
        assert_ne!((id.user_data() >> 3) & 0xff, 0xB5);
        assert_eq!(SLOT_SHIFT + SLOT_BITS, TABLE_SHIFT);
        assert_eq!(TABLE_SHIFT + 39, 64);
        assert!(crate::registered::MAX_BUFFERS as u64 <= SLOT_MASK + 1);
    }
}
