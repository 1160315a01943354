//! Transfers on a real kernel: bytes spliced file → pipe → file, tee'd
//! pipe data seen by both readers, pipes created by the ring, writeback
//! and page-cache advice with their effect on residency, and `madvise`
//! zeroing anonymous memory.

mod common;

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileExt;
use std::path::Path;

use uring_core::{Error, Ring, SqeContext};
use uring_ops::prelude::*;
use uring_ops::transfer::{Fadvise, Madvise, Pipe, Splice, SpliceFlags, SyncFileRange, Tee, TransferOps};

fn ctx(n: u64) -> SqeContext {
    SqeContext::token(n).unwrap() // a token: the push stamps the opcode in
}

fn fd(f: &impl AsRawFd) -> Target {
    Target::Fd(f.as_raw_fd())
}

fn pipe() -> (File, File) {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a writable array of two ints.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: pipe2 returned two fresh descriptors that nothing else owns.
    unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) }
}

fn file_with(dir: &Path, name: &str, bytes: &[u8]) -> File {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    OpenOptions::new().read(true).write(true).open(p).unwrap()
}

/// Pushes `op`, submits, and returns its result.
fn run<O: SafeOp>(ring: &mut Ring, op: O) -> i32 {
    ring.push_op(ctx(1), op).unwrap();
    common::reap_one(ring).res
}

/// Reads what is in a pipe now (its write end must still be open, so
/// the pipe is made non-blocking for the read).
fn drain(r: &mut File) -> Vec<u8> {
    // SAFETY: F_SETFL on a descriptor we own.
    unsafe { libc::fcntl(r.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("read: {e}"),
        }
    }
    out
}

