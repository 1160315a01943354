//! Example `multishot` (to be written).

fn main() {}
