//! Setup errors become actionable `Error` variants: a real seccomp filter
//! (installed on one thread only) refusing `io_uring_setup`.

use uring_core::{Error, Options, Ring};

/// Installs a seccomp filter on the calling thread that fails
/// `io_uring_setup` with `errno` and allows everything else.
fn deny_io_uring_setup(errno: u32) {
    let code = |c: u16, k: u32| libc::sock_filter { code: c, jt: 0, jf: 0, k };
    let jeq = |k: u32, jt: u8, jf: u8| libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    };
    let mut prog = [
        // A = seccomp_data.nr (offset 0)
        code((libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16, 0),
        jeq(libc::SYS_io_uring_setup as u32, 0, 1),
        code((libc::BPF_RET | libc::BPF_K) as u16, libc::SECCOMP_RET_ERRNO | errno),
        code((libc::BPF_RET | libc::BPF_K) as u16, libc::SECCOMP_RET_ALLOW),
    ];
    let fprog = libc::sock_fprog { len: prog.len() as u16, filter: prog.as_mut_ptr() };
    // SAFETY: PR_SET_NO_NEW_PRIVS takes integer arguments only.
    assert_eq!(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) }, 0);
    // SAFETY: `fprog` points to a valid filter program that outlives the
    // call (the kernel copies it); no TSYNC flag, so only this thread is
    // filtered.
    let r = unsafe {
        libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, &fprog as *const libc::sock_fprog)
    };
    assert_eq!(r, 0, "seccomp: {}", std::io::Error::last_os_error());
}

#[test]
fn seccomp_filter_is_reported_as_blocked() {
    for errno in [libc::EPERM as u32, libc::ENOSYS as u32] {
        let e = std::thread::spawn(move || {
            deny_io_uring_setup(errno);
            Ring::new(Options::small()).expect_err("io_uring_setup is filtered on this thread")
        })
        .join()
        .unwrap();
        match &e {
            Error::Blocked { errno: source, seccomp } => {
                assert_eq!(source.raw_os_error(), Some(errno as i32));
                assert_eq!(seccomp, "2", "filter mode");
                let msg = e.to_string();
                assert!(msg.contains("seccomp") && msg.contains("SETUP.md §4"), "{msg}");
            }
            other => panic!("errno {errno}: expected Blocked, got {other:?}"),
        }
        let io: std::io::Error = e.into();
        assert_eq!(io.kind(), std::io::ErrorKind::PermissionDenied);
    }
    // Other threads are unaffected.
    Ring::new(Options::small()).expect("this thread has no filter");
}
