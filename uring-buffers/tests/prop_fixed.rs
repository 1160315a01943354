//! Property tests of `FixedBuffers` against the kernel: random sequences
//! of fixed reads (from a file, which completes at once, and from pipes,
//! which wait until fed) and fixed writes (into a file), completions handed
//! to `handle_cqe` in random order, replays of handled CQEs (also after
//! the operation's slot was reused), CQEs of another ring and of other
//! operations, and accessor calls.
//!
//! A model keeps each buffer's state (idle, the kernel reads it, the
//! kernel writes it) and contents. At every step:
//!
//! - `state` matches the model, and `buffer`/`buffer_mut` refuse exactly
//!   what the state forbids (`Error::Busy`); a buffer the kernel writes is
//!   never accessible before its own CQE was handled;
//! - a buffer the kernel only reads, and an idle one, show exactly the
//!   bytes the model says;
//! - replayed and foreign CQEs are ignored and change nothing;
//! - data read lands intact (and nowhere else), data written reaches the
//!   file as it was when the write started.
//!
//! Bounded for CI; for a longer run:
//! `PROPTEST_CASES=5000 cargo test -p uring-buffers --test prop_fixed`.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::ops::Range;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::sample::Index;
use uring_buffers::{BufferState, Error, FixedBuffers, FixedId, FixedKind};
use uring_core::{CqeSlot, Options, Ring, SqeContext};
use uring_ops::RingOps;
use uring_ops::cmd::Nop;

/// `PROPTEST_CASES` when set, else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

const BUFS: u32 = 4;
const SIZE: usize = 64;
const FILE_LEN: usize = 4096;
const PIPES: usize = 2;

fn ring() -> Ring {
    let mut ring = Ring::new(Options::default().entries(16)).expect("Ring::new (see SETUP.md)");
    ring.start().unwrap();
    ring
}

fn temp(tag: &str) -> File {
    let p = std::env::temp_dir().join(format!("uring-buffers-prop-{tag}-{}", std::process::id()));
    let f = File::options().read(true).write(true).create(true).truncate(true).open(&p).unwrap();
    std::fs::remove_file(&p).unwrap();
    f
}

/// A pipe: (read end, write end).
fn pipe() -> (File, File) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into `fds`.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both descriptors are fresh and owned by nobody else.
    unsafe { (File::from(OwnedFd::from_raw_fd(fds[0])), File::from(OwnedFd::from_raw_fd(fds[1]))) }
}

#[derive(Debug, Clone)]
enum Step {
    /// A fixed read into `buf` at `range` from the source file at an offset.
    ReadFile { buf: u32, range: (u8, u8), offset: u16 },
    /// A fixed read into `buf` from pipe `pipe` (when no read waits on it).
    ReadPipe { buf: u32, range: (u8, u8), pipe: usize },
    /// A fixed write of `buf` at `range` into the sink file.
    Write { buf: u32, range: (u8, u8) },
    /// Write `n + 1` bytes into pipe `pipe`.
    Feed { pipe: usize, n: u8 },
    /// Hand a reaped CQE to `handle_cqe`.
    Handle(Index),
    /// Hand a handled CQE again.
    Replay(Index),
    /// Hand another ring's CQE, or one of another operation.
    Foreign(bool),
    /// Access `buf`; write `fill` into it when it is writable.
    Access { buf: u32, fill: u8 },
}

fn range() -> impl Strategy<Value = (u8, u8)> {
    (0u8..SIZE as u8, any::<u8>())
}

fn step() -> impl Strategy<Value = Step> {
    let buf = 0..BUFS;
    prop_oneof![
        2 => (buf.clone(), range(), any::<u16>()).prop_map(|(buf, range, offset)| Step::ReadFile { buf, range, offset }),
        2 => (buf.clone(), range(), 0..PIPES).prop_map(|(buf, range, pipe)| Step::ReadPipe { buf, range, pipe }),
        2 => (buf.clone(), range()).prop_map(|(buf, range)| Step::Write { buf, range }),
        2 => (0..PIPES, any::<u8>()).prop_map(|(pipe, n)| Step::Feed { pipe, n }),
        4 => any::<Index>().prop_map(Step::Handle),
        2 => any::<Index>().prop_map(Step::Replay),
        1 => any::<bool>().prop_map(Step::Foreign),
        3 => (buf, any::<u8>()).prop_map(|(buf, fill)| Step::Access { buf, fill }),
    ]
}

