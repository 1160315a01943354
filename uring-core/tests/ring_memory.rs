//! Ring memory: `Options::dontfork` (no ring mapping in a forked child),
//! `Options::memory_size` against the real mappings, caller-supplied
//! memory for `NO_MMAP` rings, and adopting a ring fd set up elsewhere.

mod common;

use common::*;
use std::os::fd::AsRawFd;

use uring_core::{Mapping, Options, Ring};

/// Round-trips `n` NOPs with user_data `base..base + n`.
fn nops(ring: &mut Ring, base: u64, n: u64) {
    for i in 0..n {
        push_nop(ring, base + i).expect("push");
    }
    let mut got: Vec<u64> = reap(ring, n as usize).into_iter().map(|c| c.0).collect();
    got.sort_unstable();
    assert_eq!(got, (base..base + n).collect::<Vec<_>>());
}

/// Forks; the child reports (as its exit status) how many of `regions`
/// are mapped in it, using `mincore`, which fails with `ENOMEM` on an
/// unmapped range. Only async-signal-safe calls in the child.
fn mapped_in_child(regions: &[(usize, usize)]) -> i32 {
    let page = Mapping::page_size();
    // SAFETY: the child only calls mincore and _exit (async-signal-safe)
    // on memory allocated before the fork.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let mut vec = [0u8; 1];
        let mut mapped = 0;
        for &(addr, _) in regions {
            // SAFETY: mincore only reports on the range; `vec` holds one
            // byte for the one page asked about.
            if unsafe { libc::mincore(addr as *mut libc::c_void, page, vec.as_mut_ptr()) } == 0 {
                mapped += 1;
            }
        }
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(mapped) };
    }
    let mut status = 0;
    // SAFETY: waits for our own child; `status` is a valid out-pointer.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid, "waitpid: {}", std::io::Error::last_os_error());
    assert!(libc::WIFEXITED(status), "the child died: status {status:#x}");
    libc::WEXITSTATUS(status)
}

#[test]
fn dontfork_keeps_ring_memory_out_of_a_forked_child() {
    for no_mmap in [false, true] {
        let mut ring = Ring::new(Options::default().entries(8).dontfork(true).no_mmap(no_mmap)).expect("ring");
        ring.start().expect("start");
        nops(&mut ring, 0, 8);
        let regions = ring.memory_regions();
        assert_eq!(regions.len(), 2);
        assert_eq!(mapped_in_child(&regions), 0, "no ring mapping in the child (no_mmap {no_mmap})");
        // The parent's ring is untouched.
        nops(&mut ring, 100, 8);
    }
    // The control: without dontfork the child inherits both mappings.
    let mut ring = Ring::new(Options::default().entries(8)).expect("ring");
    ring.start().expect("start");
    assert_eq!(mapped_in_child(&ring.memory_regions()), 2, "a child inherits the ring memory by default");
    nops(&mut ring, 0, 8);
}

#[test]
fn dontfork_survives_a_resize() {
    let mut ring = Ring::new(Options::default().entries(8).dontfork(true)).expect("ring");
    ring.start().expect("start");
    match ring.resize(16, 32) {
        Ok(()) => {}
        Err(e) => panic!("resize: {e}"),
    }
    assert_eq!(mapped_in_child(&ring.memory_regions()), 0);
    nops(&mut ring, 0, 16);
}

#[test]
fn memory_size_matches_the_mappings() {
    let configs = [
        Options::default(),
        Options::default().entries(1),
        Options::default().entries(64).cq_entries(1024),
        Options::default().entries(256).sqe128(true),
        Options::default().entries(128).cqe_size(uring_core::CqeSize::Big),
        Options::default().entries(32).no_sqarray(false),
        Options::default().entries(4096),
        Options::default().entries(16).no_mmap(true),
    ];
    for opts in configs {
        let size = opts.memory_size().unwrap_or_else(|e| panic!("memory_size({opts:?}): {e}"));
        let ring = Ring::new(opts.clone()).expect("ring");
        let real: usize = ring.memory_regions().iter().map(|r| r.1).sum();
        assert_eq!(size, real, "{opts:?}");
        assert_eq!(size % Mapping::page_size(), 0);
    }
}

