//! Attack: as attack_fixed_replay, for a chain's step slots (above the
//! table's length, reused from chain to chain).

mod common;

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;

use common::ring;
use uring_buffers::FixedBuffers;

#[test]
fn a_forgotten_pass_completes_the_next_chain_on_the_same_step_slot() {
    let mut ring = ring();
    let mut bufs = FixedBuffers::register(&mut ring, 2, 64).unwrap();
    let (mut a, b) = UnixStream::pair().unwrap();
    a.write_all(b"first").unwrap();
    bufs.chain(0).read(b.as_raw_fd(), 0..64, 0).queue(&mut ring).unwrap();
    ring.submit_and_wait(1).unwrap();
    {
        let mut pass = ring.completions().unwrap();
        let c = pass.next().expect("chain 1's CQE");
        let done = bufs.handle_cqe(&c).expect("chain 1's own CQE");
        assert!(done.free, "{done:?}");
        std::mem::forget(pass);
    }
    bufs.chain(0).read(b.as_raw_fd(), 0..64, 0).queue(&mut ring).unwrap();
    ring.submit().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert!(bufs.buffer_mut(0).is_err(), "chain 2 owns the buffer");
    let replayed = {
        let mut pass = ring.completions().unwrap();
        // (None: the forgotten pass consumed it; nothing to replay.)
        pass.next().and_then(|c| bufs.handle_cqe(&c).map(|d| d.free))
    };
    if replayed != Some(true) {
        a.write_all(b"x").unwrap();
        let _ = common::reap(&mut ring, 1);
        return;
    }
    let slice = bufs.buffer_mut(0).expect("lent writable after the replay");
    slice.fill(0);
    a.write_all(b"KERNEL WROTE").unwrap();
    let real = common::reap(&mut ring, 1)[0];
    // SAFETY: only reached when the library wrongly lent the buffer; the
    // bytes are read (volatile) to show what the kernel wrote under it.
    let seen: Vec<u8> = (0..12).map(|i| unsafe { std::ptr::read_volatile(slice.as_ptr().add(i)) }).collect();
    panic!(
        "buffer_mut(0) was lent after chain 1's CQE was replayed into chain 2's step slot; chain 2's read (res {}) \
         then wrote {:?} under the &mut slice",
        real.cqe().res(),
        String::from_utf8_lossy(&seen)
    );
}
