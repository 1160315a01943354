//! File I/O: `read`, `write`, `readv`, `writev`, and the fixed-buffer forms, with offsets and `RWF_*` flags.
