//! Commands against the kernel: socket `uring_cmd`s, 128-byte SQEs.

mod common;

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use uring_core::{Options, SqeContext, sys};
use uring_ops::cmd::{CmdOps, Nop, Nop128, Ring128Ops, SiocInq, UringCmd, UringCmd128};
use uring_ops::prelude::*;

fn ud(n: u64) -> SqeContext {
    SqeContext::token(n).unwrap()
}

/// Blocks (5 s at most) until `fd` is readable.
fn wait_readable(fd: i32) {
    let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd.
    assert_eq!(unsafe { libc::poll(&mut p, 1, 5000) }, 1, "data did not arrive");
}

/// A connected pair with `n` bytes queued at the server side.
fn pair_with_queued(n: usize) -> (std::net::TcpStream, std::net::TcpStream) {
    let (mut c, s) = common::tcp_pair();
    c.write_all(&vec![7u8; n]).unwrap();
    wait_readable(s.as_raw_fd());
    (c, s)
}

fn ring128() -> Ring {
    common::ring_with(Options::default().entries(8).sqe128(true))
}

#[test]
fn siocinq_reports_the_bytes_queued() {
    let mut ring = common::ring(8);
    let (_c, s) = pair_with_queued(5);
    ring.socket_inq(ud(1), s.as_raw_fd()).unwrap();
    let d = common::reap_one(&mut ring);
    assert_eq!((d.user_data, d.res), (ud(1).raw(), 5));
    // The same command through the generic builder.
    // SAFETY: SIOCINQ carries no addresses.
    unsafe { ring.uring_cmd(ud(2), s.as_raw_fd(), sys::SOCKET_URING_OP_SIOCINQ, &[]) }.unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 5);
    // Nothing unsent on an idle socket.
    ring.socket_outq(ud(3), s.as_raw_fd()).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 0);
}

#[test]
fn socket_options_round_trip() {
    let mut ring = common::ring(8);
    let (_c, s) = common::tcp_pair();
    let fd = s.as_raw_fd();
    let one = 1i32.to_ne_bytes();
    // SAFETY: `one` outlives the reap and is not written.
    unsafe { ring.setsockopt(ud(4), fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE, &one) }.unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 0);
    let mut val = [0u8; 4];
    // SAFETY: `val` outlives the reap and is not touched before it.
    unsafe { ring.getsockopt(ud(5), fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE, &mut val) }.unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 4, "the option's length");
    assert_eq!(i32::from_ne_bytes(val), 1, "SO_KEEPALIVE was set through the ring");
    // SO_RCVBUF read through the ring equals what libc reads.
    let mut rcv = [0u8; 4];
    // SAFETY: as above.
    unsafe { ring.getsockopt(ud(6), fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &mut rcv) }.unwrap();
    assert_eq!(common::reap_one(&mut ring).res, 4);
    let mut expect = 0i32;
    let mut len = 4 as libc::socklen_t;
    // SAFETY: valid out-pointers for the call.
    let rc = unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, (&raw mut expect).cast(), &mut len) };
    assert_eq!(rc, 0);
    assert_eq!(i32::from_ne_bytes(rcv), expect);
}

#[test]
fn commands_on_non_sockets_and_bad_fds_fail_in_the_cqe() {
    let mut ring = common::ring(8);
    let mut fds = [0; 2];
    // SAFETY: `fds` is a writable array of two ints.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: pipe2 just created both descriptors.
    let (r, _w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    ring.socket_inq(ud(7), r.as_raw_fd()).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::EOPNOTSUPP);
    ring.push_op(ud(8), SiocInq::new(9999)).unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::EBADF);
}

#[test]
fn too_many_command_bytes_are_refused() {
    let mut ring = common::ring(8);
    // SAFETY: refused before anything is queued.
    let err = unsafe { ring.push_op_unchecked(ud(9), UringCmd::new(0, 0).cmd(&[0; 17])) }.unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    let mut big = ring128();
    // SAFETY: as above.
    let err = unsafe { big.push_op128_unchecked(ud(9), UringCmd128::new(0, 0).cmd(&[0; 81])) }.unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert_eq!((ring.sq_pending(), big.sq_pending()), (0, 0));
}

