//! File I/O on a real file: bytes on disk, offsets, the file position,
//! vectored and fixed-buffer I/O, provided buffers, and kernel errors.

mod common;

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::fd::AsRawFd;

use uring_core::{Error, Ring, SqeContext, sys};
use uring_ops::cmd::Nop;
use uring_ops::file::{
    CURRENT_POSITION, FileOps, Read, ReadFixed, ReadProvided, Readv, ReadvFixed, RwFlags, Write, WriteFixed,
    WritevFixed,
};
use uring_ops::prelude::*;

fn ctx(n: u64) -> SqeContext {
    SqeContext::token(n).unwrap()
}

fn iov(buf: &[u8]) -> libc::iovec {
    libc::iovec { iov_base: buf.as_ptr() as *mut libc::c_void, iov_len: buf.len() }
}

fn iov_mut(buf: &mut [u8]) -> libc::iovec {
    libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() }
}

fn rw_file(tag: &str) -> (std::path::PathBuf, File) {
    let dir = common::tmpdir(tag);
    let path = dir.join("data");
    let f = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
    (path, f)
}

/// Registers `bufs` as the ring's fixed buffers (IORING_REGISTER_BUFFERS2,
/// falling back to IORING_REGISTER_BUFFERS).
fn register_buffers(ring: &Ring, bufs: &[libc::iovec]) {
    let reg = sys::io_uring_rsrc_register { nr: bufs.len() as u32, data: bufs.as_ptr() as u64, ..Default::default() };
    // SAFETY: `reg` and the iovec array are valid for the call; the buffers
    // outlive the ring in every test (they are declared before it).
    let r = unsafe {
        sys::io_uring_register(
            ring.as_raw_fd(),
            sys::IORING_REGISTER_BUFFERS2,
            (&raw const reg).cast(),
            size_of::<sys::io_uring_rsrc_register>() as u32,
        )
    };
    if r.is_err() {
        // SAFETY: as above, the legacy form takes the iovec array directly.
        unsafe {
            sys::io_uring_register(
                ring.as_raw_fd(),
                sys::IORING_REGISTER_BUFFERS,
                bufs.as_ptr().cast(),
                bufs.len() as u32,
            )
        }
        .expect("IORING_REGISTER_BUFFERS");
    }
}

#[test]
fn write_reaches_the_disk_and_reads_honour_offsets() {
    let (path, f) = rw_file("rw");
    let mut ring = common::ring(8);
    let data = b"hello, uring world";
    // SAFETY: `data` is a static literal, valid and never written.
    unsafe { ring.write(ctx(1), f.as_raw_fd(), data, 0) }.unwrap();
    // The token comes back with the opcode the push stamped in.
    let mut slots = [uring_core::CqeSlot::EMPTY; 1];
    ring.wait_for(&mut slots, 1, Some(std::time::Duration::from_secs(5))).unwrap();
    let c = slots[0].cqe();
    assert_eq!((c.res(), c.context().as_token()), (data.len() as i32, Some(1)));
    assert_eq!(c.op(), Some(sys::IORING_OP_WRITE as u8));
    assert_eq!(std::fs::read(&path).unwrap(), data);

    // A write at an offset past the data leaves a hole of zeros.
    // SAFETY: as above.
    unsafe { ring.write(ctx(2), f.as_raw_fd(), b"!", 20) }.unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 1);
    let on_disk = std::fs::read(&path).unwrap();
    assert_eq!(&on_disk[18..], b"\0\0!");

    let mut buf = [0u8; 5];
    // SAFETY: `buf` outlives the reap below and is not touched before it.
    unsafe { ring.read(ctx(3), f.as_raw_fd(), &mut buf, 7) }.unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 5);
    assert_eq!(&buf, b"uring");

    // Reading at end of file returns 0.
    // SAFETY: as above.
    unsafe { ring.read(ctx(4), f.as_raw_fd(), &mut buf, 100) }.unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 0);
}

