//! Socket I/O against the kernel: loopback TCP and UDP, byte-exact.

mod common;

use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::net::{Shutdown, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU16, Ordering};

use uring_core::{Ring, SqeContext, sys};
use uring_ops::net::{NetOps, Recv, RecvBundle, RecvMsg, RecvSelect, Send, SendMsg, SendZc};
use uring_ops::prelude::*;

/// A foreign context: `user_data` comes back exactly as given.
fn ctx(n: u64) -> SqeContext {
    SqeContext::token(n).unwrap()
}

fn udp() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    s.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    s
}

/// A provided-buffer ring registered on `ring` (test-local; uring-buffers
/// owns this later): `count` buffers of `size` bytes, ids `0..count`.
struct BufRing {
    ring_fd: i32,
    bgid: u16,
    map: *mut libc::c_void,
    map_len: usize,
    data: Vec<u8>,
    size: usize,
}

impl BufRing {
    fn new(ring: &Ring, count: u16, size: usize) -> BufRing {
        static GROUPS: AtomicU16 = AtomicU16::new(1);
        let bgid = GROUPS.fetch_add(1, Ordering::Relaxed);
        assert!(count.is_power_of_two());
        let map_len = usize::from(count) * size_of::<sys::io_uring_buf>();
        // SAFETY: an anonymous private mapping; checked below.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(map, libc::MAP_FAILED, "mmap");
        let reg =
            sys::io_uring_buf_reg { ring_addr: map as u64, ring_entries: u32::from(count), bgid, ..Default::default() };
        // SAFETY: `reg` is a valid io_uring_buf_reg for one call; the ring
        // memory stays mapped until `Drop` unregisters it.
        unsafe { sys::io_uring_register(ring.as_raw_fd(), sys::IORING_REGISTER_PBUF_RING, (&raw const reg).cast(), 1) }
            .expect("IORING_REGISTER_PBUF_RING");
        let mut data = vec![0u8; usize::from(count) * size];
        let bufs = sys::io_uring_buf_ring::bufs_ptr(map.cast());
        for i in 0..count {
            let entry = sys::io_uring_buf {
                addr: data[usize::from(i) * size..].as_mut_ptr() as u64,
                len: size as u32,
                bid: i,
                resv: 0,
            };
            // SAFETY: `i < count` entries fit the mapping. Entry 0's `resv`
            // is the tail, written after (the kernel reads nothing before
            // the tail moves).
            unsafe { std::ptr::addr_of_mut!((*bufs.add(usize::from(i))).addr).write(entry.addr) };
            // SAFETY: as above.
            unsafe { std::ptr::addr_of_mut!((*bufs.add(usize::from(i))).len).write(entry.len) };
            // SAFETY: as above.
            unsafe { std::ptr::addr_of_mut!((*bufs.add(usize::from(i))).bid).write(entry.bid) };
        }
        let tail = sys::io_uring_buf_ring::tail_ptr(map.cast());
        // SAFETY: the tail is a u16 inside the mapping, shared with the
        // kernel; published with release ordering after the entries.
        unsafe { std::sync::atomic::AtomicU16::from_ptr(tail) }.store(count, Ordering::Release);
        BufRing { ring_fd: ring.as_raw_fd(), bgid, map, map_len, data, size }
    }

    fn buffer(&self, id: u16, len: usize) -> &[u8] {
        let at = usize::from(id) * self.size;
        &self.data[at..at + len]
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        let reg = sys::io_uring_buf_reg { bgid: self.bgid, ..Default::default() };
        // SAFETY: as for the register call.
        let _ = unsafe {
            sys::io_uring_register(self.ring_fd, sys::IORING_UNREGISTER_PBUF_RING, (&raw const reg).cast(), 1)
        };
        // SAFETY: our mapping, unregistered above.
        unsafe { libc::munmap(self.map, self.map_len) };
    }
}

#[test]
fn tcp_send_then_recv_is_byte_exact() {
    let mut ring = common::ring(8);
    let (client, server) = common::tcp_pair();
    let msg: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    // SAFETY: `msg` outlives the reap below.
    unsafe { ring.send(ctx(1), client.as_raw_fd(), &msg) }.unwrap();
    let d = common::reap_one(&mut ring);
    assert_eq!((d.user_data, d.res), (ctx(1).raw(), 3000));

    let mut buf = vec![0u8; 3000];
    // SAFETY: `buf` outlives the reap; MSG_WAITALL fills it.
    let op = unsafe { Recv::new(server.as_raw_fd(), &mut buf) };
    ring.push_op(ctx(2), op.flags(libc::MSG_WAITALL)).unwrap();
    let d = common::reap_one(&mut ring);
    assert_eq!(d.res, 3000);
    assert_eq!(buf, msg);
}

