//! Bundle send (`IORING_RECVSEND_BUNDLE` on `IORING_OP_SEND`) from a
//! provided buffer ring the caller fills: [`SendRing`].
//!
//! A receive ring starts full (every buffer is the kernel's, to write
//! into); a send ring starts **empty**. Its buffers move through three
//! hands:
//!
//! 1. **free**, in the ring's pool: [`acquire`](SendRing::acquire) takes
//!    one out as a [`SendBuf`] token (not `Clone`);
//! 2. **the caller's**: the bytes are writable through
//!    [`buf_mut`](SendRing::buf_mut); [`queue`](SendRing::queue) (or
//!    [`queue_range`](SendRing::queue_range)) consumes the token and
//!    publishes a ring entry with the real length (one release store of
//!    the tail), or [`release`](SendRing::recycle) puts it back unused;
//! 3. **queued**, the kernel's: one [`send_bundle`](SendRing::send_bundle)
//!    sends as many queued buffers, in queue order, as the socket takes in
//!    one go, and its CQE names the first buffer (`IORING_CQE_F_BUFFER`)
//!    and the bytes sent. [`complete`](SendRing::complete) returns exactly
//!    the buffers that CQE consumed to the free pool, once.
//!
//! ```
//! use std::io::Read;
//! use std::net::{TcpListener, TcpStream};
//! use std::os::fd::AsRawFd;
//! use std::time::Duration;
//! use uring_buffers::{BufRingConfig, SendRing};
//! use uring_core::{CqeSlot, FeatureFlags, Options, Ring, SqeContext};
//!
//! let mut ring = Ring::new(Options::default())?;
//! ring.start()?;
//! # if !ring.features().has(FeatureFlags::RECVSEND_BUNDLE) { return Ok(()); }
//! let listener = TcpListener::bind("127.0.0.1:0")?;
//! let tx = TcpStream::connect(listener.local_addr()?)?;
//! let (mut rx, _) = listener.accept()?;
//! let mut sr = SendRing::register(&mut ring, BufRingConfig::new(7, 8, 4096))?;
//! for part in [&b"one "[..], b"bundle, ", b"three buffers"] {
//!     let mut buf = sr.acquire().expect("a free buffer");
//!     sr.buf_mut(&mut buf)[..part.len()].copy_from_slice(part);
//!     sr.queue(buf, part.len())?;
//! }
//! sr.send_bundle(&mut ring, SqeContext::for_fd(tx.as_raw_fd()), tx.as_raw_fd())?;
//! let mut slots = [CqeSlot::EMPTY; 4];
//! ring.wait_for(&mut slots, 1, Some(Duration::from_secs(5)))?;
//! let sent = sr.complete(&slots[0].cqe())?;
//! assert_eq!((sent.res, sent.freed, sr.free()), (25, 3, 8));
//! let mut got = [0; 25];
//! rx.read_exact(&mut got)?;
//! assert_eq!(&got, b"one bundle, three buffers");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # A bundle cut short
//!
//! The kernel counts a buffer it started sending as consumed
//! (`io_bundle_nbufs` in `io_uring/net.c` rounds up), moves the ring's
//! head past it, and does not send the rest of it later. A bundle send
//! sets `MSG_WAITALL`, so on a stream socket the kernel retries short
//! sends itself; a bundle is cut short only by an error or a signal after
//! some bytes went out. When the last buffer of a CQE was sent only in
//! part, [`complete`](SendRing::complete) does **not** put it in the free
//! pool: it hands it back as [`Sent::partial`], a token with the number of
//! its bytes that went out, so the caller can queue the unsent tail again
//! ([`queue_range`](SendRing::queue_range)) or release it.
//!
//! # One send at a time
//!
//! The buffers a CQE consumed are located from its first buffer id and
//! its byte count, walking the entries in the order they were queued.
//! That needs the ring's CQEs in the order the kernel consumed the
//! entries: [`send_bundle`](SendRing::send_bundle) refuses a second send
//! while one is in flight (until a CQE without `IORING_CQE_F_MORE`).
//!
//! The memory (ring and buffers) is [attached](uring_core::Ring::attach)
//! to the io_uring ring, like [`BufRing`](crate::BufRing)'s.

use std::collections::VecDeque;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};

use uring_core::{Cqe, Ring, SqeContext, sys};
use uring_ops::Target;
use uring_ops::net::SendBundle;