#[test]
fn current_position_is_used_and_advanced() {
    let (path, mut f) = rw_file("pos");
    let mut ring = common::ring(8);
    for (i, chunk) in [b"abc".as_slice(), b"def", b"ghi"].into_iter().enumerate() {
        // SAFETY: the chunks are static literals.
        unsafe { ring.write(ctx(i as u64), f.as_raw_fd(), chunk, CURRENT_POSITION) }.unwrap();
        assert_eq!(common::reap_one(&mut ring).res, 3);
    }
    assert_eq!(std::fs::read(&path).unwrap(), b"abcdefghi");
    assert_eq!(f.stream_position().unwrap(), 9, "the writes advanced the file position");

    // An explicit offset does not move the position.
    // SAFETY: static literal.
    unsafe { ring.write(ctx(9), f.as_raw_fd(), b"X", 0) }.unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 1);
    assert_eq!(f.stream_position().unwrap(), 9);

    f.seek(SeekFrom::Start(3)).unwrap();
    let mut buf = [0u8; 4];
    // SAFETY: `buf` is untouched until the reap.
    unsafe { ring.read(ctx(10), f.as_raw_fd(), &mut buf, CURRENT_POSITION) }.unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 4);
    assert_eq!(&buf, b"defg");
    assert_eq!(f.stream_position().unwrap(), 7);
}

#[test]
fn rwf_append_writes_at_the_end_whatever_the_offset() {
    let (path, f) = rw_file("append");
    std::fs::write(&path, b"start").unwrap();
    let mut ring = common::ring(8);
    let op = Write::from_static(f.as_raw_fd(), b"+end").offset(0).rw_flags(RwFlags::APPEND);
    ring.push_op(ctx(1), op).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 4);
    assert_eq!(std::fs::read(&path).unwrap(), b"start+end");
}

#[test]
fn unknown_rwf_bits_are_passed_to_the_kernel_which_refuses_them() {
    let (_path, f) = rw_file("rwf");
    let mut ring = common::ring(8);
    let op = Write::from_static(f.as_raw_fd(), b"x").rw_flags(RwFlags::from_bits_retain(1 << 30));
    ring.push_op(ctx(1), op).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::EOPNOTSUPP);
}

#[test]
fn writev_and_readv_with_three_iovecs() {
    let (path, f) = rw_file("vec");
    let mut ring = common::ring(8);
    let parts: [&[u8]; 3] = [b"one ", b"two ", b"three"];
    let iovs = parts.map(iov);
    // SAFETY: `iovs` and the literals outlive the reap.
    unsafe { ring.writev(ctx(1), f.as_raw_fd(), &iovs, 0) }.unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 13);
    assert_eq!(std::fs::read(&path).unwrap(), b"one two three");

    let (mut a, mut b, mut c) = ([0u8; 2], [0u8; 6], [0u8; 10]);
    let iovs = [iov_mut(&mut a), iov_mut(&mut b), iov_mut(&mut c)];
    // SAFETY: the buffers are untouched until the reap.
    unsafe { ring.readv(ctx(2), f.as_raw_fd(), &iovs, 2) }.unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 11);
    assert_eq!((&a, &b, &c[..3]), (b"e ", b"two th", b"ree".as_slice()));
}

#[test]
fn too_many_iovecs_are_refused_before_anything_is_queued() {
    let (_path, f) = rw_file("maxiov");
    let mut ring = common::ring(8);
    let one = [0u8; 1];
    let iovs = vec![iov(&one); libc::UIO_MAXIOV as usize + 1];
    // SAFETY: nothing is queued (the check fails first).
    let err = unsafe { ring.writev(ctx(1), f.as_raw_fd(), &iovs, 0) }.unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    // SAFETY: as above.
    let op = unsafe { Readv::new(f.as_raw_fd(), &iovs) };
    let err = ring.push_op(ctx(2), op).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert_eq!(ring.sq_pending(), 0);
}

