//! Submission identity carried through `user_data`: [`SqeContext`], the
//! [`LayerData`] layout of the layers above, and the fixed-capacity
//! [`ContextPools`] behind the pooled modes.
//!
//! # Layout of the 64 bits
//!
//! | bits | packed (`0`) | pooled (`1`) | token (`2`) | layer (`3`) |
//! |---|---|---|---|---|
//! | 0–1 | mode | mode | mode | mode |
//! | 2 | opcode (2–9) | `0` indirect, `1` extended | opcode (2–9) | the layer's own flag |
//! | 3–10 | … | slot index (3–31) | … bit 10: buffer group stamped | [`Layer`] (3–10) |
//! | 11–63 | flags (10–16), buffer group (17–32), fd (33–63) | generation (32–63) | number (11–63), or group (11–26) and number (27–63) | payload (53 bits) |
//!
//! Pooled contexts hold a slot index and a generation, never a pointer: a
//! `user_data` that does not name a live slot of this ring's pools (returned
//! already, or posted by another ring through `MSG_RING`) decodes to
//! nothing instead of to a dangling reference.
//!
//! Layer values are the only ones a layer above trusts to release memory;
//! every safe push refuses them, so no value safe code builds
//! ([`SqeContext::token`], [`SqeContext::packed`], [`SqeContext::from_raw`])
//! is ever taken for a layer's.

use std::fmt;
use std::mem::{align_of, size_of};

use crate::error::{Error, Result};
use crate::sqe::{Sqe, SqeFlags};
use crate::sys;

const MODE_MASK: u64 = 0b11;
const MODE_PACKED: u64 = 0;
const MODE_POOLED: u64 = 1;
const MODE_TOKEN: u64 = 2;
const MODE_LAYER: u64 = 3;
const OP_SHIFT: u32 = 2;
const FLAGS_SHIFT: u32 = 10;
const FLAGS_MASK: u64 = 0x7f;
const GROUP_SHIFT: u32 = 17;
const FD_SHIFT: u32 = 33;
const FD_NONE: u64 = (1 << 31) - 1;
/// Pooled: bit 2 picks the pool, so a pool's "mode" is three bits.
const POOL_MASK: u64 = 0b111;
const POOL_INDIRECT: u64 = MODE_POOLED;
const POOL_EXTENDED: u64 = MODE_POOLED | 0b100;
const INDEX_SHIFT: u32 = 3;
const INDEX_MASK: u64 = (1 << 29) - 1;
const GEN_SHIFT: u32 = 32;
/// Token: bit 10 says the request selected a buffer and bits 11–26 hold
/// the group it selected from (stamped at submission).
const TOKEN_GROUPED: u64 = 1 << 10;
const TOKEN_SHIFT: u32 = 11;
const TOKEN_GROUP_SHIFT: u32 = 11;
const TOKEN_GROUPED_SHIFT: u32 = 27;
const LAYER_SHIFT: u32 = 3;
const LAYER_FLAG: u64 = 1 << 2;
const PAYLOAD_SHIFT: u32 = 11;

/// The layers above `uring-core` that keep identities of their own in
/// `user_data` (mode bits `3`, [`LayerData`]): a CQE carrying one tells
/// that layer the kernel is done with memory it owns, so every safe push
/// refuses such a value and only the layer's own (hidden, `unsafe`) push
/// queues one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Layer {
    /// Multishot subscriptions (`uring_ops::subscription`).
    Subscription = 0xB5,
    /// Fixed-buffer operations (`uring_buffers::FixedBuffers`).
    FixedBuffers = 0xF1,
    /// Zero-copy send tracking (`uring_ops::zc`).
    ZeroCopySend = 0x2C,
    /// Zero-copy receive streams (`uring_zcrx`).
    ZeroCopyRecv = 0x2E,
    /// Listener setup chains (`uring_ops::listener`): a socket phase's CQE
    /// hands the chain a descriptor it then owns and closes.
    Listener = 0x4C,
    /// Provided-buffer rings: the requests of incremental rings (flag
    /// clear, `uring_buffers::BufRing::push_op`: the request's last CQE
    /// lets the ring queue the next one), and sends from held buffers (flag
    /// set, `uring_buffers::BufRing::send`: the CQE gives the buffer back).
    BufRing = 0xB7,
    /// Resource tags of caller memory in a registered-buffer table
    /// (`uring_buffers::RegisteredBuffers::handle_tag`): the kernel posts
    /// one when it has let go of a buffer, whose memory then goes back to
    /// the caller. A layer of its own, not a flag of
    /// [`FixedBuffers`](Layer::FixedBuffers)' values: a tag is no
    /// operation of any table, and no router that checks the layer alone
    /// ([`LayerData::payload_of`] ignores the flag) can take one for a
    /// fixed-buffer operation's completion, or the other way round.
    ResourceTag = 0x7A,
}

impl Layer {
    /// Every layer, for tests and tables.
    pub const ALL: [Layer; 7] = [
        Layer::Subscription,
        Layer::FixedBuffers,
        Layer::ZeroCopySend,
        Layer::ZeroCopyRecv,
        Layer::Listener,
        Layer::BufRing,
        Layer::ResourceTag,
    ];

    /// The layer with id `id` (bits 3–10 of a layer value).
    #[inline]
    pub const fn from_id(id: u8) -> Option<Layer> {
        match id {
            0xB5 => Some(Layer::Subscription),
            0xF1 => Some(Layer::FixedBuffers),
            0x2C => Some(Layer::ZeroCopySend),
            0x2E => Some(Layer::ZeroCopyRecv),
            0x4C => Some(Layer::Listener),
            0xB7 => Some(Layer::BufRing),
            0x7A => Some(Layer::ResourceTag),
            _ => None,
        }
    }

    /// The layer's id: bits 3–10 of its values.
    #[inline]
    pub const fn id(self) -> u8 {
        self as u8
    }
}

/// A layer's own `user_data` (mode bits `3`): bit 2 is a flag of the
/// layer's, bits 3–10 name the [`Layer`], bits 11–63 are a 53-bit payload.
/// The one encoder and decoder every layer uses.
///
/// ```
/// use uring_core::{Layer, LayerData};
/// let d = LayerData::new(Layer::Subscription, true, 42).unwrap();
/// assert_eq!(LayerData::decode(d.raw()), Some(d));
/// assert_eq!(LayerData::payload_of(d.raw(), Layer::Subscription), Some(42));
/// assert_eq!(LayerData::payload_of(d.raw(), Layer::Listener), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LayerData {
    layer: Layer,
    flag: bool,
    payload: u64,
}

