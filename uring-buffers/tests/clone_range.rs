//! Cloning sub-ranges of a registered-buffer table into another ring
//! (`IORING_REGISTER_CLONE_BUFFERS` with offsets, and
//! `IORING_REGISTER_DST_REPLACE`, 6.13+): into a ring without a table, and
//! over a ring's table (refused by the kernel with `EBUSY` unless
//! replacing); fixed I/O through the destination ring lands in the
//! source's memory; a buffer two tables hold is not lent writable; and
//! the refusals (ranges, rings, caller memory).

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::time::Duration;

use uring_buffers::{CallerRegion, Error, RegisteredBuffers};
use uring_core::{CqeSlot, Options, Ring, sys};

fn ring() -> Ring {
    let mut ring = Ring::new(Options::default().entries(8)).expect("Ring::new (see SETUP.md)");
    ring.start().unwrap();
    ring
}

fn temp(tag: &str) -> File {
    let p = std::env::temp_dir().join(format!("uring-buffers-clone-{tag}-{}", std::process::id()));
    let f = File::options().read(true).write(true).create(true).truncate(true).open(&p).unwrap();
    std::fs::remove_file(&p).unwrap();
    f
}

/// A fixed read (`write == false`: file → buffer) or write (buffer →
/// file) of `len` bytes at file offset 0 and at the start of slot `index`
/// of `ring`'s table, whose buffer starts at `addr`; returns the result.
fn fixed_at(ring: &mut Ring, addr: *mut u8, write: bool, fd: i32, index: u32, len: u32) -> i32 {
    // SAFETY: the address is the start of the buffer registered in slot
    // `index` of this ring's table (or the kernel refuses it), library
    // memory attached to the ring; the test waits for the completion
    // before touching the buffer again.
    let sqe = unsafe { ring.next_sqe() }.unwrap();
    sqe.opcode = if write { sys::IORING_OP_WRITE_FIXED } else { sys::IORING_OP_READ_FIXED } as u8;
    sqe.fd = fd;
    sqe.set_addr(addr as u64);
    sqe.len = len;
    sqe.set_off(0);
    sqe.set_buf_index(index as u16);
    ring.submit().unwrap();
    let mut slots = [CqeSlot::EMPTY; 1];
    let done = ring.wait_for(&mut slots, 1, Some(Duration::from_secs(5))).unwrap();
    done.get(0).unwrap().res()
}

fn fixed(ring: &mut Ring, bufs: &RegisteredBuffers, write: bool, fd: i32, index: u32, len: u32) -> i32 {
    let addr = bufs.raw_parts(index).map_or(std::ptr::null_mut(), |(p, _)| p);
    fixed_at(ring, addr, write, fd, index, len)
}

fn file_with(tag: &str, bytes: &[u8]) -> File {
    let mut f = temp(tag);
    f.write_all(bytes).unwrap();
    f.rewind().unwrap();
    f
}

fn read_all(f: &mut File) -> Vec<u8> {
    let mut v = Vec::new();
    f.rewind().unwrap();
    f.read_to_end(&mut v).unwrap();
    v
}

/// A table of `n` buffers of 4096 bytes on `ring`, buffer `i` filled with
/// the byte `b'A' + i`.
fn lettered(ring: &mut Ring, n: u32) -> RegisteredBuffers {
    let mut bufs = RegisteredBuffers::register(ring, n, 4096).unwrap();
    for i in 0..n {
        bufs.buffer_mut(i).unwrap().fill(b'A' + i as u8);
    }
    bufs
}

/// Skips (with the reason) on kernels without offsets and replace (6.13).
fn unsupported(r: &Result<impl Sized, Error>, test: &str) -> bool {
    if let Err(Error::Core(e @ uring_core::Error::Io { source, .. })) = r
        && source.raw_os_error() == Some(libc::EINVAL)
    {
        eprintln!("SKIPPED {test}: IORING_REGISTER_CLONE_BUFFERS with offsets refused (needs Linux 6.13): {e}");
        return true;
    }
    false
}

