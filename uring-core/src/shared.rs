//! [`SharedRing`]: the multi-issuer ring, `Sync`, serializing internally.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use uring_sys as sys;

use crate::context::ContextPools;
use crate::core::{Core, State, WaitArgs};
use crate::cqe::CqeSlot;
use crate::error::{Error, Result};
use crate::features::Features;
use crate::keep::Keep;
use crate::options::{Issuer, Options};
use crate::queue::{Cq, Sq};
use crate::register::Registrar;
use crate::sqe::{Sqe, Sqe128};

/// A ring that several threads submit to and reap from
/// (`IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG`, no
/// `SINGLE_ISSUER`). It is `Sync`: the SQ and the CQ each sit behind their
/// own lock, so a thread blocked waiting for completions never holds up
/// submitters. Blocking waits run without any lock held.
///
/// Lifecycle transitions ([`start`](Self::start), [`stop`](Self::stop))
/// take `&mut self`, so no thread can be inside the ring when it stops.
///
/// Completions are copied into the caller's [`CqeSlot`]s; pooled contexts
/// resolve through [`pools`](Self::pools).
#[derive(Debug)]
pub struct SharedRing {
    /// First, so that it drops first (see [`Ring`](crate::Ring)'s fields):
    /// the SQ slots' `Keep`s go only after the ring memory is unmapped.
    core: Core,
    sq: Mutex<Sq>,
    cq: Mutex<Cq>,
    pools: Mutex<ContextPools>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave the queue in a
    // torn state (the indices are plain integers updated last), so poison
    // is ignored.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SharedRing {
    /// Creates the ring disabled; see [`Ring::new`](crate::Ring::new).
    pub fn new(opts: Options) -> Result<Self> {
        let (core, sq, cq) = Core::setup(&opts, Issuer::Multi)?;
        let (indirect, extended) = opts.pool_sizes(core.params.sq_entries);
        Ok(SharedRing {
            sq: Mutex::new(sq),
            cq: Mutex::new(cq),
            pools: Mutex::new(ContextPools::for_ring(core.id, indirect, extended)),
            core,
        })
    }

    /// Adopts a ring set up elsewhere, as
    /// [`Ring::from_raw_fd`](crate::Ring::from_raw_fd) does (the same
    /// checks, and the ring is [`Created`](State::Created) the same way),
    /// for submission and reaping from several threads. Context pools get
    /// the SQ size; the fd is not registered.
    ///
    /// # Errors
    ///
    /// As for [`Ring::from_raw_fd`](crate::Ring::from_raw_fd), and
    /// [`Error::InvalidArgument`] for a ring set up with
    /// `IORING_SETUP_SINGLE_ISSUER` or `IORING_SETUP_DEFER_TASKRUN`
    /// (one task submits to such a ring, and only it may wait with
    /// deferred task work: adopt it as a [`Ring`](crate::Ring)), checked
    /// before anything is mapped.
    ///
    /// # Safety
    ///
    /// As for [`Ring::from_raw_fd`](crate::Ring::from_raw_fd): `params`
    /// are exactly what `io_uring_setup` returned for `fd`, nothing but
    /// this ring submits to, reaps from, enables, resizes or registers to
    /// it from now on, no request of it is in flight, and a ring set up
    /// with `IORING_SETUP_R_DISABLED` has not been enabled yet.
    #[doc(alias = "io_uring_queue_mmap")]
    pub unsafe fn from_raw_fd(fd: std::os::fd::OwnedFd, params: sys::io_uring_params) -> Result<Self> {
        let single = sys::IORING_SETUP_SINGLE_ISSUER | sys::IORING_SETUP_DEFER_TASKRUN;
        if params.flags & single != 0 {
            return Err(Error::InvalidArgument(
                "SharedRing::from_raw_fd: a SINGLE_ISSUER or DEFER_TASKRUN ring has one submitting task; adopt it \
                 with Ring::from_raw_fd"
                    .into(),
            ));
        }
        // SAFETY: forwarded to the caller.
        let (core, sq, cq) = unsafe { Core::adopt(fd, params) }?;
        let entries = core.params.sq_entries;
        Ok(SharedRing {
            sq: Mutex::new(sq),
            cq: Mutex::new(cq),
            pools: Mutex::new(ContextPools::for_ring(core.id, entries, entries)),
            core,
        })
    }

    /// Enables the ring.
    pub fn start(&mut self) -> Result<()> {
        self.core.start()?;
        lock(&self.sq).open();
        Ok(())
    }

