//! Socket creation and connection setup: `socket` (TCP, UDP, UDP-Lite,
//! SCTP, Unix, raw; plain and direct), `bind`, `listen`, `accept` (plain,
//! direct, and with the peer address), `connect`, `shutdown`.
//!
//! Addresses are [`SockAddr`]s: built from a [`std::net::SocketAddr`], or
//! from a Unix path or abstract name. The kernel copies the address of
//! `bind` and `connect` while it prepares the request (`io_bind_prep` and
//! `io_connect_prep` in `io_uring/net.c` call `move_addr_to_kernel`), so
//! those operations move it into the SQ slot's [`Keep`] and are safe. Only
//! [`AcceptWithPeer`] names caller memory: the kernel writes the peer
//! address when the connection is accepted, long after submission.
//!
//! The ring methods are in [`SocketSetupOps`].

use std::fmt;
use std::mem::{size_of, size_of_val};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use uring_core::{Error, Features, Keep, Result, Sqe, SqeContext, sys};

use crate::flags::sealed::OnRing;
use crate::op::{FileDest, Prepare, SafeOp, Target};
use crate::ring::RingOps;

/// The bits of a socket type that name the type (`SOCK_TYPE_MASK` of
/// `include/linux/net.h`, kernel-internal); the bits above are flags.
const SOCK_TYPE_MASK: i32 = 0xf;
/// The creation flags `socket` and `accept` take.
const SOCK_FLAGS: i32 = libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK;

/// A socket address of any family, in the kernel's layout
/// (`sockaddr_storage` and its length).
///
/// Built from a [`SocketAddr`] (`AF_INET`, `AF_INET6`), from a Unix path
/// ([`unix`](Self::unix)) or abstract name
/// ([`unix_abstract`](Self::unix_abstract)). [`Default`] is an empty
/// buffer of full capacity, the form [`AcceptWithPeer`] fills in.
///
/// It is `Copy` and 132 bytes, so operations carry it by value and move it
/// into the SQ slot's [`Keep`] when they are prepared.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct SockAddr {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

impl Default for SockAddr {
    /// An `AF_UNSPEC` address of full capacity: an output buffer.
    fn default() -> Self {
        // SAFETY: `sockaddr_storage` is plain integers; all zeros is a valid
        // (AF_UNSPEC) value.
        let storage = unsafe { std::mem::zeroed::<libc::sockaddr_storage>() };
        SockAddr { storage, len: size_of::<libc::sockaddr_storage>() as libc::socklen_t }
    }
}

impl SockAddr {
    fn with<T: Copy>(raw: T) -> Self {
        const { assert!(size_of::<T>() <= size_of::<libc::sockaddr_storage>()) };
        let mut addr = SockAddr::default();
        // SAFETY: `T` is a sockaddr type no larger than `sockaddr_storage`
        // (checked above), which is aligned for every sockaddr type.
        unsafe { std::ptr::from_mut(&mut addr.storage).cast::<T>().write(raw) };
        addr.len = size_of::<T>() as libc::socklen_t;
        addr
    }

    /// The address of a Unix socket at the filesystem path `path`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if `path` is empty, contains a NUL byte,
    /// or does not fit `sun_path` (107 bytes plus the terminating NUL).
    pub fn unix(path: impl AsRef<Path>) -> Result<Self> {
        let bytes = path.as_ref().as_os_str().as_bytes();
        if bytes.is_empty() || bytes.contains(&0) {
            return Err(Error::InvalidArgument(format!(
                "Unix socket path {:?}: must be non-empty and contain no NUL byte",
                path.as_ref()
            )));
        }
        Self::unix_bytes(bytes, 0, bytes.len() + 1, "path")
    }

    /// The address of a Unix socket in the abstract namespace (Linux): the
    /// name is bytes, not a path, and nothing appears in the filesystem.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if `name` is longer than 107 bytes.
    pub fn unix_abstract(name: &[u8]) -> Result<Self> {
        Self::unix_bytes(name, 1, name.len() + 1, "abstract name")
    }

    fn unix_bytes(bytes: &[u8], at: usize, used: usize, what: &str) -> Result<Self> {
        // SAFETY: `sockaddr_un` is plain integers; zero is valid.
        let mut un = unsafe { std::mem::zeroed::<libc::sockaddr_un>() };
        if at + bytes.len() >= un.sun_path.len() {
            return Err(Error::InvalidArgument(format!(
                "Unix socket {what} of {} bytes: at most {} fit in sun_path",
                bytes.len(),
                un.sun_path.len() - 1 - at
            )));
        }
        un.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (d, s) in un.sun_path[at..].iter_mut().zip(bytes) {
            *d = *s as libc::c_char;
        }
        let mut addr = Self::with(un);
        // The family, then the path with its NUL, or the NUL and the name.
        addr.len = (std::mem::offset_of!(libc::sockaddr_un, sun_path) + used) as libc::socklen_t;
        Ok(addr)
    }

    /// The address family (`AF_INET`, `AF_INET6`, `AF_UNIX`, `AF_UNSPEC`…).
    #[inline]
    pub fn family(&self) -> i32 {
        i32::from(self.storage.ss_family)
    }

