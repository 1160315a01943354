//! Socket commands that report back, against the kernel: transmit
//! timestamps (`SOCKET_URING_OP_TX_TIMESTAMP`, 6.16) and getsockname /
//! getpeername (`SOCKET_URING_OP_GETSOCKNAME`, 6.19).

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime};

use uring_core::{CqeSize, sys};
use uring_ops::cmd::{Nop, UringCmd};
use uring_ops::prelude::*;
use uring_ops::sockcmd::{GetSockName, SockCmdOps, TstampType, TxTimestamp, TxTimestamps};
use uring_ops::socket::SockAddr;

fn ud(n: u64) -> SqeContext {
    SqeContext::token(n).unwrap()
}

fn big_ring() -> Ring {
    common::ring_with(Options::default().entries(8).cqe_size(CqeSize::Big))
}

/// `SO_TIMESTAMPING` on `fd` with `flags` (`SOF_TIMESTAMPING_*`).
fn timestamping(fd: i32, flags: u32) {
    let v = flags as i32;
    // SAFETY: a valid int for the call.
    let rc = unsafe {
        libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPING, (&raw const v).cast(), size_of::<i32>() as u32)
    };
    assert_eq!(rc, 0, "SO_TIMESTAMPING: {}", std::io::Error::last_os_error());
}

/// Whether this kernel has the transmit-timestamp command (else checks
/// that pushing it is refused by name and prints why the test skips).
fn has_tx_timestamps(ring: &mut Ring, test: &str) -> bool {
    match ring.features().kernel_version() {
        Some(v) if v < (6, 16) => {
            let err = ring.push_op(ud(99), TxTimestamps::new(0)).unwrap_err();
            assert!(
                matches!(&err, Error::Unsupported { what, .. } if what.contains("SOCKET_URING_OP_TX_TIMESTAMP")),
                "{err}"
            );
            assert_eq!(ring.sq_pending(), 0);
            common::skip(test, "SOCKET_URING_OP_TX_TIMESTAMP needs Linux 6.16");
            false
        }
        _ => true,
    }
}

/// What a reap saw: the timestamps of `user_data` and its last CQE, if any.
#[derive(Debug, Default)]
struct Seen {
    stamps: Vec<(TxTimestamp, SystemTime)>,
    end: Option<(i32, u32)>,
    others: Vec<(u64, i32)>,
}

/// Submits and reaps until `done(seen)` (5 s at most).
fn reap_until(ring: &mut Ring, user_data: u64, seen: &mut Seen, done: impl Fn(&Seen) -> bool) {
    let mut slots = [CqeSlot::EMPTY; 16];
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done(seen) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "timed out: {seen:?}");
        match ring.wait_for(&mut slots, 1, Some(left.min(Duration::from_millis(200)))) {
            Ok(r) => {
                let now = SystemTime::now();
                for c in r.iter() {
                    if common::as_built(c.user_data()) != user_data {
                        seen.others.push((common::as_built(c.user_data()), c.res()));
                        continue;
                    }
                    match TxTimestamp::from_cqe(&c) {
                        Some(ts) => seen.stamps.push((ts, now)),
                        None => {
                            assert!(seen.end.is_none(), "one last CQE");
                            seen.end = Some((c.res(), c.raw_flags()));
                        }
                    }
                }
            }
            Err(Error::WouldBlock) => {}
            Err(e) => panic!("wait_for: {e}"),
        }
    }
}

#[test]
fn udp_tx_timestamps_arrive_per_datagram_within_the_send() {
    udp_tx_timestamps(CqeSize::Big);
}

#[test]
fn udp_tx_timestamps_on_a_mixed_cq_come_as_its_32_byte_entries() {
    udp_tx_timestamps(CqeSize::Mixed);
}

