//! [`SigMask`]: the signal mask a blocking wait runs under
//! ([`WaitArgs::sigmask`](crate::WaitArgs::sigmask)).

use std::fmt;

/// A set of signals: the mask the thread has *during* a wait, as
/// `ppoll(2)`'s mask, installed and restored by the kernel atomically
/// with the wait. Unblock a signal only for the wait (the rest of the time
/// it stays blocked, so it can arrive only while waiting), or block one
/// for the wait alone.
#[derive(Clone, Copy)]
pub struct SigMask(libc::sigset_t);

/// The bytes of a signal set the kernel reads (`_NSIG / 8`).
pub(crate) const KERNEL_SIGSET_BYTES: u32 = 8;

impl SigMask {
    /// No signal blocked.
    pub fn empty() -> Self {
        // SAFETY: sigemptyset initializes the set it is given.
        let mut s: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `s` is a valid sigset_t.
        unsafe { libc::sigemptyset(&mut s) };
        SigMask(s)
    }

    /// Every signal blocked (the kernel never blocks `SIGKILL` and
    /// `SIGSTOP`).
    pub fn full() -> Self {
        let mut m = Self::empty();
        // SAFETY: `m.0` is a valid sigset_t.
        unsafe { libc::sigfillset(&mut m.0) };
        m
    }

    /// The calling thread's mask now.
    ///
    /// # Errors
    ///
    /// The errno of `pthread_sigmask`.
    pub fn current() -> std::io::Result<Self> {
        let mut m = Self::empty();
        // SAFETY: queries only (no new set); writes one sigset_t.
        let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut m.0) };
        if r == 0 { Ok(m) } else { Err(std::io::Error::from_raw_os_error(r)) }
    }

    /// With `sig` added (ignored outside 1..=64).
    pub fn with(mut self, sig: i32) -> Self {
        // SAFETY: `self.0` is a valid sigset_t; an invalid signal is EINVAL.
        unsafe { libc::sigaddset(&mut self.0, sig) };
        self
    }

    /// With `sig` removed.
    pub fn without(mut self, sig: i32) -> Self {
        // SAFETY: as in `with`.
        unsafe { libc::sigdelset(&mut self.0, sig) };
        self
    }

    /// Whether `sig` is in the set.
    pub fn contains(&self, sig: i32) -> bool {
        // SAFETY: `self.0` is a valid sigset_t.
        unsafe { libc::sigismember(&self.0, sig) == 1 }
    }

    /// The set as libc's type.
    pub fn as_raw(&self) -> &libc::sigset_t {
        &self.0
    }
}

impl From<libc::sigset_t> for SigMask {
    fn from(s: libc::sigset_t) -> Self {
        SigMask(s)
    }
}

impl PartialEq for SigMask {
    fn eq(&self, other: &Self) -> bool {
        (1..=64).all(|s| self.contains(s) == other.contains(s))
    }
}

impl Eq for SigMask {}

impl fmt::Debug for SigMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries((1..=64).filter(|&s| self.contains(s))).finish()
    }
}