    /// The length the kernel uses (or, after [`AcceptWithPeer`], reported).
    #[inline]
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Whether the length is zero (an unnamed Unix peer, for example).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The IPv4 or IPv6 address, if that is what this is.
    pub fn as_socket_addr(&self) -> Option<SocketAddr> {
        let len = self.len as usize;
        match self.family() {
            libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
                // SAFETY: the family says `sockaddr_in`, which fits in (and is
                // less aligned than) `sockaddr_storage`.
                let sin = unsafe { &*std::ptr::from_ref(&self.storage).cast::<libc::sockaddr_in>() };
                let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                Some(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(sin.sin_port))))
            }
            libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
                // SAFETY: as above, for `sockaddr_in6`.
                let sin6 = unsafe { &*std::ptr::from_ref(&self.storage).cast::<libc::sockaddr_in6>() };
                Some(SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                    u16::from_be(sin6.sin6_port),
                    sin6.sin6_flowinfo,
                    sin6.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }

    /// The Unix address, if that is what this is: `Some(UnixName::Path)`,
    /// `Some(UnixName::Abstract)` or `Some(UnixName::Unnamed)`.
    pub fn as_unix(&self) -> Option<UnixName<'_>> {
        if self.family() != libc::AF_UNIX {
            return None;
        }
        let off = std::mem::offset_of!(libc::sockaddr_un, sun_path);
        // SAFETY: the family says `sockaddr_un`, which fits in `sockaddr_storage`.
        let un = unsafe { &*std::ptr::from_ref(&self.storage).cast::<libc::sockaddr_un>() };
        // SAFETY: `sun_path` is an array of `c_char`, the same layout as `u8`.
        let path: &[u8] = unsafe { std::slice::from_raw_parts(un.sun_path.as_ptr().cast::<u8>(), un.sun_path.len()) };
        let n = (self.len as usize).saturating_sub(off).min(path.len());
        let path = &path[..n];
        Some(match path.first() {
            None => UnixName::Unnamed,
            Some(0) => UnixName::Abstract(&path[1..]),
            Some(_) => {
                let end = path.iter().position(|&b| b == 0).unwrap_or(path.len());
                UnixName::Path(Path::new(std::ffi::OsStr::from_bytes(&path[..end])))
            }
        })
    }

    /// Builds an address from what `getsockname`/`accept` wrote: `len` is
    /// the length the kernel reported (clamped to the capacity).
    pub fn from_raw(storage: libc::sockaddr_storage, len: libc::socklen_t) -> Self {
        SockAddr { storage, len: len.min(size_of_val(&storage) as libc::socklen_t) }
    }

    /// Pointers to the storage and the length, for a call (or an
    /// operation) that writes an address: the length is reset to the full
    /// capacity first.
    pub fn as_out_ptrs(&mut self) -> (*mut libc::sockaddr, *mut libc::socklen_t) {
        self.len = size_of_val(&self.storage) as libc::socklen_t;
        (std::ptr::from_mut(&mut self.storage).cast(), std::ptr::from_mut(&mut self.len))
    }
}

/// The name of a Unix socket address ([`SockAddr::as_unix`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnixName<'a> {
    /// A filesystem path.
    Path(&'a Path),
    /// A name in the abstract namespace (without the leading NUL).
    Abstract(&'a [u8]),
    /// No name (an unbound or `socketpair` socket).
    Unnamed,
}

impl fmt::Debug for SockAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(sa) = self.as_socket_addr() {
            write!(f, "SockAddr({sa})")
        } else if let Some(un) = self.as_unix() {
            match un {
                UnixName::Path(p) => write!(f, "SockAddr(unix {})", p.display()),
                UnixName::Abstract(n) => write!(f, "SockAddr(unix @{})", n.escape_ascii()),
                UnixName::Unnamed => write!(f, "SockAddr(unix, unnamed)"),
            }
        } else {
            write!(f, "SockAddr(family {}, {} bytes)", self.family(), self.len)
        }
    }
}

impl PartialEq for SockAddr {
    fn eq(&self, other: &Self) -> bool {
        let n = self.len as usize;
        // SAFETY: both storages are fully initialized plain bytes of
        // `size_of::<sockaddr_storage>()`, and `len` never exceeds it.
        let bytes = |a: &SockAddr| unsafe {
            std::slice::from_raw_parts(std::ptr::from_ref(&a.storage).cast::<u8>(), n.min(size_of_val(&a.storage)))
        };
        self.len == other.len && bytes(self) == bytes(other)
    }
}

impl Eq for SockAddr {}

impl From<SocketAddrV4> for SockAddr {
    fn from(a: SocketAddrV4) -> Self {
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: a.port().to_be(),
            sin_addr: libc::in_addr { s_addr: u32::from(*a.ip()).to_be() },
            sin_zero: [0; 8],
        };
        SockAddr::with(sin)
    }
}

impl From<SocketAddrV6> for SockAddr {
    fn from(a: SocketAddrV6) -> Self {
        let sin6 = libc::sockaddr_in6 {
            sin6_family: libc::AF_INET6 as libc::sa_family_t,
            sin6_port: a.port().to_be(),
            sin6_flowinfo: a.flowinfo(),
            sin6_addr: libc::in6_addr { s6_addr: a.ip().octets() },
            sin6_scope_id: a.scope_id(),
        };
        SockAddr::with(sin6)
    }
}

impl From<SocketAddr> for SockAddr {
    fn from(a: SocketAddr) -> Self {
        match a {
            SocketAddr::V4(v4) => v4.into(),
            SocketAddr::V6(v6) => v6.into(),
        }
    }
}

/// Checks a [`FileDest`] that becomes `file_index` (slot + 1 must not wrap
/// to 0, which would silently mean "a plain descriptor").
fn check_dest(what: &str, dest: FileDest) -> Result<()> {
    if let FileDest::Slot(u32::MAX) = dest {
        return Err(Error::InvalidArgument(format!("{what}: fixed-file slot u32::MAX does not exist")));
    }
    Ok(())
}