#[test]
fn fixed_buffers_write_and_read() {
    let (path, f) = rw_file("fixed");
    // Two registered buffers, declared before the ring so they outlive it
    // (its drop cancels everything in flight and closes it first).
    let mut bufs = vec![0u8; 8192];
    let (b0, b1) = bufs.split_at_mut(4096);
    let table = [iov_mut(b0), iov_mut(b1)];
    let mut ring = common::ring(8);
    register_buffers(&ring, &table);

    b1[100..110].copy_from_slice(b"fixed-data");
    // SAFETY: the range lies in registered buffer 1, untouched until the reap.
    unsafe { ring.write_fixed(ctx(1), f.as_raw_fd(), &b1[100..110], 1, 0) }.unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 10);
    assert_eq!(std::fs::read(&path).unwrap(), b"fixed-data");

    // SAFETY: the range lies in registered buffer 0, untouched until the reap.
    unsafe { ring.read_fixed(ctx(2), f.as_raw_fd(), &mut b0[10..15], 0, 6) }.unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 4);
    assert_eq!(&b0[10..14], b"data");

    // Builders with a file position.
    let op = WriteFixed::new(f.as_raw_fd(), b1[100..].as_ptr(), 5, 1).offset(10);
    // SAFETY: as above.
    unsafe { ring.push_op_unchecked(ctx(3), op) }.unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 5);
    assert_eq!(std::fs::read(&path).unwrap(), b"fixed-datafixed");
}

#[test]
fn vectored_fixed_buffers_write_and_read() {
    // Declared before the ring, so it outlives the ring's registration.
    let mut buf = vec![0u8; 4096];
    let mut ring = common::ring(8);
    if !ring.features().supports(sys::IORING_OP_READV_FIXED as u8) {
        common::skip("vectored_fixed_buffers_write_and_read", "IORING_OP_READV_FIXED needs Linux 6.15");
        return;
    }
    let (path, f) = rw_file("vfixed");
    register_buffers(&ring, &[iov_mut(&mut buf)]);
    buf[..3].copy_from_slice(b"abc");
    buf[1000..1003].copy_from_slice(b"def");
    buf[2000..2003].copy_from_slice(b"ghi");
    let parts = [iov(&buf[..3]), iov(&buf[1000..1003]), iov(&buf[2000..2003])];
    let op = WritevFixed::new(f.as_raw_fd(), parts.as_ptr(), 3, 0);
    // SAFETY: the ranges lie in registered buffer 0; `parts` and the ranges
    // are untouched until the reap.
    unsafe { ring.push_op_unchecked(ctx(1), op) }.unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 9);
    assert_eq!(std::fs::read(&path).unwrap(), b"abcdefghi");

    let targets = [
        libc::iovec { iov_base: buf[3000..].as_mut_ptr().cast(), iov_len: 4 },
        libc::iovec { iov_base: buf[3500..].as_mut_ptr().cast(), iov_len: 5 },
    ];
    // SAFETY: as above; the targets lie in registered buffer 0.
    unsafe { ring.readv_fixed(ctx(2), f.as_raw_fd(), &targets, 0, 0) }.unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 9);
    assert_eq!((&buf[3000..3004], &buf[3500..3505]), (b"abcd".as_slice(), b"efghi".as_slice()));

    let op = ReadvFixed::new(f.as_raw_fd(), targets.as_ptr(), 2, 7);
    // SAFETY: index 7 is not registered; the kernel refuses before using it.
    unsafe { ring.push_op_unchecked(ctx(3), op) }.unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::EFAULT);
}

