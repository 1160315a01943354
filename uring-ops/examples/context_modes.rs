//! Example `context_modes` (to be written).

fn main() {}
