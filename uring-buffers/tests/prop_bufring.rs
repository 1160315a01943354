//! Property tests of `BufRing` against the kernel: random sends on a
//! socketpair, received into a real provided-buffer ring by single-shot
//! (`RecvSelect`), bundle (`RecvBundle`) and multishot (`RecvMulti`)
//! receives, with random take, recycle and hold orders, replays of saved
//! `CqeSlot` copies, and CQEs offered to the wrong `BufRing` (another group
//! of the same ring, the same group of another ring).
//!
//! A model of the kernel's side (the ring's entries in publication order;
//! on incremental rings, how much of the head buffer the kernel used)
//! predicts which buffer each CQE names; the kernel's CQEs are checked
//! against it. At every step:
//!
//! - every byte sent is received exactly once and in order (each CQE's
//!   bytes are the next `res` bytes of the stream);
//! - the bytes of a held `Buf`/`Bundle` never change while held (a
//!   snapshot taken at `take` is compared after all later kernel
//!   activity: this is how the kernel writing into a live borrow shows);
//! - no two live tokens name the same buffer (or, on incremental rings,
//!   overlapping ranges of one);
//! - replays and misrouted CQEs are refused with `Error::NotOwned` and
//!   change nothing;
//! - `held()` and `available()` agree with the model.
//!
//! Bounded for CI; for a longer run:
//! `PROPTEST_CASES=5000 cargo test -p uring-buffers --test prop_bufring`.

use std::collections::VecDeque;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::sample::Index;
use uring_buffers::{Buf, BufRing, BufRingConfig, Bundle, Error};
use uring_core::{CqeSlot, FeatureFlags, Options, Ring, SqeContext};
use uring_ops::RingOps;
use uring_ops::multishot::RecvMulti;
use uring_ops::net::{RecvBundle, RecvSelect};

/// `PROPTEST_CASES` when set, else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The `fd` field of the packed contexts, naming the kind of receive.
const SINGLE: i32 = 1;
const BUNDLE: i32 = 2;
const MULTI: i32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavor {
    /// A plain ring: single-shot and multishot receives.
    Plain,
    /// `IOU_PBUF_RING_INC`: single-shot and multishot receives.
    Incremental,
    /// A plain ring: single-shot and bundle receives, taken in CQE order.
    Bundle,
}

#[derive(Debug, Clone)]
enum Step {
    /// Write `1 + n % (3 × buf_size)` bytes into the socket.
    Send(u16),
    /// A single-shot receive (when no multishot is armed and data waits).
    Recv,
    /// A bundle receive (`Flavor::Bundle`; a single-shot one otherwise).
    RecvBundle,
    /// Arm a multishot receive (`Plain`/`Incremental`).
    Arm,
    /// Take a reaped CQE (any on plain and incremental rings, the oldest
    /// on bundle rings).
    Take(Index),
    /// Recycle a held token.
    Recycle(Index),
    /// Recycle every held `Buf` at once.
    RecycleAll,
    /// Present a taken CQE again.
    Replay(Index),
    /// Offer a CQE to the wrong `BufRing`: 0, ours to another group of
    /// the ring; 1, ours to the same group of another ring; 2, the other
    /// ring's to ours.
    Misroute(Index, u8),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => any::<u16>().prop_map(Step::Send),
        3 => Just(Step::Recv),
        2 => Just(Step::RecvBundle),
        1 => Just(Step::Arm),
        4 => any::<Index>().prop_map(Step::Take),
        3 => any::<Index>().prop_map(Step::Recycle),
        1 => Just(Step::RecycleAll),
        2 => any::<Index>().prop_map(Step::Replay),
        2 => (any::<Index>(), 0u8..3).prop_map(|(i, t)| Step::Misroute(i, t)),
    ]
}

/// A reaped CQE naming a buffer, not yet taken, with what the model
/// expects of it.
#[derive(Debug)]
struct Pending {
    slot: CqeSlot,
    /// Where its bytes start in the stream.
    stream_off: usize,
    /// The buffers the kernel filled (one, but for bundles).
    bids: Vec<u16>,
    /// Incremental rings: where in the buffer the bytes start.
    offset: usize,
    bundle: bool,
}

