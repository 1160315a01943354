//! Ring setup from `Options`: every setup flag a 6.18 kernel accepts, and
//! the errors for options it does not.

mod common;

use std::os::fd::AsRawFd;
use std::time::Duration;

use common::*;
use uring_core::{CqeSize, CqeSlot, Error, IoPoll, Options, Ring, SetupFlags, SqPoll, sys};

/// Creates, starts, and round-trips `n` NOPs through a ring built from `opts`.
fn round_trip(opts: Options, n: u64) -> Ring {
    let mut ring = Ring::new(opts.clone()).unwrap_or_else(|e| panic!("Ring::new({opts:?}): {e}"));
    ring.start().unwrap();
    let mut got = Vec::new();
    for i in 0..n {
        if let Err(Error::QueueFull { .. }) = push_nop(&mut ring, i) {
            // Make room: submit and reap what is in flight.
            let pending = ring.sq_pending() as usize;
            ring.submit().unwrap();
            got.extend(reap(&mut ring, pending).into_iter().map(|c| c.0));
            push_nop(&mut ring, i).unwrap();
        }
    }
    let rest = n as usize - got.len();
    got.extend(reap(&mut ring, rest).into_iter().map(|c| c.0));
    got.sort();
    assert_eq!(got, (0..n).collect::<Vec<_>>(), "{opts:?}");
    ring
}

fn flags(ring: &Ring) -> SetupFlags {
    ring.features().setup_flags()
}

#[test]
fn default_is_single_issuer_deferred_no_sqarray() {
    let ring = round_trip(Options::default(), 100);
    let f = flags(&ring);
    assert!(f.contains(SetupFlags::SINGLE_ISSUER | SetupFlags::DEFER_TASKRUN | SetupFlags::NO_SQARRAY), "{f:?}");
    assert_eq!(ring.features().sq_entries(), 1024);
    assert_eq!(ring.features().cq_entries(), 2048);
    assert_eq!(ring.features().sqe_size(), 64);
    assert_eq!(ring.features().cqe_size(), CqeSize::Normal);
}

#[test]
fn presets_and_explicit_cq_size() {
    assert_eq!(round_trip(Options::small(), 4).features().sq_entries(), 64);
    assert_eq!(round_trip(Options::large(), 4).features().sq_entries(), 8192);
    let ring = round_trip(Options::small().cq_entries(4096), 4);
    assert_eq!(ring.features().cq_entries(), 4096);
    assert!(flags(&ring).contains(SetupFlags::CQSIZE));
}

#[test]
fn sq_array_can_be_kept() {
    // With the index array the queue wraps many times through the identity
    // mapping written at setup.
    let ring = round_trip(Options::default().entries(4).no_sqarray(false), 50);
    assert!(!flags(&ring).contains(SetupFlags::NO_SQARRAY));
}

#[test]
fn coop_taskrun_single_issuer_without_defer() {
    let ring = round_trip(Options::small().defer_taskrun(false), 20);
    let f = flags(&ring);
    assert!(f.contains(SetupFlags::COOP_TASKRUN | SetupFlags::TASKRUN_FLAG) && !f.contains(SetupFlags::DEFER_TASKRUN));
}

#[test]
fn sqpoll_consumes_without_enter_and_wakes_up() {
    let mut ring = round_trip(Options::small().sqpoll(SqPoll { idle: Duration::from_millis(10), cpu: None }), 10);
    assert!(flags(&ring).contains(SetupFlags::SQPOLL));
    // Let the poller fall asleep, then make sure submit wakes it.
    std::thread::sleep(Duration::from_millis(100));
    for i in 0..5 {
        push_nop(&mut ring, 100 + i).unwrap();
    }
    ring.submit().unwrap();
    let got: Vec<u64> = reap(&mut ring, 5).into_iter().map(|c| c.0).collect();
    assert_eq!(got, (100..105).collect::<Vec<_>>());
    // Pinned to CPU 0.
    let ring = round_trip(Options::small().sqpoll(SqPoll { idle: Duration::from_millis(10), cpu: Some(0) }), 3);
    assert!(flags(&ring).contains(SetupFlags::SQ_AFF));
}

/// CPU time this thread has used.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: writes one timespec.
    assert_eq!(unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) }, 0);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Pins the calling thread to `cpu`.
fn pin_to(cpu: usize) -> bool {
    // SAFETY: cpu_set_t is a plain bit array; zeroed is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` is far below the set's capacity.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: sets this thread's affinity from a valid set.
    unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) == 0 }
}

