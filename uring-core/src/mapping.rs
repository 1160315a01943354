//! [`Mapping`]: an owned `mmap` region, the memory of the rings and of
//! everything the layers above hand the kernel.

use std::io;
use std::os::fd::RawFd;
use std::ptr::{self, NonNull};

/// Page-aligned memory from `mmap`, owned and unmapped on drop: a ring
/// fd's memory mapped at a kernel-defined offset (the rings, the SQEs, a
/// kernel-allocated buffer ring), or anonymous zeroed memory the kernel is
/// handed (`IORING_SETUP_NO_MMAP` rings, registered and provided buffers of
/// the layers above).
///
/// Creating one touches no existing memory, so it is safe; what the kernel
/// may do with it is the business of whoever registers it (see
/// [`Ring::attach`](crate::Ring::attach)). It exposes only its address and
/// length.
#[derive(Debug)]
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    /// Made by [`anonymous`](Self::anonymous): private, so no other
    /// mapping reaches its pages.
    private: bool,
}

impl Mapping {
    /// The page size.
    pub fn page_size() -> usize {
        // SAFETY: sysconf has no memory arguments.
        let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if n > 0 { n as usize } else { 4096 }
    }

    /// Maps `len` bytes (rounded up to whole pages) of ring fd `fd` at the
    /// kernel-defined `offset`, shared and populated.
    ///
    /// # Errors
    ///
    /// The errno of `mmap`.
    pub fn map_ring(fd: RawFd, len: usize, offset: u64) -> io::Result<Self> {
        let len = len.checked_next_multiple_of(Self::page_size()).ok_or(io::ErrorKind::InvalidInput)?;
        // SAFETY: a fresh shared mapping of the fd at an offset the kernel
        // defines; it affects no existing memory.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                offset as libc::off_t,
            )
        };
        Self::from_mmap(p, len)
    }

    /// `len` zeroed bytes (rounded up to whole pages, at least one), private
    /// and anonymous; with `huge`, from 2 MiB huge pages (`MAP_HUGETLB`,
    /// which needs `vm.nr_hugepages`).
    ///
    /// # Errors
    ///
    /// The errno of `mmap` (`ENOMEM` for huge pages when too few are
    /// reserved).
    pub fn anonymous(len: usize, huge: bool) -> io::Result<Self> {
        let page = if huge { 2 << 20 } else { Self::page_size() };
        let len = len.max(1).checked_next_multiple_of(page).ok_or(io::ErrorKind::InvalidInput)?;
        let mut flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
        if huge {
            flags |= libc::MAP_HUGETLB | (21 << libc::MAP_HUGE_SHIFT);
        }
        // SAFETY: a fresh private anonymous mapping; affects no existing memory.
        let p = unsafe { libc::mmap(ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, flags, -1, 0) };
        let mut m = Self::from_mmap(p, len)?;
        m.private = true;
        Ok(m)
    }

    fn from_mmap(p: *mut libc::c_void, len: usize) -> io::Result<Self> {
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        match NonNull::new(p.cast::<u8>()) {
            Some(ptr) => Ok(Mapping { ptr, len, private: false }),
            None => Err(io::ErrorKind::AddrNotAvailable.into()),
        }
    }

    /// `madvise(MADV_DONTFORK)`: a child of `fork(2)` gets no mapping here.
    ///
    /// # Errors
    ///
    /// The errno of `madvise`.
    pub fn dont_fork(&self) -> io::Result<()> {
        // SAFETY: advice on our own whole mapping; it changes only what a
        // forked child inherits, not this process's view of the memory.
        let r = unsafe { libc::madvise(self.ptr.as_ptr().cast(), self.len, libc::MADV_DONTFORK) };
        if r == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
    }

    /// Whether this is a private anonymous mapping
    /// ([`anonymous`](Self::anonymous)), whose pages no other mapping
    /// reaches; a [`map_ring`](Self::map_ring) mapping is shared: the same
    /// pages may be mapped again, anywhere.
    pub fn is_private_anonymous(&self) -> bool {
        self.private
    }

    /// The first byte.
    pub fn ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The length in bytes (whole pages).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never true (a mapping has at least one page); for the `len`/`is_empty` pair.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe a mapping we created and that nothing
        // references any more: the queues pointing into ring memory are
        // dropped or dead with their ring, and memory registered with the
        // kernel is attached to its ring, which drops it only once the
        // kernel has let go (the kernel also keeps its own reference to
        // pages it pinned or mapped).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

// SAFETY: a Mapping is an owned mapping; moving the owner between threads
// is fine (access rules are its users' business).
unsafe impl Send for Mapping {}
// SAFETY: a Mapping exposes only its address and length through `&self`.
unsafe impl Sync for Mapping {}
