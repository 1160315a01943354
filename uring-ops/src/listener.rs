//! The listener chain: `socket`, `bind` and `listen` as io_uring
//! operations, phase by phase, for TCP over IPv4 and IPv6 and for Unix
//! stream sockets, with a handler that may abort between phases.
//!
//! The caller owns the completion loop; this module never reaps. A
//! [`ListenerManager`] queues the first phase (`IORING_OP_SOCKET`) when
//! asked to [`listen`](ListenerManager::listen). Each CQE the caller reaps
//! goes to [`handle_cqe`](ListenerManager::handle_cqe) (or
//! [`handle_completion`](ListenerManager::handle_completion)), which
//! answers whether it belonged to the chain. If it did, the manager
//! decodes it, calls the [`ListenerHandler`] (`on_socket`, `on_bound`,
//! `on_listening`, or `on_error`), and, unless the handler returned
//! [`ControlFlow::Break`], queues the next phase. After `listen` completes
//! the manager holds a [`Listener`]: its descriptor, its local address
//! (with the port the kernel chose for port 0), and
//! [`accept_multishot`](Listener::accept_multishot), which queues an
//! [`AcceptMulti`]. The next phase is queued, never submitted: the caller's
//! next submit or wait sends it.
//!
//! | reference | here |
//! |---|---|
//! | `ListenerManager` | [`ListenerManager`] |
//! | `ListenerOp` | [`ListenerId`] while setting up, [`Listener`] when ready |
//! | `DecodeListenerCQE` | [`ListenerManager::decode`] |
//! | `PrepareListenerBind` | the bind phase ([`Bind`]) |
//! | `PrepareListenerListen` | the listen phase ([`Listen`]) |
//! | `SetListenerReady` | the listen CQE's handling, then [`ListenerHandler::on_listening`] |
//!
//! # Identifying the chain's CQEs
//!
//! Each phase is submitted with a `user_data` of the chain's own: a
//! [`uring_core::Layer::Listener`] value whose payload is a 53-bit
//! number from a process-wide counter, new for every phase, which no
//! other push (safe or not) and no `MSG_RING` or poll update may carry. A
//! CQE is the chain's when its `user_data` is the one a setup waits for,
//! it was reaped by the ring the phase was queued on
//! ([`Cqe::ring_id`](uring_core::Cqe::ring_id)), and after the phase was
//! queued ([`Cqe::seq`](uring_core::Cqe::seq)). The socket phase's result
//! is a descriptor the chain then owns and closes, so a CQE that could be
//! forged or replayed would make it close a descriptor someone else owns.
//!
//! # Closing
//!
//! [`ListenerManager::close`] works in every phase. While a phase's CQE
//! is pending the descriptor stays open (the kernel is using it, or is
//! about to create it) and the setup is marked closing: when the CQE
//! arrives the manager closes the descriptor, exactly once, calls no
//! handler, and frees the slot. A ready listener is closed at once.
//!
//! # The one syscall
//!
//! This crate makes no syscall of its own, with one exception here: when
//! an IP listener is bound to port 0, the port the kernel chose is read
//! with `getsockname(2)` after the listen phase. Linux 6.18 has no
//! io_uring form of it (`SOCKET_URING_OP_GETSOCKNAME` arrives in 6.19).

use std::fmt;
use std::net::{SocketAddrV4, SocketAddrV6};
use std::ops::ControlFlow;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use uring_core::{Cqe, Error, HandleCqe, Result, Ring, SqeContext, sys};

use crate::multishot::AcceptMulti;
use crate::op::SafeOp;
use crate::ring::RingOps;
use crate::socket::{Bind, Listen, SockAddr, Socket};

/// A phase of the listener chain: the operation whose CQE is awaited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListenerPhase {
    /// `IORING_OP_SOCKET`: creating the socket.
    Socket,
    /// `IORING_OP_BIND`: binding it to the address.
    Bind,
    /// `IORING_OP_LISTEN`: making it listen.
    Listen,
}

impl ListenerPhase {
    /// The phase's opcode.
    pub const fn opcode(self) -> u8 {
        (match self {
            ListenerPhase::Socket => sys::IORING_OP_SOCKET,
            ListenerPhase::Bind => sys::IORING_OP_BIND,
            ListenerPhase::Listen => sys::IORING_OP_LISTEN,
        }) as u8
    }

