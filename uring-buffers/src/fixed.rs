//! Safe fixed-buffer I/O over [`RegisteredBuffers`]: [`FixedBuffers`].
//!
//! Fixed-buffer operations (`READ_FIXED`, `WRITE_FIXED`, `READV_FIXED`,
//! `WRITEV_FIXED`, and `SEND_ZC`, `SENDMSG_ZC` and `SEND` with
//! `IORING_RECVSEND_FIXED_BUF`) name a
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
//! [`Layer::FixedBuffers`](uring_core::Layer::FixedBuffers) value
//! ([`uring_core::LayerData`]) whose 53-bit payload is:
//!
//! | payload bits | meaning |
//! |---|---|
//! | 0–14 | the operation slot (15 bits): below the table's length, buffer `i`'s own slot, for its one plain operation; above, a chain step's (at most [`MAX_IN_FLIGHT`] slots in all) |
//! | 15–52 | the table's id (38 bits, from a process-wide counter; a table is refused rather than given a used id) |
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
//! `PollUpdate` refuse layer values, and so does `push_op_unchecked`.
//!
//! # Linked chains
//!
//! [`read_fixed`](FixedBuffers::read_fixed) and its siblings take no SQE
//! flags: linking one operation to the next through a busy buffer would
//! let a write run after a *short* read, or let the buffer go back to the
//! caller while a linked step still uses it. [`FixedBuffers::chain`]
//! builds the linked form safely: a [`FixedChain`] of reads and writes of
//! **one** buffer (and [`LinkTimeout`]s), queued all or nothing as an
//! `IOSQE_IO_LINK` chain. Its rules:
//!
//! - **All or nothing.** Every step is checked (ranges, the buffer idle,
//!   the opcodes, room in the SQ for every entry) before the first is
//!   queued; a full SQ is [`QueueFull`](uring_core::Error::QueueFull) with
//!   nothing queued.
//! - **One CQE per step, in any order.** Each step carries its own
//!   `user_data` (its own operation slot, in the layout below). The kernel
//!   posts a CQE for every step, the cancelled ones too (`-ECANCELED`
//!   after a broken link), and CQEs of a chain with a linked timeout come
//!   in no fixed order. The buffer stays busy until
//!   [`handle_cqe`](FixedBuffers::handle_cqe) has seen **every** step's CQE,
//!   once each (a second copy of one is refused, like any replay); the
//!   last one has [`FixedDone::free`] and the [`ChainOutcome`].
//! - **A broken link is a short transfer, not a free buffer.** A read that
//!   returns fewer bytes than asked makes the kernel cancel the rest
//!   ([`ChainStatus::Short`]); the write never runs, and the buffer comes
//!   back only with the last cancelled step's CQE.
//!
//! Known limit (data, not memory): the kernel links the entries it
//! consumes in one batch. An `SQPOLL` poller shared by several rings
//! (`IORING_SETUP_ATTACH_WQ`) takes at most 8 entries per ring per pass,
//! and a submission that runs out of memory for requests stops early, so
//! either may split a chain, and the steps after the cut then run
//! unlinked. Every step still posts its CQE and the buffer still waits for
//! all of them, so no memory is lent early; but a write may then send
//! bytes its read had not yet filled.
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
//! [`send_fixed`](FixedBuffers::send_fixed) is a zero-copy send
//! (`IORING_OP_SEND_ZC`) from the registered buffer, accepted by every
//! kernel with the opcode, and
//! [`sendmsg_fixed`](FixedBuffers::sendmsg_fixed) a zero-copy `sendmsg`
//! of several ranges of one buffer (`IORING_OP_SENDMSG_ZC`, since 6.15),
//! optionally to an address. Their buffer stays busy until the
//! **notification** CQE (`IORING_CQE_F_NOTIF`), not just the result:
//! [`FixedDone::free`] says when. A plain `IORING_OP_SEND` takes
//! `IORING_RECVSEND_FIXED_BUF` only from 7.2 (6.18 and 7.0 refuse it with
//! `-EINVAL`; the test `plain_send_with_a_fixed_buffer_is_refused_or_really_sends`
//! checks both): [`send`](FixedBuffers::send) uses it there, freeing the
//! buffer at its one CQE, and refuses by name elsewhere.
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
//! buffers are fine. One exception: a zero-copy send
//! ([`send_fixed`](FixedBuffers::send_fixed), `sendmsg_fixed`, `send`)
//! whose notification the table has not seen when it is dropped. No
//! cancellation ends a notification, so the ring may count as quiet while
//! the network stack still reads the buffer; the table's memory (the
//! library's and the caller's) is then leaked, never freed.

use std::fmt;
use std::ops::Range;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};

use uring_core::{Cqe, Ring, SqeContext, SqeFlags};
use uring_ops::file::{ReadFixed, ReadvFixed, WriteFixed, WritevFixed};
use uring_ops::net::SendZc;
use uring_ops::timeout::LinkTimeout;
use uring_ops::{OpExt, Prepare, Target};

use crate::error::{Error, Result};
use crate::registered::RegisteredBuffers;

/// A [`Layer::FixedBuffers`](uring_core::Layer::FixedBuffers) value's
/// payload: the operation slot (15 bits), then the table id (38 bits).
const SLOT_BITS: u32 = 15;
const SLOT_MASK: u64 = (1 << SLOT_BITS) - 1;
const TABLE_SHIFT: u32 = SLOT_BITS;
const TABLE_MASK: u64 = (1 << (uring_core::LayerData::PAYLOAD_BITS - SLOT_BITS)) - 1;
/// Where the payload starts in the `user_data`.
const OP_SHIFT: u32 = 64 - uring_core::LayerData::PAYLOAD_BITS;

/// The `user_data` of table `table`'s operation slot 0.
fn id_base(table: u64) -> u64 {
    match uring_core::LayerData::new(uring_core::Layer::FixedBuffers, false, table << TABLE_SHIFT) {
        Some(d) => d.raw(),
        // The table id is below 2^38 (checked when the table is made).
        None => unreachable!("fixed-buffer table {table:#x} out of range"),
    }
}

/// The most ranges one vectored operation takes (`UIO_MAXIOV`).
pub const MAX_RANGES: usize = 1024;

