//! The receiver: one socket's multishot `RECV_ZC` stream, its CQEs routed
//! to a handler, and its end.
//!
//! ```text
//! Idle ──start──▶ Active ──stop──▶ Stopping ──final CQE──▶ Retiring ──cancel CQE──▶ Stopped
//!                   │  ▲              (cancel queued          (on_stopped runs)        │
//!                   │  └─ cancel could not be submitted)                               │
//!                   └──────── final CQE (end of stream, error, no buffers) ────────────┘
//!                                     (through Retiring: on_stopped runs)
//! ```
//!
//! A stopped receiver can [`start`](ZcrxReceiver::start) again.
//!
//! Identity: every CQE of a stream carries a `user_data` of this layer's
//! ([`uring_core::Layer::ZeroCopyRecv`]): the layer flag set for the
//! receiver's own cancel, the payload a stream number unique in the
//! process (53 bits, never reused: a start that would need a larger one
//! fails). Safe code cannot post a CQE with such a value (the checked push
//! and `MSG_RING` refuse it), so a data CQE that names area memory comes
//! from the kernel.
//!
//! Provenance: a stream's CQE is taken only from the instance's ring
//! ([`Cqe::ring_id`]) and only if it is newer ([`Cqe::seq`]) than the
//! ring's CQ position when the stream was queued and than every CQE of the
//! stream taken before. A copy presented again (a saved [`CqeSlot`](uring_core::CqeSlot))
//! is not taken: neither a data CQE (whose buffer the kernel may have got
//! back and be refilling) nor a final one (which would report a stream
//! stopped that the kernel still runs). The instance also refuses to hand
//! out a niov for a CQE not newer than the one that last handed it out on
//! that ring.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};

use uring_core::HandleCqe;
use uring_core::{Cqe, Error as CoreError, Layer, LayerData, Ring, SqeContext, sys};
use uring_ops::SafeOp;
use uring_ops::cancel::AsyncCancel;
use uring_ops::multishot::RecvZc;

use crate::error::{Error, Result};
use crate::zcrx::{Zcrx, ZcrxBuffer};

/// Stream numbers are the 53-bit payload of a [`Layer::ZeroCopyRecv`]
/// value; the layer flag marks the receiver's own cancel.
const MAX_STREAM: u64 = LayerData::PAYLOAD_MAX;

static NEXT_STREAM: AtomicU64 = AtomicU64::new(1);

/// A fresh stream number, never one used before in the process; `None`
/// once the 53 bits are used up (the counter itself, 64 bits, does not
/// wrap in practice).
fn next_stream() -> Option<u64> {
    next_from(&NEXT_STREAM)
}

fn next_from(counter: &AtomicU64) -> Option<u64> {
    counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n <= MAX_STREAM).then_some(n + 1)).ok()
}

const fn layer_value(stream: u64, cancel: bool) -> u64 {
    match LayerData::new(Layer::ZeroCopyRecv, cancel, stream & MAX_STREAM) {
        Some(d) => d.raw(),
        None => unreachable!(),
    }
}

const fn op_token(stream: u64) -> u64 {
    layer_value(stream, false)
}

/// Whether `user_data` is this layer's ([`Layer::ZeroCopyRecv`]: a
/// receiver's stream or its cancel).
#[inline]
pub const fn is_zcrx_token(user_data: u64) -> bool {
    LayerData::payload_of(user_data, Layer::ZeroCopyRecv).is_some()
}

/// Where a receiver is in its life; see the [module documentation](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiverState {
    /// Made, not started.
    Idle,
    /// `RECV_ZC` queued or running.
    Active,
    /// A cancel is queued; the stream's final CQE is due.
    Stopping,
    /// The final CQE arrived; the cancel's CQE is still due.
    Retiring,
    /// Nothing of this receiver is in flight.
    Stopped,
}