use crate::bufring::{BufRingConfig, MAX_ENTRIES, Memory, publish_tail, register_ring, unregister, write_entry};
use crate::error::{Error, Result};

static NEXT_OWNER: AtomicU64 = AtomicU64::new(1);

/// A buffer of a [`SendRing`] in the caller's hands. Not `Clone`:
/// [`SendRing::queue`] and [`SendRing::recycle`] consume it.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a buffer neither queued nor released is lost to the ring"]
pub struct SendBuf {
    owner: u64,
    bid: u16,
}

impl SendBuf {
    /// The buffer id.
    pub fn bid(&self) -> u16 {
        self.bid
    }
}

/// A buffer a bundle sent only in part ([`Sent::partial`]).
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a buffer neither queued nor released is lost to the ring"]
pub struct Partial {
    /// The buffer, back in the caller's hands.
    pub buf: SendBuf,
    /// Where in the buffer the bytes that went out started.
    pub start: usize,
    /// How many of its queued bytes went out.
    pub sent: usize,
    /// How many bytes were queued.
    pub queued: usize,
}

impl Partial {
    /// The range of the buffer that did not go out.
    pub fn unsent(&self) -> Range<usize> {
        self.start + self.sent..self.start + self.queued
    }
}

/// What one bundle-send CQE did ([`SendRing::complete`]).
#[derive(Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Sent {
    /// The CQE's result: bytes sent, or `-errno`.
    pub res: i32,
    /// The buffer id the CQE named (the first buffer it consumed).
    pub first: Option<u16>,
    /// Buffers returned to the free pool.
    pub freed: u32,
    /// The last buffer, when it went out only in part (see the
    /// [module documentation](self#a-bundle-cut-short)).
    pub partial: Option<Partial>,
    /// `IORING_CQE_F_MORE`: the send continues with more CQEs.
    pub more: bool,
}

/// A queued entry: buffer, offset of the bytes in it, length.
#[derive(Debug, Clone, Copy)]
struct Entry {
    bid: u16,
    start: u32,
    len: u32,
}

/// A send-side provided buffer ring; see the [module documentation](self).
pub struct SendRing {
    group: u16,
    entries: u32,
    mask: u32,
    buf_size: u32,
    ring: *mut sys::io_uring_buf,
    tail: *const AtomicU16,
    data: *mut u8,
    local_tail: u16,
    /// Published entries not yet consumed, in ring order.
    queued: VecDeque<Entry>,
    free: Vec<u16>,
    in_flight: bool,
    /// The bundle send in flight: its `user_data` as stamped, and the
    /// lowest [`Cqe::seq`] a CQE of it may have (one past the last
    /// accepted, so none is accounted twice).
    send: (u64, u64),
    /// The io_uring ring the group is registered with.
    ring_id: u64,
    owner: u64,
    _mem: Arc<Memory>,
}

// SAFETY: the raw pointers point into `_mem`, which the `SendRing` owns
// (with the ring); nothing in it is tied to a thread.
unsafe impl Send for SendRing {}

impl fmt::Debug for SendRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendRing")
            .field("group", &self.group)
            .field("entries", &self.entries)
            .field("buf_size", &self.buf_size)
            .field("free", &self.free.len())
            .field("queued", &self.queued.len())
            .field("in_flight", &self.in_flight)
            .finish_non_exhaustive()
    }
}