/// A `NO_MMAP` ring in memory the test supplies: rings and SQEs inside the
/// caller's mapping, NOPs flow; the same options (cloned) cannot hand the
/// memory to a second ring; too little or shared memory is refused.
#[test]
fn no_mmap_ring_in_caller_memory() {
    let opts = Options::default().entries(64);
    let size = opts.memory_size().expect("memory_size");
    let mem = Mapping::anonymous(size, false).expect("mmap");
    let (addr, len) = (mem.ptr() as usize, mem.len());
    let opts = opts.no_mmap_memory(mem);
    let mut ring = Ring::new(opts.clone()).expect("a NO_MMAP ring in caller memory");
    assert_ne!(ring.params().flags & uring_core::sys::IORING_SETUP_NO_MMAP, 0);
    assert_eq!(ring.memory_regions(), vec![(addr, len)], "the ring lives in the caller's mapping");
    ring.start().expect("start");
    for round in 0..20 {
        nops(&mut ring, round * 100, 64);
    }
    match Ring::new(opts) {
        Err(uring_core::Error::InvalidArgument(m)) => assert!(m.contains("earlier ring"), "{m}"),
        other => panic!("the memory went to the first ring, got {:?}", other.map(|_| ())),
    }
    // Too small: one page for a ring that needs more.
    let small = Options::default().entries(256).no_mmap_memory(Mapping::anonymous(1, false).unwrap());
    assert!(matches!(Ring::new(small), Err(uring_core::Error::InvalidArgument(_))));
    // Shared ring memory of another ring is not the caller's to give.
    let other = Ring::new(Options::default().entries(8)).unwrap();
    let shared = Mapping::map_ring(other.as_raw_fd(), 4096, uring_core::sys::IORING_OFF_SQ_RING);
    let opts = Options::default().entries(8).no_mmap_memory(shared.expect("map another ring's rings"));
    assert!(matches!(Ring::new(opts), Err(uring_core::Error::InvalidArgument(_))));
    nops(&mut ring, 10_000, 8);
}

/// A `NO_MMAP` ring in one 2 MiB huge page, skipped (with the reason) when
/// none can be reserved.
#[test]
fn no_mmap_ring_in_a_huge_page() {
    let restore = match huge::reserve_huge_pages(1) {
        Ok(r) => r,
        Err(why) => {
            println!("SKIPPED no_mmap_ring_in_a_huge_page: no 2 MiB huge page can be reserved: {why}");
            return;
        }
    };
    let result = std::panic::catch_unwind(|| {
        let huge = match Mapping::anonymous(2 << 20, true) {
            Ok(m) => m,
            Err(e) => {
                println!(
                    "SKIPPED no_mmap_ring_in_a_huge_page: a huge page was reserved but mmap(MAP_HUGETLB) failed: {e}"
                );
                return;
            }
        };
        assert_eq!(huge.ptr() as usize % (2 << 20), 0, "huge pages are 2 MiB aligned");
        let opts = Options::default().entries(1024);
        assert!(opts.memory_size().unwrap() <= 2 << 20);
        let mut ring = Ring::new(opts.no_mmap_memory(huge)).expect("a NO_MMAP ring in a huge page");
        ring.start().expect("start");
        for round in 0..8 {
            nops(&mut ring, round * 1000, 512);
        }
    });
    if let Some(old) = restore {
        let _ = std::fs::write("/proc/sys/vm/nr_hugepages", format!("{old}"));
    }
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

/// Sets up a ring with the raw syscall, as code outside this library would.
fn raw_ring(entries: u32, flags: u32) -> (std::os::fd::OwnedFd, uring_core::sys::io_uring_params) {
    use std::os::fd::FromRawFd;
    let mut p = uring_core::sys::io_uring_params { flags, ..Default::default() };
    // SAFETY: `p` is valid for the call and names no memory of ours.
    let fd = unsafe { uring_core::sys::io_uring_setup(entries, &mut p) }.expect("io_uring_setup");
    // SAFETY: the kernel just returned this fd; we own it.
    (unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }, p)
}

