//! Registered (fixed) buffers: memory the library allocates, page aligned,
//! and registers with `IORING_REGISTER_BUFFERS2`, so fixed-buffer
//! operations name it by index and the kernel skips pinning it per request.
//!
//! The table is dense ([`RegisteredBuffers::register`]: `count` buffers of
//! `size` bytes in one region, optionally from huge pages) or sparse
//! ([`RegisteredBuffers::sparse`]: empty slots to
//! [`install`](RegisteredBuffers::install) buffers into later). Another ring
//! can share the same buffers ([`clone_into`](RegisteredBuffers::clone_into),
//! `IORING_REGISTER_CLONE_BUFFERS`, since 6.12).
//!
//! Registered memory is pinned and counts against `RLIMIT_MEMLOCK` for
//! processes without `CAP_IPC_LOCK`; when the limit stops a registration
//! the error ([`Error::LockedMemory`]) says which limit, how much was
//! asked, and how to raise it, and a smaller table can be registered
//! instead.
//!
//! The memory is [attached](uring_core::Ring::attach) to every ring that
//! registered it, so the kernel never writes into freed memory.

use std::ffi::c_void;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use uring_core::{Mapping, Ring, State, sys};

use crate::error::{Error, Result, memlock_limit};

/// The kernel's limit on one registered buffer: 1 GiB.
pub const MAX_BUFFER: usize = 1 << 30;

/// The kernel's limit on the table: 16384 buffers (`IORING_MAX_REG_BUFFERS`).
pub const MAX_BUFFERS: u32 = 1 << 14;

#[derive(Debug, Clone)]
struct Slot {
    region: Arc<Mapping>,
    offset: usize,
    len: usize,
}

/// A table of registered buffers; see the [module documentation](self).
///
/// Access to buffer contents goes through `&self`/`&mut self`
/// ([`buffer`](Self::buffer), [`buffer_mut`](Self::buffer_mut)); operations
/// that let the kernel write into a buffer take the table mutably (or the
/// buffer's token, in the safe fixed-I/O layer), so Rust never holds a
/// borrow of bytes the kernel is writing.
#[derive(Debug)]
pub struct RegisteredBuffers {
    slots: Vec<Option<Slot>>,
    /// The ring whose table this is ([`Ring::id`]): `install`,
    /// `clone_into` and `unregister` act on that ring's table only.
    ring_id: u64,
}

/// Turns a registration errno into the error that explains it.
fn registration_error(what: &'static str, asked: usize, e: uring_core::Error) -> Error {
    if let uring_core::Error::Io { source, .. } = &e
        && source.raw_os_error() == Some(libc::ENOMEM)
    {
        return Error::LockedMemory { what, asked, limit: memlock_limit() };
    }
    e.into()
}

impl RegisteredBuffers {
    /// Allocates `count` buffers of `size` bytes (one page-aligned region,
    /// each buffer starting on a page boundary) and registers them as
    /// slots `0..count` of `ring`'s table. Before or after `start`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] before any syscall (0 buffers, more than
    /// [`MAX_BUFFERS`], a size of 0 or above [`MAX_BUFFER`]);
    /// [`Error::Alloc`]; [`Error::LockedMemory`]; [`Error::Core`] (`EBUSY`:
    /// the ring has a table already).
    pub fn register(ring: &mut Ring, count: u32, size: usize) -> Result<Self> {
        Self::register_with(ring, count, size, false)
    }

    /// As [`register`](Self::register), from 2 MiB huge pages
    /// (`MAP_HUGETLB`): fewer pages for the kernel to pin and map.
    ///
    /// # Errors
    ///
    /// As for [`register`](Self::register); [`Error::Alloc`] names huge
    /// pages when `vm.nr_hugepages` has too few.
    pub fn register_huge(ring: &mut Ring, count: u32, size: usize) -> Result<Self> {
        Self::register_with(ring, count, size, true)
    }

    fn register_with(ring: &mut Ring, count: u32, size: usize, huge: bool) -> Result<Self> {
        check_count(count)?;
        check_size(size)?;
        check_ring(ring)?;
        let stride = size.next_multiple_of(Mapping::page_size());
        let total = stride.checked_mul(count as usize).ok_or_else(|| Error::invalid("table too large"))?;
        let region = Arc::new(Mapping::anonymous(total, huge).map_err(|source| Error::Alloc {
            what: "registered buffers",
            bytes: total,
            huge,
            source,
        })?);
        let slots: Vec<Option<Slot>> =
            (0..count as usize).map(|i| Some(Slot { region: region.clone(), offset: i * stride, len: size })).collect();
        let iovecs: Vec<libc::iovec> = slots.iter().map(|s| iovec(s.as_ref())).collect();
        let reg = sys::io_uring_rsrc_register { nr: count, data: iovecs.as_ptr() as u64, ..Default::default() };
        // SAFETY: BUFFERS2 reads one io_uring_rsrc_register and `count`
        // iovecs, valid for the call; the buffers are pinned by the kernel
        // and the region is attached to `ring` below, so it outlives them.
        unsafe { buffers2(ring, &reg) }.map_err(|e| registration_error("registered buffers", total, e))?;
        if let Err(e) = ring.attach(Box::new(region)) {
            return Err(e.into());
        }
        Ok(RegisteredBuffers { slots, ring_id: ring.id() })
    }

