//! The raw syscall wrappers against the running kernel: ring setup, the
//! opcode probe, a NOP round trip through the mapped rings, and the errors
//! the kernel gives for bad input.
//!
//! These tests need io_uring (Linux >= 6.18, `kernel.io_uring_disabled` = 0,
//! no seccomp filter); SETUP.md says how to get there. They fail, loudly,
//! where io_uring is unusable, because this crate has nothing to test
//! without it.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use uring_sys::*;

/// A ring set up and mapped with nothing but the raw wrappers.
struct RawRing {
    fd: OwnedFd,
    params: io_uring_params,
    rings: *mut u8,
    rings_len: usize,
    sqes: *mut io_uring_sqe,
    sqes_len: usize,
}

impl RawRing {
    fn new(entries: u32, flags: u32) -> io::Result<Self> {
        let mut params = io_uring_params { flags, ..Default::default() };
        // SAFETY: `params` is a valid, writable io_uring_params for the
        // call; no flag here hands the kernel memory of ours.
        let fd = unsafe { io_uring_setup(entries, &mut params) }?;
        // SAFETY: the kernel just returned this descriptor; we own it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        assert_ne!(params.features & IORING_FEAT_SINGLE_MMAP, 0, "6.18 maps SQ and CQ rings together");

        let cqe_size = if flags & IORING_SETUP_CQE32 != 0 { 32 } else { 16 };
        let mut rings_len = params.cq_off.cqes as usize + params.cq_entries as usize * cqe_size;
        if flags & IORING_SETUP_NO_SQARRAY == 0 {
            rings_len = rings_len.max(params.sq_off.array as usize + params.sq_entries as usize * 4);
        }
        let rings = map(fd.as_raw_fd(), rings_len, IORING_OFF_SQ_RING)?;
        let sqe_size = if flags & IORING_SETUP_SQE128 != 0 { 128 } else { 64 };
        let sqes_len = params.sq_entries as usize * sqe_size;
        let sqes = map(fd.as_raw_fd(), sqes_len, IORING_OFF_SQES)?.cast();
        Ok(Self { fd, params, rings, rings_len, sqes, sqes_len })
    }

    fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn atomic(&self, offset: u32) -> &AtomicU32 {
        // SAFETY: `offset` is one of the kernel-reported ring offsets, all
        // 4-byte aligned and inside the mapping, which lives as long as self.
        unsafe { &*self.rings.add(offset as usize).cast::<AtomicU32>() }
    }

    /// Writes one SQE (prepared by `prep` on a zeroed entry) and publishes
    /// it. Requires `IORING_SETUP_NO_SQARRAY` or fills the index array.
    fn push(&self, prep: impl FnOnce(&mut io_uring_sqe)) {
        let tail = self.atomic(self.params.sq_off.tail).load(Ordering::Relaxed);
        let index = tail & self.atomic(self.params.sq_off.ring_mask).load(Ordering::Relaxed);
        let mut sqe = io_uring_sqe::default();
        prep(&mut sqe);
        // SAFETY: `index` is below sq_entries, so the slot is inside the SQE
        // mapping; the kernel does not read it until the tail is published.
        unsafe { self.sqes.add(index as usize).write(sqe) };
        if self.params.flags & IORING_SETUP_NO_SQARRAY == 0 {
            // SAFETY: the index array has sq_entries u32 slots at sq_off.array.
            unsafe { self.rings.add(self.params.sq_off.array as usize).cast::<u32>().add(index as usize).write(index) };
        }
        // Release: the SQE bytes above must be visible before the kernel
        // sees the new tail.
        self.atomic(self.params.sq_off.tail).store(tail.wrapping_add(1), Ordering::Release);
    }