    /// Ends the ring for good (see [`Ring::stop`](crate::Ring::stop)).
    pub fn stop(&mut self) {
        let sq = self.sq.get_mut().unwrap_or_else(PoisonError::into_inner);
        let cq = self.cq.get_mut().unwrap_or_else(PoisonError::into_inner);
        self.core.stop(Some((sq, cq)));
    }

    /// Where the ring is in its life.
    pub fn state(&self) -> State {
        self.core.state
    }

    /// This ring's identity; see [`Ring::id`](crate::Ring::id).
    #[inline]
    pub fn id(&self) -> u64 {
        self.core.id
    }

    /// CQ slots consumed so far; see
    /// [`Ring::cq_position`](crate::Ring::cq_position). Another thread may
    /// reap meanwhile, so it is a lower bound of every later CQE's
    /// [`seq`](crate::Cqe::seq).
    pub fn cq_position(&self) -> u64 {
        lock(&self.cq).position()
    }

    /// As [`Ring::task_work_pending`](crate::Ring::task_work_pending): a
    /// shared ring always has `IORING_SETUP_TASKRUN_FLAG` unless it polls
    /// with SQPOLL.
    #[doc(alias = "IORING_SQ_TASKRUN")]
    pub fn task_work_pending(&self) -> Option<bool> {
        (self.core.params.flags & sys::IORING_SETUP_TASKRUN_FLAG != 0)
            .then(|| lock(&self.cq).sq_flags() & sys::IORING_SQ_TASKRUN != 0)
    }

    /// As [`Ring::cq_overflow_pending`](crate::Ring::cq_overflow_pending).
    #[doc(alias = "io_uring_cq_has_overflow")]
    pub fn cq_overflow_pending(&self) -> bool {
        lock(&self.cq).sq_flags() & sys::IORING_SQ_CQ_OVERFLOW != 0
    }

