//! Provided buffer rings (`IORING_REGISTER_PBUF_RING`): a group of
//! equal-sized buffers the kernel picks from when an operation asks for
//! buffer selection (`IOSQE_BUFFER_SELECT`), reporting the chosen one in
//! the CQE.
//!
//! # Ownership
//!
//! Each buffer is in exactly one of two hands. Published in the ring, it
//! belongs to the kernel, which may write into it at any time. Named by a
//! CQE and [`take`](BufRing::take)n, it belongs to the caller as a [`Buf`]
//! token (not `Clone`): its bytes are readable through
//! [`bytes`](BufRing::bytes) and it goes back with
//! [`recycle`](BufRing::recycle), which consumes the token, so a buffer
//! cannot be returned twice. A CQE presented twice is refused, and so is
//! a CQE that cannot prove it selected from this group of this ring (see
//! [`take`](BufRing::take)).
//!
//! A held token can also be sent from ([`send`](BufRing::send)): it moves
//! into the ring's table of sends in flight, out of the caller's reach,
//! until the send's own CQE gives it back ([`handle_send`](BufRing::handle_send)
//! or [`BufEvent::Sent`]), once. No `unsafe` is needed to echo what was
//! received, and a lent buffer can be neither written nor recycled:
//!
//! ```compile_fail,E0382
//! # fn f(br: &mut uring_buffers::BufRing, ring: &mut uring_core::Ring, mut buf: uring_buffers::Buf) {
//! br.send(ring, 3, buf, 0, 0).unwrap();
//! br.bytes_mut(&mut buf)[0] = 0; // `buf` was moved into `send`
//! # }
//! ```
//!
//! The borrows that would let the kernel write under a live slice do not
//! compile. A buffer's bytes cannot be held across its recycling:
//!
//! ```compile_fail
//! # fn f(br: &mut uring_buffers::BufRing, buf: uring_buffers::Buf) {
//! let bytes = br.bytes(&buf);
//! br.recycle(buf).unwrap(); // `br` is borrowed by `bytes`
//! println!("{bytes:?}");
//! # }
//! ```
//!
//! a token cannot be used after it went back:
//!
//! ```compile_fail
//! # fn f(br: &mut uring_buffers::BufRing, buf: uring_buffers::Buf) {
//! br.recycle(buf).unwrap();
//! let _ = br.bytes(&buf); // `buf` was moved into `recycle`
//! # }
//! ```
//!
//! and taking a buffer without a proven CQE is `unsafe`:
//!
//! ```compile_fail
//! # fn f(br: &mut uring_buffers::BufRing) {
//! let _ = br.take_id(0, 16, false); // call to unsafe function
//! # }
//! ```
//!
//! The memory (the ring and the buffers) is [attached](uring_core::Ring::attach)
//! to the io_uring ring: it is freed only once the ring is closed with
//! nothing in flight, whatever order the caller drops things in.

use std::ffi::c_void;
use std::fmt;
use std::num::NonZeroU64;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};

use uring_core::{BufferSelection, Cqe, Mapping, Ring, SqeContext, State, sys};

use crate::error::{Error, Result};

/// The most entries a buffer ring may have (the kernel's limit).
pub const MAX_ENTRIES: u32 = 32768;

/// The shape of a buffer ring, checked before anything is allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufRingConfig {
    group: u16,
    entries: u32,
    buf_size: u32,
    kernel_mapped: bool,
    huge_pages: bool,
    incremental: bool,
}

impl BufRingConfig {
    /// Buffer group `group`: `entries` buffers (a power of two, at most
    /// [`MAX_ENTRIES`]) of `buf_size` bytes each.
    pub const fn new(group: u16, entries: u32, buf_size: u32) -> Self {
        BufRingConfig { group, entries, buf_size, kernel_mapped: false, huge_pages: false, incremental: false }
    }

    /// Lets the kernel allocate the ring itself (`IOU_PBUF_RING_MMAP`) and
    /// maps it, instead of registering library-allocated ring memory.
    pub const fn kernel_mapped(mut self) -> Self {
        self.kernel_mapped = true;
        self
    }

    /// Allocates the buffers from 2 MiB huge pages (`MAP_HUGETLB`; needs
    /// `vm.nr_hugepages`).
    pub const fn huge_pages(mut self) -> Self {
        self.huge_pages = true;
        self
    }

    /// Lets the kernel consume buffers incrementally (`IOU_PBUF_RING_INC`,
    /// since 6.12): a receive uses only as much of a buffer as it needs,
    /// and the next receive continues in the same buffer
    /// (`IORING_CQE_F_BUF_MORE` says the buffer is not finished). Each
    /// [`Buf`] is then a range of a buffer; the buffer goes back to the
    /// ring once the kernel is done with it and every range was recycled.
    /// Bundle receives work too ([`BufRing::take_bundle`]).
    pub const fn incremental(mut self) -> Self {
        self.incremental = true;
        self
    }

    /// The group id.
    pub const fn group(&self) -> u16 {
        self.group
    }

    /// Entries (buffers).
    pub const fn entries(&self) -> u32 {
        self.entries
    }

    /// Bytes per buffer.
    pub const fn buf_size(&self) -> u32 {
        self.buf_size
    }

    /// Bytes of buffer memory this configuration allocates (the ring's
    /// own 16 bytes per entry not included).
    pub const fn data_bytes(&self) -> usize {
        self.entries as usize * self.buf_size as usize
    }

    /// Checks the configuration; [`BufRing::register`] calls it first.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] saying what is wrong.
    pub fn validate(&self) -> Result<()> {
        if self.entries == 0 || !self.entries.is_power_of_two() || self.entries > MAX_ENTRIES {
            return Err(Error::invalid(format!(
                "buffer ring of group {}: {} entries; need a power of two from 1 to {MAX_ENTRIES}",
                self.group, self.entries
            )));
        }
        if self.buf_size == 0 {
            return Err(Error::invalid(format!("buffer ring of group {}: buffers of 0 bytes", self.group)));
        }
        if self.data_bytes() > isize::MAX as usize / 2 {
            return Err(Error::invalid(format!(
                "buffer ring of group {}: {} bytes is too large",
                self.group,
                self.data_bytes()
            )));
        }
        Ok(())
    }
}

/// The memory a buffer ring shares with the kernel, kept alive by the
/// io_uring ring as well as by the [`BufRing`].
#[derive(Debug)]
pub(crate) struct Memory {
    /// The ring entries (`entries` × 16 bytes).
    ring: Mapping,
    /// The buffers.
    data: Mapping,
}

/// A provided buffer ring registered with the kernel, as both directions
/// use it ([`BufRing`] for receives, `SendRing` for bundle sends): the
/// memory (attached to the io_uring ring) and where its entries, tail and
/// buffers are.
pub(crate) struct Registered {
    pub(crate) mem: Arc<Memory>,
    pub(crate) ring: *mut sys::io_uring_buf,
    pub(crate) tail: *const AtomicU16,
    pub(crate) data: *mut u8,
}

impl BufRingConfig {
    /// Whether the configuration asks for an incremental ring.
    pub(crate) const fn is_incremental(&self) -> bool {
        self.incremental
    }
}

/// Allocates the buffers and (unless kernel-mapped) the ring of `cfg`,
/// registers the ring (`IORING_REGISTER_PBUF_RING`), maps it when the
/// kernel allocated it, and attaches the memory to `ring`. `what` names the
/// buffers in allocation errors. The configuration must be validated.
pub(crate) fn register_ring(ring: &mut Ring, cfg: &BufRingConfig, what: &'static str) -> Result<Registered> {
    if ring.state() == State::Stopped {
        return Err(uring_core::Error::Stopped.into());
    }
    ring.claim_buffer_group(cfg.group)?;
    let r = register_claimed(ring, cfg, what);
    if r.is_err() {
        // SAFETY: nothing was published under the id (a failed
        // registration is unregistered before it returns, and buffers are
        // published only after success), so no CQE can name one of its
        // buffers.
        unsafe { ring.unclaim_buffer_group(cfg.group) };
    }
    r
}

