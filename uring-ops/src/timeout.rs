//! Timeouts: `timeout` (relative, absolute, clock, count), remove, update, and linked timeouts.
