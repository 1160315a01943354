//! A `FixedBuffers` table names its ring by identity, not by fd: after
//! the ring closes, the next ring may get the same fd number, and its
//! registered-buffer table is other memory. In a test binary of its own,
//! so no other test holds or frees descriptors meanwhile and the number
//! comes back deterministically (the kernel hands out the lowest free
//! one).

use std::os::fd::AsRawFd;

use uring_buffers::FixedBuffers;
use uring_core::{Options, Ring};

fn ring() -> Ring {
    let mut ring = Ring::new(Options::default().entries(8)).expect("Ring::new (see SETUP.md)");
    ring.start().unwrap();
    ring
}

#[test]
fn a_ring_with_a_reused_fd_is_not_the_tables_ring() {
    let f = std::fs::File::options().write(true).open("/dev/null").unwrap();
    let mut first = ring();
    let mut fixed = FixedBuffers::register(&mut first, 1, 4096).unwrap();
    let fd = first.as_raw_fd();
    drop(first);
    let mut second = ring();
    assert_eq!(second.as_raw_fd(), fd, "the fd number is reused (the test relies on it)");
    let _theirs = FixedBuffers::register(&mut second, 1, 4096).unwrap();
    let err = fixed.write_fixed(&mut second, f.as_raw_fd(), 0, 0..10, 0).unwrap_err();
    assert!(err.to_string().contains("belong to ring"), "{err}");
}
