//! Bundle send against the kernel: buffers the caller fills and queues go
//! out over a loopback TCP pair in one `IORING_RECVSEND_BUNDLE` send, the
//! bytes arrive in queue order, and each CQE returns exactly the buffers
//! it consumed, once.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use uring_buffers::{BufRingConfig, Error, SendRing, Sent};
use uring_core::{CqeSlot, FeatureFlags, Options, Ring, SqeContext};

/// A started ring, or `None` (the test prints why and returns) when the
/// kernel has no bundles.
fn ring(test: &str) -> Option<Ring> {
    let mut ring = Ring::new(Options::default().entries(16)).expect("Ring::new (see SETUP.md)");
    ring.start().unwrap();
    if !ring.features().has(FeatureFlags::RECVSEND_BUNDLE) {
        eprintln!("SKIPPED {test}: no IORING_FEAT_RECVSEND_BUNDLE (Linux 6.10+)");
        return None;
    }
    Some(ring)
}

/// The bundle sends' `user_data`: a foreign context of the test's own.
const UD: u64 = 77;

fn tcp_pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (b, _) = l.accept().unwrap();
    b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    (a, b)
}

/// Submits and reaps the CQEs of one bundle send (5 s limit) until one
/// without `IORING_CQE_F_MORE`, accounting each with `sr`.
fn finish(ring: &mut Ring, sr: &mut SendRing) -> Vec<Sent> {
    finish_keeping(ring, sr).0
}

/// As `finish`, also returning copies of the CQEs (with their provenance).
fn finish_keeping(ring: &mut Ring, sr: &mut SendRing) -> (Vec<Sent>, Vec<CqeSlot>) {
    let mut out = Vec::new();
    let mut kept = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut slots = [CqeSlot::EMPTY; 8];
    while sr.in_flight() {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "timed out; so far {out:?}");
        let n = match ring.wait_for(&mut slots, 1, Some(left)) {
            Ok(r) => r.len(),
            Err(e) if e.is_would_block() => 0,
            Err(e) => panic!("wait: {e}"),
        };
        for slot in &slots[..n] {
            let cqe = slot.cqe();
            assert_eq!(cqe.context().as_token(), Some(UD), "only the bundle send's CQEs");
            out.push(sr.complete(&cqe).unwrap());
            kept.push(*slot);
        }
    }
    (out, kept)
}

fn fill(sr: &mut SendRing, data: &[u8]) {
    let mut b = sr.acquire().expect("a free buffer");
    sr.buf_mut(&mut b)[..data.len()].copy_from_slice(data);
    sr.queue(b, data.len()).unwrap();
}

fn pattern(n: usize, seed: u32) -> Vec<u8> {
    (0..n as u32).map(|i| (i.wrapping_mul(17).wrapping_add(seed) % 253) as u8).collect()
}

