//! ABI layout of the structures the kernel reads or writes, checked against
//! the sizes and offsets the kernel itself asserts (`BUILD_BUG_ON` and
//! `BUILD_BUG_SQE_ELEM` in `io_uring/io_uring.c`, and the uapi comments).
//!
//! bindgen already emits compile-time assertions that the Rust types match
//! clang's view of the same headers; these tests are the independent half:
//! numbers written from the kernel's side, plus a check that every named
//! SQE accessor writes exactly the bytes the kernel reads for that member.

use std::mem::{align_of, offset_of, size_of};

use uring_sys::*;

#[test]
fn sizes_match_the_kernel_abi() {
    let cases: &[(&str, usize, usize)] = &[
        ("io_uring_sqe", size_of::<io_uring_sqe>(), 64),
        ("io_uring_cqe", size_of::<io_uring_cqe>(), 16),
        ("io_uring_params", size_of::<io_uring_params>(), 120),
        ("io_sqring_offsets", size_of::<io_sqring_offsets>(), 40),
        ("io_cqring_offsets", size_of::<io_cqring_offsets>(), 40),
        ("io_uring_probe", size_of::<io_uring_probe>(), 16),
        ("io_uring_probe_op", size_of::<io_uring_probe_op>(), 8),
        ("io_uring_restriction", size_of::<io_uring_restriction>(), 16),
        ("io_uring_task_restriction", size_of::<io_uring_task_restriction>(), 16),
        ("io_uring_files_update", size_of::<io_uring_files_update>(), 16),
        ("io_uring_rsrc_register", size_of::<io_uring_rsrc_register>(), 32),
        ("io_uring_rsrc_update", size_of::<io_uring_rsrc_update>(), 16),
        ("io_uring_rsrc_update2", size_of::<io_uring_rsrc_update2>(), 32),
        ("io_uring_buf", size_of::<io_uring_buf>(), 16),
        ("io_uring_buf_ring", size_of::<io_uring_buf_ring>(), 16),
        ("io_uring_buf_reg", size_of::<io_uring_buf_reg>(), 40),
        ("io_uring_buf_status", size_of::<io_uring_buf_status>(), 40),
        ("io_uring_getevents_arg", size_of::<io_uring_getevents_arg>(), 24),
        ("io_uring_reg_wait", size_of::<io_uring_reg_wait>(), 64),
        ("io_uring_sync_cancel_reg", size_of::<io_uring_sync_cancel_reg>(), 64),
        ("io_uring_file_index_range", size_of::<io_uring_file_index_range>(), 16),
        ("io_uring_recvmsg_out", size_of::<io_uring_recvmsg_out>(), 16),
        ("io_uring_napi", size_of::<io_uring_napi>(), 16),
        ("io_uring_clock_register", size_of::<io_uring_clock_register>(), 16),
        ("io_uring_clone_buffers", size_of::<io_uring_clone_buffers>(), 32),
        ("io_uring_region_desc", size_of::<io_uring_region_desc>(), 64),
        ("io_uring_mem_region_reg", size_of::<io_uring_mem_region_reg>(), 32),
        ("io_uring_attr_pi", size_of::<io_uring_attr_pi>(), 32),
        ("io_uring_zcrx_rqe", size_of::<io_uring_zcrx_rqe>(), 16),
        ("io_uring_zcrx_cqe", size_of::<io_uring_zcrx_cqe>(), 16),
        ("io_uring_zcrx_offsets", size_of::<io_uring_zcrx_offsets>(), 32),
        ("io_uring_zcrx_area_reg", size_of::<io_uring_zcrx_area_reg>(), 48),
        ("io_uring_zcrx_ifq_reg", size_of::<io_uring_zcrx_ifq_reg>(), 96),
        ("zcrx_ctrl", size_of::<zcrx_ctrl>(), 72),
        ("zcrx_ctrl_export", size_of::<zcrx_ctrl_export>(), 48),
        ("zcrx_ctrl_flush_rq", size_of::<zcrx_ctrl_flush_rq>(), 48),
        ("zcrx_ctrl_arm_event", size_of::<zcrx_ctrl_arm_event>(), 48),
        ("zcrx_ctrl_add_area", size_of::<zcrx_ctrl_add_area>(), 48),
        ("zcrx_event_desc", size_of::<zcrx_event_desc>(), 96),
        ("zcrx_stats", size_of::<zcrx_stats>(), 16),
        ("io_uring_query_hdr", size_of::<io_uring_query_hdr>(), 40),
        ("io_uring_query_opcode", size_of::<io_uring_query_opcode>(), 48),
        ("io_uring_query_zcrx", size_of::<io_uring_query_zcrx>(), 40),
        ("io_uring_query_zcrx_event", size_of::<io_uring_query_zcrx_event>(), 48),
        ("io_uring_query_scq", size_of::<io_uring_query_scq>(), 16),
        ("io_uring_bpf_ctx", size_of::<io_uring_bpf_ctx>(), 40),
        ("io_uring_bpf_filter", size_of::<io_uring_bpf_filter>(), 64),
        ("io_uring_bpf", size_of::<io_uring_bpf>(), 72),
        ("io_uring_mock_probe", size_of::<io_uring_mock_probe>(), 80),
        ("io_uring_mock_create", size_of::<io_uring_mock_create>(), 128),
        ("io_timespec", size_of::<io_timespec>(), 16),
        ("statx_timestamp", size_of::<statx_timestamp>(), 16),
        ("__kernel_timespec", size_of::<__kernel_timespec>(), 16),
        ("open_how", size_of::<open_how>(), 24),
        ("futex_waitv", size_of::<futex_waitv>(), 24),
        ("statx", size_of::<statx>(), 256),
        (
            "epoll_event",
            size_of::<epoll_event>(),
            // Packed on x86-64 only (EPOLL_PACKED in the uapi header).
            if cfg!(target_arch = "x86_64") { 12 } else { 16 },
        ),
    ];
    let wrong: Vec<String> = cases
        .iter()
        .filter(|(_, actual, expected)| actual != expected)
        .map(|(name, actual, expected)| format!("{name}: {actual} bytes, the kernel uses {expected}"))
        .collect();
    assert!(wrong.is_empty(), "{wrong:#?}");
    assert_eq!(align_of::<io_uring_sqe>(), 8);
    assert_eq!(align_of::<io_uring_cqe>(), 8);
}

