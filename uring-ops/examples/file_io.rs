//! Example `file_io` (to be written).

fn main() {}