#[derive(Debug)]
enum Token {
    One(Buf),
    Many(Bundle, Vec<u16>),
}

/// A token the caller holds and the bytes it showed when taken.
#[derive(Debug)]
struct Held {
    token: Token,
    snapshot: Vec<u8>,
}

struct Harness {
    flavor: Flavor,
    entries: u32,
    bs: usize,
    ring: Ring,
    br: BufRing,
    /// Another group of the same ring, which never receives.
    other_group: BufRing,
    /// The same group id on another ring, and a CQE of that ring naming
    /// its buffer 0 (never taken).
    _other_ring: Ring,
    other_ring_br: BufRing,
    other_ring_cqe: CqeSlot,
    tx: UnixStream,
    rx: UnixStream,
    _other_pair: (UnixStream, UnixStream),

    // The model.
    /// The kernel's view of the ring: buffer ids in publication order.
    fifo: VecDeque<u16>,
    /// Incremental: bytes the kernel used of the buffer at the head.
    kused: usize,
    /// Incremental, per buffer: whether its last range was taken (the
    /// library's `in_kernel` is clear) and how many ranges are out.
    done: Vec<bool>,
    out: Vec<u32>,
    sent: Vec<u8>,
    delivered: usize,
    untaken: VecDeque<Pending>,
    taken: Vec<CqeSlot>,
    held: Vec<Held>,
    armed: bool,
    single_done: usize,
    /// The incremental ring's own requests: their `user_data` and kind.
    own: Vec<(u64, i32)>,
}

fn not_owned<T: std::fmt::Debug>(what: &str, r: Result<T, Error>) {
    assert!(matches!(r, Err(Error::NotOwned { .. })), "{what}: expected NotOwned, got {r:?}");
}

fn push_recv(ring: &mut Ring, fd: i32, group: u16) {
    ring.push_op(SqeContext::for_fd(SINGLE), RecvSelect::new(fd, group)).unwrap();
    ring.submit().unwrap();
}

/// Reaps one CQE of `ring` (5 s limit).
fn reap_one(ring: &mut Ring) -> CqeSlot {
    let mut slots = [CqeSlot::EMPTY; 1];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        assert!(Instant::now() < deadline, "timed out waiting for a CQE");
        match ring.wait_for(&mut slots, 1, Some(Duration::from_millis(100))) {
            Ok(r) => return r.get(0).unwrap().to_slot(),
            Err(e) if e.is_would_block() => {}
            Err(e) => panic!("wait: {e}"),
        }
    }
}