#[test]
fn wait_sq_room_wakes_a_sleeping_poller_and_returns_at_once_without_sqpoll() {
    // Without SQPOLL: the free entries, at once.
    let mut plain = ring(4);
    assert_eq!(plain.wait_sq_room().unwrap(), 4);
    for i in 0..4 {
        push_nop(&mut plain, i).unwrap();
    }
    assert_eq!(plain.wait_sq_room().unwrap(), 0, "nothing consumes a plain ring's SQ until submit");
    assert_eq!(reap(&mut plain, 4).len(), 4);

    // SQPOLL, poller asleep: the entries written are published, the poller
    // woken, and the call returns once it made room.
    let mut ring =
        round_trip(Options::default().entries(8).sqpoll(SqPoll { idle: Duration::from_millis(5), cpu: None }), 1);
    std::thread::sleep(Duration::from_millis(100));
    let mut n = 0;
    while push_nop(&mut ring, 100 + n).is_ok() {
        n += 1;
    }
    assert_eq!(n, 8, "the SQ is full");
    let cpu = thread_cpu_time();
    let room = ring.wait_sq_room().unwrap();
    assert!(room > 0, "room after the poller consumed the entries");
    assert!(thread_cpu_time() - cpu < Duration::from_millis(50), "no spinning");
    let got: Vec<u64> = reap(&mut ring, 8).into_iter().map(|c| c.0).collect();
    assert_eq!(got, (100..108).collect::<Vec<_>>());
    ring.stop();
    assert!(matches!(ring.wait_sq_room(), Err(Error::Stopped)));
}

#[test]
fn wait_sq_room_blocks_while_the_poller_cannot_run_without_spinning() {
    const TEST: &str = "wait_sq_room_blocks_while_the_poller_cannot_run_without_spinning";
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 {
        eprintln!("SKIPPED {TEST}: needs 2 CPUs (the poller is starved on one, the test waits on the other)");
        return;
    }
    // The poller on CPU 1; this thread on CPU 0; a SCHED_FIFO thread
    // keeps CPU 1 for 300 ms, so the poller cannot consume the full SQ
    // until it ends.
    if !pin_to(0) {
        eprintln!("SKIPPED {TEST}: cannot pin this thread to CPU 0");
        return;
    }
    let mut ring =
        Ring::new(Options::default().entries(8).sqpoll(SqPoll { idle: Duration::from_secs(1), cpu: Some(1) })).unwrap();
    ring.start().unwrap();
    let hog_for = Duration::from_millis(300);
    let (tx, rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let hog = std::thread::spawn(move || {
        if !pin_to(1) {
            return tx.send(Err("cannot pin a thread to CPU 1".into())).unwrap();
        }
        let param = libc::sched_param { sched_priority: 1 };
        // SAFETY: sets this thread's policy from a valid parameter.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } != 0 {
            let e = std::io::Error::last_os_error();
            return tx.send(Err(format!("SCHED_FIFO refused ({e}): needs CAP_SYS_NICE and an RT budget"))).unwrap();
        }
        tx.send(Ok(())).unwrap();
        let end = std::time::Instant::now() + hog_for;
        while std::time::Instant::now() < end {
            std::hint::spin_loop();
        }
    });
    if let Err(why) = rx.recv().unwrap() {
        hog.join().unwrap();
        eprintln!("SKIPPED {TEST}: {why}");
        return;
    }
    std::thread::sleep(Duration::from_millis(20));
    for i in 0..8 {
        push_nop(&mut ring, 200 + i).unwrap();
    }
    ring.submit().unwrap();
    if ring.sq_space_left() != 0 {
        hog.join().unwrap();
        eprintln!("SKIPPED {TEST}: the poller consumed the SQ although its CPU was taken (RT throttling off?)");
        return;
    }
    assert!(matches!(push_nop(&mut ring, 999), Err(Error::QueueFull { .. })));
    let (started, cpu) = (std::time::Instant::now(), thread_cpu_time());
    let room = ring.wait_sq_room().unwrap();
    let (waited, spent) = (started.elapsed(), thread_cpu_time() - cpu);
    hog.join().unwrap();
    assert!(room > 0, "room once the poller ran");
    assert!(waited >= Duration::from_millis(100), "blocked until the poller could run: {waited:?}");
    assert!(spent < waited / 4, "slept in the kernel, no spinning: {spent:?} of CPU in {waited:?}");
    let got: Vec<u64> = reap(&mut ring, 8).into_iter().map(|c| c.0).collect();
    assert_eq!(got, (200..208).collect::<Vec<_>>());
}