    /// Pops one CQE: (user_data, res, flags, big_cqe words if 32 bytes).
    fn pop(&self) -> Option<(u64, i32, u32, Option<[u64; 2]>)> {
        let head = self.atomic(self.params.cq_off.head).load(Ordering::Relaxed);
        // Acquire: pairs with the kernel's release of the CQ tail, so the
        // CQE contents are visible.
        let tail = self.atomic(self.params.cq_off.tail).load(Ordering::Acquire);
        if head == tail {
            return None;
        }
        let mask = self.atomic(self.params.cq_off.ring_mask).load(Ordering::Relaxed);
        let big_ring = self.params.flags & IORING_SETUP_CQE32 != 0;
        let unit = if big_ring { 2 } else { 1 };
        // SAFETY: (head & mask) * unit is a CQE slot inside the mapping.
        let cqe = unsafe {
            self.rings.add(self.params.cq_off.cqes as usize).cast::<io_uring_cqe>().add((head & mask) as usize * unit)
        };
        // SAFETY: the slot is published (below the tail) and stays ours
        // until the head moves past it.
        let (user_data, res, flags) = unsafe { ((*cqe).user_data, (*cqe).res, (*cqe).flags) };
        let is_big = big_ring || flags & IORING_CQE_F_32 != 0;
        let extra = is_big.then(|| {
            let words = io_uring_cqe::big_cqe_ptr(cqe);
            // SAFETY: this CQE is 32 bytes, so two u64s follow its header.
            unsafe { [words.read(), words.add(1).read()] }
        });
        // A 32-byte CQE in a mixed ring takes two 16-byte slots.
        let used = if is_big && !big_ring { 2 } else { 1 };
        self.atomic(self.params.cq_off.head).store(head.wrapping_add(used), Ordering::Release);
        Some((user_data, res, flags, extra))
    }

    /// Submits everything pushed and waits for `wait` completions.
    fn submit_and_wait(&self, to_submit: u32, wait: u32) -> io::Result<u32> {
        // SAFETY: the ring is mapped and the pushed SQEs reference no memory
        // (NOPs only in this file).
        unsafe { io_uring_enter(self.fd(), to_submit, wait, IORING_ENTER_GETEVENTS, ptr::null()) }
    }
}

impl Drop for RawRing {
    fn drop(&mut self) {
        // SAFETY: both regions were mapped by `map` with these lengths and
        // are not referenced after this point.
        unsafe {
            libc::munmap(self.sqes.cast(), self.sqes_len);
            libc::munmap(self.rings.cast(), self.rings_len);
        }
    }
}

fn map(fd: RawFd, len: usize, offset: u64) -> io::Result<*mut u8> {
    // SAFETY: a fresh shared mapping of the ring fd at a kernel-defined
    // offset; no existing memory is affected.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_POPULATE,
            fd,
            offset as libc::off_t,
        )
    };
    if p == libc::MAP_FAILED { Err(io::Error::last_os_error()) } else { Ok(p.cast()) }
}

fn errno(result: io::Result<impl std::fmt::Debug>) -> i32 {
    match result {
        Ok(v) => panic!("expected an error, got Ok({v:?})"),
        Err(e) => e.raw_os_error().expect("a kernel errno"),
    }
}

fn probe(fd: RawFd) -> (u8, Vec<io_uring_probe_op>) {
    const OPS: usize = 256;
    // u64 storage keeps the header and the ops array properly aligned.
    let words = (size_of::<io_uring_probe>() + OPS * size_of::<io_uring_probe_op>()).div_ceil(8);
    let mut buf = vec![0u64; words];
    // IORING_REGISTER_PROBE with nr_args = OPS needs a zeroed header and room
    // for OPS io_uring_probe_op entries after it.
    // SAFETY: `buf` is exactly that, and it outlives the call.
    unsafe { io_uring_register(fd, IORING_REGISTER_PROBE, buf.as_mut_ptr().cast(), OPS as u32) }
        .expect("IORING_REGISTER_PROBE");
    let header = buf.as_ptr().cast::<io_uring_probe>();
    // SAFETY: the kernel filled the header and ops_len entries of the array.
    unsafe {
        let len = (*header).ops_len as usize;
        ((*header).last_op, std::slice::from_raw_parts((*header).ops.as_ptr(), len).to_vec())
    }
}

