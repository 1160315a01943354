//! Waits an event loop needs, against the kernel: a signal mask installed
//! only for the wait (a signal unblocked for the wait interrupts it; one
//! blocked for the wait does not, and is delivered after), and absolute
//! deadlines (`IORING_ENTER_ABS_TIMER`) on `CLOCK_MONOTONIC` and
//! `CLOCK_BOOTTIME`.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use uring_core::{CqeSlot, Error, SigMask, WaitArgs};

static USR1: AtomicBool = AtomicBool::new(false);
static USR2: AtomicBool = AtomicBool::new(false);

extern "C" fn on_usr1(_: libc::c_int) {
    USR1.store(true, Ordering::SeqCst);
}

extern "C" fn on_usr2(_: libc::c_int) {
    USR2.store(true, Ordering::SeqCst);
}

fn handle(sig: i32, f: extern "C" fn(libc::c_int)) {
    // SAFETY: a zeroed sigaction with a handler that only stores an atomic
    // (async-signal-safe); no SA_RESTART, so a wait is interrupted.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = f as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(libc::sigaction(sig, &sa, std::ptr::null_mut()), 0);
    }
}

fn set_thread_mask(m: &SigMask) {
    // SAFETY: installs a valid set for this thread.
    assert_eq!(unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, m.as_raw(), std::ptr::null_mut()) }, 0);
}

/// Sends `sig` to this thread after `after`.
fn signal_me_later(sig: i32, after: Duration) -> std::thread::JoinHandle<()> {
    // SAFETY: pthread_self has no preconditions.
    let me = unsafe { libc::pthread_self() } as usize;
    std::thread::spawn(move || {
        std::thread::sleep(after);
        // SAFETY: the waiting thread is alive until it joins this one.
        unsafe { libc::pthread_kill(me as libc::pthread_t, sig) };
    })
}