/// A range of a buffer from two random bytes: `start..start + len`, not
/// empty.
fn to_range((start, len): (u8, u8)) -> Range<usize> {
    let start = usize::from(start) % SIZE;
    start..start + 1 + usize::from(len) % (SIZE - start)
}

#[derive(Debug)]
struct Op {
    id: FixedId,
    buf: u32,
    kind: FixedKind,
    range: Range<usize>,
    /// Reads: the bytes that must land (for pipes, known once reaped).
    expect: Option<Vec<u8>>,
    pipe: Option<usize>,
    /// Writes: where in the sink, and the bytes as they were at the start.
    sink_at: u64,
    snapshot: Vec<u8>,
    cqe: Option<CqeSlot>,
    handled: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Reads(usize),
    Writes(usize),
}

struct Harness {
    ring: Ring,
    fixed: FixedBuffers,
    _ring2: Ring,
    _fixed2: FixedBuffers,
    foreign: [CqeSlot; 2],
    source: File,
    source_bytes: Vec<u8>,
    sink: File,
    pipes: Vec<(File, File)>,
    // The model.
    content: Vec<Vec<u8>>,
    state: Vec<State>,
    ops: Vec<Op>,
    pipe_data: Vec<VecDeque<u8>>,
    pipe_reader: Vec<Option<usize>>,
    fed: u8,
}

impl Harness {
    fn new() -> Self {
        let mut ring = ring();
        let fixed = FixedBuffers::register(&mut ring, BUFS, SIZE).unwrap();
        let source = temp("source");
        let source_bytes: Vec<u8> = (0..FILE_LEN).map(|i| (i * 13 + i / 256) as u8).collect();
        source.write_all_at(&source_bytes, 0).unwrap();
        let sink = temp("sink");
        // Another ring's fixed write: its CQE names that table's live
        // operation, never one of ours.
        let mut ring2 = self::ring();
        let mut fixed2 = FixedBuffers::register(&mut ring2, 2, SIZE).unwrap();
        fixed2.write_fixed(&mut ring2, sink.as_raw_fd(), 0, 0..8, 1 << 20).unwrap();
        ring2.submit().unwrap();
        let other_ring = reap_one(&mut ring2);
        // A CQE of this ring that is not a fixed operation's.
        ring.push_op(SqeContext::for_fd(5), Nop::new()).unwrap();
        ring.submit().unwrap();
        let nop = reap_one(&mut ring);
        Harness {
            ring,
            fixed,
            _ring2: ring2,
            _fixed2: fixed2,
            foreign: [other_ring, nop],
            source,
            source_bytes,
            sink,
            pipes: (0..PIPES).map(|_| pipe()).collect(),
            content: vec![vec![0; SIZE]; BUFS as usize],
            state: vec![State::Idle; BUFS as usize],
            ops: Vec::new(),
            pipe_data: vec![VecDeque::new(); PIPES],
            pipe_reader: vec![None; PIPES],
            fed: 0,
        }
    }

