//! Registered (fixed) buffers: memory the library allocates, page aligned,
//! and registers with `IORING_REGISTER_BUFFERS2`, so fixed-buffer
//! operations name it by index and the kernel skips pinning it per request.
//!
//! The table is dense ([`RegisteredBuffers::register`]: `count` buffers of
//! `size` bytes in one region, optionally from huge pages) or sparse
//! ([`RegisteredBuffers::sparse`]: empty slots to
//! [`install`](RegisteredBuffers::install) buffers into later). Another ring
//! can share the same buffers ([`clone_into`](RegisteredBuffers::clone_into),
//! `IORING_REGISTER_CLONE_BUFFERS`, since 6.12), or some of them, at an
//! offset of its table ([`clone_range_into`](RegisteredBuffers::clone_range_into))
//! or over slots of the table it has
//! ([`clone_range_replace`](RegisteredBuffers::clone_range_replace), both
//! since 6.13). A buffer two tables hold is readable through both and
//! writable through neither ([`is_shared`](RegisteredBuffers::is_shared)).
//!
//! Registered memory is pinned and counts against `RLIMIT_MEMLOCK` for
//! processes without `CAP_IPC_LOCK`; when the limit stops a registration
//! the error ([`Error::LockedMemory`]) says which limit, how much was
//! asked, and how to raise it, and a smaller table can be registered
//! instead.
//!
//! The memory is [attached](uring_core::Ring::attach) to every ring that
//! registered it, so the kernel never writes into freed memory.
//!
//! The caller's own memory (a `Vec`, a `Box<[u8]>`, a huge-page
//! [`Mapping`], an arena split into buffers) moves into a table with
//! [`register_memory`](RegisteredBuffers::register_memory) and
//! [`replace`](RegisteredBuffers::replace), and comes back after the
//! kernel's resource-tag CQE ([`handle_tag`](RegisteredBuffers::handle_tag));
//! see [`caller`](crate::caller).

use std::ffi::c_void;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use uring_core::{Cqe, Mapping, Ring, State, sys};

use crate::caller::{CallerRegion, CallerSlot, CallerState, TagEvent};
use crate::error::{Error, Result, memlock_limit};

/// The kernel's limit on one registered buffer: 1 GiB.
pub const MAX_BUFFER: usize = 1 << 30;

/// The kernel's limit on the table: 16384 buffers (`IORING_MAX_REG_BUFFERS`).
pub const MAX_BUFFERS: u32 = 1 << 14;

#[derive(Debug, Clone)]
struct Slot {
    addr: usize,
    len: usize,
    mem: SlotMem,
    /// One per registered buffer, cloned with the slot into every table
    /// a clone makes (`clone_into`, `clone_range_into`,
    /// `clone_range_replace`): more than one holder means another table
    /// reaches the same bytes, and `buffer_mut` refuses them.
    holders: Arc<()>,
}

/// Whose memory a slot holds.
#[derive(Debug, Clone)]
enum SlotMem {
    /// The library's, attached to the ring.
    Library(#[allow(dead_code)] Arc<Mapping>),
    /// The caller's, parked in the vault until its tag comes back.
    Caller(CallerSlot),
}

impl Slot {
    fn library(region: &Arc<Mapping>, offset: usize, len: usize) -> Self {
        Slot { addr: region.ptr() as usize + offset, len, mem: SlotMem::Library(region.clone()), holders: Arc::new(()) }
    }

    fn caller(addr: usize, len: usize, slot: CallerSlot) -> Self {
        Slot { addr, len, mem: SlotMem::Caller(slot), holders: Arc::new(()) }
    }

    /// Whether another table holds this buffer too (a clone).
    fn is_shared(&self) -> bool {
        Arc::strong_count(&self.holders) > 1
    }
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
    /// Caller memory: the vault, the tags awaited.
    caller: Option<CallerState>,
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
            (0..count as usize).map(|i| Some(Slot::library(&region, i * stride, size))).collect();
        let iovecs: Vec<libc::iovec> = slots.iter().map(|s| iovec(s.as_ref())).collect();
        let reg = sys::io_uring_rsrc_register { nr: count, data: iovecs.as_ptr() as u64, ..Default::default() };
        // SAFETY: BUFFERS2 reads one io_uring_rsrc_register and `count`
        // iovecs, valid for the call; the buffers are pinned by the kernel
        // and the region is attached to `ring` below, so it outlives them.
        unsafe { buffers2(ring, &reg) }.map_err(|e| registration_error("registered buffers", total, e))?;
        if let Err(e) = ring.attach(Box::new(region)) {
            return Err(e.into());
        }
        Ok(RegisteredBuffers { slots, ring_id: ring.id(), caller: None })
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
        Ok(RegisteredBuffers { slots: vec![None; count as usize], ring_id: ring.id(), caller: None })
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
        let slot = Slot::library(&region, 0, size);
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
        self.retire(index, ring.cq_position());
        self.slots[index as usize] = Some(slot);
        Ok(())
    }