fn register_claimed(ring: &mut Ring, cfg: &BufRingConfig, what: &'static str) -> Result<Registered> {
    let ring_bytes = cfg.entries as usize * size_of::<sys::io_uring_buf>();
    let alloc = |what, bytes, huge| {
        Mapping::anonymous(bytes, huge).map_err(|source| Error::Alloc { what, bytes, huge, source })
    };
    let data = alloc(what, cfg.data_bytes(), cfg.huge_pages)?;
    let user_ring = if cfg.kernel_mapped { None } else { Some(alloc("a buffer ring", ring_bytes, false)?) };
    let reg = sys::io_uring_buf_reg {
        ring_addr: user_ring.as_ref().map_or(0, |r| r.ptr() as u64),
        ring_entries: cfg.entries,
        bgid: cfg.group,
        flags: (if cfg.kernel_mapped { sys::IOU_PBUF_RING_MMAP } else { 0 }
            | if cfg.incremental { sys::IOU_PBUF_RING_INC } else { 0 }) as u16,
        ..Default::default()
    };
    // SAFETY: PBUF_RING reads one io_uring_buf_reg. A user ring's memory is
    // pinned by the kernel and is attached to `ring` below, so it outlives
    // the registration.
    unsafe {
        ring.register().raw(
            "IORING_REGISTER_PBUF_RING",
            sys::IORING_REGISTER_PBUF_RING,
            (&reg as *const sys::io_uring_buf_reg).cast::<c_void>(),
            1,
        )
    }?;
    let ring_mem = match user_ring {
        Some(r) => r,
        None => {
            let off = sys::IORING_OFF_PBUF_RING | (u64::from(cfg.group) << sys::IORING_OFF_PBUF_SHIFT);
            match Mapping::map_ring(ring.as_raw_fd(), ring_bytes, off) {
                Ok(r) => r,
                Err(source) => {
                    let _ = unregister(ring, cfg.group);
                    return Err(Error::Alloc {
                        what: "mapping the kernel's buffer ring",
                        bytes: ring_bytes,
                        huge: false,
                        source,
                    });
                }
            }
        }
    };
    let mem = Arc::new(Memory { ring: ring_mem, data });
    if let Err(e) = ring.attach(Box::new(mem.clone())) {
        let _ = unregister(ring, cfg.group);
        return Err(e.into());
    }
    let base = mem.ring.ptr().cast::<sys::io_uring_buf_ring>();
    Ok(Registered {
        ring: sys::io_uring_buf_ring::bufs_ptr(base),
        tail: sys::io_uring_buf_ring::tail_ptr(base).cast::<AtomicU16>().cast_const(),
        data: mem.data.ptr(),
        mem,
    })
}

/// Writes one ring entry. Entry 0's `resv` is the ring's tail, so the
/// fields are written one by one, leaving it.
///
/// # Safety
///
/// `ring` must be the entries of a live buffer ring with more than `idx`
/// entries, and the entry must not be visible to the kernel (beyond the
/// published tail, and consumed if it was used before).
#[inline]
pub(crate) unsafe fn write_entry(ring: *mut sys::io_uring_buf, idx: u32, addr: u64, len: u32, bid: u16) {
    // SAFETY: forwarded to the caller.
    unsafe {
        let e = ring.add(idx as usize);
        (&raw mut (*e).addr).write(addr);
        (&raw mut (*e).len).write(len);
        (&raw mut (*e).bid).write(bid);
    }
}

/// Publishes a ring's entries up to `tail`.
///
/// # Safety
///
/// `at` must point to the tail of a live buffer ring.
#[inline]
pub(crate) unsafe fn publish_tail(at: *const AtomicU16, tail: u16) {
    // Release: the entries written before must be visible before the
    // kernel can see the tail that covers them.
    // SAFETY: forwarded to the caller.
    unsafe { &*at }.store(tail, Ordering::Release);
}

/// A buffer the caller holds, taken from a [`BufRing`] by a CQE that
/// named it. Not `Clone`: [`BufRing::recycle`] consumes it.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a buffer not recycled is lost to the ring until it is"]
pub struct Buf {
    owner: NonZeroU64,
    group: u16,
    bid: u16,
    offset: u32,
    len: u32,
}

impl Buf {
    /// The buffer id.
    pub fn bid(&self) -> u16 {
        self.bid
    }

    /// The group.
    pub fn group(&self) -> u16 {
        self.group
    }

    /// Bytes the completion put into it.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the completion put nothing into it.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Where the received bytes start in the buffer (non-zero only on
    /// incremental rings).
    pub fn offset(&self) -> usize {
        self.offset as usize
    }
}

/// The buffers one bundle CQE consumed (`IORING_RECVSEND_BUNDLE`): consecutive
/// ring entries, every one full but the last. Not `Clone`:
/// [`BufRing::recycle_bundle`] consumes it. Read it with
/// [`BufRing::bundle`].
#[derive(Debug, PartialEq, Eq)]
#[must_use = "buffers not recycled are lost to the ring until they are"]
pub struct Bundle {
    owner: NonZeroU64,
    group: u16,
    first: u16,
    count: u16,
    len: u32,
    /// Where the bytes start in the first buffer (non-zero only on
    /// incremental rings).
    offset: u32,
}

impl Bundle {
    /// How many buffers the CQE consumed.
    pub fn count(&self) -> usize {
        usize::from(self.count)
    }

    /// Bytes received over all of them.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether nothing was received.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first buffer's id (the CQE's).
    pub fn first_bid(&self) -> u16 {
        self.first
    }

    /// Where the received bytes start in the first buffer (non-zero only
    /// on incremental rings, when an earlier CQE used its beginning).
    pub fn offset(&self) -> usize {
        self.offset as usize
    }
}

/// A token [`BufRing::send`] lends to the kernel: one buffer or a bundle.
/// It sits in the ring's table of sends in flight until the send's CQE
/// gives it back ([`BufSent`]): meanwhile the caller can neither write
/// nor recycle it, and the kernel cannot select it (it is not published).
#[derive(Debug, PartialEq, Eq)]
#[must_use = "buffers not recycled are lost to the ring until they are"]
pub enum Held {
    /// One buffer ([`BufRing::take`]).
    Buf(Buf),
    /// A bundle ([`BufRing::take_bundle`]).
    Bundle(Bundle),
}

impl Held {
    /// Bytes the token holds.
    pub fn len(&self) -> usize {
        match self {
            Held::Buf(b) => b.len(),
            Held::Bundle(b) => b.len(),
        }
    }

    /// Whether it holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn owner(&self) -> NonZeroU64 {
        match self {
            Held::Buf(b) => b.owner,
            Held::Bundle(b) => b.owner,
        }
    }

    fn group_bid(&self) -> (u16, u16) {
        match self {
            Held::Buf(b) => (b.group, b.bid),
            Held::Bundle(b) => (b.group, b.first),
        }
    }
}

impl From<Buf> for Held {
    fn from(b: Buf) -> Self {
        Held::Buf(b)
    }
}

impl From<Bundle> for Held {
    fn from(b: Bundle) -> Self {
        Held::Bundle(b)
    }
}

/// The identity of a send from a [`BufRing`] ([`BufRing::send`]): its
/// `user_data`, a [`uring_core::Layer::BufRing`] value with the layer's
/// flag set, the ring's owner id (never another ring's) and the send's
/// slot (never another send's while it is in flight).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BufSendId(u64);

impl BufSendId {
    /// The `user_data` the send's CQE carries.
    pub fn user_data(self) -> u64 {
        self.0
    }
}

/// A send from a [`BufRing`] completed: its token is the caller's again.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "the token must be recycled (or sent again) to go back to the ring"]
pub struct BufSent {
    /// Which send.
    pub id: BufSendId,
    /// The token lent to the send, given back.
    pub token: Held,
    /// Where in the token's bytes the send started.
    pub from: usize,
    /// Bytes the send was asked to send.
    pub asked: usize,
    /// The send's result: bytes sent, or `-errno`.
    pub res: i32,
}

impl BufSent {
    /// Where the unsent rest of the token's bytes starts: `from` plus the
    /// bytes sent (`from` on an error). Send from here to continue after
    /// a short send, or after a bundle's buffer.
    pub fn end(&self) -> usize {
        self.from + usize::try_from(self.res).unwrap_or(0)
    }

    /// Whether every byte of the token has been sent.
    pub fn done(&self) -> bool {
        self.res >= 0 && self.end() >= self.token.len()
    }
}

/// [`BufRing::send`] refused: the token comes back with the reason.
#[derive(Debug)]
pub struct SendRefused {
    /// Why.
    pub error: Error,
    /// The token, still the caller's.
    pub token: Held,
}

impl fmt::Display for SendRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "send from a provided buffer refused: {}", self.error)
    }
}