    fn start(&mut self, kind: FixedKind, buf: u32, range: Range<usize>, pipe: Option<usize>, offset: u64) {
        let b = buf as usize;
        let sink_at = (self.ops.len() * SIZE) as u64;
        let r = match (kind, pipe) {
            (FixedKind::Read, Some(p)) => {
                let fd = self.pipes[p].0.as_raw_fd();
                self.fixed.read_fixed(&mut self.ring, fd, buf, range.clone(), u64::MAX)
            }
            (FixedKind::Read, None) => {
                self.fixed.read_fixed(&mut self.ring, self.source.as_raw_fd(), buf, range.clone(), offset)
            }
            _ => self.fixed.write_fixed(&mut self.ring, self.sink.as_raw_fd(), buf, range.clone(), sink_at),
        };
        if self.state[b] != State::Idle {
            assert!(matches!(r, Err(Error::Busy { .. })), "a second operation on a busy buffer: {r:?}");
            return;
        }
        let id = r.unwrap();
        self.ring.submit().unwrap();
        let n = self.ops.len();
        self.state[b] = if kind == FixedKind::Read { State::Writes(n) } else { State::Reads(n) };
        let expect = (kind == FixedKind::Read && pipe.is_none())
            .then(|| self.source_bytes[offset as usize..offset as usize + range.len()].to_vec());
        if let Some(p) = pipe {
            self.pipe_reader[p] = Some(n);
        }
        let snapshot = self.content[b][range.clone()].to_vec();
        self.ops.push(Op { id, buf, kind, range, expect, pipe, sink_at, snapshot, cqe: None, handled: false });
    }