impl LayerData {
    /// Bits of payload.
    pub const PAYLOAD_BITS: u32 = 64 - PAYLOAD_SHIFT;
    /// The largest payload.
    pub const PAYLOAD_MAX: u64 = (1 << Self::PAYLOAD_BITS) - 1;

    /// A layer value; `None` if `payload` exceeds [`PAYLOAD_MAX`](Self::PAYLOAD_MAX).
    #[inline]
    pub const fn new(layer: Layer, flag: bool, payload: u64) -> Option<LayerData> {
        if payload > Self::PAYLOAD_MAX { None } else { Some(LayerData { layer, flag, payload }) }
    }

    /// The 64-bit `user_data`.
    #[inline]
    pub const fn raw(self) -> u64 {
        MODE_LAYER
            | if self.flag { LAYER_FLAG } else { 0 }
            | ((self.layer as u64) << LAYER_SHIFT)
            | (self.payload << PAYLOAD_SHIFT)
    }

    /// The value as a context, to queue with the layers' own push
    /// (`uring_ops::push_layer_op`, `unsafe`); every other push refuses it.
    #[inline]
    pub const fn context(self) -> SqeContext {
        SqeContext(self.raw())
    }

    /// Decodes a `user_data`: `None` unless it is a layer value of a known
    /// [`Layer`].
    #[inline]
    pub const fn decode(user_data: u64) -> Option<LayerData> {
        if user_data & MODE_MASK != MODE_LAYER {
            return None;
        }
        match Layer::from_id((user_data >> LAYER_SHIFT) as u8) {
            Some(layer) => {
                Some(LayerData { layer, flag: user_data & LAYER_FLAG != 0, payload: user_data >> PAYLOAD_SHIFT })
            }
            None => None,
        }
    }

    /// The payload of `user_data` if it is `layer`'s (either flag): the
    /// fast check a layer's router makes, two compares.
    #[inline]
    pub const fn payload_of(user_data: u64, layer: Layer) -> Option<u64> {
        let low = MODE_LAYER | ((layer as u64) << LAYER_SHIFT);
        if user_data & ((1 << PAYLOAD_SHIFT) - 1) & !LAYER_FLAG == low {
            Some(user_data >> PAYLOAD_SHIFT)
        } else {
            None
        }
    }

    /// The layer.
    #[inline]
    pub const fn layer(self) -> Layer {
        self.layer
    }

    /// The layer's own flag (bit 2).
    #[inline]
    pub const fn flag(self) -> bool {
        self.flag
    }

    /// The 53-bit payload.
    #[inline]
    pub const fn payload(self) -> u64 {
        self.payload
    }
}

/// Which encoding an [`SqeContext`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextMode {
    /// Op, flags, buffer group and fd packed inline.
    Packed,
    /// A pooled full SQE copy ([`IndirectSqe`]).
    Indirect,
    /// A pooled SQE plus 64 bytes of caller data ([`ExtSqe`]).
    Extended,
    /// The application's own number ([`SqeContext::token`]) with the
    /// opcode stamped at submission.
    Token,
    /// A layer's own value ([`LayerData`]): never the caller's.
    Layer,
}

/// The 64-bit identity of a submission, stored in `user_data` and handed
/// back, unchanged, by every CQE the submission produces.
///
/// Four encodings (the bit layout is in `uring-core/src/context.rs`):
///
/// - a **token** ([`SqeContext::token`]) carries the application's own
///   number, up to 53 bits, and the opcode, stamped at submission: the
///   usual way to tell requests apart;
/// - a **packed** context ([`SqeContext::packed`], [`SqeContext::for_fd`]
///   and the `with_*` methods) packs an fd, a buffer group and the flags;
/// - **pooled** contexts ([`ContextPools::acquire_indirect`],
///   [`ContextPools::acquire_extended`]) name a slot holding a copy of the
///   whole SQE (and 64 bytes of caller data);
/// - **layer** values ([`LayerData`]) belong to the layers above; no safe
///   push accepts one.
///
/// ```
/// use uring_core::{ContextMode, SqeContext, SqeFlags};
/// let ctx = SqeContext::token(1 << 40).unwrap();
/// assert_eq!((ctx.mode(), ctx.as_token()), (ContextMode::Token, Some(1 << 40)));
/// let ctx = SqeContext::for_fd(7).with_op(27).with_buf_group(3).with_flags(SqeFlags::BUFFER_SELECT);
/// assert_eq!((ctx.op(), ctx.fd(), ctx.buf_group()), (Some(27), Some(7), Some(3)));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(transparent)]
pub struct SqeContext(u64);

impl SqeContext {
    /// Bits of a token's number.
    pub const TOKEN_BITS: u32 = 64 - TOKEN_SHIFT;
    /// The largest token number.
    pub const TOKEN_MAX: u64 = (1 << Self::TOKEN_BITS) - 1;
    /// The largest token number a request that selects a provided buffer
    /// (`IOSQE_BUFFER_SELECT`) may carry: submission stamps the group into
    /// the token, which leaves 37 bits for the number.
    pub const TOKEN_MAX_SELECTING: u64 = (1 << (64 - TOKEN_GROUPED_SHIFT)) - 1;

    /// A token: the application's own number `n` for a request (a
    /// connection index, a slab key, a sequence number). Submission stamps
    /// the opcode into it ([`op`](Self::op) at completion), and for a
    /// request that selects a provided buffer the buffer group, which
    /// proves the CQE's buffer ([`Cqe::buffer_selection`](crate::Cqe::buffer_selection)).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if `n` exceeds [`TOKEN_MAX`](Self::TOKEN_MAX)
    /// (2^53 - 1). (A buffer-selecting push refuses numbers above
    /// [`TOKEN_MAX_SELECTING`](Self::TOKEN_MAX_SELECTING), 2^37 - 1.)
    ///
    /// To cancel, remove or update the request, pass the context the push
    /// returned (the kernel matches `user_data` exactly, opcode included);
    /// the cancel family refuses a token as built, with opcode 0. At
    /// completion compare numbers ([`as_token`](Self::as_token)), not raw
    /// values.
    #[inline]
    pub fn token(n: u64) -> Result<Self> {
        if n > Self::TOKEN_MAX {
            return Err(token_error(n, Self::TOKEN_MAX, ""));
        }
        Ok(SqeContext(MODE_TOKEN | (n << TOKEN_SHIFT)))
    }