/// Checks `socket`/`accept` creation flags: only `SOCK_CLOEXEC` and
/// `SOCK_NONBLOCK`, and no `SOCK_CLOEXEC` for a direct descriptor (a
/// fixed-table slot has no close-on-exec; the kernel says `EINVAL`).
fn check_flags(what: &str, flags: i32, dest: FileDest) -> Result<()> {
    if flags & !SOCK_FLAGS != 0 {
        return Err(Error::InvalidArgument(format!(
            "{what} flags {flags:#x}: only SOCK_CLOEXEC and SOCK_NONBLOCK are accepted"
        )));
    }
    if dest.is_direct() && flags & libc::SOCK_CLOEXEC != 0 {
        return Err(Error::InvalidArgument(format!(
            "{what}: SOCK_CLOEXEC with a direct (fixed-file) destination; a registered slot has no close-on-exec"
        )));
    }
    check_dest(what, dest)
}

/// The default creation flags: `SOCK_CLOEXEC` for a descriptor, none for a
/// fixed slot.
const fn default_flags(dest: FileDest) -> i32 {
    if dest.is_direct() { 0 } else { libc::SOCK_CLOEXEC }
}

/// Creates a socket: `io_uring_prep_socket` (`io_uring_prep_socket_direct`
/// and `io_uring_prep_socket_direct_alloc` with a direct [`dest`](Self::dest)).
///
/// Since Linux 5.19 (direct variants too). The CQE's result is the new
/// descriptor, or with [`FileDest::Slot`] 0, or with [`FileDest::AnySlot`]
/// the slot the kernel chose. Plain descriptors get `SOCK_CLOEXEC` unless
/// [`flags`](Self::flags) says otherwise.
///
/// The constructors name the common kinds; [`raw`](Self::raw) (or
/// [`new`](Self::new)) takes any `(domain, type, protocol)`. A kind the
/// kernel lacks (SCTP without its module, for example) completes with
/// `-EPROTONOSUPPORT` or `-EAFNOSUPPORT`.
#[doc(alias = "IORING_OP_SOCKET")]
#[doc(alias = "io_uring_prep_socket")]
#[doc(alias = "io_uring_prep_socket_direct")]
#[doc(alias = "io_uring_prep_socket_direct_alloc")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct Socket {
    domain: i32,
    ty: i32,
    protocol: i32,
    flags: Option<i32>,
    dest: FileDest,
}

impl Socket {
    /// A socket of `domain` (`AF_*`), `ty` (`SOCK_*`, creation flags may be
    /// or-ed in) and `protocol` (`IPPROTO_*`, or 0 for the default).
    #[inline]
    pub const fn new(domain: i32, ty: i32, protocol: i32) -> Self {
        Socket { domain, ty, protocol, flags: None, dest: FileDest::Fd }
    }

    /// Any kind of socket, raw ones included (`SOCK_RAW` needs
    /// `CAP_NET_RAW`); the same as [`new`](Self::new).
    #[inline]
    pub const fn raw(domain: i32, ty: i32, protocol: i32) -> Self {
        Socket::new(domain, ty, protocol)
    }

    /// TCP over IPv4: `AF_INET, SOCK_STREAM, IPPROTO_TCP`.
    #[inline]
    pub const fn tcp4() -> Self {
        Socket::new(libc::AF_INET, libc::SOCK_STREAM, libc::IPPROTO_TCP)
    }

    /// TCP over IPv6: `AF_INET6, SOCK_STREAM, IPPROTO_TCP`.
    #[inline]
    pub const fn tcp6() -> Self {
        Socket::new(libc::AF_INET6, libc::SOCK_STREAM, libc::IPPROTO_TCP)
    }

    /// UDP over IPv4: `AF_INET, SOCK_DGRAM, IPPROTO_UDP`.
    #[inline]
    pub const fn udp4() -> Self {
        Socket::new(libc::AF_INET, libc::SOCK_DGRAM, libc::IPPROTO_UDP)
    }

    /// UDP over IPv6: `AF_INET6, SOCK_DGRAM, IPPROTO_UDP`.
    #[inline]
    pub const fn udp6() -> Self {
        Socket::new(libc::AF_INET6, libc::SOCK_DGRAM, libc::IPPROTO_UDP)
    }

    /// UDP-Lite over IPv4: `AF_INET, SOCK_DGRAM, IPPROTO_UDPLITE`
    /// (deprecated in the kernel; may be compiled out).
    #[inline]
    pub const fn udplite4() -> Self {
        Socket::new(libc::AF_INET, libc::SOCK_DGRAM, libc::IPPROTO_UDPLITE)
    }

    /// UDP-Lite over IPv6: `AF_INET6, SOCK_DGRAM, IPPROTO_UDPLITE`.
    #[inline]
    pub const fn udplite6() -> Self {
        Socket::new(libc::AF_INET6, libc::SOCK_DGRAM, libc::IPPROTO_UDPLITE)
    }

    /// SCTP over IPv4, one-to-one style: `AF_INET, SOCK_STREAM,
    /// IPPROTO_SCTP` (needs the `sctp` module).
    #[inline]
    pub const fn sctp4() -> Self {
        Socket::new(libc::AF_INET, libc::SOCK_STREAM, libc::IPPROTO_SCTP)
    }

    /// SCTP over IPv6, one-to-one style: `AF_INET6, SOCK_STREAM,
    /// IPPROTO_SCTP`.
    #[inline]
    pub const fn sctp6() -> Self {
        Socket::new(libc::AF_INET6, libc::SOCK_STREAM, libc::IPPROTO_SCTP)
    }

    /// A Unix stream socket: `AF_UNIX, SOCK_STREAM, 0`.
    #[inline]
    pub const fn unix_stream() -> Self {
        Socket::new(libc::AF_UNIX, libc::SOCK_STREAM, 0)
    }

