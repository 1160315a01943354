//! Multishot operations against the kernel.

mod common;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use uring_core::{FeatureFlags, SqeContext, sys};
use uring_ops::multishot::{AcceptMulti, MultishotOps, ReadMulti, RecvBundleMulti, RecvMulti, RecvZc};
use uring_ops::prelude::*;
use uring_ops::socket::Accept;

use common::BufRing;

#[test]
fn multishot_accept_delivers_each_connection_and_stays_armed() {
    let mut ring = common::ring(16);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    ring.push_op(SqeContext::token(1).unwrap(), AcceptMulti::new(listener.as_raw_fd())).unwrap();
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
    // The kernel refuses SOCK_CLOEXEC on a direct accept with a bare EINVAL.
    let err = ring.push_op(SqeContext::default(), AcceptMulti::new(0).direct().flags(libc::SOCK_CLOEXEC)).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert_eq!(ring.sq_pending(), 0);
}

/// Raises the soft RLIMIT_NOFILE towards the hard limit (at most `want`).
fn raise_nofile(want: u64) {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `lim` is a valid out-pointer.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    if lim.rlim_cur < want {
        lim.rlim_cur = want.min(lim.rlim_max);
        // SAFETY: `lim` is a valid rlimit within the hard limit.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
    }
}

#[test]
fn one_multishot_accept_takes_a_thousand_connections() {
    const CLIENTS: u32 = 1000;
    const BATCH: u32 = 25;
    // A foreign user_data (mode bits 3) is stamped as it is.
    const TOKEN: u64 = 0x700;
    // Clients and accepted sockets are closed batch by batch; the raise is
    // headroom for the other tests of this binary running in parallel.
    raise_nofile(4096);
    let mut ring = common::ring(64); // 128 CQ entries: room for a batch
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    ring.accept_multi(SqeContext::token(TOKEN).unwrap(), listener.as_raw_fd()).unwrap();
    ring.submit().unwrap();

    let mut seen = HashSet::new();
    for batch in 0..CLIENTS / BATCH {
        let mut clients = Vec::new();
        for i in 0..BATCH {
            let id = batch * BATCH + i;
            let mut c = TcpStream::connect(addr).unwrap();
            c.write_all(&id.to_le_bytes()).unwrap();
            clients.push(c);
        }
        for d in common::reap(&mut ring, BATCH as usize) {
            assert_eq!(SqeContext::of_user_data(d.user_data).as_token(), Some(TOKEN));
            assert!(d.res >= 0, "accept failed: {d:?}");
            assert!(d.more(), "the one accept must stay armed: {d:?}");
            // SAFETY: the kernel just created this descriptor for us.
            let mut s = TcpStream::from(unsafe { OwnedFd::from_raw_fd(d.res) });
            let mut id = [0u8; 4];
            s.read_exact(&mut id).unwrap();
            assert!(seen.insert(u32::from_le_bytes(id)), "connection {id:?} accepted twice");
        }
    }
    assert_eq!(seen.len(), CLIENTS as usize);
    assert_eq!(seen, (0..CLIENTS).collect::<HashSet<_>>(), "every client arrived exactly once");
}

#[test]
fn direct_multishot_accept_fills_free_slots_readable_by_fixed_recv() {
    let mut ring = common::ring(16);
    ring.register().files_sparse(8).unwrap();
    let bufs = BufRing::register(&ring, 3, 8, 64);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    ring.accept_multi_direct(SqeContext::token(1).unwrap(), listener.as_raw_fd()).unwrap();
    ring.submit().unwrap();
    let mut clients = Vec::new();
    for i in 0..3u8 {
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(&[b'a' + i; 5]).unwrap();
        clients.push(c);
    }
    let accepted = common::reap(&mut ring, 3);
    let mut slots = HashSet::new();
    for d in &accepted {
        assert!(d.res >= 0 && d.more(), "{d:?}");
        assert!(slots.insert(d.res), "slot {} handed out twice", d.res);
    }
    // The accepted sockets are only in the fixed table: read each through it.
    let mut got = HashSet::new();
    for &slot in &slots {
        ring.push_op(SqeContext::token(2).unwrap(), RecvMulti::new(Fixed(slot as u32), bufs.group)).unwrap();
        let d = common::reap_one(&mut ring);
        assert_eq!(d.res, 5, "{d:?}");
        let data = bufs.bytes(d.buffer_id().expect("a provided buffer"), 5);
        assert!(data.iter().all(|&b| b == data[0]));
        got.insert(data[0]);
    }
    assert_eq!(got, HashSet::from([b'a', b'b', b'c']));
}

