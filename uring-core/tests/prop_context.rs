//! Property tests of `SqeContext` (the 64-bit identity in `user_data`) and
//! `ContextPools` (the slots behind pooled contexts), against a model.
//!
//! Pure user-space code: no ring, no kernel. Each property runs proptest's
//! default 256 cases (a second or two in all); for a longer run:
//!
//! ```sh
//! PROPTEST_CASES=100000 cargo test --release -p uring-core --test prop_context
//! ```

use std::collections::{HashMap, HashSet};

use proptest::prelude::*;
use uring_core::{ContextMode, ContextPools, Error, PoolStats, SqeContext, SqeFlags};

/// Bits of each direct field, as `uring_core::context` lays them out.
const OP_BITS: u64 = 0xff << 2;
const FLAGS_BITS: u64 = 0x7f << 10;
const GROUP_BITS: u64 = 0xffff << 17;
const FD_BITS: u64 = !0 << 33;
/// The fd field's "no fd" value: all 31 bits set.
const FD_NONE: u64 = (1 << 31) - 1;

/// Any fd, with the edges drawn often: negative, 0, `2^31 - 2` (the largest
/// fd a packed context carries) and `2^31 - 1 == i32::MAX` (the "none"
/// pattern, so it reads back as no fd).
fn any_fd() -> impl Strategy<Value = i32> {
    prop_oneof![
        4 => any::<i32>(),
        1 => 0..1024i32,
        1 => prop::sample::select(vec![i32::MIN, -2, -1, 0, 1, i32::MAX - 1, i32::MAX]),
    ]
}

fn any_flags() -> impl Strategy<Value = SqeFlags> {
    any::<u8>().prop_map(SqeFlags::from_bits_retain)
}

/// What a packed context reads back for `fd`: the fd for `0..2^31 - 1`,
/// none for negatives and for `i32::MAX`.
fn fd_back(fd: i32) -> Option<i32> {
    (0..i32::MAX).contains(&fd).then_some(fd)
}

/// Only the seven defined `IOSQE_*` bits are stored.
fn flags_back(flags: SqeFlags) -> SqeFlags {
    SqeFlags::from_bits_retain(flags.bits() & 0x7f)
}

fn fields(c: SqeContext) -> (Option<u8>, Option<SqeFlags>, Option<u16>, Option<i32>) {
    (c.op(), c.flags(), c.buf_group(), c.fd())
}