#[test]
fn udp_send_to_reaches_the_destination() {
    let mut ring = common::ring(8);
    let (a, b) = (udp(), udp());
    // SAFETY: the literal is static.
    unsafe { ring.send_to(ctx(1), a.as_raw_fd(), b"datagram", b.local_addr().unwrap()) }.unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 8);
    let mut got = [0u8; 64];
    let (n, from) = b.recv_from(&mut got).unwrap();
    assert_eq!(&got[..n], b"datagram");
    assert_eq!(from, a.local_addr().unwrap());

    // And back, received through the ring.
    b.send_to(b"reply", a.local_addr().unwrap()).unwrap();
    let mut buf = [0u8; 16];
    // SAFETY: `buf` outlives the reap.
    unsafe { ring.recv(ctx(2), a.as_raw_fd(), &mut buf) }.unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 5);
    assert_eq!(&buf[..5], b"reply");
}

#[test]
fn sendmsg_gathers_iovecs_to_an_address_and_recvmsg_scatters_with_the_sender() {
    let mut ring = common::ring(8);
    let (a, b) = (udp(), udp());
    let parts: [&[u8]; 3] = [b"one-", b"two-", b"three"];
    let iov: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
    // SAFETY: `parts` and `iov` outlive the reap.
    unsafe { ring.push_op_unchecked(ctx(1), SendMsg::new(a.as_raw_fd(), &iov).to(b.local_addr().unwrap())) }.unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 13);

    let (mut head, mut tail) = ([0u8; 6], [0u8; 16]);
    let mut bufs = [IoSliceMut::new(&mut head), IoSliceMut::new(&mut tail)];
    // SAFETY: zeroed sockaddr_storage is a valid (empty) value.
    let mut from: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    // SAFETY: zeroed msghdr is the empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&raw mut from).cast();
    msg.msg_namelen = size_of::<libc::sockaddr_storage>() as u32;
    msg.msg_iov = bufs.as_mut_ptr().cast();
    msg.msg_iovlen = 2;
    // SAFETY: `msg`, `from` and `bufs` outlive the reap.
    unsafe { ring.recvmsg(ctx(2), b.as_raw_fd(), &mut msg) }.unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 13);
    assert_eq!(&head, b"one-tw");
    assert_eq!(&tail[..7], b"o-three");
    assert_eq!(msg.msg_namelen as usize, size_of::<libc::sockaddr_in>());
    // SAFETY: the kernel wrote a sockaddr_in (AF_INET) into `from`.
    let sin = unsafe { &*(&raw const from).cast::<libc::sockaddr_in>() };
    assert_eq!(i32::from(sin.sin_family), libc::AF_INET);
    assert_eq!(u16::from_be(sin.sin_port), a.local_addr().unwrap().port());
}

#[test]
fn sendmsg_on_a_connected_tcp_stream() {
    let mut ring = common::ring(8);
    let (client, mut server) = common::tcp_pair();
    let iov = [IoSlice::new(b"ab"), IoSlice::new(b""), IoSlice::new(b"cdef")];
    // SAFETY: `iov` and its buffers are statics/locals that outlive the reap.
    unsafe { ring.sendmsg(ctx(1), client.as_raw_fd(), &iov) }.unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 6);
    let mut got = [0u8; 6];
    server.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"abcdef");
}

#[test]
fn buffer_select_recv_reports_the_buffer_id_and_fills_it() {
    let mut ring = common::ring(8);
    let bufs = BufRing::new(&ring, 4, 64);
    let (mut client, server) = common::tcp_pair();
    for (i, word) in [b"first".as_slice(), b"second"].iter().enumerate() {
        client.write_all(word).unwrap();
        ring.recv_select(ctx(i as u64), server.as_raw_fd(), bufs.bgid).unwrap();
        let d = common::reap_one(&mut ring);
        assert_eq!(d.res as usize, word.len(), "{d:?}");
        let id = d.buffer_id().expect("IORING_CQE_F_BUFFER");
        assert_eq!(id, i as u16, "buffers are taken in ring order");
        assert_eq!(bufs.buffer(id, word.len()), *word);
    }
    // A cap smaller than the buffer.
    client.write_all(b"0123456789").unwrap();
    ring.push_op(ctx(9), RecvSelect::new(server.as_raw_fd(), bufs.bgid).max_len(4)).unwrap();
    let d = common::reap_one(&mut ring);
    assert_eq!(d.res, 4);
    assert_eq!(bufs.buffer(d.buffer_id().unwrap(), 4), b"0123");
}