impl SendRing {
    /// Allocates `cfg.entries()` buffers of `cfg.buf_size()` bytes and an
    /// empty ring, and registers it as group `cfg.group()`
    /// (`IORING_REGISTER_PBUF_RING`). Every buffer starts free. Honours
    /// [`kernel_mapped`](BufRingConfig::kernel_mapped) and
    /// [`huge_pages`](BufRingConfig::huge_pages).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a bad configuration or an
    /// incremental one (sends do not consume incrementally), before any
    /// syscall; [`Error::Alloc`]; [`Error::Core`] when the ring is stopped
    /// or the kernel refuses (`EEXIST`: the group is taken).
    pub fn register(ring: &mut Ring, cfg: BufRingConfig) -> Result<Self> {
        cfg.validate()?;
        if cfg.is_incremental() {
            return Err(Error::invalid(format!(
                "send ring of group {}: incremental rings are for receives",
                cfg.group()
            )));
        }
        // The accounting holds only if this ring's sends are the only
        // requests selecting from the group: reserve it, so the typed push
        // paths refuse any other.
        ring.reserve_buffer_group(cfg.group())?;
        let reg = match register_ring(ring, &cfg, "send buffers") {
            Ok(reg) => reg,
            Err(e) => {
                // SAFETY: reserved just above by this call, and nothing was
                // registered, so nothing depends on it.
                unsafe { ring.unreserve_buffer_group(cfg.group()) };
                return Err(e);
            }
        };
        let n = cfg.entries();
        Ok(SendRing {
            group: cfg.group(),
            entries: n,
            mask: n - 1,
            buf_size: cfg.buf_size(),
            ring: reg.ring,
            tail: reg.tail,
            data: reg.data,
            local_tail: 0,
            queued: VecDeque::with_capacity(n as usize),
            // Pop order 0, 1, 2, …: the first buffers acquired are the
            // lowest ids.
            free: (0..n as u16).rev().collect(),
            in_flight: false,
            send: (0, 0),
            ring_id: ring.id(),
            owner: NEXT_OWNER.fetch_add(1, Ordering::Relaxed),
            _mem: reg.mem,
        })
    }

    /// The group id.
    pub fn group(&self) -> u16 {
        self.group
    }

    /// Bytes per buffer.
    pub fn buf_size(&self) -> usize {
        self.buf_size as usize
    }

    /// Buffers in the free pool.
    pub fn free(&self) -> usize {
        self.free.len()
    }

    /// Buffers queued for sending and not yet consumed by a CQE.
    pub fn queued(&self) -> usize {
        self.queued.len()
    }

    /// Bytes queued for sending.
    pub fn queued_bytes(&self) -> usize {
        self.queued.iter().map(|e| e.len as usize).sum()
    }

    /// Whether a bundle send is in flight.
    pub fn in_flight(&self) -> bool {
        self.in_flight
    }

    /// Takes a buffer from the free pool, `None` when it is empty.
    pub fn acquire(&mut self) -> Option<SendBuf> {
        let bid = self.free.pop()?;
        Some(SendBuf { owner: self.owner, bid })
    }

    fn check_owner(&self, buf: &SendBuf) -> Result<()> {
        if buf.owner != self.owner {
            return Err(Error::NotOwned { group: self.group, bid: buf.bid, why: "belongs to another SendRing" });
        }
        Ok(())
    }

