//! The caller's own memory as registered (fixed) buffers, and the resource
//! tags that say when the kernel has let go of it.
//!
//! A storage engine has a buffer pool already (often huge pages, often one
//! arena carved into buffers). [`CallerRegion`] hands such memory to a
//! [`RegisteredBuffers`](crate::RegisteredBuffers) table: *ownership moves
//! into the table*, which is what makes registering it safe. The memory can
//! be any [`FixedMemory`]: a `Box<[u8]>`, a `Vec<u8>`, a
//! [`Mapping`] (anonymous or huge-page `mmap`), or, behind `unsafe`, any
//! address range ([`RawMemory`]). A region is one buffer, or split into
//! equal buffers ([`CallerRegion::split`]), one table slot each.
//!
//! ```
//! use uring_buffers::{CallerRegion, RegisteredBuffers};
//! use uring_core::{CqeSlot, Options, Ring};
//! # use std::time::Duration;
//!
//! let mut ring = Ring::new(Options::default())?;
//! ring.start()?;
//! // One arena of 4 buffers, and one more buffer of its own.
//! let arena = vec![0u8; 4 * 4096];
//! let mut bufs = RegisteredBuffers::register_memory(
//!     &mut ring,
//!     vec![CallerRegion::new(arena).split(4096)?, CallerRegion::new(vec![7u8; 512].into_boxed_slice())],
//! )?;
//! assert_eq!(bufs.len(), 5);
//! // Swap slot 4 for other memory: the old box comes back only with its tag CQE.
//! bufs.replace(&mut ring, 4, CallerRegion::new(vec![0u8; 1024]))?;
//! let mut slots = [CqeSlot::EMPTY; 1];
//! ring.wait_for(&mut slots, 1, Some(Duration::from_secs(5)))?;
//! let event = bufs.handle_tag(&slots[0].cqe()).expect("the tag of the replaced buffer");
//! let old: Box<[u8]> = event.released.expect("its region").downcast().unwrap();
//! assert_eq!(&old[..], &[7u8; 512][..]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # When the memory comes back: resource tags
//!
//! Every buffer slot holding caller memory is registered with a *resource
//! tag* (`IORING_RSRC_TAGS`, `io_uring_rsrc_register::tags` and
//! `io_uring_rsrc_update2::tags`). When the buffer leaves the table
//! ([`replace`](crate::RegisteredBuffers::replace),
//! [`remove`](crate::RegisteredBuffers::remove),
//! [`install`](crate::RegisteredBuffers::install) over it), the kernel
//! keeps its node alive as long as a request still uses it, and when the
//! last reference goes it posts one CQE: `user_data` = the tag, `res` = 0,
//! `flags` = 0 (`io_free_rsrc_node` → `io_post_aux_cqe(ctx, node->tag, 0,
//! 0)` in `io_uring/rsrc.c`), *then* unpins the pages. Handing that CQE to
//! [`handle_tag`](crate::RegisteredBuffers::handle_tag) gives a
//! [`TagEvent`]; when the last buffer of a region has been let go, the
//! event carries the region's memory back ([`Released`]).
//!
//! The tags are the library's own: a layer value of their own layer
//! ([`Layer::ResourceTag`](uring_core::Layer::ResourceTag),
//! [`uring_core::LayerData`], flag clear) whose 53-bit payload is a number
//! from a process-wide counter, never reused. No safe push, `MSG_RING`,
//! poll update or file tag can make the kernel post such a `user_data`
//! (they refuse every layer value), no other layer takes it for its own
//! (a fixed-buffer operation's value names another layer), and `handle_tag` accepts a
//! tag CQE only from the table's ring ([`Cqe::ring_id`]), reaped at or
//! after the ring's [`cq_position`](Ring::cq_position) when the buffer left
//! the table ([`Cqe::seq`]), once. A copied [`CqeSlot`](uring_core::CqeSlot)
//! presented again, or another ring's CQE, releases nothing.
//!
//! Until it comes back the memory is parked in a vault
//! [attached](Ring::attach) to the ring, so dropping the table (or
//! forgetting it) never frees memory the kernel may still use: the vault
//! is freed after the ring has closed. Memory whose tag never arrives (the
//! table was unregistered or dropped, the ring closed) is dropped then.
//!
//! A table with caller memory cannot be cloned into another ring
//! ([`clone_into`](crate::RegisteredBuffers::clone_into) refuses): the
//! clone would keep using the memory after this ring's tag said it was
//! free.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use uring_core::{Cqe, Mapping, Ring};

use crate::error::{Error, Result};