    /// Registers a table of `count` empty slots
    /// (`IORING_RSRC_REGISTER_SPARSE`), to [`install`](Self::install)
    /// buffers into.
    ///
    /// # Errors
    ///
    /// As for [`register`](Self::register).
    pub fn sparse(ring: &mut Ring, count: u32) -> Result<Self> {
        check_count(count)?;
        check_ring(ring)?;
        let reg =
            sys::io_uring_rsrc_register { nr: count, flags: sys::IORING_RSRC_REGISTER_SPARSE, ..Default::default() };
        // SAFETY: a sparse table names no memory.
        unsafe { buffers2(ring, &reg) }.map_err(|e| registration_error("a sparse buffer table", 0, e))?;
        Ok(RegisteredBuffers { slots: vec![None; count as usize], ring_id: ring.id() })
    }

    /// Allocates a buffer of `size` bytes and installs it in slot `index`
    /// (`IORING_REGISTER_BUFFERS_UPDATE`), replacing what was there. The
    /// kernel keeps a replaced buffer until the operations using it end.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for an index outside the table or a bad
    /// size; [`Error::Alloc`]; [`Error::LockedMemory`]; [`Error::Core`].
    pub fn install(&mut self, ring: &mut Ring, index: u32, size: usize) -> Result<()> {
        self.check_owner(ring)?;
        check_size(size)?;
        check_ring(ring)?;
        if index as usize >= self.slots.len() {
            return Err(Error::invalid(format!("slot {index} is outside the table of {}", self.slots.len())));
        }
        let region = Arc::new(Mapping::anonymous(size, false).map_err(|source| Error::Alloc {
            what: "a registered buffer",
            bytes: size,
            huge: false,
            source,
        })?);
        let slot = Slot { region: region.clone(), offset: 0, len: size };
        let iov = iovec(Some(&slot));
        let upd = sys::io_uring_rsrc_update2 {
            offset: index,
            data: (&iov as *const libc::iovec) as u64,
            nr: 1,
            ..Default::default()
        };
        // SAFETY: BUFFERS_UPDATE reads one io_uring_rsrc_update2 and one
        // iovec, valid for the call; the buffer is pinned by the kernel and
        // attached to `ring` below.
        let n = unsafe {
            ring.register().raw(
                "IORING_REGISTER_BUFFERS_UPDATE",
                sys::IORING_REGISTER_BUFFERS_UPDATE,
                (&upd as *const sys::io_uring_rsrc_update2).cast::<c_void>(),
                size_of::<sys::io_uring_rsrc_update2>() as u32,
            )
        }
        .map_err(|e| registration_error("a registered buffer", size.next_multiple_of(Mapping::page_size()), e))?;
        if n != 1 {
            return Err(Error::invalid(format!("the kernel updated {n} slots instead of 1")));
        }
        ring.attach(Box::new(region))?;
        self.slots[index as usize] = Some(slot);
        Ok(())
    }

    /// Registers the same buffers as `dst`'s table
    /// (`IORING_REGISTER_CLONE_BUFFERS`, since 6.12): both rings' fixed
    /// operations then use the same memory. `dst` must have no table yet.
    ///
    /// # Errors
    ///
    /// [`Error::Core`]: `EBUSY` when `dst` has a table, `Unsupported` on
    /// kernels without the call.
    pub fn clone_into(&self, src: &Ring, dst: &mut Ring) -> Result<RegisteredBuffers> {
        self.check_owner(src)?;
        check_ring(dst)?;
        let arg = sys::io_uring_clone_buffers {
            src_fd: src.as_raw_fd() as u32,
            nr: self.slots.len() as u32,
            ..Default::default()
        };
        // SAFETY: CLONE_BUFFERS reads one io_uring_clone_buffers; the
        // cloned buffers' memory is attached to `dst` below.
        unsafe {
            dst.register().raw(
                "IORING_REGISTER_CLONE_BUFFERS",
                sys::IORING_REGISTER_CLONE_BUFFERS,
                (&arg as *const sys::io_uring_clone_buffers).cast::<c_void>(),
                1,
            )
        }?;
        for slot in self.slots.iter().flatten() {
            dst.attach(Box::new(slot.region.clone()))?;
        }
        Ok(RegisteredBuffers { slots: self.slots.clone(), ring_id: dst.id() })
    }