    /// A Unix datagram socket: `AF_UNIX, SOCK_DGRAM, 0`.
    #[inline]
    pub const fn unix_dgram() -> Self {
        Socket::new(libc::AF_UNIX, libc::SOCK_DGRAM, 0)
    }

    /// The creation flags (`SOCK_CLOEXEC`, `SOCK_NONBLOCK`), replacing the
    /// default (`SOCK_CLOEXEC` for a descriptor, none for a fixed slot).
    #[inline]
    pub const fn flags(mut self, flags: i32) -> Self {
        self.flags = Some(flags);
        self
    }

    /// Where the socket goes: a descriptor (the default) or the registered
    /// file table.
    #[inline]
    pub const fn dest(mut self, dest: FileDest) -> Self {
        self.dest = dest;
        self
    }

    /// The value of `sqe.off`: the type with every creation flag or-ed in.
    const fn type_word(&self) -> i32 {
        let flags = match self.flags {
            Some(f) => f,
            None => default_flags(self.dest),
        };
        self.ty | flags
    }
}

impl Prepare for Socket {
    const CODE: u8 = sys::IORING_OP_SOCKET as u8;
    const USES_KEEP: bool = false;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        if self.domain < 0 || self.ty < 0 || self.protocol < 0 {
            return Err(Error::InvalidArgument(format!(
                "socket({}, {}, {}): negative arguments",
                self.domain, self.ty, self.protocol
            )));
        }
        check_flags("socket", self.type_word() & !SOCK_TYPE_MASK, self.dest)
    }

    #[inline]
    fn prepare(self, sqe: &mut Sqe, _keep: &mut Keep) {
        let ty = self.type_word();
        let Socket { domain, ty: _, protocol, flags: _, dest } = self;
        *sqe = Sqe::new(Self::CODE);
        sqe.fd = domain;
        sqe.set_off(ty as u32 as u64);
        sqe.len = protocol as u32;
        sqe.set_file_index(dest.file_index());
    }
}

// SAFETY: the SQE names no memory.
unsafe impl SafeOp for Socket {}

/// Binds a socket to an address: `io_uring_prep_bind`.
///
/// Since Linux 6.11. The kernel copies the address while preparing the
/// request, so it travels in the SQ slot's [`Keep`]. The CQE's result is 0.
#[doc(alias = "IORING_OP_BIND")]
#[doc(alias = "io_uring_prep_bind")]
#[doc(alias = "PrepareListenerBind")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct Bind {
    fd: Target,
    addr: SockAddr,
}

impl Bind {
    /// Binds `fd` to `addr`.
    #[inline]
    pub fn new(fd: impl Into<Target>, addr: impl Into<SockAddr>) -> Self {
        Bind { fd: fd.into(), addr: addr.into() }
    }
}

impl Prepare for Bind {
    const CODE: u8 = sys::IORING_OP_BIND as u8;

    #[inline]
    fn prepare(self, sqe: &mut Sqe, keep: &mut Keep) {
        let Bind { fd, addr } = self;
        let kept = keep.inline(addr.storage);
        *sqe = Sqe::new(Self::CODE);
        fd.apply(sqe);
        sqe.set_addr(std::ptr::from_ref(kept) as u64);
        sqe.set_addr2(u64::from(addr.len));
    }
}

// SAFETY: the address lives in the Keep, and `io_bind_prep` copies it
// (`move_addr_to_kernel`) while the kernel consumes the entry.
unsafe impl SafeOp for Bind {}

/// Marks a bound socket as accepting connections: `io_uring_prep_listen`.
///
/// Since Linux 6.11. The kernel caps `backlog` at `net.core.somaxconn`;
/// values above `i32::MAX` (negative to the kernel) are refused before
/// submission. The CQE's result is 0.
#[doc(alias = "IORING_OP_LISTEN")]
#[doc(alias = "io_uring_prep_listen")]
#[doc(alias = "PrepareListenerListen")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct Listen {
    fd: Target,
    backlog: u32,
}

impl Listen {
    /// Listens on `fd` with a queue of `backlog` pending connections.
    #[inline]
    pub fn new(fd: impl Into<Target>, backlog: u32) -> Self {
        Listen { fd: fd.into(), backlog }
    }
}

impl Prepare for Listen {
    const CODE: u8 = sys::IORING_OP_LISTEN as u8;
    const USES_KEEP: bool = false;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        if self.backlog > i32::MAX as u32 {
            return Err(Error::InvalidArgument(format!("listen backlog {} exceeds i32::MAX", self.backlog)));
        }
        Ok(())
    }

    #[inline]
    fn prepare(self, sqe: &mut Sqe, _keep: &mut Keep) {
        let Listen { fd, backlog } = self;
        *sqe = Sqe::new(Self::CODE);
        fd.apply(sqe);
        sqe.len = backlog;
    }
}

// SAFETY: the SQE names no memory.
unsafe impl SafeOp for Listen {}

/// Accepts one connection: `io_uring_prep_accept`
/// (`io_uring_prep_accept_direct` with a direct [`dest`](Self::dest)).
///
/// Since Linux 5.5; direct since 5.15. The peer address is not reported
/// (ask the socket, or use [`AcceptWithPeer`]). The CQE's result is the
/// new descriptor, or with [`FileDest::Slot`] 0, or with
/// [`FileDest::AnySlot`] the slot chosen. For a stream of connections from
/// one submission use [`AcceptMulti`](crate::multishot::AcceptMulti).
#[doc(alias = "IORING_OP_ACCEPT")]
#[doc(alias = "io_uring_prep_accept")]
#[doc(alias = "io_uring_prep_accept_direct")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct Accept {
    listener: Target,
    flags: Option<i32>,
    dest: FileDest,
    poll_first: bool,
    dont_wait: bool,
}

