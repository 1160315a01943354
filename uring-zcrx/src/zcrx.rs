//! A registered zero-copy receive instance: its area, its refill ring,
//! and the buffers it delivers.

use std::ffi::c_void;
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use uring_core::{Mapping, Ring, sys};

use crate::error::{Error, Result};
use crate::query::{ZcrxSupport, check_ring};
use crate::refill::{MAX_REFILL_ENTRIES, RefillOffsets, RefillRing};

/// Which queue an instance receives from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZcrxTarget {
    /// A hardware RX queue of a network device, by interface index. The
    /// device needs header split (`ethtool -G <dev> tcp-data-split on`),
    /// queue management, and a flow steered to the queue.
    Queue {
        /// Interface index (`if_nametoindex`).
        ifindex: u32,
        /// RX queue number.
        queue: u32,
    },
    /// No device (`ZCRX_REG_NODEV`, Linux 7.2+): every TCP receive through
    /// the instance is copied into the area by the kernel, from any
    /// interface, loopback included. The refill ring is consumed only when
    /// flushed ([`Zcrx::flush`]).
    NoDevice,
}

impl ZcrxTarget {
    /// The queue `queue` of the interface named `ifname`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if there is no such interface.
    pub fn interface(ifname: &str, queue: u32) -> Result<Self> {
        let name = std::ffi::CString::new(ifname)
            .map_err(|_| Error::Config(format!("interface name {ifname:?} contains a NUL byte")))?;
        // SAFETY: `name` is a valid NUL-terminated string for the call.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            return Err(Error::Config(format!(
                "no interface named {ifname:?} in this network namespace ({})",
                io::Error::last_os_error()
            )));
        }
        Ok(ZcrxTarget::Queue { ifindex, queue })
    }
}

/// Where the area's memory comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AreaMemory {
    /// Anonymous memory this crate maps (huge pages when `huge`, falling
    /// back to normal pages), pinned by the kernel at registration.
    ///
    /// A dma-buf area (`IORING_ZCRX_AREA_DMABUF`, device memory the CPU
    /// may not read) is the documented extension point: it would be a
    /// second variant carrying the dma-buf fd, with buffers that expose an
    /// offset instead of bytes.
    Library {
        /// Ask for transparent huge pages.
        huge: bool,
    },
}

/// How to set up a zero-copy receive instance.
#[doc(alias = "ZCRXConfig")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZcrxConfig {
    /// The queue (or none).
    pub target: ZcrxTarget,
    /// Area size in bytes: a multiple of the page size, and of the receive
    /// buffer length.
    pub area_len: usize,
    /// Area memory.
    pub area: AreaMemory,
    /// Refill ring entries: a power of two, at most
    /// [`MAX_REFILL_ENTRIES`].
    pub refill_entries: u32,
    /// Receive buffer (niov) size: `None` for the page size; otherwise a
    /// power of two of at least a page, on kernels with
    /// `ZCRX_FEATURE_RX_PAGE_SIZE` and a device that supports it.
    pub rx_buf_len: Option<u32>,
    /// Keep copy-fallback statistics in the refill region where the kernel
    /// can ([`Zcrx::stats`]).
    pub stats: bool,
}

impl ZcrxConfig {
    /// An instance on `target` with a 4 MiB area and 4096 refill entries.
    pub fn new(target: ZcrxTarget) -> Self {
        ZcrxConfig {
            target,
            area_len: 4 << 20,
            area: AreaMemory::Library { huge: false },
            refill_entries: 4096,
            rx_buf_len: None,
            stats: true,
        }
    }

    /// Sets [`area_len`](Self::area_len).
    pub fn area_len(mut self, bytes: usize) -> Self {
        self.area_len = bytes;
        self
    }

    /// Sets [`refill_entries`](Self::refill_entries).
    pub fn refill_entries(mut self, entries: u32) -> Self {
        self.refill_entries = entries;
        self
    }

    /// Sets [`rx_buf_len`](Self::rx_buf_len).
    pub fn rx_buf_len(mut self, len: u32) -> Self {
        self.rx_buf_len = Some(len);
        self
    }

    /// Asks for huge pages for the area.
    pub fn huge_pages(mut self) -> Self {
        self.area = AreaMemory::Library { huge: true };
        self
    }

