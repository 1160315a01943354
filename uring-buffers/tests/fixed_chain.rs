//! Linked fixed-buffer chains (`FixedBuffers::chain`) against the kernel,
//! and attacks on the invariant that keeps them sound: the buffer is busy
//! until the kernel has posted, and the table has seen, **every** CQE of
//! the chain (the `-ECANCELED` ones of a broken link included), whatever
//! order the CQEs are presented in, however often a copy is presented, and
//! whichever ring reaped it; and a chain is queued whole or not at all.
//!
//! Each attack fails on a naive implementation: freeing on the first CQE,
//! on the read's CQE, on a count of CQEs without telling steps apart, or
//! pushing step by step into a full SQ.

mod common;

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use common::{reap, ring};
use uring_buffers::{BufferState, ChainOutcome, ChainStatus, Error, FixedBuffers, FixedDone, FixedKind};
use uring_core::{CqeSlot, Options, Ring, SqeContext};
use uring_ops::RingOps;
use uring_ops::cmd::Nop;
use uring_ops::timeout::LinkTimeout;

fn temp(tag: &str) -> File {
    let p = std::env::temp_dir().join(format!("uring-buffers-chain-{tag}-{}", std::process::id()));
    let f = File::options().read(true).write(true).create(true).truncate(true).open(&p).unwrap();
    std::fs::remove_file(&p).unwrap();
    f
}

fn file_with(tag: &str, bytes: &[u8]) -> File {
    let mut f = temp(tag);
    f.write_all(bytes).unwrap();
    f
}

fn contents(f: &mut File) -> Vec<u8> {
    let mut v = Vec::new();
    f.rewind().unwrap();
    f.read_to_end(&mut v).unwrap();
    v
}

/// A pipe: (read end, write end).
fn pipe() -> (File, File) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into `fds`.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both descriptors are fresh and owned by nobody else.
    unsafe { (File::from(OwnedFd::from_raw_fd(fds[0])), File::from(OwnedFd::from_raw_fd(fds[1]))) }
}

fn pattern(n: usize, seed: u32) -> Vec<u8> {
    (0..n as u32).map(|i| (i.wrapping_mul(131).wrapping_add(seed) % 251) as u8).collect()
}

/// The buffer is in flight: neither lent for reading nor for writing.
fn assert_held(fixed: &mut FixedBuffers, index: u32, when: &str) {
    assert!(matches!(fixed.state(index).unwrap(), BufferState::KernelWrites(_)), "{when}: {:?}", fixed.state(index));
    assert!(matches!(fixed.buffer(index), Err(Error::Busy { .. })), "{when}: buffer() lent");
    assert!(matches!(fixed.buffer_mut(index), Err(Error::Busy { .. })), "{when}: buffer_mut() lent");
}

fn outcome(done: &FixedDone) -> Option<ChainOutcome> {
    done.chain.and_then(|c| c.outcome)
}

/// A read of `n` bytes from `input` then a write of them to `output`
/// copies them, and only the chain's last CQE frees the buffer.
#[test]
fn a_chain_copies_and_frees_the_buffer_only_at_its_last_cqe() {
    let mut ring = ring();
    let mut fixed = FixedBuffers::register(&mut ring, 2, 64 * 1024).unwrap();
    let data = pattern(40_000, 7);
    let input = file_with("copy-in", &data);
    let mut output = temp("copy-out");
    let id = fixed
        .chain(1)
        .read(input.as_raw_fd(), 0..data.len(), 0)
        .write(output.as_raw_fd(), 0..data.len(), 0)
        .queue(&mut ring)
        .unwrap();
    assert_eq!(fixed.in_flight(), 2);
    assert_eq!(fixed.state(1).unwrap(), BufferState::KernelWrites(id));
    assert!(matches!(fixed.read_fixed(&mut ring, input.as_raw_fd(), 1, 0..1, 0), Err(Error::Busy { .. })));
    ring.submit().unwrap();
    let cqes = reap(&mut ring, 2);
    let first = fixed.handle_cqe(&cqes[0].cqe()).expect("the chain's CQE");
    assert!(!first.free, "the first CQE must not free the buffer: {first:?}");
    assert_eq!(first.chain.map(|c| (c.chain, c.step, c.outcome)), Some((id, 0, None)));
    assert_eq!((first.kind, first.res), (FixedKind::Read, data.len() as i32));
    assert_held(&mut fixed, 1, "after the read's CQE");
    let last = fixed.handle_cqe(&cqes[1].cqe()).expect("the chain's CQE");
    assert!(last.free);
    assert_eq!((last.kind, last.res), (FixedKind::Write, data.len() as i32));
    let o = outcome(&last).expect("the last CQE carries the outcome");
    assert_eq!(o.status(), ChainStatus::Complete);
    assert_eq!(o.results(), [data.len() as i32, data.len() as i32]);
    assert_eq!(fixed.state(1).unwrap(), BufferState::Idle);
    assert_eq!(fixed.in_flight(), 0);
    assert_eq!(&fixed.buffer(1).unwrap()[..data.len()], &data[..]);
    assert_eq!(contents(&mut output), data);
}

