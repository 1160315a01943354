//! Resource tags on the file table (`IORING_RSRC_TAGS`), against the
//! kernel: a replaced file's tag CQE (`user_data` = tag, `res` 0, no
//! flags) comes only after the last request using the old file has
//! completed; unregistering posts the rest; tags a layer would take for
//! its own CQEs are refused before any syscall.

mod common;

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use common::*;
use uring_core::{CqeSlot, Error, Layer, LayerData, ResourceTag, Ring, Sqe, SqeFlags, is_layer_tag, sys};

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: fresh fds we own.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// CQEs that arrive within `ms`.
fn within(ring: &mut Ring, ms: u64) -> Vec<(u64, i32, u32)> {
    let mut slots = [CqeSlot::EMPTY; 8];
    match ring.wait_for(&mut slots, 1, Some(Duration::from_millis(ms))) {
        Ok(r) => r.iter().map(|c| (c.user_data(), c.res(), c.raw_flags())).collect(),
        Err(Error::WouldBlock) => Vec::new(),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn a_replaced_files_tag_comes_after_its_last_read_completed() {
    let mut ring = ring(8);
    let (r1, w1) = pipe();
    let (r2, _w2) = pipe();
    ring.register().files_tagged(&[r1.as_raw_fd(), -1], &[0x7a60, 0]).unwrap();
    // A read on fixed slot 0 (the first pipe), which waits for data.
    let mut buf = [0u8; 16];
    let mut sqe = Sqe::new(sys::IORING_OP_READ as u8);
    sqe.fd = 0;
    sqe.flags = SqeFlags::FIXED_FILE.bits();
    sqe.set_addr(buf.as_mut_ptr() as u64);
    sqe.len = buf.len() as u32;
    sqe.set_off(u64::MAX);
    sqe.user_data = 0x1111;
    // SAFETY: `buf` outlives the read: the test reaps its CQE below.
    unsafe { ring.push(&sqe) }.unwrap();
    ring.submit().unwrap();
    assert!(within(&mut ring, 100).is_empty(), "the read waits");
    // Replace slot 0 with the second pipe (tagged too): the first pipe's
    // tag must wait for the read.
    assert_eq!(ring.register().files_update_tagged(0, &[r2.as_raw_fd()], &[0x7a61]).unwrap(), 1);
    assert!(within(&mut ring, 300).is_empty(), "no tag while the read holds the old file");
    File::from(w1).write_all(b"hello").unwrap();
    let mut got = reap(&mut ring, 2);
    assert_eq!(got.remove(0), (0x1111, 5, 0), "the read completes first");
    assert_eq!(got.remove(0), (0x7a60, 0, 0), "then the old file's tag: user_data = tag, res 0, no flags");
    assert_eq!(&buf[..5], b"hello");
    // Unregistering the table releases the second pipe: its tag.
    ring.register().unregister_files().unwrap();
    assert_eq!(reap(&mut ring, 1), vec![(0x7a61, 0, 0)]);
    // ResourceTag recognizes a tag CQE's shape.
    ring.register().files_tagged(&[r1.as_raw_fd()], &[0x7a62]).unwrap();
    ring.register().unregister_files().unwrap();
    let mut slots = [CqeSlot::EMPTY; 1];
    ring.wait_for(&mut slots, 1, Some(Duration::from_secs(5))).unwrap();
    assert_eq!(ResourceTag::of(&slots[0].cqe()), Some(ResourceTag(0x7a62)));
}

#[test]
fn tags_that_a_layer_would_take_for_its_own_are_refused() {
    let ring = ring(8);
    let (r, _w) = pipe();
    // Every layer value (mode bits 3), of a known layer or not, is refused;
    // every other value is the caller's to use.
    for mode in 0..4u64 {
        for id in (0..=255u64).step_by(if mode == 3 { 1 } else { 51 }) {
            let user_data = mode | (id << 3) | (5 << 11);
            let res = ring.register().files_tagged(&[r.as_raw_fd()], &[user_data]);
            assert_eq!(is_layer_tag(user_data), mode == 3);
            if mode == 3 {
                assert!(matches!(res, Err(Error::InvalidArgument(_))), "layer value {user_data:#x} accepted: {res:?}");
            } else {
                res.unwrap();
                ring.register().unregister_files().unwrap();
            }
        }
    }
    ring.register().files_sparse(2).unwrap();
    for layer in Layer::ALL {
        for flag in [false, true] {
            let bad = LayerData::new(layer, flag, 1).unwrap().raw();
            let res = ring.register().files_update_tagged(0, &[r.as_raw_fd()], &[bad]);
            assert!(matches!(res, Err(Error::InvalidArgument(_))), "{layer:?} value {bad:#x} accepted: {res:?}");
        }
    }
    assert!(matches!(ring.register().files_update_tagged(0, &[r.as_raw_fd()], &[]), Err(Error::InvalidArgument(_))));
    // The kernel refuses a tag on an empty slot.
    assert!(ring.register().files_update_tagged(0, &[-1], &[9]).is_err());
}