proptest! {
    #[test]
    fn direct_contexts_round_trip_every_field(op in any::<u8>(), flags in any_flags(), group in any::<u16>(), fd in any_fd()) {
        let c = SqeContext::packed(op, flags, group, fd);
        prop_assert_eq!(c.mode(), ContextMode::Packed);
        prop_assert_eq!(fields(c), (Some(op), Some(flags_back(flags)), Some(group), fd_back(fd)));
        prop_assert_eq!(c.layer_data(), None);
        prop_assert_eq!(c.raw() & 0b11, 0);
        prop_assert_eq!(SqeContext::from_raw(c.raw()), Some(c));
        prop_assert_eq!(SqeContext::for_fd(fd), SqeContext::packed(0, SqeFlags::empty(), 0, fd));
        // The same context, built field by field.
        let built = SqeContext::for_fd(fd).with_op(op).with_flags(flags).with_buf_group(group);
        prop_assert_eq!(built, c);
    }

    #[test]
    fn each_with_changes_only_its_own_field(
        op in any::<u8>(), flags in any_flags(), group in any::<u16>(), fd in any_fd(),
        op2 in any::<u8>(), flags2 in any_flags(), group2 in any::<u16>(), fd2 in any_fd(),
    ) {
        let c = SqeContext::packed(op, flags, group, fd);
        let (o, f, g, d) = fields(c);

        let w = c.with_op(op2);
        prop_assert_eq!(fields(w), (Some(op2), f, g, d));
        prop_assert_eq!((w.raw() ^ c.raw()) & !OP_BITS, 0);

        let w = c.with_flags(flags2);
        prop_assert_eq!(fields(w), (o, Some(flags_back(flags2)), g, d));
        prop_assert_eq!((w.raw() ^ c.raw()) & !FLAGS_BITS, 0);

        let w = c.with_buf_group(group2);
        prop_assert_eq!(fields(w), (o, f, Some(group2), d));
        prop_assert_eq!((w.raw() ^ c.raw()) & !GROUP_BITS, 0);

        let w = c.with_fd(fd2);
        prop_assert_eq!(fields(w), (o, f, g, fd_back(fd2)));
        prop_assert_eq!((w.raw() ^ c.raw()) & !FD_BITS, 0);

        // Setters on different fields commute, and the last write wins.
        prop_assert_eq!(c.with_op(op2).with_fd(fd2), c.with_fd(fd2).with_op(op2));
        prop_assert_eq!(c.with_buf_group(group2).with_flags(flags2), c.with_flags(flags2).with_buf_group(group2));
        prop_assert_eq!(c.with_fd(fd2).with_fd(fd), c);
        prop_assert_eq!(c.with_op(op2).with_op(op), c);
    }

    #[test]
    fn any_user_data_decodes_without_panic_and_consistently(raw in any::<u64>()) {
        let c = SqeContext::of_user_data(raw);
        prop_assert_eq!(c.raw(), raw);
        let _ = format!("{c:?}");
        let mode = c.mode();
        let expected = match (raw & 0b11, raw & 0b100) {
            (0, _) => ContextMode::Packed,
            (1, 0) => ContextMode::Indirect,
            (1, _) => ContextMode::Extended,
            (2, _) => ContextMode::Token,
            _ => ContextMode::Layer,
        };
        prop_assert_eq!(mode, expected);
        // Safe `from_raw` gives every value but a layer's.
        prop_assert_eq!(SqeContext::from_raw(raw), (mode != ContextMode::Layer).then_some(c));
        let direct = mode == ContextMode::Packed;
        let token = mode == ContextMode::Token;
        prop_assert_eq!(c.op().is_some(), direct || token);
        prop_assert_eq!(c.flags().is_some(), direct);
        prop_assert_eq!(c.buf_group().is_some(), direct || (token && raw & (1 << 10) != 0));
        prop_assert!(direct || c.fd().is_none());
        prop_assert_eq!(c.as_token().is_some(), token);
        if token {
            // The number: bits 11-63, or 27-63 when a group is stamped.
            let n = if raw & (1 << 10) != 0 { raw >> 27 } else { raw >> 11 };
            prop_assert_eq!(c.as_token(), Some(n));
            prop_assert_eq!(c.op(), Some((raw >> 2) as u8));
        }
        let layer = uring_core::Layer::from_id((raw >> 3) as u8).filter(|_| mode == ContextMode::Layer);
        prop_assert_eq!(c.layer_data().map(|d| d.layer()), layer);
        if let Some(d) = c.layer_data() {
            prop_assert_eq!((d.flag(), d.payload(), d.raw()), (raw & 0b100 != 0, raw >> 11, raw));
        }
        if direct {
            // Every direct bit pattern is some packed context: decoding and
            // re-encoding gives the same 64 bits.
            prop_assert_eq!(c.fd().is_none(), raw >> 33 == FD_NONE);
            if let Some(fd) = c.fd() {
                prop_assert!((0..i32::MAX).contains(&fd));
            }
            let again = SqeContext::packed(c.op().unwrap(), c.flags().unwrap(), c.buf_group().unwrap(), c.fd().unwrap_or(-1));
            prop_assert_eq!(again.raw(), raw);
        } else if !token {
            // The setters leave a context of another mode untouched.
            prop_assert_eq!(c.with_op(1).with_flags(SqeFlags::IO_LINK).with_buf_group(2).with_fd(3), c);
        }
    }

    #[test]
    fn user_data_that_no_pool_issued_resolves_to_nothing(raw in any::<u64>(), indirect in 0..8u32, extended in 0..8u32) {
        let mut pools = ContextPools::new(indirect, extended);
        let c = SqeContext::of_user_data(raw);
        // Nothing acquired: no generation is live, whatever the bits say.
        prop_assert!(pools.indirect(c).is_none());
        prop_assert!(pools.extended(c).is_none());
        prop_assert!(pools.indirect_mut(c).is_none());
        prop_assert!(pools.extended_mut(c).is_none());
        prop_assert!(matches!(pools.release(c), Err(Error::StaleContext)));
        let pooled = matches!(c.mode(), ContextMode::Indirect | ContextMode::Extended);
        let stale = pools.indirect_stats().stale_returns + pools.extended_stats().stale_returns;
        prop_assert_eq!(stale, u64::from(pooled), "only a pooled mode reaches a pool's counters");
    }
}