/// A short read (end of file) breaks the link: the kernel cancels the
/// write, the caller hears "short", and the buffer stays held until the
/// cancelled write's CQE too has been seen.
#[test]
fn a_short_read_is_reported_short_and_frees_nothing_before_the_cancelled_write() {
    let mut ring = ring();
    let mut fixed = FixedBuffers::register(&mut ring, 1, 8192).unwrap();
    let input = file_with("short-in", &pattern(100, 3));
    let mut output = temp("short-out");
    fixed.chain(0).read(input.as_raw_fd(), 0..4096, 0).write(output.as_raw_fd(), 0..4096, 0).queue(&mut ring).unwrap();
    ring.submit().unwrap();
    let cqes = reap(&mut ring, 2);
    let mut results = Vec::new();
    for (i, c) in cqes.iter().enumerate() {
        let done = fixed.handle_cqe(&c.cqe()).expect("the chain's CQE");
        results.push((done.kind, done.res));
        if i == 0 {
            assert!(!done.free, "a broken link must not free the buffer at its first CQE: {done:?}");
            assert_held(&mut fixed, 0, "between the chain's CQEs");
        } else {
            assert!(done.free);
            let o = outcome(&done).unwrap();
            assert_eq!(o.status(), ChainStatus::Short { step: 0, res: 100, wanted: 4096 });
            assert_eq!(o.results(), [100, -libc::ECANCELED]);
        }
    }
    results.sort_by_key(|r| r.0 == FixedKind::Write);
    assert_eq!(results, [(FixedKind::Read, 100), (FixedKind::Write, -libc::ECANCELED)]);
    assert!(contents(&mut output).is_empty(), "the write ran after a short read");
    fixed.buffer_mut(0).unwrap()[0] = 1;
}

/// Runs a read (from an empty pipe, bounded by a 20 ms linked timeout)
/// then a write, and returns its three CQEs unhandled.
fn timed_out_chain(ring: &mut Ring, fixed: &mut FixedBuffers, rx: &File, out: &File) -> Vec<CqeSlot> {
    fixed
        .chain(0)
        .read(rx.as_raw_fd(), 0..512, u64::MAX)
        .link_timeout(LinkTimeout::new(Duration::from_millis(20)))
        .write(out.as_raw_fd(), 0..512, 0)
        .queue(ring)
        .unwrap();
    ring.submit().unwrap();
    reap(ring, 3)
}

/// The CQEs of a chain, presented in every order, with copies of those
/// already presented replayed before each new one: the buffer is held
/// until the third distinct CQE, every copy is refused, and the outcome
/// is the same whatever the order.
#[test]
fn chain_cqes_in_any_order_with_replays_free_the_buffer_only_after_all() {
    let mut ring = ring();
    let mut fixed = FixedBuffers::register(&mut ring, 1, 4096).unwrap();
    let (rx, _tx) = pipe();
    let mut out = temp("order-out");
    let orders = [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]];
    let mut stale: Vec<CqeSlot> = Vec::new();
    for order in orders {
        let cqes = timed_out_chain(&mut ring, &mut fixed, &rx, &out);
        // Copies of the previous chains' CQEs name the same slots (reused)
        // but are older than this chain: they free nothing.
        for s in &stale {
            assert!(fixed.handle_cqe(&s.cqe()).is_none(), "a previous chain's CQE was taken");
        }
        let mut seen = Vec::new();
        for (k, &i) in order.iter().enumerate() {
            for &j in &seen {
                let copy: CqeSlot = cqes[j];
                assert!(fixed.handle_cqe(&copy.cqe()).is_none(), "order {order:?}: a replayed copy was taken");
            }
            assert_held(&mut fixed, 0, &format!("order {order:?} before CQE {k}"));
            let done = fixed.handle_cqe(&cqes[i].cqe()).expect("the chain's CQE");
            seen.push(i);
            assert_eq!(done.free, k == 2, "order {order:?}: CQE {k} free={}", done.free);
            if k == 2 {
                let o = outcome(&done).unwrap();
                assert!(matches!(o.status(), ChainStatus::TimedOut { step: 0, .. }), "{o:?}");
                assert_eq!(o.kinds(), [FixedKind::Read, FixedKind::LinkTimeout, FixedKind::Write]);
                assert_eq!(o.results()[1..], [-libc::ETIME, -libc::ECANCELED]);
            }
        }
        for c in &cqes {
            assert!(fixed.handle_cqe(&c.cqe()).is_none(), "a copy taken after the chain ended");
        }
        assert_eq!(fixed.state(0).unwrap(), BufferState::Idle);
        stale.extend_from_slice(&cqes);
    }
    assert!(contents(&mut out).is_empty());
}