impl Accept {
    /// Accepts a connection on `listener`.
    #[inline]
    pub fn new(listener: impl Into<Target>) -> Self {
        Accept { listener: listener.into(), flags: None, dest: FileDest::Fd, poll_first: false, dont_wait: false }
    }

    /// The `accept4` flags of the new socket (`SOCK_CLOEXEC`,
    /// `SOCK_NONBLOCK`), replacing the default (`SOCK_CLOEXEC` for a
    /// descriptor, none for a fixed slot).
    #[inline]
    pub const fn flags(mut self, flags: i32) -> Self {
        self.flags = Some(flags);
        self
    }

    /// Where the connection goes: a descriptor (the default) or the
    /// registered file table.
    #[inline]
    pub const fn dest(mut self, dest: FileDest) -> Self {
        self.dest = dest;
        self
    }

    /// Waits for a connection before the first attempt
    /// (`IORING_ACCEPT_POLL_FIRST`, since 6.10).
    #[inline]
    pub const fn poll_first(mut self) -> Self {
        self.poll_first = true;
        self
    }

    /// Completes with `-EAGAIN` instead of waiting when no connection is
    /// pending (`IORING_ACCEPT_DONTWAIT`, since 6.10).
    #[inline]
    pub const fn dont_wait(mut self) -> Self {
        self.dont_wait = true;
        self
    }
}

/// The `ioprio` word of an accept.
fn accept_ioprio(poll_first: bool, dont_wait: bool) -> u16 {
    let mut v = 0;
    if poll_first {
        v |= sys::IORING_ACCEPT_POLL_FIRST;
    }
    if dont_wait {
        v |= sys::IORING_ACCEPT_DONTWAIT;
    }
    v as u16
}

impl Prepare for Accept {
    const CODE: u8 = sys::IORING_OP_ACCEPT as u8;
    const USES_KEEP: bool = false;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        features.require(Self::CODE)?;
        check_flags("accept", self.flags.unwrap_or(default_flags(self.dest)), self.dest)
    }

    #[inline]
    fn prepare(self, sqe: &mut Sqe, _keep: &mut Keep) {
        let Accept { listener, flags, dest, poll_first, dont_wait } = self;
        *sqe = Sqe::new(Self::CODE);
        listener.apply(sqe);
        sqe.ioprio = accept_ioprio(poll_first, dont_wait);
        sqe.set_op_flags(flags.unwrap_or(default_flags(dest)) as u32);
        sqe.set_file_index(dest.file_index());
    }
}

// SAFETY: no peer-address output; the SQE names no memory.
unsafe impl SafeOp for Accept {}

/// Accepts one connection and writes the peer's address:
/// `io_uring_prep_accept` with `addr` and `addrlen`.
///
/// Since Linux 5.5. The kernel writes the address (and its length) into
/// the caller's [`SockAddr`] when the connection is accepted, which may be
/// long after submission: the operation is not [`SafeOp`], and goes
/// through [`RingOps::push_op_unchecked`] or
/// [`SocketSetupOps::accept_with_peer`].
#[doc(alias = "IORING_OP_ACCEPT")]
#[doc(alias = "io_uring_prep_accept")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct AcceptWithPeer {
    accept: Accept,
    addr: *mut libc::sockaddr,
    len: *mut libc::socklen_t,
}

impl AcceptWithPeer {
    /// Accepts a connection on `listener`, writing its address into `peer`.
    /// Resets `peer` to an empty buffer of full capacity.
    ///
    /// Building this is safe; submitting it is not: `peer` must stay valid
    /// and unaccessed until the CQE (see [`SocketSetupOps::accept_with_peer`]).
    #[inline]
    pub fn new(listener: impl Into<Target>, peer: &mut SockAddr) -> Self {
        let (addr, len) = peer.as_out_ptrs();
        AcceptWithPeer { accept: Accept::new(listener), addr, len }
    }

    /// As [`Accept::flags`].
    #[inline]
    pub const fn flags(mut self, flags: i32) -> Self {
        self.accept = self.accept.flags(flags);
        self
    }

    /// As [`Accept::dest`].
    #[inline]
    pub const fn dest(mut self, dest: FileDest) -> Self {
        self.accept = self.accept.dest(dest);
        self
    }

    /// As [`Accept::poll_first`].
    #[inline]
    pub const fn poll_first(mut self) -> Self {
        self.accept = self.accept.poll_first();
        self
    }
}

impl Prepare for AcceptWithPeer {
    const CODE: u8 = sys::IORING_OP_ACCEPT as u8;

    #[inline]
    fn check(&self, features: &Features) -> Result<()> {
        self.accept.check(features)
    }

    #[inline]
    fn prepare(self, sqe: &mut Sqe, keep: &mut Keep) {
        let AcceptWithPeer { accept, addr, len } = self;
        accept.prepare(sqe, keep);
        sqe.set_addr(addr as u64);
        sqe.set_addr2(len as u64);
    }
}

/// Connects a socket: `io_uring_prep_connect`.
///
/// Since Linux 5.5; the kernel copies the address while preparing the
/// request (since 6.10, `io_connect_prep`), so it travels in the SQ slot's
/// [`Keep`]. The CQE's result is 0, or `-ECONNREFUSED`,
/// `-ETIMEDOUT`, `-ENETUNREACH`…
#[doc(alias = "IORING_OP_CONNECT")]
#[doc(alias = "io_uring_prep_connect")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct Connect {
    fd: Target,
    addr: SockAddr,
}

impl Connect {
    /// Connects `fd` to `addr`.
    #[inline]
    pub fn new(fd: impl Into<Target>, addr: impl Into<SockAddr>) -> Self {
        Connect { fd: fd.into(), addr: addr.into() }
    }
}