#[test]
fn plain_sqe_and_cqe_fields_sit_where_the_kernel_reads_them() {
    assert_eq!(offset_of!(io_uring_sqe, opcode), 0);
    assert_eq!(offset_of!(io_uring_sqe, flags), 1);
    assert_eq!(offset_of!(io_uring_sqe, ioprio), 2);
    assert_eq!(offset_of!(io_uring_sqe, fd), 4);
    assert_eq!(offset_of!(io_uring_sqe, len), 24);
    assert_eq!(offset_of!(io_uring_sqe, user_data), 32);
    assert_eq!(offset_of!(io_uring_sqe, personality), 42);
    assert_eq!(offset_of!(io_uring_cqe, user_data), 0);
    assert_eq!(offset_of!(io_uring_cqe, res), 8);
    assert_eq!(offset_of!(io_uring_cqe, flags), 12);
    assert_eq!(offset_of!(io_uring_params, sq_off), 40);
    assert_eq!(offset_of!(io_uring_params, cq_off), 80);
    assert_eq!(offset_of!(io_uring_buf, bid), 12);
}

fn bytes(sqe: &io_uring_sqe) -> [u8; 64] {
    // SAFETY: io_uring_sqe is 64 bytes of plain integers with no padding
    // (every byte is a member), so it can be read as bytes.
    unsafe { std::mem::transmute_copy(sqe) }
}

