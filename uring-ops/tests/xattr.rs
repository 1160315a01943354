//! Extended attributes on a real file: set through the ring and read back
//! with `getxattr(2)`, set with `setxattr(2)` and read through the ring,
//! and the kernel's errors.

mod common;

use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use uring_core::{Error, SqeContext};
use uring_ops::prelude::*;
use uring_ops::xattr::{FGetXattr, FSetXattr, SetXattr, XattrFlags, XattrOps};

fn ctx(n: u64) -> SqeContext {
    SqeContext::token(n).unwrap()
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// `getxattr(2)` directly, for checking.
fn sys_get(path: &Path, name: &str) -> Result<Vec<u8>, i32> {
    let (p, n) = (cpath(path), CString::new(name).unwrap());
    let mut buf = vec![0u8; 256];
    // SAFETY: the strings are NUL-terminated and `buf` has `len` bytes.
    let r = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
    }
    buf.truncate(r as usize);
    Ok(buf)
}

/// `setxattr(2)` directly, for setup.
fn sys_set(path: &Path, name: &str, value: &[u8]) -> Result<(), i32> {
    let (p, n) = (cpath(path), CString::new(name).unwrap());
    // SAFETY: the strings are NUL-terminated and `value` has `len` bytes.
    let r = unsafe { libc::setxattr(p.as_ptr(), n.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    if r < 0 { Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0)) } else { Ok(()) }
}

/// A file on a filesystem that takes `user.*` attributes: the temp dir, or
/// /dev/shm (tmpfs has them since 6.6); `None` (and a SKIPPED line) if
/// neither does.
fn xattr_file(test: &str) -> Option<PathBuf> {
    let mut candidates = vec![common::tmpdir("xattr")];
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        let d = shm.join(format!("uring-ops-xattr-{}-{test}", std::process::id()));
        if std::fs::create_dir_all(&d).is_ok() {
            candidates.push(d);
        }
    }
    for dir in candidates {
        let f = dir.join("f");
        std::fs::write(&f, b"content").ok()?;
        if sys_set(&f, "user.probe", b"1").is_ok() {
            return Some(f);
        }
    }
    common::skip(test, "no writable filesystem here supports user.* extended attributes");
    None
}

#[test]
fn fsetxattr_then_read_back_with_the_syscall() {
    let Some(path) = xattr_file("fsetxattr_then_read_back_with_the_syscall") else { return };
    let f = File::open(&path).unwrap();
    let mut ring = common::ring(8);
    ring.fsetxattr(ctx(1), f.as_raw_fd(), "user.note", b"set via uring", XattrFlags::empty()).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 0);
    assert_eq!(sys_get(&path, "user.note").unwrap(), b"set via uring");

    // XATTR_CREATE on an existing attribute: -EEXIST, value unchanged.
    ring.push_op(ctx(2), FSetXattr::new(f.as_raw_fd(), "user.note", b"other").flags(XattrFlags::CREATE)).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::EEXIST);
    assert_eq!(sys_get(&path, "user.note").unwrap(), b"set via uring");

    // XATTR_REPLACE on a missing one: -ENODATA.
    ring.push_op(ctx(3), FSetXattr::new(f.as_raw_fd(), "user.absent", b"v").flags(XattrFlags::REPLACE)).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::ENODATA);
    assert_eq!(sys_get(&path, "user.absent"), Err(libc::ENODATA));
}

#[test]
fn setxattr_by_path_replaces() {
    let Some(path) = xattr_file("setxattr_by_path_replaces") else { return };
    let mut ring = common::ring(8);
    ring.setxattr(ctx(1), &path, "user.k", b"first", XattrFlags::CREATE).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 0);
    ring.push_op(ctx(2), SetXattr::new(&path, "user.k", b"second").flags(XattrFlags::REPLACE)).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 0);
    assert_eq!(sys_get(&path, "user.k").unwrap(), b"second");

    ring.setxattr(ctx(3), path.with_file_name("missing"), "user.k", b"v", XattrFlags::empty()).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::ENOENT);
}

#[test]
fn getxattr_and_fgetxattr_read_what_the_syscall_set() {
    let Some(path) = xattr_file("getxattr_and_fgetxattr_read_what_the_syscall_set") else { return };
    sys_set(&path, "user.color", b"blue-green").unwrap();
    let mut ring = common::ring(8);

    let mut buf = [0u8; 64];
    // SAFETY: `buf` is untouched until the reap.
    unsafe { ring.getxattr(ctx(1), &path, "user.color", &mut buf) }.unwrap();
    let d = common::reap_one(&mut ring);
    assert_eq!(d.res, 10);
    assert_eq!(&buf[..10], b"blue-green");

    let f = File::open(&path).unwrap();
    let mut buf2 = [0u8; 64];
    // SAFETY: as above.
    unsafe { ring.fgetxattr(ctx(2), f.as_raw_fd(), "user.color", &mut buf2) }.unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 10);
    assert_eq!(&buf2[..10], b"blue-green");

    // Size query (len 0), too-small buffer, missing attribute.
    // SAFETY: with an empty buffer the kernel writes nothing.
    let op = unsafe { FGetXattr::new(f.as_raw_fd(), "user.color", &mut []) };
    ring.push_op(ctx(3), op).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 10);
    let mut small = [0u8; 4];
    // SAFETY: as above.
    unsafe { ring.fgetxattr(ctx(4), f.as_raw_fd(), "user.color", &mut small) }.unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::ERANGE);
    // SAFETY: as above.
    unsafe { ring.fgetxattr(ctx(5), f.as_raw_fd(), "user.missing", &mut buf2) }.unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::ENODATA);
}

#[test]
fn bad_descriptors_names_and_flags() {
    let mut ring = common::ring(8);
    ring.fsetxattr(ctx(1), 9999, "user.x", b"v", XattrFlags::empty()).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::EBADF);

    let err = ring.fsetxattr(ctx(2), 0, "user.a\0b", b"v", XattrFlags::empty()).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    let err = ring.setxattr(ctx(3), "/tmp", "user.a", b"v", XattrFlags::from_bits_retain(0x40)).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert_eq!(ring.sq_pending(), 0);

    // Registered files are refused by the kernel for xattr operations.
    let op = FSetXattr::new(0, "user.x", b"v").with_sqe_flags(uring_core::SqeFlags::FIXED_FILE);
    ring.push_op(ctx(4), op).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::EBADF);
}