#[test]
fn buffer_select_on_an_exhausted_group_is_enobufs() {
    let mut ring = common::ring(8);
    let bufs = BufRing::new(&ring, 1, 16);
    let (mut client, server) = common::tcp_pair();
    client.write_all(b"xx").unwrap();
    ring.recv_select(ctx(1), server.as_raw_fd(), bufs.bgid).unwrap();
    assert!(common::reap_one(&mut ring).buffer_id().is_some());
    client.write_all(b"yy").unwrap();
    ring.recv_select(ctx(2), server.as_raw_fd(), bufs.bgid).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::ENOBUFS);
}

#[test]
fn bundle_recv_spreads_one_receive_over_consecutive_buffers() {
    let mut ring = common::ring(8);
    if !ring.features().has(uring_core::FeatureFlags::RECVSEND_BUNDLE) {
        return common::skip("bundle_recv", "no IORING_FEAT_RECVSEND_BUNDLE");
    }
    let bufs = BufRing::new(&ring, 8, 32);
    let (mut client, server) = common::tcp_pair();
    let data: Vec<u8> = (0..100u8).collect();
    client.write_all(&data).unwrap();
    // Wait until all 100 bytes are queued on the receiver.
    let mut probe = [0u8; 100];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        assert!(std::time::Instant::now() < deadline, "loopback data never arrived");
        // SAFETY: a plain MSG_PEEK recv into a local buffer.
        let n = unsafe { libc::recv(server.as_raw_fd(), probe.as_mut_ptr().cast(), probe.len(), libc::MSG_PEEK) };
        if n == 100 {
            break;
        }
    }
    // Bundles until all 100 bytes are in: each CQE names its first buffer
    // and a byte count spread over consecutive 32-byte buffers.
    let mut got = Vec::new();
    let mut next_id = 0u16;
    let mut widest = 0;
    while got.len() < data.len() {
        ring.recv_bundle(ctx(1), server.as_raw_fd(), bufs.bgid).unwrap();
        let d = common::reap_one(&mut ring);
        assert!(d.res > 0, "{d:?}");
        let first = d.buffer_id().expect("a bundle CQE names its first buffer");
        assert_eq!(first, next_id, "bundles continue where the last one stopped");
        let mut left = d.res as usize;
        let mut id = first;
        while left > 0 {
            let n = left.min(32);
            got.extend_from_slice(bufs.buffer(id, n));
            left -= n;
            id += 1;
        }
        widest = widest.max(id - first);
        next_id = id;
    }
    assert_eq!(got, data);
    assert!(widest > 1, "one bundle CQE covered {widest} buffer(s); a bundle should span several");

    // The builder form, with a byte cap.
    client.write_all(b"capped!").unwrap();
    ring.push_op(ctx(2), RecvBundle::new(server.as_raw_fd(), bufs.bgid).max_len(3)).unwrap();
    let d = common::reap_one(&mut ring);
    assert_eq!((d.res, d.buffer_id()), (3, Some(next_id)));
    assert_eq!(bufs.buffer(next_id, 3), b"cap");
}

#[test]
fn multicast_reaches_every_receiver() {
    let mut ring = common::ring(8);
    let sender = udp();
    let receivers = [udp(), udp(), udp()];
    let dests: Vec<SocketAddr> = receivers.iter().map(|r| r.local_addr().unwrap()).collect();
    let payload = b"to all of you".to_vec();
    // SAFETY: `payload` outlives the reap of all three CQEs.
    let op = unsafe { Send::new(sender.as_raw_fd(), &payload) };
    ring.multicast(ctx(5), op, &dests).unwrap();
    let done = common::reap(&mut ring, 3);
    assert!(done.iter().all(|d| d.user_data == ctx(5).raw() && d.res == payload.len() as i32), "{done:?}");
    for r in &receivers {
        let mut got = [0u8; 64];
        let (n, from) = r.recv_from(&mut got).unwrap();
        assert_eq!(&got[..n], payload.as_slice());
        assert_eq!(from, sender.local_addr().unwrap());
    }
}