    /// The token's number.
    #[inline]
    pub const fn as_token(self) -> Option<u64> {
        if self.0 & MODE_MASK != MODE_TOKEN {
            None
        } else if self.0 & TOKEN_GROUPED != 0 {
            Some(self.0 >> TOKEN_GROUPED_SHIFT)
        } else {
            Some(self.0 >> TOKEN_SHIFT)
        }
    }

    /// A packed context with every field given. `fd` is a file descriptor
    /// or fixed-file slot in `0..2^31 - 1`; a negative `fd` means none.
    #[inline]
    pub const fn packed(op: u8, flags: SqeFlags, buf_group: u16, fd: i32) -> Self {
        let fd_bits = if fd < 0 || fd as u64 >= FD_NONE { FD_NONE } else { fd as u64 };
        SqeContext(
            ((op as u64) << OP_SHIFT)
                | (((flags.bits() as u64) & FLAGS_MASK) << FLAGS_SHIFT)
                | ((buf_group as u64) << GROUP_SHIFT)
                | (fd_bits << FD_SHIFT),
        )
    }

    /// A packed context carrying only `fd` (opcode 0, no flags, group 0).
    #[inline]
    pub const fn for_fd(fd: i32) -> Self {
        SqeContext::packed(0, SqeFlags::empty(), 0, fd)
    }

    /// The raw `user_data` value.
    #[inline]
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// Reinterprets a raw `user_data` value of the caller's own modes
    /// (packed, pooled or token): `None` for a layer value (mode bits `3`),
    /// which only the layer that owns it builds ([`LayerData`]).
    #[inline]
    pub const fn from_raw(raw: u64) -> Option<Self> {
        if raw & MODE_MASK == MODE_LAYER { None } else { Some(SqeContext(raw)) }
    }

    /// The context a CQE or SQE carries, whatever its mode (a layer value
    /// included): for decoding, never for building requests (pushes refuse
    /// layer values anyway).
    #[inline]
    pub const fn of_user_data(raw: u64) -> Self {
        SqeContext(raw)
    }

    /// The encoding.
    #[inline]
    pub const fn mode(self) -> ContextMode {
        match self.0 & MODE_MASK {
            MODE_PACKED => ContextMode::Packed,
            MODE_POOLED => {
                if self.0 & POOL_MASK == POOL_EXTENDED {
                    ContextMode::Extended
                } else {
                    ContextMode::Indirect
                }
            }
            MODE_TOKEN => ContextMode::Token,
            _ => ContextMode::Layer,
        }
    }

    #[inline]
    const fn is_packed(self) -> bool {
        self.0 & MODE_MASK == MODE_PACKED
    }

    /// Replaces the opcode (packed contexts and tokens; others are
    /// returned unchanged).
    #[inline]
    pub const fn with_op(self, op: u8) -> Self {
        if !self.is_packed() && self.0 & MODE_MASK != MODE_TOKEN {
            return self;
        }
        SqeContext((self.0 & !(0xff << OP_SHIFT)) | ((op as u64) << OP_SHIFT))
    }

    /// Replaces the whole flag set (packed contexts only). Compute unions
    /// before calling; only the seven defined `IOSQE_*` bits are kept.
    #[inline]
    pub const fn with_flags(self, flags: SqeFlags) -> Self {
        if !self.is_packed() {
            return self;
        }
        SqeContext((self.0 & !(FLAGS_MASK << FLAGS_SHIFT)) | (((flags.bits() as u64) & FLAGS_MASK) << FLAGS_SHIFT))
    }

    /// Replaces the buffer group (packed contexts only).
    #[inline]
    pub const fn with_buf_group(self, group: u16) -> Self {
        if !self.is_packed() {
            return self;
        }
        SqeContext((self.0 & !(0xffff << GROUP_SHIFT)) | ((group as u64) << GROUP_SHIFT))
    }

    /// Replaces the fd (packed contexts only).
    #[inline]
    pub const fn with_fd(self, fd: i32) -> Self {
        if !self.is_packed() {
            return self;
        }
        let d = SqeContext::packed(0, SqeFlags::empty(), 0, fd);
        SqeContext((self.0 & !(FD_NONE << FD_SHIFT)) | d.0)
    }

    /// The layer value this is, if it is one of a known [`Layer`].
    #[inline]
    pub const fn layer_data(self) -> Option<LayerData> {
        LayerData::decode(self.0)
    }

    /// The opcode of a packed context or a token (as stamped at
    /// submission; 0 before).
    #[inline]
    pub const fn op(self) -> Option<u8> {
        if self.is_packed() || self.0 & MODE_MASK == MODE_TOKEN { Some((self.0 >> OP_SHIFT) as u8) } else { None }
    }

    /// The SQE flags of a packed context.
    #[inline]
    pub const fn flags(self) -> Option<SqeFlags> {
        if self.is_packed() {
            Some(SqeFlags::from_bits_retain(((self.0 >> FLAGS_SHIFT) & FLAGS_MASK) as u8))
        } else {
            None
        }
    }

    /// The buffer group of a packed context, or of a token whose request
    /// selected a provided buffer (stamped at submission).
    #[inline]
    pub const fn buf_group(self) -> Option<u16> {
        if self.is_packed() {
            Some((self.0 >> GROUP_SHIFT) as u16)
        } else if self.0 & MODE_MASK == MODE_TOKEN && self.0 & TOKEN_GROUPED != 0 {
            Some((self.0 >> TOKEN_GROUP_SHIFT) as u16)
        } else {
            None
        }
    }

    /// The fd of a packed context, if it carries one.
    #[inline]
    pub const fn fd(self) -> Option<i32> {
        let bits = self.0 >> FD_SHIFT;
        if self.is_packed() && bits != FD_NONE { Some(bits as i32) } else { None }
    }

    /// Whether a CQE with this context proves, by itself, the buffer group
    /// its buffer came from: a packed context stamped with
    /// `IOSQE_BUFFER_SELECT`, or a token stamped with its group.
    #[inline]
    pub(crate) const fn inline_selection(self) -> Option<u16> {
        // A grouped token first (what typed pushes of selecting requests
        // stamp), in one masked comparison.
        if self.0 & (MODE_MASK | TOKEN_GROUPED) == MODE_TOKEN | TOKEN_GROUPED {
            return Some((self.0 >> TOKEN_GROUP_SHIFT) as u16);
        }
        if self.0 & MODE_MASK == MODE_PACKED && (self.0 >> FLAGS_SHIFT) & (SqeFlags::BUFFER_SELECT.bits() as u64) != 0 {
            return Some((self.0 >> GROUP_SHIFT) as u16);
        }
        None
    }

