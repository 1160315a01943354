//! Named accessors for the anonymous unions and flexible arrays of the
//! generated structures.
//!
//! bindgen names an anonymous union member `__bindgen_anon_N`, numbered in
//! declaration order, so the numbers shift when the kernel adds a member.
//! Those names stay in this file: everything above `uring-sys` uses the
//! accessors here, which carry the C member names. If regenerated bindings
//! renumber a union, this file stops compiling rather than silently writing
//! the wrong member.
//!
//! Every union handled here has only plain-integer members (or structs and
//! arrays of them), so reading any member reinterprets initialized bytes as
//! another integer type: always defined. That is the one argument behind
//! every `unsafe` read below.

use core::mem::offset_of;

use crate::*;

/// Getter and setter for a scalar member reached through anonymous unions.
macro_rules! union_scalar {
    ($(#[$doc:meta])* $get:ident, $set:ident: $ty:ty = $($path:tt).+) => {
        $(#[$doc])*
        #[inline]
        pub fn $get(&self) -> $ty {
            // SAFETY: every union member on this path is plain integers over
            // initialized bytes; any bit pattern is a valid `$ty`.
            unsafe { self.$($path).+ }
        }

        #[doc = concat!("Sets the value that [`Self::", stringify!($get), "`] reads.")]
        #[inline]
        pub fn $set(&mut self, value: $ty) {
            self.$($path).+ = value;
        }
    };
}

/// Getter and setter for one 64-bit word of the SQE's last union, which
/// bindgen represents as opaque storage (its `cmd[0]` member defeats a Rust
/// `union`), so it is reached by offset instead of by field.
macro_rules! sqe_tail_word {
    ($(#[$doc:meta])* $get:ident, $set:ident: word $index:literal) => {
        $(#[$doc])*
        #[inline]
        pub fn $get(&self) -> u64 {
            let base = (&raw const self.__bindgen_anon_6).cast::<u64>();
            // SAFETY: the union is 16 bytes, 8-byte aligned, and lies within
            // `*self`; word 0 or 1 is in bounds and initialized.
            unsafe { base.add($index).read() }
        }

        #[doc = concat!("Sets the value that [`Self::", stringify!($get), "`] reads.")]
        #[inline]
        pub fn $set(&mut self, value: u64) {
            let base = (&raw mut self.__bindgen_anon_6).cast::<u64>();
            // SAFETY: as for the getter; the pointer comes from `&mut self`,
            // so the write is exclusive.
            unsafe { base.add($index).write(value) }
        }
    };
}

/// The SQE's fields that live in anonymous unions.
///
/// Each pair names the C member (`sqe->addr`, `sqe->file_index`, …). Members
/// that share a union alias each other: setting `addr` also changes
/// `splice_off_in`, exactly as in C.
impl io_uring_sqe {
    union_scalar!(
        /// `sqe->off`: file offset (read/write family), or an opcode's second
        /// 64-bit argument.
        off, set_off: u64 = __bindgen_anon_1.off
    );
    union_scalar!(
        /// `sqe->addr2`: second address (e.g. the new path of `RENAMEAT`, the
        /// sockaddr length pointer of `ACCEPT`); aliases `off`.
        addr2, set_addr2: u64 = __bindgen_anon_1.addr2
    );
    union_scalar!(
        /// `sqe->cmd_op`: the command of `URING_CMD`; aliases the low half
        /// of `off` on little-endian machines.
        cmd_op, set_cmd_op: u32 = __bindgen_anon_1.__bindgen_anon_1.cmd_op
    );
    union_scalar!(
        /// `sqe->addr`: buffer, iovec array, path or argument pointer.
        addr, set_addr: u64 = __bindgen_anon_2.addr
    );
    union_scalar!(
        /// `sqe->splice_off_in`: input offset of `SPLICE`; aliases `addr`.
        splice_off_in, set_splice_off_in: u64 = __bindgen_anon_2.splice_off_in
    );
    union_scalar!(
        /// `sqe->level`: socket option level of the socket `URING_CMD`s;
        /// aliases the low half of `addr`.
        level, set_level: u32 = __bindgen_anon_2.__bindgen_anon_1.level
    );
    union_scalar!(
        /// `sqe->optname`: socket option name of the socket `URING_CMD`s.
        optname, set_optname: u32 = __bindgen_anon_2.__bindgen_anon_1.optname
    );
    union_scalar!(
        /// The per-opcode 32-bit flags word. In C it has one name per opcode
        /// family (`rw_flags`, `fsync_flags`, `poll32_events`,
        /// `sync_range_flags`, `msg_flags`, `timeout_flags`, `accept_flags`,
        /// `cancel_flags`, `open_flags`, `statx_flags`, `fadvise_advice`,
        /// `splice_flags`, `rename_flags`, `unlink_flags`, `hardlink_flags`,
        /// `xattr_flags`, `msg_ring_flags`, `uring_cmd_flags`,
        /// `waitid_flags`, `futex_flags`, `install_fd_flags`, `nop_flags`,
        /// `pipe_flags`); they are one union member of the same width.
        #[doc(alias = "rw_flags")]
        #[doc(alias = "fsync_flags")]
        #[doc(alias = "poll32_events")]
        #[doc(alias = "msg_flags")]
        #[doc(alias = "timeout_flags")]
        #[doc(alias = "accept_flags")]
        #[doc(alias = "cancel_flags")]
        #[doc(alias = "open_flags")]
        #[doc(alias = "statx_flags")]
        #[doc(alias = "splice_flags")]
        #[doc(alias = "msg_ring_flags")]
        #[doc(alias = "uring_cmd_flags")]
        #[doc(alias = "futex_flags")]
        #[doc(alias = "nop_flags")]
        op_flags, set_op_flags: u32 = __bindgen_anon_3.rw_flags
    );
    union_scalar!(
        /// `sqe->poll_events`: the 16-bit poll mask of old kernels; new code
        /// sets the full mask through [`Self::set_op_flags`]
        /// (`poll32_events`).
        poll_events, set_poll_events: u16 = __bindgen_anon_3.poll_events
    );
    union_scalar!(
        /// `sqe->buf_index`: index of a registered buffer (fixed I/O).
        buf_index, set_buf_index: u16 = __bindgen_anon_4.buf_index
    );
    union_scalar!(
        /// `sqe->buf_group`: provided-buffer group id (with
        /// `IOSQE_BUFFER_SELECT`); aliases `buf_index`.
        buf_group, set_buf_group: u16 = __bindgen_anon_4.buf_group
    );
    union_scalar!(
        /// `sqe->splice_fd_in`: input descriptor of `SPLICE`/`TEE`.
        splice_fd_in, set_splice_fd_in: i32 = __bindgen_anon_5.splice_fd_in
    );
    union_scalar!(
        /// `sqe->file_index`: fixed-file slot + 1 for opcodes that create a
        /// direct descriptor (or `IORING_FILE_INDEX_ALLOC as u32`), the slot
        /// of `CLOSE` on a fixed file; aliases `splice_fd_in`.
        file_index, set_file_index: u32 = __bindgen_anon_5.file_index
    );
    union_scalar!(
        /// `sqe->zcrx_ifq_idx`: zero-copy receive interface queue of
        /// `RECV_ZC`.
        zcrx_ifq_idx, set_zcrx_ifq_idx: u32 = __bindgen_anon_5.zcrx_ifq_idx
    );
    union_scalar!(
        /// `sqe->optlen`: option length of the socket `URING_CMD`s.
        optlen, set_optlen: u32 = __bindgen_anon_5.optlen
    );
    union_scalar!(
        /// `sqe->addr_len`: destination address length of `SEND[MSG]_ZC`
        /// and `SEND` with a destination (`addr2`).
        addr_len, set_addr_len: u16 = __bindgen_anon_5.__bindgen_anon_1.addr_len
    );
    union_scalar!(
        /// `sqe->write_stream`: write stream (placement hint) of the
        /// read/write family.
        write_stream, set_write_stream: u8 = __bindgen_anon_5.__bindgen_anon_2.write_stream
    );
    sqe_tail_word!(
        /// `sqe->addr3`: third address (e.g. `FUTEX_WAITV`'s unused, the
        /// xattr value length pointer, `SENDMSG_ZC` metadata).
        addr3, set_addr3: word 0
    );
    sqe_tail_word!(
        /// `sqe->attr_ptr`: pointer to read/write attributes
        /// (`io_uring_attr_pi`); aliases `addr3`.
        attr_ptr, set_attr_ptr: word 0
    );
    sqe_tail_word!(
        /// `sqe->attr_type_mask`: which attributes `attr_ptr` carries
        /// (`IORING_RW_ATTR_FLAG_*`).
        attr_type_mask, set_attr_type_mask: word 1
    );
    sqe_tail_word!(
        /// `sqe->optval`: option value pointer of the socket `URING_CMD`s;
        /// aliases `addr3`.
        optval, set_optval: word 0
    );

    /// Address of `sqe->cmd`, the inline command bytes of `URING_CMD`: 16
    /// bytes in a 64-byte SQE, 80 bytes when the ring uses 128-byte SQEs
    /// (`IORING_SETUP_SQE128`, or a 128-byte slot of an `SQE_MIXED` ring).
    ///
    /// Computing the address is safe; writing through it is the caller's
    /// obligation: it must stay within the SQE slot the ring really has.
    #[inline]
    pub fn cmd_ptr(this: *mut Self) -> *mut u8 {
        this.cast::<u8>().wrapping_add(offset_of!(Self, __bindgen_anon_6))
    }
}

impl io_uring_cqe {
    /// Address of `cqe->big_cqe`, the 16 extra bytes of a 32-byte CQE
    /// (`IORING_SETUP_CQE32`, or a CQE with `IORING_CQE_F_32` on a
    /// `CQE_MIXED` ring): two `u64`s right after the 16-byte header.
    ///
    /// Computing the address is safe; reading through it is valid only for a
    /// CQE that really is 32 bytes.
    #[inline]
    pub fn big_cqe_ptr(this: *const Self) -> *const u64 {
        this.cast::<u8>().wrapping_add(core::mem::size_of::<Self>()).cast()
    }
}

impl io_uring_buf_ring {
    /// Address of the ring's `tail`, which overlays the `resv` field of the
    /// first `io_uring_buf` entry. The application publishes new buffers by
    /// storing the tail with release ordering (as a `u16` atomic) after
    /// writing the entries.
    #[inline]
    pub fn tail_ptr(this: *mut Self) -> *mut u16 {
        this.cast::<u8>().wrapping_add(offset_of!(io_uring_buf_ring__bindgen_ty_1__bindgen_ty_1, tail)).cast()
    }

    /// Address of `bufs[0]`: the ring's entries start at the ring's base
    /// (entry 0 shares its `resv` field with the tail).
    #[inline]
    pub fn bufs_ptr(this: *mut Self) -> *mut io_uring_buf {
        this.cast()
    }
}

impl io_uring_task_restriction {
    /// Address of `restrictions[0]`, the flexible array after the header.
    #[inline]
    pub fn restrictions_ptr(this: *mut Self) -> *mut io_uring_restriction {
        this.cast::<u8>().wrapping_add(offset_of!(Self, __bindgen_anon_1)).cast()
    }
}

impl io_uring_restriction {
    union_scalar!(
        /// `register_op`: the `IORING_REGISTER_*` opcode allowed by an
        /// `IORING_RESTRICTION_REGISTER_OP` entry.
        register_op, set_register_op: u8 = __bindgen_anon_1.register_op
    );
    union_scalar!(
        /// `sqe_op`: the `IORING_OP_*` allowed by an
        /// `IORING_RESTRICTION_SQE_OP` entry.
        sqe_op, set_sqe_op: u8 = __bindgen_anon_1.sqe_op
    );
    union_scalar!(
        /// `sqe_flags`: the `IOSQE_*` flags of an
        /// `IORING_RESTRICTION_SQE_FLAGS_ALLOWED`/`_REQUIRED` entry.
        sqe_flags, set_sqe_flags: u8 = __bindgen_anon_1.sqe_flags
    );
}

/// Getter and mutable getter for a struct member of an anonymous union.
macro_rules! union_struct {
    ($(#[$doc:meta])* $get:ident, $get_mut:ident: $ty:ty = $($path:tt).+) => {
        $(#[$doc])*
        #[inline]
        pub fn $get(&self) -> &$ty {
            // SAFETY: every member of this union is plain integers over
            // initialized bytes; viewing them as `$ty` is always valid.
            unsafe { &self.$($path).+ }
        }

        #[doc = concat!("Mutable access to the member [`Self::", stringify!($get), "`] reads.")]
        #[inline]
        pub fn $get_mut(&mut self) -> &mut $ty {
            // SAFETY: as above; any bytes written through the reference are
            // valid for every other member too.
            unsafe { &mut self.$($path).+ }
        }
    };
}

impl zcrx_ctrl {
    union_struct!(
        /// The argument of `ZCRX_CTRL_EXPORT`.
        zc_export, zc_export_mut: zcrx_ctrl_export = __bindgen_anon_1.zc_export
    );
    union_struct!(
        /// The argument of `ZCRX_CTRL_FLUSH_RQ`.
        zc_flush, zc_flush_mut: zcrx_ctrl_flush_rq = __bindgen_anon_1.zc_flush
    );
    union_struct!(
        /// The argument of `ZCRX_CTRL_ARM_EVENT`.
        zc_arm_event, zc_arm_event_mut: zcrx_ctrl_arm_event = __bindgen_anon_1.zc_arm_event
    );
    union_struct!(
        /// The argument of `ZCRX_CTRL_ADD_AREA`.
        zc_area, zc_area_mut: zcrx_ctrl_add_area = __bindgen_anon_1.zc_area
    );
}

impl io_uring_bpf {
    union_struct!(
        /// The filter of an `IO_URING_BPF_CMD_FILTER` command.
        filter, filter_mut: io_uring_bpf_filter = __bindgen_anon_1.filter
    );
}

/// `io_uring_bpf_ctx`'s `socket` member: the arguments of a `SOCKET` request
/// as a BPF filter sees them.
#[allow(non_camel_case_types)] // Named like the generated C types.
pub type io_uring_bpf_ctx_socket = io_uring_bpf_ctx__bindgen_ty_1__bindgen_ty_1;
/// `io_uring_bpf_ctx`'s `open` member: the arguments of an `OPENAT[2]`
/// request as a BPF filter sees them.
#[allow(non_camel_case_types)] // Named like the generated C types.
pub type io_uring_bpf_ctx_open = io_uring_bpf_ctx__bindgen_ty_1__bindgen_ty_2;
/// `io_uring_bpf_ctx`'s `connect` member: the arguments of a `CONNECT`
/// request as a BPF filter sees them.
#[allow(non_camel_case_types)] // Named like the generated C types.
pub type io_uring_bpf_ctx_connect = io_uring_bpf_ctx__bindgen_ty_1__bindgen_ty_3;

impl io_uring_bpf_ctx {
    union_struct!(
        /// The `SOCKET` arguments.
        socket, socket_mut: io_uring_bpf_ctx_socket = __bindgen_anon_1.socket
    );
    union_struct!(
        /// The `OPENAT`/`OPENAT2` arguments.
        open, open_mut: io_uring_bpf_ctx_open = __bindgen_anon_1.open
    );
    union_struct!(
        /// The `CONNECT` arguments.
        connect, connect_mut: io_uring_bpf_ctx_connect = __bindgen_anon_1.connect
    );
}

impl io_uring_bpf_ctx_connect {
    union_scalar!(
        /// The IPv4 address, network byte order.
        v4_addr, set_v4_addr: __be32 = __bindgen_anon_1.v4_addr
    );
    union_scalar!(
        /// The IPv6 address.
        v6_addr, set_v6_addr: [u8; 16] = __bindgen_anon_1.v6_addr
    );
}
