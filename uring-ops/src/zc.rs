//! The zero-copy send tracker: [`ZcTracker`].
//!
//! A zero-copy send ([`SendZc`], [`SendMsgZc`](crate::net::SendMsgZc))
//! completes in two steps, both CQEs carrying the submission's
//! `user_data`:
//!
//! 1. the **result**: bytes sent or `-errno`, with `IORING_CQE_F_MORE` when
//!    a notification follows (it does for every send the kernel prepared,
//!    failed ones included);
//! 2. the **notification** (`IORING_CQE_F_NOTIF`): the kernel no longer
//!    reads the buffer. With `IORING_SEND_ZC_REPORT_USAGE` its result has
//!    `IORING_NOTIF_USAGE_ZC_COPIED` set when the data was copied after all
//!    (loopback, devices without scatter-gather), and when nothing went out
//!    zero-copy (a failed send).
//!
//! Until the notification the buffer belongs to the kernel. [`ZcTracker`]
//! makes that ownership literal: [`send`](ZcTracker::send) takes the
//! payload (`Vec<u8>`, `Box<[u8]>`, `Arc<[u8]>`, … any [`ZcPayload`]) and
//! hands it back in the [`ZcEvent::Released`] event of its notification,
//! which makes zero-copy sending a safe call. Callers who manage buffers
//! themselves use [`send_raw`](ZcTracker::send_raw) (`unsafe`) with the
//! same events, or just [`classify`] each CQE.
//!
//! A tracker dropped while sends are in flight **leaks** their payloads on
//! purpose: the kernel may still read them, and nothing will say when it
//! stops.
//!
//! # Which CQEs release a payload
//!
//! Only the send's own, proven by provenance rather than by `user_data`
//! alone:
//!
//! - every send gets a `user_data` no other send of the process ever had
//!   (a [`Layer::ZeroCopySend`] value, which safe code cannot make the
//!   kernel post, and a 53-bit process-wide send number that is
//!   never reused: the tracker refuses to send once it would wrap);
//! - the CQE must come from the ring the send was queued on
//!   ([`Cqe::ring_id`]) and must have been reaped after the send was queued
//!   ([`Cqe::seq`] at least [`Ring::cq_position`] at that moment), so a
//!   saved [`CqeSlot`](uring_core::CqeSlot) of an earlier send, or a CQE of
//!   another ring, releases nothing;
//! - each send accepts one result and one notification, at most once.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use uring_core::{Cqe, Error, Layer, LayerData, Result, Ring, SqeContext, sys};

use crate::net::SendZc;
use crate::op::Target;

/// A payload a [`ZcTracker`] can own while the kernel reads it.
///
/// # Safety
///
/// [`bytes`](Self::bytes) must return the same address and length every
/// time, for as long as the value lives, **even after the value is
/// moved** (the bytes are on the heap, or static), and the bytes must not
/// change while the value lives unless through `&mut self` (no interior
/// mutability): the kernel reads them from another context while the
/// tracker holds the value.
pub unsafe trait ZcPayload: std::marker::Send + 'static {
    /// The bytes to send.
    fn bytes(&self) -> &[u8];
}

// SAFETY: a Vec's bytes are on the heap and move with the pointer, not the
// Vec; only `&mut Vec` changes them, and the tracker never hands one out.
unsafe impl ZcPayload for Vec<u8> {
    fn bytes(&self) -> &[u8] {
        self
    }
}

// SAFETY: as for Vec: heap bytes, mutable only through `&mut`.
unsafe impl ZcPayload for Box<[u8]> {
    fn bytes(&self) -> &[u8] {
        self
    }
}

// SAFETY: shared heap bytes that no clone can mutate (`Arc<[u8]>` has no
// `&mut` access while other clones live, and the tracker holds one).
unsafe impl ZcPayload for Arc<[u8]> {
    fn bytes(&self) -> &[u8] {
        self
    }
}