impl Harness {
    /// `None` when the kernel lacks what the flavor needs.
    fn new(flavor: Flavor, entries: u32, bs: u32, group: u16) -> Option<Self> {
        let new_ring = || {
            let mut ring = Ring::new(Options::default().entries(16)).expect("Ring::new (see SETUP.md)");
            ring.start().unwrap();
            ring
        };
        let cfg = |group| {
            let c = BufRingConfig::new(group, entries, bs);
            if flavor == Flavor::Incremental { c.incremental() } else { c }
        };
        let mut ring = new_ring();
        if flavor == Flavor::Bundle && !ring.features().has(FeatureFlags::RECVSEND_BUNDLE) {
            return None;
        }
        let br = BufRing::register(&mut ring, cfg(group)).ok()?;
        let other_group = BufRing::register(&mut ring, cfg(group.wrapping_add(1))).unwrap();
        let mut other_ring = new_ring();
        let mut other_ring_br = BufRing::register(&mut other_ring, cfg(group)).unwrap();
        let (mut otx, orx) = UnixStream::pair().unwrap();
        otx.write_all(b"another ring").unwrap();
        if flavor == Flavor::Incremental {
            let op = RecvSelect::new(orx.as_raw_fd(), group);
            other_ring_br.push_op(&mut other_ring, op).unwrap();
            other_ring.submit().unwrap();
        } else {
            push_recv(&mut other_ring, orx.as_raw_fd(), group);
        }
        let other_ring_cqe = reap_one(&mut other_ring);
        assert_eq!(other_ring_cqe.cqe().buffer_id(), Some(0));
        // It is that ring's own, untaken: proven (by its context, or as the
        // incremental ring's own request), and refused only by us.
        assert!(other_ring_cqe.cqe().buffer_selection().is_some() || other_ring_br.is_own(&other_ring_cqe.cqe()));
        let _ = &mut other_ring_br;
        let (tx, rx) = UnixStream::pair().unwrap();
        Some(Harness {
            flavor,
            entries,
            bs: bs as usize,
            ring,
            br,
            other_group,
            _other_ring: other_ring,
            other_ring_br,
            other_ring_cqe,
            tx,
            rx,
            _other_pair: (otx, orx),
            fifo: (0..entries as u16).collect(),
            kused: 0,
            done: vec![false; entries as usize],
            out: vec![0; entries as usize],
            sent: Vec::new(),
            delivered: 0,
            untaken: VecDeque::new(),
            taken: Vec::new(),
            held: Vec::new(),
            armed: false,
            single_done: 0,
            own: Vec::new(),
        })
    }

    fn pending(&self) -> usize {
        self.sent.len() - self.delivered
    }

    /// Reaps CQEs until `done` holds (5 s limit), checking each against
    /// the model.
    fn pump(&mut self, done: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut slots = [CqeSlot::EMPTY; 8];
        while !done(self) {
            assert!(Instant::now() < deadline, "timed out: {} of {} bytes delivered", self.delivered, self.sent.len());
            let n = match self.ring.wait_for(&mut slots, 1, Some(Duration::from_millis(50))) {
                Ok(r) => r.len(),
                Err(e) if e.is_would_block() => 0,
                Err(e) => panic!("wait: {e}"),
            };
            for slot in &slots[..n] {
                self.on_cqe(*slot);
            }
        }
    }

    /// The kernel's side: which buffer the CQE must name, and where its
    /// bytes come from.
    fn on_cqe(&mut self, slot: CqeSlot) {
        let c = slot.cqe();
        let kind = match self.own.iter().find(|o| o.0 == c.user_data()) {
            Some(&(_, kind)) => kind,
            None => c.context().fd().expect("a packed context"),
        };
        if self.flavor == Flavor::Incremental {
            // The ring's one request ends with its last CQE (taken later):
            // note it, so the next request may be queued.
            assert_eq!(self.br.end_request(&c), !c.more(), "{c:?}: the request's end, and only that");
        }
        match kind {
            SINGLE => self.single_done += 1,
            BUNDLE => self.single_done += 1,
            MULTI if !c.more() => self.armed = false,
            _ => {}
        }
        let Some(bid) = c.buffer_id() else {
            // The kernel selects a buffer before it looks for data: a
            // receive (armed multishot included) finding none fails at once.
            assert_eq!(c.res(), -libc::ENOBUFS, "{c:?}: a receive fails only for want of buffers");
            assert!(self.fifo.is_empty(), "{c:?}: -ENOBUFS with {:?} published", self.fifo);
            return;
        };
        let res = usize::try_from(c.res()).unwrap_or_else(|_| panic!("{c:?}: a buffer with an error"));
        assert!(res > 0 && res <= self.pending(), "{c:?}: {res} bytes of {} pending", self.pending());
        let mut offset = 0;
        let bids = if kind == BUNDLE {
            let count = res.div_ceil(self.bs);
            assert!(count <= self.fifo.len(), "{c:?}: a bundle of {count} buffers, {} published", self.fifo.len());
            let bids: Vec<u16> = self.fifo.drain(..count).collect();
            assert_eq!(bid, bids[0], "{c:?}: a bundle starts at the head");
            bids
        } else if self.flavor == Flavor::Incremental {
            assert_eq!(Some(&bid), self.fifo.front(), "{c:?}: the kernel fills the head buffer");
            offset = self.kused;
            assert!(res <= self.bs - self.kused, "{c:?}: {res} bytes, {} left", self.bs - self.kused);
            assert_eq!(c.buf_more(), self.kused + res < self.bs, "{c:?}: BUF_MORE iff room is left");
            if c.buf_more() {
                self.kused += res;
            } else {
                self.kused = 0;
                self.fifo.pop_front();
            }
            vec![bid]
        } else {
            assert!(res <= self.bs);
            assert_eq!(self.fifo.pop_front(), Some(bid), "{c:?}: the kernel takes the head");
            vec![bid]
        };
        self.untaken.push_back(Pending { slot, stream_off: self.delivered, bids, offset, bundle: kind == BUNDLE });
        self.delivered += res;
    }