/// A second table on another ring: its chain's CQEs (same slots, same
/// step numbers) do nothing to the first table's chain, nor the first's
/// to the second, and neither ring's CQEs end the other's chain.
#[test]
fn another_rings_chain_cqes_free_nothing() {
    let mut ring_a = ring();
    let mut ring_b = ring();
    let mut a = FixedBuffers::register(&mut ring_a, 1, 4096).unwrap();
    let mut b = FixedBuffers::register(&mut ring_b, 1, 4096).unwrap();
    let input = file_with("foreign-in", &pattern(1000, 1));
    let out = temp("foreign-out");
    let (rx, mut tx) = pipe();
    // A's chain waits on the pipe; B's completes.
    a.chain(0).read(rx.as_raw_fd(), 0..10, u64::MAX).write(out.as_raw_fd(), 0..10, 0).queue(&mut ring_a).unwrap();
    ring_a.submit().unwrap();
    b.chain(0).read(input.as_raw_fd(), 0..1000, 0).write(out.as_raw_fd(), 0..1000, 0).queue(&mut ring_b).unwrap();
    ring_b.submit().unwrap();
    let b_cqes = reap(&mut ring_b, 2);
    for c in &b_cqes {
        assert!(a.handle_cqe(&c.cqe()).is_none(), "another ring's CQE was taken");
    }
    assert_held(&mut a, 0, "after another ring's CQEs");
    tx.write_all(b"0123456789").unwrap();
    ring_a.submit().unwrap();
    let a_cqes = reap(&mut ring_a, 2);
    for c in &a_cqes {
        assert!(b.handle_cqe(&c.cqe()).is_none(), "another ring's CQE was taken");
    }
    for c in a_cqes.iter().chain(&b_cqes) {
        let (t, other) = if c.cqe().ring_id() == ring_a.id() { (&mut a, "a") } else { (&mut b, "b") };
        assert!(t.handle_cqe(&c.cqe()).is_some(), "table {other} refused its own CQE");
    }
    assert_eq!(a.buffer(0).unwrap()[..10], *b"0123456789");
    assert_eq!(b.state(0).unwrap(), BufferState::Idle);
}

/// An SQ with room for fewer entries than the chain: nothing is queued
/// (a chain queued step by step would leave its first steps behind, to be
/// linked to whatever the caller queues next), the buffer stays idle.
#[test]
fn a_chain_is_queued_whole_or_not_at_all() {
    let mut ring = Ring::new(Options::default().entries(4)).unwrap();
    ring.start().unwrap();
    let mut fixed = FixedBuffers::register(&mut ring, 1, 4096).unwrap();
    let input = file_with("full-in", &pattern(300, 9));
    let mut out = temp("full-out");
    for _ in 0..2 {
        ring.push_op(SqeContext::token(7).unwrap(), Nop::new()).unwrap();
    }
    assert_eq!(ring.sq_space_left(), 2);
    let chain = |fixed: &mut FixedBuffers, ring: &mut Ring| {
        fixed
            .chain(0)
            .read(input.as_raw_fd(), 0..300, 0)
            .link_timeout(LinkTimeout::new(Duration::from_secs(5)))
            .write(out.as_raw_fd(), 0..300, 0)
            .queue(ring)
    };
    let e = chain(&mut fixed, &mut ring).unwrap_err();
    assert!(matches!(e, Error::Core(uring_core::Error::QueueFull { .. })), "{e}");
    assert_eq!(ring.sq_pending(), 2, "part of a refused chain was queued");
    assert_eq!((fixed.state(0).unwrap(), fixed.in_flight()), (BufferState::Idle, 0));
    // Structural mistakes are refused before anything is queued too.
    let e = fixed.chain(0).link_timeout(LinkTimeout::new(Duration::from_secs(1))).queue(&mut ring).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
    let e = fixed.chain(0).read(input.as_raw_fd(), 0..4097, 0).queue(&mut ring).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
    assert!(matches!(fixed.chain(0).queue(&mut ring), Err(Error::InvalidArgument(_))));
    let mut long = fixed.chain(0);
    for _ in 0..=uring_buffers::fixed::MAX_CHAIN_STEPS {
        long = long.read(input.as_raw_fd(), 0..1, 0);
    }
    assert!(matches!(long.queue(&mut ring), Err(Error::InvalidArgument(_))));
    assert_eq!(ring.sq_pending(), 2);
    // The NOPs complete untouched by a half chain; then the chain fits.
    ring.submit().unwrap();
    let nops = reap(&mut ring, 2);
    assert!(nops.iter().all(|c| c.cqe().res() == 0 && fixed.handle_cqe(&c.cqe()).is_none()));
    chain(&mut fixed, &mut ring).unwrap();
    ring.submit().unwrap();
    let cqes = reap(&mut ring, 3);
    let dones: Vec<_> = cqes.iter().map(|c| fixed.handle_cqe(&c.cqe()).unwrap()).collect();
    assert_eq!(dones.iter().filter(|d| d.free).count(), 1);
    assert!(dones.iter().filter_map(outcome).all(|o| o.is_complete()));
    assert_eq!(contents(&mut out), pattern(300, 9));
}