    /// Checks everything that can be checked without the kernel.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the first field that cannot work.
    pub fn validate(&self) -> Result<()> {
        let page = Mapping::page_size();
        if !self.refill_entries.is_power_of_two() || self.refill_entries > MAX_REFILL_ENTRIES {
            return Err(Error::Config(format!(
                "refill_entries {}: must be a power of two from 1 to {MAX_REFILL_ENTRIES}",
                self.refill_entries
            )));
        }
        let buf = self.rx_buf_len.map_or(page, |l| l as usize);
        if !buf.is_power_of_two() || buf < page {
            return Err(Error::Config(format!(
                "rx_buf_len {buf}: must be a power of two of at least the page size ({page})"
            )));
        }
        if self.area_len == 0 || !self.area_len.is_multiple_of(page) || !self.area_len.is_multiple_of(buf) {
            return Err(Error::Config(format!(
                "area_len {}: must be a non-zero multiple of the page size ({page}) and of rx_buf_len ({buf})",
                self.area_len
            )));
        }
        if self.area_len as u64 >= 1 << sys::IORING_ZCRX_AREA_SHIFT {
            return Err(Error::Config(format!("area_len {}: must be below 2^48 bytes", self.area_len)));
        }
        if self.target == ZcrxTarget::NoDevice && buf != page {
            return Err(Error::Config(format!(
                "rx_buf_len {buf}: an instance without a device copies page by page; leave rx_buf_len unset"
            )));
        }
        Ok(())
    }
}

/// Copy-fallback statistics the kernel keeps in the refill region
/// (`struct zcrx_stats`): how much data was copied instead of received
/// in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ZcrxStats {
    /// Copy-fallback chunks so far.
    pub copy_count: u64,
    /// Bytes copied so far.
    pub copy_bytes: u64,
}

/// The producer state: the refill ring, and the releases that did not fit.
#[derive(Debug)]
pub(crate) struct Producer {
    pub(crate) refill: RefillRing,
    /// Entries released while the ring was full (by `Drop`, or by a
    /// batch), written first when room appears.
    overflow: Vec<(u64, u32)>,
    /// Buffers released (written or waiting in `overflow`), counted under
    /// the lock every release takes anyway.
    released: u64,
}

impl Producer {
    /// Writes as much of the overflow as fits; true if none is left.
    fn drain_overflow(&mut self) -> bool {
        let mut n = 0;
        while n < self.overflow.len() {
            let (off, len) = self.overflow[n];
            if !self.refill.push(off, len) {
                break;
            }
            n += 1;
        }
        if n > 0 {
            self.overflow.drain(..n);
            self.refill.publish();
        }
        self.overflow.is_empty()
    }

    /// Pushes and publishes one entry, behind any overflow; false if full.
    #[inline]
    fn release(&mut self, off: u64, len: u32) -> bool {
        if !self.overflow.is_empty() && !self.drain_overflow() {
            return false;
        }
        if !self.refill.push(off, len) {
            return false;
        }
        self.refill.publish();
        self.released += 1;
        true
    }
}

/// Per ring that receives into an area: for every niov (area buffer of
/// `rx_buf_len` bytes), the [`Cqe::seq`](uring_core::Cqe::seq) plus one of
/// the last CQE of that ring that handed it out (0: none yet).
///
/// A data CQE hands out a niov only when its position is newer, so a copy
/// of a CQE presented again (whose niov the kernel may have got back
/// through the refill ring and be refilling) hands out nothing. Positions
/// of different rings are not comparable, so an imported instance keeps
/// one table per ring. Not a "held" bit: the kernel counts user
/// references per niov and may hand out one niov several times at once
/// (several fragments), so only the CQE's position tells a new delivery
/// from a replay.
pub(crate) struct SeenTable {
    ring_id: u64,
    shift: u32,
    seqs: Box<[AtomicU64]>,
}

impl fmt::Debug for SeenTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeenTable").field("ring_id", &self.ring_id).field("niovs", &self.seqs.len()).finish()
    }
}

/// What every handle, buffer and the ring share: the memory and the
/// producer.
pub(crate) struct Shared {
    area: Mapping,
    area_token: u64,
    rx_buf_len: u32,
    nodev: bool,
    /// Made by `bench_support::detached`: no kernel knows the area.
    detached: bool,
    stats_off: Option<usize>,
    producer: Mutex<Producer>,
    delivered: AtomicU64,
    /// One [`SeenTable`] per ring the instance is registered with.
    tables: Mutex<Vec<Arc<SeenTable>>>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("area_len", &self.area.len())
            .field("area_token", &format_args!("{:#x}", self.area_token))
            .field("rx_buf_len", &self.rx_buf_len)
            .field("nodev", &self.nodev)
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub(crate) fn producer(&self) -> MutexGuard<'_, Producer> {
        // A panic while holding the lock cannot leave the ring torn (each
        // entry is written before the tail moves), so a poisoned lock is
        // taken as it is.
        self.producer.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn new(
        area: Mapping,
        area_token: u64,
        rx_buf_len: u32,
        nodev: bool,
        detached: bool,
        stats_off: Option<usize>,
        refill: RefillRing,
    ) -> Self {
        Shared {
            area,
            area_token,
            rx_buf_len,
            nodev,
            detached,
            stats_off,
            producer: Mutex::new(Producer { refill, overflow: Vec::new(), released: 0 }),
            delivered: AtomicU64::new(0),
            tables: Mutex::new(Vec::new()),
        }
    }