    fn run(&mut self, step: &Step) {
        match *step {
            Step::Send(n) => {
                let n = 1 + usize::from(n) % (3 * self.bs);
                let base = self.sent.len();
                let bytes: Vec<u8> = (base..base + n).map(|i| (i * 7 + i / 251) as u8).collect();
                self.tx.write_all(&bytes).unwrap();
                self.sent.extend_from_slice(&bytes);
                if self.armed {
                    self.pump(|h| h.pending() == 0 || !h.armed);
                }
            }
            Step::Recv | Step::RecvBundle if !self.armed && self.pending() > 0 => {
                let bundle = matches!(step, Step::RecvBundle) && self.flavor == Flavor::Bundle;
                let fd = self.rx.as_raw_fd();
                let group = self.br.group();
                if bundle {
                    self.ring.push_op(SqeContext::for_fd(BUNDLE), RecvBundle::new(fd, group)).unwrap();
                    self.ring.submit().unwrap();
                } else if self.flavor == Flavor::Incremental {
                    // The group is the ring's own: other pushes are refused.
                    let e = self.ring.push_op(SqeContext::for_fd(SINGLE), RecvSelect::new(fd, group)).unwrap_err();
                    assert!(e.to_string().contains("reserved"), "{e}");
                    let ud = self.br.push_op(&mut self.ring, RecvSelect::new(fd, group)).unwrap();
                    self.own.push((ud.raw(), SINGLE));
                    self.ring.submit().unwrap();
                } else {
                    push_recv(&mut self.ring, fd, group);
                }
                let want = self.single_done + 1;
                self.pump(|h| h.single_done == want);
            }
            Step::Arm if !self.armed && self.flavor != Flavor::Bundle => {
                let (fd, group) = (self.rx.as_raw_fd(), self.br.group());
                if self.flavor == Flavor::Incremental {
                    let ud = self.br.push_op(&mut self.ring, RecvMulti::new(fd, group)).unwrap();
                    self.own.push((ud.raw(), MULTI));
                } else {
                    self.ring.push_op(SqeContext::for_fd(MULTI), RecvMulti::new(fd, group)).unwrap();
                }
                self.ring.submit().unwrap();
                self.armed = true;
                if self.fifo.is_empty() {
                    // Refused at once: no buffer to select.
                    self.pump(|h| !h.armed);
                } else if self.pending() > 0 {
                    self.pump(|h| h.pending() == 0 || !h.armed);
                }
            }
            Step::Take(i) if !self.untaken.is_empty() => {
                let mut i = if self.flavor == Flavor::Bundle { 0 } else { i.index(self.untaken.len()) };
                if self.flavor == Flavor::Incremental {
                    // A CQE does not say where in an incremental buffer its
                    // bytes start: one buffer's CQEs must be taken in CQE
                    // order (buffers in any order).
                    let bid = self.untaken[i].bids[0];
                    i = self.untaken.iter().position(|p| p.bids[0] == bid).unwrap();
                }
                let p = self.untaken.remove(i).unwrap();
                self.take(p);
            }
            Step::Recycle(i) if !self.held.is_empty() => {
                let h = self.held.remove(i.index(self.held.len()));
                self.recycle(h);
            }
            Step::RecycleAll => {
                let (bufs, rest): (Vec<Held>, Vec<Held>) =
                    std::mem::take(&mut self.held).into_iter().partition(|h| matches!(h.token, Token::One(_)));
                self.held = rest;
                let mut tokens = Vec::new();
                for h in bufs {
                    let Token::One(buf) = h.token else { unreachable!() };
                    self.model_recycle(buf.bid());
                    tokens.push(buf);
                }
                self.br.recycle_all(tokens).unwrap();
            }
            Step::Replay(i) if !self.taken.is_empty() => {
                let slot = self.taken[i.index(self.taken.len())];
                not_owned("a replayed CQE (take)", self.br.take(&slot.cqe()));
                not_owned("a replayed CQE (take_bundle)", self.br.take_bundle(&slot.cqe()));
            }
            Step::Misroute(i, target) => {
                let ours: Vec<CqeSlot> =
                    self.untaken.iter().map(|p| p.slot).chain(self.taken.iter().copied()).collect();
                match target {
                    0 | 1 if !ours.is_empty() => {
                        let slot = ours[i.index(ours.len())];
                        let wrong = if target == 0 { &mut self.other_group } else { &mut self.other_ring_br };
                        not_owned("a CQE of another group or ring (take)", wrong.take(&slot.cqe()));
                        not_owned("a CQE of another group or ring (take_bundle)", wrong.take_bundle(&slot.cqe()));
                    }
                    2 => {
                        let c = self.other_ring_cqe.cqe();
                        not_owned("another ring's CQE (take)", self.br.take(&c));
                        not_owned("another ring's CQE (take_bundle)", self.br.take_bundle(&c));
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        self.check();
    }

    fn take(&mut self, p: Pending) {
        let cqe = p.slot.cqe();
        let res = cqe.res() as usize;
        let want = &self.sent[p.stream_off..p.stream_off + res];
        if p.bundle {
            let bundle = self.br.take_bundle(&cqe).unwrap().expect("names a buffer");
            assert_eq!((bundle.first_bid(), bundle.count(), bundle.len()), (p.bids[0], p.bids.len(), res));
            let parts: Vec<&[u8]> = self.br.bundle(&bundle).collect();
            assert!(parts[..parts.len() - 1].iter().all(|x| x.len() == self.bs), "full but the last");
            let got = parts.concat();
            assert_eq!(got, want, "a bundle's bytes are the stream's next {res}");
            self.held.push(Held { token: Token::Many(bundle, p.bids), snapshot: got });
        } else {
            let buf = self.br.take(&cqe).unwrap().expect("names a buffer");
            assert_eq!((buf.bid(), buf.len(), buf.offset()), (p.bids[0], res, p.offset));
            let got = self.br.bytes(&buf).to_vec();
            assert_eq!(got, want, "a buffer's bytes are the stream's next {res}");
            if self.flavor == Flavor::Incremental {
                let b = usize::from(buf.bid());
                self.out[b] += 1;
                if !cqe.buf_more() {
                    self.done[b] = true;
                }
            }
            self.held.push(Held { token: Token::One(buf), snapshot: got });
        }
        self.taken.push(p.slot);
        // Taken once: the same CQE again is refused.
        not_owned("a CQE taken twice", self.br.take(&cqe));
    }

    /// The model's side of returning one token of `bid`.
    fn model_recycle(&mut self, bid: u16) {
        let b = usize::from(bid);
        if self.flavor == Flavor::Incremental {
            self.out[b] -= 1;
            if self.out[b] > 0 || !self.done[b] {
                return;
            }
            self.done[b] = false;
        }
        self.fifo.push_back(bid);
    }

    fn recycle(&mut self, h: Held) {
        match h.token {
            Token::One(buf) => {
                assert_eq!(self.br.bytes(&buf), &h.snapshot[..]);
                self.model_recycle(buf.bid());
                self.br.recycle(buf).unwrap();
            }
            Token::Many(bundle, bids) => {
                for &b in &bids {
                    self.model_recycle(b);
                }
                self.br.recycle_bundle(bundle).unwrap();
            }
        }
    }

    /// The invariants, after every step.
    fn check(&self) {
        let mut ranges: Vec<(u16, usize, usize)> = Vec::new();
        for h in &self.held {
            match &h.token {
                Token::One(buf) => {
                    assert_eq!(self.br.bytes(buf), &h.snapshot[..], "a held buffer changed under its token");
                    ranges.push((buf.bid(), buf.offset(), buf.offset() + buf.len()));
                }
                Token::Many(bundle, bids) => {
                    assert_eq!(
                        self.br.bundle(bundle).collect::<Vec<_>>().concat(),
                        h.snapshot,
                        "a held bundle changed"
                    );
                    ranges.extend(bids.iter().map(|&b| (b, 0, self.bs)));
                }
            }
        }
        ranges.sort_unstable();
        for w in ranges.windows(2) {
            assert!(w[0].0 != w[1].0 || w[0].2 <= w[1].1, "two live tokens overlap: {:?} and {:?}", w[0], w[1]);
        }
        let held: usize = self
            .held
            .iter()
            .map(|h| match &h.token {
                Token::One(_) => 1,
                Token::Many(_, bids) => bids.len(),
            })
            .sum();
        assert_eq!(self.br.held() as usize, held, "held()");
        let out_of_kernel =
            if self.flavor == Flavor::Incremental { self.done.iter().filter(|&&d| d).count() } else { held };
        assert_eq!(self.br.available() as usize, self.entries as usize - out_of_kernel, "available()");
        assert_eq!((self.other_group.held(), self.other_group.available()), (0, self.entries));
        assert_eq!((self.other_ring_br.held(), self.other_ring_br.available()), (0, self.entries));
    }

    /// Takes and recycles everything, receives what is left, and checks
    /// that the whole stream arrived once, in order.
    fn drain(&mut self) {
        while let Some(p) = self.untaken.pop_front() {
            self.take(p);
        }
        while let Some(h) = self.held.pop() {
            self.recycle(h);
        }
        self.check();
        while self.pending() > 0 {
            if self.armed {
                self.pump(|h| h.pending() == 0 || !h.armed);
            } else {
                self.run(&Step::Recv);
            }
            while let Some(p) = self.untaken.pop_front() {
                self.take(p);
                let h = self.held.pop().unwrap();
                self.recycle(h);
            }
        }
        self.check();
        assert_eq!(self.delivered, self.sent.len(), "every byte once");
        assert_eq!((self.br.held(), self.br.available()), (0, self.entries));
    }
}

fn run_case(flavor: Flavor, entries: u32, bs: u32, group: u16, steps: &[Step]) {
    let Some(mut h) = Harness::new(flavor, entries, bs, group) else {
        eprintln!("SKIPPED {flavor:?}: not supported by this kernel");
        return;
    };
    for s in steps {
        h.run(s);
    }
    h.drain();
}

fn shape() -> impl Strategy<Value = (u32, u32, u16)> {
    (prop_oneof![Just(4u32), Just(8), Just(16)], prop_oneof![Just(8u32), Just(16), Just(32)], 0u16..1000)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(128)))]

    #[test]
    fn plain_ring_follows_the_kernel((entries, bs, group) in shape(), steps in prop::collection::vec(step(), 1..80)) {
        run_case(Flavor::Plain, entries, bs, group, &steps);
    }

    #[test]
    fn incremental_ring_follows_the_kernel(
        (entries, bs, group) in shape(), steps in prop::collection::vec(step(), 1..80),
    ) {
        run_case(Flavor::Incremental, entries, bs, group, &steps);
    }

    #[test]
    fn bundle_receives_follow_the_kernel((entries, bs, group) in shape(), steps in prop::collection::vec(step(), 1..80)) {
        run_case(Flavor::Bundle, entries, bs, group, &steps);
    }
}