    /// Writes this context into `sqe.user_data` the way every push does,
    /// and returns what was written:
    ///
    /// - a packed context gets the entry's opcode and its final SQE flags
    ///   (its own flags are added to the entry first) and, when the entry
    ///   selects a provided buffer, the entry's buffer group;
    /// - a token gets the entry's opcode and, when the entry selects a
    ///   provided buffer, the entry's buffer group (else no group);
    /// - pooled contexts and layer values are written as they are.
    ///
    /// The group a CQE's buffer comes from is thus always the entry's,
    /// never a claim of the caller's: [`Cqe::buffer_selection`](crate::Cqe::buffer_selection)
    /// trusts it.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a token above
    /// [`TOKEN_MAX_SELECTING`](Self::TOKEN_MAX_SELECTING) on an entry that
    /// selects a provided buffer, and, in every mode, for an entry that
    /// selects a provided buffer but whose result would not count the bytes
    /// the buffers took: any opcode but a read (`READ`, `READV`,
    /// `READ_MULTISHOT`), a receive (`RECV`, `RECVMSG`) or a send (`SEND`,
    /// `SENDMSG`), and a receive with `MSG_TRUNC` (its result is a
    /// datagram's whole length). `sqe` is left unchanged then.
    #[inline]
    pub fn stamp(self, sqe: &mut Sqe) -> Result<SqeContext> {
        if sqe.flags & SqeFlags::BUFFER_SELECT.bits() != 0 {
            check_selecting(sqe)?;
        }
        let stamped = match self.0 & MODE_MASK {
            MODE_PACKED => {
                let flags = sqe.flags | self.flags().map_or(0, |f| f.bits());
                sqe.flags = flags;
                let flags = SqeFlags::from_bits_retain(flags);
                let stamped = self.with_op(sqe.opcode).with_flags(flags);
                if flags.contains(SqeFlags::BUFFER_SELECT) { stamped.with_buf_group(sqe.buf_group()) } else { stamped }
            }
            MODE_TOKEN => {
                let n = self.as_token().unwrap_or_default();
                let op = (sqe.opcode as u64) << OP_SHIFT;
                if SqeFlags::from_bits_retain(sqe.flags).contains(SqeFlags::BUFFER_SELECT) {
                    if n > Self::TOKEN_MAX_SELECTING {
                        return Err(token_error(n, Self::TOKEN_MAX_SELECTING, " on a request that selects a buffer"));
                    }
                    SqeContext(
                        MODE_TOKEN
                            | op
                            | TOKEN_GROUPED
                            | ((sqe.buf_group() as u64) << TOKEN_GROUP_SHIFT)
                            | (n << TOKEN_GROUPED_SHIFT),
                    )
                } else {
                    SqeContext(MODE_TOKEN | op | (n << TOKEN_SHIFT))
                }
            }
            _ => self,
        };
        sqe.user_data = stamped.0;
        Ok(stamped)
    }

    const fn pooled(pool: u64, index: u32, generation: u32) -> Self {
        SqeContext(pool | ((index as u64 & INDEX_MASK) << INDEX_SHIFT) | ((generation as u64) << GEN_SHIFT))
    }

    const fn slot(self) -> (u32, u32) {
        (((self.0 >> INDEX_SHIFT) & INDEX_MASK) as u32, (self.0 >> GEN_SHIFT) as u32)
    }
}

/// Refuses an entry that selects a provided buffer unless its result
/// counts the bytes the kernel put into the buffers it took (consecutive
/// ring entries from the CQE's buffer id, every one full but the last):
/// what the group a CQE proves ([`Cqe::buffer_selection`](crate::Cqe::buffer_selection))
/// lets a buffer layer hand out. A read, a receive or a send does, except
/// a receive with `MSG_TRUNC`, whose result is a datagram's whole length
/// however little of it the buffers took (the rest of the group's
/// buffers would be handed out while the kernel holds them); any other
/// opcode's result means something else.
#[inline]
fn check_selecting(sqe: &Sqe) -> Result<()> {
    match u32::from(sqe.opcode) {
        sys::IORING_OP_READ | sys::IORING_OP_READV | sys::IORING_OP_READ_MULTISHOT => Ok(()),
        sys::IORING_OP_SEND | sys::IORING_OP_SENDMSG => Ok(()),
        sys::IORING_OP_RECV | sys::IORING_OP_RECVMSG if sqe.op_flags() & libc::MSG_TRUNC as u32 == 0 => Ok(()),
        _ => Err(selecting_error(sqe)),
    }
}

#[cold]
fn selecting_error(sqe: &Sqe) -> Error {
    let op = u32::from(sqe.opcode);
    if op == sys::IORING_OP_RECV || op == sys::IORING_OP_RECVMSG {
        Error::InvalidArgument(
            "MSG_TRUNC on a receive that selects a provided buffer: its result would be the datagram's whole \
             length, not the bytes the buffers took, so which buffers the kernel consumed could not be known"
                .into(),
        )
    } else {
        Error::InvalidArgument(format!(
            "opcode {op} with IOSQE_BUFFER_SELECT: only reads, receives and sends may select a provided buffer \
             here (their result counts the bytes in the buffers taken)"
        ))
    }
}

#[cold]
fn token_error(n: u64, max: u64, what: &str) -> Error {
    Error::InvalidArgument(format!("token {n:#x} exceeds the largest token number{what} ({max:#x})"))
}

impl fmt::Debug for SqeContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.mode() {
            ContextMode::Packed => f
                .debug_struct("SqeContext::Packed")
                .field("op", &self.op().unwrap_or(0))
                .field("flags", &self.flags().unwrap_or_default())
                .field("buf_group", &self.buf_group().unwrap_or(0))
                .field("fd", &self.fd())
                .finish(),
            ContextMode::Token => f
                .debug_struct("SqeContext::Token")
                .field("number", &self.as_token().unwrap_or(0))
                .field("op", &self.op().unwrap_or(0))
                .field("buf_group", &self.buf_group())
                .finish(),
            ContextMode::Layer => match self.layer_data() {
                Some(d) => f
                    .debug_struct("SqeContext::Layer")
                    .field("layer", &d.layer())
                    .field("flag", &d.flag())
                    .field("payload", &d.payload())
                    .finish(),
                None => f.debug_tuple("SqeContext::Layer").field(&format_args!("{:#018x}", self.0)).finish(),
            },
            mode => {
                let (index, generation) = self.slot();
                f.debug_struct("SqeContext")
                    .field("mode", &mode)
                    .field("index", &index)
                    .field("generation", &generation)
                    .finish()
            }
        }
    }
}