fn udp_tx_timestamps(size: CqeSize) {
    let test = "udp_tx_timestamps";
    let mut ring = common::ring_with(Options::default().entries(8).cqe_size(size));
    if !has_tx_timestamps(&mut ring, test) {
        return;
    }
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    tx.connect(rx.local_addr().unwrap()).unwrap();
    timestamping(
        tx.as_raw_fd(),
        libc::SOF_TIMESTAMPING_TX_SCHED
            | libc::SOF_TIMESTAMPING_TX_SOFTWARE
            | libc::SOF_TIMESTAMPING_SOFTWARE
            | libc::SOF_TIMESTAMPING_OPT_ID
            | libc::SOF_TIMESTAMPING_OPT_TSONLY,
    );
    let armed = ring.tx_timestamps(ud(1), tx.as_raw_fd()).unwrap();
    ring.submit().unwrap();
    // Each send between two readings of the wall clock.
    let mut windows = Vec::new();
    for i in 0..3u8 {
        let t0 = SystemTime::now();
        tx.send(&[i; 10]).unwrap();
        windows.push((t0, SystemTime::now()));
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut seen = Seen::default();
    reap_until(&mut ring, ud(1).raw(), &mut seen, |s| s.stamps.len() >= 6);
    let mut by_key: BTreeMap<(u32, u32), TxTimestamp> = BTreeMap::new();
    for (ts, _) in &seen.stamps {
        assert!(!ts.is_hardware(), "loopback has no hardware clock: {ts:?}");
        assert!(ts.kind() == TstampType::SCHED || ts.kind() == TstampType::SND, "{ts:?}");
        assert!(ts.key() < 3, "keyed to datagrams 0, 1, 2: {ts:?}");
        let (t0, t1) = windows[ts.key() as usize];
        let at = ts.system_time().unwrap();
        assert!(t0 <= at && at <= t1, "stamp {at:?} of datagram {} outside its send [{t0:?}, {t1:?}]", ts.key());
        assert!(by_key.insert((ts.key(), ts.kind().raw()), *ts).is_none(), "one stamp per datagram and type");
    }
    assert_eq!(by_key.len(), 6, "SCHED and SND for each of the three datagrams: {by_key:?}");
    for k in 0..3 {
        let sched = by_key[&(k, TstampType::SCHED.raw())].time();
        let snd = by_key[&(k, TstampType::SND.raw())].time();
        assert!(sched <= snd, "datagram {k} was scheduled before the device took it");
    }
    // The datagrams themselves arrived.
    let mut buf = [0u8; 16];
    for i in 0..3u8 {
        assert_eq!(rx.recv(&mut buf).unwrap(), 10);
        assert_eq!(&buf[..10], &[i; 10]);
    }
    // The command is still armed (F_MORE on every stamp); cancelling ends it.
    assert!(seen.end.is_none());
    ring.cancel(ud(2), armed).unwrap();
    reap_until(&mut ring, ud(1).raw(), &mut seen, |s| s.end.is_some() && !s.others.is_empty());
    let (res, flags) = seen.end.unwrap();
    assert_eq!(res, -libc::ECANCELED);
    assert_eq!(flags & sys::IORING_CQE_F_MORE, 0, "the last CQE has no F_MORE");
    assert_eq!(seen.others, vec![(ud(2).raw(), 0)], "the cancel found it");
}

#[test]
fn tcp_ack_timestamps_are_keyed_to_the_last_byte_of_each_send() {
    let test = "tcp_ack_timestamps_are_keyed_to_the_last_byte_of_each_send";
    let mut ring = big_ring();
    if !has_tx_timestamps(&mut ring, test) {
        return;
    }
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (mut s, _) = l.accept().unwrap();
    timestamping(
        c.as_raw_fd(),
        libc::SOF_TIMESTAMPING_TX_ACK
            | libc::SOF_TIMESTAMPING_SOFTWARE
            | libc::SOF_TIMESTAMPING_OPT_ID
            | libc::SOF_TIMESTAMPING_OPT_TSONLY,
    );
    ring.tx_timestamps(ud(3), c.as_raw_fd()).unwrap();
    ring.submit().unwrap();
    let mut seen = Seen::default();
    let mut sent = 0u32;
    for (i, n) in [100u32, 50, 1].into_iter().enumerate() {
        let t0 = SystemTime::now();
        c.write_all(&vec![i as u8; n as usize]).unwrap();
        sent += n;
        // Wait for this send's ACK before the next, so the kernel cannot
        // fold two sends into one stamp.
        reap_until(&mut ring, ud(3).raw(), &mut seen, |s| s.stamps.len() > i);
        let (ts, reaped_at) = seen.stamps[i];
        assert_eq!(ts.kind(), TstampType::ACK, "{ts:?}");
        assert_eq!(ts.key(), sent - 1, "keyed to the offset of the send's last byte");
        let at = ts.system_time().unwrap();
        assert!(t0 <= at && at <= reaped_at, "ACK stamp {at:?} outside [{t0:?}, {reaped_at:?}]");
    }
    let mut got = vec![0u8; sent as usize];
    s.read_exact(&mut got).unwrap();
    assert_eq!((got[0], got[100], got[150]), (0, 1, 2));
}

#[test]
fn tx_timestamps_need_32_byte_cqes_and_the_kernel_agrees() {
    let test = "tx_timestamps_need_a_cqe32_ring_and_the_kernel_agrees";
    {
        let size = CqeSize::Normal;
        let mut ring = common::ring_with(Options::default().entries(8).cqe_size(size));
        if !has_tx_timestamps(&mut ring, test) {
            return;
        }
        let (c, _s) = common::tcp_pair();
        let err = ring.push_op(ud(4), TxTimestamps::new(c.as_raw_fd())).unwrap_err();
        assert!(matches!(&err, Error::InvalidArgument(m) if m.contains("16-byte CQEs")), "{size:?}: {err}");
        assert_eq!(ring.sq_pending(), 0, "nothing was queued");
        // The same command, unchecked: the kernel refuses it in the CQE.
        // SAFETY: the command names no memory.
        unsafe { ring.push_op_unchecked(ud(5), UringCmd::new(c.as_raw_fd(), sys::SOCKET_URING_OP_TX_TIMESTAMP)) }
            .unwrap();
        let d = common::reap_one(&mut ring);
        assert_eq!((d.res, d.more()), (-libc::EINVAL, false), "{size:?}");
    }
}

#[test]
fn a_32_byte_cqe_without_f_more_is_no_timestamp() {
    let mut ring = big_ring();
    ring.push_op(ud(15), Nop::new().cqe32(7, 8)).unwrap();
    ring.submit().unwrap();
    let mut slots = [CqeSlot::EMPTY; 1];
    let r = ring.wait_for(&mut slots, 1, Some(Duration::from_secs(5))).unwrap();
    let c = r.iter().next().unwrap();
    assert_eq!(c.big(), Some([7, 8]), "a 32-byte CQE with words where a stamp's time would be");
    assert_eq!(TxTimestamp::from_cqe(&c), None, "without F_MORE it is a command's last CQE, not a stamp");
}

#[test]
fn tx_timestamps_on_a_non_socket_fail_in_the_cqe() {
    let mut ring = big_ring();
    if !has_tx_timestamps(&mut ring, "tx_timestamps_on_a_non_socket_fail_in_the_cqe") {
        return;
    }
    let f = std::fs::File::open("/proc/self/stat").unwrap();
    ring.tx_timestamps(ud(6), f.as_raw_fd()).unwrap();
    let d = common::reap_one(&mut ring);
    assert_eq!((d.res, d.more()), (-libc::EOPNOTSUPP, false));
}

/// Whether this kernel has the getsockname command (else prints why the
/// test skips, after checking the refusal is `Unsupported`).
fn has_getsockname(ring: &mut Ring, test: &str) -> bool {
    match ring.features().kernel_version() {
        Some(v) if v < (6, 19) => {
            let mut a = SockAddr::default();
            // SAFETY: refused before anything is queued; `a` outlives the call.
            let err = unsafe { ring.getsockname(ud(7), 0, &mut a) }.unwrap_err();
            assert!(
                matches!(&err, Error::Unsupported { what, .. } if what.contains("SOCKET_URING_OP_GETSOCKNAME")),
                "{err}"
            );
            assert_eq!(ring.sq_pending(), 0);
            common::skip(test, "SOCKET_URING_OP_GETSOCKNAME needs Linux 6.19 (run it in cargo xtask vm-test)");
            false
        }
        _ => true,
    }
}

#[test]
fn getsockname_and_getpeername_match_std() {
    let test = "getsockname_and_getpeername_match_std";
    let mut ring = common::ring(8);
    if !has_getsockname(&mut ring, test) {
        return;
    }
    let (c, s) = common::tcp_pair();
    let (mut local, mut peer) = (SockAddr::default(), SockAddr::default());
    // SAFETY: both stay alive and untouched until their CQEs are reaped
    // below.
    unsafe {
        ring.getsockname(ud(8), c.as_raw_fd(), &mut local).unwrap();
        ring.getpeername(ud(9), c.as_raw_fd(), &mut peer).unwrap();
    }
    let done = common::reap(&mut ring, 2);
    assert!(done.iter().all(|d| d.res == 0), "{done:?}");
    assert_eq!(local.as_socket_addr(), Some(c.local_addr().unwrap()));
    assert_eq!(peer.as_socket_addr(), Some(c.peer_addr().unwrap()));
    assert_eq!(local.len() as usize, size_of::<libc::sockaddr_in>(), "the kernel wrote the length");
    // The server side sees the mirror image.
    let mut s_peer = SockAddr::default();
    // SAFETY: as above.
    unsafe { ring.push_op(ud(10), GetSockName::peer(s.as_raw_fd(), &mut s_peer)) }.unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 0);
    assert_eq!(s_peer.as_socket_addr(), Some(c.local_addr().unwrap()));
    // IPv6, when the host has it.
    if let Ok(l6) = TcpListener::bind("[::1]:0") {
        let c6 = TcpStream::connect(l6.local_addr().unwrap()).unwrap();
        let mut a6 = SockAddr::default();
        // SAFETY: as above.
        unsafe { ring.getpeername(ud(11), c6.as_raw_fd(), &mut a6) }.unwrap();
        assert_eq!(common::reap_one(&mut ring).res, 0);
        assert_eq!(a6.as_socket_addr(), Some(l6.local_addr().unwrap()));
        assert_eq!(a6.len() as usize, size_of::<libc::sockaddr_in6>());
    }
}

