//! Registered buffers against the kernel: fixed reads and writes move real
//! bytes through the library's memory; sparse tables, installs, clones
//! between rings; bad input; and the locked-memory limit explained.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::time::Duration;

use uring_buffers::{Error, RegisteredBuffers};
use uring_core::{CqeSlot, Options, Ring, sys};

fn ring() -> Ring {
    let mut ring = Ring::new(Options::default().entries(8)).expect("Ring::new (see SETUP.md)");
    ring.start().unwrap();
    ring
}

/// A fixed read or write of `len` bytes at file offset 0 from/to the start
/// of registered buffer `index`; returns the CQE's result.
fn fixed(ring: &mut Ring, bufs: &RegisteredBuffers, write: bool, fd: i32, index: u32, len: u32) -> i32 {
    let addr = bufs.raw_parts(index).map_or(0x1000, |(p, _)| p as u64);
    // SAFETY: the address lies in registered buffer `index`, owned by
    // `bufs` and attached to the ring; the test waits for the completion
    // before touching the buffer again.
    let sqe = unsafe { ring.next_sqe() }.unwrap();
    sqe.opcode = if write { sys::IORING_OP_WRITE_FIXED } else { sys::IORING_OP_READ_FIXED } as u8;
    sqe.fd = fd;
    sqe.set_addr(addr);
    sqe.len = len;
    sqe.set_off(0);
    sqe.set_buf_index(index as u16);
    ring.submit().unwrap();
    let mut slots = [CqeSlot::EMPTY; 1];
    let done = ring.wait_for(&mut slots, 1, Some(Duration::from_secs(5))).unwrap();
    done.get(0).unwrap().res()
}

fn temp(tag: &str) -> File {
    let p = std::env::temp_dir().join(format!("uring-buffers-{tag}-{}", std::process::id()));
    let f = File::options().read(true).write(true).create(true).truncate(true).open(&p).unwrap();
    std::fs::remove_file(&p).unwrap();
    f
}

#[test]
fn fixed_writes_and_reads_move_bytes_through_registered_memory() {
    let mut ring = ring();
    let mut bufs = RegisteredBuffers::register(&mut ring, 4, 5000).unwrap();
    assert_eq!(bufs.len(), 4);
    let (p2, len2) = bufs.raw_parts(2).unwrap();
    assert_eq!(len2, 5000);
    assert_eq!(p2 as usize % 4096, 0, "each buffer starts on a page");
    let pattern: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
    bufs.buffer_mut(2).unwrap().copy_from_slice(&pattern);
    let mut f = temp("fixed");
    assert_eq!(fixed(&mut ring, &bufs, true, f.as_raw_fd(), 2, 5000), 5000);
    let mut on_disk = Vec::new();
    f.rewind().unwrap();
    f.read_to_end(&mut on_disk).unwrap();
    assert_eq!(on_disk, pattern, "WRITE_FIXED wrote buffer 2");
    assert_eq!(fixed(&mut ring, &bufs, false, f.as_raw_fd(), 3, 5000), 5000);
    assert_eq!(bufs.buffer(3).unwrap(), &pattern[..], "READ_FIXED filled buffer 3");
    assert!(bufs.buffer(4).is_none());
}

#[test]
fn sparse_tables_take_installed_buffers() {
    let mut ring = ring();
    let mut bufs = RegisteredBuffers::sparse(&mut ring, 8).unwrap();
    assert!(!bufs.is_installed(5));
    let mut f = temp("sparse");
    f.write_all(b"sparse slot five").unwrap();
    assert_eq!(fixed(&mut ring, &bufs, false, f.as_raw_fd(), 5, 16), -libc::EFAULT, "an empty slot");
    bufs.install(&mut ring, 5, 100).unwrap();
    assert!(bufs.is_installed(5));
    assert_eq!(fixed(&mut ring, &bufs, false, f.as_raw_fd(), 5, 16), 16);
    assert_eq!(&bufs.buffer(5).unwrap()[..16], b"sparse slot five");
    // Replacing the slot gives a fresh, zeroed buffer.
    bufs.install(&mut ring, 5, 50).unwrap();
    assert_eq!(bufs.buffer(5).unwrap(), &[0u8; 50][..]);
    assert!(matches!(bufs.install(&mut ring, 8, 10), Err(Error::InvalidArgument(_))));
}