    /// The whole buffer, writable: fill it, then [`queue`](Self::queue) it.
    ///
    /// # Panics
    ///
    /// If `buf` came from another `SendRing` (a programming error, like
    /// indexing out of bounds).
    pub fn buf_mut(&mut self, buf: &mut SendBuf) -> &mut [u8] {
        assert_eq!(buf.owner, self.owner, "SendBuf {} used with another SendRing", buf.bid);
        // SAFETY: the buffer is the caller's (the token exists, so it is
        // neither queued nor free), the kernel does not read it; `&mut
        // self` and `&mut SendBuf` make the borrow unique; bid < entries.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.data.add(usize::from(buf.bid) * self.buf_size as usize),
                self.buf_size as usize,
            )
        }
    }

    /// The whole buffer (to read back the unsent tail of a
    /// [`Partial`], say).
    ///
    /// # Panics
    ///
    /// As for [`buf_mut`](Self::buf_mut).
    pub fn bytes(&self, buf: &SendBuf) -> &[u8] {
        assert_eq!(buf.owner, self.owner, "SendBuf {} used with another SendRing", buf.bid);
        // SAFETY: as in `buf_mut`; a shared borrow of bytes nothing writes.
        unsafe {
            std::slice::from_raw_parts(
                self.data.add(usize::from(buf.bid) * self.buf_size as usize),
                self.buf_size as usize,
            )
        }
    }

    /// Queues the first `len` bytes of the buffer for sending: publishes a
    /// ring entry of that length.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a length of 0 or above the buffer
    /// size; [`Error::NotOwned`] for another ring's token. The token is
    /// consumed either way; on error the buffer goes back to the free pool
    /// (another ring's token is left alone).
    pub fn queue(&mut self, buf: SendBuf, len: usize) -> Result<()> {
        self.queue_range(buf, 0..len)
    }

    /// Queues `range` of the buffer (the unsent tail of a [`Partial`],
    /// say).
    ///
    /// # Errors
    ///
    /// As for [`queue`](Self::queue), for an empty range or one outside the
    /// buffer.
    pub fn queue_range(&mut self, buf: SendBuf, range: Range<usize>) -> Result<()> {
        self.check_owner(&buf)?;
        if range.start >= range.end || range.end > self.buf_size as usize {
            self.release_bid(buf.bid);
            return Err(Error::invalid(format!(
                "queueing bytes {}..{} of a {}-byte send buffer: need a non-empty range inside it",
                range.start, range.end, self.buf_size
            )));
        }
        let entry = Entry { bid: buf.bid, start: range.start as u32, len: range.len() as u32 };
        self.put(entry);
        self.publish();
        Ok(())
    }

    /// Puts an unused buffer back in the free pool.
    ///
    /// # Errors
    ///
    /// [`Error::NotOwned`] for another ring's token.
    pub fn recycle(&mut self, buf: SendBuf) -> Result<()> {
        self.check_owner(&buf)?;
        self.release_bid(buf.bid);
        Ok(())
    }

    fn release_bid(&mut self, bid: u16) {
        self.free.push(bid);
    }

    /// Writes `e` into the next ring entry (not yet published).
    fn put(&mut self, e: Entry) {
        let idx = u32::from(self.local_tail) & self.mask;
        // SAFETY: bid < entries and start + len ≤ buf_size (checked by the
        // callers), so the address is inside the data region.
        let addr = unsafe { self.data.add(usize::from(e.bid) * self.buf_size as usize + e.start as usize) } as u64;
        // SAFETY: idx < entries; the entry at our tail is not visible to
        // the kernel until the tail is published (and the kernel has
        // consumed whatever was there before: at most `entries` are queued,
        // one per buffer).
        unsafe { write_entry(self.ring, idx, addr, e.len, e.bid) };
        self.queued.push_back(e);
        self.local_tail = self.local_tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: the tail lies in the live ring mapping.
        unsafe { publish_tail(self.tail, self.local_tail) };
    }

    /// Queues one bundle send on socket `fd` (`IORING_OP_SEND`,
    /// `IOSQE_BUFFER_SELECT`, `IORING_RECVSEND_BUNDLE`), stamped with
    /// `ctx`. Hand its CQEs to [`complete`](Self::complete).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when nothing is queued or a bundle send
    /// is in flight already; [`Error::Core`]: `Unsupported` without
    /// `IORING_FEAT_RECVSEND_BUNDLE` (6.10), a full queue, a stopped ring.
    pub fn send_bundle(&mut self, ring: &mut Ring, ctx: SqeContext, fd: impl Into<Target>) -> Result<SqeContext> {
        if self.in_flight {
            return Err(Error::invalid(format!(
                "group {}: a bundle send is in flight already (one at a time: see SendRing)",
                self.group
            )));
        }
        if self.queued.is_empty() {
            return Err(Error::invalid(format!("group {}: nothing queued to send", self.group)));
        }
        if ring.id() != self.ring_id {
            return Err(Error::invalid(format!("group {}: this SendRing is registered with another ring", self.group)));
        }
        let pos = ring.cq_position();
        // SAFETY: `SendBundle` names no caller memory (the kernel reads the
        // queued buffers of this group, which this ring owns), and this
        // SendRing reserved the group it selects from.
        let (stamped, _) = unsafe { uring_ops::push_group_owner_op(ring, ctx, SendBundle::new(fd, self.group)) }?;
        self.in_flight = true;
        self.send = (stamped.raw(), pos);
        Ok(stamped)
    }

    /// Accounts for one CQE of this ring's bundle send: returns the buffers
    /// it consumed to the free pool, exactly once, and hands back a buffer
    /// the kernel sent only in part.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when no bundle send is in flight (a CQE
    /// seen twice); [`Error::NotOwned`] when the buffer id it names is not
    /// queued, or the byte count exceeds what was queued. The send counts
    /// as finished after an error unless the CQE has `IORING_CQE_F_MORE`.
    pub fn complete(&mut self, cqe: &Cqe<'_>) -> Result<Sent> {
        let (user_data, after) = self.send;
        if !self.in_flight || cqe.ring_id() != self.ring_id || cqe.user_data() != user_data || cqe.seq() < after {
            return Err(Error::invalid(format!(
                "group {}: this CQE is not one of the bundle send in flight (another ring's, another request's, or \
                 one presented twice)",
                self.group
            )));
        }
        self.send.1 = cqe.seq() + 1;
        // SAFETY: the CQE was reaped by this group's ring, carries the
        // user_data the send in flight was stamped with, and is newer than
        // the send's submission and every CQE of it accounted before.
        unsafe { self.complete_raw(cqe.res(), cqe.buffer_id(), cqe.more()) }
    }

    /// As [`complete`](Self::complete), from a CQE's result, buffer id and
    /// `IORING_CQE_F_MORE` flag.
    ///
    /// # Errors
    ///
    /// As for [`complete`](Self::complete).
    ///
    /// # Safety
    ///
    /// `res`, `bid` and `more` must come from one CQE of the bundle send
    /// in flight ([`send_bundle`](Self::send_bundle)), reaped from this
    /// group's ring and presented once: anything else returns buffers the
    /// kernel may still be sending to the free pool, where
    /// [`buf_mut`](Self::buf_mut) lets the caller write them.
    pub unsafe fn complete_raw(&mut self, res: i32, bid: Option<u16>, more: bool) -> Result<Sent> {
        if !self.in_flight {
            return Err(Error::invalid(format!("group {}: no bundle send is in flight", self.group)));
        }
        self.in_flight = more;
        let mut sent = Sent { res, first: bid, freed: 0, partial: None, more };
        let Some(bid) = bid else { return Ok(sent) };
        let Ok(bytes) = usize::try_from(res) else { return Ok(sent) };
        // Entries before `bid` were consumed by earlier rounds of this send
        // that posted no CQE of their own (a retried short send commits
        // them): they went out whole.
        let Some(pos) = self.queued.iter().position(|e| e.bid == bid) else {
            return Err(Error::NotOwned { group: self.group, bid, why: "not queued (a CQE seen twice?)" });
        };
        let skipped: usize = self.queued.iter().take(pos).map(|e| e.len as usize).sum();
        let mut left = bytes.saturating_sub(skipped);
        let mut count = pos;
        let mut used_of_last = 0;
        for e in self.queued.iter().skip(pos) {
            if left == 0 {
                break;
            }
            used_of_last = left.min(e.len as usize);
            left -= used_of_last;
            count += 1;
        }
        if left > 0 {
            return Err(Error::NotOwned {
                group: self.group,
                bid,
                why: "the CQE reports more bytes than were queued from this buffer on",
            });
        }
        for i in 0..count {
            let e = self.queued.pop_front().expect("counted above");
            if i + 1 == count && i >= pos && used_of_last < e.len as usize {
                // Sent in part: back to the caller, not the pool.
                sent.partial = Some(Partial {
                    buf: SendBuf { owner: self.owner, bid: e.bid },
                    start: e.start as usize,
                    sent: used_of_last,
                    queued: e.len as usize,
                });
            } else {
                self.release_bid(e.bid);
                sent.freed += 1;
            }
        }
        Ok(sent)
    }

    /// Unregisters the group (`IORING_UNREGISTER_PBUF_RING`). The memory
    /// stays attached to `ring` until it closes.
    ///
    /// # Errors
    ///
    /// [`Error::Core`] when the kernel refuses.
    pub fn unregister(self, ring: &mut Ring) -> Result<()> {
        if ring.id() != self.ring_id {
            return Err(Error::invalid(format!("group {}: this SendRing is registered with another ring", self.group)));
        }
        unregister(ring, self.group)?;
        // SAFETY: this SendRing reserved the group; it is unregistered now,
        // so no request can select from it any more.
        unsafe { ring.unreserve_buffer_group(self.group) };
        Ok(())
    }
}

const _: () = assert!(MAX_ENTRIES <= 1 << 16, "buffer ids are 16 bits");

impl uring_core::HandleCqe for SendRing {
    /// What [`SendRing::complete`] says of the bundle send's CQE.
    type Event = Result<Sent>;

    /// `None` unless `cqe` carries the `user_data` of the bundle send in
    /// flight and comes from this ring; then [`SendRing::complete`].
    fn handle_cqe(&mut self, _ring: &mut Ring, cqe: &Cqe<'_>) -> Option<Result<Sent>> {
        let (user_data, _) = self.send;
        (self.in_flight && cqe.ring_id() == self.ring_id && cqe.user_data() == user_data).then(|| self.complete(cqe))
    }
}