impl Prepare for Connect {
    const CODE: u8 = sys::IORING_OP_CONNECT as u8;

    #[inline]
    fn prepare(self, sqe: &mut Sqe, keep: &mut Keep) {
        let Connect { fd, addr } = self;
        let kept = keep.inline(addr.storage);
        *sqe = Sqe::new(Self::CODE);
        fd.apply(sqe);
        sqe.set_addr(std::ptr::from_ref(kept) as u64);
        sqe.set_addr2(u64::from(addr.len));
    }
}

// SAFETY: the address lives in the Keep, and `io_connect_prep` copies it
// (`move_addr_to_kernel`) while the kernel consumes the entry.
unsafe impl SafeOp for Connect {}

/// Shuts down one or both directions of a connection:
/// `io_uring_prep_shutdown`.
///
/// Since Linux 5.11. Runs in an io-wq worker (the kernel forces it async).
/// The CQE's result is 0, or `-ENOTCONN`, `-ENOTSOCK`…
#[doc(alias = "IORING_OP_SHUTDOWN")]
#[doc(alias = "io_uring_prep_shutdown")]
#[derive(Debug, Clone, Copy)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct Shutdown {
    fd: Target,
    how: std::net::Shutdown,
}

impl Shutdown {
    /// Shuts down `how` (`Read`, `Write`, `Both`) of `fd`.
    #[inline]
    pub fn new(fd: impl Into<Target>, how: std::net::Shutdown) -> Self {
        Shutdown { fd: fd.into(), how }
    }
}

impl Prepare for Shutdown {
    const CODE: u8 = sys::IORING_OP_SHUTDOWN as u8;
    const USES_KEEP: bool = false;

    #[inline]
    fn prepare(self, sqe: &mut Sqe, _keep: &mut Keep) {
        let Shutdown { fd, how } = self;
        *sqe = Sqe::new(Self::CODE);
        fd.apply(sqe);
        sqe.len = match how {
            std::net::Shutdown::Read => libc::SHUT_RD,
            std::net::Shutdown::Write => libc::SHUT_WR,
            std::net::Shutdown::Both => libc::SHUT_RDWR,
        } as u32;
    }
}

// SAFETY: the SQE names no memory.
unsafe impl SafeOp for Shutdown {}

/// Socket creation and connection setup on a [`Ring`](uring_core::Ring): one method
/// per operation for the common case (options through the builders
/// of [`socket`](self) and [`RingOps::push_op`]).
///
/// Socket kinds come in pairs: `tcp4_socket(ctx)` makes a
/// descriptor (with `SOCK_CLOEXEC`), `tcp4_socket_direct(ctx, dest)`
/// puts the socket into the registered file table.
///
/// Every method queues one SQE and submits nothing; errors are
/// those of [`RingOps::push_op`].
pub trait SocketSetupOps {
    /// Queues a [`Socket::tcp4`].
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    fn tcp4_socket(&mut self, ctx: SqeContext) -> Result<SqeContext>;

    /// Queues a [`Socket::tcp4`] into the registered file table at `dest`.
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    fn tcp4_socket_direct(&mut self, ctx: SqeContext, dest: FileDest) -> Result<SqeContext>;

    /// Queues a [`Socket::tcp6`].
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    fn tcp6_socket(&mut self, ctx: SqeContext) -> Result<SqeContext>;

    /// Queues a [`Socket::tcp6`] into the registered file table at `dest`.
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    fn tcp6_socket_direct(&mut self, ctx: SqeContext, dest: FileDest) -> Result<SqeContext>;

    /// Queues a [`Socket::udp4`].
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    fn udp4_socket(&mut self, ctx: SqeContext) -> Result<SqeContext>;

    /// Queues a [`Socket::udp4`] into the registered file table at `dest`.
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    fn udp4_socket_direct(&mut self, ctx: SqeContext, dest: FileDest) -> Result<SqeContext>;

    /// Queues a [`Socket::udp6`].
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    fn udp6_socket(&mut self, ctx: SqeContext) -> Result<SqeContext>;

    /// Queues a [`Socket::udp6`] into the registered file table at `dest`.
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    fn udp6_socket_direct(&mut self, ctx: SqeContext, dest: FileDest) -> Result<SqeContext>;

    /// Queues a [`Socket::udplite4`].
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    fn udplite4_socket(&mut self, ctx: SqeContext) -> Result<SqeContext>;

    /// Queues a [`Socket::udplite4`] into the registered file table at `dest`.
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    fn udplite4_socket_direct(&mut self, ctx: SqeContext, dest: FileDest) -> Result<SqeContext>;

    /// Queues a [`Socket::udplite6`].
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    fn udplite6_socket(&mut self, ctx: SqeContext) -> Result<SqeContext>;

    /// Queues a [`Socket::udplite6`] into the registered file table at `dest`.
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    fn udplite6_socket_direct(&mut self, ctx: SqeContext, dest: FileDest) -> Result<SqeContext>;

    /// Queues a [`Socket::sctp4`].
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    fn sctp4_socket(&mut self, ctx: SqeContext) -> Result<SqeContext>;

    /// Queues a [`Socket::sctp4`] into the registered file table at `dest`.
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    fn sctp4_socket_direct(&mut self, ctx: SqeContext, dest: FileDest) -> Result<SqeContext>;

    /// Queues a [`Socket::sctp6`].
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    fn sctp6_socket(&mut self, ctx: SqeContext) -> Result<SqeContext>;

    /// Queues a [`Socket::sctp6`] into the registered file table at `dest`.
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    fn sctp6_socket_direct(&mut self, ctx: SqeContext, dest: FileDest) -> Result<SqeContext>;