/// Plain data that may live in an [`ExtSqe`]'s 64 caller bytes: `Copy`,
/// no pointers the compiler would track, and valid for every bit pattern
/// (the bytes are read back as `Self` whatever was written before).
///
/// # Safety
///
/// Implement only for types for which every 64-byte-or-smaller bit pattern
/// of their size is a valid value (integers, arrays and `#[repr(C)]`
/// structs of them, with no padding that matters). References, `bool`,
/// `char`, enums and anything with a `Drop` or a niche do not qualify.
pub unsafe trait PlainData: Copy + 'static {}

macro_rules! plain {
    ($($t:ty),*) => { $(
        // SAFETY: every bit pattern is a valid value of this integer type.
        unsafe impl PlainData for $t {}
    )* };
}
plain!(u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize);
// SAFETY: an array of plain data is plain data.
unsafe impl<T: PlainData, const N: usize> PlainData for [T; N] {}

/// A ready-made view of the 64 caller bytes: eight `u64` values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct CtxWords {
    /// The eight words.
    pub words: [u64; 8],
}
// SAFETY: an array of u64, any bit pattern is valid.
unsafe impl PlainData for CtxWords {}

/// The 64 bytes of caller data in an [`ExtSqe`].
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub struct ExtData([u8; 64]);

impl ExtData {
    const fn check<T>() {
        assert!(size_of::<T>() <= 64, "an ExtSqe carries at most 64 bytes of caller data");
        assert!(align_of::<T>() <= 64, "ExtSqe caller data is 64-byte aligned at most");
    }

    /// The data as a `T`.
    #[inline]
    pub fn view<T: PlainData>(&self) -> &T {
        const { Self::check::<T>() };
        // SAFETY: size and alignment were checked at compile time, the bytes
        // are initialized, and `T: PlainData` is valid for any bit pattern.
        unsafe { &*self.0.as_ptr().cast::<T>() }
    }

    /// The data as a mutable `T`.
    #[inline]
    pub fn view_mut<T: PlainData>(&mut self) -> &mut T {
        const { Self::check::<T>() };
        // SAFETY: as in `view`; the borrow is exclusive.
        unsafe { &mut *self.0.as_mut_ptr().cast::<T>() }
    }

    /// Moves `value` into word `at` (0–7) of the data: a reference-counted
    /// hand-off through the completion, without a lookup table. The slot
    /// now owns one strong count; take it back exactly once with
    /// [`take_arc`](Self::take_arc) at the completion that ends the
    /// operation. A slot returned to its pool without taking it leaks that
    /// count (never frees it twice).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if `at` is not below 8 or the word already
    /// holds something (`value` is handed back inside the error's drop, not
    /// leaked).
    pub fn put_arc<T: Send + Sync + 'static>(&mut self, at: usize, value: std::sync::Arc<T>) -> Result<()> {
        let words = self.view_mut::<[usize; 8]>();
        match words.get_mut(at) {
            Some(w) if *w == 0 => {
                *w = std::sync::Arc::into_raw(value) as usize;
                Ok(())
            }
            Some(_) => Err(Error::InvalidArgument(format!("word {at} of the extended data is already in use"))),
            None => Err(Error::InvalidArgument(format!("word {at} is beyond the 8 words of extended data"))),
        }
    }

    /// Takes back the `Arc<T>` that [`put_arc`](Self::put_arc) stored in
    /// word `at`, and clears the word.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if `at` is not below 8 or the word is
    /// zero (nothing stored, or taken already).
    ///
    /// # Safety
    ///
    /// A non-zero word `at` must hold a pointer stored by `put_arc::<T>`
    /// (the same `T`) on this data: not bytes written through
    /// [`view_mut`](Self::view_mut) or [`bytes_mut`](Self::bytes_mut).
    pub unsafe fn take_arc<T: Send + Sync + 'static>(&mut self, at: usize) -> Result<std::sync::Arc<T>> {
        let words = self.view_mut::<[usize; 8]>();
        let Some(w) = words.get_mut(at) else {
            return Err(Error::InvalidArgument(format!("word {at} is beyond the 8 words of extended data")));
        };
        let raw = std::mem::replace(w, 0);
        if raw == 0 {
            return Err(Error::InvalidArgument(format!("word {at} holds no Arc (never stored, or taken already)")));
        }
        // SAFETY: the caller guarantees a non-zero word came from
        // `Arc::<T>::into_raw` in `put_arc`; it is cleared now, so the
        // count is taken back once.
        Ok(unsafe { std::sync::Arc::from_raw(raw as *const T) })
    }

    /// The raw bytes.
    #[inline]
    pub fn bytes(&self) -> &[u8; 64] {
        &self.0
    }

    /// The raw bytes, mutable.
    #[inline]
    pub fn bytes_mut(&mut self) -> &mut [u8; 64] {
        &mut self.0
    }
}

impl fmt::Debug for ExtData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ExtData").field(&self.view::<CtxWords>().words).finish()
    }
}

/// An indirect context: a full copy of the submitted SQE.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(64))]
pub struct IndirectSqe {
    /// The SQE, as the caller recorded it.
    pub sqe: Sqe,
}

/// An extended context: a full SQE plus 64 bytes of caller data.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
pub struct ExtSqe {
    /// The SQE, as the caller recorded it.
    pub sqe: Sqe,
    /// Caller data; read and write it through [`ExtData::view`].
    pub data: ExtData,
}

impl Default for ExtSqe {
    fn default() -> Self {
        ExtSqe { sqe: Sqe::default(), data: ExtData([0; 64]) }
    }
}

/// Counters of one pool, for finding leaks: a slot borrowed and never
/// returned shows as `in_use` that does not come back to zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Fixed number of slots.
    pub capacity: u32,
    /// Slots borrowed now.
    pub in_use: u32,
    /// Most slots borrowed at once.
    pub peak: u32,
    /// Slots borrowed since creation (or the last reset).
    pub acquired: u64,
    /// Slots returned since creation (or the last reset).
    pub released: u64,
    /// Failed acquisitions (pool empty).
    pub exhausted: u64,
    /// Returns of a context that was not live (double return, foreign).
    pub stale_returns: u64,
}

/// No buffer selection recorded for a slot.
const NO_GROUP: u32 = u32::MAX;