#[test]
fn a_128_byte_command_runs_on_an_sqe128_ring_and_stamps_its_context() {
    let mut ring = ring128();
    let (_c, s) = pair_with_queued(9);
    let ctx = SqeContext::for_fd(s.as_raw_fd());
    // SAFETY: SIOCINQ carries no addresses; the 80 command bytes are ignored.
    unsafe { ring.push_op128_unchecked(ctx, UringCmd128::new(s.as_raw_fd(), sys::SOCKET_URING_OP_SIOCINQ)) }.unwrap();
    let d = common::reap_one(&mut ring);
    assert_eq!(d.res, 9);
    let back = SqeContext::of_user_data(d.user_data);
    assert_eq!((back.op(), back.fd()), (Some(sys::IORING_OP_URING_CMD as u8), Some(s.as_raw_fd())));
}

#[test]
fn a_128_byte_operation_on_a_64_byte_ring_is_unsupported() {
    let mut ring = common::ring(8);
    // SAFETY: refused before anything is queued.
    let err = unsafe { ring.push_op128_unchecked(ud(10), UringCmd128::new(0, 0)) }.unwrap_err();
    assert!(matches!(&err, Error::Unsupported { what, .. } if what.contains("128-byte")), "{err}");
    let err = ring.nop128(ud(11)).unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err}");
    assert_eq!(ring.sq_pending(), 0);
}

#[test]
fn nop128_runs_where_supported() {
    let mut ring = ring128();
    if !ring.features().supports(sys::IORING_OP_NOP128 as u8) {
        let err = ring.push_op128(ud(12), Nop128::new()).unwrap_err();
        assert!(matches!(&err, Error::Unsupported { what, .. } if what == "IORING_OP_NOP128"), "{err}");
        assert_eq!(ring.sq_pending(), 0);
        common::skip("nop128_runs_where_supported", "IORING_OP_NOP128 is not in this kernel's probe (6.19+)");
        return;
    }
    ring.nop128(ud(12)).unwrap();
    let d = common::reap_one(&mut ring);
    assert_eq!((d.user_data, d.res), (ud(12).raw(), 0));
}

#[test]
fn a_64_byte_uring_cmd_is_refused_on_an_sqe128_ring() {
    let mut ring = ring128();
    // SAFETY: refused before anything is queued.
    let err = unsafe { ring.push_op_unchecked(ud(13), UringCmd::new(0, 0)) }.unwrap_err();
    assert!(matches!(&err, Error::InvalidArgument(m) if m.contains("UringCmd128")), "{err}");
    assert_eq!(ring.sq_pending(), 0);
}

/// Reaps one completion and returns its `user_data`, result and extra
/// words (`None` for a 16-byte CQE).
fn reap_big(ring: &mut Ring) -> (u64, i32, Option<[u64; 2]>) {
    ring.submit().unwrap();
    let mut slots = [uring_core::CqeSlot::EMPTY; 1];
    let r = ring.wait_for(&mut slots, 1, Some(std::time::Duration::from_secs(5))).unwrap();
    let c = r.iter().next().expect("one completion");
    (common::as_built(c.user_data()), c.res(), c.big())
}

#[test]
fn a_cqe32_nop_posts_its_extra_words_in_a_32_byte_cqe_on_a_mixed_ring() {
    let opts = Options::default().entries(8).cqe_size(uring_core::CqeSize::Mixed);
    let mut ring = match Ring::new(opts) {
        Ok(r) => r,
        Err(e) => {
            common::skip(
                "a_cqe32_nop_posts_its_extra_words_in_a_32_byte_cqe_on_a_mixed_ring",
                &format!("no IORING_SETUP_CQE_MIXED ring here (6.18+): {e}"),
            );
            return;
        }
    };
    ring.start().unwrap();
    ring.push_op(ud(20), Nop::new()).unwrap();
    assert_eq!(reap_big(&mut ring), (ud(20).raw(), 0, None));
    ring.push_op(ud(21), Nop::new().cqe32(0x1122_3344_5566_7788, u64::MAX).result(-5)).unwrap();
    assert_eq!(reap_big(&mut ring), (ud(21).raw(), -5, Some([0x1122_3344_5566_7788, u64::MAX])));
    // The next plain NOP is 16 bytes again.
    ring.push_op(ud(22), Nop::new()).unwrap();
    assert_eq!(reap_big(&mut ring), (ud(22).raw(), 0, None));
}

#[test]
fn a_cqe32_nop_fills_the_extra_words_of_a_32_byte_ring() {
    let mut ring = common::ring_with(Options::default().entries(8).cqe_size(uring_core::CqeSize::Big));
    if ring.features().kernel_version().is_some_and(|v| v < (6, 18)) {
        let err = ring.push_op(ud(23), Nop::new().cqe32(1, 2)).unwrap_err();
        assert!(matches!(err, Error::Unsupported { .. }), "{err}");
        common::skip("a_cqe32_nop_fills_the_extra_words_of_a_32_byte_ring", "IORING_NOP_CQE32 needs Linux 6.18");
        return;
    }
    ring.push_op(ud(23), Nop::new()).unwrap();
    assert_eq!(reap_big(&mut ring), (ud(23).raw(), 0, Some([0, 0])));
    ring.push_op(ud(24), Nop::new().cqe32(7, 9)).unwrap();
    assert_eq!(reap_big(&mut ring), (ud(24).raw(), 0, Some([7, 9])));
}

