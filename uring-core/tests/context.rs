//! `SqeContext` through the kernel: direct, indirect and extended contexts
//! come back with their CQEs, and pooled slots return exactly once.

mod common;

use common::*;
use uring_core::{ContextMode, CqeSlot, CtxWords, Error, Options, PlainData, Ring, Sqe, SqeContext, SqeFlags, sys};

#[test]
fn direct_context_round_trips_through_user_data() {
    let mut ring = ring(8);
    let flags = SqeFlags::ASYNC;
    let ctx = SqeContext::packed(sys::IORING_OP_NOP as u8, flags, 513, 77);
    let mut sqe = nop(0);
    sqe.set_context(ctx).set_sqe_flags(flags);
    // SAFETY: a NOP names no memory.
    unsafe { ring.push(&sqe).unwrap() };
    let mut slots = [CqeSlot::EMPTY; 2];
    let r = ring.wait_for(&mut slots, 1, None).unwrap();
    let c = r.get(0).unwrap();
    assert_eq!(c.context(), ctx);
    assert_eq!(c.context().mode(), ContextMode::Packed);
    assert_eq!((c.op(), c.fd()), (Some(sys::IORING_OP_NOP as u8), Some(77)));
    assert_eq!((c.context().buf_group(), c.context().flags()), (Some(513), Some(flags)));
    assert!(c.indirect().is_none() && c.extended().is_none());
}

#[test]
fn indirect_context_carries_a_full_sqe_copy() {
    let mut ring = Ring::new(Options::small().indirect_contexts(4)).unwrap();
    ring.start().unwrap();
    let mut sqe = nop_result(0, 99);
    sqe.fd = 1234; // recorded in the copy; a NOP without IORING_NOP_FILE ignores it
    let ctx = ring.pools_mut().acquire_indirect().unwrap();
    assert_eq!(ctx.mode(), ContextMode::Indirect);
    sqe.set_context(ctx);
    ring.pools_mut().indirect_mut(ctx).unwrap().sqe = sqe;
    // SAFETY: a NOP names no memory.
    unsafe { ring.push(&sqe).unwrap() };
    let mut slots = [CqeSlot::EMPTY; 2];
    let r = ring.wait_for(&mut slots, 1, None).unwrap();
    let c = r.get(0).unwrap();
    assert_eq!(c.res(), 99);
    let copy = c.indirect().expect("a live indirect context");
    assert_eq!((copy.sqe.opcode, copy.sqe.fd, copy.sqe.len), (sys::IORING_OP_NOP as u8, 1234, 99));
    assert_eq!((c.op(), c.fd()), (Some(sys::IORING_OP_NOP as u8), Some(1234)));
    let done = c.context();
    ring.pools_mut().release(done).unwrap();
    assert!(matches!(ring.pools_mut().release(done), Err(Error::StaleContext)), "returned exactly once");
    assert_eq!(ring.pools().indirect_stats().in_use, 0);
}

/// A caller payload for extended contexts.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
struct Conn {
    id: u64,
    seq: u32,
    peer: [u8; 16],
}
// SAFETY: integers and a byte array; every bit pattern is a valid `Conn`
// (the 4 trailing padding bytes are never read as a value).
unsafe impl PlainData for Conn {}

#[test]
fn extended_context_carries_caller_data() {
    let mut ring = Ring::new(Options::small().extended_contexts(2)).unwrap();
    ring.start().unwrap();
    let mut ctxs = Vec::new();
    for i in 0..2u64 {
        let ctx = ring.pools_mut().acquire_extended().unwrap();
        let mut sqe = nop(0);
        sqe.set_context(ctx);
        let ext = ring.pools_mut().extended_mut(ctx).unwrap();
        ext.sqe = sqe;
        *ext.data.view_mut::<Conn>() = Conn { id: 1000 + i, seq: i as u32, peer: [i as u8; 16] };
        // SAFETY: a NOP names no memory.
        unsafe { ring.push(&sqe).unwrap() };
        ctxs.push(ctx);
    }
    assert!(
        matches!(ring.pools_mut().acquire_extended(), Err(Error::PoolExhausted { pool: "extended", capacity: 2 })),
        "fixed capacity"
    );
    ring.submit_and_wait(2).unwrap();
    let mut slots = [CqeSlot::EMPTY; 4];
    let mut returned = Vec::new();
    {
        let r = ring.reap(&mut slots).unwrap();
        for c in r.iter() {
            let ext = c.extended().expect("live extended context");
            let conn = *ext.data.view::<Conn>();
            let i = conn.seq as u64;
            assert_eq!(conn, Conn { id: 1000 + i, seq: i as u32, peer: [i as u8; 16] });
            assert_eq!(ext.data.view::<CtxWords>().words[0], 1000 + i, "views share the bytes");
            returned.push(c.context());
        }
    }
    // Leak one on purpose: the counters show it.
    ring.pools_mut().release(returned[0]).unwrap();
    let s = ring.pools().extended_stats();
    assert_eq!((s.in_use, s.peak, s.acquired, s.released, s.exhausted), (1, 2, 2, 1, 1));
    assert!(ring.pools_mut().reset().is_err(), "reset refuses while a slot is out");
    ring.pools_mut().release(returned[1]).unwrap();
    ring.pools_mut().reset().unwrap();
}

#[test]
fn foreign_and_stale_user_data_decode_to_nothing() {
    let mut ring = ring(8);
    let ctx = ring.pools_mut().acquire_extended().unwrap();
    ring.pools_mut().release(ctx).unwrap();
    // A CQE carrying a context whose slot was already returned, and one
    // carrying arbitrary bits.
    for raw in [ctx.raw(), u64::MAX, 0x0123_4567_89ab_cdef] {
        let mut sqe: Sqe = nop(raw);
        sqe.user_data = raw;
        // SAFETY: a NOP names no memory.
        unsafe { ring.push(&sqe).unwrap() };
        let mut slots = [CqeSlot::EMPTY; 1];
        let r = ring.wait_for(&mut slots, 1, None).unwrap();
        let c = r.get(0).unwrap();
        assert_eq!(c.user_data(), raw);
        assert!(c.indirect().is_none() && c.extended().is_none(), "{raw:#x} must not resolve");
    }
}
