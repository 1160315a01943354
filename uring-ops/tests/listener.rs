//! The listener chain against the kernel: TCP4, TCP6 and Unix listeners
//! come up phase by phase and accept real connections through multishot
//! accept; aborts, closes with a pending CQE, and bind failures leave no
//! socket behind.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::ops::ControlFlow;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use uring_core::{Ring, SqeContext, SqeFlags, sys};
use uring_ops::cmd::Nop;
use uring_ops::listener::{
    CloseOutcome, Listener, ListenerHandler, ListenerId, ListenerManager, ListenerPhase, ListenerStatus,
};
use uring_ops::prelude::*;
use uring_ops::socket::{SockAddr, UnixName};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Socket,
    Bound,
    Listening,
    Error(ListenerPhase, Option<i32>),
}

/// Records every callback, remembers the socket's identity, and aborts at
/// the configured phase.
#[derive(Debug, Default)]
struct Recorder {
    events: Vec<Event>,
    abort_at: Option<ListenerPhase>,
    socket: Option<(RawFd, (u64, u64))>,
    bound: Option<SockAddr>,
}

/// The (device, inode) of what `fd` refers to now, if anything.
fn identity(fd: RawFd) -> Option<(u64, u64)> {
    // SAFETY: `stat` is plain data; fstat writes it or fails.
    let mut st = unsafe { std::mem::zeroed::<libc::stat>() };
    // SAFETY: `st` is valid for writes; a closed `fd` is EBADF, not UB.
    let r = unsafe { libc::fstat(fd, &mut st) };
    (r == 0).then_some((st.st_dev, st.st_ino))
}

fn local_addr(fd: RawFd) -> SockAddr {
    let mut a = SockAddr::default();
    let (p, len) = a.as_out_ptrs();
    // SAFETY: `p` and `len` point into `a`.
    assert_eq!(unsafe { libc::getsockname(fd, p, len) }, 0);
    a
}

