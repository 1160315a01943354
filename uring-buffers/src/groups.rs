//! Multi-size buffer groups: one provided buffer ring per size class, laid
//! out from a memory budget.
//!
//! A [`BufferLayout`] is pure arithmetic: build one
//! [`for_budget`](BufferLayout::for_budget) or
//! [`for_machine`](BufferLayout::for_machine), inspect its [`Tier`]s, and
//! only then [`register`](BufferGroups::register) it, which allocates and
//! registers one [`BufRing`] per tier. Operations ask for a size and get
//! the group of the smallest class that holds it
//! ([`BufferGroups::group_for`]).
//!
//! Register the groups between [`Ring::new`] and [`Ring::start`], with
//! the ring's other resources; it also works on a started ring.

use std::fmt;

use uring_core::{Cqe, Ring, SqeContext};
use uring_ops::multishot::RecvMulti;
use uring_ops::net::RecvSelect;
use uring_ops::{RingOps, Target};

use crate::bufring::{Buf, BufRing, BufRingConfig, MAX_ENTRIES};
use crate::error::{Error, Result};

/// A buffer size class: the size of every buffer in its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SizeClass(u32);

impl SizeClass {
    /// 128 bytes: headers, small control messages.
    pub const TINY: SizeClass = SizeClass(128);
    /// 512 bytes.
    pub const SMALL: SizeClass = SizeClass(512);
    /// 2 KiB: a typical request.
    pub const MEDIUM: SizeClass = SizeClass(2 << 10);
    /// 8 KiB.
    pub const LARGE: SizeClass = SizeClass(8 << 10);
    /// 32 KiB.
    pub const XLARGE: SizeClass = SizeClass(32 << 10);
    /// 64 KiB: bulk transfers.
    pub const HUGE: SizeClass = SizeClass(64 << 10);
    /// 256 KiB: the largest class, for streaming.
    pub const GIANT: SizeClass = SizeClass(256 << 10);

    /// Every class, smallest first.
    pub const ALL: [SizeClass; 7] = [
        SizeClass::TINY,
        SizeClass::SMALL,
        SizeClass::MEDIUM,
        SizeClass::LARGE,
        SizeClass::XLARGE,
        SizeClass::HUGE,
        SizeClass::GIANT,
    ];

    /// A class of `bytes` per buffer (any non-zero size).
    pub const fn new(bytes: u32) -> Option<SizeClass> {
        if bytes == 0 { None } else { Some(SizeClass(bytes)) }
    }

    /// Bytes per buffer.
    pub const fn bytes(self) -> u32 {
        self.0
    }
}

/// Typical machine sizes, for [`BufferLayout::for_machine`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MachineMemory {
    /// 1 GiB of RAM.
    Gb1,
    /// 2 GiB.
    Gb2,
    /// 4 GiB.
    Gb4,
    /// 8 GiB.
    Gb8,
    /// 16 GiB.
    Gb16,
    /// 32 GiB.
    Gb32,
    /// 64 GiB or more.
    Gb64,
}

impl MachineMemory {
    /// The machine's memory in bytes.
    pub const fn bytes(self) -> usize {
        let gib = match self {
            MachineMemory::Gb1 => 1,
            MachineMemory::Gb2 => 2,
            MachineMemory::Gb4 => 4,
            MachineMemory::Gb8 => 8,
            MachineMemory::Gb16 => 16,
            MachineMemory::Gb32 => 32,
            MachineMemory::Gb64 => 64,
        };
        gib << 30
    }

    /// The buffer budget chosen for it: 1/64 of the memory (16 MiB on a
    /// 1 GiB machine, 1 GiB on a 64 GiB one).
    pub const fn budget(self) -> usize {
        self.bytes() / 64
    }
}

/// One size class of a layout: `count` buffers of `class` in `group`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tier {
    /// The buffer size.
    pub class: SizeClass,
    /// How many buffers (a power of two, at most 32768).
    pub count: u32,
    /// The buffer group id it registers as.
    pub group: u16,
}

impl Tier {
    /// Bytes of buffers in the tier.
    pub const fn bytes(&self) -> usize {
        self.class.0 as usize * self.count as usize
    }
}

/// The tiers a budget buys; nothing is allocated until
/// [`BufferGroups::register`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BufferLayout {
    tiers: Vec<Tier>,
    budget: usize,
}

/// Shares of the budget per class, in per mille, smallest class first:
/// many small buffers cost little, and large ones carry the bytes.
const SHARES: [usize; 7] = [40, 80, 160, 200, 200, 200, 120];

/// The smallest budget [`BufferLayout::for_budget`] accepts: enough for
/// eight buffers of every class up to 64 KiB.
pub const MIN_BUDGET: usize = 1 << 20;