#[derive(Debug, Clone)]
enum Step {
    AcquireIndirect,
    AcquireExtended,
    /// Release the n-th context ever issued (modulo their number).
    Release(usize),
    /// Look the n-th issued context up in both pools.
    Lookup(usize),
    /// Write a value into the n-th issued context's slot.
    Write(usize, u64),
    /// An issued context with some bits changed (or a random value), looked
    /// up and released.
    Forge(usize, u64),
}

fn any_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => Just(Step::AcquireIndirect),
        3 => Just(Step::AcquireExtended),
        3 => any::<usize>().prop_map(Step::Release),
        2 => any::<usize>().prop_map(Step::Lookup),
        2 => (any::<usize>(), any::<u64>()).prop_map(|(i, v)| Step::Write(i, v)),
        2 => (any::<usize>(), any::<u64>()).prop_map(|(i, m)| Step::Forge(i, m)),
    ]
}

/// The pool counters as the model sees them.
#[derive(Debug, Default, Clone, Copy)]
struct ModelStats {
    capacity: u32,
    in_use: u32,
    peak: u32,
    acquired: u64,
    released: u64,
    exhausted: u64,
    stale_returns: u64,
}

impl ModelStats {
    fn as_stats(self) -> PoolStats {
        PoolStats {
            capacity: self.capacity,
            in_use: self.in_use,
            peak: self.peak,
            acquired: self.acquired,
            released: self.released,
            exhausted: self.exhausted,
            stale_returns: self.stale_returns,
        }
    }
}

/// `ContextPools` next to a model: the live contexts (with the value last
/// written into each slot) and the counters of each pool.
struct Harness {
    pools: ContextPools,
    live: HashMap<SqeContext, u64>,
    issued: Vec<SqeContext>,
    ever: HashSet<SqeContext>,
    indirect: ModelStats,
    extended: ModelStats,
}

impl Harness {
    fn new(indirect: u32, extended: u32) -> Self {
        Harness {
            pools: ContextPools::new(indirect, extended),
            live: HashMap::new(),
            issued: Vec::new(),
            ever: HashSet::new(),
            indirect: ModelStats { capacity: indirect, ..Default::default() },
            extended: ModelStats { capacity: extended, ..Default::default() },
        }
    }

    fn model(&mut self, mode: ContextMode) -> Option<&mut ModelStats> {
        match mode {
            ContextMode::Indirect => Some(&mut self.indirect),
            ContextMode::Extended => Some(&mut self.extended),
            _ => None,
        }
    }

    fn pick(&self, n: usize) -> Option<SqeContext> {
        (!self.issued.is_empty()).then(|| self.issued[n % self.issued.len()])
    }

    /// The value in the slot `c` names, if it resolves, through the pool of
    /// its mode; the other pool must not resolve it.
    fn read(&self, c: SqeContext) -> Option<u64> {
        let i = self.pools.indirect(c).map(|s| s.sqe.0.user_data);
        let e = self.pools.extended(c).map(|s| {
            let words = s.data.view::<[u64; 8]>();
            assert_eq!(words[0], s.sqe.0.user_data, "the SQE and the data were written together");
            s.sqe.0.user_data
        });
        assert!(i.is_none() || e.is_none(), "{c:?} resolved in both pools");
        i.or(e)
    }