#[test]
fn direct_multishot_accept_ends_with_enfile_when_the_table_is_full() {
    let mut ring = common::ring(8);
    ring.register().files_sparse(1).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    ring.push_op(SqeContext::token(1).unwrap(), AcceptMulti::new(listener.as_raw_fd()).direct()).unwrap();
    ring.submit().unwrap();
    let _first = TcpStream::connect(addr).unwrap();
    let d = common::reap_one(&mut ring);
    assert_eq!((d.res, d.more()), (0, true), "the only slot: {d:?}");
    let _second = TcpStream::connect(addr).unwrap();
    let d = common::reap_one(&mut ring);
    assert_eq!((d.res, d.more()), (-libc::ENFILE, false), "no free slot ends the stream: {d:?}");
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a valid out-array of two descriptors.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: pipe2 just created both descriptors for us.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn write_fd(fd: &OwnedFd, data: &[u8]) {
    let mut f = std::fs::File::from(fd.try_clone().unwrap());
    f.write_all(data).unwrap();
}

#[test]
fn read_multishot_on_a_pipe_delivers_each_write_then_eof() {
    let mut ring = common::ring(8);
    if !ring.features().supports(sys::IORING_OP_READ_MULTISHOT as u8) {
        return common::skip("read_multishot_on_a_pipe", "IORING_OP_READ_MULTISHOT unsupported");
    }
    let bufs = BufRing::register(&ring, 1, 4, 32);
    let (rx, tx) = pipe();
    ring.read_multi(SqeContext::token(5).unwrap(), rx.as_raw_fd(), bufs.group).unwrap();
    ring.submit().unwrap();
    let mut bufs = bufs;
    for msg in [&b"alpha"[..], b"beta", b"gamma delta"] {
        write_fd(&tx, msg);
        let d = common::reap_one(&mut ring);
        assert!(d.more(), "still armed: {d:?}");
        assert_eq!(d.res as usize, msg.len(), "{d:?}");
        let bid = d.buffer_id().expect("a provided buffer");
        assert_eq!(bufs.bytes(bid, msg.len()), msg);
        bufs.push(bid);
        bufs.publish();
    }
    drop(tx);
    let d = common::reap_one(&mut ring);
    assert_eq!((d.res, d.more()), (0, false), "end of file ends the stream: {d:?}");
}

#[test]
fn read_multishot_refuses_an_unpollable_file() {
    let mut ring = common::ring(4);
    if !ring.features().supports(sys::IORING_OP_READ_MULTISHOT as u8) {
        return common::skip("read_multishot_refuses_an_unpollable_file", "IORING_OP_READ_MULTISHOT unsupported");
    }
    let bufs = BufRing::register(&ring, 1, 2, 32);
    let dir = common::tmpdir("readmulti");
    std::fs::write(dir.join("f"), b"regular").unwrap();
    let f = std::fs::File::open(dir.join("f")).unwrap();
    ring.push_op(SqeContext::token(1).unwrap(), ReadMulti::new(f.as_raw_fd(), bufs.group)).unwrap();
    let d = common::reap_one(&mut ring);
    assert_eq!((d.res, d.more()), (-libc::EBADFD, false), "{d:?}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn recv_multishot_streams_until_the_peer_closes() {
    let mut ring = common::ring(8);
    let mut bufs = BufRing::register(&ring, 2, 8, 64);
    let (mut client, server) = common::tcp_pair();
    ring.recv_multi(SqeContext::token(9).unwrap(), server.as_raw_fd(), bufs.group).unwrap();
    ring.submit().unwrap();
    let mut got = Vec::new();
    for msg in [&b"first"[..], b"second message", b"3"] {
        client.write_all(msg).unwrap();
        let mut want = msg.len();
        while want > 0 {
            let d = common::reap_one(&mut ring);
            assert!(d.res > 0 && d.more(), "{d:?}");
            let bid = d.buffer_id().unwrap();
            got.extend(bufs.bytes(bid, d.res as usize));
            want -= d.res as usize;
            bufs.push(bid);
            bufs.publish();
        }
    }
    assert_eq!(got, b"firstsecond message3");
    drop(client);
    let d = common::reap_one(&mut ring);
    assert_eq!((d.res, d.more()), (0, false), "EOF ends the stream: {d:?}");
}

#[test]
fn recv_multishot_on_a_bad_fd_fails_in_the_cqe() {
    let mut ring = common::ring(4);
    let bufs = BufRing::register(&ring, 1, 2, 32);
    ring.recv_multi(SqeContext::token(1).unwrap(), 1_000_000, bufs.group).unwrap();
    let d = common::reap_one(&mut ring);
    assert_eq!((d.res, d.more()), (-libc::EBADF, false), "{d:?}");
}

#[test]
fn recv_multishot_refuses_waitall_before_submission() {
    let mut ring = common::ring(4);
    for err in [
        ring.push_op(SqeContext::default(), RecvMulti::new(0, 1).msg_flags(libc::MSG_WAITALL)).unwrap_err(),
        ring.push_op(SqeContext::default(), RecvBundleMulti::new(0, 1).msg_flags(libc::MSG_WAITALL)).unwrap_err(),
    ] {
        // Bundle support absent is Unsupported, which is also refused early.
        assert!(matches!(err, Error::InvalidArgument(_) | Error::Unsupported { .. }), "{err}");
    }
    assert_eq!(ring.sq_pending(), 0);
}

#[test]
fn bundle_receive_spans_consecutive_buffers() {
    let mut ring = common::ring(8);
    if !ring.features().has(FeatureFlags::RECVSEND_BUNDLE) {
        return common::skip("bundle_receive_spans_consecutive_buffers", "no IORING_FEAT_RECVSEND_BUNDLE");
    }
    const SIZE: usize = 16;
    let mut bufs = BufRing::register(&ring, 4, 8, SIZE);
    let (mut client, server) = common::tcp_pair();
    let sent: Vec<u8> = (0..100u8).collect();
    // 40 bytes already queued: the first receive can take them in one bundle.
    client.write_all(&sent[..40]).unwrap();
    ring.recv_bundle_multi(SqeContext::token(3).unwrap(), server.as_raw_fd(), bufs.group).unwrap();
    ring.submit().unwrap();
    let mut got = Vec::new();
    let mut next_bid = 0u16;
    let mut cqes = 0;
    let mut multi_buffer = false;
    let mut pending = std::collections::VecDeque::new();
    while got.len() < sent.len() {
        if got.len() == 40 && pending.is_empty() {
            client.write_all(&sent[40..]).unwrap();
        }
        if pending.is_empty() {
            pending.extend(common::reap(&mut ring, 1));
        }
        let d: common::Done = pending.pop_front().unwrap();
        assert!(d.res > 0 && d.more(), "{d:?}");
        let first = d.buffer_id().expect("a bundle names its first buffer");
        assert_eq!(first, next_bid, "bundles continue where the last one ended");
        let n = (d.res as usize).div_ceil(SIZE) as u16;
        multi_buffer |= n > 1;
        let mut left = d.res as usize;
        for k in 0..n {
            let bid = (first + k) % bufs.entries;
            let take = left.min(SIZE);
            got.extend(bufs.bytes(bid, take));
            left -= take;
            bufs.push(bid);
        }
        bufs.publish();
        next_bid = (first + n) % bufs.entries;
        cqes += 1;
    }
    assert_eq!(got, sent, "every byte once, in order");
    assert!(multi_buffer, "at least one CQE spanned several buffers ({cqes} CQEs)");
    drop(client);
    let d = common::reap_one(&mut ring);
    assert_eq!((d.res, d.more()), (0, false), "{d:?}");
}

#[test]
fn recvmsg_multishot_reports_each_datagram_with_its_sender() {
    use std::net::UdpSocket;
    use uring_ops::multishot::{RecvMsgMulti, RecvMsgOut};

    let mut ring = common::ring(8);
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (a, b) = (UdpSocket::bind("127.0.0.1:0").unwrap(), UdpSocket::bind("127.0.0.1:0").unwrap());
    let bufs = BufRing::register(&ring, 12, 8, 256);
    let op = RecvMsgMulti::new(server.as_raw_fd(), 12);
    ring.push_op(SqeContext::token(5).unwrap(), op).unwrap();
    ring.submit().unwrap();
    let sends = [(&a, &b"from a"[..]), (&b, &b"from b, longer"[..]), (&a, &b"a again"[..])];
    for (s, msg) in sends {
        s.send_to(msg, server.local_addr().unwrap()).unwrap();
    }
    let done = common::reap(&mut ring, 3);
    for (d, (s, msg)) in done.iter().zip(sends) {
        assert!(d.more(), "the multishot recvmsg stays armed: {d:?}");
        let bid = d.buffer_id().expect("a selected buffer");
        let bytes = bufs.bytes(bid, d.res as usize);
        let out = RecvMsgOut::parse(&bytes, op.layout()).expect("a whole header");
        assert_eq!(out.payload(), msg);
        assert_eq!(out.source(), Some(s.local_addr().unwrap()), "the sender's address");
        assert!(!out.is_truncated() && !out.is_name_truncated());
    }
    // A datagram larger than a buffer's room is reported truncated.
    a.send_to(&[7u8; 400], server.local_addr().unwrap()).unwrap();
    let d = common::reap_one(&mut ring);
    let bytes = bufs.bytes(d.buffer_id().unwrap(), d.res as usize);
    let out = RecvMsgOut::parse(&bytes, op.layout()).unwrap();
    assert!(out.is_truncated(), "MSG_TRUNC: {out:?}");
    assert!(out.payload().len() == out.payload_len() && out.payload_len() < 400, "{out:?}");
    assert!(out.payload().iter().all(|&b| b == 7));
    assert!(RecvMsgOut::parse(&bytes[..8], op.layout()).is_none(), "too short for the header");
}

#[test]
fn recv_zc_needs_big_cqes_and_a_registered_instance() {
    // 16-byte CQEs cannot carry the area offset: refused before the SQE.
    let mut ring = common::ring(4);
    let err = ring.recv_zc(SqeContext::token(1).unwrap(), 0, 0).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_) | Error::Unsupported { .. }), "{err}");
    assert_eq!(ring.sq_pending(), 0);
    // On a 32-byte CQE ring the kernel takes the SQE and refuses an
    // instance id that was never registered.
    let mut ring = common::ring_with(Options::default().entries(4).cqe_size(uring_core::CqeSize::Big));
    let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    let ctx =
        ring.push_op(SqeContext::token(2).unwrap(), RecvZc::new(a.as_raw_fd(), 7).limit(4096).poll_first()).unwrap();
    let d = common::reap_one(&mut ring);
    assert_eq!(ctx.as_token(), Some(2));
    assert_eq!((d.user_data, d.res, d.more()), (SqeContext::token(2).unwrap().raw(), -libc::EINVAL, false), "{d:?}");
}

