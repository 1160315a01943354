//! Attack: a receive's CQE shown again by the pass after a forgotten one,
//! once the buffer it named was recycled (published again). A pass
//! consumes each CQE as it hands it out, so the next pass shows nothing.

mod common;

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;

use common::ring;
use uring_buffers::{BufRing, BufRingConfig};
use uring_core::SqeContext;
use uring_ops::RingOps;
use uring_ops::net::RecvSelect;

#[test]
fn a_forgotten_receive_cqe_does_not_take_the_recycled_buffer() {
    let mut ring = ring();
    let mut br = BufRing::register(&mut ring, BufRingConfig::new(91, 1, 64)).unwrap();
    let (mut tx, rx) = UnixStream::pair().unwrap();
    tx.write_all(b"once").unwrap();
    ring.push_op(SqeContext::for_fd(0), RecvSelect::new(rx.as_raw_fd(), 91)).unwrap();
    ring.submit_and_wait(1).unwrap();
    let buf = {
        let mut pass = ring.completions().unwrap();
        let buf = br.take(&pass.next().expect("the receive")).unwrap().unwrap();
        std::mem::forget(pass);
        buf
    };
    br.recycle(buf).unwrap();
    assert_eq!(br.available(), 1);
    // The forgotten pass consumed the CQE as it handed it out: the next pass
    // does not show it again (before that fix it did, with the same `seq`,
    // and only `take`'s per-buffer position check refused it).
    let mut pass = ring.completions().unwrap();
    match pass.next() {
        None => {}
        Some(c) => {
            let again = br.take(&c);
            panic!("a consumed CQE came back (seq {}): take said {again:?}", c.seq());
        }
    }
}
