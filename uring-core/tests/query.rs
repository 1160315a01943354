//! `IORING_REGISTER_QUERY` (`uring_core::query`) against the running
//! kernel, checked against what the kernel says through the older
//! channels: the opcode probe (`IORING_REGISTER_PROBE`), the features a
//! ring reports at setup, and setup flags tried one at a time. Kernels
//! without the query skip with the reason.

mod common;

use uring_core::query::{self, OpcodeQuery};
use uring_core::{Error, FeatureFlags, SetupFlags, SqeFlags, probe_setup_flags, sys};

/// Prints why a test skipped; the caller returns right after.
fn skip(test: &str, reason: &str) {
    println!("SKIPPED {test}: {reason}");
}

/// The opcode query, or `None` after printing why the test skips.
fn opcodes_or_skip(test: &str) -> Option<OpcodeQuery> {
    match query::opcodes() {
        Ok(q) => Some(q),
        Err(e @ Error::Unsupported { .. }) => {
            skip(test, &format!("{e}"));
            None
        }
        Err(e) => panic!("query::opcodes: {e}"),
    }
}

#[test]
fn the_query_agrees_with_the_probe_on_every_opcode() {
    let Some(q) = opcodes_or_skip("the_query_agrees_with_the_probe_on_every_opcode") else { return };
    let ring = common::ring(4);
    let f = ring.features();
    // The probe's last opcode is IORING_OP_LAST - 1; the query's count is
    // IORING_OP_LAST.
    assert_eq!(q.request_opcodes, u32::from(f.last_op()) + 1, "{q:?} against the probe's last_op {}", f.last_op());
    let (last, supported) = ring.register().probe().expect("IORING_REGISTER_PROBE");
    assert_eq!(last, f.last_op());
    for op in 0..=255u8 {
        if supported.contains(&op) {
            assert!(q.knows_op(op), "the probe supports opcode {op} but the query counts only {}", q.request_opcodes);
        }
        if !q.knows_op(op) {
            assert!(!f.supports(op), "opcode {op} is past the query's count yet the probe supports it");
        }
    }
    // Every opcode below the count that the bindings name is one the
    // probe answers for (supported or compiled out), never silently past
    // its end.
    assert!(supported.len() as u32 <= q.request_opcodes);
    assert!(supported.contains(&(sys::IORING_OP_NOP as u8)) && q.knows_op(sys::IORING_OP_NOP as u8));
    println!("query: {} request opcodes, probe: {} supported, last {}", q.request_opcodes, supported.len(), last);
}

#[test]
fn the_query_lists_exactly_the_features_a_ring_reports() {
    let Some(q) = opcodes_or_skip("the_query_lists_exactly_the_features_a_ring_reports") else { return };
    let ring = common::ring(4);
    let reported = ring.features().feature_flags();
    // Setup reports IORING_FEAT_FLAGS, the very mask the query returns.
    assert_eq!(q.features(), reported, "query {:#x}, setup {:#x}", q.feature_flags, reported.bits());
    assert_eq!(q.feature_flags >> 32, 0, "feature bits above 31: {:#x}", q.feature_flags);
    assert!(q.features().contains(FeatureFlags::NODROP | FeatureFlags::EXT_ARG));
}

#[test]
fn the_query_lists_every_setup_flag_the_kernel_accepts_and_no_other() {
    let test = "the_query_lists_every_setup_flag_the_kernel_accepts_and_no_other";
    let Some(q) = opcodes_or_skip(test) else { return };
    // The flags of a ring set up now are among them.
    let ring = common::ring(4);
    assert!(q.setup().contains(ring.features().setup_flags()), "{q:?} against {:?}", ring.features().setup_flags());
    // Each flag that can be tried alone: accepted by io_uring_setup exactly
    // when the query lists it.
    let mut tried = 0;
    for s in probe_setup_flags() {
        let Some(accepted) = s.supported else { continue };
        let listed = q.setup_flags & u64::from(s.flag) != 0;
        assert_eq!(accepted, listed, "{} ({:#x}): setup says {accepted}, query says {listed}", s.name, s.flag);
        tried += 1;
    }
    assert!(tried >= 10, "only {tried} flags could be tried alone");
    // Bits past the known flags are refused by setup too.
    let unknown = (!q.setup_flags) as u32 & !(u32::MAX >> 1);
    if unknown != 0 {
        let mut p = sys::io_uring_params { flags: unknown, ..Default::default() };
        // SAFETY: a plain io_uring_params; no flag hands the kernel memory.
        let r = unsafe { sys::io_uring_setup(4, &mut p) };
        assert_eq!(r.err().and_then(|e| e.raw_os_error()), Some(libc::EINVAL), "bit {unknown:#x}");
    }
}