#[test]
fn recv_zc_prepares_a_multishot_sqe_naming_the_instance() {
    let mut sqe = uring_core::Sqe::new(0);
    let mut keep = uring_core::Keep::default();
    RecvZc::new(5, 3).limit(1 << 20).prepare(&mut sqe, &mut keep);
    assert_eq!(u32::from(sqe.opcode), sys::IORING_OP_RECV_ZC);
    assert_eq!(sqe.fd, 5);
    assert_eq!(sqe.len, 1 << 20);
    assert_eq!(sqe.zcrx_ifq_idx(), 3);
    assert_eq!(u32::from(sqe.ioprio), sys::IORING_RECV_MULTISHOT);
    assert_eq!((sqe.addr(), sqe.addr2(), sqe.addr3()), (0, 0, 0), "names no memory");
}

#[test]
fn the_kernel_refuses_a_multishot_accept_into_a_named_slot() {
    // `AcceptMulti::direct` cannot name a slot because the kernel refuses
    // it: written by hand, the entry completes with -EINVAL, and the table
    // stays empty; the same slot named by a single-shot accept works.
    let mut ring = common::ring(8);
    ring.register().files_sparse(4).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut sqe = uring_core::Sqe::default();
    let mut keep = uring_core::Keep::new();
    AcceptMulti::new(listener.as_raw_fd()).direct().prepare(&mut sqe, &mut keep);
    assert_eq!(sqe.file_index(), sys::IORING_FILE_INDEX_ALLOC as u32);
    sqe.set_file_index(2 + 1); // slot 2
    sqe.user_data = SqeContext::token(1).unwrap().raw();
    // SAFETY: an accept names no memory (no peer address); the
    // user_data is no layer's.
    unsafe { ring.push(&sqe) }.unwrap();
    let _client = TcpStream::connect(addr).unwrap();
    let d = common::reap_one(&mut ring);
    assert_eq!((d.res, d.more()), (-libc::EINVAL, false));

    ring.push_op(SqeContext::token(2).unwrap(), Accept::new(listener.as_raw_fd()).dest(FileDest::Slot(2))).unwrap();
    let d = common::reap_one(&mut ring);
    assert_eq!(d.res, 0, "the pending connection went into slot 2");
    // The slot holds the connection: a fixed shutdown on it succeeds,
    // while the untouched slot 3 is empty (-EBADF).
    ring.shutdown(SqeContext::token(3).unwrap(), Fixed(2), std::net::Shutdown::Both).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 0);
    ring.shutdown(SqeContext::token(4).unwrap(), Fixed(3), std::net::Shutdown::Both).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::EBADF);
}