// SAFETY: as for `Arc<[u8]>`: the Vec inside is reachable only shared.
unsafe impl ZcPayload for Arc<Vec<u8>> {
    fn bytes(&self) -> &[u8] {
        self
    }
}

// SAFETY: static bytes never move and `&'static [u8]` cannot mutate them.
unsafe impl ZcPayload for &'static [u8] {
    fn bytes(&self) -> &[u8] {
        self
    }
}

/// The identity of one tracked send: the `user_data` both of its CQEs
/// carry (a [`LayerData`] value of [`Layer::ZeroCopySend`] whose payload
/// is a process-wide send number that is never reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ZcId(u64);

impl ZcId {
    /// The `user_data` value.
    #[inline]
    pub const fn user_data(self) -> u64 {
        self.0
    }
}

/// What one CQE of a zero-copy send is, from its flags alone: the
/// low-level half of the tracker, for callers who route CQEs and manage
/// buffers themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZcCqe {
    /// The result: bytes sent (`res >= 0`) or `-errno`.
    Result {
        /// The raw result.
        res: i32,
        /// `IORING_CQE_F_MORE`: a notification follows; the buffer is still
        /// the kernel's. Without it, the send is over and so is the
        /// kernel's use of the buffer.
        notification_follows: bool,
    },
    /// The notification (`IORING_CQE_F_NOTIF`): the buffer is free.
    Notification {
        /// `IORING_NOTIF_USAGE_ZC_COPIED` in the result: the data was
        /// copied, or nothing was sent zero-copy (the kernel sets it when no
        /// zero-copy transmission happened, failed sends included).
        /// Meaningful only if the send asked for
        /// `IORING_SEND_ZC_REPORT_USAGE`; otherwise always `false`.
        copied: bool,
    },
}

/// Classifies a CQE of a zero-copy send (`SEND_ZC` or `SENDMSG_ZC`). The
/// caller knows it is one (by its `user_data`).
#[inline]
pub fn classify(cqe: &Cqe<'_>) -> ZcCqe {
    if cqe.notif() {
        ZcCqe::Notification { copied: (cqe.res() as u32) & sys::IORING_NOTIF_USAGE_ZC_COPIED != 0 }
    } else {
        ZcCqe::Result { res: cqe.res(), notification_follows: cqe.more() }
    }
}

/// What a CQE meant for a tracked send ([`ZcTracker::handle_cqe`]). Every
/// send yields either `Sent` or `Failed` and then `Released`, or, when the
/// kernel failed it before it took the buffer, a single `Finished`.
#[derive(Debug)]
pub enum ZcEvent<P> {
    /// The result CQE: `bytes` were sent. The notification follows.
    Sent {
        /// The send.
        id: ZcId,
        /// Bytes sent (a stream socket may send fewer than asked).
        bytes: u32,
    },
    /// The result CQE: the send failed with `errno`. The notification
    /// follows (the kernel prepared the send, so it posts one).
    Failed {
        /// The send.
        id: ZcId,
        /// The positive errno (`EPIPE`, `EBADF`, …).
        errno: i32,
    },
    /// The notification CQE: the kernel no longer reads the payload, which
    /// comes back (`None` for [`send_raw`](ZcTracker::send_raw) sends).
    Released {
        /// The send.
        id: ZcId,
        /// The payload, returned exactly once.
        payload: Option<P>,
        /// With usage reports ([`ZcTracker::report_usage`], the default):
        /// `Some(false)` if the data went out zero-copy, `Some(true)` if it
        /// did not: it was copied, or (a failed send) nothing went out
        /// zero-copy at all, which the kernel reports the same way.
        /// `None` without reports.
        copied: Option<bool>,
    },
    /// A result CQE without `IORING_CQE_F_MORE`: the kernel refused the
    /// send before taking the buffer (no notification will come); the
    /// payload comes back now.
    Finished {
        /// The send.
        id: ZcId,
        /// The raw result (`-errno`).
        res: i32,
        /// The payload, returned exactly once.
        payload: Option<P>,
    },
}

