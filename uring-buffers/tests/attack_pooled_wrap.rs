//! Attack: a pooled context's generation (32 bits, +2 per use) comes round
//! again after 2^31 acquire/release cycles; the pools then rely on the CQE
//! position (`seq >= queued_at`) to refuse a CQE of the slot's earlier use.
//! A forgotten zero-copy pass keeps `cq_position` at that old CQE, so the
//! position check passes and the old CQE "proves" a selection from the
//! group the new entry names. Slow (2^31 cycles): run with uring-core
//! optimised, e.g.
//! `cargo test -p uring-buffers --test attack_pooled_wrap --config 'profile.dev.package.uring-core.opt-level=3' -- --ignored`.

mod common;

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;

use common::{reap, ring};
use uring_buffers::{BufRing, BufRingConfig};
use uring_ops::RingOps;
use uring_ops::net::RecvSelect;

#[test]
#[ignore = "2^31 pool cycles: run with uring-core optimised"]
fn a_wrapped_generation_and_a_forgotten_pass_prove_the_wrong_group() {
    let mut ring = ring();
    let mut a = BufRing::register(&mut ring, BufRingConfig::new(31, 4, 64)).unwrap();
    let mut b = BufRing::register(&mut ring, BufRingConfig::new(32, 4, 64)).unwrap();
    let (mut tx1, rx1) = UnixStream::pair().unwrap();
    let (mut tx2, rx2) = UnixStream::pair().unwrap();
    tx1.write_all(b"to group 31").unwrap();
    let ctx = ring.pools_mut().acquire_indirect().unwrap();
    ring.push_op(ctx, RecvSelect::new(rx1.as_raw_fd(), 31)).unwrap();
    ring.submit_and_wait(1).unwrap();
    let first = {
        let mut pass = ring.completions().unwrap();
        let c = pass.next().expect("the receive");
        let sel = c.buffer_selection().expect("a selection");
        assert_eq!(sel.group(), 31);
        let buf = a.take_selection(&sel).unwrap();
        std::mem::forget(pass);
        buf
    };
    assert_eq!(a.bytes(&first), b"to group 31");
    ring.pools_mut().release(ctx).unwrap();
    // Come round to the same slot and generation.
    let mut again = ring.pools_mut().acquire_indirect().unwrap();
    let mut n: u64 = 0;
    while again != ctx {
        ring.pools_mut().release(again).unwrap();
        again = ring.pools_mut().acquire_indirect().unwrap();
        n += 1;
        assert!(n < (1u64 << 32), "no wrap");
    }
    // The same context now names a receive from group 32 (nothing to read
    // yet), queued at the forgotten pass's position.
    ring.push_op(again, RecvSelect::new(rx2.as_raw_fd(), 32)).unwrap();
    ring.submit().unwrap();
    let taken = {
        let mut pass = ring.completions().unwrap();
        // (None: the forgotten pass consumed it; nothing to replay.)
        pass.next().and_then(|c| c.buffer_selection().map(|sel| (sel.group(), b.take_selection(&sel))))
    };
    let Some((32, Ok(buf))) = taken else {
        // Refused: sound.
        tx2.write_all(b"x").unwrap();
        let _ = reap(&mut ring, 1);
        return;
    };
    let held = b.bytes(&buf).as_ptr();
    let len = b.bytes(&buf).len();
    // Buffer 0 of group 32 is still published: the second receive fills it.
    tx2.write_all(b"KERNEL WROTE").unwrap();
    let c = reap(&mut ring, 1)[0];
    // SAFETY: only reached when the library wrongly lent the buffer; the
    // bytes are read (volatile) to show what the kernel wrote under it.
    let seen: Vec<u8> = (0..12.min(len)).map(|i| unsafe { std::ptr::read_volatile(held.add(i)) }).collect();
    panic!(
        "after {n} cycles an old CQE of group 31 proved a selection of group 32; b lent out buffer {} (len {len}), \
         which the second receive (res {}) then filled: {:?}",
        buf.bid(),
        c.cqe().res(),
        String::from_utf8_lossy(&seen)
    );
}
