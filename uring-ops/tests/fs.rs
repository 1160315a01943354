//! File management against the real filesystem: each test checks the
//! effect with std (mode, names, link counts, lengths, allocation) and the
//! errors the kernel reports.

mod common;

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use uring_core::{Error, Options, SqeContext, sys};
use uring_ops::fs::{
    Close, Fallocate, FsOps, Fsync, LinkAt, MkdirAt, OpenAt, OpenAt2, RenameAt, ResolveFlags, Statx, UnlinkAt,
};
use uring_ops::prelude::*;

const CWD: i32 = libc::AT_FDCWD;

fn ctx(n: u64) -> SqeContext {
    SqeContext::token(n).unwrap()
}

/// The process umask: created modes are compared against `mode & !umask`.
fn umask() -> u32 {
    // SAFETY: umask only swaps a process attribute; it is restored at once.
    let old = unsafe { libc::umask(0o022) };
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    old as u32
}

#[test]
fn openat_creates_with_mode_and_the_descriptor_works() {
    let dir = common::tmpdir("open");
    let path = dir.join("new");
    let mut ring = common::ring(8);
    ring.openat(ctx(1), CWD, &path, libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC, 0o640).unwrap();
    let d = common::reap_one(&mut ring);
    assert!(d.res >= 0, "openat: {}", d.res);
    // SAFETY: the kernel just returned this new descriptor to us.
    let mut f = File::from(unsafe { OwnedFd::from_raw_fd(d.res) });
    f.write_all(b"via uring fd").unwrap();
    drop(f);
    assert_eq!(fs::read(&path).unwrap(), b"via uring fd");
    let meta = fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o640 & !umask());

    // Relative to a directory descriptor; O_EXCL on an existing file.
    let dfd = File::open(&dir).unwrap();
    ring.push_op(ctx(2), OpenAt::new(dfd.as_raw_fd(), "new", libc::O_CREAT | libc::O_EXCL | libc::O_RDONLY, 0o600))
        .unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::EEXIST);
    ring.openat(ctx(3), dfd.as_raw_fd(), "missing", libc::O_RDONLY, 0).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::ENOENT);
}

#[test]
fn a_path_with_a_nul_byte_is_refused_before_anything_is_queued() {
    let mut ring = common::ring(8);
    let bad = OsStr::from_bytes(b"/tmp/a\0b");
    let err = ring.openat(ctx(1), CWD, bad, libc::O_RDONLY, 0).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    let err = ring.renameat(ctx(2), CWD, "/tmp/ok", CWD, bad).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    let err = ring.mkdirat(ctx(3), CWD, bad, 0o700).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert_eq!(ring.sq_pending(), 0);
}

#[test]
fn openat_direct_fills_a_registered_slot_and_close_empties_it() {
    let dir = common::tmpdir("direct");
    let path = dir.join("f");
    fs::write(&path, b"slot data").unwrap();
    let mut ring = common::ring_with(Options::default().entries(8));
    ring.register().files_sparse(4).unwrap();

    // O_CLOEXEC cannot apply to a slot: refused by name.
    let err = ring
        .push_op(ctx(1), OpenAt::new(CWD, &path, libc::O_RDONLY | libc::O_CLOEXEC, 0).dest(FileDest::Slot(2)))
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");

    ring.push_op(ctx(2), OpenAt::new(CWD, &path, libc::O_RDONLY, 0).dest(FileDest::Slot(2))).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 0);

    // The slot reads the file.
    let mut buf = [0u8; 9];
    // SAFETY: `buf` is untouched until the reap.
    let op = unsafe { uring_ops::file::Read::new(Fixed(2), &mut buf) };
    ring.push_op(ctx(3), op).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 9);
    assert_eq!(&buf, b"slot data");

    ring.close(ctx(4), Fixed(2)).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 0);
    // SAFETY: as above.
    unsafe { ring.push_op_unchecked(ctx(5), op) }.unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::EBADF, "the slot is empty after close");

    // Any free slot: the result is the slot chosen.
    ring.push_op(ctx(6), OpenAt2::new(CWD, &path, libc::O_RDONLY).dest(FileDest::AnySlot)).unwrap();
    let d = common::reap_one(&mut ring);
    assert!((0..4).contains(&d.res), "allocated slot {}", d.res);
}