#[test]
fn getsockname_through_a_fixed_slot_and_its_errors() {
    let test = "getsockname_through_a_fixed_slot_and_its_errors";
    let mut ring = common::ring(8);
    if !has_getsockname(&mut ring, test) {
        return;
    }
    let (mut c, _s) = common::tcp_pair();
    // A registered socket, named only by its slot.
    ring.register().files(&[c.as_raw_fd()]).unwrap();
    let mut a = SockAddr::default();
    // SAFETY: `a` outlives the reap below.
    unsafe { ring.getsockname(ud(12), Fixed(0), &mut a) }.unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 0);
    assert_eq!(a.as_socket_addr(), Some(c.local_addr().unwrap()));
    // The peer of an unconnected socket: ENOTCONN, as getpeername says.
    let lone = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut p = SockAddr::default();
    // SAFETY: as above.
    unsafe { ring.getpeername(ud(13), lone.as_raw_fd(), &mut p) }.unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::ENOTCONN);
    // A file that is not a socket.
    let f = std::fs::File::open("/proc/self/stat").unwrap();
    // SAFETY: as above.
    unsafe { ring.getsockname(ud(14), f.as_raw_fd(), &mut p) }.unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::EOPNOTSUPP);
    c.write_all(b"still connected").unwrap();
}
