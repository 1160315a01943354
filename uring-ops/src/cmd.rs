//! Commands: `uring_cmd`, `uring_cmd128`, `nop`, `nop128`.

use uring_core::{Keep, Sqe, sys};

use crate::op::{Prepare, SafeOp};

/// Does nothing, and completes: `io_uring_prep_nop`.
///
/// Since Linux 5.1. With [`result`](Self::result) (since 6.10) the CQE
/// carries the given result instead of 0, which tests use to inject
/// failures.
#[doc(alias = "IORING_OP_NOP")]
#[doc(alias = "io_uring_prep_nop")]
#[derive(Debug, Clone, Copy, Default)]
#[must_use = "an operation does nothing until it is pushed to a ring"]
pub struct Nop {
    result: Option<i32>,
}

impl Nop {
    /// A NOP that completes with result 0.
    #[inline]
    pub const fn new() -> Self {
        Nop { result: None }
    }

    /// Completes with `res` instead (`IORING_NOP_INJECT_RESULT`).
    #[inline]
    pub const fn result(mut self, res: i32) -> Self {
        self.result = Some(res);
        self
    }
}

impl Prepare for Nop {
    const CODE: u8 = sys::IORING_OP_NOP as u8;

    #[inline]
    fn prepare(self, sqe: &mut Sqe, _keep: &mut Keep) {
        let Nop { result } = self;
        *sqe = Sqe::new(Self::CODE);
        sqe.fd = -1;
        if let Some(res) = result {
            sqe.set_op_flags(sys::IORING_NOP_INJECT_RESULT);
            sqe.len = res as u32;
        }
    }
}

// SAFETY: a NOP names no memory.
unsafe impl SafeOp for Nop {}