impl std::error::Error for SendRefused {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl From<SendRefused> for Error {
    /// Keeps the reason; the token is dropped (its buffers stay out of the
    /// ring, counted by [`BufRing::held`]).
    fn from(r: SendRefused) -> Self {
        r.error
    }
}

/// What [`BufRing`]'s [`HandleCqe`](uring_core::HandleCqe) makes of a CQE
/// of its own.
#[derive(Debug)]
pub enum BufEvent {
    /// A receive's CQE: the buffers it filled (as [`BufRing::take_bundle`]).
    Received(Result<Bundle>),
    /// A send's CQE ([`BufRing::send`]): its token is given back.
    Sent(BufSent),
}

/// A send in flight: what its CQE gives back.
#[derive(Debug)]
struct InFlight {
    /// [`Ring::cq_position`] when it was queued.
    queued_at: u64,
    token: Held,
    from: usize,
    asked: usize,
}

/// Incremental rings' requests: a [`uring_core::Layer::BufRing`] value
/// whose payload is a 53-bit number from a process-wide counter.
static NEXT_REQUEST: AtomicU64 = AtomicU64::new(1);
/// How many of its latest requests an incremental ring still takes CQEs
/// of (older ones' CQEs, not taken by then, are refused: buffers lost to
/// the caller, never handed out wrongly).
const MAX_REQUESTS: usize = 64;

/// The bit of a buffer's [`BufRing`] state word set while the kernel does
/// not hold the buffer (the caller does, or a send it lent it to).
const OUT: u64 = 1 << 63;

/// Owner ids of `BufRing`s: 64 bits, so no two rings ever share one.
static NEXT_OWNER: AtomicU64 = AtomicU64::new(1);

/// A send's `user_data` ([`BufRing::send`]): a [`uring_core::Layer::BufRing`]
/// value with the flag set, whose payload is the send's slot (15 bits)
/// under the ring's owner id (38 bits). A ring whose owner id does not fit
/// refuses sends (2^38 rings made in one process first).
const SEND_SLOT_BITS: u32 = 15;
const SEND_SLOT_MASK: u64 = (1 << SEND_SLOT_BITS) - 1;
const SEND_OWNER_MAX: u64 = (1 << (uring_core::LayerData::PAYLOAD_BITS - SEND_SLOT_BITS)) - 1;
/// Where the payload starts in the `user_data`.
const SEND_SHIFT: u32 = 64 - uring_core::LayerData::PAYLOAD_BITS;
/// The most sends one ring has in flight.
const MAX_SENDS: usize = 1 << SEND_SLOT_BITS;

/// The `user_data` of send slot 0 of the ring with owner id `owner`.
fn send_base(owner: u64) -> Option<u64> {
    if owner > SEND_OWNER_MAX {
        return None;
    }
    uring_core::LayerData::new(uring_core::Layer::BufRing, true, owner << SEND_SLOT_BITS).map(|d| d.raw())
}

/// A registered provided buffer ring; see the [module documentation](self).
pub struct BufRing {
    group: u16,
    entries: u32,
    mask: u32,
    buf_size: u32,
    ring: *mut sys::io_uring_buf,
    tail: *const AtomicU16,
    data: *mut u8,
    /// Our tail: entries up to here are published.
    local_tail: u16,
    /// Buffers in the kernel's hands (those whose `state` lacks `OUT`).
    in_kernel: u32,
    /// Incremental rings: ranges the caller holds. (Elsewhere a buffer is
    /// held exactly when the kernel does not hold it: `entries -
    /// in_kernel`.)
    held: u32,
    /// The buffer id written at each ring index.
    ring_bids: Vec<u16>,
    /// Our view of the kernel's head: entries consumed by the CQEs taken.
    shadow_head: u16,
    /// Whether a CQE was taken out of ring order, so bundles cannot be
    /// located any more.
    head_lost: bool,
    /// Per buffer: the next buffer of the same bundle.
    next: Vec<u16>,
    incremental: bool,
    /// Incremental rings, per buffer: bytes the kernel has used.
    inc_used: Vec<u32>,
    /// Incremental rings, per buffer: ranges handed out, not yet recycled.
    inc_out: Vec<u16>,
    /// Per buffer, one word: the low 63 bits are one past the
    /// [`Cqe::seq`] of the CQE that last handed it out (a CQE naming it
    /// must be at least this: not a replay), and [`OUT`] is set while the
    /// kernel does not hold it. A CQE position never reaches 2^63, so one
    /// compare, `seq >= state`, checks both.
    state: Vec<u64>,
    /// Incremental rings: the one request selecting from the group
    /// ([`push_op`](BufRing::push_op)): its `user_data` and the lowest
    /// [`Cqe::seq`] its next CQE may have.
    request: Option<(u64, u64)>,
    /// Incremental rings: the latest requests (`user_data`, CQ position
    /// when queued), whose CQEs `take` accepts.
    requests: std::collections::VecDeque<(u64, u64)>,
    /// The io_uring ring the group is registered with ([`Ring::id`]).
    ring_id: u64,
    owner: NonZeroU64,
    registered: bool,
    /// Sends in flight ([`send`](BufRing::send)), by slot (the low bits
    /// of their `user_data`): the tokens lent to the kernel.
    sends: Vec<Option<InFlight>>,
    /// Free slots of `sends`.
    free_sends: Vec<u32>,
    /// `send_base(owner)`, or 0 (never a send's value) when the owner id
    /// does not fit: sends are then refused.
    send_base: u64,
    /// Keeps the memory mapped as long as this handle lives (the ring
    /// holds it too).
    _mem: Arc<Memory>,
}

// SAFETY: the raw pointers point into `mem`, which the `BufRing` owns (with
// the ring); nothing in it is tied to a thread.
unsafe impl Send for BufRing {}

impl fmt::Debug for BufRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufRing")
            .field("group", &self.group)
            .field("entries", &self.entries)
            .field("buf_size", &self.buf_size)
            .field("held", &self.held())
            .field("registered", &self.registered)
            .field("sends_in_flight", &self.sends_in_flight())
            .finish_non_exhaustive()
    }
}