#[test]
fn shared_wait_sq_room_publishes_and_waits_too() {
    let mut ring = uring_core::SharedRing::new(
        Options::default().entries(8).sqpoll(SqPoll { idle: Duration::from_millis(5), cpu: None }),
    )
    .unwrap();
    ring.start().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let mut n = 0u64;
    // SAFETY: NOPs name no memory.
    while unsafe { ring.push(&nop(300 + n)) }.is_ok() {
        n += 1;
    }
    assert_eq!(n, 8);
    assert!(ring.wait_sq_room().unwrap() > 0);
    let mut slots = [CqeSlot::EMPTY; 8];
    let mut seen = 0;
    while seen < 8 {
        seen += ring.wait_for(&mut slots, 1, Some(Duration::from_secs(5))).unwrap();
    }
}

#[test]
fn iopoll_and_hybrid_iopoll_rings_are_created() {
    // Polled completion needs O_DIRECT on a device with poll queues, which
    // this machine may not have; what the kernel checks at setup is that
    // the flags are accepted, and NOPs still complete on an IOPOLL ring.
    for mode in [IoPoll::On, IoPoll::Hybrid] {
        let ring = round_trip(Options::small().iopoll(mode), 4);
        assert!(flags(&ring).contains(SetupFlags::IOPOLL));
        assert_eq!(flags(&ring).contains(SetupFlags::HYBRID_IOPOLL), mode == IoPoll::Hybrid);
    }
}

#[test]
fn sqe128_ring_takes_128_byte_entries() {
    let mut ring = Ring::new(Options::small().sqe128(true)).unwrap();
    ring.start().unwrap();
    assert_eq!(ring.features().sqe_size(), 128);
    for i in 0..200u64 {
        // SAFETY: a NOP names no memory.
        let sqe = unsafe { ring.next_sqe128() }.unwrap();
        sqe.sqe.opcode = sys::IORING_OP_NOP as u8;
        sqe.sqe.user_data = i;
        sqe.ext = [0xa5; 64];
        ring.submit().unwrap();
        assert_eq!(reap(&mut ring, 1)[0].0, i);
    }
    // A 64-byte ring refuses 128-byte entries.
    let mut small = common::ring(8);
    // SAFETY: nothing is written.
    assert!(matches!(unsafe { small.next_sqe128() }, Err(Error::Unsupported { .. })));
}

#[test]
fn submit_all_and_clamp() {
    let ring = round_trip(Options::small().submit_all(true), 4);
    assert!(flags(&ring).contains(SetupFlags::SUBMIT_ALL));
    let ring = round_trip(Options::default().entries(65536).cq_entries(1 << 20).clamp(true), 4);
    assert_eq!(ring.features().sq_entries(), 32768, "clamped to IORING_MAX_ENTRIES");
    assert_eq!(ring.features().cq_entries(), 65536, "clamped to IORING_MAX_CQ_ENTRIES");
}

#[test]
fn attach_to_an_existing_work_queue() {
    let first = ring(8);
    let ring = round_trip(Options::small().attach_wq(first.as_raw_fd()), 4);
    assert!(flags(&ring).contains(SetupFlags::ATTACH_WQ));
    // A non-ring fd is refused by the kernel.
    let file = std::fs::File::open("/proc/self/status").unwrap();
    let e = Ring::new(Options::small().attach_wq(file.as_raw_fd())).unwrap_err();
    assert!(e.raw_os_error().is_some() || matches!(e, Error::Unsupported { .. }), "{e}");
}

#[test]
fn no_mmap_rings_use_library_memory() {
    for opts in [
        Options::small().no_mmap(true),
        Options::large().no_mmap(true).cqe_size(CqeSize::Big),
        Options::default().entries(16).no_mmap(true).no_sqarray(false).sqe128(true),
    ] {
        let ring = round_trip(opts.clone(), 300);
        assert!(flags(&ring).contains(SetupFlags::NO_MMAP), "{opts:?}");
    }
}

#[test]
fn registered_ring_fd_at_start() {
    let mut ring = round_trip(Options::small().register_ring_fd(true), 50);
    ring.stop();
    assert_eq!(ring.as_raw_fd(), -1);
}

#[test]
fn flags_newer_than_the_kernel_are_unsupported_by_name() {
    // SQE_MIXED arrived after 6.18; on a kernel that knows it this test
    // checks it is accepted instead.
    let (flag, name) = (SetupFlags::SQE_MIXED, "IORING_SETUP_SQE_MIXED");
    let supported = uring_core::probe_setup_flag(flag.bits()) == Some(true);
    match Ring::new(Options::small().extra_flags(flag)) {
        Ok(_) => assert!(supported, "{name} accepted although the probe says no"),
        Err(Error::Unsupported { what, release, .. }) => {
            assert!(!supported);
            assert_eq!(what, name);
            assert_eq!(release, uring_core::kernel_release());
            println!("{name}: unsupported on {release}, reported by name");
        }
        Err(e) => panic!("{name}: expected Unsupported, got {e}"),
    }
    // Flags the options own are refused in extra_flags.
    assert!(matches!(Ring::new(Options::small().extra_flags(SetupFlags::SQPOLL)), Err(Error::InvalidArgument(_))));
}