/// Why a stream ended, as given to [`ZcrxHandler::on_stopped`].
///
/// Non-exhaustive: a newer kernel may end a stream for a reason worth its
/// own variant (as `-ENOSPC` became [`CqFull`](Self::CqFull)); until then
/// it is [`Failed`](Self::Failed) with its errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ZcrxEnd {
    /// The peer closed its side (result 0), or the byte limit was reached.
    Finished,
    /// Stopped by [`ZcrxReceiver::stop`] or a handler's `false`
    /// (`-ECANCELED`).
    Cancelled,
    /// The area had no free buffer (`-ENOMEM`): release buffers (and, for
    /// an instance without a device, flush), then start again; the data
    /// waits in the socket.
    NoBuffers,
    /// The completion queue had no room for a data CQE (`-ENOSPC`): one
    /// receive pass produced more chunks than the CQ had free entries (the
    /// kernel posts data CQEs only into free CQ entries, never into the
    /// overflow list). Reap, then start again; the bytes not delivered
    /// wait in the socket. A CQ with at least as many entries as the area
    /// has buffers, reaped between passes, avoids it.
    CqFull,
    /// Any other errno, already given to [`ZcrxHandler::on_error`].
    Failed(i32),
    /// Stopped before it was started.
    NeverStarted,
}

impl ZcrxEnd {
    /// Whether the stream ended for want of room ([`NoBuffers`](Self::NoBuffers),
    /// [`CqFull`](Self::CqFull)) and starting it again, once there is room,
    /// resumes where it stopped without losing a byte.
    #[inline]
    pub fn is_resumable(self) -> bool {
        matches!(self, ZcrxEnd::NoBuffers | ZcrxEnd::CqFull)
    }

    fn from_res(res: i32) -> Self {
        match res {
            r if r >= 0 => ZcrxEnd::Finished,
            r if r == -libc::ECANCELED => ZcrxEnd::Cancelled,
            r if r == -libc::ENOMEM => ZcrxEnd::NoBuffers,
            r if r == -libc::ENOSPC => ZcrxEnd::CqFull,
            r => ZcrxEnd::Failed(-r),
        }
    }
}

/// Callbacks for a receiver's CQEs, called from
/// [`handle_cqe`](HandleCqe::handle_cqe) in the caller's reap loop, one at
/// a time.
#[doc(alias = "ZCRXHandler")]
pub trait ZcrxHandler {
    /// Bytes arrived. Keep the buffer as long as needed; release or drop it
    /// to give the memory back. Return false to ask for a best-effort stop
    /// (CQEs already on their way still arrive).
    fn on_data(&mut self, buf: ZcrxBuffer) -> bool;

    /// The stream failed with `err` (its final CQE, or a data CQE this
    /// crate could not accept). Return false to ask for a stop; a final
    /// CQE ends the stream either way.
    fn on_error(&mut self, err: io::Error) -> bool {
        let _ = err;
        false
    }

    /// The stream is over and nothing of it is in flight; called exactly
    /// once per started stream, while the receiver is
    /// [`Retiring`](ReceiverState::Retiring), just before it becomes
    /// [`Stopped`](ReceiverState::Stopped).
    fn on_stopped(&mut self, end: ZcrxEnd) {
        let _ = end;
    }
}

/// One socket's zero-copy receive stream through a [`Zcrx`] instance,
/// with its handler.
///
/// Offer it every CQE the ring yields ([`HandleCqe::handle_cqe`]); it
/// claims its own.
///
/// Stop it and wait for [`Stopped`](ReceiverState::Stopped) before
/// dropping it: a receiver dropped while Active leaves its `RECV_ZC`
/// running, and the buffers its CQEs carry then go back to the kernel only
/// when the ring closes (the memory itself stays safe: it is attached to
/// the ring). For an instance without a device it also flushes the
/// refill ring as buffers come back ([`flush_threshold`](Self::flush_threshold)).
#[doc(alias = "ZCRXReceiver")]
pub struct ZcrxReceiver<H> {
    zcrx: Zcrx,
    handler: H,
    state: ReceiverState,
    stream: u64,
    /// The lowest [`Cqe::seq`] the stream's next CQE may have: the ring's
    /// CQ position when the stream was queued, then one past the last CQE
    /// of the stream taken.
    after: u64,
    fd: RawFd,
    cancel_due: bool,
    cancel_wanted: bool,
    end: Option<ZcrxEnd>,
    error: Option<Error>,
    bytes: u64,
    buffers: u64,
    limit: u32,
    flush_at: u32,
    auto_flush: bool,
}

