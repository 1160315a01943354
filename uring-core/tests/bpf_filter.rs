//! Submission filters (`uring_core::bpf`, `IORING_REGISTER_BPF_FILTER`,
//! Linux 7.0+) against the running kernel: a denied request completes
//! with the kernel's `-EACCES` and has no effect, the other requests run,
//! programs see the request's context, and programs the kernel would
//! refuse are refused with a clear error. On kernels without the filters
//! (the 6.18 host) the registration's `Unsupported` is checked and the
//! tests skip with the reason; `cargo xtask vm-test` runs them on 7.x.

mod common;

use std::ffi::CString;
use std::path::PathBuf;

use uring_core::bpf::{BpfFilter, ctx};
use uring_core::{Error, Ring, Sqe, sys};

/// Prints why a test skipped; the caller returns right after.
fn skip(test: &str, reason: &str) {
    println!("SKIPPED {test}: {reason}");
}

/// Registers `f` on `ring`; `None` (after printing why) where the kernel
/// has no filters.
fn register_or_skip(test: &str, ring: &Ring, f: &BpfFilter) -> Option<u8> {
    match ring.register().bpf_filter(f) {
        Ok(pdu) => Some(pdu),
        Err(e @ Error::Unsupported { .. }) => {
            skip(test, &format!("{e}"));
            None
        }
        Err(e) => panic!("bpf_filter({f:?}): {e}"),
    }
}