impl ListenerHandler for Recorder {
    fn on_socket(&mut self, _id: ListenerId, fd: BorrowedFd<'_>) -> ControlFlow<()> {
        self.events.push(Event::Socket);
        self.socket = Some((fd.as_raw_fd(), identity(fd.as_raw_fd()).unwrap()));
        if self.abort_at == Some(ListenerPhase::Socket) { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
    }

    fn on_bound(&mut self, _id: ListenerId, fd: BorrowedFd<'_>) -> ControlFlow<()> {
        self.events.push(Event::Bound);
        self.bound = Some(local_addr(fd.as_raw_fd()));
        if self.abort_at == Some(ListenerPhase::Bind) { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
    }

    fn on_listening(&mut self, _id: ListenerId, listener: &Listener) -> ControlFlow<()> {
        self.events.push(Event::Listening);
        assert_eq!(listener.local_addr(), &local_addr(listener.as_raw_fd()), "the reported address is the socket's");
        if self.abort_at == Some(ListenerPhase::Listen) { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
    }

    fn on_error(&mut self, _id: ListenerId, phase: ListenerPhase, error: Error) {
        self.events.push(Event::Error(phase, error.raw_os_error()));
    }
}

impl Recorder {
    /// Whether the socket the chain created is closed now (its descriptor
    /// gone, or reused for something else).
    fn socket_closed(&self) -> bool {
        let (fd, id) = self.socket.expect("on_socket ran");
        identity(fd) != Some(id)
    }
}

/// Reaps one CQE and hands it to the manager, which must claim it.
fn step(ring: &mut Ring, mgr: &mut ListenerManager<Recorder>) {
    let d = common::reap_slots(ring, 1)[0];
    assert!(mgr.handle_cqe(ring, &d.cqe()).is_some(), "a chain CQE: {d:?}");
}

/// Drives the chain until no setup CQE is pending.
fn drive(ring: &mut Ring, mgr: &mut ListenerManager<Recorder>) {
    while mgr.pending() > 0 {
        step(ring, mgr);
    }
}

trait Conn: Read + Write {}
impl<T: Read + Write> Conn for T {}

/// Brings a listener up on `addr`, starts multishot accept, connects two
/// clients with `connect`, and exchanges data both ways with each.
fn serve(addr: SockAddr, connect: impl Fn(&SockAddr) -> Box<dyn Conn>) -> SockAddr {
    let mut ring = common::ring(16);
    let mut mgr = ListenerManager::new(Recorder::default());
    let id = mgr.listen(&mut ring, addr, 16).unwrap();
    assert_eq!(mgr.status(id), Some(ListenerStatus::Pending(ListenerPhase::Socket)));
    drive(&mut ring, &mut mgr);
    assert_eq!(mgr.handler().events, [Event::Socket, Event::Bound, Event::Listening]);
    assert_eq!(mgr.status(id), Some(ListenerStatus::Ready));
    let listener = mgr.listener(id).expect("ready");
    let local = *listener.local_addr();
    listener.accept_multishot(&mut ring, SqeContext::for_fd(7)).unwrap();
    ring.submit().unwrap();

    let mut clients: Vec<Box<dyn Conn>> = Vec::new();
    for i in 0..2u8 {
        let mut c = connect(&local);
        c.write_all(&[b'a' + i]).unwrap();
        clients.push(c);
    }
    let accepted = common::reap_slots(&mut ring, 2);
    for (i, d) in accepted.iter().enumerate() {
        let d = d.cqe();
        assert!(mgr.handle_cqe(&mut ring, &d).is_none(), "accept CQEs are not the chain's");
        assert!(d.res() >= 0 && d.more(), "accepted and still armed: {d:?}");
        // SAFETY: the kernel created this descriptor for us.
        let mut conn = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(d.res()) });
        let mut b = [0u8; 1];
        conn.read_exact(&mut b).unwrap();
        assert_eq!(b[0], b'a' + i as u8, "connections arrive in order");
        conn.write_all(&[b[0].to_ascii_uppercase()]).unwrap();
        clients[i].read_exact(&mut b).unwrap();
        assert_eq!(b[0], b'A' + i as u8);
    }
    assert_eq!(mgr.close(id), CloseOutcome::Closed);
    assert_eq!(mgr.close(id), CloseOutcome::Unknown);
    local
}

#[test]
fn tcp4_listener_accepts_connections() {
    let local = serve("127.0.0.1:0".parse::<SocketAddr>().unwrap().into(), |a| {
        Box::new(TcpStream::connect(a.as_socket_addr().unwrap()).unwrap())
    });
    let sa = local.as_socket_addr().unwrap();
    assert!(sa.is_ipv4() && sa.port() != 0, "the kernel's port is reported: {sa}");
}

#[test]
fn tcp6_listener_accepts_connections() {
    if let Err(e) = TcpListener::bind("[::1]:0") {
        return common::skip("tcp6_listener_accepts_connections", &format!("no IPv6 on loopback: {e}"));
    }
    let local = serve("[::1]:0".parse::<SocketAddr>().unwrap().into(), |a| {
        Box::new(TcpStream::connect(a.as_socket_addr().unwrap()).unwrap())
    });
    let sa = local.as_socket_addr().unwrap();
    assert!(sa.is_ipv6() && sa.port() != 0, "{sa}");
}

#[test]
fn unix_listener_accepts_connections() {
    let dir = common::tmpdir("listener-unix");
    let path = dir.join("l.sock");
    let local = serve(SockAddr::unix(&path).unwrap(), |a| match a.as_unix() {
        Some(UnixName::Path(p)) => Box::new(UnixStream::connect(p).unwrap()),
        other => panic!("not a Unix path: {other:?}"),
    });
    assert_eq!(local.as_unix(), Some(UnixName::Path(&path)));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn abort_after_bind_leaves_no_listening_socket() {
    let mut ring = common::ring(8);
    let mut mgr = ListenerManager::new(Recorder { abort_at: Some(ListenerPhase::Bind), ..Default::default() });
    let id = mgr.listen(&mut ring, "127.0.0.1:0".parse::<SocketAddr>().unwrap(), 8).unwrap();
    drive(&mut ring, &mut mgr);
    assert_eq!(mgr.handler().events, [Event::Socket, Event::Bound], "no listen phase after the abort");
    assert_eq!(mgr.status(id), None);
    assert!(mgr.listener(id).is_none());
    assert_eq!(ring.sq_pending(), 0, "nothing more was queued");
    assert!(mgr.handler().socket_closed(), "the aborted socket is closed");
    let port = mgr.handler().bound.unwrap().as_socket_addr().unwrap();
    let err = TcpStream::connect(port).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ECONNREFUSED), "nothing listens on {port}");
}