/// Memory that can be moved into a registered-buffer table.
///
/// # Safety
///
/// An implementation promises that [`park`](Self::park) returns an
/// address valid for reads and writes of `len` bytes, which stays valid,
/// at the same address, for as long as the returned `Parked` value lives
/// (moving it included), and that while it is parked nothing but the
/// holder of the `Parked` value reaches those bytes (the value handed to
/// `park` was the only way to them). [`unpark`](Self::unpark) rebuilds the
/// value from its `Parked` form. Dropping `Parked` frees the memory or
/// leaves it to whoever is responsible for it, never touching the bytes.
pub unsafe trait FixedMemory: Send + Sized + 'static {
    /// The memory while the table holds it.
    type Parked: Send + 'static;

    /// Gives up the memory: its parked form, address and length.
    fn park(self) -> (Self::Parked, *mut u8, usize);

    /// Rebuilds the value.
    ///
    /// # Safety
    ///
    /// `parked` must come from [`park`](Self::park) of this type.
    unsafe fn unpark(parked: Self::Parked) -> Self;

    /// Whether this value may be registered: the trait's promise holds
    /// for it. A type whose values differ says no for those it cannot
    /// vouch for (a shared [`Mapping`]); the table refuses them.
    fn exclusive(&self) -> bool {
        true
    }
}

/// A `Vec<u8>`'s raw parts.
#[derive(Debug)]
pub struct ParkedVec {
    ptr: NonNull<u8>,
    len: usize,
    cap: usize,
}

// SAFETY: the parts of a Vec<u8>, which is Send.
unsafe impl Send for ParkedVec {}

impl Drop for ParkedVec {
    fn drop(&mut self) {
        // SAFETY: the parts came from a Vec<u8> (`park`) and are dropped
        // once.
        drop(unsafe { Vec::from_raw_parts(self.ptr.as_ptr(), self.len, self.cap) });
    }
}

// SAFETY: the Vec's heap buffer stays where it is while the raw parts
// live; nothing else reaches it (the Vec was moved in).
unsafe impl FixedMemory for Vec<u8> {
    type Parked = ParkedVec;

    fn park(self) -> (ParkedVec, *mut u8, usize) {
        let mut v = std::mem::ManuallyDrop::new(self);
        let (ptr, len, cap) = (v.as_mut_ptr(), v.len(), v.capacity());
        // SAFETY: a Vec's pointer is never null.
        let ptr = unsafe { NonNull::new_unchecked(ptr) };
        (ParkedVec { ptr, len, cap }, ptr.as_ptr(), len)
    }

    unsafe fn unpark(parked: ParkedVec) -> Self {
        let p = std::mem::ManuallyDrop::new(parked);
        // SAFETY: the parts came from `park` (the caller's obligation) and
        // `p` is not dropped.
        unsafe { Vec::from_raw_parts(p.ptr.as_ptr(), p.len, p.cap) }
    }
}

/// A `Box<[u8]>`'s raw pointer.
#[derive(Debug)]
pub struct ParkedBox(NonNull<[u8]>);

// SAFETY: a Box<[u8]>, which is Send.
unsafe impl Send for ParkedBox {}

impl Drop for ParkedBox {
    fn drop(&mut self) {
        // SAFETY: from Box::into_raw (`park`), dropped once.
        drop(unsafe { Box::from_raw(self.0.as_ptr()) });
    }
}

// SAFETY: Box::into_raw keeps the allocation where it is and gives up the
// only way to it.
unsafe impl FixedMemory for Box<[u8]> {
    type Parked = ParkedBox;

    fn park(self) -> (ParkedBox, *mut u8, usize) {
        let len = self.len();
        // SAFETY: Box::into_raw is never null.
        let raw = unsafe { NonNull::new_unchecked(Box::into_raw(self)) };
        (ParkedBox(raw), raw.as_ptr().cast::<u8>(), len)
    }

    unsafe fn unpark(parked: ParkedBox) -> Self {
        let p = std::mem::ManuallyDrop::new(parked);
        // SAFETY: from Box::into_raw in `park` (the caller's obligation);
        // `p` is not dropped.
        unsafe { Box::from_raw(p.0.as_ptr()) }
    }
}

// SAFETY: a Mapping hands out only its address (reaching the bytes needs
// `unsafe`); moving it moves no page. Only a private anonymous one is
// exclusive: a shared mapping (`Mapping::map_ring`, of a memfd say) may
// have twins reaching the same pages, which a second table could lend out
// while the kernel writes them through the first.
unsafe impl FixedMemory for Mapping {
    type Parked = Mapping;

    fn exclusive(&self) -> bool {
        self.is_private_anonymous()
    }