struct Pool<T> {
    slots: Box<[T]>,
    /// Odd: borrowed; even: free. Bumped on every acquire and release.
    generations: Box<[u32]>,
    /// Per slot: the buffer group the queued entry selects from
    /// (`IOSQE_BUFFER_SELECT`), recorded at submission, or [`NO_GROUP`].
    /// Private, unlike the SQE copy the caller may edit.
    groups: Box<[u32]>,
    /// Per slot: the ring's CQ position when its entry was queued (every
    /// CQE of that entry has a `seq` at least this), or `u64::MAX` while
    /// no entry was queued under the slot's current generation: a slot
    /// names one submission.
    queued_at: Box<[u64]>,
    free: Vec<u32>,
    stats: PoolStats,
    mode: u64,
    name: &'static str,
}

impl<T: Default + Copy> Pool<T> {
    fn new(capacity: u32, mode: u64, name: &'static str) -> Self {
        let capacity = capacity.min(INDEX_MASK as u32);
        Pool {
            slots: vec![T::default(); capacity as usize].into_boxed_slice(),
            generations: vec![0; capacity as usize].into_boxed_slice(),
            groups: vec![NO_GROUP; capacity as usize].into_boxed_slice(),
            queued_at: vec![u64::MAX; capacity as usize].into_boxed_slice(),
            free: (0..capacity).rev().collect(),
            stats: PoolStats { capacity, ..Default::default() },
            mode,
            name,
        }
    }

    fn acquire(&mut self) -> Result<SqeContext> {
        let Some(index) = self.free.pop() else {
            self.stats.exhausted += 1;
            return Err(Error::PoolExhausted { pool: self.name, capacity: self.stats.capacity });
        };
        let i = index as usize;
        self.generations[i] = self.generations[i].wrapping_add(1);
        self.slots[i] = T::default();
        self.groups[i] = NO_GROUP;
        self.queued_at[i] = u64::MAX;
        self.stats.in_use += 1;
        self.stats.peak = self.stats.peak.max(self.stats.in_use);
        self.stats.acquired += 1;
        Ok(SqeContext::pooled(self.mode, index, self.generations[i]))
    }

    fn live(&self, ctx: SqeContext) -> Option<usize> {
        if ctx.0 & POOL_MASK != self.mode {
            return None;
        }
        let (index, generation) = ctx.slot();
        let i = index as usize;
        (self.generations.get(i) == Some(&generation) && generation & 1 == 1).then_some(i)
    }

    fn get(&self, ctx: SqeContext) -> Option<&T> {
        self.live(ctx).map(|i| &self.slots[i])
    }

    fn get_mut(&mut self, ctx: SqeContext) -> Option<&mut T> {
        self.live(ctx).map(|i| &mut self.slots[i])
    }

    /// The group recorded for the live slot, if a CQE at position `seq`
    /// can be its entry's (reaped after the entry was queued).
    fn group(&self, ctx: SqeContext, seq: u64) -> Option<u16> {
        let i = self.live(ctx)?;
        let g = self.groups[i];
        (g != NO_GROUP && self.queued_at[i] != u64::MAX && seq >= self.queued_at[i]).then_some(g as u16)
    }

    fn submitted(&self, ctx: SqeContext) -> bool {
        self.live(ctx).is_some_and(|i| self.queued_at[i] != u64::MAX)
    }

    /// Records the slot's one submission; false if it has one already.
    fn record(&mut self, ctx: SqeContext, group: u32, queued_at: u64) -> Option<usize> {
        let i = self.live(ctx)?;
        if self.queued_at[i] != u64::MAX {
            return None;
        }
        self.groups[i] = group;
        self.queued_at[i] = queued_at;
        Some(i)
    }

    fn release(&mut self, ctx: SqeContext) -> Result<T> {
        let Some(i) = self.live(ctx) else {
            self.stats.stale_returns += 1;
            return Err(Error::StaleContext);
        };
        self.generations[i] = self.generations[i].wrapping_add(1);
        self.free.push(i as u32);
        self.stats.in_use -= 1;
        self.stats.released += 1;
        Ok(self.slots[i])
    }

    fn reset(&mut self) -> Result<()> {
        if self.stats.in_use != 0 {
            return Err(Error::InvalidArgument(format!(
                "{} pool reset with {} slots still borrowed",
                self.name, self.stats.in_use
            )));
        }
        self.stats = PoolStats { capacity: self.stats.capacity, ..Default::default() };
        Ok(())
    }
}

/// The indirect and extended context pools of a ring: fixed capacity,
/// allocated once at ring creation, never grown.
///
/// Acquiring returns the [`SqeContext`] that names the slot; the slot is
/// reached through [`indirect_mut`](Self::indirect_mut) /
/// [`extended_mut`](Self::extended_mut) while it is live and returned with
/// [`release`](Self::release), exactly once: a second release (or a stale
/// context) is an [`Error::StaleContext`], never a double free.
pub struct ContextPools {
    indirect: Pool<IndirectSqe>,
    extended: Pool<ExtSqe>,
    /// The ring these pools belong to ([`Ring::id`](crate::Ring::id)), or
    /// 0 for pools made with [`new`](Self::new), which vouch for no CQE.
    ring: u64,
}

impl fmt::Debug for ContextPools {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContextPools")
            .field("indirect", &self.indirect.stats)
            .field("extended", &self.extended.stats)
            .finish()
    }
}

impl ContextPools {
    /// Pools with `indirect` and `extended` slots.
    pub fn new(indirect: u32, extended: u32) -> Self {
        Self::for_ring(0, indirect, extended)
    }

    pub(crate) fn for_ring(ring: u64, indirect: u32, extended: u32) -> Self {
        ContextPools {
            indirect: Pool::new(indirect, POOL_INDIRECT, "indirect"),
            extended: Pool::new(extended, POOL_EXTENDED, "extended"),
            ring,
        }
    }

    /// The ring these pools belong to (0 for standalone pools).
    pub fn ring_id(&self) -> u64 {
        self.ring
    }

