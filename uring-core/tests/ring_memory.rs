//! Ring memory: `Options::dontfork` (no ring mapping in a forked child),
//! `Options::memory_size` against the real mappings, caller-supplied
//! memory for `NO_MMAP` rings, and adopting a ring fd set up elsewhere.

mod common;

use common::*;
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