impl<H> std::fmt::Debug for ZcrxReceiver<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZcrxReceiver")
            .field("zcrx", &self.zcrx.id())
            .field("state", &self.state)
            .field("fd", &self.fd)
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

impl<H: ZcrxHandler> ZcrxReceiver<H> {
    /// An idle receiver on `zcrx` (a handle clone) with `handler`.
    pub fn new(zcrx: &Zcrx, handler: H) -> Self {
        ZcrxReceiver {
            zcrx: zcrx.clone(),
            handler,
            state: ReceiverState::Idle,
            stream: 0,
            after: 0,
            fd: -1,
            cancel_due: false,
            cancel_wanted: false,
            end: None,
            error: None,
            bytes: 0,
            buffers: 0,
            limit: 0,
            flush_at: 0,
            auto_flush: true,
        }
    }

    /// For an instance without a device: flush the refill ring once this
    /// many entries are pending. The default (0) is a quarter of the
    /// smaller of the refill ring and the area's buffer count, at least 1:
    /// the kernel can only reuse released memory after a flush, and one
    /// receive pass may take the whole area.
    pub fn flush_threshold(mut self, entries: u32) -> Self {
        self.flush_at = entries;
        self
    }

    /// Never flush on the caller's behalf (neither from `handle_cqe` nor
    /// from `start`): the caller calls [`Zcrx::flush`] itself. Only matters
    /// for an instance without a device; these flushes are the one
    /// syscall this crate makes that the caller did not ask for by name.
    pub fn manual_flush(mut self) -> Self {
        self.auto_flush = false;
        self
    }

    /// Ends each stream after `bytes` bytes (0, the default: no limit).
    pub fn limit(mut self, bytes: u32) -> Self {
        self.limit = bytes;
        self
    }

    /// Queues multishot `RECV_ZC` on the connected TCP socket `fd`
    /// (submitted with the ring's next submit or wait): Idle or Stopped →
    /// Active. An instance without a device is flushed first if buffers
    /// are pending, so a restart after [`ZcrxEnd::NoBuffers`] finds them.
    ///
    /// # Errors
    ///
    /// [`Error::State`] unless Idle or Stopped; [`Error::WrongRing`]; the
    /// push's errors (a full SQ is submitted once and retried).
    #[doc(alias = "Start")]
    pub fn start(&mut self, ring: &mut Ring, fd: impl AsRawFd) -> Result<()> {
        if !matches!(self.state, ReceiverState::Idle | ReceiverState::Stopped) {
            return Err(self.state_error("already receiving; stop it and wait for Stopped first"));
        }
        self.zcrx.check_ring(ring)?;
        let shared = self.zcrx.shared()?;
        if self.auto_flush && shared.is_nodev() && self.zcrx.refill_pending().0 > 0 {
            self.zcrx.flush(ring)?;
        }
        let Some(stream) = next_stream() else {
            return Err(self.state_error("the process has used up its 2^53 stream numbers"));
        };
        let fd = fd.as_raw_fd();
        let op = RecvZc::new(fd, self.zcrx.id()).limit(self.limit);
        // Every CQE of the new stream is reaped from here on.
        let after = ring.cq_position();
        push_retry(ring, op_token(stream), op)?;
        self.stream = stream;
        self.after = after;
        self.fd = fd;
        self.state = ReceiverState::Active;
        self.cancel_due = false;
        self.cancel_wanted = false;
        self.end = None;
        Ok(())
    }