    fn park(self) -> (Mapping, *mut u8, usize) {
        let (p, l) = (self.ptr(), self.len());
        (self, p, l)
    }

    unsafe fn unpark(parked: Mapping) -> Self {
        parked
    }
}

/// Any address range, for memory the table cannot own (a pool the engine
/// manages itself, shared memory). Made only by the `unsafe`
/// [`RawMemory::new`].
#[derive(Debug)]
pub struct RawMemory {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: an address range; `RawMemory::new`'s contract makes the range
// usable from any thread.
unsafe impl Send for RawMemory {}

impl RawMemory {
    /// `len` bytes at `ptr`.
    ///
    /// # Safety
    ///
    /// From the registration that names this range until the range comes
    /// back ([`Released`], from the tag CQE handed to
    /// [`RegisteredBuffers::handle_tag`](crate::RegisteredBuffers::handle_tag))
    /// or, if it never does, until the ring it was registered with has
    /// been closed ([`Ring::stop`] returned `Ok`, or the ring was dropped
    /// after a stop that left nothing behind; if the ring leaks its
    /// attached memory because a request would not cancel, or the table
    /// was dropped while a zero-copy send from it still awaited its
    /// notification, forever): the
    /// `len` bytes at `ptr` must stay allocated and mapped, readable and
    /// writable, and must not be read, written or referenced by anything
    /// but the kernel and the table's accessors (the kernel writes them
    /// during fixed reads). Pages are pinned whole, so this promise covers
    /// the range only.
    pub unsafe fn new(ptr: NonNull<u8>, len: usize) -> Self {
        RawMemory { ptr, len }
    }

    /// The range's address.
    pub fn ptr(&self) -> NonNull<u8> {
        self.ptr
    }

    /// The range's length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the range is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

// SAFETY: `RawMemory::new`'s contract is this trait's.
unsafe impl FixedMemory for RawMemory {
    type Parked = RawMemory;

    fn park(self) -> (RawMemory, *mut u8, usize) {
        let (p, l) = (self.ptr.as_ptr(), self.len);
        (self, p, l)
    }

    unsafe fn unpark(parked: RawMemory) -> Self {
        parked
    }
}

/// A parked region, its type erased.
trait AnyParked: Send {
    fn unpark(self: Box<Self>) -> Box<dyn Any + Send>;
}

struct ParkedOf<M: FixedMemory>(M::Parked);

impl<M: FixedMemory> AnyParked for ParkedOf<M> {
    fn unpark(self: Box<Self>) -> Box<dyn Any + Send> {
        // SAFETY: parked by `M::park` in `CallerRegion::new`.
        Box::new(unsafe { M::unpark(self.0) })
    }
}

/// Caller memory on its way into a table: one buffer, or
/// [split](Self::split) into equal ones.
pub struct CallerRegion {
    parked: Box<dyn AnyParked>,
    addr: usize,
    len: usize,
    chunk: usize,
    exclusive: bool,
}

impl fmt::Debug for CallerRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallerRegion").field("len", &self.len).field("chunk", &self.chunk).finish_non_exhaustive()
    }
}

impl CallerRegion {
    /// Takes `memory` over, as one buffer. Memory that is not
    /// [exclusive](FixedMemory::exclusive) (a shared [`Mapping`]) is
    /// refused when the region is registered.
    pub fn new<M: FixedMemory>(memory: M) -> Self {
        let exclusive = memory.exclusive();
        let (parked, ptr, len) = memory.park();
        CallerRegion { parked: Box::new(ParkedOf::<M>(parked)), addr: ptr as usize, len, chunk: len, exclusive }
    }

    /// Splits the region into buffers of `chunk` bytes (the last one
    /// shorter when `chunk` does not divide the length), one table slot
    /// each. The region comes back when every one of them has been let go.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a chunk of 0 or above
    /// [`MAX_BUFFER`](crate::registered::MAX_BUFFER), or more than
    /// [`MAX_BUFFERS`](crate::registered::MAX_BUFFERS) chunks.
    pub fn split(mut self, chunk: usize) -> Result<Self> {
        if chunk == 0 || chunk > crate::registered::MAX_BUFFER {
            return Err(Error::invalid(format!("buffers of {chunk} bytes: need 1 byte to 1 GiB")));
        }
        if self.len.div_ceil(chunk) > crate::registered::MAX_BUFFERS as usize {
            return Err(Error::invalid(format!("{} buffers of {chunk} bytes: too many for one table", self.len)));
        }
        self.chunk = chunk;
        Ok(self)
    }

    /// The region's length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the region is empty (refused by the table).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many buffers (table slots) the region makes.
    pub fn buffers(&self) -> usize {
        if self.chunk == 0 { 0 } else { self.len.div_ceil(self.chunk) }
    }