#[test]
fn a_second_ring_shares_cloned_buffers() {
    let mut a = ring();
    let mut b = ring();
    let bufs = RegisteredBuffers::register(&mut a, 2, 4096).unwrap();
    let mut shared = match bufs.clone_into(&a, &mut b) {
        Ok(s) => s,
        Err(Error::Core(e)) if e.to_string().contains("EINVAL") => {
            eprintln!("SKIPPED a_second_ring_shares_cloned_buffers: IORING_REGISTER_CLONE_BUFFERS refused: {e}");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    let mut f = temp("clone");
    f.write_all(b"through the other ring").unwrap();
    assert_eq!(fixed(&mut b, &shared, false, f.as_raw_fd(), 1, 22), 22);
    assert_eq!(&bufs.buffer(1).unwrap()[..22], b"through the other ring", "the same memory");
    // Two tables hold each buffer: neither lends it out writable, or both
    // could at once.
    assert!(shared.is_shared(0) && bufs.is_shared(0));
    assert!(shared.buffer_mut(0).is_none(), "held by the source table too");
    let base = bufs.raw_parts(0);
    drop(bufs);
    assert!(!shared.is_shared(0));
    shared.buffer_mut(0).unwrap()[0] = 9;
    assert_eq!(shared.raw_parts(0), base, "the same memory, now the clone's alone");
    drop(a);
    // The first ring is gone; the buffers live on in the second.
    assert_eq!(fixed(&mut b, &shared, true, f.as_raw_fd(), 1, 22), 22);
}

#[test]
fn bad_tables_are_refused() {
    let mut ring = ring();
    for (count, size) in [(0, 4096), (uring_buffers::registered::MAX_BUFFERS + 1, 4096), (1, 0), (1, (1 << 30) + 1)] {
        assert!(
            matches!(RegisteredBuffers::register(&mut ring, count, size), Err(Error::InvalidArgument(_))),
            "{count} x {size}"
        );
    }
    let bufs = RegisteredBuffers::register(&mut ring, 1, 4096).unwrap();
    let err = RegisteredBuffers::register(&mut ring, 1, 4096).unwrap_err();
    assert!(err.to_string().contains("EBUSY") || err.to_string().contains("busy"), "{err}");
    bufs.unregister(&mut ring).unwrap();
    RegisteredBuffers::register(&mut ring, 1, 4096).expect("a table again after unregistering");
    ring.stop();
    assert!(matches!(RegisteredBuffers::sparse(&mut ring, 1), Err(Error::Core(uring_core::Error::Stopped))));
}

/// Runs in a child without CAP_IPC_LOCK (see the next test).
#[test]
#[ignore = "run by locked_memory_limit_is_explained in a child process without CAP_IPC_LOCK"]
fn memlock_child() {
    let limit = libc::rlimit { rlim_cur: 1 << 20, rlim_max: 1 << 20 };
    // SAFETY: setrlimit reads one rlimit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) }, 0);
    let mut ring = ring();
    let err = RegisteredBuffers::register(&mut ring, 4, 1 << 20).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::LockedMemory { asked: 4194304, .. }), "{text}");
    assert!(text.contains("RLIMIT_MEMLOCK (1048576 bytes)") && text.contains("SETUP.md"), "{text}");
    let bufs = RegisteredBuffers::register(&mut ring, 4, 64 << 10).expect("a smaller budget fits");
    assert_eq!(bufs.len(), 4);
    println!("CHILD OK: {text}");
}

#[test]
fn locked_memory_limit_is_explained() {
    if !std::path::Path::new("/usr/bin/setpriv").exists() {
        eprintln!("SKIPPED locked_memory_limit_is_explained: no /usr/bin/setpriv to drop CAP_IPC_LOCK with");
        return;
    }
    let out = std::process::Command::new("/usr/bin/setpriv")
        .arg("--bounding-set=-ipc_lock")
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "memlock_child", "--include-ignored", "--nocapture", "--test-threads=1"])
        .output()
        .unwrap();
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && all.contains("CHILD OK"), "child failed:\n{all}");
}