    /// The [`SeenTable`] of ring `ring_id` (made on first use, then shared
    /// by every handle of the instance on that ring).
    pub(crate) fn table_for(&self, ring_id: u64) -> Arc<SeenTable> {
        let mut tables = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = tables.iter().find(|t| t.ring_id == ring_id) {
            return Arc::clone(t);
        }
        let shift = self.rx_buf_len.trailing_zeros();
        let niovs = self.area.len() >> shift;
        let table = Arc::new(SeenTable { ring_id, shift, seqs: (0..niovs).map(|_| AtomicU64::new(0)).collect() });
        tables.push(Arc::clone(&table));
        table
    }

    /// A buffer for a data CQE's `(offset word, length)` reaped by ring
    /// `seen.ring_id` at position `seq`: only if it lies inside one niov
    /// of the area, carries this area's token, and `seq` is newer than the
    /// CQE of that ring that last handed out the niov.
    ///
    /// The caller has checked that the CQE is the kernel's answer to a
    /// `RECV_ZC` into this instance on that ring (its stream's reserved
    /// `user_data`, its ring identity).
    pub(crate) fn buffer(self: &Arc<Self>, seen: &SeenTable, seq: u64, off: u64, len: u32) -> Option<ZcrxBuffer> {
        if off & sys::IORING_ZCRX_AREA_MASK != self.area_token || len == 0 {
            return None;
        }
        let start = off & !sys::IORING_ZCRX_AREA_MASK;
        let end = start.checked_add(u64::from(len))?;
        if end > self.area.len() as u64 {
            return None;
        }
        let niov = start >> seen.shift;
        if (end - 1) >> seen.shift != niov {
            // The kernel never hands out a range across a niov boundary.
            return None;
        }
        let stamp = seq.checked_add(1)?;
        let slot = seen.seqs.get(niov as usize)?;
        if slot.fetch_max(stamp, Ordering::Relaxed) >= stamp {
            // A copy of this CQE, or of one older than the niov's last
            // delivery: the kernel may have got it back already.
            return None;
        }
        self.delivered.fetch_add(1, Ordering::Relaxed);
        Some(ZcrxBuffer { shared: Arc::clone(self), off, len })
    }

    pub(crate) fn refill_pending(&self) -> (u32, u32, bool) {
        let p = self.producer();
        (p.refill.pending(), p.refill.entries(), !p.overflow.is_empty())
    }

    pub(crate) fn is_nodev(&self) -> bool {
        self.nodev
    }

    pub(crate) fn is_detached(&self) -> bool {
        self.detached
    }
}

/// A registered zero-copy receive instance (`IORING_REGISTER_ZCRX_IFQ`)
/// on one ring: the area the kernel receives into, and the refill ring
/// through which buffers return to it.
///
/// The memory is the library's: it is [attached](Ring::attach) to the
/// ring, so it stays mapped until the ring is closed (the kernel lets go
/// of an instance only then), and every [`ZcrxBuffer`] keeps it mapped
/// too. Handles are cheap clones of one instance; [`close`](Self::close)
/// drops this handle's share.
///
/// Start receiving with [`ZcrxReceiver`](crate::ZcrxReceiver).
#[derive(Debug, Clone)]
pub struct Zcrx {
    shared: Option<Arc<Shared>>,
    /// This ring's delivery positions per niov (kept after `close`: a
    /// receiver's CQEs still arriving are checked against it).
    seen: Arc<SeenTable>,
    id: u32,
    ring_id: u64,
    ring_fd: RawFd,
    support: Arc<ZcrxSupport>,
    refill_entries: u32,
}