    /// Queues a [`Socket::unix_stream`].
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    fn unix_stream_socket(&mut self, ctx: SqeContext) -> Result<SqeContext>;

    /// Queues a [`Socket::unix_stream`] into the registered file table at `dest`.
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    fn unix_stream_socket_direct(&mut self, ctx: SqeContext, dest: FileDest) -> Result<SqeContext>;

    /// Queues a [`Socket::unix_dgram`].
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    fn unix_dgram_socket(&mut self, ctx: SqeContext) -> Result<SqeContext>;

    /// Queues a [`Socket::unix_dgram`] into the registered file table at `dest`.
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    fn unix_dgram_socket_direct(&mut self, ctx: SqeContext, dest: FileDest) -> Result<SqeContext>;

    /// Queues [`Socket::raw`]: any `(domain, type, protocol)`.
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    fn raw_socket(&mut self, ctx: SqeContext, domain: i32, ty: i32, protocol: i32) -> Result<SqeContext>;

    /// Queues [`Socket::raw`] into the registered file table at `dest`.
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    fn raw_socket_direct(
        &mut self,
        ctx: SqeContext,
        domain: i32,
        ty: i32,
        protocol: i32,
        dest: FileDest,
    ) -> Result<SqeContext>;

    /// Queues a [`Bind`] of `fd` to `addr`.
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    fn bind(&mut self, ctx: SqeContext, fd: impl Into<Target>, addr: impl Into<SockAddr>) -> Result<SqeContext>;

    /// Queues a [`Listen`] on `fd`.
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    fn listen(&mut self, ctx: SqeContext, fd: impl Into<Target>, backlog: u32) -> Result<SqeContext>;

    /// Queues an [`Accept`] on `listener`; the connection becomes a
    /// descriptor with `SOCK_CLOEXEC`.
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    fn accept(&mut self, ctx: SqeContext, listener: impl Into<Target>) -> Result<SqeContext>;

    /// Queues an [`Accept`] on `listener` that puts the connection
    /// into the registered file table at `dest`.
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    fn accept_direct(&mut self, ctx: SqeContext, listener: impl Into<Target>, dest: FileDest) -> Result<SqeContext>;

    /// Queues an [`AcceptWithPeer`] on `listener`: the kernel writes
    /// the peer's address into `peer`.
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    ///
    /// # Safety
    ///
    /// `peer` must stay valid, and must be neither read nor written,
    /// until this operation's CQE has been reaped (or the operation
    /// is known cancelled by its CQE): the kernel writes it when a
    /// connection arrives.
    unsafe fn accept_with_peer(
        &mut self,
        ctx: SqeContext,
        listener: impl Into<Target>,
        peer: &mut SockAddr,
    ) -> Result<SqeContext>;

    /// Queues a [`Connect`] of `fd` to `addr`.
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    fn connect(&mut self, ctx: SqeContext, fd: impl Into<Target>, addr: impl Into<SockAddr>) -> Result<SqeContext>;

    /// Queues a [`Shutdown`] of `how` on `fd`.
    ///
    /// # Errors
    ///
    /// As for [`RingOps::push_op`].
    fn shutdown(&mut self, ctx: SqeContext, fd: impl Into<Target>, how: std::net::Shutdown) -> Result<SqeContext>;
}

impl<R: RingOps + OnRing> SocketSetupOps for R {
    #[inline]
    fn tcp4_socket(&mut self, ctx: SqeContext) -> Result<SqeContext> {
        self.push_op(ctx, Socket::tcp4())
    }

    #[inline]
    fn tcp4_socket_direct(&mut self, ctx: SqeContext, dest: FileDest) -> Result<SqeContext> {
        self.push_op(ctx, Socket::tcp4().dest(dest))
    }

    #[inline]
    fn tcp6_socket(&mut self, ctx: SqeContext) -> Result<SqeContext> {
        self.push_op(ctx, Socket::tcp6())
    }

    #[inline]
    fn tcp6_socket_direct(&mut self, ctx: SqeContext, dest: FileDest) -> Result<SqeContext> {
        self.push_op(ctx, Socket::tcp6().dest(dest))
    }

    #[inline]
    fn udp4_socket(&mut self, ctx: SqeContext) -> Result<SqeContext> {
        self.push_op(ctx, Socket::udp4())
    }

    #[inline]
    fn udp4_socket_direct(&mut self, ctx: SqeContext, dest: FileDest) -> Result<SqeContext> {
        self.push_op(ctx, Socket::udp4().dest(dest))
    }

    #[inline]
    fn udp6_socket(&mut self, ctx: SqeContext) -> Result<SqeContext> {
        self.push_op(ctx, Socket::udp6())
    }

    #[inline]
    fn udp6_socket_direct(&mut self, ctx: SqeContext, dest: FileDest) -> Result<SqeContext> {
        self.push_op(ctx, Socket::udp6().dest(dest))
    }

    #[inline]
    fn udplite4_socket(&mut self, ctx: SqeContext) -> Result<SqeContext> {
        self.push_op(ctx, Socket::udplite4())
    }

    #[inline]
    fn udplite4_socket_direct(&mut self, ctx: SqeContext, dest: FileDest) -> Result<SqeContext> {
        self.push_op(ctx, Socket::udplite4().dest(dest))
    }

    #[inline]
    fn udplite6_socket(&mut self, ctx: SqeContext) -> Result<SqeContext> {
        self.push_op(ctx, Socket::udplite6())
    }

    #[inline]
    fn udplite6_socket_direct(&mut self, ctx: SqeContext, dest: FileDest) -> Result<SqeContext> {
        self.push_op(ctx, Socket::udplite6().dest(dest))
    }