/// A busy buffer refuses a chain, and a chain's buffer refuses single
/// operations and other chains, until the chain's last CQE.
#[test]
fn a_chain_and_other_operations_exclude_each_other() {
    let mut ring = ring();
    let mut fixed = FixedBuffers::register(&mut ring, 2, 4096).unwrap();
    let (rx, mut tx) = pipe();
    let out = temp("excl-out");
    fixed.read_fixed(&mut ring, rx.as_raw_fd(), 0, 0..4, u64::MAX).unwrap();
    let e = fixed.chain(0).read(rx.as_raw_fd(), 0..4, u64::MAX).write(out.as_raw_fd(), 0..4, 0).queue(&mut ring);
    assert!(matches!(e, Err(Error::Busy { .. })), "{e:?}");
    let id =
        fixed.chain(1).write(out.as_raw_fd(), 0..4, 0).read(rx.as_raw_fd(), 0..4, u64::MAX).queue(&mut ring).unwrap();
    // A chain that writes into the buffer at any step holds it as written.
    assert_eq!(fixed.state(1).unwrap(), BufferState::KernelWrites(id));
    assert!(matches!(fixed.write_fixed(&mut ring, out.as_raw_fd(), 1, 0..4, 0), Err(Error::Busy { .. })));
    assert!(matches!(fixed.chain(1).write(out.as_raw_fd(), 0..4, 0).queue(&mut ring), Err(Error::Busy { .. })));
    assert_eq!(ring.sq_pending(), 3);
    ring.submit().unwrap();
    tx.write_all(b"abcdefgh").unwrap();
    let cqes = reap(&mut ring, 3);
    let frees = cqes.iter().filter(|c| fixed.handle_cqe(&c.cqe()).unwrap().free).count();
    assert_eq!(frees, 2);
    assert_eq!(fixed.in_flight(), 0);
}

/// Dropping or forgetting the table, or stopping the ring with a chain
/// in flight (and a submit that fails after the stop): the kernel's
/// writes land in memory still attached to the ring (ASan in CI would see
/// anything else), and a stopped ring's table keeps the buffer held.
#[test]
fn dropping_forgetting_or_stopping_with_a_chain_in_flight_is_safe() {
    static FORGOTTEN: std::sync::Mutex<Vec<std::mem::ManuallyDrop<FixedBuffers>>> = std::sync::Mutex::new(Vec::new());
    for how in ["drop", "forget", "stop"] {
        let mut ring = ring();
        let mut fixed = FixedBuffers::register(&mut ring, 1, 4096).unwrap();
        let (rx, mut tx) = pipe();
        let out = temp("drop-out");
        fixed.chain(0).read(rx.as_raw_fd(), 0..6, u64::MAX).write(out.as_raw_fd(), 0..6, 0).queue(&mut ring).unwrap();
        match how {
            "drop" => {
                ring.submit().unwrap();
                drop(fixed);
            }
            "forget" => {
                ring.submit().unwrap();
                // `mem::forget`, kept reachable from a static so that the
                // leak checker (CI runs this under LSan, nothing
                // suppressed) sees no leak: its `Drop` never runs all the
                // same.
                FORGOTTEN.lock().unwrap().push(std::mem::ManuallyDrop::new(fixed));
            }
            _ => {
                ring.stop();
                assert!(ring.submit().is_err(), "submit on a stopped ring");
                assert_held(&mut fixed, 0, "after stop");
                assert!(fixed.into_inner().is_err(), "into_inner with a chain whose CQEs are lost");
                continue;
            }
        }
        tx.write_all(b"kernel").unwrap();
        let cqes = reap(&mut ring, 2);
        assert!(
            cqes.iter().all(|c| c.cqe().res() == 6),
            "{how}: {:?}",
            cqes.iter().map(|c| c.cqe().res()).collect::<Vec<_>>()
        );
        drop(ring);
    }
}