/// The most steps (linked timeouts included) one [`FixedChain`] takes.
pub const MAX_CHAIN_STEPS: usize = 8;

/// The most operation slots a table has: the slot field of the
/// `user_data` has 15 bits. Each buffer has a slot of its own for its
/// plain operation (read, write, vectored, send); chain steps take one
/// each from the rest, so a table of `n` buffers has `MAX_IN_FLIGHT - n`
/// for chains.
pub const MAX_IN_FLIGHT: usize = (SLOT_MASK + 1) as usize;

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

    /// The context the operation was submitted with (a layer value).
    pub const fn context(self) -> SqeContext {
        SqeContext::of_user_data(self.0)
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
    /// `IORING_OP_LINK_TIMEOUT`: a deadline for the step of a
    /// [chain](FixedBuffers::chain) before it; names no buffer memory.
    LinkTimeout,
    /// `IORING_OP_SENDMSG_ZC` with `IORING_RECVSEND_FIXED_BUF` (since
    /// Linux 6.15): the kernel reads ranges of the buffer until the
    /// notification ([`FixedBuffers::sendmsg_fixed`]).
    SendMsgZc,
    /// `IORING_OP_SEND` with `IORING_RECVSEND_FIXED_BUF` (since Linux
    /// 7.2): the kernel reads the buffer until the send's one CQE
    /// ([`FixedBuffers::send`]).
    Send,
}

impl FixedKind {
    /// Whether the kernel writes the buffer (reads from a file into it).
    pub const fn kernel_writes(self) -> bool {
        matches!(self, FixedKind::Read | FixedKind::Readv)
    }

    /// Whether the buffer waits for a notification CQE after the result
    /// (zero-copy sends). Exhaustive on purpose: a new kind must say.
    const fn notifies(self) -> bool {
        match self {
            FixedKind::SendZc | FixedKind::SendMsgZc => true,
            FixedKind::Read
            | FixedKind::Write
            | FixedKind::Readv
            | FixedKind::Writev
            | FixedKind::LinkTimeout
            | FixedKind::Send => false,
        }
    }

    fn name(self) -> &'static str {
        match self {
            FixedKind::Read => "fixed read into it",
            FixedKind::Write => "fixed write from it",
            FixedKind::Readv => "fixed readv into it",
            FixedKind::Writev => "fixed writev from it",
            FixedKind::SendZc => "fixed zero-copy send from it",
            FixedKind::LinkTimeout => "linked timeout",
            FixedKind::SendMsgZc => "fixed zero-copy sendmsg from it",
            FixedKind::Send => "fixed send from it",
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
    /// For a step of a [chain](FixedBuffers::chain): which step, and, on
    /// the chain's last CQE (the one with `free`), how the chain ended.
    pub chain: Option<ChainStep>,
}

/// Where a CQE stands in a [chain](FixedBuffers::chain)
/// ([`FixedDone::chain`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChainStep {
    /// The chain: the id [`FixedChain::queue`] returned (its first step's).
    pub chain: FixedId,
    /// This CQE's step, from 0, in the order the steps were added.
    pub step: u8,
    /// On the chain's last CQE (the one that frees the buffer): every
    /// step's result and how the chain ended. `None` before.
    pub outcome: Option<ChainOutcome>,
}

/// Every step's result of a chain whose CQEs have all been seen, and what
/// they mean together ([`status`](Self::status)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainOutcome {
    results: [i32; MAX_CHAIN_STEPS],
    wanted: [u32; MAX_CHAIN_STEPS],
    kinds: [FixedKind; MAX_CHAIN_STEPS],
    len: u8,
}

/// How a chain ended ([`ChainOutcome::status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainStatus {
    /// Every read and write moved all the bytes it asked for.
    Complete,
    /// Step `step` (a read or a write) moved `res` bytes of `wanted`: a
    /// short transfer (a read at the end of a file, a socket with less
    /// data) fails the link, so the kernel cancelled every later step
    /// (`-ECANCELED`), and nothing was written from bytes never read.
    Short {
        /// The step.
        step: u8,
        /// Bytes it moved.
        res: i32,
        /// Bytes it asked for.
        wanted: u32,
    },
    /// The linked timeout after step `step` fired before the step finished
    /// (the step's result is `res`: usually `-ECANCELED`, or what it did
    /// when the kernel could not interrupt it); later steps were cancelled.
    TimedOut {
        /// The step the timeout bounded.
        step: u8,
        /// Its result.
        res: i32,
    },
    /// Step `step` failed with `res` (`-errno`); later steps were
    /// cancelled. `-ECANCELED` on the first step that did not complete
    /// means the chain was cancelled from outside (an `ASYNC_CANCEL`, a
    /// link of the caller's own that it was queued behind, ring shutdown).
    Failed {
        /// The step.
        step: u8,
        /// Its result (negative).
        res: i32,
    },
}

impl ChainOutcome {
    /// Every step's result (`-ECANCELED` for steps the kernel cancelled
    /// after the link broke), in order; linked timeouts included.
    pub fn results(&self) -> &[i32] {
        &self.results[..usize::from(self.len)]
    }

    /// The kind of every step, in order.
    pub fn kinds(&self) -> &[FixedKind] {
        &self.kinds[..usize::from(self.len)]
    }

    /// Whether every read and write moved all its bytes.
    pub fn is_complete(&self) -> bool {
        self.status() == ChainStatus::Complete
    }

    /// The first step, in chain order, that did not move all it asked
    /// for, and why; a linked timeout's own result is read together with
    /// the step it bounds.
    pub fn status(&self) -> ChainStatus {
        let n = usize::from(self.len);
        for i in 0..n {
            if self.kinds[i] == FixedKind::LinkTimeout {
                continue;
            }
            let res = self.results[i];
            if res >= 0 && res as u32 == self.wanted[i] {
                continue;
            }
            let step = i as u8;
            // A timeout's result is -ECANCELED when its step finished
            // first; anything else (-ETIME, -EALREADY) means it fired.
            let fired =
                i + 1 < n && self.kinds[i + 1] == FixedKind::LinkTimeout && self.results[i + 1] != -libc::ECANCELED;
            return if fired {
                ChainStatus::TimedOut { step, res }
            } else if res >= 0 {
                ChainStatus::Short { step, res, wanted: self.wanted[i] }
            } else {
                ChainStatus::Failed { step, res }
            };
        }
        ChainStatus::Complete
    }
}