impl BufRing {
    /// Allocates the buffers and the ring, registers the ring as group
    /// `cfg.group()` of `ring` (`IORING_REGISTER_PBUF_RING`), and publishes
    /// every buffer. Works before and after [`Ring::start`].
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a bad configuration (before any
    /// syscall), [`Error::Alloc`], [`Error::Core`] when the ring is stopped
    /// or the kernel refuses (`EEXIST`: the group is taken).
    pub fn register(ring: &mut Ring, cfg: BufRingConfig) -> Result<Self> {
        cfg.validate()?;
        if cfg.incremental {
            // Ranges are located from the order of one request's CQEs;
            // two requests could commit ranges of one buffer in one order
            // and post them in another (io-wq commits at selection): so
            // only this ring's own request may select from the group.
            ring.reserve_buffer_group(cfg.group)?;
        }
        let reg = match register_ring(ring, &cfg, "provided buffers") {
            Ok(reg) => reg,
            Err(e) => {
                if cfg.incremental {
                    // SAFETY: reserved just above; nothing was registered.
                    unsafe { ring.unreserve_buffer_group(cfg.group) };
                }
                return Err(e);
            }
        };
        let mut br = BufRing {
            group: cfg.group,
            entries: cfg.entries,
            mask: cfg.entries - 1,
            buf_size: cfg.buf_size,
            ring: reg.ring,
            tail: reg.tail,
            data: reg.data,
            local_tail: 0,
            in_kernel: 0,
            held: 0,
            ring_bids: vec![0; cfg.entries as usize],
            shadow_head: 0,
            head_lost: false,
            next: vec![0; cfg.entries as usize],
            incremental: cfg.incremental,
            inc_used: if cfg.incremental { vec![0; cfg.entries as usize] } else { Vec::new() },
            inc_out: if cfg.incremental { vec![0; cfg.entries as usize] } else { Vec::new() },
            state: vec![OUT; cfg.entries as usize],
            request: None,
            requests: std::collections::VecDeque::new(),
            ring_id: ring.id(),
            // Starts at 1 and never wraps (64 bits): never zero.
            owner: NonZeroU64::new(NEXT_OWNER.fetch_add(1, Ordering::Relaxed)).unwrap_or(NonZeroU64::MAX),
            registered: true,
            sends: Vec::new(),
            free_sends: Vec::new(),
            send_base: 0,
            _mem: reg.mem,
        };
        br.send_base = send_base(br.owner.get()).unwrap_or(0);
        for bid in 0..cfg.entries {
            br.put(bid as u16);
        }
        br.publish();
        Ok(br)
    }

    /// The group id operations name (`sqe->buf_group`).
    pub fn group(&self) -> u16 {
        self.group
    }

    /// Entries (buffers).
    pub fn entries(&self) -> u32 {
        self.entries
    }

    /// Bytes per buffer.
    pub fn buf_size(&self) -> u32 {
        self.buf_size
    }

    /// Buffers the caller holds (taken and not recycled, those lent to
    /// sends in flight included): a buffer that is never recycled shows
    /// here.
    pub fn held(&self) -> u32 {
        if self.incremental { self.held } else { self.entries - self.in_kernel }
    }

    /// Buffers in the kernel's hands (on incremental rings, partly used
    /// ones included).
    pub fn available(&self) -> u32 {
        self.in_kernel
    }

    /// Sends bytes of a token the caller holds on `fd`
    /// (`IORING_OP_SEND` with `msg_flags`), from byte `from` of the token:
    /// to its end for a [`Buf`]; for a [`Bundle`] (whose buffers are not
    /// contiguous) to the end of the buffer that holds byte `from`, so a
    /// bundle goes out in one send per buffer (continue from
    /// [`BufSent::end`]).
    ///
    /// The token moves into this ring's table of sends in flight: until
    /// the send's CQE gives it back ([`handle_send`](Self::handle_send),
    /// or [`BufEvent::Sent`] through [`HandleCqe`](uring_core::HandleCqe)),
    /// the caller can neither write nor recycle its buffers, and the kernel
    /// cannot select them (they are not published). The send carries this
    /// layer's own identity ([`BufSendId`]: a [`uring_core::Layer::BufRing`]
    /// value with the flag set, this ring's owner id and the send's slot),
    /// which no safe push, `MSG_RING` or poll update can make the kernel
    /// post; a CQE reaped before the send was queued (an earlier send's in
    /// the same slot, replayed) is refused by its position. The memory is attached to `ring` (which must be the ring the
    /// group is registered with), so it stays mapped until the ring has
    /// closed with nothing in flight, even if this `BufRing` is dropped or
    /// forgotten first (the token is then lost, never freed early).
    ///
    /// # Errors
    ///
    /// [`SendRefused`], with the token, when the token belongs to another
    /// `BufRing` ([`Error::NotOwned`]), `ring` is not this group's ring or
    /// `from` is not inside the token's bytes, or 32768 sends are in flight
    /// ([`Error::InvalidArgument`]), or the push fails (bad flags, a full SQ, a stopped ring:
    /// [`Error::Core`]); nothing is queued then.
    #[inline]
    pub fn send(
        &mut self,
        ring: &mut Ring,
        fd: impl Into<uring_ops::Target>,
        token: impl Into<Held>,
        from: usize,
        msg_flags: i32,
    ) -> std::result::Result<BufSendId, SendRefused> {
        let token = token.into();
        let base = self.send_base;
        if token.owner() != self.owner || ring.id() != self.ring_id || from >= token.len() || base == 0 {
            return Err(self.refuse_send(ring, token, from));
        }
        let slot = match self.free_sends.pop() {
            Some(slot) => slot,
            None if self.sends.len() < MAX_SENDS => {
                self.sends.push(None);
                (self.sends.len() - 1) as u32
            }
            None => {
                let error = Error::invalid(format!("{MAX_SENDS} sends in flight: a ring names no more"));
                return Err(SendRefused { error, token });
            }
        };
        let value = base | (u64::from(slot) << SEND_SHIFT);
        let bytes = self.piece(&token, from);
        let asked = bytes.len();
        // SAFETY: `bytes` lies in buffers the token holds (they are not
        // published, so the kernel writes none of them; on incremental
        // rings it writes only after the token's ranges). The token moves
        // into `self.sends` below and leaves it only through `handle_send`,
        // for this send's own CQE, so until then no `bytes_mut` nor
        // recycling can reach the buffers. The memory is attached to
        // `ring` (checked to be the group's ring), so it stays mapped until
        // the ring has closed with nothing in flight, whatever becomes of
        // this `BufRing`.
        let op = unsafe { uring_ops::net::Send::new(fd, bytes) }.flags(msg_flags);
        let queued_at = ring.cq_position();
        // SAFETY: the operation names only the token's bytes (above); the
        // user_data is this layer's (a `Layer::BufRing` value with the
        // flag), unique to this ring (its owner id) and this send while it
        // is in flight (its slot), and `handle_send` gives the token back
        // only for a CQE of this ring, at or after `queued_at`, once.
        match unsafe { uring_ops::push_layer_value(ring, value, op) } {
            Ok(_) => {
                self.sends[slot as usize] = Some(InFlight { queued_at, token, from, asked });
                Ok(BufSendId(value))
            }
            Err(e) => {
                self.free_sends.push(slot);
                Err(SendRefused { error: e.into(), token })
            }
        }
    }

    /// Why [`send`](Self::send) refuses `token`, given back with it.
    #[cold]
    #[inline(never)]
    fn refuse_send(&self, ring: &Ring, token: Held, from: usize) -> SendRefused {
        let error = if token.owner() != self.owner {
            let (group, bid) = token.group_bid();
            Error::NotOwned { group, bid, why: "belongs to another BufRing" }
        } else if ring.id() != self.ring_id {
            Error::invalid(format!(
                "group {}: sends from this BufRing go through the ring it is registered with (its memory is \
                 attached there)",
                self.group
            ))
        } else if from >= token.len() {
            Error::invalid(format!("send from byte {from} of a token of {} bytes", token.len()))
        } else {
            Error::invalid("buffer ring owner ids for sends are exhausted (2^38 rings)")
        };
        SendRefused { error, token }
    }

    /// The bytes of `token` (this ring's) from `from` (< its length) to the
    /// end of the buffer holding byte `from`.
    #[inline]
    fn piece<'a>(&'a self, token: &'a Held, from: usize) -> &'a [u8] {
        match token {
            Held::Buf(b) => {
                debug_assert!(b.owner == self.owner && from < b.len());
                // SAFETY: as in `bytes` (the caller checked that the token
                // is this ring's), from byte `from` < its length (checked
                // too) to its end.
                unsafe {
                    std::slice::from_raw_parts(
                        self.data.add(usize::from(b.bid) * self.buf_size as usize + b.offset as usize + from),
                        b.len() - from,
                    )
                }
            }
            Held::Bundle(b) => {
                let mut at = from;
                for part in self.bundle(b) {
                    if at < part.len() {
                        return &part[at..];
                    }
                    at -= part.len();
                }
                unreachable!("from < the bundle's length")
            }
        }
    }

    /// Sends in flight ([`send`](Self::send)): their tokens count in
    /// [`held`](Self::held) too.
    pub fn sends_in_flight(&self) -> usize {
        self.sends.len() - self.free_sends.len()
    }

    /// Gives back the token of the send `cqe` completes: `None` unless the
    /// CQE is that send's own ([`send`](Self::send)): its `user_data`, from
    /// the ring the group is registered with ([`Cqe::ring_id`]), at or
    /// after the CQ position when the send was queued ([`Cqe::seq`]), and
    /// the first time (the send leaves the table). A copy presented again,
    /// another ring's CQE, or any other CQE gives nothing and changes
    /// nothing. Works while the CQE still borrows the ring.
    ///
    /// After a short send ([`BufSent::done`] is false, `res` ≥ 0) send the
    /// rest from [`BufSent::end`]; recycle the token when done.
    #[inline]
    pub fn handle_send(&mut self, cqe: &Cqe<'_>) -> Option<BufSent> {
        if cqe.ring_id() != self.ring_id || cqe.more() {
            // (A plain send posts one CQE, without F_MORE.)
            return None;
        }
        let ud = cqe.user_data();
        // The layer, the flag and this ring's owner id in one comparison
        // with slot 0's value (`send_base`). When it is 0 (an owner id too
        // large for sends) a packed value may pass, but the table is empty:
        // `send` refuses every send of such a ring.
        if ud & !(SEND_SLOT_MASK << SEND_SHIFT) != self.send_base {
            return None;
        }
        let slot = self.sends.get_mut(((ud >> SEND_SHIFT) & SEND_SLOT_MASK) as usize)?;
        if cqe.seq() < slot.as_ref()?.queued_at {
            // Reaped before the send was queued: not its CQE.
            return None;
        }
        let f = slot.take()?;
        self.free_sends.push(((ud >> SEND_SHIFT) & SEND_SLOT_MASK) as u32);
        Some(BufSent { id: BufSendId(ud), token: f.token, from: f.from, asked: f.asked, res: cqe.res() })
    }

    /// Queues `op`, a request that selects from this **incremental** ring's
    /// group, and returns the `user_data` its CQEs carry: an identity of
    /// this ring's own (a [`uring_core::Layer::BufRing`] value
    /// and a number never reused), which no other push, `MSG_RING` or
    /// poll update may carry. On an incremental ring this is the only way
    /// to queue such a request (the group is reserved: every other push
    /// refuses an entry that selects from it), and one at a time. Ranges
    /// of a buffer are located from the bytes its CQEs report, which is
    /// sound only if every range handed out lies in bytes whose CQEs were
    /// posted: one request commits and posts its ranges in order, but two
    /// could commit in one order and post in another (io-wq commits a
    /// range when it selects it), and a range located from the later post
    /// would cover bytes the kernel is still writing. The request ends
    /// with its CQE without `IORING_CQE_F_MORE`, seen by
    /// [`take`](Self::take) (which also sees an end without a buffer) or
    /// [`end_request`](Self::end_request). Hand its CQEs to
    /// [`take`](Self::take); [`is_own`](Self::is_own) tells them apart.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] on a ring that is not incremental (push
    /// with `RingOps::push_op`), when `op` does not select from this group
    /// or is a receive with `MSG_WAITALL` (nothing is queued: after a short
    /// receive the kernel commits the bytes so far and then the whole
    /// result, so its place in the buffer runs ahead of the results and the
    /// ranges would hold bytes the receive did not write), or a request is
    /// in flight; the push's errors ([`Error::Core`]).
    pub fn push_op<O: uring_ops::SafeOp>(&mut self, ring: &mut Ring, op: O) -> Result<SqeContext> {
        if !self.incremental {
            return Err(Error::invalid(format!(
                "group {}: push_op is for incremental rings; queue receives with RingOps::push_op",
                self.group
            )));
        }
        if ring.id() != self.ring_id {
            return Err(Error::invalid(format!("group {}: this BufRing is registered with another ring", self.group)));
        }
        if self.request.is_some() {
            return Err(Error::invalid(format!(
                "group {}: a request selecting from this incremental ring is in flight (one at a time)",
                self.group
            )));
        }
        let number = NEXT_REQUEST.fetch_add(1, Ordering::Relaxed);
        let Some(value) = uring_core::LayerData::new(uring_core::Layer::BufRing, false, number) else {
            return Err(Error::invalid("incremental ring request numbers are exhausted (2^53)"));
        };
        let user_data = value.raw();
        let pos = ring.cq_position();
        // SAFETY: `O: SafeOp` names no caller memory; the user_data is this
        // layer's, used for this request only, and `take` checks the ring
        // and position of each CQE; this ring reserved the group, and the
        // entry is checked to select from it below.
        let seen = std::cell::Cell::new((0u8, 0u32));
        let op = Observed { op, seen: &seen };
        // SAFETY: as above (`Observed` prepares exactly `op`'s entry).
        let (stamped, group) = unsafe { uring_ops::push_group_owner_layer_op(ring, value.context(), op) }?;
        let (opcode, msg_flags) = seen.get();
        let receive = u32::from(opcode) == sys::IORING_OP_RECV || u32::from(opcode) == sys::IORING_OP_RECVMSG;
        if group == Some(self.group) && receive && msg_flags & libc::MSG_WAITALL as u32 != 0 {
            // SAFETY: queued just above, not flushed, nothing depends on it.
            unsafe { ring.retract_last_sqe() };
            return Err(Error::invalid(format!(
                "group {}: MSG_WAITALL on an incremental ring: after a short receive the kernel commits the bytes \
                 received so far and then the whole result, so its place in the buffer runs ahead of the results \
                 and the ranges handed out would hold bytes this receive did not write",
                self.group
            )));
        }
        if group != Some(self.group) {
            // SAFETY: queued just above, not flushed, nothing depends on it.
            unsafe { ring.retract_last_sqe() };
            return Err(Error::invalid(format!(
                "group {}: the operation does not select from this group ({group:?})",
                self.group
            )));
        }
        self.request = Some((user_data, pos));
        if self.requests.len() == MAX_REQUESTS {
            self.requests.pop_front();
        }
        self.requests.push_back((user_data, pos));
        Ok(stamped)
    }

    /// Whether `cqe` answers a request of this incremental ring
    /// ([`push_op`](Self::push_op)): its identity, from this ring, reaped
    /// after the request was queued.
    pub fn is_own(&self, cqe: &Cqe<'_>) -> bool {
        cqe.ring_id() == self.ring_id && self.requests.iter().any(|&(ud, at)| ud == cqe.user_data() && cqe.seq() >= at)
    }

    /// Whether a request queued with [`push_op`](Self::push_op) on this
    /// incremental ring has not ended yet.
    pub fn request_in_flight(&self) -> bool {
        self.request.is_some()
    }

    /// Notes that `cqe` ended the request queued with
    /// [`push_op`](Self::push_op) (its CQE without `IORING_CQE_F_MORE`),
    /// without taking its buffer, so that the next request can be queued
    /// while that buffer is taken later. [`take`](Self::take) does the
    /// same. Returns whether it was that request's end.
    pub fn end_request(&mut self, cqe: &Cqe<'_>) -> bool {
        match self.request {
            Some((ud, after))
                if cqe.ring_id() == self.ring_id && cqe.user_data() == ud && cqe.seq() >= after && !cqe.more() =>
            {
                self.request = None;
                true
            }
            _ => false,
        }
    }

    /// Takes the buffer a CQE names (`IORING_CQE_F_BUFFER`), holding the
    /// bytes the completion reported (`res`). `Ok(None)` when the CQE
    /// names no buffer (errors, `-ENOBUFS`).
    ///
    /// A CQE does not say which group its buffer came from, so the CQE
    /// must prove it ([`Cqe::buffer_selection`]): a packed context queued
    /// through `uring-ops` carries the entry's real group and
    /// `IOSQE_BUFFER_SELECT`, a pooled one has them recorded in the ring's
    /// pools. The CQE must also come from the ring this group is
    /// registered with, and be later than the CQE that last handed out the
    /// same buffer: a CQE of another group or ring, or one presented again
    /// (a copied [`CqeSlot`](uring_core::CqeSlot)), is refused and hands
    /// out nothing. A layer value proves nothing: the layer that queued
    /// it vouches ([`take_selection`](Self::take_selection)). On an
    /// incremental ring, only the CQEs of its own requests
    /// ([`push_op`](Self::push_op)) are taken.
    /// For bundle receives use [`take_bundle`](Self::take_bundle).
    ///
    /// On an incremental ring the token is the range this CQE filled; the
    /// buffer stays with the kernel until its ranges reach its end (the
    /// kernel leaves `IORING_CQE_F_BUF_MORE` off then; the bytes decide,
    /// see [`take_bundle`](Self::take_bundle)). A CQE does not say where in the buffer its
    /// bytes start: ranges follow the order in which one buffer's CQEs are
    /// taken, so take them in CQE order (taken out of order, a later CQE
    /// gets the earlier one's bytes and the earlier one is refused; every
    /// range still lies in bytes the kernel has finished writing).
    ///
    /// # Errors
    ///
    /// [`Error::NotOwned`] when the CQE cannot prove that it selected from
    /// this group of this ring, is not newer than the last CQE that named
    /// its buffer (presented twice), or names a buffer out of range or not
    /// in the kernel's hands.
    #[inline(always)]
    pub fn take(&mut self, cqe: &Cqe<'_>) -> Result<Option<Buf>> {
        if self.incremental {
            return self.take_incremental(cqe);
        }
        let Some(bid) = cqe.buffer_id() else { return Ok(None) };
        match cqe.buffer_selection() {
            Some(sel) => match self.take_fast(&sel) {
                Some(buf) => Ok(Some(buf)),
                None => self.refuse_plain(sel).map(Some),
            },
            None => Err(unproven(self.group, bid)),
        }
    }

    /// [`take`](Self::take) on an incremental ring.
    #[inline(never)]
    fn take_incremental(&mut self, cqe: &Cqe<'_>) -> Result<Option<Buf>> {
        {
            if !self.is_own(cqe) {
                return match cqe.buffer_id() {
                    None => Ok(None),
                    Some(bid) => Err(unproven(self.group, bid)),
                };
            }
            self.end_request(cqe);
            // SAFETY: the CQE answers a request this ring queued under its
            // reserved identity with the group it checked, from this ring,
            // reaped after the request was queued.
            match unsafe { BufferSelection::vouch(cqe, self.group) } {
                Some(sel) => self.take_checked(&sel).map(Some),
                None => Ok(None),
            }
        }
    }

    /// [`take_checked`](Self::take_checked) on a ring that is not
    /// incremental, in one combined test: the selection of this ring and
    /// group, newer than the CQE that last handed out its buffer, the
    /// buffer in the kernel's hands, the result within it. Anything else
    /// goes to `take_checked` for its error.
    #[inline(always)]
    fn take_plain(&mut self, sel: BufferSelection) -> Result<Buf> {
        match self.take_fast(&sel) {
            Some(buf) => Ok(buf),
            None => self.refuse_plain(sel),
        }
    }

    /// The fast path of [`take_plain`](Self::take_plain): the token, or
    /// `None` when the selection is refused (nothing changed then).
    #[inline(always)]
    fn take_fast(&mut self, sel: &BufferSelection) -> Option<Buf> {
        let bid = sel.bid();
        let b = usize::from(bid);
        let len = u32::try_from(sel.res()).unwrap_or(0);
        match self.state.get_mut(b) {
            // `seq >= state`: newer than the CQE that last handed it out,
            // and in the kernel's hands (`OUT` clear).
            Some(state)
                if sel.ring_id() == self.ring_id
                    && sel.group() == self.group
                    && sel.seq() >= *state
                    && len <= self.buf_size =>
            {
                *state = (sel.seq() + 1) | OUT;
                self.in_kernel -= 1;
                self.advance_head(bid);
                Some(Buf { owner: self.owner, group: self.group, bid, offset: 0, len })
            }
            _ => None,
        }
    }

    /// The error `take_plain` refused with (`take_checked` names it).
    /// The selection comes by value, so the fast path never has to store it.
    #[cold]
    #[inline(never)]
    fn refuse_plain(&mut self, sel: BufferSelection) -> Result<Buf> {
        self.take_checked(&sel)
    }

    /// Takes the buffer a proven selection names; see [`take`](Self::take).
    ///
    /// # Errors
    ///
    /// As for [`take`](Self::take).
    #[inline]
    pub fn take_selection(&mut self, sel: &BufferSelection) -> Result<Buf> {
        if self.incremental {
            self.check_own_selection(sel)?;
            return self.take_checked(sel);
        }
        self.take_plain(*sel)
    }

    /// Incremental rings: refuses a selection that is not a CQE of one of
    /// the ring's own requests, and notes the end of the one in flight.
    fn check_own_selection(&mut self, sel: &BufferSelection) -> Result<()> {
        let own = self.requests.iter().any(|&(ud, at)| ud == sel.user_data() && sel.seq() >= at);
        if !own {
            return Err(Error::NotOwned {
                group: self.group,
                bid: sel.bid(),
                why: "on an incremental ring only the CQEs of its own requests (BufRing::push_op) are taken",
            });
        }
        if let Some((ud, after)) = self.request
            && sel.user_data() == ud
            && sel.seq() >= after
            && !sel.more()
        {
            self.request = None;
        }
        Ok(())
    }

    #[inline]
    fn take_checked(&mut self, sel: &BufferSelection) -> Result<Buf> {
        self.check_selection(sel)?;
        // SAFETY: the selection proves that the kernel handed over `bid` of
        // this group of this ring in a CQE newer than the last one that
        // named it.
        let buf = unsafe { self.take_id(sel.bid(), sel.res(), sel.buf_more()) }?;
        self.set_seen(sel.bid(), sel.seq() + 1);
        Ok(buf.expect("take_id always hands out a token"))
    }

    /// Refuses a selection of another ring or group, or one not newer than
    /// the CQE that last handed out its buffer.
    #[inline]
    fn check_selection(&self, sel: &BufferSelection) -> Result<()> {
        let bid = sel.bid();
        if sel.ring_id() != self.ring_id {
            return Err(Error::NotOwned { group: self.group, bid, why: "the CQE comes from another ring" });
        }
        if sel.group() != self.group {
            return Err(Error::NotOwned { group: self.group, bid, why: "the CQE selected from another group" });
        }
        match self.state.get(usize::from(bid)) {
            None => Err(Error::NotOwned { group: self.group, bid, why: "out of range for this ring" }),
            Some(&state) if sel.seq() < state & !OUT => Err(Error::NotOwned {
                group: self.group,
                bid,
                why: "the CQE is not newer than the one that last handed out this buffer (presented twice?)",
            }),
            Some(_) => Ok(()),
        }
    }

    /// As [`take`](Self::take), from a CQE's buffer id, result and
    /// `IORING_CQE_F_BUF_MORE` flag, without any proof: for code that
    /// routes CQEs itself (and for measuring the bookkeeping alone). On an
    /// incremental ring `buf_more` is not relied on: the bytes decide when
    /// the kernel is done with a buffer (see [`take_bundle`](Self::take_bundle)).
    ///
    /// # Errors
    ///
    /// As for [`take`](Self::take), and [`Error::InvalidArgument`] for a
    /// result larger than what is left of the buffer.
    ///
    /// # Safety
    ///
    /// `bid`, `res` and `buf_more` must come from one CQE reaped from the
    /// ring this group is registered with, for an entry that selected from
    /// this group (`IOSQE_BUFFER_SELECT`, this `buf_group`), presented here
    /// once. Anything else can hand out a buffer the kernel may still
    /// write while the caller reads it.
    #[inline]
    pub unsafe fn take_id(&mut self, bid: u16, res: i32, buf_more: bool) -> Result<Option<Buf>> {
        self.check_in_kernel(bid)?;
        let len = u32::try_from(res).unwrap_or(0);
        let b = usize::from(bid);
        if self.incremental {
            let offset = self.inc_used[b];
            if len > self.buf_size - offset {
                return Err(Error::invalid(format!(
                    "a result of {len} bytes cannot fit the {} bytes left of buffer {bid}",
                    self.buf_size - offset
                )));
            }
            self.inc_used[b] += len;
            // The kernel moves its head past a buffer when a commit fills
            // it to its end, and only then (`io_kbuf_inc_commit`): decided
            // from the bytes, which bound the kernel's own count from
            // below, never from `buf_more` alone (a 0-byte commit has no
            // F_BUF_MORE yet leaves the head; see `take_bundle` for
            // kernels that drop or keep the flag wrongly).
            if self.inc_used[b] == self.buf_size {
                // The kernel is done with this buffer and moved its head.
                self.set_in_kernel(bid, false);
                self.advance_head(bid);
            }
            let _ = buf_more;
            self.inc_out[b] += 1;
            self.held += 1;
            return Ok(Some(Buf { owner: self.owner, group: self.group, bid, offset, len }));
        }
        if len > self.buf_size {
            return Err(Error::invalid(format!("a result of {len} bytes cannot fit buffers of {}", self.buf_size)));
        }
        self.set_in_kernel(bid, false);
        self.advance_head(bid);
        Ok(Some(Buf { owner: self.owner, group: self.group, bid, offset: 0, len }))
    }

    /// Takes the buffers a bundle CQE consumed (`IORING_RECVSEND_BUNDLE`):
    /// consecutive ring entries from the CQE's buffer id, as many as the
    /// result fills. `Ok(None)` when the CQE names no buffer.
    ///
    /// Locating them needs every CQE of this group to be taken, in CQE
    /// order, through `take` or `take_bundle` (one consumer per group, as
    /// the kernel consumes entries in order).
    ///
    /// # Incremental rings
    ///
    /// On an incremental ring (the bundle receive queued with
    /// [`push_op`](Self::push_op)) the kernel continues where the last CQE
    /// stopped: the bundle's bytes start at [`Bundle::offset`] in the
    /// buffer at the head (partly used by earlier CQEs), fill every buffer
    /// after it to its end, and may end inside the last one, which then
    /// stays with the kernel for the next receive
    /// (`IORING_CQE_F_BUF_MORE`). Each buffer's range is handed out once,
    /// and a buffer goes back to the ring when the kernel has moved past it
    /// and every range of it has been recycled. Whether the kernel has
    /// moved past the last buffer is decided from the bytes (the range
    /// reaches the buffer's end), not from `F_BUF_MORE`: kernels before
    /// upstream commit ed46f39c47eb ("inherit IORING_CQE_F_BUF_MORE across
    /// bundle recv retries", 2026) may drop the flag from a bundle that
    /// retried internally, or leave a stale one, and trusting it would
    /// hand back a buffer the kernel still fills.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when the group's CQEs were taken out of
    /// order, or the bytes span more buffers than the kernel held;
    /// [`Error::NotOwned`] when the CQE does not start at the kernel's head
    /// (taken twice), or (incremental rings) is not one of the ring's own
    /// requests' CQEs.
    pub fn take_bundle(&mut self, cqe: &Cqe<'_>) -> Result<Option<Bundle>> {
        if self.incremental {
            if !self.is_own(cqe) {
                return match cqe.buffer_id() {
                    None => Ok(None),
                    Some(bid) => Err(unproven(self.group, bid)),
                };
            }
            self.end_request(cqe);
            // SAFETY: as in `take`: the CQE answers a request this ring
            // queued under its reserved identity with the group it
            // checked, from this ring, reaped after the request was queued.
            return match unsafe { BufferSelection::vouch(cqe, self.group) } {
                Some(sel) => {
                    self.check_selection(&sel)?;
                    self.bundle_inc(sel.bid(), sel.res(), Some(sel.seq())).map(Some)
                }
                None => Ok(None),
            };
        }
        let Some(bid) = cqe.buffer_id() else { return Ok(None) };
        match cqe.buffer_selection() {
            Some(sel) => self.take_bundle_selection(&sel).map(Some),
            None => Err(unproven(self.group, bid)),
        }
    }

    /// Takes the buffers of a proven bundle selection; see
    /// [`take_bundle`](Self::take_bundle) and [`take`](Self::take).
    ///
    /// # Errors
    ///
    /// As for [`take_bundle`](Self::take_bundle), and the proof's errors
    /// as for [`take`](Self::take) (for every buffer of the bundle).
    pub fn take_bundle_selection(&mut self, sel: &BufferSelection) -> Result<Bundle> {
        if self.incremental {
            self.check_own_selection(sel)?;
        }
        self.check_selection(sel)?;
        self.bundle_inner(sel.bid(), sel.res(), Some(sel.seq()))
    }

    /// As [`take_bundle`](Self::take_bundle), from a CQE's buffer id and
    /// result, without any proof.
    ///
    /// # Errors
    ///
    /// As for [`take_bundle`](Self::take_bundle).
    ///
    /// # Safety
    ///
    /// As for [`take_id`](Self::take_id): one CQE of this ring's entry that
    /// selected from this group, presented once.
    pub unsafe fn take_bundle_id(&mut self, bid: u16, res: i32) -> Result<Bundle> {
        self.bundle_inner(bid, res, None)
    }

    fn bundle_inner(&mut self, bid: u16, res: i32, seq: Option<u64>) -> Result<Bundle> {
        if self.incremental {
            return self.bundle_inc(bid, res, seq);
        }
        if self.head_lost {
            return Err(Error::invalid(format!(
                "group {}: a CQE was taken out of ring order, so bundles can no longer be located",
                self.group
            )));
        }
        self.check_in_kernel(bid)?;
        if self.ring_bids[usize::from(self.shadow_head) & self.mask as usize] != bid {
            return Err(Error::NotOwned { group: self.group, bid, why: "a bundle must start at the ring's head" });
        }
        let len = u32::try_from(res).unwrap_or(0);
        let count = len.div_ceil(self.buf_size).max(1);
        let in_kernel = self.available();
        if count > in_kernel {
            return Err(Error::invalid(format!(
                "a bundle of {len} bytes spans {count} buffers, but the kernel held only {in_kernel}"
            )));
        }
        let mut prev: Option<u16> = None;
        for i in 0..count as u16 {
            let b = self.ring_bids[usize::from(self.shadow_head.wrapping_add(i)) & self.mask as usize];
            self.check_in_kernel(b)?;
            if let Some(seq) = seq
                && seq < self.after(b)
            {
                return Err(Error::NotOwned {
                    group: self.group,
                    bid: b,
                    why: "the CQE is not newer than the one that last handed out this buffer (presented twice?)",
                });
            }
        }
        for i in 0..count as u16 {
            let b = self.ring_bids[usize::from(self.shadow_head.wrapping_add(i)) & self.mask as usize];
            if let Some(seq) = seq {
                self.set_seen(b, seq + 1);
            }
            self.set_in_kernel(b, false);
            if let Some(p) = prev {
                self.next[usize::from(p)] = b;
            }
            prev = Some(b);
        }
        self.shadow_head = self.shadow_head.wrapping_add(count as u16);
        Ok(Bundle { owner: self.owner, group: self.group, first: bid, count: count as u16, len, offset: 0 })
    }

    /// A bundle of an incremental ring: `res` bytes from where the buffer
    /// at the head was left, through every buffer after it to its end, and
    /// into the last one (see [`take_bundle`](Self::take_bundle)).
    fn bundle_inc(&mut self, bid: u16, res: i32, seq: Option<u64>) -> Result<Bundle> {
        if self.head_lost {
            return Err(Error::invalid(format!(
                "group {}: a CQE was taken out of ring order, so bundles can no longer be located",
                self.group
            )));
        }
        self.check_in_kernel(bid)?;
        if self.ring_bids[usize::from(self.shadow_head) & self.mask as usize] != bid {
            return Err(Error::NotOwned { group: self.group, bid, why: "a bundle must start at the ring's head" });
        }
        let len = u32::try_from(res).unwrap_or(0);
        let offset = self.inc_used[usize::from(bid)];
        // Entries published and not yet consumed, in ring order from the
        // head: the only buffers the kernel can have filled.
        let published = self.local_tail.wrapping_sub(self.shadow_head);
        // First pass: check every buffer the bytes span, change nothing.
        let (mut left, mut count) = (len, 0u16);
        loop {
            if count == published {
                return Err(Error::invalid(format!(
                    "a bundle of {len} bytes from offset {offset} spans more than the {published} buffers the kernel \
                     held"
                )));
            }
            let b = self.ring_bids[usize::from(self.shadow_head.wrapping_add(count)) & self.mask as usize];
            self.check_in_kernel(b)?;
            let used = self.inc_used[usize::from(b)];
            if count > 0 && used != 0 {
                return Err(Error::invalid(format!("buffer {b} after the head was already partly used")));
            }
            if let Some(seq) = seq
                && seq < self.after(b)
            {
                return Err(Error::NotOwned {
                    group: self.group,
                    bid: b,
                    why: "the CQE is not newer than the one that last handed out this buffer (presented twice?)",
                });
            }
            count += 1;
            let room = self.buf_size - used;
            if left <= room {
                break;
            }
            left -= room;
        }
        // Second pass: hand out one range of each. Every buffer but the
        // last was filled to its end; the last is finished only if the
        // bytes reach its end (the kernel then moved its head past it).
        let mut left = len;
        let mut prev: Option<u16> = None;
        for _ in 0..count {
            let b = self.ring_bids[usize::from(self.shadow_head) & self.mask as usize];
            let i = usize::from(b);
            let this = left.min(self.buf_size - self.inc_used[i]);
            left -= this;
            self.inc_used[i] += this;
            self.inc_out[i] += 1;
            if let Some(seq) = seq {
                self.set_seen(b, seq + 1);
            }
            if let Some(p) = prev {
                self.next[usize::from(p)] = b;
            }
            prev = Some(b);
            if self.inc_used[i] == self.buf_size {
                self.set_in_kernel(b, false);
                self.shadow_head = self.shadow_head.wrapping_add(1);
            }
        }
        self.held += u32::from(count);
        Ok(Bundle { owner: self.owner, group: self.group, first: bid, count, len, offset })
    }

    /// The received bytes of a bundle, buffer by buffer (every one full but
    /// the last).
    ///
    /// # Panics
    ///
    /// If `bundle` came from another `BufRing`.
    pub fn bundle<'a>(&'a self, bundle: &'a Bundle) -> impl ExactSizeIterator<Item = &'a [u8]> + 'a {
        assert_eq!(bundle.owner, self.owner, "Bundle of group {} used with another BufRing", bundle.group);
        let mut bid = bundle.first;
        let mut left = bundle.len as usize;
        (0..bundle.count).map(move |i| {
            let start = if i == 0 { bundle.offset as usize } else { 0 };
            if i > 0 {
                bid = self.next[usize::from(bid)];
            }
            let n = left.min(self.buf_size as usize - start);
            left -= n;
            // SAFETY: the bundle's ranges are held by the caller (the token
            // exists): the kernel does not write them (on incremental rings
            // it writes only after the last range, in a buffer it has not
            // finished); start + n ≤ buf_size.
            unsafe { std::slice::from_raw_parts(self.data.add(usize::from(bid) * self.buf_size as usize + start), n) }
        })
    }

