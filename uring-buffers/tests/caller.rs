//! The caller's memory as registered buffers, against the kernel: bytes
//! move through a `Vec`, a `Box<[u8]>`, an anonymous and a 2 MiB huge-page
//! mapping split into buffers; dense, sparse and update-in-place tables;
//! resource tags that arrive only after the last request on the old
//! memory completed; a replace-then-reuse that waits for the tag; and tag
//! CQEs that are replayed, another ring's, or forged, releasing nothing.

mod common;
#[path = "../../uring-core/tests/common/huge.rs"]
mod huge;

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use uring_buffers::{CallerRegion, FixedBuffers, RawMemory, RegisteredBuffers, TagEvent};
use uring_core::{CqeSlot, Error as CoreError, Mapping, Ring, SqeContext};
use uring_ops::RingOps;
use uring_ops::cmd::Nop;
use uring_ops::file::ReadFixed;

use common::{reap, ring};

fn temp(tag: &str) -> File {
    // Tests run in parallel: each file gets its own name.
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let p = std::env::temp_dir().join(format!("uring-caller-{tag}-{}-{n}", std::process::id()));
    let f = File::options().read(true).write(true).create(true).truncate(true).open(&p).unwrap();
    std::fs::remove_file(&p).unwrap();
    f
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: fresh fds we own.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

/// Waits up to `ms` for one CQE; `None` when none came.
fn try_reap(ring: &mut Ring, ms: u64) -> Option<CqeSlot> {
    let mut slots = [CqeSlot::EMPTY; 1];
    match ring.wait_for(&mut slots, 1, Some(Duration::from_millis(ms))) {
        Ok(r) if r.len() == 1 => Some(slots[0]),
        Ok(_) | Err(CoreError::WouldBlock) => None,
        Err(e) => panic!("{e}"),
    }
}

/// Writes `range` of buffer `index` to a temp file with a fixed write and
/// reads it back through the file; then reads it back into the buffer with
/// a fixed read after scribbling over it.
fn round_trip(ring: &mut Ring, bufs: &mut FixedBuffers, index: u32, len: usize, seed: u8) {
    let data = pattern(len, seed);
    bufs.buffer_mut(index).unwrap()[..len].copy_from_slice(&data);
    let mut f = temp("rt");
    let id = bufs.write_fixed(ring, f.as_raw_fd(), index, 0..len, 0).unwrap();
    let cqe = reap(ring, 1)[0];
    let done = bufs.handle_cqe(&cqe.cqe()).expect("the write's CQE");
    assert_eq!((done.id, done.res), (id, len as i32));
    let mut on_disk = Vec::new();
    f.rewind().unwrap();
    f.read_to_end(&mut on_disk).unwrap();
    assert_eq!(on_disk, data, "the file holds the caller memory's bytes");
    bufs.buffer_mut(index).unwrap().fill(0xEE);
    bufs.read_fixed(ring, f.as_raw_fd(), index, 0..len, 0).unwrap();
    let cqe = reap(ring, 1)[0];
    assert_eq!(bufs.handle_cqe(&cqe.cqe()).expect("the read's CQE").res, len as i32);
    assert_eq!(&bufs.buffer(index).unwrap()[..len], &data[..], "the fixed read wrote the caller memory");
}

#[test]
fn vec_box_and_mapping_memory_move_bytes_through_fixed_io() {
    let mut ring = ring();
    let arena = Mapping::anonymous(4 * 4096, false).unwrap();
    let arena_addr = arena.ptr() as usize;
    let regions = vec![
        CallerRegion::new(vec![0u8; 3000]),
        CallerRegion::new(vec![0u8; 777].into_boxed_slice()),
        CallerRegion::new(arena).split(4096).unwrap(),
    ];
    let mut bufs = FixedBuffers::register_memory(&mut ring, regions).unwrap();
    assert_eq!(bufs.len(), 6);
    assert_eq!(bufs.buffer(1).unwrap().len(), 777);
    assert_eq!(bufs.buffer(4).unwrap().as_ptr() as usize, arena_addr + 2 * 4096, "the arena is carved in order");
    round_trip(&mut ring, &mut bufs, 0, 3000, 1);
    round_trip(&mut ring, &mut bufs, 1, 777, 2);
    round_trip(&mut ring, &mut bufs, 4, 4096, 3);
    round_trip(&mut ring, &mut bufs, 5, 100, 4);
}

#[test]
fn a_huge_page_arena_split_into_buffers_moves_bytes() {
    let restore = match huge::reserve_huge_pages(1) {
        Ok(r) => r,
        Err(why) => {
            println!("SKIPPED: no 2 MiB huge page can be reserved: {why}");
            return;
        }
    };
    let huge = Mapping::anonymous(2 << 20, true);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let huge = match huge {
            Ok(m) => m,
            Err(e) => {
                println!("SKIPPED: a huge page was reserved but mmap(MAP_HUGETLB) failed: {e}");
                return;
            }
        };
        assert_eq!(huge.ptr() as usize % (2 << 20), 0, "huge pages are 2 MiB aligned");
        let mut ring = ring();
        let mut bufs =
            FixedBuffers::register_memory(&mut ring, vec![CallerRegion::new(huge).split(64 << 10).unwrap()]).unwrap();
        assert_eq!(bufs.len(), 32);
        round_trip(&mut ring, &mut bufs, 0, 64 << 10, 5);
        round_trip(&mut ring, &mut bufs, 31, 64 << 10, 6);
        // The whole arena back, after every buffer left the table.
        for i in 0..32 {
            bufs.remove(&mut ring, i).unwrap();
        }
        let mut released = None;
        for cqe in reap(&mut ring, 32) {
            let ev = bufs.handle_tag(&cqe.cqe()).expect("a tag of the arena");
            assert!(released.is_none(), "the arena comes back once, with its last buffer");
            released = ev.released;
        }
        let arena: Mapping = released.expect("the arena").downcast().unwrap();
        // SAFETY: the mapping is ours again: 2 MiB, readable.
        let bytes = unsafe { std::slice::from_raw_parts(arena.ptr(), arena.len()) };
        assert_eq!(&bytes[31 * (64 << 10)..][..64 << 10], &pattern(64 << 10, 6)[..], "the kernel's read is in it");
    }));
    if let Some(old) = restore {
        let _ = std::fs::write("/proc/sys/vm/nr_hugepages", format!("{old}"));
    }
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