    /// The phase whose opcode is `op`.
    pub const fn from_opcode(op: u8) -> Option<Self> {
        match op as u32 {
            sys::IORING_OP_SOCKET => Some(ListenerPhase::Socket),
            sys::IORING_OP_BIND => Some(ListenerPhase::Bind),
            sys::IORING_OP_LISTEN => Some(ListenerPhase::Listen),
            _ => None,
        }
    }

    /// The opcode's C name, for error messages.
    const fn name(self) -> &'static str {
        match self {
            ListenerPhase::Socket => "IORING_OP_SOCKET",
            ListenerPhase::Bind => "IORING_OP_BIND",
            ListenerPhase::Listen => "IORING_OP_LISTEN",
        }
    }
}

/// Names one listener of a [`ListenerManager`]. A slot index with a
/// generation: an id whose listener was closed or taken names nothing,
/// even after its slot is reused.
#[doc(alias = "ListenerOp")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListenerId {
    index: u32,
    generation: u32,
}

impl ListenerId {
    /// The slot index (the fd field of the chain's contexts).
    pub const fn index(self) -> u32 {
        self.index
    }
}

/// The callbacks of the listener chain. Each phase's callback may return
/// [`ControlFlow::Break`] to abort: the manager then closes the socket and
/// queues nothing more. Every method has a default that continues (and
/// ignores errors), so a handler implements only what it needs.
///
/// Callbacks run inside [`ListenerManager::handle_cqe`], on the caller's
/// thread.
pub trait ListenerHandler {
    /// The socket exists (`fd`); bind comes next.
    fn on_socket(&mut self, id: ListenerId, fd: BorrowedFd<'_>) -> ControlFlow<()> {
        let _ = (id, fd);
        ControlFlow::Continue(())
    }

    /// The socket is bound; listen comes next.
    fn on_bound(&mut self, id: ListenerId, fd: BorrowedFd<'_>) -> ControlFlow<()> {
        let _ = (id, fd);
        ControlFlow::Continue(())
    }

    /// The socket listens. Returning `Break` closes it; otherwise the
    /// manager keeps it ([`ListenerManager::listener`],
    /// [`ListenerManager::take`]).
    fn on_listening(&mut self, id: ListenerId, listener: &Listener) -> ControlFlow<()> {
        let _ = (id, listener);
        ControlFlow::Continue(())
    }

    /// `phase` failed: its CQE carried an errno ([`Error::Io`] naming the
    /// opcode; [`Error::raw_os_error`] gives the errno), or queueing it
    /// failed (a full SQ, for example). The socket, if any, is closed and
    /// the listener is gone.
    fn on_error(&mut self, id: ListenerId, phase: ListenerPhase, error: Error) {
        let _ = (id, phase, error);
    }
}

/// A handler that always continues and ignores errors.
impl ListenerHandler for () {}

/// A listening socket made by the chain: `listen_fd` plus helpers.
#[doc(alias = "ListenerOp")]
#[derive(Debug)]
pub struct Listener {
    fd: OwnedFd,
    addr: SockAddr,
}

impl Listener {
    /// The local address, with the port the kernel chose if the request
    /// said port 0. For Unix listeners, the address that was bound.
    pub fn local_addr(&self) -> &SockAddr {
        &self.addr
    }

    /// A multishot accept on this listener, to customize (flags, direct,
    /// poll first) and push.
    pub fn accept_multi(&self) -> AcceptMulti {
        AcceptMulti::new(self.fd.as_raw_fd())
    }

    /// Queues a multishot accept on this listener: one CQE per connection,
    /// each a new descriptor, until cancelled.
    ///
    /// Cancel it (by `ctx`, or by this listener's descriptor) before
    /// dropping or closing the listener: an armed accept holds its own
    /// reference to the socket, which keeps accepting until cancelled.
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    #[doc(alias = "SubmitAcceptMultishot")]
    pub fn accept_multishot(&self, ring: &mut Ring, ctx: SqeContext) -> Result<SqeContext> {
        ring.push_op(ctx, self.accept_multi())
    }