#[derive(Debug, Clone, Copy)]
enum StepOp {
    Read { fd: Target, range: (usize, usize), offset: u64 },
    Write { fd: Target, range: (usize, usize), offset: u64 },
    Timeout(LinkTimeout),
}

/// A linked chain of fixed-buffer operations on **one** registered
/// buffer, made by [`FixedBuffers::chain`]: read into it, then write from
/// it (a copy or proxy step), optionally more steps and linked timeouts,
/// queued all or nothing as one `IOSQE_IO_LINK` chain.
///
/// The kernel starts each step only after the one before it has completed
/// with its full length: a short read (end of file, a socket with less
/// data), an error or a fired timeout *breaks the link*, and every later
/// step completes with `-ECANCELED` instead of running. So a write never
/// sends bytes a read did not fill. Every step posts one CQE (the
/// cancelled ones too), in no guaranteed order; the buffer stays busy
/// (not readable while any step writes into it, never writable) until
/// [`FixedBuffers::handle_cqe`] has seen **every** one, and the last one
/// carries the [`ChainOutcome`].
///
/// Build errors (more than [`MAX_CHAIN_STEPS`] steps, a timeout first or
/// after another timeout) are reported by [`queue`](Self::queue).
#[must_use = "a chain does nothing until it is queued"]
#[derive(Debug)]
pub struct FixedChain<'a> {
    bufs: &'a mut FixedBuffers,
    index: u32,
    steps: [Option<StepOp>; MAX_CHAIN_STEPS],
    len: usize,
    error: Option<&'static str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Buf {
    Idle,
    Busy(u32),
}

/// `BufState::busy` of an idle buffer.
const IDLE: u32 = u32::MAX;
/// `BufState::busy` of an empty slot of a sparse table (idle, no memory).
const EMPTY: u32 = u32::MAX - 1;

/// One buffer as the operations see it: where it is (cached from the
/// registration, refreshed whenever the table changes it), and which
/// operation slot holds it (`IDLE`, `EMPTY`, or the slot).
#[derive(Debug, Clone, Copy)]
struct BufState {
    base: *mut u8,
    len: usize,
    busy: u32,
}

/// The iovec array of a vectored operation, kept until its CQE, and the
/// message header a `sendmsg` names ([`crate::fixed_send`]).
pub(crate) struct IoVecs(pub(crate) Box<[libc::iovec]>, pub(crate) Option<Box<crate::fixed_send::MsgHeader>>);

// SAFETY: the array and the header are plain data (addresses into the
// table's registered memory and into the header's own box, never
// dereferenced by Rust); moving them between threads changes nothing.
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
    /// For a step of a chain: the chain's first slot (which holds the
    /// [`ChainRec`]) and this step's number.
    step: Option<(u32, u8)>,
}

/// The bookkeeping of a chain, in the slot of its first step.
#[derive(Debug, Clone, Copy)]
struct ChainRec {
    /// Every step's operation slot, in chain order.
    slots: [u32; MAX_CHAIN_STEPS],
    /// Bytes each step asked for (0 for a linked timeout).
    wanted: [u32; MAX_CHAIN_STEPS],
    kinds: [FixedKind; MAX_CHAIN_STEPS],
    len: u8,
    /// Steps whose CQE has not been seen yet.
    pending: u8,
    /// Whether any step writes into the buffer.
    writes: bool,
}

#[derive(Debug)]
struct OpSlot {
    /// The ring's [`Ring::cq_position`] when the operation was queued:
    /// its CQEs have a `seq` at least this.
    queued_at: u64,
    live: Option<Live>,
    /// Set in the first step's slot while a chain is in flight.
    chain: Option<ChainRec>,
}