    /// Stops the stream: queues an async cancel and submits it; Active →
    /// Stopping. If the cancel cannot be queued or submitted the receiver
    /// stays Active and the error is returned. The handler keeps getting
    /// the CQEs already on their way, then `on_stopped`. An idle receiver
    /// becomes Stopped at once (`on_stopped(NeverStarted)`); otherwise a
    /// stop that is under way, or done, is not repeated.
    ///
    /// # Errors
    ///
    /// [`Error::WrongRing`]; the push's or the submit's errors.
    #[doc(alias = "Stop")]
    pub fn stop(&mut self, ring: &mut Ring) -> Result<()> {
        self.zcrx.check_ring(ring)?;
        match self.state {
            ReceiverState::Idle => {
                self.state = ReceiverState::Retiring;
                self.handler.on_stopped(ZcrxEnd::NeverStarted);
                self.state = ReceiverState::Stopped;
                Ok(())
            }
            ReceiverState::Active => {
                self.queue_cancel(ring)?;
                if let Err(e) = ring.submit() {
                    // The cancel may sit in the SQ; it is submitted with the
                    // next enter, and its CQE is still claimed, but the
                    // receiver says Active as the caller asked.
                    self.state = ReceiverState::Active;
                    return Err(e.into());
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn queue_cancel(&mut self, ring: &mut Ring) -> Result<()> {
        let ctx = layer_value(self.stream, true);
        match push_retry(ring, ctx, AsyncCancel::new(SqeContext::of_user_data(op_token(self.stream)))) {
            Ok(()) => {
                self.cancel_due = true;
                self.cancel_wanted = false;
                self.state = ReceiverState::Stopping;
                Ok(())
            }
            Err(e) => {
                self.state = ReceiverState::Active;
                Err(e)
            }
        }
    }

    /// The state.
    pub fn state(&self) -> ReceiverState {
        self.state
    }

    /// Whether nothing of this receiver is in flight (Stopped).
    #[doc(alias = "Stopped")]
    pub fn is_stopped(&self) -> bool {
        self.state == ReceiverState::Stopped
    }

    /// How the last stream ended, once it has.
    pub fn end(&self) -> Option<ZcrxEnd> {
        self.end
    }

    /// Bytes and buffers delivered so far, over every stream.
    pub fn received(&self) -> (u64, u64) {
        (self.bytes, self.buffers)
    }

    /// The `user_data` of the current stream's CQEs.
    pub fn token(&self) -> u64 {
        op_token(self.stream)
    }

    /// The socket of the current (or last) stream.
    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// The handler.
    pub fn handler(&self) -> &H {
        &self.handler
    }

    /// The handler, mutably.
    pub fn handler_mut(&mut self) -> &mut H {
        &mut self.handler
    }

    /// The instance handle.
    pub fn zcrx(&self) -> &Zcrx {
        &self.zcrx
    }

    /// An error met while handling CQEs (queuing a cancel the handler asked
    /// for, or flushing the refill ring), which `handle_cqe` cannot return.
    pub fn take_error(&mut self) -> Option<Error> {
        self.error.take()
    }

    fn state_error(&self, what: &'static str) -> Error {
        Error::State { id: self.stream, state: self.state, what }
    }

    fn want_stop(&mut self, ring: &mut Ring) {
        if self.state == ReceiverState::Active
            && let Err(e) = self.queue_cancel(ring)
        {
            self.cancel_wanted = true;
            self.error = Some(e);
        }
    }

    fn retire(&mut self) {
        self.state = ReceiverState::Retiring;
        let end = self.end.unwrap_or(ZcrxEnd::Cancelled);
        self.handler.on_stopped(end);
        self.state = ReceiverState::Stopped;
    }

    fn on_stream_cqe(&mut self, ring: &mut Ring, seq: u64, res: i32, flags: u32, big: Option<[u64; 2]>) {
        if !matches!(self.state, ReceiverState::Active | ReceiverState::Stopping) {
            // Nothing follows a final CQE; a stray one is claimed silently.
            return;
        }
        if flags & sys::IORING_CQE_F_MORE != 0 {
            let keep = if res > 0 {
                let buf =
                    big.and_then(|[off, _]| self.zcrx.shared().ok()?.buffer(self.zcrx.seen(), seq, off, res as u32));
                match buf {
                    Some(buf) => {
                        self.bytes += res as u64;
                        self.buffers += 1;
                        self.handler.on_data(buf)
                    }
                    None => self.handler.on_error(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "RECV_ZC CQE (res {res}, offset word {:#x?}) names no buffer of this instance's area",
                            big.map(|b| b[0])
                        ),
                    )),
                }
            } else if res < 0 {
                self.handler.on_error(io::Error::from_raw_os_error(-res))
            } else {
                true
            };
            if (!keep || self.cancel_wanted) && self.state == ReceiverState::Active {
                self.want_stop(ring);
            }
            self.maybe_flush(ring);
            return;
        }
        // The final CQE.
        let end = ZcrxEnd::from_res(res);
        if let ZcrxEnd::Failed(errno) = end {
            self.handler.on_error(io::Error::from_raw_os_error(errno));
        }
        self.end = Some(end);
        self.cancel_wanted = false;
        if self.cancel_due {
            self.state = ReceiverState::Retiring;
        } else {
            self.retire();
        }
        self.maybe_flush(ring);
    }

    /// `origin`: the CQE's ring identity and position.
    #[inline]
    fn route(
        &mut self,
        ring: &mut Ring,
        origin: (u64, u64),
        ud: u64,
        res: i32,
        flags: u32,
        big: Option<[u64; 2]>,
    ) -> bool {
        if self.stream == 0 || LayerData::payload_of(ud, Layer::ZeroCopyRecv) != Some(self.stream) {
            return false;
        }
        let (ring_id, seq) = origin;
        if ring_id != self.zcrx.ring_id() || seq < self.after {
            // Another ring's CQE, one reaped before the stream was queued,
            // or a copy of one taken already: not the stream's next CQE.
            return false;
        }
        self.after = seq + 1;
        if ud == op_token(self.stream) {
            self.on_stream_cqe(ring, seq, res, flags, big);
        } else {
            self.on_cancel_cqe(ring, res);
        }
        true
    }

    fn on_cancel_cqe(&mut self, ring: &mut Ring, res: i32) {
        self.cancel_due = false;
        if res == -libc::EALREADY && self.state == ReceiverState::Stopping {
            // The request was running and could not be interrupted: ask
            // again so the stop is not lost.
            if let Err(e) = self.queue_cancel(ring) {
                self.cancel_wanted = true;
                self.error = Some(e);
            }
            return;
        }
        if self.state == ReceiverState::Retiring {
            self.retire();
        }
    }

    /// Flushes an instance without a device when enough entries are
    /// pending ([`flush_threshold`](Self::flush_threshold)), or releases
    /// wait for room.
    #[inline]
    fn maybe_flush(&mut self, ring: &mut Ring) {
        if !self.auto_flush {
            return;
        }
        let Ok(shared) = self.zcrx.shared() else { return };
        if !shared.is_nodev() {
            return;
        }
        let (pending, entries, overflow) = shared.refill_pending();
        let at = if self.flush_at > 0 {
            self.flush_at
        } else {
            let niovs = (self.zcrx.area_len() / self.zcrx.rx_buf_len().max(1) as usize).min(u32::MAX as usize) as u32;
            (entries.min(niovs) / 4).max(1)
        };
        if (overflow || pending >= at)
            && pending > 0
            && let Err(e) = self.zcrx.flush(ring)
        {
            self.error = Some(e);
        }
    }
}

/// Hooks for this crate's benchmarks; not part of the API.
#[doc(hidden)]
impl<H: ZcrxHandler> ZcrxReceiver<H> {
    /// Marks the receiver Active on a fresh stream without submitting
    /// anything.
    ///
    /// # Panics
    ///
    /// Unless the instance is from `bench_support::detached` and the
    /// receiver is Idle or Stopped.
    pub fn bench_activate(&mut self) {
        assert!(self.zcrx.shared().is_ok_and(|s| s.is_detached()), "bench_activate works only on a detached instance");
        assert!(matches!(self.state, ReceiverState::Idle | ReceiverState::Stopped), "the receiver is running");
        self.stream = next_stream().expect("stream numbers used up");
        self.state = ReceiverState::Active;
        self.cancel_due = false;
        self.cancel_wanted = false;
        self.end = None;
    }

    /// Routes a CQE given as its parts, as `handle_cqe` does.
    ///
    /// # Safety
    ///
    /// The parts must be those of a CQE the kernel posted for this
    /// receiver's stream: a data CQE hands out the area range it names, so
    /// a made-up one could hand out memory the kernel is writing. For an
    /// instance from `bench_support::detached`, which no kernel writes,
    /// any in-range offset is fine.
    pub unsafe fn bench_dispatch(
        &mut self,
        ring: &mut Ring,
        user_data: u64,
        res: i32,
        flags: u32,
        big: [u64; 2],
    ) -> bool {
        let origin = (self.zcrx.ring_id(), self.after);
        self.route(ring, origin, user_data, res, flags, Some(big))
    }

    /// Routes a CQE given as its parts and its provenance (`ring_id`,
    /// `seq`), as `handle_cqe` does.
    ///
    /// # Safety
    ///
    /// As for [`bench_dispatch`](Self::bench_dispatch), with a made-up
    /// provenance too.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn bench_dispatch_at(
        &mut self,
        ring: &mut Ring,
        ring_id: u64,
        seq: u64,
        user_data: u64,
        res: i32,
        flags: u32,
        big: [u64; 2],
    ) -> bool {
        self.route(ring, (ring_id, seq), user_data, res, flags, Some(big))
    }
}

impl<H: ZcrxHandler> HandleCqe for ZcrxReceiver<H> {
    /// Receivers report to their [`ZcrxHandler`].
    type Event = ();

