//! Registered wait arguments: [`WaitRegion`].

use std::ffi::c_void;
use std::sync::Arc;
use std::time::Duration;

use uring_sys as sys;

use crate::error::{Error, Result};
use crate::queue::Mapping;
use crate::ring::{Ring, State};
use crate::sigmask::{KERNEL_SIGSET_BYTES, SigMask};
use crate::{CqeSlot, Reaped};

const SLOT: usize = size_of::<sys::io_uring_reg_wait>();

/// What one slot of a [`WaitRegion`] says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegWait {
    /// Give up after this long; with [`Ring::wait_registered`]'s
    /// `absolute`, at this time on the ring's clock.
    pub timeout: Option<Duration>,
    /// Return with at least one completion after this long (as
    /// [`WaitArgs::min_wait`](crate::WaitArgs::min_wait)).
    pub min_wait: Option<Duration>,
    /// The signal mask during the wait (as
    /// [`WaitArgs::sigmask`](crate::WaitArgs::sigmask)).
    pub sigmask: Option<SigMask>,
}

/// Registered wait arguments of one ring (`IORING_REGISTER_MEM_REGION`
/// with `IORING_MEM_REGION_REG_WAIT_ARG`, since 6.13).
///
/// A wait normally hands the kernel an `io_uring_getevents_arg` (and a
/// timespec, a signal set) that it copies in on every call. With a wait
/// region the arguments live in memory registered once; a wait names a
/// slot by its offset (`IORING_ENTER_EXT_ARG_REG`) and the kernel reads
/// the slot through its own mapping of the pinned pages: nothing is
/// copied from user space but the signal set, which the library keeps in
/// the same region. [`Ring::wait_registered`] waits with a slot.
///
/// The region must be registered while the ring is still disabled
/// (between [`Ring::new`] and [`Ring::start`]; the kernel refuses
/// otherwise, as it cannot synchronize with waiters). Its memory is
/// [attached](Ring::attach) to the ring: it outlives every wait.
#[derive(Debug)]
pub struct WaitRegion {
    mem: Arc<Mapping>,
    slots: u32,
    ring_id: u64,
}

