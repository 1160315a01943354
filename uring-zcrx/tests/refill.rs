//! The refill ring's protocol against its shared memory, with this test
//! playing the kernel's part exactly as `io_uring/zcrx.c` does: an
//! acquire load of the tail, entries read at `head & mask`, a release
//! store of the head. Both header layouts (6.15–6.18 and 7.x) are
//! covered; no registration is needed, so every kernel runs all of it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use uring_core::{Mapping, Options, Ring, sys};
use uring_zcrx::{Error, MAX_REFILL_ENTRIES, RefillOffsets, RefillRing, ZcrxSupport};

const LAYOUTS: [(&str, RefillOffsets); 2] = [("V1", RefillOffsets::V1), ("V2", RefillOffsets::V2)];
const RQE: usize = size_of::<sys::io_uring_zcrx_rqe>();

/// A zeroed region of whole pages for `entries` entries laid out as
/// `offsets` say.
fn region(offsets: RefillOffsets, entries: u32) -> Arc<Mapping> {
    let len = offsets.region_len(entries).next_multiple_of(Mapping::page_size());
    Arc::new(Mapping::anonymous(len, false).expect("mmap"))
}

/// The refill entry for the `k`th buffer: an area token in the top bits,
/// a page-aligned offset, a length that changes with `k`.
fn entry(k: u64) -> (u64, u32) {
    (((k % 5) << sys::IORING_ZCRX_AREA_SHIFT) | ((k * 4096) & ((1 << 40) - 1)), (k % 4096) as u32 + 1)
}

/// A small deterministic generator for irregular batch sizes.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    *state >> 33
}

/// A copy of the region's bytes.
fn snapshot(region: &Mapping) -> Vec<u8> {
    // SAFETY: the mapping is `len` readable bytes; no thread writes it
    // while the single-threaded tests take snapshots.
    unsafe { std::slice::from_raw_parts(region.ptr(), region.len()) }.to_vec()
}

/// Stores `value` as the u32 at byte `at` of the region (the kernel's
/// view of head or tail, set before a ring is made over it, or
/// corrupted).
fn store(region: &Mapping, at: u32, value: u32) {
    assert!(at as usize + 4 <= region.len() && at.is_multiple_of(4));
    // SAFETY: in bounds and 4-aligned (checked above; the mapping is
    // page-aligned); the location is only ever accessed atomically.
    unsafe { &*region.ptr().add(at as usize).cast::<AtomicU32>() }.store(value, Ordering::Release);
}

/// The 16 bytes the kernel reads for `(off, len)`.
fn rqe_bytes(off: u64, len: u32) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&off.to_ne_bytes());
    b[8..12].copy_from_slice(&len.to_ne_bytes());
    b
}

/// The kernel's side of the ring, as `io_uring/zcrx.c` consumes it.
struct Kernel {
    head: *const AtomicU32,
    tail: *const AtomicU32,
    rqes: *const sys::io_uring_zcrx_rqe,
    nr_entries: u32,
    cached_head: u32,
    _region: Arc<Mapping>,
}

// SAFETY: the pointers point into `_region`, which the value keeps
// mapped; the kernel side touches head and tail only atomically and
// reads entries only below the tail it acquired, as the kernel does from
// any CPU.
unsafe impl Send for Kernel {}

impl Kernel {
    fn of(ring: &RefillRing) -> Self {
        let (head, tail, rqes) = ring.raw_parts();
        // SAFETY: `head` points to the ring's live head.
        let cached_head = unsafe { &*head }.load(Ordering::Relaxed);
        Kernel { head, tail, rqes, nr_entries: ring.entries(), cached_head, _region: Arc::clone(ring.region()) }
    }

    /// The tail as the kernel sees it (acquire).
    fn tail(&self) -> u32 {
        // SAFETY: `tail` points into the live region.
        unsafe { &*self.tail }.load(Ordering::Acquire)
    }

    /// The head as stored in the region.
    fn stored_head(&self) -> u32 {
        // SAFETY: `head` points into the live region.
        unsafe { &*self.head }.load(Ordering::Acquire)
    }