/// Registered buffers with safe fixed-buffer I/O; see the
/// [module documentation](self).
pub struct FixedBuffers {
    bufs: RegisteredBuffers,
    state: Vec<BufState>,
    /// Operation slots: `ops[i]` for `i` below the table's length is
    /// buffer `i`'s own, the rest are chain steps'.
    ops: Vec<OpSlot>,
    /// Free chain-step slots (all at or above the table's length).
    free_ops: Vec<u32>,
    table: u64,
    /// The `user_data` of operation slot 0; slot `op` is this plus
    /// `op << OP_SHIFT`.
    ud_base: u64,
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
        let r = self.bufs.install(ring, index, size);
        self.refresh(index..index + 1);
        r
    }

    /// Re-reads where buffers `range` are (after the registration changed
    /// them); idle ones become `EMPTY` or `IDLE` accordingly.
    fn refresh(&mut self, range: Range<u32>) {
        for i in range {
            let Some(s) = self.state.get_mut(i as usize) else { break };
            let parts = self.bufs.raw_parts(i);
            let (base, len) = parts.unwrap_or((std::ptr::null_mut(), 0));
            s.base = base;
            // A registered buffer is at most 1 GiB (`MAX_BUFFER`): every
            // range inside one fits the i32 a CQE's result is.
            s.len = len.min(crate::registered::MAX_BUFFER);
            if s.busy == IDLE || s.busy == EMPTY {
                s.busy = if parts.is_some() { IDLE } else { EMPTY };
            }
        }
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
    /// [`Error::Core`] when the ring is stopped.
    pub unsafe fn from_registered(ring: &mut Ring, bufs: RegisteredBuffers) -> Result<Self> {
        let n = bufs.len();
        // Never a used id: past 2^38 tables (a registration syscall each,
        // days of nothing else) new tables are refused.
        let table = NEXT_TABLE.fetch_add(1, Ordering::Relaxed);
        if table > TABLE_MASK {
            NEXT_TABLE.store(TABLE_MASK + 1, Ordering::Relaxed);
            return Err(Error::invalid("fixed-buffer table ids are exhausted (2^38 tables made by this process)"));
        }
        let graveyard = std::sync::Arc::new(Graveyard::default());
        ring.attach(Box::new(graveyard.clone()))?;
        let idle = BufState { base: std::ptr::null_mut(), len: 0, busy: EMPTY };
        let mut me = FixedBuffers {
            bufs,
            state: vec![idle; n],
            ops: (0..n).map(|_| OpSlot { queued_at: 0, live: None, chain: None }).collect(),
            free_ops: Vec::new(),
            table,
            ud_base: id_base(table),
            ring_id: ring.id(),
            ring_fd: ring.as_raw_fd(),
            in_flight: 0,
            graveyard,
        };
        me.refresh(0..n as u32);
        Ok(me)
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
                let id = self.id_of(op);
                Ok(if self.kernel_writes(op) { BufferState::KernelWrites(id) } else { BufferState::KernelReads(id) })
            }
        }
    }

    fn slot_state(&self, index: u32) -> Result<Buf> {
        match self.state.get(index as usize) {
            Some(s) if s.busy == IDLE || s.busy == EMPTY => Ok(Buf::Idle),
            Some(s) => Ok(Buf::Busy(s.busy)),
            None => Err(Error::invalid(format!("registered buffer {index} is outside the table of {}", self.len()))),
        }
    }

    fn busy_error(&self, index: u32, op: u32, access: &str) -> Error {
        let slot = &self.ops[op as usize];
        let kind = if slot.chain.is_some() {
            "linked chain on it"
        } else {
            slot.live.as_ref().map_or("an operation", |l| l.kind.name())
        };
        Error::Busy { index, access: access.to_owned(), op: kind }
    }

    /// Whether the operation (or chain) holding a buffer in slot `op` may
    /// write into it; an unknown slot counts as writing.
    fn kernel_writes(&self, op: u32) -> bool {
        let slot = &self.ops[op as usize];
        match (&slot.chain, &slot.live) {
            (Some(rec), _) => rec.writes,
            (None, Some(live)) => live.kind.kernel_writes(),
            (None, None) => true,
        }
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
            && self.kernel_writes(op)
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

    /// [`check_op`](Self::check_op) for one range, in a few instructions:
    /// the buffer idle and installed, the ring this table's, the range
    /// inside the buffer; anything else goes to `check_op` for its error.
    #[inline(always)]
    fn check_one(&self, ring: &Ring, index: u32, range: &Range<usize>) -> Result<*mut u8> {
        match self.state.get(index as usize) {
            Some(s)
                if s.busy == IDLE && ring.id() == self.ring_id && range.start <= range.end && range.end <= s.len =>
            {
                Ok(s.base)
            }
            _ => Err(self.refuse_op(ring, index, range)),
        }
    }

    /// The error `check_one` refused with.
    #[cold]
    #[inline(never)]
    fn refuse_op(&self, ring: &Ring, index: u32, range: &Range<usize>) -> Error {
        match self.check_op(ring, index, std::slice::from_ref(range)) {
            Err(e) => e,
            Ok(_) => Error::invalid(format!("registered buffer {index}: range {range:?} refused")),
        }
    }

    pub(crate) fn check_op(&self, ring: &Ring, index: u32, ranges: &[Range<usize>]) -> Result<*mut u8> {
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

    #[inline]
    fn id_of(&self, op: u32) -> FixedId {
        FixedId(self.ud_base | (u64::from(op) << OP_SHIFT))
    }

    /// Whether `n` more chain-step slots can be taken: the `user_data`
    /// names at most [`MAX_IN_FLIGHT`] slots, the buffers' own first.
    fn check_room(&self, n: usize) -> Result<()> {
        if self.free_ops.len() + (MAX_IN_FLIGHT - self.ops.len()) < n {
            return Err(Error::invalid(format!(
                "{} operations in flight: a table of {} buffers names at most {} chain steps at once",
                self.in_flight,
                self.len(),
                MAX_IN_FLIGHT - self.len()
            )));
        }
        Ok(())
    }

    /// Takes a free chain-step slot (there is one: [`check_room`]) for
    /// buffer `index`, queued when the ring's CQ position is `queued_at`.
    ///
    /// [`check_room`]: Self::check_room
    fn take_slot(&mut self, live: Live, queued_at: u64) -> u32 {
        let op = match self.free_ops.pop() {
            Some(op) => op,
            None => {
                self.ops.push(OpSlot { queued_at: 0, live: None, chain: None });
                (self.ops.len() - 1) as u32
            }
        };
        let slot = &mut self.ops[op as usize];
        slot.queued_at = queued_at;
        slot.live = Some(live);
        slot.chain = None;
        self.in_flight += 1;
        op
    }

    /// Marks idle buffer `index` busy with a plain operation of `kind`
    /// in its own slot (`index`), queued when the ring's CQ position is
    /// `queued_at`; returns the slot.
    #[inline(always)]
    fn begin(&mut self, kind: FixedKind, index: u32, iovecs: Option<IoVecs>, queued_at: u64) -> u32 {
        assert!((index as usize) < self.state.len(), "begin: buffer {index} outside the table");
        // SAFETY: `ops` is at least as long as `state` (made so, and only
        // ever grows), and `index` is below `state.len()` (just checked;
        // the callers' own check makes this one free).
        let slot = unsafe { self.ops.get_unchecked_mut(index as usize) };
        slot.queued_at = queued_at;
        debug_assert!(slot.live.is_none(), "an idle buffer's own slot is free");
        // Written without dropping the old value, which is `None`: the
        // buffer is idle, so its own slot holds no operation.
        // SAFETY: `slot.live` is a valid, aligned place (a `&mut`).
        unsafe {
            std::ptr::write(
                &mut slot.live,
                Some(Live { kind, index, iovecs, result: None, notified: false, step: None }),
            )
        };
        self.state[index as usize].busy = index;
        self.in_flight += 1;
        index
    }

    /// Frees slot `op` (its buffer's state is the caller's business).
    #[inline(always)]
    fn free_slot(&mut self, op: u32) -> Option<Live> {
        let slot = &mut self.ops[op as usize];
        let live = slot.live.take()?;
        if op as usize >= self.state.len() {
            slot.chain = None;
            self.free_ops.push(op);
        }
        self.in_flight -= 1;
        Some(live)
    }

    /// Ends operation `op`: its buffer is idle, its slot free. Returns the
    /// iovec array, to be dropped by the caller.
    #[inline(always)]
    fn finish(&mut self, op: u32) -> Option<Live> {
        let live = self.free_slot(op)?;
        self.state[live.index as usize].busy = IDLE;
        Some(live)
    }

    /// Ends the chain whose first slot is `head`: every step's slot is
    /// free, the buffer idle.
    fn finish_chain(&mut self, head: u32) {
        let Some(rec) = self.ops[head as usize].chain.take() else { return };
        let mut index = None;
        for &op in &rec.slots[..usize::from(rec.len)] {
            if let Some(live) = self.free_slot(op) {
                index = Some(live.index);
            }
        }
        if let Some(i) = index {
            self.state[i as usize].busy = IDLE;
        }
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
    #[inline(always)]
    pub(crate) unsafe fn push<O: uring_ops::Prepare>(
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
        match unsafe { uring_ops::push_layer_value(ring, id.0, operation) } {
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
    /// `i32::MAX` bytes, or another ring; [`Error::Core`] when the ring
    /// refuses (full queue, not started, stopped, opcode unsupported). In
    /// every case nothing is queued and the buffer keeps its state.
    #[inline(always)]
    pub fn read_fixed(
        &mut self,
        ring: &mut Ring,
        fd: impl Into<Target>,
        index: u32,
        range: Range<usize>,
        offset: u64,
    ) -> Result<FixedId> {
        let base = self.check_one(ring, index, &range)?;
        let fd = fd.into();
        // SAFETY: the operation is pushed only below, under the obligation
        // stated there.
        let op =
            unsafe { ReadFixed::from_raw_parts(fd, base.wrapping_add(range.start), range.len() as u32, index as u16) }
                .offset(offset);
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
    #[inline(always)]
    pub fn write_fixed(
        &mut self,
        ring: &mut Ring,
        fd: impl Into<Target>,
        index: u32,
        range: Range<usize>,
        offset: u64,
    ) -> Result<FixedId> {
        let base = self.check_one(ring, index, &range)?;
        let fd = fd.into();
        // SAFETY: the operation is pushed only below, under the obligation
        // stated there.
        let op =
            unsafe { WriteFixed::from_raw_parts(fd, base.wrapping_add(range.start), range.len() as u32, index as u16) }
                .offset(offset);
        // SAFETY: the range lies in buffer `index` (checked); the kernel
        // only reads it.
        unsafe { self.push(ring, FixedKind::Write, index, None, op) }
    }

    pub(crate) fn iovecs(base: *mut u8, ranges: &[Range<usize>]) -> Result<IoVecs> {
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
            None,
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
    /// [`MAX_RANGES`]; [`Error::Core`] with
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
        // SAFETY: the operation is pushed only below, under the obligation
        // stated there.
        let op = unsafe { ReadvFixed::new(fd, iov.0.as_ptr(), nr, index as u16) }.offset(offset);
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
        // SAFETY: the operation is pushed only below, under the obligation
        // stated there.
        let op = unsafe { WritevFixed::new(fd, iov.0.as_ptr(), nr, index as u16) }.offset(offset);
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
    #[doc(alias = "io_uring_prep_send_zc_fixed")]
    pub fn send_fixed(
        &mut self,
        ring: &mut Ring,
        fd: impl Into<Target>,
        index: u32,
        range: Range<usize>,
    ) -> Result<FixedId> {
        let base = self.check_one(ring, index, &range)?;
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
    ///
    /// Exact: the layer is [`Layer::FixedBuffers`](uring_core::Layer::FixedBuffers)
    /// *and* the flag is clear, as every operation's value has it
    /// ([`id_of`](Self::id_of)). `LayerData::payload_of` ignores the flag,
    /// so a value differing only in it (any other owner's, present or
    /// future) would otherwise be taken for a live operation's completion
    /// and free its buffer while the kernel still uses it.
    #[inline(always)]
    fn decode(&self, user_data: u64) -> Option<u32> {
        // The low bits (mode, flag, layer) and the table id, in one
        // comparison with slot 0's value.
        if user_data & !(SLOT_MASK << OP_SHIFT) != self.ud_base {
            return None;
        }
        let op = ((user_data >> OP_SHIFT) & SLOT_MASK) as u32;
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
    #[inline(always)]
    pub fn handle_cqe(&mut self, cqe: &Cqe<'_>) -> Option<FixedDone> {
        if cqe.ring_id() != self.ring_id {
            return None;
        }
        let user_data = cqe.user_data();
        if user_data & !(SLOT_MASK << OP_SHIFT) != self.ud_base {
            return None;
        }
        let op = ((user_data >> OP_SHIFT) & SLOT_MASK) as usize;
        let own = op < self.state.len();
        let slot = self.ops.get_mut(op)?;
        let live = slot.live.as_mut()?;
        if cqe.seq() < slot.queued_at {
            // Reaped before the operation was queued: a copy of an
            // earlier operation's CQE.
            return None;
        }
        let notif = cqe.notif();
        // The common case: the one CQE of a plain operation (in a buffer's
        // own slot, so not a chain step; not a zero-copy send, whose
        // buffer waits for two).
        if own && !live.kind.notifies() && !notif {
            debug_assert!(live.step.is_none() && live.index as usize == op);
            let kind = live.kind;
            let iovecs = live.iovecs.take();
            // Emptied without moving the rest: the one field that owns
            // anything was taken just above.
            // SAFETY: `slot.live` is a valid, aligned place (a `&mut`).
            unsafe { std::ptr::write(&mut slot.live, None) };
            self.in_flight -= 1;
            // SAFETY: `op` is below `state.len()` (`own`).
            unsafe { self.state.get_unchecked_mut(op) }.busy = IDLE;
            drop(iovecs);
            let id = FixedId(user_data);
            let index = op as u32;
            return Some(FixedDone { id, kind, index, res: cqe.res(), free: true, notification: false, chain: None });
        }
        // SAFETY: reaped by this table's ring after the operation was
        // queued, with its user_data, which safe code cannot make the
        // kernel post; repeats within one operation are refused there.
        unsafe { self.handle_raw(user_data, cqe.res(), cqe.more(), notif) }
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
        if let Some((head, step)) = live.step {
            // A step of a chain: one CQE each (no step sets
            // `CQE_SKIP_SUCCESS` nor posts a notification), in any order.
            if notif || live.result.is_some() {
                return None;
            }
            live.result = Some(res);
            return Some(self.chain_step(head, step, id, kind, index, res));
        }
        let done = |res, free, notification| FixedDone { id, kind, index, res, free, notification, chain: None };
        if !kind.notifies() {
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

/// The caller's memory in a fixed-buffer table ([`crate::caller`]).
impl FixedBuffers {
    /// Moves the caller's memory into a new table
    /// ([`RegisteredBuffers::register_memory`]) and takes it over.
    ///
    /// # Errors
    ///
    /// As for [`RegisteredBuffers::register_memory`].
    pub fn register_memory(ring: &mut Ring, regions: Vec<crate::CallerRegion>) -> Result<Self> {
        let bufs = RegisteredBuffers::register_memory(ring, regions)?;
        // SAFETY: the table was just made; no other handle to its memory
        // exists (a table with caller memory cannot be cloned).
        unsafe { Self::from_registered(ring, bufs) }
    }

    /// Moves the caller's memory into slots from `index`
    /// ([`RegisteredBuffers::replace`]); returns how many.
    ///
    /// # Errors
    ///
    /// [`Error::Busy`] while an operation uses one of the slots, and as for
    /// [`RegisteredBuffers::replace`].
    pub fn replace(&mut self, ring: &mut Ring, index: u32, region: crate::CallerRegion) -> Result<u32> {
        self.check_ring(ring)?;
        for i in index..index.saturating_add(region.buffers() as u32).min(self.len() as u32) {
            if let Buf::Busy(op) = self.slot_state(i)? {
                return Err(self.busy_error(i, op, "replaced"));
            }
        }
        let end = index.saturating_add(region.buffers() as u32);
        let r = self.bufs.replace(ring, index, region);
        self.refresh(index..end);
        r
    }

    /// Empties slot `index` ([`RegisteredBuffers::remove`]).
    ///
    /// # Errors
    ///
    /// [`Error::Busy`] while an operation uses the slot, and as for
    /// [`RegisteredBuffers::remove`].
    pub fn remove(&mut self, ring: &mut Ring, index: u32) -> Result<()> {
        self.check_ring(ring)?;
        if let Buf::Busy(op) = self.slot_state(index)? {
            return Err(self.busy_error(index, op, "removed"));
        }
        let r = self.bufs.remove(ring, index);
        self.refresh(index..index.saturating_add(1));
        r
    }

    /// Empties every slot ([`RegisteredBuffers::clear`]).
    ///
    /// # Errors
    ///
    /// [`Error::Busy`] while any operation is in flight, and as for
    /// [`RegisteredBuffers::clear`].
    pub fn clear(&mut self, ring: &mut Ring) -> Result<()> {
        self.check_ring(ring)?;
        let busy = self.state.iter().enumerate().find(|(_, b)| b.busy != IDLE && b.busy != EMPTY);
        if let Some((i, b)) = busy {
            return Err(self.busy_error(i as u32, b.busy, "removed"));
        }
        let r = self.bufs.clear(ring);
        self.refresh(0..self.len() as u32);
        r
    }

    /// A resource-tag CQE ([`RegisteredBuffers::handle_tag`]): the memory
    /// of a replaced or removed buffer, back once the kernel let go of it.
    pub fn handle_tag(&mut self, cqe: &Cqe<'_>) -> Option<crate::TagEvent> {
        self.bufs.handle_tag(cqe)
    }
}

impl<'a> FixedChain<'a> {
    fn add(mut self, step: StepOp) -> Self {
        if self.error.is_none() {
            let timeout = matches!(step, StepOp::Timeout(_));
            let after_timeout = self.len > 0 && matches!(self.steps[self.len - 1], Some(StepOp::Timeout(_)));
            if self.len == MAX_CHAIN_STEPS {
                self.error = Some("too many steps (at most MAX_CHAIN_STEPS)");
            } else if timeout && (self.len == 0 || after_timeout) {
                self.error = Some("a linked timeout must follow a read or a write");
            } else {
                self.steps[self.len] = Some(step);
                self.len += 1;
            }
        }
        self
    }

    /// Adds a fixed read (`IORING_OP_READ_FIXED`) of `range.len()` bytes
    /// from `fd` at file offset `offset` into `range` of the buffer.
    pub fn read(self, fd: impl Into<Target>, range: Range<usize>, offset: u64) -> Self {
        self.add(StepOp::Read { fd: fd.into(), range: (range.start, range.end), offset })
    }

    /// Adds a fixed write (`IORING_OP_WRITE_FIXED`) of `range` of the
    /// buffer to `fd` at file offset `offset`.
    pub fn write(self, fd: impl Into<Target>, range: Range<usize>, offset: u64) -> Self {
        self.add(StepOp::Write { fd: fd.into(), range: (range.start, range.end), offset })
    }

    /// Bounds the step added last with a deadline (`IORING_OP_LINK_TIMEOUT`,
    /// [`LinkTimeout`]): if it fires first, the kernel cancels that step
    /// and the rest of the chain ([`ChainStatus::TimedOut`]). The timeout
    /// is a step of its own: one more SQE and one more CQE.
    pub fn link_timeout(self, timeout: LinkTimeout) -> Self {
        self.add(StepOp::Timeout(timeout))
    }

    /// Steps added so far (linked timeouts included): the SQ entries
    /// [`queue`](Self::queue) needs, and the CQEs that will come back.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no step has been added.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queues the chain on `ring`, all or nothing, and marks the buffer
    /// busy until its last CQE. Returns the chain's id (its first step's;
    /// every CQE of the chain names it in [`ChainStep::chain`]).
    ///
    /// Nothing is submitted: [`Ring::submit`] (or a wait) does that, and
    /// submits the chain whole (the kernel links the entries it consumes
    /// in one submission; see the [module documentation](self#linked-chains)
    /// for `SQPOLL`).
    ///
    /// # Errors
    ///
    /// Nothing is queued and the buffer keeps its state on every error:
    /// [`Error::Busy`] while another operation uses the buffer;
    /// [`Error::InvalidArgument`] for no step, a build error (see
    /// [`FixedChain`]), a range outside the buffer, an index or slot
    /// [`read_fixed`](FixedBuffers::read_fixed) refuses, another ring, or
    /// more than [`MAX_IN_FLIGHT`] operations; [`Error::Core`] with
    /// [`QueueFull`](uring_core::Error::QueueFull) when the SQ has room
    /// for fewer entries than the chain has steps, and for what else the
    /// ring refuses (not started, stopped, an unsupported opcode).
    pub fn queue(self, ring: &mut Ring) -> Result<FixedId> {
        let FixedChain { bufs, index, steps, len, error } = self;
        if let Some(e) = error {
            return Err(Error::invalid(format!("fixed chain on buffer {index}: {e}")));
        }
        if len == 0 {
            return Err(Error::invalid(format!("fixed chain on buffer {index}: no step")));
        }
        // The first `len` are all set (`add` fills them in order).
        let steps = &steps[..len];
        // Everything that could refuse a step is checked before the first
        // is queued: ranges and the buffer's state, each operation against
        // the ring's features, slots for the user_data, room in the SQ.
        let mut base = std::ptr::null_mut();
        let mut writes = false;
        for step in steps.iter().flatten() {
            match *step {
                StepOp::Read { range, .. } | StepOp::Write { range, .. } => {
                    base = bufs.check_op(ring, index, std::slice::from_ref(&(range.0..range.1)))?;
                    writes |= matches!(step, StepOp::Read { .. });
                }
                StepOp::Timeout(t) => t.check(ring.features())?,
            }
        }
        let features = ring.features();
        // SAFETY: built only to ask the ring whether it supports the
        // opcodes; never pushed.
        unsafe { ReadFixed::from_raw_parts(Target::Fd(0), base, 0, 0) }.check(features)?;
        // SAFETY: as above.
        unsafe { WriteFixed::from_raw_parts(Target::Fd(0), base, 0, 0) }.check(features)?;
        bufs.check_room(len)?;
        if (ring.sq_space_left() as usize) < len {
            return Err(uring_core::Error::QueueFull { entries: ring.features().sq_entries() }.into());
        }

        let queued_at = ring.cq_position();
        let mut rec = ChainRec {
            slots: [0; MAX_CHAIN_STEPS],
            wanted: [0; MAX_CHAIN_STEPS],
            kinds: [FixedKind::LinkTimeout; MAX_CHAIN_STEPS],
            len: len as u8,
            pending: len as u8,
            writes,
        };
        for (i, step) in steps.iter().flatten().enumerate() {
            let (kind, wanted) = match *step {
                StepOp::Read { range, .. } => (FixedKind::Read, (range.1 - range.0) as u32),
                StepOp::Write { range, .. } => (FixedKind::Write, (range.1 - range.0) as u32),
                StepOp::Timeout(_) => (FixedKind::LinkTimeout, 0),
            };
            let head = if i == 0 { None } else { Some(rec.slots[0]) };
            let live = Live { kind, index, iovecs: None, result: None, notified: false, step: None };
            let op = bufs.take_slot(live, queued_at);
            let head = head.unwrap_or(op);
            if let Some(l) = bufs.ops[op as usize].live.as_mut() {
                l.step = Some((head, i as u8));
            }
            rec.slots[i] = op;
            rec.wanted[i] = wanted;
            rec.kinds[i] = kind;
        }
        let head = rec.slots[0];
        bufs.ops[head as usize].chain = Some(rec);
        bufs.state[index as usize].busy = head;

        for (i, step) in steps.iter().flatten().enumerate() {
            let id = bufs.id_of(rec.slots[i]);
            let flags = if i + 1 < len { SqeFlags::IO_LINK } else { SqeFlags::empty() };
            // SAFETY: every read and write names a range of buffer `index`
            // of this table (checked above), whose memory is attached to
            // the ring; the buffer is marked busy until `handle_cqe` has
            // seen every step's CQE, so the table lends no `&mut` to it
            // meanwhile (and no `&` while a step writes into it); the
            // linked timeout's timespec is in the slot's Keep. The
            // user_data is this table's reserved identity for this step.
            let pushed = unsafe {
                match *step {
                    StepOp::Read { fd, range, offset } => {
                        let op = ReadFixed::from_raw_parts(
                            fd,
                            base_at(base, range.0),
                            (range.1 - range.0) as u32,
                            index as u16,
                        )
                        .offset(offset);
                        uring_ops::push_layer_op(ring, id.context(), op.with_sqe_flags(flags))
                    }
                    StepOp::Write { fd, range, offset } => {
                        let op = WriteFixed::from_raw_parts(
                            fd,
                            base_at(base, range.0),
                            (range.1 - range.0) as u32,
                            index as u16,
                        )
                        .offset(offset);
                        uring_ops::push_layer_op(ring, id.context(), op.with_sqe_flags(flags))
                    }
                    StepOp::Timeout(t) => uring_ops::push_layer_op(ring, id.context(), t.with_sqe_flags(flags)),
                }
            };
            if let Err(e) = pushed {
                // Not expected after the checks above; should it happen,
                // the steps queued so far are taken back (none has been
                // flushed: queuing never flushes) so that no half chain
                // reaches the kernel.
                for _ in 0..i {
                    // SAFETY: the `i` entries were acquired by this call
                    // since the last flush, and nothing depends on them.
                    unsafe { ring.retract_last_sqe() };
                }
                bufs.finish_chain(head);
                return Err(e.into());
            }
        }
        Ok(bufs.id_of(head))
    }
}

/// `base + offset` for an offset inside the buffer (checked by the caller).
fn base_at(base: *mut u8, offset: usize) -> *mut u8 {
    base.wrapping_add(offset)
}

impl FixedBuffers {
    /// Starts a [`FixedChain`] on buffer `index`: linked fixed reads and
    /// writes of that one buffer (and linked timeouts), queued together
    /// with [`FixedChain::queue`], the buffer busy until the chain's last
    /// CQE.
    ///
    /// ```
    /// # use std::os::fd::AsRawFd;
    /// # use std::time::Duration;
    /// # use uring_buffers::{ChainStatus, FixedBuffers};
    /// # use uring_core::{CqeSlot, Options, Ring};
    /// # let mut ring = Ring::new(Options::default())?;
    /// # ring.start()?;
    /// # let dir = std::env::temp_dir();
    /// # let (src, dst) = (dir.join(format!("chain-doc-a-{}", std::process::id())), dir.join(format!("chain-doc-b-{}", std::process::id())));
    /// # std::fs::write(&src, b"copied by the kernel")?;
    /// let (input, output) = (std::fs::File::open(&src)?, std::fs::File::create(&dst)?);
    /// let mut bufs = FixedBuffers::register(&mut ring, 1, 4096)?;
    /// let n = input.metadata()?.len() as usize;
    /// bufs.chain(0).read(input.as_raw_fd(), 0..n, 0).write(output.as_raw_fd(), 0..n, 0).queue(&mut ring)?;
    /// let mut slots = [CqeSlot::EMPTY; 2];
    /// let mut outcome = None;
    /// while outcome.is_none() {
    ///     let got = ring.wait_for(&mut slots, 1, Some(Duration::from_secs(5)))?.len();
    ///     for slot in &slots[..got] {
    ///         let done = bufs.handle_cqe(&slot.cqe()).expect("the chain's CQE");
    ///         // Only the chain's last CQE frees the buffer and says how it went.
    ///         outcome = done.chain.and_then(|c| c.outcome);
    ///         assert_eq!(done.free, outcome.is_some());
    ///     }
    /// }
    /// assert_eq!(outcome.unwrap().status(), ChainStatus::Complete);
    /// assert_eq!(std::fs::read(&dst)?, b"copied by the kernel");
    /// # std::fs::remove_file(&src)?; std::fs::remove_file(&dst)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn chain(&mut self, index: u32) -> FixedChain<'_> {
        FixedChain { bufs: self, index, steps: [None; MAX_CHAIN_STEPS], len: 0, error: None }
    }

    /// Records that step `step` of the chain whose first slot is `head`
    /// completed with `res`; on the last one, ends the chain.
    fn chain_step(&mut self, head: u32, step: u8, id: FixedId, kind: FixedKind, index: u32, res: i32) -> FixedDone {
        let chain = self.id_of(head);
        let rec = self.ops[head as usize].chain.as_mut().expect("a chain step names its chain");
        rec.pending -= 1;
        let rec = *rec;
        let mut outcome = None;
        if rec.pending == 0 {
            let mut results = [0; MAX_CHAIN_STEPS];
            for (i, &op) in rec.slots[..usize::from(rec.len)].iter().enumerate() {
                results[i] = self.ops[op as usize].live.as_ref().and_then(|l| l.result).unwrap_or(-libc::ECANCELED);
            }
            outcome = Some(ChainOutcome { results, wanted: rec.wanted, kinds: rec.kinds, len: rec.len });
            self.finish_chain(head);
        }
        FixedDone {
            id,
            kind,
            index,
            res,
            free: outcome.is_some(),
            notification: false,
            chain: Some(ChainStep { chain, step, outcome }),
        }
    }
}

impl Drop for FixedBuffers {
    fn drop(&mut self) {
        // A zero-copy send whose notification has not been seen: the
        // network stack may still read the buffer, after the ring has
        // stopped too (nothing cancels a notification, so the ring counts
        // as quiet and drops its copies of the memory). The memory then
        // lives for ever: leaked, never freed while the kernel reads it.
        let notification_due =
            self.ops.iter().any(|slot| slot.live.as_ref().is_some_and(|live| live.kind.notifies() && !live.notified));
        if notification_due {
            self.bufs.leak_memory();
        }
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

impl uring_core::HandleCqe for FixedBuffers {
    /// What the operation's CQE meant, and whether its buffer is free.
    type Event = FixedDone;

    /// [`FixedBuffers::handle_cqe`], for routers that offer each CQE with
    /// its ring (the ring is not needed: the inherent method also works
    /// while the CQE still borrows it).
    #[inline]
    fn handle_cqe(&mut self, _ring: &mut Ring, cqe: &Cqe<'_>) -> Option<FixedDone> {
        FixedBuffers::handle_cqe(self, cqe)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bits below the payload of every operation's value: mode, flag
    /// (clear), layer. `FixedBuffers::decode` compares them exactly
    /// (`LayerData::payload_of` would ignore the flag).
    const LOW_MASK: u64 = (1 << (64 - uring_core::LayerData::PAYLOAD_BITS)) - 1;
    const OP_LOW: u64 = match uring_core::LayerData::new(uring_core::Layer::FixedBuffers, false, 0) {
        Some(d) => d.raw(),
        None => unreachable!(),
    };

    #[test]
    fn user_data_layout() {
        let payload = 5 | (TABLE_MASK << TABLE_SHIFT);
        let id = FixedId(uring_core::LayerData::new(uring_core::Layer::FixedBuffers, false, payload).unwrap().raw());
        assert_eq!(id.context().mode(), uring_core::ContextMode::Layer);
        let d = id.context().layer_data().unwrap();
        assert_eq!(
            (d.layer(), d.payload() & SLOT_MASK, d.payload() >> TABLE_SHIFT),
            (uring_core::Layer::FixedBuffers, 5, TABLE_MASK)
        );
        assert_eq!(TABLE_MASK, (1 << 38) - 1, "38-bit table ids");
        assert_eq!(id_base(TABLE_MASK) | (5 << OP_SHIFT), id.0);
        assert_eq!(id.0 & LOW_MASK, OP_LOW);
        let twin = uring_core::LayerData::new(uring_core::Layer::FixedBuffers, true, payload).unwrap().raw();
        assert_ne!(twin & LOW_MASK, OP_LOW, "the flagged twin is not an operation's value");
        assert!(
            2 * crate::registered::MAX_BUFFERS as u64 <= SLOT_MASK + 1,
            "a full table leaves as many slots for chains"
        );
    }
}