#[test]
fn queued_buffers_go_out_in_one_bundle_in_order() {
    let Some(mut ring) = ring("queued_buffers_go_out_in_one_bundle_in_order") else { return };
    let mut sr = SendRing::register(&mut ring, BufRingConfig::new(3, 8, 1024)).unwrap();
    assert_eq!((sr.free(), sr.queued()), (8, 0));
    let (a, mut b) = tcp_pair();
    // Four buffers, the lengths each one's own.
    let parts = [pattern(1024, 1), pattern(700, 2), pattern(1024, 3), pattern(5, 4)];
    for p in &parts {
        fill(&mut sr, p);
    }
    assert_eq!((sr.free(), sr.queued(), sr.queued_bytes()), (4, 4, 2753));
    sr.send_bundle(&mut ring, SqeContext::token(UD).unwrap(), a.as_raw_fd()).unwrap();
    let (sent, kept) = finish_keeping(&mut ring, &mut sr);
    assert_eq!(sent.len(), 1, "one CQE for the whole bundle: {sent:?}");
    let s = &sent[0];
    assert_eq!((s.res, s.first, s.freed, s.more), (2753, Some(0), 4, false), "{s:?}");
    assert!(s.partial.is_none());
    let mut got = vec![0; 2753];
    b.read_exact(&mut got).unwrap();
    assert_eq!(got, parts.concat(), "the bytes arrived in queue order");
    // Exactly once: every buffer is free, and the CQE cannot be accounted
    // twice.
    assert_eq!((sr.free(), sr.queued()), (8, 0));
    assert!(matches!(sr.complete(&kept[0].cqe()), Err(Error::InvalidArgument(_))));
    assert_eq!(sr.free(), 8);
    // Presented again while a later send of the same buffer is in flight,
    // it still releases nothing (the kernel may be reading buffer 0).
    fill(&mut sr, &parts[0]);
    sr.send_bundle(&mut ring, SqeContext::token(UD).unwrap(), a.as_raw_fd()).unwrap();
    assert!(matches!(sr.complete(&kept[0].cqe()), Err(Error::InvalidArgument(_))), "a replayed CQE");
    assert!(matches!(sr.complete(&CqeSlot::EMPTY.cqe()), Err(Error::InvalidArgument(_))), "no ring's CQE");
    assert_eq!((sr.free(), sr.queued()), (7, 1));
    let again = finish(&mut ring, &mut sr);
    assert_eq!((again[0].res, again[0].freed), (1024, 1));
    let mut got = vec![0; 1024];
    b.read_exact(&mut got).unwrap();
    assert_eq!(got, parts[0]);
}

#[test]
fn more_data_than_one_bundle_takes_goes_out_in_rounds_across_the_ring_end() {
    let test = "more_data_than_one_bundle_takes_goes_out_in_rounds_across_the_ring_end";
    let Some(mut ring) = ring(test) else { return };
    // 4 buffers of 256 bytes: 20 000 bytes need many rounds, and the ring
    // wraps every 4 entries; odd chunk sizes put short buffers anywhere.
    let mut sr = SendRing::register(&mut ring, BufRingConfig::new(5, 4, 256).kernel_mapped()).unwrap();
    let (a, mut b) = tcp_pair();
    let data = pattern(20_000, 9);
    let (mut offset, mut rounds, mut received, mut freed) = (0, 0, Vec::new(), 0);
    let chunks = [256, 100, 256, 1, 256, 77];
    let mut next_chunk = 0;
    while offset < data.len() {
        while offset < data.len() {
            let Some(mut buf) = sr.acquire() else { break };
            let n = chunks[next_chunk % chunks.len()].min(data.len() - offset);
            next_chunk += 1;
            sr.buf_mut(&mut buf)[..n].copy_from_slice(&data[offset..offset + n]);
            sr.queue(buf, n).unwrap();
            offset += n;
        }
        let queued = (sr.queued(), sr.queued_bytes());
        sr.send_bundle(&mut ring, SqeContext::token(UD).unwrap(), a.as_raw_fd()).unwrap();
        let mut bytes = 0;
        let cqes = finish(&mut ring, &mut sr);
        if rounds == 0 {
            println!("round 1: {} buffers, {} bytes, {} CQE(s): {cqes:?}", queued.0, queued.1, cqes.len());
        }
        for s in cqes {
            assert!(s.res >= 0 && s.partial.is_none(), "{s:?}");
            bytes += s.res as usize;
            freed += s.freed as usize;
        }
        assert_eq!(bytes, queued.1, "the round sent all {} queued buffers", queued.0);
        let mut got = vec![0; bytes];
        b.read_exact(&mut got).unwrap();
        received.extend_from_slice(&got);
        rounds += 1;
        assert_eq!(sr.free(), 4, "every buffer back after each round");
    }
    assert_eq!(received, data, "20 000 bytes in order");
    assert!(rounds >= 20_000 / 1024, "{rounds} rounds");
    assert_eq!(freed, next_chunk, "each queued buffer freed exactly once");
}

