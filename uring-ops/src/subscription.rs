//! Multishot subscriptions: route a multishot operation's CQEs to a
//! handler, end the stream exactly once, resubscribe.
//!
//! A multishot operation (accept, receive, read, poll) answers one SQE with
//! a stream of CQEs: each carries `IORING_CQE_F_MORE` while the operation
//! stays armed, and the one without it ends the stream. A [`Subscription`]
//! is returned by each multishot submission ([`Subscribe::subscribe`] and
//! the named methods of [`Subscribe`]); the caller keeps its own reap loop
//! and offers every CQE to [`Subscription::handle_cqe`] (the [`HandleCqe`]
//! trait), which returns whether the CQE was the subscription's. Its own
//! CQEs go to a [`MultishotHandler`]:
//!
//! - [`on_step`](MultishotHandler::on_step) sees **every** CQE of the
//!   stream, the final one included (a final CQE can still carry a result:
//!   an accepted descriptor, received bytes, a buffer id that must be
//!   recycled). It returns [`MultishotAction::Continue`] or
//!   [`MultishotAction::Stop`]. A stop makes the subscription queue an
//!   `IORING_OP_ASYNC_CANCEL` for its own `user_data`; the CQEs already on
//!   their way still reach `on_step`, with
//!   [`MultishotStep::stopping`] set and their action ignored, until the
//!   final one.
//! - [`on_stop`](MultishotHandler::on_stop) runs exactly once, right after
//!   the final CQE's `on_step`, with the [`MultishotEnd`]: the kernel's
//!   `-ECANCELED` ([`Cancelled`](MultishotEnd::Cancelled)), out of
//!   provided buffers ([`NoBuffers`](MultishotEnd::NoBuffers): the data is
//!   still in the socket; recycle buffers and
//!   [`resubscribe`](Subscription::resubscribe)), another errno
//!   ([`Failed`](MultishotEnd::Failed)), or the kernel ending the stream
//!   on its own with a non-negative result
//!   ([`Finished`](MultishotEnd::Finished): end of stream on a receive,
//!   a full completion queue). No CQE reaches the handler after `on_stop`.
//!
//! The handler is a type implementing [`MultishotHandler`], or closures
//! through the [`MultishotSubscriber`] builder.
//!
//! ```no_run
//! use std::os::fd::AsRawFd;
//! use uring_core::{CqeSlot, HandleCqe, Options, Ring};
//! use uring_ops::subscription::{MultishotAction, MultishotSubscriber, Subscribe};
//!
//! let mut ring = Ring::new(Options::default())?;
//! ring.start()?;
//! let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
//! let handler = MultishotSubscriber::new()
//!     .on_step(|step| {
//!         match step.result() {
//!             Ok(fd) => println!("accepted fd {fd}"),
//!             Err(e) => println!("accept failed: {e}"),
//!         }
//!         MultishotAction::Continue
//!     })
//!     .on_stop(|end| println!("accept stream ended: {end:?}"));
//! let mut sub = ring.subscribe_accept(listener.as_raw_fd(), handler)?;
//! let mut slots = [CqeSlot::EMPTY; 32];
//! while !sub.is_finished() {
//!     let n = ring.wait_for(&mut slots, 1, None)?.len();
//!     for slot in &slots[..n] {
//!         if sub.handle_cqe(&mut ring, &slot.cqe()).is_none() {
//!             // someone else's completion
//!         }
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # The `user_data` token scheme
//!
//! A subscription owns the identity of its operation: it submits it with
//! a `user_data` token of its own instead of a caller's [`SqeContext`]
//! (keep per-stream state in the handler instead). It is a
//! [`Layer::Subscription`] value ([`LayerData`]), which no safe push
//! accepts from anyone else: the layer flag is clear for the operation's
//! CQEs and set for the subscription's own cancel, and the payload is the
//! subscription id, 53 bits from a process-wide counter, never reused.
//!
//! [`subscription_id`] decodes a `user_data` back to its id, so a loop
//! with many subscriptions can route with a map instead of asking each
//! one.
//!
//! # Threading and ownership
//!
//! The subscription belongs to the ring it was submitted on (it checks the
//! ring's identity): call [`handle_cqe`](HandleCqe::handle_cqe),
//! [`cancel`](Subscription::cancel) and
//! [`unsubscribe`](Subscription::unsubscribe) from the loop that owns that
//! [`Ring`]. Because the reaped [`Reaped`](uring_core::Reaped) borrows the
//! ring, route copied [`CqeSlot`](uring_core::CqeSlot)s, as in the example
//! above. Dropping a subscription whose stream is still running leaves the
//! operation armed in the kernel: cancel it and reap until
//! [`is_finished`](Subscription::is_finished) first.

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};