#[test]
fn zero_copy_multicast_reaches_every_receiver_with_a_notification_each() {
    let mut ring = common::ring(8);
    let sender = udp();
    let receivers = [udp(), udp(), udp()];
    let dests: Vec<SocketAddr> = receivers.iter().map(|r| r.local_addr().unwrap()).collect();
    let payload = vec![0x5a; 1000];
    // SAFETY: `payload` outlives the reap of all six CQEs.
    unsafe { ring.multicast_zc(ctx(6), SendZc::new(sender.as_raw_fd(), &payload).report_usage(), &dests) }.unwrap();
    let done = common::reap(&mut ring, 6);
    let notifs = done.iter().filter(|d| d.flags & sys::IORING_CQE_F_NOTIF != 0).count();
    assert_eq!(notifs, 3, "{done:?}");
    assert!(done.iter().filter(|d| d.flags & sys::IORING_CQE_F_NOTIF == 0).all(|d| d.res == 1000 && d.more()));
    for r in &receivers {
        let mut got = [0u8; 2000];
        let n = r.recv(&mut got).unwrap();
        assert_eq!(&got[..n], payload.as_slice());
    }
}

#[test]
fn multicast_is_all_or_nothing() {
    let mut ring = common::ring(4);
    let sender = udp();
    let dests: Vec<SocketAddr> = (0..5).map(|_| sender.local_addr().unwrap()).collect();
    let payload = [1u8; 4];
    // SAFETY: nothing is queued (checked below).
    let op = unsafe { Send::new(sender.as_raw_fd(), &payload) };
    let err = ring.multicast(ctx(1), op, &dests).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert_eq!(ring.sq_pending(), 0);
    let err = ring.multicast(ctx(1), op, &[]).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert_eq!(ring.sq_pending(), 0);
}

#[test]
fn send_on_a_shut_down_stream_is_epipe_without_a_signal() {
    let mut ring = common::ring(8);
    let (client, _server) = common::tcp_pair();
    client.shutdown(Shutdown::Write).unwrap();
    ring.push_op(ctx(1), Send::from_static(client.as_raw_fd(), b"late").flags(libc::MSG_NOSIGNAL)).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::EPIPE);
    // The kernel adds MSG_NOSIGNAL itself: no SIGPIPE without it either
    // (the test process would die).
    // SAFETY: as above.
    unsafe { ring.send(ctx(2), client.as_raw_fd(), b"late") }.unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::EPIPE);
}

#[test]
fn recv_on_a_non_socket_is_enotsock() {
    let mut ring = common::ring(8);
    let file = std::fs::File::open("/proc/self/stat").unwrap();
    let mut buf = [0u8; 8];
    // SAFETY: `buf` outlives the reap.
    unsafe { ring.recv(ctx(1), file.as_raw_fd(), &mut buf) }.unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::ENOTSOCK);
}

#[test]
fn a_bad_fd_is_ebadf() {
    let mut ring = common::ring(8);
    // SAFETY: the literal is static.
    unsafe { ring.send(ctx(1), -1, b"x") }.unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::EBADF);
    ring.recv_select(ctx(2), 1 << 20, 0).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::EBADF);
}

#[test]
fn recvmsg_sees_a_truncated_datagram() {
    let mut ring = common::ring(8);
    let (a, b) = (udp(), udp());
    a.send_to(b"longer than four", b.local_addr().unwrap()).unwrap();
    let mut small = [0u8; 4];
    let mut iov = [IoSliceMut::new(&mut small)];
    // SAFETY: zeroed msghdr is the empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr().cast();
    msg.msg_iovlen = 1;
    // SAFETY: `msg` and `iov` outlive the reap.
    unsafe { ring.push_op_unchecked(ctx(1), RecvMsg::new(b.as_raw_fd(), &mut msg)) }.unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 4);
    assert_ne!(msg.msg_flags & libc::MSG_TRUNC, 0, "the kernel writes msg_flags back");
    assert_eq!(&small, b"long");
}

#[test]
fn flags_an_operation_does_not_take_are_refused_before_submission() {
    let mut ring = common::ring(8);
    let mut buf = [0u8; 4];
    // SAFETY: refused before anything is queued.
    let op = unsafe { Recv::new(0, &mut buf) };
    let err = ring.push_op(ctx(1), op.flags(libc::MSG_MORE)).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    let err = ring.push_op(ctx(1), Send::from_static(0, b"x").flags(libc::MSG_ZEROCOPY)).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    let err = ring.push_op(ctx(1), RecvSelect::new(0, 1).flags(libc::MSG_PEEK << 20)).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert_eq!(ring.sq_pending(), 0);
}