#[test]
fn errors_come_back_from_the_kernel() {
    // Registered below; declared before the ring, so it outlives it.
    let mut reg = vec![0u8; 64];
    let mut ring = common::ring(8);
    let mut buf = [0u8; 8];

    // A descriptor that is not open.
    // SAFETY: `buf` is untouched until the reap.
    unsafe { ring.read(ctx(1), 9999, &mut buf, 0) }.unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::EBADF);

    // A read of a write-only descriptor.
    let dir = common::tmpdir("wronly");
    let wo = OpenOptions::new().write(true).create(true).truncate(true).open(dir.join("w")).unwrap();
    // SAFETY: as above.
    unsafe { ring.read(ctx(2), wo.as_raw_fd(), &mut buf, 0) }.unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::EBADF);

    // A fixed-buffer index with no registered buffers at all.
    let op = ReadFixed::new(wo.as_raw_fd(), buf.as_mut_ptr(), 8, 3);
    // SAFETY: as above (the kernel refuses the index before any access).
    unsafe { ring.push_op_unchecked(ctx(3), op) }.unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::EFAULT);

    // An index past the registered table.
    register_buffers(&ring, &[iov_mut(&mut reg)]);
    let op = WriteFixed::new(wo.as_raw_fd(), reg.as_ptr(), 8, 1);
    // SAFETY: index 1 does not exist; the kernel refuses it.
    unsafe { ring.push_op_unchecked(ctx(4), op) }.unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::EFAULT);

    // A range outside the registered buffer.
    let outside = [0u8; 8];
    let op = WriteFixed::new(wo.as_raw_fd(), outside.as_ptr(), 8, 0);
    // SAFETY: the kernel checks the range against buffer 0 and refuses it.
    unsafe { ring.push_op_unchecked(ctx(5), op) }.unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::EFAULT);
}

#[test]
fn read_from_a_provided_buffer_group() {
    let (path, f) = rw_file("provided");
    std::fs::write(&path, b"provided-buffer-read").unwrap();
    // Provide 2 buffers of 16 bytes to group 7 (IORING_OP_PROVIDE_BUFFERS),
    // declared before the ring so they outlive it.
    let mut pool = vec![0u8; 32];
    let mut ring = common::ring(8);
    {
        // SAFETY: the entry is fully written before submission; `pool` is
        // declared before the ring, so it outlives every use the kernel
        // makes of it (the ring's drop cancels and closes first).
        let sqe = unsafe { ring.next_sqe() }.unwrap();
        *sqe = uring_core::Sqe::new(sys::IORING_OP_PROVIDE_BUFFERS as u8);
        sqe.fd = 2;
        sqe.set_addr(pool.as_mut_ptr() as u64);
        sqe.len = 16;
        sqe.set_buf_group(7);
        sqe.set_off(5);
        sqe.user_data = 99 << 2;
    }
    let d = common::reap_one(&mut ring);
    assert!(d.res >= 0, "PROVIDE_BUFFERS: {}", d.res);

    ring.read_provided(ctx(1), f.as_raw_fd(), 8, 7, 9).unwrap();
    let d = common::reap_one(&mut ring);
    assert_eq!(d.res, 8);
    let bid = d.buffer_id().expect("IORING_CQE_F_BUFFER");
    assert!(bid == 5 || bid == 6, "buffer id {bid}");
    let start = usize::from(bid - 5) * 16;
    assert_eq!(&pool[start..start + 8], b"buffer-r");

    // A group with no buffers left is -ENOBUFS.
    ring.push_op(ctx(2), ReadProvided::new(f.as_raw_fd(), 8, 7)).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 8);
    ring.push_op(ctx(3), ReadProvided::new(f.as_raw_fd(), 8, 7)).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::ENOBUFS);
}

#[test]
fn builders_write_the_fields_the_kernel_reads() {
    let mut sqe = uring_core::Sqe::default();
    let mut keep = uring_core::Keep::new();
    let mut buf = [0u8; 4];
    // SAFETY: only prepared, never pushed.
    unsafe { Read::new(Fixed(3), &mut buf) }
        .offset(77)
        .rw_flags(RwFlags::NOWAIT | RwFlags::HIPRI)
        .ioprio(5)
        .prepare(&mut sqe, &mut keep);
    assert_eq!(sqe.opcode, sys::IORING_OP_READ as u8);
    assert_eq!((sqe.fd, sqe.len, sqe.off(), sqe.ioprio), (3, 4, 77, 5));
    assert_eq!(sqe.addr(), buf.as_ptr() as u64);
    assert_eq!(sqe.op_flags(), sys::RWF_NOWAIT | sys::RWF_HIPRI);
    assert_eq!(sqe.sqe_flags(), uring_core::SqeFlags::FIXED_FILE);

    ReadProvided::new(4, 100, 9).prepare(&mut sqe, &mut keep);
    assert_eq!((sqe.fd, sqe.len, sqe.buf_group(), sqe.addr()), (4, 100, 9, 0));
    assert_eq!(sqe.sqe_flags(), uring_core::SqeFlags::BUFFER_SELECT);
}