use uring_core::{
    BufferSelection, Cqe, CqeFlags, Error, HandleCqe, Keep, Layer, LayerData, Result, Ring, Sqe, SqeContext, sys,
};

use crate::multishot::{AcceptMulti, ReadMulti, RecvMulti};
use crate::op::{Prepare, SafeOp, Target};

const ID_MAX: u64 = LayerData::PAYLOAD_MAX;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn next_id() -> u64 {
    // Relaxed: only uniqueness matters. 2^53 ids outlast any process.
    NEXT_ID.fetch_add(1, Ordering::Relaxed) & ID_MAX
}

/// The operation's `user_data` (layer flag clear).
const fn op_token(id: u64) -> SqeContext {
    layer_value(id, false)
}

/// The subscription's own cancel's `user_data` (layer flag set).
const fn cancel_token(id: u64) -> SqeContext {
    layer_value(id, true)
}

const fn layer_value(id: u64, cancel: bool) -> SqeContext {
    match LayerData::new(Layer::Subscription, cancel, id & ID_MAX) {
        Some(d) => d.context(),
        None => unreachable!(),
    }
}

/// The subscription id a `user_data` belongs to (the operation's CQEs and
/// the subscription's own cancel CQE alike), or `None` if it is not a
/// subscription's ([`Layer::Subscription`]).
#[inline]
pub const fn subscription_id(user_data: u64) -> Option<u64> {
    LayerData::payload_of(user_data, Layer::Subscription)
}

/// What [`MultishotHandler::on_step`] wants next.
#[doc(alias = "MultishotContinue")]
#[doc(alias = "MultishotStop")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MultishotAction {
    /// Keep the operation armed.
    #[default]
    Continue,
    /// Cancel it: the subscription queues an `IORING_OP_ASYNC_CANCEL` for
    /// its own `user_data`; the stream then ends with `-ECANCELED` (or on
    /// its own, if it was ending anyway).
    Stop,
}

/// One CQE of a multishot stream, as [`MultishotHandler::on_step`] sees it
/// (a copy: it outlives the reap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MultishotStep {
    res: i32,
    flags: u32,
    stopping: bool,
    selection: Option<BufferSelection>,
}

impl MultishotStep {
    /// The provided buffer this step hands over, proven: the subscription
    /// queued the operation under its own reserved identity and knows the
    /// group it selects from, and the CQE came from its ring, newer than
    /// every earlier one of the stream. Hand it to the buffer ring
    /// (`uring_buffers::BufRing::take_selection`) to read the buffer.
    #[inline]
    pub const fn buffer_selection(&self) -> Option<BufferSelection> {
        self.selection
    }

    /// The raw result: a descriptor, slot or byte count when `>= 0`,
    /// `-errno` when negative.
    #[inline]
    pub const fn res(&self) -> i32 {
        self.res
    }

    /// The CQE's flags (the buffer id bits included, as unknown bits).
    #[inline]
    pub const fn flags(&self) -> CqeFlags {
        CqeFlags::from_bits_retain(self.flags)
    }

    /// `IORING_CQE_F_MORE`: more CQEs follow.
    #[inline]
    pub const fn more(&self) -> bool {
        self.flags & sys::IORING_CQE_F_MORE != 0
    }

    /// This is the stream's last CQE; [`MultishotHandler::on_stop`] follows.
    #[inline]
    pub const fn is_final(&self) -> bool {
        !self.more()
    }

    /// The provided buffer the kernel filled (`IORING_CQE_F_BUFFER`); the
    /// caller must recycle it. For a bundle, the first of the buffers used.
    #[inline]
    pub const fn buffer_id(&self) -> Option<u16> {
        if self.flags & sys::IORING_CQE_F_BUFFER != 0 {
            Some((self.flags >> sys::IORING_CQE_BUFFER_SHIFT) as u16)
        } else {
            None
        }
    }