#[test]
fn close_closes_a_descriptor() {
    let mut ring = common::ring(8);
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: the write end is ours; the read end is closed by the ring.
    let mut tx = File::from(unsafe { OwnedFd::from_raw_fd(fds[1]) });
    ring.close(ctx(1), fds[0]).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 0);
    // The pipe lost its only reader (Rust ignores SIGPIPE).
    let err = tx.write_all(b"x").unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe);
    // A number that is not open (not re-closing ours: parallel tests reuse
    // descriptor numbers).
    ring.close(ctx(2), 9999).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::EBADF);
}

#[test]
fn openat2_resolve_beneath_refuses_escapes() {
    let dir = common::tmpdir("beneath");
    fs::write(dir.join("inside"), b"in").unwrap();
    let dfd = File::open(&dir).unwrap();
    let mut ring = common::ring(8);

    ring.openat2(ctx(1), dfd.as_raw_fd(), "inside", libc::O_RDONLY | libc::O_CLOEXEC, ResolveFlags::BENEATH).unwrap();
    let d = common::reap_one(&mut ring);
    assert!(d.res >= 0, "openat2 inside: {}", d.res);
    let mut s = String::new();
    // SAFETY: the kernel returned a new descriptor.
    let inside = unsafe { OwnedFd::from_raw_fd(d.res) };
    File::from(inside).read_to_string(&mut s).unwrap();
    assert_eq!(s, "in");

    ring.openat2(ctx(2), dfd.as_raw_fd(), "../", libc::O_RDONLY, ResolveFlags::BENEATH).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::EXDEV);

    // With a mode and O_CREAT, the file is created with it.
    let op = OpenAt2::new(dfd.as_raw_fd(), "created", libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC)
        .mode(0o600)
        .resolve(ResolveFlags::BENEATH);
    ring.push_op(ctx(3), op).unwrap();
    let d = common::reap_one(&mut ring);
    assert!(d.res >= 0, "openat2 create: {}", d.res);
    // SAFETY: a new descriptor from the kernel.
    drop(unsafe { OwnedFd::from_raw_fd(d.res) });
    assert_eq!(fs::metadata(dir.join("created")).unwrap().permissions().mode() & 0o777, 0o600 & !umask());

    // What the kernel would refuse with a bare EINVAL is refused by name.
    for bad in [
        OpenAt2::new(CWD, "x", libc::O_RDONLY).mode(0o600),
        OpenAt2::new(CWD, "x", libc::O_RDONLY | libc::O_DIRECTORY).mode(0o600),
        OpenAt2::new(CWD, "x", libc::O_RDONLY).resolve(ResolveFlags::BENEATH | ResolveFlags::IN_ROOT),
        OpenAt2::new(CWD, "x", libc::O_RDONLY).resolve(ResolveFlags::from_bits_retain(1 << 40)),
    ] {
        let err = ring.push_op(ctx(4), bad).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    }
    assert_eq!(ring.sq_pending(), 0);
}

#[test]
fn fsync_fdatasync_and_ranges_complete() {
    let dir = common::tmpdir("fsync");
    let mut f = OpenOptions::new().write(true).create(true).truncate(true).open(dir.join("f")).unwrap();
    f.write_all(&[7u8; 8192]).unwrap();
    let mut ring = common::ring(8);
    ring.fsync(ctx(1), f.as_raw_fd()).unwrap();
    ring.fdatasync(ctx(2), f.as_raw_fd()).unwrap();
    ring.push_op(ctx(3), Fsync::new(f.as_raw_fd()).datasync().range(4096, 4096)).unwrap();
    let got = common::reap(&mut ring, 3);
    assert!(got.iter().all(|d| d.res == 0), "{got:?}");
    // Real effect: the data survived and is what was written.
    assert_eq!(fs::read(dir.join("f")).unwrap(), vec![7u8; 8192]);

    ring.fsync(ctx(4), 9999).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::EBADF);
}

#[test]
fn fallocate_allocates_and_extends() {
    let dir = common::tmpdir("falloc");
    let path = dir.join("f");
    let f = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
    let mut ring = common::ring(8);
    ring.fallocate(ctx(1), f.as_raw_fd(), 0, 0, 1 << 20).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 0);
    let meta = fs::metadata(&path).unwrap();
    assert_eq!(meta.len(), 1 << 20);
    assert!(meta.blocks() * 512 >= 1 << 20, "allocated {} blocks", meta.blocks());

    // KEEP_SIZE allocates past the end without changing the length.
    ring.push_op(ctx(2), Fallocate::new(f.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, 1 << 20, 1 << 20)).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 0);
    let meta = fs::metadata(&path).unwrap();
    assert_eq!(meta.len(), 1 << 20);
    assert!(meta.blocks() * 512 >= 2 << 20, "allocated {} blocks", meta.blocks());

    ring.fallocate(ctx(3), 9999, 0, 0, 4096).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::EBADF);
}