#[test]
fn a_cqe32_nop_is_refused_on_a_16_byte_ring_as_the_kernel_would() {
    let mut ring = common::ring(8);
    let err = ring.push_op(ud(25), Nop::new().cqe32(1, 2)).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_) | Error::Unsupported { .. }), "{err}");
    assert_eq!(ring.sq_pending(), 0);
    // What the check spares the caller: the kernel's own answer.
    let raw = Nop::new().cqe32(1, 2);
    let mut sqe = uring_core::Sqe::default();
    let mut keep = uring_core::Keep::new();
    raw.prepare(&mut sqe, &mut keep);
    sqe.user_data = ud(26).raw();
    // SAFETY: a NOP names no memory; the user_data is no layer's.
    unsafe { ring.push(&sqe) }.unwrap();
    assert_eq!(common::reap_one(&mut ring).res, -libc::EINVAL);
}

/// On an `SQE_MIXED` ring (6.19+) `push_op128` takes two slots: NOP128s
/// among NOPs land on every slot of a 4-entry SQ, the last one too (padded
/// with a NOP that posts no CQE), and `UringCmd128` goes out as
/// `IORING_OP_URING_CMD128`.
#[test]
fn push_op128_on_an_sqe_mixed_ring_pads_the_wrap_and_sends_uring_cmd128() {
    let test = "push_op128_on_an_sqe_mixed_ring_pads_the_wrap_and_sends_uring_cmd128";
    let opts = Options::default().entries(4).extra_flags(uring_core::SetupFlags::SQE_MIXED);
    let mut ring = match Ring::new(opts) {
        Ok(r) => r,
        Err(e) => {
            common::skip(test, &format!("{e} (SQE_MIXED is 6.19+)"));
            return;
        }
    };
    ring.start().unwrap();
    if !ring.features().supports(sys::IORING_OP_NOP128 as u8) {
        common::skip(test, "IORING_OP_NOP128 is not in this kernel's probe");
        return;
    }
    let mut n = 0u64;
    for round in 0..64u64 {
        // 0 or 1 NOP, then a NOP128 (2 slots, 3 at the wrap): at most 4
        // slots. The NOP128 lands on the last slot every fourth round.
        let before = round % 2;
        for _ in 0..before {
            n += 1;
            ring.nop(ud(n)).unwrap();
        }
        n += 1;
        ring.nop128(ud(n)).unwrap();
        // A CQE of a padding NOP would show up here as a surplus.
        let mut got: Vec<u64> = common::reap(&mut ring, before as usize + 1).iter().map(|d| d.user_data).collect();
        got.sort_unstable();
        let want: Vec<u64> = (n - before..=n).map(|i| ud(i).raw()).collect();
        assert_eq!(got, want, "round {round}");
    }
    if !ring.features().supports(sys::IORING_OP_URING_CMD128 as u8) {
        common::skip(test, "IORING_OP_URING_CMD128 is not in this kernel's probe");
        return;
    }
    let (_c, s) = pair_with_queued(9);
    for _ in 0..6 {
        let ctx = SqeContext::for_fd(s.as_raw_fd());
        // SAFETY: SIOCINQ carries no addresses; the command bytes are ignored.
        unsafe { ring.push_op128_unchecked(ctx, UringCmd128::new(s.as_raw_fd(), sys::SOCKET_URING_OP_SIOCINQ)) }
            .unwrap();
        let d = common::reap_one(&mut ring);
        assert_eq!(d.res, 9);
        let back = SqeContext::of_user_data(d.user_data);
        assert_eq!(back.op(), Some(sys::IORING_OP_URING_CMD128 as u8));
    }
}

/// A started `SharedRing` with `opts`.
fn shared(opts: Options) -> uring_core::SharedRing {
    let mut ring = uring_core::SharedRing::new(opts).unwrap();
    ring.start().unwrap();
    ring
}

/// Reaps one CQE of a shared ring as (user data, result).
fn reap_shared(ring: &uring_core::SharedRing) -> (u64, i32) {
    let mut slots = [uring_core::CqeSlot::EMPTY; 1];
    let n = ring.wait_for(&mut slots, 1, Some(std::time::Duration::from_secs(5))).unwrap();
    assert_eq!(n, 1);
    (slots[0].cqe().user_data(), slots[0].cqe().res())
}

