//! Example `vectored` (to be written).

fn main() {}
