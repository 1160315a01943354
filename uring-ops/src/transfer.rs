//! Transfers between files: `splice`, `tee`, pipe creation, `sync_file_range`, `fadvise`, `madvise`.