    /// `IORING_CQE_F_SOCK_NONEMPTY`: the socket had more data queued.
    #[inline]
    pub const fn sock_nonempty(&self) -> bool {
        self.flags & sys::IORING_CQE_F_SOCK_NONEMPTY != 0
    }

    /// The errno of a failed step.
    #[inline]
    pub const fn errno(&self) -> Option<i32> {
        if self.res < 0 { Some(-self.res) } else { None }
    }

    /// `Some(error)` if the result is a negative errno.
    #[inline]
    pub fn error(&self) -> Option<io::Error> {
        self.errno().map(io::Error::from_raw_os_error)
    }

    /// The result as `io::Result`.
    #[inline]
    pub fn result(&self) -> io::Result<u32> {
        if self.res < 0 { Err(io::Error::from_raw_os_error(-self.res)) } else { Ok(self.res as u32) }
    }

    /// The kernel's `-ECANCELED` verdict, as opposed to any other failure.
    #[inline]
    pub const fn cancelled(&self) -> bool {
        self.res == -libc::ECANCELED
    }

    /// A stop was already requested (by an earlier `on_step` or by
    /// [`Subscription::cancel`]): this CQE was on its way; the action
    /// returned for it is ignored.
    #[inline]
    pub const fn stopping(&self) -> bool {
        self.stopping
    }
}

/// How a multishot stream ended, given once to
/// [`MultishotHandler::on_stop`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MultishotEnd {
    /// The kernel ended the stream on its own with this non-negative
    /// result (0: end of stream on a receive or read; a count or
    /// descriptor when it could not post more CQEs). The final CQE went to
    /// `on_step` first.
    Finished(i32),
    /// The kernel's `-ECANCELED`: a cancel (this subscription's or
    /// anyone's) ended it.
    Cancelled,
    /// `-ENOBUFS`: the provided-buffer group ran dry. Nothing was lost (the
    /// data stays in the socket or file); recycle buffers and resubscribe.
    NoBuffers,
    /// Any other errno (positive), such as `EBADF`.
    Failed(i32),
}

impl MultishotEnd {
    /// Classifies the result of a final CQE.
    #[inline]
    pub const fn from_res(res: i32) -> Self {
        if res >= 0 {
            MultishotEnd::Finished(res)
        } else if res == -libc::ECANCELED {
            MultishotEnd::Cancelled
        } else if res == -libc::ENOBUFS {
            MultishotEnd::NoBuffers
        } else {
            MultishotEnd::Failed(-res)
        }
    }

    /// True for the kernel's `-ECANCELED`.
    #[inline]
    pub const fn cancelled(self) -> bool {
        matches!(self, MultishotEnd::Cancelled)
    }

    /// The errno that ended the stream (`ECANCELED` and `ENOBUFS`
    /// included), `None` for a natural end.
    #[inline]
    pub const fn errno(self) -> Option<i32> {
        match self {
            MultishotEnd::Finished(_) => None,
            MultishotEnd::Cancelled => Some(libc::ECANCELED),
            MultishotEnd::NoBuffers => Some(libc::ENOBUFS),
            MultishotEnd::Failed(e) => Some(e),
        }
    }

    /// The `(error, cancelled)` view: the error that ended the stream, if
    /// any.
    #[inline]
    pub fn error(self) -> Option<io::Error> {
        self.errno().map(io::Error::from_raw_os_error)
    }
}

/// Receives the CQEs of one multishot stream; see the
/// [module documentation](self) for the order of calls.
#[doc(alias = "OnMultishotStep")]
#[doc(alias = "OnMultishotStop")]
pub trait MultishotHandler {
    /// One CQE of the stream (every one, the final one included).
    fn on_step(&mut self, step: &MultishotStep) -> MultishotAction;

    /// The stream ended; runs exactly once per stream, after the final
    /// CQE's `on_step`. The default does nothing.
    fn on_stop(&mut self, end: MultishotEnd) {
        let _ = end;
    }
}