    /// Returns a bundle's buffers to the kernel with one publication.
    ///
    /// # Errors
    ///
    /// [`Error::NotOwned`] when `bundle` belongs to another `BufRing`.
    pub fn recycle_bundle(&mut self, bundle: Bundle) -> Result<()> {
        if bundle.owner != self.owner {
            return Err(Error::NotOwned { group: bundle.group, bid: bundle.first, why: "belongs to another BufRing" });
        }
        let mut bid = bundle.first;
        for i in 0..bundle.count {
            if i > 0 {
                bid = self.next[usize::from(bid)];
            }
            if self.incremental {
                // One range of each: the buffer goes back once the kernel
                // is done with it and its last range is back.
                self.release(bid);
            } else {
                self.put(bid);
            }
        }
        self.publish();
        Ok(())
    }

    #[inline]
    fn check_in_kernel(&self, bid: u16) -> Result<()> {
        if u32::from(bid) >= self.entries {
            return Err(Error::NotOwned { group: self.group, bid, why: "out of range for this ring" });
        }
        if !self.is_in_kernel(bid) {
            return Err(Error::NotOwned { group: self.group, bid, why: "not in the kernel's hands (taken twice?)" });
        }
        Ok(())
    }

    /// Marks `bid` (in range) as held by the kernel or not; a buffer
    /// already in that state is left as it is.
    #[inline]
    fn set_in_kernel(&mut self, bid: u16, yes: bool) {
        let state = &mut self.state[usize::from(bid)];
        let was = *state & OUT == 0;
        if yes {
            *state &= !OUT;
        } else {
            *state |= OUT;
        }
        if yes && !was {
            self.in_kernel += 1;
        } else if !yes && was {
            self.in_kernel -= 1;
        }
    }