    /// Reaps until every operation that can complete has its CQE.
    fn settle(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut slots = [CqeSlot::EMPTY; 8];
        loop {
            let waiting =
                self.ops.iter().any(|op| op.cqe.is_none() && op.pipe.is_none_or(|p| !self.pipe_data[p].is_empty()));
            if !waiting {
                return;
            }
            assert!(Instant::now() < deadline, "timed out waiting for completions");
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

    fn on_cqe(&mut self, slot: CqeSlot) {
        let c = slot.cqe();
        let i = self
            .ops
            .iter()
            .position(|op| op.cqe.is_none() && op.id.user_data() == c.user_data())
            .unwrap_or_else(|| panic!("a CQE of no operation in flight: {c:?}"));
        let op = &mut self.ops[i];
        let res = usize::try_from(c.res()).unwrap_or_else(|_| panic!("{c:?}: failed"));
        if let Some(p) = op.pipe {
            let queued = self.pipe_data[p].len();
            assert!(res >= 1 && res <= op.range.len().min(queued), "{c:?}: {res} bytes, {queued} in the pipe");
            op.expect = Some(self.pipe_data[p].drain(..res).collect());
            self.pipe_reader[p] = None;
        } else {
            assert_eq!(res, op.range.len(), "{c:?}: a file moves the whole range");
        }
        op.cqe = Some(slot);
    }

    fn run(&mut self, step: &Step) {
        match *step {
            Step::ReadFile { buf, range, offset } => {
                let range = to_range(range);
                let offset = u64::from(offset) % (FILE_LEN - range.len()) as u64;
                self.start(FixedKind::Read, buf, range, None, offset);
            }
            Step::ReadPipe { buf, range, pipe } if self.pipe_reader[pipe].is_none() => {
                self.start(FixedKind::Read, buf, to_range(range), Some(pipe), 0);
            }
            Step::Write { buf, range } => self.start(FixedKind::Write, buf, to_range(range), None, 0),
            Step::Feed { pipe, n } => {
                let bytes: Vec<u8> = (0..=n)
                    .map(|_| {
                        self.fed = self.fed.wrapping_add(1);
                        self.fed
                    })
                    .collect();
                self.pipes[pipe].1.write_all(&bytes).unwrap();
                self.pipe_data[pipe].extend(bytes);
            }
            Step::Handle(i) => {
                let ready: Vec<usize> =
                    (0..self.ops.len()).filter(|&k| self.ops[k].cqe.is_some() && !self.ops[k].handled).collect();
                if !ready.is_empty() {
                    self.handle(ready[i.index(ready.len())]);
                }
            }
            Step::Replay(i) => {
                let done: Vec<usize> = (0..self.ops.len()).filter(|&k| self.ops[k].handled).collect();
                if !done.is_empty() {
                    let slot = self.ops[done[i.index(done.len())]].cqe.unwrap();
                    let r = self.fixed.handle_cqe(&slot.cqe());
                    assert!(r.is_none(), "a replayed CQE was taken: {r:?}");
                }
            }
            Step::Foreign(which) => {
                let r = self.fixed.handle_cqe(&self.foreign[usize::from(which)].cqe());
                assert!(r.is_none(), "a foreign CQE was taken: {r:?}");
            }
            Step::Access { buf, fill } => {
                let b = buf as usize;
                match self.fixed.buffer_mut(buf) {
                    Ok(bytes) => {
                        assert_eq!(self.state[b], State::Idle, "buffer_mut lent a busy buffer");
                        for (i, x) in bytes.iter_mut().enumerate() {
                            *x = fill.wrapping_add(i as u8);
                        }
                        self.content[b].copy_from_slice(bytes);
                    }
                    Err(e) => {
                        assert!(matches!(e, Error::Busy { .. }), "{e}");
                        assert_ne!(self.state[b], State::Idle, "buffer_mut refused an idle buffer");
                    }
                }
            }
            _ => {}
        }
        self.settle();
        self.check();
    }

    fn handle(&mut self, k: usize) {
        let slot = self.ops[k].cqe.unwrap();
        let done = self.fixed.handle_cqe(&slot.cqe()).expect("its own CQE");
        let op = &mut self.ops[k];
        op.handled = true;
        let b = op.buf as usize;
        assert_eq!(
            (done.id, done.kind, done.index, done.free, done.notification),
            (op.id, op.kind, op.buf, true, false)
        );
        assert_eq!(self.state[b], if op.kind == FixedKind::Read { State::Writes(k) } else { State::Reads(k) });
        self.state[b] = State::Idle;
        let res = usize::try_from(done.res).unwrap();
        if op.kind == FixedKind::Read {
            let expect = op.expect.as_ref().unwrap();
            assert_eq!(expect.len(), res);
            let at = op.range.start;
            self.content[b][at..at + res].copy_from_slice(expect);
            // `check` compares the whole buffer: the bytes read, and
            // nothing else changed.
        } else {
            let mut got = vec![0; res];
            self.sink.read_exact_at(&mut got, op.sink_at).unwrap();
            assert_eq!(got, op.snapshot, "the bytes written are the buffer's when the write started");
        }
    }

    fn check(&mut self) {
        let in_flight = self.state.iter().filter(|s| **s != State::Idle).count();
        assert_eq!(self.fixed.in_flight(), in_flight);
        for buf in 0..BUFS {
            let b = buf as usize;
            let want = match self.state[b] {
                State::Idle => BufferState::Idle,
                State::Reads(k) => BufferState::KernelReads(self.ops[k].id),
                State::Writes(k) => BufferState::KernelWrites(self.ops[k].id),
            };
            assert_eq!(self.fixed.state(buf).unwrap(), want);
            match (self.state[b], self.fixed.buffer(buf)) {
                (State::Writes(_), Err(Error::Busy { .. })) => {}
                (State::Idle | State::Reads(_), Ok(bytes)) => {
                    assert_eq!(bytes, &self.content[b][..], "buffer {buf} ({:?}) shows other bytes", self.state[b]);
                }
                (s, r) => panic!("buffer({buf}) in {s:?}: {r:?}"),
            }
            let r = self.fixed.buffer_mut(buf).map(|_| ());
            match self.state[b] {
                State::Idle => r.unwrap(),
                _ => assert!(matches!(r, Err(Error::Busy { .. })), "buffer_mut({buf}): {r:?}"),
            }
        }
    }

    /// Feeds every waiting pipe read, handles every CQE, and gives the
    /// table back.
    fn finish(mut self) {
        for p in 0..PIPES {
            if let Some(k) = self.pipe_reader[p] {
                let n = self.ops[k].range.len() as u8 - 1;
                self.run(&Step::Feed { pipe: p, n });
            }
        }
        self.settle();
        for k in 0..self.ops.len() {
            if !self.ops[k].handled {
                self.handle(k);
            }
        }
        self.check();
        assert_eq!(self.fixed.in_flight(), 0);
        assert!(self.fixed.into_inner().is_ok());
    }
}

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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(128)))]

    #[test]
    fn fixed_buffers_follow_the_model(steps in prop::collection::vec(step(), 1..80)) {
        let mut h = Harness::new();
        for s in &steps {
            h.run(s);
        }
        h.finish();
    }
}