    /// As [`accept_multishot`](Self::accept_multishot), installing each
    /// connection into a free slot of the registered file table.
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    #[doc(alias = "SubmitAcceptDirectMultishot")]
    pub fn accept_multishot_direct(&self, ring: &mut Ring, ctx: SqeContext) -> Result<SqeContext> {
        ring.push_op(ctx, self.accept_multi().flags(0).direct())
    }

    /// Gives up the handle, keeping the socket open.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Listener {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// What [`ListenerManager::close`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseOutcome {
    /// The socket is closed and the id names nothing any more.
    Closed,
    /// A phase's CQE is pending: the socket will be closed when it arrives
    /// (hand it to [`ListenerManager::handle_cqe`] as usual).
    Deferred,
    /// The id names nothing (closed or taken already).
    Unknown,
}

/// Where a listener is, as [`ListenerManager::status`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerStatus {
    /// Waiting for this phase's CQE.
    Pending(ListenerPhase),
    /// Closed by the caller while this phase's CQE is pending.
    Closing(ListenerPhase),
    /// Listening.
    Ready,
}

struct Setup {
    phase: ListenerPhase,
    addr: SockAddr,
    backlog: u32,
    fd: Option<OwnedFd>,
    closing: bool,
}

enum State {
    Free,
    Setup(Setup),
    Ready(Listener),
}

struct Entry {
    generation: u32,
    state: State,
    /// The pending phase: its `user_data`, the ring it was queued on and
    /// the CQ position then.
    pending: (u64, u64, u64),
}

static NEXT_NUMBER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Drives socket → bind → listen chains on a [`Ring`]; see the
/// [module documentation](self).
///
/// ```no_run
/// use uring_core::{CqeSlot, HandleCqe, Options, Ring, SqeContext};
/// use std::os::fd::AsRawFd;
/// use uring_ops::listener::ListenerManager;
///
/// let mut ring = Ring::new(Options::default())?;
/// ring.start()?;
/// let mut manager = ListenerManager::new(());
/// let id = manager.listen(&mut ring, "127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap(), 128)?;
/// let mut slots = [CqeSlot::EMPTY; 16];
/// while manager.listener(id).is_none() {
///     let n = ring.reap(&mut slots)?.len();
///     for slot in &slots[..n] {
///         if manager.handle_cqe(&mut ring, &slot.cqe()).is_none() {
///             // not the chain's: route it elsewhere
///         }
///     }
/// }
/// let listener = manager.listener(id).unwrap();
/// println!("listening on {:?}", listener.local_addr());
/// listener.accept_multishot(&mut ring, SqeContext::for_fd(listener.as_raw_fd()))?;
/// # Ok::<(), uring_core::Error>(())
/// ```
pub struct ListenerManager<H> {
    handler: H,
    entries: Vec<Entry>,
    free: Vec<u32>,
}

impl<H: fmt::Debug> fmt::Debug for ListenerManager<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListenerManager")
            .field("handler", &self.handler)
            .field("listeners", &self.entries.iter().filter(|e| !matches!(e.state, State::Free)).count())
            .field("pending", &self.pending())
            .finish()
    }
}

impl<H> ListenerManager<H> {
    /// A manager calling `handler` at each phase (see
    /// [Identifying the chain's CQEs](self#identifying-the-chains-cqes)).
    pub fn new(handler: H) -> Self {
        ListenerManager { handler, entries: Vec::new(), free: Vec::new() }
    }

    /// The handler.
    pub fn handler(&self) -> &H {
        &self.handler
    }

    /// The handler, mutably.
    pub fn handler_mut(&mut self) -> &mut H {
        &mut self.handler
    }

