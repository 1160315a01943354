//! Example `poll` (to be written).

fn main() {}
