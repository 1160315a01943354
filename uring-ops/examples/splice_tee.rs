//! Example `splice_tee` (to be written).

fn main() {}