#[test]
fn ftruncate_sets_the_length() {
    let mut ring = common::ring(8);
    if !ring.features().supports(sys::IORING_OP_FTRUNCATE as u8) {
        common::skip("ftruncate_sets_the_length", "IORING_OP_FTRUNCATE needs Linux 6.9");
        return;
    }
    let dir = common::tmpdir("trunc");
    let path = dir.join("f");
    fs::write(&path, b"0123456789").unwrap();
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    ring.ftruncate(ctx(1), f.as_raw_fd(), 4).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 0);
    assert_eq!(fs::read(&path).unwrap(), b"0123");
    ring.ftruncate(ctx(2), f.as_raw_fd(), 100).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 0);
    assert_eq!(fs::metadata(&path).unwrap().len(), 100);

    let ro = File::open(&path).unwrap();
    ring.ftruncate(ctx(3), ro.as_raw_fd(), 0).unwrap();
    let res = common::reap_one(&mut ring).res;
    assert!(res == -libc::EINVAL || res == -libc::EBADF, "ftruncate of a read-only fd: {res}");
    let err = ring.ftruncate(ctx(4), f.as_raw_fd(), u64::MAX).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
}

#[test]
fn statx_reports_size_and_mode() {
    let dir = common::tmpdir("statx");
    let path = dir.join("f");
    fs::write(&path, vec![1u8; 1234]).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o604)).unwrap();
    let mut ring = common::ring(8);
    // SAFETY: `libc::statx` is plain integers; all-zero is a value.
    let mut out: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: `out` is not touched until the reap.
    unsafe { ring.statx(ctx(1), CWD, &path, 0, libc::STATX_BASIC_STATS, &mut out) }.unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 0);
    assert_eq!(out.stx_size, 1234);
    assert_eq!(u32::from(out.stx_mode) & 0o7777, 0o604);
    assert_eq!(u32::from(out.stx_mode) & libc::S_IFMT, libc::S_IFREG);
    // The kernel filled a `libc::statx`: the fields std reads through
    // statx(2) agree.
    let meta = fs::metadata(&path).unwrap();
    assert_eq!((out.stx_ino, u64::from(out.stx_nlink)), (meta.ino(), meta.nlink()));
    assert_eq!(out.stx_mtime.tv_sec, meta.mtime());

    // AT_EMPTY_PATH on a descriptor: stats the file itself.
    let f = File::open(&path).unwrap();
    // SAFETY: as above.
    let mut out2: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { ring.statx(ctx(2), f.as_raw_fd(), "", libc::AT_EMPTY_PATH, libc::STATX_SIZE, &mut out2) }.unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 0);
    assert_eq!(out2.stx_size, 1234);

    // SAFETY: as above.
    let mut out3: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { ring.statx(ctx(3), CWD, dir.join("missing"), 0, libc::STATX_SIZE, &mut out3) }.unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::ENOENT);

    // SAFETY: refused before anything is queued.
    let op = unsafe { Statx::new(CWD, &path, libc::AT_REMOVEDIR, libc::STATX_SIZE, &mut out3) };
    let err = ring.push_op(ctx(4), op).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
}

#[test]
fn renameat_moves_and_noreplace_refuses() {
    let dir = common::tmpdir("rename");
    fs::write(dir.join("a"), b"A").unwrap();
    fs::write(dir.join("b"), b"B").unwrap();
    let mut ring = common::ring(8);
    ring.renameat(ctx(1), CWD, dir.join("a"), CWD, dir.join("c")).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 0);
    assert!(!dir.join("a").exists());
    assert_eq!(fs::read(dir.join("c")).unwrap(), b"A");

    ring.push_op(ctx(2), RenameAt::new(CWD, dir.join("c"), CWD, dir.join("b")).flags(libc::RENAME_NOREPLACE)).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::EEXIST);

    ring.push_op(ctx(3), RenameAt::new(CWD, dir.join("c"), CWD, dir.join("b")).flags(libc::RENAME_EXCHANGE)).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 0);
    assert_eq!((fs::read(dir.join("b")).unwrap(), fs::read(dir.join("c")).unwrap()), (b"A".to_vec(), b"B".to_vec()));

    ring.renameat(ctx(4), CWD, dir.join("nope"), CWD, dir.join("d")).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::ENOENT);
    let bad = RenameAt::new(CWD, "x", CWD, "y").flags(libc::RENAME_EXCHANGE | libc::RENAME_NOREPLACE);
    assert!(matches!(ring.push_op(ctx(5), bad), Err(Error::InvalidArgument(_))));
}