    /// `(address, length)` of each buffer.
    pub(crate) fn pieces(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        (0..self.buffers()).map(|i| {
            let off = i * self.chunk;
            (self.addr + off, self.chunk.min(self.len - off))
        })
    }

    pub(crate) fn check(&self) -> Result<()> {
        if !self.exclusive {
            return Err(Error::invalid(
                "a shared mapping cannot be registered as the caller's memory: another mapping may reach its pages",
            ));
        }
        if self.len == 0 {
            return Err(Error::invalid("an empty region cannot be registered"));
        }
        if self.chunk > crate::registered::MAX_BUFFER {
            return Err(Error::invalid(format!(
                "a buffer of {} bytes: need at most 1 GiB (split the region)",
                self.chunk
            )));
        }
        if self.addr.checked_add(self.len).is_none() {
            return Err(Error::invalid("the region wraps the address space"));
        }
        Ok(())
    }
}

/// Memory that came back from the kernel: the region's value, as it was
/// handed in. [`downcast`](Self::downcast) to the type it was made from.
pub struct Released {
    memory: Box<dyn Any + Send>,
}

impl fmt::Debug for Released {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Released").finish_non_exhaustive()
    }
}

impl Released {
    /// The memory, as the type it was made from.
    ///
    /// # Errors
    ///
    /// `self`, unchanged, when it is of another type.
    #[allow(clippy::result_large_err)]
    pub fn downcast<M: FixedMemory>(self) -> std::result::Result<M, Self> {
        match self.memory.downcast::<M>() {
            Ok(m) => Ok(*m),
            Err(memory) => Err(Released { memory }),
        }
    }

    /// Whether the memory is of type `M`.
    pub fn is<M: FixedMemory>(&self) -> bool {
        self.memory.is::<M>()
    }
}

/// A tag CQE, as [`RegisteredBuffers::handle_tag`](crate::RegisteredBuffers::handle_tag) saw it: the kernel
/// has let go of the buffer that was in table slot `index`.
#[derive(Debug)]
#[non_exhaustive]
pub struct TagEvent {
    /// The tag (the CQE's `user_data`).
    pub tag: u64,
    /// The slot the buffer was in when it left the table.
    pub index: u32,
    /// The region's memory, when this was the last of its buffers the
    /// kernel held.
    pub released: Option<Released>,
}

/// Caller memory the table holds, attached to the ring: freed when the
/// ring has closed (and the table is gone), unless a tag brought a region
/// back first.
#[derive(Default)]
pub(crate) struct Vault(Mutex<HashMap<u64, Box<dyn AnyParked>>>);

impl Vault {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Box<dyn AnyParked>>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Tags: [`Layer::ResourceTag`](uring_core::Layer::ResourceTag) values,
/// flag clear, the payload a process-wide number.
static NEXT_TAG: AtomicU64 = AtomicU64::new(1);

fn next_tag() -> Result<u64> {
    let n = NEXT_TAG.fetch_add(1, Ordering::Relaxed);
    match uring_core::LayerData::new(uring_core::Layer::ResourceTag, false, n) {
        Some(d) => Ok(d.raw()),
        None => {
            NEXT_TAG.store(uring_core::LayerData::PAYLOAD_MAX + 1, Ordering::Relaxed);
            Err(Error::invalid("resource tags exhausted (2^53 registrations)"))
        }
    }
}

/// Whether `user_data` has the shape of this layer's resource tags: a
/// [`Layer::ResourceTag`](uring_core::Layer::ResourceTag) value with the
/// flag clear (checked exactly, not through `payload_of`, which ignores
/// the flag).
pub(crate) fn is_tag(user_data: u64) -> bool {
    matches!(uring_core::LayerData::decode(user_data), Some(d) if d.layer() == uring_core::Layer::ResourceTag && !d.flag())
}

/// A buffer that has left the table and whose tag has not come back.
#[derive(Debug)]
struct Pending {
    region: u64,
    index: u32,
    /// The ring's CQ position when the buffer left the table.
    since: u64,
}

/// A table's caller-memory bookkeeping: the vault, buffers per region, tags
/// awaited.
pub(crate) struct CallerState {
    vault: Arc<Vault>,
    /// Per region: its buffers the kernel may still hold (in the table, or
    /// out of it and their tags not back).
    held: HashMap<u64, u32>,
    pending: HashMap<u64, Pending>,
    next_region: u64,
}

impl fmt::Debug for CallerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallerState")
            .field("regions", &self.held.len())
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

/// What a slot of caller memory records.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallerSlot {
    pub(crate) region: u64,
    pub(crate) tag: u64,
}