/// Counters of a [`ZcTracker`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ZcStats {
    /// Sends queued.
    pub submitted: u64,
    /// Result CQEs seen (`Sent`, `Failed` and `Finished`).
    pub results: u64,
    /// Of those, failures.
    pub failed: u64,
    /// Bytes reported sent.
    pub bytes: u64,
    /// Notification CQEs seen.
    pub notifications: u64,
    /// Notifications reporting a copy.
    pub copied: u64,
    /// Notifications reporting no copy.
    pub zero_copy: u64,
}

/// Options of a tracked send ([`ZcTracker::send_with`]).
#[derive(Debug, Clone, Copy, Default)]
#[must_use]
pub struct ZcOptions {
    dest: Option<SocketAddr>,
    flags: i32,
    poll_first: bool,
}

impl ZcOptions {
    /// No destination, no flags.
    #[inline]
    pub const fn new() -> Self {
        ZcOptions { dest: None, flags: 0, poll_first: false }
    }

    /// Sends to `dest` ([`SendZc::to`]).
    #[inline]
    pub const fn to(mut self, dest: SocketAddr) -> Self {
        self.dest = Some(dest);
        self
    }

    /// `MSG_*` flags ([`SendZc::flags`]).
    #[inline]
    pub const fn flags(mut self, flags: i32) -> Self {
        self.flags = flags;
        self
    }

    /// `IORING_RECVSEND_POLL_FIRST` ([`SendZc::poll_first`]).
    #[inline]
    pub const fn poll_first(mut self) -> Self {
        self.poll_first = true;
        self
    }
}

/// A send the tracker refused to queue, with the payload given back.
pub struct Rejected<P> {
    /// Why ([`Error::QueueFull`], [`Error::Unsupported`], …).
    pub error: Error,
    /// The payload, untouched.
    pub payload: P,
}

impl<P> fmt::Debug for Rejected<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rejected").field("error", &self.error).finish_non_exhaustive()
    }
}

impl<P> fmt::Display for Rejected<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "zero-copy send not queued: {}", self.error)
    }
}

impl<P> std::error::Error for Rejected<P> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl<P> From<Rejected<P>> for Error {
    fn from(r: Rejected<P>) -> Self {
        r.error
    }
}

struct Slot<P> {
    payload: Option<P>,
    usage: bool,
    result_seen: bool,
    released: bool,
    /// The ring the send was queued on ([`Ring::id`]).
    ring: u64,
    /// [`Ring::cq_position`] when the send was queued: its CQEs have a
    /// [`Cqe::seq`] at least this.
    queued_at: u64,
}

/// `user_data` of a send: a [`Layer::ZeroCopySend`] value whose payload
/// is the send number, process-wide, so no two sends (of one tracker or
/// of two) ever share a `user_data`.
const fn send_value(n: u64) -> u64 {
    match LayerData::new(Layer::ZeroCopySend, false, n) {
        Some(d) => d.raw(),
        None => unreachable!(),
    }
}

/// The last send number: 2^53 − 1 (at ten million sends a second, 28
/// years). Past it the tracker refuses to send rather than wrap.
const SEND_MAX: u64 = LayerData::PAYLOAD_MAX;

/// The next process-wide send number, or `None` once all are used. The
/// counter only grows (a `fetch_add` past [`SEND_MAX`] keeps it above), so
/// no number is handed out twice.
fn next_send_number() -> Option<u64> {
    static SENDS: AtomicU64 = AtomicU64::new(0);
    let n = SENDS.fetch_add(1, Ordering::Relaxed);
    (n <= SEND_MAX).then_some(n)
}