/// A fresh path in the temp dir, not created.
fn temp_path(tag: &str) -> (PathBuf, CString) {
    let p = std::env::temp_dir().join(format!("uring-bpf-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_file(&p);
    let c = CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    (p, c)
}

/// An `IORING_OP_OPENAT` of `path` relative to the cwd.
fn openat(path: &CString, flags: i32, user_data: u64) -> Sqe {
    let mut sqe = Sqe::new(sys::IORING_OP_OPENAT as u8);
    sqe.fd = libc::AT_FDCWD;
    sqe.set_addr(path.as_ptr() as u64);
    sqe.len = 0o600;
    sqe.set_op_flags(flags as u32);
    sqe.user_data = user_data;
    sqe
}

/// An `IORING_OP_SOCKET` for `domain`/`ty`.
fn socket(domain: i32, ty: i32, user_data: u64) -> Sqe {
    let mut sqe = Sqe::new(sys::IORING_OP_SOCKET as u8);
    sqe.fd = domain;
    sqe.set_off(ty as u64);
    sqe.user_data = user_data;
    sqe
}

/// Pushes `sqes` (each names only memory that outlives the reap below),
/// submits and reaps one completion each, sorted by `user_data`.
fn run(ring: &mut Ring, sqes: &[Sqe]) -> Vec<(u64, i32)> {
    for sqe in sqes {
        // SAFETY: the paths the entries name are borrowed by the caller
        // across this call, which reaps every completion before returning.
        unsafe { ring.push(sqe) }.expect("push");
    }
    let mut got: Vec<(u64, i32)> = common::reap(ring, sqes.len()).into_iter().map(|(u, r, _)| (u, r)).collect();
    got.sort();
    got
}

/// Closes the descriptors successful opens and sockets returned.
fn close_fds(results: &[(u64, i32)]) {
    for &(_, r) in results {
        if r >= 0 && (10..1 << 20).contains(&r) {
            // SAFETY: `r` is a descriptor the kernel just created for us.
            unsafe { libc::close(r) };
        }
    }
}

#[test]
fn a_denied_opcode_completes_with_eacces_and_has_no_effect() {
    let test = "a_denied_opcode_completes_with_eacces_and_has_no_effect";
    let mut ring = common::ring(8);
    let (before, before_c) = temp_path("before");
    // Before the filter, an OPENAT with O_CREAT creates the file.
    let r = run(&mut ring, &[openat(&before_c, libc::O_CREAT | libc::O_WRONLY, 1)]);
    assert!(r[0].1 >= 0, "{r:?}");
    close_fds(&r);
    assert!(before.exists());
    std::fs::remove_file(&before).unwrap();

    let Some(pdu) = register_or_skip(test, &ring, &BpfFilter::deny(sys::IORING_OP_OPENAT as u8)) else { return };
    println!("IORING_OP_OPENAT: the kernel fills {pdu} bytes of per-opcode context");
    let (after, after_c) = temp_path("after");
    let r = run(&mut ring, &[openat(&after_c, libc::O_CREAT | libc::O_WRONLY, 2), common::nop(3)]);
    close_fds(&r);
    assert_eq!(r, vec![(2, -libc::EACCES), (3, 0)], "the open is refused, the NOP runs");
    assert!(!after.exists(), "a denied open created {after:?}");
}

#[test]
fn an_allow_list_denies_every_other_opcode() {
    let test = "an_allow_list_denies_every_other_opcode";
    let mut ring = common::ring(8);
    let Some(_) = register_or_skip(test, &ring, &BpfFilter::allow(sys::IORING_OP_NOP as u8).deny_rest()) else {
        return;
    };
    let (path, c) = temp_path("allowlist");
    let mut read = Sqe::new(sys::IORING_OP_READ as u8);
    read.fd = 0;
    read.user_data = 3;
    let r = run(&mut ring, &[common::nop(1), openat(&c, libc::O_CREAT | libc::O_WRONLY, 2), read]);
    close_fds(&r);
    assert_eq!(r, vec![(1, 0), (2, -libc::EACCES), (3, -libc::EACCES)]);
    assert!(!path.exists());
    // A filter added later for a denied opcode stacks on the denial: the
    // opcode stays denied.
    ring.register().bpf_filter(&BpfFilter::allow(sys::IORING_OP_OPENAT as u8)).expect("a second filter");
    let r = run(&mut ring, &[openat(&c, libc::O_CREAT | libc::O_WRONLY, 4)]);
    close_fds(&r);
    assert_eq!(r, vec![(4, -libc::EACCES)]);
    assert!(!path.exists());
}

#[test]
fn programs_see_the_user_data_and_the_sqe_flags() {
    let test = "programs_see_the_user_data_and_the_sqe_flags";
    let mut ring = common::ring(8);
    let nop = sys::IORING_OP_NOP as u8;
    let f = BpfFilter::deny_if(nop, ctx::USER_DATA_LOW, u32::MAX, 42).unwrap();
    let Some(pdu) = register_or_skip(test, &ring, &f) else { return };
    assert_eq!(pdu, 0, "a NOP has no per-opcode context");
    assert_eq!(
        run(&mut ring, &[common::nop(41), common::nop(42), common::nop(43)]),
        vec![(41, 0), (42, -libc::EACCES), (43, 0)]
    );
    // Byte 1 of the opcode word is the SQE flags: deny IOSQE_ASYNC NOPs.
    let f = BpfFilter::deny_if(nop, ctx::OPCODE_FLAGS, u32::from(sys::IOSQE_ASYNC as u8) << 8, 0x10 << 8).unwrap();
    ring.register().bpf_filter(&f).expect("stacked filter");
    let mut async_nop = common::nop(7);
    async_nop.flags = sys::IOSQE_ASYNC as u8;
    assert_eq!(
        run(&mut ring, &[async_nop, common::nop(8), common::nop(42)]),
        vec![(7, -libc::EACCES), (8, 0), (42, -libc::EACCES)]
    );
}

#[test]
fn open_flags_are_filtered_and_a_plain_open_still_works() {
    let test = "open_flags_are_filtered_and_a_plain_open_still_works";
    let mut ring = common::ring(8);
    let Some(pdu) = register_or_skip(test, &ring, &BpfFilter::open_without(libc::O_CREAT as u32, false)) else {
        return;
    };
    assert!(pdu >= 24, "OPENAT fills flags, mode and resolve: {pdu}");
    let (path, c) = temp_path("openflags");
    let r = run(&mut ring, &[openat(&c, libc::O_CREAT | libc::O_WRONLY, 1)]);
    close_fds(&r);
    assert_eq!(r, vec![(1, -libc::EACCES)]);
    assert!(!path.exists());
    std::fs::write(&path, b"x").unwrap();
    let r = run(&mut ring, &[openat(&c, libc::O_RDONLY, 2)]);
    close_fds(&r);
    assert!(r[0].1 >= 0, "a read-only open of an existing file is allowed: {r:?}");
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn socket_families_are_filtered() {
    let test = "socket_families_are_filtered";
    let mut ring = common::ring(8);
    let f = BpfFilter::socket_families(&[libc::AF_UNIX]).unwrap();
    let Some(pdu) = register_or_skip(test, &ring, &f) else { return };
    assert!(pdu >= 12, "SOCKET fills family, type and protocol: {pdu}");
    let r = run(&mut ring, &[socket(libc::AF_UNIX, libc::SOCK_STREAM, 1), socket(libc::AF_INET, libc::SOCK_STREAM, 2)]);
    close_fds(&r);
    assert!(r[0].1 >= 0, "AF_UNIX is allowed: {r:?}");
    assert_eq!(r[1], (2, -libc::EACCES));
}

#[test]
fn bad_filters_get_clear_errors() {
    let test = "bad_filters_get_clear_errors";
    let ring = common::ring(4);
    // Refused before the call.
    let ldb = libc::sock_filter { code: (libc::BPF_LD | libc::BPF_B | libc::BPF_ABS) as u16, jt: 0, jf: 0, k: 8 };
    let ret = libc::sock_filter { code: (libc::BPF_RET | libc::BPF_K) as u16, jt: 0, jf: 0, k: 0 };
    match BpfFilter::new(1, &[ldb, ret]) {
        Err(Error::InvalidArgument(m)) => assert!(m.contains("instruction 0"), "{m}"),
        other => panic!("{other:?}"),
    }
    // An opcode the kernel does not know.
    match ring.register().bpf_filter(&BpfFilter::deny(250)) {
        Err(Error::Unsupported { what, .. }) => assert!(what.contains("250"), "{what}"),
        other => panic!("{other:?}"),
    }
    let socket = sys::IORING_OP_SOCKET as u8;
    let Some(_) = register_or_skip(test, &ring, &BpfFilter::allow(socket)) else { return };
    // Refused by the kernel: a size that does not match (EMSGSIZE) ...
    match ring.register().bpf_filter(&BpfFilter::allow(socket).strict_size(200)) {
        Err(Error::InvalidArgument(m)) => assert!(m.contains("EMSGSIZE") && m.contains("expects 200"), "{m}"),
        other => panic!("{other:?}"),
    }
    // ... and a scratch slot read before any store (the classic checker).
    let ld_mem = libc::sock_filter { code: (libc::BPF_LD | libc::BPF_MEM) as u16, jt: 0, jf: 0, k: 3 };
    let reta = libc::sock_filter { code: (libc::BPF_RET | libc::BPF_A) as u16, jt: 0, jf: 0, k: 0 };
    let f = BpfFilter::new(socket, &[ld_mem, reta]).expect("our checker passes it");
    match ring.register().bpf_filter(&f) {
        Err(Error::InvalidArgument(m)) => assert!(m.contains("EINVAL"), "{m}"),
        other => panic!("the kernel should refuse an uninitialised scratch read: {other:?}"),
    }
    // The refused filters left no trace: SOCKET still runs.
    let mut ring = ring;
    let r = run(&mut ring, &[socket_sqe()]);
    close_fds(&r);
    assert!(r[0].1 >= 0, "{r:?}");
}

fn socket_sqe() -> Sqe {
    socket(libc::AF_UNIX, libc::SOCK_DGRAM, 9)
}

#[test]
fn kernels_without_filters_say_so() {
    let ring = common::ring(4);
    let q = uring_core::query::opcodes().ok();
    let has = q.is_some_and(|q| q.knows_register_op(sys::IORING_REGISTER_BPF_FILTER));
    match ring.register().bpf_filter(&BpfFilter::deny(sys::IORING_OP_NOP as u8)) {
        Ok(_) => assert!(has, "registered although the query lacks the opcode: {q:?}"),
        Err(Error::Unsupported { what, hint, .. }) => {
            assert!(!has);
            assert_eq!(what, "IORING_REGISTER_BPF_FILTER");
            assert_eq!(hint, Some("needs Linux 7.0"));
        }
        Err(e) => panic!("{e}"),
    }
}

const CHILD_ENV: &str = "URING_BPF_FILTER_CHILD";
const CAP_SYS_ADMIN: u32 = 21;

/// The child of `a_task_filter_confines_only_rings_created_afterwards`:
/// runs without `CAP_SYS_ADMIN`, since a task filter cannot be undone.
fn task_child() {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .expect("CapEff");
    assert_eq!(eff & (1 << CAP_SYS_ADMIN), 0, "the child still has CAP_SYS_ADMIN:\n{status}");
    let nop = sys::IORING_OP_NOP as u8;
    // Without CAP_SYS_ADMIN and without no_new_privs: refused.
    match uring_core::bpf::register_task_filter(&BpfFilter::deny(nop)) {
        Err(Error::Io { call, source }) => {
            assert_eq!(call, "IORING_REGISTER_BPF_FILTER");
            assert_eq!(source.raw_os_error(), Some(libc::EACCES), "{source}");
        }
        other => panic!("expected EACCES: {other:?}"),
    }
    let mut before = common::ring(4);
    // SAFETY: prctl with integer arguments only.
    assert_eq!(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) }, 0);
    assert_eq!(uring_core::bpf::register_task_filter(&BpfFilter::deny(nop)).expect("with no_new_privs"), 0);
    let mut after = common::ring(4);
    let (path, c) = temp_path("task");
    std::fs::write(&path, b"x").unwrap();
    let r = run(&mut after, &[common::nop(1), openat(&c, libc::O_RDONLY, 2)]);
    close_fds(&r);
    assert_eq!(r[0], (1, -libc::EACCES), "a ring created after the task filter runs it: {r:?}");
    assert!(r[1].1 >= 0, "other opcodes run: {r:?}");
    assert_eq!(run(&mut before, &[common::nop(3)]), vec![(3, 0)], "a ring created before is not affected");
    std::fs::remove_file(&path).unwrap();
    println!("CHILD OK");
}

#[test]
fn a_task_filter_confines_only_rings_created_afterwards() {
    const NAME: &str = "a_task_filter_confines_only_rings_created_afterwards";
    if std::env::var(CHILD_ENV).as_deref() == Ok(NAME) {
        return task_child();
    }
    let has = uring_core::query::opcodes().is_ok_and(|q| q.knows_register_op(sys::IORING_REGISTER_BPF_FILTER));
    if !has {
        match uring_core::bpf::register_task_filter(&BpfFilter::deny(sys::IORING_OP_NOP as u8)) {
            Err(e @ Error::Unsupported { .. }) => return skip(NAME, &format!("{e}")),
            other => panic!("the query lacks IORING_REGISTER_BPF_FILTER yet: {other:?}"),
        }
    }
    let mut cmd = std::process::Command::new(std::env::current_exe().expect("current_exe"));
    let drop_sys_admin = || -> std::io::Result<()> {
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, CAP_SYS_ADMIN as libc::c_ulong, 0, 0, 0) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    };
    // SAFETY: the closure runs in the forked child before exec and only
    // calls prctl, which is async-signal-safe and touches no memory of the
    // parent.
    unsafe { std::os::unix::process::CommandExt::pre_exec(&mut cmd, drop_sys_admin) };
    let out = cmd
        .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, NAME)
        .output()
        .expect("run the child");
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && all.contains("CHILD OK"), "child failed:\n{all}");
}