impl Zcrx {
    /// Registers an instance with `ring` as `config` says.
    ///
    /// Everything checkable is checked first, so an unsupported request
    /// fails with an error that says why: a ring without `DEFER_TASKRUN`
    /// or big CQEs, a kernel without `RECV_ZC`, `ZCRX_REG_NODEV` on a
    /// kernel that does not know it, a device without header split or
    /// queue management (`EOPNOTSUPP`; loopback and virtio-net have
    /// neither).
    ///
    /// # Errors
    ///
    /// [`Error::RingSetup`], [`Error::Config`], [`Error::Unsupported`],
    /// [`Error::Permission`], [`Error::Device`], [`Error::Io`].
    #[doc(alias = "NewZCRXReceiver")]
    #[doc(alias = "IORING_REGISTER_ZCRX_IFQ")]
    pub fn register(ring: &mut Ring, config: &ZcrxConfig) -> Result<Self> {
        check_ring(ring.features())?;
        let support = ZcrxSupport::probe(ring.features());
        support.require_recv_zc()?;
        config.validate()?;
        let page = Mapping::page_size();
        let (if_idx, if_rxq, flags) = match config.target {
            ZcrxTarget::Queue { ifindex, queue } => {
                if queue == u32::MAX {
                    return Err(Error::Config("RX queue u32::MAX (-1) is not a queue".into()));
                }
                (ifindex, queue, 0)
            }
            ZcrxTarget::NoDevice => {
                support.require_nodev()?;
                (0, 0, sys::ZCRX_REG_NODEV)
            }
        };
        if let Some(len) = config.rx_buf_len
            && len as usize != page
            && !support.rx_buf_len()
        {
            return Err(Error::unsupported(
                "ZCRX_FEATURE_RX_PAGE_SIZE",
                format!("the kernel cannot receive into {len}-byte buffers; leave rx_buf_len unset"),
            ));
        }

        // The region: header (size and alignment from the query), entries,
        // then the statistics, rounded up to whole pages.
        let (hdr, align) = support.rq_header();
        let rqes_guess = hdr.next_multiple_of(align).max(RefillOffsets::V2.rqes as usize);
        let used = rqes_guess + config.refill_entries as usize * size_of::<sys::io_uring_zcrx_rqe>();
        let stats = config.stats && support.stats();
        let stats_off = used.next_multiple_of(64);
        let region_len = (if stats { stats_off + size_of::<sys::zcrx_stats>() } else { used }).next_multiple_of(page);

        let AreaMemory::Library { huge } = config.area;
        let area =
            Mapping::anonymous(config.area_len, huge).map_err(|e| Error::Io { call: "mmap (area)", source: e })?;
        let region = Arc::new(
            Mapping::anonymous(region_len, false).map_err(|e| Error::Io { call: "mmap (refill)", source: e })?,
        );

        let mut area_reg =
            sys::io_uring_zcrx_area_reg { addr: area.ptr() as u64, len: area.len() as u64, ..Default::default() };
        let mut rd = sys::io_uring_region_desc {
            user_addr: region.ptr() as u64,
            size: region.len() as u64,
            flags: sys::IORING_MEM_REGION_TYPE_USER,
            ..Default::default()
        };
        let mut event = sys::zcrx_event_desc::default();
        if stats {
            event.flags = sys::ZCRX_EVENT_DESC_FLAG_STATS;
            event.stats_offset = stats_off as u64;
        }
        let mut reg = sys::io_uring_zcrx_ifq_reg {
            if_idx,
            if_rxq,
            rq_entries: config.refill_entries,
            flags,
            area_ptr: (&raw mut area_reg) as u64,
            region_ptr: (&raw mut rd) as u64,
            rx_buf_len: config.rx_buf_len.unwrap_or(0),
            event_desc: if stats { (&raw mut event) as u64 } else { 0 },
            ..Default::default()
        };
        // SAFETY: `reg` is an `io_uring_zcrx_ifq_reg` naming the area, the
        // region descriptor and the event descriptor, all live for the
        // call. The kernel pins the area's and the region's pages; both
        // mappings are moved into `Shared`, which is attached to the ring
        // below, so they stay mapped until the ring is closed, which is
        // when the kernel lets go of the instance.
        let res = unsafe {
            ring.register().raw(
                "IORING_REGISTER_ZCRX_IFQ",
                sys::IORING_REGISTER_ZCRX_IFQ,
                (&raw mut reg).cast::<c_void>(),
                1,
            )
        };
        if let Err(e) = res {
            return Err(explain_register(e, &config.target, &support));
        }
        let offsets = RefillOffsets::from_sys(&reg.offsets);
        let refill = RefillRing::new(region, offsets, reg.rq_entries)?;
        let shared = Arc::new(Shared::new(
            area,
            area_reg.rq_area_token,
            if reg.rx_buf_len != 0 { reg.rx_buf_len } else { page as u32 },
            flags & sys::ZCRX_REG_NODEV != 0,
            false,
            stats.then_some(stats_off),
            refill,
        ));
        // If attaching fails (the ring stopped meanwhile), the instance
        // went with the ring; our Arc keeps the memory for the handle.
        ring.attach(Box::new(Arc::clone(&shared)))?;
        Ok(Zcrx {
            seen: shared.table_for(ring.id()),
            shared: Some(shared),
            id: reg.zcrx_id,
            ring_id: ring.id(),
            ring_fd: ring.as_raw_fd(),
            support: Arc::new(support),
            refill_entries: reg.rq_entries,
        })
    }

    pub(crate) fn shared(&self) -> Result<&Arc<Shared>> {
        // A match, not `ok_or`: this runs for every CQE, and an `Error`
        // built eagerly is dropped (a match on its variants) every time.
        match &self.shared {
            Some(shared) => Ok(shared),
            None => Err(Error::Closed { id: self.id }),
        }
    }

    /// The instance's [`SeenTable`] on its ring.
    #[inline]
    pub(crate) fn seen(&self) -> &SeenTable {
        &self.seen
    }

    pub(crate) fn check_ring(&self, ring: &Ring) -> Result<()> {
        // By identity, not fd: a closed ring's fd number is reused.
        if ring.id() != self.ring_id {
            return Err(Error::WrongRing { id: self.id, expected: self.ring_fd, got: ring.as_raw_fd() });
        }
        Ok(())
    }

    /// The instance id on its ring (`zcrx_ifq_idx` of `RECV_ZC`).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The identity ([`Ring::id`]) of the ring this handle is registered
    /// with; 0 for a detached (benchmark) instance. Only CQEs of that ring
    /// ([`Cqe::ring_id`](uring_core::Cqe::ring_id)) deliver buffers.
    pub fn ring_id(&self) -> u64 {
        self.ring_id
    }