    /// One past the position of the CQE that last handed out `bid` (in
    /// range).
    #[inline]
    fn after(&self, bid: u16) -> u64 {
        self.state[usize::from(bid)] & !OUT
    }

    /// Records the CQE position a later CQE naming `bid` (in range) must
    /// reach, keeping its `OUT` bit.
    #[inline]
    fn set_seen(&mut self, bid: u16, after: u64) {
        let state = &mut self.state[usize::from(bid)];
        *state = after | (*state & OUT);
    }

    /// The kernel consumed the entry at its head, which held `bid`.
    #[inline]
    fn advance_head(&mut self, bid: u16) {
        let at = usize::from(self.shadow_head) & self.mask as usize;
        // SAFETY: `ring_bids` has `entries` elements and at ≤ mask =
        // entries - 1.
        if unsafe { *self.ring_bids.get_unchecked(at) } == bid {
            self.shadow_head = self.shadow_head.wrapping_add(1);
        } else {
            self.head_lost = true;
        }
    }

    /// The received bytes of a held buffer.
    ///
    /// # Panics
    ///
    /// If `buf` came from another `BufRing` (a programming error, like
    /// indexing out of bounds).
    #[inline]
    pub fn bytes(&self, buf: &Buf) -> &[u8] {
        assert_eq!(buf.owner, self.owner, "Buf of group {} used with another BufRing", buf.group);
        // SAFETY: the buffer is held by the caller (the token exists), so
        // the kernel does not write it until it is recycled; `len` ≤
        // buf_size was checked at take; the borrow of `self` keeps the
        // memory mapped.
        unsafe {
            std::slice::from_raw_parts(
                self.data.add(usize::from(buf.bid) * self.buf_size as usize + buf.offset as usize),
                buf.len(),
            )
        }
    }

