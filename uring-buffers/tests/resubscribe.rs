//! Out of buffers: a multishot receive over a `BufRing` ends with
//! `-ENOBUFS` when the caller holds every buffer; the subscription reports
//! it as its own outcome (`MultishotEnd::NoBuffers`), and after recycling
//! the caller resubscribes with nothing lost or duplicated: the bytes that
//! found no buffer wait in the socket.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use uring_buffers::{Buf, BufRing, BufRingConfig};
use uring_core::{BufferSelection, CqeSlot, Options, Ring};
use uring_ops::multishot::RecvMulti;
use uring_ops::prelude::*;
use uring_ops::subscription::{MultishotEnd, MultishotStep};

/// Records each step's buffer and the stream's end.
#[derive(Default)]
struct Collect {
    steps: Vec<BufferSelection>,
    ends: Vec<MultishotEnd>,
}

impl MultishotHandler for Collect {
    fn on_step(&mut self, step: &MultishotStep) -> MultishotAction {
        if let Some(sel) = step.buffer_selection() {
            assert_eq!(Some(sel.bid()), step.buffer_id());
            self.steps.push(sel);
        }
        MultishotAction::Continue
    }

    fn on_stop(&mut self, end: MultishotEnd) {
        self.ends.push(end);
    }
}

#[test]
fn a_stream_that_runs_dry_ends_with_nobuffers_and_resubscribes_without_loss() {
    let mut ring = Ring::new(Options::default().entries(16).cq_entries(64)).expect("Ring::new (see SETUP.md)");
    ring.start().unwrap();
    let mut br = BufRing::register(&mut ring, BufRingConfig::new(3, 4, 64)).unwrap();
    let (mut tx, rx) = UnixStream::pair().unwrap();
    let fd = rx.as_raw_fd();
    let mut sub = ring.subscribe(RecvMulti::new(fd, 3), Collect::default()).unwrap();
    ring.submit().unwrap();

    let total: Vec<u8> = (0..2000u32).map(|i| (i % 241) as u8).collect();
    let mut got = Vec::new();
    let mut held: Vec<Buf> = Vec::new();
    let mut sent = 0;
    let mut dry_ends = 0;
    let mut slots = [CqeSlot::EMPTY; 32];
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while got.len() < total.len() {
        assert!(std::time::Instant::now() < deadline, "stalled after {} of {} bytes", got.len(), total.len());
        if sent < total.len() {
            // 100 bytes at a time, more than four 64-byte buffers can take
            // between reaps, so the group runs dry regularly.
            let n = (total.len() - sent).min(100);
            tx.write_all(&total[sent..sent + n]).unwrap();
            sent += n;
        }
        let n = match ring.wait_for(&mut slots, 1, Some(Duration::from_millis(200))) {
            Ok(r) => r.len(),
            Err(uring_core::Error::WouldBlock) => 0,
            Err(e) => panic!("{e}"),
        };
        for slot in &slots[..n] {
            assert!(sub.handle_cqe(&mut ring, &slot.cqe()).is_some(), "only the subscription's CQEs are in flight");
        }
        // Take what the steps named, holding the buffers (the caller is
        // slow), which is what drains the group.
        for sel in sub.handler_mut().steps.drain(..) {
            let buf = br.take_selection(&sel).unwrap();
            got.extend_from_slice(br.bytes(&buf));
            held.push(buf);
        }
        if let Some(end) = sub.handler_mut().ends.pop() {
            assert_eq!(end, MultishotEnd::NoBuffers, "the stream ended for lack of buffers");
            assert_eq!(br.available(), 0);
            dry_ends += 1;
            br.recycle_all(held.drain(..)).unwrap();
            sub.resubscribe(&mut ring, RecvMulti::new(fd, 3)).unwrap();
            ring.submit().unwrap();
        } else if held.len() >= 2 && sent >= total.len() {
            // At the end, keep the stream alive by giving buffers back.
            br.recycle_all(held.drain(..)).unwrap();
        }
    }
    assert_eq!(got, total, "every byte exactly once, in order, across {dry_ends} resubscriptions");
    assert!(dry_ends >= 2, "the group ran dry and was refilled several times ({dry_ends})");
    sub.cancel(&mut ring).unwrap();
}