#[test]
fn sparse_tables_take_caller_memory_in_place_and_give_it_back() {
    let mut ring = ring();
    let mut bufs = FixedBuffers::sparse(&mut ring, 8).unwrap();
    assert!(bufs.buffer(3).is_err(), "empty");
    assert_eq!(bufs.replace(&mut ring, 2, CallerRegion::new(vec![0u8; 8192]).split(4096).unwrap()).unwrap(), 2);
    round_trip(&mut ring, &mut bufs, 3, 4096, 7);
    // Update in place: slot 3 gets a new Vec; the old region comes back
    // once both of its buffers have left.
    bufs.replace(&mut ring, 3, CallerRegion::new(vec![1u8; 100])).unwrap();
    assert_eq!(bufs.buffer(3).unwrap(), &[1u8; 100][..]);
    let ev = bufs.handle_tag(&reap(&mut ring, 1)[0].cqe()).expect("slot 3's tag");
    assert_eq!(ev.index, 3);
    assert!(ev.released.is_none(), "slot 2 still holds the other half of the region");
    bufs.remove(&mut ring, 2).unwrap();
    assert!(bufs.buffer(2).is_err(), "removed");
    let ev = bufs.handle_tag(&reap(&mut ring, 1)[0].cqe()).expect("slot 2's tag");
    let old: Vec<u8> = ev.released.expect("the whole region").downcast().unwrap();
    assert_eq!(&old[4096..], &pattern(4096, 7)[..], "the region comes back with the bytes the kernel read into it");
    // Too many buffers for the table, or outside it: refused up front.
    assert!(bufs.replace(&mut ring, 7, CallerRegion::new(vec![0u8; 8192]).split(4096).unwrap()).is_err());
    assert!(bufs.remove(&mut ring, 8).is_err());
    assert!(bufs.replace(&mut ring, 0, CallerRegion::new(Vec::new())).is_err(), "an empty region");
}