    /// Consumes at most `max` entries: acquire the tail, take
    /// `min(tail - head, entries, max)` entries from `head & mask`, then
    /// release-store the head. Returns `(off, len, pad)` of each.
    fn consume(&mut self, max: u32, out: &mut Vec<(u64, u32, u32)>) -> u32 {
        let tail = self.tail();
        let n = tail.wrapping_sub(self.cached_head).min(self.nr_entries).min(max);
        for _ in 0..n {
            let idx = (self.cached_head & (self.nr_entries - 1)) as usize;
            self.cached_head = self.cached_head.wrapping_add(1);
            // SAFETY: `idx` is below the entry count; the producer wrote
            // this entry before its release store of the tail acquired
            // above, and does not write it again until the head stored
            // below passes it.
            let rqe = unsafe { self.rqes.add(idx).read_volatile() };
            out.push((rqe.off, rqe.len, rqe.__pad));
        }
        if n > 0 {
            // SAFETY: `head` points into the live region.
            unsafe { &*self.head }.store(self.cached_head, Ordering::Release);
        }
        n
    }
}

#[test]
fn entries_head_and_tail_are_written_exactly_where_the_kernel_reads_them() {
    for (name, offsets) in LAYOUTS {
        let region = region(offsets, 8);
        // Garbage everywhere but head and tail, so that every byte the
        // producer writes (the pad included) shows.
        // SAFETY: the mapping is `len` writable bytes, not yet shared.
        unsafe { region.ptr().write_bytes(0xAA, region.len()) };
        store(&region, offsets.head, 0);
        store(&region, offsets.tail, 0);
        let mut ring = RefillRing::new(Arc::clone(&region), offsets, 8).unwrap();
        let mut kernel = Kernel::of(&ring);
        let mut model = snapshot(&region);
        let mut consumed = Vec::new();
        for k in 0..20u64 {
            let (off, len) = entry(k);
            // Keep the ring from filling: the kernel takes one entry
            // every second push.
            assert!(ring.push(off, len), "{name}: push {k}");
            let slot = offsets.rqes as usize + (k as usize & 7) * RQE;
            model[slot..slot + RQE].copy_from_slice(&rqe_bytes(off, len));
            assert_eq!(snapshot(&region), model, "{name}: after push {k}, only entry slot {} changed", k & 7);
            ring.publish();
            let t = offsets.tail as usize;
            model[t..t + 4].copy_from_slice(&(k as u32 + 1).to_ne_bytes());
            assert_eq!(snapshot(&region), model, "{name}: publish stores the tail, nothing else");
            if k % 2 == 1 {
                let n = kernel.consume(3, &mut consumed);
                assert!(n > 0);
                let h = offsets.head as usize;
                model[h..h + 4].copy_from_slice(&kernel.cached_head.to_ne_bytes());
                assert_eq!(snapshot(&region), model, "{name}: the kernel's head store");
            }
        }
        kernel.consume(u32::MAX, &mut consumed);
        let want: Vec<_> = (0..20).map(entry).map(|(o, l)| (o, l, 0)).collect();
        assert_eq!(consumed, want, "{name}: the kernel read every entry, in order, pad 0");
        assert_eq!(ring.head(), 20);
        assert_eq!(ring.pending(), 0);
        println!("{name} {offsets:?}: 20 entries through 8 slots, byte for byte");
    }
}

#[test]
fn the_tail_is_not_visible_before_publish_and_is_acquired_after() {
    for (name, offsets) in LAYOUTS {
        let mut ring = RefillRing::new(region(offsets, 16), offsets, 16).unwrap();
        let mut kernel = Kernel::of(&ring);
        let mut got = Vec::new();
        for k in 0..5 {
            let (o, l) = entry(k);
            assert!(ring.push(o, l));
        }
        assert_eq!(ring.tail(), 5, "{name}: the producer's tail");
        assert_eq!(ring.pending(), 5);
        assert_eq!(kernel.tail(), 0, "{name}: not published");
        assert_eq!(kernel.consume(u32::MAX, &mut got), 0, "{name}: nothing to consume before publish");
        assert_eq!(kernel.stored_head(), 0);
        ring.publish();
        assert_eq!(kernel.tail(), 5, "{name}: published");
        assert_eq!(kernel.consume(u32::MAX, &mut got), 5);
        let want: Vec<_> = (0..5).map(entry).map(|(o, l)| (o, l, 0)).collect();
        assert_eq!(got, want);
        assert_eq!(ring.head(), 5);
        assert_eq!(ring.pending(), 0);
        // Publishing again with nothing new stores nothing new.
        ring.publish();
        assert_eq!(kernel.tail(), 5);
        let (o, l) = entry(5);
        assert!(ring.push(o, l));
        assert_eq!(kernel.tail(), 5, "{name}: the sixth entry is not published yet");
        ring.publish();
        assert_eq!(kernel.tail(), 6);
    }
}

