//! [`Keep`]: storage tied to one SQ slot, for memory the kernel reads when
//! it consumes the entry.
//!
//! Many operations name memory that the kernel copies while it prepares
//! the request, at submission: the timespec of a timeout, the sockaddr of
//! `connect`, `bind` and `sendto`, the paths of `openat` and `renameat`,
//! the `open_how` of `openat2`. If the library holds that memory until the
//! kernel has consumed the SQE, the operation is safe to submit. A slot's
//! `Keep` is exactly that long-lived: the ring hands it out with the SQE
//! ([`Ring::next_sqe_keep`](crate::Ring::next_sqe_keep)) and clears it only
//! when the same SQ slot is acquired again, which cannot happen before the
//! kernel's SQ head has passed the entry (on SQPOLL rings too: the head is
//! what the poller thread publishes after preparing).
//!
//! It is **not** valid until completion: memory the kernel reads or writes
//! while the operation runs (data buffers, `statx` output, iovec targets)
//! must not be put here.

use std::any::Any;
use std::fmt;
use std::mem::{align_of, size_of};

/// Bytes of inline storage per slot: a `sockaddr_storage` fits.
pub const KEEP_INLINE: usize = 128;

/// Storage for one SQ slot, for memory the kernel reads when it consumes
/// the entry: timespecs, sockaddrs, paths, `open_how`.
///
/// The ring hands each slot's `Keep` out with the SQE
/// ([`Ring::next_sqe_keep`](crate::Ring::next_sqe_keep)) and clears it only
/// when the same SQ slot is acquired again, which cannot happen before the
/// kernel's SQ head has passed the entry (on SQPOLL rings too). So what is
/// put here lives exactly as long as the kernel may read it at submission.
/// It is **not** valid until completion: memory the kernel reads or writes
/// while the operation runs (data buffers, `statx` output) must not be put
/// here.
///
/// Two compartments: [`inline`](Self::inline) (128 bytes, 16-byte aligned,
/// no allocation) for small `Copy` values such as timespecs, sockaddrs and
/// `open_how`, and [`hold`](Self::hold) (one boxed value) for anything
/// else, such as path strings.
#[repr(C, align(16))]
pub struct Keep {
    inline: [u8; KEEP_INLINE],
    held: Option<Box<dyn Any + Send>>,
}

impl Default for Keep {
    fn default() -> Self {
        Keep::new()
    }
}

impl fmt::Debug for Keep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keep").field("held", &self.held.is_some()).finish_non_exhaustive()
    }
}

impl Keep {
    /// Empty storage. Rings own one per SQ slot; a caller that prepares
    /// SQEs by hand (to [`push`](crate::Ring::push) them) can make its own
    /// and must keep it in place until the entry is submitted.
    pub const fn new() -> Self {
        Keep { inline: [0; KEEP_INLINE], held: None }
    }

    /// Moves `value` into the inline compartment and returns it, in place.
    /// Its address is stable for as long as the `Keep` is not moved (a
    /// ring's `Keep`s never move). Overwrites what was there before.
    ///
    /// `T` must fit in 128 bytes with at most 16-byte alignment; that is
    /// checked at compile time.
    #[inline]
    pub fn inline<T: Copy + 'static>(&mut self, value: T) -> &mut T {
        const {
            assert!(size_of::<T>() <= KEEP_INLINE, "Keep::inline: value larger than 128 bytes");
            assert!(align_of::<T>() <= 16, "Keep::inline: alignment above 16");
        }
        let p = self.inline.as_mut_ptr().cast::<T>();
        // SAFETY: the buffer is 128 bytes and 16-byte aligned (the struct's
        // `align(16)` and `inline` at offset 0), which the const assertion
        // proves enough for `T`; `T: Copy` has no drop glue, so overwriting
        // an earlier value leaks nothing; the returned borrow is tied to
        // `&mut self`.
        unsafe {
            p.write(value);
            &mut *p
        }
    }

    /// Moves `value` to the heap and holds it, returning it in place. Its
    /// address is stable until the `Keep` is cleared or reused, even if the
    /// `Keep` moves. Drops what was held before.
    pub fn hold<T: Send + 'static>(&mut self, value: T) -> &mut T {
        let held = self.held.insert(Box::new(value));
        match (**held).downcast_mut::<T>() {
            Some(v) => v,
            None => unreachable!("a Box<T> just stored downcasts to T"),
        }
    }

    /// Drops what is held (the inline bytes need no dropping).
    #[inline]
    pub fn clear(&mut self) {
        if self.held.is_some() {
            self.held = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_values_are_aligned_and_round_trip() {
        let mut k = Keep::new();
        let ts = k.inline(libc::timespec { tv_sec: 3, tv_nsec: 4 });
        assert_eq!((ts.tv_sec, ts.tv_nsec), (3, 4));
        assert_eq!((ts as *mut libc::timespec as usize) % 16, 0);
        let big = k.inline([7u8; 128]);
        assert_eq!(big[127], 7);
    }

    #[test]
    fn held_values_keep_their_address_when_the_keep_moves() {
        let mut k = Box::new(Keep::new());
        let p = k.hold(std::ffi::CString::new("/tmp/x").unwrap()).as_ptr();
        let moved = *k;
        let _ = &moved;
        // SAFETY: the CString is still held by `moved`.
        assert_eq!(unsafe { std::ffi::CStr::from_ptr(p) }.to_str().unwrap(), "/tmp/x");
    }

    #[test]
    fn clear_drops_the_held_value() {
        let rc = std::sync::Arc::new(());
        let mut k = Keep::new();
        k.hold(rc.clone());
        assert_eq!(std::sync::Arc::strong_count(&rc), 2);
        k.clear();
        assert_eq!(std::sync::Arc::strong_count(&rc), 1);
    }
}