/// Pushes a READ_FIXED of `len` bytes from `fd` into registered buffer
/// `index` at `addr` under token `token` (raw: the test keeps the memory
/// alive).
///
/// # Safety
///
/// `addr..addr + len` lies in buffer `index` of `ring`'s table, which the
/// kernel keeps until the read's CQE.
unsafe fn raw_read_fixed(ring: &mut Ring, fd: i32, addr: *mut u8, len: u32, index: u16, token: u64) {
    // SAFETY: forwarded to the caller.
    let op = unsafe { ReadFixed::from_raw_parts(fd, addr, len, index) }.offset(u64::MAX);
    ring.push_op(SqeContext::token(token).unwrap(), op).unwrap();
    ring.submit().unwrap();
}

#[test]
fn the_tag_arrives_only_after_the_last_read_on_the_old_buffer_completed() {
    let mut ring = ring();
    let mut bufs = RegisteredBuffers::register_memory(&mut ring, vec![CallerRegion::new(vec![0u8; 64])]).unwrap();
    let (r, w) = pipe();
    let (addr, _) = bufs.raw_parts(0).unwrap();
    // SAFETY: the buffer stays in the kernel's node until the read ends
    // (that is what the test checks); nothing reads it meanwhile.
    unsafe { raw_read_fixed(&mut ring, r.as_raw_fd(), addr, 64, 0, 0x1234_5003) };
    assert!(try_reap(&mut ring, 100).is_none(), "the pipe is empty: the read waits");
    bufs.replace(&mut ring, 0, CallerRegion::new(vec![0u8; 64])).unwrap();
    assert_eq!(bufs.pending_tags(), 1);
    assert!(try_reap(&mut ring, 300).is_none(), "no tag while the read holds the old buffer");
    let mut w = File::from(w);
    w.write_all(b"late bytes").unwrap();
    let cqes = reap(&mut ring, 2);
    assert_eq!(cqes[0].cqe().context().as_token(), Some(0x1234_5003), "the read completes first");
    assert_eq!(cqes[0].cqe().res(), 10);
    assert!(bufs.handle_tag(&cqes[0].cqe()).is_none(), "a read's CQE is no tag");
    let ev: TagEvent = bufs.handle_tag(&cqes[1].cqe()).expect("then the tag");
    assert_eq!(ev.index, 0);
    let old: Vec<u8> = ev.released.unwrap().downcast().unwrap();
    assert_eq!(&old[..10], b"late bytes", "the read landed in the replaced memory, after the replace");
    assert_eq!(bufs.pending_tags(), 0);
    assert_eq!(bufs.buffer(0).unwrap(), &[0u8; 64][..], "the new buffer saw nothing");
}

#[test]
fn replace_then_reuse_waits_for_the_tag_before_touching_the_memory() {
    let mut ring = ring();
    let mut bufs = FixedBuffers::register_memory(
        &mut ring,
        vec![CallerRegion::new(vec![0u8; 4096]), CallerRegion::new(vec![0u8; 4096])],
    )
    .unwrap();
    // Cycle one allocation through the table: out of slot 0, back in as
    // slot 1's buffer, and so on; each time only after its tag.
    let mut spare = vec![0u8; 4096];
    for round in 0..6u8 {
        let slot = u32::from(round % 2);
        bufs.replace(&mut ring, slot, CallerRegion::new(spare)).unwrap();
        let ev = loop {
            if let Some(ev) = bufs.handle_tag(&reap(&mut ring, 1)[0].cqe()) {
                break ev;
            }
        };
        assert_eq!(ev.index, slot);
        spare = ev.released.unwrap().downcast().unwrap();
        spare.fill(round); // the caller's again: writing it races with nothing
        round_trip(&mut ring, &mut bufs, slot, 4096, round);
    }
}

