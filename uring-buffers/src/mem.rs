//! [`Region`]: page-aligned memory from `mmap`, owned.

use std::io;
use std::ptr::NonNull;

/// An anonymous private mapping, or a mapping of a ring fd at an offset
/// (a kernel-allocated buffer ring). Unmapped on drop.
#[derive(Debug)]
pub(crate) struct Region {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a `Region` is plain memory with no thread affinity; who may
// touch it when is governed by its owners (the kernel protocol of the
// structure inside it).
unsafe impl Send for Region {}
// SAFETY: as above; `Region` itself hands out only raw pointers.
unsafe impl Sync for Region {}

/// The page size.
pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf has no memory arguments.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 { n as usize } else { 4096 }
}

impl Region {
    /// `len` bytes (rounded up to whole pages) of zeroed anonymous memory;
    /// with `huge`, from 2 MiB huge pages (`MAP_HUGETLB`).
    pub(crate) fn anon(len: usize, huge: bool) -> io::Result<Self> {
        let page = if huge { 2 << 20 } else { page_size() };
        let len = len.checked_next_multiple_of(page).filter(|&l| l > 0).ok_or(io::ErrorKind::InvalidInput)?;
        let mut flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
        if huge {
            flags |= libc::MAP_HUGETLB | (21 << libc::MAP_HUGE_SHIFT);
        }
        // SAFETY: a fresh anonymous mapping; no existing memory is named.
        let p = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, flags, -1, 0) };
        Self::from_mmap(p, len)
    }

    /// Maps `len` bytes of `fd` at `offset`, shared (the kernel's own
    /// memory behind an io_uring fd).
    pub(crate) fn shared(fd: i32, offset: u64, len: usize) -> io::Result<Self> {
        let len = len.checked_next_multiple_of(page_size()).ok_or(io::ErrorKind::InvalidInput)?;
        // SAFETY: maps memory the kernel exports through `fd`; no existing
        // mapping is replaced.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                offset as libc::off_t,
            )
        };
        Self::from_mmap(p, len)
    }

    fn from_mmap(p: *mut libc::c_void, len: usize) -> io::Result<Self> {
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        match NonNull::new(p.cast::<u8>()) {
            Some(ptr) => Ok(Region { ptr, len }),
            None => Err(io::ErrorKind::AddrNotAvailable.into()),
        }
    }

    pub(crate) fn ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping created in `anon`/`shared`; nothing
        // derived from it outlives the `Region` (owners ensure the kernel
        // is done with it, see `Ring::attach`).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}