    /// The received bytes, writable (to transform data in place, say).
    ///
    /// # Panics
    ///
    /// As for [`bytes`](Self::bytes).
    pub fn bytes_mut(&mut self, buf: &mut Buf) -> &mut [u8] {
        assert_eq!(buf.owner, self.owner, "Buf of group {} used with another BufRing", buf.group);
        // SAFETY: as in `bytes`; `&mut self` and `&mut Buf` make the
        // borrow unique, and the range is the caller's alone (on
        // incremental rings the kernel writes only after it).
        unsafe {
            std::slice::from_raw_parts_mut(
                self.data.add(usize::from(buf.bid) * self.buf_size as usize + buf.offset as usize),
                buf.len(),
            )
        }
    }

    /// Returns a buffer to the kernel (publishes it with one release store
    /// of the ring tail).
    ///
    /// # Errors
    ///
    /// [`Error::NotOwned`] when `buf` belongs to another `BufRing` (the
    /// token is consumed either way; it was never this ring's to return).
    #[inline]
    pub fn recycle(&mut self, buf: Buf) -> Result<()> {
        if buf.owner != self.owner {
            return Err(Error::NotOwned { group: buf.group, bid: buf.bid, why: "belongs to another BufRing" });
        }
        if self.release(buf.bid) {
            self.publish();
        }
        Ok(())
    }