/// Sets one member through its accessor on a zeroed SQE and checks that
/// exactly bytes `offset..offset + width` changed, holding `value`
/// little-endian, and that the getter reads it back.
fn check_member(
    name: &str,
    offset: usize,
    width: usize,
    set: impl Fn(&mut io_uring_sqe),
    get: impl Fn(&io_uring_sqe) -> u64,
) {
    // A value with a distinct non-zero byte in every position of the width.
    let value: u64 = 0x0807_0605_0403_0201 & (u64::MAX >> (64 - 8 * width));
    let mut sqe = io_uring_sqe::default();
    set(&mut sqe);
    let raw = bytes(&sqe);
    let mut expected = [0u8; 64];
    expected[offset..offset + width].copy_from_slice(&value.to_le_bytes()[..width]);
    assert_eq!(raw, expected, "sqe->{name} must occupy bytes {offset}..{}", offset + width);
    assert_eq!(get(&sqe), value, "sqe->{name} getter");
}

#[test]
#[cfg(target_endian = "little")]
fn every_sqe_accessor_writes_its_kernel_offset() {
    macro_rules! member {
        ($name:literal, $offset:expr, $ty:ty, $set:ident, $get:ident) => {
            check_member(
                $name,
                $offset,
                size_of::<$ty>(),
                |s| s.$set(0x0807_0605_0403_0201u64 as $ty),
                |s| s.$get() as u64 & (u64::MAX >> (64 - 8 * size_of::<$ty>())),
            )
        };
    }
    member!("off", 8, u64, set_off, off);
    member!("addr2", 8, u64, set_addr2, addr2);
    member!("cmd_op", 8, u32, set_cmd_op, cmd_op);
    member!("addr", 16, u64, set_addr, addr);
    member!("splice_off_in", 16, u64, set_splice_off_in, splice_off_in);
    member!("level", 16, u32, set_level, level);
    member!("optname", 20, u32, set_optname, optname);
    member!("rw_flags (op_flags)", 28, u32, set_op_flags, op_flags);
    member!("poll_events", 28, u16, set_poll_events, poll_events);
    member!("buf_index", 40, u16, set_buf_index, buf_index);
    member!("buf_group", 40, u16, set_buf_group, buf_group);
    member!("splice_fd_in", 44, i32, set_splice_fd_in, splice_fd_in);
    member!("file_index", 44, u32, set_file_index, file_index);
    member!("zcrx_ifq_idx", 44, u32, set_zcrx_ifq_idx, zcrx_ifq_idx);
    member!("optlen", 44, u32, set_optlen, optlen);
    member!("addr_len", 44, u16, set_addr_len, addr_len);
    member!("write_stream", 44, u8, set_write_stream, write_stream);
    member!("addr3", 48, u64, set_addr3, addr3);
    member!("attr_ptr", 48, u64, set_attr_ptr, attr_ptr);
    member!("attr_type_mask", 56, u64, set_attr_type_mask, attr_type_mask);
    member!("optval", 48, u64, set_optval, optval);
}

#[test]
fn pointer_accessors_point_at_the_kernel_offsets() {
    let mut sqe = io_uring_sqe::default();
    let base = (&raw mut sqe).cast::<u8>();
    assert_eq!(io_uring_sqe::cmd_ptr(&raw mut sqe) as usize - base as usize, 48, "sqe->cmd");

    let cqe = io_uring_cqe::default();
    let base = (&raw const cqe) as usize;
    assert_eq!(io_uring_cqe::big_cqe_ptr(&raw const cqe) as usize - base, 16, "cqe->big_cqe");

    // The buffer ring's tail overlays bufs[0].resv: byte 14 of the ring.
    let mut storage = [0u64; 8];
    let ring = storage.as_mut_ptr().cast::<io_uring_buf_ring>();
    assert_eq!(io_uring_buf_ring::tail_ptr(ring) as usize - ring as usize, 14);
    assert_eq!(io_uring_buf_ring::bufs_ptr(ring) as usize, ring as usize);
    assert_eq!(offset_of!(io_uring_buf, resv), 14, "the tail is bufs[0].resv");

    let restrictions = storage.as_mut_ptr().cast::<io_uring_task_restriction>();
    assert_eq!(io_uring_task_restriction::restrictions_ptr(restrictions) as usize - restrictions as usize, 16);
}