/// A token: the reap helpers give back its `user_data` as built.
fn tag(n: u64) -> SqeContext {
    SqeContext::token(n).unwrap()
}

/// Reaps `n` completions and returns their results in `tag(1..=n)` order.
fn results_by_ctx(ring: &mut Ring, n: u64) -> Vec<i32> {
    let done = common::reap(ring, n as usize);
    (1..=n).map(|i| done.iter().find(|d| d.user_data == tag(i).raw()).expect("every CQE").res).collect()
}

#[test]
fn a_short_read_fails_the_rest_of_an_io_link_chain_but_not_of_a_hardlink_chain() {
    // `__io_complete_rw_common` (io_uring/rw.c) marks a read or write that
    // transferred fewer bytes than asked as failed: under IO_LINK the
    // next entry is cancelled, under IO_HARDLINK it runs.
    let (path, f) = rw_file("shortlink");
    std::fs::write(&path, b"12345").unwrap();
    let fd = f.as_raw_fd();
    let mut ring = common::ring(8);
    let mut buf = [0u8; 16];

    // SAFETY: `buf` is untouched until the CQEs are reaped.
    unsafe { ring.linked().read(tag(1), fd, &mut buf, 0) }.unwrap();
    ring.linked().write_static(tag(2), fd, b"never", 5).unwrap();
    ring.push_op(tag(3), Nop::new()).unwrap();
    assert_eq!(results_by_ctx(&mut ring, 3), [5, -libc::ECANCELED, -libc::ECANCELED]);
    assert_eq!(std::fs::read(&path).unwrap(), b"12345", "the cancelled write wrote nothing");

    // The same chain with a full read runs to the end.
    let mut five = [0u8; 5];
    // SAFETY: as above.
    unsafe { ring.linked().read(tag(1), fd, &mut five, 0) }.unwrap();
    ring.linked().write_static(tag(2), fd, b"67", 5).unwrap();
    ring.push_op(tag(3), Nop::new()).unwrap();
    assert_eq!(results_by_ctx(&mut ring, 3), [5, 2, 0]);
    assert_eq!(std::fs::read(&path).unwrap(), b"1234567");

    // A hard link goes on after the short read.
    // SAFETY: as above.
    unsafe { ring.with_flags(SqeFlags::IO_HARDLINK).read(tag(1), fd, &mut buf, 0) }.unwrap();
    ring.push_op(tag(2), Nop::new()).unwrap();
    assert_eq!(results_by_ctx(&mut ring, 2), [7, 0]);
    assert_eq!(&buf[..7], b"1234567");
}

#[test]
fn ring_methods_and_builders_queue_the_same_linked_entry() {
    // `ring.linked().write_static(..)` is
    // `ring.push_op(.., Write::from_static(..).with_sqe_flags(IO_LINK))`:
    // both fail their successor the same way when the write fails.
    let mut ring = common::ring(8);
    ring.linked().write_static(tag(1), -1, b"x", 0).unwrap();
    ring.push_op(tag(2), Nop::new()).unwrap();
    assert_eq!(results_by_ctx(&mut ring, 2), [-libc::EBADF, -libc::ECANCELED]);
    ring.push_op(tag(1), Write::from_static(-1, b"x").with_sqe_flags(SqeFlags::IO_LINK)).unwrap();
    ring.push_op(tag(2), Nop::new()).unwrap();
    assert_eq!(results_by_ctx(&mut ring, 2), [-libc::EBADF, -libc::ECANCELED]);
    // Flags add up, and a packed context's stamped flags are the entry's.
    let stamped = ring.linked().with_flags(SqeFlags::IO_DRAIN).nop(SqeContext::default()).unwrap();
    assert_eq!(stamped.flags(), Some(SqeFlags::IO_LINK | SqeFlags::IO_DRAIN));
    ring.push_op(tag(2), Nop::new()).unwrap();
    let done = common::reap(&mut ring, 2);
    assert!(done.iter().all(|d| d.res == 0), "{done:?}");
}