    /// Returns a [`Held`] token's buffers to the kernel
    /// ([`recycle`](Self::recycle) or [`recycle_bundle`](Self::recycle_bundle)).
    ///
    /// # Errors
    ///
    /// As for [`recycle`](Self::recycle).
    #[inline]
    pub fn recycle_held(&mut self, token: Held) -> Result<()> {
        match token {
            Held::Buf(b) => self.recycle(b),
            Held::Bundle(b) => self.recycle_bundle(b),
        }
    }

    /// Gives back one token of `bid`; returns whether the buffer went back
    /// into the ring (to be published).
    #[inline]
    fn release(&mut self, bid: u16) -> bool {
        if self.incremental {
            self.held -= 1;
            let b = usize::from(bid);
            self.inc_out[b] -= 1;
            if self.inc_out[b] > 0 || self.is_in_kernel(bid) {
                // Other ranges are still out, or the kernel is still
                // filling the rest of the buffer.
                return false;
            }
            self.inc_used[b] = 0;
        }
        self.put(bid);
        true
    }

    /// Returns several buffers with one publication.
    ///
    /// # Errors
    ///
    /// As for [`recycle`](Self::recycle); buffers before the bad one are
    /// recycled.
    pub fn recycle_all(&mut self, bufs: impl IntoIterator<Item = Buf>) -> Result<()> {
        let mut result = Ok(());
        for buf in bufs {
            if buf.owner != self.owner {
                result = Err(Error::NotOwned { group: buf.group, bid: buf.bid, why: "belongs to another BufRing" });
                break;
            }
            self.release(buf.bid);
        }
        self.publish();
        result
    }

    /// The kernel's head: how many entries it has consumed, modulo 2^16
    /// (`IORING_REGISTER_PBUF_STATUS`, since 6.8).
    ///
    /// # Errors
    ///
    /// [`Error::Core`] when the call fails (the ring is stopped, or this
    /// ring was unregistered: `EINVAL`).
    pub fn head(&self, ring: &Ring) -> Result<u16> {
        let mut st = sys::io_uring_buf_status { buf_group: u32::from(self.group), ..Default::default() };
        // SAFETY: PBUF_STATUS reads and writes one io_uring_buf_status,
        // valid for the call.
        unsafe {
            ring.register().raw(
                "IORING_REGISTER_PBUF_STATUS",
                sys::IORING_REGISTER_PBUF_STATUS,
                (&mut st as *mut sys::io_uring_buf_status).cast::<c_void>().cast_const(),
                1,
            )
        }?;
        Ok(st.head as u16)
    }

    /// Unregisters the group (`IORING_UNREGISTER_PBUF_RING`). Operations
    /// that select from it afterwards fail with `-ENOBUFS`. The memory
    /// stays attached to `ring` until it closes.
    ///
    /// # Errors
    ///
    /// [`Error::Core`] when the kernel refuses.
    pub fn unregister(mut self, ring: &mut Ring) -> Result<()> {
        if ring.id() != self.ring_id {
            return Err(Error::invalid(format!("group {}: this BufRing is registered with another ring", self.group)));
        }
        self.registered = false;
        unregister(ring, self.group)?;
        if self.incremental {
            // SAFETY: this ring reserved the group; it is unregistered, so
            // no request selects from it any more.
            unsafe { ring.unreserve_buffer_group(self.group) };
        }
        Ok(())
    }

    #[inline]
    fn is_in_kernel(&self, bid: u16) -> bool {
        self.state[usize::from(bid)] & OUT == 0
    }

    /// Writes buffer `bid` into the next ring entry (not yet published).
    #[inline]
    fn put(&mut self, bid: u16) {
        let idx = u32::from(self.local_tail) & self.mask;
        // SAFETY: bid < entries, so the address is inside the data region.
        let addr = unsafe { self.data.add(usize::from(bid) * self.buf_size as usize) } as u64;
        // SAFETY: idx < entries; the entry at our tail is not visible to
        // the kernel until the tail is published.
        unsafe { write_entry(self.ring, idx, addr, self.buf_size, bid) };
        // SAFETY: `ring_bids` has `entries` elements and idx ≤ mask =
        // entries - 1.
        unsafe { *self.ring_bids.get_unchecked_mut(idx as usize) = bid };
        // Only a buffer the kernel does not hold is put (taken ones, and
        // every one at registration).
        debug_assert!(usize::from(bid) < self.state.len());
        // SAFETY: `state` has `entries` elements, and every bid put is
        // below that: the registration's, and those of this ring's tokens
        // (made only by the takes, from bids they looked up in `state`) and
        // of its bundle chains (`next`, written from `ring_bids`).
        let state = unsafe { self.state.get_unchecked_mut(usize::from(bid)) };
        debug_assert!(*state & OUT != 0, "buffer {bid} put twice");
        *state &= !OUT;
        self.in_kernel += 1;
        self.local_tail = self.local_tail.wrapping_add(1);
    }

    /// Publishes the entries written so far.
    #[inline]
    fn publish(&self) {
        // SAFETY: the tail lies in the live ring mapping.
        unsafe { publish_tail(self.tail, self.local_tail) };
    }
}

/// An operation that notes the opcode and `msg_flags` of the entry it
/// prepares ([`BufRing::push_op`] refuses some receives on incremental
/// rings).
struct Observed<'a, O> {
    op: O,
    seen: &'a std::cell::Cell<(u8, u32)>,
}

impl<O: uring_ops::Prepare> uring_ops::Prepare for Observed<'_, O> {
    const CODE: u8 = O::CODE;
    const USES_KEEP: bool = O::USES_KEEP;

    #[inline]
    fn check(&self, features: &uring_core::Features) -> uring_core::Result<()> {
        self.op.check(features)
    }

    #[inline]
    fn prepare(self, sqe: &mut uring_core::Sqe, keep: &mut uring_core::Keep) {
        self.op.prepare(sqe, keep);
        self.seen.set((sqe.opcode, sqe.op_flags()));
    }
}

/// The error for a CQE that names a buffer but cannot prove its group.
#[cold]
fn unproven(group: u16, bid: u16) -> Error {
    Error::NotOwned {
        group,
        bid,
        why: "the CQE's context does not prove which group it selected from (a layer value, or a pooled one \
              resolved without its ring's pools): its layer must vouch for it (take_selection)",
    }
}

pub(crate) fn unregister(ring: &mut Ring, group: u16) -> Result<()> {
    let reg = sys::io_uring_buf_reg { bgid: group, ..Default::default() };
    // SAFETY: UNREGISTER_PBUF_RING reads one io_uring_buf_reg.
    unsafe {
        ring.register().raw(
            "IORING_UNREGISTER_PBUF_RING",
            sys::IORING_UNREGISTER_PBUF_RING,
            (&reg as *const sys::io_uring_buf_reg).cast::<c_void>(),
            1,
        )
    }?;
    Ok(())
}

impl uring_core::HandleCqe for BufRing {
    /// A send's CQE gives its token back ([`BufEvent::Sent`],
    /// [`BufRing::handle_send`]); a receive's hands over the buffers it
    /// filled ([`BufEvent::Received`], as a [`Bundle`]: one buffer for a
    /// plain receive, several for a bundle receive, the same taking,
    /// [`BufRing::take_bundle`]), or why it cannot.
    type Event = BufEvent;

    /// `None` unless `cqe` is this ring's: the CQE of one of its sends in
    /// flight ([`BufRing::handle_send`]), one of its own requests'
    /// (incremental rings), or one that proves it selected from this group
    /// of this ring ([`Cqe::buffer_selection`]) and is newer than the CQE
    /// that last handed out its buffer; then [`BufRing::take_bundle`] (a CQE of
    /// its own that names no buffer is `None` too). Give the buffers back
    /// with [`recycle_bundle`](BufRing::recycle_bundle).
    fn handle_cqe(&mut self, _ring: &mut Ring, cqe: &Cqe<'_>) -> Option<BufEvent> {
        if let Some(sent) = self.handle_send(cqe) {
            return Some(BufEvent::Sent(sent));
        }
        let mine = if self.incremental {
            self.is_own(cqe)
        } else {
            // A copy of a CQE taken already is not this ring's any more.
            cqe.buffer_selection().is_some_and(|s| {
                s.ring_id() == self.ring_id
                    && s.group() == self.group
                    && self.state.get(usize::from(s.bid())).is_some_and(|&state| s.seq() >= state & !OUT)
            })
        };
        if !mine {
            return None;
        }
        self.take_bundle(cqe).transpose().map(BufEvent::Received)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configurations_are_checked_before_anything_is_allocated() {
        for (entries, size) in [(0, 64), (3, 64), (MAX_ENTRIES * 2, 64), (8, 0)] {
            assert!(BufRingConfig::new(1, entries, size).validate().is_err(), "{entries} x {size}");
        }
        assert!(BufRingConfig::new(1, MAX_ENTRIES, 16).validate().is_ok());
        assert_eq!(BufRingConfig::new(1, 8, 4096).data_bytes(), 32768);
    }
}