    /// Moves the caller's memory into a new table: each region's buffers
    /// become the next slots, in order (`IORING_REGISTER_BUFFERS2` with a
    /// resource tag per buffer). The memory comes back through
    /// [`handle_tag`](Self::handle_tag) once it has left the table
    /// ([`replace`](Self::replace), [`remove`](Self::remove)) and the
    /// kernel has let go of it; until then (and, if it never leaves, until
    /// the ring has closed) it is parked in a vault attached to the ring.
    /// See [`caller`](crate::caller).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] before any syscall (no regions, an empty
    /// one, more than [`MAX_BUFFERS`] buffers, a buffer above
    /// [`MAX_BUFFER`]); [`Error::LockedMemory`]; [`Error::Core`] (`EBUSY`:
    /// the ring has a table already; `EFAULT`: memory the kernel cannot
    /// pin, such as a file mapping). The regions are dropped on error.
    pub fn register_memory(ring: &mut Ring, regions: Vec<CallerRegion>) -> Result<Self> {
        check_ring(ring)?;
        if regions.is_empty() {
            return Err(Error::invalid("no regions to register"));
        }
        let mut count = 0usize;
        for r in &regions {
            r.check()?;
            count += r.buffers();
        }
        check_count(u32::try_from(count).unwrap_or(u32::MAX))?;
        let mut caller = CallerState::new(ring)?;
        let mut iovecs = Vec::with_capacity(count);
        let mut tags = Vec::with_capacity(count);
        for r in &regions {
            iovecs.extend(r.pieces().map(|(addr, len)| libc::iovec { iov_base: addr as *mut c_void, iov_len: len }));
            tags.extend(CallerState::tags(r)?);
        }
        let total = regions.iter().map(CallerRegion::len).sum();
        let reg = sys::io_uring_rsrc_register {
            nr: count as u32,
            data: iovecs.as_ptr() as u64,
            tags: tags.as_ptr() as u64,
            ..Default::default()
        };
        // SAFETY: BUFFERS2 reads one io_uring_rsrc_register, `count`
        // iovecs and `count` tags, valid for the call; the memory is owned
        // by the regions (a `FixedMemory` promises it stays put and
        // unreached while parked), which move into the vault attached to
        // the ring below and leave it only through a tag CQE.
        unsafe { buffers2(ring, &reg) }.map_err(|e| registration_error("caller memory", total, e))?;
        let mut slots = Vec::with_capacity(count);
        let mut tag = tags.into_iter();
        for r in regions {
            let pieces: Vec<(usize, usize)> = r.pieces().collect();
            let region = caller.admit(r, pieces.len() as u32);
            for (addr, len) in pieces {
                let tag = tag.next().expect("one tag per buffer");
                slots.push(Some(Slot::caller(addr, len, CallerSlot { region, tag })));
            }
        }
        Ok(RegisteredBuffers { slots, ring_id: ring.id(), caller: Some(caller) })
    }