/// `SharedRing128Ops`: a 128-byte command from several threads at once,
/// each stamped with its context; refusals leave nothing queued.
#[test]
fn a_shared_ring_runs_128_byte_commands_from_threads() {
    use uring_ops::cmd::SharedRing128Ops;
    let ring = std::sync::Arc::new(shared(Options::default().entries(16).sqe128(true)));
    let (_c, s) = pair_with_queued(11);
    let fd = s.as_raw_fd();
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let ring = ring.clone();
            std::thread::spawn(move || {
                // SAFETY: SIOCINQ carries no addresses; the command bytes
                // are ignored.
                unsafe { ring.push_op128_unchecked(ud(t), UringCmd128::new(fd, sys::SOCKET_URING_OP_SIOCINQ)) }
                    .unwrap();
                ring.submit().unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mut got: Vec<(u64, i32)> = (0..4)
        .map(|_| {
            let (user_data, res) = reap_shared(&ring);
            let ctx = SqeContext::of_user_data(user_data);
            assert_eq!(ctx.op(), Some(sys::IORING_OP_URING_CMD as u8), "stamped with the opcode");
            (ctx.as_token().unwrap(), res)
        })
        .collect();
    got.sort_unstable();
    assert_eq!(got, (0..4).map(|t| (t, 11)).collect::<Vec<_>>(), "each thread's command, once");
    // Refused before or after the entry is acquired: nothing is queued.
    // SAFETY: refused before anything is queued.
    let err = unsafe { ring.push_op128_unchecked(ud(9), UringCmd128::new(0, 0).cmd(&[0; 81])) }.unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    let layer = uring_core::LayerData::new(uring_core::Layer::FixedBuffers, false, 0).unwrap().context();
    // SAFETY: refused before anything is queued.
    let err = unsafe { ring.push_op128_unchecked(layer, UringCmd128::new(0, 0)) }.unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert_eq!(ring.submit().unwrap(), 0, "nothing was left queued");
    // On a ring of 64-byte entries: unsupported.
    let small = shared(Options::default().entries(4));
    let err = small.nop128(ud(1)).unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err}");
}

/// On an `SQE_MIXED` shared ring (6.19+) a 64-byte opcode in a 128-byte
/// push is refused after the entry was acquired: given back, unpublished;
/// `NOP128` runs.
#[test]
fn a_shared_sqe_mixed_ring_gives_back_a_refused_128_byte_entry() {
    use uring_ops::cmd::SharedRing128Ops;
    let test = "a_shared_sqe_mixed_ring_gives_back_a_refused_128_byte_entry";
    let ring =
        match uring_core::SharedRing::new(Options::default().entries(4).extra_flags(uring_core::SetupFlags::SQE_MIXED))
        {
            Ok(mut r) => {
                r.start().unwrap();
                r
            }
            Err(e) => {
                common::skip(test, &format!("{e} (SQE_MIXED is 6.19+)"));
                return;
            }
        };
    if !ring.features().supports(sys::IORING_OP_NOP128 as u8) {
        common::skip(test, "IORING_OP_NOP128 is not in this kernel's probe");
        return;
    }
    for round in 0..8 {
        // A 64-byte NOP as a 128-byte operation: refused, given back.
        let err = ring.push_op128(ud(100 + round), Nop64In128).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(ref m) if m.contains("SQE_MIXED")), "{err}");
        ring.nop128(ud(round)).unwrap();
        assert!(ring.submit().unwrap() >= 2, "round {round}: the NOP128's two slots (and a pad at the wrap)");
        let (user_data, res) = reap_shared(&ring);
        let token = SqeContext::of_user_data(user_data).as_token();
        assert_eq!((token, res), (Some(round), 0), "round {round}: only the NOP128 completes");
    }
}

/// A plain NOP presented as a 128-byte operation (what the mixed ring
/// must refuse).
#[derive(Debug, Clone, Copy)]
struct Nop64In128;

impl uring_ops::cmd::Prepare128 for Nop64In128 {
    const CODE: u8 = sys::IORING_OP_NOP as u8;

    fn prepare(self, sqe: &mut uring_core::Sqe128) {
        *sqe = uring_core::Sqe128::default();
        sqe.sqe = uring_core::Sqe::new(sys::IORING_OP_NOP as u8);
    }
}

// SAFETY: names no memory.
unsafe impl uring_ops::cmd::SafeOp128 for Nop64In128 {}
