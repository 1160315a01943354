//! Example `timeouts` (to be written).

fn main() {}