impl<H: MultishotHandler + ?Sized> MultishotHandler for &mut H {
    #[inline]
    fn on_step(&mut self, step: &MultishotStep) -> MultishotAction {
        (**self).on_step(step)
    }
    #[inline]
    fn on_stop(&mut self, end: MultishotEnd) {
        (**self).on_stop(end)
    }
}

impl<H: MultishotHandler + ?Sized> MultishotHandler for Box<H> {
    #[inline]
    fn on_step(&mut self, step: &MultishotStep) -> MultishotAction {
        (**self).on_step(step)
    }
    #[inline]
    fn on_stop(&mut self, end: MultishotEnd) {
        (**self).on_stop(end)
    }
}

/// A [`MultishotHandler`] made of closures: `on_step` (default: continue)
/// and `on_stop` (default: nothing).
///
/// ```
/// use uring_ops::subscription::{MultishotAction, MultishotSubscriber};
/// let mut seen = 0;
/// let handler = MultishotSubscriber::new()
///     .on_step(move |step| {
///         seen += 1;
///         if step.error().is_some() { MultishotAction::Stop } else { MultishotAction::Continue }
///     })
///     .on_stop(|end| {
///         if !end.cancelled() { /* resubscribe */ }
///     });
/// # let _ = handler;
/// ```
pub struct MultishotSubscriber<S, T> {
    step: S,
    stop: T,
}

/// The `on_step` of a fresh [`MultishotSubscriber`].
pub type DefaultStep = fn(&MultishotStep) -> MultishotAction;
/// The `on_stop` of a fresh [`MultishotSubscriber`].
pub type DefaultStop = fn(MultishotEnd);

impl MultishotSubscriber<DefaultStep, DefaultStop> {
    /// A handler that continues on every step and ignores the end.
    #[inline]
    pub fn new() -> Self {
        MultishotSubscriber { step: |_| MultishotAction::Continue, stop: |_| {} }
    }
}

impl Default for MultishotSubscriber<DefaultStep, DefaultStop> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S, T> MultishotSubscriber<S, T> {
    /// Sets the step closure.
    #[inline]
    pub fn on_step<F: FnMut(&MultishotStep) -> MultishotAction>(self, f: F) -> MultishotSubscriber<F, T> {
        MultishotSubscriber { step: f, stop: self.stop }
    }

    /// Sets the stop closure.
    #[inline]
    pub fn on_stop<G: FnMut(MultishotEnd)>(self, g: G) -> MultishotSubscriber<S, G> {
        MultishotSubscriber { step: self.step, stop: g }
    }
}

impl<S, T> fmt::Debug for MultishotSubscriber<S, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MultishotSubscriber").finish_non_exhaustive()
    }
}

impl<S, T> MultishotHandler for MultishotSubscriber<S, T>
where
    S: FnMut(&MultishotStep) -> MultishotAction,
    T: FnMut(MultishotEnd),
{
    #[inline]
    fn on_step(&mut self, step: &MultishotStep) -> MultishotAction {
        (self.step)(step)
    }
    #[inline]
    fn on_stop(&mut self, end: MultishotEnd) {
        (self.stop)(end)
    }
}

/// The subscription's own cancel: `IORING_OP_ASYNC_CANCEL` matching one
/// request by `user_data`.
#[derive(Debug, Clone, Copy)]
struct CancelOwn {
    target: u64,
}

impl Prepare for CancelOwn {
    const CODE: u8 = sys::IORING_OP_ASYNC_CANCEL as u8;
    const USES_KEEP: bool = false;

    fn prepare(self, sqe: &mut Sqe, _keep: &mut Keep) {
        let CancelOwn { target } = self;
        *sqe = Sqe::new(Self::CODE);
        sqe.fd = -1;
        // Flags 0: match by user_data (`sqe->addr`), the first request only.
        sqe.set_addr(target);
    }
}