#[test]
fn replayed_foreign_and_forged_tag_cqes_release_nothing() {
    let mut ring_a = ring();
    let mut ring_b = ring();
    let mut a = RegisteredBuffers::register_memory(&mut ring_a, vec![CallerRegion::new(vec![1u8; 64])]).unwrap();
    let mut b = RegisteredBuffers::register_memory(&mut ring_b, vec![CallerRegion::new(vec![2u8; 64])]).unwrap();
    // Safe code cannot make the kernel post a tag: NOPs and file tags
    // with the layer's user_data are refused.
    a.replace(&mut ring_a, 0, CallerRegion::new(vec![3u8; 64])).unwrap();
    let tag_cqe = reap(&mut ring_a, 1)[0];
    let tag = tag_cqe.cqe().user_data();
    assert_eq!(SqeContext::from_raw(tag), None, "a tag is no caller context");
    let forged = SqeContext::of_user_data(tag);
    assert!(ring_b.push_op(forged, Nop::new()).is_err(), "a NOP with a tag's user_data");
    let (r, _w) = pipe();
    assert!(ring_b.register().files_tagged(&[r.as_raw_fd()], &[tag]).is_err(), "a file tagged like a buffer");
    // Another ring's table does not take ring A's tag.
    b.replace(&mut ring_b, 0, CallerRegion::new(vec![4u8; 64])).unwrap();
    assert!(b.handle_tag(&tag_cqe.cqe()).is_none(), "ring A's tag on ring B's table");
    // The real one, once.
    let copy = tag_cqe;
    let ev = a.handle_tag(&tag_cqe.cqe()).expect("the tag, from its ring");
    assert_eq!(ev.released.unwrap().downcast::<Vec<u8>>().unwrap(), vec![1u8; 64]);
    assert!(a.handle_tag(&copy.cqe()).is_none(), "a copy presented again releases nothing");
    // Ring B's tag, presented to A, releases nothing; to B, its memory.
    let b_tag = reap(&mut ring_b, 1)[0];
    assert!(a.handle_tag(&b_tag.cqe()).is_none());
    assert!(b.handle_tag(&b_tag.cqe()).unwrap().released.unwrap().is::<Vec<u8>>());
    assert!(a.handle_tag(&CqeSlot::EMPTY.cqe()).is_none());
    // A table with caller memory cannot be cloned into another ring.
    let mut ring_c = ring();
    assert!(a.clone_into(&ring_a, &mut ring_c).is_err());
}

#[test]
fn a_dropped_table_leaves_its_memory_to_the_ring_until_it_closes() {
    let mut ring = ring();
    let bufs = RegisteredBuffers::register_memory(&mut ring, vec![CallerRegion::new(vec![0u8; 4096])]).unwrap();
    let (r, w) = pipe();
    let (addr, _) = bufs.raw_parts(0).unwrap();
    // SAFETY: the table's memory stays in the vault attached to the ring
    // (what the test checks, under ASan in CI).
    unsafe { raw_read_fixed(&mut ring, r.as_raw_fd(), addr, 4096, 0, 0x7703) };
    drop(bufs);
    assert!(RegisteredBuffers::sparse(&mut ring, 1).is_err(), "EBUSY: the table is still registered");
    File::from(w).write_all(&[9u8; 4096]).unwrap();
    let c = reap(&mut ring, 1)[0];
    assert_eq!(
        (c.cqe().context().as_token(), c.cqe().res()),
        (Some(0x7703), 4096),
        "the read wrote memory the dropped table had, still alive"
    );
    drop(ring);
}