    /// The fd of the ring the instance is registered with.
    pub fn ring_fd(&self) -> RawFd {
        self.ring_fd
    }

    /// What the kernel supports, as probed at registration.
    pub fn support(&self) -> &ZcrxSupport {
        &self.support
    }

    /// Whether this instance has no device (all data copied; the refill
    /// ring is consumed only by [`flush`](Self::flush)).
    pub fn is_nodev(&self) -> bool {
        self.shared.as_ref().is_some_and(|s| s.nodev)
    }

    /// Refill ring entries (the kernel rounds up to a power of two).
    pub fn refill_entries(&self) -> u32 {
        self.refill_entries
    }

    /// The receive buffer size the kernel settled on: no CQE's buffer
    /// crosses a multiple of it.
    pub fn rx_buf_len(&self) -> u32 {
        self.shared.as_ref().map_or(0, |s| s.rx_buf_len)
    }

    /// The area's size in bytes.
    pub fn area_len(&self) -> usize {
        self.shared.as_ref().map_or(0, |s| s.area.len())
    }

    /// Buffers delivered and buffers released so far, over every handle
    /// of this instance.
    pub fn counts(&self) -> (u64, u64) {
        self.shared.as_ref().map_or((0, 0), |s| (s.delivered.load(Ordering::Relaxed), s.producer().released))
    }

    /// Refill entries written and not yet consumed by the kernel, and
    /// whether releases are waiting for room.
    pub fn refill_pending(&self) -> (u32, bool) {
        self.shared.as_ref().map_or((0, false), |s| {
            let (pending, _, overflow) = s.refill_pending();
            (pending, overflow)
        })
    }

    /// Copy-fallback statistics, where the kernel keeps them (Linux 7.3+
    /// with [`ZcrxConfig::stats`]).
    pub fn stats(&self) -> Option<ZcrxStats> {
        let s = self.shared.as_ref()?;
        let off = s.stats_off?;
        let p = s.producer();
        // SAFETY: `off` lies inside the region (checked by the kernel at
        // registration, 8-aligned); the kernel updates the two words with
        // plain stores, so they are read volatile, each untorn (aligned
        // u64).
        unsafe {
            let base = p.refill.region().ptr().add(off).cast::<u64>();
            Some(ZcrxStats { copy_count: base.read_volatile(), copy_bytes: base.add(1).read_volatile() })
        }
    }

    /// Returns a buffer to the kernel; [`ZcrxBuffer::recycle`] with the
    /// handle's name.
    ///
    /// # Errors
    ///
    /// [`RefillFull`] (with the buffer) when the refill ring is full.
    #[inline]
    #[doc(alias = "release")]
    pub fn recycle(&self, buf: ZcrxBuffer) -> std::result::Result<(), RefillFull> {
        buf.recycle()
    }

    /// Returns many buffers under one lock and one tail store. Buffers that
    /// do not fit wait, in order, for room (written at the next release,
    /// flush or received CQE). Returns how many were written now.
    pub fn recycle_all(&self, bufs: impl IntoIterator<Item = ZcrxBuffer>) -> usize {
        let Some(shared) = self.shared.as_ref() else {
            // Each buffer's drop releases it through its own share.
            return bufs.into_iter().count();
        };
        let mut p = shared.producer();
        let mut written = 0;
        let mut n = 0u64;
        for buf in bufs {
            if Arc::ptr_eq(&buf.shared, shared) {
                if p.overflow.is_empty() && p.refill.push(buf.off, buf.len) {
                    written += 1;
                } else {
                    p.overflow.push((buf.off, buf.len));
                }
                n += 1;
                drop(buf.into_shared());
            } else {
                // Another instance's buffer: its drop releases it there.
                drop(buf);
            }
        }
        p.refill.publish();
        p.released += n;
        written
    }

    /// Makes the kernel consume the refill ring now
    /// (`ZCRX_CTRL_FLUSH_RQ`), then writes releases that were waiting for
    /// room. An instance without a device consumes its refill ring only
    /// this way; [`ZcrxReceiver`](crate::ZcrxReceiver) flushes it when it
    /// has enough pending (`ZcrxReceiver::flush_threshold`). Returns the entries still pending.
    ///
    /// # Errors
    ///
    /// [`Error::WrongRing`]; [`Error::Unsupported`] on kernels without the
    /// control opcode; the register call's errno.
    #[doc(alias = "ZCRX_CTRL_FLUSH_RQ")]
    pub fn flush(&self, ring: &Ring) -> Result<u32> {
        self.check_ring(ring)?;
        let shared = self.shared()?;
        self.support.require_ctrl(sys::ZCRX_CTRL_FLUSH_RQ, "ZCRX_CTRL_FLUSH_RQ")?;
        let mut p = shared.producer();
        p.refill.publish();
        let mut ctrl = ctrl(self.id, sys::ZCRX_CTRL_FLUSH_RQ);
        // SAFETY: `ctrl` is a `zcrx_ctrl` for the call; nothing is kept.
        unsafe {
            ring.register().raw(
                "IORING_REGISTER_ZCRX_CTRL(FLUSH_RQ)",
                sys::IORING_REGISTER_ZCRX_CTRL,
                (&raw mut ctrl).cast::<c_void>(),
                0,
            )
        }?;
        p.drain_overflow();
        Ok(p.refill.pending())
    }