#[test]
fn wrap_around_over_many_cycles_keeps_every_entry_in_order() {
    const TOTAL: u64 = 10_000;
    for (name, offsets) in LAYOUTS {
        // From 0, and from just below 2^32 so that the free-running head
        // and tail wrap through zero on the way.
        for start in [0u32, u32::MAX - 2500] {
            let region = region(offsets, 8);
            store(&region, offsets.head, start);
            store(&region, offsets.tail, start);
            let mut ring = RefillRing::new(region, offsets, 8).unwrap();
            assert_eq!((ring.tail(), ring.head(), ring.free()), (start, start, 8));
            let mut kernel = Kernel::of(&ring);
            let mut rng = u64::from(start) + 7;
            let (mut pushed, mut got) = (0u64, Vec::with_capacity(TOTAL as usize));
            let mut full_seen = 0;
            while (got.len() as u64) < TOTAL {
                let batch = next(&mut rng) % 11;
                for _ in 0..batch {
                    if pushed == TOTAL {
                        break;
                    }
                    let (o, l) = entry(pushed);
                    if !ring.push(o, l) {
                        full_seen += 1;
                        break;
                    }
                    pushed += 1;
                }
                ring.publish();
                kernel.consume((next(&mut rng) % 9) as u32, &mut got);
            }
            for (k, &(o, l, pad)) in got.iter().enumerate() {
                let (wo, wl) = entry(k as u64);
                assert_eq!((o, l, pad), (wo, wl, 0), "{name} from {start}: entry {k}");
            }
            let end = start.wrapping_add(TOTAL as u32);
            assert_eq!((ring.tail(), ring.head(), kernel.tail()), (end, end, end), "{name} from {start}");
            assert!(full_seen > 0, "{name}: the batches never filled the ring");
            println!(
                "{name} from {start:#x}: {TOTAL} entries, {} cycles of 8 slots, full {full_seen} times",
                TOTAL / 8
            );
        }
    }
}