/// A NOP128 with `user_data` in the ring's next 128-byte entry.
fn push_nop128(ring: &mut Ring, user_data: u64) {
    // SAFETY: a NOP names no memory; the extra 64 bytes are plain payload.
    let sqe = unsafe { ring.next_sqe128() }.expect("a free 128-byte SQE");
    sqe.sqe.opcode = sys::IORING_OP_NOP128 as u8;
    sqe.sqe.user_data = user_data;
    sqe.ext = [0; 64];
}

#[test]
fn a_denied_nop_turns_the_mixed_rings_padding_into_a_completion() {
    // What SOUNDNESS.md and the bpf module state: on an SQE_MIXED ring the
    // padding NOP before a 128-byte entry at the wrap posts no CQE only
    // when it succeeds; denied, it completes with -EACCES and user_data
    // 0 (no layer value), and the 128-byte entry still runs.
    let test = "a_denied_nop_turns_the_mixed_rings_padding_into_a_completion";
    let opts = uring_core::Options::default().entries(4).extra_flags(uring_core::SetupFlags::SQE_MIXED);
    let mut ring = match Ring::new(opts) {
        Ok(r) => r,
        Err(e) => return skip(test, &format!("{e} (SQE_MIXED is 6.19+)")),
    };
    ring.start().expect("start");
    if !ring.features().supports(sys::IORING_OP_NOP128 as u8) {
        return skip(test, "IORING_OP_NOP128 is not in this kernel's probe");
    }
    let Some(_) = register_or_skip(test, &ring, &BpfFilter::deny(sys::IORING_OP_NOP as u8)) else { return };
    // Slot 0: a denied NOP; slots 1-2: a NOP128; tail at slot 3, the last.
    assert_eq!(run(&mut ring, &[common::nop(1)]), vec![(1, -libc::EACCES)]);
    push_nop128(&mut ring, 2);
    assert_eq!(common::reap(&mut ring, 1).iter().map(|c| (c.0, c.1)).collect::<Vec<_>>(), vec![(2, 0)]);
    // This pair does not fit in slot 3: a padding NOP takes it.
    push_nop128(&mut ring, 3);
    let mut got: Vec<(u64, i32)> = common::reap(&mut ring, 2).iter().map(|c| (c.0, c.1)).collect();
    got.sort();
    assert_eq!(got, vec![(0, -libc::EACCES), (3, 0)], "the denied pad completes under user_data 0");
}