    /// Exports the instance (`ZCRX_CTRL_EXPORT`) so that another ring of
    /// this process can [`import`](Self::import) it and receive into the
    /// same area through the same refill ring. The instance lives until
    /// every ring using it and the export's fd are closed.
    ///
    /// # Errors
    ///
    /// [`Error::WrongRing`], [`Error::Unsupported`], the register call's
    /// errno.
    #[doc(alias = "ZCRX_CTRL_EXPORT")]
    pub fn export(&self, ring: &Ring) -> Result<ExportedZcrx> {
        self.check_ring(ring)?;
        let shared = self.shared()?;
        self.support.require_ctrl(sys::ZCRX_CTRL_EXPORT, "ZCRX_CTRL_EXPORT")?;
        let mut ctrl = ctrl(self.id, sys::ZCRX_CTRL_EXPORT);
        // SAFETY: `ctrl` is a `zcrx_ctrl` for the call; the kernel writes
        // the new fd into it before returning and keeps nothing.
        unsafe {
            ring.register().raw(
                "IORING_REGISTER_ZCRX_CTRL(EXPORT)",
                sys::IORING_REGISTER_ZCRX_CTRL,
                (&raw mut ctrl).cast::<c_void>(),
                0,
            )
        }?;
        let fd = ctrl.zc_export().zcrx_fd as RawFd;
        // SAFETY: the kernel installed `fd` for this process just now and
        // nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(ExportedZcrx { fd, shared: Arc::clone(shared), support: Arc::clone(&self.support) })
    }

    /// Registers an exported instance with `ring` (`ZCRX_REG_IMPORT`): the
    /// new handle receives into the same area and returns buffers through
    /// the same refill ring (releases from both rings are serialized).
    ///
    /// # Errors
    ///
    /// As for [`register`](Self::register).
    #[doc(alias = "ZCRX_REG_IMPORT")]
    pub fn import(ring: &mut Ring, exported: &ExportedZcrx) -> Result<Self> {
        check_ring(ring.features())?;
        if !exported.support.import() {
            return Err(Error::unsupported("ZCRX_REG_IMPORT", "the kernel cannot import an instance"));
        }
        let mut reg = sys::io_uring_zcrx_ifq_reg {
            if_idx: exported.fd.as_raw_fd() as u32,
            flags: sys::ZCRX_REG_IMPORT,
            ..Default::default()
        };
        // SAFETY: an import names only the exported fd; the kernel writes
        // the id and offsets back into `reg` and pins nothing new. The
        // shared memory is attached to this ring too, below.
        unsafe {
            ring.register().raw(
                "IORING_REGISTER_ZCRX_IFQ(IMPORT)",
                sys::IORING_REGISTER_ZCRX_IFQ,
                (&raw mut reg).cast::<c_void>(),
                1,
            )
        }?;
        let entries = exported.shared.producer().refill.entries();
        ring.attach(Box::new(Arc::clone(&exported.shared)))?;
        Ok(Zcrx {
            shared: Some(Arc::clone(&exported.shared)),
            seen: exported.shared.table_for(ring.id()),
            id: reg.zcrx_id,
            ring_id: ring.id(),
            ring_fd: ring.as_raw_fd(),
            support: Arc::clone(&exported.support),
            refill_entries: entries,
        })
    }

    /// Drops this handle's share of the instance. The memory stays mapped
    /// while the ring (until it is closed, when the kernel lets go), other
    /// handles or delivered buffers still hold it. Calling it again does
    /// nothing.
    #[doc(alias = "Close")]
    pub fn close(&mut self) {
        self.shared = None;
    }

    /// Whether [`close`](Self::close) was called on this handle.
    pub fn is_closed(&self) -> bool {
        self.shared.is_none()
    }
}

/// Hooks for this crate's benchmarks and host tests; not part of the API.
/// Every hook but [`detached`](bench_support::detached) panics on an instance a kernel knows.
#[doc(hidden)]
pub mod bench_support {
    use super::*;

    /// An instance over library memory that no kernel knows: its refill
    /// ring is consumed only by [`consume`], acting as the kernel. Its
    /// handle's ring identity is 0 (no ring).
    pub fn detached(area_len: usize, refill_entries: u32) -> Zcrx {
        let page = Mapping::page_size();
        let offsets = RefillOffsets::V2;
        let region =
            Arc::new(Mapping::anonymous(offsets.region_len(refill_entries).next_multiple_of(page), false).unwrap());
        let refill = RefillRing::new(region, offsets, refill_entries).unwrap();
        let area = Mapping::anonymous(area_len, false).unwrap();
        let shared = Arc::new(Shared::new(area, 0, page as u32, false, true, None, refill));
        let support = ZcrxSupport::detached();
        Zcrx {
            seen: shared.table_for(0),
            shared: Some(shared),
            id: 0,
            ring_id: 0,
            ring_fd: -1,
            support: Arc::new(support),
            refill_entries,
        }
    }