#[test]
fn a_full_ring_refuses_and_overwrites_nothing() {
    for (name, offsets) in LAYOUTS {
        let region = region(offsets, 8);
        let mut ring = RefillRing::new(Arc::clone(&region), offsets, 8).unwrap();
        let mut kernel = Kernel::of(&ring);
        let mut got = Vec::new();
        // Three through, so that the full ring does not start at slot 0.
        for k in 0..3 {
            let (o, l) = entry(k);
            assert!(ring.push(o, l));
        }
        ring.publish();
        assert_eq!(kernel.consume(3, &mut got), 3);
        for k in 3..11 {
            let (o, l) = entry(k);
            assert!(ring.push(o, l), "{name}: push {k}");
        }
        // Full before publishing (tail - head == entries locally) …
        assert_eq!(ring.tail().wrapping_sub(ring.head()), 8);
        assert_eq!(ring.free(), 0);
        let before = snapshot(&region);
        let (o, l) = entry(11);
        assert!(!ring.push(o, l), "{name}: a ninth entry in an 8-entry ring");
        assert_eq!(snapshot(&region), before, "{name}: the refused push wrote nothing");
        // … and after.
        ring.publish();
        let before = snapshot(&region);
        assert!(!ring.push(o, l));
        assert_eq!(ring.free(), 0);
        assert_eq!(ring.tail(), 11);
        assert_eq!(kernel.tail(), 11);
        assert_eq!(snapshot(&region), before, "{name}: slot {} (entry 3, unconsumed) unchanged", 11 & 7);
        // The kernel frees one slot: exactly that slot takes the entry.
        assert_eq!(kernel.consume(1, &mut got), 1);
        assert_eq!(ring.free(), 1);
        let mut want = snapshot(&region);
        assert!(ring.push(o, l));
        let slot = offsets.rqes as usize + (11 & 7) * RQE;
        want[slot..slot + RQE].copy_from_slice(&rqe_bytes(o, l));
        assert_eq!(snapshot(&region), want);
        assert!(!ring.push(0, 1), "{name}: full again");
        ring.publish();
        kernel.consume(u32::MAX, &mut got);
        let want: Vec<_> = (0..12).map(entry).map(|(o, l)| (o, l, 0)).collect();
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn a_head_moved_past_the_tail_is_full_never_room() {
    for (name, offsets) in LAYOUTS {
        // A fresh region whose head is ahead of its tail.
        let mem = region(offsets, 8);
        store(&mem, offsets.head, 5);
        let mut ring = RefillRing::new(Arc::clone(&mem), offsets, 8).unwrap();
        let before = snapshot(&mem);
        assert_eq!(ring.free(), 0, "{name}: head 5, tail 0");
        assert!(!ring.push(1, 1));
        assert_eq!(snapshot(&mem), before);

        // A full ring whose head then jumps past the tail, by a little and
        // by a lot, or falls more than a ring behind it.
        let mem = region(offsets, 8);
        let mut ring = RefillRing::new(Arc::clone(&mem), offsets, 8).unwrap();
        for k in 0..8 {
            let (o, l) = entry(k);
            assert!(ring.push(o, l));
        }
        ring.publish();
        let before = snapshot(&mem);
        for bad in [9u32, 8 + 3, 8 + (1 << 31), 8u32.wrapping_sub(9), 8u32.wrapping_sub(100)] {
            store(&mem, offsets.head, bad);
            let mut now = before.clone();
            let h = offsets.head as usize;
            now[h..h + 4].copy_from_slice(&bad.to_ne_bytes());
            assert_eq!(ring.free(), 0, "{name}: head {bad}, tail 8");
            assert!(!ring.push(0xdead, 1), "{name}: head {bad}, tail 8");
            ring.publish();
            assert_eq!(snapshot(&mem), now, "{name}: head {bad}: nothing written");
        }
        // A sane head again: room again.
        store(&mem, offsets.head, 2);
        assert_eq!(ring.free(), 2);
        assert!(ring.push(1, 1) && ring.push(2, 2) && !ring.push(3, 3));
    }
}

#[test]
fn a_concurrent_kernel_thread_consumes_a_million_entries_in_order() {
    const TOTAL: u64 = 1_000_000;
    for (name, offsets) in LAYOUTS {
        let mut ring = RefillRing::new(region(offsets, 32), offsets, 32).unwrap();
        let mut kernel = Kernel::of(&ring);
        let consumer = std::thread::spawn(move || {
            let mut rng = 99u64;
            let mut got = Vec::with_capacity(64);
            let (mut seen, mut bad) = (0u64, None);
            while seen < TOTAL {
                got.clear();
                if kernel.consume(1 + (next(&mut rng) % 40) as u32, &mut got) == 0 {
                    std::thread::yield_now();
                    continue;
                }
                for &(o, l, pad) in &got {
                    let (wo, wl) = entry(seen);
                    if bad.is_none() && (o, l, pad) != (wo, wl, 0) {
                        bad = Some((seen, o, l, pad));
                    }
                    seen += 1;
                }
            }
            (seen, bad, kernel.stored_head())
        });
        let mut rng = 5u64;
        let mut pushed = 0u64;
        let mut waits = 0u64;
        while pushed < TOTAL {
            let batch = 1 + next(&mut rng) % 48;
            let mut n = 0;
            while n < batch && pushed < TOTAL {
                let (o, l) = entry(pushed);
                if !ring.push(o, l) {
                    break;
                }
                pushed += 1;
                n += 1;
            }
            ring.publish();
            if n < batch && pushed < TOTAL {
                waits += 1;
                std::thread::yield_now();
            }
        }
        let (seen, bad, head) = consumer.join().expect("consumer thread");
        assert_eq!(bad, None, "{name}: first wrong entry (index, off, len, pad)");
        assert_eq!(seen, TOTAL);
        assert_eq!(head, TOTAL as u32);
        assert_eq!(ring.head(), TOTAL as u32);
        assert_eq!(ring.pending(), 0);
        println!(
            "{name}: {TOTAL} entries through 32 slots to a concurrent consumer; producer found it full {waits} times"
        );
    }
}

#[test]
fn new_rejects_bad_entry_counts_and_layouts() {
    let page = Mapping::page_size();
    let one_page = || Arc::new(Mapping::anonymous(page, false).unwrap());
    let config = |r: Result<RefillRing, Error>, what: &str, needle: &str| match r {
        Err(Error::Config(m)) => assert!(m.contains(needle), "{what}: {m}"),
        other => panic!("{what}: expected Error::Config, got {other:?}"),
    };
    for entries in [0, 3, 48, MAX_REFILL_ENTRIES + 1, 65536, u32::MAX] {
        config(RefillRing::new(one_page(), RefillOffsets::V1, entries), &format!("{entries} entries"), "power of two");
    }
    let o = |head, tail, rqes| RefillOffsets { head, tail, rqes };
    let bad = [
        ("entries past the end", o(0, 64, 128), 256),
        ("head past the end", o(page as u32, 64, 128), 1),
        ("rqes past the end", o(0, 64, page as u32), 1),
        ("head on tail", o(0, 0, 64), 8),
        ("tail inside the entries", o(0, 64, 64), 8),
        ("head inside the entries", o(72, 0, 64), 8),
        ("tail after the entries", o(0, 2048, 64), 8),
        ("misaligned head", o(2, 8, 64), 8),
        ("misaligned tail", o(0, 6, 64), 8),
        ("misaligned entries", o(0, 4, 68), 8),
    ];
    for (what, offsets, entries) in bad {
        config(RefillRing::new(one_page(), offsets, entries), what, "do not fit");
    }
    // The limits themselves are accepted: one entry, the most entries,
    // and entries ending on the region's last byte.
    for (what, region, offsets, entries) in [
        ("1 entry", one_page(), RefillOffsets::V2, 1),
        (
            "the most entries",
            Arc::new(Mapping::anonymous(RefillOffsets::V2.region_len(MAX_REFILL_ENTRIES), false).unwrap()),
            RefillOffsets::V2,
            MAX_REFILL_ENTRIES,
        ),
        ("an exact fit", one_page(), o(0, 4, (page - 128 * RQE) as u32), 128),
    ] {
        let mut ring = RefillRing::new(region, offsets, entries).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(ring.entries(), entries);
        assert_eq!(ring.free(), entries, "{what}");
        // The last slot is writable: fill the ring.
        for k in 0..u64::from(entries) {
            assert!(ring.push(k, 1), "{what}: push {k}");
        }
        assert!(!ring.push(0, 1));
    }
}

/// The known layout whose header fits in `rq_hdr_size` bytes and whose
/// entries start where `rq_hdr_size` aligned to `rq_hdr_alignment` puts
/// them.
fn layout_of(rq_hdr_size: u32, rq_hdr_alignment: u32) -> Option<(&'static str, RefillOffsets)> {
    let rqes = rq_hdr_size.next_multiple_of(rq_hdr_alignment);
    LAYOUTS.into_iter().find(|(_, o)| o.rqes == rqes && o.head.max(o.tail) + 4 <= rq_hdr_size)
}

#[test]
fn the_kernels_query_implies_a_known_refill_layout() {
    let mut ring = Ring::new(Options::default().entries(4)).expect("Ring::new");
    ring.start().expect("start");
    let support = ZcrxSupport::probe(ring.features());
    let Some(q) = support.query() else {
        println!(
            "SKIPPED the_kernels_query_implies_a_known_refill_layout: kernel {} does not answer \
             IO_URING_QUERY_ZCRX (errno {:?}); it predates the query, so its layout is RefillOffsets::V1 {:?}",
            support.kernel_release(),
            support.query_errno(),
            RefillOffsets::V1
        );
        return;
    };
    assert!(q.rq_hdr_alignment.is_power_of_two(), "{q:?}");
    let rqes = q.rq_hdr_size.next_multiple_of(q.rq_hdr_alignment);
    let found = layout_of(q.rq_hdr_size, q.rq_hdr_alignment);
    println!(
        "kernel {}: rq_hdr_size {} rq_hdr_alignment {}: entries at {rqes}, layout {found:?}",
        support.kernel_release(),
        q.rq_hdr_size,
        q.rq_hdr_alignment,
    );
    let (name, layout) = found.unwrap_or_else(|| panic!("no known layout has entries at {rqes}: {q:?}"));
    // The one-line header (head and tail in 8 bytes) is V1; a header of
    // two cache lines (head and tail each on its own) is V2.
    match q.rq_hdr_size {
        8 => assert_eq!(layout, RefillOffsets::V1, "{name}"),
        _ => {
            assert_eq!(layout, RefillOffsets::V2, "{name}");
            assert_eq!(rqes, RefillOffsets::V2.rqes);
        }
    }
}