    /// Records the entry queued under the pooled context `ctx` when the
    /// ring's CQ position was `queued_at`: copies it into the slot (the
    /// copy [`indirect`](Self::indirect) and [`extended`](Self::extended)
    /// show) and notes, where the caller cannot edit them, the buffer group
    /// it selects from and the position. A slot names **one** submission:
    /// returns `false` (recording nothing) when `ctx` is not live here or
    /// already names one. The typed push paths of `uring-ops` call it
    /// after checking [`submitted`](Self::submitted).
    ///
    /// # Safety
    ///
    /// `sqe` must be exactly the entry queued on this pools' ring with
    /// `user_data` `ctx`, recorded before the entry can be submitted, and
    /// `queued_at` the ring's [`cq_position`](crate::Ring::cq_position)
    /// before it was queued: the recorded group is what
    /// [`Cqe::buffer_selection`](crate::Cqe::buffer_selection) trusts to
    /// let a buffer ring hand out the buffer a CQE names.
    pub unsafe fn record_submission(&mut self, ctx: SqeContext, sqe: &Sqe, queued_at: u64) -> bool {
        let group = if SqeFlags::from_bits_retain(sqe.flags).contains(SqeFlags::BUFFER_SELECT) {
            u32::from(sqe.buf_group())
        } else {
            NO_GROUP
        };
        match ctx.mode() {
            ContextMode::Indirect => match self.indirect.record(ctx, group, queued_at) {
                Some(i) => {
                    self.indirect.slots[i].sqe = *sqe;
                    true
                }
                None => false,
            },
            ContextMode::Extended => match self.extended.record(ctx, group, queued_at) {
                Some(i) => {
                    self.extended.slots[i].sqe = *sqe;
                    true
                }
                None => false,
            },
            ContextMode::Packed | ContextMode::Token | ContextMode::Layer => false,
        }
    }

    /// Whether the live pooled context `ctx` already names a queued entry
    /// (a slot names one submission: acquire another for the next).
    pub fn submitted(&self, ctx: SqeContext) -> bool {
        match ctx.mode() {
            ContextMode::Indirect => self.indirect.submitted(ctx),
            ContextMode::Extended => self.extended.submitted(ctx),
            ContextMode::Packed | ContextMode::Token | ContextMode::Layer => false,
        }
    }

    /// The buffer group recorded for the live pooled context `ctx` of a
    /// CQE reaped by ring `ring` at position `seq`, if these pools are
    /// that ring's and the CQE was reaped after the entry was queued (a
    /// CQE of an earlier use of the slot, even one its 32-bit generation
    /// has come round to again, proves nothing).
    pub(crate) fn selected_group(&self, ring: u64, ctx: SqeContext, seq: u64) -> Option<u16> {
        if ring == 0 || ring != self.ring {
            return None;
        }
        match ctx.mode() {
            ContextMode::Indirect => self.indirect.group(ctx, seq),
            ContextMode::Extended => self.extended.group(ctx, seq),
            ContextMode::Packed | ContextMode::Token | ContextMode::Layer => None,
        }
    }

    /// [`Cqe::buffer_selection`](crate::Cqe::buffer_selection) resolved
    /// against these pools: for a view without pools (a
    /// [`CqeSlot`](crate::CqeSlot)'s, or a shared ring's) whose context is
    /// pooled. Packed contexts resolve as there.
    pub fn buffer_selection(&self, cqe: &crate::Cqe<'_>) -> Option<crate::BufferSelection> {
        if let Some(sel) = cqe.buffer_selection() {
            return Some(sel);
        }
        cqe.buffer_id()?;
        let group = self.selected_group(cqe.ring_id(), cqe.context(), cqe.seq())?;
        // SAFETY: the group was recorded by `record_submission` for the
        // live slot this CQE's context names, on the ring that reaped it.
        unsafe { crate::BufferSelection::vouch(cqe, group) }
    }

    /// Borrows a zeroed indirect slot.
    pub fn acquire_indirect(&mut self) -> Result<SqeContext> {
        self.indirect.acquire()
    }

    /// Borrows a zeroed extended slot.
    pub fn acquire_extended(&mut self) -> Result<SqeContext> {
        self.extended.acquire()
    }

    /// The live indirect slot `ctx` names.
    pub fn indirect(&self, ctx: SqeContext) -> Option<&IndirectSqe> {
        self.indirect.get(ctx)
    }

    /// The live indirect slot `ctx` names, mutable.
    pub fn indirect_mut(&mut self, ctx: SqeContext) -> Option<&mut IndirectSqe> {
        self.indirect.get_mut(ctx)
    }

    /// The live extended slot `ctx` names.
    pub fn extended(&self, ctx: SqeContext) -> Option<&ExtSqe> {
        self.extended.get(ctx)
    }

    /// The live extended slot `ctx` names, mutable.
    pub fn extended_mut(&mut self, ctx: SqeContext) -> Option<&mut ExtSqe> {
        self.extended.get_mut(ctx)
    }

    /// Returns the slot `ctx` names to its pool. Fails with
    /// [`Error::StaleContext`] if it is not live (already returned, direct,
    /// or from elsewhere).
    pub fn release(&mut self, ctx: SqeContext) -> Result<()> {
        match ctx.mode() {
            ContextMode::Indirect => self.indirect.release(ctx).map(drop),
            ContextMode::Extended => self.extended.release(ctx).map(drop),
            _ => Err(Error::StaleContext),
        }
    }

    /// Counters of the indirect pool.
    pub fn indirect_stats(&self) -> PoolStats {
        self.indirect.stats
    }

    /// Counters of the extended pool.
    pub fn extended_stats(&self) -> PoolStats {
        self.extended.stats
    }