impl BufferLayout {
    /// Splits `budget` bytes across every [`SizeClass`] (fixed shares, each
    /// tier rounded down to a power-of-two count, capped at 32768
    /// buffers), starting at group `first_group`. Classes whose share buys
    /// fewer than 8 buffers are left out.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a budget below [`MIN_BUDGET`] or
    /// group ids that would overflow `u16`.
    pub fn for_budget(budget: usize, first_group: u16) -> Result<Self> {
        if budget < MIN_BUDGET {
            return Err(Error::invalid(format!(
                "a buffer budget of {budget} bytes is below the minimum of {MIN_BUDGET}"
            )));
        }
        let mut tiers = Vec::new();
        for (class, share) in SizeClass::ALL.into_iter().zip(SHARES) {
            let bytes = budget / 1000 * share;
            let fit = (bytes / class.0 as usize).min(MAX_ENTRIES as usize);
            if fit < 8 {
                continue;
            }
            let count = 1u32 << (usize::BITS - 1 - fit.leading_zeros());
            let group = first_group
                .checked_add(tiers.len() as u16)
                .ok_or_else(|| Error::invalid(format!("group ids from {first_group} overflow u16")))?;
            tiers.push(Tier { class, count, group });
        }
        Ok(BufferLayout { tiers, budget })
    }

    /// The layout for a machine of the given size ([`MachineMemory::budget`]).
    ///
    /// # Errors
    ///
    /// As for [`for_budget`](Self::for_budget).
    pub fn for_machine(machine: MachineMemory, first_group: u16) -> Result<Self> {
        Self::for_budget(machine.budget(), first_group)
    }

    /// A layout of exactly these tiers (for callers with their own
    /// policy).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for counts that are not powers of two up
    /// to 32768, duplicate groups, or classes not in increasing order.
    pub fn custom(tiers: Vec<Tier>) -> Result<Self> {
        for (i, t) in tiers.iter().enumerate() {
            BufRingConfig::new(t.group, t.count, t.class.0).validate()?;
            if tiers[..i].iter().any(|o| o.group == t.group) {
                return Err(Error::invalid(format!("group {} appears twice", t.group)));
            }
            if i > 0 && tiers[i - 1].class >= t.class {
                return Err(Error::invalid("tiers must be listed by increasing size class"));
            }
        }
        let budget = tiers.iter().map(Tier::bytes).sum();
        Ok(BufferLayout { tiers, budget })
    }

    /// The tiers, smallest class first.
    pub fn tiers(&self) -> &[Tier] {
        &self.tiers
    }

    /// The budget asked for.
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// Bytes of buffers the tiers allocate (at most the budget).
    pub fn total_bytes(&self) -> usize {
        self.tiers.iter().map(Tier::bytes).sum()
    }

    /// The tier serving a receive of up to `size` bytes: the smallest class
    /// that holds it.
    pub fn tier_for(&self, size: usize) -> Option<&Tier> {
        self.tiers.iter().find(|t| t.class.0 as usize >= size)
    }
}

impl fmt::Display for BufferLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{:>8} {:>8} {:>10} {:>6}", "class", "count", "bytes", "group")?;
        for t in &self.tiers {
            writeln!(f, "{:>8} {:>8} {:>10} {:>6}", t.class.0, t.count, t.bytes(), t.group)?;
        }
        write!(f, "total {} of a {} budget", self.total_bytes(), self.budget)
    }
}

/// The registered rings of a [`BufferLayout`].
#[derive(Debug)]
pub struct BufferGroups {
    layout: BufferLayout,
    rings: Vec<BufRing>,
}

impl BufferGroups {
    /// Allocates and registers one [`BufRing`] per tier.
    ///
    /// # Errors
    ///
    /// As for [`BufRing::register`]; tiers registered before the failing
    /// one stay registered with the ring (their memory is attached to it).
    pub fn register(ring: &mut Ring, layout: BufferLayout) -> Result<Self> {
        let mut rings = Vec::with_capacity(layout.tiers.len());
        for t in &layout.tiers {
            rings.push(BufRing::register(ring, BufRingConfig::new(t.group, t.count, t.class.0))?);
        }
        Ok(BufferGroups { layout, rings })
    }

    /// The layout registered.
    pub fn layout(&self) -> &BufferLayout {
        &self.layout
    }

    /// The group to select from for a receive of up to `size` bytes.
    pub fn group_for(&self, size: usize) -> Option<u16> {
        self.layout.tier_for(size).map(|t| t.group)
    }

    /// Queues a receive of up to `size` bytes on `fd` that selects a buffer
    /// from the smallest class holding `size` (`RecvSelect`). The returned
    /// context is `ctx` as stamped, carrying the group in its buffer-group
    /// field for packed contexts, so [`take`](Self::take) can be routed
    /// from the CQE (`cqe.context().buf_group()`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when no class holds `size`; otherwise as
    /// for `RingOps::push_op`.
    pub fn recv(&self, ring: &mut Ring, ctx: SqeContext, fd: impl Into<Target>, size: usize) -> Result<SqeContext> {
        let group = self.group_for_or_err(size)?;
        let len = u32::try_from(size).map_err(|_| Error::invalid(format!("a receive of {size} bytes")))?;
        Ok(ring.push_op(ctx.with_buf_group(group), RecvSelect::new(fd, group).max_len(len))?)
    }