/// Tracks zero-copy sends through their two CQEs, owning their payloads
/// until the kernel lets go. See the [module documentation](self).
///
/// Feed it every CQE ([`handle_cqe`](Self::handle_cqe)): it answers
/// `None` for CQEs that are not its own, and a [`ZcEvent`] for its own.
///
/// Its sends carry `user_data` values of their own ([`Layer::ZeroCopySend`]
/// values, a process-wide send number never reused). Safe code cannot
/// post a CQE with such a value: every push path but the layers' own
/// refuses layer values, and so do `MsgRing` and `MsgRingFd`. A CQE releases a
/// payload only if it also comes from the send's ring and was reaped after
/// the send was queued (see the [module documentation](self)).
///
/// Dropping a tracker with sends in flight leaks their payloads (see the
/// module documentation); drain it first ([`in_flight`](Self::in_flight)
/// reaching 0).
pub struct ZcTracker<P: ZcPayload = Vec<u8>> {
    report_usage: bool,
    inflight: HashMap<u64, Slot<P>>,
    stats: ZcStats,
}

impl<P: ZcPayload> fmt::Debug for ZcTracker<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZcTracker")
            .field("in_flight", &self.inflight.len())
            .field("report_usage", &self.report_usage)
            .field("stats", &self.stats)
            .finish()
    }
}

impl<P: ZcPayload> Default for ZcTracker<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: ZcPayload> ZcTracker<P> {
    /// An empty tracker that asks for usage reports.
    pub fn new() -> Self {
        ZcTracker { report_usage: true, inflight: HashMap::new(), stats: ZcStats::default() }
    }

    /// Whether later sends ask for `IORING_SEND_ZC_REPORT_USAGE` (default
    /// on; it costs nothing measurable and says whether zero copy
    /// happened).
    pub fn report_usage(&mut self, on: bool) -> &mut Self {
        self.report_usage = on;
        self
    }

    /// Sends still waiting for a CQE (result or notification).
    pub fn in_flight(&self) -> usize {
        self.inflight.len()
    }

    /// The counters so far.
    pub fn stats(&self) -> ZcStats {
        self.stats
    }

    /// Whether `user_data` names one of this tracker's sends in flight.
    pub fn is_ours(&self, user_data: u64) -> bool {
        LayerData::payload_of(user_data, Layer::ZeroCopySend).is_some() && self.inflight.contains_key(&user_data)
    }

    /// A `user_data` no send of this process had before.
    fn next_id() -> Result<ZcId> {
        match next_send_number() {
            Some(n) => Ok(ZcId(send_value(n))),
            None => Err(Error::InvalidArgument(
                "zero-copy send numbers exhausted (2^53 sends in this process); a number is never reused".into(),
            )),
        }
    }

    /// Queues a zero-copy send of all of `payload` on `fd`, taking the
    /// payload until its notification ([`ZcEvent::Released`]).
    ///
    /// # Errors
    ///
    /// [`Rejected`] with the payload: as for
    /// [`RingOps::push_op`](crate::RingOps::push_op) (unsupported opcode, bad flags, full queue, …).
    pub fn send(&mut self, ring: &mut Ring, fd: impl Into<Target>, payload: P) -> Result<ZcId, Rejected<P>> {
        self.send_with(ring, fd, payload, ZcOptions::new())
    }

    /// As [`send`](Self::send), to `dest` (datagram sockets).
    ///
    /// # Errors
    ///
    /// As for [`send`](Self::send).
    pub fn send_to(
        &mut self,
        ring: &mut Ring,
        fd: impl Into<Target>,
        payload: P,
        dest: SocketAddr,
    ) -> Result<ZcId, Rejected<P>> {
        self.send_with(ring, fd, payload, ZcOptions::new().to(dest))
    }