// SAFETY: `addr` is a user_data value to match, never dereferenced.
unsafe impl SafeOp for CancelOwn {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CancelState {
    /// No stop requested.
    None,
    /// A stop was requested but the cancel SQE could not be queued yet.
    Wanted,
    /// The cancel SQE is queued or running; its CQE is due.
    InFlight,
    /// Its CQE arrived.
    Done,
}

/// The route of one multishot stream to its handler; see the
/// [module documentation](self).
#[doc(alias = "MultishotSubscription")]
pub struct Subscription<H> {
    handler: H,
    id: u64,
    /// The ring the subscription belongs to ([`Ring::id`]).
    ring_id: u64,
    ring_fd: RawFd,
    /// The buffer group the stream's entry selects from, if any.
    group: Option<u16>,
    /// The lowest [`Cqe::seq`] the stream's next CQE may have: the ring's
    /// CQ position when it was queued, then one past the last CQE taken,
    /// so a copy of an earlier CQE is not taken again.
    after: u64,
    muted: bool,
    cancel: CancelState,
    end: Option<MultishotEnd>,
    steps: u64,
    /// Cancel tokens of earlier streams of this subscription whose cancel
    /// CQE is still due.
    stale: Vec<u64>,
    error: Option<Error>,
}

impl<H> fmt::Debug for Subscription<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .field("ring_fd", &self.ring_fd)
            .field("muted", &self.muted)
            .field("cancel", &self.cancel)
            .field("end", &self.end)
            .field("steps", &self.steps)
            .field("stale", &self.stale.len())
            .finish_non_exhaustive()
    }
}

impl<H: MultishotHandler> Subscription<H> {
    /// Queues `op` with a fresh token.
    ///
    /// # Safety
    ///
    /// As for [`RingOps::push_op_unchecked`](crate::RingOps::push_op_unchecked) with `op`.
    unsafe fn start<O: Prepare>(ring: &mut Ring, op: O, handler: H) -> Result<Self> {
        let id = next_id();
        let after = ring.cq_position();
        // SAFETY: forwarded to the caller.
        let (_, group) = unsafe { crate::ring::push_layer_op(ring, op_token(id), op) }?;
        Ok(Subscription {
            handler,
            id,
            ring_id: ring.id(),
            ring_fd: ring.as_raw_fd(),
            group,
            after,
            muted: false,
            cancel: CancelState::None,
            end: None,
            steps: 0,
            stale: Vec::new(),
            error: None,
        })
    }

    /// The subscription id (bits 11–63 of its tokens).
    #[inline]
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The `user_data` its operation's CQEs carry.
    #[inline]
    pub fn token(&self) -> SqeContext {
        op_token(self.id)
    }

    /// How the current stream ended, once its final CQE was handled.
    #[inline]
    pub fn end(&self) -> Option<MultishotEnd> {
        self.end
    }

    /// The final CQE of the current stream was handled (`on_stop` ran,
    /// unless unsubscribed).
    #[inline]
    pub fn is_ended(&self) -> bool {
        self.end.is_some()
    }

    /// Ended, and no CQE of this subscription is due any more (its own
    /// cancel's included): it can be dropped without leaving a stray CQE.
    #[inline]
    pub fn is_finished(&self) -> bool {
        self.end.is_some() && self.cancel != CancelState::InFlight && self.stale.is_empty()
    }

    /// A stop was requested (by `on_step`, [`cancel`](Self::cancel) or
    /// [`unsubscribe`](Self::unsubscribe)).
    #[inline]
    pub fn is_stopping(&self) -> bool {
        self.cancel != CancelState::None
    }

    /// CQEs of the current stream handled so far.
    #[inline]
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The handler.
    #[inline]
    pub fn handler(&self) -> &H {
        &self.handler
    }

    /// The handler, mutably.
    #[inline]
    pub fn handler_mut(&mut self) -> &mut H {
        &mut self.handler
    }

    /// Gives the handler back (to subscribe it elsewhere). A cancel CQE
    /// still due (see [`is_finished`](Self::is_finished)) then reaches the
    /// caller's dispatcher unclaimed.
    #[inline]
    pub fn into_handler(self) -> H {
        self.handler
    }

    /// Takes the error of a cancel that `handle_cqe` could not queue (the
    /// stop requested by `on_step` is retried at the next CQE offered).
    #[inline]
    pub fn take_error(&mut self) -> Option<Error> {
        self.error.take()
    }

    fn check_ring(&self, ring: &Ring) -> Result<()> {
        // By identity, not fd: a closed ring's fd number is reused.
        if ring.id() == self.ring_id {
            Ok(())
        } else {
            Err(Error::InvalidArgument(format!(
                "subscription {} belongs to ring {} (fd {}), not to ring {} (fd {})",
                self.id,
                self.ring_id,
                self.ring_fd,
                ring.id(),
                ring.as_raw_fd()
            )))
        }
    }