    fn acquire(&mut self, mode: ContextMode) -> Result<(), TestCaseError> {
        let got = match mode {
            ContextMode::Indirect => self.pools.acquire_indirect(),
            _ => self.pools.acquire_extended(),
        };
        let m = self.model(mode).expect("a pooled mode");
        if m.in_use < m.capacity {
            let c = got.map_err(|e| TestCaseError::fail(format!("acquire with room failed: {e}")))?;
            m.in_use += 1;
            m.peak = m.peak.max(m.in_use);
            m.acquired += 1;
            prop_assert_eq!(c.mode(), mode);
            prop_assert!(self.ever.insert(c), "{:?} was issued before", c);
            prop_assert_eq!(self.read(c), Some(0), "a fresh slot is zeroed");
            self.live.insert(c, 0);
            self.issued.push(c);
        } else {
            m.exhausted += 1;
            let name = if mode == ContextMode::Indirect { "indirect" } else { "extended" };
            let ok =
                matches!(got, Err(Error::PoolExhausted { pool, capacity }) if pool == name && capacity == m.capacity);
            prop_assert!(ok, "a full pool must refuse: {:?}", got);
        }
        Ok(())
    }

    fn release(&mut self, c: SqeContext) -> Result<(), TestCaseError> {
        let got = self.pools.release(c);
        if self.live.remove(&c).is_some() {
            prop_assert!(got.is_ok(), "releasing live {:?}: {:?}", c, got);
            let m = self.model(c.mode()).expect("live contexts are pooled");
            m.in_use -= 1;
            m.released += 1;
        } else {
            prop_assert!(matches!(got, Err(Error::StaleContext)), "releasing dead {:?}: {:?}", c, got);
            if let Some(m) = self.model(c.mode()) {
                m.stale_returns += 1;
            }
        }
        Ok(())
    }

    fn write(&mut self, c: SqeContext, v: u64) -> Result<(), TestCaseError> {
        let live = self.live.contains_key(&c);
        let wrote = match c.mode() {
            ContextMode::Indirect => self.pools.indirect_mut(c).map(|s| s.sqe.0.user_data = v).is_some(),
            ContextMode::Extended => self
                .pools
                .extended_mut(c)
                .map(|s| {
                    s.sqe.0.user_data = v;
                    s.data.view_mut::<[u64; 8]>()[0] = v;
                })
                .is_some(),
            _ => false,
        };
        prop_assert_eq!(wrote, live, "{:?} writable iff live", c);
        if live {
            self.live.insert(c, v);
        }
        Ok(())
    }

    fn lookup(&self, c: SqeContext) -> Result<(), TestCaseError> {
        prop_assert_eq!(self.read(c), self.live.get(&c).copied(), "{:?}", c);
        Ok(())
    }

    fn check_stats(&self) -> Result<(), TestCaseError> {
        prop_assert_eq!(self.pools.indirect_stats(), self.indirect.as_stats());
        prop_assert_eq!(self.pools.extended_stats(), self.extended.as_stats());
        Ok(())
    }

