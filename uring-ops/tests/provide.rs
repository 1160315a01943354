//! Legacy provided buffers and `epoll_ctl`, against the kernel.

mod common;

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;

use uring_core::{Error, SqeContext};
use uring_ops::net::RecvSelect;
use uring_ops::prelude::*;
use uring_ops::provide::{ProvideBuffers, RemoveBuffers};
use uring_ops::wait::{EpollCtl, WaitOps};

#[test]
fn provided_buffers_are_selected_by_receives_and_removable() {
    let mut ring = common::ring(8);
    let mut memory = vec![0u8; 4 * 32];
    // SAFETY: `memory` outlives every buffer's use: the test reaps the
    // receives and removes the rest before it is dropped.
    unsafe { ring.provide_buffers(SqeContext::token(1).unwrap(), &mut memory, 32, 7, 10) }.unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 0);
    let (mut tx, rx) = UnixStream::pair().unwrap();
    tx.write_all(b"legacy").unwrap();
    ring.push_op(SqeContext::token(2).unwrap(), RecvSelect::new(rx.as_raw_fd(), 7)).unwrap();
    let d = common::reap_one(&mut ring);
    assert_eq!(d.res, 6);
    let bid = d.buffer_id().expect("a selected buffer");
    assert!((10..14).contains(&bid), "ids start at first_bid: {bid}");
    let start = usize::from(bid - 10) * 32;
    assert_eq!(&memory[start..start + 6], b"legacy", "the bytes landed in that buffer of our memory");
    ring.remove_buffers(SqeContext::token(3).unwrap(), 100, 7).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 3, "the three unused buffers came back");
    ring.remove_buffers(SqeContext::token(4).unwrap(), 1, 7).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 0, "the group is empty: nothing removed");
    ring.remove_buffers(SqeContext::token(5).unwrap(), 1, 99).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::ENOENT, "a group never provided");
}

#[test]
fn bad_provide_arguments_are_refused_before_submission() {
    let mut ring = common::ring(4);
    let mut b = [0u8; 64];
    for op in [
        ProvideBuffers::new(b.as_mut_ptr(), 0, 1, 1, 0),
        ProvideBuffers::new(b.as_mut_ptr(), 16, 0, 1, 0),
        ProvideBuffers::new(b.as_mut_ptr(), 16, 4, 1, u16::MAX - 1),
    ] {
        // SAFETY: refused before anything is queued.
        let err = unsafe { ring.push_op_unchecked(SqeContext::default(), op) }.unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    }
    assert!(matches!(ring.push_op(SqeContext::default(), RemoveBuffers::new(0, 1)), Err(Error::InvalidArgument(_))));
    assert_eq!(ring.sq_pending(), 0);
}

#[test]
fn epoll_ctl_adds_modifies_and_deletes() {
    let mut ring = common::ring(8);
    // SAFETY: epoll_create1 has no memory arguments.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(ep >= 0);
    let (mut tx, rx) = UnixStream::pair().unwrap();
    let fd = rx.as_raw_fd();
    ring.epoll_ctl(SqeContext::token(1).unwrap(), EpollCtl::add(ep, fd, libc::EPOLLIN as u32, 77)).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 0);
    tx.write_all(b"x").unwrap();
    let mut ev = [libc::epoll_event { events: 0, u64: 0 }; 2];
    // SAFETY: `ev` is valid for two events.
    let n = unsafe { libc::epoll_wait(ep, ev.as_mut_ptr(), 2, 1000) };
    assert_eq!(n, 1);
    let (events, data) = (ev[0].events, ev[0].u64);
    assert_eq!((events & libc::EPOLLIN as u32, data), (libc::EPOLLIN as u32, 77), "the kernel copied our event");
    ring.epoll_ctl(SqeContext::token(2).unwrap(), EpollCtl::modify(ep, fd, libc::EPOLLIN as u32, 88)).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 0);
    // SAFETY: as above.
    assert_eq!(unsafe { libc::epoll_wait(ep, ev.as_mut_ptr(), 2, 1000) }, 1);
    let data = ev[0].u64;
    assert_eq!(data, 88);
    ring.epoll_ctl(SqeContext::token(3).unwrap(), EpollCtl::delete(ep, fd)).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 0);
    // SAFETY: as above.
    assert_eq!(unsafe { libc::epoll_wait(ep, ev.as_mut_ptr(), 2, 0) }, 0, "no longer watched");
    ring.epoll_ctl(SqeContext::token(4).unwrap(), EpollCtl::delete(ep, fd)).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::ENOENT);
    ring.epoll_ctl(SqeContext::token(5).unwrap(), EpollCtl::add(-1, fd, 0, 0)).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::EBADF);
    // SAFETY: closing our own epoll fd.
    unsafe { libc::close(ep) };
}