#[test]
fn raw_memory_is_registered_under_its_contract() {
    let mut ring = ring();
    let mut pool = vec![0u8; 3 * 4096].into_boxed_slice();
    let base = std::ptr::NonNull::new(pool.as_mut_ptr()).unwrap();
    // SAFETY: `pool` outlives the ring (declared before it would be
    // better; the ring is dropped explicitly below, before `pool`), and
    // nothing touches it until the ring has closed.
    let raw = unsafe { RawMemory::new(base, pool.len()) };
    let mut bufs = FixedBuffers::register_memory(&mut ring, vec![CallerRegion::new(raw).split(4096).unwrap()]).unwrap();
    round_trip(&mut ring, &mut bufs, 2, 4096, 9);
    drop(bufs);
    drop(ring);
    assert_eq!(&pool[2 * 4096..], &pattern(4096, 9)[..]);
}

#[test]
fn the_push_paths_refuse_exactly_the_layer_tags_file_tags_refuse() {
    // Tags this layer posts are layer values (`Layer::ResourceTag`); a file
    // tag is refused by `uring_core::is_layer_tag`, a push by uring-ops'
    // own check: they must agree on every mode and every layer id, known
    // or not, or one of them lets safe code forge a tag CQE.
    let mut ring = ring();
    let (r, _w) = pipe();
    // (Mode 1, pooled, is left out: a push refuses a pool slot that is not
    // live for a reason of its own.)
    for mode in [0u64, 2, 3] {
        for id in 0..=255u64 {
            let ud = mode | (id << 3) | (9 << 11);
            let pushed = ring.push_op(SqeContext::of_user_data(ud), Nop::new());
            assert_eq!(pushed.is_err(), uring_core::is_layer_tag(ud), "user_data {ud:#x}: {pushed:?}");
            assert_eq!(pushed.is_err(), mode == 3, "user_data {ud:#x}: every layer value, no other");
            if pushed.is_ok() {
                ring.submit().unwrap();
                reap(&mut ring, 1);
            }
            if mode == 3 {
                let filed = ring.register().files_tagged(&[r.as_raw_fd()], &[ud]);
                assert!(filed.is_err(), "file tag {ud:#x}: {filed:?}");
            }
        }
    }
}

#[test]
fn clearing_the_table_gives_every_region_back_before_unregistering() {
    let mut ring = ring();
    let mut bufs = FixedBuffers::register_memory(
        &mut ring,
        vec![CallerRegion::new(vec![1u8; 4096]).split(1024).unwrap(), CallerRegion::new(vec![2u8; 100])],
    )
    .unwrap();
    assert_eq!(bufs.len(), 5);
    round_trip(&mut ring, &mut bufs, 1, 1024, 8);
    let mut f = temp("clear");
    bufs.write_fixed(&mut ring, f.as_raw_fd(), 4, 0..100, 0).unwrap();
    assert!(matches!(bufs.clear(&mut ring), Err(uring_buffers::Error::Busy { .. })), "a write is in flight");
    let c = reap(&mut ring, 1)[0];
    bufs.handle_cqe(&c.cqe()).unwrap();
    bufs.clear(&mut ring).unwrap();
    let mut back = Vec::new();
    for c in reap(&mut ring, 5) {
        if let Some(r) = bufs.handle_tag(&c.cqe()).expect("a tag").released {
            back.push(r.downcast::<Vec<u8>>().unwrap());
        }
    }
    back.sort_by_key(Vec::len);
    assert_eq!(back.len(), 2, "two regions");
    assert_eq!(back[0], vec![2u8; 100]);
    assert_eq!(&back[1][1024..2048], &pattern(1024, 8)[..]);
    let mut on_disk = Vec::new();
    f.rewind().unwrap();
    f.read_to_end(&mut on_disk).unwrap();
    assert_eq!(on_disk, vec![2u8; 100]);
    bufs.into_inner().unwrap().unregister(&mut ring).unwrap();
}

