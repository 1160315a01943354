//! Attack: FixedBuffers reuses each buffer's own slot (the same `user_data`)
//! for every plain operation on it, and refuses replays by position. A
//! `mem::forget`-ten zero-copy pass keeps `Ring::cq_position` from moving
//! past its CQEs, so the next operation on the buffer notes a `queued_at`
//! equal to the old CQE's `seq`, and the old CQE, shown again, completes it.

mod common;

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;

use common::ring;
use uring_buffers::FixedBuffers;

#[test]
fn a_forgotten_pass_completes_the_next_read_into_the_same_buffer() {
    let mut ring = ring();
    let mut bufs = FixedBuffers::register(&mut ring, 2, 64).unwrap();
    let (mut a, b) = UnixStream::pair().unwrap();
    a.write_all(b"first").unwrap();

    // Read 1 into buffer 0 completes; its CQE is handled in a forgotten pass.
    let id1 = bufs.read_fixed(&mut ring, b.as_raw_fd(), 0, 0..64, 0).unwrap();
    ring.submit_and_wait(1).unwrap();
    {
        let mut pass = ring.completions().unwrap();
        let c = pass.next().expect("read 1's CQE");
        let done = bufs.handle_cqe(&c).expect("read 1's own CQE");
        assert_eq!((done.id, done.res, done.free), (id1, 5, true));
        std::mem::forget(pass);
    }
    assert_eq!(&bufs.buffer(0).unwrap()[..5], b"first");

    // Read 2 into buffer 0: nothing to read yet, so it stays in flight.
    let id2 = bufs.read_fixed(&mut ring, b.as_raw_fd(), 0, 0..64, 0).unwrap();
    ring.submit().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert!(bufs.buffer_mut(0).is_err(), "read 2 owns the buffer");

    // The next pass shows read 1's CQE again, with the same seq.
    let replayed = {
        let mut pass = ring.completions().unwrap();
        // (None: the forgotten pass consumed it; nothing to replay.)
        pass.next().and_then(|c| bufs.handle_cqe(&c).map(|d| (d.id, d.free)))
    };
    if replayed.is_none() {
        // Refused: sound. Let read 2 finish.
        a.write_all(b"x").unwrap();
        let _ = common::reap(&mut ring, 1);
        return;
    }
    assert_eq!(replayed, Some((id2, true)));
    let slice = bufs.buffer_mut(0).expect("lent writable after the replay");
    slice.fill(0);
    // The kernel still owns read 2; feed it while the `&mut` is live.
    a.write_all(b"KERNEL WROTE").unwrap();
    // Let the ring run its task work (the read's completion), the slice
    // still borrowed (it borrows the table, not the ring).
    let real = common::reap(&mut ring, 1)[0];
    assert_eq!(real.cqe().res(), 12, "read 2 completed into the lent buffer");
    // SAFETY: only reached when the library wrongly lent the buffer; the
    // bytes are read (volatile) to show what the kernel wrote under it.
    let seen: Vec<u8> = (0..12).map(|i| unsafe { std::ptr::read_volatile(slice.as_ptr().add(i)) }).collect();
    panic!(
        "buffer_mut(0) was lent after read 1's CQE was replayed into read 2's slot; \
         the bytes under the &mut slice became {:?} after it was zeroed",
        String::from_utf8_lossy(&seen)
    );
}