    /// Queues the cancel SQE; on a full SQ, submits once and retries.
    fn queue_cancel(&mut self, ring: &mut Ring) -> Result<()> {
        self.check_ring(ring)?;
        let ctx = cancel_token(self.id);
        let op = CancelOwn { target: op_token(self.id).raw() };
        // SAFETY: the cancel names no memory, and its context carries this
        // layer's own value (which is why the checked `push_op` is not used).
        let pushed = match unsafe { crate::ring::push_layer_op(ring, ctx, op) } {
            Err(Error::QueueFull { .. }) => {
                ring.submit()?;
                // SAFETY: as above.
                unsafe { crate::ring::push_layer_op(ring, ctx, op) }
            }
            other => other,
        };
        match pushed {
            Ok(_) => {
                self.cancel = CancelState::InFlight;
                Ok(())
            }
            Err(e) => {
                self.cancel = CancelState::Wanted;
                Err(e)
            }
        }
    }

    /// Requests the end of the stream: queues an `IORING_OP_ASYNC_CANCEL`
    /// for this subscription's operation (submitted with the ring's next
    /// submit or wait). The handler keeps receiving the CQEs on their way
    /// ([`MultishotStep::stopping`]), then `on_stop` with
    /// [`MultishotEnd::Cancelled`] (or the natural end that won the race).
    /// Does nothing if a stop was already requested or the stream ended.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for another ring; the push's errors
    /// (a full SQ is submitted once and retried).
    #[doc(alias = "Cancel")]
    pub fn cancel(&mut self, ring: &mut Ring) -> Result<()> {
        self.check_ring(ring)?;
        if self.end.is_some() || matches!(self.cancel, CancelState::InFlight | CancelState::Done) {
            return Ok(());
        }
        self.queue_cancel(ring)
    }

    /// Like [`cancel`](Self::cancel), and silences the handler: the
    /// remaining CQEs are still claimed by [`handle_cqe`](Self::handle_cqe)
    /// but reach neither `on_step` nor `on_stop`. For operations that
    /// select provided buffers, prefer `cancel`: CQEs swallowed here may
    /// carry buffers that then are not recycled.
    ///
    /// # Errors
    ///
    /// As for [`cancel`](Self::cancel).
    #[doc(alias = "Unsubscribe")]
    pub fn unsubscribe(&mut self, ring: &mut Ring) -> Result<()> {
        self.check_ring(ring)?;
        self.muted = true;
        self.cancel(ring)
    }

    /// Starts a new stream with `op` after the current one ended (for
    /// example after [`MultishotEnd::NoBuffers`], once buffers were
    /// recycled), keeping the handler. The new stream gets a new token; a
    /// cancel CQE still due from the old one is still claimed.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if the current stream has not ended or
    /// the ring is another; the push's errors (the subscription then stays
    /// as it was).
    pub fn resubscribe<O: SafeOp>(&mut self, ring: &mut Ring, op: O) -> Result<()> {
        // SAFETY: `O: SafeOp`.
        unsafe { self.resubscribe_unchecked(ring, op) }
    }

    /// [`resubscribe`](Self::resubscribe) for an operation that names
    /// caller memory.
    ///
    /// # Errors
    ///
    /// As for [`resubscribe`](Self::resubscribe).
    ///
    /// # Safety
    ///
    /// As for [`RingOps::push_op_unchecked`](crate::RingOps::push_op_unchecked): the memory `op` names must
    /// stay valid until the new stream's final CQE was handled.
    pub unsafe fn resubscribe_unchecked<O: Prepare>(&mut self, ring: &mut Ring, op: O) -> Result<()> {
        self.check_ring(ring)?;
        if self.end.is_none() {
            return Err(Error::InvalidArgument(format!(
                "subscription {}: its stream is still running; cancel it and wait for on_stop first",
                self.id
            )));
        }
        let id = next_id();
        let after = ring.cq_position();
        // SAFETY: forwarded to the caller.
        let (_, group) = unsafe { crate::ring::push_layer_op(ring, op_token(id), op) }?;
        self.group = group;
        self.after = after;
        if self.cancel == CancelState::InFlight {
            self.stale.push(cancel_token(self.id).raw());
        }
        self.id = id;
        self.muted = false;
        self.cancel = CancelState::None;
        self.end = None;
        self.steps = 0;
        Ok(())
    }

