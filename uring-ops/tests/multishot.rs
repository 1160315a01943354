//! Multishot operations against the kernel.

mod common;

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use uring_core::SqeContext;
use uring_ops::multishot::AcceptMulti;
use uring_ops::prelude::*;

#[test]
fn multishot_accept_delivers_each_connection_and_stays_armed() {
    let mut ring = common::ring(16);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    ring.push_op(SqeContext::from_raw(1 << 2), AcceptMulti::new(listener.as_raw_fd())).unwrap();
    ring.submit().unwrap();
    let mut clients = Vec::new();
    for i in 0..3u8 {
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(&[i]).unwrap();
        clients.push(c);
    }
    let done = common::reap(&mut ring, 3);
    for (i, d) in done.iter().enumerate() {
        assert!(d.res >= 0, "accept failed: {d:?}");
        assert!(d.more(), "multishot accept must stay armed");
        // SAFETY: the kernel just created this descriptor for us.
        let s = TcpStream::from(unsafe { OwnedFd::from_raw_fd(d.res) });
        let mut b = [0u8; 1];
        std::io::Read::read_exact(&mut &s, &mut b).unwrap();
        assert_eq!(b[0], i as u8, "connections arrive in order");
    }
}

#[test]
fn bad_accept_flags_are_refused_before_submission() {
    let mut ring = common::ring(4);
    let err = ring.push_op(SqeContext::default(), AcceptMulti::new(0).flags(libc::O_APPEND)).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert_eq!(ring.sq_pending(), 0);
}