    /// As [`recv`](Self::recv), multishot (`RecvMulti`): every message up
    /// to the class's buffer size gets a buffer of that class.
    ///
    /// # Errors
    ///
    /// As for [`recv`](Self::recv).
    pub fn recv_multi(
        &self,
        ring: &mut Ring,
        ctx: SqeContext,
        fd: impl Into<Target>,
        size: usize,
    ) -> Result<SqeContext> {
        let group = self.group_for_or_err(size)?;
        Ok(ring.push_op(ctx.with_buf_group(group), RecvMulti::new(fd, group))?)
    }

    fn group_for_or_err(&self, size: usize) -> Result<u16> {
        self.group_for(size).ok_or_else(|| {
            Error::invalid(format!(
                "no buffer class holds {size} bytes (the largest is {})",
                self.layout.tiers.last().map_or(0, |t| t.class.0)
            ))
        })
    }

    /// The ring of `group`.
    pub fn ring(&self, group: u16) -> Option<&BufRing> {
        self.rings.iter().find(|r| r.group() == group)
    }

    /// The ring of `group`, mutable (take, recycle).
    pub fn ring_mut(&mut self, group: u16) -> Option<&mut BufRing> {
        self.rings.iter_mut().find(|r| r.group() == group)
    }

    /// Takes the buffer `cqe` names from `group` (the group the operation
    /// selected from: carry it in the `SqeContext`'s buffer group).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a group not in the layout; otherwise
    /// as for [`BufRing::take`].
    pub fn take(&mut self, group: u16, cqe: &Cqe<'_>) -> Result<Option<Buf>> {
        match self.ring_mut(group) {
            Some(r) => r.take(cqe),
            None => Err(Error::invalid(format!("group {group} is not one of these buffer groups"))),
        }
    }

    /// The bytes of a held buffer.
    ///
    /// # Panics
    ///
    /// If `buf` did not come from these groups.
    pub fn bytes(&self, buf: &Buf) -> &[u8] {
        match self.ring(buf.group()) {
            Some(r) => r.bytes(buf),
            None => panic!("Buf of group {} is not from these buffer groups", buf.group()),
        }
    }

    /// Returns a buffer to its group.
    ///
    /// # Errors
    ///
    /// As for [`BufRing::recycle`].
    pub fn recycle(&mut self, buf: Buf) -> Result<()> {
        let group = buf.group();
        match self.ring_mut(group) {
            Some(r) => r.recycle(buf),
            None => Err(Error::NotOwned { group, bid: buf.bid(), why: "not from these buffer groups" }),
        }
    }

    /// Buffers held by the caller, over every group.
    pub fn held(&self) -> u32 {
        self.rings.iter().map(BufRing::held).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_become_power_of_two_tiers_within_the_budget() {
        for budget in [MIN_BUDGET, 3 << 20, 64 << 20, 1 << 30] {
            let l = BufferLayout::for_budget(budget, 10).unwrap();
            assert!(l.total_bytes() <= budget, "{l}");
            assert!(l.total_bytes() * 3 >= budget, "the layout uses a fair part of the budget:\n{l}");
            for (i, t) in l.tiers().iter().enumerate() {
                assert!(t.count.is_power_of_two() && t.count >= 8 && t.count <= MAX_ENTRIES, "{t:?}");
                assert_eq!(t.group, 10 + i as u16);
            }
        }
        let small = BufferLayout::for_budget(MIN_BUDGET, 0).unwrap();
        assert!(small.tiers().iter().all(|t| t.class <= SizeClass::HUGE), "{small}");
        assert!(BufferLayout::for_budget(MIN_BUDGET - 1, 0).is_err());
        assert!(BufferLayout::for_budget(1 << 30, u16::MAX - 2).is_err(), "group ids overflow");
    }

    #[test]
    fn bigger_machines_get_more_buffers() {
        let a = BufferLayout::for_machine(MachineMemory::Gb4, 0).unwrap();
        let b = BufferLayout::for_machine(MachineMemory::Gb64, 0).unwrap();
        assert_eq!(a.budget(), 64 << 20);
        assert!(b.total_bytes() > a.total_bytes());
        assert_eq!(a.tier_for(100).unwrap().class, SizeClass::TINY);
        assert_eq!(a.tier_for(129).unwrap().class, SizeClass::SMALL);
        assert_eq!(a.tier_for(64 << 10).unwrap().class, SizeClass::HUGE);
        assert!(a.tier_for(1 << 20).is_none());
    }

    #[test]
    fn custom_layouts_are_checked() {
        let t = |class: u32, count, group| Tier { class: SizeClass::new(class).unwrap(), count, group };
        assert!(BufferLayout::custom(vec![t(128, 8, 1), t(4096, 4, 2)]).is_ok());
        assert!(BufferLayout::custom(vec![t(128, 6, 1)]).is_err(), "not a power of two");
        assert!(BufferLayout::custom(vec![t(128, 8, 1), t(256, 8, 1)]).is_err(), "duplicate group");
        assert!(BufferLayout::custom(vec![t(256, 8, 1), t(128, 8, 2)]).is_err(), "order");
    }
}