    fn on_own_cqe(&mut self, ring: &mut Ring, cqe: &Cqe<'_>) {
        if self.end.is_some() {
            // Nothing follows a final CQE; claim a stray one silently.
            return;
        }
        let (res, flags) = (cqe.res(), cqe.raw_flags());
        self.steps += 1;
        // SAFETY: the CQE carries this subscription's reserved token (no
        // safe code makes the kernel post it), was reaped by its ring after
        // the stream was queued and after every CQE taken before, and the
        // group is the one the queued entry selects from.
        let selection = self.group.and_then(|g| unsafe { BufferSelection::vouch(cqe, g) });
        let step = MultishotStep { res, flags, stopping: self.cancel != CancelState::None, selection };
        let last = step.is_final();
        if !self.muted {
            let action = self.handler.on_step(&step);
            if action == MultishotAction::Stop && !last && self.cancel == CancelState::None {
                self.cancel = CancelState::Wanted;
            }
        }
        if last {
            let end = MultishotEnd::from_res(res);
            self.end = Some(end);
            if self.cancel == CancelState::Wanted {
                // Never queued, and nothing left to cancel.
                self.cancel = CancelState::None;
            }
            if !self.muted {
                self.handler.on_stop(end);
            }
        } else if self.cancel == CancelState::Wanted
            && let Err(e) = self.queue_cancel(ring)
        {
            self.error = Some(e);
        }
    }
}

impl<H: MultishotHandler> HandleCqe for Subscription<H> {
    /// Subscriptions report to their [`MultishotHandler`].
    type Event = ();

    /// Routes `cqe` if it carries one of this subscription's tokens: the
    /// operation's (to the handler), its cancel's, or a stale cancel's of
    /// an earlier stream (claimed silently).
    fn handle_cqe(&mut self, ring: &mut Ring, cqe: &Cqe<'_>) -> Option<()> {
        if cqe.ring_id() != self.ring_id {
            return None;
        }
        let ud = cqe.user_data();
        if ud == op_token(self.id).raw() {
            if cqe.seq() < self.after {
                // A copy of a CQE taken already (or reaped before the
                // stream was queued): not the stream's next step.
                return None;
            }
            self.after = cqe.seq() + 1;
            self.on_own_cqe(ring, cqe);
            return Some(());
        }
        if ud == cancel_token(self.id).raw() {
            self.cancel = CancelState::Done;
            let res = cqe.res();
            if (res == -libc::EALREADY || res == -libc::ENOENT) && self.end.is_none() {
                // The operation was running and could not be interrupted
                // (`-EALREADY`), or was between two steps where the kernel
                // could not find it (`-ENOENT`: a multishot timeout whose
                // expiry waits in task work is off the timer list until it
                // is re-armed) and its final CQE has not come: ask again,
                // so the stop is not lost. If the stream did end, its final
                // CQE arrives and the second cancel's answer is still
                // claimed here.
                if let Err(e) = self.queue_cancel(ring) {
                    self.error = Some(e);
                }
            }
            return Some(());
        }
        if let Some(i) = self.stale.iter().position(|&t| t == ud) {
            self.stale.swap_remove(i);
            return Some(());
        }
        None
    }
}