#[test]
fn the_query_lists_every_sqe_flag_and_enter_flag_the_crate_uses() {
    let Some(q) = opcodes_or_skip("the_query_lists_every_sqe_flag_and_enter_flag_the_crate_uses") else { return };
    let all = SqeFlags::FIXED_FILE
        | SqeFlags::IO_DRAIN
        | SqeFlags::IO_LINK
        | SqeFlags::IO_HARDLINK
        | SqeFlags::ASYNC
        | SqeFlags::BUFFER_SELECT
        | SqeFlags::CQE_SKIP_SUCCESS;
    assert!(q.sqe().contains(all), "{:#x}", q.sqe_flags);
    for f in [
        sys::IORING_ENTER_GETEVENTS,
        sys::IORING_ENTER_SQ_WAKEUP,
        sys::IORING_ENTER_SQ_WAIT,
        sys::IORING_ENTER_EXT_ARG,
        sys::IORING_ENTER_REGISTERED_RING,
        sys::IORING_ENTER_ABS_TIMER,
        sys::IORING_ENTER_EXT_ARG_REG,
    ] {
        assert!(q.enter_flags & u64::from(f) != 0, "enter flag {f:#x} missing from {:#x}", q.enter_flags);
    }
    // Register opcodes: the query itself is below the count.
    assert!(q.knows_register_op(sys::IORING_REGISTER_QUERY));
    assert!(!q.knows_register_op(q.register_opcodes));
}

#[test]
fn sizes_are_negotiated_and_unknown_queries_are_refused_per_entry() {
    let test = "sizes_are_negotiated_and_unknown_queries_are_refused_per_entry";
    let Some(q) = opcodes_or_skip(test) else { return };
    // A short buffer gets the first bytes of the answer, and no more.
    let mut short = [0xeeu8; 8];
    let a = query::raw(sys::IO_URING_QUERY_OPCODES, &mut short).expect("query");
    assert_eq!(a, query::QueryAnswer { result: 0, size: 8 });
    assert_eq!(u32::from_ne_bytes(short[..4].try_into().unwrap()), q.request_opcodes);
    assert_eq!(u32::from_ne_bytes(short[4..].try_into().unwrap()), q.register_opcodes);
    // A long one gets the whole answer and the rest zeroed.
    let mut long = [0xeeu8; 96];
    let a = query::raw(sys::IO_URING_QUERY_OPCODES, &mut long).expect("query");
    assert_eq!(a.result, 0);
    let kernel = a.size as usize;
    assert!((40..96).contains(&kernel), "the kernel's answer is {kernel} bytes");
    println!("IO_URING_QUERY_OPCODES: {kernel} bytes, {} query opcodes", q.query_opcodes);
    assert!(long[kernel..].iter().all(|&b| b == 0), "the tail past the answer is zeroed: {:?}", &long[kernel..]);
    assert_eq!(u64::from_ne_bytes(long[8..16].try_into().unwrap()), q.feature_flags);
    // A query opcode past the kernel's count is refused for that entry
    // alone (the call succeeds).
    let past = if q.query_opcodes > 0 { q.query_opcodes } else { 64 };
    let mut buf = [0u8; 16];
    let a = query::raw(past, &mut buf).expect("the call itself succeeds");
    assert_eq!(a.result, -libc::EOPNOTSUPP, "query opcode {past}");
    assert!(buf.iter().all(|&b| b == 0));
    // Every query opcode below the count answers.
    for op in 0..q.query_opcodes {
        let mut buf = [0u8; 256];
        let a = query::raw(op, &mut buf).expect("query");
        assert_eq!(a.result, 0, "query opcode {op} is below the count {}", q.query_opcodes);
        assert!(a.size > 0);
    }
    // Bad input: an empty buffer is refused before any syscall.
    assert!(matches!(query::raw(0, &mut []), Err(Error::InvalidArgument(_))));
}

#[test]
fn the_ring_header_query_matches_the_kernel_layout() {
    let test = "the_ring_header_query_matches_the_kernel_layout";
    match query::ring_header() {
        Ok(h) => {
            // struct io_rings: the SQ and CQ heads and tails each on
            // their own cache line, then flags and counters.
            assert!(h.size >= 64 && h.size <= 4096, "{h:?}");
            assert!(h.alignment.is_power_of_two() && h.alignment >= 8, "{h:?}");
            // The kernel places the CQE array right after the header
            // (struct io_rings' flexible array): the offset setup reports
            // for it is the header's size.
            let ring = common::ring(4);
            let cqes = u64::from(ring.params().cq_off.cqes);
            assert_eq!(cqes, h.size, "cq_off.cqes {cqes} against the queried header {h:?}");
            assert_eq!(cqes % h.alignment, 0);
            println!("ring header: {} bytes, {}-byte alignment", h.size, h.alignment);
        }
        Err(e @ Error::Unsupported { .. }) => skip(test, &format!("{e}")),
        Err(e) => panic!("query::ring_header: {e}"),
    }
}

#[test]
fn flags_above_bit_31_in_the_feature_mask_never_panic() {
    // The typed views keep unknown bits.
    let q = OpcodeQuery { feature_flags: 1 << 31, setup_flags: 1 << 30, sqe_flags: 1 << 7, ..Default::default() };
    assert_eq!(q.features().bits(), 1 << 31);
    assert_eq!(q.setup().bits(), 1 << 30);
    assert_eq!(q.sqe().bits(), 1 << 7);
    let _ = SetupFlags::empty();
}
