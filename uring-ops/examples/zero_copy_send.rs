//! Example `zero_copy_send` (to be written).

fn main() {}