/// Multishot submissions that return a [`Subscription`], on [`Ring`].
#[doc(alias = "AcceptMultishot")]
#[doc(alias = "ReceiveMultishot")]
pub trait Subscribe {
    /// Queues `op` (any [`SafeOp`]; meant for multishot ones) under a
    /// fresh subscription token and returns its subscription.
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`](crate::RingOps::push_op).
    fn subscribe<O: SafeOp, H: MultishotHandler>(&mut self, op: O, handler: H) -> Result<Subscription<H>>;

    /// [`subscribe`](Self::subscribe) for an operation that names caller
    /// memory.
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`](crate::RingOps::push_op).
    ///
    /// # Safety
    ///
    /// As for [`RingOps::push_op_unchecked`](crate::RingOps::push_op_unchecked): the memory `op` names must
    /// stay valid until the stream's final CQE was handled
    /// ([`Subscription::is_ended`]).
    unsafe fn subscribe_unchecked<O: Prepare, H: MultishotHandler>(
        &mut self,
        op: O,
        handler: H,
    ) -> Result<Subscription<H>>;

    /// Subscribes `handler` to a multishot accept on `listener`
    /// ([`AcceptMulti`]).
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`](crate::RingOps::push_op).
    #[doc(alias = "AcceptMultishot")]
    fn subscribe_accept<H: MultishotHandler>(
        &mut self,
        listener: impl Into<Target>,
        handler: H,
    ) -> Result<Subscription<H>>;

    /// Subscribes `handler` to a multishot receive on `fd` with buffers of
    /// `group` ([`RecvMulti`]).
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`](crate::RingOps::push_op).
    #[doc(alias = "ReceiveMultishot")]
    fn subscribe_recv<H: MultishotHandler>(
        &mut self,
        fd: impl Into<Target>,
        group: u16,
        handler: H,
    ) -> Result<Subscription<H>>;

    /// Subscribes `handler` to a multishot read of `fd` with buffers of
    /// `group` ([`ReadMulti`]).
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`](crate::RingOps::push_op).
    fn subscribe_read<H: MultishotHandler>(
        &mut self,
        fd: impl Into<Target>,
        group: u16,
        handler: H,
    ) -> Result<Subscription<H>>;
}

impl Subscribe for Ring {
    fn subscribe<O: SafeOp, H: MultishotHandler>(&mut self, op: O, handler: H) -> Result<Subscription<H>> {
        // SAFETY: `O: SafeOp`.
        unsafe { Subscription::start(self, op, handler) }
    }

    unsafe fn subscribe_unchecked<O: Prepare, H: MultishotHandler>(
        &mut self,
        op: O,
        handler: H,
    ) -> Result<Subscription<H>> {
        // SAFETY: forwarded to the caller.
        unsafe { Subscription::start(self, op, handler) }
    }

    fn subscribe_accept<H: MultishotHandler>(
        &mut self,
        listener: impl Into<Target>,
        handler: H,
    ) -> Result<Subscription<H>> {
        self.subscribe(AcceptMulti::new(listener), handler)
    }

    fn subscribe_recv<H: MultishotHandler>(
        &mut self,
        fd: impl Into<Target>,
        group: u16,
        handler: H,
    ) -> Result<Subscription<H>> {
        self.subscribe(RecvMulti::new(fd, group), handler)
    }

    fn subscribe_read<H: MultishotHandler>(
        &mut self,
        fd: impl Into<Target>,
        group: u16,
        handler: H,
    ) -> Result<Subscription<H>> {
        self.subscribe(ReadMulti::new(fd, group), handler)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_never_look_like_library_contexts() {
        let id = 0x1234_5678_9abc;
        assert_eq!(subscription_id(op_token(id).raw()), Some(id));
        assert_eq!(subscription_id(cancel_token(id).raw()), Some(id));
        assert_ne!(op_token(id), cancel_token(id));
        assert_eq!(op_token(id).mode(), uring_core::ContextMode::Layer);
        assert_eq!(subscription_id(SqeContext::for_fd(3).raw()), None);
        assert_eq!(subscription_id(SqeContext::token(id).unwrap().raw()), None);
        assert_eq!(subscription_id(op_token(ID_MAX).raw()), Some(ID_MAX));
    }

    #[test]
    fn ends_are_classified() {
        assert_eq!(MultishotEnd::from_res(0), MultishotEnd::Finished(0));
        assert_eq!(MultishotEnd::from_res(-libc::ECANCELED), MultishotEnd::Cancelled);
        assert!(MultishotEnd::from_res(-libc::ECANCELED).cancelled());
        assert_eq!(MultishotEnd::from_res(-libc::ENOBUFS), MultishotEnd::NoBuffers);
        assert_eq!(MultishotEnd::from_res(-libc::EBADF), MultishotEnd::Failed(libc::EBADF));
        assert_eq!(MultishotEnd::Finished(0).errno(), None);
    }
}