#[test]
fn splice_moves_bytes_file_to_pipe_to_file() {
    let dir = common::tmpdir("splice");
    let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let src = file_with(&dir, "src", &data);
    let dst = file_with(&dir, "dst", b"");
    let (r, w) = pipe();
    let mut ring = common::ring(8);

    // From offset 100 of the file into the pipe, then into the new file at 7.
    ring.splice(ctx(1), fd(&src), Some(100), fd(&w), None, 4000).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 4000);
    ring.splice(ctx(2), fd(&r), None, fd(&dst), Some(7), 4000).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 4000);
    let mut out = vec![0u8; 4000];
    dst.read_exact_at(&mut out, 7).unwrap();
    assert_eq!(out, data[100..4100]);

    // Without an offset the file position is used, and advanced.
    ring.push_op(ctx(3), Splice::new(fd(&src), None, fd(&w), None, 64).flags(SpliceFlags::MOVE)).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 64);
    ring.push_op(ctx(4), Splice::new(fd(&src), None, fd(&w), None, 64)).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 64);
    let mut r = r;
    assert_eq!(drain(&mut r), data[..128]);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn splice_reads_a_fixed_input_file() {
    let dir = common::tmpdir("splice-fixed");
    let src = file_with(&dir, "src", b"from a registered file");
    let (mut r, w) = pipe();
    let mut ring = common::ring(8);
    ring.register().files(&[src.as_raw_fd(), w.as_raw_fd()]).unwrap();
    // Both ends fixed: SPLICE_F_FD_IN_FIXED for the input, IOSQE_FIXED_FILE
    // for the output.
    let res = run(&mut ring, Splice::new(Fixed(0), Some(5), Fixed(1), None, 100));
    assert_eq!(res, 17);
    assert_eq!(drain(&mut r), b"a registered file");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn splice_errors() {
    let dir = common::tmpdir("splice-err");
    let a = file_with(&dir, "a", b"abc");
    let b = file_with(&dir, "b", b"");
    let (r, w) = pipe();
    let mut ring = common::ring(8);
    // Neither end is a pipe.
    assert_eq!(run(&mut ring, Splice::new(fd(&a), Some(0), fd(&b), Some(0), 3)), -libc::EINVAL);
    // An offset on a pipe.
    assert_eq!(run(&mut ring, Splice::new(fd(&a), Some(0), fd(&w), Some(0), 3)), -libc::ESPIPE);
    // A closed input descriptor.
    let closed = common::NEVER_OPEN_FD;
    assert_eq!(run(&mut ring, Splice::new(Target::Fd(closed), None, fd(&w), None, 3)), -libc::EBADF);
    // An empty pipe with SPLICE_F_NONBLOCK: EAGAIN instead of blocking.
    let (_r2, w2) = pipe();
    assert_eq!(run(&mut ring, Splice::new(fd(&r), None, fd(&w2), None, 3).flags(SpliceFlags::NONBLOCK)), -libc::EAGAIN);
    // An empty fixed slot as input.
    ring.register().files_sparse(1).unwrap();
    assert_eq!(run(&mut ring, Splice::new(Fixed(0), None, fd(&w), None, 3)), -libc::EBADF);
    // Refused before submission.
    let err = ring.push_op(ctx(1), Splice::new(fd(&a), Some(u64::MAX), fd(&w), None, 3)).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    let err = ring
        .push_op(ctx(1), Splice::new(fd(&r), None, fd(&b), None, 3).flags(SpliceFlags::from_bits_retain(0x100)))
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert_eq!(ring.sq_pending(), 0);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn tee_duplicates_pipe_data_for_both_readers() {
    let (mut ar, mut aw) = pipe();
    let (mut br, bw) = pipe();
    aw.write_all(b"said twice").unwrap();
    let mut ring = common::ring(8);
    ring.tee(ctx(1), fd(&ar), fd(&bw), 64).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 10);
    assert_eq!(drain(&mut ar), b"said twice", "tee consumed the input");
    assert_eq!(drain(&mut br), b"said twice");

    // Errors: not a pipe, and the same pipe on both sides.
    let dir = common::tmpdir("tee");
    let f = file_with(&dir, "f", b"x");
    assert_eq!(run(&mut ring, Tee::new(fd(&f), fd(&bw), 1)), -libc::EINVAL);
    aw.write_all(b"y").unwrap();
    assert_eq!(run(&mut ring, Tee::new(fd(&ar), fd(&aw), 1)), -libc::EINVAL);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_ring_creates_a_working_pipe() {
    let mut ring = common::ring(8);
    if !ring.features().supports(uring_core::sys::IORING_OP_PIPE as u8) {
        return common::skip("the_ring_creates_a_working_pipe", "IORING_OP_PIPE needs Linux 6.16");
    }
    let mut fds: [RawFd; 2] = [-1; 2];
    // SAFETY: `fds` is not touched until the CQE is reaped below.
    unsafe { ring.pipe(ctx(1), &mut fds) }.unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 0);
    assert!(fds[0] >= 0 && fds[1] >= 0 && fds[0] != fds[1], "{fds:?}");
    // SAFETY: the kernel installed these two descriptors for us.
    let (mut r, mut w) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
    // SAFETY: F_GETFD on a descriptor we own.
    let fd_flags = unsafe { libc::fcntl(fds[0], libc::F_GETFD) };
    assert_ne!(fd_flags & libc::FD_CLOEXEC, 0, "O_CLOEXEC by default");
    w.write_all(b"through the new pipe").unwrap();
    drop(w);
    let mut got = String::new();
    r.read_to_string(&mut got).unwrap();
    assert_eq!(got, "through the new pipe");

    // Non-blocking: an empty read is EAGAIN instead of a hang.
    let mut fds: [RawFd; 2] = [-1; 2];
    // SAFETY: as above.
    unsafe { ring.push_op_unchecked(ctx(2), Pipe::new(&mut fds).flags(libc::O_NONBLOCK)) }.unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 0);
    // SAFETY: the kernel installed these two descriptors for us.
    let (mut r, _w) = unsafe { (File::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let err = r.read(&mut [0u8; 4]).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock);

    // Bad flags never reach the kernel.
    // SAFETY: nothing is queued.
    let err = unsafe { ring.push_op_unchecked(ctx(3), Pipe::new(&mut fds).flags(libc::O_APPEND)) }.unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
}

#[test]
fn a_direct_pipe_lands_in_the_file_table() {
    let mut ring = common::ring(8);
    if !ring.features().supports(uring_core::sys::IORING_OP_PIPE as u8) {
        return common::skip("a_direct_pipe_lands_in_the_file_table", "IORING_OP_PIPE needs Linux 6.16");
    }
    ring.register().files_sparse(8).unwrap();
    let mut fds: [RawFd; 2] = [-1; 2];
    // SAFETY: `fds` is not touched until the CQE is reaped below.
    unsafe { ring.push_op_unchecked(ctx(1), Pipe::new(&mut fds).dest(FileDest::AnySlot)) }.unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 0);
    let [rs, ws] = fds;
    assert!((0..8).contains(&rs) && (0..8).contains(&ws) && rs != ws, "{fds:?}");

    // Bytes through the registered ends: file → write slot, read slot → pipe.
    let dir = common::tmpdir("pipe-direct");
    let src = file_with(&dir, "src", b"via fixed slots");
    let (mut out_r, out_w) = pipe();
    assert_eq!(run(&mut ring, Splice::new(fd(&src), Some(0), Fixed(ws as u32), None, 64)), 15);
    assert_eq!(run(&mut ring, Splice::new(Fixed(rs as u32), None, fd(&out_w), None, 64)), 15);
    assert_eq!(drain(&mut out_r), b"via fixed slots");

    // A given slot: the read end goes there, the write end to the next.
    let mut fds: [RawFd; 2] = [-1; 2];
    // SAFETY: as above.
    unsafe { ring.push_op_unchecked(ctx(2), Pipe::new(&mut fds).dest(FileDest::Slot(6))) }.unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 0);
    assert_eq!(fds, [6, 7]);
    assert_eq!(run(&mut ring, Splice::new(fd(&src), Some(0), Fixed(7), None, 3)), 3);
    assert_eq!(run(&mut ring, Splice::new(Fixed(6), None, fd(&out_w), None, 64)), 3);
    assert_eq!(drain(&mut out_r), b"via");
    let _ = std::fs::remove_dir_all(dir);
}