impl WaitRegion {
    /// Allocates and registers a region of `slots` wait slots (all empty:
    /// no timeout, no signal mask) with `ring`, which must not be started
    /// yet.
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyEnabled`] after `start`; [`Error::InvalidArgument`]
    /// for 0 slots or more than fit in 1 MiB; [`Error::Io`] (`EBUSY`: the
    /// ring has a region; `EINVAL` before 6.13).
    pub fn register(ring: &mut Ring, slots: u32) -> Result<Self> {
        match ring.state() {
            State::Created => {}
            State::Started => {
                return Err(Error::AlreadyEnabled { what: "IORING_REGISTER_MEM_REGION (wait arguments)" });
            }
            State::Stopped => return Err(Error::Stopped),
        }
        let bytes = (slots as usize) * (SLOT + KERNEL_SIGSET_BYTES as usize);
        if slots == 0 || bytes > 1 << 20 {
            return Err(Error::InvalidArgument(format!("{slots} wait slots: need 1 to fit in 1 MiB")));
        }
        let mem = Arc::new(Mapping::anonymous(bytes, false).map_err(|e| Error::io("mmap (wait region)", e))?);
        let mut rd = sys::io_uring_region_desc {
            user_addr: mem.ptr() as u64,
            size: mem.len() as u64,
            flags: sys::IORING_MEM_REGION_TYPE_USER,
            ..Default::default()
        };
        let reg = sys::io_uring_mem_region_reg {
            region_uptr: (&mut rd as *mut sys::io_uring_region_desc) as u64,
            flags: u64::from(sys::IORING_MEM_REGION_REG_WAIT_ARG),
            ..Default::default()
        };
        // SAFETY: MEM_REGION reads one io_uring_mem_region_reg and the
        // region descriptor it points to (and may write the descriptor
        // back), both valid for the call; the region's pages are pinned by
        // the kernel and the mapping is attached to the ring below, so it
        // outlives the registration.
        unsafe {
            ring.register().raw(
                "IORING_REGISTER_MEM_REGION",
                sys::IORING_REGISTER_MEM_REGION,
                (&reg as *const sys::io_uring_mem_region_reg).cast::<c_void>(),
                1,
            )
        }?;
        ring.attach(Box::new(mem.clone()))?;
        Ok(WaitRegion { mem, slots, ring_id: ring.id() })
    }

    /// Slots in the region.
    pub fn slots(&self) -> u32 {
        self.slots
    }

    /// Writes slot `slot`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a slot outside the region, or a
    /// minimum wait beyond `u32` microseconds.
    pub fn set(&mut self, slot: u32, wait: RegWait) -> Result<()> {
        if slot >= self.slots {
            return Err(Error::InvalidArgument(format!("wait slot {slot} of {}", self.slots)));
        }
        let min_wait_usec = match wait.min_wait {
            None => 0,
            Some(d) => u32::try_from(d.as_micros())
                .map_err(|_| Error::InvalidArgument(format!("min_wait {d:?} exceeds u32 microseconds")))?,
        };
        let sigset = self.sigset_ptr(slot);
        let mut w = sys::io_uring_reg_wait { min_wait_usec, ..Default::default() };
        if let Some(t) = wait.timeout {
            w.ts = sys::__kernel_timespec {
                tv_sec: t.as_secs().min(i64::MAX as u64) as i64,
                tv_nsec: i64::from(t.subsec_nanos()),
            };
            w.flags = sys::IORING_REG_WAIT_TS;
        }
        if let Some(m) = wait.sigmask {
            // The kernel reads `sigmask_sz` bytes of the set at the address
            // in the slot: the library's copy in the region.
            // SAFETY: `sigset` points at this slot's 8 bytes inside the
            // region (see `sigset_ptr`); sigset_t is at least that long.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    (m.as_raw() as *const libc::sigset_t).cast::<u8>(),
                    sigset,
                    KERNEL_SIGSET_BYTES as usize,
                );
            }
            w.sigmask = sigset as u64;
            w.sigmask_sz = KERNEL_SIGSET_BYTES;
        }
        // SAFETY: slot `slot` lies inside the region (checked); the kernel
        // reads it only during a wait of this region's ring, which takes
        // `&mut Ring` on the thread that owns it, and reads each field
        // once (a torn read yields odd arguments, never a fault in Rust's
        // memory).
        unsafe { std::ptr::write_volatile(self.mem.ptr().add(slot as usize * SLOT).cast(), w) };
        Ok(())
    }

    fn sigset_ptr(&self, slot: u32) -> *mut u8 {
        // SAFETY: the sets follow the slots, 8 bytes each; `slot` is below
        // `slots` (checked by the callers).
        unsafe { self.mem.ptr().add(self.slots as usize * SLOT + slot as usize * KERNEL_SIGSET_BYTES as usize) }
    }
}

impl Ring {
    /// Waits for at least `min` completions with the arguments in slot
    /// `slot` of `region` (`IORING_ENTER_EXT_ARG_REG`): its timeout is
    /// relative, or with `absolute` a time on the ring's clock
    /// (`IORING_ENTER_ABS_TIMER`). Submits what is pending first, then
    /// reaps as [`reap`](Self::reap) does.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a region of another ring or a slot
    /// outside it; [`Error::Unsupported`] on an SQPOLL ring;
    /// [`Error::WouldBlock`] when the wait ended with nothing ready;
    /// [`Error::Io`] (`EINTR` for a signal the slot's mask let through).
    pub fn wait_registered<'a>(
        &'a mut self,
        out: &'a mut [CqeSlot],
        min: u32,
        region: &WaitRegion,
        slot: u32,
        absolute: bool,
    ) -> Result<Reaped<'a>> {
        self.core.check()?;
        if region.ring_id != self.id() {
            return Err(Error::InvalidArgument(format!(
                "this wait region is registered with ring {}, not ring {}",
                region.ring_id,
                self.id()
            )));
        }
        if slot >= region.slots {
            return Err(Error::InvalidArgument(format!("wait slot {slot} of {}", region.slots)));
        }
        if self.core.sqpoll {
            return Err(Error::unsupported("registered wait arguments on an SQPOLL ring", None));
        }
        let pending = self.sq.flush();
        let (fd, via) = self.core.enter_target();
        let mut flags = sys::IORING_ENTER_GETEVENTS | sys::IORING_ENTER_EXT_ARG | sys::IORING_ENTER_EXT_ARG_REG | via;
        if absolute {
            flags |= sys::IORING_ENTER_ABS_TIMER;
        }
        // SAFETY: with EXT_ARG_REG the argument is an offset into the
        // ring's registered region, not an address: the kernel checks it
        // against the region's size and reads the slot through its own
        // mapping (kept alive by the ring: the region is attached).
        let r = unsafe { sys::io_uring_enter2(fd, pending, min, flags, (slot as usize * SLOT) as *const c_void, SLOT) };
        match r {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ETIME) => {}
            Err(e) => return Err(self.core.failed("io_uring_enter", e)),
        }
        self.reap(out)
    }
}