/// The 6.18 baseline ends at `IORING_OP_PIPE`; `NOP128` and `URING_CMD128`
/// (with `IORING_SETUP_SQE_MIXED`) arrived in 6.19. The bindings know all of
/// them; the probe says which this kernel has, and must say it consistently.
#[test]
fn probe_reports_the_6_18_opcode_set() {
    let ring = RawRing::new(8, 0).expect("io_uring_setup (see SETUP.md if this fails)");
    let (last_op, ops) = probe(ring.fd());
    assert!(
        u32::from(last_op) >= IORING_OP_PIPE,
        "last supported opcode {last_op} is older than IORING_OP_PIPE ({IORING_OP_PIPE}): kernel < 6.18?"
    );
    assert_eq!(ops.len(), usize::from(last_op) + 1, "one probe entry per opcode up to last_op");
    let supported = |op: u32| ops.get(op as usize).is_some_and(|o| u32::from(o.flags) & IO_URING_OP_SUPPORTED != 0);
    for (index, entry) in ops.iter().enumerate() {
        assert_eq!(usize::from(entry.op), index, "probe entries are indexed by opcode");
    }
    for op in [IORING_OP_NOP, IORING_OP_URING_CMD, IORING_OP_RECV_ZC, IORING_OP_EPOLL_WAIT, IORING_OP_PIPE] {
        assert!(supported(op), "6.18 baseline opcode {op} not supported");
    }
    for (name, op) in [("NOP128", IORING_OP_NOP128), ("URING_CMD128", IORING_OP_URING_CMD128)] {
        let has = supported(op);
        assert_eq!(has, u32::from(last_op) >= op, "{name}: the probe contradicts its own last_op");
        println!("IORING_OP_{name} ({op}): {}", if has { "supported" } else { "not in this kernel (needs 6.19+)" });
    }
}

#[test]
fn modern_setup_flags_are_accepted() {
    for (name, flags) in [
        ("NO_SQARRAY", IORING_SETUP_NO_SQARRAY),
        ("CQE_MIXED", IORING_SETUP_CQE_MIXED),
        ("SINGLE_ISSUER|DEFER_TASKRUN", IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN),
        ("SQE128|CQE32", IORING_SETUP_SQE128 | IORING_SETUP_CQE32),
    ] {
        let ring = RawRing::new(4, flags).unwrap_or_else(|e| panic!("IORING_SETUP_{name} rejected: {e}"));
        assert_eq!(ring.params.flags, flags, "the kernel keeps the flags it accepted");
        assert_eq!(ring.params.sq_entries, 4);
    }
}

#[test]
fn nop_round_trip_through_the_mapped_rings() {
    for flags in [IORING_SETUP_NO_SQARRAY, 0] {
        let ring = RawRing::new(8, flags).unwrap();
        for i in 0..20u64 {
            // More NOPs than entries: the indexes wrap.
            ring.push(|sqe| {
                sqe.opcode = IORING_OP_NOP as u8;
                sqe.user_data = 0xC0DE_0000 + i;
            });
            assert_eq!(ring.submit_and_wait(1, 1).unwrap(), 1, "one SQE consumed");
            assert_eq!(ring.pop(), Some((0xC0DE_0000 + i, 0, 0, None)));
            assert_eq!(ring.pop(), None);
        }
    }
}

#[test]
fn nop_injects_the_result_written_through_the_accessors() {
    let ring = RawRing::new(4, IORING_SETUP_NO_SQARRAY).unwrap();
    ring.push(|sqe| {
        sqe.opcode = IORING_OP_NOP as u8;
        sqe.set_op_flags(IORING_NOP_INJECT_RESULT); // sqe->nop_flags
        sqe.len = (-libc::EPROTO) as u32; // the injected result
        sqe.user_data = 7;
    });
    ring.submit_and_wait(1, 1).unwrap();
    assert_eq!(ring.pop(), Some((7, -libc::EPROTO, 0, None)));
}

#[test]
fn mixed_ring_posts_a_32_byte_cqe_with_the_extra_words() {
    let ring = RawRing::new(4, IORING_SETUP_NO_SQARRAY | IORING_SETUP_CQE_MIXED).unwrap();
    // A small CQE, then a big one carrying sqe->off and sqe->addr back.
    ring.push(|sqe| {
        sqe.opcode = IORING_OP_NOP as u8;
        sqe.user_data = 1;
    });
    ring.push(|sqe| {
        sqe.opcode = IORING_OP_NOP as u8;
        sqe.set_op_flags(IORING_NOP_CQE32);
        sqe.set_off(0x1111_2222_3333_4444);
        sqe.set_addr(0x5555_6666_7777_8888);
        sqe.user_data = 2;
    });
    ring.submit_and_wait(2, 2).unwrap();
    assert_eq!(ring.pop(), Some((1, 0, 0, None)));
    let (user_data, res, flags, extra) = ring.pop().expect("the big CQE");
    assert_eq!((user_data, res), (2, 0));
    assert_ne!(flags & IORING_CQE_F_32, 0, "a mixed ring marks the big CQE");
    assert_eq!(extra, Some([0x1111_2222_3333_4444, 0x5555_6666_7777_8888]));
}