    /// Starts a listener on `addr` (IPv4, IPv6: TCP; Unix: stream) with a
    /// queue of `backlog` connections: queues its socket phase.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for another address family or a backlog
    /// above `i32::MAX`; [`Error::Unsupported`] if the kernel lacks
    /// `IORING_OP_SOCKET`, `IORING_OP_BIND` (6.11) or `IORING_OP_LISTEN`
    /// (6.11); otherwise as for [`RingOps::push_op`]. Nothing is queued
    /// then.
    pub fn listen(&mut self, ring: &mut Ring, addr: impl Into<SockAddr>, backlog: u32) -> Result<ListenerId> {
        let addr = addr.into();
        let socket = match addr.family() {
            libc::AF_INET => Socket::tcp4(),
            libc::AF_INET6 => Socket::tcp6(),
            libc::AF_UNIX => Socket::unix_stream(),
            family => {
                return Err(Error::InvalidArgument(format!(
                    "listener address {addr:?}: family {family} is not AF_INET, AF_INET6 or AF_UNIX"
                )));
            }
        };
        if backlog > i32::MAX as u32 {
            return Err(Error::InvalidArgument(format!("listen backlog {backlog} exceeds i32::MAX")));
        }
        // All three phases must be possible before the first is queued.
        for phase in [ListenerPhase::Socket, ListenerPhase::Bind, ListenerPhase::Listen] {
            ring.features().require(phase.opcode())?;
        }
        let id = self.alloc()?;
        if let Err(e) = self.push(ring, id, socket) {
            self.release(id.index);
            return Err(e);
        }
        self.entries[id.index as usize].state =
            State::Setup(Setup { phase: ListenerPhase::Socket, addr, backlog, fd: None, closing: false });
        Ok(id)
    }

    /// [`listen`](Self::listen) on a TCP/IPv4 address.
    ///
    /// # Errors
    ///
    /// As for [`listen`](Self::listen).
    #[doc(alias = "ListenTCP4")]
    pub fn listen_tcp4(&mut self, ring: &mut Ring, addr: SocketAddrV4, backlog: u32) -> Result<ListenerId> {
        self.listen(ring, addr, backlog)
    }

    /// [`listen`](Self::listen) on a TCP/IPv6 address.
    ///
    /// # Errors
    ///
    /// As for [`listen`](Self::listen).
    #[doc(alias = "ListenTCP6")]
    pub fn listen_tcp6(&mut self, ring: &mut Ring, addr: SocketAddrV6, backlog: u32) -> Result<ListenerId> {
        self.listen(ring, addr, backlog)
    }

    /// [`listen`](Self::listen) on a Unix stream socket at `path` (see
    /// [`SockAddr::unix_abstract`] for the abstract namespace). The socket
    /// file is left behind when the listener closes, as with
    /// `std::os::unix::net::UnixListener`.
    ///
    /// # Errors
    ///
    /// As for [`SockAddr::unix`] and [`listen`](Self::listen).
    #[doc(alias = "ListenUnix")]
    pub fn listen_unix(&mut self, ring: &mut Ring, path: impl AsRef<Path>, backlog: u32) -> Result<ListenerId> {
        let addr = SockAddr::unix(path)?;
        self.listen(ring, addr, backlog)
    }

    /// Which listener and phase a CQE's `user_data` belongs to, if it is
    /// one of this manager's pending phases.
    #[doc(alias = "DecodeListenerCQE")]
    pub fn decode(&self, user_data: u64) -> Option<(ListenerId, ListenerPhase)> {
        uring_core::LayerData::payload_of(user_data, uring_core::Layer::Listener)?;
        self.entries.iter().enumerate().find_map(|(index, entry)| match &entry.state {
            State::Setup(s) if entry.pending.0 == user_data => {
                Some((ListenerId { index: index as u32, generation: entry.generation }, s.phase))
            }
            _ => None,
        })
    }