#[test]
fn mkdirat_unlinkat_file_and_directory() {
    let dir = common::tmpdir("mkdir");
    let sub = dir.join("sub");
    let mut ring = common::ring(8);
    ring.mkdirat(ctx(1), CWD, &sub, 0o750).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 0);
    let meta = fs::metadata(&sub).unwrap();
    assert!(meta.is_dir());
    assert_eq!(meta.permissions().mode() & 0o777, 0o750 & !umask());

    ring.mkdirat(ctx(2), CWD, &sub, 0o750).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::EEXIST);

    fs::write(sub.join("file"), b"x").unwrap();
    let dfd = File::open(&sub).unwrap();
    ring.unlinkat(ctx(3), dfd.as_raw_fd(), "file", 0).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 0);
    assert!(!sub.join("file").exists());

    // A directory needs AT_REMOVEDIR.
    ring.unlinkat(ctx(4), CWD, &sub, 0).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::EISDIR);
    ring.push_op(ctx(5), UnlinkAt::new(CWD, &sub).remove_dir()).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 0);
    assert!(!sub.exists());

    ring.unlinkat(ctx(6), CWD, &sub, libc::AT_REMOVEDIR).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::ENOENT);
    assert!(matches!(ring.unlinkat(ctx(7), CWD, &sub, libc::AT_SYMLINK_NOFOLLOW), Err(Error::InvalidArgument(_))));
    // Registered files are refused by the kernel for path operations.
    ring.push_op(ctx(8), MkdirAt::new(CWD, &sub, 0o700).with_sqe_flags(uring_core::SqeFlags::FIXED_FILE)).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::EBADF);
}

#[test]
fn symlinkat_and_linkat() {
    let dir = common::tmpdir("links");
    let target = dir.join("target");
    fs::write(&target, b"T").unwrap();
    let mut ring = common::ring(8);

    ring.symlinkat(ctx(1), "target", CWD, dir.join("sym")).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 0);
    assert_eq!(fs::read_link(dir.join("sym")).unwrap(), std::path::Path::new("target"));
    assert_eq!(fs::read(dir.join("sym")).unwrap(), b"T");
    ring.symlinkat(ctx(2), "elsewhere", CWD, dir.join("sym")).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::EEXIST);

    ring.linkat(ctx(3), CWD, &target, CWD, dir.join("hard"), 0).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 0);
    assert_eq!(fs::metadata(&target).unwrap().nlink(), 2);
    assert_eq!(fs::metadata(dir.join("hard")).unwrap().ino(), fs::metadata(&target).unwrap().ino());

    // Following the symlink links the target (a third name); without
    // AT_SYMLINK_FOLLOW the link itself would be linked.
    ring.push_op(ctx(4), LinkAt::new(CWD, dir.join("sym"), CWD, dir.join("hard2")).flags(libc::AT_SYMLINK_FOLLOW))
        .unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 0);
    assert_eq!(fs::metadata(&target).unwrap().nlink(), 3);

    ring.linkat(ctx(5), CWD, dir.join("missing"), CWD, dir.join("hard3"), 0).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::ENOENT);
    assert!(matches!(ring.linkat(ctx(6), CWD, "a", CWD, "b", libc::AT_REMOVEDIR), Err(Error::InvalidArgument(_))));
}

#[test]
fn builders_prepare_the_fields_the_kernel_reads() {
    let mut sqe = uring_core::Sqe::default();
    let mut keep = uring_core::Keep::new();
    Close::new(Fixed(5)).prepare(&mut sqe, &mut keep);
    assert_eq!((sqe.fd, sqe.file_index(), sqe.flags), (0, 6, 0));
    OpenAt::new(3, "p", libc::O_RDONLY, 0o644).dest(FileDest::AnySlot).prepare(&mut sqe, &mut keep);
    assert_eq!((sqe.fd, sqe.len, sqe.file_index()), (3, 0o644, sys::IORING_FILE_INDEX_ALLOC as u32));
    // SAFETY: the address points at the CString held by `keep`.
    let held = unsafe { std::ffi::CStr::from_ptr(sqe.addr() as *const libc::c_char) };
    assert_eq!(held.to_bytes(), b"p");
}