    /// As [`send`](Self::send), with options.
    ///
    /// # Errors
    ///
    /// As for [`send`](Self::send).
    pub fn send_with(
        &mut self,
        ring: &mut Ring,
        fd: impl Into<Target>,
        payload: P,
        opts: ZcOptions,
    ) -> Result<ZcId, Rejected<P>> {
        let op = self.op_for(fd.into(), &payload, opts);
        let id = match Self::next_id() {
            Ok(id) => id,
            Err(error) => return Err(Rejected { error, payload }),
        };
        let (ring_id, queued_at) = (ring.id(), ring.cq_position());
        // SAFETY: the op names the payload's bytes, which stay at the same
        // address while the tracker holds the payload (the `ZcPayload`
        // contract) and unmodified (the tracker never lends it out). The
        // tracker holds it until the notification, or a result without
        // `F_MORE`, or forever if dropped first. `id` is this send's alone
        // (never issued before), and `handle_cqe` checks the CQE's ring and
        // position against the ones recorded here.
        match unsafe { crate::ring::push_layer_op(ring, SqeContext::of_user_data(id.0), op) } {
            Ok(_) => {
                self.track(id, Some(payload), op.reports_usage(), ring_id, queued_at);
                Ok(id)
            }
            Err(error) => Err(Rejected { error, payload }),
        }
    }

    /// Sends `payload` to every destination in `dests` (one zero-copy
    /// `sendto` each, on `fd`, all or nothing: the queue room is checked
    /// first). Each send holds a clone of the payload (use `Arc<[u8]>`) and
    /// returns it in its own `Released` event.
    ///
    /// # Errors
    ///
    /// [`Rejected`] with the payload: no destination, fewer free SQ
    /// entries than destinations, or as for [`send`](Self::send).
    pub fn multicast(
        &mut self,
        ring: &mut Ring,
        fd: impl Into<Target>,
        payload: P,
        dests: &[SocketAddr],
    ) -> Result<Vec<ZcId>, Rejected<P>>
    where
        P: Clone,
    {
        let fd = fd.into();
        let Some(&first) = dests.first() else {
            return Err(Rejected { error: Error::InvalidArgument("multicast to no destination".into()), payload });
        };
        let probe = self.op_for(fd, &payload, ZcOptions::new().to(first));
        if let Err(error) = crate::op::Prepare::check(&probe, ring.features()) {
            return Err(Rejected { error, payload });
        }
        let room = ring.sq_space_left() as usize;
        if room < dests.len() {
            let error = Error::InvalidArgument(format!(
                "zero-copy multicast to {} destinations needs as many free SQ entries, {room} are free",
                dests.len()
            ));
            return Err(Rejected { error, payload });
        }
        let mut ids = Vec::with_capacity(dests.len());
        for &dest in dests {
            match self.send_with(ring, fd, payload.clone(), ZcOptions::new().to(dest)) {
                Ok(id) => ids.push(id),
                // Room and support were checked: this is unreachable in
                // practice; the sends queued so far stay tracked.
                Err(r) => return Err(Rejected { error: r.error, payload }),
            }
        }
        Ok(ids)
    }