#[test]
fn disabled_ring_refuses_enter_until_enabled() {
    let ring = RawRing::new(4, IORING_SETUP_NO_SQARRAY | IORING_SETUP_R_DISABLED).unwrap();
    ring.push(|sqe| sqe.opcode = IORING_OP_NOP as u8);
    assert_eq!(errno(ring.submit_and_wait(1, 0)), libc::EBADFD);
    // SAFETY: ENABLE_RINGS takes no argument.
    unsafe { io_uring_register(ring.fd(), IORING_REGISTER_ENABLE_RINGS, ptr::null(), 0) }.unwrap();
    assert_eq!(ring.submit_and_wait(1, 1).unwrap(), 1);
    assert!(ring.pop().is_some());
}

#[test]
fn extended_argument_wait_times_out() {
    let ring = RawRing::new(4, IORING_SETUP_NO_SQARRAY).unwrap();
    let ts = __kernel_timespec { tv_sec: 0, tv_nsec: 2_000_000 };
    let arg = io_uring_getevents_arg { ts: &raw const ts as u64, ..Default::default() };
    let start = Instant::now();
    // SAFETY: EXT_ARG: `arg` points to a getevents arg whose `ts` points to
    // a live timespec; both outlive the call.
    let result = unsafe {
        io_uring_enter2(
            ring.fd(),
            0,
            1,
            IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG,
            (&raw const arg).cast(),
            size_of::<io_uring_getevents_arg>(),
        )
    };
    assert_eq!(errno(result), libc::ETIME, "nothing completes, so the wait times out");
    assert!(start.elapsed() >= Duration::from_millis(2), "the kernel waited for the timeout");
}

#[test]
fn bad_input_gets_the_kernels_errno() {
    let mut params = io_uring_params::default();
    // SAFETY: valid params; the call is expected to fail.
    let zero = unsafe { io_uring_setup(0, &mut params) };
    assert_eq!(errno(zero), libc::EINVAL, "zero entries");

    let mut params = io_uring_params::default();
    // SAFETY: as above.
    let huge = unsafe { io_uring_setup(1 << 20, &mut params) };
    assert_eq!(errno(huge), libc::EINVAL, "more entries than IORING_MAX_ENTRIES without CLAMP");

    let mut params = io_uring_params { flags: 1 << 31, ..Default::default() };
    // SAFETY: as above.
    let unknown = unsafe { io_uring_setup(4, &mut params) };
    assert_eq!(errno(unknown), libc::EINVAL, "unknown setup flag");

    // SAFETY: null params: the kernel reports EFAULT rather than writing.
    let null = unsafe { io_uring_setup(4, ptr::null_mut()) };
    assert_eq!(errno(null), libc::EFAULT);

    // SAFETY: -1 is no descriptor; the kernel rejects it before reading.
    let bad_fd = unsafe { io_uring_enter(-1, 0, 0, 0, ptr::null()) };
    assert_eq!(errno(bad_fd), libc::EBADF);

    let devnull = std::fs::File::open("/dev/null").unwrap();
    // SAFETY: not a ring; the kernel rejects it before using any argument.
    let not_ring = unsafe { io_uring_enter(devnull.as_raw_fd(), 0, 0, 0, ptr::null()) };
    assert_eq!(errno(not_ring), libc::EOPNOTSUPP);
    // SAFETY: as above.
    let not_ring = unsafe { io_uring_register(devnull.as_raw_fd(), IORING_REGISTER_PROBE, ptr::null(), 0) };
    assert_eq!(errno(not_ring), libc::EOPNOTSUPP);

    let ring = RawRing::new(4, 0).unwrap();
    // SAFETY: an opcode past the last one; the kernel rejects it.
    let bad_opcode = unsafe { io_uring_register(ring.fd(), IORING_REGISTER_LAST + 100, ptr::null(), 0) };
    assert_eq!(errno(bad_opcode), libc::EINVAL);
}

#[test]
fn clamp_caps_entries_at_the_kernel_maximum() {
    let ring = RawRing::new(1 << 20, IORING_SETUP_CLAMP | IORING_SETUP_NO_SQARRAY).unwrap();
    assert_eq!(ring.params.sq_entries, 32768, "IORING_MAX_ENTRIES");
    assert_eq!(ring.params.cq_entries, 65536, "CQ is twice the SQ by default");
}