    /// As [`Ring::set_eventfd_enabled`](crate::Ring::set_eventfd_enabled)
    /// (under the CQ lock). Since Linux 5.8.
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`] before 5.8; [`Error::Stopped`].
    #[doc(alias = "io_uring_cq_eventfd_toggle")]
    #[doc(alias = "IORING_CQ_EVENTFD_DISABLED")]
    pub fn set_eventfd_enabled(&self, enabled: bool) -> Result<()> {
        if self.core.state == State::Stopped {
            return Err(Error::Stopped);
        }
        crate::core::set_eventfd_enabled(&lock(&self.cq), enabled)
    }

    /// As [`Ring::eventfd_enabled`](crate::Ring::eventfd_enabled).
    #[doc(alias = "io_uring_cq_eventfd_enabled")]
    pub fn eventfd_enabled(&self) -> bool {
        crate::core::eventfd_enabled(&lock(&self.cq))
    }

    /// What the kernel and this ring support.
    pub fn features(&self) -> &Features {
        &self.core.features
    }

    /// The register calls of this ring.
    pub fn register(&self) -> Registrar<'_> {
        Registrar::new(&self.core)
    }

    /// The context pools, locked.
    pub fn pools(&self) -> MutexGuard<'_, ContextPools> {
        lock(&self.pools)
    }

    /// Copies `sqe` into the next free entry.
    ///
    /// # Errors
    ///
    /// [`Error::QueueFull`], [`Error::NotStarted`], [`Error::Stopped`].
    ///
    /// # Safety
    ///
    /// As for [`Ring::next_sqe`](crate::Ring::next_sqe): the memory `sqe`
    /// names must stay valid until the operation's last CQE is reaped, by
    /// whichever thread reaps it.
    pub unsafe fn push(&self, sqe: &Sqe) -> Result<()> {
        self.core.check()?;
        let mut sq = lock(&self.sq);
        if sq.push(sqe) { Ok(()) } else { Err(Error::QueueFull { entries: sq.entries }) }
    }

    /// Acquires the next SQE with its slot's [`Keep`] under the SQ lock and
    /// lets `fill` write it (all 64 bytes: the entry is not zeroed), as
    /// [`Ring::next_sqe_keep`](crate::Ring::next_sqe_keep) does for the
    /// single-issuer ring. The entry is published by the next
    /// [`submit`](Self::submit) from any thread.
    ///
    /// # Errors
    ///
    /// As for [`push`](Self::push); `fill` is not called then.
    ///
    /// # Safety
    ///
    /// As for [`Ring::next_sqe_keep`](crate::Ring::next_sqe_keep): the
    /// memory the entry names must stay valid until the operation's last
    /// CQE is reaped; addresses into the `Keep` only until the kernel has
    /// consumed the entry. `fill` runs with the SQ lock held: it must not
    /// call back into this ring's submission side.
    pub unsafe fn push_with<R>(&self, fill: impl FnOnce(&mut Sqe, &mut Keep) -> R) -> Result<R> {
        self.core.check()?;
        let mut sq = lock(&self.sq);
        match sq.next_keep() {
            Some((slot, index)) => {
                // SAFETY: the slot is a 64-byte SQE this lock holder owns
                // until the tail is published (under the same lock); any
                // bytes are a valid `Sqe`.
                let sqe = unsafe { &mut *slot.cast::<Sqe>() };
                // SAFETY: `index` is the slot just acquired.
                Ok(fill(sqe, unsafe { sq.keep(index) }))
            }
            None => Err(Error::QueueFull { entries: sq.entries }),
        }
    }

    /// Acquires a 128-byte entry under the SQ lock, zeroed, and lets `fill`
    /// write it, as [`Ring::next_sqe128`](crate::Ring::next_sqe128) does
    /// for the single-issuer ring: one slot on a ring of
    /// [`Options::sqe128`](crate::Options::sqe128), two consecutive
    /// 64-byte slots on an `IORING_SETUP_SQE_MIXED` ring (6.19+; at the
    /// end of the SQ the last slot first gets a NOP that posts no CQE, as
    /// there). When `fill` returns an error the entry (and its padding) is
    /// given back, unpublished, and the error returned: all or nothing.
    /// The entry is published by the next [`submit`](Self::submit) from
    /// any thread. Since Linux 5.19 (`IORING_SETUP_SQE128`).
    ///
    /// # Errors
    ///
    /// As for [`Ring::next_sqe128`](crate::Ring::next_sqe128) (`fill` is
    /// not called then), or `fill`'s.
    ///
    /// # Safety
    ///
    /// As for [`Ring::next_sqe128`](crate::Ring::next_sqe128) (on a mixed
    /// ring the opcode written must be a 128-byte one, or `fill` must fail)
    /// and [`push_with`](Self::push_with): the memory the entry names must
    /// stay valid until its last CQE is reaped, by whichever thread reaps
    /// it; `fill` runs with the SQ lock held and must not call back into
    /// this ring's submission side.
    #[doc(alias = "io_uring_get_sqe128")]
    pub unsafe fn push128_with<R>(&self, fill: impl FnOnce(&mut Sqe128) -> Result<R>) -> Result<R> {
        self.core.check()?;
        let mut sq = lock(&self.sq);
        let slot = if self.core.features.sqe_size() == 128 {
            sq.next()
        } else if self.core.params.flags & sys::IORING_SETUP_SQE_MIXED != 0 {
            if sq.entries < 4 {
                return Err(Error::InvalidArgument(format!(
                    "a 128-byte SQE on an SQE_MIXED ring of {} entries: at the end of the SQ it needs a padding \
                     entry and two slots; create the ring with at least 4 entries",
                    sq.entries
                )));
            }
            sq.next_pair()
        } else {
            return Err(Error::unsupported(
                "128-byte SQE",
                Some("create the ring with Options::sqe128(true) or SetupFlags::SQE_MIXED (6.19+)"),
            ));
        };
        let Some(slot) = slot else {
            // `check` passed above and the lock is held: the SQ is full.
            return Err(Error::QueueFull { entries: sq.entries });
        };
        let sqe = slot.cast::<Sqe128>();
        // SAFETY: 128 bytes this lock holder owns until the tail is
        // published (under the same lock): one slot of an SQE128 ring, or
        // two consecutive 64-byte slots of a mixed ring (`next_pair` never
        // wraps).
        let filled = fill(unsafe {
            sqe.write(Sqe128::default());
            &mut *sqe
        });
        if filled.is_err() {
            // Unpublished (the lock is still held): the whole acquisition,
            // padding included, goes back.
            sq.retract();
        }
        filled
    }

    /// Copies all of `sqes` into consecutive entries, or none.
    ///
    /// # Errors
    ///
    /// As for [`push`](Self::push).
    ///
    /// # Safety
    ///
    /// As for [`push`](Self::push), for every entry.
    pub unsafe fn push_all(&self, sqes: &[Sqe]) -> Result<()> {
        self.core.check()?;
        let mut sq = lock(&self.sq);
        let n = u32::try_from(sqes.len()).unwrap_or(u32::MAX);
        if n > sq.entries {
            return Err(Error::InvalidArgument(format!("{n} entries can never fit an SQ of {} at once", sq.entries)));
        }
        if !sq.has_room(n) {
            return Err(Error::QueueFull { entries: sq.entries });
        }
        for sqe in sqes {
            sq.push(sqe);
        }
        Ok(())
    }

    /// Publishes and submits everything pushed so far, from any thread.
    pub fn submit(&self) -> Result<u32> {
        self.core.check()?;
        let mut sq = lock(&self.sq);
        let pending = sq.flush();
        if self.core.sqpoll {
            if pending > 0 && sq.needs_wakeup() {
                self.core.enter(0, 0, sys::IORING_ENTER_SQ_WAKEUP)?;
            }
            return Ok(pending);
        }
        if pending == 0 {
            return Ok(0);
        }
        // Entered under the SQ lock: another submitter must not publish
        // entries this enter would count twice.
        self.core.enter(pending, 0, 0)
    }

    /// As [`Ring::wait_sq_room`](crate::Ring::wait_sq_room): on an SQPOLL
    /// ring, publishes what is pushed and blocks (holding no lock) until
    /// the poller has made room; returns the free entries then. Other
    /// threads may take the room first: the result is what this thread
    /// saw. Without SQPOLL it returns at once. Since Linux 5.10.
    ///
    /// # Errors
    ///
    /// As for [`Ring::wait_sq_room`](crate::Ring::wait_sq_room).
    #[doc(alias = "io_uring_sqring_wait")]
    #[doc(alias = "IORING_ENTER_SQ_WAIT")]
    pub fn wait_sq_room(&self) -> Result<u32> {
        self.core.check()?;
        let wake = {
            let mut sq = lock(&self.sq);
            if !self.core.sqpoll {
                return Ok(sq.space_left());
            }
            let unconsumed = sq.flush();
            let space = sq.space_left();
            let wake = unconsumed > 0 && sq.needs_wakeup();
            if space > 0 {
                if wake {
                    self.core.enter(0, 0, sys::IORING_ENTER_SQ_WAKEUP)?;
                }
                return Ok(space);
            }
            wake
        };
        let wake = if wake { sys::IORING_ENTER_SQ_WAKEUP } else { 0 };
        self.core.enter(0, 0, sys::IORING_ENTER_SQ_WAIT | wake)?;
        Ok(lock(&self.sq).space_left())
    }

    /// Submits, then copies ready completions into `out` without blocking;
    /// returns how many (`out[..n]`).
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`] when nothing is observable.
    pub fn reap(&self, out: &mut [CqeSlot]) -> Result<usize> {
        if out.is_empty() {
            return Err(Error::InvalidArgument("an empty slice of CqeSlots can hold no completion".into()));
        }
        self.submit()?;
        let mut cq = lock(&self.cq);
        if self.core.needs_getevents(&cq, cq.ready() == 0) {
            self.core.enter(0, 0, sys::IORING_ENTER_GETEVENTS)?;
        }
        match cq.reap_into(out) {
            0 => Err(Error::WouldBlock),
            n => Ok(n),
        }
    }

    /// Submits, blocks (holding no lock) until `min` completions are ready
    /// or `timeout` passes, then reaps into `out`.
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`] when the timeout passed with nothing ready.
    pub fn wait_for(&self, out: &mut [CqeSlot], min: u32, timeout: Option<Duration>) -> Result<usize> {
        if out.is_empty() {
            return Err(Error::InvalidArgument("an empty slice of CqeSlots can hold no completion".into()));
        }
        self.submit()?;
        self.core.enter_wait(0, &WaitArgs { min, timeout, ..WaitArgs::default() })?;
        match lock(&self.cq).reap_into(out) {
            0 => Err(Error::WouldBlock),
            n => Ok(n),
        }
    }
}

impl Drop for SharedRing {
    /// Stops the ring before any field drops, as [`Ring`](crate::Ring)'s
    /// `Drop` does.
    fn drop(&mut self) {
        self.stop();
    }
}

impl AsRawFd for SharedRing {
    /// The ring fd (-1 once stopped).
    fn as_raw_fd(&self) -> RawFd {
        if self.core.fd.is_some() { self.core.raw_fd } else { -1 }
    }
}