#[test]
fn bad_input_is_refused() {
    let Some(mut ring) = ring("bad_input_is_refused") else { return };
    assert!(matches!(
        SendRing::register(&mut ring, BufRingConfig::new(1, 4, 64).incremental()),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(SendRing::register(&mut ring, BufRingConfig::new(1, 3, 64)), Err(Error::InvalidArgument(_))));
    let mut sr = SendRing::register(&mut ring, BufRingConfig::new(1, 2, 64)).unwrap();
    let mut other = SendRing::register(&mut ring, BufRingConfig::new(2, 2, 64)).unwrap();
    let (a, _b) = tcp_pair();
    let fd = a.as_raw_fd();
    assert!(matches!(sr.send_bundle(&mut ring, SqeContext::token(UD).unwrap(), fd), Err(Error::InvalidArgument(_))));
    let buf = sr.acquire().unwrap();
    assert!(matches!(sr.queue(buf, 0), Err(Error::InvalidArgument(_))));
    let buf = sr.acquire().unwrap();
    assert!(matches!(sr.queue(buf, 65), Err(Error::InvalidArgument(_))));
    assert_eq!(sr.free(), 2, "refused buffers went back to the pool");
    let theirs = other.acquire().unwrap();
    assert!(matches!(sr.queue(theirs, 1), Err(Error::NotOwned { .. })));
    assert_eq!(other.free(), 1, "another ring's token is not ours to free");
    assert!(matches!(sr.complete(&CqeSlot::EMPTY.cqe()), Err(Error::InvalidArgument(_))), "nothing in flight");
    fill(&mut sr, b"one");
    sr.send_bundle(&mut ring, SqeContext::token(UD).unwrap(), fd).unwrap();
    assert!(matches!(sr.send_bundle(&mut ring, SqeContext::token(UD).unwrap(), fd), Err(Error::InvalidArgument(_))));
    let s = finish(&mut ring, &mut sr);
    assert_eq!((s[0].res, s[0].freed), (3, 1));
    // A taken group id.
    assert!(matches!(SendRing::register(&mut ring, BufRingConfig::new(1, 2, 64)), Err(Error::Core(_))));
    sr.unregister(&mut ring).unwrap();
}

/// A bundle the kernel cuts short mid-buffer needs a send interrupted
/// after some bytes went out; its CQE is simulated here (after a real
/// send, whose own CQE is then ignored) to check the accounting: the
/// whole buffers go back to the pool, the partly sent one to the caller
/// with its unsent tail, which can be queued again.
#[test]
fn a_partly_sent_buffer_comes_back_to_the_caller() {
    let Some(mut ring) = ring("a_partly_sent_buffer_comes_back_to_the_caller") else { return };
    let mut sr = SendRing::register(&mut ring, BufRingConfig::new(4, 4, 100)).unwrap();
    let (a, mut b) = tcp_pair();
    fill(&mut sr, &[1; 100]);
    fill(&mut sr, &[2; 100]);
    fill(&mut sr, &[3; 50]);
    sr.send_bundle(&mut ring, SqeContext::token(UD).unwrap(), a.as_raw_fd()).unwrap();
    // The real send sends all 250 bytes; its CQE is set aside.
    let mut slots = [CqeSlot::EMPTY; 1];
    let res = ring.wait_for(&mut slots, 1, Some(Duration::from_secs(5))).unwrap().get(0).unwrap().res();
    assert_eq!(res, 250);
    let mut got = vec![0; 250];
    b.read_exact(&mut got).unwrap();
    // As if only 130 bytes went out: buffer 0 whole, 30 bytes of buffer 1.
    // SAFETY: the real send has completed (its CQE was reaped above), so
    // the kernel reads none of these buffers any more; the simulated CQE
    // stands for it, presented once.
    let s = unsafe { sr.complete_raw(130, Some(0), false) }.unwrap();
    assert_eq!((s.freed, sr.free(), sr.queued()), (1, 2, 1), "{s:?}");
    let p = s.partial.expect("buffer 1 went out in part");
    assert_eq!((p.buf.bid(), p.sent, p.queued, p.unsent()), (1, 30, 100, 30..100));
    assert_eq!(&sr.bytes(&p.buf)[p.unsent()], &[2; 70][..]);
    sr.queue_range(p.buf, 30..100).unwrap();
    assert_eq!((sr.queued(), sr.queued_bytes()), (2, 120));
}