    /// Routes `cqe` if it is this receiver's: a data CQE to `on_data`, an
    /// error to `on_error`, the end to `on_stopped`; the cancel's CQE is
    /// claimed silently.
    #[inline]
    fn handle_cqe(&mut self, ring: &mut Ring, cqe: &Cqe<'_>) -> Option<()> {
        self.route(ring, (cqe.ring_id(), cqe.seq()), cqe.user_data(), cqe.res(), cqe.raw_flags(), cqe.big())
            .then_some(())
    }
}

/// Pushes `op` under the layer's own `user_data`; a full SQ is submitted
/// once and the push retried.
fn push_retry<O: SafeOp + Copy>(ring: &mut Ring, ud: u64, op: O) -> Result<()> {
    let ctx = SqeContext::of_user_data(ud);
    // SAFETY: `O: SafeOp` names no caller memory; the context is a value
    // of this layer's, which is why the checked push is not used.
    match unsafe { uring_ops::push_layer_op(ring, ctx, op) } {
        Ok(_) => Ok(()),
        Err(CoreError::QueueFull { .. }) => {
            ring.submit()?;
            // SAFETY: as above.
            unsafe { uring_ops::push_layer_op(ring, ctx, op) }.map(drop).map_err(Error::from)
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_numbers_never_wrap_into_the_token() {
        let counter = AtomicU64::new(MAX_STREAM - 1);
        assert_eq!(next_from(&counter), Some(MAX_STREAM - 1));
        assert_eq!(next_from(&counter), Some(MAX_STREAM));
        // Used up: refused, not wrapped to a number an earlier stream had.
        assert_eq!(next_from(&counter), None);
        assert_eq!(next_from(&counter), None);
        let top = op_token(MAX_STREAM);
        assert_eq!(LayerData::payload_of(top, Layer::ZeroCopyRecv), Some(MAX_STREAM), "the largest number fits");
        assert!(is_zcrx_token(top) && !LayerData::decode(top).unwrap().flag());
        assert!(is_zcrx_token(layer_value(MAX_STREAM, true)));
    }
}