    fn step(&mut self, step: &Step) -> Result<(), TestCaseError> {
        match *step {
            Step::AcquireIndirect => self.acquire(ContextMode::Indirect)?,
            Step::AcquireExtended => self.acquire(ContextMode::Extended)?,
            Step::Release(n) => {
                if let Some(c) = self.pick(n) {
                    self.release(c)?;
                }
            }
            Step::Lookup(n) => {
                if let Some(c) = self.pick(n) {
                    self.lookup(c)?;
                }
            }
            Step::Write(n, v) => {
                if let Some(c) = self.pick(n) {
                    self.write(c, v)?;
                }
            }
            Step::Forge(n, mask) => {
                // Flip some bits of an issued context: its mode, index or
                // generation (a random value when nothing was issued). The
                // result resolves only if it happens to be live.
                let forged = match self.pick(n) {
                    Some(c) => {
                        let flip = match mask % 4 {
                            0 => (mask >> 2) & 0b111,                  // mode and pool
                            1 => ((mask >> 3) & ((1 << 29) - 1)) << 3, // index
                            2 => (mask >> 32) << 32,                   // generation
                            _ => mask,                                 // anything
                        };
                        SqeContext::of_user_data(c.raw() ^ flip.max(1))
                    }
                    None => SqeContext::of_user_data(mask),
                };
                self.lookup(forged)?;
                self.write(forged, mask)?;
                self.release(forged)?;
            }
        }
        self.check_stats()
    }
}

proptest! {
    #[test]
    fn pools_match_the_model(
        indirect in 0..6u32,
        extended in 0..6u32,
        steps in prop::collection::vec(any_step(), 1..200),
    ) {
        let mut h = Harness::new(indirect, extended);
        h.check_stats()?;
        for step in &steps {
            h.step(step)?;
        }
        // Every issued context: live ones resolve to what was written,
        // returned ones to nothing.
        for c in h.issued.clone() {
            h.lookup(c)?;
        }
        // Return everything; a second return of each is stale.
        let live: Vec<SqeContext> = h.live.keys().copied().collect();
        for &c in &live {
            h.release(c)?;
        }
        for &c in &live {
            h.release(c)?;
        }
        h.check_stats()?;
        prop_assert_eq!((h.pools.indirect_stats().in_use, h.pools.extended_stats().in_use), (0, 0));
        prop_assert!(h.pools.reset().is_ok());
        prop_assert_eq!(h.pools.indirect_stats(), PoolStats { capacity: indirect, ..Default::default() });
        prop_assert_eq!(h.pools.extended_stats(), PoolStats { capacity: extended, ..Default::default() });
        for &c in &h.issued {
            prop_assert!(h.read(c).is_none(), "{:?} resolves after the reset", c);
        }
    }

    /// One slot reused `cycles` times: its index stays 0, the k-th
    /// acquisition carries generation `2k + 1` (odd: borrowed; each acquire
    /// and each release bumps it), and no earlier context resolves again.
    /// (The generation is 32 bits: a context 2^31 reuses old would match
    /// again, far beyond what a CQE can lag behind.)
    #[test]
    fn a_reused_slot_gets_a_new_generation_every_time(cycles in 1..3000usize, extended in any::<bool>()) {
        let mut pools = if extended { ContextPools::new(0, 1) } else { ContextPools::new(1, 0) };
        let resolves = |p: &ContextPools, c| if extended { p.extended(c).is_some() } else { p.indirect(c).is_some() };
        let mut seen = Vec::with_capacity(cycles);
        for k in 0..cycles {
            let c = if extended { pools.acquire_extended() } else { pools.acquire_indirect() }.unwrap();
            prop_assert_eq!((c.raw() >> 3) & ((1 << 29) - 1), 0, "index");
            prop_assert_eq!(c.raw() >> 32, 2 * k as u64 + 1, "generation");
            prop_assert!(resolves(&pools, c));
            if let Some(&prev) = seen.last() {
                prop_assert!(!resolves(&pools, prev));
                prop_assert!(matches!(pools.release(prev), Err(Error::StaleContext)));
            }
            pools.release(c).unwrap();
            prop_assert!(!resolves(&pools, c));
            seen.push(c);
        }
        let s = if extended { pools.extended_stats() } else { pools.indirect_stats() };
        prop_assert_eq!((s.acquired, s.released, s.in_use, s.peak), (cycles as u64, cycles as u64, 0, 1));
        prop_assert_eq!(s.stale_returns, cycles as u64 - 1);
        prop_assert!(seen.iter().all(|&c| !resolves(&pools, c)));
    }
}