    fn detached_shared(zcrx: &Zcrx) -> &Arc<Shared> {
        let shared = zcrx.shared.as_ref().expect("an open handle");
        assert!(shared.detached, "bench_support works only on a detached instance");
        shared
    }

    /// Another handle of the detached instance of `zcrx`, as if imported
    /// by the ring with identity `ring_id` (with that ring's own delivery
    /// positions).
    pub fn detached_on(zcrx: &Zcrx, ring_id: u64) -> Zcrx {
        let shared = detached_shared(zcrx);
        Zcrx { seen: shared.table_for(ring_id), ring_id, ..zcrx.clone() }
    }

    /// Consumes every published entry, as the kernel does: acquire the
    /// tail, read the entries, release-store the head. Returns how many.
    pub fn consume(zcrx: &Zcrx) -> u32 {
        let p = detached_shared(zcrx).producer();
        let (head, tail, rqes) = p.refill.raw_parts();
        let mask = p.refill.entries() - 1;
        // SAFETY: the pointers point into the live region, as the kernel's
        // would; this function plays the kernel's (consumer's) part, on an
        // instance no kernel consumes.
        unsafe {
            let t = (*tail).load(Ordering::Acquire);
            let h = (*head).load(Ordering::Relaxed);
            let mut sum = 0u64;
            let mut i = h;
            while i != t {
                sum = sum.wrapping_add(rqes.add((i & mask) as usize).read_volatile().off);
                i = i.wrapping_add(1);
            }
            std::hint::black_box(sum);
            (*head).store(t, Ordering::Release);
            t.wrapping_sub(h)
        }
    }

    /// A buffer of a detached instance, as a data CQE would deliver it,
    /// without the delivery-position check (no kernel writes the area).
    pub fn buffer(zcrx: &Zcrx, offset: u64, len: u32) -> ZcrxBuffer {
        let shared = detached_shared(zcrx);
        assert!(
            len > 0 && offset.checked_add(u64::from(len)).is_some_and(|end| end <= shared.area.len() as u64),
            "range outside the area"
        );
        shared.delivered.fetch_add(1, Ordering::Relaxed);
        ZcrxBuffer { shared: Arc::clone(shared), off: offset, len }
    }

    /// What a data CQE at position `seq` of the handle's ring, naming
    /// `(offset word, len)`, delivers: the receiver's own checks (range,
    /// token, one niov, a position newer than the niov's last delivery on
    /// that ring).
    pub fn deliver(zcrx: &Zcrx, seq: u64, offset: u64, len: u32) -> Option<ZcrxBuffer> {
        detached_shared(zcrx).buffer(zcrx.seen(), seq, offset, len)
    }
}

fn ctrl(id: u32, op: u32) -> sys::zcrx_ctrl {
    // SAFETY: `zcrx_ctrl` is plain integers (and a union of them); all
    // zeroes is its "no arguments" value.
    let mut c: sys::zcrx_ctrl = unsafe { std::mem::zeroed() };
    c.zcrx_id = id;
    c.op = op;
    c
}

/// An exported instance (its fd, and the memory it receives into), ready
/// for [`Zcrx::import`] on another ring of this process. Closing it (drop)
/// drops the fd's reference to the instance.
#[derive(Debug)]
pub struct ExportedZcrx {
    fd: OwnedFd,
    shared: Arc<Shared>,
    support: Arc<ZcrxSupport>,
}