#[test]
fn a_shared_mapping_is_refused_it_may_have_twins() {
    // Two mappings of one memfd reach the same pages: registering one
    // would let a second table lend out bytes the kernel writes.
    // SAFETY: memfd_create with a valid name.
    let fd = unsafe { libc::memfd_create(c"uring-twins".as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0);
    // SAFETY: a fresh fd we own.
    let file = unsafe { File::from_raw_fd(fd) };
    file.set_len(4096).unwrap();
    let a = Mapping::map_ring(file.as_raw_fd(), 4096, 0).unwrap();
    let b = Mapping::map_ring(file.as_raw_fd(), 4096, 0).unwrap();
    assert!(!a.is_private_anonymous());
    let mut ring = ring();
    let r = RegisteredBuffers::register_memory(&mut ring, vec![CallerRegion::new(a)]);
    assert!(matches!(r, Err(uring_buffers::Error::InvalidArgument(_))), "{r:?}");
    let mut bufs = RegisteredBuffers::sparse(&mut ring, 1).unwrap();
    assert!(bufs.replace(&mut ring, 0, CallerRegion::new(b)).is_err());
    assert!(Mapping::anonymous(4096, false).unwrap().is_private_anonymous());
}

/// Regression: `LayerData::payload_of` ignores the layer flag, and the
/// fixed-buffer table once decoded its operations through it, so a
/// `Layer::FixedBuffers` value with the flag set and a live operation's
/// payload (what a resource tag was, before tags got a layer of their own,
/// `Layer::ResourceTag`) was taken for that operation's completion: the
/// buffer went idle while the kernel still wrote into it. The table now
/// takes only its exact values (flag clear).
#[test]
fn a_flagged_value_with_a_live_operations_payload_frees_nothing() {
    use uring_core::{Layer, LayerData, Sqe};
    let mut ring = ring();
    let mut bufs = FixedBuffers::register_memory(&mut ring, vec![CallerRegion::new(vec![0u8; 64])]).unwrap();
    let (r, w) = pipe();
    // A read that stays in flight (the pipe is empty) on buffer 0.
    let id = bufs.read_fixed(&mut ring, r.as_raw_fd(), 0, 0..64, u64::MAX).unwrap();
    ring.submit().unwrap();
    let op = LayerData::decode(id.user_data()).expect("a layer value");
    assert_eq!((op.layer(), op.flag()), (Layer::FixedBuffers, false));
    let twin = LayerData::new(Layer::FixedBuffers, true, op.payload()).unwrap().raw();
    assert_eq!(
        LayerData::payload_of(twin, Layer::FixedBuffers),
        Some(op.payload()),
        "payload_of cannot tell them apart"
    );
    assert!(bufs.is_ours(id.user_data()));
    assert!(!bufs.is_ours(twin), "the flagged twin is not the operation's");
    // The kernel posts the twin (a NOP carrying it), from the table's ring,
    // after the read was queued: only its value tells it apart.
    {
        // SAFETY: a NOP names no memory. Its user_data is a
        // `Layer::FixedBuffers` value this test is not the owner of, on
        // purpose: it stands in for another owner's CQE with the same
        // layer and payload; the assertions below check the table does not
        // take it (if it did, the test fails before touching the buffer).
        let sqe = unsafe { ring.next_sqe() }.unwrap();
        *sqe = Sqe::new(uring_core::sys::IORING_OP_NOP as u8);
        sqe.user_data = twin;
    }
    ring.submit().unwrap();
    let nop = reap(&mut ring, 1)[0];
    assert_eq!(nop.cqe().user_data(), twin);
    assert_eq!(nop.cqe().ring_id(), ring.id());
    assert!(bufs.handle_cqe(&nop.cqe()).is_none(), "the twin's CQE is not the read's");
    assert!(
        matches!(bufs.buffer_mut(0), Err(uring_buffers::Error::Busy { .. })),
        "the buffer stays busy while the read is in flight"
    );
    // The read's own CQE frees it.
    File::from(w).write_all(b"bytes").unwrap();
    let c = reap(&mut ring, 1)[0];
    let done = bufs.handle_cqe(&c.cqe()).expect("the read's CQE");
    assert_eq!((done.id, done.res, done.free), (id, 5, true));
    assert_eq!(&bufs.buffer(0).unwrap()[..5], b"bytes");
}