    /// Tracks a zero-copy send of caller-managed memory: the same events,
    /// with no payload in `Released`. The tracker applies its usage-report
    /// setting on top of `op`'s own.
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`](crate::RingOps::push_op).
    ///
    /// # Safety
    ///
    /// The buffer `op` names must stay valid and unmodified until this
    /// send's [`ZcEvent::Released`] (or [`ZcEvent::Finished`]) event. If
    /// the tracker is dropped before, until the ring has completed the
    /// send (in practice: forever).
    pub unsafe fn send_raw(&mut self, ring: &mut Ring, op: SendZc) -> Result<ZcId> {
        let op = if self.report_usage { op.report_usage() } else { op };
        let id = Self::next_id()?;
        let (ring_id, queued_at) = (ring.id(), ring.cq_position());
        // SAFETY: the memory is forwarded to the caller; `id` is this
        // send's alone and `handle_cqe` checks ring and position.
        unsafe { crate::ring::push_layer_op(ring, SqeContext::of_user_data(id.0), op) }?;
        self.track(id, None, op.reports_usage(), ring_id, queued_at);
        Ok(id)
    }

    fn op_for(&self, fd: Target, payload: &P, opts: ZcOptions) -> SendZc {
        let ZcOptions { dest, flags, poll_first } = opts;
        let mut op = SendZc::new(fd, payload.bytes()).flags(flags);
        if let Some(dest) = dest {
            op = op.to(dest);
        }
        if poll_first {
            op = op.poll_first();
        }
        if self.report_usage {
            op = op.report_usage();
        }
        op
    }

    fn track(&mut self, id: ZcId, payload: Option<P>, usage: bool, ring: u64, queued_at: u64) {
        let slot = Slot { payload, usage, result_seen: false, released: false, ring, queued_at };
        self.inflight.insert(id.0, slot);
        self.stats.submitted += 1;
    }

    /// Interprets one CQE: `None` if it is not one of this tracker's, else
    /// what happened to which send. A payload comes back exactly once.
    ///
    /// A CQE is this tracker's only if it carries the `user_data` of one
    /// of its sends in flight, comes from the ring that send was queued on
    /// ([`Cqe::ring_id`]), and was reaped after it was queued ([`Cqe::seq`]);
    /// each send takes one result and one notification. Anything else (a
    /// CQE of another ring, a copy of an earlier CQE presented again) is
    /// `None` and changes nothing.
    pub fn handle_cqe(&mut self, cqe: &Cqe<'_>) -> Option<ZcEvent<P>> {
        let key = cqe.user_data();
        LayerData::payload_of(key, Layer::ZeroCopySend)?;
        let id = ZcId(key);
        {
            let slot = self.inflight.get(&key)?;
            if cqe.ring_id() != slot.ring || cqe.seq() < slot.queued_at {
                return None;
            }
        }
        match classify(cqe) {
            ZcCqe::Notification { copied } => {
                let slot = self.inflight.get_mut(&key)?;
                if slot.released {
                    return None;
                }
                // The kernel posts the result first; should a notification
                // come first anyway, the slot stays until the result.
                slot.released = true;
                let payload = slot.payload.take();
                let usage = slot.usage;
                if slot.result_seen {
                    self.inflight.remove(&key);
                }
                self.stats.notifications += 1;
                let copied = usage.then_some(copied);
                match copied {
                    Some(true) => self.stats.copied += 1,
                    Some(false) => self.stats.zero_copy += 1,
                    None => {}
                }
                Some(ZcEvent::Released { id, payload, copied })
            }
            ZcCqe::Result { res, notification_follows } => {
                let slot = self.inflight.get_mut(&key)?;
                if slot.result_seen {
                    // A second result for one send: not the kernel's doing.
                    return None;
                }
                slot.result_seen = true;
                self.stats.results += 1;
                if res < 0 {
                    self.stats.failed += 1;
                } else {
                    self.stats.bytes += res as u64;
                }
                if slot.released {
                    self.inflight.remove(&key);
                } else if !notification_follows {
                    let slot = self.inflight.remove(&key)?;
                    return Some(ZcEvent::Finished { id, res, payload: slot.payload });
                }
                Some(if res < 0 {
                    ZcEvent::Failed { id, errno: -res }
                } else {
                    ZcEvent::Sent { id, bytes: res as u32 }
                })
            }
        }
    }
}

impl<P: ZcPayload> Drop for ZcTracker<P> {
    fn drop(&mut self) {
        // The kernel may still read these payloads: leak them rather than
        // free memory under it.
        for (_, slot) in self.inflight.drain() {
            std::mem::forget(slot.payload);
        }
    }
}

impl<P: ZcPayload> uring_core::HandleCqe for ZcTracker<P> {
    /// A send's result or its notification.
    type Event = ZcEvent<P>;

    /// [`ZcTracker::handle_cqe`], for routers that offer each CQE with its
    /// ring (the inherent method also works while the CQE still borrows
    /// the ring).
    #[inline]
    fn handle_cqe(&mut self, _ring: &mut Ring, cqe: &Cqe<'_>) -> Option<ZcEvent<P>> {
        ZcTracker::handle_cqe(self, cqe)
    }
}