    fn handle(&mut self, ring: &mut Ring, cqe: &Cqe<'_>) -> bool
    where
        H: ListenerHandler,
    {
        let Some((id, _)) = self.decode(cqe.user_data()) else {
            return false;
        };
        let (_, ring_id, queued_at) = self.entries[id.index as usize].pending;
        if cqe.ring_id() != ring_id || cqe.seq() < queued_at {
            // Another ring's CQE, or one reaped before the phase was
            // queued (a copy): not the phase's.
            return false;
        }
        // SAFETY: the CQE carries the phase's reserved user_data (which no
        // safe code can make the kernel post), was reaped by the ring the
        // phase was queued on after it was queued; the phase is then no
        // longer pending, so a copy is not claimed again.
        unsafe { self.handle_completion(ring, cqe.user_data(), cqe.res()) }
    }

    /// [`handle_cqe`](HandleCqe::handle_cqe) from a CQE's `user_data` and
    /// result, without checking where they came from.
    ///
    /// # Safety
    ///
    /// `user_data` and `res` must be those of a CQE reaped from the ring
    /// the phase was queued on, after it was queued, presented once: for a
    /// socket phase, `res` becomes a descriptor the manager owns (and
    /// closes), which must be the one the kernel created for it.
    pub unsafe fn handle_completion(&mut self, ring: &mut Ring, user_data: u64, res: i32) -> bool
    where
        H: ListenerHandler,
    {
        let Some((id, phase)) = self.decode(user_data) else {
            return false;
        };
        let State::Setup(setup) = std::mem::replace(&mut self.entries[id.index as usize].state, State::Free) else {
            unreachable!("decode only answers for setups");
        };
        let Setup { addr, backlog, mut fd, closing, .. } = setup;
        if phase == ListenerPhase::Socket && res >= 0 {
            // SAFETY: the socket CQE's result is a descriptor the kernel
            // just installed for this request, owned by nobody else (the
            // caller's obligation: the CQE is the phase's own).
            fd = Some(unsafe { OwnedFd::from_raw_fd(res) });
        }
        if closing {
            drop(fd);
            self.release(id.index);
            return true;
        }
        if res < 0 {
            drop(fd);
            self.release(id.index);
            let err = Error::io(phase.name(), std::io::Error::from_raw_os_error(-res));
            self.handler.on_error(id, phase, err);
            return true;
        }
        let Some(owned) = fd else {
            unreachable!("a setup past the socket phase holds its descriptor");
        };
        let next = match phase {
            ListenerPhase::Socket => {
                if self.handler.on_socket(id, owned.as_fd()).is_break() {
                    self.release(id.index);
                    return true;
                }
                self.push(ring, id, Bind::new(owned.as_raw_fd(), addr)).map(|()| ListenerPhase::Bind)
            }
            ListenerPhase::Bind => {
                if self.handler.on_bound(id, owned.as_fd()).is_break() {
                    self.release(id.index);
                    return true;
                }
                self.push(ring, id, Listen::new(owned.as_raw_fd(), backlog)).map(|()| ListenerPhase::Listen)
            }
            ListenerPhase::Listen => {
                let listener = Listener { addr: bound_addr(owned.as_fd(), addr), fd: owned };
                if self.handler.on_listening(id, &listener).is_break() {
                    drop(listener);
                    self.release(id.index);
                } else {
                    self.entries[id.index as usize].state = State::Ready(listener);
                }
                return true;
            }
        };
        match next {
            Ok(phase) => {
                self.entries[id.index as usize].state =
                    State::Setup(Setup { phase, addr, backlog, fd: Some(owned), closing: false });
            }
            Err(e) => {
                let failed = if phase == ListenerPhase::Socket { ListenerPhase::Bind } else { ListenerPhase::Listen };
                drop(owned);
                self.release(id.index);
                self.handler.on_error(id, failed, e);
            }
        }
        true
    }

    /// Where `id` is, or `None` if it names nothing.
    pub fn status(&self, id: ListenerId) -> Option<ListenerStatus> {
        match &self.entry(id)?.state {
            State::Free => None,
            State::Setup(s) if s.closing => Some(ListenerStatus::Closing(s.phase)),
            State::Setup(s) => Some(ListenerStatus::Pending(s.phase)),
            State::Ready(_) => Some(ListenerStatus::Ready),
        }
    }

    /// The listener, once it listens.
    #[doc(alias = "SetListenerReady")]
    pub fn listener(&self, id: ListenerId) -> Option<&Listener> {
        match &self.entry(id)?.state {
            State::Ready(l) => Some(l),
            _ => None,
        }
    }

    /// Takes a ready listener out of the manager; `id` then names nothing.
    pub fn take(&mut self, id: ListenerId) -> Option<Listener> {
        let entry = self.entries.get_mut(id.index as usize)?;
        if entry.generation != id.generation || !matches!(entry.state, State::Ready(_)) {
            return None;
        }
        let State::Ready(l) = std::mem::replace(&mut entry.state, State::Free) else {
            unreachable!("checked above");
        };
        self.release(id.index);
        Some(l)
    }

    /// Closes `id` in whatever phase it is; see
    /// [Closing](self#closing). A ready listener's armed multishot accept
    /// must be cancelled separately.
    pub fn close(&mut self, id: ListenerId) -> CloseOutcome {
        let Some(entry) = self.entries.get_mut(id.index as usize) else {
            return CloseOutcome::Unknown;
        };
        if entry.generation != id.generation {
            return CloseOutcome::Unknown;
        }
        match &mut entry.state {
            State::Free => return CloseOutcome::Unknown,
            State::Setup(s) => {
                s.closing = true;
                return CloseOutcome::Deferred;
            }
            State::Ready(_) => {}
        }
        // Dropping the listener closes its descriptor.
        self.release(id.index);
        CloseOutcome::Closed
    }

    /// How many setup CQEs are in flight. Dropping the manager while any
    /// are leaks the socket a pending socket phase creates; drive them to
    /// completion (after [`close`](Self::close), if wanted) first.
    pub fn pending(&self) -> usize {
        self.entries.iter().filter(|e| matches!(e.state, State::Setup(_))).count()
    }

    fn entry(&self, id: ListenerId) -> Option<&Entry> {
        self.entries.get(id.index as usize).filter(|e| e.generation == id.generation)
    }

    fn alloc(&mut self) -> Result<ListenerId> {
        if let Some(index) = self.free.pop() {
            return Ok(ListenerId { index, generation: self.entries[index as usize].generation });
        }
        let index = u32::try_from(self.entries.len())
            .ok()
            .filter(|&i| i < i32::MAX as u32)
            .ok_or_else(|| Error::InvalidArgument("too many listeners in one manager".into()))?;
        self.entries.push(Entry { generation: 0, state: State::Free, pending: (0, 0, 0) });
        Ok(ListenerId { index, generation: 0 })
    }

    fn release(&mut self, index: u32) {
        let entry = &mut self.entries[index as usize];
        entry.state = State::Free;
        entry.generation = entry.generation.wrapping_add(1);
        self.free.push(index);
    }

    fn push<O: SafeOp>(&mut self, ring: &mut Ring, id: ListenerId, op: O) -> Result<()> {
        let number = NEXT_NUMBER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let Some(value) = uring_core::LayerData::new(uring_core::Layer::Listener, false, number) else {
            return Err(Error::InvalidArgument("listener phase numbers are exhausted (2^53 phases)".into()));
        };
        let user_data = value.raw();
        let queued_at = ring.cq_position();
        // SAFETY: `O: SafeOp` names no caller memory; the user_data carries
        // this layer's value: a number used for this phase only, and
        // `handle_cqe` checks the ring and the position of every CQE.
        unsafe { crate::ring::push_layer_op(ring, value.context(), op) }?;
        self.entries[id.index as usize].pending = (user_data, ring.id(), queued_at);
        Ok(())
    }
}

impl<H: ListenerHandler> HandleCqe for ListenerManager<H> {
    /// Chains report to their [`ListenerHandler`].
    type Event = ();

    /// Handles a reaped CQE: `Some` if it was one of this manager's chains'
    /// (and is now dealt with: the next phase queued, or the handler told),
    /// `None` if it belongs to someone else.
    ///
    /// Take the CQE from a [`CqeSlot`](uring_core::CqeSlot) (whose view
    /// does not borrow the ring), or pass its parts to
    /// [`handle_completion`](ListenerManager::handle_completion).
    fn handle_cqe(&mut self, ring: &mut Ring, cqe: &Cqe<'_>) -> Option<()> {
        self.handle(ring, cqe).then_some(())
    }
}

/// The address a listener ended up on: the requested one, or for an IP
/// address with port 0, what `getsockname(2)` says.
fn bound_addr(fd: BorrowedFd<'_>, requested: SockAddr) -> SockAddr {
    match requested.as_socket_addr() {
        Some(sa) if sa.port() == 0 => {
            let mut out = SockAddr::default();
            let (p, len) = out.as_out_ptrs();
            // SAFETY: `p` and `len` point into `out`, valid for writes of
            // its storage and length for the duration of the call.
            let r = unsafe { libc::getsockname(fd.as_raw_fd(), p, len) };
            if r == 0 { out } else { requested }
        }
        _ => requested,
    }
}