/// A fresh TCP socket.
fn tcp_socket() -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: a plain socket call; the descriptor is new and ours.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0);
        std::os::fd::OwnedFd::from_raw_fd(fd)
    }
}

/// An `IORING_OP_CONNECT` of `fd` to `addr`.
fn connect(fd: &std::os::fd::OwnedFd, addr: &libc::sockaddr_in, user_data: u64) -> Sqe {
    use std::os::fd::AsRawFd;
    let mut sqe = Sqe::new(sys::IORING_OP_CONNECT as u8);
    sqe.fd = fd.as_raw_fd();
    sqe.set_addr(std::ptr::from_ref(addr) as u64);
    sqe.set_off(size_of::<libc::sockaddr_in>() as u64);
    sqe.user_data = user_data;
    sqe
}

#[test]
fn connects_are_filtered_by_destination_port() {
    let test = "connects_are_filtered_by_destination_port";
    let mut ring = common::ring(8);
    let (_a, allowed) = common::listener();
    let (_d, denied) = common::listener();
    // The port word: the port in network byte order in its first two
    // bytes, read in the machine's order, as sin_port holds it.
    let f = BpfFilter::deny_if(sys::IORING_OP_CONNECT as u8, ctx::CONNECT_PORT, 0xffff, u32::from(denied.sin_port))
        .unwrap();
    let Some(pdu) = register_or_skip(test, &ring, &f) else { return };
    if pdu == 0 {
        // The filter sees zeroes for the port where the kernel fills no
        // CONNECT context: it would deny nothing.
        return skip(test, "this kernel fills no per-opcode context for IORING_OP_CONNECT (pdu_size 0)");
    }
    let (s1, s2) = (tcp_socket(), tcp_socket());
    let r = run(&mut ring, &[connect(&s1, &allowed, 1), connect(&s2, &denied, 2)]);
    assert_eq!(r, vec![(1, 0), (2, -libc::EACCES)], "CONNECT context of {pdu} bytes");
    // The denied connect never reached the listener: its socket is not
    // connected.
    // SAFETY: sockaddr_in is plain integers; all zeroes is valid.
    let mut peer: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
    use std::os::fd::AsRawFd;
    // SAFETY: getpeername writes at most `len` bytes into `peer`.
    let rc = unsafe { libc::getpeername(s2.as_raw_fd(), (&raw mut peer).cast(), &mut len) };
    assert_eq!(rc, -1);
    assert_eq!(std::io::Error::last_os_error().raw_os_error(), Some(libc::ENOTCONN));
}