    /// Moves the caller's memory into slots `index..index + n` of the
    /// table, `n` being the region's buffer count
    /// (`IORING_REGISTER_BUFFERS_UPDATE` with tags), replacing what was
    /// there; returns `n`. Replaced caller memory comes back through
    /// [`handle_tag`](Self::handle_tag) after the requests still using it
    /// have completed; replaced library memory stays attached to the ring.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for slots outside the table or a bad
    /// region; [`Error::LockedMemory`]; [`Error::Core`]. The region is
    /// dropped on error. Should the kernel install only some of the
    /// buffers (it stops at the first it cannot pin), those stay in the
    /// table and the error says how many.
    pub fn replace(&mut self, ring: &mut Ring, index: u32, region: CallerRegion) -> Result<u32> {
        self.check_owner(ring)?;
        check_ring(ring)?;
        region.check()?;
        let n = region.buffers();
        if index as usize + n > self.slots.len() {
            return Err(Error::invalid(format!(
                "{n} buffers from slot {index} do not fit the table of {}",
                self.slots.len()
            )));
        }
        if self.caller.is_none() {
            self.caller = Some(CallerState::new(ring)?);
        }
        let iovecs: Vec<libc::iovec> =
            region.pieces().map(|(addr, len)| libc::iovec { iov_base: addr as *mut c_void, iov_len: len }).collect();
        let tags = CallerState::tags(&region)?;
        // SAFETY: the iovecs name memory the region owns, which moves into
        // the vault attached to the ring right after the call.
        let done = unsafe { self.update(ring, index, &iovecs, &tags) }
            .map_err(|e| registration_error("caller memory", region.len(), e))?;
        let since = ring.cq_position();
        for i in 0..done {
            self.retire(index + i, since);
        }
        let caller = self.caller.as_mut().expect("made above");
        let pieces: Vec<(usize, usize)> = region.pieces().take(done as usize).collect();
        let id = caller.admit(region, done);
        for (i, (addr, len)) in pieces.into_iter().enumerate() {
            self.slots[index as usize + i] = Some(Slot::caller(addr, len, CallerSlot { region: id, tag: tags[i] }));
        }
        if done as usize != n {
            return Err(Error::invalid(format!("the kernel installed {done} of {n} buffers from slot {index}")));
        }
        Ok(done)
    }