/// A chain queued right after the caller's own entry that carries
/// `IO_LINK` becomes the tail of the caller's link: when the caller's
/// entry fails, the kernel cancels every step of the chain, each with its
/// own CQE; the buffer is held until both have been seen and the outcome
/// says the chain was cancelled from outside.
#[test]
fn a_chain_linked_behind_a_failing_entry_of_the_caller_is_cancelled_whole() {
    use uring_ops::OpExt;
    let mut ring = ring();
    let mut fixed = FixedBuffers::register(&mut ring, 1, 4096).unwrap();
    let input = file_with("behind-in", &pattern(64, 5));
    let mut out = temp("behind-out");
    let nop = Nop::new().result(-libc::EINVAL).with_sqe_flags(uring_core::SqeFlags::IO_LINK);
    ring.push_op(SqeContext::token(9).unwrap(), nop).unwrap();
    fixed.chain(0).read(input.as_raw_fd(), 0..64, 0).write(out.as_raw_fd(), 0..64, 0).queue(&mut ring).unwrap();
    ring.submit().unwrap();
    let cqes = reap(&mut ring, 3);
    let mut frees = 0;
    for c in &cqes {
        match fixed.handle_cqe(&c.cqe()) {
            None => assert_eq!(c.cqe().res(), -libc::EINVAL, "the caller's own entry"),
            Some(done) => {
                assert_eq!(done.res, -libc::ECANCELED);
                if done.free {
                    frees += 1;
                    let o = outcome(&done).unwrap();
                    assert_eq!(o.status(), ChainStatus::Failed { step: 0, res: -libc::ECANCELED });
                } else {
                    assert_held(&mut fixed, 0, "between the cancelled steps");
                }
            }
        }
    }
    assert_eq!(frees, 1);
    assert!(contents(&mut out).is_empty());
    assert_eq!(fixed.state(0).unwrap(), BufferState::Idle);
}

#[test]
fn a_full_size_table_runs_plain_operations_in_each_buffers_own_slot_and_chains_above() {
    // Each buffer's plain operation uses the buffer's own slot (its index);
    // chain steps take slots above the table's length. A table of the
    // kernel's largest size (16384, sparse here) still has room for both,
    // and the ids of the two kinds never collide.
    let mut ring = ring();
    let n = uring_buffers::registered::MAX_BUFFERS;
    let mut fixed = FixedBuffers::sparse(&mut ring, n).unwrap();
    let (low, high) = (0, n - 1);
    fixed.install(&mut ring, low, 4096).unwrap();
    fixed.install(&mut ring, high, 4096).unwrap();
    assert!(matches!(fixed.read_fixed(&mut ring, 0, 1, 0..1, 0), Err(Error::InvalidArgument(_))), "an empty slot");
    let data = pattern(3000, 11);
    let input = file_with("full-in", &data);
    let mut output = temp("full-out");
    let plain = fixed.read_fixed(&mut ring, input.as_raw_fd(), high, 0..data.len(), 0).unwrap();
    let chain = fixed
        .chain(low)
        .read(input.as_raw_fd(), 0..data.len(), 0)
        .write(output.as_raw_fd(), 0..data.len(), 0)
        .queue(&mut ring)
        .unwrap();
    assert_ne!(plain, chain);
    assert_eq!(fixed.in_flight(), 3);
    ring.submit().unwrap();
    let mut seen = 0;
    while fixed.in_flight() > 0 {
        for s in reap(&mut ring, 1) {
            let done = fixed.handle_cqe(&s.cqe()).expect("the table's CQE");
            assert_eq!(done.res, data.len() as i32);
            seen += 1;
        }
    }
    assert_eq!(seen, 3);
    assert_eq!(&fixed.buffer(high).unwrap()[..data.len()], &data[..]);
    assert_eq!(&fixed.buffer(low).unwrap()[..data.len()], &data[..]);
    assert_eq!(contents(&mut output), data);
    // The ids: the plain read's slot is its buffer, the chain's above.
    let slot = |id: uring_buffers::FixedId| (id.user_data() >> 11) & ((1 << 15) - 1);
    assert_eq!(slot(plain), u64::from(high));
    assert!(slot(chain) >= u64::from(n), "chain slot {} below the table's length", slot(chain));
}