#[test]
fn sq_rewind_is_refused_by_name_whatever_the_kernel() {
    // 7.x accepts SQ_REWIND, but the SQ code does not rewind: refused on
    // every kernel, before the setup call, for both ring types.
    let ring = Ring::new(Options::small().extra_flags(SetupFlags::SQ_REWIND));
    assert!(
        matches!(&ring, Err(Error::InvalidArgument(m)) if m.contains("IORING_SETUP_SQ_REWIND")),
        "{:?}",
        ring.map(|_| ())
    );
    let shared = uring_core::SharedRing::new(Options::small().extra_flags(SetupFlags::SQ_REWIND));
    assert!(
        matches!(&shared, Err(Error::InvalidArgument(m)) if m.contains("IORING_SETUP_SQ_REWIND")),
        "{:?}",
        shared.map(|_| ())
    );
}

#[test]
fn bad_options_fail_before_any_syscall() {
    for (opts, needle) in [
        (Options::default().entries(0), "at least 1"),
        (Options::default().entries(3), "power of two"),
        (Options::default().entries(1 << 16), "maximum"),
        (Options::default().entries(64).cq_entries(16), "at least entries"),
        (Options::default().sqpoll(SqPoll::default()).defer_taskrun(true), "sqpoll"),
    ] {
        match Ring::new(opts.clone()) {
            Err(Error::InvalidArgument(m)) => assert!(m.contains(needle), "{opts:?}: {m}"),
            other => panic!("{opts:?}: expected InvalidArgument, got {other:?}"),
        }
    }
}

#[test]
fn features_decode_the_probe() {
    let ring = ring(8);
    let f = ring.features();
    assert!(f.meets_baseline() || uring_core::parse_release(f.kernel_release()).is_none(), "{f:?}");
    assert!(f.last_op() >= sys::IORING_OP_PIPE as u8);
    for op in [sys::IORING_OP_NOP, sys::IORING_OP_READ, sys::IORING_OP_RECV_ZC, sys::IORING_OP_PIPE] {
        assert!(f.supports(op as u8));
        f.require(op as u8).unwrap();
    }
    // Whatever the kernel lacks is Unsupported by name, consistently with last_op.
    for (op, name, has) in f.opcodes() {
        assert_eq!(has, op <= f.last_op(), "{name}");
        if !has {
            match f.require(op) {
                Err(Error::Unsupported { what, .. }) => assert_eq!(what, name),
                other => panic!("{name}: {other:?}"),
            }
        }
    }
    assert!(f.has(uring_core::FeatureFlags::NODROP | uring_core::FeatureFlags::EXT_ARG));
}

#[test]
fn cq_overflow_loses_nothing() {
    // A CQ of 8 entries, thousands of completions posted before any is
    // reaped: the kernel buffers the overflow (IORING_FEAT_NODROP) and the
    // library flushes it, so every completion arrives exactly once.
    let mut ring = Ring::new(Options::default().entries(64).cq_entries(64)).unwrap();
    ring.start().unwrap();
    const TOTAL: u64 = 20_000;
    let mut next = 0u64;
    while next < TOTAL {
        while next < TOTAL {
            match push_nop(&mut ring, next) {
                Ok(()) => next += 1,
                Err(Error::QueueFull { .. }) => break,
                Err(e) => panic!("{e}"),
            }
        }
        ring.submit().unwrap();
    }
    assert_eq!(ring.cq_ready(), 64, "the CQ is full and the rest sits in the kernel's overflow list");
    let mut seen = vec![false; TOTAL as usize];
    let mut slots = [CqeSlot::EMPTY; 50];
    let mut count = 0;
    while count < TOTAL {
        let r = match ring.reap(&mut slots) {
            Ok(r) => r,
            Err(Error::WouldBlock) => panic!("stalled after {count} of {TOTAL}"),
            Err(e) => panic!("{e}"),
        };
        for c in r.iter() {
            let i = c.user_data() as usize;
            assert!(!seen[i], "completion {i} seen twice");
            seen[i] = true;
            count += 1;
        }
    }
    assert!(seen.iter().all(|s| *s));
    assert_eq!(ring.cq_dropped(), 0);
    assert!(matches!(ring.reap(&mut slots), Err(Error::WouldBlock)));
}