#[test]
fn a_sub_range_clones_into_a_ring_without_a_table_at_an_offset() {
    let mut a = ring();
    let mut b = ring();
    let mut src = lettered(&mut a, 4);
    let r = src.clone_range_into(&a, &mut b, 1..3, 2);
    if unsupported(&r, "a_sub_range_clones_into_a_ring_without_a_table_at_an_offset") {
        return;
    }
    let mut dst = r.unwrap();
    assert_eq!(dst.len(), 4, "dst_off + nr slots");
    assert!(!dst.is_installed(0) && !dst.is_installed(1), "the slots before dst_off are empty");
    assert_eq!(dst.raw_parts(2), src.raw_parts(1), "slot 2 is the source's buffer 1");
    assert_eq!(dst.raw_parts(3), src.raw_parts(2));
    assert_eq!(dst.buffer(2).unwrap()[0], b'B');
    // The kernel agrees: a fixed write from B's slot 2 sends A's buffer 1,
    // and a fixed read into B's slot 3 lands in A's buffer 2.
    let mut out = temp("sub-out");
    assert_eq!(fixed(&mut b, &dst, true, out.as_raw_fd(), 2, 4096), 4096);
    assert_eq!(read_all(&mut out), vec![b'B'; 4096]);
    let input = file_with("sub-in", b"read through ring B");
    assert_eq!(fixed(&mut b, &dst, false, input.as_raw_fd(), 3, 19), 19);
    assert_eq!(&src.buffer(2).unwrap()[..19], b"read through ring B", "the source's memory");
    // An empty slot of B names no memory: the kernel refuses it.
    assert_eq!(fixed_at(&mut b, src.raw_parts(0).unwrap().0, false, input.as_raw_fd(), 0, 1), -libc::EFAULT);
    // Shared buffers are not lent writable through either table; the
    // others are.
    assert!(src.is_shared(1) && src.is_shared(2) && dst.is_shared(2) && dst.is_shared(3));
    assert!(src.buffer_mut(1).is_none() && dst.buffer_mut(3).is_none());
    assert!(!src.is_shared(0) && !src.is_shared(3));
    src.buffer_mut(0).unwrap()[0] = b'a';
    // Once the source table lets go, the clone's buffers are its alone;
    // the memory stays attached to B (and the first ring may go).
    drop(src);
    drop(a);
    assert!(!dst.is_shared(2));
    dst.buffer_mut(2).unwrap()[..3].copy_from_slice(b"bee");
    let mut out = temp("sub-out2");
    assert_eq!(fixed(&mut b, &dst, true, out.as_raw_fd(), 2, 3), 3);
    assert_eq!(read_all(&mut out), b"bee");
}

#[test]
fn over_a_table_the_kernel_refuses_without_replace_and_replaces_with_it() {
    let mut a = ring();
    let mut b = ring();
    let src = lettered(&mut a, 3);
    let mut dst = RegisteredBuffers::register(&mut b, 4, 4096).unwrap();
    for i in 0..4 {
        dst.buffer_mut(i).unwrap().fill(b'w' + i as u8);
    }
    // No replace: the kernel refuses a ring that has a table.
    let r = src.clone_range_into(&a, &mut b, 0..2, 1);
    if unsupported(&r, "over_a_table_the_kernel_refuses_without_replace_and_replaces_with_it") {
        return;
    }
    match r.unwrap_err() {
        Error::Core(uring_core::Error::Io { call, source }) => {
            assert_eq!((call, source.raw_os_error()), ("IORING_REGISTER_CLONE_BUFFERS", Some(libc::EBUSY)));
        }
        e => panic!("not the kernel's EBUSY: {e}"),
    }
    let before = (dst.raw_parts(0), dst.raw_parts(1), dst.raw_parts(3));
    // Replace slots 1 and 2 of B's table with A's buffers 0 and 1.
    src.clone_range_replace(&a, &mut dst, &mut b, 0..2, 1).unwrap();
    assert_eq!(dst.len(), 4);
    assert_eq!(dst.raw_parts(0), before.0, "slot 0 kept");
    assert_eq!(dst.raw_parts(1), src.raw_parts(0), "slot 1 replaced");
    assert_eq!(dst.raw_parts(2), src.raw_parts(1), "slot 2 replaced");
    assert_eq!(dst.raw_parts(3), before.2, "slot 3 kept");
    assert_ne!(dst.raw_parts(1), before.1);
    let mut out = temp("rep-out");
    assert_eq!(fixed(&mut b, &dst, true, out.as_raw_fd(), 1, 4096), 4096);
    assert_eq!(read_all(&mut out), vec![b'A'; 4096], "B's slot 1 is A's buffer 0");
    let input = file_with("rep-in", b"into A's buffer 1");
    assert_eq!(fixed(&mut b, &dst, false, input.as_raw_fd(), 2, 17), 17);
    assert_eq!(&src.buffer(1).unwrap()[..17], b"into A's buffer 1");
    // Slot 0 (before the range) is B's own buffer, still writable.
    let mut out = temp("rep-out0");
    assert_eq!(fixed(&mut b, &dst, true, out.as_raw_fd(), 0, 4), 4);
    assert_eq!(read_all(&mut out), b"wwww");
    dst.buffer_mut(0).unwrap()[0] = b'!';
    // Slot 3 (after the range): kept since 6.18.y / 7.0; earlier kernels
    // dropped it, so a fixed write through it fails there.
    let mut out = temp("rep-out3");
    let res = fixed(&mut b, &dst, true, out.as_raw_fd(), 3, 4);
    let version = b.features().kernel_version().unwrap_or((0, 0));
    if res == -libc::EFAULT {
        assert!(version < (7, 0), "a slot after the cloned range was dropped on {version:?}");
        eprintln!("note: {version:?} drops the slots after a replacing clone's range (fixed in 6.18.y and 7.0)");
    } else {
        assert_eq!(res, 4);
        assert_eq!(read_all(&mut out), b"zzzz", "slot 3 kept B's own buffer");
    }
    // A replacing clone past the table's end grows it.
    src.clone_range_replace(&a, &mut dst, &mut b, 2..3, 5).unwrap();
    assert_eq!(dst.len(), 6);
    assert!(!dst.is_installed(4), "the gap is empty");
    let input = file_with("rep-in5", b"grown");
    assert_eq!(fixed(&mut b, &dst, false, input.as_raw_fd(), 5, 5), 5);
    assert_eq!(&src.buffer(2).unwrap()[..5], b"grown");
}