#[test]
fn a_signal_unblocked_only_for_the_wait_interrupts_it() {
    handle(libc::SIGUSR1, on_usr1);
    let normal = SigMask::current().unwrap().with(libc::SIGUSR1);
    set_thread_mask(&normal);
    let mut ring = ring(4);
    let mut slots = [CqeSlot::EMPTY; 1];
    let sender = signal_me_later(libc::SIGUSR1, Duration::from_millis(100));
    let t = Instant::now();
    let args = WaitArgs {
        min: 1,
        timeout: Some(Duration::from_secs(5)),
        sigmask: Some(normal.without(libc::SIGUSR1)),
        ..WaitArgs::default()
    };
    let r = ring.wait_with(&mut slots, &args).map(|r| r.len());
    sender.join().unwrap();
    match r {
        Err(Error::Io { source, .. }) => assert_eq!(source.raw_os_error(), Some(libc::EINTR)),
        other => panic!("expected EINTR, got {other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(3), "interrupted, not timed out: {:?}", t.elapsed());
    assert!(USR1.load(Ordering::SeqCst), "the handler ran during the wait");
    assert!(SigMask::current().unwrap().contains(libc::SIGUSR1), "the thread's own mask is back");
    set_thread_mask(&normal.without(libc::SIGUSR1));
}

#[test]
fn a_signal_blocked_only_for_the_wait_waits_until_after_it() {
    handle(libc::SIGUSR2, on_usr2);
    let normal = SigMask::current().unwrap().without(libc::SIGUSR2);
    set_thread_mask(&normal);
    let mut ring = ring(4);
    let mut slots = [CqeSlot::EMPTY; 1];
    let sender = signal_me_later(libc::SIGUSR2, Duration::from_millis(50));
    let t = Instant::now();
    let args = WaitArgs {
        min: 1,
        timeout: Some(Duration::from_millis(400)),
        sigmask: Some(normal.with(libc::SIGUSR2)),
        ..WaitArgs::default()
    };
    let r = ring.wait_with(&mut slots, &args).map(|r| r.len());
    let waited = t.elapsed();
    sender.join().unwrap();
    assert!(matches!(r, Err(Error::WouldBlock)), "the wait runs to its timeout: {r:?}");
    assert!(waited >= Duration::from_millis(380), "not interrupted: {waited:?}");
    // Pending during the wait, delivered once the thread's mask is back
    // (on the way out of the syscall).
    let deadline = Instant::now() + Duration::from_secs(2);
    while !USR2.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "SIGUSR2 never delivered");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn now(clock: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: writes one timespec.
    assert_eq!(unsafe { libc::clock_gettime(clock, &mut ts) }, 0);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[test]
fn absolute_deadlines_on_the_monotonic_and_boottime_clocks() {
    let mut ring = ring(4);
    let mut slots = [CqeSlot::EMPTY; 1];
    for clock in [libc::CLOCK_MONOTONIC, libc::CLOCK_BOOTTIME] {
        ring.register().clock(clock).unwrap();
        let deadline = now(clock) + Duration::from_millis(200);
        let t = Instant::now();
        let r = ring.wait_with(&mut slots, &WaitArgs { min: 1, deadline: Some(deadline), ..WaitArgs::default() });
        assert!(matches!(r, Err(Error::WouldBlock)), "clock {clock}: {:?}", r.map(|r| r.len()));
        let waited = t.elapsed();
        assert!(waited >= Duration::from_millis(180) && waited < Duration::from_secs(3), "clock {clock}: {waited:?}");
        // A deadline already past returns at once.
        let t = Instant::now();
        let past = now(clock) - Duration::from_millis(500);
        let r = ring.wait_with(&mut slots, &WaitArgs { min: 1, deadline: Some(past), ..WaitArgs::default() });
        assert!(matches!(r, Err(Error::WouldBlock)));
        assert!(t.elapsed() < Duration::from_millis(150), "clock {clock}: {:?}", t.elapsed());
        // A completion before the deadline is returned.
        push_nop(&mut ring, 9).unwrap();
        let far = now(clock) + Duration::from_secs(30);
        let r = ring.wait_with(&mut slots, &WaitArgs { min: 1, deadline: Some(far), ..WaitArgs::default() });
        assert_eq!(r.unwrap().len(), 1);
        assert_eq!(slots[0].cqe().user_data(), 9);
    }
    let both = WaitArgs {
        min: 1,
        timeout: Some(Duration::from_millis(1)),
        deadline: Some(Duration::from_secs(1)),
        ..WaitArgs::default()
    };
    assert!(matches!(ring.wait_with(&mut slots, &both), Err(Error::InvalidArgument(_))));
}

static WINCH: AtomicBool = AtomicBool::new(false);

extern "C" fn on_winch(_: libc::c_int) {
    WINCH.store(true, Ordering::SeqCst);
}

#[test]
fn registered_wait_slots_carry_timeouts_deadlines_and_signal_masks() {
    use uring_core::{Options, RegWait, Ring, WaitRegion};
    let mut ring = Ring::new(Options::default().entries(4)).unwrap();
    let mut region = match WaitRegion::register(&mut ring, 3) {
        Ok(r) => r,
        Err(Error::Io { source, .. }) if source.raw_os_error() == Some(libc::EINVAL) => {
            println!("SKIPPED: IORING_REGISTER_MEM_REGION for wait arguments needs Linux 6.13");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    ring.start().unwrap();
    assert!(matches!(WaitRegion::register(&mut ring, 1), Err(Error::AlreadyEnabled { .. })), "only before start");
    region.set(0, RegWait { timeout: Some(Duration::from_millis(100)), ..RegWait::default() }).unwrap();
    region.set(1, RegWait { timeout: Some(Duration::from_millis(300)), ..RegWait::default() }).unwrap();
    let mut slots = [CqeSlot::EMPTY; 1];
    for (slot, ms) in [(0, 100), (1, 300)] {
        let t = Instant::now();
        let r = ring.wait_registered(&mut slots, 1, &region, slot, false);
        assert!(matches!(r, Err(Error::WouldBlock)), "slot {slot}");
        let waited = t.elapsed();
        assert!(waited >= Duration::from_millis(ms - 20) && waited < Duration::from_secs(3), "slot {slot}: {waited:?}");
    }
    // A completion ends the wait at once.
    push_nop(&mut ring, 5).unwrap();
    assert_eq!(ring.wait_registered(&mut slots, 1, &region, 1, false).unwrap().len(), 1);
    // An absolute deadline on the ring's clock.
    region
        .set(
            2,
            RegWait { timeout: Some(now(libc::CLOCK_MONOTONIC) + Duration::from_millis(150)), ..RegWait::default() },
        )
        .unwrap();
    let t = Instant::now();
    assert!(matches!(ring.wait_registered(&mut slots, 1, &region, 2, true), Err(Error::WouldBlock)));
    assert!(t.elapsed() >= Duration::from_millis(130), "{:?}", t.elapsed());
    // A signal mask kept in the region: SIGWINCH, blocked otherwise,
    // interrupts the wait.
    handle(libc::SIGWINCH, on_winch);
    let normal = SigMask::current().unwrap().with(libc::SIGWINCH);
    set_thread_mask(&normal);
    region
        .set(
            0,
            RegWait {
                timeout: Some(Duration::from_secs(5)),
                sigmask: Some(normal.without(libc::SIGWINCH)),
                ..RegWait::default()
            },
        )
        .unwrap();
    let sender = signal_me_later(libc::SIGWINCH, Duration::from_millis(100));
    let t = Instant::now();
    let r = ring.wait_registered(&mut slots, 1, &region, 0, false).map(|r| r.len());
    sender.join().unwrap();
    match r {
        Err(Error::Io { source, .. }) => assert_eq!(source.raw_os_error(), Some(libc::EINTR)),
        other => panic!("expected EINTR, got {other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(3));
    assert!(WINCH.load(Ordering::SeqCst));
    set_thread_mask(&normal.without(libc::SIGWINCH));
    // Slots outside the region, and another ring's region, are refused.
    assert!(region.set(3, RegWait::default()).is_err());
    assert!(matches!(ring.wait_registered(&mut slots, 1, &region, 3, false), Err(Error::InvalidArgument(_))));
    let mut other = Ring::new(Options::default().entries(4)).unwrap();
    other.start().unwrap();
    assert!(matches!(other.wait_registered(&mut slots, 1, &region, 0, false), Err(Error::InvalidArgument(_))));
}