    /// Empties slot `index` (`IORING_REGISTER_BUFFERS_UPDATE` with no
    /// buffer). Caller memory that was there comes back through
    /// [`handle_tag`](Self::handle_tag).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a slot outside the table;
    /// [`Error::Core`].
    pub fn remove(&mut self, ring: &mut Ring, index: u32) -> Result<()> {
        self.check_owner(ring)?;
        check_ring(ring)?;
        if index as usize >= self.slots.len() {
            return Err(Error::invalid(format!("slot {index} is outside the table of {}", self.slots.len())));
        }
        let empty = libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 };
        // SAFETY: an empty iovec names no memory.
        unsafe { self.update(ring, index, std::slice::from_ref(&empty), &[0]) }?;
        self.retire(index, ring.cq_position());
        Ok(())
    }

    /// Empties every slot (one `IORING_REGISTER_BUFFERS_UPDATE`): the
    /// caller memory in the table comes back through
    /// [`handle_tag`](Self::handle_tag), each region once the kernel has
    /// let go of all its buffers. Then [`unregister`](Self::unregister)
    /// loses nothing.
    ///
    /// # Errors
    ///
    /// [`Error::Core`].
    pub fn clear(&mut self, ring: &mut Ring) -> Result<()> {
        self.check_owner(ring)?;
        check_ring(ring)?;
        let n = self.slots.len();
        let empty = vec![libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; n];
        let tags = vec![0u64; n];
        // SAFETY: empty iovecs name no memory.
        let done = unsafe { self.update(ring, 0, &empty, &tags) }?;
        let since = ring.cq_position();
        for i in 0..done {
            self.retire(i, since);
        }
        if done as usize != n {
            return Err(Error::invalid(format!("the kernel emptied {done} of {n} slots")));
        }
        Ok(())
    }

    /// Interprets a resource-tag CQE: `None` unless it is the tag of a
    /// buffer of caller memory that left this table (reaped from the
    /// table's ring, at or after the CQ position when it left, presented
    /// for the first time), else which slot it was in and, when it was
    /// the last of its region's buffers the kernel held, the region's
    /// memory. See [`caller`](crate::caller).
    pub fn handle_tag(&mut self, cqe: &Cqe<'_>) -> Option<TagEvent> {
        self.caller.as_mut()?.handle(self.ring_id, cqe)
    }

    /// Buffers of caller memory that have left the table and whose tag
    /// CQE has not been handed to [`handle_tag`](Self::handle_tag).
    pub fn pending_tags(&self) -> usize {
        self.caller.as_ref().map_or(0, CallerState::pending)
    }

    /// Whether slot `index` holds the caller's memory.
    pub fn is_caller_memory(&self, index: u32) -> bool {
        matches!(self.slots.get(index as usize), Some(Some(Slot { mem: SlotMem::Caller(_), .. })))
    }

    /// Slot `index`'s buffer has left the table when the CQ position was
    /// `since`: caller memory waits for its tag.
    fn retire(&mut self, index: u32, since: u64) {
        if let Some(Some(Slot { mem: SlotMem::Caller(c), .. })) = self.slots.get_mut(index as usize).map(Option::take) {
            self.caller.as_mut().expect("caller memory has its state").retire(c, index, since);
        }
    }

    /// `IORING_REGISTER_BUFFERS_UPDATE` of `iovecs.len()` slots from
    /// `index` with `tags`; returns how many the kernel updated.
    ///
    /// # Safety
    ///
    /// Each iovec names memory that outlives its registration.
    unsafe fn update(&self, ring: &Ring, index: u32, iovecs: &[libc::iovec], tags: &[u64]) -> uring_core::Result<u32> {
        debug_assert_eq!(iovecs.len(), tags.len());
        let upd = sys::io_uring_rsrc_update2 {
            offset: index,
            data: iovecs.as_ptr() as u64,
            tags: tags.as_ptr() as u64,
            nr: iovecs.len() as u32,
            ..Default::default()
        };
        // SAFETY: BUFFERS_UPDATE reads one io_uring_rsrc_update2, and
        // `nr` iovecs and tags, valid for the call; the memory's lifetime
        // is the caller's obligation.
        unsafe {
            ring.register().raw(
                "IORING_REGISTER_BUFFERS_UPDATE",
                sys::IORING_REGISTER_BUFFERS_UPDATE,
                (&upd as *const sys::io_uring_rsrc_update2).cast::<c_void>(),
                size_of::<sys::io_uring_rsrc_update2>() as u32,
            )
        }
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
        if self.slots.iter().flatten().any(|s| matches!(s.mem, SlotMem::Caller(_))) {
            // The clone would keep using the memory after this ring's tag
            // CQE handed it back.
            return Err(Error::invalid("a table holding caller memory cannot be cloned into another ring"));
        }
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
            if let SlotMem::Library(region) = &slot.mem {
                dst.attach(Box::new(region.clone()))?;
            }
        }
        Ok(RegisteredBuffers { slots: self.slots.clone(), ring_id: dst.id(), caller: None })
    }

    /// Clones buffers `src` of this table (on ring `src_ring`) into ring
    /// `dst`, which has no table yet, as its slots `dst_off..dst_off +
    /// src.len()` (`IORING_REGISTER_CLONE_BUFFERS` with `src_off`,
    /// `dst_off` and `nr`, since Linux 6.13; liburing
    /// `io_uring_clone_buffers_offset`): the returned table has
    /// `dst_off + src.len()` slots, the first `dst_off` empty (to
    /// [`install`](Self::install) into). Both rings' fixed operations then
    /// use the same memory, which is attached to `dst` too, so it outlives
    /// both rings' use of it; while both tables hold a buffer neither
    /// lends it out writable ([`buffer_mut`](Self::buffer_mut),
    /// [`is_shared`](Self::is_shared)).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] before any syscall: `src_ring` is not
    /// this table's ring, `dst` is the same ring, an empty range or one
    /// outside the table, `dst_off + src.len()` above [`MAX_BUFFERS`], or
    /// caller memory in the range (the other ring would keep using it after
    /// this ring's tag handed it back); [`Error::Core`]: `Stopped`, and
    /// the kernel's refusal (`EBUSY` when `dst` has a table already: use
    /// [`clone_range_replace`](Self::clone_range_replace); `EINVAL` before
    /// 6.13).
    #[doc(alias = "io_uring_clone_buffers_offset")]
    pub fn clone_range_into(
        &self,
        src_ring: &Ring,
        dst: &mut Ring,
        src: std::ops::Range<u32>,
        dst_off: u32,
    ) -> Result<RegisteredBuffers> {
        self.check_clone(src_ring, dst, &src, dst_off)?;
        self.attach_range(dst, &src)?;
        // SAFETY: `dst` has no table this library describes (a table of
        // `dst` would make the kernel refuse with EBUSY: no REPLACE); the
        // cloned memory is library memory attached to `dst` above.
        unsafe { dst.register().clone_buffers(src_ring.as_raw_fd(), src.start, dst_off, src.len() as u32, false) }?;
        let mut slots = vec![None; dst_off as usize];
        slots.extend_from_slice(&self.slots[src.start as usize..src.end as usize]);
        Ok(RegisteredBuffers { slots, ring_id: dst.id(), caller: None })
    }

    /// Clones buffers `src` of this table (on ring `src_ring`) over slots
    /// `dst_off..dst_off + src.len()` of `dst_table`, the table of ring
    /// `dst` (`IORING_REGISTER_CLONE_BUFFERS` with
    /// `IORING_REGISTER_DST_REPLACE`, since Linux 6.13; liburing
    /// `io_uring_clone_buffers_offset`). `dst_table` grows to
    /// `dst_off + src.len()` slots if it was shorter (the slots between
    /// its end and `dst_off` empty); its slots before `dst_off` stay.
    ///
    /// The replaced buffers' memory stays attached to `dst` (requests
    /// still using them keep them pinned in the kernel), so replacing
    /// them frees nothing the kernel may use; `&mut dst_table` means no
    /// borrow of their bytes is out. Its slots after the range are kept
    /// as they were: the kernel keeps them from 6.18.y and 7.0 on, while
    /// 6.13 to early 6.18 dropped them (`io_clone_buffers` copied only the
    /// slots before the range): there a fixed operation naming one fails
    /// (`-EFAULT`) instead of using the memory, which stays attached to
    /// the ring all the same. So slots of caller memory from `dst_off` on
    /// are refused: whether their tag comes depends on the kernel.
    ///
    /// # Errors
    ///
    /// As for [`clone_range_into`](Self::clone_range_into), and
    /// [`Error::InvalidArgument`] when `dst_table` is not `dst`'s table or
    /// holds caller memory from `dst_off` on.
    #[doc(alias = "io_uring_clone_buffers_offset")]
    pub fn clone_range_replace(
        &self,
        src_ring: &Ring,
        dst_table: &mut RegisteredBuffers,
        dst: &mut Ring,
        src: std::ops::Range<u32>,
        dst_off: u32,
    ) -> Result<()> {
        self.check_clone(src_ring, dst, &src, dst_off)?;
        dst_table.check_owner(dst)?;
        if let Some(i) = dst_table.slots.iter().enumerate().skip(dst_off as usize).find_map(|(i, s)| match s {
            Some(Slot { mem: SlotMem::Caller(_), .. }) => Some(i),
            _ => None,
        }) {
            return Err(Error::invalid(format!(
                "slot {i} of the destination holds caller memory: a replacing clone from slot {dst_off} on is refused"
            )));
        }
        self.attach_range(dst, &src)?;
        // SAFETY: `dst_table` is the one description of `dst`'s table
        // (owner checked; borrowed mutably, so no slice of it is lent) and
        // is updated below to what the kernel now holds; the replaced
        // buffers are library memory attached to `dst`; the cloned memory
        // is attached to `dst` above.
        unsafe { dst.register().clone_buffers(src_ring.as_raw_fd(), src.start, dst_off, src.len() as u32, true) }?;
        let end = dst_off as usize + src.len();
        if dst_table.slots.len() < end {
            dst_table.slots.resize(end, None);
        }
        dst_table.slots[dst_off as usize..end].clone_from_slice(&self.slots[src.start as usize..src.end as usize]);
        Ok(())
    }

    /// The checks both range clones make before any syscall.
    fn check_clone(&self, src_ring: &Ring, dst: &Ring, src: &std::ops::Range<u32>, dst_off: u32) -> Result<()> {
        self.check_owner(src_ring)?;
        check_ring(dst)?;
        if dst.id() == src_ring.id() {
            return Err(Error::invalid("a ring cannot clone buffers from its own table"));
        }
        if src.is_empty() || src.end as usize > self.slots.len() {
            return Err(Error::invalid(format!(
                "buffers {}..{} are not a non-empty range of this table of {}",
                src.start,
                src.end,
                self.slots.len()
            )));
        }
        if dst_off.checked_add(src.len() as u32).is_none_or(|end| end > MAX_BUFFERS) {
            return Err(Error::invalid(format!(
                "slots {dst_off}.. + {}: a table has at most {MAX_BUFFERS} slots",
                src.len()
            )));
        }
        if let Some(i) =
            src.clone().find(|&i| matches!(self.slots[i as usize], Some(Slot { mem: SlotMem::Caller(_), .. })))
        {
            // The clone would keep using the memory after this ring's tag
            // CQE handed it back.
            return Err(Error::invalid(format!(
                "buffer {i} holds caller memory, which cannot be cloned into another ring"
            )));
        }
        Ok(())
    }

    /// Attaches the library memory of buffers `src` to `ring`, each region
    /// once.
    fn attach_range(&self, ring: &mut Ring, src: &std::ops::Range<u32>) -> Result<()> {
        let mut seen: Vec<&Arc<Mapping>> = Vec::new();
        for slot in self.slots[src.start as usize..src.end as usize].iter().flatten() {
            if let SlotMem::Library(region) = &slot.mem
                && !seen.iter().any(|r| Arc::ptr_eq(r, region))
            {
                ring.attach(Box::new(region.clone()))?;
                seen.push(region);
            }
        }
        Ok(())
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

    /// Makes every slot's memory (the library's mappings and the caller's
    /// vault) live for ever, whatever becomes of this table and of the
    /// ring's attached copies: for a table dropped while the kernel may
    /// still read one of its buffers after the ring has closed. A
    /// zero-copy send's notification is such a case: the network stack
    /// holds the pages until it lets go of the data, and no cancellation
    /// ends that, so `Ring::stop` finds the ring quiet meanwhile.
    pub(crate) fn leak_memory(&self) {
        for slot in self.slots.iter().flatten() {
            if let SlotMem::Library(mapping) = &slot.mem {
                uring_core::keep_for_ever(Box::new(mapping.clone()));
            }
        }
        if let Some(caller) = &self.caller {
            caller.leak_vault();
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
        Some((s.addr as *mut u8, s.len))
    }

    /// The bytes of buffer `index`.
    ///
    /// Reading while a fixed read into the same buffer is in flight shows
    /// whatever the kernel has written so far; the safe fixed-I/O calls
    /// take the buffer for the duration of the operation so that cannot
    /// happen through them.
    pub fn buffer(&self, index: u32) -> Option<&[u8]> {
        let (p, len) = self.raw_parts(index)?;
        // SAFETY: library memory is mapped as long as `self` holds its
        // Arc, and zeroed by mmap; caller memory is parked in the vault
        // (attached to the ring and held by `self`) while it is in the
        // table, initialized when it was handed in (a `Vec`, a `Box`, a
        // mapping; `RawMemory::new`'s contract), and reached by nothing else.
        Some(unsafe { std::slice::from_raw_parts(p, len) })
    }

    /// The bytes of buffer `index`, writable: `None` for an empty slot,
    /// and for a buffer another table holds too (cloned into or from
    /// another ring, [`is_shared`](Self::is_shared)), whose bytes that
    /// table could lend out at the same time; writable again once every
    /// other table has let go of it (dropped, unregistered, or the slot
    /// replaced).
    pub fn buffer_mut(&mut self, index: u32) -> Option<&mut [u8]> {
        let slot = self.slots.get(index as usize)?.as_ref()?;
        if slot.is_shared() {
            return None;
        }
        // SAFETY: as in `buffer`; `&mut self` makes the borrow unique among
        // the handles of this table, and no other table holds the buffer
        // (one holder: a clone elsewhere would hold the slot's `holders`
        // too, and only a table that holds it can clone it, so the count
        // cannot grow while this borrow lives).
        Some(unsafe { std::slice::from_raw_parts_mut(slot.addr as *mut u8, slot.len) })
    }

    /// Whether buffer `index` is held by another table too (a clone in
    /// another ring): then [`buffer_mut`](Self::buffer_mut) refuses it.
    pub fn is_shared(&self, index: u32) -> bool {
        self.slots.get(index as usize).and_then(Option::as_ref).is_some_and(Slot::is_shared)
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
        Some(s) => libc::iovec { iov_base: s.addr as *mut c_void, iov_len: s.len },
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

impl uring_core::HandleCqe for RegisteredBuffers {
    /// A buffer of caller memory let go of, and its region's memory when
    /// it was the last.
    type Event = TagEvent;

    /// [`RegisteredBuffers::handle_tag`], for routers that offer each CQE
    /// with its ring.
    #[inline]
    fn handle_cqe(&mut self, _ring: &mut Ring, cqe: &Cqe<'_>) -> Option<TagEvent> {
        self.handle_tag(cqe)
    }
}