impl AsRawFd for ExportedZcrx {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Turns a registration errno into the error that says why.
fn explain_register(e: uring_core::Error, target: &ZcrxTarget, support: &ZcrxSupport) -> Error {
    let Some(errno) = e.raw_os_error() else { return Error::Core(e) };
    let source = io::Error::from_raw_os_error(errno);
    if errno == libc::EPERM {
        return Error::Permission;
    }
    match target {
        ZcrxTarget::NoDevice => match errno {
            libc::EINVAL if !support.nodev() => {
                support.require_nodev().err().unwrap_or(Error::Io { call: "IORING_REGISTER_ZCRX_IFQ", source })
            }
            libc::ENOMEM => Error::Io { call: "IORING_REGISTER_ZCRX_IFQ (locked memory: RLIMIT_MEMLOCK)", source },
            _ => Error::Io { call: "IORING_REGISTER_ZCRX_IFQ", source },
        },
        ZcrxTarget::Queue { ifindex, queue } => {
            let device = ifname(*ifindex);
            let why = match errno {
                libc::ENODEV => "no interface with this index in the ring's network namespace".to_owned(),
                libc::EOPNOTSUPP => "the device cannot do zero-copy receive: it needs a DMA-capable parent device, \
                    queue management (netdev queue API) and header split; loopback, virtio-net and most virtual \
                    devices have none of these"
                    .to_owned(),
                libc::EINVAL => "the device refused the queue: header split must be on with a zero threshold \
                    (`ethtool -G <dev> tcp-data-split on hds-thresh 0`), or the area or buffer size does not suit \
                    it"
                .to_owned(),
                libc::ERANGE => "the RX queue index is out of range, or rx_buf_len is larger than the area's pages \
                    can back"
                    .to_owned(),
                libc::EEXIST => {
                    "the queue already has a memory provider (another instance), or an XDP program is attached"
                        .to_owned()
                }
                libc::EBUSY => "the queue is in use by AF_XDP or leased to a virtual device".to_owned(),
                libc::ENOMEM => "out of memory, or the locked-memory limit (RLIMIT_MEMLOCK) is too low for the area \
                    and refill ring"
                    .to_owned(),
                _ => return Error::Io { call: "IORING_REGISTER_ZCRX_IFQ", source },
            };
            Error::Device { device, queue: *queue, why, source }
        }
    }
}

fn ifname(ifindex: u32) -> String {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `buf` has IF_NAMESIZE bytes, as the call requires.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if p.is_null() {
        format!("interface #{ifindex}")
    } else {
        // SAFETY: on success the kernel wrote a NUL-terminated name.
        let name = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
        format!("{} (#{ifindex})", name.to_string_lossy())
    }
}

/// A delivered receive buffer: `len` bytes of the area that the kernel
/// filled and, until this token is released, will not reuse.
///
/// Recycling it ([`recycle`](Self::recycle), or dropping it) writes its
/// refill entry, so the kernel can reuse the memory; it consumes the
/// token, so a buffer cannot be released twice. The token keeps the
/// area mapped, so it may outlive its receiver, its [`Zcrx`] handles and
/// the ring (it then releases into a refill ring nobody reads).
#[doc(alias = "ZCRXBuffer")]
pub struct ZcrxBuffer {
    shared: Arc<Shared>,
    off: u64,
    len: u32,
}

impl fmt::Debug for ZcrxBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZcrxBuffer").field("offset", &self.offset()).field("len", &self.len).finish()
    }
}

impl ZcrxBuffer {
    /// The bytes received.
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        let start = (self.off & !sys::IORING_ZCRX_AREA_MASK) as usize;
        // SAFETY: `start + len` was checked against the area's length when
        // the buffer was made. The kernel wrote these bytes before posting
        // the CQE and does not write them again until the refill entry for
        // this token is written, which needs the token itself; the area
        // stays mapped while the token holds its Arc.
        unsafe { std::slice::from_raw_parts(self.shared.area.ptr().add(start), self.len as usize) }
    }

    /// Byte count.
    #[inline]
    #[allow(clippy::len_without_is_empty)] // a delivered buffer is never empty
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Offset of the bytes inside the area.
    #[inline]
    pub fn offset(&self) -> u64 {
        self.off & !sys::IORING_ZCRX_AREA_MASK
    }

    /// The refill entry's offset word: the area token plus the offset.
    #[inline]
    pub fn token_offset(&self) -> u64 {
        self.off
    }

    /// Returns the buffer to the kernel now: writes its refill entry and
    /// publishes the tail (release ordering).
    ///
    /// # Errors
    ///
    /// [`RefillFull`], giving the buffer back, when the refill ring is
    /// full (the kernel has not consumed it; an instance without a device
    /// needs a [`Zcrx::flush`]). Nothing is overwritten.
    #[doc(alias = "Release")]
    #[inline]
    pub fn recycle(self) -> std::result::Result<(), RefillFull> {
        let ok = self.shared.producer().release(self.off, self.len);
        if !ok {
            return Err(RefillFull(self));
        }
        drop(self.into_shared());
        Ok(())
    }

    /// Consumes the token without releasing it, keeping its share of the
    /// memory.
    fn into_shared(self) -> Arc<Shared> {
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: `this` is never dropped, so the Arc is moved out of it
        // exactly once.
        unsafe { std::ptr::read(&this.shared) }
    }
}

impl Drop for ZcrxBuffer {
    /// Releases the buffer; if the refill ring is full, the entry waits
    /// for room (written at the next release, flush or received CQE).
    fn drop(&mut self) {
        let mut p = self.shared.producer();
        if !p.release(self.off, self.len) {
            p.overflow.push((self.off, self.len));
            p.released += 1;
        }
    }
}

/// [`ZcrxBuffer::recycle`] found the refill ring full; the buffer is
/// handed back unreleased.
#[derive(Debug)]
pub struct RefillFull(pub ZcrxBuffer);

impl fmt::Display for RefillFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the zero-copy receive refill ring is full; flush it (Zcrx::flush) or let the kernel consume it, then \
             release again"
        )
    }
}

impl std::error::Error for RefillFull {}