    #[inline]
    fn sctp4_socket(&mut self, ctx: SqeContext) -> Result<SqeContext> {
        self.push_op(ctx, Socket::sctp4())
    }

    #[inline]
    fn sctp4_socket_direct(&mut self, ctx: SqeContext, dest: FileDest) -> Result<SqeContext> {
        self.push_op(ctx, Socket::sctp4().dest(dest))
    }

    #[inline]
    fn sctp6_socket(&mut self, ctx: SqeContext) -> Result<SqeContext> {
        self.push_op(ctx, Socket::sctp6())
    }

    #[inline]
    fn sctp6_socket_direct(&mut self, ctx: SqeContext, dest: FileDest) -> Result<SqeContext> {
        self.push_op(ctx, Socket::sctp6().dest(dest))
    }

    #[inline]
    fn unix_stream_socket(&mut self, ctx: SqeContext) -> Result<SqeContext> {
        self.push_op(ctx, Socket::unix_stream())
    }

    #[inline]
    fn unix_stream_socket_direct(&mut self, ctx: SqeContext, dest: FileDest) -> Result<SqeContext> {
        self.push_op(ctx, Socket::unix_stream().dest(dest))
    }

    #[inline]
    fn unix_dgram_socket(&mut self, ctx: SqeContext) -> Result<SqeContext> {
        self.push_op(ctx, Socket::unix_dgram())
    }

    #[inline]
    fn unix_dgram_socket_direct(&mut self, ctx: SqeContext, dest: FileDest) -> Result<SqeContext> {
        self.push_op(ctx, Socket::unix_dgram().dest(dest))
    }

    #[inline]
    fn raw_socket(&mut self, ctx: SqeContext, domain: i32, ty: i32, protocol: i32) -> Result<SqeContext> {
        self.push_op(ctx, Socket::raw(domain, ty, protocol))
    }

    #[inline]
    fn raw_socket_direct(
        &mut self,
        ctx: SqeContext,
        domain: i32,
        ty: i32,
        protocol: i32,
        dest: FileDest,
    ) -> Result<SqeContext> {
        self.push_op(ctx, Socket::raw(domain, ty, protocol).dest(dest))
    }

    #[inline]
    fn bind(&mut self, ctx: SqeContext, fd: impl Into<Target>, addr: impl Into<SockAddr>) -> Result<SqeContext> {
        self.push_op(ctx, Bind::new(fd, addr))
    }

    #[inline]
    fn listen(&mut self, ctx: SqeContext, fd: impl Into<Target>, backlog: u32) -> Result<SqeContext> {
        self.push_op(ctx, Listen::new(fd, backlog))
    }

    #[inline]
    fn accept(&mut self, ctx: SqeContext, listener: impl Into<Target>) -> Result<SqeContext> {
        self.push_op(ctx, Accept::new(listener))
    }

    #[inline]
    fn accept_direct(&mut self, ctx: SqeContext, listener: impl Into<Target>, dest: FileDest) -> Result<SqeContext> {
        self.push_op(ctx, Accept::new(listener).dest(dest))
    }

    #[inline]
    unsafe fn accept_with_peer(
        &mut self,
        ctx: SqeContext,
        listener: impl Into<Target>,
        peer: &mut SockAddr,
    ) -> Result<SqeContext> {
        // SAFETY: the caller keeps `peer` valid and untouched until
        // the CQE, as this method's contract requires.
        unsafe { self.push_op_unchecked(ctx, AcceptWithPeer::new(listener, peer)) }
    }

    #[inline]
    fn connect(&mut self, ctx: SqeContext, fd: impl Into<Target>, addr: impl Into<SockAddr>) -> Result<SqeContext> {
        self.push_op(ctx, Connect::new(fd, addr))
    }

    #[inline]
    fn shutdown(&mut self, ctx: SqeContext, fd: impl Into<Target>, how: std::net::Shutdown) -> Result<SqeContext> {
        self.push_op(ctx, Shutdown::new(fd, how))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip() {
        let v4: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(SockAddr::from(v4).as_socket_addr(), Some(v4));
        let v6: SocketAddr = "[::1]:443".parse().unwrap();
        assert_eq!(SockAddr::from(v6).as_socket_addr(), Some(v6));
        let p = SockAddr::unix("/tmp/x.sock").unwrap();
        assert_eq!(p.as_unix(), Some(UnixName::Path(Path::new("/tmp/x.sock"))));
        assert_eq!(p.len() as usize, 2 + "/tmp/x.sock".len() + 1);
        let a = SockAddr::unix_abstract(b"name").unwrap();
        assert_eq!(a.as_unix(), Some(UnixName::Abstract(b"name")));
        assert_eq!(a.len() as usize, 2 + 1 + 4);
        assert!(SockAddr::unix("a\0b").is_err());
        assert!(SockAddr::unix("x".repeat(108)).is_err());
        assert!(SockAddr::unix("x".repeat(107)).is_ok());
        assert!(SockAddr::unix_abstract(&[b'x'; 107]).is_err());
    }

    #[test]
    fn socket_sqe_layout() {
        let mut sqe = Sqe::default();
        let mut keep = Keep::new();
        Socket::tcp6().dest(FileDest::Slot(3)).prepare(&mut sqe, &mut keep);
        assert_eq!(sqe.fd, libc::AF_INET6);
        assert_eq!(sqe.off(), libc::SOCK_STREAM as u64);
        assert_eq!(sqe.len, libc::IPPROTO_TCP as u32);
        assert_eq!(sqe.file_index(), 4);
        Socket::udp4().prepare(&mut sqe, &mut keep);
        assert_eq!(sqe.off(), (libc::SOCK_DGRAM | libc::SOCK_CLOEXEC) as u64);
        assert_eq!(sqe.file_index(), 0);
    }
}