#[test]
fn restriction_and_zcrx_ctrl_unions_alias_their_members() {
    let mut r = io_uring_restriction::default();
    r.set_sqe_op(IORING_OP_READ as u8);
    assert_eq!(r.register_op(), IORING_OP_READ as u8, "one byte shared by all members");
    assert_eq!(r.sqe_flags(), IORING_OP_READ as u8);

    let mut ctrl = zcrx_ctrl::default();
    ctrl.zc_export_mut().zcrx_fd = 42;
    assert_eq!(ctrl.zc_arm_event().event_type, 42, "members start at the same offset");
    ctrl.zc_area_mut().area_ptr = 0xdead_beef;
    assert_eq!(ctrl.zc_flush().__resv[0], 0xdead_beef);
}

#[test]
fn uapi_constants_have_their_kernel_values() {
    // Spot checks of values whose generation needed clang's macro fallback
    // (they reference enum values or casts), so a bindgen regression that
    // drops or mistypes them fails here.
    assert_eq!(IOSQE_FIXED_FILE, 1);
    assert_eq!(IOSQE_CQE_SKIP_SUCCESS, 1 << 6);
    assert_eq!(IORING_CQE_F_TSTAMP_HW, 1 << 16);
    assert_eq!(IORING_OFF_PBUF_RING, 0x8000_0000u64);
    assert_eq!(IORING_ZCRX_AREA_MASK, !((1u64 << IORING_ZCRX_AREA_SHIFT) - 1));
    assert_eq!(IORING_FILE_INDEX_ALLOC as u32, u32::MAX);
    assert_eq!(IORING_REGISTER_FILES_SKIP, -2);
    assert_eq!(IORING_REGISTER_USE_REGISTERED_RING, 1 << 31);
    assert_eq!(FUTEX2_PRIVATE, 128);
    assert_eq!(AT_FDCWD, -100);
}

#[test]
fn the_newest_uapi_items_are_generated() {
    // Values from the 7.3 uapi; a regression in the header pin or the
    // allowlist that loses one of these fails to compile or fails here.
    assert_eq!(
        [IORING_OP_RECV_ZC, IORING_OP_EPOLL_WAIT, IORING_OP_PIPE, IORING_OP_NOP128, IORING_OP_URING_CMD128],
        [58, 59, 62, 63, 64]
    );
    assert_eq!(IORING_SETUP_CQE_MIXED, 1 << 18);
    assert_eq!(IORING_SETUP_NO_SQARRAY, 1 << 16);
    assert_eq!(
        [IORING_REGISTER_ZCRX_IFQ, IORING_REGISTER_RESIZE_RINGS, IORING_REGISTER_MEM_REGION, IORING_REGISTER_QUERY],
        [32, 33, 34, 35]
    );
    assert_eq!(IOU_PBUF_RING_INC, 2);
    assert_eq!(IORING_RECVSEND_BUNDLE, 1 << 4);
    assert_eq!(ZCRX_REG_NODEV, 2);
    assert_eq!(IORING_CQE_F_32, 1 << 15);
    // The structures exist with their kernel sizes (see sizes_match_the_kernel_abi).
    let _: (io_uring_zcrx_ifq_reg, io_uring_zcrx_rqe, io_uring_buf) = Default::default();
    assert_eq!(size_of::<io_uring_buf_ring>(), size_of::<io_uring_buf>());
}