impl CallerState {
    /// Keeps the vault (and every region parked in it) for ever: see
    /// [`RegisteredBuffers::leak_memory`](crate::RegisteredBuffers).
    pub(crate) fn leak_vault(&self) {
        uring_core::keep_for_ever(Box::new(self.vault.clone()));
    }

    /// A new state whose vault is attached to `ring`.
    pub(crate) fn new(ring: &mut Ring) -> Result<Self> {
        let vault = Arc::new(Vault::default());
        ring.attach(Box::new(vault.clone()))?;
        Ok(CallerState { vault, held: HashMap::new(), pending: HashMap::new(), next_region: 1 })
    }

    /// Tags for each buffer of `region` (before registering it).
    pub(crate) fn tags(region: &CallerRegion) -> Result<Vec<u64>> {
        (0..region.buffers()).map(|_| next_tag()).collect()
    }

    /// Parks `region` in the vault once the kernel has registered its
    /// buffers; returns its id.
    ///
    /// `registered` of its buffers are in the table.
    pub(crate) fn admit(&mut self, region: CallerRegion, registered: u32) -> u64 {
        let id = self.next_region;
        self.next_region += 1;
        self.held.insert(id, registered);
        self.vault.lock().insert(id, region.parked);
        id
    }

    /// The buffer `slot` left table slot `index` when the ring's CQ
    /// position was `since`: its tag CQE will come.
    pub(crate) fn retire(&mut self, slot: CallerSlot, index: u32, since: u64) {
        self.pending.insert(slot.tag, Pending { region: slot.region, index, since });
    }

    /// Tags awaited.
    pub(crate) fn pending(&self) -> usize {
        self.pending.len()
    }

    /// A tag CQE of `ring_id`: see [`RegisteredBuffers::handle_tag`](crate::RegisteredBuffers::handle_tag).
    pub(crate) fn handle(&mut self, ring_id: u64, cqe: &Cqe<'_>) -> Option<TagEvent> {
        let tag = cqe.user_data();
        if cqe.ring_id() != ring_id || !is_tag(tag) || cqe.res() != 0 || cqe.raw_flags() != 0 {
            return None;
        }
        let p = self.pending.get(&tag)?;
        if cqe.seq() < p.since {
            // Reaped before the buffer left the table: not its tag.
            return None;
        }
        let p = self.pending.remove(&tag)?;
        let left = self.held.get_mut(&p.region).expect("a pending buffer's region is held");
        *left -= 1;
        let released = if *left == 0 {
            self.held.remove(&p.region);
            self.vault.lock().remove(&p.region).map(|parked| Released { memory: parked.unpark() })
        } else {
            None
        };
        Some(TagEvent { tag, index: p.index, released })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_resource_tag_layer_values() {
        let t = next_tag().unwrap();
        assert_eq!(uring_core::SqeContext::from_raw(t), None, "no safe push takes a tag");
        let d = uring_core::LayerData::decode(t).unwrap();
        assert_eq!((d.layer(), d.flag()), (uring_core::Layer::ResourceTag, false));
        assert!(uring_core::is_layer_tag(t), "no file tag can be one");
        assert!(is_tag(t));
        assert_ne!(next_tag().unwrap(), t);
        // The same payload under another layer, or with the flag, is no tag.
        for layer in uring_core::Layer::ALL.into_iter().filter(|&l| l != uring_core::Layer::ResourceTag) {
            assert!(!is_tag(uring_core::LayerData::new(layer, false, d.payload()).unwrap().raw()));
        }
        assert!(!is_tag(uring_core::LayerData::new(uring_core::Layer::ResourceTag, true, d.payload()).unwrap().raw()));
    }

    #[test]
    fn parking_round_trips() {
        let (p, ptr, len) = vec![1u8, 2, 3].park();
        assert_eq!(len, 3);
        // SAFETY: from park; the vec lives while `p` does.
        assert_eq!(unsafe { *ptr.add(2) }, 3);
        // SAFETY: from park of Vec<u8>.
        assert_eq!(unsafe { Vec::<u8>::unpark(p) }, vec![1, 2, 3]);
        let r = CallerRegion::new(vec![9u8; 10].into_boxed_slice()).split(4).unwrap();
        assert_eq!(r.pieces().map(|(_, l)| l).collect::<Vec<_>>(), vec![4, 4, 2]);
        let back = Released { memory: r.parked.unpark() };
        assert!(!back.is::<Vec<u8>>());
        assert_eq!(&back.downcast::<Box<[u8]>>().unwrap()[..], &[9u8; 10][..]);
    }
}