#[test]
fn bad_ranges_rings_and_caller_memory_are_refused_before_any_syscall() {
    let mut a = ring();
    let mut b = ring();
    let mut c = ring();
    let src = lettered(&mut a, 4);
    let invalid = |r: Result<RegisteredBuffers, Error>, what: &str| match r {
        Err(Error::InvalidArgument(m)) => m,
        other => panic!("{what}: {other:?}"),
    };
    invalid(src.clone_range_into(&a, &mut b, 3..5, 0), "past the table's end");
    invalid(src.clone_range_into(&a, &mut b, 2..2, 0), "an empty range");
    invalid(src.clone_range_into(&a, &mut b, 0..2, uring_buffers::registered::MAX_BUFFERS - 1), "past 16384 slots");
    invalid(src.clone_range_into(&a, &mut b, 0..2, u32::MAX), "an overflowing offset");
    let m = invalid(src.clone_range_into(&c, &mut b, 0..1, 0), "the wrong source ring");
    assert!(m.contains("registered with ring"), "{m}");
    #[allow(clippy::reversed_empty_ranges)] // the point: a range that names no buffer
    let reversed = 1..0;
    let m = invalid(src.clone_range_into(&a, &mut c, reversed, 0), "a reversed range");
    assert!(m.contains("non-empty"), "{m}");
    // Replace: the destination table must be the destination ring's.
    let mut c_table = RegisteredBuffers::register(&mut c, 2, 4096).unwrap();
    let e = src.clone_range_replace(&a, &mut c_table, &mut b, 0..1, 0).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)) && e.to_string().contains("registered with ring"), "{e}");
    // Nothing reached either kernel table: B has no table yet (a clone
    // into it works), C's is unchanged.
    let addr0 = c_table.raw_parts(0);
    let r = src.clone_range_into(&a, &mut b, 0..1, 0);
    if unsupported(&r, "bad_ranges_rings_and_caller_memory_are_refused_before_any_syscall") {
        return;
    }
    r.unwrap();
    assert_eq!(c_table.raw_parts(0), addr0);
    let input = file_with("bad-in", b"c0");
    assert_eq!(fixed(&mut c, &c_table, false, input.as_raw_fd(), 0, 2), 2);
    assert_eq!(&c_table.buffer(0).unwrap()[..2], b"c0");
    // Caller memory: never cloned into another ring, and never replaced
    // by a clone (its tag would depend on the kernel).
    let mut d = ring();
    let mut e_ring = ring();
    let mine = RegisteredBuffers::register_memory(&mut d, vec![CallerRegion::new(vec![7u8; 4096])]).unwrap();
    let m = invalid(mine.clone_range_into(&d, &mut e_ring, 0..1, 0), "caller memory as the source");
    assert!(m.contains("caller memory"), "{m}");
    let mut f_ring = ring();
    let mut theirs = RegisteredBuffers::register_memory(&mut f_ring, vec![CallerRegion::new(vec![1u8; 4096])]).unwrap();
    let e = src.clone_range_replace(&a, &mut theirs, &mut f_ring, 0..1, 0).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)) && e.to_string().contains("caller memory"), "{e}");
    // Past the caller memory, a replacing clone is fine.
    src.clone_range_replace(&a, &mut theirs, &mut f_ring, 0..1, 1).unwrap();
    assert_eq!(theirs.len(), 2);
    assert!(theirs.is_caller_memory(0) && !theirs.is_caller_memory(1));
}
