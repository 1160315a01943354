//! File management: `openat`, `openat2`, `close`, `fsync`, `fallocate`, `ftruncate`, `statx`, `renameat`, `unlinkat`, `mkdirat`, `symlinkat`, `linkat`.