#[test]
fn abort_at_each_phase_closes_the_socket() {
    for phase in [ListenerPhase::Socket, ListenerPhase::Listen] {
        let mut ring = common::ring(8);
        let mut mgr = ListenerManager::new(Recorder { abort_at: Some(phase), ..Default::default() });
        let id = mgr.listen(&mut ring, "127.0.0.1:0".parse::<SocketAddr>().unwrap(), 8).unwrap();
        drive(&mut ring, &mut mgr);
        assert_eq!(mgr.status(id), None, "{phase:?}");
        assert!(mgr.handler().socket_closed(), "{phase:?}: socket closed");
        assert_eq!(
            mgr.handler().events.last(),
            Some(&match phase {
                ListenerPhase::Socket => Event::Socket,
                _ => Event::Listening,
            })
        );
    }
}

#[test]
fn close_while_the_listen_cqe_is_pending() {
    let mut ring = common::ring(8);
    let mut mgr = ListenerManager::new(Recorder::default());
    let id = mgr.listen(&mut ring, "127.0.0.1:0".parse::<SocketAddr>().unwrap(), 8).unwrap();
    step(&mut ring, &mut mgr); // socket
    step(&mut ring, &mut mgr); // bind; the listen SQE is now queued
    assert_eq!(mgr.status(id), Some(ListenerStatus::Pending(ListenerPhase::Listen)));
    assert_eq!(mgr.close(id), CloseOutcome::Deferred);
    assert_eq!(mgr.status(id), Some(ListenerStatus::Closing(ListenerPhase::Listen)));
    assert!(!mgr.handler().socket_closed(), "the descriptor stays open while the kernel may use it");
    step(&mut ring, &mut mgr); // listen completes; the manager closes the socket
    assert_eq!(mgr.status(id), None);
    assert_eq!(mgr.pending(), 0);
    assert!(mgr.handler().socket_closed(), "closed when the pending CQE arrived");
    assert_eq!(mgr.handler().events, [Event::Socket, Event::Bound], "no callback after close");
    assert_eq!(mgr.close(id), CloseOutcome::Unknown, "closed exactly once");
    let addr = mgr.handler().bound.unwrap().as_socket_addr().unwrap();
    assert_eq!(TcpStream::connect(addr).unwrap_err().raw_os_error(), Some(libc::ECONNREFUSED));
}

#[test]
fn close_while_the_socket_cqe_is_pending() {
    let mut ring = common::ring(8);
    let mut mgr = ListenerManager::new(Recorder::default());
    let id = mgr.listen(&mut ring, "127.0.0.1:0".parse::<SocketAddr>().unwrap(), 8).unwrap();
    assert_eq!(mgr.close(id), CloseOutcome::Deferred);
    step(&mut ring, &mut mgr);
    assert_eq!(mgr.status(id), None);
    assert!(mgr.handler().events.is_empty(), "no callback after close");
    assert_eq!(ring.sq_pending(), 0);
}

#[test]
fn bind_to_an_address_in_use_fails_in_the_bind_phase() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut ring = common::ring(8);
    let mut mgr = ListenerManager::new(Recorder::default());
    let id = mgr.listen(&mut ring, taken.local_addr().unwrap(), 8).unwrap();
    drive(&mut ring, &mut mgr);
    assert_eq!(mgr.handler().events, [Event::Socket, Event::Error(ListenerPhase::Bind, Some(libc::EADDRINUSE))]);
    assert_eq!(mgr.status(id), None);
    assert!(mgr.handler().socket_closed(), "the failed listener's socket is closed");
}

#[test]
fn a_full_queue_between_phases_is_reported_through_on_error() {
    let mut ring = common::ring(2);
    let mut mgr = ListenerManager::new(Recorder::default());
    let id = mgr.listen(&mut ring, "127.0.0.1:0".parse::<SocketAddr>().unwrap(), 8).unwrap();
    let socket = common::reap_slots(&mut ring, 1)[0];
    while ring.sq_space_left() > 0 {
        ring.push_op(SqeContext::for_fd(1), Nop::new()).unwrap();
    }
    assert!(mgr.handle_cqe(&mut ring, &socket.cqe()).is_some());
    assert_eq!(mgr.handler().events, [Event::Socket, Event::Error(ListenerPhase::Bind, None)]);
    assert_eq!(mgr.status(id), None);
    assert!(mgr.handler().socket_closed());
    for d in common::reap_slots(&mut ring, 2) {
        assert!(mgr.handle_cqe(&mut ring, &d.cqe()).is_none());
    }
}