#[test]
fn adopting_a_ring_set_up_with_raw_syscalls() {
    use uring_core::sys;
    let configs = [
        0,
        sys::IORING_SETUP_R_DISABLED,
        sys::IORING_SETUP_SINGLE_ISSUER | sys::IORING_SETUP_DEFER_TASKRUN | sys::IORING_SETUP_NO_SQARRAY,
        sys::IORING_SETUP_R_DISABLED
            | sys::IORING_SETUP_SINGLE_ISSUER
            | sys::IORING_SETUP_DEFER_TASKRUN
            | sys::IORING_SETUP_CQE32,
        sys::IORING_SETUP_SQE128 | sys::IORING_SETUP_COOP_TASKRUN,
    ];
    for flags in configs {
        let (fd, p) = raw_ring(16, flags);
        // SAFETY: `p` is what io_uring_setup returned for `fd`; nothing
        // else uses the ring, nothing was ever submitted, and it is not
        // enabled yet when R_DISABLED.
        let mut ring = unsafe { Ring::from_raw_fd(fd, p) }.unwrap_or_else(|e| panic!("adopt {flags:#x}: {e}"));
        assert_eq!(ring.state(), uring_core::State::Created);
        assert_eq!(ring.params().flags, flags);
        ring.start().unwrap_or_else(|e| panic!("start {flags:#x}: {e}"));
        for round in 0..10 {
            nops(&mut ring, round * 100, 16);
        }
    }
}

#[test]
fn adopting_checks_what_it_can() {
    use uring_core::Error;
    // Params of another geometry.
    let (fd, mut p) = raw_ring(16, 0);
    p.sq_entries = 8;
    // SAFETY: refused before the ring is used: the masks in its memory do
    // not match (the check this test is about).
    assert!(matches!(unsafe { Ring::from_raw_fd(fd, p) }, Err(Error::InvalidArgument(_))));
    // A file that is not a ring: the probe fails.
    let (_, p) = raw_ring(16, 0);
    let null = std::fs::File::open("/dev/null").unwrap();
    // SAFETY: refused at the probe, before anything is mapped.
    assert!(unsafe { Ring::from_raw_fd(null.into(), p) }.is_err());
    // A ring with a completion nobody reaped.
    let (fd, p) = raw_ring(16, 0);
    let raw = {
        use std::os::fd::AsRawFd;
        fd.as_raw_fd()
    };
    {
        // Submit one NOP through a first adoption (of a dup of the fd) and
        // leave its CQE unreaped: the first ring is leaked, so its drop
        // neither reaps nor discards the completion.
        // SAFETY: `raw` stays open (owned by `fd`) for the duration.
        let dup = unsafe { libc::dup(raw) };
        assert!(dup >= 0);
        use std::os::fd::FromRawFd;
        // SAFETY: a fresh fd of the ring, owned here.
        let dup = unsafe { std::os::fd::OwnedFd::from_raw_fd(dup) };
        // SAFETY: as in the test above; the ring is never used after the
        // leak below, so the second adoption is its only user then.
        let mut first = unsafe { Ring::from_raw_fd(dup, p) }.expect("adopt");
        first.start().unwrap();
        push_nop(&mut first, 1).unwrap();
        first.submit().unwrap();
        // Never dropped (no stop, no cancel), but kept reachable so the
        // leak checker does not report it.
        static FORGOTTEN: std::sync::Mutex<Vec<std::mem::ManuallyDrop<Ring>>> = std::sync::Mutex::new(Vec::new());
        FORGOTTEN.lock().unwrap().push(std::mem::ManuallyDrop::new(first));
    }
    // SAFETY: refused: the CQ holds the completion of the NOP above.
    match unsafe { Ring::from_raw_fd(fd, p) } {
        Err(Error::InvalidArgument(m)) => assert!(m.contains("unreaped"), "{m}"),
        other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
    }
}