#[test]
fn udp_send_to_an_ipv6_destination() {
    let (Ok(a), Ok(b)) = (UdpSocket::bind("[::1]:0"), UdpSocket::bind("[::1]:0")) else {
        return common::skip("udp_send_to_an_ipv6_destination", "no IPv6 loopback");
    };
    b.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    let mut ring = common::ring(8);
    // SAFETY: the literal is static.
    unsafe { ring.send_to(ctx(1), a.as_raw_fd(), b"six", b.local_addr().unwrap()) }.unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 3);
    let mut got = [0u8; 8];
    let (n, from) = b.recv_from(&mut got).unwrap();
    assert_eq!((&got[..n], from), (&b"six"[..], a.local_addr().unwrap()));
}

#[test]
fn sendmsg_control_passes_a_descriptor_that_works_on_the_other_side() {
    use std::os::fd::{FromRawFd, OwnedFd};
    let mut ring = common::ring(8);
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    let mut pipe = [0; 2];
    // SAFETY: `pipe` is a writable array of two ints.
    assert_eq!(unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: pipe2 just created both descriptors for us.
    let (pipe_r, pipe_w) = unsafe { (OwnedFd::from_raw_fd(pipe[0]), OwnedFd::from_raw_fd(pipe[1])) };

    // One SCM_RIGHTS message carrying the pipe's write end, in an 8-byte
    // aligned buffer of CMSG_SPACE(4) bytes.
    let fd_len = size_of::<libc::c_int>() as u32;
    // SAFETY: CMSG_SPACE/CMSG_LEN only compute sizes.
    let (space, len) = unsafe { (libc::CMSG_SPACE(fd_len) as usize, libc::CMSG_LEN(fd_len) as usize) };
    let mut words = [0u64; 8];
    assert!(space <= size_of_val(&words));
    let header = libc::cmsghdr { cmsg_len: len as _, cmsg_level: libc::SOL_SOCKET, cmsg_type: libc::SCM_RIGHTS };
    // SAFETY: `words` is 8-byte aligned and holds CMSG_SPACE(4) bytes: the
    // header, then the descriptor right after it (CMSG_DATA).
    unsafe {
        let base = words.as_mut_ptr().cast::<u8>();
        base.cast::<libc::cmsghdr>().write(header);
        base.add(size_of::<libc::cmsghdr>()).cast::<libc::c_int>().write_unaligned(pipe_w.as_raw_fd());
    }
    // SAFETY: `words` is 64 bytes, viewed as bytes.
    let control = unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), space) };
    let iov = [IoSlice::new(b"x")];
    // SAFETY: `iov`, its buffer and `control` outlive the reap just below.
    let op = unsafe { SendMsg::new(a.as_raw_fd(), &iov).control(control) };
    ring.push_op(ctx(1), op).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 1);
    drop(pipe_w);

    // Receive it with recvmsg(2) and use the descriptor that arrived.
    let mut byte = [0u8; 1];
    let mut riov = libc::iovec { iov_base: byte.as_mut_ptr().cast(), iov_len: 1 };
    let mut rwords = [0u64; 8];
    // SAFETY: msghdr is plain data; zeroed is empty.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut riov;
    msg.msg_iovlen = 1;
    msg.msg_control = rwords.as_mut_ptr().cast();
    msg.msg_controllen = size_of_val(&rwords) as _;
    // SAFETY: every pointer in `msg` names a live local buffer.
    assert_eq!(unsafe { libc::recvmsg(b.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) }, 1);
    assert_eq!(&byte, b"x");
    // SAFETY: `msg` was filled by recvmsg; the first header lies in `rwords`.
    let got = unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        assert!(!c.is_null(), "a control message arrived");
        assert_eq!(((*c).cmsg_level, (*c).cmsg_type), (libc::SOL_SOCKET, libc::SCM_RIGHTS));
        OwnedFd::from_raw_fd(libc::CMSG_DATA(c).cast::<libc::c_int>().read_unaligned())
    };
    let mut w = std::fs::File::from(got);
    w.write_all(b"through the passed fd").unwrap();
    drop(w);
    let mut out = String::new();
    std::fs::File::from(pipe_r).read_to_string(&mut out).unwrap();
    assert_eq!(out, "through the passed fd");
}