#[test]
fn foreign_completions_are_not_claimed() {
    let mut ring = common::ring(8);
    let mut mgr = ListenerManager::new(Recorder::default());
    let id = mgr.listen(&mut ring, "127.0.0.1:0".parse::<SocketAddr>().unwrap(), 8).unwrap();
    // What the chain's contexts used to be (a packed context naming the
    // phase's opcode and the listener's slot) names nothing now.
    let old_style = SqeContext::packed(sys::IORING_OP_SOCKET as u8, SqeFlags::empty(), 0x4c, id.index() as i32);
    for ctx in [old_style, SqeContext::of_user_data(u64::MAX)] {
        assert_eq!(mgr.decode(ctx.raw()), None, "{ctx:?}");
    }
    // Another ring's CQE is not the chain's, whatever it says.
    let mut other = common::ring(8);
    other.push_op(old_style, Nop::new()).unwrap();
    assert!(mgr.handle_cqe(&mut ring, &common::reap_slots(&mut other, 1)[0].cqe()).is_none());
    let d = common::reap_slots(&mut ring, 1)[0];
    assert_eq!(mgr.decode(d.cqe().user_data()), Some((id, ListenerPhase::Socket)));
    assert!(mgr.handle_cqe(&mut ring, &d.cqe()).is_some());
    assert!(mgr.handle_cqe(&mut ring, &d.cqe()).is_none(), "a CQE is claimed once");
    drive(&mut ring, &mut mgr);
    assert_eq!(mgr.status(id), Some(ListenerStatus::Ready));
}

/// The socket phase's result becomes a descriptor the chain owns and
/// closes: a forged one (`MSG_RING` posting the phase's `user_data` with
/// the number of a descriptor someone else owns) once made the chain adopt
/// and close it. The phase's identity is reserved now, so the forgery is
/// refused before it is queued, and the victim stays open.
#[test]
fn a_forged_socket_completion_cannot_hand_the_chain_a_descriptor() {
    use uring_ops::msg::MsgRing;
    let mut ring = common::ring(8);
    let mut mgr = ListenerManager::new(Recorder::default());
    let id = mgr.listen(&mut ring, "127.0.0.1:0".parse::<SocketAddr>().unwrap(), 8).unwrap();
    ring.submit().unwrap();
    let (victim, mut peer) = UnixStream::pair().unwrap();
    // The phase's user_data is what its CQE will carry; the CQE is read
    // here only to learn it (a caller could guess it: numbers grow by one).
    let socket = common::reap_slots(&mut ring, 1)[0];
    let ud = socket.cqe().user_data();
    let err = ring.push_op(SqeContext::for_fd(1), MsgRing::new(ring.as_raw_fd(), ud, victim.as_raw_fd())).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    let err = ring.push_op(SqeContext::of_user_data(ud), Nop::new()).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert!(mgr.handle_cqe(&mut ring, &socket.cqe()).is_some());
    drive(&mut ring, &mut mgr);
    assert_eq!(mgr.status(id), Some(ListenerStatus::Ready));
    drop(mgr);
    // The victim is still open and still ours.
    (&victim).write_all(b"alive").unwrap();
    let mut b = [0u8; 5];
    peer.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"alive");
}

#[test]
fn a_listener_can_be_taken_and_outlives_the_manager() {
    let mut ring = common::ring(8);
    let mut mgr = ListenerManager::new(Recorder::default());
    let id = mgr.listen_tcp4(&mut ring, "127.0.0.1:0".parse().unwrap(), 8).unwrap();
    drive(&mut ring, &mut mgr);
    let listener = mgr.take(id).expect("ready");
    assert_eq!(mgr.status(id), None);
    drop(mgr);
    let addr = listener.local_addr().as_socket_addr().unwrap();
    let _client = TcpStream::connect(addr).expect("still listening");
    let std_listener = TcpListener::from(listener.into_fd());
    let (_conn, _) = std_listener.accept().unwrap();
}

#[test]
fn invalid_listener_requests_are_refused() {
    let mut ring = common::ring(8);
    let mut mgr = ListenerManager::new(());
    let err = mgr.listen(&mut ring, SockAddr::default(), 8).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    let err = mgr.listen(&mut ring, "127.0.0.1:0".parse::<SocketAddr>().unwrap(), u32::MAX).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert!(mgr.listen_unix(&mut ring, "x".repeat(300), 8).is_err());
    assert_eq!(ring.sq_pending(), 0);
    assert_eq!(mgr.pending(), 0);
}