/// Pages of `f`'s first `len` bytes that are in the page cache.
fn resident_pages(f: &File, len: usize) -> usize {
    // SAFETY: a fresh shared read-only mapping of a file we own; unmapped
    // below, never dereferenced.
    let map = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, f.as_raw_fd(), 0) };
    assert_ne!(map, libc::MAP_FAILED);
    let page = page_size();
    let mut vec = vec![0u8; len.div_ceil(page)];
    // SAFETY: `map` is a mapping of `len` bytes; `vec` has one byte per page.
    assert_eq!(unsafe { libc::mincore(map, len, vec.as_mut_ptr()) }, 0);
    // SAFETY: unmapping what we mapped.
    unsafe { libc::munmap(map, len) };
    vec.iter().filter(|b| *b & 1 != 0).count()
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

#[test]
fn written_back_pages_can_be_dropped_from_the_cache() {
    let dir = common::tmpdir("fadvise");
    let len = 16 * page_size();
    let f = file_with(&dir, "f", &vec![7u8; len]);
    assert_eq!(resident_pages(&f, len), len / page_size(), "freshly written pages are cached");
    let mut ring = common::ring(8);
    // Write back and wait: the pages become clean...
    ring.sync_file_range(ctx(1), fd(&f), 0, len as u32).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 0);
    // ...so POSIX_FADV_DONTNEED can drop them.
    ring.fadvise(ctx(2), fd(&f), 0, len as u64, libc::POSIX_FADV_DONTNEED).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 0);
    let left = resident_pages(&f, len);
    if left != 0 {
        // Another process may map or read the same pages; not an error of ours.
        eprintln!("note: {left} pages stayed resident after POSIX_FADV_DONTNEED");
    }
    assert!(left < len / page_size(), "no page was dropped");
    // WILLNEED reads them back in.
    assert_eq!(run(&mut ring, Fadvise::new(fd(&f), 0, 0, libc::POSIX_FADV_WILLNEED)), 0);
    let mut byte = [0u8; 1];
    f.read_exact_at(&mut byte, len as u64 - 1).unwrap();
    assert_eq!(byte, [7]);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn sync_and_advice_errors() {
    let (r, _w) = pipe();
    let mut ring = common::ring(8);
    assert_eq!(run(&mut ring, SyncFileRange::new(fd(&r), 0, 0)), -libc::ESPIPE);
    assert_eq!(run(&mut ring, Fadvise::new(fd(&r), 0, 0, libc::POSIX_FADV_NORMAL)), -libc::ESPIPE);
    let dir = common::tmpdir("advise-err");
    let f = file_with(&dir, "f", b"x");
    assert_eq!(run(&mut ring, Fadvise::new(fd(&f), 0, 0, 99)), -libc::EINVAL);
    let closed = common::NEVER_OPEN_FD;
    assert_eq!(run(&mut ring, SyncFileRange::new(Target::Fd(closed), 0, 0)), -libc::EBADF);
    let err = ring.push_op(ctx(1), SyncFileRange::new(fd(&f), 0, 0).flags(0x80)).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert_eq!(ring.sq_pending(), 0);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn madvise_dontneed_zeroes_anonymous_memory() {
    let len = 4 * page_size();
    // SAFETY: a fresh private anonymous mapping, used only through `map`
    // below and unmapped at the end.
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(map, libc::MAP_FAILED);
    let bytes = map.cast::<u8>();
    // SAFETY: `len` writable bytes at `bytes`, no reference to them exists.
    unsafe { bytes.write_bytes(0xab, len) };
    let mut ring = common::ring(8);
    // SAFETY: no Rust reference points into the mapping, and it stays
    // mapped until after the CQE.
    unsafe { ring.madvise(ctx(1), map, len as u64, libc::MADV_DONTNEED) }.unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 0);
    // SAFETY: the mapping is still `len` readable bytes.
    let after = unsafe { std::slice::from_raw_parts(bytes, len) };
    assert!(after.iter().all(|&b| b == 0), "MADV_DONTNEED did not zero the range");

    // Unaligned address: EINVAL from the kernel.
    // SAFETY: advice on memory of the mapping that changes nothing.
    unsafe {
        ring.push_op_unchecked(ctx(2), Madvise::new(map.cast::<u8>().wrapping_add(1).cast(), 16, libc::MADV_NORMAL))
    }
    .unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::EINVAL);
    // SAFETY: unmapping what we mapped; `after` is not used any more.
    unsafe { libc::munmap(map, len) };
}