    /// Refuses a ring other than the one whose table this is: its table
    /// slot `i` is other memory, which this value would describe wrongly
    /// (and lend out while that ring's fixed operations use it).
    fn check_owner(&self, ring: &Ring) -> Result<()> {
        if ring.id() == self.ring_id {
            Ok(())
        } else {
            Err(Error::invalid(format!(
                "this table is registered with ring {}, not with ring {} (fd {})",
                self.ring_id,
                ring.id(),
                ring.as_raw_fd()
            )))
        }
    }

    /// Slots in the table.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the table has no slots.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Whether slot `index` holds a buffer.
    pub fn is_installed(&self, index: u32) -> bool {
        self.slots.get(index as usize).is_some_and(Option::is_some)
    }

    /// The address and length of buffer `index`, for preparing fixed
    /// operations (`sqe->addr` must lie inside the buffer).
    pub fn raw_parts(&self, index: u32) -> Option<(*mut u8, usize)> {
        let s = self.slots.get(index as usize)?.as_ref()?;
        // SAFETY: offset + len lies inside the region (built that way).
        Some((unsafe { s.region.ptr().add(s.offset) }, s.len))
    }

    /// The bytes of buffer `index`.
    ///
    /// Reading while a fixed read into the same buffer is in flight shows
    /// whatever the kernel has written so far; the safe fixed-I/O calls
    /// take the buffer for the duration of the operation so that cannot
    /// happen through them.
    pub fn buffer(&self, index: u32) -> Option<&[u8]> {
        let (p, len) = self.raw_parts(index)?;
        // SAFETY: the region is mapped as long as `self` holds its Arc; the
        // bytes are initialized (zeroed by mmap).
        Some(unsafe { std::slice::from_raw_parts(p, len) })
    }

    /// The bytes of buffer `index`, writable.
    pub fn buffer_mut(&mut self, index: u32) -> Option<&mut [u8]> {
        let (p, len) = self.raw_parts(index)?;
        // SAFETY: as in `buffer`; `&mut self` makes the borrow unique among
        // the handles of this table (a clone in another ring shares the
        // memory: see `clone_into`).
        Some(unsafe { std::slice::from_raw_parts_mut(p, len) })
    }

    /// Unregisters the table (`IORING_UNREGISTER_BUFFERS`). The memory stays
    /// attached to the ring until it closes.
    ///
    /// # Errors
    ///
    /// [`Error::Core`] when the kernel refuses.
    pub fn unregister(self, ring: &mut Ring) -> Result<()> {
        self.check_owner(ring)?;
        // SAFETY: UNREGISTER_BUFFERS takes no argument.
        unsafe {
            ring.register().raw("IORING_UNREGISTER_BUFFERS", sys::IORING_UNREGISTER_BUFFERS, std::ptr::null(), 0)
        }?;
        Ok(())
    }
}

fn iovec(slot: Option<&Slot>) -> libc::iovec {
    match slot {
        // SAFETY: offset lies inside the region.
        Some(s) => libc::iovec { iov_base: unsafe { s.region.ptr().add(s.offset) }.cast(), iov_len: s.len },
        None => libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 },
    }
}

/// # Safety
///
/// `reg.data`, if set, must point to `reg.nr` iovecs valid for the call,
/// naming memory that outlives the registration.
unsafe fn buffers2(ring: &Ring, reg: &sys::io_uring_rsrc_register) -> uring_core::Result<u32> {
    // SAFETY: forwarded to the caller.
    unsafe {
        ring.register().raw(
            "IORING_REGISTER_BUFFERS2",
            sys::IORING_REGISTER_BUFFERS2,
            (reg as *const sys::io_uring_rsrc_register).cast::<c_void>(),
            size_of::<sys::io_uring_rsrc_register>() as u32,
        )
    }
}

fn check_count(count: u32) -> Result<()> {
    if count == 0 || count > MAX_BUFFERS {
        return Err(Error::invalid(format!("{count} registered buffers: need 1 to {MAX_BUFFERS}")));
    }
    Ok(())
}

fn check_size(size: usize) -> Result<()> {
    if size == 0 || size > MAX_BUFFER {
        return Err(Error::invalid(format!("a registered buffer of {size} bytes: need 1 byte to 1 GiB")));
    }
    Ok(())
}

fn check_ring(ring: &Ring) -> Result<()> {
    if ring.state() == State::Stopped {
        return Err(uring_core::Error::Stopped.into());
    }
    Ok(())
}
