//! Socket creation and connection setup against the kernel: every socket
//! kind checked with `getsockopt`, direct sockets used through their slot,
//! bind/listen/accept/connect/shutdown moving real data, and the errors
//! the kernel gives.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown as StdShutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};

use uring_core::{Ring, SqeContext};
use uring_ops::prelude::*;
use uring_ops::socket::{Accept, Listen, SockAddr, Socket, SocketSetupOps, UnixName};

fn ctx(n: u64) -> SqeContext {
    SqeContext::token(n).unwrap()
}

/// Takes ownership of a descriptor the kernel returned in a CQE.
fn owned(res: i32) -> OwnedFd {
    assert!(res >= 0, "expected a descriptor, got {}", std::io::Error::from_raw_os_error(-res));
    // SAFETY: the kernel just created this descriptor for us.
    unsafe { OwnedFd::from_raw_fd(res) }
}

fn sockopt(fd: RawFd, opt: i32) -> i32 {
    let mut v: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` and `len` are valid for writes of their sizes.
    let r = unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, opt, (&raw mut v).cast(), &mut len) };
    assert_eq!(r, 0, "getsockopt: {}", std::io::Error::last_os_error());
    v
}

fn local_addr(fd: RawFd) -> SockAddr {
    let mut a = SockAddr::default();
    let (p, len) = a.as_out_ptrs();
    // SAFETY: `p` and `len` point into `a`, valid for the call.
    let r = unsafe { libc::getsockname(fd, p, len) };
    assert_eq!(r, 0, "getsockname: {}", std::io::Error::last_os_error());
    a
}

fn errno(res: i32) -> String {
    std::io::Error::from_raw_os_error(-res).to_string()
}

/// A loopback port nobody listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

type Push = fn(&mut Ring, SqeContext) -> Result<SqeContext>;

/// Creates a socket through `push`, then checks its domain, type and
/// protocol with getsockopt, and that it is close-on-exec. Kinds the
/// kernel lacks are reported as skipped with the errno.
fn check_kind(test: &str, push: Push, domain: i32, ty: i32, protocol: i32, optional: bool) {
    let mut ring = common::ring(4);
    push(&mut ring, ctx(1)).unwrap();
    let d = common::reap_one(&mut ring);
    if d.res < 0 && (optional || d.res == -libc::EPERM) {
        common::skip(test, &format!("the kernel cannot create this socket here: {}", errno(d.res)));
        return;
    }
    let fd = owned(d.res);
    let raw = fd.as_raw_fd();
    assert_eq!(sockopt(raw, libc::SO_DOMAIN), domain, "SO_DOMAIN");
    assert_eq!(sockopt(raw, libc::SO_TYPE), ty, "SO_TYPE");
    assert_eq!(sockopt(raw, libc::SO_PROTOCOL), protocol, "SO_PROTOCOL");
    // SAFETY: F_GETFD on a descriptor we own.
    let fdflags = unsafe { libc::fcntl(raw, libc::F_GETFD) };
    assert_eq!(fdflags & libc::FD_CLOEXEC, libc::FD_CLOEXEC, "plain sockets are close-on-exec");
}

macro_rules! kind_tests {
    ($($test:ident: $method:ident => $domain:expr, $ty:expr, $proto:expr, $optional:expr;)*) => {$(
        #[test]
        fn $test() {
            check_kind(stringify!($test), |r, c| r.$method(c), $domain, $ty, $proto, $optional);
        }
    )*};
}

kind_tests! {
    tcp4_socket_kind: tcp4_socket => libc::AF_INET, libc::SOCK_STREAM, libc::IPPROTO_TCP, false;
    tcp6_socket_kind: tcp6_socket => libc::AF_INET6, libc::SOCK_STREAM, libc::IPPROTO_TCP, true;
    udp4_socket_kind: udp4_socket => libc::AF_INET, libc::SOCK_DGRAM, libc::IPPROTO_UDP, false;
    udp6_socket_kind: udp6_socket => libc::AF_INET6, libc::SOCK_DGRAM, libc::IPPROTO_UDP, true;
    udplite4_socket_kind: udplite4_socket => libc::AF_INET, libc::SOCK_DGRAM, libc::IPPROTO_UDPLITE, true;
    udplite6_socket_kind: udplite6_socket => libc::AF_INET6, libc::SOCK_DGRAM, libc::IPPROTO_UDPLITE, true;
    sctp4_socket_kind: sctp4_socket => libc::AF_INET, libc::SOCK_STREAM, libc::IPPROTO_SCTP, true;
    sctp6_socket_kind: sctp6_socket => libc::AF_INET6, libc::SOCK_STREAM, libc::IPPROTO_SCTP, true;
    unix_stream_socket_kind: unix_stream_socket => libc::AF_UNIX, libc::SOCK_STREAM, 0, false;
    unix_dgram_socket_kind: unix_dgram_socket => libc::AF_UNIX, libc::SOCK_DGRAM, 0, false;
}

#[test]
fn raw_socket_kind() {
    check_kind(
        "raw_socket_kind",
        |r, c| r.raw_socket(c, libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP),
        libc::AF_INET,
        libc::SOCK_RAW,
        libc::IPPROTO_ICMP,
        false,
    );
}

#[test]
fn raw_socket_takes_creation_flags_in_the_type() {
    let mut ring = common::ring(4);
    ring.push_op(ctx(1), Socket::raw(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_NONBLOCK, 0)).unwrap();
    let fd = owned(common::reap_one(&mut ring).res);
    assert_eq!(sockopt(fd.as_raw_fd(), libc::SO_TYPE), libc::SOCK_SEQPACKET);
    // SAFETY: F_GETFL on a descriptor we own.
    let fl = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    assert_ne!(fl & libc::O_NONBLOCK, 0, "SOCK_NONBLOCK reached the socket");
}

#[test]
fn every_direct_kind_fills_a_slot() {
    let mut ring = common::ring(16);
    ring.register().files_sparse(16).unwrap();
    let kinds: [(&str, Push); 10] = [
        ("tcp4", |r, c| r.tcp4_socket_direct(c, FileDest::AnySlot)),
        ("tcp6", |r, c| r.tcp6_socket_direct(c, FileDest::AnySlot)),
        ("udp4", |r, c| r.udp4_socket_direct(c, FileDest::AnySlot)),
        ("udp6", |r, c| r.udp6_socket_direct(c, FileDest::AnySlot)),
        ("udplite4", |r, c| r.udplite4_socket_direct(c, FileDest::AnySlot)),
        ("udplite6", |r, c| r.udplite6_socket_direct(c, FileDest::AnySlot)),
        ("sctp4", |r, c| r.sctp4_socket_direct(c, FileDest::AnySlot)),
        ("sctp6", |r, c| r.sctp6_socket_direct(c, FileDest::AnySlot)),
        ("unix_stream", |r, c| r.unix_stream_socket_direct(c, FileDest::AnySlot)),
        ("unix_dgram", |r, c| r.unix_dgram_socket_direct(c, FileDest::AnySlot)),
    ];
    for (i, (_, push)) in kinds.iter().enumerate() {
        push(&mut ring, SqeContext::for_fd(i as i32)).unwrap();
    }
    ring.raw_socket_direct(SqeContext::for_fd(10), libc::AF_UNIX, libc::SOCK_SEQPACKET, 0, FileDest::Slot(15)).unwrap();
    let done = common::reap(&mut ring, 11);
    let mut slots = Vec::new();
    for d in &done {
        let i = SqeContext::of_user_data(d.user_data).fd().unwrap() as usize;
        let name = kinds.get(i).map_or("raw", |k| k.0);
        if d.res < 0 && !matches!(name, "tcp4" | "udp4" | "unix_stream" | "unix_dgram" | "raw") {
            common::skip(&format!("every_direct_kind_fills_a_slot[{name}]"), &errno(d.res));
            continue;
        }
        assert!(d.res >= 0, "{name}: {}", errno(d.res));
        if name == "raw" {
            assert_eq!(d.res, 0, "a chosen slot reports 0");
        } else {
            assert!(d.res < 15, "{name}: slot {} in the table", d.res);
            slots.push(d.res);
        }
    }
    slots.sort();
    slots.dedup();
    assert!(slots.len() >= 4, "each direct socket got its own slot: {slots:?}");
}

/// Creates a listening TCP socket on loopback through the ring and returns
/// it with its address.
fn ring_tcp_listener(ring: &mut Ring) -> (OwnedFd, SocketAddr) {
    ring.tcp4_socket(ctx(1)).unwrap();
    let fd = owned(common::reap_one(ring).res);
    ring.bind(ctx(2), fd.as_raw_fd(), "127.0.0.1:0".parse::<SocketAddr>().unwrap()).unwrap();
    assert_eq!(common::reap_one(ring).res, 0, "bind");
    ring.listen(ctx(3), fd.as_raw_fd(), 16).unwrap();
    assert_eq!(common::reap_one(ring).res, 0, "listen");
    let addr = local_addr(fd.as_raw_fd()).as_socket_addr().unwrap();
    assert_ne!(addr.port(), 0);
    (fd, addr)
}

#[test]
fn bind_listen_accept_over_tcp_exchanges_data() {
    let mut ring = common::ring(8);
    let (listener, addr) = ring_tcp_listener(&mut ring);
    let mut client = TcpStream::connect(addr).unwrap();
    client.write_all(b"hello").unwrap();
    ring.accept(ctx(4), listener.as_raw_fd()).unwrap();
    let conn = TcpStream::from(owned(common::reap_one(&mut ring).res));
    let mut buf = [0u8; 5];
    (&conn).read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello");
    (&conn).write_all(b"back").unwrap();
    let mut back = [0u8; 4];
    client.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"back");
}

#[test]
fn accept_with_peer_reports_the_client_address() {
    let mut ring = common::ring(8);
    let (listener, addr) = ring_tcp_listener(&mut ring);
    let client = TcpStream::connect(addr).unwrap();
    let mut peer = SockAddr::default();
    // SAFETY: `peer` outlives the CQE reaped just below and is not touched
    // before it.
    unsafe { ring.accept_with_peer(ctx(4), listener.as_raw_fd(), &mut peer) }.unwrap();
    let _conn = owned(common::reap_one(&mut ring).res);
    assert_eq!(peer.as_socket_addr(), Some(client.local_addr().unwrap()));
}

#[test]
fn accept_direct_puts_the_connection_in_a_slot() {
    let mut ring = common::ring(8);
    ring.register().files_sparse(4).unwrap();
    let (listener, addr) = ring_tcp_listener(&mut ring);
    let mut client = TcpStream::connect(addr).unwrap();
    ring.accept_direct(ctx(4), listener.as_raw_fd(), FileDest::Slot(2)).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 0, "a chosen slot reports 0");
    // Use the slot: shutting down its write side gives the client EOF.
    ring.shutdown(ctx(5), Fixed(2), StdShutdown::Write).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 0, "shutdown on the fixed slot");
    let mut rest = Vec::new();
    assert_eq!(client.read_to_end(&mut rest).unwrap(), 0, "EOF from the fixed connection");
}

#[test]
fn direct_tcp_socket_listens_through_its_slot() {
    let mut ring = common::ring(8);
    ring.register().files_sparse(4).unwrap();
    ring.tcp4_socket_direct(ctx(1), FileDest::AnySlot).unwrap();
    let slot = common::reap_one(&mut ring).res;
    assert!((0..4).contains(&slot), "slot {slot}");
    let slot = slot as u32;
    // The socket has no descriptor, so it cannot be asked for its port: pick
    // a free one (retrying if another process takes it meanwhile).
    let mut addr = None;
    for _ in 0..10 {
        let a: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        ring.bind(ctx(2), Fixed(slot), a).unwrap();
        let res = common::reap_one(&mut ring).res;
        if res == 0 {
            addr = Some(a);
            break;
        }
        assert_eq!(res, -libc::EADDRINUSE, "bind on the slot: {}", errno(res));
    }
    let addr = addr.expect("a free loopback port");
    ring.listen(ctx(3), Fixed(slot), 8).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 0, "listen on the slot");
    let mut client = TcpStream::connect(addr).expect("the slot's socket accepts connections");
    client.write_all(b"via slot").unwrap();
    ring.push_op(ctx(4), Accept::new(Fixed(slot))).unwrap();
    let conn = TcpStream::from(owned(common::reap_one(&mut ring).res));
    let mut buf = [0u8; 8];
    (&conn).read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"via slot");
}

#[test]
fn direct_unix_socket_listens_through_its_slot() {
    let dir = common::tmpdir("sock-direct");
    let path = dir.join("l.sock");
    let mut ring = common::ring(8);
    ring.register().files_sparse(4).unwrap();
    ring.unix_stream_socket_direct(ctx(1), FileDest::Slot(1)).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 0);
    ring.bind(ctx(2), Fixed(1), SockAddr::unix(&path).unwrap()).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 0, "bind");
    assert!(path.exists(), "bind created the socket file");
    ring.push_op(ctx(3), Listen::new(Fixed(1), 4)).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 0, "listen");
    let mut client = UnixStream::connect(&path).expect("connect to the slot's socket");
    client.write_all(b"u").unwrap();
    ring.accept(ctx(4), Fixed(1)).unwrap();
    let conn = UnixStream::from(owned(common::reap_one(&mut ring).res));
    let mut b = [0u8; 1];
    (&conn).read_exact(&mut b).unwrap();
    assert_eq!(&b, b"u");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn connect_reaches_a_std_listener_and_data_flows() {
    let mut ring = common::ring(8);
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    ring.tcp4_socket(ctx(1)).unwrap();
    let fd = owned(common::reap_one(&mut ring).res);
    ring.connect(ctx(2), fd.as_raw_fd(), server.local_addr().unwrap()).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 0, "connect");
    let client = TcpStream::from(fd);
    (&client).write_all(b"ping").unwrap();
    let (mut conn, peer) = server.accept().unwrap();
    assert_eq!(peer, client.local_addr().unwrap());
    let mut buf = [0u8; 4];
    conn.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping");
}

#[test]
fn connect_over_tcp6_loopback() {
    let server = match TcpListener::bind("[::1]:0") {
        Ok(s) => s,
        Err(e) => return common::skip("connect_over_tcp6_loopback", &format!("no IPv6 loopback: {e}")),
    };
    let mut ring = common::ring(8);
    ring.tcp6_socket(ctx(1)).unwrap();
    let fd = owned(common::reap_one(&mut ring).res);
    ring.connect(ctx(2), fd.as_raw_fd(), server.local_addr().unwrap()).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 0, "connect");
    let (_conn, peer) = server.accept().unwrap();
    assert_eq!(Some(peer), local_addr(fd.as_raw_fd()).as_socket_addr());
}

#[test]
fn connect_over_unix_path_and_abstract_name() {
    let dir = common::tmpdir("sock-unix");
    let path = dir.join("s.sock");
    let server = UnixListener::bind(&path).unwrap();
    let mut ring = common::ring(8);
    ring.unix_stream_socket(ctx(1)).unwrap();
    let fd = owned(common::reap_one(&mut ring).res);
    ring.connect(ctx(2), fd.as_raw_fd(), SockAddr::unix(&path).unwrap()).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 0, "connect to a path");
    let (mut conn, _) = server.accept().unwrap();
    (&UnixStream::from(fd)).write_all(b"p").unwrap();
    let mut b = [0u8; 1];
    conn.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"p");

    // The abstract namespace: bind through the ring, connect with std.
    let name = format!("uring-ops-test-{}", std::process::id());
    ring.unix_stream_socket(ctx(3)).unwrap();
    let lfd = owned(common::reap_one(&mut ring).res);
    ring.bind(ctx(4), lfd.as_raw_fd(), SockAddr::unix_abstract(name.as_bytes()).unwrap()).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 0, "bind to an abstract name");
    ring.listen(ctx(5), lfd.as_raw_fd(), 4).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 0, "listen");
    let bound = local_addr(lfd.as_raw_fd());
    assert_eq!(bound.as_unix(), Some(UnixName::Abstract(name.as_bytes())));
    ring.unix_stream_socket(ctx(6)).unwrap();
    let cfd = owned(common::reap_one(&mut ring).res);
    ring.connect(ctx(7), cfd.as_raw_fd(), SockAddr::unix_abstract(name.as_bytes()).unwrap()).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 0, "connect to an abstract name");
    ring.accept(ctx(8), lfd.as_raw_fd()).unwrap();
    let _accepted = owned(common::reap_one(&mut ring).res);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn shutdown_write_gives_the_peer_eof() {
    let mut ring = common::ring(8);
    let (mut client, server) = common::tcp_pair();
    ring.shutdown(ctx(1), server.as_raw_fd(), StdShutdown::Write).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 0);
    let mut rest = Vec::new();
    assert_eq!(client.read_to_end(&mut rest).unwrap(), 0, "EOF after shutdown(SHUT_WR)");
    // The other direction still works.
    client.write_all(b"x").unwrap();
    let mut b = [0u8; 1];
    (&server).read_exact(&mut b).unwrap();
    assert_eq!(&b, b"x");
}

#[test]
fn connect_to_a_closed_port_is_refused() {
    let mut ring = common::ring(4);
    ring.tcp4_socket(ctx(1)).unwrap();
    let fd = owned(common::reap_one(&mut ring).res);
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    ring.connect(ctx(2), fd.as_raw_fd(), addr).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::ECONNREFUSED);
}

#[test]
fn accept_on_a_non_socket_is_enotsock() {
    let mut ring = common::ring(4);
    let file = std::fs::File::open("/dev/null").unwrap();
    ring.accept(ctx(1), file.as_raw_fd()).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::ENOTSOCK);
    ring.listen(ctx(2), file.as_raw_fd(), 1).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::ENOTSOCK);
    ring.shutdown(ctx(3), file.as_raw_fd(), StdShutdown::Both).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::ENOTSOCK);
}

#[test]
fn operations_on_a_bad_fd_are_ebadf() {
    let mut ring = common::ring(8);
    let bad = 1 << 20; // beyond any descriptor this process has
    let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
    ring.bind(ctx(1), bad, addr).unwrap();
    ring.listen(ctx(2), bad, 1).unwrap();
    ring.accept(ctx(3), bad).unwrap();
    ring.connect(ctx(4), bad, addr).unwrap();
    ring.shutdown(ctx(5), bad, StdShutdown::Both).unwrap();
    for d in common::reap(&mut ring, 5) {
        assert_eq!(d.res, -libc::EBADF, "{d:?}");
    }
}

#[test]
fn bind_to_an_address_in_use_is_eaddrinuse() {
    let mut ring = common::ring(4);
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    ring.tcp4_socket(ctx(1)).unwrap();
    let fd = owned(common::reap_one(&mut ring).res);
    ring.bind(ctx(2), fd.as_raw_fd(), taken.local_addr().unwrap()).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::EADDRINUSE);
}

#[test]
fn an_unknown_family_fails_in_the_cqe() {
    let mut ring = common::ring(4);
    ring.raw_socket(ctx(1), 4000, libc::SOCK_STREAM, 0).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::EAFNOSUPPORT);
}

#[test]
fn invalid_arguments_are_refused_before_submission() {
    let mut ring = common::ring(8);
    let refused = |ring: &mut Ring, r: Result<SqeContext>| {
        let err = r.unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
        assert_eq!(ring.sq_pending(), 0, "nothing was queued");
    };
    let r = ring.push_op(ctx(1), Socket::tcp4().flags(libc::O_APPEND));
    refused(&mut ring, r);
    let r = ring.push_op(ctx(1), Socket::raw(libc::AF_INET, libc::SOCK_STREAM | libc::O_APPEND, 0));
    refused(&mut ring, r);
    let r = ring.push_op(ctx(1), Socket::tcp4().dest(FileDest::Slot(0)).flags(libc::SOCK_CLOEXEC));
    refused(&mut ring, r);
    let r = ring.tcp4_socket_direct(ctx(1), FileDest::Slot(u32::MAX));
    refused(&mut ring, r);
    let r = ring.push_op(ctx(1), Socket::raw(-1, libc::SOCK_STREAM, 0));
    refused(&mut ring, r);
    let r = ring.push_op(ctx(1), Accept::new(3).flags(libc::O_APPEND));
    refused(&mut ring, r);
    let r = ring.push_op(ctx(1), Accept::new(3).dest(FileDest::AnySlot).flags(libc::SOCK_CLOEXEC));
    refused(&mut ring, r);
    let r = ring.push_op(ctx(1), Listen::new(3, u32::MAX));
    refused(&mut ring, r);
    assert!(matches!(SockAddr::unix("x".repeat(200)), Err(Error::InvalidArgument(_))));
    assert!(matches!(SockAddr::unix(""), Err(Error::InvalidArgument(_))));
}

#[test]
fn a_direct_socket_without_a_file_table_is_enxio() {
    let mut ring = common::ring(4);
    ring.tcp4_socket_direct(ctx(1), FileDest::Slot(0)).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::ENXIO);
}

#[test]
fn accept_dont_wait_is_eagain_without_a_connection_and_accepts_one_that_waits() {
    let mut ring = common::ring(8);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // Nothing pending: -EAGAIN at once instead of an armed poll.
    ring.push_op(ctx(1), Accept::new(listener.as_raw_fd()).dont_wait()).unwrap();
    let started = std::time::Instant::now();
    assert_eq!(common::reap_one(&mut ring).res, -libc::EAGAIN);
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    // A connection waiting in the backlog is accepted.
    let client = TcpStream::connect(addr).unwrap();
    ring.push_op(ctx(2), Accept::new(listener.as_raw_fd()).dont_wait()).unwrap();
    let conn = owned(common::reap_one(&mut ring).res);
    let peer = std::net::TcpStream::from(conn).peer_addr().unwrap();
    assert_eq!(peer, client.local_addr().unwrap());
}