    /// Clears the counters. Fails if any slot is still borrowed.
    pub fn reset(&mut self) -> Result<()> {
        self.indirect.reset()?;
        self.extended.reset()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_round_trips_every_field() {
        for fd in [0, 1, 1 << 20, i32::MAX - 1] {
            let flags = SqeFlags::IO_LINK | SqeFlags::CQE_SKIP_SUCCESS | SqeFlags::FIXED_FILE;
            let c = SqeContext::packed(0xfe, flags, 0xbeef, fd);
            assert_eq!(c.mode(), ContextMode::Packed);
            assert_eq!((c.op(), c.flags(), c.buf_group(), c.fd()), (Some(0xfe), Some(flags), Some(0xbeef), Some(fd)));
        }
        let none = SqeContext::packed(1, SqeFlags::empty(), 0, -1);
        assert_eq!(none.fd(), None);
        let c = SqeContext::for_fd(9).with_op(22).with_buf_group(4).with_flags(SqeFlags::ASYNC).with_fd(11);
        assert_eq!((c.op(), c.buf_group(), c.flags(), c.fd()), (Some(22), Some(4), Some(SqeFlags::ASYNC), Some(11)));
        assert_eq!(c.with_op(23).with_fd(-1).op(), Some(23));
    }

    #[test]
    fn tokens_carry_53_bits_and_the_stamped_opcode_and_group() {
        for n in [0, 1, 88, 89, 482, 1 << 36, (1 << 37) - 1, 1 << 47, SqeContext::TOKEN_MAX] {
            let t = SqeContext::token(n).unwrap();
            assert_eq!((t.mode(), t.as_token(), t.op(), t.buf_group()), (ContextMode::Token, Some(n), Some(0), None));
            assert_eq!(SqeContext::from_raw(t.raw()), Some(t));
            let mut sqe = Sqe::new(22);
            let stamped = t.stamp(&mut sqe).unwrap();
            assert_eq!((stamped.as_token(), stamped.op(), sqe.user_data), (Some(n), Some(22), stamped.raw()));
            assert_eq!(stamped.inline_selection(), None);
            let mut sqe = Sqe::new(27);
            sqe.set_sqe_flags(SqeFlags::BUFFER_SELECT);
            sqe.set_buf_group(0xbeef);
            match t.stamp(&mut sqe) {
                Ok(s) => {
                    assert!(n <= SqeContext::TOKEN_MAX_SELECTING);
                    assert_eq!((s.as_token(), s.op(), s.inline_selection()), (Some(n), Some(27), Some(0xbeef)));
                    // Stamping again (a caller re-pushing the stamped value)
                    // without BUFFER_SELECT drops the group.
                    let mut plain = Sqe::new(1);
                    assert_eq!(s.stamp(&mut plain).unwrap().inline_selection(), None);
                    assert_eq!(s.stamp(&mut plain).unwrap().as_token(), Some(n));
                }
                Err(Error::InvalidArgument(_)) => {
                    assert!(n > SqeContext::TOKEN_MAX_SELECTING);
                    assert_eq!(sqe.user_data, 0, "a refused stamp writes nothing");
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert!(SqeContext::token(SqeContext::TOKEN_MAX + 1).is_err());
        assert!(format!("{:?}", SqeContext::token(482).unwrap()).contains("number: 482"));
    }

    #[test]
    fn no_caller_value_is_a_layer_value() {
        for layer in Layer::ALL {
            assert_eq!(Layer::from_id(layer.id()), Some(layer));
            let d = LayerData::new(layer, true, LayerData::PAYLOAD_MAX).unwrap();
            assert_eq!(d.context().mode(), ContextMode::Layer);
            assert_eq!(SqeContext::from_raw(d.raw()), None, "safe from_raw never yields a layer value");
            assert_eq!(LayerData::decode(d.raw()), Some(d));
            assert_eq!(LayerData::payload_of(d.raw(), layer), Some(LayerData::PAYLOAD_MAX));
            for other in Layer::ALL.into_iter().filter(|&o| o != layer) {
                assert_eq!(LayerData::payload_of(d.raw(), other), None);
            }
            assert!(format!("{:?}", d.context()).contains(&format!("{layer:?}")));
        }
        assert!(LayerData::new(Layer::Listener, false, LayerData::PAYLOAD_MAX + 1).is_none());
        for n in [0u64, 88, 89, 92, 93, 362, 363, 482, 483, SqeContext::TOKEN_MAX] {
            assert_ne!(SqeContext::token(n).unwrap().mode(), ContextMode::Layer);
        }
        assert_eq!(SqeContext::of_user_data(0b11).layer_data(), None, "unknown layer ids decode to nothing");
    }

    #[test]
    fn pools_return_each_slot_exactly_once() {
        let mut p = ContextPools::new(2, 1);
        let a = p.acquire_indirect().unwrap();
        let b = p.acquire_indirect().unwrap();
        assert!(matches!(p.acquire_indirect(), Err(Error::PoolExhausted { pool: "indirect", capacity: 2 })));
        assert_eq!(a.mode(), ContextMode::Indirect);
        p.indirect_mut(a).unwrap().sqe.0.len = 77;
        assert_eq!(p.indirect(a).unwrap().sqe.0.len, 77);
        p.release(a).unwrap();
        assert!(matches!(p.release(a), Err(Error::StaleContext)));
        assert!(p.indirect(a).is_none(), "a returned slot is not reachable through its old context");
        let c = p.acquire_indirect().unwrap();
        assert_ne!(a, c, "reuse bumps the generation");
        assert_eq!(p.indirect(c).unwrap().sqe.0.len, 0, "reused slots come back zeroed");
        let s = p.indirect_stats();
        assert_eq!((s.in_use, s.peak, s.acquired, s.released, s.exhausted, s.stale_returns), (2, 2, 3, 1, 1, 1));
        assert!(p.reset().is_err(), "reset refuses while slots are borrowed");
        p.release(b).unwrap();
        p.release(c).unwrap();
        p.reset().unwrap();

        let e = p.acquire_extended().unwrap();
        assert_eq!(e.mode(), ContextMode::Extended);
        assert!(p.indirect(e).is_none(), "modes do not cross");
        p.extended_mut(e).unwrap().data.view_mut::<CtxWords>().words[7] = 42;
        assert_eq!(p.extended(e).unwrap().data.view::<[u64; 8]>()[7], 42);
        assert_eq!(p.extended(e).unwrap().data.view::<u8>(), &0);
        assert!(p.release(SqeContext::for_fd(3)).is_err(), "packed contexts have no slot");
        assert!(p.extended(SqeContext::of_user_data(u64::MAX - 1)).is_none(), "foreign user_data decodes to nothing");

        // A reference-counted hand-off: one strong count travels in the slot.
        let shared = std::sync::Arc::new(String::from("connection state"));
        let data = &mut p.extended_mut(e).unwrap().data;
        data.put_arc(2, shared.clone()).unwrap();
        assert!(data.put_arc(2, shared.clone()).is_err(), "an occupied word is refused");
        assert!(data.put_arc(8, shared.clone()).is_err(), "beyond the data");
        assert_eq!(std::sync::Arc::strong_count(&shared), 2, "refused values were dropped, not leaked");
        // SAFETY: word 2 holds the Arc<String> stored just above.
        let back: std::sync::Arc<String> = unsafe { data.take_arc(2) }.unwrap();
        // SAFETY: as above; the word is now zero.
        assert!(unsafe { data.take_arc::<String>(2) }.is_err(), "taken back only once");
        assert_eq!(*back, "connection state");
        drop(back);
        assert_eq!(std::sync::Arc::strong_count(&shared), 1, "taken back exactly once");
        assert_eq!(p.extended(e).unwrap().data.view::<[usize; 8]>()[2], 0, "the word is cleared");
    }
}
